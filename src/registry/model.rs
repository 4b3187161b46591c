//! The public model: a PCI function and the block devices, interfaces and NVMe controllers below it.

use crate::path::{Bdf, PciPath};

/// A PCI function present in the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PciDevice {
    /// Its PCI path.
    pub path: PciPath,
    /// Where the guest kernel enumerated it.
    pub bdf: Bdf,
    /// Its kernel device path (`/devices/pci0000:00/0000:00:02.0/0000:01:00.0`).
    pub devpath: Box<str>,
    /// Vendor/device IDs and class, once an event carrying them was seen.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub ids: Option<PciIds>,
    /// The bound driver (`virtio-pci`, `nvme`); `None` while unbound or not yet known.
    pub driver: Option<Box<str>>,
    /// Block devices (disks and partitions) below it, sorted by name. NVMe multipath heads
    /// are not here: see [`Registry::block_devices`](super::Registry::block_devices).
    pub block: Vec<BlockDevice>,
    /// Network interfaces below it, sorted by name.
    pub net: Vec<NetInterface>,
    /// NVMe controllers below it.
    pub nvme: Vec<NvmeController>,
}

/// PCI identification, from the `PCI_ID`, `PCI_SUBSYS_ID` and `PCI_CLASS` fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PciIds {
    /// `VVVV:DDDD`, e.g. `1af4:1042`.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_id_pair"))]
    pub id: (u16, u16),
    /// Subsystem `VVVV:DDDD`.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_id_pair"))]
    pub subsys_id: (u16, u16),
    /// Class code, 24 bits (`0x010000` is SCSI storage).
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_class"))]
    pub class: u32,
}

#[cfg(feature = "serde")]
fn ser_id_pair<S: serde::Serializer>(v: &(u16, u16), s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{:04x}:{:04x}", v.0, v.1))
}

#[cfg(feature = "serde")]
fn ser_class<S: serde::Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{v:06x}"))
}

/// Whether a block device is a whole disk or a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum DevType {
    /// A whole disk (`vda`, `sda`, `nvme0n1`).
    Disk,
    /// A partition (`vdb1`).
    Partition,
}

/// How a block device hangs below its PCI function.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(tag = "transport", rename_all = "kebab-case"))]
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
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
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
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub partn: Option<u32>,
    /// For a partition, the disk it is on.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub disk: Option<Box<str>>,
    /// How it hangs below the PCI function.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub transport: Transport,
    /// For an NVMe disk, its namespace id. No uevent carries it: the live monitor reads
    /// `/sys/class/block/<name>/nsid` when it registers the disk, and a replay (no sysfs)
    /// leaves it unknown.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub nsid: Option<u32>,
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
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct NetInterface {
    /// Interface name (after any rename).
    pub name: Box<str>,
    /// Interface index.
    pub ifindex: Option<u32>,
    /// Its kernel device path.
    pub devpath: Box<str>,
}

/// An NVMe controller (the `nvmeN` character device).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct NvmeController {
    /// `nvme0`.
    pub name: Box<str>,
    /// The NVMe subsystem it belongs to (`nvme-subsys0`), once read from sysfs.
    pub subsystem: Option<Box<str>>,
}

/// A PCI function as reported by `list` and `replay --json`: the device with all its block
/// devices, NVMe multipath heads of linked subsystems included.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct DeviceView<'a> {
    /// Its PCI path.
    pub path: PciPath,
    /// Where the guest kernel enumerated it.
    pub bdf: Bdf,
    /// Its kernel device path.
    pub devpath: &'a str,
    /// Vendor/device IDs and class, when known.
    #[cfg_attr(feature = "serde", serde(flatten))]
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
