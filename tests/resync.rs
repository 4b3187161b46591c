//! Resyncs after lost events (`ENOBUFS`): overflows during a rescan, and before the next one
//! may start, are covered by one more rescan, not one each; a waiter whose answer appears
//! during a rescan is woken by it. Run in a private network namespace (see `common::netns`),
//! with the kernel's own overflow.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use common::fake_sysfs::{FakeSysfs, q35};
use common::netns::in_private_netns;
use common::*;
use pciplug::sysfs::Sysfs;
use pciplug::testing::Injector;
use pciplug::{Monitor, Registry};

/// The least time between two rescans the test asks for: long enough for it to overflow the
/// socket once more in between, as a storm would.
const GAP: Duration = Duration::from_secs(4);

/// A uevent the registry ignores (a virtual device), padded so that the smallest receive
/// buffer holds only a few.
fn noise() -> Vec<u8> {
    let devpath = "/devices/virtual/misc/pciplug-noise";
    let mut d = format!("change@{devpath}\0ACTION=change\0DEVPATH={devpath}\0SUBSYSTEM=misc\0");
    d.push_str(&format!("PAD={}\0", "x".repeat(1024)));
    d.into_bytes()
}

/// More uevents than the smallest receive buffer holds, sent while nobody reads: the kernel
/// drops the rest and reports one `ENOBUFS`.
fn flood(injector: &Injector) {
    for _ in 0..32 {
        injector
            .inject(&noise())
            .expect("the kernel takes the uevent");
    }
}

/// An ignored uevent the test recognises when the listener takes it.
fn marker() -> Vec<u8> {
    let devpath = "/devices/virtual/misc/pciplug-marker";
    format!("change@{devpath}\0ACTION=change\0DEVPATH={devpath}\0SUBSYSTEM=misc\0").into_bytes()
}

/// Sends markers until the listener took one (`taken` counts them). The kernel reports one
/// `ENOBUFS` per overflow episode, which ends only when the listener reads its queue empty,
/// and drops everything meanwhile: a marker taken means the socket was not overflowing when
/// it was sent, so the next overflow is reported anew.
fn until_one_is_taken(injector: &Injector, taken: &AtomicU64) {
    let before = taken.load(Ordering::Relaxed);
    for _ in 0..20 {
        injector
            .inject(&marker())
            .expect("the kernel takes the uevent");
        if eventually(Duration::from_secs(1), || {
            taken.load(Ordering::Relaxed) > before
        }) {
            return;
        }
    }
    panic!("the listener took none of 20 markers");
}

#[track_caller]
fn wait_until(what: &str, done: impl FnMut() -> bool) {
    assert!(
        eventually(Duration::from_secs(30), done),
        "timed out waiting for {what}"
    );
}

#[test]
fn overflows_during_a_rescan_and_before_the_next_cost_one_more_rescan_in_all() {
    in_private_netns(
        "overflows_during_a_rescan_and_before_the_next_cost_one_more_rescan_in_all",
        || {
            let sysfs = FakeSysfs::new();
            let truth = q35();
            let injector = Arc::new(Injector::new().unwrap());
            // During the first rescan, before it reads sysfs: the guest's devices appear (their
            // uevents are never sent), and two floods overflow the socket nobody reads.
            let during = {
                let (injector, from, to) = (
                    Arc::clone(&injector),
                    truth.root().to_owned(),
                    sysfs.root().to_owned(),
                );
                move |n: u64| {
                    if n == 1 {
                        copy_tree(&from, &to);
                        flood(&injector);
                        flood(&injector);
                    }
                }
            };
            let taken = Arc::new(AtomicU64::new(0));
            let count_markers = {
                let taken = Arc::clone(&taken);
                let marker = marker();
                move |d: &[u8]| {
                    if d.starts_with(&marker) {
                        taken.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                }
            };
            let monitor = Monitor::builder()
                .sysfs_root(sysfs.root())
                .fault_hook(count_markers)
                .recv_buffer(0) // the kernel's minimum
                .resync_gap(GAP)
                .resync_hook(during)
                .start()
                .unwrap();
            let m = monitor.clone();
            let nvme =
                thread::spawn(move || m.wait_block_timeout(&p("06/00"), Duration::from_secs(60)));
            wait_until("the waiter", || monitor.stats().waiters == 1);

            // Overflow 1, while the listener is held up: resync 1 at once (none before it).
            monitor.with_registry(|_| flood(&injector));
            let head = nvme
                .join()
                .unwrap()
                .expect("the rescan that found the disk wakes its waiter");
            assert_eq!(head.devnode(), "/dev/nvme0n1");
            // The floods during rescan 1 overflowed the socket (one `ENOBUFS` or more, as the
            // kernel reports it, read after the rescan): resync 2 is owed, from GAP after
            // rescan 1. Once that episode is over, one more overflow before resync 2 starts:
            // covered by it.
            until_one_is_taken(&injector, &taken);
            let before = monitor.stats().overflows;
            monitor.with_registry(|_| flood(&injector));
            wait_until("one more overflow", || monitor.stats().overflows > before);
            wait_until("resync 2", || monitor.stats().resyncs >= 2);

            // Nothing more is owed: a marker sent now is taken after resync 2, and no rescan
            // came for that last overflow alone.
            until_one_is_taken(&injector, &taken);
            let s = monitor.stats();
            assert_eq!((s.resyncs, s.resync_failures), (2, 0), "{s:?}");
            assert!(s.overflows >= 3, "{s:?}");
            // And the registry is sysfs's truth.
            let mut want = Registry::new();
            Sysfs::new(sysfs.root()).scan().unwrap().apply_to(&mut want);
            Sysfs::new(sysfs.root()).read_nsids(&mut want);
            assert_eq!(snapshot(&monitor.registry()), snapshot(&want));
        },
    );
}
