//! Process, thread and descriptor numbers as distinct types.
//!
//! The kernel uses one integer space for process ids (thread-group ids)
//! and thread ids, and a process's main thread has the id of the process.
//! The code does not: a [`Pid`] names a process (what `kill`, `/proc/PID`
//! and `prlimit` act on), a [`Tid`] names one thread (what ptrace, and
//! `/proc/PID/task/TID`, act on), and a [`Fd`] names a descriptor slot in
//! some process's table (not one of ours: ours are `OwnedFd`/`BorrowedFd`).
//! Turning one into another is spelt out ([`Pid::main_thread`],
//! [`Tid::as_raw`]), so a thread id cannot be passed where a process id is
//! meant by accident.
//!
//! We use our own newtypes rather than `nix::unistd::Pid`, which is one
//! type for both pids and tids; [`Pid::nix`] and [`Tid::nix`] convert at
//! the nix calls.
//!
//! `From<i32>` exists for both so that functions taking `impl Into<Pid>`
//! accept the raw integers the kernel and `/proc` hand out (a `waitpid`
//! result, a `/proc/PID/task` listing); there is no conversion between
//! `Pid` and `Tid`. The image stores ids as `u32`: [`Pid::from_u32`]
//! and [`Pid::as_u32`] convert at that edge.

use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(transparent)]
        pub struct $name(i32);

        impl $name {
            pub const fn from_raw(v: i32) -> Self {
                $name(v)
            }
            pub const fn as_raw(self) -> i32 {
                self.0
            }
            /// The number as the image stores it (ids are positive).
            pub const fn as_u32(self) -> u32 {
                self.0 as u32
            }
            /// The image's number (validated images hold ids of at most
            /// `PID_MAX`, 2^22). A larger one saturates rather than wraps:
            /// an id never becomes negative, which `kill` and `waitpid`
            /// would take for a process group.
            pub const fn from_u32(v: u32) -> Self {
                if v > i32::MAX as u32 {
                    $name(i32::MAX)
                } else {
                    $name(v as i32)
                }
            }
        }

        impl From<i32> for $name {
            fn from(v: i32) -> Self {
                $name(v)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A process (thread-group) id.
    Pid
);
id_type!(
    /// A thread id.
    Tid
);
id_type!(
    /// A descriptor number in some process's descriptor table.
    Fd
);

impl Pid {
    /// The process's main thread, whose id is the process's.
    pub const fn main_thread(self) -> Tid {
        Tid(self.0)
    }
    pub fn nix(self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.0)
    }
    /// This process (the caller).
    pub fn this() -> Pid {
        Pid(std::process::id() as i32)
    }
}

impl Tid {
    pub fn nix(self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.0)
    }
    /// Whether this is the main thread of `pid`.
    pub fn is_main_of(self, pid: Pid) -> bool {
        self.0 == pid.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_convert_only_where_spelt_out() {
        let p = Pid::from_raw(42);
        assert_eq!(p.main_thread(), Tid::from_raw(42));
        assert!(p.main_thread().is_main_of(p));
        assert!(!Tid::from_raw(43).is_main_of(p));
        assert_eq!(p.to_string(), "42");
        assert_eq!(Pid::from(7).as_raw(), 7);
        assert_eq!(Fd::from_raw(3).as_u32(), 3);
        assert_eq!(Pid::from_u32(4_194_304).as_raw(), 4_194_304);
        assert_eq!(Pid::from_u32(u32::MAX).as_raw(), i32::MAX);
        assert_eq!(p.nix().as_raw(), 42);
    }
}
