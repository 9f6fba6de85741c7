//! `/proc/PID/maps`, and `/proc/PID/map_files/` for what `maps` cannot say exactly.

use super::*;

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MapEntry {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// `r`: readable.
    pub read: bool,
    /// `w`: writable.
    pub write: bool,
    /// `x`: executable.
    pub exec: bool,
    /// `s`: shared (`p`: private, copy-on-write).
    pub shared: bool,
    /// Offset into the file (pages into the object for shared anonymous).
    pub offset: u64,
    /// Device major number of the file.
    pub dev_major: u32,
    /// Device minor number of the file.
    pub dev_minor: u32,
    /// Inode of the file, 0 for anonymous memory.
    pub inode: u64,
    /// What the kernel shows, unescaped and without ` (deleted)`: empty for
    /// anonymous memory, `[heap]`, `[stack]`, `[vdso]`, `[vvar]`,
    /// `[vvar_vclock]`, `[vsyscall]`, `[anon:NAME]`, a file path,
    /// `/memfd:NAME`, `/SYSV0000abcd`, `/dev/zero` (shared anonymous).
    pub path: Vec<u8>,
    /// The path ended with ` (deleted)` (which was stripped from `path`).
    pub deleted: bool,
}

impl MapEntry {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the mapping is empty (never true for what the kernel shows).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Whether this is one of the kernel's special mappings named in
    /// brackets (`[heap]`, `[stack]`, `[vdso]`, `[anon:NAME]`, ...).
    pub fn is_special(&self) -> bool {
        self.inode == 0 && self.path.starts_with(b"[")
    }

    /// Whether the mapping is backed by a file (or a shmem object: memfd,
    /// SysV shm, shared anonymous memory).
    pub fn is_file(&self) -> bool {
        self.inode != 0
    }
}

const DELETED: &[u8] = b" (deleted)";

/// Parse the `start-end perms offset maj:min inode` head of a maps or smaps
/// line, and the path after it.
pub(super) fn parse_map_line(line: &[u8]) -> ParseResult<MapEntry> {
    let err = || ParseError(format!("unexpected format: {:?}", show(line)));
    // Take the five fixed fields one by one; the path is the rest of the
    // line after the spaces that follow the inode.
    let mut rest = line;
    let mut next = || -> ParseResult<&[u8]> {
        let t = rest.trim_ascii_start();
        let end = t.iter().position(|&c| c == b' ').unwrap_or(t.len());
        if end == 0 {
            return Err(err());
        }
        rest = &t[end..];
        Ok(&t[..end])
    };
    let range = next()?;
    let perms = next()?;
    let offset = next()?;
    let dev = next()?;
    let inode = next()?;
    let path_raw = rest.trim_ascii_start();

    let (start, end) = range.split_once_byte(b'-').ok_or_else(err)?;
    let (start, end) = (
        hex_u64(start).ok_or_else(err)?,
        hex_u64(end).ok_or_else(err)?,
    );
    if end < start {
        return Err(err());
    }
    let [r, w, x, s] = perms else {
        return Err(err());
    };
    let flag = |c: u8, yes: u8| match c {
        b'-' => Ok(false),
        c if c == yes => Ok(true),
        _ => Err(err()),
    };
    let shared = match *s {
        b's' => true,
        b'p' => false,
        _ => return Err(err()),
    };
    let (maj, min) = dev.split_once_byte(b':').ok_or_else(err)?;
    let hex32 = |b: &[u8]| hex_u64(b).and_then(|n| u32::try_from(n).ok());
    let mut path = unescape_maps_path(path_raw);
    let deleted = path.ends_with(DELETED);
    if deleted {
        path.truncate(path.len() - DELETED.len());
    }
    Ok(MapEntry {
        start,
        end,
        read: flag(*r, b'r')?,
        write: flag(*w, b'w')?,
        exec: flag(*x, b'x')?,
        shared,
        offset: hex_u64(offset).ok_or_else(err)?,
        dev_major: hex32(maj).ok_or_else(err)?,
        dev_minor: hex32(min).ok_or_else(err)?,
        inode: dec_u64(inode).ok_or_else(err)?,
        path,
        deleted,
    })
}

/// Parse a `maps` file.
pub fn parse_maps(buf: &[u8]) -> ParseResult<Vec<MapEntry>> {
    lines(buf).map(parse_map_line).collect()
}

/// `/proc/PID/maps`, in address order.
pub fn maps(pid: impl Into<Pid>) -> Result<Vec<MapEntry>> {
    let pid = pid.into();
    read_parse(proc_path(pid, "maps"), parse_maps)
}

fn map_files_path(pid: Pid, start: u64, end: u64) -> PathBuf {
    proc_path(pid, &format!("map_files/{start:x}-{end:x}"))
}

/// `(st_dev, st_ino)` of the object behind a file-backed mapping, by
/// `stat(/proc/PID/map_files/START-END)`. Shared anonymous memory has an
/// inode on the internal shmem mount: two mappings with the same pair share
/// the same memory. Private anonymous mappings have no entry (`ENOENT`).
/// Needs `CAP_SYS_ADMIN`.
pub fn map_files_ino(pid: impl Into<Pid>, start: u64, end: u64) -> Result<(u64, u64)> {
    let pid = pid.into();
    let path = map_files_path(pid, start, end);
    let md = std::fs::metadata(&path).map_err(|e| ProcError::io(&path, e))?;
    Ok((md.dev(), md.ino()))
}

/// `readlink /proc/PID/map_files/START-END`: the mapped file's path exactly
/// (no escaping, unlike `maps`), with ` (deleted)` if it was removed.
pub fn map_files_link(pid: impl Into<Pid>, start: u64, end: u64) -> Result<Vec<u8>> {
    let pid = pid.into();
    readlink_bytes(map_files_path(pid, start, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::proc::samples::MAPS;

    #[test]
    fn maps_sample() {
        let m = parse_maps(MAPS).unwrap();
        assert_eq!(m.len(), 12);
        let e = &m[0];
        assert_eq!((e.start, e.end), (0x55571e099000, 0x55571e09b000));
        assert!(e.read && !e.write && !e.exec && !e.shared);
        assert_eq!((e.dev_major, e.dev_minor, e.inode), (0xfe, 0, 247282));
        assert_eq!(e.path, b"/usr/bin/head");
        assert!(!e.deleted && e.is_file() && !e.is_special());

        assert_eq!(m[1].path, b"");
        assert!(m[1].write && !m[1].is_file() && !m[1].is_special());
        assert_eq!(m[1].len(), 0x21000);

        assert_eq!(
            (m[2].path.as_slice(), m[2].deleted, m[2].shared),
            (&b"/dev/zero"[..], true, true)
        );
        assert_eq!(
            (m[3].path.as_slice(), m[3].deleted),
            (&b"/memfd:my buf"[..], true)
        );
        assert_eq!(
            (m[4].path.as_slice(), m[4].inode),
            (&b"/SYSV0000abcd"[..], 98307)
        );
        let e = &m[5];
        assert_eq!(e.path, b"/tmp/with space/and\nnewline");
        assert_eq!((e.offset, e.dev_major, e.dev_minor), (0x1000, 0x103, 0x1f));
        assert!(e.exec && !e.deleted);
        assert!(!m[6].read && !m[6].write && !m[6].exec);
        assert_eq!(m[6].path, b"[anon:guard page]");
        assert!(m[6].is_special());
        assert_eq!(m[7].path, b"anon_inode:[io_uring]");
        assert_eq!(m[8].path, b"[stack]");
        assert_eq!(m[11].path, b"[vsyscall]");
        assert_eq!(m[11].start, 0xffffffffff600000);
    }

    #[test]
    fn maps_odd_but_valid() {
        assert!(parse_maps(b"").unwrap().is_empty());
        // The path is everything after the inode's padding.
        let m = parse_maps(b"1000-2000 rw-p 0 0:0 5 /a (deleted) (deleted)").unwrap();
        assert_eq!(m[0].path, b"/a (deleted)");
        assert!(m[0].deleted);
        let m = parse_maps(b"1000-2000 rw-p 0 0:0 5 /x\xff\x01\\").unwrap();
        assert_eq!(m[0].path, b"/x\xff\x01\\");
        let m = parse_maps(b"1000-2000 rw-p 0 0:0 5 \t").unwrap();
        assert_eq!(m[0].path, b"");
    }

    #[test]
    fn maps_bad_input_is_an_error() {
        for bad in [
            &b"\n"[..],
            b"1000-2000",
            b"1000-2000 rw-p 0 0:0",
            b"1000 rw-p 0 0:0 5",
            b"2000-1000 rw-p 0 0:0 5",
            b"1000-2000 rwxq 0 0:0 5",
            b"1000-2000 rw- 0 0:0 5",
            b"1000-2000 wr-p 0 0:0 5",
            b"1000-2000 rw-p 0 00 5",
            b"1000-2000 rw-p 0 0:0 -5",
            b"1000-2000 rw-p 0 100000000:0 5",
            b"1000-1x00 rw-p 0 0:0 5",
            b"10000000000000000-2 rw-p 0 0:0 5",
        ] {
            let e = parse_maps(bad).unwrap_err();
            assert!(e.0.starts_with("unexpected format"), "{bad:?}: {e}");
        }
    }
}
