//! memfds and mapped deleted files at restore: each `SHMEM` object is a
//! memfd the restorer makes (with the memfd's name), fills from its page
//! data, then seals as it was; processes map it through
//! `/proc/<restorer>/fd/N`, and a memfd descriptor is a new open of it,
//! so descriptors and mappings share one object as before.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd, RawFd};

use nix::sys::stat::Mode;

use crate::error::{Context, Error, Result};
use crate::image::{Fault, File, FileType, Shmem};
use crate::sys::{events, fds};

use super::files::OpenFiles;

/// The longest name `memfd_create` takes (`NAME_MAX` less `memfd:`).
const MAX_NAME: usize = 249;

/// Makes the memfd of one object, sized; sealing comes after its contents.
pub fn create(s: &Shmem) -> Result<OwnedFd> {
    let mut name: Vec<u8> = if s.file && !s.name.is_empty() {
        s.name.iter().copied().filter(|&c| c != 0).collect()
    } else {
        b"crtools-shmem".to_vec()
    };
    name.truncate(MAX_NAME);
    let name = CString::new(name).map_err(|_| Error::msg("memfd name with a NUL byte"))?;
    let fd = events::memfd_create(&name, libc::MFD_ALLOW_SEALING)
        .ctx(|| "cannot create shared memory".into())?;
    nix::unistd::ftruncate(&fd, s.size as i64).ctx(|| "cannot size shared memory".into())?;
    Ok(fd)
}

/// Seals each object as it was, once its contents are in.
pub fn seal_all(objs: &HashMap<u64, Shmem>, fds: &HashMap<u64, OwnedFd>) -> Result<()> {
    for s in objs.values().filter(|s| s.seals != 0) {
        if let Some(fd) = fds.get(&s.id) {
            events::add_seals(fd.as_fd(), s.seals).ctx(|| {
                format!(
                    "cannot seal memfd {} with {:#x}",
                    String::from_utf8_lossy(&s.name),
                    s.seals
                )
            })?;
        }
    }
    Ok(())
}

/// Checks that every memfd `FILE` names a `SHMEM` object of the image
/// (part of `Meta::validate`).
pub fn check(
    files: &HashMap<u64, super::meta::FileImage>,
    shmem: &HashMap<u64, Shmem>,
) -> std::result::Result<(), Fault> {
    for f in files.values().filter(|f| f.kind == FileType::Memfd) {
        if !shmem.contains_key(&f.object_id) {
            return Err(Fault::MemfdObject { file_id: f.id });
        }
    }
    Ok(())
}

impl OpenFiles {
    /// A new open of a memfd object, with the image's flags and offset.
    pub(super) fn open_memfd(&self, f: &File) -> Result<OwnedFd> {
        let name = || String::from_utf8_lossy(&f.link).into_owned();
        // Validation (`check`) found the object; the restorer made a memfd
        // of every object before any file is opened.
        let held: RawFd = *self
            .shm
            .get(&f.object_id)
            .ok_or_else(|| super::meta::unresolved(f))?;
        let again = format!("/proc/self/fd/{held}");
        let fd = fds::open(
            again.as_str(),
            super::files::reopen_flags(f.flags),
            Mode::empty(),
        )
        .ctx(|| format!("cannot open {}", name()))?;
        nix::unistd::lseek(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            f.pos as i64,
            nix::unistd::Whence::SeekSet,
        )
        .ctx(|| format!("cannot seek in {}", name()))?;
        Ok(fd)
    }
}
