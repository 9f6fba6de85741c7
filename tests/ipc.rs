//! SysV IPC checkpoint and restore through the library API (run as root):
//! real queues, semaphore sets and segments are collected, written to an
//! image, removed, read back and restored.
//!
//! Isolation: every test works in a private IPC namespace of its own (a
//! thread that `unshare(CLONE_NEWIPC)`s, or a forked child), so tests run in
//! parallel threads without racing on the per-namespace `*_next_id` files,
//! and never see or disturb the host's objects. From the library's point of
//! view that private namespace is "ckpt's own", so `own_ns = false` is the
//! shared-namespace policy. Guards remove every object a test creates, also
//! when it fails (and the namespace dies with its thread anyway).

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;

use crtools::checkpoint::ipc::{IpcDump, collect};
use crtools::image::{
    DataPrefix, FORMAT_MAJOR, FORMAT_MINOR, Kind, Reader, SPACE_SYSV_SHM, StreamHeader,
    WriteOptions, Writer,
};
use crtools::restart::ipc::IpcRestore;
use crtools::sys::ipc::{self as sys, Class, SHM_DEST, SemOp, ShmAttach};
use nix::errno::Errno;
use nix::sched::{CloneFlags, unshare};

const PAGE: usize = 4096;
const CREATE: i32 = libc::IPC_CREAT | libc::IPC_EXCL;

/// Runs `f` on a thread in a fresh IPC namespace; passes its panic on.
fn in_private_ns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            unshare(CloneFlags::CLONE_NEWIPC).expect("unshare(CLONE_NEWIPC): run as root");
            f()
        });
        match h.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}

/// A key no other test uses.
fn key(n: i32) -> i32 {
    0x5100_0000 | ((std::process::id() as i32 & 0xfff) << 12) | n
}

/// Removes the objects it holds when dropped.
#[derive(Default)]
struct Guard(Vec<(Class, i32)>);

impl Guard {
    fn add(&mut self, class: Class, id: i32) -> i32 {
        self.0.push((class, id));
        id
    }
    fn remove_all(&mut self) {
        for (class, id) in self.0.drain(..) {
            let _ = match class {
                Class::Msg => sys::msg_rmid(id),
                Class::Sem => sys::sem_rmid(id),
                Class::Shm => sys::shm_rmid(id),
            };
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.remove_all();
    }
}

fn ids(class: Class) -> BTreeSet<i32> {
    sys::list_ids(class).unwrap().into_iter().collect()
}

fn set<const N: usize>(v: [i32; N]) -> BTreeSet<i32> {
    v.into_iter().collect()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

fn image_of(dump: &IpcDump) -> Vec<u8> {
    let header = StreamHeader {
        format_major: FORMAT_MAJOR,
        format_minor: FORMAT_MINOR,
        ..Default::default()
    };
    let mut w = Writer::new(Vec::new(), &header, WriteOptions::default()).unwrap();
    dump.write_meta(&mut w).unwrap();
    dump.write_contents(&mut w).unwrap();
    w.finish().unwrap()
}

/// A `PAGES` record's prefix and data.
type Pages = (DataPrefix, Vec<u8>);

/// The kinds of an image's records, in order, with each `PAGES` record's
/// prefix and data.
fn records(img: &[u8]) -> Vec<(Kind, Option<Pages>)> {
    let mut r = Reader::new(img).unwrap();
    let mut out = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        let data = (rec.kind == Kind::PAGES).then(|| {
            let (p, d) = DataPrefix::parse(&rec.payload).unwrap();
            (p, d.to_vec())
        });
        out.push((rec.kind, data));
    }
    out
}

/// What a restorer does with the IPC part of an image: metadata first,
/// create at the first page record, then contents.
fn restore(img: &[u8]) -> crtools::Result<IpcRestore> {
    let mut r = Reader::new(img)?;
    let mut ipc = IpcRestore::new();
    let mut created = false;
    while let Some(rec) = r.next_record()? {
        if ipc.add(&rec)? {
            assert!(!created, "metadata record after page records");
            continue;
        }
        if !created {
            ipc.create()?;
            created = true;
        }
        assert!(ipc.add_data(&rec)?, "unexpected record {}", rec.kind);
    }
    if !created {
        ipc.create()?;
    }
    Ok(ipc)
}

fn nowait(num: u16, op: i16) -> SemOp {
    SemOp {
        num,
        op,
        flags: libc::IPC_NOWAIT as i16,
    }
}

/// In a forked child: detaches the SysV segments it inherited, which belong
/// to other tests running in parallel (a child holding them would keep a
/// removed segment alive).
fn detach_inherited() {
    if let Ok(maps) = crtools::sys::proc::maps(std::process::id() as i32) {
        for m in maps.iter().filter(|m| m.path.starts_with(b"/SYSV")) {
            // SAFETY: `m.start` is the start of a SysV attachment of this
            // (forked, single-threaded) process, which nothing here uses.
            unsafe { libc::shmdt(m.start as *const libc::c_void) };
        }
    }
}

/// Waits (bounded) until `cond` holds: other tests' short-lived forked
/// children may hold a copy of an attachment for a moment.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    cond()
}

/// Forks a child that runs `f` (plain libc calls only: the parent has
/// other threads) and exits with its status; waits for it.
fn in_child(f: impl FnOnce() -> i32) {
    // SAFETY: the child only makes raw syscalls through libc, then _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        detach_inherited();
        let code = f();
        // SAFETY: leaves the forked child without running the parent's
        // destructors or atexit handlers.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a live int.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed: {status:#x}"
    );
}

#[test]
fn round_trip_keeps_ids_keys_owners_messages_values_and_contents() {
    in_private_ns(|| {
        let mut g = Guard::default();
        let mypid = std::process::id() as i32;

        // Two queues, one keyed (with owners and qbytes set), one private.
        let q1 = g.add(Class::Msg, sys::msgget(key(1), CREATE | 0o640).unwrap());
        let q2 = g.add(
            Class::Msg,
            sys::msgget(libc::IPC_PRIVATE, CREATE | 0o600).unwrap(),
        );
        let all_bytes: Vec<u8> = (0..=255).collect();
        let msgs1: Vec<(i64, Vec<u8>)> = vec![
            (1, b"one".to_vec()),
            (2, all_bytes.clone()),
            (1, b"uno".to_vec()),
            (3, vec![0xab; 4000]),
            (2, Vec::new()),
        ];
        for (t, d) in &msgs1 {
            sys::msgsnd(q1, *t, d, libc::IPC_NOWAIT).unwrap();
        }
        // Lower than msgmnb: raising it needs CAP_SYS_RESOURCE.
        sys::msg_set(q1, 1234, 5678, 0o640, 8000).unwrap();
        sys::msgsnd(q2, 7, b"seven", 0).unwrap();
        sys::msgsnd(q2, 5, b"five", 0).unwrap();

        // Two sets of three: values 0, 1, 2 and 2, 1, 0; the private one
        // made by another creator.
        let s1 = g.add(Class::Sem, sys::semget(key(2), 3, CREATE | 0o660).unwrap());
        sys::sem_setall(s1, &[0, 1, 2]).unwrap();
        let s2 = sys::with_creator(4321, 8765, || {
            sys::semget(libc::IPC_PRIVATE, 3, CREATE | 0o600)
        })
        .unwrap()
        .unwrap();
        g.add(Class::Sem, s2);
        sys::sem_setall(s2, &[2, 1, 0]).unwrap();

        // A keyed segment with a hole in the middle, detached; a private
        // one attached and marked removed.
        let size1 = 3 * PAGE + 100;
        let m1 = g.add(
            Class::Shm,
            sys::shmget(key(3), size1 as u64, CREATE | 0o644).unwrap(),
        );
        let mut want1 = pattern(size1, 7);
        want1[PAGE..2 * PAGE].fill(0);
        {
            let a = ShmAttach::attach(m1, 0).unwrap();
            a.write_at(0, &want1[..PAGE]).unwrap();
            a.write_at(2 * PAGE, &want1[2 * PAGE..]).unwrap();
        }
        let m2 = g.add(
            Class::Shm,
            sys::shmget(libc::IPC_PRIVATE, 2 * PAGE as u64, CREATE | 0o600).unwrap(),
        );
        let want2 = pattern(2 * PAGE, 99);
        let a2 = ShmAttach::attach(m2, 0).unwrap();
        a2.write_at(0, &want2).unwrap();
        sys::shm_rmid(m2).unwrap();
        assert_ne!(sys::shm_stat(m2).unwrap().perm.mode & SHM_DEST, 0);

        let before = [(sys::msg_stat(q1).unwrap(), sys::msg_stat(q2).unwrap())];
        let sem_before = (sys::sem_stat(s1).unwrap(), sys::sem_stat(s2).unwrap());
        let shm_before = (sys::shm_stat(m1).unwrap(), sys::shm_stat(m2).unwrap());

        // Checkpoint: the test process is the tree.
        let dump = collect(&[mypid], false).unwrap();
        let dq: BTreeSet<i32> = dump.msg_queues.iter().map(|q| q.id).collect();
        let ds: BTreeSet<i32> = dump.sem_sets.iter().map(|s| s.id).collect();
        let dm: BTreeSet<i32> = dump.shm_segments.iter().map(|s| s.id).collect();
        assert_eq!((dq, ds, dm), (set([q1, q2]), set([s1, s2]), set([m1, m2])));
        let rec2 = dump.shm_segments.iter().find(|s| s.id == m2).unwrap();
        assert!(rec2.removed);
        assert!(
            !dump
                .shm_segments
                .iter()
                .find(|s| s.id == m1)
                .unwrap()
                .removed
        );
        // Messages were copied, not consumed.
        assert_eq!(sys::msg_stat(q1).unwrap().qnum, msgs1.len() as u64);

        let img = image_of(&dump);
        drop(dump);
        let recs = records(&img);
        let first_pages = recs.iter().position(|(k, _)| *k == Kind::PAGES).unwrap();
        assert!(recs[first_pages..].iter().all(|(k, _)| *k == Kind::PAGES));
        assert_eq!(first_pages, 6, "six metadata records first");
        // Segment 1: page 0, then the hole, then pages 2 and the tail.
        let pages1: Vec<(u64, usize)> = recs
            .iter()
            .filter_map(|(_, d)| d.as_ref())
            .filter(|(p, _)| p.space == SPACE_SYSV_SHM && p.id == m1 as u64)
            .map(|(p, d)| (p.addr, d.len()))
            .collect();
        assert_eq!(pages1, vec![(0, PAGE), (2 * PAGE as u64, PAGE + 100)]);

        // Remove the originals.
        drop(a2);
        g.remove_all();
        assert!(
            ids(Class::Msg).is_empty() && ids(Class::Sem).is_empty() && ids(Class::Shm).is_empty()
        );

        // Restore.
        let mut ipc = restore(&img).unwrap();
        for (c, id) in [
            (Class::Msg, q1),
            (Class::Msg, q2),
            (Class::Sem, s1),
            (Class::Sem, s2),
            (Class::Shm, m1),
            (Class::Shm, m2),
        ] {
            g.add(c, id);
        }
        assert_eq!(ids(Class::Msg), set([q1, q2]));
        assert_eq!(ids(Class::Sem), set([s1, s2]));
        assert_eq!(ids(Class::Shm), set([m1, m2]));
        // The lead attaches the removed segment into a restored process
        // before finish(); stand in for it.
        let a2 = ShmAttach::attach(m2, 0).unwrap();
        ipc.finish().unwrap();
        ipc.commit();
        drop(ipc);
        let mut got2 = vec![0u8; 2 * PAGE];
        a2.read_at(0, &mut got2).unwrap();
        assert!(got2 == want2, "removed segment contents differ");
        assert_ne!(sys::shm_stat(m2).unwrap().perm.mode & SHM_DEST, 0);

        // Ids, keys, owners, modes.
        let (o1, o2) = before[0];
        let (n1, n2) = (sys::msg_stat(q1).unwrap(), sys::msg_stat(q2).unwrap());
        assert_eq!(n1.perm, o1.perm);
        assert_eq!(n2.perm, o2.perm);
        assert_eq!(
            (n1.qbytes, n1.qnum, n1.cbytes),
            (o1.qbytes, o1.qnum, o1.cbytes)
        );
        assert_eq!(n1.perm.uid, 1234);
        let (ns1, ns2) = (sys::sem_stat(s1).unwrap(), sys::sem_stat(s2).unwrap());
        assert_eq!((ns1, ns2), sem_before);
        assert_eq!((ns2.perm.cuid, ns2.perm.cgid), (4321, 8765));
        let (nm1, nm2) = (sys::shm_stat(m1).unwrap(), sys::shm_stat(m2).unwrap());
        assert_eq!((nm1.perm, nm1.size), (shm_before.0.perm, shm_before.0.size));
        assert_eq!((nm2.perm, nm2.size), (shm_before.1.perm, shm_before.1.size));

        // Messages by type, byte-exact and in order.
        let rcv = |q: i32, t: i64| sys::msgrcv(q, 8192, t, libc::IPC_NOWAIT);
        assert_eq!(rcv(q1, 3).unwrap(), (3, vec![0xab; 4000]));
        assert_eq!(rcv(q1, 1).unwrap(), (1, b"one".to_vec()));
        assert_eq!(rcv(q1, 1).unwrap(), (1, b"uno".to_vec()));
        assert_eq!(rcv(q1, 2).unwrap(), (2, all_bytes));
        assert_eq!(rcv(q1, 2).unwrap(), (2, Vec::new()));
        assert_eq!(rcv(q1, 0), Err(Errno::ENOMSG));
        assert_eq!(rcv(q2, 0).unwrap(), (7, b"seven".to_vec()));
        assert_eq!(rcv(q2, 0).unwrap(), (5, b"five".to_vec()));

        // Semaphore values, and a non-blocking decrement works where it can.
        assert_eq!(sys::sem_getall(s1).unwrap(), vec![0, 1, 2]);
        assert_eq!(sys::sem_getall(s2).unwrap(), vec![2, 1, 0]);
        sys::semop(s1, &[nowait(1, -1)]).unwrap();
        assert_eq!(sys::semop(s1, &[nowait(0, -1)]), Err(Errno::EAGAIN));
        sys::semop(s2, &[nowait(0, -2)]).unwrap();
        assert_eq!(sys::sem_getall(s1).unwrap(), vec![0, 0, 2]);

        // Segment contents, hole included.
        let a1 = ShmAttach::attach(m1, libc::SHM_RDONLY).unwrap();
        let mut got1 = vec![0u8; size1];
        a1.read_at(0, &mut got1).unwrap();
        assert!(got1 == want1, "segment contents differ");
        drop(a1);

        // The removed segment goes with its last attachment.
        drop(a2);
        assert!(
            eventually(|| ids(Class::Shm) == set([m1])),
            "removed segment still there"
        );
    });
}

#[test]
fn taken_id_or_key_is_a_clear_error_and_leaves_nothing() {
    in_private_ns(|| {
        let mut g = Guard::default();
        let q = g.add(Class::Msg, sys::msgget(key(11), CREATE | 0o600).unwrap());
        sys::msgsnd(q, 1, b"x", 0).unwrap();
        let s = g.add(
            Class::Sem,
            sys::semget(libc::IPC_PRIVATE, 1, CREATE | 0o600).unwrap(),
        );
        sys::sem_setall(s, &[1]).unwrap();
        let m = g.add(
            Class::Shm,
            sys::shmget(libc::IPC_PRIVATE, PAGE as u64, CREATE | 0o600).unwrap(),
        );
        sys::shm_stat(m).unwrap();
        // Make the segment ours by attaching it once.
        drop(ShmAttach::attach(m, 0).unwrap());
        let img = image_of(&collect(&[std::process::id() as i32], false).unwrap());

        // The queue's id is still taken.
        sys::sem_rmid(s).unwrap();
        sys::shm_rmid(m).unwrap();
        let err = restore(&img).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("cannot restore message queue {q}: id already in use")
        );
        assert_eq!(ids(Class::Msg), set([q]));
        assert!(ids(Class::Sem).is_empty() && ids(Class::Shm).is_empty());

        // The id is free but another queue holds the key.
        sys::msg_rmid(q).unwrap();
        let q2 = g.add(Class::Msg, sys::msgget(key(11), CREATE | 0o600).unwrap());
        assert_ne!(q2, q);
        let err = restore(&img).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "cannot restore message queue {q}: key {:#x} already in use",
                key(11)
            )),
            "{err}"
        );
        assert_eq!(ids(Class::Msg), set([q2]));
        assert!(ids(Class::Sem).is_empty() && ids(Class::Shm).is_empty());

        // A failure after some objects exist: the segment cannot be
        // created (shmmax is per namespace); the queue and set go again.
        sys::msg_rmid(q2).unwrap();
        std::fs::write("/proc/sys/kernel/shmmax", "100\n").unwrap();
        let err = restore(&img).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("cannot restore shared memory segment {m}")),
            "{err}"
        );
        assert!(
            ids(Class::Msg).is_empty() && ids(Class::Sem).is_empty() && ids(Class::Shm).is_empty()
        );
        for c in [Class::Msg, Class::Sem, Class::Shm] {
            assert_eq!(sys::next_id(c).unwrap(), -1, "{c:?} next id left set");
        }
    });
}

#[test]
fn undo_on_drop_removes_everything() {
    in_private_ns(|| {
        let mut g = Guard::default();
        let q = g.add(Class::Msg, sys::msgget(key(21), CREATE | 0o600).unwrap());
        sys::msgsnd(q, 4, b"four", 0).unwrap();
        let s = g.add(Class::Sem, sys::semget(key(22), 2, CREATE | 0o600).unwrap());
        sys::sem_setall(s, &[3, 4]).unwrap();
        let m = g.add(
            Class::Shm,
            sys::shmget(key(23), 5 * PAGE as u64, CREATE | 0o600).unwrap(),
        );
        ShmAttach::attach(m, 0)
            .unwrap()
            .write_at(PAGE, b"data")
            .unwrap();
        let img = image_of(&collect(&[std::process::id() as i32], false).unwrap());
        g.remove_all();

        // Created and filled (an attachment held), never committed.
        let ipc = restore(&img).unwrap();
        assert_eq!(
            (ids(Class::Msg), ids(Class::Sem), ids(Class::Shm)),
            (set([q]), set([s]), set([m]))
        );
        drop(ipc);
        assert!(
            ids(Class::Msg).is_empty() && ids(Class::Sem).is_empty() && ids(Class::Shm).is_empty()
        );

        // undo() after finish() removes them too; commit() keeps them.
        let mut ipc = restore(&img).unwrap();
        ipc.finish().unwrap();
        ipc.undo();
        assert!(
            ids(Class::Msg).is_empty() && ids(Class::Sem).is_empty() && ids(Class::Shm).is_empty()
        );
        let mut ipc = restore(&img).unwrap();
        for (c, id) in [(Class::Msg, q), (Class::Sem, s), (Class::Shm, m)] {
            g.add(c, id);
        }
        ipc.finish().unwrap();
        ipc.commit();
        drop(ipc);
        assert_eq!(ids(Class::Shm), set([m]));
        let mut buf = [0u8; 4];
        ShmAttach::attach(m, 0)
            .unwrap()
            .read_at(PAGE, &mut buf)
            .unwrap();
        assert_eq!(&buf, b"data");
    });
}

#[test]
fn shared_namespace_takes_only_what_the_tree_uses() {
    in_private_ns(|| {
        let mut g = Guard::default();
        let mypid = std::process::id() as i32;
        // Ours: a queue we sent to, a set we set, a segment we created.
        let q = g.add(Class::Msg, sys::msgget(key(31), CREATE | 0o600).unwrap());
        sys::msgsnd(q, 1, b"ours", 0).unwrap();
        let s = g.add(Class::Sem, sys::semget(key(32), 1, CREATE | 0o600).unwrap());
        sys::sem_setall(s, &[1]).unwrap();
        let m = g.add(
            Class::Shm,
            sys::shmget(key(33), PAGE as u64, CREATE | 0o600).unwrap(),
        );
        // A queue nobody used: no pid links it to the tree.
        let idle = g.add(Class::Msg, sys::msgget(key(34), CREATE | 0o600).unwrap());

        // Another process's objects, and a segment it created that we
        // attach and another child detaches (so only our maps link it).
        let (k41, k42, k43, k44) = (key(41), key(42), key(43), key(44));
        in_child(|| {
            let ok = sys::msgget(k41, CREATE | 0o600)
                .and_then(|q| sys::msgsnd(q, 1, b"theirs", 0))
                .and_then(|()| sys::semget(k42, 2, CREATE | 0o600))
                .and_then(|s| sys::semop(s, &[nowait(0, 1)]))
                .and_then(|()| sys::shmget(k43, 3 * PAGE as u64, CREATE | 0o600))
                .and_then(|_| sys::shmget(k44, 7 * PAGE as u64, CREATE | 0o600));
            ok.is_err() as i32
        });
        let fq = g.add(Class::Msg, sys::msgget(key(41), 0).unwrap());
        let fs = g.add(Class::Sem, sys::semget(key(42), 0, 0).unwrap());
        let fm = g.add(Class::Shm, sys::shmget(key(43), 0, 0).unwrap());
        let mapped = g.add(Class::Shm, sys::shmget(key(44), 0, 0).unwrap());
        let att = ShmAttach::attach(mapped, 0).unwrap();
        // The child detaches its inherited copy (in_child does), which
        // makes it the segment's last pid.
        in_child(|| 0);
        let st = sys::shm_stat(mapped).unwrap();
        assert!(st.cpid != mypid && st.lpid != mypid && st.nattch >= 1);

        let dump = collect(&[mypid], false).unwrap();
        let dq: BTreeSet<i32> = dump.msg_queues.iter().map(|q| q.id).collect();
        let ds: BTreeSet<i32> = dump.sem_sets.iter().map(|s| s.id).collect();
        let dm: BTreeSet<i32> = dump.shm_segments.iter().map(|s| s.id).collect();
        assert_eq!(dq, set([q]), "queues (not {fq}, {idle})");
        assert_eq!(ds, set([s]), "sets (not {fs})");
        assert_eq!(dm, set([m, mapped]), "segments (not {fm})");
        drop(att);
    });
}

/// A child in an IPC namespace of its own, killed and reaped on drop.
struct NsChild {
    pid: i32,
    go: std::fs::File,
}

impl Drop for NsChild {
    fn drop(&mut self) {
        // SAFETY: signals and reaps our own child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

#[test]
fn own_namespace_takes_every_object_of_that_namespace() {
    let (ready_r, ready_w) = nix::unistd::pipe().unwrap();
    let (go_r, go_w) = nix::unistd::pipe().unwrap();
    let seg = pattern(2 * PAGE, 5);
    let (k51, k53) = (key(51), key(53));
    // SAFETY: the child makes raw syscalls only, then _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        detach_inherited();
        let code = (|| -> nix::Result<()> {
            unshare(CloneFlags::CLONE_NEWIPC)?;
            let q = sys::msgget(k51, CREATE | 0o600)?;
            sys::msgsnd(q, 2, b"in the namespace", 0)?;
            sys::msgsnd(q, 1, b"second", 0)?;
            sys::msgget(libc::IPC_PRIVATE, CREATE | 0o600)?; // untouched
            let s = sys::semget(libc::IPC_PRIVATE, 3, CREATE | 0o600)?;
            sys::sem_setall(s, &[0, 1, 2])?;
            let m = sys::shmget(k53, (2 * PAGE) as u64, CREATE | 0o600)?;
            // SAFETY: attaches at an address the kernel picks.
            let p = unsafe { libc::shmat(m, std::ptr::null(), 0) };
            // SAFETY: the attachment is 2 pages long; `seg` was made before fork.
            unsafe { std::ptr::copy_nonoverlapping(seg.as_ptr(), p.cast(), seg.len()) };
            // SAFETY: detaches what was just attached.
            unsafe { libc::shmdt(p) };
            nix::unistd::write(&ready_w, b"r")?;
            let mut b = [0u8; 1];
            nix::unistd::read(go_r.as_raw_fd(), &mut b)?;
            Ok(())
        })()
        .is_err() as i32;
        // SAFETY: leaves the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    drop(ready_w);
    drop(go_r);
    let child = NsChild {
        pid,
        go: go_w.into(),
    };
    let mut b = [0u8; 1];
    assert_eq!(
        nix::unistd::read(ready_r.as_raw_fd(), &mut b).unwrap(),
        1,
        "child failed"
    );

    let ns_before = sys::current_ipc_ns().unwrap();
    assert_ne!(sys::ipc_ns_of(pid).unwrap(), ns_before);
    let dump = collect(&[pid], true).unwrap();
    assert_eq!(sys::current_ipc_ns().unwrap(), ns_before);

    assert_eq!(dump.msg_queues.len(), 2);
    let q = dump
        .msg_queues
        .iter()
        .find(|q| q.perm.key == key(51))
        .unwrap();
    let msgs: Vec<(i64, &[u8])> = q.messages.iter().map(|m| (m.mtype, &m.data[..])).collect();
    assert_eq!(
        msgs,
        vec![(2, &b"in the namespace"[..]), (1, &b"second"[..])]
    );
    assert!(
        dump.msg_queues
            .iter()
            .any(|q| q.perm.key == 0 && q.messages.is_empty())
    );
    assert_eq!(dump.sem_sets.len(), 1);
    assert_eq!(dump.sem_sets[0].values.0, vec![0, 1, 2]);
    assert_eq!(dump.shm_segments.len(), 1);
    let m = &dump.shm_segments[0];
    assert_eq!(
        (m.perm.key, m.size, m.removed),
        (key(53), 2 * PAGE as u64, false)
    );

    // The contents come out of that namespace too.
    let img = image_of(&dump);
    let mut got = vec![0u8; 2 * PAGE];
    for (_, d) in records(&img) {
        if let Some((p, data)) = d {
            assert_eq!((p.space, p.id), (SPACE_SYSV_SHM, m.id as u64));
            got[p.addr as usize..p.addr as usize + data.len()].copy_from_slice(&data);
        }
    }
    assert!(got == seg, "segment contents differ");
    nix::unistd::write(&child.go, b"g").unwrap();
    drop(child);
}
