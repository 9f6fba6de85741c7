//! POSIX message queues (`mq_overview(7)`) by their raw syscalls: open
//! and create by name (in the caller's IPC namespace, whatever is mounted
//! on `/dev/mqueue`), attributes, sending and receiving without waiting,
//! unlinking. A message queue descriptor is a file descriptor; one opened
//! through `/proc/PID/fd/N` works too. Nothing here knows about images.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// A queue's attributes (`struct mq_attr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attr {
    /// `O_NONBLOCK` or 0: of the open description, not the queue.
    pub flags: i64,
    pub maxmsg: i64,
    pub msgsize: i64,
    pub curmsgs: i64,
}

fn raw_attr(a: &Attr) -> libc::mq_attr {
    // SAFETY: mq_attr is plain integers; all-zero is a valid value.
    let mut r: libc::mq_attr = unsafe { std::mem::zeroed() };
    r.mq_flags = a.flags;
    r.mq_maxmsg = a.maxmsg;
    r.mq_msgsize = a.msgsize;
    r.mq_curmsgs = a.curmsgs;
    r
}

/// `mq_open(name, oflag, mode, attr)`: `name` without its leading `/`;
/// `attr` (maxmsg, msgsize) only with `O_CREAT`. Close-on-exec.
pub fn open(name: &CStr, oflag: i32, mode: u32, attr: Option<&Attr>) -> io::Result<OwnedFd> {
    let raw = attr.map(raw_attr);
    let ptr = raw
        .as_ref()
        .map_or(std::ptr::null(), |r| r as *const libc::mq_attr);
    // SAFETY: the name is a live NUL-terminated string and the attributes
    // a live local (or null), both only read by the kernel.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mq_open,
            name.as_ptr(),
            oflag | libc::O_CLOEXEC,
            mode as libc::c_uint,
            ptr,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this new descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// `mq_unlink(name)`, `name` without its leading `/`.
pub fn unlink(name: &CStr) -> io::Result<()> {
    // SAFETY: the name is a live NUL-terminated string the kernel only reads.
    let r = unsafe { libc::syscall(libc::SYS_mq_unlink, name.as_ptr()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `mq_getattr(fd)`.
pub fn getattr(fd: BorrowedFd) -> io::Result<Attr> {
    // SAFETY: mq_attr is plain integers; all-zero is a valid value.
    let mut r: libc::mq_attr = unsafe { std::mem::zeroed() };
    // SAFETY: `r` is a live local the kernel fills; no new attributes.
    let n = unsafe {
        libc::syscall(
            libc::SYS_mq_getsetattr,
            fd.as_raw_fd(),
            std::ptr::null::<libc::mq_attr>(),
            &mut r as *mut libc::mq_attr,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Attr {
        flags: r.mq_flags,
        maxmsg: r.mq_maxmsg,
        msgsize: r.mq_msgsize,
        curmsgs: r.mq_curmsgs,
    })
}

/// An absolute `CLOCK_REALTIME` time already past: a send or receive
/// that would wait fails at once with `ETIMEDOUT`, whatever the
/// description's `O_NONBLOCK`.
const PAST: libc::timespec = libc::timespec {
    tv_sec: 0,
    tv_nsec: 0,
};

/// `mq_timedreceive` without waiting: the next message (the highest
/// priority first, in order of arrival within one) and its priority,
/// `None` when the queue is empty. `buf` must hold `msgsize` bytes.
pub fn receive_now(fd: BorrowedFd, buf: &mut [u8]) -> io::Result<Option<(u32, usize)>> {
    let mut prio: libc::c_uint = 0;
    // SAFETY: the kernel writes at most `buf.len()` bytes into the live
    // buffer and the priority into a live local; the timeout is only read.
    let n = unsafe {
        libc::syscall(
            libc::SYS_mq_timedreceive,
            fd.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
            &mut prio as *mut libc::c_uint,
            &PAST as *const libc::timespec,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ETIMEDOUT) | Some(libc::EAGAIN) => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some((prio, n as usize)))
}

/// `mq_timedsend` of one message with priority `prio`, without waiting
/// (a full queue is `ETIMEDOUT` or `EAGAIN`).
pub fn send_now(fd: BorrowedFd, data: &[u8], prio: u32) -> io::Result<()> {
    // SAFETY: the kernel reads `data.len()` bytes of the live slice and
    // the timeout; nothing is written.
    let n = unsafe {
        libc::syscall(
            libc::SYS_mq_timedsend,
            fd.as_raw_fd(),
            data.as_ptr(),
            data.len(),
            prio as libc::c_uint,
            &PAST as *const libc::timespec,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Takes every message out of the queue, in the order receivers would get
/// them: `(priority, bytes)`.
pub fn drain(fd: BorrowedFd, msgsize: usize) -> io::Result<Vec<(u32, Vec<u8>)>> {
    let mut buf = vec![0u8; msgsize.max(1)];
    let mut out = Vec::new();
    while let Some((prio, n)) = receive_now(fd, &mut buf)? {
        out.push((prio, buf[..n].to_vec()));
    }
    Ok(out)
}

/// Sends messages in order, without waiting. Returns how many went in
/// before the first failure, with it.
pub fn refill(fd: BorrowedFd, msgs: &[(u32, Vec<u8>)]) -> Result<(), (usize, io::Error)> {
    for (i, (prio, data)) in msgs.iter().enumerate() {
        send_now(fd, data, *prio).map_err(|e| (i, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// A queue of this process's own: messages come out highest priority
    /// first, then in order, and go back in the same order.
    #[test]
    fn drain_and_refill_keep_the_order() {
        let name = format!("crtools-unit-{}\0", std::process::id());
        let name = CStr::from_bytes_with_nul(name.as_bytes()).unwrap();
        let attr = Attr {
            maxmsg: 8,
            msgsize: 16,
            ..Default::default()
        };
        let q = match open(
            name,
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            0o600,
            Some(&attr),
        ) {
            Ok(q) => q,
            // No mqueue support here: nothing to test.
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => return,
            Err(e) => panic!("mq_open: {e}"),
        };
        unlink(name).unwrap();
        let sent = [
            (1, b"a".to_vec()),
            (5, b"b".to_vec()),
            (1, b"c".to_vec()),
            (5, b"d".to_vec()),
        ];
        refill(q.as_fd(), &sent).unwrap();
        let a = getattr(q.as_fd()).unwrap();
        assert_eq!((a.maxmsg, a.msgsize, a.curmsgs), (8, 16, 4));
        let got = drain(q.as_fd(), 16).unwrap();
        let want = vec![
            (5, b"b".to_vec()),
            (5, b"d".to_vec()),
            (1, b"a".to_vec()),
            (1, b"c".to_vec()),
        ];
        assert_eq!(got, want);
        assert_eq!(getattr(q.as_fd()).unwrap().curmsgs, 0);
        refill(q.as_fd(), &got).unwrap();
        assert_eq!(drain(q.as_fd(), 16).unwrap(), want);
    }
}
