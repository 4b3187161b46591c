//! Running a bench in a private user + network namespace, where it may inject uevents through
//! the kernel (`pciplug::testing::Injector`) and only it sees them, as `tests/common/netns.rs`
//! does for the tests.
//!
//! The bench binary re-executes itself under `unshare --user --map-root-user --net` with the
//! same arguments and relays what the child prints. Where the namespaces cannot be made (no
//! `unshare`, user namespaces refused to this user) or the kernel refuses a probe uevent
//! injected there, it prints `SKIPPED <bench>: <why>` and succeeds: these benches need root,
//! or user namespaces, for the live socket. Benches are measurements, not tests:
//! `PCIPLUG_REQUIRE_KERNEL` (which makes a skipped test fail, `tests/common/skip.rs`) does not
//! apply here, and a skipped bench reports no figure.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the re-executed child to the bench's name.
const CHILD_ENV: &str = "PCIPLUG_BENCH_NETNS_CHILD";
/// The parent's network namespace, which the child must not be in.
const PARENT_NETNS_ENV: &str = "PCIPLUG_BENCH_PARENT_NETNS";
/// Printed by the child first, so that the parent can tell unshare's failures from the bench's.
const STARTED: &str = "netns child started";
/// Injected by the child before the bench runs, to see that the kernel takes injected uevents.
const PROBE: &[u8] = b"add@/bench/probe\0ACTION=add\0DEVPATH=/bench/probe\0SUBSYSTEM=bench\0";

/// Runs `body` in a private user + network namespace, in a child process.
pub fn in_private_netns(bench: &str, body: impl FnOnce()) {
    in_netns(bench, false, body)
}

/// Like [`in_private_netns`], but as the machine's root, in a network namespace of the initial
/// user namespace (`unshare --net`), when this process is root: there the socket gets the
/// receive buffer it gets in production (`SO_RCVBUFFORCE` needs `CAP_NET_ADMIN` in the
/// initial user namespace; under `--user` the kernel caps the buffer at
/// `net.core.rmem_max`). Such a namespace also receives the machine's own uevents, which the
/// caller must tell apart. Falls back to a user namespace when not root.
pub fn in_private_netns_as_root(bench: &str, body: impl FnOnce()) {
    // SAFETY: geteuid takes no arguments and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    in_netns(bench, root, body)
}

fn in_netns(bench: &str, as_root: bool, body: impl FnOnce()) {
    if std::env::var(CHILD_ENV).as_deref() == Ok(bench) {
        let parent = std::env::var(PARENT_NETNS_ENV).expect("parent netns in the environment");
        // Injecting into the parent's namespace would reach the machine's udevd.
        assert_ne!(
            netns(),
            parent,
            "refusing to inject outside a private netns"
        );
        println!("{STARTED}");
        // Some kernels (or seccomp profiles) refuse injection even in a namespace of our own.
        if let Err(e) = pciplug::testing::Injector::new().and_then(|i| i.inject(PROBE)) {
            println!("SKIPPED {bench}: the kernel refuses uevent injection here: {e}");
            return;
        }
        body();
        return;
    }
    let exe = std::env::current_exe().expect("path of the bench binary");
    let ns_args: &[&str] = if as_root {
        &["--net", "--"]
    } else {
        &["--user", "--map-root-user", "--net", "--"]
    };
    let child = Command::new("unshare")
        .args(ns_args)
        .arg(exe)
        .args(std::env::args().skip(1))
        .env(CHILD_ENV, bench)
        .env(PARENT_NETNS_ENV, netns())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            println!("SKIPPED {bench}: cannot run unshare(1) from util-linux: {e}");
            return;
        }
    };
    let stderr = child.stderr.take().expect("piped stderr");
    let err_thread = std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            if seen.len() < 4096 {
                seen.push_str(&line);
                seen.push('\n');
            }
        }
        seen
    });
    let mut started = false;
    let stdout = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if line == STARTED {
            started = true;
            continue;
        }
        println!("{line}");
        let _ = std::io::stdout().flush();
    }
    let status = child.wait().expect("waiting for the bench child");
    let stderr = err_thread.join().unwrap_or_default();
    if !started {
        println!(
            "SKIPPED {bench}: needs root (or user namespaces) to inject uevents in a private network namespace: {}",
            stderr.trim()
        );
        return;
    }
    assert!(
        status.success(),
        "{bench} failed in its private network namespace ({status})"
    );
}

pub fn netns() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .expect("reading /proc/self/ns/net")
        .to_string_lossy()
        .into_owned()
}

/// CPU time a thread of this process has used, from `/proc/self/task/<tid>/schedstat`
/// (nanoseconds on a CPU): what a listener thread pays, whatever the other core does.
pub fn thread_cpu_ns(tid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The state letter of a thread of this process (`R` running or runnable, `S` asleep, ...),
/// from `/proc/self/task/<tid>/stat`.
pub fn thread_state(tid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // After the name, which is in parentheses and may hold anything.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// How many times a thread of this process was scheduled in (the third field of
/// `/proc/self/task/<tid>/schedstat`, its timeslices): for a listener that blocks when its
/// socket is empty, its wake-ups.
pub fn thread_runs(tid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(0)
}

/// The id of this process's thread named `name`.
pub fn thread_named(name: &str) -> Option<u32> {
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let entry = entry.ok()?;
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            return entry.file_name().to_str()?.parse().ok();
        }
    }
    None
}

/// Runs `f` on a thread of its own that has first moved to a new network namespace
/// (`unshare(CLONE_NEWNET)`, which moves only the calling thread), and returns what `f`
/// returns. The sockets `f` opens stay in that namespace wherever they are used from: a
/// `pciplug::testing::Injector` opened there reaches only the listeners opened there. Needs
/// `CAP_SYS_ADMIN` over the current namespace, which [`in_private_netns`]'s child has.
pub fn in_new_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare takes a flag word and changes only this thread's namespaces.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "unshare(CLONE_NEWNET): {}",
                std::io::Error::last_os_error()
            );
            f()
        })
        .join()
        .expect("the thread in the new network namespace")
    })
}

/// This thread's id.
pub fn gettid() -> u32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    (unsafe { libc::gettid() }) as u32
}

/// Polls `done` every millisecond until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    done()
}

/// The median of `v` (which it sorts).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// The `p`-th percentile (0..=100) of sorted `v`, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
