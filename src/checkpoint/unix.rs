//! Unix sockets into `SOCKET` records: socket pairs, bound and listening
//! sockets with their connections not yet accepted (which no process
//! holds: found through the listener's `UNIX_DIAG_ICONS`), clients
//! connected to them, datagram sockets connected by name; their options
//! and the data waiting in them (peeked, never consumed; descriptors in
//! flight refused). A socket whose peer is outside the tree is refused, or
//! recorded as disconnected under `ckpt --external-unix=close`.

use std::collections::HashMap;
use std::os::fd::AsFd;

use crate::error::{Error, Result};
use crate::image::{self, File};
use crate::sys::unixdiag::UnixSock;
use crate::sys::unixsock::{self, PeekError};
use crate::sys::{Fd, Pid};

/// What to do with a socket whose peer is outside the tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExternalUnix {
    /// Refuse the checkpoint, naming the process and descriptor.
    #[default]
    Refuse,
    /// Record it with no peer: after the restore it reads what was
    /// queued, then end of file; writes fail with `EPIPE`.
    Close,
}

const LISTEN: u32 = 10;

/// What the sockets of the tree can see: every Unix socket of the network
/// namespace, the ones the tree holds, and for each connection not yet
/// accepted on a listener the tree holds, that listener.
pub struct View<'a> {
    pub diag: &'a HashMap<u64, UnixSock>,
    held: Vec<u64>,
    embryo_of: HashMap<u64, u64>,
    /// Client socket -> the id given to its pending connection.
    pending_of: HashMap<u64, u64>,
    pub external: ExternalUnix,
}

impl<'a> View<'a> {
    pub fn new(diag: &'a HashMap<u64, UnixSock>, held: Vec<u64>, external: ExternalUnix) -> Self {
        let mut embryo_of = HashMap::new();
        let mut pending_of = HashMap::new();
        for id in &held {
            if let Some(u) = diag.get(id).filter(|u| u.state == LISTEN) {
                for (c, e) in pending(u) {
                    embryo_of.insert(e, *id);
                    if c != 0 {
                        pending_of.insert(c, e);
                    }
                }
            }
        }
        View {
            diag,
            held,
            embryo_of,
            pending_of,
            external,
        }
    }

    /// Whether socket `peer` is part of the tree (0: no peer).
    pub fn inside(&self, peer: u64) -> bool {
        peer == 0 || self.held.contains(&peer) || self.embryo_of.contains_key(&peer)
    }
}

/// The records for socket `u`, held by `pid` at `fd` (a listener comes
/// with its pending connections), each with the data waiting in it.
pub fn records(
    pid: Pid,
    fd: Fd,
    f: &File,
    u: &UnixSock,
    view: &View,
) -> Result<Vec<(image::Socket, Vec<u8>)>> {
    let what = || {
        format!(
            "cannot checkpoint pid {pid}: descriptor {fd} ({})",
            String::from_utf8_lossy(&f.link)
        )
    };
    let refuse = |why: String| Error::msg(format!("{}: {why}", what()));
    let sock = crate::sys::unixdiag::steal_fd(pid, fd)
        .map_err(|e| refuse(format!("cannot reach the socket: {e}")))?;
    let opts = unixsock::get_opts(sock.as_fd())
        .map_err(|e| refuse(format!("cannot read its options: {e}")))?;
    let mut s = image::Socket {
        id: u.ino,
        family: libc::AF_UNIX as u32,
        stype: u.stype,
        peer: u.peer,
        state: u.state,
        shutdown: u.shutdown,
        rcvbuf: opts.rcvbuf,
        sndbuf: opts.sndbuf,
        passcred: opts.passcred,
        rcvtimeo_us: opts.rcvtimeo_us,
        sndtimeo_us: opts.sndtimeo_us,
        peek_off: opts.peek_off,
        ..Default::default()
    };
    // A connected stream socket keeps no name of its own (an accepted one
    // shows its listener's): only the others are bound again.
    let connected_stream = u.state == 1 && u.stype != libc::SOCK_DGRAM as u32;
    if !u.name.is_empty() && !connected_stream {
        let (path, mode) = bound_name(pid, u).map_err(refuse)?;
        s.path = path;
        s.path_mode = mode;
    }
    if let Some(&e) = view.pending_of.get(&u.ino) {
        // A client whose connection is not accepted yet.
        s.peer = e;
    } else if !view.inside(u.peer) || pending_outside(u) {
        if view.external == ExternalUnix::Refuse {
            return Err(refuse(
                "a Unix socket connected to a process outside the tree \
                 (ckpt --external-unix=close records it disconnected)"
                    .into(),
            ));
        }
        s.peer = 0;
        s.external = true;
    }
    if u.stype == libc::SOCK_DGRAM as u32 && s.peer != 0 {
        let Some(p) = view.diag.get(&s.peer) else {
            return Err(refuse("its peer vanished during the checkpoint".into()));
        };
        let mutual = p.peer == u.ino && p.name.is_empty() && u.name.is_empty();
        if !mutual {
            if p.name.is_empty() {
                return Err(refuse(
                    "a datagram socket connected to an unnamed socket that is not its pair, \
                     which is not supported"
                        .into(),
                ));
            }
            s.peer_path = bound_name(pid, p).map_err(refuse)?.0;
        }
    }
    if u.state == LISTEN {
        return listening(s, u, view, &refuse);
    }
    let data = unixsock::peek_queue(sock.as_fd()).map_err(|e| match e {
        PeekError::InFlight(n) => refuse(format!(
            "a Unix socket with {n} descriptor(s) in flight (SCM_RIGHTS) in its queue, \
             which is not supported"
        )),
        PeekError::Io(e) => refuse(format!("cannot peek at its queue: {e}")),
    })?;
    s.data_len = data.len() as u64;
    Ok(vec![(s, data)])
}

/// A listening socket's record `s` first, then one for each connection
/// waiting to be accepted (the socket an accept would return, connected
/// to its client).
fn listening(
    mut s: image::Socket,
    u: &UnixSock,
    view: &View,
    refuse: &dyn Fn(String) -> Error,
) -> Result<Vec<(image::Socket, Vec<u8>)>> {
    let mut out = Vec::new();
    s.backlog = u.wqueue;
    for (client, e) in pending(u) {
        // What the client sent is queued on the pending socket, which
        // only an accept could read.
        let sent = view.diag.get(&client).map_or(0, |c| c.wqueue);
        if sent > 0 {
            return Err(refuse(format!(
                "a listening socket with a connection not yet accepted that carries {sent} \
                 unread bytes, which cannot be read without accepting it"
            )));
        }
        let mut em = image::Socket {
            id: e,
            family: libc::AF_UNIX as u32,
            stype: u.stype,
            state: 1,
            listener: u.ino,
            peer: client,
            ..Default::default()
        };
        if !view.held.contains(&client) {
            if client != 0 && view.external == ExternalUnix::Refuse {
                return Err(refuse(
                    "a listening socket with a connection not yet accepted from a process \
                     outside the tree (ckpt --external-unix=close records it closed)"
                        .into(),
                ));
            }
            em.external = client != 0;
            em.peer = 0;
        }
        s.pending.push(e);
        out.push((em, Vec::new()));
    }
    out.insert(0, (s, Vec::new()));
    Ok(out)
}

/// Whether `u` is a client whose connection waits on a listener outside
/// the tree: connected, but to a socket with no inode (a pending one), and
/// not shut down as a socket whose peer closed is.
fn pending_outside(u: &UnixSock) -> bool {
    u.state == 1 && u.stype != libc::SOCK_DGRAM as u32 && u.peer == 0 && u.shutdown != 3
}

/// The connections not yet accepted on listener `u`, in queue order:
/// `(client, id)`. The kernel lists the clients (0 for one that is gone);
/// the pending sockets themselves have no inode, so each gets an id no
/// inode has.
fn pending(u: &UnixSock) -> Vec<(u64, u64)> {
    u.icons
        .iter()
        .enumerate()
        .map(|(k, &c)| (c, 1 << 61 | u.ino << 16 | k as u64))
        .collect()
}

/// A bound name as the image keeps it: abstract names as they are,
/// filesystem names made absolute (a relative name is looked for in the
/// process's working directory), with the socket file's permission bits
/// when the file is still the one bound.
fn bound_name(pid: Pid, u: &UnixSock) -> std::result::Result<(Vec<u8>, u32), String> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let name = &u.name;
    if name.starts_with(b"\0") {
        return Ok((name.clone(), 0));
    }
    let shown = String::from_utf8_lossy(name).into_owned();
    let path: Vec<u8> = if name.starts_with(b"/") {
        name.clone()
    } else {
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
            .map_err(|e| format!("cannot resolve relative socket name {shown}: {e}"))?;
        let mut p = cwd.as_os_str().as_bytes().to_vec();
        p.push(b'/');
        p.extend_from_slice(name);
        p
    };
    let st = std::fs::symlink_metadata(std::ffi::OsStr::from_bytes(&path));
    match st {
        Ok(m) if m.ino() == u.vfs_ino => Ok((path, m.mode() & 0o7777)),
        _ if name.starts_with(b"/") => Ok((path, 0)),
        _ => Err(format!(
            "bound to relative name {shown}, which is not in the process's working directory"
        )),
    }
}
