//! [`Change`]: what one apply did to the registry, the unit waiters are woken by.

use std::fmt;

use serde::Serialize;

use super::model::{BlockDevice, NetInterface, NvmeController};
use crate::path::{Bdf, PciPath};

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
    /// vfio announced a VFIO group, whose node is `/dev/vfio/<group>`. Tied to no path.
    VfioGroupAdded {
        /// The IOMMU group.
        group: u32,
    },
    /// vfio removed a VFIO group (its last function left `vfio-pci`). Tied to no path.
    VfioGroupRemoved {
        /// The IOMMU group.
        group: u32,
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
            Change::VfioGroupAdded { .. } | Change::VfioGroupRemoved { .. } => None,
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
            Change::VfioGroupAdded { group } => write!(f, "- add vfio-group {group}"),
            Change::VfioGroupRemoved { group } => write!(f, "- remove vfio-group {group}"),
        }
    }
}
