//! `cr-restart`: restore a process tree from an image on stdin.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use crtools::image::Reader;
use crtools::restart::{self, FdSource};

/// Restore the process tree whose image is on standard input (or FILE) and
/// resume it. By default every process gets its original pid, and
/// cr-restart stays in the foreground, waits for the restored root and
/// exits with its status.
#[derive(Parser)]
#[command(name = "cr-restart", version, about)]
struct Args {
    /// Read the image from FILE instead of standard input.
    #[arg(short, long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Give the restored processes new pids instead of their original ones.
    #[arg(long)]
    no_pids: bool,
    /// Exit as soon as the restored tree runs.
    #[arg(short, long)]
    detach: bool,
    /// Write the restored root's pid to FILE.
    #[arg(long, value_name = "FILE")]
    pidfile: Option<PathBuf>,
    /// Reconnect descriptor N of the restored process that led outside the
    /// image: SPEC is a path, or fd:M for descriptor M of cr-restart.
    #[arg(long = "fd", value_name = "N=SPEC")]
    fds: Vec<String>,
    /// Read an image even if standard input is a terminal.
    #[arg(short, long)]
    force: bool,
}

fn parse_fd(s: &str) -> Result<(u32, FdSource), String> {
    let (n, spec) = s.split_once('=').ok_or_else(|| format!("--fd {s}: expected N=SPEC"))?;
    let n: u32 = n.parse().map_err(|_| format!("--fd {s}: {n} is not a descriptor number"))?;
    let src = match spec.strip_prefix("fd:") {
        Some(m) => FdSource::Inherit(m.parse().map_err(|_| format!("--fd {s}: {m} is not a descriptor number"))?),
        None => FdSource::Path(PathBuf::from(spec)),
    };
    Ok((n, src))
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("cr-restart: {msg}");
    std::process::exit(1);
}

fn main() {
    let args = Args::parse();
    let mut fd_map = Vec::new();
    for s in &args.fds {
        match parse_fd(s) {
            Ok(m) => fd_map.push(m),
            Err(e) => {
                eprintln!("cr-restart: {e}");
                std::process::exit(2);
            }
        }
    }
    let input: Box<dyn Read> = match &args.input {
        Some(p) if p.as_os_str() != "-" => match std::fs::File::open(p) {
            Ok(f) => Box::new(f),
            Err(e) => fail(format_args!("cannot open {}: {e}", p.display())),
        },
        _ => {
            if std::io::stdin().is_terminal() && !args.force {
                fail("refusing to read an image from a terminal (use -f to force)");
            }
            Box::new(std::io::stdin().lock())
        }
    };
    let reader = match Reader::new(std::io::BufReader::with_capacity(1 << 20, input)) {
        Ok(r) => r,
        Err(e) => fail(e),
    };
    let opts = restart::Options {
        original_pids: !args.no_pids,
        fd_map,
        pid_wait: Duration::from_secs(5),
    };
    let restored = match restart::restore(reader, &opts) {
        Ok(r) => r,
        Err(e) => fail(e),
    };
    if let Some(p) = &args.pidfile
        && let Err(e) = std::fs::write(p, format!("{}\n", restored.pid))
    {
        eprintln!("cr-restart: cannot write {}: {e}", p.display());
    }
    if args.detach {
        return;
    }
    std::process::exit(restart::wait_forwarding(restored.pid));
}
