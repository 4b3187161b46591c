//! The async forms of the waits: `wait_block_async` and the rest, each a [`WaitFuture`].
//!
//! Each takes the same arguments as the sync wait of its name and resolves to what it
//! returns, with the same errors: `wait_block_async` waits for ever (cancel it by dropping
//! the future, for example with `tokio::time::timeout`), `wait_block_timeout_async` up to a
//! timeout, `wait_block_deadline_async` until a deadline. [`Monitor::vfio`] has none: it writes to sysfs and waits for a
//! device node, so it runs on a blocking thread.

use std::time::{Duration, Instant};

use super::Monitor;
use super::future::{Answer, Before, Timeout, WaitFuture};
use crate::address::{DiskAddress, Unit};
use crate::function::{DriverState, PciFunction};
use crate::path::PciPath;
use crate::registry::{BlockDevice, NetInterface, Registry};
use crate::wait::Watch;
use crate::wait::deadline::Deadline;
use crate::wait::error::{WaitError, WaitTimeout, Wanted};

impl Monitor {
    /// [`wait_block`](Self::wait_block) as a future: waits for ever (cancel it by dropping
    /// it).
    ///
    /// # Errors
    ///
    /// As [`wait_block`](Self::wait_block).
    pub fn wait_block_async(&self, path: &PciPath) -> WaitFuture<BlockDevice> {
        self.block_future(path, Deadline::never())
    }

    /// [`wait_block_timeout`](Self::wait_block_timeout) as a future.
    ///
    /// # Errors
    ///
    /// As [`wait_block_timeout`](Self::wait_block_timeout); the timer thread of deadlines not
    /// starting is an [`WaitError::Io`].
    pub fn wait_block_timeout_async(
        &self,
        path: &PciPath,
        timeout: Duration,
    ) -> WaitFuture<BlockDevice> {
        self.block_future(path, Deadline::after(timeout))
    }

    /// [`wait_block_deadline`](Self::wait_block_deadline) as a future.
    ///
    /// # Errors
    ///
    /// As [`wait_block_timeout_async`](Self::wait_block_timeout_async).
    pub fn wait_block_deadline_async(
        &self,
        path: &PciPath,
        deadline: Instant,
    ) -> WaitFuture<BlockDevice> {
        self.block_future(path, Deadline::at(deadline))
    }

    fn block_future(&self, path: &PciPath, deadline: Deadline) -> WaitFuture<BlockDevice> {
        self.disk_future(&DiskAddress::at(*path), deadline)
    }

    /// [`wait_disk`](Self::wait_disk) as a future: waits for ever (cancel it by dropping it).
    /// The SCSI scan, if on, is made at the first poll.
    ///
    /// # Errors
    ///
    /// As [`wait_disk`](Self::wait_disk).
    pub fn wait_disk_async(&self, address: &DiskAddress) -> WaitFuture<BlockDevice> {
        self.disk_future(address, Deadline::never())
    }

    /// [`wait_disk_timeout`](Self::wait_disk_timeout) as a future.
    ///
    /// # Errors
    ///
    /// As [`wait_disk_timeout`](Self::wait_disk_timeout); the timer thread of deadlines not
    /// starting is an [`WaitError::Io`].
    pub fn wait_disk_timeout_async(
        &self,
        address: &DiskAddress,
        timeout: Duration,
    ) -> WaitFuture<BlockDevice> {
        self.disk_future(address, Deadline::after(timeout))
    }

    /// [`wait_disk_deadline`](Self::wait_disk_deadline) as a future.
    ///
    /// # Errors
    ///
    /// As [`wait_disk_timeout_async`](Self::wait_disk_timeout_async).
    pub fn wait_disk_deadline_async(
        &self,
        address: &DiskAddress,
        deadline: Instant,
    ) -> WaitFuture<BlockDevice> {
        self.disk_future(address, Deadline::at(deadline))
    }

    /// The one async wait for a disk, until `deadline` (`None`: for ever).
    fn disk_future(&self, address: &DiskAddress, deadline: Deadline) -> WaitFuture<BlockDevice> {
        let address = *address;
        let before: Option<Before> =
            if self.inner.scsi_scan && matches!(address.unit(), Some(Unit::Scsi(_))) {
                Some(Box::new(move |m: &Monitor| {
                    m.scan_scsi(&address)
                        .map(drop)
                        .map_err(WaitError::from_edge)
                }))
            } else {
                None
            };
        let answer: Answer<BlockDevice> =
            Box::new(move |r: &Registry| match r.find_disk(&address) {
                Ok(found) => found.cloned().map(Ok),
                Err(ambiguous) => Some(Err(WaitError::Ambiguous(ambiguous))),
            });
        match address.path() {
            Some(path) => {
                let wanted = super::disk::wanted(&address);
                self.future_at(*path, wanted, deadline, answer, before)
            }
            None => {
                let timeout: Timeout = Box::new(move |r: &Registry, given| {
                    super::disk::anywhere_timeout(&address, r, given)
                });
                WaitFuture::new(self, Watch::Anywhere, deadline, answer, timeout, before)
            }
        }
    }

    /// [`wait_net`](Self::wait_net) as a future: waits for ever (cancel it by dropping it).
    ///
    /// # Errors
    ///
    /// As [`wait_net`](Self::wait_net).
    pub fn wait_net_async(&self, path: &PciPath) -> WaitFuture<NetInterface> {
        self.net_future(path, Deadline::never())
    }

    /// [`wait_net_timeout`](Self::wait_net_timeout) as a future.
    ///
    /// # Errors
    ///
    /// As [`wait_net_timeout`](Self::wait_net_timeout); the timer thread of deadlines not
    /// starting is an [`WaitError::Io`].
    pub fn wait_net_timeout_async(
        &self,
        path: &PciPath,
        timeout: Duration,
    ) -> WaitFuture<NetInterface> {
        self.net_future(path, Deadline::after(timeout))
    }

    /// [`wait_net_deadline`](Self::wait_net_deadline) as a future.
    ///
    /// # Errors
    ///
    /// As [`wait_net_timeout_async`](Self::wait_net_timeout_async).
    pub fn wait_net_deadline_async(
        &self,
        path: &PciPath,
        deadline: Instant,
    ) -> WaitFuture<NetInterface> {
        self.net_future(path, Deadline::at(deadline))
    }

    fn net_future(&self, path: &PciPath, deadline: Deadline) -> WaitFuture<NetInterface> {
        let path = *path;
        let answer: Answer<NetInterface> =
            Box::new(move |r: &Registry| r.net(&path).cloned().map(Ok));
        self.future_at(path, Wanted::Net, deadline, answer, None)
    }

    /// [`wait_removed`](Self::wait_removed) as a future: waits for ever (cancel it by
    /// dropping it).
    ///
    /// # Errors
    ///
    /// As [`wait_removed`](Self::wait_removed).
    pub fn wait_removed_async(&self, path: &PciPath) -> WaitFuture<()> {
        self.removed_future(path, Deadline::never())
    }

    /// [`wait_removed_timeout`](Self::wait_removed_timeout) as a future.
    ///
    /// # Errors
    ///
    /// As [`wait_removed_timeout`](Self::wait_removed_timeout); the timer thread of deadlines
    /// not starting is an [`WaitError::Io`].
    pub fn wait_removed_timeout_async(&self, path: &PciPath, timeout: Duration) -> WaitFuture<()> {
        self.removed_future(path, Deadline::after(timeout))
    }

    /// [`wait_removed_deadline`](Self::wait_removed_deadline) as a future.
    ///
    /// # Errors
    ///
    /// As [`wait_removed_timeout_async`](Self::wait_removed_timeout_async).
    pub fn wait_removed_deadline_async(&self, path: &PciPath, deadline: Instant) -> WaitFuture<()> {
        self.removed_future(path, Deadline::at(deadline))
    }

    fn removed_future(&self, path: &PciPath, deadline: Deadline) -> WaitFuture<()> {
        let path = *path;
        let answer: Answer<()> =
            Box::new(move |r: &Registry| r.get(&path).is_none().then_some(Ok(())));
        self.future_at(path, Wanted::Removal, deadline, answer, None)
    }

    /// [`wait_function`](Self::wait_function) as a future: waits for ever (cancel it by
    /// dropping it).
    ///
    /// # Errors
    ///
    /// As [`wait_function`](Self::wait_function).
    pub fn wait_function_async(
        &self,
        path: &PciPath,
        state: &DriverState,
    ) -> WaitFuture<PciFunction> {
        self.function_future(path, state, Deadline::never())
    }

    /// [`wait_function_timeout`](Self::wait_function_timeout) as a future.
    ///
    /// # Errors
    ///
    /// As [`wait_function_timeout`](Self::wait_function_timeout); the timer thread of
    /// deadlines not starting is an [`WaitError::Io`].
    pub fn wait_function_timeout_async(
        &self,
        path: &PciPath,
        state: &DriverState,
        timeout: Duration,
    ) -> WaitFuture<PciFunction> {
        self.function_future(path, state, Deadline::after(timeout))
    }

    /// [`wait_function_deadline`](Self::wait_function_deadline) as a future.
    ///
    /// # Errors
    ///
    /// As [`wait_function_timeout_async`](Self::wait_function_timeout_async).
    pub fn wait_function_deadline_async(
        &self,
        path: &PciPath,
        state: &DriverState,
        deadline: Instant,
    ) -> WaitFuture<PciFunction> {
        self.function_future(path, state, Deadline::at(deadline))
    }

    fn function_future(
        &self,
        path: &PciPath,
        state: &DriverState,
        deadline: Deadline,
    ) -> WaitFuture<PciFunction> {
        let path = *path;
        let wanted = Wanted::Function(state.clone());
        let state = state.clone();
        let sysfs_root = self.sysfs_root().to_owned();
        // The function's IOMMU group is read from sysfs once it answers, as the sync wait
        // does (one `readlink`, here under the state lock).
        let answer: Answer<PciFunction> = Box::new(move |r: &Registry| {
            let dev = r
                .get(&path)
                .filter(|d| state.matches(d.driver.as_deref()))?;
            Some(PciFunction::read(dev, &sysfs_root))
        });
        self.future_at(path, wanted, deadline, answer, None)
    }

    /// A future waiting at `path`, whose timeout says it was `wanted` and what was seen there.
    fn future_at<T>(
        &self,
        path: PciPath,
        wanted: Wanted,
        deadline: Deadline,
        answer: Answer<T>,
        before: Option<Before>,
    ) -> WaitFuture<T> {
        let timeout: Timeout = Box::new(move |r: &Registry, given| {
            WaitError::from(WaitTimeout {
                wanted: wanted.clone(),
                path: Some(path),
                timeout: given,
                seen: r.seen(&path),
            })
        });
        WaitFuture::new(self, Watch::Path(path), deadline, answer, timeout, before)
    }
}
