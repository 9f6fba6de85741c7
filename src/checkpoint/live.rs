//! Pre-copy (`ckpt --live`): the tree's memory is sent while it runs, then
//! rounds of only the pages written since the previous round, and the tree
//! is frozen for the last, small part.
//!
//! Writes are tracked with [`WriteTracker`] (`sys/wptrack.rs`), one per
//! process, set up during a short freeze at the start. Each round registers
//! every private mapping (new ones included), takes and re-protects the
//! pages written since the last round (`PAGEMAP_SCAN`) and sends them as
//! `PRECOPY` records, then a `PRECOPY_ROUND`. At the final freeze the
//! image proper follows: a page present then whose last pre-copied
//! contents are still current (sent, and not written since) is listed in
//! its `MM`'s `precopied` ranges instead of being sent again; everything
//! else goes as `PAGES` as usual. All-zero pages are never "sent" by a
//! round (they are left to the final part, which skips them), so a page
//! that became zero is not taken from an older copy.
//!
//! At the final freeze, which pages are current is range arithmetic over
//! ordered lists (sent, minus written since), one pass each; nothing is
//! looked up page by page.
//!
//! Tracking ends (every range unregistered, descriptor closed: no
//! protection left) right after the tree is released, a few MiB per call
//! so that the running tree never waits long on it (unregistering walks
//! every page-table entry, ~50-100 ms for 1 GiB of 4 KiB pages here, time
//! the freeze no longer includes), and on every error path (`Drop`, the
//! tree still frozen). `ckpt` returns only once it is done.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use super::freeze::Frozen;
use super::{NsPids, ProcState};
use crate::error::{Context, Error, Result};
use crate::image::{self, DataPrefix, Kind, PageRange, PrecopyRound, Writer};
use crate::sys::remote::{self, Gate, Remote};
use crate::sys::wptrack::WriteTracker;
use crate::sys::{Pid, mem, proc};

const PAGE: u64 = 4096;

/// How pre-copy decides when to stop iterating.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// Rounds at most while the tree runs (the first, full one included).
    pub max_rounds: u32,
    /// Freeze once a round wrote at most this many bytes.
    pub target: u64,
    /// Report each round on stderr.
    pub verbose: bool,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            max_rounds: 8,
            target: 4 << 20,
            verbose: false,
        }
    }
}

/// One round, for reporting.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundStat {
    pub pages: u64,
    pub took: Duration,
}

struct Tracked {
    tracker: WriteTracker,
    /// `starttime` from `/proc/PID/stat`: the same process at the end.
    started: u64,
    /// Its pid in the image.
    image_pid: u32,
    /// Pages whose last pre-copied contents are on their way: ordered,
    /// disjoint ranges.
    sent: Vec<(u64, u64)>,
}

/// Pre-copy state between the rounds and the final freeze.
pub(super) struct Precopy {
    tracked: HashMap<Pid, Tracked>,
    pub rounds: Vec<RoundStat>,
}

fn started(pid: Pid) -> Option<u64> {
    proc::stat(pid).ok().map(|s| s.start_time)
}

/// A `syscall` instruction in `pid`'s vDSO.
pub(super) fn vdso_gate(pid: Pid) -> Result<Gate> {
    let maps =
        proc::maps(pid).map_err(|e| Error::msg(format!("cannot checkpoint pid {pid}: {e}")))?;
    let vdso = maps
        .iter()
        .find(|m| m.path == b"[vdso]")
        .ok_or_else(|| Error::msg(format!("cannot checkpoint pid {pid}: it has no vDSO")))?;
    let mut code = vec![0u8; (vdso.end - vdso.start) as usize];
    mem::read_exact(pid, vdso.start, &mut code, &mut None)
        .ctx(|| format!("cannot read the vDSO of pid {pid}"))?;
    let off = remote::find_syscall_insn(&code).ok_or_else(|| {
        Error::msg(format!(
            "cannot checkpoint pid {pid}: no syscall instruction in its vDSO"
        ))
    })?;
    Ok(Gate::Syscall(vdso.start + off as u64))
}

impl Precopy {
    /// Sets up write tracking in every process of the frozen tree (one
    /// remote `userfaultfd` each). The caller releases the tree afterwards.
    pub(super) fn start(frozen: &mut Frozen, ns: &Option<NsPids>) -> Result<Precopy> {
        let mut tracked = HashMap::new();
        for (pid, _) in frozen.procs.clone() {
            super::check_abort()?;
            let gate = vdso_gate(pid)?;
            let ft = frozen
                .threads_of_mut(pid)
                .next()
                .ok_or_else(|| Error::msg(format!("cannot checkpoint pid {pid}: no thread")))?;
            let tid = ft.tid;
            let _pin = remote::SameCpu::new(tid);
            let mut r = Remote::on(&mut ft.tracee, gate)?;
            let tracker = WriteTracker::attach(&mut r, pid);
            let deferred = r.finish()?;
            remote::redeliver(pid, tid, &deferred);
            let tracker = tracker.map_err(|e| Error::msg(e.to_string()))?;
            tracked.insert(
                pid,
                Tracked {
                    tracker,
                    started: started(pid).unwrap_or(0),
                    image_pid: ns.as_ref().map_or(pid.as_u32(), |n| n.pid(pid.as_u32())),
                    sent: Vec::new(),
                },
            );
        }
        Ok(Precopy {
            tracked,
            rounds: Vec::new(),
        })
    }

    /// Runs the rounds while the tree runs, until one writes at most
    /// `opts.target` bytes, a round makes no progress, or `max_rounds`.
    pub(super) fn run<W: Write>(&mut self, w: &mut Writer<W>, opts: &LiveOptions) -> Result<()> {
        let mut buf = vec![0u8; image::CHUNK];
        for round in 0..opts.max_rounds.max(1) {
            let t = Instant::now();
            let pages = self.round(w, &mut buf)?;
            w.write(Kind::PRECOPY_ROUND, &PrecopyRound { round, pages })?;
            w.get_mut()
                .flush()
                .ctx(|| "cannot write the image".into())?;
            let stat = RoundStat {
                pages,
                took: t.elapsed(),
            };
            if opts.verbose {
                eprintln!(
                    "ckpt: pre-copy round {round}: {pages} pages ({}) in {}",
                    crate::progress::size(pages * PAGE),
                    crate::progress::secs(stat.took)
                );
            }
            let prev = self.rounds.last().map(|r| r.pages);
            self.rounds.push(stat);
            if round > 0 && pages * PAGE <= opts.target {
                break;
            }
            // No progress: the tree writes as fast as rounds go.
            if prev.is_some_and(|p| pages * 4 > p * 3) {
                break;
            }
        }
        Ok(())
    }

    /// One round over every tracked process; returns the pages sent.
    fn round<W: Write>(&mut self, w: &mut Writer<W>, buf: &mut [u8]) -> Result<u64> {
        let mut pages = 0;
        let mut gone = Vec::new();
        for (&pid, t) in self.tracked.iter_mut() {
            super::check_abort()?;
            let maps = match proc::maps(pid) {
                Ok(m) if started(pid) == Some(t.started) => m,
                _ => {
                    gone.push(pid);
                    continue;
                }
            };
            let mut written = Vec::new();
            for m in maps.iter().filter(|m| trackable(m)) {
                let private_file = m.inode != 0 && !m.is_special();
                if !t
                    .tracker
                    .track(m.start, m.end)
                    .map_err(|e| Error::msg(e.to_string()))?
                {
                    continue;
                }
                if let Err(e) = t
                    .tracker
                    .written(m.start, m.end, private_file, true, &mut written)
                {
                    // Changed under us (unmapped, remapped): its pages go
                    // at the end.
                    if e.raw_os_error() == Some(libc::EPERM) {
                        continue;
                    }
                    return Err(Error::msg(e.to_string()));
                }
            }
            let mut memf = None;
            // What this round sends, and what it finds zero or unmapped
            // (forgotten): ordered, as the scan went.
            let mut added = Vec::new();
            let mut removed = Vec::new();
            for (start, end) in written {
                let mut at = start;
                while at < end {
                    let len = ((end - at) as usize).min(buf.len());
                    let chunk = &mut buf[..len];
                    if mem::read_exact(pid, at, chunk, &mut memf).is_err() {
                        // Unmapped meanwhile: nothing of it is "sent".
                        removed.push((at, at + len as u64));
                        at += len as u64;
                        continue;
                    }
                    pages += send(w, t.image_pid, at, chunk, &mut added, &mut removed)?;
                    at += len as u64;
                }
            }
            if !added.is_empty() || !removed.is_empty() {
                let mut sent = subtract(&t.sent, &removed);
                sent.extend(added);
                t.sent = crate::image::ranges::union(sent);
            }
        }
        for pid in gone {
            self.tracked.remove(&pid);
        }
        Ok(pages)
    }

    /// At the final freeze: for each process still the one tracked, which
    /// of its dumpable pages need not be sent again. Its plans keep only
    /// the others; its `MM` lists them as `precopied`.
    pub(super) fn finish(&mut self, states: &mut [ProcState]) -> Result<u64> {
        let mut kept = 0u64;
        for s in states.iter_mut() {
            let pid = Pid::from_u32(s.process.pid);
            let Some(t) = self.tracked.get_mut(&pid) else {
                continue;
            };
            if started(pid) != Some(t.started) {
                continue;
            }
            let mut keep: Vec<(u64, u64)> = Vec::new();
            for plan in s.plans.iter_mut().filter(|p| !p.ranges.is_empty()) {
                let mut written = Vec::new();
                t.tracker
                    .written(
                        plan.vma.start,
                        plan.vma.end,
                        plan.private_file,
                        false,
                        &mut written,
                    )
                    .map_err(|e| Error::msg(e.to_string()))?;
                // Sent, and not written since: current. One mapping's
                // ranges never merge with the next one's.
                let keep_here = subtract(&intersect(&plan.ranges, &t.sent), &written);
                if keep_here.is_empty() {
                    continue;
                }
                kept += keep_here.iter().map(|(s, e)| (e - s) / PAGE).sum::<u64>();
                plan.ranges = subtract(&plan.ranges, &keep_here);
                keep.extend(keep_here);
            }
            s.mm.precopied = keep
                .into_iter()
                .map(|(start, end)| PageRange { start, end })
                .collect::<Vec<_>>()
                .into();
        }
        Ok(kept)
    }

    /// Ends tracking everywhere: no protection left. Right after the
    /// release (see the module's documentation).
    pub(super) fn stop(self) -> Result<()> {
        let mut first = Ok(());
        for (_, t) in self.tracked {
            if let Err(e) = t.tracker.stop()
                && first.is_ok()
            {
                first = Err(Error::msg(e.to_string()));
            }
        }
        first
    }
}

/// The parts of `a` inside some range of `b` (both ordered and disjoint),
/// in one pass over both.
fn intersect(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (s, e) = (a[i].0.max(b[j].0), a[i].1.min(b[j].1));
        if s < e {
            out.push((s, e));
        }
        if a[i].1 <= b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// The parts of `a` in no range of `b` (both ordered and disjoint), in
/// one pass over both.
fn subtract(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut j = 0;
    for &(s, e) in a {
        let mut at = s;
        while j < b.len() && b[j].1 <= at {
            j += 1;
        }
        let mut k = j;
        while k < b.len() && b[k].0 < e {
            if b[k].0 > at {
                out.push((at, b[k].0));
            }
            at = at.max(b[k].1);
            k += 1;
        }
        if at < e {
            out.push((at, e));
        }
    }
    out
}

/// Appends `[s, e)` to ordered ranges, merging with the last one.
fn push_range(v: &mut Vec<(u64, u64)>, s: u64, e: u64) {
    match v.last_mut() {
        Some(r) if r.1 == s => r.1 = e,
        _ => v.push((s, e)),
    }
}

/// Private mappings whose pages a checkpoint dumps (see `memory::plan`).
fn trackable(m: &proc::MapEntry) -> bool {
    !m.shared
        && !matches!(
            m.path.as_slice(),
            b"[vdso]" | b"[vvar]" | b"[vvar_vclock]" | b"[vsyscall]"
        )
}

/// Writes the non-zero runs of `chunk` (read at `at`) as `PRECOPY`
/// records of process `image_pid`, adding them to `added`; zero pages go
/// to `removed` (the final part decides them).
fn send<W: Write>(
    w: &mut Writer<W>,
    image_pid: u32,
    at: u64,
    chunk: &[u8],
    added: &mut Vec<(u64, u64)>,
    removed: &mut Vec<(u64, u64)>,
) -> Result<u64> {
    let mut pages = 0;
    let n = chunk.len() / PAGE as usize;
    let addr = |k: usize| at + k as u64 * PAGE;
    let mut i = 0;
    while i < n {
        let page = |k: usize| &chunk[k * PAGE as usize..(k + 1) * PAGE as usize];
        if mem::is_zero(page(i)) {
            push_range(removed, addr(i), addr(i + 1));
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < n && !mem::is_zero(page(j)) {
            j += 1;
        }
        let prefix = DataPrefix {
            space: image::SPACE_PROCESS,
            flags: 0,
            id: image_pid as u64,
            addr: addr(i),
        }
        .to_bytes();
        w.write_parts(
            Kind::PRECOPY,
            &[&prefix, &chunk[i * PAGE as usize..j * PAGE as usize]],
        )?;
        push_range(added, addr(i), addr(j));
        pages += (j - i) as u64;
        i = j;
    }
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_intersection_and_difference() {
        let a = [(0, 100), (200, 300), (400, 500)];
        let b = [(50, 60), (90, 250), (500, 600)];
        assert_eq!(intersect(&a, &b), vec![(50, 60), (90, 100), (200, 250)]);
        assert_eq!(intersect(&b, &a), vec![(50, 60), (90, 100), (200, 250)]);
        assert_eq!(
            subtract(&a, &b),
            vec![(0, 50), (60, 90), (250, 300), (400, 500)]
        );
        assert_eq!(subtract(&b, &a), vec![(100, 200), (500, 600)]);
        assert_eq!(subtract(&a, &[]), a.to_vec());
        assert!(intersect(&a, &[]).is_empty());
        // One range of b across several of a.
        assert_eq!(subtract(&a, &[(50, 450)]), vec![(0, 50), (450, 500)]);
        assert_eq!(
            intersect(&a, &[(50, 450)]),
            vec![(50, 100), (200, 300), (400, 450)]
        );
    }
}
