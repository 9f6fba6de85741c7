//! Restore of SysV IPC objects: message queues, semaphore sets and shared
//! memory segments, each with its original id, key, owners and mode.
//!
//! # Sequence
//!
//! 1. [`IpcRestore::add`] every metadata record (it takes `MSGQ`,
//!    `SEMSET`, `SYSV_SHM` and leaves the rest).
//! 2. [`IpcRestore::create`] once all metadata is read, in the IPC
//!    namespace the restored tree will live in (objects are created in the
//!    calling thread's namespace: for an image whose tree had its own, enter
//!    or `unshare` a fresh one first). Every id and key is checked free
//!    before anything is created; an id or key in use is a clear error
//!    (`cannot restore message queue 32769: id already in use`) and nothing
//!    is ever renumbered. Ids come from `/proc/sys/kernel/*_next_id`;
//!    creators (`cuid`, `cgid`) by creating under those effective ids.
//! 3. [`IpcRestore::shm_contents`] (or [`IpcRestore::add_data`]) for each
//!    `PAGES` record of space `SPACE_SYSV_SHM`. The restorer keeps one
//!    attachment per segment until `finish`; do this after forking the
//!    restored processes, or they inherit those attachments.
//! 4. Attach segments into restored processes (remote `shmat`, see
//!    [`attach_flags`]).
//! 5. [`IpcRestore::finish`]: drops the restorer's attachments and marks
//!    `removed` segments `IPC_RMID`; they live on while a restored process
//!    keeps them attached (so attach before), and vanish with the last
//!    detach, as they would have.
//! 6. [`IpcRestore::commit`] once the restore has succeeded. Until then,
//!    [`IpcRestore::undo`] (also run on drop) removes every object this
//!    restore created, so a failed restore leaves no IPC object behind.
//!
//! # Attaching a segment into a restored process
//!
//! `shmat` always maps a whole segment from offset 0. For a `VMA_SYSV_SHM`
//! mapping `[start, end)` at page offset `pgoff` (bytes), call
//! `shmat(shmid, start - pgoff, flags)` with `flags` from [`attach_flags`]:
//! `SHM_RDONLY` when the original attachment was read-only (its smaps
//! `VmFlags` lack `mw`: such a mapping can never be made writable, so the
//! flag must be reproduced; a read-write attachment later `mprotect`ed
//! read-only keeps `mw` and is attached read-write, then `mprotect`ed),
//! `SHM_EXEC` when the mapping is executable, and `SHM_REMAP` when something
//! is already mapped there. Not `SHM_RND`: the address is already exact.
//! Then unmap the parts of the attachment the image does not show (a
//! partly `munmap`ped attachment) and `mprotect` each piece to its `prot`.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use nix::errno::Errno;

use crate::error::{Context, Error, Result};
use crate::image::{
    DataPrefix, ImageError, Kind, MsgQueue, Record, SPACE_SYSV_SHM, SemSet, SysvShm,
};
use crate::sys::ipc::{self as sys, Class, SHM_LOCKED, ShmAttach};

/// `shmat` flags that reproduce an attachment: `SHM_RDONLY` unless the
/// mapping may be written (`mw` in its smaps `VmFlags`), `SHM_EXEC` if
/// `prot` has `PROT_EXEC`. Add `SHM_REMAP` to replace what is mapped there.
pub fn attach_flags(prot: u32, may_write: bool) -> i32 {
    let mut f = 0;
    if !may_write {
        f |= libc::SHM_RDONLY;
    }
    if prot & libc::PROT_EXEC as u32 != 0 {
        f |= libc::SHM_EXEC;
    }
    f
}

/// Restores the SysV IPC objects of an image; see the module documentation.
#[derive(Debug, Default)]
pub struct IpcRestore {
    queues: Vec<MsgQueue>,
    sets: Vec<SemSet>,
    segments: Vec<SysvShm>,
    /// Objects this restore created, in creation order.
    created: Vec<(Class, i32)>,
    /// Sizes of the segments this restore created.
    sizes: HashMap<i32, u64>,
    /// The restorer's own attachment of each segment being filled.
    attached: HashMap<i32, ShmAttach>,
    committed: bool,
}

fn what(class: Class, id: i32) -> String {
    format!("cannot restore {} {id}", class.noun())
}

impl IpcRestore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a `MSGQ`, `SEMSET` or `SYSV_SHM` record; returns whether it
    /// was one.
    pub fn add(&mut self, rec: &Record) -> Result<bool> {
        match rec.kind {
            Kind::MSGQ => self.queues.push(rec.decode()?),
            Kind::SEMSET => self.sets.push(rec.decode()?),
            Kind::SYSV_SHM => self.segments.push(rec.decode()?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Whether the image held no IPC object.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty() && self.sets.is_empty() && self.segments.is_empty()
    }

    pub fn queues(&self) -> &[MsgQueue] {
        &self.queues
    }
    pub fn sem_sets(&self) -> &[SemSet] {
        &self.sets
    }
    pub fn segments(&self) -> &[SysvShm] {
        &self.segments
    }

    /// Creates every object with its id, key, owners, mode and contents
    /// (messages, semaphore values; segments empty until
    /// [`shm_contents`](Self::shm_contents)). On error, what was created is
    /// removed again.
    pub fn create(&mut self) -> Result<()> {
        let r = self.check_free().and_then(|()| self.create_all());
        if r.is_err() {
            self.undo();
        }
        r
    }

    /// Refuses duplicates in the image and ids or keys already in use.
    fn check_free(&self) -> Result<()> {
        let objs = self
            .queues
            .iter()
            .map(|q| (Class::Msg, q.id, q.perm.key))
            .chain(self.sets.iter().map(|s| (Class::Sem, s.id, s.perm.key)))
            .chain(self.segments.iter().map(|s| (Class::Shm, s.id, s.perm.key)));
        let mut ids = HashSet::new();
        let mut keys = HashSet::new();
        for (class, id, key) in objs {
            if id < 0 {
                return Err(Error::msg(format!(
                    "{}: invalid id in the image",
                    what(class, id)
                )));
            }
            if !ids.insert((class, id)) {
                return Err(Error::msg(format!(
                    "{}: the image holds it twice",
                    what(class, id)
                )));
            }
            if key != libc::IPC_PRIVATE && !keys.insert((class, key)) {
                return Err(Error::msg(format!(
                    "{}: the image holds key {key:#x} twice",
                    what(class, id)
                )));
            }
            check_id_free(class, id)?;
            if key != libc::IPC_PRIVATE {
                check_key_free(class, id, key)?;
            }
        }
        Ok(())
    }

    fn create_all(&mut self) -> Result<()> {
        for q in std::mem::take(&mut self.queues) {
            let r = self.create_queue(&q);
            self.queues.push(q);
            r?;
        }
        for s in std::mem::take(&mut self.sets) {
            let r = self.create_set(&s);
            self.sets.push(s);
            r?;
        }
        for s in std::mem::take(&mut self.segments) {
            let r = self.create_segment(&s);
            self.segments.push(s);
            r?;
        }
        Ok(())
    }

    /// Creates one object with id `id` through `make` (run as its creator),
    /// and records it for [`undo`](Self::undo).
    fn create_with_id(
        &mut self,
        class: Class,
        id: i32,
        cuid: u32,
        cgid: u32,
        make: impl FnOnce() -> nix::Result<i32> + Send,
    ) -> Result<()> {
        sys::set_next_id(class, id).map_err(|e| {
            Error::msg(format!(
                "{}: cannot choose its id ({e}); is CONFIG_CHECKPOINT_RESTORE set?",
                what(class, id)
            ))
        })?;
        let got = match sys::with_creator(cuid, cgid, make) {
            Ok(Ok(got)) => got,
            Ok(Err(e)) => {
                let _ = sys::clear_next_id(class);
                return Err(match e {
                    Errno::EEXIST => Error::msg(format!("{}: key already in use", what(class, id))),
                    e => Error::Sys {
                        what: what(class, id),
                        errno: e,
                    },
                });
            }
            Err(e) => {
                let _ = sys::clear_next_id(class);
                return Err(e.into());
            }
        };
        if got != id {
            let _ = remove(class, got);
            return Err(Error::msg(format!(
                "{}: id already in use (its slot is taken; the kernel offered {got})",
                what(class, id)
            )));
        }
        self.created.push((class, id));
        Ok(())
    }

    fn create_queue(&mut self, q: &MsgQueue) -> Result<()> {
        let (id, key, mode) = (q.id, q.perm.key, q.perm.mode);
        self.create_with_id(Class::Msg, id, q.perm.cuid, q.perm.cgid, move || {
            sys::msgget(
                key,
                libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as i32,
            )
        })?;
        let w = || what(Class::Msg, id);
        // Room for every message first; the image's qbytes last.
        let total: u64 = q.messages.iter().map(|m| m.data.len() as u64).sum();
        let st = sys::msg_stat(id).ctx(w)?;
        let qbytes_err = |e: Errno, qbytes: u64| match e {
            Errno::EPERM => Error::msg(format!(
                "{}: a queue of {qbytes} bytes is larger than this namespace's msgmnb \
                 allows without CAP_SYS_RESOURCE",
                w()
            )),
            e => Error::Sys {
                what: w(),
                errno: e,
            },
        };
        if st.qbytes < total {
            sys::msg_set(id, st.perm.uid, st.perm.gid, st.perm.mode, total)
                .map_err(|e| qbytes_err(e, total))?;
        }
        for (i, m) in q.messages.iter().enumerate() {
            if m.mtype <= 0 {
                return Err(Error::msg(format!(
                    "{}: message {i} has type {}, which is not positive",
                    w(),
                    m.mtype
                )));
            }
            match sys::msgsnd(id, m.mtype, &m.data, libc::IPC_NOWAIT) {
                Ok(()) => {}
                Err(Errno::EINVAL) => {
                    return Err(Error::msg(format!(
                        "{}: message {i} of {} bytes is larger than this system's msgmax ({})",
                        w(),
                        m.data.len(),
                        sys::msgmax().map_or("unknown".into(), |n| n.to_string())
                    )));
                }
                Err(e) => return Err(e).ctx(|| format!("{}: sending message {i}", w())),
            }
        }
        sys::msg_set(id, q.perm.uid, q.perm.gid, q.perm.mode, q.qbytes)
            .map_err(|e| qbytes_err(e, q.qbytes))
    }

    fn create_set(&mut self, s: &SemSet) -> Result<()> {
        let (id, key, mode) = (s.id, s.perm.key, s.perm.mode);
        let w = || what(Class::Sem, id);
        if s.values.is_empty() {
            return Err(Error::msg(format!(
                "{}: the image gives it no semaphores",
                w()
            )));
        }
        let n = s.values.len() as u32;
        self.create_with_id(Class::Sem, id, s.perm.cuid, s.perm.cgid, move || {
            sys::semget(
                key,
                n,
                libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as i32,
            )
        })?;
        sys::sem_setall(id, &s.values).ctx(|| format!("{}: setting its values", w()))?;
        sys::sem_set(id, s.perm.uid, s.perm.gid, s.perm.mode).ctx(w)
    }

    fn create_segment(&mut self, s: &SysvShm) -> Result<()> {
        let (id, key, mode, size) = (s.id, s.perm.key, s.perm.mode, s.size);
        let w = || what(Class::Shm, id);
        self.create_with_id(Class::Shm, id, s.perm.cuid, s.perm.cgid, move || {
            sys::shmget(
                key,
                size,
                libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as i32,
            )
        })?;
        self.sizes.insert(id, size);
        sys::shm_set(id, s.perm.uid, s.perm.gid, s.perm.mode).ctx(w)?;
        if s.perm.mode & SHM_LOCKED != 0 {
            sys::shm_lock(id).ctx(|| format!("{}: locking it in memory", w()))?;
        }
        Ok(())
    }

    /// Writes `data` at `offset` of segment `shmid` (from a `PAGES` record
    /// of space `SPACE_SYSV_SHM`). Call after [`create`](Self::create).
    pub fn shm_contents(&mut self, shmid: u64, offset: u64, data: &[u8]) -> Result<()> {
        let id = i32::try_from(shmid)
            .ok()
            .filter(|id| self.sizes.contains_key(id))
            .ok_or_else(|| {
                Error::msg(format!(
                    "corrupt image: contents for shared memory segment {shmid}, \
                     which the image does not declare (or create() was not called)"
                ))
            })?;
        let size = self.sizes[&id];
        if offset
            .checked_add(data.len() as u64)
            .is_none_or(|end| end > size)
        {
            return Err(Error::msg(format!(
                "corrupt image: contents at offset {offset} (+{}) of shared memory segment \
                 {id} lie beyond its size {size}",
                data.len()
            )));
        }
        let att = match self.attached.entry(id) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(
                ShmAttach::attach(id, 0)
                    .ctx(|| format!("attaching shared memory segment {id} to fill it"))?,
            ),
        };
        att.write_at(offset as usize, data)
            .ctx(|| format!("filling shared memory segment {id}"))
    }

    /// Takes a `PAGES` or `ZERO` record of space `SPACE_SYSV_SHM` (a `ZERO`
    /// needs nothing: new segments are zero); returns whether it was one.
    pub fn add_data(&mut self, rec: &Record) -> Result<bool> {
        if rec.kind != Kind::PAGES && rec.kind != Kind::ZERO {
            return Ok(false);
        }
        let Some((prefix, data)) = DataPrefix::parse(&rec.payload) else {
            return Err(ImageError::Corrupt {
                seq: rec.seq,
                kind: rec.kind,
                reason: "payload shorter than its prefix".into(),
            }
            .into());
        };
        if prefix.space != SPACE_SYSV_SHM {
            return Ok(false);
        }
        if rec.kind == Kind::PAGES {
            self.shm_contents(prefix.id, prefix.addr, data)?;
        }
        Ok(true)
    }

    /// Drops the restorer's attachments and marks `removed` segments
    /// `IPC_RMID` (they live while restored processes keep them attached).
    pub fn finish(&mut self) -> Result<()> {
        self.attached.clear();
        for s in &self.segments {
            if s.removed && self.sizes.contains_key(&s.id) {
                sys::shm_rmid(s.id)
                    .ctx(|| format!("marking shared memory segment {} removed", s.id))?;
            }
        }
        Ok(())
    }

    /// The restore succeeded: keep the objects.
    pub fn commit(&mut self) {
        self.attached.clear();
        self.committed = true;
    }

    /// Removes every object this restore created (unless committed).
    pub fn undo(&mut self) {
        self.attached.clear();
        if self.committed {
            return;
        }
        for (class, id) in self.created.drain(..).rev() {
            let _ = remove(class, id);
        }
        self.sizes.clear();
    }
}

impl Drop for IpcRestore {
    fn drop(&mut self) {
        self.undo();
    }
}

fn remove(class: Class, id: i32) -> nix::Result<()> {
    match class {
        Class::Msg => sys::msg_rmid(id),
        Class::Sem => sys::sem_rmid(id),
        Class::Shm => sys::shm_rmid(id),
    }
}

fn check_id_free(class: Class, id: i32) -> Result<()> {
    let taken = match class {
        Class::Msg => sys::msg_stat(id).map(drop),
        Class::Sem => sys::sem_stat(id).map(drop),
        Class::Shm => sys::shm_stat(id).map(drop),
    };
    match taken {
        Ok(()) | Err(Errno::EACCES) | Err(Errno::EPERM) => Err(Error::msg(format!(
            "{}: id already in use",
            what(class, id)
        ))),
        Err(_) => Ok(()),
    }
}

fn check_key_free(class: Class, id: i32, key: i32) -> Result<()> {
    let other = match class {
        Class::Msg => sys::msgget(key, 0),
        Class::Sem => sys::semget(key, 0, 0),
        Class::Shm => sys::shmget(key, 0, 0),
    };
    match other {
        Ok(other) => Err(Error::msg(format!(
            "{}: key {key:#x} already in use (by {} {other})",
            what(class, id),
            class.noun()
        ))),
        Err(Errno::ENOENT) => Ok(()),
        Err(_) => Err(Error::msg(format!(
            "{}: key {key:#x} already in use",
            what(class, id)
        ))),
    }
}
