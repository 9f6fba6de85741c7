//! `cr-restart`: restore a process tree from an image on stdin.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use crtools::cli;
use crtools::completions::{Common, InputFile};
use crtools::image::{KeyCheck, Reader};
use crtools::progress::{self, Display, Show};
use crtools::restart::{self, FdSource};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;

/// Restore the process tree whose image is on standard input (or FILE) and
/// resume it. By default every process gets its original pid, and
/// cr-restart stays in the foreground, forwards SIGINT, SIGTERM and SIGHUP
/// to the restored root, waits for it and exits with its status (128+N if
/// it was killed by signal N). Compressed and checksummed images are read
/// directly. Restore is all or nothing.
#[derive(Parser)]
#[command(name = "cr-restart", version, about)]
struct Args {
    #[command(flatten)]
    file: InputFile,
    /// Read the image from FILE (the same as the positional FILE).
    #[arg(short, long, value_name = "FILE", conflicts_with = "file")]
    input: Option<PathBuf>,
    /// Give the restored processes new pids instead of their original ones.
    #[arg(long, conflicts_with = "pidns")]
    no_pids: bool,
    /// Restore inside a new pid namespace, under a minimal init that reaps
    /// orphans, so the original pids never collide with running processes.
    #[arg(long)]
    pidns: bool,
    /// Exit as soon as the restored tree runs. Descriptors that led outside
    /// the image go to /dev/null (unless --fd names them), so nothing
    /// restored keeps cr-restart's standard input, output or error open.
    #[arg(short, long)]
    detach: bool,
    /// Become the restored process instead of creating it: cr-restart's
    /// own pid, session and group are kept (like exec). Only for images of
    /// a single, single-threaded process.
    #[arg(long, conflicts_with_all = ["pidns", "detach", "no_pids"])]
    in_place: bool,
    /// Write the restored root's pid to FILE.
    #[arg(long, value_name = "FILE")]
    pidfile: Option<PathBuf>,
    /// Reconnect descriptor N of the restored process that led outside the
    /// image: SPEC is a path, or fd:M for descriptor M of cr-restart.
    /// Without it such a descriptor becomes cr-restart's own (stdin for a
    /// read-only one, else stdout; 0, 1, 2 keep their number), or
    /// /dev/null with --detach.
    #[arg(long = "fd", value_name = "N=SPEC", value_parser = parse_fd)]
    fds: Vec<(u32, FdSource)>,
    /// Look for the image's file PATH (or the files under directory PATH)
    /// at NEWPATH on this host; may be repeated.
    #[arg(long, value_name = "PATH=NEWPATH", value_parser = parse_remap)]
    remap: Vec<(PathBuf, PathBuf)>,
    /// How long to wait for a pid still held by an exiting process.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pid_wait: u64,
    /// Restore only an image authenticated with this key: every record and
    /// the end record must carry an HMAC-SHA-256 digest keyed with the
    /// bytes of FILE (made by cr-sum --key FILE). Anything else is refused,
    /// an unkeyed header before anything is created.
    #[arg(long, value_name = "FILE")]
    require_key: Option<PathBuf>,
    /// Restore the established TCP connections the image holds (made by
    /// ckpt --tcp-established), with TCP_REPAIR: each gets its addresses,
    /// sequence numbers, windows, options and queued data back. Without
    /// it such an image is refused.
    #[arg(long)]
    tcp_established: bool,
    #[command(flatten)]
    common: Common,
}

fn parse_remap(s: &str) -> Result<(PathBuf, PathBuf), String> {
    match s.split_once('=') {
        Some((a, b)) if a.starts_with('/') && !b.is_empty() => {
            Ok((PathBuf::from(a), PathBuf::from(b)))
        }
        _ => Err("expected PATH=NEWPATH, PATH absolute".into()),
    }
}

fn parse_fd(s: &str) -> Result<(u32, FdSource), String> {
    let (n, spec) = s
        .split_once('=')
        .ok_or_else(|| "expected N=SPEC".to_string())?;
    let n: u32 = n
        .parse()
        .map_err(|_| format!("{n} is not a descriptor number"))?;
    let src = match spec.strip_prefix("fd:") {
        Some(m) => FdSource::Inherit(
            m.parse()
                .map_err(|_| format!("{m} is not a descriptor number"))?,
        ),
        None if spec.is_empty() => return Err("empty path".into()),
        None => FdSource::Path(PathBuf::from(spec)),
    };
    Ok((n, src))
}

/// The pid file, made in two steps so that a restore is all or nothing:
/// a temporary file beside it is created before anything is restored (a
/// path that cannot be written fails the restore before it starts), and
/// renamed into place once the pid is known.
struct PidFile {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
}

impl PidFile {
    fn create(path: &Path) -> anyhow::Result<PidFile> {
        let name = path.file_name().with_context(|| {
            format!("cannot write the pid file {}: no file name", path.display())
        })?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("cannot write the pid file {}", path.display()))?;
        Ok(PidFile {
            path: path.to_path_buf(),
            tmp,
            file: Some(file),
        })
    }

    /// Writes `pid` and renames the file into place.
    fn commit(mut self, pid: i32) -> anyhow::Result<()> {
        let mut f = self.file.take().expect("pid file open");
        f.write_all(format!("{pid}\n").as_bytes())
            .and_then(|()| std::fs::rename(&self.tmp, &self.path))
            .with_context(|| format!("cannot write the pid file {}", self.path.display()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Not committed (or the rename failed): leave nothing behind.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Kills a restored tree whose restore cannot be completed, and reaps the
/// process cr-restart waits for.
fn kill_restored(r: &restart::Restored) {
    for &pid in std::iter::once(&r.wait_pid).chain(r.pids.values()) {
        let _ = kill(pid.nix(), Signal::SIGKILL);
    }
    let _ = waitpid(r.wait_pid.nix(), None);
}

fn main() -> ExitCode {
    let args: Args = crtools::completions::parse();
    // Our other threads (progress) never fork: the tree may be forked
    // without a copy of our heap.
    crtools::sys::arena::others_never_fork();
    let mut restored = None;
    let code = cli::run("cr-restart", || {
        let key = args.require_key.as_deref().map(cli::read_key).transpose()?;
        let path = args.file.path().or(args.input.as_deref());
        let input = cli::input(path, args.common.force)?;
        let require = key.is_some();
        let reader = Reader::with_key(input, KeyCheck { key, require })?;
        let opts = restart::Options {
            original_pids: !args.no_pids,
            fd_map: args.fds.clone(),
            pid_wait: Duration::from_secs(args.pid_wait),
            pidns: args.pidns,
            detach: args.detach,
            remap: args.remap.clone(),
            terminal_job: !args.detach,
            image_on_stdin: path.is_none(),
            tcp_established: args.tcp_established,
        };
        for (n, src) in &args.fds {
            if let FdSource::Inherit(m) = src
                && nix::fcntl::fcntl(*m, nix::fcntl::FcntlArg::F_GETFD).is_err()
            {
                bail!("--fd {n}=fd:{m}: cr-restart has no descriptor {m}");
            }
        }
        let pidfile = args.pidfile.as_deref().map(PidFile::create).transpose()?;
        if args.in_place {
            if let Some(p) = pidfile {
                p.commit(std::process::id() as i32)?;
            }
            // Returns only on failure; then nothing was changed.
            let e = match restart::inplace::restore_in_place(reader, &opts) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            if let Some(p) = &args.pidfile {
                let _ = std::fs::remove_file(p);
            }
            return Err(e.into());
        }
        let total = cli::input_len(path);
        let mut display = Display::start("cr-restart", Show::Read { total }, args.common.when());
        let mut r = restart::restore(reader, &opts)?;
        display.finish();
        eprint!("{}", progress::profile_report());
        if r.pid.as_raw() <= 0 {
            bail!("restore returned no process");
        }
        if let Some(p) = pidfile
            && let Err(e) = p.commit(r.pid.as_raw())
        {
            kill_restored(&r);
            bail!(
                "{}; the restored tree (root pid {}) was killed",
                cli::error_line(&e),
                r.pid
            );
        }
        restored = Some((r.wait_pid, r.pid, r.terminal.take()));
        if args.common.summary() {
            let (bytes, took) = (progress::bytes_in(), display.elapsed());
            let placed = progress::bytes_placed();
            let kept = progress::bytes_kept();
            display.summary(&format!(
                "{} restored from {} in {} ({}), root pid {}{}{}{}",
                progress::count(r.pids.len() as u64, "process", "processes"),
                progress::size(bytes),
                progress::secs(took),
                progress::rate(bytes, took),
                r.pid,
                if placed > 0 {
                    format!(
                        "; {} of pages placed by UFFDIO_COPY",
                        progress::size(placed)
                    )
                } else {
                    String::new()
                },
                if kept > 0 {
                    format!(
                        "; {} of pre-copied pages kept in place",
                        progress::size(kept)
                    )
                } else {
                    String::new()
                },
                match progress::since_rounds_end() {
                    Some(d) => format!(
                        "; {:.0} ms from the end of the pre-copy rounds to the release",
                        d.as_secs_f64() * 1e3
                    ),
                    None => String::new(),
                }
            ));
        }
        Ok(())
    });
    match restored {
        Some((wait, root, term)) if !args.detach => {
            ExitCode::from(restart::job::wait_job(wait, root, true, term).clamp(0, 255) as u8)
        }
        _ => code,
    }
}
