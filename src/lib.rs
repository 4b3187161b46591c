//! pciplug: find the guest device behind a hot-plugged PCI path, from kernel uevents.
//!
//! A VM's host tells its guest agent "a disk was hot-plugged at PCI path `02/00`; mount it".
//! Guest bus numbers are not stable, so host and guest name a device by its **PCI path**: the
//! hex slot of each bridge from the root bus down, then the device's own slot (`02/00`,
//! `03/00/01`, `06`; see [`PciPath`]). A [`Monitor`] keeps a live registry of the guest's PCI
//! functions keyed by that path, fed by the kernel's uevents, and waits until what you ask
//! for is there.
//!
//! # Start one, share it, wait
//!
//! ```no_run
//! use std::time::Duration;
//!
//! // Start one Monitor for the whole agent: it subscribes to the kernel's uevents, then
//! // reads what is already present from /sys, and starts its thread.
//! let monitor = pciplug::Monitor::start()?;
//!
//! // Share it: a Monitor is a cheap handle (Clone + Send + Sync); clones share one registry
//! // and one thread. Each request waits on its own thread, as long as it has to.
//! let m = monitor.clone();
//! let path: pciplug::PciPath = "03/00/01".parse()?;
//! let disk = std::thread::spawn(move || m.wait_block_timeout(&path, Duration::from_secs(3)));
//! let eth = monitor.wait_net_timeout(&"04/00".parse()?, Duration::from_secs(3))?;
//! println!("{} and {}", disk.join().unwrap()?.devnode(), eth.name); // /dev/vdb and eth0
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **Threads.** Each `Monitor` runs one thread, `pciplug-uevents`: it receives the uevents,
//! applies them to the registry and wakes the waits they answer; when the kernel reports
//! lost events it rescans sysfs and reconciles. That thread is the only one pciplug starts,
//! but for one `pciplug-timer` per process once an async wait has a deadline (**Async** below),
//! and `pciplug-rescan`, which reads sysfs for a resync while `pciplug-uevents` goes on
//! receiving, and ends with the rescan. The socket carries a BPF filter
//! ([`netlink::filter`]) with which the kernel drops, before they are queued, the uevents of
//! the subsystems the registry does not read (`module`, `memory`, `virtio`, `bdi`, `queues`...):
//! a storm of them costs the listener nothing and cannot overflow its buffer
//! ([`MonitorBuilder::subsystem_filter`] turns it off). The listener never leaves the socket to overflow
//! while another thread holds the registry (a long [`Monitor::with_registry`]): it holds what
//! it receives meanwhile and applies it, in order, once the lock is free.
//! A wait blocks the calling thread (no thread per wait, no polling); its `_async` form does
//! not. One shared `Monitor` is the intended use: a second one opens a second socket, keeps a
//! second registry and runs a second thread. The thread stops, and the socket closes, when the last handle is dropped or
//! on [`Monitor::shutdown`].
//!
//! **Errors.** A wait (every form: `wait_block`, `_timeout`, `_deadline`, `try_block`, the
//! async ones) fails with a [`WaitError`], whose context is data, not text (its `Display`
//! keeps the sentences the command-line tool prints, context first; `source()` is set):
//! - [`WaitError::Timeout`]: the deadline passed. A [`WaitTimeout`] says what was awaited
//!   ([`Wanted`]: a block disk, a disk at an address, a NIC, a removal, a function in a driver
//!   state), at which path, the timeout asked for (not the time it happened to take), and what
//!   was [`Seen`] there: nothing (and the nearest bridge present), or the function with its
//!   BDF, driver and children (block disks, NICs, NVMe controllers), or, for a unit at any
//!   path, the disks that have a unit.
//! - [`WaitError::Ambiguous`]: a disk address fits several disks (SCSI LUNs, NVMe
//!   namespaces); the candidates are listed. Name one with a [`DiskAddress`]; pciplug never
//!   picks.
//! - [`WaitError::ListenerStopped`]: the monitor's thread has stopped, so the registry is no
//!   longer kept and no wait can be answered, `try_` forms included. [`ListenerStopped`] says
//!   why: shut down, a receive error (its source is the OS error), a panic (its message).
//! - [`WaitError::SysfsWrite`], [`WaitError::Io`]: what a wait does besides waiting failed (a
//!   rescan or SCSI scan refused, a function's IOMMU group link unreadable).
//!
//! Everything else returns [`Error`], which wraps a wait's error as [`Error::Wait`] so that `?`
//! works in code that mixes them:
//! - [`Error::Io`]: an operation on the system failed (binding the socket, reading sysfs,
//!   spawning the thread); the message names it, the source is the OS error.
//! - [`Error::SysfsWrite`]: a write pciplug was asked to make (a rescan, a VFIO hand-over) was
//!   refused: the file, the value and the OS error.
//! - [`Error::Vfio`]: a function cannot go to `vfio-pci` ([`VfioError`] says why).
//! - [`Error::PciPath`], [`Error::Uevent`], [`Error::Recording`]: bad input (a path string, a
//!   datagram, a recording file), named precisely.
//!
//! **Async.** Every wait has an async form in the style of flume's `recv_async`:
//! [`Monitor::wait_block_async`], `wait_disk_async`, `wait_net_async`, `wait_removed_async`,
//! `wait_function_async` (for ever), each with its `_timeout_async` and `_deadline_async`
//! forms, taking the sync wait's arguments. Each returns a
//! [`WaitFuture`] that resolves to what the sync wait returns, with the same errors. It works
//! under any executor (tokio, smol, a plain `block_on`): the monitor's own thread wakes it,
//! through the [`Waker`](std::task::Waker) it leaves where a blocking wait would sleep; no
//! thread is started per wait. A deadline is kept by one more thread, `pciplug-timer`, shared
//! by every async wait with a deadline and started by the first one; a wait for ever never
//! starts it: cancel it with your runtime's timeout. Dropping the future cancels the wait at
//! once (it leaves [`MonitorStats::waiters`]). [`Monitor::vfio`] has no async form: it
//! writes to sysfs and waits for the group's node; call it on a blocking thread.
//!
//! ```no_run
//! # async fn agent() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//!
//! let monitor = pciplug::Monitor::start()?;
//! let path = "02/00".parse()?;
//! // Waits up to 3 s without blocking the runtime's thread.
//! let disk = monitor.wait_block_timeout_async(&path, Duration::from_secs(3)).await?;
//! // Or for ever, cancelled by dropping: here by tokio's timeout.
//! let nic = monitor.wait_net_async(&"04/00".parse()?);
//! let nic = tokio::time::timeout(Duration::from_secs(3), nic).await??;
//! println!("{} and {}", disk.devnode(), nic.name);
//! # Ok(())
//! # }
//! ```
//!
//! With feature `stream`, `Monitor::subscribe_stream` gives the registry's changes as a
//! `futures_core::Stream`, fed and woken by the same thread.
//!
//! **Where uevents cannot arrive.** The kernel announces a network interface only in its own
//! network namespace, and other devices (block, PCI) only to network namespaces owned by the
//! initial user namespace. A `Monitor` started in another network namespace therefore never
//! hears of the machine's NICs (waits for them time out), and in one owned by another user
//! namespace it hears of no device at all; it warns once per process (`tracing::warn!`) when
//! it starts there. Sysfs is read where it is mounted: a `/sys` mounted for another namespace
//! lists that namespace's interfaces.
//!
//! # The registry
//!
//! Underneath, a pure [`Registry`] of the PCI functions present, keyed by [`PciPath`]
//! computed from each device's chain of parent bridges, with each function's children: block
//! disks and partitions, network interfaces, NVMe controllers and their namespace heads, SCSI
//! disks. It is fed kernel uevents (`NETLINK_KOBJECT_UEVENT`), which [`Datagram::parse`]
//! validates, most of them set aside without allocating.
//!
//! The registry does no I/O, so it is tested on real recordings. Here the
//! registry is fed the datagrams a Debian 6.1 guest's kernel sent while QEMU hot-plugged
//! disks behind bridges, removed two and re-added one:
//!
//! ```
//! use pciplug::{PciPath, Recording, Registry};
//!
//! let file = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/real-hotplug/q35-acpi-hotplug.uevents");
//! let recording = Recording::read(file)?;
//! let mut registry = Registry::new();
//! recording.replay_into(&mut registry);
//!
//! // A virtio-blk disk behind a pci-bridge behind a pcie-pci-bridge behind a root port.
//! let path: PciPath = "03/00/02/03".parse()?;
//! assert_eq!(registry.disk(&path).unwrap().devnode(), "/dev/vdc");
//! // The disk re-added at 02/00 reuses the name vda, but is a new disk.
//! let vda = registry.disk(&"02/00".parse()?).unwrap();
//! assert_eq!((&*vda.name, vda.diskseq), ("vda", Some(7)));
//! // Nothing is left at 03/00/01, whose removal was recorded.
//! assert!(registry.get(&"03/00/01".parse()?).is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A function may carry several disks (a SCSI HBA's LUNs, an NVMe controller's namespaces):
//! [`Registry::disk`] then shows the first by name, while [`Registry::find_disk`] and the
//! live [`Monitor`]'s waits take a [`DiskAddress`] (a path, a SCSI `T:L` or an NVMe namespace
//! id, or a unit alone) and report an address that fits several disks as
//! [`WaitError::Ambiguous`], never picking one.
//!
//! NVMe namespace heads with native multipath live under `/devices/virtual/nvme-subsystem/`
//! and uevents do not say which controller they belong to; the registry keeps them per
//! subsystem until [`Registry::link_nvme_controller`] ties them to a path with what sysfs says.
//!
//! # PCI functions and VFIO
//!
//! A live [`Monitor`] also waits for a PCI function itself, in a driver state
//! ([`DriverState`]: present, bound, bound to a named driver, unbound), and answers a
//! [`PciFunction`] with its guest BDF, IDs, class, driver and IOMMU group. [`Monitor::vfio`]
//! hands a function and the rest of its IOMMU group to `vfio-pci` and answers the group's
//! node, `/dev/vfio/<group>`, for a container. With [`MonitorBuilder::rescan`], every wait
//! rescans the PCI bus when it starts and every [`RESCAN_INTERVAL`], for VMMs that add
//! devices without telling the guest. These are the only writes pciplug makes, all below the
//! builder's sysfs root; a refused one is an [`Error::SysfsWrite`] naming the file.
//!
//! ```no_run
//! use std::time::Duration;
//! use pciplug::{DriverState, Monitor};
//!
//! let monitor = Monitor::start()?;
//! let path = "04/00".parse()?;
//! let function = monitor.wait_function_timeout(&path, &DriverState::Any, Duration::from_secs(3))?;
//! println!("{} in IOMMU group {:?}", function.bdf, function.iommu_group);
//! let group = monitor.vfio(&path, Duration::from_secs(3))?;
//! println!("{}", group.devnode.display()); // /dev/vfio/5
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! - `cli` (on by default): the `pciplug` command-line tool and its dependencies (clap,
//!   tracing-subscriber, humantime, serde_json). A library user turns it off with
//!   `default-features = false` and builds none of them.
//! - `serde` (on with `cli`): `serde::Serialize` for the registry's types, [`PciFunction`],
//!   [`VfioGroup`] and [`MonitorStats`], in the shapes `pciplug --json` prints.
//! - `stream` (off): `Monitor::subscribe_stream` and `ChangeStream`, the registry's changes
//!   as a `futures_core::Stream` (its only dependency, `futures-core`). The async waits need
//!   no feature.
//! - `test-support` (off): the `testing` module (a uevent injector for private network
//!   namespaces, fake sysfs trees) and `MonitorBuilder::fault_hook`, for pciplug's own tests
//!   and benches. A user's build never needs it.
//! - `model-check` (off): runs the waiter protocol's unit tests on loom's models
//!   (`cargo test --lib --features model-check model`); changes nothing outside the tests.
//!
//! # Modules
//!
//! Every item is at the root, except two edges kept as modules for those who build their own
//! loop: [`netlink`] (the uevent socket) and [`sysfs`] (the coldplug scanner), and `testing`
//! (feature `test-support`).
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod address;
mod devpath;
mod error;
mod function;
mod hex;
mod monitor;
pub mod netlink;
mod path;
mod recording;
mod registry;
pub mod sysfs;
mod sysfs_write;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
mod uevent;
mod vfio;
mod wait;

pub use address::{AmbiguousDisk, Candidate, DiskAddress, Nsid, ParseUnitError, ScsiUnit, Unit};
/// The receiving end of [`Monitor::subscribe`]: crossbeam-channel's `Receiver`, re-exported so
/// that an adopter needs no dependency of its own on crossbeam-channel.
pub use crossbeam_channel::Receiver;
pub use error::{Error, Result};
pub use function::{DriverState, PciFunction};
#[cfg(feature = "stream")]
pub use monitor::ChangeStream;
pub use monitor::{Monitor, MonitorBuilder, MonitorStats, RESCAN_INTERVAL, WaitFuture};
pub use path::{Bdf, DevpathError, Hop, MAX_HOPS, ParsePciPathError, PciPath, RootComplex};
pub use recording::{Record, Recording};
pub use registry::{
    BlockDevice, Change, DevType, DeviceView, MalformedKinds, NetInterface, NvmeController,
    Outcome, PciDevice, PciIds, Registry, Stats, Transport,
};
pub use sysfs_write::SysfsWriteError;
pub use uevent::{Action, Datagram, Ignored, Uevent, UeventError, is_safe_device_name};
pub use vfio::{Blocker, VfioError, VfioGroup};
pub use wait::error::{
    ListenerPanic, ListenerStopped, Seen, SeenFunction, WaitError, WaitTimeout, Wanted,
};

// The README's examples are compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
