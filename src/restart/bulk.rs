//! The bulk data of an image (page contents, shared memory, SysV
//! segments, deleted files' contents, pipe and socket data), streamed
//! straight into the objects being built, each record checked against
//! what the metadata said the object holds.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;

use super::files::OpenFiles;
use super::meta::Meta;
use super::{Building, inject, ipc, pages, spool};
use crate::error::{Context, Result};
use crate::image::{self, DataPrefix, DataTarget, Fault, Kind, RawRecord};
use crate::sys::mem;

/// Where the bulk data goes.
pub(crate) struct Sinks<'a> {
    pub meta: &'a Meta,
    pub ipc: &'a mut ipc::IpcRestore,
    /// The pre-copied pages (`ckpt --live`).
    pub staged: &'a mut super::precopy::Staging,
    pub shm_fds: &'a HashMap<u64, OwnedFd>,
    /// Objects already holding their contents (a file of `/dev/shm` found
    /// identical).
    pub shm_reused: &'a std::collections::HashSet<u64>,
    pub open: &'a OpenFiles,
}

/// Streams the bulk records, starting with `next`, into `building` and
/// `sinks`. When it returns, the end record has been read and matched.
pub(crate) fn stream_bulk<R: Read>(
    building: &mut [Building],
    sinks: &mut Sinks,
    mut next: Option<RawRecord>,
    source: &mut spool::Source<'_, R>,
) -> Result<()> {
    let zeros = vec![0u8; image::CHUNK];
    let mut thp = pages::Thp::new(building);
    // `FORK_PAGES` come first; here only when not shared (see `cow`).
    let mut fork_section = true;
    // Made at the first record after the `FORK_PAGES` (written with
    // process_vm_writev, which fails in a registered range), or here for
    // a live image, which has none; closed (every range unregistered)
    // when this returns, also on error.
    let mut fill: Option<pages::Fill> = None;
    // Pre-copied pages first: the final part's pages are others. Placed
    // with `UFFDIO_COPY` where the process's userfaultfd takes them (each
    // page allocated with its contents, not zeroed first).
    let staged = &mut *sinks.staged;
    if building.iter().any(|bp| !bp.pi.mm.precopied.is_empty()) {
        fill = Some(pages::Fill::new(building, staged)?);
    }
    // What the final part wrote into the process keeping pages in place.
    let mut written: Vec<(u64, u64)> = Vec::new();
    place_precopied(building, &mut thp, &mut fill, staged)?;
    while let Some(raw) = next {
        let rec = raw.decode()?;
        let (pre, data) =
            DataPrefix::parse(&rec.payload).ok_or(Fault::ShortData { seq: rec.seq })?;
        if rec.kind == Kind::FORK_PAGES {
            let live = fork_section && fill.is_some();
            if live || !fork_section || pre.space != image::SPACE_PROCESS {
                return Err(Fault::ForkPages {
                    seq: rec.seq,
                    live,
                    per_process: false,
                }
                .into());
            }
            let data = super::cow::fork_data(rec.seq, &pre, data, &zeros)?;
            let i = building
                .iter()
                .position(|x| x.pi.p.pid as u64 == pre.id)
                .ok_or(Fault::PagesUnknownProcess { id: pre.id })?;
            process_pages(
                &mut building[i],
                &mut thp,
                &mut pages::Fill::none(),
                &pre,
                data,
            )?;
            super::cow::propagate(building, i, pre.addr, data)?;
            inject::check("pages")?;
            next = source.next_record()?;
            continue;
        }
        fork_section = false;
        let fill = match &mut fill {
            Some(f) => f,
            None => fill.insert(pages::Fill::new(building, sinks.staged)?),
        };
        let data: &[u8] = if rec.kind == Kind::ZERO {
            let len = data.get(..8).ok_or(Fault::ZeroNoLength { seq: rec.seq })?;
            let zlen = u64::from_le_bytes([
                len[0], len[1], len[2], len[3], len[4], len[5], len[6], len[7],
            ]);
            zeros
                .get(..zlen.try_into().unwrap_or(usize::MAX))
                .ok_or(Fault::ZeroTooLong { seq: rec.seq })?
        } else if matches!(rec.kind, Kind::PAGES | Kind::BLOB) {
            data
        } else {
            return Err(Fault::MetaAfterData { kind: rec.kind }.into());
        };
        if pre.space == image::SPACE_PROCESS {
            let bp = building
                .iter_mut()
                .find(|x| x.pi.p.pid as u64 == pre.id)
                .ok_or(Fault::PagesUnknownProcess { id: pre.id })?;
            process_pages(bp, &mut thp, fill, &pre, data)?;
            if !sinks.staged.kept(bp.pi.p.pid).is_empty() {
                written.push((pre.addr, pre.addr + data.len() as u64));
            }
        } else {
            object_data(sinks, &pre, data)?;
        }
        inject::check("pages")?;
        next = source.next_record()?;
    }
    for bp in building.iter_mut() {
        sinks.staged.drop_stale(bp, &written)?;
    }
    Ok(())
}

/// Writes each process's pre-copied pages (its `precopied` ranges, from
/// the staged rounds) before the final part's: through `fill` where its
/// userfaultfd takes them, else with `process_vm_writev`; pages kept in
/// place in the root need no copy.
fn place_precopied(
    building: &mut [Building],
    thp: &mut pages::Thp,
    fill: &mut Option<pages::Fill>,
    staged: &mut super::precopy::Staging,
) -> Result<()> {
    for bp in building.iter_mut() {
        let ranges = &bp.pi.mm.precopied;
        if ranges.is_empty() {
            continue;
        }
        for r in ranges.iter() {
            if !bp.writable.iter().any(|&(s, e)| s <= r.start && r.end <= e) {
                return Err(Fault::PagesOutside {
                    id: bp.pi.p.pid as u64,
                    start: r.start,
                    end: r.end,
                }
                .into());
            }
            thp.before_write(bp, r.start)?;
        }
        let runs = staged.runs(bp.pi.p.pid, ranges)?;
        let mut rest = Vec::new();
        for (addr, data) in runs {
            let done = match fill {
                Some(f) => f.write(bp.pid, addr, data)?,
                None => 0,
            };
            if done < data.len() {
                rest.push((addr + done as u64, &data[done..]));
            }
        }
        super::precopy::Staging::write_pieces(bp.pid, &rest, &mut bp.b.mem)?;
        crate::progress::add_kept(staged.kept_bytes(bp.pi.p.pid));
    }
    // Every pre-copied page is in: the root's kept pages become its own
    // alone.
    staged.release_placed();
    Ok(())
}

/// Writes page contents into a process being built.
fn process_pages(
    bp: &mut Building,
    thp: &mut pages::Thp,
    fill: &mut pages::Fill,
    pre: &DataPrefix,
    data: &[u8],
) -> Result<()> {
    let end = pre.addr.saturating_add(data.len() as u64);
    if !bp.writable.iter().any(|&(s, e)| s <= pre.addr && end <= e) {
        return Err(Fault::PagesOutside {
            id: pre.id,
            start: pre.addr,
            end,
        }
        .into());
    }
    thp.before_write(bp, pre.addr)?;
    let placed = fill.write(bp.pid, pre.addr, data)?;
    if placed == data.len() {
        return Ok(());
    }
    mem::write_all(
        bp.pid,
        pre.addr + placed as u64,
        &data[placed..],
        &mut bp.b.mem,
    )
    .ctx(|| format!("cannot write memory of process {}", bp.pid))
}

/// Writes the data of an object the restorer holds: shared memory, a
/// deleted file, a SysV segment, a socket's or a pipe's queue.
fn object_data(sinks: &mut Sinks, pre: &DataPrefix, data: &[u8]) -> Result<()> {
    let meta = sinks.meta;
    let id = pre.id;
    let end = pre.addr.saturating_add(data.len() as u64);
    let check = |target, size: Option<u64>| -> Result<()> {
        match size {
            None => Err(Fault::DataUnknown { target, id }.into()),
            Some(size) if end > size => Err(Fault::DataBeyond { target, id }.into()),
            Some(_) => Ok(()),
        }
    };
    match pre.space {
        image::SPACE_SHMEM => {
            check(
                DataTarget::SharedMemory,
                meta.shmem().get(&id).map(|s| s.size),
            )?;
            let fd = sinks.shm_fds.get(&id).ok_or(Fault::DataUnknown {
                target: DataTarget::SharedMemory,
                id,
            })?;
            if sinks.shm_reused.contains(&id) {
                return Ok(());
            }
            let f = std::fs::File::from(fd.try_clone().ctx(|| "dup".into())?);
            f.write_all_at(data, pre.addr)
                .ctx(|| "cannot fill shared memory".into())
        }
        image::SPACE_FILE => {
            let fd = sinks.open.blob_target(id).ok_or(Fault::DataUnknown {
                target: DataTarget::File,
                id,
            })?;
            check(
                DataTarget::File,
                Some(meta.files().get(&id).map(|f| f.size).unwrap_or(0)),
            )?;
            crate::sys::fds::pwrite_all(fd, data, pre.addr)
                .ctx(|| "cannot write the contents of a deleted file".into())?;
            Ok(())
        }
        image::SPACE_SYSV_SHM => sinks.ipc.shm_contents(id, pre.addr, data),
        image::SPACE_SOCKET => {
            check(
                DataTarget::Socket,
                meta.sockets().get(&id).map(|s| s.data_len),
            )?;
            sinks.open.fill_socket(id, data)
        }
        image::SPACE_PIPE => {
            check(DataTarget::Pipe, meta.pipes().get(&id).map(|p| p.data_len))?;
            sinks.open.fill_pipe(id, data)
        }
        space => Err(Fault::UnknownSpace { space }.into()),
    }
}
