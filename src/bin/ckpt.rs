//! `ckpt`: checkpoint a running process to stdout.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::Parser;
use crtools::checkpoint::{self, After};

/// Checkpoint the process tree rooted at PID and write its image to
/// standard output (or FILE). The process keeps running unchanged unless
/// --kill or --stop is given.
#[derive(Parser)]
#[command(name = "ckpt", version, about)]
struct Args {
    /// SIGKILL the process after the whole image is written and flushed.
    #[arg(long, conflicts_with = "stop")]
    kill: bool,
    /// Leave the process stopped (SIGSTOP) after the image is written.
    #[arg(long)]
    stop: bool,
    /// Write the image to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Write the image even if standard output is a terminal.
    #[arg(short, long)]
    force: bool,
    /// Report what was saved and how long the process was frozen, on stderr.
    #[arg(short, long)]
    verbose: bool,
    /// The process to checkpoint.
    pid: i32,
}

fn main() {
    let args = Args::parse();
    let after = if args.kill {
        After::Kill
    } else if args.stop {
        After::Stop
    } else {
        After::Resume
    };
    let out: Box<dyn Write> = match &args.output {
        Some(p) if p.as_os_str() != "-" => match std::fs::File::create(p) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("ckpt: cannot create {}: {e}", p.display());
                std::process::exit(1);
            }
        },
        _ => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() && !args.force {
                eprintln!("ckpt: refusing to write an image to a terminal (use -f to force)");
                std::process::exit(1);
            }
            crtools::cli::grow_pipe(1);
            Box::new(crtools::cli::RawStdout)
        }
    };
    let out = std::io::BufWriter::with_capacity(1 << 20, out);
    match checkpoint::checkpoint(args.pid, out, &checkpoint::Options { after }) {
        Ok(s) => {
            if args.verbose {
                eprintln!(
                    "ckpt: pid {}: {} process(es), {} thread(s), {} pages ({} bytes), {} zero pages skipped, frozen for {:.3} ms",
                    args.pid,
                    s.processes,
                    s.threads,
                    s.pages,
                    s.bytes,
                    s.zero_pages,
                    s.frozen_for.as_secs_f64() * 1e3
                );
            }
        }
        Err(e) if e.is_broken_pipe() => std::process::exit(1),
        Err(e) => {
            eprintln!("ckpt: {e}");
            std::process::exit(1);
        }
    }
}
