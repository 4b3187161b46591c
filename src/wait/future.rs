//! The waiter protocol as a future: check, register, leave a `Waker` in the slot, look again
//! when woken; unregister when answered or dropped.
//!
//! [`AsyncWaiter`] is the protocol's state for one async wait; the public future
//! ([`WaitFuture`](crate::WaitFuture)) drives it from `poll` and cancels it from `Drop`. It
//! starts no thread and needs no runtime: the listener thread wakes it through the waker it
//! left in its slot, exactly where it would notify a sleeping thread.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use super::error::WaitError;
use super::sync::Mutex;
use super::{Slot, Watch, check};
use crate::monitor::state::{State, Status};
use crate::registry::Registry;

/// One async wait's place in the protocol.
#[derive(Debug)]
pub(crate) struct AsyncWaiter {
    at: Watch,
    deadline: Option<Instant>,
    /// Set from registering (step 2) until unregistering (step 5) or the listener's stop.
    registered: Option<Registered>,
}

/// A registered async waiter: its slot, the generation it last looked at the registry for,
/// and its id among the slot's wakers.
#[derive(Debug)]
struct Registered {
    slot: Arc<Slot>,
    seen: u64,
    id: u64,
}

impl AsyncWaiter {
    /// A wait at `at`, until `deadline` (`None`: for ever). Nothing is registered until the
    /// first poll.
    pub(crate) fn new(at: Watch, deadline: Option<Instant>) -> AsyncWaiter {
        AsyncWaiter {
            at,
            deadline,
            registered: None,
        }
    }

    /// One poll: the answer, the error of a stopped listener or of a passed deadline
    /// (`timeout`), or `Pending` with `cx`'s waker left in the slot. After `Ready`, it is
    /// unregistered; polling it again starts a new wait.
    pub(crate) fn poll<T>(
        &mut self,
        state: &Mutex<State>,
        cx: &mut Context<'_>,
        answer: impl Fn(&Registry) -> Option<Result<T, WaitError>>,
        timeout: impl FnOnce(&Registry) -> WaitError,
    ) -> Poll<Result<T, WaitError>> {
        let mut st = state.lock();
        loop {
            // 1 and 4. Check, under the state lock: the answer may be there (already, or
            //    since the last poll), or the listener may have stopped.
            match check(&st, &answer) {
                // Stopped: the table was emptied (or we never registered); nothing to undo.
                // A registered waiter's waker was taken and woken by the stop.
                Some(Err(stopped)) => {
                    self.registered = None;
                    return Poll::Ready(Err(stopped.into()));
                }
                Some(Ok(result)) => {
                    self.unregister(&mut st.waiters);
                    return Poll::Ready(result);
                }
                None => {}
            }
            // The deadline was fixed once, so a spurious wakeup does not extend it.
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                self.unregister(&mut st.waiters);
                return Poll::Ready(Err(timeout(&st.registry)));
            }
            // 2. Register and note the generation, still under the state lock: a change
            //    applied after the check above finds the slot in the table, and the listener
            //    bumps it past `seen` once it has released the state lock.
            let at = self.at;
            let reg = self.registered.get_or_insert_with(|| {
                let slot = st.waiters.register(at);
                let mut signal = slot.signal.lock();
                let (seen, id) = (signal.generation, signal.next_id);
                signal.next_id += 1;
                drop(signal);
                Registered { slot, seen, id }
            });
            // 3. Park, still under the state lock: leave our waker in the slot, under the
            //    slot's lock (state, then signal: the lock order). No change can be applied
            //    between the check above and this (the listener applies under the state lock
            //    we hold), so the bump of any change the check did not see comes after our
            //    waker is there, and takes and wakes it. A bump found here already (generation
            //    past `seen`) is that of a change the check saw, or of one applied between two
            //    polls: look at the registry again rather than sleep. (The loom model finds the
            //    missed wakeup if the state lock is released before the waker is left and this
            //    look is skipped.) The status is running (the check said so, and the stop
            //    needs the state lock we hold), so the slot is not stopped.
            let mut signal = reg.slot.signal.lock();
            if signal.generation != reg.seen {
                reg.seen = signal.generation;
                drop(signal);
                continue;
            }
            let id = reg.id;
            match signal.wakers.iter_mut().find(|(i, _)| *i == id) {
                Some((_, w)) => {
                    if !w.will_wake(cx.waker()) {
                        *w = cx.waker().clone();
                    }
                }
                None => signal.wakers.push((id, cx.waker().clone())),
            }
            return Poll::Pending;
        }
    }

    /// Leaves the protocol before an answer (the future is dropped): unregisters at once, so
    /// the waiter count drops now, and takes its waker out of the slot.
    pub(crate) fn cancel(&mut self, state: &Mutex<State>) {
        if self.registered.is_none() {
            return;
        }
        let mut st = state.lock();
        if matches!(st.status, Status::Running) {
            self.unregister(&mut st.waiters);
        } else {
            // 5'. The listener stopped: the table was emptied for good, and our waker taken.
            self.registered = None;
        }
    }

    /// 5. Unregisters, under the state lock, and takes our waker out of the slot (another
    ///    waiter of the path may keep the slot alive).
    fn unregister(&mut self, waiters: &mut super::Waiters) {
        if let Some(reg) = self.registered.take() {
            waiters.unregister(&self.at);
            reg.slot.signal.lock().wakers.retain(|(i, _)| *i != reg.id);
        }
    }
}

/// The async protocol under loom: a future driven by `loom::future::block_on` against the
/// listener applying an event, and against a stop; and a dropped future.
#[cfg(all(test, feature = "model-check"))]
mod model {
    use super::super::fixtures::{listener_applies, path, state, thread};
    use super::*;
    use std::future::Future;
    use std::pin::Pin;

    /// The disk at 02/00, as an async wait with no deadline.
    struct Disk {
        st: Arc<Mutex<State>>,
        waiter: AsyncWaiter,
    }

    impl Future for Disk {
        type Output = Result<String, WaitError>;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<String, WaitError>> {
            let this = self.get_mut();
            let answer = |r: &Registry| r.disk(&path()).map(|b| Ok(b.name.to_string()));
            this.waiter.poll(&this.st, cx, answer, |_| unreachable!())
        }
    }

    impl Drop for Disk {
        fn drop(&mut self) {
            self.waiter.cancel(&self.st);
        }
    }

    fn disk(st: &Arc<Mutex<State>>) -> Disk {
        Disk {
            st: Arc::clone(st),
            waiter: AsyncWaiter::new(Watch::Path(path()), None),
        }
    }

    #[test]
    fn model_an_async_waiter_never_misses_the_event_it_waits_for() {
        loom::model(|| {
            let st = state();
            let f = disk(&st);
            let w = thread::spawn(move || loom::future::block_on(f));
            listener_applies(&st);
            assert_eq!(w.join().unwrap().unwrap(), "vda");
            let left = st.lock();
            assert_eq!((left.waiters.paths(), left.waiters.waiters()), (0, 0));
        });
    }

    #[test]
    fn model_an_async_waiter_racing_a_stop_gets_the_disk_or_the_error() {
        loom::model(|| {
            let st = state();
            let f = disk(&st);
            let w = thread::spawn(move || loom::future::block_on(f));
            let stopper = {
                let st = Arc::clone(&st);
                thread::spawn(move || st.lock().stop(crate::ListenerStopped::ShutDown))
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
    fn model_a_dropped_async_waiter_leaves_nothing_and_its_neighbour_is_woken() {
        loom::model(|| {
            let st = state();
            // One future polled once (registered, waker left) then dropped, racing the
            // listener; a thread waiting on the same path is still woken.
            let patient = super::super::fixtures::waiter(&st, None);
            let dropped = {
                let st = Arc::clone(&st);
                thread::spawn(move || {
                    let mut f = disk(&st);
                    let waker = std::task::Waker::noop();
                    let mut cx = Context::from_waker(waker);
                    let _ = Pin::new(&mut f).poll(&mut cx);
                })
            };
            listener_applies(&st);
            dropped.join().unwrap();
            assert_eq!(patient.join().unwrap().unwrap(), "vda");
            let left = st.lock();
            assert_eq!((left.waiters.paths(), left.waiters.waiters()), (0, 0));
        });
    }
}
