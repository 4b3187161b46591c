//! [`DiskAddress`]: one disk's full address, a PCI path and a unit selector (SCSI `T:L`,
//! NVMe namespace id), and the [`AmbiguousDisk`] error of an address that fits several disks.

use std::fmt;
use std::str::FromStr;

use crate::path::PciPath;

/// A SCSI unit as Kata writes it: `T:L`, target and LUN on channel 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ScsiUnit {
    /// The SCSI target (QEMU's `scsi-id`).
    pub target: u32,
    /// The logical unit number.
    pub lun: u64,
}

/// An NVMe namespace id (1 and up; 0 is no namespace).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nsid(u32);

/// What picks one disk among those of a PCI function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    /// A SCSI disk at target `T`, LUN `L`, channel 0.
    Scsi(ScsiUnit),
    /// An NVMe namespace.
    Nsid(Nsid),
}

/// A disk's address: a PCI path, a unit selector, or both.
///
/// A PCI function may carry several disks: a virtio-scsi HBA one per LUN, an NVMe controller
/// one per namespace. The PCI path alone then names none of them, and pciplug never picks one:
/// a wait on such a path fails with the candidates. The selector names one:
///
/// | selector | CLI | meaning |
/// |---|---|---|
/// | [`Unit::Scsi`] | `--scsi 0:1` | SCSI target 0, LUN 1 on channel 0 (`H:0:0:1`, whatever the host number `H`) |
/// | [`Unit::Nsid`] | `--nsid 2` | the NVMe namespace with id 2 (read from sysfs) |
///
/// The SCSI host number `H` is never part of an address: the guest gives it out in probe order
/// and it moves between boots. An address may also have a unit and no path (Kata's agent
/// addresses SCSI disks by `T:L` alone): it then answers when exactly one PCI function in the
/// guest has a disk with that unit, and is ambiguous when several do.
///
/// [`Monitor::wait_disk`](crate::Monitor::wait_disk) waits for the disk at an address;
/// [`Registry::find_disk`](crate::Registry::find_disk) answers from a registry.
///
/// ```
/// use pciplug::{DiskAddress, ScsiUnit, Unit};
///
/// let unit: ScsiUnit = "0:1".parse()?;
/// assert_eq!((unit.target, unit.lun), (0, 1));
/// let at = DiskAddress::with_unit(Some("02/00".parse()?), Unit::Scsi(unit));
/// assert_eq!(at.to_string(), "02/00 scsi 0:1");
/// assert_eq!(DiskAddress::with_unit(None, "2".parse::<pciplug::Nsid>()?.into()).to_string(), "nsid 2");
/// assert!("0:x".parse::<ScsiUnit>().unwrap_err().to_string().contains("LUN \"x\""));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DiskAddress {
    path: Option<PciPath>,
    unit: Option<Unit>,
}

/// A unit selector that does not parse; `Display` names the bad part.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {reason}")]
pub struct ParseUnitError {
    what: &'static str,
    input: String,
    reason: String,
}

impl ParseUnitError {
    fn new(what: &'static str, input: &str, reason: impl Into<String>) -> Self {
        ParseUnitError {
            what,
            input: input.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A decimal number of the kind `T` ("target 0"), or why it is not one.
fn decimal<T: FromStr>(part: &str, name: &str) -> Result<T, String> {
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{name} {part:?} is not a decimal number"));
    }
    part.parse()
        .map_err(|_| format!("{name} {part:?} is too large"))
}

impl FromStr for ScsiUnit {
    type Err = ParseUnitError;

    /// `T:L`, both decimal. Four parts (`H:C:T:L`) are refused: the host number is the
    /// guest's own and moves.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ParseUnitError::new("SCSI unit", s, reason);
        let parts: Vec<&str> = s.split(':').collect();
        match parts[..] {
            [t, l] => Ok(ScsiUnit {
                target: decimal(t, "target").map_err(err)?,
                lun: decimal(l, "LUN").map_err(err)?,
            }),
            [_, _, _, _] => Err(err(
                "a full H:C:T:L address; give target and LUN only (T:L): the host number H is \
                 the guest's own"
                    .into(),
            )),
            _ => Err(err("not TARGET:LUN (e.g. 0:1)".into())),
        }
    }
}

impl fmt::Display for ScsiUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.target, self.lun)
    }
}

impl Nsid {
    /// The namespace id `n`, if it is one (not 0, not the broadcast id `0xffffffff`).
    pub fn new(n: u32) -> Option<Nsid> {
        (n != 0 && n != u32::MAX).then_some(Nsid(n))
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl FromStr for Nsid {
    type Err = ParseUnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ParseUnitError::new("NVMe namespace id", s, reason);
        let n: u32 = decimal(s, "namespace id").map_err(err)?;
        Nsid::new(n).ok_or_else(|| err("namespace ids run from 1 to 4294967294".into()))
    }
}

impl fmt::Display for Nsid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<ScsiUnit> for Unit {
    fn from(u: ScsiUnit) -> Unit {
        Unit::Scsi(u)
    }
}

impl From<Nsid> for Unit {
    fn from(n: Nsid) -> Unit {
        Unit::Nsid(n)
    }
}

impl fmt::Display for Unit {
    /// `scsi 0:1`, `nsid 2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unit::Scsi(u) => write!(f, "scsi {u}"),
            Unit::Nsid(n) => write!(f, "nsid {n}"),
        }
    }
}

impl DiskAddress {
    /// The one whole disk at `path`.
    pub fn at(path: PciPath) -> DiskAddress {
        DiskAddress {
            path: Some(path),
            unit: None,
        }
    }

    /// The disk with `unit` at `path`, or anywhere in the guest when `path` is `None`.
    pub fn with_unit(path: Option<PciPath>, unit: Unit) -> DiskAddress {
        DiskAddress {
            path,
            unit: Some(unit),
        }
    }

    /// The PCI path, if the address has one.
    pub fn path(&self) -> Option<&PciPath> {
        self.path.as_ref()
    }

    /// The unit selector, if the address has one.
    pub fn unit(&self) -> Option<&Unit> {
        self.unit.as_ref()
    }
}

impl From<PciPath> for DiskAddress {
    fn from(path: PciPath) -> DiskAddress {
        DiskAddress::at(path)
    }
}

impl fmt::Display for DiskAddress {
    /// `02/00`, `02/00 scsi 0:1`, `scsi 0:1`, `06/00 nsid 2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.path, &self.unit) {
            (Some(p), Some(u)) => write!(f, "{p} {u}"),
            (Some(p), None) => write!(f, "{p}"),
            (None, Some(u)) => write!(f, "{u}"),
            (None, None) => f.write_str("any disk"),
        }
    }
}

/// One disk an ambiguous address fits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The PCI path of its function.
    pub path: PciPath,
    /// Its kernel name (`sda`).
    pub name: Box<str>,
    /// Its unit, as the guest shows it: the SCSI `H:C:T:L`, `nsid N`, or nothing.
    pub unit: Option<String>,
}

impl fmt::Display for Candidate {
    /// `sda 0:0:0:0`, `nvme0n2 nsid 2`, `vda`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.unit {
            Some(u) => write!(f, "{} {u}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

/// An address that fits more than one whole disk: a path whose function carries several, or
/// a unit without a path that several functions have. pciplug never picks one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmbiguousDisk {
    /// The address asked for.
    pub address: DiskAddress,
    /// Every disk it fits, by path then name.
    pub candidates: Vec<Candidate>,
}

impl fmt::Display for AmbiguousDisk {
    /// `disk address 02/00 is ambiguous: sda 0:0:0:0, sdb 0:0:0:1` or, without a path,
    /// `disk address scsi 0:0 is ambiguous: HBAs at 02/00 (sda 0:0:0:0), 03/00 (sdd 1:0:0:0)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "disk address {} is ambiguous: ", self.address)?;
        let list: Vec<String> = if self.address.path.is_some() {
            self.candidates.iter().map(|c| c.to_string()).collect()
        } else {
            self.candidates
                .iter()
                .map(|c| format!("{} ({c})", c.path))
                .collect()
        };
        if self.address.path.is_none() {
            f.write_str(match self.address.unit {
                Some(Unit::Scsi(_)) => "HBAs at ",
                _ => "functions at ",
            })?;
        }
        f.write_str(&list.join(", "))
    }
}

impl std::error::Error for AmbiguousDisk {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scsi_units_parse_and_print_as_target_colon_lun() {
        let u: ScsiUnit = "0:1".parse().unwrap();
        assert_eq!(u, ScsiUnit { target: 0, lun: 1 });
        assert_eq!(u.to_string(), "0:1");
        assert_eq!(
            "12:16383".parse::<ScsiUnit>().unwrap().to_string(),
            "12:16383"
        );
    }

    #[test]
    fn bad_scsi_units_name_the_bad_part() {
        let e = |s: &str| s.parse::<ScsiUnit>().unwrap_err().to_string();
        assert_eq!(
            e("0:x"),
            "invalid SCSI unit \"0:x\": LUN \"x\" is not a decimal number"
        );
        assert_eq!(
            e("-1:0"),
            "invalid SCSI unit \"-1:0\": target \"-1\" is not a decimal number"
        );
        assert_eq!(
            e(":1"),
            "invalid SCSI unit \":1\": target \"\" is not a decimal number"
        );
        assert_eq!(
            e("99999999999:0"),
            "invalid SCSI unit \"99999999999:0\": target \"99999999999\" is too large"
        );
        assert!(e("0:0:0:1").contains("host number H is the guest's own"));
        assert!(e("1").contains("not TARGET:LUN"));
        assert!(e("0:1:2").contains("not TARGET:LUN"));
        assert!(e("").contains("not TARGET:LUN"));
    }

    #[test]
    fn namespace_ids_parse_from_one_and_name_the_bad_part() {
        assert_eq!("2".parse::<Nsid>().unwrap().get(), 2);
        assert_eq!("2".parse::<Nsid>().unwrap().to_string(), "2");
        let e = |s: &str| s.parse::<Nsid>().unwrap_err().to_string();
        assert_eq!(
            e("0"),
            "invalid NVMe namespace id \"0\": namespace ids run from 1 to 4294967294"
        );
        assert_eq!(
            e("0x2"),
            "invalid NVMe namespace id \"0x2\": namespace id \"0x2\" is not a decimal number"
        );
        assert!(e("4294967295").contains("run from 1"));
        assert!(e("4294967296").contains("too large"));
    }

    #[test]
    fn addresses_print_what_they_hold() {
        let p: PciPath = "02/00".parse().unwrap();
        let scsi = Unit::Scsi("0:1".parse().unwrap());
        assert_eq!(DiskAddress::at(p).to_string(), "02/00");
        assert_eq!(
            DiskAddress::with_unit(Some(p), scsi).to_string(),
            "02/00 scsi 0:1"
        );
        assert_eq!(DiskAddress::with_unit(None, scsi).to_string(), "scsi 0:1");
        let nsid = Unit::Nsid(Nsid::new(2).unwrap());
        assert_eq!(
            DiskAddress::with_unit(Some(p), nsid).to_string(),
            "02/00 nsid 2"
        );
    }
}
