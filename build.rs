//! Compiles the C test workloads in `tests/workloads/*.c` with the system C
//! compiler into `$OUT_DIR/workloads/NAME`, and tells the tests where they are
//! through the `CR_WORKLOADS` environment variable (read with `env!`).
//!
//! The compiler is `$CC` if set, otherwise `cc`. Warnings are shown as cargo
//! warnings; an error fails the build.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let src_dir = manifest.join("tests/workloads");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("workloads");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=tests/workloads");
    println!("cargo:rerun-if-env-changed=CC");
    println!("cargo:rustc-env=CR_WORKLOADS={}", out_dir.display());
    fs::create_dir_all(&out_dir).expect("create the workloads output directory");

    let mut sources: Vec<PathBuf> = fs::read_dir(&src_dir)
        .expect("read tests/workloads")
        .map(|e| e.expect("read tests/workloads").path())
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .collect();
    sources.sort();

    let cc = env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut running: Vec<(PathBuf, Child)> = Vec::new();
    let mut failed = Vec::new();
    for src in &sources {
        if running.len() >= jobs {
            let (src, child) = running.remove(0);
            finish(&src, child.wait_with_output(), &mut failed);
        }
        running.push((src.clone(), compile(&cc, src, &out_dir)));
    }
    for (src, child) in running {
        finish(&src, child.wait_with_output(), &mut failed);
    }
    if !failed.is_empty() {
        panic!("failed to compile workloads: {}", failed.join(", "));
    }
}

fn compile(cc: &str, src: &Path, out_dir: &Path) -> Child {
    let name = src.file_stem().expect("workload file name");
    Command::new(cc)
        .args(["-O2", "-g", "-Wall", "-Wextra", "-o"])
        .arg(out_dir.join(name))
        .arg(src)
        .args(["-lpthread", "-lrt", "-lutil"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}`: {e}"))
}

fn finish(src: &Path, out: std::io::Result<Output>, failed: &mut Vec<String>) {
    let out = out.expect("wait for the C compiler");
    let diagnostics = String::from_utf8_lossy(&out.stderr);
    for line in diagnostics.lines() {
        println!("cargo:warning={line}");
    }
    if !out.status.success() {
        failed.push(src.display().to_string());
    }
}
