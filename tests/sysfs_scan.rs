//! The coldplug scan against this machine's real `/sys`, checked against what `/sys/class`
//! says when read directly. Read-only: nothing here writes to sysfs, binds, unbinds or rescans.
//! Where this machine lacks what a test compares (a PCI bus, an NVMe subsystem), the test is
//! skipped, which fails under `PCIPLUG_REQUIRE_KERNEL=1` (`common::skip`).

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use pciplug::sysfs::{Snapshot, Sysfs};
use pciplug::{PciPath, Registry};

const SYS: &str = "/sys";

/// The scan and the registry built from it, or `None` (test `test` skipped) where there is no
/// PCI bus to compare against (a container without `/sys/bus/pci`).
fn scan(test: &str) -> Option<(Snapshot, Registry)> {
    if !Path::new(SYS).join("bus/pci/devices").is_dir() {
        common::skip(
            test,
            format!("no {SYS}/bus/pci/devices here: nothing to compare"),
        );
        return None;
    }
    let snapshot = Sysfs::new(SYS).scan().expect("scanning /sys");
    let mut registry = Registry::new();
    snapshot.apply_to(&mut registry);
    Some((snapshot, registry))
}

/// `/sys/class/<class>/*` resolved, as `(name, resolved path, devpath)`.
fn class_entries(class: &str) -> Vec<(String, PathBuf, String)> {
    let dir = Path::new(SYS).join("class").join(class);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let e = e.ok()?;
            let resolved = fs::canonicalize(e.path()).ok()?;
            let devpath = format!("/{}", resolved.strip_prefix(SYS).ok()?.to_str()?);
            Some((e.file_name().into_string().ok()?, resolved, devpath))
        })
        .collect()
}

/// The PCI path of a devpath that goes through a PCI function.
fn pci_path(devpath: &str) -> Option<PciPath> {
    PciPath::from_devpath(devpath)
        .ok()
        .flatten()
        .map(|(p, _)| p)
}

fn hidden(dir: &Path) -> bool {
    fs::read_to_string(dir.join("hidden")).is_ok_and(|v| v.trim() == "1")
}

#[test]
fn block_devices_below_pci_are_those_of_sys_class_block() {
    let Some((snapshot, registry)) = scan("block_devices_below_pci_are_those_of_sys_class_block")
    else {
        return;
    };
    let expected: BTreeSet<(PciPath, String)> = class_entries("block")
        .into_iter()
        .filter(|(_, dir, _)| !hidden(dir))
        .filter_map(|(name, _, devpath)| Some((pci_path(&devpath)?, name)))
        .collect();

    let scanned: BTreeSet<(PciPath, String)> = snapshot
        .events
        .iter()
        .filter(|e| e.subsystem() == "block")
        .filter_map(|e| Some((pci_path(e.devpath())?, e.sysname().to_owned())))
        .collect();
    assert_eq!(scanned, expected);

    // The registry holds each at that path (its own block devices, NVMe heads apart).
    let held: BTreeSet<(PciPath, String)> = registry
        .devices()
        .flat_map(|d| d.block.iter().map(|b| (d.path, b.name.to_string())))
        .collect();
    assert_eq!(held, expected);
    eprintln!("block devices below PCI: {expected:?}");
}

#[test]
fn block_events_carry_the_kernels_fields_and_diskseq() {
    let Some((snapshot, _)) = scan("block_events_carry_the_kernels_fields_and_diskseq") else {
        return;
    };
    for (name, dir, devpath) in class_entries("block") {
        let Some(ev) = snapshot.events.iter().find(|e| e.devpath() == devpath) else {
            continue; // not below PCI, or hidden
        };
        assert_eq!(ev.get("DEVNAME"), Some(name.as_str()), "{devpath}");
        assert_eq!(ev.get("DEVPATH"), Some(devpath.as_str()));
        assert!(
            ev.get("MAJOR").is_some() && ev.get("MINOR").is_some(),
            "{devpath}"
        );
        assert_eq!(ev.seqnum(), None);
        // A disk has `diskseq` since 5.15; a partition's event carries its disk's.
        let disk_dir = match ev.get("DEVTYPE") {
            Some("partition") => dir.parent().unwrap().to_owned(),
            _ => dir.clone(),
        };
        if let Ok(seq) = fs::read_to_string(disk_dir.join("diskseq")) {
            assert_eq!(ev.get("DISKSEQ"), Some(seq.trim()), "{devpath}");
        }
    }
}

#[test]
fn net_interfaces_below_pci_are_those_of_sys_class_net() {
    let Some((snapshot, registry)) = scan("net_interfaces_below_pci_are_those_of_sys_class_net")
    else {
        return;
    };
    let expected: BTreeSet<(PciPath, String)> = class_entries("net")
        .into_iter()
        .filter_map(|(name, _, devpath)| Some((pci_path(&devpath)?, name)))
        .collect();
    let scanned: BTreeSet<(PciPath, String)> = snapshot
        .events
        .iter()
        .filter(|e| e.subsystem() == "net")
        .filter_map(|e| Some((pci_path(e.devpath())?, e.sysname().to_owned())))
        .collect();
    assert_eq!(scanned, expected);
    let held: BTreeSet<(PciPath, String)> = registry
        .devices()
        .flat_map(|d| d.net.iter().map(|n| (d.path, n.name.to_string())))
        .collect();
    assert_eq!(held, expected);
    eprintln!("net interfaces below PCI: {expected:?}");
}

#[test]
fn every_pci_function_is_in_the_registry_at_its_path() {
    let Some((_, registry)) = scan("every_pci_function_is_in_the_registry_at_its_path") else {
        return;
    };
    let mut seen = 0;
    for e in fs::read_dir(Path::new(SYS).join("bus/pci/devices")).unwrap() {
        let e = e.unwrap();
        let Ok(resolved) = fs::canonicalize(e.path()) else {
            continue; // went away meanwhile
        };
        let devpath = format!("/{}", resolved.strip_prefix(SYS).unwrap().display());
        let Some(path) = pci_path(&devpath) else {
            continue;
        };
        let dev = registry
            .get(&path)
            .unwrap_or_else(|| panic!("{devpath} missing at {path}"));
        assert_eq!(dev.bdf.to_string(), e.file_name().to_str().unwrap());
        assert_eq!(&*dev.devpath, devpath);
        seen += 1;
    }
    assert_eq!(seen, registry.len());
}
