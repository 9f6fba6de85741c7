//! Unix sockets as the kernel's `sock_diag` netlink interface describes
//! them (`UNIX_DIAG`): type, state, peer, bound name, queue lengths and
//! shutdown state, by inode. Also `pidfd_getfd`, to reach another
//! process's socket.

use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd};

use super::ids::{Fd, Pid};
use nix::errno::Errno;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_DONE: u16 = 3;
const NLMSG_ERROR: u16 = 2;
const UDIAG_SHOW_NAME: u32 = 1;
const UDIAG_SHOW_VFS: u32 = 2;
const UDIAG_SHOW_PEER: u32 = 4;
const UDIAG_SHOW_ICONS: u32 = 8;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_ICONS: u16 = 3;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_SHUTDOWN: u16 = 6;

/// One Unix socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnixSock {
    pub ino: u64,
    /// `SOCK_STREAM`, `SOCK_DGRAM` or `SOCK_SEQPACKET`.
    pub stype: u32,
    /// `TCP_ESTABLISHED` (1), `TCP_LISTEN` (10), `TCP_CLOSE` (7)...
    pub state: u32,
    /// Inode of the peer, 0 when none.
    pub peer: u64,
    /// Bound name (a path, or `\0`-led abstract name); empty when unbound.
    pub name: Vec<u8>,
    /// Bytes waiting to be read (for a listener: pending connections).
    pub rqueue: u32,
    /// Bytes sent and not yet read by the peer (for a listener: its
    /// backlog, as given to `listen`).
    pub wqueue: u32,
    /// For a socket bound to a filesystem name: the inode and device of
    /// the socket file (0 when none).
    pub vfs_ino: u64,
    pub vfs_dev: u64,
    /// For a listener: the sockets of its connections not yet accepted,
    /// in queue order (they have no descriptor anywhere).
    pub icons: Vec<u64>,
    /// `SHUTDOWN` bits: 1 = no more receptions, 2 = no more sends.
    pub shutdown: u32,
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}
fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes(b[i..i + 2].try_into().expect("2 bytes"))
}

/// Every Unix socket of our network namespace, by inode.
pub fn unix_sockets() -> std::io::Result<HashMap<u64, UnixSock>> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: socket just returned this descriptor.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = Vec::with_capacity(40);
    req.extend_from_slice(&40u32.to_le_bytes()); // nlmsg_len
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_le_bytes());
    req.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_le_bytes());
    req.extend_from_slice(&1u32.to_le_bytes()); // seq
    req.extend_from_slice(&0u32.to_le_bytes()); // pid
    req.push(libc::AF_UNIX as u8); // sdiag_family
    req.push(0); // sdiag_protocol
    req.extend_from_slice(&0u16.to_le_bytes());
    req.extend_from_slice(&u32::MAX.to_le_bytes()); // all states
    req.extend_from_slice(&0u32.to_le_bytes()); // ino: all
    req.extend_from_slice(
        &(UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN)
            .to_le_bytes(),
    );
    req.extend_from_slice(&[0xff; 8]); // cookie: none
    // SAFETY: send reads the live request buffer.
    if unsafe { libc::send(fd, req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = HashMap::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        // SAFETY: recv writes at most buf.len() bytes into the live buffer.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            if Errno::last() == Errno::EINTR {
                continue;
            }
            return Err(std::io::Error::last_os_error());
        }
        let mut msg = &buf[..n as usize];
        while msg.len() >= 16 {
            let len = u32_at(msg, 0) as usize;
            let ty = u16_at(msg, 4);
            if len < 16 || len > msg.len() {
                return Err(std::io::Error::other("malformed sock_diag reply"));
            }
            match ty {
                NLMSG_DONE => {
                    drop(sock);
                    return Ok(out);
                }
                NLMSG_ERROR => {
                    let code = if len >= 20 {
                        -(u32_at(msg, 16) as i32)
                    } else {
                        libc::EIO
                    };
                    return Err(std::io::Error::from_raw_os_error(code));
                }
                _ => {}
            }
            let body = &msg[16..len];
            if body.len() >= 16 {
                let mut s = UnixSock {
                    stype: body[1] as u32,
                    state: body[2] as u32,
                    ino: u32_at(body, 4) as u64,
                    ..Default::default()
                };
                let mut attrs = &body[16..];
                while attrs.len() >= 4 {
                    let alen = u16_at(attrs, 0) as usize;
                    let aty = u16_at(attrs, 2);
                    if alen < 4 || alen > attrs.len() {
                        break;
                    }
                    let val = &attrs[4..alen];
                    match aty {
                        UNIX_DIAG_NAME => {
                            // A path comes with its terminating NUL.
                            let mut v = val.to_vec();
                            while v.len() > 1 && v[0] != 0 && v.last() == Some(&0) {
                                v.pop();
                            }
                            s.name = v;
                        }
                        UNIX_DIAG_PEER if val.len() >= 4 => s.peer = u32_at(val, 0) as u64,
                        UNIX_DIAG_RQLEN if val.len() >= 8 => {
                            s.rqueue = u32_at(val, 0);
                            s.wqueue = u32_at(val, 4);
                        }
                        UNIX_DIAG_VFS if val.len() >= 8 => {
                            s.vfs_ino = u32_at(val, 0) as u64;
                            s.vfs_dev = u32_at(val, 4) as u64;
                        }
                        UNIX_DIAG_ICONS => {
                            s.icons = val.chunks_exact(4).map(|c| u32_at(c, 0) as u64).collect();
                        }
                        UNIX_DIAG_SHUTDOWN if !val.is_empty() => s.shutdown = val[0] as u32,
                        _ => {}
                    }
                    let step = ((alen + 3) & !3).min(attrs.len());
                    attrs = &attrs[step..];
                }
                out.insert(s.ino, s);
            }
            let next = (len + 3) & !3;
            msg = &msg[next.min(msg.len())..];
        }
    }
}

/// A duplicate of descriptor `fd` of process `pid` (`pidfd_getfd`).
pub fn steal_fd(pid: Pid, fd: Fd) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes integers; the result is checked.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if pidfd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pidfd_open just returned this descriptor.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_getfd takes integers; the result is checked.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd.as_raw(), 0) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pidfd_getfd just returned this new descriptor (close-on-exec).
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn sees_a_socketpair_and_its_queue() {
        let (a, b) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        nix::unistd::write(&a, b"hello").unwrap();
        let ino = |fd: &OwnedFd| nix::sys::stat::fstat(fd.as_raw_fd()).unwrap().st_ino;
        let all = unix_sockets().unwrap();
        let sa = &all[&ino(&a)];
        let sb = &all[&ino(&b)];
        assert_eq!(sa.peer, ino(&b));
        assert_eq!(sb.peer, ino(&a));
        assert_eq!(sb.rqueue, 5);
        assert_eq!(sa.stype, libc::SOCK_STREAM as u32);
        let dup = steal_fd(Pid::this(), Fd::from_raw(b.as_raw_fd())).unwrap();
        assert_eq!(ino(&dup), ino(&b));
    }
}
