//! The shipped real recordings, each with its folder under `fixtures/`: one list for the tests,
//! and the original five for the benches (which include this file with `#[path]`).

use std::path::PathBuf;

/// Every shipped real recording, as `(folder under fixtures/, name)`.
pub const RECORDINGS: [(&str, &str); 16] = [
    ("real-hotplug", "q35-acpi-hotplug"),
    ("real-hotplug", "q35-nvme-multipath-off"),
    ("real-hotplug", "q35-coldplug-trigger"),
    ("real-hotplug", "pc-i440fx-hotplug"),
    ("real-hotplug", "q35-root-bus-negative"),
    ("real-hotplug-2", "q35-scsi-multi-lun"),
    ("real-hotplug-2", "q35-multifunction"),
    ("real-hotplug-2", "q35-pcie-switch"),
    ("real-hotplug-2", "q35-pxb-pcie"),
    ("real-hotplug-2", "q35-no-child-device"),
    ("real-hotplug-2", "q35-vfio-bind"),
    ("real-hotplug-2", "q35-storm-16"),
    ("real-hotplug-2", "arm64-virt-dt"),
    ("real-hotplug-2", "q35-nvme-namespaces"),
    ("real-hotplug-2", "q35-virtio-pmem"),
    ("real-hotplug-ch", "ch-pci-segments"),
];

/// The names of every shipped real recording (those of [`RECORDINGS`]).
pub const FIXTURES: [&str; RECORDINGS.len()] = names(RECORDINGS);

/// The recordings the benches measure: the first five, those their published figures were
/// taken on (BENCHMARKS.md), kept apart so that adding recordings does not move the figures.
pub const BENCH_FIXTURES: [&str; 5] = [
    "q35-acpi-hotplug",
    "q35-nvme-multipath-off",
    "q35-coldplug-trigger",
    "pc-i440fx-hotplug",
    "q35-root-bus-negative",
];

const fn names<const N: usize>(recordings: [(&'static str, &'static str); N]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = recordings[i].1;
        i += 1;
    }
    out
}

/// The file of recording `name`.
///
/// # Panics
/// If `name` is not in [`RECORDINGS`].
pub fn fixture_path(name: &str) -> PathBuf {
    let (folder, _) = RECORDINGS
        .iter()
        .find(|(_, n)| *n == name)
        .unwrap_or_else(|| panic!("no shipped recording named {name}"));
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/{folder}/{name}.uevents"))
}
