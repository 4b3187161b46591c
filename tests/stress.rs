//! Concurrency stress: 64 threads wait, time out and wait again on random PCI paths while a
//! storm replayed from a real recording adds and removes disks there through the kernel,
//! reusing their names. Every waiter whose disk was there before its deadline gets it, none
//! gets a wrong or stale one, nothing deadlocks, and the waiter table ends empty; a million
//! timed-out waits leave nothing behind either. The wait protocol itself is model-checked in
//! `src/wait.rs` (loom).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::netns::{in_private_netns, injectable, kept};
use common::*;
use pciplug::testing::Injector;
use pciplug::{Monitor, PciPath, WaitError};

/// Paths the storm plugs disks at, each with its own disk name (names are reused across
/// plugs at a path, with a new DISKSEQ each time, as the kernel does).
const PATHS: usize = 8;
const PLUGS_PER_PATH: u64 = 60;
const WAITERS: usize = 64;

fn path_of(j: usize) -> PciPath {
    p(&format!("{:02x}/00", 8 + j))
}

fn name_of(j: usize) -> String {
    format!("vd{}", (b'a' + j as u8) as char)
}

/// A small deterministic generator (xorshift64*), so that a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One plug or unplug of the disk at path `j`: the datagrams of step 1 (plug) or step 8
/// (unplug) of q35-acpi-hotplug, moved to the path's slot and renamed, with DISKSEQ `seq`.
#[derive(Clone)]
struct Op {
    j: usize,
    seq: u64,
    plug: bool,
    datagrams: Vec<Vec<u8>>,
}

fn storm() -> Vec<Op> {
    let f = Fixture::load("q35-acpi-hotplug");
    let step = |s: u32| -> Vec<String> {
        injectable(&f.records_in(s..=s))
            .into_iter()
            .map(|d| String::from_utf8(d).unwrap())
            .collect()
    };
    let (plug_text, unplug_text) = (step(1), step(8));
    let shaped = |text: &[String], j: usize, seq: u64| -> Vec<Vec<u8>> {
        text.iter()
            .map(|d| {
                d.replace("0000:00:02.0", &format!("0000:00:{:02x}.0", 8 + j))
                    .replace("/vda\0", &format!("/{}\0", name_of(j)))
                    .replace("DEVNAME=vda\0", &format!("DEVNAME={}\0", name_of(j)))
                    .replace("DISKSEQ=1\0", &format!("DISKSEQ={seq}\0"))
                    .into_bytes()
            })
            .collect()
    };
    // Each path alternates plug, unplug, ..., plug; the paths interleave at random.
    let mut rng = Rng(0x005e_ed0f_5707);
    let mut next: Vec<u64> = vec![0; PATHS];
    let mut ops = Vec::new();
    let last = 2 * PLUGS_PER_PATH - 1;
    while next.iter().any(|&n| n < last) {
        let j = rng.below(PATHS as u64) as usize;
        if next[j] == last {
            continue;
        }
        let (k, plug) = (next[j] / 2, next[j] % 2 == 0);
        let seq = 1000 * (j as u64 + 1) + k;
        let text = if plug { &plug_text } else { &unplug_text };
        ops.push(Op {
            j,
            seq,
            plug,
            datagrams: shaped(text, j, seq),
        });
        next[j] += 1;
    }
    ops
}

/// When an op's datagrams were handed to the kernel and when the listener had applied them.
struct Applied {
    op: Op,
    /// Before the first datagram was injected.
    first_sent: Instant,
    /// After the datagram that adds or removes the disk itself was applied.
    disk_applied: Instant,
    /// After the last datagram was applied.
    last_applied: Instant,
}

/// What one wait did: the DISKSEQ of the disk it got (its name and path were checked as it
/// returned), or `None` for a timeout.
struct Waited {
    j: usize,
    start: Instant,
    /// `None`: for ever.
    deadline: Option<Instant>,
    end: Instant,
    got: Option<u64>,
}

/// The generations of the disk at a path: `(seq, possibly present from, surely present
/// from, surely present until, possibly present until)`; `None` ends for a disk left plugged.
type Life = (u64, Instant, Instant, Option<Instant>, Option<Instant>);

fn lives(applied: &[Applied], j: usize) -> Vec<Life> {
    let mut out: Vec<Life> = Vec::new();
    for a in applied.iter().filter(|a| a.op.j == j) {
        if a.op.plug {
            out.push((a.op.seq, a.first_sent, a.disk_applied, None, None));
        } else if let Some(life) = out.last_mut() {
            assert_eq!(life.0, a.op.seq);
            // The unplug's first datagram (the block remove) is the disk's; from its
            // sending on, the disk may be gone.
            life.3 = Some(a.first_sent);
            life.4 = Some(a.last_applied);
        }
    }
    out
}

/// One of the waiters: random paths, from "now or never" to a few milliseconds or for ever,
/// until `stop`; what each wait returned, and when.
fn wait_randomly(m: &Monitor, stop: &AtomicBool, w: usize) -> Vec<Waited> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (w as u64 + 1));
    let mut log = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let j = rng.below(PATHS as u64) as usize;
        // From "now or never" to a few milliseconds, and one in eight
        // for ever: only a wakeup ends those (every disk is plugged
        // again at the end of the storm).
        let timeout = Duration::from_micros(rng.below(4) * rng.below(3000));
        let start = Instant::now();
        let deadline = (rng.below(8) != 0).then(|| start + timeout);
        let result = match deadline {
            Some(at) => m.wait_block_deadline(&path_of(j), at),
            None => m.wait_block(&path_of(j)),
        };
        let end = Instant::now();
        let got = match result {
            Ok(disk) => {
                // The disk of this path, under this path's name.
                assert_eq!(&*disk.name, name_of(j), "a wrong device");
                let at = PciPath::from_devpath(&disk.devpath).unwrap();
                assert_eq!(at.unwrap().0, path_of(j), "a wrong device");
                Some(disk.diskseq.expect("virtio-blk disks have one"))
            }
            Err(WaitError::Timeout(_)) => {
                assert!(deadline.is_some(), "a wait for ever timed out");
                None
            }
            Err(e) => panic!("unexpected error: {e}"),
        };
        log.push(Waited {
            j,
            start,
            deadline,
            end,
            got,
        });
        // Half of those who got their disk wait for it to go away.
        if got.is_some() && rng.below(2) == 0 {
            let timeout = Duration::from_micros(rng.below(5000));
            match m.wait_removed_timeout(&path_of(j), timeout) {
                Ok(()) | Err(WaitError::Timeout(_)) => {}
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
    }
    log
}

/// Injects the storm, paced so that the socket never overflows; notes when each operation's
/// first datagram was sent, when its disk was applied and when its last datagram was.
fn inject_paced(monitor: &Monitor, ops: Vec<Op>) -> Vec<Applied> {
    let injector = Injector::new().unwrap();
    let mut applied = Vec::new();
    let mut count = monitor.stats().registry.received;
    for op in ops {
        let (mut first_sent, mut disk_applied) = (None, None);
        for d in &op.datagrams {
            let sent = Instant::now();
            first_sent.get_or_insert(sent);
            injector.inject(d).unwrap();
            // Only what the socket's subsystem filter keeps reaches the listener.
            if !kept(d) {
                continue;
            }
            count += 1;
            assert!(
                eventually(Duration::from_secs(30), || {
                    monitor.stats().registry.received >= count
                }),
                "the listener never took a datagram: {:?}",
                monitor.stats()
            );
            if field(d, "DEVNAME").is_some() {
                disk_applied = Some(Instant::now());
            }
        }
        applied.push(Applied {
            op,
            first_sent: first_sent.unwrap(),
            disk_applied: disk_applied.unwrap(),
            last_applied: Instant::now(),
        });
    }
    applied
}

#[test]
fn waiters_during_a_hotplug_storm_get_their_disk_never_a_wrong_or_stale_one() {
    in_private_netns(
        "waiters_during_a_hotplug_storm_get_their_disk_never_a_wrong_or_stale_one",
        || {
            let sysfs = common::fake_sysfs::FakeSysfs::new();
            let monitor = Monitor::builder().sysfs_root(sysfs.root()).start().unwrap();
            let ops = storm();
            let done = Arc::new(AtomicBool::new(false));
            // A deadlock would hang the joins below: give up loudly instead.
            let watchdog_done = Arc::clone(&done);
            thread::spawn(move || {
                let finished = eventually(Duration::from_secs(240), || {
                    watchdog_done.load(Ordering::Relaxed)
                });
                if !finished {
                    eprintln!("the stress test did not finish in 240s: deadlock?");
                    std::process::abort();
                }
            });

            let waiters: Vec<_> = (0..WAITERS)
                .map(|w| {
                    let (m, stop) = (monitor.clone(), Arc::clone(&done));
                    thread::spawn(move || wait_randomly(&m, &stop, w))
                })
                .collect();

            // The storm, paced so that the socket never overflows; each datagram's time of
            // sending and of having been applied is noted.
            let applied = inject_paced(&monitor, ops);
            // Every disk is plugged now: stop the waiters. Each ends its current wait, at the
            // latest at its deadline (a few milliseconds), or, waiting for ever, when its disk
            // wakes it; one that is never woken fails the test here.
            done.store(true, Ordering::Relaxed);
            let (tx, rx) = std::sync::mpsc::channel();
            thread::spawn(move || {
                let joined: Vec<_> = waiters.into_iter().map(|w| w.join()).collect();
                let _ = tx.send(joined);
            });
            let joined = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("waiters still waiting 30s after their disks were plugged");
            let logs: Vec<Waited> = joined
                .into_iter()
                .flat_map(|j| j.unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                .collect();

            let s = monitor.stats();
            assert_eq!((s.waiters, s.waiting_paths), (0, 0), "waiters left behind");
            assert_eq!((s.overflows, s.registry.malformed), (0, 0), "{s:?}");

            let lives: Vec<Vec<Life>> = (0..PATHS).map(|j| lives(&applied, j)).collect();
            let (mut got, mut timed_out) = (0usize, 0usize);
            for w in &logs {
                let life = &lives[w.j];
                match w.got {
                    Some(seq) => {
                        got += 1;
                        // A generation that may have been present during the wait.
                        let g = life.iter().find(|g| g.0 == seq).expect("a known DISKSEQ");
                        assert!(
                            g.1 <= w.end && g.4.is_none_or(|until| until >= w.start),
                            "stale: {} DISKSEQ {seq} was gone before the wait",
                            name_of(w.j)
                        );
                    }
                    None => {
                        timed_out += 1;
                        // The last look was between the deadline and the return: no disk may
                        // have been surely present all that while.
                        let deadline = w.deadline.unwrap();
                        let missed = life
                            .iter()
                            .find(|g| g.2 <= deadline && g.3.is_none_or(|until| until >= w.end));
                        assert!(
                            missed.is_none(),
                            "a waiter on {} timed out while DISKSEQ {} was there",
                            path_of(w.j),
                            missed.unwrap().0
                        );
                    }
                }
            }
            eprintln!(
                "{} plugs and unplugs; {} waits: {got} answered, {timed_out} timed out",
                applied.len(),
                logs.len()
            );
            assert!(
                got > 0 && timed_out > 0,
                "the storm exercised both outcomes"
            );
        },
    );
}

#[test]
fn a_million_timed_out_waits_leave_nothing_behind() {
    // No kernel events needed: nothing ever answers these paths.
    let sysfs = common::fake_sysfs::FakeSysfs::new();
    let monitor = Monitor::builder()
        .sysfs_root(sysfs.root())
        .coldplug(false)
        .start()
        .unwrap();
    const THREADS: usize = 4;
    const WAITS: usize = 1_000_000 / THREADS;
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let m = monitor.clone();
            thread::spawn(move || {
                let mut rng = Rng(t as u64 + 7);
                let mut timed_out = 0;
                for _ in 0..WAITS {
                    // Deep behind bridges that this guest does not have, so never answered.
                    let path = p(&format!(
                        "1e/1f/{:02x}/{:02x}",
                        rng.below(32),
                        rng.below(32)
                    ));
                    let timeout = Duration::from_micros(rng.below(2) * 5);
                    if let Err(WaitError::Timeout(_)) = m.wait_block_timeout(&path, timeout) {
                        timed_out += 1;
                    }
                }
                timed_out
            })
        })
        .collect();
    let timed_out: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(timed_out, THREADS * WAITS);
    let s = monitor.stats();
    assert_eq!(
        (s.waiters, s.waiting_paths),
        (0, 0),
        "the waiter table leaked"
    );
}
