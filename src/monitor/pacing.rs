//! [`Pacing`]: when the next resync may start, so that resyncs do not feed the overflow they
//! repair.
//!
//! A resync reads sysfs while the kernel goes on sending. The listener goes on receiving
//! meanwhile (`held.rs`), but a rescan is CPU time the listener and the sender need too, and
//! what arrived meanwhile waits to be applied until it is done: a listener that resynced at
//! once after each overflow would spend its time rescanning, and under a storm lose ever more,
//! the recovery feeding the loss. So a resync owed after an
//! overflow starts no sooner than [`Pacing::earliest`]: the end of the previous rescan plus
//! the longer of the least gap ([`MIN_RESYNC_GAP`]) and that rescan's own duration.
//!
//! The bound: at most one rescan per [`MIN_RESYNC_GAP`], and rescans take at most half of the
//! listener's time whatever they cost (a rescan of a large tree spaces the next one as
//! much). Until the owed resync starts, datagrams are received and applied as usual, and every
//! overflow meanwhile is covered by that one resync. The price is the time a lost event stays
//! lost: one gap plus one rescan at most, 50 ms plus the scan, far below any wait's timeout.
//! The first overflow, with no rescan before it, is resynced at once.

use std::time::{Duration, Instant};

/// The least time from the end of one rescan to the start of the next.
pub(crate) const MIN_RESYNC_GAP: Duration = Duration::from_millis(50);

/// The last rescan's start and end, and the least gap after one.
#[derive(Debug)]
pub(super) struct Pacing {
    min_gap: Duration,
    last: Option<(Instant, Instant)>,
}

impl Pacing {
    /// No rescan yet; `min_gap` at least between two.
    pub(super) fn new(min_gap: Duration) -> Pacing {
        Pacing {
            min_gap,
            last: None,
        }
    }

    /// When a resync owed now may start: `None` for at once.
    pub(super) fn earliest(&self) -> Option<Instant> {
        let (start, end) = self.last?;
        let gap = self.min_gap.max(end.saturating_duration_since(start));
        // A gap too large for an Instant (only a test could ask for one) is capped at an
        // hour: a resync that never came would leave the loss uncorrected for ever.
        end.checked_add(gap)
            .or_else(|| end.checked_add(Duration::from_secs(3600)))
    }

    /// Notes a rescan that ran from `start` to `end`.
    pub(super) fn ran(&mut self, start: Instant, end: Instant) {
        self.last = Some((start, end));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_resync_is_at_once_the_next_after_the_longer_of_the_gap_and_the_rescan() {
        let mut p = Pacing::new(MIN_RESYNC_GAP);
        assert_eq!(p.earliest(), None);
        let t0 = Instant::now();
        // A quick rescan: the least gap after its end.
        let end = t0 + Duration::from_millis(5);
        p.ran(t0, end);
        assert_eq!(p.earliest(), Some(end + MIN_RESYNC_GAP));
        // A slow one: as long again after its end.
        let (start, end) = (end, end + Duration::from_millis(200));
        p.ran(start, end);
        assert_eq!(p.earliest(), Some(end + Duration::from_millis(200)));
    }

    #[test]
    fn a_gap_too_large_for_an_instant_still_ends() {
        let mut p = Pacing::new(Duration::MAX);
        let t0 = Instant::now();
        p.ran(t0, t0);
        assert_eq!(p.earliest(), Some(t0 + Duration::from_secs(3600)));
    }
}
