//! `/proc/PID/fdinfo/FD`.

use super::*;

/// `/proc/PID/fdinfo/FD`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FdInfo {
    /// `pos:` file offset.
    pub pos: u64,
    /// `flags:` open flags (`O_*`, printed in octal).
    pub flags: u32,
    /// `mnt_id:` id of the mount (see `/proc/PID/mountinfo`).
    pub mnt_id: u32,
    /// `ino:` inode number.
    pub ino: u64,
    /// Every other line, in order, split at its first `:` and trimmed:
    /// `eventfd-count`, `sigmask`, `clockid`, `tfd` (epoll), `inotify wd`,
    /// `fanotify flags`, ... Lines that hold several `key:value` words can be
    /// split further with [`fdinfo_words`].
    pub extra: Vec<(Vec<u8>, Vec<u8>)>,
}

impl FdInfo {
    /// The value of the first extra line with this key.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.extra
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }
}

/// Parse an `fdinfo` file.
pub fn parse_fdinfo(buf: &[u8]) -> ParseResult<FdInfo> {
    let mut fi = FdInfo::default();
    let mut seen = [false; 4];
    for line in lines(buf) {
        if line.trim_ascii().is_empty() {
            continue;
        }
        let Some((key, v)) = key_value(line) else {
            fi.extra.push((line.trim_ascii().to_vec(), Vec::new()));
            continue;
        };
        let err = || ParseError(format!("bad {} line: {:?}", show(key), show(v)));
        let known = match key {
            b"pos" => Some((0, dec_u64(v).map(|n| fi.pos = n))),
            b"flags" => Some((
                1,
                num_radix(v, 8)
                    .and_then(|n| u32::try_from(n).ok())
                    .map(|n| fi.flags = n),
            )),
            b"mnt_id" => Some((2, dec_u32(v).map(|n| fi.mnt_id = n))),
            b"ino" => Some((3, dec_u64(v).map(|n| fi.ino = n))),
            _ => None,
        };
        match known {
            Some((i, Some(()))) if !seen[i] => seen[i] = true,
            // A repeated key belongs to the file type (e.g. epoll's `ino:`
            // words are on their own lines in no kernel, but be lenient).
            Some((_, Some(()))) => fi.extra.push((key.to_vec(), v.to_vec())),
            Some((_, None)) => return Err(err()),
            None => fi.extra.push((key.to_vec(), v.to_vec())),
        }
    }
    const NAMES: [&str; 4] = ["pos", "flags", "mnt_id", "ino"];
    if let Some(i) = seen.iter().position(|s| !s) {
        return bad(format!("no {} line", NAMES[i]));
    }
    Ok(fi)
}

/// `/proc/PID/fdinfo/FD`.
pub fn fdinfo(pid: impl Into<Pid>, fd: impl Into<Fd>) -> Result<FdInfo> {
    let pid = pid.into();
    let fd = fd.into();
    read_parse(proc_path(pid, &format!("fdinfo/{fd}")), parse_fdinfo)
}

/// Split an fdinfo line that holds several `key:value` words, such as
/// epoll's `tfd:        5 events:       19 data:...` or inotify's
/// `inotify wd:1 ino:2b sdev:800001 mask:fff ...`: a word ending in `:`
/// takes the next word as its value, a word containing `:` is split at it,
/// other words are skipped.
pub fn fdinfo_words(line: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut out = Vec::new();
    let mut it = words(line);
    while let Some(w) = it.next() {
        if let Some(key) = w.strip_suffix(b":") {
            out.push((key, it.next().unwrap_or_default()));
        } else if let Some((k, v)) = w.split_once_byte(b':') {
            out.push((k, v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_samples() {
        let f = parse_fdinfo(b"pos:\t4096\nflags:\t02102002\nmnt_id:\t24\nino:\t3\n").unwrap();
        assert_eq!((f.pos, f.flags, f.mnt_id, f.ino), (4096, 0o2102002, 24, 3));
        assert!(f.extra.is_empty());

        let f = parse_fdinfo(b"pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1038\neventfd-count:                5\neventfd-id: 1\neventfd-semaphore: 0\n").unwrap();
        assert_eq!(f.get(b"eventfd-count"), Some(&b"5"[..]));
        assert_eq!(f.get(b"eventfd-semaphore"), Some(&b"0"[..]));

        let f = parse_fdinfo(b"pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1038\nclockid: 1\nticks: 0\nsettime flags: 00\nit_value: (0, 0)\nit_interval: (0, 0)\n").unwrap();
        assert_eq!(f.get(b"settime flags"), Some(&b"00"[..]));
        assert_eq!(f.get(b"it_value"), Some(&b"(0, 0)"[..]));

        let f = parse_fdinfo(b"pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1038\ntfd:        5 events:       19 data:                5  pos:0 ino:3494 sdev:f\n").unwrap();
        let (k, v) = &f.extra[0];
        assert_eq!(k, b"tfd");
        let line = [&k[..], b": ", v].concat();
        let w = fdinfo_words(&line);
        assert_eq!(
            w,
            [
                (&b"tfd"[..], &b"5"[..]),
                (b"events", b"19"),
                (b"data", b"5"),
                (b"pos", b"0"),
                (b"ino", b"3494"),
                (b"sdev", b"f")
            ]
        );

        let line = b"inotify wd:1 ino:3c4a7 sdev:fe00000 mask:100 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:a7c4030000000000";
        let mut buf = b"pos:\t0\nflags:\t00\nmnt_id:\t17\nino:\t1038\n".to_vec();
        buf.extend_from_slice(line);
        let f = parse_fdinfo(&buf).unwrap();
        assert_eq!(f.extra[0].0, b"inotify wd");
        let w = fdinfo_words(line);
        assert_eq!(w[0], (&b"wd"[..], &b"1"[..]));
        assert_eq!(w[7], (&b"f_handle"[..], &b"a7c4030000000000"[..]));
        assert!(fdinfo_words(b"").is_empty());
        assert_eq!(fdinfo_words(b"key:"), [(&b"key"[..], &b""[..])]);
    }

    #[test]
    fn fdinfo_bad_input_is_an_error() {
        assert_eq!(parse_fdinfo(b"").unwrap_err().0, "no pos line");
        assert!(
            parse_fdinfo(b"pos:\t0\nmnt_id:\t1\nino:\t1\n")
                .unwrap_err()
                .0
                .contains("flags")
        );
        assert!(
            parse_fdinfo(b"pos:\t0\nflags:\t9\nmnt_id:\t1\nino:\t1\n")
                .unwrap_err()
                .0
                .contains("bad flags")
        );
        assert!(parse_fdinfo(b"pos:\t-1\nflags:\t0\nmnt_id:\t1\nino:\t1\n").is_err());
        assert!(parse_fdinfo(b"pos:\t0\nflags:\t0\nmnt_id:\t1\nino:\t\n").is_err());
    }
}
