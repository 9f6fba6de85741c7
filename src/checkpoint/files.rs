//! Reading a process's descriptors into `FILE` and `FDTABLE` records.
//!
//! Descriptors that share one open file description (after `dup` or
//! `fork`) get one `FILE` record, found with `kcmp(KCMP_FILE)`.

use std::os::unix::fs::MetadataExt;

use crate::error::{Error, Result};
use crate::image::{self, Fd, FdTable, File};
use crate::sys::proc;

/// Open file descriptions seen so far, across the tree.
#[derive(Default)]
pub struct FileTable {
    pub files: Vec<File>,
    /// For each file: one `(pid, fd)` that holds it, for `kcmp`.
    holders: Vec<(i32, i32)>,
    next_id: u64,
}

fn kcmp_file(pid1: i32, fd1: i32, pid2: i32, fd2: i32) -> Option<bool> {
    const KCMP_FILE: i32 = 0;
    // SAFETY: kcmp compares kernel objects by integer ids; no memory is passed.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, KCMP_FILE, fd1, fd2) };
    (r >= 0).then_some(r == 0)
}

fn is_terminal_path(p: &[u8]) -> bool {
    p.starts_with(b"/dev/pts/")
        || p.starts_with(b"/dev/tty")
        || p == b"/dev/console"
        || p == b"/dev/ptmx"
}

impl FileTable {
    pub fn new() -> Self {
        FileTable {
            next_id: 1,
            ..Default::default()
        }
    }

    /// Reads every descriptor of `pid`.
    pub fn read_fds(&mut self, pid: i32) -> Result<FdTable> {
        let fds = proc::fds(pid).map_err(|e| Error::msg(format!("cannot checkpoint pid {pid}: {e}")))?;
        let mut table = FdTable {
            pid: pid as u32,
            fds: Vec::new().into(),
        };
        for (fd, link) in fds {
            let info = match proc::fdinfo(pid, fd) {
                Ok(i) => i,
                // Closed between the listing and now: the process is frozen,
                // so this cannot happen unless it is exiting.
                Err(e) => return Err(Error::msg(format!("cannot checkpoint pid {pid}: {e}"))),
            };
            let cloexec = info.flags & libc::O_CLOEXEC as u32 != 0;
            let file_id = self.file_for(pid, fd, &link, &info)?;
            table.fds.push(Fd {
                fd: fd as u32,
                cloexec,
                file_id,
            });
        }
        Ok(table)
    }

    fn file_for(&mut self, pid: i32, fd: i32, link: &[u8], info: &proc::FdInfo) -> Result<u64> {
        for (i, &(hp, hfd)) in self.holders.iter().enumerate() {
            if self.files[i].ino == info.ino && kcmp_file(pid, fd, hp, hfd) == Some(true) {
                return Ok(self.files[i].id);
            }
        }
        let f = describe(pid, fd, link, info)?;
        let id = self.next_id;
        self.next_id += 1;
        self.files.push(File { id, ..f });
        self.holders.push((pid, fd));
        Ok(id)
    }
}

/// What one descriptor refers to.
fn describe(pid: i32, fd: i32, link: &[u8], info: &proc::FdInfo) -> Result<File> {
    let unsupported = |what: &str| {
        Error::msg(format!(
            "cannot checkpoint pid {pid}: descriptor {fd} ({}) is {what}, which is not supported yet",
            String::from_utf8_lossy(link)
        ))
    };
    let flags = info.flags & !(libc::O_CLOEXEC as u32);
    let mut f = File {
        flags,
        pos: info.pos,
        link: link.to_vec(),
        external_fd: fd as u32,
        ..Default::default()
    };
    let meta = std::fs::metadata(format!("/proc/{pid}/fd/{fd}"));
    if link.starts_with(b"pipe:") || link.starts_with(b"socket:") {
        // The other end is outside what this version dumps: reconnected at
        // restore time.
        f.ftype = image::FT_EXTERNAL;
        f.ino = info.ino;
        return Ok(f);
    }
    if link.starts_with(b"anon_inode:") {
        return Err(unsupported("an anonymous inode"));
    }
    let meta = meta.map_err(|e| Error::msg(format!("cannot checkpoint pid {pid}: descriptor {fd}: {e}")))?;
    f.mode = meta.mode();
    f.rdev = meta.rdev();
    f.size = meta.size();
    f.dev = meta.dev();
    f.ino = meta.ino();
    let ft = meta.mode() & libc::S_IFMT;
    let deleted_suffix = b" (deleted)";
    let (path, deleted) = if link.ends_with(deleted_suffix) && meta.nlink() == 0 {
        (&link[..link.len() - deleted_suffix.len()], true)
    } else {
        (link, false)
    };
    f.path = path.to_vec();
    f.deleted = deleted;
    f.ftype = match ft {
        libc::S_IFREG if path.starts_with(b"/memfd:") => return Err(unsupported("a memfd")),
        libc::S_IFREG => image::FT_REGULAR,
        libc::S_IFDIR => image::FT_DIRECTORY,
        libc::S_IFCHR if is_terminal_path(path) => image::FT_EXTERNAL,
        libc::S_IFCHR => image::FT_CHARDEV,
        libc::S_IFBLK => image::FT_BLOCKDEV,
        libc::S_IFIFO => return Err(unsupported("a FIFO")),
        _ => return Err(unsupported("of an unknown type")),
    };
    if deleted && f.ftype != image::FT_REGULAR {
        return Err(unsupported("a deleted non-regular file"));
    }
    Ok(f)
}
