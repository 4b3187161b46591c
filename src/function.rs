//! [`PciFunction`]: the answer to a wait for a PCI function, and [`DriverState`], the driver
//! state the wait asks for (pure, but for the IOMMU group link, read when answering).

use std::fmt;
use std::io;
use std::path::Path;

use crate::error::{Error, Result};
use crate::path::{Bdf, PciPath};
use crate::registry::{PciDevice, PciIds};
use crate::wait::error::WaitError;

/// A PCI function present in the guest, as a wait for it answers
/// ([`Monitor::wait_function`](crate::Monitor::wait_function)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PciFunction {
    /// Its PCI path.
    pub path: PciPath,
    /// Where the guest kernel enumerated it (`0000:03:00.0`).
    pub bdf: Bdf,
    /// Its kernel device path (`/devices/pci0000:00/0000:00:04.0/0000:03:00.0`).
    pub devpath: Box<str>,
    /// Vendor:device (`id`), subsystem IDs and class, once an event carrying them was seen.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub ids: Option<PciIds>,
    /// The bound driver (`virtio-pci`, `vfio-pci`); `None` while unbound.
    pub driver: Option<Box<str>>,
    /// Its IOMMU group, read from the function's `iommu_group` link in sysfs when the wait
    /// answered; `None` where it has none (a guest without an IOMMU).
    pub iommu_group: Option<u32>,
}

impl PciFunction {
    /// The function of `dev`, with the IOMMU group read below `sysfs_root`.
    pub(crate) fn read(dev: &PciDevice, sysfs_root: &Path) -> Result<PciFunction, WaitError> {
        Ok(PciFunction {
            path: dev.path,
            bdf: dev.bdf,
            devpath: dev.devpath.clone(),
            ids: dev.ids,
            driver: dev.driver.clone(),
            iommu_group: iommu_group(sysfs_root, &dev.devpath).map_err(WaitError::from_edge)?,
        })
    }
}

/// The IOMMU group of the function at `devpath`: the name of the directory its `iommu_group`
/// link points to (`../../../kernel/iommu_groups/5`); `None` if there is no link.
pub(crate) fn iommu_group(sysfs_root: &Path, devpath: &str) -> Result<Option<u32>> {
    let link = sysfs_root
        .join(devpath.trim_start_matches('/'))
        .join("iommu_group");
    let target = match std::fs::read_link(&link) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", link.display()), e)),
    };
    let group = target
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse::<u32>().ok());
    match group {
        Some(g) => Ok(Some(g)),
        None => Err(Error::io(
            format!("reading {}", link.display()),
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not an IOMMU group", target.display()),
            ),
        )),
    }
}

/// The driver state a wait for a function asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DriverState {
    /// Present, bound or not. The default.
    #[default]
    Any,
    /// Bound to some driver.
    Bound,
    /// Bound to this driver (`vfio-pci`, `virtio-pci`: the name in `/sys/bus/pci/drivers`).
    Driver(Box<str>),
    /// Present with no driver bound.
    Unbound,
}

impl DriverState {
    /// Whether a function bound to `driver` (`None`: unbound) is in this state.
    pub fn matches(&self, driver: Option<&str>) -> bool {
        match self {
            DriverState::Any => true,
            DriverState::Bound => driver.is_some(),
            DriverState::Driver(want) => driver == Some(want),
            DriverState::Unbound => driver.is_none(),
        }
    }
}

impl fmt::Display for DriverState {
    /// What is awaited, after "PCI function": "", "bound to a driver", "bound to vfio-pci",
    /// "with no driver bound".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverState::Any => Ok(()),
            DriverState::Bound => f.write_str("bound to a driver"),
            DriverState::Driver(d) => write!(f, "bound to {d}"),
            DriverState::Unbound => f.write_str("with no driver bound"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fake_sysfs::FakeSysfs;

    #[test]
    fn driver_states_match_what_they_name() {
        let vfio = DriverState::Driver("vfio-pci".into());
        let cases = [
            (None, [true, false, false, true]),
            (Some("vfio-pci"), [true, true, true, false]),
            (Some("virtio-pci"), [true, true, false, false]),
        ];
        for (driver, want) in cases {
            let got = [
                DriverState::Any.matches(driver),
                DriverState::Bound.matches(driver),
                vfio.matches(driver),
                DriverState::Unbound.matches(driver),
            ];
            assert_eq!(got, want, "{driver:?}");
        }
    }

    #[test]
    fn the_iommu_group_is_the_name_of_the_linked_directory() {
        let fake = FakeSysfs::new();
        let dev = "devices/pci0000:00/0000:00:03.0/0000:02:00.0";
        let other = "devices/pci0000:00/0000:00:02.0/0000:01:00.0";
        fake.attr(dev, "vendor", "0x1234");
        fake.attr(other, "vendor", "0x1af4");
        fake.link(&format!("{dev}/iommu_group"), "kernel/iommu_groups/5");
        assert_eq!(
            iommu_group(fake.root(), &format!("/{dev}")).unwrap(),
            Some(5)
        );
        // No link: no IOMMU.
        assert_eq!(
            iommu_group(fake.root(), &format!("/{other}")).unwrap(),
            None
        );
        // A link to something that is not a group is an error, never a guess.
        fake.link(&format!("{other}/iommu_group"), "kernel/iommu_groups/five");
        let e = iommu_group(fake.root(), &format!("/{other}")).unwrap_err();
        assert!(e.to_string().contains("is not an IOMMU group"), "{e}");
    }
}
