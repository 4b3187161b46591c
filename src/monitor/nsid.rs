//! Namespace ids of the NVMe disks the listener registers. No uevent carries one: after an
//! `add` of an NVMe disk, the listener reads its `nsid` from sysfs outside the state lock,
//! records it, and wakes the waiters of the paths the disk counts under.

use super::thread::Listener;
use crate::registry::{BlockDevice, Change, needs_nsid};
use crate::wait::Wakeups;

/// The NVMe disks `changes` added without a namespace id, as `(name, diskseq)`.
pub(super) fn added_without_nsid(changes: &[Change]) -> Vec<(Box<str>, Option<u64>)> {
    let mut out: Vec<(Box<str>, Option<u64>)> = Vec::new();
    for c in changes {
        if let Change::BlockAdded { block, .. } = c {
            let BlockDevice {
                name,
                diskseq,
                nsid,
                ..
            } = block;
            if nsid.is_none() && needs_nsid(block) && !out.iter().any(|(n, _)| n == name) {
                out.push((name.clone(), *diskseq));
            }
        }
    }
    out
}

impl Listener {
    /// Reads the namespace id of each disk (outside the lock), records those read, and wakes
    /// the waiters of their paths once the lock is released.
    pub(super) fn read_nsids(&self, disks: Vec<(Box<str>, Option<u64>)>) {
        let read: Vec<_> = disks
            .into_iter()
            .filter_map(|(name, seq)| self.sysfs.nsid_or_log(&name).map(|id| (name, seq, id)))
            .collect();
        if read.is_empty() {
            return;
        }
        let mut st = self.shared.state.lock();
        let mut paths = Vec::new();
        for (name, seq, id) in &read {
            paths.extend(st.registry.set_nsid(name, *seq, *id));
        }
        let mut wakeups = Wakeups::default();
        for p in &paths {
            wakeups.add(&st.waiters, p);
        }
        drop(st);
        wakeups.wake();
    }
}
