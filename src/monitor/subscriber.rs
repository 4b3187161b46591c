//! [`Subscriber`]: one receiver of the registry's changes, a channel and, for a stream, the
//! waker of the task reading it.

use std::sync::Arc;
use std::task::Waker;

use crossbeam_channel::{Sender, TrySendError};
use parking_lot::Mutex;

use crate::registry::Change;

/// The listener's end of a subscription ([`Monitor::subscribe`](super::Monitor::subscribe)).
#[derive(Debug)]
pub(super) struct Subscriber {
    pub(super) tx: Sender<Change>,
    /// For a stream: where its task leaves its waker, woken after each send and at the end.
    pub(super) waker: Option<Arc<StreamWaker>>,
}

/// Where a stream's task leaves its waker: taken and woken by the listener.
#[derive(Debug, Default)]
pub(super) struct StreamWaker(Mutex<Option<Waker>>);

impl StreamWaker {
    /// Leaves `waker`, replacing the one left before.
    #[cfg_attr(not(feature = "stream"), allow(dead_code))]
    pub(super) fn set(&self, waker: &Waker) {
        let mut slot = self.0.lock();
        match &*slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    /// Wakes the waker left, if any, outside the lock (the task may poll at once).
    fn wake(&self) {
        let waker = self.0.lock().take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// What a send did: delivered, dropped (the subscriber is behind), or the subscriber is gone.
pub(super) enum Sent {
    Delivered,
    Dropped,
    Gone,
}

impl Subscriber {
    /// Sends `change`, without waking: [`Subscriber::wake`] once after the batch.
    pub(super) fn send(&self, change: Change) -> Sent {
        match self.tx.try_send(change) {
            Ok(()) => Sent::Delivered,
            Err(TrySendError::Full(_)) => Sent::Dropped,
            Err(TrySendError::Disconnected(_)) => Sent::Gone,
        }
    }

    /// Wakes a stream's task, after a batch was sent.
    pub(super) fn wake(&self) {
        if let Some(w) = &self.waker {
            w.wake();
        }
    }

    /// Ends the subscription: the channel is closed first, then a stream's task is woken, so
    /// that it finds the end (woken before, it could find the channel open and sleep on).
    pub(super) fn close(self) {
        let Subscriber { tx, waker } = self;
        drop(tx);
        if let Some(w) = waker {
            w.wake();
        }
    }
}
