//! POSIX message queues (`mq_open`) the tree holds, into `MQUEUE`
//! records: name (or that it was unlinked), mode, owner, `maxmsg`,
//! `msgsize`, and the messages queued, with their priorities, in the order
//! receivers get them.
//!
//! There is no way to look at a queue's messages without taking them:
//! the queue is opened anew through `/proc/PID/fd/N`, every message is
//! received without waiting, and all are sent back at once, in the same
//! order and with the same priorities, so the queue is as it was (the
//! tree is frozen: none of its processes waits in `mq_receive` or
//! `mq_send` meanwhile). A queue with a notification registered
//! (`mq_notify`, `NOTIFY_PID` in the queue's status) is refused before it
//! is touched: refilling an empty queue would fire and so unregister it,
//! and its `sigevent` cannot be read back.

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use crate::error::{Error, Result};
use crate::image::{self, FdTable, File, MqMessage, PosixMqueue};
use crate::sys::mqueue;

/// `MQUEUE_MAGIC`, the mqueue filesystem's `statfs` type.
const MQUEUE_MAGIC: i64 = 0x1980_0202;

/// Whether descriptor `fd` of `pid` is a POSIX message queue.
pub fn is_mqueue(pid: i32, fd: i32) -> bool {
    let at = format!("/proc/{pid}/fd/{fd}");
    nix::sys::statfs::statfs(at.as_str()).is_ok_and(|s| s.filesystem_type().0 == MQUEUE_MAGIC)
}

/// The queue's name from a descriptor's link (`/NAME`, ` (deleted)`
/// already stripped).
pub fn name_of(path: &[u8]) -> Vec<u8> {
    path.rsplit(|&c| c == b'/').next().unwrap_or(path).to_vec()
}

/// `NOTIFY_PID` of a queue's status line (`QSIZE:... NOTIFY:...
/// SIGNO:... NOTIFY_PID:...`), 0 when none is registered.
pub fn notify_pid(status: &str) -> Option<i64> {
    let rest = status.split("NOTIFY_PID:").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// One `MQUEUE` record per queue the tree holds (see the module docs).
/// Every queue is opened and its notification checked before any is
/// drained.
pub fn collect(files: &[File], fdtables: &[FdTable]) -> Result<Vec<PosixMqueue>> {
    let mut opened: Vec<(&File, std::fs::File, String)> = Vec::new();
    for f in files.iter().filter(|f| f.ftype == image::FT_MQUEUE) {
        if opened.iter().any(|(g, _, _)| g.object_id == f.object_id) {
            continue;
        }
        let Some((pid, fd)) = FdTable::holder(fdtables, f.id) else {
            continue;
        };
        let what = format!(
            "cannot checkpoint pid {pid}: descriptor {fd} ({}) is a POSIX message queue",
            String::from_utf8_lossy(&f.link)
        );
        let err = |e: String| Error::msg(format!("{what}: {e}"));
        let mut q = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(format!("/proc/{pid}/fd/{fd}"))
            .map_err(|e| err(format!("cannot open it: {e}")))?;
        let mut status = String::new();
        q.read_to_string(&mut status)
            .map_err(|e| err(format!("cannot read its status: {e}")))?;
        match notify_pid(&status) {
            Some(0) => {}
            Some(n) => {
                return Err(err(format!(
                    "pid {n} registered a notification on it (mq_notify), which cannot be carried"
                )));
            }
            None => return Err(err(format!("unexpected status {:?}", status.trim()))),
        }
        opened.push((f, q, what));
    }
    let mut out = Vec::new();
    for (f, q, what) in opened {
        let err = |e: String| Error::msg(format!("{what}: {e}"));
        let st = q.metadata().map_err(|e| err(format!("fstat: {e}")))?;
        let attr = mqueue::getattr(q.as_fd()).map_err(|e| err(format!("mq_getattr: {e}")))?;
        let msgs = mqueue::drain(q.as_fd(), attr.msgsize as usize)
            .map_err(|e| err(format!("cannot read its messages: {e}")))?;
        if let Err((n, e)) = mqueue::refill(q.as_fd(), &msgs) {
            return Err(err(format!(
                "only {n} of its {} messages could be put back: {e}",
                msgs.len()
            )));
        }
        out.push(PosixMqueue {
            id: f.object_id,
            name: name_of(&f.path),
            deleted: st.nlink() == 0,
            mode: st.mode() & 0o7777,
            uid: st.uid(),
            gid: st.gid(),
            maxmsg: attr.maxmsg as u64,
            msgsize: attr.msgsize as u64,
            messages: msgs
                .into_iter()
                .map(|(prio, data)| MqMessage { prio, data })
                .collect::<Vec<_>>()
                .into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_names() {
        let s = "QSIZE:12         NOTIFY:0     SIGNO:0     NOTIFY_PID:0     \n";
        assert_eq!(notify_pid(s), Some(0));
        let s = "QSIZE:0          NOTIFY:0     SIGNO:12    NOTIFY_PID:4242  \n";
        assert_eq!(notify_pid(s), Some(4242));
        assert_eq!(notify_pid("garbage"), None);
        assert_eq!(name_of(b"/crtools-q"), b"crtools-q");
    }
}
