//! The restore as ordered steps, computed from validated metadata with no
//! syscalls: which process forks which (and with which pid), the zombies
//! each parent makes, the placeholder leaders ("ghosts") of process groups
//! whose leader had exited, sessions and groups, where each descriptor
//! goes and which ranges are closed, in which order mappings are made,
//! and the order of the release. The executor ([`super::spawn`] and
//! [`super::restore`]) carries it out; unit tests check it without root.
//!
//! ```text
//!  root (setsid/setpgid as in the image)
//!   ├── forks its ghosts first (one per group whose leader is gone)
//!   ├── forks its live children in image order, each with its pid
//!   │     (each child does the same for its own)
//!   └── forks its zombies, which exit at once with their status
//!  all stopped -> members join their groups -> ghosts exit, are reaped
//!  -> address spaces -> data -> threads, credentials -> release
//! ```

use super::meta::{Live, Member, Meta};
use crate::image;

/// How the tree is to be made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// Every process gets its original pid.
    pub original_pids: bool,
    /// Restore under a new pid namespace with a minimal init.
    pub pidns: bool,
    /// The image's root was the init of its own pid namespace
    /// (`HDR_PIDNS_INIT`): it is again, in a new one.
    pub ns_init: bool,
}

/// A zombie a parent makes: a child that exits at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZombiePlan {
    pub image_pid: u32,
    /// The pid to create it with, `None` for any.
    pub want: Option<i32>,
    /// Its wait status.
    pub status: i32,
    /// Its name (`comm`), at most 15 bytes and a NUL.
    pub name: [u8; 16],
}

/// A placeholder leader of a process group whose leader had exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ghost {
    /// The group's id in the image (the ghost's pid with original pids).
    pub pgid: u32,
    /// The live process that forks it and later reaps it.
    pub parent: usize,
    pub want: Option<i32>,
}

/// A descriptor to place: the image's `fd` gets the open file `file_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdPlace {
    pub fd: u32,
    pub file_id: u64,
    pub cloexec: bool,
}

/// Who leads the group a process joins once every process exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leader {
    /// A live process of the tree, by index.
    Process(usize),
    /// A ghost, by index into [`Plan::ghosts`].
    Ghost(usize),
}

/// A process joining a group led by another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Join {
    pub process: usize,
    pub pgid: u32,
    pub leader: Leader,
}

/// One step of building an address space, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapStep {
    /// Attach SysV segment `segment` at `at` (once per segment and address).
    Attach { segment: u64, at: u64, vma: usize },
    /// Give an attached piece its protection.
    Protect { vma: usize },
    /// Unmap what an attachment covers beyond the image's pieces of it.
    Trim { segment: u64, at: u64 },
    /// Map the VMA (anonymous, file, or shared memory).
    Map { vma: usize },
}

/// What one live process does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcPlan {
    pub image_pid: u32,
    /// The pid to create it with, `None` for any.
    pub want: Option<i32>,
    pub exit_signal: i32,
    pub umask: u32,
    /// It leads its session (`setsid`) or its group (`setpgid(0, 0)`).
    pub setsid: bool,
    pub setpgid: bool,
    /// Live children it forks, as indices into [`Plan::procs`], image order.
    pub children: Vec<usize>,
    pub zombies: Vec<ZombiePlan>,
    /// Ghosts it forks, as indices into [`Plan::ghosts`].
    pub ghosts: Vec<usize>,
    /// Descriptors in image order.
    pub fds: Vec<FdPlace>,
    /// Ranges to close after placing (inclusive): all but the targets.
    pub close: Vec<(u32, u32)>,
    /// How its address space is built (special mappings excluded).
    pub map: Vec<MapStep>,
}

/// The whole restore, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The root is forked as init of a new pid namespace.
    pub new_pidns: bool,
    /// That init is `cr-init`, and the image's root its child.
    pub with_init: bool,
    /// Ids (pids, thread ids, group ids) that must be free first.
    pub free_ids: Vec<u32>,
    /// One per live process, as [`Meta::live`]; the root first.
    pub procs: Vec<ProcPlan>,
    pub ghosts: Vec<Ghost>,
    /// Once every process is stopped: joins, in order.
    pub joins: Vec<Join>,
    /// Release order: `(process, thread index)`, every main thread first.
    pub release: Vec<(usize, usize)>,
}

impl Plan {
    /// The root's plan.
    pub fn root(&self) -> &ProcPlan {
        // `plan` makes one per live process, and a `Meta` has a root.
        &self.procs[0]
    }
}

/// The ranges of descriptor numbers (inclusive) that are none of `targets`.
pub fn close_ranges(mut targets: Vec<u32>) -> Vec<(u32, u32)> {
    targets.sort_unstable();
    targets.dedup();
    let mut close = Vec::new();
    let mut lo = 0u32;
    for t in targets {
        if t > lo {
            close.push((lo, t - 1));
        }
        match t.checked_add(1) {
            Some(n) => lo = n,
            None => return close,
        }
    }
    close.push((lo, u32::MAX));
    close
}

/// A process's name as a zombie keeps it: 15 bytes and a NUL.
fn zombie_name(comm: &[u8]) -> [u8; 16] {
    let mut name = [0u8; 16];
    let n = comm.len().min(15);
    name[..n].copy_from_slice(&comm[..n]);
    name
}

/// The order in which a process's mappings are made: SysV attachments
/// first (each segment and address once, then each piece's protection,
/// then what the image lacks of each attachment is unmapped), then every
/// other mapping in address order. vDSO, vvar and vsyscall are
/// the kernel's and are moved, not mapped.
pub fn map_steps(pi: &Live) -> Vec<MapStep> {
    let mut steps = Vec::new();
    let mut attached: Vec<(u64, u64)> = Vec::new();
    for (i, v) in pi.mm.vmas.iter().enumerate() {
        if v.backing != image::VMA_SYSV_SHM {
            continue;
        }
        // `Meta::validate` checked pgoff <= start.
        let at = v.start - v.pgoff;
        if !attached.contains(&(v.shmem_id, at)) {
            attached.push((v.shmem_id, at));
            steps.push(MapStep::Attach {
                segment: v.shmem_id,
                at,
                vma: i,
            });
        }
        steps.push(MapStep::Protect { vma: i });
    }
    steps.extend(
        attached
            .into_iter()
            .map(|(segment, at)| MapStep::Trim { segment, at }),
    );
    for (i, v) in pi.mm.vmas.iter().enumerate() {
        if !super::space::is_special(v) && v.backing != image::VMA_SYSV_SHM {
            steps.push(MapStep::Map { vma: i });
        }
    }
    steps
}

/// Plans the restore of `meta`.
pub fn plan(meta: &Meta, opts: PlanOptions) -> Plan {
    let live = meta.live();
    let want = |pid: u32| opts.original_pids.then_some(pid as i32);
    let root_pgid = meta.root().p.pgid;
    let mut procs: Vec<ProcPlan> = live
        .iter()
        .map(|pi| {
            let p = &pi.p;
            let fds: Vec<FdPlace> = pi
                .fds
                .iter()
                .map(|f| FdPlace {
                    fd: f.fd,
                    file_id: f.file.id,
                    cloexec: f.cloexec,
                })
                .collect();
            ProcPlan {
                image_pid: p.pid,
                want: want(p.pid),
                exit_signal: if p.exit_signal == 0 {
                    libc::SIGCHLD
                } else {
                    p.exit_signal as i32
                },
                umask: p.umask,
                setsid: p.sid == p.pid,
                setpgid: p.pgid == p.pid,
                children: Vec::new(),
                zombies: Vec::new(),
                ghosts: Vec::new(),
                close: close_ranges(fds.iter().map(|f| f.fd).collect()),
                fds,
                map: map_steps(pi),
            }
        })
        .collect();
    // Children and zombies under their parents, in image order.
    for &m in meta.order() {
        match m {
            Member::Live(i) => {
                if let Some(parent) = live[i].parent {
                    procs[parent].children.push(i);
                }
            }
            Member::Zombie(z) => {
                let zp = &meta.zombies()[z];
                procs[zp.parent].zombies.push(ZombiePlan {
                    image_pid: zp.p.pid,
                    want: want(zp.p.pid),
                    status: zp.p.exit_status,
                    name: zombie_name(&zp.p.comm),
                });
            }
        }
    }
    // Groups whose leader had exited get a ghost, forked by their
    // session's leader (or the root, for a session from outside).
    let leader_of = |pid: u32| live.iter().position(|x| x.p.pid == pid);
    let mut ghosts: Vec<Ghost> = Vec::new();
    for pi in live {
        let g = pi.p.pgid;
        if g == root_pgid || leader_of(g).is_some() || ghosts.iter().any(|x| x.pgid == g) {
            continue;
        }
        let parent = leader_of(pi.p.sid).unwrap_or(0);
        procs[parent].ghosts.push(ghosts.len());
        ghosts.push(Ghost {
            pgid: g,
            parent,
            want: want(g),
        });
    }
    // Members of groups led by another process join once all exist.
    let joins = live
        .iter()
        .enumerate()
        .filter(|(_, pi)| pi.p.pgid != pi.p.pid && pi.p.sid != pi.p.pid)
        .filter_map(|(i, pi)| {
            let g = pi.p.pgid;
            let leader = match leader_of(g) {
                Some(l) => Leader::Process(l),
                None => Leader::Ghost(ghosts.iter().position(|x| x.pgid == g)?),
            };
            Some(Join {
                process: i,
                pgid: g,
                leader,
            })
        })
        .collect();
    let mut free_ids = Vec::new();
    if opts.original_pids && !opts.pidns && !opts.ns_init {
        for &m in meta.order() {
            let p = meta.process(m);
            free_ids.push(p.pid);
            if let Member::Live(i) = m {
                let tids = live[i].threads.iter().map(|t| t.t.tid);
                free_ids.extend(tids.filter(|&t| t != p.pid));
            }
            if p.pgid != root_pgid && !free_ids.contains(&p.pgid) {
                free_ids.push(p.pgid);
            }
        }
    }
    let mut release: Vec<(usize, usize)> = (0..live.len()).map(|i| (i, 0)).collect();
    for (i, pi) in live.iter().enumerate() {
        release.extend((1..pi.threads.len()).map(|t| (i, t)));
    }
    Plan {
        new_pidns: opts.pidns || opts.ns_init,
        with_init: opts.pidns && !opts.ns_init,
        free_ids,
        procs,
        ghosts,
        joins,
        release,
    }
}

#[cfg(test)]
mod tests;
