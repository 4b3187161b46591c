//! The kernel uevent socket: bind, receive buffer, receive, sender, stop.
//!
//! [`UeventSocket`] is a `NETLINK_KOBJECT_UEVENT` socket bound to multicast group 1, the group
//! the kernel sends uevents to (udevd re-sends processed events to group 2, which this socket
//! does not join). It does no parsing: [`UeventSocket::recv`] fills a caller's buffer and says
//! how long the datagram was, whether it was cut short, and who sent it.
//!
//! # Batches
//!
//! [`UeventSocket::recv_batch`] (and [`try_recv_batch`](UeventSocket::try_recv_batch), the
//! `_timeout` and `_deadline` forms) receives every datagram queued, up to a
//! [`RecvBatch`]'s capacity, in one `recvmmsg(2)`, and waits in `poll` only when the socket
//! was found empty: in a storm, one system call and one wake-up serve many datagrams. Each
//! datagram keeps its [`Envelope`]; overflows and stops are reported as by `recv`.
//!
//! # Who sent it
//!
//! Only the kernel sends from netlink port id 0. A process with `CAP_NET_ADMIN` over the
//! network namespace can also send to group 1, and the kernel stamps such a datagram with the
//! sender's own (non-zero) port id, so [`Envelope::sender_port`] is enough to tell a forgery
//! apart. The socket reports the sender and does not judge it: the check is the registry's
//! intake ([`Registry::apply_datagram`](crate::Registry::apply_datagram) is given the sender
//! and believes port 0 only), and a caller that parses datagrams itself must drop every one
//! whose [`Envelope::is_from_kernel`] is false (the same rule). `SO_PASSCRED` credentials
//! are not needed for that: the port id is set by the kernel, not the sender (udevd needs
//! credentials only for group 2, where every sender is userspace).
//!
//! # Losing events
//!
//! The kernel never blocks on a slow listener: when the socket's receive buffer is full it
//! drops the datagram and the next receive fails with `ENOBUFS`, which
//! [`UeventSocket::recv`] reports as [`Received::Overflow`]. The caller must then resync from
//! sysfs. The buffer is therefore large by default (128 MiB, as udevd asks for), set with
//! `SO_RCVBUFFORCE` when the process may (`CAP_NET_ADMIN` in the initial user namespace) and
//! with `SO_RCVBUF` otherwise, which `net.core.rmem_max` caps; [`UeventSocket::recv_buffer`]
//! says which one took effect and what the kernel granted.
//!
//! # Stopping a blocked receiver
//!
//! A receive waits in `poll(2)` on two descriptors: the netlink socket and an `eventfd` owned
//! by the socket. [`Stopper::stop`] sets a flag (which a batched receive checks before every
//! read, without a system call) and makes the eventfd readable, and it stays readable, so a
//! receive in progress returns [`Received::Stopped`] at once and every later one returns it
//! without waiting, whatever is queued. The datagram itself is then read with `MSG_DONTWAIT`,
//! so a wake-up with nothing to read (another thread took the datagram) loops back to `poll`
//! instead of blocking where a stop could not reach it.
//!
//! Why not the alternatives: closing the descriptor from another thread does not wake a
//! blocked `recvmsg` on Linux and races with descriptor reuse; `shutdown(2)` is not
//! implemented for netlink (`EOPNOTSUPP`); a receive timeout (`SO_RCVTIMEO`) with a stop flag
//! polled between receives works, but shutdown then takes up to a full timeout and an idle
//! listener wakes up for nothing at every timeout. With the eventfd, shutdown takes one
//! wake-up and an idle listener sleeps.
//!
//! The system calls themselves are in the private `sys` module, the one place of the crate
//! allowed `unsafe`. Tests put real kernel datagrams on the wire with
//! `pciplug::testing::Injector` (feature `test-support`).

mod batch;
pub mod filter;
pub(crate) mod sys;

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use netlink_sys::protocols::NETLINK_KOBJECT_UEVENT;
use netlink_sys::{Socket, SocketAddr};

use crate::error::{Error, Result};
pub use batch::{Batch, MAX_BATCH, RecvBatch};
use sys::{attach_filter, getsockopt_int, new_eventfd, poll, pollfd, recv_from, setsockopt_int};

/// The size of a receive buffer that holds any uevent the kernel sends whole.
pub use crate::uevent::MAX_DATAGRAM;

/// The multicast group the kernel sends uevents to (`1 << 0`); udevd uses group 2.
const KERNEL_GROUP: u32 = 1;

/// The receive buffer asked for by default: 128 MiB, as udevd asks for its kernel socket.
pub const DEFAULT_RECV_BUFFER: usize = 128 * 1024 * 1024;

/// Options for opening a [`UeventSocket`]; [`SocketOptions::new`] gives the defaults.
///
/// ```no_run
/// use pciplug::netlink::SocketOptions;
/// let socket = SocketOptions::new().recv_buffer(16 << 20).open()?;
/// # Ok::<(), pciplug::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketOptions {
    /// Bytes to ask for; the kernel clamps it to `INT_MAX / 2` and doubles it.
    recv_buffer: usize,
    /// Whether to ask with `SO_RCVBUFFORCE` first.
    force: bool,
    /// Whether to attach the subsystem filter.
    subsystem_filter: bool,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            recv_buffer: DEFAULT_RECV_BUFFER,
            force: true,
            subsystem_filter: false,
        }
    }
}

impl SocketOptions {
    /// Options with every default: a 128 MiB receive buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Receive buffer to ask for, in bytes; default 128 MiB ([`DEFAULT_RECV_BUFFER`]), like udevd.
    ///
    /// The kernel doubles the value (the other half pays for its bookkeeping) and grants at
    /// least its minimum (a few KiB). Without `CAP_NET_ADMIN` in the initial user namespace the
    /// request is capped by `net.core.rmem_max`; see [`RecvBuffer`].
    pub fn recv_buffer(mut self, bytes: usize) -> Self {
        self.recv_buffer = bytes;
        self
    }

    /// Whether to ask for the receive buffer with `SO_RCVBUFFORCE` first (and `SO_RCVBUF`
    /// only if that is refused). Default `true`. With `false` it is asked with `SO_RCVBUF`
    /// alone, capped by `net.core.rmem_max` whatever the process may do: the buffer an
    /// unprivileged agent gets (with the default `rmem_max`, 212,992 bytes asked, twice that
    /// granted), for comparing with one, or for a process that must not exceed the
    /// administrator's limit.
    pub fn force_recv_buffer(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Whether the kernel drops, before they are queued, the uevents of the subsystems the
    /// registry does not read: the [`filter`] module's socket filter. Default `false`: the
    /// socket receives every uevent. [`Monitor`](crate::Monitor) turns it on
    /// ([`MonitorBuilder::subsystem_filter`](crate::MonitorBuilder::subsystem_filter)).
    ///
    /// If the kernel refuses the filter, the socket opens without it and says so in a
    /// warning; [`UeventSocket::is_filtered`] tells.
    pub fn subsystem_filter(mut self, yes: bool) -> Self {
        self.subsystem_filter = yes;
        self
    }

    /// Opens the socket, binds it to the kernel's uevent group, sets the receive buffer and,
    /// if asked, attaches the subsystem filter.
    pub fn open(&self) -> Result<UeventSocket> {
        UeventSocket::with_options(self)
    }
}

/// Which socket option set the receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvBufferOption {
    /// `SO_RCVBUFFORCE`: the request was granted whatever `net.core.rmem_max` says (the
    /// process has `CAP_NET_ADMIN` in the initial user namespace).
    RcvBufForce,
    /// `SO_RCVBUF`, after `SO_RCVBUFFORCE` was refused with `EPERM` or not tried
    /// ([`SocketOptions::force_recv_buffer`]): the request was capped by `net.core.rmem_max`.
    RcvBuf,
}

/// The receive buffer the kernel granted, as read back with `getsockopt(SO_RCVBUF)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvBuffer {
    /// The bytes asked for ([`SocketOptions::recv_buffer`]).
    pub requested: usize,
    /// The bytes granted, as the kernel reports them: twice the (capped) request, since the
    /// kernel counts its own per-datagram overhead (`truesize`, about 1 KiB for a small uevent)
    /// against this value.
    pub actual: usize,
    /// The option that took effect.
    pub option: RecvBufferOption,
}

/// The kernel uevent socket (`NETLINK_KOBJECT_UEVENT`, multicast group 1).
///
/// It owns the netlink socket (closed on drop) and the eventfd its [`Stopper`]s signal.
/// `Send + Sync`: receiving takes `&self`, so it can be shared with the thread that stops it.
#[derive(Debug)]
pub struct UeventSocket {
    /// Bound to group 1 with a kernel-chosen port id. Never cloned: netlink-sys's `Socket`
    /// derives `Clone` but closes its descriptor on drop, so a clone would close it twice.
    socket: Socket,
    /// Set, and made readable for `poll`, by [`Stopper::stop`].
    stop: Arc<StopSignal>,
    /// What the kernel granted when the socket was opened.
    recv_buffer: RecvBuffer,
    /// The subsystem filter is attached.
    filtered: bool,
}

/// What one receive produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Received {
    /// A datagram; its first `min(len, buf.len())` bytes are in the buffer
    /// ([`Envelope::bytes`]). Check [`Envelope::is_from_kernel`] before believing it.
    Datagram(Envelope),
    /// The receive buffer overflowed (`ENOBUFS`): the kernel dropped at least one datagram,
    /// and keeps dropping every new one until the datagrams queued before the overflow have
    /// all been read. Reported once per overflow; the socket stays usable.
    ///
    /// To resync: keep receiving (or discarding) until a zero timeout gives
    /// [`Received::TimedOut`], then rescan sysfs; datagrams after that point arrive again.
    Overflow,
    /// The deadline passed with nothing to read (only from the `_timeout`/`_deadline` forms).
    TimedOut,
    /// A [`Stopper`] of this socket was used; every receive from now on returns this at once.
    Stopped,
}

/// The facts about a received datagram that are not in its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Envelope {
    /// The datagram's full length, which is more than the buffer when it was truncated.
    pub len: usize,
    /// The datagram was longer than the buffer; its tail is lost (not left for the next read).
    pub truncated: bool,
    /// The sender's netlink port id (`nl_pid` of the source address): 0 is the kernel, any
    /// other value is a process.
    pub sender_port: u32,
    /// The multicast groups it was sent to (`nl_groups` of the source address): 1 for a
    /// uevent broadcast, 0 for a datagram sent straight to this socket's port.
    pub groups: u32,
}

impl Envelope {
    /// True if the kernel sent the datagram (sender port 0); anything else is a forgery.
    pub fn is_from_kernel(&self) -> bool {
        crate::uevent::is_from_kernel(self.sender_port)
    }

    /// The part of the datagram that is in `buf` (the buffer passed to the receive).
    pub fn bytes<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        &buf[..self.len.min(buf.len())]
    }
}

/// Stops receives on a [`UeventSocket`] from another thread; cheap to clone.
///
/// Holding a `Stopper` keeps the eventfd open, not the netlink socket.
#[derive(Clone, Debug)]
pub struct Stopper {
    /// The socket's stop signal (see the `stop` field of [`UeventSocket`]).
    stop: Arc<StopSignal>,
}

/// What a [`Stopper`] sets: a flag that a batched receive checks before every read without a
/// system call, and an eventfd that `poll` sees.
#[derive(Debug)]
struct StopSignal {
    /// Readable once some [`Stopper::stop`] ran, and never read, so that it stays readable:
    /// stopping is permanent.
    eventfd: File,
    /// True once some [`Stopper::stop`] ran; set before the eventfd is written.
    stopped: AtomicBool,
}

impl StopSignal {
    fn is_set(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}

impl Stopper {
    /// Makes the blocked receive (if any) and every later receive return [`Received::Stopped`].
    ///
    /// Idempotent; never blocks.
    pub fn stop(&self) {
        self.stop.stopped.store(true, Ordering::Release);
        // Adds 1 to the eventfd counter; the receiver never reads it, so it stays readable.
        match (&self.stop.eventfd).write(&1u64.to_ne_bytes()) {
            Ok(_) => {}
            // The counter is at its maximum, so the eventfd is readable already.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // Cannot happen for an eventfd we own (EBADF/EINVAL); nothing sensible to do.
            Err(e) => tracing::error!("stopping the uevent socket: writing its eventfd: {e}"),
        }
    }
}

impl UeventSocket {
    /// Opens a socket with the default options (a 128 MiB receive buffer).
    pub fn open() -> Result<UeventSocket> {
        SocketOptions::new().open()
    }

    /// Opens a socket with `options`; the same as [`SocketOptions::open`].
    pub fn with_options(options: &SocketOptions) -> Result<UeventSocket> {
        let mut socket = Socket::new(NETLINK_KOBJECT_UEVENT)
            .map_err(|e| Error::io("creating the NETLINK_KOBJECT_UEVENT socket", e))?;
        // Port id 0 asks the kernel to choose one (the process id if it is free).
        socket
            .bind(&SocketAddr::new(0, KERNEL_GROUP))
            .map_err(|e| Error::io("binding the uevent socket to multicast group 1", e))?;
        let recv_buffer = set_recv_buffer(socket.as_fd(), options.recv_buffer, options.force)?;
        // Before anything can be queued that the filter would have dropped: attached right
        // after the bind, it misses at most what arrived in between, which the registry
        // ignores as it ignores any uevent of those subsystems.
        let filtered = options.subsystem_filter
            && match attach_filter(socket.as_fd(), &filter::program()) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(
                        "the kernel refused the uevent socket's subsystem filter ({e}): every \
                         uevent will be received, and those of other subsystems ignored"
                    );
                    false
                }
            };
        let stop =
            new_eventfd().map_err(|e| Error::io("creating the uevent socket's eventfd", e))?;
        let granted = recv_buffer.actual;
        // The kernel grants twice the request, after clamping it to INT_MAX / 2.
        if granted < 2 * recv_buffer.requested.min(i32::MAX as usize / 2) {
            tracing::warn!(
                requested = recv_buffer.requested,
                granted,
                "uevent socket receive buffer is smaller than asked for (no CAP_NET_ADMIN for \
                 SO_RCVBUFFORCE, and net.core.rmem_max caps SO_RCVBUF)"
            );
        } else {
            tracing::debug!(?recv_buffer, "uevent socket bound to multicast group 1");
        }
        Ok(UeventSocket {
            socket,
            stop: Arc::new(StopSignal {
                eventfd: stop,
                stopped: AtomicBool::new(false),
            }),
            recv_buffer,
            filtered,
        })
    }

    /// Whether the subsystem filter ([`SocketOptions::subsystem_filter`]) is attached: the
    /// kernel then drops the uevents that [`filter::passes`] says no to before they are
    /// queued, and they are never received.
    pub fn is_filtered(&self) -> bool {
        self.filtered
    }

    /// The receive buffer the kernel granted when the socket was opened.
    pub fn recv_buffer(&self) -> RecvBuffer {
        self.recv_buffer
    }

    /// A handle that stops receives on this socket, for another thread.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            stop: Arc::clone(&self.stop),
        }
    }

    /// Waits for the next datagram, an overflow, or a stop.
    ///
    /// The datagram is read with `MSG_TRUNC`, so a datagram longer than `buf` is reported
    /// with its full length and [`Envelope::truncated`]. `EINTR` is retried. Other errors are
    /// returned as they are (the caller names the operation).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        self.recv_until(buf, None)
    }

    /// Like [`recv`](Self::recv), but gives up with [`Received::TimedOut`] after `timeout`.
    ///
    /// A zero timeout returns a datagram that is already queued and never waits.
    pub fn recv_timeout(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Received> {
        // A timeout too large for an Instant is no timeout.
        self.recv_until(buf, Instant::now().checked_add(timeout))
    }

    /// Like [`recv`](Self::recv), but gives up with [`Received::TimedOut`] at `deadline`.
    pub fn recv_deadline(&self, buf: &mut [u8], deadline: Instant) -> io::Result<Received> {
        self.recv_until(buf, Some(deadline))
    }

    /// The one waiting loop: wait until a descriptor is ready or the deadline passes, then
    /// read; a wake-up with nothing to read goes back to waiting.
    fn recv_until(&self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<Received> {
        loop {
            match self.wait_ready(deadline)? {
                Ready::Stopped => return Ok(Received::Stopped),
                Ready::TimedOut => return Ok(Received::TimedOut),
                Ready::Again => continue,
                Ready::Readable => {
                    if let Some(received) = self.read_datagram(buf)? {
                        return Ok(received);
                    }
                }
            }
        }
    }

    /// Step 1: `poll` the eventfd and the socket until one is ready or the deadline passes.
    /// Every call polls, so a zero timeout still finds what is queued.
    fn wait_ready(&self, deadline: Option<Instant>) -> io::Result<Ready> {
        let timeout_ms = deadline.map_or(-1, |d| {
            poll_timeout_ms(d.saturating_duration_since(Instant::now()))
        });
        let mut fds = [
            pollfd(self.stop.eventfd.as_fd()),
            pollfd(self.socket.as_fd()),
        ];
        match poll(&mut fds, timeout_ms) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Ready::Again),
            Err(e) => return Err(e),
        }
        let [stop, socket] = fds;
        // A stop wins over queued datagrams, so shutdown is bounded even under a flood.
        if stop.revents != 0 {
            return Ok(Ready::Stopped);
        }
        if socket.revents != 0 {
            // Readable, or an error is pending (POLLERR is how ENOBUFS shows in poll).
            return Ok(Ready::Readable);
        }
        // Nothing ready: the deadline passed (the timeout is rounded up, so poll does not
        // return early; if it did, we simply poll again).
        match deadline {
            Some(d) if Instant::now() >= d => Ok(Ready::TimedOut),
            _ => Ok(Ready::Again),
        }
    }

    /// Step 2: read one datagram without blocking. `None` when there was nothing to read after
    /// all (another thread took the datagram, or a signal interrupted the read).
    fn read_datagram(&self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        match recv_from(
            self.socket.as_fd(),
            buf,
            libc::MSG_TRUNC | libc::MSG_DONTWAIT,
        ) {
            Ok((len, source)) => Ok(Some(Received::Datagram(Envelope {
                len,
                truncated: len > buf.len(),
                sender_port: source.nl_pid,
                groups: source.nl_groups,
            }))),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Ok(Some(Received::Overflow)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// What [`UeventSocket::wait_ready`] found.
enum Ready {
    /// The eventfd is readable: a [`Stopper`] was used.
    Stopped,
    /// The deadline passed with nothing to read.
    TimedOut,
    /// The socket has a datagram or a pending error.
    Readable,
    /// Interrupted, or woken early: wait again.
    Again,
}

impl AsFd for UeventSocket {
    /// The netlink socket, for an external event loop (the eventfd is not exposed).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl AsRawFd for UeventSocket {
    /// The netlink socket's descriptor; it stays owned by the `UeventSocket`.
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// Sets the receive buffer: `SO_RCVBUFFORCE` (if `force`), or `SO_RCVBUF` when that is not
/// permitted or not asked for.
fn set_recv_buffer(fd: BorrowedFd<'_>, requested: usize, force: bool) -> Result<RecvBuffer> {
    // The kernel clamps larger values to INT_MAX / 2 (so that doubling cannot overflow).
    let value = requested.min(i32::MAX as usize / 2) as libc::c_int;
    let forced = if force {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, value)
    } else {
        Err(io::Error::from_raw_os_error(libc::EPERM))
    };
    let option = match forced {
        Ok(()) => RecvBufferOption::RcvBufForce,
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, value).map_err(|e| {
                Error::io(
                    format!("setting SO_RCVBUF to {value} on the uevent socket"),
                    e,
                )
            })?;
            RecvBufferOption::RcvBuf
        }
        Err(e) => {
            return Err(Error::io(
                format!("setting SO_RCVBUFFORCE to {value} on the uevent socket"),
                e,
            ));
        }
    };
    let actual = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF)
        .map_err(|e| Error::io("reading SO_RCVBUF of the uevent socket", e))?;
    Ok(RecvBuffer {
        requested,
        actual: usize::try_from(actual).unwrap_or(0),
        option,
    })
}

/// `poll(2)`'s timeout for `remaining`: milliseconds rounded up, so that poll never returns
/// before the deadline, and capped at what a `c_int` holds.
fn poll_timeout_ms(remaining: Duration) -> libc::c_int {
    let ms = remaining.as_nanos().div_ceil(1_000_000);
    libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_buffer_is_udevds_128_mib() {
        assert_eq!(SocketOptions::new().recv_buffer, 128 << 20);
        assert_eq!(SocketOptions::default(), SocketOptions::new());
        assert_eq!(SocketOptions::new().recv_buffer(4096).recv_buffer, 4096);
    }

    #[test]
    fn socket_and_stopper_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<UeventSocket>();
        send_sync::<Stopper>();
    }

    #[test]
    fn poll_timeouts_round_up_and_saturate() {
        assert_eq!(poll_timeout_ms(Duration::ZERO), 0);
        assert_eq!(poll_timeout_ms(Duration::from_nanos(1)), 1);
        assert_eq!(poll_timeout_ms(Duration::from_millis(250)), 250);
        assert_eq!(poll_timeout_ms(Duration::from_micros(250_001)), 251);
        assert_eq!(poll_timeout_ms(Duration::MAX), libc::c_int::MAX);
    }

    #[test]
    fn envelope_bytes_never_exceed_the_buffer() {
        let buf = [7u8; 8];
        let short = Envelope {
            len: 3,
            truncated: false,
            sender_port: 0,
            groups: 1,
        };
        assert_eq!(short.bytes(&buf), &[7, 7, 7]);
        assert!(short.is_from_kernel());
        let long = Envelope {
            len: 100,
            truncated: true,
            sender_port: 4242,
            groups: 1,
        };
        assert_eq!(long.bytes(&buf).len(), 8);
        assert!(!long.is_from_kernel());
    }

    #[test]
    fn without_force_the_buffer_is_asked_with_so_rcvbuf_and_capped_by_rmem_max() {
        assert!(SocketOptions::new().force);
        let asked = 256 << 20;
        let socket = SocketOptions::new()
            .recv_buffer(asked)
            .force_recv_buffer(false)
            .open()
            .expect("opening a uevent socket");
        let got = socket.recv_buffer();
        assert_eq!(got.option, RecvBufferOption::RcvBuf);
        assert_eq!(got.requested, asked);
        let rmem_max = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .expect("reading net.core.rmem_max");
        let rmem_max: usize = rmem_max.trim().parse().expect("a number");
        // The kernel caps the request at rmem_max and doubles it, whoever asks.
        assert_eq!(
            got.actual,
            2 * rmem_max.min(asked).min(i32::MAX as usize / 2)
        );
    }

    // Opening and stopping need no privilege and do not depend on what the machine sends.
    #[test]
    fn stop_is_immediate_and_permanent() {
        let socket = UeventSocket::open().expect("opening a uevent socket");
        let granted = socket.recv_buffer();
        assert_eq!(granted.requested, DEFAULT_RECV_BUFFER);
        assert!(granted.actual > 0);
        if granted.option == RecvBufferOption::RcvBufForce {
            assert_eq!(granted.actual, 2 * DEFAULT_RECV_BUFFER);
        }
        let stopper = socket.stopper();
        stopper.stop();
        stopper.clone().stop();
        let mut buf = [0u8; 64];
        assert_eq!(socket.recv(&mut buf).unwrap(), Received::Stopped);
        assert_eq!(
            socket
                .recv_timeout(&mut buf, Duration::from_secs(60))
                .unwrap(),
            Received::Stopped
        );
    }
}
