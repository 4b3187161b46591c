//! [`MonitorBuilder`]: the options of a [`Monitor`], and the start-up order that loses no event.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
#[cfg(any(test, feature = "test-support"))]
use std::time::Duration;

use parking_lot::Mutex;

use super::pacing::MIN_RESYNC_GAP;
use super::state::{State, StateLock, Status};
use super::thread::Listener;
use super::{Counters, Edges, Inner, Monitor, Shared};
use crate::error::{Error, Result};
use crate::netlink::SocketOptions;
use crate::registry::Registry;
use crate::sysfs::Sysfs;
#[cfg(any(test, feature = "test-support"))]
use crate::testing::{FaultHook, ResyncHook, ScanTickHook};
use crate::wait::Waiters;

/// Configures and starts a [`Monitor`].
#[derive(Clone, Debug)]
pub struct MonitorBuilder {
    sysfs_root: PathBuf,
    dev_root: PathBuf,
    recv_buffer: usize,
    force_recv_buffer: bool,
    subsystem_filter: bool,
    coldplug: bool,
    scsi_scan: bool,
    rescan: bool,
    #[cfg(any(test, feature = "test-support"))]
    fault_hook: Option<FaultHook>,
    #[cfg(any(test, feature = "test-support"))]
    resync_hook: Option<ResyncHook>,
    #[cfg(any(test, feature = "test-support"))]
    scan_tick_hook: Option<ScanTickHook>,
    #[cfg(any(test, feature = "test-support"))]
    rescan_in_listener: bool,
    #[cfg(any(test, feature = "test-support"))]
    resync_gap: Duration,
}

impl Default for MonitorBuilder {
    fn default() -> Self {
        MonitorBuilder {
            sysfs_root: PathBuf::from("/sys"),
            dev_root: PathBuf::from("/dev"),
            recv_buffer: crate::netlink::DEFAULT_RECV_BUFFER,
            force_recv_buffer: true,
            subsystem_filter: true,
            coldplug: true,
            scsi_scan: false,
            rescan: false,
            #[cfg(any(test, feature = "test-support"))]
            fault_hook: None,
            #[cfg(any(test, feature = "test-support"))]
            resync_hook: None,
            #[cfg(any(test, feature = "test-support"))]
            scan_tick_hook: None,
            #[cfg(any(test, feature = "test-support"))]
            rescan_in_listener: false,
            #[cfg(any(test, feature = "test-support"))]
            resync_gap: MIN_RESYNC_GAP,
        }
    }
}

impl MonitorBuilder {
    /// Where sysfs is mounted. Default `/sys`. The coldplug scan and the IOMMU groups are
    /// read below it, and every write ([`rescan`](Self::rescan), [`Monitor::vfio`]) goes below
    /// it.
    pub fn sysfs_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.sysfs_root = root.into();
        self
    }

    /// Where device nodes are. Default `/dev`. [`Monitor::vfio`] waits for
    /// `<dev_root>/vfio/<group>`.
    pub fn dev_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.dev_root = root.into();
        self
    }

    /// Whether every wait rescans the PCI bus: writes `1` to `<sysfs_root>/bus/pci/rescan`
    /// when it starts and again every [`RESCAN_INTERVAL`](super::RESCAN_INTERVAL) until it
    /// answers. Default `false`: nothing is written. For VMMs that add a device without
    /// telling the guest (no ACPI or PCIe hot-plug notice), which only a rescan finds. Needs
    /// root; a refused write ends the wait with [`Error::SysfsWrite`].
    pub fn rescan(mut self, yes: bool) -> Self {
        self.rescan = yes;
        self
    }

    /// The socket's receive buffer in bytes. Default 128 MiB, as udevd; set with
    /// `SO_RCVBUFFORCE` when permitted, else `SO_RCVBUF` (capped by `net.core.rmem_max`).
    pub fn recv_buffer(mut self, bytes: usize) -> Self {
        self.recv_buffer = bytes;
        self
    }

    /// Whether to ask for the receive buffer with `SO_RCVBUFFORCE` first. Default `true`;
    /// with `false`, `SO_RCVBUF` alone, capped by `net.core.rmem_max` as for an unprivileged
    /// process: see [`SocketOptions::force_recv_buffer`].
    pub fn force_recv_buffer(mut self, force: bool) -> Self {
        self.force_recv_buffer = force;
        self
    }

    /// Whether the kernel drops the uevents of subsystems the registry does not read (a socket
    /// filter: [`SocketOptions::subsystem_filter`], [`crate::netlink::filter`]) before they
    /// are queued. Default `true`: a storm of `module`, `memory`, `virtio`, `bdi` or `queues`
    /// uevents then costs the listener nothing and cannot overflow its buffer. With `false`
    /// the listener receives them all and the registry ignores them ([`Stats::ignored`]).
    /// [`MonitorStats::subsystem_filter`] says whether the kernel took the filter.
    ///
    /// [`Stats::ignored`]: crate::Stats::ignored
    /// [`MonitorStats::subsystem_filter`]: crate::MonitorStats::subsystem_filter
    pub fn subsystem_filter(mut self, yes: bool) -> Self {
        self.subsystem_filter = yes;
        self
    }

    /// Whether to scan sysfs for the devices present before the listener started.
    /// Default `true`. Without it (tests), the registry starts empty, and an overflow is
    /// still resynced from sysfs.
    pub fn coldplug(mut self, yes: bool) -> Self {
        self.coldplug = yes;
        self
    }

    /// Whether a wait for a disk with a SCSI unit first asks the kernel to probe that LUN:
    /// writes `"0 T L"` to the `scan` attribute of the SCSI hosts at the address's path (of
    /// every SCSI host below a PCI function when it has none), as Kata's agent does, for
    /// hypervisors that do not report a LUN hot-add. See [`Monitor::scan_scsi`]. Default
    /// `false`.
    pub fn scsi_scan(mut self, yes: bool) -> Self {
        self.scsi_scan = yes;
        self
    }

    /// Test support (feature `test-support`): `hook` sees every datagram the listener
    /// receives, before it is handled. An `Err` is treated as a receive error (the listener
    /// stops with it); a panic panics the listener thread. Lets tests check that waiters
    /// learn of a listener that failed. Default: none.
    #[cfg(any(test, feature = "test-support"))]
    pub fn fault_hook(
        mut self,
        hook: impl Fn(&[u8]) -> std::io::Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.fault_hook = Some(FaultHook::new(hook));
        self
    }

    /// Test support (feature `test-support`): the listener calls `hook` with the rescan's
    /// number (the first is 1) at the start of each resync's rescan, after it drained the
    /// socket and before it reads sysfs: what the hook does is what happens "during a
    /// rescan". Default: none.
    #[cfg(any(test, feature = "test-support"))]
    pub fn resync_hook(mut self, hook: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.resync_hook = Some(ResyncHook::new(hook));
        self
    }

    /// Test support (feature `test-support`): the listener calls `hook` during each resync's
    /// rescan, after each device it reads (a tick), with the rescan's number and the tick's
    /// (the first of each is 1), on the thread that reads sysfs: what the hook does happens in
    /// the middle of a rescan, and what it makes the kernel send is received during the
    /// rescan. Default: none.
    #[cfg(any(test, feature = "test-support"))]
    pub fn scan_tick_hook(mut self, hook: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        self.scan_tick_hook = Some(ScanTickHook::new(hook));
        self
    }

    /// Test support (feature `test-support`): with `true`, a resync's rescan runs in the
    /// listener's own thread, taking what the socket queued between the devices it reads, as
    /// when the `pciplug-rescan` thread cannot be started. Default: `false`.
    #[cfg(any(test, feature = "test-support"))]
    pub fn rescan_in_listener(mut self, yes: bool) -> Self {
        self.rescan_in_listener = yes;
        self
    }

    /// Test support (feature `test-support`): the least time from the end of one resync's
    /// rescan to the start of the next (a longer rescan spaces them more). Default 50 ms; a
    /// test asks for more to act between two resyncs.
    #[cfg(any(test, feature = "test-support"))]
    pub fn resync_gap(mut self, gap: Duration) -> Self {
        self.resync_gap = gap;
        self
    }

    /// Binds the socket, scans sysfs, and starts the listener thread (`pciplug-uevents`),
    /// the one thread of this monitor, which all its handles share (a resync's rescan reads
    /// sysfs in a thread of its own, `pciplug-rescan`, for its duration).
    ///
    /// Outside the initial network namespace it first warns (once per process, through
    /// `tracing`) that uevents of interfaces in other namespaces cannot reach it.
    ///
    /// # Errors
    ///
    /// [`Error::Io`], naming the operation: creating or binding the `NETLINK_KOBJECT_UEVENT`
    /// socket (no permission, or no netlink), reading the sysfs tree for the coldplug scan, or
    /// spawning the thread.
    pub fn start(self) -> Result<Monitor> {
        // 0. Say so (once per process) where some uevents cannot reach the socket.
        super::namespace::warn_once();
        // 1. Subscribe first: from here on no event can be missed.
        let socket = SocketOptions::new()
            .recv_buffer(self.recv_buffer)
            .force_recv_buffer(self.force_recv_buffer)
            .subsystem_filter(self.subsystem_filter)
            .open()?;
        let sysfs = Sysfs::new(&self.sysfs_root);
        // 2. Scan: the devices present now, read after the subscription.
        let registry = if self.coldplug {
            sysfs.registry()?
        } else {
            Registry::new()
        };
        let shared = Arc::new(Shared {
            state: StateLock::new(State {
                registry,
                waiters: Waiters::default(),
                status: Status::Running,
            }),
            subscribers: Mutex::new(Vec::new()),
            counters: Counters {
                subsystem_filter: socket.is_filtered(),
                ..Counters::default()
            },
        });
        let stopper = socket.stopper();
        let listener = Listener {
            socket,
            sysfs,
            shared: Arc::clone(&shared),
            #[cfg(any(test, feature = "test-support"))]
            fault_hook: self.fault_hook,
            #[cfg(any(test, feature = "test-support"))]
            resync_hook: self.resync_hook,
            #[cfg(any(test, feature = "test-support"))]
            scan_tick_hook: self.scan_tick_hook,
            #[cfg(any(test, feature = "test-support"))]
            rescan_in_listener: self.rescan_in_listener,
            #[cfg(any(test, feature = "test-support"))]
            resync_gap: self.resync_gap,
            #[cfg(not(any(test, feature = "test-support")))]
            resync_gap: MIN_RESYNC_GAP,
        };
        // 3. Only now read the events queued since step 1, in the thread.
        let thread = thread::Builder::new()
            .name("pciplug-uevents".into())
            .spawn(move || listener.run())
            .map_err(|e| Error::io("spawning the uevent listener thread", e))?;
        Ok(Monitor {
            inner: Arc::new(Inner {
                shared,
                scsi_scan: self.scsi_scan,
                stopper,
                thread: Mutex::new(Some(thread)),
                edges: Edges {
                    sysfs_root: self.sysfs_root,
                    dev_root: self.dev_root,
                    rescan: self.rescan,
                },
            }),
        })
    }
}
