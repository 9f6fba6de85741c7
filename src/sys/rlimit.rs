//! Resource limits: another process's (`prlimit64`) and our own.

/// Sets resource limit `resource` (`RLIMIT_*`) of process `pid`.
pub fn set(pid: super::Pid, resource: u32, cur: u64, max: u64) -> std::io::Result<()> {
    let lim = libc::rlimit64 {
        rlim_cur: cur,
        rlim_max: max,
    };
    // SAFETY: prlimit64 reads the live `lim`; the old-limit pointer is null.
    let r = unsafe {
        libc::prlimit64(
            pid.as_raw(),
            resource as libc::__rlimit_resource_t,
            &lim,
            std::ptr::null_mut(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Resource limit `resource` (`RLIMIT_*`) of process `pid`: `(cur, max)`.
pub fn get(pid: super::Pid, resource: u32) -> std::io::Result<(u64, u64)> {
    let mut old = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit64 with a null new limit only writes the old one into
    // the live `old`.
    let r = unsafe {
        libc::prlimit64(
            pid.as_raw(),
            resource as libc::__rlimit_resource_t,
            std::ptr::null(),
            &mut old,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((old.rlim_cur, old.rlim_max))
}

/// Raises our own soft limit on open descriptors to `want` (at most the
/// hard limit); never lowers it. Best effort.
pub fn raise_nofile(want: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((cur, max)) = getrlimit(Resource::RLIMIT_NOFILE)
        && cur < want
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, want.min(max).max(cur), max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::Pid;

    #[test]
    fn get_and_set_this_process() {
        let me = Pid::this();
        let (cur, max) = get(me, libc::RLIMIT_NOFILE).unwrap();
        set(me, libc::RLIMIT_NOFILE, cur, max).unwrap();
        assert_eq!(get(me, libc::RLIMIT_NOFILE).unwrap(), (cur, max));
        assert!(get(me, 999).is_err());
    }
}
