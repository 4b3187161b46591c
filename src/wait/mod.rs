//! The waiter protocol: check, register, sleep until a change or the deadline, unregister.
//!
//! Waiters and the listener share one mutex around the registry (the state lock). Each PCI
//! path somebody waits on has a [`Slot`] in a table kept under that lock; the listener bumps
//! the slot of every path an event changed, so an event wakes only the waiters of the paths
//! it changed and its cost does not grow with the number of waiters on other paths. The last
//! waiter of a path to leave removes its slot, so a million timed-out waits leave nothing
//! behind.
//!
//! A wait for a disk address with no path (a SCSI `T:L` anywhere in the guest) or for a VFIO
//! group sleeps on one more slot, `anywhere`, which a change at any path bumps too, and a
//! change tied to no path (a VFIO group's); it costs the listener nothing while nobody waits
//! that way.
//!
//! The listener finds the slots to bump under the state lock, as it applies the event
//! ([`Wakeups`]), and bumps them after releasing it: a waiter woken on the listener's own CPU
//! runs at once, preempting the listener, and must then find the state lock free rather than
//! hand the CPU back to the listener to release it (BENCHMARKS.md, bench 3).
//!
//! A waiter sleeps on its slot's own small lock, not on the state lock: stopping the listener
//! marks every slot stopped and empties the table, and each woken waiter returns its error
//! without taking the state lock again, so a thousand waiters are released at once rather
//! than one after the other through the one lock.
//!
//! An async wait ([`future`]) follows the same protocol in a future: it registers in the same
//! table and leaves a [`Waker`] in its slot instead of sleeping on the slot's condition
//! variable; a bump or a stop wakes the condition variable and takes and wakes every waker.
//!
//! The protocol is model-checked with loom (`cargo test --lib --features model-check model`):
//! see the `model` tests at the bottom, and those of [`future`].

pub(crate) mod deadline;
pub(crate) mod error;
pub(crate) mod future;
pub(crate) mod timer;

use std::collections::HashMap;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use crate::monitor::state::{State, Status};
use crate::path::PciPath;
use crate::registry::Registry;
use crate::registry::hash::FastHash;
use deadline::Deadline;
use error::{ListenerStopped, WaitError, WaitTimeout, Wanted};
use sync::{Condvar, Mutex};

/// The lock and condition variable of the protocol: parking_lot's, or loom's models of them
/// when the protocol is model-checked.
#[cfg(not(all(test, feature = "model-check")))]
pub(crate) mod sync {
    pub(crate) use parking_lot::{Condvar, Mutex, MutexGuard};
}

/// loom's lock and condition variable behind parking_lot's interface. Time is not modelled:
/// a deadline that has passed times out at once, any other never does.
#[cfg(all(test, feature = "model-check"))]
pub(crate) mod sync {
    use std::fmt;
    use std::ops::{Deref, DerefMut};
    use std::time::Instant;

    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    /// Invariant: `Some` except inside [`Condvar::wait`].
    pub(crate) struct MutexGuard<'a, T>(Option<loom::sync::MutexGuard<'a, T>>);

    impl<T> Mutex<T> {
        pub(crate) fn new(t: T) -> Self {
            Mutex(loom::sync::Mutex::new(t))
        }
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard(Some(self.0.lock().unwrap()))
        }
        pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            self.0.try_lock().ok().map(|g| MutexGuard(Some(g)))
        }
        /// Time is not modelled: as `try_lock`.
        pub(crate) fn try_lock_for(
            &self,
            _timeout: std::time::Duration,
        ) -> Option<MutexGuard<'_, T>> {
            self.try_lock()
        }
    }

    impl<T: Default> Default for Mutex<T> {
        fn default() -> Self {
            Mutex::new(T::default())
        }
    }

    impl<T> fmt::Debug for Mutex<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Mutex")
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.0.as_ref().unwrap()
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.0.as_mut().unwrap()
        }
    }

    #[derive(Default)]
    pub(crate) struct Condvar(loom::sync::Condvar);

    pub(crate) struct WaitTimeoutResult(bool);

    impl WaitTimeoutResult {
        pub(crate) fn timed_out(&self) -> bool {
            self.0
        }
    }

    impl fmt::Debug for Condvar {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Condvar")
        }
    }

    impl Condvar {
        pub(crate) fn wait<T>(&self, g: &mut MutexGuard<'_, T>) {
            let inner = g.0.take().unwrap();
            g.0 = Some(self.0.wait(inner).unwrap());
        }
        pub(crate) fn wait_until<T>(
            &self,
            g: &mut MutexGuard<'_, T>,
            deadline: Instant,
        ) -> WaitTimeoutResult {
            if Instant::now() >= deadline {
                return WaitTimeoutResult(true);
            }
            self.wait(g);
            WaitTimeoutResult(false)
        }
        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}

/// Where the waiters of one path sleep.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    signal: Mutex<Signal>,
    cv: Condvar,
}

/// What a sleeping waiter looks at. Lock order: state, then signal.
#[derive(Debug, Default)]
struct Signal {
    /// Bumped after every change at the path, once the listener has released the state lock,
    /// on the slots that were in the table when the change was applied. A waiter sleeps while
    /// it is what it last saw. None is missed: a waiter whose slot was in the table then read
    /// its `seen` before the change and is bumped past it; one that registered after the
    /// change found the change in the registry at its check. A slot bumped after its waiters
    /// left, or one bump too many, only makes a waiter look at the registry again.
    generation: u64,
    /// Set once, when the listener stops; the slot is then out of the table.
    stopped: Option<ListenerStopped>,
    /// The async waiters parked on this slot, by their id in the slot: each left its waker
    /// here, under this lock, after seeing `generation` unchanged and `stopped` unset. A bump
    /// or a stop takes them all (a waker is woken once); a future polled again with nothing
    /// new for it leaves its waker again. Invariant: an id appears at most once.
    wakers: Vec<(u64, Waker)>,
    /// The id the next async waiter of this slot gets.
    next_id: u64,
}

impl Slot {
    fn generation(&self) -> u64 {
        self.signal.lock().generation
    }

    fn bump(&self) {
        let wakers = {
            let mut signal = self.signal.lock();
            signal.generation += 1;
            std::mem::take(&mut signal.wakers)
        };
        self.cv.notify_all();
        // Woken outside the slot's lock: a waker may run its task at once on this thread
        // (a plain executor), and that task polls, which takes this lock.
        for (_, waker) in wakers {
            waker.wake();
        }
    }

    fn stop(&self, why: &ListenerStopped) {
        let wakers = {
            let mut signal = self.signal.lock();
            signal.stopped = Some(why.clone());
            std::mem::take(&mut signal.wakers)
        };
        self.cv.notify_all();
        for (_, waker) in wakers {
            waker.wake();
        }
    }
}

/// The slots of the paths being waited on.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    /// Invariant: an entry exists exactly while its count (the number of registered waiters)
    /// is above zero, until the listener stops; then the table is empty for good, and the
    /// waiters still in flight never touch it again.
    /// Hashed as the registry's tables are ([`FastHash`]): the listener looks up the path of
    /// every change here while anybody waits, and std's SipHash over a `PciPath`'s 20 small
    /// writes cost more than the rest of the lookup.
    slots: HashMap<PciPath, (Arc<Slot>, usize), FastHash>,
    /// The slot of the waits that have no path (a SCSI unit anywhere in the guest): a change
    /// at any path bumps it. Same invariant as a path's entry.
    anywhere: Option<(Arc<Slot>, usize)>,
    /// The sum of the counts above, kept as they change: `stats()` reads it under the state
    /// lock, which a sum over 10,000 slots would hold for as long as it takes.
    total: usize,
}

/// Where a waiter waits: the changes of one path, or of every path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Watch {
    Path(PciPath),
    Anywhere,
}

impl Waiters {
    pub(crate) fn register(&mut self, at: Watch) -> Arc<Slot> {
        let slot = match at {
            Watch::Path(path) => self.slots.entry(path).or_default(),
            Watch::Anywhere => self.anywhere.get_or_insert_with(Default::default),
        };
        slot.1 += 1;
        self.total += 1;
        Arc::clone(&slot.0)
    }

    pub(crate) fn unregister(&mut self, at: &Watch) {
        match at {
            Watch::Path(path) => {
                if let Some(slot) = self.slots.get_mut(path) {
                    slot.1 -= 1;
                    self.total -= 1;
                    if slot.1 == 0 {
                        self.slots.remove(path);
                    }
                }
            }
            Watch::Anywhere => {
                if let Some(slot) = &mut self.anywhere {
                    slot.1 -= 1;
                    self.total -= 1;
                    if slot.1 == 0 {
                        self.anywhere = None;
                    }
                }
            }
        }
    }

    /// Wakes the waiters of `path`, if any, at once. Called with the state lock held; the
    /// listener uses [`Wakeups`] instead, to wake after releasing it.
    #[cfg(all(test, not(feature = "model-check")))]
    pub(crate) fn wake(&self, path: &PciPath) {
        if let Some((slot, _)) = self.slots.get(path) {
            slot.bump();
        }
    }

    /// Tells every waiter that the listener stopped, and empties the table: the waiters
    /// return without coming back to it. Called with the state lock held, with the status
    /// already set to stopped, so that no waiter registers after this.
    pub(crate) fn stop_all(&mut self, why: &ListenerStopped) {
        for (_, (slot, _)) in self.slots.drain() {
            slot.stop(why);
        }
        if let Some((slot, _)) = self.anywhere.take() {
            slot.stop(why);
        }
        self.total = 0;
    }

    /// Number of paths with at least one waiter (the waits with no path count as one).
    pub(crate) fn paths(&self) -> usize {
        self.slots.len() + usize::from(self.anywhere.is_some())
    }

    /// Number of registered waiters.
    pub(crate) fn waiters(&self) -> usize {
        debug_assert_eq!(
            self.total,
            self.slots.values().map(|s| s.1).sum::<usize>()
                + self.anywhere.as_ref().map_or(0, |s| s.1)
        );
        self.total
    }
}

/// The slots of the paths a change touched, found under the state lock and bumped after it
/// is released ([`Wakeups::wake`]). Allocates only when somebody waits on a changed path.
#[derive(Debug, Default)]
pub(crate) struct Wakeups(Vec<Arc<Slot>>);

impl Wakeups {
    /// Notes the slot of `path`, if anybody waits there. Called with the state lock held, right
    /// after the change at `path` was applied.
    pub(crate) fn add(&mut self, waiters: &Waiters, path: &PciPath) {
        let at_path = waiters.slots.get(path).map(|(slot, _)| slot);
        let anywhere = waiters.anywhere.as_ref().map(|(slot, _)| slot);
        for slot in at_path.into_iter().chain(anywhere) {
            if !self.0.iter().any(|s| Arc::ptr_eq(s, slot)) {
                self.0.push(Arc::clone(slot));
            }
        }
    }

    /// Notes the slot of the waits with no path, if anybody waits that way: for a change tied
    /// to no path (a VFIO group). Called with the state lock held, as [`Wakeups::add`].
    pub(crate) fn add_anywhere(&mut self, waiters: &Waiters) {
        if let Some((slot, _)) = &waiters.anywhere {
            if !self.0.iter().any(|s| Arc::ptr_eq(s, slot)) {
                self.0.push(Arc::clone(slot));
            }
        }
    }

    /// Wakes the waiters of every slot noted. Called after releasing the state lock.
    pub(crate) fn wake(self) {
        for slot in self.0 {
            slot.bump();
        }
    }
}

/// Waits at `path` until `answer` gives something for the registry, the deadline passes, or
/// the listener stops. A timeout says what was `wanted`, the time the wait was given and what
/// was seen at the path then.
pub(crate) fn wait_for<T>(
    state: &Mutex<State>,
    wanted: &Wanted,
    path: PciPath,
    deadline: Deadline,
    answer: impl Fn(&Registry) -> Option<T>,
) -> Result<T, WaitError> {
    let timeout = |r: &Registry, given| {
        WaitError::from(WaitTimeout {
            wanted: wanted.clone(),
            path: Some(path),
            timeout: given,
            seen: r.seen(&path),
        })
    };
    wait_at(state, Watch::Path(path), deadline, answer, timeout)
}

/// [`wait_for`] for an answer that may appear at any path: woken by a change at every path.
/// `timeout` makes the error of a deadline that passed, from the registry and the time the
/// wait was given.
pub(crate) fn wait_anywhere<T, E: From<ListenerStopped>>(
    state: &Mutex<State>,
    deadline: Deadline,
    answer: impl Fn(&Registry) -> Option<T>,
    timeout: impl Fn(&Registry, std::time::Duration) -> E,
) -> Result<T, E> {
    wait_at(state, Watch::Anywhere, deadline, answer, timeout)
}

/// The protocol, for a waiter at `at`.
fn wait_at<T, E: From<ListenerStopped>>(
    state: &Mutex<State>,
    at: Watch,
    deadline: Deadline,
    answer: impl Fn(&Registry) -> Option<T>,
    timeout: impl Fn(&Registry, std::time::Duration) -> E,
) -> Result<T, E> {
    let mut st = state.lock();
    // 1. Check: the answer may be there already (a device present before the wait).
    if let Some(done) = check(&st, &answer) {
        return done.map_err(E::from);
    }
    // 2. Register, and note the slot's generation, still under the lock the listener applies
    //    events under: a change applied after the check above finds the slot in the table,
    //    and the listener bumps it past `seen` once it has released the lock.
    let slot = st.waiters.register(at);
    let mut seen = slot.generation();
    loop {
        drop(st);
        // 3. Sleep on the slot, without the state lock.
        let timed_out = sleep(&slot, &mut seen, deadline.at).map_err(E::from)?;
        // 4. Look at the registry again.
        st = state.lock();
        let result = match check(&st, &answer) {
            // Stopped while this waiter was on its way here; nothing to unregister.
            Some(Err(stopped)) => return Err(stopped.into()),
            Some(Ok(t)) => Ok(t),
            None if timed_out => {
                // `sleep` times out only at a deadline; the timeout is the time it was given.
                Err(timeout(&st.registry, deadline.given()))
            }
            None => continue,
        };
        // 5. Unregister, so that the table holds only live waiters.
        st.waiters.unregister(&at);
        return result;
    }
}

/// Steps 1 and 4 of [`wait_for`], under the state lock: the answer if it is there, or the
/// error of a stopped listener, which can no longer vouch for its registry (it grows staler
/// by the second); `None` to go on waiting.
pub(crate) fn check<T>(
    st: &State,
    answer: &impl Fn(&Registry) -> Option<T>,
) -> Option<Result<T, ListenerStopped>> {
    if let Status::Stopped(why) = &st.status {
        return Some(Err(why.clone()));
    }
    answer(&st.registry).map(Ok)
}

/// Step 3 of [`wait_for`]: sleeps on `slot` until its generation moves past `seen`, the
/// listener stops, or the deadline passes; says whether the deadline passed. The deadline was
/// fixed once, so a spurious wakeup loops back here without extending it. When stopped, the
/// table was emptied for us: returns the error without the state lock.
fn sleep(slot: &Slot, seen: &mut u64, deadline: Option<Instant>) -> Result<bool, ListenerStopped> {
    let mut signal = slot.signal.lock();
    let mut timed_out = false;
    while signal.generation == *seen && signal.stopped.is_none() && !timed_out {
        match deadline {
            Some(d) => timed_out = slot.cv.wait_until(&mut signal, d).timed_out(),
            None => slot.cv.wait(&mut signal),
        }
    }
    if let Some(why) = &signal.stopped {
        return Err(why.clone());
    }
    *seen = signal.generation;
    Ok(timed_out)
}

/// What the unit tests and the loom models share: a state, a waiter on 02/00, and the
/// listener's step for one event, run with std's or loom's threads and locks alike.
#[cfg(test)]
mod fixtures {
    use super::*;
    use crate::registry::Outcome;
    #[cfg(feature = "model-check")]
    pub(super) use loom::thread;
    #[cfg(not(feature = "model-check"))]
    pub(super) use std::thread;

    pub(super) const VDA: &[u8] =
        b"add@/devices/pci0000:00/0000:00:02.0/0000:01:00.0/virtio0/block/vda\0\
        ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:02.0/0000:01:00.0/virtio0/block/vda\0\
        SUBSYSTEM=block\0DEVNAME=vda\0DEVTYPE=disk\0DISKSEQ=1\0SEQNUM=1\0";

    pub(super) fn path() -> PciPath {
        "02/00".parse().unwrap()
    }

    pub(super) fn state() -> Arc<Mutex<State>> {
        Arc::new(Mutex::new(State {
            registry: Registry::new(),
            waiters: Waiters::default(),
            status: Status::Running,
        }))
    }

    /// A thread waiting for the disk at 02/00 until `deadline` (`None`: for ever).
    pub(super) fn waiter(
        st: &Arc<Mutex<State>>,
        deadline: Option<Instant>,
    ) -> thread::JoinHandle<Result<String, WaitError>> {
        let st = Arc::clone(st);
        thread::spawn(move || {
            wait_for(&st, &Wanted::Block, path(), deadline.into(), |r| {
                r.disk(&path()).map(|b| b.name.to_string())
            })
        })
    }

    /// What the listener does for one event: apply `VDA` and note the slots to wake under the
    /// state lock, then wake them after releasing it.
    pub(super) fn listener_applies(st: &Mutex<State>) -> Outcome {
        let mut s = st.lock();
        let outcome = s.registry.apply_datagram(0, VDA);
        let mut wakeups = Wakeups::default();
        wakeups.add(&s.waiters, &path());
        drop(s);
        wakeups.wake();
        outcome
    }
}

#[cfg(all(test, not(feature = "model-check")))]
mod tests {
    use super::fixtures::{VDA, listener_applies, state, waiter};
    use super::*;
    use std::thread;
    use std::time::Duration;

    fn p(s: &str) -> PciPath {
        s.parse().unwrap()
    }

    fn disk_name(r: &Registry, path: &PciPath) -> Option<String> {
        r.disk(path).map(|b| b.name.to_string())
    }

    #[test]
    fn a_present_answer_returns_at_once_without_registering() {
        let st = state();
        st.lock().registry.apply_datagram(0, VDA);
        let got = wait_for(
            &st,
            &Wanted::Block,
            p("02/00"),
            Deadline::after(Duration::ZERO),
            |r| disk_name(r, &p("02/00")),
        );
        assert_eq!(got.unwrap(), "vda");
        assert_eq!(st.lock().waiters.paths(), 0);
    }

    #[test]
    fn a_waiter_is_woken_by_a_change_at_its_path() {
        let st = state();
        let waiter = waiter(&st, None);
        // Wait until it is registered, then apply and wake as the listener does.
        while st.lock().waiters.waiters() == 0 {
            thread::yield_now();
        }
        let pciplug_changes = listener_applies(&st);
        assert!(
            matches!(pciplug_changes, crate::registry::Outcome::Applied(ref c) if !c.is_empty())
        );
        assert_eq!(waiter.join().unwrap().unwrap(), "vda");
        assert_eq!(st.lock().waiters.paths(), 0, "the waiter unregistered");
    }

    #[test]
    fn a_timeout_says_what_was_seen() {
        let st = state();
        let deadline = Instant::now() + Duration::from_millis(20);
        let err = wait_for(
            &st,
            &Wanted::Block,
            p("02/01"),
            Deadline::at(deadline),
            |r| disk_name(r, &p("02/01")),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("no block disk at 02/01 within "), "{msg}");
        assert!(msg.ends_with(": no PCI device at 02/01"), "{msg}");
        assert_eq!(st.lock().waiters.paths(), 0);
    }

    #[test]
    fn unrelated_wakeups_do_not_extend_the_deadline() {
        let st = state();
        let st2 = Arc::clone(&st);
        let deadline = Instant::now() + Duration::from_millis(100);
        let waiter = thread::spawn(move || {
            let r = wait_for(
                &st2,
                &Wanted::Block,
                p("02/00"),
                Deadline::at(deadline),
                |r| disk_name(r, &p("02/00")),
            );
            (r, Instant::now())
        });
        // Spurious wakeups of its path, with nothing for it, until past the deadline.
        while Instant::now() < deadline + Duration::from_millis(50) {
            st.lock().waiters.wake(&p("02/00"));
            thread::sleep(Duration::from_millis(5));
        }
        let (r, ended) = waiter.join().unwrap();
        assert!(matches!(r, Err(WaitError::Timeout(_))));
        // It returned at its deadline, not after the wakeups stopped (behaviour, not speed:
        // the bound is the wakeup loop's own length).
        assert!(
            ended < deadline + Duration::from_millis(50),
            "ended {:?} after the deadline",
            ended - deadline
        );
    }

    #[test]
    fn stopping_wakes_waiters_with_an_error() {
        let st = state();
        let waiter = waiter(&st, None);
        while st.lock().waiters.waiters() == 0 {
            thread::yield_now();
        }
        st.lock().stop(ListenerStopped::ShutDown);
        let err = waiter.join().unwrap().unwrap_err();
        assert_eq!(err.to_string(), "listener stopped: shut down");
        assert!(
            matches!(err, WaitError::ListenerStopped(ListenerStopped::ShutDown)),
            "{err:?}"
        );
        assert_eq!(st.lock().waiters.paths(), 0);
        // The first reason is kept.
        let later = std::io::Error::other("later");
        st.lock().stop(ListenerStopped::Receive(Arc::new(later)));
        assert!(matches!(
            st.lock().status,
            Status::Stopped(ListenerStopped::ShutDown)
        ));
    }

    #[test]
    fn a_waiter_with_no_path_is_woken_by_a_change_at_any_path_and_counted_once() {
        let st = state();
        let st2 = Arc::clone(&st);
        let waiter = thread::spawn(move || {
            // No deadline: it never times out.
            let timeout = |_: &Registry, _| WaitError::from(ListenerStopped::ShutDown);
            wait_anywhere(
                &st2,
                Deadline::never(),
                |r| disk_name(r, &p("02/00")),
                timeout,
            )
        });
        while st.lock().waiters.waiters() == 0 {
            thread::yield_now();
        }
        assert_eq!(
            st.lock().waiters.paths(),
            1,
            "one entry for every wait with no path"
        );
        // The listener's step for the disk at 02/00: nobody waits on that path itself. The
        // waiter has no deadline: only the wake-up answers it (a missed one fails, not hangs).
        listener_applies(&st);
        let give_up = Instant::now() + Duration::from_secs(60);
        while !waiter.is_finished() && Instant::now() < give_up {
            thread::sleep(Duration::from_millis(1));
        }
        assert!(
            waiter.is_finished(),
            "the waiter with no path was never woken"
        );
        assert_eq!(waiter.join().unwrap().unwrap(), "vda");
        let left = st.lock();
        assert_eq!((left.waiters.paths(), left.waiters.waiters()), (0, 0));
        drop(left);
        // Stopping releases a waiter with no path too.
        let st2 = Arc::clone(&st);
        let waiter = thread::spawn(move || {
            let timeout = |_: &Registry, _| WaitError::from(ListenerStopped::ShutDown);
            wait_anywhere(&st2, Deadline::never(), |r| disk_name(r, &p("07")), timeout)
        });
        while st.lock().waiters.waiters() == 0 {
            thread::yield_now();
        }
        st.lock().stop(ListenerStopped::ShutDown);
        let err = waiter.join().unwrap().unwrap_err();
        assert_eq!(err.to_string(), "listener stopped: shut down");
    }
}

/// The protocol under loom: every interleaving of a waiter with the listener applying an
/// event, with stopping, and with another waiter, up to loom's bounds. Run with
/// `cargo test --lib --features model-check model` (loom's primitives only work inside
/// `loom::model`, so the other tests are left out of that build).
#[cfg(all(test, feature = "model-check"))]
mod model {
    use super::fixtures::{listener_applies, state, thread, waiter};
    use super::*;
    use std::time::Duration;

    #[test]
    fn model_a_waiter_never_misses_the_event_it_waits_for() {
        loom::model(|| {
            let st = state();
            let w = waiter(&st, None);
            listener_applies(&st);
            assert_eq!(w.join().unwrap().unwrap(), "vda");
            assert_eq!(st.lock().waiters.paths(), 0);
        });
    }

    #[test]
    fn model_stopping_releases_every_waiter_and_empties_the_table() {
        loom::model(|| {
            let st = state();
            let w1 = waiter(&st, None);
            let w2 = waiter(&st, None);
            st.lock().stop(ListenerStopped::ShutDown);
            for w in [w1, w2] {
                assert!(matches!(
                    w.join().unwrap(),
                    Err(WaitError::ListenerStopped(_))
                ));
            }
            assert_eq!(st.lock().waiters.paths(), 0);
        });
    }

    #[test]
    fn model_an_event_racing_a_stop_gives_the_disk_or_an_error_never_a_hang() {
        loom::model(|| {
            let st = state();
            let w = waiter(&st, None);
            let stopper = {
                let st = Arc::clone(&st);
                thread::spawn(move || st.lock().stop(ListenerStopped::ShutDown))
            };
            listener_applies(&st);
            stopper.join().unwrap();
            match w.join().unwrap() {
                Ok(name) => assert_eq!(name, "vda"),
                Err(e) => assert!(matches!(e, WaitError::ListenerStopped(_)), "{e}"),
            }
            assert_eq!(st.lock().waiters.paths(), 0);
        });
    }

    #[test]
    fn model_a_timed_out_waiter_leaves_its_neighbour_registered_and_wakeable() {
        loom::model(|| {
            let st = state();
            // One waiter whose deadline has passed, one that waits for ever, on one path.
            let late = waiter(&st, Some(Instant::now() - Duration::from_secs(1)));
            let patient = waiter(&st, None);
            match late.join().unwrap() {
                Ok(name) => assert_eq!(name, "vda"),
                Err(e) => assert!(matches!(e, WaitError::Timeout(_)), "{e}"),
            }
            listener_applies(&st);
            assert_eq!(patient.join().unwrap().unwrap(), "vda");
            assert_eq!(st.lock().waiters.paths(), 0);
        });
    }
}
