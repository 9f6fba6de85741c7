//! Carrying out the tree part of a [`Plan`]: open what each new process
//! will hold, fork the root (which forks the rest, see [`super::child`]),
//! trace each new process as it reports itself, and wait until all are
//! stopped. Any failure leaves what was made to [`Undo`].

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};

use super::asuser;
use super::child::{self, ChildPlan, ChildView};
use super::files::{FdSource, OpenFiles};
use super::meta::{Live, Meta};
use super::plan::{Plan, ProcPlan};
use super::{Options, tty};
use crate::error::{Context, Error, Result};
use crate::image::File;
use crate::sys::arena::{Arena, HeapNoFork};
use crate::sys::ids::Pid;
use crate::sys::proc;
use crate::sys::ptrace::{self, Running, Stop, Stopped, Waited};
use crate::sys::worker::Worker;

/// Kills every process it holds unless disarmed: restore is all or nothing.
pub(crate) struct Undo {
    pub pids: Vec<Pid>,
    /// The second tracer thread, tracer of the processes from `split` on
    /// (see [`Tracers`]). Dropped only after they are killed: a tracer
    /// thread that exits lets its tracees run on, half built.
    pub worker: Option<Worker>,
}

impl Undo {
    pub(crate) fn new() -> Undo {
        Undo {
            pids: Vec::new(),
            worker: None,
        }
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        for &pid in self.pids.iter().rev() {
            let _ = kill(pid.nix(), Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid.nix(), Some(nix::sys::wait::WaitPidFlag::__WALL));
        }
        // Now `worker`, if any, ends (a field, dropped after this).
    }
}

/// How the live processes (in [`Meta::live`] order) are shared between
/// the restorer's thread and a second tracer thread ([`Undo::worker`]):
/// those from `split` on are the second thread's, from their seizure to
/// their release (ptrace answers only the thread that seized). Both
/// threads rebuild their halves at the same time, each pinned with its
/// processes to a CPU of its own.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tracers {
    pub split: usize,
}

/// The processes [`spawn_tree`] made.
pub(crate) struct Tree {
    /// image pid -> pid as the restorer sees it.
    pub outer: BTreeMap<Pid, Pid>,
    /// image pid -> pid as the process sees itself.
    pub inner: BTreeMap<Pid, Pid>,
    /// The pid namespace's init, with `--pidns`.
    pub init: Option<Pid>,
    /// Pid of each ghost of the plan, as its parent sees it.
    pub ghost_pids: Vec<Pid>,
    /// Closing this lets the ghosts exit.
    pub ghost_wr: Option<OwnedFd>,
    /// The main thread of each live process, seized, by the pid the
    /// restorer sees (emptied by [`wait_first_stops`]); `[1]` holds those
    /// the second tracer seized.
    running: [BTreeMap<Pid, Running>; 2],
    /// The main thread of each live process, in [`Meta::live`] order, in
    /// the stop it made itself when done with its own steps.
    pub stopped: Vec<Stopped>,
}

/// Whether a pid is held by a process that is not exiting.
pub(crate) fn pid_is_live(pid: Pid) -> bool {
    std::fs::metadata(format!("/proc/{pid}")).is_ok() && !pid_is_dying(pid)
}

/// Whether a pid is held by a running process nothing is about to end: not
/// exiting, and not traced (`ckpt --kill` holds its tree traced until it
/// kills it).
pub(crate) fn pid_is_staying(pid: Pid) -> bool {
    const PF_EXITING: u64 = 0x4;
    const SIGKILL_BIT: u64 = 1 << (libc::SIGKILL - 1);
    let exiting = std::fs::read(format!("/proc/{pid}/stat")).map_or(true, |s| {
        // Field 9, flags, counted after the command name.
        let after = s.iter().rposition(|&c| c == b')').map_or(0, |i| i + 2);
        std::str::from_utf8(&s[after.min(s.len())..])
            .ok()
            .and_then(|t| t.split(' ').nth(6)?.parse::<u64>().ok())
            .is_none_or(|f| f & PF_EXITING != 0)
    });
    let field = |s: &str, name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    pid_is_live(pid)
        && !exiting
        && std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
            let killed = ["SigPnd:", "ShdPnd:"].iter().any(|n| {
                field(&s, n)
                    .and_then(|v| u64::from_str_radix(&v, 16).ok())
                    .is_some_and(|m| m & SIGKILL_BIT != 0)
            });
            field(&s, "TracerPid:").as_deref() == Some("0") && !killed
        })
}

/// What to do about a pid in use.
pub(crate) const PID_IN_USE: &str = "pid already in use (restore with --no-pids, or --pidns to keep the pids in a new pid namespace)";

/// Whether a pid is held by a process that is exiting or a zombie.
fn pid_is_dying(pid: Pid) -> bool {
    match std::fs::read(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let after = s.iter().rposition(|&c| c == b')').map(|i| i + 2);
            matches!(after.and_then(|i| s.get(i)), Some(b'Z') | Some(b'X'))
        }
        Err(_) => true,
    }
}

/// What a process gets for an outside descriptor whose default is the
/// restorer's stdin when that stdin is the image itself (`cr-restart <
/// IMG`): handing it the rest of the image stream is never right. A job
/// that read a terminal gets the restorer's terminal (its stdout or
/// stderr, when one of them is a terminal); anything else gets
/// `/dev/null`.
fn stdin_stand_in(f: &File) -> FdSource {
    let was_tty = f.mode & libc::S_IFMT == libc::S_IFCHR
        && (f.path.starts_with(b"/dev/pts/") || f.path.starts_with(b"/dev/tty"));
    let tty = [1, 2]
        .into_iter()
        .find(|&fd| nix::unistd::isatty(fd).unwrap_or(false));
    match tty {
        Some(fd) if was_tty => FdSource::Inherit(fd),
        _ => FdSource::Path(crate::image::EXTERNAL_DETACHED.into()),
    }
}

/// Reconnects a descriptor that led outside the image.
fn connect_external(f: &File, target: u32, opts: &Options) -> Result<OwnedFd> {
    let src = opts
        .fd_map
        .iter()
        .find(|(t, _)| *t == target)
        .map(|(_, s)| s.clone());
    let src = src.unwrap_or_else(|| match opts.detach {
        true => FdSource::Path(crate::image::EXTERNAL_DETACHED.into()),
        false => match crate::image::external_default_fd(target, f.flags) {
            0 if opts.image_on_stdin => stdin_stand_in(f),
            n => FdSource::Inherit(n as RawFd),
        },
    });
    match src {
        FdSource::Inherit(fd) => crate::sys::fds::dup(fd)
            .ctx(|| format!("cannot use descriptor {fd} of cr-restart for descriptor {target}")),
        FdSource::Path(p) => {
            let acc = f.flags as i32 & libc::O_ACCMODE;
            let mut o = std::fs::OpenOptions::new();
            o.read(acc != libc::O_WRONLY);
            if acc != libc::O_RDONLY {
                o.write(true).create(true);
                if f.flags as i32 & libc::O_APPEND != 0 {
                    o.append(true);
                }
            }
            let file = o
                .open(&p)
                .ctx(|| format!("cannot open {} for descriptor {target}", p.display()))?;
            Ok(OwnedFd::from(file))
        }
    }
}

/// Moves a descriptor above `base` (close-on-exec).
pub(crate) fn high(fd: OwnedFd, base: RawFd) -> Result<OwnedFd> {
    crate::sys::fds::dup_above(fd.as_raw_fd(), base).ctx(|| "cannot duplicate a descriptor".into())
}

/// What the restorer holds for the new processes while they are made:
/// descriptors above every number the image uses, and of them the
/// directories opened so far, by path and credentials (processes with the
/// same working directory and credentials share one descriptor: every
/// process forked inherits every descriptor held, a tree of 256 each of
/// them 256 times).
#[derive(Default)]
pub(crate) struct Kept {
    fds: Vec<OwnedFd>,
    dirs: std::collections::HashMap<(Vec<u8>, asuser::Acting), RawFd>,
}

impl Kept {
    /// Directory `path` opened as `acting` says (see [`asuser::open_dir`])
    /// and held above `base`, or the one held already.
    fn dir(&mut self, acting: &asuser::Acting, path: &[u8], base: RawFd) -> Result<RawFd> {
        let key = (path.to_vec(), acting.clone());
        if let Some(&fd) = self.dirs.get(&key) {
            return Ok(fd);
        }
        let fd = high(asuser::open_dir(acting, path)?, base)?;
        let raw = fd.as_raw_fd();
        self.fds.push(fd);
        self.dirs.insert(key, raw);
        Ok(raw)
    }
}

/// The raw plan one new process (or the in-place caller) follows: the
/// planned steps with the descriptors the restorer opened for it (held
/// above every number the image uses, in `keep`): its files, root and
/// working directory.
pub(crate) fn child_plan(
    pi: &Live,
    pp: &ProcPlan,
    opts: &Options,
    open: &mut OpenFiles,
    keep: &mut Kept,
) -> Result<ChildPlan> {
    let p = &pi.p;
    let mut plan = ChildPlan {
        image_pid: pi.pid().as_raw(),
        want: pp.want.map(Pid::as_raw),
        exit_signal: pp.exit_signal,
        umask: pp.umask,
        setsid: pp.setsid,
        setpgid: pp.setpgid,
        close: pp.close.clone(),
        children: pp.children.clone(),
        unmap: pp.cow.unmap.clone(),
        fork_map: pp.cow.fork_map.clone(),
        fill: pp.cow.fill,
        zombies: pp
            .zombies
            .iter()
            .map(|z| (z.want.map(Pid::as_raw), z.status, z.name))
            .collect(),
        ..Default::default()
    };
    let external = |f: &File, target: u32| -> Result<OwnedFd> { connect_external(f, target, opts) };
    // Opened with the process's own credentials (trust: see asuser).
    open.acting = asuser::Acting::of(p)?;
    for (place, fd) in pp.fds.iter().zip(&pi.fds) {
        if fd.file.kind == crate::image::FileType::Pidfd {
            // Made once the tree exists: `pidfd::install`.
            continue;
        }
        let src = open.open(&fd.file, place.fd, &external).map_err(|e| {
            Error::msg(format!(
                "cannot restore descriptor {} of pid {}: {e}",
                place.fd, p.pid
            ))
        })?;
        plan.fds.push((place.fd as RawFd, src, place.cloexec));
    }
    let cwd = if p.cwd.is_empty() { b"/" } else { &p.cwd[..] };
    let cwd = keep
        .dir(&open.acting, cwd, open.base)
        .map_err(|e| Error::msg(format!("cannot restore pid {}: cwd: {e}", p.pid)))?;
    plan.cwd = Some(cwd);
    if !p.root.is_empty() && p.root != b"/" {
        let r = keep
            .dir(&open.acting, &p.root, open.base)
            .map_err(|e| Error::msg(format!("cannot restore pid {}: root: {e}", p.pid)))?;
        plan.root = Some(r);
    }
    open.acting = asuser::Acting::restorer();
    Ok(plan)
}

/// Opens a session leader's controlling terminal for `TIOCSCTTY`.
fn ctty_source(
    pi: &Live,
    meta: &Meta,
    opts: &Options,
    open: &mut OpenFiles,
) -> Result<Option<RawFd>> {
    let Some(f) = tty::ctty_file(&pi.p, meta.files()) else {
        return Ok(None);
    };
    let external = |f: &File, target: u32| -> Result<OwnedFd> { connect_external(f, target, opts) };
    open.acting = asuser::Acting::of(&pi.p)?;
    let src = open.open(f, u32::MAX, &external);
    open.acting = asuser::Acting::restorer();
    let src = src.map_err(|e| {
        Error::msg(format!(
            "cannot restore the controlling terminal of pid {}: {e}",
            pi.p.pid
        ))
    })?;
    Ok(Some(src))
}

/// Waits (bounded) until no process or thread holds any of `ids`.
fn wait_for_ids(ids: &[u32], wait: Duration) -> Result<()> {
    let deadline = Instant::now() + wait;
    for id in ids.iter().map(|&id| Pid::from_u32(id)) {
        while std::fs::metadata(format!("/proc/{id}")).is_ok() {
            if Instant::now() >= deadline
                || pid_is_live(id) && Instant::now() + wait / 2 >= deadline
                || pid_is_staying(id)
            {
                return Err(Error::msg(format!("cannot restore pid {id}: {PID_IN_USE}")));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(())
}

/// Finds the pid we see for the process that sees itself as `inner`,
/// among the descendants of `init`.
fn outer_of(init: Pid, inner: Pid) -> Option<Pid> {
    let mut stack = vec![init];
    while let Some(p) = stack.pop() {
        if let Ok(st) = proc::status(p)
            && st.ns_pid.last() == Some(&inner.as_raw())
            && p != init
        {
            return Some(p);
        }
        for t in proc::tasks(p).unwrap_or_default() {
            let children = proc::children(p, t).unwrap_or_default();
            stack.extend(children.into_iter().map(Pid::from_raw));
        }
    }
    None
}

/// The pipes between the restorer and the new processes.
struct Pipes {
    keep: Vec<OwnedFd>,
    sync_wr: Vec<OwnedFd>,
    ghost_rd: OwnedFd,
    ghost_wr: OwnedFd,
    report_rd: OwnedFd,
    report_wr: OwnedFd,
    err_rd: OwnedFd,
    err_wr: OwnedFd,
}

impl Pipes {
    /// One sync pipe per process (its read end in its plan), and the
    /// shared ones, all above every descriptor number the processes use so
    /// placing their descriptors cannot clobber these.
    fn new(plans: &mut [ChildPlan], base: RawFd) -> Result<Pipes> {
        let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "pipe".into());
        let mut keep = Vec::new();
        let mut sync_wr = Vec::new();
        for plan in plans.iter_mut() {
            let (rd, wr) = pipe()?;
            let rd = high(rd, base)?;
            plan.sync_rd = rd.as_raw_fd();
            keep.push(rd);
            sync_wr.push(wr);
        }
        let (ghost_rd, ghost_wr) = pipe()?;
        let (report_rd, report_wr) = pipe()?;
        let (err_rd, err_wr) = pipe()?;
        Ok(Pipes {
            keep,
            sync_wr,
            ghost_rd: high(ghost_rd, base)?,
            ghost_wr: high(ghost_wr, base)?,
            report_rd,
            report_wr: high(report_wr, base)?,
            err_rd,
            err_wr: high(err_wr, base)?,
        })
    }

    /// The shared descriptors, their list in `arena`.
    fn shared<'a>(&self, arena: &'a Arena) -> Result<child::Shared<'a>> {
        let sync_wr: Vec<RawFd> = self.sync_wr.iter().map(|f| f.as_raw_fd()).collect();
        Ok(child::Shared {
            report_wr: self.report_wr.as_raw_fd(),
            err_wr: self.err_wr.as_raw_fd(),
            sync_wr: arena.put(&sync_wr).ctx(|| "cannot map memory".into())?,
            ghost_rd: self.ghost_rd.as_raw_fd(),
            ghost_wr: self.ghost_wr.as_raw_fd(),
        })
    }
}

/// The error a new process reported, or that it exited early.
fn child_failed(err_rd: &OwnedFd) -> Error {
    let mut buf = [0u8; child::REPORT_LEN];
    let read = err_rd
        .try_clone()
        .map(std::fs::File::from)
        .and_then(|mut f| f.read(&mut buf));
    match read {
        Ok(n) if n == buf.len() => {
            let errno = nix::errno::Errno::from_raw(u16::from_le_bytes([buf[2], buf[3]]) as i32);
            let pid = i32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
            Error::msg(format!(
                "cannot restore pid {pid}: the new process failed while {}: {errno}",
                child::Step::describe(buf[0])
            ))
        }
        _ => Error::msg("cannot restore: a new process exited early".to_string()),
    }
}

/// Forks the root (or the new namespace's init), retrying while its pid
/// settles; the child runs the plans and never returns. The plans and
/// `shared` must be in an [`Arena`]: the restorer's heap is kept out of
/// the new process ([`HeapNoFork`]), so none of the tree starts with a
/// copy of it to fork again and unmap.
fn fork_root(
    plan: &Plan,
    plans: &[ChildView],
    shared: &child::Shared,
    opts: &Options,
) -> Result<Pid> {
    let root = &plans[0];
    let deadline = Instant::now() + opts.pid_wait;
    let _no_heap = HeapNoFork::new();
    let forked = loop {
        let r = child::fork_root(plan.new_pidns, plan.with_init, plans, shared);
        // A pid freed a moment ago may still be settling in the kernel.
        if matches!(r, Err(nix::errno::Errno::EEXIST))
            && Instant::now() < deadline
            && !root.want.map(Pid::from_raw).is_some_and(pid_is_live)
        {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        break r;
    };
    match forked {
        Ok(pid) => Ok(Pid::from_raw(pid)),
        Err(nix::errno::Errno::EEXIST) => Err(Error::msg(format!(
            "cannot restore pid {}: {PID_IN_USE}",
            root.image_pid
        ))),
        Err(nix::errno::Errno::EPERM) if root.want.is_some() => Err(Error::msg(format!(
            "cannot restore pid {}: clone3: EPERM: choosing pids needs CAP_SYS_ADMIN (or CAP_CHECKPOINT_RESTORE); restore with --no-pids",
            root.image_pid
        ))),
        Err(e) => Err(Error::msg(format!(
            "cannot restore pid {}: clone3: {e}",
            root.image_pid
        ))),
    }
}

/// Fills the memory a process's children inherit, when it asks
/// ([`child::FILL_REQUEST`]); see [`super::cow`].
pub(crate) trait Fill {
    /// Process `idx` of the plan (pid `pid`) waits with its children's
    /// ranges mapped; returns the processes now filled, which may go on.
    fn request(&mut self, idx: usize, pid: Pid) -> Result<Vec<usize>>;
}

/// Creates every process of the tree as `plan` says, each forked by its
/// own parent with its pid, session and group, lets each place its
/// descriptors, and returns them traced and stopped.
pub(crate) fn spawn_tree(
    meta: &Meta,
    plan: &Plan,
    opts: &Options,
    open: &mut OpenFiles,
    undo: &mut Undo,
    fill: &mut dyn Fill,
    tracers: Option<Tracers>,
) -> Result<Tree> {
    if !plan.free_ids.is_empty() {
        wait_for_ids(&plan.free_ids, opts.pid_wait)?;
    }
    let mut keep = Kept::default();
    let mut plans: Vec<ChildPlan> = Vec::new();
    for (pi, pp) in meta.live().iter().zip(&plan.procs) {
        let mut cp = child_plan(pi, pp, opts, open, &mut keep)?;
        cp.ctty = ctty_source(pi, meta, opts, open)?;
        plans.push(cp);
    }
    for g in &plan.ghosts {
        let pgid = Pid::from_u32(g.pgid);
        plans[g.parent]
            .ghosts
            .push((pgid.as_raw(), g.want.map(Pid::as_raw)));
    }
    let pipes = Pipes::new(&mut plans, open.base)?;
    // What the new processes read, off the heap (see `fork_root`).
    let arena = Arena::new();
    let views = plans
        .iter()
        .map(|p| p.view_in(&arena))
        .collect::<std::io::Result<Vec<_>>>()
        .and_then(|v| arena.put(&v))
        .ctx(|| "cannot map memory for the new processes".into())?;
    let shared = pipes.shared(&arena)?;
    let root_pid = fork_root(plan, views, &shared, opts)?;
    undo.pids.push(root_pid);
    // Started after the root's fork: the restorer has one thread for it
    // (`HeapNoFork`), and before any process is seized.
    if tracers.is_some() {
        let w = Worker::spawn("cr-restart-tracer")
            .ctx(|| "cannot start a second tracer thread".into())?;
        undo.worker = Some(w);
    }
    let split = tracers.map_or(usize::MAX, |t| t.split);
    let Pipes {
        keep: sync_keep,
        sync_wr,
        ghost_rd,
        ghost_wr,
        report_rd,
        report_wr,
        err_rd,
        err_wr,
    } = pipes;
    drop(report_wr);
    drop(err_wr);
    let init = plan.with_init.then_some(root_pid);
    let mut tree = Tree {
        outer: BTreeMap::new(),
        inner: BTreeMap::new(),
        init,
        ghost_pids: vec![Pid::from_raw(0); plan.ghosts.len()],
        ghost_wr: Some(ghost_wr),
        running: [BTreeMap::new(), BTreeMap::new()],
        stopped: Vec::new(),
    };
    collect_reports(
        meta, plan, &plans, root_pid, &report_rd, &err_rd, &sync_wr, &mut tree, undo, fill, split,
    )?;
    drop(sync_wr);
    let live = meta.live();
    let split = split.min(live.len());
    let [mine, theirs] = std::mem::take(&mut tree.running);
    let first = wait_first_stops(&live[..split], &tree.outer, mine, &err_rd);
    let first = match first {
        Ok(v) => v,
        Err((e, gone)) => {
            undo.pids.retain(|&x| Some(x) != gone);
            return Err(e);
        }
    };
    tree.stopped = first;
    if let Some(w) = &undo.worker {
        let outer = &tree.outer;
        let err = &err_rd;
        let second = w
            .run(move || wait_first_stops(&live[split..], outer, theirs, err))
            .map_err(|g| (Error::msg(format!("cannot restore: {g}")), None))
            .and_then(|r| r);
        match second {
            Ok(v) => tree.stopped.extend(v),
            Err((e, gone)) => {
                undo.pids.retain(|&x| Some(x) != gone);
                return Err(e);
            }
        }
    }
    drop(keep);
    drop(sync_keep);
    drop(ghost_rd);
    Ok(tree)
}

/// Each new process reports itself: trace it, then let it go on.
#[allow(clippy::too_many_arguments)]
fn collect_reports(
    meta: &Meta,
    plan: &Plan,
    plans: &[ChildPlan],
    root_pid: Pid,
    report_rd: &OwnedFd,
    err_rd: &OwnedFd,
    sync_wr: &[OwnedFd],
    tree: &mut Tree,
    undo: &mut Undo,
    fill: &mut dyn Fill,
    split: usize,
) -> Result<()> {
    let live = meta.live();
    let report = std::fs::File::from(report_rd.try_clone().ctx(|| "dup".into())?);
    let mut ghosts_seen = 0;
    while tree.outer.len() + ghosts_seen < live.len() + plan.ghosts.len() {
        let mut fds = [
            nix::poll::PollFd::new(report.as_fd(), nix::poll::PollFlags::POLLIN),
            nix::poll::PollFd::new(err_rd.as_fd(), nix::poll::PollFlags::POLLIN),
        ];
        let n = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(10_000u16))
            .ctx(|| "poll".into())?;
        if n == 0 {
            return Err(Error::msg(
                "cannot restore: the new processes did not start within 10 s",
            ));
        }
        if fds[1].any().unwrap_or(false) {
            return Err(child_failed(err_rd));
        }
        let mut rep = [0u8; 8];
        (&report)
            .read_exact(&mut rep)
            .map_err(|_| child_failed(err_rd))?;
        let image_pid = i32::from_le_bytes([rep[0], rep[1], rep[2], rep[3]]);
        let seen_raw = i32::from_le_bytes([rep[4], rep[5], rep[6], rep[7]]);
        if seen_raw == child::FILL_REQUEST {
            let asked = Pid::from_raw(image_pid);
            let idx = live.iter().position(|x| x.pid() == asked);
            let pid = tree.outer.get(&asked).copied();
            let (Some(idx), Some(pid)) = (idx, pid) else {
                return Err(Error::msg(
                    "cannot restore: a new process asked for memory with a wrong pid",
                ));
            };
            for go in fill.request(idx, pid)? {
                nix::unistd::write(&sync_wr[go], &[1])
                    .ctx(|| "cannot let a new process go on".into())?;
            }
            continue;
        }
        let seen = Pid::from_raw(seen_raw);
        if image_pid < 0 {
            // A ghost leader (reported with its group id negated): not
            // traced, it only holds its group for a moment.
            let pgid = image_pid.unsigned_abs();
            if let Some(g) = plan.ghosts.iter().position(|g| g.pgid == pgid) {
                tree.ghost_pids[g] = seen;
                ghosts_seen += 1;
            }
            continue;
        }
        let not_found = || {
            Error::msg(format!(
                "cannot restore pid {image_pid}: cannot find it in the new pid namespace"
            ))
        };
        let pid = match tree.init {
            None if plan.new_pidns && image_pid == plans[0].image_pid => root_pid,
            None if plan.new_pidns => outer_of(root_pid, seen).ok_or_else(not_found)?,
            Some(init) => outer_of(init, seen).ok_or_else(not_found)?,
            None => seen,
        };
        let image_pid = Pid::from_raw(image_pid);
        tree.inner.insert(image_pid, seen);
        let idx = live
            .iter()
            .position(|x| x.pid() == image_pid)
            .ok_or_else(|| Error::msg("cannot restore: a new process reported a wrong pid"))?;
        if pid != root_pid {
            undo.pids.push(pid);
        }
        let seize = move || {
            ptrace::seize_thread(pid.main_thread(), true)
                .ctx(|| format!("cannot trace new process {pid}"))
        };
        // The second tracer's processes are seized by it.
        let (running, half) = match &undo.worker {
            Some(w) if idx >= split => (
                w.run(seize)
                    .map_err(|g| Error::msg(format!("cannot trace new process {pid}: {g}")))??,
                1,
            ),
            _ => (seize()?, 0),
        };
        tree.running[half].insert(pid, running);
        nix::unistd::write(&sync_wr[idx], &[1]).ctx(|| "cannot start a new process".into())?;
        tree.outer.insert(image_pid, pid);
    }
    Ok(())
}

/// Waits until every process of `live` (seized, in `running`) has
/// stopped itself, done with its own steps; returns their main threads so
/// stopped, in order. Runs on their tracer thread. An error says which
/// process is gone already (reaped here: not to be killed again).
fn wait_first_stops(
    live: &[Live],
    outer: &BTreeMap<Pid, Pid>,
    mut running: BTreeMap<Pid, Running>,
    err_rd: &OwnedFd,
) -> std::result::Result<Vec<Stopped>, (Error, Option<Pid>)> {
    let mut stopped = Vec::with_capacity(live.len());
    for pi in live {
        let image_pid = pi.pid();
        let pid = *outer.get(&image_pid).ok_or_else(|| {
            (
                Error::msg(format!("cannot restore pid {image_pid}: it never started")),
                None,
            )
        })?;
        let mut thread = running.remove(&pid).ok_or_else(|| {
            (
                Error::msg(format!(
                    "cannot restore pid {image_pid}: it was never traced"
                )),
                None,
            )
        })?;
        loop {
            let waited = thread
                .wait()
                .ctx(|| format!("waiting for new process {pid}"))
                .map_err(|e| (e, None))?;
            match waited {
                Waited::Stopped(t, Stop::Signal(libc::SIGSTOP)) => {
                    stopped.push(t);
                    break;
                }
                // SIGCHLD from a zombie child it just made: the original parent
                // had that one already.
                Waited::Stopped(t, Stop::Signal(libc::SIGCHLD)) => {
                    thread = t
                        .resume(ptrace::Resume::Cont, None)
                        .ctx(|| format!("resuming new process {pid}"))
                        .map_err(|e| (e, None))?;
                }
                Waited::Gone(..) => return Err((child_failed(err_rd), Some(pid))),
                Waited::Stopped(_, other) => {
                    return Err((
                        Error::msg(format!(
                            "cannot restore pid {image_pid}: unexpected first stop {other:?}"
                        )),
                        None,
                    ));
                }
            }
        }
    }
    Ok(stopped)
}
