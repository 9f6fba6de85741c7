//! Live tests over this process and a child, across the file families.

use super::test_child::{Child, nothing};
use super::*;

fn self_pid() -> i32 {
    std::process::id() as i32
}

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

#[test]
fn errors_name_the_file() {
    let e = stat(i32::MAX).unwrap_err();
    assert!(e.is_gone());
    assert!(
        e.to_string()
            .starts_with(&format!("/proc/{}/stat: ", i32::MAX)),
        "{e}"
    );
    let e = ProcError::Format {
        path: "/proc/4242/stat".into(),
        reason: ParseError("unexpected format".into()),
    };
    assert_eq!(e.to_string(), "/proc/4242/stat: unexpected format");
    assert!(!e.is_gone());
}

#[test]
fn live_self() {
    let me = self_pid();
    let st = stat(me).unwrap();
    assert_eq!(st.pid, me);
    assert_eq!(st.comm, comm(me).unwrap());
    assert!(st.num_threads >= 1);
    let ts = task_stat(me, gettid()).unwrap();
    assert_eq!(ts.pid, gettid());

    let s = status(me).unwrap();
    assert_eq!((s.tgid, s.pid), (me, me));
    assert_eq!(s.ppid, st.ppid);
    assert_eq!(s.name, st.comm);
    assert!(s.umask.is_some());
    let ts = task_status(me, gettid()).unwrap();
    assert_eq!((ts.tgid, ts.pid), (me, gettid()));

    let t = tasks(me).unwrap();
    assert_eq!(t[0], me);
    assert!(t.contains(&gettid()));
    assert!(t[1..].windows(2).all(|w| w[0] < w[1]));

    assert_eq!(
        exe(me).unwrap(),
        std::fs::read_link("/proc/self/exe")
            .unwrap()
            .into_os_string()
            .into_vec()
    );
    assert_eq!(
        cwd(me).unwrap(),
        std::env::current_dir().unwrap().into_os_string().into_vec()
    );
    assert_eq!(root(me).unwrap(), b"/");
    let args = cmdline(me).unwrap();
    let args = split_nul(&args);
    assert_eq!(args.len(), std::env::args_os().count());
    assert!(
        split_nul(&environ(me).unwrap())
            .iter()
            .all(|e| e.contains(&b'='))
    );
    let av = parse_auxv(&auxv(me).unwrap()).unwrap();
    assert!(av.contains(&(libc::AT_PAGESZ, 4096)));
}

#[test]
fn live_self_maps_and_smaps() {
    let me = self_pid();
    let local = 0u8;
    let addr = &local as *const u8 as u64;
    let m = maps(me).unwrap();
    assert!(m.windows(2).all(|w| w[0].end <= w[1].start));
    let stack = m.iter().find(|e| e.start <= addr && addr < e.end).unwrap();
    assert!(stack.read && stack.write && !stack.shared);
    assert!(m.iter().any(|e| e.path == b"[vdso]"));
    assert!(m.iter().any(|e| e.path == b"[vsyscall]"));

    // A named, MADV_DONTDUMP mapping shows in smaps.
    let len = 4 * 4096;
    // SAFETY: a fresh anonymous mapping, unmapped below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    let name = c"crtools test";
    // SAFETY: madvise and prctl on the mapping we own.
    let named = unsafe {
        assert_eq!(libc::madvise(p, len, libc::MADV_DONTDUMP), 0);
        // Fails with EINVAL without CONFIG_ANON_VMA_NAME.
        libc::prctl(
            libc::PR_SET_VMA,
            libc::PR_SET_VMA_ANON_NAME,
            p as usize,
            len,
            name.as_ptr(),
        ) == 0
    };
    let m = maps(me).unwrap();
    let sm = smaps(me).unwrap();
    let flags = smaps_vmflags(me).unwrap();
    // SAFETY: unmapping the mapping made above.
    unsafe { libc::munmap(p, len) };
    let e = m.iter().find(|e| e.start == p as u64).unwrap();
    if named {
        assert_eq!(e.path, b"[anon:crtools test]");
        assert!(e.is_special());
    } else {
        assert_eq!(e.path, b"");
    }
    let s = sm.iter().find(|e| e.start == p as u64).unwrap();
    assert!(s.has_flag(b"dd") && s.has_flag(b"rd") && s.has_flag(b"wr"));
    assert_eq!(
        flags.iter().find(|f| f.0 == p as u64).unwrap().1,
        s.vm_flags
    );
}

#[test]
fn live_self_fds_and_fdinfo() {
    use std::io::{Seek, Write};
    let me = self_pid();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a file\nwith newline");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"hello").unwrap();
    f.seek(std::io::SeekFrom::Start(3)).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    let all = fds(me).unwrap();
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
    let (_, target) = all.iter().find(|(n, _)| *n == fd).unwrap();
    assert_eq!(target, path.as_os_str().as_bytes());
    let fi = fdinfo(me, fd).unwrap();
    assert_eq!(fi.pos, 3);
    assert_eq!(fi.flags & libc::O_ACCMODE as u32, libc::O_WRONLY as u32);
    assert_ne!(fi.flags & libc::O_APPEND as u32, 0);
    assert_ne!(fi.flags & libc::O_CLOEXEC as u32, 0);
    assert_eq!(fi.ino, std::fs::metadata(&path).unwrap().ino());

    // An eventfd's counter.
    // SAFETY: eventfd has no memory-safety preconditions.
    let efd = unsafe { libc::eventfd(7, libc::EFD_CLOEXEC) };
    assert!(efd >= 0);
    let fi = fdinfo(me, efd);
    // SAFETY: closing the descriptor created above.
    unsafe { libc::close(efd) };
    assert_eq!(fi.unwrap().get(b"eventfd-count"), Some(&b"7"[..]));
    // A closed descriptor is "gone". Not `efd` itself: the unit tests run
    // in parallel threads, which may be given its number again at once. A
    // copy at a number none of them reaches, closed, is asked for instead.
    // SAFETY: F_DUPFD_CLOEXEC of a descriptor this test owns.
    let high = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 700) };
    assert!(high >= 700, "{}", std::io::Error::last_os_error());
    // SAFETY: closing the copy made above.
    unsafe { libc::close(high) };
    let e = fdinfo(me, high).unwrap_err();
    assert!(e.is_gone(), "{e}");
}

#[test]
fn live_self_timers() {
    let me = self_pid();
    // SAFETY: a zeroed sigevent is valid; the fields set are plain data.
    let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
    sev.sigev_notify = libc::SIGEV_SIGNAL;
    sev.sigev_signo = libc::SIGURG;
    sev.sigev_value = libc::sigval {
        sival_ptr: 0x1234_5678 as *mut libc::c_void,
    };
    let mut id: libc::timer_t = std::ptr::null_mut();
    // SAFETY: `sev` and `id` are valid for the call; the timer is never
    // armed and is deleted below.
    let rc = unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut id) };
    assert_eq!(rc, 0);
    let t = timers(me);
    // SAFETY: deleting the timer created above.
    unsafe { libc::timer_delete(id) };
    let t = t.unwrap();
    let mine = t.iter().find(|t| t.id as usize == id as usize).unwrap();
    assert_eq!(mine.signal, libc::SIGURG);
    assert_eq!(mine.sigval, 0x1234_5678);
    assert_eq!(mine.notify, TimerNotify::Signal);
    assert!(!mine.notify_thread_id);
    assert_eq!(mine.notify_tid, me);
    assert_eq!(mine.clock, libc::CLOCK_MONOTONIC);
}

#[test]
fn live_map_files_identify_shared_anon() {
    let me = self_pid();
    let len = 2 * 4096;
    // SAFETY: a fresh shared anonymous mapping, unmapped below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    let (start, end) = (p as u64, p as u64 + len as u64);
    let ino = map_files_ino(me, start, end);
    let link = map_files_link(me, start, end);
    let m = maps(me).unwrap();
    // SAFETY: unmapping the mapping made above.
    unsafe { libc::munmap(p, len) };
    let (_dev, ino) = ino.unwrap();
    let e = m.iter().find(|e| e.start == start).unwrap();
    assert_eq!(
        (e.path.as_slice(), e.deleted, e.shared),
        (&b"/dev/zero"[..], true, true)
    );
    assert_eq!(e.inode, ino);
    assert_eq!(link.unwrap(), b"/dev/zero (deleted)");
    // Private anonymous memory has no map_files entry.
    let stack = m.iter().find(|e| e.path == b"[stack]").unwrap();
    assert!(
        map_files_ino(me, stack.start, stack.end)
            .unwrap_err()
            .is_gone()
    );
}

// -- live: a child -------------------------------------------------------

#[test]
fn live_child() {
    let name = b"a) (b c) R 1";
    let child = Child::spawn(name, nothing);
    let me = self_pid();

    // It may still be on its way to sleep.
    let mut st = stat(child.pid).unwrap();
    for _ in 0..200 {
        if st.state == b'S' {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        st = stat(child.pid).unwrap();
    }
    assert_eq!(st.pid, child.pid);
    assert_eq!(st.comm, name);
    assert_eq!(st.ppid, me);
    assert_eq!(st.state, b'S');
    assert_eq!(st.num_threads, 1);
    assert_eq!(comm(child.pid).unwrap(), name);

    let s = status(child.pid).unwrap();
    assert_eq!(s.name, name);
    assert_eq!(
        (s.pid, s.tgid, s.ppid, s.threads),
        (child.pid, child.pid, me, 1)
    );
    assert_eq!(tasks(child.pid).unwrap(), [child.pid]);
    assert!(children(me, gettid()).unwrap().contains(&child.pid));
    assert!(children(child.pid, child.pid).unwrap().is_empty());

    let m = maps(child.pid).unwrap();
    assert!(m.iter().any(|e| e.path == b"[stack]"));
    assert_eq!(m.len(), smaps(child.pid).unwrap().len());
    assert_eq!(exe(child.pid).unwrap(), exe(me).unwrap());
    let f = fds(child.pid).unwrap();
    assert!(!f.is_empty());
    for (fd, _) in &f {
        fdinfo(child.pid, *fd).unwrap();
    }
}

#[test]
fn live_child_with_newline_and_backslash_in_its_name() {
    let name = b"x\ny\\z (deleted)";
    let child = Child::spawn(name, nothing);
    assert_eq!(stat(child.pid).unwrap().comm, name);
    assert_eq!(status(child.pid).unwrap().name, name);
    assert_eq!(comm(child.pid).unwrap(), name);
    let raw = read_file(&proc_path(child.pid.into(), "status")).unwrap();
    assert!(
        raw.starts_with(b"Name:\tx\\ny\\\\z (deleted)\n"),
        "{}",
        show(&raw)
    );
}

#[test]
fn gone_child_is_gone() {
    let pid = Child::spawn(b"short-lived", nothing).pid;
    // Dropped: killed and reaped.
    assert!(stat(pid).unwrap_err().is_gone());
    assert!(maps(pid).unwrap_err().is_gone());
    assert!(tasks(pid).unwrap_err().is_gone());
}
