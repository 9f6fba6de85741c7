//! The calling thread's own filesystem credentials, supplementary groups
//! and capabilities. Linux keeps credentials per thread; glibc's
//! `setgroups` and `set*id` change every thread of the process at once,
//! so these are raw syscalls that change only the caller. The restorer
//! uses them to do a filesystem action with a restored process's
//! credentials (`restart::asuser`).

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd};

/// A thread's capability sets, one bit per capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Caps {
    pub eff: u64,
    pub prm: u64,
    pub inh: u64,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The calling thread's capability sets.
pub fn caps() -> std::io::Result<Caps> {
    let mut h = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut d = [CapData::default(); 2];
    // SAFETY: capget writes two `CapData` (version 3) into the live array
    // and reads the live header.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let join = |lo: u32, hi: u32| (hi as u64) << 32 | lo as u64;
    Ok(Caps {
        eff: join(d[0].effective, d[1].effective),
        prm: join(d[0].permitted, d[1].permitted),
        inh: join(d[0].inheritable, d[1].inheritable),
    })
}

/// Sets the calling thread's capability sets (the kernel's rules apply:
/// effective within permitted, permitted never raised).
pub fn set_caps(c: &Caps) -> std::io::Result<()> {
    let mut h = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let d = [
        CapData {
            effective: c.eff as u32,
            permitted: c.prm as u32,
            inheritable: c.inh as u32,
        },
        CapData {
            effective: (c.eff >> 32) as u32,
            permitted: (c.prm >> 32) as u32,
            inheritable: (c.inh >> 32) as u32,
        },
    ];
    // SAFETY: capset reads the live header and two `CapData` (version 3).
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's filesystem user and group ids.
pub fn fs_ids() -> (u32, u32) {
    // SAFETY: setfsuid/setfsgid with an invalid id (-1) change nothing
    // and return the current value.
    unsafe {
        (
            libc::setfsuid(u32::MAX) as u32,
            libc::setfsgid(u32::MAX) as u32,
        )
    }
}

/// Sets the calling thread's filesystem user and group ids; an error if
/// the kernel did not take them.
pub fn set_fs_ids(uid: u32, gid: u32) -> std::io::Result<()> {
    // SAFETY: plain syscalls on integers; they change only this thread.
    unsafe {
        libc::setfsgid(gid);
        libc::setfsuid(uid);
    }
    if fs_ids() != (uid, gid) {
        return Err(std::io::Error::from_raw_os_error(libc::EPERM));
    }
    Ok(())
}

/// The calling thread's supplementary groups.
pub fn groups() -> std::io::Result<Vec<u32>> {
    let n = nix::unistd::getgroups().map_err(std::io::Error::from)?;
    Ok(n.into_iter().map(|g| g.as_raw()).collect())
}

/// Sets the calling thread's supplementary groups (the raw syscall: only
/// this thread).
pub fn set_groups(groups: &[u32]) -> std::io::Result<()> {
    // SAFETY: setgroups reads `groups.len()` ids from the live slice.
    let r = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's securebits (`PR_GET_SECUREBITS`).
pub fn securebits() -> u32 {
    // SAFETY: PR_GET_SECUREBITS takes no pointer and only returns a value.
    let r = unsafe { libc::prctl(libc::PR_GET_SECUREBITS, 0, 0, 0, 0) };
    r.max(0) as u32
}

/// `faccessat2(fd, path, mode, AT_EACCESS)`: whether this thread's
/// filesystem ids, groups and effective capabilities allow `mode`
/// (`R_OK`, `W_OK`, `X_OK`) on `path` relative to `fd`, or on `fd` itself
/// when `path` is empty.
pub fn may_access(fd: BorrowedFd, path: &CStr, mode: i32) -> std::io::Result<()> {
    let mut flags = libc::AT_EACCESS;
    if path.is_empty() {
        flags |= libc::AT_EMPTY_PATH;
    }
    // SAFETY: faccessat2 reads the live NUL-terminated path; `fd` is open.
    let r = unsafe {
        libc::syscall(
            libc::SYS_faccessat2,
            fd.as_raw_fd(),
            path.as_ptr(),
            mode,
            flags,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_read_back_as_set() {
        let c = caps().unwrap();
        set_caps(&c).unwrap();
        assert_eq!(caps().unwrap(), c);
        assert_eq!(c.eff & !c.prm, 0);
    }

    #[test]
    fn fs_ids_are_the_effective_ones() {
        let (uid, gid) = fs_ids();
        assert_eq!(uid, nix::unistd::geteuid().as_raw());
        assert_eq!(gid, nix::unistd::getegid().as_raw());
        set_fs_ids(uid, gid).unwrap();
    }

    #[test]
    fn may_access_a_directory() {
        let d = std::fs::File::open("/").unwrap();
        use std::os::fd::AsFd;
        may_access(d.as_fd(), c"", libc::X_OK).unwrap();
    }

    #[test]
    fn another_thread_keeps_its_fs_ids() {
        // CI runs as root: a thread taking uid 65534 alone loses its access.
        let before = fs_ids();
        std::thread::spawn(|| {
            set_fs_ids(65534, 65534).unwrap();
            set_groups(&[]).unwrap();
            assert_eq!(fs_ids(), (65534, 65534));
            let denied = std::fs::File::open("/etc/shadow").unwrap_err();
            assert_eq!(denied.raw_os_error(), Some(libc::EACCES));
        })
        .join()
        .unwrap();
        assert_eq!(fs_ids(), before);
        assert!(std::fs::File::open("/etc/shadow").is_ok());
    }
}
