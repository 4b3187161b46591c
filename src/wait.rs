//! The waiter protocol: check, register, wait until the deadline, unregister.
//!
//! Waiters and the listener share one mutex around the registry. Each PCI path somebody waits
//! on has its own condition variable, so an event wakes only the waiters of the paths it
//! changed: its cost does not grow with the number of waiters on other paths. Waiting on a
//! path registers it in a table; the last waiter of a path to leave removes the entry, so a
//! million timed-out waits leave nothing behind.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::path::PciPath;
use crate::registry::Registry;

/// Condition variables of the paths being waited on.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    /// Invariant: an entry exists exactly while its count (the number of registered waiters)
    /// is above zero.
    slots: HashMap<PciPath, (Arc<Condvar>, usize)>,
}

impl Waiters {
    fn register(&mut self, path: PciPath) -> Arc<Condvar> {
        let slot = self.slots.entry(path).or_default();
        slot.1 += 1;
        Arc::clone(&slot.0)
    }

    fn unregister(&mut self, path: &PciPath) {
        if let Some(slot) = self.slots.get_mut(path) {
            slot.1 -= 1;
            if slot.1 == 0 {
                self.slots.remove(path);
            }
        }
    }

    /// Wakes the waiters of `path`, if any. Called with the state lock held.
    pub(crate) fn wake(&self, path: &PciPath) {
        if let Some((cv, _)) = self.slots.get(path) {
            cv.notify_all();
        }
    }

    /// Wakes every waiter (shutdown, listener failure).
    pub(crate) fn wake_all(&self) {
        for (cv, _) in self.slots.values() {
            cv.notify_all();
        }
    }

    /// Number of paths with at least one waiter.
    pub(crate) fn paths(&self) -> usize {
        self.slots.len()
    }

    /// Number of registered waiters.
    pub(crate) fn waiters(&self) -> usize {
        self.slots.values().map(|s| s.1).sum()
    }
}

/// Whether the listener still runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Running,
    /// Stopped for good; the reason is given to every waiter.
    Stopped(String),
}

/// Everything behind the one lock.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) registry: Registry,
    pub(crate) waiters: Waiters,
    pub(crate) status: Status,
}

/// What a wait is for, for the timeout message ("no block disk at 02/00 within 3s: ...").
pub(crate) struct Wanted<'a> {
    pub(crate) what: &'a str,
    pub(crate) path: PciPath,
}

/// Waits until `answer` gives something for the registry, the deadline passes, or the
/// listener stops. `deadline` `None` waits for ever.
pub(crate) fn wait_for<T>(
    state: &Mutex<State>,
    wanted: Wanted<'_>,
    deadline: Option<Instant>,
    answer: impl Fn(&Registry) -> Option<T>,
) -> Result<T> {
    let start = Instant::now();
    let path = wanted.path;
    let mut st = state.lock();
    // 1. Check: the answer may be there already (a device present before the wait).
    if let Some(t) = answer(&st.registry) {
        return Ok(t);
    }
    // 2. Register, still under the lock the listener applies events under: no change can
    //    fall between the check above and the registration.
    let cv = st.waiters.register(path);
    let result = loop {
        if let Status::Stopped(why) = &st.status {
            break Err(Error::ListenerStopped(why.clone()));
        }
        // 3. Park until woken or the deadline. The deadline was fixed once, so a spurious or
        //    unrelated wakeup loops back here without extending it.
        let timed_out = match deadline {
            Some(d) => cv.wait_until(&mut st, d).timed_out(),
            None => {
                cv.wait(&mut st);
                false
            }
        };
        if let Some(t) = answer(&st.registry) {
            break Ok(t);
        }
        if timed_out {
            break Err(Error::Timeout {
                wanted: format!("{} at {path}", wanted.what),
                waited: start.elapsed(),
                seen: st.registry.describe(&path),
            });
        }
    };
    // 4. Unregister, so that the table holds only live waiters.
    st.waiters.unregister(&path);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;
    use std::time::Duration;

    fn state() -> Arc<Mutex<State>> {
        Arc::new(Mutex::new(State {
            registry: Registry::new(),
            waiters: Waiters::default(),
            status: Status::Running,
        }))
    }

    const VDA: &[u8] = b"add@/devices/pci0000:00/0000:00:02.0/0000:01:00.0/virtio0/block/vda\0\
        ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:02.0/0000:01:00.0/virtio0/block/vda\0\
        SUBSYSTEM=block\0DEVNAME=vda\0DEVTYPE=disk\0DISKSEQ=1\0SEQNUM=1\0";

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
        let want = Wanted {
            what: "block disk",
            path: p("02/00"),
        };
        let got = wait_for(&st, want, Some(Instant::now()), |r| {
            disk_name(r, &p("02/00"))
        });
        assert_eq!(got.unwrap(), "vda");
        assert_eq!(st.lock().waiters.paths(), 0);
    }

    #[test]
    fn a_waiter_is_woken_by_a_change_at_its_path() {
        let st = state();
        let st2 = Arc::clone(&st);
        let waiter = thread::spawn(move || {
            let want = Wanted {
                what: "block disk",
                path: p("02/00"),
            };
            wait_for(&st2, want, None, |r| disk_name(r, &p("02/00")))
        });
        // Wait until it is registered, then apply and wake as the listener does.
        while st.lock().waiters.waiters() == 0 {
            thread::yield_now();
        }
        {
            let mut s = st.lock();
            let pciplug_changes = s.registry.apply_datagram(0, VDA);
            assert!(
                matches!(pciplug_changes, crate::registry::Outcome::Applied(ref c) if !c.is_empty())
            );
            s.waiters.wake(&p("02/00"));
        }
        assert_eq!(waiter.join().unwrap().unwrap(), "vda");
        assert_eq!(st.lock().waiters.paths(), 0, "the waiter unregistered");
    }

    #[test]
    fn a_timeout_says_what_was_seen() {
        let st = state();
        let want = Wanted {
            what: "block disk",
            path: p("02/01"),
        };
        let deadline = Instant::now() + Duration::from_millis(20);
        let err = wait_for(&st, want, Some(deadline), |r| disk_name(r, &p("02/01"))).unwrap_err();
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
            let want = Wanted {
                what: "block disk",
                path: p("02/00"),
            };
            let r = wait_for(&st2, want, Some(deadline), |r| disk_name(r, &p("02/00")));
            (r, Instant::now())
        });
        // Spurious wakeups of its path, with nothing for it, until past the deadline.
        while Instant::now() < deadline + Duration::from_millis(50) {
            st.lock().waiters.wake(&p("02/00"));
            thread::sleep(Duration::from_millis(5));
        }
        let (r, ended) = waiter.join().unwrap();
        assert!(matches!(r, Err(Error::Timeout { .. })));
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
        let st2 = Arc::clone(&st);
        let waiter = thread::spawn(move || {
            let want = Wanted {
                what: "block disk",
                path: p("02/00"),
            };
            wait_for(&st2, want, None, |r| disk_name(r, &p("02/00")))
        });
        while st.lock().waiters.waiters() == 0 {
            thread::yield_now();
        }
        {
            let mut s = st.lock();
            s.status = Status::Stopped("shut down".into());
            s.waiters.wake_all();
        }
        let err = waiter.join().unwrap().unwrap_err();
        assert_eq!(err.to_string(), "listener stopped: shut down");
        assert_eq!(st.lock().waiters.paths(), 0);
    }
}
