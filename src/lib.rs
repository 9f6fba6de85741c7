//! crtools: process checkpoint/restart for Linux as small programs that
//! compose through Unix pipes.
//!
//! - [`image`]: the streaming image format (pure code).
//! - [`filters`]: stream transforms over [`image::Reader`] and [`image::Writer`].
//! - [`sys`]: thin safe wrappers over the kernel interfaces nix lacks.
//! - [`checkpoint`]: freeze a process tree and write its image.
//! - [`restart`]: rebuild a process tree from an image.
//! - [`selfckpt`]: a program checkpoints itself and goes on.
//! - [`cli`]: what the binaries share; [`completions`] their arguments;
//!   [`progress`] the progress line and the counters behind it.
#![deny(clippy::undocumented_unsafe_blocks)]

// Only `sys` (the door to the kernel) holds `unsafe`; `restart::child`,
// `selfckpt` and `cli` still do too (see docs/ARCHITECTURE.md, "unsafe").
#[deny(unsafe_code)]
pub mod checkpoint;
pub mod cli;
#[deny(unsafe_code)]
pub mod completions;
#[deny(unsafe_code)]
pub mod error;
#[deny(unsafe_code)]
pub mod filters;
#[deny(unsafe_code)]
pub mod image;
// Restart touches the kernel only through `sys`, except `restart::child`
// (raw syscalls between clone3 and the first stop), which allows it.
#[deny(unsafe_code)]
pub mod progress;
#[deny(unsafe_code)]
pub mod restart;
pub mod selfckpt;
pub mod sys;

pub use error::{Error, Result};
