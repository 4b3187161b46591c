//! [`PciPath`]: the address of a PCI function that host and guest agree on, and [`Bdf`].
//!
//! A PCI path lists the slot of every bridge from the root bus down to the device, then the
//! device's own slot, as two hex digits each, separated by `/`: `02/00` is slot 0 behind the
//! bridge in slot 2 of the root bus, `06` is slot 6 of the root bus itself. A hop may name a
//! function other than 0 as `.F` (`02/00.1`); `.0` is the default and is never printed.
//!
//! Guest bus numbers are given out by enumeration and move when bridges are added, so a path
//! never contains one: it is computed from the chain of PCI functions in a device's sysfs path
//! (`/devices/pci0000:00/0000:00:02.0/0000:01:00.0/...` is `02/00`).
//!
//! # Other root complexes
//!
//! Almost every guest has one root complex, `pci0000:00`, and its paths carry no prefix. A
//! device under any other root complex (a PCI expander bridge such as QEMU's `pxb-pcie`, or
//! another PCI domain) is written with that root complex's sysfs name first:
//! `pci0000:10/02/00`. That form can never be mistaken for a root-bus-0 path, because a hop is
//! always exactly two hex digits. `pci0000:00/02/00` is accepted as another spelling of `02/00`.

use std::fmt;
use std::str::FromStr;

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
            domain: hex_u16(&b[0..4])?,
            bus: hex_u8(&b[5..7])?,
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
        let mut hops = [Hop(0); MAX_HOPS];
        let mut len = 0usize;
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
                        if len == MAX_HOPS {
                            return Err(DevpathError::new(devpath, "more than 16 PCI hops"));
                        }
                        hops[len] = bdf.hop();
                        len += 1;
                        end = comp_end;
                    }
                    Err(_) => break,
                },
            }
        }
        match (root, len) {
            (Some(root), 1..) => Ok(PciPath::new(root, &hops[..len]).map(|p| (p, end))),
            _ => Ok(None),
        }
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

    fn from_str(s: &str) -> Result<PciPath, ParsePciPathError> {
        if s.is_empty() {
            return Err(ParsePciPathError::new(s, "empty"));
        }
        let mut parts = s.split('/').peekable();
        let mut root = RootComplex::DEFAULT;
        if let Some(first) = parts.peek() {
            if first.starts_with("pci") {
                root = RootComplex::from_sysfs_name(first).ok_or_else(|| {
                    ParsePciPathError::new(
                        s,
                        format!("root complex {first:?} is not of the form pciDDDD:BB"),
                    )
                })?;
                parts.next();
            }
        }
        let mut hops = [Hop(0); MAX_HOPS];
        let mut len = 0;
        for (i, part) in parts.enumerate() {
            let n = i + 1;
            if len == MAX_HOPS {
                return Err(ParsePciPathError::new(
                    s,
                    format!("more than {MAX_HOPS} hops"),
                ));
            }
            hops[len] = parse_hop(part)
                .map_err(|why| ParsePciPathError::new(s, format!("hop {n} {part:?} {why}")))?;
            len += 1;
        }
        PciPath::new(root, &hops[..len])
            .ok_or_else(|| ParsePciPathError::new(s, "no slot after the root complex"))
    }
}

fn parse_hop(part: &str) -> Result<Hop, &'static str> {
    let (slot, func) = match part.split_once('.') {
        Some((slot, func)) => (slot, Some(func)),
        None => (part, None),
    };
    if slot.len() != 2 {
        return Err("is not a two-digit hex slot");
    }
    let slot = hex_u8(slot.as_bytes()).ok_or("is not a two-digit hex slot")?;
    if slot > 0x1f {
        return Err("has a slot above 1f");
    }
    let func = match func {
        None => 0,
        Some(f) if f.len() == 1 && (b'0'..=b'7').contains(&f.as_bytes()[0]) => {
            f.as_bytes()[0] - b'0'
        }
        Some(_) => return Err("has a function that is not one digit 0-7"),
    };
    Ok(Hop::new(slot, func).expect("slot and function were range-checked"))
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
        let domain = hex_u16(&b[0..4]).ok_or(())?;
        let bus = hex_u8(&b[5..7]).ok_or(())?;
        let slot = hex_u8(&b[8..10]).ok_or(())?;
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

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn hex_u8(b: &[u8]) -> Option<u8> {
    match b {
        [h, l] => Some(hex_digit(*h)? << 4 | hex_digit(*l)?),
        _ => None,
    }
}

fn hex_u16(b: &[u8]) -> Option<u16> {
    match b {
        [a, b2, c, d] => Some((hex_u8(&[*a, *b2])? as u16) << 8 | hex_u8(&[*c, *d])? as u16),
        _ => None,
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
    fn errors_name_the_bad_part() {
        let err = |s: &str| s.parse::<PciPath>().unwrap_err().to_string();
        assert_eq!(err(""), r#"invalid PCI path "": empty"#);
        assert_eq!(
            err("02/zz"),
            r#"invalid PCI path "02/zz": hop 2 "zz" is not a two-digit hex slot"#
        );
        assert!(err("02/20").contains(r#"hop 2 "20" has a slot above 1f"#));
        assert!(err("2/00").contains(r#"hop 1 "2" is not a two-digit hex slot"#));
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
        ];
        (root, proptest::collection::vec(hop, 1..=MAX_HOPS))
            .prop_map(|(r, h)| PciPath::new(r, &h).unwrap())
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(path in arb_path()) {
            let s = path.to_string();
            prop_assert_eq!(s.parse::<PciPath>().unwrap(), path);
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
