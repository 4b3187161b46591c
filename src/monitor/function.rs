//! The waits for a PCI function in a driver state: `wait_function`, `_deadline`, `try_`.

use std::time::{Duration, Instant};

use super::{Monitor, deadline_after};
use crate::error::Result;
use crate::function::{self, DriverState, PciFunction};
use crate::path::PciPath;

impl Monitor {
    /// The PCI function at `path` once it is present in `state` (bound to a driver, to a
    /// named one, unbound, or [`DriverState::Any`]), waiting up to `timeout`. Its IOMMU group
    /// is read from sysfs when it answers.
    ///
    /// A timeout's error says what was seen: nothing at the path, the function present and
    /// unbound, or bound to another driver (named).
    ///
    /// # Errors
    ///
    /// - [`Error::Timeout`](crate::Error::Timeout) if it is not there by the deadline; the message says what was at
    ///   the path then ("no block disk at 02/00 within 3s: PCI device 0000:01:00.0 present at
    ///   02/00, driver virtio-pci bound, no block child").
    /// - [`Error::Io`](crate::Error::Io) if the function's `iommu_group` link cannot be read (other than absent).
    /// - [`Error::ListenerStopped`](crate::Error::ListenerStopped) if the listener thread stopped (shut down, or failed: the
    ///   reason is in the message) before the answer came: the registry is no longer kept.
    /// - [`Error::SysfsWrite`](crate::Error::SysfsWrite) if [`MonitorBuilder::rescan`](crate::MonitorBuilder::rescan) is on and a rescan is refused.
    pub fn wait_function(
        &self,
        path: &PciPath,
        state: &DriverState,
        timeout: Duration,
    ) -> Result<PciFunction> {
        self.wait_function_deadline(path, state, deadline_after(timeout))
    }

    /// Like [`wait_function`](Self::wait_function), until `deadline` (`None`: for ever).
    ///
    /// # Errors
    ///
    /// As [`wait_function`](Self::wait_function).
    pub fn wait_function_deadline(
        &self,
        path: &PciPath,
        state: &DriverState,
        deadline: impl Into<Option<Instant>>,
    ) -> Result<PciFunction> {
        let what = match state {
            DriverState::Any => "PCI function".to_owned(),
            other => format!("PCI function {other}"),
        };
        let dev = self.wait_seen(path, &what, function::seen, deadline.into(), |r| {
            r.get(path)
                .filter(|d| state.matches(d.driver.as_deref()))
                .cloned()
        })?;
        PciFunction::read(&dev, self.sysfs_root())
    }

    /// The PCI function at `path` if it is there now in `state`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if the function's `iommu_group` link cannot be read (other than absent).
    pub fn try_function(&self, path: &PciPath, state: &DriverState) -> Result<Option<PciFunction>> {
        let dev = self.with_registry(|r| {
            r.get(path)
                .filter(|d| state.matches(d.driver.as_deref()))
                .cloned()
        });
        dev.map(|d| PciFunction::read(&d, self.sysfs_root()))
            .transpose()
    }
}
