//! Reading a process's descriptors into `FILE` and `FDTABLE` records.
//!
//! Descriptors that share one open file description (after `dup` or
//! `fork`) get one `FILE` record, found with `kcmp(KCMP_FILE)`.

use std::os::unix::fs::MetadataExt;

use crate::error::{Error, Result};
use crate::image::{self, Fd, FdTable, File};
use crate::sys::process::{self, Kcmp};
use crate::sys::{Fd as SysFd, Pid, proc};

/// Open file descriptions seen so far, across the tree.
#[derive(Default)]
pub struct FileTable {
    pub files: Vec<File>,
    /// For each file: one `(pid, fd)` that holds it, for `kcmp`.
    holders: Vec<(i32, i32)>,
    next_id: u64,
    /// Event files (eventfd, epoll, ...) and their state.
    pub events: super::events::Events,
    /// What to do with Unix sockets whose peer is outside the tree.
    pub external_unix: super::unix::ExternalUnix,
}

fn kcmp_file(pid1: i32, fd1: i32, pid2: i32, fd2: i32) -> Option<bool> {
    let (p1, p2) = (Pid::from_raw(pid1), Pid::from_raw(pid2));
    process::kcmp(
        p1,
        p2,
        Kcmp::File(SysFd::from_raw(fd1), SysFd::from_raw(fd2)),
    )
    .ok()
}

fn is_terminal_path(p: &[u8]) -> bool {
    p.starts_with(b"/dev/pts/")
        || p.starts_with(b"/dev/tty")
        || p == b"/dev/console"
        || p == b"/dev/ptmx"
}

/// Whether pipe `ino`, whose ends in the tree are all of one kind (`end`,
/// a descriptor of one of them, and `writers`: they are write ends), has
/// an end of the other kind anywhere. The kernel counts a pipe's readers
/// and writers, and `poll` on a duplicate says when that count is zero
/// (`POLLERR` for a write end, `POLLHUP` for a read end): then nobody
/// outside holds it and `/proc` need not be searched. `None`: not known.
fn pipe_has_peer(end: Option<(Pid, SysFd)>, writers: bool) -> Option<bool> {
    use std::os::fd::AsFd;
    let (pid, fd) = end?;
    let dup = crate::sys::unixdiag::steal_fd(pid, fd).ok()?;
    let ev = process::poll_now(dup.as_fd()).ok()?;
    let none = if writers {
        libc::POLLERR
    } else {
        libc::POLLHUP
    };
    Some(ev & none == 0)
}

/// Whether any process outside `tree` holds a descriptor for pipe `ino`.
/// Processes are searched nearest pid to the tree's root first: the other
/// end of a pipeline's pipe is usually its neighbour, or the shell that
/// started both, not long before.
fn pipe_held_outside(ino: u64, tree: &[i32]) -> bool {
    let want = format!("pipe:[{ino}]");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return true;
    };
    let mut pids: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .filter(|p| !tree.contains(p) && *p as u32 != std::process::id())
        .collect();
    let root = tree.first().copied().unwrap_or(0);
    pids.sort_by_key(|p| p.abs_diff(root));
    pids.into_iter().any(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == want.as_str())
            })
        })
    })
}

/// Copies the data waiting in a pipe or FIFO without consuming it: `tee`
/// from a new read description of it into a pipe of our own.
pub fn peek_pipe(pid: Pid, fd: SysFd) -> Result<(u32, Vec<u8>)> {
    use std::io::Read;
    use std::os::fd::{AsFd, AsRawFd};
    let path = format!("/proc/{pid}/fd/{fd}");
    let src = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags_nonblock()
        .open(&path)
        .map_err(|e| {
            Error::msg(format!(
                "cannot checkpoint pid {pid}: cannot open its pipe at descriptor {fd}: {e}"
            ))
        })?;
    let cap =
        nix::fcntl::fcntl(src.as_raw_fd(), nix::fcntl::FcntlArg::F_GETPIPE_SZ).map_err(|e| {
            Error::msg(format!(
                "cannot checkpoint pid {pid}: pipe at descriptor {fd}: {e}"
            ))
        })?;
    let avail = process::readable_bytes(src.as_fd()).map_err(|e| {
        Error::msg(format!(
            "cannot checkpoint pid {pid}: pipe at descriptor {fd}: {e}"
        ))
    })? as i32;
    let mut data = Vec::with_capacity(avail as usize);
    if avail > 0 {
        let (rd, wr) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
                .map_err(|e| Error::msg(format!("pipe: {e}")))?;
        let _ = nix::fcntl::fcntl(
            wr.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETPIPE_SZ(cap.max(avail)),
        );
        let copied = process::tee_nonblock(src.as_fd(), wr.as_fd(), avail as usize);
        if copied.as_ref().map_or(true, |&n| n != avail as usize) {
            let e = copied.err().unwrap_or_else(std::io::Error::last_os_error);
            return Err(Error::msg(format!(
                "cannot checkpoint pid {pid}: cannot copy the {avail} bytes waiting in its pipe at descriptor {fd}: {e}"
            )));
        }
        drop(wr);
        std::fs::File::from(rd)
            .read_to_end(&mut data)
            .map_err(|e| Error::msg(format!("pipe: {e}")))?;
    }
    Ok((cap as u32, data))
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}
impl NonBlock for std::fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::custom_flags(self, libc::O_NONBLOCK)
    }
}

impl FileTable {
    /// Decides which Unix sockets the image holds (see `unix.rs`); a
    /// socket whose peer is outside, at descriptor 0, 1 or 2, becomes
    /// external. Anything else (other families) is refused. Returns the
    /// records with the data waiting in each.
    pub fn sockets(&mut self, fdtables: &[FdTable]) -> Result<Vec<(image::Socket, Vec<u8>)>> {
        if !self.files.iter().any(|f| f.ftype == image::FT_SOCKET) {
            return Ok(Vec::new());
        }
        let diag = crate::sys::unixdiag::unix_sockets()
            .map_err(|e| Error::msg(format!("cannot list Unix sockets: {e}")))?;
        let held: Vec<u64> = self
            .files
            .iter()
            .filter(|f| f.ftype == image::FT_SOCKET)
            .map(|f| f.object_id)
            .collect();
        let view = super::unix::View::new(&diag, held, self.external_unix);
        let mut out = Vec::new();
        for f in self
            .files
            .iter_mut()
            .filter(|f| f.ftype == image::FT_SOCKET)
        {
            let (pid, fd) = holder(fdtables, f.id).expect("every file has a holder");
            let stdio = fdtables
                .iter()
                .any(|t| t.fds.iter().any(|d| d.file_id == f.id && d.fd <= 2));
            let refuse = |what: &str| {
                Error::msg(format!(
                    "cannot checkpoint pid {pid}: descriptor {fd} ({}) is {what}, which is not supported yet",
                    String::from_utf8_lossy(&f.link)
                ))
            };
            let Some(u) = diag.get(&f.object_id) else {
                if stdio {
                    f.ftype = image::FT_EXTERNAL;
                    continue;
                }
                return Err(refuse("a socket other than a Unix socket"));
            };
            if stdio && (!view.inside(u.peer) || !u.name.is_empty()) {
                f.ftype = image::FT_EXTERNAL;
                continue;
            }
            out.extend(super::unix::records(pid, fd, f, u, &view)?);
        }
        Ok(out)
    }

    /// Decides which pipes the image holds: those with both ends in the
    /// tree, or held by nobody outside it. The others become external.
    /// Returns each held pipe or FIFO with one `(pid, fd)` holding it.
    pub fn pipes(&mut self, tree: &[i32], fdtables: &[FdTable]) -> Vec<(image::Pipe, Pid, SysFd)> {
        let mut out: Vec<(image::Pipe, Pid, SysFd)> = Vec::new();
        let inos: Vec<u64> = self
            .files
            .iter()
            .filter(|f| f.ftype == image::FT_PIPE || f.ftype == image::FT_FIFO)
            .map(|f| f.object_id)
            .collect();
        for ino in inos {
            if out.iter().any(|(p, _, _)| p.id == ino) {
                continue;
            }
            let ends: Vec<&File> = self
                .files
                .iter()
                .filter(|f| {
                    f.object_id == ino && (f.ftype == image::FT_PIPE || f.ftype == image::FT_FIFO)
                })
                .collect();
            let fifo = ends[0].ftype == image::FT_FIFO;
            let acc = |f: &&File| f.flags as i32 & libc::O_ACCMODE;
            let reader = ends.iter().any(|f| acc(f) != libc::O_WRONLY);
            let writer = ends.iter().any(|f| acc(f) != libc::O_RDONLY);
            // Only one kind of end in the tree: the pipe is external when
            // someone outside holds the other (searched for in `/proc`
            // only when the kernel says the other kind has holders).
            let one_kind = !(fifo || reader && writer);
            if one_kind
                && pipe_has_peer(ends.iter().find_map(|f| holder(fdtables, f.id)), writer)
                    != Some(false)
                && pipe_held_outside(ino, tree)
            {
                for f in self
                    .files
                    .iter_mut()
                    .filter(|f| f.object_id == ino && f.ftype == image::FT_PIPE)
                {
                    f.ftype = image::FT_EXTERNAL;
                }
                continue;
            }
            let Some((pid, fd)) = ends.iter().find_map(|f| holder(fdtables, f.id)) else {
                continue;
            };
            out.push((
                image::Pipe {
                    id: ino,
                    capacity: 0,
                    data_len: 0,
                    fifo_path: if fifo {
                        ends[0].path.clone()
                    } else {
                        Vec::new()
                    },
                },
                pid,
                fd,
            ));
        }
        out
    }

    /// Adds a file no descriptor refers to (e.g. a controlling terminal
    /// nobody holds open); returns its id.
    pub fn add_file(&mut self, f: File) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.files.push(File { id, ..f });
        id
    }

    pub fn new() -> Self {
        FileTable {
            next_id: 1,
            ..Default::default()
        }
    }

    /// Reads every descriptor of `pid`.
    pub fn read_fds(&mut self, pid: i32) -> Result<FdTable> {
        let fds =
            proc::fds(pid).map_err(|e| Error::msg(format!("cannot checkpoint pid {pid}: {e}")))?;
        let mut table = FdTable {
            pid: pid as u32,
            ..Default::default()
        };
        let mut posix_seen = Vec::new();
        for (fd, link) in fds {
            let info = match proc::fdinfo(pid, fd) {
                Ok(i) => i,
                // Closed between the listing and now: the process is frozen,
                // so this cannot happen unless it is exiting.
                Err(e) => return Err(Error::msg(format!("cannot checkpoint pid {pid}: {e}"))),
            };
            let cloexec = info.flags & libc::O_CLOEXEC as u32 != 0;
            let file_id = self.file_for(pid, fd, &link, &info)?;
            let file = self.files.iter_mut().find(|f| f.id == file_id);
            let file = file.expect("file_for returns a known id");
            super::locks::collect(pid, fd, &info, file, &mut table, &mut posix_seen)?;
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
        let f = File { id, ..f };
        self.events.collect(pid, fd, &f, info)?;
        self.files.push(f);
        self.holders.push((pid, fd));
        Ok(id)
    }
}

/// One `(pid, fd)` of the tree holding file `id`: the first in table
/// order ([`FdTable::holder`]), typed.
pub fn holder(fdtables: &[FdTable], id: u64) -> Option<(Pid, SysFd)> {
    FdTable::holder(fdtables, id).map(|(p, d)| (Pid::from_u32(p), SysFd::from_u32(d)))
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
    if link.starts_with(b"pipe:") {
        // Internal or external is decided once every process's descriptors
        // are known: see `FileTable::pipes`.
        f.ftype = image::FT_PIPE;
        f.ino = info.ino;
        f.object_id = info.ino;
        return Ok(f);
    }
    if link.starts_with(b"socket:") {
        // Internal or external is decided once every process's descriptors
        // are known: see `FileTable::sockets`.
        f.ftype = image::FT_SOCKET;
        f.ino = info.ino;
        f.object_id = info.ino;
        return Ok(f);
    }
    if link.starts_with(b"anon_inode:") {
        f.ftype = super::events::classify(pid, fd, link)?;
        f.ino = info.ino;
        if f.ftype == image::FT_PIDFD {
            f.object_id = super::pidfd::target(info).unwrap_or(0) as u64;
        }
        return Ok(f);
    }
    let meta =
        meta.map_err(|e| Error::msg(format!("cannot checkpoint pid {pid}: descriptor {fd}: {e}")))?;
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
    if ft == libc::S_IFCHR
        && let Some((ftype, index)) =
            super::tty::classify(Pid::from_raw(pid), SysFd::from_raw(fd), path, &meta)?
    {
        // A pty end; which ones the image holds is decided once every
        // descriptor is known: see `tty::decide`.
        f.ftype = ftype;
        f.object_id = super::tty::object_id(index);
        return Ok(f);
    }
    f.ftype = match ft {
        libc::S_IFREG if path.starts_with(b"/memfd:") => {
            // Tied to its shared memory object by `memfd::link_files`.
            f.deleted = false;
            f.ftype = image::FT_MEMFD;
            return Ok(f);
        }
        libc::S_IFREG if !deleted && super::posixshm::name_of(path).is_some() => {
            // Tied to its shared memory object by `memfd::link_files`.
            f.ftype = image::FT_POSIX_SHM;
            return Ok(f);
        }
        libc::S_IFREG if super::mqueue::is_mqueue(pid, fd) => {
            // Its attributes and messages: `mqueue::collect`.
            f.ftype = image::FT_MQUEUE;
            f.object_id = meta.ino();
            f.deleted = false;
            return Ok(f);
        }
        libc::S_IFREG => image::FT_REGULAR,
        libc::S_IFDIR => image::FT_DIRECTORY,
        libc::S_IFCHR if is_terminal_path(path) => image::FT_EXTERNAL,
        libc::S_IFCHR => image::FT_CHARDEV,
        libc::S_IFBLK => image::FT_BLOCKDEV,
        libc::S_IFIFO => {
            f.object_id = meta.ino();
            image::FT_FIFO
        }
        _ => return Err(unsupported("of an unknown type")),
    };
    if deleted && f.ftype != image::FT_REGULAR {
        return Err(unsupported("a deleted non-regular file"));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, OwnedFd};

    fn end(fd: &OwnedFd) -> Option<(Pid, SysFd)> {
        Some((Pid::this(), SysFd::from_raw(fd.as_raw_fd())))
    }

    /// The kernel's count answers for both kinds of end: a write end
    /// whose readers are all closed, a read end whose writers are. (A
    /// test running beside this one may fork while a pipe is open and
    /// hold its ends for a moment: "nobody" is waited for, briefly.)
    #[test]
    fn pipe_peer_from_the_kernels_count() {
        use nix::fcntl::OFlag;
        let nobody = |e: Option<(Pid, SysFd)>, writers: bool| {
            let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
            loop {
                let got = pipe_has_peer(e, writers);
                if got != Some(true) || std::time::Instant::now() > until {
                    return got;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        };
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        assert_eq!(pipe_has_peer(end(&w), true), Some(true));
        assert_eq!(pipe_has_peer(end(&r), false), Some(true));
        drop(r);
        assert_eq!(nobody(end(&w), true), Some(false));
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        drop(w);
        assert_eq!(nobody(end(&r), false), Some(false));
        assert_eq!(pipe_has_peer(None, false), None);
    }
}
