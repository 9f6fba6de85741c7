//! Checkpoint: freeze a process tree, read its state from /proc, ptrace
//! and remote syscalls, and write its image.
//!
//! The order of the records written is stated once, in cr-image(5),
//! section ORDERING (`write_image` follows it). The tree is let go only after the
//! whole image is written and flushed; on any error before, it is resumed
//! untouched.

pub mod carry;
pub mod cow;
pub mod events;
pub mod files;
pub mod freeze;
pub mod inet;
pub mod ipc;
pub mod live;
pub mod locks;
pub mod memfd;
pub mod memory;
pub mod mqueue;
pub mod pidfd;
pub mod posixshm;
pub mod tty;
pub mod unix;

use std::borrow::BorrowMut;
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use crate::error::{Context, Error, Result};
use crate::image::{
    self, AltStack, Creds, ITimer, Kind, Mm, PosixTimer, Process, Rlimit, Rseq, Shmem, SigAction,
    StreamHeader, Thread, WriteOptions, Writer,
};
use crate::sys::batch::{self, Arg, Batch, DataRef, Injected, Place};
use crate::sys::ptrace::{self, Stopped};
use crate::sys::remote::{self, Gate, Remote, nr};
use crate::sys::{Fd as SysFd, Pid, Tid, proc, process, rlimit};

pub use freeze::After;
use freeze::{Frozen, FrozenThread};

static ABORT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Asks a running checkpoint to stop at its next safe point and hand the
/// tree back as it was. Async-signal-safe: `ckpt` calls it from its
/// SIGTERM/SIGINT/SIGHUP handler.
pub fn request_abort() {
    ABORT.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Fails when an abort was requested.
pub(crate) fn check_abort() -> Result<()> {
    if ABORT.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(Error::msg("interrupted; the tree was left as it was"));
    }
    Ok(())
}

/// How to checkpoint.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub after: After,
    /// Changes to the root process's memory in the image only (never in
    /// the live process); each must fall in a dumped page and one chunk.
    pub patches: Vec<memory::Patch>,
    /// Processes left out of the tree (with their descendants): neither
    /// frozen nor recorded. Self-checkpoint leaves out its own helper.
    pub exclude: Vec<Pid>,
    /// `--carry-files`: carry the files the tree maps or holds open, up
    /// to this many bytes in all (see `carry.rs`).
    pub carry: Option<u64>,
    /// `--live`: pre-copy memory while the tree runs (see `live.rs`).
    pub live: Option<live::LiveOptions>,
    /// `--external-unix`: Unix sockets connected outside the tree.
    pub external_unix: unix::ExternalUnix,
    /// What to do with established TCP connections (`--tcp-established`,
    /// `--tcp-close`; see `inet.rs`).
    pub tcp: inet::TcpMode,
}

/// What a checkpoint did, for reporting.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub processes: usize,
    pub threads: usize,
    pub pages: u64,
    pub zero_pages: u64,
    pub bytes: u64,
    /// From stopping the tree to letting it go.
    pub frozen_for: Duration,
    pub carried: carry::CarryStats,
    /// `--live`: the pre-copy rounds, and the pages the final part took
    /// from them instead of sending again.
    pub rounds: Vec<live::RoundStat>,
    pub precopied: u64,
    /// `--live`: where the final freeze went, phase by phase.
    pub freeze_phases: Vec<(&'static str, Duration)>,
    /// `--live`: how long removing write tracking took, after the release.
    pub untracked_in: Duration,
    /// Established TCP connections kept with `TCP_REPAIR`.
    pub tcp_repaired: usize,
}

fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    if !process::getrandom(&mut id) {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        id = (t ^ (std::process::id() as u128) << 64).to_le_bytes();
    }
    id
}

fn uname() -> (String, String) {
    let u = nix::sys::utsname::uname().ok();
    let s = |f: Option<&std::ffi::OsStr>| {
        f.map(|x| x.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    (
        s(u.as_ref().map(|u| u.machine())),
        s(u.as_ref().map(|u| u.release())),
    )
}

/// Refuses `pid` when the caller runs inside its tree: `pid` is the
/// calling process or one of its ancestors (`bash -c 'ckpt $$'`). Such a
/// tree cannot be frozen, its last process being the one that freezes it.
/// For `ckpt`, not for [`checkpoint`] itself: a self-checkpoint
/// checkpoints its parent from a child on purpose.
pub fn refuse_own_ancestor(pid: i32) -> Result<()> {
    let mut cur = Pid::this().as_raw();
    // A ppid chain ends at 0 (init, or a parent outside the pid namespace);
    // the bound only guards against a chain changing under us.
    for _ in 0..4096 {
        if cur == pid {
            return Err(Error::msg(format!(
                "cannot checkpoint pid {pid}: ckpt runs inside that tree (it is ckpt or an ancestor of ckpt); run ckpt from outside it"
            )));
        }
        match proc::stat(cur) {
            Ok(st) if st.ppid > 0 => cur = st.ppid,
            _ => break,
        }
    }
    Ok(())
}

/// Checkpoints the tree rooted at `pid` into `out`.
pub fn checkpoint<W: Write>(pid: i32, out: W, opts: &Options) -> Result<Summary> {
    checkpoint_then(pid, out, opts, |_| Ok(()))
}

/// [`checkpoint`], handing the flushed output to `done` before the tree
/// is released (`ckpt -o` renames its file into place there): if `done`
/// fails, the tree is left as it was.
pub fn checkpoint_then<W: Write>(
    pid: i32,
    out: W,
    opts: &Options,
    done: impl FnOnce(W) -> Result<()>,
) -> Result<Summary> {
    if pid <= 0 {
        return Err(Error::msg(format!(
            "cannot checkpoint pid {pid}: not a process id"
        )));
    }
    if pid as u32 == std::process::id() {
        return Err(Error::msg("cannot checkpoint ckpt itself"));
    }
    let pid = Pid::from_raw(pid);
    if let Some(lopts) = &opts.live {
        return checkpoint_live(pid, out, opts, lopts, done);
    }
    let t0 = Instant::now();
    crate::progress::phase(crate::progress::Phase::Freezing);
    let span = crate::progress::span("ckpt: freeze");
    let mut frozen = Frozen::freeze_excluding(pid, true, &opts.exclude)?;
    drop(span);
    crate::progress::phase(crate::progress::Phase::State);
    let mut summary = Summary {
        processes: frozen.procs.len(),
        threads: frozen.threads.len(),
        ..Default::default()
    };
    // Any error from here on drops `frozen`, which resumes the tree (after
    // `repaired`, declared later, has taken its sockets out of repair mode).
    let (out, repaired) = write_image(&mut frozen, pid, out, &mut summary, opts)?;
    done(out)?;
    summary.frozen_for = t0.elapsed();
    summary.tcp_repaired = repaired.len();
    let _span = crate::progress::span("ckpt: release");
    release(frozen, repaired, opts.after)?;
    Ok(summary)
}

/// Lets the tree go as `after` says, once its image is out: sockets kept
/// in repair mode leave it before a tree that runs on, or are closed in
/// it after the kill (no FIN or RST leaves).
fn release(frozen: Frozen, repaired: inet::Repaired, after: After) -> Result<()> {
    crate::progress::phase(crate::progress::Phase::Releasing);
    if after == After::Kill {
        frozen.release(after)?;
        repaired.killed();
    } else {
        drop(repaired);
        frozen.release(after)?;
    }
    Ok(())
}

/// [`checkpoint_then`] with pre-copy: a short freeze to set up write
/// tracking, rounds while the tree runs, then the final freeze for the
/// image proper (cr-image(5) ORDERING: the rounds precede the metadata).
fn checkpoint_live<W: Write>(
    pid: Pid,
    out: W,
    opts: &Options,
    lopts: &live::LiveOptions,
    done: impl FnOnce(W) -> Result<()>,
) -> Result<Summary> {
    crate::progress::phase(crate::progress::Phase::Freezing);
    let mut frozen = Frozen::freeze_excluding(pid, true, &opts.exclude)?;
    let ns = NsPids::read(pid, &frozen)?;
    let header = live_header(&mut frozen, &ns, pid)?;
    let pre = live::Precopy::start(&mut frozen, &ns);
    frozen.release(After::Resume)?;
    let mut pre = pre?;
    crate::progress::phase(crate::progress::Phase::Memory);
    let mut w = Writer::new(out, &header, WriteOptions::default())?;
    pre.run(&mut w, lopts)?;
    // The final part.
    let t0 = Instant::now();
    let mut phases = Phases::new(t0);
    crate::progress::phase(crate::progress::Phase::Freezing);
    let mut frozen = Frozen::freeze_excluding(pid, true, &opts.exclude)?;
    phases.mark("seize");
    crate::progress::phase(crate::progress::Phase::State);
    let mut summary = Summary {
        processes: frozen.procs.len(),
        threads: frozen.threads.len(),
        ..Default::default()
    };
    // No copy-on-write sharing in a live image: its pre-copied pages are
    // per process (cr-image(5) PRE-COPY), so every process keeps its own.
    let mut tree = read_tree(&mut frozen, pid, opts, false)?;
    let ns = NsPids::read(pid, &frozen)?;
    phases.mark("read");
    let now = stream_header(&tree, &ns, pid);
    if (now.root_pid, now.flags, now.xstate_size)
        != (header.root_pid, header.flags, header.xstate_size)
    {
        return Err(Error::msg(format!(
            "cannot checkpoint pid {pid}: its namespaces changed during pre-copy; the tree was left as it was"
        )));
    }
    summary.precopied = pre.finish(&mut tree.states)?;
    phases.mark("compare");
    write_meta(&mut w, &tree, &ns, pid)?;
    if let Some(cap) = opts.carry {
        let procs = tree
            .states
            .iter()
            .map(|s| (Pid::from_u32(s.process.pid), &s.mm.vmas[..]));
        summary.carried = carry::write(&mut w, procs, &tree.fdtables, &tree.files.files, cap)?;
    }
    let stats = write_bulk(&mut w, &tree, &ns, pid, opts)?;
    let out = w.finish()?;
    phases.mark("write");
    summary.pages = stats.pages;
    summary.zero_pages = stats.zero_pages;
    summary.bytes = stats.bytes;
    summary.rounds = std::mem::take(&mut pre.rounds);
    let repaired = std::mem::take(&mut tree.repaired);
    done(out)?;
    summary.frozen_for = t0.elapsed();
    summary.tcp_repaired = repaired.len();
    release(frozen, repaired, opts.after)?;
    phases.mark("release");
    summary.freeze_phases = phases.done;
    // Tracking ends after the release, a few MiB at a time, so that the
    // tree never waits long on it (unregistering 1 GiB of 4 KiB pages
    // walks 262144 page-table entries: ~50-100 ms here). Until it is
    // done, a write to a page still protected takes the same minor fault
    // as during the rounds; when `ckpt` returns no protection is left.
    // The image is complete: a failure here changes nothing of it, and
    // closing the descriptor unregisters whatever is left anyway.
    let t1 = Instant::now();
    let _ = pre.stop();
    summary.untracked_in = t1.elapsed();
    Ok(summary)
}

/// Time spent in each phase of a freeze, for `-v`.
struct Phases {
    last: Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Phases {
    fn new(t0: Instant) -> Self {
        Phases {
            last: t0,
            done: Vec::new(),
        }
    }
    fn mark(&mut self, what: &'static str) {
        let now = Instant::now();
        self.done.push((what, now - self.last));
        self.last = now;
    }
}

/// The header of a live stream, written before the metadata exists: what
/// [`stream_header`] would say, from the frozen tree.
fn live_header(frozen: &mut Frozen, ns: &Option<NsPids>, root: Pid) -> Result<StreamHeader> {
    let xstate = frozen
        .threads_of(root)
        .next()
        .map(|t| t.tracee.xstate())
        .transpose()
        .map_err(|e| Error::msg(format!("cannot checkpoint pid {root}: NT_X86_XSTATE: {e}")))?
        .unwrap_or_default();
    let own_ipc = std::fs::read_link(format!("/proc/{root}/ns/ipc")).ok()
        != std::fs::read_link("/proc/self/ns/ipc").ok();
    Ok(header_of(xstate.len() as u32, own_ipc, ns, root))
}

struct ProcState {
    process: Process,
    /// `tty_nr` and `tpgid` of its `/proc/PID/stat`.
    tty: (i32, i32),
    threads: Vec<Thread>,
    mm: Mm,
    plans: Vec<memory::VmaPlan>,
}

/// Everything read from the frozen tree, before anything is written.
struct TreeState {
    states: Vec<ProcState>,
    /// Per process, the ranges its children inherit copy-on-write (none
    /// in a live image).
    fork_ranges: Vec<Vec<(u64, u64)>>,
    fdtables: Vec<image::FdTable>,
    files: files::FileTable,
    shmem: HashMap<u64, Shmem>,
    zombies: Vec<Process>,
    sockets: Vec<(image::Socket, Vec<u8>)>,
    /// TCP and UDP sockets, and the connections put in repair mode.
    inet: Vec<image::InetSocket>,
    repaired: inet::Repaired,
    events: Vec<image::EventFile>,
    ptys: Vec<image::Pty>,
    pipes: Vec<(image::Pipe, Vec<u8>)>,
    ipc: ipc::IpcDump,
    own_ipc: bool,
    /// memfds no process maps: `(SHMEM id, a /proc link to read them)`.
    memfd_sources: Vec<(u64, String)>,
    /// Files of /dev/shm: the names of some `SHMEM` objects.
    posix_shm: Vec<image::PosixShm>,
    /// POSIX message queues, with their messages.
    mqueues: Vec<image::PosixMqueue>,
}

fn write_image<W: Write>(
    frozen: &mut Frozen,
    root: Pid,
    out: W,
    summary: &mut Summary,
    opts: &Options,
) -> Result<(W, inet::Repaired)> {
    let mut tree = read_tree(frozen, root, opts, true)?;
    // Shared anonymous memory may be mapped by processes outside the tree:
    // refuse rather than split it.
    let ns = NsPids::read(root, frozen)?;
    let header = stream_header(&tree, &ns, root);
    let mut w = Writer::new(out, &header, WriteOptions::default())?;
    let span = crate::progress::span("ckpt: write metadata");
    write_meta(&mut w, &tree, &ns, root)?;
    drop(span);
    if let Some(cap) = opts.carry {
        let procs = tree
            .states
            .iter()
            .map(|s| (Pid::from_u32(s.process.pid), &s.mm.vmas[..]));
        summary.carried = carry::write(&mut w, procs, &tree.fdtables, &tree.files.files, cap)?;
    }
    let span = crate::progress::span("ckpt: write bulk");
    let stats = write_bulk(&mut w, &tree, &ns, root, opts)?;
    drop(span);
    let span = crate::progress::span("ckpt: flush");
    let out = w.finish()?;
    drop(span);
    summary.pages = stats.pages;
    summary.zero_pages = stats.zero_pages;
    summary.bytes = stats.bytes;
    Ok((out, std::mem::take(&mut tree.repaired)))
}

/// Finds the pages the process `states[i]` still shares copy-on-write
/// with its parent `states[j]` ([`cow`]), records them in its `Mm`, and
/// adds the ranges it inherits to `fork[j]` (what the parent's children
/// inherit, written first, as `FORK_PAGES`). The parent's own sharing with
/// its parent, found before, changes nothing of what this looks at.
fn share_with_parent(
    states: &mut [ProcState],
    i: usize,
    j: usize,
    fork: &mut [Vec<(u64, u64)>],
) -> Result<()> {
    let _span = crate::progress::span("ckpt: copy-on-write");
    let pvmas: Vec<image::Vma> = states[j].plans.iter().map(|p| p.vma.clone()).collect();
    let ppid = Pid::from_u32(states[j].process.pid);
    let s = &mut states[i];
    let pid = Pid::from_u32(s.process.pid);
    let shared = cow::share(pid, &mut s.plans, ppid, &pvmas)?;
    if shared.inherited.is_empty() {
        return Ok(());
    }
    s.mm.vmas = s
        .plans
        .iter()
        .map(|p| p.vma.clone())
        .collect::<Vec<_>>()
        .into();
    fork[j].extend(shared.inherited.iter().map(|r| (r.start, r.end)));
    s.mm.inherited = shared.inherited.into();
    s.mm.shared_pages = shared.pages;
    Ok(())
}

/// Reads every process, descriptor, pipe, socket, pty and IPC object of
/// the frozen tree; with `cow`, what each child still shares with its
/// parent (see [`share_with_parent`]).
fn read_tree(frozen: &mut Frozen, root: Pid, opts: &Options, cow: bool) -> Result<TreeState> {
    let mut shmem: HashMap<u64, Shmem> = HashMap::new();
    let mut files = files::FileTable::new();
    files.external_unix = opts.external_unix;
    let proc_locks = locks::read_proc_locks();
    let (mut states, fdtables, fork_ranges) =
        read_processes(frozen, root, &mut files, &mut shmem, cow)?;
    let _span = crate::progress::span("ckpt: tree-wide state");
    locks::check_complete(&fdtables, proc_locks)?;
    let zombies = frozen
        .zombies
        .iter()
        .map(|&(pid, ppid)| read_zombie(pid, ppid))
        .collect::<Result<Vec<_>>>()?;
    check_sessions(root, &states, &zombies)?;
    let tree_pids: Vec<i32> = frozen.procs.iter().map(|&(p, _)| p.as_raw()).collect();
    let mut repaired = inet::Repaired::default();
    let inet = inet::collect(&mut files.files, &fdtables, opts.tcp, &mut repaired)?;
    let sockets = files.sockets(&fdtables)?;
    let events = std::mem::take(&mut files.events).resolve(&files.files, &fdtables)?;
    let memfd_sources = memfd::link_files(&mut files.files, &fdtables, &mut shmem)?;
    let mut in_tree = tree_pids.clone();
    in_tree.extend(frozen.zombies.iter().map(|&(p, _)| p.as_raw()));
    pidfd::check(&files.files, &fdtables, &in_tree)?;
    let mqueues = mqueue::collect(&files.files, &fdtables)?;
    let posix_shm = posixshm::collect(
        states.iter().map(|s| (s.process.pid, &s.mm.vmas[..])),
        &files.files,
        &fdtables,
        &mut shmem,
    )?;
    let ptys = tty::decide(&mut files.files, &fdtables)?;
    set_controlling_terminals(&mut states, &fdtables, &mut files, &ptys)?;
    let own_ipc = std::fs::read_link(format!("/proc/{root}/ns/ipc")).ok()
        != std::fs::read_link("/proc/self/ns/ipc").ok();
    let attached = states.iter().flat_map(|s| {
        let pid = s.process.pid as i32;
        s.plans
            .iter()
            .filter(|p| p.vma.backing == image::VMA_SYSV_SHM)
            .map(move |p| (pid, &p.vma))
    });
    let ipc = ipc::collect_attached(&tree_pids, own_ipc, attached)?;
    let mut pipes = Vec::new();
    for (mut pipe, pid, fd) in files.pipes(&tree_pids, &fdtables) {
        let (cap, data) = files::peek_pipe(pid, fd)?;
        pipe.capacity = cap;
        pipe.data_len = data.len() as u64;
        pipes.push((pipe, data));
    }
    Ok(TreeState {
        states,
        fork_ranges,
        fdtables,
        files,
        shmem,
        zombies,
        sockets,
        inet,
        repaired,
        events,
        ptys,
        pipes,
        ipc,
        own_ipc,
        memfd_sources,
        posix_shm,
        mqueues,
    })
}

/// Reads each process of the frozen tree and its descriptors, in tree
/// order (parents before children). What `/proc` tells of each process is
/// read by a thread of its own, ahead of this one, which asks the
/// processes themselves (ptrace ties each to the thread that seized it),
/// reads their descriptors and, with `cow`, finds what each shares with
/// its parent (while the other thread reads on). Returns the processes,
/// their descriptor tables and, per process, the ranges its children
/// inherit.
fn read_processes(
    frozen: &mut Frozen,
    root: Pid,
    files: &mut files::FileTable,
    shmem: &mut HashMap<u64, Shmem>,
    cow: bool,
) -> Result<ProcessesRead> {
    let mut states = Vec::new();
    let mut fdtables = Vec::new();
    let mut fork: Vec<Vec<(u64, u64)>> = vec![Vec::new(); frozen.procs.len()];
    let mut index: HashMap<Pid, usize> = HashMap::new();
    let jobs: Vec<(Pid, Vec<Tid>)> = frozen
        .procs
        .iter()
        .map(|&(pid, _)| (pid, frozen.threads_of(pid).map(|t| t.tid).collect()))
        .collect();
    let procs = frozen.procs.clone();
    let mut each = |got: &mut dyn FnMut() -> Result<ProcFiles>| -> Result<()> {
        // This thread stays on one CPU while it traces the tree; each
        // process is pinned beside it during its remote syscalls.
        let pin = remote::TracerCpu::pin();
        for &(pid, ppid) in &procs {
            check_abort()?;
            let pf = got()?;
            let ppid = if pid == root { Pid::from_raw(0) } else { ppid };
            let mut threads: Vec<_> = frozen.threads_of_mut(pid).collect();
            let span = crate::progress::span("ckpt: process");
            let st = read_process(&mut threads, pid, ppid, pf, shmem, pin.as_ref())?;
            drop(span);
            let span = crate::progress::span("ckpt: descriptors");
            fdtables.push(files.read_fds(pid.as_raw())?);
            drop(span);
            let i = states.len();
            states.push(st);
            index.insert(pid, i);
            if let Some(&j) = index.get(&ppid).filter(|_| cow && pid != root) {
                share_with_parent(&mut states, i, j, &mut fork)?;
            }
        }
        Ok(())
    };
    if jobs.len() < AHEAD_MIN {
        let mut next = jobs.iter();
        each(&mut || {
            let (pid, tids) = next.next().expect("one job a process");
            read_proc_files(*pid, tids)
        })?;
    } else {
        // Readers take turns (process i goes to reader i % n), so the
        // tracer takes their answers in tree order, one reader after the
        // other. The tracer waits on its tracees much of the time: a second
        // reader uses that CPU time.
        let readers = if jobs.len() < READERS_MIN { 1 } else { READERS };
        std::thread::scope(|scope| -> Result<()> {
            let mut rxs = Vec::with_capacity(readers);
            for k in 0..readers {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Result<ProcFiles>>(AHEAD);
                rxs.push(rx);
                let jobs = &jobs;
                scope.spawn(move || {
                    for (pid, tids) in jobs.iter().skip(k).step_by(readers) {
                        let r = check_abort().and_then(|_| read_proc_files(*pid, tids));
                        let failed = r.is_err();
                        // The receiver is gone when the checkpoint failed.
                        if tx.send(r).is_err() || failed {
                            return;
                        }
                    }
                });
            }
            let mut next = 0;
            each(&mut || {
                let _span = crate::progress::span("ckpt: wait for /proc");
                let rx = &rxs[next % readers];
                next += 1;
                rx.recv()
                    .map_err(|_| Error::msg("a /proc reader thread died"))?
            })
        })?;
    }
    fork.truncate(states.len());
    let fork = fork.into_iter().map(image::ranges::union).collect();
    Ok((states, fdtables, fork))
}

/// What [`read_processes`] returns.
type ProcessesRead = (Vec<ProcState>, Vec<image::FdTable>, Vec<Vec<(u64, u64)>>);

/// Each process's controlling terminal: one the tree holds, one outside
/// it, or a pty of the tree nobody holds open (added as a file).
fn set_controlling_terminals(
    states: &mut [ProcState],
    fdtables: &[image::FdTable],
    files: &mut files::FileTable,
    ptys: &[image::Pty],
) -> Result<()> {
    for (s, t) in states.iter_mut().zip(fdtables) {
        let (ctty, pgrp) = match tty::controlling_terminal(s.tty, &files.files, ptys, t)? {
            tty::Ctty::None => (0, 0),
            tty::Ctty::Outside => {
                s.process.outside_tty = true;
                (0, 0)
            }
            tty::Ctty::Held(id, pgrp) => (id, pgrp),
            tty::Ctty::Unheld(file, pgrp) => (files.add_file(file), pgrp),
        };
        s.process.ctty = ctty;
        s.process.tty_pgrp = pgrp;
    }
    Ok(())
}

/// The stream's header for `tree`.
fn stream_header(tree: &TreeState, ns: &Option<NsPids>, root: Pid) -> StreamHeader {
    let xstate_size = tree
        .states
        .first()
        .and_then(|s| s.threads.first())
        .map(|t| t.xstate.len() as u32)
        .unwrap_or(0);
    header_of(xstate_size, tree.own_ipc, ns, root)
}

fn header_of(xstate_size: u32, own_ipc: bool, ns: &Option<NsPids>, root: Pid) -> StreamHeader {
    let (arch, kernel) = uname();
    StreamHeader {
        format_major: image::FORMAT_MAJOR,
        format_minor: image::FORMAT_MINOR,
        arch,
        page_size: 4096,
        kernel,
        tool: format!("crtools {}", env!("CARGO_PKG_VERSION")),
        stream_id: random_id(),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        root_pid: ns.as_ref().map_or(root.as_u32(), |n| n.pid(root.as_u32())),
        flags: if own_ipc { image::HDR_OWN_IPCNS } else { 0 }
            | if ns.is_some() {
                image::HDR_PIDNS_INIT
            } else {
                0
            },
        xstate_size,
    }
}

/// The metadata records, in cr-image(5) ORDERING.
fn write_meta<W: Write>(
    w: &mut Writer<W>,
    tree: &TreeState,
    ns: &Option<NsPids>,
    root: Pid,
) -> Result<()> {
    for s in &tree.states {
        w.write(Kind::PROCESS, &ns_process(ns, &s.process, root)?)?;
        for t in &s.threads {
            let mut t = t.clone();
            if let Some(n) = ns {
                t.pid = n.pid(t.pid);
                t.tid = n.pid(t.tid);
            }
            w.write(Kind::THREAD, &t)?;
        }
        let mut mm = s.mm.clone();
        if let Some(n) = ns {
            mm.pid = n.pid(mm.pid);
        }
        w.write(Kind::MM, &mm)?;
    }
    for f in &tree.files.files {
        match ns {
            Some(n) if f.ftype == image::FT_PIDFD => {
                let mut f = f.clone();
                f.object_id = u64::from(n.pid(f.object_id as u32));
                w.write(Kind::FILE, &f)?;
            }
            _ => w.write(Kind::FILE, f)?,
        }
    }
    for e in &tree.events {
        w.write(Kind::EVENT, e)?;
    }
    for (p, _) in &tree.pipes {
        w.write(Kind::PIPE, p)?;
    }
    for (s, _) in &tree.sockets {
        w.write(Kind::SOCKET, s)?;
    }
    for s in &tree.inet {
        w.write(Kind::INET, s)?;
    }
    for p in &tree.ptys {
        w.write(Kind::PTY, p)?;
    }
    let mut objs: Vec<&Shmem> = tree.shmem.values().collect();
    objs.sort_by_key(|s| s.id);
    for s in &objs {
        w.write(Kind::SHMEM, *s)?;
    }
    for p in &tree.posix_shm {
        w.write(Kind::POSIX_SHM, p)?;
    }
    for q in &tree.mqueues {
        w.write(Kind::MQUEUE, q)?;
    }
    for z in &tree.zombies {
        w.write(Kind::PROCESS, &ns_process(ns, z, root)?)?;
    }
    tree.ipc.write_meta(w)?;
    for t in &tree.fdtables {
        let mut t = t.clone();
        if let Some(n) = ns {
            t.pid = n.pid(t.pid);
        }
        w.write(Kind::FDTABLE, &t)?;
    }
    Ok(())
}

/// The bulk records, in cr-image(5) ORDERING: pages, shared memory, SysV
/// contents, pipe and socket data, deleted files' contents.
fn write_bulk<W: Write>(
    w: &mut Writer<W>,
    tree: &TreeState,
    ns: &Option<NsPids>,
    root: Pid,
    opts: &Options,
) -> Result<memory::DumpStats> {
    let mut buf = Vec::new();
    let mut stats = memory::DumpStats::default();
    crate::progress::phase(crate::progress::Phase::Memory);
    // What children inherit first (cr-image(5) ORDERING), then the rest.
    for fork in [true, false] {
        for (s, ranges) in tree.states.iter().zip(&tree.fork_ranges) {
            if fork && ranges.is_empty() {
                continue;
            }
            let pid = Pid::from_u32(s.process.pid);
            let patches: Vec<memory::Patch> = if pid == root {
                let inside = |a: u64| ranges.iter().any(|&(s, e)| s <= a && a < e);
                opts.patches
                    .iter()
                    .filter(|(a, _)| inside(*a) == fork)
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            };
            let section = if fork {
                memory::Section::Fork(ranges)
            } else {
                memory::Section::Rest(ranges)
            };
            memory::dump_pages(
                pid,
                ns.as_ref().map_or(s.process.pid, |n| n.pid(s.process.pid)),
                &s.plans,
                section,
                w,
                &mut buf,
                &mut stats,
                &patches,
            )?;
        }
    }
    let mut done_shm = std::collections::HashSet::new();
    for s in &tree.states {
        for p in &s.plans {
            if p.vma.backing == image::VMA_SHARED_ANON && done_shm.insert(p.vma.shmem_id) {
                memory::dump_shmem(
                    Pid::from_u32(s.process.pid),
                    &p.vma,
                    &tree.shmem[&p.vma.shmem_id],
                    w,
                    &mut buf,
                    &mut stats,
                )?;
            }
        }
    }
    // memfds no process maps: their contents through a descriptor.
    for (id, link) in &tree.memfd_sources {
        if done_shm.insert(*id) {
            memory::dump_object(link, &tree.shmem[id], w, &mut buf, &mut stats)?;
        }
    }
    crate::progress::phase(crate::progress::Phase::Files);
    tree.ipc.write_contents(w)?;
    write_pipe_data(w, &tree.pipes)?;
    write_socket_data(w, &tree.sockets)?;
    // Contents of files deleted while open.
    for (f, t) in tree
        .files
        .files
        .iter()
        .filter(|f| f.deleted)
        .filter_map(|f| image::FdTable::holder(&tree.fdtables, f.id).map(|h| (f, h)))
    {
        dump_file_contents(f, Pid::from_u32(t.0), SysFd::from_u32(t.1), w, &mut buf)?;
    }
    Ok(stats)
}

/// Data waiting in pipes and FIFOs.
fn write_pipe_data<W: Write>(w: &mut Writer<W>, pipes: &[(image::Pipe, Vec<u8>)]) -> Result<()> {
    for (p, data) in pipes {
        for (i, chunk) in data.chunks(image::CHUNK).enumerate() {
            let prefix = image::DataPrefix {
                space: image::SPACE_PIPE,
                flags: 0,
                id: p.id,
                addr: (i * image::CHUNK) as u64,
            };
            w.write_parts(Kind::BLOB, &[&prefix.to_bytes(), chunk])?;
        }
    }
    Ok(())
}

/// Data waiting in sockets, as length-prefixed messages, cut only between
/// messages.
fn write_socket_data<W: Write>(
    w: &mut Writer<W>,
    sockets: &[(image::Socket, Vec<u8>)],
) -> Result<()> {
    for (s, data) in sockets {
        let mut at = 0;
        while at < data.len() {
            let mut end = at;
            while end < data.len() {
                let n =
                    u32::from_le_bytes(data[end..end + 4].try_into().expect("4 bytes")) as usize;
                if end > at && end + 4 + n - at > image::CHUNK {
                    break;
                }
                end += 4 + n;
            }
            let prefix = image::DataPrefix {
                space: image::SPACE_SOCKET,
                flags: 0,
                id: s.id,
                addr: at as u64,
            };
            w.write_parts(Kind::BLOB, &[&prefix.to_bytes(), &data[at..end]])?;
            at = end;
        }
    }
    Ok(())
}

fn dump_file_contents<W: Write>(
    f: &image::File,
    pid: Pid,
    fd: SysFd,
    w: &mut Writer<W>,
    buf: &mut Vec<u8>,
) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let path = format!("/proc/{pid}/fd/{fd}");
    let file = std::fs::File::open(&path).ctx(|| {
        format!(
            "cannot read deleted file {}",
            String::from_utf8_lossy(&f.path)
        )
    })?;
    buf.resize(image::CHUNK, 0);
    let mut at = 0u64;
    while at < f.size {
        let n = ((f.size - at) as usize).min(image::CHUNK);
        let got = file.read_at(&mut buf[..n], at).ctx(|| {
            format!(
                "cannot read deleted file {}",
                String::from_utf8_lossy(&f.path)
            )
        })?;
        if got == 0 {
            break;
        }
        let prefix = image::DataPrefix {
            space: image::SPACE_FILE,
            flags: 0,
            id: f.id,
            addr: at,
        };
        w.write_parts(Kind::BLOB, &[&prefix.to_bytes(), &buf[..got]])?;
        at += got as u64;
    }
    Ok(())
}

fn perr(pid: Pid) -> impl Fn(proc::ProcError) -> Error {
    move |e| Error::msg(format!("cannot checkpoint pid {pid}: {e}"))
}

/// Processes from which on [`read_tree`] reads `/proc` in a thread of its
/// own, and how many processes that thread may read ahead.
const AHEAD_MIN: usize = 4;
const AHEAD: usize = 8;
/// Processes from which on two threads read `/proc` (`READERS`).
const READERS_MIN: usize = 16;
const READERS: usize = 2;

/// What `/proc` (and `prlimit`) tell of one frozen process: no ptrace, so
/// any thread may read it.
struct ProcFiles {
    stat: proc::Stat,
    status: proc::Status,
    plans: Vec<memory::VmaPlan>,
    /// The shared memory objects its mappings name (merged in tree order).
    shmem: HashMap<u64, Shmem>,
    auxv: Vec<u8>,
    exe: Vec<u8>,
    cwd: Vec<u8>,
    root: Vec<u8>,
    cmdline: Vec<u8>,
    personality: u32,
    rlimits: Vec<Rlimit>,
    /// Each thread's name, in the order of the tids asked for.
    comms: Vec<Vec<u8>>,
    /// Its POSIX timers (values are asked of the process).
    timers: Vec<proc::PosixTimerInfo>,
}

fn read_proc_files(pid: Pid, tids: &[Tid]) -> Result<ProcFiles> {
    let _span = crate::progress::span("ckpt:  /proc");
    let stat = proc::stat(pid).map_err(perr(pid))?;
    let mut shmem = HashMap::new();
    let span = crate::progress::span("ckpt:   mappings");
    let plans = memory::plan(pid, stat.rss, &mut shmem)?;
    drop(span);
    let status = proc::status(pid).map_err(perr(pid))?;
    let auxv = proc::auxv(pid).map_err(perr(pid))?;
    let exe = proc::exe(pid).map_err(perr(pid))?;
    let cwd = proc::cwd(pid).map_err(perr(pid))?;
    let root = proc::root(pid).map_err(perr(pid))?;
    let cmdline = proc::cmdline(pid).unwrap_or_default();
    let personality = std::fs::read_to_string(format!("/proc/{pid}/personality"))
        .ok()
        .and_then(|s| u32::from_str_radix(s.trim(), 16).ok())
        .unwrap_or(0);
    let mut rlimits = Vec::new();
    for res in 0..16u32 {
        if let Ok((cur, max)) = rlimit::get(pid, res) {
            rlimits.push(Rlimit {
                resource: res,
                cur,
                max,
            });
        }
    }
    let mut comms = Vec::with_capacity(tids.len());
    for &tid in tids {
        let tstat = if tid.is_main_of(pid) {
            None
        } else {
            Some(proc::task_stat(pid, tid).map_err(perr(pid))?)
        };
        comms.push(tstat.map_or_else(|| stat.comm.clone(), |t| t.comm));
    }
    let timers = proc::timers(pid).map_err(perr(pid))?;
    Ok(ProcFiles {
        stat,
        status,
        plans,
        shmem,
        auxv,
        exe,
        cwd,
        root,
        cmdline,
        personality,
        rlimits,
        comms,
        timers,
    })
}

/// Reads everything about one frozen process (`pf`: what `/proc` told of
/// it); its shared memory objects join `shmem`.
fn read_process(
    threads: &mut [&mut FrozenThread],
    pid: Pid,
    ppid: Pid,
    pf: ProcFiles,
    shmem: &mut HashMap<u64, Shmem>,
    pin: Option<&remote::TracerCpu>,
) -> Result<ProcState> {
    for (id, obj) in pf.shmem {
        shmem.entry(id).or_insert(obj);
    }
    let plans = pf.plans;
    let vdso = plans
        .iter()
        .find(|p| p.vma.backing == image::VMA_VDSO)
        .map(|p| p.vma.start..p.vma.end);
    let span = crate::progress::span("ckpt:  process record");
    let ignores_traps = traps_ignored(&pf.status);
    let mut process = process_record(threads, pid, ppid, &pf.stat, pf.status)?;
    process.exe = pf.exe;
    process.cwd = pf.cwd;
    process.root = pf.root;
    process.cmdline = pf.cmdline;
    process.personality = pf.personality;
    process.rlimits = pf.rlimits.into();
    if let Some(ex) = process.exe.strip_suffix(b" (deleted)") {
        process.exe = ex.to_vec();
    }
    drop(span);
    let stat = pf.stat;
    let auxv = pf.auxv;
    let mut mm = Mm {
        pid: pid.as_u32(),
        start_code: stat.start_code,
        end_code: stat.end_code,
        start_data: stat.start_data,
        end_data: stat.end_data,
        start_brk: stat.start_brk,
        start_stack: stat.start_stack,
        arg_start: stat.arg_start,
        arg_end: stat.arg_end,
        env_start: stat.env_start,
        env_end: stat.env_end,
        auxv,
        vmas: plans
            .iter()
            .map(|p| p.vma.clone())
            .collect::<Vec<_>>()
            .into(),
        ..Default::default()
    };
    let span = crate::progress::span("ckpt:  threads");
    let (mut out_threads, known): (Vec<Thread>, Vec<(ptrace::Regs, u64)>) = threads
        .iter()
        .zip(pf.comms)
        .map(|(t, comm)| thread_record(pid, t, comm))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .map(|(t, regs)| {
            let mask = t.sigmask;
            (t, (regs, mask))
        })
        .unzip();
    drop(span);
    // What only the process can tell: ask it with remote syscalls.
    let vdso =
        vdso.ok_or_else(|| Error::msg(format!("cannot checkpoint pid {pid}: it has no vDSO")))?;
    let _span = crate::progress::span("ckpt:  remote");
    let asked = Asked {
        traps_ignored: ignores_traps,
        process: &mut process,
        mm: &mut mm,
        threads: &mut out_threads,
        known: &known,
        timers: &pf.timers,
    };
    ask_remotely(threads, pid, vdso, pin, asked)?;
    Ok(ProcState {
        process,
        tty: (stat.tty_nr, stat.tpgid),
        threads: out_threads,
        mm,
        plans,
    })
}

/// The process record as `stat`, `status` and ptrace show it; the
/// caller adds the rest of `/proc`'s, and what only the process can tell
/// is added by [`ask_remotely`].
fn process_record(
    threads: &[&mut FrozenThread],
    pid: Pid,
    ppid: Pid,
    stat: &proc::Stat,
    status: proc::Status,
) -> Result<Process> {
    let mut process = Process {
        pid: pid.as_u32(),
        ppid: ppid.as_u32(),
        pgid: stat.pgrp as u32,
        sid: stat.session as u32,
        state: image::STATE_RUNNING,
        exit_signal: stat.exit_signal as u32,
        comm: stat.comm.clone(),
        umask: status.umask.unwrap_or(0o022),
        creds: Creds {
            uid: status.uid[0],
            euid: status.uid[1],
            suid: status.uid[2],
            fsuid: status.uid[3],
            gid: status.gid[0],
            egid: status.gid[1],
            sgid: status.gid[2],
            fsgid: status.gid[3],
            groups: status.groups.clone().into(),
            cap_inh: status.cap_inh,
            cap_prm: status.cap_prm,
            cap_eff: status.cap_eff,
            cap_bnd: status.cap_bnd,
            cap_amb: status.cap_amb,
            securebits: 0,
            no_new_privs: status.no_new_privs,
        },
        tids: threads
            .iter()
            .map(|t| t.tid.as_u32())
            .collect::<Vec<_>>()
            .into(),
        nice: stat.nice as i32,
        ..Default::default()
    };
    if threads.iter().any(|t| t.was_stopped) {
        process.state = image::STATE_STOPPED;
    }
    process.shared_pending = threads[0]
        .tracee
        .pending(true)
        .ctx(|| format!("cannot read pending signals of pid {pid}"))?
        .into_iter()
        .map(|s| s.to_vec())
        .collect::<Vec<_>>()
        .into();
    Ok(process)
}

/// One thread's record as ptrace shows it, and its registers.
fn thread_record(pid: Pid, t: &FrozenThread, comm: Vec<u8>) -> Result<(Thread, ptrace::Regs)> {
    let regs = (t.tracee.regs()).ctx(|| format!("cannot read registers of thread {}", t.tid))?;
    let xstate =
        (t.tracee.xstate()).ctx(|| format!("cannot read FPU state of thread {}", t.tid))?;
    let sigmask =
        (t.tracee.sigmask()).ctx(|| format!("cannot read signal mask of thread {}", t.tid))?;
    let pending = (t.tracee.pending(false))
        .ctx(|| format!("cannot read pending signals of thread {}", t.tid))?;
    let rseq = (t.tracee.rseq())
        .ctx(|| format!("cannot read rseq of thread {}", t.tid))?
        .map(|c| Rseq {
            addr: c.addr,
            len: c.len,
            flags: c.flags,
            sig: c.sig,
        });
    let (robust_list, robust_len) = robust_list(t.tid)?;
    let thread = Thread {
        pid: pid.as_u32(),
        tid: t.tid.as_u32(),
        regs: ptrace::regs_to_bytes(&regs),
        xstate,
        sigmask,
        robust_list,
        robust_len,
        rseq,
        pending: pending
            .into_iter()
            .map(|s| s.to_vec())
            .collect::<Vec<_>>()
            .into(),
        comm,
        stopped: t.was_stopped,
        ..Default::default()
    };
    Ok((thread, regs))
}

/// What the remote syscalls fill in: the process record, its `Mm` (brk),
/// its threads' records, and the POSIX timers `/proc` listed, whose values
/// are asked.
struct Asked<'a> {
    /// The process ignores `SIGTRAP` (see [`ignore_traps_again`]).
    traps_ignored: bool,
    process: &'a mut Process,
    mm: &'a mut Mm,
    threads: &'a mut [Thread],
    /// Each thread's registers and signal mask, as just read.
    known: &'a [(ptrace::Regs, u64)],
    timers: &'a [proc::PosixTimerInfo],
}

/// Runs remote syscalls in every thread (through a `syscall` instruction
/// of the vDSO at `vdso`) for what only the process can tell: the process
/// and its first thread in one batch, each other thread in one of its
/// own. With `pin`, each thread runs on the tracer's CPU meanwhile.
fn ask_remotely(
    threads: &mut [&mut FrozenThread],
    pid: Pid,
    vdso: std::ops::Range<u64>,
    pin: Option<&remote::TracerCpu>,
    asked: Asked,
) -> Result<()> {
    let mut code = vec![0u8; (vdso.end - vdso.start) as usize];
    let mut memf = None;
    crate::sys::mem::read_exact(pid, vdso.start, &mut code, &mut memf)
        .ctx(|| format!("cannot read the vDSO of pid {pid}"))?;
    let off = remote::find_syscall_insn(&code).ok_or_else(|| {
        Error::msg(format!(
            "cannot checkpoint pid {pid}: no syscall instruction in its vDSO"
        ))
    })?;
    // One stop a syscall (a single step over it) where the process takes
    // traps, two (syscall entry and exit) where it ignores them.
    let at = vdso.start + off as u64;
    let gate = if asked.traps_ignored {
        Gate::Syscall(at)
    } else {
        Gate::Step(at)
    };
    // Tracer and tracee on one CPU: a remote syscall is then a few times cheaper.
    let pin_on = |tid: Tid| match pin {
        Some(p) => p.beside(tid),
        None => remote::SameCpu::new(tid),
    };
    let (first, others) = threads.split_first_mut().expect("a process has a thread");
    let tid = first.tid;
    let span = crate::progress::span("ckpt:   remote: inject");
    let _pin = pin_on(tid);
    let (regs, mask) = asked.known[0];
    let mut r = Remote::on_read(&mut first.tracee, gate, regs, mask)?;
    // A page of our own for the batch loop and its lists, unmapped below on
    // every path (a failure of a thread, of the process, or an abort).
    let page = Injected::map(&mut r)?;
    drop(span);
    let span = crate::progress::span("ckpt:   remote: batches");
    let place = page.place();
    let (out_first, out_others) = asked.threads.split_first_mut().expect("one per thread");
    let mut res = check_abort()
        .and_then(|_| crate::restart::inject::check("remote"))
        .and_then(|_| {
            ask_process(
                &mut r,
                place,
                asked.process,
                asked.mm,
                out_first,
                asked.timers,
            )
        });
    for ((ft, t), &(regs, mask)) in others.iter_mut().zip(out_others).zip(&asked.known[1..]) {
        if res.is_err() {
            break;
        }
        let _tpin = pin_on(ft.tid);
        res = check_abort().and_then(|_| {
            let mut tr = Remote::on_read(&mut ft.tracee, gate, regs, mask)?;
            let r2 = ask_thread(&mut tr, place, t);
            let deferred = tr.finish()?;
            remote::redeliver(pid, ft.tid, &deferred);
            r2
        });
    }
    drop(span);
    let _span = crate::progress::span("ckpt:   remote: remove");
    if res.is_ok() {
        res = ignore_traps_again(&mut r, place, pid, &asked.process.sigactions);
    }
    let unmapped = page.remove(&mut r);
    let deferred = r.finish()?;
    remote::redeliver(pid, tid, &deferred);
    res?;
    unmapped?;
    Ok(())
}

/// Pids as the tree sees them itself, when its root is the init of its own
/// pid namespace: the image then holds those, and a restore recreates the
/// namespace with the root as its init.
struct NsPids {
    /// Host id (as the image stores it) -> the id the tree sees.
    map: HashMap<u32, u32>,
    groups: HashMap<u32, (u32, u32)>,
}

impl NsPids {
    fn read(root: Pid, frozen: &Frozen) -> Result<Option<NsPids>> {
        let st = proc::status(root).map_err(perr(root))?;
        if st.ns_pid.len() < 2 || st.ns_pid.last() != Some(&1) {
            return Ok(None);
        }
        let depth = st.ns_pid.len();
        let mut n = NsPids {
            map: HashMap::new(),
            groups: HashMap::new(),
        };
        for &(pid, _) in frozen.procs.iter().chain(frozen.zombies.iter()) {
            let s = proc::status(pid).map_err(perr(pid))?;
            if s.ns_pid.len() != depth {
                return Err(Error::msg(format!(
                    "cannot checkpoint pid {pid}: it is in a pid namespace nested inside the tree's, which is not supported"
                )));
            }
            let last = |v: &[i32]| v.last().copied().unwrap_or(0) as u32;
            n.map.insert(pid.as_u32(), last(&s.ns_pid));
            n.groups
                .insert(pid.as_u32(), (last(&s.ns_pgid), last(&s.ns_sid)));
            for t in frozen.threads_of(pid) {
                if !t.tid.is_main_of(pid) {
                    let ts = proc::task_status(pid, t.tid).map_err(perr(pid))?;
                    n.map.insert(t.tid.as_u32(), last(&ts.ns_pid));
                }
            }
        }
        Ok(Some(n))
    }

    fn pid(&self, host: u32) -> u32 {
        self.map.get(&host).copied().unwrap_or(0)
    }
}

/// A process record with the pids the tree sees itself (see [`NsPids`]).
fn ns_process(ns: &Option<NsPids>, p: &Process, root: Pid) -> Result<Process> {
    let Some(n) = ns else {
        return Ok(p.clone());
    };
    let mut q = p.clone();
    let host = p.pid;
    q.pid = n.pid(host);
    q.ppid = if host == root.as_u32() {
        0
    } else {
        n.pid(p.ppid)
    };
    (q.pgid, q.sid) = n.groups.get(&host).copied().unwrap_or((0, 0));
    q.tids = p.tids.iter().map(|&t| n.pid(t)).collect::<Vec<_>>().into();
    for t in q.posix_timers.iter_mut() {
        if t.notify_tid != 0 {
            t.notify_tid = n.pid(t.notify_tid);
        }
    }
    Ok(q)
}

/// A zombie child: what its parent will collect.
fn read_zombie(pid: Pid, ppid: Pid) -> Result<Process> {
    let st = proc::stat(pid).map_err(perr(pid))?;
    Ok(Process {
        pid: pid.as_u32(),
        ppid: ppid.as_u32(),
        pgid: st.pgrp as u32,
        sid: st.session as u32,
        state: image::STATE_ZOMBIE,
        exit_status: st.exit_code,
        exit_signal: st.exit_signal as u32,
        comm: st.comm,
        ..Default::default()
    })
}

/// Checks that every session and process group can be rebuilt: each is
/// led by a process of the tree, or is the root's own (inherited from
/// outside, and joined to cr-restart's on restore).
fn check_sessions(root: Pid, states: &[ProcState], zombies: &[Process]) -> Result<()> {
    let all: Vec<&Process> = states
        .iter()
        .map(|s| &s.process)
        .chain(zombies.iter())
        .collect();
    let in_tree = |pid: u32| all.iter().any(|p| p.pid == pid);
    let root_p = all
        .iter()
        .find(|p| p.pid == root.as_u32())
        .expect("root is in the tree");
    for p in &all {
        if p.pid == root.as_u32() {
            continue;
        }
        if !in_tree(p.sid) && p.sid != root_p.sid {
            return Err(Error::msg(format!(
                "cannot checkpoint pid {}: its session {} is led from outside the tree",
                p.pid, p.sid
            )));
        }
        if !in_tree(p.pgid)
            && p.pgid != root_p.pgid
            && std::fs::metadata(format!("/proc/{}", p.pgid)).is_ok()
        {
            // (A group whose leader exited altogether gets a placeholder
            // leader on restore.)
            return Err(Error::msg(format!(
                "cannot checkpoint pid {}: its process group {} is led by pid {} outside the tree",
                p.pid, p.pgid, p.pgid
            )));
        }
        let parent_sid = all.iter().find(|x| x.pid == p.ppid).map(|x| x.sid);
        if p.sid != p.pid && parent_sid.is_some_and(|s| s != p.sid) {
            return Err(Error::msg(format!(
                "cannot checkpoint pid {}: it is in session {}, not its parent's, and does not lead it",
                p.pid, p.sid
            )));
        }
    }
    Ok(())
}

fn robust_list(tid: Tid) -> Result<(u64, u64)> {
    process::robust_list(tid).map_err(|e| {
        Error::msg(format!(
            "cannot read the robust futex list of thread {tid}: {e}"
        ))
    })
}

/// Whether the process ignores `SIGTRAP`.
fn traps_ignored(status: &proc::Status) -> bool {
    status.sig_ign & (1 << (libc::SIGTRAP - 1)) != 0
}

/// A process that ignores `SIGTRAP` had it reset to `SIG_DFL` by the
/// batches' traps (the kernel does that to a trap it would ignore): its
/// action, as the first batch read it, is put back with a plain remote
/// syscall, which raises no trap.
fn ignore_traps_again(
    r: &mut Remote<&mut Stopped>,
    place: Place,
    pid: Pid,
    actions: &[SigAction],
) -> Result<()> {
    let ign = libc::SIG_IGN as u64;
    let Some(a) = actions
        .iter()
        .find(|a| a.signo == libc::SIGTRAP as u32 && a.handler == ign)
    else {
        return Ok(());
    };
    let mut act = Vec::with_capacity(32);
    for v in [a.handler, a.flags, a.restorer, a.mask] {
        act.extend_from_slice(&v.to_le_bytes());
    }
    let mut memf = None;
    crate::sys::mem::write_all(pid, place.scratch, &act, &mut memf)
        .ctx(|| format!("cannot write into pid {pid}"))?;
    r.call(nr::RT_SIGACTION, &[a.signo as u64, place.scratch, 0, 8])?;
    Ok(())
}

/// Where a thread's answers land in a batch: its alternate signal stack
/// and the address the kernel clears when it exits.
struct ThreadAsk {
    altstack: DataRef,
    tid_addr: DataRef,
}

impl ThreadAsk {
    fn push(b: &mut Batch) -> ThreadAsk {
        let altstack = b.out(24);
        let tid_addr = b.out(8);
        b.push(nr::SIGALTSTACK, &[Arg::Val(0), altstack.into()]);
        b.push(
            nr::PRCTL,
            &[Arg::Val(libc::PR_GET_TID_ADDRESS as u64), tid_addr.into()],
        );
        ThreadAsk { altstack, tid_addr }
    }

    fn answer(&self, o: &batch::Outcome, t: &mut Thread) {
        let v = o.words(self.altstack);
        t.altstack = AltStack {
            sp: v[0],
            flags: v[1] as u32,
            size: v[2],
        };
        t.clear_child_tid = o.words(self.tid_addr)[0];
    }
}

/// Per-thread state only the thread can tell (one batch).
fn ask_thread(r: &mut Remote<impl BorrowMut<Stopped>>, place: Place, t: &mut Thread) -> Result<()> {
    let mut b = Batch::new();
    let ask = ThreadAsk::push(&mut b);
    let o = r.run_checked(place, &b)?;
    ask.answer(&o, t);
    Ok(())
}

/// Signal handlers, timers, brk, securebits, subreaper, and the state of
/// the thread `r` runs in (`t`): one batch (more only for a process with
/// hundreds of POSIX timers).
fn ask_process(
    r: &mut Remote<impl BorrowMut<Stopped>>,
    place: Place,
    p: &mut Process,
    mm: &mut Mm,
    t: &mut Thread,
    timers: &[proc::PosixTimerInfo],
) -> Result<()> {
    let mut b = Batch::new();
    let brk = b.call(nr::BRK, &[0]);
    let secure = b.call(nr::PRCTL, &[libc::PR_GET_SECUREBITS as u64]);
    let reaper = b.out(8);
    b.push(
        nr::PRCTL,
        &[Arg::Val(libc::PR_GET_CHILD_SUBREAPER as u64), reaper.into()],
    );
    let sigs: Vec<(u32, DataRef)> = (1..=64u32)
        .filter(|&sig| sig != libc::SIGKILL as u32 && sig != libc::SIGSTOP as u32)
        .map(|sig| {
            let out = b.out(32);
            b.push(
                nr::RT_SIGACTION,
                &[Arg::Val(sig as u64), Arg::Val(0), out.into(), Arg::Val(8)],
            );
            (sig, out)
        })
        .collect();
    let itimers: Vec<(u32, DataRef)> = (0..3u32)
        .map(|which| {
            let out = b.out(32);
            b.push(nr::GETITIMER, &[Arg::Val(which as u64), out.into()]);
            (which, out)
        })
        .collect();
    let thread = ThreadAsk::push(&mut b);
    let mut rest = timers.iter().peekable();
    let first = push_timers(&mut b, &mut rest, place.scratch_len);
    let o = r.run_checked(place, &b)?;
    thread.answer(&o, t);
    let res = |i: usize| o.result(i).unwrap_or(0) as u64;
    mm.brk = res(brk);
    p.creds.securebits = res(secure) as u32;
    p.child_subreaper = o.words(reaper)[0] as u32 != 0;
    for (sig, out) in sigs {
        let v = o.words(out);
        p.sigactions.push(SigAction {
            signo: sig,
            handler: v[0],
            flags: v[1],
            restorer: v[2],
            mask: v[3],
        });
    }
    for (which, out) in itimers {
        let v = o.words(out);
        p.itimers.push(ITimer {
            which,
            interval_us: v[0] * 1_000_000 + v[1],
            value_us: v[2] * 1_000_000 + v[3],
        });
    }
    let mut done = (first, o);
    loop {
        let (asked, o) = &done;
        for (info, out, ov) in asked {
            let overrun = o.result(*ov).unwrap_or(0) as u32;
            p.posix_timers
                .push(posix_timer(info, &o.words(*out), overrun));
        }
        if rest.peek().is_none() {
            return Ok(());
        }
        check_abort()?;
        let mut b = Batch::new();
        let asked = push_timers(&mut b, &mut rest, place.scratch_len);
        let o = r.run_checked(place, &b)?;
        done = (asked, o);
    }
}

/// A POSIX timer's value and overrun asked in a batch: the timer, where
/// its `itimerspec` lands, the index of its overrun.
type TimerAsk<'a> = (&'a proc::PosixTimerInfo, DataRef, usize);

/// Adds timers from `rest` to `b` while the list fits `room` bytes.
fn push_timers<'a>(
    b: &mut Batch,
    rest: &mut std::iter::Peekable<std::slice::Iter<'a, proc::PosixTimerInfo>>,
    room: u64,
) -> Vec<TimerAsk<'a>> {
    let mut asked = Vec::new();
    while (b.size() + 2 * batch::ENTRY + 32) as u64 <= room {
        let Some(info) = rest.next() else { break };
        let out = b.out(32);
        b.push(nr::TIMER_GETTIME, &[Arg::Val(info.id as u64), out.into()]);
        let ov = b.call(nr::TIMER_GETOVERRUN, &[info.id as u64]);
        asked.push((info, out, ov));
    }
    asked
}

/// A POSIX timer from `/proc/PID/timers` and what the process told of it
/// (`v`: its `itimerspec` as four words).
fn posix_timer(info: &proc::PosixTimerInfo, v: &[u64], overrun: u32) -> PosixTimer {
    let base = match info.notify {
        proc::TimerNotify::None => libc::SIGEV_NONE,
        proc::TimerNotify::Thread => libc::SIGEV_THREAD,
        proc::TimerNotify::Signal => libc::SIGEV_SIGNAL,
    };
    let notify = base
        | if info.notify_thread_id {
            libc::SIGEV_THREAD_ID
        } else {
            0
        };
    PosixTimer {
        id: info.id as u32,
        clock: info.clock as u32,
        notify: notify as u32,
        signo: info.signal as u32,
        sigval: info.sigval,
        notify_tid: info.notify_tid as u32,
        interval_ns: v[0] * 1_000_000_000 + v[1],
        value_ns: v[2] * 1_000_000_000 + v[3],
        overrun,
    }
}
