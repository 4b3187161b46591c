//! The kernel uevent socket: bind, receive buffer, receive, sender, stop.
//!
//! [`UeventSocket`] is a `NETLINK_KOBJECT_UEVENT` socket bound to multicast group 1, the group
//! the kernel sends uevents to (udevd re-sends processed events to group 2, which this socket
//! does not join). It does no parsing: [`UeventSocket::recv`] fills a caller's buffer and says
//! how long the datagram was, whether it was cut short, and who sent it.
//!
//! # Who sent it
//!
//! Only the kernel sends from netlink port id 0. A process with `CAP_NET_ADMIN` over the
//! network namespace can also send to group 1, and the kernel stamps such a datagram with the
//! sender's own (non-zero) port id, so [`Envelope::sender_port`] is enough to tell a forgery
//! apart; **the caller drops every datagram whose [`Envelope::is_from_kernel`] is false**.
//! `SO_PASSCRED` credentials are not needed for that: the port id is set by the kernel, not
//! the sender (udevd needs credentials only for group 2, where every sender is userspace).
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
//! by the socket. [`Stopper::stop`] makes the eventfd readable and it stays readable, so a
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
//! # Test support
//!
//! [`Injector`] (hidden from the docs) asks the kernel to broadcast a uevent, so tests can put
//! real kernel datagrams (sender port 0, kernel `SEQNUM`) on the wire without touching a
//! device. It needs `CAP_SYS_ADMIN` over the network namespace and must only be used in a
//! private one: see its documentation.
//!
//! This is the one module of the crate that calls into libc; each `unsafe` block says why it
//! is sound.
#![allow(unsafe_code)]

use std::fs::File;
use std::io::{self, Write};
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use netlink_sys::protocols::NETLINK_KOBJECT_UEVENT;
use netlink_sys::{Socket, SocketAddr};

use crate::error::{Error, Result};

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
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            recv_buffer: DEFAULT_RECV_BUFFER,
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

    /// Opens the socket, binds it to the kernel's uevent group and sets the receive buffer.
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
    /// `SO_RCVBUF`, after `SO_RCVBUFFORCE` was refused with `EPERM`: the request was capped by
    /// `net.core.rmem_max`.
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
    /// An eventfd that is readable once some [`Stopper::stop`] ran, and never read, so that
    /// it stays readable: stopping is permanent.
    stop: Arc<File>,
    /// What the kernel granted when the socket was opened.
    recv_buffer: RecvBuffer,
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
        self.sender_port == 0
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
    /// The socket's eventfd (see the `stop` field of [`UeventSocket`]).
    stop: Arc<File>,
}

impl Stopper {
    /// Makes the blocked receive (if any) and every later receive return [`Received::Stopped`].
    ///
    /// Idempotent; never blocks.
    pub fn stop(&self) {
        // Adds 1 to the eventfd counter; the receiver never reads it, so it stays readable.
        match (&*self.stop).write(&1u64.to_ne_bytes()) {
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
        let recv_buffer = set_recv_buffer(socket.as_fd(), options.recv_buffer)?;
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
            stop: Arc::new(stop),
            recv_buffer,
        })
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

    /// The one waiting loop: poll both descriptors until the deadline, then read.
    fn recv_until(&self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<Received> {
        loop {
            // 1. Wait until the socket or the eventfd is ready, or the deadline passes. The
            //    first pass always polls, so a zero timeout still reads what is queued.
            let timeout_ms = deadline.map_or(-1, |d| {
                poll_timeout_ms(d.saturating_duration_since(Instant::now()))
            });
            let mut fds = [pollfd(self.stop.as_fd()), pollfd(self.socket.as_fd())];
            match poll(&mut fds, timeout_ms) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let [stop, socket] = fds;
            // 2. A stop wins over queued datagrams, so shutdown is bounded even under a flood.
            if stop.revents != 0 {
                return Ok(Received::Stopped);
            }
            // 3. Nothing ready: the deadline passed (the timeout is rounded up, so poll does
            //    not return early; if it did, we would simply poll again).
            if socket.revents == 0 {
                match deadline {
                    Some(d) if Instant::now() >= d => return Ok(Received::TimedOut),
                    _ => continue,
                }
            }
            // 4. Readable, or an error is pending (POLLERR is how ENOBUFS shows in poll). Read
            //    without blocking: if someone else took the datagram, go back to waiting.
            match recv_from(
                self.socket.as_fd(),
                buf,
                libc::MSG_TRUNC | libc::MSG_DONTWAIT,
            ) {
                Ok((len, source)) => {
                    return Ok(Received::Datagram(Envelope {
                        len,
                        truncated: len > buf.len(),
                        sender_port: source.nl_pid,
                        groups: source.nl_groups,
                    }));
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Ok(Received::Overflow),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }
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

/// Test support: makes the kernel broadcast a uevent of your choosing.
///
/// The kernel (`lib/kobject_uevent.c`, `uevent_net_rcv_skb`, Linux >= 4.18) accepts a
/// netlink request sent to port 0 on `NETLINK_KOBJECT_UEVENT`, appends `SEQNUM=<n>\0` (the
/// next value of the machine-wide uevent counter, `/sys/kernel/uevent_seqnum`), and
/// broadcasts the result to group 1 **of the sender's network namespace**, from port 0: for
/// every listener it is indistinguishable from a real uevent.
///
/// What the kernel checks, and nothing more:
/// * the message is a request (`NLM_F_REQUEST`) of type >= `NLMSG_MIN_TYPE` (0x10); other
///   messages are skipped silently (and acknowledged as a success). [`inject`](Self::inject)
///   always sends type 0x10 with `NLM_F_REQUEST | NLM_F_ACK`;
/// * the sender has `CAP_SYS_ADMIN` in the user namespace that owns the network namespace,
///   else `EPERM`;
/// * the 16-byte netlink header, the payload and the `SEQNUM=<n>\0` it appends fit in 2048
///   bytes (`UEVENT_BUFFER_SIZE`), else `EINVAL`.
///
/// The payload itself is **not** validated: not the `ACTION@DEVPATH` header, not `ACTION=`,
/// `DEVPATH=` or `SUBSYSTEM=`, not a `SEQNUM=` already present (the kernel adds a second one).
/// So a test can also inject malformed datagrams. A well-formed payload is
/// `ACTION@DEVPATH\0ACTION=..\0DEVPATH=..\0SUBSYSTEM=..\0` with no `SEQNUM`, ending in NUL
/// (the kernel appends `SEQNUM=` right after the last byte).
///
/// **Use it only in a private network namespace** (`unshare --user --map-root-user --net`):
/// in the initial one, udevd and every other listener on the machine would act on the event.
/// A network namespace owned by a new user namespace also does not receive the machine's
/// real uevents (the kernel sends those only to namespaces owned by the initial user
/// namespace), so the test sees only what it injects.
#[doc(hidden)]
#[derive(Debug)]
pub struct Injector {
    /// Bound to a kernel-chosen port and no group: it receives only the kernel's acks.
    socket: Socket,
    /// Sequence number of the next request, to match its ack.
    next_seq: AtomicU32,
}

impl Injector {
    /// Opens the socket the requests go out on (no privilege needed until [`inject`](Self::inject)).
    pub fn new() -> io::Result<Injector> {
        let mut socket = Socket::new(NETLINK_KOBJECT_UEVENT)?;
        socket.bind_auto()?;
        Ok(Injector {
            socket,
            next_seq: AtomicU32::new(1),
        })
    }

    /// Asks the kernel to broadcast `payload` + `SEQNUM=<n>\0` as a uevent, and waits for its
    /// answer.
    ///
    /// When this returns `Ok`, the datagram is already queued on every listening socket of the
    /// namespace (the kernel handles the request synchronously, before acknowledging it), or
    /// was dropped for a listener whose buffer was full. Errors: `EPERM` without
    /// `CAP_SYS_ADMIN` over the namespace, `EINVAL` when the uevent would exceed 2048 bytes.
    pub fn inject(&self, payload: &[u8]) -> io::Result<()> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let request = uevent_request(payload, seq)?;
        let sent = self.socket.send_to(&request, &SocketAddr::new(0, 0), 0)?;
        if sent != request.len() {
            return Err(io::Error::other(format!(
                "sent {sent} of {} bytes of the uevent request",
                request.len()
            )));
        }
        // The kernel processed the request inside sendto, so its ack is queued already; do not
        // wait for it (an ack that never comes must not hang a test).
        let mut ack = [0u8; 4096];
        loop {
            let (len, source) = recv_from(self.socket.as_fd(), &mut ack, libc::MSG_DONTWAIT)
                .map_err(|e| {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        io::Error::other("the kernel did not acknowledge the uevent request")
                    } else {
                        e
                    }
                })?;
            if source.nl_pid != 0 {
                continue;
            }
            match parse_ack(&ack[..len.min(ack.len())], seq) {
                Some(0) => return Ok(()),
                Some(errno) => return Err(io::Error::from_raw_os_error(errno)),
                None => continue,
            }
        }
    }
}

/// Builds the netlink request that asks the kernel to broadcast `payload` as a uevent.
fn uevent_request(payload: &[u8], seq: u32) -> io::Result<Vec<u8>> {
    const HEADER: usize = mem::size_of::<libc::nlmsghdr>();
    let len = u32::try_from(HEADER + payload.len())
        .map_err(|_| io::Error::from_raw_os_error(libc::EMSGSIZE))?;
    let mut request = Vec::with_capacity(HEADER + payload.len());
    // struct nlmsghdr { u32 len; u16 type; u16 flags; u32 seq; u32 pid }, native endian.
    request.extend_from_slice(&len.to_ne_bytes());
    request.extend_from_slice(&(libc::NLMSG_MIN_TYPE as u16).to_ne_bytes());
    request.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    request.extend_from_slice(&seq.to_ne_bytes());
    request.extend_from_slice(&0u32.to_ne_bytes());
    request.extend_from_slice(payload);
    Ok(request)
}

/// The errno (0 for success) of the kernel's `NLMSG_ERROR` answer to request `seq`, if
/// `reply` is one.
fn parse_ack(reply: &[u8], seq: u32) -> Option<i32> {
    let u16_at = |i: usize| Some(u16::from_ne_bytes(reply.get(i..i + 2)?.try_into().ok()?));
    let u32_at = |i: usize| Some(u32::from_ne_bytes(reply.get(i..i + 4)?.try_into().ok()?));
    // nlmsghdr, then struct nlmsgerr { int error; struct nlmsghdr msg; ... }.
    if i32::from(u16_at(4)?) != libc::NLMSG_ERROR || u32_at(8)? != seq {
        return None;
    }
    let error = u32_at(16)? as i32;
    Some(error.checked_neg().unwrap_or(i32::MAX))
}

/// Sets the receive buffer: `SO_RCVBUFFORCE`, or `SO_RCVBUF` when that is not permitted.
fn set_recv_buffer(fd: BorrowedFd<'_>, requested: usize) -> Result<RecvBuffer> {
    // The kernel clamps larger values to INT_MAX / 2 (so that doubling cannot overflow).
    let value = requested.min(i32::MAX as usize / 2) as libc::c_int;
    let option = match setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, value) {
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

fn pollfd(fd: BorrowedFd<'_>) -> libc::pollfd {
    libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }
}

/// `poll(2)` on descriptors borrowed by the caller for the duration of the call.
fn poll(fds: &mut [libc::pollfd], timeout_ms: libc::c_int) -> io::Result<usize> {
    // SAFETY: `fds` is a valid, writable array of `fds.len()` pollfd structs for the whole
    // call, and the kernel writes only their `revents` fields. The descriptors in it come
    // from `BorrowedFd`s of the caller, so they are open.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// `recvfrom(2)` on a netlink socket: the returned length (the datagram's full length with
/// `MSG_TRUNC`) and the source address.
fn recv_from(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: libc::c_int,
) -> io::Result<(usize, libc::sockaddr_nl)> {
    // SAFETY: sockaddr_nl is plain old data (integers only), for which all-zero is valid.
    let mut source: libc::sockaddr_nl = unsafe { mem::zeroed() };
    // A socklen_t, not a usize cast to one: the kernel reads and writes exactly 4 bytes here.
    let mut source_len = mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes and the kernel writes at most that
    // many (MSG_TRUNC changes only the return value); `source` and `source_len` are live
    // locals whose sizes match what is passed; `fd` is borrowed, hence open, for the call.
    let n = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags,
            (&raw mut source).cast(),
            &mut source_len,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // An unfilled address would read as port 0, the kernel: refuse rather than believe it.
    if source_len as usize != mem::size_of::<libc::sockaddr_nl>()
        || i32::from(source.nl_family) != libc::AF_NETLINK
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "recvfrom returned a {source_len}-byte source address of family {}, not a netlink one",
                source.nl_family
            ),
        ));
    }
    Ok((n as usize, source))
}

fn setsockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value points to a live c_int and its true size is passed; the kernel
    // only reads it. `fd` is borrowed, hence open, for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn getsockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live locals, `len` holds the size of `value`, and the kernel
    // writes at most `len` bytes to it. `fd` is borrowed, hence open, for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != mem::size_of::<libc::c_int>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("getsockopt returned {len} bytes for an int option"),
        ));
    }
    Ok(value)
}

/// A non-blocking, close-on-exec eventfd with a zero counter.
fn new_eventfd() -> io::Result<File> {
    // SAFETY: eventfd takes no pointers; it returns a new descriptor or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by eventfd, is open, and nothing else owns it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
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
        send_sync::<Injector>();
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
    fn uevent_request_is_a_type_0x10_request_with_ack() {
        let r = uevent_request(b"add@/x\0", 9).unwrap();
        assert_eq!(r.len(), 16 + 7);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 23);
        assert_eq!(u16::from_ne_bytes(r[4..6].try_into().unwrap()), 0x10);
        assert_eq!(u16::from_ne_bytes(r[6..8].try_into().unwrap()), 0x1 | 0x4);
        assert_eq!(u32::from_ne_bytes(r[8..12].try_into().unwrap()), 9);
        assert_eq!(&r[16..], b"add@/x\0");
    }

    fn ack(seq: u32, error: i32) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&36u32.to_ne_bytes());
        a.extend_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        a.extend_from_slice(&0u16.to_ne_bytes());
        a.extend_from_slice(&seq.to_ne_bytes());
        a.extend_from_slice(&1234u32.to_ne_bytes());
        a.extend_from_slice(&error.to_ne_bytes());
        a.extend_from_slice(&[0u8; 16]);
        a
    }

    #[test]
    fn acks_give_the_errno_of_the_matching_request() {
        assert_eq!(parse_ack(&ack(5, 0), 5), Some(0));
        assert_eq!(parse_ack(&ack(5, -libc::EPERM), 5), Some(libc::EPERM));
        assert_eq!(parse_ack(&ack(5, -libc::EINVAL), 6), None);
        assert_eq!(parse_ack(&ack(5, 0)[..18], 5), None);
        let mut not_error = ack(5, 0);
        not_error[4] = 0x10;
        assert_eq!(parse_ack(&not_error, 5), None);
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
