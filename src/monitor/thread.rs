//! The listener thread: receive -> apply -> wake; on overflow, a resync owed (paced, see
//! `pacing.rs`): drain -> rescan (in a scanner thread) while holding what arrives (`held.rs`)
//! -> reconcile -> apply what was held.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Shared;
use super::held::Held;
use super::pacing::Pacing;
use super::state::StateGuard;
use super::subscriber::{Sent, Subscriber};
use crate::netlink::{Batch, Envelope, Received, RecvBatch, UeventSocket};
use crate::registry::{BlockDevice, Change, DevType, Outcome, Transport};
use crate::sysfs::Sysfs;
#[cfg(any(test, feature = "test-support"))]
use crate::testing::{FaultHook, ResyncHook, ScanTickHook};
use crate::uevent::MAX_DATAGRAM;
use crate::wait::Wakeups;
use crate::wait::error::{ListenerPanic, ListenerStopped};

/// The most datagrams the listener receives, applies and publishes at once: enough that the
/// cost of a receive (a system call, and the lock and wake-ups of a publish) is spread thin in
/// a storm, small enough that the state lock is never held long (a batch applies in tens of
/// microseconds) and the buffers stay small (256 KiB, allocated zeroed, so touched only as
/// far as datagrams fill them).
const BATCH: usize = 32;

/// How long the listener waits for the state lock before it holds a batch and goes on
/// receiving (`handle_batch`): longer than any short holder keeps it (a waiter looking at its
/// path, a subscriber), shorter than what fills a small receive buffer at the kernel's rate
/// (some 70 uevents in 200 us, 30 KiB).
const BUSY_SPIN: Duration = Duration::from_micros(200);

/// While datagrams are held, how long the listener waits for more before it tries the state
/// lock again (one `poll` millisecond, its least timeout): what is held is applied at most
/// this long after the lock is free.
const BUSY_IDLE: Duration = Duration::from_millis(1);

/// Grows the listener's heap ahead of its next event, after its waiters are woken rather than
/// while they wait.
///
/// glibc serves each thread from an arena that it grows a page at a time, with an `mprotect`
/// and a first-touch page fault per page. While the registry grows (every hot-plug adds a
/// device and its children), one event in eight or so paid that inside its apply, between its
/// datagram and its waiter's wake-up: 45 / 101 us (p50 / p99) of work instead of 8 / 23 in the
/// wake bench (BENCHMARKS.md, issue 15 item 3). Writing 8 KiB (some 16 devices' worth) and
/// freeing it grows the arena here instead, after the wake; glibc keeps the freed top of a
/// thread's arena (it trims only past 128 KiB), so the next events allocate from pages already
/// there. A malloc, a memset and a free per batch, off the wake path. Other allocators grow
/// differently, so only glibc targets do it.
#[cfg(target_env = "gnu")]
fn keep_heap_ahead() {
    // Written, not only allocated: glibc's calloc does not touch pages fresh from the kernel.
    std::hint::black_box(vec![1u8; 8 << 10]);
}

/// See the glibc version: other allocators are left alone.
#[cfg(not(target_env = "gnu"))]
fn keep_heap_ahead() {}

/// How [`Listener::apply_held`] takes the state lock.
#[derive(Clone, Copy, Debug)]
enum Lock {
    /// Waits for it.
    Wait,
    /// Only if it is free now.
    Try,
}

/// The earlier of two optional instants.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What the listener thread owns: the socket it reads, the sysfs it rescans, the state it
/// keeps.
pub(super) struct Listener {
    pub(super) socket: UeventSocket,
    pub(super) sysfs: Sysfs,
    pub(super) shared: Arc<Shared>,
    /// The least time between two rescans: see `pacing.rs`.
    pub(super) resync_gap: Duration,
    #[cfg(any(test, feature = "test-support"))]
    pub(super) fault_hook: Option<FaultHook>,
    #[cfg(any(test, feature = "test-support"))]
    pub(super) resync_hook: Option<ResyncHook>,
    #[cfg(any(test, feature = "test-support"))]
    pub(super) scan_tick_hook: Option<ScanTickHook>,
    /// Test support: rescan without the scanner thread, as when it cannot start.
    #[cfg(any(test, feature = "test-support"))]
    pub(super) rescan_in_listener: bool,
}

/// What one receive step leaves the loop to do.
#[derive(Debug)]
pub(super) enum Step {
    /// Handled (applied, ignored or counted): receive the next one.
    Next,
    /// The kernel lost events (counted already): resync.
    Overflow,
    /// Nothing queued (only from the zero-timeout receives of a resync).
    Drained,
    /// The thread must stop, for this reason.
    Stop(ListenerStopped),
}

/// Which NVMe multipath heads to look up in sysfs after a change.
#[derive(Debug, PartialEq, Eq)]
enum Untied {
    /// None appeared.
    Nothing,
    /// The heads of these subsystems appeared untied to a PCI path.
    Subsystems(Vec<String>),
    /// A controller appeared, possibly after its heads: look again at every untied head.
    EveryHead,
}

impl Listener {
    /// The thread's body: listens until it must stop, then marks the monitor stopped and
    /// wakes every waiter, whatever ended it, a panic included.
    pub(super) fn run(self) {
        // A panic (a bug) must not leave waiters parked for ever on a listener that is gone.
        // The state lock is not poisoned by it (parking_lot), so the registry stays readable.
        let why =
            panic::catch_unwind(AssertUnwindSafe(|| self.listen())).unwrap_or_else(|payload| {
                let what = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                tracing::error!("the uevent listener thread panicked: {what}");
                ListenerStopped::Panicked(ListenerPanic {
                    message: what.into(),
                })
            });
        self.shared.state.lock().stop(why);
        // Closing the senders ends every subscriber's channel and stream.
        let subscribers = std::mem::take(&mut *self.shared.subscribers.lock());
        subscribers.into_iter().for_each(Subscriber::close);
    }

    /// Receive, apply, wake; resync after an overflow, paced. Returns why it stopped.
    ///
    /// Receives in batches: whatever the socket holds, up to [`BATCH`] datagrams, in one
    /// system call, applied under one acquisition of the state lock and published (handed to
    /// subscribers, waiters woken) once; `poll` only when the socket was found empty.
    ///
    /// An overflow makes a resync owed, from the time [`Pacing`] allows; until then the loop
    /// goes on receiving (waiting no later than that time), and a further overflow is covered
    /// by the same resync. Overflows during a resync's rescan (seen as it holds what arrives,
    /// `held.rs`) owe one more resync in all, paced after that rescan.
    fn listen(&self) -> ListenerStopped {
        // A resync's drain receives one datagram at a time into `buf`.
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        let mut batch = RecvBatch::with_datagram_len(BATCH, MAX_DATAGRAM + 1);
        let mut pacing = Pacing::new(self.resync_gap);
        // When the owed resync may start, if one is owed.
        let mut owed: Option<Instant> = None;
        // What was received while another thread held the state lock (see `handle_batch`).
        let mut busy = Held::default();
        loop {
            // While datagrams are held, the socket is waited on no longer than BUSY_IDLE: if
            // nothing more comes meanwhile, the listener tries the lock again.
            let idle = (!busy.is_empty()).then(|| Instant::now() + BUSY_IDLE);
            let received = match earliest(owed, idle) {
                Some(at) => self.socket.recv_batch_deadline(&mut batch, at),
                None => self.socket.recv_batch(&mut batch),
            };
            match self.step_batch(received, &batch, &mut busy) {
                Step::Next => {}
                // Never waits for the lock while holding: a reader may keep it until the
                // listener has taken what comes next (a paced sender); tried again each
                // BUSY_IDLE until it is free.
                Step::Drained => self.apply_held(&mut busy, Lock::Try),
                Step::Overflow if owed.is_some() => {
                    tracing::debug!("uevent socket overflowed again; the owed resync covers it");
                }
                Step::Overflow => {
                    tracing::warn!(
                        "uevent socket overflowed (ENOBUFS): events were lost; resyncing"
                    );
                    owed = Some(pacing.earliest().unwrap_or_else(Instant::now));
                }
                Step::Stop(why) => {
                    self.apply_held(&mut busy, Lock::Wait);
                    return why;
                }
            }
            if owed.is_some_and(|at| Instant::now() >= at) {
                owed = None;
                // What is held precedes what the resync drains.
                self.apply_held(&mut busy, Lock::Wait);
                if let Some(why) = self.resync(&mut buf, &mut pacing, &mut owed) {
                    return why;
                }
            }
        }
    }

    /// The one receive step, for the listening loop and a resync's drain alike: a datagram
    /// goes through the fault hook (tests), is counted and skipped if truncated, else
    /// applied; an overflow is counted.
    pub(super) fn step(&self, received: io::Result<Received>, buf: &[u8]) -> Step {
        let counters = &self.shared.counters;
        match received {
            Ok(Received::Datagram(env)) => {
                if let Err(e) = self.fault(env.bytes(buf)) {
                    return stop_on_error(e);
                }
                // As one datagram of a batch (a truncated one counted and skipped there).
                let mut st = self.shared.state.lock();
                let changes = self.apply_all(&mut st, std::iter::once((env, env.bytes(buf))));
                self.finish(st, changes);
                Step::Next
            }
            Ok(Received::Overflow) => {
                counters.overflows.fetch_add(1, Ordering::Relaxed);
                Step::Overflow
            }
            Ok(Received::TimedOut) => Step::Drained,
            Ok(Received::Stopped) => Step::Stop(ListenerStopped::ShutDown),
            Err(e) => stop_on_error(e),
        }
    }

    /// The listening loop's receive step: a batch of datagrams goes through
    /// [`handle_batch`](Self::handle_batch); the rest as in [`step`](Self::step).
    fn step_batch(&self, received: io::Result<Batch>, batch: &RecvBatch, busy: &mut Held) -> Step {
        match received {
            Ok(Batch::Datagrams(_)) => self.handle_batch(batch, busy),
            Ok(Batch::Overflow) => {
                self.shared
                    .counters
                    .overflows
                    .fetch_add(1, Ordering::Relaxed);
                Step::Overflow
            }
            Ok(Batch::TimedOut) => Step::Drained,
            Ok(Batch::Stopped) => Step::Stop(ListenerStopped::ShutDown),
            Err(e) => stop_on_error(e),
        }
    }

    /// Handles a batch as [`step`](Self::step) handles each datagram, in order, but applies
    /// them all under one acquisition of the state lock and publishes their changes once. The
    /// fault hook (tests) sees each datagram before any is applied, outside the lock; if it
    /// fails on one, those before it are applied and published, and the listener stops. The
    /// NVMe head and namespace id lookups in sysfs come after, outside the lock.
    ///
    /// If another thread holds the state lock longer than [`BUSY_SPIN`] (a reader in
    /// [`Monitor::with_registry`](crate::Monitor::with_registry), a clone of a large
    /// registry), the batch is held in `busy` (bounded as a rescan's, `held.rs`), behind what
    /// is held already, and the listener goes on receiving: the kernel's queue is emptied at
    /// its own pace whoever holds the lock, rather than left to overflow while the listener
    /// waits for it. What is held is applied, in order, under the next acquisition; it lags
    /// only as long as the other thread keeps the lock, during which no waiter could have
    /// looked at the registry anyway.
    fn handle_batch(&self, batch: &RecvBatch, busy: &mut Held) -> Step {
        let mut step = Step::Next;
        let mut take = batch.len();
        for (i, (_, bytes)) in batch.iter().enumerate() {
            if let Err(e) = self.fault(bytes) {
                step = stop_on_error(e);
                take = i;
                break;
            }
        }
        if busy.is_empty() {
            if let Some(mut st) = self.shared.state.try_lock_for(BUSY_SPIN) {
                let changes = self.apply_all(&mut st, batch.iter().take(take));
                self.finish(st, changes);
                return step;
            }
        }
        for (env, bytes) in batch.iter().take(take) {
            if !busy.has_room(bytes.len()) {
                self.apply_held(busy, Lock::Wait);
            }
            busy.push(env, bytes);
        }
        self.apply_held(busy, Lock::Try);
        step
    }

    /// Applies what `busy` holds, in order, under one acquisition of the state lock, and
    /// empties it; with [`Lock::Try`], only if the lock is free now.
    fn apply_held(&self, busy: &mut Held, lock: Lock) {
        if busy.is_empty() {
            return;
        }
        let st = match lock {
            Lock::Wait => Some(self.shared.state.lock()),
            Lock::Try => self.shared.state.try_lock(),
        };
        let Some(mut st) = st else { return };
        let changes = self.apply_all(&mut st, (0..busy.len()).filter_map(|i| busy.get(i)));
        busy.clear();
        self.finish(st, changes);
    }

    /// Applies datagrams in order under the held state lock (a truncated one is counted and
    /// skipped); returns their changes.
    fn apply_all<'a>(
        &self,
        st: &mut StateGuard<'_>,
        datagrams: impl Iterator<Item = (Envelope, &'a [u8])>,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        for (env, bytes) in datagrams {
            if env.truncated {
                self.shared
                    .counters
                    .truncated
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(len = env.len, "truncated uevent datagram skipped");
                continue;
            }
            // Into the batch's one list: none allocated per datagram.
            match st
                .registry
                .apply_datagram_into(env.sender_port, bytes, &mut changes)
            {
                Outcome::Applied(_) => {}
                skipped => skipped.log(&""),
            }
        }
        changes
    }

    /// Publishes `changes` (releasing the lock), then looks up in sysfs what they leave
    /// untied: NVMe heads, namespace ids.
    fn finish(&self, st: StateGuard<'_>, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        // The waiters are woken first; what only the listener needs comes after.
        publish_slice(&self.shared, st, &changes);
        let untied = untied_heads(&changes);
        let nsids = super::nsid::added_without_nsid(&changes);
        drop(changes);
        keep_heap_ahead();
        if untied != Untied::Nothing {
            self.resolve_nvme_heads(untied);
        }
        if !nsids.is_empty() {
            self.read_nsids(nsids);
        }
    }

    /// The test's fault hook, if any, on a datagram's bytes.
    #[cfg(any(test, feature = "test-support"))]
    fn fault(&self, bytes: &[u8]) -> io::Result<()> {
        self.fault_hook.as_ref().map_or(Ok(()), |h| h.check(bytes))
    }

    /// Without test support there is no fault hook.
    #[cfg(not(any(test, feature = "test-support")))]
    #[inline(always)]
    fn fault(&self, _bytes: &[u8]) -> io::Result<()> {
        Ok(())
    }

    /// Ties NVMe multipath heads to their controllers' PCI paths, with what sysfs says. The
    /// sysfs reads happen outside the lock.
    fn resolve_nvme_heads(&self, untied: Untied) {
        let shared = &*self.shared;
        let subsystems = match untied {
            Untied::Nothing => return,
            Untied::Subsystems(subsystems) => subsystems,
            Untied::EveryHead => {
                let st = shared.state.lock();
                let mut subsystems: Vec<String> = st
                    .registry
                    .unresolved_nvme_heads()
                    .map(|(s, _)| s.to_owned())
                    .collect();
                subsystems.dedup();
                subsystems
            }
        };
        let mut links = Vec::new();
        for sub in &subsystems {
            match self.sysfs.nvme_links_of(sub) {
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
}

/// A receive error ends the thread, with this reason.
fn stop_on_error(e: io::Error) -> Step {
    tracing::error!("receiving uevents: {e}");
    Step::Stop(ListenerStopped::Receive(Arc::new(e)))
}

/// The NVMe multipath heads, or a controller, that appeared untied in `changes`.
fn untied_heads(changes: &[Change]) -> Untied {
    let mut subs: Vec<String> = Vec::new();
    for c in changes {
        match c {
            Change::BlockAdded {
                path: None,
                block:
                    BlockDevice {
                        devtype: DevType::Disk,
                        transport: Transport::NvmeMultipath { subsystem },
                        ..
                    },
            } if !subs.iter().any(|s| **s == **subsystem) => subs.push(subsystem.to_string()),
            Change::NvmeAdded { .. } => return Untied::EveryHead,
            _ => {}
        }
    }
    if subs.is_empty() {
        Untied::Nothing
    } else {
        Untied::Subsystems(subs)
    }
}

/// Hands the changes to subscribers, releases the state lock, then wakes the waiters of every
/// path that changed. Subscribers get the changes under the state lock, so that one that
/// subscribes gets exactly those applied after it did. Waiters are woken once the lock is
/// released (see `wait.rs`): one that runs at once on this CPU finds the lock free.
pub(super) fn publish(shared: &Shared, st: StateGuard<'_>, changes: Vec<Change>) {
    publish_slice(shared, st, &changes);
    // Freed after the waiters are woken, not on their way.
    drop(changes);
}

/// [`publish`] for changes the caller keeps (and frees after the wake).
fn publish_slice(shared: &Shared, st: StateGuard<'_>, changes: &[Change]) {
    let mut wakeups = Wakeups::default();
    let mut last = None;
    for c in changes {
        if let Some(p) = c.path() {
            // Consecutive changes are usually about one path; note it once.
            if last != Some(p) {
                wakeups.add(&st.waiters, &p);
                last = Some(p);
            }
        } else {
            wakeups.add_anywhere(&st.waiters);
        }
    }
    send_to_subscribers(shared, changes);
    drop(st);
    wakeups.wake();
}

/// Hands `changes` to every subscriber; called with the state lock held.
fn send_to_subscribers(shared: &Shared, changes: &[Change]) {
    let mut subs = shared.subscribers.lock();
    if subs.is_empty() {
        return;
    }
    for c in changes {
        subs.retain(|sub| match sub.send(c.clone()) {
            Sent::Delivered => true,
            Sent::Dropped => {
                shared
                    .counters
                    .dropped_changes
                    .fetch_add(1, Ordering::Relaxed);
                true
            }
            Sent::Gone => false,
        });
    }
    // A stream's task is woken once for the batch; it only schedules the task (a task that
    // polls at once takes no lock the listener holds: only its channel and its waker's).
    subs.iter().for_each(Subscriber::wake);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devpath;
    use crate::monitor::Counters;
    use crate::monitor::state::{State, StateLock, Status};
    use crate::netlink::Envelope;
    use crate::registry::Registry;
    use crate::wait::Waiters;
    use parking_lot::Mutex;

    /// A listener on a real (unprivileged, never read) socket and an empty sysfs, whose steps
    /// are fed by hand.
    fn listener(fault_hook: Option<FaultHook>) -> Listener {
        Listener {
            socket: UeventSocket::open().expect("opening a uevent socket"),
            sysfs: Sysfs::new("/nonexistent"),
            resync_gap: crate::monitor::pacing::MIN_RESYNC_GAP,
            shared: Arc::new(Shared {
                state: StateLock::new(State {
                    registry: Registry::new(),
                    waiters: Waiters::default(),
                    status: Status::Running,
                }),
                subscribers: Mutex::new(Vec::new()),
                counters: Counters::default(),
            }),
            fault_hook,
            resync_hook: None,
            scan_tick_hook: None,
            rescan_in_listener: false,
        }
    }

    fn datagram(len: usize, buf: &[u8]) -> io::Result<Received> {
        Ok(Received::Datagram(Envelope {
            len,
            truncated: len > buf.len(),
            sender_port: 0,
            groups: 1,
        }))
    }

    #[test]
    fn one_step_counts_truncations_and_overflows_and_ends_on_a_stop_or_an_error() {
        let l = listener(None);
        let buf = [0u8; 8];
        assert!(matches!(l.step(datagram(9, &buf), &buf), Step::Next));
        assert_eq!(l.shared.counters.truncated.load(Ordering::Relaxed), 1);
        assert_eq!(l.shared.state.lock().registry.stats().received, 0);
        assert!(matches!(
            l.step(Ok(Received::Overflow), &buf),
            Step::Overflow
        ));
        assert_eq!(l.shared.counters.overflows.load(Ordering::Relaxed), 1);
        assert!(matches!(
            l.step(Ok(Received::TimedOut), &buf),
            Step::Drained
        ));
        assert!(matches!(
            l.step(Ok(Received::Stopped), &buf),
            Step::Stop(ListenerStopped::ShutDown)
        ));
        let failed = l.step(Err(io::Error::from_raw_os_error(libc::EBADF)), &buf);
        assert!(
            matches!(&failed, Step::Stop(ListenerStopped::Receive(e)) if e.raw_os_error() == Some(libc::EBADF)),
            "{failed:?}"
        );
    }

    #[test]
    fn the_fault_hook_sees_each_datagram_before_it_is_applied() {
        let hook = FaultHook::new(|bytes| {
            if bytes.starts_with(b"fail") {
                Err(io::Error::other("injected"))
            } else {
                Ok(())
            }
        });
        let l = listener(Some(hook));
        let ok = *b"add@/x\0\0";
        assert!(matches!(l.step(datagram(ok.len(), &ok), &ok), Step::Next));
        assert_eq!(l.shared.state.lock().registry.stats().received, 1);
        let bad = *b"fail";
        assert!(matches!(
            l.step(datagram(bad.len(), &bad), &bad),
            Step::Stop(ListenerStopped::Receive(e)) if e.to_string() == "injected"
        ));
        assert_eq!(
            l.shared.state.lock().registry.stats().received,
            1,
            "not applied"
        );
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
            nsid: None,
            devpath: format!("{}nvme-subsys0/nvme0n1", devpath::NVME_SUBSYSTEMS).into(),
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
        assert_eq!(
            untied_heads(&changes),
            Untied::Subsystems(vec!["nvme-subsys0".to_owned()])
        );
    }
}
