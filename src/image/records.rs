//! The record types of an image and their payloads.
//!
//! Metadata records come first in a stream, in this order: `HEADER`, then per
//! process `PROCESS`, `THREAD`s, `MM`, `FDTABLE`; shared objects (`FILE`,
//! `PIPE`, `SOCKET`, `PTY`, `SHMEM`, `MSGQ`, `SEMSET`, `SYSV_SHM`, `EVENT`) before the
//! first record that refers to them; then bulk data (`PAGES`, `ZERO`, `BLOB`);
//! then `END`. See `man/cr-image.5`.

use super::wire::List;
use crate::wire_struct;

/// A record type. `0` is never valid, so zeroed memory never parses as a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kind(pub u16);

impl Kind {
    pub const HEADER: Kind = Kind(1);
    pub const END: Kind = Kind(2);
    pub const PROCESS: Kind = Kind(0x10);
    pub const THREAD: Kind = Kind(0x11);
    pub const MM: Kind = Kind(0x12);
    pub const FDTABLE: Kind = Kind(0x13);
    pub const FILE: Kind = Kind(0x14);
    pub const PIPE: Kind = Kind(0x15);
    pub const SOCKET: Kind = Kind(0x16);
    pub const PTY: Kind = Kind(0x17);
    pub const SHMEM: Kind = Kind(0x18);
    pub const MSGQ: Kind = Kind(0x19);
    pub const SEMSET: Kind = Kind(0x1a);
    pub const SYSV_SHM: Kind = Kind(0x1b);
    pub const EVENT: Kind = Kind(0x1c);
    pub const PAGES: Kind = Kind(0x20);
    pub const ZERO: Kind = Kind(0x21);
    pub const BLOB: Kind = Kind(0x22);
    /// Pages of a delta (`cr-delta`): a `PAGES` record of the full image
    /// with its unchanged pages left in the base image. See [`DeltaPages`].
    pub const DELTA_PAGES: Kind = Kind(0x23);
    /// The end record of the full image a delta was made from. See [`DeltaEnd`].
    pub const DELTA_END: Kind = Kind(0x24);
    /// Carried files (`ckpt --carry-files`): metadata, before the first
    /// `PAGES`, `ZERO` or `BLOB`, as a restorer needs them before it
    /// creates any process.
    pub const CARRY_FILE: Kind = Kind(0x25);
    pub const CARRY_DATA: Kind = Kind(0x26);
    /// Pre-copied pages (`ckpt --live`): a `PAGES` payload read while the
    /// tree still ran. Bulk data, but it comes before the metadata: the
    /// restorer stages it, and an `MM`'s `precopied` ranges say which
    /// staged pages are the process's memory.
    pub const PRECOPY: Kind = Kind(0x2d);
    /// The end of a pre-copy round. See [`PrecopyRound`].
    pub const PRECOPY_ROUND: Kind = Kind(0x2e);
    /// A TCP or UDP socket (IPv4 or IPv6), with an established TCP
    /// connection's repair state and queues. See [`InetSocket`].
    pub const INET: Kind = Kind(0x27);
    /// Pages a process holds when it forks children that inherit them
    /// copy-on-write (see [`Mm::inherited`]): bulk records, before every
    /// `PAGES`, `ZERO` and `BLOB`, so that a restorer can fill them in the
    /// parent before it forks. A [`DataPrefix`] of space
    /// [`SPACE_PROCESS`], then the bytes, or with [`DATA_F_ZERO`] an
    /// 8-byte length of zeros.
    pub const FORK_PAGES: Kind = Kind(0x2b);
    /// A POSIX shared memory object (`/dev/shm/NAME`) the tree maps or
    /// holds open: its name and owner; its contents are those of the
    /// `SHMEM` object of the same id. See [`PosixShm`].
    pub const POSIX_SHM: Kind = Kind(0x29);
    /// A POSIX message queue the tree holds, with its messages. See
    /// [`PosixMqueue`].
    pub const MQUEUE: Kind = Kind(0x2a);
    /// Kinds from here up may be skipped by a reader that does not know them.
    pub const FIRST_OPTIONAL: u16 = 0x8000;

    pub fn is_optional(self) -> bool {
        self.0 >= Self::FIRST_OPTIONAL
    }
    /// Bulk kinds carry memory or file contents; `cr-zstd` compresses these
    /// and leaves metadata readable.
    pub fn is_bulk(self) -> bool {
        matches!(
            self,
            Kind::PAGES
                | Kind::BLOB
                | Kind::DELTA_PAGES
                | Kind::CARRY_DATA
                | Kind::PRECOPY
                | Kind::FORK_PAGES
        )
    }
    pub fn name(self) -> &'static str {
        match self {
            Kind::HEADER => "header",
            Kind::END => "end",
            Kind::PROCESS => "process",
            Kind::THREAD => "thread",
            Kind::MM => "mm",
            Kind::FDTABLE => "fdtable",
            Kind::FILE => "file",
            Kind::PIPE => "pipe",
            Kind::SOCKET => "socket",
            Kind::PTY => "pty",
            Kind::SHMEM => "shmem",
            Kind::MSGQ => "msgq",
            Kind::SEMSET => "semset",
            Kind::SYSV_SHM => "sysv-shm",
            Kind::EVENT => "event",
            Kind::PAGES => "pages",
            Kind::ZERO => "zero",
            Kind::BLOB => "blob",
            Kind::DELTA_PAGES => "delta-pages",
            Kind::DELTA_END => "delta-end",
            Kind::CARRY_FILE => "carry-file",
            Kind::CARRY_DATA => "carry-data",
            Kind::PRECOPY => "precopy",
            Kind::PRECOPY_ROUND => "precopy-round",
            Kind::INET => "inet",
            Kind::FORK_PAGES => "fork-pages",
            Kind::POSIX_SHM => "posix-shm",
            Kind::MQUEUE => "mqueue",
            _ => "unknown",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({:#06x})", self.name(), self.0)
    }
}

/// Current format version. A reader refuses another major version; a newer
/// minor version only appends fields and optional kinds.
pub const FORMAT_MAJOR: u16 = 1;
pub const FORMAT_MINOR: u16 = 0;

wire_struct! {
    /// `HEADER`: what made the stream and where it can be restored.
    pub struct StreamHeader {
        pub format_major: u16,
        pub format_minor: u16,
        /// `uname -m` of the checkpointed machine, e.g. `x86_64`.
        pub arch: String,
        pub page_size: u32,
        /// `uname -r` of the checkpointed machine.
        pub kernel: String,
        /// `crtools X.Y.Z`.
        pub tool: String,
        /// Random identity of this stream; `cr-split` parts name it.
        pub stream_id: [u8; 16],
        /// Seconds since the epoch when the checkpoint began.
        pub created: u64,
        /// The pid the tree was rooted at.
        pub root_pid: u32,
        /// `HDR_*` bits.
        pub flags: u32,
        /// Bytes of one `NT_X86_XSTATE` register set on the checkpointed CPU.
        pub xstate_size: u32,
    }
}

/// The root is the init of its own pid namespace.
pub const HDR_PIDNS_INIT: u32 = 1;
/// The tree had its own IPC namespace: the image holds all of it, and
/// `cr-restart` makes a new one.
pub const HDR_OWN_IPCNS: u32 = 2;
/// The stream is a delta against another image (`cr-delta`): the header
/// payload goes on with a [`DeltaBase`], and `cr-delta --apply BASE` gives
/// the full image back. Nothing restores a delta itself.
pub const HDR_DELTA: u32 = 4;

wire_struct! {
    /// `END`: closes the stream. A stream without it is truncated.
    pub struct EndRecord {
        /// Records before this one, the header included.
        pub records: u64,
        /// Bytes before this record, the preamble included.
        pub bytes: u64,
        /// SHA-256 over the digests of all records before this one, in order,
        /// present when every one of them carries a digest.
        pub stream_digest: Option<[u8; 32]>,
    }
}

wire_struct! {
    /// Credentials of a process: real, effective, saved and filesystem ids.
    pub struct Creds {
        pub uid: u32,
        pub euid: u32,
        pub suid: u32,
        pub fsuid: u32,
        pub gid: u32,
        pub egid: u32,
        pub sgid: u32,
        pub fsgid: u32,
        pub groups: List<u32>,
        pub cap_inh: u64,
        pub cap_prm: u64,
        pub cap_eff: u64,
        pub cap_bnd: u64,
        pub cap_amb: u64,
        pub securebits: u32,
        pub no_new_privs: bool,
    }
}

wire_struct! {
    pub struct Rlimit { pub resource: u32, pub cur: u64, pub max: u64 }
}

wire_struct! {
    /// One `rt_sigaction` entry (kernel `struct sigaction` layout on x86_64).
    pub struct SigAction { pub signo: u32, pub handler: u64, pub flags: u64, pub restorer: u64, pub mask: u64 }
}

wire_struct! {
    /// An interval timer; `which` is `ITIMER_REAL`, `_VIRTUAL` or `_PROF`.
    pub struct ITimer { pub which: u32, pub interval_us: u64, pub value_us: u64 }
}

wire_struct! {
    /// A POSIX timer (`timer_create`).
    pub struct PosixTimer {
        pub id: u32,
        pub clock: u32,
        /// `SIGEV_*` notification.
        pub notify: u32,
        pub signo: u32,
        pub sigval: u64,
        /// Target thread for `SIGEV_THREAD_ID`.
        pub notify_tid: u32,
        pub interval_ns: u64,
        pub value_ns: u64,
        pub overrun: u32,
    }
}

/// Process states in [`Process::state`].
pub const STATE_RUNNING: u8 = 0;
pub const STATE_STOPPED: u8 = 1;
pub const STATE_ZOMBIE: u8 = 2;

wire_struct! {
    /// `PROCESS`: one process (thread group) of the tree.
    pub struct Process {
        pub pid: u32,
        /// Parent pid; `0` for the root of the tree.
        pub ppid: u32,
        pub pgid: u32,
        pub sid: u32,
        /// `STATE_*`.
        pub state: u8,
        /// For a zombie, the wait status its parent will collect.
        pub exit_status: i32,
        /// Signal sent to the parent on exit (normally `SIGCHLD`).
        pub exit_signal: u32,
        pub comm: Vec<u8>,
        pub exe: Vec<u8>,
        pub cwd: Vec<u8>,
        pub root: Vec<u8>,
        /// For information; the real arguments travel in memory.
        pub cmdline: Vec<u8>,
        pub umask: u32,
        pub creds: Creds,
        pub rlimits: List<Rlimit>,
        pub sigactions: List<SigAction>,
        pub itimers: List<ITimer>,
        pub posix_timers: List<PosixTimer>,
        /// Shared (process-wide) pending signals, raw 128-byte `siginfo_t`s.
        pub shared_pending: List<Vec<u8>>,
        pub personality: u32,
        pub pdeathsig: u32,
        pub child_subreaper: bool,
        pub dumpable: u32,
        /// Thread ids, the leader first.
        pub tids: List<u32>,
        /// File id of the controlling terminal, `0` when none.
        pub ctty: u64,
        /// CPU affinity mask bytes (`sched_getaffinity`).
        pub affinity: Vec<u8>,
        pub nice: i32,
        /// Foreground process group of the controlling terminal when
        /// [`Process::ctty`] is a pty of the image, `0` otherwise.
        pub tty_pgrp: u32,
        /// It had a controlling terminal that is not a pty of the image
        /// (the terminal it was started from): a job of a shell.
        pub outside_tty: bool,
    }
}

wire_struct! {
    pub struct AltStack { pub sp: u64, pub flags: u32, pub size: u64 }
}

wire_struct! {
    /// An rseq registration (`PTRACE_GET_RSEQ_CONFIGURATION`).
    pub struct Rseq { pub addr: u64, pub len: u32, pub flags: u32, pub sig: u32 }
}

wire_struct! {
    /// `THREAD`: one thread of a process.
    pub struct Thread {
        pub pid: u32,
        pub tid: u32,
        /// `struct user_regs_struct` as `NT_PRSTATUS` returns it.
        pub regs: Vec<u8>,
        /// The `NT_X86_XSTATE` register set (FPU, SSE, AVX, AVX-512...).
        pub xstate: Vec<u8>,
        pub sigmask: u64,
        pub altstack: AltStack,
        pub clear_child_tid: u64,
        pub robust_list: u64,
        pub robust_len: u64,
        pub rseq: Option<Rseq>,
        /// Pending signals of this thread, raw 128-byte `siginfo_t`s.
        pub pending: List<Vec<u8>>,
        pub comm: Vec<u8>,
        /// The thread was stopped in a job-control stop.
        pub stopped: bool,
    }
}

/// What backs a mapping, in [`Vma::backing`].
pub const VMA_ANON: u8 = 0;
/// Mapped from the file at `path` (with a [`Vma::file_id`] when the file is
/// held in the image, e.g. deleted or memfd).
pub const VMA_FILE: u8 = 1;
/// Shared anonymous memory; contents in `SHMEM` object [`Vma::shmem_id`].
pub const VMA_SHARED_ANON: u8 = 2;
pub const VMA_VDSO: u8 = 3;
pub const VMA_VVAR: u8 = 4;
pub const VMA_VVAR_VCLOCK: u8 = 5;
pub const VMA_VSYSCALL: u8 = 6;
/// A SysV shared memory attachment of `SYSV_SHM` segment [`Vma::shmem_id`].
pub const VMA_SYSV_SHM: u8 = 7;

/// `Vma::flags` bits.
pub const VMA_F_SHARED: u32 = 1;
pub const VMA_F_GROWSDOWN: u32 = 2;
pub const VMA_F_HEAP: u32 = 4;
pub const VMA_F_STACK: u32 = 8;
pub const VMA_F_HUGEPAGE: u32 = 16;
pub const VMA_F_NOHUGEPAGE: u32 = 32;
pub const VMA_F_DONTFORK: u32 = 64;
pub const VMA_F_LOCKED: u32 = 128;
pub const VMA_F_DONTDUMP: u32 = 256;
/// The mapping may be made writable (`mw` in smaps): a SysV attachment
/// without it was made read-only.
pub const VMA_F_MAYWRITE: u32 = 512;
/// Part of the mapping is inherited from the parent (see [`Mm::inherited`]):
/// the restorer may write the parent's pages into it.
pub const VMA_F_INHERITED: u32 = 1024;

impl Vma {
    /// Whether a child can inherit this mapping copy-on-write as the
    /// restorer rebuilds it (see [`Mm::inherited`]): private anonymous
    /// memory, not a stack, not `MADV_DONTFORK`.
    pub fn inheritable(&self) -> bool {
        self.backing == VMA_ANON
            && self.flags & (VMA_F_SHARED | VMA_F_GROWSDOWN | VMA_F_STACK | VMA_F_DONTFORK) == 0
    }
}

wire_struct! {
    /// One mapping of an address space.
    pub struct Vma {
        pub start: u64,
        pub end: u64,
        /// `PROT_*` bits.
        pub prot: u32,
        /// `VMA_F_*` bits.
        pub flags: u32,
        /// `VMA_*` backing.
        pub backing: u8,
        /// File offset in bytes.
        pub pgoff: u64,
        pub path: Vec<u8>,
        pub file_id: u64,
        pub shmem_id: u64,
        /// Device and inode of the mapped file, to check it is the same file.
        pub dev: u64,
        pub ino: u64,
        /// Pages of this mapping whose contents are in the image.
        pub dumped_pages: u64,
    }
}

wire_struct! {
    /// `MM`: a process's address space layout and `mm` fields.
    pub struct Mm {
        pub pid: u32,
        pub start_code: u64,
        pub end_code: u64,
        pub start_data: u64,
        pub end_data: u64,
        pub start_brk: u64,
        pub brk: u64,
        pub start_stack: u64,
        pub arg_start: u64,
        pub arg_end: u64,
        pub env_start: u64,
        pub env_end: u64,
        /// The auxiliary vector as `/proc/PID/auxv` shows it.
        pub auxv: Vec<u8>,
        pub vmas: List<Vma>,
        /// Whether transparent huge pages are disabled (`PR_GET_THP_DISABLE`).
        pub thp_disabled: bool,
        /// Ranges whose contents are the last `PRECOPY` pages sent for
        /// them (`ckpt --live`), not `PAGES` of this image part.
        pub precopied: List<PageRange>,
        /// Ranges of private anonymous mappings this process inherited
        /// from its parent by `fork` and still shares pages of, ordered,
        /// page-aligned, inside mappings of both. The pages it still
        /// shares are in the parent's records only (`FORK_PAGES`); its own
        /// pages in these ranges are in its records, zero pages included
        /// (`ZERO`), so the parent's never show through.
        pub inherited: List<PageRange>,
        /// Pages of this process left to its parent's records (shared).
        pub shared_pages: u64,
    }
}

wire_struct! {
    /// `[start, end)`, page-aligned.
    pub struct PageRange { pub start: u64, pub end: u64 }
}

wire_struct! {
    /// `PRECOPY_ROUND`: closes pre-copy round `round` (0 first).
    pub struct PrecopyRound {
        pub round: u32,
        /// Pages sent in the round.
        pub pages: u64,
    }
}

wire_struct! {
    pub struct Fd { pub fd: u32, pub cloexec: bool, pub file_id: u64 }
}

/// Kinds of [`Lock::kind`].
pub const LOCK_POSIX: u8 = 1;
pub const LOCK_OFD: u8 = 2;
pub const LOCK_FLOCK: u8 = 3;

wire_struct! {
    /// An advisory file lock held by the tree: a POSIX record lock in the
    /// owning process's `FDTABLE`, an OFD or `flock` lock in the `FILE` of
    /// the open file description that owns it.
    pub struct Lock {
        /// `LOCK_*`.
        pub kind: u8,
        /// A write (exclusive) lock; a read (shared) lock otherwise.
        pub write: bool,
        /// First byte locked.
        pub start: u64,
        /// Bytes locked, `0` to the end of the file however it grows (as
        /// `l_len`); `0` for `flock` locks.
        pub len: u64,
        /// For a POSIX lock: the descriptor of its process it is taken
        /// through at restore time (one of the description it was set on).
        pub fd: u32,
    }
}

impl std::fmt::Display for Lock {
    /// `POSIX write lock on bytes 5-14`, `flock read lock on the whole file`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            LOCK_POSIX => "POSIX",
            LOCK_OFD => "OFD",
            LOCK_FLOCK => "flock",
            _ => "unknown",
        };
        let rw = if self.write { "write" } else { "read" };
        write!(f, "{kind} {rw} lock on ")?;
        if self.kind == LOCK_FLOCK {
            f.write_str("the whole file")
        } else if self.len == 0 {
            write!(f, "bytes {} to the end of the file", self.start)
        } else {
            let last = self.start.saturating_add(self.len - 1);
            write!(f, "bytes {}-{last}", self.start)
        }
    }
}

wire_struct! {
    /// `FDTABLE`: the descriptors of one process.
    pub struct FdTable {
        pub pid: u32,
        pub fds: List<Fd>,
        /// POSIX record locks this process owns.
        pub locks: List<Lock>,
    }
}

impl FdTable {
    /// The first process of `tables`, in image order, that holds file
    /// `file_id`, and the descriptor it holds it at.
    pub fn holder(tables: &[FdTable], file_id: u64) -> Option<(u32, u32)> {
        tables.iter().find_map(|t| {
            t.fds
                .iter()
                .find(|d| d.file_id == file_id)
                .map(|d| (t.pid, d.fd))
        })
    }
}

/// What an open file is, in [`File::ftype`].
pub const FT_REGULAR: u8 = 1;
pub const FT_DIRECTORY: u8 = 2;
pub const FT_CHARDEV: u8 = 3;
pub const FT_BLOCKDEV: u8 = 4;
pub const FT_PIPE: u8 = 5;
pub const FT_FIFO: u8 = 6;
pub const FT_SOCKET: u8 = 7;
pub const FT_PTY_MASTER: u8 = 8;
pub const FT_PTY_SLAVE: u8 = 9;
pub const FT_MEMFD: u8 = 10;
pub const FT_EVENTFD: u8 = 11;
pub const FT_EPOLL: u8 = 12;
pub const FT_SIGNALFD: u8 = 13;
pub const FT_TIMERFD: u8 = 14;
pub const FT_INOTIFY: u8 = 15;
/// Leads outside what the image holds (a terminal the tree was started
/// from, a pipe or socket whose other end is not in the tree): reconnected at
/// restore time, see `cr-restart(1)`.
pub const FT_EXTERNAL: u8 = 16;
/// A TCP or UDP socket; its state is in the `INET` record of the same
/// `object_id`.
pub const FT_INET: u8 = 24;
/// A POSIX shared memory object in `/dev/shm` (`shm_open`): a new open of
/// the `SHMEM` object `object_id`, which has a `POSIX_SHM` record.
pub const FT_POSIX_SHM: u8 = 25;
/// A POSIX message queue (`mq_open`): the `MQUEUE` record `object_id`.
pub const FT_MQUEUE: u8 = 26;
/// A pidfd of a process of the image: `object_id` is its pid (in the
/// image's pid namespace); made again at restore with `pidfd_open`.
pub const FT_PIDFD: u8 = 27;

/// What an external descriptor is connected to under `cr-restart --detach`
/// when no `--fd` names it.
pub const EXTERNAL_DETACHED: &str = "/dev/null";

/// The descriptor of `cr-restart` that an external descriptor `fd`, opened
/// with `flags`, is connected to when no `--fd` says otherwise: the same
/// number for 0, 1 and 2; else standard input when it was read-only,
/// standard output when not.
pub fn external_default_fd(fd: u32, flags: u32) -> u32 {
    if fd <= 2 {
        fd
    } else if flags as i32 & libc::O_ACCMODE == libc::O_RDONLY {
        0
    } else {
        1
    }
}

wire_struct! {
    /// `FILE`: an open file description, shared by every descriptor that refers to it.
    pub struct File {
        pub id: u64,
        /// `FT_*`.
        pub ftype: u8,
        /// `O_*` status flags and access mode, as `fdinfo` shows them.
        pub flags: u32,
        pub pos: u64,
        pub path: Vec<u8>,
        /// `st_mode`, `st_rdev`, `st_size`, `st_dev`, `st_ino`.
        pub mode: u32,
        pub rdev: u64,
        pub size: u64,
        pub dev: u64,
        pub ino: u64,
        /// The file was unlinked while open: its contents follow in `BLOB`s.
        pub deleted: bool,
        /// For pipes, FIFOs, sockets and ptys: the id of that object's record.
        pub object_id: u64,
        /// For an external file, which descriptor it was found at (the
        /// lowest), to pick a default reconnection.
        pub external_fd: u32,
        /// A readable description of the object, e.g. `pipe:[1234]`.
        pub link: Vec<u8>,
        /// OFD and `flock` locks held by this open file description.
        pub locks: List<Lock>,
    }
}

wire_struct! {
    /// A target registered in an epoll: the file, the descriptor number it
    /// was registered under (a key of the registration, even when that
    /// number is now closed or reused), its events and data.
    pub struct EpollTarget { pub tfd: u32, pub file_id: u64, pub events: u32, pub data: u64 }
}

wire_struct! {
    /// A watch of an inotify instance: its watch descriptor, mask, and the
    /// path found for the watched inode at checkpoint time.
    pub struct InotifyWatch { pub wd: i32, pub mask: u32, pub path: Vec<u8>, pub dev: u64, pub ino: u64 }
}

wire_struct! {
    /// `EVENT`: the state of an eventfd, epoll, timerfd, signalfd or
    /// inotify `FILE` (its [`File::ftype`] says which; fields of the other
    /// kinds stay zero). Written after every `FILE`, since an epoll refers
    /// to its targets' `FILE`s.
    pub struct EventFile {
        pub file_id: u64,
        /// eventfd: the counter, and `EFD_SEMAPHORE`.
        pub count: u64,
        pub semaphore: bool,
        /// timerfd: clock, `TFD_TIMER_ABSTIME` and `TFD_TIMER_CANCEL_ON_SET`
        /// as set, time left and interval in nanoseconds, expirations not
        /// yet read.
        pub clock: u32,
        pub settime_flags: u32,
        pub value_ns: u64,
        pub interval_ns: u64,
        pub ticks: u64,
        /// signalfd: the signals it accepts, bit N-1 for signal N.
        pub sigmask: u64,
        /// epoll: every registered target, in the kernel's order.
        pub targets: List<EpollTarget>,
        /// inotify: every watch, in the kernel's order.
        pub watches: List<InotifyWatch>,
    }
}

wire_struct! {
    /// `PIPE`: a pipe or FIFO buffer. Data follows in `BLOB`s of space
    /// [`SPACE_PIPE`].
    pub struct Pipe { pub id: u64, pub capacity: u32, pub data_len: u64, pub fifo_path: Vec<u8> }
}

wire_struct! {
    /// `SOCKET`: a Unix socket in the tree (`id` is its inode at the
    /// checkpoint). Data waiting to be read follows in `BLOB`s of space
    /// [`SPACE_SOCKET`], as length-prefixed messages.
    pub struct Socket {
        pub id: u64,
        pub family: u32,
        pub stype: u32,
        /// The connected peer's id; 0 when none (or gone).
        pub peer: u64,
        /// `TCP_ESTABLISHED` (1), `TCP_CLOSE` (7), `TCP_LISTEN` (10).
        pub state: u32,
        /// The name it is bound to: an absolute path, or an abstract
        /// name led by a NUL byte; empty when unbound.
        pub path: Vec<u8>,
        /// A datagram socket connected to a named socket: that name.
        pub peer_path: Vec<u8>,
        pub data_len: u64,
        pub shutdown: u32,
        /// A connection not yet accepted: the listener's id (such a
        /// socket has no descriptor; its client, if in the tree, has it
        /// as `peer`).
        pub listener: u64,
        /// A listener: its backlog, and its pending connections in queue
        /// order (ids of `SOCKET` records with `listener` set).
        pub backlog: u32,
        pub pending: List<u64>,
        /// Socket options (see `getsockopt(2)`): `SO_RCVBUF`, `SO_SNDBUF`
        /// as read back (0: the default), `SO_PASSCRED`, `SO_RCVTIMEO`,
        /// `SO_SNDTIMEO` in microseconds, `SO_PEEK_OFF` (-1: off).
        pub rcvbuf: u32,
        pub sndbuf: u32,
        pub passcred: bool,
        pub rcvtimeo_us: u64,
        pub sndtimeo_us: u64,
        pub peek_off: i32,
        /// A filesystem name: the socket file's permission bits (0:
        /// unknown).
        pub path_mode: u32,
        /// Its peer was outside the tree (`ckpt --external-unix=close`):
        /// restored with no peer.
        pub external: bool,
    }
}

wire_struct! {
    /// `INET`: a TCP or UDP socket, IPv4 or IPv6 (`id` is the `object_id`
    /// of its `FILE`s). Addresses are 4 or 16 bytes (empty: none); ports
    /// in host order. Option fields hold the value `getsockopt` gave;
    /// `sndbuf`/`rcvbuf` are 0 when they were the system's defaults.
    /// The `tcp_*` fields and the queues are for an established TCP
    /// connection kept with `ckpt --tcp-established` (`repair` set).
    pub struct InetSocket {
        pub id: u64,
        pub family: u32,
        pub stype: u32,
        pub protocol: u32,
        /// `TCP_LISTEN` (10), `TCP_ESTABLISHED` (1), `TCP_CLOSE` (7); for
        /// UDP 1 when connected.
        pub state: u32,
        pub local_addr: Vec<u8>,
        pub local_port: u32,
        pub peer_addr: Vec<u8>,
        pub peer_port: u32,
        /// IPv6 scope id of the local address.
        pub scope_id: u32,
        /// The listen backlog.
        pub backlog: u32,
        pub reuseaddr: u32,
        pub reuseport: u32,
        pub keepalive: u32,
        pub keepidle: u32,
        pub keepintvl: u32,
        pub keepcnt: u32,
        pub nodelay: u32,
        pub v6only: u32,
        pub broadcast: u32,
        pub sndbuf: u32,
        pub rcvbuf: u32,
        /// `SO_LINGER`: seconds + 1 when on, 0 when off.
        pub linger: u32,
        /// An established connection restored with `TCP_REPAIR`.
        pub repair: bool,
        /// Sequence number after the send queue's last byte.
        pub snd_seq: u32,
        /// Sequence number after the receive queue's last byte.
        pub rcv_seq: u32,
        /// Bytes at the end of the send queue never sent.
        pub unsent: u32,
        pub mss: u32,
        /// `TCPI_OPT_*`: timestamps 1, SACK 2, window scaling 4.
        pub tcp_options: u32,
        pub snd_wscale: u32,
        pub rcv_wscale: u32,
        pub timestamp: u32,
        pub snd_wl1: u32,
        pub snd_wnd: u32,
        pub max_window: u32,
        pub rcv_wnd: u32,
        pub rcv_wup: u32,
        /// Data sent but not acknowledged, then data not yet sent.
        pub send_queue: Vec<u8>,
        /// Data received but not yet read.
        pub recv_queue: Vec<u8>,
    }
}

wire_struct! {
    /// `PTY`: a pseudo-terminal pair.
    pub struct Pty {
        pub id: u64,
        pub index: u32,
        /// `struct termios2` bytes of the slave side.
        pub termios: Vec<u8>,
        /// `struct winsize` bytes.
        pub winsize: Vec<u8>,
        pub locked: bool,
        pub packet: bool,
        /// Data waiting to be read on the master (written by the slave).
        pub to_master: Vec<u8>,
        /// Data waiting to be read on the slave (written by the master).
        pub to_slave: Vec<u8>,
    }
}

wire_struct! {
    /// `SHMEM`: a shared memory object (shared anonymous mapping, memfd,
    /// deleted file that is mapped); contents in `PAGES` of space
    /// [`SPACE_SHMEM`].
    pub struct Shmem {
        pub id: u64,
        pub size: u64,
        pub ino: u64,
        /// The memfd name (or the deleted file's name), for `/proc/PID/maps`.
        pub name: Vec<u8>,
        /// `F_SEAL_*` seals, set once the contents are in.
        pub seals: u32,
        /// A memfd or deleted file (not shared anonymous memory).
        pub file: bool,
    }
}

wire_struct! {
    /// `POSIX_SHM`: a file of `/dev/shm` (POSIX shared memory, named
    /// semaphores) the tree maps or holds open, restored there by name.
    /// Its contents are the `PAGES` of the `SHMEM` object `id` (same size).
    pub struct PosixShm {
        pub id: u64,
        /// The name in `/dev/shm` (no `/`), as `shm_open` takes it without
        /// its leading `/`.
        pub name: Vec<u8>,
        /// Permission bits, owner and group.
        pub mode: u32,
        pub uid: u32,
        pub gid: u32,
        pub size: u64,
        /// SHA-256 of the contents at the checkpoint: a file of that name
        /// found at restore time is used only if it is identical.
        pub sha256: Vec<u8>,
    }
}

wire_struct! {
    /// One message of a POSIX message queue.
    pub struct MqMessage { pub prio: u32, pub data: Vec<u8> }
}

wire_struct! {
    /// `MQUEUE`: a POSIX message queue the tree holds (`id` is its inode
    /// at the checkpoint, the `object_id` of its `FILE`s).
    pub struct PosixMqueue {
        pub id: u64,
        /// Its name, without the leading `/`.
        pub name: Vec<u8>,
        /// It was unlinked (`mq_unlink`) while open.
        pub deleted: bool,
        /// Permission bits, owner and group.
        pub mode: u32,
        pub uid: u32,
        pub gid: u32,
        pub maxmsg: u64,
        pub msgsize: u64,
        /// The messages queued, in the order receivers get them (highest
        /// priority first, then in order of arrival).
        pub messages: List<MqMessage>,
    }
}

wire_struct! {
    pub struct IpcPerm {
        pub key: i32,
        pub uid: u32,
        pub gid: u32,
        pub cuid: u32,
        pub cgid: u32,
        pub mode: u32,
    }
}

wire_struct! {
    pub struct Message { pub mtype: i64, pub data: Vec<u8> }
}

wire_struct! {
    /// `MSGQ`: a SysV message queue with its messages in order.
    pub struct MsgQueue { pub id: i32, pub perm: IpcPerm, pub qbytes: u64, pub messages: List<Message> }
}

wire_struct! {
    /// `SEMSET`: a SysV semaphore set.
    pub struct SemSet { pub id: i32, pub perm: IpcPerm, pub values: List<u16> }
}

wire_struct! {
    /// `SYSV_SHM`: a SysV shared memory segment; contents in `PAGES` of
    /// space [`SPACE_SYSV_SHM`].
    pub struct SysvShm { pub id: i32, pub perm: IpcPerm, pub size: u64, pub removed: bool }
}

/// Address spaces of `PAGES`, `ZERO` and `BLOB` records.
pub const SPACE_PROCESS: u32 = 0;
pub const SPACE_SHMEM: u32 = 1;
pub const SPACE_SYSV_SHM: u32 = 2;
/// Contents of a file held in the image (deleted, memfd).
pub const SPACE_FILE: u32 = 3;
pub const SPACE_PIPE: u32 = 4;
pub const SPACE_SOCKET: u32 = 5;
/// Contents of a carried file (`CARRY_DATA`; `id` is the `CARRY_FILE`'s).
pub const SPACE_CARRIED: u32 = 6;

wire_struct! {
    /// `CARRY_FILE`: a file the tree maps or holds open, as it was at the
    /// checkpoint; with `carried`, its contents follow in `CARRY_DATA`
    /// records (a [`DataPrefix`] of space [`SPACE_CARRIED`], offsets in
    /// order, covering `size` bytes).
    pub struct CarryFile {
        pub id: u64,
        pub path: Vec<u8>,
        pub size: u64,
        pub mtime_sec: i64,
        pub mtime_nsec: u32,
        pub mode: u32,
        /// SHA-256 of the contents.
        pub sha256: Vec<u8>,
        /// The ELF build id (`NT_GNU_BUILD_ID`), empty if none.
        pub build_id: Vec<u8>,
        /// Whether the contents are in the image (false: over `--carry-max`).
        pub carried: bool,
    }
}

/// [`DataPrefix::flags`] of a `FORK_PAGES` record holding a length of
/// zeros instead of bytes.
pub const DATA_F_ZERO: u32 = 1;

/// Size of the fixed prefix of `PAGES`, `ZERO` and `BLOB` payloads.
pub const DATA_PREFIX: usize = 24;

/// The fixed prefix of a bulk record: which space, which object, where.
/// For `PAGES` and `BLOB` the data follows; for `ZERO`, `len` says how
/// many bytes of zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataPrefix {
    pub space: u32,
    /// Zero, but for `FORK_PAGES` ([`DATA_F_ZERO`]).
    pub flags: u32,
    /// A pid for [`SPACE_PROCESS`], an object id otherwise.
    pub id: u64,
    /// A virtual address for [`SPACE_PROCESS`], an offset otherwise.
    pub addr: u64,
}

impl DataPrefix {
    pub fn to_bytes(&self) -> [u8; DATA_PREFIX] {
        let mut b = [0u8; DATA_PREFIX];
        b[0..4].copy_from_slice(&self.space.to_le_bytes());
        b[4..8].copy_from_slice(&self.flags.to_le_bytes());
        b[8..16].copy_from_slice(&self.id.to_le_bytes());
        b[16..24].copy_from_slice(&self.addr.to_le_bytes());
        b
    }
    /// Splits a bulk payload into its prefix and data.
    pub fn parse(payload: &[u8]) -> Option<(DataPrefix, &[u8])> {
        if payload.len() < DATA_PREFIX {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes(payload[i..i + 4].try_into().unwrap());
        let u64_at = |i: usize| u64::from_le_bytes(payload[i..i + 8].try_into().unwrap());
        Some((
            DataPrefix {
                space: u32_at(0),
                flags: u32_at(4),
                id: u64_at(8),
                addr: u64_at(16),
            },
            &payload[DATA_PREFIX..],
        ))
    }
}

wire_struct! {
    /// What a delta's `HEADER` payload holds after its [`StreamHeader`]
    /// (which has [`HDR_DELTA`]): the base it needs and the full image's
    /// own header record, as it stood.
    pub struct DeltaBase {
        /// The base image's stream id.
        pub base_stream_id: [u8; 16],
        /// SHA-256 over, for every record of the base before its end
        /// record, `kind:u16 seq:u32 raw_len:u32 crc32c(raw payload):u32`:
        /// the same whatever its compression or digests.
        pub base_digest: [u8; 32],
        /// Records of the base before its end record.
        pub base_records: u64,
        /// The full image's header record: flags, raw length, stored
        /// payload and digest.
        pub header_flags: u16,
        pub header_raw_len: u32,
        pub header_stored: Vec<u8>,
        pub header_digest: Option<[u8; 32]>,
    }
}

wire_struct! {
    /// `DELTA_PAGES`, after the `DataPrefix` of the record it stands for:
    /// how to rebuild that `PAGES` record. The page units not taken from
    /// the base follow this struct, in order.
    pub struct DeltaPages {
        /// The record's flags (`F_ZSTD`, `F_DIGEST`, `F_HMAC`).
        pub flags: u16,
        /// Its payload as stored (compressed with `F_ZSTD`) and raw.
        pub stored_len: u32,
        pub raw_len: u32,
        /// CRC32C of its raw payload, checked after the rebuild.
        pub crc: u32,
        pub digest: Option<[u8; 32]>,
        /// With `F_ZSTD`: the zstd level that compresses the rebuilt payload
        /// into exactly the stored bytes.
        pub level: i32,
        /// One bit per page unit of the data (least significant bit first):
        /// set when the unit is the base's at the same space, id and address.
        pub refs: Vec<u8>,
    }
}

wire_struct! {
    /// `DELTA_END`: the full image's end record, as it stood.
    pub struct DeltaEnd {
        pub flags: u16,
        pub raw_len: u32,
        pub stored: Vec<u8>,
        pub digest: Option<[u8; 32]>,
    }
}
