//! The crate's system calls: the socket's (`poll`, `recvfrom`, `recvmmsg`,
//! `setsockopt`/`getsockopt`, `eventfd`), the sysfs scan's directory opens and
//! directory-relative reads (`openat2`, `openat`), and the rescan thread's lower priority
//! (`getpriority`/`setpriority`).
//!
//! The one module of the crate allowed `unsafe`; every block says why it is sound. Each
//! function is a safe wrapper that borrows its descriptors for the call, and a new
//! descriptor goes into an owning type at once.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub(crate) fn pollfd(fd: BorrowedFd<'_>) -> libc::pollfd {
    libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }
}

/// `poll(2)` on descriptors borrowed by the caller for the duration of the call.
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout_ms: libc::c_int) -> io::Result<usize> {
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
pub(crate) fn recv_from(
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

pub(crate) fn setsockopt_int(
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

/// Attaches a classic BPF socket filter (`SO_ATTACH_FILTER`); the kernel checks the program
/// (jumps in range, a return at the end, scratch memory written before read) and refuses it
/// with `EINVAL` otherwise.
pub(crate) fn attach_filter(fd: BorrowedFd<'_>, program: &[libc::sock_filter]) -> io::Result<()> {
    let len = u16::try_from(program.len()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a socket filter of {} instructions", program.len()),
        )
    })?;
    let prog = libc::sock_fprog {
        len,
        // The kernel only reads the program (it copies it in).
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` is a live sock_fprog whose `filter` points to `len` initialized
    // sock_filter structs borrowed for the call; its true size is passed, and the kernel
    // copies the program before returning. `fd` is borrowed, hence open, for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&raw const prog).cast(),
            mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(crate) fn getsockopt_int(
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
pub(crate) fn new_eventfd() -> io::Result<File> {
    // SAFETY: eventfd takes no pointers; it returns a new descriptor or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by eventfd, is open, and nothing else owns it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// `openat(2)`: opens `name`, relative to the directory `dir` (borrowed for the call), with
/// `flags` plus `O_CLOEXEC`. The sysfs scan reads a device's attributes this way, relative to
/// the one directory it opened, so that a device replugged under the same path meanwhile
/// cannot mix its attributes with the old one's.
pub(crate) fn open_at(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<File> {
    // SAFETY: `name` is a NUL-terminated string that lives for the call; `dir` is borrowed,
    // hence open, for the call; openat takes no other pointer and returns a new descriptor or -1.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by openat, is open, and nothing else owns it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The kernel's `struct open_how` as of Linux 5.6 (`OPEN_HOW_SIZE_VER0`, 24 bytes), written
/// here because libc's cannot be built field by field.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `openat2(2)`: opens the directory at the absolute `path`, resolving no symlink anywhere on
/// the way (`RESOLVE_NO_SYMLINKS`, magic links included): one that is there fails with
/// `ELOOP` (`ENOTDIR` if it is the last component). So the path the directory was found at is
/// its canonical path, `.` and `..` aside, without reading each component as `realpath` does.
/// The handle is an `O_PATH` one (close-on-exec), which is all that reading relative to it
/// (`openat`) and `fstat` need. `ENOSYS` before Linux 5.6 (or where a seccomp
/// filter refuses it), `EPERM` under some filters.
pub(crate) fn open_dir_without_symlinks(path: &Path) -> io::Result<File> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a path"))?;
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_NO_SYMLINKS,
    };
    // SAFETY: `path` is a NUL-terminated string and `how` an `OpenHow` of the size passed,
    // both living for the call, which reads them only; openat2 returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            path.as_ptr(),
            &how as *const OpenHow,
            mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(fd).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidData, "openat2 returned no descriptor")
    })?;
    // SAFETY: `fd` was just returned by openat2, is open, and nothing else owns it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The message headers of a `recvmmsg(2)` call, kept between calls so that a batched receive
/// allocates nothing. Their pointers are written afresh by every [`recv_mmsg`] from the slices
/// it borrows for the call, and never read by anything else.
#[derive(Debug, Default)]
pub(crate) struct MmsgHeaders {
    headers: Vec<libc::mmsghdr>,
    iovecs: Vec<libc::iovec>,
    sources: Vec<libc::sockaddr_nl>,
}

// SAFETY: the raw pointers inside `headers` and `iovecs` are written by `recv_mmsg` from slices
// it borrows for the duration of one call, used by the kernel during that call only, and
// never dereferenced afterwards; between calls they are dead values, so moving or sharing the
// struct across threads cannot make anything reach through them.
unsafe impl Send for MmsgHeaders {}
// SAFETY: as for `Send`: `&MmsgHeaders` gives no access through the stale pointers.
unsafe impl Sync for MmsgHeaders {}

/// What `recv_mmsg` read into one slot: the length the kernel reported (the datagram's full
/// length with `MSG_TRUNC`) and the source address.
pub(crate) type MmsgEntry = (usize, libc::sockaddr_nl);

/// `recvmmsg(2)` on a netlink socket, without a timeout: up to `storage.len() / slot_len`
/// datagrams, the `i`th written to `storage[i * slot_len..][..slot_len]`, their lengths and
/// sources pushed to `out` (cleared first). With `MSG_TRUNC` in `flags` each length is the
/// datagram's full one. Returns the number of datagrams; an error when the first receive
/// failed (an error after the first ends the batch, and the kernel keeps it for the next call).
pub(crate) fn recv_mmsg(
    fd: BorrowedFd<'_>,
    storage: &mut [u8],
    slot_len: usize,
    headers: &mut MmsgHeaders,
    out: &mut Vec<MmsgEntry>,
    flags: libc::c_int,
) -> io::Result<usize> {
    out.clear();
    // recvmmsg takes at most UIO_MAXIOV (1024) headers.
    let slots = storage.len().checked_div(slot_len).unwrap_or(0).min(1024);
    if slots == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "recvmmsg needs room for at least one datagram",
        ));
    }
    let MmsgHeaders {
        headers,
        iovecs,
        sources,
    } = headers;
    iovecs.clear();
    iovecs.extend(
        storage
            .chunks_exact_mut(slot_len)
            .take(slots)
            .map(|slot| libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: slot.len(),
            }),
    );
    // SAFETY: sockaddr_nl is plain old data (integers only), for which all-zero is valid.
    sources.resize(slots, unsafe { mem::zeroed() });
    headers.clear();
    for (iov, source) in iovecs.iter_mut().zip(sources.iter_mut()) {
        // SAFETY: mmsghdr is plain old data (integers and raw pointers), for which all-zero
        // (null pointers, zero lengths) is valid; every field the call reads is set below.
        let mut h: libc::mmsghdr = unsafe { mem::zeroed() };
        h.msg_hdr.msg_name = (source as *mut libc::sockaddr_nl).cast();
        h.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        h.msg_hdr.msg_iov = iov;
        h.msg_hdr.msg_iovlen = 1;
        headers.push(h);
    }
    // SAFETY: `headers` holds `slots` initialized mmsghdrs; each points to one iovec in
    // `iovecs` (live for the call) whose base and length are a disjoint chunk of `storage`,
    // valid for writes for the call (the kernel writes at most `iov_len` bytes to each;
    // MSG_TRUNC changes only the reported length), and to one sockaddr_nl in `sources` of the
    // size given in msg_namelen; there is no control buffer. The timeout pointer is null (no
    // timeout). `fd` is borrowed, hence open, for the call.
    let n = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            headers.as_mut_ptr(),
            slots as _,
            flags as _,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    for (h, source) in headers.iter().zip(sources.iter()).take(n) {
        // An unfilled address would read as port 0, the kernel: refuse rather than believe it.
        if h.msg_hdr.msg_namelen as usize != mem::size_of::<libc::sockaddr_nl>()
            || i32::from(source.nl_family) != libc::AF_NETLINK
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "recvmmsg returned a {}-byte source address of family {}, not a netlink one",
                    h.msg_hdr.msg_namelen, source.nl_family
                ),
            ));
        }
        out.push((h.msg_len as usize, *source));
    }
    Ok(n)
}

/// Lowers the calling thread's scheduling priority: its nice value goes up by `by`, to 19 at
/// most (Linux keeps a nice value per thread; `who` 0 is the calling one). Lowering needs no
/// privilege.
pub(crate) fn lower_thread_priority(by: libc::c_int) -> io::Result<()> {
    // getpriority returns the nice value, which may be -1: errno tells an error apart.
    // SAFETY: __errno_location returns this thread's errno, valid for writes.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: getpriority takes no pointers.
    let now = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    if now == -1 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(0) {
            return Err(e);
        }
    }
    let nice = now.saturating_add(by).min(19);
    // SAFETY: setpriority takes no pointers.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_lowers_its_own_priority_only() {
        // SAFETY: getpriority takes no pointers (a nice value of -1 is not expected here).
        let here = || unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let before = here();
        let (then, after) = std::thread::spawn(move || {
            let then = here();
            lower_thread_priority(5).unwrap();
            (then, here())
        })
        .join()
        .unwrap();
        assert_eq!(after, (then + 5).min(19));
        assert_eq!(here(), before, "the other threads keep theirs");
    }
}
