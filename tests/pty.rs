//! Pseudo-terminals across checkpoint and restore (run as root): the
//! classic `pty` workload, data waiting in both directions (`ptydata`), a
//! session running cat(1) on a pty slave (`ptyecho`), and a checkpoint that
//! leaves the original's waiting data where it was.
//!
//! Restores use original pids and the original pty indices, so the tests
//! of this file run one at a time (a lock), and each checks afterwards that
//! the ptys it used are gone (`/dev/pts/N` disappears with the last close).

mod common;
use common::*;

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The numbers of a `pts=A,B,...` field.
fn pts_in(line: &str) -> Vec<u32> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("pts="))
        .map(|v| v.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default()
}

/// The number in a `KEY=N` field.
fn field(line: &str, key: &str) -> Option<i32> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// Fields 7 and 8 of `/proc/PID/stat`: the controlling terminal's device
/// number and its foreground process group.
fn tty_of(pid: i32) -> Option<(i64, i64)> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = String::from_utf8_lossy(&stat[close + 2..]).into_owned();
    let f: Vec<i64> = rest
        .split_whitespace()
        .skip(4)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    (f.len() == 2).then(|| (f[0], f[1]))
}

/// Panics unless every `/dev/pts/N` of `indices` is gone within a few seconds.
fn assert_ptys_gone(indices: &[u32]) {
    let end = Instant::now() + Duration::from_secs(5);
    for i in indices {
        let p = format!("/dev/pts/{i}");
        while std::path::Path::new(&p).exists() {
            assert!(Instant::now() < end, "{p} still exists after the test");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `ckpt --kill PID | cr-restart`; reaps the killed original (our child)
/// so its pid is free for the restore.
fn kill_and_restore(orig: &mut Workload) -> Restore {
    let pid = orig.pid().to_string();
    let r = Pipeline::new()
        .stage("ckpt", &["--kill", &pid])
        .restore(&[]);
    orig.expect_exit();
    r
}

#[test]
fn pty_workload_round_trip() {
    let _s = serial();
    let mut orig = Workload::spawn(workload("pty"), &["-d", "20"]);
    let first = orig.expect_count(None, 3);
    let pts = pts_in(&first);
    assert_eq!(pts.len(), 2, "{first}");
    let mut r = kill_and_restore(&mut orig);
    let last = orig.last_count(None).expect("the original counted");
    let line = r.restored.expect_count(None, last + 10);
    assert_eq!(pts_in(&line), pts, "the restored ptys have other numbers");
    r.pipeline.wait().assert_success();
    assert_continues(&orig, &r.restored, None, Original::Killed);
    assert!(r.restored.kill().is_empty(), "processes left behind");
    assert_ptys_gone(&pts);
}

#[test]
fn waiting_data_arrives_byte_exact_after_restore() {
    let _s = serial();
    let mut orig = Workload::spawn(workload("ptydata"), &["-d", "20"]);
    let ready = orig.expect_line(|l| l.starts_with("ready"), "ready");
    let pts = pts_in(&ready);
    assert_eq!(pts.len(), 3, "{ready}");
    orig.expect_count(None, 2);
    let mut r = kill_and_restore(&mut orig);
    let last = orig.last_count(None).expect("the original counted");
    assert!(
        !orig.lines().iter().any(|l| l == "data ok"),
        "checked before the checkpoint"
    );
    r.restored.expect_count(None, last + 2);
    assert!(
        signal(orig.pid(), libc::SIGUSR1),
        "the restored process is gone"
    );
    r.restored.expect_line(|l| l == "data ok", "data ok");
    // Data keeps flowing through the restored pty afterwards.
    let after = r.restored.last_count(None).unwrap();
    r.restored.expect_count(None, after + 5);
    r.pipeline.wait().assert_success();
    assert_continues(&orig, &r.restored, None, Original::Killed);
    assert!(r.restored.kill().is_empty(), "processes left behind");
    assert_ptys_gone(&pts);
}

#[test]
fn cat_on_the_slave_keeps_echoing_after_restore() {
    let _s = serial();
    let mut orig = Workload::spawn(workload("ptyecho"), &["-d", "20"]);
    let first = orig.expect_count(None, 3);
    let pts = pts_in(&first);
    let cat = field(&first, "cat").expect("cat pid");
    let (tty, fg) = tty_of(cat).expect("cat runs");
    assert_eq!(tty, (136 << 8) | pts[0] as i64, "cat's terminal before");
    assert_eq!(fg, cat as i64, "cat leads the foreground before");
    let mut r = kill_and_restore(&mut orig);
    let last = orig.last_count(None).expect("the original counted");
    let line = r.restored.expect_count(None, last + 10);
    assert_eq!(field(&line, "cat"), Some(cat));
    assert_eq!(
        tty_of(cat),
        Some((tty, fg)),
        "cat's controlling terminal or foreground group after restore"
    );
    r.pipeline.wait().assert_success();
    assert_continues(&orig, &r.restored, None, Original::Killed);
    assert!(r.restored.kill().is_empty(), "processes left behind");
    assert_ptys_gone(&pts);
}

#[test]
fn checkpoint_leaves_the_waiting_data_in_place() {
    let _s = serial();
    let dir = tempdir();
    let img = dir.path().join("pty.img");
    let mut orig = Workload::spawn(workload("ptydata"), &["-d", "20"]);
    let ready = orig.expect_line(|l| l.starts_with("ready"), "ready");
    let pts = pts_in(&ready);
    orig.expect_count(None, 2);
    ckpt_to_file(&[], orig.pid(), &img);
    assert!(std::fs::metadata(&img).unwrap().len() > 0);
    let n = orig.last_count(None).unwrap();
    orig.expect_count(None, n + 2);
    assert!(signal(orig.pid(), libc::SIGUSR1));
    orig.expect_line(|l| l == "data ok", "data ok");
    let n = orig.last_count(None).unwrap();
    orig.expect_count(None, n + 3);
    orig.assert_no_fail();
    assert!(orig.kill().is_empty(), "processes left behind");
    assert_ptys_gone(&pts);
}

#[test]
fn a_pty_index_in_use_is_a_clear_error() {
    let _s = serial();
    let dir = tempdir();
    let img = dir.path().join("pty.img");
    let mut orig = Workload::spawn(workload("pty"), &["-d", "20"]);
    let pts = pts_in(&orig.expect_count(None, 2));
    ckpt_to_file(&[], orig.pid(), &img);
    // The original still holds its ptys: a restore with new pids cannot
    // have them.
    let out = run(
        "cr-restart",
        &["--no-pids", "-i", img.to_str().unwrap()],
        None,
    );
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    let want = format!("cannot restore pty {0}: /dev/pts/{0} is in use", pts[0]);
    assert!(out.stderr.contains(&want), "{}", out.stderr);
    orig.assert_no_fail();
    assert!(orig.kill().is_empty(), "processes left behind");
    assert_ptys_gone(&pts);
}
