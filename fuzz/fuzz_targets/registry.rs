//! The registry fed sequences of datagrams built from the real recordings' shapes, with its
//! invariants checked after every step (see `tests/common/registry_ops.rs`).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use pciplug::Recording;

#[path = "../../tests/common/registry_ops.rs"]
mod registry_ops;

static TEMPLATES: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let recordings = [
        include_str!("../../fixtures/real-hotplug/q35-acpi-hotplug.uevents"),
        include_str!("../../fixtures/real-hotplug/q35-nvme-multipath-off.uevents"),
        include_str!("../../fixtures/real-hotplug/q35-coldplug-trigger.uevents"),
        include_str!("../../fixtures/real-hotplug/pc-i440fx-hotplug.uevents"),
        include_str!("../../fixtures/real-hotplug/q35-root-bus-negative.uevents"),
    ]
    .map(|text| Recording::parse(text, "fixture").expect("the fixtures parse"));
    registry_ops::templates(&recordings)
});

fuzz_target!(|data: &[u8]| {
    registry_ops::run(&TEMPLATES, data);
});
