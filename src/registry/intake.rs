//! The intake: what the registry was fed (datagrams, coldplug events) and how each was counted.

use std::fmt;

use super::{Change, Registry};
use crate::path::DevpathError;
use crate::uevent::{
    DatagramRef, Ignored, Uevent, UeventError, is_from_kernel, malformed_kinds_table,
};

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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Stats {
    /// Datagrams handed to [`Registry::apply_datagram`].
    pub received: u64,
    /// Relevant datagrams applied (whether or not they changed anything); at most `received`.
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
    /// Relevant datagrams whose devpath could not be placed.
    pub unplaceable: u64,
    /// Events handed to [`Registry::apply`] (a coldplug scan's, read from sysfs), counted
    /// apart from datagrams: none of the counts above includes them.
    pub coldplug: u64,
}

/// The `MalformedKinds` counters, from [`malformed_kinds_table`].
macro_rules! malformed_counters {
    ($(($variant:ident, $field:ident, $name:literal, $doc:literal)),* $(,)?) => {
        /// Malformed datagrams by kind of defect, named as [`UeventError::kind`] names them.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize))]
        pub struct MalformedKinds {
            $(
                #[doc = $doc]
                #[cfg_attr(feature = "serde", serde(rename = $name))]
                pub $field: u64,
            )*
        }

        impl MalformedKinds {
            fn count(&mut self, e: &UeventError) {
                match e {
                    $(UeventError::$variant { .. } => self.$field += 1,)*
                }
            }

            /// Each kind, as [`UeventError::kind`] names it, with its count.
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$(($name, self.$field)),*].into_iter()
            }
        }
    };
}
malformed_kinds_table!(malformed_counters);

impl Outcome {
    /// Logs, at warn level, why a datagram was not applied, after `origin` (where it came
    /// from: `file:line: ` for a recording, empty for the socket). Applied and ignored
    /// datagrams log nothing. The one wording of every skip, live or replayed.
    pub(crate) fn log(&self, origin: &dyn fmt::Display) {
        match self {
            Outcome::Applied(_) | Outcome::Ignored(_) => {}
            Outcome::Spoofed { sender } => {
                tracing::warn!(
                    sender,
                    "{origin}datagram from port {sender}, not the kernel: not believed"
                )
            }
            Outcome::Malformed(e) => tracing::warn!("{origin}malformed datagram skipped: {e}"),
            Outcome::Unplaceable(e) => tracing::warn!("{origin}event skipped: {e}"),
        }
    }
}

impl Registry {
    /// Checks a datagram's sender, validates and parses it, and applies it if relevant.
    ///
    /// `sender` is the netlink port id the datagram came from; only the kernel's (0) is
    /// believed: this is where the crate's one sender rule (`uevent::is_from_kernel`) is
    /// applied. Counts the outcome in [`Registry::stats`]. Never panics; on any error the
    /// registry is unchanged.
    pub fn apply_datagram(&mut self, sender: u32, datagram: &[u8]) -> Outcome {
        let mut changes = Vec::new();
        match self.apply_datagram_into(sender, datagram, &mut changes) {
            Outcome::Applied(_) => Outcome::Applied(changes),
            skipped => skipped,
        }
    }

    /// [`Registry::apply_datagram`], appending the changes to `changes` (and returning
    /// [`Outcome::Applied`] with none of its own): the listener applies a batch of datagrams
    /// into one list, instead of allocating one per datagram and moving it into the batch's.
    pub(crate) fn apply_datagram_into(
        &mut self,
        sender: u32,
        datagram: &[u8],
        changes: &mut Vec<Change>,
    ) -> Outcome {
        self.stats.received += 1;
        if !is_from_kernel(sender) {
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
            Ok(DatagramRef::Relevant(ev)) => match self.apply_ref(&ev, changes) {
                Ok(()) => {
                    self.stats.applied += 1;
                    Outcome::Applied(Vec::new())
                }
                Err(e) => {
                    self.stats.unplaceable += 1;
                    Outcome::Unplaceable(e)
                }
            },
        }
    }

    /// Applies one parsed event and returns what changed (nothing for a duplicate).
    ///
    /// On error (a devpath that cannot be placed) the registry is unchanged. Counted in
    /// [`Stats::coldplug`], not as a received datagram.
    pub fn apply(&mut self, ev: &Uevent) -> Result<Vec<Change>, DevpathError> {
        self.stats.coldplug += 1;
        let mut changes = Vec::new();
        self.apply_ref(&ev.view(), &mut changes)?;
        Ok(changes)
    }

    /// Counts of what [`Registry::apply_datagram`] and [`Registry::apply`] were fed.
    pub fn stats(&self) -> Stats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_events::*;
    use super::*;
    use crate::uevent::Action;

    #[test]
    fn coldplug_applies_are_counted_apart_so_applied_never_exceeds_received() {
        let mut r = Registry::new();
        r.apply(&vda("1")).unwrap();
        r.apply(&ev(Action::Bind, FN, "pci", &[("DRIVER", "virtio-pci")]))
            .unwrap();
        let s = r.stats();
        assert_eq!((s.received, s.applied, s.coldplug), (0, 0, 2), "{s:?}");

        let remove = format!("remove@{FN}\0ACTION=remove\0DEVPATH={FN}\0SUBSYSTEM=pci\0SEQNUM=5\0");
        let out = r.apply_datagram(0, remove.as_bytes());
        assert!(
            matches!(&out, Outcome::Applied(c) if !c.is_empty()),
            "{out:?}"
        );
        let s = r.stats();
        assert_eq!((s.received, s.applied, s.coldplug), (1, 1, 2), "{s:?}");

        // A resync's scan is coldplug too: its events add to `coldplug`, nothing else.
        let mut truth = Registry::new();
        truth.apply(&vda("2")).unwrap();
        r.reconcile(truth);
        let s = r.stats();
        assert_eq!((s.received, s.applied, s.coldplug), (1, 1, 3), "{s:?}");
    }

    #[test]
    fn each_malformed_kind_counts_under_its_own_name() {
        let mut kinds = MalformedKinds::default();
        let errors = [
            UeventError::Empty,
            UeventError::BadHeader("x".into()),
            UeventError::BadHeader("y".into()),
        ];
        for e in &errors {
            kinds.count(e);
        }
        let seen: Vec<(&str, u64)> = kinds.iter().filter(|(_, n)| *n > 0).collect();
        assert_eq!(seen, [("empty", 1), ("bad-header", 2)]);
        assert_eq!(kinds.bad_header, 2);
        #[cfg(feature = "serde")]
        {
            let json = serde_json::to_value(kinds).unwrap();
            assert_eq!(json["bad-header"], 2, "{json}");
            assert_eq!(json.as_object().unwrap().len(), kinds.iter().count());
        }
    }
}
