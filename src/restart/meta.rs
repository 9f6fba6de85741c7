//! Reading an image's metadata and validating it, once: [`Meta`] can only
//! be made by [`Meta::validate`], so code that holds one indexes nothing
//! that could be missing. Every process has a resolved parent, every live
//! process its memory record and a main thread with registers of the right
//! size, every descriptor its file, every shared mapping its object; pids,
//! thread ids, group and session ids are in range. Fields holding a closed
//! set of values (`image::kinds`) are decoded here, once: a file's type and
//! its locks' kinds ([`FileImage`]), a process's state ([`Live::state`]),
//! each mapping's backing ([`VmaImage`]), each Unix socket's type
//! ([`SocketImage`]), each TCP or UDP socket's type and family
//! ([`InetImage`]), each pending signal ([`Siginfo`]). An unknown value is
//! a [`Fault::Unknown`]. Every object a `FILE` refers to (pipe, pty, TCP
//! or UDP socket, Unix socket with its peer, listener and pending
//! connections, event state, shared memory object, queue, pidfd's
//! process) is looked up here ([`check_objects`]), so a missing or
//! malformed one is a [`Fault`] before anything is made.
//!
//! Pure code: no syscalls (the fuzz target `plan` runs it on any bytes).
//! What the restorer's own privileges allow is checked separately, by
//! [`check_privilege`].

use std::collections::HashMap;
use std::io::Read;

use crate::error::{Error, Result};
use crate::image::{
    self, Backing, Fault, FdTable, File, FileType, InetFamily, InetType, Kind, MappingFault, Mm,
    ProcState, Process, RawRecord, Reader, Shmem, SockType, Thread, Vma,
};
use crate::sys::ids::{Pid, Tid};
use crate::sys::ptrace::{self, Regs};

use super::ipc;
use super::space::{PAGE, TASK_SIZE};

/// The largest pid Linux hands out (`PID_MAX_LIMIT` on 64-bit).
pub const PID_MAX: u32 = 4_194_304;
/// The most threads one process of an image may have.
pub const MAX_THREADS: usize = 4096;
/// The largest descriptor number an image may use.
pub const MAX_FD: u32 = 1 << 20;

/// The metadata records as read, before validation.
#[derive(Default)]
pub struct RawMeta {
    procs: Vec<RawProc>,
    files: HashMap<u64, File>,
    shmem: HashMap<u64, Shmem>,
    posix_shm: HashMap<u64, image::PosixShm>,
    mqueues: HashMap<u64, image::PosixMqueue>,
    pipes: HashMap<u64, image::Pipe>,
    sockets: HashMap<u64, image::Socket>,
    inet: HashMap<u64, image::InetSocket>,
    ptys: HashMap<u64, image::Pty>,
    events: HashMap<u64, image::EventFile>,
    ipc: ipc::IpcRestore,
    /// The first bulk-data record, read to find the end of the metadata.
    first_bulk: Option<RawRecord>,
    carried: super::carry::Carried,
    /// `ckpt --live`: the pre-copy rounds, before the metadata.
    staged: super::precopy::Staging,
}

#[derive(Default)]
struct RawProc {
    p: Process,
    threads: Vec<Thread>,
    mm: Option<Mm>,
    fds: Option<FdTable>,
}

/// Reads the metadata records of an image, up to its first bulk record.
pub fn read<R: Read>(reader: &mut Reader<R>) -> Result<RawMeta> {
    if reader.header().flags & crate::image::HDR_DELTA != 0 {
        return Err(Error::msg(
            "this image is a delta (made by cr-delta --base): rebuild the full image first with cr-delta --apply BASE",
        ));
    }
    let mut m = RawMeta::default();
    let mut in_meta = false;
    while let Some(raw) = reader.next_raw()? {
        let kind = raw.head.kind;
        if matches!(
            kind,
            Kind::PAGES | Kind::ZERO | Kind::BLOB | Kind::FORK_PAGES
        ) {
            m.staged.check_closed()?;
            m.first_bulk = Some(raw);
            break;
        }
        let rec = raw.decode()?;
        if matches!(kind, Kind::PRECOPY | Kind::PRECOPY_ROUND) {
            if in_meta {
                return Err(Fault::PrecopyAfterMeta { seq: rec.seq, kind }.into());
            }
            if kind == Kind::PRECOPY {
                m.staged.add(&rec)?;
            } else {
                m.staged.end_round(&rec.decode()?)?;
            }
            continue;
        }
        if !in_meta {
            m.staged.check_closed()?;
            in_meta = true;
        }
        match kind {
            Kind::PROCESS => {
                let p: Process = rec.decode()?;
                if m.procs.iter().any(|x| x.p.pid == p.pid) {
                    return Err(Fault::DuplicateProcess { pid: p.pid }.into());
                }
                m.procs.push(RawProc {
                    p,
                    ..Default::default()
                });
            }
            Kind::THREAD => {
                let t: Thread = rec.decode()?;
                m.proc_of(kind, t.pid)?.threads.push(t);
            }
            Kind::MM => {
                let mm: Mm = rec.decode()?;
                let pid = mm.pid;
                m.proc_of(kind, pid)?.mm = Some(mm);
            }
            Kind::FDTABLE => {
                let t: FdTable = rec.decode()?;
                let pid = t.pid;
                m.proc_of(kind, pid)?.fds = Some(t);
            }
            Kind::FILE => {
                let f: File = rec.decode()?;
                m.files.insert(f.id, f);
            }
            Kind::SHMEM => {
                let s: Shmem = rec.decode()?;
                m.shmem.insert(s.id, s);
            }
            Kind::POSIX_SHM => {
                let s: image::PosixShm = rec.decode()?;
                m.posix_shm.insert(s.id, s);
            }
            Kind::MQUEUE => {
                let q: image::PosixMqueue = rec.decode()?;
                m.mqueues.insert(q.id, q);
            }
            Kind::PIPE => {
                let p: image::Pipe = rec.decode()?;
                m.pipes.insert(p.id, p);
            }
            Kind::INET => {
                let s: image::InetSocket = rec.decode()?;
                m.inet.insert(s.id, s);
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
            Kind::CARRY_FILE => m.carried.add_file(rec.decode()?)?,
            Kind::CARRY_DATA => m.carried.add_data(rec.seq, &rec.payload)?,
            Kind::EVENT => {
                let e: image::EventFile = rec.decode()?;
                m.events.insert(e.file_id, e);
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

impl RawMeta {
    fn proc_of(&mut self, kind: Kind, pid: u32) -> Result<&mut RawProc> {
        self.procs
            .iter_mut()
            .find(|x| x.p.pid == pid)
            .ok_or(Error::Invalid(Fault::NoProcessFor { kind, pid }))
    }
}

/// A thread of a live process, its registers and pending signals decoded.
#[derive(Debug)]
pub struct ThreadImage {
    pub t: Thread,
    pub regs: Regs,
    /// Its own pending signals (the record's `pending`).
    pub pending: Vec<Siginfo>,
}

/// A pending signal: its number (1 to 64) and its raw `siginfo_t`.
#[derive(Debug, Clone)]
pub struct Siginfo {
    pub signo: i32,
    pub raw: [u8; 128],
}

/// Decodes the raw `siginfo_t`s of process `pid`'s pending signals.
fn siginfos(pid: u32, raw: &[Vec<u8>]) -> std::result::Result<Vec<Siginfo>, Fault> {
    raw.iter()
        .map(|info| {
            let raw: [u8; 128] = info
                .as_slice()
                .try_into()
                .map_err(|_| Fault::SignalMalformed { pid })?;
            let signo = i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
            if !(1..=64).contains(&signo) {
                return Err(Fault::PendingSignal { pid, signal: signo });
            }
            Ok(Siginfo { signo, raw })
        })
        .collect()
}

impl ThreadImage {
    /// Its thread id in the image.
    pub fn tid(&self) -> Tid {
        Tid::from_u32(self.t.tid)
    }
}

/// A `FILE` of a validated image: its type and its locks' kinds decoded
/// (the record's own fields through `Deref`).
#[derive(Debug, Clone)]
pub struct FileImage {
    pub kind: FileType,
    /// Its OFD and `flock` locks (the record's `locks`), each with its kind.
    pub locks: Vec<(super::locks::FileLock, image::Lock)>,
    pub f: File,
}

impl std::ops::Deref for FileImage {
    type Target = File;
    fn deref(&self) -> &File {
        &self.f
    }
}

impl std::ops::DerefMut for FileImage {
    fn deref_mut(&mut self) -> &mut File {
        &mut self.f
    }
}

impl FileImage {
    /// Decodes a `FILE` record's type and lock kinds, and checks its locks.
    pub fn new(f: File) -> std::result::Result<FileImage, Fault> {
        let kind = FileType::from_wire(f.ftype).ok_or(Fault::Unknown {
            record: Kind::FILE,
            id: f.id,
            field: FileType::WHAT,
            value: f.ftype.into(),
        })?;
        let locks = super::locks::check_file_locks(&f)?;
        Ok(FileImage { kind, locks, f })
    }
}

/// A mapping of a validated image: its backing decoded (the record's own
/// fields through `Deref`; the record's raw `backing` is shadowed).
#[derive(Debug, Clone)]
pub struct VmaImage {
    pub backing: Backing,
    pub v: Vma,
}

impl std::ops::Deref for VmaImage {
    type Target = Vma;
    fn deref(&self) -> &Vma {
        &self.v
    }
}

impl std::ops::DerefMut for VmaImage {
    fn deref_mut(&mut self) -> &mut Vma {
        &mut self.v
    }
}

impl VmaImage {
    /// The same mapping over `[start, end)` (a part of it).
    pub fn part(&self, start: u64, end: u64) -> VmaImage {
        VmaImage {
            backing: self.backing,
            v: Vma {
                start,
                end,
                ..self.v.clone()
            },
        }
    }
}

/// The `MM` of a validated image: its mappings with their backings
/// decoded in [`MmImage::vmas`]; the record's other fields through
/// `Deref` (the record's own `vmas` were moved out: pass an `MmImage`,
/// not the `Mm` behind it, to code that reads mappings).
#[derive(Debug)]
pub struct MmImage {
    pub vmas: Vec<VmaImage>,
    mm: Mm,
}

impl std::ops::Deref for MmImage {
    type Target = Mm;
    fn deref(&self) -> &Mm {
        &self.mm
    }
}

/// A `SOCKET` (Unix socket) record of a validated image: its type decoded
/// (the record's own fields through `Deref`; its raw `stype` is shadowed).
#[derive(Debug, Clone)]
pub struct SocketImage {
    pub stype: SockType,
    pub s: image::Socket,
}

impl std::ops::Deref for SocketImage {
    type Target = image::Socket;
    fn deref(&self) -> &image::Socket {
        &self.s
    }
}

impl SocketImage {
    /// Decodes a `SOCKET` record's type.
    pub fn new(s: image::Socket) -> std::result::Result<SocketImage, Fault> {
        let stype = SockType::from_wire(s.stype).ok_or(Fault::Unknown {
            record: Kind::SOCKET,
            id: s.id,
            field: SockType::WHAT,
            value: s.stype.into(),
        })?;
        Ok(SocketImage { stype, s })
    }
}

/// An `INET` (TCP or UDP socket) record of a validated image: its type and
/// family decoded (the record's own fields through `Deref`; its raw
/// `stype` and `family` are shadowed).
#[derive(Debug, Clone)]
pub struct InetImage {
    pub proto: InetType,
    pub family: InetFamily,
    /// An established connection kept in repair mode (the record's
    /// `repair`): its local and peer addresses.
    pub established: Option<(std::net::SocketAddr, std::net::SocketAddr)>,
    pub s: image::InetSocket,
}

impl std::ops::Deref for InetImage {
    type Target = image::InetSocket;
    fn deref(&self) -> &image::InetSocket {
        &self.s
    }
}

impl InetImage {
    /// Decodes an `INET` record's type and family; an established
    /// connection must have both addresses.
    pub fn new(s: image::InetSocket) -> std::result::Result<InetImage, Fault> {
        let unknown = |field, value: u32| Fault::Unknown {
            record: Kind::INET,
            id: s.id,
            field,
            value: value.into(),
        };
        let proto = InetType::from_wire(s.stype).ok_or(unknown(InetType::WHAT, s.stype))?;
        let family = InetFamily::from_wire(s.family).ok_or(unknown(InetFamily::WHAT, s.family))?;
        let established = if s.repair {
            let local = super::inet::addr(&s.local_addr, s.local_port, s.scope_id);
            let peer = super::inet::addr(&s.peer_addr, s.peer_port, 0);
            let (Some(local), Some(peer)) = (local, peer) else {
                return Err(Fault::Inet {
                    id: s.id,
                    why: "an established connection without its addresses",
                });
            };
            Some((local, peer))
        } else {
            None
        };
        Ok(InetImage {
            proto,
            family,
            established,
            s,
        })
    }
}

/// A descriptor of a live process with its file.
#[derive(Debug)]
pub struct FdImage {
    pub fd: u32,
    pub cloexec: bool,
    pub file: FileImage,
}

/// A live process of a validated image.
#[derive(Debug)]
pub struct Live {
    pub p: Process,
    /// Its state, decoded: running or stopped (zombies are [`Zombie`]s).
    pub state: ProcState,
    /// Index of its parent in [`Meta::live`]; `None` for the root.
    pub parent: Option<usize>,
    pub mm: MmImage,
    /// Its shared (process-wide) pending signals (the record's
    /// `shared_pending`).
    pub shared_pending: Vec<Siginfo>,
    /// The main thread (tid = pid) first; never empty.
    pub threads: Vec<ThreadImage>,
    pub fds: Vec<FdImage>,
    /// POSIX record locks it owns, each on one of its descriptors.
    pub locks: Vec<image::Lock>,
}

impl Live {
    /// Its pid in the image.
    pub fn pid(&self) -> Pid {
        Pid::from_u32(self.p.pid)
    }
    /// The main thread.
    pub fn main_thread(&self) -> &ThreadImage {
        // Construction (`Meta::validate`) puts the main thread first.
        &self.threads[0]
    }
}

/// A zombie of a validated image.
#[derive(Debug)]
pub struct Zombie {
    pub p: Process,
    /// Index of its parent in [`Meta::live`].
    pub parent: usize,
}

/// One process in image order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Member {
    Live(usize),
    Zombie(usize),
}

/// Validated metadata: made only by [`Meta::validate`].
pub struct Meta {
    live: Vec<Live>,
    zombies: Vec<Zombie>,
    /// Every process in image order.
    order: Vec<Member>,
    files: HashMap<u64, FileImage>,
    shmem: HashMap<u64, Shmem>,
    posix_shm: HashMap<u64, image::PosixShm>,
    mqueues: HashMap<u64, image::PosixMqueue>,
    pipes: HashMap<u64, image::Pipe>,
    sockets: HashMap<u64, SocketImage>,
    inet: HashMap<u64, InetImage>,
    ptys: HashMap<u64, image::Pty>,
    events: HashMap<u64, image::EventFile>,
    ipc: ipc::IpcRestore,
    first_bulk: Option<RawRecord>,
    carried: super::carry::Carried,
    staged: super::precopy::Staging,
}

fn pid_ok(pid: u32) -> bool {
    pid != 0 && pid <= PID_MAX
}

/// A process's ids in range: its pid, group, session and terminal's
/// group, and its exit signal.
fn check_ids(p: &image::Process) -> std::result::Result<(), Fault> {
    let pid = p.pid;
    if !pid_ok(pid) {
        return Err(Fault::Pid { pid });
    }
    for (field, value) in [("pgid", p.pgid), ("sid", p.sid), ("tty_pgrp", p.tty_pgrp)] {
        // 0: outside the image's pid namespace (or no terminal).
        if value > PID_MAX {
            return Err(Fault::GroupId { pid, field, value });
        }
    }
    if p.exit_signal > 64 {
        return Err(Fault::ExitSignal {
            pid,
            signal: p.exit_signal,
        });
    }
    Ok(())
}

/// A process's state, decoded.
fn proc_state(p: &image::Process) -> std::result::Result<ProcState, Fault> {
    ProcState::from_wire(p.state).ok_or(Fault::Unknown {
        record: Kind::PROCESS,
        id: p.pid.into(),
        field: ProcState::WHAT,
        value: p.state.into(),
    })
}

/// A thread with its registers and pending signals decoded and its id in
/// range.
fn thread_image(t: image::Thread) -> std::result::Result<ThreadImage, Fault> {
    let regs = ptrace::regs_from_bytes(&t.regs).ok_or(Fault::RegsSize { tid: t.tid })?;
    if !pid_ok(t.tid) {
        return Err(Fault::Tid { tid: t.tid });
    }
    let pending = siginfos(t.pid, &t.pending)?;
    Ok(ThreadImage { t, regs, pending })
}

/// The error for an object of file `f` that a lookup after validation did
/// not find: [`check_objects`] makes sure every one is there, so this is a
/// bug of the restorer, not of the image.
pub(super) fn unresolved(f: &File) -> Error {
    Error::msg(format!(
        "internal error: {} (file {}) lost its object {} after validation",
        String::from_utf8_lossy(&f.link),
        f.id,
        f.object_id
    ))
}

/// The objects `FILE`s refer to (part of [`Meta::validate`]): each pipe,
/// pty, TCP or UDP socket and Unix socket file has its record, and each
/// kind's own check (`events`, `memfd`, `posixshm`, `mqueue`, `tty`,
/// `unix`) passes.
#[allow(clippy::too_many_arguments)]
fn check_objects(
    files: &HashMap<u64, FileImage>,
    pipes: &HashMap<u64, image::Pipe>,
    ptys: &HashMap<u64, image::Pty>,
    inet: &HashMap<u64, InetImage>,
    sockets: &HashMap<u64, SocketImage>,
    events: &HashMap<u64, image::EventFile>,
    shmem: &HashMap<u64, Shmem>,
    posix_shm: &HashMap<u64, image::PosixShm>,
    mqueues: &HashMap<u64, image::PosixMqueue>,
) -> std::result::Result<(), Fault> {
    for f in files.values() {
        let has = |object: Kind, found: bool| {
            if found {
                return Ok(());
            }
            Err(Fault::MissingObject {
                file_id: f.id,
                link: String::from_utf8_lossy(&f.link).into_owned(),
                object,
                object_id: f.object_id,
            })
        };
        let id = &f.object_id;
        match f.kind {
            FileType::Pipe | FileType::Fifo => has(Kind::PIPE, pipes.contains_key(id))?,
            FileType::PtyMaster | FileType::PtySlave => has(Kind::PTY, ptys.contains_key(id))?,
            FileType::Inet => has(Kind::INET, inet.contains_key(id))?,
            FileType::Socket => has(Kind::SOCKET, sockets.contains_key(id))?,
            FileType::Regular
            | FileType::Directory
            | FileType::CharDev
            | FileType::BlockDev
            | FileType::Memfd
            | FileType::Eventfd
            | FileType::Epoll
            | FileType::Signalfd
            | FileType::Timerfd
            | FileType::Inotify
            | FileType::External
            | FileType::PosixShm
            | FileType::Mqueue
            | FileType::Pidfd => {}
        }
    }
    super::tty::check(files, ptys)?;
    super::unix::check(files, sockets)?;
    super::events::check(files, events)?;
    super::memfd::check(files, shmem)?;
    super::posixshm::check(files, shmem, posix_shm)?;
    super::mqueue::check(files, mqueues)
}

/// A process's descriptors with their files resolved, in image order.
fn resolve_fds(
    pid: u32,
    table: Option<&image::FdTable>,
    files: &HashMap<u64, FileImage>,
) -> std::result::Result<Vec<FdImage>, Fault> {
    let mut fds = Vec::new();
    for fd in table.iter().flat_map(|t| t.fds.iter()) {
        let file = files
            .get(&fd.file_id)
            .ok_or(Fault::MissingFile { pid, fd: fd.fd })?;
        if fd.fd > MAX_FD {
            return Err(Fault::Fd { pid, fd: fd.fd });
        }
        fds.push(FdImage {
            fd: fd.fd,
            cloexec: fd.cloexec,
            file: file.clone(),
        });
    }
    Ok(fds)
}

impl Meta {
    /// Checks everything the restorer relies on and resolves every
    /// reference; the one way to make a [`Meta`].
    pub fn validate(raw: RawMeta) -> std::result::Result<Meta, Fault> {
        let RawMeta {
            procs,
            files,
            shmem,
            posix_shm,
            mqueues,
            pipes,
            sockets,
            inet,
            ptys,
            events,
            ipc,
            first_bulk,
            carried,
            staged,
        } = raw;
        let states = procs
            .iter()
            .map(|pi| proc_state(&pi.p))
            .collect::<std::result::Result<Vec<_>, Fault>>()?;
        let files = files
            .into_iter()
            .map(|(id, f)| Ok((id, FileImage::new(f)?)))
            .collect::<std::result::Result<HashMap<_, _>, Fault>>()?;
        let sockets = sockets
            .into_iter()
            .map(|(id, s)| Ok((id, SocketImage::new(s)?)))
            .collect::<std::result::Result<HashMap<_, _>, Fault>>()?;
        let inet = inet
            .into_iter()
            .map(|(id, s)| Ok((id, InetImage::new(s)?)))
            .collect::<std::result::Result<HashMap<_, _>, Fault>>()?;
        let root = procs
            .iter()
            .zip(&states)
            .find(|(_, s)| **s != ProcState::Zombie)
            .map(|(pi, _)| pi)
            .ok_or(Fault::NoLiveProcess)?;
        match (procs.first(), states.first()) {
            (Some(first), Some(&s)) if first.p.ppid == 0 && s != ProcState::Zombie => {}
            _ => return Err(Fault::FirstNotRoot { pid: root.p.pid }),
        }
        let sysv: Vec<u64> = ipc.segments().iter().map(|s| s.id as u64).collect();
        let mut live: Vec<Live> = Vec::new();
        let mut zombies = Vec::new();
        let mut order = Vec::new();
        // image pid -> index in `live`, for the processes seen so far.
        let mut index: HashMap<u32, usize> = HashMap::new();
        for (i, (pi, state)) in procs.into_iter().zip(states).enumerate() {
            let p = &pi.p;
            let pid = p.pid;
            check_ids(p)?;
            let parent = if i == 0 {
                None
            } else {
                Some(
                    *index
                        .get(&p.ppid)
                        .ok_or(Fault::ParentAfter { pid, ppid: p.ppid })?,
                )
            };
            if state == ProcState::Zombie {
                if !pi.threads.is_empty() || pi.mm.is_some() {
                    return Err(Fault::ZombieBody { pid });
                }
                let Some(parent) = parent else {
                    return Err(Fault::FirstNotRoot { pid });
                };
                order.push(Member::Zombie(zombies.len()));
                zombies.push(Zombie { p: pi.p, parent });
                continue;
            }
            let parent = parent.map(|j| (j, &live[j].mm));
            let l = live_process(pi, state, parent, &shmem, &sysv, &staged, &files)?;
            index.insert(pid, live.len());
            order.push(Member::Live(live.len()));
            live.push(l);
        }
        check_objects(
            &files, &pipes, &ptys, &inet, &sockets, &events, &shmem, &posix_shm, &mqueues,
        )?;
        let pids: std::collections::HashSet<u32> = order
            .iter()
            .map(|&m| match m {
                Member::Live(i) => live[i].p.pid,
                Member::Zombie(i) => zombies[i].p.pid,
            })
            .collect();
        super::pidfd::check(files.values(), &pids)?;
        Ok(Meta {
            live,
            zombies,
            order,
            files,
            shmem,
            posix_shm,
            mqueues,
            pipes,
            sockets,
            inet,
            ptys,
            events,
            ipc,
            first_bulk,
            carried,
            staged,
        })
    }

    /// The pre-copied pages (`ckpt --live`), staged while read; taken
    /// once, for the bulk data.
    pub fn take_staged(&mut self) -> super::precopy::Staging {
        std::mem::take(&mut self.staged)
    }

    /// The live processes, root first, each after its parent.
    pub fn live(&self) -> &[Live] {
        &self.live
    }
    /// The root of the tree.
    pub fn root(&self) -> &Live {
        // `validate` refuses an image whose first process is not live.
        &self.live[0]
    }
    pub fn zombies(&self) -> &[Zombie] {
        &self.zombies
    }
    /// Every process in image order.
    pub fn order(&self) -> &[Member] {
        &self.order
    }
    /// The process record of a member.
    pub fn process(&self, m: Member) -> &Process {
        match m {
            Member::Live(i) => &self.live[i].p,
            Member::Zombie(i) => &self.zombies[i].p,
        }
    }
    /// How many processes, zombies included.
    pub fn len(&self) -> usize {
        self.order.len()
    }
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
    /// The descriptor numbers at which some process of the image has a
    /// descriptor leading outside it (what `--fd` may reconnect), sorted.
    pub fn external_fds(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .live
            .iter()
            .flat_map(|pi| pi.fds.iter())
            .filter(|d| d.file.kind == FileType::External)
            .map(|d| d.fd)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
    pub fn files(&self) -> &HashMap<u64, FileImage> {
        &self.files
    }
    pub fn shmem(&self) -> &HashMap<u64, Shmem> {
        &self.shmem
    }
    /// Files of `/dev/shm`, by their `SHMEM` object's id.
    pub fn posix_shm(&self) -> &HashMap<u64, image::PosixShm> {
        &self.posix_shm
    }
    /// POSIX message queues, by id.
    pub fn mqueues(&self) -> &HashMap<u64, image::PosixMqueue> {
        &self.mqueues
    }
    pub fn pipes(&self) -> &HashMap<u64, image::Pipe> {
        &self.pipes
    }
    /// TCP and UDP sockets, by id.
    pub fn inet(&self) -> &HashMap<u64, InetImage> {
        &self.inet
    }

    pub fn sockets(&self) -> &HashMap<u64, SocketImage> {
        &self.sockets
    }
    pub fn ptys(&self) -> &HashMap<u64, image::Pty> {
        &self.ptys
    }
    /// The state of event files (eventfd, epoll, ...), by file id.
    pub fn events(&self) -> &HashMap<u64, image::EventFile> {
        &self.events
    }
    /// The SysV IPC objects, taken out to be created.
    pub fn take_ipc(&mut self) -> ipc::IpcRestore {
        std::mem::take(&mut self.ipc)
    }
    /// The first bulk-data record, read while looking for the end of the
    /// metadata.
    pub fn take_first_bulk(&mut self) -> Option<RawRecord> {
        self.first_bulk.take()
    }
    /// The carried files (`restart/carry.rs`), taken out while paths are
    /// decided and put back to be held open for the restore.
    pub fn take_carried(&mut self) -> super::carry::Carried {
        std::mem::take(&mut self.carried)
    }
    pub fn put_carried(&mut self, c: super::carry::Carried) {
        self.carried = c;
    }
    pub fn carried(&self) -> &super::carry::Carried {
        &self.carried
    }
    /// Calls `f` with every path of a file this host must have: regular
    /// files that were not deleted (in `files` and in each descriptor),
    /// then mapped files, then executables; `f` may rewrite them.
    pub fn for_each_path(&mut self, mut f: impl FnMut(PathUse, &mut Vec<u8>)) {
        let regular = |x: &FileImage| x.kind == FileType::Regular && !x.deleted;
        let fds = self.live.iter_mut().flat_map(|pi| pi.fds.iter_mut());
        for x in self.files.values_mut().chain(fds.map(|d| &mut d.file)) {
            if regular(x) {
                let writable = x.flags as i32 & libc::O_ACCMODE != libc::O_RDONLY;
                f(PathUse::File { writable }, &mut x.path);
            }
        }
        for pi in &mut self.live {
            for v in pi.mm.vmas.iter_mut() {
                if v.backing == Backing::File && v.file_id == 0 {
                    f(PathUse::Mapping, &mut v.path);
                }
            }
        }
        for pi in &mut self.live {
            if !pi.p.exe.is_empty() {
                f(PathUse::Exe, &mut pi.p.exe);
            }
        }
    }
}

/// Where a path of [`Meta::for_each_path`] is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathUse {
    /// Held open, for writing or not.
    File {
        writable: bool,
    },
    Mapping,
    Exe,
}

/// A live process's records checked and decoded: its memory (mappings,
/// ranges inherited from its parent, pre-copied pages), its threads, its
/// descriptors and their locks. `parent`: its index and memory.
fn live_process(
    pi: RawProc,
    state: ProcState,
    parent: Option<(usize, &MmImage)>,
    shmem: &HashMap<u64, Shmem>,
    sysv: &[u64],
    staged: &super::precopy::Staging,
    files: &HashMap<u64, FileImage>,
) -> std::result::Result<Live, Fault> {
    let pid = pi.p.pid;
    let mm = pi.mm.ok_or(Fault::NoMemory { pid })?;
    if pi.threads.first().is_none_or(|t| t.tid != pid) {
        return Err(Fault::NoMainThread { pid });
    }
    if pi.threads.len() > MAX_THREADS {
        return Err(Fault::TooManyThreads {
            pid,
            count: pi.threads.len(),
        });
    }
    let threads = pi
        .threads
        .into_iter()
        .map(thread_image)
        .collect::<std::result::Result<Vec<_>, Fault>>()?;
    let mm = check_vmas(pid, mm, shmem, sysv)?;
    check_inherited(pid, &mm, parent.map(|(_, m)| m))?;
    if !mm.precopied.is_empty() {
        let with_contents: Vec<(u64, u64)> = mm
            .vmas
            .iter()
            .filter(|v| v.dumped_pages > 0 && v.flags & image::VMA_F_SHARED == 0)
            .map(|v| (v.start, v.end))
            .collect();
        staged.check(pid, &mm.precopied, &with_contents)?;
    }
    let shared_pending = siginfos(pid, &pi.p.shared_pending)?;
    let fds = resolve_fds(pid, pi.fds.as_ref(), files)?;
    let locks = pi.fds.map(|t| t.locks.0).unwrap_or_default();
    super::locks::check_posix_locks(pid, &locks, &fds)?;
    Ok(Live {
        p: pi.p,
        state,
        parent: parent.map(|(j, _)| j),
        mm,
        shared_pending,
        threads,
        fds,
        locks,
    })
}

/// Checks a process's mappings and decodes their backings.
fn check_vmas(
    pid: u32,
    mut mm: Mm,
    shmem: &HashMap<u64, Shmem>,
    sysv: &[u64],
) -> std::result::Result<MmImage, Fault> {
    let mut last_end = 0;
    let mut vmas = Vec::with_capacity(mm.vmas.len());
    for v in std::mem::take(&mut mm.vmas.0) {
        let bad = |why| Fault::Mapping {
            pid,
            start: v.start,
            end: v.end,
            why,
        };
        let backing = Backing::from_wire(v.backing).ok_or(Fault::Unknown {
            record: Kind::MM,
            id: pid.into(),
            field: Backing::WHAT,
            value: v.backing.into(),
        })?;
        if v.start >= v.end || v.start % PAGE != 0 || v.end % PAGE != 0 {
            return Err(bad(MappingFault::Unaligned));
        }
        if backing != Backing::Vsyscall {
            if v.end > TASK_SIZE {
                return Err(bad(MappingFault::OutsideUserSpace));
            }
            if v.start < last_end {
                return Err(bad(MappingFault::Overlaps));
            }
            last_end = v.end;
        }
        match backing {
            Backing::SharedAnon if !shmem.contains_key(&v.shmem_id) => {
                return Err(bad(MappingFault::MissingShmem));
            }
            Backing::SysvShm if !sysv.contains(&v.shmem_id) => {
                return Err(bad(MappingFault::MissingSysvSegment));
            }
            Backing::SysvShm if v.pgoff > v.start => {
                return Err(bad(MappingFault::OffsetBeyondStart));
            }
            Backing::Anon
            | Backing::File
            | Backing::SharedAnon
            | Backing::Vdso
            | Backing::Vvar
            | Backing::VvarVclock
            | Backing::Vsyscall
            | Backing::SysvShm => {}
        }
        vmas.push(VmaImage { backing, v });
    }
    Ok(MmImage { vmas, mm })
}

/// Inherited ranges (`Mm::inherited`) are ordered, page-aligned, and
/// covered by inheritable mappings of both the process and its parent.
fn check_inherited(
    pid: u32,
    mm: &MmImage,
    parent: Option<&MmImage>,
) -> std::result::Result<(), Fault> {
    let covered = |m: &MmImage, s: u64, e: u64| {
        let mut at = s;
        for v in m.vmas.iter().filter(|v| v.inheritable()) {
            if v.start <= at && at < v.end {
                at = v.end;
            }
        }
        at >= e
    };
    let mut last = 0;
    for r in mm.inherited.iter() {
        let bad = Fault::Mapping {
            pid,
            start: r.start,
            end: r.end,
            why: MappingFault::Inherited,
        };
        let ok = r.start < r.end
            && r.start % PAGE == 0
            && r.end % PAGE == 0
            && r.start >= last
            && r.end <= TASK_SIZE
            && parent.is_some_and(|p| covered(p, r.start, r.end))
            && covered(mm, r.start, r.end);
        if !ok {
            return Err(bad);
        }
        last = r.end;
    }
    Ok(())
}

/// Reads and validates the metadata, and checks the restorer may restore it.
pub fn load<R: Read>(reader: &mut Reader<R>) -> Result<Meta> {
    let meta = Meta::validate(read(reader)?)?;
    check_privilege(&meta)?;
    Ok(meta)
}

/// Trust: a restorer that is not root restores only processes with its own
/// credentials and no capabilities beyond its own; an image asking for
/// another user, a set-id process or capabilities is refused.
pub fn check_privilege(m: &Meta) -> Result<()> {
    let (uid, gid) = crate::sys::creds::effective_ids();
    if uid == 0 {
        return Ok(());
    }
    let own = std::fs::read("/proc/self/status")
        .ok()
        .and_then(|b| crate::sys::proc::parse_status(&b).ok())
        .unwrap_or_default();
    for p in m.order.iter().map(|&x| m.process(x)) {
        let c = &p.creds;
        let ids_ok = [c.uid, c.euid, c.suid, c.fsuid].iter().all(|&x| x == uid)
            && [c.gid, c.egid, c.sgid, c.fsgid].iter().all(|&x| x == gid);
        let caps = c.cap_prm | c.cap_eff | c.cap_inh | c.cap_amb;
        let caps_ok = caps & !own.cap_prm == 0;
        if !ids_ok || !caps_ok {
            return Err(Error::msg(format!(
                "cannot restore pid {}: it ran as uid {} gid {}{}, and only root may restore another user's process, a set-id process or capabilities",
                p.pid,
                c.euid,
                c.egid,
                if caps_ok { "" } else { " with capabilities" }
            )));
        }
    }
    Ok(())
}
