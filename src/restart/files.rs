//! Opening the files of an image in the restorer, to hand them to the new
//! process at their descriptor numbers.
//!
//! Trust: a path in the image is only ever opened, never created or
//! truncated (`O_CREAT`, `O_TRUNC` and `O_EXCL` are stripped); contents of
//! deleted files go to a new unlinked file (`O_TMPFILE`).

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::stat::Mode;

use super::meta::FileImage;
use crate::error::{Context, Error, Result};
use crate::image::{self, Fault, File, FileType};
use crate::sys::fds;

/// Where a descriptor that led outside the image is reconnected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FdSource {
    /// Open this path (created if missing when opened for writing: the user
    /// named it).
    Path(std::path::PathBuf),
    /// This descriptor of `cr-restart` itself.
    Inherit(RawFd),
}

/// Open file descriptions held by the restorer while it builds processes.
#[derive(Default)]
pub struct OpenFiles {
    /// file id -> descriptor in the restorer.
    by_id: HashMap<u64, OwnedFd>,
    /// (file id, descriptor number) -> the connection of an external
    /// file: one external description held at several numbers (a terminal
    /// at 0, 1 and 2) is connected per number (cr-restart's 0, 1 and 2).
    externals: HashMap<(u64, u32), OwnedFd>,
    /// Lowest descriptor number the held files use.
    pub base: RawFd,
    /// Pipe and FIFO records of the image, by object id.
    pub pipes: HashMap<u64, image::Pipe>,
    /// Pipes made so far: object id -> (read end, write end); for a FIFO
    /// both are one read-write description that keeps it open.
    made: HashMap<u64, (OwnedFd, OwnedFd)>,
    /// Unix socket records of the image, by inode.
    pub sockets: HashMap<u64, super::meta::SocketImage>,
    /// Sockets made so far (see `unix.rs`).
    socks: super::unix::Made,
    /// TCP and UDP sockets of the image, made on first use.
    pub inet: super::inet::InetSockets,
    /// Pseudo-terminals of the image, made on first use.
    pub ptys: super::tty::Ptys,
    /// State of the event files (eventfd, epoll, ...), by file id.
    pub events: HashMap<u64, image::EventFile>,
    /// Every file of the image, for an epoll's targets.
    pub files: HashMap<u64, FileImage>,
    /// The restorer's memfds of shared memory objects, by object id.
    pub shm: HashMap<u64, RawFd>,
    /// The restorer's descriptors of POSIX message queues, and their
    /// records, by id.
    pub mq: HashMap<u64, RawFd>,
    pub mqueues: HashMap<u64, image::PosixMqueue>,
    /// Whose credentials path lookups, creations and opens use: the
    /// process being set up (see [`super::asuser`]).
    pub acting: super::asuser::Acting,
}

fn cpath(p: &[u8]) -> Result<CString> {
    CString::new(p).map_err(|_| Error::msg("a path in the image contains a NUL byte"))
}

/// Access mode and status flags safe to reopen with.
pub(super) fn reopen_flags(flags: u32) -> OFlag {
    let keep = libc::O_ACCMODE
        | libc::O_APPEND
        | libc::O_NONBLOCK
        | libc::O_DIRECT
        | libc::O_NOATIME
        | libc::O_LARGEFILE
        | libc::O_SYNC
        | libc::O_DSYNC;
    OFlag::from_bits_truncate(flags as i32 & keep) | OFlag::O_NOCTTY
}

impl OpenFiles {
    pub fn new(base: RawFd) -> Self {
        OpenFiles {
            base,
            ..Default::default()
        }
    }

    pub fn get(&self, id: u64) -> Option<RawFd> {
        self.by_id.get(&id).map(|f| f.as_raw_fd())
    }

    pub(super) fn hold(&mut self, id: u64, fd: OwnedFd) -> Result<RawFd> {
        let owned = self.above(fd)?;
        let high = owned.as_raw_fd();
        self.by_id.insert(id, owned);
        Ok(high)
    }

    /// Moves a descriptor above every descriptor number the image uses.
    fn above(&self, fd: OwnedFd) -> Result<OwnedFd> {
        fds::dup_above(fd.as_raw_fd(), self.base).ctx(|| "cannot duplicate a descriptor".into())
    }

    /// Connects an external file at descriptor `target_fd`, once per
    /// (file, number).
    fn open_external(
        &mut self,
        f: &File,
        target_fd: u32,
        external: &dyn Fn(&File, u32) -> Result<OwnedFd>,
    ) -> Result<RawFd> {
        if let Some(fd) = self.externals.get(&(f.id, target_fd)) {
            return Ok(fd.as_raw_fd());
        }
        let fd = self.above(external(f, target_fd)?)?;
        let high = fd.as_raw_fd();
        self.externals.insert((f.id, target_fd), fd);
        Ok(high)
    }

    /// Opens one file of the image, or connects it to where the options say.
    pub fn open(
        &mut self,
        f: &FileImage,
        target_fd: u32,
        external: &dyn Fn(&File, u32) -> Result<OwnedFd>,
    ) -> Result<RawFd> {
        if f.kind == FileType::External {
            return self.open_external(f, target_fd, external);
        }
        if let Some(fd) = self.get(f.id) {
            return Ok(fd);
        }
        let name = || String::from_utf8_lossy(&f.path).into_owned();
        let fd: OwnedFd = match f.kind {
            FileType::Regular | FileType::CharDev | FileType::BlockDev if !f.deleted => {
                let p = cpath(&f.path)?;
                let fd = self.acting.run(|| {
                    fds::open(p.as_c_str(), reopen_flags(f.flags), Mode::empty())
                        .ctx(|| format!("cannot open {}", name()))
                })?;
                if f.kind == FileType::Regular {
                    check_same_file(&fd, f, &name())?;
                    nix::unistd::lseek(fd.as_raw_fd(), f.pos as i64, nix::unistd::Whence::SeekSet)
                        .ctx(|| format!("cannot seek in {}", name()))?;
                }
                fd
            }
            FileType::Regular => {
                // A file unlinked while open: a fresh unlinked file next to
                // where it was (same filesystem), filled from BLOB records.
                let p = std::path::Path::new(OsStr::from_bytes(&f.path));
                let tmp = self.acting.run(|| {
                    let dir = p
                        .parent()
                        .filter(|d| d.is_dir())
                        .unwrap_or(std::path::Path::new("/tmp"));
                    fds::open(
                        dir,
                        OFlag::O_TMPFILE | OFlag::O_RDWR,
                        Mode::from_bits_truncate(f.mode & 0o7777),
                    )
                    .ctx(|| format!("cannot create a file for deleted {}", name()))
                })?;
                // Reopen with the original access mode and flags.
                let again = format!("/proc/self/fd/{}", tmp.as_raw_fd());
                let fd = fds::open(again.as_str(), reopen_flags(f.flags), Mode::empty())
                    .ctx(|| format!("cannot reopen the file for deleted {}", name()))?;
                nix::unistd::ftruncate(&tmp, f.size as i64)
                    .ctx(|| format!("cannot size the file for deleted {}", name()))?;
                nix::unistd::lseek(fd.as_raw_fd(), f.pos as i64, nix::unistd::Whence::SeekSet)
                    .ctx(|| format!("cannot seek in {}", name()))?;
                // Keep the writable one too, under its own id space, for BLOBs.
                self.hold(blob_key(f.id), tmp)?;
                fd
            }
            FileType::Directory => {
                let p = cpath(&f.path)?;
                self.acting.run(|| {
                    fds::open(
                        p.as_c_str(),
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                        Mode::empty(),
                    )
                    .ctx(|| format!("cannot open directory {}", name()))
                })?
            }
            FileType::Pipe | FileType::Fifo => self.open_pipe(f)?,
            FileType::Socket => self.open_socket(f)?,
            FileType::Inet => self.inet.open(f)?,
            // Made by the process itself once the tree exists (`pidfd.rs`).
            FileType::Pidfd => {
                return Err(Error::msg(format!(
                    "internal error: pidfd at descriptor {target_fd} opened by the restorer"
                )));
            }
            FileType::PtyMaster | FileType::PtySlave => {
                let ptys = &mut self.ptys;
                self.acting.run(|| ptys.open(f))?
            }
            FileType::Epoll => return self.open_epoll(f, external),
            FileType::Memfd => self.open_memfd(f)?,
            FileType::PosixShm => self.open_posix_shm(f)?,
            FileType::Mqueue => self.open_mqueue(f)?,
            FileType::Eventfd | FileType::Timerfd | FileType::Signalfd | FileType::Inotify => {
                let state = self.events.get(&f.id);
                self.acting.run(|| super::events::open(f, state))?
            }
            // A deleted device file: its contents are not the image's to
            // carry.
            FileType::CharDev | FileType::BlockDev => {
                return Err(Error::msg(format!(
                    "cannot restore descriptor {target_fd} ({}): files of type {} are not supported yet",
                    String::from_utf8_lossy(&f.link),
                    f.ftype
                )));
            }
            FileType::External => return self.open_external(f, target_fd, external),
        };
        super::locks::take_file_locks(fd.as_raw_fd(), f)?;
        self.hold(f.id, fd)
    }

    /// Opens one end of a pipe or FIFO as its own description with the
    /// image's flags, making the pipe first.
    fn open_pipe(&mut self, f: &FileImage) -> Result<OwnedFd> {
        let p = self
            .pipes
            .get(&f.object_id)
            .ok_or_else(|| super::meta::unresolved(f))?;
        // A FIFO is checked (and made if missing) for every description,
        // with the credentials of the process it is for.
        let node = if f.kind == FileType::Fifo {
            Some(super::asuser::fifo(
                &self.acting,
                &p.fifo_path,
                f.mode,
                f.flags,
            )?)
        } else {
            None
        };
        if let std::collections::hash_map::Entry::Vacant(slot) = self.made.entry(p.id) {
            let (rd, wr) = if let Some(node) = &node {
                let path = String::from_utf8_lossy(&p.fifo_path);
                let again = format!("/proc/self/fd/{}", node.as_raw_fd());
                let keep = fds::open(
                    again.as_str(),
                    OFlag::O_RDWR | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .ctx(|| format!("cannot open FIFO {path}"))?;
                let again = keep.try_clone().ctx(|| "dup".into())?;
                (keep, again)
            } else {
                nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "cannot create a pipe".into())?
            };
            if p.capacity > 0 {
                fcntl(wr.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(p.capacity as i32))
                    .ctx(|| format!("cannot give a pipe its capacity of {} bytes", p.capacity))?;
            }
            slot.insert((rd, wr));
        }
        let (rd, wr) = &self.made[&p.id];
        let acc = f.flags as i32 & libc::O_ACCMODE;
        let end = if acc == libc::O_WRONLY { wr } else { rd };
        let again = format!("/proc/self/fd/{}", end.as_raw_fd());
        let flags = reopen_flags(f.flags) | OFlag::O_NONBLOCK;
        let fd = fds::open(again.as_str(), flags, Mode::empty())
            .ctx(|| format!("cannot open {}", String::from_utf8_lossy(&f.link)))?;
        if f.flags as i32 & libc::O_NONBLOCK == 0 {
            fcntl(
                fd.as_raw_fd(),
                FcntlArg::F_SETFL(reopen_flags(f.flags) & !OFlag::O_NOCTTY),
            )
            .ctx(|| "fcntl".into())?;
        }
        Ok(fd)
    }

    /// A Unix socket (see `unix.rs`).
    fn open_socket(&mut self, f: &File) -> Result<OwnedFd> {
        super::unix::open(&self.sockets, &mut self.socks, f, &self.acting)
    }

    /// Queues data that was waiting to be read on socket `id`
    /// (length-prefixed messages).
    pub fn fill_socket(&self, id: u64, data: &[u8]) -> Result<()> {
        super::unix::fill(&self.sockets, &self.socks, id, data)
    }

    /// After all data is queued: options, shutdowns, connections by name;
    /// stand-in peers closed.
    pub fn finish_sockets(&mut self) -> Result<()> {
        super::unix::finish(&self.sockets, &mut self.socks)
    }

    /// Closes the restorer's own ends of every pipe and FIFO, once their
    /// data is back in them and before the tree runs: held on, they made
    /// a pipe whose readers were all gone take a restored process's write
    /// (instead of `EPIPE`) and one whose writers were gone block its read
    /// (instead of end of file) until the restorer exited.
    pub fn close_pipes(&mut self) {
        self.made.clear();
    }

    /// Puts data that was waiting in a pipe back into it.
    pub fn fill_pipe(&self, id: u64, data: &[u8]) -> Result<()> {
        let (_, wr) = self.made.get(&id).ok_or(Fault::DataUnheld {
            target: image::DataTarget::Pipe,
            id,
        })?;
        let again = format!("/proc/self/fd/{}", wr.as_raw_fd());
        let fd = fds::open(
            again.as_str(),
            OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| "cannot open a pipe to fill it".into())?;
        let mut done = 0;
        while done < data.len() {
            let n = nix::unistd::write(&fd, &data[done..])
                .ctx(|| format!("cannot put {} bytes back into pipe {id}", data.len()))?;
            done += n;
        }
        Ok(())
    }

    /// The writable descriptor for a deleted file's contents.
    pub fn blob_target(&self, id: u64) -> Option<RawFd> {
        self.get(blob_key(id))
    }
}

fn blob_key(id: u64) -> u64 {
    id | 1 << 63
}

/// Refuses to hand a process a different file than the one it had open
/// when the image recorded the inode (same machine, same filesystem).
fn check_same_file(fd: &OwnedFd, f: &File, name: &str) -> Result<()> {
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).ctx(|| format!("cannot stat {name}"))?;
    if f.size > st.st_size as u64 && f.pos > st.st_size as u64 {
        return Err(Error::msg(format!(
            "cannot restore {name}: the file is shorter ({} bytes) than the offset the process had ({})",
            st.st_size, f.pos
        )));
    }
    Ok(())
}
