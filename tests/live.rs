//! Pre-copy (`ckpt --live`, issue 13; freeze time, issue 12): a process
//! that rewrites its memory all the time (`scribble`, which verifies all
//! of it against its own generation table every few iterations) is
//! checkpointed while it runs and restored with exactly the memory it had
//! at the freeze; a failed or killed live checkpoint leaves nothing in the
//! target (no userfaultfd, no registered mapping, the same mappings) and it
//! runs on; broken live streams are refused with one clear line.

mod common;

use common::*;
use crtools::image::{Kind, PrecopyRound, Reader, WriteOptions, Writer};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Descriptors of `pid` that are userfaultfds.
fn uffd_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|l| l.to_string_lossy().contains("userfaultfd"))
                .count()
        })
        .unwrap_or(0)
}

/// Mappings of `pid` registered with a userfaultfd (smaps `um`/`uw`/`ui`).
fn uffd_vmas(pid: i32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/smaps"))
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.starts_with("VmFlags:")
                && l.split_whitespace()
                    .any(|f| matches!(f, "uw" | "um" | "ui"))
        })
        .count()
}

fn maps(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default()
}

/// CPU burners beside a test, killed on drop.
struct Burners(#[allow(dead_code)] Vec<Workload>);

impl Burners {
    fn start() -> Burners {
        Burners(
            (0..2)
                .map(|_| Workload::spawn("sh", &["-c", "while :; do :; done"]))
                .collect(),
        )
    }
}

fn scribble(mib: &str) -> Workload {
    let w = Workload::spawn(
        workload("scribble"),
        &["-m", mib, "-w", "64", "-d", "1", "-k", "5"],
    );
    w.expect_count(None, 2);
    w
}

/// `ckpt --live -v --kill | cr-zstd | cr-sum | cr-restart`: the restored
/// process verifies all its memory three more times, and its counts go on
/// without gap or repeat; it holds no userfaultfd. With burners on both
/// cores, three times in a row.
#[test]
fn live_checkpoint_restores_the_memory_at_the_freeze() {
    let _burn = Burners::start();
    for _ in 0..3 {
        let mut orig = scribble("32");
        let pid = orig.pid().to_string();
        let Restore {
            pipeline,
            mut restored,
        } = Pipeline::new()
            .stage("ckpt", &["--live", "-v", "--kill", &pid])
            .stage("cr-zstd", &[])
            .stage("cr-sum", &[])
            .restore(&[]);
        restored.track(orig.pid());
        orig.expect_exit();
        let out = pipeline.wait();
        out.assert_success();
        let last = orig.last_count(None).expect("counts");
        restored.expect_count(None, last + 3);
        assert_continues(&orig, &restored, None, Original::Killed);
        let restored_pid = orig.pid();
        assert_eq!(uffd_fds(restored_pid), 0);
        assert_eq!(uffd_vmas(restored_pid), 0);
        let err = &out.stages[0].stderr;
        assert!(err.contains("pre-copy round 0:"), "{err}");
        assert!(err.contains("taken from pre-copy"), "{err}");
    }
}

/// The mappings of `pid` as smaps shows them: each one's line and its
/// `VmFlags`.
fn layout(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/smaps"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("VmFlags:") || !l.contains(':') || l.contains('-'))
        .filter(|l| !l.ends_with(" kB"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The destination builds the root's memory while the rounds arrive
/// (issue 13): `cr-restart -v` says the root kept its pre-copied pages in
/// place (not copied after the metadata); the restored process verifies
/// all of its memory twice (pages it zeroed or dropped since their round
/// included), holds no userfaultfd, and has exactly the mappings and
/// flags of the same image restored the usual way (`CRTOOLS_NO_KEEP`).
/// With burners on both cores, three times in a row.
#[test]
fn live_restore_keeps_the_pre_copied_pages_in_place() {
    let _burn = Burners::start();
    let dir = tempdir();
    let img = dir.path().join("live.img");
    for _ in 0..3 {
        let mut orig = scribble("32");
        ckpt_to_file(&["--live", "--kill"], orig.pid(), &img);
        orig.expect_exit();
        let pid = orig.pid();
        let last = orig.last_count(None).expect("counts");
        let mut layouts = Vec::new();
        for keep in [true, false] {
            let mut c = Command::new(bin("cr-restart"));
            c.arg("-v");
            if !keep {
                c.env("CRTOOLS_NO_KEEP", "1");
            }
            let mut r = Pipeline::new().input(&img).restore_cmd(c);
            r.restored.track(pid);
            r.restored.expect_count(None, last + 2);
            r.restored.assert_no_fail();
            assert!(
                wait_until(TIMEOUT, || r.restored.stderr().contains("restored from")),
                "no summary: {}",
                r.restored.stderr()
            );
            let err = r.restored.stderr();
            assert_eq!(
                err.contains("of pre-copied pages kept in place"),
                keep,
                "{err}"
            );
            assert_eq!(uffd_fds(pid), 0);
            assert_eq!(uffd_vmas(pid), 0);
            layouts.push(layout(pid));
            r.restored.kill();
            assert!(wait_pid_gone(pid, TIMEOUT), "pid {pid} still exists");
        }
        assert!(layouts[0].contains("VmFlags"), "{}", layouts[0]);
        assert_eq!(layouts[0], layouts[1], "kept in place vs copied");
    }
}

/// A live checkpoint whose output is cut during the rounds fails; the
/// target keeps running with nothing of the tracking left. Likewise when
/// ckpt is killed while it waits on its output.
#[test]
fn failed_or_killed_live_checkpoint_leaves_the_target_untouched() {
    let orig = scribble("32");
    let pid = orig.pid();
    let before = maps(pid);
    // Output cut after 1 MB: ckpt fails in round 0.
    let p = Pipeline::new()
        .stage("ckpt", &["--live", &pid.to_string()])
        .cmd({
            let mut c = Command::new("head");
            c.args(["-c", "1000000"]);
            c
        })
        .run();
    assert_ne!(p.codes()[0], Some(0), "{}", p.describe());
    check_untouched(&orig, &before);

    // ckpt killed while blocked on a full pipe, then the pipe closed.
    let mut ckpt = Command::new(bin("ckpt"))
        .args(["--live", &pid.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ckpt");
    std::thread::sleep(Duration::from_millis(300));
    ckpt.kill().expect("kill ckpt");
    let _ = ckpt.wait();
    drop(ckpt.stdout.take());
    check_untouched(&orig, &before);
}

/// A live checkpoint that lets the target run on (the default): when
/// `ckpt` returns, the target holds no userfaultfd, no mapping is
/// registered (tracking is removed after the release, a few MiB at a
/// time, and the pieces merge back: the same mappings), it runs on, and
/// the image restores (after the original is killed) to the memory at
/// the freeze. `-v` names the phases of the final freeze. Twice, with
/// burners on both cores.
#[test]
fn live_checkpoint_that_resumes_leaves_nothing_behind() {
    let _burn = Burners::start();
    for _ in 0..2 {
        let dir = tempdir();
        let img = dir.path().join("img");
        let mut orig = scribble("32");
        let pid = orig.pid();
        let before = maps(pid);
        let out = Command::new(bin("ckpt"))
            .args(["--live", "-v", "-o", path_str(&img), &pid.to_string()])
            .output()
            .expect("ckpt");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(err.contains("final freeze: seize"), "{err}");
        assert!(err.contains("write tracking removed"), "{err}");
        check_untouched(&orig, &before);
        orig.kill();
        let Restore {
            pipeline,
            mut restored,
        } = Pipeline::new().input(&img).restore(&[]);
        restored.track(pid);
        pipeline.wait().assert_success();
        // It goes on from the freeze (the original counted further
        // before it was killed), verifying all its memory as it goes.
        assert!(
            wait_until(TIMEOUT, || restored.counts(None).len() >= 3),
            "no counts from the restored process: {}",
            restored.report()
        );
        restored.assert_no_fail();
    }
}

fn check_untouched(orig: &Workload, before: &str) {
    let pid = orig.pid();
    let next = orig.last_count(None).unwrap_or(0) + 2;
    assert!(
        wait_until(TIMEOUT, || uffd_fds(pid) == 0 && uffd_vmas(pid) == 0),
        "tracking left in {pid}: {} userfaultfd(s), {} registered mapping(s)",
        uffd_fds(pid),
        uffd_vmas(pid)
    );
    assert_eq!(maps(pid), before, "the mappings of {pid} changed");
    orig.expect_count(None, next);
    orig.assert_no_fail();
}

/// A live image's records, to cut and rearrange.
fn records(img: &Path) -> (Vec<u8>, Vec<(Kind, Vec<u8>)>) {
    let mut r = Reader::new(std::io::BufReader::new(std::fs::File::open(img).unwrap())).unwrap();
    let hdr = r.header_raw().decode().unwrap().payload.to_vec();
    let mut recs = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        recs.push((rec.kind, rec.payload.to_vec()));
    }
    (hdr, recs)
}

fn write_image(to: &Path, hdr: &[u8], recs: &[(Kind, Vec<u8>)]) {
    let out = std::io::BufWriter::new(std::fs::File::create(to).unwrap());
    let mut w = Writer::with_header_payload(out, hdr, WriteOptions::default()).unwrap();
    for (k, p) in recs {
        w.write_record(*k, p).unwrap();
    }
    w.finish().unwrap().flush().unwrap();
}

/// cr-restart on `img`: exit 1, one line naming `what`, no process made.
fn refused(img: &Path, what: &str, cmdline: &str) {
    let r = run("cr-restart", &["--no-pids", path_str(img)], None);
    assert_eq!(r.code(), Some(1), "{r:?}");
    let err = r.stderr.trim();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(what), "expected {what:?} in: {err}");
    let copies: Vec<i32> = all_pids()
        .into_iter()
        .filter(|&p| cmdline_of(p).as_deref() == Some(cmdline))
        .collect();
    assert!(copies.is_empty(), "a process was created: {copies:?}");
}

#[test]
fn broken_live_streams_are_refused_with_one_line() {
    let dir = tempdir();
    let img = dir.path().join("live.img");
    let mut orig = scribble("8");
    let cmdline = cmdline_of(orig.pid()).expect("cmdline");
    ckpt_to_file(&["--live", "--kill"], orig.pid(), &img);
    orig.expect_exit();
    let (hdr, recs) = records(&img);
    let first_meta = recs
        .iter()
        .position(|(k, _)| !matches!(*k, Kind::PRECOPY | Kind::PRECOPY_ROUND))
        .expect("metadata");
    assert!(first_meta > 1, "no pre-copy records");
    let bad = dir.path().join("bad.img");

    // Truncated in the middle of the rounds.
    let bytes = std::fs::read(&img).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 3]).unwrap();
    refused(&bad, "truncated", &cmdline);

    // Cut in the final part: the tree was made (its root keeping its
    // pre-copied pages in place), then killed.
    std::fs::write(&bad, &bytes[..bytes.len() - 40]).unwrap();
    refused(&bad, "truncated", &cmdline);

    // A pre-copy record missing: the MM lists pages no round sent.
    let mut r2 = recs.clone();
    r2.remove(0);
    write_image(&bad, &hdr, &r2);
    refused(&bad, "that no pre-copy round sent", &cmdline);

    // The last round not closed before the metadata.
    let mut r2 = recs.clone();
    r2.remove(first_meta - 1);
    write_image(&bad, &hdr, &r2);
    refused(&bad, "inside a pre-copy round", &cmdline);

    // A round number out of order.
    let mut r2 = recs.clone();
    let round = r2
        .iter()
        .position(|(k, _)| *k == Kind::PRECOPY_ROUND)
        .unwrap();
    r2[round].1 = crtools::image::wire::encode(&PrecopyRound { round: 7, pages: 0 });
    write_image(&bad, &hdr, &r2);
    refused(&bad, "out of order", &cmdline);

    // A pre-copy record after the metadata began.
    let mut r2 = recs.clone();
    let rec = r2.remove(0);
    r2.insert(first_meta, rec);
    write_image(&bad, &hdr, &r2);
    refused(&bad, "after the metadata began", &cmdline);

    // A pre-copy record that is not whole pages.
    let mut r2 = recs.clone();
    let n = r2[0].1.len() - 100;
    r2[0].1.truncate(n);
    write_image(&bad, &hdr, &r2);
    refused(&bad, "is not whole pages", &cmdline);

    // The intact image restores (nothing above was a false alarm).
    let mut r = Pipeline::new().input(&img).restore(&[]);
    r.restored.track(orig.pid());
    let last = orig.last_count(None).expect("counts");
    r.restored.expect_count(None, last + 2);
    assert_continues(&orig, &r.restored, None, Original::Killed);
}
