//! The allocation-free read of a datagram: header, fields, and the borrowed [`UeventRef`] the
//! registry applies.

use super::{Action, Ignored, MAX_DATAGRAM, UeventError, is_safe_device_name, is_tracked};
#[cfg(doc)]
use super::{Datagram, Uevent};
use crate::devpath::{self, find_byte};

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
pub(super) enum Checked<'a> {
    Relevant {
        header: Header<'a>,
        /// See [`read_fields`].
        kobject_rejects: bool,
    },
    Ignored(Ignored),
}

/// The checks and pre-filters shared by [`Datagram::parse`] and [`DatagramRef::parse`], in
/// the order that decides which error a malformed datagram gets. Fills `event` as it goes.
pub(super) fn validate<'a>(
    datagram: &'a [u8],
    event: &mut UeventRef<'a>,
) -> Result<Checked<'a>, UeventError> {
    let header = Header::read(datagram)?;
    let Some(action) = header.action else {
        return Ok(Checked::Ignored(Ignored::UnknownAction));
    };
    if !devpath::may_concern_registry(header.devpath) {
        return Ok(Checked::Ignored(Ignored::Unrelated));
    }
    event.action = action;
    let kobject_rejects = read_fields(datagram, &header, event)?;
    if !is_tracked(header.devpath, event.subsystem) {
        return Ok(Checked::Ignored(Ignored::Subsystem));
    }
    Ok(Checked::Relevant {
        header,
        kobject_rejects,
    })
}

/// kobject-uevent's parse of a validated datagram, with its error named as ours.
pub(super) fn kobject_parse(
    datagram: &[u8],
    header: &Header<'_>,
) -> Result<kobject_uevent::UEvent, UeventError> {
    kobject_uevent::UEvent::from_netlink_packet(datagram)
        .map_err(|e| UeventError::BadField(format!("{}: {e}", String::from_utf8_lossy(header.raw))))
}

/// The `ACTION@DEVPATH` header, read without allocating.
pub(super) struct Header<'a> {
    pub(super) raw: &'a [u8],
    /// `None` for an action this version does not know.
    action: Option<Action>,
    action_raw: &'a [u8],
    devpath: &'a [u8],
}

impl<'a> Header<'a> {
    pub(super) fn read(d: &'a [u8]) -> Result<Header<'a>, UeventError> {
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
        // The last byte is a NUL, so there is one. (`memchr`'s set-up costs more than these
        // short searches: callgrind.)
        let end = find_byte(d, 0, 0);
        let raw = &d[..end];
        let bad = || UeventError::BadHeader(String::from_utf8_lossy(raw).into_owned());
        let at = Some(find_byte(raw, 0, b'@'))
            .filter(|&at| at < raw.len())
            .ok_or_else(bad)?;
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
    // Between the header's NUL and the final NUL; empty for a header-only datagram. Both
    // ends are next to an ASCII NUL, hence on character boundaries.
    let body = text
        .get(header.raw.len() + 1..text.len() - 1)
        .unwrap_or_default();
    let required = scan_fields(body, header, event)?;
    let (devpath, subsystem) = required.check(header)?;
    event.devpath = devpath;
    event.subsystem = subsystem;
    Ok(required.kobject_rejects)
}

/// The fields every kernel uevent carries, as [`scan_fields`] found them (the last of each).
#[derive(Default)]
struct Required<'a> {
    action: Option<&'a str>,
    devpath: Option<&'a str>,
    subsystem: Option<&'a str>,
    seqnum: Option<&'a str>,
    /// See [`read_fields`].
    kobject_rejects: bool,
}

/// One pass over the `KEY=VALUE` fields of `body`, from NUL to NUL: the registry's keys go
/// into `event`, the required ones are returned.
///
/// Eight bytes at a time: every NUL and `=` of a word is found at once, and each is then
/// handled in order (a search per field, for its `=` and then its NUL, spent more on starting
/// than on searching: fields are a few bytes to a few dozen).
fn scan_fields<'a>(
    body: &'a str,
    header: &Header<'a>,
    event: &mut UeventRef<'a>,
) -> Result<Required<'a>, UeventError> {
    let mut found = Required::default();
    let bytes = body.as_bytes();
    let mut fields = Fields { start: 0, eq: None };
    let mut i = 0;
    'words: while let Some(chunk) = bytes.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let mut hits = stops(u64::from_le_bytes(*chunk));
        while hits != 0 {
            let at = i + (hits.trailing_zeros() / 8) as usize;
            hits &= hits - 1;
            if let Some(resume) = fields.stop(body, at, header, event, &mut found)? {
                i = resume;
                continue 'words;
            }
        }
        i += 8;
    }
    // The last bytes, fewer than eight.
    while i < bytes.len() {
        i = match bytes[i] {
            0 | b'=' => fields.stop(body, i, header, event, &mut found)?,
            _ => None,
        }
        .unwrap_or(i + 1);
    }
    // The body's end ends the last field as a NUL would.
    fields.end(body, bytes.len(), header, event, &mut found)?;
    Ok(found)
}

/// The high bit of each byte of `w` that is a NUL or an `=`; exact (no carry from one byte
/// into the next, unlike the quicker test that only finds the first).
fn stops(w: u64) -> u64 {
    const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const EQUALS: u64 = 0x0101_0101_0101_0101 * b'=' as u64;
    // High bit set where the byte is not zero.
    let nonzero = |x: u64| ((x & LO7) + LO7) | x;
    !(nonzero(w) & nonzero(w ^ EQUALS)) & !LO7
}

/// Where [`scan_fields`] is in the body: the field being read.
struct Fields {
    start: usize,
    /// Its first `=`, once seen: the key ends there; later ones are the value's.
    eq: Option<usize>,
}

impl Fields {
    /// Takes the NUL or `=` at `at`; a NUL ends the field. Returns where the scan goes on
    /// when it read past `at` (a `DEVPATH=` value taken whole).
    #[inline(always)]
    fn stop<'a>(
        &mut self,
        body: &'a str,
        at: usize,
        header: &Header<'a>,
        event: &mut UeventRef<'a>,
        found: &mut Required<'a>,
    ) -> Result<Option<usize>, UeventError> {
        let bytes = body.as_bytes();
        if bytes.get(at) == Some(&b'=') {
            if self.eq.is_some() {
                return Ok(None); // the value's
            }
            self.eq = Some(at);
            // `DEVPATH=`'s value is, in every datagram that can be believed, the header's
            // devpath: compared whole, and the scan goes on after it, instead of searching its
            // dozens of bytes for their end. (Only a NUL ends it; its `=`s are the value's.)
            if &bytes[self.start..at] == b"DEVPATH" {
                let end = at + 1 + header.devpath.len();
                if bytes.get(at + 1..end) == Some(header.devpath)
                    && matches!(bytes.get(end), None | Some(0))
                {
                    self.end(body, end, header, event, found)?;
                    return Ok(Some(end + 1));
                }
            }
            return Ok(None);
        }
        self.end(body, at, header, event, found)?;
        Ok(None)
    }

    /// Takes the NUL at `at` (or the body's end), which ends the field.
    #[inline(always)]
    fn end<'a>(
        &mut self,
        body: &'a str,
        at: usize,
        header: &Header<'a>,
        event: &mut UeventRef<'a>,
        found: &mut Required<'a>,
    ) -> Result<(), UeventError> {
        let from = std::mem::replace(&mut self.start, at + 1);
        // A field without `=` is malformed, unless empty. Every cut is next to an ASCII
        // byte, so on a character boundary.
        let Some(eq) = self.eq.take() else {
            if at > from {
                return Err(UeventError::BadField(body[from..at].to_owned()));
            }
            return Ok(());
        };
        let (key, value) = (&body[from..eq], &body[eq + 1..at]);
        // The key's first eight bytes as one load where the body has them (it nearly always
        // does: the value and more follow), its bytes past the key masked off.
        let head = match body
            .as_bytes()
            .get(from..)
            .and_then(<[u8]>::first_chunk::<8>)
        {
            Some(c) if key.len() < 8 => u64::from_le_bytes(*c) & ((1 << (8 * key.len())) - 1),
            Some(c) => u64::from_le_bytes(*c),
            None => word(key.as_bytes()),
        };
        match Field::of_word(key.as_bytes(), head) {
            Field::Action => {
                found.kobject_rejects |= value.as_bytes() != header.action_raw
                    && Action::from_bytes(value.as_bytes()).is_none();
                found.action = Some(value);
            }
            Field::Devpath => found.devpath = Some(value),
            Field::Subsystem => found.subsystem = Some(value),
            Field::Seqnum => {
                // Up to 19 digits always fit a u64; anything else is left to `parse`.
                let fits =
                    (1..=19).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit());
                found.kobject_rejects |= !fits && value.parse::<u64>().is_err();
                found.seqnum = Some(value);
            }
            Field::Known(k) => event.values[k as usize] = Some(value),
            Field::Other => {}
        }
        Ok(())
    }
}

impl<'a> Required<'a> {
    /// Checks the required fields, in the order that decides which error a datagram gets:
    /// each present, `ACTION=` and `DEVPATH=` agreeing with the header, the devpath
    /// canonical, `SEQNUM=` a number. Returns the devpath and the subsystem.
    fn check(&self, header: &Header<'a>) -> Result<(&'a str, &'a str), UeventError> {
        let header_str = || String::from_utf8_lossy(header.raw).into_owned();
        let missing = |key| UeventError::Missing {
            header: header_str(),
            key,
        };
        let mismatch = |key, value: &str| UeventError::HeaderMismatch {
            header: header_str(),
            key,
            value: value.to_owned(),
        };
        let action = self.action.ok_or_else(|| missing("ACTION"))?;
        if action.as_bytes() != header.action_raw {
            return Err(mismatch("ACTION", action));
        }
        let devpath = self.devpath.ok_or_else(|| missing("DEVPATH"))?;
        if devpath.as_bytes() != header.devpath {
            return Err(mismatch("DEVPATH", devpath));
        }
        if !devpath::is_canonical(devpath.as_bytes()) {
            return Err(UeventError::BadDevpath(devpath.to_owned()));
        }
        let subsystem = self.subsystem.ok_or_else(|| missing("SUBSYSTEM"))?;
        let seqnum = self.seqnum.ok_or_else(|| missing("SEQNUM"))?;
        if seqnum.is_empty() || !seqnum.bytes().all(|b| b.is_ascii_digit()) || seqnum.len() > 20 {
            return Err(UeventError::BadValue {
                header: header_str(),
                key: "SEQNUM",
                value: seqnum.to_owned(),
            });
        }
        Ok((devpath, subsystem))
    }
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
pub(super) const KEYS: usize = 13;

impl Key {
    pub(crate) const ALL: [Key; KEYS] = [
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

/// What a field's key is to [`read_fields`].
#[derive(Clone, Copy)]
pub(super) enum Field {
    Action,
    Devpath,
    Subsystem,
    Seqnum,
    Known(Key),
    Other,
}

/// The first eight bytes of `s` (all of it if shorter), little-endian, zero-padded: how
/// [`Field::of_word`] compares keys, as whole words.
const fn word(s: &[u8]) -> u64 {
    let mut w = 0;
    let mut i = 0;
    while i < s.len() && i < 8 {
        w |= (s[i] as u64) << (8 * i);
        i += 1;
    }
    w
}

impl Field {
    /// What `key` is. See [`Field::of_word`].
    #[cfg(test)]
    fn of(key: &[u8]) -> Field {
        Field::of_word(key, word(key))
    }

    /// What `key` is, given `head`: [`word`] of it. Dispatches on the length first: most keys
    /// of a datagram (`MODALIAS`, `PCI_SLOT_NAME`, `SYNTH_UUID`...) then fail on one
    /// comparison; the rest compare one word (two for the 9-byte keys) instead of their bytes
    /// (which cost more than the rest of a field's handling: callgrind).
    #[inline(always)]
    fn of_word(key: &[u8], head: u64) -> Field {
        use Field::Known;
        const MAJOR: u64 = word(b"MAJOR");
        const MINOR: u64 = word(b"MINOR");
        const PARTN: u64 = word(b"PARTN");
        const ACTION: u64 = word(b"ACTION");
        const SEQNUM: u64 = word(b"SEQNUM");
        const DRIVER: u64 = word(b"DRIVER");
        const PCI_ID: u64 = word(b"PCI_ID");
        const DEVPATH: u64 = word(b"DEVPATH");
        const DEVNAME: u64 = word(b"DEVNAME");
        const DEVTYPE: u64 = word(b"DEVTYPE");
        const DISKSEQ: u64 = word(b"DISKSEQ");
        const IFINDEX: u64 = word(b"IFINDEX");
        const SUBSYSTE: u64 = word(b"SUBSYSTEM");
        const INTERFAC: u64 = word(b"INTERFACE");
        const PCI_CLAS: u64 = word(b"PCI_CLASS");
        match key.len() {
            5 => match head {
                MAJOR => Known(Key::Major),
                MINOR => Known(Key::Minor),
                PARTN => Known(Key::Partn),
                _ => Field::Other,
            },
            6 => match head {
                ACTION => Field::Action,
                SEQNUM => Field::Seqnum,
                DRIVER => Known(Key::Driver),
                PCI_ID => Known(Key::PciId),
                _ => Field::Other,
            },
            7 => match head {
                DEVPATH => Field::Devpath,
                DEVNAME => Known(Key::Devname),
                DEVTYPE => Known(Key::Devtype),
                DISKSEQ => Known(Key::Diskseq),
                IFINDEX => Known(Key::Ifindex),
                _ => Field::Other,
            },
            9 => match (head, key[8]) {
                (SUBSYSTE, b'M') => Field::Subsystem,
                (INTERFAC, b'E') => Known(Key::Interface),
                (PCI_CLAS, b'S') => Known(Key::PciClass),
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
    pub(super) action: Action,
    pub(super) devpath: &'a str,
    pub(super) subsystem: &'a str,
    /// Indexed by `Key as usize`.
    pub(super) values: [Option<&'a str>; KEYS],
}

impl<'a> UeventRef<'a> {
    /// Nothing yet: what [`read_fields`] starts from.
    pub(super) const EMPTY: UeventRef<'static> = UeventRef {
        action: Action::Add,
        devpath: "",
        subsystem: "",
        values: [None; KEYS],
    };

    /// Checks the values the registry relies on, so that it can trust them afterwards.
    pub(super) fn check_values(&self) -> Result<(), UeventError> {
        let bad = |key: Key, value: &str| UeventError::BadValue {
            header: format!("{}@{}", self.action, self.devpath),
            key: key.name(),
            value: value.to_owned(),
        };
        // A VFIO group's node is the one name with a slash (`vfio/4`), and must be its own.
        let vfio_group = (self.subsystem() == devpath::VFIO_SUBSYSTEM)
            .then(|| devpath::vfio_group(self.devpath.as_bytes()))
            .flatten();
        let safe_devname = |v: &str| match vfio_group {
            Some(group) => devpath::is_vfio_group_devname(v, group),
            None => is_safe_device_name(v),
        };
        if let Some(v) = self.get(Key::Devname).filter(|v| !safe_devname(v)) {
            return Err(bad(Key::Devname, v));
        }
        if let Some(v) = self.get(Key::Interface).filter(|v| !is_safe_device_name(v)) {
            return Err(bad(Key::Interface, v));
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
            if let Some(v) = self.get(key).filter(|v| v.parse::<u64>().is_err()) {
                return Err(bad(key, v));
            }
        }
        let not_canonical = |old: &&str| !devpath::is_canonical(old.as_bytes());
        if let Some(old) = self.get(Key::DevpathOld).filter(not_canonical) {
            return Err(bad(Key::DevpathOld, old));
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
        devpath::last_component(self.devpath)
    }
    /// For a `move` (a rename) with a `DEVPATH_OLD`, the object's name before it.
    pub(crate) fn old_sysname(&self) -> Option<&'a str> {
        (self.action == Action::Move)
            .then(|| self.get(Key::DevpathOld))
            .flatten()
            .map(devpath::last_component)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            "SUBSYSTEX",
            "INTERFACES",
            "PCI_CLASSES",
            "DEVPATH_OLX",
            "MAJOR\0",
            "ACTIO",
        ] {
            assert!(
                matches!(Field::of(other.as_bytes()), Field::Other),
                "{other}"
            );
        }
    }
}

/// `scan_fields` held to the field-by-field scan it replaced, on bodies made of the pieces
/// that matter (keys, `=`, NULs, a multi-byte character).
#[cfg(test)]
mod scan_reference {
    use super::*;
    use proptest::prelude::*;

    /// The scan as first written: a search for each field's NUL, then for its `=`.
    fn by_fields<'a>(
        body: &'a str,
        header: &Header<'a>,
        event: &mut UeventRef<'a>,
    ) -> Result<Required<'a>, UeventError> {
        let mut found = Required::default();
        let mut fields = Fields { start: 0, eq: None };
        let mut start = 0;
        while start <= body.len() {
            let end = find_byte(body.as_bytes(), start, 0);
            let field = &body[start..end];
            if !field.is_empty() {
                // The same handling of one field, fed its `=` and its NUL.
                if let Some(eq) = field.bytes().position(|b| b == b'=') {
                    fields.eq = Some(start + eq);
                }
            }
            fields.end(body, end, header, event, &mut found)?;
            start = end + 1;
        }
        Ok(found)
    }

    type Seen<'a> = Result<([Option<&'a str>; 4], bool, [Option<&'a str>; KEYS]), String>;

    fn seen<'a>(r: Result<Required<'a>, UeventError>, event: &UeventRef<'a>) -> Seen<'a> {
        r.map(|f| {
            (
                [f.action, f.devpath, f.subsystem, f.seqnum],
                f.kobject_rejects,
                event.values,
            )
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn keys_are_recognised_where_they_stand_in_a_body() {
        let d_for = |body: &str| format!("add@/devices/pci0000:00\0{body}\0");
        for key in Key::ALL {
            // Near the body's end too, where fewer than eight bytes follow the key's start.
            for body in [
                format!("{}=v\0SEQNUM=1", key.name()),
                format!("A=1\0{}=v", key.name()),
            ] {
                let d = d_for(&body);
                let header = Header::read(d.as_bytes()).unwrap();
                let mut event = UeventRef::EMPTY;
                let body = &d[header.raw.len() + 1..d.len() - 1];
                assert!(scan_fields(body, &header, &mut event).is_ok());
                assert_eq!(event.get(key), Some("v"), "{body:?}");
            }
        }
        for other in [
            "MAJO",
            "MAJORS",
            "SUBSYSTEX",
            "DEVPATHS",
            "PCI_SLOT_NAME",
            "X",
        ] {
            for body in [format!("{other}=v\0SEQNUM=1"), format!("{other}=v")] {
                let d = d_for(&body);
                let header = Header::read(d.as_bytes()).unwrap();
                let mut event = UeventRef::EMPTY;
                let body = &d[header.raw.len() + 1..d.len() - 1];
                let found = scan_fields(body, &header, &mut event).unwrap();
                assert_eq!(event.values, [None; KEYS], "{body:?}");
                assert!(
                    found.devpath.is_none() && found.subsystem.is_none(),
                    "{body:?}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn scan_fields_finds_what_a_scan_field_by_field_finds(
            pieces in proptest::collection::vec(proptest::sample::select(vec![
                "\0", "=", "=", "ACTION", "add", "DEVPATH", "/devices/pci0000:00", "SEQNUM", "12",
                "MAJOR", "DEVNAME", "vda", "SUBSYSTEM", "block", "x", "é", "0000:00:02.0/virtio0",
                "DEVPATH=/devices/pci0000:00", "DEVPATH=/devices/pci0000:00\0", "/devices/pci0000:00=x",
            ]), 0..40)
        ) {
            let body: String = pieces.concat();
            let d = format!("add@/devices/pci0000:00\0{body}\0");
            let header = Header::read(d.as_bytes()).unwrap();
            let body = &d[header.raw.len() + 1..d.len() - 1];
            let (mut new, mut old) = (UeventRef::EMPTY, UeventRef::EMPTY);
            let got = scan_fields(body, &header, &mut new);
            let want = by_fields(body, &header, &mut old);
            prop_assert_eq!(seen(got, &new), seen(want, &old), "{:?}", body);
        }
    }
}
