//! `clone3` with `set_tid`: creating a process with a chosen pid.

use nix::errno::Errno;

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Which side of a fork we are on.
pub enum Forked {
    Parent(i32),
    Child,
}

/// Forks like `fork(2)`, giving the child pid `want` when it is `Some`
/// (needs `CAP_CHECKPOINT_RESTORE` or `CAP_SYS_ADMIN`; fails with `EEXIST`
/// when the pid is in use). `flags` are extra `CLONE_*` flags.
///
/// # Safety
///
/// As with `fork(2)` in a process that may have other threads: until it
/// execs or exits, the child may only call async-signal-safe functions
/// (no allocation, no locks), and it must not touch glibc's cached thread
/// state (use raw syscalls for `getpid`/`kill`).
pub unsafe fn fork_with_pid(want: Option<i32>, flags: u64, exit_signal: i32) -> nix::Result<Forked> {
    let tid = [want.unwrap_or(0)];
    let args = CloneArgs {
        flags,
        exit_signal: exit_signal as u64,
        set_tid: if want.is_some() { tid.as_ptr() as u64 } else { 0 },
        set_tid_size: if want.is_some() { 1 } else { 0 },
        ..Default::default()
    };
    // SAFETY: args is a live clone_args of the size passed; without
    // CLONE_VM the child gets a copy of our address space, like fork(2).
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match Errno::result(r)? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as i32)),
    }
}
