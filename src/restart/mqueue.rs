//! POSIX message queues at restore: each `MQUEUE` queue is made before
//! any process exists, in the restorer's IPC namespace (the tree's: a
//! tree with its own namespace gets a new one first), with
//! `mq_open(O_CREAT | O_EXCL)` as the first process that holds it whose
//! uid owned it (else the first), its mode, `maxmsg` and `msgsize`, and
//! its messages sent back in order with their priorities. A queue that was
//! unlinked is made under a passing name and unlinked at once. A queue of
//! that name already here (as after `ckpt --kill | cr-restart` on one
//! machine) is used only if it is the same (attributes and messages,
//! looked at by taking them and sending them back) and every process that
//! holds it may open it so; else the restore is refused naming it. A
//! descriptor is a new `mq_open` of the name with the process's
//! credentials and flags (of an unlinked queue, a reopen of the
//! restorer's descriptor). Queues made here are unlinked again if the
//! restore fails ([`Made`]).

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::asuser::Acting;
use super::meta::{FileImage, Live, Meta};
use crate::error::{Context, Error, Result};
use crate::image::{Fault, FileType, PosixMqueue};
use crate::sys::{fds, mqueue, threadcreds};

/// `MQ_PRIO_MAX`.
const PRIO_MAX: u32 = 32768;

/// Checks the `MQUEUE` records (part of `Meta::validate`): a plain name,
/// once among the queues that have one; at least one message of at least
/// one byte; no more messages than `maxmsg`, none longer than `msgsize`,
/// priorities below `MQ_PRIO_MAX`; every `FT_MQUEUE` file refers to one.
pub fn check(
    files: &HashMap<u64, FileImage>,
    queues: &HashMap<u64, PosixMqueue>,
) -> std::result::Result<(), Fault> {
    let mut names = HashSet::new();
    for q in queues.values() {
        let bad = |why| Fault::Mqueue { id: q.id, why };
        let n = &q.name;
        if n.is_empty()
            || n.len() > 255
            || n.contains(&b'/')
            || n.contains(&0)
            || n == b"."
            || n == b".."
        {
            return Err(bad("has an impossible name"));
        }
        if !q.deleted && !names.insert(n.clone()) {
            return Err(bad("has the name of another queue"));
        }
        if q.maxmsg == 0 || q.msgsize == 0 || q.maxmsg > 1 << 16 || q.msgsize > 1 << 24 {
            return Err(bad("has impossible attributes"));
        }
        if q.messages.len() as u64 > q.maxmsg {
            return Err(bad("holds more messages than its maxmsg"));
        }
        if q.messages.iter().any(|m| m.data.len() as u64 > q.msgsize) {
            return Err(bad("holds a message longer than its msgsize"));
        }
        if q.messages.iter().any(|m| m.prio >= PRIO_MAX) {
            return Err(bad("holds a message of an impossible priority"));
        }
        if q.mode & !0o7777 != 0 {
            return Err(bad("has an impossible mode"));
        }
    }
    for f in files.values().filter(|f| f.kind == FileType::Mqueue) {
        if !queues.contains_key(&f.object_id) {
            return Err(Fault::MqueueFile { file_id: f.id });
        }
    }
    Ok(())
}

/// The queues this restore made, unlinked when dropped unless
/// [`Made::keep`] was called (the tree was released).
#[derive(Default)]
pub struct Made {
    names: Vec<CString>,
    kept: bool,
}

impl Made {
    /// The tree runs: the queues are its.
    pub fn keep(&mut self) {
        self.kept = true;
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        if !self.kept {
            for n in &self.names {
                let _ = mqueue::unlink(n);
            }
        }
    }
}

/// The processes that hold queue `id`, each with whether one of its
/// descriptors may write to it.
fn users(meta: &Meta, id: u64) -> Vec<(&Live, i32)> {
    let mut out = Vec::new();
    for pi in meta.live() {
        let mut mode = 0;
        for d in pi.fds.iter() {
            if d.file.kind == FileType::Mqueue && d.file.object_id == id {
                mode |= match d.file.flags as i32 & libc::O_ACCMODE {
                    libc::O_RDONLY => libc::R_OK,
                    libc::O_WRONLY => libc::W_OK,
                    _ => libc::R_OK | libc::W_OK,
                };
            }
        }
        if mode != 0 {
            out.push((pi, mode));
        }
    }
    out
}

fn messages(q: &PosixMqueue) -> Vec<(u32, Vec<u8>)> {
    q.messages
        .iter()
        .map(|m| (m.prio, m.data.clone()))
        .collect()
}

/// Makes queue `q` (or finds it, the same) and returns the restorer's
/// read-write descriptor of it; a queue made is recorded in `made`.
pub fn open(meta: &Meta, q: &PosixMqueue, made: &mut Made) -> Result<OwnedFd> {
    let shown = format!("/{}", String::from_utf8_lossy(&q.name));
    let cannot =
        |why: String| Error::msg(format!("cannot restore POSIX message queue {shown}: {why}"));
    let users = users(meta, q.id);
    let creator = users
        .iter()
        .find(|(pi, _)| pi.p.creds.fsuid == q.uid)
        .or(users.first());
    let acting = match creator {
        Some((pi, _)) => Acting::of(&pi.p)?,
        None => Acting::restorer(),
    };
    let name = if q.deleted {
        format!("crtools-unlinked-{}-{}", std::process::id(), q.id)
    } else {
        String::from_utf8_lossy(&q.name).into_owned()
    };
    let cname = CString::new(name).map_err(|_| cannot("a NUL byte in its name".into()))?;
    let attr = mqueue::Attr {
        maxmsg: q.maxmsg as i64,
        msgsize: q.msgsize as i64,
        ..Default::default()
    };
    let created = acting.run(|| {
        match mqueue::open(
            &cname,
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NONBLOCK,
            q.mode,
            Some(&attr),
        ) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && !q.deleted => Ok(None),
            Err(e) => Err(cannot(format!(
                "cannot create it (maxmsg {}, msgsize {}): {e}",
                q.maxmsg, q.msgsize
            ))),
        }
    })?;
    if let Some(fd) = created {
        if q.deleted {
            mqueue::unlink(&cname).map_err(|e| cannot(format!("cannot unlink it: {e}")))?;
        } else {
            made.names.push(cname.clone());
        }
        // The umask may have taken bits away.
        nix::sys::stat::fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(q.mode))
            .map_err(|e| cannot(format!("cannot set its mode: {}", e.desc())))?;
        mqueue::refill(fd.as_fd(), &messages(q)).map_err(|(n, e)| {
            cannot(format!(
                "only {n} of its {} messages went in: {e}",
                q.messages.len()
            ))
        })?;
        return Ok(fd);
    }
    // A queue of that name is here: used only if it is the same.
    let fd = acting.run(|| {
        mqueue::open(&cname, libc::O_RDWR | libc::O_NONBLOCK, 0, None).map_err(|e| {
            cannot(format!(
                "a queue of that name exists here and cannot be opened: {e}"
            ))
        })
    })?;
    let a = mqueue::getattr(fd.as_fd()).map_err(|e| cannot(format!("mq_getattr: {e}")))?;
    let differs = if (a.maxmsg as u64, a.msgsize as u64) != (q.maxmsg, q.msgsize) {
        Some(format!(
            "maxmsg {} msgsize {}, the image's {} and {}",
            a.maxmsg, a.msgsize, q.maxmsg, q.msgsize
        ))
    } else if a.curmsgs as usize != q.messages.len() {
        Some(format!(
            "{} messages, the image's {}",
            a.curmsgs,
            q.messages.len()
        ))
    } else {
        let here = mqueue::drain(fd.as_fd(), q.msgsize as usize)
            .map_err(|e| cannot(format!("cannot read its messages: {e}")))?;
        let put_back = mqueue::refill(fd.as_fd(), &here);
        if let Err((n, e)) = put_back {
            return Err(cannot(format!(
                "only {n} of the {} messages taken to compare went back: {e}",
                here.len()
            )));
        }
        (here != messages(q)).then(|| "other messages".to_string())
    };
    if let Some(d) = differs {
        return Err(cannot(format!(
            "a different queue of that name exists here ({d}); remove it, or restore where it is not"
        )));
    }
    for (pi, mode) in &users {
        Acting::of(&pi.p)?.run(|| {
            threadcreds::may_access(fd.as_fd(), c"", *mode).map_err(|e| {
                cannot(format!(
                    "pid {} may not open the queue of that name here: {e}",
                    pi.p.pid
                ))
            })
        })?;
    }
    Ok(fd)
}

impl super::files::OpenFiles {
    /// A descriptor of a queue: a new `mq_open` of its name with the
    /// process's credentials and the image's flags (it must be the queue
    /// restored there), or for an unlinked queue a reopen of the
    /// restorer's descriptor.
    pub(super) fn open_mqueue(&self, f: &FileImage) -> Result<OwnedFd> {
        let shown = String::from_utf8_lossy(&f.link).into_owned();
        // Validation (`check`) found the queue, made before any file is
        // opened.
        let held = *self
            .mq
            .get(&f.object_id)
            .ok_or_else(|| super::meta::unresolved(f))?;
        let q = self.mqueues.get(&f.object_id);
        let flags = f.flags as i32 & (libc::O_ACCMODE | libc::O_NONBLOCK);
        let fd = match q {
            Some(q) if !q.deleted => {
                let cname = CString::new(q.name.clone())
                    .map_err(|_| Error::msg("a queue name in the image contains a NUL byte"))?;
                self.acting.run(|| {
                    mqueue::open(&cname, flags, 0, None).ctx(|| format!("cannot open {shown}"))
                })?
            }
            _ => {
                let again = format!("/proc/self/fd/{held}");
                fds::open(
                    again.as_str(),
                    OFlag::from_bits_truncate(flags),
                    Mode::empty(),
                )
                .ctx(|| format!("cannot open {shown}"))?
            }
        };
        let a = nix::sys::stat::fstat(fd.as_raw_fd()).ctx(|| format!("cannot stat {shown}"))?;
        let b = nix::sys::stat::fstat(held).ctx(|| format!("cannot stat {shown}"))?;
        if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
            return Err(Error::msg(format!(
                "cannot open {shown}: it is not the POSIX message queue restored there"
            )));
        }
        Ok(fd)
    }
}
