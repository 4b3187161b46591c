//! [`diff`]: the changes that take one registry to another, what a resync reports.

use std::collections::BTreeSet;

use super::model::{BlockDevice, NetInterface, NvmeController, PciDevice};
use super::{Change, Registry};
use crate::path::PciPath;

/// The changes that take `old` to `new`, device by device, in path order: removals of what
/// is gone (children first), then additions of what is new; then the NVMe heads tied to no
/// path; then the VFIO groups.
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
    // Compared whole: a head whose facts changed is reported gone and back.
    let gone = oh.iter().filter(|h| !nh.contains(h)).cloned();
    let came = nh.iter().filter(|h| !oh.contains(h)).cloned();
    changes.extend(gone.map(|block| Change::BlockRemoved { path: None, block }));
    changes.extend(came.map(|block| Change::BlockAdded { path: None, block }));
    super::vfio::diff(&old.vfio_groups, &new.vfio_groups, &mut changes);
    changes
}

/// A kind of thing below a function, as the diff compares and reports it.
trait Child: Clone {
    /// Removals are reported last first (partitions before their disks, as the kernel
    /// reports them).
    const REMOVED_LAST_FIRST: bool = false;
    /// The same child in both registries.
    fn same(&self, other: &Self) -> bool;
    fn removed(self, path: PciPath) -> Change;
    fn added(self, path: PciPath) -> Change;
}

impl Child for BlockDevice {
    const REMOVED_LAST_FIRST: bool = true;
    /// A name reused by a new disk (another DISKSEQ) is another disk.
    fn same(&self, other: &Self) -> bool {
        (&self.name, self.diskseq) == (&other.name, other.diskseq)
    }
    fn removed(self, path: PciPath) -> Change {
        Change::BlockRemoved {
            path: Some(path),
            block: self,
        }
    }
    fn added(self, path: PciPath) -> Change {
        Change::BlockAdded {
            path: Some(path),
            block: self,
        }
    }
}

impl Child for NetInterface {
    fn same(&self, other: &Self) -> bool {
        self == other
    }
    fn removed(self, path: PciPath) -> Change {
        Change::NetRemoved { path, net: self }
    }
    fn added(self, path: PciPath) -> Change {
        Change::NetAdded { path, net: self }
    }
}

impl Child for NvmeController {
    fn same(&self, other: &Self) -> bool {
        self.name == other.name
    }
    fn removed(self, path: PciPath) -> Change {
        Change::NvmeRemoved {
            path,
            controller: self,
        }
    }
    fn added(self, path: PciPath) -> Change {
        Change::NvmeAdded {
            path,
            controller: self,
        }
    }
}

/// The items of `items` that `others` has no match for, in order.
fn missing<'a, T: Child>(
    items: &'a [T],
    others: &'a [T],
) -> impl DoubleEndedIterator<Item = &'a T> {
    items
        .iter()
        .filter(move |x| !others.iter().any(|y| x.same(y)))
}

/// Reports what `was` holds and `is` does not as removed from `path`.
fn report_removed<T: Child>(was: &[T], is: &[T], path: PciPath, changes: &mut Vec<Change>) {
    let gone = missing(was, is).cloned().map(|c| c.removed(path));
    if T::REMOVED_LAST_FIRST {
        changes.extend(gone.rev());
    } else {
        changes.extend(gone);
    }
}

/// Reports what `is` holds and `was` did not as added at `path`.
fn report_added<T: Child>(is: &[T], was: &[T], path: PciPath, changes: &mut Vec<Change>) {
    changes.extend(missing(is, was).cloned().map(|c| c.added(path)));
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

    report_removed(&was.block, &kept_is.block, path, changes);
    report_removed(&was.net, &kept_is.net, path, changes);
    report_removed(&was.nvme, &kept_is.nvme, path, changes);
    if let Some(d) = o.filter(|_| !same_fn) {
        changes.push(Change::DeviceRemoved { path, bdf: d.bdf });
    }

    let Some(d) = n else { return };
    if !same_fn {
        changes.push(Change::DeviceAdded { path, bdf: d.bdf });
    }
    diff_driver(o.filter(|_| same_fn), d, changes);
    report_added(&is.nvme, &kept_was.nvme, path, changes);
    report_added(&is.net, &kept_was.net, path, changes);
    report_added(&is.block, &kept_was.block, path, changes);
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
    use super::super::test_events::*;
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
