//! Rebuilding a process tree from an image: read the metadata and
//! validate it ([`meta`]), plan the steps with no syscalls ([`plan`]),
//! then carry the plan out: create each process with `clone3` (with its
//! original pid) and let it place its own descriptors ([`spawn`],
//! [`child`]), rebuild its address space ([`map`]) and stream its page
//! data in ([`bulk`]), finish its state with remote syscalls
//! ([`finish`]), verify the end of the stream, and only then release the
//! tree. Any failure before the release kills everything that was built:
//! restore is all or nothing. [`inplace`] runs the same plan and steps
//! for one process that becomes the caller.

pub mod asuser;
mod bulk;
pub mod carry;
mod cow;
mod events;
// The one part of `restart` with `unsafe`: it runs in a fork of the
// restorer between `clone3` and its first stop (and as the in-place caller's
// last steps), where only raw syscalls on prepared values are safe.
#[allow(unsafe_code)]
pub mod child;
pub mod files;
mod finish;
pub mod inet;
pub mod inject;
pub mod inplace;
pub mod ipc;
pub mod job;
pub mod locks;
mod map;
mod memfd;
pub mod meta;
pub mod mqueue;
mod pages;
mod pidfd;
pub mod plan;
pub mod posixshm;
pub mod precopy;
pub mod space;
mod spawn;
pub mod spool;
pub mod tty;
mod unix;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::fd::{OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::error::{Context, Error, Result};
use crate::image::{self, Reader};
use crate::sys::ids::Pid;
use crate::sys::ptrace::Stopped;
use crate::sys::remote::{self, Gate, Remote, nr};

use crate::sys::worker::Worker;
pub use files::FdSource;
use meta::{Live, Meta};
use plan::{Leader, Plan, PlanOptions};
use space::{Builder, Trampoline};
use spawn::{Tracers, Tree, Undo};

/// How to restore.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Give every process its original pid (the default); otherwise any free pid.
    pub original_pids: bool,
    /// Explicit reconnections of descriptors that led outside the image,
    /// by descriptor number in the restored process.
    pub fd_map: Vec<(u32, FdSource)>,
    /// How long to wait for a pid still held by a dying process.
    pub pid_wait: Duration,
    /// Restore inside a new pid namespace, under a minimal init, so the
    /// original pids never collide with running processes.
    pub pidns: bool,
    /// `--detach`: a descriptor that led outside the image and has no
    /// `fd_map` entry goes to `/dev/null` instead of the restorer's own
    /// stdin/stdout, so nothing restored keeps them open.
    pub detach: bool,
    /// `--remap PATH=NEWPATH`: files of the image found elsewhere here.
    pub remap: Vec<(std::path::PathBuf, std::path::PathBuf)>,
    /// The caller waits for the tree: a root that was a shell's job may
    /// take the caller's controlling terminal (see [`job`]).
    pub terminal_job: bool,
    /// The image is read from the restorer's standard input: its
    /// descriptor 0 is the image, never a restored process's default
    /// stdin (see `spawn::connect_external`).
    pub image_on_stdin: bool,
    /// `--tcp-established`: restore the established TCP connections the
    /// image holds (refused without it).
    pub tcp_established: bool,
}

/// A restored, running tree.
#[derive(Debug)]
pub struct Restored {
    /// The root's pid, as the caller sees it.
    pub pid: Pid,
    /// The caller's child to wait for: the root, or with `pidns` the
    /// namespace's init, which exits with the root's status.
    pub wait_pid: Pid,
    /// The pids every process of the image got, old -> new.
    pub pids: BTreeMap<Pid, Pid>,
    /// The caller's terminal, lent to the root (see [`job`]): pass it to
    /// [`job::wait_job`], which gives it back.
    pub terminal: Option<job::JobTerminal>,
}

/// A process being built.
pub(crate) struct Building<'a> {
    pi: &'a Live,
    pid: Pid,
    /// Its pid as the process itself sees it (differs under `--pidns`).
    inner: Pid,
    b: Builder<'a>,
    /// (start, end) of mappings whose contents the image may carry.
    writable: Vec<(u64, u64)>,
    /// Its userfaultfd, when made ahead of the bulk data (`pages`).
    uffd: pages::Early,
}

impl<'a> Building<'a> {
    /// Starts building `pi`, whose main thread `main` is stopped under
    /// ptrace (`inner`: its pid in its own namespace).
    pub(crate) fn new(
        pi: &'a Live,
        main: Stopped,
        inner: Pid,
        tramp: &'a Trampoline,
    ) -> Result<Self> {
        let pid = Pid::from_raw(main.tid().as_raw());
        let r = Remote::on(main, Gate::Trap(tramp.addr))?;
        Ok(Building {
            pi,
            pid,
            inner,
            b: Builder::new(r, pid, tramp),
            writable: Vec::new(),
            uffd: pages::Early::NotYet,
        })
    }
}

/// What the restorer holds for every process while it builds them: shared
/// memory objects, the image's open files, the trampoline and the kernel's
/// special mappings of its own.
pub(crate) struct Held {
    pub shm_fds: HashMap<u64, OwnedFd>,
    /// Objects whose file was found in `/dev/shm` identical: their
    /// contents are not written again.
    pub shm_reused: std::collections::HashSet<u64>,
    /// Files made in `/dev/shm`, removed unless the tree is released.
    pub posix_made: posixshm::Made,
    /// POSIX message queues, by id, and those made here (unlinked unless
    /// the tree is released).
    pub _mq_fds: HashMap<u64, OwnedFd>,
    pub mq_made: mqueue::Made,
    pub sysv_sizes: HashMap<u64, u64>,
    pub open: files::OpenFiles,
    pub tramp: Trampoline,
    pub specials: Vec<space::Special>,
    /// Files mapped by processes with other credentials, opened with theirs.
    pub mapped: asuser::MappedFiles,
}

impl Held {
    /// Creates the shared memory objects (memfds processes map through
    /// `/proc/<restorer>/fd/N`), maps the trampoline clear of every
    /// mapping of the image, and readies the open-file table above every
    /// descriptor number the image uses. `ipc` must have been created.
    pub(crate) fn new(meta: &Meta, ipc: &ipc::IpcRestore) -> Result<Held> {
        let mut shm_fds = HashMap::new();
        let mut shm_reused = std::collections::HashSet::new();
        let mut posix_made = posixshm::Made::default();
        for s in meta.shmem().values() {
            let fd = match meta.posix_shm().get(&s.id) {
                Some(p) => {
                    let o = posixshm::open(meta, p, &mut posix_made)?;
                    if o.reused {
                        shm_reused.insert(s.id);
                    }
                    o.fd
                }
                None => memfd::create(s)?,
            };
            shm_fds.insert(s.id, fd);
        }
        let mut mq_fds = HashMap::new();
        let mut mq_made = mqueue::Made::default();
        let mut queues: Vec<&image::PosixMqueue> = meta.mqueues().values().collect();
        queues.sort_by_key(|q| q.id);
        for q in queues {
            mq_fds.insert(q.id, mqueue::open(meta, q, &mut mq_made)?);
        }
        let sysv_sizes = ipc
            .segments()
            .iter()
            .map(|s| (s.id as u64, s.size))
            .collect();
        let avoid: Vec<(u64, u64)> = meta
            .live()
            .iter()
            .flat_map(|pi| pi.mm.vmas.iter().map(|v| (v.start, v.end)))
            .collect();
        let tramp = Trampoline::map(&avoid)?;
        let specials = space::own_specials()?;
        let max_fd = meta
            .live()
            .iter()
            .flat_map(|pi| pi.fds.iter().map(|f| f.fd))
            .max()
            .unwrap_or(2)
            .max(2);
        crate::sys::rlimit::raise_nofile(max_fd as u64 + 256);
        let mut open = files::OpenFiles::new(max_fd as RawFd + 1);
        open.pipes = meta.pipes().clone();
        open.sockets = meta.sockets().clone();
        open.inet = inet::InetSockets::new(meta.inet().clone());
        open.ptys = tty::Ptys::new(meta.ptys().clone());
        open.events = meta.events().clone();
        open.files = meta.files().clone();
        open.shm = shm_fds
            .iter()
            .map(|(&id, fd)| (id, std::os::fd::AsRawFd::as_raw_fd(fd)))
            .collect();
        open.mq = mq_fds
            .iter()
            .map(|(&id, fd)| (id, std::os::fd::AsRawFd::as_raw_fd(fd)))
            .collect();
        open.mqueues = meta.mqueues().clone();
        Ok(Held {
            shm_fds,
            shm_reused,
            posix_made,
            _mq_fds: mq_fds,
            mq_made,
            sysv_sizes,
            open,
            tramp,
            specials,
            mapped: asuser::MappedFiles::open(meta)?,
        })
    }

    fn map_sources(&self) -> map::MapSources<'_> {
        map::MapSources {
            shm_fds: &self.shm_fds,
            open: &self.open,
            sysv_sizes: &self.sysv_sizes,
            mapped: &self.mapped,
        }
    }
}

/// Refuses a `--fd N=...` for a descriptor N that leads nowhere outside
/// the image: it would otherwise be silently ignored.
pub(crate) fn check_fd_map(meta: &Meta, opts: &Options) -> Result<()> {
    let ext = meta.external_fds();
    for &(n, _) in &opts.fd_map {
        if !ext.contains(&n) {
            let list: Vec<String> = ext.iter().map(|d| d.to_string()).collect();
            let which = if list.is_empty() {
                "it has none".to_string()
            } else {
                format!("only {} lead outside it", list.join(", "))
            };
            return Err(Error::msg(format!(
                "--fd {n}: descriptor {n} does not lead outside the image ({which})"
            )));
        }
    }
    Ok(())
}

/// The CPU pins of a tree being rebuilt: each process with its tracer
/// (see [`remote::SameCpu`]), the restorer's thread on one CPU and the
/// second tracer on another. Given back by [`finish_all`].
struct Pins {
    mine: Vec<remote::SameCpu>,
    /// Pins made on the second tracer, given back there.
    theirs: Vec<remote::SameCpu>,
    thread: Option<ThreadPin>,
}

/// A remote-syscall session for each live process of `tree`, each pinned
/// to its tracer's CPU while it is rebuilt (remote syscalls are a few
/// times cheaper there); affinities go back at the release. With a second
/// tracer, each thread makes the sessions of its own half, on CPUs apart.
fn sessions<'a>(
    meta: &'a Meta,
    tree: &mut spawn::Tree,
    tramp: &'a Trampoline,
    worker: Option<&Worker>,
    tracers: Option<Tracers>,
) -> Result<(Pins, Vec<Building<'a>>)> {
    let live = meta.live();
    let mut stopped = std::mem::take(&mut tree.stopped);
    let inner = &tree.inner;
    let (Some(w), Some(t)) = (worker, tracers) else {
        let (mine, building) = sessions_of(live, stopped, inner, tramp)?;
        let pins = Pins {
            mine,
            theirs: Vec::new(),
            thread: None,
        };
        return Ok((pins, building));
    };
    let split = t.split.min(stopped.len());
    let theirs = stopped.split_off(split);
    let cpu = nix::sched::sched_getcpu().ok();
    let thread = cpu.and_then(ThreadPin::to);
    let (second, first) = w.join(
        || {
            // Kept off the restorer thread's CPU (best effort; the thread
            // ends with the restore).
            std::mem::forget(cpu.and_then(ThreadPin::avoiding));
            sessions_of(&live[split..], theirs, inner, tramp)
        },
        || sessions_of(&live[..split], stopped, inner, tramp),
    );
    let (mine, mut building) = first?;
    let (theirs, rest) = second.map_err(gone)??;
    building.extend(rest);
    let pins = Pins {
        mine,
        theirs,
        thread,
    };
    Ok((pins, building))
}

/// The sessions of the processes `live`, whose main threads are `stopped`
/// (in that order), each pinned beside the calling thread.
fn sessions_of<'a>(
    live: &'a [Live],
    stopped: Vec<Stopped>,
    inner_pids: &BTreeMap<Pid, Pid>,
    tramp: &'a Trampoline,
) -> Result<(Vec<remote::SameCpu>, Vec<Building<'a>>)> {
    let mut pins = Vec::new();
    let mut building = Vec::new();
    for (pi, main) in live.iter().zip(stopped) {
        let image_pid = pi.pid();
        let Some(&inner) = inner_pids.get(&image_pid) else {
            return Err(Error::msg(format!(
                "cannot restore pid {image_pid}: it never started"
            )));
        };
        pins.push(remote::SameCpu::new(main.tid()));
        building.push(Building::new(pi, main, inner, tramp)?);
    }
    Ok((pins, building))
}

/// The error for a second tracer that is gone.
fn gone(g: crate::sys::worker::Gone) -> Error {
    Error::msg(format!("cannot restore: the second tracer thread: {g}"))
}

/// Runs `f` on the processes `items` (in [`Meta::live`] order), each on
/// its tracer's thread: with a second tracer, those from the split on
/// there and the rest here, at the same time. `f` gets a part and the
/// index of its first item; returns the results of the parts in order.
fn halves<T: Send, R: Send>(
    worker: Option<&Worker>,
    tracers: Option<Tracers>,
    items: &mut [T],
    f: impl Fn(&mut [T], usize) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let (Some(w), Some(t)) = (worker, tracers) else {
        return Ok(vec![f(items, 0)?]);
    };
    let split = t.split.min(items.len());
    let (a, b) = items.split_at_mut(split);
    let (rb, ra) = w.join(|| f(b, split), || f(a, 0));
    let ra = ra?;
    let rb = rb.map_err(gone)??;
    Ok(vec![ra, rb])
}

/// The calling thread kept on some CPUs until dropped, when it gets its
/// affinity back. Best effort: `None` where it cannot be set.
struct ThreadPin {
    before: nix::sched::CpuSet,
}

impl ThreadPin {
    fn set(to: impl Fn(usize) -> bool) -> Option<ThreadPin> {
        use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
        let me = nix::unistd::Pid::from_raw(0);
        let before = sched_getaffinity(me).ok()?;
        let mut set = CpuSet::new();
        let mut any = false;
        for c in (0..CpuSet::count()).filter(|&c| before.is_set(c).unwrap_or(false) && to(c)) {
            any |= set.set(c).is_ok();
        }
        (any && sched_setaffinity(me, &set).is_ok()).then_some(ThreadPin { before })
    }

    /// On `cpu` alone.
    fn to(cpu: usize) -> Option<ThreadPin> {
        Self::set(|c| c == cpu)
    }

    /// On every CPU it may use but `cpu`.
    fn avoiding(cpu: usize) -> Option<ThreadPin> {
        Self::set(|c| c != cpu)
    }
}

impl Drop for ThreadPin {
    fn drop(&mut self) {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &self.before);
    }
}

/// The least number of processes rebuilt by two tracer threads.
const TWO_TRACERS_MIN: usize = 8;

/// Whether the tree is rebuilt by two tracer threads, and how it is split
/// (see [`Tracers`]): for a tree of [`TWO_TRACERS_MIN`] processes or more,
/// on a restorer that may use two CPUs, unless `CRTOOLS_ONE_TRACER` is set.
/// The bulk data is written from the restorer's thread, so not when that
/// needs remote syscalls in the processes: pre-copied pages (`staged`),
/// mappings advised huge pages before their data (`pages::Thp`).
fn two_tracers(meta: &Meta, staged: &precopy::Staging) -> Option<Tracers> {
    let live = meta.live();
    if live.len() < TWO_TRACERS_MIN
        || !staged.is_empty()
        || std::env::var_os("CRTOOLS_ONE_TRACER").is_some_and(|v| !v.is_empty())
    {
        return None;
    }
    let cpus = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
    let n = (0..nix::sched::CpuSet::count())
        .filter(|&c| cpus.is_set(c).unwrap_or(false))
        .count();
    let needs_remote = live.iter().any(|pi| {
        !pi.mm.precopied.is_empty()
            || pi
                .mm
                .vmas
                .iter()
                .any(|v| v.flags & image::VMA_F_HUGEPAGE != 0 && v.dumped_pages > 0)
    });
    (n >= 2 && !needs_remote).then_some(Tracers {
        split: live.len() / 2,
    })
}

/// Restores the image from `reader`; on success the tree runs.
pub fn restore<R: Read>(mut reader: Reader<R>, opts: &Options) -> Result<Restored> {
    let reader_flags = reader.header().flags;
    crate::progress::phase(crate::progress::Phase::Reading);
    let span = crate::progress::span("restore: read metadata");
    let mut meta = meta::load(&mut reader)?;
    drop(span);
    check_fd_map(&meta, opts)?;
    inet::check_established(meta.inet(), opts.tcp_established)?;
    carry::resolve(&mut meta, &opts.remap)?;
    inject::check("meta")?;
    let terminal = opts.terminal_job.then(job::JobTerminal::find).flatten();
    let popts = PlanOptions {
        original_pids: opts.original_pids,
        pidns: opts.pidns,
        ns_init: reader_flags & image::HDR_PIDNS_INIT != 0,
        terminal: terminal.is_some(),
    };
    let mut plan = plan::plan(&meta, popts);
    let terminal = terminal.filter(|_| plan.foreground);
    let mut undo = Undo::new();
    let first = meta.take_first_bulk();
    let spooled = if popts.original_pids && !popts.pidns && !popts.ns_init {
        let _span = crate::progress::span("restore: wait for original pids");
        wait_for_original(&meta, first.clone(), &mut reader, opts)?
    } else {
        None
    };
    let mut source = match spooled {
        Some(f) => spool::Source::Spooled(f),
        None => spool::Source::Live(&mut reader),
    };
    // SysV IPC objects first, with their ids: processes attach segments.
    if reader_flags & image::HDR_OWN_IPCNS != 0 {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWIPC)
            .ctx(|| "cannot create an IPC namespace".into())?;
    }
    let mut ipc = meta.take_ipc();
    asuser::check(&meta, &plan, &ipc)?;
    ipc.create()?;
    inject::check("ipc")?;
    let span = crate::progress::span("restore: open files");
    let mut held = Held::new(&meta, &ipc)?;
    drop(span);
    if plan.shares() && (inject::no_sharing() || cow::collides(&plan)?) {
        // Memory children inherit lies where the restorer has its own:
        // every process gets its own copy instead.
        plan.drop_sharing();
    }
    // Pre-copied pages the root keeps where they were staged (`precopy`).
    let mut staged = meta.take_staged();
    let span = crate::progress::span("restore: keep pre-copied pages");
    precopy::keep_in_place(&meta, &mut plan, &mut staged)?;
    drop(span);
    crate::progress::phase(crate::progress::Phase::Building);
    let mut next = if matches!(source, spool::Source::Spooled(_)) {
        source.next_record()?
    } else {
        first
    };
    let tracers = two_tracers(&meta, &staged);
    let mut fill = cow::EarlyFill::new(&meta, &plan, &mut next, &mut source);
    let span = crate::progress::span("restore: fork the tree");
    let mut tree = spawn::spawn_tree(
        &meta,
        &plan,
        opts,
        &mut held.open,
        &mut undo,
        &mut fill,
        tracers,
    )?;
    drop(span);
    fill.done()?;
    drop(fill);
    inject::check("tree")?;
    let span = crate::progress::span("restore: sessions");
    let worker = undo.worker.as_ref();
    let (pins, mut building) = sessions(&meta, &mut tree, &held.tramp, worker, tracers)?;
    drop(span);
    let two = Two { worker, tracers };
    build_spaces(&meta, &mut building, &plan, &mut tree, &held, two)?;
    fill_data(
        &meta,
        &mut ipc,
        &mut staged,
        &held,
        &mut building,
        next,
        &mut source,
    )?;
    held.open.finish_sockets()?;
    held.open.close_pipes();
    memfd::seal_all(meta.shmem(), &held.shm_fds)?;
    ipc.finish()?;
    inject::check("data")?;

    crate::progress::phase(crate::progress::Phase::Releasing);
    let made = finish_all(&mut building, &held.tramp, pins, opts, two)?;
    let root = tree.outer.get(&meta.root().pid()).copied();
    let root = root.ok_or_else(|| Error::msg("cannot restore: the root never started"))?;
    if let Some(t) = &terminal {
        // The root made its group: it leads it.
        t.give(root)?;
    }
    // Established TCP connections leave repair mode last: a restore that
    // failed before closed them without a word on the wire.
    held.open.inet.repair_off()?;
    let span = crate::progress::span("restore: release");
    release(building, made, &plan, two)?;
    drop(span);
    undo.pids.clear();
    ipc.commit();
    held.posix_made.keep();
    held.mq_made.keep();
    drop(held);
    Ok(Restored {
        pid: root,
        wait_pid: tree.init.unwrap_or(root),
        pids: tree.outer,
        terminal,
    })
}

/// The second tracer, if any, and its half of the tree.
#[derive(Clone, Copy)]
struct Two<'w> {
    worker: Option<&'w Worker>,
    tracers: Option<Tracers>,
}

/// Each process's state and threads made again (`finish`), then every
/// process's CPU affinity given back: last pinned first, and threads made
/// while pinned take their process's.
fn finish_all<'a>(
    building: &mut [Building<'a>],
    tramp: &'a Trampoline,
    pins: Pins,
    opts: &Options,
    two: Two,
) -> Result<Vec<Vec<finish::MadeThread>>> {
    let wall = crate::progress::span("restore: finish, both tracers");
    let parts = halves(two.worker, two.tracers, building, |part, _| {
        // This thread's own credentials: each process's are compared with them.
        let own = asuser::OwnCreds::read()?;
        let mut made = Vec::new();
        for bp in part.iter_mut() {
            let _span = crate::progress::span("restore: finish");
            made.push(finish::finish(bp, tramp, opts.original_pids, &own)?);
        }
        Ok(made)
    })?;
    drop(wall);
    let made: Vec<Vec<finish::MadeThread>> = parts.into_iter().flatten().collect();
    inject::check("threads")?;
    let Pins {
        mut mine,
        mut theirs,
        thread,
    } = pins;
    if let Some(w) = two.worker {
        w.run(move || {
            while let Some(p) = theirs.pop() {
                drop(p);
            }
        })
        .map_err(gone)?;
    }
    while let Some(p) = mine.pop() {
        drop(p);
    }
    drop(thread);
    for (pid, tid, _) in made.iter().flatten() {
        remote::copy_affinity(pid.main_thread(), *tid);
    }
    Ok(made)
}

/// Every thread let go, in the plan's release order; with a second
/// tracer each thread ends its own sessions, and the second lets its
/// half go after the first (the root's).
fn release(
    building: Vec<Building>,
    made: Vec<Vec<finish::MadeThread>>,
    plan: &Plan,
    two: Two,
) -> Result<()> {
    let (Some(w), Some(t)) = (two.worker, two.tracers) else {
        return finish::release(release_order(building, made, plan, usize::MAX).0, true);
    };
    let (mine, theirs) = release_order(building, made, plan, t.split);
    let (second, first) = w.join(|| finish::end_all(theirs), || finish::end_all(mine));
    let first = first?;
    let second = second.map_err(gone)??;
    inject::check("release")?;
    let mut released = finish::let_go(first)?;
    released.extend(w.run(|| finish::let_go(second)).map_err(gone)??);
    finish::redeliver_all(&released);
    Ok(())
}

/// Every process in its groups, each session's terminal given its
/// foreground group, the ghosts reaped, then each address space rebuilt
/// and the pidfds made (every process exists by then). Each step on each
/// process's tracer thread; the address spaces on both at once.
fn build_spaces(
    meta: &Meta,
    building: &mut [Building],
    plan: &Plan,
    tree: &mut Tree,
    held: &Held,
    two: Two,
) -> Result<()> {
    let span = crate::progress::span("restore: groups, ttys, ghosts");
    let inner = &tree.inner;
    let ghost_pids = &tree.ghost_pids;
    halves(two.worker, two.tracers, building, |part, first| {
        join_groups(part, first, plan, inner, ghost_pids)
    })?;
    // Controlling terminals: their foreground groups exist now.
    let ttys: Vec<Option<RawFd>> = building
        .iter()
        .map(|bp| tty::ctty_file(&bp.pi.p, meta.files()).and_then(|f| held.open.get(f.id)))
        .collect();
    halves(two.worker, two.tracers, building, |part, first| {
        for (bp, &held_tty) in part.iter_mut().zip(&ttys[first..]) {
            tty::set_foreground(&mut bp.b, &bp.pi.p, held_tty, inner)?;
        }
        Ok(())
    })?;
    drop(tree.ghost_wr.take());
    let ghost_pids = &tree.ghost_pids;
    halves(two.worker, two.tracers, building, |part, first| {
        reap_ghosts(part, first, plan, ghost_pids)
    })?;
    drop(span);
    let inner = &tree.inner;
    let same_pids = inner.iter().all(|(a, b)| a == b);
    let always = two.tracers.is_some() && pages::thp_always();
    let sources = held.map_sources();
    let half = building.len() / 2;
    let _wall = crate::progress::span("restore: map, both tracers");
    halves(two.worker, two.tracers, building, |part, first| {
        for (i, bp) in part.iter_mut().enumerate() {
            let _span = crate::progress::span("restore: map");
            let pp = plan.procs.get(first + i).ok_or_else(|| {
                Error::msg(format!(
                    "cannot restore pid {}: no plan for it",
                    bp.pi.p.pid
                ))
            })?;
            map::rebuild_space(bp, pp, &held.specials, &sources)?;
            // Made here, by its tracer, for the bulk data (`pages`).
            if two.tracers.is_some() {
                pages::Fill::prepare(bp, always)?;
            }
            if first + i == half {
                inject::check("half")?;
            }
        }
        // Every process exists: pidfds of any of them can be made.
        for bp in part.iter_mut() {
            pidfd::install(bp, inner, same_pids)?;
        }
        Ok(())
    })?;
    inject::check("map")
}

/// The bulk data (page contents, object contents) streamed straight in,
/// from `next` on; when it returns, the end record was read and matched.
fn fill_data<R: Read>(
    meta: &Meta,
    ipc: &mut ipc::IpcRestore,
    staged: &mut precopy::Staging,
    held: &Held,
    building: &mut [Building],
    next: Option<image::RawRecord>,
    source: &mut spool::Source<'_, R>,
) -> Result<()> {
    crate::progress::phase(crate::progress::Phase::Memory);
    let mut sinks = bulk::Sinks {
        meta,
        ipc,
        staged,
        shm_fds: &held.shm_fds,
        shm_reused: &held.shm_reused,
        open: &held.open,
    };
    let span = crate::progress::span("restore: bulk data");
    bulk::stream_bulk(building, &mut sinks, next, source)?;
    drop(span);
    Ok(())
}

/// With original pids, waits (bounded) for the original processes to go
/// away if they still hold their pids: probably `ckpt --kill | cr-restart`
/// on this machine, and the original goes away once the whole image is
/// written, so the rest of the stream is spooled first. Returns the spool.
fn wait_for_original<R: Read>(
    meta: &Meta,
    first: Option<image::RawRecord>,
    reader: &mut Reader<R>,
    opts: &Options,
) -> Result<Option<std::io::BufReader<std::fs::File>>> {
    let held: Vec<Pid> = meta
        .order()
        .iter()
        .map(|&m| Pid::from_u32(meta.process(m).pid))
        // A zombie not yet reaped holds its pid too (`ckpt --kill` may
        // have ended the tree before the metadata arrived here).
        .filter(|&pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
        .collect();
    if held.is_empty() {
        return Ok(None);
    }
    let f = spool::spool(first, reader)?;
    let deadline = Instant::now() + opts.pid_wait.max(Duration::from_secs(1));
    for pid in held {
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            // A holder nothing is ending will not go away: say so at once.
            if Instant::now() >= deadline || spawn::pid_is_staying(pid) {
                return Err(Error::msg(format!(
                    "cannot restore pid {pid}: {}",
                    spawn::PID_IN_USE
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(Some(f))
}

/// Process groups led by another process of the tree: leaders made theirs
/// before forking, members join now, from inside. `part` are the
/// processes from index `first` on.
fn join_groups(
    part: &mut [Building],
    first: usize,
    plan: &Plan,
    inner: &BTreeMap<Pid, Pid>,
    ghost_pids: &[Pid],
) -> Result<()> {
    for j in &plan.joins {
        let leader = match j.leader {
            Leader::Process(_) => inner.get(&Pid::from_u32(j.pgid)).copied(),
            Leader::Ghost(g) => ghost_pids.get(g).copied(),
        };
        let bp = j.process.checked_sub(first).and_then(|i| part.get_mut(i));
        let (Some(g), Some(bp)) = (leader, bp) else {
            continue;
        };
        bp.b.call(nr::SETPGID, &[0, g.as_u32() as u64])
            .map_err(|e| {
                Error::msg(format!(
                    "cannot restore the process group {} of pid {}: {e}",
                    j.pgid, bp.pi.p.pid
                ))
            })?;
    }
    Ok(())
}

/// Members joined: the ghosts exit and their parents (of `part`, the
/// processes from index `first` on) reap them (and drop the `SIGCHLD`,
/// which is not part of the image).
fn reap_ghosts(part: &mut [Building], first: usize, plan: &Plan, ghost_pids: &[Pid]) -> Result<()> {
    for (g, &ghost) in plan.ghosts.iter().zip(ghost_pids) {
        let Some(bp) = g.parent.checked_sub(first).and_then(|i| part.get_mut(i)) else {
            continue;
        };
        bp.b.call(
            nr::WAIT4,
            &[ghost.as_u32() as u64, 0, libc::__WALL as u64, 0],
        )?;
        let set: u64 = 1 << (libc::SIGCHLD - 1);
        let set_at = bp.b.put(&set.to_le_bytes())?;
        let zero_at = bp.b.put(&[0u8; 16])?;
        let _ = bp.b.r.raw(nr::RT_SIGTIMEDWAIT, &[set_at, 0, zero_at, 8]);
    }
    Ok(())
}

/// Every thread's session in the plan's release order: those of the
/// processes before `split`, then the others (the second tracer's).
fn release_order(
    building: Vec<Building>,
    made: Vec<Vec<finish::MadeThread>>,
    plan: &Plan,
    split: usize,
) -> (Vec<finish::Ready>, Vec<finish::Ready>) {
    let mut mains: Vec<Option<finish::Ready>> = building
        .into_iter()
        .map(|bp| {
            let stopped = bp.pi.state == image::ProcState::Stopped;
            Some((bp.pid, bp.pid.main_thread(), bp.b.r, stopped))
        })
        .collect();
    let mut others: Vec<Vec<Option<finish::MadeThread>>> = made
        .into_iter()
        .map(|v| v.into_iter().map(Some).collect())
        .collect();
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for &(p, t) in &plan.release {
        let ready = if t == 0 {
            mains.get_mut(p).and_then(Option::take)
        } else {
            others
                .get_mut(p)
                .and_then(|v| v.get_mut(t - 1))
                .and_then(Option::take)
                .map(|(pid, tid, r)| (pid, tid, r, false))
        };
        if p < split {
            first.extend(ready);
        } else {
            second.extend(ready);
        }
    }
    (first, second)
}

/// Waits for our child `pid` to exit, forwarding SIGINT, SIGTERM and SIGHUP
/// sent to us to `target` (the restored root); returns an exit code in the
/// shell's convention (128 + signal when it was killed). With `report`
/// (cr-restart), an exit other than 0 and a failed wait are said on stderr;
/// `ckpt` waits for its worker without it (the worker reports its own errors).
pub fn wait_forwarding(pid: Pid, target: Pid, report: bool) -> i32 {
    job::wait_job(pid, target, report, None)
}
