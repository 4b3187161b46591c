//! Which kernel uevents can reach this process: the namespace check a [`Monitor`] makes when it
//! starts, and its one warning.
//!
//! The kernel sends a network interface's uevents only to the network namespace the interface
//! is in, and the uevents of every other device (block, PCI, SCSI, NVMe) only to network
//! namespaces owned by the initial user namespace. A process in another network namespace
//! therefore never hears of the interfaces of the initial one (a VM's NICs), and one whose
//! user namespace is not the initial one either hears of no device at all, except what is
//! injected into its own namespace. Nothing fails when that happens: waits time out. So the
//! first start of a [`Monitor`] outside the initial network namespace says so, once per
//! process, as a `tracing` warning.
//!
//! [`Monitor`]: super::Monitor

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Once;

/// The inode number the kernel gives the initial network namespace since Linux 6.18
/// (`NET_NS_INIT_INO` in `<linux/nsfs.h>`); older kernels give it one from the dynamic range
/// (`0xF0000000` and up), so no other namespace ever has this one.
const NET_NS_INIT_INO: u64 = 0xEFFF_FFF9;
/// The inode number of the initial user namespace (`PROC_USER_INIT_INO`, fixed since 3.8).
const USER_NS_INIT_INO: u64 = 0xEFFF_FFFD;
/// A sysctl the kernel registers in the initial network namespace only (`net_core_table`):
/// `/proc/sys/net` shows the reader's own namespace, so this file exists only there.
const INIT_NET_ONLY_SYSCTL: &str = "sys/net/core/netdev_max_backlog";

/// What `/proc` says about this process's namespaces; read by [`Facts::read`].
#[derive(Debug)]
pub(crate) struct Facts {
    /// `(device, inode)` of `/proc/self/ns/net`.
    pub(crate) own_net: io::Result<(u64, u64)>,
    /// `(device, inode)` of `/proc/1/ns/net`; often unreadable (it needs ptrace access to
    /// PID 1), and in a container with its own PID namespace it is the container's init.
    pub(crate) pid1_net: io::Result<(u64, u64)>,
    /// Whether [`INIT_NET_ONLY_SYSCTL`] exists.
    pub(crate) init_net_only_sysctl: bool,
    /// The inode of `/proc/self/ns/user`.
    pub(crate) own_user: io::Result<u64>,
}

/// The network namespace this process is in, as far as [`Facts`] tell.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NetNamespace {
    /// The initial one, where the machine's interfaces are.
    Initial,
    /// Another one. `user_initial` is whether the process's user namespace is the initial
    /// one (then uevents of devices other than interfaces still arrive); `how` says how it
    /// was told.
    Other {
        user_initial: bool,
        how: &'static str,
    },
    /// `/proc` could not say (not mounted, or no namespace files).
    Unknown,
}

impl Facts {
    /// Reads the facts from `proc_root` (`/proc` outside the tests).
    pub(crate) fn read(proc_root: &Path) -> Facts {
        let id = |p: &str| std::fs::metadata(proc_root.join(p)).map(|m| (m.dev(), m.ino()));
        Facts {
            own_net: id("self/ns/net"),
            pid1_net: id("1/ns/net"),
            init_net_only_sysctl: proc_root.join(INIT_NET_ONLY_SYSCTL).exists(),
            own_user: id("self/ns/user").map(|(_, ino)| ino),
        }
    }

    /// Which network namespace the facts show. Pure: the rules, most certain first.
    pub(crate) fn net_namespace(&self) -> NetNamespace {
        let Ok(own) = &self.own_net else {
            return NetNamespace::Unknown;
        };
        // 1. The initial namespace's fixed inode (Linux 6.18 and later): certain.
        if own.1 == NET_NS_INIT_INO {
            return NetNamespace::Initial;
        }
        let user_initial = matches!(self.own_user, Ok(USER_NS_INIT_INO));
        // 2. Another namespace than PID 1's, where PID 1's can be read.
        if let Ok(pid1) = &self.pid1_net {
            if pid1 != own {
                return NetNamespace::Other {
                    user_initial,
                    how: "it is not PID 1's",
                };
            }
        }
        // 3. A sysctl of the initial namespace only is missing. This also catches a container
        //    whose PID 1 shares its namespace.
        if !self.init_net_only_sysctl {
            return NetNamespace::Other {
                user_initial,
                how: "/proc/sys/net/core/netdev_max_backlog, which only the initial one has, is absent",
            };
        }
        NetNamespace::Initial
    }
}

/// The warning for `ns`, or `None` where there is nothing to say.
pub(crate) fn warning(ns: &NetNamespace) -> Option<String> {
    let NetNamespace::Other { user_initial, how } = ns else {
        return None;
    };
    let rest = if *user_initial {
        "uevents of other devices (block, PCI) still arrive"
    } else {
        "its user namespace is not the initial one either, so no device's uevents reach it, \
         only those injected into this namespace"
    };
    Some(format!(
        "pciplug runs in a network namespace other than the initial one ({how}): uevents of \
         network interfaces in other namespaces (the machine's NICs among them) do not reach \
         it, and waits for them time out; {rest}"
    ))
}

/// Warns (once per process) when this process is outside the initial network namespace.
pub(crate) fn warn_once() {
    static CHECKED: Once = Once::new();
    CHECKED.call_once(|| {
        let ns = Facts::read(Path::new("/proc")).net_namespace();
        match warning(&ns) {
            Some(w) => tracing::warn!("{w}"),
            None => tracing::debug!(namespace = ?ns, "uevent reach checked"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(own: u64, pid1: Option<u64>, sysctl: bool, user: u64) -> Facts {
        let denied = || io::Error::from(io::ErrorKind::PermissionDenied);
        Facts {
            own_net: Ok((4, own)),
            pid1_net: pid1.map(|i| (4, i)).ok_or_else(denied),
            init_net_only_sysctl: sysctl,
            own_user: Ok(user),
        }
    }

    #[test]
    fn the_fixed_inode_is_the_initial_namespace_whatever_else_says() {
        let f = facts(NET_NS_INIT_INO, Some(4026531840), false, 4026532177);
        assert_eq!(f.net_namespace(), NetNamespace::Initial);
        assert_eq!(warning(&f.net_namespace()), None);
    }

    #[test]
    fn another_namespace_than_pid_1s_is_not_the_initial_one() {
        let f = facts(4026532178, Some(4026531840), true, USER_NS_INIT_INO);
        let ns = f.net_namespace();
        assert_eq!(
            ns,
            NetNamespace::Other {
                user_initial: true,
                how: "it is not PID 1's"
            }
        );
        let w = warning(&ns).unwrap();
        assert!(w.contains("network interfaces in other namespaces"), "{w}");
        assert!(w.contains("other devices (block, PCI) still arrive"), "{w}");
    }

    #[test]
    fn pid_1s_namespace_on_an_older_kernel_is_the_initial_one() {
        let f = facts(4026531840, Some(4026531840), true, USER_NS_INIT_INO);
        assert_eq!(f.net_namespace(), NetNamespace::Initial);
    }

    #[test]
    fn without_pid_1_the_missing_sysctl_tells() {
        let f = facts(4026532178, None, false, 4026532177);
        let ns = f.net_namespace();
        assert!(
            matches!(ns, NetNamespace::Other { user_initial: false, how } if how.contains("netdev_max_backlog"))
        );
        let w = warning(&ns).unwrap();
        assert!(w.contains("no device's uevents reach it"), "{w}");
        // A container sharing PID 1's namespace is caught the same way.
        let f = facts(4026532178, Some(4026532178), false, USER_NS_INIT_INO);
        assert!(matches!(
            f.net_namespace(),
            NetNamespace::Other {
                user_initial: true,
                ..
            }
        ));
        // Unreadable PID 1 and the sysctl present: the initial namespace of an older kernel.
        let f = facts(4026531840, None, true, USER_NS_INIT_INO);
        assert_eq!(f.net_namespace(), NetNamespace::Initial);
    }

    #[test]
    fn without_proc_nothing_is_claimed() {
        let f = Facts::read(Path::new("/nonexistent-proc"));
        assert!(f.own_net.is_err() && f.pid1_net.is_err() && !f.init_net_only_sysctl);
        assert_eq!(f.net_namespace(), NetNamespace::Unknown);
        assert_eq!(warning(&NetNamespace::Unknown), None);
    }

    #[test]
    fn read_from_this_process_proc() {
        // The real /proc: its own namespace files are readable and match `readlink`.
        let f = Facts::read(Path::new("/proc"));
        let own = f.own_net.as_ref().expect("/proc/self/ns/net");
        let link = std::fs::read_link("/proc/self/ns/net").unwrap();
        assert_eq!(link.to_string_lossy(), format!("net:[{}]", own.1));
    }
}
