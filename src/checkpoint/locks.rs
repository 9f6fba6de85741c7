//! Reading the advisory file locks the tree holds.
//!
//! `/proc/PID/fdinfo/N` lists, as `lock:` lines, the locks set through the
//! open file description behind descriptor N and owned by this process
//! (POSIX) or by that description (OFD, `flock`):
//!
//! ```text
//! lock:   1: POSIX  ADVISORY  WRITE 7080 fe:00:10011170 5 14
//! lock:   1: OFDLCK ADVISORY  READ -1 fe:00:10011170 20 24
//! lock:   1: FLOCK  ADVISORY  READ 7080 fe:00:10011171 0 EOF
//! ```
//!
//! (kind, mode, type, pid, device:inode, first byte, last byte or `EOF`).
//! A POSIX lock belongs to its process and shows on every descriptor of
//! the description it was set through, so it is kept once per process and
//! file, with one such descriptor to take it back through. An OFD or
//! `flock` lock belongs to the description: it is kept once, in its `FILE`
//! record. Locks of processes outside the tree never show in the tree's
//! fdinfo (POSIX) or belong to descriptions the tree holds (OFD, `flock`:
//! then they are the tree's too). `/proc/locks` is read afterwards to check
//! that no POSIX lock of a process of the tree was missed.
//!
//! Leases and mandatory locks are refused: a lease is a promise from the
//! kernel to break it for another opener, which a restore cannot keep, and
//! mandatory locking no longer exists in Linux.

use crate::error::{Error, Result};
use crate::image::{self, FdTable, File, Lock};
use crate::sys::{Pid, proc};

/// One `lock:` line of fdinfo or line of `/proc/locks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockLine {
    /// `LOCK_*`.
    pub kind: u8,
    pub write: bool,
    /// The pid the kernel shows: the owner for POSIX locks, `-1` for OFD
    /// locks, the locker for `flock` locks.
    pub pid: i32,
    pub ino: u64,
    pub start: u64,
    /// `0`: to the end of the file.
    pub len: u64,
}

/// Parses a lock line after its `N:` id (fdinfo's value after `lock:`, or
/// a line of `/proc/locks`). `Ok(None)` for a blocked request (`->`), which
/// is not a lock held. The error says what kind of lock is not supported.
pub fn parse_line(line: &[u8]) -> std::result::Result<Option<LockLine>, String> {
    let mut w = line
        .split(|c| c.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    let bad = || {
        format!(
            "an unreadable lock line {:?}",
            String::from_utf8_lossy(line)
        )
    };
    let id = w.next().ok_or_else(bad)?;
    if !id.ends_with(b":") {
        return Err(bad());
    }
    let mut kind = w.next().ok_or_else(bad)?;
    if kind == b"->" {
        return Ok(None);
    }
    if kind.is_empty() {
        kind = w.next().ok_or_else(bad)?;
    }
    let kind = match kind {
        b"POSIX" => image::LOCK_POSIX,
        b"OFDLCK" => image::LOCK_OFD,
        b"FLOCK" => image::LOCK_FLOCK,
        b"LEASE" | b"DELEG" => {
            return Err("a file lease (fcntl F_SETLEASE), which cannot be restored".into());
        }
        other => {
            return Err(format!(
                "a lock of kind {}, which is not supported",
                String::from_utf8_lossy(other)
            ));
        }
    };
    match w.next().ok_or_else(bad)? {
        b"ADVISORY" => {}
        b"MANDATORY" => return Err("a mandatory lock, which is not supported".into()),
        _ => return Err(bad()),
    }
    let write = match w.next().ok_or_else(bad)? {
        b"WRITE" => true,
        b"READ" => false,
        _ => return Err(bad()),
    };
    let num = |b: &[u8]| {
        std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
    };
    let pid = w
        .next()
        .and_then(|b| std::str::from_utf8(b).ok()?.parse::<i32>().ok())
        .ok_or_else(bad)?;
    let ino = w
        .next()
        .and_then(|b| b.rsplit(|&c| c == b':').next())
        .and_then(num)
        .ok_or_else(bad)?;
    let start = w.next().and_then(num).ok_or_else(bad)?;
    let len = match w.next().ok_or_else(bad)? {
        b"EOF" => 0,
        end => {
            let end = num(end).filter(|&e| e >= start).ok_or_else(bad)?;
            end - start + 1
        }
    };
    Ok(Some(LockLine {
        kind,
        write,
        pid,
        ino,
        start,
        len,
    }))
}

/// A POSIX lock of one process: device, inode, start, length, write.
pub type PosixKey = (u64, u64, u64, u64, bool);

/// Adds the locks that descriptor `fd` of `pid` shows to the records: a
/// POSIX lock to the process's table (once per file), an OFD or `flock`
/// lock to the file (once). `posix_seen` holds what this process's
/// descriptors showed so far.
pub fn collect(
    pid: i32,
    fd: i32,
    info: &proc::FdInfo,
    file: &mut File,
    table: &mut FdTable,
    posix_seen: &mut Vec<PosixKey>,
) -> Result<()> {
    for (_, v) in info.extra.iter().filter(|(k, _)| k == b"lock") {
        let l = parse_line(v).map_err(|what| {
            Error::msg(format!(
                "cannot checkpoint pid {pid}: descriptor {fd} ({}) holds {what}",
                String::from_utf8_lossy(&file.link)
            ))
        })?;
        let Some(l) = l else { continue };
        let lock = Lock {
            kind: l.kind,
            write: l.write,
            start: l.start,
            len: l.len,
            fd: if l.kind == image::LOCK_POSIX {
                fd as u32
            } else {
                0
            },
        };
        if l.kind == image::LOCK_POSIX {
            // The same lock seen through another descriptor of its
            // description is kept once.
            let key = (file.dev, file.ino, lock.start, lock.len, lock.write);
            if !posix_seen.contains(&key) {
                posix_seen.push(key);
                table.locks.0.push(lock);
            }
        } else if !file.locks.contains(&lock) {
            file.locks.0.push(lock);
        }
    }
    Ok(())
}

/// Counts the POSIX locks `/proc/locks` shows for each of `pids`.
pub fn count_posix(proc_locks: &[u8], pids: &[Pid]) -> Vec<usize> {
    let mut n = vec![0; pids.len()];
    for line in proc_locks.split(|&c| c == b'\n') {
        if let Ok(Some(l)) = parse_line(line)
            && l.kind == image::LOCK_POSIX
            && let Some(i) = pids.iter().position(|&p| p.as_raw() == l.pid)
        {
            n[i] += 1;
        }
    }
    n
}

/// Reads `/proc/locks` in a thread of its own, for [`check_complete`].
/// The read waits for an RCU grace period (the kernel takes its lock
/// table's `percpu_rw_semaphore` for writing), milliseconds of sleep that
/// the caller overlaps with its own work. Start it once the tree is
/// frozen: its locks cannot change after.
pub fn read_proc_locks() -> ProcLocks {
    ProcLocks(std::thread::spawn(|| std::fs::read("/proc/locks")))
}

/// `/proc/locks` being read (see [`read_proc_locks`]).
pub struct ProcLocks(std::thread::JoinHandle<std::io::Result<Vec<u8>>>);

/// Checks against `/proc/locks` that every POSIX lock of a process of the
/// tree was found through its descriptors.
pub fn check_complete(fdtables: &[FdTable], proc_locks: ProcLocks) -> Result<()> {
    let pids: Vec<Pid> = fdtables.iter().map(|t| Pid::from_u32(t.pid)).collect();
    let all = proc_locks
        .0
        .join()
        .map_err(|_| Error::msg("cannot read /proc/locks: its reader thread died"))?
        .map_err(|e| Error::msg(format!("cannot read /proc/locks: {e}")))?;
    for (t, held) in fdtables.iter().zip(count_posix(&all, &pids)) {
        if held > t.locks.len() {
            return Err(Error::msg(format!(
                "cannot checkpoint pid {}: it holds {held} POSIX locks but only {} were found through its descriptors",
                t.pid,
                t.locks.len()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> LockLine {
        parse_line(s.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn parses_the_kinds_of_this_kernel() {
        let p = line("1: POSIX  ADVISORY  WRITE 7080 fe:00:10011170 5 14");
        assert_eq!(
            p,
            LockLine {
                kind: image::LOCK_POSIX,
                write: true,
                pid: 7080,
                ino: 10011170,
                start: 5,
                len: 10
            }
        );
        let o = line("2: OFDLCK ADVISORY  READ -1 fe:00:10011170 20 24");
        assert_eq!(
            (o.kind, o.write, o.pid, o.start, o.len),
            (image::LOCK_OFD, false, -1, 20, 5)
        );
        let f = line("1: FLOCK  ADVISORY  READ 7080 fe:00:10011171 0 EOF");
        assert_eq!(
            (f.kind, f.write, f.start, f.len),
            (image::LOCK_FLOCK, false, 0, 0)
        );
        let e = line("3: POSIX  ADVISORY  WRITE 7080 fe:00:10011170 50 EOF");
        assert_eq!((e.start, e.len), (50, 0));
        // The widest range a lock can have ends at OFFSET_MAX.
        let w = line("4: POSIX  ADVISORY  READ 1 00:2d:9 1073741824 1073741824");
        assert_eq!((w.start, w.len), (1 << 30, 1));
    }

    #[test]
    fn skips_blocked_requests_and_refuses_leases() {
        assert_eq!(
            parse_line(b"1: -> POSIX  ADVISORY  WRITE 7081 fe:00:10011170 0 EOF"),
            Ok(None)
        );
        let e = parse_line(b"1: LEASE  ACTIVE    READ 7080 fe:00:10011170 0 EOF").unwrap_err();
        assert!(e.contains("lease"), "{e}");
        let e = parse_line(b"1: POSIX  MANDATORY WRITE 7080 fe:00:1 0 EOF").unwrap_err();
        assert!(e.contains("mandatory"), "{e}");
        for junk in [
            "",
            "1:",
            "1: POSIX ADVISORY WRITE",
            "1: POSIX ADVISORY WRITE x 0:0:1 0 EOF",
        ] {
            assert!(parse_line(junk.as_bytes()).is_err(), "{junk:?}");
        }
        // A last byte before the first is not a range.
        assert!(parse_line(b"1: POSIX ADVISORY WRITE 1 0:0:1 9 3").is_err());
    }

    fn info(lines: &[&str]) -> proc::FdInfo {
        proc::FdInfo {
            extra: lines
                .iter()
                .map(|l| (b"lock".to_vec(), l.as_bytes().to_vec()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn groups_posix_per_process_and_file_and_ofd_per_description() {
        let mut table = FdTable::default();
        let mut seen = Vec::new();
        let mut a = File {
            dev: 1,
            ino: 10,
            ..Default::default()
        };
        let mut b = File {
            dev: 1,
            ino: 11,
            ..Default::default()
        };
        let posix = "1: POSIX  ADVISORY  WRITE 7 01:00:10 0 EOF";
        let ofd = "2: OFDLCK ADVISORY  READ -1 01:00:10 20 24";
        // fd 3 and its dup 4 show the same POSIX lock and the same OFD lock.
        collect(7, 3, &info(&[posix, ofd]), &mut a, &mut table, &mut seen).unwrap();
        collect(7, 4, &info(&[posix, ofd]), &mut a, &mut table, &mut seen).unwrap();
        assert_eq!(table.locks.len(), 1);
        assert_eq!(table.locks[0].fd, 3);
        assert_eq!(a.locks.len(), 1);
        assert_eq!(a.locks[0].kind, image::LOCK_OFD);
        // The same range on another file is another lock.
        let other = "1: POSIX  ADVISORY  WRITE 7 01:00:11 0 EOF";
        collect(7, 5, &info(&[other]), &mut b, &mut table, &mut seen).unwrap();
        assert_eq!(table.locks.len(), 2);
        assert_eq!(table.locks[1].fd, 5);
        assert!(b.locks.is_empty());
        // A lease is refused, naming the descriptor.
        let e = collect(
            7,
            6,
            &info(&["1: LEASE  ACTIVE    WRITE 7 01:00:11 0 EOF"]),
            &mut b,
            &mut table,
            &mut seen,
        )
        .unwrap_err();
        assert!(e.to_string().contains("descriptor 6"), "{e}");
    }

    #[test]
    fn counts_posix_locks_of_the_tree_in_proc_locks() {
        let all = b"1: FLOCK  ADVISORY  READ 10 fe:00:3 0 EOF\n\
                    2: OFDLCK ADVISORY  READ -1 fe:00:3 20 24\n\
                    3: POSIX  ADVISORY  WRITE 10 fe:00:4 50 EOF\n\
                    3: -> POSIX  ADVISORY  WRITE 11 fe:00:4 50 EOF\n\
                    4: POSIX  ADVISORY  READ 11 fe:00:5 5 14\n\
                    5: POSIX  ADVISORY  READ 99 fe:00:5 5 14\n\
                    6: POSIX  ADVISORY  READ 10 fe:00:5 5 14\n";
        let pids = [10, 11, 12].map(Pid::from_raw);
        assert_eq!(count_posix(all, &pids), vec![2, 1, 0]);
    }
}
