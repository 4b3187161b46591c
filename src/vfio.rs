//! Handing a PCI function to `vfio-pci` ([`Monitor::vfio`]): the IOMMU group check, the
//! rebinding of every function of the group, and the wait for `/dev/vfio/<group>`.
//!
//! VFIO gives a container a whole IOMMU group, never one function of it: the kernel lets the
//! group be opened only once every function in it is bound to `vfio-pci` (or to no driver).
//! So the function's group is read from its `iommu_group` link, every function listed in
//! `<sysfs>/kernel/iommu_groups/<group>/devices/` is checked (an endpoint, not a bridge,
//! whose hand-over would cut off what is behind it), and each one not yet on `vfio-pci` gets
//! `driver_override` = `vfio-pci`, is unbound from its driver and probed again
//! (`drivers_probe`), which binds it to `vfio-pci` alone. vfio then creates the group's
//! device: devtmpfs makes its node `/dev/vfio/<group>`, and the kernel announces it with a
//! uevent on `/devices/virtual/vfio/<group>`. That uevent is awaited (the registry keeps the
//! groups announced; a group already there was found by the coldplug scan), then the node is
//! confirmed under the dev root.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result, humanize};
use crate::function::DriverState;
use crate::monitor::{Monitor, deadline_after};
use crate::path::{Bdf, PciPath};
use crate::sysfs_write;
use crate::wait::deadline::Deadline;
use crate::wait::error::WaitError;

/// The driver VFIO passthrough binds.
pub(crate) const VFIO_PCI: &str = "vfio-pci";

/// How long the group's node may take to show once its uevent came. devtmpfs creates it
/// before the kernel sends the uevent, so the first look finds it; a `/dev` that something
/// else fills (a copy made by a container runtime or by udev) may lag by a moment, hence a
/// few more looks, [`NODE_LOOK`] apart, within this bound (and the deadline).
const NODE_GRACE: Duration = Duration::from_millis(100);

/// The interval between the looks for the node within [`NODE_GRACE`].
const NODE_LOOK: Duration = Duration::from_millis(10);

/// An IOMMU group handed to `vfio-pci`: what [`Monitor::vfio`] answers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct VfioGroup {
    /// The IOMMU group number.
    pub group: u32,
    /// Its device node, `/dev/vfio/<group>`, to give to the container.
    pub devnode: PathBuf,
    /// Every function of the group, all now bound to `vfio-pci`, in BDF order.
    pub functions: Vec<Bdf>,
}

/// A member of an IOMMU group that keeps the group from being handed to `vfio-pci`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocker {
    /// Its name in the group's `devices/` directory (a BDF for a PCI function).
    pub name: String,
    /// Why: "a bridge, class 060400", "not a PCI function".
    pub why: String,
}

/// Why a function could not be handed to `vfio-pci`. Refused writes are
/// [`Error::SysfsWrite`]s and the wait for the function's [`Error::Wait`]s, as elsewhere.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VfioError {
    /// The function has no `iommu_group` link: the guest has no IOMMU (QEMU's `intel-iommu`
    /// device and the guest's `intel_iommu=on` are both needed on q35).
    #[error("PCI function {bdf} at {path} has no IOMMU group (no iommu_group link in sysfs)")]
    NoIommuGroup {
        /// The PCI path asked for.
        path: PciPath,
        /// The function there.
        bdf: Bdf,
    },
    /// The group is not viable for VFIO: it holds functions that may not be handed over;
    /// nothing was written.
    #[error(
        "IOMMU group {group} of {bdf} holds functions that cannot be handed to vfio-pci: {}",
        list(others)
    )]
    NotViable {
        /// The IOMMU group.
        group: u32,
        /// The function asked for.
        bdf: Bdf,
        /// The others, each with why.
        others: Vec<Blocker>,
    },
    /// No `vfio-pci` driver is registered (`<sysfs>/bus/pci/drivers/vfio-pci` is missing:
    /// the module is not loaded or not built); nothing was written.
    #[error("vfio-pci is not available: no {} (load the vfio-pci module)", dir.display())]
    VfioPciUnavailable {
        /// The directory looked for.
        dir: PathBuf,
    },
    /// vfio did not announce the group (its uevent) by the deadline, or its node was not
    /// under the dev root once it did; `seen` says which, and names each function's driver.
    #[error("no {} for IOMMU group {group} within {}: {seen}", node.display(), humanize(*waited))]
    NoNode {
        /// The IOMMU group.
        group: u32,
        /// The node waited for.
        node: PathBuf,
        /// How long it was waited for.
        waited: Duration,
        /// The group's functions and their drivers when the deadline passed.
        seen: String,
    },
}

fn list(others: &[Blocker]) -> String {
    let items: Vec<String> = others
        .iter()
        .map(|o| format!("{} ({})", o.name, o.why))
        .collect();
    items.join(", ")
}

impl Monitor {
    /// Hands the PCI function at `path`, and every other function of its IOMMU group, to
    /// `vfio-pci`, and returns the group with its node `/dev/vfio/<group>`. Waits up to
    /// `timeout` for the function to be present, then for vfio's uevent announcing the group,
    /// and confirms that the node is there.
    ///
    /// Idempotent: a group already on `vfio-pci` answers at once, with nothing written.
    ///
    /// # Errors
    ///
    /// [`VfioError`] (no IOMMU group, a group with a bridge or other function that may not be
    /// handed over, `vfio-pci` not available, no node by the deadline), [`Error::SysfsWrite`]
    /// (a write refused: the file and the OS error), [`Error::Wait`] with
    /// [`WaitError::Timeout`] (no function at `path`) or [`WaitError::ListenerStopped`] (the
    /// listener stopped before the function, or the group, came) or [`WaitError::Io`] (its
    /// IOMMU group link unreadable).
    pub fn vfio(&self, path: &PciPath, timeout: Duration) -> Result<VfioGroup> {
        self.vfio_deadline(path, deadline_after(timeout))
    }

    /// Like [`vfio`](Self::vfio), until `deadline` (`None`: for ever).
    ///
    /// # Errors
    ///
    /// As [`vfio`](Self::vfio).
    pub fn vfio_deadline(
        &self,
        path: &PciPath,
        deadline: impl Into<Option<Instant>>,
    ) -> Result<VfioGroup> {
        let start = Instant::now();
        let deadline = Deadline {
            asked: start,
            at: deadline.into(),
        };
        let function = self.function_until(path, &DriverState::Any, deadline)?;
        let bdf = function.bdf;
        let group = function
            .iommu_group
            .ok_or(VfioError::NoIommuGroup { path: *path, bdf })?;
        let root = self.sysfs_root();
        let (members, others) = group_members(root, group)?;
        if !members.iter().any(|m| m.bdf == bdf)
            && !others.iter().any(|o| o.name == bdf.to_string())
        {
            // Its own group does not list it: sysfs changed under us (a remove); never hand
            // over a group without the function asked for.
            let dir = root.join(format!("kernel/iommu_groups/{group}/devices"));
            let e = io::Error::new(io::ErrorKind::NotFound, format!("{bdf} is not listed"));
            return Err(Error::io(format!("reading {}", dir.display()), e));
        }
        if !others.is_empty() {
            return Err(VfioError::NotViable { group, bdf, others }.into());
        }
        let pending: Vec<&Member> = members
            .iter()
            .filter(|m| m.driver.as_deref() != Some(VFIO_PCI))
            .collect();
        if !pending.is_empty() {
            let dir = root.join("bus/pci/drivers").join(VFIO_PCI);
            if !dir.is_dir() {
                return Err(VfioError::VfioPciUnavailable { dir }.into());
            }
        }
        for m in pending {
            sysfs_write::driver_override(root, m.bdf, VFIO_PCI)?;
            if m.driver.is_some() {
                sysfs_write::unbind(root, m.bdf)?;
            }
            sysfs_write::drivers_probe(root, m.bdf)?;
        }
        let node = self.dev_root().join("vfio").join(group.to_string());
        let no_node = |waited, announced: bool| -> Result<VfioGroup> {
            let (now, _) = group_members(root, group)?;
            let mut seen: Vec<String> = now
                .iter()
                .map(|m| match &m.driver {
                    Some(d) => format!("{} bound to {d}", m.bdf),
                    None => format!("{} unbound", m.bdf),
                })
                .collect();
            if announced {
                seen.insert(0, "the group's uevent came, but not the node".into());
            }
            let seen = seen.join(", ");
            Err(VfioError::NoNode {
                group,
                node: node.clone(),
                waited,
                seen,
            }
            .into())
        };
        match self.wait_vfio_group(group, deadline) {
            Ok(()) => {}
            Err(None) => return no_node(deadline.given(), false),
            Err(Some(stopped)) => return Err(WaitError::from(stopped).into()),
        }
        if !node_shows(&node, deadline.at) {
            return no_node(start.elapsed(), true);
        }
        Ok(VfioGroup {
            group,
            devnode: node,
            functions: members.iter().map(|m| m.bdf).collect(),
        })
    }
}

/// Whether `node` is there, looking again [`NODE_LOOK`] apart within [`NODE_GRACE`] (and
/// until `deadline`) if it is not yet.
fn node_shows(node: &Path, deadline: Option<Instant>) -> bool {
    let grace = Instant::now().checked_add(NODE_GRACE);
    let until = match (grace, deadline) {
        (Some(g), Some(d)) => g.min(d),
        (g, d) => g.or(d).unwrap_or_else(Instant::now),
    };
    loop {
        if node.exists() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        thread::sleep(NODE_LOOK);
    }
}

/// A function of an IOMMU group that may be handed over, as sysfs shows it.
#[derive(Debug)]
struct Member {
    bdf: Bdf,
    driver: Option<String>,
}

/// The functions of IOMMU group `group` that may be handed to `vfio-pci`, in BDF order, and
/// the others (bridges, anything that is not a PCI function), by name.
fn group_members(root: &Path, group: u32) -> Result<(Vec<Member>, Vec<Blocker>)> {
    let dir = root.join(format!("kernel/iommu_groups/{group}/devices"));
    let reading = |what: &Path, e| Error::io(format!("reading {}", what.display()), e);
    let (mut members, mut others) = (Vec::new(), Vec::new());
    for entry in fs::read_dir(&dir).map_err(|e| reading(&dir, e))? {
        let name = entry.map_err(|e| reading(&dir, e))?.file_name();
        let name = name.to_string_lossy().into_owned();
        let Ok(bdf) = name.parse::<Bdf>() else {
            others.push(Blocker {
                name,
                why: "not a PCI function".into(),
            });
            continue;
        };
        let dev = root.join("bus/pci/devices").join(&name);
        let class_file = dev.join("class");
        let class = fs::read_to_string(&class_file).map_err(|e| reading(&class_file, e))?;
        let class = parse_class(&class).ok_or_else(|| {
            let e = io::Error::new(io::ErrorKind::InvalidData, format!("{class:?}"));
            reading(&class_file, e)
        })?;
        let driver_link = dev.join("driver");
        let driver = match fs::read_link(&driver_link) {
            Ok(t) => t.file_name().map(|n| n.to_string_lossy().into_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(reading(&driver_link, e)),
        };
        // Base class 06 is a bridge (host, ISA, PCI-to-PCI, ...): it carries other devices'
        // traffic and is never handed to a guest's user space.
        if class >> 16 == 0x06 {
            others.push(Blocker {
                name,
                why: format!("a bridge, class {class:06x}"),
            });
        } else {
            members.push(Member { bdf, driver });
        }
    }
    members.sort_by_key(|m| m.bdf);
    others.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((members, others))
}

/// A `class` attribute: `0x060400` and a newline.
fn parse_class(text: &str) -> Option<u32> {
    let hex = text.trim().strip_prefix("0x")?;
    (hex.len() == 6)
        .then(|| u32::from_str_radix(hex, 16).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_attributes_are_six_hex_digits() {
        assert_eq!(parse_class("0x060400\n"), Some(0x060400));
        assert_eq!(parse_class("0x00ff00"), Some(0x00ff00));
        for bad in ["060400", "0x6040", "0xzz0400", ""] {
            assert_eq!(parse_class(bad), None, "{bad}");
        }
    }
}
