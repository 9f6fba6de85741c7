//! Round trips of single processes (issue 3): a real process is checkpointed with
//! `ckpt`, restored with `cr-restart` (directly or through the filters), and must
//! go on exactly where it was: its counters continue without gap or repeat, its
//! own invariant checks (heap patterns, FPU registers, signal state, files) keep
//! passing. Also the failure paths: damaged images, pids in use, exit statuses.
//!
//! Every process and temporary file is cleaned up by the guards in `common`,
//! also when a test fails. No test asserts timing.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Through compression and digests, as in `ckpt PID | cr-zstd | cr-sum | cr-restart`.
const ZSTD_SUM: &[(&str, &[&str])] = &[("cr-zstd", &[]), ("cr-sum", &[])];

/// Spawns a workload, lets it print `warm` counts of every tag, migrates it with
/// `ckpt --kill | FILTERS | cr-restart`, and checks that every tag continues for
/// `more` counts. Returns both, still running, for further checks.
fn migrate_and_check(
    program: impl AsRef<std::ffi::OsStr>,
    args: &[&str],
    tags: &[Option<&str>],
    filters: &[(&str, &[&str])],
    warm: u64,
    more: u64,
) -> (Workload, Restore) {
    let mut orig = Workload::spawn(program, args);
    let r = migrate_and_continue(&mut orig, tags, filters, warm, more);
    (orig, r)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The complete lines of a file (a last line without its newline is left out).
fn file_lines(p: &Path) -> Vec<String> {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let complete = match s.rfind('\n') {
        Some(i) => &s[..=i],
        None => "",
    };
    complete.lines().map(String::from).collect()
}

/// Checks that every `f=` value onetask printed is the exact harmonic number of
/// its count.
fn check_floats(lines: &[String]) {
    for l in lines {
        if let (Some((None, n)), Some(f)) = (parse_count(l), l.split("f=").nth(1)) {
            let f: f64 = f.trim().parse().unwrap_or_else(|_| panic!("bad f= in {l}"));
            assert_eq!(
                f.to_bits(),
                harmonic(n).to_bits(),
                "float sequence broken: {l} (expected {})",
                harmonic(n)
            );
        }
    }
}

// ---------------------------------------------------------------------------
// onetask

#[test]
fn onetask_kill_restart() {
    let dir = tempdir();
    let log = dir.path().join("log");
    std::fs::write(&log, "a line before the workload started\n").unwrap();
    let (orig, r) = migrate_and_check(
        workload("onetask"),
        &["-d", "20", "-l", path_str(&log)],
        &[None],
        &[],
        5,
        10,
    );
    check_floats(&orig.lines());
    check_floats(&r.restored.lines());
    // The log: the first line, then every count once, in order, from both: the
    // file offset (O_APPEND and the position onetask checks) was kept.
    let logged = file_lines(&log);
    assert_eq!(logged[0], "a line before the workload started");
    let c = counts(&logged[1..], None);
    assert_eq!(c.first(), Some(&1), "log: {logged:?}");
    check_consecutive(&c).unwrap_or_else(|e| panic!("log: {e}: {logged:?}"));
    assert!(
        c.last().copied() > orig.last_count(None),
        "the restored process did not log"
    );
    assert_eq!(
        r.restored.pid(),
        ppid_of(orig.pid()).unwrap_or(0),
        "the restored process is not cr-restart's child with its original pid"
    );
}

#[test]
fn onetask_through_zstd_and_sum() {
    let dir = tempdir();
    let log = dir.path().join("log");
    let (orig, r) = migrate_and_check(
        workload("onetask"),
        &["-d", "20", "-l", path_str(&log)],
        &[None],
        ZSTD_SUM,
        5,
        10,
    );
    check_floats(&r.restored.lines());
    let c = counts(&file_lines(&log), None);
    check_consecutive(&c).unwrap_or_else(|e| panic!("log: {e}"));
    assert!(c.last().copied() > orig.last_count(None));
}

#[test]
fn onetask_no_pids_while_the_original_runs() {
    let orig_w = Workload::spawn(workload("onetask"), &["-d", "20"]);
    orig_w.expect_count(None, 5);
    let mut orig = orig_w;
    let mut r = checkpoint_restore(&mut orig, &[], &[], &["--no-pids"]);
    r.expect_pipeline_ok();
    let first = r.restored.expect_count(None, 1);
    let first = parse_count(&first).unwrap().1;
    r.restored.expect_count(None, first + 10);
    // The original went on too, untouched.
    let o_now = orig.last_count(None).unwrap();
    orig.expect_count(None, o_now + 10);
    assert_eq!(proc_state(orig.pid()).map(|s| s != 'T'), Some(true));
    assert_continues(&orig, &r.restored, None, Original::Running);
    check_floats(&r.restored.lines());
    let kids = children_of(r.restored.pid());
    assert_eq!(kids.len(), 1, "cr-restart children: {kids:?}");
    assert_ne!(kids[0], orig.pid(), "--no-pids restored the original pid");
}

#[test]
fn ckpt_stop_leaves_the_original_stopped() {
    let orig = Workload::spawn(workload("onetask"), &["-d", "20"]);
    orig.expect_count(None, 5);
    let pid = orig.pid();
    let out = ckpt(&["--stop", &pid.to_string()]);
    out.assert_success();
    assert!(!out.stdout.is_empty(), "ckpt --stop wrote no image");
    assert!(
        wait_state(pid, TIMEOUT, |s| s == Some('T')),
        "after ckpt --stop the process is in state {:?}, not T",
        proc_state(pid)
    );
    let at_stop = orig.last_count(None).unwrap();
    assert!(signal(pid, libc::SIGCONT));
    orig.expect_count(None, at_stop + 5);
    orig.assert_no_fail();
    check_consecutive(&orig.counts(None)).unwrap();
    // The image it wrote is a good one.
    let info = run("cr-info", &[], Some(&out.stdout));
    info.assert_success();
}

#[test]
fn fifty_checkpoints_leave_the_process_correct() {
    let dir = tempdir();
    let log = dir.path().join("log");
    let orig = Workload::spawn(workload("onetask"), &["-d", "10", "-l", path_str(&log)]);
    orig.expect_count(None, 3);
    let pid = orig.pid().to_string();
    for i in 0..50 {
        let out = ckpt(&[&pid]);
        assert!(
            out.status.success(),
            "checkpoint {i} failed with {}: {}\n{}",
            out.status,
            out.stderr,
            orig.report()
        );
        assert!(!out.stdout.is_empty());
        orig.assert_no_fail();
    }
    let now = orig.last_count(None).unwrap();
    orig.expect_count(None, now + 10);
    orig.assert_no_fail();
    let c = orig.counts(None);
    assert_eq!(c.first(), Some(&1));
    check_consecutive(&c).unwrap_or_else(|e| panic!("{e}\n{}", orig.report()));
    check_floats(&orig.lines());
    check_consecutive(&counts(&file_lines(&log), None)).unwrap();
    assert_ne!(proc_state(orig.pid()), Some('T'));
}

#[test]
fn bigmem_64m_memory_intact() {
    let (orig, r) = migrate_and_check(
        workload("bigmem"),
        &["-d", "20", "-m", "64", "-k", "3"],
        &[None],
        &[],
        2,
        1,
    );
    // A full verification after the restore: every data, zero and zero-page
    // page checked, and the never-touched region still not resident.
    let last = orig.last_count(None).unwrap();
    let line = r.restored.expect_line(
        |l| parse_count(l).is_some_and(|(_, n)| n > last) && l.contains("verified"),
        "with a full verification after the restore",
    );
    assert!(
        line.ends_with("untouched_resident=0"),
        "pages never touched became resident after the restore: {line}"
    );
}

/// The two ways page data goes in on restore: anonymous private memory
/// placed with `UFFDIO_COPY` (the default; `cr-restart -v` says how much),
/// and `process_vm_writev` alone (`CRTOOLS_NO_UFFD=1`). The same image
/// restored each way: bigmem's full verification passes after each restore
/// (every data page, zero page and zero-page mapping checked, the
/// never-touched region still not resident), and the restored process
/// holds no userfaultfd.
#[test]
fn bigmem_restored_by_uffdio_copy_and_without() {
    let d = tempdir();
    let img = d.path().join("img");
    let mut orig = Workload::spawn(workload("bigmem"), &["-d", "20", "-m", "16", "-k", "1"]);
    orig.expect_count(None, 3);
    let pid = orig.pid();
    ckpt_to_file(&["--kill"], pid, &img);
    orig.wait_exit(TIMEOUT);
    let last = orig.last_count(None).unwrap();
    assert!(wait_pid_gone(pid, TIMEOUT), "pid {pid} still there");
    for uffd in [true, false] {
        let out = d.path().join(format!("out-{uffd}"));
        let mut c = Command::new(bin("cr-restart"));
        c.args(["-v", "-d", "--fd", &format!("1={}", path_str(&out))])
            .args(["-i", path_str(&img)]);
        if !uffd {
            c.env("CRTOOLS_NO_UFFD", "1");
        }
        let f = run_cmd(c, None);
        orig.track(pid);
        assert!(f.status.success(), "cr-restart: {}", f.stderr);
        assert_eq!(
            f.stderr.contains("placed by UFFDIO_COPY"),
            uffd,
            "uffd {uffd}: {}",
            f.stderr
        );
        let verified = || {
            file_lines(&out).into_iter().find(|l| {
                parse_count(l).is_some_and(|(_, n)| n > last + 1) && l.contains("verified")
            })
        };
        assert!(
            wait_until(TIMEOUT, || verified().is_some()),
            "uffd {uffd}: no full verification after the restore: {:?}",
            std::fs::read_to_string(&out)
        );
        let line = verified().unwrap();
        assert!(
            line.ends_with("untouched_resident=0"),
            "uffd {uffd}: {line}"
        );
        assert!(
            !file_lines(&out).iter().any(|l| l.starts_with("FAIL")),
            "uffd {uffd}: {:?}",
            std::fs::read_to_string(&out)
        );
        let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .map(|l| l.display().to_string())
            .collect();
        assert!(
            !fds.iter().any(|l| l.contains("userfaultfd")),
            "uffd {uffd}: the restored process holds {fds:?}"
        );
        assert!(signal(pid, libc::SIGKILL), "pid {pid} gone already");
        assert!(wait_pid_gone(pid, TIMEOUT), "pid {pid} still there");
    }
}

// ---------------------------------------------------------------------------
// Blocked in syscalls

/// sleeper in one mode: checkpointed while blocked in the call (state S), then
/// it must finish the call and go on.
fn sleeper(mode: &str) {
    let mut orig = Workload::spawn(workload("sleeper"), &["-d", "200", "-m", mode]);
    orig.expect_count(None, 2);
    assert!(
        wait_state(orig.pid(), TIMEOUT, |s| s == Some('S')),
        "sleeper is not blocked"
    );
    let mut r = migrate(&mut orig, &[]);
    orig.wait_eof(TIMEOUT);
    let last = orig.last_count(None).unwrap();
    let line = r.restored.expect_count(None, last + 4);
    assert!(line.ends_with(mode), "{line}");
    r.expect_pipeline_ok();
    assert_continues(&orig, &r.restored, None, Original::Killed);
}

#[test]
fn sleeper_nanosleep() {
    sleeper("nanosleep");
}

#[test]
fn sleeper_poll() {
    sleeper("poll");
}

#[test]
fn sleeper_select() {
    sleeper("select");
}

#[test]
fn sleeper_futex() {
    sleeper("futex");
}

#[test]
fn sleeper_sigtimedwait() {
    sleeper("sigtimedwait");
}

#[test]
fn sleeper_read() {
    sleeper("read");
}

#[test]
fn sleeper_wait() {
    sleeper("wait");
}

// ---------------------------------------------------------------------------
// Registers, signals, files

fn fpu(isa: &str) {
    let (_orig, r) = migrate_and_check(
        workload("fpu"),
        &["-d", "20", "-i", isa],
        &[None],
        &[],
        5,
        10,
    );
    let l = r.restored.lines();
    if isa != "auto" {
        assert!(l.iter().all(|l| l.contains(&format!("isa={isa}"))), "{l:?}");
    }
}

#[test]
fn fpu_sse() {
    fpu("sse");
}

#[test]
fn fpu_avx() {
    fpu("avx");
}

#[test]
fn fpu_widest() {
    // avx512 where the CPU has it (this one does): zmm0-31 and k1-k7.
    fpu("auto");
}

#[test]
fn sigs_dispositions_mask_altstack() {
    migrate_and_check(workload("sigs"), &["-d", "20"], &[None], &[], 5, 10);
}

#[test]
fn files_kept() {
    let dir = tempdir();
    let (_orig, _r) = migrate_and_check(
        workload("files"),
        &["-d", "20", "-D", path_str(dir.path())],
        &[None],
        &[],
        5,
        10,
    );
    let log = std::fs::read_to_string(dir.path().join("append.log")).unwrap();
    let lines: Vec<String> = log.lines().map(String::from).collect();
    check_consecutive(&counts(&lines, None)).unwrap_or_else(|e| panic!("append.log: {e}"));
    assert!(
        !dir.path().join("deleted.tmp").exists(),
        "the deleted file came back under its name"
    );
}

// ---------------------------------------------------------------------------
// Real programs

#[test]
fn python3_counter_through_zstd_and_sum() {
    migrate_and_check(script("counter.py"), &["20"], &[None], ZSTD_SUM, 5, 10);
}

/// CPython installs its handlers with SA_ONSTACK and sets no alternate stack:
/// the restored process must have none either (not cr-restart's own), or the
/// first signal kills it with SIGSEGV. Each signal is handled (a `sig NAME`
/// line), counting goes on between them, and SIGTERM's handler exits 0.
#[test]
fn python3_signal_handlers_run_after_restore() {
    let (orig, mut r) = migrate_and_check(script("sighandlers.py"), &["20"], &[None], &[], 5, 3);
    // The restored process has the original's pid (`r.restored` is cr-restart).
    let pid = orig.pid();
    for (sig, name) in [(libc::SIGUSR1, "SIGUSR1"), (libc::SIGUSR2, "SIGUSR2")] {
        let before = r.restored.lines().len();
        assert!(signal(pid, sig), "cannot send {name} to {pid}");
        let line = format!("sig {name}");
        r.restored.expect_line(|l| l == line, &line);
        // Counting goes on after the handler.
        let at = r.restored.lines()[before..]
            .iter()
            .position(|l| *l == line)
            .expect("the signal line")
            + before;
        let last = counts(&r.restored.lines()[..at], None)
            .last()
            .copied()
            .unwrap_or(0);
        r.restored.expect_count(None, last + 3);
    }
    assert!(signal(pid, libc::SIGTERM), "cannot send SIGTERM to {pid}");
    let st = r.restored.expect_exit();
    let lines = r.restored.lines();
    assert_eq!(
        st.code(),
        Some(0),
        "the SIGTERM handler did not exit 0: {}",
        r.restored.report()
    );
    assert!(
        lines.ends_with(&["sig SIGTERM".into(), "bye".into()]),
        "{lines:?}"
    );
    check_consecutive(&r.restored.counts(None)).unwrap_or_else(|e| panic!("{e}: {lines:?}"));
}

/// The same cause in C: an SA_ONSTACK handler without an alternate stack
/// (none must appear on restore), and with one set with SS_AUTODISARM (kept
/// exactly). The workload checks both and that the handler ran, each count.
#[test]
fn sa_onstack_without_and_with_altstack() {
    migrate_and_check(workload("onstack"), &["-d", "20"], &[None], &[], 5, 10);
    migrate_and_check(
        workload("onstack"),
        &["-a", "-d", "20"],
        &[None],
        &[],
        5,
        10,
    );
}

#[test]
fn perl_counter_through_zstd_and_sum() {
    migrate_and_check(script("counter.pl"), &["20"], &[None], ZSTD_SUM, 5, 10);
}

// ---------------------------------------------------------------------------
// cr-restart's own behaviour

#[test]
fn exit_status_is_the_restored_process_status() {
    let mut orig = Workload::spawn(workload("onetask"), &["-d", "30", "-n", "60", "-e", "7"]);
    orig.expect_count(None, 3);
    let mut r = migrate(&mut orig, &[]);
    let st = r.restored.expect_exit();
    r.expect_pipeline_ok();
    assert_eq!(st.code(), Some(7), "{}", r.restored.report());
    assert_continues(&orig, &r.restored, None, Original::Killed);
    assert_eq!(r.restored.last_count(None), Some(60));
}

#[test]
fn exit_status_is_128_plus_signal() {
    let mut orig = Workload::spawn(workload("onetask"), &["-d", "20"]);
    orig.expect_count(None, 3);
    let pid = orig.pid();
    let mut r = migrate(&mut orig, &[]);
    let last = orig.last_count(None).unwrap();
    r.restored.expect_count(None, last + 3);
    r.expect_pipeline_ok();
    // SIGUSR1 (default action: terminate) sent to the restored process itself.
    assert!(signal(pid, libc::SIGUSR1));
    let st = r.restored.expect_exit();
    assert_eq!(
        st.code(),
        Some(128 + libc::SIGUSR1),
        "{}",
        r.restored.report()
    );
}

#[test]
fn sigterm_is_forwarded() {
    let mut orig = Workload::spawn(workload("onetask"), &["-d", "20"]);
    orig.expect_count(None, 3);
    let pid = orig.pid();
    let mut r = migrate(&mut orig, &[]);
    let last = orig.last_count(None).unwrap();
    r.restored.expect_count(None, last + 3);
    r.expect_pipeline_ok();
    assert!(signal(r.restored.pid(), libc::SIGTERM));
    let st = r.restored.expect_exit();
    assert_eq!(
        st.code(),
        Some(128 + libc::SIGTERM),
        "cr-restart did not report the restored process killed by the forwarded SIGTERM\n{}",
        r.restored.report()
    );
    assert!(
        wait_pid_gone(pid, TIMEOUT),
        "the restored process {pid} is still there"
    );
}

#[test]
fn detach_with_pidfile() {
    let dir = tempdir();
    let pidfile = dir.path().join("pid");
    let mut orig = Workload::spawn(workload("onetask"), &["-d", "20"]);
    orig.expect_count(None, 3);
    let pid = orig.pid();
    let mut r = checkpoint_restore(
        &mut orig,
        &["--kill"],
        &[],
        &[
            "--detach",
            "--fd",
            "1=fd:1",
            "--pidfile",
            path_str(&pidfile),
        ],
    );
    // cr-restart returns while the process runs (--fd 1=fd:1 keeps its stdout
    // open in the restored process, so wait for the exit status only).
    let mut st = None;
    assert!(
        wait_until(TIMEOUT, || {
            st = r.restored.try_status();
            st.is_some()
        }),
        "cr-restart --detach did not return\n{}",
        r.restored.report()
    );
    let st = st.unwrap();
    assert!(st.success(), "{st}\n{}", r.restored.report());
    r.expect_pipeline_ok();
    assert_eq!(read_pidfile(&pidfile), pid);
    let state = proc_state(pid);
    assert!(
        state.is_some_and(|s| s != 'Z' && s != 'X'),
        "restored process state {state:?}"
    );
    let last = orig.last_count(None).unwrap();
    r.restored.expect_count(None, last + 5);
    assert_continues(&orig, &r.restored, None, Original::Killed);
}

/// `--pidfile` that cannot be written: cr-restart exits 1 with one line
/// naming the file, and nothing restored is left running, whether the
/// path fails before the restore (no such directory) or only at the end
/// (the name is a directory, so the final rename fails); with and without
/// `--detach`. No temporary file is left either.
#[test]
fn unwritable_pidfile_leaves_nothing_running() {
    let dir = tempdir();
    let img = dir.path().join("img");
    let orig = Workload::spawn(workload("onetask"), &["-d", "23"]);
    orig.expect_count(None, 3);
    ckpt_to_file(&[], orig.pid(), &img);
    let cmdline = cmdline_of(orig.pid()).unwrap();
    let copies = || -> Vec<i32> {
        all_pids()
            .into_iter()
            .filter(|&p| p != orig.pid() && cmdline_of(p).as_deref() == Some(cmdline.as_str()))
            .collect()
    };
    let taken = dir.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("f"), "x").unwrap();
    let err = dir.path().join("err");
    for pidfile in ["/nonexistent/x", path_str(&taken)] {
        for detach in [true, false] {
            let mut args = vec!["-i", path_str(&img), "--no-pids", "--pidfile", pidfile];
            if detach {
                args.push("-d");
            }
            // stdout and stderr are not pipes: a restored process left
            // running would hold them open.
            let status = Command::new(bin("cr-restart"))
                .args(&args)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(&err).unwrap())
                .status()
                .unwrap();
            let left = copies();
            for &p in &left {
                signal(p, libc::SIGKILL);
            }
            let msg = std::fs::read_to_string(&err).unwrap();
            assert!(
                left.is_empty(),
                "cr-restart {args:?} left {left:?} running: {msg}"
            );
            assert_eq!(status.code(), Some(1), "cr-restart {args:?}: {msg}");
            assert_eq!(msg.lines().count(), 1, "cr-restart {args:?}: {msg}");
            assert!(msg.contains(pidfile), "cr-restart {args:?}: {msg}");
        }
    }
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 3, "files left: {names:?}");
    orig.assert_no_fail();
}

#[test]
fn fd_option_redirects_an_external_stdout() {
    let dir = tempdir();
    let out = dir.path().join("out");
    let spec = format!("1={}", path_str(&out));
    let mut orig = Workload::spawn(workload("onetask"), &["-d", "20"]);
    orig.expect_count(None, 3);
    let mut r = checkpoint_restore(&mut orig, &["--kill"], &[], &["--fd", &spec]);
    orig.wait_eof(TIMEOUT);
    let last = orig.last_count(None).unwrap();
    let ok = wait_until(TIMEOUT, || {
        counts(&file_lines(&out), None)
            .last()
            .is_some_and(|&n| n >= last + 5)
    });
    assert!(
        ok,
        "the restored stdout did not go to {}: {:?}\n{}",
        out.display(),
        file_lines(&out),
        r.restored.report()
    );
    r.expect_pipeline_ok();
    let restored = counts(&file_lines(&out), None);
    check_continuation(&orig.counts(None), &restored, Original::Killed)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        r.restored.counts(None).is_empty(),
        "counts still went to cr-restart's stdout"
    );
}

/// `--fd N=...` for a descriptor that led nowhere outside the image is
/// refused before anything is restored (it used to be ignored), in one line
/// naming N and the image's external descriptors (onetask's stdout and
/// stderr are the test's pipes; its stdin is /dev/null, not external).
#[test]
fn fd_option_for_a_descriptor_that_is_not_external_is_refused() {
    let dir = tempdir();
    let (orig, img) = killed_image(dir.path(), "4199");
    let target = dir.path().join("never");
    for extra in [&[][..], &["--in-place"][..]] {
        for n in ["7", "0"] {
            let spec = format!("{n}={}", path_str(&target));
            let mut args = vec!["--fd", &spec, "-i", path_str(&img)];
            args.extend(extra);
            let f = run("cr-restart", &args, None);
            let what = format!("--fd {spec} {extra:?}");
            assert_eq!(f.code(), Some(1), "{what}: {}", f.stderr);
            assert_eq!(f.stderr.lines().count(), 1, "{what}: {}", f.stderr);
            assert!(
                f.stderr
                    .contains(&format!("descriptor {n} does not lead outside")),
                "{what}: {}",
                f.stderr
            );
            // 1 and 2, and whatever else the test runner let it inherit.
            let listed: Vec<&str> = f
                .stderr
                .split_once("(only ")
                .and_then(|(_, r)| r.split_once(" lead outside it)"))
                .map(|(l, _)| l.split(", ").collect())
                .unwrap_or_default();
            assert!(
                listed.contains(&"1") && listed.contains(&"2") && !listed.contains(&n),
                "{what}: {}",
                f.stderr
            );
            assert!(!target.exists(), "{what}: {} was opened", target.display());
            assert_nothing_left(orig.pid(), "4199", &what);
        }
    }
}

// ---------------------------------------------------------------------------
// Images: cr-info, damage, pid in use

/// A onetask image written by `ckpt --kill -o`, the original reaped (its pid is
/// free). The workload's unusual heap size marks its cmdline.
fn killed_image(dir: &Path, heap: &str) -> (Workload, std::path::PathBuf) {
    let img = dir.join("img");
    let mut orig = Workload::spawn(workload("onetask"), &["-d", "20", "-s", heap]);
    orig.expect_count(None, 3);
    ckpt_to_file(&["--kill"], orig.pid(), &img);
    orig.expect_exit();
    assert!(wait_pid_gone(orig.pid(), TIMEOUT));
    (orig, img)
}

#[test]
fn cr_info_shows_a_real_image() {
    let dir = tempdir();
    let orig = Workload::spawn(workload("onetask"), &["-d", "20"]);
    orig.expect_count(None, 3);
    let img = dir.path().join("img");
    ckpt_to_file(&[], orig.pid(), &img);
    let info = run("cr-info", &[path_str(&img)], None);
    info.assert_success();
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains(&orig.pid().to_string()), "no pid in:\n{text}");
    assert!(text.contains("onetask"), "no command in:\n{text}");
    let json = run("cr-info", &["--json", path_str(&img)], None);
    json.assert_success();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("cr-info --json");
    let s = v.to_string();
    assert!(
        s.contains(&orig.pid().to_string()) && s.contains("onetask"),
        "{s}"
    );
    // Through the filters too.
    let out = Pipeline::new()
        .input(&img)
        .stage("cr-zstd", &[])
        .stage("cr-sum", &[])
        .stage("cr-info", &[])
        .run();
    out.assert_success();
    let t2 = String::from_utf8_lossy(&out.stdout);
    assert!(
        t2.contains(&orig.pid().to_string()) && t2.contains("onetask"),
        "{t2}"
    );
}

/// After a refused restore: nothing with the image's pid, group or command.
fn assert_nothing_left(pid: i32, marker: &str, what: &str) {
    assert!(
        wait_pid_gone(pid, Duration::from_secs(5)),
        "{what}: a process with the image's pid {pid} exists: {:?}",
        cmdline_of(pid)
    );
    let members = procs_in_group(pid);
    assert!(
        members.is_empty(),
        "{what}: processes in group {pid}: {members:?}"
    );
    let stray: Vec<(i32, String)> = all_pids()
        .into_iter()
        .filter_map(|p| Some((p, cmdline_of(p)?)))
        .filter(|(_, c)| c.contains("onetask") && c.contains(marker))
        .collect();
    assert!(
        stray.is_empty(),
        "{what}: restored processes left: {stray:?}"
    );
}

fn expect_refused(img: &Path, pid: i32, marker: &str, what: &str) {
    let mut c = Command::new(bin("cr-restart"));
    c.args(["--pid-wait", "1", "-i", path_str(img)]);
    let f = run_cmd(c, None);
    assert_eq!(
        f.code(),
        Some(1),
        "{what}: cr-restart exited {} (stderr: {})",
        f.status,
        f.stderr
    );
    let lines: Vec<&str> = f.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: stderr is not one line: {:?}",
        f.stderr
    );
    assert!(lines[0].starts_with("cr-restart: "), "{what}: {}", lines[0]);
    assert_nothing_left(pid, marker, what);
}

#[test]
fn damaged_images_are_refused() {
    let dir = tempdir();
    let (orig, img) = killed_image(dir.path(), "301");
    let pid = orig.pid();
    let data = std::fs::read(&img).unwrap();
    let len = data.len();
    assert!(len > 8192, "image of {len} bytes");
    let bad = dir.path().join("bad");
    for cut in [0, 7, 64, 200, 4096, len / 2, len - 4096, len - 30, len - 1] {
        std::fs::write(&bad, &data[..cut]).unwrap();
        expect_refused(
            &bad,
            pid,
            "301",
            &format!("image truncated at {cut} of {len}"),
        );
    }
    for at in [3, 40, 150, len / 3, len / 2 + 11, len - 100, len - 2] {
        let mut d = data.clone();
        d[at] ^= 0x10;
        std::fs::write(&bad, &d).unwrap();
        expect_refused(&bad, pid, "301", &format!("byte {at} of {len} flipped"));
    }
    // The undamaged image still restores.
    let mut c = Command::new(bin("cr-restart"));
    c.args(["-i", path_str(&img)]);
    let mut r = Pipeline::new().restore_cmd(c);
    r.restored.track(pid);
    r.restored.track_group(pid);
    let last = orig.last_count(None).unwrap();
    r.restored.expect_count(None, last + 3);
    assert_continues(&orig, &r.restored, None, Original::Killed);
}

#[test]
fn damaged_stream_through_pipe_is_refused() {
    // The same through stdin, and through cr-zstd | cr-sum, with the digest
    // checked: a truncated compressed stream is refused too.
    let dir = tempdir();
    let (_orig, img) = killed_image(dir.path(), "302");
    let pid = _orig.pid();
    let z = dir.path().join("z");
    Pipeline::new()
        .input(&img)
        .stage("cr-zstd", &[])
        .stage("cr-sum", &[])
        .run_to_file(&z)
        .assert_success();
    let data = std::fs::read(&z).unwrap();
    let len = data.len();
    for cut in [100, len / 2, len - 1] {
        let f = run("cr-restart", &["--pid-wait", "1"], Some(&data[..cut]));
        assert_eq!(f.code(), Some(1), "cut {cut}: {} {}", f.status, f.stderr);
        assert_eq!(
            f.stderr.trim().lines().count(),
            1,
            "cut {cut}: {}",
            f.stderr
        );
        assert_nothing_left(pid, "302", &format!("compressed stream cut at {cut}"));
    }
    let mut d = data.clone();
    d[len / 2] ^= 0x01;
    let f = run("cr-restart", &["--pid-wait", "1"], Some(&d));
    assert_eq!(f.code(), Some(1), "flipped: {} {}", f.status, f.stderr);
    assert_eq!(f.stderr.trim().lines().count(), 1, "{}", f.stderr);
    assert_nothing_left(pid, "302", "compressed stream with a flipped byte");
}

#[test]
fn pid_in_use_is_refused() {
    let dir = tempdir();
    let img = dir.path().join("img");
    let orig = Workload::spawn(workload("onetask"), &["-d", "20"]);
    orig.expect_count(None, 3);
    let pid = orig.pid();
    ckpt_to_file(&[], pid, &img);
    let mut c = Command::new(bin("cr-restart"));
    c.args(["--pid-wait", "1", "-i", path_str(&img)]);
    let f = run_cmd(c, None);
    assert_eq!(f.code(), Some(1), "{} {}", f.status, f.stderr);
    assert!(
        f.stderr.contains("pid already in use") && f.stderr.contains(&pid.to_string()),
        "stderr: {}",
        f.stderr
    );
    assert_eq!(f.stderr.trim().lines().count(), 1, "{}", f.stderr);
    // The original is unharmed, and nothing else joined its group.
    let now = orig.last_count(None).unwrap();
    orig.expect_count(None, now + 5);
    orig.assert_no_fail();
    check_consecutive(&orig.counts(None)).unwrap();
    assert_eq!(procs_in_group(pid), vec![pid]);
}

/// The image as a positional FILE (like the other tools; `-` is stdin),
/// and `--no-pids` with `--pidns` refused as a usage error.
#[test]
fn restore_from_positional_file_and_conflicting_pid_options() {
    let dir = tempdir();
    let img = dir.path().join("img");
    let mut orig = Workload::spawn(workload("onetask"), &["-d", "20"]);
    orig.expect_count(None, 3);
    ckpt_to_file(&["--kill"], orig.pid(), &img);
    orig.expect_exit();
    let last = orig.last_count(None).unwrap();
    let mut cmd = Command::new(bin("cr-restart"));
    cmd.arg(path_str(&img));
    let mut restored = Workload::spawn_cmd(cmd);
    restored.track(orig.pid());
    restored.expect_count(None, last + 3);
    assert_continues(&orig, &restored, None, Original::Killed);
    drop(restored);
    assert!(wait_pid_gone(orig.pid(), TIMEOUT));
    let f = run(
        "cr-restart",
        &["-"],
        Some(&std::fs::read(&img).unwrap()[..10]),
    );
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    for args in [
        &["--no-pids", "--pidns", path_str(&img)][..],
        &["-i", path_str(&img), path_str(&img)][..],
    ] {
        let f = run("cr-restart", args, None);
        assert_eq!(f.code(), Some(2), "cr-restart {args:?}: {}", f.stderr);
        assert!(f.stderr.contains("cannot be used with"), "{}", f.stderr);
    }
}

/// The original still running (not being killed): cr-restart refuses at
/// once, naming the pid and hinting at --no-pids and --pidns, and leaves
/// the original alone. `--fd N=fd:M` for a descriptor cr-restart lacks is
/// refused before anything is restored.
#[test]
fn pid_held_by_a_running_process_and_missing_fd_source() {
    let dir = tempdir();
    let img = dir.path().join("img");
    let orig = Workload::spawn(workload("onetask"), &["-d", "20"]);
    orig.expect_count(None, 3);
    ckpt_to_file(&[], orig.pid(), &img);
    let f = run("cr-restart", &[path_str(&img)], None);
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    assert_eq!(f.stderr.lines().count(), 1, "{}", f.stderr);
    for want in [
        &orig.pid().to_string()[..],
        "in use",
        "--no-pids",
        "--pidns",
    ] {
        assert!(f.stderr.contains(want), "no {want:?} in: {}", f.stderr);
    }
    let f = run(
        "cr-restart",
        &["--no-pids", "-d", "--fd", "1=fd:99", path_str(&img)],
        None,
    );
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    assert!(f.stderr.contains("descriptor 99"), "{}", f.stderr);
    let n = orig.last_count(None).unwrap();
    orig.expect_count(None, n + 2);
    orig.assert_no_fail();
}
