//! Lost events, renames, spoofed senders, malformed and foreign datagrams, built from the
//! real recordings: none is believed, none panics, and the registry stays consistent.

mod common;

use std::io::Write;
use std::process::Command;

use common::*;
use pciplug::recording::Record;
use pciplug::registry::Outcome;
use pciplug::{Change, Registry};
use proptest::prelude::*;

fn acpi() -> Fixture {
    Fixture::load("q35-acpi-hotplug")
}

/// The first datagram of the ACPI recording with `DEVNAME=vda`.
fn vda_add() -> Record {
    acpi()
        .recording
        .records
        .into_iter()
        .find(|r| field(&r.datagram, "DEVNAME").as_deref() == Some("vda"))
        .unwrap()
}

#[test]
fn a_pci_remove_removes_children_whose_own_removes_were_lost() {
    for name in [
        "q35-acpi-hotplug",
        "pc-i440fx-hotplug",
        "q35-nvme-multipath-off",
    ] {
        let f = Fixture::load(name);
        let lossy: Vec<_> = f
            .recording
            .records
            .iter()
            .filter(|r| {
                let subsystem = field(&r.datagram, "SUBSYSTEM").unwrap();
                let action = field(&r.datagram, "ACTION").unwrap();
                // Lose every child remove and every unbind: only the PCI remove is left.
                !(action == "unbind" || (action == "remove" && subsystem != "pci"))
            })
            .cloned()
            .collect();
        assert!(
            lossy.len() < f.recording.records.len(),
            "{name}: nothing dropped"
        );
        assert_eq!(
            snapshot(&replay(&lossy)),
            snapshot(&replay(&f.recording.records)),
            "{name}"
        );
        assert_matches_sysfs(&replay(&lossy), &f.final_sysfs(), name);
    }
}

#[test]
fn a_lost_disk_remove_is_repaired_by_the_new_diskseq() {
    // Drop the step-8 remove of vda entirely (PCI remove included): the re-added vda of step
    // 10 (DISKSEQ 7) must replace the stale one (DISKSEQ 1), not sit beside it.
    let f = acpi();
    let kept: Vec<_> = f
        .recording
        .records
        .iter()
        .filter(|r| r.step != Some(8))
        .cloned()
        .collect();
    let reg = replay(&kept);
    let blocks = reg.block_devices(&p("02/00"));
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(blocks[0].diskseq, Some(7));
}

/// The real `add` of eth0 at 04/00, and a `move` to `ens4` built from it as udev's rename
/// makes the kernel send it.
fn eth0_add_and_rename() -> (Vec<u8>, Vec<u8>) {
    let f = acpi();
    let add = f
        .recording
        .records
        .iter()
        .find(|r| field(&r.datagram, "SUBSYSTEM").as_deref() == Some("net"))
        .unwrap()
        .datagram
        .clone();
    let old = field(&add, "DEVPATH").unwrap();
    let new = old.replace("/net/eth0", "/net/ens4");
    let mv: Vec<String> = fields(&add)
        .into_iter()
        .map(|f| {
            if f.starts_with("add@") {
                format!("move@{new}")
            } else if f == "ACTION=add" {
                "ACTION=move".into()
            } else if f.starts_with("DEVPATH=") {
                format!("DEVPATH={new}\0DEVPATH_OLD={old}")
            } else if f == "INTERFACE=eth0" {
                "INTERFACE=ens4".into()
            } else if f.starts_with("SEQNUM=") {
                "SEQNUM=100000".into()
            } else {
                f
            }
        })
        .collect();
    (add, datagram(&mv))
}

#[test]
fn a_move_renames_the_interface() {
    let (add, mv) = eth0_add_and_rename();
    let mut reg = Registry::new();
    reg.apply_datagram(0, &add);
    let Outcome::Applied(changes) = reg.apply_datagram(0, &mv) else {
        panic!("move not applied")
    };
    assert!(
        matches!(&changes[..], [Change::NetRenamed { old, net, .. }] if &**old == "eth0" && &*net.name == "ens4"),
        "{changes:?}"
    );
    let names = net_names(&reg, "04/00");
    assert_eq!(names, ["ens4"]);
    // The rename again is a duplicate.
    assert!(matches!(reg.apply_datagram(0, &mv), Outcome::Applied(c) if c.is_empty()));
}

#[test]
fn a_rename_seen_before_the_add_is_the_interface_under_its_new_name() {
    let (_, mv) = eth0_add_and_rename();
    let mut reg = Registry::new();
    reg.apply_datagram(0, &mv);
    assert_eq!(&*reg.net(&p("04/00")).unwrap().name, "ens4");
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
        .recording
        .records
        .iter()
        .find(|r| r.step == Some(8) && field(&r.datagram, "DEVNAME").as_deref() == Some("vda"))
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
        .recording
        .records
        .iter()
        .find(|r| r.step == Some(8) && field(&r.datagram, "SUBSYSTEM").as_deref() == Some("pci"))
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
fn foreign_and_contradictory_datagrams_are_refused_by_kind() {
    let vda = vda_add();
    let kind = |d: &[u8]| match Registry::new().apply_datagram(0, d) {
        Outcome::Malformed(e) => e.kind(),
        other => panic!("accepted: {other:?}"),
    };
    // udevd's own format: magic, then a binary header; never from the kernel.
    let mut libudev = b"libudev\0\xfe\xed\xca\xfe".to_vec();
    libudev.extend_from_slice(&vda.datagram);
    assert_eq!(kind(&libudev), "libudev");
    // Header and DEVPATH disagree.
    let text = String::from_utf8(vda.datagram.clone()).unwrap();
    let lie = text.replacen(
        "DEVPATH=/devices/pci0000:00/0000:00:02.0",
        "DEVPATH=/devices/pci0000:00/0000:00:04.0",
        1,
    );
    assert_eq!(kind(lie.as_bytes()), "header-mismatch");
    // A name that would escape /dev.
    let escape = text.replace("DEVNAME=vda", "DEVNAME=../../etc/passwd");
    assert_eq!(kind(escape.as_bytes()), "bad-value");
    // Not UTF-8.
    let mut bin = vda.datagram.clone();
    let at = bin.len() - 5;
    bin[at] = 0xc3;
    assert_eq!(kind(&bin), "not-utf8");
    // Oversize.
    let mut big = vda.datagram.clone();
    big.pop();
    big.extend(std::iter::repeat_n(b'A', 9000));
    big.push(0);
    assert_eq!(kind(&big), "too-large");
}

#[test]
fn unknown_actions_are_ignored_and_counted() {
    let vda = vda_add();
    let text = String::from_utf8(vda.datagram.clone())
        .unwrap()
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

fn run_replay_text(text: &str) -> (i32, String, String) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pciplug"))
        .args(["replay", "--json"])
        .arg(file.path())
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn replay_rejects_a_bad_line_with_file_and_line() {
    let text = "# a comment\n0 6164644000\ngarbage\n";
    let (code, stdout, stderr) = run_replay_text(text);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert!(
        stderr.contains(":3: expected '<nl_pid> <hex>', found \"garbage\""),
        "{stderr}"
    );
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

#[test]
fn replay_of_a_missing_file_is_a_runtime_error_and_bad_arguments_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_pciplug"))
        .args(["replay", "/nonexistent.uevents"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("reading recording /nonexistent.uevents: No such file"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_pciplug"))
        .args(["replay", "--bogus", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_pciplug"))
        .arg("replay")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
