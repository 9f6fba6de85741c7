//! What identifies a file's contents across machines, for carried files
//! (`ckpt --carry-files`): size, modification time, SHA-256 of the
//! contents and the ELF build id (`NT_GNU_BUILD_ID`).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};

use sha2::{Digest, Sha256};

/// A file's identity.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileId {
    pub size: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    pub mode: u32,
    pub sha256: Vec<u8>,
    pub build_id: Vec<u8>,
}

/// Size, mtime and mode (cheap: no read).
pub fn stat_id(f: &File) -> std::io::Result<FileId> {
    let m = f.metadata()?;
    Ok(FileId {
        size: m.size(),
        mtime_sec: m.mtime(),
        mtime_nsec: m.mtime_nsec() as u32,
        mode: m.mode(),
        ..Default::default()
    })
}

/// The SHA-256 of the whole file.
pub fn sha256(f: &File) -> std::io::Result<Vec<u8>> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut r = f;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_vec())
}

/// The ELF build id of the file, if it is an ELF file with one in its
/// first 64 KiB (where linkers put the notes).
pub fn build_id(f: &File) -> Vec<u8> {
    let mut buf = vec![0u8; 64 << 10];
    let mut got = 0;
    while got < buf.len() {
        match f.read_at(&mut buf[got..], got as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    parse_build_id(&buf[..got]).unwrap_or_default()
}

/// Size, mtime, mode, SHA-256 and build id (reads the whole file from
/// its start; the file offset is not used).
pub fn full_id(f: &File) -> std::io::Result<FileId> {
    let mut id = stat_id(f)?;
    let again = File::open(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(f)
    ))?;
    id.sha256 = sha256(&again)?;
    id.build_id = build_id(f);
    Ok(id)
}

/// The `NT_GNU_BUILD_ID` note of a 64-bit little-endian ELF image, from
/// its program headers (`PT_NOTE`); `None` for anything else or anything
/// out of bounds.
pub fn parse_build_id(b: &[u8]) -> Option<Vec<u8>> {
    let u16_at = |i: usize| Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?));
    let u32_at = |i: usize| Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?));
    let u64_at = |i: usize| Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?));
    // ELFCLASS64, ELFDATA2LSB.
    if b.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = u16_at(0x36)? as usize;
    let phnum = u16_at(0x38)? as usize;
    for i in 0..phnum.min(256) {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(ph)? != 4 {
            continue; // not PT_NOTE
        }
        let off = usize::try_from(u64_at(ph + 8)?).ok()?;
        let size = usize::try_from(u64_at(ph + 32)?).ok()?;
        let notes = b.get(off..off.checked_add(size)?)?;
        let mut at = 0;
        while at + 12 <= notes.len() {
            let word = |i: usize| u32::from_le_bytes(notes[i..i + 4].try_into().unwrap()) as usize;
            let (namesz, descsz, ty) = (word(at), word(at + 4), word(at + 8));
            let name_end = (at + 12).checked_add(namesz)?;
            let desc = (at + 12).checked_add(namesz.checked_add(3)? & !3)?;
            let desc_end = desc.checked_add(descsz)?;
            if desc_end > notes.len() {
                break;
            }
            if ty == 3 && notes.get(at + 12..name_end)? == b"GNU\0" {
                return Some(notes[desc..desc_end].to_vec());
            }
            at = desc.checked_add(descsz.checked_add(3)? & !3)?;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_id_of_a_system_binary() {
        // Debian builds its binaries with build ids; `file` reports the same.
        let f = File::open("/bin/true").unwrap();
        let id = build_id(&f);
        assert!(id.len() >= 16, "{id:?}");
    }

    #[test]
    fn build_id_of_junk_is_none() {
        assert_eq!(parse_build_id(b""), None);
        assert_eq!(parse_build_id(b"\x7fELF\x02\x01\0\0"), None);
        let mut b = vec![0u8; 256];
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        b[0x20] = 0x40;
        b[0x36] = 56;
        b[0x38] = 0xff; // phnum past the end
        assert_eq!(parse_build_id(&b), None);
    }

    #[test]
    fn ids_differ_by_content() {
        let dir = std::env::temp_dir().join(format!("crtools-fileid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::write(&a, b"one").unwrap();
        std::fs::write(&b, b"two").unwrap();
        let ia = full_id(&File::open(&a).unwrap()).unwrap();
        let ib = full_id(&File::open(&b).unwrap()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(ia.size, ib.size);
        assert_ne!(ia.sha256, ib.sha256);
        assert_eq!(ia.sha256.len(), 32);
    }
}
