//! Making the Unix sockets of `SOCKET` records, in the restorer, before
//! the processes get them:
//!
//! - a pair whose two ends are in the image: `socketpair`;
//! - a socket whose peer was gone (or outside, `ckpt
//!   --external-unix=close`): a pair whose stand-in end is closed once
//!   the data is queued;
//! - a listener: `socket`, `bind` to its name (a stale socket file is
//!   removed first, anything else in the way refused), `listen` with its
//!   backlog, then its pending connections made again in queue order by
//!   connecting a new client for each (the image's client, or a stand-in
//!   closed at the end);
//! - any other: `socket`, `bind` when it was bound; a datagram socket
//!   connected to a name is connected again after its queue is filled.
//!
//! Data is queued from the peer of a pair, from the stand-in, or (a named
//! datagram socket) sent to its name from a socket of the restorer's; then
//! options and shutdowns are applied ([`finish`]).

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};

use nix::sys::socket::SockType as NixSockType;

use crate::error::{Context, Error, Result};
use crate::image::{File, SockType};
use crate::sys::unixsock::{self, UnixOpts};

use super::asuser::Acting;
use super::meta::SocketImage;

const LISTEN: u32 = 10;
/// Key of a stand-in peer, closed once data is queued.
const STAND_IN: u64 = 1 << 62;

/// Sockets made so far.
#[derive(Default)]
pub struct Made {
    /// By socket id; stand-ins under `id | STAND_IN`.
    fds: HashMap<u64, OwnedFd>,
    /// Ends of pairs made with `socketpair` (their data comes from the
    /// peer).
    pairs: HashSet<u64>,
    /// Datagram sockets to connect by name once their queues are filled.
    connects: Vec<(u64, Vec<u8>)>,
    /// A socket of the restorer's that sends queued datagrams to names.
    sender: std::cell::OnceCell<OwnedFd>,
}

fn invalid(id: u64, what: &str) -> Error {
    Error::msg(format!("invalid image: socket {id}: {what}"))
}

fn shown(name: &[u8]) -> String {
    match name.strip_prefix(b"\0") {
        Some(a) => format!("@{}", String::from_utf8_lossy(a)),
        None => String::from_utf8_lossy(name).into_owned(),
    }
}

/// The socket type as nix names it.
fn nix_type(t: SockType) -> NixSockType {
    match t {
        SockType::Stream => NixSockType::Stream,
        SockType::Datagram => NixSockType::Datagram,
        SockType::SeqPacket => NixSockType::SeqPacket,
    }
}

fn opts(s: &SocketImage) -> UnixOpts {
    UnixOpts {
        rcvbuf: s.rcvbuf,
        sndbuf: s.sndbuf,
        passcred: s.passcred,
        rcvtimeo_us: s.rcvtimeo_us,
        sndtimeo_us: s.sndtimeo_us,
        peek_off: s.peek_off,
    }
}

/// A socket for `f`, to be held at a descriptor: a new description of the
/// socket, made first if need be.
pub fn open(
    records: &HashMap<u64, SocketImage>,
    made: &mut Made,
    f: &File,
    acting: &Acting,
) -> Result<OwnedFd> {
    let id = f.object_id;
    ensure(records, made, id, acting)?;
    let fd = made.fds[&id].try_clone().ctx(|| "dup".into())?;
    let nb = nix::fcntl::OFlag::from_bits_truncate(f.flags as i32 & libc::O_NONBLOCK);
    nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        nix::fcntl::FcntlArg::F_SETFL(nb),
    )
    .ctx(|| "fcntl".into())?;
    Ok(fd)
}

fn ensure(
    records: &HashMap<u64, SocketImage>,
    made: &mut Made,
    id: u64,
    acting: &Acting,
) -> Result<()> {
    if made.fds.contains_key(&id) {
        return Ok(());
    }
    let s = records
        .get(&id)
        .ok_or_else(|| invalid(id, "a descriptor refers to it but it has no record"))?;
    check(s)?;
    if s.listener != 0 {
        return Err(invalid(
            id,
            "a connection not yet accepted is held at a descriptor",
        ));
    }
    let peer = (s.peer != 0).then(|| records.get(&s.peer)).flatten();
    if let Some(p) = peer.filter(|p| p.listener != 0) {
        // The client of a connection not yet accepted: made with its listener.
        let l = records
            .get(&p.listener)
            .ok_or_else(|| invalid(id, "its peer is pending on a listener that has no record"))?;
        check(l)?;
        listener(records, made, l, acting)?;
        if !made.fds.contains_key(&id) {
            return Err(invalid(
                id,
                "its peer is not among its listener's pending connections",
            ));
        }
        return Ok(());
    }
    if s.state == LISTEN {
        return listener(records, made, s, acting);
    }
    let ty = nix_type(s.stype);
    let pair = |made: &mut Made, other: u64| -> Result<()> {
        let (a, b) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            ty,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .ctx(|| "cannot create a socket pair".into())?;
        made.fds.insert(id, a);
        made.fds.insert(other, b);
        made.pairs.insert(id);
        made.pairs.insert(other);
        Ok(())
    };
    if let Some(p) = peer
        && p.peer == id
        && p.stype == s.stype
        && s.path.is_empty()
        && p.path.is_empty()
        && p.state != LISTEN
    {
        return pair(made, s.peer);
    }
    let connected_stream = s.state == 1 && s.stype != SockType::Datagram;
    if s.path.is_empty() && s.peer_path.is_empty() && (connected_stream || s.data_len > 0) {
        // Its peer was gone: a stand-in peer, closed once data is queued.
        return pair(made, id | STAND_IN);
    }
    if connected_stream {
        return Err(invalid(
            id,
            "a connected stream socket whose peer is neither in the image nor gone",
        ));
    }
    let sock = unixsock::new_socket(ty).ctx(|| "cannot create a socket".into())?;
    if !s.path.is_empty() {
        bind(&sock, s, acting)?;
    }
    if !s.peer_path.is_empty() {
        made.connects.push((id, s.peer_path.clone()));
    }
    made.fds.insert(id, sock);
    Ok(())
}

/// Checks what every socket record must have (its type was decoded when
/// the image was validated).
fn check(s: &SocketImage) -> Result<()> {
    if s.family != libc::AF_UNIX as u32 {
        return Err(invalid(
            s.id,
            &format!("family {} is not AF_UNIX", s.family),
        ));
    }
    for name in [&s.path, &s.peer_path] {
        if name.len() > 107 || (!name.is_empty() && name[0] != 0 && name[0] != b'/') {
            return Err(invalid(
                s.id,
                &format!("{} is not a name a socket can have", shown(name)),
            ));
        }
    }
    if s.state == LISTEN && (s.path.is_empty() || s.stype == SockType::Datagram) {
        return Err(invalid(s.id, "a listener with no name, or of datagrams"));
    }
    Ok(())
}

/// Binds `sock` to the name of `s`, as the process it is for. A socket
/// file left by a socket nobody has bound any more is removed first.
fn bind(sock: &OwnedFd, s: &SocketImage, acting: &Acting) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let name = shown(&s.path);
    let cant = |why: String| Error::msg(format!("cannot bind a socket to {name}: {why}"));
    acting.run(|| {
        if s.path[0] == b'/' {
            let path = std::path::Path::new(std::ffi::OsStr::from_bytes(&s.path));
            match std::fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_socket() => {
                    let live = crate::sys::unixdiag::unix_sockets()
                        .map_err(|e| cant(format!("cannot list Unix sockets: {e}")))?;
                    if live
                        .values()
                        .any(|u| u.vfs_ino == m.ino() && u.vfs_ino != 0)
                    {
                        return Err(cant("a running socket is bound to it".into()));
                    }
                    std::fs::remove_file(path)
                        .map_err(|e| cant(format!("cannot remove the stale socket file: {e}")))?;
                }
                Ok(_) => return Err(cant("a file that is not a socket is in the way".into())),
                Err(_) => {}
            }
        }
        unixsock::bind(sock.as_fd(), &s.path).map_err(|e| cant(e.to_string()))?;
        if s.path[0] == b'/' && s.path_mode != 0 {
            let path = std::path::Path::new(std::ffi::OsStr::from_bytes(&s.path));
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(s.path_mode))
                .map_err(|e| cant(format!("cannot set its permissions: {e}")))?;
        }
        Ok(())
    })
}

/// A listener, bound and listening, with its pending connections made
/// again in queue order.
fn listener(
    records: &HashMap<u64, SocketImage>,
    made: &mut Made,
    l: &SocketImage,
    acting: &Acting,
) -> Result<()> {
    if made.fds.contains_key(&l.id) {
        return Ok(());
    }
    if l.state != LISTEN {
        return Err(invalid(
            l.id,
            "has pending connections but is not listening",
        ));
    }
    let sock = unixsock::new_socket(nix_type(l.stype)).ctx(|| "cannot create a socket".into())?;
    bind(&sock, l, acting)?;
    unixsock::listen(sock.as_fd(), l.backlog)
        .ctx(|| format!("cannot listen on {}", shown(&l.path)))?;
    made.fds.insert(l.id, sock);
    for &e in l.pending.iter() {
        let em = match records.get(&e) {
            Some(em) if em.listener == l.id && em.stype == l.stype => em,
            Some(em) => {
                return Err(invalid(
                    l.id,
                    &format!(
                        "pending connection {e} is pending on {}, of type {}",
                        em.listener,
                        em.stype.wire()
                    ),
                ));
            }
            None => {
                return Err(invalid(
                    l.id,
                    &format!("pending connection {e} has no record"),
                ));
            }
        };
        let client =
            unixsock::new_socket(nix_type(l.stype)).ctx(|| "cannot create a socket".into())?;
        unixsock::connect_nonblock(client.as_fd(), &l.path).ctx(|| {
            format!(
                "cannot make a pending connection on {} again",
                shown(&l.path)
            )
        })?;
        let key = if em.peer == 0 {
            e | STAND_IN
        } else {
            match records.get(&em.peer) {
                Some(c) if c.peer == e && c.listener == 0 => em.peer,
                _ => {
                    return Err(invalid(
                        e,
                        "its client's record does not name it as its peer",
                    ));
                }
            }
        };
        if made.fds.insert(key, client).is_some() {
            return Err(invalid(e, "its client is pending twice"));
        }
    }
    Ok(())
}

/// Queues data that was waiting to be read on socket `id`
/// (length-prefixed messages).
pub fn fill(
    records: &HashMap<u64, SocketImage>,
    made: &Made,
    id: u64,
    mut data: &[u8],
) -> Result<()> {
    let s = records
        .get(&id)
        .ok_or_else(|| Error::msg(format!("invalid image: data for unknown socket {id}")))?;
    let named_dgram = s.stype == SockType::Datagram
        && !s.path.is_empty()
        && made.fds.contains_key(&id)
        && !made.pairs.contains(&id);
    if named_dgram && made.sender.get().is_none() {
        let snd =
            unixsock::new_socket(NixSockType::Datagram).ctx(|| "cannot create a socket".into())?;
        let _ = made.sender.set(snd);
    }
    let (from, to): (std::os::fd::BorrowedFd, Option<&[u8]>) =
        if let Some(f) = made.fds.get(&(id | STAND_IN)) {
            (f.as_fd(), None)
        } else if made.pairs.contains(&id) {
            (made.fds[&s.peer].as_fd(), None)
        } else if named_dgram {
            (made.sender.get().expect("made").as_fd(), Some(&s.path[..]))
        } else {
            return Err(invalid(id, "it has data but nothing can send it to it"));
        };
    unixsock::raise_sndbuf(from, data.len() * 2 + (64 << 10));
    while !data.is_empty() {
        if data.len() < 4 {
            return Err(invalid(id, "its data is cut short"));
        }
        let n = u32::from_le_bytes(data[..4].try_into().expect("4 bytes")) as usize;
        let msg = data
            .get(4..4 + n)
            .ok_or_else(|| invalid(id, "its data is cut short"))?;
        match unixsock::send_to(from, msg, to) {
            Ok(r) if r == n => {}
            Ok(r) => {
                return Err(Error::msg(format!(
                    "cannot queue {n} bytes on socket {id}: only {r} were taken"
                )));
            }
            Err(e) => {
                return Err(Error::msg(format!(
                    "cannot queue {n} bytes on socket {id}: {e}"
                )));
            }
        }
        data = &data[4 + n..];
    }
    Ok(())
}

/// After all data is queued: datagram sockets connected by name, options,
/// shutdowns; the stand-ins closed.
pub fn finish(records: &HashMap<u64, SocketImage>, made: &mut Made) -> Result<()> {
    for (id, name) in std::mem::take(&mut made.connects) {
        let fd = &made.fds[&id];
        nix::sys::socket::connect(
            std::os::fd::AsRawFd::as_raw_fd(fd),
            &unixsock::addr(&name).map_err(|e| invalid(id, &e.to_string()))?,
        )
        .ctx(|| format!("cannot connect socket {id} to {} again", shown(&name)))?;
    }
    for s in records.values() {
        let Some(fd) = made.fds.get(&s.id) else {
            continue;
        };
        // Images made before options were recorded have none (0).
        if s.rcvbuf != 0 {
            unixsock::set_opts(fd.as_fd(), &opts(s))
                .ctx(|| format!("cannot give socket {} its options", s.id))?;
        }
        let how = match s.shutdown & 3 {
            1 => Some(nix::sys::socket::Shutdown::Read),
            2 => Some(nix::sys::socket::Shutdown::Write),
            3 => Some(nix::sys::socket::Shutdown::Both),
            _ => None,
        };
        if let Some(how) = how {
            nix::sys::socket::shutdown(std::os::fd::AsRawFd::as_raw_fd(fd), how)
                .ctx(|| format!("cannot shut down socket {}", s.id))?;
        }
    }
    made.fds.retain(|id, _| id & STAND_IN == 0);
    made.sender = Default::default();
    Ok(())
}
