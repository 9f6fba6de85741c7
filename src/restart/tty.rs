//! Recreating the image's pseudo-terminals, handing their ends to the new
//! processes, and giving sessions their controlling terminal back.
//!
//! A pty is made the first time a process needs one of its ends:
//!
//! 1. `/dev/ptmx` is opened until `TIOCGPTN` gives the image's index. The
//!    kernel hands out the lowest free index, so the unwanted ptys opened
//!    on the way are kept open until the wanted one comes and closed
//!    after; a higher index than wanted means the wanted one is taken,
//!    which is an error ("cannot restore pty 3: /dev/pts/3 is in use")
//!    after a short wait for a dying original to let go of it.
//! 2. The slave is unlocked and opened, the window size set, the waiting
//!    data queued in both directions with [`tty::put_back`] (see there
//!    and `checkpoint::tty` for the limits), then the termios, packet mode
//!    and lock state of the image are set, and the restorer's slave is
//!    closed: a pty whose slave no process holds reads `EIO` on its master
//!    as before.
//!
//! The master description goes to the process that held it; every slave
//! description is a new open of the slave (`TIOCGPTPEER`) with its flags.
//!
//! Controlling terminal: a session leader whose `ctty` is a slave of the
//! image takes it with `TIOCSCTTY` right after `setsid`, before it forks
//! the rest of its session (see `child::ChildPlan::ctty`), so its children
//! inherit it. Once every process exists and has joined its group, the
//! leader sets the foreground group with `TIOCSPGRP` through a remote
//! system call ([`set_foreground`]).

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::error::{Context, Error, Result};
use crate::image::{Fault, FileType, Process, Pty};
use crate::sys::ids::Pid;
use crate::sys::tty::{self, Termios};

use super::meta::FileImage;
use super::space::Builder;
use crate::sys::remote::nr;

/// `ioctl(2)` on x86_64.
const NR_IOCTL: i64 = 16;

/// How long to wait for a pty index held by a dying process.
const INDEX_WAIT: Duration = Duration::from_millis(500);

/// Checks the ptys the image's files use (part of `Meta::validate`, which
/// has made sure each has its record): termios and window size whole.
pub fn check(
    files: &HashMap<u64, FileImage>,
    ptys: &HashMap<u64, Pty>,
) -> std::result::Result<(), Fault> {
    let used = files
        .values()
        .filter(|f| matches!(f.kind, FileType::PtyMaster | FileType::PtySlave))
        .filter_map(|f| ptys.get(&f.object_id));
    for p in used {
        let bad = |why| Fault::Pty {
            id: p.id,
            index: p.index,
            why,
        };
        if Termios::from_bytes(&p.termios).is_none() {
            return Err(bad("has short termios"));
        }
        if p.winsize.len() != 8 {
            return Err(bad("has a bad window size"));
        }
    }
    Ok(())
}

/// The image's ptys and the masters made so far, by object id.
#[derive(Default)]
pub struct Ptys {
    pub records: HashMap<u64, Pty>,
    made: HashMap<u64, OwnedFd>,
}

impl Ptys {
    pub fn new(records: HashMap<u64, Pty>) -> Self {
        Ptys {
            records,
            made: HashMap::new(),
        }
    }

    /// A new description for a `FT_PTY_MASTER` or `FT_PTY_SLAVE` file,
    /// making its pty first.
    pub fn open(&mut self, f: &FileImage) -> Result<OwnedFd> {
        let p = self
            .records
            .get(&f.object_id)
            .ok_or_else(|| super::meta::unresolved(f))?;
        let index = p.index;
        let m = match self.made.entry(f.object_id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(make(p)?),
        };
        let m = m.as_fd();
        let status = f.flags as i32 & (libc::O_NONBLOCK | libc::O_APPEND | libc::O_ASYNC);
        if f.kind == FileType::PtyMaster {
            let fd = m.try_clone_to_owned().ctx(|| "dup".into())?;
            tty::set_status_flags(fd.as_fd(), status)
                .ctx(|| format!("cannot set the flags of pty master {index}"))?;
            return Ok(fd);
        }
        let acc = f.flags as i32 & libc::O_ACCMODE;
        let locked = tty::locked(m).ctx(|| format!("pty {index}: TIOCGPTLCK"))?;
        if locked {
            // Locked after the slave was opened: open it anyway.
            tty::set_locked(m, false).ctx(|| format!("pty {index}: TIOCSPTLCK"))?;
        }
        let s = tty::open_slave(m, acc | status);
        if locked {
            tty::set_locked(m, true).ctx(|| format!("pty {index}: TIOCSPTLCK"))?;
        }
        s.ctx(|| format!("cannot open /dev/pts/{index}"))
    }
}

/// Opens `/dev/ptmx` until the pty with `index` comes.
fn allocate(index: u32) -> Result<OwnedFd> {
    let deadline = Instant::now() + INDEX_WAIT;
    loop {
        let mut unwanted = Vec::new();
        loop {
            let m = tty::open_ptmx().ctx(|| format!("cannot restore pty {index}: /dev/ptmx"))?;
            let got =
                tty::index(m.as_fd()).ctx(|| format!("cannot restore pty {index}: TIOCGPTN"))?;
            if got == index {
                return Ok(m);
            }
            if got > index {
                break;
            }
            unwanted.push(m);
        }
        drop(unwanted);
        if Instant::now() >= deadline {
            return Err(Error::msg(format!(
                "cannot restore pty {index}: /dev/pts/{index} is in use"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Makes one pty with its settings and waiting data; returns its master
/// (non-blocking).
fn make(p: &Pty) -> Result<OwnedFd> {
    let index = p.index;
    // Both checked by `check`.
    let termios = Termios::from_bytes(&p.termios)
        .ok_or_else(|| Error::msg(format!("internal error: pty {index} has short termios")))?;
    let winsize: [u8; 8] =
        p.winsize.as_slice().try_into().map_err(|_| {
            Error::msg(format!("internal error: pty {index} has a bad window size"))
        })?;
    let m = allocate(index)?;
    let e = |what: &'static str| {
        move |err| Error::Io {
            what: format!("cannot restore pty {index}: {what}"),
            source: err,
        }
    };
    tty::set_locked(m.as_fd(), false).map_err(e("TIOCSPTLCK"))?;
    let s = tty::open_slave(m.as_fd(), libc::O_RDWR | libc::O_NONBLOCK)
        .map_err(e("cannot open its slave"))?;
    tty::set_winsize(m.as_fd(), &winsize).map_err(e("TIOCSWINSZ"))?;
    tty::set_termios(m.as_fd(), &termios).map_err(e("TCSETS2"))?;
    tty::put_back(m.as_fd(), s.as_fd(), &termios, &p.to_slave, &p.to_master)
        .map_err(e("cannot queue the data it held"))?;
    tty::set_packet(m.as_fd(), p.packet).map_err(e("TIOCPKT"))?;
    tty::set_locked(m.as_fd(), p.locked).map_err(e("TIOCSPTLCK"))?;
    drop(s);
    Ok(m)
}

/// The slave file a session leader takes as its controlling terminal.
pub fn ctty_file<'a>(p: &Process, files: &'a HashMap<u64, FileImage>) -> Option<&'a FileImage> {
    if p.sid != p.pid || p.ctty == 0 {
        return None;
    }
    files.get(&p.ctty).filter(|f| f.kind == FileType::PtySlave)
}

/// Makes the foreground process group of a restored session leader's
/// controlling terminal what the image says, from inside the leader
/// (`TIOCSPGRP` only works on one's own controlling terminal). `held` is
/// the restorer's descriptor of the terminal; `inner` maps image pids to
/// pids as the tree sees them.
pub fn set_foreground(
    b: &mut Builder,
    p: &Process,
    held: Option<RawFd>,
    inner: &BTreeMap<Pid, Pid>,
) -> Result<()> {
    let Some(held) = held else {
        return Ok(());
    };
    if p.tty_pgrp == 0 {
        return Ok(());
    }
    let pgrp = Pid::from_u32(p.tty_pgrp);
    let pgrp = inner.get(&pgrp).copied().unwrap_or(pgrp);
    let path = format!("/proc/{}/fd/{held}", std::process::id());
    let at = b.put_path(path.as_bytes())?;
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC;
    let fd = b
        .call(nr::OPENAT, &[libc::AT_FDCWD as u64, at, flags as u64, 0])
        .map_err(|e| {
            Error::msg(format!(
                "cannot restore the controlling terminal of pid {}: {e}",
                p.pid
            ))
        })?;
    let val = b.put(&pgrp.as_raw().to_le_bytes())?;
    let set = b.call(NR_IOCTL, &[fd, libc::TIOCSPGRP, val]);
    b.call(nr::CLOSE, &[fd])?;
    set.map(|_| ()).map_err(|e| {
        Error::msg(format!(
            "cannot make process group {} the foreground of the terminal of pid {}: {e}",
            p.tty_pgrp, p.pid
        ))
    })
}
