//! A driver for sampling profiles of the listener thread (`pciplug-uevents`) in a storm, not
//! a benchmark: it prints no time.
//!
//! `cargo build --release --example profile_listener`, then
//! `perf record -e cpu-clock -F 20000 -o listener.data target/release/examples/profile_listener 50`
//! and `perf report -i listener.data --comm pciplug-uevents --percentage relative --no-children --sort sym`.
//! Runs in a private user + network namespace (as the benches do), starts a `Monitor` with no
//! coldplug on an empty sysfs, and injects the waiters bench's stream (synthetic virtio-blk
//! hot-plugs and unplugs, 4,200 datagrams) the given number of times, as fast as one thread
//! goes, waiting for the listener to have received each pass before the next.

#[path = "../benches/common/mod.rs"]
mod common;

use std::time::Duration;

use common::netns::{self, wait_until};
use common::synth::{self, Shapes};
use pciplug::Monitor;
use pciplug::testing::Injector;

fn main() {
    netns::in_private_netns("profile_listener", run);
}

fn run() {
    let passes: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("a number of passes"))
        .unwrap_or(20);
    // The waiters bench's stream (`stream` in `benches/waiters.rs`).
    let stream = synth::hotplug_cycles(&Shapes::load(), 300);
    let sysfs = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(sysfs.path().join("bus/pci/devices")).unwrap();
    let monitor = Monitor::builder()
        .sysfs_root(sysfs.path())
        .coldplug(false)
        .start()
        .expect("starting a monitor");
    let injector = Injector::new().expect("an injector");
    // What the listener's socket receives of each pass: its subsystem filter drops the rest.
    let kept = stream.iter().filter(|d| synth::kept(d)).count() as u64;
    let (mut sent, mut expected) = (0u64, 0u64);
    for _ in 0..passes {
        for d in &stream {
            injector.inject(d).expect("the kernel takes the uevent");
        }
        sent += stream.len() as u64;
        expected += kept;
        assert!(
            wait_until(Duration::from_secs(60), || monitor
                .with_registry(|r| r.stats().received)
                >= expected),
            "the listener did not receive everything"
        );
    }
    let stats = monitor.stats();
    println!(
        "profile_listener: {sent} datagrams injected, {expected} kept by the filter, {} overflows",
        stats.overflows
    );
    monitor.shutdown();
}
