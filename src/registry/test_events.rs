//! Events built from parts for the registry's unit tests.

use std::collections::HashMap;

use crate::path::PciPath;
use crate::uevent::{Action, Uevent};

pub(super) fn ev(action: Action, devpath: &str, subsystem: &str, kv: &[(&str, &str)]) -> Uevent {
    let env: HashMap<String, String> = kv
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Uevent::from_parts(action, devpath, subsystem, Some(1), env).unwrap()
}

pub(super) const FN: &str = "/devices/pci0000:00/0000:00:02.0/0000:01:00.0";

pub(super) fn p(s: &str) -> PciPath {
    s.parse().unwrap()
}

pub(super) fn vda(seq: &str) -> Uevent {
    ev(
        Action::Add,
        &format!("{FN}/virtio0/block/vda"),
        "block",
        &[
            ("DEVNAME", "vda"),
            ("DEVTYPE", "disk"),
            ("DISKSEQ", seq),
            ("MAJOR", "254"),
            ("MINOR", "0"),
        ],
    )
}
