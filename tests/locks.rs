//! File locks across a checkpoint and restore (issue 18 item 2): POSIX
//! record locks, OFD locks and `flock` locks are held again by the restored
//! tree (a probe process is refused them, with their ranges and types), the
//! restored program can release them, a lock someone took in the meantime
//! fails the restore with nothing left running, and a python3 sqlite3
//! program inside `BEGIN EXCLUSIVE` keeps its database locked and commits.
//!
//! Every process and temporary file is cleaned up by the guards in
//! `common`, also when a test fails. No test asserts timing.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Refused: another process holds a conflicting lock.
const REFUSED: i32 = 3;
const GOT: i32 = 0;

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A file of 1000 bytes in a fresh temporary directory.
fn data_file() -> (TempDir, PathBuf) {
    let dir = tempdir();
    let file = dir.path().join("data");
    std::fs::write(&file, [0u8; 1000]).expect("write the data file");
    (dir, file)
}

/// Tries to take a lock on `file` from a new process without waiting (and
/// lets it go as the probe exits): `GOT` or `REFUSED`.
fn probe(kind: &str, rw: &str, start: u64, len: u64, file: &Path) -> i32 {
    let mut c = Command::new(workload("locks"));
    c.args(["-p", kind, "-t", rw, "-s", &start.to_string()])
        .args(["-l", &len.to_string(), "-f", path_str(file)]);
    let f = run_cmd(c, None);
    let code = f.code().expect("the probe exited");
    assert!(code == GOT || code == REFUSED, "probe failed: {}", f.stderr);
    code
}

/// Starts `locks -m MODE` on `file` and waits until it holds its locks
/// (every process of it, for the tags given) and counts.
fn start(mode: &str, file: &Path, tags: &[Option<&str>]) -> Workload {
    let w = Workload::spawn(
        workload("locks"),
        &["-m", mode, "-f", path_str(file), "-d", "20"],
    );
    for &t in tags {
        w.expect_count(t, 2);
    }
    w
}

/// Migrates `orig` with `ckpt --kill | cr-restart` and checks every tag
/// counts on.
fn migrate_locked(orig: &mut Workload, tags: &[Option<&str>]) -> Restore {
    migrate_and_continue(orig, tags, &[], 2, 3)
}

/// Sends SIGUSR1 to `pid` of the restored tree and waits for its
/// "released" line.
fn release(r: &Restore, pid: i32, tag: Option<&str>) {
    assert!(signal(pid, libc::SIGUSR1), "pid {pid} is gone");
    let want = match tag {
        Some(t) => format!("{t} released"),
        None => "released".to_string(),
    };
    r.restored.expect_line(|l| l == want, &want);
}

#[test]
fn posix_record_locks_keep_their_ranges_and_types() {
    let (_dir, file) = data_file();
    let mut orig = start("posix", &file, &[None]);
    // Write lock on 100-199, read lock on 300 to the end.
    let expect = |before: &str| {
        assert_eq!(probe("posix", "w", 150, 1, &file), REFUSED, "{before}");
        assert_eq!(probe("posix", "r", 199, 1, &file), REFUSED, "{before}");
        assert_eq!(probe("posix", "w", 200, 100, &file), GOT, "{before}");
        assert_eq!(probe("posix", "r", 400, 1, &file), GOT, "{before}");
        assert_eq!(probe("posix", "w", 5000, 1, &file), REFUSED, "{before}");
        // POSIX locks and OFD locks conflict.
        assert_eq!(probe("ofd", "w", 99, 2, &file), REFUSED, "{before}");
    };
    expect("before the checkpoint");
    let r = migrate_locked(&mut orig, &[None]);
    expect("after the restore");
    release(&r, orig.pid(), None);
    assert_eq!(probe("posix", "w", 0, 0, &file), GOT);
    r.restored
        .expect_count(None, r.restored.last_count(None).unwrap() + 2);
    r.restored.assert_no_fail();
}

#[test]
fn posix_read_locks_of_parent_and_child_are_both_restored() {
    let (_dir, file) = data_file();
    let tags = [Some("parent"), Some("child")];
    let mut orig = start("shared", &file, &tags);
    assert_eq!(probe("posix", "w", 0, 1, &file), REFUSED);
    assert_eq!(probe("posix", "r", 0, 0, &file), GOT);
    let child = children_of(orig.pid())[0];
    let r = migrate_locked(&mut orig, &tags);
    assert_eq!(probe("posix", "w", 0, 1, &file), REFUSED);
    assert_eq!(probe("posix", "r", 0, 0, &file), GOT);
    // The parent lets go: the child's read lock still refuses a writer.
    release(&r, orig.pid(), Some("parent"));
    assert_eq!(probe("posix", "w", 0, 1, &file), REFUSED);
    release(&r, child, Some("child"));
    assert_eq!(probe("posix", "w", 0, 0, &file), GOT);
    r.restored.assert_no_fail();
}

#[test]
fn ofd_locks_stay_with_their_description() {
    let (_dir, file) = data_file();
    let tags = [None, Some("child")];
    let mut orig = start("ofd", &file, &tags);
    let expect = |when: &str| {
        assert_eq!(probe("ofd", "r", 9, 1, &file), REFUSED, "{when}");
        assert_eq!(probe("posix", "r", 0, 10, &file), REFUSED, "{when}");
        assert_eq!(probe("ofd", "w", 10, 490, &file), GOT, "{when}");
        assert_eq!(probe("ofd", "r", 600, 0, &file), GOT, "{when}");
        assert_eq!(probe("ofd", "w", 600, 0, &file), REFUSED, "{when}");
    };
    expect("before the checkpoint");
    let r = migrate_locked(&mut orig, &tags);
    expect("after the restore");
    release(&r, orig.pid(), None);
    assert_eq!(probe("ofd", "w", 0, 0, &file), GOT);
    r.restored.assert_no_fail();
}

#[test]
fn flock_shared_and_exclusive_locks_are_restored() {
    for (mode, shared_probe) in [("flock-sh", GOT), ("flock-ex", REFUSED)] {
        let (_dir, file) = data_file();
        let mut orig = start(mode, &file, &[None]);
        assert_eq!(probe("flock", "w", 0, 0, &file), REFUSED, "{mode}");
        assert_eq!(probe("flock", "r", 0, 0, &file), shared_probe, "{mode}");
        let r = migrate_locked(&mut orig, &[None]);
        assert_eq!(probe("flock", "w", 0, 0, &file), REFUSED, "{mode}");
        assert_eq!(probe("flock", "r", 0, 0, &file), shared_probe, "{mode}");
        release(&r, orig.pid(), None);
        assert_eq!(probe("flock", "w", 0, 0, &file), GOT, "{mode}");
        r.restored.assert_no_fail();
    }
}

/// Between `ckpt --kill` and the restore another process takes the lock:
/// cr-restart fails with one line naming the process, descriptor, file and
/// range, and nothing of the tree is left running.
#[test]
fn a_lock_taken_meanwhile_fails_the_restore_and_leaves_nothing() {
    for (mode, tags, want) in [
        ("posix", &[None][..], "POSIX write lock on bytes 100-199"),
        (
            "flock-ex",
            &[None][..],
            "flock write lock on the whole file",
        ),
        (
            "ofd",
            &[None, Some("child")][..],
            "OFD write lock on bytes 0-9",
        ),
    ] {
        let (dir, file) = data_file();
        let mut orig = start(mode, &file, tags);
        let tree = orig.tree();
        let img = dir.path().join("img");
        ckpt_to_file(&["--kill"], orig.pid(), &img);
        orig.wait_exit(TIMEOUT)
            .expect("ckpt --kill ended the workload");
        for &p in &tree {
            assert!(wait_pid_gone(p, TIMEOUT), "pid {p} lingers");
        }
        // cr-info lists the locks under their descriptor.
        let mut info = Command::new(bin("cr-info"));
        info.stdin(std::fs::File::open(&img).expect("open the image"));
        let info = run_cmd_inherit_stdin(info);
        assert!(
            info.contains(want),
            "{mode}: cr-info shows no lock:\n{info}"
        );
        // The same program takes the same locks first.
        let thief = start(mode, &file, tags);
        let f = run("cr-restart", &["-i", path_str(&img)], None);
        assert_eq!(f.code(), Some(1), "{mode}: {}", f.stderr);
        let err = f.stderr.trim_end();
        assert_eq!(err.lines().count(), 1, "{mode}: {err}");
        assert!(err.contains(want), "{mode}: {err}");
        assert!(err.contains(path_str(&file)), "{mode}: {err}");
        assert!(err.contains(&format!("pid {}", tree[0])), "{mode}: {err}");
        assert!(err.contains("descriptor 3"), "{mode}: {err}");
        if mode == "posix" {
            assert!(
                err.contains(&format!("held by pid {}", thief.pid())),
                "{err}"
            );
        }
        for &p in &tree {
            assert!(wait_pid_gone(p, TIMEOUT), "{mode}: pid {p} left running");
        }
        thief.assert_no_fail();
    }
}

/// Runs a command with the stdin it was given; its stdout, or a panic
/// with its stderr.
fn run_cmd_inherit_stdin(mut c: Command) -> String {
    let out = c.output().expect("run the command");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sqlite(db: &Path, sql: &str) -> Finished {
    let mut c = Command::new("python3");
    c.args([
        "-c",
        "import sqlite3, sys\n\
         c = sqlite3.connect(sys.argv[1], timeout=0)\n\
         for row in c.execute(sys.argv[2]): print(*row)",
        path_str(db),
        sql,
    ]);
    run_cmd(c, None)
}

/// The acceptance case of issue 18: a python3 sqlite3 program inside
/// `BEGIN EXCLUSIVE` keeps its database locked across the checkpoint and
/// restore, then commits; the database is intact with every row.
#[test]
fn sqlite_exclusive_transaction_survives_the_restore() {
    let dir = tempdir();
    let db = dir.path().join("test.db");
    let go = dir.path().join("go");
    let mut orig = Workload::spawn(
        "python3",
        &[
            path_str(&script("sqlite_tx.py")),
            path_str(&db),
            "100",
            path_str(&go),
        ],
    );
    orig.expect_line(|l| l == "ready", "ready");
    orig.expect_count(None, 3);
    let locked = sqlite(&db, "SELECT count(*) FROM t");
    assert!(
        locked.stderr.contains("database is locked"),
        "{}",
        locked.stderr
    );
    let mut r = migrate(&mut orig, &[]);
    r.restored
        .expect_count(None, orig.last_count(None).unwrap() + 3);
    r.expect_pipeline_ok();
    let locked = sqlite(&db, "SELECT count(*) FROM t");
    assert!(
        locked.stderr.contains("database is locked"),
        "the restored program lost its lock: {} {}",
        String::from_utf8_lossy(&locked.stdout),
        locked.stderr
    );
    std::fs::write(&go, b"").expect("write the go file");
    r.restored.expect_line(|l| l == "committed", "committed");
    let status = r.restored.expect_exit();
    assert!(status.success(), "{}", r.restored.report());
    let check = sqlite(&db, "PRAGMA integrity_check");
    assert_eq!(
        String::from_utf8_lossy(&check.stdout).trim(),
        "ok",
        "{}",
        check.stderr
    );
    let rows = sqlite(&db, "SELECT count(*), min(v), max(id) FROM t");
    assert_eq!(
        String::from_utf8_lossy(&rows.stdout).trim(),
        "100 row 0 100",
        "{}",
        rows.stderr
    );
}

/// `cr-restart --in-place`: the caller becomes the process and holds its
/// POSIX locks; with someone holding one in the way it refuses before it
/// changes itself.
#[test]
fn in_place_restore_takes_the_locks_or_refuses_first() {
    let (dir, file) = data_file();
    let mut orig = start("posix", &file, &[None]);
    let img = dir.path().join("img");
    ckpt_to_file(&["--kill"], orig.pid(), &img);
    orig.wait_exit(TIMEOUT)
        .expect("ckpt --kill ended the workload");
    let thief = start("posix", &file, &[None]);
    let f = run("cr-restart", &["--in-place", "-i", path_str(&img)], None);
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    assert!(
        f.stderr.contains("POSIX write lock on bytes 100-199")
            && f.stderr.contains(&format!("held by pid {}", thief.pid())),
        "{}",
        f.stderr
    );
    drop(thief);
    let r = Workload::spawn(bin("cr-restart"), &["--in-place", "-i", path_str(&img)]);
    r.expect_count(None, orig.last_count(None).unwrap() + 2);
    assert_eq!(probe("posix", "w", 150, 1, &file), REFUSED);
    assert_eq!(probe("posix", "w", 250, 1, &file), GOT);
    assert!(signal(r.pid(), libc::SIGUSR1));
    r.expect_line(|l| l == "released", "released");
    assert_eq!(probe("posix", "w", 150, 1, &file), GOT);
    r.assert_no_fail();
}
