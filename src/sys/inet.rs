//! TCP and UDP sockets (IPv4 and IPv6): addresses, options, `TCP_INFO`,
//! and the kernel's TCP repair mode (`TCP_REPAIR`, `TCP_REPAIR_QUEUE`,
//! `TCP_QUEUE_SEQ`, `TCP_REPAIR_OPTIONS`, `TCP_REPAIR_WINDOW`,
//! `TCP_TIMESTAMP`), through which an established connection's state is
//! read and set without anything going out on the wire.
//!
//! Every call takes a descriptor the caller holds (a socket of its own,
//! or one taken from another process with `pidfd_getfd`: options and
//! repair mode belong to the socket, not the descriptor). Repair mode
//! needs `CAP_NET_ADMIN` in the socket's network namespace.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

pub const TCP_REPAIR: i32 = 19;
pub const TCP_REPAIR_QUEUE: i32 = 20;
pub const TCP_QUEUE_SEQ: i32 = 21;
pub const TCP_REPAIR_OPTIONS: i32 = 22;
pub const TCP_TIMESTAMP: i32 = 24;
pub const TCP_REPAIR_WINDOW: i32 = 29;
/// `TCP_REPAIR_QUEUE` values.
pub const TCP_RECV_QUEUE: i32 = 1;
pub const TCP_SEND_QUEUE: i32 = 2;
/// `TCP_REPAIR_OPTIONS` codes.
const TCPOPT_MAXSEG: u32 = 2;
const TCPOPT_WINDOW: u32 = 3;
const TCPOPT_SACK_PERM: u32 = 4;
const TCPOPT_TIMESTAMP: u32 = 8;
/// `tcpi_options` bits.
pub const TCPI_OPT_TIMESTAMPS: u32 = 1;
pub const TCPI_OPT_SACK: u32 = 2;
pub const TCPI_OPT_WSCALE: u32 = 4;
const SIOCINQ: libc::c_ulong = 0x541B;
const SIOCOUTQ: libc::c_ulong = 0x5411;
const SIOCOUTQNSD: libc::c_ulong = 0x894B;

/// TCP states (`tcpi_state`).
pub const TCP_ESTABLISHED: u32 = 1;
pub const TCP_CLOSE: u32 = 7;
pub const TCP_LISTEN: u32 = 10;

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An integer socket option.
pub fn get_int(fd: BorrowedFd, level: i32, opt: i32) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the live `v`.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(v)
}

/// Sets an integer socket option.
pub fn set_int(fd: BorrowedFd, level: i32, opt: i32, v: i32) -> io::Result<()> {
    set_bytes(fd, level, opt, &v.to_ne_bytes())
}

fn set_bytes(fd: BorrowedFd, level: i32, opt: i32, v: &[u8]) -> io::Result<()> {
    // SAFETY: setsockopt reads `v.len()` bytes of the live slice.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            v.as_ptr().cast(),
            v.len() as libc::socklen_t,
        )
    })
}

fn get_bytes(fd: BorrowedFd, level: i32, opt: i32, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the live buffer.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    Ok(len as usize)
}

/// `SO_LINGER`: `Some(seconds)` when lingering is on.
pub fn get_linger(fd: BorrowedFd) -> io::Result<Option<u32>> {
    let mut b = [0u8; 8];
    get_bytes(fd, libc::SOL_SOCKET, libc::SO_LINGER, &mut b)?;
    let on = i32::from_ne_bytes(b[..4].try_into().expect("4 bytes"));
    let secs = i32::from_ne_bytes(b[4..].try_into().expect("4 bytes"));
    Ok((on != 0).then_some(secs.max(0) as u32))
}

pub fn set_linger(fd: BorrowedFd, secs: u32) -> io::Result<()> {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&1i32.to_ne_bytes());
    b[4..].copy_from_slice(&(secs as i32).to_ne_bytes());
    set_bytes(fd, libc::SOL_SOCKET, libc::SO_LINGER, &b)
}

fn to_sockaddr(a: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and
            // suitably aligned for it.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in = unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn name(fd: BorrowedFd, peer: bool) -> io::Result<Option<SocketAddr>> {
    // SAFETY: plain data, zeroes valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let p = (&mut ss as *mut libc::sockaddr_storage).cast();
    // SAFETY: get{sock,peer}name write at most `len` bytes into `ss`.
    let r = unsafe {
        if peer {
            libc::getpeername(fd.as_raw_fd(), p, &mut len)
        } else {
            libc::getsockname(fd.as_raw_fd(), p, &mut len)
        }
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOTCONN) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(from_sockaddr(&ss))
}

/// The socket's own address (port 0 when not bound).
pub fn local_addr(fd: BorrowedFd) -> io::Result<Option<SocketAddr>> {
    name(fd, false)
}

/// The peer's address, `None` when not connected.
pub fn peer_addr(fd: BorrowedFd) -> io::Result<Option<SocketAddr>> {
    name(fd, true)
}

/// A new socket (close-on-exec).
pub fn socket(family: i32, stype: i32, protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with integer arguments; the result is checked.
    let fd = unsafe { libc::socket(family, stype | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket just returned this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn bind(fd: BorrowedFd, a: &SocketAddr) -> io::Result<()> {
    let (ss, len) = to_sockaddr(a);
    // SAFETY: bind reads `len` bytes of the live `ss`.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&ss as *const libc::sockaddr_storage).cast(),
            len,
        )
    })
}

/// `connect`; in repair mode a TCP socket becomes established at once,
/// sending nothing.
pub fn connect(fd: BorrowedFd, a: &SocketAddr) -> io::Result<()> {
    let (ss, len) = to_sockaddr(a);
    // SAFETY: connect reads `len` bytes of the live `ss`.
    check(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&ss as *const libc::sockaddr_storage).cast(),
            len,
        )
    })
}

pub fn listen(fd: BorrowedFd, backlog: i32) -> io::Result<()> {
    // SAFETY: listen takes integers.
    check(unsafe { libc::listen(fd.as_raw_fd(), backlog) })
}

fn ioctl_int(fd: BorrowedFd, req: libc::c_ulong) -> io::Result<u32> {
    let mut v: libc::c_int = 0;
    // SAFETY: these ioctls write one int into the live `v`.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut v) })?;
    Ok(v.max(0) as u32)
}

/// Bytes in the receive queue (`SIOCINQ`).
pub fn inq(fd: BorrowedFd) -> io::Result<u32> {
    ioctl_int(fd, SIOCINQ)
}

/// Bytes in the send queue, sent or not (`SIOCOUTQ`).
pub fn outq(fd: BorrowedFd) -> io::Result<u32> {
    ioctl_int(fd, SIOCOUTQ)
}

/// Bytes in the send queue not yet sent (`SIOCOUTQNSD`).
pub fn outq_unsent(fd: BorrowedFd) -> io::Result<u32> {
    ioctl_int(fd, SIOCOUTQNSD)
}

/// What `TCP_INFO` says that a checkpoint needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpInfo {
    pub state: u32,
    /// `TCPI_OPT_*` bits.
    pub options: u32,
    pub snd_wscale: u32,
    pub rcv_wscale: u32,
    /// For a listener: connections waiting to be accepted.
    pub unacked: u32,
    /// For a listener: its backlog.
    pub sacked: u32,
}

pub fn tcp_info(fd: BorrowedFd) -> io::Result<TcpInfo> {
    let mut b = [0u8; 104];
    let n = get_bytes(fd, libc::IPPROTO_TCP, libc::TCP_INFO, &mut b)?;
    if n < 32 {
        return Err(io::Error::other("short TCP_INFO"));
    }
    let u = |i: usize| u32::from_ne_bytes(b[i..i + 4].try_into().expect("4 bytes"));
    Ok(TcpInfo {
        state: b[0] as u32,
        options: b[5] as u32,
        snd_wscale: (b[6] & 0xf) as u32,
        rcv_wscale: (b[6] >> 4) as u32,
        unacked: u(24),
        sacked: u(28),
    })
}

/// Turns repair mode on or off. Off sends a window probe, as the kernel
/// does for `TCP_REPAIR_OFF`.
pub fn set_repair(fd: BorrowedFd, on: bool) -> io::Result<()> {
    set_int(fd, libc::IPPROTO_TCP, TCP_REPAIR, on as i32)
}

/// Selects the queue the next `TCP_QUEUE_SEQ`, peek or send works on.
pub fn set_repair_queue(fd: BorrowedFd, q: i32) -> io::Result<()> {
    set_int(fd, libc::IPPROTO_TCP, TCP_REPAIR_QUEUE, q)
}

/// The selected queue's sequence number (the next byte's).
pub fn queue_seq(fd: BorrowedFd) -> io::Result<u32> {
    get_int(fd, libc::IPPROTO_TCP, TCP_QUEUE_SEQ).map(|v| v as u32)
}

pub fn set_queue_seq(fd: BorrowedFd, seq: u32) -> io::Result<()> {
    set_int(fd, libc::IPPROTO_TCP, TCP_QUEUE_SEQ, seq as i32)
}

/// `TCP_TIMESTAMP`: the timestamp clock as the peer sees it; set in
/// repair mode, it moves the socket's clock offset to match.
pub fn timestamp(fd: BorrowedFd) -> io::Result<u32> {
    get_int(fd, libc::IPPROTO_TCP, TCP_TIMESTAMP).map(|v| v as u32)
}

pub fn set_timestamp(fd: BorrowedFd, ts: u32) -> io::Result<()> {
    set_int(fd, libc::IPPROTO_TCP, TCP_TIMESTAMP, ts as i32)
}

/// `struct tcp_repair_window`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepairWindow {
    pub snd_wl1: u32,
    pub snd_wnd: u32,
    pub max_window: u32,
    pub rcv_wnd: u32,
    pub rcv_wup: u32,
}

pub fn repair_window(fd: BorrowedFd) -> io::Result<RepairWindow> {
    let mut b = [0u8; 20];
    let n = get_bytes(fd, libc::IPPROTO_TCP, TCP_REPAIR_WINDOW, &mut b)?;
    if n < 20 {
        return Err(io::Error::other("short TCP_REPAIR_WINDOW"));
    }
    let u = |i: usize| u32::from_ne_bytes(b[i..i + 4].try_into().expect("4 bytes"));
    Ok(RepairWindow {
        snd_wl1: u(0),
        snd_wnd: u(4),
        max_window: u(8),
        rcv_wnd: u(12),
        rcv_wup: u(16),
    })
}

pub fn set_repair_window(fd: BorrowedFd, w: &RepairWindow) -> io::Result<()> {
    let mut b = Vec::with_capacity(20);
    for v in [w.snd_wl1, w.snd_wnd, w.max_window, w.rcv_wnd, w.rcv_wup] {
        b.extend_from_slice(&v.to_ne_bytes());
    }
    set_bytes(fd, libc::IPPROTO_TCP, TCP_REPAIR_WINDOW, &b)
}

/// `TCP_REPAIR_OPTIONS`: what the handshake agreed (for an established
/// socket in repair mode): MSS, window scales, SACK, timestamps.
pub fn set_repair_options(
    fd: BorrowedFd,
    mss: u32,
    options: u32,
    snd_wscale: u32,
    rcv_wscale: u32,
) -> io::Result<()> {
    let mut opts: Vec<(u32, u32)> = Vec::new();
    if options & TCPI_OPT_SACK != 0 {
        opts.push((TCPOPT_SACK_PERM, 0));
    }
    if options & TCPI_OPT_WSCALE != 0 {
        opts.push((TCPOPT_WINDOW, snd_wscale | rcv_wscale << 16));
    }
    if options & TCPI_OPT_TIMESTAMPS != 0 {
        opts.push((TCPOPT_TIMESTAMP, 0));
    }
    opts.push((TCPOPT_MAXSEG, mss));
    let mut b = Vec::new();
    for (code, val) in opts {
        b.extend_from_slice(&code.to_ne_bytes());
        b.extend_from_slice(&val.to_ne_bytes());
    }
    set_bytes(fd, libc::IPPROTO_TCP, TCP_REPAIR_OPTIONS, &b)
}

/// Copies `len` bytes of the selected repair queue without consuming
/// them (`MSG_PEEK`).
pub fn peek_queue(fd: BorrowedFd, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    if len == 0 {
        return Ok(buf);
    }
    // SAFETY: recv writes at most buf.len() bytes into the live buffer.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// Sends all of `data` (in repair mode: into the selected queue).
pub fn send_all(fd: BorrowedFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: send reads at most data.len() bytes of the live slice.
        let n = unsafe {
            libc::send(
                fd.as_raw_fd(),
                data.as_ptr().cast(),
                data.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::other("the queue took nothing"));
        }
        data = &data[n as usize..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    #[test]
    fn addresses_info_and_options_of_a_loopback_pair() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        let mut c = std::net::TcpStream::connect(a).unwrap();
        let (mut s, _) = l.accept().unwrap();
        assert_eq!(local_addr(l.as_fd()).unwrap(), Some(a));
        assert_eq!(peer_addr(l.as_fd()).unwrap(), None);
        assert_eq!(peer_addr(s.as_fd()).unwrap(), Some(c.local_addr().unwrap()));
        let li = tcp_info(l.as_fd()).unwrap();
        assert_eq!(li.state, TCP_LISTEN);
        assert_eq!(li.sacked, 128);
        assert_eq!(tcp_info(s.as_fd()).unwrap().state, TCP_ESTABLISHED);
        set_int(s.as_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1).unwrap();
        assert_eq!(
            get_int(s.as_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY).unwrap(),
            1
        );
        c.write_all(b"abc").unwrap();
        let mut b = [0u8; 3];
        s.read_exact(&mut b).unwrap();
        assert_eq!(inq(s.as_fd()).unwrap(), 0);
    }
}
