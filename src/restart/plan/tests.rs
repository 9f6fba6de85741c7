//! The plan for every tree shape the integration tests restore, checked
//! without root: images are made by `synth::tree`, read and validated as
//! `cr-restart` reads them.

use super::*;
use crate::image::synth::{TreeProc, tree};
use crate::image::{Fault, HDR_PIDNS_INIT, Reader};
use crate::restart::meta::{self, Meta};

fn meta_of(procs: &[TreeProc], flags: u32) -> Meta {
    let img = tree(procs, flags);
    let mut r = Reader::new(&img[..]).expect("a valid image");
    Meta::validate(meta::read(&mut r).expect("records decode")).expect("a valid tree")
}

fn fault_of(procs: &[TreeProc]) -> Fault {
    let img = tree(procs, 0);
    let mut r = Reader::new(&img[..]).expect("a valid image");
    match Meta::validate(meta::read(&mut r).expect("records decode")) {
        Ok(_) => panic!("an invalid tree was accepted"),
        Err(f) => f,
    }
}

fn p(pid: u32, ppid: u32) -> TreeProc {
    TreeProc {
        pid,
        ppid,
        pgid: 100,
        sid: 100,
        ..TreeProc::default()
    }
}

fn zombie(pid: u32, ppid: u32) -> TreeProc {
    TreeProc {
        zombie: true,
        ..p(pid, ppid)
    }
}

const ORIG: PlanOptions = PlanOptions {
    original_pids: true,
    pidns: false,
    ns_init: false,
    terminal: false,
};

fn planned(procs: &[TreeProc], flags: u32, opts: PlanOptions) -> Plan {
    let meta = meta_of(procs, flags);
    let plan = plan(&meta, opts);
    if let Err(e) = verify(&meta, &plan, opts) {
        panic!("{e}: {plan:#?}");
    }
    plan
}

#[test]
fn one_process() {
    let mut root = p(100, 0);
    root.fds = vec![(0, 1), (1, 2), (2, 2)];
    let plan = planned(&[root], 0, ORIG);
    let pp = &plan.procs[0];
    assert_eq!(pp.want, Some(Pid::from_raw(100)));
    assert!(pp.setsid && pp.setpgid);
    assert!(pp.children.is_empty() && pp.zombies.is_empty());
    assert_eq!(pp.close, vec![(3, u32::MAX)]);
    assert_eq!(pp.map, vec![MapStep::Map { vma: 0 }]);
    assert_eq!(plan.free_ids, vec![100]);
    assert!(plan.ghosts.is_empty() && plan.joins.is_empty());
    assert!(!plan.new_pidns && !plan.with_init);
    assert_eq!(plan.release, vec![(0, 0)]);
}

#[test]
fn any_pids() {
    let opts = PlanOptions::default();
    let plan = planned(&[p(100, 0), p(101, 100)], 0, opts);
    assert!(plan.procs.iter().all(|pp| pp.want.is_none()));
    assert!(plan.free_ids.is_empty());
}

#[test]
fn chain() {
    let plan = planned(&[p(100, 0), p(101, 100), p(102, 101), p(103, 102)], 0, ORIG);
    for i in 0..3 {
        assert_eq!(plan.procs[i].children, vec![i + 1]);
    }
    assert!(plan.procs[3].children.is_empty());
    // All in the root's group, each from its fork: no joins.
    assert!(plan.joins.is_empty());
}

#[test]
fn only_members_forked_outside_their_group_join() {
    // 101 leads its own group; its child 102 is in the root's group, so
    // is 103, forked by 102 before 102 joins it: both join. 104, forked
    // by 101 into 101's group, is in it from its fork.
    let q = |pid, ppid, pgid| TreeProc {
        pid,
        ppid,
        pgid,
        sid: 100,
        ..TreeProc::default()
    };
    let procs = [
        q(100, 0, 100),
        q(101, 100, 101),
        q(102, 101, 100),
        q(103, 102, 100),
        q(104, 101, 101),
    ];
    let plan = planned(&procs, 0, ORIG);
    let join = |process| Join {
        process,
        pgid: 100,
        leader: Leader::Process(0),
    };
    assert_eq!(plan.joins, vec![join(2), join(3)]);
}

#[test]
fn forest() {
    let procs = [
        p(100, 0),
        p(101, 100),
        p(102, 100),
        p(103, 101),
        p(104, 101),
        p(105, 102),
    ];
    let plan = planned(&procs, 0, ORIG);
    assert_eq!(plan.procs[0].children, vec![1, 2]);
    assert_eq!(plan.procs[1].children, vec![3, 4]);
    assert_eq!(plan.procs[2].children, vec![5]);
    assert_eq!(plan.free_ids, vec![100, 101, 102, 103, 104, 105]);
}

#[test]
fn one_zombie() {
    let plan = planned(&[p(100, 0), zombie(101, 100)], 0, ORIG);
    let z = &plan.procs[0].zombies;
    assert_eq!(z.len(), 1);
    assert_eq!(z[0].want, Some(Pid::from_raw(101)));
    assert_eq!(z[0].status, 3 << 8);
    assert_eq!(&z[0].name[..7], b"tree-1\0");
    assert_eq!(plan.release, vec![(0, 0)]);
}

#[test]
fn several_zombies_and_a_live_child() {
    let procs = [
        p(100, 0),
        zombie(101, 100),
        zombie(102, 100),
        zombie(103, 100),
        zombie(104, 100),
        p(105, 100),
    ];
    let plan = planned(&procs, 0, ORIG);
    let pids: Vec<u32> = plan.procs[0].zombies.iter().map(|z| z.image_pid).collect();
    assert_eq!(pids, vec![101, 102, 103, 104]);
    assert_eq!(plan.procs[0].children, vec![1]);
    assert_eq!(plan.procs[1].image_pid, 105);
    assert_eq!(plan.free_ids, vec![100, 101, 102, 103, 104, 105]);
}

#[test]
fn zombie_of_a_grandchild() {
    let plan = planned(&[p(100, 0), p(101, 100), zombie(102, 101)], 0, ORIG);
    assert!(plan.procs[0].zombies.is_empty());
    assert_eq!(plan.procs[1].zombies[0].image_pid, 102);
}

#[test]
fn groups_and_sessions_with_ghosts() {
    // A shell-like session: leader 100; job group 200 whose leader 200
    // exited, with members 201 and 202; a group 300 led by 300 itself;
    // 301 in it; a second session 400 with a ghost group 500.
    let q = |pid, ppid, pgid, sid| TreeProc {
        pid,
        ppid,
        pgid,
        sid,
        ..TreeProc::default()
    };
    let procs = [
        q(100, 0, 100, 100),
        q(201, 100, 200, 100),
        q(202, 100, 200, 100),
        q(300, 100, 300, 100),
        q(301, 300, 300, 100),
        q(400, 100, 400, 400),
        q(501, 400, 500, 400),
    ];
    let plan = planned(&procs, 0, ORIG);
    assert_eq!(
        plan.ghosts,
        vec![
            Ghost {
                pgid: 200,
                parent: 0,
                want: Some(Pid::from_raw(200))
            },
            Ghost {
                pgid: 500,
                parent: 5,
                want: Some(Pid::from_raw(500))
            },
        ]
    );
    assert_eq!(plan.procs[0].ghosts, vec![0]);
    assert_eq!(plan.procs[5].ghosts, vec![1]);
    assert!(plan.procs[3].setpgid && !plan.procs[3].setsid);
    assert!(plan.procs[5].setsid && plan.procs[5].setpgid);
    let joins: Vec<(usize, u32, Leader)> = plan
        .joins
        .iter()
        .map(|j| (j.process, j.pgid, j.leader))
        .collect();
    assert_eq!(
        joins,
        vec![
            (1, 200, Leader::Ghost(0)),
            (2, 200, Leader::Ghost(0)),
            // 301 is in 300's group from its fork: no join.
            (6, 500, Leader::Ghost(1)),
        ]
    );
    // Ghost group ids must be free too, once each.
    assert_eq!(
        plan.free_ids,
        vec![100, 201, 200, 202, 300, 301, 400, 501, 500]
    );
}

#[test]
fn root_in_a_group_from_outside() {
    // cr-restart run from a shell: the root's group and session are the
    // shell's, outside the image; no ghost for them, no joins.
    let q = |pid, ppid| TreeProc {
        pid,
        ppid,
        pgid: 50,
        sid: 40,
        ..TreeProc::default()
    };
    let plan = planned(&[q(100, 0), q(101, 100)], 0, ORIG);
    assert!(plan.ghosts.is_empty());
    assert!(plan.joins.is_empty());
    assert!(!plan.procs[0].setsid && !plan.procs[0].setpgid);
    assert_eq!(plan.free_ids, vec![100, 101]);
}

#[test]
fn threads() {
    let mut root = p(100, 0);
    root.extra_threads = 3;
    let mut child = p(200, 100);
    child.extra_threads = 1;
    let plan = planned(&[root, child], 0, ORIG);
    assert_eq!(plan.free_ids, vec![100, 101, 102, 103, 200, 201]);
    assert_eq!(
        plan.release,
        vec![(0, 0), (1, 0), (0, 1), (0, 2), (0, 3), (1, 1)]
    );
}

#[test]
fn pidns_init() {
    // The image's root was a namespace's init: it is again, in a new one;
    // no cr-init, and no pid needs to be free outside.
    let procs = [p(1, 0), p(2, 1), zombie(3, 1)];
    let opts = PlanOptions {
        ns_init: true,
        ..ORIG
    };
    let plan = planned(&procs, HDR_PIDNS_INIT, opts);
    assert!(plan.new_pidns && !plan.with_init);
    assert!(plan.free_ids.is_empty());
    assert_eq!(plan.procs[0].want, Some(Pid::from_raw(1)));
}

#[test]
fn pidns_with_init() {
    let opts = PlanOptions {
        pidns: true,
        ..ORIG
    };
    let plan = planned(&[p(100, 0), p(101, 100)], 0, opts);
    assert!(plan.new_pidns && plan.with_init);
    assert!(plan.free_ids.is_empty());
}

#[test]
fn shared_fds() {
    // Parent and child share file 7 (inherited) on different numbers;
    // the parent's 1 and 2 are one open file.
    let mut root = p(100, 0);
    root.fds = vec![(1, 5), (2, 5), (9, 7)];
    let mut child = p(101, 100);
    child.fds = vec![(0, 7), (4, 8)];
    let plan = planned(&[root, child], 0, ORIG);
    let fds: Vec<(u32, u64)> = plan.procs[0]
        .fds
        .iter()
        .map(|f| (f.fd, f.file_id))
        .collect();
    assert_eq!(fds, vec![(1, 5), (2, 5), (9, 7)]);
    assert_eq!(plan.procs[0].close, vec![(0, 0), (3, 8), (10, u32::MAX)]);
    assert_eq!(plan.procs[1].close, vec![(1, 3), (5, u32::MAX)]);
}

#[test]
fn close_ranges_edges() {
    assert_eq!(close_ranges(vec![]), vec![(0, u32::MAX)]);
    assert_eq!(close_ranges(vec![0]), vec![(1, u32::MAX)]);
    assert_eq!(close_ranges(vec![2, 0, 2]), vec![(1, 1), (3, u32::MAX)]);
    assert_eq!(close_ranges(vec![u32::MAX]), vec![(0, u32::MAX - 1)]);
}

#[test]
fn group_and_session_ids_out_of_range_are_refused() {
    for (field, big) in [("pgid", 1u32 << 31), ("sid", u32::MAX), ("pgid", 4_194_305)] {
        let mut root = p(100, 0);
        if field == "pgid" {
            root.pgid = big;
        } else {
            root.sid = big;
        }
        assert_eq!(
            fault_of(&[root]),
            Fault::GroupId {
                pid: 100,
                field,
                value: big
            }
        );
    }
}

#[test]
fn tree_faults_are_refused() {
    assert_eq!(
        fault_of(&[p(100, 0), p(102, 101), p(101, 100)]),
        Fault::ParentAfter {
            pid: 102,
            ppid: 101
        }
    );
    assert_eq!(fault_of(&[zombie(100, 0)]), Fault::NoLiveProcess);
    assert_eq!(
        fault_of(&[zombie(101, 0), p(100, 0)]),
        Fault::FirstNotRoot { pid: 100 }
    );
    assert_eq!(
        fault_of(&[p(100, 0), zombie(101, 100), p(102, 101)]),
        Fault::ParentAfter {
            pid: 102,
            ppid: 101
        }
    );
    assert_eq!(fault_of(&[p(100, 7)]), Fault::FirstNotRoot { pid: 100 });
    let mut root = p(100, 0);
    root.fds = vec![(1 << 21, 1)];
    assert_eq!(
        fault_of(&[root]),
        Fault::Fd {
            pid: 100,
            fd: 1 << 21
        }
    );
}

#[test]
fn a_shell_job_joins_the_restorers_session_when_it_has_a_terminal() {
    // python3 run by an interactive bash: its own group, bash's session.
    let job = |outside_tty| TreeProc {
        pid: 100,
        ppid: 0,
        pgid: 100,
        sid: 40,
        outside_tty,
        ..TreeProc::default()
    };
    let child = TreeProc {
        pid: 101,
        ppid: 100,
        pgid: 100,
        sid: 40,
        ..TreeProc::default()
    };
    let term = PlanOptions {
        terminal: true,
        ..ORIG
    };
    let plan = planned(&[job(true), child.clone()], 0, term);
    assert!(plan.foreground);
    assert!(!plan.procs[0].setsid && plan.procs[0].setpgid);
    assert!(!plan.procs[1].setsid && !plan.procs[1].setpgid);
    // The child is in the root's new group from its fork, as without a
    // terminal: no join.
    assert!(plan.joins.is_empty());
    // No terminal, or no terminal in the image, or under cr-init: as before.
    assert!(!planned(&[job(true), child.clone()], 0, ORIG).foreground);
    assert!(!planned(&[job(false), child.clone()], 0, term).foreground);
    let under_init = PlanOptions {
        pidns: true,
        ..term
    };
    assert!(!planned(&[job(true), child], 0, under_init).foreground);
}

#[test]
fn a_session_leader_from_a_terminal_joins_too() {
    // A job that led its own session on the terminal it was started from
    // cannot take another session's terminal: it joins the restorer's
    // session in a group of its own; its session's members follow it.
    let leader = TreeProc {
        pid: 100,
        ppid: 0,
        pgid: 100,
        sid: 100,
        outside_tty: true,
        ..TreeProc::default()
    };
    let term = PlanOptions {
        terminal: true,
        ..ORIG
    };
    let plan = planned(&[leader.clone(), p(101, 100)], 0, term);
    assert!(plan.foreground);
    assert!(!plan.procs[0].setsid && plan.procs[0].setpgid);
    // Without a terminal it makes its session again.
    let plan = planned(&[leader, p(101, 100)], 0, ORIG);
    assert!(!plan.foreground && plan.procs[0].setsid);
}
