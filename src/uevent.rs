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
//! known keys and nothing owned, and there it was measured before it was replaced
//! (BENCHMARKS.md, bench 1, on the real recordings): kobject-uevent's parse of a relevant
//! event alone took about 1.2 us and 15-20 allocations, twice what the target allows the
//! whole parse-and-apply of one; with it, pciplug's average over the real mix was 0.80 of
//! kobject-uevent's parse alone, against a target of 0.25. That path now borrows its fields
//! from the datagram in the single pass the validation makes (a crate-internal
//! `DatagramRef`); its average is about 0.23 of kobject-uevent's parse, and it allocates only
//! what the registry keeps. Both parses share every check, in the same order, so that they
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

/// A datagram read without allocating: what [`Registry::apply_datagram`] works from.
///
/// [`Registry::apply_datagram`]: crate::Registry::apply_datagram
// Boxing the large variant would allocate for every relevant event, which is what this type
// exists to avoid; it lives on the stack, once per datagram.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug)]
pub(crate) enum DatagramRef<'a> {
    /// An event the registry must apply, borrowed from the datagram.
    Relevant(UeventRef<'a>),
    /// An event that cannot concern the registry.
    Ignored(Ignored),
}

impl<'a> DatagramRef<'a> {
    /// Exactly what [`Datagram::parse`] does, with the same outcome and the same error for
    /// every input, but borrowing from `datagram` instead of building a map of its fields, so
    /// that it never allocates unless the datagram is malformed.
    ///
    /// Why not kobject-uevent here: it builds a `HashMap<String, String>` of every field (15
    /// allocations for an average event of the real recordings, more for a block event), and
    /// that alone takes several times what the whole parse-and-apply of pciplug may take on
    /// the listener's path (BENCHMARKS.md, bench 1). The registry reads a dozen known keys;
    /// the one pass over the fields that validation makes anyway finds them.
    pub(crate) fn parse(datagram: &'a [u8]) -> Result<DatagramRef<'a>, UeventError> {
        // Filled in place: the event is a few hundred bytes, and moving it through every layer
        // of the checks cost more than the checks themselves.
        let mut event = UeventRef::EMPTY;
        match validate(datagram, &mut event)? {
            Checked::Relevant {
                header,
                kobject_rejects,
            } => {
                if kobject_rejects {
                    // Rare and malformed: let kobject-uevent say why, as `Datagram::parse` does.
                    kobject_parse(datagram, &header)?;
                }
            }
            Checked::Ignored(why) => return Ok(DatagramRef::Ignored(why)),
        }
        event.check_values()?;
        Ok(DatagramRef::Relevant(event))
    }
}

/// What the checks shared by both parses found.
enum Checked<'a> {
    Relevant {
        header: Header<'a>,
        /// See [`read_fields`].
        kobject_rejects: bool,
    },
    Ignored(Ignored),
}

/// The checks and pre-filters shared by [`Datagram::parse`] and [`DatagramRef::parse`], in
/// the order that decides which error a malformed datagram gets. Fills `event` as it goes.
fn validate<'a>(datagram: &'a [u8], event: &mut UeventRef<'a>) -> Result<Checked<'a>, UeventError> {
    let header = Header::read(datagram)?;
    let Some(action) = header.action else {
        return Ok(Checked::Ignored(Ignored::UnknownAction));
    };
    if !devpath_may_concern_registry(header.devpath) {
        return Ok(Checked::Ignored(Ignored::Unrelated));
    }
    event.action = action;
    let kobject_rejects = read_fields(datagram, &header, event)?;
    if !TRACKED_SUBSYSTEMS.contains(&event.subsystem.as_bytes()) {
        return Ok(Checked::Ignored(Ignored::Subsystem));
    }
    Ok(Checked::Relevant {
        header,
        kobject_rejects,
    })
}

/// kobject-uevent's parse of a validated datagram, with its error named as ours.
fn kobject_parse(
    datagram: &[u8],
    header: &Header<'_>,
) -> Result<kobject_uevent::UEvent, UeventError> {
    kobject_uevent::UEvent::from_netlink_packet(datagram)
        .map_err(|e| UeventError::BadField(format!("{}: {e}", String::from_utf8_lossy(header.raw))))
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
    // A `/pci` anywhere; from slash to slash (building a substring searcher for every
    // datagram costs more than the search).
    if !devpath.starts_with(b"/devices/") {
        return false;
    }
    let mut slash = 0;
    while slash < devpath.len() {
        if devpath[slash + 1..].starts_with(b"pci") {
            return true;
        }
        slash = find_byte(devpath, slash + 1, b'/');
    }
    false
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

/// Checks the fields a relevant event must carry against the header, without allocating, and
/// fills `event` with its devpath, subsystem and the last value of each of the registry's
/// keys (what a map of the fields, kobject-uevent's, which keeps the last of duplicate keys,
/// would hold).
///
/// Returns whether kobject-uevent would refuse the datagram: an `ACTION=` that is not an
/// action, or a `SEQNUM=` that is not a `u64`, anywhere in it (also where a later field of the
/// same key is fine). Both parses must then fail with its message.
fn read_fields<'a>(
    d: &'a [u8],
    header: &Header<'a>,
    event: &mut UeventRef<'a>,
) -> Result<bool, UeventError> {
    let text = match std::str::from_utf8(d) {
        Ok(text) => text,
        Err(e) => {
            return Err(UeventError::NotUtf8 {
                offset: e.valid_up_to(),
                len: d.len(),
            });
        }
    };
    let header_str = || String::from_utf8_lossy(header.raw).into_owned();
    let (mut action, mut devpath, mut subsystem, mut seqnum) = (None, None, None, None);
    let mut kobject_rejects = false;
    // Between the header's NUL and the final NUL; empty for a header-only datagram. Both
    // ends are next to an ASCII NUL, hence on character boundaries.
    let body = text
        .get(header.raw.len() + 1..text.len() - 1)
        .unwrap_or_default();
    // One pass from NUL to NUL; every cut is next to an ASCII byte, so on a boundary.
    let mut start = 0;
    while start <= body.len() {
        let end = find_byte(body.as_bytes(), start, 0);
        let field = &body[start..end];
        start = end + 1;
        if field.is_empty() {
            continue;
        }
        // Keys are short: a plain scan beats a vectorised search here.
        let Some(eq) = field.bytes().position(|b| b == b'=') else {
            return Err(UeventError::BadField(field.to_owned()));
        };
        let (key, value) = (&field[..eq], &field[eq + 1..]);
        match Field::of(key.as_bytes()) {
            Field::Action => {
                kobject_rejects |= value.as_bytes() != header.action_raw
                    && Action::from_bytes(value.as_bytes()).is_none();
                action = Some(value);
            }
            Field::Devpath => devpath = Some(value),
            Field::Subsystem => subsystem = Some(value),
            Field::Seqnum => {
                // Up to 19 digits always fit a u64; anything else is left to `parse`.
                let fits =
                    (1..=19).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit());
                kobject_rejects |= !fits && value.parse::<u64>().is_err();
                seqnum = Some(value);
            }
            Field::Known(k) => event.values[k as usize] = Some(value),
            Field::Other => {}
        }
    }
    let missing = |key| UeventError::Missing {
        header: header_str(),
        key,
    };
    let mismatch = |key, value: &str| UeventError::HeaderMismatch {
        header: header_str(),
        key,
        value: value.to_owned(),
    };
    let action = action.ok_or_else(|| missing("ACTION"))?;
    if action.as_bytes() != header.action_raw {
        return Err(mismatch("ACTION", action));
    }
    let devpath = devpath.ok_or_else(|| missing("DEVPATH"))?;
    if devpath.as_bytes() != header.devpath {
        return Err(mismatch("DEVPATH", devpath));
    }
    if !is_canonical_devpath(devpath.as_bytes()) {
        return Err(UeventError::BadDevpath(devpath.to_owned()));
    }
    let subsystem = subsystem.ok_or_else(|| missing("SUBSYSTEM"))?;
    let seqnum = seqnum.ok_or_else(|| missing("SEQNUM"))?;
    if seqnum.is_empty() || !seqnum.bytes().all(|b| b.is_ascii_digit()) || seqnum.len() > 20 {
        return Err(UeventError::BadValue {
            header: header_str(),
            key: "SEQNUM",
            value: seqnum.to_owned(),
        });
    }
    event.devpath = devpath;
    event.subsystem = subsystem;
    Ok(kobject_rejects)
}

fn is_canonical_devpath(p: &[u8]) -> bool {
    if p.len() < 2 || p[0] != b'/' {
        return false;
    }
    // The components between slashes: none empty (no `//`, no trailing `/`), none `.` or `..`.
    let mut slash = 0;
    loop {
        let next = find_byte(p, slash + 1, b'/');
        let c = &p[slash + 1..next];
        if c.is_empty() || c == b"." || c == b".." {
            return false;
        }
        if next == p.len() {
            return true;
        }
        slash = next;
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
    /// The last component of the devpath (`vda`, `0000:01:00.0`, `eth0`).
    pub fn sysname(&self) -> &str {
        sysname(&self.devpath)
    }
}

fn sysname(devpath: &str) -> &str {
    devpath.rsplit('/').next().unwrap_or(devpath)
}

/// The keys the registry reads besides `ACTION`, `DEVPATH` and `SUBSYSTEM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Key {
    Devname,
    Devtype,
    Major,
    Minor,
    Diskseq,
    Partn,
    Interface,
    Ifindex,
    Driver,
    PciId,
    PciSubsysId,
    PciClass,
    DevpathOld,
}

/// Number of [`Key`]s.
const KEYS: usize = 13;

impl Key {
    const ALL: [Key; KEYS] = [
        Key::Devname,
        Key::Devtype,
        Key::Major,
        Key::Minor,
        Key::Diskseq,
        Key::Partn,
        Key::Interface,
        Key::Ifindex,
        Key::Driver,
        Key::PciId,
        Key::PciSubsysId,
        Key::PciClass,
        Key::DevpathOld,
    ];

    /// The kernel's spelling.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Key::Devname => "DEVNAME",
            Key::Devtype => "DEVTYPE",
            Key::Major => "MAJOR",
            Key::Minor => "MINOR",
            Key::Diskseq => "DISKSEQ",
            Key::Partn => "PARTN",
            Key::Interface => "INTERFACE",
            Key::Ifindex => "IFINDEX",
            Key::Driver => "DRIVER",
            Key::PciId => "PCI_ID",
            Key::PciSubsysId => "PCI_SUBSYS_ID",
            Key::PciClass => "PCI_CLASS",
            Key::DevpathOld => "DEVPATH_OLD",
        }
    }
}

/// The index of the first `needle` in `b` at or after `from`, or `b.len()` if there is none.
///
/// Eight bytes at a time with the classic zero-byte test. Fields and devpath components are
/// 5 to 100 bytes long, where `memchr`'s vectorised search (or `str::split`'s) spends more on
/// setting up than on searching: this halved the cost of reading a datagram.
pub(crate) fn find_byte(b: &[u8], from: usize, needle: u8) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let spread = LO * u64::from(needle);
    let mut i = from;
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes([
            chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
        ]) ^ spread;
        // Exact for the lowest matching byte, which is the one wanted.
        let hit = w.wrapping_sub(LO) & !w & HI;
        if hit != 0 {
            return i + (hit.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    b.get(i..)
        .and_then(|rest| rest.iter().position(|&c| c == needle))
        .map_or(b.len(), |p| i + p)
}

/// What a field's key is to [`read_fields`].
#[derive(Clone, Copy)]
enum Field {
    Action,
    Devpath,
    Subsystem,
    Seqnum,
    Known(Key),
    Other,
}

impl Field {
    /// Dispatches on the length first: most keys of a datagram (`MODALIAS`, `PCI_SLOT_NAME`,
    /// `SYNTH_UUID`...) then fail on one comparison, and the rest compare a few bytes of
    /// known length instead of trying every name in turn.
    fn of(key: &[u8]) -> Field {
        use Field::Known;
        match key.len() {
            5 => match key {
                b"MAJOR" => Known(Key::Major),
                b"MINOR" => Known(Key::Minor),
                b"PARTN" => Known(Key::Partn),
                _ => Field::Other,
            },
            6 => match key {
                b"ACTION" => Field::Action,
                b"SEQNUM" => Field::Seqnum,
                b"DRIVER" => Known(Key::Driver),
                b"PCI_ID" => Known(Key::PciId),
                _ => Field::Other,
            },
            7 => match key {
                b"DEVPATH" => Field::Devpath,
                b"DEVNAME" => Known(Key::Devname),
                b"DEVTYPE" => Known(Key::Devtype),
                b"DISKSEQ" => Known(Key::Diskseq),
                b"IFINDEX" => Known(Key::Ifindex),
                _ => Field::Other,
            },
            9 => match key {
                b"SUBSYSTEM" => Field::Subsystem,
                b"INTERFACE" => Known(Key::Interface),
                b"PCI_CLASS" => Known(Key::PciClass),
                _ => Field::Other,
            },
            11 if key == b"DEVPATH_OLD" => Known(Key::DevpathOld),
            13 if key == b"PCI_SUBSYS_ID" => Known(Key::PciSubsysId),
            _ => Field::Other,
        }
    }
}

/// A relevant event as the registry reads it, borrowed from a datagram
/// ([`DatagramRef::parse`]) or from a [`Uevent`] ([`Uevent::view`]). Its values passed
/// [`UeventRef::check_values`] before the registry sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UeventRef<'a> {
    action: Action,
    devpath: &'a str,
    subsystem: &'a str,
    /// Indexed by `Key as usize`.
    values: [Option<&'a str>; KEYS],
}

impl<'a> UeventRef<'a> {
    /// Nothing yet: what [`read_fields`] starts from.
    const EMPTY: UeventRef<'static> = UeventRef {
        action: Action::Add,
        devpath: "",
        subsystem: "",
        values: [None; KEYS],
    };

    /// Checks the values the registry relies on, so that it can trust them afterwards.
    fn check_values(&self) -> Result<(), UeventError> {
        let bad = |key: Key, value: &str| UeventError::BadValue {
            header: format!("{}@{}", self.action, self.devpath),
            key: key.name(),
            value: value.to_owned(),
        };
        for key in [Key::Devname, Key::Interface] {
            if let Some(v) = self.get(key) {
                if !is_safe_device_name(v) {
                    return Err(bad(key, v));
                }
            }
        }
        // Without DEVNAME or INTERFACE the registry names the device after the last devpath
        // component, which must then be as safe to put after /dev/ as they are.
        if matches!(self.subsystem(), "block" | "net" | "nvme")
            && !is_safe_device_name(self.sysname())
        {
            return Err(bad(Key::Devname, self.sysname()));
        }
        for key in [
            Key::Major,
            Key::Minor,
            Key::Diskseq,
            Key::Partn,
            Key::Ifindex,
        ] {
            if let Some(v) = self.get(key) {
                if v.parse::<u64>().is_err() {
                    return Err(bad(key, v));
                }
            }
        }
        if let Some(old) = self.get(Key::DevpathOld) {
            if !is_canonical_devpath(old.as_bytes()) {
                return Err(bad(Key::DevpathOld, old));
            }
        }
        Ok(())
    }

    pub(crate) fn action(&self) -> Action {
        self.action
    }
    pub(crate) fn devpath(&self) -> &'a str {
        self.devpath
    }
    pub(crate) fn subsystem(&self) -> &'a str {
        self.subsystem
    }
    pub(crate) fn get(&self, key: Key) -> Option<&'a str> {
        self.values[key as usize]
    }
    /// A numeric field; values were checked by [`UeventRef::check_values`].
    pub(crate) fn get_u64(&self, key: Key) -> Option<u64> {
        self.get(key).and_then(|v| v.parse().ok())
    }
    pub(crate) fn sysname(&self) -> &'a str {
        sysname(self.devpath)
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
            ]),
            fields in proptest::collection::vec(proptest::sample::select(vec![
                "ACTION=add", "ACTION=remove", "ACTION=frob", "SUBSYSTEM=block",
                "SUBSYSTEM=pci", "SUBSYSTEM=virtio", "SEQNUM=1", "SEQNUM=+5", "SEQNUM=x",
                "SEQNUM=99999999999999999999", "DEVNAME=vda", "DEVNAME=../sda", "DEVTYPE=disk",
                "MAJOR=254", "MAJOR=x", "MINOR=0", "DISKSEQ=7", "PARTN=1", "INTERFACE=eth0",
                "IFINDEX=2", "DRIVER=virtio-pci", "PCI_ID=1AF4:1042", "PCI_CLASS=10000",
                "PCI_SUBSYS_ID=1AF4:1100", "DEVPATH_OLD=/devices/x", "DEVPATH_OLD=x",
                "NOEQUALS", "=empty-key", "", "\u{e9}=\u{e9}",
            ]), 0..12),
            devpath in proptest::sample::select(vec![
                VDA, "/devices/pci0000:00/0000:00:02.0", "/module/x",
                "/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1", "/devices/pci0000:00/../x",
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

    #[test]
    fn every_key_is_recognised_by_its_name() {
        for key in Key::ALL {
            assert!(
                matches!(Field::of(key.name().as_bytes()), Field::Known(k) if k == key),
                "{key:?}"
            );
        }
        for other in [
            "",
            "MODALIAS",
            "DEVNAMEX",
            "MAJO",
            "PCI_SLOT_NAME",
            "SYNTH_UUID",
        ] {
            assert!(
                matches!(Field::of(other.as_bytes()), Field::Other),
                "{other}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn find_byte_finds_what_a_plain_search_finds(
            bytes in proptest::collection::vec(proptest::sample::select(vec![0u8, b'/', b'a', 0x80, 0xff, 0x2f ^ 0x80]), 0..70),
            from in 0usize..72,
            needle in proptest::sample::select(vec![0u8, b'/', 0x80]),
        ) {
            let want = bytes
                .get(from..)
                .and_then(|rest| rest.iter().position(|&b| b == needle))
                .map_or(bytes.len(), |p| from + p);
            proptest::prop_assert_eq!(find_byte(&bytes, from, needle), want);
        }
    }
}
