//! Write tracking: which pages of a running process were written since the
//! last look (for pre-copy, `ckpt --live`).
//!
//! This kernel has no soft-dirty bits. Instead, a userfaultfd for the
//! target's mm, registered in asynchronous write-protect mode
//! (`UFFD_FEATURE_WP_ASYNC`): a write to a protected page is resolved by
//! the kernel itself (the bit is cleared, nobody is woken), and
//! `PAGEMAP_SCAN` with `PM_SCAN_WP_MATCHING` reports the pages whose bit
//! is clear ("written") and protects them again, in one step.
//!
//! The userfaultfd belongs to the mm of whoever creates it, so it is
//! created inside the target by a remote syscall, taken into the tracer
//! with `pidfd_getfd` and closed in the target at once: the target never
//! holds a descriptor when it runs. `UFFDIO_API`, `UFFDIO_REGISTER` and
//! `UFFDIO_UNREGISTER` act on the descriptor's mm, so the tracer issues
//! them; `PAGEMAP_SCAN` goes through `/proc/PID/pagemap`.
//!
//! When tracking ends ([`WriteTracker::stop`], or `Drop` on every other
//! path) every range is unregistered, which clears all protection bits,
//! and the descriptor is closed: nothing is left in the target, and it
//! takes no further faults.
//!
//! What the kernel guarantees and the callers rely on: a page whose
//! protection bit is set was not written since the scan that set it (a
//! write clears it; unregistering, `mremap` to an unregistered place and
//! `fork`'s copy clear it). Pages that vanish (`MADV_DONTNEED`, `munmap`)
//! are not reported: the caller compares with what is present at the end.

use std::borrow::BorrowMut;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use thiserror::Error;

use super::ids::{Fd, Pid};
use super::pagemap::{self, Pagemap, Region, ScanMask};
use super::ptrace::Stopped;
use super::remote::{Remote, RemoteError, nr};

/// Why write tracking could not be set up or read.
#[derive(Debug, Error)]
pub enum TrackError {
    #[error("cannot track writes of pid {pid}: {source}")]
    Remote {
        pid: Pid,
        #[source]
        source: RemoteError,
    },
    #[error("cannot track writes of pid {pid}: {op}: {errno}")]
    Sys {
        pid: Pid,
        op: &'static str,
        errno: Errno,
    },
    #[error("cannot track writes of pid {pid}: {source}")]
    Scan {
        pid: Pid,
        #[source]
        source: super::proc::ProcError,
    },
}

impl TrackError {
    /// The OS error number, if the kernel refused something.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            TrackError::Sys { errno, .. } => Some(*errno as i32),
            TrackError::Scan { source, .. } => source.raw_os_error(),
            TrackError::Remote { .. } => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, TrackError>;

/// `userfaultfd(2)`'s number (x86_64).
const NR_USERFAULTFD: i64 = 323;
/// `UFFD_USER_MODE_ONLY`: enough for write-protection (asynchronous faults
/// never reach the descriptor), and allowed for unprivileged targets.
const UFFD_USER_MODE_ONLY: u64 = 1;
const UFFD_API: u64 = 0xaa;
/// `UFFD_FEATURE_WP_ASYNC` (Linux 6.7).
const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
/// Bytes unregistered a call: the kernel walks each page-table entry of
/// the range (clearing its protection bit) with the mm locked for
/// writing, ~0.2-0.4 us per 4 KiB page here, so 4 MiB keeps each wait of
/// a running target under a millisecond.
const UNREGISTER_CHUNK: u64 = 4 << 20;

#[repr(C)]
#[derive(Debug, Default)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
#[derive(Debug, Default)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
#[derive(Debug, Default)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

mod ioctl {
    use super::{UffdioApi, UffdioRange, UffdioRegister};
    nix::ioctl_readwrite!(uffdio_api, 0xaa, 0x3f, UffdioApi);
    nix::ioctl_readwrite!(uffdio_register, 0xaa, 0x00, UffdioRegister);
    nix::ioctl_read!(uffdio_unregister, 0xaa, 0x01, UffdioRange);
}

/// Tracks writes to the memory of one process.
#[derive(Debug)]
pub struct WriteTracker {
    pid: Pid,
    uffd: Option<OwnedFd>,
    pagemap: Pagemap,
    /// Ranges registered, to unregister at the end.
    registered: Vec<(u64, u64)>,
    /// `PAGE_IS_GUARD` refused (before 6.15): scan without it.
    no_guard: bool,
}

impl WriteTracker {
    /// Sets up tracking for process `pid`, whose stopped thread runs
    /// `remote`: a userfaultfd made there, taken here, closed there. On
    /// failure the target holds no descriptor either.
    pub fn attach<T: BorrowMut<Stopped>>(remote: &mut Remote<T>, pid: Pid) -> Result<Self> {
        let rerr = |source| TrackError::Remote { pid, source };
        let fd = remote
            .call(
                NR_USERFAULTFD,
                &[(libc::O_CLOEXEC | libc::O_NONBLOCK) as u64 | UFFD_USER_MODE_ONLY],
            )
            .map_err(rerr)?;
        let taken = super::unixdiag::steal_fd(pid, Fd::from_raw(fd as i32));
        // Closed at once, whatever happened: the target keeps nothing.
        let closed = remote.call(nr::CLOSE, &[fd]);
        let uffd = taken.map_err(|e| TrackError::Sys {
            pid,
            op: "pidfd_getfd",
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
        })?;
        closed.map_err(rerr)?;
        let mut api = UffdioApi {
            api: UFFD_API,
            features: UFFD_FEATURE_WP_ASYNC,
            ioctls: 0,
        };
        // SAFETY: `api` is a valid uffdio_api the kernel reads and writes
        // for the duration of the call; `uffd` is an open userfaultfd.
        unsafe { ioctl::uffdio_api(uffd.as_raw_fd(), &mut api) }.map_err(|errno| {
            TrackError::Sys {
                pid,
                op: "UFFDIO_API(WP_ASYNC)",
                errno,
            }
        })?;
        let pagemap = Pagemap::open(pid).map_err(|source| TrackError::Scan { pid, source })?;
        Ok(WriteTracker {
            pid,
            uffd: Some(uffd),
            pagemap,
            registered: Vec::new(),
            no_guard: false,
        })
    }

    /// The process tracked.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Registers `[start, end)` (one whole mapping) for write tracking.
    /// Registering again is harmless. `Ok(false)`: the kernel does not
    /// track this kind of mapping (`EINVAL`, e.g. `VM_PFNMAP`), or it is
    /// gone or changed (`ENOMEM`); its pages are then never reported and
    /// must be taken at the end.
    pub fn track(&mut self, start: u64, end: u64) -> Result<bool> {
        let Some(uffd) = &self.uffd else {
            return Ok(false);
        };
        let mut reg = UffdioRegister {
            range: UffdioRange {
                start,
                len: end.saturating_sub(start),
            },
            mode: UFFDIO_REGISTER_MODE_WP,
            ioctls: 0,
        };
        // SAFETY: `reg` is a valid uffdio_register the kernel reads and
        // writes for the duration of the call.
        match unsafe { ioctl::uffdio_register(uffd.as_raw_fd(), &mut reg) } {
            Ok(_) => {
                if !self.registered.contains(&(start, end)) {
                    self.registered.push((start, end));
                }
                Ok(true)
            }
            Err(Errno::EINVAL | Errno::ENOMEM | Errno::EBUSY | Errno::EPERM) => Ok(false),
            Err(errno) => Err(TrackError::Sys {
                pid: self.pid,
                op: "UFFDIO_REGISTER(WP)",
                errno,
            }),
        }
    }

    /// The pages of `[start, end)` (a mapping registered with
    /// [`WriteTracker::track`]) written since they were last reported,
    /// appended to `out` as merged ranges; with `protect`, they are
    /// protected again in the same step (the next call reports only later
    /// writes). Only pages worth dumping are reported: present or swapped,
    /// not the zero page, not guard regions, and for a private file mapping
    /// (`private_file`) not its unmodified file pages.
    pub fn written(
        &mut self,
        start: u64,
        end: u64,
        private_file: bool,
        protect: bool,
        out: &mut Vec<(u64, u64)>,
    ) -> Result<()> {
        let not = pagemap::PAGE_IS_PFNZERO
            | if self.no_guard {
                0
            } else {
                pagemap::PAGE_IS_GUARD
            }
            | if private_file {
                pagemap::PAGE_IS_FILE
            } else {
                0
            };
        let m = ScanMask {
            inverted: not,
            mask: not | pagemap::PAGE_IS_WRITTEN,
            anyof: pagemap::PAGE_IS_PRESENT | pagemap::PAGE_IS_SWAPPED,
            ret: pagemap::PAGE_IS_WRITTEN,
        };
        let flags = if protect {
            pagemap::PM_SCAN_WP_MATCHING | pagemap::PM_SCAN_CHECK_WPASYNC
        } else {
            0
        };
        let mut regions: Vec<Region> = Vec::new();
        match self.pagemap.scan_flags(start, end, m, flags, &mut regions) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && !self.no_guard => {
                self.no_guard = true;
                return self.written(start, end, private_file, protect, out);
            }
            r => r.map_err(|source| TrackError::Scan {
                pid: self.pid,
                source,
            })?,
        }
        for r in regions {
            match out.last_mut() {
                Some(last) if last.1 == r.start => last.1 = r.end,
                _ => out.push((r.start, r.end)),
            }
        }
        Ok(())
    }

    /// Ends tracking: every range unregistered (which clears its
    /// protection bits), a few MiB a call so that a running target is
    /// never held long, then the descriptor closed. Errors are reported;
    /// the descriptor is closed whatever happens (closing it alone also
    /// unregisters everything still registered, in one call).
    pub fn stop(mut self) -> Result<()> {
        self.unregister_all()
    }

    fn unregister_all(&mut self) -> Result<()> {
        let Some(uffd) = self.uffd.take() else {
            return Ok(());
        };
        let mut first = Ok(());
        'ranges: for (start, end) in std::mem::take(&mut self.registered) {
            let mut at = start;
            while at < end {
                let len = (end - at).min(UNREGISTER_CHUNK);
                let mut r = UffdioRange { start: at, len };
                at += len;
                // SAFETY: `r` is a valid uffdio_range the kernel reads.
                match unsafe { ioctl::uffdio_unregister(uffd.as_raw_fd(), &mut r) } {
                    Ok(_) | Err(Errno::EINVAL | Errno::ENOMEM) => {}
                    // The process is gone: nothing left.
                    Err(Errno::ESRCH) => break 'ranges,
                    Err(errno) => {
                        if first.is_ok() {
                            first = Err(TrackError::Sys {
                                pid: self.pid,
                                op: "UFFDIO_UNREGISTER",
                                errno,
                            });
                        }
                    }
                }
            }
        }
        drop(uffd);
        first
    }
}

impl Drop for WriteTracker {
    fn drop(&mut self) {
        let _ = self.unregister_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::ptrace::{Stop, Waited, seize_thread};
    use crate::sys::remote::{self, Gate};
    use crate::sys::{Tid, mem, proc};
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

    const PAGES: u64 = 64;

    /// A python3 process with a 64-page private buffer: prints its address,
    /// then writes one byte of page K for each line "K", answering "ok".
    struct Writer {
        child: Child,
        input: ChildStdin,
        output: BufReader<ChildStdout>,
        addr: u64,
    }

    impl Writer {
        fn spawn() -> Writer {
            let prog = "import ctypes,mmap,sys\n\
                m = mmap.mmap(-1, 64*4096, flags=mmap.MAP_PRIVATE)\n\
                for i in range(64): m[i*4096] = 1\n\
                a = ctypes.addressof(ctypes.c_char.from_buffer(m))\n\
                print(a, flush=True)\n\
                for l in sys.stdin:\n\
                \x20   k = int(l); m[k*4096] = (m[k*4096] + 1) % 256\n\
                \x20   print('ok', flush=True)\n";
            let mut child = Command::new("python3")
                .args(["-c", prog])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("python3");
            let input = child.stdin.take().expect("stdin");
            let mut output = BufReader::new(child.stdout.take().expect("stdout"));
            let mut line = String::new();
            output.read_line(&mut line).expect("address");
            let addr = line.trim().parse().expect("an address");
            Writer {
                child,
                input,
                output,
                addr,
            }
        }
        fn pid(&self) -> Pid {
            Pid::from_raw(self.child.id() as i32)
        }
        fn write_page(&mut self, k: u64) {
            writeln!(self.input, "{k}").expect("ask");
            let mut line = String::new();
            self.output.read_line(&mut line).expect("answer");
            assert_eq!(line.trim(), "ok");
        }
    }

    impl Drop for Writer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Stops the (single-threaded) process, sets up tracking and lets it go.
    fn attach(pid: Pid) -> WriteTracker {
        let running = seize_thread(Tid::from_raw(pid.as_raw()), false).expect("seize");
        running.interrupt().expect("interrupt");
        let mut t = match running.wait().expect("wait") {
            Waited::Stopped(s, Stop::EventStop(_)) => s,
            other => panic!("unexpected {other:?}"),
        };
        let vdso = proc::maps(pid)
            .expect("maps")
            .into_iter()
            .find(|m| m.path == b"[vdso]")
            .expect("a vDSO");
        let mut code = vec![0u8; (vdso.end - vdso.start) as usize];
        mem::read_exact(pid, vdso.start, &mut code, &mut None).expect("vDSO");
        let gate = Gate::Syscall(vdso.start + remote::find_syscall_insn(&code).unwrap() as u64);
        let tracker = {
            let mut r = Remote::on(&mut t, gate).expect("session");
            let tr = WriteTracker::attach(&mut r, pid).expect("attach");
            r.finish().expect("finish");
            tr
        };
        t.detach(None).expect("detach");
        tracker
    }

    fn uffd_fds(pid: Pid) -> usize {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("fd dir")
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|l| l.to_string_lossy().contains("userfaultfd"))
            .count()
    }

    fn uffd_flagged_vmas(pid: Pid) -> usize {
        std::fs::read_to_string(format!("/proc/{pid}/smaps"))
            .expect("smaps")
            .lines()
            .filter(|l| l.starts_with("VmFlags:") && l.split_whitespace().any(|f| f == "uw"))
            .count()
    }

    fn pages_of(ranges: &[(u64, u64)], base: u64) -> Vec<u64> {
        ranges
            .iter()
            .flat_map(|&(s, e)| (s..e).step_by(4096).map(move |a| (a - base) / 4096))
            .collect()
    }

    #[test]
    fn reports_exactly_the_pages_written_and_leaves_nothing_behind() {
        let mut w = Writer::spawn();
        let pid = w.pid();
        let maps_before = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
        let mut tr = attach(pid);
        assert_eq!(uffd_fds(pid), 0, "the target holds no userfaultfd");
        let (s, e) = (w.addr, w.addr + PAGES * 4096);
        assert!(tr.track(s, e).expect("register"));
        assert_eq!(uffd_flagged_vmas(pid), 1);
        let mut out = Vec::new();
        tr.written(s, e, false, true, &mut out).expect("scan");
        assert_eq!(pages_of(&out, s), (0..PAGES).collect::<Vec<_>>());
        out.clear();
        tr.written(s, e, false, true, &mut out).expect("scan");
        assert!(out.is_empty(), "nothing written since: {out:x?}");
        for k in [3, 10, 11, 63] {
            w.write_page(k);
        }
        // Without protect: reported, and reported again next time.
        tr.written(s, e, false, false, &mut out).expect("scan");
        assert_eq!(pages_of(&out, s), vec![3, 10, 11, 63]);
        out.clear();
        tr.written(s, e, false, true, &mut out).expect("scan");
        assert_eq!(pages_of(&out, s), vec![3, 10, 11, 63]);
        out.clear();
        w.write_page(10);
        tr.written(s, e, false, true, &mut out).expect("scan");
        assert_eq!(pages_of(&out, s), vec![10]);
        tr.stop().expect("stop");
        assert_eq!(uffd_flagged_vmas(pid), 0, "no registration left");
        let mut entries = Vec::new();
        pagemap::Pagemap::open(pid)
            .unwrap()
            .read(s, PAGES as usize, &mut entries)
            .unwrap();
        assert!(
            entries.iter().all(|e| e & pagemap::PM_UFFD_WP == 0),
            "no protection bit left"
        );
        assert_eq!(
            std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap(),
            maps_before
        );
        w.write_page(5); // still runs, writes work
    }

    #[test]
    fn dropping_a_tracker_unregisters() {
        let mut w = Writer::spawn();
        let pid = w.pid();
        let mut tr = attach(pid);
        let (s, e) = (w.addr, w.addr + PAGES * 4096);
        assert!(tr.track(s, e).expect("register"));
        let mut out = Vec::new();
        tr.written(s, e, false, true, &mut out).expect("scan");
        drop(tr);
        assert_eq!(uffd_flagged_vmas(pid), 0);
        assert_eq!(uffd_fds(pid), 0);
        w.write_page(7);
    }
}
