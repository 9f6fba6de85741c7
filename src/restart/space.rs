//! Rebuilding an address space from inside the new process with remote
//! syscalls: unregister rseq, move the vDSO to the image's address, unmap
//! everything else, map every VMA of the image, and at the end set
//! protections, `mm` fields, signal state and registers.

use std::fs::File as StdFile;

use super::meta::VmaImage;
use crate::error::{Context, Error, Result};
use crate::image::{self, Backing, Mm, Process, Thread, Vma};
use crate::sys::batch::{self, Arg, Batch, Outcome, Place};
use crate::sys::codepage::CodeRegion;
use crate::sys::ids::{Pid, Tid};
use crate::sys::mem;
use crate::sys::ptrace::{self, Stopped, Waited};
use crate::sys::remote::{Remote, nr};

pub const PAGE: u64 = 4096;
/// Top of the x86_64 user address space (47-bit).
pub const TASK_SIZE: u64 = 0x7fff_ffff_f000;
/// Pages of the trampoline region: code, scratch data, and room to park the
/// vDSO and vvar while they move.
pub const TRAMP_PAGES: u64 = 72;
pub const SCRATCH_OFF: u64 = PAGE;
pub const SCRATCH_LEN: u64 = 7 * PAGE;
pub const PARK_OFF: u64 = 8 * PAGE;
/// Offset of the batch loop ([`batch::LOOP`]) in the trampoline's code page.
pub const LOOP_OFF: u64 = 16;

/// The region in the restorer (inherited by each child) holding the
/// `syscall; int3` gate, the batch loop and scratch memory.
pub struct Trampoline {
    pub addr: u64,
    pub len: u64,
    /// Unmaps the region when the trampoline is dropped.
    _region: CodeRegion,
}

impl Trampoline {
    /// Maps the region at an address no mapping of the image uses.
    pub fn map(avoid: &[(u64, u64)]) -> Result<Trampoline> {
        let len = TRAMP_PAGES * PAGE;
        let mut cand: u64 = 0x1_0000_0000;
        while cand + len < TASK_SIZE {
            let clash = avoid.iter().find(|&&(s, e)| s < cand + len && cand < e);
            if let Some(&(_, e)) = clash {
                cand = (e + 0xff_ffff) & !0xff_ffff;
                continue;
            }
            // syscall; int3 at 0, the batch loop at LOOP_OFF.
            let mut code = vec![0xcc; LOOP_OFF as usize];
            code[..2].copy_from_slice(&[0x0f, 0x05]);
            code.extend_from_slice(&batch::LOOP);
            match CodeRegion::map_at(cand, len, &code) {
                Some(region) => {
                    return Ok(Trampoline {
                        addr: region.addr(),
                        len: region.len(),
                        _region: region,
                    });
                }
                None => cand += 0x100_0000,
            }
        }
        Err(Error::msg(
            "no free address for the restorer's trampoline outside the image's mappings",
        ))
    }
    pub fn scratch(&self) -> u64 {
        self.addr + SCRATCH_OFF
    }
    /// Where batches run: the loop and the whole scratch area.
    pub fn place(&self) -> Place {
        Place {
            code: self.addr + LOOP_OFF,
            scratch: self.scratch(),
            scratch_len: SCRATCH_LEN,
        }
    }
}

/// The kernel's special mappings of the restorer (inherited by its children).
#[derive(Debug, Clone, Copy)]
pub struct Special {
    pub backing: Backing,
    pub start: u64,
    pub end: u64,
}

/// Finds `[vdso]`, `[vvar]` and `[vvar_vclock]` in our own address space.
pub fn own_specials() -> Result<Vec<Special>> {
    let maps =
        std::fs::read_to_string("/proc/self/maps").ctx(|| "cannot read /proc/self/maps".into())?;
    Ok(maps
        .lines()
        .filter_map(|l| {
            let backing = match l.split_whitespace().nth(5)? {
                "[vdso]" => Backing::Vdso,
                "[vvar]" => Backing::Vvar,
                "[vvar_vclock]" => Backing::VvarVclock,
                _ => return None,
            };
            let (s, e) = l.split_whitespace().next()?.split_once('-')?;
            Some(Special {
                backing,
                start: u64::from_str_radix(s, 16).ok()?,
                end: u64::from_str_radix(e, 16).ok()?,
            })
        })
        .collect())
}

/// A remote session with helpers for scratch memory.
pub struct Builder<'a> {
    pub r: Remote,
    pub pid: Pid,
    pub tramp: &'a Trampoline,
    pub mem: Option<StdFile>,
    /// Offset of the next free scratch byte.
    used: u64,
}

impl<'a> Builder<'a> {
    pub fn new(r: Remote, pid: Pid, tramp: &'a Trampoline) -> Self {
        Builder {
            r,
            pid,
            tramp,
            mem: None,
            used: 0,
        }
    }

    /// Copies bytes into the scratch area; returns their address there.
    pub fn put(&mut self, data: &[u8]) -> Result<u64> {
        let len = (data.len() as u64 + 15) & !15;
        if self.used + len > SCRATCH_LEN {
            self.used = 0;
        }
        if len > SCRATCH_LEN {
            return Err(Error::msg("a value for the restored process is too large"));
        }
        let addr = self.tramp.scratch() + self.used;
        mem::write_all(self.pid, addr, data, &mut self.mem)
            .ctx(|| format!("cannot write to process {}", self.pid))?;
        self.used += len;
        Ok(addr)
    }

    /// A NUL-terminated path in scratch memory.
    pub fn put_path(&mut self, p: &[u8]) -> Result<u64> {
        let mut v = Vec::with_capacity(p.len() + 1);
        v.extend_from_slice(p);
        v.push(0);
        self.put(&v)
    }

    pub fn call(&mut self, nr: i64, args: &[u64]) -> Result<u64> {
        Ok(self.r.call(nr, args)?)
    }

    /// Runs a batch in the trampoline (one resume, one trap); a failed
    /// entry is an error naming it. The batch overwrites the scratch
    /// area: addresses from [`Builder::put`] are stale afterwards.
    pub fn batch(&mut self, b: &Batch) -> Result<Outcome> {
        self.used = 0;
        Ok(self.r.run_checked(self.tramp.place(), b)?)
    }

    /// Runs a batch like [`Builder::batch`] but returns what it left even
    /// when an entry failed ([`Outcome::failed`]).
    pub fn run(&mut self, b: &Batch) -> Result<Outcome> {
        self.used = 0;
        Ok(self.r.run_batch(self.tramp.place(), b)?)
    }

    /// Runs a long list in as many batches as the scratch area needs,
    /// pushed by `add` one item at a time; every entry must succeed.
    pub fn batch_all<I>(&mut self, items: I, mut add: impl FnMut(&mut Batch, I::Item)) -> Result<()>
    where
        I: IntoIterator,
    {
        let mut b = Batch::new();
        for it in items {
            add(&mut b, it);
            if b.size() as u64 > SCRATCH_LEN / 2 {
                self.batch(&b)?;
                b = Batch::new();
            }
        }
        if !b.is_empty() {
            self.batch(&b)?;
        }
        Ok(())
    }

    /// Drops the rseq registration glibc made for the restorer's thread:
    /// its memory is about to go.
    pub fn unregister_rseq(&mut self) -> Result<()> {
        let mut b = Batch::new();
        self.push_unregister_rseq(&mut b)?;
        self.batch(&b)?;
        Ok(())
    }

    fn push_unregister_rseq(&mut self, b: &mut Batch) -> Result<()> {
        let rseq = self.r.tracee().rseq();
        if let Some(c) = rseq.ctx(|| "cannot read rseq configuration".into())? {
            b.call(nr::RSEQ, &[c.addr, c.len as u64, 1, c.sig as u64]);
        }
        Ok(())
    }

    /// Adds to `b`: drop rseq, move the kernel's vDSO and vvar to where
    /// the image had them, then unmap everything but them, the trampoline
    /// and `also` (memory inherited copy-on-write, already in place).
    pub fn push_clear_space(
        &mut self,
        b: &mut Batch,
        mine: &[Special],
        want: &[&VmaImage],
        also: &[(u64, u64)],
    ) -> Result<()> {
        self.push_unregister_rseq(b)?;
        // Park every special mapping in the trampoline region first, so no
        // move lands on another special still at its old place.
        let mut park = self.tramp.addr + PARK_OFF;
        let mut parked = Vec::new();
        let moved = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
        for s in mine {
            let len = s.end - s.start;
            if park + len > self.tramp.addr + self.tramp.len {
                return Err(Error::msg("the vDSO is larger than expected"));
            }
            b.call(nr::MREMAP, &[s.start, len, len, moved, park]);
            parked.push((s.backing, park, len));
            park += len;
        }
        let mut keep: Vec<(u64, u64)> = vec![(self.tramp.addr, self.tramp.addr + self.tramp.len)];
        for v in want {
            let (_, at, len) = parked
                .iter()
                .find(|p| p.0 == v.backing)
                .copied()
                .ok_or_else(|| {
                    Error::msg(format!(
                        "the image has a {} mapping this kernel does not provide",
                        v.backing.name()
                    ))
                })?;
            if len != v.end - v.start {
                return Err(Error::msg(format!(
                    "the image's {} is {} bytes, this kernel's is {}: a different kernel's vDSO cannot be restored",
                    v.backing.name(),
                    v.end - v.start,
                    len
                )));
            }
            b.call(nr::MREMAP, &[at, len, len, moved, v.start]);
            keep.push((v.start, v.end));
        }
        keep.extend_from_slice(also);
        keep.sort();
        let mut at = 0u64;
        for (s, e) in keep.iter().copied().chain([(TASK_SIZE, TASK_SIZE)]) {
            if s > at {
                b.call(nr::MUNMAP, &[at, s - at]);
            }
            at = at.max(e);
        }
        // Parked specials the image does not have are unmapped with the
        // trampoline region at the end.
        Ok(())
    }
}

/// Whether a VMA is one of the kernel's own mappings.
pub fn is_special(v: &VmaImage) -> bool {
    v.backing.is_special()
}

/// How a VMA is mapped during the restore: writable when the image has
/// contents for it.
pub fn build_prot(v: &Vma) -> u32 {
    if (v.dumped_pages > 0 || v.flags & image::VMA_F_INHERITED != 0)
        && v.flags & image::VMA_F_SHARED == 0
    {
        v.prot | libc::PROT_READ as u32 | libc::PROT_WRITE as u32
    } else if v.dumped_pages > 0 {
        v.prot | libc::PROT_WRITE as u32 | libc::PROT_READ as u32
    } else {
        v.prot
    }
}

/// The `struct prctl_mm_map` for `PR_SET_MM_MAP`.
pub fn mm_map_bytes(mm: &Mm, auxv_addr: u64, exe_fd: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(104);
    for v in [
        mm.start_code,
        mm.end_code,
        mm.start_data,
        mm.end_data,
        mm.start_brk,
        mm.brk,
        mm.start_stack,
        mm.arg_start,
        mm.arg_end,
        mm.env_start,
        mm.env_end,
        auxv_addr,
    ] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&(mm.auxv.len() as u32).to_le_bytes());
    b.extend_from_slice(&exe_fd.to_le_bytes());
    b
}

/// The registers a thread restarts with: a syscall it was interrupted in is
/// restarted, or returns `EINTR` when its restart state was the kernel's.
pub fn restart_regs(mut r: ptrace::Regs) -> ptrace::Regs {
    if (r.orig_rax as i64) >= 0 {
        match r.rax as i64 {
            // ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND: run it again.
            -514..=-512 => {
                r.rax = r.orig_rax;
                r.rip -= 2;
            }
            // ERESTART_RESTARTBLOCK: the kernel's restart block is gone.
            -516 => r.rax = (-libc::EINTR) as u64,
            _ => {}
        }
    }
    r.orig_rax = u64::MAX;
    r
}

/// The `n` lowest descriptor numbers free in a stopped process (the ones
/// its next `n` opens get), or `None` if its table cannot be read.
pub fn free_fds(pid: Pid, n: usize) -> Option<Vec<u64>> {
    if n == 0 {
        return Some(Vec::new());
    }
    let used = crate::sys::proc::fd_numbers(pid).ok()?;
    let mut out = Vec::with_capacity(n);
    let mut at: i32 = 0;
    let mut used = used.into_iter().peekable();
    while out.len() < n {
        while used.next_if(|&u| u < at).is_some() {}
        if used.next_if_eq(&at).is_none() {
            out.push(at as u64);
        }
        at += 1;
    }
    Some(out)
}

/// Adds the `PR_SET_MM_MAP` of `mm` to `bt` (the exe link from the
/// process's descriptor `exe_fd`, or left as it is); returns its index.
fn push_mm_map(bt: &mut Batch, p: &Process, mm: &Mm, exe_fd: Option<u64>) -> usize {
    let map = mm_map_bytes(mm, 0, exe_fd.map(|f| f as u32).unwrap_or(u32::MAX));
    let at = bt.data(&map);
    if !mm.auxv.is_empty() {
        let auxv = bt.data(&mm.auxv);
        // The auxv pointer, after the eleven other addresses.
        bt.point(at, 11 * 8, auxv);
    }
    bt.push_as(
        format!("cannot restore the memory layout fields of pid {}", p.pid),
        nr::PRCTL,
        &[
            Arg::Val(libc::PR_SET_MM as u64),
            Arg::Val(libc::PR_SET_MM_MAP as u64),
            at.into(),
            Arg::Val(map.len() as u64),
        ],
    )
}

/// Adds name, signal handlers, interval timers, subreaper and personality.
fn push_process_rest(bt: &mut Batch, p: &Process) {
    let mut comm = p.comm.clone();
    comm.truncate(15);
    let name = bt.cstr(&comm);
    bt.push(
        nr::PRCTL,
        &[Arg::Val(libc::PR_SET_NAME as u64), name.into()],
    );
    for a in p.sigactions.iter() {
        if a.signo == libc::SIGKILL as u32 || a.signo == libc::SIGSTOP as u32 {
            continue;
        }
        let mut act = Vec::with_capacity(32);
        for v in [a.handler, a.flags, a.restorer, a.mask] {
            act.extend_from_slice(&v.to_le_bytes());
        }
        let at = bt.data(&act);
        bt.push_as(
            format!(
                "cannot restore the action of signal {} of pid {}",
                a.signo, p.pid
            ),
            nr::RT_SIGACTION,
            &[
                Arg::Val(a.signo as u64),
                at.into(),
                Arg::Val(0),
                Arg::Val(8),
            ],
        );
    }
    for t in p.itimers.iter() {
        if t.value_us == 0 && t.interval_us == 0 {
            continue;
        }
        let tv = |us: u64| {
            [
                (us / 1_000_000).to_le_bytes(),
                (us % 1_000_000).to_le_bytes(),
            ]
            .concat()
        };
        let it = [tv(t.interval_us), tv(itimer_value(t))].concat();
        let at = bt.data(&it);
        bt.push(
            nr::SETITIMER,
            &[Arg::Val(t.which as u64), at.into(), Arg::Val(0)],
        );
    }
    if p.child_subreaper {
        bt.call(nr::PRCTL, &[libc::PR_SET_CHILD_SUBREAPER as u64, 1]);
    }
    if p.personality != 0 {
        bt.call(nr::PERSONALITY, &[p.personality as u64]);
    }
}

/// Sets per-process state that needs the process's own memory in place:
/// `mm` fields, auxv and the exe link, name, signal handlers, timers. One
/// batch with `head` before it and `tail` after it, for a usual process:
/// the exe is opened at the descriptor the process's table says it gets
/// (checked), `PR_SET_MM_MAP` takes it. A second batch only when the exe
/// cannot be opened or its link not changed (`EPERM`, no
/// `CAP_CHECKPOINT_RESTORE`): then the rest of the layout is set and the
/// restorer's link kept, as before.
pub fn finish_process(
    b: &mut Builder,
    p: &Process,
    mm: &Mm,
    head: Batch,
    tail: &Batch,
) -> Result<()> {
    let exe_fd = if p.exe.is_empty() {
        None
    } else {
        free_fds(b.pid, 1).and_then(|v| v.first().copied())
    };
    let mut rest = Batch::new();
    push_process_rest(&mut rest, p);
    rest.append(tail);
    let mut bt = head;
    let open_at = exe_fd.map(|_| {
        let path = bt.cstr(&p.exe);
        bt.push(
            nr::OPENAT,
            &[
                Arg::Val(libc::AT_FDCWD as u64),
                path.into(),
                Arg::Val(libc::O_RDONLY as u64),
                Arg::Val(0),
            ],
        )
    });
    let map_at = push_mm_map(&mut bt, p, mm, exe_fd);
    let mut after_map = Batch::new();
    if let Some(fd) = exe_fd {
        after_map.call(nr::CLOSE, &[fd]);
    }
    after_map.append(&rest);
    bt.append(&after_map);
    let o = b.run(&bt)?;
    if let (Some(i), Some(fd)) = (open_at, exe_fd)
        && o.result(i).is_some_and(|r| r >= 0 && r != fd as i64)
    {
        return Err(Error::msg(format!(
            "cannot restore the exe link of pid {}: its file meant for descriptor {fd} was opened as {:?}",
            p.pid,
            o.result(i)
        )));
    }
    let again = match o.failed() {
        None => return Ok(()),
        // The exe could not be opened: the layout without it, then the rest.
        Some((i, _)) if Some(i) == open_at => rest,
        // Changing the exe link needs CAP_CHECKPOINT_RESTORE; without
        // it, keep the rest of the layout and the restorer's link.
        Some((i, nix::errno::Errno::EPERM)) if i == map_at && exe_fd.is_some() => after_map,
        Some((i, errno)) => return Err(bt.error_for(i, b.r.tid(), errno).into()),
    };
    let mut bt = Batch::new();
    push_mm_map(&mut bt, p, mm, None);
    bt.append(&again);
    b.batch(&bt)?;
    Ok(())
}

/// `SS_AUTODISARM` from <linux/signal.h> (not in the libc crate).
const SS_AUTODISARM: u32 = 1 << 31;

/// Sets per-thread state through a remote session in that thread: one
/// batch, then the extended registers.
pub fn finish_thread(b: &mut Builder, t: &Thread) -> Result<()> {
    let mut bt = Batch::new();
    push_thread(&mut bt, t);
    b.batch(&bt)?;
    set_xstate(b, t)
}

/// The FPU/AVX state of the thread `b` runs in.
pub fn set_xstate(b: &mut Builder, t: &Thread) -> Result<()> {
    if !t.xstate.is_empty() {
        b.r.tracee()
            .set_xstate(&t.xstate)
            .ctx(|| format!("cannot restore FPU/AVX state of thread {}", t.tid))?;
    }
    Ok(())
}

/// Adds a thread's alternate stack, clear-tid address, name, robust list
/// and rseq to `bt`, to run in that thread.
pub fn push_thread(bt: &mut Batch, t: &Thread) {
    // Always set: a thread forked from the restorer inherits the
    // restorer's own alternate stack (Rust's std installs one), which
    // is unmapped here; an SA_ONSTACK handler would then die with SIGSEGV.
    let a = &t.altstack;
    let (sp, flags, size) = if a.flags & libc::SS_DISABLE as u32 != 0 {
        (0, libc::SS_DISABLE as u64, 0)
    } else {
        // SS_ONSTACK only reports; SS_AUTODISARM (bit 31) is a setting.
        (a.sp, (a.flags & SS_AUTODISARM) as u64, a.size)
    };
    let mut ss = Vec::with_capacity(24);
    for v in [sp, flags, size] {
        ss.extend_from_slice(&v.to_le_bytes()); // flags: int + padding
    }
    let at = bt.data(&ss);
    bt.push_as(
        format!(
            "cannot restore the alternate signal stack of thread {}",
            t.tid
        ),
        nr::SIGALTSTACK,
        &[at.into(), Arg::Val(0)],
    );
    bt.call(nr::SET_TID_ADDRESS, &[t.clear_child_tid]);
    if !t.comm.is_empty() {
        let mut comm = t.comm.clone();
        comm.truncate(15);
        let name = bt.cstr(&comm);
        bt.push(
            nr::PRCTL,
            &[Arg::Val(libc::PR_SET_NAME as u64), name.into()],
        );
    }
    if t.robust_list != 0 {
        bt.call(nr::SET_ROBUST_LIST, &[t.robust_list, t.robust_len]);
    }
    if let Some(rs) = &t.rseq {
        bt.push_as(
            format!("cannot register rseq of thread {}", t.tid),
            nr::RSEQ,
            &[
                Arg::Val(rs.addr),
                Arg::Val(rs.len as u64),
                Arg::Val(0),
                Arg::Val(rs.sig as u64),
            ],
        );
    }
}

/// Creates thread `t` in the process by a remote `clone3` in its main
/// thread (with the image's thread id); returns the new thread stopped
/// (by the id we see) and the id it sees.
pub fn create_thread(b: &mut Builder, t: &Thread, same_ids: bool) -> Result<(Stopped, Tid)> {
    let flags = (libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM) as u64;
    let tid_at = b.put(&Tid::from_u32(t.tid).as_raw().to_le_bytes())?;
    let mut args = Vec::with_capacity(88);
    let (set_tid, set_tid_size) = if same_ids { (tid_at, 1) } else { (0, 0) };
    for v in [flags, 0, 0, 0, 0, 0, 0, 0, set_tid, set_tid_size, 0] {
        args.extend_from_slice(&v.to_le_bytes());
    }
    let at = b.put(&args)?;
    let before = crate::sys::proc::tasks(b.pid).unwrap_or_default();
    let inner = b.call(nr::CLONE3, &[at, args.len() as u64]).map_err(|e| {
        Error::msg(format!(
            "cannot restore thread {} of pid {}: {e}",
            t.tid, t.pid
        ))
    })?;
    // A thread id: positive and below PID_MAX.
    let inner = Tid::from_u32(inner as u32);
    // In another pid namespace the id clone3 returns is not ours.
    let tid = crate::sys::proc::tasks(b.pid)
        .unwrap_or_default()
        .into_iter()
        .find(|x| !before.contains(x))
        .ok_or_else(|| {
            Error::msg(format!(
                "cannot restore thread {} of pid {}: it vanished",
                t.tid, t.pid
            ))
        })?;
    let tid = Tid::from_raw(tid);
    // Traced from birth (PTRACE_O_TRACECLONE): it starts in a stop.
    match ptrace::Running::traced_from_clone(tid)
        .wait()
        .ctx(|| format!("waiting for new thread {tid}"))?
    {
        Waited::Stopped(stopped, ptrace::Stop::EventStop(_)) => Ok((stopped, inner)),
        Waited::Stopped(_, other) | Waited::Gone(_, other) => Err(Error::msg(format!(
            "cannot restore thread {} of pid {}: unexpected first stop {other:?}",
            t.tid, t.pid
        ))),
    }
}

/// Queues pending signals from inside the process (`pid` and `tid` as it
/// sees them): to the whole process when `tid` is `None`, else to that
/// thread (which must be the one `b` runs in: the kernel lets only a task
/// queue kernel-made siginfo to itself).
pub fn queue_signals(
    b: &mut Builder,
    pid: Pid,
    tid: Option<Tid>,
    infos: &[super::meta::Siginfo],
) -> Result<()> {
    for info in infos {
        let sig = info.signo;
        let at = b.put(&info.raw)?;
        let pid_arg = pid.as_u32() as u64;
        let r = match tid {
            None => b.call(nr::RT_SIGQUEUEINFO, &[pid_arg, sig as u64, at]),
            Some(tid) => b.call(
                nr::RT_TGSIGQUEUEINFO,
                &[pid_arg, tid.as_u32() as u64, sig as u64, at],
            ),
        };
        r.map_err(|e| {
            Error::msg(format!(
                "cannot restore pending signal {sig} of pid {pid}: {e}"
            ))
        })?;
    }
    Ok(())
}

/// Recreates POSIX timers with their ids, notification and time left.
pub fn posix_timers(b: &mut Builder, p: &Process) -> Result<()> {
    if p.posix_timers.is_empty() {
        return Ok(());
    }
    const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;
    b.call(nr::PRCTL, &[PR_TIMER_CREATE_RESTORE_IDS, 1]).map_err(|e| {
        Error::msg(format!("cannot restore the POSIX timers of pid {}: this kernel cannot choose timer ids ({e})", p.pid))
    })?;
    let res = (|| -> Result<()> {
        for t in p.posix_timers.iter() {
            let mut sev = [0u8; 64];
            sev[0..8].copy_from_slice(&t.sigval.to_le_bytes());
            sev[8..12].copy_from_slice(&t.signo.to_le_bytes());
            sev[12..16].copy_from_slice(&t.notify.to_le_bytes());
            sev[16..20].copy_from_slice(&t.notify_tid.to_le_bytes());
            let sev_at = b.put(&sev)?;
            let id_at = b.put(&(t.id as i32).to_le_bytes())?;
            b.call(nr::TIMER_CREATE, &[t.clock as u64, sev_at, id_at])
                .map_err(|e| {
                    Error::msg(format!(
                        "cannot restore POSIX timer {} of pid {}: {e}",
                        t.id, p.pid
                    ))
                })?;
            if t.value_ns != 0 {
                let ts = |ns: u64| {
                    [
                        (ns / 1_000_000_000).to_le_bytes(),
                        (ns % 1_000_000_000).to_le_bytes(),
                    ]
                    .concat()
                };
                let its = [ts(t.interval_ns), ts(t.value_ns)].concat();
                let at = b.put(&its)?;
                b.call(nr::TIMER_SETTIME, &[t.id as u64, 0, at, 0])?;
            }
        }
        Ok(())
    })();
    b.call(nr::PRCTL, &[PR_TIMER_CREATE_RESTORE_IDS, 0])?;
    res
}

/// The value to arm an interval timer with. A periodic timer can read as
/// value 0 while it is armed: `ITIMER_REAL` between its expiry and the
/// dequeue of its `SIGALRM` (pending in the image), when the kernel re-arms
/// it; `ITIMER_VIRTUAL`/`ITIMER_PROF` when their expiry equals the process's
/// CPU-time sample (cputime accounted in ticks, an interval shorter than a
/// tick). Arming with 0 would disarm it, so a timer with an interval and
/// value 0 gets one interval: it fires again an interval later and stays
/// periodic.
pub(crate) fn itimer_value(t: &image::ITimer) -> u64 {
    if t.value_us == 0 {
        t.interval_us
    } else {
        t.value_us
    }
}
