//! Spoofing and format checks, counted by kind: datagrams from a process (port id != 0), in
//! libudev's format, with a header that contradicts `ACTION=`/`DEVPATH=`, with `/` or `..` in
//! `DEVNAME` or `INTERFACE`, oversize, not UTF-8. None is believed, each is counted under its
//! kind, in the registry, in the live monitor fed by the kernel, and in `watch --stats`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::netns::{in_private_netns, without_seqnum};
use common::*;
use pciplug::registry::{MalformedKinds, Outcome};
use pciplug::testing::Injector;
use pciplug::uevent::MAX_DATAGRAM;
use pciplug::{Monitor, Registry};

/// A real datagram (the first whose `key` is `value`) of q35-acpi-hotplug, as text.
fn real(key: &str, value: &str) -> String {
    let f = Fixture::load("q35-acpi-hotplug");
    let r = f
        .recording
        .records
        .iter()
        .find(|r| field(&r.datagram, key).as_deref() == Some(value))
        .unwrap();
    String::from_utf8(r.datagram.clone()).unwrap()
}

/// Each hostile datagram, built from the real add of vda (02/00) or eth0 (04/00), with the
/// kind it must be counted under.
fn hostile() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let vda = real("DEVNAME", "vda");
    let eth0 = real("INTERFACE", "eth0");
    let mut libudev = b"libudev\0\xfe\xed\xca\xfe".to_vec();
    libudev.extend_from_slice(vda.as_bytes());
    let mut oversize = vda.clone().into_bytes();
    oversize.pop();
    oversize.extend(std::iter::repeat_n(b'A', MAX_DATAGRAM));
    oversize.push(0);
    let mut not_utf8 = vda.clone().into_bytes();
    let at = vda.find("DEVNAME=vda").unwrap() + 9;
    not_utf8[at] = 0xff;
    let cut = &vda.as_bytes()[..vda.find("DEVNAME=vda").unwrap() + 5];
    let action_lie = vda.replace("ACTION=add", "ACTION=remove");
    let devpath_lie = vda.replacen(
        "DEVPATH=/devices/pci0000:00/0000:00:02.0",
        "DEVPATH=/devices/pci0000:00/0000:00:04.0",
        1,
    );
    vec![
        ("libudev format", "libudev", libudev),
        (
            "header says add, ACTION=remove",
            "header-mismatch",
            action_lie.into_bytes(),
        ),
        (
            "header and DEVPATH name two devices",
            "header-mismatch",
            devpath_lie.into_bytes(),
        ),
        (
            "DEVNAME with a slash",
            "bad-value",
            vda.replace("DEVNAME=vda", "DEVNAME=../../etc/passwd")
                .into_bytes(),
        ),
        (
            "DEVNAME ..",
            "bad-value",
            vda.replace("DEVNAME=vda", "DEVNAME=..").into_bytes(),
        ),
        (
            "INTERFACE with a slash",
            "bad-value",
            eth0.replace("INTERFACE=eth0", "INTERFACE=eth0/../../x")
                .into_bytes(),
        ),
        (
            "INTERFACE ..",
            "bad-value",
            eth0.replace("INTERFACE=eth0", "INTERFACE=..").into_bytes(),
        ),
        ("oversize", "too-large", oversize),
        ("not UTF-8", "not-utf8", not_utf8),
        ("cut short", "no-nul-end", cut.to_vec()),
        ("empty", "empty", Vec::new()),
    ]
}

fn kinds(k: &MalformedKinds) -> Vec<(&'static str, u64)> {
    k.iter().filter(|(_, n)| *n > 0).collect()
}

fn expected_kinds() -> Vec<(&'static str, u64)> {
    let mut want: Vec<(&'static str, u64)> = MalformedKinds::default().iter().collect();
    for (_, kind, _) in hostile() {
        want.iter_mut().find(|(k, _)| *k == kind).unwrap().1 += 1;
    }
    want.retain(|(_, n)| *n > 0);
    want
}

#[test]
fn hostile_datagrams_are_not_believed_and_are_counted_by_kind() {
    let mut reg = Registry::new();
    for (what, kind, d) in hostile() {
        match reg.apply_datagram(0, &d) {
            Outcome::Malformed(e) => assert_eq!(e.kind(), kind, "{what}: {e}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    // The real, well-formed datagrams from a process: not believed either.
    for d in [real("DEVNAME", "vda"), real("INTERFACE", "eth0")] {
        assert!(matches!(
            reg.apply_datagram(4242, d.as_bytes()),
            Outcome::Spoofed { sender: 4242 }
        ));
    }
    assert!(reg.is_empty(), "something was believed");
    let s = reg.stats();
    assert_eq!(
        (s.received, s.applied, s.spoofed),
        (hostile().len() as u64 + 2, 0, 2)
    );
    assert_eq!(s.malformed, hostile().len() as u64);
    assert_eq!(kinds(&s.malformed_kinds), expected_kinds());
    assert_eq!(
        s.malformed_kinds.iter().map(|(_, n)| n).sum::<u64>(),
        s.malformed
    );
}

#[test]
fn every_kind_of_defect_has_its_own_counter() {
    // The counter names are the kinds' own names, each once.
    let names: Vec<&str> = MalformedKinds::default().iter().map(|(k, _)| k).collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{names:?}");
    for (_, kind, _) in hostile() {
        assert!(names.contains(&kind), "{kind}");
    }
    // And each lands in its own counter (a kind counted under another is caught here).
    for (what, kind, d) in hostile() {
        let mut reg = Registry::new();
        reg.apply_datagram(0, &d);
        assert_eq!(kinds(&reg.stats().malformed_kinds), [(kind, 1)], "{what}");
    }
}

/// The kernel refuses to broadcast nothing, and anything over 2048 bytes
/// (`netlink_kernel.rs`).
fn kernel_sends(d: &[u8]) -> bool {
    !d.is_empty() && d.len() + 32 <= 2048
}

/// Injects through the kernel (sender 0), and forges from this process (sender != 0).
fn send_hostile_and_forged() {
    let injector = Injector::new().unwrap();
    for (what, _, d) in hostile() {
        if !kernel_sends(&d) {
            continue;
        }
        // The kernel appends SEQNUM, so a datagram that would be well-formed without the
        // defect is exactly that defect plus the kernel's SEQNUM.
        let d = without_seqnum(&d);
        injector
            .inject(&d)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_KOBJECT_UEVENT};
    let mut forger = Socket::new(NETLINK_KOBJECT_UEVENT).unwrap();
    forger.bind_auto().unwrap();
    forger
        .send_to(real("DEVNAME", "vda").as_bytes(), &SocketAddr::new(0, 1), 0)
        .unwrap();
}

/// What the kernel delivers of [`hostile`], by kind: it refuses the empty and the oversize
/// ones, and appends `SEQNUM=` to the rest (so a datagram cut short ends in NUL again, but
/// lacks its SEQNUM).
fn delivered_kinds() -> Vec<(&'static str, u64)> {
    let mut reg = Registry::new();
    for (_, _, d) in hostile().into_iter().filter(|(_, _, d)| kernel_sends(d)) {
        let mut d = without_seqnum(&d);
        {
            d.extend_from_slice(b"SEQNUM=1\0");
            let out = reg.apply_datagram(0, &d);
            assert!(
                matches!(out, Outcome::Malformed(_)),
                "{out:?}: {}",
                String::from_utf8_lossy(&d)
            );
        }
    }
    kinds(&reg.stats().malformed_kinds)
}

#[test]
fn the_live_monitor_counts_what_the_kernel_delivered_by_kind() {
    in_private_netns(
        "the_live_monitor_counts_what_the_kernel_delivered_by_kind",
        || {
            let sysfs = common::fake_sysfs::FakeSysfs::new();
            let monitor = Monitor::builder().sysfs_root(sysfs.root()).start().unwrap();
            send_hostile_and_forged();
            let want = delivered_kinds();
            let n: u64 = want.iter().map(|(_, n)| n).sum();
            let until = Instant::now() + Duration::from_secs(10);
            while monitor.stats().registry.received < n + 1 {
                assert!(Instant::now() < until, "{:?}", monitor.stats());
                std::thread::sleep(Duration::from_millis(5));
            }
            let s = monitor.stats();
            assert_eq!(kinds(&s.registry.malformed_kinds), want, "{s:?}");
            assert_eq!((s.registry.malformed, s.registry.spoofed), (n, 1));
            assert_eq!(s.registry.applied, 0);
            assert!(monitor.registry().is_empty());
        },
    );
}

#[test]
fn watch_stats_prints_what_the_listener_counted() {
    in_private_netns("watch_stats_prints_what_the_listener_counted", || {
        let sysfs = common::fake_sysfs::FakeSysfs::new();
        let mut child = Command::new(env!("CARGO_BIN_EXE_pciplug"))
            .args(["watch", "--json", "--stats", "--sysfs"])
            .arg(sysfs.root())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Lines as they come, so that a watch that prints nothing fails instead of hanging.
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line.unwrap()).is_err() {
                    return;
                }
            }
        });
        let next = || {
            rx.recv_timeout(Duration::from_secs(10))
                .expect("a stats line within 10s")
        };
        // The first line is the counts at start: nothing seen yet, and the socket is bound.
        let first: serde_json::Value = serde_json::from_str(&next()).unwrap();
        assert_eq!(first["stats"]["received"], 0, "{first}");
        send_hostile_and_forged();
        // Then, within a second or so, a line with the counts by kind.
        let want = delivered_kinds();
        let n: u64 = want.iter().map(|(_, n)| n).sum();
        let mut last = first;
        while last["stats"]["received"].as_u64() != Some(n + 1) {
            let line = next();
            last = serde_json::from_str(&line).unwrap();
            assert!(last.get("stats").is_some(), "a change was printed: {line}");
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let stats = &last["stats"];
        assert_eq!(stats["malformed"], n, "{stats}");
        assert_eq!(stats["spoofed"], 1, "{stats}");
        assert_eq!(stats["applied"], 0, "{stats}");
        for (kind, count) in want {
            assert_eq!(stats["malformed_kinds"][kind], count, "{kind}: {stats}");
        }
        for key in [
            "overflows",
            "resyncs",
            "resync_failures",
            "truncated",
            "dropped_changes",
        ] {
            assert_eq!(stats[key], 0, "{key}: {stats}");
        }
    });
}

#[test]
fn watch_stats_text_names_each_kind_seen() {
    let mut s = pciplug::MonitorStats::default();
    s.registry.received = 5;
    s.registry.malformed = 3;
    s.registry.malformed_kinds.libudev = 2;
    s.registry.malformed_kinds.not_utf8 = 1;
    s.registry.spoofed = 2;
    s.overflows = 1;
    // Through the command's own printer, by way of the JSON it also prints.
    let json = serde_json::to_value(s).unwrap();
    assert_eq!(json["malformed_kinds"]["libudev"], 2);
    assert_eq!(json["malformed_kinds"]["not-utf8"], 1);
    assert_eq!(json["overflows"], 1);
}

/// Without `DEVNAME` (or `INTERFACE`) the registry names a device after the last component
/// of its devpath, which nothing checks yet: a newline there would let `pciplug wait` print
/// `/dev/vd` and a second line of the sender's choosing.
#[test]
fn a_name_taken_from_the_devpath_is_checked_like_devname() {
    for name in ["vd\nx", "vd\u{1b}[2J", &"v".repeat(300)] {
        for (subsystem, dir) in [("block", "virtio0/block"), ("net", "virtio3/net")] {
            let dp = format!("/devices/pci0000:00/0000:00:02.0/0000:01:00.0/{dir}/{name}");
            let d = format!(
                "add@{dp}\0ACTION=add\0DEVPATH={dp}\0SUBSYSTEM={subsystem}\0DEVTYPE=disk\0SEQNUM=1\0"
            );
            let mut reg = Registry::new();
            let out = reg.apply_datagram(0, d.as_bytes());
            assert!(
                matches!(&out, Outcome::Malformed(e) if e.kind() == "bad-value"),
                "{subsystem} {name:?}: {out:?}"
            );
            assert!(reg.is_empty());
        }
    }
}

#[test]
fn wait_never_prints_an_unsafe_device_name() {
    in_private_netns("wait_never_prints_an_unsafe_device_name", || {
        let sysfs = common::fake_sysfs::FakeSysfs::new();
        let child = Command::new(env!("CARGO_BIN_EXE_pciplug"))
            .args(["wait", "02/00", "--timeout", "3s", "--sysfs"])
            .arg(sysfs.root())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Until its socket is bound, what the kernel sends would not reach it.
        let until = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string("/proc/net/netlink")
            .unwrap()
            .lines()
            .any(|l| l.split_whitespace().nth(2) == Some(&child.id().to_string()))
        {
            assert!(Instant::now() < until, "never listened");
            std::thread::sleep(Duration::from_millis(5));
        }
        // A disk whose name comes from its devpath, with a second line in it.
        let dp = "/devices/pci0000:00/0000:00:02.0/0000:01:00.0/virtio0/block/vd\nsda";
        let d = format!("add@{dp}\0ACTION=add\0DEVPATH={dp}\0SUBSYSTEM=block\0DEVTYPE=disk\0");
        Injector::new().unwrap().inject(d.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        // Refused by the library (once it checks such names) or by the command: never printed.
        assert!(stdout.is_empty(), "printed {stdout:?}");
        assert_eq!(out.status.code(), Some(1), "{stderr}");
    });
}
