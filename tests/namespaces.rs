//! Where uevents cannot arrive: started outside the initial network namespace, `pciplug`
//! warns once that interfaces of other namespaces are never announced to it; in the initial
//! one it says nothing.

mod common;

use common::fake_sysfs::FakeSysfs;
use common::netns::in_private_netns;
use common::*;

/// The inode number of the initial network namespace since Linux 6.18 (`NET_NS_INIT_INO`).
const NET_NS_INIT_INO: &str = "net:[4026531833]";

const WARNING: &str = "pciplug runs in a network namespace other than the initial one";

/// `pciplug wait 02/00 --timeout 0` on an empty guest: it starts a monitor and times out.
fn wait_once() -> common::cli::Ran {
    let sysfs = FakeSysfs::new();
    let ran = pciplug(["wait", "02/00", "--timeout", "0"])
        .arg("--sysfs")
        .arg(sysfs.root())
        .run();
    assert_eq!(ran.code(), 1, "{}", ran.stderr);
    ran
}

#[test]
fn a_private_network_namespace_is_warned_of_once() {
    in_private_netns("a_private_network_namespace_is_warned_of_once", || {
        let ran = wait_once();
        assert_eq!(ran.stderr.matches(WARNING).count(), 1, "{}", ran.stderr);
        // Under `unshare --user --net` the user namespace is new too: nothing but what is
        // injected here arrives, and the warning says so.
        assert!(
            ran.stderr
                .contains("network interfaces in other namespaces")
                && ran.stderr.contains("no device's uevents reach it"),
            "{}",
            ran.stderr
        );
    });
}

#[test]
fn the_initial_network_namespace_gets_no_warning() {
    const TEST: &str = "the_initial_network_namespace_gets_no_warning";
    let ns = common::netns::netns();
    if ns != NET_NS_INIT_INO {
        // Before Linux 6.18 the initial namespace has no fixed inode to recognise it by.
        return skip(
            TEST,
            format!("cannot tell that {ns} is the initial network namespace"),
        );
    }
    let ran = wait_once();
    assert!(!ran.stderr.contains(WARNING), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("no block disk at 02/00"),
        "{}",
        ran.stderr
    );
}
