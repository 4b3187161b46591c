//! [`Registry`]: every PCI function present, keyed by [`PciPath`], with its children.
//!
//! The registry is pure: it applies [`Uevent`]s (from the kernel, a recording, or a sysfs scan)
//! and answers questions, and does no I/O. Every apply returns the [`Change`]s it made, so the
//! live listener can wake exactly the waiters whose path changed.
//!
//! What it relies on, from real kernels (see `fixtures/real-hotplug/README.md`):
//! - Event order differs per driver (virtio-blk announces its disk before the PCI `bind`,
//!   virtio-scsi and NVMe after), so any event about a PCI function or something below it
//!   makes that function present, and no event depends on another having come first.
//! - The path of a child is the path of the last PCI function in its devpath; the `virtioN`,
//!   `hostN/target.../H:C:T:L` and `nvme/nvmeN` nodes in between are skipped.
//! - Names are reused (`vda` after a remove and an add); `DISKSEQ` is not, so a disk whose
//!   `DISKSEQ` differs from the one held replaces it, and a kernel name is held by one child
//!   at a time across the registry.
//! - A PCI `remove` (or driver `unbind`) removes everything below the function even if the
//!   children's own `remove` events were lost; removing a bridge removes what is behind it.
//! - NVMe multipath heads live under `/devices/virtual/nvme-subsystem/` and cannot be tied to
//!   a controller from uevents alone: they are kept per subsystem, and attributed to a PCI
//!   path only once something that read sysfs calls [`Registry::link_nvme_controller`].
//! - VFIO groups (`/devices/virtual/vfio/<group>`) name no PCI function: the set of groups
//!   announced is kept apart, and its changes are tied to no path.
//! - Applying an event twice changes nothing the second time.
//!
//! Memory is bounded by what is present: nothing is kept for ignored events or for children
//! the registry does not report.
//!
//! One noun per file: `model` (the public types), `change` ([`Change`]), `intake` (what the
//! registry is fed and the counters: [`Outcome`], [`Stats`]), `devices` (the table of
//! functions), `hash` (its hasher), `apply` (PCI functions, interfaces, NVMe controllers),
//! `block` (disks, partitions, NVMe heads), `query` (the answers), `disks` (which disk an
//! address names, ambiguity, NVMe namespace ids), `vfio` (VFIO groups), `diff` (reconcile).

mod apply;
mod block;
mod change;
mod devices;
mod diff;
mod disks;
pub(crate) mod hash;
mod intake;
mod model;
mod query;
#[cfg(test)]
mod test_events;
mod vfio;

use std::collections::{BTreeMap, BTreeSet, HashMap};

#[cfg(doc)]
use crate::uevent::Uevent;

pub use change::Change;
pub(crate) use disks::needs_nsid;
pub use intake::{MalformedKinds, Outcome, Stats};
pub use model::{
    BlockDevice, DevType, DeviceView, NetInterface, NvmeController, PciDevice, PciIds, Transport,
};

use crate::path::PciPath;
use devices::Devices;
use hash::FastHash;

/// NVMe multipath namespace heads of one subsystem, and the PCI paths of its controllers.
#[derive(Clone, Debug, Default)]
struct NvmeSubsystem {
    /// Heads (disks and partitions), sorted by name.
    heads: Vec<BlockDevice>,
    /// PCI paths of controllers known (from sysfs) to belong to this subsystem.
    controllers: Vec<PciPath>,
}

/// Who holds a kernel device name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    Pci(PciPath),
    NvmeSubsystem,
}

/// The registry of PCI functions present, by PCI path.
///
/// ```
/// use pciplug::{Registry, PciPath};
/// let mut reg = Registry::new();
/// let add = b"add@/devices/pci0000:00/0000:00:02.0/0000:01:00.0/virtio0/block/vda\0\
///     ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:02.0/0000:01:00.0/virtio0/block/vda\0\
///     SUBSYSTEM=block\0MAJOR=254\0MINOR=0\0DEVNAME=vda\0DEVTYPE=disk\0DISKSEQ=1\0SEQNUM=872\0";
/// reg.apply_datagram(0, add);
/// let path: PciPath = "02/00".parse().unwrap();
/// assert_eq!(reg.disk(&path).unwrap().name.as_ref(), "vda");
/// ```
#[derive(Clone, Debug, Default)]
pub struct Registry {
    devices: Devices,
    /// Keyed by subsystem name (`nvme-subsys0`). Invariant: an entry exists only while it has
    /// heads or controllers.
    nvme_subsystems: BTreeMap<Box<str>, NvmeSubsystem>,
    /// Block device names to their holder. Invariant: exactly the block names held in
    /// `devices` and `nvme_subsystems`, each once (the kernel never gives one name to two
    /// block devices).
    names: HashMap<Box<str>, Owner, FastHash>,
    /// Interface names to the function holding them: a namespace of their own, since an
    /// interface may be renamed to anything, `vda` included. Invariant: exactly the net names
    /// held in `devices`, each once.
    net_names: HashMap<Box<str>, PciPath, FastHash>,
    /// The IOMMU groups vfio announced (`/devices/virtual/vfio/<group>`) and did not remove.
    vfio_groups: BTreeSet<u32>,
    stats: Stats,
    /// Where the last event was placed: a memo of the devpath walk, see [`apply::Placed`].
    placed: apply::Placed,
}

/// Inserts `item` at `at`, growing the list by one slot only when it is full.
///
/// A device has one child or a few; `Vec`'s own growth reserves four slots at the first push,
/// which for a disk (a 128-byte `BlockDevice`) is 384 bytes never used.
fn insert_exact<T>(list: &mut Vec<T>, at: usize, item: T) {
    if list.len() == list.capacity() {
        list.reserve_exact(1);
    }
    list.insert(at, item);
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Replaces the whole state with `truth` (a fresh scan of sysfs), keeping the counters
    /// (adding the scan's coldplug events), and returns the changes that take the old state to
    /// it: what a resync after lost events tells waiters and watchers.
    pub fn reconcile(&mut self, truth: Registry) -> Vec<Change> {
        let changes = diff::diff(self, &truth);
        let mut stats = self.stats;
        stats.coldplug += truth.stats.coldplug;
        *self = truth;
        self.stats = stats;
        changes
    }
}
