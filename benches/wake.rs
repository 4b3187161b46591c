//! Bench 3, wake latency: from the kernel's delivery of a block `add` to the return of the
//! thread waiting for that disk, over the live socket, with 1,000 other threads waiting on
//! other paths; pciplug's `Monitor::wait_block` against a Kata-style watcher list.
//!
//! Each sample: a thread starts waiting for a new disk and is parked; the clock starts just
//! before the injecting `sendto` (the kernel queues the uevent on the listener's socket
//! inside that call, so the figure includes the injection itself and is an upper bound);
//! the waiter reads the clock as soon as its wait returns. Needs root (or user namespaces);
//! skipped with a message otherwise.
//!
//! The samples are taken in [`CHUNKS`] chunks, the three variants in turn within each (the
//! order rotating from one chunk to the next), so that what else the machine runs meanwhile
//! weighs on the three alike: their ratios are what the targets are about.
//!
//! `benches/profile/wake.sh` records the kernel's scheduler and system-call tracepoints while
//! this bench runs and splits every sample into kernel delivery, the listener's own work and
//! the waiter's wake-up (BENCHMARKS.md, "What bounds the figures that are at the edge or not
//! met").

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::{Duration, Instant};

use pciplug::testing::Injector;
use pciplug::{Monitor, PciPath};

use common::kata::{KataListener, VirtioBlkPciMatcher, unrelated_path, unrelated_relpath};
use common::netns::{self, percentile, wait_until};
use common::synth::{self, Device, Kind, Shapes};

const OTHERS: usize = 1_000;
const SAMPLES: usize = 1_500;
/// Chunks of samples, the variants taking turns: see the module's comment.
const CHUNKS: usize = 5;
/// Samples taken and not counted at the start of each chunk, for each variant alike: the
/// first wake-ups of a new listener and its threads pay for their cold start (stacks, heap
/// arenas, caches), which is not the steady wake-up the bench is about.
const WARM_UP: usize = 10;

/// The block `add` datagram of `d` (the fifth of its hot-plug datagrams).
fn block_add(shapes: &Shapes, d: &Device) -> Vec<u8> {
    let add = shapes.add(d, d.n as u64 + 1);
    add.into_iter()
        .find(|x| x.starts_with(b"add@") && x.windows(16).any(|w| w == b"SUBSYSTEM=block\0"))
        .expect("a block add in the shape")
}

/// The sample loop the three variants share; latencies in microseconds, sorted, of all but
/// the first [`WARM_UP`] devices.
///
/// For each device: `arm` prepares, on this thread, what the measuring thread will wait on
/// (a path, a registered watcher); the measuring thread then runs `wait` until the disk is
/// there. Before each injection this thread spins until the measuring thread is about to block
/// and `ready` holds, then sleeps 200 us so that the waiter is parked, as a real waiter would
/// be. The steps are the same for all three variants so that the scheduler places their
/// threads alike: a wake-up that crosses to the other vCPU costs 20-30 us more on this kind of
/// VM (benches/profile/wake.sh), and the variants must not differ in how often that happens
/// through the bench's own steps.
fn samples<W: Send + 'static>(
    shapes: &Shapes,
    devices: &[Device],
    arm: impl Fn(&Device) -> W,
    wait: impl Fn(W) + Send + 'static,
    ready: impl Fn() -> bool,
) -> Vec<f64> {
    let (go_tx, go_rx) = channel::<W>();
    let (done_tx, done_rx) = channel::<Instant>();
    let armed = Arc::new(AtomicBool::new(false));
    let a = Arc::clone(&armed);
    let measuring = thread::spawn(move || {
        for w in go_rx {
            a.store(true, Ordering::Release);
            wait(w);
            done_tx.send(Instant::now()).unwrap();
        }
    });
    let injector = Injector::new().unwrap();
    let mut lat = Vec::with_capacity(devices.len());
    for (i, d) in devices.iter().enumerate() {
        let datagram = block_add(shapes, d);
        go_tx.send(arm(d)).unwrap();
        while !(armed.load(Ordering::Acquire) && ready()) {
            thread::yield_now();
        }
        armed.store(false, Ordering::Relaxed);
        thread::sleep(Duration::from_micros(200));
        let t0 = Instant::now();
        injector.inject(&datagram).unwrap();
        let t1 = done_rx.recv().unwrap();
        if i >= WARM_UP {
            lat.push((t1 - t0).as_secs_f64() * 1e6);
        }
    }
    drop(go_tx);
    measuring.join().unwrap();
    lat.sort_by(f64::total_cmp);
    lat
}

/// Latencies in microseconds, sorted.
fn pciplug(shapes: &Shapes, devices: &[Device], sysfs: &std::path::Path) -> Vec<f64> {
    let monitor = Monitor::builder()
        .sysfs_root(sysfs)
        .coldplug(false)
        .start()
        .expect("starting a monitor");
    let others: Vec<_> = (0..OTHERS)
        .map(|i| {
            let m = monitor.clone();
            thread::Builder::new()
                .stack_size(64 << 10)
                .spawn(move || {
                    let _ = m.wait_block(&unrelated_path(i));
                })
                .unwrap()
        })
        .collect();
    assert!(wait_until(Duration::from_secs(60), || monitor
        .stats()
        .waiters
        == OTHERS as u64));
    let m = monitor.clone();
    let lat = samples(
        shapes,
        devices,
        |d| d.path.parse::<PciPath>().unwrap(),
        move |path| {
            m.wait_block_timeout(&path, Duration::from_secs(10))
                .expect("the disk appeared");
        },
        // Registered: a datagram applied before would answer the wait's first check.
        || monitor.stats().waiters > OTHERS as u64,
    );
    monitor.shutdown();
    for h in others {
        let _ = h.join();
    }
    lat
}

fn kata(shapes: &Shapes, devices: &[Device]) -> Vec<f64> {
    let listener = KataListener::start(pciplug::netlink::DEFAULT_RECV_BUFFER);
    let others: Vec<_> = (0..OTHERS)
        .map(|i| {
            let rx = listener.watch(VirtioBlkPciMatcher::new(&unrelated_relpath(i)));
            thread::Builder::new()
                .stack_size(64 << 10)
                .spawn(move || {
                    let _ = rx.recv();
                })
                .unwrap()
        })
        .collect();
    let lat = samples(
        shapes,
        devices,
        |d| {
            let rel = d.devpath.strip_prefix("/devices/pci0000:00").unwrap();
            listener.watch(VirtioBlkPciMatcher::new(rel))
        },
        |rx: Receiver<common::kata::KataUevent>| {
            rx.recv_timeout(Duration::from_secs(10))
                .expect("the disk appeared");
        },
        || true,
    );
    listener.stop();
    for h in others {
        let _ = h.join();
    }
    lat
}

/// The floor: a bare receiving thread that hands the datagram's arrival to a waiting thread
/// through a channel, nothing parsed or applied. The same two wake-ups as above (the receiver,
/// then the waiter); what the kernel and the scheduler cost on this machine.
fn floor(shapes: &Shapes, devices: &[Device]) -> Vec<f64> {
    let socket = pciplug::netlink::SocketOptions::new()
        .open()
        .expect("a uevent socket");
    let stopper = socket.stopper();
    let (tx, rx) = channel::<()>();
    let receiver = thread::Builder::new()
        .name("wake-floor".into())
        .spawn(move || {
            let mut buf = vec![0u8; 8193];
            while let Ok(pciplug::netlink::Received::Datagram(_)) = socket.recv(&mut buf) {
                if tx.send(()).is_err() {
                    break;
                }
            }
        })
        .expect("spawning the floor's receiver");
    let lat = samples(
        shapes,
        devices,
        |_| (),
        move |()| rx.recv().expect("a datagram"),
        || true,
    );
    stopper.stop();
    receiver.join().unwrap();
    lat
}

fn main() {
    common::alloc::set_counting(false);
    netns::in_private_netns("wake", run);
}

fn run() {
    let shapes = Shapes::load();
    // Disks below pci0000:00 (the root bus Kata's matcher names), one per sample.
    let devices: Vec<Device> = synth::tree(4000, 16, 3)
        .into_iter()
        .filter(|d| d.kind == Kind::Disk && d.devpath.starts_with("/devices/pci0000:00/"))
        .take(SAMPLES + CHUNKS * WARM_UP)
        .collect();
    assert_eq!(devices.len(), SAMPLES + CHUNKS * WARM_UP);
    let sysfs = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(sysfs.path().join("bus/pci/devices")).unwrap();
    let (mut p, mut k, mut f) = (Vec::new(), Vec::new(), Vec::new());
    for (i, chunk) in devices.chunks(SAMPLES / CHUNKS + WARM_UP).enumerate() {
        for turn in 0..3 {
            match (i + turn) % 3 {
                0 => p.extend(pciplug(&shapes, chunk, sysfs.path())),
                1 => k.extend(kata(&shapes, chunk)),
                _ => f.extend(floor(&shapes, chunk)),
            }
        }
    }
    for v in [&mut p, &mut k, &mut f] {
        v.sort_by(f64::total_cmp);
    }
    println!();
    println!(
        "== wake: block add delivered -> waiter returns, {SAMPLES} samples, {OTHERS} other waiters ({})",
        common::machine()
    );
    for (name, v) in [("pciplug", &p), ("Kata-style", &k), ("floor", &f)] {
        println!(
            "   {name:>10}: p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, max {:.1} us",
            percentile(v, 50.0),
            percentile(v, 90.0),
            percentile(v, 99.0),
            percentile(v, 100.0)
        );
    }
    let p99 = percentile(&p, 99.0);
    println!(
        "RESULT wake: pciplug p50 {:.1} us, p99 {p99:.1} us (target p99 <= 100 us: {}); Kata-style p50 {:.1} us, p99 {:.1} us; bare socket and thread floor p50 {:.1} us, p99 {:.1} us",
        percentile(&p, 50.0),
        if p99 <= 100.0 { "met" } else { "NOT met" },
        percentile(&k, 50.0),
        percentile(&k, 99.0),
        percentile(&f, 50.0),
        percentile(&f, 99.0)
    );
    let r50 = percentile(&p, 50.0) / percentile(&f, 50.0);
    let r99 = p99 / percentile(&f, 99.0);
    println!(
        "RESULT wake-floor: pciplug / bare floor in the same run: p50 {r50:.2}x (target <= 1.5: {}), p99 {r99:.2}x (target <= 1.3: {})",
        if r50 <= 1.5 { "met" } else { "NOT met" },
        if r99 <= 1.3 { "met" } else { "NOT met" },
    );
}
