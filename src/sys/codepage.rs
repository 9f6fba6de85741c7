//! A region of our own memory holding code for other processes: mapped
//! readable, writable and executable at a chosen address, never over an
//! existing mapping, and unmapped on drop. The restorer's trampoline
//! (`restart::space::Trampoline`) is one; its children inherit it.

/// A mapped region `addr..addr + len`.
#[derive(Debug)]
pub struct CodeRegion {
    addr: u64,
    len: u64,
}

impl CodeRegion {
    /// Maps `len` bytes at exactly `addr` (`MAP_FIXED_NOREPLACE`) and
    /// copies `code` to its start; `None` if anything is mapped there.
    pub fn map_at(addr: u64, len: u64, code: &[u8]) -> Option<CodeRegion> {
        if code.len() as u64 > len {
            return None;
        }
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping;
        // we own the new region.
        let p = unsafe {
            libc::mmap(
                addr as *mut libc::c_void,
                len as usize,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        // Owned from here: dropped (unmapped) if it is not where we asked.
        let region = CodeRegion {
            addr: p as u64,
            len,
        };
        if region.addr != addr {
            return None;
        }
        // SAFETY: the region is ours, mapped writable, at least `code.len()`
        // bytes long (checked above).
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), p.cast::<u8>(), code.len()) };
        Some(region)
    }

    pub fn addr(&self) -> u64 {
        self.addr
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for CodeRegion {
    fn drop(&mut self) {
        // SAFETY: the region was mapped by `map_at`, is ours, and nothing
        // in this process refers to it any more.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len as usize) };
    }
}
