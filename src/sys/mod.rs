//! Thin, safe wrappers over kernel interfaces that nix lacks: /proc parsers, pagemap, ptrace register sets, remote syscalls, clone3.

pub mod clone;
pub mod ipc;
pub mod locks;
pub mod mem;
pub mod pagemap;
pub mod proc;
pub mod ptrace;
pub mod remote;
pub mod tty;
pub mod unixdiag;
