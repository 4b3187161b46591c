//! Test support, only with the `test-support` feature: what pciplug's own tests and benches
//! use to drive the real kernel path and to build sysfs trees. A user's build never has it.
//!
//! - [`Injector`] asks the kernel to broadcast a uevent, so a test puts real kernel
//!   datagrams (sender port 0, kernel `SEQNUM`) on the wire without touching a device. It
//!   needs `CAP_SYS_ADMIN` over the network namespace and must only be used in a private one.
//! - [`fake_sysfs`] lays out a sysfs tree in a temporary directory.
//! - [`MonitorBuilder::fault_hook`](crate::MonitorBuilder::fault_hook) (this feature only)
//!   makes the listener fail on a datagram.
//! - [`MonitorBuilder::resync_hook`](crate::MonitorBuilder::resync_hook),
//!   [`MonitorBuilder::scan_tick_hook`](crate::MonitorBuilder::scan_tick_hook) and
//!   [`MonitorBuilder::resync_gap`](crate::MonitorBuilder::resync_gap) (this feature only) act
//!   during a resync (at its start, or between the devices its rescan reads) and space resyncs
//!   as a test needs.

pub mod fake_sysfs;
mod injector;

use std::fmt;
use std::io;
use std::sync::Arc;

pub use injector::Injector;

/// What `MonitorBuilder::fault_hook` calls with each datagram.
type FaultFn = dyn Fn(&[u8]) -> io::Result<()> + Send + Sync;

/// A test's stand-in for a failing receive: see `MonitorBuilder::fault_hook`.
#[derive(Clone)]
pub(crate) struct FaultHook(Arc<FaultFn>);

impl FaultHook {
    pub(crate) fn new(hook: impl Fn(&[u8]) -> io::Result<()> + Send + Sync + 'static) -> Self {
        FaultHook(Arc::new(hook))
    }

    /// Runs the hook on a datagram's bytes.
    pub(crate) fn check(&self, bytes: &[u8]) -> io::Result<()> {
        (self.0)(bytes)
    }
}

impl fmt::Debug for FaultHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FaultHook")
    }
}

/// What `MonitorBuilder::resync_hook` calls at each rescan.
type ResyncFn = dyn Fn(u64) + Send + Sync;

/// A test's way to act during a resync: see `MonitorBuilder::resync_hook`.
#[derive(Clone)]
pub(crate) struct ResyncHook(Arc<ResyncFn>);

impl ResyncHook {
    pub(crate) fn new(hook: impl Fn(u64) + Send + Sync + 'static) -> Self {
        ResyncHook(Arc::new(hook))
    }

    /// Runs the hook for rescan number `n` (the first is 1).
    pub(crate) fn call(&self, n: u64) {
        (self.0)(n)
    }
}

impl fmt::Debug for ResyncHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResyncHook")
    }
}

/// What `MonitorBuilder::scan_tick_hook` calls between the devices a rescan reads.
type ScanTickFn = dyn Fn(u64, u64) + Send + Sync;

/// A test's way to act in the middle of a resync's rescan: see
/// `MonitorBuilder::scan_tick_hook`.
#[derive(Clone)]
pub(crate) struct ScanTickHook(Arc<ScanTickFn>);

impl ScanTickHook {
    pub(crate) fn new(hook: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        ScanTickHook(Arc::new(hook))
    }

    /// Runs the hook for tick `tick` of rescan number `n` (the first of each is 1).
    pub(crate) fn call(&self, n: u64, tick: u64) {
        (self.0)(n, tick)
    }
}

impl fmt::Debug for ScanTickHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScanTickHook")
    }
}
