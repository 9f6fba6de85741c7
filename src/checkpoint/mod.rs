//! Checkpoint: freeze a process tree, read its state from /proc, ptrace
//! and remote syscalls, and write its image.
//!
//! Order of the stream: header; per process `PROCESS`, `THREAD`s, `MM`;
//! `FILE`s and `SHMEM`s; `FDTABLE`s; then page data; then contents of
//! deleted files; then the end record. The tree is let go only after the
//! whole image is written and flushed; on any error before, it is resumed
//! untouched.

pub mod files;
pub mod freeze;
pub mod ipc;
pub mod memory;

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use crate::error::{Context, Error, Result};
use crate::image::{
    self, AltStack, Creds, ITimer, Kind, Mm, Process, Rlimit, Rseq, Shmem, SigAction, StreamHeader,
    Thread, WriteOptions, Writer,
};
use crate::sys::proc;
use crate::sys::ptrace;
use crate::sys::remote::{self, Gate, Remote, nr};

pub use freeze::After;
use freeze::Frozen;

/// How to checkpoint.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub after: After,
}

/// What a checkpoint did, for reporting.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub processes: usize,
    pub threads: usize,
    pub pages: u64,
    pub zero_pages: u64,
    pub bytes: u64,
    /// From stopping the tree to letting it go.
    pub frozen_for: Duration,
}

fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    // SAFETY: getrandom writes at most id.len() bytes into the live buffer.
    let n = unsafe { libc::getrandom(id.as_mut_ptr().cast(), id.len(), 0) };
    if n != id.len() as isize {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        id = (t ^ (std::process::id() as u128) << 64).to_le_bytes();
    }
    id
}

fn uname() -> (String, String) {
    let u = nix::sys::utsname::uname().ok();
    let s = |f: Option<&std::ffi::OsStr>| f.map(|x| x.to_string_lossy().into_owned()).unwrap_or_default();
    (
        s(u.as_ref().map(|u| u.machine())),
        s(u.as_ref().map(|u| u.release())),
    )
}

/// Checkpoints the tree rooted at `pid` into `out`.
pub fn checkpoint<W: Write>(pid: i32, out: W, opts: &Options) -> Result<Summary> {
    if pid <= 0 {
        return Err(Error::msg(format!("cannot checkpoint pid {pid}: not a process id")));
    }
    if pid as u32 == std::process::id() {
        return Err(Error::msg("cannot checkpoint ckpt itself"));
    }
    let t0 = Instant::now();
    let frozen = Frozen::freeze(pid, false)?;
    let mut summary = Summary {
        processes: frozen.procs.len(),
        threads: frozen.threads.len(),
        ..Default::default()
    };
    // Any error from here on drops `frozen`, which resumes the tree.
    write_image(&frozen, pid, out, &mut summary)?;
    summary.frozen_for = t0.elapsed();
    frozen.release(opts.after)?;
    Ok(summary)
}

struct ProcState {
    process: Process,
    threads: Vec<Thread>,
    mm: Mm,
    plans: Vec<memory::VmaPlan>,
}

fn write_image<W: Write>(frozen: &Frozen, root: i32, out: W, summary: &mut Summary) -> Result<()> {
    if frozen.procs.len() != 1 {
        return Err(Error::msg(format!(
            "cannot checkpoint pid {root}: process trees are not supported yet"
        )));
    }
    let (arch, kernel) = uname();
    let mut shmem: HashMap<u64, Shmem> = HashMap::new();
    let mut files = files::FileTable::new();
    let mut states = Vec::new();
    let mut fdtables = Vec::new();
    for &(pid, ppid) in &frozen.procs {
        let st = read_process(frozen, pid, ppid, &mut shmem)?;
        fdtables.push(files.read_fds(pid)?);
        states.push(st);
    }
    // Shared anonymous memory may be mapped by processes outside the tree:
    // refuse rather than split it.
    let xstate_size = states
        .first()
        .and_then(|s| s.threads.first())
        .map(|t| t.xstate.len() as u32)
        .unwrap_or(0);
    let header = StreamHeader {
        format_major: image::FORMAT_MAJOR,
        format_minor: image::FORMAT_MINOR,
        arch,
        page_size: 4096,
        kernel,
        tool: format!("crtools {}", env!("CARGO_PKG_VERSION")),
        stream_id: random_id(),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        root_pid: root as u32,
        flags: 0,
        xstate_size,
    };
    let mut w = Writer::new(out, &header, WriteOptions::default())?;
    for s in &states {
        w.write(Kind::PROCESS, &s.process)?;
        for t in &s.threads {
            w.write(Kind::THREAD, t)?;
        }
        w.write(Kind::MM, &s.mm)?;
    }
    for f in &files.files {
        w.write(Kind::FILE, f)?;
    }
    let mut objs: Vec<&Shmem> = shmem.values().collect();
    objs.sort_by_key(|s| s.id);
    for s in &objs {
        w.write(Kind::SHMEM, *s)?;
    }
    for t in &fdtables {
        w.write(Kind::FDTABLE, t)?;
    }
    let mut buf = Vec::new();
    let mut stats = memory::DumpStats::default();
    for s in &states {
        memory::dump_pages(s.process.pid as i32, &s.plans, &mut w, &mut buf, &mut stats)?;
    }
    let mut done_shm = std::collections::HashSet::new();
    for s in &states {
        for p in &s.plans {
            if p.vma.backing == image::VMA_SHARED_ANON && done_shm.insert(p.vma.shmem_id) {
                memory::dump_shmem(
                    s.process.pid as i32,
                    &p.vma,
                    &shmem[&p.vma.shmem_id],
                    &mut w,
                    &mut buf,
                    &mut stats,
                )?;
            }
        }
    }
    // Contents of files deleted while open.
    for (f, t) in files.files.iter().filter(|f| f.deleted).filter_map(|f| {
        fdtables
            .iter()
            .find_map(|t| t.fds.iter().find(|d| d.file_id == f.id).map(|d| (f, (t.pid, d.fd))))
    }) {
        dump_file_contents(f, t.0 as i32, t.1 as i32, &mut w, &mut buf)?;
    }
    w.finish()?;
    summary.pages = stats.pages;
    summary.zero_pages = stats.zero_pages;
    summary.bytes = stats.bytes;
    Ok(())
}

fn dump_file_contents<W: Write>(
    f: &image::File,
    pid: i32,
    fd: i32,
    w: &mut Writer<W>,
    buf: &mut Vec<u8>,
) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let path = format!("/proc/{pid}/fd/{fd}");
    let file = std::fs::File::open(&path).ctx(|| format!("cannot read deleted file {}", String::from_utf8_lossy(&f.path)))?;
    buf.resize(image::CHUNK, 0);
    let mut at = 0u64;
    while at < f.size {
        let n = ((f.size - at) as usize).min(image::CHUNK);
        let got = file
            .read_at(&mut buf[..n], at)
            .ctx(|| format!("cannot read deleted file {}", String::from_utf8_lossy(&f.path)))?;
        if got == 0 {
            break;
        }
        let prefix = image::DataPrefix {
            space: image::SPACE_FILE,
            flags: 0,
            id: f.id,
            addr: at,
        };
        w.write_parts(Kind::BLOB, &[&prefix.to_bytes(), &buf[..got]])?;
        at += got as u64;
    }
    Ok(())
}

fn perr(pid: i32) -> impl Fn(proc::ProcError) -> Error {
    move |e| Error::msg(format!("cannot checkpoint pid {pid}: {e}"))
}

/// Reads everything about one frozen process.
fn read_process(
    frozen: &Frozen,
    pid: i32,
    ppid: i32,
    shmem: &mut HashMap<u64, Shmem>,
) -> Result<ProcState> {
    let stat = proc::stat(pid).map_err(perr(pid))?;
    let status = proc::status(pid).map_err(perr(pid))?;
    let threads: Vec<_> = frozen.threads_of(pid).cloned().collect();
    if threads.len() != 1 {
        return Err(Error::msg(format!(
            "cannot checkpoint pid {pid}: it has {} threads and this version checkpoints single-threaded processes",
            threads.len()
        )));
    }
    let plans = memory::plan(pid, shmem)?;
    let vdso = plans
        .iter()
        .find(|p| p.vma.backing == image::VMA_VDSO)
        .map(|p| p.vma.start..p.vma.end);
    let mut process = Process {
        pid: pid as u32,
        ppid: if ppid == 0 { 0 } else { ppid as u32 },
        pgid: stat.pgrp as u32,
        sid: stat.session as u32,
        state: image::STATE_RUNNING,
        exit_signal: stat.exit_signal as u32,
        comm: stat.comm.clone(),
        exe: proc::exe(pid).map_err(perr(pid))?,
        cwd: proc::cwd(pid).map_err(perr(pid))?,
        root: proc::root(pid).map_err(perr(pid))?,
        cmdline: proc::cmdline(pid).unwrap_or_default(),
        umask: status.umask.unwrap_or(0o022),
        creds: Creds {
            uid: status.uid[0],
            euid: status.uid[1],
            suid: status.uid[2],
            fsuid: status.uid[3],
            gid: status.gid[0],
            egid: status.gid[1],
            sgid: status.gid[2],
            fsgid: status.gid[3],
            groups: status.groups.clone().into(),
            cap_inh: status.cap_inh,
            cap_prm: status.cap_prm,
            cap_eff: status.cap_eff,
            cap_bnd: status.cap_bnd,
            cap_amb: status.cap_amb,
            securebits: 0,
            no_new_privs: status.no_new_privs,
        },
        tids: threads.iter().map(|t| t.tid as u32).collect::<Vec<_>>().into(),
        nice: stat.nice as i32,
        ..Default::default()
    };
    if let Some(ex) = process.exe.strip_suffix(b" (deleted)") {
        process.exe = ex.to_vec();
    }
    if frozen.threads_of(pid).any(|t| t.was_stopped) {
        process.state = image::STATE_STOPPED;
    }
    process.personality = std::fs::read_to_string(format!("/proc/{pid}/personality"))
        .ok()
        .and_then(|s| u32::from_str_radix(s.trim(), 16).ok())
        .unwrap_or(0);
    for res in 0..16u32 {
        let mut old = libc::rlimit64 {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: prlimit64 with a null new limit only writes the old one
        // into the live `old`.
        let r = unsafe { libc::prlimit64(pid, res as libc::__rlimit_resource_t, std::ptr::null(), &mut old) };
        if r == 0 {
            process.rlimits.push(Rlimit {
                resource: res,
                cur: old.rlim_cur,
                max: old.rlim_max,
            });
        }
    }
    process.shared_pending = ptrace::peek_siginfo(threads[0].tid, true)
        .ctx(|| format!("cannot read pending signals of pid {pid}"))?
        .into_iter()
        .map(|s| s.to_vec())
        .collect::<Vec<_>>()
        .into();
    if !process.shared_pending.is_empty() {
        return Err(Error::msg(format!(
            "cannot checkpoint pid {pid}: it has pending signals, which this version does not save"
        )));
    }

    let mut mm = Mm {
        pid: pid as u32,
        start_code: stat.start_code,
        end_code: stat.end_code,
        start_data: stat.start_data,
        end_data: stat.end_data,
        start_brk: stat.start_brk,
        start_stack: stat.start_stack,
        arg_start: stat.arg_start,
        arg_end: stat.arg_end,
        env_start: stat.env_start,
        env_end: stat.env_end,
        auxv: proc::auxv(pid).map_err(perr(pid))?,
        vmas: plans.iter().map(|p| p.vma.clone()).collect::<Vec<_>>().into(),
        ..Default::default()
    };

    let mut out_threads = Vec::new();
    for t in &threads {
        let regs = ptrace::get_regs(t.tid).ctx(|| format!("cannot read registers of thread {}", t.tid))?;
        let xstate = ptrace::get_xstate(t.tid).ctx(|| format!("cannot read FPU state of thread {}", t.tid))?;
        let sigmask = ptrace::get_sigmask(t.tid).ctx(|| format!("cannot read signal mask of thread {}", t.tid))?;
        let pending = ptrace::peek_siginfo(t.tid, false)
            .ctx(|| format!("cannot read pending signals of thread {}", t.tid))?;
        if !pending.is_empty() {
            return Err(Error::msg(format!(
                "cannot checkpoint pid {pid}: thread {} has pending signals, which this version does not save",
                t.tid
            )));
        }
        let rseq = ptrace::rseq_config(t.tid)
            .ctx(|| format!("cannot read rseq of thread {}", t.tid))?
            .map(|c| Rseq {
                addr: c.addr,
                len: c.len,
                flags: c.flags,
                sig: c.sig,
            });
        let (robust_list, robust_len) = robust_list(t.tid)?;
        let tstat = proc::task_stat(pid, t.tid).map_err(perr(pid))?;
        out_threads.push(Thread {
            pid: pid as u32,
            tid: t.tid as u32,
            regs: ptrace::regs_to_bytes(&regs),
            xstate,
            sigmask,
            robust_list,
            robust_len,
            rseq,
            comm: tstat.comm,
            stopped: t.was_stopped,
            ..Default::default()
        });
    }

    // What only the process can tell: ask it with remote syscalls.
    let vdso = vdso.ok_or_else(|| Error::msg(format!("cannot checkpoint pid {pid}: it has no vDSO")))?;
    let mut code = vec![0u8; (vdso.end - vdso.start) as usize];
    let mut memf = None;
    crate::sys::mem::read_exact(pid, vdso.start, &mut code, &mut memf)
        .ctx(|| format!("cannot read the vDSO of pid {pid}"))?;
    let off = remote::find_syscall_insn(&code)
        .ok_or_else(|| Error::msg(format!("cannot checkpoint pid {pid}: no syscall instruction in its vDSO")))?;
    let tid = threads[0].tid;
    let mut r = Remote::new(tid, Gate::Syscall(vdso.start + off as u64))?;
    let scratch = r.call(
        nr::MMAP,
        &[
            0,
            4096,
            (libc::PROT_READ | libc::PROT_WRITE) as u64,
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
            u64::MAX,
            0,
        ],
    )?;
    let res = ask_process(&mut r, pid, scratch, &status, &mut process, &mut out_threads[0], &mut mm);
    let unmapped = r.call(nr::MUNMAP, &[scratch, 4096]);
    let deferred = r.finish()?;
    remote::redeliver(pid, tid, &deferred);
    res?;
    unmapped?;
    Ok(ProcState {
        process,
        threads: out_threads,
        mm,
        plans,
    })
}

fn robust_list(tid: i32) -> Result<(u64, u64)> {
    let mut head: u64 = 0;
    let mut len: usize = 0;
    // SAFETY: get_robust_list writes a pointer and a length into the live locals.
    let r = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            tid,
            &mut head as *mut u64,
            &mut len as *mut usize,
        )
    };
    if r != 0 {
        return Err(Error::msg(format!(
            "cannot read the robust futex list of thread {tid}: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok((head, len as u64))
}

fn read_u64s(pid: i32, addr: u64, n: usize) -> Result<Vec<u64>> {
    let mut b = vec![0u8; n * 8];
    let mut memf = None;
    crate::sys::mem::read_exact(pid, addr, &mut b, &mut memf).ctx(|| format!("cannot read memory of pid {pid}"))?;
    Ok(b.chunks(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
}

/// Signal handlers, alternate stack, timers, brk and the tid address.
fn ask_process(
    r: &mut Remote,
    pid: i32,
    scratch: u64,
    status: &proc::Status,
    p: &mut Process,
    t: &mut Thread,
    mm: &mut Mm,
) -> Result<()> {
    mm.brk = r.call(nr::BRK, &[0])?;
    for sig in 1..=64u32 {
        if sig == libc::SIGKILL as u32 || sig == libc::SIGSTOP as u32 {
            continue;
        }
        let bit = 1u64 << (sig - 1);
        if status.sig_cgt & bit == 0 && status.sig_ign & bit == 0 {
            continue; // default disposition
        }
        r.call(nr::RT_SIGACTION, &[sig as u64, 0, scratch, 8])?;
        let v = read_u64s(pid, scratch, 4)?;
        p.sigactions.push(SigAction {
            signo: sig,
            handler: v[0],
            flags: v[1],
            restorer: v[2],
            mask: v[3],
        });
    }
    r.call(nr::SIGALTSTACK, &[0, scratch])?;
    let v = read_u64s(pid, scratch, 3)?;
    t.altstack = AltStack {
        sp: v[0],
        flags: v[1] as u32,
        size: v[2],
    };
    for which in 0..3u32 {
        r.call(nr::GETITIMER, &[which as u64, scratch])?;
        let v = read_u64s(pid, scratch, 4)?;
        p.itimers.push(ITimer {
            which,
            interval_us: v[0] * 1_000_000 + v[1],
            value_us: v[2] * 1_000_000 + v[3],
        });
    }
    r.call(nr::PRCTL, &[libc::PR_GET_TID_ADDRESS as u64, scratch])?;
    t.clear_child_tid = read_u64s(pid, scratch, 1)?[0];
    let posix = proc::timers(pid).map_err(perr(pid))?;
    if !posix.is_empty() {
        return Err(Error::msg(format!(
            "cannot checkpoint pid {pid}: it has POSIX timers, which this version does not save"
        )));
    }
    Ok(())
}
