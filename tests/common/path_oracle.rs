//! What must hold for any string as a PCI path, a devpath or a bus address: parsing never
//! panics, and what parses prints back to itself.
//!
//! Shared by the `pci_path` fuzz target (which includes this file by path) and its
//! deterministic equivalent in `tests/fuzz_equivalents.rs`. Depends only on pciplug and std.
#![allow(dead_code)]

use pciplug::{Bdf, MAX_HOPS, PciPath, RootComplex};

/// Checks one input; panics with what broke.
pub fn check(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match s.parse::<PciPath>() {
        Ok(p) => {
            let printed = p.to_string();
            assert_eq!(
                printed.parse::<PciPath>(),
                Ok(p),
                "{s:?} printed {printed:?}"
            );
            assert!((1..=MAX_HOPS).contains(&p.len()));
            for h in p.hops() {
                assert!(h.slot() <= 0x1f && h.function() <= 7);
            }
            // The parents are the bridges on the way, each sorting before what is behind it.
            let mut q = p;
            while let Some(parent) = q.parent() {
                assert!(q.starts_with(&parent) && parent < q && parent.len() + 1 == q.len());
                q = parent;
            }
        }
        Err(e) => assert!(e.to_string().starts_with("invalid PCI path "), "{e}"),
    }
    match PciPath::from_devpath(s) {
        Ok(Some((p, end))) => {
            assert!(
                end <= s.len() && s.is_char_boundary(end),
                "{s:?}: end {end}"
            );
            // The prefix up to the function is the function's devpath, at the same path.
            let prefix = &s[..end];
            assert_eq!(PciPath::from_devpath(prefix), Ok(Some((p, end))));
            let last: Bdf = prefix
                .rsplit('/')
                .next()
                .and_then(|c| c.parse().ok())
                .expect("a path ends at a bus address");
            assert_eq!(p.hops().last(), Some(&last.hop()));
            assert_eq!(p.to_string().parse::<PciPath>(), Ok(p));
        }
        Ok(None) => {}
        Err(e) => assert!(e.to_string().starts_with("device path "), "{e}"),
    }
    if let Ok(b) = s.parse::<Bdf>() {
        assert_eq!(b.to_string().parse::<Bdf>(), Ok(b));
        assert!(b.to_string().eq_ignore_ascii_case(s), "{s:?} printed {b}");
    }
    if let Some(rc) = RootComplex::from_sysfs_name(s) {
        assert!(rc.to_string().eq_ignore_ascii_case(s), "{s:?} printed {rc}");
    }
}
