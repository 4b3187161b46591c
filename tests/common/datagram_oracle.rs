//! What must hold for any datagram whatever its bytes: parsing never panics, what is believed
//! was checked, and the registry counts it once and changes nothing for what it refuses.
//!
//! Shared by the `datagram` fuzz target (which includes this file by path) and its
//! deterministic equivalent in `tests/fuzz_equivalents.rs`. Depends only on pciplug and std.
#![allow(dead_code)]

use pciplug::netlink::{MAX_DATAGRAM, filter};
use pciplug::{Datagram, Outcome, Registry, is_safe_device_name};

/// Checks one datagram; panics with what broke.
pub fn check(data: &[u8]) {
    let parsed = Datagram::parse(data);
    match &parsed {
        Ok(Datagram::Relevant(u)) => {
            // Believed only if it has the kernel's shape.
            assert!(data.len() <= MAX_DATAGRAM && data.last() == Some(&0));
            assert!(!data.starts_with(b"libudev\0"));
            let text = std::str::from_utf8(data).expect("a believed datagram is UTF-8");
            let header = text.split('\0').next().unwrap_or_default();
            assert_eq!(header, format!("{}@{}", u.action(), u.devpath()));
            assert_eq!(u.get("ACTION"), Some(u.action().as_str()));
            assert_eq!(u.get("DEVPATH"), Some(u.devpath()));
            assert_eq!(u.get("SUBSYSTEM"), Some(u.subsystem()));
            let dp = u.devpath();
            // A VFIO group's own event, or one of the subsystems kept below a PCI function.
            let vfio_group = dp
                .strip_prefix("/devices/virtual/vfio/")
                .filter(|g| !g.starts_with('0') || *g == "0")
                .and_then(|g| g.parse::<u32>().ok().filter(|_| !g.starts_with('+')));
            match vfio_group {
                Some(_) => assert_eq!(u.subsystem(), "vfio"),
                None => assert!(["pci", "block", "net", "nvme"].contains(&u.subsystem())),
            }
            assert!(u.seqnum().is_some());
            assert!(
                dp.starts_with('/')
                    && dp[1..]
                        .split('/')
                        .all(|c| !c.is_empty() && c != "." && c != ".."),
                "devpath {dp:?} believed"
            );
            if let (Some(group), Some(v)) = (vfio_group, u.get("DEVNAME")) {
                assert_eq!(v, format!("vfio/{group}"), "DEVNAME={v:?} believed");
            }
            for key in ["DEVNAME", "INTERFACE"] {
                if let Some(v) = u
                    .get(key)
                    .filter(|_| key == "INTERFACE" || vfio_group.is_none())
                {
                    assert!(is_safe_device_name(v), "{key}={v:?} believed");
                }
            }
            for key in ["MAJOR", "MINOR", "DISKSEQ", "PARTN", "IFINDEX"] {
                if let Some(v) = u.get(key) {
                    assert!(v.parse::<u64>().is_ok(), "{key}={v:?} believed");
                }
            }
            // The socket's subsystem filter never drops what the registry believes, when its
            // fields come in the kernel's order (ACTION, DEVPATH, SUBSYSTEM first) and
            // SUBSYSTEM only once: the filter reads the third field, the registry the last
            // SUBSYSTEM (netlink::filter says why the kernel never sends another).
            let fields: Vec<&str> = text.split('\0').skip(1).collect();
            let kernel_order = fields.len() >= 3
                && fields[0].starts_with("ACTION=")
                && fields[1].starts_with("DEVPATH=")
                && fields[2].starts_with("SUBSYSTEM=")
                && fields[3..].iter().all(|f| !f.starts_with("SUBSYSTEM="));
            if kernel_order {
                assert!(filter::passes(data), "the filter drops a believed datagram");
            }
        }
        Ok(Datagram::Ignored(_)) => {}
        Err(e) => {
            assert!(!e.kind().is_empty());
            assert!(!e.to_string().is_empty());
        }
    }

    let mut reg = Registry::new();
    let out = reg.apply_datagram(0, data);
    match (&parsed, &out) {
        (Err(a), Outcome::Malformed(b)) => assert_eq!(a, b),
        (Ok(Datagram::Ignored(a)), Outcome::Ignored(b)) => assert_eq!(a, b),
        (Ok(Datagram::Relevant(_)), Outcome::Applied(_) | Outcome::Unplaceable(_)) => {}
        _ => panic!("parse gave {parsed:?} but the registry {out:?}"),
    }
    if !matches!(out, Outcome::Applied(_)) {
        assert!(reg.is_empty(), "refused ({out:?}) yet held");
    }
    let s = reg.stats();
    assert_eq!(s.received, 1);
    assert_eq!(
        s.applied + s.ignored + s.malformed + s.spoofed + s.unplaceable,
        1,
        "{s:?}"
    );
    // Whatever was held has names that are safe to put after /dev/.
    for v in reg.views() {
        for b in &v.block {
            assert!(is_safe_device_name(&b.name), "block name {:?}", b.name);
            assert_eq!(b.devnode(), format!("/dev/{}", b.name));
        }
        for n in v.net {
            assert!(is_safe_device_name(&n.name), "net name {:?}", n.name);
        }
        let _ = reg.describe(&v.path);
    }
    for (_, h) in reg.unresolved_nvme_heads() {
        assert!(is_safe_device_name(&h.name), "head name {:?}", h.name);
    }
    // From a process, the same bytes are never believed.
    let mut reg = Registry::new();
    assert!(matches!(
        reg.apply_datagram(1, data),
        Outcome::Spoofed { sender: 1 }
    ));
    assert!(reg.is_empty());
}
