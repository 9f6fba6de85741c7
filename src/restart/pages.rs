//! Page data on restore: what the bulk-data loop of [`super::bulk`]
//! does before it writes a process's pages.
//!
//! Mappings that had transparent huge pages (`VMA_F_HUGEPAGE`, the `hg`
//! flag of smaps) are advised `MADV_HUGEPAGE` before their first page is
//! written, so the kernel fills them with huge pages: the restored process
//! keeps its THP (before, the advice came after the pages were written, as
//! 4 KiB pages, and AnonHugePages went from 1 GiB to 0). The advice is
//! given again, harmlessly, with the other flags after the data.
//!
//! Anonymous private mappings are filled with `UFFDIO_COPY` ([`Fill`],
//! `sys::uffd`) where the kernel allows it: each page is allocated with
//! its contents, where `process_vm_writev` into a fresh mapping faults the
//! page in, zeroes it, then copies over it. Whatever the userfaultfd
//! cannot place (a page present already, an unaligned record, no
//! userfaultfd at all) goes through `process_vm_writev` as before, its
//! range unregistered first. The descriptor is the restorer's alone (the
//! target's is closed at once) and is closed when the bulk data is in,
//! which unregisters everything: the restored process never holds one.
//!
//! Tried and dropped (see BENCHMARKS.md): a writer thread overlapping
//! reading records with `process_vm_writev`. On this 2-CPU machine, shared
//! with builds, it cost about 40% more CPU time than it saved in waiting.

use super::Building;
use crate::error::{Error, Result};
use crate::image;
use crate::sys::ids::{Fd, Pid};
use crate::sys::remote::nr;
use crate::sys::{uffd, unixdiag};

const PAGE: u64 = 4096;

/// Which huge-page mappings still need their advice: `(pid, start, end)`.
pub(super) struct Thp {
    pending: Vec<(Pid, u64, u64)>,
}

impl Thp {
    pub(super) fn new(building: &[Building<'_>]) -> Thp {
        let pending = building
            .iter()
            .flat_map(|bp| {
                bp.pi
                    .mm
                    .vmas
                    .iter()
                    .filter(|v| v.flags & image::VMA_F_HUGEPAGE != 0 && v.dumped_pages > 0)
                    .map(move |v| (bp.pid, v.start, v.end))
            })
            .collect();
        Thp { pending }
    }

    /// Advises the mapping of `bp` that holds `addr`, if it had huge pages
    /// and this is its first write.
    pub(super) fn before_write(&mut self, bp: &mut Building<'_>, addr: u64) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pid = bp.pid;
        if let Some(i) = self
            .pending
            .iter()
            .position(|&(p, s, e)| p == pid && s <= addr && addr < e)
        {
            let (_, s, e) = self.pending.swap_remove(i);
            bp.b.call(nr::MADVISE, &[s, e - s, libc::MADV_HUGEPAGE as u64])?;
        }
        Ok(())
    }
}

/// Whether the kernel gives every anonymous mapping huge pages unless it
/// was advised otherwise (THP `always`): then a page-by-page fill would
/// lose them.
pub(super) fn thp_always() -> bool {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|s| s.contains("[always]"))
}

/// `CRTOOLS_NO_UFFD`: every page goes through `process_vm_writev`.
fn no_uffd() -> bool {
    std::env::var_os("CRTOOLS_NO_UFFD").is_some_and(|v| !v.is_empty())
}

/// The anonymous private mappings of `bp` a userfaultfd would fill (not
/// those with huge pages, which a page-by-page fill would split, nor,
/// when the kernel gives huge pages to every mapping (`always`), those
/// not advised otherwise); pages kept in place are not left out here.
fn wanted(bp: &Building<'_>, always: bool) -> Vec<(u64, u64)> {
    bp.pi
        .mm
        .vmas
        .iter()
        .filter(|v| {
            v.backing == image::Backing::Anon
                && v.flags & image::VMA_F_SHARED == 0
                && v.flags & image::VMA_F_HUGEPAGE == 0
                && (!always || v.flags & image::VMA_F_NOHUGEPAGE != 0)
                && v.dumped_pages > 0
        })
        .map(|v| (v.start, v.end))
        .filter(|&(s, e)| bp.writable.iter().any(|&(ws, we)| ws <= s && e <= we))
        .collect()
}

/// A process's userfaultfd made ahead ([`Fill::prepare`]) or not.
#[derive(Default)]
pub(crate) enum Early {
    #[default]
    NotYet,
    /// The kernel refused one.
    Refused,
    Ready(uffd::Uffd),
}

/// One process's userfaultfd and the ranges registered with it.
struct Filled {
    pid: Pid,
    uffd: uffd::Uffd,
    ranges: Vec<(u64, u64)>,
}

/// Page data placed with `UFFDIO_COPY` (see the module docs). Dropping it
/// closes every userfaultfd, which unregisters their ranges.
pub(super) struct Fill {
    procs: Vec<Filled>,
}

impl Fill {
    /// A fill that places nothing: every write goes through
    /// `process_vm_writev` (the `FORK_PAGES` section, before any range is
    /// registered).
    pub(super) fn none() -> Fill {
        Fill { procs: Vec::new() }
    }

    /// Sets up a userfaultfd for each process with anonymous private
    /// mappings to fill (not those with huge pages, which a page-by-page
    /// fill would split). A process where the kernel refuses gets none:
    /// its pages are written as before.
    /// Pages a process keeps in place (`staged.kept`) are present
    /// already: their ranges are left out.
    pub(super) fn new(
        building: &mut [Building<'_>],
        staged: &super::precopy::Staging,
    ) -> Result<Fill> {
        let mut procs = Vec::new();
        if no_uffd() {
            return Ok(Fill { procs });
        }
        let always = thp_always();
        for bp in building.iter_mut() {
            let want = wanted(bp, always);
            let want = image::ranges::subtract(&want, staged.kept(bp.pi.p.pid));
            if want.is_empty() {
                bp.uffd = Early::NotYet;
                continue;
            }
            if let Some(f) = Self::open(bp, want)? {
                procs.push(f);
            }
        }
        Ok(Fill { procs })
    }

    /// Makes `bp`'s userfaultfd ahead of [`Fill::new`], if it will want
    /// one (`always`: [`thp_always`]): on the tracer thread of the
    /// process, while it builds the address spaces, since the bulk data
    /// is written from the restorer's thread, which may not be that
    /// process's tracer. Nothing is registered yet.
    pub(super) fn prepare(bp: &mut Building<'_>, always: bool) -> Result<()> {
        if no_uffd() || wanted(bp, always).is_empty() {
            return Ok(());
        }
        bp.uffd = match Self::make(bp)? {
            Some(u) => Early::Ready(u),
            None => Early::Refused,
        };
        Ok(())
    }

    /// A userfaultfd made by `bp`'s process, its descriptor there closed
    /// again, with `want` registered; `None` if the kernel refuses.
    fn open(bp: &mut Building<'_>, want: Vec<(u64, u64)>) -> Result<Option<Filled>> {
        let made = match std::mem::take(&mut bp.uffd) {
            Early::NotYet => Self::make(bp)?,
            Early::Refused => None,
            Early::Ready(u) => Some(u),
        };
        let Some(uffd) = made else {
            return Ok(None);
        };
        let ranges: Vec<(u64, u64)> = want
            .into_iter()
            .filter(|&(s, e)| uffd.register(s, e).is_ok())
            .collect();
        Ok((!ranges.is_empty()).then_some(Filled {
            pid: bp.pid,
            uffd,
            ranges,
        }))
    }

    /// A userfaultfd made by `bp`'s process (remote syscalls: on its
    /// tracer thread), taken, and its descriptor there closed again;
    /// `None` if the kernel refuses.
    fn make(bp: &mut Building<'_>) -> Result<Option<uffd::Uffd>> {
        let flags = (libc::O_CLOEXEC | libc::O_NONBLOCK) as u64 | uffd::UFFD_USER_MODE_ONLY;
        let Ok(fd) = bp.b.call(uffd::NR_USERFAULTFD, &[flags]) else {
            return Ok(None);
        };
        // A descriptor number the kernel gave fits an `int`.
        let mine = i32::try_from(fd)
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))
            .and_then(|n| unixdiag::steal_fd(bp.pid, Fd::from_raw(n)));
        // The restored process must not keep it, whatever happened.
        bp.b.call(nr::CLOSE, &[fd]).map_err(|e| {
            Error::msg(format!(
                "cannot close a userfaultfd in process {}: {e}",
                bp.pid
            ))
        })?;
        Ok(mine.and_then(uffd::Uffd::new).ok())
    }

    /// Places what it can of `data` at `addr` of process `pid` with
    /// `UFFDIO_COPY`; returns how many bytes from the start it placed.
    /// The rest is for `process_vm_writev`: any registered range it
    /// touches has been unregistered (a write there would fail, as a
    /// kernel access to a missing page of a user-mode-only userfaultfd
    /// does).
    pub(super) fn write(&mut self, pid: Pid, addr: u64, data: &[u8]) -> Result<usize> {
        let Some(p) = self.procs.iter_mut().find(|p| p.pid == pid) else {
            return Ok(0);
        };
        let end = addr.saturating_add(data.len() as u64);
        let mut done = 0;
        let inside = p.ranges.iter().any(|&(s, e)| s <= addr && end <= e);
        if inside && addr.is_multiple_of(PAGE) && (data.len() as u64).is_multiple_of(PAGE) {
            let mut stalls = 0;
            while done < data.len() && stalls < 3 {
                match p.uffd.copy(addr + done as u64, &data[done..]) {
                    Ok(n) => done += n,
                    Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => stalls += 1,
                    Err(_) => break,
                }
            }
        }
        crate::progress::add_placed(done as u64);
        if done < data.len() {
            let rest = addr + done as u64;
            let mut keep = Vec::with_capacity(p.ranges.len());
            for &(s, e) in &p.ranges {
                if s < end && rest < e {
                    p.uffd.unregister(s, e).map_err(|e| {
                        Error::msg(format!(
                            "cannot write memory of process {pid}: unregistering its userfaultfd: {e}"
                        ))
                    })?;
                } else {
                    keep.push((s, e));
                }
            }
            p.ranges = keep;
        }
        Ok(done)
    }
}
