//! The shipped real recordings: one list for the tests and the benches (which include this
//! file with `#[path]`).

use std::path::PathBuf;

/// Every shipped real recording.
pub const FIXTURES: [&str; 5] = [
    "q35-acpi-hotplug",
    "q35-nvme-multipath-off",
    "q35-coldplug-trigger",
    "pc-i440fx-hotplug",
    "q35-root-bus-negative",
];

/// The file of recording `name`.
pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/real-hotplug/{name}.uevents"))
}

/// The records of the shipped recording `file` (relative to `fixtures/`, e.g.
/// `real-hotplug-2/q35-pxb-pcie.uevents`) up to and including step `last`.
pub fn records_up_to(file: &str, last: u32) -> Vec<pciplug::recording::Record> {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(file);
    let recording = pciplug::Recording::read(&file).unwrap();
    let records: Vec<_> = recording
        .records
        .into_iter()
        .filter(|r| r.step.is_some_and(|s| s <= last))
        .collect();
    assert!(
        !records.is_empty(),
        "{} has steps 0..={last}",
        file.display()
    );
    records
}
