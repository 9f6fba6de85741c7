//! Rebuilding a stopped process's address space (contents come later,
//! from [`super::bulk`]): drop glibc's rseq, move the kernel's vDSO and
//! vvar to the image's addresses, unmap the rest, then carry out the
//! plan's [`MapStep`]s with remote syscalls.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};

use super::files::OpenFiles;
use super::meta::{MmImage, VmaImage};
use super::plan::{MapStep, ProcPlan};
use super::space::{self, Builder, Special};
use super::{Building, ipc};
use crate::error::{Error, Result};
use crate::image::{self, Backing, Fault, MappingFault};
use crate::sys::batch::{Arg, Batch};
use crate::sys::remote::nr;

/// What the mappings of every process may refer to.
pub(crate) struct MapSources<'a> {
    /// The restorer's memfds of the shared memory objects, by id.
    pub shm_fds: &'a HashMap<u64, OwnedFd>,
    pub open: &'a OpenFiles,
    /// Sizes of the SysV segments, by id.
    pub sysv_sizes: &'a HashMap<u64, u64>,
    /// Files mapped by processes with other credentials, opened with theirs.
    pub mapped: &'a super::asuser::MappedFiles,
}

/// Replaces a stopped process's address space with the image's mappings
/// and records which ranges its page data may fill.
pub(crate) fn rebuild_space(
    bp: &mut Building,
    pp: &ProcPlan,
    specials: &[Special],
    src: &MapSources,
) -> Result<()> {
    let mm = &bp.pi.mm;
    let want: Vec<_> = mm
        .vmas
        .iter()
        .filter(|v| match v.backing {
            Backing::Vdso | Backing::Vvar | Backing::VvarVclock => true,
            // vsyscall is at a fixed address in every process.
            Backing::Vsyscall
            | Backing::Anon
            | Backing::File
            | Backing::SharedAnon
            | Backing::SysvShm => false,
        })
        .collect();
    // rseq dropped, specials moved, the rest unmapped: the first entries
    // of the batch that maps the image's VMAs.
    let mut clear = Batch::new();
    bp.b.push_clear_space(&mut clear, specials, &want, &pp.cow.keep)?;
    bp.writable = map_vmas(
        &mut bp.b,
        bp.pi.p.pid,
        mm,
        &pp.map,
        &pp.cow.keep,
        src,
        clear,
    )?;
    Ok(())
}

/// Carries out `steps` over the VMAs of `mm` after the entries of `clear`;
/// returns the ranges whose contents may be written. One batch for a
/// usual process: `clear`, the files opened (each path and mode once, at
/// the descriptor numbers the process's table says they get, checked
/// after), every step, the closes. A list too long for the scratch area
/// runs as `clear`, the opens, then the steps in as many batches as needed.
fn map_vmas(
    b: &mut Builder,
    image_pid: u32,
    mm: &MmImage,
    steps: &[MapStep],
    keep: &[(u64, u64)],
    src: &MapSources,
    clear: Batch,
) -> Result<Vec<(u64, u64)>> {
    let vma = |i: usize| -> Result<&VmaImage> {
        mm.vmas.get(i).ok_or_else(|| {
            Error::msg(format!(
                "restore plan names mapping {i} of {image_pid}, which it lacks"
            ))
        })
    };
    // The files, opened in the process once per path and mode.
    let mut keys: Vec<FileKey> = Vec::new();
    let mut open = Batch::new();
    for &step in steps {
        if let MapStep::Map { vma: i } = step {
            let v = vma(i)?;
            if let Some(key) = file_key(image_pid, v, src)?
                && !keys.contains(&key)
            {
                let at = open.cstr(&key.0);
                let mode = if key.1 { libc::O_RDWR } else { libc::O_RDONLY };
                open.push_as(
                    format!(
                        "cannot map {} at {:#x} in pid {}",
                        String::from_utf8_lossy(&v.path),
                        v.start,
                        b.pid
                    ),
                    nr::OPENAT,
                    &[
                        Arg::Val(libc::AT_FDCWD as u64),
                        at.into(),
                        Arg::Val(mode as u64),
                        Arg::Val(0),
                    ],
                );
                keys.push(key);
            }
        }
    }
    if let Some(fds) = space::free_fds(b.pid, keys.len()) {
        let remote_fds: HashMap<FileKey, u64> = keys.iter().cloned().zip(fds.clone()).collect();
        let mut all = clear.clone();
        let first_open = all.append(&open);
        let writable = push_steps(
            &mut all,
            b.pid,
            image_pid,
            mm,
            steps,
            keep,
            &remote_fds,
            src,
            &mut |_| Ok(()),
        )?;
        if all.size() as u64 <= space::SCRATCH_LEN / 2 {
            let o = b.batch(&all)?;
            for (i, &fd) in fds.iter().enumerate() {
                let got = o.result(first_open + i);
                if got != Some(fd as i64) {
                    return Err(Error::msg(format!(
                        "cannot restore the mappings of pid {image_pid}: a file meant for descriptor {fd} was opened as {got:?}"
                    )));
                }
            }
            return Ok(writable);
        }
    }
    b.batch(&clear)?;
    let mut remote_fds: HashMap<FileKey, u64> = HashMap::new();
    for chunk in split(&open, keys) {
        let (bt, ks) = chunk;
        let o = b.batch(&bt)?;
        for (i, k) in ks.into_iter().enumerate() {
            remote_fds.insert(k, o.result(i).unwrap_or(-1) as u64);
        }
    }
    let mut bt = Batch::new();
    let writable = push_steps(
        &mut bt,
        b.pid,
        image_pid,
        mm,
        steps,
        keep,
        &remote_fds,
        src,
        &mut |bt| {
            if bt.size() as u64 > space::SCRATCH_LEN / 2 {
                b.batch(bt)?;
                *bt = Batch::new();
            }
            Ok(())
        },
    )?;
    b.batch(&bt)?;
    Ok(writable)
}

/// Adds `steps` and the closes of `remote_fds` to `bt`, calling `flush`
/// after each step (it may run and empty `bt`); returns the ranges whose
/// contents may be written.
#[allow(clippy::too_many_arguments)]
fn push_steps(
    bt: &mut Batch,
    pid: crate::sys::ids::Pid,
    image_pid: u32,
    mm: &MmImage,
    steps: &[MapStep],
    keep: &[(u64, u64)],
    remote_fds: &HashMap<FileKey, u64>,
    src: &MapSources,
    flush: &mut dyn FnMut(&mut Batch) -> Result<()>,
) -> Result<Vec<(u64, u64)>> {
    let vma = |i: usize| -> Result<&VmaImage> {
        mm.vmas.get(i).ok_or_else(|| {
            Error::msg(format!(
                "restore plan names mapping {i} of {image_pid}, which it lacks"
            ))
        })
    };
    let mut writable = Vec::new();
    for &step in steps {
        match step {
            MapStep::Attach {
                segment,
                at,
                vma: i,
            } => {
                let v = vma(i)?;
                let flags = ipc::attach_flags(v.prot, v.flags & image::VMA_F_MAYWRITE != 0);
                bt.push_as(
                    format!("cannot attach SysV segment {segment} at {at:#x} in pid {pid}"),
                    nr::SHMAT,
                    &[Arg::Val(segment), Arg::Val(at), Arg::Val(flags as u64)],
                );
            }
            MapStep::Protect { vma: i } => {
                let v = vma(i)?;
                bt.call(nr::MPROTECT, &[v.start, v.end - v.start, v.prot as u64]);
            }
            MapStep::Trim { segment, at } => {
                trim_attachment(bt, image_pid, mm, segment, at, src)?;
            }
            MapStep::Map { vma: i } => {
                let v = vma(i)?;
                let kept = image::ranges::clip(&[(v.start, v.end)], keep, true);
                if kept.is_empty() {
                    map_one(bt, pid, image_pid, v, remote_fds, src)?;
                } else {
                    // Inherited copy-on-write and in place: map the rest,
                    // give the kept parts their protection.
                    for (s, e) in image::ranges::clip(&[(v.start, v.end)], keep, false) {
                        let part = v.part(s, e);
                        map_one(bt, pid, image_pid, &part, remote_fds, src)?;
                    }
                    let prot = space::build_prot(v) as u64;
                    for (s, e) in kept {
                        bt.call(nr::MPROTECT, &[s, e - s, prot]);
                    }
                }
                if v.dumped_pages > 0 || v.flags & image::VMA_F_INHERITED != 0 {
                    writable.push((v.start, v.end));
                }
            }
        }
        flush(bt)?;
    }
    let mut fds: Vec<u64> = remote_fds.values().copied().collect();
    fds.sort_unstable();
    for fd in fds {
        bt.call(nr::CLOSE, &[fd]);
    }
    Ok(writable)
}

/// Splits a batch of opens (one per key) into pieces the scratch area holds.
/// A file as a process opens it for its mappings: the path, read-write or not.
type FileKey = (Vec<u8>, bool);

fn split(open: &Batch, keys: Vec<FileKey>) -> Vec<(Batch, Vec<FileKey>)> {
    if open.size() as u64 <= space::SCRATCH_LEN / 2 {
        return vec![(open.clone(), keys)];
    }
    // Rare (hundreds of mapped files): one open a batch.
    let mut out = Vec::new();
    for (i, k) in keys.into_iter().enumerate() {
        out.push((open.single(i), vec![k]));
    }
    out
}

/// Unmaps what a SysV attachment at `at` covers beyond the pieces the
/// image has of it.
fn trim_attachment(
    bt: &mut Batch,
    image_pid: u32,
    mm: &MmImage,
    segment: u64,
    at: u64,
    src: &MapSources,
) -> Result<()> {
    let size = *src.sysv_sizes.get(&segment).ok_or(Fault::Mapping {
        pid: image_pid,
        start: at,
        end: at,
        why: MappingFault::MissingSysvSegment,
    })?;
    let len = (size + space::PAGE - 1) & !(space::PAGE - 1);
    let mut pos = at;
    let mut pieces: Vec<(u64, u64)> = mm
        .vmas
        .iter()
        .filter(|v| {
            v.backing == Backing::SysvShm && v.shmem_id == segment && v.start - v.pgoff == at
        })
        .map(|v| (v.start, v.end))
        .collect();
    pieces.sort_unstable();
    for (s, e) in pieces.into_iter().chain([(at + len, at + len)]) {
        if s > pos {
            bt.call(nr::MUNMAP, &[pos, s - pos]);
        }
        pos = pos.max(e);
    }
    Ok(())
}

/// The path (and whether read-write) a file-backed VMA is opened by in
/// the process; `None` for anonymous memory.
fn file_key(image_pid: u32, v: &VmaImage, src: &MapSources) -> Result<Option<FileKey>> {
    let me = std::process::id();
    let path: Vec<u8> = match v.backing {
        Backing::SharedAnon => {
            let fd = src.shm_fds.get(&v.shmem_id).ok_or_else(|| {
                Error::msg(format!(
                    "cannot map {:#x}-{:#x}: shared memory {} was not created",
                    v.start, v.end, v.shmem_id
                ))
            })?;
            format!("/proc/{me}/fd/{}", fd.as_raw_fd()).into_bytes()
        }
        Backing::File => {
            if let Some(fd) = (v.file_id != 0)
                .then(|| src.open.blob_target(v.file_id))
                .flatten()
                .or_else(|| src.mapped.get(image_pid, &v.path, super::asuser::map_rw(v)))
            {
                format!("/proc/{me}/fd/{fd}").into_bytes()
            } else {
                v.path.clone()
            }
        }
        Backing::Anon
        | Backing::Vdso
        | Backing::Vvar
        | Backing::VvarVclock
        | Backing::Vsyscall
        | Backing::SysvShm => return Ok(None),
    };
    Ok(Some((path, super::asuser::map_rw(v))))
}

/// Adds the mmap of one VMA to `bt`; its file was opened as `remote_fds` says.
fn map_one(
    bt: &mut Batch,
    pid: crate::sys::ids::Pid,
    image_pid: u32,
    v: &VmaImage,
    remote_fds: &HashMap<FileKey, u64>,
    src: &MapSources,
) -> Result<()> {
    let prot = space::build_prot(v) as u64;
    let shared = v.flags & image::VMA_F_SHARED != 0;
    let mut flags = libc::MAP_FIXED as u64
        | if shared {
            libc::MAP_SHARED
        } else {
            libc::MAP_PRIVATE
        } as u64;
    if v.flags & image::VMA_F_GROWSDOWN != 0 {
        flags |= libc::MAP_GROWSDOWN as u64;
    }
    let len = v.end - v.start;
    let (fd, off) = match v.backing {
        Backing::Anon => {
            flags |= libc::MAP_ANONYMOUS as u64;
            (u64::MAX, 0)
        }
        Backing::File | Backing::SharedAnon => {
            let key = file_key(image_pid, v, src)?.expect("a file mapping has a key");
            let fd = *remote_fds
                .get(&key)
                .expect("every mapped file was opened first");
            (fd, v.pgoff)
        }
        // The plan maps none of these (`plan::map_steps`): the kernel's
        // own are moved, SysV segments attached.
        Backing::Vdso
        | Backing::Vvar
        | Backing::VvarVclock
        | Backing::Vsyscall
        | Backing::SysvShm => {
            return Err(Error::msg(format!(
                "cannot restore mapping {:#x}-{:#x}: a {} mapping is not made by mmap",
                v.start,
                v.end,
                v.backing.name()
            )));
        }
    };
    bt.push_as(
        format!("cannot map {:#x}-{:#x} in pid {pid}", v.start, v.end),
        nr::MMAP,
        &[
            Arg::Val(v.start),
            Arg::Val(len),
            Arg::Val(prot),
            Arg::Val(flags),
            Arg::Val(fd),
            Arg::Val(off),
        ],
    );
    Ok(())
}
