//! Batched receive: [`RecvBatch`] and [`UeventSocket::recv_batch`] and its forms, which drain
//! the socket with `recvmmsg(2)` and `poll` only when it is found empty.
//!
//! One receive step of [`UeventSocket::recv`] costs a `poll` and a `recvmsg`, each with its
//! own wake-up, per datagram. In a storm the kernel queues uevents faster than that: a batched
//! receive reads whatever is queued, up to the batch's capacity, in one system call, and waits
//! in `poll` only when a read found nothing. Each datagram keeps what [`Envelope`] says about
//! it (full length with `MSG_TRUNC`, `truncated`, sender port and groups).
//!
//! An overflow (`ENOBUFS`) is reported by the kernel at the first read after the drop, ahead
//! of the datagrams still queued; when it would come in the middle of a batch, the kernel ends
//! the batch there and keeps the error for the next read, so [`Batch::Overflow`] comes in the
//! same place of the stream as [`Received::Overflow`](super::Received::Overflow) would.
//!
//! A [`Stopper`](super::Stopper) is checked before every read (an atomic flag, no system
//! call), so a stop ends a flood after at most one more batch.

use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use super::sys::{MmsgEntry, MmsgHeaders, recv_mmsg};
use super::{Envelope, MAX_DATAGRAM, Ready, UeventSocket};

/// The most datagrams one batch holds: `recvmmsg` takes at most `UIO_MAXIOV` (1024) messages.
pub const MAX_BATCH: usize = 1024;

/// Room for a batch of datagrams and what the kernel said about each, reused from one
/// batched receive to the next (it allocates only in [`RecvBatch::new`]).
///
/// ```no_run
/// use pciplug::netlink::{Batch, RecvBatch, UeventSocket};
/// let socket = UeventSocket::open()?;
/// let mut batch = RecvBatch::new(32);
/// loop {
///     match socket.recv_batch(&mut batch)? {
///         Batch::Datagrams(_) => {
///             for (envelope, bytes) in batch.iter() {
///                 if envelope.is_from_kernel() && !envelope.truncated {
///                     println!("{} bytes", bytes.len());
///                 }
///             }
///         }
///         Batch::Overflow => println!("events lost: resync"),
///         Batch::TimedOut => {}
///         Batch::Stopped => break,
///     }
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct RecvBatch {
    /// `capacity` slots of `slot_len` bytes, one per datagram.
    storage: Vec<u8>,
    slot_len: usize,
    /// Length and source of each datagram of the last receive, in order.
    entries: Vec<MmsgEntry>,
    headers: MmsgHeaders,
    /// The last read ended because the socket was empty (it filled less than the batch, or
    /// found nothing): the next receive waits in `poll` first rather than read for nothing.
    drained: bool,
}

impl RecvBatch {
    /// Room for `capacity` datagrams of up to [`MAX_DATAGRAM`] bytes each (any uevent whole).
    ///
    /// `capacity` is clamped to `1..=`[`MAX_BATCH`]. The memory (`capacity` x 8 KiB) is
    /// allocated zeroed, so pages the kernel never writes to cost nothing.
    pub fn new(capacity: usize) -> RecvBatch {
        RecvBatch::with_datagram_len(capacity, MAX_DATAGRAM)
    }

    /// Room for `capacity` datagrams of up to `datagram_len` bytes each; a longer datagram is
    /// reported [`truncated`](Envelope::truncated). `capacity` is clamped to
    /// `1..=`[`MAX_BATCH`] and `datagram_len` to at least 1.
    pub fn with_datagram_len(capacity: usize, datagram_len: usize) -> RecvBatch {
        let capacity = capacity.clamp(1, MAX_BATCH);
        let slot_len = datagram_len.max(1);
        RecvBatch {
            storage: vec![0u8; capacity * slot_len],
            slot_len,
            entries: Vec::with_capacity(capacity),
            headers: MmsgHeaders::default(),
            drained: false,
        }
    }

    /// The most datagrams one receive puts in the batch.
    pub fn capacity(&self) -> usize {
        self.storage.len() / self.slot_len
    }

    /// The bytes kept of each datagram; a longer one is truncated.
    pub fn datagram_len(&self) -> usize {
        self.slot_len
    }

    /// Number of datagrams the last receive put in the batch (0 after anything but
    /// [`Batch::Datagrams`]).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if the last receive put no datagram in the batch.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The `i`th datagram of the last receive: its envelope and the bytes kept of it.
    pub fn get(&self, i: usize) -> Option<(Envelope, &[u8])> {
        (i < self.entries.len()).then(|| self.at(i))
    }

    /// The datagrams of the last receive, in the order the kernel queued them.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (Envelope, &[u8])> + '_ {
        (0..self.entries.len()).map(move |i| self.at(i))
    }

    /// The `i`th datagram, for `i < len()` (each entry has its slot: at most `capacity()`
    /// are filled).
    fn at(&self, i: usize) -> (Envelope, &[u8]) {
        let (len, source) = self.entries[i];
        let envelope = Envelope {
            len,
            truncated: len > self.slot_len,
            sender_port: source.nl_pid,
            groups: source.nl_groups,
        };
        let slot = &self.storage[i * self.slot_len..][..self.slot_len];
        (envelope, envelope.bytes(slot))
    }
}

/// What one batched receive produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Batch {
    /// This many datagrams (at least one) are in the batch ([`RecvBatch::iter`]), in order.
    /// Check [`Envelope::is_from_kernel`] of each before believing it.
    Datagrams(usize),
    /// The receive buffer overflowed (`ENOBUFS`), as
    /// [`Received::Overflow`](super::Received::Overflow); the batch is empty.
    Overflow,
    /// Nothing was queued and the deadline passed (from [`UeventSocket::try_recv_batch`], the
    /// `_timeout` and the `_deadline` forms); the batch is empty.
    TimedOut,
    /// A [`Stopper`](super::Stopper) of this socket was used; every receive from now on
    /// returns this at once, whatever is queued. The batch is empty.
    Stopped,
}

impl UeventSocket {
    /// Waits until at least one datagram is queued, an overflow, or a stop, then receives every
    /// datagram queued, up to the batch's capacity, in one system call.
    ///
    /// The datagrams replace what the batch held. Like [`recv`](Self::recv), each is read with
    /// `MSG_TRUNC` and `EINTR` is retried; other errors are returned as they are.
    pub fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<Batch> {
        self.recv_batch_until(batch, None)
    }

    /// Receives what is queued, up to the batch's capacity, and never waits:
    /// [`Batch::TimedOut`] if nothing was.
    pub fn try_recv_batch(&self, batch: &mut RecvBatch) -> io::Result<Batch> {
        self.recv_batch_until(batch, Some(Instant::now()))
    }

    /// Like [`recv_batch`](Self::recv_batch), but gives up with [`Batch::TimedOut`] after
    /// `timeout`.
    pub fn recv_batch_timeout(
        &self,
        batch: &mut RecvBatch,
        timeout: Duration,
    ) -> io::Result<Batch> {
        // A timeout too large for an Instant is no timeout.
        self.recv_batch_until(batch, Instant::now().checked_add(timeout))
    }

    /// Like [`recv_batch`](Self::recv_batch), but gives up with [`Batch::TimedOut`] at
    /// `deadline`. Datagrams already queued are received even when the deadline has passed.
    pub fn recv_batch_deadline(
        &self,
        batch: &mut RecvBatch,
        deadline: Instant,
    ) -> io::Result<Batch> {
        self.recv_batch_until(batch, Some(deadline))
    }

    /// Read first, and `poll` only when the socket was found empty (by this read, or by the
    /// last one, which then filled less than the batch: no read for nothing before the wait).
    fn recv_batch_until(
        &self,
        batch: &mut RecvBatch,
        deadline: Option<Instant>,
    ) -> io::Result<Batch> {
        // Whatever this receive gives, the last one's datagrams are gone.
        batch.entries.clear();
        let mut wait_first = batch.drained;
        loop {
            // A stop wins over queued datagrams: checked before every read.
            if self.stop.is_set() {
                return Ok(Batch::Stopped);
            }
            if !wait_first {
                if let Some(got) = self.read_batch(batch)? {
                    return Ok(got);
                }
            }
            wait_first = false;
            match self.wait_ready(deadline)? {
                Ready::Stopped => return Ok(Batch::Stopped),
                Ready::TimedOut => return Ok(Batch::TimedOut),
                Ready::Readable | Ready::Again => {}
            }
        }
    }

    /// One `recvmmsg` without blocking. `None` when there was nothing to read (or a signal
    /// interrupted the read); the batch is then empty.
    fn read_batch(&self, batch: &mut RecvBatch) -> io::Result<Option<Batch>> {
        let RecvBatch {
            storage,
            slot_len,
            entries,
            headers,
            drained,
        } = batch;
        let capacity = storage.len() / *slot_len;
        let read = recv_mmsg(
            self.socket.as_fd(),
            storage,
            *slot_len,
            headers,
            entries,
            libc::MSG_TRUNC | libc::MSG_DONTWAIT,
        );
        // Fewer than asked for: the kernel stopped at an empty queue (or at an error it keeps
        // for the next read, which `poll` then reports at once).
        *drained = !matches!(read, Ok(n) if n >= capacity);
        match read {
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some(Batch::Datagrams(n))),
            Err(e) => {
                entries.clear();
                if e.raw_os_error() == Some(libc::ENOBUFS) {
                    *drained = false;
                    Ok(Some(Batch::Overflow))
                } else if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_clamps_its_capacity_and_slot_length() {
        let b = RecvBatch::new(0);
        assert_eq!(b.capacity(), 1);
        assert_eq!(b.datagram_len(), MAX_DATAGRAM);
        assert!(b.is_empty());
        assert_eq!(b.len(), 0);
        assert!(b.get(0).is_none());
        let b = RecvBatch::with_datagram_len(usize::MAX / 2, 0);
        assert_eq!(b.capacity(), MAX_BATCH);
        assert_eq!(b.datagram_len(), 1);
        assert_eq!(RecvBatch::with_datagram_len(7, 100).capacity(), 7);
    }

    #[test]
    fn batch_types_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<RecvBatch>();
        send_sync::<Batch>();
    }

    // No privilege needed: nothing is injected, and the machine's own uevents (if this socket
    // gets any) are only counted, never asserted on.
    #[test]
    fn a_stop_ends_batched_receives_at_once_and_for_good() {
        let socket = UeventSocket::open().expect("opening a uevent socket");
        let mut batch = RecvBatch::new(4);
        let got = socket.try_recv_batch(&mut batch).unwrap();
        assert!(
            matches!(got, Batch::TimedOut | Batch::Datagrams(_)),
            "{got:?}"
        );
        socket.stopper().stop();
        assert_eq!(socket.try_recv_batch(&mut batch).unwrap(), Batch::Stopped);
        assert!(batch.is_empty());
        assert_eq!(socket.recv_batch(&mut batch).unwrap(), Batch::Stopped);
        assert_eq!(
            socket
                .recv_batch_timeout(&mut batch, Duration::from_secs(60))
                .unwrap(),
            Batch::Stopped
        );
    }
}
