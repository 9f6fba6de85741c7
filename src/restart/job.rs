//! A shell's job restored in a terminal (what CRIU calls `--shell-job`).
//!
//! A process started from an interactive shell runs in the shell's
//! session, in a process group of its own that the shell made the
//! foreground of its terminal. `ckpt` records that its controlling
//! terminal was outside the image (`Process::outside_tty`). When
//! `cr-restart` then runs in the foreground of its own controlling
//! terminal (one of its descriptors 0, 1, 2) and waits for the tree:
//!
//! 1. the plan ([`super::plan::Plan::foreground`]) makes the root join
//!    `cr-restart`'s session in a group of its own instead of its image
//!    session, so `cr-restart`'s terminal becomes its controlling terminal;
//! 2. just before the release, [`JobTerminal::give`] makes the root's group
//!    the terminal's foreground (`TIOCSPGRP`): its output shows, its reads
//!    do not stop it, and Ctrl-C (or Ctrl-\) reaches it from the terminal;
//! 3. [`wait_job`] waits for the root; when it stops (Ctrl-Z), `cr-restart`
//!    takes the terminal back and stops the same way, so the shell that
//!    runs `cr-restart` sees its job stop; when continued in the
//!    foreground (`fg`), it gives the terminal back and continues the job
//!    (in the background, `bg`, only continues it);
//! 4. when the root ends, the terminal's previous foreground group
//!    (`cr-restart`'s) is put back, with `SIGTTOU` blocked.
//!
//! Limits: a root that led its own session on its old terminal comes back
//! as a group leader in `cr-restart`'s session (its session id changes):
//! taking the terminal as the leader of a new session would need the
//! terminal free, and `cr-restart`'s terminal belongs to the session of
//! the shell that runs it (stealing it, `TIOCSCTTY` with force, would
//! leave that shell without its terminal). On a pipe or a file, with
//! `--detach`, with `--pidns` (the root is not `cr-restart`'s child), or
//! when `cr-restart` runs in the background, the root keeps its image
//! session and group as before and gets no controlling terminal.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, killpg, pthread_sigmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::getpgrp;

use crate::error::{Error, Result};
use crate::sys::ids::Pid;
use crate::sys::tty;

/// `cr-restart`'s controlling terminal, lent to the restored job.
#[derive(Debug)]
pub struct JobTerminal {
    tty: OwnedFd,
    /// The foreground group before: `cr-restart`'s.
    previous: i32,
    /// The job's group once it has the terminal, 0 before.
    job: AtomicI32,
    /// The previous group was put back.
    restored: AtomicBool,
}

impl JobTerminal {
    /// `cr-restart`'s controlling terminal, if one of its descriptors 0, 1
    /// and 2 is, and `cr-restart` is in its foreground.
    pub(crate) fn find() -> Option<JobTerminal> {
        let tty = tty::own_foreground_terminal()?;
        let previous = tty::foreground(tty.as_fd()).ok()?;
        Some(JobTerminal {
            tty,
            previous,
            job: AtomicI32::new(0),
            restored: AtomicBool::new(false),
        })
    }

    /// Makes the job's group `pgrp` the terminal's foreground.
    pub(crate) fn give(&self, pgrp: Pid) -> Result<()> {
        tty::set_foreground(self.tty.as_fd(), pgrp.as_raw()).map_err(|e| {
            Error::msg(format!(
                "cannot make the restored job (process group {pgrp}) the foreground of cr-restart's terminal: {e}"
            ))
        })?;
        self.job.store(pgrp.as_raw(), Ordering::SeqCst);
        Ok(())
    }

    /// The job stopped: take the terminal back (if the job still has it)
    /// and stop as it did, so the shell running `cr-restart` sees its job
    /// stop; once continued, go on with [`Self::continued`].
    fn job_stopped(&self) {
        let job = self.job.load(Ordering::SeqCst);
        if job != 0 && tty::foreground(self.tty.as_fd()).ok() == Some(job) {
            let _ = tty::set_foreground(self.tty.as_fd(), getpgrp().as_raw());
        }
        // Stops here (unless our group is orphaned, when the kernel
        // discards the signal) until a SIGCONT.
        let _ = kill(Pid::this().nix(), Signal::SIGTSTP);
        self.continued();
    }

    /// `cr-restart` was continued: when it is in the foreground, the job
    /// gets the terminal again; either way the job continues.
    fn continued(&self) {
        let job = self.job.load(Ordering::SeqCst);
        if job == 0 || self.restored.load(Ordering::SeqCst) {
            return;
        }
        if tty::foreground(self.tty.as_fd()).ok() == Some(getpgrp().as_raw()) {
            let _ = tty::set_foreground(self.tty.as_fd(), job);
        }
        let _ = killpg(Pid::from_raw(job).nix(), Signal::SIGCONT);
    }

    /// Puts the previous foreground group back (once).
    pub(crate) fn restore(&self) {
        if self.job.load(Ordering::SeqCst) != 0 && !self.restored.swap(true, Ordering::SeqCst) {
            let _ = tty::set_foreground(self.tty.as_fd(), self.previous);
        }
    }
}

impl Drop for JobTerminal {
    fn drop(&mut self) {
        self.restore();
    }
}

/// Waits for our child `pid` to exit, forwarding SIGINT, SIGTERM and SIGHUP
/// sent to us to `target` (the restored root); returns an exit code in the
/// shell's convention (128 + signal when it was killed). With `report`
/// (cr-restart), an exit other than 0 and a failed wait are said on stderr.
/// With `terminal`, the job holds `cr-restart`'s terminal: its stops are
/// followed (see the module docs) and the terminal is given back at the end.
pub fn wait_job(pid: Pid, target: Pid, report: bool, terminal: Option<JobTerminal>) -> i32 {
    let terminal = terminal.map(Arc::new);
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    if terminal.is_some() {
        // A SIGCONT still continues us; blocked, it is also seen here.
        set.add(Signal::SIGCONT);
    }
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
    let term = terminal.clone();
    std::thread::spawn(move || {
        loop {
            match set.wait() {
                Ok(Signal::SIGCONT) => {
                    if let Some(t) = &term {
                        t.continued();
                    }
                }
                Ok(sig) => {
                    let _ = kill(target.nix(), sig);
                }
                Err(_) => return,
            }
        }
    });
    let flags = terminal.as_ref().map(|_| WaitPidFlag::WUNTRACED);
    let (code, said) = loop {
        match waitpid(pid.nix(), flags) {
            Ok(WaitStatus::Exited(_, 0)) => break (0, None),
            Ok(WaitStatus::Exited(_, c)) => {
                break (
                    c,
                    Some(format!(
                        "the restored root (pid {target}) exited with status {c}"
                    )),
                );
            }
            Ok(WaitStatus::Signaled(_, s, _)) => {
                break (
                    128 + s as i32,
                    Some(format!(
                        "the restored root (pid {target}) was killed by {s}"
                    )),
                );
            }
            Ok(WaitStatus::Stopped(..)) => {
                if let Some(t) = &terminal {
                    t.job_stopped();
                }
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                break (
                    1,
                    Some(format!(
                        "cannot wait for the restored root (pid {target}): {e}"
                    )),
                );
            }
        }
    };
    // The terminal first: a report from the background could be stopped.
    if let Some(t) = &terminal {
        t.restore();
    }
    if let Some(line) = said.filter(|_| report) {
        eprintln!("cr-restart: {line}");
    }
    code
}
