//! Unix98 pseudo-terminals: the ioctls `ckpt` and `cr-restart` need on a
//! pty master and its slave, as safe functions on borrowed descriptors,
//! and [`put_back`], which queues data in both directions of a pty exactly
//! as it was read.
//!
//! Termios travel as the kernel's `struct termios2` (44 bytes on x86_64:
//! four flag words, the line discipline, 19 control characters, input and
//! output speed). `TCGETS2` reads them; a kernel without it falls back to
//! `TCGETS` (the same layout without the speeds).
//!
//! Termios and window size ioctls on a master act on its slave (the kernel
//! routes them to the slave end), so everything here can be done through
//! the master alone except reading the slave's input queue.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Major device number of `/dev/pts/N` (index `N` is the minor).
pub const PTS_MAJOR: u32 = 136;
/// Bytes of a `struct termios2`.
pub const TERMIOS_LEN: usize = 44;
/// Control characters in a kernel termios.
const NCCS: usize = 19;
/// The slave's line discipline (`n_tty`) holds at most this many input
/// bytes that `TIOCSTI` can place synchronously.
const N_TTY_ROOM: usize = 4095;

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// An ioctl that writes one `int`.
fn get_int(fd: BorrowedFd, req: libc::Ioctl) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    // SAFETY: the request writes one int into the live `v`.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut v) })?;
    Ok(v)
}

/// An ioctl that reads one `int` through a pointer.
fn set_int(fd: BorrowedFd, req: libc::Ioctl, v: i32) -> io::Result<()> {
    // SAFETY: the request reads one int from the live `v`.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), req, &v) }).map(|_| ())
}

/// The kernel's `struct termios2`, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Termios {
    pub iflag: u32,
    pub oflag: u32,
    pub cflag: u32,
    pub lflag: u32,
    pub line: u8,
    pub cc: [u8; NCCS],
    pub ispeed: u32,
    pub ospeed: u32,
}

impl Termios {
    /// Decodes `struct termios2` bytes; `None` when they are too short.
    pub fn from_bytes(b: &[u8]) -> Option<Termios> {
        if b.len() < TERMIOS_LEN {
            return None;
        }
        let u = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let mut cc = [0u8; NCCS];
        cc.copy_from_slice(&b[17..17 + NCCS]);
        Some(Termios {
            iflag: u(0),
            oflag: u(4),
            cflag: u(8),
            lflag: u(12),
            line: b[16],
            cc,
            ispeed: u(36),
            ospeed: u(40),
        })
    }

    pub fn to_bytes(&self) -> [u8; TERMIOS_LEN] {
        let mut b = [0u8; TERMIOS_LEN];
        b[0..4].copy_from_slice(&self.iflag.to_le_bytes());
        b[4..8].copy_from_slice(&self.oflag.to_le_bytes());
        b[8..12].copy_from_slice(&self.cflag.to_le_bytes());
        b[12..16].copy_from_slice(&self.lflag.to_le_bytes());
        b[16] = self.line;
        b[17..17 + NCCS].copy_from_slice(&self.cc);
        b[36..40].copy_from_slice(&self.ispeed.to_le_bytes());
        b[40..44].copy_from_slice(&self.ospeed.to_le_bytes());
        b
    }

    pub fn canonical(&self) -> bool {
        self.lflag & libc::ICANON != 0
    }

    /// These settings for moving bytes through the pty unchanged: no
    /// output processing, no input translation or flow control, no echo,
    /// no signals, no extended characters. Canonical mode is kept only
    /// when `canonical` (then `\n` and `VEOL` still end lines, and the
    /// erase, kill and end-of-file characters stay special).
    pub fn transparent(&self, canonical: bool) -> Termios {
        let mut t = *self;
        t.oflag &= !libc::OPOST;
        t.iflag &= !(libc::ISTRIP
            | libc::INLCR
            | libc::IGNCR
            | libc::ICRNL
            | libc::IUCLC
            | libc::IXON
            | libc::IXOFF
            | libc::INPCK
            | libc::PARMRK);
        t.lflag &= !(libc::ECHO
            | libc::ECHOE
            | libc::ECHOK
            | libc::ECHONL
            | libc::ECHOCTL
            | libc::ECHOPRT
            | libc::ECHOKE
            | libc::ISIG
            | libc::IEXTEN
            | libc::ICANON);
        if canonical {
            t.lflag |= libc::ICANON;
        } else {
            t.cc[libc::VMIN] = 1;
            t.cc[libc::VTIME] = 0;
        }
        t
    }

    /// Whether `data` can be fed to the line discipline in canonical mode
    /// (with [`Termios::transparent`]) without any byte acting as an
    /// editing or end-of-file character.
    pub fn canonical_safe(&self, data: &[u8]) -> bool {
        let special = [
            self.cc[libc::VERASE],
            self.cc[libc::VKILL],
            self.cc[libc::VEOF],
        ];
        !data.iter().any(|b| special.contains(b))
    }
}

/// The termios of a pty (through either end).
pub fn get_termios(fd: BorrowedFd) -> io::Result<Termios> {
    let mut b = [0u8; 64];
    // SAFETY: TCGETS2 writes a 44-byte struct termios2 into the live
    // 64-byte buffer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TCGETS2, b.as_mut_ptr()) } < 0 {
        b = [0u8; 64];
        // SAFETY: TCGETS writes a 36-byte kernel struct termios into the
        // live buffer; the speeds stay zero.
        check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TCGETS, b.as_mut_ptr()) })?;
    }
    Ok(Termios::from_bytes(&b).expect("64 bytes"))
}

/// Sets the termios of a pty at once (no draining, no flushing).
pub fn set_termios(fd: BorrowedFd, t: &Termios) -> io::Result<()> {
    let b = t.to_bytes();
    // SAFETY: TCSETS2 reads a 44-byte struct termios2 from the live buffer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TCSETS2, b.as_ptr()) } == 0 {
        return Ok(());
    }
    // SAFETY: TCSETS reads the first 36 bytes (no speeds) of the live buffer.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TCSETS, b.as_ptr()) }).map(|_| ())
}

/// `struct winsize` bytes (rows, columns, x and y pixels).
pub fn get_winsize(fd: BorrowedFd) -> io::Result<[u8; 8]> {
    let mut b = [0u8; 8];
    // SAFETY: TIOCGWINSZ writes an 8-byte struct winsize into the live buffer.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, b.as_mut_ptr()) })?;
    Ok(b)
}

pub fn set_winsize(fd: BorrowedFd, ws: &[u8; 8]) -> io::Result<()> {
    // SAFETY: TIOCSWINSZ reads an 8-byte struct winsize from the live buffer.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, ws.as_ptr()) }).map(|_| ())
}

/// The index `N` of a master's slave `/dev/pts/N`.
pub fn index(master: BorrowedFd) -> io::Result<u32> {
    get_int(master, libc::TIOCGPTN).map(|n| n as u32)
}

/// Whether the slave is locked (cannot be opened; `unlockpt` not called).
pub fn locked(master: BorrowedFd) -> io::Result<bool> {
    get_int(master, libc::TIOCGPTLCK).map(|v| v != 0)
}

pub fn set_locked(master: BorrowedFd, on: bool) -> io::Result<()> {
    set_int(master, libc::TIOCSPTLCK, on as i32)
}

/// Whether the master is in packet mode (`TIOCPKT`).
pub fn packet(master: BorrowedFd) -> io::Result<bool> {
    get_int(master, libc::TIOCGPKT).map(|v| v != 0)
}

pub fn set_packet(master: BorrowedFd, on: bool) -> io::Result<()> {
    set_int(master, libc::TIOCPKT, on as i32)
}

/// Opens `/dev/ptmx`: a new pty with the lowest free index.
pub fn open_ptmx() -> io::Result<OwnedFd> {
    // SAFETY: open reads the live NUL-terminated path.
    let fd = check(unsafe {
        libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: open just returned this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A new open file description of the master's slave (`TIOCGPTPEER`),
/// with `flags` (access mode and status flags).
pub fn open_slave(master: BorrowedFd, flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: TIOCGPTPEER takes its flags by value and returns a new descriptor.
    let fd = check(unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            (flags | libc::O_NOCTTY | libc::O_CLOEXEC) as libc::c_ulong,
        )
    })?;
    // SAFETY: the ioctl just returned this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The file status flags (`F_GETFL`).
pub fn status_flags(fd: BorrowedFd) -> io::Result<i32> {
    // SAFETY: F_GETFL takes no argument.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })
}

pub fn set_status_flags(fd: BorrowedFd, flags: i32) -> io::Result<()> {
    // SAFETY: F_SETFL takes an int by value.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) }).map(|_| ())
}

/// Makes the pty the controlling terminal of the calling session leader.
pub fn set_controlling(fd: BorrowedFd) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an int by value (0: do not steal).
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) }).map(|_| ())
}

/// The first of descriptors 0, 1 and 2 that is the caller's controlling
/// terminal while the caller's process group is in its foreground, as a
/// close-on-exec duplicate; `None` when there is none (a pipe, a file, a
/// terminal of another session, or a caller in the background).
pub fn own_foreground_terminal() -> Option<OwnedFd> {
    // SAFETY: getsid and getpgrp take and return integers.
    let (sid, pgrp) = unsafe { (libc::getsid(0), libc::getpgrp()) };
    (0..3).find_map(|fd| {
        // SAFETY: 0, 1 and 2 are only borrowed for these ioctls; a closed
        // one fails with EBADF.
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        // TIOCGSID fails (ENOTTY) on a terminal that is not ours.
        let ours = get_int(b, libc::TIOCGSID).ok()? == sid && foreground(b).ok()? == pgrp;
        ours.then(|| b.try_clone_to_owned().ok()).flatten()
    })
}

/// The terminal's foreground process group (`TIOCGPGRP`).
pub fn foreground(fd: BorrowedFd) -> io::Result<i32> {
    get_int(fd, libc::TIOCGPGRP)
}

/// Makes `pgrp` the terminal's foreground process group (`TIOCSPGRP`),
/// with `SIGTTOU` blocked in the calling thread meanwhile: a caller outside
/// the foreground would otherwise be stopped by it.
pub fn set_foreground(fd: BorrowedFd, pgrp: i32) -> io::Result<()> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    let mut old = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut old))?;
    let r = set_int(fd, libc::TIOCSPGRP, pgrp);
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    r
}

/// Reads everything waiting on a non-blocking tty descriptor. A read
/// that finds nothing first waits for the kernel's pending input work,
/// so bytes still on their way into the line discipline are included.
pub fn drain(fd: BorrowedFd) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 << 10];
    loop {
        match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EINTR) => {}
            // EIO: the other end is closed and nothing is left.
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EIO) => return Ok(out),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Writes all of `data` to a non-blocking descriptor, waiting up to a
/// few seconds for room.
pub fn write_all(fd: BorrowedFd, mut data: &[u8]) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => {
                if Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no room in the pty for the data it held",
                    ));
                }
                let mut p = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLOUT)];
                let _ = nix::poll::poll(&mut p, nix::poll::PollTimeout::from(100u16));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Puts bytes into the slave's input queue as if they had arrived from
/// the master, at once (`TIOCSTI`, which needs `CAP_SYS_ADMIN`). Returns
/// how many were placed before the first refusal.
fn inject(slave: BorrowedFd, data: &[u8]) -> usize {
    for (i, b) in data.iter().enumerate() {
        // SAFETY: TIOCSTI reads one byte from the live slice.
        if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSTI, b as *const u8) } < 0 {
            return i;
        }
    }
    data.len()
}

/// Queues data in both directions of a pty, whose termios are `saved`:
/// `to_slave` becomes input the slave will read, `to_master` output the
/// master will read, each byte-exact. Both descriptors must be
/// non-blocking; the termios are `saved` again on return, also on error.
///
/// The bytes pass through the line discipline with
/// [`Termios::transparent`] settings (no translation, echo or signals).
/// The slave's input is placed with `TIOCSTI`, synchronously, so it is
/// in the queue before the saved settings come back; canonical mode is
/// kept while placing it when no byte is an editing character, so line
/// boundaries survive. Without `CAP_SYS_ADMIN`, and past the line
/// discipline's 4095 bytes, input is written to the master instead and
/// reaches the slave shortly after, under the saved settings.
pub fn put_back(
    master: BorrowedFd,
    slave: BorrowedFd,
    saved: &Termios,
    to_slave: &[u8],
    to_master: &[u8],
) -> io::Result<()> {
    let canon = saved.canonical() && saved.canonical_safe(to_slave);
    set_termios(master, &saved.transparent(canon))?;
    let res = (|| {
        let room = to_slave.len().min(N_TTY_ROOM);
        let placed = inject(slave, &to_slave[..room]);
        write_all(master, &to_slave[placed..])?;
        write_all(slave, to_master)
    })();
    let back = set_termios(master, saved);
    res.and(back)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn termios_bytes_round_trip() {
        let mut t = Termios {
            iflag: 1,
            oflag: 2,
            cflag: 3,
            lflag: libc::ICANON | libc::ECHO,
            line: 0,
            cc: [7; NCCS],
            ispeed: 38400,
            ospeed: 9600,
        };
        t.cc[libc::VERASE] = 0x7f;
        assert_eq!(Termios::from_bytes(&t.to_bytes()), Some(t));
        assert_eq!(Termios::from_bytes(&[0u8; 10]), None);
        let raw = t.transparent(false);
        assert!(!raw.canonical() && raw.lflag & libc::ECHO == 0);
        assert!(t.transparent(true).canonical());
        assert!(t.canonical_safe(b"abc\n"));
        assert!(!t.canonical_safe(b"ab\x7f"));
    }

    /// A pty of our own: data put back in both directions reads back
    /// exactly, and the settings are as they were.
    #[test]
    fn put_back_is_byte_exact() {
        let m = open_ptmx().unwrap();
        set_locked(m.as_fd(), false).unwrap();
        let s = open_slave(m.as_fd(), libc::O_RDWR | libc::O_NONBLOCK).unwrap();
        let saved = get_termios(m.as_fd()).unwrap();
        let to_slave: Vec<u8> = (0..=255u8).chain(b"line\n".iter().copied()).collect();
        let to_master: Vec<u8> = (0..=255u8).rev().collect();
        put_back(m.as_fd(), s.as_fd(), &saved, &to_slave, &to_master).unwrap();
        assert_eq!(get_termios(m.as_fd()).unwrap(), saved);
        set_termios(m.as_fd(), &saved.transparent(false)).unwrap();
        assert_eq!(drain(s.as_fd()).unwrap(), to_slave);
        assert_eq!(drain(m.as_fd()).unwrap(), to_master);
    }
}
