//! `cr-info` on images of real processes: local dates, the root's parent,
//! descriptors that lead outside the image; and what every reader says
//! about a `cr-split` part.

mod common;

use common::*;

#[test]
fn info_names_outside_parents_and_external_descriptors() {
    let dir = tempdir();
    let img = dir.path().join("a.img");
    // stdout and stderr are pipes to the test: outside the image.
    let mut w = Workload::spawn(workload("onetask"), &["-d", "20"]);
    w.expect_count(None, 2);
    ckpt_to_file(&[], w.pid(), &img);
    w.kill();
    let text = run("cr-info", &[img.to_str().unwrap()], None);
    text.assert_success();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(!text.contains("epoch"), "{text}");
    let created = text.lines().find(|l| l.starts_with("written by:")).unwrap();
    // e.g. "created 2026-12-01 04:53:47 +0000"
    let date = created.split("created ").nth(1).unwrap();
    let date = date.split(", root pid").next().unwrap();
    assert!(
        date.as_bytes()[4] == b'-' && date.as_bytes()[13] == b':',
        "{created}"
    );
    let root = text
        .lines()
        .find(|l| l.trim_start().starts_with(&w.pid().to_string()))
        .unwrap();
    assert!(root.contains("(outside)"), "{root}");
    for (fd, what) in [(1, "stdout"), (2, "stderr")] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{fd} external")))
            .unwrap_or_else(|| panic!("no external fd {fd}: {text}"));
        assert!(line.contains("a pipe outside the image"), "{line}");
        assert!(
            line.contains(&format!("becomes cr-restart's {what}")),
            "{line}"
        );
        assert!(line.contains("/dev/null with --detach"), "{line}");
    }

    let json = run("cr-info", &["--json", img.to_str().unwrap()], None);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let p = &v["processes"][0];
    assert_eq!(p["pid"], w.pid());
    assert_eq!(p["parent_in_image"], false);
    assert!(v["created"].as_u64().unwrap() > 0);
    assert_eq!(v["created_local"].as_str().unwrap(), date);
    let fds = p["fds"].as_array().unwrap();
    let fd1 = fds.iter().find(|f| f["fd"] == 1).unwrap();
    assert_eq!(fd1["type"], "external");
    assert_eq!(fd1["external"]["kind"], "pipe");
    assert_eq!(fd1["external"]["restart_fd"], 1);
    assert_eq!(fd1["external"]["becomes"], "stdout");
    assert_eq!(fd1["external"]["detached"], "/dev/null");
    assert!(fd1["path"].as_str().unwrap().starts_with("pipe:["), "{fd1}");
}

#[test]
fn readers_given_a_split_part_say_to_join_it() {
    let dir = tempdir();
    let img = dir.path().join("a.img");
    let mut w = Workload::spawn(workload("onetask"), &["-d", "20"]);
    w.expect_count(None, 1);
    ckpt_to_file(&[], w.pid(), &img);
    w.kill();
    let prefix = dir.path().join("p");
    run(
        "cr-split",
        &["-b", "64K", prefix.to_str().unwrap(), img.to_str().unwrap()],
        None,
    )
    .assert_success();
    let part = dir.path().join("p.000");
    let part = part.to_str().unwrap();
    for (name, args) in [
        ("cr-info", vec![part]),
        ("cr-zstd", vec![part]),
        ("cr-sum", vec!["--check", part]),
        ("cr-restart", vec!["-i", part]),
    ] {
        let out = run(name, &args, None);
        assert_eq!(out.code(), Some(1), "{name}: {}", out.stderr);
        assert!(
            out.stderr.contains("cr-split --join"),
            "{name}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("bad magic"), "{name}: {}", out.stderr);
    }
}
