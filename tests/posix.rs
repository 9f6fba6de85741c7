//! POSIX IPC across a checkpoint and restore, checked by what the
//! processes do afterwards: shared memory in `/dev/shm` (`shm_open`, a
//! named semaphore) shared by a parent and its child through descriptors
//! and mappings, put back by name (a file of that name found identical is
//! used, a different one refused, a missing one made again with its mode,
//! and removed again if the restore fails); python3's
//! `multiprocessing.shared_memory`. Every test removes the `/dev/shm`
//! files it made, also when it fails.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// Files of `/dev/shm` a test makes (through its workload), removed when
/// dropped.
struct ShmFiles {
    name: String,
    paths: Vec<PathBuf>,
}

impl ShmFiles {
    /// A fresh name, `crtools-TAG-PID`, and the files the `posixshm`
    /// workload makes from it.
    fn new(tag: &str) -> ShmFiles {
        let name = format!("crtools-{tag}-{}", std::process::id());
        let paths = vec![
            PathBuf::from(format!("/dev/shm/{name}")),
            PathBuf::from(format!("/dev/shm/sem.{name}-sem")),
        ];
        let f = ShmFiles { name, paths };
        f.remove();
        f
    }
    fn remove(&self) {
        for p in &self.paths {
            let _ = std::fs::remove_file(p);
        }
    }
    fn main(&self) -> &PathBuf {
        &self.paths[0]
    }
}

impl Drop for ShmFiles {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Runs `name` with `args` (and `-d 20`) until its parent and child have
/// each counted to 3, then `ckpt --kill`s it into `img`. Returns the
/// workload (its drop still kills whatever holds those pids if a test
/// fails), its pids and the parent's last count, once every one is gone.
fn killed_into(img: &Path, name: &str, args: &[&str]) -> (Workload, Vec<i32>, u64) {
    let args: Vec<&str> = ["-d", "20"].iter().chain(args).copied().collect();
    let mut orig = Workload::spawn(workload(name), &args);
    orig.expect_count(Some("parent"), 3);
    orig.expect_count(Some("child"), 3);
    let tree = orig.tree();
    ckpt_to_file(&["--kill"], orig.pid(), img);
    orig.wait_exit(TIMEOUT)
        .expect("ckpt --kill ends the original");
    orig.wait_eof(TIMEOUT);
    let last = orig.last_count(Some("parent")).unwrap_or(0);
    for &p in &tree {
        assert!(wait_pid_gone(p, TIMEOUT), "pid {p} still there");
    }
    (orig, tree, last)
}

/// `cr-restart --detach -i img`, with a failure injected at `fail_at`.
fn restore_detached(img: &Path, fail_at: Option<&str>) -> Finished {
    let mut cmd = Command::new(bin("cr-restart"));
    cmd.args(["-i", img.to_str().unwrap(), "--detach"]);
    if let Some(stage) = fail_at {
        cmd.env("CRTOOLS_FAIL_AT", stage);
    }
    run_cmd(cmd, None)
}

/// Asserts that no process holds any of `tree`'s pids (a refused or
/// failed restore left nothing running).
fn all_gone(tree: &[i32]) {
    for &p in tree {
        assert!(wait_pid_gone(p, TIMEOUT), "pid {p} left running");
    }
}

fn maps_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default()
}

/// Parent and child share a `/dev/shm` object (two descriptors, two
/// mappings) and a named semaphore; `ckpt --kill | cr-restart` on one
/// host, where the file is still there and identical, so it is used:
/// the ping-pong through descriptor, mapping and semaphore goes on, and
/// the restored processes map `/dev/shm/NAME` itself, not a copy.
#[test]
fn shm_and_semaphore_stay_shared() {
    let shm = ShmFiles::new("shm");
    let tags = [Some("parent"), Some("child")];
    let mut orig = Workload::spawn(workload("posixshm"), &["-d", "20", "-s", &shm.name]);
    let mut r = migrate_and_continue(&mut orig, &tags, &[], 5, 5);
    r.restored.assert_no_fail();
    for pid in orig.tree().into_iter().chain([orig.pid()]) {
        let maps = maps_of(pid);
        if maps.is_empty() {
            continue;
        }
        let want = format!("/dev/shm/{}\n", shm.name);
        assert!(
            maps.contains(&want),
            "pid {pid} does not map {want}:\n{maps}"
        );
        assert!(!maps.contains("(deleted)"), "pid {pid}:\n{maps}");
    }
    r.restored.kill();
}

/// The image taken with `ckpt --kill` to a file, then restored three
/// times: with a different file of that name in `/dev/shm` (refused in
/// one line naming it, the file untouched, nothing left running); with
/// the files gone and a failure injected after the data (the files it
/// made removed again); with the files gone (made again with their mode
/// and contents, and the processes go on).
#[test]
fn shm_made_again_by_name_or_refused() {
    let shm = ShmFiles::new("again");
    let dir = tempdir();
    let img = dir.path().join("img");
    let (_orig, tree, last) = killed_into(&img, "posixshm", &["-s", &shm.name]);

    // A different file of that name: refused, untouched.
    let mut other = std::fs::read(shm.main()).expect("the shm file is still there");
    other[100] ^= 0xff;
    std::fs::write(shm.main(), &other).unwrap();
    let f = restore_detached(&img, None);
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    assert_eq!(f.stderr.lines().count(), 1, "{}", f.stderr);
    let want = format!(
        "cannot restore POSIX shared memory /dev/shm/{}: a different file of that name exists here (other contents)",
        shm.name
    );
    assert!(f.stderr.contains(&want), "{}\nwanted: {want}", f.stderr);
    assert_eq!(std::fs::read(shm.main()).unwrap(), other);
    all_gone(&tree);

    // Gone, and the restore fails after the data: nothing left.
    shm.remove();
    let f = restore_detached(&img, Some("data"));
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    for p in &shm.paths {
        assert!(
            !p.exists(),
            "{} left behind by a failed restore",
            p.display()
        );
    }
    all_gone(&tree);

    // Gone: made again, with mode and contents; the processes go on.
    let mut r = Pipeline::new().input(&img).restore(&[]);
    r.restored.track_all(&tree);
    r.restored.expect_count(Some("parent"), last + 5);
    r.restored.expect_count(Some("child"), last + 5);
    r.restored.assert_no_fail();
    let m = std::fs::metadata(shm.main()).expect("made again");
    assert_eq!(m.permissions().mode() & 0o7777, 0o640);
    assert_eq!(m.size(), 3 * 4096);
    assert_eq!(m.uid(), own_uid());
    assert!(
        shm.paths[1].exists(),
        "the semaphore's file was not made again"
    );
    r.restored.kill();
}

/// The calling user's uid (the owner the restored files get here).
fn own_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

/// python3 `multiprocessing.shared_memory.SharedMemory` between the
/// program and a `multiprocessing.Process` (and the resource tracker
/// beside them), migrated with `ckpt --kill | cr-restart`: the count goes
/// on, each value echoed by the child through the shared memory.
#[test]
fn python3_shared_memory_continues() {
    let name = format!("crtools-py-{}", std::process::id());
    let _files = ShmFiles {
        paths: vec![PathBuf::from(format!("/dev/shm/{name}"))],
        name: name.clone(),
    };
    let mut orig = Workload::spawn("python3", &[script("pyshm.py").to_str().unwrap(), &name]);
    let mut r = migrate_and_continue(&mut orig, &[None], &[], 5, 10);
    r.restored.assert_no_fail();
    assert!(
        wait_until(Duration::from_secs(1), || PathBuf::from(format!(
            "/dev/shm/{name}"
        ))
        .exists()),
        "/dev/shm/{name} is gone"
    );
    r.restored.kill();
}

/// POSIX message queues a test's workload makes, unlinked when dropped.
struct Queues {
    name: String,
}

impl Queues {
    fn new(tag: &str) -> Queues {
        let q = Queues {
            name: format!("crtools-{tag}-{}", std::process::id()),
        };
        q.remove();
        q
    }
    fn names(&self) -> Vec<String> {
        ["", "-s", "-n"]
            .iter()
            .map(|s| format!("{}{s}", self.name))
            .collect()
    }
    fn remove(&self) {
        for n in self.names() {
            let c = std::ffi::CString::new(n).unwrap();
            let _ = crtools::sys::mqueue::unlink(&c);
        }
    }
    fn exists(&self, suffix: &str) -> bool {
        let c = std::ffi::CString::new(format!("{}{suffix}", self.name)).unwrap();
        crtools::sys::mqueue::open(&c, libc::O_RDONLY, 0, None).is_ok()
    }
}

impl Drop for Queues {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Message queues (see `tests/workloads/mqueue.c`): a child waiting in
/// `mq_receive`, a parent sending with priorities through a non-blocking
/// write-only descriptor, a queue of three messages that stay and an
/// unlinked one of two, all checked every iteration (order, priorities,
/// bytes, attributes, flags); `ckpt --kill | cr-restart` on one host,
/// where the named queues are still there and the same, so they are used.
#[test]
fn mqueues_carry_attributes_and_messages() {
    let q = Queues::new("mq");
    let tags = [Some("parent"), Some("child")];
    let mut orig = Workload::spawn(workload("mqueue"), &["-d", "20", "-q", &q.name]);
    let mut r = migrate_and_continue(&mut orig, &tags, &[], 5, 5);
    r.restored.assert_no_fail();
    r.restored.kill();
}

/// The image taken with `ckpt --kill` to a file, restored with a
/// different queue of the name there (refused, the queue untouched), with
/// the queues gone and a failure injected (the queues it made unlinked
/// again), then with the queues gone (made again with their messages).
#[test]
fn mqueues_made_again_by_name_or_refused() {
    let q = Queues::new("mqagain");
    let dir = tempdir();
    let img = dir.path().join("img");
    let (_orig, tree, last) = killed_into(&img, "mqueue", &["-q", &q.name]);

    // One more message in the stash queue: refused, the queue untouched.
    let sname = std::ffi::CString::new(format!("{}-s", q.name)).unwrap();
    let s = crtools::sys::mqueue::open(&sname, libc::O_RDWR, 0, None).expect("the queue is there");
    crtools::sys::mqueue::send_now(std::os::fd::AsFd::as_fd(&s), b"extra", 3).unwrap();
    let f = restore_detached(&img, None);
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    assert_eq!(f.stderr.lines().count(), 1, "{}", f.stderr);
    let want = format!(
        "cannot restore POSIX message queue /{}-s: a different queue of that name exists here (4 messages, the image's 3)",
        q.name
    );
    assert!(f.stderr.contains(&want), "{}\nwanted: {want}", f.stderr);
    assert_eq!(
        crtools::sys::mqueue::getattr(std::os::fd::AsFd::as_fd(&s))
            .unwrap()
            .curmsgs,
        4
    );
    drop(s);
    all_gone(&tree);

    // Gone, and the restore fails after the data: nothing left.
    q.remove();
    let f = restore_detached(&img, Some("data"));
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    assert!(
        !q.exists("") && !q.exists("-s"),
        "queues left by a failed restore"
    );
    all_gone(&tree);

    // Gone: made again; the processes go on and find every message.
    let mut r = Pipeline::new().input(&img).restore(&[]);
    r.restored.track_all(&tree);
    r.restored.expect_count(Some("parent"), last + 5);
    r.restored.expect_count(Some("child"), last + 5);
    r.restored.assert_no_fail();
    assert!(
        q.exists("") && q.exists("-s"),
        "the queues were not made again"
    );
    r.restored.kill();
}

/// A queue with a notification registered (`mq_notify`) is refused in
/// one line naming the process, the descriptor and why; the process goes
/// on, its queues as they were.
#[test]
fn mqueue_with_a_notification_is_refused() {
    let q = Queues::new("mqnotify");
    let orig = Workload::spawn(workload("mqueue"), &["-d", "20", "-q", &q.name, "-N"]);
    orig.expect_count(Some("parent"), 2);
    let f = ckpt(&[&orig.pid().to_string()]);
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    assert_eq!(f.stderr.lines().count(), 1, "{}", f.stderr);
    let want = format!(
        "(/{}-n) is a POSIX message queue: pid {} registered a notification on it (mq_notify), which cannot be carried",
        q.name,
        orig.pid()
    );
    assert!(f.stderr.contains(&want), "{}\nwanted: {want}", f.stderr);
    assert!(f.stdout.is_empty(), "an image was written");
    let last = orig.last_count(Some("parent")).unwrap_or(0);
    orig.expect_count(Some("parent"), last + 3);
    orig.expect_count(Some("child"), last + 3);
    orig.assert_no_fail();
}

/// pidfds of the tree's own processes (see `tests/workloads/pidfd.c`):
/// two of the child (one `PIDFD_NONBLOCK`, at descriptor 20, without
/// close-on-exec) and one of the parent itself, checked every iteration;
/// after `ckpt --kill | cr-restart` the parent ends the restored child
/// through its pidfd and reaps it through it, by the child's pid.
#[test]
fn pidfds_refer_to_the_restored_processes() {
    let mut orig = Workload::spawn(workload("pidfd"), &["-d", "20", "-k", "25"]);
    orig.expect_count(Some("child"), 2);
    let child = orig
        .tree()
        .into_iter()
        .find(|&p| p != orig.pid())
        .expect("the child");
    let tags = [Some("parent"), Some("child")];
    let mut r = migrate_and_continue(&mut orig, &tags, &[], 5, 3);
    let want = format!("reaped {child} signal 15");
    r.restored.expect_line(|l| l.ends_with(&want), &want);
    let last = r.restored.last_count(Some("parent")).unwrap_or(0);
    r.restored.expect_count(Some("parent"), last + 2);
    r.restored.assert_no_fail();
    r.restored.kill();
}

/// A pidfd of a process outside the tree (the test itself) is refused in
/// one line naming the process, the descriptor and the pid; the process
/// goes on.
#[test]
fn pidfd_of_a_process_outside_is_refused() {
    let orig = Workload::spawn(workload("pidfd"), &["-d", "20", "-o"]);
    orig.expect_count(Some("parent"), 2);
    let f = ckpt(&[&orig.pid().to_string()]);
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    assert_eq!(f.stderr.lines().count(), 1, "{}", f.stderr);
    let want = format!(
        "(anon_inode:[pidfd]) is a pidfd of pid {}, outside the tree, which cannot be restored",
        std::process::id()
    );
    assert!(f.stderr.contains(&want), "{}\nwanted: {want}", f.stderr);
    assert!(f.stdout.is_empty(), "an image was written");
    let last = orig.last_count(Some("parent")).unwrap_or(0);
    orig.expect_count(Some("parent"), last + 2);
    orig.assert_no_fail();
}
