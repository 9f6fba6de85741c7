//! Per-process and per-thread calls nix lacks: `kcmp`,
//! `get_robust_list`, `getrandom`, and the descriptor calls a checkpoint
//! uses to look at pipes and sockets without consuming their data.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::ids::{Fd, Pid, Tid};

/// What `kcmp` compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kcmp {
    /// The open file descriptions behind a descriptor of each process.
    File(Fd, Fd),
    /// The address spaces.
    Vm,
}

/// Whether two processes share the kernel object `what` names.
pub fn kcmp(a: Pid, b: Pid, what: Kcmp) -> io::Result<bool> {
    const KCMP_FILE: libc::c_int = 0;
    const KCMP_VM: libc::c_int = 1;
    let (kind, x, y) = match what {
        Kcmp::File(x, y) => (KCMP_FILE, x.as_raw(), y.as_raw()),
        Kcmp::Vm => (KCMP_VM, 0, 0),
    };
    // SAFETY: kcmp compares kernel objects by integer ids; no memory is passed.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, a.as_raw(), b.as_raw(), kind, x, y) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r == 0)
}

/// A thread's robust futex list: `(head, length)`.
pub fn robust_list(tid: Tid) -> io::Result<(u64, u64)> {
    let mut head: u64 = 0;
    let mut len: usize = 0;
    // SAFETY: get_robust_list writes a pointer and a length into the live locals.
    let r = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            tid.as_raw(),
            &mut head as *mut u64,
            &mut len as *mut usize,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((head, len as u64))
}

/// Fills `buf` from the kernel's random source; false if it could not.
pub fn getrandom(buf: &mut [u8]) -> bool {
    // SAFETY: getrandom writes at most buf.len() bytes into the live buffer.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    n == buf.len() as isize
}

/// Sets glibc's malloc thresholds: blocks from `mmap_bytes` up are mapped
/// on their own, and the heap is trimmed only when `trim_bytes` are free at
/// its top. Nothing elsewhere (another libc).
pub fn malloc_thresholds(mmap_bytes: i32, trim_bytes: i32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters (under malloc's own
    // lock); a failure is harmless.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, mmap_bytes);
        libc::mallopt(libc::M_TRIM_THRESHOLD, trim_bytes);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = (mmap_bytes, trim_bytes);
}

/// Seconds since the epoch as local time, `YYYY-MM-DD HH:MM:SS +hhmm`;
/// `None` when the C library cannot convert it.
pub fn local_time(secs: u64) -> Option<String> {
    let t = secs.min(i64::MAX as u64) as libc::time_t;
    // SAFETY: localtime_r and strftime write only into the given buffers,
    // whose sizes are passed; an all-zero tm is valid plain data.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return None;
        }
        let mut buf = [0u8; 64];
        let n = libc::strftime(
            buf.as_mut_ptr().cast(),
            buf.len(),
            c"%Y-%m-%d %H:%M:%S %z".as_ptr(),
            &tm,
        );
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

/// How many bytes are waiting to be read (`FIONREAD`).
pub fn readable_bytes(fd: BorrowedFd) -> io::Result<usize> {
    let mut avail: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into the live `avail`.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut avail) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(avail.max(0) as usize)
}

/// The events descriptor `fd` reports now (`poll` without waiting):
/// `POLLERR` and `POLLHUP` are always among those asked for.
pub fn poll_now(fd: BorrowedFd) -> io::Result<i16> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN | PollFlags::POLLOUT)];
    poll(&mut fds, PollTimeout::ZERO)?;
    Ok(fds[0].revents().map_or(0, |r| r.bits()))
}

/// `tee`: copies up to `len` bytes from pipe `from` into pipe `to` without
/// consuming them, never blocking.
pub fn tee_nonblock(from: BorrowedFd, to: BorrowedFd, len: usize) -> io::Result<usize> {
    // SAFETY: tee between two pipe descriptors the caller holds; no memory
    // is passed.
    let n = unsafe {
        libc::tee(
            from.as_raw_fd(),
            to.as_raw_fd(),
            len,
            libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// `SO_PEEK_OFF`: where the next `MSG_PEEK` reads from (`-1`: peeking
/// always starts at the head, the default).
pub fn set_peek_off(sock: BorrowedFd, off: i32) -> io::Result<()> {
    // SAFETY: setsockopt reads one live int.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEEK_OFF,
            (&off as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The next message of a socket's receive queue, peeked without being
/// consumed and without blocking (`WouldBlock` when the queue is empty).
pub fn recv_peek(sock: BorrowedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: recv writes at most buf.len() bytes into the live buffer.
    let n = unsafe {
        libc::recv(
            sock.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    #[test]
    fn kcmp_robust_list_and_getrandom_of_this_process() {
        let me = Pid::this();
        assert!(kcmp(me, me, Kcmp::Vm).unwrap());
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        let fd = Fd::from_raw(f.as_raw_fd());
        let dup = f.try_clone().unwrap();
        let other = std::fs::File::open("/proc/self/stat").unwrap();
        assert!(kcmp(me, me, Kcmp::File(fd, Fd::from_raw(dup.as_raw_fd()))).unwrap());
        assert!(!kcmp(me, me, Kcmp::File(fd, Fd::from_raw(other.as_raw_fd()))).unwrap());
        let (head, len) = robust_list(me.main_thread()).unwrap();
        assert!(head != 0 && len > 0, "glibc registers a robust list");
        let mut b = [0u8; 32];
        assert!(getrandom(&mut b));
    }

    #[test]
    fn pipes_and_sockets_are_peeked_not_consumed() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut w = std::fs::File::from(w);
        w.write_all(b"hello").unwrap();
        assert_eq!(readable_bytes(r.as_fd()).unwrap(), 5);
        let (r2, w2) = nix::unistd::pipe().unwrap();
        assert_eq!(tee_nonblock(r.as_fd(), w2.as_fd(), 5).unwrap(), 5);
        assert_eq!(readable_bytes(r.as_fd()).unwrap(), 5);
        assert_eq!(readable_bytes(r2.as_fd()).unwrap(), 5);

        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        (&a).write_all(b"abc").unwrap();
        set_peek_off(b.as_fd(), 0).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(recv_peek(b.as_fd(), &mut buf).unwrap(), 3);
        // With a peek offset, the next peek goes on after what was seen.
        assert_eq!(
            recv_peek(b.as_fd(), &mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        set_peek_off(b.as_fd(), -1).unwrap();
        assert_eq!(recv_peek(b.as_fd(), &mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"abc");
    }
}
