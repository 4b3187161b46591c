//! [`Held`]: the datagrams a resync's rescan takes from the socket while it reads sysfs, held
//! in memory and applied once the registry is reconciled with what the rescan read.
//!
//! A rescan reads sysfs for as long as the tree takes; a listener that received nothing
//! meanwhile would leave the kernel's queue to fill, and under a storm a small receive buffer
//! (64 KiB, or the 208 KiB an unprivileged agent gets from `net.core.rmem_max`) overflows again
//! during the rescan: the recovery would feed the loss. So a scanner thread
//! (`pciplug-rescan`, for the rescan's time only) reads sysfs while the listener goes on
//! receiving into this queue, in the order received, and again while what was held is applied
//! (thousands of datagrams take milliseconds). The listener sleeps in `poll` between
//! datagrams, so the scheduler wakes it as each one comes, rather than leave it queued behind
//! a thread busy reading sysfs; the scan's time is the scanner's. Where no thread can be
//! started, the listener scans itself and takes what is queued between the devices it reads
//! (`Sysfs::scan_between`), with zero-timeout receives. An `ENOBUFS` seen meanwhile is
//! counted and owes one more resync, paced as any other; however many come during one
//! rescan, they owe one.
//!
//! # The bound
//!
//! At most [`MAX_HELD_BYTES`] (16 MiB, the datagrams and their bookkeeping alike), so that a
//! rescan's memory is bounded whatever the sender does. It is about 50 ms of the kernel's own
//! rate for one sender (some 350,000 uevents a second, a few hundred bytes each), longer
//! than a rescan of thousands of functions takes. Once it is full the listener leaves the rest
//! in the socket, as it did before it held anything: nothing is dropped by pciplug, the
//! socket's own buffer takes over, and if that overflows too the kernel says so with
//! `ENOBUFS`, which owes one more resync. (Dropping held datagrams at the bound, and owing a
//! resync for them, would lose what the socket might still hold.)
//!
//! # Why after the reconcile
//!
//! Every held datagram was sent after the rescan started (the socket was read empty just
//! before it), and the reconcile sets the registry to what sysfs showed at some moment during
//! the rescan, device by device. Applying the held datagrams afterwards, in order, is what
//! the listener does with the datagrams queued in the socket during a rescan, and with those
//! queued during the start-up scan; it is right because the registry's events are states,
//! not deltas: an `add` (or `bind`, `change`, `move`) of a device the rescan read already sets
//! what is there (the same device: no change; a later generation: replaced by it), a `remove`
//! (or `unbind`) of one the rescan never saw is a no-op, and a `remove` of one the rescan read
//! before it went removes it. A device's events, applied in order over any one state of it
//! that the rescan may have read, end in its last state; one older than what the rescan read
//! may show for a moment (a waiter woken by it sees what was there then), and the events after
//! it take the registry to the present. Applied before the reconcile instead, they would be
//! undone by it for every device the rescan read before the event.

use std::mem::size_of;
use std::ops::Range;

use crate::netlink::Envelope;

/// The most a rescan holds, datagrams and bookkeeping together: see the module documentation.
pub(super) const MAX_HELD_BYTES: usize = 16 << 20;

/// The datagrams received during one rescan, in order, with whether an overflow was seen.
#[derive(Debug, Default)]
pub(super) struct Held {
    /// Their bytes, one after the other.
    bytes: Vec<u8>,
    /// Each one's envelope and place in `bytes`.
    datagrams: Vec<(Envelope, Range<usize>)>,
    /// The kernel reported `ENOBUFS` during the rescan: one more resync is owed.
    pub(super) overflowed: bool,
}

impl Held {
    /// Whether one more datagram of `len` bytes may be held.
    pub(super) fn has_room(&self, len: usize) -> bool {
        self.size() + len + size_of::<(Envelope, Range<usize>)>() <= MAX_HELD_BYTES
    }

    /// The bytes held and their bookkeeping.
    fn size(&self) -> usize {
        self.bytes.len() + self.datagrams.len() * size_of::<(Envelope, Range<usize>)>()
    }

    /// Holds a datagram: its envelope and the bytes of it the receive kept.
    pub(super) fn push(&mut self, env: Envelope, bytes: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        self.datagrams.push((env, start..self.bytes.len()));
    }

    /// Whether nothing is held.
    pub(super) fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }

    /// Forgets what is held (keeps the memory for the next time).
    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.datagrams.clear();
        self.overflowed = false;
    }

    /// How many datagrams are held.
    pub(super) fn len(&self) -> usize {
        self.datagrams.len()
    }

    /// The held datagram number `i` (in the order received): its envelope with the bytes to
    /// read it from (a truncated one's `len` is more than its bytes, as after a receive).
    pub(super) fn get(&self, i: usize) -> Option<(Envelope, &[u8])> {
        let (env, range) = self.datagrams.get(i)?;
        Some((*env, &self.bytes[range.clone()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(len: usize, buf_len: usize) -> Envelope {
        Envelope {
            len,
            truncated: len > buf_len,
            sender_port: 0,
            groups: 1,
        }
    }

    #[test]
    fn datagrams_come_back_in_order_with_their_envelopes() {
        let mut h = Held::default();
        h.push(env(3, 8), b"add");
        h.push(env(0, 8), b"");
        // Truncated: 9 bytes long, 4 kept.
        h.push(env(9, 4), b"remo");
        let got: Vec<(Envelope, Vec<u8>)> = (0..)
            .map_while(|i| h.get(i))
            .map(|(e, b)| (e, b.to_vec()))
            .collect();
        assert_eq!(
            got,
            [
                (env(3, 8), b"add".to_vec()),
                (env(0, 8), vec![]),
                (env(9, 4), b"remo".to_vec())
            ]
        );
        assert_eq!(h.len(), 3);
        // Pushed while being read: behind the rest.
        h.push(env(2, 8), b"ok");
        assert_eq!(h.get(3), Some((env(2, 8), &b"ok"[..])));
        assert_eq!(h.get(4), None);
        assert_eq!(got[2].0.bytes(&got[2].1), b"remo", "as a receive gives it");
    }

    #[test]
    fn room_is_bounded_by_bytes_and_bookkeeping() {
        let entry = size_of::<(Envelope, Range<usize>)>();
        let mut h = Held::default();
        let big = vec![0u8; MAX_HELD_BYTES / 2];
        assert!(h.has_room(big.len()));
        h.push(env(big.len(), usize::MAX), &big);
        // What is left: the bound minus one datagram and its entry.
        let left = MAX_HELD_BYTES - big.len() - entry;
        assert!(h.has_room(left - entry));
        assert!(!h.has_room(left - entry + 1));
        // Empty datagrams still cost their entry: the bound holds for them too.
        let mut empties = Held::default();
        while empties.has_room(0) {
            empties.push(env(0, 8), b"");
        }
        assert_eq!(empties.len(), MAX_HELD_BYTES / entry);
    }
}
