//! Rebuilding a process tree from an image: read the metadata, create each
//! process with `clone3` (with its original pid), let it place its own
//! descriptors, then rebuild its address space and state with remote
//! syscalls while page data streams in, verify the end of the stream, and
//! only then release the tree. Any failure before the release kills
//! everything that was built: restore is all or nothing.

pub mod child;
pub mod files;
pub mod inject;
pub mod inplace;
pub mod ipc;
pub mod locks;
mod pages;
pub mod space;
pub mod spool;
pub mod tty;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::{Context, Error, Result};
use crate::image::{
    self, DataPrefix, FdTable, File, Kind, Mm, Process, RawRecord, Reader, Shmem, Thread,
};
use crate::sys::clone::{Forked, fork_with_pid};
use crate::sys::mem;
use crate::sys::proc;
use crate::sys::ptrace::{self, Stop};
use crate::sys::remote::{self, Gate, Remote, nr};

pub use files::FdSource;
use space::{Builder, TASK_SIZE, Trampoline};

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
}

/// A restored, running tree.
#[derive(Debug)]
pub struct Restored {
    /// The root's pid, as the caller sees it.
    pub pid: i32,
    /// The caller's child to wait for: the root, or with `pidns` the
    /// namespace's init, which exits with the root's status.
    pub wait_pid: i32,
    /// The pids every process of the image got, old -> new.
    pub pids: BTreeMap<i32, i32>,
}

/// One process of the image with all its metadata.
#[derive(Debug, Default)]
struct ProcImage {
    p: Process,
    threads: Vec<Thread>,
    mm: Option<Mm>,
    fds: Option<FdTable>,
}

#[derive(Default)]
struct Meta {
    procs: Vec<ProcImage>,
    files: HashMap<u64, File>,
    shmem: HashMap<u64, Shmem>,
    pipes: HashMap<u64, image::Pipe>,
    sockets: HashMap<u64, image::Socket>,
    ptys: HashMap<u64, image::Pty>,
    ipc: ipc::IpcRestore,
    first_bulk: Option<RawRecord>,
}

fn corrupt(what: String) -> Error {
    Error::msg(format!("invalid image: {what}"))
}

fn read_meta<R: Read>(reader: &mut Reader<R>) -> Result<Meta> {
    let mut m = Meta::default();
    while let Some(raw) = reader.next_raw()? {
        let kind = raw.head.kind;
        if matches!(kind, Kind::PAGES | Kind::ZERO | Kind::BLOB) {
            m.first_bulk = Some(raw);
            break;
        }
        let rec = raw.decode()?;
        match kind {
            Kind::PROCESS => {
                let p: Process = rec.decode()?;
                if m.procs.iter().any(|x| x.p.pid == p.pid) {
                    return Err(corrupt(format!("process {} appears twice", p.pid)));
                }
                m.procs.push(ProcImage {
                    p,
                    ..Default::default()
                });
            }
            Kind::THREAD => {
                let t: Thread = rec.decode()?;
                proc_of(&mut m, t.pid)?.threads.push(t);
            }
            Kind::MM => {
                let mm: Mm = rec.decode()?;
                let pid = mm.pid;
                proc_of(&mut m, pid)?.mm = Some(mm);
            }
            Kind::FDTABLE => {
                let t: FdTable = rec.decode()?;
                let pid = t.pid;
                proc_of(&mut m, pid)?.fds = Some(t);
            }
            Kind::FILE => {
                let f: File = rec.decode()?;
                m.files.insert(f.id, f);
            }
            Kind::SHMEM => {
                let s: Shmem = rec.decode()?;
                m.shmem.insert(s.id, s);
            }
            Kind::PIPE => {
                let p: image::Pipe = rec.decode()?;
                m.pipes.insert(p.id, p);
            }
            Kind::SOCKET => {
                let s: image::Socket = rec.decode()?;
                m.sockets.insert(s.id, s);
            }
            Kind::PTY => {
                let p: image::Pty = rec.decode()?;
                m.ptys.insert(p.id, p);
            }
            Kind::MSGQ | Kind::SEMSET | Kind::SYSV_SHM => {
                m.ipc.add(&rec)?;
            }
            k if k.is_optional() => {}
            k => {
                return Err(Error::msg(format!(
                    "cannot restore this image: records of kind {k} are not supported by this version"
                )));
            }
        }
    }
    Ok(m)
}

fn proc_of(m: &mut Meta, pid: u32) -> Result<&mut ProcImage> {
    m.procs.iter_mut().find(|x| x.p.pid == pid).ok_or_else(|| {
        corrupt(format!(
            "a record refers to process {pid}, which has no process record before it"
        ))
    })
}

/// Trust: a restorer that is not root restores only processes with its own
/// credentials and no capabilities beyond its own; an image asking for
/// another user, a set-id process or capabilities is refused.
fn check_privilege(m: &Meta) -> Result<()> {
    // SAFETY: these only read our own credentials.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == 0 {
        return Ok(());
    }
    let own = std::fs::read("/proc/self/status")
        .ok()
        .and_then(|b| crate::sys::proc::parse_status(&b).ok())
        .unwrap_or_default();
    for pi in &m.procs {
        let c = &pi.p.creds;
        let ids_ok = [c.uid, c.euid, c.suid, c.fsuid].iter().all(|&x| x == uid)
            && [c.gid, c.egid, c.sgid, c.fsgid].iter().all(|&x| x == gid);
        let caps = c.cap_prm | c.cap_eff | c.cap_inh | c.cap_amb;
        let caps_ok = caps & !own.cap_prm == 0;
        if !ids_ok || !caps_ok {
            return Err(Error::msg(format!(
                "cannot restore pid {}: it ran as uid {} gid {}{}, and only root may restore another user's process, a set-id process or capabilities",
                pi.p.pid,
                c.euid,
                c.egid,
                if caps_ok { "" } else { " with capabilities" }
            )));
        }
    }
    Ok(())
}

/// Checks what the restorer relies on before touching anything.
fn validate(m: &Meta) -> Result<()> {
    check_privilege(m)?;
    locks::validate(m.procs.iter().filter_map(|pi| pi.fds.as_ref()), &m.files)?;
    let live: Vec<&ProcImage> = m
        .procs
        .iter()
        .filter(|pi| pi.p.state != image::STATE_ZOMBIE)
        .collect();
    let Some(root) = live.first() else {
        return Err(corrupt("no live process in the image".into()));
    };
    if root.p.ppid != 0 {
        return Err(corrupt(format!(
            "the first process {} is not the root of the tree",
            root.p.pid
        )));
    }
    for (i, pi) in m.procs.iter().enumerate() {
        let pid = pi.p.pid;
        if pid == 0 || pid > 4_194_304 {
            return Err(corrupt(format!("impossible pid {pid}")));
        }
        if i > 0
            && !m.procs[..i]
                .iter()
                .any(|x| x.p.pid == pi.p.ppid && x.p.state != image::STATE_ZOMBIE)
        {
            return Err(corrupt(format!(
                "process {pid} comes before its parent {}",
                pi.p.ppid
            )));
        }
        if pi.p.state == image::STATE_ZOMBIE {
            if !pi.threads.is_empty() || pi.mm.is_some() {
                return Err(corrupt(format!("zombie {pid} has threads or memory")));
            }
            continue;
        }
        let mm = pi
            .mm
            .as_ref()
            .ok_or_else(|| corrupt(format!("process {pid} has no memory record")))?;
        if pi.threads.is_empty() || pi.threads[0].tid != pid {
            return Err(corrupt(format!("process {pid} has no main thread record")));
        }
        if pi.threads.len() > 4096 {
            return Err(corrupt(format!(
                "process {pid} has {} threads",
                pi.threads.len()
            )));
        }
        for t in &pi.threads {
            if ptrace::regs_from_bytes(&t.regs).is_none() {
                return Err(corrupt(format!(
                    "registers of thread {} have the wrong size",
                    t.tid
                )));
            }
            if t.tid == 0 || t.tid > 4_194_304 {
                return Err(corrupt(format!("impossible thread id {}", t.tid)));
            }
        }
        let mut last_end = 0;
        for v in mm.vmas.iter() {
            let bad = |why: &str| {
                corrupt(format!(
                    "process {pid}: mapping {:#x}-{:#x} {why}",
                    v.start, v.end
                ))
            };
            if v.start >= v.end || v.start % space::PAGE != 0 || v.end % space::PAGE != 0 {
                return Err(bad("is not a page-aligned range"));
            }
            if v.backing == image::VMA_VSYSCALL {
                continue;
            }
            if v.end > TASK_SIZE {
                return Err(bad("lies outside the user address space"));
            }
            if v.start < last_end {
                return Err(bad("overlaps the one before it"));
            }
            last_end = v.end;
            if v.backing == image::VMA_SHARED_ANON && !m.shmem.contains_key(&v.shmem_id) {
                return Err(bad("refers to a shared memory object the image lacks"));
            }
        }
        if let Some(t) = &pi.fds {
            for fd in t.fds.iter() {
                if !m.files.contains_key(&fd.file_id) {
                    return Err(corrupt(format!(
                        "process {pid}: descriptor {} refers to a missing file",
                        fd.fd
                    )));
                }
                if fd.fd > 1 << 20 {
                    return Err(corrupt(format!(
                        "process {pid}: impossible descriptor {}",
                        fd.fd
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Kills every process it holds unless disarmed: restore is all or nothing.
struct Undo {
    pids: Vec<i32>,
}

impl Drop for Undo {
    fn drop(&mut self) {
        for &pid in self.pids.iter().rev() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(
                Pid::from_raw(pid),
                Some(nix::sys::wait::WaitPidFlag::__WALL),
            );
        }
    }
}

/// A process being built.
struct Building<'a> {
    pi: &'a ProcImage,
    pid: i32,
    /// Its pid as the process itself sees it (differs under `--pidns`).
    inner: i32,
    b: Builder<'a>,
    /// (start, end) of mappings whose contents the image may carry.
    writable: Vec<(u64, u64)>,
}

/// Restores the image from `reader`; on success the tree runs.
pub fn restore<R: Read>(mut reader: Reader<R>, opts: &Options) -> Result<Restored> {
    let reader_flags = reader.header().flags;
    let meta = read_meta(&mut reader)?;
    validate(&meta)?;
    inject::check("meta")?;
    let mut undo = Undo { pids: Vec::new() };
    let mut meta = meta;
    let first = meta.first_bulk.take();
    let mut spooled = None;
    let ns_init = reader_flags & image::HDR_PIDNS_INIT != 0;
    if opts.original_pids && !opts.pidns && !ns_init {
        let held: Vec<i32> = meta
            .procs
            .iter()
            .map(|pi| pi.p.pid as i32)
            .filter(|&pid| pid_is_live(pid))
            .collect();
        if !held.is_empty() {
            // Probably `ckpt --kill | cr-restart` on this machine: the
            // original goes away once the whole image is written.
            let f = spool::spool(first.clone(), &mut reader)?;
            let deadline = Instant::now() + opts.pid_wait.max(Duration::from_secs(1));
            for pid in held {
                while pid_is_live(pid) {
                    if Instant::now() >= deadline {
                        return Err(Error::msg(format!(
                            "cannot restore pid {pid}: pid already in use"
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            spooled = Some(f);
        }
    }
    let mut source = match spooled {
        Some(f) => spool::Source::Spooled(f),
        None => spool::Source::Live(&mut reader),
    };

    // Shared memory objects live in memfds the restorer holds; processes
    // map them through /proc/<restorer>/fd/N.
    let mut shm_fds: HashMap<u64, OwnedFd> = HashMap::new();
    for s in meta.shmem.values() {
        let fd = nix::sys::memfd::memfd_create(
            c"crtools-shmem",
            nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
        )
        .ctx(|| "cannot create shared memory".into())?;
        nix::unistd::ftruncate(&fd, s.size as i64).ctx(|| "cannot size shared memory".into())?;
        shm_fds.insert(s.id, fd);
    }

    // SysV IPC objects first, with their ids: processes attach segments.
    if reader_flags & image::HDR_OWN_IPCNS != 0 {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWIPC)
            .ctx(|| "cannot create an IPC namespace".into())?;
    }
    let mut ipc = std::mem::take(&mut meta.ipc);
    ipc.create()?;
    inject::check("ipc")?;
    let sysv_sizes: HashMap<u64, u64> = ipc
        .segments()
        .iter()
        .map(|s| (s.id as u64, s.size))
        .collect();

    let avoid: Vec<(u64, u64)> = meta
        .procs
        .iter()
        .flat_map(|pi| {
            pi.mm
                .iter()
                .flat_map(|mm| mm.vmas.iter().map(|v| (v.start, v.end)))
        })
        .collect();
    let tramp = Trampoline::map(&avoid)?;
    let specials = space::own_specials()?;
    let max_fd = meta
        .procs
        .iter()
        .flat_map(|pi| pi.fds.iter().flat_map(|t| t.fds.iter().map(|f| f.fd)))
        .max()
        .unwrap_or(2)
        .max(2);
    raise_nofile(max_fd as u64 + 256);
    let mut open = files::OpenFiles::new(max_fd as RawFd + 1);
    open.pipes = meta.pipes.clone();
    open.sockets = meta.sockets.clone();
    open.ptys = tty::Ptys::new(meta.ptys.clone());

    let mut tree = spawn_tree(&meta, opts, ns_init, &mut open, &mut undo)?;
    inject::check("tree")?;
    let pids = tree.outer.clone();
    let live: Vec<&ProcImage> = meta
        .procs
        .iter()
        .filter(|pi| pi.p.state != image::STATE_ZOMBIE)
        .collect();
    let mut building: Vec<Building> = Vec::new();
    // Every process on the restorer's CPU while it is rebuilt (remote
    // syscalls are a few times cheaper); affinities go back at the release.
    let mut pins: Vec<remote::SameCpu> = Vec::new();
    for pi in &live {
        let pid = pids[&(pi.p.pid as i32)];
        pins.push(remote::SameCpu::new(pid));
        let r = Remote::new(pid, Gate::Trap(tramp.addr))?;
        building.push(Building {
            pi,
            pid,
            inner: tree.inner[&(pi.p.pid as i32)],
            b: Builder::new(r, pid, &tramp),
            writable: Vec::new(),
        });
    }
    // Process groups led by another process of the tree: leaders made
    // theirs before forking, members join now.
    for bp in &mut building {
        let p = &bp.pi.p;
        if p.pgid != p.pid && p.sid != p.pid {
            let ghost = tree
                .ghosts
                .iter()
                .find(|x| x.0 == p.pgid as i32)
                .map(|x| x.1);
            if let Some(g) = tree.inner.get(&(p.pgid as i32)).copied().or(ghost) {
                bp.b.call(nr::SETPGID, &[0, g as u64]).map_err(|e| {
                    Error::msg(format!(
                        "cannot restore the process group {} of pid {}: {e}",
                        p.pgid, p.pid
                    ))
                })?;
            }
        }
    }
    // Controlling terminals: their foreground groups exist now.
    for bp in &mut building {
        let held = tty::ctty_file(&bp.pi.p, &meta.files).and_then(|f| open.get(f.id));
        tty::set_foreground(&mut bp.b, &bp.pi.p, held, &tree.inner)?;
    }
    // Members joined: the ghosts exit and their parents reap them.
    drop(tree.ghost_wr.take());
    for &(_, ghost, parent) in &tree.ghosts {
        let bp = building
            .iter_mut()
            .find(|x| x.pi.p.pid as i32 == parent)
            .expect("ghost parent is live");
        bp.b.call(nr::WAIT4, &[ghost as u64, 0, libc::__WALL as u64, 0])?;
        let set: u64 = 1 << (libc::SIGCHLD - 1);
        let set_at = bp.b.put(&set.to_le_bytes())?;
        let zero_at = bp.b.put(&[0u8; 16])?;
        // Its SIGCHLD is not part of the image: drop it.
        let _ = bp.b.r.raw(nr::RT_SIGTIMEDWAIT, &[set_at, 0, zero_at, 8]);
    }
    for bp in &mut building {
        rebuild_space(bp, &specials, &shm_fds, &open, &sysv_sizes)?;
    }
    inject::check("map")?;

    // Bulk data: page contents and file contents, streamed straight in.
    let next = if matches!(source, spool::Source::Spooled(_)) {
        source.next_record()?
    } else {
        first
    };
    stream_bulk(
        &mut building,
        &meta,
        &mut ipc,
        &shm_fds,
        &open,
        next,
        &mut source,
    )?;
    // reader.next_raw() returned None: the end record was read and matched.
    open.finish_sockets()?;
    ipc.finish()?;
    inject::check("data")?;

    let mut threads: Vec<(i32, i32, Remote)> = Vec::new();
    for bp in &mut building {
        threads.extend(finish(bp, &tramp, opts.original_pids)?);
    }
    inject::check("threads")?;
    // Affinities back, last pinned first; threads made while pinned take
    // their process's.
    while let Some(p) = pins.pop() {
        drop(p);
    }
    for (pid, tid, _) in &threads {
        remote::copy_affinity(*pid, *tid);
    }
    // Release: every thread of every process at once.
    let mut sessions = Vec::new();
    for bp in building {
        let Building { pid, b, pi, .. } = bp;
        sessions.push((pid, pid, b.r, pi.p.state == image::STATE_STOPPED));
    }
    for (pid, tid, r) in threads {
        sessions.push((pid, tid, r, false));
    }
    let mut deferred = Vec::new();
    for (pid, tid, r, stopped) in sessions {
        deferred.push((pid, tid, r.finish()?, stopped));
    }
    inject::check("release")?;
    for (pid, tid, _, stopped) in &deferred {
        if *stopped {
            // It was in a job-control stop: it stays stopped.
            let _ = kill(Pid::from_raw(*pid), Signal::SIGSTOP);
        }
        ptrace::detach(*tid, None)
            .ctx(|| format!("cannot release thread {tid} of process {pid}"))?;
    }
    for (pid, tid, sigs, _) in &deferred {
        remote::redeliver(*pid, *tid, sigs);
    }
    let root = pids[&(live[0].p.pid as i32)];
    undo.pids.clear();
    ipc.commit();
    drop(open);
    Ok(Restored {
        pid: root,
        wait_pid: tree.init.unwrap_or(root),
        pids,
    })
}

fn raise_nofile(want: u64) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a live rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < want {
            rl.rlim_cur = want.min(rl.rlim_max).max(rl.rlim_cur);
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

/// Replaces a stopped process's address space with the image's mappings
/// (contents come later): drops glibc's rseq, moves the kernel's vDSO and
/// vvar to the image's addresses, unmaps the rest, maps every VMA.
fn rebuild_space(
    bp: &mut Building,
    specials: &[space::Special],
    shm_fds: &HashMap<u64, OwnedFd>,
    open: &files::OpenFiles,
    sysv_sizes: &HashMap<u64, u64>,
) -> Result<()> {
    bp.b.unregister_rseq()?;
    let mm = bp.pi.mm.as_ref().expect("validated");
    let want: Vec<_> = mm
        .vmas
        .iter()
        .filter(|v| {
            matches!(
                v.backing,
                image::VMA_VDSO | image::VMA_VVAR | image::VMA_VVAR_VCLOCK
            )
        })
        .collect();
    bp.b.clear_space(specials, &want)?;
    bp.writable = map_vmas(&mut bp.b, mm, shm_fds, open, sysv_sizes)?;
    Ok(())
}

/// Fills the parts of a new process's plan that the restorer opens for it:
/// its descriptors (held above every number the image uses), root and
/// working directory, and what to close after placing them.
fn plan_files(
    pi: &ProcImage,
    meta: &Meta,
    opts: &Options,
    open: &mut files::OpenFiles,
    plan: &mut child::ChildPlan,
    keep: &mut Vec<OwnedFd>,
) -> Result<()> {
    let p = &pi.p;
    let external = |f: &File, target: u32| -> Result<OwnedFd> { connect_external(f, target, opts) };
    let mut targets = Vec::new();
    if let Some(t) = &pi.fds {
        for fd in t.fds.iter() {
            let f = &meta.files[&fd.file_id];
            let src = open.open(f, fd.fd, &external).map_err(|e| {
                Error::msg(format!(
                    "cannot restore descriptor {} of pid {}: {e}",
                    fd.fd, p.pid
                ))
            })?;
            plan.fds.push((fd.fd as RawFd, src, fd.cloexec));
            targets.push(fd.fd);
        }
    }
    let cwd = high(
        files::open_dir(if p.cwd.is_empty() { b"/" } else { &p.cwd })?,
        open.base,
    )?;
    plan.cwd = Some(cwd.as_raw_fd());
    keep.push(cwd);
    if !p.root.is_empty() && p.root != b"/" {
        let r = high(files::open_dir(&p.root)?, open.base)?;
        plan.root = Some(r.as_raw_fd());
        keep.push(r);
    }
    targets.sort_unstable();
    let mut lo = 0u32;
    for t in targets {
        if t > lo {
            plan.close.push((lo, t - 1));
        }
        lo = t + 1;
    }
    plan.close.push((lo, u32::MAX));
    Ok(())
}

/// Moves a descriptor above `base` (close-on-exec).
fn high(fd: OwnedFd, base: RawFd) -> Result<OwnedFd> {
    let raw = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(base))
        .ctx(|| "cannot duplicate a descriptor".into())?;
    // SAFETY: fcntl just returned this new descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Waits (bounded) until no process or thread holds any of `ids`.
fn wait_for_ids(ids: &[u32], wait: Duration) -> Result<()> {
    let deadline = Instant::now() + wait;
    for &id in ids {
        while std::fs::metadata(format!("/proc/{id}")).is_ok() {
            if Instant::now() >= deadline
                || pid_is_live(id as i32) && Instant::now() + wait / 2 >= deadline
            {
                return Err(Error::msg(format!(
                    "cannot restore pid {id}: pid already in use"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(())
}

/// The processes [`spawn_tree`] made.
struct Tree {
    /// image pid -> pid as the restorer sees it.
    outer: BTreeMap<i32, i32>,
    /// image pid -> pid as the process sees itself.
    inner: BTreeMap<i32, i32>,
    /// The pid namespace's init, with `--pidns`.
    init: Option<i32>,
    /// Placeholder group leaders: `(image pgid, pid as its parent sees it,
    /// image pid of its parent)`.
    ghosts: Vec<(i32, i32, i32)>,
    /// Closing this lets the ghosts exit.
    ghost_wr: Option<OwnedFd>,
}

/// Finds the pid we see for the process that sees itself as `inner`,
/// among the descendants of `init`.
fn outer_of(init: i32, inner: i32) -> Option<i32> {
    let mut stack = vec![init];
    while let Some(p) = stack.pop() {
        if let Ok(st) = proc::status(p)
            && st.ns_pid.last() == Some(&inner)
            && p != init
        {
            return Some(p);
        }
        for t in proc::tasks(p).unwrap_or_default() {
            stack.extend(proc::children(p, t).unwrap_or_default());
        }
    }
    None
}

/// Streams the bulk records (page contents, shared memory, SysV segments,
/// deleted files' contents, pipe and socket data) straight into the objects
/// being built, starting with `next`. When it returns, the end record has
/// been read and matched.
#[allow(clippy::too_many_arguments)]
fn stream_bulk<R: Read>(
    building: &mut [Building],
    meta: &Meta,
    ipc: &mut ipc::IpcRestore,
    shm_fds: &HashMap<u64, OwnedFd>,
    open: &files::OpenFiles,
    mut next: Option<RawRecord>,
    source: &mut spool::Source<'_, R>,
) -> Result<()> {
    let zeros = vec![0u8; image::CHUNK];
    let mut thp = pages::Thp::new(building);
    while let Some(raw) = next {
        let rec = raw.decode()?;
        let (pre, data) = DataPrefix::parse(&rec.payload)
            .ok_or_else(|| corrupt(format!("record {} is too short for its kind", rec.seq)))?;
        let zlen;
        let data: &[u8] = if rec.kind == Kind::ZERO {
            if data.len() < 8 {
                return Err(corrupt(format!("zero record {} has no length", rec.seq)));
            }
            zlen = u64::from_le_bytes(data[..8].try_into().expect("8 bytes")) as usize;
            if zlen > image::CHUNK {
                return Err(corrupt(format!("zero record {} is too long", rec.seq)));
            }
            &zeros[..zlen]
        } else if matches!(rec.kind, Kind::PAGES | Kind::BLOB) {
            data
        } else {
            return Err(corrupt(format!(
                "a {} record after the page data began",
                rec.kind
            )));
        };
        match pre.space {
            image::SPACE_PROCESS => {
                let bp = building
                    .iter_mut()
                    .find(|x| x.pi.p.pid as u64 == pre.id)
                    .ok_or_else(|| corrupt(format!("pages for unknown process {}", pre.id)))?;
                let end = pre.addr.saturating_add(data.len() as u64);
                if !bp.writable.iter().any(|&(s, e)| s <= pre.addr && end <= e) {
                    return Err(corrupt(format!(
                        "pages at {:#x}-{:#x} of process {} lie outside its mappings",
                        pre.addr, end, pre.id
                    )));
                }
                thp.before_write(bp, pre.addr)?;
                mem::write_all(bp.pid, pre.addr, data, &mut bp.b.mem)
                    .ctx(|| format!("cannot write memory of process {}", bp.pid))?;
            }
            image::SPACE_SHMEM => {
                let s = meta.shmem.get(&pre.id).ok_or_else(|| {
                    corrupt(format!("pages for unknown shared memory {}", pre.id))
                })?;
                if pre.addr.saturating_add(data.len() as u64) > s.size {
                    return Err(corrupt(format!(
                        "pages beyond the end of shared memory {}",
                        pre.id
                    )));
                }
                let f = std::fs::File::from(shm_fds[&pre.id].try_clone().ctx(|| "dup".into())?);
                f.write_all_at(data, pre.addr)
                    .ctx(|| "cannot fill shared memory".into())?;
            }
            image::SPACE_FILE => {
                let fd = open
                    .blob_target(pre.id)
                    .ok_or_else(|| corrupt(format!("contents for unknown file {}", pre.id)))?;
                let size = meta.files.get(&pre.id).map(|f| f.size).unwrap_or(0);
                if pre.addr.saturating_add(data.len() as u64) > size {
                    return Err(corrupt(format!(
                        "contents beyond the end of file {}",
                        pre.id
                    )));
                }
                nix::sys::uio::pwrite(
                    // SAFETY: fd is held open by `open` for the whole restore.
                    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
                    data,
                    pre.addr as i64,
                )
                .ctx(|| "cannot write the contents of a deleted file".into())?;
            }
            image::SPACE_SYSV_SHM => {
                ipc.shm_contents(pre.id, pre.addr, data)?;
            }
            image::SPACE_SOCKET => {
                let sk = meta
                    .sockets
                    .get(&pre.id)
                    .ok_or_else(|| corrupt(format!("data for unknown socket {}", pre.id)))?;
                if pre.addr.saturating_add(data.len() as u64) > sk.data_len {
                    return Err(corrupt(format!(
                        "more data for socket {} than it held",
                        pre.id
                    )));
                }
                open.fill_socket(pre.id, data)?;
            }
            image::SPACE_PIPE => {
                let p = meta
                    .pipes
                    .get(&pre.id)
                    .ok_or_else(|| corrupt(format!("data for unknown pipe {}", pre.id)))?;
                if pre.addr.saturating_add(data.len() as u64) > p.data_len {
                    return Err(corrupt(format!(
                        "more data for pipe {} than it held",
                        pre.id
                    )));
                }
                open.fill_pipe(pre.id, data)?;
            }
            s => return Err(corrupt(format!("data for unknown space {s}"))),
        }
        inject::check("pages")?;
        next = source.next_record()?;
    }
    Ok(())
}

/// Creates every process of the tree, each forked by its own parent with
/// its pid, session and group, lets each place its descriptors, and returns
/// them traced and stopped.
fn spawn_tree(
    meta: &Meta,
    opts: &Options,
    ns_init: bool,
    open: &mut files::OpenFiles,
    undo: &mut Undo,
) -> Result<Tree> {
    // The root was the init of its own pid namespace: it is again, in a new
    // one (which also keeps the pids from colliding), so no cr-init.
    let with_init = opts.pidns && !ns_init;
    if opts.original_pids && !opts.pidns && !ns_init {
        let mut ids: Vec<u32> = Vec::new();
        let root_pgid = meta.procs[0].p.pgid;
        for pi in &meta.procs {
            ids.push(pi.p.pid);
            ids.extend(pi.threads.iter().map(|t| t.tid));
            if pi.p.pgid != root_pgid && !ids.contains(&pi.p.pgid) {
                ids.push(pi.p.pgid);
            }
        }
        wait_for_ids(&ids, opts.pid_wait)?;
    }
    let external = |f: &File, target: u32| -> Result<OwnedFd> { connect_external(f, target, opts) };
    let live: Vec<&ProcImage> = meta
        .procs
        .iter()
        .filter(|pi| pi.p.state != image::STATE_ZOMBIE)
        .collect();
    let mut plans: Vec<child::ChildPlan> = Vec::new();
    let mut keep: Vec<OwnedFd> = Vec::new();
    let mut sync_wr: Vec<OwnedFd> = Vec::new();
    for pi in &live {
        let p = &pi.p;
        let mut plan = child::ChildPlan {
            image_pid: p.pid as i32,
            want: opts.original_pids.then_some(p.pid as i32),
            exit_signal: if p.exit_signal == 0 {
                libc::SIGCHLD
            } else {
                p.exit_signal as i32
            },
            umask: p.umask,
            setsid: p.sid == p.pid,
            setpgid: p.pgid == p.pid,
            ..Default::default()
        };
        plan_files(pi, meta, opts, open, &mut plan, &mut keep)?;
        if let Some(f) = tty::ctty_file(p, &meta.files) {
            let src = open.open(f, u32::MAX, &external).map_err(|e| {
                Error::msg(format!(
                    "cannot restore the controlling terminal of pid {}: {e}",
                    p.pid
                ))
            })?;
            plan.ctty = Some(src);
        }
        let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "pipe".into())?;
        let rd = high(rd, open.base)?;
        plan.sync_rd = rd.as_raw_fd();
        keep.push(rd);
        sync_wr.push(wr);
        plans.push(plan);
    }
    // Children and zombies, under their parents.
    for pi in meta.procs.iter().skip(1) {
        let parent = live
            .iter()
            .position(|x| x.p.pid == pi.p.ppid)
            .ok_or_else(|| {
                corrupt(format!(
                    "the parent {} of process {} is not in the image",
                    pi.p.ppid, pi.p.pid
                ))
            })?;
        if pi.p.state == image::STATE_ZOMBIE {
            let want = opts.original_pids.then_some(pi.p.pid as i32);
            let mut name = [0u8; 16];
            let n = pi.p.comm.len().min(15);
            name[..n].copy_from_slice(&pi.p.comm[..n]);
            plans[parent].zombies.push((want, pi.p.exit_status, name));
        } else {
            let idx = live.iter().position(|x| x.p.pid == pi.p.pid).expect("live");
            plans[parent].children.push(idx);
        }
    }
    // Groups whose leader had exited get a placeholder leader, forked by
    // their session's leader (or the root, for a session from outside).
    let root_pgid = live[0].p.pgid;
    let mut ghosts: Vec<(i32, usize)> = Vec::new();
    for pi in &live {
        let g = pi.p.pgid;
        if g == root_pgid
            || live.iter().any(|x| x.p.pid == g)
            || ghosts.iter().any(|&(x, _)| x == g as i32)
        {
            continue;
        }
        let parent = live.iter().position(|x| x.p.pid == pi.p.sid).unwrap_or(0);
        ghosts.push((g as i32, parent));
        plans[parent]
            .ghosts
            .push((g as i32, opts.original_pids.then_some(g as i32)));
    }
    let (ghost_rd, ghost_wr) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "pipe".into())?;
    let ghost_rd = high(ghost_rd, open.base)?;
    let ghost_wr = high(ghost_wr, open.base)?;
    let (report_rd, report_wr) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "pipe".into())?;
    let (err_rd, err_wr) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "pipe".into())?;
    // Above every descriptor number the processes use, so placing their
    // descriptors cannot clobber these.
    let report_wr = high(report_wr, open.base)?;
    let err_wr = high(err_wr, open.base)?;
    let shared = child::Shared {
        report_wr: report_wr.as_raw_fd(),
        err_wr: err_wr.as_raw_fd(),
        sync_wr: sync_wr.iter().map(|f| f.as_raw_fd()).collect(),
        ghost_rd: ghost_rd.as_raw_fd(),
        ghost_wr: ghost_wr.as_raw_fd(),
    };
    let root = &plans[0];
    let deadline = Instant::now() + opts.pid_wait;
    let forked = loop {
        // SAFETY: the child runs only `child_main` or `init_main` (see above).
        let r = unsafe {
            if opts.pidns || ns_init {
                // Init of a new pid namespace; our own children stay in ours.
                fork_with_pid(None, libc::CLONE_NEWPID as u64, libc::SIGCHLD)
            } else {
                fork_with_pid(root.want, 0, libc::SIGCHLD)
            }
        };
        // A pid freed a moment ago may still be settling in the kernel.
        if matches!(r, Err(nix::errno::Errno::EEXIST))
            && Instant::now() < deadline
            && !root.want.is_some_and(pid_is_live)
        {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        break r;
    };
    let root_pid = match forked {
        Ok(Forked::Child) if with_init => child::init_main(&plans, &shared),
        Ok(Forked::Child) => child::child_main(&plans, 0, &shared),
        Ok(Forked::Parent(pid)) => pid,
        Err(nix::errno::Errno::EEXIST) => {
            return Err(Error::msg(format!(
                "cannot restore pid {}: pid already in use",
                root.image_pid
            )));
        }
        Err(e) => {
            return Err(Error::msg(format!(
                "cannot restore pid {}: clone3: {e}",
                root.image_pid
            )));
        }
    };
    undo.pids.push(root_pid);
    drop(report_wr);
    drop(err_wr);
    let child_failed = |err_rd: &OwnedFd| -> Error {
        let mut buf = [0u8; child::REPORT_LEN];
        let f = std::fs::File::from(err_rd.try_clone().expect("dup"));
        match (&f).read(&mut buf) {
            Ok(n) if n == buf.len() => {
                let errno =
                    nix::errno::Errno::from_raw(u16::from_le_bytes([buf[2], buf[3]]) as i32);
                let pid = i32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
                Error::msg(format!(
                    "cannot restore pid {pid}: the new process failed while {}: {errno}",
                    child::Step::describe(buf[0])
                ))
            }
            _ => Error::msg("cannot restore: a new process exited early".to_string()),
        }
    };
    let init = with_init.then_some(root_pid);
    // Each new process reports itself; trace it, then let it go on.
    let mut pids = BTreeMap::new();
    let mut inner = BTreeMap::new();
    let report = std::fs::File::from(report_rd);
    let mut ghost_pids = BTreeMap::new();
    while pids.len() + ghost_pids.len() < live.len() + ghosts.len() {
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
            return Err(child_failed(&err_rd));
        }
        let mut rep = [0u8; 8];
        (&report)
            .read_exact(&mut rep)
            .map_err(|_| child_failed(&err_rd))?;
        let image_pid = i32::from_le_bytes(rep[0..4].try_into().expect("4 bytes"));
        let seen = i32::from_le_bytes(rep[4..8].try_into().expect("4 bytes"));
        if image_pid < 0 {
            // A ghost leader: not traced, it only holds its group for a moment.
            ghost_pids.insert(-image_pid, seen);
            continue;
        }
        let pid = match init {
            None if ns_init && image_pid == root.image_pid => root_pid,
            None if ns_init => outer_of(root_pid, seen).ok_or_else(|| {
                Error::msg(format!(
                    "cannot restore pid {image_pid}: cannot find it in the new pid namespace"
                ))
            })?,
            Some(init) => outer_of(init, seen).ok_or_else(|| {
                Error::msg(format!(
                    "cannot restore pid {image_pid}: cannot find it in the new pid namespace"
                ))
            })?,
            None => seen,
        };
        inner.insert(image_pid, seen);
        let idx = live
            .iter()
            .position(|x| x.p.pid as i32 == image_pid)
            .ok_or_else(|| Error::msg("cannot restore: a new process reported a wrong pid"))?;
        if pid != root_pid {
            undo.pids.push(pid);
        }
        ptrace::seize(pid, true).ctx(|| format!("cannot trace new process {pid}"))?;
        nix::unistd::write(&sync_wr[idx], &[1]).ctx(|| "cannot start a new process".into())?;
        pids.insert(image_pid, pid);
    }
    drop(sync_wr);
    for pi in &live {
        let pid = pids[&(pi.p.pid as i32)];
        loop {
            match ptrace::wait(pid).ctx(|| format!("waiting for new process {pid}"))? {
                Stop::Signal(s) if s == libc::SIGSTOP => break,
                // SIGCHLD from a zombie child it just made: the original parent
                // had that one already.
                Stop::Signal(s) if s == libc::SIGCHLD => {
                    ptrace::cont(pid, None).ctx(|| format!("resuming new process {pid}"))?;
                }
                Stop::Exited(_) | Stop::Killed(_) => {
                    undo.pids.retain(|&x| x != pid);
                    return Err(child_failed(&err_rd));
                }
                other => {
                    return Err(Error::msg(format!(
                        "cannot restore pid {}: unexpected first stop {other:?}",
                        pi.p.pid
                    )));
                }
            }
        }
    }
    drop(keep);
    drop(ghost_rd);
    Ok(Tree {
        outer: pids,
        inner,
        init,
        ghosts: ghosts
            .iter()
            .map(|&(g, parent)| (g, ghost_pids[&g], live[parent].p.pid as i32))
            .collect(),
        ghost_wr: Some(ghost_wr),
    })
}

/// Whether a pid is held by a process that is not exiting.
fn pid_is_live(pid: i32) -> bool {
    std::fs::metadata(format!("/proc/{pid}")).is_ok() && !pid_is_dying(pid)
}

/// Whether a pid is held by a process that is exiting or a zombie.
fn pid_is_dying(pid: i32) -> bool {
    match std::fs::read(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let after = s.iter().rposition(|&c| c == b')').map(|i| i + 2);
            matches!(after.and_then(|i| s.get(i)), Some(b'Z') | Some(b'X'))
        }
        Err(_) => true,
    }
}

/// Reconnects a descriptor that led outside the image.
fn connect_external(f: &File, target: u32, opts: &Options) -> Result<OwnedFd> {
    let src = opts
        .fd_map
        .iter()
        .find(|(t, _)| *t == target)
        .map(|(_, s)| s.clone());
    let src = src.unwrap_or_else(|| {
        let fd = if target <= 2 {
            target as RawFd
        } else if f.flags as i32 & libc::O_ACCMODE == libc::O_RDONLY {
            0
        } else {
            1
        };
        FdSource::Inherit(fd)
    });
    match src {
        FdSource::Inherit(fd) => {
            let raw = nix::unistd::dup(fd).ctx(|| {
                format!("cannot use descriptor {fd} of cr-restart for descriptor {target}")
            })?;
            // SAFETY: dup just returned this descriptor.
            Ok(unsafe { OwnedFd::from_raw_fd(raw) })
        }
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

/// Maps every VMA of the image into the new process; returns the ranges
/// whose contents may be written.
fn map_vmas(
    b: &mut Builder,
    mm: &Mm,
    shm_fds: &HashMap<u64, OwnedFd>,
    open: &files::OpenFiles,
    sysv: &HashMap<u64, u64>,
) -> Result<Vec<(u64, u64)>> {
    let me = std::process::id();
    let mut remote_fds: HashMap<(Vec<u8>, bool), u64> = HashMap::new();
    let mut writable = Vec::new();
    // SysV attachments: attach each (segment, address) once, then keep only
    // the pieces the image has, with their protections.
    let mut attached: Vec<(u64, u64, u64)> = Vec::new();
    for v in mm.vmas.iter().filter(|v| v.backing == image::VMA_SYSV_SHM) {
        let at = v.start - v.pgoff;
        let size = *sysv.get(&v.shmem_id).ok_or_else(|| {
            corrupt(format!(
                "mapping {:#x} refers to SysV segment {} the image lacks",
                v.start, v.shmem_id
            ))
        })?;
        if !attached
            .iter()
            .any(|&(id, a, _)| id == v.shmem_id && a == at)
        {
            let flags = ipc::attach_flags(v.prot, v.flags & image::VMA_F_MAYWRITE != 0);
            b.call(nr::SHMAT, &[v.shmem_id, at, flags as u64])
                .map_err(|e| {
                    Error::msg(format!(
                        "cannot attach SysV segment {} at {at:#x} in pid {}: {e}",
                        v.shmem_id, b.pid
                    ))
                })?;
            attached.push((
                v.shmem_id,
                at,
                (size + space::PAGE - 1) & !(space::PAGE - 1),
            ));
        }
        b.call(nr::MPROTECT, &[v.start, v.end - v.start, v.prot as u64])?;
    }
    for &(id, at, len) in &attached {
        let mut pos = at;
        let mut pieces: Vec<(u64, u64)> = mm
            .vmas
            .iter()
            .filter(|v| {
                v.backing == image::VMA_SYSV_SHM && v.shmem_id == id && v.start - v.pgoff == at
            })
            .map(|v| (v.start, v.end))
            .collect();
        pieces.sort_unstable();
        for (s, e) in pieces.into_iter().chain([(at + len, at + len)]) {
            if s > pos {
                b.call(nr::MUNMAP, &[pos, s - pos])?;
            }
            pos = pos.max(e);
        }
    }
    for v in mm
        .vmas
        .iter()
        .filter(|v| !space::is_special(v) && v.backing != image::VMA_SYSV_SHM)
    {
        let prot = space::build_prot(v) as u64;
        let shared = v.flags & image::VMA_F_SHARED != 0;
        let mut flags = libc::MAP_FIXED as u64
            | if shared {
                libc::MAP_SHARED
            } else {
                libc::MAP_PRIVATE
            } as u64;
        if v.flags & image::VMA_F_GROWSDOWN != 0 {
            flags |= libc::MAP_GROWSDOWN as u64;
        }
        let len = v.end - v.start;
        let (fd, off) = match v.backing {
            image::VMA_ANON => {
                flags |= libc::MAP_ANONYMOUS as u64;
                (u64::MAX, 0)
            }
            image::VMA_FILE | image::VMA_SHARED_ANON => {
                let path: Vec<u8> = if v.backing == image::VMA_SHARED_ANON {
                    format!("/proc/{me}/fd/{}", shm_fds[&v.shmem_id].as_raw_fd()).into_bytes()
                } else if let Some(fd) = (v.file_id != 0)
                    .then(|| open.blob_target(v.file_id))
                    .flatten()
                {
                    format!("/proc/{me}/fd/{fd}").into_bytes()
                } else {
                    v.path.clone()
                };
                let rw = shared && v.prot & libc::PROT_WRITE as u32 != 0;
                let key = (path.clone(), rw);
                let fd = match remote_fds.get(&key) {
                    Some(&fd) => fd,
                    None => {
                        let at = b.put_path(&path)?;
                        let mode = if rw { libc::O_RDWR } else { libc::O_RDONLY };
                        let fd = b
                            .call(nr::OPENAT, &[libc::AT_FDCWD as u64, at, mode as u64, 0])
                            .map_err(|e| {
                                Error::msg(format!(
                                    "cannot map {} at {:#x} in pid {}: {e}",
                                    String::from_utf8_lossy(&v.path),
                                    v.start,
                                    b.pid
                                ))
                            })?;
                        remote_fds.insert(key, fd);
                        fd
                    }
                };
                (fd, v.pgoff)
            }
            other => {
                return Err(Error::msg(format!(
                    "cannot restore mapping {:#x}-{:#x}: backing {other} is not supported yet",
                    v.start, v.end
                )));
            }
        };
        b.call(nr::MMAP, &[v.start, len, prot, flags, fd, off])
            .map_err(|e| {
                Error::msg(format!(
                    "cannot map {:#x}-{:#x} in pid {}: {e}",
                    v.start, v.end, b.pid
                ))
            })?;
        if v.dumped_pages > 0 {
            writable.push((v.start, v.end));
        }
    }
    for fd in remote_fds.into_values() {
        b.call(nr::CLOSE, &[fd])?;
    }
    Ok(writable)
}

/// Everything after the memory contents: protections, mm fields, signal
/// state, timers, threads, credentials, registers; ends with the trampoline
/// unmapped and every thread stopped at its final registers. Returns the
/// remote sessions of the threads it created, `(pid, tid, session)`.
fn finish<'a>(
    bp: &mut Building<'a>,
    tramp: &'a Trampoline,
    same_ids: bool,
) -> Result<Vec<(i32, i32, Remote)>> {
    let pi = bp.pi;
    let mm = pi.mm.as_ref().expect("validated");
    let pid = bp.pid;
    let inner = bp.inner;
    let b = &mut bp.b;
    for v in mm.vmas.iter().filter(|v| !space::is_special(v)) {
        if space::build_prot(v) != v.prot {
            b.call(nr::MPROTECT, &[v.start, v.end - v.start, v.prot as u64])?;
        }
        let advice = [
            (image::VMA_F_HUGEPAGE, libc::MADV_HUGEPAGE),
            (image::VMA_F_NOHUGEPAGE, libc::MADV_NOHUGEPAGE),
            (image::VMA_F_DONTFORK, libc::MADV_DONTFORK),
            (image::VMA_F_DONTDUMP, libc::MADV_DONTDUMP),
        ];
        for (bit, adv) in advice {
            if v.flags & bit != 0 {
                b.call(nr::MADVISE, &[v.start, v.end - v.start, adv as u64])?;
            }
        }
    }
    space::finish_process(b, &pi.p, mm)?;
    for rl in pi.p.rlimits.iter() {
        let lim = libc::rlimit64 {
            rlim_cur: rl.cur,
            rlim_max: rl.max,
        };
        // SAFETY: prlimit64 reads the live `lim`; the old-limit pointer is null.
        let r = unsafe {
            libc::prlimit64(
                pid,
                rl.resource as libc::__rlimit_resource_t,
                &lim,
                std::ptr::null_mut(),
            )
        };
        if r != 0 {
            return Err(Error::msg(format!(
                "cannot restore resource limit {} of pid {}: {}",
                rl.resource,
                pi.p.pid,
                std::io::Error::last_os_error()
            )));
        }
    }
    // Other threads: cloned from the main one with their own ids.
    let mut made = Vec::new();
    if pi.threads.len() > 1 {
        ptrace::set_options_clone(pid).ctx(|| format!("cannot trace the threads of pid {pid}"))?;
    }
    for t in pi.threads.iter().skip(1) {
        let (tid, inner_tid) = space::create_thread(b, t, same_ids)?;
        let r = Remote::new(tid, Gate::Trap(tramp.addr))?;
        let mut tb = Builder::new(r, pid, tramp);
        space::finish_thread(&mut tb, t, tid)?;
        space::queue_signals(&mut tb, inner, inner_tid, &t.pending)?;
        let regs = ptrace::regs_from_bytes(&t.regs).expect("validated");
        tb.r.set_final(space::restart_regs(regs), t.sigmask);
        made.push((pid, tid, tb.r));
    }
    let t = &pi.threads[0];
    space::finish_thread(b, t, pid)?;
    space::queue_signals(b, inner, 0, &pi.p.shared_pending)?;
    space::queue_signals(b, inner, inner, &t.pending)?;
    space::posix_timers(b, &pi.p)?;
    locks::take_posix(b, pi.p.pid, pi.fds.as_ref())?;
    restore_creds(b, &pi.p)?;
    // The last syscall unmaps the trampoline itself; stop at its exit.
    b.r.set_gate(Gate::Syscall(tramp.addr));
    b.call(nr::MUNMAP, &[tramp.addr, tramp.len])?;
    let regs = ptrace::regs_from_bytes(&t.regs).expect("validated");
    b.r.set_final(space::restart_regs(regs), t.sigmask);
    Ok(made)
}

/// Credentials last: after them the process may no longer be allowed to
/// do what the restore needs.
fn restore_creds(b: &mut Builder, p: &Process) -> Result<()> {
    let c = &p.creds;
    // SAFETY: getuid/getgid only read our own credentials.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let same_ids = [c.uid, c.euid, c.suid, c.fsuid].iter().all(|&x| x == uid)
        && [c.gid, c.egid, c.sgid, c.fsgid].iter().all(|&x| x == gid);
    if same_ids {
        return Ok(());
    }
    if !c.groups.is_empty() {
        let mut g = Vec::new();
        for x in c.groups.iter() {
            g.extend_from_slice(&x.to_le_bytes());
        }
        let at = b.put(&g)?;
        b.call(nr::SETGROUPS, &[c.groups.len() as u64, at])?;
    }
    b.call(nr::SETRESGID, &[c.gid as u64, c.egid as u64, c.sgid as u64])?;
    b.call(nr::SETRESUID, &[c.uid as u64, c.euid as u64, c.suid as u64])?;
    Ok(())
}

/// Waits for our child `pid` to exit, forwarding SIGINT, SIGTERM and SIGHUP
/// sent to us to `target` (the restored root); returns an exit code in the
/// shell's convention (128 + signal when it was killed).
pub fn wait_forwarding(pid: i32, target: i32) -> i32 {
    use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
    std::thread::spawn(move || {
        loop {
            match set.wait() {
                Ok(sig) => {
                    let _ = kill(Pid::from_raw(target), sig);
                }
                Err(_) => return,
            }
        }
    });
    loop {
        match nix::sys::wait::waitpid(Pid::from_raw(pid), None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => return c,
            Ok(nix::sys::wait::WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 1,
        }
    }
}
