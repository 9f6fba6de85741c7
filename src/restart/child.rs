//! The code a new process runs between `clone3` and its first ptrace stop:
//! descriptors at their numbers, working directory, umask, session, then
//! `SIGSTOP`. It runs in a fork of `cr-restart`, so it makes raw syscalls
//! only and never allocates: everything it needs is prepared in a
//! [`ChildPlan`] before the fork.

use std::os::fd::RawFd;

/// Steps a child reports when it fails, with the errno, through its error pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Step {
    Sync = 1,
    Session = 2,
    Dup = 3,
    Root = 4,
    Cwd = 5,
    Stop = 6,
}

impl Step {
    pub fn from_u8(v: u8) -> &'static str {
        match v {
            1 => "waiting for the restorer",
            2 => "setting its session and process group",
            3 => "placing its file descriptors",
            4 => "changing its root directory",
            5 => "changing its working directory",
            6 => "stopping for the restorer",
            _ => "setting itself up",
        }
    }
}

/// Everything a new process does before it stops.
#[derive(Debug, Default)]
pub struct ChildPlan {
    /// `(target fd, source fd, close-on-exec)`. Every source is above every target.
    pub fds: Vec<(RawFd, RawFd, bool)>,
    /// Descriptor ranges to close after placing, inclusive.
    pub close: Vec<(u32, u32)>,
    /// Directory descriptors for root (if not `/`) and the working directory.
    pub root: Option<RawFd>,
    pub cwd: Option<RawFd>,
    pub umask: u32,
    pub setsid: bool,
    pub setpgid: bool,
    /// Read end of the pipe the restorer writes a byte to once it traces us.
    pub sync_rd: RawFd,
    /// Our copy of its write end, closed first.
    pub sync_wr: RawFd,
    /// Write end of the pipe a failure is reported through.
    pub err_wr: RawFd,
}

fn fail(plan: &ChildPlan, step: Step) -> ! {
    // SAFETY: raw syscalls on plain integers and a stack buffer; this runs
    // in a freshly forked child and only writes its report and exits.
    unsafe {
        let errno = *libc::__errno_location();
        let msg = [step as u8, errno as u8, (errno >> 8) as u8, 0];
        libc::write(plan.err_wr, msg.as_ptr().cast(), msg.len());
        libc::_exit(127);
    }
}

/// Runs in the child after `clone3`; never returns.
pub fn child_main(plan: &ChildPlan) -> ! {
    // SAFETY: this runs in a forked child of a process that may have had other
    // threads: it makes only async-signal-safe raw syscalls on descriptors
    // and integers prepared before the fork, and never allocates.
    unsafe {
        libc::close(plan.sync_wr);
        let mut b = [0u8; 1];
        if libc::read(plan.sync_rd, b.as_mut_ptr().cast(), 1) != 1 {
            // The restorer died before tracing us.
            libc::_exit(126);
        }
        if plan.setsid {
            if libc::setsid() < 0 {
                fail(plan, Step::Session);
            }
        } else if plan.setpgid && libc::setpgid(0, 0) < 0 {
            fail(plan, Step::Session);
        }
        for &(target, src, cloexec) in &plan.fds {
            let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
            if libc::dup3(src, target, flags) < 0 {
                fail(plan, Step::Dup);
            }
        }
        if let Some(root) = plan.root
            && (libc::fchdir(root) < 0 || libc::chroot(c".".as_ptr()) < 0)
        {
            fail(plan, Step::Root);
        }
        if let Some(cwd) = plan.cwd
            && libc::fchdir(cwd) < 0
        {
            fail(plan, Step::Cwd);
        }
        libc::umask(plan.umask as libc::mode_t);
        let err_wr = plan.err_wr;
        for &(lo, hi) in &plan.close {
            if lo <= err_wr as u32 && err_wr as u32 <= hi {
                // Keep the error pipe until the very end.
                if lo < err_wr as u32 {
                    libc::syscall(libc::SYS_close_range, lo, err_wr as u32 - 1, 0);
                }
                if (err_wr as u32) < hi {
                    libc::syscall(libc::SYS_close_range, err_wr as u32 + 1, hi, 0);
                }
            } else {
                libc::syscall(libc::SYS_close_range, lo, hi, 0);
            }
        }
        // The error pipe is close-on-exec in the restorer; we close it
        // ourselves now: from here on the restorer sees us only through ptrace.
        let pid = libc::syscall(libc::SYS_getpid) as libc::pid_t;
        if !plan.fds.iter().any(|&(t, _, _)| t == err_wr) {
            libc::close(err_wr);
        }
        libc::syscall(libc::SYS_kill, pid, libc::SIGSTOP);
        // The restorer replaces this whole address space before we run again;
        // getting here means it did not.
        libc::_exit(125);
    }
}
