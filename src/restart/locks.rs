//! Taking back the tree's advisory file locks.
//!
//! An OFD or `flock` lock belongs to an open file description: the
//! restorer takes it on the description it opens for the image's `FILE`,
//! before any process receives it ([`take_file_locks`]). A POSIX record lock
//! belongs to a process and goes away when that process closes any
//! descriptor of the file: the restored process takes it itself, by a
//! remote `fcntl(F_SETLK)`, once its descriptors are placed and its address
//! space is rebuilt (mapping a file opens and closes it) ([`take_posix`]).
//!
//! Every lock is taken without waiting: one that someone else took in the
//! meantime fails the restore, which then kills everything it built.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};

use super::files::OpenFiles;
use super::space::Builder;
use crate::error::{Error, Result};
use crate::image::{self, FdTable, File, Lock};
use crate::sys::locks;
use crate::sys::remote::{RemoteError, nr};

/// What a lock is, for messages: `POSIX write lock on bytes 5-14`.
pub fn describe(l: &Lock) -> String {
    let kind = match l.kind {
        image::LOCK_POSIX => "POSIX",
        image::LOCK_OFD => "OFD",
        _ => "flock",
    };
    let rw = if l.write { "write" } else { "read" };
    let range = if l.kind == image::LOCK_FLOCK {
        "the whole file".to_string()
    } else if l.len == 0 {
        format!("bytes {} to the end of the file", l.start)
    } else {
        format!("bytes {}-{}", l.start, l.start + (l.len - 1))
    };
    format!("{kind} {rw} lock on {range}")
}

fn holder(pid: Option<i32>) -> String {
    match pid {
        Some(p) if p > 0 => format!("held by pid {p}"),
        Some(_) => "held by an open file description of another process (OFD lock)".into(),
        None => "held by another process".into(),
    }
}

/// Checks the locks of the image before anything is built: each kind
/// where it belongs, ranges `fcntl` accepts, POSIX locks on a descriptor
/// of their process.
pub fn validate<'a>(
    tables: impl Iterator<Item = &'a FdTable>,
    files: &HashMap<u64, File>,
) -> Result<()> {
    let bad = |what: String| Err(Error::msg(format!("invalid image: {what}")));
    let range_ok = |l: &Lock| {
        l.start <= i64::MAX as u64
            && l.len <= i64::MAX as u64
            && (l.len == 0
                || l.start
                    .checked_add(l.len - 1)
                    .is_some_and(|e| e <= i64::MAX as u64))
    };
    for t in tables {
        for l in t.locks.iter() {
            if l.kind != image::LOCK_POSIX || !range_ok(l) {
                return bad(format!("process {}: an impossible lock {l:?}", t.pid));
            }
            if !t.fds.iter().any(|d| d.fd == l.fd) {
                return bad(format!(
                    "process {}: a lock on descriptor {}, which it does not have",
                    t.pid, l.fd
                ));
            }
        }
    }
    for f in files.values() {
        for l in f.locks.iter() {
            let ok = match l.kind {
                image::LOCK_OFD => range_ok(l),
                image::LOCK_FLOCK => l.start == 0 && l.len == 0,
                _ => false,
            };
            if !ok {
                return bad(format!("file {}: an impossible lock {l:?}", f.id));
            }
        }
    }
    Ok(())
}

/// Takes the OFD and `flock` locks of `f` on `fd`, the restorer's open
/// file description for it. A description that led outside the image is
/// not ours to lock: its locks are left to whoever holds it.
pub fn take_file_locks(fd: RawFd, f: &File) -> Result<()> {
    if f.ftype == image::FT_EXTERNAL {
        return Ok(());
    }
    for l in f.locks.iter() {
        let r = match l.kind {
            image::LOCK_OFD => locks::ofd_lock(fd, l.write, l.start, l.len),
            _ => locks::flock(fd, l.write),
        };
        r.map_err(|e| {
            let why = if is_conflict(e.raw_os_error()) {
                if l.kind == image::LOCK_OFD {
                    holder(
                        locks::posix_conflict(fd, l.write, l.start, l.len)
                            .ok()
                            .flatten(),
                    )
                } else {
                    holder(None)
                }
            } else {
                e.to_string()
            };
            Error::msg(format!(
                "cannot take back the {} of {}: {why}",
                describe(l),
                String::from_utf8_lossy(&f.path)
            ))
        })?;
    }
    Ok(())
}

fn is_conflict(errno: Option<i32>) -> bool {
    matches!(errno, Some(libc::EAGAIN) | Some(libc::EACCES))
}

/// Checks, with `F_GETLK` on the restorer's descriptions, that no process
/// holds a lock in the way of the POSIX locks of process `t`: a restore
/// that cannot proceed fails before it changes anything.
pub fn check_posix(t: &FdTable, files: &HashMap<u64, File>, open: &OpenFiles) -> Result<()> {
    for l in t.locks.iter() {
        let Some(d) = t.fds.iter().find(|d| d.fd == l.fd) else {
            continue;
        };
        let Some(fd) = open.get(d.file_id) else {
            continue;
        };
        let path = files
            .get(&d.file_id)
            .map(|f| f.path.as_slice())
            .unwrap_or_default();
        let e = |why: String| {
            Error::msg(format!(
                "cannot restore pid {}: cannot take back its {} of {} (descriptor {}): {why}",
                t.pid,
                describe(l),
                String::from_utf8_lossy(path),
                l.fd
            ))
        };
        match locks::posix_conflict(fd, l.write, l.start, l.len) {
            Ok(None) => {}
            Ok(pid) => return Err(e(holder(pid))),
            Err(err) => return Err(e(err.to_string())),
        }
    }
    Ok(())
}

/// Takes the POSIX locks of the process `b` drives (image pid `pid`), from
/// inside it. Its descriptors are in place and nothing closes them after
/// this.
pub fn take_posix(b: &mut Builder, pid: u32, t: Option<&FdTable>) -> Result<()> {
    for l in t.iter().flat_map(|t| t.locks.iter()) {
        let at = b.put(&locks::flock_bytes(l.write, l.start, l.len))?;
        let r = b.call(nr::FCNTL, &[l.fd as u64, libc::F_SETLK as u64, at]);
        let Err(err) = r else { continue };
        let why = match &err {
            Error::Remote(RemoteError::Syscall { errno, .. })
                if is_conflict(Some(*errno as i32)) =>
            {
                holder(conflict_of(b.pid, l))
            }
            other => other.to_string(),
        };
        let path = std::fs::read_link(format!("/proc/{}/fd/{}", b.pid, l.fd))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "?".into());
        return Err(Error::msg(format!(
            "cannot restore pid {pid}: cannot take back its {} of {path} (descriptor {}): {why}",
            describe(l),
            l.fd
        )));
    }
    Ok(())
}

/// Who holds a lock in the way of `l` on descriptor `l.fd` of process
/// `real` (asked from the restorer, which owns no POSIX lock).
fn conflict_of(real: i32, l: &Lock) -> Option<i32> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(format!("/proc/{real}/fd/{}", l.fd))
        .ok()?;
    locks::posix_conflict(f.as_raw_fd(), l.write, l.start, l.len)
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Fd;
    use crate::image::wire::List;

    fn lock(kind: u8, write: bool, start: u64, len: u64, fd: u32) -> Lock {
        Lock {
            kind,
            write,
            start,
            len,
            fd,
        }
    }

    #[test]
    fn describes_ranges() {
        assert_eq!(
            describe(&lock(image::LOCK_POSIX, true, 5, 10, 3)),
            "POSIX write lock on bytes 5-14"
        );
        assert_eq!(
            describe(&lock(image::LOCK_OFD, false, 7, 0, 0)),
            "OFD read lock on bytes 7 to the end of the file"
        );
        assert_eq!(
            describe(&lock(image::LOCK_FLOCK, false, 0, 0, 0)),
            "flock read lock on the whole file"
        );
    }

    #[test]
    fn validation_refuses_misplaced_locks_and_impossible_ranges() {
        let table = |l: Lock| FdTable {
            pid: 10,
            fds: List(vec![Fd {
                fd: 3,
                cloexec: false,
                file_id: 1,
            }]),
            locks: List(vec![l]),
        };
        let none = HashMap::new();
        let ok = table(lock(image::LOCK_POSIX, true, 1 << 30, 1, 3));
        assert!(validate([&ok].into_iter(), &none).is_ok());
        let eof = table(lock(image::LOCK_POSIX, true, i64::MAX as u64, 0, 3));
        assert!(validate([&eof].into_iter(), &none).is_ok());
        for bad in [
            lock(image::LOCK_POSIX, true, 0, 0, 4),
            lock(image::LOCK_OFD, true, 0, 0, 3),
            lock(image::LOCK_POSIX, true, u64::MAX, 0, 3),
            lock(image::LOCK_POSIX, true, i64::MAX as u64, 2, 3),
            lock(9, true, 0, 0, 3),
        ] {
            let t = table(bad.clone());
            assert!(validate([&t].into_iter(), &none).is_err(), "{bad:?}");
        }
        let file = |l: Lock| {
            HashMap::from([(
                1,
                File {
                    id: 1,
                    locks: List(vec![l]),
                    ..Default::default()
                },
            )])
        };
        let empty: [&FdTable; 0] = [];
        assert!(
            validate(
                empty.into_iter(),
                &file(lock(image::LOCK_FLOCK, true, 0, 0, 0))
            )
            .is_ok()
        );
        assert!(
            validate(
                empty.into_iter(),
                &file(lock(image::LOCK_OFD, false, 3, 4, 0))
            )
            .is_ok()
        );
        for bad in [
            lock(image::LOCK_FLOCK, true, 1, 0, 0),
            lock(image::LOCK_POSIX, true, 0, 0, 3),
            lock(0, true, 0, 0, 0),
        ] {
            assert!(
                validate(empty.into_iter(), &file(bad.clone())).is_err(),
                "{bad:?}"
            );
        }
    }
}
