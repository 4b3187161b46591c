//! Bench 5, scale and memory: a registry of 4,096 PCI functions in deep bridge trees against
//! one of 64 built the same way: heap bytes per device (counted allocations), lookup and
//! apply time; then RSS and heap over 1,000,000 events of add/remove churn.

mod common;

use std::hint::black_box;

use criterion::Throughput;
use pciplug::{PciPath, Registry};

use common::alloc;
use common::synth::{self, Device, Kind, Shapes};

const GROUP: &str = "scale";
/// Bridge trees: every bridge has 4 children, 5 hops deep (4 levels of bridges).
const FANOUT: usize = 4;
const DEPTH: usize = 5;
const CHURN_EVENTS: u64 = 1_000_000;

/// A registry with every device of `devices` plugged in, built from their datagrams.
struct Setup {
    devices: Vec<Device>,
    registry: Registry,
    /// Heap bytes and blocks the registry holds.
    bytes: i64,
    blocks: i64,
    /// For every disk function: its unplug and re-plug datagrams (with SEQNUM), which leave
    /// the registry as it was.
    cycles: Vec<Vec<Vec<u8>>>,
    /// The PCI paths present, in a scattered order.
    paths: Vec<PciPath>,
}

fn setup(shapes: &Shapes, count: usize) -> Setup {
    let devices = synth::tree(count, FANOUT, DEPTH);
    let mut seq = 1u64;
    let mut next = |d: &[u8]| {
        seq += 1;
        synth::with_seqnum(d, seq)
    };
    let datagrams: Vec<Vec<u8>> = devices
        .iter()
        .flat_map(|d| shapes.add(d, d.n as u64 + 1))
        .map(|d| next(&d))
        .collect();
    let (registry, a) = alloc::count(|| {
        let mut r = Registry::new();
        for d in &datagrams {
            r.apply_datagram(0, d);
        }
        r
    });
    assert_eq!(registry.len(), count, "every synthetic function placed");
    let cycles = devices
        .iter()
        .filter(|d| d.kind == Kind::Disk)
        .map(|d| {
            let seqnum = d.n as u64 + 1;
            let mut c = shapes.remove(d, seqnum);
            c.extend(shapes.add(d, seqnum));
            c.iter().map(|x| next(x)).collect()
        })
        .collect();
    // A fixed scatter (a stride coprime with the count), so that lookups do not walk the
    // registry in its own order.
    let mut paths: Vec<PciPath> = devices.iter().map(|d| d.path.parse().unwrap()).collect();
    let stride = 2_654_435_761usize % count.max(1);
    let stride = (stride..).find(|s| gcd(*s, count) == 1).unwrap_or(1);
    paths = (0..count).map(|i| paths[(i * stride) % count]).collect();
    Setup {
        devices,
        registry,
        bytes: a.live_bytes,
        blocks: a.live_blocks,
        cycles,
        paths,
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

// One figure after another against its baseline of the same run, in the order BENCHMARKS.md
// reads them; split up, the baselines would drift away from what they are compared with.
#[allow(clippy::too_many_lines)]
fn main() {
    let shapes = Shapes::load();
    let mut big = setup(&shapes, 4096);
    let mut small = setup(&shapes, 64);

    let mut c = common::criterion();
    let mut g = c.benchmark_group(GROUP);
    for (name, s) in [("4096", &mut big), ("64", &mut small)] {
        let paths = s.paths.clone();
        g.throughput(Throughput::Elements(paths.len() as u64));
        g.bench_function(format!("lookup-get-{name}"), |b| {
            b.iter(|| {
                for p in &paths {
                    black_box(s.registry.get(black_box(p)));
                }
            })
        });
        g.bench_function(format!("lookup-disk-{name}"), |b| {
            b.iter(|| {
                for p in &paths {
                    black_box(s.registry.disk(black_box(p)));
                }
            })
        });
        // The same 64 paths in both registries: what the structure costs, without the cache
        // misses of touching 4,096 devices' worth of memory.
        let hot: Vec<PciPath> = paths.iter().take(64).copied().collect();
        g.throughput(Throughput::Elements(hot.len() as u64));
        g.bench_function(format!("lookup-hot-{name}"), |b| {
            b.iter(|| {
                for p in &hot {
                    black_box(s.registry.disk(black_box(p)));
                }
            })
        });
        // One unplug and re-plug of a disk function per iteration, 14 datagrams, taking the
        // functions in turn so that the whole registry is touched.
        let per = s.cycles[0].len() as u64;
        g.throughput(Throughput::Elements(per));
        let mut i = 0;
        g.bench_function(format!("apply-{name}"), |b| {
            b.iter(|| {
                let cycle = &s.cycles[i % s.cycles.len()];
                i += 1;
                for d in cycle {
                    black_box(s.registry.apply_datagram(0, black_box(d)));
                }
            })
        });
        // The same 32 functions in both registries: the datagrams (4 KiB per function, 9 MiB
        // for the 2,304 of the big registry) and the devices they touch stay in the cache, so
        // what remains is what the structure costs.
        let mut i = 0;
        g.bench_function(format!("apply-hot-{name}"), |b| {
            b.iter(|| {
                let cycle = &s.cycles[i % 32];
                i += 1;
                for d in cycle {
                    black_box(s.registry.apply_datagram(0, black_box(d)));
                }
            })
        });
    }
    g.finish();
    c.final_summary();

    // RSS and heap over a million events of churn on the big registry.
    // Allocated before the baseline is read, so that the samples do not count as growth.
    let mut samples = Vec::with_capacity(64);
    let heap_before = alloc::live_bytes();
    let mut events = 0u64;
    let mut i = 0usize;
    while events < CHURN_EVENTS {
        let cycle = &big.cycles[i % big.cycles.len()];
        i += 1;
        for d in cycle {
            black_box(big.registry.apply_datagram(0, d));
        }
        events += cycle.len() as u64;
        if i % big.cycles.len() == 0 || events >= CHURN_EVENTS {
            samples.push((events, rss_kib(), alloc::live_bytes() - heap_before));
        }
    }

    println!();
    println!("== scale ({})", common::machine());
    for s in [&big, &small] {
        let census: Vec<String> = synth::census(&s.devices)
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        println!(
            "   registry of {} PCI functions ({}): {} heap bytes in {} blocks = {:.0} bytes/device ({:.1} blocks/device; glibc adds ~8-16 bytes per block)",
            s.devices.len(),
            census.join(", "),
            s.bytes,
            s.blocks,
            s.bytes as f64 / s.devices.len() as f64,
            s.blocks as f64 / s.devices.len() as f64,
        );
    }
    let est = |id: &str| common::estimate_ns(GROUP, id);
    let mut ratios = Vec::new();
    for what in [
        "lookup-hot",
        "lookup-get",
        "lookup-disk",
        "apply-hot",
        "apply",
    ] {
        let (n_big, n_small) = match what {
            "apply" | "apply-hot" => (big.cycles[0].len(), small.cycles[0].len()),
            "lookup-hot" => (64, 64),
            _ => (big.paths.len(), small.paths.len()),
        };
        if let (Some(b), Some(s)) = (est(&format!("{what}-4096")), est(&format!("{what}-64"))) {
            let (b, s) = (b / n_big as f64, s / n_small as f64);
            println!(
                "   {what}: {b:.1} ns at 4096 devices, {s:.1} ns at 64 (ratio {:.2})",
                b / s
            );
            ratios.push((what, b / s));
        }
    }
    // The first sample is taken after every disk function was cycled once: from there on the
    // registry holds the same devices, so heap and RSS must not move.
    let first = samples.first().copied().unwrap_or_default();
    let last = samples.last().copied().unwrap_or_default();
    let spread = |f: fn(&(u64, u64, i64)) -> i64| {
        let v: Vec<i64> = samples.iter().map(f).collect();
        v.iter().max().unwrap_or(&0) - v.iter().min().unwrap_or(&0)
    };
    let (rss_spread, heap_spread) = (spread(|s| s.1 as i64), spread(|s| s.2));
    println!(
        "   churn: {events} events on the 4096 registry, sampled {} times from event {}: RSS {} KiB first, {} KiB last (spread {rss_spread} KiB); registry heap {:+} bytes first, {:+} last (spread {heap_spread} bytes)",
        samples.len(),
        first.0,
        first.1,
        last.1,
        first.2,
        last.2
    );
    let flat = heap_spread <= 4096 && rss_spread as u64 <= first.1 / 100;
    let per_device = big.bytes as f64 / big.devices.len() as f64;
    println!(
        "RESULT scale: {per_device:.0} bytes/device (target <= 512: {}); {}; over the churn RSS spread {rss_spread} KiB, heap spread {heap_spread} bytes (target flat: {})",
        if per_device <= 512.0 {
            "met"
        } else {
            "NOT met"
        },
        ratios
            .iter()
            .map(|(w, r)| format!("{w} 4096/64 = {r:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        if flat { "met" } else { "NOT met" },
    );
}
