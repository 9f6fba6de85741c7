//! The code a new process runs between `clone3` and its first ptrace stop:
//! report itself, wait until the restorer traces it, take its session and
//! process group, fork its children (zombies exit at once with their
//! status), place its descriptors, working directory and umask, then stop
//! with `SIGSTOP`. It runs in a fork of `cr-restart`, so it makes raw
//! syscalls only and never allocates: everything it needs is prepared in
//! [`ChildPlan`]s before the first fork.

use std::os::fd::RawFd;

use crate::sys::clone::{Forked, fork_with_pid};

/// Steps a child reports when it fails, with the errno, through the error pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Step {
    Sync = 1,
    Session = 2,
    Dup = 3,
    Root = 4,
    Cwd = 5,
    Stop = 6,
    Fork = 7,
    Zombie = 8,
    Ctty = 9,
    Share = 10,
}

impl Step {
    pub fn describe(v: u8) -> &'static str {
        match v {
            1 => "waiting for the restorer",
            2 => "setting its session and process group",
            3 => "placing its file descriptors",
            4 => "changing its root directory",
            5 => "changing its working directory",
            6 => "stopping for the restorer",
            7 => "creating a child (pid in use?)",
            8 => "creating a zombie child (pid in use?)",
            9 => "taking its controlling terminal",
            10 => "mapping the memory its children inherit (address in use?)",
            _ => "setting itself up",
        }
    }
}

/// The second half of a report asking the restorer to fill the memory
/// the process's children inherit (the first half is its image pid).
pub const FILL_REQUEST: i32 = i32::MIN;

/// A failure report: step, errno, and the image pid of the process.
pub const REPORT_LEN: usize = 8;

/// Everything one new process does before it stops.
#[derive(Debug, Default)]
pub struct ChildPlan {
    /// Its pid in the image.
    pub image_pid: i32,
    /// The pid to create it with, `None` for any.
    pub want: Option<i32>,
    /// Signal its parent gets when it exits.
    pub exit_signal: i32,
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
    /// A session leader's controlling terminal: a descriptor of the
    /// restorer's (inherited) for `TIOCSCTTY`, taken right after `setsid`
    /// so the children it forks inherit it.
    pub ctty: Option<RawFd>,
    /// Read end of the pipe the restorer writes a byte to once it traces us.
    pub sync_rd: RawFd,
    /// Children to fork, as indices into the plan list.
    pub children: Vec<usize>,
    /// Zombie children: `(pid, wait status, name)`.
    pub zombies: Vec<(Option<i32>, i32, [u8; 16])>,
    /// Placeholder leaders of process groups whose leader had exited:
    /// `(image pgid, pid to create it with)`. Each makes its group, waits
    /// until members joined, and exits; the restorer reaps it.
    pub ghosts: Vec<(i32, Option<i32>)>,
    /// Ranges its parent mapped for its siblings: unmapped first.
    pub unmap: Vec<(u64, u64)>,
    /// Ranges its children inherit: mapped before it forks them.
    pub fork_map: Vec<(u64, u64)>,
    /// Ask the restorer to fill them ([`FILL_REQUEST`]) and wait.
    pub fill: bool,
}

/// What [`child_main`] reads of a [`ChildPlan`]: the same values, its
/// lists as slices. The restorer copies every view into an
/// [`Arena`](crate::sys::arena::Arena) before it forks, so the new
/// processes read nothing on the restorer's heap, which they do not
/// inherit (see `spawn::spawn_tree`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ChildView<'a> {
    pub image_pid: i32,
    pub want: Option<i32>,
    pub exit_signal: i32,
    pub fds: &'a [(RawFd, RawFd, bool)],
    pub close: &'a [(u32, u32)],
    pub root: Option<RawFd>,
    pub cwd: Option<RawFd>,
    pub umask: u32,
    pub setsid: bool,
    pub setpgid: bool,
    pub ctty: Option<RawFd>,
    pub sync_rd: RawFd,
    pub children: &'a [usize],
    pub zombies: &'a [(Option<i32>, i32, [u8; 16])],
    pub ghosts: &'a [(i32, Option<i32>)],
    pub unmap: &'a [(u64, u64)],
    pub fork_map: &'a [(u64, u64)],
    pub fill: bool,
}

impl ChildPlan {
    /// The plan as [`child_main`] reads it, borrowing these lists.
    pub fn view(&self) -> ChildView<'_> {
        ChildView {
            image_pid: self.image_pid,
            want: self.want,
            exit_signal: self.exit_signal,
            fds: &self.fds,
            close: &self.close,
            root: self.root,
            cwd: self.cwd,
            umask: self.umask,
            setsid: self.setsid,
            setpgid: self.setpgid,
            ctty: self.ctty,
            sync_rd: self.sync_rd,
            children: &self.children,
            zombies: &self.zombies,
            ghosts: &self.ghosts,
            unmap: &self.unmap,
            fork_map: &self.fork_map,
            fill: self.fill,
        }
    }

    /// The plan's view with its lists copied into `arena`.
    pub fn view_in<'a>(
        &self,
        arena: &'a crate::sys::arena::Arena,
    ) -> std::io::Result<ChildView<'a>> {
        Ok(ChildView {
            fds: arena.put(&self.fds)?,
            close: arena.put(&self.close)?,
            children: arena.put(&self.children)?,
            zombies: arena.put(&self.zombies)?,
            ghosts: arena.put(&self.ghosts)?,
            unmap: arena.put(&self.unmap)?,
            fork_map: arena.put(&self.fork_map)?,
            ..self.view()
        })
    }
}

/// Descriptors every new process shares.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shared<'a> {
    /// Each process writes `(image pid, real pid)` here when it starts.
    pub report_wr: RawFd,
    /// Failures are written here.
    pub err_wr: RawFd,
    /// The restorer's write ends of every sync pipe, closed by the root
    /// (the processes it forks inherit them closed).
    pub sync_wr: &'a [RawFd],
    /// Ghost leaders wait for end of file here.
    pub ghost_rd: RawFd,
    pub ghost_wr: RawFd,
}

fn errno() -> i32 {
    // SAFETY: reading the thread's errno location.
    unsafe { *libc::__errno_location() }
}

fn fail(plan: &ChildView, shared: &Shared, step: Step) -> ! {
    let e = errno();
    let mut msg = [0u8; REPORT_LEN];
    msg[0] = step as u8;
    msg[2..4].copy_from_slice(&(e as u16).to_le_bytes());
    msg[4..8].copy_from_slice(&plan.image_pid.to_le_bytes());
    // SAFETY: raw write of a stack buffer and exit, in a forked child.
    unsafe {
        libc::write(shared.err_wr, msg.as_ptr().cast(), msg.len());
        libc::_exit(127);
    }
}

/// Forks with a chosen pid, retrying for a few seconds while the pid is
/// still held by a dying process of the original tree.
///
/// # Safety
///
/// As for [`fork_with_pid`].
unsafe fn fork_retry(want: Option<i32>, exit_signal: i32) -> nix::Result<Forked> {
    let mut tries = 0;
    loop {
        // SAFETY: forwarded to the caller.
        match unsafe { fork_with_pid(want, 0, exit_signal) } {
            Err(nix::errno::Errno::EEXIST) if tries < 500 => {
                tries += 1;
                let ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 10_000_000,
                };
                // SAFETY: nanosleep reads a live timespec.
                unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
            }
            r => return r,
        }
    }
}

/// Exits so that the parent's `waitpid` will report `status`.
fn become_zombie(status: i32, name: &[u8; 16]) -> ! {
    // SAFETY: raw syscalls on integers and stack structs in a forked child
    // that exits here.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, name.as_ptr());
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            let dfl = [0u64; 4]; // SIG_DFL, no flags, no restorer, empty mask
            libc::syscall(libc::SYS_rt_sigaction, sig, dfl.as_ptr(), 0usize, 8usize);
            let mask: u64 = 0;
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                &mask,
                0usize,
                8usize,
            );
            let pid = libc::syscall(libc::SYS_getpid);
            libc::syscall(libc::SYS_kill, pid, sig);
        }
        libc::_exit(libc::WEXITSTATUS(status));
    }
}

/// Forks the plan's zombie children and waits until each has exited.
///
/// Their `SIGCHLD`s stay blocked and are then discarded: the original
/// parent had them already, and under ptrace an unblocked one would stop
/// this process in a signal-delivery stop before it forks the rest of its
/// children, which the restorer, waiting for those children to report,
/// would never see (issue 18: several zombies and a live child).
fn make_zombies(plan: &ChildView, shared: &Shared) {
    if plan.zombies.is_empty() {
        return;
    }
    let set: u64 = 1 << (libc::SIGCHLD - 1);
    // SAFETY: raw syscalls on integers and stack buffers in a forked child,
    // no allocation (see `child_main`).
    unsafe {
        let mut old: u64 = 0;
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK,
            &set,
            &mut old,
            8usize,
        );
        for (want, status, name) in plan.zombies {
            let (want, status) = (*want, *status);
            let pid = match fork_retry(want, libc::SIGCHLD) {
                Ok(Forked::Child) => become_zombie(status, name),
                Ok(Forked::Parent(p)) => p,
                Err(_) => fail(plan, shared, Step::Zombie),
            };
            let mut si: libc::siginfo_t = std::mem::zeroed();
            while libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut si,
                libc::WEXITED | libc::WNOWAIT | libc::__WALL,
            ) < 0
            {
                if errno() != libc::EINTR {
                    fail(plan, shared, Step::Zombie);
                }
            }
        }
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        libc::syscall(
            libc::SYS_rt_sigtimedwait,
            &set,
            std::ptr::null_mut::<libc::siginfo_t>(),
            &zero,
            8usize,
        );
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &old,
            std::ptr::null_mut::<u64>(),
            8usize,
        );
    }
}

/// Places the plan's descriptors at their numbers, changes root and
/// working directory, and sets the umask: raw syscalls only, no
/// allocation. On failure returns the step, with `errno` still set.
pub(crate) fn place_files(plan: &ChildView) -> Result<(), Step> {
    // SAFETY: raw syscalls on descriptors and integers of the plan; they
    // touch no memory but the plan's own and a static string.
    unsafe {
        for &(target, src, cloexec) in plan.fds {
            let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
            if libc::dup3(src, target, flags) < 0 {
                return Err(Step::Dup);
            }
        }
        if let Some(root) = plan.root
            && (libc::fchdir(root) < 0 || libc::chroot(c".".as_ptr()) < 0)
        {
            return Err(Step::Root);
        }
        if let Some(cwd) = plan.cwd
            && libc::fchdir(cwd) < 0
        {
            return Err(Step::Cwd);
        }
        libc::umask(plan.umask as libc::mode_t);
    }
    Ok(())
}

/// Copy-on-write sharing, before the children are forked: unmaps what the
/// parent mapped for siblings, maps what the children inherit (never over
/// anything: `MAP_FIXED_NOREPLACE`), and has the restorer fill it.
fn prepare_inherited(plan: &ChildView, shared: &Shared) {
    // SAFETY: munmap/mmap of the plan's ranges, which the restorer chose
    // clear of its own mappings (so of everything this code uses), and a
    // raw write/read of stack buffers; no allocation.
    unsafe {
        for &(s, e) in plan.unmap {
            if libc::munmap(s as *mut libc::c_void, (e - s) as usize) < 0 {
                fail(plan, shared, Step::Share);
            }
        }
        for &(s, e) in plan.fork_map {
            let at = libc::mmap(
                s as *mut libc::c_void,
                (e - s) as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            );
            if at != s as *mut libc::c_void {
                if at != libc::MAP_FAILED {
                    libc::munmap(at, (e - s) as usize);
                    *libc::__errno_location() = libc::EEXIST;
                }
                fail(plan, shared, Step::Share);
            }
        }
        if plan.fill {
            let mut rep = [0u8; 8];
            rep[0..4].copy_from_slice(&plan.image_pid.to_le_bytes());
            rep[4..8].copy_from_slice(&FILL_REQUEST.to_le_bytes());
            if libc::write(shared.report_wr, rep.as_ptr().cast(), rep.len()) != rep.len() as isize {
                fail(plan, shared, Step::Share);
            }
            let mut b = [0u8; 1];
            if libc::read(plan.sync_rd, b.as_mut_ptr().cast(), 1) != 1 {
                libc::_exit(126);
            }
        }
    }
}

/// Closes every descriptor the plan does not place.
pub(crate) fn close_others(plan: &ChildView) {
    for &(lo, hi) in plan.close {
        // SAFETY: close_range takes integers only.
        unsafe { libc::syscall(libc::SYS_close_range, lo, hi, 0) };
    }
}

/// Forks the root of the tree (or, with `new_pidns`, the init of a new pid
/// namespace: `cr-init` when `with_init`, else the root itself); the child
/// runs the plans and never returns. Returns the new pid.
pub(crate) fn fork_root(
    new_pidns: bool,
    with_init: bool,
    plans: &[ChildView],
    shared: &Shared,
) -> nix::Result<i32> {
    // SAFETY: the child runs only `child_main` or `init_main`, which make
    // raw syscalls only and never allocate.
    let r = unsafe {
        if new_pidns {
            // Init of a new pid namespace; our own children stay in ours.
            fork_with_pid(None, libc::CLONE_NEWPID as u64, libc::SIGCHLD)
        } else {
            fork_with_pid(plans.first().and_then(|p| p.want), 0, libc::SIGCHLD)
        }
    };
    match r? {
        Forked::Child if with_init => init_main(plans, shared),
        Forked::Child => child_main(plans, 0, shared),
        Forked::Parent(pid) => Ok(pid),
    }
}

/// Runs in a new process after `clone3`; never returns.
pub fn child_main(plans: &[ChildView], idx: usize, shared: &Shared) -> ! {
    let plan = &plans[idx];
    // SAFETY: this runs in a forked child of a process that may have had other
    // threads: it makes only async-signal-safe raw syscalls on descriptors
    // and integers prepared before the fork, and never allocates.
    unsafe {
        // The root closes the restorer's ends; the processes it forks
        // inherit them closed.
        if idx == 0 {
            for &fd in shared.sync_wr {
                libc::close(fd);
            }
        }
        let pid = libc::syscall(libc::SYS_getpid) as i32;
        let mut rep = [0u8; 8];
        rep[0..4].copy_from_slice(&plan.image_pid.to_le_bytes());
        rep[4..8].copy_from_slice(&pid.to_le_bytes());
        if libc::write(shared.report_wr, rep.as_ptr().cast(), rep.len()) != rep.len() as isize {
            fail(plan, shared, Step::Sync);
        }
        let mut b = [0u8; 1];
        if libc::read(plan.sync_rd, b.as_mut_ptr().cast(), 1) != 1 {
            // The restorer died before tracing us, or gave up.
            libc::_exit(126);
        }
        // Default dispositions for everything: the restorer sets the
        // image's. Set by the root; the processes it forks inherit them.
        if idx == 0 {
            let dfl = [0u64; 4];
            for sig in 1..=64 {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::syscall(libc::SYS_rt_sigaction, sig, dfl.as_ptr(), 0usize, 8usize);
                }
            }
        }
        if plan.setsid {
            if libc::setsid() < 0 {
                fail(plan, shared, Step::Session);
            }
            if let Some(fd) = plan.ctty
                && libc::ioctl(fd, libc::TIOCSCTTY, 0) < 0
            {
                fail(plan, shared, Step::Ctty);
            }
        } else if plan.setpgid && libc::setpgid(0, 0) < 0 {
            fail(plan, shared, Step::Session);
        }
        make_zombies(plan, shared);
        for &(pgid, want) in plan.ghosts {
            match fork_retry(want, libc::SIGCHLD) {
                Ok(Forked::Child) => {
                    libc::close(shared.ghost_wr);
                    let me = libc::syscall(libc::SYS_getpid) as i32;
                    let mut rep = [0u8; 8];
                    rep[0..4].copy_from_slice(&(-pgid).to_le_bytes());
                    rep[4..8].copy_from_slice(&me.to_le_bytes());
                    if libc::setpgid(0, 0) < 0
                        || libc::write(shared.report_wr, rep.as_ptr().cast(), rep.len()) != 8
                    {
                        libc::_exit(1);
                    }
                    let mut b = [0u8; 1];
                    libc::read(shared.ghost_rd, b.as_mut_ptr().cast(), 1);
                    libc::_exit(0);
                }
                Ok(Forked::Parent(_)) => {}
                Err(_) => fail(plan, shared, Step::Fork),
            }
        }
        prepare_inherited(plan, shared);
        for &c in plan.children {
            let child = &plans[c];
            match fork_retry(child.want, child.exit_signal) {
                Ok(Forked::Child) => child_main(plans, c, shared),
                // Only the child reads its sync pipe: the children forked
                // after it need not inherit it (a tree of 256 forked by
                // its root copies half as many of them).
                Ok(Forked::Parent(_)) => {
                    libc::close(child.sync_rd);
                }
                Err(_) => fail(child, shared, Step::Fork),
            }
        }
        if let Err(step) = place_files(plan) {
            fail(plan, shared, step);
        }
        close_others(plan);
        libc::syscall(libc::SYS_kill, pid, libc::SIGSTOP);
        // The restorer replaces this whole address space before we run
        // again; getting here means it did not.
        libc::_exit(125);
    }
}

/// Pid 1 of a new pid namespace (`cr-restart --pidns`): forks the root of
/// the tree, reaps every orphan, and exits with the root's status when the
/// root exits (which ends the namespace). Never returns.
pub fn init_main(plans: &[ChildView], shared: &Shared) -> ! {
    let root = &plans[0];
    // SAFETY: as in `child_main`: raw async-signal-safe syscalls on prepared
    // integers in a forked child, no allocation.
    unsafe {
        let rpid = match fork_with_pid(root.want, 0, libc::SIGCHLD) {
            Ok(Forked::Child) => child_main(plans, 0, shared),
            Ok(Forked::Parent(p)) => p,
            Err(_) => fail(root, shared, Step::Fork),
        };
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
        libc::prctl(libc::PR_SET_NAME, c"cr-init".as_ptr());
        loop {
            let mut st = 0;
            let w = libc::waitpid(-1, &mut st, libc::__WALL);
            if w == rpid {
                if libc::WIFEXITED(st) {
                    libc::_exit(libc::WEXITSTATUS(st));
                }
                libc::_exit(128 + libc::WTERMSIG(st));
            }
            if w < 0 && errno() != libc::EINTR {
                libc::_exit(0);
            }
        }
    }
}

/// The in-place caller's last steps as itself (`super::inplace`): take the image's descriptors and
/// directories, drop its own signal state, and stop for the tracer. Raw
/// syscalls only. Never returns: the tracer replaces this process, or it
/// is killed.
pub(crate) fn become_stopped(plan: &ChildPlan, errfd: Option<RawFd>) -> ! {
    let plan = &plan.view();
    if let Err(step) = place_files(plan) {
        let e = std::io::Error::last_os_error();
        if let Some(fd) = errfd {
            let msg = format!(
                "crtools: in-place restore failed while {}: {e}; the process is killed\n",
                Step::describe(step as u8)
            );
            // SAFETY: write of a live buffer to a descriptor we hold.
            unsafe { libc::write(fd, msg.as_ptr().cast(), msg.len()) };
        }
        kill_self();
    }
    close_others(plan);
    // SAFETY: raw syscalls on integers and stack values of this thread; the
    // address space they run in is about to be replaced.
    unsafe {
        let off = libc::stack_t {
            ss_sp: std::ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        libc::sigaltstack(&off, std::ptr::null_mut());
        // Default actions (which also drops pending signals whose default
        // is to be ignored); the tracer sets the image's.
        let dfl = [0u64; 4];
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::syscall(libc::SYS_rt_sigaction, sig, dfl.as_ptr(), 0usize, 8usize);
            }
        }
        let zero = libc::itimerval {
            it_interval: libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
            it_value: libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
        };
        for which in [libc::ITIMER_REAL, libc::ITIMER_VIRTUAL, libc::ITIMER_PROF] {
            libc::setitimer(which, &zero, std::ptr::null_mut());
        }
        libc::prctl(libc::PR_SET_PDEATHSIG, 0 as libc::c_ulong, 0, 0, 0);
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 0 as libc::c_ulong, 0, 0, 0);
        let pid = libc::syscall(libc::SYS_getpid);
        libc::syscall(libc::SYS_kill, pid, libc::SIGSTOP);
    }
    // The tracer let us go without replacing us: it failed.
    kill_self()
}

fn kill_self() -> ! {
    // SAFETY: raw getpid and kill; SIGKILL cannot be caught.
    unsafe {
        let pid = libc::syscall(libc::SYS_getpid);
        libc::syscall(libc::SYS_kill, pid, libc::SIGKILL);
        libc::_exit(137)
    }
}
