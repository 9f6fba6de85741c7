//! Copy-on-write sharing between a process and its parent (issue 14).
//!
//! After `fork`, parent and child map the same physical pages of their
//! private anonymous memory until one of them writes. This module finds,
//! for each child whose parent is in the tree, the pages it still shares:
//! at the same address in both, the same page frame in `/proc/PID/pagemap`
//! (frame numbers are shown to a reader with `CAP_SYS_ADMIN`; without it
//! they read as 0 and nothing is shared), and not mapped exclusively
//! (bit 56). Those pages are left to the parent's records; the ranges go
//! in the child's `Mm::inherited`, and its own pages there (those it wrote,
//! and zeros where the parent has data and it has none) stay in its own
//! records. The parent's pages in ranges any child inherits are written
//! first (`FORK_PAGES`), so a restorer can fill them before it forks.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use super::memory::VmaPlan;
use super::perr;
use crate::error::Result;
use crate::image::ranges::clip;
use crate::image::{self, PageRange, Vma};
use crate::sys::Pid;
use crate::sys::pagemap::{self, Pagemap};

const PAGE: u64 = 4096;

/// Whether a mapping can be inherited ([`Vma::inheritable`]).
fn eligible(v: &Vma) -> bool {
    v.inheritable()
}

/// What a child shares with its parent.
#[derive(Debug, Default)]
pub struct Shared {
    /// Ranges inherited (ordered, merged).
    pub inherited: Vec<PageRange>,
    /// Pages left to the parent's records.
    pub pages: u64,
}

/// Runs of consecutive pages (indices) for which `f` holds, as address ranges.
fn runs(start: u64, n: usize, f: impl Fn(usize) -> bool) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for i in (0..n).filter(|&i| f(i)) {
        let a = start + i as u64 * PAGE;
        match out.last_mut() {
            Some(r) if r.1 == a => r.1 = a + PAGE,
            _ => out.push((a, a + PAGE)),
        }
    }
    out
}

/// A parent's page map entries, read once for all its children (a frozen
/// tree's pages do not move): by range `(start, pages)`.
pub struct ParentPages {
    pid: Pid,
    pm: Pagemap,
    read: HashMap<(u64, usize), Vec<u64>>,
}

impl ParentPages {
    pub fn open(pid: Pid) -> Result<ParentPages> {
        Ok(ParentPages {
            pid,
            pm: Pagemap::open(pid).map_err(perr(pid))?,
            read: HashMap::new(),
        })
    }

    fn entries(&mut self, start: u64, n: usize) -> Result<&[u64]> {
        let e = match self.read.entry((start, n)) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => {
                let mut pe = Vec::new();
                self.pm.read(start, n, &mut pe).map_err(perr(self.pid))?;
                v.insert(pe)
            }
        };
        Ok(e)
    }
}

/// Finds what `child` (its VMA plans `cplans`) still shares with its
/// parent (`parent`, its VMAs `pvmas`) and rewrites the child's plans: in
/// each inherited range only its own pages are read, zero runs are written
/// (`VmaPlan::explicit`), and pages it lacks where the parent has some are
/// written as zeros (`VmaPlan::zeros`).
pub fn share(
    child: Pid,
    cplans: &mut [VmaPlan],
    parent: &mut ParentPages,
    pvmas: &[Vma],
) -> Result<Shared> {
    let cpm = Pagemap::open(child).map_err(perr(child))?;
    let mut out = Shared::default();
    let mut ce = Vec::new();
    for cp in cplans.iter_mut().filter(|p| eligible(&p.vma)) {
        let (vs, ve) = (cp.vma.start, cp.vma.end);
        for pv in pvmas.iter().filter(|v| eligible(v)) {
            let (s, e) = (vs.max(pv.start), ve.min(pv.end));
            if s >= e {
                continue;
            }
            let n = ((e - s) / PAGE) as usize;
            ce.clear();
            cpm.read(s, n, &mut ce).map_err(perr(child))?;
            let pe = parent.entries(s, n)?;
            let shared = |i: usize| {
                let (c, p) = (ce[i], pe[i]);
                pagemap::present(c)
                    && pagemap::present(p)
                    && pagemap::pfn(c) != 0
                    && pagemap::pfn(c) == pagemap::pfn(p)
                    && !pagemap::exclusive(c)
            };
            let count = (0..n).filter(|&i| shared(i)).count() as u64;
            if count == 0 {
                continue;
            }
            let has = |e: u64| pagemap::present(e) || pagemap::swapped(e);
            let own = runs(s, n, |i| has(ce[i]) && !shared(i));
            let zeros = runs(s, n, |i| !has(ce[i]) && has(pe[i]));
            // Its other ranges stay; [s, e) is now exactly `own`.
            let mut ranges = clip(&cp.ranges, &[(s, e)], false);
            ranges.extend(own);
            ranges.sort_unstable();
            cp.ranges = ranges;
            cp.zeros.extend(zeros);
            cp.explicit.push((s, e));
            cp.vma.flags |= image::VMA_F_INHERITED;
            out.pages += count;
            match out.inherited.last_mut() {
                Some(l) if l.end == s => l.end = e,
                _ => out.inherited.push(PageRange { start: s, end: e }),
            }
        }
        let pages = |r: &[(u64, u64)]| r.iter().map(|(s, e)| (e - s) / PAGE).sum::<u64>();
        cp.vma.dumped_pages = pages(&cp.ranges) + pages(&cp.zeros);
    }
    out.inherited.sort_unstable_by_key(|s| s.start);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_pages() {
        let r = runs(0x1000, 5, |i| i != 2);
        assert_eq!(r, vec![(0x1000, 0x3000), (0x4000, 0x6000)]);
    }
}
