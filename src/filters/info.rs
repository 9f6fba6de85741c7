//! `cr-info`: what an image holds, without decompressing page data.
//!
//! Metadata records (`PROCESS`, `THREAD`, `MM`, `FDTABLE`, `FILE`) are
//! decoded, which checks their digests when they carry one; bulk records
//! are counted from their headers only (`raw_len`). The whole stream is
//! still read, so CRCs, sequence numbers, the end record and the stream
//! digest are all verified: a damaged image is an error, not a summary.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use serde_json::{Value, json};

use super::Result;
use crate::image::stream::HEAD_LEN;
use crate::image::{
    EventFile, FdTable, File, Kind, Mm, Process, RawRecord, Reader, Record, STATE_RUNNING,
    STATE_STOPPED, STATE_ZOMBIE, StreamHeader, Thread,
};

/// Counts for one record kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindCount {
    pub records: u64,
    /// Payload bytes as stored.
    pub stored: u64,
    /// Payload bytes decompressed.
    pub raw: u64,
    pub compressed: u64,
}

/// One descriptor of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdInfo {
    pub fd: u32,
    pub file_id: u64,
    /// `FT_*` of the file, when its `FILE` record was found.
    pub ftype: Option<u8>,
    pub path: String,
    /// File locks held through it (`POSIX write lock on bytes 5-14`).
    pub locks: Vec<String>,
    /// `O_*` flags of the open file description.
    pub flags: u32,
    /// `st_mode` of the file.
    pub mode: u32,
    /// For an eventfd, epoll, timerfd, signalfd or inotify: its state in
    /// a few words (`EVENT` record).
    pub event: Option<String>,
}

impl FdInfo {
    /// For an external descriptor: what it led to (pipe, socket, terminal
    /// or file) and the descriptor of `cr-restart` it becomes by default.
    pub fn external(&self) -> Option<(&'static str, u32)> {
        if self.ftype != Some(crate::image::FT_EXTERNAL) {
            return None;
        }
        let p = self.path.as_str();
        let what = match self.mode & libc::S_IFMT {
            libc::S_IFIFO => "pipe",
            libc::S_IFSOCK => "socket",
            // The only character devices left outside are terminals.
            libc::S_IFCHR => "terminal",
            _ if p.starts_with("pipe:") => "pipe",
            _ if p.starts_with("socket:") => "socket",
            _ if p.starts_with("/dev/pts/") || p.starts_with("/dev/tty") => "terminal",
            _ => "file",
        };
        Some((what, crate::image::external_default_fd(self.fd, self.flags)))
    }
}

fn stdio_name(fd: u32) -> &'static str {
    match fd {
        0 => "stdin",
        1 => "stdout",
        _ => "stderr",
    }
}

/// `created` (seconds since the epoch) in local time, with the offset.
pub fn local_time(secs: u64) -> String {
    crate::sys::process::local_time(secs).unwrap_or_else(|| format!("{secs} s after the epoch"))
}

/// One process of the tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    pub sid: u32,
    pub state: u8,
    pub comm: String,
    pub threads: u32,
    pub mappings: u64,
    pub dumped_pages: u64,
    /// Pages it shares copy-on-write with its parent, in the parent's
    /// records only (`Mm::shared_pages`).
    pub shared_pages: u64,
    pub fds: Vec<FdInfo>,
}

/// A summary of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub header: StreamHeader,
    pub processes: Vec<ProcInfo>,
    /// By kind number; header and end included.
    pub kinds: BTreeMap<u16, KindCount>,
    /// Records in the stream, header and end included.
    pub records: u64,
    /// Bytes of the stream.
    pub stored_bytes: u64,
    /// Bytes the stream would take with every record decompressed.
    pub raw_bytes: u64,
    /// Bulk records, and how many of them are compressed.
    pub bulk_records: u64,
    pub compressed_records: u64,
    /// Records carrying a digest, and how many of those were verified
    /// (the decoded metadata records).
    pub digests: u64,
    pub digests_verified: u64,
    /// `Some(true)` when the end record carries a stream digest (verified
    /// by the reader; a mismatch is an error).
    pub stream_digest: bool,
    /// Records of kinds this tool does not know.
    pub unknown_records: u64,
    /// Files described or carried by `ckpt --carry-files`.
    pub carried: Vec<crate::image::CarryFile>,
    /// For a delta (`cr-delta`): its base and what it takes from it.
    pub delta: Option<DeltaInfo>,
    /// Files of `/dev/shm` the tree maps or holds open (`POSIX_SHM`).
    pub posix_shm: Vec<crate::image::PosixShm>,
    /// POSIX message queues (`MQUEUE`).
    pub mqueues: Vec<crate::image::PosixMqueue>,
}

/// What a delta needs from its base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaInfo {
    pub base_stream_id: [u8; 16],
    pub base_digest: [u8; 32],
    /// Page units the delta takes from the base.
    pub base_units: u64,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ftype_name(t: u8) -> &'static str {
    use crate::image::*;
    match t {
        FT_REGULAR => "file",
        FT_DIRECTORY => "dir",
        FT_CHARDEV => "chr",
        FT_BLOCKDEV => "blk",
        FT_PIPE => "pipe",
        FT_FIFO => "fifo",
        FT_SOCKET => "socket",
        FT_PTY_MASTER => "ptmx",
        FT_PTY_SLAVE => "pts",
        FT_MEMFD => "memfd",
        FT_EVENTFD => "eventfd",
        FT_EPOLL => "epoll",
        FT_SIGNALFD => "signalfd",
        FT_TIMERFD => "timerfd",
        FT_INOTIFY => "inotify",
        FT_EXTERNAL => "external",
        FT_INET => "inet",
        FT_POSIX_SHM => "posixshm",
        FT_MQUEUE => "mqueue",
        FT_PIDFD => "pidfd",
        _ => "?",
    }
}

/// A TCP or UDP socket in a few words: `TCP listening on
/// 127.0.0.1:8080`, `TCP 127.0.0.1:8080 -> 127.0.0.1:4242, kept, 3 bytes
/// to send, 0 to read`.
pub fn inet_summary(s: &crate::image::InetSocket) -> String {
    let addr = |ip: &[u8], port: u32| match ip.len() {
        4 => format!("{}.{}.{}.{}:{port}", ip[0], ip[1], ip[2], ip[3]),
        16 => {
            let b: [u8; 16] = ip.try_into().expect("16 bytes");
            format!("[{}]:{port}", std::net::Ipv6Addr::from(b))
        }
        _ => "*".to_string(),
    };
    let proto = if s.stype == libc::SOCK_DGRAM as u32 {
        "UDP"
    } else {
        "TCP"
    };
    let local = addr(&s.local_addr, s.local_port);
    if s.repair {
        return format!(
            "{proto} {local} -> {}, kept, {} bytes to send, {} to read",
            addr(&s.peer_addr, s.peer_port),
            s.send_queue.len(),
            s.recv_queue.len()
        );
    }
    match (s.state, s.peer_addr.is_empty()) {
        (10, _) => format!("{proto} listening on {local}, backlog {}", s.backlog),
        (_, false) => format!("{proto} {local} -> {}", addr(&s.peer_addr, s.peer_port)),
        _ if s.local_port == 0 => format!("{proto} unbound"),
        _ => format!("{proto} bound to {local}"),
    }
}

/// An event file's state in a few words: `counter 5, semaphore`,
/// `2 targets: 3 events 0x19 data 0x1111, ...`, `clock 1, 20 ms left,
/// every 20 ms, 1 unread`, `signals 0x200`, `watch 1 /tmp (mask 0x100)`.
pub fn event_summary(ftype: u8, e: &EventFile) -> String {
    use crate::image::{FT_EPOLL, FT_EVENTFD, FT_INOTIFY, FT_SIGNALFD, FT_TIMERFD};
    let ms = |ns: u64| format!("{} ms", ns / 1_000_000);
    match ftype {
        FT_EVENTFD => format!(
            "counter {}{}",
            e.count,
            if e.semaphore { ", semaphore" } else { "" }
        ),
        FT_EPOLL => {
            let t: Vec<String> = e
                .targets
                .iter()
                .map(|t| format!("{} events {:#x} data {:#x}", t.tfd, t.events, t.data))
                .collect();
            format!("{}: {}", plural(t.len() as u64, "target"), t.join(", "))
        }
        FT_TIMERFD => {
            let mut s = format!("clock {}", e.clock);
            if e.value_ns > 0 {
                s += &format!(", {} left", ms(e.value_ns));
            }
            if e.interval_ns > 0 {
                s += &format!(", every {}", ms(e.interval_ns));
            }
            if e.ticks > 0 {
                s += &format!(", {} unread", e.ticks);
            }
            s
        }
        FT_SIGNALFD => format!("signals {:#x}", e.sigmask),
        FT_INOTIFY => {
            let w: Vec<String> = e
                .watches
                .iter()
                .map(|w| format!("watch {} {} (mask {:#x})", w.wd, lossy(&w.path), w.mask))
                .collect();
            w.join(", ")
        }
        _ => String::new(),
    }
}

fn state_name(s: u8) -> &'static str {
    match s {
        STATE_RUNNING => "running",
        STATE_STOPPED => "stopped",
        STATE_ZOMBIE => "zombie",
        _ => "?",
    }
}

fn known(kind: Kind) -> bool {
    kind.name() != "unknown"
}

/// The metadata records [`info`] reads, by kind.
#[derive(Default)]
struct Collected {
    procs: BTreeMap<u32, ProcInfo>,
    files: BTreeMap<u64, File>,
    fdtables: Vec<FdTable>,
    carried: Vec<crate::image::CarryFile>,
    posix_shm: Vec<crate::image::PosixShm>,
    mqueues: Vec<crate::image::PosixMqueue>,
    events: BTreeMap<u64, EventFile>,
    /// Inet socket id -> its one-line summary.
    inet: BTreeMap<u64, String>,
}

impl Collected {
    /// Takes one metadata record of a kind [`info`] reads.
    fn take(&mut self, kind: Kind, rec: &Record) -> Result<()> {
        match kind {
            Kind::PROCESS => {
                let p: Process = rec.decode()?;
                let e = self.procs.entry(p.pid).or_default();
                e.pid = p.pid;
                e.ppid = p.ppid;
                e.pgid = p.pgid;
                e.sid = p.sid;
                e.state = p.state;
                e.comm = lossy(&p.comm);
            }
            Kind::THREAD => {
                let t: Thread = rec.decode()?;
                self.procs.entry(t.pid).or_default().threads += 1;
            }
            Kind::MM => {
                let m: Mm = rec.decode()?;
                let e = self.procs.entry(m.pid).or_default();
                e.mappings += m.vmas.len() as u64;
                e.dumped_pages += m.vmas.iter().map(|v| v.dumped_pages).sum::<u64>();
                e.shared_pages += m.shared_pages;
            }
            Kind::FDTABLE => self.fdtables.push(rec.decode()?),
            Kind::CARRY_FILE => self.carried.push(rec.decode()?),
            Kind::POSIX_SHM => self.posix_shm.push(rec.decode()?),
            Kind::MQUEUE => self.mqueues.push(rec.decode()?),
            Kind::FILE => {
                let f: File = rec.decode()?;
                self.files.insert(f.id, f);
            }
            Kind::EVENT => {
                let e: EventFile = rec.decode()?;
                self.events.insert(e.file_id, e);
            }
            Kind::INET => {
                let s: crate::image::InetSocket = rec.decode()?;
                self.inet.insert(s.id, inet_summary(&s));
            }
            // Nothing else is listed (`info` decodes only the kinds above).
            _ => {}
        }
        Ok(())
    }
}

/// One process's descriptors as `cr-info` shows them.
fn fd_infos(
    t: &FdTable,
    files: &BTreeMap<u64, File>,
    events: &BTreeMap<u64, EventFile>,
    inet: &BTreeMap<u64, String>,
) -> Vec<FdInfo> {
    t.fds
        .iter()
        .map(|fd| {
            let f = files.get(&fd.file_id);
            FdInfo {
                fd: fd.fd,
                file_id: fd.file_id,
                ftype: f.map(|f| f.ftype),
                // The path, or for a pipe or socket what the kernel
                // calls it (`pipe:[1234]`).
                path: f
                    .map(|f| lossy(if f.path.is_empty() { &f.link } else { &f.path }))
                    .unwrap_or_default(),
                flags: f.map_or(0, |f| f.flags),
                mode: f.map_or(0, |f| f.mode),
                event: f.and_then(|f| match f.ftype {
                    crate::image::FT_INET => inet.get(&f.object_id).cloned(),
                    crate::image::FT_PIDFD => Some(format!("pid {}", f.object_id)),
                    t => Some(event_summary(t, events.get(&f.id)?)),
                }),
                locks: (t.locks.iter().filter(|l| l.fd == fd.fd))
                    .chain(f.iter().flat_map(|f| f.locks.iter()))
                    .map(|l| l.to_string())
                    .collect(),
            }
        })
        .collect()
}

/// Reads a whole image and summarises it.
pub fn info<R: Read>(input: R) -> Result<Info> {
    let mut reader = Reader::new(input)?;
    let mut kinds: BTreeMap<u16, KindCount> = BTreeMap::new();
    let mut digests = 0;
    let mut verified = 0;
    let mut count = |raw: &RawRecord, kinds: &mut BTreeMap<u16, KindCount>| {
        let k = kinds.entry(raw.head.kind.0).or_default();
        k.records += 1;
        k.stored += raw.head.stored_len as u64;
        k.raw += raw.head.raw_len as u64;
        k.compressed += raw.head.compressed() as u64;
        digests += raw.digest.is_some() as u64;
    };
    let header_raw = reader.header_raw().clone();
    count(&header_raw, &mut kinds);
    // Keyed digests (F_HMAC) cannot be verified without the key.
    let plain = |raw: &RawRecord| (raw.digest.is_some() && !raw.head.keyed()) as u64;
    verified += plain(&header_raw);

    let mut delta = (reader.header().flags & crate::image::HDR_DELTA != 0)
        .then(|| header_raw.payload().ok())
        .flatten()
        .and_then(|p| super::delta::delta_base(&p))
        .map(|b| DeltaInfo {
            base_stream_id: b.base_stream_id,
            base_digest: b.base_digest,
            base_units: 0,
        });
    let mut meta = Collected::default();
    while let Some(raw) = reader.next_raw()? {
        count(&raw, &mut kinds);
        let kind = raw.head.kind;
        if let (Kind::DELTA_PAGES, Some(d)) = (kind, delta.as_mut()) {
            d.base_units += super::delta::base_units(&raw.decode()?.payload);
        }
        if !matches!(
            kind,
            Kind::PROCESS
                | Kind::THREAD
                | Kind::MM
                | Kind::FDTABLE
                | Kind::FILE
                | Kind::EVENT
                | Kind::INET
                | Kind::CARRY_FILE
                | Kind::POSIX_SHM
                | Kind::MQUEUE
        ) {
            continue;
        }
        // Decoding checks the digest.
        let rec = raw.decode()?;
        verified += plain(&raw);
        meta.take(kind, &rec)?;
    }
    let end = reader
        .end()
        .expect("the reader stops only at the end record");
    // The end record itself: header and payload, as the reader saw it.
    let end_len = reader.bytes_read() - end.bytes;
    let ek = kinds.entry(Kind::END.0).or_default();
    ek.records += 1;
    let end_payload = end_len - HEAD_LEN as u64 - if reader.end_has_digest() { 32 } else { 0 };
    ek.stored += end_payload;
    ek.raw += end_payload;
    if reader.end_has_digest() {
        digests += 1;
        verified += reader.end_raw().map_or(0, plain);
    }
    let Collected {
        mut procs,
        files,
        fdtables,
        carried,
        posix_shm,
        mqueues,
        events,
        inet,
    } = meta;
    for t in fdtables {
        let fds = fd_infos(&t, &files, &events, &inet);
        procs.entry(t.pid).or_default().fds = fds;
    }
    let stored_bytes = reader.bytes_read();
    let (mut stored_payload, mut raw_payload) = (0, 0);
    let (mut bulk, mut compressed, mut unknown) = (0, 0, 0);
    for (&k, c) in &kinds {
        stored_payload += c.stored;
        raw_payload += c.raw;
        compressed += c.compressed;
        if Kind(k).is_bulk() {
            bulk += c.records;
        }
        if !known(Kind(k)) {
            unknown += c.records;
        }
    }
    let mut processes: Vec<ProcInfo> = procs.into_values().collect();
    // Parents before children, as the tree is built.
    processes.sort_by_key(|p| (p.ppid != 0, p.pid));
    Ok(Info {
        header: reader.header().clone(),
        processes,
        records: end.records + 1,
        kinds,
        stored_bytes,
        raw_bytes: stored_bytes - stored_payload + raw_payload,
        bulk_records: bulk,
        compressed_records: compressed,
        digests,
        digests_verified: verified,
        stream_digest: end.stream_digest.is_some(),
        unknown_records: unknown,
        carried,
        delta,
        posix_shm,
        mqueues,
    })
}

fn human(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn kind_label(k: u16) -> String {
    let kind = Kind(k);
    if known(kind) {
        kind.name().to_string()
    } else {
        format!("unknown-{k:#06x}")
    }
}

impl Info {
    /// Bytes of memory contents the image holds for a process.
    pub fn memory_bytes(&self, p: &ProcInfo) -> u64 {
        p.dumped_pages * self.header.page_size as u64
    }

    /// Whether a process's parent is in the image (not so for the root).
    pub fn parent_in_image(&self, p: &ProcInfo) -> bool {
        self.processes.iter().any(|q| q.pid == p.ppid)
    }

    /// `raw / stored`, 1 for an empty stream.
    pub fn ratio(&self) -> f64 {
        if self.stored_bytes == 0 {
            1.0
        } else {
            self.raw_bytes as f64 / self.stored_bytes as f64
        }
    }

    /// The summary as JSON (`cr-info --json`).
    pub fn to_json(&self) -> Value {
        let h = &self.header;
        let kinds: serde_json::Map<String, Value> = self
            .kinds
            .iter()
            .map(|(&k, c)| {
                (
                    kind_label(k),
                    json!({"kind": k, "records": c.records, "stored_bytes": c.stored,
                           "raw_bytes": c.raw, "compressed": c.compressed}),
                )
            })
            .collect();
        let procs: Vec<Value> = self
            .processes
            .iter()
            .map(|p| {
                json!({
                    "pid": p.pid, "ppid": p.ppid, "pgid": p.pgid, "sid": p.sid,
                    "state": state_name(p.state), "comm": p.comm, "threads": p.threads,
                    "mappings": p.mappings, "dumped_pages": p.dumped_pages,
                    "shared_pages": p.shared_pages,
                    "memory_bytes": self.memory_bytes(p),
                    "parent_in_image": self.parent_in_image(p),
                    "fds": p.fds.iter().map(|f| {
                        let mut v = json!({
                            "fd": f.fd, "file_id": f.file_id,
                            "type": f.ftype.map(ftype_name), "path": f.path, "locks": f.locks,
                        });
                        if let Some(e) = &f.event {
                            v["event"] = json!(e);
                        }
                        if let Some((what, to)) = f.external() {
                            v["external"] = json!({
                                "kind": what, "restart_fd": to, "becomes": stdio_name(to),
                                "detached": crate::image::EXTERNAL_DETACHED,
                            });
                        }
                        v
                    }).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "format": format!("{}.{}", h.format_major, h.format_minor),
            "arch": h.arch, "page_size": h.page_size, "kernel": h.kernel, "tool": h.tool,
            "stream_id": hex(&h.stream_id), "created": h.created,
            "created_local": local_time(h.created), "root_pid": h.root_pid,
            "processes": procs,
            "carried_files": self.carried.iter().map(|c| json!({
                "path": lossy(&c.path), "size": c.size, "carried": c.carried,
                "sha256": hex(&c.sha256), "build_id": hex(&c.build_id),
            })).collect::<Vec<_>>(),
            "posix_shm": self.posix_shm.iter().map(|p| json!({
                "path": format!("/dev/shm/{}", lossy(&p.name)), "size": p.size,
                "mode": format!("{:04o}", p.mode), "uid": p.uid, "gid": p.gid,
                "sha256": hex(&p.sha256),
            })).collect::<Vec<_>>(),
            "mqueues": self.mqueues.iter().map(|q| json!({
                "name": format!("/{}", lossy(&q.name)), "unlinked": q.deleted,
                "mode": format!("{:04o}", q.mode), "uid": q.uid, "gid": q.gid,
                "maxmsg": q.maxmsg, "msgsize": q.msgsize,
                "messages": q.messages.len(),
                "priorities": q.messages.iter().map(|m| m.prio).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "records": self.records,
            "kinds": kinds,
            "unknown_records": self.unknown_records,
            "stored_bytes": self.stored_bytes,
            "raw_bytes": self.raw_bytes,
            "compression": {
                "bulk_records": self.bulk_records,
                "compressed_records": self.compressed_records,
                "ratio": self.ratio(),
            },
            "delta": self.delta.as_ref().map(|d| json!({
                "base_stream_id": hex(&d.base_stream_id),
                "base_digest": hex(&d.base_digest),
                "base_pages": d.base_units,
            })),
            "checksums": {
                "crc32c_verified": self.records,
                "digests": self.digests,
                "digests_verified": self.digests_verified,
                "stream_digest": self.stream_digest,
            },
        })
    }
}

impl fmt::Display for Info {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_header(f)?;
        self.fmt_processes(f)?;
        self.fmt_files(f)?;
        self.fmt_objects(f)
    }
}

/// The sections of `cr-info`'s text output, in order.
impl Info {
    /// The image's header, size, checksums and record counts.
    fn fmt_header(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.header;
        writeln!(
            f,
            "image:       format {}.{}, {}, page size {}, kernel {}",
            h.format_major, h.format_minor, h.arch, h.page_size, h.kernel
        )?;
        writeln!(
            f,
            "written by:  {}, created {}, root pid {}",
            h.tool,
            local_time(h.created),
            h.root_pid
        )?;
        writeln!(f, "stream id:   {}", hex(&h.stream_id))?;
        if let Some(d) = &self.delta {
            writeln!(
                f,
                "delta:       against stream {} (digest {}), {} from it; \
                 cr-delta --apply BASE rebuilds the full image",
                hex(&d.base_stream_id),
                hex(&d.base_digest),
                plural(d.base_units, "page"),
            )?;
        }
        writeln!(
            f,
            "size:        {} stored, {} raw ({:.2}x)",
            human(self.stored_bytes),
            human(self.raw_bytes),
            self.ratio()
        )?;
        writeln!(
            f,
            "compression: {} of {} bulk records zstd",
            self.compressed_records, self.bulk_records
        )?;
        let stream = if self.stream_digest {
            "stream digest verified"
        } else {
            "no stream digest"
        };
        writeln!(
            f,
            "checksums:   CRC32C verified on all {} records; SHA-256 digests on {}, {} verified \
             (metadata; bulk digests: cr-sum --check); {stream}",
            self.records, self.digests, self.digests_verified
        )?;
        let kinds: Vec<String> = self
            .kinds
            .iter()
            .map(|(&k, c)| format!("{} {}", kind_label(k), c.records))
            .collect();
        writeln!(f, "records:     {} ({})", self.records, kinds.join(", "))?;
        if self.unknown_records > 0 {
            writeln!(
                f,
                "             {} of unknown kinds (passed on by filters)",
                plural(self.unknown_records, "record")
            )?;
        }
        Ok(())
    }

    /// The process table (and what is shared copy-on-write).
    fn fmt_processes(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "processes:   {}", self.processes.len())?;
        let sharing: Vec<&ProcInfo> = self
            .processes
            .iter()
            .filter(|p| p.shared_pages > 0)
            .collect();
        if !sharing.is_empty() {
            let pages: u64 = sharing.iter().map(|p| p.shared_pages).sum();
            writeln!(
                f,
                "shared:      {} copy-on-write with their parents in {} (written once, restored by fork)",
                human(pages * self.header.page_size as u64),
                match sharing.len() {
                    1 => "1 process".to_string(),
                    n => format!("{n} processes"),
                }
            )?;
        }
        writeln!(
            f,
            "  {:>7} {:>9} {:>7} {:>7} {:<8} {:>4} {:>5} {:>9} {:>10} {:>4}  COMM",
            "PID", "PPID", "PGID", "SID", "STATE", "THR", "MAPS", "PAGES", "MEMORY", "FDS"
        )?;
        for p in &self.processes {
            writeln!(
                f,
                "  {:>7} {:>9} {:>7} {:>7} {:<8} {:>4} {:>5} {:>9} {:>10} {:>4}  {}",
                p.pid,
                if self.parent_in_image(p) {
                    p.ppid.to_string()
                } else {
                    "(outside)".to_string()
                },
                p.pgid,
                p.sid,
                state_name(p.state),
                p.threads,
                p.mappings,
                p.dumped_pages,
                human(self.memory_bytes(p)),
                p.fds.len(),
                p.comm
            )?;
        }
        Ok(())
    }

    /// Each process's descriptors.
    fn fmt_files(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in self.processes.iter().filter(|p| !p.fds.is_empty()) {
            writeln!(f, "files of {}:", p.pid)?;
            for fd in &p.fds {
                write!(
                    f,
                    "  {:>4} {:<8} {}",
                    fd.fd,
                    fd.ftype.map_or("?", ftype_name),
                    fd.path
                )?;
                if let Some(e) = &fd.event {
                    write!(f, " ({e})")?;
                }
                if let Some((what, to)) = fd.external() {
                    write!(
                        f,
                        " (a {what} outside the image: becomes cr-restart's {}, {} with --detach, or --fd {}=...)",
                        stdio_name(to),
                        crate::image::EXTERNAL_DETACHED,
                        fd.fd
                    )?;
                }
                writeln!(f)?;
                for l in &fd.locks {
                    writeln!(f, "              {l}")?;
                }
            }
        }
        Ok(())
    }

    /// POSIX shared memory, message queues and carried files.
    fn fmt_objects(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.posix_shm.is_empty() {
            writeln!(f, "POSIX shared memory (restored in /dev/shm by name):")?;
        }
        for p in &self.posix_shm {
            writeln!(
                f,
                "  {:>10} /dev/shm/{} (mode {:04o}, uid {} gid {})",
                human(p.size),
                lossy(&p.name),
                p.mode,
                p.uid,
                p.gid
            )?;
        }
        if !self.mqueues.is_empty() {
            writeln!(f, "POSIX message queues:")?;
        }
        for q in &self.mqueues {
            writeln!(
                f,
                "  /{}{}: {} (maxmsg {}, msgsize {}), mode {:04o}, uid {} gid {}",
                lossy(&q.name),
                if q.deleted { " (unlinked)" } else { "" },
                plural(q.messages.len() as u64, "message"),
                q.maxmsg,
                q.msgsize,
                q.mode,
                q.uid,
                q.gid
            )?;
        }
        if !self.carried.is_empty() {
            writeln!(f, "carried files (ckpt --carry-files):")?;
        }
        for c in &self.carried {
            let what = if c.carried {
                "carried"
            } else {
                "described only"
            };
            write!(f, "  {:>10} {:<14} {}", human(c.size), what, lossy(&c.path))?;
            if !c.build_id.is_empty() {
                write!(f, " (build id {})", hex(&c.build_id))?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
