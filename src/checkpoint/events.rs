//! Event descriptors (anonymous inodes) at checkpoint: eventfd, epoll,
//! timerfd, signalfd and inotify become `FILE`s with an `EVENT` record of
//! their state, read from fdinfo. Kinds that cannot be carried (io_uring,
//! userfaultfd, fanotify, perf events, bpf objects, pidfds) are refused
//! with a line naming the process and the descriptor.
//!
//! An epoll's targets are resolved once every process's descriptors are
//! known ([`Events::resolve`]): fdinfo gives each target's descriptor
//! number and inode, and `kcmp(KCMP_EPOLL_TFD)` finds which open file of
//! the tree it is, even when that number was closed or now holds another
//! file (the registration lives as long as the file does, through a dup).

use std::os::fd::AsFd;

use crate::error::{Error, Result};
use crate::image::{self, EpollTarget, EventFile, FdTable, File, InotifyWatch};
use crate::sys::{Fd, Pid, events, proc};

/// The `FT_*` of an anonymous-inode descriptor, or why it is refused.
pub fn classify(pid: i32, fd: i32, link: &[u8]) -> Result<u8> {
    let kind = link.strip_prefix(b"anon_inode:").unwrap_or(link);
    let refuse = |what: &str| {
        Err(Error::msg(format!(
            "cannot checkpoint pid {pid}: descriptor {fd} ({}) is {what}, which cannot be checkpointed",
            String::from_utf8_lossy(link)
        )))
    };
    match kind {
        b"[eventfd]" => Ok(image::FT_EVENTFD),
        b"[eventpoll]" => Ok(image::FT_EPOLL),
        b"[timerfd]" => Ok(image::FT_TIMERFD),
        b"[signalfd]" => Ok(image::FT_SIGNALFD),
        b"inotify" => Ok(image::FT_INOTIFY),
        b"[io_uring]" => refuse("an io_uring instance (its rings and requests in flight)"),
        b"[userfaultfd]" => refuse("a userfaultfd (its registered ranges and pending faults)"),
        b"[fanotify]" => refuse("a fanotify group"),
        b"[perf_event]" => refuse("a perf event"),
        // Its pid: `pidfd.rs`.
        b"[pidfd]" => Ok(image::FT_PIDFD),
        k if k.starts_with(b"bpf") || k.starts_with(b"[bpf") => refuse("a bpf object"),
        _ => refuse("an anonymous inode of a kind crtools does not know"),
    }
}

/// One event file as read, its epoll targets not yet resolved.
struct Found {
    ev: EventFile,
    pid: i32,
    fd: i32,
    raw: Vec<proc::EpollTfd>,
}

/// The event files of the tree, collected descriptor by descriptor.
#[derive(Default)]
pub struct Events {
    found: Vec<Found>,
}

fn bad_fdinfo(pid: i32, fd: i32, e: proc::ParseError) -> Error {
    Error::msg(format!(
        "cannot checkpoint pid {pid}: fdinfo of descriptor {fd}: {}",
        e.0
    ))
}

impl Events {
    /// Reads the state of event file `f` (new to the table) at `pid`'s
    /// descriptor `fd`; other files are left alone.
    pub fn collect(&mut self, pid: i32, fd: i32, f: &File, info: &proc::FdInfo) -> Result<()> {
        let bad = |e| bad_fdinfo(pid, fd, e);
        let mut ev = EventFile {
            file_id: f.id,
            ..Default::default()
        };
        let mut raw = Vec::new();
        match f.ftype {
            image::FT_EVENTFD => {
                let e = info.eventfd().map_err(bad)?;
                ev.count = e.count;
                ev.semaphore = e.semaphore.unwrap_or(false);
            }
            image::FT_TIMERFD => {
                let t = info.timerfd().map_err(bad)?;
                ev.clock = t.clock;
                ev.settime_flags = t.settime_flags;
                ev.value_ns = t.value_ns;
                ev.interval_ns = t.interval_ns;
                ev.ticks = t.ticks;
            }
            image::FT_SIGNALFD => ev.sigmask = info.signalfd_mask().map_err(bad)?,
            image::FT_EPOLL => raw = info.epoll_targets().map_err(bad)?,
            image::FT_INOTIFY => {
                let marks = info.inotify_watches().map_err(bad)?;
                ev.watches = marks
                    .iter()
                    .map(|m| watch_path(pid, fd, m))
                    .collect::<Result<Vec<_>>>()?
                    .into();
            }
            _ => return Ok(()),
        }
        self.found.push(Found { ev, pid, fd, raw });
        Ok(())
    }

    /// Resolves every epoll target to a file of the tree and returns the
    /// `EVENT` records.
    pub fn resolve(self, files: &[File], fdtables: &[FdTable]) -> Result<Vec<EventFile>> {
        let mut out = Vec::with_capacity(self.found.len());
        for Found {
            mut ev,
            pid,
            fd,
            raw,
        } in self.found
        {
            let mut targets = Vec::with_capacity(raw.len());
            for (k, t) in raw.iter().enumerate() {
                let toff = raw[..k].iter().filter(|x| x.tfd == t.tfd).count() as u32;
                let file_id = target_file(pid, fd, t, toff, files, fdtables)?;
                targets.push(EpollTarget {
                    tfd: t.tfd as u32,
                    file_id,
                    events: t.events,
                    data: t.data,
                });
            }
            ev.targets = targets.into();
            out.push(ev);
        }
        Ok(out)
    }
}

/// Which file of the tree is the target `t` of epoll `efd` of `pid`.
fn target_file(
    pid: i32,
    efd: i32,
    t: &proc::EpollTfd,
    toff: u32,
    files: &[File],
    fdtables: &[FdTable],
) -> Result<u64> {
    let mut tried = Vec::new();
    for table in fdtables {
        for d in table.fds.iter() {
            if tried.contains(&d.file_id) {
                continue;
            }
            let Some(f) = files.iter().find(|f| f.id == d.file_id) else {
                continue;
            };
            if f.ino != t.ino {
                continue;
            }
            tried.push(d.file_id);
            let same = events::kcmp_epoll_tfd(
                Pid::from_u32(table.pid),
                Fd::from_u32(d.fd),
                Pid::from_raw(pid),
                Fd::from_raw(efd),
                t.tfd,
                toff,
            );
            if same.is_ok_and(|s| s) {
                return Ok(d.file_id);
            }
        }
    }
    Err(Error::msg(format!(
        "cannot checkpoint pid {pid}: its epoll at descriptor {efd} watches a file registered as descriptor {} (inode {}) that no process of the tree holds open",
        t.tfd, t.ino
    )))
}

/// The path of an inotify watch's inode, found from the file handle the
/// kernel shows (`open_by_handle_at` on a mount of its device).
fn watch_path(pid: i32, fd: i32, m: &proc::InotifyMark) -> Result<InotifyWatch> {
    let (major, minor) = (m.sdev >> 20, m.sdev & 0xf_ffff);
    let fail = |why: String| {
        Error::msg(format!(
            "cannot checkpoint pid {pid}: inotify watch {} at descriptor {fd} (inode {} on device {major}:{minor}): {why}",
            m.wd, m.ino
        ))
    };
    let mounts = proc::mountinfo(pid).map_err(|e| fail(e.to_string()))?;
    let mut last = String::from("no mount of its device");
    for mnt in mounts
        .iter()
        .filter(|x| x.major == major && x.minor == minor)
    {
        let at = [format!("/proc/{pid}/root").as_bytes(), &mnt.mount_point[..]].concat();
        let dir = match std::fs::File::open(proc::bytes_path(&at)) {
            Ok(d) => d,
            Err(e) => {
                last = format!("cannot open mount {}: {e}", proc::bytes_path(&at).display());
                continue;
            }
        };
        match events::open_by_handle(dir.as_fd(), m.fhandle_type, &m.fhandle) {
            Ok(o) => {
                let link = proc::readlink_bytes(format!("/proc/self/fd/{}", {
                    use std::os::fd::AsRawFd;
                    o.as_raw_fd()
                }))
                .map_err(|e| fail(e.to_string()))?;
                if link.ends_with(b" (deleted)") {
                    return Err(fail("the watched file was deleted".into()));
                }
                return Ok(InotifyWatch {
                    wd: m.wd,
                    mask: m.mask,
                    path: link,
                    dev: u64::from(m.sdev),
                    ino: m.ino,
                });
            }
            Err(e) => last = format!("no path for its file handle: {e}"),
        }
    }
    Err(fail(last))
}
