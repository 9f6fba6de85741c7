//! Filling another process's anonymous memory with `UFFDIO_COPY`.
//!
//! A page written into a fresh anonymous mapping with `process_vm_writev`
//! is first faulted in, which zeroes it (`clear_page`: a quarter of a
//! 1 GiB restore), then overwritten. `UFFDIO_COPY` allocates the page
//! with its contents instead. It needs a userfaultfd of the target's
//! memory: the target makes one (a remote `userfaultfd` syscall, with
//! `UFFD_USER_MODE_ONLY` so no privilege is needed and a kernel access to
//! a missing page fails instead of waiting for us), the restorer takes a
//! duplicate with `pidfd_getfd` and works through it (the ioctls act on
//! the memory the descriptor was made for, not the caller's). Closing the
//! last descriptor unregisters every range (`userfaultfd_release`).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// The `userfaultfd` system call's number (x86_64).
pub const NR_USERFAULTFD: i64 = 323;
/// `userfaultfd` flag: only faults from user mode are handed to us.
pub const UFFD_USER_MODE_ONLY: u64 = 1;

const UFFD_API: u64 = 0xAA;
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;
const UFFDIO_COPY_MODE_DONTWAKE: u64 = 1;

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioCopy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

/// `_IOC(dir, 0xAA, nr, size)` of the userfaultfd ioctls.
const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (UFFD_API << 8) | nr
}
const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;
const UFFDIO_API: u64 = ioc(IOC_READ | IOC_WRITE, 0x3F, size_of::<UffdioApi>());
const UFFDIO_REGISTER: u64 = ioc(IOC_READ | IOC_WRITE, 0x00, size_of::<UffdioRegister>());
const UFFDIO_UNREGISTER: u64 = ioc(IOC_READ, 0x01, size_of::<UffdioRange>());
const UFFDIO_COPY: u64 = ioc(IOC_READ | IOC_WRITE, 0x03, size_of::<UffdioCopy>());

/// A userfaultfd of another process's memory, handshaken (`UFFDIO_API`).
pub struct Uffd {
    fd: OwnedFd,
}

fn ioctl<T>(fd: &OwnedFd, req: u64, arg: &mut T) -> io::Result<()> {
    // SAFETY: every request here takes a pointer to the `repr(C)` struct
    // it is given (checked by its size in the request number), which
    // lives across the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg as *mut T) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Uffd {
    /// Takes `fd`, a userfaultfd made by the target, and does the API
    /// handshake with no extra features.
    pub fn new(fd: OwnedFd) -> io::Result<Uffd> {
        let mut api = UffdioApi {
            api: UFFD_API,
            features: 0,
            ioctls: 0,
        };
        ioctl(&fd, UFFDIO_API, &mut api)?;
        Ok(Uffd { fd })
    }

    /// Registers `[start, end)` (whole anonymous private mappings) for
    /// missing-page handling, which `UFFDIO_COPY` needs.
    pub fn register(&self, start: u64, end: u64) -> io::Result<()> {
        let mut r = UffdioRegister {
            range: UffdioRange {
                start,
                len: end - start,
            },
            mode: UFFDIO_REGISTER_MODE_MISSING,
            ioctls: 0,
        };
        ioctl(&self.fd, UFFDIO_REGISTER, &mut r)
    }

    /// Unregisters `[start, end)`: ordinary faults (and `process_vm_writev`)
    /// work there again.
    pub fn unregister(&self, start: u64, end: u64) -> io::Result<()> {
        let mut r = UffdioRange {
            start,
            len: end - start,
        };
        ioctl(&self.fd, UFFDIO_UNREGISTER, &mut r)
    }

    /// Copies `data` to `dst` (page aligned, `data` a whole number of
    /// pages, all inside one registered range) as new pages. Returns how
    /// many bytes were placed; an error when none were (`EEXIST`: the
    /// first page is present already).
    pub fn copy(&self, dst: u64, data: &[u8]) -> io::Result<usize> {
        let mut c = UffdioCopy {
            dst,
            src: data.as_ptr() as u64,
            len: data.len() as u64,
            mode: UFFDIO_COPY_MODE_DONTWAKE,
            copy: 0,
        };
        // `data` is only read by the kernel, for its length.
        match ioctl(&self.fd, UFFDIO_COPY, &mut c) {
            Ok(()) => Ok(data.len()),
            Err(_) if c.copy > 0 => Ok(c.copy as usize),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_are_the_kernels() {
        // From <linux/userfaultfd.h> on x86_64.
        assert_eq!(UFFDIO_API, 0xc018_aa3f);
        assert_eq!(UFFDIO_REGISTER, 0xc020_aa00);
        assert_eq!(UFFDIO_UNREGISTER, 0x8010_aa01);
        assert_eq!(UFFDIO_COPY, 0xc028_aa03);
    }
}
