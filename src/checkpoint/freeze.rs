//! Freezing a process tree with ptrace and handing it back.
//!
//! Every thread is seized (`PTRACE_SEIZE`) and interrupted
//! (`PTRACE_INTERRUPT`); signals that arrive meanwhile are delivered, not
//! lost. [`Frozen`] releases every thread on drop, so an error anywhere in
//! the checkpoint leaves the tree running as it was.

use nix::sys::signal::Signal;

use crate::error::{Context, Error, Result};
use crate::sys::process::{self, Kcmp};
use crate::sys::ptrace::{self, Resume, Running, Stop, Stopped, Waited};
use crate::sys::{Pid, Tid, proc};

/// What to do with the tree once its image is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum After {
    /// Resume it exactly as it was.
    #[default]
    Resume,
    /// SIGKILL it.
    Kill,
    /// Leave it stopped by SIGSTOP.
    Stop,
}

/// One frozen thread.
#[derive(Debug)]
pub struct FrozenThread {
    pub pid: Pid,
    pub tid: Tid,
    /// It was in a job-control stop before we came.
    pub was_stopped: bool,
    /// The handle through which it is read, and let go.
    pub tracee: Stopped,
}

/// A frozen tree: processes in the order parents before children.
pub struct Frozen {
    /// `(pid, ppid)` of every live process, root first.
    pub procs: Vec<(Pid, Pid)>,
    /// `(pid, ppid)` of every zombie child in the tree.
    pub zombies: Vec<(Pid, Pid)>,
    pub threads: Vec<FrozenThread>,
    released: bool,
    /// Threads seized and interrupted whose stop is not yet waited for:
    /// `(pid, tid, was_stopped, handle)`.
    pending: Vec<(Pid, Tid, bool, Running)>,
    /// Every pid in `procs` or `zombies` or never to be visited (left out
    /// with its descendants: not frozen, not recorded), and every tid in
    /// `threads` or `pending`: what [`Frozen::known`] asks.
    seen_pids: std::collections::HashSet<Pid>,
    seen_tids: std::collections::HashSet<Tid>,
}

/// Seizes and interrupts one thread (`st`: its `stat`) after checking it
/// can be; returns it with whether it was in a job-control stop. Its stop
/// is waited for later ([`wait_interrupted`]), so that the threads of a
/// tree stop all at once instead of one after the other.
fn seize_thread(pid: Pid, tid: Tid, st: &proc::Stat) -> Result<(Running, bool)> {
    if st.state == b'Z' || st.state == b'X' {
        return Err(Error::msg(format!(
            "cannot checkpoint pid {pid}: thread {tid} is exiting"
        )));
    }
    let running = ptrace::seize_thread(tid, false).map_err(|e| match e {
        nix::errno::Errno::EPERM => {
            // Traced by someone else, or not ours to trace: `status` says.
            match proc::task_status(pid, tid) {
                Ok(s) if s.tracer_pid != 0 => Error::msg(format!(
                    "cannot checkpoint pid {pid}: thread {tid} is traced by pid {}",
                    s.tracer_pid
                )),
                _ => Error::msg(format!(
                    "cannot checkpoint pid {pid}: not permitted to trace thread {tid}"
                )),
            }
        }
        e => Error::msg(format!(
            "cannot checkpoint pid {pid}: seizing thread {tid}: {e}"
        )),
    })?;
    running
        .interrupt()
        .ctx(|| format!("interrupting thread {tid}"))?;
    Ok((running, st.state == b'T'))
}

/// Refuses a process that shares its address space with its parent or a
/// child (`kids`: the children of all its threads) without being a thread
/// of it: a `vfork` child and its waiting parent (which cannot even be
/// stopped), or `CLONE_VM` processes.
fn refuse_shared_vm(pid: Pid, ppid: Pid, kids: &[Pid]) -> Result<()> {
    let same_vm = |a: Pid, b: Pid| process::kcmp(a, b, Kcmp::Vm).unwrap_or(false);
    let mut others: Vec<Pid> = kids.to_vec();
    if ppid.as_raw() > 0 {
        others.push(ppid);
    }
    for o in others {
        if o != pid && same_vm(pid, o) {
            return Err(Error::msg(format!(
                "cannot checkpoint pid {pid}: it shares its memory with pid {o} (a vfork or CLONE_VM child), which is not supported"
            )));
        }
    }
    Ok(())
}

/// Waits until a seized, interrupted thread sits in its interrupt stop.
/// A thread that does not stop within this time (stuck in an uninterruptible
/// wait) fails the checkpoint instead of hanging it.
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

///
/// A thread that fails here is left seized but running: it cannot be
/// detached until it stops, and the kernel detaches it when we exit.
fn wait_interrupted(pid: Pid, mut running: Running) -> Result<Stopped> {
    let tid = running.tid();
    let deadline = std::time::Instant::now() + STOP_TIMEOUT;
    loop {
        let waited = loop {
            match running
                .try_wait()
                .ctx(|| format!("waiting for thread {tid}"))?
            {
                Ok(w) => break w,
                Err(r) if std::time::Instant::now() >= deadline => {
                    drop(r);
                    return Err(Error::msg(format!(
                        "cannot checkpoint pid {pid}: thread {tid} did not stop within {} s (an uninterruptible wait?)",
                        STOP_TIMEOUT.as_secs()
                    )));
                }
                Err(r) => {
                    running = r;
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
            }
        };
        let (stopped, stop) = match waited {
            Waited::Stopped(s, stop) => (s, stop),
            Waited::Gone(..) => {
                return Err(Error::msg(format!(
                    "cannot checkpoint pid {pid}: it exited during the checkpoint"
                )));
            }
        };
        // A signal being delivered: let it through, the interrupt stays pending.
        let sig = match stop {
            Stop::EventStop(_) => return Ok(stopped),
            Stop::Signal(sig) => Signal::try_from(sig).ok(),
            _ => None,
        };
        running = stopped
            .resume(Resume::Cont, sig)
            .ctx(|| format!("resuming thread {tid}"))?;
    }
}

impl Frozen {
    /// Freezes `root` and, when `tree` is set, all its descendants, repeating
    /// until no new thread or child appears.
    pub fn freeze(root: Pid, tree: bool) -> Result<Frozen> {
        Self::freeze_excluding(root, tree, &[])
    }

    /// As [`Frozen::freeze`], leaving out the processes `exclude` (and so
    /// their descendants): they are neither frozen nor listed as children
    /// or zombies. The root cannot be excluded.
    pub fn freeze_excluding(root: Pid, tree: bool, exclude: &[Pid]) -> Result<Frozen> {
        let mut f = Frozen {
            procs: Vec::new(),
            zombies: Vec::new(),
            threads: Vec::new(),
            released: false,
            seen_pids: exclude.iter().copied().filter(|&p| p != root).collect(),
            pending: Vec::new(),
            seen_tids: std::collections::HashSet::new(),
        };
        std::fs::metadata(format!("/proc/{root}"))
            .map_err(|_| Error::msg(format!("cannot checkpoint pid {root}: no such process")))?;
        let mut queue = vec![(root, Pid::from_raw(0))];
        loop {
            // Depth first, children after their parent. Every thread is
            // seized and interrupted on the way; their stops are waited for
            // after the walk (on an error too: `Drop` lets them go).
            while let Some((pid, ppid)) = queue.pop() {
                f.visit(root, pid, ppid, tree, &mut queue)?;
            }
            f.settle()?;
            // Threads or children that appeared while we froze the others.
            for &(pid, ppid) in &f.procs {
                let tids = proc::threads(pid)
                    .map_err(|e| Error::msg(format!("cannot checkpoint pid {pid}: {e}")))?;
                if tids.iter().any(|t| !f.seen_tids.contains(t)) {
                    queue.push((pid, ppid));
                }
                if tree {
                    for t in f.threads.iter().filter(|t| t.pid == pid) {
                        for c in proc::child_pids(pid, t.tid).unwrap_or_default() {
                            if !f.known(c) {
                                queue.push((c, pid));
                            }
                        }
                    }
                }
            }
            if queue.is_empty() {
                return Ok(f);
            }
        }
    }

    /// Waits for every pending thread's interrupt stop. All are waited
    /// for even after a failure (the first is returned), so that each
    /// stopped one is in `threads`, where `release` and `Drop` let it go.
    fn settle(&mut self) -> Result<()> {
        let mut res = Ok(());
        for (pid, tid, was_stopped, running) in std::mem::take(&mut self.pending) {
            match wait_interrupted(pid, running) {
                Ok(tracee) => self.threads.push(FrozenThread {
                    pid,
                    tid,
                    was_stopped,
                    tracee,
                }),
                Err(e) => {
                    if res.is_ok() {
                        res = Err(e);
                    }
                }
            }
        }
        res
    }

    /// Already visited, or never to be.
    fn known(&self, pid: Pid) -> bool {
        self.seen_pids.contains(&pid)
    }

    fn visit(
        &mut self,
        root: Pid,
        pid: Pid,
        ppid: Pid,
        tree: bool,
        queue: &mut Vec<(Pid, Pid)>,
    ) -> Result<()> {
        let fresh = !self.known(pid);
        let mut main_stat = None;
        if fresh {
            let st = proc::stat(pid)
                .map_err(|e| Error::msg(format!("cannot checkpoint pid {pid}: {e}")))?;
            if st.is_kernel_thread() {
                return Err(Error::msg(if pid == root {
                    format!("cannot checkpoint pid {pid}: it is a kernel thread")
                } else {
                    format!("cannot checkpoint pid {root}: its descendant {pid} is a kernel thread")
                }));
            }
            if st.state == b'Z' {
                if pid == root {
                    return Err(Error::msg(format!(
                        "cannot checkpoint pid {pid}: it is a zombie"
                    )));
                }
                self.seen_pids.insert(pid);
                self.zombies.push((pid, ppid));
                return Ok(());
            }
            self.seen_pids.insert(pid);
            self.procs.push((pid, ppid));
            main_stat = Some(st);
        } else if self.zombies.iter().any(|&(p, _)| p == pid) {
            return Ok(());
        }
        // Threads: the new ones are seized and interrupted; a thread made
        // meanwhile is found by the caller's pass over the stopped tree.
        let tids = proc::threads(pid)
            .map_err(|e| Error::msg(format!("cannot checkpoint pid {pid}: {e}")))?;
        // Children of every thread, listed before any is seized: a vfork
        // parent cannot be stopped, so a shared address space is refused
        // first.
        let mut kids = Vec::new();
        for &t in &tids {
            kids.extend(proc::child_pids(pid, t).unwrap_or_default());
        }
        kids.sort_unstable();
        kids.dedup();
        for tid in tids {
            if self.seen_tids.contains(&tid) {
                continue;
            }
            // The main thread's is the process's, read above.
            let known_stat = if tid.is_main_of(pid) {
                main_stat.take()
            } else {
                None
            };
            let st = match known_stat {
                Some(st) => st,
                None => proc::task_stat(pid, tid)
                    .map_err(|e| Error::msg(format!("cannot checkpoint pid {pid}: {e}")))?,
            };
            if tid.is_main_of(pid) {
                refuse_shared_vm(pid, Pid::from_raw(st.ppid), &kids)?;
            }
            let (running, was_stopped) = seize_thread(pid, tid, &st)?;
            self.seen_tids.insert(tid);
            self.pending.push((pid, tid, was_stopped, running));
        }
        if tree && fresh {
            for c in kids.into_iter().rev() {
                if !self.known(c) {
                    queue.push((c, pid));
                }
            }
        }
        Ok(())
    }

    pub fn threads_of(&self, pid: Pid) -> impl Iterator<Item = &FrozenThread> {
        self.threads.iter().filter(move |t| t.pid == pid)
    }

    pub fn threads_of_mut(&mut self, pid: Pid) -> impl Iterator<Item = &mut FrozenThread> {
        self.threads.iter_mut().filter(move |t| t.pid == pid)
    }

    /// Lets the tree go as `after` says. Threads whose registers were
    /// changed must have them back before this.
    pub fn release(mut self, after: After) -> Result<()> {
        self.released = true;
        match after {
            After::Kill => {
                for &(pid, _) in &self.procs {
                    let _ = nix::sys::signal::kill(pid.nix(), Signal::SIGKILL);
                }
                Ok(())
            }
            After::Stop => {
                for &(pid, _) in &self.procs {
                    let _ = nix::sys::signal::kill(pid.nix(), Signal::SIGSTOP);
                }
                self.detach_all();
                Ok(())
            }
            After::Resume => {
                self.detach_all();
                Ok(())
            }
        }
    }

    fn detach_all(&mut self) {
        // A seized task in a job-control stop stays stopped after
        // PTRACE_DETACH; it was stopped before we came, so that is right.
        for t in std::mem::take(&mut self.threads) {
            resume_and_detach(t.tracee);
        }
    }
}

/// Takes a thread from whatever stop our remote syscalls left it in back to
/// an interrupt stop, so the kernel's own syscall-restart logic runs on
/// its registers when it is let go, and lets it go.
fn resume_and_detach(mut t: Stopped) {
    if t.interrupt().is_ok() {
        let mut sig = None;
        loop {
            match t.step(Resume::Cont, sig) {
                Ok(Stop::EventStop(_)) => break,
                // A signal being delivered: let it through.
                Ok(Stop::Signal(s)) => sig = Signal::try_from(s).ok(),
                Ok(Stop::Syscall) | Ok(Stop::Event(_)) => sig = None,
                // Gone, or not ours to wait for any more.
                _ => break,
            }
        }
    }
    let _ = t.detach(None);
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.settle();
            self.detach_all();
        }
    }
}
