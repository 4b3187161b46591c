//! [`WaitError`]: what a wait of a [`Monitor`](crate::Monitor) fails with, its context as
//! data: a [`WaitTimeout`] (what was waited for, where, the timeout asked for and what was
//! [`Seen`]), the candidates of an ambiguous address, or why the listener stopped.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::address::{AmbiguousDisk, Candidate, DiskAddress};
use crate::error::humanize;
use crate::function::DriverState;
use crate::path::{Bdf, PciPath};
use crate::registry::{BlockDevice, NetInterface, NvmeController};
use crate::sysfs_write::SysfsWriteError;

/// Why a wait (`wait_block`, `wait_block_timeout`, `try_block`, `wait_block_async` and the
/// rest) failed. [`crate::Error`] wraps it (`Error::Wait`) for `?` in code that mixes waits
/// with the rest of pciplug.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The deadline passed first: "no block disk at 02/01 within 3s: PCI device 0000:01:01.0
    /// present at 02/01, driver virtio-pci bound, no block child".
    #[error(transparent)]
    Timeout(Box<WaitTimeout>),

    /// A disk address fits several disks: a path whose function carries more than one whole
    /// disk, or a unit several functions have. The candidates are listed with their addresses.
    #[error(transparent)]
    Ambiguous(#[from] AmbiguousDisk),

    /// The listener is gone (shut down or failed), so the wait can never be answered; why is
    /// the [`ListenerStopped`], whose source is the cause where there is one.
    #[error(transparent)]
    ListenerStopped(#[from] ListenerStopped),

    /// A write the wait makes was refused: a rescan with
    /// [`MonitorBuilder::rescan`](crate::MonitorBuilder::rescan), a SCSI `scan` with
    /// [`MonitorBuilder::scsi_scan`](crate::MonitorBuilder::scsi_scan).
    #[error(transparent)]
    SysfsWrite(#[from] SysfsWriteError),

    /// A read the wait makes to answer failed (a function's `iommu_group` link); `op` names
    /// it.
    #[error("{op}: {source}")]
    Io {
        /// The operation that failed, with its object.
        op: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl WaitError {
    /// What a wait does besides waiting (a sysfs read, a SCSI scan), failed with the library's
    /// [`Error`](crate::Error): its I/O and refused writes are the wait's own variants.
    pub(crate) fn from_edge(e: crate::Error) -> WaitError {
        match e {
            crate::Error::Io { op, source } => WaitError::Io { op, source },
            crate::Error::SysfsWrite(w) => WaitError::SysfsWrite(w),
            crate::Error::Wait(w) => w,
            // None other comes from a sysfs read or write; kept whole, never dropped.
            other => WaitError::Io {
                op: "waiting".into(),
                source: io::Error::other(other),
            },
        }
    }
}

impl From<WaitTimeout> for WaitError {
    fn from(t: WaitTimeout) -> Self {
        WaitError::Timeout(Box::new(t))
    }
}

/// A wait that ran out of time: what it waited for, where, the timeout it was given, and what
/// the registry held there when the deadline passed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WaitTimeout {
    /// What was waited for.
    pub wanted: Wanted,
    /// The PCI path waited at; `None` for a disk address with no path (a unit anywhere).
    pub path: Option<PciPath>,
    /// The time the wait was given: from its start to its deadline, rounded up to the
    /// millisecond (a `timeout` of 3 s reads 3 s, whatever the scheduler added; 0 reads 0).
    pub timeout: Duration,
    /// What was there when the deadline passed.
    pub seen: Seen,
}

/// What a wait waited for.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Wanted {
    /// The one whole block disk at the path (`wait_block`, or `wait_disk` with a path alone).
    Block,
    /// The disk at an address with a unit (`wait_disk`): a SCSI `T:L` or an NVMe namespace
    /// id, at the address's path or, with none, at any.
    Disk(DiskAddress),
    /// A network interface (`wait_net`).
    Net,
    /// No PCI function at the path (`wait_removed`).
    Removal,
    /// The PCI function in this driver state (`wait_function`).
    Function(DriverState),
}

/// What a timed-out wait saw where it waited.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Seen {
    /// No PCI function at the path. `bridge`: the nearest ancestor that is present, by its
    /// path and BDF, if any (the bridge the device would be behind).
    Nothing {
        /// The nearest present ancestor: its path and BDF.
        bridge: Option<(PciPath, Bdf)>,
    },
    /// A PCI function at the path, with its driver and children.
    Function(SeenFunction),
    /// (A disk unit at any path.) The disks that have a unit (a SCSI address or a namespace
    /// id), with their paths; empty if none has.
    Units(Vec<Candidate>),
}

/// The PCI function a timed-out wait saw at its path.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SeenFunction {
    /// Where the guest enumerated it.
    pub bdf: Bdf,
    /// Its driver; `None` while unbound.
    pub driver: Option<Box<str>>,
    /// Its block devices: its own disks and partitions by name, then the NVMe multipath
    /// heads of its controllers ([`Registry::block_devices`](crate::Registry::block_devices)).
    pub block: Vec<BlockDevice>,
    /// Its network interfaces, by name.
    pub net: Vec<NetInterface>,
    /// Its NVMe controllers.
    pub nvme: Vec<NvmeController>,
}

/// Why the listener thread stopped: every wait, present and future, fails with it. Its
/// [`source`](std::error::Error::source) is the cause where there is one.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ListenerStopped {
    /// [`Monitor::shutdown`](crate::Monitor::shutdown), or the last handle dropped. No source.
    ShutDown,
    /// Receiving from the uevent socket failed; the source is the OS error.
    Receive(Arc<io::Error>),
    /// The thread panicked (a bug); the source is a [`ListenerPanic`] with its message.
    Panicked(ListenerPanic),
}

/// The message of a listener thread's panic.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ListenerPanic {
    /// What the panic said ("a panic" if it was not a string).
    pub message: Box<str>,
}

impl fmt::Display for ListenerStopped {
    /// "listener stopped: shut down", "listener stopped: receiving uevents: {the OS error}",
    /// "listener stopped: the uevent listener thread panicked: {its message}".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("listener stopped: ")?;
        match self {
            ListenerStopped::ShutDown => f.write_str("shut down"),
            ListenerStopped::Receive(e) => write!(f, "receiving uevents: {e}"),
            ListenerStopped::Panicked(p) => {
                write!(f, "the uevent listener thread panicked: {}", p.message)
            }
        }
    }
}

impl std::error::Error for ListenerStopped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ListenerStopped::ShutDown => None,
            ListenerStopped::Receive(e) => Some(&**e),
            ListenerStopped::Panicked(p) => Some(p),
        }
    }
}

impl std::error::Error for WaitTimeout {}

impl fmt::Display for WaitTimeout {
    /// "no {what} at {path} within {timeout}: {seen}", the path left out for a wait at any
    /// path ("no block disk scsi 0:1 at any PCI path within 3s: disks present: ...").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no ")?;
        match (&self.wanted, &self.path) {
            (Wanted::Block, _) => f.write_str("block disk")?,
            (Wanted::Disk(a), Some(_)) => match a.unit() {
                Some(unit) => write!(f, "block disk {unit}")?,
                None => f.write_str("block disk")?,
            },
            (Wanted::Disk(a), None) => write!(f, "block disk {a}")?,
            (Wanted::Net, _) => f.write_str("network interface")?,
            (Wanted::Removal, _) => f.write_str("removal of the PCI device")?,
            (Wanted::Function(DriverState::Any), _) => f.write_str("PCI function")?,
            (Wanted::Function(state), _) => write!(f, "PCI function {state}")?,
        }
        match &self.path {
            Some(path) => write!(f, " at {path}")?,
            None => f.write_str(" at any PCI path")?,
        }
        write!(f, " within {}: ", humanize(self.timeout))?;
        match &self.path {
            Some(path) => {
                let function_wait = matches!(self.wanted, Wanted::Function(_));
                fmt_seen_at(f, path, &self.seen, function_wait)
            }
            None => fmt_units(f, &self.seen),
        }
    }
}

/// What was seen at `path`, as [`Registry::describe`](crate::Registry::describe) says it, or,
/// for a wait for a function (`function_wait`), as the function's presence and driver.
pub(crate) fn fmt_seen_at(
    f: &mut fmt::Formatter<'_>,
    path: &PciPath,
    seen: &Seen,
    function_wait: bool,
) -> fmt::Result {
    let dev = match seen {
        Seen::Nothing { bridge: None } => return write!(f, "no PCI device at {path}"),
        Seen::Nothing {
            bridge: Some((at, bdf)),
        } => {
            return write!(
                f,
                "no PCI device at {path} (bridge {bdf} at {at} is present)"
            );
        }
        Seen::Units(_) => return fmt_units(f, seen),
        Seen::Function(dev) => dev,
    };
    if function_wait {
        return match &dev.driver {
            None => write!(
                f,
                "PCI function {} present at {path} and unbound (no driver)",
                dev.bdf
            ),
            Some(d) => write!(
                f,
                "PCI function {} present at {path}, bound to {d}",
                dev.bdf
            ),
        };
    }
    write!(f, "PCI device {} present at {path}, ", dev.bdf)?;
    match &dev.driver {
        Some(d) => write!(f, "driver {d} bound, ")?,
        None => f.write_str("no driver bound, ")?,
    }
    if dev.block.is_empty() {
        f.write_str("no block child")?;
    } else {
        f.write_str("block")?;
        for b in &dev.block {
            write!(f, " {}", b.name)?;
        }
    }
    if !dev.net.is_empty() {
        f.write_str(", net")?;
        for n in &dev.net {
            write!(f, " {}", n.name)?;
        }
    }
    for c in &dev.nvme {
        match &c.subsystem {
            Some(s) => write!(f, ", nvme controller {} in {s}", c.name)?,
            None => write!(f, ", nvme controller {} (subsystem not yet known)", c.name)?,
        }
    }
    Ok(())
}

/// The disks with a unit a wait at any path saw: "disks present: sda 0:0:0:1 at 02/00, ...".
fn fmt_units(f: &mut fmt::Formatter<'_>, seen: &Seen) -> fmt::Result {
    match seen {
        Seen::Units(units) if !units.is_empty() => {
            f.write_str("disks present: ")?;
            for (i, c) in units.iter().enumerate() {
                let sep = if i == 0 { "" } else { ", " };
                write!(f, "{sep}{c} at {}", c.path)?;
            }
            Ok(())
        }
        _ => f.write_str("no disk with a SCSI address or a namespace id is present"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Nsid;

    fn p(s: &str) -> PciPath {
        s.parse().unwrap()
    }

    fn text(wanted: Wanted, path: Option<&str>, timeout: Duration, seen: Seen) -> String {
        let path = path.map(p);
        WaitTimeout {
            wanted,
            path,
            timeout,
            seen,
        }
        .to_string()
    }

    #[test]
    fn a_timeout_prints_the_sentences_the_strings_used_to_hold() {
        let nvme = SeenFunction {
            bdf: "0000:07:00.0".parse().unwrap(),
            driver: Some("nvme".into()),
            block: Vec::new(),
            net: Vec::new(),
            nvme: vec![
                NvmeController {
                    name: "nvme0".into(),
                    subsystem: Some("nvme-subsys0".into()),
                },
                NvmeController {
                    name: "nvme1".into(),
                    subsystem: None,
                },
            ],
        };
        let three = Duration::from_secs(3);
        assert_eq!(
            text(
                Wanted::Block,
                Some("06/00"),
                three,
                Seen::Function(nvme.clone())
            ),
            "no block disk at 06/00 within 3s: PCI device 0000:07:00.0 present at 06/00, \
             driver nvme bound, no block child, nvme controller nvme0 in nvme-subsys0, \
             nvme controller nvme1 (subsystem not yet known)"
        );
        // A wait for the function words it as the function's presence and driver.
        let vfio = Wanted::Function(DriverState::Driver("vfio-pci".into()));
        assert_eq!(
            text(vfio, Some("06/00"), three, Seen::Function(nvme)),
            "no PCI function bound to vfio-pci at 06/00 within 3s: PCI function 0000:07:00.0 \
             present at 06/00, bound to nvme"
        );
        let nsid: Nsid = "2".parse().unwrap();
        let anywhere = DiskAddress::with_unit(None, nsid.into());
        assert_eq!(
            text(
                Wanted::Disk(anywhere),
                None,
                Duration::from_millis(250),
                Seen::Units(Vec::new())
            ),
            "no block disk nsid 2 at any PCI path within 250ms: no disk with a SCSI address \
             or a namespace id is present"
        );
        let at = DiskAddress::with_unit(Some(p("02/00")), nsid.into());
        assert_eq!(
            text(
                Wanted::Disk(at),
                Some("02/00"),
                Duration::ZERO,
                Seen::Nothing { bridge: None }
            ),
            "no block disk nsid 2 at 02/00 within 0us: no PCI device at 02/00"
        );
    }

    #[test]
    fn a_stopped_listener_names_its_cause_and_gives_it_as_the_source() {
        use std::error::Error as _;
        let shut = WaitError::from(ListenerStopped::ShutDown);
        assert_eq!(shut.to_string(), "listener stopped: shut down");
        assert!(shut.source().is_none());
        let io = io::Error::from_raw_os_error(libc::EBADF);
        let failed = WaitError::from(ListenerStopped::Receive(Arc::new(io)));
        assert!(
            failed
                .to_string()
                .starts_with("listener stopped: receiving uevents: "),
            "{failed}"
        );
        let source = failed.source().and_then(|s| s.downcast_ref::<io::Error>());
        assert_eq!(source.and_then(io::Error::raw_os_error), Some(libc::EBADF));
        let panicked = WaitError::from(ListenerStopped::Panicked(ListenerPanic {
            message: "boom".into(),
        }));
        assert_eq!(
            panicked.to_string(),
            "listener stopped: the uevent listener thread panicked: boom"
        );
        let source = panicked.source().map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("boom"));
    }
}
