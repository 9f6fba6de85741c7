//! Round trips of shared resources (issue 5): shared anonymous memory across
//! a fork, pipes with data in flight, FIFOs, Unix socket pairs, SysV message
//! queues, semaphores and shared memory. Each workload checks its own state
//! continuously; after `ckpt --kill | cr-restart` every process must continue
//! its sequence with no FAIL. SysV workloads run in their own IPC namespace,
//! which the image takes whole and `cr-restart` recreates, so nothing is left
//! on the host.

mod common;

use common::*;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Runs `name args` (in a new IPC namespace when `own_ipc`), lets every tag
/// count to 3, migrates it, and checks every tag continues for 5 more.
fn roundtrip(name: &str, args: &[&str], tags: &[Option<&str>], own_ipc: bool) {
    let mut cmd = Command::new(workload(name));
    cmd.args(args);
    if own_ipc {
        // SAFETY: unshare(2) is async-signal-safe and touches no memory.
        unsafe {
            cmd.pre_exec(|| {
                if libc::unshare(libc::CLONE_NEWIPC) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut orig = Workload::spawn_cmd(cmd);
    migrate_and_continue(&mut orig, tags, &[], 3, 5);
}

fn host_ipc() -> (Vec<i32>, Vec<i32>, Vec<i32>) {
    (ipc_ids(Ipc::Msg), ipc_ids(Ipc::Sem), ipc_ids(Ipc::Shm))
}

#[test]
fn shared_anonymous_memory_across_fork() {
    roundtrip(
        "shmem",
        &["-d", "20"],
        &[Some("parent"), Some("child")],
        false,
    );
}

#[test]
fn pipe_between_two_processes_with_data_in_flight() {
    roundtrip(
        "pipes",
        &["-d", "20"],
        &[Some("parent"), Some("child")],
        false,
    );
}

#[test]
fn pipe_in_one_process_with_data_in_flight() {
    roundtrip("pipes2", &["-d", "20"], &[None], false);
}

/// A real python3 program holds the write end of a pipe whose read end is
/// closed and the read end of one whose write end is closed. Nobody
/// outside holds their other ends (the kernel's count says so, without a
/// search of `/proc`), so both are pipes of the image: after the restore
/// writing still fails with EPIPE and reading finds end of file (the
/// program prints FAIL otherwise), while its stdout, a pipe the test
/// holds, still leads to the test.
#[test]
fn pipes_whose_other_end_is_closed() {
    let mut orig = Workload::spawn("python3", &[script("widowed.py").to_str().unwrap(), "20"]);
    migrate_and_continue(&mut orig, &[None], &[], 3, 5);
}

#[test]
fn fifo_with_buffered_data() {
    let dir = tempdir();
    roundtrip(
        "fifo",
        &["-d", "20", "-D", dir.path().to_str().unwrap()],
        &[None],
        false,
    );
}

#[test]
fn socket_pair_ping_pong_and_queued_datagrams() {
    roundtrip(
        "sockpair",
        &["-d", "20"],
        &[Some("parent"), Some("child")],
        false,
    );
}

#[test]
fn sysv_message_queues() {
    let before = host_ipc();
    roundtrip("ipcmsq", &["-d", "20"], &[None], true);
    assert_eq!(host_ipc(), before, "SysV objects left on the host");
}

#[test]
fn sysv_semaphores() {
    let before = host_ipc();
    roundtrip("ipcsem", &["-d", "20"], &[None], true);
    assert_eq!(host_ipc(), before, "SysV objects left on the host");
}

#[test]
fn sysv_shared_memory() {
    let before = host_ipc();
    roundtrip("ipcshm", &["-d", "20"], &[None], true);
    assert_eq!(host_ipc(), before, "SysV objects left on the host");
}

#[test]
fn sysv_segment_shared_by_three_processes() {
    let before = host_ipc();
    roundtrip(
        "shm3",
        &["-d", "20"],
        &[Some("p0"), Some("p1"), Some("p2")],
        true,
    );
    assert_eq!(host_ipc(), before, "SysV objects left on the host");
}
