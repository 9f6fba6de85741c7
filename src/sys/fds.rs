//! Descriptors as owned values: the calls whose nix 0.29 versions return
//! a bare integer, wrapped so the new descriptor is an `OwnedFd` at once.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::NixPath;
use nix::fcntl::{FcntlArg, OFlag};
use nix::sys::stat::Mode;

/// `open(2)`.
pub fn open<P: ?Sized + NixPath>(path: &P, flags: OFlag, mode: Mode) -> nix::Result<OwnedFd> {
    let raw = nix::fcntl::open(path, flags, mode)?;
    // SAFETY: open just returned this descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A new descriptor for whatever our descriptor number `fd` refers to.
pub fn dup(fd: RawFd) -> nix::Result<OwnedFd> {
    let raw = nix::unistd::dup(fd)?;
    // SAFETY: dup just returned this descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A close-on-exec duplicate of `fd` numbered `base` or above.
pub fn dup_above(fd: RawFd, base: RawFd) -> nix::Result<OwnedFd> {
    let raw = nix::fcntl::fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(base))?;
    // SAFETY: fcntl just returned this new descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// `pwrite(2)` of all of `data` at `offset` to our descriptor number `fd`.
pub fn pwrite_all(fd: RawFd, mut data: &[u8], mut offset: u64) -> nix::Result<()> {
    // SAFETY: only borrowed for the calls below; the caller holds `fd` open.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    while !data.is_empty() {
        let n = nix::sys::uio::pwrite(fd, data, offset as i64)?;
        if n == 0 {
            return Err(nix::errno::Errno::EIO);
        }
        data = &data[n..];
        offset += n as u64;
    }
    Ok(())
}
