//! The bulk data of a restore: page contents, shared memory, contents of
//! deleted files and pipe data, streamed from the image into the tree.
//!
//! Each record is written into its process with one `process_vm_writev`
//! straight from the record's buffer. (A writer thread overlapping reads
//! and writes was measured and dropped: on this 2-CPU machine, shared with
//! builds, it cost 40% more CPU time than it saved in waiting: the payload
//! crosses to the other CPU's cache, and more buffers in flight made glibc
//! map fresh pages for them.)
//!
//! Mappings that had transparent huge pages (`VMA_F_HUGEPAGE`) are advised
//! `MADV_HUGEPAGE` before their first page is written, so the kernel fills
//! them with huge pages (and zeroes 2 MiB at a time, which is also faster).

use std::collections::HashMap;
use std::fs::File as StdFile;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;

use super::{Building, Meta, corrupt, files, spool};
use crate::error::{Context, Result};
use crate::image::{self, DataPrefix, Kind, RawRecord};
use crate::sys::mem;
use crate::sys::remote::nr;

/// Streams the bulk records, `next` first, into the tree; returns once the
/// end record has been read and matched.
pub(super) fn restore_bulk<R: Read>(
    next: Option<RawRecord>,
    source: &mut spool::Source<'_, R>,
    building: &mut [Building<'_>],
    meta: &Meta,
    shm_fds: &HashMap<u64, OwnedFd>,
    open: &files::OpenFiles,
) -> Result<()> {
    dispatch(next, source, building, meta, shm_fds, open)
}

/// Reads and checks every bulk record and puts its data in place.
fn dispatch<R: Read>(
    mut next: Option<RawRecord>,
    source: &mut spool::Source<'_, R>,
    building: &mut [Building<'_>],
    meta: &Meta,
    shm_fds: &HashMap<u64, OwnedFd>,
    open: &files::OpenFiles,
) -> Result<()> {
    let zeros = vec![0u8; image::CHUNK];
    // Mappings to advise MADV_HUGEPAGE before their first page: (pid, start, end).
    let mut huge: Vec<(i32, u64, u64)> = building
        .iter()
        .flat_map(|bp| {
            bp.pi.mm.iter().flat_map(move |mm| {
                mm.vmas
                    .iter()
                    .filter(|v| v.flags & image::VMA_F_HUGEPAGE != 0 && v.dumped_pages > 0)
                    .map(move |v| (bp.pid, v.start, v.end))
            })
        })
        .collect();
    while let Some(raw) = next {
        let rec = raw.decode()?;
        let (pre, data) = DataPrefix::parse(&rec.payload)
            .ok_or_else(|| corrupt(format!("record {} is too short for its kind", rec.seq)))?;
        let zlen = if rec.kind == Kind::ZERO {
            if data.len() < 8 {
                return Err(corrupt(format!("zero record {} has no length", rec.seq)));
            }
            let zlen = u64::from_le_bytes(data[..8].try_into().expect("8 bytes")) as usize;
            if zlen > image::CHUNK {
                return Err(corrupt(format!("zero record {} is too long", rec.seq)));
            }
            Some(zlen)
        } else if matches!(rec.kind, Kind::PAGES | Kind::BLOB) {
            None
        } else {
            return Err(corrupt(format!(
                "a {} record after the page data began",
                rec.kind
            )));
        };
        let len = zlen.unwrap_or(data.len());
        match pre.space {
            image::SPACE_PROCESS => {
                let bp = building
                    .iter_mut()
                    .find(|x| x.pi.p.pid as u64 == pre.id)
                    .ok_or_else(|| corrupt(format!("pages for unknown process {}", pre.id)))?;
                let end = pre.addr.saturating_add(len as u64);
                if !bp.writable.iter().any(|&(s, e)| s <= pre.addr && end <= e) {
                    return Err(corrupt(format!(
                        "pages at {:#x}-{:#x} of process {} lie outside its mappings",
                        pre.addr, end, pre.id
                    )));
                }
                let pid = bp.pid;
                if let Some(i) = huge
                    .iter()
                    .position(|&(p, s, e)| p == pid && s <= pre.addr && pre.addr < e)
                {
                    let (_, s, e) = huge.swap_remove(i);
                    bp.b.call(nr::MADVISE, &[s, e - s, libc::MADV_HUGEPAGE as u64])?;
                }
                let data = match zlen {
                    Some(len) => &zeros[..len],
                    None => data,
                };
                mem::write_all(pid, pre.addr, data, &mut bp.b.mem)
                    .ctx(|| format!("cannot write memory of process {pid}"))?;
            }
            image::SPACE_SHMEM => {
                let data = bulk_bytes(data, zlen);
                let s = meta.shmem.get(&pre.id).ok_or_else(|| {
                    corrupt(format!("pages for unknown shared memory {}", pre.id))
                })?;
                if pre.addr.saturating_add(data.len() as u64) > s.size {
                    return Err(corrupt(format!(
                        "pages beyond the end of shared memory {}",
                        pre.id
                    )));
                }
                let f = StdFile::from(shm_fds[&pre.id].try_clone().ctx(|| "dup".into())?);
                f.write_all_at(&data, pre.addr)
                    .ctx(|| "cannot fill shared memory".into())?;
            }
            image::SPACE_FILE => {
                let data = bulk_bytes(data, zlen);
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
                    &data,
                    pre.addr as i64,
                )
                .ctx(|| "cannot write the contents of a deleted file".into())?;
            }
            image::SPACE_PIPE => {
                let data = bulk_bytes(data, zlen);
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
                open.fill_pipe(pre.id, &data)?;
            }
            s => return Err(corrupt(format!("data for unknown space {s}"))),
        }
        next = source.next()?;
    }
    Ok(())
}

/// A record's bytes: its data, or `zlen` zeros for a `ZERO` record.
fn bulk_bytes(data: &[u8], zlen: Option<usize>) -> std::borrow::Cow<'_, [u8]> {
    match zlen {
        Some(n) => std::borrow::Cow::Owned(vec![0u8; n]),
        None => std::borrow::Cow::Borrowed(data),
    }
}
