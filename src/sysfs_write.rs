//! Every write pciplug makes to sysfs, in one place: a PCI bus rescan, a function's
//! `driver_override`, a driver's `unbind`, `drivers_probe`, a SCSI host's `scan`. Each goes below a sysfs root given
//! by the caller (the monitor's), so tests write to a fake tree; a refused write is a
//! [`SysfsWriteError`] that names the file, the value and the OS error.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::path::Bdf;

/// A write to a sysfs file was refused (not root, a read-only sysfs, a driver that said no).
#[derive(Debug, thiserror::Error)]
#[error("writing {value:?} to {}: {source}", file.display())]
pub struct SysfsWriteError {
    file: PathBuf,
    value: String,
    #[source]
    source: io::Error,
}

impl SysfsWriteError {
    /// The file written to.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The value written.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The OS error.
    pub fn io_error(&self) -> &io::Error {
        &self.source
    }
}

/// Writes `value` to the existing file `rel` below `root`, in one `write(2)` as sysfs wants
/// (truncating, as a shell's `echo >` does; sysfs ignores it, a fake tree keeps the value
/// alone). Never creates a file: a missing attribute is an error, not a new file.
fn write(root: &Path, rel: &str, value: &str) -> Result<(), SysfsWriteError> {
    let file = root.join(rel);
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&file)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|source| SysfsWriteError {
            file,
            value: value.to_owned(),
            source,
        })
}

/// `"0 T L"` to the SCSI host's `class/scsi_host/<host>/scan`: the kernel probes target `T`,
/// LUN `L` on channel 0 of that host. Returns the file written.
pub(crate) fn scsi_scan(
    root: &Path,
    host: &str,
    target: u32,
    lun: u64,
) -> Result<PathBuf, SysfsWriteError> {
    let rel = format!("class/scsi_host/{host}/scan");
    write(root, &rel, &format!("0 {target} {lun}"))?;
    Ok(root.join(rel))
}

/// `1` to `bus/pci/rescan`: the kernel walks every PCI bus and adds what it finds.
pub(crate) fn rescan(root: &Path) -> Result<(), SysfsWriteError> {
    write(root, "bus/pci/rescan", "1")
}

/// `driver` to the function's `driver_override`: from now on only that driver may bind it.
pub(crate) fn driver_override(root: &Path, bdf: Bdf, driver: &str) -> Result<(), SysfsWriteError> {
    write(
        root,
        &format!("bus/pci/devices/{bdf}/driver_override"),
        driver,
    )
}

/// The BDF to the `unbind` of the driver bound to the function (through its `driver` link):
/// the driver releases it.
pub(crate) fn unbind(root: &Path, bdf: Bdf) -> Result<(), SysfsWriteError> {
    write(
        root,
        &format!("bus/pci/devices/{bdf}/driver/unbind"),
        &bdf.to_string(),
    )
}

/// The BDF to `bus/pci/drivers_probe`: the kernel binds the function to a driver that may
/// take it (with an override, only that one).
pub(crate) fn drivers_probe(root: &Path, bdf: Bdf) -> Result<(), SysfsWriteError> {
    write(root, "bus/pci/drivers_probe", &bdf.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn each_write_goes_to_its_file_below_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let bdf: Bdf = "0000:02:00.0".parse().unwrap();
        for f in [
            "bus/pci/rescan",
            "bus/pci/drivers_probe",
            "bus/pci/devices/0000:02:00.0/driver_override",
            "bus/pci/drivers/virtio-pci/unbind",
        ] {
            fs::create_dir_all(root.join(f).parent().unwrap()).unwrap();
            fs::write(root.join(f), "").unwrap();
        }
        std::os::unix::fs::symlink(
            "../../drivers/virtio-pci",
            root.join("bus/pci/devices/0000:02:00.0/driver"),
        )
        .unwrap();
        rescan(root).unwrap();
        driver_override(root, bdf, "vfio-pci").unwrap();
        unbind(root, bdf).unwrap();
        drivers_probe(root, bdf).unwrap();
        let read = |f: &str| fs::read_to_string(root.join(f)).unwrap();
        assert_eq!(read("bus/pci/rescan"), "1");
        assert_eq!(
            read("bus/pci/devices/0000:02:00.0/driver_override"),
            "vfio-pci"
        );
        assert_eq!(read("bus/pci/drivers/virtio-pci/unbind"), "0000:02:00.0");
        assert_eq!(read("bus/pci/drivers_probe"), "0000:02:00.0");
    }

    #[test]
    fn a_refused_write_names_the_file_the_value_and_the_os_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // Missing: an error, and never created.
        let e = rescan(root).unwrap_err();
        assert_eq!(e.io_error().kind(), io::ErrorKind::NotFound);
        assert!(!root.join("bus/pci/rescan").exists());
        // Refused even to root (a directory where the file should be); a read-only sysfs is
        // refused the same way, through a read-only mount (tests/pci_function.rs).
        let file = root.join("bus/pci/rescan");
        fs::create_dir_all(&file).unwrap();
        let e = rescan(root).unwrap_err();
        assert_eq!((e.file(), e.value()), (file.as_path(), "1"));
        assert_eq!(e.io_error().raw_os_error(), Some(libc::EISDIR));
        let shown = e.to_string();
        let head = format!("writing \"1\" to {}: ", file.display());
        assert!(shown.starts_with(&head), "{shown}");
        assert!(std::error::Error::source(&e).is_some());
    }
}
