//! Reliability and security: authenticated (keyed) images, restores that
//! fail at every stage and leave nothing behind, checkpoints killed at
//! random moments, many cycles in a row, and hostile images.
//!
//! Every test cleans up what it started through the harness's guards
//! (`Workload`, `Restore`, `IpcGuard`, temporary directories), even when
//! it fails. No test asserts timing: timeouts are failure guards only.

mod common;

use common::*;
use crtools::image::{RawRecord, Reader, WriteOptions, Writer};
use std::path::Path;
use std::process::Command;

// ---------------------------------------------------------------------------
// Authenticated images

fn write_key(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write key file");
    p.to_str().expect("utf-8 path").to_string()
}

/// Processes running `exe` whose command line contains `mark` (other
/// tests of this file run the same workloads at the same time).
fn running(exe: &Path, mark: &str) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|p| std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e == exe))
        .filter(|&p| cmdline_of(p).is_some_and(|c| c.contains(mark)))
        .collect()
}

/// Checks a failed run: status 1 and exactly one line on stderr.
fn assert_one_line_failure(f: &Finished, want: &str) {
    assert_eq!(f.code(), Some(1), "{}: {}", f.name, f.stderr);
    assert_eq!(f.stderr.lines().count(), 1, "{}: {}", f.name, f.stderr);
    assert!(
        f.stderr.contains(want),
        "{}: want {want:?}: {}",
        f.name,
        f.stderr
    );
}

/// Rewrites an image record by record through `edit` (which may change a
/// record's payload but keeps its digest), with fresh CRCs: what someone
/// without the key can do to a keyed image.
fn rewrite(image: &[u8], mut edit: impl FnMut(&mut RawRecord)) -> Vec<u8> {
    let mut r = Reader::new(image).expect("read image");
    let mut w = Writer::with_header_raw(Vec::new(), r.header_raw(), WriteOptions { digest: true })
        .expect("writer");
    while let Some(mut raw) = r.next_raw().expect("record") {
        edit(&mut raw);
        w.write_stored(
            raw.head.kind,
            raw.head.flags,
            raw.head.raw_len as usize,
            &raw.stored,
            raw.digest,
        )
        .expect("write");
    }
    if let Some(d) = r.end_raw().and_then(|e| e.digest) {
        w.keep_keyed_end(d);
    }
    w.finish().expect("finish")
}

#[test]
fn keyed_images_round_trip_and_refuse_the_rest() {
    let dir = tempdir();
    let key = write_key(dir.path(), "key", b"the secret of the source site\n");
    let other = write_key(dir.path(), "other", b"someone else's secret\n");
    let mut orig = Workload::spawn(workload("onetask"), &["-d", "10", "-s", "256"]);
    orig.expect_count(None, 3);
    let pid = orig.pid();

    // Images of the running workload: plain, summed, keyed, and keyed then
    // compressed (cr-zstd keeps a keyed stream valid without the key).
    let plain = dir.path().join("plain.img");
    ckpt_to_file(&[], pid, &plain);
    let plain_bytes = std::fs::read(&plain).unwrap();
    let summed = run("cr-sum", &[], Some(&plain_bytes));
    summed.assert_success();
    let keyed = run("cr-sum", &["--key", &key], Some(&plain_bytes));
    keyed.assert_success();
    let keyed_z = run("cr-zstd", &[], Some(&keyed.stdout));
    keyed_z.assert_success();
    let unz = run("cr-zstd", &["-d"], Some(&keyed_z.stdout));
    unz.assert_success();
    assert_eq!(
        unz.stdout, keyed.stdout,
        "cr-zstd -d gives the keyed image back"
    );

    // Checks: with the key, without it, with another key.
    for img in [&keyed.stdout, &keyed_z.stdout] {
        let ok = run("cr-sum", &["--check", "--key", &key], Some(img));
        ok.assert_success();
        let out = String::from_utf8_lossy(&ok.stdout);
        assert!(out.contains("keyed digests verified"), "{out}");
        let nokey = run("cr-sum", &["--check"], Some(img));
        nokey.assert_success();
        let out = String::from_utf8_lossy(&nokey.stdout);
        assert!(out.contains("keyed digests present, not verified"), "{out}");
        run("cr-info", &[], Some(img)).assert_success();
        let wrong = run("cr-sum", &["--check", "--key", &other], Some(img));
        assert_one_line_failure(&wrong, "keyed digest");
    }
    let unkeyed = run("cr-sum", &["--check", "--key", &key], Some(&summed.stdout));
    assert_one_line_failure(&unkeyed, "no keyed digest");
    // Plain cr-sum over a keyed image would drop the keys: refused.
    let resum = run("cr-sum", &[], Some(&keyed.stdout));
    assert_one_line_failure(&resum, "keyed digests");

    // cr-restart --require-key refuses, before creating anything, the
    // plain, the summed, and the other key's image: the original keeps
    // its pid and nothing new appears.
    let exe = workload("onetask");
    // This test's onetask alone runs with `-s 256`.
    let before = running(&exe, "-s 256");
    for (name, img, want) in [
        ("plain", &plain_bytes, "no keyed digest"),
        ("summed", &summed.stdout, "no keyed digest"),
        ("keyed", &keyed.stdout, "keyed digest"),
    ] {
        let key_for = if name == "keyed" { &other } else { &key };
        let f = run(
            "cr-restart",
            &["--no-pids", "--require-key", key_for],
            Some(img),
        );
        assert_one_line_failure(&f, want);
    }
    assert_eq!(
        running(&exe, "-s 256"),
        before,
        "processes left by refused restores"
    );

    // Tampered: a page changed and its CRC recomputed, digest kept. The
    // CRC passes, the keyed digest does not; the restore, already under
    // way when page data arrives, is undone.
    let mut changed = false;
    let tampered = rewrite(&keyed_z.stdout, |raw| {
        if raw.head.kind == crtools::image::Kind::PAGES && !changed {
            let mut p = raw.payload().expect("payload").to_vec();
            let n = p.len();
            p[n / 2] ^= 0x40;
            raw.stored = p.into();
            raw.head.flags &= !crtools::image::F_ZSTD;
            raw.head.stored_len = raw.head.raw_len;
            changed = true;
        }
    });
    assert!(changed, "the image has page data");
    run("cr-sum", &["--check"], Some(&tampered)).assert_success();
    let f = run("cr-sum", &["--check", "--key", &key], Some(&tampered));
    assert_one_line_failure(&f, "keyed digest");
    let f = run(
        "cr-restart",
        &["--no-pids", "--require-key", &key],
        Some(&tampered),
    );
    assert_one_line_failure(&f, "keyed digest");
    assert_eq!(
        running(&exe, "-s 256"),
        before,
        "processes left by a refused restore"
    );

    // The round trip: ckpt --kill | cr-sum --key | cr-zstd | cr-restart --require-key.
    let pid_s = pid.to_string();
    let mut r = Pipeline::new()
        .stage("ckpt", &["--kill", &pid_s])
        .stage("cr-sum", &["--key", &key])
        .stage("cr-zstd", &[])
        .restore(&["--require-key", &key]);
    r.restored.track(pid);
    orig.expect_exit();
    let n = orig.last_count(None).unwrap();
    r.restored.expect_count(None, n + 5);
    r.expect_pipeline_ok();
    assert_continues(&orig, &r.restored, None, Original::Killed);
    r.restored.assert_no_fail();
}

// ---------------------------------------------------------------------------
// All-or-nothing restore: a failure injected at each stage

/// Kills, on drop, any process still running `exe` among `pids`: what a
/// failed restore should not have left, cleaned up even if the test fails.
struct Leftovers {
    exe: std::path::PathBuf,
    pids: Vec<i32>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        for &p in &self.pids {
            if std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e == self.exe) {
                signal(p, libc::SIGKILL);
            }
        }
    }
}

fn host_ipc() -> Vec<Vec<i32>> {
    [Ipc::Msg, Ipc::Sem, Ipc::Shm]
        .into_iter()
        .map(|k| {
            let mut v = ipc_ids(k);
            v.sort_unstable();
            v
        })
        .collect()
}

/// Checkpoints `orig` (killing it) to an image, then restores the image
/// with a failure injected at every stage, checking that each failed
/// restore exits 1 with one line and leaves no process, SysV object or
/// temporary file behind; finally restores it for real.
fn fail_at_every_stage(mut orig: Workload, exe: &Path, tag: Option<&str>) {
    let dir = tempdir();
    let img = dir.path().join("app.img");
    orig.expect_count(tag, 3);
    let tree = orig.tree();
    let _left = Leftovers {
        exe: exe.to_path_buf(),
        pids: tree.clone(),
    };
    ckpt_to_file(&["--kill"], orig.pid(), &img);
    orig.expect_exit();
    for &p in &tree {
        assert!(wait_pid_gone(p, TIMEOUT), "pid {p} of the original stays");
    }
    let ipc_before = host_ipc();
    for stage in crtools::restart::inject::STAGES {
        let tmp = tempdir();
        let mut cmd = Command::new(bin("cr-restart"));
        cmd.args(["-i", img.to_str().unwrap()])
            .env("CRTOOLS_FAIL_AT", stage)
            .env("TMPDIR", tmp.path());
        let f = run_cmd(cmd, None);
        assert_one_line_failure(&f, &format!("injected failure at stage {stage}"));
        for &p in &tree {
            assert!(
                wait_pid_gone(p, TIMEOUT),
                "stage {stage}: pid {p} left behind"
            );
        }
        assert_eq!(
            running(exe, ""),
            Vec::<i32>::new(),
            "stage {stage}: processes left"
        );
        assert_eq!(host_ipc(), ipc_before, "stage {stage}: SysV objects left");
        let files: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert!(
            files.is_empty(),
            "stage {stage}: temporary files left: {files:?}"
        );
    }
    // A mistyped stage is an error too, not a silent success.
    let mut cmd = Command::new(bin("cr-restart"));
    cmd.args(["-i", img.to_str().unwrap()])
        .env("CRTOOLS_FAIL_AT", "nosuchstage");
    assert_one_line_failure(&run_cmd(cmd, None), "no such stage");
    // And the image restores: the failures were the injected ones.
    let mut r = Pipeline::new().input(&img).restore(&[]);
    r.restored.track_all(&tree);
    let n = orig.last_count(tag).unwrap();
    r.restored.expect_count(tag, n + 3);
    r.restored.assert_no_fail();
    assert_eq!(
        host_ipc(),
        ipc_before,
        "the restore in its own IPC namespace"
    );
}

#[test]
fn failed_restores_leave_nothing_multitask() {
    // A private copy of the program, so that processes of other tests
    // running multitask at the same time are not counted as leftovers.
    let bin_dir = tempdir();
    let exe = bin_dir.path().join("multitask-failures");
    std::fs::copy(workload("multitask"), &exe).expect("copy the workload");
    let orig = Workload::spawn(&exe, &["-d", "10"]);
    fail_at_every_stage(orig, &exe, Some("A1"));
}

/// Sixteen processes: two tracer threads rebuild them, and stage `half`
/// fails in the second one's half while the first rebuilds its own; every
/// other stage fails with both tracers holding processes.
#[test]
fn failed_restores_leave_nothing_two_tracers() {
    let bin_dir = tempdir();
    let exe = bin_dir.path().join("forest-failures");
    std::fs::copy(workload("forest"), &exe).expect("copy the workload");
    let orig = Workload::spawn(&exe, &["-d", "10", "-c", "15", "-p"]);
    fail_at_every_stage(orig, &exe, Some("c15"));
}

#[test]
fn failed_restores_leave_nothing_ipc_namespace() {
    let bin_dir = tempdir();
    let exe = bin_dir.path().join("ipcshm-failures");
    std::fs::copy(workload("ipcshm"), &exe).expect("copy the workload");
    let mut cmd = Command::new("unshare");
    cmd.arg("--ipc").arg(&exe).args(["-d", "10", "-m", "64"]);
    let orig = Workload::spawn_cmd(cmd);
    fail_at_every_stage(orig, &exe, None);
}

// ---------------------------------------------------------------------------
// Checkpoint faults

/// A small reproducible generator (xorshift64*): the seed is printed, and
/// `CR_SEED` replays a run.
struct Rng(u64);

impl Rng {
    fn seeded(default: u64) -> Rng {
        let seed = std::env::var("CR_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default);
        eprintln!("seed {seed} (set CR_SEED to replay)");
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Waits until no process of `pids` is stopped or traced (a ckpt that died
/// with the tree seized leaves it to the kernel, which detaches it).
fn assert_not_stopped(pids: &[i32], what: &str) {
    for &p in pids {
        let ok = wait_state(p, TIMEOUT, |s| !matches!(s, Some('t' | 'T')));
        assert!(ok, "{what}: pid {p} left in state {:?}", proc_state(p));
    }
}

/// The ckpt process's exit: success, or a clean failure (status 1), never
/// a panic (101) or another signal than the one the test sent.
fn assert_clean_ckpt_exit(f: &Finished) {
    assert!(
        f.status.success() || f.code() == Some(1),
        "ckpt ended with {}: {}",
        f.status,
        f.stderr
    );
    assert!(!f.stderr.contains("panicked"), "{}", f.stderr);
}

/// `ckpt` SIGKILLed at 100 random moments (seeded, reproducible with
/// `CR_SEED`) while it checkpoints a self-checking workload: the target keeps
/// running and passing its checks every time. (`ckpt` runs the checkpoint in
/// a worker child that gets SIGTERM when `ckpt` dies and hands the target
/// back as it was; before that, a SIGKILL during a remote syscall left the
/// target with borrowed registers.)
#[test]
fn ckpt_killed_at_random_moments_leaves_the_target_running() {
    const TRIALS: usize = 100;
    let mut rng = Rng::seeded(0x5eed_c0de);
    let mut orig = Workload::spawn(workload("bigmem"), &["-m", "8", "-d", "2", "-k", "1"]);
    orig.expect_count(None, 2);
    let pid = orig.pid();
    let pid_s = pid.to_string();
    // ckpt maps a page of its own in the target while it asks it (the
    // batch loop): whenever ckpt dies, the page is gone again.
    let maps = || std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let before = maps();
    let mut finished_first = 0;
    for trial in 0..TRIALS {
        let delay = rng.below(50);
        let mut c = Command::new(bin("ckpt"))
            .args(["-o", "/dev/null", &pid_s])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn ckpt");
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let _ = c.kill();
        let status = c.wait().expect("wait for ckpt");
        if status.success() {
            finished_first += 1;
        }
        let what = format!("trial {trial} (kill after {delay} ms)");
        assert_not_stopped(&[pid], &what);
        assert_eq!(maps(), before, "{what}: the target's mappings changed");
        if let Some(st) = orig.wait_exit(std::time::Duration::from_millis(20)) {
            panic!("{what}: the target ended with {st}\n{}", orig.report());
        }
        let n = orig.last_count(None).unwrap_or(0);
        orig.expect_count(None, n + 2);
        orig.assert_no_fail();
    }
    eprintln!("{TRIALS} trials, {finished_first} checkpoints finished before the kill");
    check_consecutive(&orig.counts(None)).unwrap_or_else(|e| panic!("{e}\n{}", orig.report()));
}

#[test]
fn target_exiting_during_the_checkpoint() {
    for round in 0..8 {
        let mut orig = Workload::spawn(workload("onetask"), &["-d", "1", "-n", "30"]);
        let pid = orig.pid().to_string();
        // Checkpoint it again and again while it runs to its end.
        let mut ckpts = 0;
        while orig.try_status().is_none() && ckpts < 50 {
            let f = ckpt(&["-o", "/dev/null", &pid]);
            assert_clean_ckpt_exit(&f);
            ckpts += 1;
        }
        let st = orig.expect_exit();
        assert!(
            st.success(),
            "round {round}: exited with {st}\n{}",
            orig.report()
        );
        orig.assert_no_fail();
        check_consecutive(&orig.counts(None)).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn target_forking_during_the_freeze() {
    let tags = ["root", "A", "A1", "B", "B1"];
    for round in 0..8 {
        let orig = Workload::spawn(workload("multitask"), &["-d", "5"]);
        let pid = orig.pid().to_string();
        // Right after the start, while the tree is still forking.
        let f = ckpt(&["-o", "/dev/null", &pid]);
        assert_clean_ckpt_exit(&f);
        if !f.status.success() {
            assert_eq!(f.stderr.lines().count(), 1, "round {round}: {}", f.stderr);
        }
        for t in tags {
            orig.expect_count(Some(t), 5);
        }
        assert_not_stopped(&orig.tree(), &format!("round {round}"));
        for t in tags {
            let n = orig.last_count(Some(t)).unwrap();
            orig.expect_count(Some(t), n + 2);
            check_consecutive(&orig.counts(Some(t))).unwrap_or_else(|e| panic!("{t}: {e}"));
        }
        orig.assert_no_fail();
    }
}

// ---------------------------------------------------------------------------
// Load and soak

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn zombies() -> usize {
    all_pids()
        .into_iter()
        .filter(|&p| proc_state(p) == Some('Z'))
        .count()
}

/// 200 checkpoint/restore cycles in a row, each restoring from the previous
/// restore: the counts stay consecutive, no FAIL, and the tools leave no
/// growing number of descriptors, processes or zombies.
#[test]
fn two_hundred_cycles() {
    const CYCLES: usize = 200;
    let zombies_before = zombies();
    let mut prev = Workload::spawn(workload("onetask"), &["-d", "5", "-s", "64"]);
    prev.expect_count(None, 2);
    let root = prev.pid();
    let root_s = root.to_string();
    let mut fds = Vec::new();
    let mut finished = Vec::new();
    for cycle in 0..CYCLES {
        let mut r = Pipeline::new()
            .stage("ckpt", &["--kill", &root_s])
            .restore(&[]);
        r.restored.track(root);
        r.expect_pipeline_ok();
        prev.expect_exit();
        let n = prev.last_count(None).unwrap();
        r.restored.expect_count(None, n + 2);
        assert_continues(&prev, &r.restored, None, Original::Killed);
        r.restored.assert_no_fail();
        // cr-restart waits in the foreground for the restored root.
        fds.push(fd_count(r.restored.pid()));
        assert_eq!(
            ppid_of(root),
            Some(r.restored.pid()),
            "cycle {cycle}: the root is cr-restart's child"
        );
        let Restore { pipeline, restored } = r;
        drop(pipeline);
        // Kept until the end: dropping a finished workload kills the pids
        // it knew, the root among them.
        finished.push(std::mem::replace(&mut prev, restored));
    }
    eprintln!(
        "{CYCLES} cycles; cr-restart descriptors per cycle: first {:?}, last {:?}",
        &fds[..3],
        &fds[CYCLES - 3..]
    );
    assert!(
        fds.iter().all(|&n| n == fds[0]),
        "cr-restart's descriptors changed across cycles: {fds:?}"
    );
    drop(prev);
    drop(finished);
    assert!(
        wait_until(TIMEOUT, || zombies() <= zombies_before),
        "zombies grew from {zombies_before} to {}",
        zombies()
    );
}

/// Checkpoints of processes under heavy activity (threads busy, memory
/// churning), ten in a row, then a migration: the workload's own checks
/// pass throughout and its counts continue.
#[test]
fn checkpoints_under_heavy_activity() {
    let cases: [(&str, &[&str], &[&str]); 2] = [
        (
            "threads",
            &["-d", "1", "-t", "6"],
            &["t0", "t1", "t2", "t3", "t4", "t5"],
        ),
        ("bigmem", &["-d", "1", "-m", "32", "-k", "8"], &[]),
    ];
    for (name, args, tags) in cases {
        let mut orig = Workload::spawn(workload(name), args);
        let tags: Vec<Option<&str>> = if tags.is_empty() {
            vec![None]
        } else {
            tags.iter().map(|t| Some(*t)).collect()
        };
        for &t in &tags {
            orig.expect_count(t, 3);
        }
        let pid = orig.pid().to_string();
        for i in 0..10 {
            let f = ckpt(&["-o", "/dev/null", &pid]);
            assert!(f.status.success(), "{name}: checkpoint {i}: {}", f.stderr);
            orig.assert_no_fail();
        }
        assert_not_stopped(&orig.tree(), name);
        for &t in &tags {
            let n = orig.last_count(t).unwrap();
            orig.expect_count(t, n + 2);
        }
        let mut r = migrate(&mut orig, &[("cr-zstd", &[])]);
        for &t in &tags {
            let n = orig.last_count(t).unwrap();
            r.restored.expect_count(t, n + 3);
        }
        r.expect_pipeline_ok();
        for &t in &tags {
            assert_continues(&orig, &r.restored, t, Original::Killed);
        }
        r.restored.assert_no_fail();
    }
}
