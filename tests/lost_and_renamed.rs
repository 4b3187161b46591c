//! Lost events and renames, built from the real recordings: a PCI `remove` whose children's
//! own removes were lost, a lost disk remove repaired by the next DISKSEQ, an interface
//! renamed (`move`), before or after its `add`. The registry ends where the guest's sysfs is.

mod common;

use common::*;
use pciplug::{Change, Outcome, Registry};

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
    let f = Fixture::load("q35-acpi-hotplug");
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

#[test]
fn a_move_renames_the_interface() {
    let (add, mv) = eth0_add_and_rename_to("ens4");
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
    let (_, mv) = eth0_add_and_rename_to("ens4");
    let mut reg = Registry::new();
    reg.apply_datagram(0, &mv);
    assert_eq!(&*reg.net(&p("04/00")).unwrap().name, "ens4");
}
