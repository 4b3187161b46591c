//! The registry's answers: what is at a path, every device in order, a one-line account.

use super::Registry;
use super::model::{BlockDevice, DevType, DeviceView, NetInterface, PciDevice};
use crate::path::PciPath;
use crate::wait::error::{Seen, SeenFunction, fmt_seen_at};
use std::fmt;

impl Registry {
    /// The PCI function at `path`.
    pub fn get(&self, path: &PciPath) -> Option<&PciDevice> {
        self.devices.get(path)
    }

    /// Every PCI function present, in path order (a bridge before what is behind it).
    pub fn devices(&self) -> impl Iterator<Item = &PciDevice> {
        // Sorted when asked: keeping the paths in order would cost every hot-plug a B-tree
        // update and every device 40 bytes, for listings that are rare.
        self.devices.sorted().into_iter()
    }

    /// Every PCI function present with all its block devices, in path order.
    pub fn views(&self) -> impl Iterator<Item = DeviceView<'_>> {
        self.devices().map(|d| DeviceView {
            path: d.path,
            bdf: d.bdf,
            devpath: &d.devpath,
            ids: d.ids,
            driver: d.driver.as_deref(),
            block: self.block_devices(&d.path),
            net: &d.net,
            nvme: &d.nvme,
        })
    }

    /// Number of PCI functions present.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// True if no PCI function is present.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// The block devices of the function at `path`: its own, then the NVMe multipath heads
    /// of the subsystems its controllers are linked to. Hidden per-path NVMe disks are never
    /// among them.
    pub fn block_devices(&self, path: &PciPath) -> Vec<&BlockDevice> {
        let Some(dev) = self.devices.get(path) else {
            return Vec::new();
        };
        let mut out: Vec<&BlockDevice> = dev.block.iter().collect();
        for ctrl in &dev.nvme {
            if let Some(sub) = ctrl
                .subsystem
                .as_ref()
                .and_then(|s| self.nvme_subsystems.get(s))
            {
                out.extend(sub.heads.iter());
            }
        }
        out
    }

    /// The first whole disk at `path` by name, even where the function carries several (a
    /// SCSI HBA with several LUNs, an NVMe controller with several namespaces): a quick look,
    /// not an answer to act on. [`Registry::find_disk`] refuses to pick among several, and is
    /// what the [`Monitor`](crate::Monitor)'s waits use.
    pub fn disk(&self, path: &PciPath) -> Option<&BlockDevice> {
        // What `block_devices` lists, in the same order, without collecting it: every wait
        // for a disk asks this, under the lock the listener needs.
        let dev = self.devices.get(path)?;
        let heads = dev
            .nvme
            .iter()
            .filter_map(|c| {
                c.subsystem
                    .as_ref()
                    .and_then(|s| self.nvme_subsystems.get(s))
            })
            .flat_map(|s| s.heads.iter());
        dev.block
            .iter()
            .chain(heads)
            .filter(|b| b.devtype == DevType::Disk)
            .min_by(|a, b| a.name.cmp(&b.name))
    }

    /// The first network interface at `path` (by name).
    pub fn net(&self, path: &PciPath) -> Option<&NetInterface> {
        self.devices.get(path).and_then(|d| d.net.first())
    }

    /// NVMe multipath heads whose subsystem is not linked to any controller in the registry,
    /// as `(subsystem, head)`.
    pub fn unresolved_nvme_heads(&self) -> impl Iterator<Item = (&str, &BlockDevice)> {
        self.nvme_subsystems
            .iter()
            .filter(|(_, s)| s.controllers.is_empty())
            .flat_map(|(name, s)| s.heads.iter().map(move |h| (name.as_ref(), h)))
    }

    /// A one-line account of what is at `path`, for error messages:
    /// "PCI device 0000:01:01.0 present at 02/01, driver virtio-pci bound, no block child".
    /// A wait's timeout carries it as data: [`Seen`](crate::Seen).
    pub fn describe(&self, path: &PciPath) -> String {
        struct At<'a>(&'a PciPath, &'a Seen);
        impl fmt::Display for At<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt_seen_at(f, self.0, self.1, false)
            }
        }
        At(path, &self.seen(path)).to_string()
    }

    /// What is at `path`, for a timed-out wait: nothing (and the nearest bridge present), or
    /// the function with its driver and children.
    pub(crate) fn seen(&self, path: &PciPath) -> Seen {
        let Some(dev) = self.devices.get(path) else {
            let bridge = self
                .nearest_present_ancestor(path)
                .map(|a| (a, self.devices[&a].bdf));
            return Seen::Nothing { bridge };
        };
        Seen::Function(SeenFunction {
            bdf: dev.bdf,
            driver: dev.driver.clone(),
            block: self.block_devices(path).into_iter().cloned().collect(),
            net: dev.net.clone(),
            nvme: dev.nvme.clone(),
        })
    }

    fn nearest_present_ancestor(&self, path: &PciPath) -> Option<PciPath> {
        let mut p = path.parent();
        while let Some(q) = p {
            if self.devices.contains_key(&q) {
                return Some(q);
            }
            p = q.parent();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_events::*;
    use crate::registry::Registry;
    use crate::uevent::Action;

    #[test]
    fn describe_says_what_is_there() {
        let mut r = Registry::new();
        r.apply(&ev(Action::Bind, FN, "pci", &[("DRIVER", "virtio-pci")]))
            .unwrap();
        assert_eq!(
            r.describe(&p("02/00")),
            "PCI device 0000:01:00.0 present at 02/00, driver virtio-pci bound, no block child"
        );
        assert_eq!(
            r.describe(&p("02/00/01")),
            "no PCI device at 02/00/01 (bridge 0000:01:00.0 at 02/00 is present)"
        );
        assert_eq!(r.describe(&p("07")), "no PCI device at 07");
    }
}
