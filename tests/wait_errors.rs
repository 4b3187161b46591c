//! Typed wait errors: each case matched on its value, not on its text: what a timeout waited
//! for, where, the timeout asked for and what it saw; a wait on a listener that was shut
//! down. (Ambiguous candidates: tests/disk_address.rs; a listener stopped by a receive error
//! or a panic, with its cause as the source: tests/faults.rs.)

mod common;

use std::error::Error as _;
use std::thread;
use std::time::Duration;

use common::fake_sysfs::q35;
use common::netns::in_private_netns;
use common::p;
use pciplug::{Bdf, DriverState, ListenerStopped, Monitor, Seen, WaitError, WaitTimeout, Wanted};

fn bdf(s: &str) -> Bdf {
    s.parse().unwrap()
}

/// The timeout of a wait that must have timed out.
fn timeout<T: std::fmt::Debug>(r: Result<T, WaitError>) -> Box<WaitTimeout> {
    match r {
        Err(WaitError::Timeout(t)) => t,
        other => panic!("not a timeout: {other:?}"),
    }
}

/// The names of `items`, by `name`.
fn names<T>(items: &[T], name: impl Fn(&T) -> &str) -> Vec<&str> {
    items.iter().map(name).collect()
}

#[test]
fn a_timeout_says_what_was_awaited_where_for_how_long_and_what_was_seen() {
    in_private_netns(
        "a_timeout_says_what_was_awaited_where_for_how_long_and_what_was_seen",
        || {
            // The q35 guest: a disk at 02/00, a bridge with no driver at 03/00, a NIC at
            // 04/00; nothing at 07/00. The private namespace sends it no event.
            let sysfs = q35();
            let monitor = Monitor::builder().sysfs_root(sysfs.root()).start().unwrap();
            let zero = Duration::ZERO;

            // A 3 s timeout reports 3 s, not the time it took (waited meanwhile).
            let m = monitor.clone();
            let three =
                thread::spawn(move || m.wait_net_timeout(&p("07/00"), Duration::from_secs(3)));

            // Nothing at the path, and no bridge above it; a timeout of 0 reports 0.
            let t = timeout(monitor.wait_block_timeout(&p("07/00"), zero));
            assert_eq!(
                (&t.wanted, t.path, t.timeout),
                (&Wanted::Block, Some(p("07/00")), zero)
            );
            assert_eq!(t.seen, Seen::Nothing { bridge: None });

            // Nothing at the path, behind a bridge that is present.
            let t = timeout(monitor.wait_net_timeout(&p("03/00/05"), zero));
            assert_eq!(t.wanted, Wanted::Net);
            assert_eq!(
                t.seen,
                Seen::Nothing {
                    bridge: Some((p("03/00"), bdf("0000:02:00.0")))
                }
            );

            // The function present, with no driver, waited for bound to one.
            let t = timeout(monitor.wait_function_timeout(&p("03/00"), &DriverState::Bound, zero));
            assert_eq!(t.wanted, Wanted::Function(DriverState::Bound));
            let Seen::Function(f) = &t.seen else {
                panic!("{:?}", t.seen)
            };
            assert_eq!((f.bdf, f.driver.as_deref()), (bdf("0000:02:00.0"), None));

            // The function present with its driver and a child, but not the child asked for.
            let t = timeout(monitor.wait_block_timeout(&p("04/00"), zero));
            let Seen::Function(f) = &t.seen else {
                panic!("{:?}", t.seen)
            };
            assert_eq!(
                (f.bdf, f.driver.as_deref()),
                (bdf("0000:05:00.0"), Some("virtio-pci"))
            );
            assert!(f.block.is_empty(), "{f:?}");
            assert_eq!(names(&f.net, |n| &n.name), ["eth0"]);

            // A removal that did not come: the function there, with its disk.
            let t = timeout(monitor.wait_removed_timeout(&p("02/00"), zero));
            assert_eq!(t.wanted, Wanted::Removal);
            let Seen::Function(f) = &t.seen else {
                panic!("{:?}", t.seen)
            };
            assert_eq!(names(&f.block, |b| &b.name), ["vda"]);

            let t = timeout(three.join().unwrap());
            assert_eq!(t.timeout, Duration::from_secs(3));
            assert_eq!(t.seen, Seen::Nothing { bridge: None });
        },
    );
}

#[test]
fn every_form_of_wait_after_a_shutdown_fails_with_the_cause_and_no_source() {
    in_private_netns(
        "every_form_of_wait_after_a_shutdown_fails_with_the_cause_and_no_source",
        || {
            let sysfs = q35();
            let monitor = Monitor::builder().sysfs_root(sysfs.root()).start().unwrap();
            monitor.shutdown();
            assert!(
                matches!(monitor.stopped(), Some(ListenerStopped::ShutDown)),
                "{:?}",
                monitor.stopped()
            );
            let at = p("02/00");
            let errors = [
                // For ever: it answers at once all the same.
                monitor.wait_block(&at).map(drop).unwrap_err(),
                monitor
                    .wait_block_timeout(&at, Duration::from_secs(10))
                    .map(drop)
                    .unwrap_err(),
                monitor.try_block(&at).map(drop).unwrap_err(),
                monitor.try_net(&at).map(drop).unwrap_err(),
                monitor.try_removed(&at).map(drop).unwrap_err(),
                monitor
                    .try_function(&at, &DriverState::Any)
                    .map(drop)
                    .unwrap_err(),
            ];
            for e in errors {
                assert!(
                    matches!(e, WaitError::ListenerStopped(ListenerStopped::ShutDown)),
                    "{e:?}"
                );
                assert!(e.source().is_none(), "{:?}", e.source());
                // `?` into the library's error keeps it whole.
                let wrapped = pciplug::Error::from(e);
                assert!(
                    matches!(
                        wrapped,
                        pciplug::Error::Wait(WaitError::ListenerStopped(ListenerStopped::ShutDown))
                    ),
                    "{wrapped:?}"
                );
            }
        },
    );
}
