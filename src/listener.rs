//! [`Monitor`]: the uevent thread that keeps the registry live, and the handle to wait on it.
//!
//! Start-up is race-free: the socket is bound first, then sysfs is scanned (coldplug), and
//! only then does the thread read the events that queued meanwhile. An event that happened
//! during the scan is therefore applied after it; applying one the scan already saw changes
//! nothing, and a device removed during the scan is removed again by its queued `remove`.
//!
//! When the kernel reports that events were lost (`ENOBUFS`), the thread drains what is
//! queued, rescans sysfs and reconciles, so the registry converges to the truth and every
//! waiter whose answer appeared meanwhile is woken.
//!
//! However the thread ends (shut down, a receive error, even a panic), it marks the monitor
//! stopped and wakes every waiter, so that no wait hangs on a listener that is gone.

use std::fmt;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::Mutex;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::netlink::{Received, SocketOptions, Stopper, UeventSocket};
use crate::path::PciPath;
use crate::registry::{BlockDevice, Change, DevType, NetInterface, Outcome, Registry, Transport};
use crate::sysfs::Sysfs;
use crate::uevent::MAX_DATAGRAM;
use crate::wait::sync::{Mutex as StateLock, MutexGuard as StateGuard};
use crate::wait::{State, Status, Waiters, Wakeups, Wanted, wait_for};

/// Configures and starts a [`Monitor`].
#[derive(Clone, Debug)]
pub struct MonitorBuilder {
    sysfs_root: PathBuf,
    recv_buffer: usize,
    coldplug: bool,
    fault_hook: Option<FaultHook>,
}

/// What [`MonitorBuilder::fault_hook`] calls with each datagram.
type FaultFn = dyn Fn(&[u8]) -> io::Result<()> + Send + Sync;

/// A test's stand-in for a failing receive: see [`MonitorBuilder::fault_hook`].
#[derive(Clone)]
struct FaultHook(Arc<FaultFn>);

impl fmt::Debug for FaultHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FaultHook")
    }
}

impl Default for MonitorBuilder {
    fn default() -> Self {
        MonitorBuilder {
            sysfs_root: PathBuf::from("/sys"),
            recv_buffer: crate::netlink::DEFAULT_RECV_BUFFER,
            coldplug: true,
            fault_hook: None,
        }
    }
}

impl MonitorBuilder {
    /// Where sysfs is mounted. Default `/sys`.
    pub fn sysfs_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.sysfs_root = root.into();
        self
    }

    /// The socket's receive buffer in bytes. Default 128 MiB, as udevd; set with
    /// `SO_RCVBUFFORCE` when permitted, else `SO_RCVBUF` (capped by `net.core.rmem_max`).
    pub fn recv_buffer(mut self, bytes: usize) -> Self {
        self.recv_buffer = bytes;
        self
    }

    /// Whether to scan sysfs for the devices present before the listener started.
    /// Default `true`. Without it (tests), the registry starts empty, and an overflow is
    /// still resynced from sysfs.
    pub fn coldplug(mut self, yes: bool) -> Self {
        self.coldplug = yes;
        self
    }

    /// Test support: `hook` sees every datagram the listener receives, before it is handled.
    /// An `Err` is treated as a receive error (the listener stops with it); a panic panics
    /// the listener thread. Lets tests check that waiters learn of a listener that failed.
    #[doc(hidden)]
    pub fn fault_hook(
        mut self,
        hook: impl Fn(&[u8]) -> io::Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.fault_hook = Some(FaultHook(Arc::new(hook)));
        self
    }

    /// Binds the socket, scans sysfs, and starts the listener thread.
    ///
    /// Fails if the socket cannot be opened or sysfs cannot be read.
    pub fn start(self) -> Result<Monitor> {
        // 1. Subscribe first: from here on no event can be missed.
        let socket = SocketOptions::new().recv_buffer(self.recv_buffer).open()?;
        let sysfs = Sysfs::new(&self.sysfs_root);
        // 2. Scan: the devices present now, read after the subscription.
        let mut registry = Registry::new();
        if self.coldplug {
            sysfs.scan()?.apply_to(&mut registry);
        }
        let shared = Arc::new(Shared {
            state: StateLock::new(State {
                registry,
                waiters: Waiters::default(),
                status: Status::Running,
            }),
            subscribers: Mutex::new(Vec::new()),
            counters: Counters::default(),
        });
        let stopper = socket.stopper();
        let thread_shared = Arc::clone(&shared);
        // 3. Only now read the events queued since step 1, in the thread.
        let hook = self.fault_hook;
        let thread = thread::Builder::new()
            .name("pciplug-uevents".into())
            .spawn(move || run_listener(socket, sysfs, &thread_shared, hook))
            .map_err(|e| Error::io("spawning the uevent listener thread", e))?;
        Ok(Monitor {
            inner: Arc::new(Inner {
                shared,
                stopper,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }
}

/// A live registry of the guest's PCI devices, kept by a uevent thread, with blocking waits.
///
/// `Monitor` is a cheap, `Send + Sync` handle: clone it into every thread that waits. When
/// the last handle is dropped, or [`Monitor::shutdown`] is called, the thread stops (within
/// the time it takes to notice an eventfd), the socket is closed, and pending waiters get
/// [`Error::ListenerStopped`].
///
/// The waits come in the family style of crossbeam: `wait_block(path, timeout)`,
/// `wait_block_deadline(path, deadline)`, `try_block(path)`; likewise for `net` and for the
/// removal of a path. A wait returns at once if the answer is already there.
#[derive(Clone, Debug)]
pub struct Monitor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    stopper: Stopper,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    state: StateLock<State>,
    /// `watch` subscribers. Lock order: `state` before `subscribers`.
    subscribers: Mutex<Vec<Sender<Change>>>,
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
}

/// Counts of what the listener saw, for `watch --stats` and for tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MonitorStats {
    /// Datagrams received, by outcome (from the registry).
    #[serde(flatten)]
    pub registry: crate::registry::Stats,
    /// Datagrams longer than the receive buffer (also not applied).
    pub truncated: u64,
    /// Times the kernel reported lost events (`ENOBUFS`).
    pub overflows: u64,
    /// Sysfs rescans that reconciled the registry after an overflow.
    pub resyncs: u64,
    /// Rescans that failed (the registry may be stale until the next one).
    pub resync_failures: u64,
    /// Changes not delivered to a `watch` subscriber that did not keep up.
    pub dropped_changes: u64,
    /// Threads waiting right now.
    pub waiters: u64,
    /// Distinct PCI paths being waited on right now (the size of the waiter table).
    pub waiting_paths: u64,
}

/// Changes a subscriber may fall behind by before it misses some.
const SUBSCRIBER_BACKLOG: usize = 65536;

impl Monitor {
    /// A builder with the defaults (`/sys`, a 128 MiB buffer, coldplug on).
    pub fn builder() -> MonitorBuilder {
        MonitorBuilder::default()
    }

    /// Starts a monitor with the defaults.
    pub fn start() -> Result<Monitor> {
        MonitorBuilder::default().start()
    }

    /// The whole block device at `path` (a disk, not a partition), waiting up to `timeout`.
    ///
    /// With native NVMe multipath, this is the namespace head (`nvme0n1`), never the hidden
    /// per-path disk.
    pub fn wait_block(&self, path: &PciPath, timeout: Duration) -> Result<BlockDevice> {
        self.wait_block_deadline(path, deadline_after(timeout))
    }

    /// Like [`wait_block`](Self::wait_block), until `deadline` (`None`: for ever).
    pub fn wait_block_deadline(
        &self,
        path: &PciPath,
        deadline: impl Into<Option<Instant>>,
    ) -> Result<BlockDevice> {
        self.wait(path, "block disk", deadline.into(), |r| {
            r.disk(path).cloned()
        })
    }

    /// The whole block device at `path` if it is there now.
    pub fn try_block(&self, path: &PciPath) -> Option<BlockDevice> {
        self.inner.shared.state.lock().registry.disk(path).cloned()
    }

    /// The network interface at `path`, waiting up to `timeout`.
    pub fn wait_net(&self, path: &PciPath, timeout: Duration) -> Result<NetInterface> {
        self.wait_net_deadline(path, deadline_after(timeout))
    }

    /// Like [`wait_net`](Self::wait_net), until `deadline` (`None`: for ever).
    pub fn wait_net_deadline(
        &self,
        path: &PciPath,
        deadline: impl Into<Option<Instant>>,
    ) -> Result<NetInterface> {
        self.wait(path, "network interface", deadline.into(), |r| {
            r.net(path).cloned()
        })
    }

    /// The network interface at `path` if it is there now.
    pub fn try_net(&self, path: &PciPath) -> Option<NetInterface> {
        self.inner.shared.state.lock().registry.net(path).cloned()
    }

    /// Waits up to `timeout` until no PCI function is at `path`.
    pub fn wait_removed(&self, path: &PciPath, timeout: Duration) -> Result<()> {
        self.wait_removed_deadline(path, deadline_after(timeout))
    }

    /// Like [`wait_removed`](Self::wait_removed), until `deadline` (`None`: for ever).
    pub fn wait_removed_deadline(
        &self,
        path: &PciPath,
        deadline: impl Into<Option<Instant>>,
    ) -> Result<()> {
        self.wait(path, "removal of the PCI device", deadline.into(), |r| {
            r.get(path).is_none().then_some(())
        })
    }

    fn wait<T>(
        &self,
        path: &PciPath,
        what: &str,
        deadline: Option<Instant>,
        answer: impl Fn(&Registry) -> Option<T>,
    ) -> Result<T> {
        let wanted = Wanted { what, path: *path };
        wait_for(&self.inner.shared.state, wanted, deadline, answer)
    }

    /// A copy of the registry as it is now.
    pub fn registry(&self) -> Registry {
        self.inner.shared.state.lock().registry.clone()
    }

    /// Runs `f` on the registry under the lock (for cheap reads without a copy).
    pub fn with_registry<T>(&self, f: impl FnOnce(&Registry) -> T) -> T {
        f(&self.inner.shared.state.lock().registry)
    }

    /// Every change the registry makes from now on, in order. A subscriber that falls more
    /// than 65536 changes behind misses the excess (counted in
    /// [`MonitorStats::dropped_changes`]).
    pub fn subscribe(&self) -> Receiver<Change> {
        let (tx, rx) = crossbeam_channel::bounded(SUBSCRIBER_BACKLOG);
        let _state = self.inner.shared.state.lock(); // no change is applied while subscribing
        self.inner.shared.subscribers.lock().push(tx);
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
            resyncs: c.resyncs.load(Ordering::Relaxed),
            resync_failures: c.resync_failures.load(Ordering::Relaxed),
            dropped_changes: c.dropped_changes.load(Ordering::Relaxed),
            waiters: st.waiters.waiters() as u64,
            waiting_paths: st.waiters.paths() as u64,
        }
    }

    /// `Some(reason)` once the listener has stopped (shut down or failed).
    pub fn stopped(&self) -> Option<String> {
        match &self.inner.shared.state.lock().status {
            Status::Running => None,
            Status::Stopped(why) => Some(why.clone()),
        }
    }

    /// Stops the listener thread, closes the socket and wakes every pending waiter with
    /// [`Error::ListenerStopped`]; later waits fail the same way at once, since the registry
    /// is no longer kept. Idempotent; also done when the last handle is dropped.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }
}

impl Inner {
    fn shutdown(&self) {
        self.stopper.stop();
        let thread = self.thread.lock().take();
        if let Some(t) = thread {
            if t.join().is_err() {
                tracing::error!("the uevent listener thread panicked");
            }
        }
        // The thread marks itself stopped; if it had already failed, its reason is kept.
        self.shared.state.lock().stop("shut down".into());
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn deadline_after(timeout: Duration) -> Option<Instant> {
    // A timeout too large to represent is no timeout.
    Instant::now().checked_add(timeout)
}

/// The listener thread's body: listens until it must stop, then marks the monitor stopped
/// and wakes every waiter, whatever ended it, a panic included.
fn run_listener(socket: UeventSocket, sysfs: Sysfs, shared: &Shared, hook: Option<FaultHook>) {
    // A panic (a bug) must not leave waiters parked for ever on a listener that is gone. The
    // state lock is not poisoned by it (parking_lot), so the registry stays readable.
    let why = panic::catch_unwind(AssertUnwindSafe(|| {
        listen(&socket, &sysfs, shared, hook.as_ref())
    }))
    .unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        tracing::error!("the uevent listener thread panicked: {what}");
        format!("the uevent listener thread panicked: {what}")
    });
    shared.state.lock().stop(why);
    // Dropping the senders ends every subscriber's stream.
    shared.subscribers.lock().clear();
}

/// Receive, apply, wake; resync on overflow. Returns why it stopped.
fn listen(
    socket: &UeventSocket,
    sysfs: &Sysfs,
    shared: &Shared,
    hook: Option<&FaultHook>,
) -> String {
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        match socket.recv(&mut buf) {
            Ok(Received::Datagram(env)) => {
                if let Some(FaultHook(hook)) = hook {
                    if let Err(e) = hook(env.bytes(&buf)) {
                        tracing::error!("receiving uevents: {e}");
                        return format!("receiving uevents: {e}");
                    }
                }
                if env.truncated {
                    shared.counters.truncated.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(len = env.len, "truncated uevent datagram skipped");
                    continue;
                }
                handle_datagram(shared, sysfs, env.sender_port, env.bytes(&buf));
            }
            Ok(Received::Overflow) => {
                shared.counters.overflows.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("uevent socket overflowed (ENOBUFS): events were lost; resyncing");
                if let Some(why) = resync(socket, sysfs, shared, &mut buf) {
                    return why;
                }
            }
            Ok(Received::TimedOut) => {}
            Ok(Received::Stopped) => return "shut down".to_owned(),
            Err(e) => {
                tracing::error!("receiving uevents: {e}");
                return format!("receiving uevents: {e}");
            }
        }
    }
}

fn handle_datagram(shared: &Shared, sysfs: &Sysfs, sender: u32, bytes: &[u8]) {
    let mut st = shared.state.lock();
    match st.registry.apply_datagram(sender, bytes) {
        Outcome::Applied(changes) => {
            let heads = unresolved_subsystems(&changes);
            publish(shared, st, changes);
            if !heads.is_empty() {
                resolve_nvme_heads(shared, sysfs, &heads);
            }
        }
        Outcome::Ignored(_) => {}
        Outcome::Spoofed { sender } => {
            tracing::warn!(
                sender,
                "uevent from a process, not the kernel: not believed"
            )
        }
        Outcome::Malformed(e) => tracing::warn!("malformed uevent skipped: {e}"),
        Outcome::Unplaceable(e) => tracing::warn!("uevent skipped: {e}"),
    }
}

/// NVMe subsystems with a head or controller that appeared untied in `changes`.
fn unresolved_subsystems(changes: &[Change]) -> Vec<String> {
    let mut subs: Vec<String> = Vec::new();
    for c in changes {
        let sub = match c {
            Change::BlockAdded {
                path: None,
                block:
                    BlockDevice {
                        devtype: DevType::Disk,
                        transport: Transport::NvmeMultipath { subsystem },
                        ..
                    },
            } => subsystem.to_string(),
            // A controller that appears after its heads: look again at every untied head.
            Change::NvmeAdded { .. } => "*".to_owned(),
            _ => continue,
        };
        if !subs.contains(&sub) {
            subs.push(sub);
        }
    }
    subs
}

/// Ties NVMe multipath heads to their controllers' PCI paths, with what sysfs says. The
/// sysfs reads happen outside the lock.
fn resolve_nvme_heads(shared: &Shared, sysfs: &Sysfs, subsystems: &[String]) {
    let mut subsystems = subsystems.to_vec();
    if subsystems.iter().any(|s| s == "*") {
        let st = shared.state.lock();
        subsystems = st
            .registry
            .unresolved_nvme_heads()
            .map(|(s, _)| s.to_owned())
            .collect();
        subsystems.dedup();
    }
    let mut links = Vec::new();
    for sub in &subsystems {
        match sysfs.nvme_links_of(sub) {
            Ok(l) => links.extend(l),
            Err(e) => tracing::warn!("resolving NVMe heads of {sub}: {e}"),
        }
    }
    if links.is_empty() {
        return;
    }
    let mut st = shared.state.lock();
    let mut changes = Vec::new();
    for link in &links {
        changes.extend(link.apply_to(&mut st.registry));
    }
    publish(shared, st, changes);
}

/// Hands the changes to subscribers, releases the state lock, then wakes the waiters of every
/// path that changed. Subscribers get the changes under the state lock, so that one that
/// subscribes gets exactly those applied after it did. Waiters are woken once the lock is
/// released (see `wait.rs`): one that runs at once on this CPU finds the lock free.
fn publish(shared: &Shared, st: StateGuard<'_, State>, changes: Vec<Change>) {
    let mut wakeups = Wakeups::default();
    let mut last = None;
    for c in &changes {
        if let Some(p) = c.path() {
            // Consecutive changes are usually about one path; note it once.
            if last != Some(p) {
                wakeups.add(&st.waiters, &p);
                last = Some(p);
            }
        }
    }
    send_to_subscribers(shared, changes);
    drop(st);
    wakeups.wake();
}

/// Hands `changes` to every subscriber; called with the state lock held.
fn send_to_subscribers(shared: &Shared, changes: Vec<Change>) {
    let mut subs = shared.subscribers.lock();
    if subs.is_empty() {
        return;
    }
    for c in changes {
        subs.retain(|tx| match tx.try_send(c.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                shared
                    .counters
                    .dropped_changes
                    .fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
    }
}

/// After an overflow: drain what is queued (the kernel drops new events until the queue is
/// empty), rescan sysfs, and reconcile. Returns `Some(reason)` if the thread must stop.
fn resync(socket: &UeventSocket, sysfs: &Sysfs, shared: &Shared, buf: &mut [u8]) -> Option<String> {
    loop {
        match socket.recv_timeout(buf, Duration::ZERO) {
            Ok(Received::Datagram(env)) if !env.truncated => {
                handle_datagram(shared, sysfs, env.sender_port, env.bytes(buf))
            }
            Ok(Received::Datagram(_)) => {
                shared.counters.truncated.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Received::Overflow) => {
                shared.counters.overflows.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Received::TimedOut) => break,
            Ok(Received::Stopped) => return Some("shut down".to_owned()),
            Err(e) => return Some(format!("receiving uevents: {e}")),
        }
    }
    // Events from now on queue in the socket and are applied after the reconcile, exactly as
    // at start-up.
    let truth = match sysfs.scan() {
        Ok(snapshot) => {
            let mut r = Registry::new();
            snapshot.apply_to(&mut r);
            r
        }
        Err(e) => {
            shared
                .counters
                .resync_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!("resync after lost uevents failed: {e}; the registry may be stale");
            return None;
        }
    };
    let mut st = shared.state.lock();
    let changes = st.registry.reconcile(truth);
    shared.counters.resyncs.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        changes = changes.len(),
        "resynced from sysfs after lost uevents"
    );
    publish(shared, st, changes);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handle_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Monitor>();
    }

    #[test]
    fn nvme_heads_that_appear_untied_are_resolved_per_subsystem() {
        let head = BlockDevice {
            name: "nvme0n1".into(),
            devtype: DevType::Disk,
            major: None,
            minor: None,
            diskseq: Some(6),
            partn: None,
            disk: None,
            transport: Transport::NvmeMultipath {
                subsystem: "nvme-subsys0".into(),
            },
            devpath: "/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1".into(),
        };
        let changes = vec![
            Change::BlockAdded {
                path: None,
                block: head.clone(),
            },
            Change::BlockAdded {
                path: None,
                block: head,
            },
        ];
        assert_eq!(unresolved_subsystems(&changes), ["nvme-subsys0"]);
    }
}
