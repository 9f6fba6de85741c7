//! Checkpoint/restart benchmarks against the machine's own limits, measured
//! in the same run: `cargo bench --bench ckpt` (see BENCHMARKS.md).
//!
//! The bench is its own workload: re-executed with `CR_BENCH_ROLE` set, it
//! becomes a process to checkpoint (1 GiB of random memory, a sparse 8 GiB
//! mapping, one page of state, or a tree of small processes). Setup
//! (starting workloads, filling memory, writing image files) is not timed.
//! Every figure is the median of `CR_BENCH_RUNS` runs (default 3).
//!
//! Environment: `CR_BENCH_RUNS=N`, `CR_BENCH_MIB=M` (size of the big
//! workload, default 1024), `CR_BENCH_ONLY=a,b` (groups: limits are always
//! measured; groups are big, thp, sparse, small, tree, tree64),
//! `CR_BENCH_BIN_DIR=DIR` (the tools of another build), `CR_BENCH_DIR`
//! (where images go, default /tmp).

use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

fn main() {
    if let Ok(role) = std::env::var("CR_BENCH_ROLE") {
        workload(&role);
    }
    let runs: usize = env_num("CR_BENCH_RUNS", 3).max(1);
    let mib: usize = env_num("CR_BENCH_MIB", 1024).max(16);
    let only: Vec<String> = std::env::var("CR_BENCH_ONLY")
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let want = |g: &str| only.is_empty() || only.iter().any(|o| o == g);
    // Restored trees outlive `cr-restart --detach`: make them ours to reap.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let dir = tempfile::Builder::new()
        .prefix("crbench")
        .tempdir_in(std::env::var_os("CR_BENCH_DIR").unwrap_or_else(|| "/tmp".into()))
        .expect("temp dir");
    let mut b = Bench {
        runs,
        mib,
        dir: dir.path().to_path_buf(),
        rows: Vec::new(),
        notes: Vec::new(),
        rss_tools: Vec::new(),
    };
    b.machine();
    let lim = b.limits();
    if want("big") {
        b.big(&lim, false);
    }
    if want("thp") {
        b.big(&lim, true);
    }
    if want("sparse") {
        b.sparse(&lim);
    }
    if want("small") {
        b.small();
    }
    if want("tree") {
        b.tree(256, 10.0);
    }
    if want("tree64") {
        b.tree(64, 10.0);
    }
    b.print();
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------
// Workloads (the bench re-executed)

fn xorshift_fill(mem: &mut [u64], mut x: u64) {
    for w in mem {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *w = x;
    }
}

fn map_anon(len: usize, huge: bool, noreserve: bool) -> *mut u8 {
    let extra = if noreserve { libc::MAP_NORESERVE } else { 0 };
    // SAFETY: a fresh anonymous mapping; no existing memory is affected.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra,
            -1,
            0,
        )
    };
    assert!(p != libc::MAP_FAILED, "mmap of {len} bytes failed");
    let advice = if huge {
        libc::MADV_HUGEPAGE
    } else {
        libc::MADV_NOHUGEPAGE
    };
    // SAFETY: advice on the mapping just made.
    unsafe { libc::madvise(p, len, advice) };
    p.cast()
}

/// Says "ready ADDR LEN" on stdout, moves stdio to /dev/null (so the
/// image has no descriptor leading outside), and waits to be killed.
fn ready_and_wait(addr: usize, len: usize) -> ! {
    println!("ready {addr:x} {len}");
    let _ = std::io::stdout().flush();
    // SAFETY: plain descriptor operations on this process's own fds.
    unsafe {
        let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        for t in 0..3 {
            libc::dup2(fd, t);
        }
        libc::close(fd);
    }
    loop {
        // SAFETY: pause only waits for a signal.
        unsafe { libc::pause() };
    }
}

fn workload(role: &str) -> ! {
    let arg = |i: usize| -> usize {
        role.split(':')
            .nth(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    // A session of its own: the tree is killed as one group.
    // SAFETY: setsid has no memory effects.
    unsafe { libc::setsid() };
    // Nothing but stdio from whoever ran the bench (a shell's pipes, a
    // build tool's jobserver): a pipe whose other end is outside the tree
    // makes `ckpt` look for its holders in all of /proc, which is not what
    // a workload here measures (see `ready_and_wait`).
    // SAFETY: closes descriptors this process has not opened itself.
    unsafe { libc::close_range(3, u32::MAX, 0) };
    match role.split(':').next().unwrap_or("") {
        "limits" => measure_limits(arg(1), arg(2).max(1)),
        // big:MIB:HUGE - MIB MiB of random data.
        "big" => {
            let len = arg(1) * MIB;
            let p = map_anon(len, arg(2) != 0, false);
            // SAFETY: the mapping is `len` bytes, page aligned, ours alone.
            let words = unsafe { std::slice::from_raw_parts_mut(p.cast::<u64>(), len / 8) };
            xorshift_fill(words, 0x9E37_79B9_7F4A_7C15);
            ready_and_wait(p as usize, len);
        }
        // sparse:MAPPED_MIB:TOUCHED_MIB - touched in 1 MiB pieces spread out.
        "sparse" => {
            let len = arg(1) * MIB;
            let touched = arg(2);
            let p = map_anon(len, false, true);
            let stride = len / touched;
            for i in 0..touched {
                // SAFETY: each 1 MiB piece lies inside the mapping.
                let w = unsafe {
                    std::slice::from_raw_parts_mut(p.add(i * stride).cast::<u64>(), MIB / 8)
                };
                xorshift_fill(w, i as u64 + 1);
            }
            ready_and_wait(p as usize, len);
        }
        // small - one page of state.
        "small" => {
            let p = map_anon(PAGE, false, false);
            // SAFETY: one page, ours.
            let w = unsafe { std::slice::from_raw_parts_mut(p.cast::<u64>(), PAGE / 8) };
            xorshift_fill(w, 7);
            ready_and_wait(p as usize, PAGE);
        }
        // tree:N - N small processes: the root and N-1 children. The root
        // times its own forks and says it in the ready line (as ADDR, ns).
        "tree" => {
            let t0 = Instant::now();
            for _ in 1..arg(1) {
                // SAFETY: the child only calls async-signal-safe functions
                // (pause) and never returns into Rust code that assumed one thread.
                let pid = unsafe { libc::fork() };
                assert!(pid >= 0, "fork failed");
                if pid == 0 {
                    loop {
                        // SAFETY: pause only waits for a signal.
                        unsafe { libc::pause() };
                    }
                }
            }
            let ns = t0.elapsed().as_nanos() as usize;
            ready_and_wait(ns, 0);
        }
        r => panic!("unknown role {r}"),
    }
}

/// The machine's limits (a role, see [`Bench::limits`]).
fn measure_limits(mib: usize, runs: usize) -> ! {
    let len = mib * MIB;
    {
        let src = map_anon(len, false, false);
        let dst = map_anon(len, false, false);
        // SAFETY: both mappings are `len` bytes and ours.
        let (s, d) = unsafe {
            (
                std::slice::from_raw_parts_mut(src, len),
                std::slice::from_raw_parts_mut(dst, len),
            )
        };
        // SAFETY: `s` is a u64-aligned mapping of len bytes.
        xorshift_fill(
            unsafe { std::slice::from_raw_parts_mut(src.cast::<u64>(), len / 8) },
            3,
        );
        d.fill(1);
        let memcpy = timed(runs, || {
            let t = Instant::now();
            d.copy_from_slice(s);
            std::hint::black_box(&d);
            t.elapsed().as_secs_f64()
        });
        // SAFETY: unmapping our own buffer, not used again.
        unsafe { libc::munmap(dst.cast(), len) };
        let fill_with = |huge: bool| {
            let t = Instant::now();
            let p = map_anon(len, huge, false);
            // SAFETY: a fresh mapping of len bytes; `s` is distinct.
            unsafe { std::ptr::copy_nonoverlapping(src, p, len) };
            let e = t.elapsed().as_secs_f64();
            // SAFETY: unmapping the mapping just made.
            unsafe { libc::munmap(p.cast(), len) };
            e
        };
        let fill = timed(runs, || fill_with(false));
        let fill_thp = timed(runs, || fill_with(true));
        // Pipe: from memory into `cat > /dev/null`.
        let pipe_t = timed(runs, || {
            let (r, w) = pipe();
            let mut cat = Command::new("cat")
                .stdin(Stdio::from(r))
                .stdout(Stdio::null())
                .spawn()
                .expect("cat");
            let mut w = File::from(w);
            let t = Instant::now();
            for c in s.chunks(MIB) {
                w.write_all(c).expect("write to cat");
            }
            drop(w);
            cat.wait().expect("cat");
            t.elapsed().as_secs_f64()
        });
        // SAFETY: unmapping our own buffer, not used again.
        unsafe { libc::munmap(src.cast(), len) };
        println!("{memcpy} {fill} {fill_thp} {pipe_t}");
        std::process::exit(0);
    }
}

fn timed(runs: usize, mut f: impl FnMut() -> f64) -> f64 {
    median((0..runs).map(|_| f()).collect())
}

// ---------------------------------------------------------------------------
// Processes

/// A started workload: its pid and the memory it reported.
struct Work {
    pid: i32,
    addr: usize,
    len: usize,
}

fn spawn_work(role: &str) -> Work {
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .env("CR_BENCH_ROLE", role)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn workload");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("workload ready line");
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f.first(), Some(&"ready"), "workload said {line:?}");
    let w = Work {
        pid: child.id() as i32,
        addr: usize::from_str_radix(f[1], 16).expect("addr"),
        len: f[2].parse().expect("len"),
    };
    std::mem::forget(child); // reaped by `kill_tree`
    w
}

/// All pids of the tree rooted at `pid` (children lists of every thread).
fn tree_pids(pid: i32) -> Vec<i32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                let path = t.path().join("children");
                if let Ok(s) = std::fs::read_to_string(path) {
                    out.extend(s.split_whitespace().filter_map(|x| x.parse::<i32>().ok()));
                }
            }
        }
        i += 1;
    }
    out
}

/// Kills the tree rooted at `pid` and reaps every process of it (they are
/// ours: children, or orphans of a subreaper).
fn kill_tree(pid: i32) {
    let pids = tree_pids(pid);
    for &p in &pids {
        // SAFETY: kill sends a signal to a pid we started.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut left: Vec<i32> = pids;
    while !left.is_empty() && Instant::now() < deadline {
        let mut st = 0;
        // SAFETY: waitpid writes the status into the live local.
        let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        if r > 0 {
            left.retain(|&p| p != r);
            continue;
        }
        left.retain(|&p| Path::new(&format!("/proc/{p}")).exists());
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(left.is_empty(), "processes {left:?} did not go away");
}

/// What one run of a tool cost.
#[derive(Clone, Copy)]
struct Run {
    secs: f64,
    /// Peak resident set, KiB (each process waited for with wait4).
    rss_kb: [i64; 4],
}

/// Runs `cmds` as a pipeline (stdin of the first from `input`, stdout of
/// the last to `output`), pipes between them at 1 MiB; times it.
fn pipeline(cmds: &[Vec<&OsStr>], input: Option<&Path>, output: &Path) -> Run {
    let t0 = Instant::now();
    let mut pids = Vec::new();
    let mut prev: Option<OwnedFd> = None;
    for (i, argv) in cmds.iter().enumerate() {
        let mut c = Command::new(argv[0]);
        c.args(&argv[1..]).stderr(Stdio::inherit());
        match prev.take() {
            Some(fd) => c.stdin(Stdio::from(fd)),
            None => match input {
                Some(p) => c.stdin(File::open(p).expect("input")),
                None => c.stdin(Stdio::null()),
            },
        };
        if i + 1 == cmds.len() {
            c.stdout(File::create(output).expect("output"));
        } else {
            let (r, w) = pipe();
            c.stdout(Stdio::from(w));
            prev = Some(r);
        }
        let child = c.spawn().expect("spawn tool");
        pids.push(child.id() as i32);
        std::mem::forget(child); // waited for with wait4 below
    }
    let mut rss_kb = [0i64; 4];
    let mut failed = None;
    for (i, &p) in pids.iter().enumerate() {
        let mut st = 0;
        // SAFETY: rusage is plain data; wait4 writes into the live locals.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let r = unsafe { libc::wait4(p, &mut st, 0, &mut ru) };
        assert_eq!(r, p, "wait4");
        if !(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0) {
            failed = Some((i, st));
        }
        if i < 4 {
            rss_kb[i] = ru.ru_maxrss;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    if let Some((i, st)) = failed {
        panic!("{:?} failed with status {st:#x}", cmds[i]);
    }
    Run { secs, rss_kb }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the live array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors are new and owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, MIB as libc::c_int) };
    (r, w)
}

/// The tool `name`: this build's, or `$CR_BENCH_BIN_DIR/name` to measure
/// another build (e.g. the previous commit's) with the same bench.
fn bin(name: &str) -> &'static OsStr {
    if let Some(dir) = std::env::var_os("CR_BENCH_BIN_DIR") {
        let p = Path::new(&dir).join(name).into_os_string();
        return Box::leak(p.into_boxed_os_str());
    }
    OsStr::new(match name {
        "ckpt" => env!("CARGO_BIN_EXE_ckpt"),
        "cr-restart" => env!("CARGO_BIN_EXE_cr-restart"),
        "cr-zstd" => env!("CARGO_BIN_EXE_cr-zstd"),
        "cr-sum" => env!("CARGO_BIN_EXE_cr-sum"),
        "cr-info" => env!("CARGO_BIN_EXE_cr-info"),
        "cr-split" => env!("CARGO_BIN_EXE_cr-split"),
        _ => unreachable!(),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn crc_of(pid: i32, addr: usize, len: usize) -> u32 {
    let mut buf = vec![0u8; 4 * MIB];
    let mut crc = 0;
    let mut at = 0;
    while at < len {
        let n = (len - at).min(buf.len());
        read_remote(pid, addr + at, &mut buf[..n]);
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        at += n;
    }
    crc
}

/// A buffer of `len` bytes that starts half a page into a page, where
/// `ckpt` puts its own: the kernel's copy slows down several times when the
/// destination sits just after the source modulo 4 KiB (a large `Vec` from
/// `malloc` starts 16 bytes into a page, or anywhere).
struct ReadBuf {
    v: Vec<u8>,
    at: usize,
    len: usize,
}

impl ReadBuf {
    fn new(len: usize) -> ReadBuf {
        let v = vec![0u8; len + 2 * PAGE];
        let at = (PAGE - v.as_ptr() as usize % PAGE + PAGE / 2) % PAGE;
        ReadBuf { v, at, len }
    }

    fn get(&mut self) -> &mut [u8] {
        &mut self.v[self.at..self.at + self.len]
    }
}

fn read_remote(pid: i32, addr: usize, buf: &mut [u8]) {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` describes `buf`; the remote iovec is interpreted in `pid`.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    assert_eq!(n, buf.len() as isize, "process_vm_readv of pid {pid}");
}

/// CPU time (user + system) of this process so far.
fn cpu_secs() -> f64 {
    // SAFETY: rusage is plain data; getrusage writes into the live local.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn anon_huge_kb(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("AnonHugePages:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn warm(path: &Path) {
    let mut f = File::open(path).expect("image");
    let mut buf = vec![0u8; MIB];
    while f.read(&mut buf).expect("read") > 0 {}
}

/// The freeze time `ckpt -v` reports (`..., frozen 390.2 ms; ...`), in ms.
fn frozen_ms(stderr: &str) -> Option<f64> {
    let i = stderr.find("frozen ")?;
    let mut w = stderr[i + 7..].split_whitespace();
    let v: f64 = w.next()?.parse().ok()?;
    match w.next()?.trim_end_matches([';', ',']) {
        "s" => Some(v * 1e3),
        "ms" => Some(v),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// The benchmark

struct Row {
    figure: String,
    ours: String,
    limit: String,
    ratio: Option<f64>,
    target: String,
    met: Option<bool>,
}

struct Limits {
    memcpy: f64,
    fill: f64,
    fill_thp: f64,
    pipe: f64,
}

struct Bench {
    runs: usize,
    mib: usize,
    dir: PathBuf,
    rows: Vec<Row>,
    notes: Vec<String>,
    rss_tools: Vec<(&'static str, i64)>,
}

fn ms(s: f64) -> String {
    if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.3} s")
    }
}

impl Bench {
    fn row(&mut self, figure: &str, ours: f64, limit: Option<(&str, f64)>, target: f64) {
        let (limit_s, ratio) = match limit {
            Some((name, l)) => (format!("{} ({name})", ms(l)), Some(ours / l)),
            None => ("-".into(), None),
        };
        let met = match ratio {
            Some(r) => r <= target,
            None => ours <= target,
        };
        let target_s = match ratio {
            Some(_) => format!("<= {target}x"),
            None => format!("< {}", ms(target)),
        };
        eprintln!("  {figure}: {}", ms(ours));
        self.rows.push(Row {
            figure: figure.into(),
            ours: ms(ours),
            limit: limit_s,
            ratio,
            target: target_s,
            met: Some(met),
        });
    }

    fn info(&mut self, figure: &str, ours: String, target: &str, met: Option<bool>) {
        eprintln!("  {figure}: {ours}");
        self.rows.push(Row {
            figure: figure.into(),
            ours,
            limit: "-".into(),
            ratio: None,
            target: target.into(),
            met,
        });
    }

    fn timed(&self, f: impl FnMut() -> f64) -> f64 {
        timed(self.runs, f)
    }

    fn machine(&mut self) {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
            })
            .unwrap_or_default();
        let ncpu = std::thread::available_parallelism().map_or(0, |n| n.get());
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_default();
        self.notes.push(format!(
            "machine: {cpu}, {ncpu} CPUs, kernel {}, THP {}, load average at start {}",
            kernel.trim(),
            thp.trim(),
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        ));
        eprintln!("{}", self.notes[0]);
    }

    /// Measures the limits in a child process, so that this process never
    /// holds much memory: a tool's peak RSS (wait4) starts from the
    /// high-water mark of the process that spawned it.
    fn limits(&mut self) -> Limits {
        eprintln!("limits ({} MiB, median of {}):", self.mib, self.runs);
        let out = Command::new(std::env::current_exe().expect("current exe"))
            .env(
                "CR_BENCH_ROLE",
                format!("limits:{}:{}", self.mib, self.runs),
            )
            .stderr(Stdio::inherit())
            .output()
            .expect("limits");
        let v: Vec<f64> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        assert_eq!(v.len(), 4, "limits process failed");
        let (memcpy, fill, fill_thp, pipe_t) = (v[0], v[1], v[2], v[3]);
        let len = self.mib * MIB;
        eprintln!(
            "  memcpy {}, fresh fill {} (THP {}), pipe {}",
            ms(memcpy),
            ms(fill),
            ms(fill_thp),
            ms(pipe_t)
        );
        let gib = |t: f64| len as f64 / t / (1u64 << 30) as f64;
        self.notes.push(format!(
            "limits for {} MiB: memcpy {} ({:.1} GiB/s); fresh fill {} ({:.1} GiB/s), with MADV_HUGEPAGE {}; pipe into cat {} ({:.1} GiB/s)",
            self.mib,
            ms(memcpy),
            gib(memcpy),
            ms(fill),
            gib(fill),
            ms(fill_thp),
            ms(pipe_t),
            gib(pipe_t)
        ));
        Limits {
            memcpy,
            fill,
            fill_thp,
            pipe: pipe_t,
        }
    }
    fn ckpt_to(&self, pid: i32, out: &Path) -> (Run, f64) {
        self.ckpt_args_to(pid, &[], out)
    }

    /// `ckpt -v ARGS PID > out`: its time and peak RSS, and how long it
    /// said the process was frozen.
    fn ckpt_args_to(&self, pid: i32, args: &[&str], out: &Path) -> (Run, f64) {
        let stderr = self.dir.join("ckpt.err");
        let pid_s = pid.to_string();
        let t0 = Instant::now();
        let child = Command::new(bin("ckpt"))
            .arg("-v")
            .args(args)
            .arg(&pid_s)
            .stdout(File::create(out).expect("out"))
            .stderr(File::create(&stderr).expect("stderr"))
            .spawn()
            .expect("ckpt");
        let pid_c = child.id() as i32;
        std::mem::forget(child);
        let mut st = 0;
        // SAFETY: rusage is plain data; wait4 writes into the live locals.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::wait4(pid_c, &mut st, 0, &mut ru) }, pid_c);
        let secs = t0.elapsed().as_secs_f64();
        let err = std::fs::read_to_string(&stderr).unwrap_or_default();
        assert!(
            libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
            "ckpt failed: {err}"
        );
        let frozen = frozen_ms(&err).unwrap_or(f64::NAN) / 1e3;
        (
            Run {
                secs,
                rss_kb: [ru.ru_maxrss, 0, 0, 0],
            },
            frozen,
        )
    }

    /// Restores `img` detached; returns the time and cr-restart's peak RSS.
    fn restore(&self, img: &Path) -> Run {
        let img_s = img.as_os_str();
        pipeline(
            &[vec![
                bin("cr-restart"),
                OsStr::new("--detach"),
                OsStr::new("-i"),
                img_s,
            ]],
            None,
            Path::new("/dev/null"),
        )
    }

    /// The work no checkpoint of `w` can skip, done as fast as this bench
    /// knows how: its `smaps` read (the mappings' flags come before any
    /// page), then every page copied out with `process_vm_readv` and
    /// checksummed with CRC32C, by as many threads as there are CPUs. The
    /// wall time is a floor for `ckpt > /dev/null`; the CPU time divided
    /// by the CPUs is a floor even for a tool that overlapped everything.
    fn floor(&mut self, w: &Work, lim: &Limits) -> f64 {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut cpu = Vec::new();
        let t = self.timed(|| {
            let c0 = cpu_secs();
            let t = Instant::now();
            let smaps = std::fs::read(format!("/proc/{}/smaps", w.pid)).expect("smaps");
            std::hint::black_box(smaps);
            let per = w.len.div_ceil(cpus).next_multiple_of(PAGE);
            let crcs: Vec<u32> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..cpus)
                    .map(|k| {
                        s.spawn(move || {
                            let (from, to) = ((k * per).min(w.len), ((k + 1) * per).min(w.len));
                            let mut rb = ReadBuf::new(256 << 10);
                            let buf = rb.get();
                            let mut crc = 0;
                            for at in (from..to).step_by(buf.len()) {
                                let n = (to - at).min(buf.len());
                                read_remote(w.pid, w.addr + at, &mut buf[..n]);
                                crc = crtools::sys::crc32c::append(crc, &buf[..n]);
                            }
                            crc
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().expect("reader")).collect()
            });
            std::hint::black_box(crcs);
            let e = t.elapsed().as_secs_f64();
            cpu.push(cpu_secs() - c0);
            e
        });
        let c = median(cpu);
        self.notes.push(format!(
            "floor: smaps read, then process_vm_readv + CRC32C of every page by {cpus} threads: {} ({:.2}x memcpy), CPU {} ({:.2}x memcpy once spread over {cpus} CPUs)",
            ms(t),
            t / lim.memcpy,
            ms(c),
            c / cpus as f64 / lim.memcpy
        ));
        eprintln!("  floor {} (CPU {})", ms(t), ms(c));
        t
    }

    fn big(&mut self, lim: &Limits, huge: bool) {
        let tag = if huge { "THP" } else { "" };
        let gib = format!("{} MiB{}", self.mib, if huge { " THP" } else { "" });
        eprintln!("{gib} process:");
        let w = spawn_work(&format!("big:{}:{}", self.mib, huge as u8));
        let crc0 = crc_of(w.pid, w.addr, w.len);
        let thp0 = anon_huge_kb(w.pid);
        let pid_s = w.pid.to_string();
        let devnull = Path::new("/dev/null");
        let img = self.dir.join(format!("big{tag}.img"));
        let mut floor = None;
        if !huge {
            let mut rb = ReadBuf::new(MIB);
            let buf = rb.get();
            let t = self.timed(|| {
                let t = Instant::now();
                for at in (0..w.len).step_by(MIB) {
                    read_remote(w.pid, w.addr + at, buf);
                }
                t.elapsed().as_secs_f64()
            });
            self.notes.push(format!(
                "limit: process_vm_readv of {gib} into a reused 1 MiB buffer {} ({:.2}x memcpy)",
                ms(t),
                t / lim.memcpy
            ));
            eprintln!("  process_vm_readv limit {}", ms(t));
            floor = Some(self.floor(&w, lim));
        }

        let mut frozen = Vec::new();
        let mut rss = 0;
        let t = self.timed(|| {
            let (r, f) = self.ckpt_to(w.pid, devnull);
            frozen.push(f);
            rss = rss.max(r.rss_kb[0]);
            r.secs
        });
        self.row(
            &format!("ckpt {gib} > /dev/null"),
            t,
            Some(("memcpy", lim.memcpy)),
            1.5,
        );
        if let Some(fl) = floor {
            self.info(
                &format!("ckpt {gib} > /dev/null against the floor"),
                format!(
                    "{:.2}x the floor ({}, {:.2}x memcpy)",
                    t / fl,
                    ms(fl),
                    fl / lim.memcpy
                ),
                "report",
                None,
            );
        }
        let f = median(frozen);
        self.info(
            &format!("freeze time, ckpt {gib} > /dev/null"),
            format!("{} ({:.2}x memcpy)", ms(f), f / lim.memcpy),
            "reported",
            None,
        );
        if !huge {
            // Pre-copied: the memory goes while the process runs, the
            // freeze is for what was written since (nothing here).
            let mut frozen = Vec::new();
            self.timed(|| {
                let (r, f) = self.ckpt_args_to(w.pid, &["--live"], devnull);
                frozen.push(f);
                r.secs
            });
            let f = median(frozen);
            self.row(
                &format!("freeze time, ckpt --live {gib} > /dev/null (pre-copied)"),
                f,
                None,
                0.1,
            );
        }
        if !huge {
            let t = self.timed(|| {
                pipeline(
                    &[
                        vec![bin("ckpt"), OsStr::new(&pid_s)],
                        vec![OsStr::new("cat")],
                    ],
                    None,
                    devnull,
                )
                .secs
            });
            self.row(
                &format!("ckpt {gib} | cat > /dev/null"),
                t,
                Some(("pipe", lim.pipe)),
                1.3,
            );
        }
        self.ckpt_to(w.pid, &img);
        let img_len = std::fs::metadata(&img).map(|m| m.len()).unwrap_or(0);
        if !huge {
            // Compression: the pipeline against cr-zstd alone on the file.
            let zst = self.dir.join("big.zst");
            let alone = self.timed(|| {
                warm(&img);
                pipeline(&[vec![bin("cr-zstd"), OsStr::new("-T2")]], Some(&img), &zst).secs
            });
            let mut zrss = 0;
            let t = self.timed(|| {
                let r = pipeline(
                    &[
                        vec![bin("ckpt"), OsStr::new(&pid_s)],
                        vec![bin("cr-zstd"), OsStr::new("-T2")],
                    ],
                    None,
                    &zst,
                );
                zrss = zrss.max(r.rss_kb[1]);
                r.secs
            });
            self.row(
                &format!("ckpt {gib} | cr-zstd -T2 > file"),
                t,
                Some(("cr-zstd -T2 < file", alone)),
                1.2,
            );
            let _ = std::fs::remove_file(&zst);
            // Peak memory of every tool on this image.
            let mut tools: Vec<(&'static str, i64)> = vec![("ckpt", rss), ("cr-zstd -T2", zrss)];
            let prefix = self.dir.join("part.");
            for (name, argv, out) in [
                ("cr-sum", vec![bin("cr-sum")], devnull.to_path_buf()),
                ("cr-info", vec![bin("cr-info")], devnull.to_path_buf()),
                (
                    "cr-split",
                    vec![
                        bin("cr-split"),
                        OsStr::new("-b"),
                        OsStr::new("256M"),
                        prefix.as_os_str(),
                    ],
                    devnull.to_path_buf(),
                ),
            ] {
                let r = pipeline(&[argv], Some(&img), &out);
                tools.push((name, r.rss_kb[0]));
            }
            for e in std::fs::read_dir(&self.dir).expect("dir").flatten() {
                if e.file_name().to_string_lossy().starts_with("part.") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
            self.rss_tools = tools;
        }

        kill_tree(w.pid);
        let mut thp1 = 0;
        let mut crc1 = 0;
        let mut rrss = 0;
        let t = self.timed(|| {
            warm(&img);
            let r = self.restore(&img);
            rrss = rrss.max(r.rss_kb[0]);
            thp1 = anon_huge_kb(w.pid);
            if crc1 == 0 {
                crc1 = crc_of(w.pid, w.addr, w.len);
            }
            kill_tree(w.pid);
            r.secs
        });
        assert_eq!(crc0, crc1, "restored memory differs from the original");
        let (lname, l) = if huge {
            ("fresh fill, THP", lim.fill_thp)
        } else {
            ("fresh fill", lim.fill)
        };
        self.row(
            &format!("cr-restart --detach {gib} (page cache)"),
            t,
            Some((lname, l)),
            1.2,
        );
        if huge {
            self.info(
                "THP kept on restore (AnonHugePages)",
                format!("{} of {} MiB", thp1 >> 10, thp0 >> 10),
                "all",
                Some(thp1 >= thp0),
            );
        } else {
            let mut tools = std::mem::take(&mut self.rss_tools);
            tools.insert(1, ("cr-restart", rrss));
            let max = tools.iter().map(|t| t.1).max().unwrap_or(0);
            self.info(
                &format!("peak RSS of each tool, {gib} image"),
                tools
                    .iter()
                    .map(|(n, k)| format!("{n} {:.1}", *k as f64 / 1024.0))
                    .collect::<Vec<_>>()
                    .join(", ")
                    + " MiB",
                "< 64 MiB",
                Some(max < 64 * 1024),
            );
            self.notes.push(format!(
                "{gib} image: {:.1} MiB",
                img_len as f64 / MIB as f64
            ));
        }
        let _ = std::fs::remove_file(&img);
    }

    fn sparse(&mut self, lim: &Limits) {
        eprintln!("sparse process (8 GiB mapped, 100 MiB touched):");
        let w = spawn_work("sparse:8192:100");
        let img = self.dir.join("sparse.img");
        // Timed to /dev/null: writing 100 MiB into a file is a fresh fill
        // of the page cache (about 90 ms here), not the checkpoint.
        let t = self.timed(|| self.ckpt_to(w.pid, Path::new("/dev/null")).0.secs);
        self.ckpt_to(w.pid, &img);
        let size = std::fs::metadata(&img).map(|m| m.len()).unwrap_or(0);
        let scaled = lim.memcpy * 100.0 / self.mib as f64;
        self.row(
            "ckpt 8 GiB mapped / 100 MiB touched > /dev/null",
            t,
            Some(("memcpy of 100 MiB", scaled)),
            3.0,
        );
        self.info(
            "  its image size",
            format!("{:.1} MiB", size as f64 / MIB as f64),
            "~100 MiB",
            Some(size < 105 * MIB as u64),
        );
        kill_tree(w.pid);
        let t = self.timed(|| {
            warm(&img);
            let r = self.restore(&img).secs;
            kill_tree(w.pid);
            r
        });
        self.row(
            "cr-restart --detach of it",
            t,
            Some(("fresh fill of 100 MiB", lim.fill * 100.0 / self.mib as f64)),
            1.5,
        );
        let _ = std::fs::remove_file(&img);
    }

    fn small(&mut self) {
        eprintln!("small process:");
        let w = spawn_work("small");
        let img = self.dir.join("small.img");
        let t = self.timed(|| self.ckpt_to(w.pid, &img).0.secs);
        self.row("ckpt small process > file", t, None, 0.010);
        kill_tree(w.pid);
        let t = self.timed(|| {
            let r = self.restore(&img).secs;
            kill_tree(w.pid);
            r
        });
        self.row("cr-restart --detach small process", t, None, 0.010);
        let _ = std::fs::remove_file(&img);
    }

    /// A tree of `n` processes (the root forks n-1 sleeping children):
    /// `ckpt` and `cr-restart --detach` against the time the tree took to
    /// fork itself (median of as many trees as runs, in this run).
    fn tree(&mut self, n: usize, target: f64) {
        eprintln!("tree of {n} small processes:");
        let mut forks = Vec::new();
        for _ in 0..self.runs {
            let w = spawn_work(&format!("tree:{n}"));
            forks.push(w.addr as f64 / 1e9);
            kill_tree(w.pid);
        }
        let fork = median(forks);
        let w = spawn_work(&format!("tree:{n}"));
        let img = self.dir.join("tree.img");
        let t = self.timed(|| self.ckpt_to(w.pid, &img).0.secs);
        let limit = Some(("the tree's own forks", fork));
        self.row(&format!("ckpt tree of {n} > file"), t, limit, target);
        kill_tree(w.pid);
        let t = self.timed(|| {
            let r = self.restore(&img).secs;
            kill_tree(w.pid);
            r
        });
        self.row(
            &format!("cr-restart --detach tree of {n}"),
            t,
            limit,
            target,
        );
        let _ = std::fs::remove_file(&img);
    }

    fn print(&self) {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!();
        for n in &self.notes {
            println!("{n}");
        }
        println!(
            "load average at end: {}; median of {} runs",
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
            self.runs
        );
        println!();
        println!("| figure | ours | limit | ratio | target | met? |");
        println!("| --- | --- | --- | --- | --- | --- |");
        for r in &self.rows {
            println!(
                "| {} | {} | {} | {} | {} | {} |",
                r.figure,
                r.ours,
                r.limit,
                r.ratio.map_or("-".into(), |x| format!("{x:.2}x")),
                r.target,
                match r.met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "-",
                }
            );
        }
    }
}
