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
//! Tried and dropped (see BENCHMARKS.md): a writer thread overlapping
//! reading records with `process_vm_writev`. On this 2-CPU machine, shared
//! with builds, it cost about 40% more CPU time than it saved in waiting.

use super::Building;
use crate::error::Result;
use crate::image;
use crate::sys::ids::Pid;
use crate::sys::remote::nr;

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
