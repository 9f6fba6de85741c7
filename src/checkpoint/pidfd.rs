//! pidfds (`pidfd_open`, `clone(CLONE_PIDFD)`) the tree holds: a `FILE`
//! of type `FT_PIDFD` whose `object_id` is the pid it refers to (`Pid:`
//! in its fdinfo), in the image's pid namespace. Only a pidfd of a
//! process of the tree (a zombie included) can be restored; one of a
//! process outside, of a process already reaped, or of a single thread
//! (`PIDFD_THREAD`) is refused naming the descriptor.

use crate::error::{Error, Result};
use crate::image::{self, FdTable, File};

/// The pid a pidfd's fdinfo names (`Pid:`): `-1` when the process was
/// reaped, `0` when it is in no pid namespace this one sees.
pub fn target(info: &crate::sys::proc::FdInfo) -> Option<i64> {
    std::str::from_utf8(info.get(b"Pid")?)
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Refuses every pidfd that does not refer to a process of the tree
/// (`tree`: its live processes and zombies, as this namespace sees them).
pub fn check(files: &[File], fdtables: &[FdTable], tree: &[i32]) -> Result<()> {
    for f in files.iter().filter(|f| f.ftype == image::FT_PIDFD) {
        let Some((pid, fd)) = FdTable::holder(fdtables, f.id) else {
            continue;
        };
        let refuse = |what: String| {
            Err(Error::msg(format!(
                "cannot checkpoint pid {pid}: descriptor {fd} ({}) is a pidfd of {what}, which cannot be restored",
                String::from_utf8_lossy(&f.link)
            )))
        };
        let target = f.object_id as i64;
        if f.flags & libc::O_EXCL as u32 != 0 {
            return refuse(format!("thread {target} (PIDFD_THREAD)"));
        }
        match target {
            -1 | 0 => return refuse("a process that has exited and been reaped".into()),
            t if !i32::try_from(t).is_ok_and(|t| tree.contains(&t)) => {
                return refuse(format!("pid {t}, outside the tree"));
            }
            _ => {}
        }
    }
    Ok(())
}
