//! Copy-on-write sharing restored (issue 14): the pages a parent had when
//! it forked children that still share them come first in the bulk data
//! (`FORK_PAGES`), so the restorer writes them into the parent while it
//! waits in [`super::child`] with those ranges mapped, before it forks the
//! children, which then inherit them as the kernel did originally.
//!
//! Without sharing (`Plan::drop_sharing`: a range collides with the
//! restorer's own mappings, or in-place), the same records are written
//! into the process and into every descendant that inherits them
//! ([`propagate`]), before any process's own pages.

use std::io::Read;

use super::meta::Meta;
use super::plan::Plan;
use super::spawn::Fill;
use super::{Building, spool};
use crate::error::{Context, Error, Result};
use crate::image::{self, DataPrefix, Fault, Kind, RawRecord};
use crate::sys::{Pid, mem, proc};

/// The bytes of a `FORK_PAGES` record: its data, or zeros for a
/// `DATA_F_ZERO` length (taken from `zeros`).
pub(crate) fn fork_data<'a>(
    seq: u32,
    pre: &DataPrefix,
    data: &'a [u8],
    zeros: &'a [u8],
) -> Result<&'a [u8]> {
    if pre.flags & image::DATA_F_ZERO == 0 {
        return Ok(data);
    }
    let len = data.get(..8).ok_or(Fault::ZeroNoLength { seq })?;
    let n = u64::from_le_bytes(len.try_into().expect("8 bytes"));
    Ok(zeros
        .get(..n.try_into().unwrap_or(usize::MAX))
        .ok_or(Fault::ZeroTooLong { seq })?)
}

/// Whether a copy-on-write range of the plan collides with a mapping of
/// the restorer itself (whose forks run [`super::child`] until they are
/// rebuilt): then the plan cannot share.
pub(crate) fn collides(plan: &Plan) -> Result<bool> {
    let me = Pid::this();
    let maps = proc::maps(me).map_err(|e| Error::msg(format!("cannot read own maps: {e}")))?;
    Ok(plan.procs.iter().any(|p| {
        p.cow
            .fork_map
            .iter()
            .any(|&(s, e)| maps.iter().any(|m| m.start < e && s < m.end))
    }))
}

/// Fills, in stream order, what each process's children inherit, as the
/// processes ask ([`Fill`]).
pub(crate) struct EarlyFill<'a, 'r, R: Read> {
    pub next: &'a mut Option<RawRecord>,
    pub source: &'a mut spool::Source<'r, R>,
    meta: &'a Meta,
    /// Live indices of the processes that ask, in image order.
    order: Vec<usize>,
    k: usize,
    /// Ranges each may be written in (what it keeps), by live index.
    keep: Vec<Vec<(u64, u64)>>,
    asked: Vec<Option<Pid>>,
    zeros: Vec<u8>,
}

impl<'a, 'r, R: Read> EarlyFill<'a, 'r, R> {
    pub(crate) fn new(
        meta: &'a Meta,
        plan: &Plan,
        next: &'a mut Option<RawRecord>,
        source: &'a mut spool::Source<'r, R>,
    ) -> Self {
        let order = (0..plan.procs.len())
            .filter(|&i| plan.procs[i].cow.fill)
            .collect();
        EarlyFill {
            next,
            source,
            meta,
            order,
            k: 0,
            keep: plan.procs.iter().map(|p| p.cow.keep.clone()).collect(),
            asked: vec![None; plan.procs.len()],
            zeros: Vec::new(),
        }
    }

    /// Every process that was to ask did, and no `FORK_PAGES` are left.
    pub(crate) fn done(&self) -> Result<()> {
        if let Some(&i) = self.order.get(self.k) {
            return Err(Error::msg(format!(
                "cannot restore pid {}: it never asked for the memory its children inherit",
                self.meta.live()[i].p.pid
            )));
        }
        // Without sharing, the bulk data writes them all (`propagate`).
        let shares = !self.order.is_empty();
        if let Some(r) = self
            .next
            .as_ref()
            .filter(|r| shares && r.head.kind == Kind::FORK_PAGES)
        {
            return Err(out_of_order(r));
        }
        Ok(())
    }

    /// Writes the `FORK_PAGES` records of process `i` (pid `pid`).
    fn fill_one(&mut self, i: usize, pid: Pid) -> Result<()> {
        let image_pid = self.meta.live()[i].p.pid as u64;
        let mut memf = None;
        while let Some(raw) = self.next.take() {
            if raw.head.kind != Kind::FORK_PAGES {
                *self.next = Some(raw);
                break;
            }
            let rec = raw.decode()?;
            let (pre, data) =
                DataPrefix::parse(&rec.payload).ok_or(Fault::ShortData { seq: rec.seq })?;
            if pre.id != image_pid || pre.space != image::SPACE_PROCESS {
                // The next process's, if it is one that asks.
                let later = self.order[self.k + 1..]
                    .iter()
                    .any(|&j| self.meta.live()[j].p.pid as u64 == pre.id);
                if !later || pre.space != image::SPACE_PROCESS {
                    return Err(out_of_order(&raw));
                }
                *self.next = Some(raw);
                break;
            }
            if pre.flags & image::DATA_F_ZERO != 0 && self.zeros.is_empty() {
                self.zeros = vec![0u8; image::CHUNK];
            }
            let bytes = fork_data(rec.seq, &pre, data, &self.zeros)?;
            let end = pre.addr.saturating_add(bytes.len() as u64);
            if !self.keep[i].iter().any(|&(s, e)| s <= pre.addr && end <= e) {
                return Err(Fault::PagesOutside {
                    id: pre.id,
                    start: pre.addr,
                    end,
                }
                .into());
            }
            mem::write_all(pid, pre.addr, bytes, &mut memf)
                .ctx(|| format!("cannot write memory of process {pid}"))?;
            *self.next = self.source.next_record()?;
        }
        Ok(())
    }
}

fn out_of_order(r: &RawRecord) -> Error {
    Fault::ForkPages {
        seq: r.head.seq,
        live: false,
        per_process: true,
    }
    .into()
}

impl<R: Read> Fill for EarlyFill<'_, '_, R> {
    fn request(&mut self, idx: usize, pid: Pid) -> Result<Vec<usize>> {
        if !self.order.contains(&idx) || self.asked[idx].is_some() {
            return Err(Error::msg(format!(
                "cannot restore pid {}: it asked for memory it was not to get",
                self.meta.live()[idx].p.pid
            )));
        }
        self.asked[idx] = Some(pid);
        let mut go = Vec::new();
        while let Some(&i) = self.order.get(self.k) {
            let Some(pid) = self.asked[i] else { break };
            self.fill_one(i, pid)?;
            go.push(i);
            self.k += 1;
        }
        Ok(go)
    }
}

/// Without sharing: writes `data` at `addr` of process `i`'s descendants
/// that inherit it (through every generation between).
pub(crate) fn propagate(building: &mut [Building], i: usize, addr: u64, data: &[u8]) -> Result<()> {
    let end = addr + data.len() as u64;
    let children: Vec<usize> = (0..building.len())
        .filter(|&c| building[c].pi.parent == Some(i))
        .collect();
    for c in children {
        let inherit: Vec<(u64, u64)> = building[c]
            .pi
            .mm
            .inherited
            .iter()
            .map(|r| (r.start, r.end))
            .collect();
        for (s, e) in image::ranges::clip(&[(addr, end)], &inherit, true) {
            let part = &data[(s - addr) as usize..(e - addr) as usize];
            let bp = &mut building[c];
            mem::write_all(bp.pid, s, part, &mut bp.b.mem)
                .ctx(|| format!("cannot write memory of process {}", bp.pid))?;
            propagate(building, c, s, part)?;
        }
    }
    Ok(())
}
