//! What long work is doing, for the progress line on stderr and the `-v`
//! summaries.
//!
//! The library only bumps counters: [`phase`] when a checkpoint or a restore
//! moves on (a relaxed store), and the bytes that cross the binaries' input
//! and output files, counted by [`Counted`] under their 1 MiB buffers (one
//! relaxed atomic add per buffer refill or flush, about one per record). The
//! counters are process-wide statics: a process runs one checkpoint, restore
//! or filter, and the hooks need no handle threaded through the code.
//!
//! A binary that wants a progress line starts a [`Display`]: a thread that
//! reads the counters ten times a second and draws them with indicatif, and
//! clears its line when it is finished. Nothing else touches the terminal.
//! The line is also cleared, at once, when the phase becomes
//! [`Phase::Releasing`]: the tree about to run may write to the same
//! terminal, and its first line must not land on ours.

use std::io::{self, IsTerminal, Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

/// What a checkpoint or a restore is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Reading an image (the start of a restore, cr-info).
    Reading = 0,
    /// Stopping every thread of the tree.
    Freezing,
    /// Reading the processes' state: registers, mappings, descriptors.
    State,
    /// Page contents (checkpoint: written; restore: written into the tree).
    Memory,
    /// Pipe, socket, IPC and deleted-file contents.
    Files,
    /// Creating the processes and their address spaces.
    Building,
    /// Letting the tree go.
    Releasing,
}

impl Phase {
    const ALL: [Phase; 7] = [
        Phase::Reading,
        Phase::Freezing,
        Phase::State,
        Phase::Memory,
        Phase::Files,
        Phase::Building,
        Phase::Releasing,
    ];

    /// The word the progress line shows.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Reading => "reading",
            Phase::Freezing => "freezing",
            Phase::State => "state",
            Phase::Memory => "memory",
            Phase::Files => "files",
            Phase::Building => "building",
            Phase::Releasing => "release",
        }
    }
}

static PHASE: AtomicU8 = AtomicU8::new(Phase::Reading as u8);
static BYTES_IN: AtomicU64 = AtomicU64::new(0);
static BYTES_OUT: AtomicU64 = AtomicU64::new(0);
static BYTES_PLACED: AtomicU64 = AtomicU64::new(0);
static BYTES_KEPT: AtomicU64 = AtomicU64::new(0);

/// The progress line being drawn, if any, and what it shows. Held while a
/// frame is drawn, so that once [`clear_line`] has taken it no frame follows.
static LINE: Mutex<Option<(ProgressBar, Show)>> = Mutex::new(None);

/// Says what the process is doing now. Releasing a tree clears the
/// progress line first (its last frame drawn, then erased).
pub fn phase(p: Phase) {
    PHASE.store(p as u8, Relaxed);
    if p == Phase::Releasing {
        clear_line();
    }
}

/// Draws the progress line one last time and erases it; no more frames
/// follow.
fn clear_line() {
    let line = LINE.lock().map(|mut l| l.take());
    if let Ok(Some((bar, show))) = line {
        redraw(&bar, show);
        bar.force_draw();
        bar.finish_and_clear();
    }
}

/// What the process is doing now.
pub fn current_phase() -> Phase {
    Phase::ALL
        .get(PHASE.load(Relaxed) as usize)
        .copied()
        .unwrap_or(Phase::Reading)
}

/// Bytes read so far through [`Counted::input`] readers.
pub fn bytes_in() -> u64 {
    BYTES_IN.load(Relaxed)
}

/// Bytes written so far through [`Counted::output`] writers.
pub fn bytes_out() -> u64 {
    BYTES_OUT.load(Relaxed)
}

/// Counts page data a restore placed with `UFFDIO_COPY` (new pages made
/// with their contents, not zeroed first), for `cr-restart -v`.
pub fn add_placed(bytes: u64) {
    BYTES_PLACED.fetch_add(bytes, Relaxed);
}

static ROUNDS_END: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Marks the end of a live image's pre-copy rounds (its first metadata
/// record), once: from here on the source's tree is frozen.
pub fn rounds_ended() {
    let _ = ROUNDS_END.set(std::time::Instant::now());
}

/// Time since the end of the pre-copy rounds, for a live image.
pub fn since_rounds_end() -> Option<Duration> {
    ROUNDS_END.get().map(|t| t.elapsed())
}

/// Counts pre-copied page data a restored process kept where the
/// restorer staged it (inherited, not copied), for `cr-restart -v`.
pub fn add_kept(bytes: u64) {
    BYTES_KEPT.fetch_add(bytes, Relaxed);
}

/// Pre-copied page data kept in place so far.
pub fn bytes_kept() -> u64 {
    BYTES_KEPT.load(Relaxed)
}

/// Page data placed with `UFFDIO_COPY` so far.
pub fn bytes_placed() -> u64 {
    BYTES_PLACED.load(Relaxed)
}

/// A reader or writer that adds what crosses it to the process's byte
/// counters. Put it under the buffer, so that it counts once per refill or
/// flush.
pub struct Counted<T> {
    inner: T,
    counter: &'static AtomicU64,
}

impl<T> Counted<T> {
    /// Counts the bytes read from `inner` as input.
    pub fn input(inner: T) -> Self {
        Counted {
            inner,
            counter: &BYTES_IN,
        }
    }
    /// Counts the bytes written to `inner` as output.
    pub fn output(inner: T) -> Self {
        Counted {
            inner,
            counter: &BYTES_OUT,
        }
    }
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Relaxed);
        Ok(n)
    }
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.counter.fetch_add(n as u64, Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<S: Seek> Seek for Counted<S> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// What a progress line shows.
#[derive(Debug, Clone, Copy)]
pub enum Show {
    /// The phase and the bytes written (ckpt).
    Written,
    /// The phase and the bytes read, against `total` when the input's size
    /// is known (cr-restart, cr-info).
    Read { total: Option<u64> },
    /// Bytes in and out and their ratio, like `zstd -v` (the filters).
    Filter { total: Option<u64> },
}

/// When to draw the progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Never (`-q`, `--no-progress`, or stderr is not a terminal).
    Never,
    /// On stderr, a terminal.
    Terminal,
    /// On stderr even if it is not a terminal (`--progress`).
    Forced,
}

impl When {
    /// From the options: `--progress` forces it, `-q` and `--no-progress`
    /// silence it, otherwise only when stderr is a terminal.
    pub fn from_flags(progress: bool, silenced: bool) -> When {
        if silenced {
            When::Never
        } else if progress {
            When::Forced
        } else if io::stderr().is_terminal() {
            When::Terminal
        } else {
            When::Never
        }
    }
}

/// The progress line of one program: a thread that redraws it from the
/// counters until [`Display::finish`] (or drop) clears it.
pub struct Display {
    name: &'static str,
    start: Instant,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// How often the line is redrawn.
const TICK: Duration = Duration::from_millis(100);

impl Display {
    /// Starts the clock, and the progress line if `when` allows it.
    pub fn start(name: &'static str, show: Show, when: When) -> Display {
        let mut d = Display {
            name,
            start: Instant::now(),
            stop: None,
            thread: None,
        };
        let target = match when {
            When::Never => return d,
            When::Terminal => ProgressDrawTarget::stderr_with_hz(20),
            When::Forced => ProgressDrawTarget::term_like_with_hz(Box::new(Forced::new()), 20),
        };
        let total = match show {
            Show::Read { total } | Show::Filter { total } => total,
            Show::Written => None,
        };
        let bar = ProgressBar::with_draw_target(total, target)
            .with_prefix(name)
            .with_style(style(show));
        if let Ok(mut line) = LINE.lock() {
            *line = Some((bar, show));
        }
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                loop {
                    match LINE.lock().as_deref() {
                        Ok(Some((bar, show))) => redraw(bar, *show),
                        _ => return,
                    }
                    if !matches!(rx.recv_timeout(TICK), Err(mpsc::RecvTimeoutError::Timeout)) {
                        break;
                    }
                }
                clear_line();
            });
        // No thread (out of resources): no progress line, nothing else lost.
        match thread {
            Ok(t) => {
                d.stop = Some(tx);
                d.thread = Some(t);
            }
            Err(_) => {
                if let Ok(mut line) = LINE.lock() {
                    line.take();
                }
            }
        }
        d
    }

    /// Time since the display started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Clears the progress line (it is drawn one last time first).
    pub fn finish(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        clear_line();
    }

    /// Clears the progress line and writes `NAME: line` on stderr.
    pub fn summary(&mut self, line: &str) {
        self.finish();
        let _ = writeln!(io::stderr(), "{}: {line}", self.name);
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        self.finish();
    }
}

fn style(show: Show) -> ProgressStyle {
    let template = match show {
        Show::Written => {
            "{prefix}: {spinner} {msg} {binary_bytes} written, {binary_bytes_per_sec}, {elapsed}"
        }
        Show::Read { total: None } => {
            "{prefix}: {spinner} {msg} {binary_bytes} read, {binary_bytes_per_sec}, {elapsed}"
        }
        Show::Read { total: Some(_) } => {
            "{prefix}: {msg} [{bar:24}] {binary_bytes}/{binary_total_bytes}, {binary_bytes_per_sec}, {elapsed}"
        }
        Show::Filter { total: None } => {
            "{prefix}: {spinner} {binary_bytes} in, {msg}, {binary_bytes_per_sec}, {elapsed}"
        }
        Show::Filter { total: Some(_) } => {
            "{prefix}: [{bar:24}] {binary_bytes}/{binary_total_bytes} in, {msg}, {binary_bytes_per_sec}, {elapsed}"
        }
    };
    ProgressStyle::with_template(template)
        .expect("a valid template")
        .tick_chars("|/-\\ ")
        .progress_chars("=> ")
}

fn redraw(bar: &ProgressBar, show: Show) {
    match show {
        // The message first: setting either may draw, and a new phase with
        // the bytes of a moment ago is true, the other way round is not.
        Show::Written => {
            bar.set_message(current_phase().name());
            bar.set_position(bytes_out());
        }
        Show::Read { .. } => {
            bar.set_message(current_phase().name());
            bar.set_position(bytes_in());
        }
        Show::Filter { .. } => {
            let (i, o) = (bytes_in(), bytes_out());
            bar.set_message(format!("{} out ({})", size(o), ratio(o, i)));
            bar.set_position(i);
        }
    }
    bar.tick();
}

/// stderr as indicatif's terminal even when it is not one (`--progress`):
/// the line is drawn for whoever reads it, 80 columns wide.
#[derive(Debug)]
struct Forced(console::Term);

impl Forced {
    fn new() -> Self {
        Forced(console::Term::stderr())
    }
}

impl TermLike for Forced {
    fn width(&self) -> u16 {
        self.0.size().1
    }
    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_up(n)
    }
    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_down(n)
    }
    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_right(n)
    }
    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_left(n)
    }
    fn write_line(&self, s: &str) -> io::Result<()> {
        self.0.write_line(s)
    }
    fn write_str(&self, s: &str) -> io::Result<()> {
        self.0.write_str(s)
    }
    fn clear_line(&self) -> io::Result<()> {
        self.0.clear_line()
    }
    fn flush(&self) -> io::Result<()> {
        self.0.flush()
    }
}

/// A byte count as people read it: `512 B`, `3.4 MiB`, `2.0 GiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Bytes per second over `d`: `4.2 GiB/s`.
pub fn rate(bytes: u64, d: Duration) -> String {
    let s = d.as_secs_f64().max(1e-6);
    format!("{}/s", size((bytes as f64 / s) as u64))
}

/// A duration in seconds: `0.48 s`.
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// A duration that may be short: `45.3 ms` under a second, else `1.23 s`.
pub fn short_secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else {
        secs(d)
    }
}

/// Output as a share of input: `25.0%`.
pub fn ratio(out: u64, input: u64) -> String {
    if input == 0 {
        return "-".into();
    }
    format!("{:.1}%", out as f64 * 100.0 / input as f64)
}

/// What a filter moved: `2.0 GiB -> 512.0 MiB (25.0%) in 1.20 s (1.7 GiB/s)`
/// (the rate of its input).
pub fn transfer(bytes_in: u64, bytes_out: u64, took: Duration) -> String {
    format!(
        "{} -> {} ({}) in {} ({})",
        size(bytes_in),
        size(bytes_out),
        ratio(bytes_out, bytes_in),
        secs(took),
        rate(bytes_in, took)
    )
}

/// `n` and the noun, in the plural unless `n` is 1: `1 process`, `3 parts`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Per-phase timing for profiling, on when `CRTOOLS_PROFILE` is set in the
/// environment (read once): [`span`] guards add their time and a count to a
/// process-wide table, which [`profile_report`] prints (`ckpt` and
/// `cr-restart` print it on stderr at their end). Off, a span costs one
/// relaxed load. Spans nest (a phase inside another is counted in both) and
/// may run on several threads at once (their times add up).
pub fn profiling() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("CRTOOLS_PROFILE").is_some_and(|v| !v.is_empty()))
}

static SPANS: Mutex<Vec<(&'static str, Duration, u64)>> = Mutex::new(Vec::new());

/// Times what happens until it is dropped, under `name` (see [`profiling`]).
#[must_use = "a span measures until it is dropped"]
pub struct Span {
    name: &'static str,
    t0: Option<Instant>,
}

/// Starts timing `name`, if profiling is on.
pub fn span(name: &'static str) -> Span {
    Span {
        name,
        t0: profiling().then(Instant::now),
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        let Some(t0) = self.t0 else { return };
        let d = t0.elapsed();
        if let Ok(mut v) = SPANS.lock() {
            match v.iter_mut().find(|e| e.0 == self.name) {
                Some(e) => {
                    e.1 += d;
                    e.2 += 1;
                }
                None => v.push((self.name, d, 1)),
            }
        }
    }
}

/// The profile so far, one line per span name in first-seen order: total
/// milliseconds, count, microseconds per occurrence. Empty when profiling
/// is off.
pub fn profile_report() -> String {
    let v = SPANS.lock().map(|v| v.clone()).unwrap_or_default();
    let mut out = String::new();
    for (name, d, n) in v {
        out.push_str(&format!(
            "profile: {name:<28} {:>9.2} ms {n:>6}x {:>9.1} us\n",
            d.as_secs_f64() * 1e3,
            d.as_secs_f64() * 1e6 / n.max(1) as f64
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_rates() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(2 << 30), "2.0 GiB");
        assert_eq!(rate(1 << 30, Duration::from_millis(500)), "2.0 GiB/s");
        assert_eq!(secs(Duration::from_millis(480)), "0.48 s");
        assert_eq!(ratio(1, 4), "25.0%");
        assert_eq!(ratio(1, 0), "-");
        assert_eq!(count(1, "process", "processes"), "1 process");
        assert_eq!(count(3, "part", "parts"), "3 parts");
    }

    #[test]
    fn counted_counts_what_crosses_it() {
        let (i0, o0) = (bytes_in(), bytes_out());
        let mut r = Counted::input(&b"hello"[..]);
        let mut buf = Vec::new();
        r.read_to_end(&mut buf).unwrap();
        let mut w = Counted::output(Vec::new());
        w.write_all(b"abc").unwrap();
        // Other tests may count too, at the same time: at least ours.
        assert!(bytes_in() - i0 >= 5);
        assert!(bytes_out() - o0 >= 3);
        assert_eq!(w.into_inner(), b"abc");
    }

    #[test]
    fn phases_round_trip() {
        for p in Phase::ALL {
            assert_eq!(Phase::ALL[p as usize], p);
        }
    }
}
