//! The filter binaries as a user runs them: chains that must round-trip
//! byte for byte, damage that every tool must refuse, and command-line
//! manners (broken pipes, terminals, exit codes).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crtools::image::WriteOptions;
use crtools::image::synth::{self, Fill, Spec};
use proptest::prelude::*;

const ZSTD: &str = env!("CARGO_BIN_EXE_cr-zstd");
const SUM: &str = env!("CARGO_BIN_EXE_cr-sum");
const SPLIT: &str = env!("CARGO_BIN_EXE_cr-split");
const INFO: &str = env!("CARGO_BIN_EXE_cr-info");

/// Runs a tool with `input` on stdin and returns what it did.
fn run(bin: &str, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{bin}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // A tool may stop reading early (bad input): ignore EPIPE here.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert_no_panic(bin, &out);
    out
}

fn assert_no_panic(bin: &str, out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{bin} panicked: {err}");
    assert!(out.status.code().is_some(), "{bin} died of a signal: {err}");
}

/// Runs a tool that must succeed and returns its stdout.
fn ok(bin: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let out = run(bin, args, input);
    assert!(
        out.status.success(),
        "{bin} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs a tool that must fail with status 1 and exactly one line on
/// stderr; returns that line.
fn fails(bin: &str, args: &[&str], input: &[u8]) -> String {
    let out = run(bin, args, input);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{bin} {args:?} should fail with 1; stderr: {err}"
    );
    assert_eq!(err.lines().count(), 1, "{bin}: one line expected: {err:?}");
    let name = Path::new(bin).file_name().unwrap().to_str().unwrap();
    assert!(err.starts_with(&format!("{name}: ")), "{err}");
    err
}

fn image(spec: &Spec) -> Vec<u8> {
    synth::generate(spec)
}

fn summed(spec: &Spec) -> Vec<u8> {
    synth::write(Vec::new(), spec, WriteOptions { digest: true }).unwrap()
}

fn split_join(stream: &[u8], size: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("part");
    ok(SPLIT, &["-b", size, prefix.to_str().unwrap()], stream);
    let parts = parts_of(&prefix);
    assert!(!parts.is_empty());
    let args: Vec<&str> = std::iter::once("-j")
        .chain(parts.iter().map(|p| p.to_str().unwrap()))
        .collect();
    ok(SPLIT, &args, &[])
}

fn parts_of(prefix: &Path) -> Vec<PathBuf> {
    let dir = prefix.parent().unwrap();
    let name = prefix.file_name().unwrap().to_str().unwrap();
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&format!("{name}."))
        })
        .collect();
    v.sort();
    v
}

fn arb_spec() -> impl Strategy<Value = Spec> {
    (
        any::<u64>(),
        1u32..4,
        0u64..(3 << 20),
        prop_oneof![Just(Fill::Mixed), Just(Fill::Random), Just(Fill::Zero)],
        any::<bool>(),
    )
        .prop_map(|(seed, processes, data, fill, extras)| Spec {
            seed,
            processes,
            threads: 1 + (seed % 3) as u32,
            mappings: 1 + (seed % 9) as u32,
            files: (seed % 4) as u32,
            data,
            fill,
            extras,
            unknown: extras,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn filter_chains_round_trip(spec in arb_spec(), level in 1i32..6) {
        let plain = image(&spec);
        let level = level.to_string();
        let z = ok(ZSTD, &["-l", &level], &plain);
        prop_assert_eq!(&ok(ZSTD, &["-d"], &z), &plain);
        // Thread count never changes the bytes.
        prop_assert_eq!(&ok(ZSTD, &["-l", &level, "-T4"], &plain), &z);
        // Compressing twice, or decompressing a plain stream, changes nothing.
        prop_assert_eq!(&ok(ZSTD, &["-l", &level], &z), &z);
        prop_assert_eq!(&ok(ZSTD, &["-d"], &plain), &plain);

        let s = ok(SUM, &["-T1"], &plain);
        prop_assert_eq!(&ok(SUM, &["-T3"], &plain), &s);
        prop_assert_eq!(&s, &summed(&spec));
        let sz = ok(ZSTD, &["-l", &level, "-T2"], &s);
        ok(SUM, &["--check"], &sz);
        let joined = split_join(&sz, "300K");
        prop_assert_eq!(&joined, &sz);
        prop_assert_eq!(&ok(ZSTD, &["-d"], &joined), &s);
        // Summing a compressed stream equals compressing a summed one.
        prop_assert_eq!(&ok(SUM, &[], &z), &sz);
        // cr-info reads every form.
        for form in [&plain, &z, &s, &sz] {
            ok(INFO, &[], form);
        }
    }

    #[test]
    fn flipped_byte_is_caught(seed in any::<u64>(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let spec = Spec::small(seed, 64 << 10);
        let s = ok(ZSTD, &[], &summed(&spec));
        let mut bad = s.clone();
        let i = pos.index(bad.len());
        bad[i] ^= 1 << bit;
        fails(SUM, &["--check"], &bad);
        fails(INFO, &[], &bad);
        fails(ZSTD, &["-d"], &bad);
    }

    #[test]
    fn truncated_stream_is_refused_by_every_tool(seed in any::<u64>(), pos in any::<prop::sample::Index>()) {
        let s = summed(&Spec::small(seed, 40 << 10));
        let cut = &s[..pos.index(s.len())];
        for (bin, args) in [
            (ZSTD, &[][..]),
            (ZSTD, &["-d"][..]),
            (SUM, &[][..]),
            (SUM, &["--check"][..]),
            (INFO, &[][..]),
            (INFO, &["--json"][..]),
        ] {
            fails(bin, args, cut);
        }
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("p");
        fails(SPLIT, &["-b", "8K", prefix.to_str().unwrap()], cut);
    }

    #[test]
    fn random_bytes_fail_cleanly(mut junk in prop::collection::vec(any::<u8>(), 0..4096), preamble in any::<bool>()) {
        if preamble {
            junk.splice(0..0, crtools::image::stream::PREAMBLE);
        }
        for (bin, args) in [(ZSTD, &[][..]), (ZSTD, &["-d"][..]), (SUM, &[][..]), (SUM, &["-c"][..]), (INFO, &[][..])] {
            fails(bin, args, &junk);
        }
    }

    #[test]
    fn hostile_length_fields_fail_cleanly(seed in any::<u64>(), which in 0usize..8, field in prop_oneof![Just(8usize), Just(12)], len in any::<u32>()) {
        let mut s = image(&Spec::small(seed, 16 << 10));
        // Offsets of the first few record heads.
        let mut at = 8;
        let mut heads = Vec::new();
        while at < s.len() && heads.len() < 8 {
            heads.push(at);
            let stored = u32::from_le_bytes(s[at + 8..at + 12].try_into().unwrap()) as usize;
            at += 24 + stored;
        }
        let h = heads[which % heads.len()];
        let old = u32::from_le_bytes(s[h + field..h + field + 4].try_into().unwrap());
        prop_assume!(old != len);
        s[h + field..h + field + 4].copy_from_slice(&len.to_le_bytes());
        for (bin, args) in [(ZSTD, &[][..]), (SUM, &[][..]), (INFO, &[][..])] {
            fails(bin, args, &s);
        }
    }
}

#[test]
fn check_names_the_bad_record_and_refuses_unsummed_streams() {
    let plain = image(&Spec::small(1, 100_000));
    let err = fails(SUM, &["--check"], &plain);
    assert!(err.contains("no digests"), "{err}");
    let s = ok(SUM, &[], &plain);
    let out = String::from_utf8(ok(SUM, &["--check"], &s)).unwrap();
    assert!(out.starts_with("OK: "), "{out}");
    // Damage a payload byte of the last PAGES record, CRC fixed so that
    // only the digest can tell.
    let mut bad = s.clone();
    let mut at = 8;
    let mut last_pages = (0, 0);
    while at < bad.len() {
        let kind = u16::from_le_bytes(bad[at..at + 2].try_into().unwrap());
        let stored = u32::from_le_bytes(bad[at + 8..at + 12].try_into().unwrap()) as usize;
        let seq = u32::from_le_bytes(bad[at + 4..at + 8].try_into().unwrap());
        if kind == 0x20 {
            last_pages = (at, seq);
        }
        at += 24 + stored + 32;
    }
    let (h, seq) = last_pages;
    let stored = u32::from_le_bytes(bad[h + 8..h + 12].try_into().unwrap()) as usize;
    bad[h + 24 + stored / 2] ^= 0x10;
    bad[h + 20..h + 24].fill(0);
    let crc = crc32c::crc32c(&bad[h..h + 24 + stored + 32]);
    bad[h + 20..h + 24].copy_from_slice(&crc.to_le_bytes());
    let err = fails(SUM, &["--check"], &bad);
    assert!(
        err.contains(&format!(
            "record {seq} (pages (0x0020)) does not match its SHA-256 digest"
        )),
        "{err}"
    );
    // cr-info decodes only metadata, but the stream digest still holds:
    // the damage is in a payload it does not hash, so it passes; cr-sum
    // --check is the tool for payloads.
    ok(INFO, &[], &bad);
}

#[test]
fn unknown_kinds_pass_through_and_are_counted() {
    let spec = Spec {
        unknown: true,
        ..Spec::small(2, 50_000)
    };
    let plain = image(&spec);
    let through = ok(ZSTD, &["-d"], &ok(SUM, &[], &ok(ZSTD, &["-T2"], &plain)));
    let json: serde_json::Value = serde_json::from_slice(&ok(INFO, &["--json"], &through)).unwrap();
    assert_eq!(json["unknown_records"], 1);
    assert_eq!(json["kinds"]["unknown-0x8001"]["records"], 1);
    assert_eq!(json["checksums"]["stream_digest"], true);
    assert_eq!(json["processes"].as_array().unwrap().len(), 2);
    assert_eq!(json["processes"][0]["ppid"], 0);
    assert_eq!(json["format"], "1.0");
    let text = String::from_utf8(ok(INFO, &[], &through)).unwrap();
    assert!(text.contains("synth-1"), "{text}");
}

#[test]
fn compression_state_is_reported() {
    let plain = image(&Spec::small(5, 2 << 20));
    let z = ok(ZSTD, &["-l", "1"], &plain);
    assert!(z.len() < plain.len());
    let json: serde_json::Value = serde_json::from_slice(&ok(INFO, &["--json"], &z)).unwrap();
    let c = &json["compression"];
    assert!(c["compressed_records"].as_u64().unwrap() > 0);
    assert!(c["ratio"].as_f64().unwrap() > 1.0);
    assert_eq!(json["raw_bytes"].as_u64().unwrap(), plain.len() as u64);
    assert_eq!(json["stored_bytes"].as_u64().unwrap(), z.len() as u64);
    // Random pages do not shrink and stay plain.
    let random = image(&Spec {
        fill: Fill::Random,
        extras: false,
        ..Spec::small(6, 1 << 20)
    });
    let zr = ok(ZSTD, &[], &random);
    let json: serde_json::Value = serde_json::from_slice(&ok(INFO, &["--json"], &zr)).unwrap();
    assert_eq!(json["kinds"]["pages"]["compressed"], 0);
}

#[test]
fn split_respects_the_size_and_refuses_bad_part_sets() {
    let s = summed(&Spec::small(3, 3 << 20));
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("img");
    let p = prefix.to_str().unwrap();
    ok(SPLIT, &["-b", "600K", p], &s);
    let parts = parts_of(&prefix);
    assert!(parts.len() >= 5, "{parts:?}");
    for part in &parts {
        assert!(std::fs::metadata(part).unwrap().len() <= 600 << 10);
    }
    let names: Vec<&str> = parts.iter().map(|p| p.to_str().unwrap()).collect();
    let join = |list: &[&str]| {
        let mut args = vec!["--join"];
        args.extend_from_slice(list);
        run(SPLIT, &args, &[])
    };
    let out = join(&names);
    assert!(out.status.success());
    assert_eq!(out.stdout, s);

    let expect_err = |list: &[&str], part: &str, what: &str| {
        let mut args = vec!["-j"];
        args.extend_from_slice(list);
        let err = fails(SPLIT, &args, &[]);
        assert!(err.contains(part) && err.contains(what), "{err}");
        // Nothing is written for a bad set of parts found up front.
        assert!(run(SPLIT, &args, &[]).stdout.is_empty());
    };
    let n = names.len();
    expect_err(&[names[0], names[2]], names[2], "missing");
    expect_err(&names[..n - 1], names[n - 2], "missing");
    expect_err(&[names[0], names[1], names[1]], names[1], "repeats");
    expect_err(&[names[1], names[0]], names[1], "first part is missing");
    let mut swapped = names.clone();
    swapped.swap(1, 2);
    expect_err(&swapped, names[2], "expected");

    // A part of another stream.
    let other = summed(&Spec::small(4, 3 << 20));
    let oprefix = dir.path().join("other");
    ok(SPLIT, &["-b", "600K", oprefix.to_str().unwrap()], &other);
    let oparts = parts_of(&oprefix);
    let mut foreign = names.clone();
    foreign[1] = oparts[1].to_str().unwrap();
    expect_err(&foreign, foreign[1], "another stream");

    // A truncated part.
    let cut = dir.path().join("cut.001");
    let bytes = std::fs::read(&parts[1]).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let mut truncated = names.clone();
    truncated[1] = cut.to_str().unwrap();
    expect_err(&truncated, truncated[1], "truncated");

    // A damaged byte inside a part's data: found while streaming, named.
    let dam = dir.path().join("dam.002");
    let mut bytes = std::fs::read(&parts[2]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&dam, &bytes).unwrap();
    let mut damaged = names.clone();
    damaged[2] = dam.to_str().unwrap();
    let mut args = vec!["-j"];
    args.extend_from_slice(&damaged);
    let err = fails(SPLIT, &args, &[]);
    assert!(err.contains("dam.002"), "{err}");
}

#[test]
fn split_size_is_a_hard_maximum_even_inside_records() {
    // Random pages: 1 MiB records that do not shrink.
    let s = image(&Spec {
        fill: Fill::Random,
        ..Spec::small(8, 2 << 20)
    });
    for (size, bytes) in [("64K", 64u64 << 10), ("1M", 1 << 20), ("3000", 3000)] {
        let input = if bytes < 4096 {
            image(&Spec::small(9, 0))
        } else {
            s.clone()
        };
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("x");
        ok(SPLIT, &["-b", size, prefix.to_str().unwrap()], &input);
        let parts = parts_of(&prefix);
        let lens: Vec<u64> = parts
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .collect();
        let (last, full) = lens.split_last().unwrap();
        assert!(full.iter().all(|&l| l == bytes), "{size}: {lens:?}");
        assert!(*last <= bytes && *last > 52, "{size}: {lens:?}");
        assert_eq!(split_join(&input, size), input, "{size}");
    }
}

#[test]
fn splitting_again_with_the_same_prefix_leaves_no_stale_parts() {
    let s = summed(&Spec::small(3, 1 << 20));
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("img");
    let p = prefix.to_str().unwrap();
    ok(SPLIT, &["-b", "64K", p], &s);
    let many = parts_of(&prefix);
    // Kept: a file with a part's name that is not a part.
    let other = dir.path().join("img.999");
    std::fs::write(&other, b"not a part").unwrap();
    ok(SPLIT, &["-b", "256K", p], &s);
    std::fs::remove_file(&other).unwrap();
    let few = parts_of(&prefix);
    assert!(few.len() < many.len(), "{few:?}");
    assert_eq!(few[..], many[..few.len()]);
    assert_eq!(split_join(&s, "256K"), s);
    let mut args = vec!["-j".to_string()];
    args.extend(few.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
    assert_eq!(ok(SPLIT, &args, &[]), s);

    // A part left from another split of the same image: the likely cause
    // is named.
    let stale = dir.path().join("img.old");
    ok(SPLIT, &["-b", "64K", stale.to_str().unwrap()], &s);
    let olds = parts_of(&stale);
    let mut args: Vec<String> = vec!["-j".into()];
    args.extend(few.iter().map(|p| p.display().to_string()));
    args.push(olds[few.len()].display().to_string());
    let args: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
    let err = fails(SPLIT, &args, &[]);
    assert!(err.contains("left over from another split"), "{err}");
    // One of another image.
    let t = summed(&Spec::small(4, 1 << 20));
    let foreign = dir.path().join("other");
    ok(SPLIT, &["-b", "256K", foreign.to_str().unwrap()], &t);
    let mut args: Vec<String> = vec!["-j".into()];
    args.extend(few.iter().map(|p| p.display().to_string()));
    args[2] = parts_of(&foreign)[1].display().to_string();
    let args: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
    let err = fails(SPLIT, &args, &[]);
    assert!(
        err.contains("another stream") && err.contains("left over from another split"),
        "{err}"
    );
}

/// Starts `bin` reading `input` from a file, reads a few bytes of its
/// output, then closes the pipe: the tool must exit 1 without a word.
fn closed_pipe(bin: &str, args: &[&str], input: &Path) {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(std::fs::File::open(input).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut ten = [0u8; 10];
    out.read_exact(&mut ten).unwrap();
    drop(out);
    let res = child.wait_with_output().unwrap();
    assert_no_panic(bin, &res);
    assert_eq!(res.status.code(), Some(1), "{bin} {args:?}");
    assert!(
        res.stderr.is_empty(),
        "{bin}: {}",
        String::from_utf8_lossy(&res.stderr)
    );
}

#[test]
fn closed_output_pipe_is_a_quiet_failure() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("big.img");
    std::fs::write(
        &img,
        image(&Spec {
            fill: Fill::Random,
            ..Spec::small(9, 24 << 20)
        }),
    )
    .unwrap();
    closed_pipe(ZSTD, &[], &img);
    closed_pipe(ZSTD, &["-T2"], &img);
    closed_pipe(ZSTD, &["-d"], &img);
    closed_pipe(SUM, &[], &img);
    let prefix = dir.path().join("p");
    ok(
        SPLIT,
        &["-b", "4M", prefix.to_str().unwrap(), img.to_str().unwrap()],
        &[],
    );
    let mut args = vec!["-j".to_string()];
    args.extend(parts_of(&prefix).iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    closed_pipe(SPLIT, &args, &img);
}

#[test]
fn terminals_are_refused_unless_forced() {
    use nix::pty::openpty;
    let pty = openpty(None, None).unwrap();
    let tty = || std::fs::File::from(pty.slave.try_clone().unwrap());
    let plain = image(&Spec::small(1, 4096));
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.img");
    std::fs::write(&img, &plain).unwrap();
    // Keep the master drained so forced writes cannot block.
    let mut master = std::fs::File::from(pty.master);
    let drain = std::thread::spawn(move || {
        let mut sink = [0u8; 4096];
        while matches!(master.read(&mut sink), Ok(n) if n > 0) {}
    });

    for (bin, args) in [(ZSTD, vec![]), (SUM, vec![]), (ZSTD, vec!["-d"])] {
        let out = Command::new(bin)
            .args(&args)
            .stdin(std::fs::File::open(&img).unwrap())
            .stdout(tty())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let name = Path::new(bin).file_name().unwrap().to_str().unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("{name}: refusing to write an image to a terminal (use -f to force)\n")
        );
    }
    for (bin, args) in [(ZSTD, vec![]), (INFO, vec![]), (SUM, vec!["--check"])] {
        let out = Command::new(bin)
            .args(&args)
            .stdin(tty())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("refusing to read an image from a terminal"),
            "{err}"
        );
    }
    let out = Command::new(ZSTD)
        .args(["-f", "-l", "1"])
        .stdin(std::fs::File::open(&img).unwrap())
        .stdout(tty())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(pty.slave);
    // The drain thread ends when the last slave descriptor closes (EIO).
    let _ = drain.join();
}

#[test]
fn usage_errors_exit_2_and_help_works() {
    for bin in [ZSTD, SUM, SPLIT, INFO] {
        let out = run(bin, &["--no-such-option"], &[]);
        assert_eq!(out.status.code(), Some(2), "{bin}");
        ok(bin, &["--help"], &[]);
        let v = String::from_utf8(ok(bin, &["-V"], &[])).unwrap();
        assert!(v.contains(env!("CARGO_PKG_VERSION")));
    }
    assert_eq!(run(SPLIT, &["-b", "12Q", "x"], &[]).status.code(), Some(2));
    // Out-of-range values: usage errors that say the range, in plain words.
    let img = image(&Spec::small(1, 0));
    for (bin, args, range) in [
        (ZSTD, &["-l", "99"][..], "-131072 to 22"),
        (ZSTD, &["-l", "99999999999"][..], "-131072 to 22"),
        (ZSTD, &["-l", "x"][..], "-131072 to 22"),
        (SPLIT, &["-b", "0", "x"][..], "at least 53"),
        (SPLIT, &["-b", "52", "x"][..], "at least 53"),
        (ZSTD, &["-T", "4294967295"][..], "0 to 256"),
        (ZSTD, &["-T", "257"][..], "0 to 256"),
        (SUM, &["-T", "4294967296"][..], "0 to 256"),
    ] {
        let out = run(bin, args, &img);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bin} {args:?}: {err}");
        assert!(err.contains(range), "{bin} {args:?}: {err}");
        assert!(!err.contains("..="), "{err}");
    }
    // The largest thread count and one per core work, with the same bytes.
    let big = image(&Spec::small(2, 3 << 20));
    let z = ok(ZSTD, &["-T", "1"], &big);
    assert_eq!(ok(ZSTD, &["-T", "256"], &big), z);
    assert_eq!(ok(ZSTD, &["-T0"], &big), z);
    assert_eq!(ok(SUM, &["-T", "256"], &big), ok(SUM, &["-T0"], &big));
}

#[test]
fn a_summed_image_is_checked_then_keyed() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, b"a secret key of some length").unwrap();
    let key = key.to_str().unwrap();
    let plain = image(&Spec::small(21, 500_000));
    let s = ok(SUM, &[], &plain);
    for input in [s.clone(), ok(ZSTD, &[], &s)] {
        let keyed = ok(SUM, &["-k", key], &input);
        let report = String::from_utf8(ok(SUM, &["--check", "--key", key], &keyed)).unwrap();
        assert!(report.contains("keyed digests verified"), "{report}");
        // The same as keying the image that was never summed.
        assert_eq!(ok(ZSTD, &["-d"], &keyed), ok(SUM, &["-k", key], &plain));
    }
    // A plain digest that does not match is refused, not replaced.
    let mut bad = s.clone();
    let at = 8 + 24; // the header record's payload
    let stored = u32::from_le_bytes(s[16..20].try_into().unwrap()) as usize;
    let digest = at + stored;
    bad[digest] ^= 1;
    bad[28..32].fill(0);
    let crc = crc32c::crc32c(&bad[8..digest + 32]);
    bad[28..32].copy_from_slice(&crc.to_le_bytes());
    let err = fails(SUM, &["-k", key], &bad);
    assert!(err.contains("does not match"), "{err}");
}

#[test]
fn errors_name_the_file_without_rust_wording() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let err = fails(INFO, &[d], &[]);
    assert_eq!(err, format!("cr-info: {d}: Is a directory\n"));
    let none = dir.path().join("none");
    let err = fails(INFO, &[none.to_str().unwrap()], &[]);
    assert_eq!(
        err,
        format!("cr-info: {}: No such file or directory\n", none.display())
    );
    let out = dir.path().join("no/such/dir.img");
    let err = fails(
        ZSTD,
        &["-o", out.to_str().unwrap()],
        &image(&Spec::small(1, 0)),
    );
    assert!(err.contains("dir.img: No such file or directory"), "{err}");
    let err = fails(ZSTD, &["-o", d], &image(&Spec::small(1, 0)));
    assert!(err.contains("Is a directory"), "{err}");
    assert!(!err.contains("os error"), "{err}");
}

#[test]
fn output_file_and_input_file_arguments() {
    let plain = image(&Spec::small(1, 300_000));
    let dir = tempfile::tempdir().unwrap();
    let (a, z, s) = (
        dir.path().join("a.img"),
        dir.path().join("a.zst"),
        dir.path().join("a.sum"),
    );
    std::fs::write(&a, &plain).unwrap();
    ok(ZSTD, &["-o", z.to_str().unwrap(), a.to_str().unwrap()], &[]);
    ok(SUM, &["-o", s.to_str().unwrap(), z.to_str().unwrap()], &[]);
    ok(SUM, &["--check", s.to_str().unwrap()], &[]);
    assert_eq!(ok(ZSTD, &["-d", "-"], &std::fs::read(&z).unwrap()), plain);
    let err = fails(INFO, &[dir.path().join("none").to_str().unwrap()], &[]);
    assert!(err.contains("none"), "{err}");
}
