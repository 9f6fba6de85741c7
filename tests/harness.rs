//! Self-tests of the test harness and the workloads, without any checkpoint:
//! each workload starts, prints counts that pass the consecutive check, never
//! prints FAIL, and is killed and cleaned up completely by the guard.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

/// Runs a workload until it printed `n` counts of `tag`, then kills it and checks
/// the output and the cleanup.
fn run_counts(w: Workload, tags: &[Option<&str>], n: u64) -> Vec<String> {
    let mut w = w;
    for &t in tags {
        w.expect_count(t, n);
    }
    let tree = w.tree();
    let left = w.kill();
    assert!(left.is_empty(), "processes left after kill: {left:?}");
    for p in tree {
        assert!(wait_pid_gone(p, Duration::ZERO), "pid {p} still exists");
    }
    w.assert_no_fail();
    for &t in tags {
        let c = w.counts(t);
        assert_eq!(c.first(), Some(&1), "{t:?} counts do not start at 1: {c:?}");
        check_consecutive(&c).unwrap_or_else(|e| panic!("{t:?}: {e}\n{}", w.report()));
    }
    w.lines()
}

fn simple(name: &str, args: &[&str]) -> Vec<String> {
    run_counts(Workload::spawn(workload(name), args), &[None], 8)
}

#[test]
fn onetask_counts_and_logs() {
    let dir = tempdir();
    let log = dir.path().join("log");
    std::fs::write(&log, "existing line\n").unwrap();
    let lines = simple("onetask", &["-d", "20", "-l", log.to_str().unwrap()]);
    // The float is exactly the running sum of 1/k, so a test can recompute it.
    for (i, l) in lines.iter().enumerate() {
        let f: f64 = l.split("f=").nth(1).unwrap().parse().unwrap();
        assert_eq!(f.to_bits(), harmonic(i as u64 + 1).to_bits(), "{l}");
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    let logged: Vec<String> = logged.lines().skip(1).map(String::from).collect();
    assert_eq!(&logged[..], &lines[..logged.len()]);
    assert!(logged.len() + 1 >= lines.len());
}

#[test]
fn onetask_exits_after_n_with_code() {
    let mut w = Workload::spawn(workload("onetask"), &["-d", "1", "-n", "5", "-e", "7"]);
    let st = w.expect_exit();
    assert_eq!(st.code(), Some(7));
    assert_eq!(w.counts(None), vec![1, 2, 3, 4, 5]);
}

#[test]
fn bigmem_counts() {
    let lines = run_counts(
        Workload::spawn(workload("bigmem"), &["-d", "10", "-m", "16", "-k", "4"]),
        &[None],
        9,
    );
    assert!(
        lines[0].ends_with("verified untouched_resident=0"),
        "{}",
        lines[0]
    );
    assert!(lines[3].contains("verified"), "{}", lines[3]);
}

#[test]
fn sleeper_modes() {
    for mode in [
        "nanosleep",
        "poll",
        "select",
        "futex",
        "sigtimedwait",
        "read",
        "wait",
        "all",
    ] {
        let lines = run_counts(
            Workload::spawn(workload("sleeper"), &["-d", "10", "-m", mode]),
            &[None],
            6,
        );
        if mode != "all" {
            assert!(lines[0].ends_with(mode), "{}", lines[0]);
        }
    }
}

#[test]
fn fpu_counts() {
    simple("fpu", &["-d", "20"]);
    simple("fpu", &["-d", "5", "-i", "sse", "-w", "100000"]);
}

#[test]
fn sigs_counts() {
    simple("sigs", &["-d", "20"]);
}

#[test]
fn files_counts() {
    let dir = tempdir();
    simple("files", &["-d", "20", "-D", dir.path().to_str().unwrap()]);
    let log = std::fs::read_to_string(dir.path().join("append.log")).unwrap();
    assert!(log.starts_with("count 1\ncount 2\n"), "{log}");
    assert!(!dir.path().join("deleted.tmp").exists());
}

#[test]
fn scripts_count() {
    for s in ["counter.py", "counter.pl", "counter.sh"] {
        run_counts(Workload::spawn(script(s), &["20"]), &[None], 6);
    }
}

// ----- the harness itself

#[test]
fn parse_and_check_counts() {
    assert_eq!(parse_count("count 5 f=1"), Some((None, 5)));
    assert_eq!(parse_count("A1 count 17"), Some((Some("A1"), 17)));
    assert_eq!(parse_count("FAIL count"), None);
    assert_eq!(parse_count("hello"), None);
    let lines: Vec<String> = ["count 1", "A count 1", "count 2", "A count 2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(counts(&lines, None), vec![1, 2]);
    assert_eq!(counts(&lines, Some("A")), vec![1, 2]);

    assert!(check_consecutive(&[3, 4, 5]).is_ok());
    assert!(check_consecutive(&[]).is_ok());
    assert!(check_consecutive(&[3, 5]).unwrap_err().starts_with("gap"));
    assert!(
        check_consecutive(&[3, 4, 4])
            .unwrap_err()
            .starts_with("repeat")
    );

    use Original::*;
    assert!(check_continuation(&[1, 2, 3], &[4, 5], Killed).is_ok());
    assert!(check_continuation(&[1, 2, 3], &[4, 5], Stopped).is_ok());
    assert!(check_continuation(&[1, 2, 3], &[5], Killed).is_err());
    assert!(check_continuation(&[1, 2, 3], &[3, 4], Killed).is_err());
    assert!(check_continuation(&[1, 2, 3], &[], Killed).is_err());
    assert!(check_continuation(&[1, 2, 3, 4, 5], &[3, 4], Running).is_ok());
    assert!(check_continuation(&[1, 2, 3], &[4], Running).is_ok());
    assert!(check_continuation(&[1, 2, 3], &[1], Running).is_err());
    assert!(check_continuation(&[1, 2, 3], &[6], Running).is_err());
}

#[test]
fn guard_kills_tree_on_drop_and_on_panic() {
    // sleeper -m read has a writer child; sleeper -m wait forks all the time.
    let pids;
    {
        let w = Workload::spawn(workload("sleeper"), &["-d", "5", "-m", "read"]);
        w.expect_count(None, 2);
        pids = w.tree();
        assert_eq!(pids.len(), 2, "{pids:?}");
    }
    for p in &pids {
        assert!(wait_pid_gone(*p, Duration::ZERO), "{p} survived the guard");
    }

    let (tx, rx) = std::sync::mpsc::channel();
    let r = std::thread::spawn(move || {
        let w = Workload::spawn(workload("sleeper"), &["-d", "1", "-m", "wait"]);
        w.expect_count(None, 3);
        tx.send(w.pid()).unwrap();
        panic!("deliberate panic with a running workload");
    })
    .join();
    assert!(r.is_err());
    let pid = rx.recv().unwrap();
    assert!(wait_pid_gone(pid, Duration::ZERO), "{pid} survived a panic");
}

#[test]
fn guard_kills_tracked_orphans() {
    // A process that is not our descendant (like a tree restored by cr-restart):
    // started in its own session by a shell that exits at once.
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(format!(
        "setsid {} -d 10 >/dev/null 2>&1 </dev/null & echo $!",
        workload("onetask").display()
    ));
    let mut w = Workload::spawn_cmd(sh);
    let line = w.expect_line(|l| l.parse::<i32>().is_ok(), "with a pid");
    let orphan: i32 = line.parse().unwrap();
    w.expect_exit();
    assert!(proc_state(orphan).is_some());
    // Wait until it is an orphan.
    let t = std::time::Instant::now();
    while ppid_of(orphan) == Some(w.pid()) && t.elapsed() < TIMEOUT {
        std::thread::sleep(Duration::from_millis(5));
    }
    w.track(orphan);
    let left = w.kill();
    assert!(left.is_empty(), "{left:?}");
    assert!(!std::path::Path::new(&format!("/proc/{orphan}")).exists());
}

#[test]
fn pipeline_connects_stages() {
    let mut printf = Command::new("printf");
    printf.arg("count 1\\ncount 2\\ncount 3\\n");
    let mut grep = Command::new("grep");
    grep.arg("-v").arg("count 2");
    let out = Pipeline::new().cmd(printf).cmd(grep).run();
    out.assert_success();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "count 1\ncount 3\n");

    // A failing stage is reported with its status.
    let out = Pipeline::new()
        .cmd(Command::new("false"))
        .cmd(Command::new("cat"))
        .run();
    assert_eq!(out.codes(), vec![Some(1), Some(0)]);

    // The last stage as a captured, long-running workload (stand-in for cr-restart).
    let mut seq = Command::new("seq");
    seq.args(["-f", "count %g", "1", "5"]);
    let mut r = Pipeline::new().cmd(seq).restore_cmd(Command::new("cat"));
    r.restored.expect_count(None, 5);
    assert!(r.restored.expect_exit().success());
    r.pipeline.wait().assert_success();

    // From a file.
    let dir = tempdir();
    let f = dir.path().join("img");
    let mut seq = Command::new("seq");
    seq.args(["-f", "count %g", "1", "3"]);
    Pipeline::new().cmd(seq).run_to_file(&f).assert_success();
    let out = Pipeline::new().input(&f).cmd(Command::new("cat")).run();
    assert_eq!(
        counts(
            &String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(String::from)
                .collect::<Vec<_>>(),
            None
        ),
        vec![1, 2, 3]
    );
}

#[test]
fn continuation_of_a_live_process() {
    // Without ckpt: the same workload's output split in two is a valid continuation.
    let w = Workload::spawn(workload("onetask"), &["-d", "5"]);
    w.expect_count(None, 10);
    let c = w.counts(None);
    let (a, b) = c.split_at(4);
    check_continuation(a, b, Original::Killed).unwrap();
    check_continuation(&c, &c[3..], Original::Running).unwrap();
}

#[test]
fn run_captures_output_and_status() {
    let mut c = Command::new("sh");
    c.args(["-c", "cat; echo err >&2; exit 3"]);
    let f = run_cmd(c, Some(b"hello"));
    assert_eq!(f.stdout, b"hello");
    assert_eq!(f.stderr.trim(), "err");
    assert_eq!(f.code(), Some(3));
}

#[test]
fn ipc_guard_removes_objects() {
    let id;
    {
        let mut g = IpcGuard::explicit();
        // SAFETY: msgget creates a private queue; no memory is passed.
        id = unsafe { libc::msgget(libc::IPC_PRIVATE, 0o600 | libc::IPC_CREAT) };
        assert!(id >= 0);
        g.add(Ipc::Msg, id);
        assert!(ipc_ids(Ipc::Msg).contains(&id));
    }
    assert!(!ipc_ids(Ipc::Msg).contains(&id));
}

#[test]
fn bin_reports_missing_binaries_clearly() {
    let r = std::panic::catch_unwind(|| bin("no-such-binary"));
    let msg = r.unwrap_err();
    let msg = msg.downcast_ref::<String>().unwrap();
    assert!(msg.contains("no-such-binary"), "{msg}");
}

// ----- multi-process, IPC, tty and thread workloads

fn tags<'a>(t: &[&'a str]) -> Vec<Option<&'a str>> {
    t.iter().map(|s| Some(*s)).collect()
}

#[test]
fn multitask_counts_and_shares_the_log() {
    let dir = tempdir();
    let log = dir.path().join("log");
    let names = ["root", "A", "A1", "B", "B1"];
    let w = Workload::spawn(
        workload("multitask"),
        &["-d", "20", "-l", log.to_str().unwrap()],
    );
    for n in names {
        w.expect_count(Some(n), 1);
    }
    assert_eq!(w.tree().len(), 5, "{:?}", w.tree());
    run_counts(w, &tags(&names), 6);
    let logged: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    for l in &logged {
        assert!(parse_count(l).is_some(), "garbled log line {l:?}");
    }
    for t in names {
        let c = counts(&logged, Some(t));
        assert_eq!(c.first(), Some(&1), "{t}");
        check_consecutive(&c).unwrap();
    }
}

#[test]
fn multi_process_workloads_exit_after_n() {
    let dir = tempdir();
    let log = dir.path().join("log");
    for (name, args, tags) in [
        (
            "multitask",
            vec!["-l", log.to_str().unwrap()],
            vec!["root", "A", "A1", "B", "B1"],
        ),
        ("pipes", vec![], vec!["parent", "child"]),
        ("shmem", vec![], vec!["parent", "child"]),
        ("threads", vec!["-t", "3"], vec!["t0", "t1", "t2"]),
    ] {
        let mut a = vec!["-d", "5", "-n", "4", "-e", "3"];
        a.extend(args);
        let mut w = Workload::spawn(workload(name), &a);
        assert_eq!(w.expect_exit().code(), Some(3), "{name}\n{}", w.report());
        w.assert_no_fail();
        for t in tags {
            assert_eq!(w.counts(Some(t)), vec![1, 2, 3, 4], "{name} {t}");
        }
    }
}

#[test]
fn zombie_keeps_its_zombies() {
    let w = Workload::spawn(workload("zombie"), &["-d", "20"]);
    w.expect_count(None, 2);
    let tree = w.tree();
    assert_eq!(tree.len(), 4, "{tree:?}");
    let zombies = tree.iter().filter(|&&p| proc_state(p) == Some('Z')).count();
    assert_eq!(zombies, 3);
    run_counts(w, &[None], 5);

    let mut w = Workload::spawn(workload("zombie"), &["-d", "5", "-n", "3"]);
    assert_eq!(w.expect_exit().code(), Some(0), "{}", w.report());
}

#[test]
fn pgrp_keeps_a_leaderless_group() {
    let w = Workload::spawn_session(workload("pgrp"), &["-d", "20"]);
    let line = w.expect_count(Some("M"), 1);
    let pgid: i32 = line
        .split("pgid=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(pgid, w.pid());
    assert!(!std::path::Path::new(&format!("/proc/{pgid}")).exists());
    run_counts(w, &tags(&["root", "M"]), 6);
}

#[test]
fn signal_and_timer_workloads_count() {
    let lines = simple("sigpending", &["-d", "10", "-u", "3"]);
    assert!(lines[2].ends_with("delivered"), "{}", lines[2]);
    simple("itimer", &["-d", "20", "-v", "2"]);
}

#[test]
fn pipe_and_fifo_workloads_count() {
    simple("pipes2", &["-d", "10"]);
    run_counts(
        Workload::spawn(workload("pipes"), &["-d", "10"]),
        &tags(&["parent", "child"]),
        6,
    );
    let dir = tempdir();
    simple("fifo", &["-d", "10", "-D", dir.path().to_str().unwrap()]);
}

#[test]
fn shmem_counts() {
    let lines = run_counts(
        Workload::spawn(workload("shmem"), &["-d", "10"]),
        &tags(&["parent", "child"]),
        6,
    );
    let c: Vec<&String> = lines.iter().filter(|l| l.contains("counter=")).collect();
    assert!(c[0].starts_with("parent count 1 counter=1"), "{}", c[0]);
}

#[test]
fn ipc_workloads_count_and_are_cleaned_up() {
    for (name, kind) in [
        ("ipcmsq", Ipc::Msg),
        ("ipcsem", Ipc::Sem),
        ("ipcshm", Ipc::Shm),
    ] {
        let mut guard = IpcGuard::explicit();
        let w = Workload::spawn(workload(name), &["-d", "10"]);
        let ids = ids_in_line(&w.expect_count(None, 1));
        assert_eq!(ids.len(), 2, "{name}");
        for &id in &ids {
            guard.add(kind, id);
        }
        run_counts(w, &[None], 6);
        drop(guard);
        let now = ipc_ids(kind);
        assert!(
            ids.iter().all(|i| !now.contains(i)),
            "{name}: {ids:?} still in {now:?}"
        );
    }
    // Exiting by itself after -n, a workload removes its objects.
    let mut w = Workload::spawn(workload("ipcshm"), &["-d", "1", "-n", "2"]);
    let ids = ids_in_line(&w.expect_count(None, 1));
    assert_eq!(w.expect_exit().code(), Some(0));
    assert!(ids.iter().all(|i| !ipc_ids(Ipc::Shm).contains(i)));
}

#[test]
fn pty_counts() {
    simple("pty", &["-d", "10"]);
}

#[test]
fn threads_count() {
    let w = Workload::spawn(workload("threads"), &["-d", "10", "-t", "4"]);
    w.expect_count(Some("t3"), 1);
    assert_eq!(threads_of(w.pid()).len(), 4);
    run_counts(w, &tags(&["t0", "t1", "t2", "t3"]), 6);
}

/// The workload builder compiles a missing program, leaves an up-to-date one alone,
/// rebuilds it when its source (or common.h) is newer, and fails naming the source
/// when the compiler does; processes building the same directory at once agree.
#[test]
fn workloads_built_once_and_rebuilt_when_stale() {
    use std::fs;
    use std::time::SystemTime;
    let src = tempdir();
    let out = src.path().join("out");
    let prog =
        |n: u32| format!("#include <stdio.h>\nint main(void) {{ puts(\"v{n}\"); return 0; }}\n");
    let run = |bin: &std::path::Path| {
        let o = Command::new(bin).output().expect("run built workload");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    fs::write(src.path().join("common.h"), "").unwrap();
    fs::write(src.path().join("w.c"), prog(1)).unwrap();
    // Built by several threads at once: the lock makes it one build, all see v1.
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| build_workloads(src.path(), &out));
        }
    });
    let bin = out.join("w");
    assert_eq!(run(&bin), "v1");
    let leftovers: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "w" && n != ".lock")
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // Up to date: not rebuilt (the binary's inode stays).
    let ino = |p: &std::path::Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
    let first = ino(&bin);
    build_workloads(src.path(), &out);
    assert_eq!(ino(&bin), first, "an up-to-date workload was rebuilt");

    // A newer source is rebuilt; so is everything when common.h is newer.
    let touch = |name: &str, secs: u64| {
        let t = SystemTime::now() + Duration::from_secs(secs);
        let f = fs::File::options().write(true).open(src.path().join(name));
        f.unwrap().set_modified(t).unwrap();
    };
    fs::write(src.path().join("w.c"), prog(2)).unwrap();
    touch("w.c", 10);
    build_workloads(src.path(), &out);
    assert_eq!(run(&bin), "v2");
    let second = ino(&bin);
    touch("common.h", 20);
    build_workloads(src.path(), &out);
    assert_ne!(
        ino(&bin),
        second,
        "a newer common.h did not rebuild the workload"
    );

    // A compiler error fails with the source named; the old binary stays.
    fs::write(src.path().join("w.c"), "int main(void) { syntax error }\n").unwrap();
    touch("w.c", 30);
    let err = std::panic::catch_unwind(|| build_workloads(src.path(), &out))
        .expect_err("a broken workload compiled");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("w.c"), "error does not name the source: {msg}");
    assert_eq!(run(&bin), "v2");
}
