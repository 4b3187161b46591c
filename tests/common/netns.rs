//! Running a test in a private user + network namespace, where it may inject uevents through
//! the kernel and only it sees them.
//!
//! The test binary re-executes itself under `unshare --user --map-root-user --net`
//! (util-linux), filtered to the one test, and checks the child's result. In that namespace the
//! process has `CAP_SYS_ADMIN` and `CAP_NET_ADMIN` over the network namespace, which is what
//! injecting and forging need, and because the namespace is owned by a new user namespace the
//! kernel does not send it the machine's own uevents. Where `unshare` is missing or the kernel
//! refuses to create the namespaces, the test is skipped (see [`super::skip`]): it says why and
//! passes, except with `PCIPLUG_REQUIRE_KERNEL=1` (set by `.ci/run`) or `CI=true`, where it
//! fails with the same reason.

use std::process::Command;
use std::time::Duration;

use pciplug::Record;
use pciplug::testing::Injector;

use super::{eventually, skip};

/// Set in the re-executed child to the name of the test it runs.
const CHILD_ENV: &str = "PCIPLUG_TEST_NETNS_CHILD";
/// The parent's network namespace (`net:[inode]`), which the child must not be in.
const PARENT_NETNS_ENV: &str = "PCIPLUG_TEST_PARENT_NETNS";

/// Runs `body` in a private user + network namespace, in a child process.
///
/// `test` must be the test function's name: the child runs `<this binary> <test> --exact`.
pub fn in_private_netns(test: &str, body: impl FnOnce()) {
    if std::env::var(CHILD_ENV).as_deref() == Ok(test) {
        // The child. Injecting into the parent's namespace would reach the machine's udevd.
        let parent = std::env::var(PARENT_NETNS_ENV).expect("parent netns in the environment");
        assert_ne!(netns(), parent, "refusing to run outside a private netns");
        body();
        return;
    }
    let exe = std::env::current_exe().expect("path of the test binary");
    let output = Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "--"])
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test)
        .env(PARENT_NETNS_ENV, netns())
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) => return skip(test, format!("cannot run unshare(1) from util-linux: {e}")),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Show what the child printed (observations of the kernel's behaviour, or a failure).
    print!("{stdout}");
    eprint!("{stderr}");
    // Exactly one test ran and passed (a renamed test would otherwise match none and pass).
    if output.status.success() && stdout.contains("test result: ok. 1 passed") {
        return;
    }
    // unshare(1) reports its own failures as "unshare: ..." and never ran the test binary.
    if !stdout.contains("running 1 test") && stderr.starts_with("unshare:") {
        return skip(
            test,
            format!(
                "no private user + network namespace here: {}",
                stderr.trim()
            ),
        );
    }
    panic!(
        "{test} failed in its private network namespace ({})",
        output.status
    );
}

pub fn netns() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .expect("reading /proc/self/ns/net")
        .to_string_lossy()
        .into_owned()
}

/// The datagram without its `SEQNUM=` field: what the kernel accepts for injection.
pub fn without_seqnum(datagram: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(datagram.len());
    for field in datagram.split_inclusive(|&b| b == 0) {
        if !field.starts_with(b"SEQNUM=") {
            out.extend_from_slice(field);
        }
    }
    out
}

/// Whether a [`pciplug::Monitor`] with its default subsystem filter receives `datagram` once
/// injected (the kernel appends a `SEQNUM`, which the filter's length check counts on): see
/// `pciplug::netlink::filter`. A test that counts what the listener received counts these.
#[allow(dead_code)] // not every test binary counts
pub fn kept(datagram: &[u8]) -> bool {
    let mut d = without_seqnum(datagram);
    d.extend_from_slice(b"SEQNUM=1\0");
    pciplug::netlink::filter::passes(&d)
}

/// The datagrams of `records`, ready to inject (the kernel adds its own `SEQNUM`).
pub fn injectable(records: &[Record]) -> Vec<Vec<u8>> {
    records
        .iter()
        .map(|r| without_seqnum(&r.datagram))
        .collect()
}

/// The datagrams of the shipped recording `name` up to and including step `last`, ready to
/// inject.
pub fn recording_up_to(name: &str, last: u32) -> Vec<Vec<u8>> {
    let records = super::Fixture::load(name).records_in(..=last);
    assert!(!records.is_empty(), "{name} has steps 0..={last}");
    injectable(&records)
}

/// Injects each datagram through the kernel, which broadcasts it with sender port 0.
pub fn inject_all(datagrams: &[Vec<u8>]) {
    let injector = Injector::new().expect("an injector socket");
    for d in datagrams {
        injector.inject(d).expect("the kernel takes the uevent");
    }
}

/// Whether process `pid` has a `NETLINK_KOBJECT_UEVENT` socket (protocol 15) subscribed to
/// the kernel's uevent group 1.
///
/// The port id alone is not enough: `bind(2)` assigns it (and `/proc/net/netlink` shows it)
/// before it joins the group, and joining waits for the netlink table lock, which every
/// broadcast (every other test's injection too) holds for reading; what is injected in
/// between never reaches the socket. The `Groups` column is written in the same locked step
/// as the subscription.
pub fn uevent_socket_bound(pid: u32) -> bool {
    let table = std::fs::read_to_string("/proc/net/netlink").expect("reading /proc/net/netlink");
    let pid = pid.to_string();
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let in_group_1 = f
            .get(3)
            .and_then(|g| u32::from_str_radix(g, 16).ok())
            .is_some_and(|g| g & 1 != 0);
        f.get(1) == Some(&"15") && f.get(2) == Some(&pid.as_str()) && in_group_1
    })
}

/// Waits until process `pid` listens for uevents, so that what is injected next reaches it.
#[track_caller]
pub fn wait_until_listening(pid: u32) {
    assert!(
        eventually(Duration::from_secs(20), || uevent_socket_bound(pid)),
        "process {pid} never bound its uevent socket"
    );
}
