//! Bench 6, start-up: `Monitor` start (subscribe, coldplug scan, apply, the listener thread
//! started) over fake sysfs trees of 64 and 4,096 PCI functions, against a baseline that only
//! lists the directories the scan lists and resolves each entry's link.
//!
//! The trees are the scale bench's (`synth::tree`: bridge trees 5 hops deep, 4 children per
//! bridge; the leaves virtio-blk functions with a disk, every fourth a virtio-net function
//! with an interface), laid out as the kernel lays out sysfs (`pciplug::testing::fake_sysfs`):
//! device directories under `devices/pci...`, relative links from `bus/pci/devices`,
//! `bus/pci/drivers/<driver>`, `class/block` and `class/net`, a `driver` and a `subsystem`
//! link and a `uevent` file in each device, a `virtioN` device between a function and its
//! disk or interface, `hidden` and `diskseq` on each disk, and `lo`. Each tree is built once,
//! in `/dev/shm` where there is one (sysfs lives in memory too).
//!
//! Timed, each in the same run:
//! - `pciplug-start`: `Monitor::builder().sysfs_root(tree).start()`, the clock stopped when
//!   it returns; then, untimed, `shutdown()`. The target is on this figure.
//! - `pciplug`: the same with the `shutdown()` timed too: the listener thread, started last,
//!   has to run, drain the (empty) queue, see the stop and exit before the join returns, which
//!   on a loaded machine is mostly waiting for a CPU. Reported beside.
//! - `baseline`: `read_dir` of `bus/pci/devices`, `class/nvme`, `class/block`, `class/net`,
//!   `class/vfio` and `class/nvme-subsystem`, and `fs::canonicalize` of every entry (what
//!   resolving a link to the device's path takes, `realpath`); nothing is read from the
//!   devices.
//! - for the report: `scan`, `Sysfs::scan` applied to a new `Registry` (no socket, no
//!   thread), and `floor`, the same listing with only a `read_link` of each entry.
//!
//! Then, out of criterion, the start (with its shutdown) and the baseline in turn, by the CPU
//! time of the thread that runs them (`CLOCK_THREAD_CPUTIME_ID`), median of each: a ratio
//! that the load of a shared machine moves less than the wall-clock one.
//!
//! The monitor runs in a private user + network namespace, where no uevent of the machine's
//! reaches its socket, so the queue is empty in every iteration alike.

mod common;

use std::fs;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use pciplug::sysfs::Sysfs;
use pciplug::testing::fake_sysfs::FakeSysfs;
use pciplug::{Monitor, Registry};

use common::netns;
use common::synth::{self, Kind};

const GROUP: &str = "startup";
/// The scale bench's trees: every bridge has 4 children, 5 hops deep.
const FANOUT: usize = 4;
const DEPTH: usize = 5;
const SIZES: [usize; 2] = [64, 4_096];
const TARGET: f64 = 2.0;
/// What the scan lists, and so what the baseline lists (`src/sysfs.rs`).
const LISTED: [&str; 6] = [
    "bus/pci/devices",
    "class/nvme",
    "class/block",
    "class/net",
    "class/vfio",
    "class/nvme-subsystem",
];

/// A tree and what is in it.
struct Tree {
    sysfs: FakeSysfs,
    functions: usize,
    disks: usize,
    nets: usize,
}

fn build(count: usize) -> Tree {
    let sysfs = if Path::new("/dev/shm").is_dir() {
        FakeSysfs::new_in("/dev/shm")
    } else {
        FakeSysfs::new()
    };
    let t = &sysfs;
    let (mut disks, mut nets) = (0, 0);
    let devices = synth::tree(count, FANOUT, DEPTH);
    for d in &devices {
        let (id, class, driver) = match d.kind {
            Kind::Bridge => ("1B36:000C", "60400", "pcieport"),
            Kind::Disk => ("1AF4:1042", "10000", "virtio-pci"),
            Kind::Net => ("1AF4:1041", "20000", "virtio-pci"),
        };
        t.pci(&d.devpath, id, class, Some(driver));
        t.link(
            &format!("{}/driver", d.devpath),
            &format!("bus/pci/drivers/{driver}"),
        );
        t.link(&format!("bus/pci/drivers/{driver}/{}", d.bdf), &d.devpath);
        let virtio_driver = match d.kind {
            Kind::Bridge => continue,
            Kind::Disk => "DRIVER=virtio_blk\nMODALIAS=virtio:d00000002v00001AF4",
            Kind::Net => "DRIVER=virtio_net\nMODALIAS=virtio:d00000001v00001AF4",
        };
        t.device(&d.virtio(), "bus/virtio", &[virtio_driver]);
        let n = d.n;
        if d.kind == Kind::Disk {
            let disk = d.disk_devpath();
            let (minor, devname, seq) = (
                format!("MINOR={}", 16 * n),
                format!("DEVNAME={}", d.disk_name()),
                format!("DISKSEQ={}", n + 1),
            );
            let uevent = ["MAJOR=254", &minor, &devname, "DEVTYPE=disk", &seq];
            t.class_device("block", &disk, &uevent);
            t.attr(&disk, "hidden", "0\n");
            t.attr(&disk, "diskseq", &format!("{}\n", n + 1));
            disks += 1;
        } else {
            let (interface, ifindex) = (
                format!("INTERFACE={}", d.interface()),
                format!("IFINDEX={}", n + 2),
            );
            t.class_device("net", &d.net_devpath(), &[&interface, &ifindex]);
            nets += 1;
        }
    }
    t.class_device(
        "net",
        "/devices/virtual/net/lo",
        &["INTERFACE=lo", "IFINDEX=1"],
    );
    Tree {
        sysfs,
        functions: devices.len(),
        disks,
        nets,
    }
}

/// The baseline: lists what the scan lists and resolves every entry (`fs::canonicalize`);
/// returns how many.
fn baseline(root: &Path) -> usize {
    each_entry(root, |path| {
        black_box(fs::canonicalize(path).expect("resolving an entry"));
    })
}

/// A lower floor, for reference: lists the same and only reads each entry's link.
fn floor(root: &Path) -> usize {
    each_entry(root, |path| {
        black_box(fs::read_link(path).expect("reading an entry's link"));
    })
}

/// Calls `f` on every entry of the directories the scan lists; returns how many.
fn each_entry(root: &Path, mut f: impl FnMut(&Path)) -> usize {
    let mut n = 0;
    for dir in LISTED {
        let Ok(entries) = fs::read_dir(root.join(dir)) else {
            continue; // no such class in this tree
        };
        for entry in entries {
            f(&entry.expect("listing the tree").path());
            n += 1;
        }
    }
    n
}

/// The scan alone, applied to a registry: the part of the start that grows with the tree.
fn scan(root: &Path) -> Registry {
    let mut registry = Registry::new();
    Sysfs::new(root)
        .scan()
        .expect("scanning the tree")
        .apply_to(&mut registry);
    registry
}

fn start(root: &Path) -> Monitor {
    Monitor::builder()
        .sysfs_root(root)
        .start()
        .expect("starting a monitor")
}

/// Checks, before anything is timed, that a monitor started over `tree` holds every
/// function, disk and interface in it, and that the baseline resolves every entry: the two
/// sides do what they are said to do.
fn check(tree: &Tree) {
    let m = start(tree.sysfs.root());
    let (functions, disks, nets) = m.with_registry(|r| {
        let disks = r.devices().filter(|d| r.disk(&d.path).is_some()).count();
        let nets = r.devices().filter(|d| r.net(&d.path).is_some()).count();
        (r.len(), disks, nets)
    });
    m.shutdown();
    assert_eq!(
        (functions, disks, nets),
        (tree.functions, tree.disks, tree.nets),
        "the monitor's registry (functions, disks, interfaces) against the tree"
    );
    assert_eq!(scan(tree.sysfs.root()).len(), tree.functions);
    // Every function, disk and interface, and `lo`.
    let entries = tree.functions + tree.disks + tree.nets + 1;
    assert_eq!(baseline(tree.sysfs.root()), entries);
    assert_eq!(floor(tree.sysfs.root()), entries);
}

fn bench(c: &mut Criterion, tree: &Tree) {
    let root = tree.sysfs.root();
    let size = tree.functions;
    let mut g = c.benchmark_group(GROUP);
    // One iteration takes up to tens of milliseconds: equal-sized samples.
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function(format!("pciplug-{size}"), |b| {
        b.iter(|| start(root).shutdown());
    });
    g.bench_function(format!("pciplug-start-{size}"), |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let t0 = Instant::now();
                let m = start(root);
                timed += t0.elapsed();
                m.shutdown();
            }
            timed
        });
    });
    g.bench_function(format!("scan-{size}"), |b| {
        b.iter(|| scan(root));
    });
    g.bench_function(format!("baseline-{size}"), |b| {
        b.iter(|| baseline(root));
    });
    g.bench_function(format!("floor-{size}"), |b| {
        b.iter(|| floor(root));
    });
    g.finish();
}

/// The start (with its shutdown) and the baseline taken in turn, `rounds` times each, by the
/// CPU time of this thread: medians of each. On a shared machine the wall-clock figures drift
/// between criterion's runs of one and of the other; these pairs do not. The listener thread's
/// own time (a `poll` and its exit) is not in it, nor the wait for it to run.
fn interleaved_cpu(root: &Path, rounds: usize) -> (f64, f64) {
    let cpu_ns = |f: &dyn Fn()| {
        let before = thread_cpu_ns();
        f();
        (thread_cpu_ns() - before) as f64
    };
    let (mut starts, mut bases) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        starts.push(cpu_ns(&|| start(root).shutdown()));
        bases.push(cpu_ns(&|| {
            black_box(baseline(root));
        }));
    }
    (netns::median(&mut starts), netns::median(&mut bases))
}

/// The CPU time this thread has used, to the nanosecond (`CLOCK_THREAD_CPUTIME_ID`, which
/// brings the scheduler's count up to date; `schedstat` moves only at a tick or a switch).
fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn main() {
    common::alloc::set_counting(false);
    netns::in_private_netns("startup", run);
}

fn run() {
    let trees: Vec<Tree> = SIZES.iter().map(|&n| build(n)).collect();
    for tree in &trees {
        check(tree);
    }
    let mut c = common::criterion();
    for tree in &trees {
        bench(&mut c, tree);
    }
    println!();
    println!("== startup ({})", common::machine());
    let mut met = Vec::new();
    let mut figures = Vec::new();
    for tree in &trees {
        let size = tree.functions;
        let get = |id: &str| common::estimate_ns(GROUP, &format!("{id}-{size}"));
        let (Some(whole), Some(start), Some(scanned), Some(base), Some(links)) = (
            get("pciplug"),
            get("pciplug-start"),
            get("scan"),
            get("baseline"),
            get("floor"),
        ) else {
            println!("   {size} functions: no estimates from criterion (filtered out?)");
            continue;
        };
        // About 3 s at either size.
        let rounds = if size <= 64 { 500 } else { 15 };
        let (cpu_start, cpu_base) = interleaved_cpu(tree.sysfs.root(), rounds);
        println!(
            "   {size} functions ({} disks, {} interfaces, {} bridges): start + shutdown {}, start alone {}, scan + apply alone {}; baseline (list + canonicalize) {}; list + read_link alone {}",
            tree.disks,
            tree.nets,
            tree.functions - tree.disks - tree.nets,
            common::fmt_ns(whole),
            common::fmt_ns(start),
            common::fmt_ns(scanned),
            common::fmt_ns(base),
            common::fmt_ns(links),
        );
        println!(
            "   {size} functions, CPU time of the starting thread, {rounds} rounds taken in turn: start + shutdown {}, baseline {}",
            common::fmt_ns(cpu_start),
            common::fmt_ns(cpu_base),
        );
        let ratio = start / base;
        met.push(ratio <= TARGET);
        figures.push(format!(
            "{size} functions: start {} vs baseline {} = {ratio:.2} (with the shutdown {} = {:.2}; CPU time, in turn: {:.2})",
            common::fmt_ns(start),
            common::fmt_ns(base),
            common::fmt_ns(whole),
            whole / base,
            cpu_start / cpu_base,
        ));
    }
    println!(
        "RESULT startup: {} (target <= {TARGET}: {})",
        figures.join("; "),
        if !met.is_empty() && met.iter().all(|&m| m) {
            "met"
        } else {
            "NOT met"
        }
    );
}
