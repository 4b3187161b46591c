//! [`diff`]: the changes that take one registry to another, what a resync reports.

use std::collections::BTreeSet;

use super::model::{BlockDevice, NetInterface, NvmeController, PciDevice};
use super::{Change, Registry};
use crate::path::PciPath;

/// The changes that take `old` to `new`, device by device, in path order: removals of what
/// is gone (children first), then additions of what is new; then the NVMe heads tied to no
/// path.
pub(super) fn diff(old: &Registry, new: &Registry) -> Vec<Change> {
    let mut changes = Vec::new();
    let paths: BTreeSet<PciPath> = old.devices().chain(new.devices()).map(|d| d.path).collect();
    for path in paths {
        diff_device(old, new, path, &mut changes);
    }
    let heads = |r: &Registry| -> Vec<BlockDevice> {
        r.unresolved_nvme_heads().map(|(_, h)| h.clone()).collect()
    };
    let (oh, nh) = (heads(old), heads(new));
    for h in missing(&oh, &nh, PartialEq::eq) {
        changes.push(Change::BlockRemoved {
            path: None,
            block: h.clone(),
        });
    }
    for h in missing(&nh, &oh, PartialEq::eq) {
        changes.push(Change::BlockAdded {
            path: None,
            block: h.clone(),
        });
    }
    changes
}

/// The items of `items` that `others` has no match for, as `same` matches them, in order.
fn missing<'a, T>(
    items: &'a [T],
    others: &'a [T],
    same: fn(&T, &T) -> bool,
) -> impl DoubleEndedIterator<Item = &'a T> {
    items
        .iter()
        .filter(move |x| !others.iter().any(|y| same(x, y)))
}

/// What hangs below one function, as a registry reports it.
#[derive(Default)]
struct Children {
    block: Vec<BlockDevice>,
    net: Vec<NetInterface>,
    nvme: Vec<NvmeController>,
}

impl Children {
    fn of(r: &Registry, device: Option<&PciDevice>) -> Children {
        let Some(d) = device else {
            return Children::default();
        };
        Children {
            block: r.block_devices(&d.path).into_iter().cloned().collect(),
            net: d.net.clone(),
            nvme: d.nvme.clone(),
        }
    }
}

/// The same disk: a name reused by a new disk (another DISKSEQ) is another disk.
fn same_block(a: &BlockDevice, b: &BlockDevice) -> bool {
    (&a.name, a.diskseq) == (&b.name, b.diskseq)
}

fn same_controller(a: &NvmeController, b: &NvmeController) -> bool {
    a.name == b.name
}

/// The changes at one path: its children that went, the function if it went or was
/// replaced, the function if it came, its driver, its children that came.
fn diff_device(old: &Registry, new: &Registry, path: PciPath, changes: &mut Vec<Change>) {
    let (o, n) = (old.get(&path), new.get(&path));
    // The same function still there; otherwise (absent, or another function now at the
    // path) nothing below it is kept and everything is reported again.
    let same_fn = matches!((o, n), (Some(a), Some(b)) if a.devpath == b.devpath);
    let (was, is) = (Children::of(old, o), Children::of(new, n));
    let none = Children::default();
    let (kept_was, kept_is) = if same_fn { (&was, &is) } else { (&none, &none) };

    // Partitions before their disks, as the kernel reports them.
    for block in missing(&was.block, &kept_is.block, same_block).rev() {
        changes.push(Change::BlockRemoved {
            path: Some(path),
            block: block.clone(),
        });
    }
    for net in missing(&was.net, &kept_is.net, PartialEq::eq) {
        changes.push(Change::NetRemoved {
            path,
            net: net.clone(),
        });
    }
    for controller in missing(&was.nvme, &kept_is.nvme, same_controller) {
        changes.push(Change::NvmeRemoved {
            path,
            controller: controller.clone(),
        });
    }
    if let Some(d) = o.filter(|_| !same_fn) {
        changes.push(Change::DeviceRemoved { path, bdf: d.bdf });
    }

    let Some(d) = n else { return };
    if !same_fn {
        changes.push(Change::DeviceAdded { path, bdf: d.bdf });
    }
    diff_driver(o.filter(|_| same_fn), d, changes);
    for controller in missing(&is.nvme, &kept_was.nvme, same_controller) {
        changes.push(Change::NvmeAdded {
            path,
            controller: controller.clone(),
        });
    }
    for net in missing(&is.net, &kept_was.net, PartialEq::eq) {
        changes.push(Change::NetAdded {
            path,
            net: net.clone(),
        });
    }
    for block in missing(&is.block, &kept_was.block, same_block) {
        changes.push(Change::BlockAdded {
            path: Some(path),
            block: block.clone(),
        });
    }
}

/// A driver bound or unbound between `old` (the same function, if it was there) and `new`.
fn diff_driver(old: Option<&PciDevice>, new: &PciDevice, changes: &mut Vec<Change>) {
    let path = new.path;
    match (old.and_then(|d| d.driver.as_ref()), &new.driver) {
        (Some(_), None) => changes.push(Change::DriverUnbound { path }),
        (was, Some(driver)) if was != Some(driver) => changes.push(Change::DriverBound {
            path,
            driver: driver.clone(),
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::registry::Registry;
    use crate::uevent::Action;

    #[test]
    fn reconcile_reports_what_the_truth_changed() {
        let mut stale = Registry::new();
        stale.apply(&vda("1")).unwrap();
        stale
            .apply(&ev(Action::Bind, FN, "pci", &[("DRIVER", "virtio-pci")]))
            .unwrap();
        let mut truth = Registry::new();
        truth.apply(&vda("7")).unwrap();
        truth
            .apply(&ev(Action::Bind, FN, "pci", &[("DRIVER", "virtio-pci")]))
            .unwrap();
        let eth = ev(
            Action::Add,
            "/devices/pci0000:00/0000:00:04.0/0000:05:00.0/virtio3/net/eth0",
            "net",
            &[("INTERFACE", "eth0")],
        );
        truth.apply(&eth).unwrap();
        let expect_state: Vec<String> = truth.views().map(|v| format!("{v:?}")).collect();
        let ch: Vec<String> = stale
            .reconcile(truth)
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(
            ch,
            [
                "02/00 remove block vda",
                "02/00 add block vda Disk diskseq 7",
                "04/00 add pci 0000:05:00.0",
                "04/00 add net eth0"
            ]
        );
        let got: Vec<String> = stale.views().map(|v| format!("{v:?}")).collect();
        assert_eq!(got, expect_state);
        assert!(stale.reconcile(stale.clone()).is_empty());
    }
}
