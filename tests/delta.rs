//! `cr-delta`: an image stored as a delta against an earlier checkpoint of
//! the same process, rebuilt byte for byte, restored; wrong, changed and
//! chained bases refused before anything is created.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use common::*;
use crtools::image::{Kind, Reader, WriteOptions, Writer};

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Two checkpoints of a `rewrite` process of `mib` MiB, the second after
/// it rewrote one page in 20 (5%): `(a, b)`, the process killed by the
/// second. Returns the workload too, to check the restored one against,
/// and its command line.
fn two_checkpoints(dir: &Path, mib: &str) -> (Workload, PathBuf, PathBuf, String) {
    let (a, b) = (dir.join("a.img"), dir.join("b.img"));
    let mut orig = Workload::spawn(workload("rewrite"), &["-m", mib, "-d", "200"]);
    orig.expect_count(None, 1);
    let cmdline = cmdline_of(orig.pid()).expect("rewrite's command line");
    ckpt_to_file(&[], orig.pid(), &a);
    assert!(signal(orig.pid(), libc::SIGUSR1));
    orig.expect_line(|l| l.starts_with("rewrote "), "rewrote");
    orig.expect_line(|l| l.ends_with(" ok gen 1"), "a count after the rewrite");
    ckpt_to_file(&["--kill"], orig.pid(), &b);
    orig.expect_exit();
    assert!(wait_pid_gone(orig.pid(), TIMEOUT));
    (orig, a, b, cmdline)
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .len()
}

/// Whether two files hold the same bytes (read a piece at a time).
fn same_bytes(a: &Path, b: &Path) -> bool {
    if size(a) != size(b) {
        return false;
    }
    let (mut fa, mut fb) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return true;
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}

/// `cr-delta ARGS...`, which must succeed.
fn delta(args: &[&str]) {
    run("cr-delta", args, None).assert_success();
}

/// `cr-delta ARGS...`, which must fail with one line on stderr; that line.
fn delta_fails(args: &[&str]) -> String {
    let out = run("cr-delta", args, None);
    assert_eq!(out.code(), Some(1), "cr-delta {args:?}: {out:?}");
    let err = out.stderr.trim_end().to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

/// Pids of processes running `cmdline`.
fn copies_of(cmdline: &str) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&p| cmdline_of(p).as_deref() == Some(cmdline))
        .collect()
}

/// A copy of image `from` in `to` with one byte of its first page record
/// changed, every CRC and digest made anew: the same stream, changed.
fn change_one_page(from: &Path, to: &Path) {
    let mut r = Reader::new(std::io::BufReader::new(std::fs::File::open(from).unwrap())).unwrap();
    let out = std::io::BufWriter::new(std::fs::File::create(to).unwrap());
    let hdr = r.header_raw().decode().unwrap().payload;
    let mut w = Writer::with_header_payload(out, &hdr, WriteOptions::default()).unwrap();
    let mut done = false;
    while let Some(rec) = r.next_record().unwrap() {
        let mut p = rec.payload.to_vec();
        if rec.kind == Kind::PAGES && !done {
            let last = p.len() - 1;
            p[last] ^= 0x40;
            done = true;
        }
        w.write_record(rec.kind, &p).unwrap();
    }
    w.finish().unwrap().flush().unwrap();
    assert!(done, "no pages in {}", from.display());
}

#[test]
fn five_percent_rewritten_gives_a_small_delta_that_restores() {
    let dir = tempdir();
    let (orig, a, b, cmdline) = two_checkpoints(dir.path(), "256");
    let (d, b2) = (dir.path().join("d.img"), dir.path().join("b2.img"));
    delta(&["--base", path_str(&a), "-o", path_str(&d), path_str(&b)]);
    let (full, small) = (size(&b), size(&d));
    eprintln!("image {full} bytes, delta {small} bytes");
    assert!(
        small * 100 < full * 8,
        "delta of {small} bytes is not under 8% of the {full}-byte image"
    );
    delta(&["--apply", path_str(&a), "-o", path_str(&b2), path_str(&d)]);
    assert!(
        same_bytes(&b, &b2),
        "the rebuilt image differs from the original"
    );

    // cr-info says what the delta needs.
    let info = run("cr-info", &[path_str(&d)], None);
    info.assert_success();
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("delta:       against stream"), "{text}");

    // The delta itself, and a rebuild from a wrong or changed base, are
    // refused before any process is created.
    let r = run("cr-restart", &[path_str(&d)], None);
    assert_eq!(r.code(), Some(1), "{r:?}");
    let err = &r.stderr;
    assert!(err.contains("cr-delta --apply"), "{err}");
    assert!(copies_of(&cmdline).is_empty(), "a process was created");

    let other = dir.path().join("other.img");
    let mut small_proc = Workload::spawn(workload("onetask"), &["-d", "20"]);
    small_proc.expect_count(None, 2);
    ckpt_to_file(&["--kill"], small_proc.pid(), &other);
    small_proc.expect_exit();
    let err = delta_fails(&["--apply", path_str(&other), path_str(&d)]);
    assert!(err.contains("wrong base"), "{err}");
    let p = Pipeline::new()
        .stage("cr-delta", &["--apply", path_str(&other), path_str(&d)])
        .stage("cr-restart", &["--no-pids"])
        .run();
    assert!(p.codes().iter().all(|c| *c == Some(1)), "{}", p.describe());
    assert!(copies_of(&cmdline).is_empty(), "a process was created");

    let changed = dir.path().join("changed.img");
    change_one_page(&a, &changed);
    let err = delta_fails(&["--apply", path_str(&changed), path_str(&d)]);
    assert!(
        err.contains("has changed since the delta was made"),
        "{err}"
    );
    std::fs::remove_file(&changed).unwrap();

    // A chain is refused: a delta as the base, or as the image.
    let err = delta_fails(&["--base", path_str(&d), path_str(&b)]);
    assert!(err.contains("is itself a delta"), "{err}");
    let err = delta_fails(&["--base", path_str(&a), path_str(&d)]);
    assert!(err.contains("already a delta"), "{err}");

    // The rebuilt image restores, and the process checks all its memory.
    let r = Pipeline::new().input(&b2).restore(&[]);
    let last = orig.last_count(None).expect("counts");
    r.restored.expect_count(None, last + 3);
    assert_continues(&orig, &r.restored, None, Original::Killed);
}

#[test]
fn keyed_summed_and_compressed_images_round_trip_through_a_delta() {
    let dir = tempdir();
    let p = |n: &str| dir.path().join(n);
    let (_orig, a, b, _) = two_checkpoints(dir.path(), "16");
    let key = p("key");
    std::fs::write(&key, b"a secret of the test").unwrap();
    let filter = |bin: &str, args: &[&str], from: &Path, to: &Path| {
        let mut all = args.to_vec();
        all.extend(["-o", path_str(to), path_str(from)]);
        run(bin, &all, None).assert_success();
    };
    let check = |args: &[&str], img: &Path| {
        let mut all = vec!["--check"];
        all.extend_from_slice(args);
        all.push(path_str(img));
        run("cr-sum", &all, None).assert_success();
    };

    // Plain digests: the delta verifies, and so does the rebuilt image.
    filter("cr-sum", &[], &b, &p("bs"));
    delta(&[
        "--base",
        path_str(&a),
        "-o",
        path_str(&p("ds")),
        path_str(&p("bs")),
    ]);
    check(&[], &p("ds"));
    delta(&[
        "--apply",
        path_str(&a),
        "-o",
        path_str(&p("bs2")),
        path_str(&p("ds")),
    ]);
    assert!(same_bytes(&p("bs"), &p("bs2")));

    // Keyed: without the key the delta keeps the image's keyed digests
    // (its own are plain); with it, the delta is keyed throughout.
    filter("cr-sum", &["--key", path_str(&key)], &b, &p("bk"));
    delta(&[
        "--base",
        path_str(&a),
        "-o",
        path_str(&p("dk")),
        path_str(&p("bk")),
    ]);
    check(&[], &p("dk"));
    delta(&[
        "--apply",
        path_str(&a),
        "-o",
        path_str(&p("bk2")),
        path_str(&p("dk")),
    ]);
    assert!(same_bytes(&p("bk"), &p("bk2")));
    check(&["--key", path_str(&key)], &p("bk2"));
    delta(&[
        "--base",
        path_str(&a),
        "--key",
        path_str(&key),
        "-o",
        path_str(&p("dk2")),
        path_str(&p("bk")),
    ]);
    check(&["--key", path_str(&key)], &p("dk2"));
    delta(&[
        "--apply",
        path_str(&a),
        "-o",
        path_str(&p("bk3")),
        path_str(&p("dk2")),
    ]);
    assert!(same_bytes(&p("bk"), &p("bk3")));

    // Compressed image and base: still a small delta, rebuilt compressed.
    filter("cr-zstd", &[], &a, &p("az"));
    filter("cr-zstd", &[], &b, &p("bz"));
    delta(&[
        "--base",
        path_str(&p("az")),
        "-o",
        path_str(&p("dz")),
        path_str(&p("bz")),
    ]);
    assert!(
        size(&p("dz")) * 4 < size(&p("bz")),
        "delta of a compressed image: {} bytes of {}",
        size(&p("dz")),
        size(&p("bz"))
    );
    delta(&[
        "--apply",
        path_str(&a),
        "-o",
        path_str(&p("bz2")),
        path_str(&p("dz")),
    ]);
    assert!(same_bytes(&p("bz"), &p("bz2")));
    // A compressed delta rebuilds the same.
    filter("cr-zstd", &[], &p("dz"), &p("dzz"));
    delta(&[
        "--apply",
        path_str(&p("az")),
        "-o",
        path_str(&p("bz3")),
        path_str(&p("dzz")),
    ]);
    assert!(same_bytes(&p("bz"), &p("bz3")));
}
