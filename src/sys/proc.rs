//! Readers for the `/proc/PID/...` files the checkpointer needs.
//!
//! Every file has a pure parser over `&[u8]` (`parse_*`, unit-tested with
//! literal samples, including hostile ones) and a thin function that reads the
//! file of a given pid (or thread) and names the file in any error. Parsing is
//! done on bytes, never on `str`: paths and command names need not be UTF-8.
//!
//! Races are part of the interface: a thread may exit between listing and
//! reading. [`ProcError::is_gone`] tells such an error from a real one.
//!
//! Escaping rules worth knowing (Linux 6.x):
//! - `stat`: `comm` is printed raw between `(` and `)`; it may itself contain
//!   spaces and `)`, so it runs from the first `(` to the *last* `)`.
//! - `status`: `Name:` escapes `\n` as `\n` and `\` as `\\`.
//! - `maps`/`smaps`: the path escapes only `\n`, as `\012`; a literal
//!   backslash is not escaped, so `\012` in a file name is ambiguous. A
//!   deleted file gets a ` (deleted)` suffix, which a real file name may also
//!   end with. Where exactness matters, use [`map_files_link`], whose
//!   `readlink` is raw.

#![deny(missing_docs)]

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::ids::{Fd, Pid, Tid};

/// Why a `/proc` file could not be read or understood.
#[derive(Debug, Error)]
pub enum ProcError {
    /// Opening, reading or listing the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A system call on the file failed (for example an ioctl).
    #[error("{}: {op}: {source}", path.display())]
    Sys {
        /// The file the call was made on.
        path: PathBuf,
        /// The call, e.g. `"PAGEMAP_SCAN"`.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file's contents did not have the expected format.
    #[error("{}: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: ParseError,
    },
    /// The caller asked for something that cannot be answered.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What was wrong with the request.
        reason: String,
    },
}

impl ProcError {
    /// Whether the process or thread (or file descriptor, or mapping) went
    /// away: `ENOENT` or `ESRCH`. A checkpointer racing with exiting threads
    /// treats this as "gone", not as a failure.
    pub fn is_gone(&self) -> bool {
        match self {
            ProcError::Io { source, .. } | ProcError::Sys { source, .. } => matches!(
                source.raw_os_error(),
                Some(libc::ENOENT) | Some(libc::ESRCH)
            ),
            _ => false,
        }
    }

    /// The OS error number, if this is an I/O or system-call error.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            ProcError::Io { source, .. } | ProcError::Sys { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        ProcError::Io {
            path: path.into(),
            source,
        }
    }
}

/// What a pure parser found wrong with its input. The reading functions wrap
/// it in [`ProcError::Format`] together with the file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

/// Result of the reading functions.
pub type Result<T> = std::result::Result<T, ProcError>;

/// Result of the pure parsers.
pub type ParseResult<T> = std::result::Result<T, ParseError>;

fn bad<T>(reason: impl Into<String>) -> ParseResult<T> {
    Err(ParseError(reason.into()))
}

/// Show a byte string in an error message (lossy, shortened).
fn show(b: &[u8]) -> String {
    let cut = &b[..b.len().min(64)];
    let mut s = String::from_utf8_lossy(cut).escape_debug().to_string();
    if b.len() > cut.len() {
        s.push_str("...");
    }
    s
}

// ---------------------------------------------------------------------------
// Byte-level helpers.

fn digit_value(c: u8, radix: u32) -> Option<u64> {
    let v = match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => return None,
    };
    (u32::from(v) < radix).then_some(u64::from(v))
}

/// An unsigned number in `radix`, digits only (no sign, no prefix, no spaces).
fn num_radix(b: &[u8], radix: u32) -> Option<u64> {
    if b.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &c in b {
        n = n
            .checked_mul(u64::from(radix))?
            .checked_add(digit_value(c, radix)?)?;
    }
    Some(n)
}

fn dec_u64(b: &[u8]) -> Option<u64> {
    num_radix(b, 10)
}

fn hex_u64(b: &[u8]) -> Option<u64> {
    num_radix(b, 16)
}

fn dec_i64(b: &[u8]) -> Option<i64> {
    match b.split_first() {
        Some((b'-', rest)) => {
            let m = dec_u64(rest)?;
            if m <= i64::MAX as u64 + 1 {
                Some((m as i64).wrapping_neg())
            } else {
                None
            }
        }
        _ => i64::try_from(dec_u64(b)?).ok(),
    }
}

fn dec_i32(b: &[u8]) -> Option<i32> {
    i32::try_from(dec_i64(b)?).ok()
}

fn dec_u32(b: &[u8]) -> Option<u32> {
    u32::try_from(dec_u64(b)?).ok()
}

/// Lines of a file, without their `\n`. A final line without `\n` is kept;
/// the empty string after a final `\n` is not.
fn lines(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = buf.strip_suffix(b"\n").unwrap_or(buf);
    let empty = buf.is_empty();
    body.split(|&c| c == b'\n').filter(move |_| !empty)
}

/// Whitespace-separated words (spaces and tabs).
fn words(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|c| *c == b' ' || *c == b'\t')
        .filter(|w| !w.is_empty())
}

/// Split a `Key:\tvalue` line at its first `:`; the value is trimmed.
fn key_value(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|&c| c == b':')?;
    Some((line[..colon].trim_ascii(), line[colon + 1..].trim_ascii()))
}

fn proc_path(pid: Pid, rest: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{rest}"))
}

fn task_path(pid: Pid, tid: Tid, rest: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/task/{tid}/{rest}"))
}

/// Read a whole file.
fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| ProcError::io(path, e))
}

/// Read and parse a file, naming it in any error.
fn read_parse<T>(path: PathBuf, parse: impl FnOnce(&[u8]) -> ParseResult<T>) -> Result<T> {
    let buf = read_file(&path)?;
    parse(&buf).map_err(|reason| ProcError::Format { path, reason })
}

/// Undo the C-style escapes the kernel uses in `status` (`\n`, `\\`, ...)
/// and octal escapes (`\ooo`). An unknown or cut escape is kept as it is.
pub fn unescape_c(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 >= b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let c = b[i + 1];
        let simple = match c {
            b'n' => Some(b'\n'),
            b't' => Some(b'\t'),
            b'r' => Some(b'\r'),
            b'f' => Some(0x0c),
            b'v' => Some(0x0b),
            b'a' => Some(0x07),
            b'e' => Some(0x1b),
            b'\\' => Some(b'\\'),
            b'"' => Some(b'"'),
            _ => None,
        };
        if let Some(v) = simple {
            out.push(v);
            i += 2;
        } else if let Some(v) = octal3(&b[i + 1..]) {
            out.push(v);
            i += 4;
        } else {
            out.push(b'\\');
            i += 1;
        }
    }
    out
}

/// Three octal digits at the start of `b`, as a byte.
fn octal3(b: &[u8]) -> Option<u8> {
    if b.len() < 3 {
        return None;
    }
    let v = num_radix(&b[..3], 8)?;
    u8::try_from(v).ok()
}

/// Undo the only escape `maps` applies to paths: `\012` for a newline.
pub fn unescape_maps_path(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"\\012") {
            out.push(b'\n');
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Directories: tasks, children, fds.

/// Numeric entries of a `/proc` directory (unsorted).
fn numeric_entries(path: &Path) -> Result<Vec<i32>> {
    let rd = std::fs::read_dir(path).map_err(|e| ProcError::io(path, e))?;
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| ProcError::io(path, e))?;
        if let Some(n) = dec_i32(ent.file_name().as_bytes()) {
            out.push(n);
        }
    }
    Ok(out)
}

/// Thread ids of process `pid`, from `/proc/PID/task`: the thread-group
/// leader (`pid` itself) first if it is listed, the others in ascending order.
pub fn tasks(pid: impl Into<Pid>) -> Result<Vec<i32>> {
    let pid = pid.into();
    let mut tids = numeric_entries(&proc_path(pid, "task"))?;
    tids.sort_unstable_by_key(|&t| (t != pid.as_raw(), t));
    Ok(tids)
}

/// [`tasks`], typed.
pub fn threads(pid: Pid) -> Result<Vec<Tid>> {
    Ok(tasks(pid)?.into_iter().map(Tid::from_raw).collect())
}

/// Parse a `children` file: pids separated by spaces.
pub fn parse_children(buf: &[u8]) -> ParseResult<Vec<i32>> {
    words(buf.trim_ascii())
        .map(|w| dec_i32(w).map_or_else(|| bad(format!("bad pid {:?}", show(w))), Ok))
        .collect()
}

/// Children of thread `tid` of process `pid`, from
/// `/proc/PID/task/TID/children` (a process's children are spread over the
/// threads that forked them: ask every thread).
pub fn children(pid: impl Into<Pid>, tid: impl Into<Tid>) -> Result<Vec<i32>> {
    let pid = pid.into();
    let tid = tid.into();
    read_parse(task_path(pid, tid, "children"), parse_children)
}

/// [`children`], typed.
pub fn child_pids(pid: Pid, tid: Tid) -> Result<Vec<Pid>> {
    Ok(children(pid, tid)?.into_iter().map(Pid::from_raw).collect())
}

/// The target of a symbolic link, as raw bytes.
pub fn readlink_bytes(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    std::fs::read_link(path)
        .map(|p| p.into_os_string().into_vec())
        .map_err(|e| ProcError::io(path, e))
}

/// Open file descriptors of `pid` and what `/proc/PID/fd/N` links to
/// (`/path`, `pipe:[ino]`, `socket:[ino]`, `anon_inode:[eventfd]`, ...),
/// sorted by fd. A descriptor closed while listing is left out.
pub fn fds(pid: impl Into<Pid>) -> Result<Vec<(i32, Vec<u8>)>> {
    let pid = pid.into();
    let dir = proc_path(pid, "fd");
    let mut nums = numeric_entries(&dir)?;
    nums.sort_unstable();
    let mut out = Vec::with_capacity(nums.len());
    for fd in nums {
        match readlink_bytes(dir.join(fd.to_string())) {
            Ok(target) => out.push((fd, target)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// `readlink /proc/PID/exe`: the executable's path (with ` (deleted)` if it
/// was removed).
pub fn exe(pid: impl Into<Pid>) -> Result<Vec<u8>> {
    let pid = pid.into();
    readlink_bytes(proc_path(pid, "exe"))
}

/// `readlink /proc/PID/cwd`.
pub fn cwd(pid: impl Into<Pid>) -> Result<Vec<u8>> {
    let pid = pid.into();
    readlink_bytes(proc_path(pid, "cwd"))
}

/// `readlink /proc/PID/root`.
pub fn root(pid: impl Into<Pid>) -> Result<Vec<u8>> {
    let pid = pid.into();
    readlink_bytes(proc_path(pid, "root"))
}

/// Raw `/proc/PID/cmdline`: NUL-terminated arguments (see [`split_nul`]).
pub fn cmdline(pid: impl Into<Pid>) -> Result<Vec<u8>> {
    let pid = pid.into();
    read_file(&proc_path(pid, "cmdline"))
}

/// Raw `/proc/PID/environ`: NUL-terminated `KEY=value` strings.
pub fn environ(pid: impl Into<Pid>) -> Result<Vec<u8>> {
    let pid = pid.into();
    read_file(&proc_path(pid, "environ"))
}

/// Split NUL-terminated strings (`cmdline`, `environ`), keeping empty ones:
/// `b"a\0\0b\0"` is `["a", "", "b"]`. A last string without its NUL is kept.
pub fn split_nul(buf: &[u8]) -> Vec<&[u8]> {
    if buf.is_empty() {
        return Vec::new();
    }
    let body = buf.strip_suffix(b"\0").unwrap_or(buf);
    body.split(|&c| c == 0).collect()
}

/// Raw `/proc/PID/auxv` (see [`parse_auxv`]).
pub fn auxv(pid: impl Into<Pid>) -> Result<Vec<u8>> {
    let pid = pid.into();
    read_file(&proc_path(pid, "auxv"))
}

/// Parse an auxiliary vector: native-endian `(type, value)` pairs of u64 up
/// to and without `AT_NULL`.
pub fn parse_auxv(buf: &[u8]) -> ParseResult<Vec<(u64, u64)>> {
    if !buf.len().is_multiple_of(16) {
        return bad(format!("auxv length {} is not a multiple of 16", buf.len()));
    }
    let mut out = Vec::new();
    for pair in buf.chunks_exact(16) {
        let (k, v) = pair.split_at(8);
        let k = u64::from_ne_bytes(k.try_into().expect("8 bytes"));
        let v = u64::from_ne_bytes(v.try_into().expect("8 bytes"));
        if k == 0 {
            break;
        }
        out.push((k, v));
    }
    Ok(out)
}

/// Parse a `comm` file: the name without its final newline (the name is
/// printed raw and may itself contain a newline).
pub fn parse_comm(buf: &[u8]) -> Vec<u8> {
    buf.strip_suffix(b"\n").unwrap_or(buf).to_vec()
}

/// `/proc/PID/comm`: the command name (at most 15 bytes, raw).
pub fn comm(pid: impl Into<Pid>) -> Result<Vec<u8>> {
    let pid = pid.into();
    Ok(parse_comm(&read_file(&proc_path(pid, "comm"))?))
}

// ---------------------------------------------------------------------------
// stat

/// `/proc/PID/stat` (or `/proc/PID/task/TID/stat`), field by field, as
/// documented in proc_pid_stat(5). Addresses are 0 when the reader may not
/// see them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stat {
    /// (1) Process or thread id.
    pub pid: i32,
    /// (2) Command name, raw (without the parentheses).
    pub comm: Vec<u8>,
    /// (3) State: `R`, `S`, `D`, `T`, `t`, `Z`, `X`, `I`, ...
    pub state: u8,
    /// (4) Parent pid.
    pub ppid: i32,
    /// (5) Process group id.
    pub pgrp: i32,
    /// (6) Session id.
    pub session: i32,
    /// (7) Controlling terminal (device number), 0 if none.
    pub tty_nr: i32,
    /// (8) Foreground process group of the controlling terminal, -1 if none.
    pub tpgid: i32,
    /// (9) Kernel flags (`PF_*`).
    pub flags: u32,
    /// (10) Minor faults.
    pub minflt: u64,
    /// (11) Minor faults of waited-for children.
    pub cminflt: u64,
    /// (12) Major faults.
    pub majflt: u64,
    /// (13) Major faults of waited-for children.
    pub cmajflt: u64,
    /// (14) User time, clock ticks.
    pub utime: u64,
    /// (15) System time, clock ticks.
    pub stime: u64,
    /// (16) User time of waited-for children.
    pub cutime: i64,
    /// (17) System time of waited-for children.
    pub cstime: i64,
    /// (18) Scheduling priority as the kernel shows it.
    pub priority: i64,
    /// (19) Nice value.
    pub nice: i64,
    /// (20) Number of threads.
    pub num_threads: i64,
    /// (21) Obsolete, always 0.
    pub itrealvalue: i64,
    /// (22) Start time after boot, clock ticks.
    pub start_time: u64,
    /// (23) Virtual memory size, bytes.
    pub vsize: u64,
    /// (24) Resident set size, pages.
    pub rss: i64,
    /// (25) RLIMIT_RSS soft limit, bytes.
    pub rsslim: u64,
    /// (26) Start of the text segment.
    pub start_code: u64,
    /// (27) End of the text segment.
    pub end_code: u64,
    /// (28) Start (bottom) of the stack.
    pub start_stack: u64,
    /// (29) Stack pointer (only shown while dumping core).
    pub kstkesp: u64,
    /// (30) Instruction pointer (only shown while dumping core).
    pub kstkeip: u64,
    /// (31) Obsolete pending signals (decimal, first 32 signals).
    pub signal: u64,
    /// (32) Obsolete blocked signals.
    pub blocked: u64,
    /// (33) Obsolete ignored signals.
    pub sigignore: u64,
    /// (34) Obsolete caught signals.
    pub sigcatch: u64,
    /// (35) Wait channel (0 or 1 these days).
    pub wchan: u64,
    /// (36) Not maintained.
    pub nswap: u64,
    /// (37) Not maintained.
    pub cnswap: u64,
    /// (38) Signal sent to the parent on exit.
    pub exit_signal: i32,
    /// (39) CPU last run on.
    pub processor: i32,
    /// (40) Real-time priority.
    pub rt_priority: u32,
    /// (41) Scheduling policy (`SCHED_*`).
    pub policy: u32,
    /// (42) Aggregated block I/O delays, clock ticks.
    pub delayacct_blkio_ticks: u64,
    /// (43) Guest time, clock ticks.
    pub guest_time: u64,
    /// (44) Guest time of waited-for children.
    pub cguest_time: i64,
    /// (45) Start of the data segment.
    pub start_data: u64,
    /// (46) End of the data segment.
    pub end_data: u64,
    /// (47) Start of the heap (`brk` base).
    pub start_brk: u64,
    /// (48) Start of the argument strings.
    pub arg_start: u64,
    /// (49) End of the argument strings.
    pub arg_end: u64,
    /// (50) Start of the environment strings.
    pub env_start: u64,
    /// (51) End of the environment strings.
    pub env_end: u64,
    /// (52) Exit status, as `waitpid` reports it.
    pub exit_code: i32,
}

/// Fields after the `)` of comm: fields 3 to 52.
const STAT_TAIL_FIELDS: usize = 50;

/// Parse a `stat` file. The command name runs from the first `(` to the last
/// `)`, so names with spaces and parentheses parse correctly.
pub fn parse_stat(buf: &[u8]) -> ParseResult<Stat> {
    let Some(open) = buf.iter().position(|&c| c == b'(') else {
        return bad("unexpected format: no '('");
    };
    let Some(close) = buf.iter().rposition(|&c| c == b')') else {
        return bad("unexpected format: no ')'");
    };
    if close < open {
        return bad("unexpected format: ')' before '('");
    }
    let Some(pid) = dec_i32(buf[..open].trim_ascii()) else {
        return bad(format!(
            "unexpected format: bad pid {:?}",
            show(&buf[..open])
        ));
    };
    let comm = buf[open + 1..close].to_vec();
    let f: Vec<&[u8]> = words(buf[close + 1..].trim_ascii()).collect();
    if f.len() < STAT_TAIL_FIELDS {
        return bad(format!(
            "unexpected format: {} fields after the command name, expected {STAT_TAIL_FIELDS}",
            f.len()
        ));
    }
    // f[i] is field number i + 3 of proc_pid_stat(5).
    let field = |n: usize| f[n - 3];
    let err = |n: usize| {
        ParseError(format!(
            "unexpected format: field {n} is {:?}",
            show(field(n))
        ))
    };
    let u = |n: usize| dec_u64(field(n)).ok_or_else(|| err(n));
    let i = |n: usize| dec_i64(field(n)).ok_or_else(|| err(n));
    let i32f = |n: usize| dec_i32(field(n)).ok_or_else(|| err(n));
    let u32f = |n: usize| dec_u32(field(n)).ok_or_else(|| err(n));
    let state = match field(3) {
        [c] => *c,
        _ => return Err(err(3)),
    };
    Ok(Stat {
        pid,
        comm,
        state,
        ppid: i32f(4)?,
        pgrp: i32f(5)?,
        session: i32f(6)?,
        tty_nr: i32f(7)?,
        tpgid: i32f(8)?,
        flags: u32f(9)?,
        minflt: u(10)?,
        cminflt: u(11)?,
        majflt: u(12)?,
        cmajflt: u(13)?,
        utime: u(14)?,
        stime: u(15)?,
        cutime: i(16)?,
        cstime: i(17)?,
        priority: i(18)?,
        nice: i(19)?,
        num_threads: i(20)?,
        itrealvalue: i(21)?,
        start_time: u(22)?,
        vsize: u(23)?,
        rss: i(24)?,
        rsslim: u(25)?,
        start_code: u(26)?,
        end_code: u(27)?,
        start_stack: u(28)?,
        kstkesp: u(29)?,
        kstkeip: u(30)?,
        signal: u(31)?,
        blocked: u(32)?,
        sigignore: u(33)?,
        sigcatch: u(34)?,
        wchan: u(35)?,
        nswap: u(36)?,
        cnswap: u(37)?,
        exit_signal: i32f(38)?,
        processor: i32f(39)?,
        rt_priority: u32f(40)?,
        policy: u32f(41)?,
        delayacct_blkio_ticks: u(42)?,
        guest_time: u(43)?,
        cguest_time: i(44)?,
        start_data: u(45)?,
        end_data: u(46)?,
        start_brk: u(47)?,
        arg_start: u(48)?,
        arg_end: u(49)?,
        env_start: u(50)?,
        env_end: u(51)?,
        exit_code: i32f(52)?,
    })
}

/// `/proc/PID/stat`.
pub fn stat(pid: impl Into<Pid>) -> Result<Stat> {
    let pid = pid.into();
    read_parse(proc_path(pid, "stat"), parse_stat)
}

/// `/proc/PID/task/TID/stat`.
pub fn task_stat(pid: impl Into<Pid>, tid: impl Into<Tid>) -> Result<Stat> {
    let pid = pid.into();
    let tid = tid.into();
    read_parse(task_path(pid, tid, "stat"), parse_stat)
}

// ---------------------------------------------------------------------------
// status

/// The parts of `/proc/PID/status` a checkpoint needs (memory statistics and
/// CPU lists are left out).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// `Name:` the command name, unescaped.
    pub name: Vec<u8>,
    /// `Umask:` (absent for zombies and tasks without an fs).
    pub umask: Option<u32>,
    /// `State:` the state letter.
    pub state: u8,
    /// `Tgid:` thread-group id.
    pub tgid: i32,
    /// `Pid:` thread id.
    pub pid: i32,
    /// `PPid:` parent pid.
    pub ppid: i32,
    /// `TracerPid:` pid of the tracer, 0 if none.
    pub tracer_pid: i32,
    /// `Uid:` real, effective, saved, filesystem.
    pub uid: [u32; 4],
    /// `Gid:` real, effective, saved, filesystem.
    pub gid: [u32; 4],
    /// `Groups:` supplementary groups.
    pub groups: Vec<u32>,
    /// `NStgid:` thread-group id in each pid namespace, outermost (the
    /// reader's) first.
    pub ns_tgid: Vec<i32>,
    /// `NSpid:` thread id in each pid namespace.
    pub ns_pid: Vec<i32>,
    /// `NSpgid:` process group id in each pid namespace.
    pub ns_pgid: Vec<i32>,
    /// `NSsid:` session id in each pid namespace.
    pub ns_sid: Vec<i32>,
    /// `Threads:` number of threads.
    pub threads: u32,
    /// `SigQ:` queued signals of the real user, and its limit.
    pub sig_q: (u64, u64),
    /// `SigPnd:` signals pending for this thread.
    pub sig_pnd: u64,
    /// `ShdPnd:` signals pending for the process.
    pub shd_pnd: u64,
    /// `SigBlk:` blocked signals.
    pub sig_blk: u64,
    /// `SigIgn:` ignored signals.
    pub sig_ign: u64,
    /// `SigCgt:` caught signals.
    pub sig_cgt: u64,
    /// `CapInh:` inheritable capabilities.
    pub cap_inh: u64,
    /// `CapPrm:` permitted capabilities.
    pub cap_prm: u64,
    /// `CapEff:` effective capabilities.
    pub cap_eff: u64,
    /// `CapBnd:` capability bounding set.
    pub cap_bnd: u64,
    /// `CapAmb:` ambient capabilities.
    pub cap_amb: u64,
    /// `NoNewPrivs:`.
    pub no_new_privs: bool,
    /// `Seccomp:` 0 disabled, 1 strict, 2 filter (0 when the kernel has no
    /// seccomp and does not print the line).
    pub seccomp: u32,
    /// `Seccomp_filters:` number of attached filters (0 if not shown).
    pub seccomp_filters: u32,
}

fn id_list<T>(v: &[u8], parse: impl Fn(&[u8]) -> Option<T>) -> Option<Vec<T>> {
    words(v).map(parse).collect()
}

/// Parse a `status` file. Unknown lines are ignored; a required line that is
/// missing or malformed is an error naming it.
pub fn parse_status(buf: &[u8]) -> ParseResult<Status> {
    let mut s = Status::default();
    // Bit i: the i-th required key was seen.
    const REQUIRED: [&[u8]; 27] = [
        b"Name",
        b"State",
        b"Tgid",
        b"Pid",
        b"PPid",
        b"TracerPid",
        b"Uid",
        b"Gid",
        b"Groups",
        b"NStgid",
        b"NSpid",
        b"NSpgid",
        b"NSsid",
        b"Threads",
        b"SigQ",
        b"SigPnd",
        b"ShdPnd",
        b"SigBlk",
        b"SigIgn",
        b"SigCgt",
        b"CapInh",
        b"CapPrm",
        b"CapEff",
        b"CapBnd",
        b"CapAmb",
        b"NoNewPrivs",
        b"Seccomp",
    ];
    let mut seen = [false; REQUIRED.len()];
    for line in lines(buf) {
        let Some((key, v)) = key_value(line) else {
            continue;
        };
        let err = || ParseError(format!("bad {} line: {:?}", show(key), show(v)));
        let ok = match key {
            b"Name" => {
                // Only the leading tab is a separator: a name may begin or
                // end with spaces, so take the raw rest of the line.
                let raw = &line[line.iter().position(|&c| c == b':').unwrap_or(0) + 1..];
                let raw = raw.strip_prefix(b"\t").unwrap_or(raw);
                s.name = unescape_c(raw);
                true
            }
            b"Umask" => {
                s.umask = num_radix(v, 8).and_then(|n| u32::try_from(n).ok());
                s.umask.is_some()
            }
            b"State" => match v.first() {
                Some(&c) => {
                    s.state = c;
                    true
                }
                None => false,
            },
            b"Tgid" => dec_i32(v).map(|n| s.tgid = n).is_some(),
            b"Pid" => dec_i32(v).map(|n| s.pid = n).is_some(),
            b"PPid" => dec_i32(v).map(|n| s.ppid = n).is_some(),
            b"TracerPid" => dec_i32(v).map(|n| s.tracer_pid = n).is_some(),
            b"Uid" | b"Gid" => match id_list(v, dec_u32) {
                Some(ids) if ids.len() == 4 => {
                    let a = [ids[0], ids[1], ids[2], ids[3]];
                    if key == b"Uid" {
                        s.uid = a;
                    } else {
                        s.gid = a;
                    }
                    true
                }
                _ => false,
            },
            b"Groups" => id_list(v, dec_u32).map(|g| s.groups = g).is_some(),
            b"NStgid" => id_list(v, dec_i32).map(|g| s.ns_tgid = g).is_some(),
            b"NSpid" => id_list(v, dec_i32).map(|g| s.ns_pid = g).is_some(),
            b"NSpgid" => id_list(v, dec_i32).map(|g| s.ns_pgid = g).is_some(),
            b"NSsid" => id_list(v, dec_i32).map(|g| s.ns_sid = g).is_some(),
            b"Threads" => dec_u32(v).map(|n| s.threads = n).is_some(),
            b"SigQ" => {
                let mut it = v.splitn(2, |&c| c == b'/');
                match (it.next().and_then(dec_u64), it.next().and_then(dec_u64)) {
                    (Some(a), Some(b)) => {
                        s.sig_q = (a, b);
                        true
                    }
                    _ => false,
                }
            }
            b"SigPnd" => hex_u64(v).map(|n| s.sig_pnd = n).is_some(),
            b"ShdPnd" => hex_u64(v).map(|n| s.shd_pnd = n).is_some(),
            b"SigBlk" => hex_u64(v).map(|n| s.sig_blk = n).is_some(),
            b"SigIgn" => hex_u64(v).map(|n| s.sig_ign = n).is_some(),
            b"SigCgt" => hex_u64(v).map(|n| s.sig_cgt = n).is_some(),
            b"CapInh" => hex_u64(v).map(|n| s.cap_inh = n).is_some(),
            b"CapPrm" => hex_u64(v).map(|n| s.cap_prm = n).is_some(),
            b"CapEff" => hex_u64(v).map(|n| s.cap_eff = n).is_some(),
            b"CapBnd" => hex_u64(v).map(|n| s.cap_bnd = n).is_some(),
            b"CapAmb" => hex_u64(v).map(|n| s.cap_amb = n).is_some(),
            b"NoNewPrivs" => match v {
                b"0" => {
                    s.no_new_privs = false;
                    true
                }
                b"1" => {
                    s.no_new_privs = true;
                    true
                }
                _ => false,
            },
            b"Seccomp" => dec_u32(v).map(|n| s.seccomp = n).is_some(),
            b"Seccomp_filters" => dec_u32(v).map(|n| s.seccomp_filters = n).is_some(),
            _ => true,
        };
        if !ok {
            return Err(err());
        }
        if let Some(i) = REQUIRED.iter().position(|k| *k == key) {
            seen[i] = true;
        }
    }
    // Seccomp is only printed with CONFIG_SECCOMP: its absence means 0.
    let seccomp = REQUIRED.len() - 1;
    seen[seccomp] = true;
    if let Some(i) = seen.iter().position(|s| !s) {
        return bad(format!("no {} line", show(REQUIRED[i])));
    }
    Ok(s)
}

/// `/proc/PID/status`.
pub fn status(pid: impl Into<Pid>) -> Result<Status> {
    let pid = pid.into();
    read_parse(proc_path(pid, "status"), parse_status)
}

/// `/proc/PID/task/TID/status` (signal masks and pending signals are per
/// thread).
pub fn task_status(pid: impl Into<Pid>, tid: impl Into<Tid>) -> Result<Status> {
    let pid = pid.into();
    let tid = tid.into();
    read_parse(task_path(pid, tid, "status"), parse_status)
}

// ---------------------------------------------------------------------------
// maps

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MapEntry {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// `r`: readable.
    pub read: bool,
    /// `w`: writable.
    pub write: bool,
    /// `x`: executable.
    pub exec: bool,
    /// `s`: shared (`p`: private, copy-on-write).
    pub shared: bool,
    /// Offset into the file (pages into the object for shared anonymous).
    pub offset: u64,
    /// Device major number of the file.
    pub dev_major: u32,
    /// Device minor number of the file.
    pub dev_minor: u32,
    /// Inode of the file, 0 for anonymous memory.
    pub inode: u64,
    /// What the kernel shows, unescaped and without ` (deleted)`: empty for
    /// anonymous memory, `[heap]`, `[stack]`, `[vdso]`, `[vvar]`,
    /// `[vvar_vclock]`, `[vsyscall]`, `[anon:NAME]`, a file path,
    /// `/memfd:NAME`, `/SYSV0000abcd`, `/dev/zero` (shared anonymous).
    pub path: Vec<u8>,
    /// The path ended with ` (deleted)` (which was stripped from `path`).
    pub deleted: bool,
}

impl MapEntry {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the mapping is empty (never true for what the kernel shows).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Whether this is one of the kernel's special mappings named in
    /// brackets (`[heap]`, `[stack]`, `[vdso]`, `[anon:NAME]`, ...).
    pub fn is_special(&self) -> bool {
        self.inode == 0 && self.path.starts_with(b"[")
    }

    /// Whether the mapping is backed by a file (or a shmem object: memfd,
    /// SysV shm, shared anonymous memory).
    pub fn is_file(&self) -> bool {
        self.inode != 0
    }
}

const DELETED: &[u8] = b" (deleted)";

/// Parse the `start-end perms offset maj:min inode` head of a maps or smaps
/// line, and the path after it.
fn parse_map_line(line: &[u8]) -> ParseResult<MapEntry> {
    let err = || ParseError(format!("unexpected format: {:?}", show(line)));
    // Take the five fixed fields one by one; the path is the rest of the
    // line after the spaces that follow the inode.
    let mut rest = line;
    let mut next = || -> ParseResult<&[u8]> {
        let t = rest.trim_ascii_start();
        let end = t.iter().position(|&c| c == b' ').unwrap_or(t.len());
        if end == 0 {
            return Err(err());
        }
        rest = &t[end..];
        Ok(&t[..end])
    };
    let range = next()?;
    let perms = next()?;
    let offset = next()?;
    let dev = next()?;
    let inode = next()?;
    let path_raw = rest.trim_ascii_start();

    let (start, end) = range.split_once_byte(b'-').ok_or_else(err)?;
    let (start, end) = (
        hex_u64(start).ok_or_else(err)?,
        hex_u64(end).ok_or_else(err)?,
    );
    if end < start {
        return Err(err());
    }
    let [r, w, x, s] = perms else {
        return Err(err());
    };
    let flag = |c: u8, yes: u8| match c {
        b'-' => Ok(false),
        c if c == yes => Ok(true),
        _ => Err(err()),
    };
    let shared = match *s {
        b's' => true,
        b'p' => false,
        _ => return Err(err()),
    };
    let (maj, min) = dev.split_once_byte(b':').ok_or_else(err)?;
    let hex32 = |b: &[u8]| hex_u64(b).and_then(|n| u32::try_from(n).ok());
    let mut path = unescape_maps_path(path_raw);
    let deleted = path.ends_with(DELETED);
    if deleted {
        path.truncate(path.len() - DELETED.len());
    }
    Ok(MapEntry {
        start,
        end,
        read: flag(*r, b'r')?,
        write: flag(*w, b'w')?,
        exec: flag(*x, b'x')?,
        shared,
        offset: hex_u64(offset).ok_or_else(err)?,
        dev_major: hex32(maj).ok_or_else(err)?,
        dev_minor: hex32(min).ok_or_else(err)?,
        inode: dec_u64(inode).ok_or_else(err)?,
        path,
        deleted,
    })
}

trait SplitOnce {
    fn split_once_byte(&self, sep: u8) -> Option<(&[u8], &[u8])>;
}

impl SplitOnce for [u8] {
    fn split_once_byte(&self, sep: u8) -> Option<(&[u8], &[u8])> {
        let i = self.iter().position(|&c| c == sep)?;
        Some((&self[..i], &self[i + 1..]))
    }
}

/// Parse a `maps` file.
pub fn parse_maps(buf: &[u8]) -> ParseResult<Vec<MapEntry>> {
    lines(buf).map(parse_map_line).collect()
}

/// `/proc/PID/maps`, in address order.
pub fn maps(pid: impl Into<Pid>) -> Result<Vec<MapEntry>> {
    let pid = pid.into();
    read_parse(proc_path(pid, "maps"), parse_maps)
}

// ---------------------------------------------------------------------------
// smaps

/// What a checkpoint wants from one mapping of `/proc/PID/smaps`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SmapsEntry {
    /// First address of the mapping.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// `VmFlags:` two-letter flags (`rd wr mr mw me ac sd ...`), in order.
    pub vm_flags: Vec<[u8; 2]>,
    /// `Rss:` in kB.
    pub rss_kb: u64,
    /// `Anonymous:` in kB.
    pub anonymous_kb: u64,
    /// `AnonHugePages:` in kB (transparent huge pages).
    pub anon_huge_pages_kb: u64,
    /// `Swap:` in kB.
    pub swap_kb: u64,
}

impl SmapsEntry {
    /// Whether `VmFlags:` contains `flag` (e.g. `b"dd"`, `b"hg"`, `b"wf"`).
    pub fn has_flag(&self, flag: &[u8; 2]) -> bool {
        self.vm_flags.iter().any(|f| f == flag)
    }
}

fn kb(v: &[u8]) -> Option<u64> {
    dec_u64(v.strip_suffix(b"kB").unwrap_or(v).trim_ascii())
}

/// Parse an `smaps` file: a `maps`-style header line per mapping, followed
/// by `Key: value` lines. Every mapping must have a `VmFlags:` line.
pub fn parse_smaps(buf: &[u8]) -> ParseResult<Vec<SmapsEntry>> {
    let mut out: Vec<SmapsEntry> = Vec::new();
    let mut has_flags: Vec<bool> = Vec::new();
    for line in lines(buf) {
        let first = words(line).next().unwrap_or_default();
        if !first.ends_with(b":") {
            let m = parse_map_line(line)?;
            out.push(SmapsEntry {
                start: m.start,
                end: m.end,
                ..SmapsEntry::default()
            });
            has_flags.push(false);
            continue;
        }
        let Some(cur) = out.last_mut() else {
            return bad(format!("{:?} before any mapping", show(line)));
        };
        let Some((key, v)) = key_value(line) else {
            continue;
        };
        let err = || ParseError(format!("bad {} line: {:?}", show(key), show(v)));
        let slot = match key {
            b"VmFlags" => {
                let mut flags = Vec::new();
                for w in words(v) {
                    match w {
                        [a, b] => flags.push([*a, *b]),
                        _ => return Err(err()),
                    }
                }
                cur.vm_flags = flags;
                *has_flags.last_mut().expect("pushed with out") = true;
                continue;
            }
            b"Rss" => &mut cur.rss_kb,
            b"Anonymous" => &mut cur.anonymous_kb,
            b"AnonHugePages" => &mut cur.anon_huge_pages_kb,
            b"Swap" => &mut cur.swap_kb,
            _ => continue,
        };
        *slot = kb(v).ok_or_else(err)?;
    }
    if let Some(i) = has_flags.iter().position(|h| !h) {
        return bad(format!(
            "mapping {:x}-{:x} has no VmFlags line",
            out[i].start, out[i].end
        ));
    }
    Ok(out)
}

/// `/proc/PID/smaps`. Slower than `maps`: the kernel walks the page tables.
pub fn smaps(pid: impl Into<Pid>) -> Result<Vec<SmapsEntry>> {
    let pid = pid.into();
    read_parse(proc_path(pid, "smaps"), parse_smaps)
}

/// `(start, VmFlags)` of every mapping, from `/proc/PID/smaps`.
pub fn smaps_vmflags(pid: impl Into<Pid>) -> Result<Vec<(u64, Vec<[u8; 2]>)>> {
    let pid = pid.into();
    Ok(smaps(pid)?
        .into_iter()
        .map(|e| (e.start, e.vm_flags))
        .collect())
}

// ---------------------------------------------------------------------------
// fdinfo

/// `/proc/PID/fdinfo/FD`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FdInfo {
    /// `pos:` file offset.
    pub pos: u64,
    /// `flags:` open flags (`O_*`, printed in octal).
    pub flags: u32,
    /// `mnt_id:` id of the mount (see `/proc/PID/mountinfo`).
    pub mnt_id: u32,
    /// `ino:` inode number.
    pub ino: u64,
    /// Every other line, in order, split at its first `:` and trimmed:
    /// `eventfd-count`, `sigmask`, `clockid`, `tfd` (epoll), `inotify wd`,
    /// `fanotify flags`, ... Lines that hold several `key:value` words can be
    /// split further with [`fdinfo_words`].
    pub extra: Vec<(Vec<u8>, Vec<u8>)>,
}

impl FdInfo {
    /// The value of the first extra line with this key.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.extra
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }
}

/// Parse an `fdinfo` file.
pub fn parse_fdinfo(buf: &[u8]) -> ParseResult<FdInfo> {
    let mut fi = FdInfo::default();
    let mut seen = [false; 4];
    for line in lines(buf) {
        if line.trim_ascii().is_empty() {
            continue;
        }
        let Some((key, v)) = key_value(line) else {
            fi.extra.push((line.trim_ascii().to_vec(), Vec::new()));
            continue;
        };
        let err = || ParseError(format!("bad {} line: {:?}", show(key), show(v)));
        let known = match key {
            b"pos" => Some((0, dec_u64(v).map(|n| fi.pos = n))),
            b"flags" => Some((
                1,
                num_radix(v, 8)
                    .and_then(|n| u32::try_from(n).ok())
                    .map(|n| fi.flags = n),
            )),
            b"mnt_id" => Some((2, dec_u32(v).map(|n| fi.mnt_id = n))),
            b"ino" => Some((3, dec_u64(v).map(|n| fi.ino = n))),
            _ => None,
        };
        match known {
            Some((i, Some(()))) if !seen[i] => seen[i] = true,
            // A repeated key belongs to the file type (e.g. epoll's `ino:`
            // words are on their own lines in no kernel, but be lenient).
            Some((_, Some(()))) => fi.extra.push((key.to_vec(), v.to_vec())),
            Some((_, None)) => return Err(err()),
            None => fi.extra.push((key.to_vec(), v.to_vec())),
        }
    }
    const NAMES: [&str; 4] = ["pos", "flags", "mnt_id", "ino"];
    if let Some(i) = seen.iter().position(|s| !s) {
        return bad(format!("no {} line", NAMES[i]));
    }
    Ok(fi)
}

/// `/proc/PID/fdinfo/FD`.
pub fn fdinfo(pid: impl Into<Pid>, fd: impl Into<Fd>) -> Result<FdInfo> {
    let pid = pid.into();
    let fd = fd.into();
    read_parse(proc_path(pid, &format!("fdinfo/{fd}")), parse_fdinfo)
}

/// Split an fdinfo line that holds several `key:value` words, such as
/// epoll's `tfd:        5 events:       19 data:...` or inotify's
/// `inotify wd:1 ino:2b sdev:800001 mask:fff ...`: a word ending in `:`
/// takes the next word as its value, a word containing `:` is split at it,
/// other words are skipped.
pub fn fdinfo_words(line: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut out = Vec::new();
    let mut it = words(line);
    while let Some(w) = it.next() {
        if let Some(key) = w.strip_suffix(b":") {
            out.push((key, it.next().unwrap_or_default()));
        } else if let Some((k, v)) = w.split_once_byte(b':') {
            out.push((k, v));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// timers

/// How a POSIX timer notifies (`sigev_notify` without `SIGEV_THREAD_ID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerNotify {
    /// `SIGEV_SIGNAL`.
    Signal,
    /// `SIGEV_THREAD` (the kernel treats it like a signal; libc runs the
    /// thread).
    Thread,
    /// `SIGEV_NONE`.
    None,
}

/// One POSIX timer from `/proc/PID/timers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosixTimerInfo {
    /// `ID:` the timer id (`timer_t`).
    pub id: i32,
    /// Signal number.
    pub signal: i32,
    /// `sigev_value` (the pointer or integer).
    pub sigval: u64,
    /// How it notifies.
    pub notify: TimerNotify,
    /// `SIGEV_THREAD_ID`: the signal goes to thread `notify_tid` (shown as
    /// `tid.N`; otherwise `pid.N`, the process).
    pub notify_thread_id: bool,
    /// The pid or tid notified, in the reader's pid namespace.
    pub notify_tid: i32,
    /// `ClockID:` the clock (`CLOCK_*`, or a negative CPU-time clock id).
    pub clock: i32,
}

/// Parse a `timers` file: four lines per timer (`ID:`, `signal:`,
/// `notify:`, `ClockID:`).
pub fn parse_timers(buf: &[u8]) -> ParseResult<Vec<PosixTimerInfo>> {
    let all: Vec<&[u8]> = lines(buf).filter(|l| !l.trim_ascii().is_empty()).collect();
    if !all.len().is_multiple_of(4) {
        return bad(format!("{} lines, not a multiple of 4", all.len()));
    }
    let mut out = Vec::with_capacity(all.len() / 4);
    for chunk in all.chunks_exact(4) {
        let field = |i: usize, want: &[u8]| -> ParseResult<&[u8]> {
            match key_value(chunk[i]) {
                Some((k, v)) if k == want => Ok(v),
                _ => bad(format!(
                    "expected a {} line, found {:?}",
                    show(want),
                    show(chunk[i])
                )),
            }
        };
        let id_v = field(0, b"ID")?;
        let sig_v = field(1, b"signal")?;
        let notify_v = field(2, b"notify")?;
        let clock_v = field(3, b"ClockID")?;
        let err = |what: &str, v: &[u8]| ParseError(format!("bad {what} line: {:?}", show(v)));

        let id = dec_i32(id_v).ok_or_else(|| err("ID", id_v))?;
        let (signo, val) = sig_v
            .split_once_byte(b'/')
            .ok_or_else(|| err("signal", sig_v))?;
        let signal = dec_i32(signo).ok_or_else(|| err("signal", sig_v))?;
        let sigval = hex_u64(val).ok_or_else(|| err("signal", sig_v))?;

        let (how, target) = notify_v
            .split_once_byte(b'/')
            .ok_or_else(|| err("notify", notify_v))?;
        let notify = match how {
            b"signal" => TimerNotify::Signal,
            b"thread" => TimerNotify::Thread,
            b"none" => TimerNotify::None,
            _ => return Err(err("notify", notify_v)),
        };
        let (kind, who) = target
            .split_once_byte(b'.')
            .ok_or_else(|| err("notify", notify_v))?;
        let notify_thread_id = match kind {
            b"tid" => true,
            b"pid" => false,
            _ => return Err(err("notify", notify_v)),
        };
        let notify_tid = dec_i32(who).ok_or_else(|| err("notify", notify_v))?;
        let clock = dec_i32(clock_v).ok_or_else(|| err("ClockID", clock_v))?;
        out.push(PosixTimerInfo {
            id,
            signal,
            sigval,
            notify,
            notify_thread_id,
            notify_tid,
            clock,
        });
    }
    Ok(out)
}

/// `/proc/PID/timers`: the process's POSIX timers (not their current value:
/// that needs `timer_gettime` from inside the process).
pub fn timers(pid: impl Into<Pid>) -> Result<Vec<PosixTimerInfo>> {
    let pid = pid.into();
    read_parse(proc_path(pid, "timers"), parse_timers)
}

// ---------------------------------------------------------------------------
// map_files

fn map_files_path(pid: Pid, start: u64, end: u64) -> PathBuf {
    proc_path(pid, &format!("map_files/{start:x}-{end:x}"))
}

/// `(st_dev, st_ino)` of the object behind a file-backed mapping, by
/// `stat(/proc/PID/map_files/START-END)`. Shared anonymous memory has an
/// inode on the internal shmem mount: two mappings with the same pair share
/// the same memory. Private anonymous mappings have no entry (`ENOENT`).
/// Needs `CAP_SYS_ADMIN`.
pub fn map_files_ino(pid: impl Into<Pid>, start: u64, end: u64) -> Result<(u64, u64)> {
    let pid = pid.into();
    let path = map_files_path(pid, start, end);
    let md = std::fs::metadata(&path).map_err(|e| ProcError::io(&path, e))?;
    Ok((md.dev(), md.ino()))
}

/// `readlink /proc/PID/map_files/START-END`: the mapped file's path exactly
/// (no escaping, unlike `maps`), with ` (deleted)` if it was removed.
pub fn map_files_link(pid: impl Into<Pid>, start: u64, end: u64) -> Result<Vec<u8>> {
    let pid = pid.into();
    readlink_bytes(map_files_path(pid, start, end))
}

/// A path given as bytes, for building file names from what `/proc` shows.
pub fn bytes_path(b: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(b))
}

// ---------------------------------------------------------------------------
// Test helpers shared with the pagemap tests.

/// A forked child that sleeps until it is dropped, when it is killed and
/// reaped (also when a test fails and unwinds).
#[cfg(test)]
pub(crate) mod test_child {
    use std::os::fd::{FromRawFd, OwnedFd};

    /// The child's pid; `Drop` kills and reaps it.
    pub(crate) struct Child {
        pub(crate) pid: i32,
    }

    impl Child {
        /// Fork a child that renames itself to `name` (at most 15 bytes),
        /// runs `setup` (which must be async-signal-safe: no allocation,
        /// no locks), reports back, and then sleeps.
        pub(crate) fn spawn(name: &[u8], setup: fn()) -> Child {
            assert!(name.len() < 16);
            let mut cname = [0u8; 16];
            cname[..name.len()].copy_from_slice(name);
            let mut p = [0i32; 2];
            // SAFETY: `p` has room for the two descriptors pipe2 writes.
            assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
            // SAFETY: both descriptors were just created and are owned here.
            let (r, w) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
            // SAFETY: the child only makes async-signal-safe calls (prctl,
            // the caller's setup, write, pause, _exit) before it dies.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                // SAFETY: in the child: plain system calls on valid
                // arguments; the child never returns into Rust code.
                unsafe {
                    libc::prctl(libc::PR_SET_NAME, cname.as_ptr());
                    setup();
                    libc::write(p[1], b"x".as_ptr().cast(), 1);
                    loop {
                        libc::pause();
                    }
                }
            }
            let child = Child { pid };
            drop(w);
            let mut b = [0u8; 1];
            // SAFETY: reading one byte into `b` from the pipe we own.
            let n = unsafe { libc::read(p[0], b.as_mut_ptr().cast(), 1) };
            assert_eq!(n, 1, "child did not start");
            drop(r);
            child
        }
    }

    impl Drop for Child {
        fn drop(&mut self) {
            // SAFETY: signalling and reaping our own child by its pid.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }

    /// A setup that does nothing.
    pub(crate) fn nothing() {}
}

#[cfg(test)]
mod tests {
    use super::test_child::{Child, nothing};
    use super::*;

    fn self_pid() -> i32 {
        std::process::id() as i32
    }

    fn gettid() -> i32 {
        // SAFETY: gettid has no preconditions.
        unsafe { libc::gettid() }
    }

    // -- helpers -------------------------------------------------------------

    #[test]
    fn numbers() {
        assert_eq!(dec_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(dec_u64(b"18446744073709551616"), None);
        assert_eq!(dec_u64(b""), None);
        assert_eq!(dec_u64(b"+1"), None);
        assert_eq!(dec_u64(b" 1"), None);
        assert_eq!(dec_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(dec_i64(b"-"), None);
        assert_eq!(dec_i32(b"-1"), Some(-1));
        assert_eq!(dec_i32(b"2147483648"), None);
        assert_eq!(hex_u64(b"7fffdd1a4000"), Some(0x7fff_dd1a_4000));
        assert_eq!(hex_u64(b"0x10"), None);
        assert_eq!(num_radix(b"0100000", 8), Some(0o100000));
        assert_eq!(num_radix(b"8", 8), None);
    }

    #[test]
    fn lines_and_nul_splitting() {
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(lines(b"a\nb").collect::<Vec<_>>(), [&b"a"[..], b"b"]);
        assert_eq!(
            lines(b"a\n\nb\n").collect::<Vec<_>>(),
            [&b"a"[..], b"", b"b"]
        );
        assert_eq!(split_nul(b"a\0\0b\0"), [&b"a"[..], b"", b"b"]);
        assert_eq!(split_nul(b"a\0b"), [&b"a"[..], b"b"]);
        assert_eq!(split_nul(b"\0"), [&b""[..]]);
        assert!(split_nul(b"").is_empty());
    }

    #[test]
    fn unescaping() {
        assert_eq!(unescape_c(br"a\nb\\c"), b"a\nb\\c");
        assert_eq!(unescape_c(br"\101\t"), b"A\t");
        assert_eq!(unescape_c(br"end\"), b"end\\");
        assert_eq!(unescape_c(br"\q\9"), br"\q\9");
        assert_eq!(unescape_maps_path(br"/tmp/a\012b"), b"/tmp/a\nb");
        assert_eq!(unescape_maps_path(br"/tmp/a\b\01"), br"/tmp/a\b\01");
        assert_eq!(parse_comm(b"a\nb\n"), b"a\nb");
        assert_eq!(parse_comm(b""), b"");
    }

    #[test]
    fn auxv_parsing() {
        let mut buf = Vec::new();
        for (k, v) in [(6u64, 4096u64), (33, 0x7fff_0000), (0, 0), (9, 9)] {
            buf.extend_from_slice(&k.to_ne_bytes());
            buf.extend_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(parse_auxv(&buf).unwrap(), [(6, 4096), (33, 0x7fff_0000)]);
        assert!(parse_auxv(&buf[..20]).is_err());
        assert!(parse_auxv(b"").unwrap().is_empty());
    }

    // -- stat ----------------------------------------------------------------

    const STAT: &[u8] = b"6922 (cat) R 6917 6917 3289 0 -1 4194304 97 0 0 0 0 0 0 0 20 0 1 0 52381 3133440 381 18446744073709551615 94647558574080 94647558593961 140722284526240 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 94647558609968 94647558611584 94648127827968 140722284530388 140722284530408 140722284530408 140722284531691 0\n";

    #[test]
    fn stat_sample() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(s.pid, 6922);
        assert_eq!(s.comm, b"cat");
        assert_eq!(s.state, b'R');
        assert_eq!(
            (s.ppid, s.pgrp, s.session, s.tty_nr, s.tpgid),
            (6917, 6917, 3289, 0, -1)
        );
        assert_eq!(s.flags, 4194304);
        assert_eq!(s.minflt, 97);
        assert_eq!((s.priority, s.nice, s.num_threads), (20, 0, 1));
        assert_eq!(s.start_time, 52381);
        assert_eq!(s.vsize, 3133440);
        assert_eq!(s.rss, 381);
        assert_eq!(s.rsslim, u64::MAX);
        assert_eq!(s.start_code, 94647558574080);
        assert_eq!(s.end_code, 94647558593961);
        assert_eq!(s.start_stack, 140722284526240);
        assert_eq!(s.exit_signal, 17);
        assert_eq!(s.start_data, 94647558609968);
        assert_eq!(s.end_data, 94647558611584);
        assert_eq!(s.start_brk, 94648127827968);
        assert_eq!(s.arg_start, 140722284530388);
        assert_eq!(s.arg_end, 140722284530408);
        assert_eq!(s.env_start, 140722284530408);
        assert_eq!(s.env_end, 140722284531691);
        assert_eq!(s.exit_code, 0);
    }

    fn with_comm(comm: &[u8]) -> Vec<u8> {
        let open = STAT.iter().position(|&c| c == b'(').unwrap();
        let close = STAT.iter().position(|&c| c == b')').unwrap();
        [&STAT[..=open], comm, &STAT[close..]].concat()
    }

    #[test]
    fn stat_hostile_comm() {
        for comm in [
            &b"a) (b c) R 1 2"[..],
            b")",
            b"((",
            b"",
            b" ",
            b"x\ny",
            b"\xff\xfe)",
        ] {
            let s = parse_stat(&with_comm(comm)).unwrap();
            assert_eq!(s.comm, comm, "comm {comm:?}");
            assert_eq!(s.ppid, 6917);
            assert_eq!(s.exit_code, 0);
        }
    }

    #[test]
    fn stat_bad_input_is_an_error() {
        let cut = STAT.len() - 10;
        for bad in [
            &b""[..],
            b"\n",
            b"1 (x",
            b"1 x) R",
            b") 1 (x",
            b"x (cat) R 1",
            &STAT[..cut],
            b"1 (cat) R",
        ] {
            let e = parse_stat(bad).unwrap_err();
            assert!(e.0.starts_with("unexpected format"), "{bad:?}: {e}");
        }
        // A non-numeric field.
        let s = String::from_utf8(STAT.to_vec())
            .unwrap()
            .replace(" 52381 ", " 5x381 ");
        assert!(parse_stat(s.as_bytes()).unwrap_err().0.contains("field 22"));
        // A state of two letters.
        let s = String::from_utf8(STAT.to_vec())
            .unwrap()
            .replace(") R ", ") RR ");
        assert!(parse_stat(s.as_bytes()).is_err());
    }

    // -- status --------------------------------------------------------------

    const STATUS: &[u8] = b"Name:\tcat\nUmask:\t0022\nState:\tR (running)\nTgid:\t5338\nNgid:\t0\nPid:\t5338\nPPid:\t5327\nTracerPid:\t0\nUid:\t0\t1\t2\t3\nGid:\t4\t5\t6\t7\nFDSize:\t256\nGroups:\t \nNStgid:\t5338\t1\nNSpid:\t5338\t1\nNSpgid:\t5327\t0\nNSsid:\t3289\t0\nKthread:\t0\nVmPeak:\t    3060 kB\nThreads:\t1\nSigQ:\t0/96364\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000100\nSigBlk:\t0000000000010000\nSigIgn:\t0000000000001000\nSigCgt:\t0000000180000000\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\nCapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\nSpeculation_Store_Bypass:\tthread vulnerable\nCpus_allowed_list:\t0-1\nvoluntary_ctxt_switches:\t0\n";

    #[test]
    fn status_sample() {
        let s = parse_status(STATUS).unwrap();
        assert_eq!(s.name, b"cat");
        assert_eq!(s.umask, Some(0o022));
        assert_eq!(s.state, b'R');
        assert_eq!((s.tgid, s.pid, s.ppid, s.tracer_pid), (5338, 5338, 5327, 0));
        assert_eq!(s.uid, [0, 1, 2, 3]);
        assert_eq!(s.gid, [4, 5, 6, 7]);
        assert!(s.groups.is_empty());
        assert_eq!(s.ns_tgid, [5338, 1]);
        assert_eq!(s.ns_pid, [5338, 1]);
        assert_eq!(s.ns_pgid, [5327, 0]);
        assert_eq!(s.ns_sid, [3289, 0]);
        assert_eq!(s.threads, 1);
        assert_eq!(s.sig_q, (0, 96364));
        assert_eq!(s.shd_pnd, 0x100);
        assert_eq!(s.sig_blk, 0x10000);
        assert_eq!(s.sig_ign, 0x1000);
        assert_eq!(s.sig_cgt, 0x1_8000_0000);
        assert_eq!(s.cap_prm, 0x1ff_feff_ffff);
        assert!(s.no_new_privs);
        assert_eq!((s.seccomp, s.seccomp_filters), (2, 1));
    }

    fn status_with(from: &str, to: &str) -> Vec<u8> {
        let s = String::from_utf8(STATUS.to_vec()).unwrap();
        assert!(s.contains(from));
        s.replace(from, to).into_bytes()
    }

    #[test]
    fn status_odd_but_valid() {
        // An escaped name with a newline, a backslash, spaces and a colon.
        let s = parse_status(&status_with("Name:\tcat\n", "Name:\t a\\nb\\\\c: \n")).unwrap();
        assert_eq!(s.name, b" a\nb\\c: ");
        // A zombie: no Umask line.
        let s = parse_status(&status_with("Umask:\t0022\n", "")).unwrap();
        assert_eq!(s.umask, None);
        // No seccomp support.
        let s = parse_status(&status_with("Seccomp:\t2\n", "")).unwrap();
        assert_eq!(s.seccomp, 0);
        // Groups.
        let s = parse_status(&status_with("Groups:\t \n", "Groups:\t1 20 300 \n")).unwrap();
        assert_eq!(s.groups, [1, 20, 300]);
        // No trailing newline.
        assert!(parse_status(STATUS.strip_suffix(b"\n").unwrap()).is_ok());
    }

    #[test]
    fn status_bad_input_is_an_error() {
        assert_eq!(parse_status(b"").unwrap_err().0, "no Name line");
        assert!(parse_status(b"\n\n\n").is_err());
        assert!(parse_status(b"garbage").is_err());
        for (from, to, msg) in [
            ("Uid:\t0\t1\t2\t3\n", "", "no Uid line"),
            ("Uid:\t0\t1\t2\t3\n", "Uid:\t0\t1\t2\n", "bad Uid line"),
            ("Tgid:\t5338\n", "Tgid:\t-\n", "bad Tgid line"),
            ("SigQ:\t0/96364\n", "SigQ:\t0\n", "bad SigQ line"),
            (
                "SigBlk:\t0000000000010000\n",
                "SigBlk:\tzz\n",
                "bad SigBlk line",
            ),
            (
                "NoNewPrivs:\t1\n",
                "NoNewPrivs:\t2\n",
                "bad NoNewPrivs line",
            ),
            ("State:\tR (running)\n", "State:\t\n", "bad State line"),
            (
                "CapAmb:\t0000000000000000\n",
                "CapAmb:\t1ffffffffffffffff\n",
                "bad CapAmb",
            ),
        ] {
            let e = parse_status(&status_with(from, to)).unwrap_err();
            assert!(e.0.starts_with(msg), "{from:?} -> {to:?}: {e}");
        }
    }

    // -- maps ----------------------------------------------------------------

    const MAPS: &[u8] = b"\
55571e099000-55571e09b000 r--p 00000000 fe:00 247282                     /usr/bin/head
7f0000000000-7f0000021000 rw-p 00000000 00:00 0 \n\
7f0000100000-7f0000200000 rw-s 00000000 00:01 1034                       /dev/zero (deleted)
7f0000200000-7f0000201000 rw-s 00000000 00:01 1035                       /memfd:my buf (deleted)
7f0000201000-7f0000202000 rw-s 00000000 00:01 98307                      /SYSV0000abcd (deleted)
7f0000202000-7f0000203000 r-xp 00001000 103:1f 12                        /tmp/with space/and\\012newline
7f0000203000-7f0000204000 ---p 00000000 00:00 0                          [anon:guard page]
7f0000204000-7f0000205000 r--s 00000000 00:0f 7                          anon_inode:[io_uring]
7fffdd1a4000-7fffdd1c5000 rw-p 00000000 00:00 0                          [stack]
7fffdd1fb000-7fffdd1ff000 r--p 00000000 00:00 0                          [vvar]
7fffdd1ff000-7fffdd201000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    #[test]
    fn maps_sample() {
        let m = parse_maps(MAPS).unwrap();
        assert_eq!(m.len(), 12);
        let e = &m[0];
        assert_eq!((e.start, e.end), (0x55571e099000, 0x55571e09b000));
        assert!(e.read && !e.write && !e.exec && !e.shared);
        assert_eq!((e.dev_major, e.dev_minor, e.inode), (0xfe, 0, 247282));
        assert_eq!(e.path, b"/usr/bin/head");
        assert!(!e.deleted && e.is_file() && !e.is_special());

        assert_eq!(m[1].path, b"");
        assert!(m[1].write && !m[1].is_file() && !m[1].is_special());
        assert_eq!(m[1].len(), 0x21000);

        assert_eq!(
            (m[2].path.as_slice(), m[2].deleted, m[2].shared),
            (&b"/dev/zero"[..], true, true)
        );
        assert_eq!(
            (m[3].path.as_slice(), m[3].deleted),
            (&b"/memfd:my buf"[..], true)
        );
        assert_eq!(
            (m[4].path.as_slice(), m[4].inode),
            (&b"/SYSV0000abcd"[..], 98307)
        );
        let e = &m[5];
        assert_eq!(e.path, b"/tmp/with space/and\nnewline");
        assert_eq!((e.offset, e.dev_major, e.dev_minor), (0x1000, 0x103, 0x1f));
        assert!(e.exec && !e.deleted);
        assert!(!m[6].read && !m[6].write && !m[6].exec);
        assert_eq!(m[6].path, b"[anon:guard page]");
        assert!(m[6].is_special());
        assert_eq!(m[7].path, b"anon_inode:[io_uring]");
        assert_eq!(m[8].path, b"[stack]");
        assert_eq!(m[11].path, b"[vsyscall]");
        assert_eq!(m[11].start, 0xffffffffff600000);
    }

    #[test]
    fn maps_odd_but_valid() {
        assert!(parse_maps(b"").unwrap().is_empty());
        // The path is everything after the inode's padding.
        let m = parse_maps(b"1000-2000 rw-p 0 0:0 5 /a (deleted) (deleted)").unwrap();
        assert_eq!(m[0].path, b"/a (deleted)");
        assert!(m[0].deleted);
        let m = parse_maps(b"1000-2000 rw-p 0 0:0 5 /x\xff\x01\\").unwrap();
        assert_eq!(m[0].path, b"/x\xff\x01\\");
        let m = parse_maps(b"1000-2000 rw-p 0 0:0 5 \t").unwrap();
        assert_eq!(m[0].path, b"");
    }

    #[test]
    fn maps_bad_input_is_an_error() {
        for bad in [
            &b"\n"[..],
            b"1000-2000",
            b"1000-2000 rw-p 0 0:0",
            b"1000 rw-p 0 0:0 5",
            b"2000-1000 rw-p 0 0:0 5",
            b"1000-2000 rwxq 0 0:0 5",
            b"1000-2000 rw- 0 0:0 5",
            b"1000-2000 wr-p 0 0:0 5",
            b"1000-2000 rw-p 0 00 5",
            b"1000-2000 rw-p 0 0:0 -5",
            b"1000-2000 rw-p 0 100000000:0 5",
            b"1000-1x00 rw-p 0 0:0 5",
            b"10000000000000000-2 rw-p 0 0:0 5",
        ] {
            let e = parse_maps(bad).unwrap_err();
            assert!(e.0.starts_with("unexpected format"), "{bad:?}: {e}");
        }
    }

    // -- smaps ---------------------------------------------------------------

    const SMAPS: &[u8] = b"\
55571e099000-55571e09b000 r--p 00000000 fe:00 247282                     /usr/bin/head
Size:                  8 kB
KernelPageSize:        4 kB
Rss:                   8 kB
Anonymous:             0 kB
AnonHugePages:         0 kB
Swap:                  0 kB
THPeligible:           0
VmFlags: rd mr mw me 
7f0000000000-7f0000400000 rw-p 00000000 00:00 0 
Size:               4096 kB
Rss:                2052 kB
Anonymous:          2052 kB
AnonHugePages:      2048 kB
Swap:                 12 kB
VmFlags: rd wr mr mw me ac sd hg dd
";

    #[test]
    fn smaps_sample() {
        let s = parse_smaps(SMAPS).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].start, 0x55571e099000);
        assert_eq!(s[0].vm_flags, [*b"rd", *b"mr", *b"mw", *b"me"]);
        assert_eq!(s[0].rss_kb, 8);
        assert_eq!((s[1].start, s[1].end), (0x7f0000000000, 0x7f0000400000));
        assert_eq!(
            (s[1].anonymous_kb, s[1].anon_huge_pages_kb, s[1].swap_kb),
            (2052, 2048, 12)
        );
        assert!(s[1].has_flag(b"hg") && s[1].has_flag(b"dd") && !s[1].has_flag(b"ex"));
        assert!(parse_smaps(b"").unwrap().is_empty());
    }

    #[test]
    fn smaps_bad_input_is_an_error() {
        let no_flags = &SMAPS[..SMAPS.len() - b"VmFlags: rd wr mr mw me ac sd hg dd\n".len()];
        assert!(parse_smaps(no_flags).unwrap_err().0.contains("no VmFlags"));
        assert!(
            parse_smaps(b"Rss: 4 kB\n")
                .unwrap_err()
                .0
                .contains("before any mapping")
        );
        assert!(parse_smaps(b"1000-2000 rw-p 0 0:0 0\nVmFlags: rdx\n").is_err());
        assert!(parse_smaps(b"1000-2000 rw-p 0 0:0 0\nRss: many kB\nVmFlags: rd\n").is_err());
        assert!(parse_smaps(b"1000-2000 rw-p 0 0:0 0\n\nVmFlags: rd\n").is_err());
    }

    // -- fdinfo --------------------------------------------------------------

    #[test]
    fn fdinfo_samples() {
        let f = parse_fdinfo(b"pos:\t4096\nflags:\t02102002\nmnt_id:\t24\nino:\t3\n").unwrap();
        assert_eq!((f.pos, f.flags, f.mnt_id, f.ino), (4096, 0o2102002, 24, 3));
        assert!(f.extra.is_empty());

        let f = parse_fdinfo(b"pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1038\neventfd-count:                5\neventfd-id: 1\neventfd-semaphore: 0\n").unwrap();
        assert_eq!(f.get(b"eventfd-count"), Some(&b"5"[..]));
        assert_eq!(f.get(b"eventfd-semaphore"), Some(&b"0"[..]));

        let f = parse_fdinfo(b"pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1038\nclockid: 1\nticks: 0\nsettime flags: 00\nit_value: (0, 0)\nit_interval: (0, 0)\n").unwrap();
        assert_eq!(f.get(b"settime flags"), Some(&b"00"[..]));
        assert_eq!(f.get(b"it_value"), Some(&b"(0, 0)"[..]));

        let f = parse_fdinfo(b"pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1038\ntfd:        5 events:       19 data:                5  pos:0 ino:3494 sdev:f\n").unwrap();
        let (k, v) = &f.extra[0];
        assert_eq!(k, b"tfd");
        let line = [&k[..], b": ", v].concat();
        let w = fdinfo_words(&line);
        assert_eq!(
            w,
            [
                (&b"tfd"[..], &b"5"[..]),
                (b"events", b"19"),
                (b"data", b"5"),
                (b"pos", b"0"),
                (b"ino", b"3494"),
                (b"sdev", b"f")
            ]
        );

        let line = b"inotify wd:1 ino:3c4a7 sdev:fe00000 mask:100 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:a7c4030000000000";
        let mut buf = b"pos:\t0\nflags:\t00\nmnt_id:\t17\nino:\t1038\n".to_vec();
        buf.extend_from_slice(line);
        let f = parse_fdinfo(&buf).unwrap();
        assert_eq!(f.extra[0].0, b"inotify wd");
        let w = fdinfo_words(line);
        assert_eq!(w[0], (&b"wd"[..], &b"1"[..]));
        assert_eq!(w[7], (&b"f_handle"[..], &b"a7c4030000000000"[..]));
        assert!(fdinfo_words(b"").is_empty());
        assert_eq!(fdinfo_words(b"key:"), [(&b"key"[..], &b""[..])]);
    }

    #[test]
    fn fdinfo_bad_input_is_an_error() {
        assert_eq!(parse_fdinfo(b"").unwrap_err().0, "no pos line");
        assert!(
            parse_fdinfo(b"pos:\t0\nmnt_id:\t1\nino:\t1\n")
                .unwrap_err()
                .0
                .contains("flags")
        );
        assert!(
            parse_fdinfo(b"pos:\t0\nflags:\t9\nmnt_id:\t1\nino:\t1\n")
                .unwrap_err()
                .0
                .contains("bad flags")
        );
        assert!(parse_fdinfo(b"pos:\t-1\nflags:\t0\nmnt_id:\t1\nino:\t1\n").is_err());
        assert!(parse_fdinfo(b"pos:\t0\nflags:\t0\nmnt_id:\t1\nino:\t\n").is_err());
    }

    // -- timers, children ----------------------------------------------------

    #[test]
    fn timers_samples() {
        let t = parse_timers(b"ID: 0\nsignal: 14/0000000000000000\nnotify: signal/pid.1234\nClockID: 1\nID: 7\nsignal: 34/00007ffd1234abcd\nnotify: signal/tid.1240\nClockID: -6\nID: 8\nsignal: 0/0000000000000000\nnotify: none/pid.1234\nClockID: 0\nID: 9\nsignal: 12/0000000000000001\nnotify: thread/pid.1234\nClockID: 7\n").unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(
            t[0],
            PosixTimerInfo {
                id: 0,
                signal: 14,
                sigval: 0,
                notify: TimerNotify::Signal,
                notify_thread_id: false,
                notify_tid: 1234,
                clock: 1
            }
        );
        assert_eq!((t[1].id, t[1].signal, t[1].sigval), (7, 34, 0x7ffd1234abcd));
        assert!(t[1].notify_thread_id);
        assert_eq!((t[1].notify_tid, t[1].clock), (1240, -6));
        assert_eq!(t[2].notify, TimerNotify::None);
        assert_eq!(t[3].notify, TimerNotify::Thread);
        assert!(parse_timers(b"").unwrap().is_empty());
    }

    #[test]
    fn timers_bad_input_is_an_error() {
        let good = "ID: 0\nsignal: 14/0000000000000000\nnotify: signal/pid.1234\nClockID: 1\n";
        assert!(parse_timers(b"ID: 0\n").is_err());
        for (from, to) in [
            ("ID: 0", "ID: x"),
            ("ID: 0", "Id: 0"),
            ("14/", "14"),
            ("signal/pid", "sig/pid"),
            ("pid.", "pgid."),
            ("pid.1234", "pid1234"),
            ("ClockID: 1", "ClockID:"),
        ] {
            let s = good.replace(from, to);
            assert!(parse_timers(s.as_bytes()).is_err(), "{s:?}");
        }
    }

    #[test]
    fn children_samples() {
        assert_eq!(parse_children(b"12 345 ").unwrap(), [12, 345]);
        assert!(parse_children(b"").unwrap().is_empty());
        assert!(parse_children(b"12 x").is_err());
    }

    // -- no input makes a parser panic --------------------------------------

    fn parse_all(b: &[u8]) {
        let _ = parse_stat(b);
        let _ = parse_status(b);
        let _ = parse_maps(b);
        let _ = parse_smaps(b);
        let _ = parse_fdinfo(b);
        let _ = parse_timers(b);
        let _ = parse_children(b);
        let _ = parse_auxv(b);
        let _ = fdinfo_words(b);
        let _ = unescape_c(b);
        let _ = unescape_maps_path(b);
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic_on_bytes(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            parse_all(&b);
        }

        #[test]
        fn parsers_never_panic_on_damaged_samples(
            which in 0usize..5,
            cut in 0usize..2000,
            at in 0usize..2000,
            byte in proptest::prelude::any::<u8>(),
        ) {
            let sample = [STAT, STATUS, MAPS, SMAPS, b"pos:\t0\nflags:\t02\nmnt_id:\t1\nino:\t5\ntfd: 5 events: 19\n"][which];
            let mut b = sample[..cut.min(sample.len())].to_vec();
            if !b.is_empty() {
                let i = at % b.len();
                b[i] = byte;
            }
            parse_all(&b);
        }
    }

    // -- live: this process --------------------------------------------------

    #[test]
    fn errors_name_the_file() {
        let e = stat(i32::MAX).unwrap_err();
        assert!(e.is_gone());
        assert!(
            e.to_string()
                .starts_with(&format!("/proc/{}/stat: ", i32::MAX)),
            "{e}"
        );
        let e = ProcError::Format {
            path: "/proc/4242/stat".into(),
            reason: ParseError("unexpected format".into()),
        };
        assert_eq!(e.to_string(), "/proc/4242/stat: unexpected format");
        assert!(!e.is_gone());
    }

    #[test]
    fn live_self() {
        let me = self_pid();
        let st = stat(me).unwrap();
        assert_eq!(st.pid, me);
        assert_eq!(st.comm, comm(me).unwrap());
        assert!(st.num_threads >= 1);
        let ts = task_stat(me, gettid()).unwrap();
        assert_eq!(ts.pid, gettid());

        let s = status(me).unwrap();
        assert_eq!((s.tgid, s.pid), (me, me));
        assert_eq!(s.ppid, st.ppid);
        assert_eq!(s.name, st.comm);
        assert!(s.umask.is_some());
        let ts = task_status(me, gettid()).unwrap();
        assert_eq!((ts.tgid, ts.pid), (me, gettid()));

        let t = tasks(me).unwrap();
        assert_eq!(t[0], me);
        assert!(t.contains(&gettid()));
        assert!(t[1..].windows(2).all(|w| w[0] < w[1]));

        assert_eq!(
            exe(me).unwrap(),
            std::fs::read_link("/proc/self/exe")
                .unwrap()
                .into_os_string()
                .into_vec()
        );
        assert_eq!(
            cwd(me).unwrap(),
            std::env::current_dir().unwrap().into_os_string().into_vec()
        );
        assert_eq!(root(me).unwrap(), b"/");
        let args = cmdline(me).unwrap();
        let args = split_nul(&args);
        assert_eq!(args.len(), std::env::args_os().count());
        assert!(
            split_nul(&environ(me).unwrap())
                .iter()
                .all(|e| e.contains(&b'='))
        );
        let av = parse_auxv(&auxv(me).unwrap()).unwrap();
        assert!(av.contains(&(libc::AT_PAGESZ, 4096)));
    }

    #[test]
    fn live_self_maps_and_smaps() {
        let me = self_pid();
        let local = 0u8;
        let addr = &local as *const u8 as u64;
        let m = maps(me).unwrap();
        assert!(m.windows(2).all(|w| w[0].end <= w[1].start));
        let stack = m.iter().find(|e| e.start <= addr && addr < e.end).unwrap();
        assert!(stack.read && stack.write && !stack.shared);
        assert!(m.iter().any(|e| e.path == b"[vdso]"));
        assert!(m.iter().any(|e| e.path == b"[vsyscall]"));

        // A named, MADV_DONTDUMP mapping shows in smaps.
        let len = 4 * 4096;
        // SAFETY: a fresh anonymous mapping, unmapped below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let name = c"crtools test";
        // SAFETY: madvise and prctl on the mapping we own.
        let named = unsafe {
            assert_eq!(libc::madvise(p, len, libc::MADV_DONTDUMP), 0);
            // Fails with EINVAL without CONFIG_ANON_VMA_NAME.
            libc::prctl(
                libc::PR_SET_VMA,
                libc::PR_SET_VMA_ANON_NAME,
                p as usize,
                len,
                name.as_ptr(),
            ) == 0
        };
        let m = maps(me).unwrap();
        let sm = smaps(me).unwrap();
        let flags = smaps_vmflags(me).unwrap();
        // SAFETY: unmapping the mapping made above.
        unsafe { libc::munmap(p, len) };
        let e = m.iter().find(|e| e.start == p as u64).unwrap();
        if named {
            assert_eq!(e.path, b"[anon:crtools test]");
            assert!(e.is_special());
        } else {
            assert_eq!(e.path, b"");
        }
        let s = sm.iter().find(|e| e.start == p as u64).unwrap();
        assert!(s.has_flag(b"dd") && s.has_flag(b"rd") && s.has_flag(b"wr"));
        assert_eq!(
            flags.iter().find(|f| f.0 == p as u64).unwrap().1,
            s.vm_flags
        );
    }

    #[test]
    fn live_self_fds_and_fdinfo() {
        use std::io::{Seek, Write};
        let me = self_pid();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a file\nwith newline");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"hello").unwrap();
        f.seek(std::io::SeekFrom::Start(3)).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        let all = fds(me).unwrap();
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
        let (_, target) = all.iter().find(|(n, _)| *n == fd).unwrap();
        assert_eq!(target, path.as_os_str().as_bytes());
        let fi = fdinfo(me, fd).unwrap();
        assert_eq!(fi.pos, 3);
        assert_eq!(fi.flags & libc::O_ACCMODE as u32, libc::O_WRONLY as u32);
        assert_ne!(fi.flags & libc::O_APPEND as u32, 0);
        assert_ne!(fi.flags & libc::O_CLOEXEC as u32, 0);
        assert_eq!(fi.ino, std::fs::metadata(&path).unwrap().ino());

        // An eventfd's counter.
        // SAFETY: eventfd has no memory-safety preconditions.
        let efd = unsafe { libc::eventfd(7, libc::EFD_CLOEXEC) };
        assert!(efd >= 0);
        let fi = fdinfo(me, efd);
        // SAFETY: closing the descriptor created above.
        unsafe { libc::close(efd) };
        assert_eq!(fi.unwrap().get(b"eventfd-count"), Some(&b"7"[..]));
        let e = fdinfo(me, efd).unwrap_err();
        assert!(e.is_gone(), "{e}");
    }

    #[test]
    fn live_self_timers() {
        let me = self_pid();
        // SAFETY: a zeroed sigevent is valid; the fields set are plain data.
        let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
        sev.sigev_notify = libc::SIGEV_SIGNAL;
        sev.sigev_signo = libc::SIGURG;
        sev.sigev_value = libc::sigval {
            sival_ptr: 0x1234_5678 as *mut libc::c_void,
        };
        let mut id: libc::timer_t = std::ptr::null_mut();
        // SAFETY: `sev` and `id` are valid for the call; the timer is never
        // armed and is deleted below.
        let rc = unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut id) };
        assert_eq!(rc, 0);
        let t = timers(me);
        // SAFETY: deleting the timer created above.
        unsafe { libc::timer_delete(id) };
        let t = t.unwrap();
        let mine = t.iter().find(|t| t.id as usize == id as usize).unwrap();
        assert_eq!(mine.signal, libc::SIGURG);
        assert_eq!(mine.sigval, 0x1234_5678);
        assert_eq!(mine.notify, TimerNotify::Signal);
        assert!(!mine.notify_thread_id);
        assert_eq!(mine.notify_tid, me);
        assert_eq!(mine.clock, libc::CLOCK_MONOTONIC);
    }

    #[test]
    fn live_map_files_identify_shared_anon() {
        let me = self_pid();
        let len = 2 * 4096;
        // SAFETY: a fresh shared anonymous mapping, unmapped below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let (start, end) = (p as u64, p as u64 + len as u64);
        let ino = map_files_ino(me, start, end);
        let link = map_files_link(me, start, end);
        let m = maps(me).unwrap();
        // SAFETY: unmapping the mapping made above.
        unsafe { libc::munmap(p, len) };
        let (_dev, ino) = ino.unwrap();
        let e = m.iter().find(|e| e.start == start).unwrap();
        assert_eq!(
            (e.path.as_slice(), e.deleted, e.shared),
            (&b"/dev/zero"[..], true, true)
        );
        assert_eq!(e.inode, ino);
        assert_eq!(link.unwrap(), b"/dev/zero (deleted)");
        // Private anonymous memory has no map_files entry.
        let stack = m.iter().find(|e| e.path == b"[stack]").unwrap();
        assert!(
            map_files_ino(me, stack.start, stack.end)
                .unwrap_err()
                .is_gone()
        );
    }

    // -- live: a child -------------------------------------------------------

    #[test]
    fn live_child() {
        let name = b"a) (b c) R 1";
        let child = Child::spawn(name, nothing);
        let me = self_pid();

        // It may still be on its way to sleep.
        let mut st = stat(child.pid).unwrap();
        for _ in 0..200 {
            if st.state == b'S' {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            st = stat(child.pid).unwrap();
        }
        assert_eq!(st.pid, child.pid);
        assert_eq!(st.comm, name);
        assert_eq!(st.ppid, me);
        assert_eq!(st.state, b'S');
        assert_eq!(st.num_threads, 1);
        assert_eq!(comm(child.pid).unwrap(), name);

        let s = status(child.pid).unwrap();
        assert_eq!(s.name, name);
        assert_eq!(
            (s.pid, s.tgid, s.ppid, s.threads),
            (child.pid, child.pid, me, 1)
        );
        assert_eq!(tasks(child.pid).unwrap(), [child.pid]);
        assert!(children(me, gettid()).unwrap().contains(&child.pid));
        assert!(children(child.pid, child.pid).unwrap().is_empty());

        let m = maps(child.pid).unwrap();
        assert!(m.iter().any(|e| e.path == b"[stack]"));
        assert_eq!(m.len(), smaps(child.pid).unwrap().len());
        assert_eq!(exe(child.pid).unwrap(), exe(me).unwrap());
        let f = fds(child.pid).unwrap();
        assert!(!f.is_empty());
        for (fd, _) in &f {
            fdinfo(child.pid, *fd).unwrap();
        }
    }

    #[test]
    fn live_child_with_newline_and_backslash_in_its_name() {
        let name = b"x\ny\\z (deleted)";
        let child = Child::spawn(name, nothing);
        assert_eq!(stat(child.pid).unwrap().comm, name);
        assert_eq!(status(child.pid).unwrap().name, name);
        assert_eq!(comm(child.pid).unwrap(), name);
        let raw = read_file(&proc_path(child.pid.into(), "status")).unwrap();
        assert!(
            raw.starts_with(b"Name:\tx\\ny\\\\z (deleted)\n"),
            "{}",
            show(&raw)
        );
    }

    #[test]
    fn gone_child_is_gone() {
        let pid = Child::spawn(b"short-lived", nothing).pid;
        // Dropped: killed and reaped.
        assert!(stat(pid).unwrap_err().is_gone());
        assert!(maps(pid).unwrap_err().is_gone());
        assert!(tasks(pid).unwrap_err().is_gone());
    }
}
