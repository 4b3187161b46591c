//! Bench 4, storm: 100,002 uevents (7,143 hot-plugs and as many unplugs of 1,000 synthetic
//! virtio-blk functions, each 7 datagrams of a real recording's shapes) injected through the
//! kernel as fast as one sender can, into pciplug's `Monitor` with the default receive buffer
//! and with a 64 KiB one; then the same into a Kata-style listener. Counted: datagrams
//! received, lost, `ENOBUFS` seen, resyncs; and the final registry against the truth.
//!
//! The truth is a sysfs tree the sender keeps as the kernel does: a device's directories
//! exist before its `add` uevents are sent and are gone before its `remove` uevents are sent.
//! The monitor coldplugs from it and rescans it after an overflow; at the end its scan is
//! the expected registry.
//!
//! A listener that keeps up never overflows, whatever the buffer. To model one that falls
//! behind (a busy agent; the case a small buffer is there to show), every 10,000 datagrams a
//! helper holds the listener's lock for 20 ms while the sender goes on, in every run alike.
//!
//! Run as root, it works in a network namespace of the initial user namespace, where the
//! default buffer is what the agent gets in production (128 MiB with `SO_RCVBUFFORCE`); the
//! synthetic devices live in PCI domains 1 and 2, so that the machine's own uevents, which
//! reach such a namespace, are left out of the comparison. Not root: a user namespace, where
//! the kernel caps the buffer at `net.core.rmem_max` (the output says what was granted).

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::mpsc::channel;
use std::thread;
use std::time::{Duration, Instant};

use pciplug::netlink::SocketOptions;
use pciplug::sysfs::Sysfs;
use pciplug::testing::Injector;
use pciplug::{Monitor, Registry};

use common::kata::KataListener;
use common::netns::{self, wait_until};
use common::synth::{self, Device, Kind, Shapes};

const DEVICES: usize = 1_000;
/// Hot-plugs and unplugs, 7 datagrams each: 100,002 datagrams.
const OPS: usize = 14_286;
const STALL_EVERY: usize = 10_000;
const STALL: Duration = Duration::from_millis(20);

/// The fake sysfs the sender keeps.
struct Tree {
    root: PathBuf,
}

impl Tree {
    fn new(root: &Path) -> Tree {
        for d in ["bus/pci/devices", "class/block", "class/net"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        Tree {
            root: root.to_path_buf(),
        }
    }

    fn dir(&self, devpath: &str) -> PathBuf {
        self.root.join(devpath.trim_start_matches('/'))
    }

    fn pci(&self, d: &Device) {
        let dir = self.dir(&d.devpath);
        fs::create_dir_all(&dir).unwrap();
        let (class, id, sub, driver) = match d.kind {
            Kind::Bridge => ("60400", "1B36:000C", "1B36:0000", "pcieport"),
            _ => ("10000", "1AF4:1042", "1AF4:1100", "virtio-pci"),
        };
        fs::write(
            dir.join("uevent"),
            format!(
                "DRIVER={driver}\nPCI_CLASS={class}\nPCI_ID={id}\nPCI_SUBSYS_ID={sub}\nPCI_SLOT_NAME={}\n",
                d.bdf
            ),
        )
        .unwrap();
        symlink(self.root.join("bus/pci"), dir.join("subsystem")).unwrap();
        symlink(&dir, self.root.join("bus/pci/devices").join(&d.bdf)).unwrap();
    }

    fn plug(&self, d: &Device, diskseq: u64) {
        self.pci(d);
        let disk = self.dir(&d.disk_devpath());
        fs::create_dir_all(&disk).unwrap();
        fs::write(
            disk.join("uevent"),
            format!(
                "MAJOR=254\nMINOR={}\nDEVNAME={}\nDEVTYPE=disk\nDISKSEQ={diskseq}\n",
                16 * d.n,
                d.disk_name()
            ),
        )
        .unwrap();
        symlink(self.root.join("class/block"), disk.join("subsystem")).unwrap();
        symlink(&disk, self.root.join("class/block").join(d.disk_name())).unwrap();
    }

    fn unplug(&self, d: &Device) {
        fs::remove_file(self.root.join("class/block").join(d.disk_name())).unwrap();
        fs::remove_file(self.root.join("bus/pci/devices").join(&d.bdf)).unwrap();
        fs::remove_dir_all(self.dir(&d.devpath)).unwrap();
    }
}

/// What a storm run saw.
struct Outcome {
    granted: usize,
    injected: u64,
    received: u64,
    overflows: u64,
    resyncs: u64,
    seconds: f64,
    /// `None` for the Kata-style listener, which has nothing to compare.
    equal: Option<bool>,
}

/// A registry's synthetic part (PCI domains 1 and up), as comparable text.
fn synthetic(reg: &Registry) -> Vec<String> {
    reg.views()
        .filter(|v| v.path.root().domain >= 1)
        .map(|v| serde_json::to_string(&v).unwrap())
        .collect()
}

enum Listener {
    Pciplug(Monitor),
    Kata(KataListener),
}

// One storm from injection to the last check of the final registry against the truth, in the
// order the RESULT line reports it; its steps share the socket, the counters and the clock.
#[allow(clippy::too_many_lines)]
fn storm(
    shapes: &Shapes,
    bridges: &[Device],
    devices: &[Device],
    buffer: usize,
    kata: bool,
) -> Outcome {
    let base = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let tree = Tree::new(base.path());
    for b in bridges {
        tree.pci(b);
    }
    let granted = SocketOptions::new()
        .recv_buffer(buffer)
        .open()
        .map(|s| s.recv_buffer().actual)
        .unwrap_or(0);
    let listener = if kata {
        Listener::Kata(KataListener::start(buffer))
    } else {
        Listener::Pciplug(
            Monitor::builder()
                .sysfs_root(base.path())
                .recv_buffer(buffer)
                .start()
                .expect("starting a monitor"),
        )
    };
    // The helper that stalls the listener on request.
    let (stall_tx, stall_rx) = channel::<()>();
    let stall = match &listener {
        Listener::Pciplug(m) => {
            let m = m.clone();
            Box::new(move |d: Duration| m.with_registry(|_| thread::sleep(d)))
                as Box<dyn Fn(Duration) + Send>
        }
        Listener::Kata(k) => k.staller(),
    };
    let staller = thread::spawn(move || {
        for () in stall_rx {
            stall(STALL);
        }
    });
    let received = |l: &Listener| match l {
        Listener::Pciplug(m) => m.stats().registry.received,
        Listener::Kata(k) => k.received.load(std::sync::atomic::Ordering::Acquire),
    };
    let counters = |l: &Listener| match l {
        Listener::Pciplug(m) => {
            let s = m.stats();
            (s.overflows, s.resyncs)
        }
        Listener::Kata(k) => (k.overflows.load(std::sync::atomic::Ordering::Relaxed), 0),
    };

    let injector = Injector::new().unwrap();
    let mut plugged: Vec<Option<u64>> = vec![None; devices.len()];
    let mut diskseq = 0u64;
    let mut injected = 0u64;
    let start = Instant::now();
    for op in 0..OPS {
        let i = op % devices.len();
        let d = &devices[i];
        let datagrams = match plugged[i] {
            None => {
                diskseq += 1;
                plugged[i] = Some(diskseq);
                tree.plug(d, diskseq);
                shapes.add(d, diskseq)
            }
            Some(seq) => {
                plugged[i] = None;
                tree.unplug(d);
                shapes.remove(d, seq)
            }
        };
        for x in &datagrams {
            injector.inject(x).expect("the kernel takes the uevent");
            injected += 1;
            if injected % STALL_EVERY as u64 == 0 {
                stall_tx.send(()).unwrap();
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    drop(stall_tx);
    staller.join().unwrap();
    // Quiet: nothing received, lost or resynced for a second.
    let mut last = (u64::MAX, (0, 0));
    wait_until(Duration::from_secs(120), || {
        thread::sleep(Duration::from_millis(1000));
        let now = (received(&listener), counters(&listener));
        let quiet = now == last;
        last = now;
        quiet
    });
    let (overflows, resyncs) = counters(&listener);
    let got = received(&listener);
    let equal = match &listener {
        Listener::Pciplug(m) => {
            let mut truth = Registry::new();
            Sysfs::new(base.path()).scan().unwrap().apply_to(&mut truth);
            let (got, want) = (synthetic(&m.registry()), synthetic(&truth));
            if got != want {
                let extra: Vec<&String> =
                    got.iter().filter(|g| !want.contains(g)).take(2).collect();
                let missing: Vec<&String> =
                    want.iter().filter(|w| !got.contains(w)).take(2).collect();
                println!(
                    "   registry: {} functions, truth {}; first differences: held but not true {extra:?}; true but not held {missing:?}",
                    got.len(),
                    want.len()
                );
            }
            Some(got == want)
        }
        Listener::Kata(_) => None,
    };
    match listener {
        Listener::Pciplug(m) => m.shutdown(),
        Listener::Kata(k) => k.stop(),
    }
    Outcome {
        granted,
        injected,
        received: got,
        overflows,
        resyncs,
        seconds,
        equal,
    }
}

fn main() {
    common::alloc::set_counting(false);
    netns::in_private_netns_as_root("storm", run);
}

fn run() {
    let shapes = Shapes::load();
    // Bridges in root slots of domains 1 and 2, 32 functions behind each; all disks.
    let all = synth::tree_in(1, DEVICES + DEVICES / 32 + 2, 32, 2);
    let bridges: Vec<Device> = all
        .iter()
        .filter(|d| d.kind == Kind::Bridge)
        .cloned()
        .collect();
    let devices: Vec<Device> = all
        .into_iter()
        .filter(|d| d.kind != Kind::Bridge)
        .map(|mut d| {
            d.kind = Kind::Disk;
            d
        })
        .take(DEVICES)
        .collect();
    assert_eq!(devices.len(), DEVICES);
    let runs = [
        (
            "pciplug, default buffer",
            pciplug::netlink::DEFAULT_RECV_BUFFER,
            false,
        ),
        ("pciplug, 64 KiB buffer", 64 << 10, false),
        (
            "Kata-style, default buffer",
            pciplug::netlink::DEFAULT_RECV_BUFFER,
            true,
        ),
        ("Kata-style, 64 KiB buffer", 64 << 10, true),
    ];
    let outcomes: Vec<(&str, Outcome)> = runs
        .iter()
        .map(|&(name, buffer, kata)| (name, storm(&shapes, &bridges, &devices, buffer, kata)))
        .collect();
    println!();
    println!(
        "== storm: {} datagrams ({OPS} plugs and unplugs of {DEVICES} virtio-blk functions), the listener stalled {} ms every {STALL_EVERY} ({})",
        outcomes[0].1.injected,
        STALL.as_millis(),
        common::machine()
    );
    for (name, o) in &outcomes {
        println!(
            "   {name:<27} buffer granted {:>9} bytes: {:>6} received, {:>6} lost, {:>3} ENOBUFS, {:>3} resyncs, {:.0} datagrams/s sent; final registry {}",
            o.granted,
            o.received,
            o.injected - o.received,
            o.overflows,
            o.resyncs,
            o.injected as f64 / o.seconds,
            match o.equal {
                Some(true) => "equals the truth",
                Some(false) => "DIFFERS from the truth",
                None => "not comparable (no resync: lost events stay lost)",
            }
        );
    }
    let (d, s) = (&outcomes[0].1, &outcomes[1].1);
    let default_ok = d.injected == d.received && d.overflows == 0 && d.equal == Some(true);
    let small_ok = s.overflows > 0 && s.equal == Some(true);
    println!(
        "RESULT storm: default buffer {} lost, equal to the truth: {} (target none lost: {}); 64 KiB buffer {} lost, {} ENOBUFS, equal to the truth after resync: {} (target loss detected and equal: {})",
        d.injected - d.received,
        d.equal == Some(true),
        if default_ok { "met" } else { "NOT met" },
        s.injected - s.received,
        s.overflows,
        s.equal == Some(true),
        if small_ok { "met" } else { "NOT met" },
    );
}
