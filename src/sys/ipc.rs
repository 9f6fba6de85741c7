//! SysV IPC: safe wrappers over `msg*`, `sem*` and `shm*`, listing the
//! objects of the current IPC namespace, choosing the id of the next object,
//! and running code inside another IPC namespace or under another creator.
//!
//! Everything here acts in the IPC namespace of the *calling thread*: IPC
//! syscalls, `/proc/sysvipc/*` (the namespace is taken when the file is
//! opened) and `/proc/sys/kernel/*_next_id` all resolve the namespace from
//! the current task, not from the process. That is what lets
//! [`in_ipc_ns_of`] read another namespace from a short-lived thread that
//! `setns(2)`s into it while the rest of the process stays where it is.
//!
//! Kernel facts worth knowing (Linux 6.x):
//! - An id is `seq * IPCMNI + index`. Writing an id to
//!   `/proc/sys/kernel/{msg,sem,shm}_next_id` makes the next object of that
//!   class get that id; the file resets to `-1` once used. When the index is
//!   taken the kernel silently picks the next free one (with the wanted
//!   `seq`), so callers must check what they got.
//! - `msgrcv(.., index, MSG_COPY | IPC_NOWAIT)` copies the message at
//!   position `index` without dequeuing it (needs
//!   `CONFIG_CHECKPOINT_RESTORE`); `ENOMSG` past the last one.
//! - `shm_perm.mode` carries `SHM_DEST` (`0o1000`, marked `IPC_RMID` while
//!   still attached; its key then reads `IPC_PRIVATE`) and `SHM_LOCKED`
//!   (`0o2000`). `IPC_SET` only takes the `0o777` bits.
//! - The inode of a SysV segment's file, as `/proc/PID/maps` shows it next
//!   to `/SYSV%08x` (the key in hex), is the segment's id.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

use nix::errno::Errno;

use thiserror::Error;

/// Why reading or steering the IPC namespace failed. `crate::Error` takes
/// it in with the same message (`sys` depends on nothing above it).
#[derive(Debug, Error)]
pub enum IpcError {
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{what}: {errno}")]
    Sys { what: String, errno: Errno },
    #[error("{0}")]
    Msg(String),
}

impl IpcError {
    fn msg(s: String) -> Self {
        IpcError::Msg(s)
    }
}

type Error = IpcError;
type Result<T> = std::result::Result<T, IpcError>;

/// Adds "what was being done" to an I/O error.
trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| IpcError::Io {
            what: what(),
            source,
        })
    }
}

impl<T> Context<T> for nix::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|errno| IpcError::Sys {
            what: what(),
            errno,
        })
    }
}

/// Segment marked for removal, still attached (`shm_perm.mode` bit).
pub const SHM_DEST: u32 = 0o1000;
/// Segment locked in memory with `SHM_LOCK` (`shm_perm.mode` bit).
pub const SHM_LOCKED: u32 = 0o2000;

/// The three classes of SysV IPC object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Msg,
    Sem,
    Shm,
}

impl Class {
    /// The file name under `/proc/sysvipc` and the prefix of `*_next_id`.
    pub fn proc_name(self) -> &'static str {
        match self {
            Class::Msg => "msg",
            Class::Sem => "sem",
            Class::Shm => "shm",
        }
    }
    /// The column of `/proc/sysvipc/NAME` that holds the id.
    fn id_column(self) -> &'static [u8] {
        match self {
            Class::Msg => b"msqid",
            Class::Sem => b"semid",
            Class::Shm => b"shmid",
        }
    }
    /// What users call an object of this class, for messages.
    pub fn noun(self) -> &'static str {
        match self {
            Class::Msg => "message queue",
            Class::Sem => "semaphore set",
            Class::Shm => "shared memory segment",
        }
    }
}

/// Ownership and permissions of an object (`struct ipc_perm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Perm {
    pub key: i32,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
    /// Permission bits plus, for segments, [`SHM_DEST`] and [`SHM_LOCKED`].
    pub mode: u32,
}

impl Perm {
    fn from_raw(p: &libc::ipc_perm) -> Perm {
        Perm {
            key: p.__key,
            uid: p.uid,
            gid: p.gid,
            cuid: p.cuid,
            cgid: p.cgid,
            mode: p.mode as u32,
        }
    }
}

/// `msgctl(IPC_STAT)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MsqStat {
    pub perm: Perm,
    /// Bytes of message data in the queue.
    pub cbytes: u64,
    /// Messages in the queue.
    pub qnum: u64,
    /// Most bytes the queue may hold.
    pub qbytes: u64,
    /// Last `msgsnd` and `msgrcv` pids (thread group ids).
    pub lspid: i32,
    pub lrpid: i32,
}

/// `semctl(IPC_STAT)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SemStat {
    pub perm: Perm,
    pub nsems: u32,
}

/// `shmctl(IPC_STAT)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShmStat {
    pub perm: Perm,
    pub size: u64,
    /// Creator and last `shmat`/`shmdt` pids (thread group ids).
    pub cpid: i32,
    pub lpid: i32,
    pub nattch: u64,
}

fn check(r: libc::c_int) -> nix::Result<libc::c_int> {
    if r < 0 { Err(Errno::last()) } else { Ok(r) }
}

// ---------------------------------------------------------------- messages

/// `msgget(key, flags)`; `flags` holds `IPC_CREAT`, `IPC_EXCL` and mode bits.
pub fn msgget(key: i32, flags: i32) -> nix::Result<i32> {
    // SAFETY: msgget takes no pointers.
    check(unsafe { libc::msgget(key, flags) })
}

fn msqid_ds_to_stat(ds: &libc::msqid_ds) -> MsqStat {
    MsqStat {
        perm: Perm::from_raw(&ds.msg_perm),
        cbytes: ds.__msg_cbytes,
        qnum: ds.msg_qnum,
        qbytes: ds.msg_qbytes,
        lspid: ds.msg_lspid,
        lrpid: ds.msg_lrpid,
    }
}

fn msgctl_ds(id: i32, cmd: i32) -> nix::Result<(i32, libc::msqid_ds)> {
    // SAFETY: msqid_ds is plain old data; all zeroes is a valid value.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a live, writable msqid_ds for the kernel to fill.
    let r = check(unsafe { libc::msgctl(id, cmd, &mut ds) })?;
    Ok((r, ds))
}

/// `msgctl(id, IPC_STAT)`.
pub fn msg_stat(id: i32) -> nix::Result<MsqStat> {
    msgctl_ds(id, libc::IPC_STAT).map(|(_, ds)| msqid_ds_to_stat(&ds))
}

/// `msgctl(index, MSG_STAT)`: the queue at kernel index `index`, with its id.
pub fn msg_stat_index(index: i32) -> nix::Result<(i32, MsqStat)> {
    msgctl_ds(index, libc::MSG_STAT).map(|(id, ds)| (id, msqid_ds_to_stat(&ds)))
}

/// `msgctl(id, IPC_SET)`: owner, group, permission bits and `qbytes`.
pub fn msg_set(id: i32, uid: u32, gid: u32, mode: u32, qbytes: u64) -> nix::Result<()> {
    let (_, mut ds) = msgctl_ds(id, libc::IPC_STAT)?;
    ds.msg_perm.uid = uid;
    ds.msg_perm.gid = gid;
    ds.msg_perm.mode = (mode & 0o777) as libc::c_ushort;
    ds.msg_qbytes = qbytes;
    // SAFETY: `ds` is a live msqid_ds the kernel only reads.
    check(unsafe { libc::msgctl(id, libc::IPC_SET, &mut ds) }).map(drop)
}

/// `msgctl(id, IPC_RMID)`.
pub fn msg_rmid(id: i32) -> nix::Result<()> {
    // SAFETY: IPC_RMID ignores the buffer.
    check(unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}

/// `msgsnd(id, {mtype, data}, flags)`. `mtype` must be positive.
pub fn msgsnd(id: i32, mtype: i64, data: &[u8], flags: i32) -> nix::Result<()> {
    let mut buf = vec![0u8; 8 + data.len()];
    buf[..8].copy_from_slice(&mtype.to_ne_bytes());
    buf[8..].copy_from_slice(data);
    // SAFETY: `buf` is a `struct msgbuf` (a long, then `data.len()` bytes)
    // that the kernel only reads.
    check(unsafe { libc::msgsnd(id, buf.as_ptr().cast(), data.len(), flags) }).map(drop)
}

/// `msgrcv(id, .., max, msgtyp, flags)`: the message's type and bytes.
/// With `MSG_COPY` in `flags`, `msgtyp` is a position in the queue.
pub fn msgrcv(id: i32, max: usize, msgtyp: i64, flags: i32) -> nix::Result<(i64, Vec<u8>)> {
    // u64 words keep the leading `long mtype` aligned.
    let mut buf = vec![0u64; 1 + max.div_ceil(8)];
    // SAFETY: `buf` holds a long followed by at least `max` writable bytes,
    // which is all msgrcv writes.
    let n = unsafe { libc::msgrcv(id, buf.as_mut_ptr().cast(), max, msgtyp, flags) };
    if n < 0 {
        return Err(Errno::last());
    }
    let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
    Ok((buf[0] as i64, bytes[8..8 + n as usize].to_vec()))
}

/// The message at position `index` of a queue, left in place
/// (`MSG_COPY | IPC_NOWAIT`); `None` past the last message. `max` must be at
/// least the message's size (`E2BIG` otherwise).
pub fn msg_copy(id: i32, index: usize, max: usize) -> nix::Result<Option<(i64, Vec<u8>)>> {
    match msgrcv(id, max, index as i64, libc::MSG_COPY | libc::IPC_NOWAIT) {
        Ok(m) => Ok(Some(m)),
        Err(Errno::ENOMSG) => Ok(None),
        Err(e) => Err(e),
    }
}

// -------------------------------------------------------------- semaphores

/// `semget(key, nsems, flags)`.
pub fn semget(key: i32, nsems: u32, flags: i32) -> nix::Result<i32> {
    // SAFETY: semget takes no pointers.
    check(unsafe { libc::semget(key, nsems as i32, flags) })
}

fn semctl_ds(id: i32, cmd: i32) -> nix::Result<(i32, libc::semid_ds)> {
    // SAFETY: semid_ds is plain old data; all zeroes is a valid value.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: for IPC_STAT/SEM_STAT the fourth argument (`union semun`) is
    // `buf`, a pointer to a live, writable semid_ds.
    let r = check(unsafe { libc::semctl(id, 0, cmd, &mut ds as *mut libc::semid_ds) })?;
    Ok((r, ds))
}

fn semid_ds_to_stat(ds: &libc::semid_ds) -> SemStat {
    SemStat {
        perm: Perm::from_raw(&ds.sem_perm),
        nsems: ds.sem_nsems as u32,
    }
}

/// `semctl(id, IPC_STAT)`.
pub fn sem_stat(id: i32) -> nix::Result<SemStat> {
    semctl_ds(id, libc::IPC_STAT).map(|(_, ds)| semid_ds_to_stat(&ds))
}

/// `semctl(index, SEM_STAT)`: the set at kernel index `index`, with its id.
pub fn sem_stat_index(index: i32) -> nix::Result<(i32, SemStat)> {
    semctl_ds(index, libc::SEM_STAT).map(|(id, ds)| (id, semid_ds_to_stat(&ds)))
}

/// `semctl(id, GETALL)`: every semaphore's value.
pub fn sem_getall(id: i32) -> nix::Result<Vec<u16>> {
    let n = sem_stat(id)?.nsems as usize;
    let mut vals = vec![0u16; n.max(1)];
    // SAFETY: for GETALL the fourth argument is `array`, pointing to `nsems`
    // writable unsigned shorts (`vals` has at least that many).
    check(unsafe { libc::semctl(id, 0, libc::GETALL, vals.as_mut_ptr()) })?;
    vals.truncate(n);
    Ok(vals)
}

/// `semctl(id, SETALL)`: `vals` must have one value per semaphore.
pub fn sem_setall(id: i32, vals: &[u16]) -> nix::Result<()> {
    if vals.is_empty() {
        return Ok(());
    }
    // The kernel reads `nsems` values: refuse a slice of another length.
    if sem_stat(id)?.nsems as usize != vals.len() {
        return Err(Errno::EINVAL);
    }
    let mut v = vals.to_vec();
    // SAFETY: for SETALL the fourth argument is `array`; `v` holds `nsems`
    // readable unsigned shorts (checked above).
    check(unsafe { libc::semctl(id, 0, libc::SETALL, v.as_mut_ptr()) }).map(drop)
}

/// `semctl(id, num, GETPID)`: the pid of the last operation on semaphore `num`.
pub fn sem_getpid(id: i32, num: u32) -> nix::Result<i32> {
    // SAFETY: GETPID takes no fourth argument.
    check(unsafe { libc::semctl(id, num as i32, libc::GETPID) })
}

/// `semctl(id, IPC_SET)`: owner, group and permission bits.
pub fn sem_set(id: i32, uid: u32, gid: u32, mode: u32) -> nix::Result<()> {
    let (_, mut ds) = semctl_ds(id, libc::IPC_STAT)?;
    ds.sem_perm.uid = uid;
    ds.sem_perm.gid = gid;
    ds.sem_perm.mode = (mode & 0o777) as libc::c_ushort;
    // SAFETY: for IPC_SET the fourth argument is `buf`, a live semid_ds the
    // kernel only reads.
    check(unsafe { libc::semctl(id, 0, libc::IPC_SET, &mut ds as *mut libc::semid_ds) }).map(drop)
}

/// `semctl(id, IPC_RMID)`.
pub fn sem_rmid(id: i32) -> nix::Result<()> {
    // SAFETY: IPC_RMID takes no fourth argument.
    check(unsafe { libc::semctl(id, 0, libc::IPC_RMID) }).map(drop)
}

/// One operation of [`semop`]: add `op` to semaphore `num`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemOp {
    pub num: u16,
    pub op: i16,
    /// `IPC_NOWAIT`, `SEM_UNDO`.
    pub flags: i16,
}

/// `semop(id, ops)`: all operations at once, or none.
pub fn semop(id: i32, ops: &[SemOp]) -> nix::Result<()> {
    let mut raw: Vec<libc::sembuf> = ops
        .iter()
        .map(|o| libc::sembuf {
            sem_num: o.num,
            sem_op: o.op,
            sem_flg: o.flags,
        })
        .collect();
    // SAFETY: `raw` holds `raw.len()` sembufs the kernel reads.
    check(unsafe { libc::semop(id, raw.as_mut_ptr(), raw.len()) }).map(drop)
}

// ---------------------------------------------------------- shared memory

/// `shmget(key, size, flags)`.
pub fn shmget(key: i32, size: u64, flags: i32) -> nix::Result<i32> {
    // SAFETY: shmget takes no pointers.
    check(unsafe { libc::shmget(key, size as usize, flags) })
}

fn shmctl_ds(id: i32, cmd: i32) -> nix::Result<(i32, libc::shmid_ds)> {
    // SAFETY: shmid_ds is plain old data; all zeroes is a valid value.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a live, writable shmid_ds for the kernel to fill.
    let r = check(unsafe { libc::shmctl(id, cmd, &mut ds) })?;
    Ok((r, ds))
}

fn shmid_ds_to_stat(ds: &libc::shmid_ds) -> ShmStat {
    ShmStat {
        perm: Perm::from_raw(&ds.shm_perm),
        size: ds.shm_segsz as u64,
        cpid: ds.shm_cpid,
        lpid: ds.shm_lpid,
        nattch: ds.shm_nattch,
    }
}

/// `shmctl(id, IPC_STAT)`.
pub fn shm_stat(id: i32) -> nix::Result<ShmStat> {
    shmctl_ds(id, libc::IPC_STAT).map(|(_, ds)| shmid_ds_to_stat(&ds))
}

/// `SHM_STAT` (13): the segment at kernel index `index`, with its id.
pub const SHM_STAT: i32 = 13;

/// `shmctl(index, SHM_STAT)`.
pub fn shm_stat_index(index: i32) -> nix::Result<(i32, ShmStat)> {
    shmctl_ds(index, SHM_STAT).map(|(id, ds)| (id, shmid_ds_to_stat(&ds)))
}

/// `shmctl(id, IPC_SET)`: owner, group and permission bits.
pub fn shm_set(id: i32, uid: u32, gid: u32, mode: u32) -> nix::Result<()> {
    let (_, mut ds) = shmctl_ds(id, libc::IPC_STAT)?;
    ds.shm_perm.uid = uid;
    ds.shm_perm.gid = gid;
    ds.shm_perm.mode = (mode & 0o777) as libc::c_ushort;
    // SAFETY: `ds` is a live shmid_ds the kernel only reads.
    check(unsafe { libc::shmctl(id, libc::IPC_SET, &mut ds) }).map(drop)
}

/// `shmctl(id, IPC_RMID)`: removed now, or at the last detach.
pub fn shm_rmid(id: i32) -> nix::Result<()> {
    // SAFETY: IPC_RMID ignores the buffer.
    check(unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}

/// `shmctl(id, SHM_LOCK)`: keep the segment's pages in memory.
pub fn shm_lock(id: i32) -> nix::Result<()> {
    // SAFETY: SHM_LOCK ignores the buffer.
    check(unsafe { libc::shmctl(id, libc::SHM_LOCK, std::ptr::null_mut()) }).map(drop)
}

/// A segment attached to this process with `shmat`, detached on drop.
///
/// The memory is shared with other processes that may write it at any time,
/// so it is only reached through copies ([`read_at`](Self::read_at),
/// [`write_at`](Self::write_at)), never as a Rust slice.
#[derive(Debug)]
pub struct ShmAttach {
    addr: *mut u8,
    len: usize,
    id: i32,
}

// SAFETY: the attachment is a process-wide mapping; nothing about it is tied
// to the thread that made it.
unsafe impl Send for ShmAttach {}

impl ShmAttach {
    /// `shmat(id, NULL, flags)`, e.g. `SHM_RDONLY`.
    pub fn attach(id: i32, flags: i32) -> nix::Result<ShmAttach> {
        let size = shm_stat(id)?.size as usize;
        // SAFETY: with a NULL address the kernel picks a free range, so no
        // existing mapping of this process is replaced.
        let p = unsafe { libc::shmat(id, std::ptr::null(), flags) };
        if p as isize == -1 {
            return Err(Errno::last());
        }
        Ok(ShmAttach {
            addr: p.cast(),
            len: size,
            id,
        })
    }
    pub fn id(&self) -> i32 {
        self.id
    }
    pub fn addr(&self) -> u64 {
        self.addr as u64
    }
    /// The segment's size in bytes (the mapping is rounded up to pages).
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    fn range_ok(&self, offset: usize, n: usize) -> bool {
        offset.checked_add(n).is_some_and(|end| end <= self.len)
    }
    /// Copies `buf.len()` bytes at `offset` out of the segment.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> io::Result<()> {
        if !self.range_ok(offset, buf.len()) {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: the range lies inside the live attachment (checked above)
        // and `buf` is a distinct, writable Rust buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(self.addr.add(offset), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }
    /// Copies `data` into the segment at `offset`. The attachment must not
    /// be read-only.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> io::Result<()> {
        if !self.range_ok(offset, data.len()) {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: the range lies inside the live attachment (checked above);
        // a read-only attachment would fault, which callers avoid by
        // attaching without SHM_RDONLY before writing.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.addr.add(offset), data.len()) };
        Ok(())
    }
    /// Opens the segment's file through `/proc/self/map_files`, so it can be
    /// read with `pread` and `SEEK_DATA`/`SEEK_HOLE` without faulting in
    /// pages that were never written (needs `CAP_SYS_ADMIN`). The file stays
    /// valid after the attachment is gone.
    pub fn open_file(&self) -> io::Result<File> {
        let page = crate::sys::pagemap::page_size() as usize;
        let end = self.addr as usize + self.len.div_ceil(page).max(1) * page;
        File::open(format!(
            "/proc/self/map_files/{:x}-{:x}",
            self.addr as usize, end
        ))
    }
}

impl Drop for ShmAttach {
    fn drop(&mut self) {
        // SAFETY: `addr` came from shmat and is detached only here, once;
        // nothing borrows the mapping (it is only reached through copies).
        unsafe { libc::shmdt(self.addr.cast()) };
    }
}

// --------------------------------------------------- listing and next ids

/// Parses the ids out of `/proc/sysvipc/{msg,sem,shm}` (a header line
/// naming the columns, then one object a line).
pub fn parse_sysvipc_ids(buf: &[u8], id_column: &[u8]) -> std::result::Result<Vec<i32>, String> {
    let mut lines = buf.split(|&b| b == b'\n');
    let header = lines.next().ok_or("empty file")?;
    let col = header
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .position(|w| w == id_column)
        .ok_or_else(|| format!("no {} column", String::from_utf8_lossy(id_column)))?;
    let mut ids = Vec::new();
    for line in lines {
        let mut words = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty());
        let Some(first) = words.next() else { continue };
        let w = if col == 0 {
            Some(first)
        } else {
            words.nth(col - 1)
        };
        let w = w.ok_or_else(|| format!("short line {:?}", String::from_utf8_lossy(line)))?;
        let id = std::str::from_utf8(w)
            .ok()
            .and_then(|s| s.parse::<i32>().ok())
            .ok_or_else(|| format!("bad id {:?}", String::from_utf8_lossy(w)))?;
        ids.push(id);
    }
    Ok(ids)
}

/// The ids of every object of `class` in the calling thread's IPC namespace.
pub fn list_ids(class: Class) -> Result<Vec<i32>> {
    let path = format!("/proc/sysvipc/{}", class.proc_name());
    let buf = std::fs::read(&path).ctx(|| format!("reading {path}"))?;
    parse_sysvipc_ids(&buf, class.id_column()).map_err(|e| Error::msg(format!("{path}: {e}")))
}

fn next_id_path(class: Class) -> String {
    format!("/proc/sys/kernel/{}_next_id", class.proc_name())
}

/// Makes the next object of `class` created in the calling thread's IPC
/// namespace get id `id` (`-1` clears a pending wish).
pub fn set_next_id(class: Class, id: i32) -> Result<()> {
    let path = next_id_path(class);
    std::fs::write(&path, format!("{id}\n")).ctx(|| format!("writing {id} to {path}"))
}

/// Withdraws a pending `*_next_id` wish that no object consumed (creation
/// failed before the kernel allocated an id). Writing `-1` is refused by
/// some kernels (6.x: the sysctl's minimum is 0), so the wish is used up by
/// a throw-away private object, removed at once.
pub fn clear_next_id(class: Class) -> Result<()> {
    if next_id(class)? < 0 || set_next_id(class, -1).is_ok() {
        return Ok(());
    }
    let id = match class {
        Class::Msg => msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600),
        Class::Sem => semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600),
        Class::Shm => shmget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600),
    }
    .ctx(|| format!("clearing {}", next_id_path(class)))?;
    match class {
        Class::Msg => msg_rmid(id),
        Class::Sem => sem_rmid(id),
        Class::Shm => shm_rmid(id),
    }
    .ctx(|| format!("removing {} {id}", class.noun()))?;
    match next_id(class)? {
        -1 => Ok(()),
        n => Err(Error::msg(format!(
            "{} still reads {n} after clearing it",
            next_id_path(class)
        ))),
    }
}

/// The pending `*_next_id` wish, `-1` when none.
pub fn next_id(class: Class) -> Result<i32> {
    let path = next_id_path(class);
    let s = std::fs::read_to_string(&path).ctx(|| format!("reading {path}"))?;
    s.trim()
        .parse()
        .map_err(|_| Error::msg(format!("{path}: bad value {s:?}")))
}

/// `/proc/sys/kernel/msgmax`: the largest message the namespace accepts.
pub fn msgmax() -> Result<usize> {
    let s = std::fs::read_to_string("/proc/sys/kernel/msgmax").ctx(|| "reading msgmax".into())?;
    s.trim()
        .parse()
        .map_err(|_| Error::msg(format!("/proc/sys/kernel/msgmax: bad value {s:?}")))
}

// ------------------------------------------------------------- namespaces

/// The IPC namespace of process `pid` (inode of `/proc/PID/ns/ipc`).
pub fn ipc_ns_of(pid: i32) -> Result<u64> {
    let path = format!("/proc/{pid}/ns/ipc");
    std::fs::metadata(&path)
        .map(|m| m.ino())
        .ctx(|| format!("reading {path}"))
}

/// The IPC namespace of the calling thread.
pub fn current_ipc_ns() -> Result<u64> {
    std::fs::metadata("/proc/thread-self/ns/ipc")
        .map(|m| m.ino())
        .ctx(|| "reading /proc/thread-self/ns/ipc".into())
}

/// Runs `f` on a short-lived thread that has joined the IPC namespace of
/// process `pid` (`setns(2)`); the calling thread stays where it is. A
/// panic in `f` is passed on.
pub fn in_ipc_ns_of<T: Send>(pid: i32, f: impl FnOnce() -> T + Send) -> Result<T> {
    let path = format!("/proc/{pid}/ns/ipc");
    let ns = File::open(&path).ctx(|| format!("opening {path}"))?;
    on_thread(move || {
        // SAFETY: `ns` is an open namespace file; setns only changes the
        // IPC namespace of this (helper) thread.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWIPC) } != 0 {
            return Err(Error::Sys {
                what: format!("entering the IPC namespace of {pid}"),
                errno: Errno::last(),
            });
        }
        Ok(f())
    })?
}

/// Runs `f` with effective user and group ids `uid`, `gid`, so that what it
/// creates gets them as creator (`cuid`, `cgid`), on a short-lived thread
/// whose credentials alone change (raw `setresgid`/`setresuid` act per
/// thread); directly when they already are the caller's.
pub fn with_creator<T: Send>(uid: u32, gid: u32, f: impl FnOnce() -> T + Send) -> Result<T> {
    // SAFETY: geteuid and getegid cannot fail and take no pointers.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if (uid, gid) == (euid, egid) {
        return Ok(f());
    }
    on_thread(move || {
        let keep = u32::MAX; // -1: leave unchanged
        // SAFETY: raw setresgid/setresuid change only the calling thread's
        // credentials (glibc's wrappers would change every thread).
        let r = unsafe { libc::syscall(libc::SYS_setresgid, keep, gid, keep) };
        if r != 0 {
            return Err(Error::Sys {
                what: format!("switching to creator group {gid}"),
                errno: Errno::last(),
            });
        }
        // SAFETY: as above.
        let r = unsafe { libc::syscall(libc::SYS_setresuid, keep, uid, keep) };
        if r != 0 {
            return Err(Error::Sys {
                what: format!("switching to creator user {uid}"),
                errno: Errno::last(),
            });
        }
        Ok(f())
    })?
}

fn on_thread<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|s| {
        let h = std::thread::Builder::new()
            .name("cr-ipc".into())
            .spawn_scoped(s, f)
            .ctx(|| "starting an IPC helper thread".into())?;
        match h.join() {
            Ok(v) => Ok(v),
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}

/// The key a `/proc/PID/maps` path names for a SysV segment (`/SYSV%08x`).
pub fn sysv_key_of_path(path: &[u8]) -> Option<i32> {
    let hex = path.strip_prefix(b"/SYSV")?;
    if hex.len() != 8 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16)
        .ok()
        .map(|k| k as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysvipc_ids() {
        let shm = b"       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n\
                    \x20        0          5  1600                 4096   100   100      1     0     0     0     0          0          0 1700000000                     0                     0\n\
                    \x20  4660      32769   644                 8192   101   101      0     0     0     0     0          0          0 1700000000                     0                     0\n";
        assert_eq!(parse_sysvipc_ids(shm, b"shmid").unwrap(), vec![5, 32769]);
        let empty = b"       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid  cgid      stime      rtime      ctime\n";
        assert_eq!(
            parse_sysvipc_ids(empty, b"msqid").unwrap(),
            Vec::<i32>::new()
        );
        assert!(parse_sysvipc_ids(b"", b"msqid").is_err());
        assert!(parse_sysvipc_ids(b"key semid\n1\n", b"semid").is_err());
        assert!(parse_sysvipc_ids(b"key semid\n1 x\n", b"semid").is_err());
        assert!(parse_sysvipc_ids(b"key other\n1 2\n", b"semid").is_err());
    }

    #[test]
    fn sysv_keys() {
        assert_eq!(sysv_key_of_path(b"/SYSV00001234"), Some(0x1234));
        assert_eq!(sysv_key_of_path(b"/SYSVffffffff"), Some(-1));
        assert_eq!(sysv_key_of_path(b"/SYSV0000123"), None);
        assert_eq!(sysv_key_of_path(b"/SYSV0000123g"), None);
        assert_eq!(sysv_key_of_path(b"/dev/zero"), None);
    }
}
