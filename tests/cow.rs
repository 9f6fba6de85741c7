//! Copy-on-write sharing kept across checkpoint and restore (issue 14): a
//! parent that filled 100 MiB and forked 8 children (one of which forked a
//! grandchild) gives an image of the shared pages once, and a restored
//! tree that shares them again (summed `Pss`); every child still sees its
//! own writes, and writes after the restore stay private. The same through
//! the filters, with `--no-pids`, `--pidns`, and without sharing (the
//! fallback); and a real pre-forking program (python3 multiprocessing).

mod common;

use std::path::Path;

use common::*;

const TAGS: [&str; 10] = [
    "parent", "c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "g",
];

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The `cowtree` workload: `mib` MiB, 8 children and a grandchild, each
/// counted twice.
fn cow_tree(mib: &str) -> Workload {
    let w = Workload::spawn(
        workload("cowtree"),
        &["-m", mib, "-c", "8", "-g", "-d", "50"],
    );
    for t in TAGS {
        w.expect_count(Some(t), 2);
    }
    w
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The restored processes named `name` (cr-restart's descendants).
fn restored_named(r: &Restore, name: &str) -> Vec<i32> {
    tree_of(r.restored.pid())
        .into_iter()
        .filter(|&p| comm(p) == name)
        .collect()
}

/// Summed `Pss` of `pids`, in KiB.
fn pss_kib(pids: &[i32]) -> u64 {
    pids.iter()
        .map(|p| {
            let s = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).unwrap_or_default();
            s.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no Pss for pid {p}"))
        })
        .sum()
}

/// Every tag counts `more` past its last count in `orig`, continuing it.
fn continues(orig: &Workload, r: &Restore, more: u64) {
    for t in TAGS {
        let last = orig.last_count(Some(t)).unwrap_or(0);
        r.restored.expect_count(Some(t), last + more);
        assert_continues(orig, &r.restored, Some(t), Original::Killed);
    }
    r.restored.assert_no_fail();
}

/// A child of the tree's root and the grandchild write after the restore;
/// every process keeps checking what it sees (its own writes, the
/// pattern elsewhere), so a write that showed in another process fails.
fn writes_stay_private(r: &Restore) {
    let mut root = r.restored.pid();
    while comm(root) != "cowtree" {
        // cr-restart, then cr-init under --pidns.
        root = children_of(root)
            .into_iter()
            .next()
            .expect("the restored root");
    }
    let pids = tree_of(root);
    let child = children_of(root).into_iter().min().expect("a child");
    let grandchild = pids
        .iter()
        .copied()
        .find(|&p| ppid_of(p).is_some_and(|pp| pp != root && pids.contains(&pp)))
        .expect("the grandchild");
    let before: Vec<u64> = TAGS
        .iter()
        .map(|t| r.restored.last_count(Some(t)).unwrap_or(0))
        .collect();
    assert!(signal(child, libc::SIGUSR1));
    assert!(signal(grandchild, libc::SIGUSR1));
    for (t, b) in TAGS.iter().zip(before) {
        r.restored.expect_count(Some(t), b + 4);
    }
    r.restored.assert_no_fail();
}

#[test]
fn hundred_mib_tree_of_nine_stays_shared() {
    let dir = tempdir();
    let img = dir.path().join("tree.img");
    let mut orig = cow_tree("100");
    ckpt_to_file(&["--kill"], orig.pid(), &img);
    orig.expect_exit();
    assert!(wait_pid_gone(orig.pid(), TIMEOUT));
    let size = std::fs::metadata(&img).expect("image").len();
    assert!(
        size < 120 << 20,
        "image of 100 MiB shared by 10 processes is {} MiB",
        size >> 20
    );

    let info = run("cr-info", &[path_str(&img)], None);
    info.assert_success();
    let text = String::from_utf8_lossy(&info.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("shared:"))
        .unwrap_or_else(|| panic!("no shared line:\n{text}"));
    assert!(
        line.contains("MiB") && line.contains("9 processes"),
        "{line}"
    );

    let r = Pipeline::new().input(&img).restore(&[]);
    continues(&orig, &r, 3);
    let pids = restored_named(&r, "cowtree");
    assert_eq!(pids.len(), 10, "restored: {pids:?}");
    let pss = pss_kib(&pids);
    assert!(
        pss < 130 << 10,
        "restored tree uses {} MiB (summed Pss)",
        pss >> 10
    );
    writes_stay_private(&r);
}

#[test]
fn through_filters_and_without_original_pids() {
    let mut orig = cow_tree("8");
    let mut r = checkpoint_restore(
        &mut orig,
        &["--kill"],
        &[("cr-sum", &[]), ("cr-zstd", &["-T2"]), ("cr-zstd", &["-d"])],
        &["--no-pids"],
    );
    orig.wait_eof(TIMEOUT);
    r.expect_pipeline_ok();
    continues(&orig, &r, 3);
    writes_stay_private(&r);
    let pids = restored_named(&r, "cowtree");
    assert!(pss_kib(&pids) < (2 * 8) << 10, "not shared");
}

#[test]
fn in_a_new_pid_namespace() {
    let mut orig = cow_tree("8");
    let mut r = checkpoint_restore(&mut orig, &["--kill"], &[], &["--pidns"]);
    orig.wait_eof(TIMEOUT);
    r.expect_pipeline_ok();
    continues(&orig, &r, 3);
    writes_stay_private(&r);
}

#[test]
fn split_and_joined_image_restores_shared() {
    let dir = tempdir();
    let img = dir.path().join("tree.img");
    let mut orig = cow_tree("8");
    ckpt_to_file(&["--kill"], orig.pid(), &img);
    orig.expect_exit();
    assert!(wait_pid_gone(orig.pid(), TIMEOUT));
    let prefix = dir.path().join("part");
    run(
        "cr-split",
        &["-b", "1M", path_str(&prefix), path_str(&img)],
        None,
    )
    .assert_success();
    let mut parts: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("part"))
        })
        .map(|p| path_str(&p).to_string())
        .collect();
    parts.sort();
    assert!(parts.len() > 2, "{parts:?}");
    let mut args = vec!["--join"];
    args.extend(parts.iter().map(String::as_str));
    let r = Pipeline::new().stage("cr-split", &args).restore(&[]);
    continues(&orig, &r, 3);
    writes_stay_private(&r);
}

#[test]
fn without_sharing_every_process_gets_its_own_copy() {
    // As when the inherited ranges collide with the restorer's mappings.
    let mut orig = cow_tree("8");
    let pid = orig.pid().to_string();
    let mut cmd = std::process::Command::new(bin("cr-restart"));
    cmd.env("CRTOOLS_NO_COW", "1");
    let r = Pipeline::new()
        .stage("ckpt", &["--kill", &pid])
        .restore_cmd(cmd);
    orig.expect_exit();
    continues(&orig, &r, 3);
    writes_stay_private(&r);
    let pids = restored_named(&r, "cowtree");
    assert!(pss_kib(&pids) > (5 * 8) << 10, "shared though told not to");
}

#[test]
fn python_multiprocessing_pool_stays_shared() {
    let dir = tempdir();
    let img = dir.path().join("pool.img");
    let mut orig = Workload::spawn("python3", &[path_str(&script("cowpool.py")), "48"]);
    orig.expect_count(None, 20);
    ckpt_to_file(&["--kill"], orig.pid(), &img);
    orig.expect_exit();
    assert!(wait_pid_gone(orig.pid(), TIMEOUT));
    let size = std::fs::metadata(&img).expect("image").len();
    // 48 MiB of data in 5 processes, once, plus the interpreters.
    assert!(size < 100 << 20, "image is {} MiB", size >> 20);
    let r = Pipeline::new().input(&img).restore(&[]);
    let last = orig.last_count(None).unwrap_or(0);
    r.restored.expect_count(None, last + 40);
    r.restored.assert_no_fail();
    let pids: Vec<i32> = tree_of(r.restored.pid())
        .into_iter()
        .filter(|&p| comm(p).starts_with("python"))
        .collect();
    assert_eq!(pids.len(), 5, "{pids:?}");
    let pss = pss_kib(&pids);
    assert!(pss < 100 << 10, "restored pool uses {} MiB", pss >> 10);
}
