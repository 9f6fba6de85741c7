//! Anonymous memory of our own at a chosen address: mapped private and
//! read-write at exactly that address (never over an existing mapping),
//! unmapped on drop. `cr-restart` keeps pre-copied pages of a live image
//! in such regions at the addresses they have in the restored process,
//! which then inherits them when the restorer forks it
//! (`restart::precopy`).

use std::io;

/// A mapped region `addr..addr + len` of this process.
#[derive(Debug)]
pub struct FixedMem {
    addr: u64,
    len: u64,
}

/// `MADV_COLLAPSE` (Linux 6.1).
const MADV_COLLAPSE: i32 = 25;

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl FixedMem {
    /// Maps `len` bytes at exactly `addr` (`MAP_FIXED_NOREPLACE`);
    /// `EEXIST` if anything is mapped there.
    pub fn map_at(addr: u64, len: u64) -> io::Result<FixedMem> {
        Self::map_with(addr, len, libc::PROT_READ | libc::PROT_WRITE)
    }

    /// [`map_at`](Self::map_at) with protection `prot` (which must include
    /// `PROT_READ | PROT_WRITE`: [`write`](Self::write) and
    /// [`bytes`](Self::bytes) rely on it).
    pub fn map_with(addr: u64, len: u64, prot: libc::c_int) -> io::Result<FixedMem> {
        assert_eq!(
            prot & (libc::PROT_READ | libc::PROT_WRITE),
            libc::PROT_READ | libc::PROT_WRITE,
            "a FixedMem is readable and writable"
        );
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping;
        // we own the new region.
        let p = unsafe {
            libc::mmap(
                addr as *mut libc::c_void,
                len as usize,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // Owned from here: dropped (unmapped) if it is not where we asked
        // (a kernel that ignores MAP_FIXED_NOREPLACE).
        let region = FixedMem {
            addr: p as u64,
            len,
        };
        if region.addr != addr {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        Ok(region)
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

    /// The part `off..off + len`; panics outside the region.
    fn part(&self, off: u64, len: u64) -> *mut u8 {
        assert!(
            off.checked_add(len).is_some_and(|e| e <= self.len),
            "range {off:#x}+{len:#x} outside a region of {:#x} bytes",
            self.len
        );
        (self.addr + off) as *mut u8
    }

    /// Copies `data` to offset `off`; panics outside the region.
    pub fn write(&mut self, off: u64, data: &[u8]) {
        let at = self.part(off, data.len() as u64);
        // SAFETY: the range is inside our read-write mapping (checked by
        // `part`); `&mut self` means no slice of it is borrowed.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), at, data.len()) };
    }

    /// The bytes at `off..off + len`; panics outside the region.
    pub fn bytes(&self, off: u64, len: u64) -> &[u8] {
        let at = self.part(off, len);
        // SAFETY: inside our readable mapping, which lives as long as
        // `self`; it changes only through `&mut self` methods.
        unsafe { std::slice::from_raw_parts(at, len as usize) }
    }

    /// Asks the kernel to back `off..off + len` with huge pages
    /// (`MADV_COLLAPSE`): contents unchanged, the mapping's flags too.
    pub fn collapse(&self, off: u64, len: u64) -> io::Result<()> {
        let at = self.part(off, len);
        // SAFETY: advice on our own mapping; contents stay as they are.
        check(unsafe { libc::madvise(at.cast(), len as usize, MADV_COLLAPSE) })
    }

    /// Keeps the region out of our children (`MADV_DONTFORK`).
    pub fn dont_fork(&self) -> io::Result<()> {
        // SAFETY: advice on our own mapping; only forks are affected.
        check(unsafe {
            libc::madvise(
                self.addr as *mut libc::c_void,
                self.len as usize,
                libc::MADV_DONTFORK,
            )
        })
    }
}

impl Drop for FixedMem {
    fn drop(&mut self) {
        // SAFETY: the region was mapped by `map_at` and is ours; slices of
        // it borrow `self`, so none is alive.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len as usize) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_writes_and_refuses_an_occupied_address() {
        // Any free 4 MiB, then a region at its 2 MiB-aligned middle.
        let probe = FixedMem::map_at(0x5f00_0000_0000, 4 << 20).expect("map");
        let at = probe.addr();
        drop(probe);
        let mut m = FixedMem::map_at(at, 2 << 20).expect("map again");
        assert_eq!(
            FixedMem::map_at(at, 4096).unwrap_err().raw_os_error(),
            Some(libc::EEXIST)
        );
        m.write(4096, b"abc");
        assert_eq!(m.bytes(4096, 3), b"abc");
        let _ = m.collapse(0, 2 << 20);
        assert_eq!(m.bytes(4096, 3), b"abc");
        m.dont_fork().expect("dontfork");
    }
}
