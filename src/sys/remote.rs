//! Remote syscalls: running a syscall inside a stopped tracee.
//!
//! The tracee's registers are pointed at a `syscall` instruction (a
//! [`Gate`]) with the syscall number and arguments loaded, it is resumed
//! until the syscall has run, and the result is read from `rax`. All signals
//! are blocked while syscalls run so that nothing is delivered (and lost)
//! under our feet; a signal that cannot be blocked is remembered and handed
//! back by [`Remote::finish`].
//!
//! [`Remote`] saves the registers and signal mask it found and puts them back
//! in [`Remote::finish`], or in `Drop` on every other path, so a failure never
//! leaves the tracee pointed at our gate.

use nix::errno::Errno;
use nix::sys::signal::Signal;
use thiserror::Error;

use std::borrow::BorrowMut;

use super::ids::{Pid, Tid};
use super::ptrace::{Regs, Resume, Stop, Stopped};

/// Where the tracee finds a `syscall` instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// A bare `syscall` instruction (e.g. inside the vDSO): the tracee is
    /// run with `PTRACE_SYSCALL` to the syscall's exit, two stops a call.
    Syscall(u64),
    /// `syscall; int3` in a page of our own: one stop a call (the trap).
    Trap(u64),
    /// A bare `syscall` instruction run with `PTRACE_SINGLESTEP`: one stop
    /// a call (the single-step trap on the syscall's return). The session
    /// must let traps through ([`Remote::let_traps_through`]), and the
    /// process must not ignore `SIGTRAP` (the kernel would reset it to
    /// `SIG_DFL`).
    Step(u64),
}

/// Why a remote syscall failed.
#[derive(Debug, Error)]
pub enum RemoteError {
    #[error("process {0} exited while being operated on")]
    Gone(Tid),
    #[error("ptrace {op} on {tid}: {errno}")]
    Ptrace {
        op: &'static str,
        tid: Tid,
        errno: Errno,
    },
    #[error("{name} in process {tid}: {errno}")]
    Syscall {
        name: String,
        tid: Tid,
        errno: Errno,
    },
    #[error("unexpected stop of {tid}: {stop:?}")]
    Unexpected { tid: Tid, stop: Stop },
    #[error("a batch of {size} bytes does not fit the scratch memory of {tid}")]
    TooLarge { tid: Tid, size: usize },
    #[error("cannot reach the memory of {tid}: {errno}")]
    Memory { tid: Tid, errno: Errno },
}

pub type Result<T> = std::result::Result<T, RemoteError>;

/// Syscall numbers this project injects (x86_64).
pub mod nr {
    pub const MMAP: i64 = 9;
    pub const MPROTECT: i64 = 10;
    pub const MUNMAP: i64 = 11;
    pub const BRK: i64 = 12;
    pub const RT_SIGACTION: i64 = 13;
    pub const RT_SIGPROCMASK: i64 = 14;
    pub const MREMAP: i64 = 25;
    pub const MADVISE: i64 = 28;
    pub const DUP2: i64 = 33;
    pub const GETITIMER: i64 = 36;
    pub const SETITIMER: i64 = 38;
    pub const GETPID: i64 = 39;
    pub const CLOSE: i64 = 3;
    pub const FCNTL: i64 = 72;
    pub const OPEN: i64 = 2;
    pub const SIGALTSTACK: i64 = 131;
    pub const PERSONALITY: i64 = 135;
    pub const PRCTL: i64 = 157;
    pub const SETRLIMIT: i64 = 160;
    pub const GETTID: i64 = 186;
    pub const SET_TID_ADDRESS: i64 = 218;
    pub const TIMER_CREATE: i64 = 222;
    pub const TIMER_SETTIME: i64 = 223;
    pub const TIMER_GETTIME: i64 = 224;
    pub const TIMER_GETOVERRUN: i64 = 225;
    pub const TIMER_DELETE: i64 = 226;
    pub const EXIT_GROUP: i64 = 231;
    pub const OPENAT: i64 = 257;
    pub const SET_ROBUST_LIST: i64 = 273;
    pub const RT_TGSIGQUEUEINFO: i64 = 297;
    pub const RSEQ: i64 = 334;
    pub const SETRESUID: i64 = 117;
    pub const SETRESGID: i64 = 119;
    pub const SETGROUPS: i64 = 116;
    pub const SETFSUID: i64 = 122;
    pub const SETFSGID: i64 = 123;
    pub const CAPSET: i64 = 126;
    pub const ARCH_PRCTL: i64 = 158;
    pub const SCHED_SETAFFINITY: i64 = 203;
    pub const DUP3: i64 = 292;
    pub const PIDFD_OPEN: i64 = 434;
    pub const SETPRIORITY: i64 = 141;
    pub const UMASK: i64 = 95;
    pub const SETPGID: i64 = 109;
    pub const SHMAT: i64 = 30;
    pub const RT_SIGTIMEDWAIT: i64 = 128;
    pub const WAIT4: i64 = 61;
    pub const CLONE3: i64 = 435;
    pub const RT_SIGQUEUEINFO: i64 = 129;
}

pub(super) fn name_of(nr: i64) -> String {
    let n = match nr {
        nr::MMAP => "mmap",
        nr::DUP3 => "dup3",
        nr::PIDFD_OPEN => "pidfd_open",
        nr::MPROTECT => "mprotect",
        nr::MUNMAP => "munmap",
        nr::BRK => "brk",
        nr::RT_SIGACTION => "rt_sigaction",
        nr::MREMAP => "mremap",
        nr::MADVISE => "madvise",
        nr::GETITIMER => "getitimer",
        nr::SETITIMER => "setitimer",
        nr::SIGALTSTACK => "sigaltstack",
        nr::PRCTL => "prctl",
        nr::OPEN | nr::OPENAT => "open",
        nr::CLOSE => "close",
        nr::RSEQ => "rseq",
        nr::TIMER_CREATE => "timer_create",
        nr::TIMER_SETTIME => "timer_settime",
        nr::TIMER_GETTIME => "timer_gettime",
        nr::SET_ROBUST_LIST => "set_robust_list",
        nr::RT_TGSIGQUEUEINFO => "rt_tgsigqueueinfo",
        nr::SET_TID_ADDRESS => "set_tid_address",
        nr::PERSONALITY => "personality",
        nr::SHMAT => "shmat",
        nr::TIMER_GETOVERRUN => "timer_getoverrun",
        nr::GETPID => "getpid",
        _ => return format!("syscall {nr}"),
    };
    n.to_string()
}

/// A session of remote syscalls in one stopped thread.
///
/// It holds the thread's [`Stopped`] handle (owned, or borrowed as
/// `&mut Stopped`) for as long as it runs, so nothing else resumes the
/// thread or changes its registers meanwhile.
pub struct Remote<T: BorrowMut<Stopped> = Stopped> {
    tracee: T,
    tid: Tid,
    gate: Gate,
    saved: Regs,
    saved_mask: u64,
    /// Signals that arrived and could not be blocked, to deliver again.
    deferred: Vec<i32>,
    /// The registers the thread gets back when the session ends.
    restore: Option<Regs>,
}

impl<T: BorrowMut<Stopped>> Remote<T> {
    /// Starts a session in a stopped thread.
    pub fn on(mut tracee: T, gate: Gate) -> Result<Self> {
        let t = tracee.borrow_mut();
        let tid = t.tid();
        let saved = t.regs().map_err(|e| perr("GETREGS", tid, e))?;
        let saved_mask = t.sigmask().map_err(|e| perr("GETSIGMASK", tid, e))?;
        t.set_sigmask(!0u64)
            .map_err(|e| perr("SETSIGMASK", tid, e))?;
        Ok(Remote {
            tracee,
            tid,
            gate,
            saved,
            saved_mask,
            deferred: Vec::new(),
            restore: Some(saved),
        })
    }

    /// [`Remote::on`] for a thread whose registers and signal mask the
    /// caller read just before (nothing ran it since), with `SIGTRAP` let
    /// through from the start (see [`Remote::let_traps_through`]): one
    /// ptrace request instead of four.
    pub fn on_read(mut tracee: T, gate: Gate, regs: Regs, mask: u64) -> Result<Self> {
        let t = tracee.borrow_mut();
        let tid = t.tid();
        let trap = 1u64 << (libc::SIGTRAP - 1);
        t.set_sigmask(!trap)
            .map_err(|e| perr("SETSIGMASK", tid, e))?;
        Ok(Remote {
            tracee,
            tid,
            gate,
            saved: regs,
            saved_mask: mask,
            deferred: Vec::new(),
            restore: Some(regs),
        })
    }

    pub fn tid(&self) -> Tid {
        self.tid
    }

    /// Lets `SIGTRAP` through the session's mask (every other signal stays
    /// blocked). A trap (`int3`, a single step) raised while `SIGTRAP` is
    /// blocked makes the kernel unblock it and reset its action to
    /// `SIG_DFL`, which would take a handler away from the thread's
    /// process; unblocked, the trap is only a stop for the tracer. A
    /// `SIGTRAP` sent from elsewhere meanwhile is told from a trap by the
    /// address and delivered again at the end of the session.
    pub fn let_traps_through(&mut self) -> Result<()> {
        let tid = self.tid;
        let trap = 1u64 << (libc::SIGTRAP - 1);
        self.tracee
            .borrow_mut()
            .set_sigmask(!trap)
            .map_err(|e| perr("SETSIGMASK", tid, e))
    }

    /// Keeps signal `sig`, which stopped the thread, to deliver again when
    /// the session ends.
    pub(super) fn defer(&mut self, sig: i32) {
        self.deferred.push(sig);
    }
    /// The registers the thread had when the session began.
    pub fn saved_regs(&self) -> &Regs {
        &self.saved
    }
    /// The signal mask the thread had when the session began.
    pub fn saved_mask(&self) -> u64 {
        self.saved_mask
    }
    pub fn set_gate(&mut self, gate: Gate) {
        self.gate = gate;
    }

    /// Which registers and mask to put back when the session ends (instead
    /// of the ones found at the start).
    pub fn set_final(&mut self, regs: Regs, mask: u64) {
        self.restore = Some(regs);
        self.saved_mask = mask;
    }

    /// Runs one syscall; returns the raw `rax` (negative errno on failure).
    pub fn raw(&mut self, nr: i64, args: &[u64]) -> Result<i64> {
        let tid = self.tid;
        let mut r = self.saved;
        let ip = match self.gate {
            Gate::Syscall(ip) | Gate::Trap(ip) | Gate::Step(ip) => ip,
        };
        r.rip = ip;
        r.rax = nr as u64;
        // orig_rax = -1: the kernel must not apply syscall-restart logic to
        // the registers we load.
        r.orig_rax = u64::MAX;
        let a = |i: usize| args.get(i).copied().unwrap_or(0);
        r.rdi = a(0);
        r.rsi = a(1);
        r.rdx = a(2);
        r.r10 = a(3);
        r.r8 = a(4);
        r.r9 = a(5);
        self.tracee
            .borrow_mut()
            .set_regs(&r)
            .map_err(|e| perr("SETREGS", tid, e))?;
        match self.gate {
            Gate::Syscall(_) => {
                self.resume_until(Resume::Syscall, |s| s == Stop::Syscall)?; // entry
                self.resume_until(Resume::Syscall, |s| s == Stop::Syscall)?; // exit
            }
            Gate::Trap(_) => {
                self.resume_until(Resume::Cont, |s| s == Stop::Signal(libc::SIGTRAP))?;
            }
            Gate::Step(_) => loop {
                self.resume_until(Resume::Step, |s| s == Stop::Signal(libc::SIGTRAP))?;
                let out = self.regs()?;
                if out.rip == ip + 2 {
                    return Ok(out.rax as i64);
                }
                if out.rip != ip {
                    return Err(RemoteError::Unexpected {
                        tid,
                        stop: Stop::Signal(libc::SIGTRAP),
                    });
                }
                // A SIGTRAP from elsewhere, before the syscall ran: deliver
                // it later and step again.
                self.defer(libc::SIGTRAP);
            },
        }
        let out = self
            .tracee
            .borrow()
            .regs()
            .map_err(|e| perr("GETREGS", tid, e))?;
        Ok(out.rax as i64)
    }

    /// The thread's current registers.
    pub(super) fn regs(&self) -> Result<Regs> {
        let tid = self.tid;
        self.tracee
            .borrow()
            .regs()
            .map_err(|e| perr("GETREGS", tid, e))
    }

    /// Loads registers into the thread (they are put back when the session ends).
    pub(super) fn set_regs(&mut self, r: &Regs) -> Result<()> {
        let tid = self.tid;
        self.tracee
            .borrow_mut()
            .set_regs(r)
            .map_err(|e| perr("SETREGS", tid, e))
    }

    pub(super) fn resume_until(&mut self, how: Resume, want: impl Fn(Stop) -> bool) -> Result<()> {
        let tid = self.tid;
        loop {
            let stop = self
                .tracee
                .borrow_mut()
                .step(how, None)
                .map_err(|e| perr("resume", tid, e))?;
            if want(stop) {
                return Ok(());
            }
            match stop {
                Stop::Exited(_) | Stop::Killed(_) => {
                    self.restore = None;
                    return Err(RemoteError::Gone(tid));
                }
                // A stop signal or SIGKILL-like event we cannot block: keep
                // it for later and carry on.
                Stop::Signal(sig) => self.deferred.push(sig),
                // Group-stop re-reports, and clone events of threads we create.
                Stop::EventStop(_) | Stop::Event(_) => {}
                stop => return Err(RemoteError::Unexpected { tid, stop }),
            }
        }
    }

    /// Runs one syscall and maps a negative result to an error.
    pub fn call(&mut self, nr: i64, args: &[u64]) -> Result<u64> {
        let v = self.raw(nr, args)?;
        if (-4095..0).contains(&v) {
            return Err(RemoteError::Syscall {
                name: name_of(nr),
                tid: self.tid,
                errno: Errno::from_raw(-v as i32),
            });
        }
        Ok(v as u64)
    }

    /// Ends the session: puts back the registers and mask and returns the
    /// signals that must be delivered again.
    pub fn finish(mut self) -> Result<Vec<i32>> {
        self.put_back()?;
        Ok(std::mem::take(&mut self.deferred))
    }

    fn put_back(&mut self) -> Result<()> {
        if let Some(regs) = self.restore.take() {
            let tid = self.tid;
            let t = self.tracee.borrow_mut();
            t.set_regs(&regs).map_err(|e| perr("SETREGS", tid, e))?;
            t.set_sigmask(self.saved_mask)
                .map_err(|e| perr("SETSIGMASK", tid, e))?;
        }
        Ok(())
    }

    /// Signals that arrived during the session and must be delivered again.
    pub fn deferred(&self) -> &[i32] {
        &self.deferred
    }

    /// The stopped thread, for what is not a syscall (its rseq
    /// registration, extended registers, ptrace options); the session puts
    /// its registers and mask back at the end whatever is done here.
    pub fn tracee(&mut self) -> &mut Stopped {
        self.tracee.borrow_mut()
    }
}

impl Remote<Stopped> {
    /// Ends the session like [`Remote::finish`] and hands the thread back,
    /// still stopped, with the signals to deliver again.
    pub fn end(self) -> Result<(Stopped, Vec<i32>)> {
        let tid = self.tid;
        let deferred = self.finish()?;
        // The session held the only handle and kept the thread stopped.
        Ok((Stopped::assume_stopped(tid), deferred))
    }
}

impl<T: BorrowMut<Stopped>> Drop for Remote<T> {
    fn drop(&mut self) {
        let _ = self.put_back();
    }
}

fn perr(op: &'static str, tid: Tid, errno: Errno) -> RemoteError {
    if errno == Errno::ESRCH {
        RemoteError::Gone(tid)
    } else {
        RemoteError::Ptrace { op, tid, errno }
    }
}

/// Sends the signals a session deferred back to the thread. The interval
/// timers' signals go to the process, as the kernel sends them: a periodic
/// `ITIMER_REAL` is re-armed only when its `SIGALRM` is taken from the
/// process's queue, and one redelivered to the thread would leave it
/// looking disarmed while the next expiry waits behind it.
pub fn redeliver(pid: Pid, tid: Tid, sigs: &[i32]) {
    for &s in sigs {
        if let Ok(sig) = Signal::try_from(s) {
            let to_process = matches!(sig, Signal::SIGALRM | Signal::SIGVTALRM | Signal::SIGPROF);
            // SAFETY: kill and tgkill only send a signal; the ids are plain
            // integers.
            let _ = unsafe {
                if to_process {
                    libc::kill(pid.as_raw(), sig as i32)
                } else {
                    libc::syscall(libc::SYS_tgkill, pid.as_raw(), tid.as_raw(), sig as i32) as i32
                }
            };
        }
    }
}

/// Finds the offset of a `syscall` instruction (`0f 05`) in code bytes.
pub fn find_syscall_insn(code: &[u8]) -> Option<usize> {
    code.windows(2).position(|w| w == [0x0f, 0x05])
}

/// Keeps the calling thread and a tracee on one CPU while remote syscalls
/// run, and gives both their affinity back when dropped. Each injected
/// syscall is a ptrace stop and a wake-up: about 95 us when tracer and
/// tracee sit on different CPUs of this VM, 14 us on the same one.
///
/// ```ignore
/// let _pin = SameCpu::new(stopped.tid()); // before Remote::on(stopped, ..)
/// ```
///
/// Pinning is best effort: where `sched_setaffinity` is refused nothing is
/// pinned and nothing is put back.
pub struct SameCpu {
    tid: Tid,
    mine: Option<libc::cpu_set_t>,
    theirs: Option<libc::cpu_set_t>,
}

/// `sched_getaffinity` of thread `tid`, or of the calling thread (`None`).
fn get_affinity(tid: Option<Tid>) -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain data; all zeroes is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let tid = tid.map_or(0, Tid::as_raw);
    // SAFETY: the kernel writes at most size_of::<cpu_set_t>() bytes into `set`.
    let r = unsafe { libc::sched_getaffinity(tid, std::mem::size_of_val(&set), &mut set) };
    (r == 0).then_some(set)
}

/// `sched_setaffinity` of thread `tid`, or of the calling thread (`None`).
fn set_affinity(tid: Option<Tid>, set: &libc::cpu_set_t) -> bool {
    let tid = tid.map_or(0, Tid::as_raw);
    // SAFETY: the kernel reads size_of::<cpu_set_t>() bytes from the live `set`.
    unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(set), set) == 0 }
}

/// Gives thread `to` the CPU affinity of thread `from` (best effort).
pub fn copy_affinity(from: Tid, to: Tid) {
    if let Some(set) = get_affinity(Some(from)) {
        set_affinity(Some(to), &set);
    }
}

impl SameCpu {
    /// Pins this thread and `tid` to the CPU this thread runs on now.
    pub fn new(tid: Tid) -> SameCpu {
        let mut pin = SameCpu {
            tid,
            mine: None,
            theirs: None,
        };
        // SAFETY: sched_getcpu has no arguments and no memory effects.
        let cpu = unsafe { libc::sched_getcpu() };
        let (Some(mine), Some(theirs)) = (get_affinity(None), get_affinity(Some(tid))) else {
            return pin;
        };
        // SAFETY: CPU_ISSET reads one bit of the live set; cpu is checked
        // non-negative first and is below CPU_SETSIZE (a CPU number).
        if cpu < 0 || !unsafe { libc::CPU_ISSET(cpu as usize, &theirs) } {
            return pin; // the tracee may not run there: leave both alone
        }
        // SAFETY: cpu_set_t is plain data; all zeroes is an empty set.
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: CPU_SET sets one bit of the live set; cpu is a CPU number.
        unsafe { libc::CPU_SET(cpu as usize, &mut one) };
        if set_affinity(None, &one) {
            pin.mine = Some(mine);
            if set_affinity(Some(tid), &one) {
                pin.theirs = Some(theirs);
            }
        }
        pin
    }
}

/// The calling thread kept on the CPU it runs on now, for as long as it
/// traces many processes one after the other: each tracee is then pinned
/// beside it with [`TracerCpu::beside`] (one `sched_getaffinity` and two
/// `sched_setaffinity` calls a tracee instead of [`SameCpu::new`]'s two
/// and four). Dropping it gives the thread its affinity back.
///
/// Best effort like [`SameCpu`]: `None` where the calling thread cannot be
/// pinned.
pub struct TracerCpu {
    cpu: usize,
    mine: libc::cpu_set_t,
}

impl TracerCpu {
    /// Pins the calling thread to the CPU it runs on now.
    pub fn pin() -> Option<TracerCpu> {
        // SAFETY: sched_getcpu has no arguments and no memory effects.
        let cpu = usize::try_from(unsafe { libc::sched_getcpu() }).ok()?;
        let mine = get_affinity(None)?;
        // SAFETY: cpu_set_t is plain data; all zeroes is an empty set.
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: CPU_SET sets one bit of the live set; cpu is a CPU number.
        unsafe { libc::CPU_SET(cpu, &mut one) };
        set_affinity(None, &one).then_some(TracerCpu { cpu, mine })
    }

    /// Pins thread `tid` to the tracer's CPU until the guard is dropped,
    /// which gives it exactly the affinity it had; a thread that may not
    /// run there is left alone.
    pub fn beside(&self, tid: Tid) -> SameCpu {
        let mut pin = SameCpu {
            tid,
            mine: None,
            theirs: None,
        };
        let Some(theirs) = get_affinity(Some(tid)) else {
            return pin;
        };
        // SAFETY: CPU_ISSET reads one bit of the live set; cpu is a CPU number.
        if !unsafe { libc::CPU_ISSET(self.cpu, &theirs) } {
            return pin;
        }
        // SAFETY: CPU_COUNT only reads the live set.
        if unsafe { libc::CPU_COUNT(&theirs) } == 1 {
            return pin; // already there and nowhere else
        }
        // SAFETY: cpu_set_t is plain data; all zeroes is an empty set.
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: CPU_SET sets one bit of the live set; cpu is a CPU number.
        unsafe { libc::CPU_SET(self.cpu, &mut one) };
        if set_affinity(Some(tid), &one) {
            pin.theirs = Some(theirs);
        }
        pin
    }
}

impl Drop for TracerCpu {
    fn drop(&mut self) {
        set_affinity(None, &self.mine);
    }
}

impl Drop for SameCpu {
    fn drop(&mut self) {
        if let Some(set) = &self.theirs {
            set_affinity(Some(self.tid), set);
        }
        if let Some(set) = &self.mine {
            set_affinity(None, set);
        }
    }
}

#[cfg(test)]
mod pin_tests {
    use super::*;

    #[test]
    fn same_cpu_pins_and_puts_back() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .expect("sleep");
        let tid = Tid::from_raw(child.id() as i32);
        // SAFETY: CPU_COUNT only reads the live set.
        let count = |s: &libc::cpu_set_t| unsafe { libc::CPU_COUNT(s) };
        let before = (
            get_affinity(None).unwrap(),
            get_affinity(Some(tid)).unwrap(),
        );
        {
            let _pin = SameCpu::new(tid);
            let (a, b) = (
                get_affinity(None).unwrap(),
                get_affinity(Some(tid)).unwrap(),
            );
            assert_eq!(count(&a), 1);
            assert_eq!(count(&b), 1);
        }
        let after = (
            get_affinity(None).unwrap(),
            get_affinity(Some(tid)).unwrap(),
        );
        assert_eq!(count(&before.0), count(&after.0));
        assert_eq!(count(&before.1), count(&after.1));
        let _ = child.kill();
        let _ = child.wait();
    }
}
