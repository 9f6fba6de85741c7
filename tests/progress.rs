//! Progress lines and `-v` summaries (issue 15): each program, run with its
//! stderr on a real pseudo-terminal, draws a progress line there and, with
//! `-v`, leaves a one-line summary; run with stderr on a pipe it prints
//! nothing (with `-v`, only the summary); `-q` and `--no-progress` silence
//! the line, `--progress` forces it. What the programs write is the same
//! byte for byte either way. Also the common options: usage errors are one
//! line naming the program (exit 2), and positional input files work.
//!
//! Every process and temporary file is cleaned up by guards, also when a
//! test fails. No test asserts timing: a progress line is drawn when a
//! program starts and once more before it is cleared, however fast it is.

mod common;

use common::*;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use crtools::image::synth::{self, Spec};

/// A new pseudo-terminal of 100 columns: its master and its slave, both
/// close-on-exec from the start, so that no process another test spawns at
/// the same moment inherits them (a tree holding the slave would keep the
/// master from its end of file, and would carry the pty into its image).
fn open_pty() -> (File, File) {
    use nix::fcntl::OFlag;
    use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
    use std::os::unix::fs::OpenOptionsExt;
    let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let master = nix::pty::posix_openpt(flags).expect("posix_openpt");
    nix::pty::grantpt(&master).expect("grantpt");
    nix::pty::unlockpt(&master).expect("unlockpt");
    let name = nix::pty::ptsname_r(&master).expect("ptsname_r");
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(&name)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let size = libc::winsize {
        ws_row: 30,
        ws_col: 100,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is valid.
    let r = unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    assert_eq!(r, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    // SAFETY: the descriptor is the master's own, handed over whole.
    let master = unsafe { File::from_raw_fd(master.into_raw_fd()) };
    (master, slave)
}

/// Runs `cmd` with its stderr on the slave side of a new pseudo-terminal
/// and returns its status and everything the terminal got.
fn under_pty(mut cmd: Command) -> (ExitStatus, String) {
    let (mut master, slave) = open_pty();
    cmd.stderr(Stdio::from(slave));
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    // The slave is closed here now (moved into the command, dropped with it):
    // the master reads EIO once the child and its children have closed it.
    drop(cmd);
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    });
    let status = child.wait().expect("wait");
    let got = reader.join().expect("pty reader");
    (status, String::from_utf8_lossy(&got).into_owned())
}

/// Runs `cmd` with stderr on a pipe; its status and stderr.
fn piped(mut cmd: Command) -> (ExitStatus, String) {
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What a terminal shows, line by line: escape sequences removed, every
/// line redrawn after a carriage return kept as a line of its own.
fn segments(text: &str) -> Vec<String> {
    let mut plain = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        plain.push(c);
    }
    plain
        .split(['\r', '\n'])
        .map(|s| s.trim_end().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A progress line of `name` (its summary is not one): `NAME: ` and then
/// what `marks` says such a line has.
fn progress_lines(segs: &[String], name: &str, marks: &[&str]) -> Vec<String> {
    let prefix = format!("{name}: ");
    segs.iter()
        .filter(|s| s.starts_with(&prefix) && marks.iter().all(|m| s.contains(m)))
        .cloned()
        .collect()
}

/// Checks a `-v` summary: one line, the program's name, a time and a rate.
fn assert_summary(line: &str, name: &str, what: &str) {
    assert!(
        line.starts_with(&format!("{name}: ")) && line.contains(what),
        "{name}: not a summary with {what:?}: {line:?}"
    );
    assert!(line.contains(" s (") && line.contains("/s)"), "{line:?}");
}

/// The part of a summary that does not depend on time: up to " in ".
fn sizes_of(summary: &str) -> &str {
    summary.split(" in ").next().unwrap_or(summary)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Stands for the run's own directory in [`Case::args`] (where cr-split
/// writes its parts).
const OUT: &str = "@out";

/// One filter run: the program, its arguments, and what its progress line
/// and summary contain.
struct Case {
    name: &'static str,
    args: Vec<String>,
    /// Words every progress line of it has.
    marks: &'static [&'static str],
    /// Words its summary has.
    summary: &'static str,
    /// Whether -q also silences what it writes on stdout (cr-sum --check's
    /// report).
    quiet_stdout: bool,
}

impl Case {
    fn cmd(&self, out_dir: &Path, extra: &[&str]) -> Command {
        std::fs::create_dir_all(out_dir).unwrap();
        let mut c = Command::new(bin(self.name));
        c.args(extra);
        for a in &self.args {
            match a.strip_prefix(OUT) {
                Some(rest) => c.arg(format!("{}{rest}", s(out_dir))),
                None => c.arg(a),
            };
        }
        c.stdin(Stdio::null());
        c.stdout(File::create(out_dir.join("stdout")).unwrap());
        c
    }
}

/// Every file a run wrote, by name, with its bytes.
fn outputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    v.sort();
    v
}

/// The filters and cr-info on an 8 MiB image: on a terminal, progress and
/// (with -v) the summary; on a pipe, nothing (with -v, the summary, the same
/// sizes); -q and --no-progress silence the line, --progress forces it; the
/// images and reports written are byte-identical in every case.
#[test]
fn filters_show_progress_on_a_terminal_and_write_the_same_bytes() {
    let dir = tempdir();
    let d = dir.path().to_path_buf();
    let img = d.join("a.img");
    std::fs::write(&img, synth::generate(&Spec::small(7, 8 << 20))).unwrap();
    let zimg = d.join("a.zst");
    let summed = d.join("a.sum");
    let parts = d.join("parts");
    std::fs::create_dir(&parts).unwrap();
    let prefix = parts.join("p");
    for (name, args) in [
        ("cr-zstd", vec!["-o", s(&zimg), s(&img)]),
        ("cr-sum", vec!["-o", s(&summed), s(&img)]),
        ("cr-split", vec!["-b", "3M", s(&prefix), s(&img)]),
    ] {
        run(name, &args, None).assert_success();
    }
    let mut part_files: Vec<PathBuf> = std::fs::read_dir(&parts)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    part_files.sort();
    assert!(part_files.len() >= 3, "{part_files:?}");
    let args = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let mut join = args(&["-j"]);
    join.extend(part_files.iter().map(|p| s(p).to_string()));
    let filter: &[&str] = &[" in, ", " out ("];
    let case = |name, args, marks, summary| Case {
        name,
        args,
        marks,
        summary,
        quiet_stdout: false,
    };
    let cases = [
        case("cr-zstd", args(&[s(&img)]), filter, " -> "),
        case("cr-zstd", args(&["-d", s(&zimg)]), filter, " -> "),
        case("cr-sum", args(&[s(&img)]), filter, " -> "),
        Case {
            quiet_stdout: true,
            ..case(
                "cr-sum",
                args(&["--check", s(&summed)]),
                &[" in, "],
                " records verified, ",
            )
        },
        case("cr-info", args(&[s(&img)]), &["reading", "/"], " read in "),
        case(
            "cr-split",
            args(&["-b", "3M", &format!("{OUT}/part"), s(&img)]),
            filter,
            "split into ",
        ),
        case("cr-split", join, filter, " parts joined: "),
    ];
    for (i, case) in cases.iter().enumerate() {
        let name = case.name;
        let run_dir = |tag: &str| d.join(format!("run{i}-{tag}"));
        // On a terminal, with -v: progress, then the summary.
        let (st, tty) = under_pty(case.cmd(&run_dir("tty"), &["-v"]));
        assert!(st.success(), "{name} #{i}: {st}: {tty}");
        let segs = segments(&tty);
        assert!(
            !progress_lines(&segs, name, case.marks).is_empty(),
            "{name} #{i}: no progress line on the terminal: {tty:?}"
        );
        let summary = segs.last().expect("something on the terminal").clone();
        assert_summary(&summary, name, case.summary);
        // On a pipe: nothing at all.
        let (st, err) = piped(case.cmd(&run_dir("pipe"), &[]));
        assert!(st.success(), "{name} #{i}: {st}: {err}");
        assert_eq!(err, "", "{name} #{i}: stderr not a terminal");
        // On a pipe with -v: the summary only, with the same sizes.
        let (st, err) = piped(case.cmd(&run_dir("pipe-v"), &["-v"]));
        assert!(st.success(), "{name} #{i}: {st}: {err}");
        assert_eq!(err.lines().count(), 1, "{name} #{i}: {err:?}");
        assert_summary(err.trim_end(), name, case.summary);
        assert_eq!(sizes_of(err.trim_end()), sizes_of(&summary), "{name} #{i}");
        // -q on a terminal: nothing; --no-progress -v: the summary only.
        let (st, tty) = under_pty(case.cmd(&run_dir("tty-q"), &["-v", "-q"]));
        assert!(st.success(), "{name} #{i}: {st}: {tty}");
        assert_eq!(tty, "", "{name} #{i} -q");
        let (st, tty) = under_pty(case.cmd(&run_dir("tty-np"), &["--no-progress", "-v"]));
        assert!(st.success(), "{name} #{i}: {st}: {tty}");
        let segs = segments(&tty);
        assert_eq!(segs.len(), 1, "{name} #{i} --no-progress: {tty:?}");
        assert_summary(&segs[0], name, case.summary);
        // --progress on a pipe: the line is drawn anyway.
        let (st, err) = piped(case.cmd(&run_dir("pipe-p"), &["--progress"]));
        assert!(st.success(), "{name} #{i}: {st}: {err}");
        assert!(
            !progress_lines(&segments(&err), name, case.marks).is_empty(),
            "{name} #{i} --progress: {err:?}"
        );
        // The same bytes out, every way.
        let first = outputs(&run_dir("tty"));
        for tag in ["pipe", "pipe-v", "tty-q", "tty-np", "pipe-p"] {
            if tag == "tty-q" && case.quiet_stdout {
                assert_eq!(std::fs::read(run_dir(tag).join("stdout")).unwrap(), b"");
                continue;
            }
            assert!(
                outputs(&run_dir(tag)) == first,
                "{name} #{i}: the output with {tag} differs"
            );
        }
    }
}

/// Lines of a file that are counts ("count N ...").
fn file_counts(p: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<String> = text.lines().map(String::from).collect();
    counts(&lines, None)
}

/// ckpt and cr-restart on a real process: on a terminal, ckpt shows its
/// phase and bytes written and cr-restart its phase and a bar of the image
/// file read, each then its summary; on a pipe, neither prints anything.
/// The restored process counts on either way. Each checkpoint is a new
/// image (a new stream id, the process moved on), so byte-identity is
/// checked on the filters; here the images restore.
#[test]
fn ckpt_and_restart_show_progress_on_a_terminal_only() {
    let dir = tempdir();
    let d = dir.path();
    let mut orig = Workload::spawn(workload("bigmem"), &["-d", "20", "-m", "16"]);
    orig.expect_count(None, 3);
    let pid = orig.pid();
    let pid_s = pid.to_string();

    // ckpt on a terminal, the tree left running: phases, then the summary.
    let img = d.join("a.img");
    let mut c = Command::new(bin("ckpt"));
    c.args(["-v", "-o", s(&img), &pid_s]);
    let (st, tty) = under_pty(c);
    assert!(st.success(), "ckpt: {st}: {tty}");
    let segs = segments(&tty);
    let lines = progress_lines(&segs, "ckpt", &[" written, "]);
    assert!(
        lines.iter().any(|l| l.contains(" release ")),
        "ckpt: no final progress line: {tty:?}"
    );
    assert_summary(segs.last().unwrap(), "ckpt", " from 1 process in ");
    assert!(segs.last().unwrap().contains(", frozen "), "{segs:?}");
    // Still running, and the image is whole.
    let n = orig.last_count(None).unwrap_or(0);
    orig.expect_count(None, n + 2);
    run("cr-info", &[s(&img)], None).assert_success();

    // ckpt on a pipe: nothing; -v: the summary alone.
    let (st, err) = piped({
        let mut c = Command::new(bin("ckpt"));
        c.args(["-o", s(&img), &pid_s]);
        c
    });
    assert!(st.success(), "ckpt: {st}: {err}");
    assert_eq!(err, "");
    let (st, err) = piped({
        let mut c = Command::new(bin("ckpt"));
        c.args(["-v", "--kill", "-o", s(&img), &pid_s]);
        c
    });
    assert!(st.success(), "ckpt: {st}: {err}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert_summary(err.trim_end(), "ckpt", " from 1 process in ");
    let last = orig.last_count(None).unwrap_or(0);
    orig.wait_exit(TIMEOUT);
    assert!(wait_pid_gone(pid, TIMEOUT), "pid {pid} still there");

    // cr-restart FILE on a terminal, detached, its output to a file: phases
    // with a bar of the file read, then the summary.
    let out = d.join("out1");
    let mut c = Command::new(bin("cr-restart"));
    let err1 = format!("2={}", s(&d.join("err1")));
    c.args([
        "-v",
        "-d",
        "--fd",
        &format!("1={}", s(&out)),
        "--fd",
        &err1,
        s(&img),
    ]);
    c.stdin(Stdio::null()).stdout(Stdio::null());
    let (st, tty) = under_pty(c);
    assert!(st.success(), "cr-restart: {st}: {tty}");
    orig.track(pid);
    let segs = segments(&tty);
    let lines = progress_lines(&segs, "cr-restart", &["] ", "/"]);
    assert!(
        lines.iter().any(|l| l.contains(" release [")),
        "cr-restart: no final progress line: {tty:?}"
    );
    assert_summary(
        segs.last().unwrap(),
        "cr-restart",
        "1 process restored from ",
    );
    assert!(
        wait_until(TIMEOUT, || file_counts(&out).len() >= 3),
        "the restored process does not count: {:?}",
        std::fs::read_to_string(&out)
    );
    check_continuation(&[last], &file_counts(&out), Original::Killed)
        .unwrap_or_else(|e| panic!("{e}"));

    // Again on a pipe: cr-restart prints nothing. The output is a file of
    // the image now, reopened where it was.
    let img2 = d.join("b.img");
    run("ckpt", &["--kill", "-o", s(&img2), &pid_s], None).assert_success();
    let last = *file_counts(&out).last().unwrap();
    assert!(wait_pid_gone(pid, TIMEOUT), "pid {pid} still there");
    let mut c = Command::new(bin("cr-restart"));
    c.arg(s(&img2));
    c.args(["-d"]).stdin(Stdio::null()).stdout(Stdio::null());
    let (st, err) = piped(c);
    assert!(st.success(), "cr-restart: {st}: {err}");
    assert_eq!(err, "");
    assert!(
        wait_until(TIMEOUT, || file_counts(&out).last() >= Some(&(last + 3))),
        "the restored process does not count on: {:?}",
        std::fs::read_to_string(&out)
    );
    check_consecutive(&file_counts(&out)).unwrap_or_else(|e| panic!("{e}"));
}

/// Usage errors, in every program: exit 2 and one line that starts with the
/// program's name; -h and -V work; the common options are accepted by all
/// (but cr-migrate, whose letters are ssh's).
#[test]
fn usage_errors_are_one_line_naming_the_program() {
    for program in [
        "ckpt",
        "cr-restart",
        "cr-zstd",
        "cr-sum",
        "cr-split",
        "cr-info",
        "cr-delta",
        "cr-migrate",
    ] {
        for args in [
            &["--no-such-option"][..],
            &["-v", "--bogus=1", "x", "y", "z"],
        ] {
            let f = run(program, args, None);
            assert_eq!(f.code(), Some(2), "{program} {args:?}: {}", f.stderr);
            assert!(
                f.stderr.starts_with(&format!("{program}: ")),
                "{program}: {}",
                f.stderr
            );
            assert_eq!(f.stderr.lines().count(), 1, "{program}: {}", f.stderr);
            assert!(
                f.stderr.contains(&format!("(see {program} --help)")),
                "{}",
                f.stderr
            );
        }
        let f = run(program, &["-h"], None).assert_success().stdout.clone();
        let help = String::from_utf8_lossy(&f);
        // cr-migrate drives the others and has ssh's option letters.
        let common = [
            "--verbose",
            "--quiet",
            "--force",
            "--progress",
            "--no-progress",
        ];
        for opt in common.iter().filter(|_| program != "cr-migrate") {
            assert!(help.contains(opt), "{program} -h lacks {opt}");
        }
        let f = run(program, &["-V"], None).assert_success().stdout.clone();
        assert!(String::from_utf8_lossy(&f).contains(env!("CARGO_PKG_VERSION")));
    }
    // A missing argument, a conflict: one line too.
    for (program, args) in [
        ("ckpt", &[][..]),
        ("cr-split", &["-o", "x", "-b", "1M", "p"][..]),
        ("cr-sum", &["--check", "-o", "x"][..]),
    ] {
        let f = run(program, args, None);
        assert_eq!(f.code(), Some(2), "{program} {args:?}: {}", f.stderr);
        assert!(
            f.stderr.starts_with(&format!("{program}: ")),
            "{}",
            f.stderr
        );
        assert_eq!(f.stderr.lines().count(), 1, "{}", f.stderr);
    }
}

/// The positional input FILE of every program that reads an image, and
/// `-o FILE` of those that write one, give what stdin and stdout give.
#[test]
fn positional_input_files_and_outputs() {
    let dir = tempdir();
    let d = dir.path();
    let bytes = synth::generate(&Spec::small(3, 1 << 20));
    let img = d.join("a.img");
    std::fs::write(&img, &bytes).unwrap();
    for (program, args) in [
        ("cr-zstd", &["-l", "1"][..]),
        ("cr-sum", &[][..]),
        ("cr-info", &[][..]),
        ("cr-info", &["--json"][..]),
    ] {
        let from_stdin = run(program, args, Some(&bytes))
            .assert_success()
            .stdout
            .clone();
        let mut with_file = args.to_vec();
        with_file.push(s(&img));
        let from_file = run(program, &with_file, None)
            .assert_success()
            .stdout
            .clone();
        assert_eq!(from_file, from_stdin, "{program} {args:?} FILE");
        let out = d.join(format!("{program}.out"));
        let mut with_o = with_file.clone();
        with_o.extend(["-o", s(&out)]);
        run(program, &with_o, None).assert_success();
        assert_eq!(std::fs::read(&out).unwrap(), from_stdin, "{program} -o");
    }
}
