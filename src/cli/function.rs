//! `pciplug wait PATH --kind pci` and `pciplug vfio PATH`: PCI functions and their drivers.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use pciplug::{DriverState, Monitor, MonitorBuilder, PciPath};

/// Where the monitor reads and writes, and whether its waits rescan the PCI bus.
#[derive(clap::Args, Debug)]
pub struct Edges {
    /// Rescan the PCI bus (write 1 to <sysfs>/bus/pci/rescan) when the wait starts and every
    /// second until it answers, for a VMM that adds devices without telling the guest. Needs
    /// root.
    #[arg(long)]
    pub rescan: bool,
    /// Where sysfs is mounted.
    #[arg(long, value_name = "DIR", default_value = "/sys")]
    pub sysfs: PathBuf,
}

impl Edges {
    pub fn builder(&self) -> MonitorBuilder {
        Monitor::builder()
            .sysfs_root(&self.sysfs)
            .rescan(self.rescan)
    }
}

/// The driver state `wait --kind pci` asks for, from `--driver NAME` or `--unbound`.
pub fn driver_state(driver: Option<String>, unbound: bool) -> DriverState {
    match (driver, unbound) {
        (Some(d), _) => DriverState::Driver(d.into()),
        (None, true) => DriverState::Unbound,
        (None, false) => DriverState::Any,
    }
}

/// `wait PATH --kind pci`: prints the function's BDF, or with `json` the whole function.
pub fn wait(
    monitor: &Monitor,
    path: &PciPath,
    state: &DriverState,
    timeout: Duration,
    json: bool,
) -> pciplug::Result<ExitCode> {
    let function = monitor.wait_function_timeout(path, state, timeout)?;
    print(|w| {
        if json {
            serde_json::to_writer(&mut *w, &function)?;
            writeln!(w)
        } else {
            writeln!(w, "{}", function.bdf)
        }
    })
}

/// `vfio PATH`: hands the function's IOMMU group to vfio-pci; prints `/dev/vfio/<group>`, or
/// with `json` the group and its functions.
pub fn vfio(
    edges: &Edges,
    dev: PathBuf,
    path: &PciPath,
    timeout: Duration,
    json: bool,
) -> pciplug::Result<ExitCode> {
    let monitor = edges.builder().dev_root(dev).start()?;
    let group = monitor.vfio(path, timeout)?;
    print(|w| {
        if json {
            serde_json::to_writer(&mut *w, &group)?;
            writeln!(w)
        } else {
            writeln!(w, "{}", group.devnode.display())
        }
    })
}

/// One flushed write to stdout; a closed stdout is an error to report, not a panic.
fn print(
    f: impl FnOnce(&mut io::StdoutLock<'static>) -> io::Result<()>,
) -> pciplug::Result<ExitCode> {
    let mut w = io::stdout().lock();
    f(&mut w)
        .and_then(|()| w.flush())
        .map_err(|e| pciplug::Error::Io {
            op: "writing to stdout".into(),
            source: e,
        })?;
    Ok(ExitCode::SUCCESS)
}
