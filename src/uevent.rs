//! Kernel uevent datagrams: validation, a cheap pre-filter, and the parsed [`Uevent`].
//!
//! A kernel datagram on `NETLINK_KOBJECT_UEVENT` is `ACTION@DEVPATH\0KEY=VALUE\0...KEY=VALUE\0`.
//! Most of what a guest's kernel sends cannot concern a PCI device registry: modules, drivers,
//! buses, `bdi`, ACPI `wakeup` objects, workqueues, and under a PCI function the `virtio`,
//! `scsi`, `bsg`, `hwmon` and `queues` nodes. [`Datagram::parse`] recognises those from the
//! header and the `SUBSYSTEM` field without allocating, and only builds a [`Uevent`] (with
//! `kobject_uevent`, the design's parser) for the rest.
//!
//! What a careful listener checks, and this module does: the datagram is not empty, not larger
//! than the kernel can send, ends in NUL, is not in libudev's format (`libudev\0` magic, sent
//! by udevd to multicast group 2, never by the kernel), has an `ACTION@DEVPATH` header that
//! agrees with its `ACTION=` and `DEVPATH=` fields, and names a devpath without `.`/`..`
//! components. Actions the kernel may add in future are ignored (and counted by the caller),
//! not errors. Checking the *sender* (port id 0 is the kernel) is the socket's job.

use std::collections::HashMap;
use std::fmt;

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

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a well-formed kernel datagram was set aside without being parsed further.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ignored {
    /// The devpath is neither below a PCI root complex nor an NVMe subsystem
    /// (modules, drivers, buses, `bdi`, ACPI `wakeup`, other virtual devices).
    Unrelated,
    /// Below a PCI device, but of a subsystem the registry does not track
    /// (`virtio`, `scsi`, `bsg`, `hwmon`, `queues`, `nvme-generic`, ...).
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

/// Subsystems whose devices the registry keeps.
const TRACKED_SUBSYSTEMS: [&[u8]; 4] = [b"pci", b"block", b"net", b"nvme"];

/// A malformed datagram; the message says what was seen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UeventError {
    /// Zero bytes.
    #[error("empty datagram")]
    Empty,
    /// Larger than the kernel can send.
    #[error("datagram of {len} bytes is larger than the {MAX_DATAGRAM}-byte maximum")]
    TooLarge {
        /// Its size.
        len: usize,
    },
    /// A libudev (udevd group 2) message, not a kernel uevent.
    #[error("libudev-format datagram ({len} bytes): sent by udevd, not the kernel")]
    Libudev {
        /// Its size.
        len: usize,
    },
    /// The last byte is not NUL (truncated, or not a uevent).
    #[error("datagram of {len} bytes does not end in NUL (truncated?): {start:?}")]
    NoNulEnd {
        /// Its size.
        len: usize,
        /// Its beginning, lossily decoded.
        start: String,
    },
    /// The first field is not `ACTION@DEVPATH`.
    #[error("header {0:?} is not ACTION@/DEVPATH")]
    BadHeader(String),
    /// Bytes that are not UTF-8.
    #[error("datagram is not UTF-8 (byte {offset} of {len})")]
    NotUtf8 {
        /// Offset of the first bad byte.
        offset: usize,
        /// Datagram size.
        len: usize,
    },
    /// A field without `=`.
    #[error("field {0:?} is not KEY=VALUE")]
    BadField(String),
    /// A required key is missing.
    #[error("{header:?}: no {key} field")]
    Missing {
        /// The datagram's header.
        header: String,
        /// The missing key.
        key: &'static str,
    },
    /// The header disagrees with the fields.
    #[error("header {header:?} disagrees with {key}={value}")]
    HeaderMismatch {
        /// The datagram's header.
        header: String,
        /// `ACTION` or `DEVPATH`.
        key: &'static str,
        /// The field's value.
        value: String,
    },
    /// A devpath with `.` or `..` components, empty components, or not absolute.
    #[error("devpath {0:?} is not a canonical absolute path")]
    BadDevpath(String),
    /// A value that should be a number or a name is not one.
    #[error("{header:?}: {key}={value:?} is not valid")]
    BadValue {
        /// The datagram's header.
        header: String,
        /// The key.
        key: &'static str,
        /// The value seen.
        value: String,
    },
}

impl UeventError {
    /// A short stable name for the kind of defect, for counters and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            UeventError::Empty => "empty",
            UeventError::TooLarge { .. } => "too-large",
            UeventError::Libudev { .. } => "libudev",
            UeventError::NoNulEnd { .. } => "no-nul-end",
            UeventError::BadHeader(_) => "bad-header",
            UeventError::NotUtf8 { .. } => "not-utf8",
            UeventError::BadField(_) => "bad-field",
            UeventError::Missing { .. } => "missing-key",
            UeventError::HeaderMismatch { .. } => "header-mismatch",
            UeventError::BadDevpath(_) => "bad-devpath",
            UeventError::BadValue { .. } => "bad-value",
        }
    }
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
    /// use pciplug::uevent::{Datagram, Ignored};
    /// let d = b"add@/module/virtio\0ACTION=add\0DEVPATH=/module/virtio\0SUBSYSTEM=module\0SEQNUM=832\0";
    /// assert!(matches!(Datagram::parse(d), Ok(Datagram::Ignored(Ignored::Unrelated))));
    /// ```
    pub fn parse(datagram: &[u8]) -> Result<Datagram, UeventError> {
        let header = Header::read(datagram)?;
        let Some(action) = header.action else {
            return Ok(Datagram::Ignored(Ignored::UnknownAction));
        };
        if !devpath_may_concern_registry(header.devpath) {
            return Ok(Datagram::Ignored(Ignored::Unrelated));
        }
        let fields = Fields::read(datagram, &header)?;
        if !TRACKED_SUBSYSTEMS.contains(&fields.subsystem) {
            return Ok(Datagram::Ignored(Ignored::Subsystem));
        }
        // Everything was validated; kobject-uevent builds the owned key/value map.
        let parsed = kobject_uevent::UEvent::from_netlink_packet(datagram).map_err(|e| {
            UeventError::BadField(format!("{}: {e}", String::from_utf8_lossy(header.raw)))
        })?;
        let uevent = Uevent {
            action,
            devpath: parsed.devpath.to_string_lossy().into_owned(),
            subsystem: parsed.subsystem,
            seqnum: Some(parsed.seq),
            env: parsed.env,
        };
        uevent.check_values()?;
        Ok(Datagram::Relevant(uevent))
    }
}

/// The cheap test on the header: can an event with this devpath concern the registry?
///
/// PCI functions and everything below them have a `pciDDDD:BB` root complex component
/// (`/devices/pci0000:00/...`, or `/devices/platform/*.pcie/pci0000:00/...` on arm64); NVMe
/// multipath namespace heads live under `/devices/virtual/nvme-subsystem/`.
fn devpath_may_concern_registry(devpath: &[u8]) -> bool {
    if devpath.starts_with(b"/devices/virtual/") {
        return devpath.starts_with(b"/devices/virtual/nvme-subsystem/");
    }
    devpath.starts_with(b"/devices/") && memchr::memmem::find(devpath, b"/pci").is_some()
}

/// The `ACTION@DEVPATH` header, read without allocating.
struct Header<'a> {
    raw: &'a [u8],
    /// `None` for an action this version does not know.
    action: Option<Action>,
    action_raw: &'a [u8],
    devpath: &'a [u8],
}

impl<'a> Header<'a> {
    fn read(d: &'a [u8]) -> Result<Header<'a>, UeventError> {
        if d.is_empty() {
            return Err(UeventError::Empty);
        }
        if d.len() > MAX_DATAGRAM {
            return Err(UeventError::TooLarge { len: d.len() });
        }
        if d.starts_with(b"libudev\0") {
            return Err(UeventError::Libudev { len: d.len() });
        }
        if d[d.len() - 1] != 0 {
            return Err(UeventError::NoNulEnd {
                len: d.len(),
                start: String::from_utf8_lossy(&d[..d.len().min(64)]).into_owned(),
            });
        }
        let end = memchr::memchr(0, d).unwrap_or(d.len() - 1);
        let raw = &d[..end];
        let bad = || UeventError::BadHeader(String::from_utf8_lossy(raw).into_owned());
        let at = memchr::memchr(b'@', raw).ok_or_else(bad)?;
        let (action_raw, devpath) = (&raw[..at], &raw[at + 1..]);
        if action_raw.is_empty() || !devpath.starts_with(b"/") {
            return Err(bad());
        }
        Ok(Header {
            raw,
            action: Action::from_bytes(action_raw),
            action_raw,
            devpath,
        })
    }
}

/// The fields a relevant event must carry, checked against the header without allocating.
struct Fields<'a> {
    subsystem: &'a [u8],
}

impl<'a> Fields<'a> {
    fn read(d: &'a [u8], header: &Header<'a>) -> Result<Fields<'a>, UeventError> {
        if let Err(e) = std::str::from_utf8(d) {
            return Err(UeventError::NotUtf8 {
                offset: e.valid_up_to(),
                len: d.len(),
            });
        }
        let header_str = || String::from_utf8_lossy(header.raw).into_owned();
        let (mut action, mut devpath, mut subsystem, mut seqnum) = (None, None, None, None);
        // Between the header's NUL and the final NUL; empty for a header-only datagram.
        let body = d.get(header.raw.len() + 1..d.len() - 1).unwrap_or_default();
        for field in body.split(|&b| b == 0).filter(|f| !f.is_empty()) {
            let eq = memchr::memchr(b'=', field).ok_or_else(|| {
                UeventError::BadField(String::from_utf8_lossy(field).into_owned())
            })?;
            let (key, value) = (&field[..eq], &field[eq + 1..]);
            match key {
                b"ACTION" => action = Some(value),
                b"DEVPATH" => devpath = Some(value),
                b"SUBSYSTEM" => subsystem = Some(value),
                b"SEQNUM" => seqnum = Some(value),
                _ => {}
            }
        }
        let missing = |key| UeventError::Missing {
            header: header_str(),
            key,
        };
        let mismatch = |key, value: &[u8]| UeventError::HeaderMismatch {
            header: header_str(),
            key,
            value: String::from_utf8_lossy(value).into_owned(),
        };
        let action = action.ok_or_else(|| missing("ACTION"))?;
        if action != header.action_raw {
            return Err(mismatch("ACTION", action));
        }
        let devpath = devpath.ok_or_else(|| missing("DEVPATH"))?;
        if devpath != header.devpath {
            return Err(mismatch("DEVPATH", devpath));
        }
        if !is_canonical_devpath(devpath) {
            return Err(UeventError::BadDevpath(
                String::from_utf8_lossy(devpath).into_owned(),
            ));
        }
        let subsystem = subsystem.ok_or_else(|| missing("SUBSYSTEM"))?;
        let seqnum = seqnum.ok_or_else(|| missing("SEQNUM"))?;
        if seqnum.is_empty() || !seqnum.iter().all(u8::is_ascii_digit) || seqnum.len() > 20 {
            return Err(UeventError::BadValue {
                header: header_str(),
                key: "SEQNUM",
                value: String::from_utf8_lossy(seqnum).into_owned(),
            });
        }
        Ok(Fields { subsystem })
    }
}

fn is_canonical_devpath(p: &[u8]) -> bool {
    p.len() > 1
        && p[0] == b'/'
        && p[1..]
            .split(|&b| b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b"..")
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
        if !is_canonical_devpath(devpath.as_bytes()) {
            return Err(UeventError::BadDevpath(devpath));
        }
        let u = Uevent {
            action,
            devpath,
            subsystem: subsystem.into(),
            seqnum,
            env,
        };
        u.check_values()?;
        Ok(u)
    }

    /// Checks the values the registry relies on, so that it can trust them afterwards.
    fn check_values(&self) -> Result<(), UeventError> {
        let bad = |key: &'static str, value: &str| UeventError::BadValue {
            header: format!("{}@{}", self.action, self.devpath),
            key,
            value: value.to_owned(),
        };
        for key in ["DEVNAME", "INTERFACE"] {
            if let Some(v) = self.get(key)
                && !is_safe_device_name(v)
            {
                return Err(bad(key, v));
            }
        }
        for key in ["MAJOR", "MINOR", "DISKSEQ", "PARTN", "IFINDEX"] {
            if let Some(v) = self.get(key)
                && v.parse::<u64>().is_err()
            {
                return Err(bad(key, v));
            }
        }
        if let Some(old) = self.get("DEVPATH_OLD")
            && !is_canonical_devpath(old.as_bytes())
        {
            return Err(bad("DEVPATH_OLD", old));
        }
        Ok(())
    }

    /// The action.
    pub fn action(&self) -> Action {
        self.action
    }
    /// The kernel device path (`/devices/...`, sysfs path without `/sys`).
    pub fn devpath(&self) -> &str {
        &self.devpath
    }
    /// The subsystem (`pci`, `block`, `net`, `nvme`).
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
    /// A numeric field; values were checked at parse time.
    pub(crate) fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(|v| v.parse().ok())
    }
    /// The last component of the devpath (`vda`, `0000:01:00.0`, `eth0`).
    pub fn sysname(&self) -> &str {
        self.devpath.rsplit('/').next().unwrap_or(&self.devpath)
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
        assert_eq!(u.get_u64("DISKSEQ"), Some(1));
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
}
