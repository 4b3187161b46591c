//! [`Bdf`]: a PCI function's address as the guest kernel numbers it.

use std::fmt;
use std::str::FromStr;

use super::Hop;
use crate::hex;

/// A PCI address as the guest kernel numbers it: `domain:bus:slot.function` (`0000:01:00.0`).
///
/// The bus number is the guest's enumeration and may change; use [`PciPath`](super::PciPath)
/// to name a device across host and guest, and a `Bdf` only to report where it currently is.
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

#[cfg(feature = "serde")]
impl serde::Serialize for Bdf {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
