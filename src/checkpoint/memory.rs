//! Reading an address space: the VMAs from `/proc/PID/maps` and `smaps`,
//! which pages are worth dumping from `PAGEMAP_SCAN`, and the page contents
//! with `process_vm_readv` (`/proc/PID/mem` for what it refuses).
//! All-zero anonymous pages are skipped: a fresh mapping is zero already.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;

use crate::error::{Context, Error, Result};
use crate::image::{self, DataPrefix, Kind, Shmem, Vma, Writer};
use crate::sys::pagemap::Pagemap;
use crate::sys::{Pid, proc};
use crate::sys::{crc32c, mem};

const PAGE: u64 = 4096;

/// A VMA with what is needed to dump it.
pub struct VmaPlan {
    pub vma: Vma,
    /// Ranges of pages to read, for private mappings.
    pub ranges: Vec<(u64, u64)>,
    /// Private file mapping: zero pages must be written explicitly.
    pub private_file: bool,
    /// Ranges inherited from the parent (see [`super::cow`]): zero runs
    /// there are written explicitly too.
    pub explicit: Vec<(u64, u64)>,
    /// Ranges to write as zeros without reading (pages the process lacks
    /// where its parent, whose pages it inherits, has some).
    pub zeros: Vec<(u64, u64)>,
}

/// Which of a process's pages [`dump_pages`] writes.
#[derive(Clone, Copy)]
pub enum Section<'a> {
    /// Those in these ranges (what its children inherit), as `FORK_PAGES`.
    Fork(&'a [(u64, u64)]),
    /// Those outside these ranges, as `PAGES` and `ZERO`.
    Rest(&'a [(u64, u64)]),
}

/// From this many resident pages (32 MiB) on, [`plan`] scans the page
/// tables for dumpable pages while another thread reads `smaps`: the
/// kernel's walk behind `smaps` costs about 40 ms a GiB of 4 KiB pages,
/// `PAGEMAP_SCAN` about 4 ms, and the thread about 60 us.
const SCAN_BESIDE_PAGES: i64 = 8 << 10;

/// Whether [`plan`] reads the pages of a mapping (`Some(private_file)`, see
/// [`Pagemap::dumpable_ranges`]): private ones, not shared memory (dumped
/// by object), the kernel's own or SysV attachments.
fn scanned(m: &proc::MapEntry) -> Option<bool> {
    if matches!(
        m.path.as_slice(),
        b"[vdso]" | b"[vvar]" | b"[vvar_vclock]" | b"[vsyscall]"
    ) || crate::checkpoint::ipc::shm_id_of_mapping(m).is_some()
        || m.shared
    {
        return None;
    }
    Some(m.inode != 0 && !m.is_special())
}

/// Reads the VMAs of `pid` and which of their pages to dump. `rss`: its
/// resident pages (`stat`), which say whether to scan beside `smaps`.
pub fn plan(pid: Pid, rss: i64, shmem: &mut HashMap<u64, Shmem>) -> Result<Vec<VmaPlan>> {
    let err = |e: proc::ProcError| Error::msg(format!("cannot checkpoint pid {pid}: {e}"));
    let pm = Pagemap::open(pid).map_err(err)?;
    // The ranges of each scanned mapping, by (start, end), when a thread
    // reads `smaps` meanwhile; what is missing is scanned in the loop.
    let mut ranges_of: HashMap<(u64, u64), Vec<(u64, u64)>> = HashMap::new();
    let smaps = if rss >= SCAN_BESIDE_PAGES {
        let maps = proc::maps(pid).map_err(err)?;
        std::thread::scope(|scope| -> Result<_> {
            let smaps = scope.spawn(|| {
                let _span = crate::progress::span("ckpt:   smaps");
                proc::smaps(pid)
            });
            let span = crate::progress::span("ckpt:   pagemap scan");
            for m in &maps {
                if let Some(private_file) = scanned(m) {
                    let r = pm.dumpable_ranges(m.start, m.end, private_file);
                    ranges_of.insert((m.start, m.end), r.map_err(err)?);
                }
            }
            drop(span);
            let smaps = smaps
                .join()
                .map_err(|_| Error::msg("the smaps reader thread died"))?;
            smaps.map_err(err)
        })?
    } else {
        // One read of `smaps`: its header lines are `maps`'s.
        let _span = crate::progress::span("ckpt:   smaps");
        proc::smaps(pid).map_err(err)?
    };
    let _span = crate::progress::span("ckpt:   pagemap scan");
    let mut dumpable =
        |m: &proc::MapEntry, private_file: bool| match ranges_of.remove(&(m.start, m.end)) {
            Some(r) => Ok(r),
            None => pm
                .dumpable_ranges(m.start, m.end, private_file)
                .map_err(err),
        };
    let mut out = Vec::with_capacity(smaps.len());
    for e in smaps {
        let m = e.map;
        let mut vma = vma_of(&m, &e.vm_flags);
        let mut ranges = Vec::new();
        let mut private_file = false;
        let what = || String::from_utf8_lossy(&m.path).into_owned();
        if m.path == b"[vdso]" {
            vma.backing = image::VMA_VDSO;
        } else if m.path == b"[vvar]" {
            vma.backing = image::VMA_VVAR;
        } else if m.path == b"[vvar_vclock]" {
            vma.backing = image::VMA_VVAR_VCLOCK;
        } else if m.path == b"[vsyscall]" {
            vma.backing = image::VMA_VSYSCALL;
        } else if let Some(shmid) = crate::checkpoint::ipc::shm_id_of_mapping(&m) {
            // A SysV attachment: contents go with the segment, once.
            vma.backing = image::VMA_SYSV_SHM;
            vma.shmem_id = shmid as u64;
        } else if m.shared
            && (m.inode == 0 || m.path.starts_with(b"/dev/zero") || m.path.is_empty())
        {
            // Shared anonymous memory: one object, dumped once.
            vma.backing = image::VMA_SHARED_ANON;
            let link = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
            let st =
                std::fs::metadata(&link).ctx(|| format!("cannot checkpoint pid {pid}: {link}"))?;
            vma.shmem_id = st.ino();
            shmem.entry(st.ino()).or_insert(Shmem {
                id: st.ino(),
                size: st.size(),
                ino: st.ino(),
                ..Default::default()
            });
            vma.dumped_pages = 0;
        } else if m.inode != 0 && !m.is_special() {
            if m.deleted
                || m.path.starts_with(b"/memfd:")
                || super::posixshm::name_of(&m.path).is_some()
            {
                // Its contents travel as a shared memory object, once (a
                // file of /dev/shm also with its name: `posixshm.rs`).
                let link = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
                vma.shmem_id = super::memfd::object(shmem, &link, &m.path)
                    .map_err(|e| Error::msg(format!("pid {pid}: mapping of {}: {e}", what())))?;
                vma.backing = image::VMA_SHARED_ANON;
            } else {
                vma.backing = image::VMA_FILE;
            }
            if !m.shared {
                private_file = true;
                ranges = dumpable(&m, true)?;
            }
        } else {
            vma.backing = image::VMA_ANON;
            ranges = dumpable(&m, false)?;
        }
        vma.dumped_pages = ranges.iter().map(|(s, e)| (e - s) / PAGE).sum();
        out.push(VmaPlan {
            vma,
            ranges,
            private_file,
            explicit: Vec::new(),
            zeros: Vec::new(),
        });
    }
    Ok(out)
}

/// A mapping's record as `maps` and its `smaps` flags (`VmFlags`, two
/// letters each) describe it; what backs it is decided by [`plan`].
fn vma_of(m: &proc::MapEntry, vmflags: &[[u8; 2]]) -> Vma {
    let has = |f: &[u8; 2]| vmflags.iter().any(|x| x == f);
    let mut prot = 0u32;
    if m.read {
        prot |= libc::PROT_READ as u32;
    }
    if m.write {
        prot |= libc::PROT_WRITE as u32;
    }
    if m.exec {
        prot |= libc::PROT_EXEC as u32;
    }
    let mut flags = 0u32;
    for (f, bit) in [
        (b"gd", image::VMA_F_GROWSDOWN),
        (b"hg", image::VMA_F_HUGEPAGE),
        (b"nh", image::VMA_F_NOHUGEPAGE),
        (b"dc", image::VMA_F_DONTFORK),
        (b"dd", image::VMA_F_DONTDUMP),
        (b"lo", image::VMA_F_LOCKED),
        (b"mw", image::VMA_F_MAYWRITE),
    ] {
        if has(f) {
            flags |= bit;
        }
    }
    if m.shared {
        flags |= image::VMA_F_SHARED;
    }
    match m.path.as_slice() {
        b"[heap]" => flags |= image::VMA_F_HEAP,
        b"[stack]" => flags |= image::VMA_F_STACK,
        _ => {}
    }
    Vma {
        start: m.start,
        end: m.end,
        prot,
        flags,
        pgoff: m.offset,
        path: m.path.clone(),
        dev: libc::makedev(m.dev_major, m.dev_minor),
        ino: m.inode,
        ..Default::default()
    }
}

/// Counters of what was dumped.
#[derive(Debug, Default, Clone, Copy)]
pub struct DumpStats {
    pub pages: u64,
    pub zero_pages: u64,
    pub bytes: u64,
}

/// Reads the pages of the given plans and writes them as `PAGES` records.
/// A change to apply to the image's copy of memory (not to the live
/// process): `(address, bytes)`. Self-checkpoint uses it to tell the
/// restored copy from the original.
pub type Patch = (u64, Vec<u8>);

fn apply_patches(base: u64, chunk: &mut [u8], patches: &[Patch], applied: &mut [bool]) {
    let end = base + chunk.len() as u64;
    for (i, (addr, bytes)) in patches.iter().enumerate() {
        if *addr >= base && addr + bytes.len() as u64 <= end {
            let off = (addr - base) as usize;
            chunk[off..off + bytes.len()].copy_from_slice(bytes);
            applied[i] = true;
        }
    }
}

/// Bytes one `process_vm_readv` reads: small enough that the zero check
/// and the CRC find them still in the cache.
const PIECE: usize = 256 << 10;
/// Threads reading memory while the caller's thread writes records.
const READERS: usize = 2;
/// Chunk buffers of each reader thread: one being read into, one waiting
/// for the writer, one being written (with two, `ckpt | cat` was slower:
/// the reader waited for the pipe).
const BUFFERS: usize = 3;
/// Up to this many bytes of a process are read by the writing thread
/// itself, without reader threads: a tree of small processes paid about
/// 1 ms a process for starting and joining them.
const INLINE_BYTES: usize = 8 << 20;
/// Where in a page the read buffer starts. The kernel's copy slows down
/// several times (here: 1.4 s instead of 0.25 s for 1 GiB) when the
/// destination sits just after the source modulo 4 KiB (4K aliasing: each
/// load waits on an earlier store to the same page offset), as a 1 MiB
/// `malloc` does (page + 16 bytes). Half a page away is the safest.
const BUF_PAGE_OFFSET: usize = 2048;

/// The part of `buf` (grown to hold `len` bytes and the alignment) that
/// starts at [`BUF_PAGE_OFFSET`] in a page.
fn aligned(buf: &mut Vec<u8>, len: usize) -> std::ops::Range<usize> {
    if buf.len() < len + PAGE as usize {
        buf.resize(len + PAGE as usize, 0);
    }
    let off =
        (BUF_PAGE_OFFSET + PAGE as usize - buf.as_ptr() as usize % PAGE as usize) % PAGE as usize;
    off..off + len
}

/// One chunk of memory to read: at most [`image::CHUNK`] bytes of a range.
#[derive(Clone, Copy)]
struct Job {
    at: u64,
    len: usize,
    /// Zero runs are written (`ZERO`, or `FORK_PAGES` with `DATA_F_ZERO`).
    explicit: bool,
    /// Written as `FORK_PAGES`.
    fork: bool,
}

/// A run of pages of a chunk that are all zero or all not, with the CRC32C
/// of its bytes (non-zero runs).
#[derive(Clone, Copy)]
struct Run {
    first: usize,
    end: usize,
    zero: bool,
    crc: u32,
}

/// A chunk read and analysed.
struct Done {
    job: Job,
    buf: Vec<u8>,
    /// Where the chunk's bytes are in `buf`.
    data: std::ops::Range<usize>,
    runs: Vec<Run>,
    applied: Vec<usize>,
}

/// Adds the pages of `bytes` (which start at page `first` of the chunk) to
/// `runs`: each page checked for zeros, then each run of non-zero pages
/// checksummed at once (long buffers are where [`crc32c::append`] is fast).
fn scan(bytes: &[u8], first: usize, runs: &mut Vec<Run>) {
    let page = PAGE as usize;
    let pages: Vec<bool> = bytes.chunks(page).map(mem::is_zero).collect();
    let mut k = 0;
    while k < pages.len() {
        let zero = pages[k];
        let e = pages[k..]
            .iter()
            .position(|&z| z != zero)
            .map_or(pages.len(), |n| k + n);
        let span = &bytes[k * page..(e * page).min(bytes.len())];
        match runs.last_mut() {
            Some(r) if r.zero == zero => {
                r.end += e - k;
                if !zero {
                    r.crc = crc32c::append(r.crc, span);
                }
            }
            _ => runs.push(Run {
                first: first + k,
                end: first + e,
                zero,
                crc: if zero { 0 } else { crc32c::append(0, span) },
            }),
        }
        k = e;
    }
}

/// Reads one chunk, applies the patches that fall in it, and finds its
/// zero and non-zero runs with their CRCs, a piece at a time so that each
/// byte is read from the cache right after it was copied in.
fn read_chunk(
    pid: Pid,
    job: Job,
    mut buf: Vec<u8>,
    patches: &[Patch],
    memf: &mut Option<std::fs::File>,
) -> Result<Done> {
    let data = aligned(&mut buf, job.len);
    let base = job.at;
    let end = base + job.len as u64;
    let patched: Vec<usize> = patches
        .iter()
        .enumerate()
        .filter(|(_, (a, b))| *a < end && a + b.len() as u64 > base)
        .map(|(i, _)| i)
        .collect();
    let mut runs = Vec::new();
    let read = |off: usize, n: usize, buf: &mut [u8], memf: &mut Option<std::fs::File>| {
        let at = base + off as u64;
        mem::read_exact(pid, at, &mut buf[data.start + off..][..n], memf)
            .ctx(|| format!("cannot read memory of pid {pid} at {at:#x}"))
    };
    let mut applied = Vec::new();
    if patched.is_empty() {
        let mut off = 0;
        while off < job.len {
            let n = (job.len - off).min(PIECE);
            read(off, n, &mut buf, memf)?;
            scan(
                &buf[data.start + off..][..n],
                off / PAGE as usize,
                &mut runs,
            );
            off += n;
        }
    } else {
        read(0, job.len, &mut buf, memf)?;
        let mut flags = vec![false; patches.len()];
        apply_patches(base, &mut buf[data.clone()], patches, &mut flags);
        applied = (0..patches.len()).filter(|&i| flags[i]).collect();
        scan(&buf[data.clone()], 0, &mut runs);
    }
    Ok(Done {
        job,
        buf,
        data,
        runs,
        applied,
    })
}

/// Reads the pages of the given plans and writes them as `PAGES` records
/// (`ZERO` records for zero runs of private file mappings).
///
/// Threads read the chunks (a `process_vm_readv` per [`PIECE`], zero check
/// and CRC32C while the bytes are in the cache) while this thread writes
/// the records in order, each with one vectored write. The stream is the
/// same, byte for byte, as a single thread would write.
#[allow(clippy::too_many_arguments)]
pub fn dump_pages<W: Write>(
    pid: Pid,
    image_pid: u32,
    plans: &[VmaPlan],
    section: Section,
    w: &mut Writer<W>,
    buf: &mut Vec<u8>,
    stats: &mut DumpStats,
    patches: &[Patch],
) -> Result<()> {
    use crate::image::ranges::clip;
    let (fork, sect) = match section {
        Section::Fork(r) => (true, r),
        Section::Rest(r) => (false, r),
    };
    let part = |x: &[(u64, u64)], r: &[(u64, u64)], inside: bool| {
        if r.is_empty() && !inside {
            x.to_vec()
        } else {
            clip(x, r, inside)
        }
    };
    let mut jobs = Vec::new();
    let mut zeros = Vec::new();
    for p in plans {
        let mine = part(&p.ranges, sect, fork);
        let pieces = clip(&mine, &p.explicit, true)
            .into_iter()
            .map(|r| (r, true))
            .chain(
                clip(&mine, &p.explicit, false)
                    .into_iter()
                    .map(|r| (r, p.private_file)),
            );
        let mut pieces: Vec<_> = pieces.collect();
        pieces.sort_unstable_by_key(|((s, _), _)| *s);
        for ((start, end), explicit) in pieces {
            let mut at = start;
            while at < end {
                let len = ((end - at) as usize).min(image::CHUNK);
                jobs.push(Job {
                    at,
                    len,
                    explicit,
                    fork,
                });
                at += len as u64;
            }
        }
        zeros.extend(part(&p.zeros, sect, fork));
    }
    let mut applied = vec![false; patches.len()];
    // Reader threads pay off for large processes only: starting two
    // threads costs more than reading a few MiB inline. (The CPU count is
    // asked only then: std reads cgroup files for it, every time.)
    let bytes: usize = jobs.iter().map(|j| j.len).sum();
    let readers = if bytes < INLINE_BYTES || jobs.len() < 4 {
        1
    } else {
        READERS.min(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        )
    };
    if readers < 2 {
        let mut memf = None;
        for &job in &jobs {
            let d = read_chunk(pid, job, std::mem::take(buf), patches, &mut memf)?;
            emit(image_pid, &d, w, stats)?;
            d.applied.iter().for_each(|&i| applied[i] = true);
            *buf = d.buf;
        }
    } else {
        std::thread::scope(|scope| -> Result<()> {
            let mut results = Vec::new();
            let mut returns = Vec::new();
            for k in 0..readers {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Done>>(1);
                let (ret_tx, ret_rx) = std::sync::mpsc::channel::<Vec<u8>>();
                results.push(rx);
                returns.push(ret_tx);
                let jobs = &jobs;
                scope.spawn(move || {
                    let mut memf = None;
                    for (n, &job) in jobs.iter().skip(k).step_by(readers).enumerate() {
                        // At most BUFFERS chunks a reader, reused as soon as
                        // written: the copy into a buffer still in the cache
                        // costs less (here about 100 ms of CPU per GiB).
                        let b = if n < BUFFERS {
                            Vec::new()
                        } else {
                            match ret_rx.recv() {
                                Ok(b) => b,
                                Err(_) => return,
                            }
                        };
                        let r = if n == 1 {
                            crate::restart::inject::check("read")
                        } else {
                            Ok(())
                        };
                        let r = r.and_then(|()| read_chunk(pid, job, b, patches, &mut memf));
                        let failed = r.is_err();
                        if tx.send(r).is_err() || failed {
                            return;
                        }
                    }
                });
            }
            // On an error return, dropping the receivers stops the readers.
            for i in 0..jobs.len() {
                let d = results[i % readers]
                    .recv()
                    .map_err(|_| Error::msg("a memory reader thread died"))??;
                emit(image_pid, &d, w, stats)?;
                d.applied.iter().for_each(|&i| applied[i] = true);
                let _ = returns[i % readers].send(d.buf);
            }
            Ok(())
        })?;
    }
    emit_zeros(image_pid, fork, &zeros, w, stats)?;
    if let Some(i) = applied.iter().position(|a| !a) {
        return Err(Error::msg(format!(
            "cannot checkpoint pid {pid}: address {:#x} to patch is not in its dumped private memory",
            patches[i].0
        )));
    }
    Ok(())
}

/// Writes ranges of zeros, at most [`image::CHUNK`] bytes a record.
fn emit_zeros<W: Write>(
    pid: u32,
    fork: bool,
    zeros: &[(u64, u64)],
    w: &mut Writer<W>,
    stats: &mut DumpStats,
) -> Result<()> {
    for &(s, e) in zeros {
        let mut at = s;
        while at < e {
            let len = (e - at).min(image::CHUNK as u64);
            zero_record(pid, fork, at, len, w)?;
            stats.zero_pages += len / PAGE;
            at += len;
        }
    }
    Ok(())
}

/// One record of `len` zeros at `addr`: `ZERO`, or `FORK_PAGES` with
/// `DATA_F_ZERO`.
fn zero_record<W: Write>(
    pid: u32,
    fork: bool,
    addr: u64,
    len: u64,
    w: &mut Writer<W>,
) -> Result<()> {
    let prefix = DataPrefix {
        space: image::SPACE_PROCESS,
        flags: if fork { image::DATA_F_ZERO } else { 0 },
        id: pid as u64,
        addr,
    }
    .to_bytes();
    let kind = if fork { Kind::FORK_PAGES } else { Kind::ZERO };
    w.write_parts(kind, &[&prefix, &len.to_le_bytes()])?;
    Ok(())
}

/// Writes the runs of a chunk: non-zero runs as `PAGES` (`FORK_PAGES` in
/// the fork section) and, in private file mappings and inherited ranges,
/// zero runs as `ZERO`.
fn emit<W: Write>(pid: u32, d: &Done, w: &mut Writer<W>, stats: &mut DumpStats) -> Result<()> {
    crate::checkpoint::check_abort()?;
    let page = PAGE as usize;
    for r in &d.runs {
        let data = &d.buf[d.data.clone()][r.first * page..r.end * page];
        let prefix = DataPrefix {
            space: image::SPACE_PROCESS,
            flags: 0,
            id: pid as u64,
            addr: d.job.at + (r.first * page) as u64,
        }
        .to_bytes();
        if !r.zero {
            let kind = if d.job.fork {
                Kind::FORK_PAGES
            } else {
                Kind::PAGES
            };
            w.write_parts_crc(kind, &[(&prefix, ::crc32c::crc32c(&prefix)), (data, r.crc)])?;
            stats.pages += (r.end - r.first) as u64;
            stats.bytes += data.len() as u64;
        } else {
            stats.zero_pages += (r.end - r.first) as u64;
            if d.job.explicit {
                let addr = d.job.at + (r.first * page) as u64;
                zero_record(pid, d.job.fork, addr, data.len() as u64, w)?;
            }
        }
    }
    Ok(())
}

/// Dumps a shared memory object once, through `/proc/PID/map_files`,
/// skipping holes.
pub fn dump_shmem<W: Write>(
    pid: Pid,
    vma: &Vma,
    obj: &Shmem,
    w: &mut Writer<W>,
    buf: &mut Vec<u8>,
    stats: &mut DumpStats,
) -> Result<()> {
    let link = format!("/proc/{pid}/map_files/{:x}-{:x}", vma.start, vma.end);
    dump_object(&link, obj, w, buf, stats)
}

/// Writes the contents of shared memory object `obj`, read from the file
/// `link` (a `/proc` link to it), as `PAGES` of space `SHMEM`; zero pages
/// are skipped.
pub fn dump_object<W: Write>(
    link: &str,
    obj: &Shmem,
    w: &mut Writer<W>,
    buf: &mut Vec<u8>,
    stats: &mut DumpStats,
) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(link).ctx(|| format!("cannot open {link}"))?;
    buf.resize(image::CHUNK, 0);
    let mut at = 0u64;
    while at < obj.size {
        let n = ((obj.size - at) as usize).min(image::CHUNK);
        f.read_exact_at(&mut buf[..n], at)
            .ctx(|| format!("cannot read {link}"))?;
        let chunk = &buf[..n];
        let mut i = 0;
        let page = PAGE as usize;
        while i * page < n {
            let end = ((i + 1) * page).min(n);
            if mem::is_zero(&chunk[i * page..end]) {
                i += 1;
                continue;
            }
            let mut j = i + 1;
            while j * page < n && !mem::is_zero(&chunk[j * page..((j + 1) * page).min(n)]) {
                j += 1;
            }
            let data = &chunk[i * page..(j * page).min(n)];
            let prefix = DataPrefix {
                space: image::SPACE_SHMEM,
                flags: 0,
                id: obj.id,
                addr: at + (i * page) as u64,
            };
            w.write_parts(Kind::PAGES, &[&prefix.to_bytes(), data])?;
            stats.pages += data.len() as u64 / PAGE;
            stats.bytes += data.len() as u64;
            i = j;
        }
        at += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_runs_and_checksums_them_across_pieces() {
        let page = PAGE as usize;
        // Pages: data, data, zero, data, zero, zero, data x 5 (a run longer
        // than the fast CRC's block), zero; scanned as two pieces that cut
        // the long run.
        let kinds = [1, 1, 0, 1, 0, 0, 1, 1, 1, 1, 1, 0];
        let mut bytes = vec![0u8; kinds.len() * page];
        for (i, &k) in kinds.iter().enumerate() {
            if k == 1 {
                for (j, b) in bytes[i * page..(i + 1) * page].iter_mut().enumerate() {
                    *b = (i * 7 + j * 13 + 1) as u8 | 1;
                }
            }
        }
        let mut runs = Vec::new();
        scan(&bytes[..8 * page], 0, &mut runs);
        scan(&bytes[8 * page..], 8, &mut runs);
        let got: Vec<_> = runs.iter().map(|r| (r.first, r.end, r.zero)).collect();
        assert_eq!(
            got,
            [
                (0, 2, false),
                (2, 3, true),
                (3, 4, false),
                (4, 6, true),
                (6, 11, false),
                (11, 12, true)
            ]
        );
        for r in runs.iter().filter(|r| !r.zero) {
            let want = ::crc32c::crc32c(&bytes[r.first * page..r.end * page]);
            assert_eq!(r.crc, want, "run {}..{}", r.first, r.end);
        }
    }

    /// The page tables scanned beside `smaps` (a large process) give the
    /// same plan as scanned after it.
    #[test]
    fn plan_scanned_beside_smaps_is_the_same() {
        struct Kill(std::process::Child);
        impl Drop for Kill {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let child = Kill(
            std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .expect("sleep"),
        );
        let pid = Pid::from_raw(child.0.id() as i32);
        // Asleep after its exec, then stopped: its memory holds still.
        let state = || proc::stat(pid).map(|s| (s.comm, s.state)).ok();
        let waited = |want: u8| {
            (0..500).any(|_| {
                std::thread::sleep(std::time::Duration::from_millis(10));
                state() == Some((b"sleep".to_vec(), want))
            })
        };
        assert!(waited(b'S'), "sleep did not start: {:?}", state());
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid.as_raw()),
            nix::sys::signal::SIGSTOP,
        )
        .expect("SIGSTOP");
        assert!(waited(b'T'), "sleep did not stop: {:?}", state());
        let mut shmem = HashMap::new();
        let after = plan(pid, 0, &mut shmem).expect("plan");
        let beside = plan(pid, i64::MAX, &mut shmem).expect("plan");
        assert!(!after.is_empty());
        assert_eq!(after.len(), beside.len());
        for (a, b) in after.iter().zip(&beside) {
            assert_eq!(a.vma, b.vma);
            assert_eq!(a.ranges, b.ranges);
            assert_eq!(a.private_file, b.private_file);
        }
        assert!(after.iter().any(|p| !p.ranges.is_empty()));
    }

    #[test]
    fn vma_of_takes_protection_flags_and_names_from_maps_and_smaps() {
        let m = proc::MapEntry {
            start: 0x7000,
            end: 0x9000,
            read: true,
            write: true,
            offset: 0x1000,
            dev_major: 8,
            dev_minor: 1,
            inode: 42,
            path: b"[stack]".to_vec(),
            ..Default::default()
        };
        let v = vma_of(&m, &[*b"gd", *b"mw", *b"ac"]);
        assert_eq!(
            (v.start, v.end, v.pgoff, v.ino),
            (0x7000, 0x9000, 0x1000, 42)
        );
        assert_eq!(v.prot, (libc::PROT_READ | libc::PROT_WRITE) as u32);
        assert_eq!(
            v.flags,
            image::VMA_F_GROWSDOWN | image::VMA_F_MAYWRITE | image::VMA_F_STACK
        );
        assert_eq!(v.dev, libc::makedev(8, 1));
        let shared = proc::MapEntry {
            shared: true,
            exec: true,
            path: b"[heap]".to_vec(),
            ..Default::default()
        };
        let v = vma_of(&shared, &[*b"lo", *b"dd"]);
        assert_eq!(v.prot, libc::PROT_EXEC as u32);
        assert_eq!(
            v.flags,
            image::VMA_F_SHARED | image::VMA_F_HEAP | image::VMA_F_LOCKED | image::VMA_F_DONTDUMP
        );
    }
}
