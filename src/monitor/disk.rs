//! The waits for a disk by its full address ([`DiskAddress`]): a PCI path, a unit (SCSI `T:L`,
//! NVMe namespace id) or both; the SCSI scan on request.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::Monitor;
use crate::address::{Candidate, DiskAddress, Unit};
use crate::error::Result;
use crate::registry::{BlockDevice, Registry};
use crate::sysfs::Sysfs;
use crate::wait::deadline::Deadline;
use crate::wait::error::{Seen, WaitError, WaitTimeout, Wanted};
use crate::wait::wait_anywhere;

impl Monitor {
    /// The one whole disk at `address`, waiting for ever.
    ///
    /// - A path alone answers with the function's disk; if the function carries several whole
    ///   disks when the answer comes, the wait fails at once with [`WaitError::Ambiguous`](crate::WaitError::Ambiguous), which
    ///   lists each with its address (`sda 0:0:0:0, sdb 0:0:0:1`). Partitions never count.
    /// - A path and a unit answer with the disk that has the unit (the SCSI `T:L` on channel
    ///   0, or the NVMe namespace id, read from sysfs as the disk is registered).
    /// - A unit without a path answers when exactly one PCI function in the guest has a disk
    ///   with it, and fails with [`WaitError::Ambiguous`](crate::WaitError::Ambiguous) naming every candidate's path when
    ///   several do.
    ///
    /// With [`MonitorBuilder::scsi_scan`](super::MonitorBuilder::scsi_scan) on, a SCSI unit is
    /// first asked for with [`Monitor::scan_scsi`].
    ///
    /// # Errors
    ///
    /// - [`WaitError::Ambiguous`](crate::WaitError::Ambiguous) if the address fits several disks, with each candidate.
    /// - [`WaitError::SysfsWrite`](crate::WaitError::SysfsWrite) if [`MonitorBuilder::scsi_scan`](super::MonitorBuilder::scsi_scan) is on
    ///   and a `scan` write is refused (the file, and the OS error).
    /// - [`WaitError::ListenerStopped`](crate::WaitError::ListenerStopped) if the listener thread stopped (shut down, or failed: the
    ///   reason is in the message) before the answer came: the registry is no longer kept.
    /// - [`WaitError::SysfsWrite`](crate::WaitError::SysfsWrite) if [`MonitorBuilder::rescan`](crate::MonitorBuilder::rescan) is on and a rescan is refused.
    pub fn wait_disk(&self, address: &DiskAddress) -> Result<BlockDevice, WaitError> {
        self.disk_until(address, Deadline::never())
    }

    /// [`wait_disk`](Self::wait_disk), waiting up to `timeout`.
    ///
    /// # Errors
    ///
    /// As [`wait_disk`](Self::wait_disk), and [`WaitError::Timeout`](crate::WaitError::Timeout) if it
    /// is not there by the deadline; the message says what was at the path then ("no block
    /// disk at 02/00 within 3s: PCI device 0000:01:00.0 present at 02/00, driver virtio-pci
    /// bound, no block child").
    pub fn wait_disk_timeout(
        &self,
        address: &DiskAddress,
        timeout: Duration,
    ) -> Result<BlockDevice, WaitError> {
        self.disk_until(address, Deadline::after(timeout))
    }

    /// [`wait_disk`](Self::wait_disk), waiting until `deadline`.
    ///
    /// # Errors
    ///
    /// As [`wait_disk_timeout`](Self::wait_disk_timeout).
    pub fn wait_disk_deadline(
        &self,
        address: &DiskAddress,
        deadline: Instant,
    ) -> Result<BlockDevice, WaitError> {
        self.disk_until(address, Deadline::at(deadline))
    }

    /// The one wait for a disk, until `deadline` (`None`: for ever).
    pub(super) fn disk_until(
        &self,
        address: &DiskAddress,
        deadline: Deadline,
    ) -> Result<BlockDevice, WaitError> {
        if self.inner.scsi_scan && matches!(address.unit(), Some(Unit::Scsi(_))) {
            self.scan_scsi(address).map_err(WaitError::from_edge)?;
        }
        let answer = |r: &Registry| -> Option<Result<BlockDevice, WaitError>> {
            match r.find_disk(address) {
                Ok(found) => found.cloned().map(Ok),
                Err(ambiguous) => Some(Err(WaitError::Ambiguous(ambiguous))),
            }
        };
        match address.path() {
            Some(path) => self.wait(path, wanted(address), deadline, answer)?,
            None => {
                let state = &self.inner.shared.state;
                let timeout = |r: &Registry, given| anywhere_timeout(address, r, given);
                wait_anywhere(state, deadline, answer, timeout)?
            }
        }
    }

    /// The one whole disk at `address` if it is there now: `Ok(None)` if it is not.
    ///
    /// # Errors
    ///
    /// - [`WaitError::Ambiguous`](crate::WaitError::Ambiguous) if the address fits several disks,
    ///   with each candidate (see [`wait_disk`](Self::wait_disk)).
    /// - [`WaitError::ListenerStopped`](crate::WaitError::ListenerStopped) once the listener has
    ///   stopped: its registry is no longer kept, so it answers nothing, as the waits do.
    pub fn try_disk(&self, address: &DiskAddress) -> Result<Option<BlockDevice>, WaitError> {
        match self.try_now(|r| r.find_disk(address).map(|found| found.cloned()))? {
            Ok(found) => Ok(found),
            Err(ambiguous) => Err(WaitError::Ambiguous(ambiguous)),
        }
    }

    /// Asks the kernel to probe the SCSI unit of `address` (channel 0): writes `"0 T L"` to the
    /// `scan` attribute of the SCSI hosts of the function at its path, or of every SCSI host
    /// below a PCI function when it has no path, under the monitor's sysfs root. Returns the
    /// files written (none for an address without a SCSI unit, or a path with no SCSI host).
    /// A refused write is an [`Error::SysfsWrite`](crate::Error::SysfsWrite) naming the file,
    /// the value and the OS error.
    ///
    /// # Errors
    ///
    /// [`Error::SysfsWrite`](crate::Error::SysfsWrite) naming the `scan` file, if a write is
    /// refused.
    pub fn scan_scsi(&self, address: &DiskAddress) -> Result<Vec<PathBuf>> {
        match address.unit() {
            Some(Unit::Scsi(unit)) => {
                Sysfs::new(&self.inner.edges.sysfs_root).scan_scsi(address.path(), *unit)
            }
            _ => Ok(Vec::new()),
        }
    }
}

/// What a wait for `address` waits for: the whole disk at a path ([`Wanted::Block`]), or the
/// disk with a unit.
pub(super) fn wanted(address: &DiskAddress) -> Wanted {
    match (address.path(), address.unit()) {
        (Some(_), None) => Wanted::Block,
        _ => Wanted::Disk(*address),
    }
}

/// The timeout of a wait for `address`, which has no path, given `given`: what it saw is the
/// disks with a unit, and where.
pub(super) fn anywhere_timeout(address: &DiskAddress, r: &Registry, given: Duration) -> WaitError {
    let mut seen = Vec::new();
    for d in r.devices() {
        for b in r.disks(&d.path) {
            let unit = if let Some([h, c, t, l]) = b.scsi_address() {
                format!("{h}:{c}:{t}:{l}")
            } else if let Some(n) = b.nsid {
                format!("nsid {n}")
            } else {
                continue;
            };
            seen.push(Candidate {
                path: d.path,
                name: b.name.clone(),
                unit: Some(unit),
            });
        }
    }
    WaitError::from(WaitTimeout {
        wanted: wanted(address),
        path: None,
        timeout: given,
        seen: Seen::Units(seen),
    })
}
