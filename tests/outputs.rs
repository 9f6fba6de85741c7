//! Output files (`-o FILE`, cr-split's parts): written under a temporary
//! name and renamed into place only when the work succeeded, never over an
//! input, and never left half-written or as litter after a failure.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use crtools::image::synth::{self, Spec};

const KEEP: &[u8] = b"important\n";

fn plain() -> Vec<u8> {
    synth::generate(&Spec::small(11, 200_000))
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs a tool that must fail with status 1 and one line on stderr.
fn fails(name: &str, args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = run(name, args, stdin);
    assert_eq!(out.code(), Some(1), "{name} {args:?}: {}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{:?}", out.stderr);
    assert!(
        out.stderr.starts_with(&format!("{name}: ")),
        "{}",
        out.stderr
    );
    out.stderr
}

#[test]
fn a_failing_filter_leaves_the_output_file_as_it_was() {
    let dir = tempdir();
    let keep = dir.path().join("keep.img");
    let junk = b"this is not an image".to_vec();
    let mut truncated = plain();
    truncated.truncate(truncated.len() / 2);
    for (name, args) in [
        ("cr-zstd", vec![]),
        ("cr-zstd", vec!["-d"]),
        ("cr-sum", vec![]),
    ] {
        for input in [&junk, &truncated] {
            std::fs::write(&keep, KEEP).unwrap();
            let mut all = args.clone();
            all.extend(["-o", s(&keep)]);
            fails(name, &all, Some(input));
            assert_eq!(std::fs::read(&keep).unwrap(), KEEP, "{name} {all:?}");
            assert_eq!(
                names(dir.path()),
                ["keep.img"],
                "{name}: a temporary file is left"
            );
        }
    }
    // cr-split --join with a bad set of parts, and with a damaged part found
    // only while streaming (after output was written).
    let img = plain();
    let prefix = dir.path().join("p");
    run("cr-split", &["-b", "64K", s(&prefix)], Some(&img)).assert_success();
    let mut parts: Vec<PathBuf> = (0..)
        .map(|i| dir.path().join(format!("p.{i:03}")))
        .take_while(|p| p.exists())
        .collect();
    assert!(parts.len() >= 3);
    let last = parts.len() - 1;
    let mut bytes = std::fs::read(&parts[last]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    let damaged = dir.path().join("damaged");
    std::fs::write(&damaged, &bytes).unwrap();
    for set in [
        &parts[..last],
        &[&parts[..last], std::slice::from_ref(&damaged)].concat()[..],
    ] {
        let mut args = vec!["-j", "-o", s(&keep)];
        args.extend(set.iter().map(|p| s(p)));
        fails("cr-split", &args, None);
        assert_eq!(std::fs::read(&keep).unwrap(), KEEP);
    }
    parts.push(damaged);
    let mut expect: Vec<String> = vec!["keep.img".into()];
    expect.extend(
        parts
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned()),
    );
    expect.sort();
    assert_eq!(names(dir.path()), expect);
}

#[test]
fn an_existing_output_is_replaced_whole_with_its_mode() {
    let dir = tempdir();
    let img = dir.path().join("a.img");
    let out = dir.path().join("out.img");
    std::fs::write(&img, plain()).unwrap();
    std::fs::write(&out, KEEP).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o600)).unwrap();
    run("cr-zstd", &["-o", s(&out), s(&img)], None).assert_success();
    let z = std::fs::read(&out).unwrap();
    assert_eq!(
        run("cr-zstd", &["-d"], Some(&z)).assert_success().stdout,
        std::fs::read(&img).unwrap()
    );
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Through a symbolic link: the file it names is replaced, the link stays.
    let link = dir.path().join("link.img");
    std::os::unix::fs::symlink("out.img", &link).unwrap();
    run("cr-sum", &["-o", s(&link), s(&img)], None).assert_success();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    run("cr-sum", &["--check", s(&out)], None).assert_success();
    assert_eq!(names(dir.path()), ["a.img", "link.img", "out.img"]);
    // Not a regular file: written in place, not replaced.
    run("cr-zstd", &["-o", "/dev/null", s(&img)], None).assert_success();
    assert!(std::fs::metadata("/dev/null").unwrap().permissions().mode() & 0o666 == 0o666);
}

#[test]
fn an_output_that_is_an_input_is_refused_and_the_input_kept() {
    let dir = tempdir();
    let img = dir.path().join("same.img");
    let link = dir.path().join("link.img");
    let image = plain();
    std::fs::write(&img, &image).unwrap();
    std::os::unix::fs::symlink("same.img", &link).unwrap();
    let check = |err: String| {
        assert!(
            err.contains("same.img") || err.contains("link.img"),
            "{err}"
        );
        assert!(err.contains("input"), "{err}");
        assert_eq!(std::fs::read(&img).unwrap(), image);
        assert_eq!(names(dir.path()), ["link.img", "same.img"]);
    };
    check(fails("cr-zstd", &["-o", s(&img), s(&img)], None));
    check(fails("cr-zstd", &["-d", "-o", s(&link), s(&img)], None));
    check(fails("cr-sum", &["-o", s(&img), s(&link)], None));
    // The input on stdin, redirected from the same file.
    for name in ["cr-zstd", "cr-sum"] {
        let mut cmd = Command::new(bin(name));
        cmd.args(["-o", s(&img)]);
        cmd.stdin(std::fs::File::open(&img).unwrap());
        let out = cmd.stderr(Stdio::piped()).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        check(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    // cr-split: a part that is the input, and --join over one of the parts.
    let prefix = dir.path().join("same.img.x");
    run("cr-split", &["-b", "64K", s(&prefix), s(&img)], None).assert_success();
    let p0 = dir.path().join("same.img.x.000");
    let p1 = dir.path().join("same.img.x.001");
    let part0 = std::fs::read(&p0).unwrap();
    let parts: Vec<PathBuf> = (0..)
        .map(|i| dir.path().join(format!("same.img.x.{i:03}")))
        .take_while(|p| p.exists())
        .collect();
    let mut args = vec!["-j", "-o", s(&p0)];
    args.extend(parts.iter().map(|p| s(p)));
    let err = fails("cr-split", &args, None);
    assert!(
        err.contains("same.img.x.000") && err.contains("input"),
        "{err}"
    );
    assert_eq!(std::fs::read(&p0).unwrap(), part0);
    // An image whose name is that of the first part.
    let q0 = dir.path().join("q.000");
    std::fs::write(&q0, &image).unwrap();
    let err = fails(
        "cr-split",
        &["-b", "64K", s(&dir.path().join("q")), s(&q0)],
        None,
    );
    assert!(err.contains("q.000") && err.contains("input"), "{err}");
    assert_eq!(std::fs::read(&q0).unwrap(), image);
    assert!(p1.exists());
}

#[test]
fn a_failed_split_leaves_the_earlier_parts() {
    let dir = tempdir();
    let prefix = dir.path().join("p");
    let a = plain();
    run("cr-split", &["-b", "64K", s(&prefix)], Some(&a)).assert_success();
    let before = names(dir.path());
    let contents: Vec<Vec<u8>> = before
        .iter()
        .map(|n| std::fs::read(dir.path().join(n)).unwrap())
        .collect();
    let mut cut = synth::generate(&Spec::small(12, 400_000));
    cut.truncate(cut.len() - 10);
    fails("cr-split", &["-b", "64K", s(&prefix)], Some(&cut));
    assert_eq!(names(dir.path()), before);
    for (n, c) in before.iter().zip(&contents) {
        assert_eq!(&std::fs::read(dir.path().join(n)).unwrap(), c, "{n}");
    }
}

/// Polls until `dir` holds a name starting with `.` (a temporary file).
fn wait_for_temp(dir: &Path) -> bool {
    wait_until(TIMEOUT, || names(dir).iter().any(|n| n.starts_with('.')))
}

#[test]
fn a_filter_ended_by_a_signal_removes_its_temporary_file() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let dir = tempdir();
        let out = dir.path().join("out.img");
        std::fs::write(&out, KEEP).unwrap();
        // stdin is a pipe the test holds open: the filter waits for input
        // with its temporary file created.
        let mut cmd = Command::new(bin("cr-zstd"));
        cmd.args(["-o", s(&out)])
            .stdin(Stdio::piped())
            .stderr(Stdio::null());
        // A program started with a signal ignored keeps it ignored (as a
        // background job started by a shell without job control does
        // with SIGINT): start the filter with the default action, whatever
        // the test runner inherited.
        // SAFETY: between fork and exec only signal(2), which is
        // async-signal-safe, is called.
        unsafe {
            cmd.pre_exec(move || {
                libc::signal(sig, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take();
        let seen = wait_for_temp(dir.path());
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let status = child.wait().unwrap();
        drop(stdin);
        assert!(seen, "no temporary file appeared");
        assert_eq!(status.signal(), Some(sig));
        assert_eq!(std::fs::read(&out).unwrap(), KEEP);
        assert_eq!(names(dir.path()), ["out.img"]);
    }
}

#[test]
fn a_failed_checkpoint_keeps_the_output_file_and_the_tree() {
    let dir = tempdir();
    let keep = dir.path().join("keep.img");
    std::fs::write(&keep, KEEP).unwrap();
    // No such process.
    let out = ckpt(&["-o", s(&keep), "999999"]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert_eq!(std::fs::read(&keep).unwrap(), KEEP);
    assert_eq!(names(dir.path()), ["keep.img"]);

    // A real tree, and a checkpoint that fails half-way through writing
    // (a file size limit: EFBIG after 16 KiB), even with --kill.
    let mut w = Workload::spawn(workload("onetask"), &["-d", "20"]);
    w.expect_count(None, 3);
    for extra in [&[][..], &["--kill"][..]] {
        let pid = w.pid().to_string();
        let mut cmd = Command::new(bin("ckpt"));
        cmd.args(extra).args(["-o", s(&keep), &pid]);
        // SAFETY: setrlimit and signal are async-signal-safe; ignoring
        // SIGXFSZ makes an oversized write fail with EFBIG instead.
        unsafe {
            cmd.pre_exec(|| {
                let lim = libc::rlimit {
                    rlim_cur: 16 << 10,
                    rlim_max: 16 << 10,
                };
                libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                Ok(())
            });
        }
        let out = run_cmd(cmd, None);
        assert_eq!(out.code(), Some(1), "{}", out.stderr);
        assert!(out.stderr.starts_with("ckpt: "), "{}", out.stderr);
        assert_eq!(std::fs::read(&keep).unwrap(), KEEP);
        assert_eq!(names(dir.path()), ["keep.img"]);
        // The tree goes on as it was.
        let n = w.last_count(None).unwrap();
        w.expect_count(None, n + 3);
        assert!(matches!(proc_state(w.pid()), Some('S' | 'R')));
    }
    // And a checkpoint that succeeds replaces the file with a whole image.
    ckpt_to_file(&[], w.pid(), &keep);
    run("cr-info", &[s(&keep)], None).assert_success();
    assert_eq!(names(dir.path()), ["keep.img"]);
    w.kill();
}
