//! Which disk a [`DiskAddress`] names: the whole disks of a function, the query that reports
//! ambiguity instead of picking one, and the NVMe namespace ids that only sysfs knows.

use super::model::{BlockDevice, DevType, Transport};
use super::{Owner, Registry};
use crate::address::{AmbiguousDisk, Candidate, DiskAddress, Unit};
use crate::path::PciPath;

impl BlockDevice {
    /// Whether this disk has `unit`: for [`Unit::Scsi`] its SCSI address is `H:0:T:L` (any
    /// host number `H`), for [`Unit::Nsid`] its namespace id is known and equal.
    pub fn has_unit(&self, unit: &Unit) -> bool {
        match unit {
            Unit::Scsi(u) => self
                .scsi_address()
                .is_some_and(|[_, c, t, l]| c == 0 && t == u64::from(u.target) && l == u.lun),
            Unit::Nsid(n) => self.nsid == Some(n.get()),
        }
    }

    /// Its SCSI address `[H, C, T, L]`, for a SCSI disk.
    pub fn scsi_address(&self) -> Option<[u64; 4]> {
        let Transport::Scsi { address } = &self.transport else {
            return None;
        };
        let mut parts = address.split(':').map(|p| p.parse::<u64>().ok());
        let mut out = [0; 4];
        for slot in &mut out {
            *slot = parts.next()??;
        }
        parts.next().is_none().then_some(out)
    }

    /// How an error lists it: `0:0:0:1` (SCSI), `nsid 2` (NVMe, when known), or nothing.
    fn unit_label(&self) -> Option<String> {
        match (&self.transport, self.nsid) {
            (Transport::Scsi { address }, _) => Some(address.to_string()),
            (_, Some(n)) => Some(format!("nsid {n}")),
            _ => None,
        }
    }
}

impl Registry {
    /// The whole disks of the function at `path`, by name: its own and the NVMe multipath
    /// heads linked to it; never a partition, never a hidden NVMe path disk.
    pub fn disks(&self, path: &PciPath) -> Vec<&BlockDevice> {
        let mut disks: Vec<&BlockDevice> = self
            .block_devices(path)
            .into_iter()
            .filter(|b| b.devtype == DevType::Disk)
            .collect();
        disks.sort_by(|a, b| a.name.cmp(&b.name));
        disks
    }

    /// The one whole disk `address` names, if it is present; an error listing every candidate
    /// when it fits several, never one of them picked.
    ///
    /// - a path alone: the function's only disk; several disks are ambiguous;
    /// - a path and a unit: the disk with that unit at the path;
    /// - a unit alone: the disk with that unit, if exactly one disk in the guest has it (one
    ///   NVMe head reached through two paths is one disk); several are ambiguous.
    pub fn find_disk(&self, address: &DiskAddress) -> Result<Option<&BlockDevice>, AmbiguousDisk> {
        let fits = |b: &&BlockDevice| address.unit().is_none_or(|u| b.has_unit(u));
        let found: Vec<(PciPath, &BlockDevice)> = match address.path() {
            Some(p) => self
                .disks(p)
                .into_iter()
                .filter(fits)
                .map(|b| (*p, b))
                .collect(),
            None => self
                .devices()
                .flat_map(|d| self.disks(&d.path).into_iter().map(move |b| (d.path, b)))
                .filter(|(_, b)| fits(b))
                .collect(),
        };
        match &found[..] {
            [] => Ok(None),
            [(_, one), rest @ ..] if rest.iter().all(|(_, b)| b.name == one.name) => Ok(Some(one)),
            _ => Err(AmbiguousDisk {
                address: *address,
                candidates: found
                    .iter()
                    .map(|(path, b)| Candidate {
                        path: *path,
                        name: b.name.clone(),
                        unit: b.unit_label(),
                    })
                    .collect(),
            }),
        }
    }

    /// The NVMe whole disks whose namespace id is not known yet, as `(name, diskseq)`: what
    /// the live monitor reads `nsid` for.
    pub fn nvme_disks_without_nsid(&self) -> Vec<(Box<str>, Option<u64>)> {
        let own = self.devices().flat_map(|d| d.block.iter());
        let heads = self.nvme_subsystems.values().flat_map(|s| s.heads.iter());
        own.chain(heads)
            .filter(|b| b.nsid.is_none() && needs_nsid(b))
            .map(|b| (b.name.clone(), b.diskseq))
            .collect()
    }

    /// Records the namespace id of NVMe disk `name`, read from sysfs, if the registry still
    /// holds that disk (the same `diskseq`, where both are known). Returns the PCI paths it
    /// counts under, whose waiters may now have their answer.
    pub fn set_nsid(&mut self, name: &str, diskseq: Option<u64>, nsid: u32) -> Vec<PciPath> {
        let same = |b: &BlockDevice| {
            &*b.name == name && (diskseq.is_none() || b.diskseq.is_none() || b.diskseq == diskseq)
        };
        match self.names.get(name).copied() {
            Some(Owner::Pci(path)) => {
                let Some(mut dev) = self.devices.get_mut(&path) else {
                    return Vec::new();
                };
                match dev.block.iter_mut().find(|b| same(b)) {
                    Some(b) if b.nsid != Some(nsid) => {
                        b.nsid = Some(nsid);
                        vec![path]
                    }
                    _ => Vec::new(),
                }
            }
            Some(Owner::NvmeSubsystem) => {
                for sub in self.nvme_subsystems.values_mut() {
                    if let Some(b) = sub.heads.iter_mut().find(|b| same(b)) {
                        if b.nsid == Some(nsid) {
                            return Vec::new();
                        }
                        b.nsid = Some(nsid);
                        return sub.controllers.clone();
                    }
                }
                Vec::new()
            }
            None => Vec::new(),
        }
    }
}

/// An NVMe whole disk: a namespace under its controller or a multipath head.
pub(crate) fn needs_nsid(b: &BlockDevice) -> bool {
    b.devtype == DevType::Disk
        && matches!(
            b.transport,
            Transport::Nvme { .. } | Transport::NvmeMultipath { .. }
        )
}

#[cfg(test)]
mod tests {
    use super::super::test_events::*;
    use super::*;
    use crate::address::{Nsid, ScsiUnit};
    use crate::uevent::Action;

    const HBA: &str = "/devices/pci0000:00/0000:00:02.0/0000:01:00.0/virtio0/host0";

    fn lun(r: &mut Registry, fn_devpath: &str, hctl: &str, name: &str) {
        let [h, c, t, _]: [&str; 4] = hctl.split(':').collect::<Vec<_>>().try_into().unwrap();
        let devpath = format!("{fn_devpath}/target{h}:{c}:{t}/{hctl}/block/{name}");
        let (devname, seq) = (name.to_owned(), name.len().to_string());
        r.apply(&ev(
            Action::Add,
            &devpath,
            "block",
            &[
                ("DEVNAME", &devname),
                ("DEVTYPE", "disk"),
                ("DISKSEQ", &seq),
            ],
        ))
        .unwrap();
    }

    fn scsi(t: u32, l: u64) -> Unit {
        Unit::Scsi(ScsiUnit { target: t, lun: l })
    }

    #[test]
    fn one_disk_answers_and_several_are_ambiguous_with_their_addresses() {
        let mut r = Registry::new();
        let at = DiskAddress::at(p("02/00"));
        assert_eq!(r.find_disk(&at), Ok(None));
        lun(&mut r, HBA, "0:0:0:0", "sda");
        assert_eq!(&*r.find_disk(&at).unwrap().unwrap().name, "sda");
        lun(&mut r, HBA, "0:0:0:1", "sdb");
        let e = r.find_disk(&at).unwrap_err();
        assert_eq!(
            e.to_string(),
            "disk address 02/00 is ambiguous: sda 0:0:0:0, sdb 0:0:0:1"
        );
        // `disk` still picks the first by name, as documented.
        assert_eq!(&*r.disk(&p("02/00")).unwrap().name, "sda");
        // A unit picks one; one no disk has finds none.
        let sdb = DiskAddress::with_unit(Some(p("02/00")), scsi(0, 1));
        assert_eq!(&*r.find_disk(&sdb).unwrap().unwrap().name, "sdb");
        let none = DiskAddress::with_unit(Some(p("02/00")), scsi(1, 1));
        assert_eq!(r.find_disk(&none), Ok(None));
    }

    #[test]
    fn partitions_are_never_candidates() {
        let mut r = Registry::new();
        r.apply(&vda("1")).unwrap();
        r.apply(&ev(
            Action::Add,
            &format!("{FN}/virtio0/block/vda/vda1"),
            "block",
            &[
                ("DEVNAME", "vda1"),
                ("DEVTYPE", "partition"),
                ("PARTN", "1"),
            ],
        ))
        .unwrap();
        let found = r.find_disk(&DiskAddress::at(p("02/00"))).unwrap();
        assert_eq!(&*found.unwrap().name, "vda");
    }

    #[test]
    fn a_unit_without_a_path_answers_only_when_one_function_has_it() {
        let mut r = Registry::new();
        let hba2 = "/devices/pci0000:00/0000:00:03.0/0000:02:00.0/virtio1/host1";
        lun(&mut r, HBA, "0:0:0:0", "sda");
        lun(&mut r, HBA, "0:0:1:0", "sdc");
        lun(&mut r, hba2, "1:0:0:0", "sdd");
        let t1 = DiskAddress::with_unit(None, scsi(1, 0));
        assert_eq!(&*r.find_disk(&t1).unwrap().unwrap().name, "sdc");
        let t0 = DiskAddress::with_unit(None, scsi(0, 0));
        assert_eq!(
            r.find_disk(&t0).unwrap_err().to_string(),
            "disk address scsi 0:0 is ambiguous: HBAs at 02/00 (sda 0:0:0:0), 03/00 (sdd 1:0:0:0)"
        );
        // A channel other than 0 is never `T:L`.
        let mut other = Registry::new();
        lun(&mut other, HBA, "0:1:0:0", "sde");
        assert_eq!(other.find_disk(&t0), Ok(None));
    }

    #[test]
    fn namespace_ids_are_set_once_read_and_survive_a_change_event() {
        let mut r = Registry::new();
        let ctrl = format!("{FN}/nvme/nvme0");
        r.apply(&ev(Action::Add, &ctrl, "nvme", &[("DEVNAME", "nvme0")]))
            .unwrap();
        for (n, seq) in [("1", "5"), ("2", "6")] {
            let name = format!("nvme0n{n}");
            r.apply(&ev(
                Action::Add,
                &format!("{ctrl}/{name}"),
                "block",
                &[("DEVNAME", &name), ("DEVTYPE", "disk"), ("DISKSEQ", seq)],
            ))
            .unwrap();
        }
        let ns2 = DiskAddress::with_unit(Some(p("02/00")), Unit::Nsid(Nsid::new(2).unwrap()));
        assert_eq!(r.find_disk(&ns2), Ok(None), "unknown until read");
        assert_eq!(r.nvme_disks_without_nsid().len(), 2);
        assert_eq!(r.set_nsid("nvme0n2", Some(5), 2), Vec::<PciPath>::new());
        assert_eq!(r.set_nsid("nvme0n2", Some(6), 2), vec![p("02/00")]);
        assert_eq!(r.set_nsid("nvme0n1", Some(5), 1), vec![p("02/00")]);
        assert_eq!(&*r.find_disk(&ns2).unwrap().unwrap().name, "nvme0n2");
        assert!(r.nvme_disks_without_nsid().is_empty());
        assert_eq!(
            r.find_disk(&DiskAddress::at(p("02/00")))
                .unwrap_err()
                .to_string(),
            "disk address 02/00 is ambiguous: nvme0n1 nsid 1, nvme0n2 nsid 2"
        );
        // A synthetic `change` of the same disk does not forget what sysfs said.
        r.apply(&ev(
            Action::Change,
            &format!("{ctrl}/nvme0n2"),
            "block",
            &[
                ("DEVNAME", "nvme0n2"),
                ("DEVTYPE", "disk"),
                ("DISKSEQ", "6"),
            ],
        ))
        .unwrap();
        assert_eq!(&*r.find_disk(&ns2).unwrap().unwrap().name, "nvme0n2");
    }
}
