//! ptrace: the requests nix lacks (register sets, signal masks, queued
//! siginfo, rseq), and stop events decoded into one enum.
//!
//! "The tracee died" is an error value ([`Stop::Exited`], [`Stop::Killed`] or
//! `ESRCH`), never a panic.

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

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
pub fn seize(tid: i32, exitkill: bool) -> nix::Result<()> {
    let mut opts = ptrace::Options::PTRACE_O_TRACESYSGOOD;
    if exitkill {
        opts |= ptrace::Options::PTRACE_O_EXITKILL;
    }
    ptrace::seize(pid(tid), opts)
}

/// Adds `PTRACE_O_TRACECLONE`: threads the tracee creates are traced too.
pub fn set_options_clone(tid: i32) -> nix::Result<()> {
    ptrace::setoptions(
        pid(tid),
        ptrace::Options::PTRACE_O_TRACESYSGOOD
            | ptrace::Options::PTRACE_O_EXITKILL
            | ptrace::Options::PTRACE_O_TRACECLONE,
    )
}

/// The id of the new thread or process a `PTRACE_EVENT_CLONE` stop reports.
pub fn event_msg(tid: i32) -> nix::Result<i32> {
    ptrace::getevent(pid(tid)).map(|v| v as i32)
}

pub fn interrupt(tid: i32) -> nix::Result<()> {
    ptrace::interrupt(pid(tid))
}

pub fn detach(tid: i32, sig: Option<Signal>) -> nix::Result<()> {
    ptrace::detach(pid(tid), sig)
}

pub fn cont(tid: i32, sig: Option<Signal>) -> nix::Result<()> {
    ptrace::cont(pid(tid), sig)
}

/// Resumes to the next syscall entry or exit.
pub fn syscall(tid: i32, sig: Option<Signal>) -> nix::Result<()> {
    ptrace::syscall(pid(tid), sig)
}

pub fn get_regs(tid: i32) -> nix::Result<Regs> {
    ptrace::getregs(pid(tid))
}

pub fn set_regs(tid: i32, regs: &Regs) -> nix::Result<()> {
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
pub fn get_xstate(tid: i32) -> nix::Result<Vec<u8>> {
    let mut buf = vec![0u8; XSTATE_MAX];
    let n = getregset_raw(tid, NT_X86_XSTATE, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

pub fn set_xstate(tid: i32, xstate: &[u8]) -> nix::Result<()> {
    setregset_raw(tid, NT_X86_XSTATE, xstate)
}

/// Sets the general registers from raw `NT_PRSTATUS` bytes.
pub fn set_regs_bytes(tid: i32, regs: &[u8]) -> nix::Result<()> {
    setregset_raw(tid, NT_PRSTATUS, regs)
}

pub fn get_sigmask(tid: i32) -> nix::Result<u64> {
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

pub fn set_sigmask(tid: i32, mask: u64) -> nix::Result<()> {
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
pub fn peek_siginfo(tid: i32, shared: bool) -> nix::Result<Vec<SigInfo>> {
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
pub fn rseq_config(tid: i32) -> nix::Result<Option<RseqConfig>> {
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
pub fn wait(tid: i32) -> nix::Result<Stop> {
    loop {
        match waitpid(pid(tid), Some(WaitPidFlag::__WALL)) {
            Ok(ws) => return Ok(decode(ws)),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Returns the first report of a task, or `None` if it has none now.
pub fn try_wait(tid: i32) -> nix::Result<Option<Stop>> {
    match waitpid(pid(tid), Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG))? {
        WaitStatus::StillAlive => Ok(None),
        ws => Ok(Some(decode(ws))),
    }
}
