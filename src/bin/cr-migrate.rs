//! `cr-migrate`: move a running process tree to another machine over ssh,
//! as `ckpt --stop PID | cr-zstd | ssh HOST cr-restart --detach`, with the
//! source killed only once the destination confirmed and resumed if
//! anything fails.
//!
//! The order of events, and why:
//!
//! 1. ssh starts first and the remote shell answers `crtools-ready` once
//!    `cr-restart --version` ran there: a host that cannot be reached, or
//!    has no cr-restart, fails the migration before the source is touched.
//! 2. `ckpt --stop PID` writes the image; it is compressed here (the
//!    library's cr-zstd) and sent to the remote `cr-restart --detach`,
//!    except the last bytes (holding the end record): those go only once
//!    ckpt has exited 0, which means the whole image was written and the
//!    tree is stopped. Without the end record a restore is refused and
//!    undone, so the destination never runs a tree whose source was not
//!    stopped.
//! 3. The remote shell answers `crtools-restored` after cr-restart exited
//!    0: the tree runs there. Only then is the source killed. Any failure
//!    before that (ssh cut, the destination refusing or killed) resumes
//!    the source with SIGCONT (or ckpt already left it running).
//! 4. The one case that cannot be decided: the whole image was sent but
//!    the connection was lost before an answer. The source is then left
//!    stopped, and cr-migrate says so and exits 3.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use crtools::cli;
use crtools::filters::zstd::{self, ZstdOptions};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Move the running process tree rooted at PID to HOST over ssh: it is
/// checkpointed and stopped (ckpt --stop), compressed, restored on HOST by
/// `cr-restart --detach` with its original pids, and killed here only once
/// HOST confirmed that it runs there. If anything fails the tree is resumed
/// here and nothing is left on HOST. Reports the time the tree was frozen,
/// the bytes sent and the total time on standard error.
#[derive(Parser)]
#[command(name = "cr-migrate", version, about)]
struct Args {
    /// ssh option: port to connect to on HOST.
    #[arg(short = 'p', value_name = "PORT")]
    port: Option<String>,
    /// ssh option: identity (private key) file; may be repeated.
    #[arg(short = 'i', value_name = "FILE")]
    identity: Vec<PathBuf>,
    /// ssh option in ssh_config format (e.g. -o ServerAliveInterval=5);
    /// may be repeated.
    #[arg(short = 'o', value_name = "OPTION")]
    option: Vec<String>,
    /// ssh option: configuration file.
    #[arg(short = 'F', value_name = "FILE")]
    config: Option<PathBuf>,
    /// ssh option: user to log in as on HOST.
    #[arg(short = 'l', value_name = "USER")]
    login: Option<String>,
    /// ssh option: jump host(s) to connect through.
    #[arg(short = 'J', value_name = "DEST")]
    jump: Option<String>,
    /// The ssh program to run.
    #[arg(long, value_name = "PROGRAM", default_value = "ssh")]
    ssh: String,
    /// The command that runs cr-restart on HOST (a shell command: it may
    /// carry options, e.g. "cr-restart --pidns"; --detach is added).
    #[arg(long, value_name = "COMMAND", default_value = "cr-restart")]
    cr_restart: String,
    /// Carry the files the tree maps or holds open in the image (ckpt
    /// --carry-files), for a HOST that lacks them or has other versions.
    #[arg(long)]
    carry_files: bool,
    /// With --carry-files: at most SIZE bytes of file contents (ckpt
    /// --carry-max).
    #[arg(long, value_name = "SIZE", requires = "carry_files", value_parser = size)]
    carry_max: Option<String>,
    /// Pre-copy (ckpt --live): send the memory while the tree runs and
    /// freeze it only for the last, small part; the freeze time reported
    /// is then from the end of the last pre-copy round.
    #[arg(long)]
    live: bool,
    /// With --live: at most N rounds while the tree runs (ckpt
    /// --live-rounds; default 8).
    #[arg(long, value_name = "N", requires = "live", value_parser = rounds)]
    live_rounds: Option<String>,
    /// With --live: freeze once a round sent at most SIZE (ckpt
    /// --live-target; default 4M).
    #[arg(long, value_name = "SIZE", requires = "live", value_parser = size)]
    live_target: Option<String>,
    /// zstd compression level of the page data.
    #[arg(long, value_name = "N", default_value_t = zstd::DEFAULT_LEVEL, allow_hyphen_values = true, value_parser = level)]
    level: i32,
    /// Compression threads (0: one per core).
    #[arg(short = 'T', long, value_name = "N", default_value_t = 0, value_parser = cli::parse_threads)]
    threads: usize,
    /// Do not report the times and sizes.
    #[arg(short, long)]
    quiet: bool,
    /// Also show ckpt's summary and the destination cr-restart's (their -v).
    #[arg(short, long)]
    verbose: bool,
    /// The root of the tree to move.
    #[arg(value_parser = pid)]
    pid: i32,
    /// Where to move it: [USER@]HOST, as ssh takes it.
    #[arg(value_name = "[USER@]HOST")]
    host: String,
}

fn pid(s: &str) -> Result<i32, String> {
    cli::parse_in_range(s, 1, i32::MAX.into(), "a process id").map(|n| n as i32)
}

/// A size as ckpt takes it, checked here so that a bad one fails first.
fn size(s: &str) -> Result<String, String> {
    cli::parse_size(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

fn rounds(s: &str) -> Result<String, String> {
    cli::parse_in_range(s, 1, 1000, "a number of rounds")
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

fn level(s: &str) -> Result<i32, String> {
    let (min, max) = (*zstd::levels().start(), *zstd::levels().end());
    cli::parse_in_range(s, min.into(), max.into(), "zstd levels").map(|n| n as i32)
}

/// What the remote shell prints once cr-restart is found there.
const READY: &str = "crtools-ready";
/// What the remote shell prints once cr-restart restored the tree.
const RESTORED: &str = "crtools-restored";
/// Bytes held back from the destination until ckpt has succeeded: more
/// than the end record, the last record of every image.
const HOLD_BACK: usize = 64 << 10;
/// Exit status when the outcome is unknown (the source is left stopped).
const UNKNOWN: u8 = 3;

/// Children to stop when cr-migrate is interrupted (0: none).
static CKPT_PID: AtomicI32 = AtomicI32::new(0);
static SSH_PID: AtomicI32 = AtomicI32::new(0);
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// On SIGINT, SIGTERM or SIGHUP: ckpt gets SIGTERM (it hands the tree
/// back as it was) and ssh is ended, so the migration fails the ordinary
/// way and the source is resumed.
fn handle_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    std::thread::spawn(|| {
        loop {
            if INTERRUPTED.load(Ordering::SeqCst) {
                for (p, sig) in [(&CKPT_PID, Signal::SIGTERM), (&SSH_PID, Signal::SIGTERM)] {
                    let pid = p.swap(0, Ordering::SeqCst);
                    if pid > 0 {
                        let _ = kill(Pid::from_raw(pid), sig);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

/// Passes everything to `inner` except the last `keep` bytes, which go
/// only with [`HoldBack::release`]; dropped unreleased, they never go.
struct HoldBack<W: Write> {
    inner: W,
    held: Vec<u8>,
    keep: usize,
    sent: u64,
}

impl<W: Write> HoldBack<W> {
    fn new(inner: W, keep: usize) -> Self {
        HoldBack {
            inner,
            held: Vec::with_capacity(4 * keep),
            keep,
            sent: 0,
        }
    }

    /// Sends the held bytes; returns the writer and the bytes sent in all.
    fn release(mut self) -> std::io::Result<(W, u64)> {
        self.inner.write_all(&self.held)?;
        self.inner.flush()?;
        self.sent += self.held.len() as u64;
        Ok((self.inner, self.sent))
    }
}

impl<W: Write> Write for HoldBack<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.held.extend_from_slice(buf);
        if self.held.len() >= 4 * self.keep {
            let n = self.held.len() - self.keep;
            self.inner.write_all(&self.held[..n])?;
            self.sent += n as u64;
            self.held.drain(..n);
        }
        Ok(buf.len())
    }

    /// Flushes what may be sent; the held bytes stay.
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A program of this package: next to cr-migrate, else from PATH.
fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// PID and its descendants, now (the tree is stopped: it cannot change).
fn tree(pid: i32) -> Vec<i32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                out.extend(
                    kids.split_whitespace()
                        .filter_map(|w| w.parse::<i32>().ok()),
                );
            }
        }
        i += 1;
    }
    out
}

fn signal_all(pids: &[i32], sig: Signal) {
    for &p in pids {
        let _ = kill(Pid::from_raw(p), sig);
    }
}

/// The ssh command, up to the remote command.
fn ssh_command(a: &Args) -> Command {
    let mut c = Command::new(&a.ssh);
    if let Some(p) = &a.port {
        c.arg("-p").arg(p);
    }
    for i in &a.identity {
        c.arg("-i").arg(i);
    }
    for o in &a.option {
        c.arg("-o").arg(o);
    }
    if let Some(f) = &a.config {
        c.arg("-F").arg(f);
    }
    if let Some(l) = &a.login {
        c.arg("-l").arg(l);
    }
    if let Some(j) = &a.jump {
        c.arg("-J").arg(j);
    }
    // No terminal: the channel carries the image, byte for byte.
    c.arg("-T").arg(&a.host);
    let r = &a.cr_restart;
    let v = if a.verbose { " -v" } else { "" };
    c.arg(format!(
        "{r} --version >/dev/null && echo {READY} && {r} --detach{v} && echo {RESTORED}"
    ));
    c
}

fn describe(st: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => st.to_string(),
    }
}

/// How a migration ended, when it did not succeed.
enum Failed {
    /// Nothing runs on the destination; the source runs (resumed, or never stopped).
    Resumed(anyhow::Error),
    /// The outcome is unknown; the source is left stopped.
    Unknown(String),
}

impl<E: Into<anyhow::Error>> From<E> for Failed {
    fn from(e: E) -> Self {
        Failed::Resumed(e.into())
    }
}

struct Report {
    frozen: Duration,
    sent: u64,
    image: u64,
}

/// The rest of ssh's output: passed on, and `RESTORED` noted (with when).
fn watch_output(out: impl BufRead + Send + 'static) -> mpsc::Receiver<Instant> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines() {
            let Ok(line) = line else { break };
            if line == RESTORED {
                let _ = tx.send(Instant::now());
            } else {
                // Whatever else the remote side printed; a closed stdout
                // must not end the watch.
                let _ = writeln!(std::io::stdout(), "{line}");
            }
        }
    });
    rx
}

/// ckpt's standard error with `--live -v`: passed on (the round and
/// summary lines only with `verbose`); returns when the last pre-copy
/// round ended, once ckpt closed it.
fn watch_rounds(
    err: impl std::io::Read + Send + 'static,
    verbose: bool,
) -> std::thread::JoinHandle<Option<Instant>> {
    std::thread::spawn(move || {
        let mut last = None;
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            let round = line.starts_with("ckpt: pre-copy round ");
            if round {
                last = Some(Instant::now());
            }
            let summary =
                round || line.starts_with("ckpt: pre-copy:") || line.contains(", frozen ");
            if verbose || !summary {
                eprintln!("{line}");
            }
        }
        last
    })
}

fn wait_child(c: &mut Child, slot: &AtomicI32) -> std::io::Result<ExitStatus> {
    let st = c.wait();
    slot.store(0, Ordering::SeqCst);
    st
}

/// Starts `cr-restart` on the destination through ssh and waits until it
/// says it is ready; the pid is not touched before that. Returns ssh, the
/// channel that says when the restore was confirmed, and ssh's stdin.
fn start_destination(a: &Args) -> Result<(Child, mpsc::Receiver<Instant>, ChildStdin), Failed> {
    let mut ssh = ssh_command(a)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", a.ssh))?;
    SSH_PID.store(ssh.id() as i32, Ordering::SeqCst);
    let mut out = BufReader::new(ssh.stdout.take().expect("ssh stdout"));
    let mut line = String::new();
    while line.trim_end() != READY {
        line.clear();
        if out.read_line(&mut line).unwrap_or(0) == 0 {
            let st = wait_child(&mut ssh, &SSH_PID)?;
            return Err(anyhow::anyhow!(
                "{}: ssh or `{} --version` failed there ({}); pid {} was not touched",
                a.host,
                a.cr_restart,
                describe(st),
                a.pid
            )
            .into());
        }
    }
    let restored = watch_output(out);
    let stdin: ChildStdin = ssh.stdin.take().expect("ssh stdin");
    Ok((ssh, restored, stdin))
}

/// The `ckpt --stop` command line for this migration (without the pid).
fn ckpt_command(a: &Args) -> Command {
    let mut ckpt = Command::new(sibling("ckpt"));
    ckpt.arg("--stop");
    if a.verbose || a.live {
        ckpt.arg("-v");
    }
    if a.live {
        // Its stderr is read: the end of the last round is when the
        // final freeze begins.
        ckpt.arg("--live").stderr(Stdio::piped());
        if let Some(n) = &a.live_rounds {
            ckpt.args(["--live-rounds", n]);
        }
        if let Some(t) = &a.live_target {
            ckpt.args(["--live-target", t]);
        }
    }
    if a.carry_files {
        ckpt.arg("--carry-files");
    }
    if let Some(m) = &a.carry_max {
        ckpt.args(["--carry-max", m]);
    }
    ckpt
}

fn migrate(a: &Args) -> Result<Report, Failed> {
    if kill(Pid::from_raw(a.pid), None).is_err() {
        return Err(anyhow::anyhow!("pid {}: no such process", a.pid).into());
    }
    let opts = ZstdOptions {
        level: a.level,
        threads: cli::threads(a.threads),
    };
    let (mut ssh, restored, stdin) = start_destination(a)?;
    let frozen_from = Instant::now();
    let mut ckpt = ckpt_command(a)
        .arg(a.pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run ckpt")?;
    CKPT_PID.store(ckpt.id() as i32, Ordering::SeqCst);
    let last_round = ckpt.stderr.take().map(|e| watch_rounds(e, a.verbose));
    let image = ckpt.stdout.take().expect("ckpt stdout");
    let pumped = zstd::compress(image, HoldBack::new(stdin, HOLD_BACK), &opts, None);
    let ckpt_st = wait_child(&mut ckpt, &CKPT_PID)?;
    // ckpt exited 0: the whole image was written and the tree is stopped.
    let stopped = ckpt_st.success().then(|| tree(a.pid));
    let resume = |why: String| -> Failed {
        if let Some(pids) = &stopped {
            signal_all(pids, Signal::SIGCONT);
        }
        Failed::Resumed(anyhow::anyhow!("{why}; pid {} runs on here", a.pid))
    };
    let (sent, image_bytes) = match (pumped, &stopped) {
        (Ok((hold, stats)), Some(_)) => match hold.release() {
            Ok((stdin, sent)) => {
                drop(stdin);
                (sent, stats.bytes_in)
            }
            Err(e) => {
                let st = wait_child(&mut ssh, &SSH_PID)?;
                return Err(resume(format!(
                    "{}: the connection ended before the image was complete ({}; ssh {})",
                    a.host,
                    cli::io_reason(&e),
                    describe(st)
                )));
            }
        },
        (Ok(_), None) => {
            let st = wait_child(&mut ssh, &SSH_PID)?;
            return Err(resume(format!(
                "ckpt failed ({}); the image was not completed on {} (ssh {})",
                describe(ckpt_st),
                a.host,
                describe(st)
            )));
        }
        (Err(e), _) => {
            let st = wait_child(&mut ssh, &SSH_PID)?;
            return Err(resume(format!(
                "the image did not reach {} whole ({e}; ckpt {}, ssh {})",
                a.host,
                describe(ckpt_st),
                describe(st)
            )));
        }
    };
    let ssh_st = wait_child(&mut ssh, &SSH_PID)?;
    // The output thread ends with ssh's stdout.
    let confirmed = restored.recv_timeout(Duration::from_secs(5)).ok();
    match confirmed {
        Some(at) => {
            if let Some(pids) = &stopped {
                signal_all(pids, Signal::SIGKILL);
            }
            let from = last_round
                .and_then(|h| h.join().ok().flatten())
                .unwrap_or(frozen_from);
            Ok(Report {
                frozen: at.saturating_duration_since(from),
                sent,
                image: image_bytes,
            })
        }
        None if ssh_st.code() == Some(255) || INTERRUPTED.load(Ordering::SeqCst) => {
            Err(Failed::Unknown(format!(
                "{}: the whole image was sent but no answer came (ssh {}): the tree may run there; pid {} is left stopped here: `kill -CONT` it if it does not, kill it if it does",
                a.host,
                describe(ssh_st),
                a.pid
            )))
        }
        None => Err(resume(format!(
            "{}: the restore failed there (cr-restart {})",
            a.host,
            describe(ssh_st)
        ))),
    }
}

fn main() -> ExitCode {
    let args: Args = crtools::completions::parse();
    handle_interrupts();
    let t0 = Instant::now();
    let mut unknown = None;
    let code = cli::run("cr-migrate", || match migrate(&args) {
        Ok(r) => {
            if !args.quiet {
                let mib = |b: u64| b as f64 / (1 << 20) as f64;
                eprintln!(
                    "cr-migrate: pid {} moved to {}: frozen {:.1} ms, {:.1} MiB sent ({:.1} MiB image), {:.3} s in all",
                    args.pid,
                    args.host,
                    r.frozen.as_secs_f64() * 1e3,
                    mib(r.sent),
                    mib(r.image),
                    t0.elapsed().as_secs_f64()
                );
            }
            Ok(())
        }
        Err(Failed::Resumed(e)) => Err(e),
        Err(Failed::Unknown(msg)) => {
            unknown = Some(msg);
            Ok(())
        }
    });
    match unknown {
        Some(msg) => {
            eprintln!("cr-migrate: {msg}");
            ExitCode::from(UNKNOWN)
        }
        None => code,
    }
}
