//! Applying one event: PCI functions, network interfaces and NVMe controllers.

use super::model::{NetInterface, NvmeController, PciDevice, PciIds};
use super::{Change, Registry, insert_exact};
use crate::path::{Bdf, DevpathError, PciPath};
use crate::uevent::{Effect, Key, UeventRef};
use crate::{devpath, hex};

impl Registry {
    /// Applies one event, borrowed from its datagram or from a [`Uevent`], and appends what
    /// changed to `changes`; the callers (the intake) count it. On error nothing is appended.
    ///
    /// [`Uevent`]: crate::Uevent
    pub(super) fn apply_ref(
        &mut self,
        ev: &UeventRef<'_>,
        changes: &mut Vec<Change>,
    ) -> Result<(), DevpathError> {
        let located = self.placed.locate(ev.devpath())?;
        match (ev.subsystem(), located) {
            ("pci", Some((path, end))) if end == ev.devpath().len() => {
                self.apply_pci(ev, path, changes)
            }
            ("block", Some((path, end))) => self.apply_block(ev, path, end, changes),
            ("block", None) => self.apply_nvme_head(ev, changes),
            ("net", Some((path, end))) => self.apply_net(ev, path, end, changes),
            ("nvme", Some((path, end))) => self.apply_nvme_controller(ev, path, end, changes),
            ("vfio", None) => self.apply_vfio_group(ev, changes),
            _ => {}
        }
        Ok(())
    }

    // ---- PCI functions -------------------------------------------------------------------

    fn apply_pci(&mut self, ev: &UeventRef<'_>, path: PciPath, changes: &mut Vec<Change>) {
        match ev.action().effect() {
            Effect::Gone => self.remove_subtree(&path, changes),
            Effect::Unbound => {
                if let Some(mut dev) = self.devices.get_mut(&path) {
                    if dev.driver.take().is_some() {
                        changes.push(Change::DriverUnbound { path });
                    }
                }
                // The children were created by the driver's probe and cannot outlive it.
                self.clear_children(&path, changes);
            }
            Effect::Present => {
                self.ensure_device(path, ev.devpath(), changes); // `apply` checked it ends here
                let Some(mut dev) = self.devices.get_mut(&path) else {
                    return; // not placeable as a function; ensure_device logged nothing to add
                };
                if let Some(ids) = pci_ids(ev) {
                    dev.ids = Some(ids);
                }
                let new_driver = ev
                    .get(Key::Driver)
                    .filter(|d| dev.driver.as_deref() != Some(*d));
                if let Some(driver) = new_driver {
                    dev.driver = Some(driver.into());
                    changes.push(Change::DriverBound {
                        path,
                        driver: driver.into(),
                    });
                }
            }
            Effect::Nothing => {}
        }
    }

    /// Makes the function at `path` present, replacing a different function that held the
    /// path (a lost `remove`, after which the bus numbers moved).
    ///
    /// `devpath` is the function's own devpath: the prefix of the event's devpath that
    /// [`PciPath::from_devpath`] placed at `path`.
    pub(super) fn ensure_device(
        &mut self,
        path: PciPath,
        devpath: &str,
        changes: &mut Vec<Change>,
    ) {
        if let Some(dev) = self.devices.get(&path) {
            if *dev.devpath == *devpath {
                return;
            }
            self.remove_subtree(&path, changes);
        }
        let Some(bdf) = devpath::last_component(devpath).parse::<Bdf>().ok() else {
            return; // from_devpath placed it, so the last component is a BDF
        };
        self.devices.insert(PciDevice {
            path,
            bdf,
            devpath: devpath.into(),
            ids: None,
            driver: None,
            block: Vec::new(),
            net: Vec::new(),
            nvme: Vec::new(),
        });
        changes.push(Change::DeviceAdded { path, bdf });
    }

    /// Removes the function at `path` and every function behind it, children included.
    pub(super) fn remove_subtree(&mut self, path: &PciPath, changes: &mut Vec<Change>) {
        if !self.devices.behind.contains_key(path) {
            // Nothing behind it (a leaf, the common case): its subtree is itself, if present,
            // and needs no list.
            self.clear_children(path, changes);
            if let Some(dev) = self.devices.remove(path) {
                changes.push(Change::DeviceRemoved {
                    path: *path,
                    bdf: dev.bdf,
                });
            }
            return;
        }
        let doomed = self.devices.subtree(path);
        // Deepest first, so a bridge is reported after what was behind it.
        for p in doomed.into_iter().rev() {
            self.clear_children(&p, changes);
            if let Some(dev) = self.devices.remove(&p) {
                changes.push(Change::DeviceRemoved {
                    path: p,
                    bdf: dev.bdf,
                });
            }
        }
    }

    pub(super) fn clear_children(&mut self, path: &PciPath, changes: &mut Vec<Change>) {
        let Some(mut dev) = self.devices.get_mut(path) else {
            return;
        };
        let blocks = std::mem::take(&mut dev.block);
        let nets = std::mem::take(&mut dev.net);
        let ctrls = std::mem::take(&mut dev.nvme);
        drop(dev);
        // Partitions before their disks, as the kernel reports them.
        for block in blocks.into_iter().rev() {
            self.names.remove(&block.name);
            changes.push(Change::BlockRemoved {
                path: Some(*path),
                block,
            });
        }
        for net in nets {
            self.net_names.remove(&net.name);
            changes.push(Change::NetRemoved { path: *path, net });
        }
        for controller in ctrls {
            if let Some(sub) = &controller.subsystem {
                self.unlink_subsystem(sub, *path, changes);
            }
            changes.push(Change::NvmeRemoved {
                path: *path,
                controller,
            });
        }
    }

    // ---- network interfaces --------------------------------------------------------------

    fn apply_net(
        &mut self,
        ev: &UeventRef<'_>,
        path: PciPath,
        end: usize,
        changes: &mut Vec<Change>,
    ) {
        // Only the interface itself: `.../net/eth0`, not its `queues/rx-0` (another subsystem).
        if !devpath::is_net_interface(&ev.devpath()[end..]) {
            return;
        }
        let name = ev.get(Key::Interface).unwrap_or_else(|| ev.sysname());
        match ev.action().effect() {
            Effect::Gone => self.remove_net(path, name, changes),
            Effect::Present => {
                let net = NetInterface {
                    name: name.into(),
                    ifindex: ev.get_u64(Key::Ifindex).and_then(|i| u32::try_from(i).ok()),
                    devpath: ev.devpath().into(),
                };
                self.ensure_device(path, &ev.devpath()[..end], changes);
                let old_name = ev.old_sysname().filter(|o| *o != name);
                self.insert_net(path, net, old_name, changes);
            }
            Effect::Unbound | Effect::Nothing => {}
        }
    }

    fn insert_net(
        &mut self,
        path: PciPath,
        net: NetInterface,
        old_name: Option<&str>,
        changes: &mut Vec<Change>,
    ) {
        if let Some(&held) = self.net_names.get(&net.name).filter(|&&held| held != path) {
            self.remove_net(held, &net.name.clone(), changes);
        }
        let Some(mut dev) = self.devices.get_mut(&path) else {
            return;
        };
        let renamed_from = old_name.and_then(|old| {
            let i = dev.net.iter().position(|n| &*n.name == old)?;
            Some(dev.net.remove(i).name)
        });
        if let Some(old) = &renamed_from {
            self.net_names.remove(old);
        }
        match dev.net.binary_search_by(|n| n.name.cmp(&net.name)) {
            // A duplicate; but a rename onto the name it already holds still reports that
            // the old name went away.
            Ok(i) if dev.net[i] == net && renamed_from.is_none() => return,
            Ok(i) => dev.net[i] = net.clone(),
            Err(i) => insert_exact(&mut dev.net, i, net.clone()),
        }
        self.net_names.insert(net.name.clone(), path);
        changes.push(match renamed_from {
            Some(old) => Change::NetRenamed { path, old, net },
            None => Change::NetAdded { path, net },
        });
    }

    fn remove_net(&mut self, path: PciPath, name: &str, changes: &mut Vec<Change>) {
        let Some(mut dev) = self.devices.get_mut(&path) else {
            return;
        };
        if let Some(i) = dev.net.iter().position(|n| &*n.name == name) {
            let net = dev.net.remove(i);
            self.net_names.remove(&net.name);
            changes.push(Change::NetRemoved { path, net });
        }
    }

    // ---- NVMe controllers ----------------------------------------------------------------

    fn apply_nvme_controller(
        &mut self,
        ev: &UeventRef<'_>,
        path: PciPath,
        end: usize,
        changes: &mut Vec<Change>,
    ) {
        // `/nvme/nvme0` directly below the function.
        let rest = &ev.devpath()[end..];
        let Some(name) = devpath::nvme_controller_node(rest) else {
            return;
        };
        match ev.action().effect() {
            Effect::Gone => {
                let Some(mut dev) = self.devices.get_mut(&path) else {
                    return;
                };
                if let Some(i) = dev.nvme.iter().position(|c| &*c.name == name) {
                    let controller = dev.nvme.remove(i);
                    drop(dev);
                    if let Some(sub) = &controller.subsystem {
                        self.unlink_subsystem(sub, path, changes);
                    }
                    changes.push(Change::NvmeRemoved { path, controller });
                }
            }
            Effect::Present => {
                self.ensure_device(path, &ev.devpath()[..end], changes);
                let Some(mut dev) = self.devices.get_mut(&path) else {
                    return;
                };
                if !dev.nvme.iter().any(|c| &*c.name == name) {
                    let controller = NvmeController {
                        name: name.into(),
                        subsystem: None,
                    };
                    let at = dev.nvme.len();
                    insert_exact(&mut dev.nvme, at, controller.clone());
                    dev.nvme.sort_by(|a, b| a.name.cmp(&b.name));
                    changes.push(Change::NvmeAdded { path, controller });
                }
            }
            Effect::Unbound | Effect::Nothing => {}
        }
    }
}

/// The function the last event was placed at: its devpath and path, from which
/// [`PciPath::from_devpath`] resumes for an event below it (events come in runs about one
/// function, and the walk down to it was most of an event's apply: callgrind). A memo, so
/// never an answer of its own: what it gives is what the walk from the start gives.
#[derive(Clone, Debug, Default)]
pub(super) struct Placed {
    devpath: String,
    path: Option<PciPath>,
}

impl Placed {
    /// [`PciPath::from_devpath`] of `devpath`.
    pub(super) fn locate(
        &mut self,
        devpath: &str,
    ) -> Result<Option<(PciPath, usize)>, DevpathError> {
        let below = |known: &str| {
            devpath.starts_with(known)
                && matches!(devpath.as_bytes().get(known.len()), None | Some(b'/'))
        };
        let known = self
            .path
            .filter(|_| below(&self.devpath))
            .map(|p| (p, self.devpath.len()));
        let located = PciPath::from_devpath_after(devpath, known)?;
        if let Some((path, end)) = located {
            if known.map(|(_, e)| e) != Some(end) {
                self.devpath.clear();
                self.devpath.push_str(&devpath[..end]);
                self.path = Some(path);
            }
        }
        Ok(located)
    }
}

fn pci_ids(ev: &UeventRef<'_>) -> Option<PciIds> {
    fn pair(s: &str) -> Option<(u16, u16)> {
        // Not `split_once(':')`: its searcher's set-up costs more than these nine bytes.
        let colon = s.bytes().position(|c| c == b':')?;
        Some((hex_u16(&s[..colon])?, hex_u16(&s[colon + 1..])?))
    }
    Some(PciIds {
        id: pair(ev.get(Key::PciId)?)?,
        subsys_id: pair(ev.get(Key::PciSubsysId)?)?,
        class: hex_u32(ev.get(Key::PciClass)?)?,
    })
}

/// `u16::from_str_radix(s, 16)`, with the kernel's spelling (`%04X`, four digits) read
/// directly: the generic parse took most of a PCI event's apply (callgrind).
fn hex_u16(s: &str) -> Option<u16> {
    hex::u16_exact(s.as_bytes()).or_else(|| u16::from_str_radix(s, 16).ok())
}

/// `u32::from_str_radix(s, 16)`, with one to eight plain digits (the kernel's `%X`) read
/// directly.
fn hex_u32(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    if (1..=8).contains(&b.len()) {
        let mut v = 0u32;
        for &c in b {
            match hex::digit(c) {
                Some(d) => v = v << 4 | u32::from(d),
                None => return u32::from_str_radix(s, 16).ok(),
            }
        }
        return Some(v);
    }
    u32::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::super::test_events::*;
    use crate::registry::{Change, Registry, Transport};
    use crate::uevent::Action;

    #[test]
    fn a_child_event_makes_its_function_present() {
        let mut r = Registry::new();
        let ch = r.apply(&vda("1")).unwrap();
        assert!(matches!(ch[0], Change::DeviceAdded { .. }));
        assert!(matches!(ch[1], Change::BlockAdded { .. }));
        assert_eq!(r.disk(&p("02/00")).unwrap().transport, Transport::Virtio);
        assert_eq!(r.get(&p("02/00")).unwrap().bdf.to_string(), "0000:01:00.0");
        assert_eq!(&*r.get(&p("02/00")).unwrap().devpath, FN);
    }

    #[test]
    fn duplicates_change_nothing() {
        let mut r = Registry::new();
        r.apply(&vda("1")).unwrap();
        assert!(r.apply(&vda("1")).unwrap().is_empty());
    }

    #[test]
    fn removing_a_bridge_removes_what_is_behind_it() {
        let mut r = Registry::new();
        let behind = "/devices/pci0000:00/0000:00:03.0/0000:02:00.0/0000:03:01.0";
        r.apply(&ev(
            Action::Add,
            "/devices/pci0000:00/0000:00:03.0/0000:02:00.0",
            "pci",
            &[],
        ))
        .unwrap();
        r.apply(&ev(Action::Add, behind, "pci", &[])).unwrap();
        r.apply(&ev(
            Action::Add,
            &format!("{behind}/virtio1/block/vdb"),
            "block",
            &[("DEVNAME", "vdb")],
        ))
        .unwrap();
        let ch = r
            .apply(&ev(
                Action::Remove,
                "/devices/pci0000:00/0000:00:03.0/0000:02:00.0",
                "pci",
                &[],
            ))
            .unwrap();
        assert!(r.is_empty());
        let kinds: Vec<String> = ch.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            kinds,
            [
                "03/00/01 remove block vdb",
                "03/00/01 remove pci 0000:03:01.0",
                "03/00 remove pci 0000:02:00.0"
            ]
        );
    }

    #[test]
    fn a_subtree_is_found_through_absent_bridges_and_other_functions() {
        let mut r = Registry::new();
        let pci = |dp: &str| ev(Action::Add, dp, "pci", &[]);
        let root = "/devices/pci0000:00/0000:00:03.0";
        // 03 and 03/00 never announced; what is behind them is.
        for dp in [
            format!("{root}/0000:02:00.0/0000:03:01.0"),
            format!("{root}/0000:02:00.0/0000:03:01.3"),
            format!("{root}/0000:02:00.0/0000:03:1f.7/0000:04:00.0"),
            format!("{root}/0000:02:00.1"),
            "/devices/pci0000:00/0000:00:04.0".to_owned(),
        ] {
            r.apply(&pci(&dp)).unwrap();
        }
        let ch = r.apply(&ev(Action::Remove, root, "pci", &[])).unwrap();
        let gone: Vec<String> = ch.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            gone,
            [
                "03/00.1 remove pci 0000:02:00.1",
                "03/00/1f.7/00 remove pci 0000:04:00.0",
                "03/00/01.3 remove pci 0000:03:01.3",
                "03/00/01 remove pci 0000:03:01.0",
            ]
        );
        assert_eq!(r.len(), 1);
        assert!(r.devices.behind.is_empty(), "{:?}", r.devices.behind);
        assert_eq!(
            r.devices().map(|d| d.path.to_string()).collect::<Vec<_>>(),
            ["04"]
        );
    }

    #[test]
    fn a_devpath_is_placed_as_from_the_start_whatever_was_placed_before() {
        use super::Placed;
        use crate::path::PciPath;
        let root = "/devices/pci0000:00/0000:00:03.0";
        let deep: String = (0..17).map(|i| format!("/0000:{i:02x}:01.0")).collect();
        let seq = [
            format!("{root}/0000:02:00.0/virtio0/block/vda"),
            format!("{root}/0000:02:00.0"),
            format!("{root}/0000:02:00.0/0000:03:01.0/virtio1"),
            format!("{root}/0000:02:00.0/0000:03:01.0"),
            format!("{root}/0000:02:00.01"),
            format!("{root}/0000:02:00.0/0001:03:01.0"),
            format!("{root}/0000:02:00.0"),
            format!("{root}/0000:02:00.0{deep}"),
            format!("{root}/0000:02:00.0/0000:03:01.0/x"),
            "/devices/pci0000:10/0000:10:00.0/0000:11:00.0/nvme/nvme0".to_owned(),
            "/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1".to_owned(),
            format!("{root}/0000:02:00.0/0000:03:01.0"),
            format!("{root}/0000:02:00.0/0000:03:01.0"),
            root.to_owned(),
            format!("{root}x/0000:02:00.0"),
        ];
        let mut placed = Placed::default();
        for dp in &seq {
            assert_eq!(placed.locate(dp), PciPath::from_devpath(dp), "{dp}");
        }
    }

    #[test]
    fn pci_ids_read_hex_as_from_str_radix_does() {
        use super::{hex_u16, hex_u32};
        for s in [
            "1AF4", "1af4", "0", "fff", "+1F", "", "12345", "g000", "-1", "ffff",
        ] {
            assert_eq!(hex_u16(s), u16::from_str_radix(s, 16).ok(), "{s:?}");
        }
        let long = [
            "10000",
            "60400",
            "0",
            "FFFFFFFF",
            "100000000",
            "+10",
            "",
            "1g",
            "000000001",
        ];
        for s in long {
            assert_eq!(hex_u32(s), u32::from_str_radix(s, 16).ok(), "{s:?}");
        }
    }

    #[test]
    fn lists_are_in_path_order_and_hold_no_spare_slots() {
        let mut r = Registry::new();
        for dp in ["0000:00:05.0", "0000:00:02.0", "0000:00:02.0/0000:01:00.0"] {
            r.apply(&ev(
                Action::Add,
                &format!("/devices/pci0000:00/{dp}"),
                "pci",
                &[],
            ))
            .unwrap();
        }
        r.apply(&vda("1")).unwrap();
        let order: Vec<String> = r.devices().map(|d| d.path.to_string()).collect();
        assert_eq!(order, ["02", "02/00", "05"]);
        let dev = r.get(&p("02/00")).unwrap();
        assert_eq!((dev.block.len(), dev.block.capacity()), (1, 1));
    }
}
