//! [`ChangeStream`]: the registry's changes as a `futures_core::Stream` (feature `stream`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crossbeam_channel::{Receiver, TryRecvError};

use super::Monitor;
use super::subscriber::StreamWaker;
use crate::registry::Change;

/// Every change the registry makes from the moment it was made, in order, as a
/// [`Stream`](futures_core::Stream) ([`Monitor::subscribe_stream`]); it ends when the
/// listener stops.
///
/// Fed as [`Monitor::subscribe`]'s channel is, with the same backlog: one that falls more
/// than 65536 changes behind misses the excess (counted in
/// [`MonitorStats::dropped_changes`](crate::MonitorStats::dropped_changes)). The listener
/// thread wakes the reading task after each batch of changes it sends, and at the end. No
/// thread or runtime of its own.
#[derive(Debug)]
#[must_use = "a stream does nothing unless polled"]
pub struct ChangeStream {
    rx: Receiver<Change>,
    waker: Arc<StreamWaker>,
}

impl Monitor {
    /// The changes as a [`ChangeStream`] (feature `stream`): [`subscribe`](Self::subscribe)
    /// for async code.
    pub fn subscribe_stream(&self) -> ChangeStream {
        let waker = Arc::new(StreamWaker::default());
        let rx = self.subscribe_with(Some(Arc::clone(&waker)));
        ChangeStream { rx, waker }
    }
}

impl futures_core::Stream for ChangeStream {
    type Item = Change;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Change>> {
        let this = self.get_mut();
        // 1. A change already there, or the end.
        match this.rx.try_recv() {
            Ok(change) => return Poll::Ready(Some(change)),
            Err(TryRecvError::Disconnected) => return Poll::Ready(None),
            Err(TryRecvError::Empty) => {}
        }
        // 2. Leave the waker, then look again: the listener sends, then wakes (and at the
        //    end closes, then wakes). A send or a close before the waker was left is seen by
        //    this second look; one after it finds the waker and wakes it.
        this.waker.set(cx.waker());
        match this.rx.try_recv() {
            Ok(change) => Poll::Ready(Some(change)),
            Err(TryRecvError::Disconnected) => Poll::Ready(None),
            Err(TryRecvError::Empty) => Poll::Pending,
        }
    }
}
