//! Checkpoint of SysV IPC objects: message queues with their messages,
//! semaphore sets with their values, shared memory segments with their
//! contents.
//!
//! # What the image takes
//!
//! - **The tree has its own IPC namespace** (`own_ns`: `/proc/PID/ns/ipc`
//!   of the root differs from ckpt's; the caller decides): every object of
//!   that namespace. They are read from a short-lived thread that
//!   `setns(2)`s into the namespace of `tree_pids[0]`, so ckpt itself never
//!   leaves its own.
//! - **The tree shares ckpt's namespace** (usually the host's): the objects
//!   the tree uses, as far as the kernel tells:
//!   - segments attached by a tree process (`/SYSV%08x` mappings in
//!     `/proc/PID/maps`, whose inode is the segment id; a checkpoint
//!     passes them from the mappings it read already, `collect_attached`);
//!   - segments whose creator (`cpid`) or last attach/detach (`lpid`) is a
//!     tree process;
//!   - queues whose last `msgsnd` (`lspid`) or `msgrcv` (`lrpid`) was a tree
//!     process;
//!   - semaphore sets where the last operation on some semaphore
//!     (`GETPID`) was a tree process.
//!
//!   Queues and sets keep no creator pid, so one the tree created but never
//!   used is not found; nor is an object the tree knows only by key and has
//!   not touched yet. Other processes' objects are never taken.
//!
//! Messages are copied with `MSG_COPY`, never consumed. A segment marked
//! `IPC_RMID` while still attached (`SHM_DEST` in its mode) is recorded with
//! `removed: true`; its key then reads `IPC_PRIVATE`. `perm.mode` is the
//! kernel's whole mode, `SHM_DEST` and `SHM_LOCKED` bits included.
//!
//! Segment contents are read through the segment's file (opened from
//! `/proc/PID/map_files` of a tree process that maps it, or of ckpt after a
//! short read-only `shmat` when no tree process does), with `SEEK_DATA` /
//! `SEEK_HOLE`, so pages never written are neither faulted in nor dumped;
//! all-zero pages are skipped too. The only trace a checkpoint leaves is for
//! a segment no tree process maps: the `shmat`/`shmdt` sets its `lpid` and
//! attach/detach times to ckpt's.
//!
//! Semaphore undo (`semadj`) state belongs to processes and is not
//! recorded here; nor are timestamps and last pids, which cannot be set.
//!
//! One call reads one namespace. A tree whose processes sit in several IPC
//! namespaces (`ipcshm_multi`) needs one call per namespace, and restoring
//! it needs a namespace id in the records and in each process's record,
//! which the format does not carry yet. A queue's messages travel in one
//! record, so a queue may hold at most about 16 MiB (`MAX_PAYLOAD`).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use nix::errno::Errno;
use nix::unistd::{Whence, lseek};

use crate::error::{Context, Error, Result};
use crate::image::{
    self, DataPrefix, IpcPerm, Kind, Message, MsgQueue, SPACE_SYSV_SHM, SemSet, SysvShm, Vma,
    Writer,
};
use crate::sys::ipc::{self as sys, Class, Perm, SHM_DEST, ShmAttach};
use crate::sys::pagemap::page_size;
use crate::sys::proc::{self, MapEntry};

/// The SysV IPC objects of a checkpoint: metadata read by [`collect`],
/// segment contents read when [`IpcDump::write_contents`] writes them.
pub struct IpcDump {
    pub msg_queues: Vec<MsgQueue>,
    pub sem_sets: Vec<SemSet>,
    pub shm_segments: Vec<SysvShm>,
    /// Where each segment's contents come from, parallel to `shm_segments`.
    contents: Vec<ShmSource>,
}

/// Where a segment's contents are read from.
enum ShmSource {
    /// The segment's own file: read with `SEEK_DATA`/`SEEK_HOLE` and `pread`.
    File(File),
    /// Read through an attachment at collect time: non-zero runs by offset.
    Runs(Vec<(u64, Vec<u8>)>),
}

impl std::fmt::Debug for IpcDump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpcDump")
            .field("msg_queues", &self.msg_queues)
            .field("sem_sets", &self.sem_sets)
            .field("shm_segments", &self.shm_segments)
            .finish_non_exhaustive()
    }
}

/// The id of the SysV segment a mapping attaches, if it is one: the
/// mapping's inode (`/SYSV%08x` path, shared). For `VMA_SYSV_SHM`.
pub fn shm_id_of_mapping(m: &MapEntry) -> Option<i32> {
    sys::sysv_key_of_path(&m.path)?;
    (m.shared && m.inode <= i32::MAX as u64).then_some(m.inode as i32)
}

/// A segment attachment seen in a tree process's maps.
#[derive(Debug, Clone, Copy)]
struct Mapped {
    pid: i32,
    start: u64,
    end: u64,
    key: i32,
}

/// Reads the IPC objects of a tree; see the module documentation for which.
/// `own_ns`: the tree (its root, `tree_pids[0]`) lives in an IPC namespace
/// of its own, whose every object is taken. The segments the tree
/// attaches are found in each process's `/proc/PID/maps`.
pub fn collect(tree_pids: &[i32], own_ns: bool) -> Result<IpcDump> {
    collect_from(tree_pids, own_ns, mapped_segments(tree_pids)?)
}

/// [`collect`] for a checkpoint that has read the tree's mappings
/// already: `attached`, each process's mappings that attach a SysV
/// segment (`VMA_SYSV_SHM`).
pub fn collect_attached<'a>(
    tree_pids: &[i32],
    own_ns: bool,
    attached: impl IntoIterator<Item = (i32, &'a Vma)>,
) -> Result<IpcDump> {
    let mut mapped: HashMap<i32, Vec<Mapped>> = HashMap::new();
    for (pid, v) in attached {
        mapped.entry(v.shmem_id as i32).or_default().push(Mapped {
            pid,
            start: v.start,
            end: v.end,
            key: sys::sysv_key_of_path(&v.path).unwrap_or(0),
        });
    }
    collect_from(tree_pids, own_ns, mapped)
}

fn collect_from(
    tree_pids: &[i32],
    own_ns: bool,
    mapped: HashMap<i32, Vec<Mapped>>,
) -> Result<IpcDump> {
    if own_ns {
        let root = *tree_pids
            .first()
            .ok_or_else(|| Error::msg("collecting IPC objects: empty process tree"))?;
        sys::in_ipc_ns_of(root, || collect_here(None, &mapped))?
    } else {
        let tree: HashSet<i32> = tree_pids.iter().copied().collect();
        collect_here(Some(&tree), &mapped)
    }
}

/// SysV attachments of the tree by segment id, from `/proc/PID/maps`.
fn mapped_segments(tree_pids: &[i32]) -> Result<HashMap<i32, Vec<Mapped>>> {
    let mut out: HashMap<i32, Vec<Mapped>> = HashMap::new();
    for &pid in tree_pids {
        let maps = match proc::maps(pid) {
            Ok(m) => m,
            Err(e) if e.is_gone() => continue,
            Err(e) => return Err(Error::msg(format!("reading maps of {pid}: {e}"))),
        };
        for m in &maps {
            if let Some(id) = shm_id_of_mapping(m) {
                out.entry(id).or_default().push(Mapped {
                    pid,
                    start: m.start,
                    end: m.end,
                    key: sys::sysv_key_of_path(&m.path).unwrap_or(0),
                });
            }
        }
    }
    Ok(out)
}

/// Whether an error means the object went away while being read.
fn vanished(e: Errno) -> bool {
    matches!(e, Errno::EINVAL | Errno::EIDRM | Errno::ENOENT)
}

fn perm_record(p: &Perm) -> IpcPerm {
    IpcPerm {
        key: p.key,
        uid: p.uid,
        gid: p.gid,
        cuid: p.cuid,
        cgid: p.cgid,
        mode: p.mode,
    }
}

/// Collects in the calling thread's namespace; `tree: None` takes everything.
fn collect_here(
    tree: Option<&HashSet<i32>>,
    mapped: &HashMap<i32, Vec<Mapped>>,
) -> Result<IpcDump> {
    let in_tree = |pid: i32| tree.is_none_or(|t| t.contains(&pid));
    let mut dump = IpcDump {
        msg_queues: Vec::new(),
        sem_sets: Vec::new(),
        shm_segments: Vec::new(),
        contents: Vec::new(),
    };

    for id in sys::list_ids(Class::Msg)? {
        let st = match sys::msg_stat(id) {
            Ok(s) => s,
            Err(e) if vanished(e) => continue,
            Err(e) => return Err(e).ctx(|| format!("reading message queue {id}")),
        };
        if !(tree.is_none() || in_tree(st.lspid) || in_tree(st.lrpid)) {
            continue;
        }
        match read_messages(id, st.cbytes) {
            Ok(messages) => dump.msg_queues.push(MsgQueue {
                id,
                perm: perm_record(&st.perm),
                qbytes: st.qbytes,
                messages: messages.into(),
            }),
            Err(Error::Sys { errno, .. }) if vanished(errno) => continue,
            Err(e) => return Err(e),
        }
    }

    for id in sys::list_ids(Class::Sem)? {
        let st = match sys::sem_stat(id) {
            Ok(s) => s,
            Err(e) if vanished(e) => continue,
            Err(e) => return Err(e).ctx(|| format!("reading semaphore set {id}")),
        };
        if tree.is_some() {
            let mut used = false;
            for num in 0..st.nsems {
                match sys::sem_getpid(id, num) {
                    Ok(pid) if pid != 0 && in_tree(pid) => used = true,
                    Ok(_) => {}
                    Err(e) if vanished(e) => break,
                    Err(e) => return Err(e).ctx(|| format!("reading semaphore set {id}")),
                }
            }
            if !used {
                continue;
            }
        }
        let values = match sys::sem_getall(id) {
            Ok(v) => v,
            Err(e) if vanished(e) => continue,
            Err(e) => return Err(e).ctx(|| format!("reading semaphore set {id}")),
        };
        dump.sem_sets.push(SemSet {
            id,
            perm: perm_record(&st.perm),
            values: values.into(),
        });
    }

    let page = page_size();
    for id in sys::list_ids(Class::Shm)? {
        let st = match sys::shm_stat(id) {
            Ok(s) => s,
            Err(e) if vanished(e) => continue,
            Err(e) => return Err(e).ctx(|| format!("reading shared memory segment {id}")),
        };
        // An attachment names the segment when key and size agree (ids
        // repeat across namespaces; a removed segment's key reads 0).
        let maps: Vec<Mapped> = mapped
            .get(&id)
            .map(|v| {
                v.iter()
                    .filter(|m| {
                        let key_ok = m.key == st.perm.key
                            || (st.perm.key == 0 && st.perm.mode & SHM_DEST != 0);
                        key_ok && m.end - m.start <= st.size.div_ceil(page) * page
                    })
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        if !(tree.is_none() || !maps.is_empty() || in_tree(st.cpid) || in_tree(st.lpid)) {
            continue;
        }
        let source = match shm_source(id, st.size, &maps) {
            Ok(s) => s,
            Err(Error::Sys { errno, .. }) if vanished(errno) => continue,
            Err(e) => return Err(e),
        };
        dump.shm_segments.push(SysvShm {
            id,
            perm: perm_record(&st.perm),
            size: st.size,
            removed: st.perm.mode & SHM_DEST != 0,
        });
        dump.contents.push(source);
    }
    Ok(dump)
}

/// Every message of a queue, in order, left in the queue.
fn read_messages(id: i32, cbytes: u64) -> Result<Vec<Message>> {
    // No message is larger than all of them together; a message sent since
    // the stat may be, and is retried with a larger buffer.
    let mut max = (cbytes as usize).max(1);
    let mut out = Vec::new();
    let mut total = 0usize;
    loop {
        match sys::msg_copy(id, out.len(), max) {
            Ok(Some((mtype, data))) => {
                total += data.len() + 16;
                if total > image::MAX_PAYLOAD - 4096 {
                    return Err(Error::msg(format!(
                        "message queue {id} holds more than {} bytes of messages, \
                         more than one image record can carry",
                        image::MAX_PAYLOAD - 4096
                    )));
                }
                out.push(Message { mtype, data });
            }
            Ok(None) => return Ok(out),
            Err(Errno::E2BIG) if max < image::MAX_PAYLOAD => max = (max * 2).max(sys::msgmax()?),
            Err(Errno::ENOSYS) => {
                return Err(Error::msg(format!(
                    "cannot read message queue {id} without consuming it: \
                     the kernel lacks MSG_COPY (CONFIG_CHECKPOINT_RESTORE)"
                )));
            }
            Err(e) => return Err(e).ctx(|| format!("copying messages of queue {id}")),
        }
    }
}

/// Opens a segment's contents: through a tree process's mapping if there is
/// one, else through a short read-only attachment of our own.
fn shm_source(id: i32, size: u64, maps: &[Mapped]) -> Result<ShmSource> {
    for m in maps {
        let path = format!("/proc/{}/map_files/{:x}-{:x}", m.pid, m.start, m.end);
        if let Ok(f) = File::open(&path)
            && f.metadata().is_ok_and(|md| md.len() == size)
        {
            return Ok(ShmSource::File(f));
        }
    }
    let att = ShmAttach::attach(id, libc::SHM_RDONLY)
        .ctx(|| format!("attaching shared memory segment {id} to read it"))?;
    if let Ok(f) = att.open_file() {
        return Ok(ShmSource::File(f));
    }
    // No map_files (no CAP_SYS_ADMIN): read through the attachment.
    let mut runs = Vec::new();
    let mut buf = vec![0u8; image::CHUNK.min(att.len())];
    let mut off = 0usize;
    while off < att.len() {
        let n = buf.len().min(att.len() - off);
        att.read_at(off, &mut buf[..n])
            .ctx(|| format!("reading shared memory segment {id}"))?;
        for (s, l) in nonzero_runs(&buf[..n], page_size() as usize) {
            runs.push(((off + s) as u64, buf[s..s + l].to_vec()));
        }
        off += n;
    }
    Ok(ShmSource::Runs(runs))
}

/// Runs of pages of `buf` that are not all zero, as `(offset, len)`; the
/// last page may be short.
pub fn nonzero_runs(buf: &[u8], page: usize) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, p) in buf.chunks(page).enumerate() {
        if p.iter().all(|&b| b == 0) {
            continue;
        }
        let off = i * page;
        match runs.last_mut() {
            Some((s, l)) if *s + *l == off => *l += p.len(),
            _ => runs.push((off, p.len())),
        }
    }
    runs
}

impl IpcDump {
    /// Whether no object was taken.
    pub fn is_empty(&self) -> bool {
        self.msg_queues.is_empty() && self.sem_sets.is_empty() && self.shm_segments.is_empty()
    }

    /// Writes the `MSGQ`, `SEMSET` and `SYSV_SHM` records. They must come
    /// before any page record of the stream.
    pub fn write_meta<W: Write>(&self, w: &mut Writer<W>) -> Result<()> {
        for q in &self.msg_queues {
            w.write(Kind::MSGQ, q)?;
        }
        for s in &self.sem_sets {
            w.write(Kind::SEMSET, s)?;
        }
        for s in &self.shm_segments {
            w.write(Kind::SYSV_SHM, s)?;
        }
        Ok(())
    }

    /// Writes every segment's contents as `PAGES` records of space
    /// `SPACE_SYSV_SHM` (id: the segment id, addr: the offset), at most
    /// [`image::CHUNK`] bytes each; holes and all-zero pages are left out.
    pub fn write_contents<W: Write>(&self, w: &mut Writer<W>) -> Result<()> {
        let page = page_size() as usize;
        for (seg, src) in self.shm_segments.iter().zip(&self.contents) {
            let prefix = |off: u64| {
                DataPrefix {
                    space: SPACE_SYSV_SHM,
                    flags: 0,
                    id: seg.id as u32 as u64,
                    addr: off,
                }
                .to_bytes()
            };
            match src {
                ShmSource::Runs(runs) => {
                    for (off, data) in runs {
                        for (i, piece) in data.chunks(image::CHUNK).enumerate() {
                            let at = off + (i * image::CHUNK) as u64;
                            w.write_parts(Kind::PAGES, &[&prefix(at), piece])?;
                        }
                    }
                }
                ShmSource::File(f) => {
                    let what = || format!("reading shared memory segment {}", seg.id);
                    let mut buf = vec![0u8; image::CHUNK.min(seg.size as usize)];
                    let mut pos = 0u64;
                    while pos < seg.size {
                        let data = match lseek(f.as_raw_fd(), pos as i64, Whence::SeekData) {
                            Ok(d) => d as u64,
                            Err(Errno::ENXIO) => break,
                            Err(e) => return Err(e).ctx(what),
                        };
                        let hole =
                            lseek(f.as_raw_fd(), data as i64, Whence::SeekHole).ctx(what)? as u64;
                        let hole = hole.min(seg.size);
                        let mut off = data;
                        while off < hole {
                            let n = buf.len().min((hole - off) as usize);
                            f.read_exact_at(&mut buf[..n], off).ctx(what)?;
                            for (s, l) in nonzero_runs(&buf[..n], page) {
                                w.write_parts(
                                    Kind::PAGES,
                                    &[&prefix(off + s as u64), &buf[s..s + l]],
                                )?;
                            }
                            off += n as u64;
                        }
                        pos = hole.max(data + 1);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_nonzero_pages() {
        let mut b = vec![0u8; 4096 * 5 + 100];
        assert!(nonzero_runs(&b, 4096).is_empty());
        b[0] = 1;
        b[4096 + 5] = 1;
        b[4096 * 3] = 1;
        b[4096 * 5 + 99] = 1;
        assert_eq!(
            nonzero_runs(&b, 4096),
            vec![(0, 8192), (4096 * 3, 4096), (4096 * 5, 100)]
        );
    }

    #[test]
    fn sysv_mapping_ids() {
        let mut m = MapEntry {
            start: 0x1000,
            end: 0x2000,
            read: true,
            write: true,
            exec: false,
            shared: true,
            offset: 0,
            dev_major: 0,
            dev_minor: 1,
            inode: 32769,
            path: b"/SYSV00001234".to_vec(),
            deleted: true,
        };
        assert_eq!(shm_id_of_mapping(&m), Some(32769));
        m.path = b"/dev/zero".to_vec();
        assert_eq!(shm_id_of_mapping(&m), None);
    }
}
