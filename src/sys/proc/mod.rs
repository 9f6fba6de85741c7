//! Readers for the `/proc/PID/...` files the checkpointer needs.
//!
//! Every file has a pure parser over `&[u8]` (`parse_*`, unit-tested with
//! literal samples, including hostile ones) and a thin function that reads the
//! file of a given pid (or thread) and names the file in any error. Parsing is
//! done on bytes, never on `str`: paths and command names need not be UTF-8.
//!
//! One file per family: `stat`, `status`, `maps` (with
//! `map_files`), `smaps`, `fdinfo`, `timers`, `dirs` (`task/`, `children`,
//! `fd/`, the `exe`/`cwd`/`root` links) and `raw` (`cmdline`, `environ`,
//! `auxv`, `comm`), each with its tests; the byte-level helpers they share
//! are here. Everything is re-exported flat: `proc::stat`, `proc::parse_maps`.
//! The parsers are fuzzed by `fuzz/fuzz_targets/proc_parsers.rs`.
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
fn lines(buf: &[u8]) -> Lines<'_> {
    Lines {
        rest: (!buf.is_empty()).then(|| buf.strip_suffix(b"\n").unwrap_or(buf)),
    }
}

/// The iterator of [`lines`]: `\n` found eight bytes at a time (a byte
/// at a time, splitting was most of the time `smaps` took to parse).
struct Lines<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let r = self.rest?;
        match find_byte(r, b'\n') {
            Some(i) => {
                self.rest = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                self.rest = None;
                Some(r)
            }
        }
    }
}

/// Where `b` first occurs in `hay`, looked for eight bytes at a time: in
/// `v`, the word XOR eight copies of `b`, `(v - 0x01..01) & !v & 0x80..80`
/// has its lowest set bit in the first zero byte (a borrow only runs
/// upwards, past that byte).
fn find_byte(hay: &[u8], b: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pat = LO * u64::from(b);
    let mut chunks = hay.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        let v = u64::from_le_bytes(c.try_into().expect("8 bytes")) ^ pat;
        let z = v.wrapping_sub(LO) & !v & HI;
        if z != 0 {
            return Some(at + (z.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&c| c == b)
        .map(|i| at + i)
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
    with_contents(path, |b| b.to_vec())
}

/// Read and parse a file, naming it in any error.
fn read_parse<T>(path: PathBuf, parse: impl FnOnce(&[u8]) -> ParseResult<T>) -> Result<T> {
    with_contents(&path, parse)?.map_err(|reason| ProcError::Format { path, reason })
}

/// The first size of the buffer `/proc` files are read into (it grows
/// when a file is larger, and stays grown for the thread's next files).
const READ_BUF: usize = 64 << 10;

thread_local! {
    static BUF: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Reads the whole file at `path` into a buffer of this thread's and hands
/// its contents to `f`. `/proc` files have no size to ask for beforehand
/// (`std::fs::read` asks, then reads 32 bytes, 32, 64, ... up to the
/// end); one large read and the one that says the end is reached are all
/// most of them take.
fn with_contents<T>(path: &Path, f: impl FnOnce(&[u8]) -> T) -> Result<T> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| ProcError::io(path, e))?;
    let mut buf = BUF.take();
    if buf.len() < READ_BUF {
        buf.resize(READ_BUF, 0);
    }
    let mut len = 0;
    let res = loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match file.read(&mut buf[len..]) {
            Ok(0) => break Ok(f(&buf[..len])),
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(ProcError::io(path, e)),
        }
    };
    BUF.set(buf);
    res
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

/// Splitting a byte string at the first `sep`.
trait SplitOnce {
    fn split_once_byte(&self, sep: u8) -> Option<(&[u8], &[u8])>;
}

impl SplitOnce for [u8] {
    fn split_once_byte(&self, sep: u8) -> Option<(&[u8], &[u8])> {
        let i = self.iter().position(|&c| c == sep)?;
        Some((&self[..i], &self[i + 1..]))
    }
}

mod dirs;
mod fdinfo;
#[cfg(test)]
mod live_tests;
mod maps;
mod mountinfo;
mod raw;
#[doc(hidden)]
pub mod samples;
mod smaps;
mod stat;
mod status;
#[cfg(test)]
pub(crate) mod test_child;
mod timers;

pub use dirs::*;
pub use fdinfo::*;
pub use maps::*;
pub use mountinfo::*;
pub use raw::*;
pub use smaps::*;
pub use stat::*;
pub use status::*;
pub use timers::*;

/// The target of a symbolic link, as raw bytes.
pub fn readlink_bytes(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    std::fs::read_link(path)
        .map(|p| p.into_os_string().into_vec())
        .map_err(|e| ProcError::io(path, e))
}

/// A path given as bytes, for building file names from what `/proc` shows.
pub fn bytes_path(b: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use samples::*;

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
    fn finding_bytes() {
        let hay: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37) | 1).collect();
        for at in 0..hay.len() {
            for b in [0u8, b'\n', 0x80, 0xff, 1] {
                let mut h = hay.clone();
                h[at] = b;
                let want = h.iter().position(|&c| c == b);
                assert_eq!(find_byte(&h, b), want, "{b:#x} at {at}");
                assert_eq!(find_byte(&h[at..], b), Some(0));
            }
        }
        assert_eq!(find_byte(b"", b'a'), None);
        assert_eq!(
            find_byte(b"\x01\x00\x01\x00\x01\x00\x01\x00\x01", 0),
            Some(1)
        );
        assert_eq!(
            find_byte(&[0x0a, 0x0b, 0, 0, 0, 0, 0, 0, 0x0a], 0x0b),
            Some(1)
        );
    }

    #[test]
    fn lines_and_nul_splitting() {
        assert_eq!(lines(b"\n").collect::<Vec<_>>(), [&b""[..]]);
        assert_eq!(lines(b"a\n\n").collect::<Vec<_>>(), [&b"a"[..], b""]);
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
            which in 0usize..6,
            cut in 0usize..2000,
            at in 0usize..2000,
            byte in proptest::prelude::any::<u8>(),
        ) {
            let sample = [STAT, STATUS, MAPS, SMAPS, FDINFO, TIMERS][which];
            let mut b = sample[..cut.min(sample.len())].to_vec();
            if !b.is_empty() {
                let i = at % b.len();
                b[i] = byte;
            }
            parse_all(&b);
        }
    }
}
