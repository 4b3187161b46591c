//! Bench 2, waiters: what the listener pays per event while 0, 100 and 10,000 threads are
//! blocked waiting on other paths, for pciplug's `Monitor` and for a Kata-style listener (a
//! list of watchers, every matcher tried on every event), over the live socket.
//!
//! Both listeners read the same injected datagrams (synthetic virtio-blk hot-plugs and
//! unplugs built from a real recording: 14 datagrams per device, 6 of them about PCI, block
//! or the function) from a `NETLINK_KOBJECT_UEVENT` socket in a private network namespace.
//! The figure is the listener thread's own CPU time per datagram, read from
//! `/proc/self/task/<tid>/schedstat`: receive, parse, apply, wake. It does not depend on how
//! fast the injecting thread is or on what the other core does. Needs root (or user
//! namespaces); skipped with a message otherwise.

mod common;

use std::thread;
use std::time::Duration;

use pciplug::Monitor;
use pciplug::testing::Injector;

use common::kata::{KataListener, VirtioBlkPciMatcher, unrelated_path, unrelated_relpath};
use common::netns::{self, median, thread_cpu_ns, thread_named, wait_until};
use common::synth::{self, Kind, Shapes};

const WAITERS: [usize; 3] = [0, 100, 10_000];
const ROUNDS: usize = 3;
/// Devices cycled (plugged, then unplugged) per measurement: 14 datagrams each.
const CYCLES: usize = 300;

fn stream(shapes: &Shapes) -> Vec<Vec<u8>> {
    let devices: Vec<_> = synth::tree(64, 4, 3)
        .into_iter()
        .filter(|d| d.kind == Kind::Disk)
        .collect();
    let mut out = Vec::new();
    for c in 0..CYCLES {
        let d = &devices[c % devices.len()];
        let seq = c as u64 + 1;
        out.extend(shapes.add(d, seq));
        out.extend(shapes.remove(d, seq));
    }
    out
}

/// CPU nanoseconds per datagram of pciplug's listener thread with `waiters` blocked waits.
fn pciplug(waiters: usize, datagrams: &[Vec<u8>], sysfs: &std::path::Path) -> (f64, u64) {
    let monitor = Monitor::builder()
        .sysfs_root(sysfs)
        .coldplug(false)
        .start()
        .expect("starting a monitor");
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
    let injector = Injector::new().expect("an injector");
    let cpu0 = thread_cpu_ns(tid);
    for d in datagrams {
        injector.inject(d).expect("the kernel takes the uevent");
    }
    let n = datagrams.len() as u64;
    assert!(
        wait_until(Duration::from_secs(120), || monitor
            .stats()
            .registry
            .received
            >= n),
        "the listener did not receive everything: {:?}",
        monitor.stats()
    );
    let cpu = thread_cpu_ns(tid) - cpu0;
    let overflows = monitor.stats().overflows;
    monitor.shutdown();
    for h in handles {
        let _ = h.join();
    }
    (cpu as f64 / n as f64, overflows)
}

/// The same for the Kata-style listener with `waiters` watchers.
fn kata(waiters: usize, datagrams: &[Vec<u8>]) -> (f64, u64) {
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
    let injector = Injector::new().expect("an injector");
    let cpu0 = thread_cpu_ns(listener.tid);
    for d in datagrams {
        injector.inject(d).expect("the kernel takes the uevent");
    }
    let n = datagrams.len() as u64;
    let received = std::sync::Arc::clone(&listener.received);
    assert!(
        wait_until(Duration::from_secs(300), || received
            .load(std::sync::atomic::Ordering::Acquire)
            >= n),
        "the Kata-style listener did not receive everything"
    );
    let cpu = thread_cpu_ns(listener.tid) - cpu0;
    let overflows = listener
        .overflows
        .load(std::sync::atomic::Ordering::Relaxed);
    listener.stop();
    for h in handles {
        let _ = h.join();
    }
    (cpu as f64 / n as f64, overflows)
}

fn main() {
    common::alloc::set_counting(false);
    netns::in_private_netns("waiters", run);
}

fn run() {
    let shapes = Shapes::load();
    let datagrams = stream(&shapes);
    let sysfs = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(sysfs.path().join("bus/pci/devices")).unwrap();
    let mut p: Vec<Vec<f64>> = vec![Vec::new(); WAITERS.len()];
    let mut k: Vec<Vec<f64>> = vec![Vec::new(); WAITERS.len()];
    let mut overflows = 0;
    for _ in 0..ROUNDS {
        for (i, &w) in WAITERS.iter().enumerate() {
            let (ns, o) = pciplug(w, &datagrams, sysfs.path());
            p[i].push(ns);
            overflows += o;
            let (ns, o) = kata(w, &datagrams);
            k[i].push(ns);
            overflows += o;
        }
    }
    let p: Vec<f64> = p.iter_mut().map(|v| median(v)).collect();
    let k: Vec<f64> = k.iter_mut().map(|v| median(v)).collect();
    println!();
    println!(
        "== waiters: listener CPU per datagram, {} datagrams per measurement, median of {ROUNDS} rounds ({})",
        datagrams.len(),
        common::machine()
    );
    println!(
        "   {:>8}  {:>14}  {:>8}  {:>16}  {:>8}",
        "waiters", "pciplug ns", "ratio", "Kata-style ns", "ratio"
    );
    for (i, w) in WAITERS.iter().enumerate() {
        println!(
            "   {:>8}  {:>14.0}  {:>8.3}  {:>16.0}  {:>8.2}",
            w,
            p[i],
            p[i] / p[0],
            k[i],
            k[i] / k[0]
        );
    }
    if overflows > 0 {
        println!("   WARNING: {overflows} socket overflows during the measurements");
    }
    let ratio = p[2] / p[0];
    println!(
        "RESULT waiters: pciplug 10000/0 waiters = {ratio:.3} (target <= 1.1: {}); Kata-style 10000/0 = {:.1}",
        if ratio <= 1.1 { "met" } else { "NOT met" },
        k[2] / k[0]
    );
}
