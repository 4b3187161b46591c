//! SCSI hosts and the scan on request: writing `"0 T L"` to a host's `scan` attribute makes
//! the kernel probe that LUN, for hypervisors that do not report a LUN hot-add (what Kata's
//! agent does before it waits for a SCSI disk).

use std::path::PathBuf;

use super::{Sysfs, list_class, resolve};
use crate::address::ScsiUnit;
use crate::error::Result;
use crate::path::PciPath;

/// A SCSI host (an HBA's `hostN`) below a PCI function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScsiHost {
    /// `host0`.
    pub name: String,
    /// The PCI path of the function it is below.
    pub path: PciPath,
}

impl Sysfs {
    /// The SCSI hosts below the function at `path` (below any PCI function when `None`), by
    /// name, from the links in `<root>/class/scsi_host/`.
    pub fn scsi_hosts(&self, path: Option<&PciPath>) -> Result<Vec<ScsiHost>> {
        let root = self.canonical_root()?;
        let mut hosts = Vec::new();
        for link in list_class(&self.root.join("class/scsi_host"))? {
            let Some((_, devpath)) = resolve(&root, &link)? else {
                continue;
            };
            let (Some(name), Ok(Some((at, _)))) = (
                link.file_name().and_then(|n| n.to_str()),
                PciPath::from_devpath(&devpath),
            ) else {
                continue; // not below a PCI function (an iSCSI or USB host, say)
            };
            if path.is_none_or(|p| *p == at) {
                hosts.push(ScsiHost {
                    name: name.to_owned(),
                    path: at,
                });
            }
        }
        Ok(hosts)
    }

    /// Asks the kernel to probe `unit` (channel 0) on the SCSI hosts of the function at
    /// `path` (on every SCSI host below a PCI function when `None`): writes `"0 T L"` to each
    /// one's `<root>/class/scsi_host/<host>/scan`. Returns the files written. A refused write
    /// is an [`Error::SysfsWrite`](crate::Error::SysfsWrite) naming the file and what was written, with the OS error.
    pub fn scan_scsi(&self, path: Option<&PciPath>, unit: ScsiUnit) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        for host in self.scsi_hosts(path)? {
            written.push(crate::sysfs_write::scsi_scan(
                &self.root,
                &host.name,
                unit.target,
                unit.lun,
            )?);
        }
        if written.is_empty() {
            tracing::debug!("no SCSI host to scan for {unit}");
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::Error;
    use crate::testing::fake_sysfs::FakeSysfs;

    const HBA1: &str = "/devices/pci0000:00/0000:00:02.0/0000:01:00.0/virtio0/host0";
    const HBA2: &str = "/devices/pci0000:00/0000:00:03.0/0000:02:00.0/virtio1/host1";

    fn two_hbas() -> FakeSysfs {
        let t = FakeSysfs::new();
        t.scsi_host(HBA1);
        t.scsi_host(HBA2);
        // Not below a PCI function: never scanned.
        t.scsi_host("/devices/platform/host9");
        t
    }

    fn scanned(t: &FakeSysfs, host_dir: &str) -> String {
        let name = host_dir.rsplit('/').next().unwrap();
        let file = t
            .root()
            .join(host_dir.trim_start_matches('/'))
            .join("scsi_host")
            .join(name)
            .join("scan");
        fs::read_to_string(file).unwrap()
    }

    #[test]
    fn the_scan_is_written_to_the_hosts_of_the_path_only() {
        let t = two_hbas();
        let sysfs = Sysfs::new(t.root());
        let hosts = sysfs.scsi_hosts(None).unwrap();
        let names: Vec<(&str, String)> = hosts
            .iter()
            .map(|h| (h.name.as_str(), h.path.to_string()))
            .collect();
        assert_eq!(
            names,
            [("host0", "02/00".to_owned()), ("host1", "03/00".to_owned())]
        );
        let unit = "0:1".parse().unwrap();
        let written = sysfs
            .scan_scsi(Some(&"03/00".parse().unwrap()), unit)
            .unwrap();
        assert_eq!(written, [t.root().join("class/scsi_host/host1/scan")]);
        assert_eq!(scanned(&t, HBA2), "0 0 1");
        assert_eq!(scanned(&t, HBA1), "", "the other HBA is not scanned");
        // Without a path, every HBA below a PCI function.
        let written = sysfs.scan_scsi(None, "2:3".parse().unwrap()).unwrap();
        assert_eq!(written.len(), 2);
        assert_eq!(
            (scanned(&t, HBA1), scanned(&t, HBA2)),
            ("0 2 3".into(), "0 2 3".into())
        );
        assert_eq!(scanned(&t, "/devices/platform/host9"), "");
        // A path with no HBA scans nothing.
        assert!(
            sysfs
                .scan_scsi(Some(&"04/00".parse().unwrap()), unit)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_refused_write_names_the_file_and_the_os_error() {
        let t = two_hbas();
        // A `scan` that cannot be written, even by root: a directory in its place.
        let scan = t
            .root()
            .join(HBA1.trim_start_matches('/'))
            .join("scsi_host/host0/scan");
        fs::remove_file(&scan).unwrap();
        fs::create_dir(&scan).unwrap();
        let e = Sysfs::new(t.root())
            .scan_scsi(Some(&"02/00".parse().unwrap()), "0:1".parse().unwrap())
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "writing \"0 0 1\" to {}: ",
                t.root().join("class/scsi_host/host0/scan").display()
            )),
            "{text}"
        );
        assert!(
            matches!(&e, Error::SysfsWrite(w) if w.io_error().raw_os_error() == Some(libc::EISDIR)),
            "{e:?}"
        );
    }
}
