//! Rebuilding a process tree from an image: clone3 with set_tid, remote syscalls, release.
