//! The waits for a PCI function in a driver state: `wait_function`, `_timeout`, `_deadline`, `try_`.

use std::time::{Duration, Instant};

use super::Monitor;
use crate::function::{DriverState, PciFunction};
use crate::path::PciPath;
use crate::wait::deadline::Deadline;
use crate::wait::error::{WaitError, Wanted};

impl Monitor {
    /// The PCI function at `path` once it is present in `state` (bound to a driver, to a
    /// named one, unbound, or [`DriverState::Any`]), waiting for ever. Its IOMMU group is read
    /// from sysfs when it answers.
    ///
    /// # Errors
    ///
    /// - [`WaitError::Io`](crate::WaitError::Io) if the function's `iommu_group` link cannot be read (other than absent).
    /// - [`WaitError::ListenerStopped`](crate::WaitError::ListenerStopped) if the listener thread stopped (shut down, or failed: the
    ///   reason is in the message) before the answer came: the registry is no longer kept.
    /// - [`WaitError::SysfsWrite`](crate::WaitError::SysfsWrite) if [`MonitorBuilder::rescan`](crate::MonitorBuilder::rescan) is on and a rescan is refused.
    pub fn wait_function(
        &self,
        path: &PciPath,
        state: &DriverState,
    ) -> Result<PciFunction, WaitError> {
        self.function_until(path, state, Deadline::never())
    }

    /// [`wait_function`](Self::wait_function), waiting up to `timeout`.
    ///
    /// # Errors
    ///
    /// As [`wait_function`](Self::wait_function), and [`WaitError::Timeout`](crate::WaitError::Timeout)
    /// if it is not there in `state` by the deadline; the message says what was seen: nothing
    /// at the path, the function present and unbound, or bound to another driver (named).
    pub fn wait_function_timeout(
        &self,
        path: &PciPath,
        state: &DriverState,
        timeout: Duration,
    ) -> Result<PciFunction, WaitError> {
        self.function_until(path, state, Deadline::after(timeout))
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
    ) -> Result<PciFunction, WaitError> {
        self.function_until(path, state, Deadline::at(deadline))
    }

    /// The one wait for a function, until `deadline` (`None`: for ever).
    pub(crate) fn function_until(
        &self,
        path: &PciPath,
        state: &DriverState,
        deadline: Deadline,
    ) -> Result<PciFunction, WaitError> {
        let wanted = Wanted::Function(state.clone());
        let dev = self.wait(path, wanted, deadline, |r| {
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
    /// - [`WaitError::Io`](crate::WaitError::Io) if the function's `iommu_group` link cannot be read (other than absent).
    /// - [`WaitError::ListenerStopped`](crate::WaitError::ListenerStopped) once the listener has
    ///   stopped: its registry is no longer kept, so it answers nothing, as the waits do.
    pub fn try_function(
        &self,
        path: &PciPath,
        state: &DriverState,
    ) -> Result<Option<PciFunction>, WaitError> {
        let dev = self.try_now(|r| {
            r.get(path)
                .filter(|d| state.matches(d.driver.as_deref()))
                .cloned()
        })?;
        dev.map(|d| PciFunction::read(&d, self.sysfs_root()))
            .transpose()
    }
}
