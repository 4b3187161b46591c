//! Bench 6, start-up: `Monitor` start (subscribe, coldplug scan, the listener thread that
//! drains what queued) over fake sysfs trees of 64 and 4,096 PCI functions, against a
//! baseline that only lists the directories the scan lists and resolves each entry's link.
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
//! - `pciplug`: `Monitor::builder().sysfs_root(tree).start()`, then `shutdown()` (which stops
//!   the listener thread and joins it);
//! - `pciplug-start`: the same, the clock stopped when `start()` returns (the shutdown is
//!   left out), to tell the start from the thread's join;
//! - `baseline`: `read_dir` of `bus/pci/devices`, `class/nvme`, `class/block`, `class/net`,
//!   `class/vfio` and `class/nvme-subsystem`, and `fs::canonicalize` of every entry (what
//!   resolving a link to the device's path takes, `realpath`); nothing is read from the
//!   devices. The target is against it.
//! - for the report: `scan`, `Sysfs::scan` applied to a new `Registry` (no socket, no
//!   thread), and `floor`, the same listing with only a `read_link` of each entry.
//!
//! The monitor runs in a private user + network namespace, where no uevent of the machine's
//! reaches its socket, so the drain finds the queue empty in every iteration alike.

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
        let ratio = whole / base;
        met.push(ratio <= TARGET);
        figures.push(format!(
            "{size} functions start+shutdown {} vs baseline {} = {ratio:.2} (start alone {} = {:.2})",
            common::fmt_ns(whole),
            common::fmt_ns(base),
            common::fmt_ns(start),
            start / base,
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
