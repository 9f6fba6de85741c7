//! Advisory file locks: `flock`, OFD and POSIX record locks (`fcntl`), all
//! non-blocking.

use std::io;
use std::os::fd::RawFd;

use nix::fcntl::{FcntlArg, fcntl};

/// A `struct flock` for a read or write lock on `len` bytes from `start`
/// (`len` 0: to the end of the file).
pub fn flock_struct(write: bool, start: u64, len: u64) -> libc::flock {
    libc::flock {
        l_type: if write { libc::F_WRLCK } else { libc::F_RDLCK } as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: start as libc::off_t,
        l_len: len as libc::off_t,
        l_pid: 0,
    }
}

/// The bytes of [`flock_struct`] as the kernel reads them (x86_64 layout:
/// type and whence as `i16`, 4 bytes of padding, start and length as `i64`,
/// pid as `i32`, 4 bytes of padding), for a `fcntl` run inside another
/// process.
pub fn flock_bytes(write: bool, start: u64, len: u64) -> [u8; 32] {
    let l = flock_struct(write, start, len);
    let mut b = [0u8; 32];
    b[0..2].copy_from_slice(&l.l_type.to_le_bytes());
    b[2..4].copy_from_slice(&l.l_whence.to_le_bytes());
    b[8..16].copy_from_slice(&l.l_start.to_le_bytes());
    b[16..24].copy_from_slice(&l.l_len.to_le_bytes());
    b
}

/// Takes an OFD lock on the open file description behind `fd`.
pub fn ofd_lock(fd: RawFd, write: bool, start: u64, len: u64) -> io::Result<()> {
    let l = flock_struct(write, start, len);
    fcntl(fd, FcntlArg::F_OFD_SETLK(&l))?;
    Ok(())
}

/// Takes a `flock` lock on the open file description behind `fd`.
pub fn flock(fd: RawFd, write: bool) -> io::Result<()> {
    let op = if write { libc::LOCK_EX } else { libc::LOCK_SH } | libc::LOCK_NB;
    // SAFETY: flock takes a descriptor and flags; no memory is passed.
    if unsafe { libc::flock(fd, op) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether a POSIX lock of ours on `fd` would be refused: the pid of a
/// process whose lock is in the way (`-1` for an OFD lock), or `None`.
pub fn posix_conflict(fd: RawFd, write: bool, start: u64, len: u64) -> io::Result<Option<i32>> {
    let mut l = flock_struct(write, start, len);
    fcntl(fd, FcntlArg::F_GETLK(&mut l))?;
    Ok((l.l_type != libc::F_UNLCK as libc::c_short).then_some(l.l_pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flock_bytes_match_the_c_struct() {
        assert_eq!(std::mem::size_of::<libc::flock>(), 32);
        use std::mem::offset_of;
        assert_eq!(offset_of!(libc::flock, l_type), 0);
        assert_eq!(offset_of!(libc::flock, l_whence), 2);
        assert_eq!(offset_of!(libc::flock, l_start), 8);
        assert_eq!(offset_of!(libc::flock, l_len), 16);
        assert_eq!(offset_of!(libc::flock, l_pid), 24);
        let b = flock_bytes(true, 5, 10);
        assert_eq!(i16::from_le_bytes([b[0], b[1]]), libc::F_WRLCK as i16);
        assert_eq!(i16::from_le_bytes([b[2], b[3]]), libc::SEEK_SET as i16);
        assert_eq!(i64::from_le_bytes(b[8..16].try_into().unwrap()), 5);
        assert_eq!(i64::from_le_bytes(b[16..24].try_into().unwrap()), 10);
    }

    #[test]
    fn ofd_and_flock_locks_conflict_across_descriptions() {
        use std::os::fd::AsRawFd;
        let dir = std::env::temp_dir().join(format!("crtools-locks-{}", std::process::id()));
        std::fs::write(&dir, b"0123456789").unwrap();
        let open = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&dir)
                .unwrap()
        };
        let (a, b) = (open(), open());
        ofd_lock(a.as_raw_fd(), true, 2, 3).unwrap();
        assert!(ofd_lock(b.as_raw_fd(), false, 4, 0).is_err());
        ofd_lock(b.as_raw_fd(), false, 5, 0).unwrap();
        // The OFD write lock is in the way of a POSIX read lock on it.
        assert_eq!(
            posix_conflict(b.as_raw_fd(), false, 0, 3).unwrap(),
            Some(-1)
        );
        assert_eq!(posix_conflict(b.as_raw_fd(), false, 0, 2).unwrap(), None);
        flock(a.as_raw_fd(), false).unwrap();
        flock(b.as_raw_fd(), false).unwrap();
        let c = open();
        assert!(flock(c.as_raw_fd(), true).is_err());
        std::fs::remove_file(&dir).unwrap();
    }
}
