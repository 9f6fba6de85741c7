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

use std::os::fd::{AsRawFd, RawFd};

use super::files::OpenFiles;
use super::meta::{FdImage, FileImage, Live};
use super::space::Builder;
use crate::error::{Error, Result};
use crate::image::{Fault, File, FileType, Kind, Lock, LockKind};
use crate::sys::ids::Pid;
use crate::sys::locks;
use crate::sys::remote::{RemoteError, nr};

/// What a lock is, for messages: `POSIX write lock on bytes 5-14`.
pub fn describe(l: &Lock) -> String {
    l.to_string()
}

fn holder(pid: Option<i32>) -> String {
    match pid {
        Some(p) if p > 0 => format!("held by pid {p}"),
        Some(_) => "held by an open file description of another process (OFD lock)".into(),
        None => "held by another process".into(),
    }
}

fn range_ok(l: &Lock) -> bool {
    let max = i64::MAX as u64;
    l.start <= max
        && l.len <= max
        && (l.len == 0 || l.start.checked_add(l.len - 1).is_some_and(|e| e <= max))
}

/// Checks the POSIX locks of process `pid` (pure): ranges `fcntl` accepts,
/// each on a descriptor the process has.
pub fn check_posix_locks(
    pid: u32,
    locks: &[Lock],
    fds: &[FdImage],
) -> std::result::Result<(), Fault> {
    for l in locks {
        let kind = LockKind::from_wire(l.kind).ok_or(Fault::Unknown {
            record: Kind::FDTABLE,
            id: pid.into(),
            field: LockKind::WHAT,
            value: l.kind.into(),
        })?;
        let why = if kind != LockKind::Posix {
            "not a POSIX lock"
        } else if !range_ok(l) {
            "a range fcntl refuses"
        } else if !fds.iter().any(|d| d.fd == l.fd) {
            "on a descriptor the process does not have"
        } else {
            continue;
        };
        return Err(Fault::Lock {
            owner: format!("process {pid}"),
            lock: format!("{l:?}"),
            why,
        });
    }
    Ok(())
}

/// The lock an open file description owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileLock {
    Ofd,
    Flock,
}

/// Checks the OFD and `flock` locks of file `f` and decodes their kinds
/// (pure; part of [`FileImage::new`]).
pub fn check_file_locks(f: &File) -> std::result::Result<Vec<(FileLock, Lock)>, Fault> {
    let mut out = Vec::with_capacity(f.locks.len());
    for l in f.locks.iter() {
        let kind = LockKind::from_wire(l.kind).ok_or(Fault::Unknown {
            record: Kind::FILE,
            id: f.id,
            field: LockKind::WHAT,
            value: l.kind.into(),
        })?;
        let why = match kind {
            LockKind::Ofd if range_ok(l) => {
                out.push((FileLock::Ofd, l.clone()));
                continue;
            }
            LockKind::Ofd => "a range fcntl refuses",
            LockKind::Flock if l.start == 0 && l.len == 0 => {
                out.push((FileLock::Flock, l.clone()));
                continue;
            }
            LockKind::Flock => "a flock lock with a range",
            LockKind::Posix => "not an OFD or flock lock",
        };
        return Err(Fault::Lock {
            owner: format!("file {}", f.id),
            lock: format!("{l:?}"),
            why,
        });
    }
    Ok(out)
}

/// Takes the OFD and `flock` locks of `f` on `fd`, the restorer's open
/// file description for it. A description that led outside the image is
/// not ours to lock: its locks are left to whoever holds it.
pub fn take_file_locks(fd: RawFd, f: &FileImage) -> Result<()> {
    if f.kind == FileType::External {
        return Ok(());
    }
    for &(kind, ref l) in &f.locks {
        let ofd = kind == FileLock::Ofd;
        let r = match kind {
            FileLock::Ofd => locks::ofd_lock(fd, l.write, l.start, l.len),
            FileLock::Flock => locks::flock(fd, l.write),
        };
        r.map_err(|e| {
            let why = if is_conflict(e.raw_os_error()) {
                if ofd {
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
/// holds a lock in the way of the POSIX locks of process `pi`: a restore
/// that cannot proceed fails before it changes anything.
pub fn check_posix(pi: &Live, open: &OpenFiles) -> Result<()> {
    for l in &pi.locks {
        let Some(d) = pi.fds.iter().find(|d| d.fd == l.fd) else {
            continue;
        };
        let Some(fd) = open.get(d.file.id) else {
            continue;
        };
        let e = |why: String| {
            Error::msg(format!(
                "cannot restore pid {}: cannot take back its {} of {} (descriptor {}): {why}",
                pi.p.pid,
                describe(l),
                String::from_utf8_lossy(&d.file.path),
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

/// Takes the POSIX locks of process `pi`, which `b` drives, from inside
/// it. Its descriptors are in place and nothing closes them after this.
pub fn take_posix(b: &mut Builder, pi: &Live) -> Result<()> {
    for l in &pi.locks {
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
        let path = pi
            .fds
            .iter()
            .find(|d| d.fd == l.fd)
            .map(|d| String::from_utf8_lossy(&d.file.path).into_owned())
            .unwrap_or_default();
        return Err(Error::msg(format!(
            "cannot restore pid {}: cannot take back its {} of {path} (descriptor {}): {why}",
            pi.p.pid,
            describe(l),
            l.fd
        )));
    }
    Ok(())
}

/// Who holds a lock in the way of `l` on descriptor `l.fd` of process
/// `real` (asked from the restorer, which owns no POSIX lock).
fn conflict_of(real: Pid, l: &Lock) -> Option<i32> {
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
    use crate::image;
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
        let fds = [FdImage {
            fd: 3,
            cloexec: false,
            file: FileImage::new(File {
                ftype: image::FT_REGULAR,
                ..Default::default()
            })
            .expect("a regular file"),
        }];
        let posix = |l: Lock| check_posix_locks(10, &[l], &fds);
        assert!(posix(lock(image::LOCK_POSIX, true, 1 << 30, 1, 3)).is_ok());
        assert!(posix(lock(image::LOCK_POSIX, false, i64::MAX as u64, 0, 3)).is_ok());
        for (bad, why) in [
            (lock(image::LOCK_POSIX, true, 0, 0, 4), "descriptor"),
            (lock(image::LOCK_OFD, true, 0, 0, 3), "not a POSIX"),
            (lock(image::LOCK_POSIX, true, u64::MAX, 0, 3), "range"),
            (
                lock(image::LOCK_POSIX, true, i64::MAX as u64, 2, 3),
                "range",
            ),
        ] {
            let e = posix(bad.clone()).unwrap_err();
            assert!(
                matches!(e, Fault::Lock { why: w, .. } if w.contains(why)),
                "{bad:?}: {e}"
            );
            assert!(
                e.to_string().starts_with("process 10: impossible lock"),
                "{e}"
            );
        }
        let unknown = posix(lock(9, true, 0, 0, 3)).unwrap_err();
        assert!(
            matches!(
                unknown,
                Fault::Unknown {
                    id: 10,
                    value: 9,
                    ..
                }
            ),
            "{unknown}"
        );
        assert_eq!(
            unknown.to_string(),
            "fdtable record 10: unknown lock kind 9"
        );
        let file = |l: Lock| {
            check_file_locks(&File {
                id: 1,
                locks: List(vec![l]),
                ..Default::default()
            })
        };
        assert!(file(lock(image::LOCK_FLOCK, true, 0, 0, 0)).is_ok());
        assert!(file(lock(image::LOCK_OFD, false, 3, 4, 0)).is_ok());
        for bad in [
            lock(image::LOCK_FLOCK, true, 1, 0, 0),
            lock(image::LOCK_OFD, true, u64::MAX, 1, 0),
            lock(image::LOCK_POSIX, true, 0, 0, 3),
        ] {
            let e = file(bad.clone()).unwrap_err();
            assert!(e.to_string().starts_with("file 1: impossible lock"), "{e}");
        }
        let e = file(lock(0, true, 0, 0, 0)).unwrap_err();
        assert!(
            matches!(
                e,
                Fault::Unknown {
                    id: 1,
                    value: 0,
                    ..
                }
            ),
            "{e}"
        );
    }
}
