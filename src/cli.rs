//! Helpers shared by the binaries: opening input and output (with the
//! terminal checks, large buffers and pipe sizes), exit codes, error
//! messages, progress on stderr, and small argument parsers.
//!
//! Exit codes: 0 success; 1 runtime error, corruption, truncation or a
//! checksum mismatch; 2 usage error (clap exits with 2 itself). A closed
//! output pipe (`EPIPE`; Rust ignores `SIGPIPE`) exits 1 without a message.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use thiserror::Error;

/// Buffer size for image input and output, and the pipe capacity asked for.
pub const BUF_SIZE: usize = 1 << 20;

/// Why input or output could not be opened.
#[derive(Debug, Error)]
pub enum CliError {
    #[error("refusing to write an image to a terminal (use -f to force)")]
    OutputTerminal,
    #[error("refusing to read an image from a terminal (use -f to force)")]
    InputTerminal,
    #[error("{}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid size {0:?} (expected a number with an optional K, M or G suffix)")]
    Size(String),
}

fn is_stdio(path: Option<&Path>) -> bool {
    path.is_none_or(|p| p.as_os_str() == "-")
}

/// Raises a pipe's capacity so a filter moves a record per system call.
/// Not a pipe, or not allowed: nothing happens.
fn grow_pipe(fd: &impl AsFd) {
    let _ = nix::fcntl::fcntl(
        fd.as_fd().as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(BUF_SIZE as libc::c_int),
    );
}

/// Opens where an image goes: stdout when `path` is `None` or `-`, else
/// `path` (created or truncated). Refuses a terminal unless `force`.
/// The writer is buffered ([`BUF_SIZE`]); callers must flush it.
pub fn output(path: Option<&Path>, force: bool) -> Result<Box<dyn Write + Send>, CliError> {
    let file = if is_stdio(path) {
        // A duplicate of fd 1 as a `File`: `Stdout` is line-buffered and
        // would cut binary data into many small writes.
        let fd = io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|source| CliError::Open {
                path: "stdout".into(),
                source,
            })?;
        File::from(fd)
    } else {
        let path = path.unwrap_or(Path::new("-"));
        File::create(path).map_err(|source| CliError::Open {
            path: path.into(),
            source,
        })?
    };
    if !force && file.is_terminal() {
        return Err(CliError::OutputTerminal);
    }
    grow_pipe(&file);
    Ok(Box::new(BufWriter::with_capacity(BUF_SIZE, file)))
}

/// Opens where an image comes from: stdin when `path` is `None` or `-`,
/// else `path`. Refuses a terminal unless `force`. Buffered.
pub fn input(path: Option<&Path>, force: bool) -> Result<Box<dyn Read + Send>, CliError> {
    let file = if is_stdio(path) {
        let fd = io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|source| CliError::Open {
                path: "stdin".into(),
                source,
            })?;
        File::from(fd)
    } else {
        let path = path.unwrap_or(Path::new("-"));
        File::open(path).map_err(|source| CliError::Open {
            path: path.into(),
            source,
        })?
    };
    if !force && file.is_terminal() {
        return Err(CliError::InputTerminal);
    }
    grow_pipe(&file);
    Ok(Box::new(BufReader::with_capacity(BUF_SIZE, file)))
}

/// Reads a key file for keyed digests: its whole contents are the HMAC
/// key. An empty file is refused (it would be no secret at all).
pub fn read_key(path: &Path) -> anyhow::Result<crate::image::Key> {
    let bytes = std::fs::read(path).map_err(|source| CliError::Open {
        path: path.into(),
        source,
    })?;
    if bytes.is_empty() {
        anyhow::bail!("{}: the key file is empty", path.display());
    }
    Ok(crate::image::Key::new(&bytes))
}

/// Whether an error, anywhere in its chain, is a closed output pipe.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            || e.downcast_ref::<crate::image::ImageError>()
                .is_some_and(|e| e.is_broken_pipe())
            || e.downcast_ref::<crate::Error>()
                .is_some_and(|e| e.is_broken_pipe())
    })
}

/// An error and its causes on one line, joined by `": "`. A cause whose
/// text the previous message already ends with is not repeated.
pub fn error_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let msg = cause.to_string();
        if msg.is_empty() || line.ends_with(&msg) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&msg);
    }
    line.replace('\n', " ")
}

/// Runs a binary's body and turns its result into an exit status: 0 on
/// success; on error one line `NAME: message` on stderr and status 1; a
/// broken pipe exits 1 quietly.
pub fn run(name: &str, body: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    keep_freed_memory();
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::from(1),
        Err(e) => {
            // Not eprintln!: a closed stderr must not panic either.
            let _ = writeln!(io::stderr(), "{name}: {}", error_line(&e));
            ExitCode::from(1)
        }
    }
}

/// Filters allocate and free a megabyte per record. glibc would hand such
/// blocks back to the kernel on every free (mmap, or trimming the heap),
/// and the next record would pay a page fault per page: with these limits
/// freed records stay in the heap for the next ones.
fn keep_freed_memory() {
    crate::sys::process::malloc_thresholds(64 << 20, 256 << 20);
}

/// Worker threads for `-T N`: `0` means one per core.
pub fn threads(n: usize) -> usize {
    if n == 0 { cores() } else { n }
}

/// Cores this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Parses a size such as `4096`, `64K`, `1M`, `2G` (powers of 1024; a
/// trailing `B` or `iB` is accepted).
pub fn parse_size(s: &str) -> Result<u64, CliError> {
    let bad = || CliError::Size(s.to_string());
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, shift) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 10),
        Some('M') => (&t[..t.len() - 1], 20),
        Some('G') => (&t[..t.len() - 1], 30),
        Some('T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    n.checked_mul(1u64 << shift).ok_or_else(bad)
}

/// Progress on stderr: shown only when stderr is a terminal and not
/// silenced, at most a few times a second, erased when done.
pub struct Progress {
    name: &'static str,
    enabled: bool,
    last: Instant,
    shown: bool,
}

impl Progress {
    pub fn new(name: &'static str, quiet: bool) -> Self {
        Progress {
            name,
            enabled: !quiet && io::stderr().is_terminal(),
            last: Instant::now(),
            shown: false,
        }
    }
    /// Shows the byte counts so far.
    pub fn update(&mut self, bytes_in: u64, bytes_out: u64) {
        if !self.enabled || self.last.elapsed() < Duration::from_millis(250) {
            return;
        }
        self.last = Instant::now();
        self.shown = true;
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        let _ = write!(
            io::stderr(),
            "\r{}: {:.1} MiB in, {:.1} MiB out ",
            self.name,
            mib(bytes_in),
            mib(bytes_out)
        );
    }
    /// Erases the progress line.
    pub fn finish(&mut self) {
        if self.shown {
            let _ = write!(io::stderr(), "\r\x1b[K");
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64K").unwrap(), 64 << 10);
        assert_eq!(parse_size("1m").unwrap(), 1 << 20);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert!(parse_size("").is_err());
        assert!(parse_size("x").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn error_lines_join_and_dedupe() {
        let io = io::Error::new(io::ErrorKind::UnexpectedEof, "short read");
        let e = anyhow::Error::from(crate::image::ImageError::Io(io)).context("reading x.img");
        assert_eq!(error_line(&e), "reading x.img: short read");
        let pipe = io::Error::from(io::ErrorKind::BrokenPipe);
        let e = anyhow::Error::from(crate::image::ImageError::Io(pipe)).context("writing");
        assert!(is_broken_pipe(&e));
    }
}
