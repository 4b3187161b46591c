//! [`PciPath`]: the address of a PCI function that host and guest agree on, and [`Bdf`].

use std::fmt;
use std::str::FromStr;

use crate::hex;

mod bdf;
mod parse;

pub use bdf::Bdf;
pub use parse::ParsePciPathError;

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
/// // Other spellings a host sends (see "Accepted spellings" below) print canonically.
/// assert_eq!("3.0/4.0".parse::<PciPath>().unwrap().to_string(), "03/04");
/// assert_eq!("20/00/02".parse::<PciPath>().unwrap().to_string(), "pci0000:20/00/02");
/// ```
///
/// # Format
///
/// A PCI path lists the slot of every bridge from the root bus down to the device, then the
/// device's own slot, in hex, separated by `/`: `02/00` is slot 0 behind the bridge in slot 2
/// of the root bus, `06` is slot 6 of the root bus itself. A hop may name a function other
/// than 0 as `.F` (`02/00.1`).
///
/// Guest bus numbers are given out by enumeration and move when bridges are added, so a path
/// never contains one: it is computed from the chain of PCI functions in a device's sysfs path
/// (`/devices/pci0000:00/0000:00:02.0/0000:01:00.0/...` is `02/00`).
///
/// # Other root complexes
///
/// Almost every guest has one root complex, `pci0000:00`, and its paths carry no prefix. A
/// device under any other root complex (a PCI expander bridge such as QEMU's `pxb-pcie`, or
/// another PCI domain, such as Cloud Hypervisor's `pci_segment=1`) is printed with that root
/// complex's sysfs name first: `pci0000:10/02/00`, `pci0001:00/05`. That form can never be
/// mistaken for a root-bus-0 path: a hop never starts with `pci`.
///
/// # Accepted spellings
///
/// Hosts write paths in several ways (Kata Containers' runtime and agent among them). Each of
/// these parses to the same [`PciPath`], which always prints in the canonical form:
///
/// | spelling | canonical | what it is |
/// |---|---|---|
/// | `02/00` | `02/00` | the canonical form: two lower-case hex digits a hop |
/// | `2/0`, `3/4` | `02/00`, `03/04` | one-digit hops (Kata's `SlotFn` accepts them) |
/// | `0A/1F` | `0a/1f` | upper-case hex |
/// | `03.0/04.0` | `03/04` | an explicit function 0 (how Kata's `pci::Path` prints) |
/// | `02/00.1` | `02/00.1` | function 1: a function other than 0 is always printed |
/// | `pci0000:00/02/00` | `02/00` | the default root complex spelt out |
/// | `pci0000:10/02/00` | `pci0000:10/02/00` | another root bus (a `pxb-pcie` with `bus_nr=0x10`) |
/// | `20/00/02` | `pci0000:20/00/02` | Kata's expander-bridge form: see below |
/// | `pci0001:00/05` | `pci0001:00/05` | PCI segment (domain) 1 |
///
/// **Kata's expander-bridge form.** In a path of three or more `/`-separated parts whose
/// first part is exactly two hex digits worth `20` or more, that first part is the root bus
/// number in domain 0, not a slot (no slot is above `1f`): `20/00/02` is
/// `pci0000:20/00/02`. This is the rule of Kata's agent (`pcipath_from_dev_tree_path`), whose
/// runtime numbers its `pxb-pcie` buses from 0x20. Hence what stays an error:
///
/// - `20` and `20/00`: with fewer than three parts a first part of `20` or more is a slot, and
///   above `1f` (Kata's agent refuses them too); write `pci0000:20/00`.
/// - `20.0/00/02`: a root bus number has no function.
/// - `pci0000:00/20/00/02`: after an explicit root complex every part is a hop.
/// - `10/02/00` is slot `10` of root bus 0 and its descendants, never root bus 0x10: a root bus
///   below 0x20 has no short form, write `pci0000:10/02/00`.
///
/// A hop is one or two hex digits, at most `1f`, optionally `.F` with `F` in `0`..`7`; three
/// digits (`003`), a sign or spaces are refused. A bus address (`0000:01:00.0` or `01:00.0`)
/// given by mistake gets an error saying it is one and that `pciplug list` shows each
/// device's path. Any other error names the bad hop.
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
        PciPath::from_devpath_after(devpath, None)
    }

    /// [`PciPath::from_devpath`], resuming after `known`: what it returned, `(path, end)`,
    /// for `devpath[..end]`, where `devpath` goes on with a slash (or ends). The walk is
    /// left to right and each step depends only on what is before it, so the answer is the
    /// same as from the start; the caller checks that `known` is `devpath`'s.
    pub(crate) fn from_devpath_after(
        devpath: &str,
        known: Option<(PciPath, usize)>,
    ) -> Result<Option<(PciPath, usize)>, DevpathError> {
        let b = devpath.as_bytes();
        let (rc, mut at, mut path, mut end) = match known {
            Some((path, end)) => (path.root, end + 1, Some(path), end),
            None => {
                // The root complex: the first component that names one. Neither of
                // `/devices/`'s two components can, and nearly every devpath starts with them.
                let mut at = if devpath.starts_with("/devices/") {
                    9
                } else {
                    0
                };
                let rc = loop {
                    let comp_end = crate::devpath::find_byte(b, at, b'/');
                    let found = RootComplex::from_sysfs_name(&devpath[at..comp_end]);
                    at = comp_end + 1;
                    match found {
                        Some(rc) => break rc,
                        None if comp_end == b.len() => return Ok(None),
                        None => {}
                    }
                };
                (rc, at, None, 0)
            }
        };
        // Then its functions, one `dddd:bb:ss.f` component after another, up to the first
        // component that is not one. A function's component is twelve bytes: no search for
        // the next slash (that search and `split('/')` before it were a third of the apply).
        while let Some(comp) = devpath.get(at..at + 12) {
            if b.get(at + 12).is_some_and(|&c| c != b'/') {
                break; // a longer component
            }
            let Ok(bdf) = Bdf::from_str(comp) else {
                break;
            };
            if bdf.domain != rc.domain {
                return Err(DevpathError::new(devpath, "PCI domain changes below root"));
            }
            path = Some(match path {
                None => PciPath::on_root(rc, bdf.hop()),
                Some(bridge) => bridge
                    .child(bdf.hop())
                    .ok_or_else(|| DevpathError::new(devpath, "more than 16 PCI hops"))?,
            });
            end = at + 12;
            at = end + 1;
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

#[cfg(feature = "serde")]
impl serde::Serialize for PciPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(super) fn p(s: &str) -> PciPath {
        s.parse().unwrap()
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
        let chain = |n: usize| {
            let fns: Vec<String> = (0..n).map(|i| format!("0000:{i:02x}:01.0")).collect();
            format!("/devices/pci0000:00/{}/virtio0", fns.join("/"))
        };
        for dp in [
            chain(16),
            chain(17),
            chain(1),
            "/devices/pci0000:00/".to_owned(),
        ] {
            assert_eq!(
                PciPath::from_devpath(&dp),
                from_devpath_by_split(&dp),
                "{dp}"
            );
        }
        assert!(PciPath::from_devpath(&chain(17)).is_err());
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

    pub(super) fn arb_path() -> impl Strategy<Value = PciPath> {
        let hop = (0u8..=0x1f, 0u8..=7).prop_map(|(s, f)| Hop::new(s, f).unwrap());
        let root = prop_oneof![
            3 => Just(RootComplex::DEFAULT),
            1 => (any::<u16>(), any::<u8>()).prop_map(|(domain, bus)| RootComplex { domain, bus }),
            1 => (0x20u8..).prop_map(|bus| RootComplex { domain: 0, bus }),
        ];
        (root, proptest::collection::vec(hop, 1..=MAX_HOPS))
            .prop_map(|(r, h)| PciPath::new(r, &h).unwrap())
    }

    /// `from_devpath` as it was written before its search was: `split('/')`.
    fn from_devpath_by_split(devpath: &str) -> Result<Option<(PciPath, usize)>, DevpathError> {
        let (mut root, mut path, mut end, mut offset) = (None, None::<PciPath>, 0, 0);
        for comp in devpath.split('/') {
            let comp_end = offset + comp.len();
            offset = comp_end + 1;
            match root {
                None => root = RootComplex::from_sysfs_name(comp),
                Some(rc) => match Bdf::from_str(comp) {
                    Ok(bdf) if bdf.domain != rc.domain => {
                        return Err(DevpathError::new(devpath, "PCI domain changes below root"));
                    }
                    Ok(bdf) => {
                        path = Some(match path {
                            None => PciPath::on_root(rc, bdf.hop()),
                            Some(b) => b.child(bdf.hop()).ok_or_else(|| {
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

    proptest! {
        #[test]
        fn from_devpath_splits_as_split_does(
            comps in proptest::collection::vec(prop_oneof![
                Just("".to_owned()),
                Just("devices".to_owned()),
                Just("pci0000:00".to_owned()),
                Just("pci0001:00".to_owned()),
                Just("virtio0".to_owned()),
                Just("block".to_owned()),
                "000[01]:0[0-3]:[01][0-9a-f]\\.[0-8]",
                "[a-z0-9:.]{0,13}",
            ], 0..24)
        ) {
            let dp = comps.join("/");
            prop_assert_eq!(PciPath::from_devpath(&dp), from_devpath_by_split(&dp), "{}", dp);
            let abs = format!("/{dp}");
            prop_assert_eq!(PciPath::from_devpath(&abs), from_devpath_by_split(&abs), "{}", abs);
        }

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
    }
}
