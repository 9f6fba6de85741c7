//! The last steps of building each process, after its memory contents:
//! protections and advice, mm fields, resource limits, threads, signals,
//! timers, credentials, registers; then the release of the whole tree.

use nix::sys::signal::{Signal, kill};

use super::Building;
use super::space::{self, Builder, Trampoline};
use crate::error::{Context, Error, Result};
use crate::image;
use crate::sys::batch::Batch;
use crate::sys::ids::{Pid, Tid};
use crate::sys::remote::{self, Gate, Remote, nr};

/// A thread made by [`finish`]: `(pid, tid, session)`.
pub(crate) type MadeThread = (Pid, Tid, Remote);

/// Everything after the memory contents: protections, mm fields, signal
/// state, timers, threads, credentials, registers; ends with the trampoline
/// unmapped and every thread stopped at its final registers. Returns the
/// remote sessions of the threads it created.
pub(crate) fn finish<'a>(
    bp: &mut Building<'a>,
    tramp: &'a Trampoline,
    same_ids: bool,
    own: &super::asuser::OwnCreds,
) -> Result<Vec<MadeThread>> {
    let pi = bp.pi;
    let mm = &pi.mm;
    let pid = bp.pid;
    let inner = bp.inner;
    let b = &mut bp.b;
    // Protections and advice, mm fields, name, signal actions, timers
    // and, in a process of one thread, that thread's state: one batch for
    // a usual process (the protections go first, alone or in a few
    // batches, only for one with very many mappings).
    let span = crate::progress::span("restore:  process state");
    let mut head = Batch::new();
    for v in mm.vmas.iter().filter(|v| !space::is_special(v)) {
        push_protection(&mut head, v);
    }
    if head.size() as u64 > space::SCRATCH_LEN / 4 {
        let vmas = mm.vmas.iter().filter(|v| !space::is_special(v));
        b.batch_all(vmas, push_protection)?;
        head = Batch::new();
    }
    let t = pi.main_thread();
    let single = pi.threads.len() == 1;
    let mut tail = Batch::new();
    if single {
        space::push_thread(&mut tail, &t.t);
    }
    space::finish_process(b, &pi.p, mm, head, &tail)?;
    if single {
        space::set_xstate(b, &t.t)?;
    }
    drop(span);
    let span = crate::progress::span("restore:  rlimits");
    for rl in pi.p.rlimits.iter() {
        crate::sys::rlimit::set(pid, rl.resource, rl.cur, rl.max).map_err(|e| {
            Error::msg(format!(
                "cannot restore resource limit {} of pid {}: {e}",
                rl.resource, pi.p.pid
            ))
        })?;
    }
    // Other threads: cloned from the main one with their own ids.
    drop(span);
    let mut made = Vec::new();
    if pi.threads.len() > 1 {
        b.r.tracee()
            .trace_clones()
            .ctx(|| format!("cannot trace the threads of pid {pid}"))?;
    }
    for t in pi.threads.iter().skip(1) {
        let (stopped, inner_tid) = space::create_thread(b, &t.t, same_ids)?;
        let tid = stopped.tid();
        let r = Remote::on(stopped, Gate::Trap(tramp.addr))?;
        let mut tb = Builder::new(r, pid, tramp);
        space::finish_thread(&mut tb, &t.t)?;
        space::queue_signals(&mut tb, inner, Some(inner_tid), &t.pending)?;
        super::asuser::restore_creds(&mut tb, tid, &pi.p, own)?;
        tb.r.set_final(space::restart_regs(t.regs), t.t.sigmask);
        made.push((pid, tid, tb.r));
    }
    let span = crate::progress::span("restore:  thread state");
    if !single {
        space::finish_thread(b, &t.t)?;
    }
    space::queue_signals(b, inner, None, &pi.shared_pending)?;
    space::queue_signals(b, inner, Some(inner.main_thread()), &t.pending)?;
    space::posix_timers(b, &pi.p)?;
    super::locks::take_posix(b, pi)?;
    drop(span);
    let span = crate::progress::span("restore:  credentials");
    super::asuser::restore_creds(b, pid.main_thread(), &pi.p, own)?;
    drop(span);
    let _span = crate::progress::span("restore:  unmap trampoline");
    // The last syscall unmaps the trampoline itself; stop at its exit.
    b.r.set_gate(Gate::Syscall(tramp.addr));
    b.call(nr::MUNMAP, &[tramp.addr, tramp.len])?;
    b.r.set_final(space::restart_regs(t.regs), t.t.sigmask);
    Ok(made)
}

/// Adds the final protection and the advice of mapping `v`.
fn push_protection(bt: &mut Batch, v: &crate::restart::meta::VmaImage) {
    if space::build_prot(v) != v.prot {
        bt.call(nr::MPROTECT, &[v.start, v.end - v.start, v.prot as u64]);
    }
    let advice = [
        (image::VMA_F_HUGEPAGE, libc::MADV_HUGEPAGE),
        (image::VMA_F_NOHUGEPAGE, libc::MADV_NOHUGEPAGE),
        (image::VMA_F_DONTFORK, libc::MADV_DONTFORK),
        (image::VMA_F_DONTDUMP, libc::MADV_DONTDUMP),
    ];
    for (bit, adv) in advice {
        if v.flags & bit != 0 {
            bt.call(nr::MADVISE, &[v.start, v.end - v.start, adv as u64]);
        }
    }
}

/// One thread ready to go: `(pid, tid, session, stays stopped)`.
pub(crate) type Ready = (Pid, Tid, Remote, bool);

/// Lets every thread go at once, in `order`: each is put at its final
/// registers, detached (a process that was in a job-control stop stays
/// stopped), then gets back the signals that arrived while it was built.
/// `inject`: whether the `release` failure-injection stage applies.
pub(crate) fn release(order: Vec<Ready>, inject: bool) -> Result<()> {
    let ended = end_all(order)?;
    if inject {
        super::inject::check("release")?;
    }
    let released = let_go(ended)?;
    redeliver_all(&released);
    Ok(())
}

/// A thread at its final registers, its session ended: `(pid, tid,
/// thread, signals to deliver again, stays stopped)`.
pub(crate) type Ended = (Pid, Tid, crate::sys::ptrace::Stopped, Vec<i32>, bool);

/// Ends every session of `order` (on their tracer's thread): each thread
/// at its final registers, still stopped.
pub(crate) fn end_all(order: Vec<Ready>) -> Result<Vec<Ended>> {
    let mut ended = Vec::with_capacity(order.len());
    for (pid, tid, r, stopped) in order {
        let (thread, sigs) = r.end()?;
        ended.push((pid, tid, thread, sigs, stopped));
    }
    Ok(ended)
}

/// Detaches every thread of `ended`, in order (on their tracer's thread);
/// returns what [`redeliver_all`] sends them.
pub(crate) fn let_go(ended: Vec<Ended>) -> Result<Vec<(Pid, Tid, Vec<i32>)>> {
    let mut released = Vec::with_capacity(ended.len());
    for (pid, tid, thread, sigs, stopped) in ended {
        if stopped {
            // It was in a job-control stop: it stays stopped.
            let _ = kill(pid.nix(), Signal::SIGSTOP);
        }
        thread
            .detach(None)
            .ctx(|| format!("cannot release thread {tid} of process {pid}"))?;
        released.push((pid, tid, sigs));
    }
    Ok(released)
}

/// The signals that arrived while the threads were built, sent again.
pub(crate) fn redeliver_all(released: &[(Pid, Tid, Vec<i32>)]) {
    for (pid, tid, sigs) in released {
        remote::redeliver(*pid, *tid, sigs);
    }
}
