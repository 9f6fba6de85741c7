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
use crate::image::Backing;
use crate::image::ranges::{subtract, union};
use crate::sys::ids::Pid;

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
    /// The restorer waits in the foreground of its controlling terminal
    /// and can lend it to a root that was a shell's job (see
    /// [`Plan::foreground`]).
    pub terminal: bool,
}

/// A zombie a parent makes: a child that exits at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZombiePlan {
    pub image_pid: u32,
    /// The pid to create it with, `None` for any.
    pub want: Option<Pid>,
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
    pub want: Option<Pid>,
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
    pub want: Option<Pid>,
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
    /// Memory shared copy-on-write with its parent and children.
    pub cow: CowPlan,
}

/// Copy-on-write sharing (issue 14): the ranges a process inherits from
/// its parent exist in the parent, filled, before the parent forks it.
/// All lists are ordered, disjoint, page-aligned address ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CowPlan {
    /// Ranges it inherits from its parent (`Mm::inherited`).
    pub inherit: Vec<(u64, u64)>,
    /// Ranges its parent had mapped for its children that it does not
    /// inherit: unmapped first thing.
    pub unmap: Vec<(u64, u64)>,
    /// Ranges its children inherit that it did not inherit itself: mapped
    /// (private anonymous, read-write) before it forks them, then filled
    /// by the restorer (`FORK_PAGES`) while it waits.
    pub fork_map: Vec<(u64, u64)>,
    /// It waits for the restorer to fill what its children inherit.
    pub fill: bool,
    /// Ranges kept when its address space is rebuilt: what it inherits
    /// and what its children inherit.
    pub keep: Vec<(u64, u64)>,
}

/// Plans the copy-on-write sharing of every process (see [`CowPlan`]).
fn plan_cow(live: &[Live], procs: &mut [ProcPlan]) {
    let inherit: Vec<Vec<(u64, u64)>> = live
        .iter()
        .map(|pi| union(pi.mm.inherited.iter().map(|r| (r.start, r.end)).collect()))
        .collect();
    let mut fork: Vec<Vec<(u64, u64)>> = vec![Vec::new(); live.len()];
    for (i, pi) in live.iter().enumerate() {
        if let Some(p) = pi.parent {
            fork[p].extend(inherit[i].iter().copied());
        }
    }
    let fork: Vec<_> = fork.into_iter().map(union).collect();
    let keep: Vec<_> = (0..live.len())
        .map(|i| union(inherit[i].iter().chain(&fork[i]).copied().collect()))
        .collect();
    for (i, pi) in live.iter().enumerate() {
        let parent_keep = pi.parent.map(|p| keep[p].as_slice()).unwrap_or(&[]);
        procs[i].cow = CowPlan {
            inherit: inherit[i].clone(),
            unmap: subtract(parent_keep, &inherit[i]),
            fork_map: subtract(&fork[i], &inherit[i]),
            fill: !fork[i].is_empty(),
            keep: keep[i].clone(),
        };
    }
}

impl Plan {
    /// Whether any process inherits memory copy-on-write.
    pub fn shares(&self) -> bool {
        self.procs.iter().any(|p| p.cow.fill)
    }

    /// Restores without copy-on-write sharing: every process gets all of
    /// its pages written (`FORK_PAGES` go to the process and each
    /// descendant that inherits them).
    pub fn drop_sharing(&mut self) {
        for p in &mut self.procs {
            let inherit = std::mem::take(&mut p.cow.inherit);
            p.cow = CowPlan {
                inherit,
                ..Default::default()
            };
        }
    }
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
    /// The root was a job of a shell (its controlling terminal outside
    /// the image) and the restorer has a terminal for it: the root joins
    /// the restorer's session in a group of its own (even if it led its
    /// own session: it could not take a terminal another session holds)
    /// and is made the terminal's foreground before the release.
    pub foreground: bool,
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
        if v.backing != Backing::SysvShm {
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
        if !v.backing.is_special() && v.backing != Backing::SysvShm {
            steps.push(MapStep::Map { vma: i });
        }
    }
    steps
}

/// Groups whose leader had exited get a ghost, forked by their session's
/// leader (or the root, for a session from outside).
fn plan_ghosts(live: &[Live], procs: &mut [ProcPlan], opts: PlanOptions) -> Vec<Ghost> {
    let root_pgid = live[0].p.pgid;
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
            want: opts.original_pids.then_some(Pid::from_u32(g)),
        });
    }
    ghosts
}

/// For each process, the process leading the group it is in when its
/// parent forks it: the parent once it made its session or group, else
/// the group the parent was forked in; `None` for a group outside the
/// tree (the root's, or where the order is not parents first).
fn fork_groups(procs: &[ProcPlan]) -> Vec<Option<usize>> {
    let mut at_fork: Vec<Option<usize>> = vec![None; procs.len()];
    for (i, pp) in procs.iter().enumerate() {
        let after_setup = if pp.setsid || pp.setpgid {
            Some(i)
        } else {
            at_fork[i]
        };
        for &c in &pp.children {
            if c > i
                && let Some(x) = at_fork.get_mut(c)
            {
                *x = after_setup;
            }
        }
    }
    at_fork
}

/// Members of groups led by another process join once all exist.
fn plan_joins(live: &[Live], ghosts: &[Ghost]) -> Vec<Join> {
    let leader_of = |pid: u32| live.iter().position(|x| x.p.pid == pid);
    live.iter()
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
        .collect()
}

/// The ids (pids, thread ids, group ids) that must be free before the
/// tree is made with original pids in the restorer's pid namespace.
fn plan_free_ids(meta: &Meta, opts: PlanOptions) -> Vec<u32> {
    let mut free_ids = Vec::new();
    if !opts.original_pids || opts.pidns || opts.ns_init {
        return free_ids;
    }
    let root_pgid = meta.root().p.pgid;
    for &m in meta.order() {
        let p = meta.process(m);
        free_ids.push(p.pid);
        if let Member::Live(i) = m {
            let tids = meta.live()[i].threads.iter().map(|t| t.t.tid);
            free_ids.extend(tids.filter(|&t| t != p.pid));
        }
        if p.pgid != root_pgid && !free_ids.contains(&p.pgid) {
            free_ids.push(p.pgid);
        }
    }
    free_ids
}

/// Plans the restore of `meta`.
pub fn plan(meta: &Meta, opts: PlanOptions) -> Plan {
    let live = meta.live();
    let want = |pid: u32| opts.original_pids.then_some(Pid::from_u32(pid));
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
                cow: CowPlan::default(),
            }
        })
        .collect();
    plan_cow(live, &mut procs);
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
    let ghosts = plan_ghosts(live, &mut procs, opts);
    let mut joins = plan_joins(live, &ghosts);
    let free_ids = plan_free_ids(meta, opts);
    // Under cr-init the root is not the restorer's child.
    let with_init = opts.pidns && !opts.ns_init;
    let foreground = opts.terminal && meta.root().p.outside_tty && !with_init;
    if foreground {
        procs[0].setsid = false;
        procs[0].setpgid = true;
    }
    // A member forked by a process already in its group (its leader, or
    // a member that is in it from its own fork) is in it from its fork:
    // no join (a remote call, one ptrace stop a process).
    let at_fork = fork_groups(&procs);
    joins.retain(|j| match j.leader {
        Leader::Process(l) => at_fork.get(j.process).copied().flatten() != Some(l),
        Leader::Ghost(_) => true,
    });
    let mut release: Vec<(usize, usize)> = (0..live.len()).map(|i| (i, 0)).collect();
    for (i, pi) in live.iter().enumerate() {
        release.extend((1..pi.threads.len()).map(|t| (i, t)));
    }
    Plan {
        new_pidns: opts.pidns || opts.ns_init,
        with_init,
        free_ids,
        procs,
        ghosts,
        joins,
        release,
        foreground,
    }
}

/// Checks what every plan of `meta` must satisfy; the unit tests and the
/// fuzz target `plan` hold each plan to it. Returns the first broken rule.
pub fn verify(meta: &Meta, plan: &Plan, opts: PlanOptions) -> Result<(), String> {
    let live = meta.live();
    if plan.procs.len() != live.len() {
        return Err(format!(
            "{} plans for {} processes",
            plan.procs.len(),
            live.len()
        ));
    }
    let mut forked = vec![0usize; live.len()];
    let mut zombies = 0;
    for (i, (pp, pi)) in plan.procs.iter().zip(live).enumerate() {
        if pp.image_pid != pi.p.pid || pp.want != opts.original_pids.then_some(pi.pid()) {
            return Err(format!("process {i}: wrong pid in its plan"));
        }
        for &c in &pp.children {
            if c <= i || live.get(c).and_then(|x| x.parent) != Some(i) {
                return Err(format!("process {i} forks {c}, which is not its child"));
            }
            forked[c] += 1;
        }
        zombies += pp.zombies.len();
        verify_close(&pp.fds, &pp.close).map_err(|e| format!("process {i}: {e}"))?;
        let mapped = pp.map.iter().filter(|s| matches!(s, MapStep::Map { .. }));
        let want = pi
            .mm
            .vmas
            .iter()
            .filter(|v| !v.backing.is_special() && v.backing != Backing::SysvShm);
        if mapped.count() != want.count() {
            return Err(format!("process {i}: not every mapping is made once"));
        }
    }
    if forked.first() != Some(&0) || forked.iter().skip(1).any(|&n| n != 1) {
        return Err(format!("processes forked other than once each: {forked:?}"));
    }
    if zombies != meta.zombies().len() {
        return Err(format!(
            "{zombies} zombies planned of {}",
            meta.zombies().len()
        ));
    }
    for z in meta.zombies() {
        if !plan.procs[z.parent]
            .zombies
            .iter()
            .any(|x| x.image_pid == z.p.pid)
        {
            return Err(format!("zombie {} is not made by its parent", z.p.pid));
        }
    }
    for (gi, g) in plan.ghosts.iter().enumerate() {
        let holders = plan
            .procs
            .iter()
            .filter(|pp| pp.ghosts.contains(&gi))
            .count();
        if holders != 1
            || !plan
                .procs
                .get(g.parent)
                .is_some_and(|pp| pp.ghosts.contains(&gi))
        {
            return Err(format!("ghost {} is not forked once by its parent", g.pgid));
        }
        if live.iter().any(|x| x.p.pid == g.pgid) {
            return Err(format!("ghost {} stands in for a live leader", g.pgid));
        }
    }
    for j in &plan.joins {
        let ok = match j.leader {
            Leader::Process(l) => live.get(l).is_some_and(|x| x.p.pid == j.pgid),
            Leader::Ghost(g) => plan.ghosts.get(g).is_some_and(|x| x.pgid == j.pgid),
        };
        if !ok || live.get(j.process).is_none_or(|x| x.p.pgid != j.pgid) {
            return Err(format!(
                "process {} joins group {} wrongly",
                j.process, j.pgid
            ));
        }
    }
    if plan.foreground {
        let root = plan.root();
        if !meta.root().p.outside_tty || root.setsid || !root.setpgid || plan.with_init {
            return Err("a root that gets the terminal must join the restorer's session in a group of its own, be a shell's job and be waited for directly".into());
        }
    }
    let mut threads: Vec<(usize, usize)> = live
        .iter()
        .enumerate()
        .flat_map(|(i, pi)| (0..pi.threads.len()).map(move |t| (i, t)))
        .collect();
    let mut release = plan.release.clone();
    let mains_first = release
        .iter()
        .position(|&(_, t)| t != 0)
        .unwrap_or(release.len());
    if release[mains_first..].iter().any(|&(_, t)| t == 0) {
        return Err("a main thread is released after another thread".into());
    }
    threads.sort_unstable();
    release.sort_unstable();
    if threads != release {
        return Err("not every thread is released once".into());
    }
    Ok(())
}

/// The close ranges leave every target open and close everything else.
fn verify_close(fds: &[FdPlace], close: &[(u32, u32)]) -> Result<(), String> {
    let mut targets: Vec<u32> = fds.iter().map(|f| f.fd).collect();
    targets.sort_unstable();
    targets.dedup();
    let mut covered = 0u64;
    let mut last: Option<u32> = None;
    for &(lo, hi) in close {
        if lo > hi || last.is_some_and(|l| lo <= l) {
            return Err(format!("close range {lo}-{hi} out of order"));
        }
        if targets.iter().any(|&t| lo <= t && t <= hi) {
            return Err(format!("close range {lo}-{hi} closes a placed descriptor"));
        }
        covered += u64::from(hi - lo) + 1;
        last = Some(hi);
    }
    if covered + targets.len() as u64 != 1 << 32 {
        return Err("the close ranges miss descriptors".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
