//! Memory for what forked children read, kept apart from the heap.
//!
//! [`Arena`] copies plain data into anonymous mappings of its own (never the
//! brk heap) and hands out slices of it; [`HeapNoFork`] keeps the calling
//! process's brk heap out of the children forked while it lives
//! (`MADV_DONTFORK`). Together they let the restorer fork its tree without
//! handing each new process a copy of its whole heap: every page of it is a
//! page-table entry `fork` copies and the new process's first `munmap`
//! tears down again (4.5 MiB, 1 200 entries a process, for a tree of 256).

use std::cell::RefCell;

/// Bytes of one chunk unless a single value needs more.
const CHUNK: usize = 64 << 10;

/// A mapped chunk: `ptr..ptr + len`, of which `used` bytes are handed out.
struct Chunk {
    ptr: *mut u8,
    len: usize,
    used: usize,
}

/// Bump-allocated copies of `Copy` data in mappings of its own, unmapped
/// when the arena is dropped. Slices it returns never move.
#[derive(Default)]
pub struct Arena {
    chunks: RefCell<Vec<Chunk>>,
}

impl Arena {
    pub fn new() -> Arena {
        Arena::default()
    }

    /// Room for `len` bytes aligned to `align` (a power of two).
    fn room(&self, len: usize, align: usize) -> std::io::Result<*mut u8> {
        let mut chunks = self.chunks.borrow_mut();
        if let Some(c) = chunks.last_mut() {
            let at = (c.used + align - 1) & !(align - 1);
            if at + len <= c.len {
                c.used = at + len;
                // SAFETY: `at + len <= c.len`: inside the chunk's mapping.
                return Ok(unsafe { c.ptr.add(at) });
            }
        }
        let size = (len + align).max(CHUNK).next_multiple_of(4096);
        // SAFETY: a new private anonymous mapping, owned by this arena.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // Page-aligned: any `align` up to a page holds at offset 0.
        chunks.push(Chunk {
            ptr: p.cast(),
            len: size,
            used: len,
        });
        Ok(p.cast())
    }

    /// A copy of `s` in the arena.
    pub fn put<T: Copy>(&self, s: &[T]) -> std::io::Result<&[T]> {
        let bytes = std::mem::size_of_val(s);
        if bytes == 0 {
            return Ok(&[]);
        }
        let align = std::mem::align_of::<T>();
        if align > 4096 {
            return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
        }
        let p = self.room(bytes, align)?.cast::<T>();
        // SAFETY: `p` is `bytes` bytes of this arena's memory, aligned for
        // `T`, handed out once and never written again; `T: Copy`, so a
        // bitwise copy is a valid value. The slice borrows `self`, which
        // keeps the mapping until it is dropped.
        unsafe {
            std::ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
            Ok(std::slice::from_raw_parts(p, s.len()))
        }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        for c in self.chunks.get_mut().drain(..) {
            // SAFETY: mapped by `room`; no slice of it outlives `self`.
            unsafe { libc::munmap(c.ptr.cast(), c.len) };
        }
    }
}

/// The calling process's brk heap kept out of the children it forks
/// (`MADV_DONTFORK`) until dropped. Best effort: where `/proc/self/maps`
/// cannot be read or `madvise` fails, children get the heap as usual.
///
/// A child forked meanwhile must touch no heap memory at all: only its
/// stack, static data and [`Arena`] memory. So must a child another
/// thread forks meanwhile: the heap is kept back only in a process of one
/// thread, or one whose program said none of its other threads fork
/// ([`others_never_fork`]).
pub struct HeapNoFork {
    range: Option<(usize, usize)>,
}

static OTHERS_NEVER_FORK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Declares that no thread of this program but the one restoring forks
/// (`cr-restart`: its other threads draw progress), so [`HeapNoFork`]
/// may apply while they run.
pub fn others_never_fork() {
    OTHERS_NEVER_FORK.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether this process has a single thread.
fn single_threaded() -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|d| d.take(2).count() == 1)
}

/// The `[heap]` line of `/proc/self/maps`.
fn own_heap() -> Option<(usize, usize)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let line = maps.lines().find(|l| l.ends_with("[heap]"))?;
    let (s, e) = line.split_whitespace().next()?.split_once('-')?;
    Some((
        usize::from_str_radix(s, 16).ok()?,
        usize::from_str_radix(e, 16).ok()?,
    ))
}

fn advise(range: (usize, usize), advice: i32) -> bool {
    // SAFETY: MADV_DONTFORK and MADV_DOFORK change only what a later fork
    // copies; the memory and its contents here stay as they are.
    unsafe { libc::madvise(range.0 as *mut libc::c_void, range.1 - range.0, advice) == 0 }
}

impl HeapNoFork {
    pub fn new() -> HeapNoFork {
        let alone =
            OTHERS_NEVER_FORK.load(std::sync::atomic::Ordering::Relaxed) || single_threaded();
        let range = alone
            .then(own_heap)
            .flatten()
            .filter(|&r| advise(r, libc::MADV_DONTFORK));
        HeapNoFork { range }
    }
}

impl Default for HeapNoFork {
    fn default() -> Self {
        HeapNoFork::new()
    }
}

impl Drop for HeapNoFork {
    fn drop(&mut self) {
        if let Some(r) = self.range {
            advise(r, libc::MADV_DOFORK);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arena_copies_and_keeps_alignment() {
        let a = Arena::new();
        let x = a.put(&[1u8, 2, 3]).unwrap();
        let y = a.put(&[7u64, 8]).unwrap();
        let big: Vec<u32> = (0..40_000).collect();
        let z = a.put(&big).unwrap();
        let e: &[u64] = a.put(&[]).unwrap();
        assert_eq!(x, &[1, 2, 3]);
        assert_eq!(y, &[7, 8]);
        assert_eq!(y.as_ptr() as usize % 8, 0);
        assert_eq!(z, &big[..]);
        assert!(e.is_empty());
    }

    #[test]
    fn heap_stays_with_children_of_a_process_of_many_threads() {
        // The test harness runs tests on threads of their own.
        let _t = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(200)));
        assert!(!single_threaded());
        if !OTHERS_NEVER_FORK.load(std::sync::atomic::Ordering::Relaxed) {
            assert!(HeapNoFork::new().range.is_none());
        }
        if let Some((s, e)) = own_heap() {
            assert!(s < e);
        }
    }
}
