//! `cr-restart`: restore a process tree from an image on stdin.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use crtools::cli;
use crtools::image::{KeyCheck, Reader};
use crtools::restart::{self, FdSource};

/// Restore the process tree whose image is on standard input (or FILE) and
/// resume it. By default every process gets its original pid, and
/// cr-restart stays in the foreground, forwards SIGINT, SIGTERM and SIGHUP
/// to the restored root, waits for it and exits with its status (128+N if
/// it was killed by signal N). Compressed and checksummed images are read
/// directly. Restore is all or nothing.
#[derive(Parser)]
#[command(name = "cr-restart", version, about)]
struct Args {
    /// Read the image from FILE instead of standard input.
    #[arg(short, long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Give the restored processes new pids instead of their original ones.
    #[arg(long)]
    no_pids: bool,
    /// Restore inside a new pid namespace, under a minimal init that reaps
    /// orphans, so the original pids never collide with running processes.
    #[arg(long)]
    pidns: bool,
    /// Exit as soon as the restored tree runs.
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
    #[arg(long = "fd", value_name = "N=SPEC", value_parser = parse_fd)]
    fds: Vec<(u32, FdSource)>,
    /// How long to wait for a pid still held by an exiting process.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pid_wait: u64,
    /// Restore only an image authenticated with this key: every record and
    /// the end record must carry an HMAC-SHA-256 digest keyed with the
    /// bytes of FILE (made by cr-sum --key FILE). Anything else is refused,
    /// an unkeyed header before anything is created.
    #[arg(long, value_name = "FILE")]
    require_key: Option<PathBuf>,
    /// Read an image even if standard input is a terminal.
    #[arg(short, long)]
    force: bool,
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

fn main() -> ExitCode {
    let args = Args::parse();
    let mut restored = None;
    let code = cli::run("cr-restart", || {
        let key = args.require_key.as_deref().map(cli::read_key).transpose()?;
        let input = cli::input(args.input.as_deref(), args.force)?;
        let require = key.is_some();
        let reader = Reader::with_key(input, KeyCheck { key, require })?;
        let opts = restart::Options {
            original_pids: !args.no_pids || args.pidns,
            fd_map: args.fds.clone(),
            pid_wait: Duration::from_secs(args.pid_wait),
            pidns: args.pidns,
        };
        if args.in_place {
            if let Some(p) = &args.pidfile {
                let me = std::process::id();
                std::fs::write(p, format!("{me}\n"))
                    .with_context(|| format!("cannot write {}", p.display()))?;
            }
            // Returns only on failure; then nothing was changed.
            match restart::inplace::restore_in_place(reader, &opts)? {}
        }
        let r = restart::restore(reader, &opts)?;
        if let Some(p) = &args.pidfile {
            std::fs::write(p, format!("{}\n", r.pid)).with_context(|| {
                format!("restored pid {}, but cannot write {}", r.pid, p.display())
            })?;
        }
        if r.pid <= 0 {
            bail!("restore returned no process");
        }
        restored = Some((r.wait_pid, r.pid));
        Ok(())
    });
    match restored {
        Some((wait, root)) if !args.detach => {
            ExitCode::from(restart::wait_forwarding(wait, root).clamp(0, 255) as u8)
        }
        _ => code,
    }
}
