//! POSIX shared memory at restore: each `POSIX_SHM` object is put back in
//! `/dev/shm` under its name before any process exists. The file is made
//! (`O_CREAT | O_EXCL`, its mode set as it was) with the credentials of
//! the first process that maps or holds it whose uid owned it (else the
//! first), sized, and filled from its `SHMEM` object's page data; a file
//! of that name already here is used only if it is identical (same size
//! and SHA-256; the contents are then not written again) and every
//! process of the image that uses it may open it so (`faccessat2` with
//! its credentials); else the restore is refused naming it. Processes map
//! it through `/proc/<restorer>/fd/N` like any shared memory object
//! (`memfd.rs`), so several processes still share one object; a
//! descriptor of it is a new open of `/dev/shm/NAME` with the process's
//! credentials. A file made here is removed again if the restore fails
//! ([`Made`]).

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::asuser::Acting;
use super::meta::{FileImage, Live, Meta};
use crate::error::{Context, Error, Result};
use crate::image::{self, Fault, FileType, PosixShm, Shmem};
use crate::sys::{fds, fileid, threadcreds};

/// Where POSIX shared memory lives.
pub const DIR: &str = "/dev/shm";

/// The path of an object.
pub fn path_of(p: &PosixShm) -> String {
    format!("{DIR}/{}", String::from_utf8_lossy(&p.name))
}

/// Checks the `POSIX_SHM` records against the rest of the image (part of
/// `Meta::validate`): each names a `SHMEM` object of its size by a plain
/// name, once; every `FT_POSIX_SHM` file refers to one.
pub fn check(
    files: &HashMap<u64, FileImage>,
    shmem: &HashMap<u64, Shmem>,
    posix: &HashMap<u64, PosixShm>,
) -> std::result::Result<(), Fault> {
    let mut names = HashSet::new();
    for p in posix.values() {
        let bad = |why| Fault::PosixShm { id: p.id, why };
        let n = &p.name;
        if n.is_empty()
            || n.len() > 255
            || n.contains(&b'/')
            || n.contains(&0)
            || n == b"."
            || n == b".."
        {
            return Err(bad("has an impossible name"));
        }
        if !names.insert(n.clone()) {
            return Err(bad("has the name of another object"));
        }
        match shmem.get(&p.id) {
            None => return Err(bad("has no shared memory object")),
            Some(s) if s.size != p.size => {
                return Err(bad("differs in size from its shared memory object"));
            }
            Some(s) if s.seals != 0 => return Err(bad("is sealed (a file of /dev/shm cannot be)")),
            Some(_) => {}
        }
        if p.sha256.len() != 32 {
            return Err(bad("has no SHA-256 of its contents"));
        }
        if p.mode & !0o7777 != 0 {
            return Err(bad("has an impossible mode"));
        }
    }
    for f in files.values().filter(|f| f.kind == FileType::PosixShm) {
        if !posix.contains_key(&f.object_id) {
            return Err(Fault::PosixShmFile { file_id: f.id });
        }
    }
    Ok(())
}

/// The files this restore made in `/dev/shm`, removed when dropped unless
/// [`Made::keep`] was called (the tree was released).
#[derive(Default)]
pub struct Made {
    /// Path, device and inode of each.
    files: Vec<(String, u64, u64)>,
    kept: bool,
}

impl Made {
    /// The tree runs: the files are its.
    pub fn keep(&mut self) {
        self.kept = true;
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        for (path, dev, ino) in &self.files {
            // Only if it is still the file made here.
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.dev() == *dev && m.ino() == *ino) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// The processes that map or hold object `id`, each with whether it
/// needs to write to it.
fn users(meta: &Meta, id: u64) -> Vec<(&Live, bool)> {
    let mut out = Vec::new();
    for pi in meta.live() {
        let mut uses = false;
        let mut write = false;
        for v in pi.mm.vmas.iter() {
            if v.backing == image::Backing::SharedAnon && v.shmem_id == id {
                uses = true;
                write |= v.flags & image::VMA_F_SHARED != 0
                    && (v.prot & libc::PROT_WRITE as u32 != 0
                        || v.flags & image::VMA_F_MAYWRITE != 0);
            }
        }
        for d in pi.fds.iter() {
            if d.file.kind == FileType::PosixShm && d.file.object_id == id {
                uses = true;
                write |= d.file.flags as i32 & libc::O_ACCMODE != libc::O_RDONLY;
            }
        }
        if uses {
            out.push((pi, write));
        }
    }
    out
}

/// What [`open`] gives: the restorer's descriptor of the object, and
/// whether it is a file that was already here (identical: its contents
/// are not written).
pub struct Opened {
    pub fd: OwnedFd,
    pub reused: bool,
}

/// Makes (or finds, identical) the file of object `p` in `/dev/shm`;
/// a file made is recorded in `made`.
pub fn open(meta: &Meta, p: &PosixShm, made: &mut Made) -> Result<Opened> {
    let path = path_of(p);
    let users = users(meta, p.id);
    let creator = users
        .iter()
        .find(|(pi, _)| pi.p.creds.fsuid == p.uid)
        .or(users.first());
    let acting = match creator {
        Some((pi, _)) => Acting::of(&pi.p)?,
        None => Acting::restorer(),
    };
    let cannot =
        |why: String| Error::msg(format!("cannot restore POSIX shared memory {path}: {why}"));
    let cpath =
        CString::new(path.as_bytes()).map_err(|_| cannot("a NUL byte in its name".into()))?;
    let made_fd = acting.run(|| {
        match fds::open(
            cpath.as_c_str(),
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(p.mode),
        ) {
            Ok(fd) => Ok(Some(fd)),
            Err(nix::errno::Errno::EEXIST) => Ok(None),
            Err(e) => Err(cannot(format!("cannot create it: {}", e.desc()))),
        }
    })?;
    if let Some(fd) = made_fd {
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| cannot(e.desc().into()))?;
        made.files.push((path.clone(), st.st_dev, st.st_ino));
        // The umask may have taken bits away.
        nix::sys::stat::fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(p.mode))
            .map_err(|e| cannot(format!("cannot set its mode: {}", e.desc())))?;
        nix::unistd::ftruncate(&fd, p.size as i64)
            .map_err(|e| cannot(format!("cannot size it to {} bytes: {}", p.size, e.desc())))?;
        return Ok(Opened { fd, reused: false });
    }
    // A file of that name is here: used only if it is the same.
    let fd = acting.run(|| {
        fds::open(
            cpath.as_c_str(),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            cannot(format!(
                "a file of that name exists here and cannot be opened: {}",
                e.desc()
            ))
        })
    })?;
    let file = std::fs::File::from(fd);
    let st = file.metadata().map_err(|e| cannot(e.to_string()))?;
    let differs = if !st.is_file() {
        Some("it is not a regular file".to_string())
    } else if st.size() != p.size {
        Some(format!("{} bytes, the image's {}", st.size(), p.size))
    } else if fileid::sha256(&file).map_err(|e| cannot(e.to_string()))? != p.sha256 {
        Some("other contents".to_string())
    } else {
        None
    };
    if let Some(d) = differs {
        return Err(cannot(format!(
            "a different file of that name exists here ({d}); remove it, or restore where it is not"
        )));
    }
    // Every process that uses it must be allowed to, as it is here.
    for (pi, write) in &users {
        let mode = libc::R_OK | if *write { libc::W_OK } else { 0 };
        Acting::of(&pi.p)?.run(|| {
            threadcreds::may_access(file.as_fd(), c"", mode).map_err(|e| {
                cannot(format!(
                    "pid {} may not {} the file of that name here: {e}",
                    pi.p.pid,
                    if *write { "write" } else { "read" }
                ))
            })
        })?;
    }
    Ok(Opened {
        fd: OwnedFd::from(file),
        reused: true,
    })
}

impl super::files::OpenFiles {
    /// A new open of a file of `/dev/shm` by its path, with the process's
    /// credentials, flags and offset; it must be the object's file.
    pub(super) fn open_posix_shm(&self, f: &FileImage) -> Result<OwnedFd> {
        let name = String::from_utf8_lossy(&f.path).into_owned();
        // Validation (`check`) found the object, made before any file is
        // opened.
        let held = *self
            .shm
            .get(&f.object_id)
            .ok_or_else(|| super::meta::unresolved(f))?;
        let p = CString::new(f.path.clone())
            .map_err(|_| Error::msg("a path in the image contains a NUL byte"))?;
        let fd = self.acting.run(|| {
            fds::open(
                p.as_c_str(),
                super::files::reopen_flags(f.flags) | OFlag::O_NOFOLLOW,
                Mode::empty(),
            )
            .ctx(|| format!("cannot open {name}"))
        })?;
        let a = nix::sys::stat::fstat(fd.as_raw_fd()).ctx(|| format!("cannot stat {name}"))?;
        let b = nix::sys::stat::fstat(held).ctx(|| format!("cannot stat {name}"))?;
        if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
            return Err(Error::msg(format!(
                "cannot open {name}: it is not the POSIX shared memory object restored there"
            )));
        }
        nix::unistd::lseek(fd.as_raw_fd(), f.pos as i64, nix::unistd::Whence::SeekSet)
            .ctx(|| format!("cannot seek in {name}"))?;
        Ok(fd)
    }
}
