//! POSIX shared memory at checkpoint: files of `/dev/shm` (`shm_open`,
//! and the named semaphores of `sem_open`, `sem.NAME`) that the tree maps
//! or holds open. Each is a `SHMEM` object like a memfd (`memfd.rs`:
//! contents once, mapped shared by several processes it stays one object)
//! plus a `POSIX_SHM` record with its name, owner, mode and the SHA-256 of
//! its contents, so the restorer puts it back in `/dev/shm` by name (or
//! uses a file of that name it finds there, if identical). A descriptor
//! of one is a `FILE` of type `FT_POSIX_SHM`. A file of `/dev/shm` that
//! was unlinked is a deleted file (`memfd.rs`), and one in a directory
//! under `/dev/shm` an ordinary file.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

use crate::error::{Context, Result};
use crate::image::{self, FdTable, File, PosixShm, Shmem};
use crate::sys::fileid;

/// Where POSIX shared memory lives.
pub const DIR: &[u8] = b"/dev/shm/";

/// The `/dev/shm` name of a path (`/dev/shm/NAME`, nothing deeper), if it
/// is one.
pub fn name_of(path: &[u8]) -> Option<&[u8]> {
    let n = path.strip_prefix(DIR)?;
    (!n.is_empty() && !n.contains(&b'/') && n != b"." && n != b"..").then_some(n)
}

/// The name under which the file `st` (seen by process `pid`) is in its
/// `/dev/shm`: `name` if that is it, else any other name it has there
/// (glibc's `sem_open` maps a temporary name, then links the file under
/// its real one and removes the first: the mapping shows the removed
/// name). `None` when it is in no `/dev/shm` name.
fn name_in_dir(pid: u32, name: &[u8], st: &std::fs::Metadata) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let dir = format!("/proc/{pid}/root/dev/shm");
    let same = |m: &std::fs::Metadata| m.is_file() && m.dev() == st.dev() && m.ino() == st.ino();
    let direct = std::path::Path::new(&dir).join(std::ffi::OsStr::from_bytes(name));
    if std::fs::symlink_metadata(&direct).is_ok_and(|m| same(&m)) {
        return Some(name.to_vec());
    }
    std::fs::read_dir(&dir).ok()?.flatten().find_map(|e| {
        let n = e.file_name().as_bytes().to_vec();
        (e.metadata().is_ok_and(|m| same(&m)) && name_of(&[DIR, &n].concat()).is_some())
            .then_some(n)
    })
}

/// The `POSIX_SHM` records of the objects the tree maps (`maps`: each
/// process's pid and mappings) or holds open (`FT_POSIX_SHM` files, tied
/// to their objects by `memfd::link_files`), one per object; their
/// `SHMEM` objects lose the seals `F_GET_SEALS` shows for any tmpfs file
/// (`F_SEAL_SEAL`: a file of `/dev/shm` cannot be sealed).
pub fn collect<'a>(
    maps: impl Iterator<Item = (u32, &'a [image::Vma])>,
    files: &[File],
    fdtables: &[FdTable],
    shmem: &mut HashMap<u64, Shmem>,
) -> Result<Vec<PosixShm>> {
    // (object id, pid, name shown, a /proc link to the file)
    let mut found: Vec<(u64, u32, Vec<u8>, String)> = Vec::new();
    for (pid, vmas) in maps {
        for v in vmas {
            let Some(name) = name_of(&v.path) else {
                continue;
            };
            if v.backing != image::VMA_SHARED_ANON || !shmem.contains_key(&v.shmem_id) {
                continue;
            }
            let link = format!("/proc/{pid}/map_files/{:x}-{:x}", v.start, v.end);
            found.push((v.shmem_id, pid, name.to_vec(), link));
        }
    }
    for f in files.iter().filter(|f| f.ftype == image::FT_POSIX_SHM) {
        let Some(name) = name_of(&f.path) else {
            continue;
        };
        let holder = FdTable::holder(fdtables, f.id);
        if let Some((pid, fd)) = holder {
            let link = format!("/proc/{pid}/fd/{fd}");
            found.push((f.object_id, pid, name.to_vec(), link));
        }
    }
    let mut out: Vec<PosixShm> = Vec::new();
    for (id, pid, shown_name, link) in found {
        if out.iter().any(|p| p.id == id) {
            continue;
        }
        let shown = || format!("/dev/shm/{}", String::from_utf8_lossy(&shown_name));
        let file = std::fs::File::open(&link)
            .ctx(|| format!("cannot checkpoint POSIX shared memory {}", shown()))?;
        let st = file
            .metadata()
            .ctx(|| format!("cannot checkpoint POSIX shared memory {}", shown()))?;
        let Some(name) = name_in_dir(pid, &shown_name, &st) else {
            // Unlinked: a deleted file's object (`memfd.rs`).
            continue;
        };
        let sha256 = fileid::sha256(&file).ctx(|| {
            format!(
                "cannot checkpoint POSIX shared memory {}: cannot read it",
                shown()
            )
        })?;
        out.push(PosixShm {
            id,
            name,
            mode: st.mode() & 0o7777,
            uid: st.uid(),
            gid: st.gid(),
            size: shmem[&id].size,
            sha256,
        });
        if let Some(s) = shmem.get_mut(&id) {
            s.seals = 0;
            s.name = out.last().map(|p| p.name.clone()).unwrap_or_default();
        }
    }
    out.sort_by_key(|p| p.id);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_dev_shm_only() {
        assert_eq!(name_of(b"/dev/shm/psm_1234"), Some(&b"psm_1234"[..]));
        assert_eq!(name_of(b"/dev/shm/sem.mp-x"), Some(&b"sem.mp-x"[..]));
        assert_eq!(name_of(b"/dev/shm/"), None);
        assert_eq!(name_of(b"/dev/shm/dir/file"), None);
        assert_eq!(name_of(b"/dev/shm/.."), None);
        assert_eq!(name_of(b"/dev/shmx"), None);
        assert_eq!(name_of(b"/tmp/x"), None);
    }
}
