//! Trust: a restore never grants a process more than it had.
//!
//! The restorer usually runs as root and restores other users' processes
//! from images anyone can write (the format is documented). So every
//! filesystem action done for a process is done with that process's
//! credentials, and the kernel's own permission checks apply:
//!
//! - [`Acting`]: the calling thread takes the process's filesystem uid and
//!   gid, supplementary groups and effective capabilities (all per-thread
//!   in Linux) around one action, and goes back to its own after it. The
//!   descriptor files, FIFOs (and their re-creation), the files of
//!   deleted files, ptys, the working and root directory are opened that
//!   way (`files.rs`, `spawn.rs`); files the process maps are opened that
//!   way too ([`MappedFiles`]) and mapped through `/proc/<restorer>/fd/N`.
//!   A process whose credentials are the restorer's own needs no switch.
//! - [`check`], before anything is created: the exe link must be a file
//!   the process may execute, SysV segments it attaches must allow it
//!   (the kernel's `ipcperms` rule, against the image's credentials), and
//!   a hard resource limit above the restorer's own needs a process that
//!   had `CAP_SYS_RESOURCE`.
//! - [`restore_creds`], last in each thread: ids, groups, capability
//!   sets, bounding set, ambient set, securebits and `no_new_privs` exactly
//!   as the image has them, read back from `/proc` and compared; never more
//!   than the image has. Which credentials a restorer may give at all is
//!   `meta::check_privilege` (root: any; a user: their own).
//!
//! What this does not protect against: an image whose process is root (or
//! has `CAP_DAC_OVERRIDE`) gets root's access, since that is what it
//! states; a root restore of an untrusted image runs its code with the
//! credentials it names. See cr-restart(1), TRUST.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::ipc::IpcRestore;
use super::meta::Meta;
use super::plan::{MapStep, Plan};
use super::space::Builder;
use crate::error::{Context, Error, Result};
use crate::image::{self, IpcPerm, Process};
use crate::sys::remote::nr;
use crate::sys::threadcreds::{self, Caps};
use crate::sys::{Pid, Tid, fds};

const CAP_SETGID: u32 = 6;
const CAP_IPC_OWNER: u32 = 15;
const CAP_SYS_RESOURCE: u32 = 24;

const SECBIT_KEEP_CAPS: u32 = 1 << 4;
const SECBIT_NO_CAP_AMBIENT_RAISE: u32 = 1 << 6;
/// The `*_LOCKED` securebits.
const SECBIT_LOCKS: u32 = 0xaa;

fn has(caps: u64, cap: u32) -> bool {
    caps & 1 << cap != 0
}

/// The credentials of one process that a filesystem action takes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Target {
    fsuid: u32,
    fsgid: u32,
    /// Sorted.
    groups: Vec<u32>,
    cap_eff: u64,
}

/// With whose credentials the filesystem actions of a restore are done:
/// the restorer's own (the default), or a process's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Acting(Option<Target>);

thread_local! {
    /// Whether this thread has taken another process's credentials.
    static TAKEN: Cell<bool> = const { Cell::new(false) };
}

fn sorted(mut v: Vec<u32>) -> Vec<u32> {
    v.sort_unstable();
    v.dedup();
    v
}

impl Acting {
    /// The restorer's own credentials.
    pub fn restorer() -> Acting {
        Acting(None)
    }

    /// The credentials of process `p` of the image, as far as the calling
    /// thread can take them: the groups only if it may set groups (else the
    /// process keeps the restorer's, see [`restore_creds`]), the
    /// capabilities only within its own permitted set. The restorer's own
    /// when they are the same.
    pub fn of(p: &Process) -> Result<Acting> {
        let c = &p.creds;
        let own_ids = threadcreds::fs_ids();
        let own_groups = sorted(threadcreds::groups().ctx(|| "getgroups".into())?);
        let own = threadcreds::caps().ctx(|| "capget".into())?;
        let groups = if has(own.eff, CAP_SETGID) {
            sorted(c.groups.iter().copied().collect())
        } else {
            own_groups.clone()
        };
        let t = Target {
            fsuid: c.fsuid,
            fsgid: c.fsgid,
            groups,
            cap_eff: c.cap_eff & own.prm,
        };
        if (t.fsuid, t.fsgid) == own_ids && t.groups == own_groups && t.cap_eff == own.eff {
            return Ok(Acting(None));
        }
        Ok(Acting(Some(t)))
    }

    /// Whether this is another process's credentials, not the restorer's.
    pub fn is_other(&self) -> bool {
        self.0.is_some()
    }

    /// Runs `f` with these credentials on the calling thread, and goes
    /// back to the thread's own after it. A permission error says whose
    /// credentials were refused.
    pub fn run<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let Some(t) = &self.0 else {
            return f();
        };
        if TAKEN.get() {
            return Err(Error::msg(
                "internal error: credentials taken twice on one thread",
            ));
        }
        let saved = take(t)?;
        TAKEN.set(true);
        let r = f();
        let back = give_back(&saved);
        TAKEN.set(back.is_err());
        back.ctx(|| "cannot go back to the restorer's own credentials".into())?;
        r.map_err(|e| denied(e, t.fsuid))
    }
}

/// A thread's own credentials, to go back to.
struct Saved {
    ids: (u32, u32),
    groups: Vec<u32>,
    caps: Caps,
}

/// Makes the calling thread act as `t`.
fn take(t: &Target) -> Result<Saved> {
    let saved = Saved {
        ids: threadcreds::fs_ids(),
        groups: threadcreds::groups().ctx(|| "getgroups".into())?,
        caps: threadcreds::caps().ctx(|| "capget".into())?,
    };
    let what = || format!("cannot take the credentials of uid {}", t.fsuid);
    let went = (|| {
        if t.groups != sorted(saved.groups.clone()) {
            threadcreds::set_groups(&t.groups)?;
        }
        threadcreds::set_fs_ids(t.fsuid, t.fsgid)?;
        threadcreds::set_caps(&Caps {
            eff: t.cap_eff,
            ..saved.caps
        })
    })();
    if let Err(e) = went {
        give_back(&saved).ctx(|| "cannot go back to the restorer's own credentials".into())?;
        return Err(e).ctx(what);
    }
    Ok(saved)
}

fn give_back(s: &Saved) -> std::io::Result<()> {
    // Effective capabilities first: they allow the rest.
    threadcreds::set_caps(&s.caps)?;
    threadcreds::set_fs_ids(s.ids.0, s.ids.1)?;
    threadcreds::set_groups(&s.groups)?;
    // Going back to fsuid 0 may have raised effective capabilities.
    threadcreds::set_caps(&s.caps)
}

/// A permission error, said as one: `...: permission denied for uid N`.
fn denied(e: Error, uid: u32) -> Error {
    let refused = |errno: Option<i32>| matches!(errno, Some(libc::EACCES) | Some(libc::EPERM));
    match e {
        Error::Io { what, source } if refused(source.raw_os_error()) => {
            Error::msg(format!("{what}: permission denied for uid {uid}"))
        }
        Error::Sys { what, errno } if refused(Some(errno as i32)) => {
            Error::msg(format!("{what}: permission denied for uid {uid}"))
        }
        e => e,
    }
}

fn cpath(p: &[u8]) -> Result<CString> {
    CString::new(p).map_err(|_| Error::msg("a path in the image contains a NUL byte"))
}

/// Opens a directory a process had as its working or root directory
/// (`O_PATH`, for the new process to `fchdir` into), as `acting`: the
/// process must be allowed to enter it, not to list it.
pub fn open_dir(acting: &Acting, path: &[u8]) -> Result<OwnedFd> {
    let name = String::from_utf8_lossy(path);
    let p = cpath(path)?;
    acting.run(|| {
        let fd = fds::open(
            p.as_c_str(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("cannot open directory {name}"))?;
        threadcreds::may_access(fd.as_fd(), c"", libc::X_OK)
            .ctx(|| format!("cannot enter directory {name}"))?;
        Ok(fd)
    })
}

/// The FIFO node at `path` as an `O_PATH` descriptor, made with `mode` if
/// it is missing, checked as `acting` for the access `flags` ask (the node
/// must be a FIFO the process may open so, in a directory it may search,
/// and write to if the node is made).
pub fn fifo(acting: &Acting, path: &[u8], mode: u32, flags: u32) -> Result<OwnedFd> {
    let name = String::from_utf8_lossy(path);
    let p = cpath(path)?;
    acting.run(|| {
        let node = || {
            fds::open(
                p.as_c_str(),
                OFlag::O_PATH | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
        };
        let fd = match node() {
            Err(Errno::ENOENT) => {
                // The FIFO node was removed: make it again (see cr-restart(1)).
                nix::unistd::mkfifo(p.as_c_str(), Mode::from_bits_truncate(mode & 0o777))
                    .ctx(|| format!("cannot recreate FIFO {name}"))?;
                node()
            }
            r => r,
        }
        .ctx(|| format!("cannot open FIFO {name}"))?;
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).ctx(|| format!("cannot stat {name}"))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFIFO {
            return Err(Error::msg(format!("cannot open FIFO {name}: not a FIFO")));
        }
        let want = match flags as i32 & libc::O_ACCMODE {
            libc::O_RDONLY => libc::R_OK,
            libc::O_WRONLY => libc::W_OK,
            _ => libc::R_OK | libc::W_OK,
        };
        threadcreds::may_access(fd.as_fd(), c"", want)
            .ctx(|| format!("cannot open FIFO {name}"))?;
        Ok(fd)
    })
}

/// The files that processes with credentials other than the restorer's
/// map, opened with theirs; the new process maps them through
/// `/proc/<restorer>/fd/N` (its own remote opens run as the restorer).
#[derive(Default)]
pub struct MappedFiles {
    held: Vec<OwnedFd>,
    /// (image pid, path, read-write) -> descriptor in `held`.
    by: HashMap<(u32, Vec<u8>, bool), RawFd>,
}

impl MappedFiles {
    /// Opens, with each process's credentials, the files it maps.
    pub fn open(meta: &Meta) -> Result<MappedFiles> {
        let mut m = MappedFiles::default();
        let mut shared: HashMap<(Target, Vec<u8>, bool), RawFd> = HashMap::new();
        for pi in meta.live() {
            let acting = Acting::of(&pi.p)?;
            let Some(t) = &acting.0 else {
                continue;
            };
            for v in pi
                .mm
                .vmas
                .iter()
                .filter(|v| v.backing == image::Backing::File)
            {
                let from_image =
                    v.file_id != 0 && meta.files().get(&v.file_id).is_some_and(|f| f.deleted);
                if from_image {
                    continue;
                }
                let rw = map_rw(v);
                let key = (pi.p.pid, v.path.clone(), rw);
                if m.by.contains_key(&key) {
                    continue;
                }
                let again = (t.clone(), v.path.clone(), rw);
                let fd = match shared.get(&again) {
                    Some(&fd) => fd,
                    None => {
                        let fd = open_mapped(&acting, &v.path, rw).map_err(|e| {
                            Error::msg(format!(
                                "cannot restore pid {}: mapping {:#x}-{:#x}: {e}",
                                pi.p.pid, v.start, v.end
                            ))
                        })?;
                        let raw = fd.as_raw_fd();
                        m.held.push(fd);
                        shared.insert(again, raw);
                        raw
                    }
                };
                m.by.insert(key, fd);
            }
        }
        Ok(m)
    }

    /// The restorer's descriptor for `path` mapped by process `pid`.
    pub fn get(&self, pid: u32, path: &[u8], rw: bool) -> Option<RawFd> {
        self.by.get(&(pid, path.to_vec(), rw)).copied()
    }
}

/// Whether a mapping's file is opened read-write (a shared writable one).
pub fn map_rw(v: &image::Vma) -> bool {
    v.flags & image::VMA_F_SHARED != 0 && v.prot & libc::PROT_WRITE as u32 != 0
}

fn open_mapped(acting: &Acting, path: &[u8], rw: bool) -> Result<OwnedFd> {
    let p = cpath(path)?;
    let acc = if rw { OFlag::O_RDWR } else { OFlag::O_RDONLY };
    acting.run(|| {
        fds::open(p.as_c_str(), acc | OFlag::O_CLOEXEC, Mode::empty())
            .ctx(|| format!("cannot open {}", String::from_utf8_lossy(path)))
    })
}

/// What the image asks beyond files, checked before anything is created:
/// hard resource limits, the exe link, SysV attachments.
pub fn check(meta: &Meta, plan: &Plan, ipc: &IpcRestore) -> Result<()> {
    for (pi, pp) in meta.live().iter().zip(&plan.procs) {
        let p = &pi.p;
        let c = &p.creds;
        let refuse = |what: String| Error::msg(format!("cannot restore pid {}: {what}", p.pid));
        for rl in p.rlimits.iter() {
            let Ok((_, hard)) = crate::sys::rlimit::get(Pid::this(), rl.resource) else {
                continue;
            };
            if rl.max > hard && !has(c.cap_prm, CAP_SYS_RESOURCE) {
                return Err(refuse(format!(
                    "resource limit {}: its hard limit {} is above the restoring user's ({hard}) and the process had no CAP_SYS_RESOURCE",
                    rl.resource, rl.max
                )));
            }
        }
        if !p.exe.is_empty() {
            check_exe(&Acting::of(p)?, &p.exe).map_err(|e| refuse(e.to_string()))?;
        }
        for step in &pp.map {
            let &MapStep::Attach { segment, vma, .. } = step else {
                continue;
            };
            let Some(seg) = ipc.segments().iter().find(|s| s.id as u64 == segment) else {
                continue;
            };
            let rw = pi
                .mm
                .vmas
                .get(vma)
                .is_some_and(|v| v.flags & image::VMA_F_MAYWRITE != 0);
            if !ipc_allows(p, &seg.perm, rw) {
                return Err(refuse(format!(
                    "SysV segment {segment}: permission denied for uid {}",
                    c.euid
                )));
            }
        }
    }
    Ok(())
}

/// The exe link may only name a file the process may execute (a missing
/// file keeps the restorer's link, as before).
fn check_exe(acting: &Acting, exe: &[u8]) -> Result<()> {
    let p = cpath(exe)?;
    let name = String::from_utf8_lossy(exe);
    acting.run(|| {
        match fds::open(
            p.as_c_str(),
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e).ctx(|| format!("exe link {name}")),
            Ok(fd) => threadcreds::may_access(fd.as_fd(), c"", libc::X_OK)
                .ctx(|| format!("exe link {name}")),
        }
    })
}

/// The kernel's `ipcperms` rule for process `p`: owner, group or other
/// bits of `perm`, or `CAP_IPC_OWNER`.
fn ipc_allows(p: &Process, perm: &IpcPerm, rw: bool) -> bool {
    let c = &p.creds;
    let in_group = |g: u32| c.egid == g || c.groups.contains(&g);
    let shift = if c.euid == perm.uid || c.euid == perm.cuid {
        6
    } else if in_group(perm.gid) || in_group(perm.cgid) {
        3
    } else {
        0
    };
    let granted = perm.mode >> shift & 7;
    let want = 4 | if rw { 2 } else { 0 };
    want & !granted == 0 || has(c.cap_eff, CAP_IPC_OWNER)
}

/// Capabilities this kernel knows.
fn known_caps() -> u64 {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(40)
        .min(63);
    u64::MAX >> (63 - last)
}

/// The credentials one thread of a restored process ends with.
#[derive(Debug, PartialEq, Eq)]
struct Want {
    uid: [u32; 4],
    gid: [u32; 4],
    groups: Vec<u32>,
    inh: u64,
    prm: u64,
    eff: u64,
    bnd: u64,
    amb: u64,
    no_new_privs: bool,
}

impl Want {
    fn of(s: &crate::sys::proc::Status) -> Want {
        Want {
            uid: s.uid,
            gid: s.gid,
            groups: sorted(s.groups.clone()),
            inh: s.cap_inh,
            prm: s.cap_prm,
            eff: s.cap_eff,
            bnd: s.cap_bnd,
            amb: s.cap_amb,
            no_new_privs: s.no_new_privs,
        }
    }
}

/// The calling thread's own credentials, as [`restore_creds`] compares
/// them with each process's: read once by each tracer thread before it
/// finishes its processes (between actions, every thread of the restorer
/// has the restorer's credentials; `Acting` gives them back after each).
pub(crate) struct OwnCreds {
    status: crate::sys::proc::Status,
    securebits: u32,
    /// The capabilities this kernel knows.
    known: u64,
}

impl OwnCreds {
    pub(crate) fn read() -> Result<OwnCreds> {
        Ok(OwnCreds {
            status: status("/proc/thread-self/status")?,
            securebits: threadcreds::securebits(),
            known: known_caps(),
        })
    }
}

fn status(path: &str) -> Result<crate::sys::proc::Status> {
    let b = std::fs::read(path).ctx(|| format!("cannot read {path}"))?;
    crate::sys::proc::parse_status(&b).map_err(|e| Error::msg(format!("{path}: {e}")))
}

/// Gives thread `tid` of a restored process (the one `b` drives) the
/// image's credentials exactly, last: ids and groups (groups only when the
/// restorer may set them; a user's restore keeps the user's own),
/// bounding set, capability sets, ambient set, securebits and
/// `no_new_privs`. Read back and compared; a difference is an error.
/// The two `capset` arguments, put in `b`'s scratch memory: the version 3
/// header for the calling thread, then the low and the high halves of the
/// effective, permitted and inheritable sets.
fn capset_args(b: &mut Builder, want: &Want) -> Result<[u64; 2]> {
    let mut hdr = Vec::new();
    hdr.extend_from_slice(&0x2008_0522u32.to_le_bytes());
    hdr.extend_from_slice(&0i32.to_le_bytes());
    let mut data = Vec::new();
    for half in [0u32, 32] {
        for set in [want.eff, want.prm, want.inh] {
            data.extend_from_slice(&((set >> half) as u32).to_le_bytes());
        }
    }
    Ok([b.put(&hdr)?, b.put(&data)?])
}

pub(crate) fn restore_creds(b: &mut Builder, tid: Tid, p: &Process, own: &OwnCreds) -> Result<()> {
    let c = &p.creds;
    let OwnCreds {
        status: own,
        securebits: own_sb,
        known,
    } = own;
    let (own_sb, known) = (*own_sb, *known);
    let set_groups = has(own.cap_eff, CAP_SETGID);
    let want = Want {
        uid: [c.uid, c.euid, c.suid, c.fsuid],
        gid: [c.gid, c.egid, c.sgid, c.fsgid],
        groups: if set_groups {
            sorted(c.groups.iter().copied().collect())
        } else {
            sorted(own.groups.clone())
        },
        inh: c.cap_inh & known,
        prm: c.cap_prm & known,
        eff: c.cap_eff & known,
        bnd: c.cap_bnd & known,
        amb: c.cap_amb & known,
        no_new_privs: c.no_new_privs || own.no_new_privs,
    };
    let mine = Want::of(own);
    if want == mine && own_sb == c.securebits {
        return Ok(());
    }
    let pid = p.pid;
    let fail = |what: &str| {
        let what = what.to_string();
        move |e: Error| Error::msg(format!("cannot restore the {what} of pid {pid}: {e}"))
    };
    let prctl = |b: &mut Builder, args: [u64; 2]| b.call(nr::PRCTL, &[args[0], args[1], 0, 0, 0]);
    for cap in 0..64u32 {
        if has(mine.bnd & !want.bnd, cap) {
            prctl(b, [libc::PR_CAPBSET_DROP as u64, cap as u64])
                .map_err(fail("capability bounding set"))?;
        }
    }
    let ids_change = want.uid != mine.uid || want.gid != mine.gid || want.groups != mine.groups;
    let all_nonroot = want.uid[..3].iter().all(|&u| u != 0);
    // Leaving root clears the permitted set unless kept for the capset.
    let keep = ids_change
        && all_nonroot
        && (want.prm | want.inh) != 0
        && c.securebits & SECBIT_KEEP_CAPS == 0;
    let mut sb = c.securebits & !SECBIT_LOCKS;
    if want.amb != 0 {
        sb &= !SECBIT_NO_CAP_AMBIENT_RAISE;
    }
    if keep {
        sb |= SECBIT_KEEP_CAPS;
    }
    if sb != own_sb {
        prctl(b, [libc::PR_SET_SECUREBITS as u64, sb as u64]).map_err(fail("securebits"))?;
    }
    if ids_change {
        if set_groups {
            let mut g = Vec::new();
            for x in &want.groups {
                g.extend_from_slice(&x.to_le_bytes());
            }
            let at = if g.is_empty() { 0 } else { b.put(&g)? };
            b.call(nr::SETGROUPS, &[want.groups.len() as u64, at])
                .map_err(fail("groups"))?;
        }
        let ids = |i: [u32; 4]| [i[0] as u64, i[1] as u64, i[2] as u64];
        b.call(nr::SETRESGID, &ids(want.gid))
            .map_err(fail("group ids"))?;
        b.call(nr::SETRESUID, &ids(want.uid))
            .map_err(fail("user ids"))?;
        b.call(nr::SETFSGID, &[want.gid[3] as u64])
            .map_err(fail("group ids"))?;
        b.call(nr::SETFSUID, &[want.uid[3] as u64])
            .map_err(fail("user ids"))?;
    }
    let args = capset_args(b, &want)?;
    b.call(nr::CAPSET, &args).map_err(fail("capabilities"))?;
    for cap in 0..64u32 {
        if has(want.amb, cap) {
            b.call(
                nr::PRCTL,
                &[
                    libc::PR_CAP_AMBIENT as u64,
                    libc::PR_CAP_AMBIENT_RAISE as u64,
                    cap as u64,
                    0,
                    0,
                ],
            )
            .map_err(fail("ambient capabilities"))?;
        }
    }
    if sb != c.securebits {
        if sb ^ c.securebits == SECBIT_KEEP_CAPS {
            prctl(b, [libc::PR_SET_KEEPCAPS as u64, 0]).map_err(fail("securebits"))?;
        } else {
            prctl(b, [libc::PR_SET_SECUREBITS as u64, c.securebits as u64])
                .map_err(fail("securebits"))?;
        }
    }
    if want.no_new_privs && !mine.no_new_privs {
        prctl(b, [libc::PR_SET_NO_NEW_PRIVS as u64, 1]).map_err(fail("no_new_privs flag"))?;
    }
    let got = Want::of(&status(&format!("/proc/{}/task/{tid}/status", b.pid))?);
    if got != want {
        return Err(Error::msg(format!(
            "cannot restore the credentials of pid {pid} exactly: the image has {want:?}, the thread got {got:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Creds;

    fn proc_with(euid: u32, egid: u32, groups: &[u32], cap_eff: u64) -> Process {
        Process {
            creds: Creds {
                euid,
                egid,
                groups: groups.to_vec().into(),
                cap_eff,
                ..Creds::default()
            },
            ..Process::default()
        }
    }

    #[test]
    fn ipcperms_owner_group_other_and_cap() {
        let perm = |uid, gid, mode| IpcPerm {
            uid,
            gid,
            cuid: uid,
            cgid: gid,
            mode,
            ..IpcPerm::default()
        };
        let u = proc_with(1000, 1000, &[27], 0);
        assert!(ipc_allows(&u, &perm(1000, 5, 0o600), true));
        assert!(!ipc_allows(&u, &perm(0, 0, 0o600), false));
        assert!(ipc_allows(&u, &perm(0, 27, 0o640), false));
        assert!(!ipc_allows(&u, &perm(0, 27, 0o640), true));
        assert!(ipc_allows(&u, &perm(0, 0, 0o606), true));
        let owner = proc_with(1000, 1000, &[], 1 << CAP_IPC_OWNER);
        assert!(ipc_allows(&owner, &perm(0, 0, 0o600), true));
    }

    #[test]
    fn a_process_with_our_credentials_needs_no_switch() {
        let st = status("/proc/thread-self/status").unwrap();
        let me = Process {
            creds: Creds {
                fsuid: st.uid[3],
                fsgid: st.gid[3],
                groups: st.groups.clone().into(),
                cap_eff: st.cap_eff,
                ..Creds::default()
            },
            ..Process::default()
        };
        assert!(!Acting::of(&me).unwrap().is_other());
    }

    #[test]
    fn acting_as_nobody_is_refused_a_root_only_file_and_gives_back() {
        // CI runs as root.
        let nobody = Process {
            pid: 4242,
            creds: Creds {
                fsuid: 65534,
                fsgid: 65534,
                ..Creds::default()
            },
            ..Process::default()
        };
        let a = Acting::of(&nobody).unwrap();
        assert!(a.is_other());
        let before = status("/proc/thread-self/status").unwrap();
        let e = a
            .run(|| {
                fds::open("/etc/shadow", OFlag::O_RDONLY, Mode::empty())
                    .ctx(|| "cannot open /etc/shadow".into())
            })
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot open /etc/shadow: permission denied for uid 65534"
        );
        let after = status("/proc/thread-self/status").unwrap();
        assert_eq!(Want::of(&before), Want::of(&after));
        assert!(open_dir(&a, b"/").is_ok());
        assert!(open_dir(&Acting::restorer(), b"/root").is_ok());
        let e = open_dir(&a, b"/root").unwrap_err().to_string();
        assert!(e.contains("permission denied for uid 65534"), "{e}");
    }
}
