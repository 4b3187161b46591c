//! The one timer thread of the async waits' deadlines, shared by every `Monitor`.
//!
//! A future cannot wake itself at a time without a runtime's timer, and pciplug takes no
//! runtime. An async wait with a deadline therefore leaves its waker here as well as in its
//! slot; the thread `pciplug-timer`, started by the first such wait, sleeps until the earliest
//! deadline and wakes its waker; the future then finds its deadline passed and returns the
//! timeout. Waits without a deadline never touch it. A dropped future removes its entry at
//! once, so cancelled waits leave nothing behind.

use std::collections::BTreeMap;
use std::io;
use std::sync::OnceLock;
use std::task::Waker;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use super::error::WaitError;

/// The deadlines, earliest first, each with its future's waker. A sequence number tells
/// equal deadlines apart.
#[derive(Debug, Default)]
struct Timer {
    entries: Mutex<Entries>,
    /// Notified when a new entry comes before the earliest the thread sleeps until.
    cv: Condvar,
}

#[derive(Debug, Default)]
struct Entries {
    by_deadline: BTreeMap<(Instant, u64), Waker>,
    next_seq: u64,
}

/// A future's place in the timer: removed when dropped.
#[derive(Debug)]
pub(crate) struct Entry {
    key: (Instant, u64),
}

/// The timer, or why its thread could not be started (the kind and message of the OS error).
static TIMER: OnceLock<Result<&'static Timer, (io::ErrorKind, String)>> = OnceLock::new();

/// The timer, its thread started on first use; the error if it could not be started (then
/// and for good: a wait with a deadline fails rather than miss its deadline).
fn timer() -> Result<&'static Timer, WaitError> {
    let timer = TIMER.get_or_init(|| {
        // Leaked once per process: the thread lives as long as the process.
        let timer: &'static Timer = Box::leak(Box::default());
        std::thread::Builder::new()
            .name("pciplug-timer".into())
            .spawn(move || run(timer))
            .map(|_| timer)
            .map_err(|e| (e.kind(), e.to_string()))
    });
    timer.clone().map_err(|(kind, msg)| WaitError::Io {
        op: "starting the async deadlines' timer thread".into(),
        source: io::Error::new(kind, msg),
    })
}

/// Wakes `waker` at `deadline` (and keeps the entry until dropped): a new entry, or `entry`'s
/// waker replaced when it is there for the same deadline.
///
/// # Errors
///
/// [`WaitError::Io`] if the timer thread cannot be started.
pub(crate) fn wake_at(
    entry: &mut Option<Entry>,
    deadline: Instant,
    waker: &Waker,
) -> Result<(), WaitError> {
    let timer = timer()?;
    if let Some(e) = entry {
        if e.key.0 == deadline {
            let mut entries = timer.entries.lock();
            if let Some(w) = entries.by_deadline.get_mut(&e.key) {
                if !w.will_wake(waker) {
                    *w = waker.clone();
                }
                return Ok(());
            }
        }
    }
    // A new entry. The old one (another deadline, or one already woken) is dropped first:
    // its `Drop` takes the timer's lock, which is not reentrant.
    *entry = None;
    let mut entries = timer.entries.lock();
    let key = (deadline, entries.next_seq);
    entries.next_seq += 1;
    let first = entries.by_deadline.keys().next().is_none_or(|k| key < *k);
    entries.by_deadline.insert(key, waker.clone());
    *entry = Some(Entry { key });
    drop(entries);
    if first {
        timer.cv.notify_one();
    }
    Ok(())
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(Ok(timer)) = TIMER.get() {
            timer.entries.lock().by_deadline.remove(&self.key);
        }
    }
}

/// The thread: wakes every entry whose deadline has come (outside the lock), then sleeps
/// until the earliest left, or until a new earlier one is added.
fn run(timer: &'static Timer) {
    let mut due = Vec::new();
    loop {
        let mut entries = timer.entries.lock();
        let now = Instant::now();
        while let Some(entry) = entries.by_deadline.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        if !due.is_empty() {
            drop(entries);
            // Woken outside the lock: a waker may poll its future at once, which re-arms.
            due.drain(..).for_each(Waker::wake);
            continue;
        }
        match entries.by_deadline.keys().next() {
            Some(&(earliest, _)) => {
                timer.cv.wait_until(&mut entries, earliest);
            }
            None => timer.cv.wait(&mut entries),
        }
    }
}

#[cfg(all(test, not(feature = "model-check")))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::Wake;
    use std::time::Duration;

    /// A waker that notes it was woken.
    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn has(entry: &Entry) -> bool {
        let Ok(timer) = timer() else { return false };
        timer.entries.lock().by_deadline.contains_key(&entry.key)
    }

    #[test]
    fn an_entry_is_woken_at_its_deadline_and_a_dropped_one_leaves_nothing() {
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(Arc::clone(&flag));
        // One far away, then one earlier: the thread, asleep until the first, is told.
        let mut far = None;
        wake_at(&mut far, Instant::now() + Duration::from_secs(3600), &waker).unwrap();
        let mut near = None;
        wake_at(
            &mut near,
            Instant::now() + Duration::from_millis(10),
            &waker,
        )
        .unwrap();
        let give_up = Instant::now() + Duration::from_secs(60);
        while !flag.0.load(Ordering::SeqCst) && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(flag.0.load(Ordering::SeqCst), "the timer never woke it");
        // Re-armed for another deadline: the old entry leaves, the new one is there.
        let old_key = far.as_ref().unwrap().key;
        wake_at(&mut far, Instant::now() + Duration::from_secs(7200), &waker).unwrap();
        assert!(
            !timer()
                .unwrap()
                .entries
                .lock()
                .by_deadline
                .contains_key(&old_key)
        );
        let (near, far) = (near.unwrap(), far.unwrap());
        assert!(!has(&near), "a woken entry is removed");
        assert!(has(&far), "the far one waits");
        let key = far.key;
        drop(far);
        let timer = timer().unwrap();
        assert!(
            !timer.entries.lock().by_deadline.contains_key(&key),
            "dropped, removed"
        );
    }
}
