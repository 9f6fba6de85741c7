//! Self-checkpoint and in-place restore: the `self_checkpoint` and
//! `self_restart` examples, `cr-restart --in-place`.
//!
//! The examples are built by `cargo test` (and `cargo build --examples`);
//! a targeted run (`cargo test --test selfckpt`) builds them first if they
//! are missing.

mod common;
use common::*;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A cargo example of this package, in `target/<profile>/examples/`.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("test directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join("examples").join(name);
    if !p.exists() {
        // `cargo test --test selfckpt` builds no examples.
        let profile = match dir.file_name().and_then(|s| s.to_str()) {
            Some("debug") | None => "dev".to_string(),
            Some(p) => p.to_string(),
        };
        let target = dir.parent().expect("target directory");
        let st = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--example", name, "--profile", &profile])
            .arg("--target-dir")
            .arg(target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build --example");
        assert!(st.success(), "cargo build --example {name} failed");
    }
    assert!(p.exists(), "example {name} not found at {}", p.display());
    p
}

/// Runs `cmd` with its standard output going to `out`; its stderr and
/// exit status. Kills it after [`TIMEOUT`].
fn run_with_stdout(mut cmd: Command, out: File) -> (std::process::ExitStatus, String) {
    use std::io::Read;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let end = std::time::Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if std::time::Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    (status, reader.join().unwrap_or_default())
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `(kind, count, pid)` of the `checkpointed|restored at count N pid P` lines.
fn events(lines: &[String]) -> Vec<(String, u64, i32)> {
    lines
        .iter()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w.as_slice() {
                [kind, "at", "count", n, "pid", p]
                    if *kind == "checkpointed" || *kind == "restored" =>
                {
                    Some((kind.to_string(), n.parse().ok()?, p.parse().ok()?))
                }
                _ => None,
            }
        })
        .collect()
}

fn assert_consecutive_from(counts: &[u64], first: u64, what: &str) {
    assert!(!counts.is_empty(), "{what}: no counts");
    assert_eq!(counts[0], first, "{what}: first count");
    check_consecutive(counts).unwrap_or_else(|e| panic!("{what}: {e}"));
}

#[test]
fn checkpoints_itself_and_every_image_resumes_at_its_count() {
    let dir = tempdir();
    let mut orig = Workload::spawn(
        example("self_checkpoint"),
        &[
            "--every",
            "3",
            "--delay",
            "20",
            "--dir",
            path_str(dir.path()),
        ],
    );
    let pid = orig.pid();
    orig.expect_line(|l| l.starts_with("checkpointed at count 9 "), "at 9");
    orig.kill();
    assert!(wait_pid_gone(pid, TIMEOUT), "original {pid} did not go");
    let lines = orig.lines();
    assert_continues_counting(&lines);
    let evs = events(&lines);
    assert!(
        evs.iter().all(|(k, _, p)| k == "checkpointed" && *p == pid),
        "the original only ever sees Checkpointed: {evs:?}"
    );
    assert_eq!(
        evs.iter().map(|e| e.1).take(3).collect::<Vec<_>>(),
        [3, 6, 9]
    );
    // Restore copies: a restored program checkpoints again into the same
    // directory.
    let saved = tempdir();
    for k in [3u64, 6, 9] {
        std::fs::copy(
            dir.path().join(format!("self.{k}.img")),
            saved.path().join(format!("{k}.img")),
        )
        .expect("copy image");
    }
    for k in [3u64, 6, 9] {
        let img = saved.path().join(format!("{k}.img"));
        let mut r = Workload::spawn(bin("cr-restart"), &["-i", path_str(&img)]);
        r.expect_count(None, k + 4);
        let lines = r.lines();
        let evs = events(&lines);
        assert_eq!(
            evs.first(),
            Some(&("restored".to_string(), k, pid)),
            "image {k}: the call returns Restored, with the original pid\n{}",
            r.report()
        );
        assert!(
            evs.iter().skip(1).all(|e| e.0 == "checkpointed"),
            "image {k}: later calls in the restored copy checkpoint: {evs:?}"
        );
        assert_consecutive_from(&counts(&lines, None), k + 1, &format!("image {k}"));
        r.kill();
        assert!(wait_pid_gone(pid, TIMEOUT), "restored {pid} did not go");
    }
}

/// The counts of a self_checkpoint run are 1, 2, 3, ... without a gap.
fn assert_continues_counting(lines: &[String]) {
    assert_consecutive_from(&counts(lines, None), 1, "original");
}

#[test]
fn checkpoint_to_its_own_stdout() {
    let dir = tempdir();
    let img = dir.path().join("out.img");
    let mut cmd = Command::new(example("self_checkpoint"));
    cmd.args(["--stdout", "--every", "4", "--until", "6", "--delay", "5"]);
    let (status, stderr) = run_with_stdout(cmd, File::create(&img).expect("create image file"));
    assert!(status.success(), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("checkpointed at count 4 ")),
        "{stderr}"
    );
    assert!(std::fs::metadata(&img).expect("image").len() > 4096);
    // The restored copy's fd 1 is out.img again (at the image's start);
    // this one writes nothing there.
    let r = run("cr-restart", &["-i", path_str(&img)], None);
    r.assert_success();
    let lines: Vec<String> = r.stderr.lines().map(String::from).collect();
    let evs = events(&lines);
    assert_eq!(evs.len(), 1, "{}", r.stderr);
    assert_eq!(evs[0].0, "restored");
    assert_eq!(evs[0].1, 4);
    assert_eq!(counts(&lines, None), [5, 6], "{}", r.stderr);
}

#[test]
fn a_failed_self_checkpoint_is_an_error_and_the_program_goes_on() {
    let mut cmd = Command::new(example("self_checkpoint"));
    cmd.args(["--stdout", "--every", "2", "--until", "3", "--delay", "5"]);
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full");
    let (status, stderr) = run_with_stdout(cmd, full);
    assert!(status.success(), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("checkpoint failed at count 2: ")),
        "{stderr}"
    );
    let lines: Vec<String> = stderr.lines().map(String::from).collect();
    assert_eq!(counts(&lines, None), [1, 2, 3]);
    assert!(events(&lines).is_empty());
}

/// Waits until the self_checkpoint run in `dir` wrote image `k`, and
/// copies it to `to`.
fn take_image(orig: &Workload, dir: &Path, k: u64, to: &Path) {
    orig.expect_line(
        |l| l.starts_with(&format!("checkpointed at count {k} ")),
        &format!("checkpointed at {k}"),
    );
    std::fs::copy(dir.join(format!("self.{k}.img")), to).expect("copy image");
}

#[test]
fn cr_restart_in_place_keeps_its_pid() {
    let dir = tempdir();
    let orig = Workload::spawn(
        example("self_checkpoint"),
        &[
            "--every",
            "4",
            "--delay",
            "20",
            "--dir",
            path_str(dir.path()),
        ],
    );
    let img = dir.path().join("keep.img");
    take_image(&orig, dir.path(), 4, &img);
    // The original still runs: an in-place restore does not need its pid.
    let pidfile = dir.path().join("pid");
    let r = Workload::spawn(
        bin("cr-restart"),
        &[
            "--in-place",
            "--pidfile",
            path_str(&pidfile),
            "-i",
            path_str(&img),
        ],
    );
    let me = r.pid();
    r.expect_count(None, 7);
    let lines = r.lines();
    assert_eq!(
        events(&lines).first(),
        Some(&("restored".to_string(), 4, me)),
        "the restored program runs as cr-restart's pid {me}\n{}",
        r.report()
    );
    assert_eq!(read_pidfile(&pidfile), me);
    assert_consecutive_from(&counts(&lines, None), 5, "restored in place");
    let comm = std::fs::read_to_string(format!("/proc/{me}/comm")).unwrap_or_default();
    assert_eq!(comm.trim(), "self_checkpoint");
    // The original goes on, untouched.
    let n = orig.last_count(None).expect("original counts");
    orig.expect_count(None, n + 2);
}

#[test]
fn self_restart_example_becomes_the_image() {
    let dir = tempdir();
    let orig = Workload::spawn(
        example("self_checkpoint"),
        &[
            "--every",
            "3",
            "--delay",
            "20",
            "--dir",
            path_str(dir.path()),
        ],
    );
    let img = dir.path().join("keep.img");
    take_image(&orig, dir.path(), 3, &img);
    let r = Workload::spawn(example("self_restart"), &[path_str(&img)]);
    let me = r.pid();
    r.expect_count(None, 5);
    assert_eq!(
        events(&r.lines()).first(),
        Some(&("restored".to_string(), 3, me)),
        "{}",
        r.report()
    );
    assert!(r.stderr().contains(&format!("self_restart pid {me}")));
    assert_consecutive_from(&counts(&r.lines(), None), 4, "self_restart");
}

#[test]
fn in_place_runs_a_checkpointed_c_program_from_where_it_was() {
    let dir = tempdir();
    let log = dir.path().join("log");
    // onetask: a log file and its offset; pipes2: a pipe with data in it;
    // ptydata: ptys with data waiting, checked on SIGUSR1.
    for (name, args) in [
        ("onetask", vec!["-d", "20", "-l", path_str(&log)]),
        ("pipes2", vec!["-d", "20"]),
        ("ptydata", vec!["-d", "20"]),
    ] {
        let orig = Workload::spawn(workload(name), &args);
        orig.expect_count(None, 5);
        let img = dir.path().join(format!("{name}.img"));
        ckpt_to_file(&["--kill"], orig.pid(), &img);
        let at = orig.last_count(None).expect("counts");
        drop(orig);
        let mut cmd = Command::new(bin("cr-restart"));
        cmd.args(["--in-place", "-i", path_str(&img)]);
        let r = Workload::spawn_cmd(cmd);
        let me = r.pid();
        r.expect_count(None, at + 5);
        let restored = r.counts(None);
        assert_eq!(restored[0], at + 1, "{name}: {}", r.report());
        check_consecutive(&restored).unwrap_or_else(|e| panic!("{name}: {e}"));
        if name == "ptydata" {
            assert!(signal(me, libc::SIGUSR1));
            r.expect_line(|l| l == "data ok", "data ok");
        }
        r.assert_no_fail();
        let comm = std::fs::read_to_string(format!("/proc/{me}/comm")).unwrap_or_default();
        assert_eq!(comm.trim(), name, "{name} runs as cr-restart's pid {me}");
    }
}

#[test]
fn in_place_refuses_trees_and_threads_before_touching_anything() {
    let dir = tempdir();
    for (name, args, why) in [
        ("multitask", &["-d", "50"][..], "processes"),
        ("threads", &["-d", "50", "-t", "2"][..], "threads"),
    ] {
        let w = Workload::spawn(workload(name), args);
        w.expect_line(|l| l.contains("count 2"), "count 2");
        let img = dir.path().join(format!("{name}.img"));
        ckpt_to_file(&[], w.pid(), &img);
        let r = run("cr-restart", &["--in-place", "-i", path_str(&img)], None);
        assert_eq!(r.code(), Some(1), "{name}: {}", r.stderr);
        assert!(
            r.stderr.contains("cannot restore in place") && r.stderr.contains(why),
            "{name}: {}",
            r.stderr
        );
        // The workload was not touched and goes on.
        w.expect_line(|l| l.contains("count 4"), "count 4");
        w.assert_no_fail();
    }
}

#[test]
fn in_place_of_a_truncated_image_fails_before_the_point_of_no_return() {
    let dir = tempdir();
    let orig = Workload::spawn(
        example("self_checkpoint"),
        &[
            "--every",
            "2",
            "--delay",
            "20",
            "--dir",
            path_str(dir.path()),
        ],
    );
    let img = dir.path().join("keep.img");
    take_image(&orig, dir.path(), 2, &img);
    drop(orig);
    let data = std::fs::read(&img).expect("read image");
    // Metadata intact, page data cut short: refused while cr-restart is
    // still itself (a clean error and exit code, not a kill).
    let cut = &data[..data.len() - 1000];
    let mut cmd = Command::new(bin("cr-restart"));
    cmd.arg("--in-place");
    let r = run_cmd(cmd, Some(cut));
    assert_eq!(r.code(), Some(1), "{}", r.stderr);
    assert!(r.stderr.starts_with("cr-restart: "), "{}", r.stderr);
    assert!(r.stdout.is_empty());
}
