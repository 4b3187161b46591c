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
//! - Applying an event twice changes nothing the second time.
//!
//! Memory is bounded by what is present: nothing is kept for ignored events or for children
//! the registry does not report.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::ops::{Deref, DerefMut, Index};
use std::sync::OnceLock;

use serde::Serialize;

use crate::path::{Bdf, DevpathError, Hop, MAX_HOPS, PciPath};
use crate::uevent::{Action, DatagramRef, Ignored, Key, Uevent, UeventError, UeventRef, find_byte};

/// A PCI function present in the guest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PciDevice {
    /// Its PCI path.
    pub path: PciPath,
    /// Where the guest kernel enumerated it.
    pub bdf: Bdf,
    /// Its kernel device path (`/devices/pci0000:00/0000:00:02.0/0000:01:00.0`).
    pub devpath: Box<str>,
    /// Vendor/device IDs and class, once an event carrying them was seen.
    #[serde(flatten)]
    pub ids: Option<PciIds>,
    /// The bound driver (`virtio-pci`, `nvme`); `None` while unbound or not yet known.
    pub driver: Option<Box<str>>,
    /// Block devices (disks and partitions) below it, sorted by name. NVMe multipath heads
    /// are not here: see [`Registry::block_devices`].
    pub block: Vec<BlockDevice>,
    /// Network interfaces below it, sorted by name.
    pub net: Vec<NetInterface>,
    /// NVMe controllers below it.
    pub nvme: Vec<NvmeController>,
}

/// PCI identification, from the `PCI_ID`, `PCI_SUBSYS_ID` and `PCI_CLASS` fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PciIds {
    /// `VVVV:DDDD`, e.g. `1af4:1042`.
    #[serde(serialize_with = "ser_id_pair")]
    pub id: (u16, u16),
    /// Subsystem `VVVV:DDDD`.
    #[serde(serialize_with = "ser_id_pair")]
    pub subsys_id: (u16, u16),
    /// Class code, 24 bits (`0x010000` is SCSI storage).
    #[serde(serialize_with = "ser_class")]
    pub class: u32,
}

fn ser_id_pair<S: serde::Serializer>(v: &(u16, u16), s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{:04x}:{:04x}", v.0, v.1))
}

fn ser_class<S: serde::Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{v:06x}"))
}

/// Whether a block device is a whole disk or a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DevType {
    /// A whole disk (`vda`, `sda`, `nvme0n1`).
    Disk,
    /// A partition (`vdb1`).
    Partition,
}

/// How a block device hangs below its PCI function.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "transport", rename_all = "kebab-case")]
pub enum Transport {
    /// virtio-blk: `.../virtioN/block/vda`.
    Virtio,
    /// A SCSI disk: `.../hostH/targetH:C:T/H:C:T:L/block/sda`.
    Scsi {
        /// `H:C:T:L`.
        address: Box<str>,
    },
    /// An NVMe namespace under its controller (multipath off): `.../nvme/nvme0/nvme0n1`.
    Nvme {
        /// The controller (`nvme0`).
        controller: Box<str>,
    },
    /// An NVMe multipath namespace head (`/devices/virtual/nvme-subsystem/nvme-subsys0/...`).
    NvmeMultipath {
        /// The subsystem (`nvme-subsys0`).
        subsystem: Box<str>,
    },
    /// Anything else below a PCI function.
    Other,
}

/// A block device: a disk or a partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlockDevice {
    /// Kernel name; the device node is `/dev/<name>`.
    pub name: Box<str>,
    /// Disk or partition.
    pub devtype: DevType,
    /// Major device number.
    pub major: Option<u32>,
    /// Minor device number.
    pub minor: Option<u32>,
    /// The kernel's disk sequence number (never reused; tells a new disk with an old name
    /// apart). Partitions carry their disk's.
    pub diskseq: Option<u64>,
    /// Partition number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partn: Option<u32>,
    /// For a partition, the disk it is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<Box<str>>,
    /// How it hangs below the PCI function.
    #[serde(flatten)]
    pub transport: Transport,
    /// Its kernel device path.
    pub devpath: Box<str>,
}

impl BlockDevice {
    /// `/dev/<name>`.
    pub fn devnode(&self) -> String {
        format!("/dev/{}", self.name)
    }
}

/// A network interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NetInterface {
    /// Interface name (after any rename).
    pub name: Box<str>,
    /// Interface index.
    pub ifindex: Option<u32>,
    /// Its kernel device path.
    pub devpath: Box<str>,
}

/// An NVMe controller (the `nvmeN` character device).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NvmeController {
    /// `nvme0`.
    pub name: Box<str>,
    /// The NVMe subsystem it belongs to (`nvme-subsys0`), once read from sysfs.
    pub subsystem: Option<Box<str>>,
}

/// A PCI function as reported by `list` and `replay --json`: the device with all its block
/// devices, NVMe multipath heads of linked subsystems included.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceView<'a> {
    /// Its PCI path.
    pub path: PciPath,
    /// Where the guest kernel enumerated it.
    pub bdf: Bdf,
    /// Its kernel device path.
    pub devpath: &'a str,
    /// Vendor/device IDs and class, when known.
    #[serde(flatten)]
    pub ids: Option<PciIds>,
    /// The bound driver, if any.
    pub driver: Option<&'a str>,
    /// Block devices: its own, then linked NVMe multipath heads.
    pub block: Vec<&'a BlockDevice>,
    /// Network interfaces.
    pub net: &'a [NetInterface],
    /// NVMe controllers.
    pub nvme: &'a [NvmeController],
}

/// What one apply changed. The live listener wakes waiters on [`Change::path`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Change {
    /// A PCI function appeared.
    DeviceAdded {
        /// Its path.
        path: PciPath,
        /// Its address.
        bdf: Bdf,
    },
    /// A PCI function went away, with everything below it.
    DeviceRemoved {
        /// Its path.
        path: PciPath,
        /// Its address.
        bdf: Bdf,
    },
    /// A driver was bound.
    DriverBound {
        /// The device's path.
        path: PciPath,
        /// The driver.
        driver: Box<str>,
    },
    /// The driver was unbound.
    DriverUnbound {
        /// The device's path.
        path: PciPath,
    },
    /// A block device appeared. `path` is `None` for an NVMe multipath head not yet tied to
    /// a controller.
    BlockAdded {
        /// The PCI path it belongs to, if known.
        path: Option<PciPath>,
        /// The device.
        block: BlockDevice,
    },
    /// A block device went away.
    BlockRemoved {
        /// The PCI path it belonged to, if known.
        path: Option<PciPath>,
        /// The device.
        block: BlockDevice,
    },
    /// A network interface appeared.
    NetAdded {
        /// The device's path.
        path: PciPath,
        /// The interface.
        net: NetInterface,
    },
    /// A network interface was renamed.
    NetRenamed {
        /// The device's path.
        path: PciPath,
        /// The old name.
        old: Box<str>,
        /// The interface, as it is now.
        net: NetInterface,
    },
    /// A network interface went away.
    NetRemoved {
        /// The device's path.
        path: PciPath,
        /// The interface.
        net: NetInterface,
    },
    /// An NVMe controller appeared.
    NvmeAdded {
        /// The device's path.
        path: PciPath,
        /// The controller.
        controller: NvmeController,
    },
    /// An NVMe controller went away.
    NvmeRemoved {
        /// The device's path.
        path: PciPath,
        /// The controller.
        controller: NvmeController,
    },
}

impl Change {
    /// The PCI path this change is about, if it is tied to one.
    pub fn path(&self) -> Option<PciPath> {
        match self {
            Change::DeviceAdded { path, .. }
            | Change::DeviceRemoved { path, .. }
            | Change::DriverBound { path, .. }
            | Change::DriverUnbound { path }
            | Change::NetAdded { path, .. }
            | Change::NetRenamed { path, .. }
            | Change::NetRemoved { path, .. }
            | Change::NvmeAdded { path, .. }
            | Change::NvmeRemoved { path, .. } => Some(*path),
            Change::BlockAdded { path, .. } | Change::BlockRemoved { path, .. } => *path,
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |p: &Option<PciPath>| match p {
            Some(p) => p.to_string(),
            None => "-".to_owned(),
        };
        match self {
            Change::DeviceAdded { path, bdf } => write!(f, "{path} add pci {bdf}"),
            Change::DeviceRemoved { path, bdf } => write!(f, "{path} remove pci {bdf}"),
            Change::DriverBound { path, driver } => write!(f, "{path} bind {driver}"),
            Change::DriverUnbound { path } => write!(f, "{path} unbind"),
            Change::BlockAdded { path, block } => write!(
                f,
                "{} add block {} {:?} diskseq {}",
                at(path),
                block.name,
                block.devtype,
                block.diskseq.map_or("-".into(), |d| d.to_string())
            ),
            Change::BlockRemoved { path, block } => {
                write!(f, "{} remove block {}", at(path), block.name)
            }
            Change::NetAdded { path, net } => write!(f, "{path} add net {}", net.name),
            Change::NetRenamed { path, old, net } => {
                write!(f, "{path} rename net {old} -> {}", net.name)
            }
            Change::NetRemoved { path, net } => write!(f, "{path} remove net {}", net.name),
            Change::NvmeAdded { path, controller } => {
                write!(f, "{path} add nvme {}", controller.name)
            }
            Change::NvmeRemoved { path, controller } => {
                write!(f, "{path} remove nvme {}", controller.name)
            }
        }
    }
}

/// What [`Registry::apply_datagram`] did with one datagram.
#[derive(Debug)]
pub enum Outcome {
    /// Applied; the changes (possibly none, for a duplicate).
    Applied(Vec<Change>),
    /// A well-formed event that cannot concern the registry.
    Ignored(Ignored),
    /// Not sent by the kernel (sender port id is not 0); not believed.
    Spoofed {
        /// The sender's port id.
        sender: u32,
    },
    /// Not a well-formed kernel uevent.
    Malformed(UeventError),
    /// A well-formed event whose devpath cannot be placed (too deep, domain changes).
    Unplaceable(DevpathError),
}

/// Counts of what the registry was fed, by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Datagrams handed to [`Registry::apply_datagram`].
    pub received: u64,
    /// Relevant events applied (whether or not they changed anything).
    pub applied: u64,
    /// Well-formed events that cannot concern the registry.
    pub ignored: u64,
    /// Events with an action this version does not know (also counted in `ignored`).
    pub unknown_action: u64,
    /// Datagrams that were not well-formed kernel uevents (libudev ones included).
    pub malformed: u64,
    /// The same, by kind of defect; they add up to `malformed`.
    pub malformed_kinds: MalformedKinds,
    /// Datagrams from a sender other than the kernel.
    pub spoofed: u64,
    /// Relevant events whose devpath could not be placed.
    pub unplaceable: u64,
}

/// Malformed datagrams by kind of defect, named as [`UeventError::kind`] names them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MalformedKinds {
    /// Zero bytes.
    pub empty: u64,
    /// Larger than the kernel can send.
    pub too_large: u64,
    /// udevd's libudev format, not the kernel's.
    pub libudev: u64,
    /// Not ending in NUL.
    pub no_nul_end: u64,
    /// No `ACTION@DEVPATH` header.
    pub bad_header: u64,
    /// Not UTF-8.
    pub not_utf8: u64,
    /// A field without `=`.
    pub bad_field: u64,
    /// A required key missing.
    pub missing_key: u64,
    /// `ACTION=` or `DEVPATH=` contradicting the header.
    pub header_mismatch: u64,
    /// A devpath with `.`, `..` or empty components.
    pub bad_devpath: u64,
    /// A value that is not a number or a safe device name.
    pub bad_value: u64,
}

impl MalformedKinds {
    fn count(&mut self, e: &UeventError) {
        // Exhaustive on purpose: a new kind of defect must get its own counter.
        let n = match e {
            UeventError::Empty => &mut self.empty,
            UeventError::TooLarge { .. } => &mut self.too_large,
            UeventError::Libudev { .. } => &mut self.libudev,
            UeventError::NoNulEnd { .. } => &mut self.no_nul_end,
            UeventError::BadHeader(_) => &mut self.bad_header,
            UeventError::NotUtf8 { .. } => &mut self.not_utf8,
            UeventError::BadField(_) => &mut self.bad_field,
            UeventError::Missing { .. } => &mut self.missing_key,
            UeventError::HeaderMismatch { .. } => &mut self.header_mismatch,
            UeventError::BadDevpath(_) => &mut self.bad_devpath,
            UeventError::BadValue { .. } => &mut self.bad_value,
        };
        *n += 1;
    }

    /// Each kind, as [`UeventError::kind`] names it, with its count.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("empty", self.empty),
            ("too-large", self.too_large),
            ("libudev", self.libudev),
            ("no-nul-end", self.no_nul_end),
            ("bad-header", self.bad_header),
            ("not-utf8", self.not_utf8),
            ("bad-field", self.bad_field),
            ("missing-key", self.missing_key),
            ("header-mismatch", self.header_mismatch),
            ("bad-devpath", self.bad_devpath),
            ("bad-value", self.bad_value),
        ]
        .into_iter()
    }
}

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
    stats: Stats,
}

/// The PCI functions present, found by path.
///
/// Hashed, so that finding a device costs the same in a registry of 64 or of 4,096 (a B-tree
/// lookup at 4,096 took 3.4 times as long as at 64: BENCHMARKS.md, bench 5). A set of boxed
/// devices keyed by their own `path`, not a map from path to device: a slot is then one
/// pointer, not 32 bytes, and a hash table keeps up to half its slots empty (at 4,096
/// devices, 8,192 slots). The set hands out no `&mut` (changing a key would break it), so
/// [`Devices::get_mut`] takes the device out and its guard puts it back.
#[derive(Clone, Debug, Default)]
struct Devices {
    set: HashSet<Slot, FastHash>,
    /// For every path a present device lies behind (its parent bridge's, that bridge's
    /// parent's...), how many present devices lie behind it; no entry for zero. What finds a
    /// bridge's subtree without keeping every path in order: a leaf's removal looks up one
    /// entry, a bridge's looks at the 256 functions behind it, level by level.
    behind: HashMap<PciPath, u32, FastHash>,
}

/// A device in [`Devices`], hashed and compared by its path.
#[derive(Clone, Debug)]
struct Slot(Box<PciDevice>);

impl Borrow<PciPath> for Slot {
    fn borrow(&self) -> &PciPath {
        &self.0.path
    }
}

impl PartialEq for Slot {
    fn eq(&self, other: &Slot) -> bool {
        self.0.path == other.0.path
    }
}

impl Eq for Slot {}

impl Hash for Slot {
    // As the path hashes, so that a lookup by path finds it.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.path.hash(state);
    }
}

impl Devices {
    fn get(&self, path: &PciPath) -> Option<&PciDevice> {
        self.set.get(path).map(|s| &*s.0)
    }

    fn get_mut(&mut self, path: &PciPath) -> Option<DeviceMut<'_>> {
        let slot = self.set.take(path)?;
        Some(DeviceMut {
            set: &mut self.set,
            slot: Some(slot),
        })
    }

    fn contains_key(&self, path: &PciPath) -> bool {
        self.set.contains(path)
    }

    /// Inserts `device`, replacing one at the same path.
    fn insert(&mut self, device: PciDevice) {
        let path = device.path;
        if self.set.replace(Slot(Box::new(device))).is_none() {
            let mut up = path.parent();
            while let Some(p) = up {
                *self.behind.entry(p).or_default() += 1;
                up = p.parent();
            }
        }
    }

    fn remove(&mut self, path: &PciPath) -> Option<PciDevice> {
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
    fn subtree(&self, top: &PciPath) -> Vec<PciPath> {
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
    fn sorted(&self) -> Vec<&PciDevice> {
        let mut all: Vec<&PciDevice> = self.set.iter().map(|s| &*s.0).collect();
        all.sort_unstable_by_key(|d| d.path);
        all
    }

    fn len(&self) -> usize {
        self.set.len()
    }

    fn is_empty(&self) -> bool {
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
struct DeviceMut<'a> {
    set: &'a mut HashSet<Slot, FastHash>,
    /// `Some` until dropped.
    slot: Option<Slot>,
}

impl Deref for DeviceMut<'_> {
    type Target = PciDevice;
    fn deref(&self) -> &PciDevice {
        match &self.slot {
            Some(s) => &s.0,
            None => unreachable!("taken only when dropped"),
        }
    }
}

impl DerefMut for DeviceMut<'_> {
    fn deref_mut(&mut self) -> &mut PciDevice {
        match &mut self.slot {
            Some(s) => &mut s.0,
            None => unreachable!("taken only when dropped"),
        }
    }
}

impl Drop for DeviceMut<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.set.insert(slot);
        }
    }
}

/// Builds the hasher of the registry's tables: FxHash's rotate-xor-multiply (as rustc's
/// `rustc-hash` 2 does it) over the written bytes packed eight at a time, from a seed drawn
/// once per process.
///
/// Why not std's SipHash: a [`PciPath`] hashes as 20 small writes (the root's two fields, the
/// hop array's length and its 16 slots, the hop count), and SipHash over those cost more than
/// the rest of a lookup on the listener's path (BENCHMARKS.md, bench 1). Packing the writes
/// makes it 4 multiplies instead of 20. Hash flooding needs an adversary who chooses the
/// keys; these come from the kernel (the socket believes only port 0) or from sysfs, and the
/// per-process seed keeps a crafted recording from colliding everywhere.
#[derive(Clone, Copy, Debug)]
struct FastHash {
    seed: u64,
}

impl Default for FastHash {
    fn default() -> Self {
        static SEED: OnceLock<u64> = OnceLock::new();
        FastHash {
            seed: *SEED
                .get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0u64)),
        }
    }
}

impl BuildHasher for FastHash {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher {
            hash: self.seed,
            pending: 0,
            filled: 0,
        }
    }
}

/// See [`FastHash`].
struct FxHasher {
    hash: u64,
    /// Bytes written and not yet mixed in, the first one lowest.
    pending: u64,
    /// How many bytes `pending` holds, 0 to 7.
    filled: u32,
}

impl FxHasher {
    fn mix(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(0xf135_7aea_2e62_a9c5);
    }

    /// Mixes in the pending bytes, if any, with their count.
    fn flush(&mut self) {
        if self.filled > 0 {
            self.mix(self.pending ^ (u64::from(self.filled) << 59));
            (self.pending, self.filled) = (0, 0);
        }
    }

    /// Mixes in a whole word, after what is pending.
    fn word(&mut self, n: u64) {
        self.flush();
        self.mix(n);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u8(b);
        }
    }
    // A path's 16 hop slots come one byte at a time: collected eight to a word, so that the
    // multiply runs once per word.
    fn write_u8(&mut self, n: u8) {
        // The first byte lowest: a multiply carries low bits up through the whole word, and
        // high ones only off its top.
        self.pending |= u64::from(n) << (8 * self.filled);
        self.filled += 1;
        if self.filled == 8 {
            self.mix(self.pending);
            (self.pending, self.filled) = (0, 0);
        }
    }
    fn write_u16(&mut self, n: u16) {
        self.word(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.word(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.word(n);
    }
    fn write_usize(&mut self, n: usize) {
        self.word(n as u64);
    }
    fn finish(&self) -> u64 {
        let mut h = FxHasher { ..*self };
        h.flush();
        // The multiply leaves its best bits at the top; tables index with the bottom ones.
        h.hash.rotate_left(26)
    }
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

    /// Checks a datagram's sender, validates and parses it, and applies it if relevant.
    ///
    /// `sender` is the netlink port id the datagram came from; only 0 (the kernel) is
    /// believed. Counts the outcome in [`Registry::stats`]. Never panics; on any error the
    /// registry is unchanged.
    pub fn apply_datagram(&mut self, sender: u32, datagram: &[u8]) -> Outcome {
        self.stats.received += 1;
        if sender != 0 {
            self.stats.spoofed += 1;
            return Outcome::Spoofed { sender };
        }
        match DatagramRef::parse(datagram) {
            Err(e) => {
                self.stats.malformed += 1;
                self.stats.malformed_kinds.count(&e);
                Outcome::Malformed(e)
            }
            Ok(DatagramRef::Ignored(why)) => {
                self.stats.ignored += 1;
                if why == Ignored::UnknownAction {
                    self.stats.unknown_action += 1;
                }
                Outcome::Ignored(why)
            }
            Ok(DatagramRef::Relevant(ev)) => match self.apply_ref(&ev) {
                Ok(changes) => Outcome::Applied(changes),
                Err(e) => Outcome::Unplaceable(e),
            },
        }
    }

    /// Applies one parsed event and returns what changed (nothing for a duplicate).
    ///
    /// On error (a devpath that cannot be placed) the registry is unchanged.
    pub fn apply(&mut self, ev: &Uevent) -> Result<Vec<Change>, DevpathError> {
        self.apply_ref(&ev.view())
    }

    /// [`Registry::apply`] of an event borrowed from its datagram.
    fn apply_ref(&mut self, ev: &UeventRef<'_>) -> Result<Vec<Change>, DevpathError> {
        let located = match PciPath::from_devpath(ev.devpath()) {
            Ok(l) => l,
            Err(e) => {
                self.stats.unplaceable += 1;
                return Err(e);
            }
        };
        self.stats.applied += 1;
        let mut changes = Vec::new();
        match (ev.subsystem(), located) {
            ("pci", Some((path, end))) if end == ev.devpath().len() => {
                self.apply_pci(ev, path, &mut changes)
            }
            ("block", Some((path, end))) => self.apply_block(ev, path, end, &mut changes),
            ("block", None) => self.apply_nvme_head(ev, &mut changes),
            ("net", Some((path, end))) => self.apply_net(ev, path, end, &mut changes),
            ("nvme", Some((path, end))) => self.apply_nvme_controller(ev, path, end, &mut changes),
            _ => {}
        }
        Ok(changes)
    }

    /// Counts of what [`Registry::apply_datagram`] was fed.
    pub fn stats(&self) -> Stats {
        self.stats
    }

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

    /// The first whole disk at `path` (by name), the answer to "which disk is at 02/00".
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

    /// Names of NVMe subsystems that have heads, with the PCI paths linked to them.
    pub fn nvme_subsystems(&self) -> impl Iterator<Item = (&str, &[PciPath])> {
        self.nvme_subsystems
            .iter()
            .map(|(k, v)| (k.as_ref(), v.controllers.as_slice()))
    }

    /// Records that NVMe controller `controller` (below the function at `path`) belongs to
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

    /// Replaces the whole state with `truth` (a fresh scan of sysfs), keeping the counters,
    /// and returns the changes that take the old state to it: what a resync after lost
    /// events tells waiters and watchers.
    pub fn reconcile(&mut self, truth: Registry) -> Vec<Change> {
        let changes = diff(self, &truth);
        let stats = self.stats;
        *self = truth;
        self.stats = stats;
        changes
    }

    /// A one-line account of what is at `path`, for error messages:
    /// "PCI device 0000:01:01.0 present at 02/01, driver virtio-pci bound, no block child".
    pub fn describe(&self, path: &PciPath) -> String {
        let Some(dev) = self.devices.get(path) else {
            return match self.nearest_present_ancestor(path) {
                Some(a) => format!(
                    "no PCI device at {path} (bridge {} at {a} is present)",
                    self.devices[&a].bdf
                ),
                None => format!("no PCI device at {path}"),
            };
        };
        let driver = match &dev.driver {
            Some(d) => format!("driver {d} bound"),
            None => "no driver bound".to_owned(),
        };
        let mut children = Vec::new();
        let blocks = self.block_devices(path);
        if blocks.is_empty() {
            children.push("no block child".to_owned());
        } else {
            let names: Vec<&str> = blocks.iter().map(|b| &*b.name).collect();
            children.push(format!("block {}", names.join(" ")));
        }
        if !dev.net.is_empty() {
            let names: Vec<&str> = dev.net.iter().map(|n| &*n.name).collect();
            children.push(format!("net {}", names.join(" ")));
        }
        for c in &dev.nvme {
            match &c.subsystem {
                Some(s) => children.push(format!("nvme controller {} in {s}", c.name)),
                None => children.push(format!(
                    "nvme controller {} (subsystem not yet known)",
                    c.name
                )),
            }
        }
        format!(
            "PCI device {} present at {path}, {driver}, {}",
            dev.bdf,
            children.join(", ")
        )
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

    // ---- PCI functions -------------------------------------------------------------------

    fn apply_pci(&mut self, ev: &UeventRef<'_>, path: PciPath, changes: &mut Vec<Change>) {
        match ev.action() {
            Action::Remove => self.remove_subtree(&path, changes),
            Action::Unbind => {
                if let Some(mut dev) = self.devices.get_mut(&path) {
                    if dev.driver.take().is_some() {
                        changes.push(Change::DriverUnbound { path });
                    }
                }
                // The children were created by the driver's probe and cannot outlive it.
                self.clear_children(&path, changes);
            }
            Action::Add | Action::Change | Action::Bind | Action::Move | Action::Online => {
                self.ensure_device(path, ev.devpath(), changes); // `apply` checked it ends here
                let Some(mut dev) = self.devices.get_mut(&path) else {
                    return; // not placeable as a function; ensure_device logged nothing to add
                };
                if let Some(ids) = pci_ids(ev) {
                    dev.ids = Some(ids);
                }
                if let Some(driver) = ev.get(Key::Driver) {
                    if dev.driver.as_deref() != Some(driver) {
                        dev.driver = Some(driver.into());
                        changes.push(Change::DriverBound {
                            path,
                            driver: driver.into(),
                        });
                    }
                }
            }
            Action::Offline => {}
        }
    }

    /// Makes the function at `path` present, replacing a different function that held the
    /// path (a lost `remove`, after which the bus numbers moved).
    ///
    /// `devpath` is the function's own devpath: the prefix of the event's devpath that
    /// [`PciPath::from_devpath`] placed at `path`.
    fn ensure_device(&mut self, path: PciPath, devpath: &str, changes: &mut Vec<Change>) {
        if let Some(dev) = self.devices.get(&path) {
            if *dev.devpath == *devpath {
                return;
            }
            self.remove_subtree(&path, changes);
        }
        let Some(bdf) = devpath
            .rsplit('/')
            .next()
            .and_then(|c| c.parse::<Bdf>().ok())
        else {
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
    fn remove_subtree(&mut self, path: &PciPath, changes: &mut Vec<Change>) {
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

    fn clear_children(&mut self, path: &PciPath, changes: &mut Vec<Change>) {
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

    // ---- block devices below a PCI function ---------------------------------------------

    fn apply_block(
        &mut self,
        ev: &UeventRef<'_>,
        path: PciPath,
        end: usize,
        changes: &mut Vec<Change>,
    ) {
        let name = block_name(ev);
        if is_hidden_nvme_path(name) {
            return; // the per-path disk behind a multipath head: never reported
        }
        match ev.action() {
            Action::Remove => self.remove_block(path, name, ev.get_u64(Key::Diskseq), changes),
            Action::Add | Action::Change | Action::Move | Action::Online | Action::Bind => {
                if ev.action() == Action::Move {
                    if let Some(old) = ev.get(Key::DevpathOld) {
                        let old_name = old.rsplit('/').next().unwrap_or(old);
                        if old_name != name {
                            self.remove_block(path, old_name, None, changes);
                        }
                    }
                }
                let transport = transport(&ev.devpath()[end..]);
                let block = block_device(ev, name, transport);
                self.ensure_device(path, &ev.devpath()[..end], changes);
                self.insert_block(Owner::Pci(path), block, changes);
            }
            Action::Unbind | Action::Offline => {}
        }
    }

    /// Inserts or updates a block device held by `owner`, replacing a stale holder of the
    /// same name (a lost `remove`) and an older disk of the same name (a different DISKSEQ).
    fn insert_block(&mut self, owner: Owner, block: BlockDevice, changes: &mut Vec<Change>) {
        if let Some(&held) = self.names.get(&block.name) {
            if held != owner {
                self.remove_name(held, &block.name.clone(), changes);
            }
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
        let mut removed = Vec::new();
        match list.binary_search_by(|b| b.name.cmp(&block.name)) {
            Ok(i) if list[i] == block => return, // a duplicate
            Ok(i) if same_disk(&list[i], &block) => {
                // Same disk, new facts (e.g. a `change` after a resize): update quietly.
                list[i] = block;
                return;
            }
            Ok(i) => {
                // A new disk under a reused name: the old one and its partitions are gone.
                let old = list.remove(i);
                if old.devtype == DevType::Disk {
                    let name = old.name.clone();
                    list.retain(|b| {
                        let stale = b.disk.as_deref() == Some(&*name) && b.diskseq != block.diskseq;
                        if stale {
                            removed.push(b.clone());
                        }
                        !stale
                    });
                }
                removed.insert(0, old);
                let at = list.partition_point(|b| b.name < block.name);
                insert_exact(list, at, block.clone());
            }
            Err(at) => insert_exact(list, at, block.clone()),
        }
        drop(device);
        let paths = self.paths_of(owner, &block);
        for old in removed.into_iter().rev() {
            if old.name != block.name {
                self.names.remove(&old.name);
            }
            for p in &paths {
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

    fn remove_block(
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
        let Some(gone) = take_block(&mut dev.block, i, diskseq) else {
            return;
        };
        // Partitions before their disk.
        for block in gone.into_iter().rev() {
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

    fn apply_nvme_head(&mut self, ev: &UeventRef<'_>, changes: &mut Vec<Change>) {
        let Some(subsystem) = nvme_head_subsystem(ev.devpath()) else {
            return;
        };
        let name = block_name(ev);
        match ev.action() {
            Action::Remove => self.remove_head(name, ev.get_u64(Key::Diskseq), changes),
            Action::Add | Action::Change | Action::Move | Action::Online | Action::Bind => {
                let transport = Transport::NvmeMultipath {
                    subsystem: subsystem.into(),
                };
                let block = block_device(ev, name, transport);
                self.insert_block(Owner::NvmeSubsystem, block, changes);
            }
            Action::Unbind | Action::Offline => {}
        }
    }

    fn remove_head(&mut self, name: &str, diskseq: Option<u64>, changes: &mut Vec<Change>) {
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
        let Some(gone) = take_block(&mut sub.heads, i, diskseq) else {
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
        for block in gone.into_iter().rev() {
            self.names.remove(&block.name);
            for p in &paths {
                changes.push(Change::BlockRemoved {
                    path: *p,
                    block: block.clone(),
                });
            }
        }
    }

    fn unlink_subsystem(&mut self, subsystem: &str, path: PciPath, changes: &mut Vec<Change>) {
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

    // ---- network interfaces --------------------------------------------------------------

    fn apply_net(
        &mut self,
        ev: &UeventRef<'_>,
        path: PciPath,
        end: usize,
        changes: &mut Vec<Change>,
    ) {
        // Only the interface itself: `.../net/eth0`, not its `queues/rx-0` (another subsystem).
        if !is_net_interface(&ev.devpath()[end..]) {
            return;
        }
        let name = ev.get(Key::Interface).unwrap_or_else(|| ev.sysname());
        match ev.action() {
            Action::Remove => self.remove_net(path, name, changes),
            Action::Add | Action::Change | Action::Move | Action::Online | Action::Bind => {
                let net = NetInterface {
                    name: name.into(),
                    ifindex: ev.get_u64(Key::Ifindex).and_then(|i| u32::try_from(i).ok()),
                    devpath: ev.devpath().into(),
                };
                self.ensure_device(path, &ev.devpath()[..end], changes);
                let old_name = match ev.action() {
                    Action::Move => ev
                        .get(Key::DevpathOld)
                        .map(|o| o.rsplit('/').next().unwrap_or(o))
                        .filter(|o| *o != name),
                    _ => None,
                };
                self.insert_net(path, net, old_name, changes);
            }
            Action::Unbind | Action::Offline => {}
        }
    }

    fn insert_net(
        &mut self,
        path: PciPath,
        net: NetInterface,
        old_name: Option<&str>,
        changes: &mut Vec<Change>,
    ) {
        if let Some(&held) = self.net_names.get(&net.name) {
            if held != path {
                self.remove_net(held, &net.name.clone(), changes);
            }
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
        let Some(name) = rest.strip_prefix("/nvme/").filter(|n| !n.contains('/')) else {
            return;
        };
        match ev.action() {
            Action::Remove => {
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
            Action::Add | Action::Change | Action::Move | Action::Online | Action::Bind => {
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
            Action::Unbind | Action::Offline => {}
        }
    }
}

/// The changes that take `old` to `new`, device by device, in path order: removals of what
/// is gone (children first), then additions of what is new.
fn diff(old: &Registry, new: &Registry) -> Vec<Change> {
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

/// Removes `list[i]` and, for a disk, its partitions, unless the removal names a `diskseq`
/// other than the one held (the late remove of an older disk of that name). Returns what was
/// removed, the disk first.
fn take_block(
    list: &mut Vec<BlockDevice>,
    i: usize,
    diskseq: Option<u64>,
) -> Option<Vec<BlockDevice>> {
    if let (Some(held), Some(gone)) = (list[i].diskseq, diskseq) {
        if held != gone {
            return None;
        }
    }
    let block = list.remove(i);
    let name = block.name.clone();
    let is_disk = block.devtype == DevType::Disk;
    let mut gone = vec![block];
    if is_disk {
        list.retain(|b| {
            let part = b.disk.as_deref() == Some(&*name);
            if part {
                gone.push(b.clone());
            }
            !part
        });
    }
    Some(gone)
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

fn pci_ids(ev: &UeventRef<'_>) -> Option<PciIds> {
    fn pair(s: &str) -> Option<(u16, u16)> {
        let (a, b) = s.split_once(':')?;
        Some((
            u16::from_str_radix(a, 16).ok()?,
            u16::from_str_radix(b, 16).ok()?,
        ))
    }
    Some(PciIds {
        id: pair(ev.get(Key::PciId)?)?,
        subsys_id: pair(ev.get(Key::PciSubsysId)?)?,
        class: u32::from_str_radix(ev.get(Key::PciClass)?, 16).ok()?,
    })
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
        DevType::Partition => {
            let mut comps = ev.devpath().rsplit('/');
            comps.next();
            comps.next().map(Box::from)
        }
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
        devpath: ev.devpath().into(),
    }
}

/// How a block device's devpath continues below its PCI function.
fn transport(rest: &str) -> Transport {
    let comps = || components(rest);
    let mut after_nvme = comps();
    if after_nvme.any(|c| c == "nvme") {
        if let Some(ctrl) = after_nvme.next() {
            return Transport::Nvme {
                controller: ctrl.into(),
            };
        }
    }
    if let Some(addr) = comps()
        .find(|c| c.split(':').count() == 4 && c.split(':').all(|n| n.parse::<u32>().is_ok()))
    {
        return Transport::Scsi {
            address: addr.into(),
        };
    }
    if comps().next().is_some_and(|c| {
        c.strip_prefix("virtio")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }) {
        return Transport::Virtio;
    }
    Transport::Other
}

/// The non-empty components of `path`, from slash to slash (as `split('/')` without the
/// empty ones, at a third of its cost on these short strings).
fn components(path: &str) -> impl Iterator<Item = &str> {
    let mut at = 0;
    std::iter::from_fn(move || {
        while at <= path.len() {
            let end = find_byte(path.as_bytes(), at, b'/');
            let c = &path[at..end];
            at = end + 1;
            if !c.is_empty() {
                return Some(c);
            }
        }
        None
    })
}

/// `nvme<subsys>c<ctrl>n<ns>`: the hidden per-path disk behind a multipath head.
fn is_hidden_nvme_path(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("nvme") else {
        return false;
    };
    let digits = |s: &str| -> usize { s.bytes().take_while(u8::is_ascii_digit).count() };
    let n = digits(rest);
    if n == 0 {
        return false;
    }
    let Some(rest) = rest[n..].strip_prefix('c') else {
        return false;
    };
    let n = digits(rest);
    n > 0 && rest[n..].starts_with('n')
}

/// `/devices/virtual/nvme-subsystem/nvme-subsysN/...` gives `nvme-subsysN`.
fn nvme_head_subsystem(devpath: &str) -> Option<&str> {
    let rest = devpath.strip_prefix("/devices/virtual/nvme-subsystem/")?;
    let (sub, below) = rest.split_once('/')?;
    (!below.is_empty()).then_some(sub)
}

/// `.../net/<name>` with nothing after the name.
fn is_net_interface(rest: &str) -> bool {
    let mut comps = rest.rsplit('/');
    let _name = comps.next();
    comps.next() == Some("net")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn ev(action: Action, devpath: &str, subsystem: &str, kv: &[(&str, &str)]) -> Uevent {
        let env: HashMap<String, String> = kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Uevent::from_parts(action, devpath, subsystem, Some(1), env).unwrap()
    }

    const FN: &str = "/devices/pci0000:00/0000:00:02.0/0000:01:00.0";

    fn p(s: &str) -> PciPath {
        s.parse().unwrap()
    }

    fn vda(seq: &str) -> Uevent {
        ev(
            Action::Add,
            &format!("{FN}/virtio0/block/vda"),
            "block",
            &[
                ("DEVNAME", "vda"),
                ("DEVTYPE", "disk"),
                ("DISKSEQ", seq),
                ("MAJOR", "254"),
                ("MINOR", "0"),
            ],
        )
    }

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
    fn hidden_nvme_path_disks_are_recognised() {
        assert!(is_hidden_nvme_path("nvme0c0n1"));
        assert!(is_hidden_nvme_path("nvme12c3n45"));
        assert!(!is_hidden_nvme_path("nvme0n1"));
        assert!(!is_hidden_nvme_path("nvme0n1p1"));
        assert!(!is_hidden_nvme_path("nvmec0n1"));
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

    #[test]
    fn the_fast_hash_spreads_paths_over_the_low_bits_tables_index_with() {
        let build = FastHash::default();
        let mut paths = Vec::new();
        for a in 0..32u8 {
            for b in 0..32u8 {
                for f in [0u8, 3] {
                    let hops = [Hop::new(a, 0).unwrap(), Hop::new(b, f).unwrap()];
                    paths.push(PciPath::new(Default::default(), &hops).unwrap());
                }
            }
        }
        // 2,048 paths into 4,096 buckets: a good hash leaves about 1,600 buckets used.
        let mut used = std::collections::HashSet::new();
        for p in &paths {
            used.insert(build.hash_one(p) & 4095);
        }
        assert!(used.len() > 1400, "{} buckets used", used.len());
        assert_eq!(build.hash_one(paths[7]), build.hash_one(paths[7]));
        assert_ne!(build.hash_one("vda"), build.hash_one("vdb"));
    }
}
