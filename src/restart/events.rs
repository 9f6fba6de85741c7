//! Event files at restore: an eventfd, timerfd, signalfd or inotify is
//! made anew from its `EVENT` record by the restorer (no path, no
//! permission involved), then handed out like any other open file. An
//! epoll is made once all of its targets are open, and each target is
//! registered under the descriptor number it had: `epoll_ctl` keys a
//! registration by (file, number), and the process later changes or
//! removes it by that number. The restorer's own numbers are not those,
//! so the registering runs in a thread with a private copy of the
//! descriptor table (`unshare(CLONE_FILES)`), where each target is put at
//! its number just for the `epoll_ctl` call.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use crate::error::{Context, Error, Result};
use crate::image::{self, EventFile, Fault, File, FileType};
use crate::sys::{events, fds};

use super::files::OpenFiles;
use super::meta::{FileImage, MAX_FD};

/// Deepest nesting of epolls the kernel allows (`EP_MAX_NESTS` + 1).
const MAX_EPOLL_DEPTH: usize = 5;

/// Files with an `EVENT` record: the event kinds made from their record
/// alone ([`FileType::is_event`]) and epolls.
fn is_any_event(kind: FileType) -> bool {
    kind.is_event() || kind == FileType::Epoll
}

/// Checks the `EVENT` records against the files (part of
/// `Meta::validate`): each belongs to an event file, each event file has
/// one, each epoll target is a file of the image at a possible number,
/// and epolls nest neither in a loop nor deeper than the kernel allows;
/// inotify watches have possible numbers and paths.
pub fn check(
    files: &HashMap<u64, FileImage>,
    evs: &HashMap<u64, EventFile>,
) -> std::result::Result<(), Fault> {
    let fault = |file_id, why| Fault::Event { file_id, why };
    for (&id, e) in evs {
        match files.get(&id) {
            Some(f) if is_any_event(f.kind) => {}
            _ => return Err(fault(id, "no event file of that id")),
        }
        for t in e.targets.iter() {
            if !files.contains_key(&t.file_id) {
                return Err(fault(id, "an epoll target is not a file of the image"));
            }
            if t.tfd > MAX_FD {
                return Err(fault(
                    id,
                    "an epoll target has an impossible descriptor number",
                ));
            }
        }
        if e.watches.iter().any(|w| w.wd <= 0) {
            return Err(fault(id, "an inotify watch has an impossible number"));
        }
        if e.watches.iter().any(|w| w.path.contains(&0)) {
            return Err(fault(id, "an inotify watch's path has a NUL byte"));
        }
    }
    for f in files.values().filter(|f| is_any_event(f.kind)) {
        if !evs.contains_key(&f.id) {
            return Err(fault(f.id, "the event file has no event record"));
        }
    }
    for &id in evs.keys() {
        if depth(id, evs, 0) > MAX_EPOLL_DEPTH {
            return Err(fault(id, "epolls nest in a loop or too deep"));
        }
    }
    Ok(())
}

/// How deep epoll `id` nests (1 for one that holds no epoll); stops
/// counting past the limit, so a loop ends.
fn depth(id: u64, evs: &HashMap<u64, EventFile>, at: usize) -> usize {
    if at > MAX_EPOLL_DEPTH {
        return at;
    }
    let inner = evs.get(&id).map_or(0, |e| {
        e.targets
            .iter()
            .filter(|t| {
                evs.get(&t.file_id).is_some_and(|x| !x.targets.is_empty()) || t.file_id == id
            })
            .map(|t| depth(t.file_id, evs, at + 1))
            .max()
            .unwrap_or(0)
    });
    inner.max(at + 1)
}

fn nonblock(f: &File) -> i32 {
    f.flags as i32 & libc::O_NONBLOCK
}

/// Makes an eventfd, timerfd, signalfd or inotify from its record.
pub fn open(f: &FileImage, ev: Option<&EventFile>) -> Result<OwnedFd> {
    let name = || String::from_utf8_lossy(&f.link).into_owned();
    let ev = ev.ok_or_else(|| super::meta::unresolved(f))?;
    match f.kind {
        FileType::Eventfd => {
            let sem = if ev.semaphore { libc::EFD_SEMAPHORE } else { 0 };
            events::eventfd(ev.count, nonblock(f) | sem)
                .ctx(|| format!("cannot make an eventfd with counter {}", ev.count))
        }
        FileType::Timerfd => timerfd(f, ev),
        FileType::Signalfd => events::signalfd(ev.sigmask, nonblock(f))
            .ctx(|| format!("cannot make a signalfd for mask {:#x}", ev.sigmask)),
        FileType::Inotify => inotify(f, ev),
        FileType::Regular
        | FileType::Directory
        | FileType::CharDev
        | FileType::BlockDev
        | FileType::Pipe
        | FileType::Fifo
        | FileType::Socket
        | FileType::PtyMaster
        | FileType::PtySlave
        | FileType::Memfd
        | FileType::PosixShm
        | FileType::Mqueue
        | FileType::Pidfd
        | FileType::Epoll
        | FileType::Inet
        | FileType::External => Err(Error::msg(format!(
            "{}: not an event file (type {})",
            name(),
            f.ftype
        ))),
    }
}

/// A timerfd with its clock, time left, interval and unread expirations.
/// An absolute timer is set again at the same point of its clock; a
/// periodic one that had expired (its time left shows as zero until read)
/// next expires one interval on.
fn timerfd(f: &File, ev: &EventFile) -> Result<OwnedFd> {
    let clock = ev.clock as i32;
    let fd = events::timerfd_create(clock, nonblock(f))
        .ctx(|| format!("cannot make a timerfd on clock {clock}"))?;
    let flags = ev.settime_flags as i32 & (libc::TFD_TIMER_ABSTIME | libc::TFD_TIMER_CANCEL_ON_SET);
    let set = |flags, value, interval| {
        events::timerfd_settime(fd.as_fd(), flags, value, interval)
            .ctx(|| format!("cannot arm a timerfd on clock {clock}"))
    };
    if ev.value_ns > 0 {
        if flags & libc::TFD_TIMER_ABSTIME != 0 {
            let now = events::clock_now_ns(clock).ctx(|| format!("cannot read clock {clock}"))?;
            set(flags, now.saturating_add(ev.value_ns), ev.interval_ns)?;
        } else {
            set(0, ev.value_ns, ev.interval_ns)?;
        }
    } else if ev.interval_ns > 0 && ev.ticks > 0 {
        set(0, ev.interval_ns, ev.interval_ns)?;
    }
    if ev.ticks > 0 {
        events::timerfd_set_ticks(fd.as_fd(), ev.ticks)
            .ctx(|| format!("cannot give a timerfd its {} unread expirations", ev.ticks))?;
    }
    Ok(fd)
}

/// An inotify instance with each watch at its number: a watch that comes
/// out with a lower number is removed and added again until the kernel's
/// cyclic numbering reaches it; the `IN_IGNORED` events that leaves are
/// read off before the process gets the descriptor.
fn inotify(f: &File, ev: &EventFile) -> Result<OwnedFd> {
    let fd =
        events::inotify_init(libc::IN_NONBLOCK).ctx(|| "cannot make an inotify instance".into())?;
    let mut watches: Vec<&image::InotifyWatch> = ev.watches.iter().collect();
    watches.sort_by_key(|w| w.wd);
    for w in watches {
        let shown = String::from_utf8_lossy(&w.path).into_owned();
        // `check` refused a path with a NUL byte.
        let path = CString::new(w.path.clone()).map_err(|_| {
            Error::msg(format!(
                "internal error: inotify path {shown} has a NUL byte"
            ))
        })?;
        let mask = w.mask | libc::IN_DONT_FOLLOW;
        let mut tries = 0u32;
        loop {
            let got = events::inotify_add_watch(fd.as_fd(), &path, mask)
                .ctx(|| format!("cannot watch {shown} with inotify"))?;
            if got == w.wd {
                break;
            }
            tries += 1;
            if got > w.wd || tries > 1 << 20 {
                return Err(Error::msg(format!(
                    "cannot give the inotify watch of {shown} its number {} (the kernel gave {got})",
                    w.wd
                )));
            }
            events::inotify_rm_watch(fd.as_fd(), got)
                .ctx(|| format!("cannot remove a watch of {shown}"))?;
        }
    }
    drain(&fd);
    let fl = nix::fcntl::OFlag::from_bits_truncate(nonblock(f));
    nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(fl)).ctx(|| "fcntl".into())?;
    Ok(fd)
}

/// Reads every queued event off a non-blocking descriptor.
fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 4096];
    while nix::unistd::read(fd.as_raw_fd(), &mut buf).is_ok_and(|n| n > 0) {}
}

impl OpenFiles {
    /// Makes epoll `f`, opens each of its targets (nested epolls
    /// first), and registers them under their numbers.
    pub(super) fn open_epoll(
        &mut self,
        f: &FileImage,
        external: &dyn Fn(&File, u32) -> Result<OwnedFd>,
    ) -> Result<RawFd> {
        // `check` made sure of the record and of each target's file.
        let ev = self
            .events
            .get(&f.id)
            .cloned()
            .ok_or_else(|| super::meta::unresolved(f))?;
        let mut regs = Vec::with_capacity(ev.targets.len());
        for t in ev.targets.iter() {
            let tf = self.files.get(&t.file_id).cloned().ok_or_else(|| {
                Error::msg(format!(
                    "internal error: epoll target file {} lost after validation",
                    t.file_id
                ))
            })?;
            let held = self
                .open(&tf, t.tfd, external)
                .map_err(|e| Error::msg(format!("epoll target at descriptor {}: {e}", t.tfd)))?;
            regs.push((t.tfd as RawFd, held, t.events, t.data));
        }
        let ep = events::epoll_create().ctx(|| "cannot make an epoll".into())?;
        if f.flags as i32 & libc::O_NONBLOCK != 0 {
            let fl = nix::fcntl::OFlag::O_NONBLOCK;
            nix::fcntl::fcntl(ep.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(fl))
                .ctx(|| "fcntl".into())?;
        }
        register(ep.as_raw_fd(), &regs)?;
        self.hold(f.id, ep)
    }
}

/// Registers each `(number, held descriptor, events, data)` in epoll
/// `epfd`, from a thread with its own descriptor table.
fn register(epfd: RawFd, regs: &[(RawFd, RawFd, u32, u64)]) -> Result<()> {
    if regs.is_empty() {
        return Ok(());
    }
    let top = regs.iter().map(|r| r.0).max().unwrap_or(0) + 1;
    crate::sys::rlimit::raise_nofile(top as u64 + regs.len() as u64 + 64);
    std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            events::unshare_files().ctx(|| "cannot unshare the descriptor table".into())?;
            // In this table only: move what is needed above every target
            // number, so putting a target at its number replaces nothing
            // still needed.
            let above =
                |fd: RawFd| fds::dup_above(fd, top).ctx(|| "cannot duplicate a descriptor".into());
            let ep = above(epfd)?;
            let moved: Vec<OwnedFd> = regs.iter().map(|r| above(r.1)).collect::<Result<_>>()?;
            for (r, src) in regs.iter().zip(&moved) {
                let at = events::dup_at(src.as_raw_fd(), r.0)
                    .ctx(|| format!("cannot place an epoll target at descriptor {}", r.0))?;
                events::epoll_add(ep.as_raw_fd(), r.0, r.2, r.3).ctx(|| {
                    format!(
                        "cannot register descriptor {} in an epoll (events {:#x})",
                        r.0, r.2
                    )
                })?;
                drop(at);
            }
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| Err(Error::msg("the epoll registering thread panicked")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::EpollTarget;

    fn file(id: u64, ftype: u8) -> (u64, FileImage) {
        let f = File {
            id,
            ftype,
            ..Default::default()
        };
        (id, FileImage::new(f).expect("a known file type"))
    }

    fn epoll(id: u64, targets: &[u64]) -> (u64, EventFile) {
        let targets: Vec<EpollTarget> = targets
            .iter()
            .map(|&t| EpollTarget {
                tfd: t as u32,
                file_id: t,
                events: 1,
                data: t,
            })
            .collect();
        (
            id,
            EventFile {
                file_id: id,
                targets: targets.into(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn event_records_are_checked() {
        let files: HashMap<u64, FileImage> = [
            file(1, crate::image::FT_EPOLL),
            file(2, crate::image::FT_EPOLL),
            file(3, crate::image::FT_EVENTFD),
            file(4, crate::image::FT_REGULAR),
        ]
        .into();
        let ev = |v: Vec<(u64, EventFile)>| -> HashMap<u64, EventFile> { v.into_iter().collect() };
        let eventfd = (
            3,
            EventFile {
                file_id: 3,
                ..Default::default()
            },
        );
        let ok = ev(vec![epoll(1, &[2, 4]), epoll(2, &[3]), eventfd.clone()]);
        assert_eq!(check(&files, &ok), Ok(()));
        let why = |r: std::result::Result<(), Fault>| match r {
            Err(Fault::Event { why, .. }) => why,
            other => panic!("{other:?}"),
        };
        // A loop: 1 holds 2 holds 1.
        let looped = ev(vec![epoll(1, &[2]), epoll(2, &[1]), eventfd.clone()]);
        assert_eq!(
            why(check(&files, &looped)),
            "epolls nest in a loop or too deep"
        );
        let itself = ev(vec![epoll(1, &[1]), epoll(2, &[]), eventfd.clone()]);
        assert_eq!(
            why(check(&files, &itself)),
            "epolls nest in a loop or too deep"
        );
        let missing = ev(vec![epoll(1, &[9]), epoll(2, &[]), eventfd.clone()]);
        assert_eq!(
            why(check(&files, &missing)),
            "an epoll target is not a file of the image"
        );
        let lacking = ev(vec![epoll(1, &[]), eventfd.clone()]);
        assert_eq!(
            why(check(&files, &lacking)),
            "the event file has no event record"
        );
        let stray = ev(vec![epoll(1, &[]), epoll(2, &[]), eventfd, epoll(4, &[])]);
        assert_eq!(why(check(&files, &stray)), "no event file of that id");
    }
}
