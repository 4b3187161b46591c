//! [`WaitFuture`]: an async wait of a [`Monitor`], woken by its listener thread.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::{Monitor, RESCAN_INTERVAL};
use crate::registry::Registry;
use crate::wait::deadline::Deadline;
use crate::wait::error::WaitError;
use crate::wait::future::AsyncWaiter;
use crate::wait::{Watch, timer};

/// What answers the wait, from the registry (run under the state lock).
pub(super) type Answer<T> = Box<dyn Fn(&Registry) -> Option<Result<T, WaitError>> + Send>;
/// The timeout's error, from the registry and the time the wait was given.
pub(super) type Timeout = Box<dyn Fn(&Registry, Duration) -> WaitError + Send>;
/// What a wait does once before it looks at the registry (the SCSI scan on request).
pub(super) type Before = Box<dyn FnOnce(&Monitor) -> Result<(), WaitError> + Send>;

/// The future of an async wait ([`Monitor::wait_block_async`] and the rest): resolves to
/// what the sync wait of the same name returns.
///
/// It is woken by the monitor's listener thread, through the [`Waker`](std::task::Waker) it
/// leaves in the monitor's waiter table, when a change at its path may answer it, or when the
/// listener stops. A wait with a deadline is also woken at the deadline, by one timer thread
/// (`pciplug-timer`) shared by all async waits, started by the first one with a deadline.
/// No thread is started per wait and no runtime is needed: any executor can poll it.
///
/// Dropping it cancels the wait at once: it leaves the waiter table
/// ([`MonitorStats::waiters`](crate::MonitorStats::waiters) drops) and the timer. It holds
/// a handle to the monitor, so the listener runs while it is pending.
///
/// # Panics
///
/// When polled again after it returned `Ready`, as futures may.
#[must_use = "a future does nothing unless polled"]
pub struct WaitFuture<T> {
    monitor: Monitor,
    waiter: AsyncWaiter,
    answer: Answer<T>,
    timeout: Timeout,
    before: Option<Before>,
    /// When it ends, and when it was asked for: the timeout reports the time between.
    deadline: Deadline,
    /// With [`MonitorBuilder::rescan`](crate::MonitorBuilder::rescan): when to rescan next.
    next_rescan: Option<Instant>,
    timer: Option<timer::Entry>,
    done: bool,
}

impl<T> WaitFuture<T> {
    pub(super) fn new(
        monitor: &Monitor,
        at: Watch,
        deadline: Deadline,
        answer: Answer<T>,
        timeout: Timeout,
        before: Option<Before>,
    ) -> WaitFuture<T> {
        let now = Instant::now();
        WaitFuture {
            monitor: monitor.clone(),
            waiter: AsyncWaiter::new(at, deadline.at),
            answer,
            timeout,
            before,
            deadline,
            next_rescan: monitor.inner.edges.rescan.then_some(now),
            timer: None,
            done: false,
        }
    }

    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, WaitError>> {
        if let Some(before) = self.before.take() {
            before(&self.monitor)?;
        }
        // With rescan on: rescan when the wait starts and every RESCAN_INTERVAL, as the
        // sync wait does (a write to sysfs, made on the polling thread).
        if let Some(next) = self.next_rescan {
            if Instant::now() >= next {
                crate::sysfs_write::rescan(&self.monitor.inner.edges.sysfs_root)?;
                self.next_rescan = Instant::now().checked_add(RESCAN_INTERVAL);
            }
        }
        let (deadline, timeout) = (self.deadline, &self.timeout);
        let state = &self.monitor.inner.shared.state;
        let polled = self
            .waiter
            .poll(state, cx, &self.answer, |r| timeout(r, deadline.given()));
        if polled.is_pending() {
            // Woken at the deadline or the next rescan by the timer thread, if either.
            let wake_at = match (self.deadline.at, self.next_rescan) {
                (Some(d), Some(n)) => Some(d.min(n)),
                (d, n) => d.or(n),
            };
            if let Some(at) = wake_at {
                timer::wake_at(&mut self.timer, at, cx.waker())?;
            }
        }
        polled
    }
}

impl<T> Future for WaitFuture<T> {
    type Output = Result<T, WaitError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, WaitError>> {
        // Every field is `Unpin`: the future is never pinned in place.
        let this = self.get_mut();
        assert!(!this.done, "a pciplug WaitFuture polled after it completed");
        let polled = this.poll_wait(cx);
        if polled.is_ready() {
            this.done = true;
            // Ready: the waiter has left the table; an error before it registered
            // (a refused scan or rescan) or after (the timer) leaves it here: cancel.
            this.waiter.cancel(&this.monitor.inner.shared.state);
            this.timer = None;
        }
        polled
    }
}

impl<T> Drop for WaitFuture<T> {
    fn drop(&mut self) {
        // Cancelled (or done): out of the waiter table now; the timer entry drops itself.
        self.waiter.cancel(&self.monitor.inner.shared.state);
    }
}

impl<T> fmt::Debug for WaitFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitFuture")
            .field("waiter", &self.waiter)
            .field("deadline", &self.deadline)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
