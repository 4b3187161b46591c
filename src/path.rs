//! [`PciPath`]: the address of a PCI function that host and guest agree on, and [`Bdf`].
//!
//! A PCI path lists the slot of every bridge from the root bus down to the device, then the
//! device's own slot, in hex, separated by `/`: `02/00` is slot 0 behind the bridge in slot 2
//! of the root bus, `06` is slot 6 of the root bus itself. A hop may name a function other
//! than 0 as `.F` (`02/00.1`).
//!
//! Guest bus numbers are given out by enumeration and move when bridges are added, so a path
//! never contains one: it is computed from the chain of PCI functions in a device's sysfs path
//! (`/devices/pci0000:00/0000:00:02.0/0000:01:00.0/...` is `02/00`).
//!
//! # Other root complexes
//!
//! Almost every guest has one root complex, `pci0000:00`, and its paths carry no prefix. A
//! device under any other root complex (a PCI expander bridge such as QEMU's `pxb-pcie`, or
//! another PCI domain, such as Cloud Hypervisor's `pci_segment=1`) is printed with that root
//! complex's sysfs name first: `pci0000:10/02/00`, `pci0001:00/05`. That form can never be
//! mistaken for a root-bus-0 path: a hop never starts with `pci`.
//!
//! # Accepted spellings
//!
//! Hosts write paths in several ways (Kata Containers' runtime and agent among them). Each of
//! these parses to the same [`PciPath`], which always prints in the canonical form:
//!
//! | spelling | canonical | what it is |
//! |---|---|---|
//! | `02/00` | `02/00` | the canonical form: two lower-case hex digits a hop |
//! | `2/0`, `3/4` | `02/00`, `03/04` | one-digit hops (Kata's `SlotFn` accepts them) |
//! | `0A/1F` | `0a/1f` | upper-case hex |
//! | `03.0/04.0` | `03/04` | an explicit function 0 (how Kata's `pci::Path` prints) |
//! | `02/00.1` | `02/00.1` | function 1: a function other than 0 is always printed |
//! | `pci0000:00/02/00` | `02/00` | the default root complex spelt out |
//! | `pci0000:10/02/00` | `pci0000:10/02/00` | another root bus (a `pxb-pcie` with `bus_nr=0x10`) |
//! | `20/00/02` | `pci0000:20/00/02` | Kata's expander-bridge form: see below |
//! | `pci0001:00/05` | `pci0001:00/05` | PCI segment (domain) 1 |
//!
//! **Kata's expander-bridge form.** In a path of three or more `/`-separated parts whose
//! first part is exactly two hex digits worth `20` or more, that first part is the root bus
//! number in domain 0, not a slot (no slot is above `1f`): `20/00/02` is
//! `pci0000:20/00/02`. This is the rule of Kata's agent (`pcipath_from_dev_tree_path`), whose
//! runtime numbers its `pxb-pcie` buses from 0x20. Hence what stays an error:
//!
//! - `20` and `20/00`: with fewer than three parts a first part of `20` or more is a slot, and
//!   above `1f` (Kata's agent refuses them too); write `pci0000:20/00`.
//! - `20.0/00/02`: a root bus number has no function.
//! - `pci0000:00/20/00/02`: after an explicit root complex every part is a hop.
//! - `10/02/00` is slot `10` of root bus 0 and its descendants, never root bus 0x10: a root bus
//!   below 0x20 has no short form, write `pci0000:10/02/00`.
//!
//! A hop is one or two hex digits, at most `1f`, optionally `.F` with `F` in `0`..`7`; three
//! digits (`003`), a sign or spaces are refused. A bus address (`0000:01:00.0` or `01:00.0`)
//! given by mistake gets an error saying it is one and that `pciplug list` shows each
//! device's path. Any other error names the bad hop.

use std::fmt;
use std::str::FromStr;

use crate::hex;

/// The deepest path pciplug represents: sixteen hops (fifteen bridges and the device).
///
/// Real topologies are far shallower (a PCIe switch adds two levels); a devpath nested deeper
/// than this is reported as an error rather than silently truncated.
pub const MAX_HOPS: usize = 16;

/// A PCI path: the root complex, then one slot/function hop per bridge and one for the device.
///
/// `PciPath` is `Copy` and ordered so that a bridge sorts right before everything behind it
/// (the order of a depth-first walk), which is also the order `list` and `replay` print in.
///
/// ```
/// use pciplug::PciPath;
/// let p: PciPath = "03/00/01".parse().unwrap();
/// assert_eq!(p.len(), 3);
/// assert_eq!(p.to_string(), "03/00/01");
/// assert_eq!("02/00.1".parse::<PciPath>().unwrap().hops()[1].function(), 1);
/// assert!("02/20".parse::<PciPath>().is_err()); // slots stop at 1f
/// // Other spellings a host sends (see the module docs) print canonically.
/// assert_eq!("3.0/4.0".parse::<PciPath>().unwrap().to_string(), "03/04");
/// assert_eq!("20/00/02".parse::<PciPath>().unwrap().to_string(), "pci0000:20/00/02");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciPath {
    // Field order is the sort order: root complex first, then the hops lexicographically.
    root: RootComplex,
    /// Only `hops[..len]` is meaningful; the rest is always zero so that the derived
    /// `Eq`/`Ord`/`Hash` agree with the logical value.
    hops: [Hop; MAX_HOPS],
    /// Number of hops, 1..=MAX_HOPS.
    len: u8,
}

/// A root complex as sysfs names it: `pci<domain>:<bus>`, e.g. `pci0000:00`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct RootComplex {
    /// PCI domain (segment).
    pub domain: u16,
    /// Root bus number of this root complex.
    pub bus: u8,
}

impl RootComplex {
    /// The root complex every ordinary guest has, `pci0000:00`.
    pub const DEFAULT: RootComplex = RootComplex { domain: 0, bus: 0 };

    /// Parses a sysfs root complex name (`pci0000:00`); `None` if `s` is not one.
    pub fn from_sysfs_name(s: &str) -> Option<RootComplex> {
        let rest = s.strip_prefix("pci")?;
        let b = rest.as_bytes();
        if b.len() != 7 || b[4] != b':' {
            return None;
        }
        Some(RootComplex {
            domain: hex::u16_exact(&b[0..4])?,
            bus: hex::u8_exact(&b[5..7])?,
        })
    }
}

impl fmt::Display for RootComplex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pci{:04x}:{:02x}", self.domain, self.bus)
    }
}

/// One hop of a PCI path: a device slot (0x00..=0x1f) and a function (0..=7).
///
/// Stored as the PCI `devfn` byte (`slot << 3 | function`), so hops order by slot, then function.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hop(u8);

impl Hop {
    /// Builds a hop; `None` if `slot > 0x1f` or `function > 7`.
    pub fn new(slot: u8, function: u8) -> Option<Hop> {
        (slot <= 0x1f && function <= 7).then_some(Hop(slot << 3 | function))
    }
    /// The device slot, 0x00..=0x1f.
    pub fn slot(self) -> u8 {
        self.0 >> 3
    }
    /// The function number, 0..=7.
    pub fn function(self) -> u8 {
        self.0 & 7
    }
}

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}", self.slot())?;
        if self.function() != 0 {
            write!(f, ".{}", self.function())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl PciPath {
    /// Builds a path on `root` from its hops, root bus first. `None` if `hops` is empty or
    /// longer than [`MAX_HOPS`].
    pub fn new(root: RootComplex, hops: &[Hop]) -> Option<PciPath> {
        if hops.is_empty() || hops.len() > MAX_HOPS {
            return None;
        }
        let mut p = PciPath {
            root,
            hops: [Hop(0); MAX_HOPS],
            len: hops.len() as u8,
        };
        p.hops[..hops.len()].copy_from_slice(hops);
        Some(p)
    }

    /// The root complex the path starts from.
    pub fn root(&self) -> RootComplex {
        self.root
    }

    /// The hops, root bus first; the last one is the device itself.
    pub fn hops(&self) -> &[Hop] {
        &self.hops[..self.len as usize]
    }

    /// Number of hops (bridges + 1). Never zero.
    #[allow(clippy::len_without_is_empty)] // a path always has at least one hop
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// The path of the bridge this device sits behind; `None` on the root bus.
    pub fn parent(&self) -> Option<PciPath> {
        (self.len > 1).then(|| {
            let mut p = *self;
            p.len -= 1;
            p.hops[p.len as usize] = Hop(0);
            p
        })
    }

    /// The path of function `hop` behind this one (this one being a bridge); `None` if this
    /// path already has [`MAX_HOPS`] hops. The mirror of [`parent`](PciPath::parent).
    ///
    /// ```
    /// use pciplug::{Hop, PciPath};
    /// let bridge: PciPath = "03/00".parse().unwrap();
    /// let disk = bridge.child(Hop::new(1, 0).unwrap()).unwrap();
    /// assert_eq!(disk.to_string(), "03/00/01");
    /// assert_eq!(disk.parent(), Some(bridge));
    /// ```
    pub fn child(&self, hop: Hop) -> Option<PciPath> {
        (self.len() < MAX_HOPS).then(|| {
            let mut p = *self;
            p.hops[p.len as usize] = hop;
            p.len += 1;
            p
        })
    }

    /// The one-hop path of `hop` on the root bus of `root`.
    fn on_root(root: RootComplex, hop: Hop) -> PciPath {
        let mut hops = [Hop(0); MAX_HOPS];
        hops[0] = hop;
        PciPath { root, hops, len: 1 }
    }

    /// True if `self` is `other` or lies behind it (`other` is a bridge on the way).
    pub fn starts_with(&self, other: &PciPath) -> bool {
        self.root == other.root
            && self.len >= other.len
            && self.hops[..other.len as usize] == other.hops[..other.len as usize]
    }

    /// Computes the PCI path of the deepest PCI function in a kernel device path.
    ///
    /// `devpath` is a uevent `DEVPATH` or a sysfs path below `/sys` (`/devices/pci0000:00/
    /// 0000:00:02.0/0000:01:00.0/virtio0/block/vda`). The root complex component
    /// (`pci0000:00`) may sit below other platform nodes, as on arm64. Returns the path and
    /// the byte length of the devpath prefix that ends with that function's component, or
    /// `Ok(None)` if the devpath is not below a PCI root complex.
    ///
    /// ```
    /// use pciplug::PciPath;
    /// let dp = "/devices/pci0000:00/0000:00:03.0/0000:02:00.0/0000:03:01.0/virtio1/block/vdb";
    /// let (path, end) = PciPath::from_devpath(dp).unwrap().unwrap();
    /// assert_eq!(path.to_string(), "03/00/01");
    /// assert_eq!(&dp[end..], "/virtio1/block/vdb");
    /// ```
    pub fn from_devpath(devpath: &str) -> Result<Option<(PciPath, usize)>, DevpathError> {
        let mut root: Option<RootComplex> = None;
        let mut path: Option<PciPath> = None;
        let mut end = 0usize;
        let mut offset = 0usize;
        for comp in devpath.split('/') {
            let comp_end = offset + comp.len();
            offset = comp_end + 1;
            match root {
                None => root = RootComplex::from_sysfs_name(comp),
                Some(rc) => match Bdf::from_str(comp) {
                    Ok(bdf) => {
                        if bdf.domain != rc.domain {
                            return Err(DevpathError::new(
                                devpath,
                                "PCI domain changes below root",
                            ));
                        }
                        path = Some(match path {
                            None => PciPath::on_root(rc, bdf.hop()),
                            Some(bridge) => bridge.child(bdf.hop()).ok_or_else(|| {
                                DevpathError::new(devpath, "more than 16 PCI hops")
                            })?,
                        });
                        end = comp_end;
                    }
                    Err(_) => break,
                },
            }
        }
        Ok(path.map(|p| (p, end)))
    }
}

/// A devpath below a PCI root complex that pciplug cannot turn into a [`PciPath`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("device path {devpath:?}: {reason}")]
pub struct DevpathError {
    devpath: String,
    reason: &'static str,
}

impl DevpathError {
    fn new(devpath: &str, reason: &'static str) -> Self {
        DevpathError {
            devpath: devpath.to_owned(),
            reason,
        }
    }
}

impl fmt::Display for PciPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.root != RootComplex::DEFAULT {
            write!(f, "{}/", self.root)?;
        }
        for (i, hop) in self.hops().iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            write!(f, "{hop}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PciPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PciPath({self})")
    }
}

impl serde::Serialize for PciPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why a PCI path string was refused; the message names the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid PCI path {input:?}: {reason}")]
pub struct ParsePciPathError {
    input: String,
    reason: String,
}

impl ParsePciPathError {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        ParsePciPathError {
            input: input.to_owned(),
            reason: reason.into(),
        }
    }
}

impl FromStr for PciPath {
    type Err = ParsePciPathError;

    /// Parses every accepted spelling (see the [module docs](self#accepted-spellings)).
    fn from_str(s: &str) -> Result<PciPath, ParsePciPathError> {
        if s.is_empty() {
            return Err(ParsePciPathError::new(s, "empty"));
        }
        if is_bdf(s) {
            return Err(ParsePciPathError::new(
                s,
                "this is a bus address (BDF), not a PCI path: the guest numbers its buses and \
                 may renumber them, so host and guest name a device by its path instead; \
                 `pciplug list` prints each device's PCI path beside its BDF",
            ));
        }
        let segments = s.split('/').count();
        let mut parts = s.split('/').peekable();
        let mut root = RootComplex::DEFAULT;
        let mut explicit_root = false;
        if let Some(first) = parts.peek() {
            if first.starts_with("pci") {
                root = RootComplex::from_sysfs_name(first).ok_or_else(|| {
                    ParsePciPathError::new(
                        s,
                        format!("root complex {first:?} is not of the form pciDDDD:BB"),
                    )
                })?;
                explicit_root = true;
                parts.next();
            } else if segments >= 3
                && let Some(bus) = expander_bus(first)
            {
                // Kata's spelling of a path under a PCI expander bridge: a first "hop" that
                // cannot be a slot is the root bus number of domain 0.
                root = RootComplex { domain: 0, bus };
                explicit_root = true;
                parts.next();
            }
        }
        let mut path: Option<PciPath> = None;
        for (i, part) in parts.enumerate() {
            let n = i + 1;
            let hop = parse_hop(part).map_err(|why| {
                let hint = if n == 1 && !explicit_root && expander_bus(part).is_some() {
                    " (a first hop of 20 or more is a root bus number only when at least two \
                     hops follow it)"
                } else {
                    ""
                };
                ParsePciPathError::new(s, format!("hop {n} {part:?} {why}{hint}"))
            })?;
            path = Some(match path {
                None => PciPath::on_root(root, hop),
                Some(bridge) => bridge.child(hop).ok_or_else(|| {
                    ParsePciPathError::new(s, format!("more than {MAX_HOPS} hops"))
                })?,
            });
        }
        path.ok_or_else(|| ParsePciPathError::new(s, "no slot after the root complex"))
    }
}

/// One hop: a slot of one or two hex digits, then optionally `.F` with `F` in `0..=7`.
fn parse_hop(part: &str) -> Result<Hop, &'static str> {
    let (slot, func) = match part.split_once('.') {
        Some((slot, func)) => (slot, Some(func)),
        None => (part, None),
    };
    let slot = match slot.as_bytes() {
        [d] => hex::digit(*d),
        two @ [_, _] => hex::u8_exact(two),
        _ => None,
    }
    .ok_or("is not a two-digit hex slot")?;
    if slot > 0x1f {
        return Err("has a slot above 1f");
    }
    let func = match func.map(str::as_bytes) {
        None => 0,
        Some(&[f @ b'0'..=b'7']) => f - b'0',
        Some(_) => return Err("has a function that is not one digit 0-7"),
    };
    Ok(Hop::new(slot, func).expect("slot and function were range-checked"))
}

/// The root bus number in Kata's expander-bridge spelling (`20/00/02`): exactly two hex
/// digits, 0x20 or more (a value no slot can have; Kata's runtime numbers its `pxb-pcie`
/// buses from 0x20). `None` for anything else.
fn expander_bus(segment: &str) -> Option<u8> {
    hex::u8_exact(segment.as_bytes()).filter(|&bus| bus > 0x1f)
}

/// True for a whole string of the form `dddd:bb:ss.f` or `bb:ss.f` (hex digits): a bus
/// address given where a PCI path was expected.
fn is_bdf(s: &str) -> bool {
    let b = s.as_bytes();
    let short = match b.len() {
        12 if b[4] == b':' && hex::u16_exact(&b[..4]).is_some() => &b[5..],
        7 => b,
        _ => return false,
    };
    short[2] == b':'
        && short[5] == b'.'
        && hex::u8_exact(&short[..2]).is_some()
        && hex::u8_exact(&short[3..5]).is_some()
        && hex::digit(short[6]).is_some()
}

/// A PCI address as the guest kernel numbers it: `domain:bus:slot.function` (`0000:01:00.0`).
///
/// The bus number is the guest's enumeration and may change; use [`PciPath`] to name a device
/// across host and guest, and a `Bdf` only to report where it currently is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bdf {
    /// PCI domain (segment).
    pub domain: u16,
    /// Bus number, as enumerated by this guest.
    pub bus: u8,
    hop: Hop,
}

impl Bdf {
    /// Builds a BDF; `None` if slot or function are out of range.
    pub fn new(domain: u16, bus: u8, slot: u8, function: u8) -> Option<Bdf> {
        Some(Bdf {
            domain,
            bus,
            hop: Hop::new(slot, function)?,
        })
    }
    /// The slot/function as a path hop.
    pub fn hop(&self) -> Hop {
        self.hop
    }
}

impl FromStr for Bdf {
    type Err = ();
    /// Parses the sysfs form `dddd:bb:ss.f` exactly (lower- or upper-case hex).
    fn from_str(s: &str) -> Result<Bdf, ()> {
        let b = s.as_bytes();
        if b.len() != 12 || b[4] != b':' || b[7] != b':' || b[10] != b'.' {
            return Err(());
        }
        let domain = hex::u16_exact(&b[0..4]).ok_or(())?;
        let bus = hex::u8_exact(&b[5..7]).ok_or(())?;
        let slot = hex::u8_exact(&b[8..10]).ok_or(())?;
        let func = match b[11] {
            c @ b'0'..=b'7' => c - b'0',
            _ => return Err(()),
        };
        Bdf::new(domain, bus, slot, func).ok_or(())
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{}",
            self.domain,
            self.bus,
            self.hop.slot(),
            self.hop.function()
        )
    }
}

impl fmt::Debug for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bdf({self})")
    }
}

impl serde::Serialize for Bdf {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> PciPath {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_the_agreed_forms() {
        for s in [
            "02/00",
            "03/00/01",
            "06",
            "03/00/02/03",
            "02/00.1",
            "1f/00.7",
        ] {
            assert_eq!(p(s).to_string(), s);
        }
        assert_eq!(p("02/00.0").to_string(), "02/00");
        assert_eq!(p("0A/1F").to_string(), "0a/1f");
    }

    #[test]
    fn other_root_complexes_never_collide_with_root_bus_zero() {
        let other = p("pci0000:10/02/00");
        assert_ne!(other, p("02/00"));
        assert_eq!(other.to_string(), "pci0000:10/02/00");
        assert_eq!(p("pci0001:00/02").to_string(), "pci0001:00/02");
        // The default root complex may be spelt out and is printed without it.
        assert_eq!(p("pci0000:00/02/00"), p("02/00"));
        assert_eq!(p("pci0000:00/02/00").to_string(), "02/00");
    }

    #[test]
    fn every_accepted_spelling_parses_to_its_canonical_form() {
        // The table of the module docs, row by row.
        for (spelling, canonical) in [
            ("02/00", "02/00"),
            ("2/0", "02/00"),
            ("3/4", "03/04"),
            ("0A/1F", "0a/1f"),
            ("03.0/04.0", "03/04"),
            ("3.0/4.0", "03/04"),
            ("02/00.1", "02/00.1"),
            ("pci0000:00/02/00", "02/00"),
            ("pci0000:10/02/00", "pci0000:10/02/00"),
            ("pci0000:10/2/0.0", "pci0000:10/02/00"),
            ("20/00/02", "pci0000:20/00/02"),
            ("20/0/2", "pci0000:20/00/02"),
            ("Ff/00.0/02.3", "pci0000:ff/00/02.3"),
            ("pci0001:00/05", "pci0001:00/05"),
            ("pci0001:00/5.0", "pci0001:00/05"),
        ] {
            let path = p(spelling);
            assert_eq!(path.to_string(), canonical, "{spelling}");
            assert_eq!(p(canonical), path, "{spelling}");
        }
        // Domains other than 0 keep their number; the default root is never printed.
        assert_eq!(p("pci0001:00/05").root(), RootComplex { domain: 1, bus: 0 });
        assert_eq!(
            p("20/00/02").root(),
            RootComplex {
                domain: 0,
                bus: 0x20
            }
        );
        assert_eq!(p("20/00/02").hops(), p("00/02").hops());
    }

    #[test]
    fn what_the_expander_rule_leaves_an_error() {
        let err = |s: &str| s.parse::<PciPath>().unwrap_err().to_string();
        let root_bus_hint = "a first hop of 20 or more is a root bus number only when at least \
                             two hops follow it";
        for short in ["20", "20/00", "ff/1f.7"] {
            let e = err(short);
            let first = short.split('/').next().unwrap();
            assert!(
                e.contains(&format!("hop 1 {first:?} has a slot above 1f")),
                "{e}"
            );
            assert!(e.contains(root_bus_hint), "{e}");
        }
        // A slot above 1f after the first hop is just that, whatever the length.
        let e = err("02/20/00");
        assert!(e.contains(r#"hop 2 "20" has a slot above 1f"#), "{e}");
        assert!(!e.contains(root_bus_hint), "{e}");
        // A root bus number has no function, and an explicit root complex is never followed
        // by a second one.
        assert!(err("20.0/00/02").contains(r#"hop 1 "20.0" has a slot above 1f"#));
        let e = err("pci0000:00/20/00/02");
        assert!(e.contains(r#"hop 1 "20" has a slot above 1f"#), "{e}");
        assert!(!e.contains(root_bus_hint), "{e}");
        // Only two hex digits name a root bus: "020" and "2" do not.
        assert!(err("020/00/02").contains(r#"hop 1 "020" is not a two-digit hex slot"#));
        // The hops after a root bus are checked like any others, and numbered from it.
        assert!(err("20/00/zz").contains(r#"hop 2 "zz" is not a two-digit hex slot"#));
        assert!(err("20/00/").contains(r#"hop 2 """#));
        // A root bus below 20 has no short form: "10/02/00" is slot 10 of root bus 0.
        assert_eq!(p("10/02/00").root(), RootComplex::DEFAULT);
        assert_eq!(p("10/02/00").to_string(), "10/02/00");
        // The expander form has room for MAX_HOPS hops after the bus, not one more.
        let deepest = format!("20/{}", vec!["01"; MAX_HOPS].join("/"));
        assert_eq!(p(&deepest).len(), MAX_HOPS);
        assert!(err(&format!("{deepest}/01")).contains("more than 16 hops"));
    }

    #[test]
    fn a_bdf_is_named_as_one_with_the_way_to_its_path() {
        for bdf in [
            "0000:01:00.0",
            "01:00.0",
            "0001:00:05.0",
            "00:1F.7",
            "0000:01:00.8",
        ] {
            let e = bdf.parse::<PciPath>().unwrap_err().to_string();
            assert!(
                e.starts_with(&format!(
                    "invalid PCI path {bdf:?}: this is a bus address (BDF)"
                )),
                "{e}"
            );
            assert!(e.contains("`pciplug list`"), "{e}");
        }
        // Near misses are not called BDFs: they get the usual hop error.
        for not_bdf in ["0000:01:00", "01:00.0/00", "1:00.0", "0000:01:00.00"] {
            let e = not_bdf.parse::<PciPath>().unwrap_err().to_string();
            assert!(!e.contains("BDF"), "{not_bdf}: {e}");
            assert!(e.contains("hop 1 "), "{not_bdf}: {e}");
        }
    }

    #[test]
    fn child_is_the_mirror_of_parent() {
        let hop = |s, f| Hop::new(s, f).unwrap();
        assert_eq!(p("03/00").child(hop(1, 0)), Some(p("03/00/01")));
        assert_eq!(p("06").child(hop(0, 1)), Some(p("06/00.1")));
        assert_eq!(
            p("pci0001:00/05").child(hop(0x1f, 7)),
            Some(p("pci0001:00/05/1f.7"))
        );
        // A child sorts right after its parent and lies behind it.
        let parent = p("03/00");
        let child = parent.child(hop(0, 0)).unwrap();
        assert!(parent < child && child.starts_with(&parent));
        let deepest = p(&vec!["01"; MAX_HOPS].join("/"));
        assert_eq!(deepest.child(hop(0, 0)), None);
        let below = deepest.parent().unwrap();
        assert_eq!(below.child(hop(1, 0)), Some(deepest));
    }

    #[test]
    fn errors_name_the_bad_part() {
        let err = |s: &str| s.parse::<PciPath>().unwrap_err().to_string();
        assert_eq!(err(""), r#"invalid PCI path "": empty"#);
        assert_eq!(
            err("02/zz"),
            r#"invalid PCI path "02/zz": hop 2 "zz" is not a two-digit hex slot"#
        );
        assert!(err("02/20").contains(r#"hop 2 "20" has a slot above 1f"#));
        assert!(err("002/00").contains(r#"hop 1 "002" is not a two-digit hex slot"#));
        assert!(err("+2/00").contains(r#"hop 1 "+2" is not a two-digit hex slot"#));
        assert!(err("02/0x1").contains(r#"hop 2 "0x1" is not a two-digit hex slot"#));
        assert!(err("02/00.8").contains("function that is not one digit 0-7"));
        assert!(err("02//00").contains(r#"hop 2 """#));
        assert!(err("02/00/").contains(r#"hop 3 """#));
        assert!(err("pci0000:00").contains("no slot after the root complex"));
        assert!(err("pcix/02").contains("root complex \"pcix\""));
        assert!(err(" 02/00").contains("hop 1"));
        let deep = vec!["01"; MAX_HOPS + 1].join("/");
        assert!(err(&deep).contains("more than 16 hops"));
    }

    #[test]
    fn devpaths_give_the_path_of_the_deepest_function() {
        let cases = [
            (
                "/devices/pci0000:00/0000:00:02.0/0000:01:00.0/virtio0/block/vda",
                "02/00",
                "/virtio0/block/vda",
            ),
            (
                "/devices/pci0000:00/0000:00:06.0/virtio1/block/vdb",
                "06",
                "/virtio1/block/vdb",
            ),
            (
                "/devices/pci0000:00/0000:00:03.0/0000:02:00.0/0000:03:02.0/0000:04:03.0",
                "03/00/02/03",
                "",
            ),
            (
                "/devices/platform/4010000000.pcie/pci0000:00/0000:00:01.0/0000:01:00.1/net/eth0",
                "01/00.1",
                "/net/eth0",
            ),
            (
                "/devices/pci0000:10/0000:10:00.0/0000:11:00.0",
                "pci0000:10/00/00",
                "",
            ),
        ];
        for (dp, path, rest) in cases {
            let (got, end) = PciPath::from_devpath(dp).unwrap().unwrap();
            assert_eq!(got.to_string(), path, "{dp}");
            assert_eq!(&dp[end..], rest, "{dp}");
        }
        for dp in [
            "/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1",
            "/devices/pci0000:00",
            "/module/virtio",
            "",
        ] {
            assert_eq!(PciPath::from_devpath(dp), Ok(None), "{dp}");
        }
        assert!(PciPath::from_devpath("/devices/pci0000:00/0001:00:02.0").is_err());
    }

    #[test]
    fn a_bridge_sorts_before_what_is_behind_it() {
        let mut v = [
            p("03/00/01"),
            p("04"),
            p("03"),
            p("03/00"),
            p("pci0000:10/00"),
            p("02/00.1"),
            p("02/00"),
        ];
        v.sort();
        let s: Vec<String> = v.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            s,
            [
                "02/00",
                "02/00.1",
                "03",
                "03/00",
                "03/00/01",
                "04",
                "pci0000:10/00"
            ]
        );
        assert!(p("03/00/01").starts_with(&p("03/00")));
        assert!(!p("03/00").starts_with(&p("03/00/01")));
        assert_eq!(p("03/00/01").parent(), Some(p("03/00")));
        assert_eq!(p("06").parent(), None);
    }

    #[test]
    fn bdfs_parse_exactly_the_sysfs_form() {
        let b: Bdf = "0000:01:00.0".parse().unwrap();
        assert_eq!(b.to_string(), "0000:01:00.0");
        for bad in [
            "0000:01:00",
            "0000:01:20.0",
            "0000:01:00.8",
            "000:001:00.0",
            "virtio0",
        ] {
            assert!(bad.parse::<Bdf>().is_err(), "{bad}");
        }
    }

    fn arb_path() -> impl Strategy<Value = PciPath> {
        let hop = (0u8..=0x1f, 0u8..=7).prop_map(|(s, f)| Hop::new(s, f).unwrap());
        let root = prop_oneof![
            3 => Just(RootComplex::DEFAULT),
            1 => (any::<u16>(), any::<u8>()).prop_map(|(domain, bus)| RootComplex { domain, bus }),
            1 => (0x20u8..).prop_map(|bus| RootComplex { domain: 0, bus }),
        ];
        (root, proptest::collection::vec(hop, 1..=MAX_HOPS))
            .prop_map(|(r, h)| PciPath::new(r, &h).unwrap())
    }

    /// One spelling of `hop`, chosen from those the module docs list: one or two digits, either
    /// case, `.0` spelt out or not.
    fn arb_hop_spelling(hop: Hop) -> impl Strategy<Value = String> {
        let (slot, func) = (hop.slot(), hop.function());
        (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(move |(short, upper, dot0)| {
            let mut s = if short && slot < 0x10 {
                format!("{slot:x}")
            } else {
                format!("{slot:02x}")
            };
            if upper {
                s.make_ascii_uppercase();
            }
            if func != 0 || dot0 {
                s.push_str(&format!(".{func}"));
            }
            s
        })
    }

    /// Any accepted spelling of `path`, generated from it: each hop spelt its own way, and the
    /// root complex spelt out, left out (the default one) or in Kata's expander form (a root
    /// bus of 20 or more in domain 0 with at least two hops).
    fn arb_spelling(path: PciPath) -> impl Strategy<Value = String> {
        let hops: Vec<_> = path.hops().iter().map(|&h| arb_hop_spelling(h)).collect();
        let root = path.root();
        let kata_form = root.domain == 0 && root.bus >= 0x20 && path.len() >= 2;
        (hops, any::<bool>(), any::<bool>()).prop_map(move |(hops, spell_root, upper)| {
            let hops = hops.join("/");
            if root == RootComplex::DEFAULT && !spell_root {
                hops
            } else if kata_form && !spell_root {
                let bus = format!("{:02x}", root.bus);
                let bus = if upper { bus.to_ascii_uppercase() } else { bus };
                format!("{bus}/{hops}")
            } else {
                format!("{root}/{hops}")
            }
        })
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(path in arb_path()) {
            let s = path.to_string();
            prop_assert_eq!(s.parse::<PciPath>().unwrap(), path);
        }

        #[test]
        fn child_then_parent_is_the_identity(path in arb_path(), slot in 0u8..=0x1f, f in 0u8..=7) {
            let hop = Hop::new(slot, f).unwrap();
            match path.child(hop) {
                Some(child) => {
                    prop_assert_eq!(child.len(), path.len() + 1);
                    prop_assert_eq!(child.hops().last(), Some(&hop));
                    prop_assert_eq!(child.parent(), Some(path));
                }
                None => prop_assert_eq!(path.len(), MAX_HOPS),
            }
        }

        #[test]
        fn every_spelling_of_a_path_parses_to_it_and_prints_canonically(
            (path, spelling) in arb_path().prop_flat_map(|p| (Just(p), arb_spelling(p)))
        ) {
            let parsed: PciPath = spelling.parse().map_err(|e| {
                TestCaseError::fail(format!("{spelling:?}: {e}"))
            })?;
            prop_assert_eq!(parsed, path, "{}", spelling);
            prop_assert_eq!(parsed.to_string(), path.to_string());
        }

        #[test]
        fn parsing_any_string_never_panics(s in "\\PC{0,40}") {
            let _ = s.parse::<PciPath>();
        }

        #[test]
        fn parsed_strings_print_back_canonically(s in "(pci000[01]:[01]0/)?[01][0-9a-f](\\.[0-7])?(/[01][0-9a-f](\\.[0-7])?){0,4}") {
            let path: PciPath = s.parse().unwrap();
            let canon = path.to_string();
            prop_assert_eq!(canon.parse::<PciPath>().unwrap(), path);
        }
    }
}
