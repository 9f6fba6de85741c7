//! A region of our own memory holding code for other processes: mapped
//! readable, writable and executable at a chosen address, never over an
//! existing mapping, and unmapped on drop (a [`FixedMem`] mapped
//! executable). The restorer's trampoline (`restart::space::Trampoline`)
//! is one; its children inherit it.

use super::fixedmem::FixedMem;

/// A mapped region `addr..addr + len`.
#[derive(Debug)]
pub struct CodeRegion(FixedMem);

impl CodeRegion {
    /// Maps `len` bytes at exactly `addr` (`MAP_FIXED_NOREPLACE`) and
    /// copies `code` to its start; `None` if anything is mapped there.
    pub fn map_at(addr: u64, len: u64, code: &[u8]) -> Option<CodeRegion> {
        if code.len() as u64 > len {
            return None;
        }
        let prot = libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC;
        let mut region = FixedMem::map_with(addr, len, prot).ok()?;
        region.write(0, code);
        Some(CodeRegion(region))
    }

    pub fn addr(&self) -> u64 {
        self.0.addr()
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
