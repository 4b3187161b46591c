//! Bench 2, waiters: what the listener pays per event while 0, 100 and 10,000 threads are
//! blocked waiting on other paths, for pciplug's `Monitor` and for a Kata-style listener (a
//! list of watchers, every matcher tried on every event), over the live socket.
//!
//! Both listeners read the same injected datagrams (synthetic virtio-blk hot-plugs and
//! unplugs built from a real recording: 14 datagrams per device, 6 of them about PCI, block
//! or the function) from a `NETLINK_KOBJECT_UEVENT` socket in a private network namespace.
//! The figure is the listener thread's own CPU time per datagram of the stream, read from
//! `/proc/self/task/<tid>/schedstat`: receive, parse, apply, wake. It does not depend on how
//! fast the injecting thread is or on what the other core does. Needs root (or user
//! namespaces); skipped with a message otherwise.
//!
//! pciplug's socket has its subsystem filter (`pciplug::netlink::filter`, on by default): the
//! kernel drops the stream's `wakeup`, `bdi` and `virtio` uevents before they are queued, and
//! the listener receives 6 of every 14 datagrams. Its CPU time is divided by the stream's
//! datagrams (what a storm costs it) and, apart, by those it received; and it is measured
//! once more without the filter, where it receives them all.
//!
//! The floor: a bare thread that only receives and counts, on a uevent socket of the same kind
//! with the same receive buffer, fed the same stream, measured the same way. Two of them: the
//! simplest loop (one blocking `recvfrom` per datagram) and one that receives in batches as
//! the listener does (`UeventSocket::recv_batch`, the same batch size); and the batched one
//! again on a socket with the subsystem filter, receiving what pciplug receives. The stream is
//! injected by one thread as fast as it goes (a storm at one sender's rate), so batches form
//! when the receiver is slower than the sender; each variant's datagrams per wake-up (its
//! `schedstat` timeslices) say how much they did.
//!
//! And a storm the receiver has fallen behind in (the backlog rows, no waiters): the whole
//! stream injected while the receiver is held up (pciplug's listener at its first datagram, by
//! a gate in its fault hook, as a busy agent's listener would be: holding pciplug's state
//! lock does not stop it receiving; the Kata-style one by its sandbox lock; the bare loops
//! before they start receiving), then drained. This is where a batched receive pays off; the CPU time counted
//! is the same, from before the injection until everything was received.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use netlink_sys::protocols::NETLINK_KOBJECT_UEVENT;
use netlink_sys::{Socket, SocketAddr};
use pciplug::Monitor;
use pciplug::netlink::{Batch, DEFAULT_RECV_BUFFER, RecvBatch, SocketOptions};
use pciplug::testing::Injector;

use common::gate::Gate;
use common::kata::{KataListener, VirtioBlkPciMatcher, unrelated_path, unrelated_relpath};
use common::netns::{
    self, gettid, median, thread_cpu_ns, thread_named, thread_runs, thread_state, wait_until,
};
use common::synth::{self, Shapes};

const WAITERS: [usize; 3] = [0, 100, 10_000];
const ROUNDS: usize = 3;
/// Devices cycled (plugged, then unplugged) per measurement: 14 datagrams each.
const CYCLES: usize = 300;

fn stream(shapes: &Shapes) -> Vec<Vec<u8>> {
    synth::hotplug_cycles(shapes, CYCLES)
}

/// How many of `datagrams` a socket receives, with the subsystem filter or without.
fn received_by(datagrams: &[Vec<u8>], filtered: bool) -> u64 {
    datagrams
        .iter()
        .filter(|d| !filtered || synth::kept(d))
        .count() as u64
}

/// The listener's batch size (`BATCH` in `src/monitor/thread.rs`), for the batched floor.
const LISTENER_BATCH: usize = 32;

/// One measurement of a receiving thread.
#[derive(Clone, Copy, Debug)]
struct Run {
    /// CPU nanoseconds per datagram of the stream.
    ns: f64,
    /// CPU nanoseconds per datagram the thread received (fewer than the stream's when its
    /// socket's subsystem filter drops some).
    ns_received: f64,
    /// Datagrams received per time the thread was scheduled in.
    per_wake: f64,
    /// `ENOBUFS` seen.
    overflows: u64,
}

/// How the stream reaches the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Feed {
    /// Injected as fast as one thread goes while the receiver runs.
    Live,
    /// Injected while the receiver is held up, then drained: a backlog.
    Backlog,
}

/// Injects `datagrams` as fast as one thread goes, inside `hold` (which holds the receiver
/// up meanwhile, or not), and waits until `received` counts the `expect` of them that reach
/// the receiver (all, or those its socket's subsystem filter keeps); the CPU time and
/// wake-ups of thread `tid` meanwhile.
fn measure(
    tid: u32,
    datagrams: &[Vec<u8>],
    expect: u64,
    what: &str,
    received: impl Fn() -> u64,
    hold: impl FnOnce(&mut dyn FnMut()),
) -> Run {
    let injector = Injector::new().expect("an injector");
    // The receiver's start-up is not what is measured: wait until it is asleep, waiting for
    // its first datagram. (A new thread's first large allocation can make glibc consolidate
    // the small blocks other threads freed into its arena: after the 10,000-thread rounds
    // that took pciplug's listener 40-60 ms of CPU at its start, which landed in the backlog
    // row of about one round in six. BENCHMARKS.md, issue 15 item 1.)
    assert!(
        wait_until(Duration::from_secs(60), || thread_state(tid) == Some('S')),
        "{what} never went to sleep before the stream"
    );
    let (cpu0, runs0) = (thread_cpu_ns(tid), thread_runs(tid));
    hold(&mut || {
        for d in datagrams {
            injector.inject(d).expect("the kernel takes the uevent");
        }
    });
    let n = datagrams.len() as u64;
    assert!(
        wait_until(Duration::from_secs(300), || received() >= expect),
        "{what} did not receive everything: {} of {expect}",
        received()
    );
    let cpu = thread_cpu_ns(tid) - cpu0;
    let runs = (thread_runs(tid) - runs0).max(1);
    Run {
        ns: cpu as f64 / n as f64,
        ns_received: cpu as f64 / expect.max(1) as f64,
        per_wake: expect as f64 / runs as f64,
        overflows: 0,
    }
}

/// The floor, simplest form: a bare thread that receives with one blocking `recvfrom` per
/// datagram and counts those from the kernel, on a uevent socket bound to group 1 with the
/// receive buffer pciplug asks for (`SO_RCVBUF`, which is what pciplug gets too in the
/// user namespace the bench runs in: `SO_RCVBUFFORCE` needs the initial one).
fn floor_recv(datagrams: &[Vec<u8>], feed: Feed) -> (Run, usize) {
    let mut socket = Socket::new(NETLINK_KOBJECT_UEVENT).expect("a uevent socket");
    socket
        .bind(&SocketAddr::new(0, 1))
        .expect("binding to group 1");
    socket
        .set_rx_buf_sz(DEFAULT_RECV_BUFFER as libc::c_int)
        .expect("setting SO_RCVBUF");
    let granted = socket.get_rx_buf_sz().expect("reading SO_RCVBUF");
    let n = datagrams.len() as u64;
    let count = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&count);
    let (tid_tx, tid_rx) = std::sync::mpsc::sync_channel(1);
    let (end_tx, end_rx) = std::sync::mpsc::channel::<()>();
    let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
    let receiver = thread::spawn(move || {
        let _ = tid_tx.send(gettid());
        let _ = gate_rx.recv();
        let mut buf = vec![0u8; 8193];
        // Receives until it counted the whole stream (nothing else is sent in this namespace),
        // then stays until measured: a thread that has exited has no schedstat.
        while c.load(Ordering::Relaxed) < n {
            let mut b: &mut [u8] = &mut buf;
            match socket.recv_from(&mut b, libc::MSG_TRUNC) {
                Ok((_, from)) => {
                    if from.port_number() == 0 {
                        c.fetch_add(1, Ordering::Release);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("the bare receive loop: {e}"),
            }
        }
        let _ = end_rx.recv();
    });
    let tid = tid_rx.recv().expect("the receiver's thread id");
    let run = measure(
        tid,
        datagrams,
        n,
        "the bare receive loop",
        || count.load(Ordering::Acquire),
        |inject| gated(feed, &gate_tx, inject),
    );
    drop(end_tx);
    receiver.join().expect("the bare receive loop");
    (run, granted)
}

/// The floor, batched: a bare thread that receives as the listener does
/// (`UeventSocket::recv_batch`, the listener's batch size) on a socket opened as the
/// listener's, with its subsystem filter (`filtered`) or without, and only counts.
fn floor_batch(datagrams: &[Vec<u8>], feed: Feed, filtered: bool) -> (Run, usize) {
    let socket = SocketOptions::new()
        .subsystem_filter(filtered)
        .open()
        .expect("a uevent socket");
    assert_eq!(
        socket.is_filtered(),
        filtered,
        "the kernel refused the filter"
    );
    let expect = received_by(datagrams, filtered);
    let granted = socket.recv_buffer().actual;
    let stopper = socket.stopper();
    let count = Arc::new(AtomicU64::new(0));
    let overflows = Arc::new(AtomicU64::new(0));
    let (c, o) = (Arc::clone(&count), Arc::clone(&overflows));
    let (tid_tx, tid_rx) = std::sync::mpsc::sync_channel(1);
    let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
    let receiver = thread::spawn(move || {
        let _ = tid_tx.send(gettid());
        let _ = gate_rx.recv();
        let mut batch = RecvBatch::new(LISTENER_BATCH);
        loop {
            match socket.recv_batch(&mut batch) {
                Ok(Batch::Datagrams(_)) => {
                    let kernel = batch.iter().filter(|(e, _)| e.is_from_kernel()).count();
                    c.fetch_add(kernel as u64, Ordering::Release);
                }
                Ok(Batch::Overflow) => {
                    o.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Batch::TimedOut) => {}
                Ok(Batch::Stopped) => break,
                Err(e) => panic!("the bare batched receive loop: {e}"),
            }
        }
    });
    let tid = tid_rx.recv().expect("the receiver's thread id");
    let mut run = measure(
        tid,
        datagrams,
        expect,
        "the bare batched receive loop",
        || count.load(Ordering::Acquire),
        |inject| gated(feed, &gate_tx, inject),
    );
    stopper.stop();
    receiver.join().expect("the bare batched receive loop");
    run.overflows = overflows.load(Ordering::Relaxed);
    (run, granted)
}

/// Opens a bare loop's gate before the injection (live) or after it (backlog).
fn gated(feed: Feed, gate: &std::sync::mpsc::Sender<()>, inject: &mut dyn FnMut()) {
    if feed == Feed::Backlog {
        inject();
    }
    gate.send(()).expect("the receiver waits at its gate");
    if feed == Feed::Live {
        inject();
    }
}

/// CPU per datagram of pciplug's listener thread with `waiters` blocked waits, with its
/// socket's subsystem filter (the default) or without.
fn pciplug(
    waiters: usize,
    datagrams: &[Vec<u8>],
    sysfs: &std::path::Path,
    feed: Feed,
    filtered: bool,
) -> Run {
    // The backlog's hold: the listener's own (it goes on receiving while another thread holds
    // the state lock). Open, it costs the listener one atomic load per datagram.
    let gate = Gate::default();
    let monitor = Monitor::builder()
        .sysfs_root(sysfs)
        .coldplug(false)
        .subsystem_filter(filtered)
        .fault_hook(gate.hook(|_| Ok(())))
        .start()
        .expect("starting a monitor");
    assert_eq!(
        monitor.stats().subsystem_filter,
        filtered,
        "the kernel refused the filter"
    );
    let expect = received_by(datagrams, filtered);
    // The thread names itself once it runs.
    let mut tid = None;
    wait_until(Duration::from_secs(10), || {
        tid = thread_named("pciplug-uevents");
        tid.is_some()
    });
    let tid = tid.expect("the listener thread");
    let handles: Vec<_> = (0..waiters)
        .map(|i| {
            let m = monitor.clone();
            thread::Builder::new()
                .stack_size(64 << 10)
                .spawn(move || {
                    let _ = m.wait_block(&unrelated_path(i));
                })
                .expect("spawning a waiter")
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(120), || monitor.stats().waiters
            == waiters as u64),
        "waiters never all registered"
    );
    // Polled every millisecond: `with_registry`, not `stats`, whose count of the waiters walks
    // all their slots under the state lock and would hold up the listener for that long.
    let mut run = measure(
        tid,
        datagrams,
        expect,
        "pciplug's listener",
        || monitor.with_registry(|r| r.stats().received),
        |inject| match feed {
            Feed::Live => inject(),
            Feed::Backlog => gate.shut_while(inject),
        },
    );
    run.overflows = monitor.stats().overflows;
    monitor.shutdown();
    for h in handles {
        let _ = h.join();
    }
    run
}

/// The same for the Kata-style listener with `waiters` watchers.
fn kata(waiters: usize, datagrams: &[Vec<u8>], feed: Feed) -> Run {
    let listener = KataListener::start(pciplug::netlink::DEFAULT_RECV_BUFFER);
    let handles: Vec<_> = (0..waiters)
        .map(|i| {
            let rx = listener.watch(VirtioBlkPciMatcher::new(&unrelated_relpath(i)));
            thread::Builder::new()
                .stack_size(64 << 10)
                .spawn(move || {
                    let _ = rx.recv();
                })
                .expect("spawning a watcher")
        })
        .collect();
    let received = Arc::clone(&listener.received);
    let mut run = measure(
        listener.tid,
        datagrams,
        datagrams.len() as u64,
        "the Kata-style listener",
        || received.load(Ordering::Acquire),
        |inject| match feed {
            Feed::Live => inject(),
            Feed::Backlog => listener.while_held(inject),
        },
    );
    run.overflows = listener.overflows.load(Ordering::Relaxed);
    listener.stop();
    for h in handles {
        let _ = h.join();
    }
    run
}

fn main() {
    common::alloc::set_counting(false);
    netns::in_private_netns("waiters", run);
}

fn run() {
    let shapes = Shapes::load();
    let datagrams = stream(&shapes);
    let (n, k_n) = (datagrams.len() as u64, received_by(&datagrams, true));
    let sysfs = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(sysfs.path().join("bus/pci/devices")).unwrap();
    let mut p: Vec<Vec<Run>> = vec![Vec::new(); WAITERS.len()];
    let mut k: Vec<Vec<Run>> = vec![Vec::new(); WAITERS.len()];
    // pciplug without its subsystem filter, no waiters.
    let mut pu: Vec<Run> = Vec::new();
    // The floors: recvfrom, recv_batch, recv_batch on a filtered socket.
    let mut fr: Vec<Run> = Vec::new();
    let mut fb: Vec<Run> = Vec::new();
    let mut ff: Vec<Run> = Vec::new();
    // The backlog: pciplug, Kata-style, the three floors, pciplug without the filter.
    let mut bl: [Vec<Run>; 6] = Default::default();
    let mut granted = (0, 0);
    for _ in 0..ROUNDS {
        let (run, g) = floor_recv(&datagrams, Feed::Live);
        fr.push(run);
        granted.0 = g;
        let (run, g) = floor_batch(&datagrams, Feed::Live, false);
        fb.push(run);
        granted.1 = g;
        ff.push(floor_batch(&datagrams, Feed::Live, true).0);
        pu.push(pciplug(0, &datagrams, sysfs.path(), Feed::Live, false));
        for (i, &w) in WAITERS.iter().enumerate() {
            p[i].push(pciplug(w, &datagrams, sysfs.path(), Feed::Live, true));
            k[i].push(kata(w, &datagrams, Feed::Live));
        }
        bl[0].push(pciplug(0, &datagrams, sysfs.path(), Feed::Backlog, true));
        bl[1].push(kata(0, &datagrams, Feed::Backlog));
        bl[2].push(floor_recv(&datagrams, Feed::Backlog).0);
        bl[3].push(floor_batch(&datagrams, Feed::Backlog, false).0);
        bl[4].push(floor_batch(&datagrams, Feed::Backlog, true).0);
        bl[5].push(pciplug(0, &datagrams, sysfs.path(), Feed::Backlog, false));
    }
    let overflows: u64 = p
        .iter()
        .chain(&k)
        .chain(&bl)
        .flatten()
        .chain(&fb)
        .chain(&ff)
        .chain(&pu)
        .map(|r| r.overflows)
        .sum();
    // Figures: medians over the rounds; ratios: taken in each round, then their median.
    let med =
        |runs: &[Run], f: fn(&Run) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
    let ratio_of = |a: &[Run], b: &[Run], f: fn(&Run) -> f64| {
        median(
            &mut a
                .iter()
                .zip(b)
                .map(|(a, b)| f(a) / f(b))
                .collect::<Vec<_>>(),
        )
    };
    let ratio = |a: &[Run], b: &[Run]| ratio_of(a, b, |r| r.ns);
    // The same, per datagram received.
    let ratio_received = |a: &[Run], b: &[Run]| ratio_of(a, b, |r| r.ns_received);
    let pn: Vec<f64> = p.iter().map(|r| med(r, |r| r.ns)).collect();
    let kn: Vec<f64> = k.iter().map(|r| med(r, |r| r.ns)).collect();
    println!();
    println!(
        "== waiters: listener CPU per datagram, {n} datagrams per measurement ({k_n} of them kept by the subsystem filter), injected by one thread as fast as it goes, median of {ROUNDS} rounds ({})",
        common::machine()
    );
    println!(
        "   {:>8}  {:>14}  {:>8}  {:>10}  {:>16}  {:>8}  {:>10}",
        "waiters", "pciplug ns", "ratio", "dg/wake", "Kata-style ns", "ratio", "dg/wake"
    );
    for (i, w) in WAITERS.iter().enumerate() {
        println!(
            "   {:>8}  {:>14.0}  {:>8.3}  {:>10.2}  {:>16.0}  {:>8.2}  {:>10.2}",
            w,
            pn[i],
            ratio(&p[i], &p[0]),
            med(&p[i], |r| r.per_wake),
            kn[i],
            ratio(&k[i], &k[0]),
            med(&k[i], |r| r.per_wake),
        );
    }
    println!(
        "   (pciplug ns: the listener's CPU over the {n} datagrams of the stream; it received {k_n}: {:.0} ns per datagram received, 0 waiters)",
        med(&p[0], |r| r.ns_received)
    );
    println!(
        "   pciplug without the subsystem filter, 0 waiters: {:.0} ns, {:.2} datagrams per wake-up",
        med(&pu, |r| r.ns),
        med(&pu, |r| r.per_wake)
    );
    println!(
        "   floor, bare blocking recvfrom loop: {:.0} ns, {:.2} datagrams per wake-up (SO_RCVBUF granted {} B)",
        med(&fr, |r| r.ns),
        med(&fr, |r| r.per_wake),
        granted.0
    );
    println!(
        "   floor, bare recv_batch loop ({LISTENER_BATCH}): {:.0} ns, {:.2} datagrams per wake-up (granted {} B)",
        med(&fb, |r| r.ns),
        med(&fb, |r| r.per_wake),
        granted.1
    );
    println!(
        "   floor, bare recv_batch loop on a filtered socket: {:.0} ns per stream datagram, {:.0} ns per datagram received, {:.2} datagrams per wake-up",
        med(&ff, |r| r.ns),
        med(&ff, |r| r.ns_received),
        med(&ff, |r| r.per_wake),
    );
    println!(
        "   backlog (the stream injected while the receiver is held up, then drained; no waiters):"
    );
    for (i, name) in [
        "pciplug",
        "Kata-style",
        "bare recvfrom loop",
        "bare recv_batch loop",
        "bare recv_batch, filtered",
        "pciplug, no filter",
    ]
    .iter()
    .enumerate()
    {
        println!(
            "   {name:>25}: {:.0} ns, {:.0} ns per datagram received, {:.2} datagrams per wake-up",
            med(&bl[i], |r| r.ns),
            med(&bl[i], |r| r.ns_received),
            med(&bl[i], |r| r.per_wake)
        );
    }
    if overflows > 0 {
        println!("   WARNING: {overflows} socket overflows during the measurements");
    }
    let ratio_w = ratio(&p[2], &p[0]);
    println!(
        "RESULT waiters: pciplug 10000/0 waiters = {ratio_w:.3} (target <= 1.1: {}); Kata-style 10000/0 = {:.1}",
        met(ratio_w <= 1.1),
        ratio(&k[2], &k[0])
    );
    let vs_floor = ratio(&p[0], &fr);
    println!(
        "RESULT waiters-floor: pciplug CPU/datagram {:.0} ns = {vs_floor:.3} x the bare receive loop's {:.0} ns (target <= 1.2: {}); {:.3} x the bare batched loop's {:.0} ns; datagrams per wake-up: pciplug {:.2}, bare loop {:.2}",
        pn[0],
        med(&fr, |r| r.ns),
        met(vs_floor <= 1.2),
        ratio(&p[0], &fb),
        med(&fb, |r| r.ns),
        med(&p[0], |r| r.per_wake),
        med(&fr, |r| r.per_wake),
    );
    println!(
        "RESULT waiters-filter: the subsystem filter keeps {k_n} of {n} datagrams; per datagram received pciplug {:.0} ns = {:.3} x a bare batched loop on the same filtered socket ({:.0} ns); without the filter pciplug {:.0} ns per datagram = {:.3} x the bare receive loop",
        med(&p[0], |r| r.ns_received),
        ratio_received(&p[0], &ff),
        med(&ff, |r| r.ns_received),
        med(&pu, |r| r.ns),
        ratio(&pu, &fr),
    );
    let vs_kata = ratio(&p[0], &k[0]);
    println!(
        "RESULT waiters-kata: pciplug CPU/datagram {:.0} ns = {vs_kata:.3} x the Kata-style listener's {:.0} ns (target <= 0.4: {}); the bare loops alone, receiving only: {:.3} (recvfrom) and {:.3} (recv_batch) x Kata-style; without the filter pciplug {:.3}",
        pn[0],
        kn[0],
        met(vs_kata <= 0.4),
        ratio(&fr, &k[0]),
        ratio(&fb, &k[0]),
        ratio(&pu, &k[0]),
    );
    storm_results(&bl, ratio, ratio_received);
}

fn storm_results(
    bl: &[Vec<Run>; 6],
    ratio: impl Fn(&[Run], &[Run]) -> f64,
    ratio_received: impl Fn(&[Run], &[Run]) -> f64,
) {
    let ns = |v: &[Run]| median(&mut v.iter().map(|r| r.ns).collect::<Vec<_>>());
    let vs_floor = ratio(&bl[0], &bl[2]);
    println!(
        "RESULT waiters-storm-floor: backlog, pciplug CPU/datagram {:.0} ns = {vs_floor:.3} x the bare receive loop's {:.0} ns (target <= 1.2: {}); {:.3} x the bare batched loop's {:.0} ns; per datagram received {:.3} x the filtered bare batched loop's; without the filter {:.3} x the bare receive loop",
        ns(&bl[0]),
        ns(&bl[2]),
        met(vs_floor <= 1.2),
        ratio(&bl[0], &bl[3]),
        ns(&bl[3]),
        ratio_received(&bl[0], &bl[4]),
        ratio(&bl[5], &bl[2]),
    );
    let vs_kata = ratio(&bl[0], &bl[1]);
    println!(
        "RESULT waiters-storm-kata: backlog, pciplug CPU/datagram {:.0} ns = {vs_kata:.3} x the Kata-style listener's {:.0} ns (target <= 0.4: {}); the bare loops alone: {:.3} (recvfrom) and {:.3} (recv_batch) x Kata-style; without the filter pciplug {:.3}",
        ns(&bl[0]),
        ns(&bl[1]),
        met(vs_kata <= 0.4),
        ratio(&bl[2], &bl[1]),
        ratio(&bl[3], &bl[1]),
        ratio(&bl[5], &bl[1]),
    );
}

fn met(yes: bool) -> &'static str {
    if yes { "met" } else { "NOT met" }
}
