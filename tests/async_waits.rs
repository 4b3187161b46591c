//! The async waits under a tokio `current_thread` runtime: the runtime keeps running while
//! waits pend, a cancelled wait leaves the table at once, a pending wait-forever does not keep
//! the process from exiting, stopping fails them as the sync waits, and an async wait is
//! answered by a real recording the kernel delivers (each in a private namespace, where the
//! monitor's socket hears only what the test injects).

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::fake_sysfs::FakeSysfs;
use common::netns::{in_private_netns, inject_all, injectable};
use common::*;
use pciplug::{Monitor, PciPath, WaitError};

/// A tokio runtime on this thread only: a wait that blocked its thread would stop everything.
fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// Yields to the runtime until the monitor counts `n` waiters (at most 60 s: a hang, not a
/// speed, is what the bound catches).
async fn until_waiters(monitor: &Monitor, n: u64) {
    let counted = tokio::time::timeout(Duration::from_secs(60), async {
        while monitor.stats().waiters != n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(
        counted.is_ok(),
        "never {n} waiters: {} now",
        monitor.stats().waiters
    );
}

/// 1,000 distinct PCI paths, none of them in an empty guest.
fn thousand_paths() -> Vec<PciPath> {
    (0..1000)
        .map(|i| {
            p(&format!(
                "{:02x}/{:02x}/{:02x}",
                i / 100 + 1,
                (i / 10) % 10,
                i % 10
            ))
        })
        .collect()
}

#[test]
fn a_ticker_keeps_running_while_a_thousand_async_waits_pend_and_a_stop_fails_them() {
    in_private_netns(
        "a_ticker_keeps_running_while_a_thousand_async_waits_pend_and_a_stop_fails_them",
        || {
            let sysfs = FakeSysfs::new();
            let monitor = Monitor::builder().sysfs_root(sysfs.root()).start().unwrap();
            current_thread().block_on(async {
                let waits: Vec<_> = thousand_paths()
                    .iter()
                    .map(|path| tokio::spawn(monitor.wait_block_async(path)))
                    .collect();
                until_waiters(&monitor, 1000).await;
                // A ticker on the same (only) thread, while the thousand waits pend.
                let ticks = Arc::new(AtomicU32::new(0));
                let ticker = {
                    let ticks = Arc::clone(&ticks);
                    tokio::spawn(async move {
                        let mut every = tokio::time::interval(Duration::from_millis(10));
                        loop {
                            every.tick().await;
                            ticks.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                };
                tokio::time::sleep(Duration::from_millis(200)).await;
                ticker.abort();
                // That it advanced, not how fast: a wait that blocked the thread would have
                // kept it at 0 (the frozen runtime).
                assert!(ticks.load(Ordering::Relaxed) > 0, "the ticker never ran");
                let stats = monitor.stats();
                assert_eq!((stats.waiters, stats.waiting_paths), (1000, 1000));
                assert!(
                    waits.iter().all(|w| !w.is_finished()),
                    "nothing answered them"
                );
                // Stopping the listener fails every one with the sync waits' error.
                monitor.shutdown();
                for w in waits {
                    let err = w.await.unwrap().unwrap_err();
                    assert!(matches!(err, WaitError::ListenerStopped(_)), "{err}");
                    assert_eq!(err.to_string(), "listener stopped: shut down");
                }
                assert_eq!(monitor.stats().waiters, 0);
                // A wait made after the stop fails at once, as a sync one does.
                let late = monitor.wait_block_timeout_async(&p("02/00"), Duration::from_secs(60));
                assert!(matches!(late.await, Err(WaitError::ListenerStopped(_))));
            });
        },
    );
}

#[test]
fn a_cancelled_async_wait_leaves_the_table_at_once_and_a_timeout_says_what_was_seen() {
    in_private_netns(
        "a_cancelled_async_wait_leaves_the_table_at_once_and_a_timeout_says_what_was_seen",
        || {
            let sysfs = FakeSysfs::new();
            let monitor = Monitor::builder().sysfs_root(sysfs.root()).start().unwrap();
            current_thread().block_on(async {
                // A wait for ever, cancelled by the runtime's timeout: dropped, it is gone.
                let wait = monitor.wait_block_async(&p("02/00"));
                let cancelled = tokio::time::timeout(Duration::from_millis(50), wait).await;
                assert!(cancelled.is_err(), "nothing answered it: {cancelled:?}");
                let stats = monitor.stats();
                assert_eq!((stats.waiters, stats.waiting_paths), (0, 0));

                // One of two waits on a path cancelled: the other stays registered.
                let mut kept = Box::pin(monitor.wait_net_async(&p("04/00")));
                let dropped = monitor.wait_net_async(&p("04/00"));
                let _ = tokio::time::timeout(Duration::from_millis(1), &mut kept).await;
                let _ = tokio::time::timeout(Duration::from_millis(1), dropped).await;
                let stats = monitor.stats();
                assert_eq!((stats.waiters, stats.waiting_paths), (1, 1));
                drop(kept);
                assert_eq!(monitor.stats().waiters, 0);

                // The async form's own timeout (the shared timer thread wakes it): the sync
                // wait's error, the timeout asked for and what was seen.
                let err = monitor
                    .wait_block_timeout_async(&p("02/01"), Duration::from_millis(30))
                    .await
                    .unwrap_err();
                assert!(matches!(err, WaitError::Timeout(_)), "{err}");
                assert_eq!(
                    err.to_string(),
                    "no block disk at 02/01 within 30ms: no PCI device at 02/01"
                );
                let err = monitor
                    .wait_removed_timeout_async(&p("02/01"), Duration::from_secs(60))
                    .await;
                assert!(err.is_ok(), "nothing is at 02/01: {err:?}");
                assert_eq!(monitor.stats().waiters, 0);
            });
        },
    );
}

/// Set in the process that returns from `main` with a wait pending.
const EXIT_CHILD_ENV: &str = "PCIPLUG_TEST_ASYNC_EXIT_CHILD";

#[test]
fn a_pending_async_wait_forever_does_not_keep_the_process_from_exiting() {
    const TEST: &str = "a_pending_async_wait_forever_does_not_keep_the_process_from_exiting";
    if std::env::var_os(EXIT_CHILD_ENV).is_some() {
        // The process under test: a task waits for ever on a device that never comes, and
        // the test (then the harness's `main`) returns while it pends.
        let sysfs = FakeSysfs::new();
        let monitor = Monitor::builder().sysfs_root(sysfs.root()).start().unwrap();
        let rt = current_thread();
        rt.block_on(async {
            let m = monitor.clone();
            tokio::spawn(async move { m.wait_block_async(&p("1f/00")).await });
            until_waiters(&monitor, 1).await;
        });
        println!("pending waiters at return: {}", monitor.stats().waiters);
        return;
    }
    in_private_netns(TEST, || {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(exe)
            .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(EXIT_CHILD_ENV, "1")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // A hang detector, not a speed check: the process must end on its own.
        let exited = eventually(Duration::from_secs(60), || {
            child.try_wait().unwrap().is_some()
        });
        if !exited {
            let _ = child.kill();
        }
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            exited,
            "the process with a pending wait did not exit: {stdout}"
        );
        assert!(output.status.success(), "{}: {stdout}", output.status);
        assert!(
            stdout.contains("pending waiters at return: 1"),
            "the wait was pending when main returned: {stdout}"
        );
        assert!(stdout.contains("test result: ok. 1 passed"), "{stdout}");
    });
}

#[test]
fn an_async_wait_is_answered_by_uevents_the_kernel_delivers() {
    in_private_netns(
        "an_async_wait_is_answered_by_uevents_the_kernel_delivers",
        || {
            let sysfs = FakeSysfs::new();
            let monitor = Monitor::builder().sysfs_root(sysfs.root()).start().unwrap();
            let f = Fixture::load("q35-acpi-hotplug");
            current_thread().block_on(async {
                // The wait pends before anything is injected: only the listener answers it.
                let vdb = tokio::spawn(monitor.wait_block_async(&p("03/00/01")));
                until_waiters(&monitor, 1).await;
                // Steps 1-8: 03/00/01 (vdb) is added in step 2.
                inject_all(&injectable(&f.records_in(..=8)));
                let vdb = tokio::time::timeout(Duration::from_secs(60), vdb).await;
                let vdb = vdb.expect("the kernel's uevents answered the wait");
                assert_eq!(&*vdb.unwrap().unwrap().name, "vdb");
                // Its removal, awaited while it is there; step 9 removes it.
                let gone =
                    monitor.wait_removed_timeout_async(&p("03/00/01"), Duration::from_secs(60));
                let gone = tokio::spawn(gone);
                until_waiters(&monitor, 1).await;
                assert!(!gone.is_finished(), "03/00/01 is still there");
                inject_all(&injectable(&f.records_in(9..)));
                gone.await.unwrap().unwrap();
                assert_eq!(monitor.stats().waiters, 0);
            });
        },
    );
}

/// The next item of `stream`.
async fn next<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}

#[test]
fn a_change_stream_gets_what_a_subscriber_gets_and_ends_when_the_listener_stops() {
    in_private_netns(
        "a_change_stream_gets_what_a_subscriber_gets_and_ends_when_the_listener_stops",
        || {
            let sysfs = FakeSysfs::new();
            let monitor = Monitor::builder().sysfs_root(sysfs.root()).start().unwrap();
            let mut stream = monitor.subscribe_stream();
            let channel = monitor.subscribe();
            let f = Fixture::load("q35-acpi-hotplug");
            inject_all(&injectable(&f.records_in(..=8)));
            // Some changes (at least step 2's), then the end: both subscribers were fed alike.
            monitor
                .wait_block_timeout(&p("03/00/01"), Duration::from_secs(60))
                .unwrap();
            monitor.shutdown();
            let sent: Vec<_> = channel.iter().collect();
            assert!(!sent.is_empty());
            current_thread().block_on(async {
                let mut streamed = Vec::new();
                let end = tokio::time::timeout(Duration::from_secs(60), async {
                    while let Some(change) = next(&mut stream).await {
                        streamed.push(change);
                    }
                })
                .await;
                assert!(end.is_ok(), "the stream ended when the listener stopped");
                assert_eq!(streamed, sent);
                // One made after the stop ends at once.
                assert_eq!(next(&mut monitor.subscribe_stream()).await, None);
            });
        },
    );
}

#[test]
fn a_change_stream_wakes_its_task_for_each_change() {
    in_private_netns("a_change_stream_wakes_its_task_for_each_change", || {
        let sysfs = FakeSysfs::new();
        let monitor = Monitor::builder().sysfs_root(sysfs.root()).start().unwrap();
        let f = Fixture::load("q35-acpi-hotplug");
        current_thread().block_on(async {
            let mut stream = monitor.subscribe_stream();
            // The task reads before anything is injected, so the listener must wake it.
            let reader = tokio::spawn(async move {
                let mut names = Vec::new();
                while let Some(change) = next(&mut stream).await {
                    if let pciplug::Change::BlockAdded { path, block } = change {
                        let path = path.map(|p| p.to_string()).unwrap_or_default();
                        names.push((path, block.name.to_string()));
                        if names.len() == 3 {
                            return names;
                        }
                    }
                }
                names
            });
            tokio::task::yield_now().await;
            inject_all(&injectable(&f.records_in(..=8)));
            let names = tokio::time::timeout(Duration::from_secs(60), reader).await;
            let names = names.expect("the stream's task was woken").unwrap();
            let want = [("02/00", "vda"), ("03/00/01", "vdb"), ("03/00/01", "vdb1")];
            let want: Vec<_> = want
                .iter()
                .map(|(p, n)| (p.to_string(), n.to_string()))
                .collect();
            assert_eq!(names, want);
        });
    });
}

#[test]
fn an_async_rescanning_wait_rescans_at_start_and_again_and_times_out_as_a_whole() {
    in_private_netns(
        "an_async_rescanning_wait_rescans_at_start_and_again_and_times_out_as_a_whole",
        || {
            let sysfs = FakeSysfs::new();
            sysfs.attr("/bus/pci", "rescan", "");
            let rescan = sysfs.root().join("bus/pci/rescan");
            let written = || std::fs::read_to_string(&rescan).unwrap() == "1";
            let monitor = Monitor::builder()
                .sysfs_root(sysfs.root())
                .rescan(true)
                .start()
                .unwrap();
            current_thread().block_on(async {
                let any = pciplug::DriverState::Any;
                // A wait for ever: the timer wakes it for each rescan, none for a deadline.
                let wait = tokio::spawn(monitor.wait_function_async(&p("04/00"), &any));
                let rescanned = |what: &'static str| {
                    let written = &written;
                    async move {
                        let seen = tokio::time::timeout(Duration::from_secs(60), async {
                            while !written() {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                        })
                        .await;
                        assert!(seen.is_ok(), "{what}");
                    }
                };
                rescanned("no rescan at the start").await;
                std::fs::write(&rescan, "").unwrap();
                rescanned("no rescan again").await;
                wait.abort();
                assert!(wait.await.unwrap_err().is_cancelled());
                assert_eq!(monitor.stats().waiters, 0);

                // Over a rescan interval: the error is the whole wait's, not a slice's.
                let e = monitor
                    .wait_function_timeout_async(&p("04/00"), &any, Duration::from_millis(1500))
                    .await
                    .unwrap_err();
                let WaitError::Timeout(t) = e else {
                    panic!("{e:?}")
                };
                let waited = t.timeout;
                assert_eq!(waited, Duration::from_millis(1500), "the timeout asked for");
            });
        },
    );
}
