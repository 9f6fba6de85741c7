//! Batched remote syscalls: a list of syscalls run inside a stopped tracee
//! with one resume and one trap.
//!
//! The tracee executes [`LOOP`], a fixed, hand-written x86_64 loop of 53
//! bytes (every instruction commented below, its bytes checked by a unit
//! test): it walks a list of [`ENTRY`]-byte entries (syscall number, six
//! arguments, result slot), runs each with `syscall`, stores `rax` in the
//! entry's result slot, stops at the first result in -4095..-1, and traps
//! (`int3`) once at the end. All the logic stays here, in the tracer: a
//! [`Batch`] is built in safe Rust (arguments may point into the batch's
//! own data, resolved to scratch addresses when it is laid out), written
//! with one `process_vm_writev`, the thread's registers are pointed at the
//! loop, it is resumed with `PTRACE_CONT` until the trap, and the entries
//! and data are read back with one `process_vm_readv` ([`Outcome`]).
//!
//! Registers and signal mask are those of the [`Remote`] session, which
//! puts them back on every path (its `Drop`).
//!
//! Where the loop lives: the restorer's trampoline page (restart) or a page
//! `ckpt` injects for the duration of the checkpoint ([`Injected`]), mapped
//! and unmapped with the one-at-a-time engine.

use std::borrow::BorrowMut;

use nix::errno::Errno;

use super::ids::{Pid, Tid};
use super::ptrace::{Resume, Stop, Stopped};
use super::remote::{Remote, RemoteError, Result, name_of, nr};

/// The loop the tracee runs. On entry `rbx` points at the first entry and
/// `rbp` just past the last; on the trap `rbx` points at the entry that
/// failed, or equals `rbp` when every entry ran. `rax`, `rcx`, `r11`, the
/// six argument registers and `rbx` are clobbered (the session restores
/// them all).
pub const LOOP: [u8; 53] = [
    0x48, 0x39, 0xeb, //       0: cmp rbx, rbp          ; past the last entry?
    0x73, 0x2f, //             3: jae 52 (done)
    0x48, 0x8b, 0x03, //       5: mov rax, [rbx]        ; syscall number
    0x48, 0x8b, 0x7b, 0x08, // 8: mov rdi, [rbx+8]      ; argument 1
    0x48, 0x8b, 0x73, 0x10, // 12: mov rsi, [rbx+16]    ; argument 2
    0x48, 0x8b, 0x53, 0x18, // 16: mov rdx, [rbx+24]    ; argument 3
    0x4c, 0x8b, 0x53, 0x20, // 20: mov r10, [rbx+32]    ; argument 4
    0x4c, 0x8b, 0x43, 0x28, // 24: mov r8, [rbx+40]     ; argument 5
    0x4c, 0x8b, 0x4b, 0x30, // 28: mov r9, [rbx+48]     ; argument 6
    0x0f, 0x05, //             32: syscall
    0x48, 0x89, 0x43, 0x38, // 34: mov [rbx+56], rax    ; result slot
    0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff, // 38: cmp rax, -4095
    0x73, 0x06, //             44: jae 52 (done)        ; -4095..-1: stop here
    0x48, 0x83, 0xc3, 0x40, // 46: add rbx, 64          ; next entry
    0xeb, 0xcc, //             50: jmp 0
    0xcc, //                   52: done: int3
];

/// Offset of the final `int3` in [`LOOP`].
pub const LOOP_TRAP: u64 = 52;

/// Bytes of one entry: number, six arguments, result.
pub const ENTRY: usize = 64;

/// An argument of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    /// A plain value.
    Val(u64),
    /// The address of a piece of the batch's data, plus an offset.
    Data(DataRef, u64),
}

impl From<u64> for Arg {
    fn from(v: u64) -> Arg {
        Arg::Val(v)
    }
}

impl From<DataRef> for Arg {
    fn from(d: DataRef) -> Arg {
        Arg::Data(d, 0)
    }
}

/// A piece of a batch's data: its offset in the data area and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRef {
    off: usize,
    len: usize,
}

#[derive(Debug, Clone)]
struct Entry {
    nr: i64,
    args: [Arg; 6],
    /// What the caller calls this step, for error messages.
    what: Option<String>,
}

/// A list of syscalls and the data they point at, built before it runs.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    entries: Vec<Entry>,
    data: Vec<u8>,
    /// `(offset in data, piece)`: the 8 bytes there become the piece's
    /// address when the batch is laid out ([`Batch::point`]).
    pointers: Vec<(usize, DataRef)>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes the batch takes in scratch memory: entries, then data.
    pub fn size(&self) -> usize {
        self.entries.len() * ENTRY + self.data.len()
    }

    /// Copies `bytes` into the batch's data (16-byte aligned).
    pub fn data(&mut self, bytes: &[u8]) -> DataRef {
        let off = self.data.len();
        self.data.extend_from_slice(bytes);
        self.data.resize((self.data.len() + 15) & !15, 0);
        DataRef {
            off,
            len: bytes.len(),
        }
    }

    /// A NUL-terminated string in the batch's data.
    pub fn cstr(&mut self, s: &[u8]) -> DataRef {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s);
        v.push(0);
        self.data(&v)
    }

    /// `len` zeroed bytes for a syscall to fill, read back in the [`Outcome`].
    pub fn out(&mut self, len: usize) -> DataRef {
        self.data(&vec![0; len])
    }

    /// Makes the 8 bytes at `at` in `d` the address of `target` (a
    /// pointer inside a structure the batch passes), once laid out.
    pub fn point(&mut self, d: DataRef, at: usize, target: DataRef) {
        assert!(at + 8 <= d.len, "a pointer inside its structure");
        self.pointers.push((d.off + at, target));
    }

    /// Adds a syscall; returns its index.
    pub fn push(&mut self, nr: i64, args: &[Arg]) -> usize {
        let mut a = [Arg::Val(0); 6];
        for (d, s) in a.iter_mut().zip(args) {
            *d = *s;
        }
        self.entries.push(Entry {
            nr,
            args: a,
            what: None,
        });
        self.entries.len() - 1
    }

    /// Adds a syscall whose failure is reported as `what: <error>`.
    pub fn push_as(&mut self, what: impl Into<String>, nr: i64, args: &[Arg]) -> usize {
        let i = self.push(nr, args);
        self.entries[i].what = Some(what.into());
        i
    }

    /// Adds a syscall with plain values only.
    pub fn call(&mut self, nr: i64, args: &[u64]) -> usize {
        let a: Vec<Arg> = args.iter().map(|&v| Arg::Val(v)).collect();
        self.push(nr, &a)
    }

    /// Adds every entry of `other` (and its data) after this batch's own;
    /// returns the index the first of them gets.
    pub fn append(&mut self, other: &Batch) -> usize {
        let first = self.entries.len();
        let shift = self.data.len();
        self.data.extend_from_slice(&other.data);
        for &(at, d) in &other.pointers {
            let d = DataRef {
                off: d.off + shift,
                ..d
            };
            self.pointers.push((at + shift, d));
        }
        for e in &other.entries {
            let mut e = e.clone();
            for a in e.args.iter_mut() {
                if let Arg::Data(d, _) = a {
                    d.off += shift;
                }
            }
            self.entries.push(e);
        }
        first
    }

    /// A batch of entry `i` alone (with all of this batch's data).
    pub fn single(&self, i: usize) -> Batch {
        Batch {
            entries: self.entries.get(i).cloned().into_iter().collect(),
            data: self.data.clone(),
            pointers: self.pointers.clone(),
        }
    }

    /// The bytes written at `base`: entries (result slots zero), then data,
    /// with every [`Arg::Data`] resolved to its address.
    pub fn layout(&self, base: u64) -> Vec<u8> {
        let data_at = base + (self.entries.len() * ENTRY) as u64;
        let mut out = Vec::with_capacity(self.size());
        for e in &self.entries {
            out.extend_from_slice(&(e.nr as u64).to_le_bytes());
            for a in e.args {
                let v = match a {
                    Arg::Val(v) => v,
                    Arg::Data(d, plus) => data_at + d.off as u64 + plus,
                };
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&0u64.to_le_bytes());
        }
        let data_start = out.len();
        out.extend_from_slice(&self.data);
        for &(at, d) in &self.pointers {
            let addr = data_at + d.off as u64;
            out[data_start + at..data_start + at + 8].copy_from_slice(&addr.to_le_bytes());
        }
        out
    }

    /// Decodes what the loop left: `ran` is how many entries it started
    /// (the failed one included), `area` the bytes read back from `base`.
    pub fn decode(&self, ran: usize, area: &[u8]) -> Outcome {
        let n = self.entries.len();
        let word = |at: usize| {
            area.get(at..at + 8)
                .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        };
        let ran = ran.min(n);
        // The loop stops on the failed entry without counting it; count it.
        let mut results: Vec<i64> = (0..ran).map(|i| word(i * ENTRY + 56) as i64).collect();
        let mut failed = None;
        if ran < n {
            let r = word(ran * ENTRY + 56) as i64;
            results.push(r);
            if (-4095..0).contains(&r) {
                failed = Some(ran);
            }
        }
        Outcome {
            results,
            failed,
            total: n,
            data: area.get(n * ENTRY..).unwrap_or(&[]).to_vec(),
        }
    }

    /// The error for entry `i` failing with `errno` in thread `tid`.
    pub fn error_for(&self, i: usize, tid: Tid, errno: Errno) -> RemoteError {
        let e = &self.entries[i];
        RemoteError::Syscall {
            name: match &e.what {
                Some(w) => format!("{w}: {}", name_of(e.nr)),
                None => name_of(e.nr),
            },
            tid,
            errno,
        }
    }
}

/// The process whose memory thread `tid` uses: `process_vm_*` and
/// `/proc/N/mem` take any of its threads' ids.
fn memory_of(tid: Tid) -> Pid {
    Pid::from_raw(tid.as_raw())
}

/// What a batch left behind.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Results of the entries that ran, in order (the failed one last).
    results: Vec<i64>,
    failed: Option<usize>,
    total: usize,
    data: Vec<u8>,
}

impl Outcome {
    /// The raw result of entry `i`, if it ran.
    pub fn result(&self, i: usize) -> Option<i64> {
        self.results.get(i).copied()
    }

    /// The index and errno of the entry that failed, if one did.
    pub fn failed(&self) -> Option<(usize, Errno)> {
        self.failed
            .map(|i| (i, Errno::from_raw(-self.results[i] as i32)))
    }

    /// Whether every entry ran and succeeded.
    pub fn all_ran(&self) -> bool {
        self.failed.is_none() && self.results.len() == self.total
    }

    /// The bytes of a piece of data after the batch ran.
    pub fn bytes(&self, d: DataRef) -> &[u8] {
        self.data.get(d.off..d.off + d.len).unwrap_or(&[])
    }

    /// The data as little-endian u64 words.
    pub fn words(&self, d: DataRef) -> Vec<u64> {
        self.bytes(d)
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect()
    }
}

/// Where a batch runs: the loop's address and scratch memory for the list.
#[derive(Debug, Clone, Copy)]
pub struct Place {
    /// Address of [`LOOP`] in the tracee.
    pub code: u64,
    /// Scratch memory: start and length.
    pub scratch: u64,
    pub scratch_len: u64,
}

impl<T: BorrowMut<Stopped>> Remote<T> {
    /// Runs `batch` at `place` and returns what it left, even when an entry
    /// failed (see [`Outcome::failed`]); `Err` only when the thread could
    /// not be run (it died, a ptrace request failed, the list does not
    /// fit).
    pub fn run_batch(&mut self, place: Place, batch: &Batch) -> Result<Outcome> {
        let tid = self.tid();
        if batch.is_empty() {
            return Ok(batch.decode(0, &[]));
        }
        if batch.size() as u64 > place.scratch_len {
            return Err(RemoteError::TooLarge {
                tid,
                size: batch.size(),
            });
        }
        let bytes = batch.layout(place.scratch);
        let mut memf = None;
        super::mem::write_all(memory_of(tid), place.scratch, &bytes, &mut memf).map_err(|e| {
            RemoteError::Memory {
                tid,
                errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            }
        })?;
        let mut r = *self.saved_regs();
        r.rip = place.code;
        r.rbx = place.scratch;
        r.rbp = place.scratch + (batch.len() * ENTRY) as u64;
        r.rax = 0;
        // The kernel must not apply syscall-restart logic to these registers.
        r.orig_rax = u64::MAX;
        self.set_regs(&r)?;
        let in_loop = place.code..place.code + LOOP.len() as u64;
        let out = loop {
            self.resume_until(Resume::Cont, |s| s == Stop::Signal(libc::SIGTRAP))?;
            let out = self.regs()?;
            if out.rip == place.code + LOOP_TRAP + 1 {
                break out;
            }
            if !in_loop.contains(&out.rip) {
                return Err(RemoteError::Unexpected {
                    tid,
                    stop: Stop::Signal(libc::SIGTRAP),
                });
            }
            // A SIGTRAP sent from elsewhere (see `Remote::let_traps_through`)
            // stopped the loop on its way: deliver it later and go on.
            self.defer(libc::SIGTRAP);
        };
        let ran = out.rbx.saturating_sub(place.scratch) as usize / ENTRY;
        let mut area = vec![0u8; bytes.len()];
        super::mem::read_exact(memory_of(tid), place.scratch, &mut area, &mut memf).map_err(
            |e| RemoteError::Memory {
                tid,
                errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            },
        )?;
        Ok(batch.decode(ran, &area))
    }

    /// Runs `batch` and turns a failed entry into an error naming it.
    pub fn run_checked(&mut self, place: Place, batch: &Batch) -> Result<Outcome> {
        let o = self.run_batch(place, batch)?;
        if let Some((i, errno)) = o.failed() {
            return Err(batch.error_for(i, self.tid(), errno));
        }
        Ok(o)
    }
}

/// A page `ckpt` maps in a process for the duration of a checkpoint: the
/// loop in its first half, scratch memory for lists in the rest. Mapped and
/// unmapped with one-at-a-time remote syscalls; [`Injected::remove`] must
/// run before the session ends (the caller does it on every path).
#[derive(Debug)]
pub struct Injected {
    pub addr: u64,
    pub len: u64,
}

/// Bytes of an injected region: one page of code, then scratch.
pub const INJECTED_LEN: u64 = 4 * 4096;

impl Injected {
    /// Maps the region anywhere free and writes [`LOOP`] to its first
    /// page: read-write-execute in one syscall, or, where the kernel
    /// refuses writable code (an LSM's `execmem`), read-write with the
    /// first page made read-execute after the write.
    pub fn map<T: BorrowMut<Stopped>>(r: &mut Remote<T>) -> Result<Injected> {
        let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        let args = |prot: u64| {
            [
                0,
                INJECTED_LEN,
                prot,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ]
        };
        let (addr, split) = match r.call(nr::MMAP, &args(rw | libc::PROT_EXEC as u64)) {
            Ok(a) => (a, false),
            Err(RemoteError::Syscall { errno, .. })
                if errno == Errno::EACCES || errno == Errno::EPERM =>
            {
                (r.call(nr::MMAP, &args(rw))?, true)
            }
            Err(e) => return Err(e),
        };
        let inj = Injected {
            addr,
            len: INJECTED_LEN,
        };
        let tid = r.tid();
        let mut memf = None;
        let res = super::mem::write_all(memory_of(tid), addr, &LOOP, &mut memf)
            .map_err(|e| RemoteError::Memory {
                tid,
                errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })
            .and_then(|_| {
                if split {
                    let rx = (libc::PROT_READ | libc::PROT_EXEC) as u64;
                    r.call(nr::MPROTECT, &[addr, 4096, rx]).map(|_| ())
                } else {
                    Ok(())
                }
            });
        if let Err(e) = res {
            let _ = inj.remove(r);
            return Err(e);
        }
        Ok(inj)
    }

    pub fn place(&self) -> Place {
        Place {
            code: self.addr,
            scratch: self.addr + 4096,
            scratch_len: self.len - 4096,
        }
    }

    /// Unmaps the region.
    pub fn remove<T: BorrowMut<Stopped>>(self, r: &mut Remote<T>) -> Result<()> {
        r.call(nr::MUNMAP, &[self.addr, self.len]).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loop's bytes, instruction by instruction, against an independent
    /// encoding (Intel SDM: REX.W = 0x48, REX.WR = 0x4c; ModRM mod/reg/rm).
    #[test]
    fn loop_bytes() {
        let modrm = |md: u8, reg: u8, rm: u8| (md << 6) | (reg << 3) | rm;
        let (rax, rdx, rbx, rbp, rsi, rdi) = (0, 2, 3, 5, 6, 7);
        let mut want: Vec<u8> = Vec::new();
        want.extend([0x48, 0x39, modrm(3, rbp, rbx)]); // cmp rbx, rbp
        want.extend([0x73, 0]); // jae done (patched below)
        want.extend([0x48, 0x8b, modrm(0, rax, rbx)]); // mov rax, [rbx]
        for (rex, reg, disp) in [
            (0x48, rdi, 8),
            (0x48, rsi, 16),
            (0x48, rdx, 24),
            (0x4c, 2, 32), // r10
            (0x4c, 0, 40), // r8
            (0x4c, 1, 48), // r9
        ] {
            want.extend([rex, 0x8b, modrm(1, reg, rbx), disp]);
        }
        let sys_at = want.len();
        want.extend([0x0f, 0x05]); // syscall
        want.extend([0x48, 0x89, modrm(1, rax, rbx), 56]); // mov [rbx+56], rax
        want.extend([0x48, 0x3d]); // cmp rax, imm32
        want.extend((-4095i32).to_le_bytes());
        let jae2 = want.len();
        want.extend([0x73, 0]);
        want.extend([0x48, 0x83, modrm(3, 0, rbx), ENTRY as u8]); // add rbx, 64
        let jmp = want.len();
        want.extend([0xeb, 0]);
        let done = want.len();
        want.push(0xcc); // int3
        want[4] = (done - 5) as u8;
        want[jae2 + 1] = (done - (jae2 + 2)) as u8;
        want[jmp + 1] = (-((jmp + 2) as i64)) as u8;
        assert_eq!(LOOP.as_slice(), want.as_slice());
        assert_eq!(sys_at, 32);
        assert_eq!(done as u64, LOOP_TRAP);
        assert_eq!(ENTRY, 8 * 8);
    }

    #[test]
    fn layout_resolves_data_and_decode_reads_results() {
        let mut b = Batch::new();
        let path = b.cstr(b"/x");
        let out = b.out(16);
        b.push(
            nr::OPENAT,
            &[Arg::Val(-100i64 as u64), path.into(), Arg::Val(0)],
        );
        b.push(nr::SIGALTSTACK, &[Arg::Val(0), Arg::Data(out, 8)]);
        b.call(nr::GETPID, &[]);
        assert_eq!(b.size(), 3 * ENTRY + 16 + 16);
        let base = 0x1000;
        let bytes = b.layout(base);
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        let data_at = base + 3 * ENTRY as u64;
        assert_eq!(word(0), nr::OPENAT as u64);
        assert_eq!(word(8), -100i64 as u64);
        assert_eq!(word(16), data_at);
        assert_eq!(word(ENTRY + 16), data_at + 16 + 8);
        assert_eq!(word(2 * ENTRY), nr::GETPID as u64);
        assert_eq!(&bytes[3 * ENTRY..3 * ENTRY + 3], b"/x\0");

        // All ran: results from the slots, data read back.
        let mut area = bytes.clone();
        area[56..64].copy_from_slice(&5u64.to_le_bytes());
        area[ENTRY + 56..ENTRY + 64].copy_from_slice(&0u64.to_le_bytes());
        area[2 * ENTRY + 56..2 * ENTRY + 64].copy_from_slice(&77u64.to_le_bytes());
        area[3 * ENTRY + 16..3 * ENTRY + 24].copy_from_slice(&9u64.to_le_bytes());
        let o = b.decode(3, &area);
        assert!(o.all_ran());
        assert_eq!(o.result(0), Some(5));
        assert_eq!(o.result(2), Some(77));
        assert_eq!(o.words(out), vec![9, 0]);

        // The second failed: the loop stopped on it.
        area[ENTRY + 56..ENTRY + 64].copy_from_slice(&(-14i64 as u64).to_le_bytes());
        let o = b.decode(1, &area);
        assert!(!o.all_ran());
        assert_eq!(o.failed(), Some((1, Errno::EFAULT)));
        assert_eq!(o.result(2), None);
        let e = b.error_for(1, Tid::from_raw(42), Errno::EFAULT).to_string();
        assert_eq!(e, "sigaltstack in process 42: EFAULT: Bad address");
    }

    #[test]
    fn append_moves_data_references() {
        let mut a = Batch::new();
        let x = a.cstr(b"/a");
        a.push(nr::OPENAT, &[Arg::Val(0), x.into()]);
        let mut b = Batch::new();
        let y = b.cstr(b"/bb");
        b.push(nr::OPENAT, &[Arg::Val(0), Arg::Data(y, 1)]);
        b.call(nr::GETPID, &[]);
        assert_eq!(a.append(&b), 1);
        assert_eq!(a.len(), 3);
        let base = 0x1000;
        let bytes = a.layout(base);
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        let data_at = base + 3 * ENTRY as u64;
        assert_eq!(word(16), data_at);
        assert_eq!(word(ENTRY + 16), data_at + 16 + 1);
        assert_eq!(&bytes[3 * ENTRY + 16..3 * ENTRY + 20], b"/bb\0");
        assert_eq!(word(2 * ENTRY), nr::GETPID as u64);
    }

    #[test]
    fn pointers_inside_data_are_resolved_and_moved() {
        let mut a = Batch::new();
        a.cstr(b"pad");
        let mut b = Batch::new();
        let target = b.data(&[1, 2, 3, 4]);
        let s = b.data(&[0u8; 24]);
        b.point(s, 8, target);
        b.push(nr::PRCTL, &[Arg::Val(35), s.into()]);
        a.append(&b);
        let base = 0x2000;
        let bytes = a.layout(base);
        let data_at = base + ENTRY as u64;
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        // pad (16), target (16), then the structure.
        assert_eq!(word(16), data_at + 32);
        assert_eq!(word(ENTRY + 32 + 8), data_at + 16);
        assert_eq!(word(ENTRY + 32), 0);
    }

    #[test]
    fn empty_batch_decodes_to_nothing() {
        let b = Batch::new();
        let o = b.decode(0, &[]);
        assert!(o.all_ran());
        assert_eq!(o.result(0), None);
    }
}
