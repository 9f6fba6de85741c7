//! Thin, safe wrappers over kernel interfaces that nix lacks: /proc parsers, pagemap, ptrace register sets, remote syscalls.
pub mod pagemap;
pub mod proc;
