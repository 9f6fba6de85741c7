//! A restore never grants a process more than it had (issue 16): a root
//! `cr-restart` opens every file, FIFO and directory with the credentials
//! of the process it is for, and gives each process exactly the
//! credentials of its image. Refusals are one line naming the process and
//! the object, before any process is created, and leave nothing behind.
//!
//! Real processes (a python3 program run as `nobody`, `onetask` under
//! `setpriv`) and real images edited into hostile ones (a uid-1000 process
//! holding `/etc/shadow`, a FIFO to make in a root-only directory, a
//! working directory the uid may not enter).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use common::*;
use crtools::image::{
    self, Fd, FdTable, File, Kind, Pipe, Process, Reader, WriteOptions, Writer, wire,
};

/// One refusal check at a time, so "nothing left behind" sees only its own.
static SERIAL: Mutex<()> = Mutex::new(());

const PYTHON: &str = "/usr/bin/python3";

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

/// The credential lines of `/proc/PID/status` a restore must reproduce.
fn cred_lines(pid: i32) -> Vec<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .filter(|l| {
            ["Uid:", "Gid:", "Groups:", "Cap", "NoNewPrivs:"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(str::to_string)
        .collect()
}

/// Processes whose command line contains `marker`.
fn running_with(marker: &str) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&p| cmdline_of(p).is_some_and(|c| c.contains(marker)))
        .collect()
}

/// Runs `cr-restart --no-pids -i IMG` expecting a refusal: exit 1, one line
/// containing every string of `want`, no new child, no process running
/// with `marker` in its command line.
fn refused(img: &Path, marker: &str, want: &[&str]) -> String {
    let me = std::process::id() as i32;
    let before = (children_of(me), running_with(marker));
    let mut cmd = Command::new(bin("cr-restart"));
    cmd.args(["--no-pids", "-i", img.to_str().unwrap()]);
    let f = run_cmd(cmd, None);
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    assert_eq!(f.stderr.lines().count(), 1, "{}", f.stderr);
    for w in want {
        assert!(f.stderr.contains(w), "expected {w:?} in: {}", f.stderr);
    }
    assert_eq!(
        (children_of(me), running_with(marker)),
        before,
        "processes left behind"
    );
    f.stderr
}

/// The case: python3 as `nobody` holds a world-readable file; it
/// is checkpointed with `--kill`; the file is made root-only with secret
/// contents. A root restore refuses, naming the process, the descriptor
/// and the file, and nothing runs. Made readable again, the same image
/// restores, as uid 65534 with no capabilities, and reads the file.
#[test]
fn python_as_nobody_cannot_get_a_file_made_root_only() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir();
    chmod(dir.path(), 0o755);
    let data = dir.path().join("data.txt");
    std::fs::write(&data, "public\n").unwrap();
    chmod(&data, 0o644);
    let script = format!(
        "import signal, time\n\
         f = open({data:?})\n\
         def show(*a):\n    f.seek(0); print('read:' + f.read().strip(), flush=True)\n\
         signal.signal(signal.SIGUSR1, show)\n\
         print('ready', flush=True)\n\
         while True: time.sleep(0.05)\n",
        data = data.to_str().unwrap()
    );
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", PYTHON])
        .args(["-c", &script]);
    let mut orig = Workload::spawn_cmd(cmd);
    orig.expect_line(|l| l == "ready", "python ready");
    let pid = orig.pid();
    let creds = cred_lines(pid);
    let img = dir.path().join("nobody.img");
    ckpt_to_file(&["--kill"], pid, &img);
    orig.wait_exit(TIMEOUT);
    assert!(wait_pid_gone(pid, TIMEOUT));

    std::fs::write(&data, "secret\n").unwrap();
    chmod(&data, 0o600);
    let marker = data.to_str().unwrap();
    let line = refused(&img, marker, &["pid ", "descriptor ", marker]);
    assert!(line.contains("permission denied for uid 65534"), "{line}");

    // Readable again: the process that had access keeps it.
    chmod(&data, 0o644);
    let pidfile = dir.path().join("pid");
    let mut r =
        Pipeline::new()
            .input(&img)
            .restore(&["--no-pids", "--pidfile", pidfile.to_str().unwrap()]);
    let new = read_pidfile(&pidfile);
    r.restored.track(new);
    assert_eq!(cred_lines(new), creds, "credentials not restored exactly");
    assert!(signal(new, libc::SIGUSR1));
    r.restored.expect_line(
        |l| l == "read:secret",
        "the restored process reads its file",
    );
}

/// A real image of `onetask` (root), to edit into hostile ones.
fn base_image(dir: &Path) -> (image::StreamHeader, Vec<(Kind, Vec<u8>)>) {
    let orig = Workload::spawn(workload("onetask"), &["-d", "20"]);
    orig.expect_count(None, 2);
    let path = dir.join("base.img");
    ckpt_to_file(&[], orig.pid(), &path);
    orig.assert_no_fail();
    let img = std::fs::read(&path).unwrap();
    let mut r = Reader::new(&img[..]).expect("a valid image");
    let header = r.header().clone();
    let mut recs = Vec::new();
    while let Some(rec) = r.next_record().expect("a valid record") {
        recs.push((rec.kind, rec.payload.to_vec()));
    }
    (header, recs)
}

fn find(v: &[(Kind, Vec<u8>)], k: Kind) -> usize {
    v.iter().position(|r| r.0 == k).unwrap()
}

fn edit<T: wire::Wire>(v: &mut [(Kind, Vec<u8>)], i: usize, f: impl FnOnce(&mut T)) {
    let mut x: T = wire::decode(&v[i].1).unwrap();
    f(&mut x);
    v[i].1 = wire::encode(&x);
}

/// The process of the image runs as uid and gid 1000, no groups, no
/// capabilities.
fn as_uid_1000(v: &mut [(Kind, Vec<u8>)]) {
    let i = find(v, Kind::PROCESS);
    edit::<Process>(v, i, |p| {
        let c = &mut p.creds;
        (c.uid, c.euid, c.suid, c.fsuid) = (1000, 1000, 1000, 1000);
        (c.gid, c.egid, c.sgid, c.fsgid) = (1000, 1000, 1000, 1000);
        c.groups = Vec::new().into();
        (c.cap_inh, c.cap_prm, c.cap_eff, c.cap_amb) = (0, 0, 0, 0);
    });
}

/// Adds `f` (before the descriptor table) and descriptor `fd` for it.
fn add_fd(v: &mut Vec<(Kind, Vec<u8>)>, fd: u32, f: File) {
    let t = find(v, Kind::FDTABLE);
    let id = f.id;
    v.insert(t, (Kind::FILE, wire::encode(&f)));
    edit::<FdTable>(v, t + 1, |tab| {
        tab.fds.push(Fd {
            fd,
            cloexec: false,
            file_id: id,
        })
    });
}

fn write_image(
    dir: &Path,
    name: &str,
    header: &image::StreamHeader,
    v: &[(Kind, Vec<u8>)],
) -> std::path::PathBuf {
    let mut w = Writer::new(Vec::new(), header, WriteOptions::default()).unwrap();
    for (k, p) in v {
        w.write_record(*k, p).unwrap();
    }
    let path = dir.join(name);
    std::fs::write(&path, w.finish().unwrap()).unwrap();
    path
}

/// The marker every hostile restore would run with: onetask's path.
fn onetask_marker() -> String {
    workload("onetask").to_str().unwrap().to_string()
}

/// A hand-made image whose uid-1000 process holds `/etc/shadow` open: a
/// root restore refuses it, before any process exists.
#[test]
fn uid_1000_process_holding_etc_shadow_is_refused() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir();
    let (h, mut v) = base_image(dir.path());
    as_uid_1000(&mut v);
    let path = b"/etc/shadow".to_vec();
    add_fd(
        &mut v,
        7,
        File {
            id: 0x5eed_0001,
            ftype: image::FT_REGULAR,
            flags: libc::O_RDONLY as u32,
            path: path.clone(),
            link: path,
            mode: 0o100640,
            ..File::default()
        },
    );
    let img = write_image(dir.path(), "shadow.img", &h, &v);
    refused(
        &img,
        &onetask_marker(),
        &[
            "descriptor 7 of pid ",
            "/etc/shadow: permission denied for uid 1000",
        ],
    );
}

/// A hand-made image whose uid-1000 process holds a FIFO that is missing
/// and would be made in a root-only directory: refused, and never made.
#[test]
fn fifo_to_make_in_a_root_only_directory_is_refused() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir();
    chmod(dir.path(), 0o755);
    let private = dir.path().join("root-only");
    std::fs::create_dir(&private).unwrap();
    chmod(&private, 0o700);
    let fifo = private.join("fifo");
    let (h, mut v) = base_image(dir.path());
    as_uid_1000(&mut v);
    let fifo_path = fifo.to_str().unwrap().as_bytes().to_vec();
    let t = find(&v, Kind::FDTABLE);
    let pipe = Pipe {
        id: 0x5eed_0002,
        capacity: 0,
        data_len: 0,
        fifo_path: fifo_path.clone(),
    };
    v.insert(t, (Kind::PIPE, wire::encode(&pipe)));
    add_fd(
        &mut v,
        8,
        File {
            id: 0x5eed_0003,
            ftype: image::FT_FIFO,
            flags: libc::O_RDONLY as u32,
            path: fifo_path.clone(),
            link: fifo_path,
            mode: 0o010666,
            object_id: 0x5eed_0002,
            ..File::default()
        },
    );
    let img = write_image(dir.path(), "fifo.img", &h, &v);
    refused(
        &img,
        &onetask_marker(),
        &[
            "descriptor 8 of pid ",
            fifo.to_str().unwrap(),
            "permission denied for uid 1000",
        ],
    );
    assert!(
        !fifo.exists(),
        "the FIFO was made in the root-only directory"
    );
}

/// A hand-made image whose uid-1000 process works in a directory it may
/// not enter: refused.
#[test]
fn cwd_the_uid_may_not_enter_is_refused() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir();
    chmod(dir.path(), 0o755);
    let private = dir.path().join("root-only");
    std::fs::create_dir(&private).unwrap();
    chmod(&private, 0o700);
    let (h, mut v) = base_image(dir.path());
    as_uid_1000(&mut v);
    let i = find(&v, Kind::PROCESS);
    let cwd = private.to_str().unwrap().as_bytes().to_vec();
    edit::<Process>(&mut v, i, |p| p.cwd = cwd);
    let img = write_image(dir.path(), "cwd.img", &h, &v);
    refused(
        &img,
        &onetask_marker(),
        &[
            "cwd: ",
            private.to_str().unwrap(),
            "permission denied for uid 1000",
        ],
    );
}

/// Credentials come back exactly, never wider: a root process with a
/// narrowed bounding set and `no_new_privs`, and a uid-1000 process with
/// an ambient capability, keep every id, group and capability set.
#[test]
fn credentials_are_restored_exactly() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir();
    chmod(dir.path(), 0o755);
    let cases: [&[&str]; 2] = [
        &["--no-new-privs", "--bounding-set=-net_raw,-sys_module"],
        &[
            "--reuid=1000",
            "--regid=1000",
            "--groups=1000,27",
            "--inh-caps=+net_bind_service",
            "--ambient-caps=+net_bind_service",
        ],
    ];
    for (n, args) in cases.into_iter().enumerate() {
        let mut cmd = Command::new("setpriv");
        cmd.args(args).arg(workload("onetask")).args(["-d", "20"]);
        let orig = Workload::spawn_cmd(cmd);
        orig.expect_count(None, 2);
        let want = cred_lines(orig.pid());
        let img = dir.path().join(format!("creds{n}.img"));
        ckpt_to_file(&[], orig.pid(), &img);
        let pidfile = dir.path().join(format!("pid{n}"));
        let mut r = Pipeline::new().input(&img).restore(&[
            "--no-pids",
            "--pidfile",
            pidfile.to_str().unwrap(),
        ]);
        let new = read_pidfile(&pidfile);
        r.restored.track(new);
        assert!(
            wait_until(TIMEOUT, || r.restored.last_count(None).is_some()),
            "the restored process did not go on: {}",
            r.restored.stderr()
        );
        assert_eq!(cred_lines(new), want, "case {args:?}");
        r.restored.assert_no_fail();
        orig.assert_no_fail();
        drop(r);
        drop(orig);
    }
}
