//! Which pages of a process hold data worth dumping: `/proc/PID/pagemap`
//! and its `PAGEMAP_SCAN` ioctl (Linux 6.7+).
//!
//! A plain `pagemap` read gives one 64-bit entry per page (see the decoding
//! helpers [`present`], [`swapped`], ...). `PAGEMAP_SCAN` walks the page
//! tables in the kernel and returns only the matching ranges, already
//! merged, which is far cheaper for large sparse address spaces.
//! [`Pagemap::dumpable_ranges`] uses the ioctl and falls back to plain reads
//! on kernels without it.
//!
//! Reading another process's pagemap needs ptrace-read access to it; the
//! PFN field (and so zero-page detection in the fallback) needs
//! `CAP_SYS_ADMIN`.

#![deny(missing_docs)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use super::proc::{ProcError, Result};

/// Size of a pagemap entry in bytes.
const ENTRY: u64 = 8;

/// Entries read per `pread` (4 MiB of entries = 2 GiB of address space).
const READ_BATCH: usize = 512 * 1024;

/// `page_region`s fetched per `PAGEMAP_SCAN` call.
const SCAN_BATCH: usize = 4096;

/// The system page size.
pub fn page_size() -> u64 {
    static PS: OnceLock<u64> = OnceLock::new();
    *PS.get_or_init(|| {
        // SAFETY: sysconf has no memory-safety preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        u64::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
    })
}

// ---------------------------------------------------------------------------
// Entry decoding (Documentation/admin-guide/mm/pagemap.rst).

/// Bit 63: the page is present in RAM.
pub const PM_PRESENT: u64 = 1 << 63;
/// Bit 62: the page is swapped out.
pub const PM_SWAPPED: u64 = 1 << 62;
/// Bit 61: the page is a file page or shared anonymous.
pub const PM_FILE: u64 = 1 << 61;
/// Bit 58: the page is in a guard region (`MADV_GUARD_INSTALL`, 6.15+).
pub const PM_GUARD: u64 = 1 << 58;
/// Bit 57: the PTE is userfaultfd write-protected.
pub const PM_UFFD_WP: u64 = 1 << 57;
/// Bit 56: the page is mapped exclusively (by this process only).
pub const PM_EXCLUSIVE: u64 = 1 << 56;
/// Bit 55: the PTE is soft-dirty (always 0 without `CONFIG_MEM_SOFT_DIRTY`).
pub const PM_SOFT_DIRTY: u64 = 1 << 55;
/// Bits 0-54: the page frame number if present (0 without `CAP_SYS_ADMIN`).
pub const PM_PFN_MASK: u64 = (1 << 55) - 1;

/// Whether the page is present in RAM.
pub fn present(e: u64) -> bool {
    e & PM_PRESENT != 0
}

/// Whether the page is swapped out.
pub fn swapped(e: u64) -> bool {
    e & PM_SWAPPED != 0
}

/// Whether the page is a file page or shared anonymous (bit 61). In a
/// private file mapping, a present page without this bit is an anonymous
/// copy-on-write copy: the file does not have its data.
pub fn file_or_shared_anon(e: u64) -> bool {
    e & PM_FILE != 0
}

/// Whether the page is mapped by this process only (bit 56).
pub fn exclusive(e: u64) -> bool {
    e & PM_EXCLUSIVE != 0
}

/// Whether the PTE is soft-dirty (bit 55).
pub fn soft_dirty(e: u64) -> bool {
    e & PM_SOFT_DIRTY != 0
}

/// The page frame number of a present page (0 if hidden from the reader).
/// For a swapped page these bits hold the swap type and offset instead.
pub fn pfn(e: u64) -> u64 {
    e & PM_PFN_MASK
}

// ---------------------------------------------------------------------------
// PAGEMAP_SCAN (include/uapi/linux/fs.h).

/// The page has asynchronous userfaultfd write protection enabled.
pub const PAGE_IS_WPALLOWED: u64 = 1 << 0;
/// The page was written since it was write-protected (userfaultfd WP async).
pub const PAGE_IS_WRITTEN: u64 = 1 << 1;
/// The page is a file (or shmem) page, not anonymous.
pub const PAGE_IS_FILE: u64 = 1 << 2;
/// The page is present in RAM.
pub const PAGE_IS_PRESENT: u64 = 1 << 3;
/// The page is swapped out.
pub const PAGE_IS_SWAPPED: u64 = 1 << 4;
/// The page maps the shared zero page.
pub const PAGE_IS_PFNZERO: u64 = 1 << 5;
/// The page is part of a transparent or hugetlb huge page.
pub const PAGE_IS_HUGE: u64 = 1 << 6;
/// The page is soft-dirty.
pub const PAGE_IS_SOFT_DIRTY: u64 = 1 << 7;
/// The page is in a guard region (6.15+; older kernels reject this bit with
/// `EINVAL`).
pub const PAGE_IS_GUARD: u64 = 1 << 8;

/// `struct pm_scan_arg`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

const _: () = assert!(std::mem::size_of::<PmScanArg>() == 96);

/// `struct page_region`: a range of pages with the same categories.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// `PAGE_IS_*` bits, restricted to the scan's return mask.
    pub categories: u64,
}

const _: () = assert!(std::mem::size_of::<Region>() == 24);

mod ioctl {
    use super::PmScanArg;
    nix::ioctl_readwrite!(
        /// `PAGEMAP_SCAN = _IOWR('f', 16, struct pm_scan_arg)` (the header's
        /// number is 16, not 17).
        pagemap_scan,
        b'f',
        16,
        PmScanArg
    );
}

/// Which pages a [`Pagemap::scan_masked`] selects, and what it reports.
///
/// A page matches when, after flipping the bits in `inverted`, it has every
/// bit of `mask` and (if `anyof` is not 0) at least one bit of `anyof`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanMask {
    /// Categories that match when *absent*.
    pub inverted: u64,
    /// Categories that must all match.
    pub mask: u64,
    /// Categories of which at least one must match.
    pub anyof: u64,
    /// Categories reported in [`Region::categories`]; adjacent pages with
    /// the same reported categories form one region.
    pub ret: u64,
}

/// An open `/proc/PID/pagemap`.
#[derive(Debug)]
pub struct Pagemap {
    file: File,
    path: PathBuf,
    /// `PAGEMAP_SCAN` was refused with `ENOTTY`/`EINVAL`: use plain reads.
    no_scan: AtomicBool,
}

impl Pagemap {
    /// Open `/proc/PID/pagemap`.
    pub fn open(pid: i32) -> Result<Self> {
        Self::open_path(PathBuf::from(format!("/proc/{pid}/pagemap")))
    }

    /// Open the calling process's own pagemap.
    pub fn open_self() -> Result<Self> {
        Self::open_path(PathBuf::from("/proc/self/pagemap"))
    }

    fn open_path(path: PathBuf) -> Result<Self> {
        let file = File::open(&path).map_err(|e| ProcError::io(&path, e))?;
        Ok(Pagemap {
            file,
            path,
            no_scan: AtomicBool::new(false),
        })
    }

    /// The file's path, for messages.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Append the entries of `npages` pages from address `start` (rounded
    /// down to a page) to `out`. Addresses beyond the user address space
    /// (such as `[vsyscall]`) have no entries: they read as 0 (not present).
    pub fn read(&self, start: u64, npages: usize, out: &mut Vec<u64>) -> Result<()> {
        let ps = page_size();
        let first = start / ps;
        out.reserve(npages);
        let mut buf = vec![0u8; npages.min(READ_BATCH) * ENTRY as usize];
        let mut done = 0usize;
        while done < npages {
            let n = (npages - done).min(READ_BATCH);
            let bytes = &mut buf[..n * ENTRY as usize];
            let off = (first + done as u64) * ENTRY;
            let got = self.pread_full(bytes, off)?;
            for e in bytes[..got].chunks_exact(ENTRY as usize) {
                out.push(u64::from_ne_bytes(e.try_into().expect("8 bytes")));
            }
            if got < bytes.len() {
                // End of the address space: the rest is not mapped.
                out.resize(out.len() + (npages - done - got / ENTRY as usize), 0);
                return Ok(());
            }
            done += n;
        }
        Ok(())
    }

    /// `pread` until `buf` is full or end of file; returns the bytes read
    /// (a multiple of the entry size).
    fn pread_full(&self, buf: &mut [u8], off: u64) -> Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            match self.file.read_at(&mut buf[got..], off + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ProcError::io(&self.path, e)),
            }
        }
        Ok(got - got % ENTRY as usize)
    }

    /// `PAGEMAP_SCAN` over `[start, end)` for pages having any category of
    /// `anyof` (all pages if 0), appending regions with categories limited
    /// to `ret_mask` to `out`.
    pub fn scan(
        &self,
        start: u64,
        end: u64,
        anyof: u64,
        ret_mask: u64,
        out: &mut Vec<Region>,
    ) -> Result<()> {
        let m = ScanMask {
            anyof,
            ret: ret_mask,
            ..ScanMask::default()
        };
        self.scan_masked(start, end, m, out)
    }

    /// `PAGEMAP_SCAN` over `[start, end)` with full control of the masks.
    /// Walks the whole range (the kernel stops when its output vector is
    /// full; this loops on `walk_end`), and merges a region split across
    /// calls. `start` must be page-aligned; `end` is rounded up.
    pub fn scan_masked(
        &self,
        start: u64,
        end: u64,
        m: ScanMask,
        out: &mut Vec<Region>,
    ) -> Result<()> {
        if !start.is_multiple_of(page_size()) || end < start {
            return Err(ProcError::Invalid {
                path: self.path.clone(),
                reason: format!("PAGEMAP_SCAN: bad range {start:#x}-{end:#x}"),
            });
        }
        let mut buf = vec![Region::default(); SCAN_BATCH];
        let mut at = start;
        while at < end {
            let mut arg = PmScanArg {
                size: std::mem::size_of::<PmScanArg>() as u64,
                start: at,
                end,
                vec: buf.as_mut_ptr() as u64,
                vec_len: buf.len() as u64,
                category_inverted: m.inverted,
                category_mask: m.mask,
                category_anyof_mask: m.anyof,
                return_mask: m.ret,
                ..PmScanArg::default()
            };
            // SAFETY: `arg` is a valid, initialised pm_scan_arg whose `vec`
            // points to `buf`, which holds `vec_len` page_regions and
            // outlives the call; the kernel writes only within them and
            // `arg`.
            let n =
                unsafe { ioctl::pagemap_scan(self.file.as_raw_fd(), &mut arg) }.map_err(|e| {
                    ProcError::Sys {
                        path: self.path.clone(),
                        op: "PAGEMAP_SCAN",
                        source: e.into(),
                    }
                })?;
            let n = usize::try_from(n).unwrap_or(0).min(buf.len());
            for r in &buf[..n] {
                match out.last_mut() {
                    Some(last) if last.end == r.start && last.categories == r.categories => {
                        last.end = r.end;
                    }
                    _ => out.push(*r),
                }
            }
            if arg.walk_end <= at {
                // No progress: never loop forever on a kernel surprise.
                return Err(ProcError::Invalid {
                    path: self.path.clone(),
                    reason: format!("PAGEMAP_SCAN made no progress at {at:#x}"),
                });
            }
            at = arg.walk_end;
        }
        Ok(())
    }

    /// The ranges of `[start, end)` whose contents a checkpoint must dump:
    /// pages present or swapped out, except the shared zero page, and in a
    /// private file mapping (`private_file`) only the anonymous copy-on-write
    /// pages (the file has the others). Adjacent ranges are merged.
    ///
    /// Meant for private mappings; shared memory is dumped by object, not by
    /// mapping. Addresses beyond the user address space (`[vsyscall]`) have
    /// nothing to dump. Uses `PAGEMAP_SCAN`, or plain pagemap reads if the
    /// kernel refuses it.
    pub fn dumpable_ranges(
        &self,
        start: u64,
        end: u64,
        private_file: bool,
    ) -> Result<Vec<(u64, u64)>> {
        if start >= USER_SPACE_END {
            return Ok(Vec::new());
        }
        let end = end.min(USER_SPACE_END);
        if !self.no_scan.load(Ordering::Relaxed) {
            match self.dumpable_ranges_scan(start, end, private_file) {
                Ok(r) => return Ok(r),
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTTY) | Some(libc::EINVAL)) => {
                    self.no_scan.store(true, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        self.dumpable_ranges_pagemap(start, end, private_file)
    }

    /// [`Pagemap::dumpable_ranges`] with `PAGEMAP_SCAN` only.
    pub fn dumpable_ranges_scan(
        &self,
        start: u64,
        end: u64,
        private_file: bool,
    ) -> Result<Vec<(u64, u64)>> {
        let not = PAGE_IS_PFNZERO | if private_file { PAGE_IS_FILE } else { 0 };
        let m = ScanMask {
            inverted: not,
            mask: not,
            anyof: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
            ret: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
        };
        let mut regions = Vec::new();
        self.scan_masked(start, end, m, &mut regions)?;
        Ok(merge(regions.iter().map(|r| (r.start, r.end))))
    }

    /// [`Pagemap::dumpable_ranges`] from plain pagemap entries. Recognises
    /// the zero page only if the reader may see PFNs (`CAP_SYS_ADMIN`), and
    /// not the huge zero page: those are dumped (as zeros) instead.
    pub fn dumpable_ranges_pagemap(
        &self,
        start: u64,
        end: u64,
        private_file: bool,
    ) -> Result<Vec<(u64, u64)>> {
        let ps = page_size();
        let start = start - start % ps;
        let zero = zero_pfn();
        let mut out = Vec::new();
        let mut entries = Vec::new();
        let mut at = start;
        while at < end {
            let npages = ((end - at).div_ceil(ps) as usize).min(READ_BATCH);
            entries.clear();
            self.read(at, npages, &mut entries)?;
            let ranges = entries.iter().enumerate().filter_map(|(i, &e)| {
                let keep = (present(e) || swapped(e))
                    && !(private_file && file_or_shared_anon(e))
                    && !(present(e) && zero.is_some_and(|z| pfn(e) == z));
                let a = at + i as u64 * ps;
                keep.then_some((a, a + ps))
            });
            let mut chunk = merge(ranges);
            match (out.last_mut(), chunk.first()) {
                (Some((_, e)), Some(&(s, ne))) if *e == s => {
                    *e = ne;
                    chunk.remove(0);
                }
                _ => {}
            }
            out.extend(chunk);
            at += npages as u64 * ps;
        }
        if let Some(last) = out.last_mut() {
            last.1 = last.1.min(end.next_multiple_of(ps));
        }
        Ok(out)
    }
}

/// Where user space ends on x86_64 (with 5-level paging, 2^56; anything
/// with the top bit set is kernel space, such as `[vsyscall]`).
const USER_SPACE_END: u64 = 1 << 63;

/// Merge sorted ranges that touch.
fn merge(ranges: impl IntoIterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in ranges {
        match out.last_mut() {
            Some(last) if last.1 == s => last.1 = e,
            _ => out.push((s, e)),
        }
    }
    out
}

/// The PFN of the shared zero page, found once by read-faulting a page of
/// our own and looking it up in our own pagemap. `None` if PFNs are hidden
/// from us or the probe fails.
pub fn zero_pfn() -> Option<u64> {
    static ZERO: OnceLock<Option<u64>> = OnceLock::new();
    *ZERO.get_or_init(probe_zero_pfn)
}

fn probe_zero_pfn() -> Option<u64> {
    let ps = page_size() as usize;
    // SAFETY: a fresh private anonymous mapping; no existing memory is
    // affected.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            ps,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: `p` is a readable mapping of `ps` bytes; a read fault maps the
    // zero page.
    unsafe { std::ptr::read_volatile(p as *const u8) };
    let entry = Pagemap::open_self().ok().and_then(|pm| {
        let mut v = Vec::new();
        pm.read(p as u64, 1, &mut v).ok()?;
        v.first().copied()
    });
    // SAFETY: unmapping exactly the mapping created above, which nothing
    // else refers to.
    unsafe { libc::munmap(p, ps) };
    entry.filter(|&e| present(e) && pfn(e) != 0).map(pfn)
}
