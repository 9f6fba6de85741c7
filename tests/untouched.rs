//! A checkpoint that lets the tree run on leaves nothing of itself behind
//! (issue 12): `ckpt` pins each thread it asks for remote syscalls to its
//! own CPU and traps in it, and must give back each thread's CPU affinity,
//! scheduling policy and nice value, and each process's signal actions
//! (a `SIGTRAP` caught or ignored included), exactly as they were.
//!
//! Every process is cleaned up by the guards in `common`, also when a test
//! fails. No test asserts timing.

mod common;

use common::*;
use std::process::Command;

/// Two CPU-bound processes beside the test while it lives.
fn cpu_burners() -> Vec<Workload> {
    (0..2)
        .map(|_| Workload::spawn("sh", &["-c", "while :; do :; done"]))
        .collect()
}

/// Runs a command that must succeed.
fn sh(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a thread's scheduling looks like from outside: its allowed CPUs
/// (`status`), nice value and policy (`stat` fields 19 and 41).
fn sched_of(pid: i32, tid: i32) -> (String, String, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
        .unwrap_or_else(|e| panic!("status of thread {tid}: {e}"));
    let cpus = status
        .lines()
        .find(|l| l.starts_with("Cpus_allowed_list:"))
        .unwrap_or_default()
        .to_string();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
        .unwrap_or_else(|e| panic!("stat of thread {tid}: {e}"));
    // Fields after the command name, which ends at the last ')': field 3 first.
    let rest: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
        .split(' ')
        .collect();
    (cpus, rest[19 - 3].to_string(), rest[41 - 3].to_string())
}

/// Each process's signal dispositions as `/proc` shows them.
fn signals_of(pid: i32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("status of {pid}: {e}"));
    status
        .lines()
        .filter(|l| l.starts_with("SigIgn:") || l.starts_with("SigCgt:"))
        .collect::<Vec<_>>()
        .join(" ")
}

type Snapshot = Vec<(i32, i32, (String, String, String), String)>;

fn snapshot(pids: &[i32]) -> Snapshot {
    let mut v = Vec::new();
    for &pid in pids {
        for tid in threads_of(pid) {
            v.push((pid, tid, sched_of(pid, tid), signals_of(pid)));
        }
    }
    v
}

/// A process catching `SIGTRAP` and its child ignoring it, two threads
/// each, with one thread on one CPU, one with `SCHED_BATCH` and nice 5,
/// one `SCHED_IDLE`, the rest as they started: five checkpoints in a row
/// with CPU burners on both cores leave every thread's affinity, policy
/// and nice and each process's signal dispositions as they were, and the
/// processes' own checks of their `SIGTRAP` action pass.
#[test]
fn checkpoints_leave_affinity_scheduling_and_signal_actions_as_they_were() {
    let _burn = cpu_burners();
    let orig = Workload::spawn(workload("traps"), &["-d", "20"]);
    orig.expect_count(Some("catch"), 2);
    orig.expect_count(Some("ignore"), 2);
    let pid = orig.pid();
    let pids = orig.tree();
    assert_eq!(pids.len(), 2, "{}", orig.report());
    let child = *pids.iter().find(|&&p| p != pid).expect("child");
    let (root_threads, child_threads) = (threads_of(pid), threads_of(child));
    assert_eq!(root_threads.len(), 2);
    assert_eq!(child_threads.len(), 2);
    sh("taskset", &["-p", "-c", "0", &root_threads[0].to_string()]);
    sh("chrt", &["-b", "-p", "0", &root_threads[1].to_string()]);
    sh("renice", &["-n", "5", "-p", &root_threads[1].to_string()]);
    sh("chrt", &["-i", "-p", "0", &child_threads[1].to_string()]);
    let before = snapshot(&pids);
    assert!(before[0].2.0.ends_with("\t0"), "{before:?}");
    let pid_s = pid.to_string();
    for round in 0..5 {
        let f = ckpt(&["-o", "/dev/null", &pid_s]);
        assert!(f.status.success(), "checkpoint {round}: {}", f.stderr);
        assert_eq!(snapshot(&pids), before, "after checkpoint {round}");
        for tag in ["catch", "ignore"] {
            let n = orig.last_count(Some(tag)).unwrap_or(0);
            orig.expect_count(Some(tag), n + 2);
        }
        orig.assert_no_fail();
    }
    for tag in ["catch", "ignore"] {
        check_consecutive(&orig.counts(Some(tag))).unwrap();
    }
}
