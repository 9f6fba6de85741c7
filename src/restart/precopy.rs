//! Pre-copied pages (`ckpt --live`): staged while the rounds arrive,
//! before the metadata says which processes exist, and written into each
//! process right after its address space is built, before the final
//! part's page data.
//!
//! A page sent in several rounds is kept once (its slot is overwritten),
//! so staging holds at most the distinct pages sent, never more than this
//! machine's RAM. Only the ranges an `MM` lists as `precopied` are taken;
//! other staged pages (later unmapped, zeroed or sent again in the final
//! part) are dropped.
//!
//! **In place** (issue 13: migration downtime): the pages of the first
//! process the rounds name (the root, in `ckpt`'s tree order) are staged
//! at their own addresses, in 2 MiB regions of the restorer's memory
//! (`sys::fixedmem`, each backed by one huge page where `MADV_COLLAPSE`
//! gives one) mapped as the pages arrive. When the metadata says that
//! process is the root, forked by the restorer itself (no `--pidns`, no
//! copy-on-write sharing), [`keep_in_place`] makes those regions, clipped
//! to the root's private anonymous mappings, ranges the root keeps
//! (`CowPlan::keep`, as inherited memory is kept): the root inherits them
//! at its `clone3` (a page-table copy, a few hundred huge-page entries per
//! GiB), its address-space rebuild maps the rest of each mapping around
//! them, and no pre-copied page of it is copied after the metadata. Pages
//! there that are not current (written since their round, zeroed, never
//! sent) are dropped first (`MADV_DONTNEED`), so the final part fills
//! them. The restorer unmaps its regions once the pre-copied pages are in
//! (then every page the root kept is its own alone). Pages of other
//! processes, and those whose address the restorer itself uses, are
//! staged in 1 MiB blocks and copied as before; so is everything when
//! the fast path does not apply. The restored process differs from a
//! plain restore only in page sizes (kept pages may be huge pages) and in
//! taking a minor fault at its first write to each kept page.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::meta::Meta;
use super::plan::Plan;
use crate::error::Result;
use crate::image::{self, Backing, DataPrefix, Fault, PrecopyRound, Record};
use crate::sys::fixedmem::FixedMem;
use crate::sys::mem;

const PAGE: u64 = 4096;
/// Pages per staging block (1 MiB).
const BLOCK_PAGES: u64 = 256;
/// Highest user-space address (47-bit; 57-bit with 5-level paging).
const USER_END: u64 = 1 << 57;
/// The regions pages are staged in place in: one huge page each.
const REGION: u64 = 2 << 20;
/// The slot of a page staged in place.
const IN_PLACE: u64 = u64::MAX;

/// The pages the pre-copy rounds sent.
#[derive(Default)]
pub struct Staging {
    blocks: Vec<Vec<u8>>,
    /// Pages in `blocks` so far.
    block_pages: u64,
    /// `(image pid, page address)` -> page of `blocks` (pages staged in
    /// place are in `placed.pages`).
    slots: HashMap<(u32, u64), u64>,
    /// The first process's pages at their own addresses.
    placed: Placed,
    /// Rounds closed so far.
    rounds: u32,
    /// Pages of the round not yet closed.
    open: bool,
    /// Pages received in all (rewrites included), for reporting.
    pub received: u64,
}

/// Pages of one process staged at their own addresses (module docs).
#[derive(Default)]
struct Placed {
    /// Decided at the first record: its process, or none (in place turned
    /// off by `CRTOOLS_NO_KEEP`).
    pid: Option<Option<u32>>,
    /// By address.
    regions: BTreeMap<u64, FixedMem>,
    /// Regions whose address the restorer uses itself.
    taken: HashSet<u64>,
    /// `MADV_COLLAPSE` failed once: not tried again.
    no_collapse: bool,
    /// Ranges the root keeps ([`keep_in_place`]).
    kept: Vec<(u64, u64)>,
    /// Pages there that are not current ([`keep_in_place`]).
    stale: Vec<(u64, u64)>,
    /// Bytes of current pages there.
    kept_bytes: u64,
    /// The pages staged in place, as merged ranges (start -> end).
    pages: BTreeMap<u64, u64>,
    /// How many.
    count: u64,
}

impl Placed {
    /// Whether `pid`'s pages are staged in place.
    fn takes(&mut self, pid: u32) -> bool {
        let p = *self.pid.get_or_insert_with(|| {
            let off = std::env::var_os("CRTOOLS_NO_KEEP").is_some_and(|v| !v.is_empty());
            (!off).then_some(pid)
        });
        p == Some(pid)
    }

    /// Whether the page at `addr` can be staged in place: its region is
    /// mapped (now, if it was not).
    fn room(&mut self, addr: u64) -> bool {
        let at = addr & !(REGION - 1);
        if self.regions.contains_key(&at) {
            return true;
        }
        if self.taken.contains(&at) {
            return false;
        }
        let Ok(mut r) = FixedMem::map_at(at, REGION) else {
            self.taken.insert(at);
            return false;
        };
        if !self.no_collapse {
            // One page present, then one huge page for the region: the
            // rest of its pages are written without a fault, and a fork
            // copies one entry for it instead of 512.
            r.write(0, &[0]);
            self.no_collapse = r.collapse(0, REGION).is_err();
        }
        self.regions.insert(at, r);
        true
    }

    fn write(&mut self, addr: u64, data: &[u8]) {
        let at = addr & !(REGION - 1);
        let r = self.regions.get_mut(&at).expect("a mapped region");
        r.write(addr - at, data);
    }

    fn bytes(&self, addr: u64, len: u64) -> &[u8] {
        let at = addr & !(REGION - 1);
        self.regions
            .get(&at)
            .expect("a mapped region")
            .bytes(addr - at, len)
    }

    /// Records `start..end` as staged; returns how many of its pages
    /// were not before.
    fn insert(&mut self, start: u64, end: u64) -> u64 {
        use std::ops::Bound::{Excluded, Included};
        let (mut s, mut e, mut old) = (start, end, 0);
        let mut merged = Vec::new();
        if let Some((&a, &b)) = self.pages.range(..=start).next_back()
            && b >= start
        {
            old += b.min(end) - start;
            (s, e) = (a, e.max(b));
            merged.push(a);
        }
        for (&a, &b) in self.pages.range((Excluded(start), Included(end))) {
            old += b.min(end) - a;
            e = e.max(b);
            merged.push(a);
        }
        for a in merged {
            self.pages.remove(&a);
        }
        self.pages.insert(s, e);
        let new = (end - start - old) / PAGE;
        self.count += new;
        new
    }

    /// Whether the page at `addr` is staged in place.
    fn contains(&self, addr: u64) -> bool {
        self.pages
            .range(..=addr)
            .next_back()
            .is_some_and(|(_, &e)| e > addr)
    }

    /// The first page of `start..end` not staged in place.
    fn missing(&self, start: u64, end: u64) -> Option<u64> {
        let mut at = start;
        while at < end {
            match self.pages.range(..=at).next_back() {
                Some((_, &e)) if e > at => at = e,
                _ => return Some(at),
            }
        }
        None
    }

    /// Whether page `addr` of `pid` belongs in place (its region is one).
    fn holds(&self, pid: u32, addr: u64) -> bool {
        self.pid == Some(Some(pid)) && self.regions.contains_key(&(addr & !(REGION - 1)))
    }

    /// The regions as ordered, merged ranges.
    fn ranges(&self) -> Vec<(u64, u64)> {
        image::ranges::union(self.regions.keys().map(|&a| (a, a + REGION)).collect())
    }
}

fn max_pages() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::_PHYS_PAGES)
        .ok()
        .flatten()
        .map(|n| n as u64)
        .unwrap_or(u64::MAX)
}

impl Staging {
    /// Whether the stream had pre-copy rounds.
    pub fn is_empty(&self) -> bool {
        self.rounds == 0 && !self.open
    }

    /// Rounds received.
    pub fn rounds(&self) -> u32 {
        self.rounds
    }

    /// Stages a `PRECOPY` record.
    pub fn add(&mut self, rec: &Record) -> std::result::Result<(), Fault> {
        let bad = Fault::PrecopyBadRecord { seq: rec.seq };
        let (pre, data) = DataPrefix::parse(&rec.payload).ok_or(bad.clone())?;
        let len = data.len() as u64;
        if pre.space != image::SPACE_PROCESS
            || pre.flags != 0
            || pre.id == 0
            || pre.id > u32::MAX as u64
            || !pre.addr.is_multiple_of(PAGE)
            || len == 0
            || !len.is_multiple_of(PAGE)
            || pre.addr.checked_add(len).is_none_or(|e| e > USER_END)
        {
            return Err(bad);
        }
        self.open = true;
        let pid = pre.id as u32;
        let limit = max_pages();
        let in_place = self.placed.takes(pid);
        let end = pre.addr + len;
        let mut at = pre.addr;
        while at < end {
            let seg = end.min((at & !(REGION - 1)) + REGION);
            let bytes = &data[(at - pre.addr) as usize..(seg - pre.addr) as usize];
            if in_place && self.placed.room(at) {
                self.placed.write(at, bytes);
                self.placed.insert(at, seg);
                if self.slots.len() as u64 + self.placed.count > limit {
                    return Err(Fault::PrecopyTooLarge);
                }
            } else {
                for (k, page) in bytes.chunks_exact(PAGE as usize).enumerate() {
                    self.add_block_page(pid, at + k as u64 * PAGE, page, limit)?;
                }
            }
            at = seg;
        }
        self.received += len / PAGE;
        Ok(())
    }

    /// Stages one page in a block.
    fn add_block_page(
        &mut self,
        pid: u32,
        addr: u64,
        page: &[u8],
        limit: u64,
    ) -> std::result::Result<(), Fault> {
        let slot = match self.slots.get(&(pid, addr)) {
            Some(&s) => s,
            None => {
                if self.slots.len() as u64 + self.placed.count >= limit {
                    return Err(Fault::PrecopyTooLarge);
                }
                self.block_pages += 1;
                self.slots.insert((pid, addr), self.block_pages - 1);
                self.block_pages - 1
            }
        };
        let (b, off) = (
            (slot / BLOCK_PAGES) as usize,
            (slot % BLOCK_PAGES * PAGE) as usize,
        );
        if b == self.blocks.len() {
            self.blocks.push(vec![0u8; (BLOCK_PAGES * PAGE) as usize]);
        }
        self.blocks[b][off..off + PAGE as usize].copy_from_slice(page);
        Ok(())
    }

    /// Closes a round (`PRECOPY_ROUND`).
    pub fn end_round(&mut self, r: &PrecopyRound) -> std::result::Result<(), Fault> {
        if r.round != self.rounds {
            return Err(Fault::PrecopyRoundOrder {
                round: r.round,
                expected: self.rounds,
            });
        }
        self.rounds += 1;
        self.open = false;
        Ok(())
    }

    /// At the first metadata record: the rounds must be complete.
    pub fn check_closed(&self) -> std::result::Result<(), Fault> {
        if self.open {
            return Err(Fault::PrecopyUnfinished);
        }
        if self.rounds > 0 {
            crate::progress::rounds_ended();
        }
        Ok(())
    }

    /// Checks that every page of `ranges` of process `pid` was staged and
    /// lies in one of `writable` (mappings with contents).
    pub fn check(
        &self,
        pid: u32,
        ranges: &[image::PageRange],
        writable: &[(u64, u64)],
    ) -> std::result::Result<(), Fault> {
        for r in ranges {
            if r.start >= r.end
                || !r.start.is_multiple_of(PAGE)
                || !r.end.is_multiple_of(PAGE)
                || !writable.iter().any(|&(s, e)| s <= r.start && r.end <= e)
            {
                return Err(Fault::PrecopyRange {
                    pid,
                    start: r.start,
                    end: r.end,
                });
            }
            let mut at = r.start;
            while at < r.end {
                let seg = r.end.min((at & !(REGION - 1)) + REGION);
                if self.placed.holds(pid, at) {
                    if let Some(addr) = self.placed.missing(at, seg) {
                        return Err(Fault::PrecopyMissing { pid, addr });
                    }
                } else {
                    for addr in (at..seg).step_by(PAGE as usize) {
                        if !self.slots.contains_key(&(pid, addr)) {
                            return Err(Fault::PrecopyMissing { pid, addr });
                        }
                    }
                }
                at = seg;
            }
        }
        Ok(())
    }

    /// The staged pages of `ranges` of process `pid` as `(address,
    /// bytes)` runs, contiguous both in the process and in staging (at
    /// most one staging block or in-place region each), leaving out what
    /// the process keeps in place.
    pub fn runs(
        &self,
        pid: u32,
        ranges: &[image::PageRange],
    ) -> std::result::Result<Vec<(u64, &[u8])>, Fault> {
        let ranges: Vec<(u64, u64)> = ranges.iter().map(|r| (r.start, r.end)).collect();
        let ranges = match self.placed.pid {
            Some(Some(p)) if p == pid => image::ranges::subtract(&ranges, &self.placed.kept),
            _ => ranges,
        };
        // (address, first slot, pages): runs contiguous in both.
        let mut runs: Vec<(u64, u64, u64)> = Vec::new();
        for (start, end) in ranges {
            for addr in (start..end).step_by(PAGE as usize) {
                let slot = if self.placed.holds(pid, addr) {
                    if !self.placed.contains(addr) {
                        return Err(Fault::PrecopyMissing { pid, addr });
                    }
                    IN_PLACE
                } else {
                    *self
                        .slots
                        .get(&(pid, addr))
                        .ok_or(Fault::PrecopyMissing { pid, addr })?
                };
                match runs.last_mut() {
                    Some((a, IN_PLACE, n))
                        if slot == IN_PLACE
                            && *a + *n * PAGE == addr
                            && !addr.is_multiple_of(REGION) =>
                    {
                        *n += 1
                    }
                    Some((a, s, n))
                        if slot != IN_PLACE
                            && *s != IN_PLACE
                            && *a + *n * PAGE == addr
                            && *s + *n == slot
                            && slot % BLOCK_PAGES != 0 =>
                    {
                        *n += 1
                    }
                    _ => runs.push((addr, slot, 1)),
                }
            }
        }
        Ok(runs
            .iter()
            .map(|&(addr, slot, n)| {
                if slot == IN_PLACE {
                    return (addr, self.placed.bytes(addr, n * PAGE));
                }
                let off = (slot % BLOCK_PAGES * PAGE) as usize;
                let block = &self.blocks[(slot / BLOCK_PAGES) as usize];
                (addr, &block[off..off + (n * PAGE) as usize])
            })
            .collect())
    }

    /// Bytes of process `pid`'s pre-copied pages it keeps in place (none
    /// copied).
    pub fn kept_bytes(&self, pid: u32) -> u64 {
        match self.placed.pid {
            Some(Some(p)) if p == pid => self.placed.kept_bytes,
            _ => 0,
        }
    }

    /// The ranges process `pid` keeps in place (empty for any other).
    pub fn kept(&self, pid: u32) -> &[(u64, u64)] {
        match self.placed.pid {
            Some(Some(p)) if p == pid => &self.placed.kept,
            _ => &[],
        }
    }

    /// After the final part, in which process `bp` (the root) got
    /// `written`: drops the pages it kept that are not current and were
    /// not written again (zeroed or dropped since their round), so they
    /// read as zeros, as they do in the original.
    pub(crate) fn drop_stale(
        &self,
        bp: &mut super::Building,
        written: &[(u64, u64)],
    ) -> Result<()> {
        if self.kept(bp.pi.p.pid).is_empty() || self.placed.stale.is_empty() {
            return Ok(());
        }
        let gone =
            image::ranges::subtract(&self.placed.stale, &image::ranges::union(written.to_vec()));
        let mut bt = crate::sys::batch::Batch::new();
        for (k, &(s, e)) in gone.iter().enumerate() {
            bt.call(
                crate::sys::remote::nr::MADVISE,
                &[s, e - s, libc::MADV_DONTNEED as u64],
            );
            if bt.size() as u64 > super::space::SCRATCH_LEN / 2 || k + 1 == gone.len() {
                bp.b.batch(&bt).map_err(|e| {
                    crate::error::Error::msg(format!(
                        "cannot drop stale pre-copied pages of process {}: {e}",
                        bp.pid
                    ))
                })?;
                bt = crate::sys::batch::Batch::new();
            }
        }
        Ok(())
    }

    /// Unmaps the in-place regions: once the pre-copied pages are written,
    /// the root's kept pages are its own alone (no copy when it writes
    /// them) and the restorer no longer holds the memory.
    pub fn release_placed(&mut self) {
        self.placed.regions.clear();
    }

    /// Writes `pieces` (from [`Staging::runs`]) into process `target` with
    /// as few `process_vm_writev` calls as possible.
    pub fn write_pieces(
        target: crate::sys::Pid,
        pieces: &[(u64, &[u8])],
        memf: &mut Option<std::fs::File>,
    ) -> Result<()> {
        mem::write_batch(target, pieces, memf).map_err(|e| {
            crate::error::Error::msg(format!(
                "cannot write pre-copied memory of process {target}: {e}"
            ))
        })
    }
}

/// Whether `v` is a mapping the root may keep in-place pages in: private
/// anonymous memory with contents, made like the regions (no
/// `MAP_GROWSDOWN`); its protections and advice are set over the whole
/// mapping later, kept parts included.
fn keeps(v: &super::meta::VmaImage) -> bool {
    v.backing == Backing::Anon
        && v.flags & (image::VMA_F_SHARED | image::VMA_F_GROWSDOWN) == 0
        && v.dumped_pages > 0
}

/// The fast path of the module docs: when the root is the process staged
/// in place and the restorer forks it itself, the root keeps the regions
/// inside its private anonymous mappings (its plan's `cow.keep`), pages
/// there that are not current are dropped, and the regions are marked to
/// be inherited by nothing else. Otherwise (or for what is left) the
/// regions are kept from every fork (`MADV_DONTFORK`) and their pages are
/// copied like the others. Returns the bytes kept.
pub(crate) fn keep_in_place(meta: &Meta, plan: &mut Plan, staged: &mut Staging) -> Result<u64> {
    let placed = &mut staged.placed;
    if placed.regions.is_empty() {
        return Ok(0);
    }
    let root = meta.root();
    let fast = placed.pid == Some(Some(root.p.pid))
        && !plan.new_pidns
        && !plan.with_init
        && !plan.shares()
        && !root.mm.precopied.is_empty();
    if fast {
        let regions = placed.ranges();
        // Only mappings the regions cover whole: in one kept in part, the
        // kept part (inherited, with the restorer's anon_vma) and the part
        // mapped anew could not merge, and the restored process would see
        // two mappings where it had one.
        let vmas: Vec<(u64, u64)> = root
            .mm
            .vmas
            .iter()
            .filter(|v| keeps(v))
            .map(|v| (v.start, v.end))
            .filter(|&v| image::ranges::subtract(&[v], &regions).is_empty())
            .collect();
        let kept = image::ranges::clip(&regions, &vmas, true);
        let current: Vec<(u64, u64)> = root.mm.precopied.iter().map(|r| (r.start, r.end)).collect();
        // Staged but not current (written since their round, or zeroed):
        // the final part's pages go there; what it does not send is
        // dropped at the end (`drop_stale`). Pages never sent are zeros
        // in the regions already.
        let pid = root.p.pid;
        let mut stale: Vec<(u64, u64)> = Vec::new();
        let current = image::ranges::union(current);
        let kept_bytes = image::ranges::clip(&current, &kept, true)
            .iter()
            .map(|&(s, e)| e - s)
            .sum();
        for (s, e) in image::ranges::subtract(&kept, &current) {
            for addr in (s..e).step_by(PAGE as usize) {
                if staged.placed.contains(addr) {
                    match stale.last_mut() {
                        Some(l) if l.1 == addr => l.1 += PAGE,
                        _ => stale.push((addr, addr + PAGE)),
                    }
                }
            }
        }
        let placed = &mut staged.placed;
        let keep = &mut plan.procs[0].cow.keep;
        *keep = image::ranges::union(keep.iter().copied().chain(kept.iter().copied()).collect());
        placed.kept = kept;
        placed.stale = stale;
        placed.kept_bytes = kept_bytes;
        return Ok(staged.kept_bytes(pid));
    }
    for r in placed.regions.values() {
        r.dont_fork().map_err(|e| {
            crate::error::Error::msg(format!(
                "cannot keep pre-copied pages from the restored processes: {e}"
            ))
        })?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_staged_in_place_merge_and_count_once() {
        let mut p = Placed::default();
        let k = |n: u64| n * PAGE;
        assert_eq!(p.insert(k(10), k(20)), 10);
        assert_eq!(p.insert(k(30), k(40)), 10);
        // Overlapping both, bridging the gap, and a repeat.
        assert_eq!(p.insert(k(15), k(35)), 10);
        assert_eq!(p.insert(k(10), k(40)), 0);
        // Adjacent on both sides.
        assert_eq!(p.insert(k(40), k(41)), 1);
        assert_eq!(p.insert(k(9), k(10)), 1);
        assert_eq!(p.count, 32);
        assert_eq!(p.pages.len(), 1);
        assert!(p.contains(k(9)) && p.contains(k(40)));
        assert!(!p.contains(k(8)) && !p.contains(k(41)));
        assert_eq!(p.missing(k(9), k(41)), None);
        assert_eq!(p.missing(k(5), k(41)), Some(k(5)));
        assert_eq!(p.insert(k(50), k(52)), 2);
        assert_eq!(p.missing(k(20), k(52)), Some(k(41)));
        assert_eq!(p.missing(k(50), k(53)), Some(k(52)));
    }
}
