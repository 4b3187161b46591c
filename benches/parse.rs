//! Bench 1, parse: every datagram of the real recordings through pciplug's path
//! (`Registry::apply_datagram`: validate, pre-filter, parse, apply) against
//! `kobject_uevent::UEvent::from_netlink_packet` alone, in ns/event and allocations/event.

mod common;

use std::hint::black_box;

use criterion::Throughput;
use pciplug::{Datagram, Registry};

use common::alloc;

const GROUP: &str = "parse-real-mix";

// One figure after another against its baseline of the same run, in the order BENCHMARKS.md
// reads them; split up, the baselines would drift away from what they are compared with.
#[allow(clippy::too_many_lines)]
fn main() {
    let recordings = common::real_recordings();
    let all: Vec<&(u32, Vec<u8>)> = recordings.iter().flatten().collect();
    let n = all.len() as u64;

    // Allocations, counted per datagram, by what pciplug made of it.
    let (mut ignored, mut relevant) = ((0u64, 0u64, 0u64), (0u64, 0u64, 0u64));
    let mut kobject = (0u64, 0u64);
    for rec in &recordings {
        let mut reg = Registry::new();
        for (sender, d) in rec {
            let is_ignored = matches!(Datagram::parse(d), Ok(Datagram::Ignored(_)));
            let (_, a) = alloc::count(|| drop(black_box(reg.apply_datagram(*sender, d))));
            let slot = if is_ignored {
                &mut ignored
            } else {
                &mut relevant
            };
            slot.0 += 1;
            slot.1 += a.count;
            slot.2 += a.bytes;
            let (_, k) =
                alloc::count(|| drop(black_box(kobject_uevent::UEvent::from_netlink_packet(d))));
            kobject.0 += k.count;
            kobject.1 += k.bytes;
        }
    }

    alloc::set_counting(false);
    let mut c = common::criterion();
    let mut g = c.benchmark_group(GROUP);
    g.throughput(Throughput::Elements(n));
    g.bench_function("pciplug-apply-datagram", |b| {
        b.iter(|| {
            for rec in &recordings {
                let mut reg = Registry::new();
                for (sender, d) in rec {
                    black_box(reg.apply_datagram(*sender, black_box(d)));
                }
                black_box(reg);
            }
        })
    });
    g.bench_function("kobject-uevent-parse", |b| {
        b.iter(|| {
            for (_, d) in &all {
                let _ = black_box(kobject_uevent::UEvent::from_netlink_packet(black_box(d)));
            }
        })
    });
    g.bench_function("pciplug-datagram-parse", |b| {
        b.iter(|| {
            for (_, d) in &all {
                let _ = black_box(Datagram::parse(black_box(d)));
            }
        })
    });
    g.finish();
    // The same, split: the ignored datagrams alone (pciplug's path is then the parse alone)
    // and the relevant ones alone, each recording into a fresh registry as above.
    let keep = |ignored: bool| -> Vec<Vec<(u32, Vec<u8>)>> {
        recordings
            .iter()
            .map(|rec| {
                rec.iter()
                    .filter(|(_, d)| {
                        matches!(Datagram::parse(d), Ok(Datagram::Ignored(_))) == ignored
                    })
                    .cloned()
                    .collect()
            })
            .collect()
    };
    let (ign, rel) = (keep(true), keep(false));
    let count = |v: &Vec<Vec<(u32, Vec<u8>)>>| v.iter().map(Vec::len).sum::<usize>();
    let (n_ign, n_rel) = (count(&ign), count(&rel));
    let mut g = c.benchmark_group("parse-breakdown");
    for (id, set) in [("pciplug-ignored", &ign), ("pciplug-relevant", &rel)] {
        g.bench_function(id, |b| {
            b.iter(|| {
                for rec in set {
                    let mut reg = Registry::new();
                    for (sender, d) in rec {
                        black_box(reg.apply_datagram(*sender, black_box(d)));
                    }
                    black_box(reg);
                }
            })
        });
    }
    for (id, set) in [("kobject-ignored", &ign), ("kobject-relevant", &rel)] {
        g.bench_function(id, |b| {
            b.iter(|| {
                for (_, d) in set.iter().flatten() {
                    let _ = black_box(kobject_uevent::UEvent::from_netlink_packet(black_box(d)));
                }
            })
        });
    }
    g.finish();
    for (id, k) in [
        ("pciplug-ignored", n_ign),
        ("kobject-ignored", n_ign),
        ("pciplug-relevant", n_rel),
        ("kobject-relevant", n_rel),
    ] {
        if let Some(t) = common::estimate_ns("parse-breakdown", id) {
            println!("   breakdown {id}: {:.1} ns/event", t / k as f64);
        }
    }
    c.final_summary();

    let per = |id: &str| common::estimate_ns(GROUP, id).map(|t| t / n as f64);
    println!();
    println!(
        "== parse: the real mix, {n} datagrams of {} recordings ({})",
        recordings.len(),
        common::machine()
    );
    println!(
        "   ignored by pciplug: {} ({:.0}%), relevant: {}",
        ignored.0,
        100.0 * ignored.0 as f64 / n as f64,
        relevant.0
    );
    println!(
        "   allocations/event  pciplug: ignored {:.2} ({} bytes/event), relevant {:.2} ({:.0} bytes/event), whole mix {:.2}",
        ignored.1 as f64 / ignored.0.max(1) as f64,
        ignored.2 / ignored.0.max(1),
        relevant.1 as f64 / relevant.0.max(1) as f64,
        relevant.2 as f64 / relevant.0.max(1) as f64,
        (ignored.1 + relevant.1) as f64 / n as f64
    );
    println!(
        "   allocations/event  kobject-uevent parse alone: {:.2} ({:.0} bytes/event)",
        kobject.0 as f64 / n as f64,
        kobject.1 as f64 / n as f64
    );
    if let (Some(p), Some(k), Some(d)) = (
        per("pciplug-apply-datagram"),
        per("kobject-uevent-parse"),
        per("pciplug-datagram-parse"),
    ) {
        println!(
            "   ns/event  pciplug parse+apply {p:.1}, kobject-uevent parse alone {k:.1}; pciplug's owned Datagram::parse (kobject-uevent inside) {d:.1}"
        );
        println!(
            "RESULT parse: pciplug/kobject = {:.3} (target <= 0.25: {}); ignored events allocate {} (target 0: {})",
            p / k,
            if p / k <= 0.25 { "met" } else { "NOT met" },
            ignored.1,
            if ignored.1 == 0 { "met" } else { "NOT met" }
        );
    }
}
