//! The calling process's own user and group ids.

/// The effective `(uid, gid)` of the calling process.
pub fn effective_ids() -> (u32, u32) {
    (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    )
}

/// The real `(uid, gid)` of the calling process.
pub fn real_ids() -> (u32, u32) {
    (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    )
}
