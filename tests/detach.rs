//! `cr-restart --detach` detaches (issue 13): descriptors that led outside the
//! image go to /dev/null, so nothing restored keeps cr-restart's stdin, stdout
//! or stderr open and a reader of its output (ssh, a shell's `$(...)`) sees
//! EOF while the restored program runs on. Foreground restore keeps giving
//! the program cr-restart's own stdio, so its output shows where cr-restart
//! runs.

mod common;

use common::*;
use std::path::Path;

/// The counts in onetask's log file (complete lines only).
fn log_counts(p: &Path) -> Vec<u64> {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let complete = s.rfind('\n').map_or("", |i| &s[..=i]);
    let lines: Vec<String> = complete.lines().map(String::from).collect();
    counts(&lines, None)
}

/// The target of descriptor `fd` of `pid`.
fn fd_link(pid: i32, fd: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("({e})"))
}

/// Checkpoints onetask (stdout and stderr pipes to the test, so both are
/// external in the image) and restores it with `cr-restart --detach` whose
/// stdout and stderr are pipes too: cr-restart exits 0, both pipes reach EOF
/// although the restored process still runs (so it holds neither), its
/// descriptors 1 and 2 are /dev/null, and its log goes on without gap or
/// repeat. With and without `--pidns`.
#[test]
fn detach_closes_outside_descriptors() {
    for extra in [&[][..], &["--pidns"][..]] {
        let dir = tempdir();
        let log = dir.path().join("log");
        let pidfile = dir.path().join("pid");
        let log_s = log.to_str().unwrap();
        let mut orig = Workload::spawn(workload("onetask"), &["-d", "20", "-l", log_s]);
        orig.expect_count(None, 3);
        let mut args = vec!["--detach", "--pidfile", pidfile.to_str().unwrap()];
        args.extend_from_slice(extra);
        let mut r = checkpoint_restore(&mut orig, &["--kill"], &[], &args);
        let mut st = None;
        assert!(
            wait_until(TIMEOUT, || {
                st = r.restored.try_status();
                st.is_some()
            }),
            "cr-restart --detach {extra:?} did not return\n{}",
            r.restored.report()
        );
        assert!(st.unwrap().success(), "{}", r.restored.report());
        r.expect_pipeline_ok();
        let pid = read_pidfile(&pidfile);
        r.restored.track(pid);
        assert!(
            r.restored.wait_eof(TIMEOUT),
            "cr-restart --detach {extra:?}: its stdout pipe is still held open\n{}",
            r.restored.report()
        );
        let state = proc_state(pid);
        assert!(
            state.is_some_and(|s| s != 'Z' && s != 'X'),
            "restored process {pid} state {state:?} after EOF"
        );
        for fd in [1, 2] {
            assert_eq!(fd_link(pid, fd), "/dev/null", "descriptor {fd} of {pid}");
        }
        // The log goes on from where the original stopped.
        let before = orig.last_count(None).unwrap();
        assert!(
            wait_until(TIMEOUT, || log_counts(&log).last() >= Some(&(before + 5))),
            "the restored process does not log past {before}: {:?}",
            log_counts(&log).last()
        );
        check_consecutive(&log_counts(&log)).unwrap();
        assert!(r.restored.lines().is_empty(), "{}", r.restored.report());
    }
}

/// Without `--detach` the restored program's outside descriptors are
/// cr-restart's own: its output shows on cr-restart's stdout (what makes
/// `ssh host cr-restart` show it locally), continuing the original's.
#[test]
fn foreground_restore_shows_output() {
    let mut orig = Workload::spawn(workload("onetask"), &["-d", "20"]);
    orig.expect_count(None, 3);
    let pid = orig.pid();
    let r = migrate(&mut orig, &[]);
    let last = orig.last_count(None).unwrap();
    r.restored.expect_count(None, last + 3);
    assert_continues(&orig, &r.restored, None, Original::Killed);
    let restorer = r.restored.pid();
    for fd in [1, 2] {
        assert_eq!(
            fd_link(pid, fd),
            fd_link(restorer, fd),
            "descriptor {fd} of the restored {pid} is not cr-restart's"
        );
    }
}
