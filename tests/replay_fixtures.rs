//! Replays every shipped real recording and checks the registry against the guest's own
//! sysfs after each step, the `expect:` lines, and the `replay --json` command's output.

mod common;

use std::collections::BTreeSet;

use common::*;
use pciplug::{DevType, Registry, Transport};

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

/// What the registry holds, one line per thing a guest's listing can show: `block <path>
/// <name> <devpath>[ scsi H:C:T:L]`, `net <path> <name> <devpath>`, `pci <path> <bdf>
/// <devpath> <vvvv:dddd> class=0x<cccccc> driver=<name|->`, and `head <name> <devpath>` for
/// an NVMe multipath head not tied to a PCI path. A function's IDs are `ids unknown` until an
/// event carrying them was seen.
fn registry_lines(reg: &Registry, f: &Fixture) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for v in reg.views() {
        for b in &v.block {
            let mut line = format!("block {} {} {}", v.path, b.name, b.devpath);
            if let (true, Transport::Scsi { address }) = (f.lists_scsi, &b.transport) {
                line += &format!(" scsi {address}");
            }
            out.insert(line);
        }
        for n in v.net {
            out.insert(format!("net {} {} {}", v.path, n.name, n.devpath));
        }
        // Set 2's recorder lists endpoints only: host bridges (class 0x0600xx) and PCI
        // bridges and ports (0x0604xx) are left out of its listing. They reach the registry
        // only through a trigger step's synthetic `add` (q35-nvme-namespaces step 1), whose
        // PCI_CLASS says what they are.
        let bridge = v
            .ids
            .is_some_and(|ids| matches!(ids.class >> 8, 0x0600 | 0x0604));
        if f.lists_pci && !(f.pci_endpoints_only && bridge) {
            let driver = v.driver.unwrap_or("-");
            let ids = v.ids.map_or("ids unknown".to_owned(), |ids| {
                let (vendor, device) = ids.id;
                format!("{vendor:04x}:{device:04x} class=0x{:06x}", ids.class)
            });
            let (path, bdf, devpath) = (&v.path, &v.bdf, v.devpath);
            out.insert(format!("pci {path} {bdf} {devpath} {ids} driver={driver}"));
        }
    }
    for (_, head) in reg.unresolved_nvme_heads() {
        out.insert(format!("head {} {}", head.name, head.devpath));
    }
    out
}

/// What the guest's listing says the registry must hold, in the shape of [`registry_lines`],
/// with two explicit rules for what no uevent can tell:
/// - NVMe: a hidden per-path disk (`nvme0c0n1`) gets no uevent and no /dev node, so it is
///   never held; its multipath head (`nvme0n1`, listed with no PCI path) is held untied,
///   since only sysfs ties it to a controller (checked apart, with `link_nvme_controller`).
///   The namespace id the listing gives (`nsid 2`) is in no uevent either: not compared.
/// - A PCI function that no datagram replayed so far names (its own devpath or one below
///   it) cannot be known from uevents: the machine's own functions (q35's ICH9 `00:1f.*`,
///   Cloud Hypervisor's host bridge, console and rng) are present at boot and get no uevent
///   unless a trigger step announces them (`other_pci_functions` in the README). Such an
///   entry is left out; every announced one must be held, with the listed driver.
///
/// Returns the lines and the BDFs of the functions left out by the second rule.
fn listing_lines(entries: &[SysfsEntry], announced: &[String]) -> (BTreeSet<String>, Vec<String>) {
    let mut out = BTreeSet::new();
    let mut left_out = Vec::new();
    for e in entries {
        match (e.class.as_str(), &e.path) {
            ("pci", Some(path)) => {
                let under = format!("{}/", e.devpath);
                if announced
                    .iter()
                    .any(|d| *d == e.devpath || d.starts_with(&under))
                {
                    let driver = e.driver.as_deref().unwrap_or("-");
                    let (id, class) = e.pci_id.as_ref().unwrap();
                    let (bdf, devpath) = (&e.name, &e.devpath);
                    out.insert(format!(
                        "pci {path} {bdf} {devpath} {id} class={class} driver={driver}"
                    ));
                } else {
                    left_out.push(e.name.clone());
                }
            }
            _ if head_of_hidden(&e.name).is_some() => {}
            ("block", None) => {
                out.insert(format!("head {} {}", e.name, e.devpath));
            }
            (class @ ("block" | "net"), Some(path)) => {
                let mut line = format!("{class} {path} {} {}", e.name, e.devpath);
                if let Some(scsi) = &e.scsi {
                    line += &format!(" scsi {scsi}");
                }
                out.insert(line);
            }
            _ => panic!("unexpected listing entry {e:?}"),
        }
    }
    (out, left_out)
}

/// The functions the rule on unannounced functions may leave out: the machine's own, present
/// from boot and never hot-plugged (q35's ICH9 LPC, SATA and SMBus functions; Cloud
/// Hypervisor's host bridge on segment 0). Anything else a listing has must be announced.
const MACHINE_OWN: [&str; 4] = [
    "0000:00:1f.0",
    "0000:00:1f.2",
    "0000:00:1f.3",
    "0000:00:00.0",
];

#[test]
fn state_after_each_step_matches_the_guest_sysfs() {
    let (mut compared, mut gone_checked) = (0, 0);
    for name in FIXTURES {
        let f = Fixture::load(name);
        let mut reg = Registry::new();
        let mut announced: Vec<String> = Vec::new();
        for (step, records) in f.step_records() {
            for r in &records {
                reg.apply_datagram(r.sender, &r.datagram);
                announced.extend(field(&r.datagram, "DEVPATH"));
            }
            let ctx = format!("{name} after step {step}");
            if let Some(entries) = f.sysfs_after.get(&step) {
                let got = registry_lines(&reg, &f);
                let (want, left_out) = listing_lines(entries, &announced);
                for bdf in &left_out {
                    assert!(
                        MACHINE_OWN.contains(&bdf.as_str()),
                        "{ctx}: {bdf} never announced"
                    );
                }
                assert!(
                    got == want,
                    "{ctx}: registry differs from the guest's sysfs\n  only in the registry: \
                     {:?}\n  only in the listing: {:?}",
                    got.difference(&want).collect::<Vec<_>>(),
                    want.difference(&got).collect::<Vec<_>>(),
                );
                // The ties only sysfs knows: once made, each head is at its controller's path.
                let mut linked = reg.clone();
                link_heads_as_sysfs_shows(&mut linked, entries);
                for hidden in entries.iter().filter(|e| head_of_hidden(&e.name).is_some()) {
                    let head = head_of_hidden(&hidden.name).unwrap();
                    let path = p(hidden.path.as_deref().unwrap());
                    let names: Vec<_> = linked
                        .block_devices(&path)
                        .iter()
                        .map(|b| b.name.to_string())
                        .collect();
                    assert!(
                        names.contains(&head),
                        "{ctx}: {head} not at {path}: {names:?}"
                    );
                }
                compared += 1;
            }
            for gone in f.verified_gone.iter().filter(|g| g.step == step) {
                gone_checked += 1;
                let path = p(&gone.path);
                match &gone.scsi_ctl {
                    None => assert!(
                        reg.get(&path).is_none(),
                        "{ctx}: {gone:?}: {}",
                        reg.describe(&path)
                    ),
                    Some(ctl) => {
                        let lun = format!(":{ctl}");
                        let left: Vec<_> = reg
                            .block_devices(&path)
                            .into_iter()
                            .filter(|b| matches!(&b.transport, Transport::Scsi { address } if address.ends_with(&lun)))
                            .collect();
                        assert!(left.is_empty(), "{ctx}: {gone:?}: {left:?}");
                    }
                }
            }
        }
        let s = reg.stats();
        assert_eq!(s.malformed + s.spoofed + s.unplaceable, 0, "{name}: {s:?}");
        assert_eq!(s.received as usize, f.recording.records.len());
    }
    // Every listing of every recording was compared (a loader that lost them would pass).
    let listings: usize = FIXTURES
        .iter()
        .map(|n| Fixture::load(n).sysfs_after.len())
        .sum();
    assert_eq!(compared, listings);
    assert!(compared >= 70, "{compared} listings");
    // And every `nothing left` line (set 2 has 30, Cloud Hypervisor 1).
    let gone: usize = FIXTURES
        .iter()
        .map(|n| Fixture::load(n).verified_gone.len())
        .sum();
    assert_eq!((gone_checked, gone), (31, 31));
}

#[test]
fn the_new_listings_are_read_whole() {
    // Spot checks of the loader on each new listing form, against the files' own text.
    let f = Fixture::load("q35-scsi-multi-lun");
    assert!(f.lists_pci && f.pci_endpoints_only && f.lists_scsi);
    let sdb = f.sysfs_after[&3].iter().find(|e| e.name == "sdb").unwrap();
    assert_eq!(
        (sdb.path.as_deref(), sdb.scsi.as_deref()),
        (Some("02/00"), Some("0:0:0:1"))
    );
    let hba = f.sysfs_after[&1]
        .iter()
        .find(|e| e.name == "0000:01:00.0")
        .unwrap();
    assert_eq!(
        (hba.class.as_str(), hba.driver.as_deref()),
        ("pci", Some("virtio-pci"))
    );
    let ich9 = f.sysfs_after[&1]
        .iter()
        .find(|e| e.name == "0000:00:1f.2")
        .unwrap();
    assert_eq!(
        (ich9.path.as_deref(), ich9.driver.as_deref()),
        (Some("1f.2"), None)
    );
    assert!(f.verified_gone.contains(&VerifiedGone {
        step: 6,
        path: "02/00".into(),
        scsi_ctl: Some("0:0:1".into())
    }));
    let f = Fixture::load("q35-nvme-namespaces");
    let head = f.sysfs_after[&1]
        .iter()
        .find(|e| e.name == "nvme0n2")
        .unwrap();
    assert_eq!((head.path.as_deref(), head.nsid), (None, Some(2)));
    let f = Fixture::load("q35-no-child-device");
    assert!(f.expects.contains(&(
        "03/00".into(),
        "(pci function, no driver)".into(),
        "(qemu id testdev1, step 2, pci 0000:02:00.0 0x1b36:0x0005 class=0x00ff00 /devices/pci0000:00/0000:00:03.0/0000:02:00.0)".into()
    )));
    let f = Fixture::load("ch-pci-segments");
    assert!(f.lists_pci && !f.pci_endpoints_only && !f.lists_scsi);
    let eth0 = f.sysfs_after[&5]
        .iter()
        .find(|e| e.name == "0002:00:05.0")
        .unwrap();
    assert_eq!(
        (eth0.path.as_deref(), eth0.driver.as_deref()),
        (Some("pci0002:00/05"), Some("virtio-pci"))
    );
    assert!(f.sysfs_after[&0].iter().any(|e| e.name == "0000:00:00.0"));
    assert_eq!(
        f.verified_gone,
        [VerifiedGone {
            step: 6,
            path: "pci0001:00/05".into(),
            scsi_ctl: None
        }]
    );
    let old = Fixture::load("q35-acpi-hotplug");
    assert!(!old.lists_pci && !old.lists_scsi);
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
            let step = expect_step(why);
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
                // ...and tied once sysfs says which controller it belongs to: here the
                // recorder's own sysfs facts, the devpaths of this expect line and of the
                // line of the hidden per-path disk behind it.
                let subsystem = why.rsplit('/').nth(1).unwrap();
                let (_, _, hidden_why) = f
                    .expects
                    .iter()
                    .find(|(hp, hd, hw)| {
                        hp == path
                            && head_of_hidden(hd).as_deref() == Some(dev.as_str())
                            && expect_step(hw) == step
                    })
                    .unwrap_or_else(|| panic!("{ctx}: no hidden-disk line"));
                let ctrl = hidden_why.trim_end_matches(')').rsplit('/').nth(1).unwrap();
                reg.link_nvme_controller(&p(path), ctrl, subsystem);
                assert!(names(&reg).contains(dev), "{ctx}: got {:?}", names(&reg));
            } else if let Some(driver) = dev.strip_prefix("(pci function, ") {
                // A function with no block or net child, with the driver bound or none.
                let want = match driver.trim_end_matches(')') {
                    "no driver" => None,
                    d => Some(d.strip_prefix("driver ").unwrap()),
                };
                let got = reg.get(&p(path)).map(|d| d.driver.as_deref());
                assert_eq!(got, Some(want), "{ctx}");
                assert!(names(&reg).is_empty(), "{ctx}: got {:?}", names(&reg));
            } else if let Some(scsi) = why.split("disk scsi ").nth(1) {
                // `H:C:T:L` as the guest's sysfs showed it.
                let address = scsi.split(' ').next().unwrap();
                let got: Vec<_> = reg
                    .block_devices(&p(path))
                    .into_iter()
                    .filter(|b| *b.name == **dev)
                    .map(|b| b.transport.clone())
                    .collect();
                assert_eq!(
                    got,
                    [Transport::Scsi {
                        address: address.into()
                    }],
                    "{ctx}"
                );
            } else {
                // The namespace id of NVMe lines (`nsid 2`) is in no uevent: not checked here.
                assert!(names(&reg).contains(dev), "{ctx}: got {:?}", names(&reg));
            }
        }
    }
}

#[test]
fn final_state_is_the_readme_final_state_once_heads_are_linked() {
    // The fixtures READMEs' "Final state" of each scenario, as (path, disk).
    let cases: [(&str, &[(&str, &str)]); FIXTURES.len()] = [
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
        ("q35-scsi-multi-lun", &[("03/00", "sdd")]),
        ("q35-multifunction", &[]),
        ("q35-pcie-switch", &[("02/00/01/00", "vdb")]),
        ("q35-pxb-pcie", &[("02/00", "vda")]),
        ("q35-no-child-device", &[]),
        ("q35-vfio-bind", &[]),
        ("q35-storm-16", &[]),
        (
            "arm64-virt-dt",
            &[("04/00", "sda"), ("05/00", "nvme0n1"), ("06/00", "vdb")],
        ),
        ("q35-nvme-namespaces", &[]),
        ("q35-virtio-pmem", &[("02/00", "pmem0"), ("03/00", "pmem1")]),
        (
            "ch-pci-segments",
            &[
                ("05", "vdc"),
                ("pci0001:00/00", "vda"),
                ("pci0002:00/00", "vdb"),
            ],
        ),
    ];
    let names: BTreeSet<&str> = cases.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        FIXTURES.into_iter().collect(),
        "one case per recording"
    );
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
    // The functions without a block or net child at the end, with their driver.
    let reg = replay(&Fixture::load("q35-no-child-device").recording.records);
    assert_eq!(reg.get(&p("04/00")).map(|d| d.driver.is_none()), Some(true));
    let reg = replay(&Fixture::load("q35-vfio-bind").recording.records);
    assert_eq!(
        reg.get(&p("03/00")).unwrap().driver.as_deref(),
        Some("vfio-pci")
    );
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
