//! Forking a single-threaded process, leaving it, and its POSIX timers.

use crate::sys::clone::Forked;

/// Forks the calling process, which must have one thread (checked: with
/// others, a child could inherit a lock some other thread held, so it
/// fails with `EINVAL` instead).
pub fn fork_single_threaded() -> nix::Result<Forked> {
    let threads = std::fs::read_dir("/proc/self/task")
        .map_err(|_| nix::errno::Errno::EINVAL)?
        .count();
    if threads != 1 {
        return Err(nix::errno::Errno::EINVAL);
    }
    // SAFETY: with one thread, the child's copy of the address space is
    // consistent (no lock held by another thread), so it may do anything.
    match unsafe { libc::fork() } {
        0 => Ok(Forked::Child),
        n if n > 0 => Ok(Forked::Parent(n)),
        _ => Err(nix::errno::Errno::last()),
    }
}

/// Deletes POSIX timer `id` of the calling process (`timer_delete(2)` on
/// the kernel's id, which glibc's wrapper does not take).
pub fn delete_timer(id: i32) -> nix::Result<()> {
    // SAFETY: timer_delete takes an integer id; no memory is passed.
    let r = unsafe { libc::syscall(libc::SYS_timer_delete, id as libc::c_long) };
    nix::errno::Errno::result(r).map(drop)
}

/// Ends the calling process at once with `code`, without running exit
/// handlers or flushing buffers (`_exit(2)`): for forked helpers that must
/// never run the code of the process they were forked from.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit takes an integer and does not return.
    unsafe { libc::_exit(code) }
}
