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

/// An eventfd's state (`eventfd-count:` in hex, `eventfd-semaphore:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventfdInfo {
    /// The counter.
    pub count: u64,
    /// `EFD_SEMAPHORE`; `None` on kernels that do not show it.
    pub semaphore: Option<bool>,
}

/// A timerfd's state: `clockid:`, `ticks:` (expirations not yet read),
/// `settime flags:` (octal), and the remaining time and interval as
/// `(seconds, nanoseconds)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimerfdInfo {
    /// `clockid:` the clock.
    pub clock: u32,
    /// `ticks:` expirations not yet read.
    pub ticks: u64,
    /// `settime flags:` `TFD_TIMER_*` as last set.
    pub settime_flags: u32,
    /// `it_value:` time left, in nanoseconds (0: disarmed, or expired and not yet read).
    pub value_ns: u64,
    /// `it_interval:` the period, in nanoseconds.
    pub interval_ns: u64,
}

/// One `tfd:` line of an epoll: a registered target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EpollTfd {
    /// The descriptor number it was registered under.
    pub tfd: i32,
    /// `events:` (hex): the requested events and `EPOLLET`-style flags.
    pub events: u32,
    /// `data:` (hex): what `epoll_wait` hands back.
    pub data: u64,
    /// `ino:` (hex) the target's inode.
    pub ino: u64,
    /// `sdev:` (hex) the target's device, kernel encoding.
    pub sdev: u32,
}

/// One `inotify wd:` line: a watch on an inode, with the file handle the
/// kernel shows for it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InotifyMark {
    /// `wd:` (hex) the watch descriptor.
    pub wd: i32,
    /// `ino:` (hex) the watched inode.
    pub ino: u64,
    /// `sdev:` (hex) its device, kernel encoding (major << 20 | minor).
    pub sdev: u32,
    /// `mask:` (hex) the events watched and `IN_*` flags.
    pub mask: u32,
    /// `ignored_mask:` (hex).
    pub ignored_mask: u32,
    /// `fhandle-type:` (hex) for `open_by_handle_at`.
    pub fhandle_type: i32,
    /// `f_handle:` the file handle's bytes.
    pub fhandle: Vec<u8>,
}

/// `(seconds, nanoseconds)` as nanoseconds.
fn timespec_ns(v: &[u8]) -> Option<u64> {
    let inner = v.strip_prefix(b"(")?.strip_suffix(b")")?;
    let (s, ns) = inner.split_once_byte(b',')?;
    let (s, ns) = (dec_u64(s.trim_ascii())?, dec_u64(ns.trim_ascii())?);
    s.checked_mul(1_000_000_000)?.checked_add(ns)
}

fn hex_bytes(v: &[u8]) -> Option<Vec<u8>> {
    if !v.len().is_multiple_of(2) {
        return None;
    }
    v.chunks(2)
        .map(|c| Some((digit_value(c[0], 16)? * 16 + digit_value(c[1], 16)?) as u8))
        .collect()
}

impl FdInfo {
    fn need(&self, key: &[u8]) -> ParseResult<&[u8]> {
        self.get(key)
            .ok_or_else(|| ParseError(format!("no {} line", show(key))))
    }

    fn field<T>(&self, key: &[u8], parse: impl FnOnce(&[u8]) -> Option<T>) -> ParseResult<T> {
        let v = self.need(key)?;
        parse(v).ok_or_else(|| ParseError(format!("bad {} line: {:?}", show(key), show(v))))
    }

    /// The state of an eventfd.
    pub fn eventfd(&self) -> ParseResult<EventfdInfo> {
        let count = self.field(b"eventfd-count", hex_u64)?;
        let semaphore = match self.get(b"eventfd-semaphore") {
            None => None,
            Some(b"0") => Some(false),
            Some(b"1") => Some(true),
            Some(v) => return bad(format!("bad eventfd-semaphore line: {:?}", show(v))),
        };
        Ok(EventfdInfo { count, semaphore })
    }

    /// The state of a timerfd.
    pub fn timerfd(&self) -> ParseResult<TimerfdInfo> {
        Ok(TimerfdInfo {
            clock: self.field(b"clockid", dec_u32)?,
            ticks: self.field(b"ticks", dec_u64)?,
            settime_flags: self
                .field(b"settime flags", |v| u32::try_from(num_radix(v, 8)?).ok())?,
            value_ns: self.field(b"it_value", timespec_ns)?,
            interval_ns: self.field(b"it_interval", timespec_ns)?,
        })
    }

    /// The signals a signalfd accepts (`sigmask:`, hex, bit N-1 for
    /// signal N).
    pub fn signalfd_mask(&self) -> ParseResult<u64> {
        self.field(b"sigmask", hex_u64)
    }

    /// The targets registered in an epoll, in the kernel's order.
    pub fn epoll_targets(&self) -> ParseResult<Vec<EpollTfd>> {
        let mut out = Vec::new();
        for (k, v) in self.extra.iter().filter(|(k, _)| k == b"tfd") {
            let line = [&k[..], b": ", v].concat();
            let w = fdinfo_words(&line);
            let get = |key: &[u8]| w.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
            let err = || ParseError(format!("bad tfd line: {:?}", show(v)));
            let num = |key: &[u8], radix| get(key).and_then(|v| num_radix(v, radix));
            out.push(EpollTfd {
                tfd: get(b"tfd").and_then(dec_i32).ok_or_else(err)?,
                events: num(b"events", 16)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(err)?,
                data: num(b"data", 16).ok_or_else(err)?,
                ino: num(b"ino", 16).ok_or_else(err)?,
                sdev: num(b"sdev", 16)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(err)?,
            });
        }
        Ok(out)
    }

    /// The watches of an inotify instance, in the kernel's order.
    pub fn inotify_watches(&self) -> ParseResult<Vec<InotifyMark>> {
        let mut out = Vec::new();
        for (k, v) in self.extra.iter().filter(|(k, _)| k == b"inotify wd") {
            let line = [&k[..], b":", v].concat();
            let w = fdinfo_words(&line);
            let get = |key: &[u8]| w.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
            let err = || ParseError(format!("bad inotify line: {:?}", show(v)));
            let hex32 = |key: &[u8]| {
                get(key)
                    .and_then(hex_u64)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(err)
            };
            out.push(InotifyMark {
                wd: i32::try_from(hex32(b"wd")?).map_err(|_| err())?,
                ino: get(b"ino").and_then(hex_u64).ok_or_else(err)?,
                sdev: hex32(b"sdev")?,
                mask: hex32(b"mask")?,
                ignored_mask: hex32(b"ignored_mask")?,
                fhandle_type: hex32(b"fhandle-type")? as i32,
                fhandle: get(b"f_handle").and_then(hex_bytes).ok_or_else(err)?,
            });
        }
        Ok(out)
    }
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

    fn with_lines(extra: &[u8]) -> FdInfo {
        let mut buf = b"pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1038\n".to_vec();
        buf.extend_from_slice(extra);
        parse_fdinfo(&buf).unwrap()
    }

    #[test]
    fn event_objects_typed() {
        // Kernel 6.18's own lines (eventfd-count is hex).
        let f =
            with_lines(b"eventfd-count:               1f\neventfd-id: 1\neventfd-semaphore: 1\n");
        assert_eq!(
            f.eventfd().unwrap(),
            EventfdInfo {
                count: 31,
                semaphore: Some(true)
            }
        );
        assert_eq!(
            with_lines(b"eventfd-count: 0\n")
                .eventfd()
                .unwrap()
                .semaphore,
            None
        );
        assert!(
            with_lines(b"eventfd-count: 0\neventfd-semaphore: 2\n")
                .eventfd()
                .is_err()
        );
        assert!(with_lines(b"").eventfd().is_err());

        let f = with_lines(
            b"clockid: 1\nticks: 3\nsettime flags: 01\nit_value: (2, 500)\nit_interval: (1, 0)\n",
        );
        assert_eq!(
            f.timerfd().unwrap(),
            TimerfdInfo {
                clock: 1,
                ticks: 3,
                settime_flags: 1,
                value_ns: 2_000_000_500,
                interval_ns: 1_000_000_000
            }
        );
        assert!(
            with_lines(
                b"clockid: 1\nticks: 3\nsettime flags: 01\nit_value: 2\nit_interval: (1, 0)\n"
            )
            .timerfd()
            .is_err()
        );

        assert_eq!(
            with_lines(b"sigmask:\t0000000000004200\n")
                .signalfd_mask()
                .unwrap(),
            0x4200
        );

        let f = with_lines(b"tfd:        3 events: 80000019 data:                3  pos:0 ino:40e sdev:10\ntfd:        5 events:       19 data:     ffffffffffff  pos:0 ino:10244e sdev:f\n");
        let t = f.epoll_targets().unwrap();
        assert_eq!(
            t,
            [
                EpollTfd {
                    tfd: 3,
                    events: 0x8000_0019,
                    data: 3,
                    ino: 0x40e,
                    sdev: 0x10
                },
                EpollTfd {
                    tfd: 5,
                    events: 0x19,
                    data: 0xffff_ffff_ffff,
                    ino: 0x10244e,
                    sdev: 0xf
                }
            ]
        );
        assert!(
            with_lines(b"tfd: 3 events: zz data: 1 pos:0 ino:1 sdev:1\n")
                .epoll_targets()
                .is_err()
        );
        assert!(with_lines(b"").epoll_targets().unwrap().is_empty());

        let f = with_lines(b"inotify wd:a ino:2e1 sdev:fe00000 mask:80000002 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:e102000000000000\n");
        assert_eq!(
            f.inotify_watches().unwrap(),
            [InotifyMark {
                wd: 10,
                ino: 0x2e1,
                sdev: 0xfe00000,
                mask: 0x8000_0002,
                ignored_mask: 0,
                fhandle_type: 1,
                fhandle: vec![0xe1, 2, 0, 0, 0, 0, 0, 0],
            }]
        );
        assert!(with_lines(b"inotify wd:1 ino:1 sdev:1 mask:1 ignored_mask:0 fhandle-bytes:1 fhandle-type:1 f_handle:abc\n").inotify_watches().is_err());
    }
}
