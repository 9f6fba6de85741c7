//! memfds and deleted files that are mapped, at checkpoint: each becomes
//! one `SHMEM` object (contents once, however many processes map it or
//! hold it open), with its memfd name and seals. A mapping of it is a
//! `VMA_SHARED_ANON` mapping of that object (shared or private, as it
//! was); a descriptor of it is a `FILE` of type `FT_MEMFD` whose
//! `object_id` is the object. So a deleted file mapped shared by several
//! processes (python3 multiprocessing's POSIX semaphores) stays one
//! shared object after the restore. Files of `/dev/shm` are such objects
//! too, with their names (`posixshm.rs`).

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use crate::error::{Context, Result};
use crate::image::{self, FdTable, File, Shmem};
use crate::sys::events;

/// The object id of a file held as shared memory: its device in the high
/// bits, its inode in the low (shared anonymous memory uses its inode
/// alone, on a device of its own).
pub fn object_id(dev: u64, ino: u64) -> u64 {
    (dev << 32) ^ ino
}

/// The memfd name of a link or maps path (`/memfd:NAME`, ` (deleted)`
/// already stripped), or its file name for a deleted file.
fn name_of(path: &[u8]) -> Vec<u8> {
    if let Some(n) = path.strip_prefix(b"/memfd:") {
        return n.to_vec();
    }
    path.rsplit(|&c| c == b'/').next().unwrap_or(path).to_vec()
}

/// The `SHMEM` record of the file at `path` (a `/proc` link to it), made
/// on first sight; returns its id.
pub fn object(shmem: &mut HashMap<u64, Shmem>, link: &str, shown: &[u8]) -> Result<u64> {
    let f = std::fs::File::open(link).ctx(|| format!("cannot checkpoint: cannot open {link}"))?;
    let st = f
        .metadata()
        .ctx(|| format!("cannot checkpoint: cannot stat {link}"))?;
    let id = object_id(st.dev(), st.ino());
    shmem.entry(id).or_insert_with(|| Shmem {
        id,
        size: st.size(),
        ino: st.ino(),
        name: name_of(shown),
        // Seals belong to the inode: any open description shows them.
        seals: events::get_seals(f.as_fd()).unwrap_or(0),
        file: true,
    });
    Ok(id)
}

/// Ties each memfd descriptor, and each deleted file that is also mapped,
/// to its `SHMEM` object; memfds nobody maps get one here. Returns, for
/// the objects made here, where to read their contents.
pub fn link_files(
    files: &mut [File],
    fdtables: &[FdTable],
    shmem: &mut HashMap<u64, Shmem>,
) -> Result<Vec<(u64, String)>> {
    let mut sources = Vec::new();
    for f in files.iter_mut() {
        let memfd = f.ftype == image::FT_MEMFD || f.ftype == image::FT_POSIX_SHM;
        let mapped_deleted = f.ftype == image::FT_REGULAR
            && f.deleted
            && shmem.contains_key(&object_id(f.dev, f.ino));
        if !memfd && !mapped_deleted {
            continue;
        }
        let Some((pid, fd)) = FdTable::holder(fdtables, f.id) else {
            continue;
        };
        let link = format!("/proc/{pid}/fd/{fd}");
        let had = shmem.len();
        f.object_id = object(shmem, &link, &f.path)?;
        if shmem.len() > had {
            sources.push((f.object_id, link));
        }
        if f.ftype != image::FT_POSIX_SHM {
            f.ftype = image::FT_MEMFD;
        }
        // Contents go with the object, not as the file's BLOBs.
        f.deleted = false;
    }
    Ok(sources)
}
