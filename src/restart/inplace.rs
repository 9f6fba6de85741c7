//! In-place restore: the calling process becomes the process of the image
//! and keeps its own pid, as with `exec` (`cr-restart --in-place`, the
//! classic `restart --self`).
//!
//! Only an image of one single-threaded process can become the caller; for
//! any other image, and for a caller with threads or children, it fails
//! before anything is touched.
//!
//! ```text
//!  caller C                                 tracer T (grandchild of C)
//!  read metadata, validate; copy the
//!  rest of the stream aside (every record
//!  checked, the end record too); open the
//!  image's files above its descriptors;
//!  map the trampoline
//!  fork -> H -> fork T; H exits once T
//!  has seized C (T is no child of C, so
//!  the restored program never sees it)      PTRACE_SEIZE C, report "ready"
//!  read "ready", reap H
//!  -------- point of no return --------
//!  place descriptors, cwd, root, umask;
//!  close the rest; default signal actions,
//!  no altstack, no itimers; SIGSTOP itself  wait for C's SIGSTOP
//!                                           (from here a failure SIGKILLs C)
//!                                           drain C's pending signals, unregister
//!                                           rseq, move the vDSO, unmap all, map
//!                                           the image's VMAs, stream pages, set
//!                                           mm fields, signals, creds, registers
//!  runs on as the restored program  <------ PTRACE_DETACH, exit
//! ```
//!
//! The restored program keeps the caller's pid, session and process group,
//! so a program that cached its pid in memory sees the old one. It also
//! keeps what no syscall undoes: the caller's seccomp filters and
//! `no_new_privs`, its scheduling settings and its cgroup.

use std::convert::Infallible;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::signal::{Signal, kill};

use super::child;
use super::meta::{self, Meta};
use super::plan::{self, PlanOptions, ProcPlan};
use super::space::Builder;
use super::spawn::{child_plan, high};
use super::spool::{self, Source};
use super::{Building, Held, Options, bulk, finish, ipc, map};
use crate::error::{Context, Error, Result};
use crate::image::{self, Reader};
use crate::sys::clone::Forked;
use crate::sys::fork::{exit_now as _exit, fork_single_threaded};
use crate::sys::ids::Pid;
use crate::sys::proc;
use crate::sys::ptrace::{self, Resume, Stop, Stopped, Waited};
use crate::sys::remote::nr;

/// Replaces the calling process with the single process of the image from
/// `reader`, keeping the caller's pid. Returns only on failure, and then
/// nothing of the caller has changed (but its input was read). Once the
/// caller has begun to change itself, a failure is reported on its
/// standard error and the caller is killed with `SIGKILL`.
///
/// `opts.fd_map` reconnects descriptors that led outside the image; pid
/// options do not apply (the pid is the caller's).
pub fn restore_in_place<R: Read>(mut reader: Reader<R>, opts: &Options) -> Result<Infallible> {
    if opts.pidns {
        return Err(Error::msg(
            "cannot restore in place inside a new pid namespace: the process keeps the caller's pid",
        ));
    }
    let mut meta = meta::load(&mut reader)?;
    check_image(&meta)?;
    super::check_fd_map(&meta, opts)?;
    super::carry::resolve(&mut meta, &opts.remap)?;
    if reader.header().flags & image::HDR_OWN_IPCNS != 0 {
        return Err(Error::msg(
            "cannot restore in place: the process had an IPC namespace of its own (use cr-restart without --in-place)",
        ));
    }
    let me = Pid::this();
    check_caller(me)?;
    // The whole stream, every record checked, before anything changes.
    let first = meta.take_first_bulk();
    let source: Source<'static, std::io::Empty> =
        Source::Spooled(spool::spool(first, &mut reader)?);

    // SysV IPC objects with their ids (removed again if we fail before
    // the point of no return: `ipc` undoes on drop).
    let mut ipc = meta.take_ipc();
    let mut staged = meta.take_staged();
    let plan = plan::plan(&meta, PlanOptions::default());
    // What the image asks beyond files (rlimits, exe link, SysV
    // attachments), checked as for any restore before anything is made.
    super::asuser::check(&meta, &plan, &ipc)?;
    ipc.create()?;
    let mut held = Held::new(&meta, &ipc)?;
    let mut keep = super::spawn::Kept::default();
    let cplan = child_plan(meta.root(), plan.root(), opts, &mut held.open, &mut keep)?;
    // Its POSIX locks are taken after the point of no return: refuse now
    // if someone holds one in the way.
    super::locks::check_posix(meta.root(), &held.open)?;
    // Where the caller reports a failure of its own steps: its standard
    // error, before it is replaced.
    let errfd = crate::sys::fds::dup(2)
        .ok()
        .map(|fd| high(fd, held.open.base))
        .transpose()?;
    let (ready_rd, ready_wr) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "pipe".into())?;
    let ready_rd = high(ready_rd, held.open.base)?;
    let ready_wr = high(ready_wr, held.open.base)?;
    {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
    }
    let yama = crate::selfckpt::allow_descendants_to_trace();

    // The caller is single-threaded (checked); the child runs `middle`
    // and never returns.
    let h = match fork_single_threaded() {
        Ok(Forked::Parent(h)) => Some(h),
        Ok(Forked::Child) => None,
        Err(e) => {
            crate::selfckpt::forbid_descendants(yama);
            return Err(Error::msg(format!(
                "cannot restore in place: cannot fork a helper: {e}"
            )));
        }
    };
    let Some(h) = h else {
        drop(ready_rd);
        let t = Tracer {
            caller: me,
            meta: &meta,
            plan: plan.root(),
            ipc: &mut ipc,
            staged: &mut staged,
            held: &mut held,
        };
        // Whatever happens in the helpers, they never return into the
        // caller's code.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            middle(ready_wr, t, source)
        }));
        // Leaves without running the caller's exit handlers.
        _exit(1)
    };
    drop(ready_wr);
    let mut answer = Vec::new();
    let got = std::fs::File::from(ready_rd).read_to_end(&mut answer);
    while let Err(nix::errno::Errno::EINTR) = nix::sys::wait::waitpid(Pid::from_raw(h).nix(), None)
    {
    }
    if got.is_err() || answer.first() != Some(&b'K') {
        crate::selfckpt::forbid_descendants(yama);
        let why = if answer.len() > 1 {
            String::from_utf8_lossy(&answer[1..]).into_owned()
        } else {
            "the helper exited without a word".into()
        };
        return Err(Error::msg(format!("cannot restore in place: {why}")));
    }
    // The tracer holds us now. Point of no return.
    // POSIX timers of the caller would stay armed in the restored program.
    for t in proc::timers(me).unwrap_or_default() {
        let _ = crate::sys::fork::delete_timer(t.id);
    }
    child::become_stopped(&cplan, errfd.as_ref().map(|f| f.as_raw_fd()))
}

/// Refuses images the caller cannot become.
fn check_image(m: &Meta) -> Result<()> {
    let n = m.len();
    if n != 1 {
        return Err(Error::msg(format!(
            "cannot restore in place: the image holds {n} processes (zombies included); only an image of a single process can become the calling process"
        )));
    }
    let pi = m.root();
    if pi.threads.len() != 1 {
        return Err(Error::msg(format!(
            "cannot restore in place: process {} of the image has {} threads; only a single-threaded process can become the calling process",
            pi.p.pid,
            pi.threads.len()
        )));
    }
    Ok(())
}

/// Refuses a caller that cannot become another process.
fn check_caller(me: Pid) -> Result<()> {
    let err = |e: proc::ProcError| Error::msg(format!("cannot restore in place: {e}"));
    let tasks = proc::tasks(me).map_err(err)?;
    if tasks.len() != 1 {
        return Err(Error::msg(format!(
            "cannot restore in place: the calling process has {} threads; it must have one",
            tasks.len()
        )));
    }
    let kids = proc::children(me, me.main_thread()).map_err(err)?;
    if !kids.is_empty() {
        return Err(Error::msg(format!(
            "cannot restore in place: the calling process has children ({kids:?}); the restored process would inherit them"
        )));
    }
    Ok(())
}

/// What the tracer needs, all prepared by the caller before the fork.
struct Tracer<'a> {
    caller: Pid,
    meta: &'a Meta,
    plan: &'a ProcPlan,
    ipc: &'a mut ipc::IpcRestore,
    staged: &'a mut super::precopy::Staging,
    held: &'a mut Held,
}

/// The first helper: forks the tracer and exits once the tracer has seized
/// the caller (so the tracer is never the restored program's child, and
/// under Yama it is still the caller's descendant when it seizes).
fn middle(ready: OwnedFd, t: Tracer, source: Source<'static, std::io::Empty>) -> ! {
    let (held_rd, held_wr) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => tell(&ready, &format!("E cannot make a pipe: {e}"), 1),
    };
    // We are a fork of the single-threaded caller; the child runs
    // `tracer_main` and never returns.
    match fork_single_threaded() {
        Ok(Forked::Child) => {
            drop(held_rd);
            tracer_main(ready, held_wr, t, source)
        }
        Err(e) => tell(&ready, &format!("E cannot fork the tracer: {e}"), 1),
        Ok(Forked::Parent(_)) => {
            drop(ready);
            drop(held_wr);
            let mut b = [0u8; 1];
            // End of file once the tracer has seized the caller (or failed).
            let _ = nix::unistd::read(held_rd.as_raw_fd(), &mut b);
            // Leaves without running the caller's exit handlers.
            _exit(0)
        }
    }
}

/// Writes a one-line answer to the caller and exits with `code`.
fn tell(ready: &OwnedFd, msg: &str, code: i32) -> ! {
    let _ = nix::unistd::write(ready, msg.as_bytes());
    // Leaves without running the caller's exit handlers.
    _exit(code)
}

fn tracer_main(
    ready: OwnedFd,
    held: OwnedFd,
    mut t: Tracer,
    source: Source<'static, std::io::Empty>,
) -> ! {
    let c = t.caller;
    let running = match ptrace::seize_thread(c.main_thread(), false) {
        Ok(r) => r,
        Err(e) => tell(
            &ready,
            &format!("E not permitted to trace the calling process {c}: {e}"),
            1,
        ),
    };
    let _ = nix::unistd::write(&ready, b"K");
    drop(ready);
    drop(held);
    let mut stopped = wait_caller_stop(running);
    // From here on the caller is half replaced: any failure kills it.
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        stopped
            .kill_on_exit()
            .ctx(|| format!("cannot trace the calling process {c}"))?;
        rebuild(&mut t, stopped, source)
    }));
    let err = match res {
        Ok(Ok(())) => {
            // Leaves without running the caller's exit handlers.
            _exit(0)
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => "the tracer panicked".to_string(),
    };
    eprintln!(
        "crtools: in-place restore of pid {} into pid {c} failed: {err}; the process is killed",
        t.meta.root().p.pid
    );
    let _ = kill(c.nix(), Signal::SIGKILL);
    t.ipc.undo();
    // Leaves without running the caller's exit handlers.
    _exit(1)
}

/// Waits until the caller stops itself. Until then it is still the
/// caller: its signals are its own. If it exits, it failed on its own and
/// said so: the tracer leaves.
fn wait_caller_stop(mut running: ptrace::Running) -> Stopped {
    loop {
        let (t, sig) = match running.wait() {
            Ok(Waited::Stopped(t, Stop::Signal(libc::SIGSTOP))) => return t,
            Ok(Waited::Stopped(t, Stop::Signal(s))) => (t, Signal::try_from(s).ok()),
            Ok(Waited::Stopped(t, _)) => (t, None),
            // Leaves without running the caller's exit handlers.
            Ok(Waited::Gone(..)) | Err(_) => _exit(1),
        };
        running = match t.resume(Resume::Cont, sig) {
            Ok(r) => r,
            // It died meanwhile: the next wait would say so.
            Err(_) => _exit(1),
        };
    }
}

/// Turns the stopped caller into the image's process and lets it run.
fn rebuild(
    t: &mut Tracer,
    caller: Stopped,
    mut source: Source<'static, std::io::Empty>,
) -> Result<()> {
    let c = t.caller;
    let pi = t.meta.root();
    let held = &mut *t.held;
    let mut bp = Building::new(pi, caller, c, &held.tramp)?;
    drain_signals(&mut bp.b)?;
    map::rebuild_space(&mut bp, t.plan, &held.specials, &held.map_sources())?;
    // A pidfd of itself refers to the caller, whose pid it takes.
    let me = std::collections::BTreeMap::from([(pi.pid(), c)]);
    super::pidfd::install(&mut bp, &me, false)?;
    let first = source.next_record()?;
    let mut sinks = bulk::Sinks {
        meta: t.meta,
        ipc: t.ipc,
        staged: t.staged,
        shm_fds: &held.shm_fds,
        shm_reused: &held.shm_reused,
        open: &held.open,
    };
    bulk::stream_bulk(
        std::slice::from_mut(&mut bp),
        &mut sinks,
        first,
        &mut source,
    )?;
    held.open.finish_sockets()?;
    held.open.close_pipes();
    super::memfd::seal_all(t.meta.shmem(), &held.shm_fds)?;
    t.ipc.finish()?;
    let own = super::asuser::OwnCreds::read()?;
    let made = finish::finish(&mut bp, &held.tramp, false, &own)?;
    debug_assert!(made.is_empty(), "single-threaded image");
    let stopped = pi.state == image::ProcState::Stopped;
    held.open.inet.repair_off()?;
    finish::release(vec![(c, c.main_thread(), bp.b.r, stopped)], false)?;
    // The IPC objects are the restored program's now.
    t.ipc.commit();
    Ok(())
}

/// Takes every signal still pending for the caller (its own, not the
/// image's) so the restored program does not receive it.
fn drain_signals(b: &mut Builder) -> Result<()> {
    let all: u64 = !((1 << (libc::SIGKILL - 1)) | (1 << (libc::SIGSTOP - 1)));
    let set = b.put(&all.to_le_bytes())?;
    let zero = b.put(&[0u8; 16])?;
    for _ in 0..256 {
        if b.r.raw(nr::RT_SIGTIMEDWAIT, &[set, 0, zero, 8])? < 0 {
            break;
        }
    }
    Ok(())
}
