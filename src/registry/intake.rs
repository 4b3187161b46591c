//! The intake: what the registry was fed (datagrams, coldplug events) and how each was counted.

use serde::Serialize;

use super::{Change, Registry};
use crate::path::DevpathError;
use crate::uevent::{DatagramRef, Ignored, Uevent, UeventError};

/// What [`Registry::apply_datagram`] did with one datagram.
#[derive(Debug)]
pub enum Outcome {
    /// Applied; the changes (possibly none, for a duplicate).
    Applied(Vec<Change>),
    /// A well-formed event that cannot concern the registry.
    Ignored(Ignored),
    /// Not sent by the kernel (sender port id is not 0); not believed.
    Spoofed {
        /// The sender's port id.
        sender: u32,
    },
    /// Not a well-formed kernel uevent.
    Malformed(UeventError),
    /// A well-formed event whose devpath cannot be placed (too deep, domain changes).
    Unplaceable(DevpathError),
}

/// Counts of what the registry was fed, by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Datagrams handed to [`Registry::apply_datagram`].
    pub received: u64,
    /// Relevant events applied (whether or not they changed anything).
    pub applied: u64,
    /// Well-formed events that cannot concern the registry.
    pub ignored: u64,
    /// Events with an action this version does not know (also counted in `ignored`).
    pub unknown_action: u64,
    /// Datagrams that were not well-formed kernel uevents (libudev ones included).
    pub malformed: u64,
    /// The same, by kind of defect; they add up to `malformed`.
    pub malformed_kinds: MalformedKinds,
    /// Datagrams from a sender other than the kernel.
    pub spoofed: u64,
    /// Relevant events whose devpath could not be placed.
    pub unplaceable: u64,
}

/// Malformed datagrams by kind of defect, named as [`UeventError::kind`] names them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MalformedKinds {
    /// Zero bytes.
    pub empty: u64,
    /// Larger than the kernel can send.
    pub too_large: u64,
    /// udevd's libudev format, not the kernel's.
    pub libudev: u64,
    /// Not ending in NUL.
    pub no_nul_end: u64,
    /// No `ACTION@DEVPATH` header.
    pub bad_header: u64,
    /// Not UTF-8.
    pub not_utf8: u64,
    /// A field without `=`.
    pub bad_field: u64,
    /// A required key missing.
    pub missing_key: u64,
    /// `ACTION=` or `DEVPATH=` contradicting the header.
    pub header_mismatch: u64,
    /// A devpath with `.`, `..` or empty components.
    pub bad_devpath: u64,
    /// A value that is not a number or a safe device name.
    pub bad_value: u64,
}

impl MalformedKinds {
    fn count(&mut self, e: &UeventError) {
        // Exhaustive on purpose: a new kind of defect must get its own counter.
        let n = match e {
            UeventError::Empty => &mut self.empty,
            UeventError::TooLarge { .. } => &mut self.too_large,
            UeventError::Libudev { .. } => &mut self.libudev,
            UeventError::NoNulEnd { .. } => &mut self.no_nul_end,
            UeventError::BadHeader(_) => &mut self.bad_header,
            UeventError::NotUtf8 { .. } => &mut self.not_utf8,
            UeventError::BadField(_) => &mut self.bad_field,
            UeventError::Missing { .. } => &mut self.missing_key,
            UeventError::HeaderMismatch { .. } => &mut self.header_mismatch,
            UeventError::BadDevpath(_) => &mut self.bad_devpath,
            UeventError::BadValue { .. } => &mut self.bad_value,
        };
        *n += 1;
    }

    /// Each kind, as [`UeventError::kind`] names it, with its count.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("empty", self.empty),
            ("too-large", self.too_large),
            ("libudev", self.libudev),
            ("no-nul-end", self.no_nul_end),
            ("bad-header", self.bad_header),
            ("not-utf8", self.not_utf8),
            ("bad-field", self.bad_field),
            ("missing-key", self.missing_key),
            ("header-mismatch", self.header_mismatch),
            ("bad-devpath", self.bad_devpath),
            ("bad-value", self.bad_value),
        ]
        .into_iter()
    }
}

impl Registry {
    /// Checks a datagram's sender, validates and parses it, and applies it if relevant.
    ///
    /// `sender` is the netlink port id the datagram came from; only 0 (the kernel) is
    /// believed. Counts the outcome in [`Registry::stats`]. Never panics; on any error the
    /// registry is unchanged.
    pub fn apply_datagram(&mut self, sender: u32, datagram: &[u8]) -> Outcome {
        self.stats.received += 1;
        if sender != 0 {
            self.stats.spoofed += 1;
            return Outcome::Spoofed { sender };
        }
        match DatagramRef::parse(datagram) {
            Err(e) => {
                self.stats.malformed += 1;
                self.stats.malformed_kinds.count(&e);
                Outcome::Malformed(e)
            }
            Ok(DatagramRef::Ignored(why)) => {
                self.stats.ignored += 1;
                if why == Ignored::UnknownAction {
                    self.stats.unknown_action += 1;
                }
                Outcome::Ignored(why)
            }
            Ok(DatagramRef::Relevant(ev)) => match self.apply_ref(&ev) {
                Ok(changes) => Outcome::Applied(changes),
                Err(e) => Outcome::Unplaceable(e),
            },
        }
    }

    /// Applies one parsed event and returns what changed (nothing for a duplicate).
    ///
    /// On error (a devpath that cannot be placed) the registry is unchanged.
    pub fn apply(&mut self, ev: &Uevent) -> Result<Vec<Change>, DevpathError> {
        self.apply_ref(&ev.view())
    }

    /// Counts of what [`Registry::apply_datagram`] was fed.
    pub fn stats(&self) -> Stats {
        self.stats
    }
}
