//! A driver for instruction-count profiles of `Registry::apply_datagram` (the listener's
//! parse + apply), not a benchmark: it prints no time.
//!
//! `cargo build --release --example profile_apply`, then
//! `valgrind --tool=callgrind --toggle-collect='*Registry>::apply_datagram' target/release/examples/profile_apply waiters`
//! and `callgrind_annotate` (the pattern must match `apply_datagram` alone: a second match
//! inside it, `apply_datagram_into`, would toggle collection off again). `waiters` applies the waiters bench's storm stream (synthetic
//! virtio-blk hot-plugs and unplugs, 14 datagrams each) to one registry, `waiters-kept` only
//! the 6 of each 14 that the monitor's subsystem filter lets through; `block-adds` only each
//! disk's block `add`, as the wake bench sends it (so each one also creates its function);
//! `real` applies every
//! datagram of the benches' real recordings, each recording to a fresh registry. Prints the
//! datagram count, to divide the collected instructions by.

#[path = "../benches/common/mod.rs"]
mod common;

use std::hint::black_box;

use common::synth::{self, Shapes};
use pciplug::Registry;

/// The waiters bench's stream (`stream` in `benches/waiters.rs`), with a `SEQNUM` each.
fn waiters_stream() -> Vec<Vec<u8>> {
    synth::hotplug_cycles(&Shapes::load(), 300)
        .iter()
        .enumerate()
        .map(|(i, d)| synth::with_seqnum(d, i as u64 + 1))
        .collect()
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "waiters".into());
    let mut applied = 0usize;
    let datagrams = match which.as_str() {
        "waiters" | "waiters-kept" | "block-adds" => {
            let mut stream = waiters_stream();
            match which.as_str() {
                "waiters-kept" => stream.retain(|d| pciplug::netlink::filter::passes(d)),
                // What the wake bench sends: only each disk's block `add`, to a registry that
                // has not seen its function.
                "block-adds" => stream.retain(|d| synth::is_block_add(d)),
                _ => {}
            }
            let mut reg = Registry::new();
            for d in &stream {
                applied += usize::from(matches!(
                    black_box(reg.apply_datagram(0, black_box(d))),
                    pciplug::Outcome::Applied(_)
                ));
            }
            black_box(reg);
            stream.len()
        }
        "real" => {
            let recordings = common::real_recordings();
            for rec in &recordings {
                let mut reg = Registry::new();
                for (sender, d) in rec {
                    applied += usize::from(matches!(
                        black_box(reg.apply_datagram(*sender, black_box(d))),
                        pciplug::Outcome::Applied(_)
                    ));
                }
                black_box(reg);
            }
            recordings.iter().map(Vec::len).sum()
        }
        other => {
            eprintln!(
                "profile_apply: unknown stream {other:?} (waiters, waiters-kept, block-adds, real)"
            );
            std::process::exit(2);
        }
    };
    println!("{which}: {datagrams} datagrams, {applied} applied");
}
