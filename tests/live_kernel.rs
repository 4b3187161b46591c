//! The live listener over the real kernel path: `pciplug wait` answered from uevents the
//! kernel delivers (real recordings injected in a private namespace), forged senders ignored,
//! deadlines kept, NVMe heads tied through sysfs, and `list` and `wait` against this machine's
//! own sysfs. Lost events and shutdown are `faults.rs`'s; bad command lines `cli_input.rs`'s.

mod common;

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::cli::{Ran, Running};
use common::fake_sysfs::{FakeSysfs, q35};
use common::netns::{in_private_netns, inject_all, injectable, kept, wait_until_listening};
use common::*;
use pciplug::{Monitor, PciPath};

/// Every datagram of recording `name`, ready to inject.
fn recording(name: &str) -> Vec<Vec<u8>> {
    injectable(&Fixture::load(name).recording.records)
}

/// `pciplug <args> --sysfs <sysfs>`, started.
fn start(args: &[&str], sysfs: &Path) -> Running {
    pciplug(args).arg("--sysfs").arg(sysfs).spawn()
}

#[test]
fn wait_answers_from_kernel_delivered_uevents() {
    in_private_netns("wait_answers_from_kernel_delivered_uevents", || {
        let sysfs = FakeSysfs::new(); // a guest with nothing plugged yet
        let vdc = start(&["wait", "03/00/02/03", "--timeout", "60s"], sysfs.root());
        let eth = start(
            &["wait", "04/00", "--kind", "net", "--timeout", "60s"],
            sysfs.root(),
        );
        wait_until_listening(vdc.id());
        wait_until_listening(eth.id());
        inject_all(&recording("q35-acpi-hotplug"));
        let ran = vdc.finish();
        assert_eq!(
            (ran.code(), ran.stdout.as_str()),
            (0, "/dev/vdc\n"),
            "{}",
            ran.stderr
        );
        let ran = eth.finish();
        assert_eq!(
            (ran.code(), ran.stdout.as_str()),
            (0, "eth0\n"),
            "{}",
            ran.stderr
        );
    });
}

#[test]
fn wait_removed_returns_after_the_kernel_removes_the_device() {
    in_private_netns(
        "wait_removed_returns_after_the_kernel_removes_the_device",
        || {
            let sysfs = FakeSysfs::new();
            let monitor = Monitor::builder().sysfs_root(sysfs.root()).start().unwrap();
            let f = Fixture::load("q35-acpi-hotplug");
            // Steps 1-8: 03/00/01 is added in step 2 and removed in step 9.
            inject_all(&injectable(&f.records_in(..=8)));
            let vdb = monitor
                .wait_block_timeout(&p("03/00/01"), Duration::from_secs(30))
                .unwrap();
            assert_eq!(&*vdb.name, "vdb");
            let m = monitor.clone();
            let waiter = thread::spawn(move || {
                m.wait_removed_timeout(&p("03/00/01"), Duration::from_secs(30))
            });
            inject_all(&injectable(&f.records_in(9..)));
            waiter.join().unwrap().unwrap();
            // The re-added disk at 02/00 (step 10) is a new disk under the old name.
            let vda = monitor
                .wait_block_timeout(&p("02/00"), Duration::from_secs(30))
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
                // Those the socket's subsystem filter keeps; the kernel drops the others.
                let kept = datagrams.iter().filter(|d| kept(d)).count() as u64;
                assert!(
                    eventually(Duration::from_secs(30), || {
                        monitor.stats().registry.received >= kept
                    }),
                    "{name}: {:?}",
                    monitor.stats()
                );
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
        let start_at = Instant::now();
        let child = start(&["wait", "02/00", "--timeout", "1s"], sysfs.root());
        wait_until_listening(child.id());
        // A process broadcasts the real, complete datagrams of step 1 (vda at 02/00).
        let mut forger = Socket::new(NETLINK_KOBJECT_UEVENT).unwrap();
        forger.bind_auto().unwrap();
        let step1 = Fixture::load("q35-acpi-hotplug").records_in(1..=1);
        for r in &step1 {
            forger
                .send_to(&r.datagram, &SocketAddr::new(0, 1), 0)
                .unwrap();
        }
        let ran = child.finish();
        let Ran { stdout, stderr, .. } = &ran;
        assert_eq!(ran.code(), 1, "{stdout}{stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(
            stderr.contains("no block disk at 02/00 within 1"),
            "{stderr}"
        );
        assert!(stderr.contains("not the kernel: not believed"), "{stderr}");
        // Not a measure of speed: a wait that returned before its deadline was not kept.
        assert!(
            start_at.elapsed() >= Duration::from_secs(1),
            "returned before its deadline"
        );

        // The same through the library: counted as spoofed, registry untouched.
        let monitor = Monitor::builder().sysfs_root(sysfs.root()).start().unwrap();
        for r in &step1 {
            forger
                .send_to(&r.datagram, &SocketAddr::new(0, 1), 0)
                .unwrap();
        }
        // Those the socket's subsystem filter keeps (it drops forgeries as it drops the
        // kernel's own uevents of other subsystems).
        let n = step1.iter().filter(|r| kept(&r.datagram)).count() as u64;
        assert!(
            eventually(Duration::from_secs(10), || monitor.stats().registry.spoofed
                >= n),
            "{:?}",
            monitor.stats()
        );
        assert!(monitor.registry().is_empty());
    });
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
            let waiter =
                thread::spawn(move || m.wait_block_timeout(&p("06/00"), Duration::from_secs(30)));
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
        return skip(
            "list_agrees_with_this_machines_sysfs",
            "no /sys/bus/pci here",
        );
    }
    let ran = pciplug(["list", "--json"]).run();
    assert_eq!(ran.code(), 0, "{}", ran.stderr);
    let mut got = std::collections::BTreeSet::new();
    let mut functions = 0;
    for line in ran.stdout.lines() {
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
    const TEST: &str = "wait_on_a_device_present_answers_at_once";
    // With a zero timeout: only the first check can answer it.
    let Some((path, _, name)) = machine_children()
        .into_iter()
        .find(|(_, c, _)| c == "block")
    else {
        return skip(TEST, "no block device below PCI here");
    };
    let ran = pciplug(["wait", &path, "--timeout", "0s"]).run();
    let stderr = &ran.stderr;
    if stderr.contains("binding the uevent socket") || stderr.contains("creating the NETLINK") {
        return skip(TEST, stderr);
    }
    assert_eq!(ran.code(), 0, "{stderr}");
    assert_eq!(ran.stdout, format!("/dev/{name}\n"));
}
