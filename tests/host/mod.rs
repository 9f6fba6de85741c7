//! A second host on this machine, for migration tests (issue 13): its own
//! network, pid, mount, UTS and IPC namespaces, a veth pair with its own
//! /24 (`10.77.N.1` on this side, `10.77.N.2` inside), and a real `sshd`
//! (Debian's openssh-server) listening only on `10.77.N.2`, with a host key
//! and a client key made in a temporary directory. The client side uses an
//! ssh config of its own (`ssh -F`): nothing in /etc/ssh or ~/.ssh is read
//! or changed, and only the address inside the namespace is ever contacted.
//!
//! Use it from a test file with `mod common; mod host;`.
//!
//! **Pids.** A migration keeps original pids. On two real machines the
//! original pid is usually free on the destination; here the source and
//! the "destination" share a kernel, so the destination has its own pid
//! namespace, in which the source's pids are free (its only processes are
//! a small init, sshd and its sessions, all with small pids). `cr-restart`
//! run by sshd inside it creates each process with its original pid in
//! that namespace (`clone3` with `set_tid` works in the caller's own pid
//! namespace). A pid that is taken there can be arranged with
//! [`Host::hold_pid`], to test the refusal; `cr-restart --pidns` would
//! avoid it on a real destination.
//!
//! **Files.** The mount namespace starts as a copy of this one (private
//! propagation), so files the test made before [`Host::start`] (a log the
//! workload appends to) are the same files on both sides; [`Host::hide`]
//! mounts an empty tmpfs over a directory on the destination only, to make
//! files missing there. sshd's privilege-separation directory lives on a
//! tmpfs over the namespace's `/run`.
//!
//! **Cleanup.** Dropping the [`Host`] (also during a panic) SIGKILLs the
//! namespace's init, which makes the kernel kill every process in the pid
//! namespace (sshd, sessions, anything restored there); the network
//! namespace goes with its last process and takes the veth pair along
//! (the outer end is deleted too, should it remain); the temporary
//! directory is removed and the address block's claim released.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixSocketAddr, UnixListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

/// The namespace's init: blocks SIGCHLD and reaps every child (orphans
/// are reparented to it) until it is killed.
const INIT: &str = r#"
import os, signal
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])
print("init", os.getpid(), flush=True)
while True:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
    signal.sigwait([signal.SIGCHLD])
"#;

const SSHD: &str = "/usr/sbin/sshd";

/// A second host: see the module documentation.
pub struct Host {
    /// `10.77.N.2`, where its sshd listens.
    pub addr: String,
    /// The block number N of `10.77.N.0/24`.
    net: u8,
    /// Keys, configs, the sshd log.
    dir: TempDir,
    /// The namespace's init, as this namespace sees it.
    init: i32,
    /// `unshare ... python3 INIT` (its tree includes init and so every
    /// process of the host).
    unshare: Workload,
    sshd: Option<Workload>,
    /// Processes holding pids inside the host ([`Host::hold_pid`]).
    holders: Vec<Workload>,
    /// The outer end of the veth pair.
    veth: String,
    /// Held for the host's life: no other host takes the same block.
    _lock: UnixListener,
}

/// Runs a command to completion, panicking with its output unless it succeeds.
fn must(mut cmd: Command) {
    let what = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn cmd(prog: &str, args: &[&str]) -> Command {
    let mut c = Command::new(prog);
    c.args(args);
    c
}

/// Claims a free 10.77.N.0/24 block: an abstract Unix socket named after
/// it, bound for the host's life (released by the kernel however the test
/// ends, and no file to remove).
fn claim_block() -> (u8, UnixListener) {
    let start = (std::process::id() % 250) as u8;
    for i in 0..250u16 {
        let n = ((start as u16 + i) % 250 + 1) as u8;
        let name = format!("crtools-test-host-10.77.{n}");
        let addr = UnixSocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        if let Ok(l) = UnixListener::bind_addr(&addr) {
            return (n, l);
        }
    }
    panic!("no free 10.77.N.0/24 block for a test host");
}

impl Host {
    /// Creates the host and starts its sshd; returns once sshd accepts
    /// connections. The binaries of this build are first in the PATH of
    /// its ssh sessions.
    pub fn start() -> Host {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: install openssh-server (.ci/run does)"
        );
        let (net, lock) = claim_block();
        let dir = tempdir();
        let d = dir.path();
        let veth = format!("crh{net}a");
        let inner = format!("crh{net}b");
        // A pair left by a test that was killed outright: ours now (we hold the lock).
        let _ = cmd("ip", &["link", "del", &veth]).output();

        let keygen = |name: &str| {
            let p = d.join(name);
            must(cmd(
                "ssh-keygen",
                &[
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "crtools-test",
                    "-f",
                    p.to_str().unwrap(),
                ],
            ));
            p
        };
        let host_key = keygen("host_key");
        let client_key = keygen("client_key");
        std::fs::copy(client_key.with_extension("pub"), d.join("authorized_keys")).unwrap();
        let addr = format!("10.77.{net}.2");
        let bins = bin("cr-restart").parent().unwrap().to_path_buf();
        let path = std::env::var("PATH").unwrap_or_default();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "ListenAddress {addr}\nHostKey {}\nAuthorizedKeysFile {}\nPidFile none\n\
                 UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 SetEnv PATH={}:{path}\n",
                host_key.display(),
                d.join("authorized_keys").display(),
                bins.display()
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("ssh_config"),
            format!(
                "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  \
                 UserKnownHostsFile /dev/null\n  GlobalKnownHostsFile /dev/null\n  \
                 BatchMode yes\n  LogLevel ERROR\n  ConnectTimeout 20\n",
                client_key.display()
            ),
        )
        .unwrap();

        let unshare = Workload::spawn_cmd(cmd(
            "unshare",
            &[
                "--net",
                "--pid",
                "--mount",
                "--uts",
                "--ipc",
                "--fork",
                "--mount-proc",
                "--kill-child",
                "--",
                "sh",
                "-c",
                "mount -t tmpfs crtools-run /run && mkdir /run/sshd && exec python3 -c \"$0\"",
                INIT,
            ],
        ));
        unshare.expect_line(|l| l == "init 1", "init 1 (the host's init)");
        let init = children_of(unshare.pid())
            .first()
            .copied()
            .unwrap_or_else(|| panic!("the host's init is gone\n{}", unshare.report()));
        let mut host = Host {
            addr,
            net,
            dir,
            init,
            unshare,
            sshd: None,
            holders: Vec::new(),
            veth,
            _lock: lock,
        };
        let init_s = init.to_string();
        must(cmd(
            "ip",
            &[
                "link", "add", &host.veth, "type", "veth", "peer", "name", &inner,
            ],
        ));
        must(cmd("ip", &["link", "set", &inner, "netns", &init_s]));
        must(cmd(
            "ip",
            &[
                "addr",
                "add",
                &format!("10.77.{net}.1/24"),
                "dev",
                &host.veth,
            ],
        ));
        must(cmd("ip", &["link", "set", &host.veth, "up"]));
        let script = format!(
            "ip addr add {}/24 dev {inner} && ip link set {inner} up && ip link set lo up",
            host.addr
        );
        must(host.enter(&["sh", "-c", &script]));
        let config = host.dir.path().join("sshd_config");
        let sshd =
            Workload::spawn_cmd(host.enter(&[SSHD, "-D", "-e", "-f", config.to_str().unwrap()]));
        host.sshd = Some(sshd);
        host.wait_listening();
        host
    }

    /// A command run inside every namespace of the host (as root, not
    /// through ssh).
    pub fn enter(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.args([
            "-t",
            &self.init.to_string(),
            "-n",
            "-m",
            "-p",
            "-u",
            "-i",
            "--",
        ]);
        c.args(argv);
        c
    }

    fn wait_listening(&self) {
        let sa: SocketAddr = format!("{}:22", self.addr).parse().unwrap();
        let end = Instant::now() + TIMEOUT;
        while TcpStream::connect_timeout(&sa, Duration::from_secs(1)).is_err() {
            if let Some(s) = &self.sshd
                && let Some(st) = proc_state(s.pid()).filter(|&c| c == 'Z')
            {
                panic!("sshd exited ({st})\n{}", s.report());
            }
            assert!(
                Instant::now() < end,
                "sshd does not listen on {sa}\n{}",
                self.sshd.as_ref().map(Workload::report).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The namespace's init (pid as seen here).
    pub fn init(&self) -> i32 {
        self.init
    }

    /// The outer end of the veth pair.
    pub fn veth(&self) -> &str {
        &self.veth
    }

    /// The client's ssh config (`ssh -F`): its key, no host key checks.
    pub fn ssh_config(&self) -> PathBuf {
        self.dir.path().join("ssh_config")
    }

    /// `root@10.77.N.2`.
    pub fn dest(&self) -> String {
        format!("root@{}", self.addr)
    }

    /// The ssh options for this host: `-F CONFIG`.
    pub fn ssh_opts(&self) -> Vec<String> {
        vec!["-F".into(), self.ssh_config().display().to_string()]
    }

    /// `ssh -F CONFIG root@ADDR REMOTE`.
    pub fn ssh(&self, remote: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.ssh_opts()).arg(self.dest()).arg(remote);
        c
    }

    /// Processes in the host's pid namespace: (pid here, pid there, comm).
    pub fn procs(&self) -> Vec<(i32, i32, String)> {
        let ns = |p: i32| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
        let Some(want) = ns(self.init) else {
            return Vec::new();
        };
        let mut v = Vec::new();
        for p in all_pids() {
            if ns(p).as_ref() != Some(&want) {
                continue;
            }
            let Ok(status) = std::fs::read_to_string(format!("/proc/{p}/status")) else {
                continue;
            };
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            let inner = field("NSpid:")
                .split_whitespace()
                .last()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            v.push((p, inner, field("Name:")));
        }
        v
    }

    /// The host's processes other than its init, sshd's listener and the
    /// pid holders: what a migration left there.
    pub fn extra_procs(&self) -> Vec<(i32, i32, String)> {
        let sshd = self.sshd_listener();
        let held: Vec<i32> = self.holders.iter().flat_map(|h| h.tree()).collect();
        self.procs()
            .into_iter()
            .filter(|&(p, _, _)| p != self.init && Some(p) != sshd && !held.contains(&p))
            .collect()
    }

    /// The listening sshd (a child of nsenter).
    fn sshd_listener(&self) -> Option<i32> {
        let s = self.sshd.as_ref()?;
        children_of(s.pid()).first().copied()
    }

    /// Waits until nothing but init, sshd and pid holders runs on the host
    /// (sessions that ended are reaped by init). Returns what is left on
    /// timeout.
    pub fn wait_clean(&self) -> Result<(), Vec<(i32, i32, String)>> {
        let mut left = Vec::new();
        if wait_until(TIMEOUT, || {
            left = self.extra_procs();
            left.is_empty()
        }) {
            Ok(())
        } else {
            Err(left)
        }
    }

    /// This host's pid (as seen here) of the process that has pid `inner`
    /// inside it.
    pub fn outer_pid(&self, inner: i32) -> Option<i32> {
        self.procs()
            .into_iter()
            .find(|&(_, i, _)| i == inner)
            .map(|(p, _, _)| p)
    }

    /// Mounts an empty tmpfs over directory `path` in the host's mount
    /// namespace only: its files are missing there.
    pub fn hide(&self, path: &Path) {
        must(self.enter(&[
            "mount",
            "-t",
            "tmpfs",
            "crtools-hide",
            path.to_str().unwrap(),
        ]));
    }

    /// Starts a process that holds pid `pid` inside the host (sets the
    /// namespace's last pid, then forks a sleeper: nothing else forks
    /// there meanwhile); killed with the host.
    pub fn hold_pid(&mut self, pid: i32) {
        let script = format!(
            "echo {} > /proc/sys/kernel/ns_last_pid; sleep 1000",
            pid - 1
        );
        let w = Workload::spawn_cmd(self.enter(&["sh", "-c", &script]));
        let ok = wait_until(TIMEOUT, || {
            self.procs()
                .iter()
                .any(|(_, i, c)| *i == pid && c == "sleep")
        });
        assert!(ok, "could not hold pid {pid} on the host\n{}", w.report());
        self.holders.push(w);
    }

    /// sshd's log so far (for failure messages).
    pub fn sshd_log(&self) -> String {
        self.sshd.as_ref().map(Workload::report).unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // The kernel kills every process of the pid namespace with its init.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.init),
            nix::sys::signal::Signal::SIGKILL,
        );
        self.holders.clear();
        self.sshd = None;
        self.unshare.kill();
        if !wait_pid_gone(self.init, TIMEOUT) {
            eprintln!("warning: the test host's init {} is still there", self.init);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .stderr(std::process::Stdio::null())
            .status();
    }
}
