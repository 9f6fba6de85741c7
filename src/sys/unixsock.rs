//! Unix socket operations the checkpoint and the restore need beyond what
//! `nix` offers: socket options read and set as one value
//! ([`UnixOpts`]), the receive queue peeked whole with descriptors in
//! flight detected ([`peek_queue`]), and names (filesystem paths or
//! `\0`-led abstract names) turned into addresses.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::sys::socket::{self, UnixAddr, sockopt};

/// The socket options a restore gives back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnixOpts {
    /// `SO_RCVBUF`, `SO_SNDBUF` as `getsockopt` shows them (twice what
    /// was set).
    pub rcvbuf: u32,
    pub sndbuf: u32,
    pub passcred: bool,
    /// `SO_RCVTIMEO`, `SO_SNDTIMEO` in microseconds (0: none).
    pub rcvtimeo_us: u64,
    pub sndtimeo_us: u64,
    /// `SO_PEEK_OFF` (-1: off).
    pub peek_off: i32,
}

fn tv_us(tv: nix::sys::time::TimeVal) -> u64 {
    (tv.tv_sec().max(0) as u64) * 1_000_000 + tv.tv_usec().max(0) as u64
}

fn us_tv(us: u64) -> nix::sys::time::TimeVal {
    nix::sys::time::TimeVal::new((us / 1_000_000) as _, (us % 1_000_000) as _)
}

fn get_int(fd: BorrowedFd, opt: libc::c_int) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the live int.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

fn set_int(fd: BorrowedFd, opt: libc::c_int, v: i32) -> io::Result<()> {
    // SAFETY: setsockopt reads one live int.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads the options of a socket.
pub fn get_opts(fd: BorrowedFd) -> io::Result<UnixOpts> {
    let e = |e: nix::Error| io::Error::from_raw_os_error(e as i32);
    Ok(UnixOpts {
        rcvbuf: socket::getsockopt(&fd, sockopt::RcvBuf).map_err(e)? as u32,
        sndbuf: socket::getsockopt(&fd, sockopt::SndBuf).map_err(e)? as u32,
        passcred: socket::getsockopt(&fd, sockopt::PassCred).map_err(e)?,
        rcvtimeo_us: tv_us(socket::getsockopt(&fd, sockopt::ReceiveTimeout).map_err(e)?),
        sndtimeo_us: tv_us(socket::getsockopt(&fd, sockopt::SendTimeout).map_err(e)?),
        peek_off: get_int(fd, libc::SO_PEEK_OFF)?,
    })
}

/// Gives a socket the options `want`, setting only those that differ
/// from what it has (setting a buffer size locks it).
pub fn set_opts(fd: BorrowedFd, want: &UnixOpts) -> io::Result<()> {
    let e = |e: nix::Error| io::Error::from_raw_os_error(e as i32);
    let cur = get_opts(fd)?;
    if want.rcvbuf != cur.rcvbuf && want.rcvbuf > 0 {
        socket::setsockopt(&fd, sockopt::RcvBuf, &(want.rcvbuf as usize / 2)).map_err(e)?;
    }
    if want.sndbuf != cur.sndbuf && want.sndbuf > 0 {
        socket::setsockopt(&fd, sockopt::SndBuf, &(want.sndbuf as usize / 2)).map_err(e)?;
    }
    if want.passcred != cur.passcred {
        socket::setsockopt(&fd, sockopt::PassCred, &want.passcred).map_err(e)?;
    }
    if want.rcvtimeo_us != cur.rcvtimeo_us {
        socket::setsockopt(&fd, sockopt::ReceiveTimeout, &us_tv(want.rcvtimeo_us)).map_err(e)?;
    }
    if want.sndtimeo_us != cur.sndtimeo_us {
        socket::setsockopt(&fd, sockopt::SendTimeout, &us_tv(want.sndtimeo_us)).map_err(e)?;
    }
    if want.peek_off != cur.peek_off {
        set_int(fd, libc::SO_PEEK_OFF, want.peek_off)?;
    }
    Ok(())
}

/// Raises a socket's send buffer as far as allowed (`SO_SNDBUFFORCE` for
/// a privileged caller), so that a whole queue can be sent from it.
pub fn raise_sndbuf(fd: BorrowedFd, bytes: usize) {
    let v = bytes.min(i32::MAX as usize / 2) as i32;
    if set_int(fd, libc::SO_SNDBUFFORCE, v).is_err() {
        let _ = set_int(fd, libc::SO_SNDBUF, v);
    }
}

/// Why a queue could not be peeked.
#[derive(Debug)]
pub enum PeekError {
    /// A message carries descriptors (`SCM_RIGHTS`); how many.
    InFlight(usize),
    Io(io::Error),
}

/// Copies the receive queue of a socket without consuming it, as
/// length-prefixed messages (`u32` length, bytes): one per datagram, or
/// per chunk of a stream. Descriptors in flight are detected (and the
/// copies the kernel made of them for this peek closed). The socket's own
/// `SO_PEEK_OFF` is put back.
pub fn peek_queue(s: BorrowedFd) -> Result<Vec<u8>, PeekError> {
    let old = get_int(s, libc::SO_PEEK_OFF).map_err(PeekError::Io)?;
    set_int(s, libc::SO_PEEK_OFF, 0).map_err(PeekError::Io)?;
    let res = peek_loop(s);
    let _ = set_int(s, libc::SO_PEEK_OFF, old);
    res
}

fn peek_loop(s: BorrowedFd) -> Result<Vec<u8>, PeekError> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 253]);
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        let r = socket::recvmsg::<()>(
            s.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            socket::MsgFlags::MSG_PEEK | socket::MsgFlags::MSG_DONTWAIT,
        );
        let (n, fds) = match r {
            Ok(m) => {
                let mut fds = Vec::new();
                if let Ok(cm) = m.cmsgs() {
                    for c in cm {
                        if let socket::ControlMessageOwned::ScmRights(v) = c {
                            fds.extend(v);
                        }
                    }
                }
                (m.bytes, fds)
            }
            Err(nix::errno::Errno::EAGAIN) => return Ok(out),
            Err(e) => return Err(PeekError::Io(io::Error::from_raw_os_error(e as i32))),
        };
        if !fds.is_empty() {
            for fd in &fds {
                // SAFETY: recvmsg just installed this descriptor in our
                // table for us; nothing else refers to it.
                drop(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
            return Err(PeekError::InFlight(fds.len()));
        }
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&(n as u32).to_le_bytes());
        out.extend_from_slice(&buf[..n]);
    }
}

/// The address of a bound name: a filesystem path, or an abstract name
/// (led by a NUL byte).
pub fn addr(name: &[u8]) -> io::Result<UnixAddr> {
    let r = if let Some(abs) = name.strip_prefix(b"\0") {
        UnixAddr::new_abstract(abs)
    } else {
        UnixAddr::new(name)
    };
    r.map_err(|e| io::Error::from_raw_os_error(e as i32))
}

/// A new Unix socket of type `stype` (close-on-exec).
pub fn new_socket(ty: socket::SockType) -> io::Result<OwnedFd> {
    socket::socket(
        socket::AddressFamily::Unix,
        ty,
        socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| io::Error::from_raw_os_error(e as i32))
}

fn nixerr(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Binds a socket to `name`.
pub fn bind(fd: BorrowedFd, name: &[u8]) -> io::Result<()> {
    socket::bind(fd.as_raw_fd(), &addr(name)?).map_err(nixerr)
}

/// Connects a socket to `name` without blocking.
pub fn connect_nonblock(fd: BorrowedFd, name: &[u8]) -> io::Result<()> {
    let fl = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).map_err(nixerr)?;
    let fl = nix::fcntl::OFlag::from_bits_truncate(fl);
    nix::fcntl::fcntl(
        fd.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(fl | nix::fcntl::OFlag::O_NONBLOCK),
    )
    .map_err(nixerr)?;
    let r = socket::connect(fd.as_raw_fd(), &addr(name)?).map_err(nixerr);
    let _ = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(fl));
    r
}

/// Listens with `backlog`.
pub fn listen(fd: BorrowedFd, backlog: u32) -> io::Result<()> {
    let b = socket::Backlog::new(backlog.min(i32::MAX as u32) as i32)
        .unwrap_or(socket::Backlog::MAXCONN);
    socket::listen(&fd, b).map_err(nixerr)
}

/// Sends one message without blocking, to `name` when given.
pub fn send_to(fd: BorrowedFd, msg: &[u8], name: Option<&[u8]>) -> io::Result<usize> {
    let flags = socket::MsgFlags::MSG_DONTWAIT | socket::MsgFlags::MSG_NOSIGNAL;
    match name {
        Some(n) => socket::sendto(fd.as_raw_fd(), msg, &addr(n)?, flags).map_err(nixerr),
        None => socket::send(fd.as_raw_fd(), msg, flags).map_err(nixerr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    #[test]
    fn options_round_trip_and_descriptors_in_flight_are_seen() {
        let (a, b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let fresh = get_opts(a.as_fd()).unwrap();
        let want = UnixOpts {
            rcvbuf: 65536,
            passcred: true,
            rcvtimeo_us: 1_500_000,
            peek_off: -1,
            ..fresh
        };
        set_opts(b.as_fd(), &want).unwrap();
        let got = get_opts(b.as_fd()).unwrap();
        assert_eq!(got.rcvbuf, 65536);
        assert!(got.passcred);
        assert_eq!(got.rcvtimeo_us, 1_500_000);
        a.send(b"one").unwrap();
        a.send(b"three").unwrap();
        let q = peek_queue(b.as_fd()).unwrap();
        assert_eq!(q, b"\x03\0\0\0one\x05\0\0\0three");
        // Still there.
        let mut buf = [0u8; 8];
        assert_eq!(b.recv(&mut buf).unwrap(), 3);
        b.recv(&mut buf).unwrap();

        let (c, d) = std::os::unix::net::UnixStream::pair().unwrap();
        (&c).write_all(b"x").unwrap();
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        let fds = [file.as_raw_fd()];
        socket::sendmsg::<()>(
            c.as_raw_fd(),
            &[io::IoSlice::new(b"y")],
            &[socket::ControlMessage::ScmRights(&fds)],
            socket::MsgFlags::empty(),
            None,
        )
        .unwrap();
        assert!(matches!(peek_queue(d.as_fd()), Err(PeekError::InFlight(1))));
    }
}
