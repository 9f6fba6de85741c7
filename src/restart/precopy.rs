//! Pre-copied pages (`ckpt --live`): staged while the rounds arrive,
//! before the metadata says which processes exist, and written into each
//! process right after its address space is built, before the final
//! part's page data.
//!
//! A page sent in several rounds is kept once (its slot is overwritten),
//! so staging holds at most the distinct pages sent, in 1 MiB blocks of
//! the restorer's memory, never more than this machine's RAM. Only the
//! ranges an `MM` lists as `precopied` are taken; other staged pages (later
//! unmapped, zeroed or sent again in the final part) are dropped.

use std::collections::HashMap;

use crate::error::Result;
use crate::image::{self, DataPrefix, Fault, PrecopyRound, Record};
use crate::sys::mem;

const PAGE: u64 = 4096;
/// Pages per staging block (1 MiB).
const BLOCK_PAGES: u64 = 256;
/// Highest user-space address (47-bit; 57-bit with 5-level paging).
const USER_END: u64 = 1 << 57;

/// The pages the pre-copy rounds sent.
#[derive(Default)]
pub struct Staging {
    blocks: Vec<Vec<u8>>,
    /// `(image pid, page address)` -> slot.
    slots: HashMap<(u32, u64), u64>,
    /// Rounds closed so far.
    rounds: u32,
    /// Pages of the round not yet closed.
    open: bool,
    /// Pages received in all (rewrites included), for reporting.
    pub received: u64,
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
        for (k, page) in data.chunks_exact(PAGE as usize).enumerate() {
            let addr = pre.addr + k as u64 * PAGE;
            let next = self.slots.len() as u64;
            let slot = *self.slots.entry((pid, addr)).or_insert(next);
            if slot == next && next >= limit {
                return Err(Fault::PrecopyTooLarge);
            }
            let (b, off) = (
                (slot / BLOCK_PAGES) as usize,
                (slot % BLOCK_PAGES * PAGE) as usize,
            );
            if b == self.blocks.len() {
                self.blocks.push(vec![0u8; (BLOCK_PAGES * PAGE) as usize]);
            }
            self.blocks[b][off..off + PAGE as usize].copy_from_slice(page);
        }
        self.received += len / PAGE;
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
            for addr in (r.start..r.end).step_by(PAGE as usize) {
                if !self.slots.contains_key(&(pid, addr)) {
                    return Err(Fault::PrecopyMissing { pid, addr });
                }
            }
        }
        Ok(())
    }

    /// The staged pages of `ranges` of process `pid` as `(address,
    /// bytes)` runs, contiguous both in the process and in staging (at
    /// most one staging block each).
    pub fn runs(
        &self,
        pid: u32,
        ranges: &[image::PageRange],
    ) -> std::result::Result<Vec<(u64, &[u8])>, Fault> {
        // (address, first slot, pages): runs contiguous in both.
        let mut runs: Vec<(u64, u64, u64)> = Vec::new();
        for r in ranges {
            for addr in (r.start..r.end).step_by(PAGE as usize) {
                let slot = *self
                    .slots
                    .get(&(pid, addr))
                    .ok_or(Fault::PrecopyMissing { pid, addr })?;
                match runs.last_mut() {
                    Some((a, s, n))
                        if *a + *n * PAGE == addr && *s + *n == slot && slot % BLOCK_PAGES != 0 =>
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
                let off = (slot % BLOCK_PAGES * PAGE) as usize;
                let block = &self.blocks[(slot / BLOCK_PAGES) as usize];
                (addr, &block[off..off + (n * PAGE) as usize])
            })
            .collect())
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
