//! Helpers shared by the binaries: opening input and output (with the
//! terminal checks, large buffers and pipe sizes), exit codes, error
//! messages and small argument parsers. Every image input and output is
//! counted for the progress line ([`crate::progress::Counted`]).
//!
//! Exit codes: 0 success; 1 runtime error, corruption, truncation or a
//! checksum mismatch; 2 usage error (clap exits with 2 itself). A closed
//! output pipe (`EPIPE`; Rust ignores `SIGPIPE`) exits 1 without a message.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use thiserror::Error;

use crate::progress::Counted;

/// Buffer size for image output, and the pipe capacity asked for.
pub const BUF_SIZE: usize = 1 << 20;

/// Buffer size for image input. Smaller than a page record on purpose: a
/// payload read of 1 MiB finds at most this much in the buffer and reads
/// the rest straight into the record's buffer (`BufReader` passes reads at
/// least as large as its buffer through), where a 1 MiB buffer made every
/// byte go through it and be copied again (6% of a 1 GiB restore).
pub const INPUT_BUF_SIZE: usize = 64 << 10;

/// Why input or output could not be opened.
#[derive(Debug, Error)]
pub enum CliError {
    #[error("refusing to write an image to a terminal (use -f to force)")]
    OutputTerminal,
    #[error("refusing to read an image from a terminal (use -f to force)")]
    InputTerminal,
    #[error("{}: {}", path.display(), io_reason(source))]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: is also an input; refusing to write the output over it", .0.display())]
    SameFile(PathBuf),
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

/// Where an image goes: stdout, or a file written under a temporary name
/// in the same directory and renamed into place only by
/// [`Output::commit`]. Dropped without a commit (an error, a panic), it
/// removes its temporary file, and the file named by `-o` keeps what it
/// had. SIGINT, SIGTERM and SIGHUP remove it too (when the program left
/// them at their default action). An existing output is replaced
/// atomically, as `sort -o` and `cp` do; an output that exists and is not
/// a regular file (`/dev/null`, a FIFO) is written in place.
pub struct Output {
    writer: BufWriter<Counted<File>>,
    temp: Option<TempFile>,
}

impl Output {
    /// Opens where an image goes: stdout when `path` is `None` or `-`,
    /// else `path`. Refuses a terminal unless `force`, and a path that is
    /// one of `inputs` (`None` there is stdin): the same file by device
    /// and inode. The writer is buffered ([`BUF_SIZE`]).
    pub fn open(
        path: Option<&Path>,
        force: bool,
        inputs: &[Option<&Path>],
    ) -> Result<Output, CliError> {
        let (file, temp) = if is_stdio(path) {
            // A duplicate of fd 1 as a `File`: `Stdout` is line-buffered and
            // would cut binary data into many small writes.
            let fd = io::stdout()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|source| CliError::Open {
                    path: "stdout".into(),
                    source,
                })?;
            (File::from(fd), None)
        } else {
            let path = path.unwrap_or(Path::new("-"));
            refuse_same_file(path, inputs)?;
            let open_err = |source| CliError::Open {
                path: path.into(),
                source,
            };
            match std::fs::metadata(path) {
                Ok(m) if m.is_dir() => {
                    return Err(open_err(io::Error::from_raw_os_error(libc::EISDIR)));
                }
                Ok(m) if !m.is_file() => (File::create(path).map_err(open_err)?, None),
                _ => {
                    let (file, temp) = TempFile::create(path).map_err(open_err)?;
                    (file, Some(temp))
                }
            }
        };
        if !force && file.is_terminal() {
            return Err(CliError::OutputTerminal);
        }
        grow_pipe(&file);
        Ok(Output {
            writer: BufWriter::with_capacity(BUF_SIZE, Counted::output(file)),
            temp,
        })
    }

    /// Flushes and closes the output; a file output is left under its
    /// temporary name, to be renamed by [`TempFile::commit`] (or removed
    /// when that is dropped). `None` for stdout or a non-regular file.
    pub fn close(self) -> Result<Option<TempFile>, CliError> {
        let Output { writer, temp } = self;
        let name = |temp: &Option<TempFile>| {
            temp.as_ref()
                .map_or_else(|| PathBuf::from("stdout"), |t| t.dest.clone())
        };
        match writer.into_inner() {
            Ok(_file) => Ok(temp),
            Err(e) => Err(CliError::Open {
                path: name(&temp),
                source: e.into_error(),
            }),
        }
    }

    /// Flushes the output and, for a file, renames it into place.
    pub fn commit(self) -> Result<(), CliError> {
        match self.close()? {
            Some(temp) => temp.commit(),
            None => Ok(()),
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writer.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

/// The metadata of `path` (`None` or `-`: stdin), if it exists.
fn metadata_of(path: Option<&Path>) -> Option<std::fs::Metadata> {
    match path {
        Some(p) if !is_stdio(Some(p)) => std::fs::metadata(p).ok(),
        _ => File::from(io::stdin().as_fd().try_clone_to_owned().ok()?)
            .metadata()
            .ok(),
    }
}

/// The device and inode of `path` (`None`: stdin), if it is a file.
fn file_id(path: Option<&Path>) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = metadata_of(path)?;
    m.is_file().then(|| (m.dev(), m.ino()))
}

/// Refuses to write `out` when it is one of `inputs`: the input would be
/// replaced by the output made from it.
pub fn refuse_same_file(out: &Path, inputs: &[Option<&Path>]) -> Result<(), CliError> {
    let Some(id) = file_id(Some(out)) else {
        return Ok(());
    };
    if inputs.iter().any(|&i| file_id(i) == Some(id)) {
        return Err(CliError::SameFile(out.into()));
    }
    Ok(())
}

/// A file being written under a temporary name beside its destination:
/// [`commit`](TempFile::commit) renames it into place; dropped, it is
/// removed.
pub struct TempFile {
    temp: PathBuf,
    dest: PathBuf,
    slot: cleanup::Slot,
}

impl TempFile {
    /// Creates a new, empty temporary file in the directory of `dest`
    /// (of the file it links to, for a symbolic link, so the link stays).
    /// When `dest` exists, the new file gets its permissions.
    pub fn create(dest: &Path) -> io::Result<(File, TempFile)> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let existing = std::fs::metadata(dest).ok();
        let dest = match std::fs::symlink_metadata(dest) {
            Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(dest)?,
            _ => dest.to_path_buf(),
        };
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let base = dest
            .file_name()
            .ok_or_else(|| io::Error::from(io::ErrorKind::IsADirectory))?;
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        loop {
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut name = std::ffi::OsString::from(".");
            name.push(base);
            name.push(format!(".{}.{n}.tmp", std::process::id()));
            let temp = dir.join(name);
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            if let Some(m) = &existing {
                opts.mode(m.permissions().mode() & 0o7777);
            }
            match opts.open(&temp) {
                Ok(file) => {
                    let slot = cleanup::register(&temp);
                    if let Some(m) = &existing {
                        // The mode the file had, whatever the umask; and
                        // its owner, when allowed.
                        use std::os::unix::fs::MetadataExt;
                        let _ = file.set_permissions(m.permissions());
                        let _ = std::os::unix::fs::fchown(&file, Some(m.uid()), Some(m.gid()));
                    }
                    return Ok((file, TempFile { temp, dest, slot }));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Where the file goes.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Renames the file into place, replacing what was there.
    pub fn commit(self) -> Result<(), CliError> {
        std::fs::rename(&self.temp, &self.dest).map_err(|source| CliError::Open {
            path: self.dest.clone(),
            source,
        })?;
        cleanup::unregister(&self.slot);
        std::mem::forget(self);
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        cleanup::unregister(&self.slot);
        let _ = std::fs::remove_file(&self.temp);
    }
}

/// Temporary files to remove if SIGINT, SIGTERM or SIGHUP ends the
/// program: a list the signal handler can walk without locks or
/// allocation. Entries are never freed (a path per output file).
mod cleanup {
    use std::ffi::{CString, c_char};
    use std::path::Path;
    use std::ptr::null_mut;
    use std::sync::Once;
    use std::sync::atomic::{AtomicPtr, Ordering};

    struct Node {
        path: AtomicPtr<c_char>,
        next: *mut Node,
    }

    static HEAD: AtomicPtr<Node> = AtomicPtr::new(null_mut());

    /// An entry of the list; cleared by [`unregister`].
    pub struct Slot(&'static Node);

    // SAFETY: a node is only read through atomics after it is published,
    // and `next` never changes once the node is in the list.
    unsafe impl Send for Slot {}
    // SAFETY: as for Send: shared access goes through the atomic only.
    unsafe impl Sync for Slot {}

    pub fn register(path: &Path) -> Slot {
        install();
        use std::os::unix::ffi::OsStrExt;
        let c = CString::new(path.as_os_str().as_bytes()).unwrap_or_default();
        let ptr = c.into_raw();
        // Reuse a cleared node, or push a new one.
        let mut at = HEAD.load(Ordering::Acquire);
        while !at.is_null() {
            // SAFETY: nodes are leaked, so a published pointer stays valid.
            let node = unsafe { &*at };
            if node
                .path
                .compare_exchange(null_mut(), ptr, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Slot(node);
            }
            at = node.next;
        }
        let node = Box::leak(Box::new(Node {
            path: AtomicPtr::new(ptr),
            next: null_mut(),
        }));
        let mut head = HEAD.load(Ordering::Acquire);
        loop {
            node.next = head;
            match HEAD.compare_exchange(head, node, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Slot(node),
                Err(h) => head = h,
            }
        }
    }

    /// Takes the path out of the list. Its string is leaked: a handler
    /// running at this moment may still be reading it.
    pub fn unregister(slot: &Slot) {
        slot.0.path.store(null_mut(), Ordering::Release);
    }

    extern "C" fn on_signal(sig: libc::c_int) {
        let mut at = HEAD.load(Ordering::Acquire);
        while !at.is_null() {
            // SAFETY: nodes and their strings are never freed; unlink,
            // signal and raise are async-signal-safe.
            unsafe {
                let p = (*at).path.load(Ordering::Acquire);
                if !p.is_null() {
                    libc::unlink(p);
                }
                at = (*at).next;
            }
        }
        // SAFETY: back to the default action, then die of the signal.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }

    /// Installs the handler for each of SIGINT, SIGTERM and SIGHUP that is
    /// at its default action (a program with its own handlers, like ckpt's
    /// worker, removes its files on the error path instead).
    fn install() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                // SAFETY: sigaction reads and writes the given structs only;
                // the handler is async-signal-safe.
                unsafe {
                    let mut old: libc::sigaction = std::mem::zeroed();
                    if libc::sigaction(sig, std::ptr::null(), &mut old) != 0
                        || old.sa_sigaction != libc::SIG_DFL
                    {
                        continue;
                    }
                    let mut act: libc::sigaction = std::mem::zeroed();
                    act.sa_sigaction = on_signal as *const () as libc::sighandler_t;
                    libc::sigemptyset(&mut act.sa_mask);
                    libc::sigaction(sig, &act, std::ptr::null_mut());
                }
            }
        });
    }
}

/// Opens where an image comes from: stdin when `path` is `None` or `-`,
/// else `path`. Refuses a terminal unless `force`. Buffered
/// ([`INPUT_BUF_SIZE`]); a pipe is asked for [`BUF_SIZE`].
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
        let open_err = |source| CliError::Open {
            path: path.into(),
            source,
        };
        let file = File::open(path).map_err(open_err)?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(open_err(io::Error::from_raw_os_error(libc::EISDIR)));
        }
        file
    };
    if !force && file.is_terminal() {
        return Err(CliError::InputTerminal);
    }
    grow_pipe(&file);
    Ok(Box::new(BufReader::with_capacity(
        INPUT_BUF_SIZE,
        Counted::input(file),
    )))
}

/// The size of an input (`None` or `-`: stdin) when it is a regular file.
pub fn input_len(path: Option<&Path>) -> Option<u64> {
    let m = metadata_of(path)?;
    m.is_file().then_some(m.len())
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

/// An I/O error's reason as a user reads it: "No such file or
/// directory", without Rust's " (os error 2)".
pub fn io_reason(e: &io::Error) -> String {
    strip_os_error(&e.to_string())
}

/// `s` without any " (os error N)" that Rust adds to system errors.
pub fn strip_os_error(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(" (os error ") {
        let tail = &rest[i + " (os error ".len()..];
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && tail[digits..].starts_with(')') {
            out.push_str(&rest[..i]);
            rest = &tail[digits + 1..];
        } else {
            out.push_str(&rest[..i + 1]);
            rest = &rest[i + 1..];
        }
    }
    out.push_str(rest);
    out
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
        let msg = strip_os_error(&cause.to_string());
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

/// The most worker threads `-T` accepts.
pub const MAX_THREADS: usize = crate::filters::pipeline::MAX_THREADS;

/// Worker threads for `-T N`: `0` means one per core (at most
/// [`MAX_THREADS`]).
pub fn threads(n: usize) -> usize {
    if n == 0 { cores() } else { n }.min(MAX_THREADS)
}

/// Parses `-T N` for clap: 0 (one per core) to [`MAX_THREADS`].
pub fn parse_threads(s: &str) -> Result<usize, String> {
    parse_in_range(s, 0, MAX_THREADS as i64, "threads").map(|n| n as usize)
}

/// Parses an integer for clap, saying the valid range when it is not in
/// it: `what` names the values ("threads", "levels").
pub fn parse_in_range(s: &str, min: i64, max: i64, what: &str) -> Result<i64, String> {
    let t = s.trim();
    let n: i64 = match t.parse::<i128>() {
        Ok(n) => n.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
        Err(_) => return Err(format!("{s:?} is not a number ({what}: {min} to {max})")),
    };
    if n < min || n > max {
        return Err(format!("{t} is out of range ({what}: {min} to {max})"));
    }
    Ok(n)
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
        let e = anyhow::Error::from(io::Error::from_raw_os_error(libc::ENOENT)).context("x.img");
        assert_eq!(error_line(&e), "x.img: No such file or directory");
        assert_eq!(
            strip_os_error("a (os error x) b (os error 12)"),
            "a (os error x) b"
        );
    }
}
