//! Resyncs after lost events (`ENOBUFS`): overflows during a rescan, and before the next one
//! may start, are covered by one more rescan, not one each; a waiter whose answer appears
//! during a rescan is woken by it; what the socket receives during a rescan is taken then
//! (the socket does not overflow again meanwhile) and applied after it. Run in a private
//! network namespace (see `common::netns`), with the kernel's own overflow.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use common::fake_sysfs::{FakeSysfs, q35};
use common::gate::Gate;
use common::netns::in_private_netns;
use common::*;
use pciplug::sysfs::Sysfs;
use pciplug::testing::Injector;
use pciplug::{DriverState, Monitor, MonitorBuilder, PciFunction, WaitError};

/// The least time between two rescans the test asks for: long enough for it to overflow the
/// socket once more in between, as a storm would.
const GAP: Duration = Duration::from_secs(4);

/// A uevent the registry ignores (a virtual device; of subsystem `pci`, which the socket's
/// subsystem filter keeps), padded so that the smallest receive buffer holds only a few.
fn noise() -> Vec<u8> {
    let devpath = "/devices/virtual/misc/pciplug-noise";
    let mut d = format!("change@{devpath}\0ACTION=change\0DEVPATH={devpath}\0SUBSYSTEM=pci\0");
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

/// An ignored uevent the test recognises when the listener takes it (of subsystem `pci`, as
/// [`noise`]).
fn marker() -> Vec<u8> {
    let devpath = "/devices/virtual/misc/pciplug-marker";
    format!("change@{devpath}\0ACTION=change\0DEVPATH={devpath}\0SUBSYSTEM=pci\0").into_bytes()
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

/// A monitor on `sysfs` whose listener `gate` can hold up, with the kernel's smallest receive
/// buffer (a flood overflows it) and `gap` between two rescans.
fn held_up(sysfs: &FakeSysfs, gate: &Gate, gap: Duration) -> MonitorBuilder {
    Monitor::builder()
        .sysfs_root(sysfs.root())
        .fault_hook(gate.hook(|_| Ok(())))
        .recv_buffer(0) // the kernel's minimum
        .resync_gap(gap)
}

/// A thread waiting (up to 60 s) for function 07, returned once its wait is registered; it
/// gives the wait's answer and the resyncs the monitor had done when it returned.
fn waiter_for_fn_07(monitor: &Monitor) -> JoinHandle<(Result<PciFunction, WaitError>, u64)> {
    let m = monitor.clone();
    let waiter = thread::spawn(move || {
        let got = m.wait_function_timeout(&p("07"), &DriverState::Any, Duration::from_secs(60));
        (got, m.stats().resyncs)
    });
    wait_until("the waiter", || monitor.stats().waiters == 1);
    waiter
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
            let gate = Gate::default();
            let monitor = Monitor::builder()
                .sysfs_root(sysfs.root())
                .fault_hook(gate.hook(count_markers))
                .recv_buffer(0) // the kernel's minimum
                .resync_gap(GAP)
                .resync_hook(during)
                .start()
                .unwrap();
            let m = monitor.clone();
            let nvme =
                thread::spawn(move || m.wait_block_timeout(&p("06/00"), Duration::from_secs(60)));
            wait_until("the waiter", || monitor.stats().waiters == 1);

            // Overflow 1, while the listener is held up (the gate): resync 1 at once (none before it).
            gate.shut_while(|| flood(&injector));
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
            gate.shut_while(|| flood(&injector));
            wait_until("one more overflow", || monitor.stats().overflows > before);
            wait_until("resync 2", || monitor.stats().resyncs >= 2);

            // Nothing more is owed: a marker sent now is taken after resync 2, and no rescan
            // came for that last overflow alone.
            until_one_is_taken(&injector, &taken);
            let s = monitor.stats();
            assert_eq!((s.resyncs, s.resync_failures), (2, 0), "{s:?}");
            assert!(s.overflows >= 3, "{s:?}");
            // And the registry is sysfs's truth.
            let want = Sysfs::new(sysfs.root()).registry().unwrap();
            assert_eq!(snapshot(&monitor.registry()), snapshot(&want));
        },
    );
}

/// A PCI function that is not in [`q35`], at `07`.
const FN_07: &str = "/devices/pci0000:00/0000:00:07.0";

/// The kernel's `add` of [`FN_07`], as its sysfs `uevent` file (`FakeSysfs::pci`) says.
fn fn_07_add() -> Vec<u8> {
    format!(
        "add@{FN_07}\0ACTION=add\0DEVPATH={FN_07}\0SUBSYSTEM=pci\0DRIVER=virtio-pci\0\
         PCI_CLASS=10000\0PCI_ID=1AF4:1042\0PCI_SUBSYS_ID=1AF4:1042\0PCI_SLOT_NAME=0000:00:07.0\0"
    )
    .into_bytes()
}

/// Plugs [`FN_07`]: its directory in `sysfs`, then the kernel's `add` of it.
fn plug_fn_07(sysfs: &FakeSysfs, injector: &Injector) {
    sysfs.pci(FN_07, "1AF4:1042", "10000", Some("virtio-pci"));
    injector
        .inject(&fn_07_add())
        .expect("the kernel takes the uevent");
}

/// The number of PCI functions in `t`: a rescan's first that many ticks are theirs.
fn functions_in(t: &FakeSysfs) -> u64 {
    std::fs::read_dir(t.root().join("bus/pci/devices"))
        .unwrap()
        .count() as u64
}

#[test]
fn a_datagram_received_during_a_rescan_is_applied_after_it_and_its_waiter_is_woken() {
    in_private_netns(
        "a_datagram_received_during_a_rescan_is_applied_after_it_and_its_waiter_is_woken",
        || {
            let sysfs = Arc::new(q35());
            let functions = functions_in(&sysfs);
            let injector = Arc::new(Injector::new().unwrap());
            // At the start of rescan 1, a flood that overflows the socket again (the listener
            // is in the hook, reading nothing); then, once the rescan has read
            // `bus/pci/devices`, a function is plugged and the kernel says so. The rescan does
            // not see it: only its uevent can add it. Had the listener left the socket alone
            // during the rescan, the flood would still fill it and that uevent would be
            // dropped, found only by the next rescan.
            let start_of_rescan = {
                let injector = Arc::clone(&injector);
                move |n: u64| {
                    if n == 1 {
                        flood(&injector);
                    }
                }
            };
            // The monitor, for the hook to see that the listener took the overflow in.
            let started: Arc<OnceLock<Monitor>> = Arc::new(OnceLock::new());
            let during = {
                let (injector, sysfs) = (Arc::clone(&injector), Arc::clone(&sysfs));
                let started = Arc::clone(&started);
                move |n: u64, tick: u64| {
                    if n == 1 && tick == functions + 1 {
                        // The listener reads the overflow, then the few datagrams queued
                        // before it: until then the kernel drops what comes.
                        let m = started.get().expect("the monitor started");
                        assert!(eventually(Duration::from_secs(10), || {
                            m.stats().overflows >= 2
                        }));
                        thread::sleep(Duration::from_millis(50));
                        plug_fn_07(&sysfs, &injector);
                    }
                }
            };
            let gate = Gate::default();
            let monitor = held_up(&sysfs, &gate, GAP)
                .resync_hook(start_of_rescan)
                .scan_tick_hook(during)
                .start()
                .unwrap();
            started.set(monitor.clone()).unwrap();
            assert!(monitor.registry().get(&p("07")).is_none());
            let waiter = waiter_for_fn_07(&monitor);

            // Overflow 1, while the listener is held up (the gate): resync 1 at once.
            gate.shut_while(|| flood(&injector));
            let (got, resyncs) = waiter.join().unwrap();
            let f = got.expect("the held uevent wakes the waiter");
            assert_eq!(&*f.devpath, FN_07);
            assert_eq!(f.driver.as_deref(), Some("virtio-pci"));
            // Woken by what rescan 1 held, not by rescan 2 (owed for the flood, GAP later).
            assert_eq!(resyncs, 1, "woken after resync 1 and before resync 2");
            // The overflows (the one before rescan 1, the flood at its start) owe one more.
            wait_until("resync 2", || monitor.stats().resyncs >= 2);
            let s = monitor.stats();
            assert!(s.overflows >= 2, "{s:?}");
            assert_eq!((s.resyncs, s.resync_failures), (2, 0), "{s:?}");
            // Reconciled with sysfs again: the function is there, and the registry is the truth.
            let want = Sysfs::new(sysfs.root()).registry().unwrap();
            assert_eq!(snapshot(&monitor.registry()), snapshot(&want));
            assert!(want.get(&p("07")).is_some());
        },
    );
}

#[test]
fn overflows_during_a_rescan_owe_one_more_resync_in_all() {
    in_private_netns(
        "overflows_during_a_rescan_owe_one_more_resync_in_all",
        || {
            let sysfs = q35();
            let injector = Arc::new(Injector::new().unwrap());
            // A flood at the start of rescan 1 (the listener is in the hook, reading nothing):
            // an overflow seen during the rescan. Three more floods in the middle of it, which
            // overflow the socket again unless the listener keeps up with them (the kernel
            // reports one overflow each time, until the socket is read empty).
            let start_of_rescan = {
                let injector = Arc::clone(&injector);
                move |n: u64| {
                    if n == 1 {
                        flood(&injector);
                    }
                }
            };
            let during = {
                let injector = Arc::clone(&injector);
                move |n: u64, tick: u64| {
                    if n == 1 && (1..=3).contains(&tick) {
                        flood(&injector);
                    }
                }
            };
            let gap = Duration::from_secs(1);
            let gate = Gate::default();
            let monitor = held_up(&sysfs, &gate, gap)
                .resync_hook(start_of_rescan)
                .scan_tick_hook(during)
                .start()
                .unwrap();
            // Overflow 1, while the listener is held up (the gate): resync 1 at once.
            gate.shut_while(|| flood(&injector));
            wait_until("resync 2", || monitor.stats().resyncs >= 2);
            let s = monitor.stats();
            assert!(s.overflows >= 2, "{s:?}");
            // However many, they owe one resync in all: none follows resync 2 (the next would
            // come one gap after it).
            thread::sleep(3 * gap);
            let after = monitor.stats();
            assert_eq!(
                (after.overflows, after.resyncs, after.resync_failures),
                (s.overflows, 2, 0),
                "{after:?}"
            );
        },
    );
}

#[test]
fn without_a_scanner_thread_the_listener_takes_what_arrives_between_the_devices_it_reads() {
    in_private_netns(
        "without_a_scanner_thread_the_listener_takes_what_arrives_between_the_devices_it_reads",
        || {
            let sysfs = Arc::new(q35());
            let functions = functions_in(&sysfs);
            let injector = Arc::new(Injector::new().unwrap());
            // Rescan 1 runs in the listener's own thread (as when `pciplug-rescan` cannot be
            // started). Once it has read every PCI function, a flood overflows the socket
            // again; at the next device, a function is plugged and the kernel says so. The
            // rescan does not see it: only its uevent can add it, and only if the listener
            // emptied the socket between the two devices (else the flood still fills it, the
            // uevent is dropped, and only resync 2, GAP later, finds the function).
            let during = {
                let (injector, sysfs) = (Arc::clone(&injector), Arc::clone(&sysfs));
                move |n: u64, tick: u64| {
                    if n == 1 && tick == functions + 1 {
                        flood(&injector);
                    }
                    if n == 1 && tick == functions + 2 {
                        plug_fn_07(&sysfs, &injector);
                    }
                }
            };
            let gate = Gate::default();
            let monitor = held_up(&sysfs, &gate, GAP)
                .rescan_in_listener(true)
                .scan_tick_hook(during)
                .start()
                .unwrap();
            let waiter = waiter_for_fn_07(&monitor);
            // Overflow 1, while the listener is held up (the gate): resync 1 at once.
            gate.shut_while(|| flood(&injector));
            let (got, resyncs) = waiter.join().unwrap();
            let f = got.expect("the uevent taken during the rescan wakes the waiter");
            assert_eq!(&*f.devpath, FN_07);
            assert_eq!(resyncs, 1, "woken after resync 1, by what it held");
            // The flood during rescan 1 owes resync 2; then the registry is sysfs's truth,
            // the function included.
            wait_until("resync 2", || monitor.stats().resyncs >= 2);
            let want = Sysfs::new(sysfs.root()).registry().unwrap();
            assert_eq!(snapshot(&monitor.registry()), snapshot(&want));
            assert!(
                !thread_exists("pciplug-rescan"),
                "no scanner thread was started"
            );
        },
    );
}

/// Whether a thread of this process has the name `name`.
fn thread_exists(name: &str) -> bool {
    std::fs::read_dir("/proc/self/task").unwrap().any(|t| {
        let comm = t.unwrap().path().join("comm");
        std::fs::read_to_string(comm).is_ok_and(|c| c.trim() == name)
    })
}
