//! pidfds at restore: once every process of the tree exists (before any
//! page data), each process makes its pidfds itself, with a remote
//! `pidfd_open` of the restored process's pid as it sees it
//! (`PIDFD_NONBLOCK` as the image's flags say), moved to its descriptor
//! number with `dup3`. Each descriptor gets its own open description (a
//! pidfd's description holds nothing but those flags). The restorer holds
//! nothing of them: the placing of descriptors before (`spawn.rs`) leaves
//! their numbers to this step.

use std::collections::{BTreeMap, HashSet};

use super::Building;
use super::meta::FileImage;
use crate::error::{Error, Result};
use crate::image::{Fault, FileType};
use crate::sys::ids::Pid;
use crate::sys::remote::nr;

/// Checks that every pidfd refers to a process of the image, live or
/// zombie (part of `Meta::validate`).
pub fn check<'a>(
    files: impl Iterator<Item = &'a FileImage>,
    pids: &HashSet<u32>,
) -> std::result::Result<(), Fault> {
    for f in files.filter(|f| f.kind == FileType::Pidfd) {
        if f.object_id > u32::MAX as u64 || !pids.contains(&(f.object_id as u32)) {
            return Err(Fault::PidfdTarget {
                file_id: f.id,
                pid: f.object_id,
            });
        }
    }
    Ok(())
}

/// Makes the pidfds of one process (see the module docs); `inner`: each
/// live process's pid as the tree sees it. A zombie's is its image pid
/// when the tree keeps its pids (`same_pids`).
pub(crate) fn install(
    bp: &mut Building,
    inner: &BTreeMap<Pid, Pid>,
    same_pids: bool,
) -> Result<()> {
    let pi = bp.pi;
    for d in pi.fds.iter().filter(|d| d.file.kind == FileType::Pidfd) {
        let image_target = Pid::from_u32(d.file.object_id as u32);
        let target = match inner.get(&image_target) {
            Some(&p) => p,
            None if same_pids => image_target,
            None => {
                return Err(Error::msg(format!(
                    "cannot restore descriptor {} of pid {}: it is a pidfd of zombie {image_target}, whose new pid is not known",
                    d.fd, pi.p.pid
                )));
            }
        };
        let err = |e: crate::sys::remote::RemoteError| {
            Error::msg(format!(
                "cannot restore descriptor {} of pid {}: pidfd of pid {image_target}: {e}",
                d.fd, pi.p.pid
            ))
        };
        let nonblock = d.file.flags as i32 & libc::O_NONBLOCK;
        let r = &mut bp.b.r;
        let fd = r
            .call(nr::PIDFD_OPEN, &[target.as_raw() as u64, nonblock as u64])
            .map_err(err)?;
        let cloexec = if d.cloexec { libc::O_CLOEXEC } else { 0 };
        if fd != d.fd as u64 {
            r.call(nr::DUP3, &[fd, d.fd as u64, cloexec as u64])
                .map_err(err)?;
            r.call(nr::CLOSE, &[fd]).map_err(err)?;
        } else if !d.cloexec {
            // pidfd_open always sets close-on-exec.
            r.call(nr::FCNTL, &[fd, libc::F_SETFD as u64, 0])
                .map_err(err)?;
        }
    }
    Ok(())
}
