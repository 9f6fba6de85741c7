//! TCP and UDP sockets (IPv4, IPv6) made anew from `INET` records.
//!
//! All of an image's sockets are made at the first one's use, listeners
//! and bound sockets first, then established connections (so a listener
//! without `SO_REUSEADDR` still gets its port). Options go back before
//! `bind`. An established connection is rebuilt in repair mode: bound to
//! its address, its sequence numbers set, `connect`ed (which in repair
//! mode sends nothing), its MSS, window scales, SACK and timestamps, its
//! windows, its timestamp clock and both queues given back. It stays in
//! repair mode until [`InetSockets::repair_off`], just before the tree is
//! released: a restore that fails before then closes it silently. Leaving
//! repair mode sends a window probe; data that had never been sent goes
//! out then.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::meta::InetImage;
use crate::error::{Error, Result};
use crate::image::{File, InetFamily, InetType};
use crate::sys::inet;

/// The image's TCP and UDP sockets and the ones made so far.
#[derive(Default)]
pub struct InetSockets {
    /// `INET` records, by id.
    pub recs: HashMap<u64, InetImage>,
    made: HashMap<u64, OwnedFd>,
    /// Established connections still in repair mode.
    repairing: Vec<u64>,
}

/// An address of an `INET` record (4 or 16 bytes of IP); `None` when it
/// has none or an impossible one.
pub(super) fn addr(ip: &[u8], port: u32, scope: u32) -> Option<SocketAddr> {
    let port = u16::try_from(port).ok()?;
    match ip.len() {
        4 => {
            let b: [u8; 4] = ip.try_into().ok()?;
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(b)), port))
        }
        16 => {
            let b: [u8; 16] = ip.try_into().ok()?;
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(b),
                port,
                0,
                scope,
            )))
        }
        _ => None,
    }
}

/// `local -> peer` of a record, for messages.
pub fn describe(r: &InetImage) -> String {
    let show = |a: Option<SocketAddr>| a.map_or_else(|| "*".into(), |a| a.to_string());
    let proto = r.proto.name();
    let local = show(addr(&r.local_addr, r.local_port, r.scope_id));
    match addr(&r.peer_addr, r.peer_port, 0) {
        Some(p) => format!("{proto} {local} -> {p}"),
        None if r.state == inet::TCP_LISTEN => format!("{proto} listening on {local}"),
        None => format!("{proto} {local}"),
    }
}

/// Retries an address operation while the original socket may still be
/// going away (`ckpt --kill | cr-restart` on one machine).
fn retry(mut f: impl FnMut() -> std::io::Result<()>) -> std::io::Result<()> {
    let t0 = Instant::now();
    loop {
        match f() {
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EADDRINUSE) | Some(libc::EADDRNOTAVAIL)
                ) && t0.elapsed() < Duration::from_secs(3) =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

/// Refuses an image with established connections unless asked to
/// restore them (`cr-restart --tcp-established`).
pub fn check_established(recs: &HashMap<u64, InetImage>, tcp_established: bool) -> Result<()> {
    let mut kept: Vec<&InetImage> = recs.values().filter(|r| r.repair).collect();
    if kept.is_empty() || tcp_established {
        return Ok(());
    }
    kept.sort_by_key(|r| r.id);
    let first = describe(kept[0]);
    Err(Error::msg(format!(
        "cannot restore: the image holds {} established TCP connection(s) ({first}{}); restore them with --tcp-established",
        kept.len(),
        if kept.len() > 1 { ", ..." } else { "" }
    )))
}

impl InetSockets {
    pub fn new(recs: HashMap<u64, InetImage>) -> Self {
        InetSockets {
            recs,
            ..Default::default()
        }
    }

    /// A descriptor for the socket of file `f`, with its status flags.
    pub fn open(&mut self, f: &File) -> Result<OwnedFd> {
        if self.made.is_empty() {
            self.make_all()?;
        }
        let s = self
            .made
            .get(&f.object_id)
            .ok_or_else(|| super::meta::unresolved(f))?;
        let fd = s.try_clone().map_err(|e| Error::msg(format!("dup: {e}")))?;
        let nb = nix::fcntl::OFlag::from_bits_truncate(f.flags as i32 & libc::O_NONBLOCK);
        nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(nb))
            .map_err(|e| Error::msg(format!("fcntl: {e}")))?;
        Ok(fd)
    }

    fn make_all(&mut self) -> Result<()> {
        let mut order: Vec<&InetImage> = self.recs.values().collect();
        order.sort_by_key(|r| (r.repair, r.id));
        for r in order {
            let fd = make(r).map_err(|e| {
                Error::msg(format!("cannot restore the socket {}: {e}", describe(r)))
            })?;
            if r.repair {
                self.repairing.push(r.id);
            }
            self.made.insert(r.id, fd);
        }
        Ok(())
    }

    /// Takes every established connection out of repair mode, sends the
    /// data that had never been sent, and gives back `SO_REUSEADDR`.
    pub fn repair_off(&mut self) -> Result<()> {
        for id in std::mem::take(&mut self.repairing) {
            let (Some(r), Some(fd)) = (self.recs.get(&id), self.made.get(&id)) else {
                continue;
            };
            let s = fd.as_fd();
            let fail = |what: &str, e: std::io::Error| {
                Error::msg(format!(
                    "cannot restore the connection {}: {what}: {e}",
                    describe(r)
                ))
            };
            inet::set_repair(s, false).map_err(|e| fail("leaving repair mode", e))?;
            if r.reuseaddr != 0 {
                inet::set_int(s, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)
                    .map_err(|e| fail("SO_REUSEADDR", e))?;
            }
            let unsent = (r.unsent as usize).min(r.send_queue.len());
            let tail = &r.send_queue[r.send_queue.len() - unsent..];
            inet::send_all(s, tail).map_err(|e| fail("sending the unsent data", e))?;
        }
        Ok(())
    }
}

fn set(
    fd: std::os::fd::BorrowedFd,
    level: i32,
    opt: i32,
    v: u32,
    what: &str,
) -> std::io::Result<()> {
    inet::set_int(fd, level, opt, v as i32)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{what}: {e}")))
}

/// Makes one socket as its record says.
fn make(r: &InetImage) -> std::io::Result<OwnedFd> {
    let tcp = match r.proto {
        InetType::Tcp => true,
        InetType::Udp => false,
    };
    let fd = inet::socket(
        r.family.wire() as i32,
        r.proto.wire() as i32,
        r.protocol as i32,
    )?;
    let s = fd.as_fd();
    let local = addr(&r.local_addr, r.local_port, r.scope_id);
    let peer = addr(&r.peer_addr, r.peer_port, 0);
    if r.reuseaddr != 0 {
        set(s, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1, "SO_REUSEADDR")?;
    }
    if r.reuseport != 0 {
        set(s, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1, "SO_REUSEPORT")?;
    }
    if r.family == InetFamily::V6 {
        set(
            s,
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            r.v6only,
            "IPV6_V6ONLY",
        )?;
    }
    if r.broadcast != 0 {
        set(s, libc::SOL_SOCKET, libc::SO_BROADCAST, 1, "SO_BROADCAST")?;
    }
    if r.keepalive != 0 {
        set(s, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1, "SO_KEEPALIVE")?;
    }
    if tcp {
        if r.keepidle != 0 {
            set(
                s,
                libc::IPPROTO_TCP,
                libc::TCP_KEEPIDLE,
                r.keepidle,
                "TCP_KEEPIDLE",
            )?;
        }
        if r.keepintvl != 0 {
            set(
                s,
                libc::IPPROTO_TCP,
                libc::TCP_KEEPINTVL,
                r.keepintvl,
                "TCP_KEEPINTVL",
            )?;
        }
        if r.keepcnt != 0 {
            set(
                s,
                libc::IPPROTO_TCP,
                libc::TCP_KEEPCNT,
                r.keepcnt,
                "TCP_KEEPCNT",
            )?;
        }
        if r.nodelay != 0 {
            set(s, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1, "TCP_NODELAY")?;
        }
    }
    // The kernel doubles what it is given.
    if r.sndbuf != 0 {
        set(
            s,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            r.sndbuf / 2,
            "SO_SNDBUF",
        )?;
    }
    if r.rcvbuf != 0 {
        set(
            s,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            r.rcvbuf / 2,
            "SO_RCVBUF",
        )?;
    }
    if r.linger != 0 {
        inet::set_linger(s, r.linger - 1)?;
    }
    if let Some((local, peer)) = &r.established {
        repair_restore(s, r, local, peer)?;
        return Ok(fd);
    }
    if let Some(a) = local.filter(|a| a.port() != 0) {
        retry(|| inet::bind(s, &a))
            .map_err(|e| std::io::Error::new(e.kind(), format!("bind: {e}")))?;
    }
    if tcp && r.state == inet::TCP_LISTEN {
        inet::listen(s, r.backlog.min(i32::MAX as u32) as i32)
            .map_err(|e| std::io::Error::new(e.kind(), format!("listen: {e}")))?;
    } else if !tcp && let Some(p) = peer {
        inet::connect(s, &p).map_err(|e| std::io::Error::new(e.kind(), format!("connect: {e}")))?;
    }
    Ok(fd)
}

/// Rebuilds an established connection in repair mode (CRIU's order).
fn repair_restore(
    s: std::os::fd::BorrowedFd,
    r: &InetImage,
    local: &SocketAddr,
    peer: &SocketAddr,
) -> std::io::Result<()> {
    let ctx = |what: &'static str| {
        move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{what}: {e}"))
    };
    inet::set_repair(s, true).map_err(ctx("TCP_REPAIR (needs CAP_NET_ADMIN)"))?;
    retry(|| inet::bind(s, local)).map_err(ctx("bind"))?;
    let recv_len = r.recv_queue.len() as u32;
    let send_len = r.send_queue.len() as u32;
    inet::set_repair_queue(s, inet::TCP_RECV_QUEUE).map_err(ctx("TCP_REPAIR_QUEUE"))?;
    inet::set_queue_seq(s, r.rcv_seq.wrapping_sub(recv_len)).map_err(ctx("TCP_QUEUE_SEQ"))?;
    inet::set_repair_queue(s, inet::TCP_SEND_QUEUE).map_err(ctx("TCP_REPAIR_QUEUE"))?;
    inet::set_queue_seq(s, r.snd_seq.wrapping_sub(send_len)).map_err(ctx("TCP_QUEUE_SEQ"))?;
    retry(|| inet::connect(s, peer)).map_err(ctx("connect in repair mode"))?;
    inet::set_repair_options(s, r.mss, r.tcp_options, r.snd_wscale, r.rcv_wscale)
        .map_err(ctx("TCP_REPAIR_OPTIONS"))?;
    if r.tcp_options & inet::TCPI_OPT_TIMESTAMPS != 0 {
        inet::set_timestamp(s, r.timestamp).map_err(ctx("TCP_TIMESTAMP"))?;
    }
    // The send queue: what had been sent goes back as sent (the kernel
    // retransmits it if the peer never acknowledged it); the rest is sent
    // for real once repair mode is off.
    let unsent = (r.unsent as usize).min(r.send_queue.len());
    let sent = &r.send_queue[..r.send_queue.len() - unsent];
    // Room for queues larger than a new socket's buffers.
    for (len, opt, force, what) in [
        (
            r.send_queue.len(),
            libc::SO_SNDBUF,
            libc::SO_SNDBUFFORCE,
            "SO_SNDBUFFORCE",
        ),
        (
            r.recv_queue.len(),
            libc::SO_RCVBUF,
            libc::SO_RCVBUFFORCE,
            "SO_RCVBUFFORCE",
        ),
    ] {
        let have = inet::get_int(s, libc::SOL_SOCKET, opt).map_err(ctx("SO_SNDBUF"))? as usize;
        // Queued bytes cost about twice their size in buffer space.
        if len * 2 + (64 << 10) > have {
            let want = (len * 2 + (64 << 10)).min(i32::MAX as usize / 2) as u32;
            set(s, libc::SOL_SOCKET, force, want, what)?;
        }
    }
    inet::set_repair_queue(s, inet::TCP_SEND_QUEUE).map_err(ctx("TCP_REPAIR_QUEUE"))?;
    inet::send_all(s, sent).map_err(ctx("refilling the send queue"))?;
    inet::set_repair_queue(s, inet::TCP_RECV_QUEUE).map_err(ctx("TCP_REPAIR_QUEUE"))?;
    inet::send_all(s, &r.recv_queue).map_err(ctx("refilling the receive queue"))?;
    inet::set_repair_queue(s, 0).map_err(ctx("TCP_REPAIR_QUEUE"))?;
    let w = inet::RepairWindow {
        snd_wl1: r.snd_wl1,
        snd_wnd: r.snd_wnd,
        max_window: r.max_window,
        rcv_wnd: r.rcv_wnd,
        rcv_wup: r.rcv_wup,
    };
    inet::set_repair_window(s, &w).map_err(ctx("TCP_REPAIR_WINDOW"))?;
    Ok(())
}
