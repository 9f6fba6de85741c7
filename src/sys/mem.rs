//! Reading and writing another process's memory: `process_vm_readv` /
//! `process_vm_writev` in large batches, `/proc/PID/mem` where those refuse
//! (`PROT_NONE` or read-only pages).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::ids::Pid;

/// Whether `page` is all zero bytes (compared in u64 words).
pub fn is_zero(page: &[u8]) -> bool {
    let (pre, words, post) = {
        // SAFETY: any byte pattern is a valid u64; align_to only splits the
        // slice at alignment boundaries.
        unsafe { page.align_to::<u64>() }
    };
    pre.iter().all(|&b| b == 0) && words.iter().all(|&w| w == 0) && post.iter().all(|&b| b == 0)
}

/// Largest number of iovecs one `process_vm_*v` call takes (`UIO_MAXIOV`).
pub const IOV_MAX: usize = 1024;

/// Reads `buf.len()` bytes at `addr` of process `pid`; returns how many were read.
pub fn read_vm(pid: impl Into<Pid>, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
    let pid: Pid = pid.into();
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` describes `buf`, valid for writes of its length; the
    // remote iovec is only interpreted in the other process.
    let n = unsafe { libc::process_vm_readv(pid.as_raw(), &local, 1, &remote, 1, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Reads exactly `buf.len()` bytes, falling back to `/proc/PID/mem` for
/// what `process_vm_readv` cannot read.
pub fn read_exact(
    pid: impl Into<Pid>,
    addr: u64,
    buf: &mut [u8],
    mem: &mut Option<File>,
) -> io::Result<()> {
    let pid: Pid = pid.into();
    let mut done = 0;
    while done < buf.len() {
        match read_vm(pid, addr + done as u64, &mut buf[done..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => done += n,
        }
    }
    if done < buf.len() {
        let f = proc_mem(pid, mem, false)?;
        f.read_exact_at(&mut buf[done..], addr + done as u64)?;
    }
    Ok(())
}

/// Writes all of `data` at `addr` of process `pid`, falling back to
/// `/proc/PID/mem` (which writes through read-only private mappings).
pub fn write_all(
    pid: impl Into<Pid>,
    addr: u64,
    data: &[u8],
    mem: &mut Option<File>,
) -> io::Result<()> {
    let pid: Pid = pid.into();
    let mut done = 0;
    while done < data.len() {
        let local = libc::iovec {
            iov_base: data[done..].as_ptr() as *mut libc::c_void,
            iov_len: data.len() - done,
        };
        let remote = libc::iovec {
            iov_base: (addr + done as u64) as *mut libc::c_void,
            iov_len: data.len() - done,
        };
        // SAFETY: `local` describes a live slice that the kernel only reads.
        let n = unsafe { libc::process_vm_writev(pid.as_raw(), &local, 1, &remote, 1, 0) };
        if n <= 0 {
            break;
        }
        done += n as usize;
    }
    if done < data.len() {
        let f = proc_mem(pid, mem, true)?;
        f.write_all_at(&data[done..], addr + done as u64)?;
    }
    Ok(())
}

/// Writes many `(address, bytes)` pieces with as few syscalls as possible.
pub fn write_batch(
    pid: impl Into<Pid>,
    pieces: &[(u64, &[u8])],
    mem: &mut Option<File>,
) -> io::Result<()> {
    let pid: Pid = pid.into();
    for chunk in pieces.chunks(IOV_MAX) {
        let local: Vec<libc::iovec> = chunk
            .iter()
            .map(|(_, d)| libc::iovec {
                iov_base: d.as_ptr() as *mut libc::c_void,
                iov_len: d.len(),
            })
            .collect();
        let remote: Vec<libc::iovec> = chunk
            .iter()
            .map(|(a, d)| libc::iovec {
                iov_base: *a as *mut libc::c_void,
                iov_len: d.len(),
            })
            .collect();
        let total: usize = chunk.iter().map(|(_, d)| d.len()).sum();
        // SAFETY: every local iovec describes a live slice the kernel only reads.
        let n = unsafe {
            libc::process_vm_writev(
                pid.as_raw(),
                local.as_ptr(),
                local.len() as libc::c_ulong,
                remote.as_ptr(),
                remote.len() as libc::c_ulong,
                0,
            )
        };
        if n < 0 || n as usize != total {
            // Partial or refused: redo piece by piece with the fallback.
            for (a, d) in chunk {
                write_all(pid, *a, d, mem)?;
            }
        }
    }
    Ok(())
}

fn proc_mem(pid: Pid, cache: &mut Option<File>, write: bool) -> io::Result<&File> {
    if cache.is_none() {
        let path = format!("/proc/{pid}/mem");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path);
        let f = match f {
            Ok(f) => f,
            Err(_) if !write => File::open(&path)?,
            Err(e) => return Err(e),
        };
        *cache = Some(f);
    }
    Ok(cache.as_ref().expect("just set"))
}
