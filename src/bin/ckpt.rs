//! `ckpt`: checkpoint a running process tree to stdout.

use std::process::ExitCode;

use clap::Parser;
use crtools::checkpoint::{self, After};
use crtools::cli;
use crtools::completions::{Common, OutputFile};
use crtools::progress::{self, Display, Show};

/// Checkpoint the process tree rooted at PID (PID and all its descendants)
/// and write its image to standard output or FILE. The tree keeps running
/// unchanged unless --kill or --stop is given; if the checkpoint fails, it
/// is left exactly as it was.
#[derive(Parser)]
#[command(name = "ckpt", version, about)]
struct Args {
    /// SIGKILL the tree after the whole image is written and flushed.
    #[arg(long, conflicts_with = "stop")]
    kill: bool,
    /// Leave the tree stopped (SIGSTOP) after the image is written; resume
    /// it with `kill -CONT`.
    #[arg(long)]
    stop: bool,
    #[command(flatten)]
    output: OutputFile,
    /// Carry the contents of the files the tree maps or holds open (its
    /// executables, libraries, data files) in the image, for a host that
    /// lacks them or has other versions (see cr-restart).
    #[arg(long)]
    carry_files: bool,
    /// With --carry-files: carry at most SIZE bytes of file contents in all
    /// (e.g. 512M; default 1G); files past it are only described.
    #[arg(long, value_name = "SIZE", value_parser = size, requires = "carry_files")]
    carry_max: Option<u64>,
    /// Pre-copy: send the tree's memory while it runs, then rounds of the
    /// pages written since the previous round, and freeze it only for the
    /// last, small round (see LIVE MIGRATION in ckpt(1)).
    #[arg(long)]
    live: bool,
    /// With --live: at most N rounds while the tree runs (default 8).
    #[arg(long, value_name = "N", value_parser = rounds, requires = "live")]
    live_rounds: Option<u32>,
    /// With --live: freeze once a round sent at most SIZE (default 4M).
    #[arg(long, value_name = "SIZE", value_parser = size, requires = "live")]
    live_target: Option<u64>,
    /// What to do with a Unix socket connected to a process outside the
    /// tree: `refuse` the checkpoint (the default), or `close`: record it
    /// disconnected (after the restore it reads what was queued, then end
    /// of file; a pending connection from outside is accepted closed).
    #[arg(long, value_name = "MODE", value_parser = ["refuse", "close"], default_value = "refuse")]
    external_unix: String,
    /// Keep established TCP connections: each is put in repair mode
    /// (TCP_REPAIR) and its sequence numbers, windows, options and queues
    /// go into the image; restore it with cr-restart --tcp-established.
    /// With --kill the connections are closed silently (no FIN, no RST).
    /// Without this option (or --tcp-close) an established connection
    /// fails the checkpoint.
    #[arg(long, conflicts_with = "tcp_close")]
    tcp_established: bool,
    /// Drop established TCP connections: they are restored as unconnected
    /// sockets, and the program sees an error on them.
    #[arg(long)]
    tcp_close: bool,
    #[command(flatten)]
    common: Common,
    /// The root of the tree to checkpoint.
    #[arg(value_parser = pid)]
    pid: i32,
}

fn size(s: &str) -> Result<u64, String> {
    cli::parse_size(s).map_err(|e| e.to_string())
}

fn rounds(s: &str) -> Result<u32, String> {
    cli::parse_in_range(s, 1, 1000, "a number of rounds").map(|n| n as u32)
}

/// `--carry-max` when not given.
const CARRY_MAX: u64 = 1 << 30;

fn pid(s: &str) -> Result<i32, String> {
    cli::parse_in_range(s, 1, i32::MAX.into(), "a process id").map(|n| n as i32)
}

extern "C" fn on_signal(_: libc::c_int) {
    checkpoint::request_abort();
}

/// The checkpoint runs in a worker child; this process only waits for it.
/// Killing `ckpt` (even with SIGKILL) then never leaves the tree with
/// borrowed registers: the worker gets SIGTERM (parent-death signal),
/// stops at its next safe point and hands the tree back as it was.
fn split_worker() -> Option<ExitCode> {
    let parent = std::process::id() as i32;
    // SAFETY: ckpt has no other thread yet; the child goes on running this
    // program's ordinary code, like a process of its own.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            let code = {
                let child = crtools::sys::ids::Pid::from_raw(child.as_raw());
                crtools::restart::wait_forwarding(child, child, false)
            };
            Some(ExitCode::from(code.clamp(0, 255) as u8))
        }
        Ok(nix::unistd::ForkResult::Child) => {
            // SAFETY: a handler that only stores to an atomic; prctl and
            // getppid take and return integers.
            unsafe {
                for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
                    libc::signal(sig, on_signal as *const () as libc::sighandler_t);
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                if libc::getppid() != parent {
                    checkpoint::request_abort();
                }
            }
            None
        }
        // No worker: checkpoint in this process.
        Err(_) => None,
    }
}

fn main() -> ExitCode {
    let args: Args = crtools::completions::parse();
    if let Some(code) = split_worker() {
        return code;
    }
    cli::run("ckpt", || {
        // Before the output is opened: nothing is touched.
        checkpoint::refuse_own_ancestor(args.pid)?;
        let after = if args.kill {
            After::Kill
        } else if args.stop {
            After::Stop
        } else {
            After::Resume
        };
        let out = cli::Output::open(args.output.path(), args.common.force, &[])?;
        progress::phase(progress::Phase::Freezing);
        let mut display = Display::start("ckpt", Show::Written, args.common.when());
        let opts = checkpoint::Options {
            after,
            carry: args
                .carry_files
                .then(|| args.carry_max.unwrap_or(CARRY_MAX)),
            live: args.live.then(|| {
                let d = checkpoint::live::LiveOptions::default();
                checkpoint::live::LiveOptions {
                    max_rounds: args.live_rounds.unwrap_or(d.max_rounds),
                    target: args.live_target.unwrap_or(d.target),
                    verbose: args.common.summary(),
                }
            }),
            external_unix: if args.external_unix == "close" {
                checkpoint::unix::ExternalUnix::Close
            } else {
                checkpoint::unix::ExternalUnix::Refuse
            },
            tcp: if args.tcp_established {
                checkpoint::inet::TcpMode::Established
            } else if args.tcp_close {
                checkpoint::inet::TcpMode::Close
            } else {
                checkpoint::inet::TcpMode::Refuse
            },
            ..Default::default()
        };
        // The image file is in place before the tree is released; if it
        // cannot be, the tree goes on as it was.
        let s = checkpoint::checkpoint_then(args.pid, out, &opts, |out| {
            out.commit().map_err(|e| match e {
                cli::CliError::Open { path, source } => crtools::Error::Io {
                    what: path.display().to_string(),
                    source,
                },
                e => crtools::Error::msg(e.to_string()),
            })
        })?;
        eprint!("{}", progress::profile_report());
        if args.common.summary() {
            let (bytes, took) = (progress::bytes_out(), display.elapsed());
            display.summary(&format!(
                "{} from {} in {} ({}), frozen {}; {}, {} pages, {} zero pages skipped",
                progress::size(bytes),
                progress::count(s.processes as u64, "process", "processes"),
                progress::secs(took),
                progress::rate(bytes, took),
                progress::short_secs(s.frozen_for),
                progress::count(s.threads as u64, "thread", "threads"),
                s.pages,
                s.zero_pages,
            ));
            if args.live {
                let pages: u64 = s.rounds.iter().map(|r| r.pages).sum();
                display.summary(&format!(
                    "pre-copy: {} round(s), {} pages ({}) while running; at the freeze {} pages sent, {} taken from pre-copy",
                    s.rounds.len(),
                    pages,
                    progress::size(pages * 4096),
                    s.pages,
                    s.precopied,
                ));
                let phases: Vec<String> = s
                    .freeze_phases
                    .iter()
                    .map(|(what, took)| format!("{what} {:.1} ms", took.as_secs_f64() * 1e3))
                    .collect();
                display.summary(&format!(
                    "final freeze: {}; write tracking removed {:.1} ms after the release",
                    phases.join(", "),
                    s.untracked_in.as_secs_f64() * 1e3
                ));
            }
            if s.tcp_repaired > 0 {
                display.summary(&format!(
                    "kept {} with TCP_REPAIR",
                    progress::count(
                        s.tcp_repaired as u64,
                        "established TCP connection",
                        "established TCP connections"
                    )
                ));
            }
            if args.carry_files {
                display.summary(&format!(
                    "carried {} of {} file(s), {}",
                    s.carried.carried,
                    s.carried.files,
                    progress::size(s.carried.bytes)
                ));
            }
        }
        Ok(())
    })
}
