//! The subsystem filter (`pciplug::netlink::filter`): what it drops, the registry never needed,
//! shown on every real recording; and the kernel runs the BPF program exactly as
//! `filter::passes` decides, shown by injecting every recorded datagram (and made-up ones laid
//! out otherwise) into a filtered and an unfiltered socket side by side, in a private user +
//! network namespace.

mod common;
use common::netns::{in_private_netns, kept, without_seqnum};
use common::{FIXTURES, Fixture, snapshot};
use std::time::Duration;

use pciplug::netlink::filter::{self, SCAN};
use pciplug::netlink::{Received, SocketOptions, UeventSocket};
use pciplug::testing::Injector;
use pciplug::{Datagram, Monitor, PciPath, Registry};

const BUF: usize = 8192;

/// The value of `key=` in `datagram` (the first one).
fn value<'a>(datagram: &'a [u8], key: &str) -> Option<&'a str> {
    datagram
        .split(|&b| b == 0)
        .filter_map(|f| std::str::from_utf8(f).ok())
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn what_the_filter_drops_the_registry_never_needed() {
    let (mut kept, mut dropped) = (0, 0);
    for name in FIXTURES {
        let f = Fixture::load(name);
        let (mut all, mut filtered) = (Registry::new(), Registry::new());
        for r in &f.recording.records {
            let d = &r.datagram;
            all.apply_datagram(r.sender, d);
            if filter::passes(d) {
                kept += 1;
                filtered.apply_datagram(r.sender, d);
            } else {
                dropped += 1;
                // Of a subsystem the registry does not read, and ignored by it.
                let subsystem = value(d, "SUBSYSTEM").unwrap_or_default();
                assert!(
                    !filter::kept_subsystems().any(|k| k == subsystem),
                    "{name} line {}: {subsystem} dropped",
                    r.line
                );
                assert!(
                    matches!(Datagram::parse(d), Ok(Datagram::Ignored(_))),
                    "{name} line {}: the registry reads what the filter drops: {:?}",
                    r.line,
                    String::from_utf8_lossy(d)
                );
            }
            // After every datagram, the same registry.
            assert_eq!(
                snapshot(&all),
                snapshot(&filtered),
                "{name} line {}: the filtered replay differs",
                r.line
            );
        }
    }
    println!("recordings: {kept} datagrams kept, {dropped} dropped");
    // The recordings are mostly of other subsystems (modules, virtio, bdi, wakeup...).
    assert!(
        dropped > 2 * kept,
        "kept {kept}, dropped {dropped}: the filter drops little"
    );
}

/// Made-up datagrams that are not laid out as the kernel lays out its own (the filter must
/// let each through), and some that are (dropped unless their subsystem is kept); without
/// `SEQNUM`, which the kernel appends.
fn made_up() -> Vec<Vec<u8>> {
    let dp = "/devices/virtual/pciplug-test/x";
    let long = format!("/devices/virtual/{}", "a".repeat(SCAN));
    let near = format!("/devices/virtual/{}", "a".repeat(SCAN - 40));
    let mut out: Vec<Vec<u8>> = vec![
        format!("add@{dp}\0DEVPATH={dp}\0ACTION=add\0SUBSYSTEM=misc\0"),
        format!("add@{dp}\0ACTION=add\0SUBSYSTEM=misc\0"),
        format!("add@{dp}\0ACTION=change\0DEVPATH={dp}\0SUBSYSTEM=misc\0"),
        format!("add@{dp}\0ACTION=add\0DEVPATH={dp}X\0SUBSYSTEM=misc\0"),
        format!("add@{long}\0ACTION=add\0DEVPATH={long}\0SUBSYSTEM=misc\0"),
        format!("add@{near}\0ACTION=add\0DEVPATH={near}\0SUBSYSTEM=misc\0"),
        format!("add@{near}\0ACTION=add\0DEVPATH={near}\0SUBSYSTEM=pci\0"),
        format!("add@{dp}\u{e9}\0ACTION=add\0DEVPATH={dp}\u{e9}\0SUBSYSTEM=misc\0"),
        format!("add@{dp}\u{7f}\0ACTION=add\0DEVPATH={dp}\u{7f}\0SUBSYSTEM=misc\0"),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect();
    for s in [
        "pci",
        "block",
        "net",
        "nvme",
        "vfio",
        "pc",
        "pcie",
        "blockx",
        "bloc",
        "nvme-subsystem",
        "vfio-dev",
        "netx",
        "",
    ] {
        out.push(format!("change@{dp}\0ACTION=change\0DEVPATH={dp}\0SUBSYSTEM={s}\0").into_bytes());
    }
    out
}

/// A filtered and an unfiltered socket side by side, fed by one injector.
struct SideBySide {
    filtered: UeventSocket,
    all: UeventSocket,
    injector: Injector,
    buf: Vec<u8>,
    fbuf: Vec<u8>,
}

impl SideBySide {
    fn open() -> SideBySide {
        let filtered = SocketOptions::new()
            .subsystem_filter(true)
            .open()
            .expect("a filtered socket");
        assert!(filtered.is_filtered(), "the kernel refused the filter");
        let all = UeventSocket::open().expect("an unfiltered socket");
        assert!(!all.is_filtered());
        SideBySide {
            filtered,
            all,
            injector: Injector::new().unwrap(),
            buf: vec![0u8; BUF],
            fbuf: vec![0u8; BUF],
        }
    }

    /// Injects `d`: the datagram the kernel sent (as the unfiltered socket got it, `SEQNUM`
    /// appended), whether the filtered socket got it too (the same bytes), and whether
    /// `filter::passes` says it should have.
    fn inject(&mut self, d: &[u8]) -> (String, bool, bool) {
        self.injector
            .inject(d)
            .expect("the kernel takes the uevent");
        // The kernel queues an injected uevent before `inject` returns, or drops it.
        let Received::Datagram(env) = self
            .all
            .recv_timeout(&mut self.buf, Duration::from_secs(10))
            .unwrap()
        else {
            panic!("the unfiltered socket got nothing");
        };
        let sent = env.bytes(&self.buf);
        let got = match self
            .filtered
            .recv_timeout(&mut self.fbuf, Duration::ZERO)
            .unwrap()
        {
            Received::Datagram(f) => {
                assert_eq!(f.bytes(&self.fbuf), sent);
                true
            }
            Received::TimedOut => false,
            other => panic!("{other:?}"),
        };
        (
            String::from_utf8_lossy(sent).into_owned(),
            got,
            filter::passes(sent),
        )
    }
}

#[test]
fn the_kernel_runs_the_filter_as_passes_decides() {
    in_private_netns("the_kernel_runs_the_filter_as_passes_decides", || {
        let mut sockets = SideBySide::open();
        let mut payloads: Vec<Vec<u8>> = FIXTURES
            .iter()
            .flat_map(|name| Fixture::load(name).recording.records)
            .filter(|r| r.sender == 0)
            .map(|r| without_seqnum(&r.datagram))
            .collect();
        payloads.extend(made_up());
        let (mut kept, mut dropped) = (0, 0);
        for p in &payloads {
            let (sent, got, want) = sockets.inject(p);
            assert_eq!(
                got,
                want,
                "{}: {sent:?}",
                if got {
                    "kept, passes says drop"
                } else {
                    "dropped, passes says keep"
                }
            );
            if got {
                kept += 1;
            } else {
                dropped += 1;
            }
        }
        println!(
            "{} injected: {kept} kept, {dropped} dropped",
            payloads.len()
        );
        assert!(
            kept > 300 && dropped > 1000,
            "kept {kept}, dropped {dropped}"
        );
    });
}

/// A small deterministic generator (splitmix64), so that a failure names its case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `d` (a recorded datagram without `SEQNUM`) changed at random: its subsystem replaced, a
/// byte of its first 200 set to anything (a NUL, a byte above 0x80), cut short, its devpath
/// lengthened, or two of its fields swapped.
fn mutate(d: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut d = d.to_vec();
    match rng.below(5) {
        0 => {
            let subsystems = [
                "pci", "block", "net", "nvme", "vfio", "misc", "blockx", "nvm", "vf", "pcie", "",
            ];
            let s = subsystems[rng.below(subsystems.len())];
            let mut fields: Vec<Vec<u8>> = d.split(|&b| b == 0).map(<[u8]>::to_vec).collect();
            for f in &mut fields {
                if f.starts_with(b"SUBSYSTEM=") {
                    *f = format!("SUBSYSTEM={s}").into_bytes();
                }
            }
            d = fields.join(&0);
        }
        1 => {
            let at = rng.below(d.len().min(200));
            d[at] = rng.next() as u8;
        }
        2 => d.truncate(1 + rng.below(d.len())),
        3 => {
            // Both copies of the devpath, so that the layout still holds.
            let header_end = d.iter().position(|&b| b == 0).unwrap_or(d.len());
            let header = String::from_utf8_lossy(&d[..header_end]).into_owned();
            if let Some((_, devpath)) = header.split_once('@') {
                let longer = format!("{devpath}/{}", "x".repeat(rng.below(160)));
                let text = String::from_utf8_lossy(&d).replace(devpath, &longer);
                d = text.into_bytes();
            }
        }
        _ => {
            let mut fields: Vec<Vec<u8>> = d.split(|&b| b == 0).map(<[u8]>::to_vec).collect();
            let n = fields.len();
            fields.swap(rng.below(n), rng.below(n));
            d = fields.join(&0);
        }
    }
    if d.is_empty() {
        d.push(b'x');
    }
    d
}

#[test]
fn the_kernel_runs_the_filter_as_passes_decides_on_mutated_datagrams() {
    in_private_netns(
        "the_kernel_runs_the_filter_as_passes_decides_on_mutated_datagrams",
        || {
            let mut sockets = SideBySide::open();
            let recorded: Vec<Vec<u8>> = FIXTURES
                .iter()
                .flat_map(|name| Fixture::load(name).recording.records)
                .map(|r| without_seqnum(&r.datagram))
                .collect();
            let mut rng = Rng(15);
            let (mut kept, mut dropped) = (0, 0);
            for case in 0..3000 {
                let d = mutate(&recorded[rng.below(recorded.len())], &mut rng);
                let (sent, got, want) = sockets.inject(&d);
                assert_eq!(
                    got,
                    want,
                    "case {case}: the kernel {} {sent:?}",
                    if got { "kept" } else { "dropped" },
                );
                if got {
                    kept += 1;
                } else {
                    dropped += 1;
                }
            }
            println!("3000 mutated datagrams: {kept} kept, {dropped} dropped");
            assert!(
                kept > 300 && dropped > 300,
                "kept {kept}, dropped {dropped}"
            );
        },
    );
}

/// The step-1 hot-plug of `q35-acpi-hotplug` (a virtio-blk disk at `02/00`), ready to inject.
fn disk_plug() -> Vec<Vec<u8>> {
    let f = Fixture::load("q35-acpi-hotplug");
    f.records_in(1..=1)
        .iter()
        .map(|r| without_seqnum(&r.datagram))
        .collect()
}

#[test]
fn a_monitor_filters_by_default_and_receives_only_what_it_keeps() {
    in_private_netns(
        "a_monitor_filters_by_default_and_receives_only_what_it_keeps",
        || {
            let plug = disk_plug();
            // As the kernel sends them, with the `SEQNUM` it appends.
            let kept = plug.iter().filter(|d| kept(d)).count() as u64;
            assert!(
                0 < kept && kept < plug.len() as u64,
                "{kept} of {}",
                plug.len()
            );
            let sysfs = tempfile::tempdir().unwrap();
            for (filter_on, want_received) in [(true, kept), (false, plug.len() as u64)] {
                let m = Monitor::builder()
                    .sysfs_root(sysfs.path())
                    .coldplug(false)
                    .subsystem_filter(filter_on)
                    .start()
                    .unwrap();
                assert_eq!(m.stats().subsystem_filter, filter_on);
                let injector = Injector::new().unwrap();
                for d in &plug {
                    injector.inject(d).unwrap();
                }
                let path: PciPath = "02/00".parse().unwrap();
                let disk = m
                    .wait_block_timeout(&path, Duration::from_secs(10))
                    .expect("the disk");
                assert_eq!(&*disk.name, "vda");
                // Everything injected is queued (or dropped) before `inject` returns; the
                // listener has it all once it has applied the last datagram it keeps.
                assert!(common::eventually(Duration::from_secs(10), || m
                    .stats()
                    .registry
                    .received
                    >= want_received));
                std::thread::sleep(Duration::from_millis(50));
                let s = m.stats();
                assert_eq!(
                    s.registry.received, want_received,
                    "filter {filter_on}: {s:?}"
                );
                m.shutdown();
            }
        },
    );
}
