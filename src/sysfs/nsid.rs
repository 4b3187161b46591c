//! NVMe namespace ids: no uevent carries one, so the live monitor reads each NVMe disk's
//! `class/block/<name>/nsid` when it registers the disk (coldplug, a live `add`, a resync).

use std::io;

use super::{Attr, Sysfs, attr};
use crate::error::{Error, Result};
use crate::path::PciPath;
use crate::registry::Registry;
use crate::uevent::is_safe_device_name;

impl Sysfs {
    /// The namespace id of NVMe disk `name` (`nvme0n2`, a multipath head or a disk under its
    /// controller), from `<root>/class/block/<name>/nsid`; `None` if the disk has no such
    /// attribute (not NVMe) or is gone.
    pub fn nsid(&self, name: &str) -> Result<Option<u32>> {
        let file = self.root.join("class/block").join(name).join("nsid");
        let bad = |why: &str| {
            Error::io(
                format!("reading {}", file.display()),
                io::Error::new(io::ErrorKind::InvalidData, why.to_owned()),
            )
        };
        if !is_safe_device_name(name) {
            return Err(bad("not a block device name"));
        }
        match attr(&file)? {
            Attr::Value(v) => match v.trim().parse::<u32>() {
                Ok(n) if n != 0 => Ok(Some(n)),
                _ => Err(bad(&format!("{:?} is not a namespace id", v.trim()))),
            },
            Attr::Absent | Attr::Skip => Ok(None),
        }
    }

    /// Reads the namespace id of every NVMe disk of `registry` whose id is not known, and
    /// records it; returns the PCI paths whose disks gained one. A disk whose id cannot be
    /// read is logged and left unknown (a wait by `nsid` then does not find it).
    pub fn read_nsids(&self, registry: &mut Registry) -> Vec<PciPath> {
        let mut paths = Vec::new();
        for (name, diskseq) in registry.nvme_disks_without_nsid() {
            if let Some(nsid) = self.nsid_or_log(&name) {
                paths.extend(registry.set_nsid(&name, diskseq, nsid));
            }
        }
        paths
    }

    /// [`Sysfs::nsid`], with a failure logged instead of returned.
    pub(crate) fn nsid_or_log(&self, name: &str) -> Option<u32> {
        match self.nsid(name) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("namespace id of {name}: {e}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::registry::Registry;
    use crate::sysfs::Sysfs;
    use crate::testing::fake_sysfs::{self, SUBSYS};
    use crate::{DiskAddress, Nsid, Unit};

    #[test]
    fn namespace_ids_are_read_for_nvme_disks_only() {
        let t = fake_sysfs::q35();
        let sysfs = Sysfs::new(t.root());
        let mut r = Registry::new();
        sysfs.scan().unwrap().apply_to(&mut r);
        assert_eq!(sysfs.nsid("nvme0n1").unwrap(), Some(1));
        assert_eq!(sysfs.nsid("vda").unwrap(), None, "not NVMe: no nsid file");
        assert!(sysfs.nsid("../vda").is_err());
        let at = DiskAddress::with_unit(
            Some("06/00".parse().unwrap()),
            Unit::Nsid(Nsid::new(1).unwrap()),
        );
        assert_eq!(r.find_disk(&at), Ok(None), "a scan alone does not know it");
        assert_eq!(sysfs.read_nsids(&mut r), vec!["06/00".parse().unwrap()]);
        assert_eq!(&*r.find_disk(&at).unwrap().unwrap().name, "nvme0n1");
        assert!(sysfs.read_nsids(&mut r).is_empty(), "read once");
        // A file that is not a number is an error naming it.
        t.attr(&format!("{SUBSYS}/nvme0n1"), "nsid", "x\n");
        let e = sysfs.nsid("nvme0n1").unwrap_err().to_string();
        assert!(
            e.contains("class/block/nvme0n1/nsid") && e.contains("\"x\""),
            "{e}"
        );
    }
}
