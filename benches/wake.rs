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
//! The three variants live side by side for the whole run, each in a network namespace of its
//! own (its socket and its injector opened there, so that it receives only its own uevents),
//! and take their samples in turn, one each per device, the order rotating: whatever else the
//! machine runs meanwhile weighs on the three alike, sample by sample, and their ratios are
//! what the targets are about.
//!
//! `benches/profile/wake.sh` records the kernel's scheduler and system-call tracepoints while
//! this bench runs and splits every sample into kernel delivery, the listener's own work and
//! the waiter's wake-up (BENCHMARKS.md, "What bounds the figures that are at the edge or not
//! met").

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use pciplug::testing::Injector;
use pciplug::{Monitor, PciPath};

use common::kata::{KataListener, VirtioBlkPciMatcher, unrelated_path, unrelated_relpath};
use common::netns::{self, in_new_netns, percentile, wait_until};
use common::synth::{self, Device, Kind, Shapes};

const OTHERS: usize = 1_000;
const SAMPLES: usize = 1_500;
/// Samples taken and not counted at the start, for each variant alike: the first wake-ups of
/// a new listener and its threads pay for their cold start (stacks, heap arenas, caches),
/// which is not the steady wake-up the bench is about.
const WARM_UP: usize = 10;

/// The block `add` datagram of `d` (the fifth of its hot-plug datagrams).
fn block_add(shapes: &Shapes, d: &Device) -> Vec<u8> {
    let add = shapes.add(d, d.n as u64 + 1);
    add.into_iter()
        .find(|x| synth::is_block_add(x))
        .expect("a block add in the shape")
}

/// A wait for one device, run by a variant's measuring thread until the disk is there.
type Wait = Box<dyn FnOnce() + Send>;

/// One variant, alive for the whole run: its injector (opened in the variant's own network
/// namespace, so that only its receiver sees what it injects), its measuring thread and its
/// latencies.
struct Variant {
    injector: Injector,
    /// Prepares, on the bench's thread, what the measuring thread will wait on for a device
    /// (a path, a registered watcher).
    arm: Box<dyn Fn(&Device) -> Wait>,
    /// Whether the wait the measuring thread is in is ready for its datagram.
    ready: Box<dyn Fn() -> bool>,
    /// Stops the variant's receiver and its other waiters.
    stop: Box<dyn FnOnce()>,
    go: Sender<Wait>,
    armed: Arc<AtomicBool>,
    done: Receiver<Instant>,
    measuring: JoinHandle<()>,
    /// Microseconds, of all but the first [`WARM_UP`] devices.
    latencies: Vec<f64>,
}

impl Variant {
    fn new(
        injector: Injector,
        arm: impl Fn(&Device) -> Wait + 'static,
        ready: impl Fn() -> bool + 'static,
        stop: impl FnOnce() + 'static,
    ) -> Variant {
        let (go, go_rx) = channel::<Wait>();
        let (done_tx, done) = channel::<Instant>();
        let armed = Arc::new(AtomicBool::new(false));
        let a = Arc::clone(&armed);
        let measuring = thread::spawn(move || {
            for wait in go_rx {
                a.store(true, Ordering::Release);
                wait();
                done_tx.send(Instant::now()).unwrap();
            }
        });
        Variant {
            injector,
            arm: Box::new(arm),
            ready: Box::new(ready),
            stop: Box::new(stop),
            go,
            armed,
            done,
            measuring,
            latencies: Vec::with_capacity(SAMPLES),
        }
    }

    /// One sample: the measuring thread starts waiting for `d`; this thread spins until it is
    /// about to block and the variant is ready, then sleeps 200 us so that the waiter is
    /// parked, as a real waiter would be, and injects `datagram`. The steps are the same for
    /// all three variants so that the scheduler places their threads alike: a wake-up that
    /// crosses to the other vCPU costs 20-30 us more on this kind of VM
    /// (benches/profile/wake.sh), and the variants must not differ in how often that happens
    /// through the bench's own steps.
    fn sample(&mut self, d: &Device, datagram: &[u8], counted: bool) {
        self.go.send((self.arm)(d)).unwrap();
        while !(self.armed.load(Ordering::Acquire) && (self.ready)()) {
            thread::yield_now();
        }
        self.armed.store(false, Ordering::Relaxed);
        thread::sleep(Duration::from_micros(200));
        let t0 = Instant::now();
        self.injector.inject(datagram).unwrap();
        let t1 = self.done.recv().unwrap();
        if counted {
            self.latencies.push((t1 - t0).as_secs_f64() * 1e6);
        }
    }

    /// Ends the variant; its latencies, sorted.
    fn finish(self) -> Vec<f64> {
        let Variant {
            arm,
            ready,
            stop,
            go,
            measuring,
            mut latencies,
            ..
        } = self;
        drop(go);
        measuring.join().unwrap();
        // What they hold of the receiver (a monitor, a listener) goes before it stops.
        drop((arm, ready));
        stop();
        latencies.sort_by(f64::total_cmp);
        latencies
    }
}

/// pciplug's `Monitor`, with [`OTHERS`] threads waiting on other paths.
fn pciplug(sysfs: &std::path::Path) -> Variant {
    let (monitor, injector) = in_new_netns(|| {
        let monitor = Monitor::builder()
            .sysfs_root(sysfs)
            .coldplug(false)
            .start()
            .expect("starting a monitor");
        (monitor, Injector::new().expect("an injector"))
    });
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
    let (m, r) = (monitor.clone(), monitor.clone());
    Variant::new(
        injector,
        move |d| {
            let path = d.path.parse::<PciPath>().unwrap();
            let m = m.clone();
            Box::new(move || {
                m.wait_block_timeout(&path, Duration::from_secs(10))
                    .expect("the disk appeared");
            })
        },
        // Registered: a datagram applied before would answer the wait's first check.
        move || r.stats().waiters > OTHERS as u64,
        move || {
            monitor.shutdown();
            for h in others {
                let _ = h.join();
            }
        },
    )
}

/// The Kata-style listener, with [`OTHERS`] watchers on other devices.
fn kata() -> Variant {
    let (listener, injector) = in_new_netns(|| {
        let listener = KataListener::start(pciplug::netlink::DEFAULT_RECV_BUFFER);
        (listener, Injector::new().expect("an injector"))
    });
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
    let listener = Arc::new(listener);
    let l = Arc::clone(&listener);
    Variant::new(
        injector,
        move |d| {
            let rel = d.devpath.strip_prefix("/devices/pci0000:00").unwrap();
            let rx = l.watch(VirtioBlkPciMatcher::new(rel));
            Box::new(move || {
                rx.recv_timeout(Duration::from_secs(10))
                    .expect("the disk appeared");
            })
        },
        || true,
        move || {
            Arc::into_inner(listener)
                .expect("the variant's last reference")
                .stop();
            for h in others {
                let _ = h.join();
            }
        },
    )
}

/// The floor: a bare receiving thread that hands the datagram's arrival to a waiting thread
/// through a channel, nothing parsed or applied. The same two wake-ups as above (the receiver,
/// then the waiter); what the kernel and the scheduler cost on this machine.
fn floor() -> Variant {
    let (socket, injector) = in_new_netns(|| {
        let socket = pciplug::netlink::SocketOptions::new()
            .open()
            .expect("a uevent socket");
        (socket, Injector::new().expect("an injector"))
    });
    let stopper = socket.stopper();
    // A channel whose receiver the measuring thread's waits can share (cloned).
    let (tx, rx) = crossbeam_channel::unbounded::<()>();
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
    Variant::new(
        injector,
        move |_| {
            let rx = rx.clone();
            Box::new(move || rx.recv().expect("a datagram"))
        },
        || true,
        move || {
            stopper.stop();
            receiver.join().unwrap();
        },
    )
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
        .take(WARM_UP + SAMPLES)
        .collect();
    assert_eq!(devices.len(), WARM_UP + SAMPLES);
    let sysfs = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(sysfs.path().join("bus/pci/devices")).unwrap();
    let mut variants = [pciplug(sysfs.path()), kata(), floor()];
    for (i, d) in devices.iter().enumerate() {
        let datagram = block_add(&shapes, d);
        for turn in 0..variants.len() {
            variants[(i + turn) % 3].sample(d, &datagram, i >= WARM_UP);
        }
    }
    let [p, k, f] = variants.map(Variant::finish);
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
