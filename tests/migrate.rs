//! Migration to a second host over ssh (issue 13): a real sshd in its own
//! network, pid and mount namespaces ([`host::Host`]), reached through a
//! veth pair. A running workload moves there through the bare pipeline
//! `ckpt --stop PID | cr-zstd | ssh HOST cr-restart --detach`, and through
//! `cr-migrate`; its log (a file both hosts see) goes on without gap or
//! repeat. Failures at every point leave the source running and nothing on
//! the destination.

mod common;
mod host;

use common::*;
use host::Host;
use std::path::Path;
use std::process::Command;

/// The counts in onetask's log file (complete lines only).
fn log_counts(p: &Path) -> Vec<u64> {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let complete = s.rfind('\n').map_or("", |i| &s[..=i]);
    let lines: Vec<String> = complete.lines().map(String::from).collect();
    counts(&lines, None)
}

/// Waits until the log reaches count `n`, then checks it is one unbroken
/// sequence.
fn expect_log_continues(log: &Path, n: u64) {
    assert!(
        wait_until(TIMEOUT, || log_counts(log).last() >= Some(&n)),
        "the log does not reach {n}: last {:?}",
        log_counts(log).last()
    );
    if let Err(e) = check_consecutive(&log_counts(log)) {
        panic!("the log has a gap or a repeat: {e}");
    }
}

/// The second host exists as described: sshd answers on its own address,
/// sessions run in its own pid namespace with this build's cr-restart in
/// PATH; after drop its init and veth pair are gone.
#[test]
fn second_host_runs_sshd() {
    let h = Host::start();
    let out = run_cmd(
        h.ssh("readlink /proc/self/ns/pid /proc/self/ns/net; command -v cr-restart"),
        None,
    );
    out.assert_success();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let ns = |what: &str| {
        let p = std::fs::read_link(format!("/proc/{}/ns/{what}", h.init())).unwrap();
        let mine = std::fs::read_link(format!("/proc/self/ns/{what}")).unwrap();
        assert_ne!(p, mine, "the host shares our {what} namespace");
        p.display().to_string()
    };
    assert_eq!(lines[0], ns("pid"), "{text}");
    assert_eq!(lines[1], ns("net"), "{text}");
    assert_eq!(Path::new(lines[2]), bin("cr-restart"), "{text}");
    let (init, veth) = (h.init(), h.veth().to_string());
    drop(h);
    assert!(
        wait_pid_gone(init, TIMEOUT),
        "the host's init {init} survived"
    );
    let st = Command::new("ip")
        .args(["link", "show", &veth])
        .output()
        .unwrap();
    assert!(!st.status.success(), "veth {veth} survived the host");
}

/// `ckpt --stop PID | cr-zstd | ssh HOST cr-restart --detach`: ssh returns
/// once the tree runs there, with the original pid inside the host; after
/// the source is killed, the log goes on from where it stopped.
#[test]
fn bare_pipeline_migrates() {
    let host = Host::start();
    let dir = tempdir();
    let log = dir.path().join("log");
    let mut orig = Workload::spawn(
        workload("onetask"),
        &["-d", "20", "-l", log.to_str().unwrap()],
    );
    orig.expect_count(None, 3);
    let pid = orig.pid();
    let out = Pipeline::new()
        .stage("ckpt", &["--stop", &pid.to_string()])
        .stage("cr-zstd", &[])
        .cmd(host.ssh("cr-restart --detach"))
        .run();
    if out.stages.iter().any(|s| !s.status.success()) {
        panic!("migration failed:\n{}\n{}", out.describe(), host.sshd_log());
    }
    assert_eq!(proc_state(pid), Some('T'), "the source is not stopped");
    let stopped_at = *log_counts(&log).last().unwrap();
    orig.kill();
    let there = host
        .outer_pid(pid)
        .unwrap_or_else(|| panic!("no pid {pid} on the host: {:?}", host.procs()));
    assert!(cmdline_of(there).unwrap().contains("onetask"));
    expect_log_continues(&log, stopped_at + 10);
}
