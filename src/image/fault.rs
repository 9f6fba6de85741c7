//! What can be wrong inside an image whose framing is sound: records that
//! decode but contradict each other or ask for the impossible. The
//! restorer refuses such an image with one of these, naming the record
//! (process, thread, mapping, descriptor or data record), the field and
//! what was wrong; the edge shows it as one line, `invalid image: ...`.

use thiserror::Error;

use super::Kind;

/// Why a mapping was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappingFault {
    Unaligned,
    OutsideUserSpace,
    Overlaps,
    MissingShmem,
    MissingSysvSegment,
    OffsetBeyondStart,
    Inherited,
}

impl std::fmt::Display for MappingFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MappingFault::Unaligned => "is not a page-aligned range",
            MappingFault::OutsideUserSpace => "lies outside the user address space",
            MappingFault::Overlaps => "overlaps the one before it",
            MappingFault::MissingShmem => "refers to a shared memory object the image lacks",
            MappingFault::MissingSysvSegment => "refers to a SysV segment the image lacks",
            MappingFault::OffsetBeyondStart => "has an offset beyond its own address",
            MappingFault::Inherited => {
                "is said to be inherited, but is not private anonymous memory of both the process and its parent, in order"
            }
        })
    }
}

/// Which object a bulk-data record was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataTarget {
    SharedMemory,
    File,
    Socket,
    Pipe,
}

impl std::fmt::Display for DataTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DataTarget::SharedMemory => "shared memory",
            DataTarget::File => "file",
            DataTarget::Socket => "socket",
            DataTarget::Pipe => "pipe",
        })
    }
}

/// Why a Unix socket (`SOCKET` record) was refused: its own fields, or
/// how it fits with its peer, listener and pending connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketFault {
    NotUnix {
        family: u32,
    },
    /// Its name or its peer's name (shown as `@abstract` or a path).
    BadName {
        name: String,
    },
    BadListener,
    HeldWhilePending,
    NoListener,
    NotPending,
    NotListening,
    PendingElsewhere {
        pending: u64,
        listener: u64,
        stype: u32,
    },
    PendingMissing {
        pending: u64,
    },
    ClientMismatch,
    PendingTwice,
    PeerNowhere,
    /// Found while its data streams in.
    DataUnsendable,
    DataCut,
}

impl std::fmt::Display for SocketFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SocketFault::NotUnix { family } => write!(f, "family {family} is not AF_UNIX"),
            SocketFault::BadName { name } => write!(f, "{name} is not a name a socket can have"),
            SocketFault::BadListener => f.write_str("a listener with no name, or of datagrams"),
            SocketFault::HeldWhilePending => {
                f.write_str("a connection not yet accepted is held at a descriptor")
            }
            SocketFault::NoListener => {
                f.write_str("its peer is pending on a listener that has no record")
            }
            SocketFault::NotPending => {
                f.write_str("its peer is not among its listener's pending connections")
            }
            SocketFault::NotListening => {
                f.write_str("has pending connections but is not listening")
            }
            SocketFault::PendingElsewhere {
                pending,
                listener,
                stype,
            } => write!(
                f,
                "pending connection {pending} is pending on {listener}, of type {stype}"
            ),
            SocketFault::PendingMissing { pending } => {
                write!(f, "pending connection {pending} has no record")
            }
            SocketFault::ClientMismatch => {
                f.write_str("its client's record does not name it as its peer")
            }
            SocketFault::PendingTwice => f.write_str("its client is pending twice"),
            SocketFault::PeerNowhere => {
                f.write_str("a connected stream socket whose peer is neither in the image nor gone")
            }
            SocketFault::DataUnsendable => f.write_str("it has data but nothing can send it to it"),
            SocketFault::DataCut => f.write_str("its data is cut short"),
        }
    }
}

/// An image fault: which record, which field, what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Fault {
    /// A field holding a closed set of values (see `image::kinds`) has one
    /// this version does not know.
    #[error("{} record {id}: unknown {field} {value}", record.name())]
    Unknown {
        record: Kind,
        /// The record's pid, or its object's id.
        id: u64,
        field: &'static str,
        value: u64,
    },
    #[error("process {pid} appears twice")]
    DuplicateProcess { pid: u32 },
    #[error("a {kind} record refers to process {pid}, which has no process record before it")]
    NoProcessFor { kind: Kind, pid: u32 },
    #[error("no live process in the image")]
    NoLiveProcess,
    #[error("the first process {pid} is not the root of the tree")]
    FirstNotRoot { pid: u32 },
    #[error("impossible pid {pid}")]
    Pid { pid: u32 },
    /// `field` is `pgid`, `sid` or `tty_pgrp`.
    #[error("process {pid}: impossible {field} {value}")]
    GroupId {
        pid: u32,
        field: &'static str,
        value: u32,
    },
    #[error("process {pid}: impossible exit signal {signal}")]
    ExitSignal { pid: u32, signal: u32 },
    #[error("process {pid} comes before its parent {ppid}")]
    ParentAfter { pid: u32, ppid: u32 },
    #[error("zombie {pid} has threads or memory")]
    ZombieBody { pid: u32 },
    #[error("process {pid} has no memory record")]
    NoMemory { pid: u32 },
    #[error("process {pid} has no main thread record")]
    NoMainThread { pid: u32 },
    #[error("process {pid} has {count} threads")]
    TooManyThreads { pid: u32, count: usize },
    #[error("registers of thread {tid} have the wrong size")]
    RegsSize { tid: u32 },
    #[error("impossible thread id {tid}")]
    Tid { tid: u32 },
    #[error("process {pid}: mapping {start:#x}-{end:#x} {why}")]
    Mapping {
        pid: u32,
        start: u64,
        end: u64,
        why: MappingFault,
    },
    #[error("process {pid}: descriptor {fd} refers to a missing file")]
    MissingFile { pid: u32, fd: u32 },
    #[error("process {pid}: impossible descriptor {fd}")]
    Fd { pid: u32, fd: u32 },
    #[error("{owner}: impossible lock {lock}: {why}")]
    Lock {
        owner: String,
        lock: String,
        why: &'static str,
    },
    #[error("record {seq} is too short for its kind")]
    ShortData { seq: u32 },
    #[error("zero record {seq} has no length")]
    ZeroNoLength { seq: u32 },
    #[error("zero record {seq} is too long")]
    ZeroTooLong { seq: u32 },
    #[error("a {kind} record after the page data began")]
    MetaAfterData { kind: Kind },
    #[error("pages for unknown process {id}")]
    PagesUnknownProcess { id: u64 },
    #[error("pages at {start:#x}-{end:#x} of process {id} lie outside its mappings")]
    PagesOutside { id: u64, start: u64, end: u64 },
    /// `ckpt --live`: a pre-copy record that is not page data of a
    /// process at a page-aligned address.
    #[error("pre-copy record {seq} is not whole pages of a process")]
    PrecopyBadRecord { seq: u32 },
    #[error("pre-copy record {seq} ({kind}) comes after the metadata began")]
    PrecopyAfterMeta { seq: u32, kind: Kind },
    #[error("pre-copy round {round} is out of order (expected {expected})")]
    PrecopyRoundOrder { round: u32, expected: u32 },
    #[error("the metadata begins inside a pre-copy round: its end record is missing")]
    PrecopyUnfinished,
    #[error("pre-copied pages exceed this machine's memory")]
    PrecopyTooLarge,
    #[error(
        "process {pid}'s memory lists pre-copied pages at {addr:#x} that no pre-copy round sent"
    )]
    PrecopyMissing { pid: u32, addr: u64 },
    #[error(
        "process {pid}'s pre-copied range {start:#x}-{end:#x} is not page-aligned inside a mapping with contents"
    )]
    PrecopyRange { pid: u32, start: u64, end: u64 },
    #[error("data for unknown {target} {id}")]
    DataUnknown { target: DataTarget, id: u64 },
    #[error("data beyond the end of {target} {id}")]
    DataBeyond { target: DataTarget, id: u64 },
    #[error("data for unknown space {space}")]
    UnknownSpace { space: u32 },
    #[error("event file {file_id}: {why}")]
    Event { file_id: u64, why: &'static str },
    #[error("memfd file {file_id} refers to a shared memory object the image lacks")]
    MemfdObject { file_id: u64 },
    #[error("POSIX shared memory object {id} {why}")]
    PosixShm { id: u64, why: &'static str },
    #[error("POSIX shared memory file {file_id} refers to an object the image lacks")]
    PosixShmFile { file_id: u64 },
    #[error("POSIX message queue {id} {why}")]
    Mqueue { id: u64, why: &'static str },
    #[error("POSIX message queue file {file_id} refers to a queue the image lacks")]
    MqueueFile { file_id: u64 },
    #[error("pidfd file {file_id} refers to pid {pid}, which is not a process of the image")]
    PidfdTarget { file_id: u64, pid: u64 },
    /// A `FILE` whose type needs an object record (`object`: `PIPE`,
    /// `PTY`, `INET`, `SOCKET`) that the image lacks; `link` is how
    /// `/proc` showed it (`pipe:[123]`).
    #[error("{link} has no {} record", object.name())]
    MissingObject {
        file_id: u64,
        link: String,
        object: Kind,
        object_id: u64,
    },
    #[error("data for {target} {id}, which no process holds")]
    DataUnheld { target: DataTarget, id: u64 },
    #[error("socket {id}: {why}")]
    Socket { id: u64, why: SocketFault },
    #[error("inet socket {id}: {why}")]
    Inet { id: u64, why: &'static str },
    #[error("pty {index} {why}")]
    Pty {
        id: u64,
        index: u32,
        why: &'static str,
    },
    /// A `FORK_PAGES` record where none may be: in a live image, after
    /// other bulk data, or for processes out of order (`per_process`).
    #[error("record {seq} ({}) {}", Kind::FORK_PAGES.name(), if *live {
        "in a live image: its processes share no memory copy-on-write"
    } else if *per_process {
        "is out of order: fork pages come first, per process in image order, for processes whose children inherit them"
    } else {
        "is out of order: fork pages come first"
    })]
    ForkPages {
        seq: u32,
        live: bool,
        per_process: bool,
    },
    /// `CARRY_FILE` and `CARRY_DATA` records: `file` is the carried
    /// file's id or path.
    #[error("carried file {file}: {why}")]
    Carried { file: String, why: &'static str },
    #[error("a pending signal of pid {pid} is malformed")]
    SignalMalformed { pid: u32 },
    #[error("pending signal {signal} of pid {pid}")]
    PendingSignal { pid: u32, signal: i32 },
}
