//! Parsing a [`PciPath`] from every spelling `PciPath`'s docs list; the errors that name the
//! bad part.

use std::str::FromStr;

use super::{Hop, MAX_HOPS, PciPath, RootComplex};
use crate::hex;

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

    /// Parses every accepted spelling (see [`PciPath`'s accepted spellings](crate::PciPath#accepted-spellings)).
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
            } else if let Some(bus) = expander_bus(first).filter(|_| segments >= 3) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::tests::{arb_path, p};
    use proptest::prelude::*;

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
        // The table of `PciPath`'s docs, row by row.
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

    /// One spelling of `hop`, chosen from those `PciPath`'s docs list: one or two digits, either
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
