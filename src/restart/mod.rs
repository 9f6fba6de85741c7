//! Rebuilding a process tree from an image: read the metadata, create each
//! process with `clone3` (with its original pid), let it place its own
//! descriptors, then rebuild its address space and state with remote
//! syscalls while page data streams in, verify the end of the stream, and
//! only then release the tree. Any failure before the release kills
//! everything that was built: restore is all or nothing.

pub mod child;
pub mod files;
pub mod ipc;
pub mod space;
pub mod spool;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
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
}

/// A restored, running tree.
#[derive(Debug)]
pub struct Restored {
    /// The root's pid (a child of the caller).
    pub pid: i32,
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
    m.procs
        .iter_mut()
        .find(|x| x.p.pid == pid)
        .ok_or_else(|| corrupt(format!("a record refers to process {pid}, which has no process record before it")))
}

/// Checks what the restorer relies on before touching anything.
fn validate(m: &Meta) -> Result<()> {
    if m.procs.is_empty() {
        return Err(corrupt("no process in the image".into()));
    }
    if m.procs.len() > 1 {
        return Err(Error::msg(format!(
            "cannot restore this image: it holds {} processes and this version restores one process",
            m.procs.len()
        )));
    }
    for pi in &m.procs {
        let pid = pi.p.pid;
        if pid == 0 || pid > 4_194_304 {
            return Err(corrupt(format!("impossible pid {pid}")));
        }
        let mm = pi
            .mm
            .as_ref()
            .ok_or_else(|| corrupt(format!("process {pid} has no memory record")))?;
        if pi.threads.len() != 1 {
            return Err(Error::msg(format!(
                "cannot restore process {pid}: it has {} threads and this version restores one",
                pi.threads.len()
            )));
        }
        if ptrace::regs_from_bytes(&pi.threads[0].regs).is_none() {
            return Err(corrupt(format!("registers of thread {} have the wrong size", pi.threads[0].tid)));
        }
        let mut last_end = 0;
        for v in mm.vmas.iter() {
            let bad = |why: &str| corrupt(format!("process {pid}: mapping {:#x}-{:#x} {why}", v.start, v.end));
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
                    return Err(corrupt(format!("process {pid}: descriptor {} refers to a missing file", fd.fd)));
                }
                if fd.fd > 1 << 20 {
                    return Err(corrupt(format!("process {pid}: impossible descriptor {}", fd.fd)));
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
            let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), Some(nix::sys::wait::WaitPidFlag::__WALL));
        }
    }
}

/// A process being built.
struct Building<'a> {
    pi: &'a ProcImage,
    pid: i32,
    b: Builder<'a>,
    /// (start, end) of mappings whose contents the image may carry.
    writable: Vec<(u64, u64)>,
}

/// Restores the image from `reader`; on success the tree runs.
pub fn restore<R: Read>(mut reader: Reader<R>, opts: &Options) -> Result<Restored> {
    let meta = read_meta(&mut reader)?;
    validate(&meta)?;
    let mut undo = Undo { pids: Vec::new() };
    let mut meta = meta;
    let first = meta.first_bulk.take();
    let mut spooled = None;
    if opts.original_pids {
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
                        return Err(Error::msg(format!("cannot restore pid {pid}: pid already in use")));
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
        let fd = nix::sys::memfd::memfd_create(c"crtools-shmem", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)
            .ctx(|| "cannot create shared memory".into())?;
        nix::unistd::ftruncate(&fd, s.size as i64).ctx(|| "cannot size shared memory".into())?;
        shm_fds.insert(s.id, fd);
    }

    let avoid: Vec<(u64, u64)> = meta
        .procs
        .iter()
        .flat_map(|pi| pi.mm.iter().flat_map(|mm| mm.vmas.iter().map(|v| (v.start, v.end))))
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

    let mut building: Vec<Building> = Vec::new();
    let mut pids = BTreeMap::new();
    for pi in &meta.procs {
        let pid = spawn(pi, &meta, opts, &mut open, &mut undo)?;
        pids.insert(pi.p.pid as i32, pid);
        let r = Remote::new(pid, Gate::Trap(tramp.addr))?;
        let mut b = Builder::new(r, pid, &tramp);
        b.unregister_rseq()?;
        let mm = pi.mm.as_ref().expect("validated");
        let want: Vec<_> = mm
            .vmas
            .iter()
            .filter(|v| matches!(v.backing, image::VMA_VDSO | image::VMA_VVAR | image::VMA_VVAR_VCLOCK))
            .collect();
        b.clear_space(&specials, &want)?;
        let writable = map_vmas(&mut b, mm, &shm_fds, &open)?;
        building.push(Building {
            pi,
            pid,
            b,
            writable,
        });
    }

    // Bulk data: page contents and file contents, streamed straight in.
    let mut next = if matches!(source, spool::Source::Spooled(_)) {
        source.next()?
    } else {
        first
    };
    let zeros = vec![0u8; image::CHUNK];
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
            return Err(corrupt(format!("a {} record after the page data began", rec.kind)));
        };
        match pre.space {
            image::SPACE_PROCESS => {
                let bp = building
                    .iter_mut()
                    .find(|x| x.pi.p.pid as u64 == pre.id)
                    .ok_or_else(|| corrupt(format!("pages for unknown process {}", pre.id)))?;
                let end = pre.addr.checked_add(data.len() as u64).unwrap_or(u64::MAX);
                if !bp.writable.iter().any(|&(s, e)| s <= pre.addr && end <= e) {
                    return Err(corrupt(format!(
                        "pages at {:#x}-{:#x} of process {} lie outside its mappings",
                        pre.addr, end, pre.id
                    )));
                }
                mem::write_all(bp.pid, pre.addr, data, &mut bp.b.mem)
                    .ctx(|| format!("cannot write memory of process {}", bp.pid))?;
            }
            image::SPACE_SHMEM => {
                let s = meta
                    .shmem
                    .get(&pre.id)
                    .ok_or_else(|| corrupt(format!("pages for unknown shared memory {}", pre.id)))?;
                if pre.addr.saturating_add(data.len() as u64) > s.size {
                    return Err(corrupt(format!("pages beyond the end of shared memory {}", pre.id)));
                }
                let f = std::fs::File::from(shm_fds[&pre.id].try_clone().ctx(|| "dup".into())?);
                f.write_all_at(data, pre.addr).ctx(|| "cannot fill shared memory".into())?;
            }
            image::SPACE_FILE => {
                let fd = open
                    .blob_target(pre.id)
                    .ok_or_else(|| corrupt(format!("contents for unknown file {}", pre.id)))?;
                let size = meta.files.get(&pre.id).map(|f| f.size).unwrap_or(0);
                if pre.addr.saturating_add(data.len() as u64) > size {
                    return Err(corrupt(format!("contents beyond the end of file {}", pre.id)));
                }
                nix::sys::uio::pwrite(
                    // SAFETY: fd is held open by `open` for the whole restore.
                    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
                    data,
                    pre.addr as i64,
                )
                .ctx(|| "cannot write the contents of a deleted file".into())?;
            }
            s => return Err(corrupt(format!("data for unknown space {s}"))),
        }
        next = source.next()?;
    }
    // reader.next_raw() returned None: the end record was read and matched.

    for bp in &mut building {
        finish(bp, &tramp)?;
    }
    // Release: every process at once.
    let mut deferred = Vec::new();
    for bp in building {
        let Building { pid, b, pi, .. } = bp;
        let sigs = b.r.finish()?;
        deferred.push((pid, sigs));
        let _ = pi;
    }
    for (pid, _) in &deferred {
        ptrace::detach(*pid, None).ctx(|| format!("cannot release process {pid}"))?;
    }
    for (pid, sigs) in &deferred {
        remote::redeliver(*pid, *pid, sigs);
    }
    let root = pids[&(meta.procs[0].p.pid as i32)];
    undo.pids.clear();
    drop(open);
    Ok(Restored { pid: root, pids })
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

/// Creates one process and lets it set up its descriptors; returns it
/// traced and stopped.
fn spawn(
    pi: &ProcImage,
    meta: &Meta,
    opts: &Options,
    open: &mut files::OpenFiles,
    undo: &mut Undo,
) -> Result<i32> {
    let p = &pi.p;
    let mut plan = child::ChildPlan {
        umask: p.umask,
        setsid: p.sid == p.pid,
        setpgid: p.pgid == p.pid,
        ..Default::default()
    };
    let external = |f: &File, target: u32| -> Result<OwnedFd> { connect_external(f, target, opts) };
    let mut targets = Vec::new();
    if let Some(t) = &pi.fds {
        for fd in t.fds.iter() {
            let f = &meta.files[&fd.file_id];
            let src = open.open(f, fd.fd, &external).map_err(|e| {
                Error::msg(format!("cannot restore descriptor {} of pid {}: {e}", fd.fd, p.pid))
            })?;
            plan.fds.push((fd.fd as RawFd, src, fd.cloexec));
            targets.push(fd.fd);
        }
    }
    let cwd = files::open_dir(if p.cwd.is_empty() { b"/" } else { &p.cwd })?;
    plan.cwd = Some(cwd.as_raw_fd());
    let root_fd = if !p.root.is_empty() && p.root != b"/" {
        Some(files::open_dir(&p.root)?)
    } else {
        None
    };
    plan.root = root_fd.as_ref().map(|f| f.as_raw_fd());
    let (sync_rd, sync_wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "pipe".into())?;
    let (err_rd, err_wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "pipe".into())?;
    plan.sync_rd = sync_rd.as_raw_fd();
    plan.sync_wr = sync_wr.as_raw_fd();
    plan.err_wr = err_wr.as_raw_fd();
    // Close everything that is not a target.
    targets.sort_unstable();
    let mut lo = 0u32;
    for t in targets {
        if t > lo {
            plan.close.push((lo, t - 1));
        }
        lo = t + 1;
    }
    plan.close.push((lo, u32::MAX));

    let want = opts.original_pids.then_some(p.pid as i32);
    let deadline = Instant::now() + opts.pid_wait;
    let pid = loop {
        // SAFETY: the child runs only `child_main`, which makes raw
        // async-signal-safe syscalls on the prepared plan and never returns.
        match unsafe { fork_with_pid(want, 0, libc::SIGCHLD) } {
            Ok(Forked::Child) => child::child_main(&plan),
            Ok(Forked::Parent(pid)) => break pid,
            Err(nix::errno::Errno::EEXIST) => {
                if Instant::now() < deadline && pid_is_dying(p.pid as i32) {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                return Err(Error::msg(format!("cannot restore pid {}: pid already in use", p.pid)));
            }
            Err(e) => return Err(Error::msg(format!("cannot restore pid {}: clone3: {e}", p.pid))),
        }
    };
    undo.pids.push(pid);
    drop(sync_rd);
    drop(err_wr);
    ptrace::seize(pid, true).ctx(|| format!("cannot trace new process {pid}"))?;
    nix::unistd::write(&sync_wr, &[1]).ctx(|| "cannot start the new process".into())?;
    drop(sync_wr);
    match ptrace::wait(pid).ctx(|| format!("waiting for new process {pid}"))? {
        Stop::Signal(s) if s == libc::SIGSTOP => Ok(pid),
        Stop::Exited(_) | Stop::Killed(_) => {
            undo.pids.retain(|&x| x != pid);
            let f = std::fs::File::from(err_rd);
            let mut buf = [0u8; 4];
            let got = (&f).read(&mut buf).unwrap_or(0);
            if got >= 3 {
                let errno = nix::errno::Errno::from_raw(buf[1] as i32 | (buf[2] as i32) << 8);
                return Err(Error::msg(format!(
                    "cannot restore pid {}: the new process failed while {}: {errno}",
                    p.pid,
                    child::Step::from_u8(buf[0])
                )));
            }
            Err(Error::msg(format!("cannot restore pid {}: the new process exited early", p.pid)))
        }
        other => Err(Error::msg(format!(
            "cannot restore pid {}: unexpected first stop {other:?}",
            p.pid
        ))),
    }
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
    let src = opts.fd_map.iter().find(|(t, _)| *t == target).map(|(_, s)| s.clone());
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
            let raw = nix::unistd::dup(fd).ctx(|| format!("cannot use descriptor {fd} of cr-restart for descriptor {target}"))?;
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
            let file = o.open(&p).ctx(|| format!("cannot open {} for descriptor {target}", p.display()))?;
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
) -> Result<Vec<(u64, u64)>> {
    let me = std::process::id();
    let mut remote_fds: HashMap<(Vec<u8>, bool), u64> = HashMap::new();
    let mut writable = Vec::new();
    for v in mm.vmas.iter().filter(|v| !space::is_special(v)) {
        let prot = space::build_prot(v) as u64;
        let shared = v.flags & image::VMA_F_SHARED != 0;
        let mut flags = libc::MAP_FIXED as u64
            | if shared { libc::MAP_SHARED } else { libc::MAP_PRIVATE } as u64;
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
                } else if let Some(fd) = (v.file_id != 0).then(|| open.blob_target(v.file_id)).flatten()
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
        b.call(nr::MMAP, &[v.start, len, prot, flags, fd, off]).map_err(|e| {
            Error::msg(format!("cannot map {:#x}-{:#x} in pid {}: {e}", v.start, v.end, b.pid))
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
/// state, credentials, registers; ends with the trampoline unmapped and the
/// thread stopped at its final registers.
fn finish(bp: &mut Building, tramp: &Trampoline) -> Result<()> {
    let pi = bp.pi;
    let mm = pi.mm.as_ref().expect("validated");
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
            libc::prlimit64(bp.pid, rl.resource as libc::__rlimit_resource_t, &lim, std::ptr::null_mut())
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
    let t = &pi.threads[0];
    space::finish_thread(b, t)?;
    restore_creds(b, &pi.p)?;
    // The last syscall unmaps the trampoline itself; stop at its exit.
    b.r.set_gate(Gate::Syscall(tramp.addr));
    b.call(nr::MUNMAP, &[tramp.addr, tramp.len])?;
    let regs = ptrace::regs_from_bytes(&t.regs).expect("validated");
    b.r.set_final(space::restart_regs(regs), t.sigmask);
    Ok(())
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

/// Waits for the restored root to exit, forwarding SIGINT, SIGTERM and
/// SIGHUP sent to us; returns an exit code in the shell's convention
/// (128 + signal when it was killed).
pub fn wait_forwarding(pid: i32) -> i32 {
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
                    let _ = kill(Pid::from_raw(pid), sig);
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
