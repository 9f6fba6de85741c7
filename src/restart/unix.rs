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
use crate::image::{Fault, File, FileType, SockType, SocketFault};
use crate::sys::unixsock::{self, UnixOpts};

use super::asuser::Acting;
use super::meta::{FileImage, SocketImage};

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
    sender: std::sync::OnceLock<OwnedFd>,
}

fn invalid(id: u64, why: SocketFault) -> Error {
    Fault::Socket { id, why }.into()
}

/// Checks the structure of the Unix sockets the image's files hold (part
/// of `Meta::validate`, which has made sure each has its record): what
/// every socket must have, and how each fits with its peer, its
/// listener and that listener's pending connections, as [`ensure`] and
/// [`listener`] will make them.
pub fn check(
    files: &HashMap<u64, FileImage>,
    records: &HashMap<u64, SocketImage>,
) -> std::result::Result<(), Fault> {
    let held = files
        .values()
        .filter(|f| f.kind == FileType::Socket)
        .filter_map(|f| records.get(&f.object_id));
    for s in held {
        check_held(records, s)?;
    }
    Ok(())
}

/// One socket held at a descriptor (see [`ensure`]).
fn check_held(
    records: &HashMap<u64, SocketImage>,
    s: &SocketImage,
) -> std::result::Result<(), Fault> {
    let id = s.id;
    let bad = |why| Fault::Socket { id, why };
    check_record(s)?;
    if s.listener != 0 {
        return Err(bad(SocketFault::HeldWhilePending));
    }
    let peer = (s.peer != 0).then(|| records.get(&s.peer)).flatten();
    if let Some(p) = peer.filter(|p| p.listener != 0) {
        let l = records
            .get(&p.listener)
            .ok_or(bad(SocketFault::NoListener))?;
        check_record(l)?;
        check_listener(records, l)?;
        // `listener` makes a client for each pending connection with one.
        let client = |e: &u64| records.get(e).is_some_and(|em| em.peer == id);
        if !l.pending.iter().any(client) {
            return Err(bad(SocketFault::NotPending));
        }
        return Ok(());
    }
    if s.state == LISTEN {
        return check_listener(records, s);
    }
    if peer.is_some_and(|p| is_pair(s, p)) || stands_in(s) {
        return Ok(());
    }
    if connected_stream(s) {
        return Err(bad(SocketFault::PeerNowhere));
    }
    Ok(())
}

/// A listener and its pending connections (see [`listener`]).
fn check_listener(
    records: &HashMap<u64, SocketImage>,
    l: &SocketImage,
) -> std::result::Result<(), Fault> {
    if l.state != LISTEN {
        return Err(Fault::Socket {
            id: l.id,
            why: SocketFault::NotListening,
        });
    }
    let mut keys = HashSet::from([l.id]);
    for &e in l.pending.iter() {
        let em = pending_record(records, l, e).map_err(|why| Fault::Socket { id: l.id, why })?;
        let key = client_key(records, e, em).map_err(|why| Fault::Socket { id: e, why })?;
        if !keys.insert(key) {
            return Err(Fault::Socket {
                id: e,
                why: SocketFault::PendingTwice,
            });
        }
    }
    Ok(())
}

/// The record of connection `e` pending on listener `l`.
fn pending_record<'a>(
    records: &'a HashMap<u64, SocketImage>,
    l: &SocketImage,
    e: u64,
) -> std::result::Result<&'a SocketImage, SocketFault> {
    match records.get(&e) {
        Some(em) if em.listener == l.id && em.stype == l.stype => Ok(em),
        Some(em) => Err(SocketFault::PendingElsewhere {
            pending: e,
            listener: em.listener,
            stype: em.stype.wire(),
        }),
        None => Err(SocketFault::PendingMissing { pending: e }),
    }
}

/// Under which key the client of pending connection `e` is made: its
/// client's id, or a stand-in's.
fn client_key(
    records: &HashMap<u64, SocketImage>,
    e: u64,
    em: &SocketImage,
) -> std::result::Result<u64, SocketFault> {
    if em.peer == 0 {
        return Ok(e | STAND_IN);
    }
    match records.get(&em.peer) {
        Some(c) if c.peer == e && c.listener == 0 => Ok(em.peer),
        _ => Err(SocketFault::ClientMismatch),
    }
}

/// Both ends of a connection in the image, unnamed: made with
/// `socketpair`.
fn is_pair(s: &SocketImage, p: &SocketImage) -> bool {
    p.peer == s.id
        && p.stype == s.stype
        && s.path.is_empty()
        && p.path.is_empty()
        && p.state != LISTEN
}

fn connected_stream(s: &SocketImage) -> bool {
    s.state == 1 && s.stype != SockType::Datagram
}

/// A socket whose peer was gone: made with a stand-in peer, closed once
/// data is queued.
fn stands_in(s: &SocketImage) -> bool {
    s.path.is_empty() && s.peer_path.is_empty() && (connected_stream(s) || s.data_len > 0)
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
    // `check` has checked every socket this reaches.
    let s = records
        .get(&id)
        .ok_or_else(|| Error::msg(format!("internal error: socket {id} lost its record")))?;
    let peer = (s.peer != 0).then(|| records.get(&s.peer)).flatten();
    if let Some(p) = peer.filter(|p| p.listener != 0) {
        // The client of a connection not yet accepted: made with its listener.
        let l = records
            .get(&p.listener)
            .ok_or(invalid(id, SocketFault::NoListener))?;
        listener(records, made, l, acting)?;
        if !made.fds.contains_key(&id) {
            return Err(invalid(id, SocketFault::NotPending));
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
    if peer.is_some_and(|p| is_pair(s, p)) {
        return pair(made, s.peer);
    }
    if stands_in(s) {
        // Its peer was gone: a stand-in peer, closed once data is queued.
        return pair(made, id | STAND_IN);
    }
    if connected_stream(s) {
        return Err(invalid(id, SocketFault::PeerNowhere));
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

/// Checks what every socket record made must have (its type was decoded
/// with the rest of the image).
fn check_record(s: &SocketImage) -> std::result::Result<(), Fault> {
    let bad = |why| Fault::Socket { id: s.id, why };
    if s.family != libc::AF_UNIX as u32 {
        return Err(bad(SocketFault::NotUnix { family: s.family }));
    }
    for name in [&s.path, &s.peer_path] {
        if name.len() > 107 || (!name.is_empty() && name[0] != 0 && name[0] != b'/') {
            return Err(bad(SocketFault::BadName { name: shown(name) }));
        }
    }
    if s.state == LISTEN && (s.path.is_empty() || s.stype == SockType::Datagram) {
        return Err(bad(SocketFault::BadListener));
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
        return Err(invalid(l.id, SocketFault::NotListening));
    }
    let sock = unixsock::new_socket(nix_type(l.stype)).ctx(|| "cannot create a socket".into())?;
    bind(&sock, l, acting)?;
    unixsock::listen(sock.as_fd(), l.backlog)
        .ctx(|| format!("cannot listen on {}", shown(&l.path)))?;
    made.fds.insert(l.id, sock);
    for &e in l.pending.iter() {
        let em = pending_record(records, l, e).map_err(|why| invalid(l.id, why))?;
        let client =
            unixsock::new_socket(nix_type(l.stype)).ctx(|| "cannot create a socket".into())?;
        unixsock::connect_nonblock(client.as_fd(), &l.path).ctx(|| {
            format!(
                "cannot make a pending connection on {} again",
                shown(&l.path)
            )
        })?;
        let key = client_key(records, e, em).map_err(|why| invalid(e, why))?;
        if made.fds.insert(key, client).is_some() {
            return Err(invalid(e, SocketFault::PendingTwice));
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
    let s = records.get(&id).ok_or(Fault::DataUnknown {
        target: crate::image::DataTarget::Socket,
        id,
    })?;
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
            return Err(invalid(id, SocketFault::DataUnsendable));
        };
    unixsock::raise_sndbuf(from, data.len() * 2 + (64 << 10));
    while !data.is_empty() {
        if data.len() < 4 {
            return Err(invalid(id, SocketFault::DataCut));
        }
        let n = u32::from_le_bytes(data[..4].try_into().expect("4 bytes")) as usize;
        let msg = data
            .get(4..4 + n)
            .ok_or_else(|| invalid(id, SocketFault::DataCut))?;
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
            &unixsock::addr(&name)
                .ctx(|| format!("cannot connect socket {id} to {} again", shown(&name)))?,
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
