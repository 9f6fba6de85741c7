//! Resource limits: another process's (`prlimit64`) and our own.

/// Sets resource limit `resource` (`RLIMIT_*`) of process `pid`.
pub fn set(pid: i32, resource: u32, cur: u64, max: u64) -> std::io::Result<()> {
    let lim = libc::rlimit64 {
        rlim_cur: cur,
        rlim_max: max,
    };
    // SAFETY: prlimit64 reads the live `lim`; the old-limit pointer is null.
    let r = unsafe {
        libc::prlimit64(
            pid,
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
