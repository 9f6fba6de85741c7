//! Synthetic images for tests, fuzz seeds and benchmarks: a few processes
//! with threads, many mappings, open files, and page data cut into
//! [`CHUNK`]-sized `PAGES` records. Deterministic for a given [`Spec`].
//!
//! Not part of the supported API: it exists so that `tests/`, `benches/`
//! and `fuzz/` build images without a live process to checkpoint.

use std::io::Write;

use super::records::*;
use super::stream::{CHUNK, WriteOptions, Writer};
use super::wire::List;
use super::{ImageError, Result};

/// A tiny deterministic PRNG (xorshift64*), good enough for test data.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        // Zero is a fixed point of xorshift; mix the seed so 0 works too.
        XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

/// What the pages of a synthetic image contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// A mix of zero, random and repetitive pages, as real memory has.
    Mixed,
    /// Incompressible data.
    Random,
    /// All zeros.
    Zero,
}

/// The shape of a synthetic image.
#[derive(Debug, Clone)]
pub struct Spec {
    pub seed: u64,
    pub processes: u32,
    /// Threads per process.
    pub threads: u32,
    /// Mappings per process.
    pub mappings: u32,
    /// Open files per process.
    pub files: u32,
    /// Total bytes of page data, shared among the processes (rounded to pages).
    pub data: u64,
    pub fill: Fill,
    /// Add a `BLOB` (contents of a deleted file) and a `ZERO` record.
    pub extras: bool,
    /// Add a record of an unknown optional kind (`0x8001`), which every
    /// filter must pass on untouched.
    pub unknown: bool,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            seed: 1,
            processes: 3,
            threads: 2,
            mappings: 24,
            files: 4,
            data: 4 << 20,
            fill: Fill::Mixed,
            extras: true,
            unknown: true,
        }
    }
}

const PAGE: u64 = 4096;

impl Spec {
    /// A small image shape, for tests that need many images.
    pub fn small(seed: u64, data: u64) -> Self {
        Spec {
            seed,
            processes: 2,
            threads: 2,
            mappings: 6,
            files: 2,
            data,
            ..Spec::default()
        }
    }
}

fn fill_page(rng: &mut XorShift, fill: Fill, page: &mut [u8]) {
    let what = match fill {
        Fill::Random => 1,
        Fill::Zero => 0,
        Fill::Mixed => rng.below(3),
    };
    match what {
        0 => page.fill(0),
        1 => rng.fill(page),
        _ => {
            // A short pattern repeated, like a table or a text buffer.
            let mut pat = [0u8; 24];
            rng.fill(&mut pat);
            let n = 1 + rng.below(pat.len() as u64) as usize;
            for (i, b) in page.iter_mut().enumerate() {
                *b = pat[i % n];
            }
        }
    }
}

/// Writes a synthetic image to `out` and returns it.
pub fn write<W: Write>(out: W, spec: &Spec, opts: WriteOptions) -> Result<W> {
    if spec.processes == 0 {
        return Err(ImageError::Usage(
            "a synthetic image needs a process".into(),
        ));
    }
    let mut rng = XorShift::new(spec.seed);
    let mut stream_id = [0u8; 16];
    rng.fill(&mut stream_id);
    let header = StreamHeader {
        created: 1_700_000_000 + spec.seed,
        root_pid: 1000,
        xstate_size: 2696,
        ..synth_header(stream_id, 0)
    };
    let mut w = Writer::new(out, &header, opts)?;
    // Shared objects before the records that refer to them.
    write_files(&mut w, &mut rng, spec)?;
    // Pages and mappings of each process: (pid, [(start, pages)]).
    let mut layout: Vec<(u32, Vec<(u64, u64)>)> = Vec::new();
    let mut next_file = 1u64;
    for i in 0..spec.processes {
        layout.push(write_process(&mut w, &mut rng, spec, i, &mut next_file)?);
    }
    // Bulk data last.
    write_pages(&mut w, &mut rng, spec, &layout)?;
    if spec.extras {
        write_extras(&mut w)?;
    }
    if spec.unknown {
        w.write_record(Kind(0x8001), b"an optional record from a newer writer")?;
    }
    w.finish()
}

/// The pid of the `i`th synthetic process.
fn pid_of(i: u32) -> u32 {
    1000 + i * 10
}

/// `spec.files` FILE records per process, ids counting from 1.
fn write_files<W: Write>(w: &mut Writer<W>, rng: &mut XorShift, spec: &Spec) -> Result<()> {
    let mut file_id = 1u64;
    for i in 0..spec.processes {
        for f in 0..spec.files {
            let deleted = spec.extras && i == 0 && f == 0;
            w.write(
                Kind::FILE,
                &File {
                    id: file_id,
                    ftype: if f % 3 == 2 { FT_PIPE } else { FT_REGULAR },
                    flags: if f == 0 { 0 } else { 0o2 },
                    pos: rng.below(1 << 20),
                    path: format!("/tmp/synth/{i}/file-{f}").into_bytes(),
                    mode: 0o100644,
                    size: if deleted { 10_000 } else { rng.below(1 << 24) },
                    dev: 0x801,
                    ino: 5000 + file_id,
                    deleted,
                    link: format!("/tmp/synth/{i}/file-{f}").into_bytes(),
                    ..File::default()
                },
            )?;
            file_id += 1;
        }
    }
    Ok(())
}

/// The `i`th process's PROCESS, THREAD, MM and FDTABLE records; returns
/// its pid and the ranges whose pages [`write_pages`] fills.
fn write_process<W: Write>(
    w: &mut Writer<W>,
    rng: &mut XorShift,
    spec: &Spec,
    i: u32,
    next_file: &mut u64,
) -> Result<(u32, Vec<(u64, u64)>)> {
    let pid = pid_of(i);
    let ppid = if i == 0 { 0 } else { pid_of(0) };
    let tids: Vec<u32> = (0..spec.threads.max(1)).map(|t| pid + t).collect();
    w.write(
        Kind::PROCESS,
        &Process {
            pid,
            ppid,
            pgid: pid_of(0),
            sid: pid_of(0),
            state: if i == 2 { STATE_STOPPED } else { STATE_RUNNING },
            exit_signal: 17,
            comm: format!("synth-{i}").into_bytes(),
            exe: b"/usr/bin/synth".to_vec(),
            cwd: b"/tmp".to_vec(),
            root: b"/".to_vec(),
            cmdline: format!("synth\0--worker\0{i}\0").into_bytes(),
            umask: 0o022,
            rlimits: List(
                (0..16)
                    .map(|r| Rlimit {
                        resource: r,
                        cur: u64::MAX,
                        max: u64::MAX,
                    })
                    .collect(),
            ),
            tids: List(tids.clone()),
            dumpable: 1,
            ..Process::default()
        },
    )?;
    for &tid in &tids {
        let mut regs = vec![0u8; 27 * 8];
        rng.fill(&mut regs);
        w.write(
            Kind::THREAD,
            &Thread {
                pid,
                tid,
                regs,
                xstate: vec![0u8; 2696],
                comm: format!("synth-{i}").into_bytes(),
                rseq: Some(Rseq {
                    addr: 0x7f00_0000_0000 + tid as u64 * 0x1000,
                    len: 32,
                    flags: 0,
                    sig: 0x5305_3053,
                }),
                ..Thread::default()
            },
        )?;
    }
    let (vmas, dumped, brk) = layout_mappings(rng, spec, i);
    w.write(
        Kind::MM,
        &Mm {
            pid,
            start_code: 0x5555_0000_0000,
            brk,
            start_brk: brk,
            start_stack: 0x7ffc_0000_0000,
            auxv: vec![0u8; 16],
            vmas: List(vmas),
            ..Mm::default()
        },
    )?;
    let fds: Vec<Fd> = (0..spec.files)
        .map(|f| {
            let fd = Fd {
                fd: f + 3,
                cloexec: f % 2 == 1,
                file_id: *next_file,
            };
            *next_file += 1;
            fd
        })
        .collect();
    w.write(
        Kind::FDTABLE,
        &FdTable {
            pid,
            fds: List(fds),
            ..Default::default()
        },
    )?;
    Ok((pid, dumped))
}

/// Process `i`'s share of the pages spread over its mappings: the VMAs,
/// the dumped ranges `(start, pages)`, and the address after the last.
fn layout_mappings(rng: &mut XorShift, spec: &Spec, i: u32) -> (Vec<Vma>, Vec<(u64, u64)>, u64) {
    let pages_total = spec.data.div_ceil(PAGE);
    let procs = spec.processes as u64;
    let mine = pages_total / procs + u64::from((i as u64) < pages_total % procs);
    let nmaps = spec.mappings.max(1) as u64;
    let mut vmas = Vec::new();
    let mut dumped = Vec::new();
    let mut addr = 0x5555_0000_0000u64;
    for m in 0..nmaps {
        let pages = mine / nmaps + u64::from(m < mine % nmaps);
        let len = (pages + 1 + rng.below(4)) * PAGE;
        let file = m % 4 == 1;
        vmas.push(Vma {
            start: addr,
            end: addr + len,
            prot: if file { 5 } else { 3 },
            flags: 0,
            backing: if file { VMA_FILE } else { VMA_ANON },
            pgoff: 0,
            path: if file {
                format!("/usr/lib/libsynth{m}.so").into_bytes()
            } else {
                Vec::new()
            },
            dev: if file { 0x801 } else { 0 },
            ino: if file { 100 + m } else { 0 },
            dumped_pages: pages,
            ..Vma::default()
        });
        if pages > 0 {
            dumped.push((addr, pages));
        }
        addr += len + PAGE * (1 + rng.below(16));
    }
    (vmas, dumped, addr)
}

/// PAGES records for every dumped range, at most `CHUNK` bytes each.
fn write_pages<W: Write>(
    w: &mut Writer<W>,
    rng: &mut XorShift,
    spec: &Spec,
    layout: &[(u32, Vec<(u64, u64)>)],
) -> Result<()> {
    let mut buf = vec![0u8; CHUNK];
    for (pid, maps) in layout {
        for &(start, pages) in maps {
            let mut done = 0u64;
            while done < pages {
                let n = (pages - done).min((CHUNK as u64) / PAGE);
                let data = &mut buf[..(n * PAGE) as usize];
                for page in data.chunks_mut(PAGE as usize) {
                    fill_page(rng, spec.fill, page);
                }
                let prefix = DataPrefix {
                    space: SPACE_PROCESS,
                    flags: 0,
                    id: *pid as u64,
                    addr: start + done * PAGE,
                };
                w.write_parts(Kind::PAGES, &[&prefix.to_bytes(), data])?;
                done += n;
            }
        }
    }
    Ok(())
}

/// A ZERO record and the deleted file's contents as a BLOB.
fn write_extras<W: Write>(w: &mut Writer<W>) -> Result<()> {
    let zero = DataPrefix {
        space: SPACE_PROCESS,
        flags: 0,
        id: pid_of(0) as u64,
        addr: 0x7f00_0000_0000,
    };
    let mut payload = zero.to_bytes().to_vec();
    payload.extend_from_slice(&(64 * PAGE).to_le_bytes());
    w.write_record(Kind::ZERO, &payload)?;
    let blob = DataPrefix {
        space: SPACE_FILE,
        flags: 0,
        id: 1,
        addr: 0,
    };
    let mut text = Vec::new();
    while text.len() < 10_000 {
        text.extend_from_slice(b"deleted file contents, line after line\n");
    }
    text.truncate(10_000);
    w.write_parts(Kind::BLOB, &[&blob.to_bytes(), &text])
}

/// A synthetic image in memory.
pub fn generate(spec: &Spec) -> Vec<u8> {
    write(Vec::new(), spec, WriteOptions::default()).expect("writing to a Vec cannot fail")
}

/// Builds a valid stream from arbitrary bytes, so that fuzzers reach the
/// transforms with streams that parse. The first byte chooses options
/// (bit 0: digests); then each record is `selector:u8 len:u16` and up to
/// `len` payload bytes.
pub fn from_recipe(data: &[u8]) -> Vec<u8> {
    let (&opts, mut rest) = data.split_first().unwrap_or((&0, &[]));
    let mut stream_id = [0u8; 16];
    for (i, b) in data.iter().take(64).enumerate() {
        stream_id[i % 16] ^= b.rotate_left(i as u32 % 8);
    }
    let header = StreamHeader {
        format_major: FORMAT_MAJOR,
        format_minor: FORMAT_MINOR,
        arch: "x86_64".into(),
        page_size: PAGE as u32,
        stream_id,
        ..StreamHeader::default()
    };
    let opts = WriteOptions {
        digest: opts & 1 != 0,
    };
    let mut w = Writer::new(Vec::new(), &header, opts).expect("Vec");
    while rest.len() >= 3 {
        let sel = rest[0];
        let len = (u16::from_le_bytes([rest[1], rest[2]]) as usize).min(rest.len() - 3);
        let payload = &rest[3..3 + len];
        rest = &rest[3 + len..];
        let id = payload
            .iter()
            .fold(0u32, |a, &b| a.wrapping_mul(31) ^ b as u32);
        let res = match sel % 8 {
            0 => w.write_record(Kind::PAGES, payload),
            1 => w.write_record(Kind::BLOB, payload),
            2 => w.write_record(Kind::PAGES, &payload.repeat(64)),
            3 => w.write(
                Kind::PROCESS,
                &Process {
                    pid: id,
                    ppid: sel as u32,
                    comm: payload.to_vec(),
                    ..Process::default()
                },
            ),
            4 => w.write_record(Kind(Kind::FIRST_OPTIONAL + sel as u16), payload),
            5 => w.write(
                Kind::FILE,
                &File {
                    id: id as u64,
                    path: payload.to_vec(),
                    ..File::default()
                },
            ),
            6 => w.write(
                Kind::THREAD,
                &Thread {
                    pid: id,
                    tid: id.wrapping_add(1),
                    regs: payload.to_vec(),
                    ..Thread::default()
                },
            ),
            _ => w.write(
                Kind::MM,
                &Mm {
                    pid: id,
                    vmas: List(
                        payload
                            .chunks(8)
                            .map(|c| Vma {
                                start: c[0] as u64 * PAGE,
                                dumped_pages: c.len() as u64,
                                ..Vma::default()
                            })
                            .collect(),
                    ),
                    ..Mm::default()
                },
            ),
        };
        res.expect("recipe records are within limits");
    }
    w.finish().expect("Vec")
}

/// One process of a synthetic tree for [`tree`].
#[derive(Debug, Clone, Default)]
pub struct TreeProc {
    pub pid: u32,
    /// 0 for the root.
    pub ppid: u32,
    pub pgid: u32,
    pub sid: u32,
    /// A zombie has no threads, memory or descriptors.
    pub zombie: bool,
    /// Threads besides the main one; their tids follow the pid.
    pub extra_threads: u32,
    /// `(descriptor, file id)`; a file id used by several descriptors is
    /// one shared open file.
    pub fds: Vec<(u32, u64)>,
    /// Its controlling terminal was outside the image (a shell's job).
    pub outside_tty: bool,
}

/// The header every synthetic image shares; callers override what differs.
fn synth_header(stream_id: [u8; 16], flags: u32) -> StreamHeader {
    StreamHeader {
        format_major: FORMAT_MAJOR,
        format_minor: FORMAT_MINOR,
        arch: "x86_64".into(),
        page_size: PAGE as u32,
        kernel: "6.1.0-synthetic".into(),
        tool: concat!("crtools ", env!("CARGO_PKG_VERSION"), " (synth)").into(),
        stream_id,
        created: 1_700_000_000,
        root_pid: 0,
        flags,
        xstate_size: 0,
    }
}

/// The metadata of a process tree of the given shape, as a complete image
/// without page data (header flags `flags`, e.g. `HDR_PIDNS_INIT`): what
/// restore planning reads, for its unit tests and fuzz target.
pub fn tree(procs: &[TreeProc], flags: u32) -> Vec<u8> {
    const OK: &str = "writing to a Vec cannot fail";
    let header = StreamHeader {
        root_pid: procs.first().map_or(0, |p| p.pid),
        ..synth_header([7; 16], flags)
    };
    let mut w = Writer::new(Vec::new(), &header, WriteOptions::default()).expect(OK);
    let mut ids: Vec<u64> = procs
        .iter()
        .flat_map(|p| p.fds.iter().map(|&(_, id)| id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        let path = format!("/tmp/synth/file-{id}").into_bytes();
        let f = File {
            id,
            ftype: FT_REGULAR,
            path: path.clone(),
            link: path,
            mode: 0o100644,
            ..File::default()
        };
        w.write(Kind::FILE, &f).expect(OK);
    }
    for (i, tp) in procs.iter().enumerate() {
        let p = Process {
            pid: tp.pid,
            ppid: tp.ppid,
            pgid: tp.pgid,
            sid: tp.sid,
            state: if tp.zombie {
                STATE_ZOMBIE
            } else {
                STATE_RUNNING
            },
            exit_status: if tp.zombie { 3 << 8 } else { 0 },
            exit_signal: 17,
            comm: format!("tree-{i}").into_bytes(),
            cwd: b"/".to_vec(),
            root: b"/".to_vec(),
            umask: 0o022,
            outside_tty: tp.outside_tty,
            ..Process::default()
        };
        w.write(Kind::PROCESS, &p).expect(OK);
        if tp.zombie {
            continue;
        }
        for t in 0..=tp.extra_threads {
            let th = Thread {
                pid: tp.pid,
                tid: tp.pid + t,
                regs: vec![0u8; 27 * 8],
                ..Thread::default()
            };
            w.write(Kind::THREAD, &th).expect(OK);
        }
        let base = 0x5555_0000_0000u64 + i as u64 * 0x10_0000;
        let mm = Mm {
            pid: tp.pid,
            vmas: List(vec![Vma {
                start: base,
                end: base + 4 * PAGE,
                prot: 3,
                backing: VMA_ANON,
                ..Vma::default()
            }]),
            ..Mm::default()
        };
        w.write(Kind::MM, &mm).expect(OK);
        let fds = tp
            .fds
            .iter()
            .map(|&(fd, file_id)| Fd {
                fd,
                cloexec: false,
                file_id,
            })
            .collect();
        w.write(
            Kind::FDTABLE,
            &FdTable {
                pid: tp.pid,
                fds: List(fds),
                ..Default::default()
            },
        )
        .expect(OK);
    }
    w.finish().expect(OK)
}
