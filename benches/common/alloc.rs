//! A counting global allocator: every bench binary that includes `common` counts the heap
//! allocations of each thread, so "allocations per event" and "bytes per device" are counted,
//! not guessed from RSS.
//!
//! The counters are thread-local `Cell`s (no atomics, no lock): the cost is a few adds on top
//! of the system allocator, paid equally by everything a bench compares. Requested sizes are
//! counted (`Layout::size`); glibc's malloc adds 8 to 16 bytes of its own per block, which the
//! reports state separately where memory is the figure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct Counting;

/// Whether allocations are counted. Timed sections turn it off, so that the counting does not
/// weigh on code that allocates more (kobject-uevent) than on code that allocates less.
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns counting on or off for every thread.
pub fn set_counting(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

thread_local! {
    /// Allocations made by this thread (alloc, and realloc to a new size).
    static COUNT: Cell<u64> = const { Cell::new(0) };
    /// Bytes requested by this thread, in total.
    static BYTES: Cell<u64> = const { Cell::new(0) };
    /// Bytes allocated minus bytes freed, by this thread.
    static LIVE: Cell<i64> = const { Cell::new(0) };
    /// Blocks allocated minus blocks freed, by this thread.
    static LIVE_BLOCKS: Cell<i64> = const { Cell::new(0) };
}

fn add(bytes: usize) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    // `try_with`: during thread teardown the slots may be gone; those frees are not counted.
    let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    let _ = BYTES.try_with(|c| c.set(c.get() + bytes as u64));
    let _ = LIVE.try_with(|c| c.set(c.get() + bytes as i64));
    let _ = LIVE_BLOCKS.try_with(|c| c.set(c.get() + 1));
}

fn sub(bytes: usize) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let _ = LIVE.try_with(|c| c.set(c.get() - bytes as i64));
    let _ = LIVE_BLOCKS.try_with(|c| c.set(c.get() - 1));
}

// SAFETY: every method forwards to the system allocator with the caller's arguments unchanged;
// the counting touches only const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        // SAFETY: forwarded as received; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        sub(layout.size());
        // SAFETY: as above; `ptr` came from this allocator, that is from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        sub(layout.size());
        add(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What one thread allocated while a closure ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Allocs {
    /// Allocations (a realloc counts as one).
    pub count: u64,
    /// Bytes requested.
    pub bytes: u64,
    /// Bytes still allocated when the closure returned (its result included).
    pub live_bytes: i64,
    /// Blocks still allocated when the closure returned.
    pub live_blocks: i64,
}

fn snapshot() -> Allocs {
    Allocs {
        count: COUNT.with(Cell::get),
        bytes: BYTES.with(Cell::get),
        live_bytes: LIVE.with(Cell::get),
        live_blocks: LIVE_BLOCKS.with(Cell::get),
    }
}

/// Runs `f` and returns its result with what this thread allocated meanwhile.
pub fn count<R>(f: impl FnOnce() -> R) -> (R, Allocs) {
    let before = snapshot();
    let r = f();
    let after = snapshot();
    (
        r,
        Allocs {
            count: after.count - before.count,
            bytes: after.bytes - before.bytes,
            live_bytes: after.live_bytes - before.live_bytes,
            live_blocks: after.live_blocks - before.live_blocks,
        },
    )
}

/// Bytes this thread holds now (allocated minus freed since it started).
pub fn live_bytes() -> i64 {
    LIVE.with(Cell::get)
}
