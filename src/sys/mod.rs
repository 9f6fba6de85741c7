//! Thin, safe wrappers over kernel interfaces that nix lacks: /proc parsers, pagemap, ptrace register sets, remote syscalls.

pub mod clone;
pub mod mem;
pub mod ptrace;
pub mod remote;
