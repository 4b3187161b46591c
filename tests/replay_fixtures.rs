//! Replays every shipped real recording and checks the registry against the guest's own
//! sysfs after each step, the `expect:` lines, and the `replay --json` command's output.

mod common;

use std::collections::BTreeSet;

use common::*;
use pciplug::{DevType, Registry};

#[test]
fn every_fixture_has_ground_truth_to_check_against() {
    for name in FIXTURES {
        let f = Fixture::load(name);
        assert!(!f.recording.records.is_empty(), "{name}");
        assert!(f.steps().contains(&0), "{name}: no step 0");
        if name != "q35-root-bus-negative" {
            assert!(!f.sysfs_after.is_empty(), "{name}: no sysfs listing");
            assert!(!f.expects.is_empty(), "{name}: no expect lines");
        }
    }
}

#[test]
fn state_after_each_step_matches_the_guest_sysfs() {
    for name in FIXTURES {
        let f = Fixture::load(name);
        let mut reg = Registry::new();
        for (step, records) in f.step_records() {
            for r in &records {
                reg.apply_datagram(r.sender, &r.datagram);
            }
            if let Some(entries) = f.sysfs_after.get(&step) {
                assert_matches_sysfs(&reg, entries, &format!("{name} after step {step}"));
            }
        }
        let s = reg.stats();
        assert_eq!(s.malformed + s.spoofed + s.unplaceable, 0, "{name}: {s:?}");
        assert_eq!(s.received as usize, f.recording.records.len());
    }
}

/// What the live listener does through sysfs for a multipath head, done here with the facts
/// the guest's sysfs listing recorded: the hidden per-path disk `nvme0c0n1` sits under
/// controller `nvme0` at the PCI path, and its head `nvme0n1` under `nvme-subsys0`.
fn link_heads_as_sysfs_shows(reg: &mut Registry, entries: &[SysfsEntry]) {
    for hidden in entries {
        let Some(head) = head_of_hidden(&hidden.name) else {
            continue;
        };
        let path = p(hidden.path.as_deref().unwrap());
        let ctrl = hidden.devpath.rsplit('/').nth(1).unwrap();
        let head_entry = entries.iter().find(|e| e.name == head).unwrap();
        let subsystem = head_entry.devpath.rsplit('/').nth(1).unwrap();
        reg.link_nvme_controller(&path, ctrl, subsystem);
    }
}

#[test]
fn expect_lines_hold_after_their_step() {
    for name in FIXTURES {
        let f = Fixture::load(name);
        for (path, dev, why) in &f.expects {
            let step: u32 = why
                .split("step ")
                .nth(1)
                .and_then(|s| s.split(',').next())
                .unwrap()
                .parse()
                .unwrap();
            let mut reg = replay(&f.records_in(..=step));
            let ctx = format!("{name}: expect {path} -> {dev} ({why})");
            let names = |reg: &Registry| -> BTreeSet<String> {
                let mut s: BTreeSet<String> = reg
                    .block_devices(&p(path))
                    .iter()
                    .map(|b| b.name.to_string())
                    .collect();
                if let Some(d) = reg.get(&p(path)) {
                    s.extend(d.net.iter().map(|n| n.name.to_string()));
                }
                s
            };
            if why.contains("nvme-hidden-path-disk") {
                // Never reported; the controller it hangs under is.
                assert!(!names(&reg).contains(dev), "{ctx}");
                assert!(!reg.get(&p(path)).unwrap().nvme.is_empty(), "{ctx}");
            } else if why.contains("multipath head") {
                // Not tied by uevents alone...
                assert!(!names(&reg).contains(dev), "{ctx}");
                assert!(
                    reg.unresolved_nvme_heads().any(|(_, h)| &*h.name == dev),
                    "{ctx}"
                );
                // ...and tied once sysfs says which controller it belongs to.
                link_heads_as_sysfs_shows(&mut reg, &f.sysfs_after[&step]);
                assert_eq!(
                    reg.disk(&p(path)).map(|b| b.name.to_string()).as_deref(),
                    Some(dev.as_str()),
                    "{ctx}"
                );
            } else {
                assert!(names(&reg).contains(dev), "{ctx}: got {:?}", names(&reg));
            }
        }
    }
}

#[test]
fn final_state_is_the_readme_final_state_once_heads_are_linked() {
    // The fixtures README's "Final state" of each scenario, as (path, disk).
    let cases: [(&str, &[(&str, &str)]); 5] = [
        (
            "q35-acpi-hotplug",
            &[
                ("02/00", "vda"),
                ("03/00/02/03", "vdc"),
                ("05/00", "sda"),
                ("06/00", "nvme0n1"),
            ],
        ),
        ("q35-nvme-multipath-off", &[("04/00", "nvme1n1")]),
        (
            "q35-coldplug-trigger",
            &[("02/00", "vda"), ("03/00/01", "vdb"), ("06/00", "nvme0n1")],
        ),
        ("pc-i440fx-hotplug", &[("07", "sda")]),
        ("q35-root-bus-negative", &[]),
    ];
    for (name, disks) in cases {
        let f = Fixture::load(name);
        let mut reg = replay(&f.recording.records);
        link_heads_as_sysfs_shows(&mut reg, &f.final_sysfs());
        let got: BTreeSet<(String, String)> = reg
            .devices()
            .filter_map(|d| {
                reg.disk(&d.path)
                    .map(|b| (d.path.to_string(), b.name.to_string()))
            })
            .collect();
        let want: BTreeSet<(String, String)> = disks
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want, "{name}");
    }
    // q35-acpi-hotplug also has eth0 at 04/00; the re-added vda is the new disk.
    let reg = replay(&Fixture::load("q35-acpi-hotplug").recording.records);
    assert_eq!(&*reg.net(&p("04/00")).unwrap().name, "eth0");
    assert_eq!(reg.disk(&p("02/00")).unwrap().diskseq, Some(7));
    let parts: Vec<_> = reg.block_devices(&p("03/00/02/03"));
    assert!(parts.iter().all(|b| b.devtype == DevType::Disk));
}

/// `pciplug replay --json <files>`, one JSON value a line.
fn replay_json(files: &[std::path::PathBuf]) -> Vec<serde_json::Value> {
    let mut command = pciplug(["replay", "--json"]);
    for file in files {
        command = command.arg(file);
    }
    let ran = command.run();
    assert_eq!(ran.code(), 0, "{}", ran.stderr);
    ran.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn replay_json_prints_the_final_state_sorted_by_path() {
    for name in FIXTURES {
        let f = Fixture::load(name);
        let lines = replay_json(&[fixture_path(name)]);
        let mut tied = BTreeSet::new();
        let mut paths = Vec::new();
        for v in &lines {
            let path = v["path"].as_str().unwrap().to_owned();
            assert!(v["bdf"].as_str().unwrap().len() == 12, "{v}");
            for b in v["block"].as_array().unwrap() {
                let devtype = b["devtype"].as_str().unwrap();
                assert!(devtype == "disk" || devtype == "partition", "{b}");
                assert!(b["diskseq"].is_u64(), "{b}");
            }
            tied.extend(common::json_children(v));
            paths.push(common::p(&path));
        }
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted, "{name}: not sorted by path");
        assert_eq!(tied, expected_from_sysfs(&f.final_sysfs()).tied, "{name}");
    }
}

#[test]
fn replay_table_shows_paths_and_untied_heads() {
    let ran = pciplug(["replay"])
        .arg(fixture_path("q35-acpi-hotplug"))
        .run();
    assert_eq!(ran.code(), 0, "{}", ran.stderr);
    let text = ran.stdout;
    let first_cols: Vec<&str> = text
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        first_cols,
        ["02/00", "03/00/02/03", "04/00", "05/00", "06/00"]
    );
    assert!(
        text.contains("NVMe multipath heads not tied to a PCI path: nvme0n1 (nvme-subsys0)"),
        "{text}"
    );
}

#[test]
fn several_files_feed_one_registry_in_order() {
    // The coldplug recording then the negative one: nothing in the second removes anything.
    let lines = replay_json(&[
        fixture_path("q35-coldplug-trigger"),
        fixture_path("q35-root-bus-negative"),
    ]);
    let paths: Vec<&str> = lines.iter().map(|v| v["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["02/00", "03/00/01", "06/00"]);
}
