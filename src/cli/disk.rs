//! `pciplug wait` for a disk by its full address: `--scsi T:L`, `--nsid N`, `--scan`.

use std::process::ExitCode;
use std::time::Duration;

use pciplug::{DiskAddress, MonitorBuilder, Nsid, PciPath, ScsiUnit, Unit};

use super::live::{Kind, print_device};

/// The unit selector of `wait`, and the SCSI scan on request.
#[derive(clap::Args, Debug)]
pub struct UnitArgs {
    /// The SCSI target and LUN of the disk (`T:L`, channel 0; never the guest's host number):
    /// one of the HBA's disks at PATH, or without PATH, the disk of the only HBA with that LUN.
    #[arg(long, value_name = "T:L", value_parser = parse_scsi, conflicts_with_all = ["nsid", "removed"])]
    pub scsi: Option<ScsiUnit>,
    /// The NVMe namespace id of the disk (read from sysfs): one of the controller's disks at
    /// PATH, or without PATH, the disk of the only function with that namespace id.
    #[arg(long, value_name = "N", value_parser = parse_nsid, conflicts_with = "removed")]
    pub nsid: Option<Nsid>,
    /// Before waiting, ask the kernel to probe the `--scsi` LUN: writes "0 T L" to the
    /// `scan` file of the SCSI host(s) at PATH (of every SCSI host without PATH), under the
    /// sysfs root. Off by default.
    #[arg(long, requires = "scsi")]
    pub scan: bool,
}

impl UnitArgs {
    /// The unit given, if any.
    pub fn unit(&self) -> Option<Unit> {
        match (self.scsi, self.nsid) {
            (Some(s), _) => Some(Unit::Scsi(s)),
            (None, Some(n)) => Some(Unit::Nsid(n)),
            (None, None) => None,
        }
    }
}

/// `pciplug wait [PATH] --scsi T:L | --nsid N [--scan]`. A unit with `--kind net` is a bad
/// argument (exit 2); an ambiguous address fails (exit 2, from the caller).
pub fn wait(
    builder: MonitorBuilder,
    path: Option<PciPath>,
    unit: Unit,
    kind: Kind,
    timeout: Duration,
    scan: bool,
) -> pciplug::Result<ExitCode> {
    if kind != Kind::Block {
        super::usage_error("--scsi and --nsid address a disk: they go with --kind block only");
        return Ok(ExitCode::from(2));
    }
    let address = DiskAddress::with_unit(path, unit);
    let monitor = builder.scsi_scan(scan).start()?;
    let disk = monitor.wait_disk_timeout(&address, timeout)?;
    print_device(&disk.name, &disk.devnode(), &address)?;
    Ok(ExitCode::SUCCESS)
}

fn parse_scsi(s: &str) -> Result<ScsiUnit, String> {
    s.parse()
        .map_err(|e: pciplug::ParseUnitError| e.to_string())
}

fn parse_nsid(s: &str) -> Result<Nsid, String> {
    s.parse()
        .map_err(|e: pciplug::ParseUnitError| e.to_string())
}
