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

/// `cr-migrate [ssh options] PID HOST`, spawned (its stdout and stderr
/// captured); `opts` are more options before PID.
fn cr_migrate(host: &Host, pid: i32, opts: &[&str]) -> Workload {
    let mut c = Command::new(bin("cr-migrate"));
    c.args(host.ssh_opts())
        .args(opts)
        .arg(pid.to_string())
        .arg(host.dest());
    Workload::spawn_cmd(c)
}

/// A 64 MiB workload being moved by cr-migrate through a ProxyCommand
/// that holds the transfer after 8 MB until `gate` is written; returns
/// once it holds (the source and cr-migrate).
fn migrate_paused_at_8mb(host: &Host, gate: &Path) -> (Workload, Workload) {
    let orig = Workload::spawn(workload("bigmem"), &["-d", "20", "-m", "64"]);
    orig.expect_count(None, 3);
    let proxy = format!(
        "ProxyCommand=python3 {} %h %p 8000000 gate {}",
        script("sshproxy.py").display(),
        gate.display()
    );
    let m = cr_migrate(host, orig.pid(), &["-o", &proxy]);
    let paused = gate.with_extension("paused");
    assert!(
        wait_until(TIMEOUT, || paused.exists()),
        "the transfer did not reach 8 MB\n{}",
        m.report()
    );
    (orig, m)
}

/// Waits for cr-migrate to end; returns its exit code.
fn migrate_code(m: &mut Workload) -> Option<i32> {
    m.expect_exit().code()
}

/// After a failed migration: the source runs (not stopped) and goes on
/// counting, and nothing is left on the host.
fn expect_source_resumed(orig: &Workload, host: &Host, m: &Workload) {
    let pid = orig.pid();
    assert!(
        wait_until(TIMEOUT, || proc_state(pid).is_some_and(|s| s != 'T')),
        "the source {pid} was not resumed: {:?}\n{}",
        proc_state(pid),
        m.report()
    );
    let last = orig.last_count(None).unwrap_or(0);
    orig.expect_count(None, last + 5);
    orig.assert_no_fail();
    if let Err(left) = host.wait_clean() {
        panic!("left on the destination: {left:?}\n{}", m.report());
    }
}

/// `cr-migrate` moves a running workload: it exits 0 after the source was
/// killed, reports the freeze time, bytes sent and total time, and the
/// workload goes on there with its original pid, its log unbroken.
#[test]
fn cr_migrate_moves_a_running_workload() {
    let host = Host::start();
    let dir = tempdir();
    let log = dir.path().join("log");
    let mut orig = Workload::spawn(
        workload("onetask"),
        &["-d", "20", "-l", log.to_str().unwrap()],
    );
    orig.expect_count(None, 3);
    let pid = orig.pid();
    let mut m = cr_migrate(&host, pid, &["-v"]);
    assert_eq!(
        migrate_code(&mut m),
        Some(0),
        "{}\n{}",
        m.report(),
        host.sshd_log()
    );
    let report = m.stderr();
    assert!(
        report.contains(&format!(
            "cr-migrate: pid {pid} moved to {}: frozen ",
            host.dest()
        )) && report.contains(" MiB sent (")
            && report.contains(" s in all"),
        "{report}"
    );
    // -v: ckpt's summary here, cr-restart's from the destination.
    assert!(
        report.contains("ckpt: ") && report.contains(" from 1 process in "),
        "{report}"
    );
    assert!(
        report.contains("cr-restart: 1 process restored from "),
        "{report}"
    );
    assert!(m.lines().is_empty(), "{}", m.report());
    // The source was killed by cr-migrate (it is our child: reap it).
    let st = orig.expect_exit();
    assert_eq!(term_signal(st), Some(libc::SIGKILL), "{st}");
    let stopped_at = *log_counts(&log).last().unwrap();
    let there = host
        .outer_pid(pid)
        .unwrap_or_else(|| panic!("no pid {pid} on the host: {:?}", host.procs()));
    assert!(cmdline_of(there).unwrap().contains("onetask"));
    expect_log_continues(&log, stopped_at + 10);
}

/// The destination refuses (its pid is taken there): cr-migrate exits 1
/// with cr-restart's reason, the source runs on, nothing is left there.
#[test]
fn refused_pid_in_use_resumes_the_source() {
    let mut host = Host::start();
    let orig = Workload::spawn(workload("onetask"), &["-d", "20"]);
    orig.expect_count(None, 3);
    host.hold_pid(orig.pid());
    let mut m = cr_migrate(
        &host,
        orig.pid(),
        &["--cr-restart", "cr-restart --pid-wait 0"],
    );
    assert_eq!(migrate_code(&mut m), Some(1), "{}", m.report());
    let err = m.stderr();
    assert!(err.contains("already in use"), "{err}");
    assert!(
        err.contains(&format!("pid {} runs on here", orig.pid())),
        "{err}"
    );
    expect_source_resumed(&orig, &host, &m);
}

/// The destination refuses (a file the process has open is missing
/// there): the same.
#[test]
fn refused_missing_file_resumes_the_source() {
    let host = Host::start();
    let dir = tempdir();
    let log = dir.path().join("log");
    let orig = Workload::spawn(
        workload("onetask"),
        &["-d", "20", "-l", log.to_str().unwrap()],
    );
    orig.expect_count(None, 3);
    host.hide(dir.path());
    let mut m = cr_migrate(&host, orig.pid(), &[]);
    assert_eq!(migrate_code(&mut m), Some(1), "{}", m.report());
    let err = m.stderr();
    assert!(err.contains(log.to_str().unwrap()), "{err}");
    expect_source_resumed(&orig, &host, &m);
    let stopped_at = orig.last_count(None).unwrap();
    expect_log_continues(&log, stopped_at + 3);
}

/// The ssh connection is cut in the middle of the image (a ProxyCommand
/// that closes it after 8 MB of a 40 MiB image): cr-migrate exits 1, the
/// source runs on, the half-restored tree on the destination is gone.
#[test]
fn ssh_cut_in_the_middle_resumes_the_source() {
    let host = Host::start();
    let orig = Workload::spawn(workload("bigmem"), &["-d", "20", "-m", "64"]);
    orig.expect_count(None, 3);
    let proxy = format!(
        "ProxyCommand=python3 {} %h %p 8000000 cut -",
        script("sshproxy.py").display()
    );
    let mut m = cr_migrate(&host, orig.pid(), &["-o", &proxy]);
    assert_eq!(migrate_code(&mut m), Some(1), "{}", m.report());
    assert!(m.stderr().contains("runs on here"), "{}", m.report());
    expect_source_resumed(&orig, &host, &m);
}

/// The destination's cr-restart is killed (SIGKILL) in the middle of the
/// image, while its tree is half built: cr-migrate exits 1, the source
/// runs on, nothing is left there.
#[test]
fn destination_killed_resumes_the_source() {
    let host = Host::start();
    let dir = tempdir();
    let gate = dir.path().join("gate");
    let (orig, mut m) = migrate_paused_at_8mb(&host, &gate);
    // The restorer there has read what came so far: the tree's metadata.
    let mut restorer = None;
    assert!(
        wait_until(TIMEOUT, || {
            restorer = host
                .procs()
                .into_iter()
                .find(|(_, _, c)| c == "cr-restart")
                .map(|(p, _, _)| p);
            restorer.is_some()
        }),
        "no cr-restart on the host: {:?}",
        host.procs()
    );
    assert!(signal(restorer.unwrap(), libc::SIGKILL));
    std::fs::write(&gate, "").unwrap();
    assert_eq!(migrate_code(&mut m), Some(1), "{}", m.report());
    assert!(m.stderr().contains("runs on here"), "{}", m.report());
    expect_source_resumed(&orig, &host, &m);
}

/// A program of its own with a library of its own, both in `dir` (the
/// library found through the program's rpath): what a destination can
/// lack. It appends `count N` to the log named by its argument and prints
/// it, every 20 ms.
fn build_carried(dir: &Path) -> std::path::PathBuf {
    let lib = "long next_count(long n) { return n + 1; }\n";
    let main = "#include <stdio.h>\n#include <unistd.h>\nlong next_count(long n);\n\
        int main(int argc, char **argv) {\n\
          FILE *log = fopen(argv[1], \"a\");\n\
          if (!log) return 1;\n\
          setvbuf(log, NULL, _IOLBF, 0);\n\
          setvbuf(stdout, NULL, _IOLBF, 0);\n\
          for (long n = 0;;) {\n\
            n = next_count(n);\n\
            fprintf(log, \"count %ld\\n\", n);\n\
            printf(\"count %ld\\n\", n);\n\
            usleep(20000);\n\
          }\n\
        }\n";
    std::fs::write(dir.join("lib.c"), lib).unwrap();
    std::fs::write(dir.join("main.c"), main).unwrap();
    let d = dir.to_str().unwrap();
    let cc = |args: &[&str]| {
        let out = Command::new("cc")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cc {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    cc(&["-shared", "-fPIC", "-o", "libcarry.so", "lib.c"]);
    cc(&[
        "-o",
        "carried",
        "main.c",
        "-L.",
        "-lcarry",
        &format!("-Wl,-rpath,{d}"),
    ]);
    dir.join("carried")
}

/// A program whose executable and library are missing on the destination
/// (hidden in its mount namespace): without carried copies the restore is
/// refused there before any process is made, naming the missing file, and
/// the source runs on; with `--carry-files` it moves, mapping the carried
/// copies, its log unbroken.
#[test]
fn carried_files_restore_where_they_are_missing() {
    let host = Host::start();
    let bins = tempdir();
    let logs = tempdir();
    let exe = build_carried(bins.path());
    let log = logs.path().join("log");
    let mut orig = Workload::spawn(&exe, &[log.to_str().unwrap()]);
    orig.expect_count(None, 3);
    let pid = orig.pid();
    host.hide(bins.path());

    let mut m = cr_migrate(&host, pid, &[]);
    assert_eq!(migrate_code(&mut m), Some(1), "{}", m.report());
    let err = m.stderr();
    let bins_s = bins.path().to_str().unwrap();
    assert!(
        err.contains(&format!("cannot restore: {bins_s}/"))
            && err.contains("is missing on this host, and the image carries no copy of it"),
        "{err}"
    );
    expect_source_resumed(&orig, &host, &m);

    let mut m = cr_migrate(&host, pid, &["--carry-files"]);
    assert_eq!(
        migrate_code(&mut m),
        Some(0),
        "{}\n{}",
        m.report(),
        host.sshd_log()
    );
    assert_eq!(term_signal(orig.expect_exit()), Some(libc::SIGKILL));
    let stopped_at = *log_counts(&log).last().unwrap();
    let there = host
        .outer_pid(pid)
        .unwrap_or_else(|| panic!("no pid {pid} on the host: {:?}", host.procs()));
    let maps = std::fs::read_to_string(format!("/proc/{there}/maps")).unwrap();
    for name in ["crtools-carried:carried", "crtools-carried:libcarry.so"] {
        assert!(maps.contains(name), "no {name} in the maps:\n{maps}");
    }
    expect_log_continues(&log, stopped_at + 10);
}

/// `cr-restart --remap DIR=NEWDIR`: the destination has the program's
/// files elsewhere; the restore maps them from there.
#[test]
fn remap_finds_files_elsewhere() {
    let host = Host::start();
    let bins = tempdir();
    let moved = tempdir();
    let logs = tempdir();
    let exe = build_carried(bins.path());
    for f in ["carried", "libcarry.so"] {
        std::fs::copy(bins.path().join(f), moved.path().join(f)).unwrap();
    }
    let log = logs.path().join("log");
    let mut orig = Workload::spawn(&exe, &[log.to_str().unwrap()]);
    orig.expect_count(None, 3);
    let pid = orig.pid();
    host.hide(bins.path());
    let (b, n) = (
        bins.path().to_str().unwrap(),
        moved.path().to_str().unwrap(),
    );
    let restart = format!("cr-restart --remap {b}={n}");
    let mut m = cr_migrate(&host, pid, &["--cr-restart", &restart]);
    assert_eq!(migrate_code(&mut m), Some(0), "{}", m.report());
    assert_eq!(term_signal(orig.expect_exit()), Some(libc::SIGKILL));
    let stopped_at = *log_counts(&log).last().unwrap();
    let there = host.outer_pid(pid).expect("the process on the host");
    let maps = std::fs::read_to_string(format!("/proc/{there}/maps")).unwrap();
    assert!(maps.contains(&format!("{n}/libcarry.so")), "{maps}");
    expect_log_continues(&log, stopped_at + 10);
}

/// On one machine: a library that changed since the checkpoint (other
/// contents) is refused by name when the image only describes it
/// (`--carry-max 0`), and replaced by the carried copy when the image
/// carries it; cr-info lists what is carried.
#[test]
fn changed_library_uses_the_carried_copy() {
    let bins = tempdir();
    let logs = tempdir();
    let exe = build_carried(bins.path());
    let log = logs.path().join("log");
    let mut orig = Workload::spawn(&exe, &[log.to_str().unwrap()]);
    orig.expect_count(None, 3);
    let pid = orig.pid();
    let dir = tempdir();
    let (described, carried) = (dir.path().join("described"), dir.path().join("carried"));
    ckpt_to_file(&["--carry-files", "--carry-max", "0"], pid, &described);
    ckpt_to_file(&["--carry-files", "--kill"], pid, &carried);
    orig.expect_exit();
    assert!(wait_pid_gone(pid, TIMEOUT));
    let lib = bins.path().join("libcarry.so");
    let info = run("cr-info", &[carried.to_str().unwrap()], None);
    info.assert_success();
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(
        text.lines().any(|l| l.contains(" carried ")
            && l.ends_with(")")
            && l.contains(lib.to_str().unwrap())),
        "{text}"
    );
    // Another library at the same path.
    std::fs::write(
        bins.path().join("lib.c"),
        "long next_count(long n) { return n + 2; }\n",
    )
    .unwrap();
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-o", "libcarry.so.new", "lib.c"])
        .current_dir(bins.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::rename(bins.path().join("libcarry.so.new"), &lib).unwrap();

    let r = run("cr-restart", &["-i", described.to_str().unwrap()], None);
    assert_eq!(r.code(), Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "cannot restore: {} differs from the checkpointed file",
            lib.display()
        )),
        "{}",
        r.stderr
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "a process was left"
    );

    let mut r = Pipeline::new().input(&carried).restore(&[]);
    r.restored.track(pid);
    let last = *log_counts(&log).last().unwrap();
    r.restored.expect_count(None, last + 5);
    // n + 1, not n + 2: the carried library runs.
    check_consecutive(&r.restored.counts(None)).unwrap();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert!(maps.contains("crtools-carried:libcarry.so"), "{maps}");
    assert!(!maps.contains(lib.to_str().unwrap()), "{maps}");
}

/// cr-migrate interrupted (SIGTERM) in the middle of the image: it ends
/// ckpt and ssh, exits 1, the source runs on, nothing is left there.
#[test]
fn interrupted_migration_resumes_the_source() {
    let host = Host::start();
    let dir = tempdir();
    let gate = dir.path().join("gate");
    let (orig, mut m) = migrate_paused_at_8mb(&host, &gate);
    assert!(signal(m.pid(), libc::SIGTERM));
    std::fs::write(&gate, "").unwrap();
    assert_eq!(migrate_code(&mut m), Some(1), "{}", m.report());
    assert!(m.stderr().contains("runs on here"), "{}", m.report());
    expect_source_resumed(&orig, &host, &m);
}

/// `cr-migrate --live`: a process rewriting its memory all the time moves
/// with pre-copy rounds; it verifies all of its memory there (a stale or
/// missing page fails it), its log goes on without gap or repeat, the
/// freeze is reported from the end of the last round, and the destination
/// kept the pre-copied pages in place.
#[test]
fn cr_migrate_live_moves_a_rewriting_workload() {
    let host = Host::start();
    let dir = tempdir();
    let log = dir.path().join("log");
    let mut orig = Workload::spawn(
        workload("scribble"),
        &[
            "-m",
            "32",
            "-d",
            "2",
            "-k",
            "5",
            "-l",
            log.to_str().unwrap(),
        ],
    );
    assert!(
        wait_until(TIMEOUT, || log_counts(&log).len() >= 2),
        "scribble does not log"
    );
    let pid = orig.pid();
    // --live-rounds and --live-target are passed on to ckpt.
    let mut m = cr_migrate(
        &host,
        pid,
        &["--live", "--live-rounds", "2", "--live-target", "64K", "-v"],
    );
    assert_eq!(
        migrate_code(&mut m),
        Some(0),
        "{}\n{}",
        m.report(),
        host.sshd_log()
    );
    let report = m.stderr();
    assert!(report.contains("ckpt: pre-copy round 0: "), "{report}");
    assert!(report.contains("taken from pre-copy"), "{report}");
    assert!(!report.contains("pre-copy round 2:"), "{report}");
    // The destination kept the root's pre-copied pages where they arrived
    // (issue 13: nothing of them copied while the source is frozen).
    assert!(
        report.contains("of pre-copied pages kept in place"),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "cr-migrate: pid {pid} moved to {}: frozen ",
            host.dest()
        )),
        "{report}"
    );
    let st = orig.expect_exit();
    assert_eq!(term_signal(st), Some(libc::SIGKILL), "{st}");
    let stopped_at = *log_counts(&log).last().unwrap();
    assert!(host.outer_pid(pid).is_some(), "no pid {pid} there");
    expect_log_continues(&log, stopped_at + 4);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("FAIL"), "{text}");
}

/// The image was sent and restored, but the answer never arrives (the
/// connection drops before `crtools-restored`): the source must not run
/// twice, so it stays stopped here, cr-migrate says so and exits 3; the
/// tree runs there.
#[test]
fn answer_lost_leaves_the_source_stopped() {
    let host = Host::start();
    let dir = tempdir();
    let log = dir.path().join("log");
    let mut orig = Workload::spawn(
        workload("onetask"),
        &["-d", "20", "-l", log.to_str().unwrap()],
    );
    orig.expect_count(None, 3);
    let pid = orig.pid();
    // An ssh that drops the answer and reports a lost connection.
    let lossy = dir.path().join("lossy-ssh");
    std::fs::write(
        &lossy,
        "#!/bin/sh\nssh \"$@\" | grep -v --line-buffered '^crtools-restored$'\nexit 255\n",
    )
    .unwrap();
    std::fs::set_permissions(&lossy, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut m = cr_migrate(&host, pid, &["--ssh", lossy.to_str().unwrap()]);
    assert_eq!(migrate_code(&mut m), Some(3), "{}", m.report());
    let err = m.stderr();
    assert!(
        err.contains("no answer came") && err.contains(&format!("pid {pid} is left stopped here")),
        "{err}"
    );
    assert_eq!(proc_state(pid), Some('T'), "the source is not stopped");
    let stopped_at = *log_counts(&log).last().unwrap();
    assert!(host.outer_pid(pid).is_some(), "no pid {pid} there");
    expect_log_continues(&log, stopped_at + 5);
    // Still stopped here: it never ran twice.
    assert_eq!(proc_state(pid), Some('T'));
    orig.kill();
}
