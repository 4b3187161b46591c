//! The waits for a PCI function in a driver state: `wait_function`, `_timeout`, `_deadline`, `try_`.

use std::time::{Duration, Instant};

use super::{Monitor, deadline_after};
use crate::error::Result;
use crate::function::{self, DriverState, PciFunction};
use crate::path::PciPath;

impl Monitor {
    /// The PCI function at `path` once it is present in `state` (bound to a driver, to a
    /// named one, unbound, or [`DriverState::Any`]), waiting for ever. Its IOMMU group is read
    /// from sysfs when it answers.
    ///
    /// # Errors
    ///
    /// - [`Error::Io`](crate::Error::Io) if the function's `iommu_group` link cannot be read (other than absent).
    /// - [`Error::ListenerStopped`](crate::Error::ListenerStopped) if the listener thread stopped (shut down, or failed: the
    ///   reason is in the message) before the answer came: the registry is no longer kept.
    /// - [`Error::SysfsWrite`](crate::Error::SysfsWrite) if [`MonitorBuilder::rescan`](crate::MonitorBuilder::rescan) is on and a rescan is refused.
    pub fn wait_function(&self, path: &PciPath, state: &DriverState) -> Result<PciFunction> {
        self.function_until(path, state, None)
    }

    /// [`wait_function`](Self::wait_function), waiting up to `timeout`.
    ///
    /// # Errors
    ///
    /// As [`wait_function`](Self::wait_function), and [`Error::Timeout`](crate::Error::Timeout)
    /// if it is not there in `state` by the deadline; the message says what was seen: nothing
    /// at the path, the function present and unbound, or bound to another driver (named).
    pub fn wait_function_timeout(
        &self,
        path: &PciPath,
        state: &DriverState,
        timeout: Duration,
    ) -> Result<PciFunction> {
        self.function_until(path, state, deadline_after(timeout))
    }

    /// [`wait_function`](Self::wait_function), waiting until `deadline`.
    ///
    /// # Errors
    ///
    /// As [`wait_function_timeout`](Self::wait_function_timeout).
    pub fn wait_function_deadline(
        &self,
        path: &PciPath,
        state: &DriverState,
        deadline: Instant,
    ) -> Result<PciFunction> {
        self.function_until(path, state, Some(deadline))
    }

    /// The one wait for a function, until `deadline` (`None`: for ever).
    pub(crate) fn function_until(
        &self,
        path: &PciPath,
        state: &DriverState,
        deadline: Option<Instant>,
    ) -> Result<PciFunction> {
        let what = match state {
            DriverState::Any => "PCI function".to_owned(),
            other => format!("PCI function {other}"),
        };
        let dev = self.wait_seen(path, &what, function::seen, deadline, |r| {
            r.get(path)
                .filter(|d| state.matches(d.driver.as_deref()))
                .cloned()
        })?;
        PciFunction::read(&dev, self.sysfs_root())
    }

    /// The PCI function at `path` if it is there now in `state`: `Ok(None)` if it is not.
    ///
    /// # Errors
    ///
    /// - [`Error::Io`](crate::Error::Io) if the function's `iommu_group` link cannot be read (other than absent).
    /// - [`Error::ListenerStopped`](crate::Error::ListenerStopped) once the listener has
    ///   stopped: its registry is no longer kept, so it answers nothing, as the waits do.
    pub fn try_function(&self, path: &PciPath, state: &DriverState) -> Result<Option<PciFunction>> {
        let dev = self.try_now(|r| {
            r.get(path)
                .filter(|d| state.matches(d.driver.as_deref()))
                .cloned()
        })?;
        dev.map(|d| PciFunction::read(&d, self.sysfs_root()))
            .transpose()
    }
}
