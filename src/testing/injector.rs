//! Test support: [`Injector`] makes the kernel broadcast a uevent of a test's choosing.

use std::io;
use std::mem;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU32, Ordering};

use netlink_sys::protocols::NETLINK_KOBJECT_UEVENT;
use netlink_sys::{Socket, SocketAddr};

use crate::netlink::sys::recv_from;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_injector_is_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Injector>();
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
}
