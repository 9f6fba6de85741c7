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
//! Tracking ends (every range unregistered, descriptor closed: no
//! protection left) before the tree is released, and on every error path
//! (`Drop`).

use std::collections::{HashMap, HashSet};
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
    /// Pages whose last pre-copied contents are on their way.
    sent: HashSet<u64>,
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
                    image_pid: ns.as_ref().map_or(pid.as_u32(), |n| n.pid(pid.as_raw())),
                    sent: HashSet::new(),
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
            for (start, end) in written {
                let mut at = start;
                while at < end {
                    let len = ((end - at) as usize).min(buf.len());
                    let chunk = &mut buf[..len];
                    if mem::read_exact(pid, at, chunk, &mut memf).is_err() {
                        // Unmapped meanwhile: nothing of it is "sent".
                        for p in (at..at + len as u64).step_by(PAGE as usize) {
                            t.sent.remove(&p);
                        }
                        at += len as u64;
                        continue;
                    }
                    pages += send(w, t, at, chunk)?;
                    at += len as u64;
                }
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
            let pid = Pid::from_raw(s.process.pid as i32);
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
                let mut wi = 0;
                let mut send: Vec<(u64, u64)> = Vec::new();
                // One mapping's ranges never merge with the next one's.
                let mut keep_here: Vec<(u64, u64)> = Vec::new();
                for &(start, end) in &plan.ranges {
                    for p in (start..end).step_by(PAGE as usize) {
                        while wi < written.len() && written[wi].1 <= p {
                            wi += 1;
                        }
                        let dirty = wi < written.len() && written[wi].0 <= p;
                        if !dirty && t.sent.contains(&p) {
                            kept += 1;
                            push(&mut keep_here, p);
                        } else {
                            push(&mut send, p);
                        }
                    }
                }
                plan.ranges = send;
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

    /// Ends tracking everywhere: no protection left. Before the release.
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

fn push(v: &mut Vec<(u64, u64)>, p: u64) {
    match v.last_mut() {
        Some(r) if r.1 == p => r.1 = p + PAGE,
        _ => v.push((p, p + PAGE)),
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
/// records; zero pages are forgotten (the final part decides them).
fn send<W: Write>(w: &mut Writer<W>, t: &mut Tracked, at: u64, chunk: &[u8]) -> Result<u64> {
    let mut pages = 0;
    let n = chunk.len() / PAGE as usize;
    let mut i = 0;
    while i < n {
        let page = |k: usize| &chunk[k * PAGE as usize..(k + 1) * PAGE as usize];
        if mem::is_zero(page(i)) {
            t.sent.remove(&(at + i as u64 * PAGE));
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
            id: t.image_pid as u64,
            addr: at + i as u64 * PAGE,
        }
        .to_bytes();
        w.write_parts(
            Kind::PRECOPY,
            &[&prefix, &chunk[i * PAGE as usize..j * PAGE as usize]],
        )?;
        for k in i..j {
            t.sent.insert(at + k as u64 * PAGE);
        }
        pages += (j - i) as u64;
        i = j;
    }
    Ok(pages)
}
