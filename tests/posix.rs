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
use std::path::PathBuf;
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
    let mut orig = Workload::spawn(workload("posixshm"), &["-d", "20", "-s", &shm.name]);
    orig.expect_count(Some("parent"), 3);
    orig.expect_count(Some("child"), 3);
    let tree = orig.tree();
    ckpt_to_file(&["--kill"], orig.pid(), &img);
    orig.wait_exit(TIMEOUT)
        .expect("ckpt --kill ends the original");
    orig.wait_eof(TIMEOUT);
    let last = orig.last_count(Some("parent")).unwrap_or(0);
    for &p in &tree {
        assert!(wait_pid_gone(p, TIMEOUT), "pid {p} still there");
    }
    let restore = |fail_at: Option<&str>| {
        let mut cmd = Command::new(bin("cr-restart"));
        cmd.args(["-i", img.to_str().unwrap(), "--detach"]);
        if let Some(stage) = fail_at {
            cmd.env("CRTOOLS_FAIL_AT", stage);
        }
        run_cmd(cmd, None)
    };

    // A different file of that name: refused, untouched.
    let mut other = std::fs::read(shm.main()).expect("the shm file is still there");
    other[100] ^= 0xff;
    std::fs::write(shm.main(), &other).unwrap();
    let f = restore(None);
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    assert_eq!(f.stderr.lines().count(), 1, "{}", f.stderr);
    let want = format!(
        "cannot restore POSIX shared memory /dev/shm/{}: a different file of that name exists here (other contents)",
        shm.name
    );
    assert!(f.stderr.contains(&want), "{}\nwanted: {want}", f.stderr);
    assert_eq!(std::fs::read(shm.main()).unwrap(), other);
    for &p in &tree {
        assert!(wait_pid_gone(p, TIMEOUT), "pid {p} left running");
    }

    // Gone, and the restore fails after the data: nothing left.
    shm.remove();
    let f = restore(Some("data"));
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    for p in &shm.paths {
        assert!(
            !p.exists(),
            "{} left behind by a failed restore",
            p.display()
        );
    }
    for &p in &tree {
        assert!(wait_pid_gone(p, TIMEOUT), "pid {p} left running");
    }

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
