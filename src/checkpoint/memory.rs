//! Reading an address space: the VMAs from `/proc/PID/maps` and `smaps`,
//! which pages are worth dumping from `PAGEMAP_SCAN`, and the page contents
//! with `process_vm_readv` (`/proc/PID/mem` for what it refuses).
//! All-zero anonymous pages are skipped: a fresh mapping is zero already.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;

use crate::error::{Context, Error, Result};
use crate::image::{self, DataPrefix, Kind, Shmem, Vma, Writer};
use crate::sys::mem;
use crate::sys::pagemap::Pagemap;
use crate::sys::proc;

const PAGE: u64 = 4096;

/// A VMA with what is needed to dump it.
pub struct VmaPlan {
    pub vma: Vma,
    /// Ranges of pages to read, for private mappings.
    pub ranges: Vec<(u64, u64)>,
    /// Private file mapping: zero pages must be written explicitly.
    pub private_file: bool,
}

/// Reads the VMAs of `pid` and which of their pages to dump.
pub fn plan(pid: i32, shmem: &mut HashMap<u64, Shmem>) -> Result<Vec<VmaPlan>> {
    let err = |e: proc::ProcError| Error::msg(format!("cannot checkpoint pid {pid}: {e}"));
    let maps = proc::maps(pid).map_err(err)?;
    let smaps = proc::smaps_vmflags(pid).map_err(err)?;
    let flags_of: HashMap<u64, Vec<[u8; 2]>> = smaps.into_iter().collect();
    let pm = Pagemap::open(pid).map_err(err)?;
    let mut out = Vec::with_capacity(maps.len());
    for m in maps {
        let vmflags = flags_of.get(&m.start).cloned().unwrap_or_default();
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
        let mut vma = Vma {
            start: m.start,
            end: m.end,
            prot,
            flags,
            pgoff: m.offset,
            path: m.path.clone(),
            dev: libc::makedev(m.dev_major, m.dev_minor),
            ino: m.inode,
            ..Default::default()
        };
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
            });
            vma.dumped_pages = 0;
        } else if m.inode != 0 && !m.is_special() {
            if m.deleted || m.path.starts_with(b"/memfd:") {
                return Err(Error::msg(format!(
                    "cannot checkpoint pid {pid}: the mapping of deleted file {} at {:#x} is not supported yet",
                    what(),
                    m.start
                )));
            }
            vma.backing = image::VMA_FILE;
            if !m.shared {
                private_file = true;
                ranges = pm.dumpable_ranges(m.start, m.end, true).map_err(err)?;
            }
        } else {
            vma.backing = image::VMA_ANON;
            ranges = pm.dumpable_ranges(m.start, m.end, false).map_err(err)?;
        }
        vma.dumped_pages = ranges.iter().map(|(s, e)| (e - s) / PAGE).sum();
        out.push(VmaPlan {
            vma,
            ranges,
            private_file,
        });
    }
    Ok(out)
}

fn is_zero(page: &[u8]) -> bool {
    // Compare in u64 words; the first non-zero word ends it.
    let (pre, words, post) = {
        // SAFETY: any byte pattern is a valid u64; align_to only splits the
        // slice at alignment boundaries.
        unsafe { page.align_to::<u64>() }
    };
    pre.iter().all(|&b| b == 0) && words.iter().all(|&w| w == 0) && post.iter().all(|&b| b == 0)
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

pub fn dump_pages<W: Write>(
    pid: i32,
    plans: &[VmaPlan],
    w: &mut Writer<W>,
    buf: &mut Vec<u8>,
    stats: &mut DumpStats,
    patches: &[Patch],
) -> Result<()> {
    let mut applied = vec![false; patches.len()];
    let mut memf = None;
    buf.resize(image::CHUNK, 0);
    for p in plans {
        for &(start, end) in &p.ranges {
            let mut at = start;
            while at < end {
                let n = ((end - at) as usize).min(image::CHUNK);
                let chunk = &mut buf[..n];
                mem::read_exact(pid, at, chunk, &mut memf)
                    .ctx(|| format!("cannot read memory of pid {pid} at {at:#x}"))?;
                apply_patches(at, chunk, patches, &mut applied);
                emit_runs(pid, at, chunk, p.private_file, w, stats)?;
                at += n as u64;
            }
        }
    }
    if let Some(i) = applied.iter().position(|a| !a) {
        return Err(Error::msg(format!(
            "cannot checkpoint pid {pid}: address {:#x} to patch is not in its dumped private memory",
            patches[i].0
        )));
    }
    Ok(())
}

/// Writes the non-zero runs of a chunk as `PAGES` and, in private file
/// mappings, zero runs as `ZERO`.
fn emit_runs<W: Write>(
    pid: i32,
    base: u64,
    chunk: &[u8],
    private_file: bool,
    w: &mut Writer<W>,
    stats: &mut DumpStats,
) -> Result<()> {
    let pages = chunk.len() / PAGE as usize;
    let mut i = 0;
    while i < pages {
        let zero = is_zero(&chunk[i * PAGE as usize..(i + 1) * PAGE as usize]);
        let mut j = i + 1;
        while j < pages && is_zero(&chunk[j * PAGE as usize..(j + 1) * PAGE as usize]) == zero {
            j += 1;
        }
        let addr = base + (i as u64) * PAGE;
        let data = &chunk[i * PAGE as usize..j * PAGE as usize];
        let prefix = DataPrefix {
            space: image::SPACE_PROCESS,
            flags: 0,
            id: pid as u64,
            addr,
        };
        if !zero {
            w.write_parts(Kind::PAGES, &[&prefix.to_bytes(), data])?;
            stats.pages += (j - i) as u64;
            stats.bytes += data.len() as u64;
        } else {
            stats.zero_pages += (j - i) as u64;
            if private_file {
                let len = (data.len() as u64).to_le_bytes();
                w.write_parts(Kind::ZERO, &[&prefix.to_bytes(), &len])?;
            }
        }
        i = j;
    }
    Ok(())
}

/// Dumps a shared memory object once, through `/proc/PID/map_files`,
/// skipping holes.
pub fn dump_shmem<W: Write>(
    pid: i32,
    vma: &Vma,
    obj: &Shmem,
    w: &mut Writer<W>,
    buf: &mut Vec<u8>,
    stats: &mut DumpStats,
) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let link = format!("/proc/{pid}/map_files/{:x}-{:x}", vma.start, vma.end);
    let f = std::fs::File::open(&link).ctx(|| format!("cannot open {link}"))?;
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
            if is_zero(&chunk[i * page..end]) {
                i += 1;
                continue;
            }
            let mut j = i + 1;
            while j * page < n && !is_zero(&chunk[j * page..((j + 1) * page).min(n)]) {
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
