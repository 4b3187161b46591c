//! [`diff`]: the changes that take one registry to another, what a resync reports.

use super::model::{BlockDevice, PciDevice};
use super::{Change, Registry};
use crate::path::PciPath;

/// The changes that take `old` to `new`, device by device, in path order: removals of what
/// is gone (children first), then additions of what is new.
pub(super) fn diff(old: &Registry, new: &Registry) -> Vec<Change> {
    let mut changes = Vec::new();
    let paths: std::collections::BTreeSet<PciPath> =
        old.devices().chain(new.devices()).map(|d| d.path).collect();
    for path in paths {
        let (o, n) = (old.get(&path), new.get(&path));
        let same_fn = matches!((o, n), (Some(a), Some(b)) if a.devpath == b.devpath);
        let blocks = |r: &Registry, present: bool| -> Vec<BlockDevice> {
            if present {
                r.block_devices(&path).into_iter().cloned().collect()
            } else {
                Vec::new()
            }
        };
        let (ob, nb) = (
            blocks(old, o.is_some()),
            blocks(new, n.is_some() && (same_fn || o.is_none())),
        );
        let key = |b: &BlockDevice| (b.name.clone(), b.diskseq);
        for b in ob
            .iter()
            .rev()
            .filter(|b| !same_fn || !nb.iter().any(|x| key(x) == key(b)))
        {
            changes.push(Change::BlockRemoved {
                path: Some(path),
                block: b.clone(),
            });
        }
        let nets = |d: Option<&PciDevice>| d.map(|d| d.net.clone()).unwrap_or_default();
        let (on, nn) = (nets(o), nets(n));
        for net in on.iter().filter(|x| !same_fn || !nn.contains(x)) {
            changes.push(Change::NetRemoved {
                path,
                net: net.clone(),
            });
        }
        let ctrls = |d: Option<&PciDevice>| d.map(|d| d.nvme.clone()).unwrap_or_default();
        let (oc, nc) = (ctrls(o), ctrls(n));
        for c in oc
            .iter()
            .filter(|x| !same_fn || !nc.iter().any(|y| y.name == x.name))
        {
            changes.push(Change::NvmeRemoved {
                path,
                controller: c.clone(),
            });
        }
        if let Some(d) = o.filter(|_| !same_fn) {
            changes.push(Change::DeviceRemoved { path, bdf: d.bdf });
        }
        let Some(d) = n else { continue };
        if !same_fn {
            changes.push(Change::DeviceAdded { path, bdf: d.bdf });
        }
        let old_driver = o.filter(|_| same_fn).and_then(|d| d.driver.clone());
        match (&old_driver, &d.driver) {
            (Some(_), None) => changes.push(Change::DriverUnbound { path }),
            (_, Some(drv)) if old_driver.as_ref() != Some(drv) => {
                changes.push(Change::DriverBound {
                    path,
                    driver: drv.clone(),
                })
            }
            _ => {}
        }
        let nb = blocks(new, true);
        let ob = if same_fn { ob } else { Vec::new() };
        for c in nc
            .iter()
            .filter(|x| !same_fn || !oc.iter().any(|y| y.name == x.name))
        {
            changes.push(Change::NvmeAdded {
                path,
                controller: c.clone(),
            });
        }
        for net in nn.iter().filter(|x| !same_fn || !on.contains(x)) {
            changes.push(Change::NetAdded {
                path,
                net: net.clone(),
            });
        }
        for b in nb.iter().filter(|b| !ob.iter().any(|x| key(x) == key(b))) {
            changes.push(Change::BlockAdded {
                path: Some(path),
                block: b.clone(),
            });
        }
    }
    let heads = |r: &Registry| -> Vec<BlockDevice> {
        r.unresolved_nvme_heads().map(|(_, h)| h.clone()).collect()
    };
    let (oh, nh) = (heads(old), heads(new));
    for h in oh.iter().filter(|h| !nh.contains(h)) {
        changes.push(Change::BlockRemoved {
            path: None,
            block: h.clone(),
        });
    }
    for h in nh.iter().filter(|h| !oh.contains(h)) {
        changes.push(Change::BlockAdded {
            path: None,
            block: h.clone(),
        });
    }
    changes
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
