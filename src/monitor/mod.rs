//! [`Monitor`]: the handle to the live registry, and its waits.
//!
//! Start-up is race-free ([`MonitorBuilder::start`]): the socket is bound first, then sysfs
//! is scanned (coldplug), and only then does the listener thread read the events that
//! queued meanwhile. An event that happened during the scan is therefore applied after it;
//! applying one the scan already saw changes nothing, and a device removed during the scan
//! is removed again by its queued `remove`.
//!
//! The thread (`thread.rs`) receives, applies and wakes; when the kernel reports that events
//! were lost (`ENOBUFS`), it drains what is queued, rescans sysfs and reconciles, so the
//! registry converges to the truth and every waiter whose answer appeared meanwhile is woken.
//! However it ends (shut down, a receive error, even a panic), it marks the monitor stopped
//! and wakes every waiter, so that no wait hangs on a listener that is gone.

mod async_waits;
mod builder;
mod disk;
mod function;
mod future;
mod held;
mod namespace;
mod nsid;
mod pacing;
mod resync;
pub(crate) mod state;
#[cfg(feature = "stream")]
mod stream;
mod subscriber;
mod thread;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use parking_lot::Mutex;

use crate::address::DiskAddress;
use crate::error::Result;
use crate::netlink::Stopper;
use crate::path::PciPath;
use crate::registry::{BlockDevice, Change, NetInterface, Registry};

use crate::wait::deadline::Deadline;
use crate::wait::error::{ListenerStopped, WaitError, Wanted};
use crate::wait::{wait_anywhere, wait_for};
pub use builder::MonitorBuilder;
pub use future::WaitFuture;
use state::{StateLock, Status};
#[cfg(feature = "stream")]
pub use stream::ChangeStream;
use subscriber::Subscriber;

/// A live registry of the guest's PCI devices, kept by a uevent thread, with blocking waits.
///
/// `Monitor` is a cheap, `Send + Sync` handle: clone it into every thread that waits. When
/// the last handle is dropped, or [`Monitor::shutdown`] is called, the thread stops (within
/// the time it takes to notice an eventfd), the socket is closed, and pending waiters get
/// [`WaitError::ListenerStopped`](crate::WaitError::ListenerStopped).
///
/// The waits come in families, named as crossbeam names `recv`: `wait_block(path)` waits for
/// ever, `wait_block_timeout(path, timeout)` up to a timeout, `wait_block_deadline(path,
/// deadline)` until an [`Instant`], and `try_block(path)` answers now (`Ok(None)`: not there);
/// likewise for a disk by its full address (`wait_disk`, a [`DiskAddress`]: a path, a SCSI
/// `T:L` or NVMe namespace id), for `net`, for a PCI function in a driver state
/// (`wait_function`) and for the removal of a path (`try_removed` says whether nothing is
/// there). A wait returns at once if the answer is already there; every form, `try_` too,
/// fails once the listener has stopped. Each wait has async forms (`wait_block_async`,
/// `wait_block_timeout_async`, `wait_block_deadline_async`, ...: a [`WaitFuture`]) that block
/// no thread. [`Monitor::vfio`] hands a function to `vfio-pci`.
#[derive(Clone, Debug)]
pub struct Monitor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    /// [`MonitorBuilder::scsi_scan`].
    scsi_scan: bool,
    stopper: Stopper,
    thread: Mutex<Option<JoinHandle<()>>>,
    edges: Edges,
}

/// Where the waits read and write outside the registry (from the builder).
#[derive(Debug)]
struct Edges {
    /// Where sysfs is mounted: IOMMU groups are read and every write goes below it.
    sysfs_root: PathBuf,
    /// Where device nodes are (`/dev`): the VFIO group node is awaited below it.
    dev_root: PathBuf,
    /// Whether every wait rescans the PCI bus ([`MonitorBuilder::rescan`]).
    rescan: bool,
}

/// How often a wait with [`MonitorBuilder::rescan`] on rescans the PCI bus until it answers.
///
/// A rescan walks every bus and reads the configuration space of every empty slot (in a VM,
/// each read a trap to the VMM), under the kernel's one PCI rescan lock, which hot-plug
/// handling also takes: rescanning in a tight loop would slow the very hot-plug it waits
/// for. A device that arrived without a notice is found within this interval, which is far
/// below the seconds a host gives its agent for a device.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Shared {
    state: StateLock,
    /// `watch` subscribers. Lock order: `state` before `subscribers`.
    subscribers: Mutex<Vec<Subscriber>>,
    counters: Counters,
}

/// What the listener saw besides what the registry counts.
#[derive(Debug, Default)]
struct Counters {
    truncated: AtomicU64,
    overflows: AtomicU64,
    resyncs: AtomicU64,
    resync_failures: AtomicU64,
    dropped_changes: AtomicU64,
    /// The socket's subsystem filter is attached (set once, at start).
    subsystem_filter: bool,
}

/// Counts of what the listener saw, for `watch --stats` and for tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct MonitorStats {
    /// Datagrams received, by outcome (from the registry).
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub registry: crate::registry::Stats,
    /// Datagrams longer than the receive buffer (also not applied).
    pub truncated: u64,
    /// Times the kernel reported lost events (`ENOBUFS`).
    pub overflows: u64,
    /// The kernel drops the uevents of subsystems the registry does not read before they are
    /// queued ([`MonitorBuilder::subsystem_filter`]): those are in no count here.
    pub subsystem_filter: bool,
    /// Sysfs rescans that reconciled the registry after an overflow.
    pub resyncs: u64,
    /// Rescans that failed (the registry may be stale until the next one).
    pub resync_failures: u64,
    /// Changes not delivered to a `watch` subscriber that did not keep up.
    pub dropped_changes: u64,
    /// Threads waiting right now.
    pub waiters: u64,
    /// Distinct PCI paths being waited on right now (the size of the waiter table; the waits
    /// for a disk address with no path count as one entry).
    pub waiting_paths: u64,
}

/// Changes a subscriber may fall behind by before it misses some.
const SUBSCRIBER_BACKLOG: usize = 65536;

impl Monitor {
    /// A builder with the defaults (`/sys`, a 128 MiB buffer, the subsystem filter on, coldplug
    /// on, SCSI scan off).
    pub fn builder() -> MonitorBuilder {
        MonitorBuilder::default()
    }

    /// Starts a monitor with the defaults.
    ///
    /// # Errors
    ///
    /// As [`MonitorBuilder::start`].
    pub fn start() -> Result<Monitor> {
        MonitorBuilder::default().start()
    }

    /// The whole block device at `path` (a disk, not a partition), waiting for ever:
    /// [`wait_disk`](Self::wait_disk) with an address that is the path alone. A function that
    /// carries several disks (SCSI LUNs, NVMe namespaces) makes it fail with
    /// [`WaitError::Ambiguous`](crate::WaitError::Ambiguous), never answer one of them.
    ///
    /// With native NVMe multipath, this is the namespace head (`nvme0n1`), never the hidden
    /// per-path disk. A virtio-pmem device's `pmemN` counts as its disk (QEMU cannot unplug a
    /// virtio-pmem device: it refuses the `device_del`, and the guest sees no event).
    ///
    /// The family, as crossbeam's `recv`: `wait_block` (for ever),
    /// [`wait_block_timeout`](Self::wait_block_timeout),
    /// [`wait_block_deadline`](Self::wait_block_deadline), [`try_block`](Self::try_block)
    /// (now), and the async forms ([`wait_block_async`](Self::wait_block_async) ...).
    ///
    /// # Errors
    ///
    /// - [`WaitError::Ambiguous`] if the function at `path` carries several whole disks, with each candidate.
    /// - [`WaitError::ListenerStopped`] if the listener thread stopped (shut down, or failed: the
    ///   reason is in the message) before the answer came: the registry is no longer kept.
    /// - [`WaitError::SysfsWrite`] if [`MonitorBuilder::rescan`] is on and a rescan is refused.
    pub fn wait_block(&self, path: &PciPath) -> Result<BlockDevice, WaitError> {
        self.block_until(path, Deadline::never())
    }

    /// [`wait_block`](Self::wait_block), waiting up to `timeout`.
    ///
    /// # Errors
    ///
    /// As [`wait_block`](Self::wait_block), and [`WaitError::Timeout`] if it is not there by the
    /// deadline; the message says what was at the path then ("no block disk at 02/00 within
    /// 3s: PCI device 0000:01:00.0 present at 02/00, driver virtio-pci bound, no block child").
    pub fn wait_block_timeout(
        &self,
        path: &PciPath,
        timeout: Duration,
    ) -> Result<BlockDevice, WaitError> {
        self.block_until(path, Deadline::after(timeout))
    }

    /// [`wait_block`](Self::wait_block), waiting until `deadline`.
    ///
    /// # Errors
    ///
    /// As [`wait_block_timeout`](Self::wait_block_timeout).
    pub fn wait_block_deadline(
        &self,
        path: &PciPath,
        deadline: Instant,
    ) -> Result<BlockDevice, WaitError> {
        self.block_until(path, Deadline::at(deadline))
    }

    /// The one wait for a block device, until `deadline` (`None`: for ever).
    fn block_until(&self, path: &PciPath, deadline: Deadline) -> Result<BlockDevice, WaitError> {
        self.disk_until(&DiskAddress::at(*path), deadline)
    }

    /// The whole block device at `path` if it is there now: `Ok(None)` if it is not.
    ///
    /// # Errors
    ///
    /// - [`WaitError::Ambiguous`] if the function at `path` carries several whole disks.
    /// - [`WaitError::ListenerStopped`] once the listener has stopped: its registry is no longer
    ///   kept, so it answers nothing, as the waits do.
    pub fn try_block(&self, path: &PciPath) -> Result<Option<BlockDevice>, WaitError> {
        self.try_disk(&DiskAddress::at(*path))
    }

    /// The network interface at `path`, waiting for ever.
    ///
    /// # Errors
    ///
    /// - [`WaitError::ListenerStopped`] if the listener thread stopped (shut down, or failed: the
    ///   reason is in the message) before the answer came: the registry is no longer kept.
    /// - [`WaitError::SysfsWrite`] if [`MonitorBuilder::rescan`] is on and a rescan is refused.
    pub fn wait_net(&self, path: &PciPath) -> Result<NetInterface, WaitError> {
        self.net_until(path, Deadline::never())
    }

    /// [`wait_net`](Self::wait_net), waiting up to `timeout`.
    ///
    /// # Errors
    ///
    /// As [`wait_net`](Self::wait_net), and [`WaitError::Timeout`] if it is not there by the
    /// deadline; the message says what was at the path then ("no network interface at 04/00
    /// within 3s: no PCI device at 04/00").
    pub fn wait_net_timeout(
        &self,
        path: &PciPath,
        timeout: Duration,
    ) -> Result<NetInterface, WaitError> {
        self.net_until(path, Deadline::after(timeout))
    }

    /// [`wait_net`](Self::wait_net), waiting until `deadline`.
    ///
    /// # Errors
    ///
    /// As [`wait_net_timeout`](Self::wait_net_timeout).
    pub fn wait_net_deadline(
        &self,
        path: &PciPath,
        deadline: Instant,
    ) -> Result<NetInterface, WaitError> {
        self.net_until(path, Deadline::at(deadline))
    }

    /// The one wait for a network interface, until `deadline` (`None`: for ever).
    fn net_until(&self, path: &PciPath, deadline: Deadline) -> Result<NetInterface, WaitError> {
        self.wait(path, Wanted::Net, deadline, |r| r.net(path).cloned())
    }

    /// The network interface at `path` if it is there now: `Ok(None)` if it is not.
    ///
    /// # Errors
    ///
    /// [`WaitError::ListenerStopped`] once the listener has stopped.
    pub fn try_net(&self, path: &PciPath) -> Result<Option<NetInterface>, WaitError> {
        self.try_now(|r| r.net(path).cloned())
    }

    /// Waits for ever until no PCI function is at `path`.
    ///
    /// # Errors
    ///
    /// - [`WaitError::ListenerStopped`] if the listener thread stopped (shut down, or failed: the
    ///   reason is in the message) before the answer came: the registry is no longer kept.
    /// - [`WaitError::SysfsWrite`] if [`MonitorBuilder::rescan`] is on and a rescan is refused.
    pub fn wait_removed(&self, path: &PciPath) -> Result<(), WaitError> {
        self.removed_until(path, Deadline::never())
    }

    /// [`wait_removed`](Self::wait_removed), waiting up to `timeout`.
    ///
    /// # Errors
    ///
    /// As [`wait_removed`](Self::wait_removed), and [`WaitError::Timeout`] if a function is still
    /// there at the deadline; the message says which ("no removal of the PCI device at 02/00
    /// within 3s: PCI device 0000:01:00.0 present at 02/00, ...").
    pub fn wait_removed_timeout(&self, path: &PciPath, timeout: Duration) -> Result<(), WaitError> {
        self.removed_until(path, Deadline::after(timeout))
    }

    /// [`wait_removed`](Self::wait_removed), waiting until `deadline`.
    ///
    /// # Errors
    ///
    /// As [`wait_removed_timeout`](Self::wait_removed_timeout).
    pub fn wait_removed_deadline(
        &self,
        path: &PciPath,
        deadline: Instant,
    ) -> Result<(), WaitError> {
        self.removed_until(path, Deadline::at(deadline))
    }

    /// The one wait for a removal, until `deadline` (`None`: for ever).
    fn removed_until(&self, path: &PciPath, deadline: Deadline) -> Result<(), WaitError> {
        self.wait(path, Wanted::Removal, deadline, |r| {
            r.get(path).is_none().then_some(())
        })
    }

    /// Whether no PCI function is at `path` now (`true`: nothing there).
    ///
    /// # Errors
    ///
    /// [`WaitError::ListenerStopped`] once the listener has stopped.
    pub fn try_removed(&self, path: &PciPath) -> Result<bool, WaitError> {
        self.try_now(|r| r.get(path).is_none())
    }

    /// `answer` on the registry now, or [`WaitError::ListenerStopped`] once the listener has
    /// stopped: what the `try_` forms answer, as the waits would at their first look.
    pub(crate) fn try_now<T>(&self, answer: impl FnOnce(&Registry) -> T) -> Result<T, WaitError> {
        let st = self.inner.shared.state.lock();
        if let Status::Stopped(why) = &st.status {
            return Err(why.clone().into());
        }
        Ok(answer(&st.registry))
    }

    /// The wait at `path` for what `answer` finds, until `deadline` (`None`: for ever); a
    /// timeout says it was `wanted` and what was seen at the path. With
    /// [`MonitorBuilder::rescan`], in [`RESCAN_INTERVAL`] slices, each after a rescan.
    fn wait<T>(
        &self,
        path: &PciPath,
        wanted: Wanted,
        deadline: Deadline,
        answer: impl Fn(&Registry) -> Option<T>,
    ) -> Result<T, WaitError> {
        let state = &self.inner.shared.state;
        if !self.inner.edges.rescan {
            return wait_for(state, &wanted, *path, deadline, answer);
        }
        loop {
            crate::sysfs_write::rescan(&self.inner.edges.sysfs_root)?;
            let next = Instant::now().checked_add(RESCAN_INTERVAL);
            let slice_end = match (deadline.at, next) {
                (Some(d), Some(n)) => Some(d.min(n)),
                (d, n) => d.or(n),
            };
            // A slice of the wait, asked for when the wait was: a timeout at its end reports
            // the whole wait's time.
            match wait_for(state, &wanted, *path, deadline.until(slice_end), &answer) {
                Err(WaitError::Timeout(timeout)) if slice_end == deadline.at => {
                    return Err(WaitError::Timeout(timeout));
                }
                Err(WaitError::Timeout(_)) => continue, // the slice ended: rescan again
                done => return done,
            }
        }
    }

    /// Waits until vfio has announced IOMMU group `group` (its uevent on
    /// `/devices/virtual/vfio/<group>`, or the coldplug scan's `class/vfio/<group>`). Woken by
    /// the group's change, which is tied to no path. Fails with `Some` why the listener
    /// stopped, or with `None` at the deadline.
    pub(crate) fn wait_vfio_group(
        &self,
        group: u32,
        deadline: Deadline,
    ) -> Result<(), Option<ListenerStopped>> {
        let answer = |r: &Registry| r.has_vfio_group(group).then_some(());
        wait_anywhere(&self.inner.shared.state, deadline, answer, |_, _| None)
    }

    /// Where this monitor reads sysfs (and writes to it).
    pub(crate) fn sysfs_root(&self) -> &Path {
        &self.inner.edges.sysfs_root
    }

    /// Where this monitor looks for device nodes.
    pub(crate) fn dev_root(&self) -> &Path {
        &self.inner.edges.dev_root
    }

    /// A copy of the registry as it is now.
    pub fn registry(&self) -> Registry {
        self.inner.shared.state.lock().registry.clone()
    }

    /// Runs `f` on the registry under the lock (for cheap reads without a copy).
    pub fn with_registry<T>(&self, f: impl FnOnce(&Registry) -> T) -> T {
        f(&self.inner.shared.state.lock().registry)
    }

    /// Every change the registry makes from now on, in order, on a [`Receiver`](crate::Receiver)
    /// (crossbeam-channel's, re-exported). A subscriber that falls more than 65536 changes
    /// behind misses the excess (counted in [`MonitorStats::dropped_changes`]). The channel
    /// ends (disconnects) when the listener stops.
    pub fn subscribe(&self) -> Receiver<Change> {
        self.subscribe_with(None)
    }

    /// [`subscribe`](Self::subscribe), with a stream's waker to wake after each batch sent.
    fn subscribe_with(&self, waker: Option<Arc<subscriber::StreamWaker>>) -> Receiver<Change> {
        let (tx, rx) = crossbeam_channel::bounded(SUBSCRIBER_BACKLOG);
        let st = self.inner.shared.state.lock(); // no change is applied while subscribing
        let subscriber = Subscriber { tx, waker };
        if matches!(st.status, Status::Stopped(_)) {
            // The listener has closed its subscribers for good: the channel ends at once.
            subscriber.close();
        } else {
            self.inner.shared.subscribers.lock().push(subscriber);
        }
        rx
    }

    /// What the listener saw so far.
    pub fn stats(&self) -> MonitorStats {
        let shared = &self.inner.shared;
        let st = shared.state.lock();
        let c = &shared.counters;
        MonitorStats {
            registry: st.registry.stats(),
            truncated: c.truncated.load(Ordering::Relaxed),
            overflows: c.overflows.load(Ordering::Relaxed),
            subsystem_filter: c.subsystem_filter,
            resyncs: c.resyncs.load(Ordering::Relaxed),
            resync_failures: c.resync_failures.load(Ordering::Relaxed),
            dropped_changes: c.dropped_changes.load(Ordering::Relaxed),
            waiters: st.waiters.waiters() as u64,
            waiting_paths: st.waiters.paths() as u64,
        }
    }

    /// Why the listener stopped (shut down or failed), once it has: what every wait fails
    /// with from then on.
    pub fn stopped(&self) -> Option<ListenerStopped> {
        match &self.inner.shared.state.lock().status {
            Status::Running => None,
            Status::Stopped(why) => Some(why.clone()),
        }
    }

    /// Stops the listener thread, closes the socket and wakes every pending waiter with
    /// [`WaitError::ListenerStopped`](crate::WaitError::ListenerStopped); later waits fail the same
    /// way at once, since the registry is no longer kept. Idempotent; also done when the last
    /// handle is dropped.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }
}

impl Inner {
    fn shutdown(&self) {
        self.stopper.stop();
        let thread = self.thread.lock().take();
        if thread.is_some_and(|t| t.join().is_err()) {
            tracing::error!("the uevent listener thread panicked");
        }
        // The thread marks itself stopped; if it had already failed, its reason is kept.
        self.shared.state.lock().stop(ListenerStopped::ShutDown);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The deadline `timeout` from now (`None` if too large to represent: no timeout).
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Deadline::after(timeout).at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handle_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Monitor>();
    }
}
