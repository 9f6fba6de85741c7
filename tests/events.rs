//! Event descriptors across a checkpoint and restore, checked by what they
//! do afterwards: an eventfd's counter, an epoll set's ready list with its
//! data (a target registered twice, through a closed dup, edge-triggered,
//! one-shot already fired, exclusive, nested in another epoll), timerfds
//! (a periodic one firing, an expired one's unread expiration, a far one
//! still pending), a signalfd receiving a signal, an inotify watch
//! reporting a new file. Objects crtools cannot carry (io_uring,
//! userfaultfd) are refused in one line naming the process and the
//! descriptor, and the process runs on. Real programs: node's event loop
//! (epoll, eventfd) and python3 asyncio (epoll, a socket pair).

mod common;

use common::*;

fn path_str(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The restored `events` workload answers SIGUSR1 with what each of its
/// event objects shows (see `tests/workloads/events.c`): every line must
/// come, and no FAIL.
#[test]
fn event_descriptors_work_after_restore() {
    let dir = tempdir();
    let watched = dir.path().join("watched");
    std::fs::create_dir(&watched).unwrap();
    let mut orig = Workload::spawn(workload("events"), &["-d", "20", "-w", path_str(&watched)]);
    orig.expect_line(|l| l == "ready", "ready");
    let mut r = migrate_and_continue(&mut orig, &[None], &[], 3, 3);
    let pid = orig.pid();
    assert!(signal(pid, libc::SIGUSR1), "cannot send SIGUSR1 to {pid}");
    for want in [
        "signal 10",
        "epoll 1111 2222 4444 5555",
        "nested 6666",
        "oneshot 9999",
        "mod ok",
        "eventfd 5",
        "semaphore 3",
        "expired 1",
        "periodic fired",
        "long pending",
    ] {
        r.restored.expect_line(|l| l == want, want);
    }
    std::fs::write(watched.join("new-after-restore"), b"").unwrap();
    r.restored.expect_line(
        |l| l == "created new-after-restore",
        "created new-after-restore",
    );
    let last = r.restored.last_count(None).unwrap_or(0);
    r.restored.expect_count(None, last + 2);
    r.restored.assert_no_fail();
    r.restored.kill();
}

/// io_uring and userfaultfd are refused before
/// anything is written: one line naming the pid, the descriptor and the
/// kind; the process goes on.
#[test]
fn io_uring_and_userfaultfd_are_refused_by_name() {
    for (kind, link, what) in [
        ("uring", "anon_inode:[io_uring]", "an io_uring instance"),
        ("uffd", "anon_inode:[userfaultfd]", "a userfaultfd"),
    ] {
        let orig = Workload::spawn(workload("anonfd"), &["-d", "20", "-k", kind]);
        let line = orig.expect_line(|l| l.starts_with("fd "), "fd N");
        let fd = line.trim_start_matches("fd ");
        orig.expect_count(None, 2);
        let f = ckpt(&[&orig.pid().to_string()]);
        assert_eq!(f.code(), Some(1), "{kind}: {}", f.stderr);
        assert_eq!(f.stderr.lines().count(), 1, "{kind}: {}", f.stderr);
        let want = format!(
            "cannot checkpoint pid {}: descriptor {fd} ({link}",
            orig.pid()
        );
        assert!(
            f.stderr.contains(&want),
            "{kind}: {}\nwanted: {want}",
            f.stderr
        );
        assert!(
            f.stderr.contains(&format!(") is {what}")),
            "{kind}: {}",
            f.stderr
        );
        assert!(f.stdout.is_empty(), "{kind}: an image was written");
        let last = orig.last_count(None).unwrap_or(0);
        orig.expect_count(None, last + 2);
        orig.assert_no_fail();
    }
}

/// node's event loop (libuv: epoll, eventfd, timers) printing a counter
/// from `setInterval`, checkpointed with `ckpt --kill` and restored: the
/// count goes on from where it was.
#[test]
fn node_set_interval_continues() {
    let script = "let n = 0; setInterval(() => console.log('count ' + ++n), 20);";
    migrate_and_check_cmd("node", &["-e", script]);
}

/// A python3 asyncio program (epoll, a socket pair as its self-pipe) with a
/// timer loop, restored: the count goes on.
#[test]
fn python3_asyncio_timer_continues() {
    let script = "
import asyncio
async def main():
    n = 0
    while True:
        n += 1
        print(f'count {n}', flush=True)
        await asyncio.sleep(0.02)
asyncio.run(main())
";
    migrate_and_check_cmd("python3", &["-c", script]);
}

fn migrate_and_check_cmd(program: &str, args: &[&str]) {
    let mut orig = Workload::spawn(program, args);
    let mut r = migrate_and_continue(&mut orig, &[None], &[], 5, 5);
    r.restored.assert_no_fail();
    r.restored.kill();
}

/// memfds and a deleted file mapped shared (see `tests/workloads/memfd.c`):
/// after the restore the parent's writes through a memfd descriptor still
/// reach the child's mapping of it, the child's answers through the
/// deleted file's mapping still reach the parent (one object each, not a
/// copy per process), and the seals, names, contents and offsets are
/// checked on every iteration.
#[test]
fn memfds_and_mapped_deleted_files_stay_shared() {
    let tags = [Some("parent"), Some("child")];
    let mut orig = Workload::spawn(workload("memfd"), &["-d", "20"]);
    let mut r = migrate_and_continue(&mut orig, &tags, &[], 5, 5);
    r.restored.assert_no_fail();
    r.restored.kill();
}

/// A python3 multiprocessing.Pool checkpointed in the middle of an `imap`
/// (its semaphores are deleted files mapped shared by every process of the
/// pool): the restored pool finishes with the right sum.
#[test]
fn python3_pool_finishes_mid_map() {
    let mut orig = Workload::spawn("python3", &[path_str(&script("pool.py")), "200"]);
    let r = migrate_and_continue(&mut orig, &[None], &[], 20, 5);
    // The sum of the squares of 0..199.
    r.restored
        .expect_line(|l| l == "result 2646700", "result 2646700");
    r.restored.expect_count(None, 200);
    r.restored.assert_no_fail();
}

/// cr-info shows each event file's state, in text and in `--json`; the
/// process, checkpointed without `--kill`, runs on.
#[test]
fn cr_info_shows_event_state() {
    let dir = tempdir();
    let watched = dir.path().join("watched");
    std::fs::create_dir(&watched).unwrap();
    let orig = Workload::spawn(workload("events"), &["-d", "20", "-w", path_str(&watched)]);
    orig.expect_line(|l| l == "ready", "ready");
    let img = dir.path().join("img");
    ckpt_to_file(&[], orig.pid(), &img);
    let text = run("cr-info", &[path_str(&img)], None);
    let text = String::from_utf8_lossy(&text.assert_success().stdout).into_owned();
    for want in [
        "(counter 5)".to_string(),
        "(counter 3, semaphore)".to_string(),
        "(signals 0x200)".to_string(),
        "events 0x80000019 data 0x2222".to_string(),
        "(1 target: ".to_string(),
        format!("(watch 1 {} (mask 0x100))", watched.display()),
        "every 20 ms".to_string(),
    ] {
        assert!(text.contains(&want), "cr-info lacks {want}:\n{text}");
    }
    let json = run("cr-info", &["--json", path_str(&img)], None);
    let json = String::from_utf8_lossy(&json.assert_success().stdout).into_owned();
    let v: serde_json::Value = serde_json::from_str(&json).expect("cr-info --json");
    let events: Vec<&str> = v["processes"][0]["fds"]
        .as_array()
        .expect("fds")
        .iter()
        .filter_map(|f| f["event"].as_str())
        .collect();
    assert!(events.contains(&"counter 3, semaphore"), "{json}");
    let last = orig.last_count(None).unwrap_or(0);
    orig.expect_count(None, last + 2);
    orig.assert_no_fail();
}
