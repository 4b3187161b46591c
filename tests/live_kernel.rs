//! The live listener over the real kernel path: `pciplug wait` answered from uevents the
//! kernel delivers (real recordings injected in a private namespace), forged senders ignored,
//! deadlines kept, a forced overflow resynced to the truth, and `list` against this
//! machine's own sysfs.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::fake_sysfs::{FakeSysfs, q35};
use common::netns::{in_private_netns, without_seqnum};
use common::*;
use pciplug::sysfs::Sysfs;
use pciplug::testing::Injector;
use pciplug::{Error, Monitor, PciPath, Registry};

fn recording(name: &str) -> Vec<Vec<u8>> {
    Fixture::load(name)
        .recording
        .records
        .iter()
        .map(|r| without_seqnum(&r.datagram))
        .collect()
}

fn inject_all(datagrams: &[Vec<u8>]) {
    let injector = Injector::new().expect("an injector socket");
    for d in datagrams {
        injector.inject(d).expect("the kernel takes the uevent");
    }
}

/// Waits until process `pid` has a NETLINK_KOBJECT_UEVENT socket (protocol 15) bound,
/// so that what is injected next reaches it.
fn wait_until_listening(pid: u32) {
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        let table = std::fs::read_to_string("/proc/net/netlink").unwrap();
        let bound = table.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&"15") && f.get(2) == Some(&pid.to_string().as_str())
        });
        if bound {
            return;
        }
        thread::sleep(Duration::from_millis(5));
    }
    panic!("process {pid} never bound its uevent socket");
}

fn pciplug(args: &[&str], sysfs: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_pciplug"))
        .args(args)
        .arg("--sysfs")
        .arg(sysfs)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> (i32, String, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn wait_answers_from_kernel_delivered_uevents() {
    in_private_netns("wait_answers_from_kernel_delivered_uevents", || {
        let sysfs = FakeSysfs::new(); // a guest with nothing plugged yet
        let vdc = pciplug(&["wait", "03/00/02/03", "--timeout", "60s"], sysfs.root());
        let eth = pciplug(
            &["wait", "04/00", "--kind", "net", "--timeout", "60s"],
            sysfs.root(),
        );
        wait_until_listening(vdc.id());
        wait_until_listening(eth.id());
        inject_all(&recording("q35-acpi-hotplug"));
        let (code, out, err) = finish(vdc);
        assert_eq!((code, out.as_str()), (0, "/dev/vdc\n"), "{err}");
        let (code, out, err) = finish(eth);
        assert_eq!((code, out.as_str()), (0, "eth0\n"), "{err}");
    });
}

#[test]
fn wait_removed_returns_after_the_kernel_removes_the_device() {
    in_private_netns(
        "wait_removed_returns_after_the_kernel_removes_the_device",
        || {
            let sysfs = FakeSysfs::new();
            let monitor = Monitor::builder().sysfs_root(sysfs.root()).start().unwrap();
            let datagrams = recording("q35-acpi-hotplug");
            let f = Fixture::load("q35-acpi-hotplug");
            // Steps 1-8: 03/00/01 is added in step 2 and removed in step 9.
            let upto = |s: u32| -> Vec<Vec<u8>> {
                f.recording
                    .records
                    .iter()
                    .zip(&datagrams)
                    .filter(|(r, _)| r.step.is_some_and(|x| x <= s))
                    .map(|(_, d)| d.clone())
                    .collect()
            };
            inject_all(&upto(8));
            let vdb = monitor
                .wait_block(&p("03/00/01"), Duration::from_secs(30))
                .unwrap();
            assert_eq!(&*vdb.name, "vdb");
            let m = monitor.clone();
            let waiter =
                thread::spawn(move || m.wait_removed(&p("03/00/01"), Duration::from_secs(30)));
            let rest: Vec<Vec<u8>> = datagrams[upto(8).len()..].to_vec();
            inject_all(&rest);
            waiter.join().unwrap().unwrap();
            // The re-added disk at 02/00 (step 10) is a new disk under the old name.
            let vda = monitor
                .wait_block(&p("02/00"), Duration::from_secs(30))
                .unwrap();
            assert_eq!((&*vda.name, vda.diskseq), ("vda", Some(7)));
        },
    );
}

#[test]
fn a_monitor_fed_by_the_kernel_ends_where_the_replay_ends() {
    in_private_netns(
        "a_monitor_fed_by_the_kernel_ends_where_the_replay_ends",
        || {
            for name in FIXTURES {
                let sysfs = FakeSysfs::new();
                let monitor = Monitor::builder().sysfs_root(sysfs.root()).start().unwrap();
                let datagrams = recording(name);
                inject_all(&datagrams);
                let until = Instant::now() + Duration::from_secs(30);
                while monitor.stats().registry.received < datagrams.len() as u64 {
                    assert!(Instant::now() < until, "{name}: {:?}", monitor.stats());
                    thread::sleep(Duration::from_millis(5));
                }
                let replayed = replay(&Fixture::load(name).recording.records);
                assert_eq!(snapshot(&monitor.registry()), snapshot(&replayed), "{name}");
                let s = monitor.stats();
                assert_eq!(
                    (s.registry.spoofed, s.registry.malformed, s.overflows),
                    (0, 0, 0),
                    "{name}"
                );
            }
        },
    );
}

#[test]
fn forged_uevents_are_ignored_and_the_deadline_kept() {
    in_private_netns("forged_uevents_are_ignored_and_the_deadline_kept", || {
        use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_KOBJECT_UEVENT};
        let sysfs = FakeSysfs::new();
        let start = Instant::now();
        let child = pciplug(&["wait", "02/00", "--timeout", "1s"], sysfs.root());
        wait_until_listening(child.id());
        // A process broadcasts the real, complete datagrams of step 1 (vda at 02/00).
        let mut forger = Socket::new(NETLINK_KOBJECT_UEVENT).unwrap();
        forger.bind_auto().unwrap();
        let f = Fixture::load("q35-acpi-hotplug");
        for r in f.recording.records.iter().filter(|r| r.step == Some(1)) {
            forger
                .send_to(&r.datagram, &SocketAddr::new(0, 1), 0)
                .unwrap();
        }
        let (code, out, err) = finish(child);
        assert_eq!(code, 1, "{out}{err}");
        assert!(out.is_empty(), "{out}");
        assert!(err.contains("no block disk at 02/00 within 1"), "{err}");
        assert!(err.contains("not the kernel: not believed"), "{err}");
        assert!(
            start.elapsed() >= Duration::from_secs(1),
            "returned before its deadline"
        );

        // The same through the library: counted as spoofed, registry untouched.
        let monitor = Monitor::builder().sysfs_root(sysfs.root()).start().unwrap();
        for r in f.recording.records.iter().filter(|r| r.step == Some(1)) {
            forger
                .send_to(&r.datagram, &SocketAddr::new(0, 1), 0)
                .unwrap();
        }
        let n = f
            .recording
            .records
            .iter()
            .filter(|r| r.step == Some(1))
            .count() as u64;
        let until = Instant::now() + Duration::from_secs(10);
        while monitor.stats().registry.spoofed < n {
            assert!(Instant::now() < until, "{:?}", monitor.stats());
            thread::sleep(Duration::from_millis(5));
        }
        assert!(monitor.registry().is_empty());
    });
}

#[test]
fn an_overflow_is_resynced_to_the_truth_and_wakes_the_waiter() {
    in_private_netns(
        "an_overflow_is_resynced_to_the_truth_and_wakes_the_waiter",
        || {
            let sysfs = FakeSysfs::new(); // empty when the monitor starts
            let monitor = Monitor::builder()
                .sysfs_root(sysfs.root())
                .recv_buffer(0) // the kernel's minimum: about two uevents
                .start()
                .unwrap();
            let m = monitor.clone();
            let waiter =
                thread::spawn(move || m.wait_block(&p("03/00/01"), Duration::from_secs(30)));
            // The devices appear in sysfs, and the kernel's uevents for them flood the socket
            // while the listener is held up (it needs the registry lock to apply an event).
            let truth_tree = q35();
            monitor.with_registry(|_| {
                copy_tree(truth_tree.root(), sysfs.root());
                inject_all(&recording("q35-coldplug-trigger"));
                inject_all(&recording("q35-acpi-hotplug"));
            });
            let vdb = waiter.join().unwrap().unwrap();
            assert_eq!(&*vdb.name, "vdb");
            let until = Instant::now() + Duration::from_secs(30);
            while monitor.stats().resyncs == 0 {
                assert!(Instant::now() < until, "{:?}", monitor.stats());
                thread::sleep(Duration::from_millis(5));
            }
            let s = monitor.stats();
            assert!(s.overflows >= 1, "{s:?}");
            // After the resync the registry is what sysfs says, not what the lost events left.
            let mut truth = Registry::new();
            Sysfs::new(sysfs.root())
                .scan()
                .unwrap()
                .apply_to(&mut truth);
            assert_eq!(snapshot(&monitor.registry()), snapshot(&truth));
            assert_eq!(
                monitor
                    .try_block(&p("06/00"))
                    .map(|b| b.name.to_string())
                    .as_deref(),
                Some("nvme0n1")
            );
        },
    );
}

#[test]
fn an_nvme_multipath_head_is_tied_to_its_controller_through_sysfs() {
    in_private_netns(
        "an_nvme_multipath_head_is_tied_to_its_controller_through_sysfs",
        || {
            // sysfs as the guest of q35-acpi-hotplug has it after step 7: controller nvme0 under
            // 06/00, linked from nvme-subsys0, whose head nvme0n1 no uevent ties to a controller.
            let sysfs = q35();
            let monitor = Monitor::builder()
                .sysfs_root(sysfs.root())
                .coldplug(false) // only what the kernel announces
                .start()
                .unwrap();
            let m = monitor.clone();
            let waiter = thread::spawn(move || m.wait_block(&p("06/00"), Duration::from_secs(30)));
            inject_all(&recording("q35-acpi-hotplug"));
            let head = waiter.join().unwrap().unwrap();
            assert_eq!(head.devnode(), "/dev/nvme0n1");
            assert_eq!(
                monitor.with_registry(|r| r.unresolved_nvme_heads().count()),
                0
            );
            // The hidden per-path disk is never an answer, and never listed.
            assert!(monitor.with_registry(|r| {
                r.block_devices(&p("06/00"))
                    .iter()
                    .all(|b| &*b.name != "nvme0c0n1")
            }));
        },
    );
}

/// Copies a directory tree, symlinks as symlinks.
fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let ft = entry.file_type().unwrap();
        if ft.is_symlink() {
            let _ = std::fs::remove_file(&dst);
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if ft.is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

#[test]
fn shutdown_stops_the_thread_and_fails_pending_waits() {
    in_private_netns("shutdown_stops_the_thread_and_fails_pending_waits", || {
        let sysfs = FakeSysfs::new();
        let monitor = Monitor::builder().sysfs_root(sysfs.root()).start().unwrap();
        let waiters: Vec<_> = (0..8)
            .map(|i| {
                let m = monitor.clone();
                thread::spawn(move || m.wait_block_deadline(&p(&format!("0{i}")), None))
            })
            .collect();
        while monitor.stats().waiters < 8 {
            thread::yield_now();
        }
        monitor.shutdown();
        for w in waiters {
            assert!(matches!(w.join().unwrap(), Err(Error::ListenerStopped(_))));
        }
        assert_eq!(monitor.stopped().as_deref(), Some("shut down"));
        assert_eq!(monitor.stats().waiting_paths, 0);
    });
}

/// This machine's block devices and net interfaces below PCI, from `/sys/class`, at the PCI
/// path of their resolved sysfs path.
fn machine_children() -> std::collections::BTreeSet<(String, String, String)> {
    let mut out = std::collections::BTreeSet::new();
    for class in ["block", "net"] {
        for e in std::fs::read_dir(format!("/sys/class/{class}")).unwrap() {
            let e = e.unwrap();
            let real = std::fs::canonicalize(e.path()).unwrap();
            if std::fs::read_to_string(real.join("hidden")).is_ok_and(|h| h.trim() == "1") {
                continue;
            }
            let devpath = real
                .to_str()
                .unwrap()
                .strip_prefix("/sys")
                .unwrap()
                .to_owned();
            if let Ok(Some((path, _))) = PciPath::from_devpath(&devpath) {
                out.insert((
                    path.to_string(),
                    class.to_owned(),
                    e.file_name().into_string().unwrap(),
                ));
            }
        }
    }
    out
}

#[test]
fn list_agrees_with_this_machines_sysfs() {
    if !Path::new("/sys/bus/pci/devices").exists() {
        eprintln!("SKIPPED list_agrees_with_this_machines_sysfs: no /sys/bus/pci here");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_pciplug"))
        .args(["list", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got = std::collections::BTreeSet::new();
    let mut functions = 0;
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        functions += 1;
        got.extend(common::json_children(&v));
    }
    assert_eq!(got, machine_children());
    assert_eq!(
        functions,
        std::fs::read_dir("/sys/bus/pci/devices").unwrap().count()
    );
}

#[test]
fn wait_on_a_device_present_answers_at_once() {
    // With a zero timeout: only the first check can answer it.
    let Some((path, _, name)) = machine_children()
        .into_iter()
        .find(|(_, c, _)| c == "block")
    else {
        eprintln!(
            "SKIPPED wait_on_a_device_present_answers_at_once: no block device below PCI here"
        );
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_pciplug"))
        .args(["wait", &path, "--timeout", "0s"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("binding the uevent socket") || stderr.contains("creating the NETLINK") {
        eprintln!("SKIPPED wait_on_a_device_present_answers_at_once: {stderr}");
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("/dev/{name}\n")
    );
}

#[test]
fn wait_rejects_bad_arguments_with_exit_2() {
    for args in [
        &["wait", "02/zz"][..],
        &["wait", "02/00", "--timeout", "soon"],
        &["wait", "02/00", "--kind", "gpu"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_pciplug"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("invalid value"), "{args:?}: {err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_pciplug"))
        .args(["wait", "02/zz"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains(r#"hop 2 "zz" is not a two-digit hex slot"#)
    );
}

#[test]
fn list_of_a_missing_sysfs_is_a_clear_runtime_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_pciplug"))
        .args(["list", "--sysfs", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("reading /nonexistent/bus/pci/devices: No such file"),
        "{err}"
    );
}
