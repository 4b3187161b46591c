//! Kernel uevent datagrams: validation, a cheap pre-filter, and the parsed [`Uevent`].
//!
//! A kernel datagram on `NETLINK_KOBJECT_UEVENT` is `ACTION@DEVPATH\0KEY=VALUE\0...KEY=VALUE\0`.
//! Most of what a guest's kernel sends cannot concern a PCI device registry: modules, drivers,
//! buses, `bdi`, ACPI `wakeup` objects, workqueues, and under a PCI function the `virtio`,
//! `scsi`, `bsg`, `hwmon` and `queues` nodes. [`Datagram::parse`] recognises those from the
//! header and the `SUBSYSTEM` field without allocating, and only builds a [`Uevent`] (with
//! `kobject_uevent`, the design's parser) for the rest.
//!
//! # Two parses, one set of checks
//!
//! kobject-uevent does well what [`Datagram::parse`] asks of it: an owned event holding
//! every field, for a caller that wants them all. The registry's hot path
//! ([`Registry::apply_datagram`], what the listener runs for every datagram) wants a dozen
//! known keys and nothing owned, and a map of every field, allocated for each datagram, costs
//! there several times the whole parse-and-apply the listener can afford (BENCHMARKS.md, bench
//! 1, has the figures). That path borrows its fields from the datagram in the single pass the
//! validation makes (a crate-internal `DatagramRef`), and allocates only what the registry
//! keeps. Both parses share every check, in the same order, so that they
//! accept, ignore and refuse exactly the same datagrams with the same errors (a unit test
//! holds them to it on the real recordings and on generated field mixes); where
//! kobject-uevent would refuse a datagram the checks pass (an earlier `ACTION=` or `SEQNUM=`
//! it cannot parse), the borrowed parse asks it, so that the message is its own.
//!
//! [`Registry::apply_datagram`]: crate::Registry::apply_datagram
//!
//! What a careful listener checks, and this module does: the datagram is not empty, not larger
//! than the kernel can send, ends in NUL, is not in libudev's format (`libudev\0` magic, sent
//! by udevd to multicast group 2, never by the kernel), has an `ACTION@DEVPATH` header that
//! agrees with its `ACTION=` and `DEVPATH=` fields, and names a devpath without `.`/`..`
//! components. Actions the kernel may add in future are ignored (and counted by the caller),
//! not errors. Checking the *sender* (port id 0 is the kernel) is the crate's `is_from_kernel` rule,
//! applied by [`Registry::apply_datagram`] to every datagram it is fed.

use std::collections::HashMap;
use std::fmt;

mod borrowed;
mod error;

use borrowed::{Checked, KEYS, kobject_parse, validate};
pub(crate) use borrowed::{DatagramRef, Key, UeventRef};
pub use error::UeventError;
pub(crate) use error::malformed_kinds_table;

use crate::devpath;

/// The largest datagram accepted.
///
/// The kernel builds a uevent in a 2048-byte environment buffer (`UEVENT_BUFFER_SIZE`) plus
/// the `ACTION@DEVPATH` header; 8 KiB (libudev's receive buffer) leaves room for any real
/// header and refuses anything that cannot have come from the kernel.
pub const MAX_DATAGRAM: usize = 8192;

/// What a uevent announces (`enum kobject_action` in the kernel).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// A kobject was added.
    Add,
    /// A kobject was removed.
    Remove,
    /// A kobject changed (media change, resize, unit attention, synthetic `change`).
    Change,
    /// A kobject was renamed or reparented; `DEVPATH_OLD` holds the old path.
    Move,
    /// A device came back online.
    Online,
    /// A device went offline.
    Offline,
    /// A driver was bound to the device (kernel >= 4.14).
    Bind,
    /// The device's driver was unbound.
    Unbind,
}

impl Action {
    fn from_bytes(b: &[u8]) -> Option<Action> {
        Some(match b {
            b"add" => Action::Add,
            b"remove" => Action::Remove,
            b"change" => Action::Change,
            b"move" => Action::Move,
            b"online" => Action::Online,
            b"offline" => Action::Offline,
            b"bind" => Action::Bind,
            b"unbind" => Action::Unbind,
            _ => return None,
        })
    }

    /// The kernel's spelling (`add`, `remove`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Remove => "remove",
            Action::Change => "change",
            Action::Move => "move",
            Action::Online => "online",
            Action::Offline => "offline",
            Action::Bind => "bind",
            Action::Unbind => "unbind",
        }
    }
}

/// What an action means to a registry of present devices. [`Action::effect`] is the one
/// place the kernel's actions are classified; the registry matches on this, never on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    /// The object is there, with the facts the event carries (`add`, `change`, `move`,
    /// `online`, `bind`): no event depends on another having come first.
    Present,
    /// The object is gone (`remove`), with everything below it.
    Gone,
    /// A device's driver let go of it (`unbind`): what the driver made is gone, the device
    /// stays. To a child it means nothing.
    Unbound,
    /// Nothing the registry keeps changed (`offline`).
    Nothing,
}

impl Action {
    /// What this action means to the registry.
    pub(crate) fn effect(self) -> Effect {
        match self {
            Action::Add | Action::Change | Action::Move | Action::Online | Action::Bind => {
                Effect::Present
            }
            Action::Remove => Effect::Gone,
            Action::Unbind => Effect::Unbound,
            Action::Offline => Effect::Nothing,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a well-formed kernel datagram was set aside without being parsed further.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ignored {
    /// The devpath is neither below a PCI root complex, nor an NVMe subsystem, nor a VFIO
    /// group (modules, drivers, buses, `bdi`, ACPI `wakeup`, other virtual devices).
    Unrelated,
    /// Below a PCI device, but of a subsystem the registry does not track
    /// (`virtio`, `scsi`, `bsg`, `hwmon`, `queues`, `nvme-generic`, `vfio-dev`, ...), or at
    /// a VFIO group's devpath but not of subsystem `vfio`.
    Subsystem,
    /// An action this version does not know; the kernel may add some.
    UnknownAction,
}

/// The result of reading one datagram that was well-formed.
#[derive(Clone, Debug)]
pub enum Datagram {
    /// An event the registry must apply.
    Relevant(Uevent),
    /// An event that cannot concern the registry; nothing was allocated for it.
    Ignored(Ignored),
}

/// Subsystems whose devices below a PCI function (or NVMe subsystem) the registry keeps (with
/// [`devpath::VFIO_SUBSYSTEM`] for VFIO groups, the subsystems the socket's filter keeps:
/// `netlink::filter`).
pub(crate) const TRACKED_SUBSYSTEMS: [&str; 4] = ["pci", "block", "net", "nvme"];

/// Whether an event at `devpath` (one that may concern the registry) of `subsystem` is one the
/// registry keeps: a VFIO group's own (subsystem `vfio`), or one of [`TRACKED_SUBSYSTEMS`]
/// anywhere else.
fn is_tracked(devpath: &[u8], subsystem: &str) -> bool {
    if devpath.starts_with(devpath::VFIO_GROUPS.as_bytes()) {
        subsystem == devpath::VFIO_SUBSYSTEM
    } else {
        TRACKED_SUBSYSTEMS.contains(&subsystem)
    }
}

/// The netlink port id the kernel sends from; any other sender is a process.
pub(crate) const KERNEL_PORT_ID: u32 = 0;

/// The sender check, the one rule: a datagram is believed only if it came from netlink port
/// id 0, the kernel. A process with `CAP_NET_ADMIN` in the namespace can multicast to the
/// uevent group, but the kernel stamps its datagrams with the sender's own non-zero port id.
///
/// The socket reports the port id and does not filter; [`Registry::apply_datagram`] applies
/// this rule to everything it is fed, live or replayed.
///
/// [`Registry::apply_datagram`]: crate::Registry::apply_datagram
pub(crate) fn is_from_kernel(sender_port: u32) -> bool {
    sender_port == KERNEL_PORT_ID
}

/// A parsed uevent that concerns the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uevent {
    action: Action,
    devpath: String,
    subsystem: String,
    /// `None` for events synthesised from sysfs during a coldplug scan.
    seqnum: Option<u64>,
    env: HashMap<String, String>,
}

impl Datagram {
    /// Validates a datagram as received from the kernel and parses it if it is relevant.
    ///
    /// Never panics and never allocates for an event it ignores.
    ///
    /// ```
    /// use pciplug::{Datagram, Ignored};
    /// let d = b"add@/module/virtio\0ACTION=add\0DEVPATH=/module/virtio\0SUBSYSTEM=module\0SEQNUM=832\0";
    /// assert!(matches!(Datagram::parse(d), Ok(Datagram::Ignored(Ignored::Unrelated))));
    /// ```
    pub fn parse(datagram: &[u8]) -> Result<Datagram, UeventError> {
        let mut event = UeventRef::EMPTY;
        let header = match validate(datagram, &mut event)? {
            Checked::Relevant { header, .. } => header,
            Checked::Ignored(why) => return Ok(Datagram::Ignored(why)),
        };
        // Everything was validated; kobject-uevent builds the owned map of every field.
        let parsed = kobject_parse(datagram, &header)?;
        event.check_values()?;
        Ok(Datagram::Relevant(Uevent {
            action: event.action,
            devpath: parsed.devpath.to_string_lossy().into_owned(),
            subsystem: parsed.subsystem,
            seqnum: Some(parsed.seq),
            env: parsed.env,
        }))
    }
}

/// True if `name` can safely be put after `/dev/` or used as an interface name: not empty,
/// not `.` or `..`, no `/`, no control characters, at most 255 bytes.
pub fn is_safe_device_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.bytes().any(|b| b == b'/' || b.is_ascii_control())
}

impl Uevent {
    /// Builds an event from parts, as the coldplug scan does from a sysfs `uevent` file.
    ///
    /// The same value checks as for a kernel datagram apply.
    pub fn from_parts(
        action: Action,
        devpath: impl Into<String>,
        subsystem: impl Into<String>,
        seqnum: Option<u64>,
        env: HashMap<String, String>,
    ) -> Result<Uevent, UeventError> {
        let devpath = devpath.into();
        if !devpath::is_canonical(devpath.as_bytes()) {
            return Err(UeventError::BadDevpath(devpath));
        }
        let u = Uevent {
            action,
            devpath,
            subsystem: subsystem.into(),
            seqnum,
            env,
        };
        u.view().check_values()?;
        Ok(u)
    }

    /// The event as the registry reads it.
    pub(crate) fn view(&self) -> UeventRef<'_> {
        let mut values = [None; KEYS];
        for key in Key::ALL {
            values[key as usize] = self.get(key.name());
        }
        UeventRef {
            action: self.action,
            devpath: &self.devpath,
            subsystem: &self.subsystem,
            values,
        }
    }

    /// The action.
    pub fn action(&self) -> Action {
        self.action
    }
    /// The kernel device path (`/devices/...`, sysfs path without `/sys`).
    pub fn devpath(&self) -> &str {
        &self.devpath
    }
    /// The subsystem (`pci`, `block`, `net`, `nvme`, `vfio`).
    pub fn subsystem(&self) -> &str {
        &self.subsystem
    }
    /// The kernel's sequence number; `None` for events read from sysfs.
    pub fn seqnum(&self) -> Option<u64> {
        self.seqnum
    }
    /// Any `KEY=VALUE` field, by key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.env.get(key).map(String::as_str)
    }
    /// The last component of the devpath (`vda`, `0000:01:00.0`, `eth0`).
    pub fn sysname(&self) -> &str {
        devpath::last_component(&self.devpath)
    }
}

impl fmt::Display for Uevent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{} ({})", self.action, self.devpath, self.subsystem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dgram(fields: &[&str]) -> Vec<u8> {
        let mut v = Vec::new();
        for f in fields {
            v.extend_from_slice(f.as_bytes());
            v.push(0);
        }
        v
    }

    const VDA: &str = "/devices/pci0000:00/0000:00:02.0/0000:01:00.0/virtio0/block/vda";

    fn vda_add() -> Vec<u8> {
        dgram(&[
            &format!("add@{VDA}"),
            "ACTION=add",
            &format!("DEVPATH={VDA}"),
            "SUBSYSTEM=block",
            "MAJOR=254",
            "MINOR=0",
            "DEVNAME=vda",
            "DEVTYPE=disk",
            "DISKSEQ=1",
            "SEQNUM=872",
        ])
    }

    #[test]
    fn a_block_add_is_parsed() {
        let Datagram::Relevant(u) = Datagram::parse(&vda_add()).unwrap() else {
            panic!("block add must be relevant");
        };
        assert_eq!(u.action(), Action::Add);
        assert_eq!(u.devpath(), VDA);
        assert_eq!(u.subsystem(), "block");
        assert_eq!(u.seqnum(), Some(872));
        assert_eq!(u.get("DEVNAME"), Some("vda"));
        assert_eq!(u.view().get_u64(Key::Diskseq), Some(1));
        assert_eq!(u.sysname(), "vda");
    }

    #[test]
    fn unrelated_and_untracked_events_are_ignored() {
        let bdi = dgram(&[
            "add@/devices/virtual/bdi/254:0",
            "ACTION=add",
            "DEVPATH=/devices/virtual/bdi/254:0",
            "SUBSYSTEM=bdi",
            "SEQNUM=871",
        ]);
        assert!(matches!(
            Datagram::parse(&bdi),
            Ok(Datagram::Ignored(Ignored::Unrelated))
        ));
        let virtio = dgram(&[
            "add@/devices/pci0000:00/0000:00:02.0/0000:01:00.0/virtio0",
            "ACTION=add",
            "DEVPATH=/devices/pci0000:00/0000:00:02.0/0000:01:00.0/virtio0",
            "SUBSYSTEM=virtio",
            "SEQNUM=870",
        ]);
        assert!(matches!(
            Datagram::parse(&virtio),
            Ok(Datagram::Ignored(Ignored::Subsystem))
        ));
        let future = dgram(&[
            "frobnicate@/devices/pci0000:00/0000:00:02.0",
            "ACTION=frobnicate",
        ]);
        assert!(matches!(
            Datagram::parse(&future),
            Ok(Datagram::Ignored(Ignored::UnknownAction))
        ));
    }

    /// `add@/devices/virtual/vfio/4` as the 6.1 kernel of q35-vfio-bind sent it, with
    /// `subsystem` and `devname`.
    fn vfio_group_add(subsystem: &str, devname: &str) -> Vec<u8> {
        dgram(&[
            "add@/devices/virtual/vfio/4",
            "ACTION=add",
            "DEVPATH=/devices/virtual/vfio/4",
            &format!("SUBSYSTEM={subsystem}"),
            "MAJOR=244",
            "MINOR=0",
            &format!("DEVNAME={devname}"),
            "SEQNUM=676",
        ])
    }

    #[test]
    fn a_vfio_group_is_relevant_with_its_own_subsystem_and_node_name() {
        let Datagram::Relevant(u) = Datagram::parse(&vfio_group_add("vfio", "vfio/4")).unwrap()
        else {
            panic!("a vfio group add must be relevant");
        };
        assert_eq!((u.subsystem(), u.get("DEVNAME")), ("vfio", Some("vfio/4")));
        assert!(matches!(
            Datagram::parse(&vfio_group_add("misc", "vfio/4")),
            Ok(Datagram::Ignored(Ignored::Subsystem))
        ));
        for bad in ["vfio/5", "vfio/../sda", "sda"] {
            let e = Datagram::parse(&vfio_group_add("vfio", bad)).unwrap_err();
            assert_eq!(e.kind(), "bad-value", "{bad}");
        }
        // Elsewhere a name with a slash is still refused, and `vfio` is no tracked subsystem.
        let vda = String::from_utf8(vda_add())
            .unwrap()
            .replace("DEVNAME=vda", "DEVNAME=vfio/4");
        assert_eq!(
            Datagram::parse(vda.as_bytes()).unwrap_err().kind(),
            "bad-value"
        );
        let fake = String::from_utf8(vda_add())
            .unwrap()
            .replace("SUBSYSTEM=block", "SUBSYSTEM=vfio");
        assert!(matches!(
            Datagram::parse(fake.as_bytes()),
            Ok(Datagram::Ignored(Ignored::Subsystem))
        ));
    }

    #[test]
    fn malformed_datagrams_say_what_was_seen() {
        let kind = |d: &[u8]| Datagram::parse(d).unwrap_err().kind();
        assert_eq!(kind(b""), "empty");
        assert_eq!(kind(&vec![b'a'; MAX_DATAGRAM + 1]), "too-large");
        assert_eq!(kind(b"libudev\0\xfe\xed\xca\xfe"), "libudev");
        let mut truncated = vda_add();
        truncated.truncate(40);
        let e = Datagram::parse(&truncated).unwrap_err();
        assert_eq!(e.kind(), "no-nul-end");
        assert!(e.to_string().contains("40 bytes"), "{e}");
        assert_eq!(kind(b"add/devices/x\0ACTION=add\0"), "bad-header");
        assert_eq!(kind(b"add@devices\0"), "bad-header");

        let mut other = vda_add();
        let at = memchr::memmem::find(&other, b"DEVPATH=/devices").unwrap();
        other[at + 8 + 9] = b'q'; // DEVPATH=/devices/qci...
        let e = Datagram::parse(&other).unwrap_err();
        assert_eq!(e.kind(), "header-mismatch");
        assert!(e.to_string().contains("DEVPATH=/devices/qci0000"), "{e}");

        let act = String::from_utf8(vda_add())
            .unwrap()
            .replace("ACTION=add", "ACTION=remove");
        assert_eq!(kind(act.as_bytes()), "header-mismatch");

        let no_seq = String::from_utf8(vda_add())
            .unwrap()
            .replace("SEQNUM=872\0", "");
        assert_eq!(kind(no_seq.as_bytes()), "missing-key");

        let mut bad_utf8 = vda_add();
        let at = memchr::memmem::find(&bad_utf8, b"DEVNAME=vda").unwrap();
        bad_utf8[at + 8] = 0xff;
        assert_eq!(kind(&bad_utf8), "not-utf8");

        let bad_name = String::from_utf8(vda_add())
            .unwrap()
            .replace("DEVNAME=vda", "DEVNAME=../sda");
        assert_eq!(kind(bad_name.as_bytes()), "bad-value");

        let dotdot = "add@/devices/pci0000:00/../x\0ACTION=add\0DEVPATH=/devices/pci0000:00/../x\0SUBSYSTEM=pci\0SEQNUM=1\0".to_string();
        assert_eq!(kind(dotdot.as_bytes()), "bad-devpath");

        let header_only = format!("add@{VDA}\0");
        assert_eq!(kind(header_only.as_bytes()), "missing-key");

        let no_eq = String::from_utf8(vda_add())
            .unwrap()
            .replace("DEVTYPE=disk", "DEVTYPE");
        assert_eq!(kind(no_eq.as_bytes()), "bad-field");
    }

    #[test]
    fn device_names_are_checked_before_use_in_paths() {
        for ok in ["vda", "nvme0n1p2", "eth0", "enp0s3"] {
            assert!(is_safe_device_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "../sda", "x\ny"] {
            assert!(!is_safe_device_name(bad), "{bad:?}");
        }
    }

    /// What either parse made of a datagram, in one comparable shape: the outcome, and for a
    /// relevant event its header fields and the value of every key the registry reads.
    type Seen = Result<Result<(Action, String, String, Vec<Option<String>>), Ignored>, UeventError>;

    fn seen_owned(d: &[u8]) -> Seen {
        Datagram::parse(d).map(|p| match p {
            Datagram::Relevant(u) => Ok((
                u.action(),
                u.devpath().to_owned(),
                u.subsystem().to_owned(),
                Key::ALL
                    .iter()
                    .map(|k| u.get(k.name()).map(str::to_owned))
                    .collect(),
            )),
            Datagram::Ignored(why) => Err(why),
        })
    }

    fn seen_borrowed(d: &[u8]) -> Seen {
        DatagramRef::parse(d).map(|p| match p {
            DatagramRef::Relevant(u) => Ok((
                u.action(),
                u.devpath().to_owned(),
                u.subsystem().to_owned(),
                Key::ALL
                    .iter()
                    .map(|k| u.get(*k).map(str::to_owned))
                    .collect(),
            )),
            DatagramRef::Ignored(why) => Err(why),
        })
    }

    #[test]
    fn both_parses_agree_on_every_real_datagram() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/real-hotplug");
        let mut relevant = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "uevents") {
                continue;
            }
            for r in crate::Recording::read(&path).unwrap().records {
                let owned = seen_owned(&r.datagram);
                relevant += usize::from(matches!(owned, Ok(Ok(_))));
                assert_eq!(
                    owned,
                    seen_borrowed(&r.datagram),
                    "{}:{}",
                    path.display(),
                    r.line
                );
            }
        }
        assert!(relevant > 50, "{relevant} relevant datagrams");
    }

    #[test]
    fn both_parses_agree_where_kobject_uevent_refuses() {
        // An earlier bad ACTION or SEQNUM, a later good one: kobject-uevent refuses the whole
        // datagram, so both parses must, with its message.
        for (extra, fix) in [("ACTION=frob", "ACTION=add"), ("SEQNUM=x", "SEQNUM=872")] {
            let d = String::from_utf8(vda_add())
                .unwrap()
                .replace(fix, &format!("{extra}\0{fix}"));
            let owned = seen_owned(d.as_bytes());
            assert!(
                matches!(&owned, Err(e) if e.kind() == "bad-field"),
                "{owned:?}"
            );
            assert_eq!(owned, seen_borrowed(d.as_bytes()));
        }
        let huge = String::from_utf8(vda_add())
            .unwrap()
            .replace("SEQNUM=872", "SEQNUM=99999999999999999999");
        assert_eq!(seen_owned(huge.as_bytes()), seen_borrowed(huge.as_bytes()));
        assert!(seen_owned(huge.as_bytes()).is_err());
    }

    proptest::proptest! {
        #[test]
        fn both_parses_agree_on_any_mix_of_fields(
            header in proptest::sample::select(vec![
                format!("add@{VDA}"), format!("remove@{VDA}"), format!("frob@{VDA}"),
                "add@/devices/pci0000:00/0000:00:02.0".to_owned(), "add@/module/x".to_owned(),
                "add@/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1".to_owned(),
                "add@/devices/pci0000:00/../x".to_owned(), "bad".to_owned(),
                "add@/devices/virtual/vfio/4".to_owned(),
            ]),
            fields in proptest::collection::vec(proptest::sample::select(vec![
                "ACTION=add", "ACTION=remove", "ACTION=frob", "SUBSYSTEM=block",
                "SUBSYSTEM=pci", "SUBSYSTEM=virtio", "SEQNUM=1", "SEQNUM=+5", "SEQNUM=x",
                "SEQNUM=99999999999999999999", "DEVNAME=vda", "DEVNAME=../sda", "DEVTYPE=disk",
                "MAJOR=254", "MAJOR=x", "MINOR=0", "DISKSEQ=7", "PARTN=1", "INTERFACE=eth0",
                "IFINDEX=2", "DRIVER=virtio-pci", "PCI_ID=1AF4:1042", "PCI_CLASS=10000",
                "PCI_SUBSYS_ID=1AF4:1100", "DEVPATH_OLD=/devices/x", "DEVPATH_OLD=x",
                "NOEQUALS", "=empty-key", "", "\u{e9}=\u{e9}", "SUBSYSTEM=vfio",
                "DEVNAME=vfio/4",
            ]), 0..12),
            devpath in proptest::sample::select(vec![
                VDA, "/devices/pci0000:00/0000:00:02.0", "/module/x",
                "/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1", "/devices/pci0000:00/../x",
                "/devices/virtual/vfio/4",
            ]),
            bad_byte in proptest::option::of(0usize..400),
        ) {
            let mut d = Vec::new();
            d.extend_from_slice(header.as_bytes());
            d.push(0);
            d.extend_from_slice(format!("DEVPATH={devpath}").as_bytes());
            d.push(0);
            for f in &fields {
                d.extend_from_slice(f.as_bytes());
                d.push(0);
            }
            if let Some(i) = bad_byte.filter(|i| *i + 1 < d.len()) {
                d[i] = 0xff;
            }
            proptest::prop_assert_eq!(seen_owned(&d), seen_borrowed(&d));
        }
    }
}
