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
