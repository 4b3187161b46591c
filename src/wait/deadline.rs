//! [`Deadline`]: when a wait ends, and when it was asked for, so that its timeout reports the
//! time it was given rather than the time it happened to take.

use std::time::{Duration, Instant};

use crate::error::given;

/// When a wait ends (`at`, `None`: never), and the instant it was asked for (`asked`): a
/// timeout is turned into a deadline once, where the wait is asked for, and the time from
/// `asked` to `at` is what a timeout reports (`wait_block_timeout(.., 3 s)` reports 3 s,
/// whatever a SCSI scan or a rescan took before the wait began).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Deadline {
    pub(crate) asked: Instant,
    pub(crate) at: Option<Instant>,
}

impl Deadline {
    /// A wait for ever.
    pub(crate) fn never() -> Deadline {
        Deadline::from(None)
    }

    /// A wait of `timeout` from now; a timeout too large to represent is no timeout.
    pub(crate) fn after(timeout: Duration) -> Deadline {
        let asked = Instant::now();
        Deadline {
            asked,
            at: asked.checked_add(timeout),
        }
    }

    /// A wait until `at`, asked for now.
    pub(crate) fn at(at: Instant) -> Deadline {
        Deadline::from(Some(at))
    }

    /// The same wait, ending at `at` instead (a slice of it), still asked for when it was.
    pub(crate) fn until(self, at: Option<Instant>) -> Deadline {
        Deadline { at, ..self }
    }

    /// The time the wait was given, rounded up to the millisecond; for a wait for ever (which
    /// never times out), the time since it was asked for.
    pub(crate) fn given(&self) -> Duration {
        self.at
            .map_or(self.asked.elapsed(), |at| given(self.asked, at))
    }
}

impl From<Option<Instant>> for Deadline {
    /// Until `at` (`None`: for ever), asked for now.
    fn from(at: Option<Instant>) -> Deadline {
        Deadline {
            asked: Instant::now(),
            at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_reports_the_time_asked_for_not_the_time_since() {
        let d = Deadline::after(Duration::from_secs(3));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(d.given(), Duration::from_secs(3));
        assert_eq!(Deadline::after(Duration::ZERO).given(), Duration::ZERO);
        // A slice of it keeps when it was asked for.
        let slice = d.until(d.at.map(|at| at - Duration::from_secs(1)));
        assert_eq!(slice.given(), Duration::from_secs(2));
        assert_eq!(Deadline::after(Duration::MAX).at, None);
    }
}
