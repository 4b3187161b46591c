//! [`State`]: everything the listener and the waiters share behind the one state lock.

use crate::registry::Registry;
use crate::wait::Waiters;
use crate::wait::error::ListenerStopped;
use crate::wait::sync::{Mutex, MutexGuard};

/// The state lock: parking_lot's mutex, or loom's model of it when the wait protocol is
/// model-checked.
pub(crate) type StateLock = Mutex<State>;

/// The state lock, held.
pub(crate) type StateGuard<'a> = MutexGuard<'a, State>;

/// Whether the listener still runs.
#[derive(Clone, Debug)]
pub(crate) enum Status {
    Running,
    /// Stopped for good; the reason is given to every waiter.
    Stopped(ListenerStopped),
}

/// Everything behind the state lock.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) registry: Registry,
    pub(crate) waiters: Waiters,
    pub(crate) status: Status,
}

impl State {
    /// Stops for good: every waiter, present and future, gets
    /// [`WaitError::ListenerStopped`](crate::WaitError::ListenerStopped) with `why`. Keeps
    /// the first reason if it was stopped already.
    pub(crate) fn stop(&mut self, why: ListenerStopped) {
        if matches!(self.status, Status::Running) {
            self.status = Status::Stopped(why);
        }
        if let Status::Stopped(why) = &self.status {
            self.waiters.stop_all(why);
        }
    }
}
