//! TCP and UDP sockets (IPv4, IPv6) of the tree into `INET` records.
//!
//! Each socket descriptor is taken with `pidfd_getfd` (the same socket,
//! so options read on our copy are the tree's); those of family
//! `AF_INET`/`AF_INET6` become `FT_INET` files, every other socket is left
//! to `files.rs`. Listening, bound, unbound and UDP sockets are described
//! by their addresses and options. An established TCP connection is
//! refused unless `--tcp-established` (kept: put in repair mode, its
//! sequence numbers, windows, options and both queues read) or
//! `--tcp-close` (dropped: restored as an unconnected socket).
//!
//! Repair mode is held by [`Repaired`]: dropped, it turns repair off again
//! on every socket (and gives back `SO_REUSEADDR`, which leaving repair
//! clears), so a failed or non-killing checkpoint leaves every connection
//! working. After `ckpt --kill` it is dropped with repair still on: the
//! last close of a socket in repair mode sends neither FIN nor RST.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};

use crate::error::{Error, Result};
use crate::image::{self, FdTable, File, InetSocket};
use crate::sys::inet;

/// What to do with established TCP connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TcpMode {
    /// Refuse the checkpoint, naming the connection.
    #[default]
    Refuse,
    /// `--tcp-established`: keep them with `TCP_REPAIR`.
    Established,
    /// `--tcp-close`: record them as closed sockets.
    Close,
}

/// Sockets put in repair mode by this checkpoint. See the module docs.
#[derive(Default)]
pub struct Repaired {
    socks: Vec<(OwnedFd, bool)>,
    killed: bool,
}

impl Repaired {
    /// The tree was killed: close the sockets still in repair mode, so
    /// nothing goes out on the wire.
    pub fn killed(mut self) {
        self.killed = true;
    }

    pub fn len(&self) -> usize {
        self.socks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.socks.is_empty()
    }
}

impl Drop for Repaired {
    fn drop(&mut self) {
        if self.killed {
            return;
        }
        for (fd, reuseaddr) in &self.socks {
            let _ = inet::set_repair(fd.as_fd(), false);
            if *reuseaddr {
                let _ = inet::set_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1);
            }
        }
    }
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn sysctl(path: &str, field: usize) -> Option<u32> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .nth(field)?
        .parse()
        .ok()
}

fn state_name(s: u32) -> &'static str {
    match s {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        _ => "?",
    }
}

fn show(a: Option<SocketAddr>) -> String {
    a.map_or_else(|| "*".into(), |a| a.to_string())
}

/// Describes every TCP and UDP socket among `files` (turning them into
/// `FT_INET` files); repair mode taken for established connections is
/// recorded in `repaired`.
pub fn collect(
    files: &mut [File],
    fdtables: &[FdTable],
    mode: TcpMode,
    repaired: &mut Repaired,
) -> Result<Vec<InetSocket>> {
    let mut out = Vec::new();
    for f in files.iter_mut().filter(|f| f.ftype == image::FT_SOCKET) {
        let Some((pid, fd)) = super::files::holder(fdtables, f.id) else {
            continue;
        };
        let err = |what: String| {
            Error::msg(format!(
                "cannot checkpoint pid {pid}: descriptor {fd} ({}): {what}",
                String::from_utf8_lossy(&f.link)
            ))
        };
        let sock = crate::sys::unixdiag::steal_fd(pid, fd)
            .map_err(|e| err(format!("pidfd_getfd: {e}")))?;
        let s = sock.as_fd();
        let family = inet::get_int(s, libc::SOL_SOCKET, libc::SO_DOMAIN)
            .map_err(|e| err(format!("SO_DOMAIN: {e}")))?;
        if family != libc::AF_INET && family != libc::AF_INET6 {
            continue;
        }
        let rec = describe(s, family, mode, &err)?;
        let rec = match rec {
            Described::Plain(r) => r,
            Described::Repair(r, reuse) => {
                let r = repair_dump(&sock, r, reuse, repaired, &err)?;
                InetSocket {
                    id: f.object_id,
                    ..r
                }
            }
        };
        f.ftype = image::FT_INET;
        out.push(InetSocket {
            id: f.object_id,
            ..rec
        });
    }
    Ok(out)
}

enum Described {
    Plain(InetSocket),
    /// An established connection to keep: the record so far, and whether
    /// `SO_REUSEADDR` was set.
    Repair(InetSocket, bool),
}

fn describe(
    s: std::os::fd::BorrowedFd,
    family: i32,
    mode: TcpMode,
    err: &dyn Fn(String) -> Error,
) -> Result<Described> {
    let geti = |level: i32, opt: i32, what: &str| {
        inet::get_int(s, level, opt)
            .map(|v| v as u32)
            .map_err(|e| err(format!("{what}: {e}")))
    };
    let stype = geti(libc::SOL_SOCKET, libc::SO_TYPE, "SO_TYPE")?;
    let protocol = geti(libc::SOL_SOCKET, libc::SO_PROTOCOL, "SO_PROTOCOL")?;
    let tcp = stype == libc::SOCK_STREAM as u32 && protocol == libc::IPPROTO_TCP as u32;
    let udp = stype == libc::SOCK_DGRAM as u32 && protocol == libc::IPPROTO_UDP as u32;
    if !tcp && !udp {
        return Err(err(format!(
            "an IP socket of type {stype}, protocol {protocol}: only TCP and UDP are supported"
        )));
    }
    let local = inet::local_addr(s).map_err(|e| err(format!("getsockname: {e}")))?;
    let peer = inet::peer_addr(s).map_err(|e| err(format!("getpeername: {e}")))?;
    let mut r = InetSocket {
        family: family as u32,
        stype,
        protocol,
        reuseaddr: geti(libc::SOL_SOCKET, libc::SO_REUSEADDR, "SO_REUSEADDR")?,
        reuseport: geti(libc::SOL_SOCKET, libc::SO_REUSEPORT, "SO_REUSEPORT")?,
        keepalive: geti(libc::SOL_SOCKET, libc::SO_KEEPALIVE, "SO_KEEPALIVE")?,
        broadcast: geti(libc::SOL_SOCKET, libc::SO_BROADCAST, "SO_BROADCAST")?,
        linger: inet::get_linger(s)
            .map_err(|e| err(format!("SO_LINGER: {e}")))?
            .map_or(0, |secs| secs + 1),
        ..Default::default()
    };
    if family == libc::AF_INET6 {
        r.v6only = geti(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, "IPV6_V6ONLY")?;
    }
    if let Some(a) = local {
        r.local_addr = ip_bytes(a.ip());
        r.local_port = a.port() as u32;
        if let SocketAddr::V6(v6) = a {
            r.scope_id = v6.scope_id();
        }
    }
    if let Some(a) = peer {
        r.peer_addr = ip_bytes(a.ip());
        r.peer_port = a.port() as u32;
    }
    let sndbuf = geti(libc::SOL_SOCKET, libc::SO_SNDBUF, "SO_SNDBUF")?;
    let rcvbuf = geti(libc::SOL_SOCKET, libc::SO_RCVBUF, "SO_RCVBUF")?;
    if udp {
        r.state = if peer.is_some() { 1 } else { 7 };
        let (wd, rd) = (
            sysctl("/proc/sys/net/core/wmem_default", 0),
            sysctl("/proc/sys/net/core/rmem_default", 0),
        );
        r.sndbuf = if Some(sndbuf) == wd { 0 } else { sndbuf };
        r.rcvbuf = if Some(rcvbuf) == rd { 0 } else { rcvbuf };
        return Ok(Described::Plain(r));
    }
    r.nodelay = geti(libc::IPPROTO_TCP, libc::TCP_NODELAY, "TCP_NODELAY")?;
    r.keepidle = geti(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, "TCP_KEEPIDLE")?;
    r.keepintvl = geti(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, "TCP_KEEPINTVL")?;
    r.keepcnt = geti(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, "TCP_KEEPCNT")?;
    let info = inet::tcp_info(s).map_err(|e| err(format!("TCP_INFO: {e}")))?;
    r.state = info.state;
    let conn = format!("{} -> {}", show(local), show(peer));
    match info.state {
        inet::TCP_LISTEN => {
            r.backlog = info.sacked;
            if info.unacked > 0 && mode != TcpMode::Close {
                return Err(err(format!(
                    "the TCP socket listening on {} has {} connection(s) not yet accepted, which cannot be kept; retry, or drop them with --tcp-close",
                    show(local),
                    info.unacked
                )));
            }
        }
        inet::TCP_CLOSE => {}
        inet::TCP_ESTABLISHED if mode == TcpMode::Established => {
            let reuse = r.reuseaddr != 0;
            return Ok(Described::Repair(r, reuse));
        }
        st => match mode {
            TcpMode::Close => {
                // Restored unconnected and unbound: its port may be the
                // listener's or the peer may hold it.
                r.state = inet::TCP_CLOSE;
                r.local_addr.clear();
                r.local_port = 0;
                r.peer_addr.clear();
                r.peer_port = 0;
                return Ok(Described::Plain(r));
            }
            _ if st == inet::TCP_ESTABLISHED => {
                return Err(err(format!(
                    "an established TCP connection {conn}; keep it with --tcp-established or drop it with --tcp-close"
                )));
            }
            _ => {
                return Err(err(format!(
                    "a TCP connection {conn} in state {}, which cannot be kept; drop it with --tcp-close",
                    state_name(st)
                )));
            }
        },
    }
    // Buffer sizes of listeners and unconnected sockets, when set
    // (established connections size theirs automatically).
    let (wd, rd) = (
        sysctl("/proc/sys/net/ipv4/tcp_wmem", 1),
        sysctl("/proc/sys/net/ipv4/tcp_rmem", 1),
    );
    r.sndbuf = if Some(sndbuf) == wd { 0 } else { sndbuf };
    r.rcvbuf = if Some(rcvbuf) == rd { 0 } else { rcvbuf };
    Ok(Described::Plain(r))
}

/// Puts an established connection in repair mode and reads its state.
fn repair_dump(
    sock: &OwnedFd,
    mut r: InetSocket,
    reuseaddr: bool,
    repaired: &mut Repaired,
    err: &dyn Fn(String) -> Error,
) -> Result<InetSocket> {
    let s = sock.as_fd();
    inet::set_repair(s, true).map_err(|e| {
        if e.raw_os_error() == Some(libc::EPERM) {
            err(format!(
                "cannot put the TCP connection in repair mode: {e} (TCP_REPAIR needs CAP_NET_ADMIN in the socket's network namespace)"
            ))
        } else {
            err(format!("TCP_REPAIR: {e}"))
        }
    })?;
    let mine = s
        .try_clone_to_owned()
        .map_err(|e| err(format!("dup: {e}")))?;
    repaired.socks.push((mine, reuseaddr));
    let io = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| err(format!("{what}: {e}"))
    };
    let info = inet::tcp_info(s).map_err(io("TCP_INFO"))?;
    if info.state != inet::TCP_ESTABLISHED {
        return Err(err(format!(
            "the TCP connection left ESTABLISHED (now {}) while frozen; retry",
            state_name(info.state)
        )));
    }
    r.tcp_options = info.options;
    r.snd_wscale = info.snd_wscale;
    r.rcv_wscale = info.rcv_wscale;
    r.mss = inet::get_int(s, libc::IPPROTO_TCP, libc::TCP_MAXSEG).map_err(io("TCP_MAXSEG"))? as u32;
    if info.options & inet::TCPI_OPT_TIMESTAMPS != 0 {
        r.timestamp = inet::timestamp(s).map_err(io("TCP_TIMESTAMP"))?;
    }
    let w = inet::repair_window(s).map_err(io("TCP_REPAIR_WINDOW"))?;
    (r.snd_wl1, r.snd_wnd, r.max_window, r.rcv_wnd, r.rcv_wup) =
        (w.snd_wl1, w.snd_wnd, w.max_window, w.rcv_wnd, w.rcv_wup);
    let outq = inet::outq(s).map_err(io("SIOCOUTQ"))?;
    r.unsent = inet::outq_unsent(s).map_err(io("SIOCOUTQNSD"))?;
    let inq = inet::inq(s).map_err(io("SIOCINQ"))?;
    inet::set_repair_queue(s, inet::TCP_SEND_QUEUE).map_err(io("TCP_REPAIR_QUEUE"))?;
    r.snd_seq = inet::queue_seq(s).map_err(io("TCP_QUEUE_SEQ"))?;
    r.send_queue = inet::peek_queue(s, outq as usize).map_err(io("reading the send queue"))?;
    inet::set_repair_queue(s, inet::TCP_RECV_QUEUE).map_err(io("TCP_REPAIR_QUEUE"))?;
    r.rcv_seq = inet::queue_seq(s).map_err(io("TCP_QUEUE_SEQ"))?;
    r.recv_queue = inet::peek_queue(s, inq as usize).map_err(io("reading the receive queue"))?;
    inet::set_repair_queue(s, 0).map_err(io("TCP_REPAIR_QUEUE"))?;
    if r.send_queue.len() != outq as usize || r.recv_queue.len() != inq as usize {
        return Err(err(format!(
            "read {} of {outq} bytes of the send queue and {} of {inq} of the receive queue",
            r.send_queue.len(),
            r.recv_queue.len()
        )));
    }
    r.unsent = r.unsent.min(outq);
    r.repair = true;
    Ok(r)
}
