//! Checkpoints that fail, and restores into a new pid namespace: a failed
//! checkpoint never harms the process; `--pidns` restores with the original
//! pids while the original still runs.

mod common;

use common::*;
use std::process::{Command, Stdio};

/// The output pipe closes midway: ckpt exits non-zero and quietly, the
/// process runs on correctly.
#[test]
fn closed_output_pipe_leaves_the_process_running() {
    let orig = Workload::spawn(workload("bigmem"), &["-m", "32", "-d", "20", "-k", "2"]);
    orig.expect_count(None, 3);
    let pid = orig.pid().to_string();
    let mut ckpt = Command::new(bin("ckpt"))
        .arg(&pid)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ckpt");
    let mut out = ckpt.stdout.take().expect("stdout");
    let mut head = [0u8; 100_000];
    std::io::Read::read_exact(&mut out, &mut head).expect("the start of the image");
    drop(out);
    let status = ckpt.wait().expect("wait for ckpt");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut ckpt.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "ckpt succeeded into a closed pipe");
    assert!(err.is_empty(), "ckpt printed on a broken pipe: {err}");
    assert_eq!(
        proc_state(orig.pid()).map(|s| s != 'T' && s != 't'),
        Some(true)
    );
    let n = orig.last_count(None).unwrap();
    orig.expect_count(None, n + 4);
    orig.assert_no_fail();
}

/// A checkpoint that fails after `ckpt` injected its batch page into the
/// process (`CRTOOLS_FAIL_AT=remote`), and one whose output closes: the
/// process's mappings are exactly what they were, and it runs on.
#[test]
fn failed_checkpoint_leaves_no_page_behind() {
    let orig = Workload::spawn(workload("threads"), &["-t", "3", "-d", "10"]);
    orig.expect_count(Some("t2"), 3);
    let pid = orig.pid().to_string();
    let maps = || std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let before = maps();
    for round in 0..3 {
        let f = Command::new(bin("ckpt"))
            .args(["-o", "/dev/null", &pid])
            .env("CRTOOLS_FAIL_AT", "remote")
            .output()
            .expect("ckpt");
        let err = String::from_utf8_lossy(&f.stderr);
        assert_eq!(f.status.code(), Some(1), "round {round}: {err}");
        assert!(err.contains("injected failure at stage remote"), "{err}");
        assert_eq!(maps(), before, "round {round}: the mappings changed");
        assert_eq!(
            proc_state(orig.pid()).map(|s| s != 'T' && s != 't'),
            Some(true)
        );
    }
    // A successful checkpoint leaves nothing either.
    let f = ckpt(&["-o", "/dev/null", &pid]);
    assert!(f.status.success(), "{}", f.stderr);
    assert_eq!(maps(), before, "the mappings changed");
    for t in ["t0", "t1", "t2"] {
        let n = orig.last_count(Some(t)).unwrap();
        orig.expect_count(Some(t), n + 2);
    }
    orig.assert_no_fail();
}

/// A memory reader thread fails midway through the pages
/// (`CRTOOLS_FAIL_AT=read`: its second chunk, after records were written):
/// ckpt fails with one line, leaves no output file, and the process runs on
/// with its mappings as they were, three times in a row.
#[test]
fn failed_memory_reader_leaves_the_process_running() {
    let d = tempdir();
    let img = d.path().join("img");
    let orig = Workload::spawn(workload("bigmem"), &["-d", "20", "-m", "48", "-k", "2"]);
    orig.expect_count(None, 3);
    let pid = orig.pid().to_string();
    let maps = || std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let before = maps();
    for round in 0..3 {
        let f = Command::new(bin("ckpt"))
            .args(["-o", img.to_str().unwrap(), &pid])
            .env("CRTOOLS_FAIL_AT", "read")
            .output()
            .expect("ckpt");
        let err = String::from_utf8_lossy(&f.stderr);
        assert_eq!(f.status.code(), Some(1), "round {round}: {err}");
        assert!(err.contains("injected failure at stage read"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "round {round}: {err}");
        assert!(!img.exists(), "round {round}: a partial image was left");
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            0,
            "round {round}: a temporary file was left"
        );
        assert_eq!(maps(), before, "round {round}: the mappings changed");
        assert_eq!(
            proc_state(orig.pid()).map(|s| s != 'T' && s != 't'),
            Some(true)
        );
    }
    let n = orig.last_count(None).unwrap();
    orig.expect_count(None, n + 2);
    orig.assert_no_fail();
}

/// A `vfork` child and its parent (which cannot be stopped) are refused
/// clearly, and the tree goes on.
#[test]
fn vfork_is_refused() {
    // perl calls vfork (58 on x86_64) directly; the child sleeps, the
    // parent waits in the kernel until it exits.
    let mut v = Command::new("perl");
    v.args([
        "-e",
        "$|=1; print \"count 1\\n\"; my $p = syscall(58); if ($p == 0) { sleep 30; syscall(60, 0); } while (1) { sleep 1 }",
    ]);
    let vw = Workload::spawn_cmd(v);
    vw.expect_count(None, 1);
    wait_until(TIMEOUT, || proc_state(vw.pid()) == Some('D'));
    let f = ckpt(&["-o", "/dev/null", &vw.pid().to_string()]);
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    assert!(f.stderr.contains("shares its memory"), "{}", f.stderr);
    assert_eq!(f.stderr.lines().count(), 1, "{}", f.stderr);
}

/// `ckpt` asked to checkpoint a tree it runs inside (`bash -c 'ckpt $$'`,
/// the shell being ckpt's parent) refuses in one line before touching
/// anything: no output file, and the shell goes on to finish by itself.
#[test]
fn ckpt_inside_the_tree_it_checkpoints_is_refused() {
    let dir = tempdir();
    let img = dir.path().join("img");
    let mut c = Command::new("bash");
    // `; echo` keeps bash from exec'ing ckpt: bash stays its parent.
    c.args([
        "-c",
        "\"$0\" -o \"$1\" $$; echo \"rc=$?\"",
        bin("ckpt").to_str().unwrap(),
        img.to_str().unwrap(),
    ]);
    let f = run_cmd(c, None);
    assert!(f.status.success(), "bash: {} {}", f.status, f.stderr);
    assert_eq!(String::from_utf8_lossy(&f.stdout), "rc=1\n", "{}", f.stderr);
    assert_eq!(f.stderr.lines().count(), 1, "{}", f.stderr);
    assert!(
        f.stderr.starts_with("ckpt: cannot checkpoint pid ")
            && f.stderr.contains("ckpt runs inside that tree"),
        "{}",
        f.stderr
    );
    assert!(!img.exists(), "ckpt wrote {}", img.display());
    // Its own pid (bash exec'ing ckpt) likewise.
    let mut c = Command::new("bash");
    c.args([
        "-c",
        "exec \"$0\" -o /dev/null $$",
        bin("ckpt").to_str().unwrap(),
    ]);
    let f = run_cmd(c, None);
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    assert!(
        f.stderr.contains("ckpt runs inside that tree"),
        "{}",
        f.stderr
    );
}

/// A kernel thread (PF_KTHREAD in /proc/PID/stat) is refused as such, in
/// one line, before anything is written.
#[test]
fn kernel_thread_is_refused() {
    let kthread = all_pids()
        .into_iter()
        .find(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let tail = &s[s.rfind(')')? + 2..];
                    tail.split(' ').nth(6)?.parse::<u32>().ok()
                })
                .is_some_and(|flags| flags & 0x0020_0000 != 0)
        })
        .expect("no kernel thread visible in /proc (kthreadd is pid 2 outside a pid namespace)");
    let dir = tempdir();
    let img = dir.path().join("img");
    let f = ckpt(&["-o", img.to_str().unwrap(), &kthread.to_string()]);
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    assert_eq!(
        f.stderr.trim_end(),
        format!("ckpt: cannot checkpoint pid {kthread}: it is a kernel thread")
    );
    assert!(!img.exists(), "ckpt wrote {}", img.display());
}

/// `cr-restart --pidns` restores the tree with its original pids inside a
/// new pid namespace while the original keeps running with the same pids.
/// (A session led from outside the tree would read as 0 inside the new
/// namespace, so the root leads its own session here.)
#[test]
fn pidns_restore_beside_the_original() {
    let orig = Workload::spawn_session(workload("multitask"), &["-d", "20"]);
    for t in ["root", "A", "A1", "B", "B1"] {
        orig.expect_count(Some(t), 2);
    }
    let tree = orig.tree();
    let dir = tempdir();
    let img = dir.path().join("tree.img");
    ckpt_to_file(&[], orig.pid(), &img);
    let pidfile = dir.path().join("pid");
    let mut cmd = Command::new(bin("cr-restart"));
    cmd.args([
        "--pidns",
        "-i",
        img.to_str().unwrap(),
        "--pidfile",
        pidfile.to_str().unwrap(),
    ]);
    let restored = Workload::spawn_cmd(cmd);
    for t in ["root", "A", "A1", "B", "B1"] {
        restored.expect_count(Some(t), orig.last_count(Some(t)).unwrap_or(0).min(3) + 3);
    }
    let root = read_pidfile(&pidfile);
    assert_ne!(root, orig.pid());
    let status = std::fs::read_to_string(format!("/proc/{root}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(
        nspid.split_whitespace().last() == Some(&orig.pid().to_string()),
        "inside its namespace the root has its original pid: {nspid}"
    );
    // Every original process still runs: no pid was taken from it.
    for p in tree {
        assert!(proc_state(p).is_some(), "original process {p} is gone");
    }
    orig.assert_no_fail();
    restored.assert_no_fail();
}

/// A tree whose root is the init of its own pid namespace is checkpointed
/// with the pids it sees itself and restored as the init of a new one.
#[test]
fn pid_namespace_init_round_trip() {
    let wl = workload("multitask");
    let orig = Workload::spawn(
        "unshare",
        &["--pid", "--fork", wl.to_str().unwrap(), "-d", "20"],
    );
    for t in ["root", "A", "A1", "B", "B1"] {
        orig.expect_count(Some(t), 2);
    }
    let init = children_of(orig.pid())[0];
    let nspid = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("NSpid:"))
            .map(|l| {
                l.split_whitespace()
                    .skip(1)
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    assert_eq!(nspid(init).last().map(String::as_str), Some("1"));
    let dir = tempdir();
    let img = dir.path().join("ns.img");
    ckpt_to_file(&[], init, &img);
    let info = run("cr-info", &[img.to_str().unwrap()], None);
    info.assert_success();
    let pidfile = dir.path().join("pid");
    let mut cmd = Command::new(bin("cr-restart"));
    cmd.args([
        "-i",
        img.to_str().unwrap(),
        "--pidfile",
        pidfile.to_str().unwrap(),
    ]);
    let restored = Workload::spawn_cmd(cmd);
    for t in ["root", "A", "A1", "B", "B1"] {
        restored.expect_count(Some(t), 4);
    }
    let root = read_pidfile(&pidfile);
    assert_eq!(
        nspid(root).last().map(String::as_str),
        Some("1"),
        "{:?}",
        nspid(root)
    );
    assert!(proc_state(init).is_some(), "the original init is gone");
    orig.assert_no_fail();
    restored.assert_no_fail();
}

/// `cr-restart` run by an unprivileged user refuses an image of another
/// user's (here root's) process before creating anything.
#[test]
fn unprivileged_restore_of_another_users_process_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let orig = Workload::spawn(workload("onetask"), &["-d", "20"]);
    orig.expect_count(None, 2);
    let dir = tempdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let img = dir.path().join("root.img");
    ckpt_to_file(&[], orig.pid(), &img);
    std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = children_of(std::process::id() as i32).len();
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin("cr-restart"))
        .args(["--no-pids", "-i", img.to_str().unwrap()])
        .stdin(Stdio::null());
    let f = run_cmd(cmd, None);
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    assert_eq!(f.stderr.lines().count(), 1, "{}", f.stderr);
    assert!(f.stderr.contains("only root may restore"), "{}", f.stderr);
    assert_eq!(children_of(std::process::id() as i32).len(), before);
    orig.assert_no_fail();
}
