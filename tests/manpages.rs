//! The man pages cannot drift from the programs: every option a program's `--help`
//! lists is documented in the OPTIONS section of its page in `man/`, and every option
//! that section documents is one the program accepts.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::process::Command;

const PROGRAMS: [&str; 8] = [
    "ckpt",
    "cr-restart",
    "cr-zstd",
    "cr-sum",
    "cr-split",
    "cr-info",
    "cr-migrate",
    "cr-delta",
];

/// The options (`--long` and `-s`) one line of text names.
fn options_in(line: &str) -> BTreeSet<String> {
    let line = line.replace("\\-", "-");
    let mut out = BTreeSet::new();
    let bytes = line.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let at_start = i == 0 || !word(bytes[i - 1]);
        if at_start && bytes[i] == b'-' {
            let mut j = i;
            while j < bytes.len() && word(bytes[j]) {
                j += 1;
            }
            let opt = &line[i..j];
            let long =
                opt.len() > 2 && opt.starts_with("--") && opt.as_bytes()[2].is_ascii_alphabetic();
            let short = opt.len() == 2 && opt.as_bytes()[1].is_ascii_alphanumeric();
            if long || short {
                out.insert(opt.to_string());
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// The options documented in the OPTIONS section of a man page: those named in the
/// tag line of each `.TP` paragraph (and each `.TQ` extra tag).
fn man_options(page: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_options = false;
    let mut tag_next = false;
    for line in page.lines() {
        if let Some(section) = line.strip_prefix(".SH ") {
            in_options = section.trim() == "OPTIONS";
            continue;
        }
        if !in_options {
            continue;
        }
        if line.starts_with(".TP") || line.starts_with(".TQ") {
            tag_next = true;
        } else if tag_next {
            out.extend(options_in(line));
            tag_next = false;
        }
    }
    out
}

/// The options a program's `--help` lists (the lines that start with an option).
fn help_options(program: &str) -> BTreeSet<String> {
    let out = Command::new(bin(program))
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success(), "{program} --help failed: {out:?}");
    let text = String::from_utf8(out.stdout).expect("--help is UTF-8");
    text.lines()
        .filter(|l| l.trim_start().starts_with('-'))
        .flat_map(|l| {
            // Only the option column: up to the first run of two spaces after the flags.
            let l = l.trim_start();
            let column = l.split("  ").next().unwrap_or(l);
            options_in(column)
        })
        .collect()
}

#[test]
fn option_extraction() {
    assert_eq!(
        options_in(r#".BR \-l ", " \-\-level " \fILEVEL\fR""#),
        ["--level", "-l"].map(String::from).into()
    );
    assert_eq!(
        options_in("  -T, --threads <THREADS>  Worker threads; 0 means one per core"),
        ["--threads", "-T"].map(String::from).into()
    );
    assert!(options_in("a cr-image-5 thing, 2-3 pages, -- end").is_empty());
}

#[test]
fn every_man_page_lists_exactly_the_programs_options() {
    let mut drift = Vec::new();
    for program in PROGRAMS {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("man")
            .join(format!("{program}.1"));
        let page = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let documented = man_options(&page);
        let accepted = help_options(program);
        assert!(
            accepted.contains("--help"),
            "{program}: no options found in --help"
        );
        assert!(!documented.is_empty(), "{program}.1: no OPTIONS found");
        for o in accepted.difference(&documented) {
            drift.push(format!(
                "{program}: {o} is in --help but not in man/{program}.1"
            ));
        }
        for o in documented.difference(&accepted) {
            drift.push(format!(
                "{program}: {o} is in man/{program}.1 but not in --help"
            ));
        }
    }
    assert!(drift.is_empty(), "man pages drifted:\n{}", drift.join("\n"));
}

/// Every program prints its completion script for bash, zsh and fish (what the package
/// and scripts/install.sh ship), naming the program and its options; an unknown shell
/// is a usage error.
#[test]
fn every_program_prints_its_completions() {
    for program in PROGRAMS {
        let options = help_options(program);
        let long = options
            .iter()
            .find(|o| o.starts_with("--") && *o != "--help" && *o != "--version")
            .unwrap_or_else(|| panic!("{program}: no long option of its own"));
        for shell in ["bash", "zsh", "fish"] {
            let out = Command::new(bin(program))
                .args(["--completions", shell])
                .output()
                .expect("run --completions");
            assert!(
                out.status.success(),
                "{program} --completions {shell}: {out:?}"
            );
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains(program) && text.contains(long.trim_start_matches('-')),
                "{program} --completions {shell} lacks {program} or {long}:\n{text}"
            );
        }
        let out = Command::new(bin(program))
            .args(["--completions", "nosuchshell"])
            .output()
            .expect("run --completions");
        assert_eq!(out.status.code(), Some(2), "{program}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with(&format!("{program}: ")), "{program}: {err}");
        assert_eq!(err.lines().count(), 1, "{program}: {err}");
    }
}
