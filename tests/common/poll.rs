//! `eventually`: the one poll-until loop of the tests, always with a timeout.

use std::thread;
use std::time::{Duration, Instant};

/// Checks `done` until it holds or `timeout` has passed, and says whether it held (checked a
/// last time at the timeout). The caller asserts on the answer with what it was waiting for.
///
/// The first checks only yield, so that a condition that holds within microseconds (a
/// listener taking the datagram just injected) costs no sleep; after them it sleeps, up to a
/// millisecond between checks.
#[must_use]
pub fn eventually(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut checks = 0u32;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        checks += 1;
        if checks < 1000 {
            thread::yield_now();
        } else {
            thread::sleep(Duration::from_micros(u64::from(checks.min(2000) / 2)));
        }
    }
    done()
}
