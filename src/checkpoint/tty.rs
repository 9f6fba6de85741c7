//! Pseudo-terminals in the tree: which descriptors are pty ends, the
//! `PTY` record of each pty whose master the tree holds, and each
//! process's controlling terminal.
//!
//! # What is a pty of the image
//!
//! A master is a descriptor whose link is `/dev/ptmx` or `/dev/pts/ptmx`
//! (a character device 5:2); its index comes from `TIOCGPTN` on a
//! duplicate taken with `pidfd_getfd`. A slave is `/dev/pts/N` on the
//! devpts mounted at `/dev/pts` (major 136, minor `N`). A pty is in the
//! image when the tree holds its master: the master becomes
//! `FT_PTY_MASTER`, every slave description `FT_PTY_SLAVE`, both with
//! [`object_id`] of the index. A slave whose master is outside the tree
//! (the terminal the tree was started from) stays `FT_EXTERNAL`. A slave
//! held by a process outside the tree is not followed: after restore that
//! process still holds the old, dead pty.
//!
//! # Reading the waiting data without losing it
//!
//! Bytes waiting in a pty can only be read by consuming them, and `ckpt`
//! leaves the tree running by default, so they are put back at once, while
//! the tree is still frozen:
//!
//! 1. The termios, window size, lock and packet state are read through
//!    the master. A locked slave is unlocked for the moment, and a new
//!    description of the slave is opened (`TIOCGPTPEER`, `O_NONBLOCK`,
//!    `O_NOCTTY`). The master's shared description is made non-blocking
//!    and packet mode is switched off for the moment (otherwise every read
//!    would start with a status byte).
//! 2. The pty is switched to raw settings ([`Termios::transparent`]: no
//!    canonical mode, no echo, no translation, no signals), so a partial
//!    line is readable too, and both queues are read to the end.
//! 3. [`tty::put_back`] queues the bytes again: the slave's input with
//!    `TIOCSTI` (synchronous, in canonical mode when the saved settings
//!    were canonical and no byte is an editing character, so line
//!    boundaries are rebuilt from the newlines), the master's input by
//!    writing to the slave with output processing off.
//! 4. The saved termios, packet mode, lock and file status flags come back.
//!
//! Limits: a pending packet-mode status byte (`TIOCPKT_FLUSHREAD`...) is
//! lost; a canonical line ended by the end-of-file character comes back
//! as its bytes followed by a NUL and without the line end; pending input
//! containing an erase, kill or end-of-file byte of a canonical terminal
//! comes back as one chunk (a single `read` returns all of it); echo
//! state (the column, pending echoes) is not kept; more than 4095 bytes
//! of pending slave input, or `ckpt` without `CAP_SYS_ADMIN` (no
//! `TIOCSTI`), are written through the master, and reach a canonical
//! slave with its own settings (translation and echo applied again).
//! Output stopped with `^S` stays in the writer's system call and is not
//! part of any queue.

use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;

use crate::error::{Error, Result};
use crate::image::{self, FdTable, File, Pty};
use crate::sys::tty::{self, PTS_MAJOR};
use crate::sys::unixdiag::steal_fd;
use crate::sys::{Fd, Pid};

/// The object id of pty `index` in `FILE` and `PTY` records: the index
/// plus one, so it is never 0.
pub fn object_id(index: u32) -> u64 {
    index as u64 + 1
}

/// Whether a character device at `path` is a pty end this module handles:
/// `Some((FT_PTY_MASTER or FT_PTY_SLAVE, index))`. A slave is only
/// tentatively one until [`decide`] knows whether its master is in the
/// tree.
pub fn classify(
    pid: Pid,
    fd: Fd,
    path: &[u8],
    meta: &std::fs::Metadata,
) -> Result<Option<(u8, u32)>> {
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    if (path == b"/dev/ptmx" || path == b"/dev/pts/ptmx") && (major, minor) == (5, 2) {
        let m = steal_fd(pid, fd).map_err(|e| {
            Error::msg(format!(
                "cannot checkpoint pid {pid}: cannot reach its pty master at descriptor {fd}: {e}"
            ))
        })?;
        let index = tty::index(m.as_fd()).map_err(|e| {
            Error::msg(format!(
                "cannot checkpoint pid {pid}: pty master at descriptor {fd}: TIOCGPTN: {e}"
            ))
        })?;
        return Ok(Some((image::FT_PTY_MASTER, index)));
    }
    if path.starts_with(b"/dev/pts/") && major == PTS_MAJOR {
        let same_devpts = std::fs::metadata("/dev/pts").is_ok_and(|d| d.dev() == meta.dev());
        if same_devpts {
            return Ok(Some((image::FT_PTY_SLAVE, minor)));
        }
    }
    Ok(None)
}

/// Once every descriptor is known: slaves whose master is not in the tree
/// become external; every pty whose master is in the tree is read into a
/// `PTY` record (see the module docs for how its data stays in place).
pub fn decide(files: &mut [File], fdtables: &[FdTable]) -> Result<Vec<Pty>> {
    let masters: Vec<(u64, u64)> = files
        .iter()
        .filter(|f| f.ftype == image::FT_PTY_MASTER)
        .map(|f| (f.id, f.object_id))
        .collect();
    for f in files.iter_mut().filter(|f| f.ftype == image::FT_PTY_SLAVE) {
        if !masters.iter().any(|&(_, o)| o == f.object_id) {
            f.ftype = image::FT_EXTERNAL;
            f.object_id = 0;
        }
    }
    let mut out = Vec::new();
    for (id, obj) in masters {
        let (pid, fd) = super::files::holder(fdtables, id).expect("every file has a holder");
        out.push(read_pty(pid, fd, obj)?);
    }
    Ok(out)
}

/// Reads one pty through the master at `fd` of `pid`, leaving it as it was.
fn read_pty(pid: Pid, fd: Fd, id: u64) -> Result<Pty> {
    let err = |what: &str, e: std::io::Error| {
        Error::msg(format!(
            "cannot checkpoint pid {pid}: pty master at descriptor {fd}: {what}: {e}"
        ))
    };
    let m = steal_fd(pid, fd).map_err(|e| err("pidfd_getfd", e))?;
    let m = m.as_fd();
    let index = tty::index(m).map_err(|e| err("TIOCGPTN", e))?;
    let termios = tty::get_termios(m).map_err(|e| err("TCGETS2", e))?;
    let winsize = tty::get_winsize(m).map_err(|e| err("TIOCGWINSZ", e))?;
    let locked = tty::locked(m).map_err(|e| err("TIOCGPTLCK", e))?;
    let packet = tty::packet(m).map_err(|e| err("TIOCGPKT", e))?;
    let flags = tty::status_flags(m).map_err(|e| err("F_GETFL", e))?;
    let mut pty = Pty {
        id,
        index,
        termios: termios.to_bytes().to_vec(),
        winsize: winsize.to_vec(),
        locked,
        packet,
        ..Default::default()
    };
    // Everything below is undone in order whatever happens.
    let moved = (|| -> std::io::Result<(Vec<u8>, Vec<u8>)> {
        tty::set_status_flags(m, flags | libc::O_NONBLOCK)?;
        if packet {
            tty::set_packet(m, false)?;
        }
        if locked {
            tty::set_locked(m, false)?;
        }
        let s = tty::open_slave(m, libc::O_RDWR | libc::O_NONBLOCK)?;
        let data = move_data(m, s.as_fd(), &termios);
        // The tree's view of the lock comes back before the slave closes.
        if locked {
            tty::set_locked(m, true)?;
        }
        data
    })();
    let _ = tty::set_termios(m, &termios);
    let _ = tty::set_packet(m, packet);
    let _ = tty::set_locked(m, locked);
    let _ = tty::set_status_flags(m, flags);
    let (to_slave, to_master) = moved.map_err(|e| err("cannot copy the data waiting in it", e))?;
    pty.to_slave = to_slave;
    pty.to_master = to_master;
    Ok(pty)
}

/// Reads both queues in raw mode and puts them back.
fn move_data(
    m: BorrowedFd,
    s: BorrowedFd,
    saved: &tty::Termios,
) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    tty::set_termios(m, &saved.transparent(false))?;
    let to_slave = tty::drain(s)?;
    let to_master = tty::drain(m)?;
    tty::put_back(m, s, saved, &to_slave, &to_master)?;
    Ok((to_slave, to_master))
}

/// A process's controlling terminal, as [`controlling_terminal`] finds it.
#[derive(Debug)]
pub enum Ctty {
    /// None.
    None,
    /// A terminal that is not a pty of the image: the terminal the tree
    /// was started from.
    Outside,
    /// The slave `FILE` with this id (one the process holds if any), and
    /// the terminal's foreground process group.
    Held(u64, u32),
    /// No process of the tree holds the slave open: this `FILE` (held by
    /// nobody) is to be added for it; and the foreground process group.
    Unheld(File, u32),
}

/// The controlling terminal of a process when it is a pty of the image:
/// `tty_nr` and `tpgid` as its `/proc/PID/stat` showed them while it was
/// frozen.
pub fn controlling_terminal(
    (tty_nr, tpgid): (i32, i32),
    files: &[File],
    ptys: &[Pty],
    fdtable: &FdTable,
) -> Result<Ctty> {
    if tty_nr == 0 {
        return Ok(Ctty::None);
    }
    // `tty_nr` is the kernel's `new_encode_dev` of the device.
    let nr = tty_nr as u32;
    let major = (nr >> 8) & 0xfff;
    let minor = (nr & 0xff) | ((nr >> 12) & 0xfff00);
    if major != PTS_MAJOR || !ptys.iter().any(|p| p.index == minor) {
        return Ok(Ctty::Outside);
    }
    let obj = object_id(minor);
    let pgrp = tpgid.max(0) as u32;
    let slave = |f: &&File| f.ftype == image::FT_PTY_SLAVE && f.object_id == obj;
    let own = files
        .iter()
        .filter(slave)
        .find(|f| fdtable.fds.iter().any(|d| d.file_id == f.id));
    if let Some(f) = own.or_else(|| files.iter().find(slave)) {
        return Ok(Ctty::Held(f.id, pgrp));
    }
    let path = format!("/dev/pts/{minor}").into_bytes();
    let file = File {
        ftype: image::FT_PTY_SLAVE,
        flags: libc::O_RDWR as u32,
        object_id: obj,
        link: path.clone(),
        path,
        mode: libc::S_IFCHR | 0o620,
        rdev: libc::makedev(PTS_MAJOR, minor),
        ..Default::default()
    };
    Ok(Ctty::Unheld(file, pgrp))
}
