//! Freezing a process tree with ptrace and handing it back.
//!
//! Every thread is seized (`PTRACE_SEIZE`) and interrupted
//! (`PTRACE_INTERRUPT`); signals that arrive meanwhile are delivered, not
//! lost. [`Frozen`] releases every thread on drop, so an error anywhere in
//! the checkpoint leaves the tree running as it was.

use nix::sys::signal::Signal;

use crate::error::{Context, Error, Result};
use crate::sys::proc;
use crate::sys::ptrace::{self, Stop};

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
#[derive(Debug, Clone)]
pub struct FrozenThread {
    pub pid: i32,
    pub tid: i32,
    /// It was in a job-control stop before we came.
    pub was_stopped: bool,
}

/// A frozen tree: processes in the order parents before children.
pub struct Frozen {
    /// `(pid, ppid)` of every live process, root first.
    pub procs: Vec<(i32, i32)>,
    /// `(pid, ppid)` of every zombie child in the tree.
    pub zombies: Vec<(i32, i32)>,
    pub threads: Vec<FrozenThread>,
    released: bool,
    /// Pids never visited: not frozen, not recorded, nor their descendants.
    exclude: Vec<i32>,
}

fn seize_thread(pid: i32, tid: i32) -> Result<FrozenThread> {
    let st = proc::task_stat(pid, tid)
        .map_err(|e| Error::msg(format!("cannot checkpoint pid {pid}: {e}")))?;
    let status = proc::task_status(pid, tid)
        .map_err(|e| Error::msg(format!("cannot checkpoint pid {pid}: {e}")))?;
    if status.tracer_pid != 0 {
        return Err(Error::msg(format!(
            "cannot checkpoint pid {pid}: thread {tid} is traced by pid {}",
            status.tracer_pid
        )));
    }
    if st.state == b'Z' || st.state == b'X' {
        return Err(Error::msg(format!(
            "cannot checkpoint pid {pid}: thread {tid} is exiting"
        )));
    }
    if tid == pid {
        refuse_shared_vm(pid, st.ppid)?;
    }
    ptrace::seize(tid, false).map_err(|e| match e {
        nix::errno::Errno::EPERM => Error::msg(format!(
            "cannot checkpoint pid {pid}: not permitted to trace thread {tid}"
        )),
        e => Error::msg(format!(
            "cannot checkpoint pid {pid}: seizing thread {tid}: {e}"
        )),
    })?;
    Ok(FrozenThread {
        pid,
        tid,
        was_stopped: st.state == b'T',
    })
}

/// Refuses a process that shares its address space with its parent or a
/// child without being a thread of it: a `vfork` child and its waiting
/// parent (which cannot even be stopped), or `CLONE_VM` processes.
fn refuse_shared_vm(pid: i32, ppid: i32) -> Result<()> {
    const KCMP_VM: i32 = 1;
    let same_vm = |a: i32, b: i32| {
        // SAFETY: kcmp compares kernel objects by integer ids; no memory is passed.
        unsafe { libc::syscall(libc::SYS_kcmp, a, b, KCMP_VM, 0, 0) == 0 }
    };
    let mut others: Vec<i32> = Vec::new();
    for t in proc::tasks(pid).unwrap_or_default() {
        others.extend(proc::children(pid, t).unwrap_or_default());
    }
    if ppid > 0 {
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

fn wait_interrupted(t: &FrozenThread) -> Result<()> {
    let deadline = std::time::Instant::now() + STOP_TIMEOUT;
    loop {
        let stop = loop {
            match ptrace::try_wait(t.tid).ctx(|| format!("waiting for thread {}", t.tid))? {
                Some(s) => break s,
                None if std::time::Instant::now() >= deadline => {
                    return Err(Error::msg(format!(
                        "cannot checkpoint pid {}: thread {} did not stop within {} s (an uninterruptible wait?)",
                        t.pid,
                        t.tid,
                        STOP_TIMEOUT.as_secs()
                    )));
                }
                None => std::thread::sleep(std::time::Duration::from_micros(200)),
            }
        };
        match stop {
            Stop::EventStop(_) => return Ok(()),
            // A signal being delivered: let it through, the interrupt stays pending.
            Stop::Signal(sig) => {
                let sig = Signal::try_from(sig).ok();
                ptrace::cont(t.tid, sig).ctx(|| format!("resuming thread {}", t.tid))?;
            }
            Stop::Exited(_) | Stop::Killed(_) => {
                return Err(Error::msg(format!(
                    "cannot checkpoint pid {}: it exited during the checkpoint",
                    t.pid
                )));
            }
            Stop::Syscall | Stop::Event(_) => {
                ptrace::cont(t.tid, None).ctx(|| format!("resuming thread {}", t.tid))?;
            }
        }
    }
}

impl Frozen {
    /// Freezes `root` and, when `tree` is set, all its descendants, repeating
    /// until no new thread or child appears.
    pub fn freeze(root: i32, tree: bool) -> Result<Frozen> {
        Self::freeze_excluding(root, tree, &[])
    }

    /// As [`Frozen::freeze`], leaving out the processes `exclude` (and so
    /// their descendants): they are neither frozen nor listed as children
    /// or zombies. The root cannot be excluded.
    pub fn freeze_excluding(root: i32, tree: bool, exclude: &[i32]) -> Result<Frozen> {
        let mut f = Frozen {
            procs: Vec::new(),
            zombies: Vec::new(),
            threads: Vec::new(),
            released: false,
            exclude: exclude.iter().copied().filter(|&p| p != root).collect(),
        };
        std::fs::metadata(format!("/proc/{root}"))
            .map_err(|_| Error::msg(format!("cannot checkpoint pid {root}: no such process")))?;
        let mut queue = vec![(root, 0)];
        loop {
            // Depth first, children after their parent.
            while let Some((pid, ppid)) = queue.pop() {
                f.visit(root, pid, ppid, tree, &mut queue)?;
            }
            // Threads or children that appeared while we froze the others.
            for &(pid, ppid) in &f.procs {
                let tids = proc::tasks(pid)
                    .map_err(|e| Error::msg(format!("cannot checkpoint pid {pid}: {e}")))?;
                if tids.iter().any(|t| !f.threads.iter().any(|x| x.tid == *t)) {
                    queue.push((pid, ppid));
                }
                if tree {
                    for t in f.threads.iter().filter(|t| t.pid == pid) {
                        for c in proc::children(pid, t.tid).unwrap_or_default() {
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

    /// Already visited, or never to be.
    fn known(&self, pid: i32) -> bool {
        self.exclude.contains(&pid)
            || self.procs.iter().any(|&(p, _)| p == pid)
            || self.zombies.iter().any(|&(p, _)| p == pid)
    }

    fn visit(
        &mut self,
        root: i32,
        pid: i32,
        ppid: i32,
        tree: bool,
        queue: &mut Vec<(i32, i32)>,
    ) -> Result<()> {
        let fresh = !self.known(pid);
        if fresh {
            let st = proc::stat(pid)
                .map_err(|e| Error::msg(format!("cannot checkpoint pid {pid}: {e}")))?;
            if st.state == b'Z' {
                if pid == root {
                    return Err(Error::msg(format!(
                        "cannot checkpoint pid {pid}: it is a zombie"
                    )));
                }
                self.zombies.push((pid, ppid));
                return Ok(());
            }
            self.procs.push((pid, ppid));
        } else if self.zombies.iter().any(|&(p, _)| p == pid) {
            return Ok(());
        }
        // Threads: seize until the set is stable.
        loop {
            let tids = proc::tasks(pid)
                .map_err(|e| Error::msg(format!("cannot checkpoint pid {pid}: {e}")))?;
            let new: Vec<i32> = tids
                .into_iter()
                .filter(|t| !self.threads.iter().any(|x| x.tid == *t))
                .collect();
            if new.is_empty() {
                break;
            }
            for tid in new {
                let t = seize_thread(pid, tid)?;
                self.threads.push(t.clone());
                ptrace::interrupt(tid).ctx(|| format!("interrupting thread {tid}"))?;
                wait_interrupted(&t)?;
            }
        }
        if tree && fresh {
            let mut kids = Vec::new();
            for t in self.threads.iter().filter(|t| t.pid == pid) {
                kids.extend(proc::children(pid, t.tid).unwrap_or_default());
            }
            kids.sort_unstable();
            kids.dedup();
            for c in kids.into_iter().rev() {
                if !self.known(c) {
                    queue.push((c, pid));
                }
            }
        }
        Ok(())
    }

    pub fn threads_of(&self, pid: i32) -> impl Iterator<Item = &FrozenThread> {
        self.threads.iter().filter(move |t| t.pid == pid)
    }

    /// Lets the tree go as `after` says. Threads whose registers were
    /// changed must have them back before this.
    pub fn release(mut self, after: After) -> Result<()> {
        self.released = true;
        match after {
            After::Kill => {
                for &(pid, _) in &self.procs {
                    let _ =
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
                }
                Ok(())
            }
            After::Stop => {
                for &(pid, _) in &self.procs {
                    let _ =
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGSTOP);
                }
                self.detach_all(true);
                Ok(())
            }
            After::Resume => {
                self.detach_all(false);
                Ok(())
            }
        }
    }

    fn detach_all(&self, leave_stopped: bool) {
        for t in &self.threads {
            resume_thread(t.tid);
            let _ = ptrace::detach(t.tid, None);
            if t.was_stopped && !leave_stopped {
                // A seized task in a job-control stop stays stopped after
                // PTRACE_DETACH; it was stopped before we came, so that is right.
            }
        }
    }
}

/// Takes a thread from whatever stop our remote syscalls left it in back to
/// an interrupt stop, so the kernel's own syscall-restart logic runs on
/// its registers when it is let go.
fn resume_thread(tid: i32) {
    if ptrace::interrupt(tid).is_err() {
        return;
    }
    if ptrace::cont(tid, None).is_err() {
        return;
    }
    loop {
        match ptrace::wait(tid) {
            Ok(Stop::EventStop(_)) => return,
            Ok(Stop::Signal(sig)) => {
                let sig = Signal::try_from(sig).ok();
                if ptrace::cont(tid, sig).is_err() {
                    return;
                }
            }
            Ok(Stop::Syscall) | Ok(Stop::Event(_)) => {
                if ptrace::cont(tid, None).is_err() {
                    return;
                }
            }
            _ => return,
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if !self.released {
            self.detach_all(false);
        }
    }
}
