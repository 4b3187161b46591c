//! Block devices: disks and partitions below a PCI function, and NVMe multipath heads.

use super::model::{BlockDevice, DevType, Transport};
use super::{Change, Owner, Registry, insert_exact};
use crate::devpath;
use crate::path::PciPath;
use crate::uevent::{Effect, Key, UeventRef};

impl Registry {
    // ---- block devices below a PCI function ---------------------------------------------

    pub(super) fn apply_block(
        &mut self,
        ev: &UeventRef<'_>,
        path: PciPath,
        end: usize,
        changes: &mut Vec<Change>,
    ) {
        let name = block_name(ev);
        if devpath::is_hidden_nvme_path(name) {
            return; // the per-path disk behind a multipath head: never reported
        }
        match ev.action().effect() {
            Effect::Gone => self.remove_block(path, name, ev.get_u64(Key::Diskseq), changes),
            Effect::Present => {
                if let Some(old_name) = ev.old_sysname().filter(|o| *o != name) {
                    self.remove_block(path, old_name, None, changes);
                }
                let transport = transport(&ev.devpath()[end..]);
                let block = block_device(ev, name, transport);
                self.ensure_device(path, &ev.devpath()[..end], changes);
                self.insert_block(Owner::Pci(path), block, changes);
            }
            Effect::Unbound | Effect::Nothing => {}
        }
    }

    /// Inserts or updates a block device held by `owner`, replacing a stale holder of the
    /// same name (a lost `remove`) and an older disk of the same name (a different DISKSEQ).
    pub(super) fn insert_block(
        &mut self,
        owner: Owner,
        block: BlockDevice,
        changes: &mut Vec<Change>,
    ) {
        if let Some(&held) = self.names.get(&block.name).filter(|&&held| held != owner) {
            self.remove_name(held, &block.name.clone(), changes);
        }
        // Holds the device taken out of the table while its list is in use.
        let mut device = None;
        let list = match owner {
            Owner::Pci(p) => match self.devices.get_mut(&p) {
                Some(d) => &mut device.insert(d).block,
                None => return,
            },
            Owner::NvmeSubsystem => match &block.transport {
                Transport::NvmeMultipath { subsystem } => {
                    &mut self
                        .nvme_subsystems
                        .entry(subsystem.clone())
                        .or_default()
                        .heads
                }
                _ => return,
            },
        };
        let Some(replaced) = place_block(list, &block) else {
            return;
        };
        drop(device);
        self.report_block(owner, block, replaced, changes);
    }

    /// Keeps `names` in step with a block device just placed in `owner`'s list (replacing
    /// the `replaced` ones) and reports the changes under every path it counts for.
    fn report_block(
        &mut self,
        owner: Owner,
        block: BlockDevice,
        replaced: Vec<BlockDevice>,
        changes: &mut Vec<Change>,
    ) {
        // A function's own block device counts under its path alone: no list to allocate.
        let (one, many);
        let paths: &[Option<PciPath>] = match owner {
            Owner::Pci(p) => {
                one = [Some(p)];
                &one
            }
            Owner::NvmeSubsystem => {
                many = self.paths_of(owner, &block);
                &many
            }
        };
        for old in replaced.into_iter().rev() {
            if old.name != block.name {
                self.names.remove(&old.name);
            }
            for p in paths {
                changes.push(Change::BlockRemoved {
                    path: *p,
                    block: old.clone(),
                });
            }
        }
        self.names.insert(block.name.clone(), owner);
        // The list holds its own copy; the last change takes this one.
        if let Some((last, rest)) = paths.split_last() {
            for p in rest {
                changes.push(Change::BlockAdded {
                    path: *p,
                    block: block.clone(),
                });
            }
            changes.push(Change::BlockAdded { path: *last, block });
        }
    }

    /// The PCI paths a block device counts under: its function's, or for an NVMe head, the
    /// paths linked to its subsystem (`[None]` while there are none).
    fn paths_of(&self, owner: Owner, block: &BlockDevice) -> Vec<Option<PciPath>> {
        match (owner, &block.transport) {
            (Owner::Pci(p), _) => vec![Some(p)],
            (Owner::NvmeSubsystem, Transport::NvmeMultipath { subsystem }) => {
                match self.nvme_subsystems.get(subsystem) {
                    Some(s) if !s.controllers.is_empty() => {
                        s.controllers.iter().map(|p| Some(*p)).collect()
                    }
                    _ => vec![None],
                }
            }
            _ => vec![None],
        }
    }

    pub(super) fn remove_block(
        &mut self,
        path: PciPath,
        name: &str,
        diskseq: Option<u64>,
        changes: &mut Vec<Change>,
    ) {
        let Some(mut dev) = self.devices.get_mut(&path) else {
            return;
        };
        let Ok(i) = dev.block.binary_search_by(|b| (*b.name).cmp(name)) else {
            return;
        };
        let Some((disk, parts)) = take_block(&mut dev.block, i, diskseq) else {
            return;
        };
        // Partitions before their disk.
        for block in parts.into_iter().rev().chain([disk]) {
            self.names.remove(&block.name);
            changes.push(Change::BlockRemoved {
                path: Some(path),
                block,
            });
        }
    }

    /// Removes the block device called `name` from its holder.
    fn remove_name(&mut self, owner: Owner, name: &str, changes: &mut Vec<Change>) {
        match owner {
            Owner::Pci(p) => self.remove_block(p, name, None, changes),
            Owner::NvmeSubsystem => self.remove_head(name, None, changes),
        }
    }

    // ---- NVMe multipath heads ------------------------------------------------------------

    pub(super) fn apply_nvme_head(&mut self, ev: &UeventRef<'_>, changes: &mut Vec<Change>) {
        let Some(subsystem) = devpath::nvme_head_subsystem(ev.devpath()) else {
            return;
        };
        let name = block_name(ev);
        match ev.action().effect() {
            Effect::Gone => self.remove_head(name, ev.get_u64(Key::Diskseq), changes),
            Effect::Present => {
                let transport = Transport::NvmeMultipath {
                    subsystem: subsystem.into(),
                };
                let block = block_device(ev, name, transport);
                self.insert_block(Owner::NvmeSubsystem, block, changes);
            }
            Effect::Unbound | Effect::Nothing => {}
        }
    }

    pub(super) fn remove_head(
        &mut self,
        name: &str,
        diskseq: Option<u64>,
        changes: &mut Vec<Change>,
    ) {
        let found = self.nvme_subsystems.iter().find_map(|(k, s)| {
            s.heads
                .iter()
                .position(|h| &*h.name == name)
                .map(|i| (k.clone(), i))
        });
        let Some((key, i)) = found else { return };
        let Some(sub) = self.nvme_subsystems.get_mut(&key) else {
            return;
        };
        let Some((disk, parts)) = take_block(&mut sub.heads, i, diskseq) else {
            return;
        };
        let paths: Vec<Option<PciPath>> = if sub.controllers.is_empty() {
            vec![None]
        } else {
            sub.controllers.iter().map(|p| Some(*p)).collect()
        };
        if sub.heads.is_empty() && sub.controllers.is_empty() {
            self.nvme_subsystems.remove(&key);
        }
        for block in parts.into_iter().rev().chain([disk]) {
            self.names.remove(&block.name);
            for p in &paths {
                changes.push(Change::BlockRemoved {
                    path: *p,
                    block: block.clone(),
                });
            }
        }
    }

    pub(super) fn unlink_subsystem(
        &mut self,
        subsystem: &str,
        path: PciPath,
        changes: &mut Vec<Change>,
    ) {
        // Another controller of the same function may still reach the subsystem (two paths
        // through one function): its heads are still there.
        let still_linked = self.devices.get(&path).is_some_and(|d| {
            d.nvme
                .iter()
                .any(|c| c.subsystem.as_deref() == Some(subsystem))
        });
        if still_linked {
            return;
        }
        let Some(sub) = self.nvme_subsystems.get_mut(subsystem) else {
            return;
        };
        let before = sub.controllers.len();
        sub.controllers.retain(|p| *p != path);
        if sub.controllers.len() != before {
            changes.extend(sub.heads.iter().map(|h| Change::BlockRemoved {
                path: Some(path),
                block: h.clone(),
            }));
        }
        if sub.heads.is_empty() && sub.controllers.is_empty() {
            self.nvme_subsystems.remove(subsystem);
        }
    }

    /// `subsystem`, as read from sysfs (`/sys/class/nvme-subsystem/<subsystem>/<controller>`).
    /// The subsystem's heads then count as block devices of `path`; returns them as
    /// [`Change::BlockAdded`]. Does nothing if the controller is not in the registry.
    pub fn link_nvme_controller(
        &mut self,
        path: &PciPath,
        controller: &str,
        subsystem: &str,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        let Some(mut dev) = self.devices.get_mut(path) else {
            return changes;
        };
        let Some(ctrl) = dev.nvme.iter_mut().find(|c| &*c.name == controller) else {
            return changes;
        };
        if ctrl.subsystem.as_deref() == Some(subsystem) {
            return changes;
        }
        let old = ctrl.subsystem.replace(subsystem.into());
        drop(dev); // put back before the rest of the registry is touched
        if let Some(old) = old {
            self.unlink_subsystem(&old, *path, &mut changes);
        }
        let sub = self.nvme_subsystems.entry(subsystem.into()).or_default();
        if !sub.controllers.contains(path) {
            sub.controllers.push(*path);
            sub.controllers.sort();
            changes.extend(sub.heads.iter().map(|h| Change::BlockAdded {
                path: Some(*path),
                block: h.clone(),
            }));
        }
        changes
    }
}

/// Puts `block` into a holder's list, sorted by name. Returns `None` if that reports nothing
/// (a duplicate, or the same disk with new facts, updated in place), else what it replaced,
/// the old disk first: a new disk under a reused name replaces the old one and its
/// partitions.
fn place_block(list: &mut Vec<BlockDevice>, block: &BlockDevice) -> Option<Vec<BlockDevice>> {
    let mut replaced = Vec::new();
    match list.binary_search_by(|b| b.name.cmp(&block.name)) {
        Ok(i) if list[i] == *block => return None, // a duplicate
        Ok(i) if same_disk(&list[i], block) => {
            // Same disk, new facts (e.g. a `change` after a resize): update quietly. The
            // namespace id read from sysfs is no event's, so an event does not forget it.
            let nsid = block.nsid.or(list[i].nsid);
            list[i].clone_from(block);
            list[i].nsid = nsid;
            return None;
        }
        Ok(i) => {
            let old = list.remove(i);
            if old.devtype == DevType::Disk {
                let name = old.name.clone();
                list.retain(|b| {
                    let stale = b.disk.as_deref() == Some(&*name) && b.diskseq != block.diskseq;
                    if stale {
                        replaced.push(b.clone());
                    }
                    !stale
                });
            }
            replaced.insert(0, old);
            let at = list.partition_point(|b| b.name < block.name);
            insert_exact(list, at, block.clone());
        }
        Err(at) => insert_exact(list, at, block.clone()),
    }
    Some(replaced)
}

/// Removes `list[i]` and, for a disk, its partitions, unless the removal names a `diskseq`
/// other than the one held (the late remove of an older disk of that name). Returns what was
/// removed: the device, and its partitions in list order (none allocated when it has none).
fn take_block(
    list: &mut Vec<BlockDevice>,
    i: usize,
    diskseq: Option<u64>,
) -> Option<(BlockDevice, Vec<BlockDevice>)> {
    if matches!((list[i].diskseq, diskseq), (Some(held), Some(gone)) if held != gone) {
        return None;
    }
    let block = list.remove(i);
    let mut parts = Vec::new();
    if block.devtype == DevType::Disk {
        list.retain(|b| {
            let part = b.disk.as_deref() == Some(&*block.name);
            if part {
                parts.push(b.clone());
            }
            !part
        });
    }
    Some((block, parts))
}

/// Two records of the same disk (or partition): same name, same DISKSEQ where both are known.
fn same_disk(a: &BlockDevice, b: &BlockDevice) -> bool {
    a.name == b.name
        && a.devtype == b.devtype
        && match (a.diskseq, b.diskseq) {
            (Some(x), Some(y)) => x == y,
            _ => a.major == b.major && a.minor == b.minor,
        }
}

fn block_name<'a>(ev: &UeventRef<'a>) -> &'a str {
    ev.get(Key::Devname).unwrap_or_else(|| ev.sysname())
}

fn block_device(ev: &UeventRef<'_>, name: &str, transport: Transport) -> BlockDevice {
    let devtype = match ev.get(Key::Devtype) {
        Some("partition") => DevType::Partition,
        _ => DevType::Disk,
    };
    let disk = match devtype {
        // `.../block/vdb/vdb1` or `.../nvme-subsys0/nvme0n1/nvme0n1p1`: the parent component.
        DevType::Partition => devpath::parent_component(ev.devpath()).map(Box::from),
        DevType::Disk => None,
    };
    let num = |k| ev.get_u64(k).and_then(|v| u32::try_from(v).ok());
    BlockDevice {
        name: name.into(),
        devtype,
        major: num(Key::Major),
        minor: num(Key::Minor),
        diskseq: ev.get_u64(Key::Diskseq),
        partn: num(Key::Partn),
        disk,
        transport,
        nsid: None,
        devpath: ev.devpath().into(),
    }
}

/// How a block device's devpath continues below its PCI function.
fn transport(rest: &str) -> Transport {
    match devpath::node_above(rest) {
        devpath::Above::NvmeController(ctrl) => Transport::Nvme {
            controller: ctrl.into(),
        },
        devpath::Above::ScsiAddress(addr) => Transport::Scsi {
            address: addr.into(),
        },
        devpath::Above::Virtio => Transport::Virtio,
        devpath::Above::Other => Transport::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_events::*;
    use super::*;
    use crate::uevent::Action;

    #[test]
    fn a_reused_name_with_a_new_diskseq_replaces_the_disk() {
        let mut r = Registry::new();
        r.apply(&vda("1")).unwrap();
        let ch = r.apply(&vda("7")).unwrap();
        assert_eq!(ch.len(), 2, "{ch:?}");
        assert!(matches!(&ch[0], Change::BlockRemoved { block, .. } if block.diskseq == Some(1)));
        assert!(matches!(&ch[1], Change::BlockAdded { block, .. } if block.diskseq == Some(7)));
        // The late remove of the old disk does not remove the new one.
        let rm = ev(
            Action::Remove,
            &format!("{FN}/virtio0/block/vda"),
            "block",
            &[("DEVNAME", "vda"), ("DEVTYPE", "disk"), ("DISKSEQ", "1")],
        );
        assert!(r.apply(&rm).unwrap().is_empty());
        assert_eq!(r.disk(&p("02/00")).unwrap().diskseq, Some(7));
    }

    #[test]
    fn a_name_moves_to_its_new_holder_when_the_old_remove_was_lost() {
        let mut r = Registry::new();
        r.apply(&vda("1")).unwrap();
        let other = ev(
            Action::Add,
            "/devices/pci0000:00/0000:00:04.0/0000:05:00.0/virtio3/block/vda",
            "block",
            &[("DEVNAME", "vda"), ("DEVTYPE", "disk"), ("DISKSEQ", "9")],
        );
        r.apply(&other).unwrap();
        assert!(r.disk(&p("02/00")).is_none());
        assert_eq!(r.disk(&p("04/00")).unwrap().diskseq, Some(9));
    }

    #[test]
    fn transports_are_read_from_the_nodes_in_between() {
        assert_eq!(transport("/virtio0/block/vda"), Transport::Virtio);
        assert_eq!(
            transport("/virtio4/host0/target0:0:0/0:0:0:0/block/sda"),
            Transport::Scsi {
                address: "0:0:0:0".into()
            }
        );
        assert_eq!(
            transport("/nvme/nvme1/nvme1n1"),
            Transport::Nvme {
                controller: "nvme1".into()
            }
        );
        assert_eq!(transport("/ata1/block/sdz"), Transport::Other);
    }

    #[test]
    fn nvme_heads_count_under_a_path_only_once_linked() {
        let mut r = Registry::new();
        let ctrl = format!("{FN}/nvme/nvme0");
        r.apply(&ev(Action::Add, &ctrl, "nvme", &[("DEVNAME", "nvme0")]))
            .unwrap();
        let head = ev(
            Action::Add,
            "/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1",
            "block",
            &[
                ("DEVNAME", "nvme0n1"),
                ("DEVTYPE", "disk"),
                ("DISKSEQ", "6"),
            ],
        );
        let ch = r.apply(&head).unwrap();
        assert!(matches!(&ch[..], [Change::BlockAdded { path: None, .. }]));
        assert!(r.disk(&p("02/00")).is_none());
        assert_eq!(r.unresolved_nvme_heads().count(), 1);
        let ch = r.link_nvme_controller(&p("02/00"), "nvme0", "nvme-subsys0");
        assert!(matches!(
            &ch[..],
            [Change::BlockAdded { path: Some(_), .. }]
        ));
        assert_eq!(&*r.disk(&p("02/00")).unwrap().name, "nvme0n1");
        assert_eq!(r.unresolved_nvme_heads().count(), 0);
        // Removing the PCI function unlinks; the head itself stays until its own remove.
        r.apply(&ev(Action::Remove, FN, "pci", &[])).unwrap();
        assert_eq!(r.unresolved_nvme_heads().count(), 1);
    }
}
