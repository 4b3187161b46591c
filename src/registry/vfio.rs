//! VFIO groups: the IOMMU groups whose node `/dev/vfio/<group>` vfio has announced.
//!
//! vfio creates a group's device (`/devices/virtual/vfio/<group>`, subsystem `vfio`) when the
//! first function of the group binds to `vfio-pci`, and removes it when the last one lets go.
//! Its uevent names no PCI function, so the set is kept apart from the functions, and its
//! changes are tied to no path.

use std::collections::BTreeSet;

use super::{Change, Registry};
use crate::devpath;
use crate::uevent::{Effect, UeventRef};

impl Registry {
    /// Applies a `vfio` event at `/devices/virtual/vfio/<group>`; any other devpath changes
    /// nothing.
    pub(super) fn apply_vfio_group(&mut self, ev: &UeventRef<'_>, changes: &mut Vec<Change>) {
        let Some(group) = devpath::vfio_group(ev.devpath().as_bytes()) else {
            return;
        };
        match ev.action().effect() {
            Effect::Present => {
                if self.vfio_groups.insert(group) {
                    changes.push(Change::VfioGroupAdded { group });
                }
            }
            Effect::Gone => {
                if self.vfio_groups.remove(&group) {
                    changes.push(Change::VfioGroupRemoved { group });
                }
            }
            Effect::Unbound | Effect::Nothing => {}
        }
    }

    /// True once vfio has announced IOMMU group `group` (its node `/dev/vfio/<group>`), until
    /// it announces its removal.
    pub fn has_vfio_group(&self, group: u32) -> bool {
        self.vfio_groups.contains(&group)
    }

    /// The VFIO groups announced and not removed, in order.
    pub fn vfio_groups(&self) -> impl Iterator<Item = u32> + '_ {
        self.vfio_groups.iter().copied()
    }
}

/// The changes that take the groups `old` to `new`: removals, then additions.
pub(super) fn diff(old: &BTreeSet<u32>, new: &BTreeSet<u32>, changes: &mut Vec<Change>) {
    let gone = old
        .difference(new)
        .map(|&group| Change::VfioGroupRemoved { group });
    changes.extend(gone);
    let came = new
        .difference(old)
        .map(|&group| Change::VfioGroupAdded { group });
    changes.extend(came);
}

#[cfg(test)]
mod tests {
    use super::super::test_events::ev;
    use crate::registry::{Change, Registry};
    use crate::uevent::Action;

    fn group(action: Action, n: u32) -> crate::Uevent {
        let devname = format!("vfio/{n}");
        let kv = [
            ("MAJOR", "244"),
            ("MINOR", "0"),
            ("DEVNAME", devname.as_str()),
        ];
        ev(action, &format!("/devices/virtual/vfio/{n}"), "vfio", &kv)
    }

    #[test]
    fn groups_come_and_go_with_their_events_each_change_once() {
        let mut r = Registry::new();
        assert_eq!(
            r.apply(&group(Action::Add, 4)).unwrap(),
            [Change::VfioGroupAdded { group: 4 }]
        );
        assert!(r.apply(&group(Action::Add, 4)).unwrap().is_empty());
        assert!(r.apply(&group(Action::Change, 4)).unwrap().is_empty());
        r.apply(&group(Action::Add, 5)).unwrap();
        assert!(r.has_vfio_group(4) && r.has_vfio_group(5) && !r.has_vfio_group(6));
        let ch = r.apply(&group(Action::Remove, 4)).unwrap();
        assert_eq!(ch, [Change::VfioGroupRemoved { group: 4 }]);
        assert_eq!(ch[0].path(), None);
        assert_eq!(ch[0].to_string(), "- remove vfio-group 4");
        assert!(r.apply(&group(Action::Remove, 4)).unwrap().is_empty());
        assert_eq!(r.vfio_groups().collect::<Vec<_>>(), [5]);
        // Not a PCI function: the function table stays empty.
        assert!(r.is_empty());
    }

    #[test]
    fn a_resync_reports_the_groups_that_changed() {
        let (mut old, mut new) = (Registry::new(), Registry::new());
        for n in [3, 4] {
            old.apply(&group(Action::Add, n)).unwrap();
        }
        for n in [4, 5] {
            new.apply(&group(Action::Add, n)).unwrap();
        }
        let ch = old.reconcile(new);
        assert_eq!(
            ch,
            [
                Change::VfioGroupRemoved { group: 3 },
                Change::VfioGroupAdded { group: 5 }
            ]
        );
        assert_eq!(old.vfio_groups().collect::<Vec<_>>(), [4, 5]);
    }
}
