//! Self-checkpoint: a running program writes an image of itself and goes
//! on; after a restart from that image the same call returns again, in the
//! restored process, and says so (as `fork` tells parent from child).
//!
//! ```no_run
//! use crtools::selfckpt::{Resumed, checkpoint_self};
//! let out = std::fs::File::create("/tmp/me.img").unwrap();
//! match checkpoint_self(&out).unwrap() {
//!     Resumed::Checkpointed => println!("image written, going on"),
//!     Resumed::Restored => println!("restored from the image"),
//! }
//! ```
//!
//! # How it works
//!
//! ```text
//!  caller (pid P)                         helper (child of P)
//!  STATE = PENDING (dirty private page)
//!  fork ------------------------------->  checkpoint(P, out, exclude: [helper],
//!  waitpid(helper)  <- frozen here ----      patch: STATE = RESTORED in the image)
//!       |           <- released -------   report in P's memory, _exit(0 | 1)
//!  waitpid returns the helper's status
//!  STATE is PENDING: Checkpointed
//!
//!  restored copy: waitpid is restarted, there is no such child: ECHILD;
//!  STATE reads RESTORED (the image's copy was patched): Restored
//! ```
//!
//! The helper must be a process of its own (a thread would be frozen with
//! the rest), and not part of the image: the checkpoint is told to leave it
//! out ([`crate::checkpoint::Options::exclude`]). The flag that tells the
//! two returns apart is a static word the caller sets before forking, so its
//! page is a dirty private page that is certainly dumped; the helper changes
//! it only in the image ([`crate::checkpoint::Options::patches`]). The
//! helper reports success or a message by writing into the caller's memory
//! with `process_vm_writev` (it may, it traces it), so no descriptor of the
//! caller is created for it and none ends up in the image.
//!
//! # What the restored process finds
//!
//! - Its descriptors as the image recorded them when the checkpoint began.
//!   If the image went to a regular file (for example the program's own
//!   standard output, `prog > out.img`), that descriptor is the same file
//!   reopened at the offset it had *before* the image was written, that is
//!   at the start of the image: output written there by the restored copy
//!   overwrites the image it came from (restore from a copy, or write the
//!   images elsewhere). A pipe to a reader outside the program (`prog |
//!   cat > out.img`) is reconnected by `cr-restart` to its own descriptor.
//! - Its original pid with `cr-restart`; another one with `--no-pids` or
//!   `cr-restart --in-place` (programs that cached their pid see the old one).
//! - Buffered output of the standard streams is flushed before the image is
//!   taken, so the restored copy does not print it again.
//!
//! # Requirements
//!
//! The caller must be allowed to trace its own child: as root always; as
//! another user the call declares its descendants as ptracers with
//! `PR_SET_PTRACER` for the time of the call (Yama). Calls are serialised
//! within the process. A program that reaps every child in a `SIGCHLD`
//! handler still works: the report lives in memory, not in the exit status.

use std::io::{BufWriter, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::checkpoint::{self, After};
use crate::error::{Error, Result};

/// Which return of [`checkpoint_self`] this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumed {
    /// In the original process: the image was written and it goes on.
    Checkpointed,
    /// In a process restored from that image.
    Restored,
}

/// Values of [`STATE`]: nonzero so the page that holds it is never an
/// all-zero page the checkpoint could skip.
const PENDING: u64 = u64::from_le_bytes(*b"crPENDNG");
const RESTORED: u64 = u64::from_le_bytes(*b"crRESTRD");
const IDLE: u64 = u64::from_le_bytes(*b"crIDLE__");

/// Set to [`PENDING`] by the caller, to [`RESTORED`] in the image only.
static STATE: AtomicU64 = AtomicU64::new(IDLE);

/// Where the helper reports: byte 0 is [`REPORT_OK`] or [`REPORT_FAILED`],
/// bytes 1..3 the length of the message that follows.
const REPORT_LEN: usize = 1024;
const REPORT_OK: u8 = 1;
const REPORT_FAILED: u8 = 2;
static REPORT: [AtomicU8; REPORT_LEN] = [const { AtomicU8::new(0) }; REPORT_LEN];

/// One self-checkpoint at a time per process.
static LOCK: Mutex<()> = Mutex::new(());

/// Writes an image of the calling process (and its children, if any) to
/// `out`, then returns [`Resumed::Checkpointed`]; in a process restored
/// from that image the call returns again, with [`Resumed::Restored`].
///
/// `out` is any open descriptor: a file, a pipe, the program's own
/// standard output. It is written through the same open file description,
/// so its offset advances by the image's size. The process's threads are
/// all frozen while the image is written, and resumed exactly as they were.
/// On error nothing changed but what was written to `out`.
pub fn checkpoint_self(out: impl AsFd) -> Result<Resumed> {
    let fd = out.as_fd().as_raw_fd();
    let _one = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // Output still buffered in our memory would be printed again by every
    // restored copy.
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    for b in &REPORT {
        b.store(0, Ordering::Relaxed);
    }
    // A write, so the page is private and dirty, and in the image.
    STATE.store(PENDING, Ordering::SeqCst);
    let yama = allow_descendants_to_trace();
    // SAFETY: getpid has no memory effects.
    let me = unsafe { libc::getpid() };
    // SAFETY: glibc's fork: the child runs only `helper_main`, which never
    // returns. glibc resets malloc's locks in the child; other threads'
    // locks (stdio) are not taken by the helper.
    let helper = unsafe { libc::fork() };
    if helper < 0 {
        let e = std::io::Error::last_os_error();
        STATE.store(IDLE, Ordering::SeqCst);
        forbid_descendants(yama);
        return Err(Error::msg(format!(
            "cannot checkpoint this process: cannot fork a helper: {e}"
        )));
    }
    if helper == 0 {
        // Never return into the caller's code, even on a panic.
        let _ = std::panic::catch_unwind(|| helper_main(me, fd));
        // SAFETY: leaves without running the caller's exit handlers.
        unsafe { libc::_exit(1) }
    }
    let status = wait_helper(helper);
    if STATE.load(Ordering::SeqCst) == RESTORED {
        STATE.store(IDLE, Ordering::SeqCst);
        return Ok(Resumed::Restored);
    }
    STATE.store(IDLE, Ordering::SeqCst);
    forbid_descendants(yama);
    match REPORT[0].load(Ordering::SeqCst) {
        REPORT_OK => Ok(Resumed::Checkpointed),
        REPORT_FAILED => {
            let len = u16::from_le_bytes([
                REPORT[1].load(Ordering::Relaxed),
                REPORT[2].load(Ordering::Relaxed),
            ]) as usize;
            let msg: Vec<u8> = REPORT[3..3 + len.min(REPORT_LEN - 3)]
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect();
            Err(Error::msg(String::from_utf8_lossy(&msg).into_owned()))
        }
        _ => Err(Error::msg(match status {
            Some(s) if libc::WIFSIGNALED(s) => format!(
                "cannot checkpoint this process: the helper was killed by signal {}",
                libc::WTERMSIG(s)
            ),
            Some(s) => format!(
                "cannot checkpoint this process: the helper failed (exit status {})",
                libc::WEXITSTATUS(s)
            ),
            None => {
                "cannot checkpoint this process: the helper vanished without a report".to_string()
            }
        })),
    }
}

/// Waits for the helper; its wait status, or `None` when there is none to
/// have: in a restored copy (the helper is not its child) or when someone
/// else reaped it. Never loops for long: `EINTR` is retried only in the
/// original, while the helper exists.
fn wait_helper(helper: i32) -> Option<i32> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into the live local.
        let r = unsafe { libc::waitpid(helper, &mut status, 0) };
        if r == helper {
            return Some(status);
        }
        let e = std::io::Error::last_os_error().raw_os_error();
        if STATE.load(Ordering::SeqCst) == RESTORED || e != Some(libc::EINTR) {
            return None;
        }
    }
}

/// With Yama's restricted ptrace, lets our descendants (the helper) trace
/// us. Returns whether it changed anything.
pub(crate) fn allow_descendants_to_trace() -> bool {
    // SAFETY: geteuid has no memory effects.
    if unsafe { libc::geteuid() } == 0
        || !std::path::Path::new("/proc/sys/kernel/yama/ptrace_scope").exists()
    {
        return false;
    }
    // SAFETY: prctl with integer arguments. Naming ourselves as the
    // ptracer lets any descendant of ours trace us.
    unsafe {
        libc::prctl(
            libc::PR_SET_PTRACER,
            libc::getpid() as libc::c_ulong,
            0,
            0,
            0,
        ) == 0
    }
}

/// Undoes [`allow_descendants_to_trace`].
pub(crate) fn forbid_descendants(changed: bool) {
    if changed {
        // SAFETY: prctl with integer arguments; 0 clears the exception.
        unsafe { libc::prctl(libc::PR_SET_PTRACER, 0 as libc::c_ulong, 0, 0, 0) };
    }
}

/// The helper: checkpoints its parent into `fd`, leaves a report in the
/// parent's memory and exits without running any exit handler (they belong
/// to the parent's copy of the program).
fn helper_main(parent: i32, fd: RawFd) -> ! {
    // SAFETY: getpid has no memory effects.
    let me = unsafe { libc::getpid() };
    let res = (|| -> Result<()> {
        // SAFETY: `fd` was open in the parent when it forked us, so it is
        // open here; we only duplicate it.
        let owned = unsafe { BorrowedFd::borrow_raw(fd) }
            .try_clone_to_owned()
            .map_err(|e| {
                Error::msg(format!(
                    "cannot checkpoint this process: descriptor {fd}: {e}"
                ))
            })?;
        let mut w = BufWriter::with_capacity(crate::cli::BUF_SIZE, std::fs::File::from(owned));
        let opts = checkpoint::Options {
            after: After::Resume,
            patches: vec![(STATE.as_ptr() as u64, RESTORED.to_le_bytes().to_vec())],
            exclude: vec![crate::sys::Pid::from_raw(me)],
            carry: None,
            live: None,
            tcp: Default::default(),
            ..Default::default()
        };
        checkpoint::checkpoint(parent, &mut w, &opts)?;
        Ok(())
    })();
    let mut report = vec![0u8; 3];
    match &res {
        Ok(()) => report[0] = REPORT_OK,
        Err(e) => {
            let mut msg = e.to_string();
            if !msg.starts_with("cannot ") {
                msg = format!("cannot checkpoint this process: {msg}");
            }
            let mut msg = msg.into_bytes();
            msg.truncate(REPORT_LEN - 3);
            report[0] = REPORT_FAILED;
            report[1..3].copy_from_slice(&(msg.len() as u16).to_le_bytes());
            report.extend_from_slice(&msg);
        }
    }
    let remote = [nix::sys::uio::RemoteIoVec {
        base: REPORT.as_ptr() as usize,
        len: report.len(),
    }];
    let _ = nix::sys::uio::process_vm_writev(
        nix::unistd::Pid::from_raw(parent),
        &[std::io::IoSlice::new(&report)],
        &remote,
    );
    // SAFETY: _exit ends this process without running the parent's exit
    // handlers or flushing its copies of the parent's buffers.
    unsafe { libc::_exit(if res.is_ok() { 0 } else { 1 }) }
}
