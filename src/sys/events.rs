//! The raw calls behind event descriptors: eventfd, epoll, timerfd,
//! signalfd, inotify, memfd seals, `kcmp(KCMP_EPOLL_TFD)` and
//! `open_by_handle_at`. Each returns an owned descriptor or an
//! `io::Error`; nothing here knows about images.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::ids::{Fd, Pid};

fn owned(r: libc::c_int) -> io::Result<OwnedFd> {
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this new descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `eventfd(0, flags)` with its counter then set to `count` (the
/// counter is 64-bit; `eventfd`'s initial value only 32).
pub fn eventfd(count: u64, flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes integers only.
    let fd = owned(unsafe { libc::eventfd(0, flags | libc::EFD_CLOEXEC) })?;
    if count > 0 {
        let b = count.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live local array.
        let n = unsafe { libc::write(fd.as_raw_fd(), b.as_ptr().cast(), 8) };
        if n != 8 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(fd)
}

/// `epoll_create1(EPOLL_CLOEXEC)`.
pub fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: takes a flag only.
    owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })
}

/// `epoll_ctl(epfd, EPOLL_CTL_ADD, fd, {events, data})`.
pub fn epoll_add(epfd: RawFd, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: the event is a live local the kernel only reads.
    check(unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) })
}

/// Whether file `fd` of process `a` is the target registered under
/// descriptor number `tfd` (its `toff`-th registration under that
/// number) in epoll `efd` of process `b`.
pub fn kcmp_epoll_tfd(a: Pid, fd: Fd, b: Pid, efd: Fd, tfd: i32, toff: u32) -> io::Result<bool> {
    const KCMP_EPOLL_TFD: libc::c_int = 7;
    #[repr(C)]
    struct Slot {
        efd: u32,
        tfd: u32,
        toff: u32,
    }
    let slot = Slot {
        efd: efd.as_raw() as u32,
        tfd: tfd as u32,
        toff,
    };
    // SAFETY: kcmp reads the slot, a live local of the layout it expects.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            a.as_raw(),
            b.as_raw(),
            KCMP_EPOLL_TFD,
            fd.as_raw(),
            &slot as *const Slot,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r == 0)
}

/// `timerfd_create(clock, flags | TFD_CLOEXEC)`.
pub fn timerfd_create(clock: i32, flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: takes integers only.
    owned(unsafe { libc::timerfd_create(clock, flags | libc::TFD_CLOEXEC) })
}

fn timespec(ns: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    }
}

/// `timerfd_settime` with a value and an interval in nanoseconds.
pub fn timerfd_settime(
    fd: BorrowedFd,
    flags: i32,
    value_ns: u64,
    interval_ns: u64,
) -> io::Result<()> {
    let its = libc::itimerspec {
        it_interval: timespec(interval_ns),
        it_value: timespec(value_ns),
    };
    // SAFETY: the kernel reads the live local; the old value is not asked for.
    check(unsafe { libc::timerfd_settime(fd.as_raw_fd(), flags, &its, std::ptr::null_mut()) })
}

/// `TFD_IOC_SET_TICKS`: expirations waiting to be read.
pub fn timerfd_set_ticks(fd: BorrowedFd, ticks: u64) -> io::Result<()> {
    const TFD_IOC_SET_TICKS: libc::c_ulong = 0x4008_5400;
    // SAFETY: the ioctl reads 8 bytes from the live local.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), TFD_IOC_SET_TICKS, &ticks as *const u64) })
}

/// The current time of `clock`, in nanoseconds.
pub fn clock_now_ns(clock: i32) -> io::Result<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: the kernel writes the live local.
    check(unsafe { libc::clock_gettime(clock, &mut ts) })?;
    Ok(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// `signalfd(-1, mask, flags | SFD_CLOEXEC)`; bit N-1 of `mask` is signal N.
pub fn signalfd(mask: u64, flags: i32) -> io::Result<OwnedFd> {
    // The kernel's sigset is 8 bytes on x86_64: call it directly, glibc's
    // sigset_t is larger.
    // SAFETY: the kernel reads 8 bytes from the live local.
    let r = unsafe {
        libc::syscall(
            libc::SYS_signalfd4,
            -1,
            &mask as *const u64,
            8usize,
            flags | libc::SFD_CLOEXEC,
        )
    };
    owned(r as libc::c_int)
}

/// `inotify_init1(flags | IN_CLOEXEC)`.
pub fn inotify_init(flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: takes flags only.
    owned(unsafe { libc::inotify_init1(flags | libc::IN_CLOEXEC) })
}

/// `inotify_add_watch`: the watch descriptor.
pub fn inotify_add_watch(fd: BorrowedFd, path: &CStr, mask: u32) -> io::Result<i32> {
    // SAFETY: the path is a live NUL-terminated string the kernel only reads.
    let r = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) };
    check(r)?;
    Ok(r)
}

/// `inotify_rm_watch`.
pub fn inotify_rm_watch(fd: BorrowedFd, wd: i32) -> io::Result<()> {
    // SAFETY: takes integers only.
    check(unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), wd) })
}

/// `open_by_handle_at(mount, handle, O_PATH)`: needs `CAP_DAC_READ_SEARCH`.
pub fn open_by_handle(mount: BorrowedFd, handle_type: i32, handle: &[u8]) -> io::Result<OwnedFd> {
    // struct file_handle: u32 handle_bytes, i32 handle_type, bytes.
    let mut buf = Vec::with_capacity(8 + handle.len());
    buf.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
    buf.extend_from_slice(&handle_type.to_ne_bytes());
    buf.extend_from_slice(handle);
    // Keep 4-byte alignment for the header fields.
    let mut words = vec![0u32; buf.len().div_ceil(4)];
    for (i, c) in buf.chunks(4).enumerate() {
        let mut w = [0u8; 4];
        w[..c.len()].copy_from_slice(c);
        words[i] = u32::from_ne_bytes(w);
    }
    // SAFETY: the handle is a live, aligned buffer of the length its
    // header states; the kernel only reads it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount.as_raw_fd(),
            words.as_ptr(),
            libc::O_PATH | libc::O_CLOEXEC,
        )
    };
    owned(r as libc::c_int)
}

/// `memfd_create(name, flags | MFD_CLOEXEC)`.
pub fn memfd_create(name: &CStr, flags: u32) -> io::Result<OwnedFd> {
    // SAFETY: the name is a live NUL-terminated string the kernel only reads.
    owned(unsafe { libc::memfd_create(name.as_ptr(), flags | libc::MFD_CLOEXEC) })
}

/// `F_GET_SEALS`.
pub fn get_seals(fd: BorrowedFd) -> io::Result<u32> {
    // SAFETY: takes integers only.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    check(r)?;
    Ok(r as u32)
}

/// `F_ADD_SEALS`.
pub fn add_seals(fd: BorrowedFd, seals: u32) -> io::Result<()> {
    // SAFETY: takes integers only.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals as libc::c_int) })
}

/// Gives the calling thread its own copy of the descriptor table
/// (`unshare(CLONE_FILES)`): what it then opens, closes or `dup2`s is not
/// seen by the process's other threads, while the open files themselves
/// stay shared.
pub fn unshare_files() -> io::Result<()> {
    // SAFETY: takes a flag only.
    check(unsafe { libc::unshare(libc::CLONE_FILES) })
}

/// `dup3(fd, to, O_CLOEXEC)` at exactly `to`, replacing whatever was there;
/// the caller owns the result.
pub fn dup_at(fd: RawFd, to: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: takes integers only.
    owned(unsafe { libc::dup3(fd, to, libc::O_CLOEXEC) })
}
