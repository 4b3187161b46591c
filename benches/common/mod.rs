//! Shared bench helpers: a counting allocator, the real recordings, synthetic devices built
//! from real datagram shapes, criterion settings and estimates, and running a bench body in a
//! private user + network namespace for kernel injection.
#![allow(dead_code)] // each bench binary uses its own subset

pub mod alloc;
pub mod kata;
pub mod netns;
pub mod synth;

#[path = "../../tests/common/fixtures.rs"]
mod fixtures;
#[path = "../../tests/common/gate.rs"]
pub mod gate;
#[allow(unused_imports)] // as dead_code above: each binary uses its own subset
pub use fixtures::{BENCH_FIXTURES, fixture_path};

use std::path::PathBuf;
use std::time::Duration;

use criterion::Criterion;
use pciplug::Recording;

/// The datagrams of the benches' real recordings (`BENCH_FIXTURES`, the first five), one `Vec`
/// per recording (each is one guest), as `(sender port, bytes)`.
pub fn real_recordings() -> Vec<Vec<(u32, Vec<u8>)>> {
    BENCH_FIXTURES
        .iter()
        .map(|name| {
            Recording::read(fixture_path(name))
                .expect("reading a shipped recording")
                .records
                .into_iter()
                .map(|r| (r.sender, r.datagram))
                .collect()
        })
        .collect()
}

/// Criterion with the settings every bench here uses: few samples and short measurement
/// times, so that `cargo bench` runs all five benches in well under 15 minutes on 2 cores.
/// Each figure is then reported as the median of several whole runs (see BENCHMARKS.md).
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .without_plots()
        .configure_from_args()
}

/// Criterion's median time per iteration, in nanoseconds, of benchmark `group/id` of this
/// run, read back from criterion's `new/estimates.json`.
pub fn estimate_ns(group: &str, id: &str) -> Option<f64> {
    let home = std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("criterion"))
        })
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/criterion"));
    let file = home.join(group).join(id).join("new/estimates.json");
    let text = std::fs::read_to_string(file).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

/// The machine, for the report: `nproc` and the CPU model.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("nproc {cpus}, {model}")
}

/// A value rounded for a report line.
pub fn fmt_ns(ns: f64) -> String {
    if ns >= 10_000.0 {
        format!("{:.1} us", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}
