//! The closed sets of values some record fields hold (a file's type, what
//! backs a mapping, a process's state, a lock's kind, a Unix socket's
//! type, a TCP or UDP socket's type and family), as Rust enums. The wire
//! keeps the integers of `records.rs` (`FT_*`, `VMA_*`, `STATE_*`,
//! `LOCK_*`, `SOCK_*`, `AF_*`): the restorer decodes each field once,
//! when it validates the image (`restart::meta`), and refuses a value
//! this version does not know with [`super::Fault::Unknown`]; later code
//! matches the enums exhaustively, with no catch-all arm.

use super::records::*;

macro_rules! closed_set {
    ($(#[$doc:meta])* $name:ident: $t:ty, $what:literal {
        $($(#[$vdoc:meta])* $var:ident = $val:expr),* $(,)?
    }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $var),*
        }

        impl $name {
            /// What the field is called in messages.
            pub const WHAT: &'static str = $what;
            /// Every value, in wire order.
            pub const ALL: &'static [$name] = &[$($name::$var),*];

            /// The value on the wire.
            pub const fn wire(self) -> $t {
                match self {
                    $($name::$var => $val),*
                }
            }

            /// The variant for a wire value; `None` for one this version
            /// does not know.
            pub fn from_wire(v: $t) -> Option<Self> {
                Self::ALL.iter().copied().find(|x| x.wire() == v)
            }
        }
    };
}

closed_set! {
    /// What an open file is ([`File::ftype`]).
    FileType: u8, "file type" {
        Regular = FT_REGULAR,
        Directory = FT_DIRECTORY,
        CharDev = FT_CHARDEV,
        BlockDev = FT_BLOCKDEV,
        Pipe = FT_PIPE,
        Fifo = FT_FIFO,
        Socket = FT_SOCKET,
        PtyMaster = FT_PTY_MASTER,
        PtySlave = FT_PTY_SLAVE,
        Memfd = FT_MEMFD,
        Eventfd = FT_EVENTFD,
        Epoll = FT_EPOLL,
        Signalfd = FT_SIGNALFD,
        Timerfd = FT_TIMERFD,
        Inotify = FT_INOTIFY,
        /// Leads outside the image (see [`FT_EXTERNAL`]).
        External = FT_EXTERNAL,
        /// A TCP or UDP socket (see [`FT_INET`]).
        Inet = FT_INET,
        /// A POSIX shared memory object (see [`FT_POSIX_SHM`]).
        PosixShm = FT_POSIX_SHM,
        /// A POSIX message queue (see [`FT_MQUEUE`]).
        Mqueue = FT_MQUEUE,
        /// A pidfd (see [`FT_PIDFD`]).
        Pidfd = FT_PIDFD,
    }
}

impl FileType {
    /// An eventfd, timerfd, signalfd or inotify: made from its `EVENT`
    /// record alone (an epoll also needs its targets).
    pub fn is_event(self) -> bool {
        matches!(
            self,
            FileType::Eventfd | FileType::Timerfd | FileType::Signalfd | FileType::Inotify
        )
    }
}

closed_set! {
    /// What backs a mapping ([`Vma::backing`]).
    Backing: u8, "mapping backing" {
        Anon = VMA_ANON,
        File = VMA_FILE,
        SharedAnon = VMA_SHARED_ANON,
        Vdso = VMA_VDSO,
        Vvar = VMA_VVAR,
        VvarVclock = VMA_VVAR_VCLOCK,
        Vsyscall = VMA_VSYSCALL,
        SysvShm = VMA_SYSV_SHM,
    }
}

impl Backing {
    /// One of the kernel's own mappings (vDSO, vvar, vsyscall): moved to
    /// the image's address or left alone, never mapped.
    pub fn is_special(self) -> bool {
        match self {
            Backing::Vdso | Backing::Vvar | Backing::VvarVclock | Backing::Vsyscall => true,
            Backing::Anon | Backing::File | Backing::SharedAnon | Backing::SysvShm => false,
        }
    }

    /// The name messages use: `[vdso]` for the kernel's own mappings as
    /// `/proc/PID/maps` shows them, a word for the others.
    pub fn name(self) -> &'static str {
        match self {
            Backing::Anon => "anonymous",
            Backing::File => "file",
            Backing::SharedAnon => "shared anonymous",
            Backing::Vdso => "[vdso]",
            Backing::Vvar => "[vvar]",
            Backing::VvarVclock => "[vvar_vclock]",
            Backing::Vsyscall => "[vsyscall]",
            Backing::SysvShm => "SysV shared memory",
        }
    }
}

closed_set! {
    /// A process's state ([`Process::state`]).
    ProcState: u8, "state" {
        Running = STATE_RUNNING,
        /// In a job-control stop: it stays stopped after the restore.
        Stopped = STATE_STOPPED,
        Zombie = STATE_ZOMBIE,
    }
}

closed_set! {
    /// What kind of advisory lock ([`Lock::kind`]).
    LockKind: u8, "lock kind" {
        Posix = LOCK_POSIX,
        Ofd = LOCK_OFD,
        Flock = LOCK_FLOCK,
    }
}

impl LockKind {
    /// The name messages use: `POSIX`, `OFD`, `flock`.
    pub fn name(self) -> &'static str {
        match self {
            LockKind::Posix => "POSIX",
            LockKind::Ofd => "OFD",
            LockKind::Flock => "flock",
        }
    }
}

closed_set! {
    /// A Unix socket's type ([`Socket::stype`], the `SOCK_*` number).
    SockType: u32, "socket type" {
        Stream = libc::SOCK_STREAM as u32,
        Datagram = libc::SOCK_DGRAM as u32,
        SeqPacket = libc::SOCK_SEQPACKET as u32,
    }
}

closed_set! {
    /// A TCP or UDP socket's type ([`InetSocket::stype`], the `SOCK_*`
    /// number): its protocol.
    InetType: u32, "socket type" {
        Tcp = libc::SOCK_STREAM as u32,
        Udp = libc::SOCK_DGRAM as u32,
    }
}

impl InetType {
    /// The name messages use: `TCP`, `UDP`.
    pub fn name(self) -> &'static str {
        match self {
            InetType::Tcp => "TCP",
            InetType::Udp => "UDP",
        }
    }
}

closed_set! {
    /// A TCP or UDP socket's address family ([`InetSocket::family`]).
    InetFamily: u32, "address family" {
        V4 = libc::AF_INET as u32,
        V6 = libc::AF_INET6 as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips_and_unknown_ones_are_none() {
        for &t in FileType::ALL {
            assert_eq!(FileType::from_wire(t.wire()), Some(t));
        }
        assert_eq!(FileType::ALL.len(), 20);
        assert_eq!(FileType::from_wire(0), None);
        assert_eq!(FileType::from_wire(FT_EXTERNAL + 1), None);
        for &b in Backing::ALL {
            assert_eq!(Backing::from_wire(b.wire()), Some(b));
        }
        assert_eq!(Backing::from_wire(VMA_SYSV_SHM + 1), None);
        assert_eq!(ProcState::from_wire(STATE_ZOMBIE), Some(ProcState::Zombie));
        assert_eq!(ProcState::from_wire(3), None);
        assert_eq!(LockKind::from_wire(LOCK_FLOCK), Some(LockKind::Flock));
        assert_eq!(LockKind::from_wire(0), None);
        assert_eq!(
            SockType::from_wire(libc::SOCK_DGRAM as u32),
            Some(SockType::Datagram)
        );
        assert_eq!(SockType::from_wire(libc::SOCK_RAW as u32), None);
        assert_eq!(
            InetType::from_wire(libc::SOCK_DGRAM as u32),
            Some(InetType::Udp)
        );
        assert_eq!(InetType::from_wire(libc::SOCK_SEQPACKET as u32), None);
        assert_eq!(InetFamily::from_wire(libc::AF_UNIX as u32), None);
    }
}
