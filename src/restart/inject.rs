//! Failure injection, a testing aid: `CRTOOLS_FAIL_AT=<stage>` makes a
//! restore fail at that named stage, as a real error there would, so tests
//! can check that every stage's failure leaves nothing behind (restore is
//! all or nothing).
//!
//! Always compiled in and inert unless the variable is set: the variable is
//! read once, and each check is then a comparison of two strings. An unknown
//! stage name fails the restore at its first check, so a mistyped test
//! does not pass silently.
//!
//! The stages, in order ([`STAGES`]):
//!
//! | stage     | where the restore stands                                      |
//! | --------- | ------------------------------------------------------------- |
//! | `meta`    | metadata read and validated; nothing created                  |
//! | `ipc`     | SysV objects (and an IPC namespace) created; no process yet   |
//! | `tree`    | every process forked with its pid, stopped, descriptors placed |
//! | `half`    | half the address spaces rebuilt (two tracers: by the second)  |
//! | `map`     | address spaces cleared and every mapping made                 |
//! | `pages`   | the first bulk record written into a process (mid stream)     |
//! | `data`    | all bulk data in, the end record verified                     |
//! | `threads` | per-process state and threads restored                        |
//! | `release` | registers set, just before the tree is let go                 |
//!
//! Two stages are `ckpt`'s: `remote`, a process's batch page injected and
//! its state not yet asked (a failure there must leave the page unmapped);
//! `read`, a memory reader thread failing on its second chunk while pages
//! are being written (`checkpoint::memory`, processes of 8 MiB and more).

use std::sync::OnceLock;

use crate::error::{Error, Result};

/// The variable naming the stage to fail at.
pub const VAR: &str = "CRTOOLS_FAIL_AT";

/// Every stage a restore checks, in the order it reaches them.
pub const STAGES: &[&str] = &[
    "meta", "ipc", "tree", "half", "map", "pages", "data", "threads", "release",
];

/// The stages a checkpoint checks (`ckpt`, not `cr-restart`).
pub const CKPT_STAGES: &[&str] = &["remote", "read"];

fn known(stage: &str) -> bool {
    STAGES.contains(&stage) || CKPT_STAGES.contains(&stage)
}

fn wanted() -> Option<&'static str> {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    AT.get_or_init(|| std::env::var(VAR).ok().filter(|s| !s.is_empty()))
        .as_deref()
}

/// Fails when the restore was asked to fail at `stage` (or at a stage that
/// does not exist).
pub fn check(stage: &'static str) -> Result<()> {
    debug_assert!(known(stage), "unlisted stage {stage}");
    match wanted() {
        None => Ok(()),
        Some(w) if w == stage => Err(Error::msg(format!(
            "injected failure at stage {stage} ({VAR})"
        ))),
        Some(w) if !known(w) => Err(Error::msg(format!(
            "{VAR}={w}: no such stage (stages: {})",
            STAGES.join(", ")
        ))),
        Some(_) => Ok(()),
    }
}

/// `CRTOOLS_NO_COW=1`, a testing aid: restore as if the memory children
/// inherit copy-on-write collided with the restorer's own mappings, so
/// every process gets its own copy (the fallback of `restart::cow`).
pub const NO_COW_VAR: &str = "CRTOOLS_NO_COW";

/// Whether [`NO_COW_VAR`] is set (to anything but empty).
pub fn no_sharing() -> bool {
    std::env::var_os(NO_COW_VAR).is_some_and(|v| !v.is_empty())
}
