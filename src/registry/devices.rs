//! [`Devices`]: the table of PCI functions present, found by path, and what lies behind each bridge.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::ops::{Deref, DerefMut, Index};

use super::hash::FastHash;
use super::model::PciDevice;
use crate::path::{Hop, MAX_HOPS, PciPath};

/// The PCI functions present, found by path.
///
/// Hashed, so that finding a device costs the same in a registry of 64 or of 4,096 (a B-tree
/// lookup at 4,096 took 3.4 times as long as at 64: BENCHMARKS.md, bench 5). A set of boxed
/// devices keyed by their own `path`, not a map from path to device: a slot is then one
/// pointer, not 32 bytes, and a hash table keeps up to half its slots empty (at 4,096
/// devices, 8,192 slots). The set hands out no `&mut` (changing a key would break it), so
/// [`Devices::get_mut`] takes the device out and its guard puts it back.
#[derive(Clone, Debug, Default)]
pub(super) struct Devices {
    set: HashSet<Entry, FastHash>,
    /// For every path a present device lies behind (its parent bridge's, that bridge's
    /// parent's...), how many present devices lie behind it; no entry for zero. What finds a
    /// bridge's subtree without keeping every path in order: a leaf's removal looks up one
    /// entry, a bridge's looks at the 256 functions behind it, level by level.
    pub(super) behind: HashMap<PciPath, u32, FastHash>,
}

/// A device in [`Devices`], hashed and compared by its path.
#[derive(Clone, Debug)]
struct Entry(Box<PciDevice>);

impl Borrow<PciPath> for Entry {
    fn borrow(&self) -> &PciPath {
        &self.0.path
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.0.path == other.0.path
    }
}

impl Eq for Entry {}

impl Hash for Entry {
    // As the path hashes, so that a lookup by path finds it.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.path.hash(state);
    }
}

impl Devices {
    pub(super) fn get(&self, path: &PciPath) -> Option<&PciDevice> {
        self.set.get(path).map(|s| &*s.0)
    }

    pub(super) fn get_mut(&mut self, path: &PciPath) -> Option<DeviceMut<'_>> {
        let entry = self.set.take(path)?;
        Some(DeviceMut {
            set: &mut self.set,
            entry: Some(entry),
        })
    }

    pub(super) fn contains_key(&self, path: &PciPath) -> bool {
        self.set.contains(path)
    }

    /// Inserts `device`, replacing one at the same path.
    pub(super) fn insert(&mut self, device: PciDevice) {
        let path = device.path;
        if self.set.replace(Entry(Box::new(device))).is_none() {
            let mut up = path.parent();
            while let Some(p) = up {
                *self.behind.entry(p).or_default() += 1;
                up = p.parent();
            }
        }
    }

    pub(super) fn remove(&mut self, path: &PciPath) -> Option<PciDevice> {
        let device = self.set.take(path)?;
        let mut up = path.parent();
        while let Some(p) = up {
            if let Some(n) = self.behind.get_mut(&p) {
                *n -= 1;
                if *n == 0 {
                    self.behind.remove(&p);
                }
            }
            up = p.parent();
        }
        Some(*device.0)
    }

    /// The paths present at `top` and behind it, in path order.
    pub(super) fn subtree(&self, top: &PciPath) -> Vec<PciPath> {
        let mut out = Vec::new();
        if self.contains_key(top) {
            out.push(*top);
        }
        let mut pending = vec![*top];
        while let Some(bridge) = pending.pop() {
            let Some(&behind) = self.behind.get(&bridge) else {
                continue;
            };
            if bridge.len() == MAX_HOPS {
                continue;
            }
            let mut hops = [Hop::default(); MAX_HOPS];
            hops[..bridge.len()].copy_from_slice(bridge.hops());
            // Every slot and function behind the bridge, until all `behind` are found.
            let mut found = 0;
            'hops: for slot in 0..=0x1f {
                for function in 0..8 {
                    let Some(hop) = Hop::new(slot, function) else {
                        continue;
                    };
                    hops[bridge.len()] = hop;
                    let Some(child) = PciPath::new(bridge.root(), &hops[..=bridge.len()]) else {
                        continue;
                    };
                    let present = self.contains_key(&child);
                    let deeper = self.behind.get(&child).copied().unwrap_or(0);
                    if present {
                        out.push(child);
                    }
                    if deeper > 0 {
                        pending.push(child);
                    }
                    found += u32::from(present) + deeper;
                    if found >= behind {
                        break 'hops;
                    }
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// Every device, in path order.
    pub(super) fn sorted(&self) -> Vec<&PciDevice> {
        let mut all: Vec<&PciDevice> = self.set.iter().map(|s| &*s.0).collect();
        all.sort_unstable_by_key(|d| d.path);
        all
    }

    pub(super) fn len(&self) -> usize {
        self.set.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

impl Index<&PciPath> for Devices {
    type Output = PciDevice;
    /// Panics if no device is at `path`, as a map's indexing does.
    fn index(&self, path: &PciPath) -> &PciDevice {
        match self.get(path) {
            Some(d) => d,
            None => panic!("no device at {path}"),
        }
    }
}

/// A device taken out of [`Devices`] to be changed; put back when dropped. Its path must not
/// change.
pub(super) struct DeviceMut<'a> {
    set: &'a mut HashSet<Entry, FastHash>,
    /// `Some` until dropped.
    entry: Option<Entry>,
}

impl Deref for DeviceMut<'_> {
    type Target = PciDevice;
    fn deref(&self) -> &PciDevice {
        match &self.entry {
            Some(s) => &s.0,
            None => unreachable!("taken only when dropped"),
        }
    }
}

impl DerefMut for DeviceMut<'_> {
    fn deref_mut(&mut self) -> &mut PciDevice {
        match &mut self.entry {
            Some(s) => &mut s.0,
            None => unreachable!("taken only when dropped"),
        }
    }
}

impl Drop for DeviceMut<'_> {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            self.set.insert(entry);
        }
    }
}
