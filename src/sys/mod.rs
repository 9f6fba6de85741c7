//! The door to the kernel: thin, safe wrappers over what nix lacks (/proc
//! parsers, pagemap, ptrace register sets, remote syscalls, clone3, SysV
//! IPC, pty ioctls, `sock_diag`, TCP repair).
//!
//! Ids: [`Pid`], [`Tid`] and [`Fd`] (in [`ids`]) are our own newtypes, not
//! `nix::unistd::Pid` (one type for processes and threads alike); they
//! convert to nix's at the nix calls. A traced thread is a
//! [`ptrace::Running`] or a [`ptrace::Stopped`]: registers and remote
//! syscalls ([`remote::Remote`]) need the stopped one.

pub mod arena;
pub mod batch;
pub mod clone;
pub mod codepage;
pub mod crc32c;
pub mod creds;
pub mod events;
pub mod fds;
pub mod fileid;
pub mod fixedmem;
pub mod fork;
pub mod ids;
pub mod inet;
pub mod ipc;
pub mod locks;
pub mod mem;
pub mod mqueue;
pub mod pagemap;
pub mod proc;
pub mod process;
pub mod ptrace;
pub mod remote;
pub mod rlimit;
pub mod threadcreds;
pub mod tty;
pub mod uffd;
pub mod unixdiag;
pub mod unixsock;
pub mod worker;
pub mod wptrack;

pub use ids::{Fd, Pid, Tid};
