//! ptrace: the requests nix lacks (register sets, signal masks, queued
//! siginfo, rseq), stop events decoded into one enum, and the tracee types.
//!
//! A seized thread is either [`Running`] or [`Stopped`] (reverie's
//! `safeptrace` idea): only a `Stopped` handle can have its registers read
//! or written or run remote syscalls, resuming it consumes it into a
//! `Running`, and only waiting on a `Running` gives a `Stopped` back. "The
//! tracee died" is a value ([`Waited::Gone`], a [`Stop::is_gone`] stop, or
//! `ESRCH` from a call), never a panic.
//!
//! The free functions taking a raw thread id are the layer under those
//! types and private to this module: the rest of the crate holds a
//! thread only through the types.

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::ids::Tid;

pub use libc::user_regs_struct as Regs;

const NT_PRSTATUS: libc::c_int = 1;
const NT_X86_XSTATE: libc::c_int = 0x202;
const PTRACE_PEEKSIGINFO: libc::c_uint = 0x4209;
const PTRACE_GETSIGMASK: libc::c_uint = 0x420a;
const PTRACE_SETSIGMASK: libc::c_uint = 0x420b;
const PTRACE_GET_RSEQ_CONFIGURATION: libc::c_uint = 0x420f;
const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
/// Largest xstate area we accept (AVX-512 with AMX tiles fits in 12 KiB).
const XSTATE_MAX: usize = 64 << 10;

/// Raw `siginfo_t` bytes.
pub type SigInfo = [u8; 128];

fn pid(tid: i32) -> Pid {
    Pid::from_raw(tid)
}

/// Seizes a task without stopping it; the tracer gets killed-on-exit
/// semantics only when `exitkill` is set.
fn seize(tid: i32, exitkill: bool) -> nix::Result<()> {
    let mut opts = ptrace::Options::PTRACE_O_TRACESYSGOOD;
    if exitkill {
        opts |= ptrace::Options::PTRACE_O_EXITKILL;
    }
    ptrace::seize(pid(tid), opts)
}

/// Adds `PTRACE_O_TRACECLONE`: threads the tracee creates are traced too.
fn set_options_clone(tid: i32) -> nix::Result<()> {
    ptrace::setoptions(
        pid(tid),
        ptrace::Options::PTRACE_O_TRACESYSGOOD
            | ptrace::Options::PTRACE_O_EXITKILL
            | ptrace::Options::PTRACE_O_TRACECLONE,
    )
}

/// The id of the new thread or process a `PTRACE_EVENT_CLONE` stop reports.
fn event_msg(tid: i32) -> nix::Result<i32> {
    ptrace::getevent(pid(tid)).map(|v| v as i32)
}

fn interrupt(tid: i32) -> nix::Result<()> {
    ptrace::interrupt(pid(tid))
}

fn detach(tid: i32, sig: Option<Signal>) -> nix::Result<()> {
    ptrace::detach(pid(tid), sig)
}

fn cont(tid: i32, sig: Option<Signal>) -> nix::Result<()> {
    ptrace::cont(pid(tid), sig)
}

/// Resumes to the next syscall entry or exit.
fn syscall(tid: i32, sig: Option<Signal>) -> nix::Result<()> {
    ptrace::syscall(pid(tid), sig)
}

/// Resumes for one instruction (a `syscall` instruction runs whole and
/// stops on its return, before any other user instruction).
fn single_step(tid: i32, sig: Option<Signal>) -> nix::Result<()> {
    ptrace::step(pid(tid), sig)
}

fn get_regs(tid: i32) -> nix::Result<Regs> {
    ptrace::getregs(pid(tid))
}

fn set_regs(tid: i32, regs: &Regs) -> nix::Result<()> {
    ptrace::setregs(pid(tid), *regs)
}

/// The general registers as raw bytes (`NT_PRSTATUS`), for the image.
pub fn regs_to_bytes(regs: &Regs) -> Vec<u8> {
    // SAFETY: user_regs_struct is plain old data of u64 fields; viewing it
    // as bytes for its full size is valid.
    let b = unsafe {
        std::slice::from_raw_parts(
            (regs as *const Regs).cast::<u8>(),
            std::mem::size_of::<Regs>(),
        )
    };
    b.to_vec()
}

/// Parses raw `NT_PRSTATUS` bytes; `None` if the size is wrong.
pub fn regs_from_bytes(b: &[u8]) -> Option<Regs> {
    if b.len() != std::mem::size_of::<Regs>() {
        return None;
    }
    // SAFETY: all-zero bytes are a valid user_regs_struct (plain integers).
    let mut regs: Regs = unsafe { std::mem::zeroed() };
    // SAFETY: the destination is a user_regs_struct of exactly b.len() bytes
    // and the regions do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(b.as_ptr(), (&mut regs as *mut Regs).cast::<u8>(), b.len())
    };
    Some(regs)
}

fn getregset_raw(tid: i32, nt: libc::c_int, buf: &mut [u8]) -> nix::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: the iovec points at `buf`, valid for writes of its length for
    // the duration of the call; the kernel shortens iov_len to what it wrote.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGSET,
            tid,
            nt as usize as *mut libc::c_void,
            &mut iov as *mut libc::iovec,
        )
    };
    Errno::result(r)?;
    Ok(iov.iov_len)
}

fn setregset_raw(tid: i32, nt: libc::c_int, buf: &[u8]) -> nix::Result<()> {
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: the iovec points at `buf`, valid for reads of its length; the
    // kernel only reads through it for PTRACE_SETREGSET.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_SETREGSET,
            tid,
            nt as usize as *mut libc::c_void,
            &mut iov as *mut libc::iovec,
        )
    };
    Errno::result(r).map(drop)
}

/// The extended register state (FPU, SSE, AVX, AVX-512) as XSAVE bytes.
fn get_xstate(tid: i32) -> nix::Result<Vec<u8>> {
    let mut buf = vec![0u8; XSTATE_MAX];
    let n = getregset_raw(tid, NT_X86_XSTATE, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn set_xstate(tid: i32, xstate: &[u8]) -> nix::Result<()> {
    setregset_raw(tid, NT_X86_XSTATE, xstate)
}

/// Sets the general registers from raw `NT_PRSTATUS` bytes.
fn set_regs_bytes(tid: i32, regs: &[u8]) -> nix::Result<()> {
    setregset_raw(tid, NT_PRSTATUS, regs)
}

fn get_sigmask(tid: i32) -> nix::Result<u64> {
    let mut mask: u64 = 0;
    // SAFETY: PTRACE_GETSIGMASK writes addr (= 8) bytes to data, which points
    // at a live u64.
    let r = unsafe {
        libc::ptrace(
            PTRACE_GETSIGMASK,
            tid,
            8usize as *mut libc::c_void,
            &mut mask as *mut u64,
        )
    };
    Errno::result(r)?;
    Ok(mask)
}

fn set_sigmask(tid: i32, mask: u64) -> nix::Result<()> {
    // SAFETY: PTRACE_SETSIGMASK reads addr (= 8) bytes from data, which
    // points at a live u64.
    let r = unsafe {
        libc::ptrace(
            PTRACE_SETSIGMASK,
            tid,
            8usize as *mut libc::c_void,
            &mask as *const u64,
        )
    };
    Errno::result(r).map(drop)
}

#[repr(C)]
struct PeekSiginfoArgs {
    off: u64,
    flags: u32,
    nr: i32,
}

/// The queued signals of a thread (`shared = false`) or of its whole
/// process (`shared = true`), without dequeuing them.
fn peek_siginfo(tid: i32, shared: bool) -> nix::Result<Vec<SigInfo>> {
    let mut out = Vec::new();
    let mut buf = vec![[0u8; 128]; 32];
    loop {
        let args = PeekSiginfoArgs {
            off: out.len() as u64,
            flags: if shared { PTRACE_PEEKSIGINFO_SHARED } else { 0 },
            nr: buf.len() as i32,
        };
        // SAFETY: args is a live ptrace_peeksiginfo_args; buf has room for
        // args.nr siginfo_t records of 128 bytes each.
        let r = unsafe {
            libc::ptrace(
                PTRACE_PEEKSIGINFO,
                tid,
                &args as *const PeekSiginfoArgs,
                buf.as_mut_ptr(),
            )
        };
        let n = Errno::result(r)? as usize;
        out.extend_from_slice(&buf[..n]);
        if n < buf.len() {
            return Ok(out);
        }
    }
}

/// A thread's rseq registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RseqConfig {
    pub addr: u64,
    pub len: u32,
    pub sig: u32,
    pub flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct RawRseqConfig {
    rseq_abi_pointer: u64,
    rseq_abi_size: u32,
    signature: u32,
    flags: u32,
    pad: u32,
}

/// The thread's rseq area, `None` when it has none registered.
fn rseq_config(tid: i32) -> nix::Result<Option<RseqConfig>> {
    let mut c = RawRseqConfig::default();
    // SAFETY: the kernel writes at most addr (= size of the struct) bytes
    // into `c`, a live struct of that size.
    let r = unsafe {
        libc::ptrace(
            PTRACE_GET_RSEQ_CONFIGURATION,
            tid,
            std::mem::size_of::<RawRseqConfig>() as *mut libc::c_void,
            &mut c as *mut RawRseqConfig,
        )
    };
    Errno::result(r)?;
    Ok((c.rseq_abi_pointer != 0).then_some(RseqConfig {
        addr: c.rseq_abi_pointer,
        len: c.rseq_abi_size,
        sig: c.signature,
        flags: c.flags,
    }))
}

/// What a traced task reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Stopped at a syscall entry or exit (`SIGTRAP | 0x80`).
    Syscall,
    /// About to receive this signal (signal-delivery-stop).
    Signal(i32),
    /// A `PTRACE_EVENT_STOP`: group-stop (with the stop signal) or the stop
    /// a `PTRACE_INTERRUPT` causes (with `SIGTRAP`).
    EventStop(i32),
    /// Another ptrace event (`PTRACE_EVENT_*`).
    Event(i32),
    Exited(i32),
    Killed(i32),
}

impl Stop {
    pub fn is_gone(&self) -> bool {
        matches!(self, Stop::Exited(_) | Stop::Killed(_))
    }
}

fn decode(ws: WaitStatus) -> Stop {
    match ws {
        WaitStatus::Exited(_, c) => Stop::Exited(c),
        WaitStatus::Signaled(_, s, _) => Stop::Killed(s as i32),
        WaitStatus::Stopped(_, s) => Stop::Signal(s as i32),
        WaitStatus::PtraceSyscall(_) => Stop::Syscall,
        WaitStatus::PtraceEvent(_, s, ev) if ev == libc::PTRACE_EVENT_STOP => {
            Stop::EventStop(s as i32)
        }
        WaitStatus::PtraceEvent(_, _, ev) => Stop::Event(ev),
        // Continued and StillAlive cannot come without WCONTINUED/WNOHANG.
        _ => Stop::Event(-1),
    }
}

/// Waits for the next report of one task.
fn wait(tid: i32) -> nix::Result<Stop> {
    loop {
        match waitpid(pid(tid), Some(WaitPidFlag::__WALL)) {
            Ok(ws) => return Ok(decode(ws)),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Returns the first report of a task, or `None` if it has none now.
fn try_wait(tid: i32) -> nix::Result<Option<Stop>> {
    match waitpid(pid(tid), Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG))? {
        WaitStatus::StillAlive => Ok(None),
        ws => Ok(Some(decode(ws))),
    }
}

/// How a stopped tracee is resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// `PTRACE_CONT`: until the next signal or event.
    Cont,
    /// `PTRACE_SYSCALL`: until the next syscall entry or exit as well.
    Syscall,
    /// `PTRACE_SINGLESTEP`: one instruction, then a `SIGTRAP` stop.
    Step,
}

/// A seized thread that may be running: it can be interrupted or waited
/// for, nothing else.
#[derive(Debug)]
#[must_use = "a running tracee is only given back stopped by waiting for it"]
pub struct Running {
    tid: Tid,
}

/// A seized thread in a ptrace stop: the only handle through which its
/// registers, signal mask and queued signals are read or written and
/// remote syscalls run. Not `Clone`: one handle per stopped thread.
///
/// A thread can still die while stopped (SIGKILL); then every call fails
/// with `ESRCH`.
#[derive(Debug)]
pub struct Stopped {
    tid: Tid,
}

/// What waiting for a running tracee gave.
#[derive(Debug)]
pub enum Waited {
    /// It stopped; the stop says why.
    Stopped(Stopped, Stop),
    /// It exited or was killed ([`Stop::Exited`] or [`Stop::Killed`]).
    Gone(Tid, Stop),
}

/// Seizes a thread without stopping it (see [`seize`]).
pub fn seize_thread(tid: Tid, exitkill: bool) -> nix::Result<Running> {
    seize(tid.as_raw(), exitkill)?;
    Ok(Running { tid })
}

fn waited(tid: Tid, stop: Stop) -> Waited {
    if stop.is_gone() {
        Waited::Gone(tid, stop)
    } else {
        Waited::Stopped(Stopped { tid }, stop)
    }
}

impl Running {
    /// A thread its creator's tracer traces from birth
    /// (`PTRACE_O_TRACECLONE`): it starts with a [`Stop::EventStop`] the
    /// caller waits for.
    pub fn traced_from_clone(tid: Tid) -> Running {
        Running { tid }
    }

    pub fn tid(&self) -> Tid {
        self.tid
    }

    /// `PTRACE_INTERRUPT`: the thread stops soon with a
    /// [`Stop::EventStop`].
    pub fn interrupt(&self) -> nix::Result<()> {
        interrupt(self.tid.as_raw())
    }

    /// Waits for the thread's next report.
    pub fn wait(self) -> nix::Result<Waited> {
        Ok(waited(self.tid, wait(self.tid.as_raw())?))
    }

    /// The thread's next report if it has one now, else the handle back.
    pub fn try_wait(self) -> nix::Result<std::result::Result<Waited, Running>> {
        Ok(match try_wait(self.tid.as_raw())? {
            Some(stop) => Ok(waited(self.tid, stop)),
            None => Err(self),
        })
    }
}

impl Stopped {
    /// A handle on `tid`, which the caller knows by other means to be a
    /// seized thread in a ptrace stop: a remote session handing back the
    /// thread it held ([`super::remote::Remote::end`]). Not for use
    /// outside `sys`.
    pub(super) fn assume_stopped(tid: Tid) -> Stopped {
        Stopped { tid }
    }

    pub fn tid(&self) -> Tid {
        self.tid
    }

    pub fn regs(&self) -> nix::Result<Regs> {
        get_regs(self.tid.as_raw())
    }
    pub fn set_regs(&mut self, regs: &Regs) -> nix::Result<()> {
        set_regs(self.tid.as_raw(), regs)
    }
    /// Sets the general registers from raw `NT_PRSTATUS` bytes.
    pub fn set_regs_bytes(&mut self, regs: &[u8]) -> nix::Result<()> {
        set_regs_bytes(self.tid.as_raw(), regs)
    }
    /// The extended register state (FPU, SSE, AVX, AVX-512) as XSAVE bytes.
    pub fn xstate(&self) -> nix::Result<Vec<u8>> {
        get_xstate(self.tid.as_raw())
    }
    pub fn set_xstate(&mut self, xstate: &[u8]) -> nix::Result<()> {
        set_xstate(self.tid.as_raw(), xstate)
    }
    pub fn sigmask(&self) -> nix::Result<u64> {
        get_sigmask(self.tid.as_raw())
    }
    pub fn set_sigmask(&mut self, mask: u64) -> nix::Result<()> {
        set_sigmask(self.tid.as_raw(), mask)
    }
    /// Signals queued to the thread (`shared = false`) or its process.
    pub fn pending(&self, shared: bool) -> nix::Result<Vec<SigInfo>> {
        peek_siginfo(self.tid.as_raw(), shared)
    }
    pub fn rseq(&self) -> nix::Result<Option<RseqConfig>> {
        rseq_config(self.tid.as_raw())
    }
    /// The id a `PTRACE_EVENT_CLONE` stop reports.
    pub fn event_msg(&self) -> nix::Result<Tid> {
        event_msg(self.tid.as_raw()).map(Tid::from_raw)
    }
    /// Adds `PTRACE_O_TRACECLONE` (see [`set_options_clone`]).
    pub fn trace_clones(&mut self) -> nix::Result<()> {
        set_options_clone(self.tid.as_raw())
    }
    /// Adds `PTRACE_O_EXITKILL` to a thread seized without it: from now
    /// on the thread dies with its tracer.
    pub fn kill_on_exit(&mut self) -> nix::Result<()> {
        ptrace::setoptions(
            pid(self.tid.as_raw()),
            ptrace::Options::PTRACE_O_TRACESYSGOOD | ptrace::Options::PTRACE_O_EXITKILL,
        )
    }
    /// `PTRACE_INTERRUPT`, taking effect at the next resume.
    pub fn interrupt(&self) -> nix::Result<()> {
        interrupt(self.tid.as_raw())
    }

    /// Resumes the thread, delivering `sig` if given.
    pub fn resume(self, how: Resume, sig: Option<Signal>) -> nix::Result<Running> {
        match how {
            Resume::Cont => cont(self.tid.as_raw(), sig)?,
            Resume::Syscall => syscall(self.tid.as_raw(), sig)?,
            Resume::Step => single_step(self.tid.as_raw(), sig)?,
        }
        Ok(Running { tid: self.tid })
    }

    /// Resumes the thread and waits for its next report, keeping the
    /// handle: afterwards it is stopped again, unless the returned stop
    /// [`Stop::is_gone`] (then every later call fails with `ESRCH`).
    pub fn step(&mut self, how: Resume, sig: Option<Signal>) -> nix::Result<Stop> {
        let tid = self.tid.as_raw();
        match how {
            Resume::Cont => cont(tid, sig)?,
            Resume::Syscall => syscall(tid, sig)?,
            Resume::Step => single_step(tid, sig)?,
        }
        wait(tid)
    }

    /// Lets the thread go, delivering `sig` if given.
    pub fn detach(self, sig: Option<Signal>) -> nix::Result<()> {
        detach(self.tid.as_raw(), sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::remote::{self, Gate, Remote, nr};
    use crate::sys::{Pid, mem, proc};

    /// A `sleep` child, killed and reaped when dropped.
    struct Sleeper(std::process::Child);

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn stopped_sleeper() -> (Sleeper, Stopped) {
        let child = Sleeper(
            std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .expect("sleep"),
        );
        let tid = Tid::from_raw(child.0.id() as i32);
        let running = seize_thread(tid, false).expect("seize");
        running.interrupt().expect("interrupt");
        match running.wait().expect("wait") {
            Waited::Stopped(s, Stop::EventStop(_)) => (child, s),
            other => panic!("unexpected report {other:?}"),
        }
    }

    #[test]
    fn a_stopped_tracee_runs_remote_syscalls_and_is_let_go() {
        let (child, mut t) = stopped_sleeper();
        let pid = Pid::from_raw(child.0.id() as i32);
        let before = t.regs().expect("regs");
        let vdso = proc::maps(pid)
            .expect("maps")
            .into_iter()
            .find(|m| m.path == b"[vdso]")
            .expect("a vDSO");
        let mut code = vec![0u8; (vdso.end - vdso.start) as usize];
        mem::read_exact(pid, vdso.start, &mut code, &mut None).expect("read vDSO");
        let off = remote::find_syscall_insn(&code).expect("syscall insn");
        let gate = Gate::Syscall(vdso.start + off as u64);
        {
            let mut r = Remote::on(&mut t, gate).expect("session");
            assert_eq!(
                r.call(nr::GETPID, &[]).expect("getpid"),
                pid.as_u32() as u64
            );
            assert!(r.finish().expect("finish").is_empty());
        }
        let after = t.regs().expect("regs");
        assert_eq!((before.rip, before.rax), (after.rip, after.rax));
        t.detach(None).expect("detach");
    }

    #[test]
    fn a_killed_tracee_is_reported_gone() {
        let (mut child, t) = stopped_sleeper();
        let tid = t.tid();
        let running = t.resume(Resume::Cont, None).expect("resume");
        child.0.kill().expect("kill");
        // The first report may be the SIGKILL's exit, or an event first.
        let mut running = running;
        loop {
            match running.wait().expect("wait") {
                Waited::Gone(gone, Stop::Killed(sig)) => {
                    assert_eq!((gone, sig), (tid, libc::SIGKILL));
                    break;
                }
                Waited::Gone(_, other) => panic!("unexpected exit {other:?}"),
                Waited::Stopped(s, _) => running = s.resume(Resume::Cont, None).expect("resume"),
            }
        }
        let _ = child.0.wait();
    }
}
