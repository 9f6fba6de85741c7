//! `ckpt --carry-files`: the contents of the files the tree maps or holds
//! open (its executables, libraries, data files) go into the image, so
//! that a host that lacks them, or has other versions, can still restore
//! it (see `restart/carry.rs`).
//!
//! Each file is read through the tree's own references to it
//! (`/proc/PID/map_files/START-END`, `/proc/PID/fd/N`), so what is carried
//! is the inode the process uses even if its path now names another file.
//! One `CARRY_FILE` per distinct path (size, mtime, SHA-256, ELF build
//! id), then, if it is carried, its contents in `CARRY_DATA` records of at
//! most [`image::CHUNK`] bytes. Files that would take the total past the
//! cap are recorded without contents: the restorer can still tell whether
//! its own copy is the same.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;

use crate::error::{Context, Result};
use crate::image::{self, CarryFile, DataPrefix, FdTable, Kind, Vma, Writer};
use crate::sys::{Pid, fileid};

/// What was carried, for reporting.
#[derive(Debug, Default, Clone, Copy)]
pub struct CarryStats {
    pub files: u64,
    pub carried: u64,
    pub bytes: u64,
}

/// Writes a `CARRY_FILE` (and `CARRY_DATA`s) for every regular file the
/// processes map (`procs`: pid and mappings) or hold open (`fdtables`),
/// carrying contents up to `cap` bytes in all.
pub fn write<'a, W: Write>(
    w: &mut Writer<W>,
    procs: impl Iterator<Item = (Pid, &'a [Vma])>,
    fdtables: &[FdTable],
    files: &[image::File],
    cap: u64,
) -> Result<CarryStats> {
    // (path, where to read it), first reference of each path.
    let mut seen = HashSet::new();
    let mut sources: Vec<(Vec<u8>, String)> = Vec::new();
    for (pid, vmas) in procs {
        for v in vmas.iter().filter(|v| v.backing == image::VMA_FILE) {
            if seen.insert(v.path.clone()) {
                let at = format!("/proc/{pid}/map_files/{:x}-{:x}", v.start, v.end);
                sources.push((v.path.clone(), at));
            }
        }
    }
    for t in fdtables {
        for d in t.fds.iter() {
            let Some(f) = files.iter().find(|f| f.id == d.file_id) else {
                continue;
            };
            if f.ftype == image::FT_REGULAR && !f.deleted && seen.insert(f.path.clone()) {
                sources.push((f.path.clone(), format!("/proc/{}/fd/{}", t.pid, d.fd)));
            }
        }
    }
    let mut stats = CarryStats::default();
    let mut buf = vec![0u8; image::CHUNK];
    for (i, (path, at)) in sources.into_iter().enumerate() {
        let name = || String::from_utf8_lossy(&path).into_owned();
        let file = File::open(&at).ctx(|| format!("cannot read {} to carry it", name()))?;
        let id = fileid::full_id(&file).ctx(|| format!("cannot read {} to carry it", name()))?;
        let carried = stats.bytes.saturating_add(id.size) <= cap;
        let rec = CarryFile {
            id: i as u64 + 1,
            path: path.clone(),
            size: id.size,
            mtime_sec: id.mtime_sec,
            mtime_nsec: id.mtime_nsec,
            mode: id.mode,
            sha256: id.sha256,
            build_id: id.build_id,
            carried,
        };
        w.write(Kind::CARRY_FILE, &rec)?;
        stats.files += 1;
        if !carried {
            continue;
        }
        let mut off = 0u64;
        while off < rec.size {
            let n = ((rec.size - off) as usize).min(image::CHUNK);
            file.read_exact_at(&mut buf[..n], off)
                .ctx(|| format!("cannot read {} to carry it", name()))?;
            let prefix = DataPrefix {
                space: image::SPACE_CARRIED,
                flags: 0,
                id: rec.id,
                addr: off,
            };
            w.write_parts(Kind::CARRY_DATA, &[&prefix.to_bytes(), &buf[..n]])?;
            off += n as u64;
        }
        stats.carried += 1;
        stats.bytes += rec.size;
    }
    Ok(stats)
}
