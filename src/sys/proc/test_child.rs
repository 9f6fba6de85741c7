//! A forked child that sleeps until it is dropped, when it is killed and
//! reaped (also when a test fails and unwinds). Shared with the pagemap tests.

use std::os::fd::{FromRawFd, OwnedFd};

/// The child's pid; `Drop` kills and reaps it.
pub(crate) struct Child {
    pub(crate) pid: i32,
}

impl Child {
    /// Fork a child that renames itself to `name` (at most 15 bytes),
    /// runs `setup` (which must be async-signal-safe: no allocation,
    /// no locks), reports back, and then sleeps.
    pub(crate) fn spawn(name: &[u8], setup: fn()) -> Child {
        assert!(name.len() < 16);
        let mut cname = [0u8; 16];
        cname[..name.len()].copy_from_slice(name);
        let mut p = [0i32; 2];
        // SAFETY: `p` has room for the two descriptors pipe2 writes.
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both descriptors were just created and are owned here.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
        // SAFETY: the child only makes async-signal-safe calls (prctl,
        // the caller's setup, write, pause, _exit) before it dies.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: in the child: plain system calls on valid
            // arguments; the child never returns into Rust code.
            unsafe {
                libc::prctl(libc::PR_SET_NAME, cname.as_ptr());
                setup();
                libc::write(p[1], b"x".as_ptr().cast(), 1);
                loop {
                    libc::pause();
                }
            }
        }
        let child = Child { pid };
        drop(w);
        let mut b = [0u8; 1];
        // SAFETY: reading one byte into `b` from the pipe we own.
        let n = unsafe { libc::read(p[0], b.as_mut_ptr().cast(), 1) };
        assert_eq!(n, 1, "child did not start");
        drop(r);
        child
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // SAFETY: signalling and reaping our own child by its pid.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

/// A setup that does nothing.
pub(crate) fn nothing() {}
