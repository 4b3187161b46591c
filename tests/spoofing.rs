//! What is not believed: datagrams from a process (port id != 0), in libudev's format, with a
//! header that contradicts `ACTION=`/`DEVPATH=`, with `/` or `..` in `DEVNAME` or `INTERFACE`,
//! oversize, not UTF-8, cut short, with an unknown action or a devpath too deep to place. None
//! is believed, none panics, each is counted under its kind, in the registry, in the live
//! monitor fed by the kernel, in `watch --stats` and in `replay`.

mod common;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use common::netns::{in_private_netns, wait_until_listening, without_seqnum};
use common::*;
use pciplug::netlink::MAX_DATAGRAM;
use pciplug::testing::Injector;
use pciplug::{MalformedKinds, Monitor, Outcome, Registry};
use proptest::prelude::*;

fn acpi() -> Fixture {
    Fixture::load("q35-acpi-hotplug")
}

/// A real datagram (the first whose `key` is `value`) of q35-acpi-hotplug, as text.
fn real(key: &str, value: &str) -> String {
    String::from_utf8(acpi().first_with(key, value).datagram.clone()).unwrap()
}

/// `pciplug replay --json` of a recording given as text: (exit code, stdout, stderr).
fn run_replay_text(text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("test.uevents");
    std::fs::write(&file, text).unwrap();
    let ran = pciplug(["replay", "--json"]).arg(&file).run();
    (ran.code(), ran.stdout, ran.stderr)
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
            assert!(
                eventually(Duration::from_secs(10), || {
                    monitor.stats().registry.received > n
                }),
                "{:?}",
                monitor.stats()
            );
            let s = monitor.stats();
            assert_eq!(kinds(&s.registry.malformed_kinds), want, "{s:?}");
            assert_eq!((s.registry.malformed, s.registry.spoofed), (n, 1));
            assert_eq!(s.registry.applied, 0);
            assert!(monitor.registry().is_empty());
        },
    );
}

/// Runs `pciplug watch --stats` (with `--json` if `json`), sends [`send_hostile_and_forged`]
/// once it printed its first line (the counts at start: the socket is bound by then), and
/// returns that line and the first whose `received` count, as `received` reads it, is all
/// that was sent.
fn watch_stats(json: bool, received: impl Fn(&str) -> Option<u64>) -> (String, String) {
    let sysfs = common::fake_sysfs::FakeSysfs::new();
    let mut args = vec!["watch", "--stats"];
    if json {
        args.push("--json");
    }
    let mut child = pciplug(&args).arg("--sysfs").arg(sysfs.root()).spawn();
    // Lines as they come, so that a watch that prints nothing fails instead of hanging.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.take_stdout();
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
    let first = next();
    send_hostile_and_forged();
    // Then, within a second or so, a line with the counts by kind.
    let n: u64 = delivered_kinds().iter().map(|(_, n)| n).sum();
    let mut last = first.clone();
    while received(&last) != Some(n + 1) {
        last = next();
    }
    child.kill();
    (first, last)
}

#[test]
fn watch_stats_prints_what_the_listener_counted() {
    in_private_netns("watch_stats_prints_what_the_listener_counted", || {
        let json = |line: &str| -> serde_json::Value {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v.get("stats").is_some(), "a change was printed: {line}");
            v
        };
        let (first, last) = watch_stats(true, |l| json(l)["stats"]["received"].as_u64());
        // The first line is the counts at start: nothing seen yet.
        let first = json(&first);
        assert_eq!(first["stats"]["received"], 0, "{first}");
        let want = delivered_kinds();
        let n: u64 = want.iter().map(|(_, n)| n).sum();
        let last = json(&last);
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
    in_private_netns("watch_stats_text_names_each_kind_seen", || {
        let received = |line: &str| -> Option<u64> {
            let rest = line.strip_prefix("stats received=")?;
            rest.split(' ').next()?.parse().ok()
        };
        let (first, last) = watch_stats(false, received);
        assert!(first.starts_with("stats received=0 "), "{first}");
        // The whole line: every counter by name, and after the malformed total exactly the
        // kinds seen, each with its count, in the counters' order.
        let want = delivered_kinds();
        assert!(want.len() > 1, "more than one kind to name: {want:?}");
        let n: u64 = want.iter().map(|(_, n)| n).sum();
        let by_kind: String = want
            .iter()
            .map(|(kind, count)| format!(" malformed.{kind}={count}"))
            .collect();
        assert_eq!(
            last,
            format!(
                "stats received={} applied=0 ignored=0 unknown_action=0 malformed={n}{by_kind} \
                 spoofed=1 unplaceable=0 truncated=0 overflows=0 resyncs=0 resync_failures=0 \
                 dropped_changes=0 subsystem_filter=on",
                n + 1
            )
        );
    });
}

/// Without `DEVNAME` (or `INTERFACE`) the registry names a device after the last component
/// of its devpath, checked like `DEVNAME` (since 68fc8f5): unchecked, a newline there would
/// let `pciplug wait` print `/dev/vd` and a second line of the sender's choosing.
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
        let child = pciplug(["wait", "02/00", "--timeout", "3s", "--sysfs"])
            .arg(sysfs.root())
            .spawn();
        // Until its socket is bound, what the kernel sends would not reach it.
        wait_until_listening(child.id());
        // A disk whose name comes from its devpath, with a second line in it.
        let dp = "/devices/pci0000:00/0000:00:02.0/0000:01:00.0/virtio0/block/vd\nsda";
        let d = format!("add@{dp}\0ACTION=add\0DEVPATH={dp}\0SUBSYSTEM=block\0DEVTYPE=disk\0");
        Injector::new().unwrap().inject(d.as_bytes()).unwrap();
        let ran = child.finish();
        // Refused by the library (src/uevent.rs checks a name taken from the devpath like
        // DEVNAME since 68fc8f5): never printed, and the wait times out.
        assert!(ran.stdout.is_empty(), "printed {:?}", ran.stdout);
        assert_eq!(ran.code(), 1, "{}", ran.stderr);
    });
}

#[test]
fn datagrams_not_sent_by_the_kernel_are_not_believed() {
    let f = acpi();
    let mut reg = Registry::new();
    for r in &f.recording.records {
        assert!(matches!(
            reg.apply_datagram(4242, &r.datagram),
            Outcome::Spoofed { sender: 4242 }
        ));
    }
    assert!(reg.is_empty());
    assert_eq!(reg.stats().spoofed as usize, f.recording.records.len());

    // A forged remove of a real disk, between real events, changes nothing.
    let mut reg = replay(&f.recording.records);
    let before = snapshot(&reg);
    let vda_remove = f
        .with_field("DEVNAME", "vda")
        .find(|r| r.step == Some(8))
        .unwrap();
    reg.apply_datagram(1, &vda_remove.datagram);
    assert_eq!(snapshot(&reg), before);
}

#[test]
fn spoofed_lines_in_a_recording_are_skipped_by_replay() {
    let f = acpi();
    let mut text = std::fs::read_to_string(fixture_path("q35-acpi-hotplug")).unwrap();
    // Append a forged removal of 02/00 claiming to come from port 777.
    let rm = f
        .with_field("SUBSYSTEM", "pci")
        .find(|r| r.step == Some(8))
        .unwrap();
    let hex: String = rm.datagram.iter().map(|b| format!("{b:02x}")).collect();
    text.push_str(&format!("777 {hex}\n"));
    let (code, stdout, stderr) = run_replay_text(&text);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.lines().any(|l| l.contains("\"path\":\"02/00\"")),
        "{stdout}"
    );
    assert!(stderr.contains("port 777, not the kernel"), "{stderr}");
}

#[test]
fn truncated_datagrams_are_refused_and_lose_nothing() {
    for name in FIXTURES {
        let f = Fixture::load(name);
        let mut reg = Registry::new();
        for r in &f.recording.records {
            let d = &r.datagram;
            for cut in [1, d.len() / 3, d.len() / 2, d.len() - 1] {
                // Cut mid-field it is malformed; cut at a field boundary it lacks SEQNUM (the
                // kernel's last field) and is malformed if relevant, ignored otherwise.
                let out = reg.apply_datagram(0, &d[..cut]);
                assert!(
                    matches!(out, Outcome::Malformed(_) | Outcome::Ignored(_)),
                    "{name} line {} cut {cut}: {out:?}",
                    r.line
                );
            }
            reg.apply_datagram(0, d);
        }
        assert_eq!(
            snapshot(&reg),
            snapshot(&replay(&f.recording.records)),
            "{name}"
        );
        assert_eq!(
            reg.stats().applied as usize,
            replay(&f.recording.records).stats().applied as usize
        );
    }
}

#[test]
fn unknown_actions_are_ignored_and_counted() {
    let text = real("DEVNAME", "vda")
        .replace("add@", "frobnicate@")
        .replace("ACTION=add", "ACTION=frobnicate");
    let mut reg = Registry::new();
    assert!(matches!(
        reg.apply_datagram(0, text.as_bytes()),
        Outcome::Ignored(_)
    ));
    assert!(reg.is_empty());
    assert_eq!(reg.stats().unknown_action, 1);
}

#[test]
fn a_devpath_too_deep_to_place_is_refused_without_a_trace() {
    let mut dp = String::from("/devices/pci0000:00");
    for bus in 0..17 {
        dp.push_str(&format!("/0000:{bus:02x}:01.0"));
    }
    let d = format!("add@{dp}\0ACTION=add\0DEVPATH={dp}\0SUBSYSTEM=pci\0SEQNUM=1\0");
    let mut reg = Registry::new();
    let out = reg.apply_datagram(0, d.as_bytes());
    assert!(
        matches!(&out, Outcome::Unplaceable(e) if e.to_string().contains("more than 16 PCI hops")),
        "{out:?}"
    );
    assert!(reg.is_empty());
}

#[test]
fn replay_skips_a_malformed_datagram_and_applies_the_rest() {
    let mut text = std::fs::read_to_string(fixture_path("q35-acpi-hotplug")).unwrap();
    // Insert, right after the header, a well-formed line whose datagram has no NUL end.
    text = text.replacen("\n0 ", "\n0 6164644000ff\n0 ", 1);
    let (code, stdout, stderr) = run_replay_text(&text);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("malformed datagram skipped"), "{stderr}");
    let clean =
        run_replay_text(&std::fs::read_to_string(fixture_path("q35-acpi-hotplug")).unwrap()).1;
    assert_eq!(stdout, clean);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Real datagrams with random bytes overwritten, fed between the real stream: no panic,
    /// and the name index stays consistent (each block/net name held once).
    #[test]
    fn mutated_real_datagrams_never_panic(picks in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<u8>()), 1..40)) {
        let f = acpi();
        let recs = &f.recording.records;
        let mut reg = Registry::new();
        for (i, (which, at, byte)) in picks.iter().enumerate() {
            let mut d = which.get(recs).datagram.clone();
            let k = at.index(d.len());
            d[k] = *byte;
            reg.apply_datagram(0, &d);
            reg.apply_datagram(0, &recs[i % recs.len()].datagram);
        }
        let mut names = std::collections::HashSet::new();
        for v in reg.views() {
            for b in &v.block { prop_assert!(names.insert(b.name.to_string()), "{} twice", b.name); }
            for n in v.net { prop_assert!(names.insert(n.name.to_string()), "{} twice", n.name); }
        }
    }
}
