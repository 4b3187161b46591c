//! [`NvmeLink`]: which PCI function an NVMe subsystem's controller is below, what ties a
//! multipath head to a PCI path. No uevent carries it; sysfs does.

use std::fs;
use std::io;
use std::path::Path;

use super::{Sysfs, is_gone, resolve};
use crate::devpath;
use crate::error::{Error, Result};
use crate::path::PciPath;
use crate::registry::{Change, Registry};
use crate::uevent::is_safe_device_name;

/// An NVMe controller below a PCI function, and the subsystem it belongs to.
///
/// Read from `<root>/class/nvme-subsystem/<subsystem>/<controller>`, a link to the
/// controller (`../../../pci0000:00/0000:00:06.0/0000:07:00.0/nvme/nvme0`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NvmeLink {
    /// The PCI path of the function the controller is below.
    pub path: PciPath,
    /// The controller (`nvme0`).
    pub controller: String,
    /// The subsystem (`nvme-subsys0`).
    pub subsystem: String,
}

impl NvmeLink {
    /// Tells `registry` about the link (see [`Registry::link_nvme_controller`]); returns the
    /// multipath heads that now count under [`NvmeLink::path`].
    pub fn apply_to(&self, registry: &mut Registry) -> Vec<Change> {
        registry.link_nvme_controller(&self.path, &self.controller, &self.subsystem)
    }
}

impl Sysfs {
    /// The controllers of NVMe subsystem `subsystem` (`nvme-subsys0`) that are below a PCI
    /// function, by controller name.
    ///
    /// For the live listener, when a multipath head appears under
    /// `/devices/virtual/nvme-subsystem/<subsystem>/`: by then the kernel has linked the
    /// subsystem to its controller. A subsystem that does not exist (any more) has none.
    pub fn nvme_links_of(&self, subsystem: &str) -> Result<Vec<NvmeLink>> {
        let dir = self.root.join("class/nvme-subsystem").join(subsystem);
        if !is_safe_device_name(subsystem) {
            return Err(Error::io(
                format!("reading {}", dir.display()),
                io::Error::new(io::ErrorKind::InvalidInput, "not a subsystem name"),
            ));
        }
        let root = self.canonical_root()?;
        let mut links = subsystem_links(&root, &dir)?;
        links.sort();
        Ok(links)
    }
}

/// The links to controllers below a PCI function in one subsystem directory (given as the
/// `class/nvme-subsystem/<name>` entry). A subsystem that went away has none.
pub(super) fn subsystem_links(root: &Path, class_entry: &Path) -> Result<Vec<NvmeLink>> {
    let Some(subsystem) = class_entry.file_name().and_then(|n| n.to_str()) else {
        return Ok(vec![]);
    };
    let Some((dir, _)) = resolve(root, class_entry)? else {
        return Ok(vec![]);
    };
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if is_gone(&e) => return Ok(vec![]),
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
    };
    let mut links = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        let name = entry.file_name();
        let Some(controller) = name
            .to_str()
            .filter(|n| devpath::is_nvme_controller_name(n))
        else {
            continue;
        };
        // The controller is a link; a directory of that name would be something else.
        match entry.file_type() {
            Ok(t) if t.is_symlink() => {}
            Ok(_) => continue,
            Err(e) if is_gone(&e) => continue,
            Err(e) => {
                return Err(Error::io(format!("reading {}", entry.path().display()), e));
            }
        }
        let Some((_, devpath)) = resolve(root, &entry.path())? else {
            continue;
        };
        match PciPath::from_devpath(&devpath) {
            Ok(Some((path, _))) => links.push(NvmeLink {
                path,
                controller: controller.to_owned(),
                subsystem: subsystem.to_owned(),
            }),
            // A fabrics controller (`/devices/virtual/nvme-fabrics/ctl/nvme1`): no PCI path.
            Ok(None) => {}
            Err(e) => tracing::debug!("{}: not placeable, skipped: {e}", entry.path().display()),
        }
    }
    Ok(links)
}
