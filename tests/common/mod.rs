//! The integration-test harness: run workloads and the project's tools, capture
//! their output line by line, check that counters continue across a checkpoint
//! and restore, and clean up every process the test started, even on panic.
//!
//! Use it from a test file with `mod common;` and `use common::*;`.
//!
//! ```ignore
//! let orig = Workload::spawn(workload("onetask"), &["-d", "20"]);
//! orig.expect_count(None, 5);
//! let r = Pipeline::new()
//!     .stage("ckpt", &["--kill", &orig.pid().to_string()])
//!     .stage("cr-zstd", &[])
//!     .restore(&[]);
//! r.restored.expect_count(None, orig.last_count(None).unwrap() + 5);
//! r.pipeline.wait().assert_success();
//! assert_continues(&orig, &r.restored, None, Original::Killed);
//! ```
//!
//! Timeouts here are failure guards only ([`TIMEOUT`]); no test asserts timing.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub use tempfile::TempDir;

/// How long any wait in the harness may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Locating programs

/// A compiled C workload from `tests/workloads/NAME.c` (see [`workloads_dir`]).
pub fn workload(name: &str) -> PathBuf {
    let p = workloads_dir().join(name);
    assert!(
        p.exists(),
        "workload {name} not found at {}: is there a tests/workloads/{name}.c?",
        p.display()
    );
    p
}

/// The directory of the compiled C workloads, `target/tmp/workloads/`, shared by every
/// test binary. The first call in each test process compiles (with `$CC`, else `cc`)
/// every `tests/workloads/*.c` whose binary is missing or older than its source or
/// `common.h`, holding an exclusive lock on `workloads/.lock` so that test binaries
/// running at once neither compile twice nor see half-written programs; each program is
/// written to a temporary name and renamed into place. A compiler error fails the test
/// with the compiler's message. (The workloads are built here, not by a build script, so
/// that installing the tools needs no C compiler.)
pub fn workloads_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let src_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("workloads");
        build_workloads(&src_dir, &out);
        out
    })
}

/// Compiles into `out` each `SRC_DIR/*.c` whose binary there is missing or stale (see
/// [`workloads_dir`]), under an exclusive lock on `out/.lock`.
pub fn build_workloads(src_dir: &Path, out: &Path) {
    std::fs::create_dir_all(out).unwrap_or_else(|e| panic!("cannot create {}: {e}", out.display()));
    let lock_path = out.join(".lock");
    let lock = File::create(&lock_path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", lock_path.display()));
    // SAFETY: flock on a descriptor this function owns; it blocks until the lock is ours
    // and is released when `lock` is closed at the end of this function.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        panic!(
            "cannot lock {}: {}",
            lock_path.display(),
            std::io::Error::last_os_error()
        );
    }
    compile_stale_workloads(src_dir, out);
}

/// Compiles, several at a time, each `SRC_DIR/*.c` whose binary in `out` is missing or
/// older than the source or `SRC_DIR/common.h`. The caller holds the directory's lock.
fn compile_stale_workloads(src_dir: &Path, out: &Path) {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let header = mtime(&src_dir.join("common.h"));
    let mut stale: Vec<PathBuf> = std::fs::read_dir(src_dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", src_dir.display()))
        .map(|e| e.expect("read tests/workloads").path())
        .filter(|src| src.extension().is_some_and(|e| e == "c"))
        .filter(|src| {
            let bin = out.join(src.file_stem().expect("workload file name"));
            match mtime(&bin) {
                None => true,
                Some(built) => mtime(src).max(header).is_some_and(|newest| newest > built),
            }
        })
        .collect();
    stale.sort();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let jobs = thread::available_parallelism().map_or(2, |n| n.get());
    let mut failed = Vec::new();
    for batch in stale.chunks(jobs) {
        let running: Vec<_> = batch
            .iter()
            .map(|src| {
                let name = src.file_stem().expect("workload file name");
                let tmp = out.join(format!(
                    ".{}.{}",
                    name.to_string_lossy(),
                    std::process::id()
                ));
                let child = Command::new(&cc)
                    .args(["-O2", "-g", "-Wall", "-Wextra", "-o"])
                    .arg(&tmp)
                    .arg(src)
                    .args(["-lpthread", "-lrt", "-lutil"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}`: {e}"));
                (src, tmp, out.join(name), child)
            })
            .collect();
        for (src, tmp, bin, child) in running {
            let res = child.wait_with_output().expect("wait for the C compiler");
            let diagnostics = String::from_utf8_lossy(&res.stderr);
            eprint!("{diagnostics}");
            if res.status.success() {
                std::fs::rename(&tmp, &bin).unwrap_or_else(|e| {
                    panic!("cannot rename {} to {}: {e}", tmp.display(), bin.display())
                });
            } else {
                let _ = std::fs::remove_file(&tmp);
                failed.push(format!("{}: {}", src.display(), diagnostics.trim()));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "cannot compile workloads with `{cc}`:\n{}",
        failed.join("\n")
    );
}

/// A script from `tests/workloads/` (counter.py, counter.pl, counter.sh).
pub fn script(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/workloads")
        .join(name);
    assert!(p.exists(), "script {} not found", p.display());
    p
}

/// One of the project's binaries (`ckpt`, `cr-restart`, `cr-zstd`, ...), found next to
/// the test executable: tests run from `target/<profile>/deps/`, binaries live in
/// `target/<profile>/`. Cargo builds every binary before it runs integration tests.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe
        .parent()
        .expect("test executable directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join(name);
    assert!(
        p.exists(),
        "binary `{name}` not found at {}: is there a src/bin/{name}.rs? (cargo test builds all binaries)",
        p.display()
    );
    p
}

/// A fresh temporary directory, removed when dropped.
pub fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("crtest.")
        .tempdir()
        .expect("create a temporary directory")
}

// ---------------------------------------------------------------------------
// Processes

fn proc_exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits until `/proc/PID` no longer exists (the process is gone and reaped, not a
/// zombie). This machine's init reaps orphans slowly, so a killed process's pid can
/// stay taken for a second or two. Returns false on timeout.
pub fn wait_pid_gone(pid: i32, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while proc_exists(pid) {
        if Instant::now() >= end {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
    true
}

/// The state letter of a process (`R`, `S`, `T`, `t`, `Z`, ...), None if it is gone.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat.get(close + 2).map(|&b| b as char)
}

/// Field `n` (1-based, as in proc(5)) of `/proc/PID/stat`.
fn stat_field(pid: i32, n: usize) -> Option<i64> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = String::from_utf8_lossy(&stat[close + 2..]).into_owned();
    rest.split_whitespace().nth(n.checked_sub(3)?)?.parse().ok()
}

/// The parent pid of a process.
pub fn ppid_of(pid: i32) -> Option<i32> {
    stat_field(pid, 4).map(|v| v as i32)
}

/// The process group of a process.
pub fn pgid_of(pid: i32) -> Option<i32> {
    stat_field(pid, 5).map(|v| v as i32)
}

/// The session of a process.
pub fn sid_of(pid: i32) -> Option<i32> {
    stat_field(pid, 6).map(|v| v as i32)
}

/// The direct children of a process, from `/proc/PID/task/*/children`.
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|w| w.parse::<i32>().ok()));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// PID and all its descendants that exist now (PID first).
pub fn tree_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        if out.contains(&p) || !proc_exists(p) {
            continue;
        }
        out.push(p);
        todo.extend(children_of(p));
    }
    out
}

/// The threads of a process.
pub fn threads_of(pid: i32) -> Vec<i32> {
    let mut v: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// The processes whose process group (`field` 5) or session (6) is `id`.
fn pids_with(field: usize, id: i32) -> Vec<i32> {
    let Ok(d) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    d.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| stat_field(p, field) == Some(id as i64))
        .collect()
}

/// The processes in process group `pgid` now (zombies included).
pub fn procs_in_group(pgid: i32) -> Vec<i32> {
    pids_with(5, pgid)
}

/// The processes in session `sid` now (zombies included).
pub fn procs_in_session(sid: i32) -> Vec<i32> {
    pids_with(6, sid)
}

/// Waits until `pred` holds for the state letter of `pid` (None: gone).
/// Returns false on timeout.
pub fn wait_state(pid: i32, timeout: Duration, mut pred: impl FnMut(Option<char>) -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if pred(proc_state(pid)) {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Polls `cond` every 5 ms until it holds; false on timeout.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// The thread ids of a process with their names (`/proc/PID/task/TID/comm`).
pub fn thread_names(pid: i32) -> Vec<(i32, String)> {
    threads_of(pid)
        .into_iter()
        .map(|t| {
            let c =
                std::fs::read_to_string(format!("/proc/{pid}/task/{t}/comm")).unwrap_or_default();
            (t, c.trim_end().to_string())
        })
        .collect()
}

/// `/proc/PID/cmdline` with NULs replaced by spaces (None if gone).
pub fn cmdline_of(pid: i32) -> Option<String> {
    let b = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        String::from_utf8_lossy(&b)
            .trim_end_matches('\0')
            .replace('\0', " "),
    )
}

/// Every pid in /proc now.
pub fn all_pids() -> Vec<i32> {
    let Ok(d) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    d.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .collect()
}

fn send_kill(pid: i32) {
    // SAFETY: kill(2) has no memory effects; pid is a process of this test.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Sends `sig` to `pid`. Returns false if the process does not exist.
pub fn signal(pid: i32, sig: i32) -> bool {
    // SAFETY: kill(2) has no memory effects.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// SIGKILLs every process in the trees rooted at `roots`, in the process groups
/// `pgids` and in the sessions `sids`, repeatedly until none is left alive (so a process forking while it is
/// killed is caught too), then waits until every one of them is reaped and its
/// `/proc/PID` is gone. Never signals the test process or its own process group.
/// `reap` is called between rounds so the caller can wait for its own children.
/// Returns the pids that did not disappear within [`TIMEOUT`].
pub fn kill_all(roots: &[i32], pgids: &[i32], sids: &[i32], mut reap: impl FnMut()) -> Vec<i32> {
    let me = std::process::id() as i32;
    // SAFETY: getpgrp(2) cannot fail and has no memory effects.
    let my_pgrp = unsafe { libc::getpgrp() };
    // SAFETY: getsid(2) has no memory effects.
    let my_sid = unsafe { libc::getsid(0) };
    let pgids: Vec<i32> = pgids
        .iter()
        .copied()
        .filter(|&g| g > 1 && g != my_pgrp)
        .collect();
    let sids: Vec<i32> = sids
        .iter()
        .copied()
        .filter(|&g| g > 1 && g != my_sid)
        .collect();
    let mut seen = BTreeSet::new();
    let end = Instant::now() + TIMEOUT;
    loop {
        let mut alive = Vec::new();
        for &r in roots {
            if r > 1 && r != me {
                alive.extend(tree_of(r));
            }
        }
        for &g in &pgids {
            alive.extend(pids_with(5, g));
        }
        for &g in &sids {
            alive.extend(pids_with(6, g));
        }
        alive.retain(|&p| p > 1 && p != me && proc_state(p).is_some_and(|s| s != 'Z' && s != 'X'));
        alive.sort_unstable();
        alive.dedup();
        if alive.is_empty() || Instant::now() >= end {
            break;
        }
        // Whole groups first: every member gets SIGKILL at once, so none sees
        // another die first (and prints a spurious FAIL).
        for &g in &pgids {
            // SAFETY: killpg(2) has no memory effects; g is a group of this test.
            unsafe { libc::killpg(g, libc::SIGKILL) };
        }
        for &p in &alive {
            send_kill(p);
            seen.insert(p);
        }
        reap();
        thread::sleep(Duration::from_millis(5));
    }
    reap();
    seen.extend(roots.iter().copied().filter(|&p| p > 1 && p != me));
    seen.into_iter()
        .filter(|&p| !wait_pid_gone(p, end.saturating_duration_since(Instant::now())))
        .collect()
}

// ---------------------------------------------------------------------------
// Captured output

#[derive(Default)]
struct StreamState {
    file: Option<File>,
    partial: Vec<u8>,
    lines: Vec<String>,
    eof: bool,
}

impl StreamState {
    /// Reads everything the pipe holds now (the fd is non-blocking).
    fn pump(&mut self) {
        let Some(f) = self.file.as_mut() else {
            return;
        };
        let mut buf = [0u8; 8192];
        loop {
            match f.read(&mut buf) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.partial.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.eof = true;
                    break;
                }
            }
        }
        while let Some(i) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            self.lines
                .push(String::from_utf8_lossy(&line[..i]).into_owned());
        }
        if self.eof && !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.lines.push(String::from_utf8_lossy(&rest).into_owned());
        }
    }
}

/// The lines a child writes to one pipe, collected by a background thread.
struct Stream {
    state: Mutex<StreamState>,
    cond: Condvar,
    closed: AtomicBool,
}

impl Stream {
    fn start(fd: OwnedFd) -> (Arc<Stream>, JoinHandle<()>) {
        let raw = fd.as_raw_fd();
        // SAFETY: fcntl(2) on an fd we own; no memory effects.
        unsafe {
            let fl = libc::fcntl(raw, libc::F_GETFL);
            libc::fcntl(raw, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
        let s = Arc::new(Stream {
            state: Mutex::new(StreamState {
                file: Some(File::from(fd)),
                ..Default::default()
            }),
            cond: Condvar::new(),
            closed: AtomicBool::new(false),
        });
        let s2 = s.clone();
        let h = thread::spawn(move || {
            // The fd stays open (owned by the state) until this thread ends, so
            // polling the raw number is safe.
            while !s2.closed.load(Ordering::Relaxed) {
                let mut p = libc::pollfd {
                    fd: raw,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: p is a valid pollfd for the duration of the call.
                unsafe { libc::poll(&mut p, 1, 100) };
                let mut st = s2.lock();
                st.pump();
                let eof = st.eof;
                drop(st);
                s2.cond.notify_all();
                if eof {
                    break;
                }
            }
            s2.lock().file = None;
            s2.cond.notify_all();
        });
        (s, h)
    }

    fn lock(&self) -> MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Everything written to the pipe so far, read now.
    fn sync(&self) -> Vec<String> {
        let mut st = self.lock();
        st.pump();
        st.lines.clone()
    }

    fn wait_for(&self, timeout: Duration, mut pred: impl FnMut(&[String], bool) -> bool) -> bool {
        let end = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            st.pump();
            if pred(&st.lines, st.eof) {
                return true;
            }
            let now = Instant::now();
            if now >= end {
                return false;
            }
            let wait = (end - now).min(Duration::from_millis(50));
            st = self
                .cond
                .wait_timeout(st, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

// ---------------------------------------------------------------------------
// Workload

/// A running process whose stdout and stderr are captured line by line. It is the
/// cleanup guard too: dropping it (also during a panic) SIGKILLs its whole tree, its
/// process group (its session, if spawned with [`Workload::spawn_session`]), every
/// pid given to [`Workload::track`] and group given to [`Workload::track_group`],
/// reaps, and waits until all of them are gone from /proc.
pub struct Workload {
    name: String,
    child: Option<Child>,
    status: Option<ExitStatus>,
    pid: i32,
    pgid: i32,
    session: bool,
    groups: Vec<i32>,
    tracked: Vec<i32>,
    known: BTreeSet<i32>,
    out: Arc<Stream>,
    err: Arc<Stream>,
}

impl Workload {
    /// Spawns `program args...` in its own process group, stdin from /dev/null.
    pub fn spawn(program: impl AsRef<OsStr>, args: &[&str]) -> Workload {
        let mut cmd = Command::new(program);
        cmd.args(args);
        Self::spawn_cmd(cmd)
    }

    /// Spawns `program args...` as the leader of a new session (setsid).
    pub fn spawn_session(program: impl AsRef<OsStr>, args: &[&str]) -> Workload {
        let mut cmd = Command::new(program);
        cmd.args(args);
        Self::spawn_inner(cmd, Stdio::null(), true)
    }

    /// Spawns a prepared command in its own process group, stdin from /dev/null.
    pub fn spawn_cmd(cmd: Command) -> Workload {
        Self::spawn_inner(cmd, Stdio::null(), false)
    }

    /// Spawns a prepared command in its own process group with the given stdin.
    pub fn spawn_with_stdin(cmd: Command, stdin: Stdio) -> Workload {
        Self::spawn_inner(cmd, stdin, false)
    }

    fn spawn_inner(mut cmd: Command, stdin: Stdio, session: bool) -> Workload {
        let name = format!("{:?}", cmd);
        cmd.stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if session {
            // SAFETY: setsid(2) is async-signal-safe and touches no memory.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::setsid() < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        } else {
            cmd.process_group(0);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {name}: {e}"));
        let pid = child.id() as i32;
        let (out, _) = Stream::start(child.stdout.take().expect("stdout").into());
        let (err, _) = Stream::start(child.stderr.take().expect("stderr").into());
        Workload {
            name,
            child: Some(child),
            status: None,
            pid,
            pgid: pid,
            session,
            groups: Vec::new(),
            tracked: Vec::new(),
            known: BTreeSet::from([pid]),
            out,
            err,
        }
    }

    /// The pid of the spawned process.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Also kill PID (and its descendants) on drop: for processes that are not our
    /// descendants, e.g. a tree restored by `cr-restart --detach`.
    pub fn track(&mut self, pid: i32) {
        if !self.tracked.contains(&pid) {
            self.tracked.push(pid);
        }
    }

    /// Also kill every process of `pids` (and their descendants) on drop.
    pub fn track_all(&mut self, pids: &[i32]) {
        for &p in pids {
            self.track(p);
        }
    }

    /// Also kill every process in process group PGID on drop.
    pub fn track_group(&mut self, pgid: i32) {
        if !self.groups.contains(&pgid) {
            self.groups.push(pgid);
        }
    }

    /// The stdout lines so far (everything already in the pipe is included).
    pub fn lines(&self) -> Vec<String> {
        self.out.sync()
    }

    /// The stderr output so far.
    pub fn stderr(&self) -> String {
        self.err.sync().join("\n")
    }

    /// Waits for a stdout line matching `pred`; returns the first one.
    pub fn wait_for_line(
        &self,
        mut pred: impl FnMut(&str) -> bool,
        timeout: Duration,
    ) -> Option<String> {
        let mut found = None;
        self.out.wait_for(timeout, |lines, _| {
            found = lines.iter().find(|l| pred(l)).cloned();
            found.is_some()
        });
        found
    }

    /// Like [`Workload::wait_for_line`] with [`TIMEOUT`], panicking with the output
    /// so far if no line matches (or a `FAIL` line shows up first).
    pub fn expect_line(&self, mut pred: impl FnMut(&str) -> bool, what: &str) -> String {
        let mut found = None;
        let mut failed = None;
        self.out.wait_for(TIMEOUT, |lines, eof| {
            found = lines.iter().find(|l| pred(l)).cloned();
            failed = lines.iter().find(|l| l.starts_with("FAIL")).cloned();
            found.is_some() || failed.is_some() || eof
        });
        match (found, failed) {
            (_, Some(f)) => panic!("{}: {f}\n{}", self.name, self.report()),
            (Some(l), None) => l,
            (None, None) => panic!("{}: no line {what}\n{}", self.name, self.report()),
        }
    }

    /// Waits until the workload printed `[TAG ]count N` with N >= `n`, or panics.
    pub fn expect_count(&self, tag: Option<&str>, n: u64) -> String {
        self.expect_line(
            |l| parse_count(l).is_some_and(|(t, c)| t == tag && c >= n),
            &format!("with count >= {n}"),
        )
    }

    /// The counts printed so far for `tag` (None: untagged lines).
    pub fn counts(&self, tag: Option<&str>) -> Vec<u64> {
        counts(&self.lines(), tag)
    }

    /// The last count printed for `tag`.
    pub fn last_count(&self, tag: Option<&str>) -> Option<u64> {
        self.counts(tag).last().copied()
    }

    /// Panics if any line starts with `FAIL`.
    pub fn assert_no_fail(&self) {
        if let Some(l) = self.lines().iter().find(|l| l.starts_with("FAIL")) {
            panic!("{}: {l}\n{}", self.name, self.report());
        }
    }

    /// Waits until the process printed everything (stdout closed) and exited.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                let left = end.saturating_duration_since(Instant::now());
                self.out.wait_for(left, |_, eof| eof);
                return Some(s);
            }
            if Instant::now() >= end {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Like [`Workload::wait_exit`] with [`TIMEOUT`], panicking on timeout.
    pub fn expect_exit(&mut self) -> ExitStatus {
        match self.wait_exit(TIMEOUT) {
            Some(s) => s,
            None => panic!("{}: did not exit\n{}", self.name, self.report()),
        }
    }

    /// The exit status, if the process has exited (reaps it).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Some(c) = self.child.as_mut()
        {
            self.status = c.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits until the stdout pipe is closed by every writer.
    pub fn wait_eof(&self, timeout: Duration) -> bool {
        self.out.wait_for(timeout, |_, eof| eof)
    }

    /// The process and its descendants now, plus tracked trees.
    pub fn tree(&self) -> Vec<i32> {
        let mut v = tree_of(self.pid);
        for &t in &self.tracked {
            v.extend(tree_of(t));
        }
        v.sort_unstable();
        v.dedup();
        v
    }

    /// A description of the process and its output, for failure messages.
    pub fn report(&self) -> String {
        let lines = self.lines();
        let skip = lines.len().saturating_sub(40);
        format!(
            "--- {} (pid {}) stdout, last {} of {} lines:\n{}\n--- stderr:\n{}\n---",
            self.name,
            self.pid,
            lines.len() - skip,
            lines.len(),
            lines[skip..].join("\n"),
            self.stderr()
        )
    }

    /// Kills everything (what drop does). Returns pids that would not go away.
    pub fn kill(&mut self) -> Vec<i32> {
        for p in self.tree() {
            self.known.insert(p);
        }
        let roots: Vec<i32> = self
            .known
            .iter()
            .copied()
            .chain(self.tracked.iter().copied())
            .collect();
        let mut child = self.child.take();
        let mut status = self.status;
        let mut groups = self.groups.clone();
        groups.push(self.pgid);
        let sids = if self.session {
            vec![self.pid]
        } else {
            Vec::new()
        };
        let left = kill_all(&roots, &groups, &sids, || {
            if status.is_none()
                && let Some(c) = child.as_mut()
            {
                status = c.try_wait().ok().flatten();
            }
        });
        if let Some(mut c) = child
            && status.is_none()
        {
            let _ = c.kill();
            status = c.wait().ok();
        }
        self.status = status;
        self.out.closed.store(true, Ordering::Relaxed);
        self.err.closed.store(true, Ordering::Relaxed);
        left
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let left = self.kill();
        if !left.is_empty() {
            eprintln!(
                "warning: {}: processes {left:?} still exist after cleanup",
                self.name
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Counters

/// Parses `[TAG ]count N ...` into (tag, N).
pub fn parse_count(line: &str) -> Option<(Option<&str>, u64)> {
    let mut w = line.split_whitespace();
    let first = w.next()?;
    if first == "count" {
        return Some((None, w.next()?.parse().ok()?));
    }
    if w.next()? == "count" {
        return Some((Some(first), w.next()?.parse().ok()?));
    }
    None
}

/// The counts of `tag` in `lines`, in order.
pub fn counts(lines: &[String], tag: Option<&str>) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|l| parse_count(l))
        .filter(|(t, _)| *t == tag)
        .map(|(_, n)| n)
        .collect()
}

/// The `f=` value onetask and fpu print at count `n`: the sum of 1/k for k = 1..=n
/// in this order, exactly (bit for bit) as the workload computes it (fpu uses
/// round-toward-zero, so only onetask's matches).
pub fn harmonic(n: u64) -> f64 {
    (1..=n).fold(0.0, |s, k| s + 1.0 / k as f64)
}

/// Checks that counts go up by exactly one each line.
pub fn check_consecutive(counts: &[u64]) -> Result<(), String> {
    for w in counts.windows(2) {
        if w[1] != w[0] + 1 {
            let what = if w[1] <= w[0] { "repeat" } else { "gap" };
            return Err(format!("{what}: count {} followed by {}", w[0], w[1]));
        }
    }
    Ok(())
}

/// What `ckpt` did to the original after writing the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Original {
    /// `ckpt --kill`: it printed nothing after the checkpoint.
    Killed,
    /// `ckpt --stop`: it printed nothing after the checkpoint (until SIGCONT).
    Stopped,
    /// Default: it kept running, so its counts go on past the restore point too.
    Running,
}

/// Checks that the restored process continued the original's count sequence with no
/// gap and no repeat. Both sequences must be consecutive, the restored one non-empty.
/// Killed/Stopped: the restored sequence starts right after the original's last count.
/// Running: it starts right after some count the original printed.
pub fn check_continuation(original: &[u64], restored: &[u64], how: Original) -> Result<(), String> {
    check_consecutive(original).map_err(|e| format!("original: {e}"))?;
    check_consecutive(restored).map_err(|e| format!("restored: {e}"))?;
    let Some(&first) = restored.first() else {
        return Err("the restored process printed no count".into());
    };
    let (Some(&o_first), Some(&o_last)) = (original.first(), original.last()) else {
        return Err("the original printed no count".into());
    };
    match how {
        Original::Killed | Original::Stopped => {
            if first != o_last + 1 {
                return Err(format!(
                    "original ended at count {o_last}, restored started at {first}"
                ));
            }
        }
        Original::Running => {
            if first <= o_first || first > o_last + 1 {
                return Err(format!(
                    "restored started at {first}, original printed {o_first}..={o_last}"
                ));
            }
        }
    }
    Ok(())
}

/// [`check_continuation`] on two workloads' current output, panicking with both
/// outputs on failure. Also fails on any `FAIL` line.
pub fn assert_continues(
    original: &Workload,
    restored: &Workload,
    tag: Option<&str>,
    how: Original,
) {
    if how == Original::Killed {
        original.wait_eof(TIMEOUT);
    }
    // Lines already in the pipes are read now, so nothing the original printed before
    // it was frozen is missed.
    let o = original.counts(tag);
    let r = restored.counts(tag);
    original.assert_no_fail();
    restored.assert_no_fail();
    if let Err(e) = check_continuation(&o, &r, how) {
        panic!(
            "{e}\noriginal:\n{}\nrestored:\n{}",
            original.report(),
            restored.report()
        );
    }
}

// ---------------------------------------------------------------------------
// Running tools

/// A finished process: exit status and captured output.
#[derive(Debug)]
pub struct Finished {
    pub name: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Finished {
    /// Panics with stderr unless the exit status is 0.
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "{} failed with {}:\n{}",
            self.name,
            self.status,
            self.stderr
        );
        self
    }

    /// The exit code (None if killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

fn collect(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

/// Waits for a child with [`TIMEOUT`]; on timeout kills it and panics.
fn wait_child(name: &str, child: &mut Child) -> ExitStatus {
    let end = Instant::now() + TIMEOUT;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} did not finish within {TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Runs a project binary with `args`, feeding `stdin` (or /dev/null), and captures its
/// output. Panics only on timeout.
pub fn run(name: &str, args: &[&str], stdin: Option<&[u8]>) -> Finished {
    let mut cmd = Command::new(bin(name));
    cmd.args(args);
    run_cmd(cmd, stdin)
}

/// Runs a prepared command like [`run`].
pub fn run_cmd(mut cmd: Command, stdin: Option<&[u8]>) -> Finished {
    let name = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {name}: {e}"));
    let feeder = stdin.map(|data| {
        let mut w = child.stdin.take().expect("stdin");
        let data = data.to_vec();
        thread::spawn(move || {
            let _ = w.write_all(&data);
        })
    });
    let out = collect(child.stdout.take().expect("stdout"));
    let err = collect(child.stderr.take().expect("stderr"));
    let status = wait_child(&name, &mut child);
    if let Some(f) = feeder {
        let _ = f.join();
    }
    Finished {
        name,
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned(),
    }
}

/// `ckpt ARGS...`: the image is in `stdout`.
pub fn ckpt(args: &[&str]) -> Finished {
    run("ckpt", args, None)
}

/// `ckpt ARGS... PID > path`, panicking unless it succeeds.
pub fn ckpt_to_file(args: &[&str], pid: i32, path: &Path) {
    let pid = pid.to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-o", path.to_str().expect("utf-8 path"), pid.as_str()]);
    ckpt(&all).assert_success();
}

/// A pipeline of commands connected stdout to stdin, e.g.
/// `ckpt PID | cr-zstd | cr-sum | cr-restart`.
#[derive(Default)]
pub struct Pipeline {
    stages: Vec<Command>,
    input: Option<PathBuf>,
}

impl Pipeline {
    pub fn new() -> Pipeline {
        Pipeline::default()
    }

    /// Appends a project binary (`ckpt`, `cr-zstd`, ...) with arguments.
    pub fn stage(self, name: &str, args: &[&str]) -> Pipeline {
        let mut c = Command::new(bin(name));
        c.args(args);
        self.cmd(c)
    }

    /// Appends any command (e.g. `head -c 100` to truncate a stream).
    pub fn cmd(mut self, cmd: Command) -> Pipeline {
        self.stages.push(cmd);
        self
    }

    /// Feeds the first stage from a file.
    pub fn input(mut self, path: &Path) -> Pipeline {
        self.input = Some(path.to_path_buf());
        self
    }

    /// Starts every stage; the last stage's stdout goes to `last_out` (kept in
    /// `RunningPipeline::stdout` when piped).
    fn start(self, last_out: Stdio) -> RunningPipeline {
        let mut prev: Option<Stdio> = self.input.as_ref().map(|p| {
            File::open(p)
                .unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
                .into()
        });
        let n = self.stages.len();
        let mut last_out = Some(last_out);
        let mut running = RunningPipeline {
            stages: Vec::new(),
            stdout: None,
        };
        for (i, mut cmd) in self.stages.into_iter().enumerate() {
            let name = format!("{cmd:?}");
            cmd.stdin(prev.take().unwrap_or_else(Stdio::null));
            if i + 1 == n {
                cmd.stdout(last_out.take().expect("last stdout"));
            } else {
                cmd.stdout(Stdio::piped());
            }
            cmd.stderr(Stdio::piped());
            let mut child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot spawn {name}: {e}"));
            if i + 1 < n {
                prev = Some(child.stdout.take().expect("stdout").into());
            } else {
                running.stdout = child.stdout.take();
            }
            let err = collect(child.stderr.take().expect("stderr"));
            running.stages.push((name, Some(child), Some(err)));
        }
        running
    }

    /// Runs every stage to completion; the last stage's stdout is captured.
    pub fn run(self) -> PipelineOutput {
        let mut running = self.start(Stdio::piped());
        let out = collect(running.stdout.take().expect("pipeline stdout"));
        let mut result = running.wait();
        result.stdout = out.join().unwrap_or_default();
        result
    }

    /// Runs every stage to completion; the last stage writes to `path`.
    pub fn run_to_file(self, path: &Path) -> PipelineOutput {
        let f = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        self.start(f.into()).wait()
    }

    /// Ends the pipeline with `cr-restart ARGS...`, run as a [`Workload`]: the
    /// restored processes' output arrives on its stdout, and dropping it kills
    /// cr-restart and everything it restored.
    pub fn restore(self, args: &[&str]) -> Restore {
        let mut c = Command::new(bin("cr-restart"));
        c.args(args);
        self.restore_cmd(c)
    }

    /// Ends the pipeline with a prepared cr-restart command.
    pub fn restore_cmd(self, last: Command) -> Restore {
        let (pipeline, stdin) = if self.stages.is_empty() {
            let stdin = match &self.input {
                Some(p) => File::open(p)
                    .unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
                    .into(),
                None => Stdio::null(),
            };
            (
                RunningPipeline {
                    stages: Vec::new(),
                    stdout: None,
                },
                stdin,
            )
        } else {
            let mut p = self.start(Stdio::piped());
            let out = p.stdout.take().expect("pipeline stdout");
            (p, Stdio::from(out))
        };
        let restored = Workload::spawn_with_stdin(last, stdin);
        Restore { pipeline, restored }
    }
}

/// A running stage: its name, process, and the thread collecting its stderr.
type Stage = (String, Option<Child>, Option<JoinHandle<Vec<u8>>>);

/// A pipeline whose stages are running.
pub struct RunningPipeline {
    stages: Vec<Stage>,
    stdout: Option<std::process::ChildStdout>,
}

impl RunningPipeline {
    /// The exit status of stage `i` if it has finished (does not block).
    pub fn stage_status(&mut self, i: usize) -> Option<ExitStatus> {
        self.stages
            .get_mut(i)?
            .1
            .as_mut()?
            .try_wait()
            .ok()
            .flatten()
    }

    /// Name, status and stderr of the first stage that finished with a
    /// failure so far, if any (does not block on running stages).
    pub fn failed_stage(&mut self) -> Option<String> {
        for i in 0..self.stages.len() {
            if let Some(st) = self.stage_status(i)
                && !st.success()
            {
                let (name, _, err) = &mut self.stages[i];
                let stderr = err
                    .take()
                    .map(|h| h.join().unwrap_or_default())
                    .unwrap_or_default();
                let text = String::from_utf8_lossy(&stderr).into_owned();
                // Put it back for `wait`.
                *err = Some(thread::spawn(move || stderr));
                return Some(format!("{name} -> {st}\n{text}"));
            }
        }
        None
    }

    /// Waits for every stage ([`TIMEOUT`] each, then kill and panic).
    pub fn wait(mut self) -> PipelineOutput {
        let mut out = Vec::new();
        for (name, child, err) in self.stages.iter_mut() {
            let mut c = child.take().expect("stage child");
            let status = wait_child(name, &mut c);
            let stderr = err
                .take()
                .map(|h| h.join().unwrap_or_default())
                .unwrap_or_default();
            out.push(Finished {
                name: name.clone(),
                status,
                stdout: Vec::new(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            });
        }
        PipelineOutput {
            stages: out,
            stdout: Vec::new(),
        }
    }
}

impl Drop for RunningPipeline {
    fn drop(&mut self) {
        for (_, child, _) in self.stages.iter_mut() {
            if let Some(mut c) = child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// What a pipeline run produced: each stage's status and stderr, in order, and the
/// last stage's stdout (when it was captured).
#[derive(Debug)]
pub struct PipelineOutput {
    pub stages: Vec<Finished>,
    pub stdout: Vec<u8>,
}

impl PipelineOutput {
    /// Panics with every stage's stderr unless all stages exited 0.
    pub fn assert_success(&self) -> &Self {
        if self.stages.iter().any(|s| !s.status.success()) {
            panic!("pipeline failed:\n{}", self.describe());
        }
        self
    }

    /// Each stage's status and stderr, for messages.
    pub fn describe(&self) -> String {
        self.stages
            .iter()
            .map(|s| format!("{} -> {}\n{}", s.name, s.status, s.stderr))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The exit codes of the stages.
    pub fn codes(&self) -> Vec<Option<i32>> {
        self.stages.iter().map(|s| s.status.code()).collect()
    }
}

/// A pipeline ending in cr-restart: the stages before it, and cr-restart itself as a
/// [`Workload`] (its stdout is the restored processes' stdout).
pub struct Restore {
    pub pipeline: RunningPipeline,
    pub restored: Workload,
}

/// The signal that ended a process, if a signal did.
pub fn term_signal(s: ExitStatus) -> Option<i32> {
    s.signal()
}

// ---------------------------------------------------------------------------
// Files

/// Reads a pid file (as written by `cr-restart --pidfile`), waiting for it to appear.
pub fn read_pidfile(path: &Path) -> i32 {
    let end = Instant::now() + TIMEOUT;
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && let Ok(p) = s.trim().parse()
        {
            return p;
        }
        assert!(
            Instant::now() < end,
            "pid file {} did not appear",
            path.display()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// The inode number of a path.
pub fn inode(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .ino()
}

// ---------------------------------------------------------------------------
// SysV IPC

/// Which kind of SysV IPC object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipc {
    Msg,
    Sem,
    Shm,
}

impl Ipc {
    fn proc_file(self) -> &'static str {
        match self {
            Ipc::Msg => "/proc/sysvipc/msg",
            Ipc::Sem => "/proc/sysvipc/sem",
            Ipc::Shm => "/proc/sysvipc/shm",
        }
    }
}

/// The ids of the existing SysV objects of a kind, from /proc/sysvipc (this IPC
/// namespace).
pub fn ipc_ids(kind: Ipc) -> Vec<i32> {
    let Ok(s) = std::fs::read_to_string(kind.proc_file()) else {
        return Vec::new();
    };
    s.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect()
}

/// The ids in an `ids=A,B` field of a workload line (ipcmsq, ipcsem, ipcshm).
pub fn ids_in_line(line: &str) -> Vec<i32> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("ids="))
        .map(|v| v.split(',').filter_map(|i| i.parse().ok()).collect())
        .unwrap_or_default()
}

/// Removes one SysV object by id (IPC_RMID). Returns false if it did not exist.
pub fn ipc_remove(kind: Ipc, id: i32) -> bool {
    // SAFETY: IPC_RMID takes no buffer (a null pointer is allowed) and only removes
    // the object.
    let r = unsafe {
        match kind {
            Ipc::Msg => libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()),
            Ipc::Sem => libc::semctl(id, 0, libc::IPC_RMID),
            Ipc::Shm => libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()),
        }
    };
    r == 0
}

/// Cleanup guard for SysV objects: records which objects exist when created, and on
/// drop removes every object created since (or added with [`IpcGuard::add`]).
/// Tests touching IPC should not run concurrently with other IPC tests unless they
/// only [`IpcGuard::add`] the ids they know.
pub struct IpcGuard {
    before: Vec<(Ipc, Vec<i32>)>,
    extra: Vec<(Ipc, i32)>,
    sweep: bool,
}

impl IpcGuard {
    /// Removes, on drop, every object created after this call.
    pub fn sweep_new() -> IpcGuard {
        let before = [Ipc::Msg, Ipc::Sem, Ipc::Shm]
            .into_iter()
            .map(|k| (k, ipc_ids(k)))
            .collect();
        IpcGuard {
            before,
            extra: Vec::new(),
            sweep: true,
        }
    }

    /// Removes, on drop, only the objects given to [`IpcGuard::add`].
    pub fn explicit() -> IpcGuard {
        IpcGuard {
            before: Vec::new(),
            extra: Vec::new(),
            sweep: false,
        }
    }

    /// Remove this object on drop.
    pub fn add(&mut self, kind: Ipc, id: i32) {
        self.extra.push((kind, id));
    }

    /// The objects of a kind created since [`IpcGuard::sweep_new`].
    pub fn new_ids(&self, kind: Ipc) -> Vec<i32> {
        let old: &[i32] = self
            .before
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(&[], |(_, v)| v);
        ipc_ids(kind)
            .into_iter()
            .filter(|i| !old.contains(i))
            .collect()
    }
}

impl Drop for IpcGuard {
    fn drop(&mut self) {
        for &(k, id) in &self.extra {
            ipc_remove(k, id);
        }
        if self.sweep {
            for k in [Ipc::Msg, Ipc::Sem, Ipc::Shm] {
                for id in self.new_ids(k) {
                    ipc_remove(k, id);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Round trips

/// `ckpt CKPT_ARGS PID | FILTER... | cr-restart RESTORE_ARGS`, with the original
/// workload's pid. With `--kill` among `ckpt_args`, waits until ckpt killed the
/// original and reaps it (its pid must be free for cr-restart; a tree's other
/// processes are reaped by init, and cr-restart waits for them), panicking with
/// ckpt's stderr if a stage fails first. The restored workload tracks every pid
/// and the process group of the original tree, so dropping it cleans up.
pub fn checkpoint_restore(
    orig: &mut Workload,
    ckpt_args: &[&str],
    filters: &[(&str, &[&str])],
    restore_args: &[&str],
) -> Restore {
    let pid = orig.pid();
    let tree = orig.tree();
    let pgids: Vec<i32> = tree.iter().filter_map(|&p| pgid_of(p)).collect();
    let pid_s = pid.to_string();
    let mut args: Vec<&str> = ckpt_args.to_vec();
    args.push(&pid_s);
    let mut p = Pipeline::new().stage("ckpt", &args);
    for (name, a) in filters {
        p = p.stage(name, a);
    }
    let mut r = p.restore(restore_args);
    r.restored.track_all(&tree);
    for g in pgids {
        r.restored.track_group(g);
    }
    if ckpt_args.contains(&"--kill") {
        let end = Instant::now() + TIMEOUT;
        loop {
            if orig.try_status().is_some() {
                break;
            }
            if let Some(f) = r.pipeline.failed_stage() {
                // The original is our child: reap it now, or the restored
                // workload's guard (dropped first) waits for it in vain.
                orig.kill();
                panic!(
                    "checkpoint of pid {pid} failed:\n{f}\n{}\ncr-restart:\n{}",
                    orig.report(),
                    r.restored.report()
                );
            }
            assert!(
                Instant::now() < end,
                "ckpt --kill did not kill pid {pid}\n{}",
                orig.report()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
    r
}

/// Lets every tag of `orig` count to `warm`, migrates it with `ckpt --kill |
/// FILTERS | cr-restart`, and checks that every tag continues for `more`
/// counts without gap or repeat (and the pipeline succeeded).
pub fn migrate_and_continue(
    orig: &mut Workload,
    tags: &[Option<&str>],
    filters: &[(&str, &[&str])],
    warm: u64,
    more: u64,
) -> Restore {
    for &t in tags {
        orig.expect_count(t, warm);
    }
    let mut r = migrate(orig, filters);
    orig.wait_eof(TIMEOUT);
    for &t in tags {
        let last = orig.last_count(t).unwrap_or(0);
        r.restored.expect_count(t, last + more);
    }
    r.expect_pipeline_ok();
    for &t in tags {
        assert_continues(orig, &r.restored, t, Original::Killed);
    }
    r
}

/// [`checkpoint_restore`] with `ckpt --kill` and a plain `cr-restart`.
pub fn migrate(orig: &mut Workload, filters: &[(&str, &[&str])]) -> Restore {
    checkpoint_restore(orig, &["--kill"], filters, &[])
}

impl Restore {
    /// Waits for every pipeline stage before cr-restart and panics, with their
    /// stderr and cr-restart's output, unless all succeeded.
    pub fn expect_pipeline_ok(&mut self) {
        let p = std::mem::replace(
            &mut self.pipeline,
            RunningPipeline {
                stages: Vec::new(),
                stdout: None,
            },
        )
        .wait();
        if p.stages.iter().any(|s| !s.status.success()) {
            panic!(
                "pipeline failed:\n{}\ncr-restart:\n{}",
                p.describe(),
                self.restored.report()
            );
        }
    }
}
