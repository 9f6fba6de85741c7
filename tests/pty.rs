//! Pseudo-terminals across checkpoint and restore (run as root): the
//! classic `pty` workload, data waiting in both directions (`ptydata`), a
//! session running cat(1) on a pty slave (`ptyecho`), and a checkpoint that
//! leaves the original's waiting data where it was.
//!
//! Restores use original pids and the original pty indices, so the tests
//! of this file run one at a time (a lock), and each checks afterwards that
//! the ptys it used are gone (`/dev/pts/N` disappears with the last close).

mod common;
use common::*;

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The numbers of a `pts=A,B,...` field.
fn pts_in(line: &str) -> Vec<u32> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("pts="))
        .map(|v| v.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default()
}

/// The number in a `KEY=N` field.
fn field(line: &str, key: &str) -> Option<i32> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// Fields 7 and 8 of `/proc/PID/stat`: the controlling terminal's device
/// number and its foreground process group.
fn tty_of(pid: i32) -> Option<(i64, i64)> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = String::from_utf8_lossy(&stat[close + 2..]).into_owned();
    let f: Vec<i64> = rest
        .split_whitespace()
        .skip(4)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    (f.len() == 2).then(|| (f[0], f[1]))
}

/// Panics unless every `/dev/pts/N` of `indices` is gone within a few seconds.
fn assert_ptys_gone(indices: &[u32]) {
    let end = Instant::now() + Duration::from_secs(5);
    for i in indices {
        let p = format!("/dev/pts/{i}");
        while std::path::Path::new(&p).exists() {
            assert!(Instant::now() < end, "{p} still exists after the test");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `ckpt --kill PID | cr-restart`; reaps the killed original (our child)
/// so its pid is free for the restore.
fn kill_and_restore(orig: &mut Workload) -> Restore {
    let pid = orig.pid().to_string();
    let r = Pipeline::new()
        .stage("ckpt", &["--kill", &pid])
        .restore(&[]);
    orig.expect_exit();
    r
}

#[test]
fn pty_workload_round_trip() {
    let _s = serial();
    let mut orig = Workload::spawn(workload("pty"), &["-d", "20"]);
    let first = orig.expect_count(None, 3);
    let pts = pts_in(&first);
    assert_eq!(pts.len(), 2, "{first}");
    let mut r = kill_and_restore(&mut orig);
    let last = orig.last_count(None).expect("the original counted");
    let line = r.restored.expect_count(None, last + 10);
    assert_eq!(pts_in(&line), pts, "the restored ptys have other numbers");
    r.pipeline.wait().assert_success();
    assert_continues(&orig, &r.restored, None, Original::Killed);
    assert!(r.restored.kill().is_empty(), "processes left behind");
    assert_ptys_gone(&pts);
}

#[test]
fn waiting_data_arrives_byte_exact_after_restore() {
    let _s = serial();
    let mut orig = Workload::spawn(workload("ptydata"), &["-d", "20"]);
    let ready = orig.expect_line(|l| l.starts_with("ready"), "ready");
    let pts = pts_in(&ready);
    assert_eq!(pts.len(), 3, "{ready}");
    orig.expect_count(None, 2);
    let mut r = kill_and_restore(&mut orig);
    let last = orig.last_count(None).expect("the original counted");
    assert!(
        !orig.lines().iter().any(|l| l == "data ok"),
        "checked before the checkpoint"
    );
    r.restored.expect_count(None, last + 2);
    assert!(
        signal(orig.pid(), libc::SIGUSR1),
        "the restored process is gone"
    );
    r.restored.expect_line(|l| l == "data ok", "data ok");
    // Data keeps flowing through the restored pty afterwards.
    let after = r.restored.last_count(None).unwrap();
    r.restored.expect_count(None, after + 5);
    r.pipeline.wait().assert_success();
    assert_continues(&orig, &r.restored, None, Original::Killed);
    assert!(r.restored.kill().is_empty(), "processes left behind");
    assert_ptys_gone(&pts);
}

#[test]
fn cat_on_the_slave_keeps_echoing_after_restore() {
    let _s = serial();
    let mut orig = Workload::spawn(workload("ptyecho"), &["-d", "20"]);
    let first = orig.expect_count(None, 3);
    let pts = pts_in(&first);
    let cat = field(&first, "cat").expect("cat pid");
    let (tty, fg) = tty_of(cat).expect("cat runs");
    assert_eq!(tty, (136 << 8) | pts[0] as i64, "cat's terminal before");
    assert_eq!(fg, cat as i64, "cat leads the foreground before");
    let mut r = kill_and_restore(&mut orig);
    let last = orig.last_count(None).expect("the original counted");
    let line = r.restored.expect_count(None, last + 10);
    assert_eq!(field(&line, "cat"), Some(cat));
    assert_eq!(
        tty_of(cat),
        Some((tty, fg)),
        "cat's controlling terminal or foreground group after restore"
    );
    r.pipeline.wait().assert_success();
    assert_continues(&orig, &r.restored, None, Original::Killed);
    assert!(r.restored.kill().is_empty(), "processes left behind");
    assert_ptys_gone(&pts);
}

#[test]
fn checkpoint_leaves_the_waiting_data_in_place() {
    let _s = serial();
    let dir = tempdir();
    let img = dir.path().join("pty.img");
    let mut orig = Workload::spawn(workload("ptydata"), &["-d", "20"]);
    let ready = orig.expect_line(|l| l.starts_with("ready"), "ready");
    let pts = pts_in(&ready);
    orig.expect_count(None, 2);
    ckpt_to_file(&[], orig.pid(), &img);
    assert!(std::fs::metadata(&img).unwrap().len() > 0);
    let n = orig.last_count(None).unwrap();
    orig.expect_count(None, n + 2);
    assert!(signal(orig.pid(), libc::SIGUSR1));
    orig.expect_line(|l| l == "data ok", "data ok");
    let n = orig.last_count(None).unwrap();
    orig.expect_count(None, n + 3);
    orig.assert_no_fail();
    assert!(orig.kill().is_empty(), "processes left behind");
    assert_ptys_gone(&pts);
}

#[test]
fn a_pty_index_in_use_is_a_clear_error() {
    let _s = serial();
    let dir = tempdir();
    let img = dir.path().join("pty.img");
    let mut orig = Workload::spawn(workload("pty"), &["-d", "20"]);
    let pts = pts_in(&orig.expect_count(None, 2));
    ckpt_to_file(&[], orig.pid(), &img);
    // The original still holds its ptys: a restore with new pids cannot
    // have them.
    let out = run(
        "cr-restart",
        &["--no-pids", "-i", img.to_str().unwrap()],
        None,
    );
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    let want = format!("cannot restore pty {0}: /dev/pts/{0} is in use", pts[0]);
    assert!(out.stderr.contains(&want), "{}", out.stderr);
    orig.assert_no_fail();
    assert!(orig.kill().is_empty(), "processes left behind");
    assert_ptys_gone(&pts);
}

/// A program running as the leader of a new session whose controlling
/// terminal is the slave of a new pty (like a login shell's job): the test
/// holds the master, a thread reads everything written to it.
struct OnTerminal {
    child: std::process::Child,
    master: std::fs::File,
    output: std::sync::Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// Further pids to kill on drop (a restored process).
    also: Vec<i32>,
    /// The slave's device number as `/proc/PID/stat` shows a controlling
    /// terminal (`tty_nr`).
    tty_nr: i64,
}

impl OnTerminal {
    /// Starts `program` with the pty's slave as its stdout and stderr, and
    /// as its stdin unless `stdin` is given.
    fn spawn(program: &std::path::Path, args: &[&str], stdin: Option<std::fs::File>) -> Self {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let pty = nix::pty::openpty(None, None).expect("openpty");
        // Not inherited: a tree holding the master would take the pty into
        // its image (tests of this file run one at a time, so no other
        // child is forked meanwhile).
        for fd in [pty.master.as_raw_fd(), pty.slave.as_raw_fd()] {
            let set = nix::fcntl::FdFlag::FD_CLOEXEC;
            nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(set)).expect("FD_CLOEXEC");
        }
        let slave = std::fs::File::from(pty.slave);
        let rdev = std::os::unix::fs::MetadataExt::rdev(&slave.metadata().unwrap());
        let (major, minor) = (libc::major(rdev) as i64, libc::minor(rdev) as i64);
        let tty_nr = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
        let mut cmd = std::process::Command::new(program);
        cmd.args(args)
            .stdout(slave.try_clone().unwrap())
            .stderr(slave.try_clone().unwrap());
        match stdin {
            Some(f) => cmd.stdin(f),
            None => cmd.stdin(slave.try_clone().unwrap()),
        };
        let tty = slave.as_raw_fd();
        // SAFETY: setsid(2) and ioctl(2) are async-signal-safe and touch
        // no memory of the parent; `tty` stays open across the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 || libc::ioctl(tty, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn on a pty");
        drop(slave);
        let master = std::fs::File::from(pty.master);
        let output = std::sync::Arc::new(Mutex::new(Vec::new()));
        let (mut m, out) = (master.try_clone().unwrap(), output.clone());
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once no process holds the slave.
            while let Ok(n @ 1..) = m.read(&mut buf) {
                out.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        OnTerminal {
            child,
            master,
            output,
            reader: Some(reader),
            also: Vec::new(),
            tty_nr,
        }
    }

    /// What the terminal shows, line by line: what a carriage return went
    /// back over (cr-restart's progress line) is gone, and so are escape
    /// sequences.
    fn text(&self) -> String {
        let raw = String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned();
        let mut shown = String::new();
        for line in raw.split_inclusive('\n') {
            let line = line.trim_end_matches(['\r', '\n']);
            let visible = line.rsplit('\r').next().unwrap_or(line);
            let mut chars = visible.chars();
            while let Some(c) = chars.next() {
                if c == '\x1b' {
                    // ESC [ parameters, up to the final letter.
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                } else {
                    shown.push(c);
                }
            }
            shown.push('\n');
        }
        shown
    }

    /// Types `text` on the terminal.
    fn type_in(&self, text: &str) {
        use std::io::Write;
        (&self.master).write_all(text.as_bytes()).unwrap();
    }

    /// Waits (up to 10 s) until `cond` holds, else panics with `what` and
    /// what the terminal shows.
    fn expect(&self, what: &str, cond: impl FnMut() -> bool) {
        assert!(
            wait_until(Duration::from_secs(10), cond),
            "{what}; the terminal shows:\n{}",
            self.text()
        );
    }

    fn counts(&self) -> Vec<u64> {
        let lines: Vec<String> = self.text().lines().map(str::to_string).collect();
        counts(&lines, None)
    }

    /// Waits (up to 10 s) until count `n` shows on the terminal.
    fn expect_count(&self, n: u64) {
        let shown = wait_until(Duration::from_secs(10), || {
            self.counts().last().is_some_and(|&c| c >= n)
        });
        assert!(
            shown,
            "count {n} never showed; the terminal shows:\n{}",
            self.text()
        );
    }

    /// Waits (up to 10 s) for the program to exit; its exit code.
    fn wait(&mut self) -> Option<i32> {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            assert!(
                Instant::now() < end,
                "still running after 10 s; the terminal shows:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for OnTerminal {
    fn drop(&mut self) {
        for &pid in &self.also {
            signal(pid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for &pid in &self.also {
            wait_pid_gone(pid, Duration::from_secs(5));
        }
        // Closing the master hangs up whatever still holds the slave; the
        // reader then ends.
        let _ = self.master.sync_all();
        if let Some(r) = self.reader.take() {
            let end = Instant::now() + Duration::from_secs(5);
            while !r.is_finished() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            if r.is_finished() {
                let _ = r.join();
            }
        }
    }
}

/// The everyday terminal case: a job started from one terminal (here
/// the leader of its own session there) is checkpointed with `--kill` and
/// restored by `cr-restart < IMG` in another terminal (run by a shell,
/// sh(1), that leads the terminal's session). The job takes that terminal
/// as its controlling terminal, in a group of its own in the foreground:
/// its output shows there, continuing the count, and Ctrl-C there ends it;
/// cr-restart exits 130, says why, and the shell's group is the
/// foreground again.
#[test]
fn a_terminal_job_comes_back_in_another_terminal() {
    let _s = serial();
    let dir = tempdir();
    let img = dir.path().join("job.img");
    let mut orig = OnTerminal::spawn(&workload("onetask"), &["-d", "50"], None);
    let pid = orig.child.id() as i32;
    orig.expect_count(3);
    ckpt_to_file(&["--kill"], pid, &img);
    assert_eq!(orig.wait(), None, "the original was not killed");
    let before = orig.counts();
    let last = *before.last().unwrap();

    let script = "\"$0\" < \"$1\"; echo \"cr-restart exited $?\"; exec sleep 60";
    let cr = bin("cr-restart");
    let args = ["-c", script, cr.to_str().unwrap(), img.to_str().unwrap()];
    let mut restore = OnTerminal::spawn(std::path::Path::new("/bin/sh"), &args, None);
    restore.also.push(pid);
    let sh = restore.child.id() as i32;
    restore.expect_count(last + 5);
    check_continuation(&before, &restore.counts(), Original::Killed)
        .unwrap_or_else(|e| panic!("{e}; the terminal shows:\n{}", restore.text()));
    assert_eq!(
        tty_of(pid),
        Some((restore.tty_nr, pid as i64)),
        "the job's controlling terminal and its foreground group"
    );
    assert_eq!(sid_of(pid), Some(sh), "the job is in cr-restart's session");

    restore.type_in("\x03");
    restore.expect("cr-restart did not exit 130", || {
        restore.text().contains("cr-restart exited 130")
    });
    assert!(
        wait_pid_gone(pid, Duration::from_secs(5)),
        "the job still runs"
    );
    let shown = restore.text();
    assert!(
        shown.contains(&format!(
            "cr-restart: the restored root (pid {pid}) was killed by SIGINT"
        )),
        "{shown}"
    );
    assert_eq!(
        tty_of(sh).map(|t| t.1),
        Some(sh as i64),
        "the shell's group is not the foreground again"
    );
}

/// The case CRIU serves with `--shell-job`, with real shells: an
/// interactive bash in one terminal runs a python3 counter as a
/// foreground job; it is checkpointed with `ckpt --kill` from elsewhere;
/// an interactive bash in a second terminal runs `cr-restart < IMG`. The
/// count resumes there at the next line; the job has the terminal and the
/// foreground; Ctrl-Z stops it and cr-restart (bash gets the terminal
/// back), `fg` continues both, Ctrl-C ends the job and cr-restart exits
/// 130.
#[test]
fn a_bash_job_comes_back_under_another_bash() {
    let _s = serial();
    let dir = tempdir();
    let img = dir.path().join("job.img");
    let bash = std::path::Path::new("/bin/bash");
    let interactive = ["--norc", "--noprofile", "-i"];
    let mut first = OnTerminal::spawn(bash, &interactive, None);
    let bash1 = first.child.id() as i32;
    let counter =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads/counter.py");
    first.type_in(&format!(
        "unset HISTFILE; python3 {} 200\n",
        counter.display()
    ));
    first.expect_count(3);
    let job = children_of(bash1)[0];
    first.also.push(job);
    assert_eq!(
        tty_of(job),
        Some((first.tty_nr, job as i64)),
        "bash made the job its terminal's foreground"
    );
    ckpt_to_file(&["--kill"], job, &img);
    assert!(
        wait_pid_gone(job, Duration::from_secs(5)),
        "the job was not killed"
    );
    let before = first.counts();
    let last = *before.last().unwrap();

    let mut second = OnTerminal::spawn(bash, &interactive, None);
    second.also.push(job);
    let bash2 = second.child.id() as i32;
    second.type_in(&format!(
        "unset HISTFILE; {} < {}\n",
        bin("cr-restart").display(),
        img.display()
    ));
    second.expect_count(last + 3);
    check_continuation(&before, &second.counts(), Original::Killed)
        .unwrap_or_else(|e| panic!("{e}; the terminal shows:\n{}", second.text()));
    assert_eq!(
        tty_of(job),
        Some((second.tty_nr, job as i64)),
        "the job's controlling terminal and its foreground group"
    );
    assert_eq!(
        sid_of(job),
        Some(bash2),
        "the job is in the second bash's session"
    );
    // `cr-restart < IMG`: the image is cr-restart's stdin, so the job's
    // stdin (a terminal before) is the new terminal, not the image file.
    let fd0 = std::fs::read_link(format!("/proc/{job}/fd/0")).unwrap();
    assert_eq!(
        fd0,
        std::fs::read_link(format!("/proc/{job}/fd/1")).unwrap(),
        "the job reads the terminal it writes to"
    );
    assert!(fd0.starts_with("/dev/pts/"), "stdin is {}", fd0.display());
    let cr = children_of(bash2)[0];

    // Ctrl-Z: the job and cr-restart stop, bash has the terminal.
    second.type_in("\x1a");
    second.expect("the job and cr-restart did not stop", || {
        proc_state(job) == Some('T')
            && proc_state(cr) == Some('T')
            && tty_of(bash2).map(|t| t.1) == Some(bash2 as i64)
    });
    let stopped_at = *second.counts().last().unwrap();
    second.type_in("fg\n");
    second.expect_count(stopped_at + 3);
    assert_eq!(
        tty_of(job).map(|t| t.1),
        Some(job as i64),
        "fg gave the job the terminal"
    );

    second.type_in("\x03");
    assert!(
        wait_pid_gone(job, Duration::from_secs(10)),
        "Ctrl-C did not end the job"
    );
    second.type_in("echo \"status=$?\"\n");
    second.expect("cr-restart did not exit 130", || {
        second.text().contains("status=130")
    });
    drop(first);
}

/// A restored root that cannot write to its terminal and dies at once is
/// not a silent status: cr-restart names the root and its status.
#[test]
fn an_early_exit_of_the_restored_root_is_reported() {
    let _s = serial();
    let dir = tempdir();
    let img = dir.path().join("job.img");
    let mut orig = OnTerminal::spawn(&workload("onetask"), &["-d", "50"], None);
    let pid = orig.child.id() as i32;
    orig.expect_count(2);
    ckpt_to_file(&["--kill"], pid, &img);
    orig.wait();
    // Standard output and error connected to the read end of a pipe (the
    // pipe cr-restart has as stdin): the next write fails and the workload
    // exits 2, its own report unable to show.
    let img = img.to_str().unwrap();
    let args = ["-i", img, "--fd", "1=fd:0", "--fd", "2=fd:0"];
    let out = run("cr-restart", &args, Some(b""));
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "cr-restart: the restored root (pid {pid}) exited with status 2"
        )),
        "{}",
        out.stderr
    );
    assert!(wait_pid_gone(pid, Duration::from_secs(5)));
}

/// `--fd` reconnects each number of a terminal the job held at 0, 1 and
/// 2 on its own: `--fd 1=FILE --fd 2=FILE` gives FILE at 1 and 2 while 0
/// stays cr-restart's standard input.
#[test]
fn fd_options_reconnect_each_number_of_a_shared_terminal() {
    let _s = serial();
    let dir = tempdir();
    let img = dir.path().join("job.img");
    let log = dir.path().join("out");
    let mut orig = OnTerminal::spawn(&workload("onetask"), &["-d", "50"], None);
    let pid = orig.child.id() as i32;
    orig.expect_count(2);
    ckpt_to_file(&["--kill"], pid, &img);
    orig.wait();
    let last = *orig.counts().last().unwrap();
    let spec = format!("{}", log.display());
    let (one, two) = (format!("1={spec}"), format!("2={spec}"));
    let args = [
        "-d",
        "-i",
        img.to_str().unwrap(),
        "--fd",
        &one,
        "--fd",
        &two,
    ];
    // Output to a file, not a pipe: the job's other external descriptor
    // (the harness's pipe at 251) is connected to cr-restart's stdout and
    // would keep a pipe open.
    let err = dir.path().join("err");
    let status = std::process::Command::new(bin("cr-restart"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .status()
        .unwrap();
    orig.also.push(pid);
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(status.success(), "cr-restart: {status}: {stderr}");
    // Not on a terminal (and detached): its own session as before.
    assert_eq!(sid_of(pid), Some(pid), "the job keeps its session");
    assert_eq!(tty_of(pid).map(|t| t.0), Some(0), "the job has no terminal");
    let link = |n: i32| std::fs::read_link(format!("/proc/{pid}/fd/{n}")).ok();
    assert_eq!(link(1).as_deref(), Some(log.as_path()));
    assert_eq!(link(2).as_deref(), Some(log.as_path()));
    assert_eq!(link(0).as_deref(), Some(std::path::Path::new("/dev/null")));
    let written = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        counts(&lines, None)
    };
    assert!(
        wait_until(Duration::from_secs(10), || written().len() >= 3),
        "the restored job wrote {:?}",
        written()
    );
    assert_eq!(written()[0], last + 1, "the count resumes in FILE");
}
