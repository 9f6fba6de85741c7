//! `/proc/PID/status` and `/proc/PID/task/TID/status`.

use super::*;

/// The parts of `/proc/PID/status` a checkpoint needs (memory statistics and
/// CPU lists are left out).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// `Name:` the command name, unescaped.
    pub name: Vec<u8>,
    /// `Umask:` (absent for zombies and tasks without an fs).
    pub umask: Option<u32>,
    /// `State:` the state letter.
    pub state: u8,
    /// `Tgid:` thread-group id.
    pub tgid: i32,
    /// `Pid:` thread id.
    pub pid: i32,
    /// `PPid:` parent pid.
    pub ppid: i32,
    /// `TracerPid:` pid of the tracer, 0 if none.
    pub tracer_pid: i32,
    /// `Uid:` real, effective, saved, filesystem.
    pub uid: [u32; 4],
    /// `Gid:` real, effective, saved, filesystem.
    pub gid: [u32; 4],
    /// `Groups:` supplementary groups.
    pub groups: Vec<u32>,
    /// `NStgid:` thread-group id in each pid namespace, outermost (the
    /// reader's) first.
    pub ns_tgid: Vec<i32>,
    /// `NSpid:` thread id in each pid namespace.
    pub ns_pid: Vec<i32>,
    /// `NSpgid:` process group id in each pid namespace.
    pub ns_pgid: Vec<i32>,
    /// `NSsid:` session id in each pid namespace.
    pub ns_sid: Vec<i32>,
    /// `Threads:` number of threads.
    pub threads: u32,
    /// `SigQ:` queued signals of the real user, and its limit.
    pub sig_q: (u64, u64),
    /// `SigPnd:` signals pending for this thread.
    pub sig_pnd: u64,
    /// `ShdPnd:` signals pending for the process.
    pub shd_pnd: u64,
    /// `SigBlk:` blocked signals.
    pub sig_blk: u64,
    /// `SigIgn:` ignored signals.
    pub sig_ign: u64,
    /// `SigCgt:` caught signals.
    pub sig_cgt: u64,
    /// `CapInh:` inheritable capabilities.
    pub cap_inh: u64,
    /// `CapPrm:` permitted capabilities.
    pub cap_prm: u64,
    /// `CapEff:` effective capabilities.
    pub cap_eff: u64,
    /// `CapBnd:` capability bounding set.
    pub cap_bnd: u64,
    /// `CapAmb:` ambient capabilities.
    pub cap_amb: u64,
    /// `NoNewPrivs:`.
    pub no_new_privs: bool,
    /// `Seccomp:` 0 disabled, 1 strict, 2 filter (0 when the kernel has no
    /// seccomp and does not print the line).
    pub seccomp: u32,
    /// `Seccomp_filters:` number of attached filters (0 if not shown).
    pub seccomp_filters: u32,
}

fn id_list<T>(v: &[u8], parse: impl Fn(&[u8]) -> Option<T>) -> Option<Vec<T>> {
    words(v).map(parse).collect()
}

/// Parse a `status` file. Unknown lines are ignored; a required line that is
/// missing or malformed is an error naming it.
pub fn parse_status(buf: &[u8]) -> ParseResult<Status> {
    let mut s = Status::default();
    // Bit i: the i-th required key was seen.
    const REQUIRED: [&[u8]; 27] = [
        b"Name",
        b"State",
        b"Tgid",
        b"Pid",
        b"PPid",
        b"TracerPid",
        b"Uid",
        b"Gid",
        b"Groups",
        b"NStgid",
        b"NSpid",
        b"NSpgid",
        b"NSsid",
        b"Threads",
        b"SigQ",
        b"SigPnd",
        b"ShdPnd",
        b"SigBlk",
        b"SigIgn",
        b"SigCgt",
        b"CapInh",
        b"CapPrm",
        b"CapEff",
        b"CapBnd",
        b"CapAmb",
        b"NoNewPrivs",
        b"Seccomp",
    ];
    let mut seen = [false; REQUIRED.len()];
    for line in lines(buf) {
        let Some((key, v)) = key_value(line) else {
            continue;
        };
        let err = || ParseError(format!("bad {} line: {:?}", show(key), show(v)));
        let ok = match key {
            b"Name" => {
                // Only the leading tab is a separator: a name may begin or
                // end with spaces, so take the raw rest of the line.
                let raw = &line[line.iter().position(|&c| c == b':').unwrap_or(0) + 1..];
                let raw = raw.strip_prefix(b"\t").unwrap_or(raw);
                s.name = unescape_c(raw);
                true
            }
            b"Umask" => {
                s.umask = num_radix(v, 8).and_then(|n| u32::try_from(n).ok());
                s.umask.is_some()
            }
            b"State" => match v.first() {
                Some(&c) => {
                    s.state = c;
                    true
                }
                None => false,
            },
            b"Tgid" => dec_i32(v).map(|n| s.tgid = n).is_some(),
            b"Pid" => dec_i32(v).map(|n| s.pid = n).is_some(),
            b"PPid" => dec_i32(v).map(|n| s.ppid = n).is_some(),
            b"TracerPid" => dec_i32(v).map(|n| s.tracer_pid = n).is_some(),
            b"Uid" | b"Gid" => match id_list(v, dec_u32) {
                Some(ids) if ids.len() == 4 => {
                    let a = [ids[0], ids[1], ids[2], ids[3]];
                    if key == b"Uid" {
                        s.uid = a;
                    } else {
                        s.gid = a;
                    }
                    true
                }
                _ => false,
            },
            b"Groups" => id_list(v, dec_u32).map(|g| s.groups = g).is_some(),
            b"NStgid" => id_list(v, dec_i32).map(|g| s.ns_tgid = g).is_some(),
            b"NSpid" => id_list(v, dec_i32).map(|g| s.ns_pid = g).is_some(),
            b"NSpgid" => id_list(v, dec_i32).map(|g| s.ns_pgid = g).is_some(),
            b"NSsid" => id_list(v, dec_i32).map(|g| s.ns_sid = g).is_some(),
            b"Threads" => dec_u32(v).map(|n| s.threads = n).is_some(),
            b"SigQ" => {
                let mut it = v.splitn(2, |&c| c == b'/');
                match (it.next().and_then(dec_u64), it.next().and_then(dec_u64)) {
                    (Some(a), Some(b)) => {
                        s.sig_q = (a, b);
                        true
                    }
                    _ => false,
                }
            }
            b"SigPnd" => hex_u64(v).map(|n| s.sig_pnd = n).is_some(),
            b"ShdPnd" => hex_u64(v).map(|n| s.shd_pnd = n).is_some(),
            b"SigBlk" => hex_u64(v).map(|n| s.sig_blk = n).is_some(),
            b"SigIgn" => hex_u64(v).map(|n| s.sig_ign = n).is_some(),
            b"SigCgt" => hex_u64(v).map(|n| s.sig_cgt = n).is_some(),
            b"CapInh" => hex_u64(v).map(|n| s.cap_inh = n).is_some(),
            b"CapPrm" => hex_u64(v).map(|n| s.cap_prm = n).is_some(),
            b"CapEff" => hex_u64(v).map(|n| s.cap_eff = n).is_some(),
            b"CapBnd" => hex_u64(v).map(|n| s.cap_bnd = n).is_some(),
            b"CapAmb" => hex_u64(v).map(|n| s.cap_amb = n).is_some(),
            b"NoNewPrivs" => match v {
                b"0" => {
                    s.no_new_privs = false;
                    true
                }
                b"1" => {
                    s.no_new_privs = true;
                    true
                }
                _ => false,
            },
            b"Seccomp" => dec_u32(v).map(|n| s.seccomp = n).is_some(),
            b"Seccomp_filters" => dec_u32(v).map(|n| s.seccomp_filters = n).is_some(),
            _ => true,
        };
        if !ok {
            return Err(err());
        }
        if let Some(i) = REQUIRED.iter().position(|k| *k == key) {
            seen[i] = true;
        }
    }
    // Seccomp is only printed with CONFIG_SECCOMP: its absence means 0.
    let seccomp = REQUIRED.len() - 1;
    seen[seccomp] = true;
    if let Some(i) = seen.iter().position(|s| !s) {
        return bad(format!("no {} line", show(REQUIRED[i])));
    }
    Ok(s)
}

/// `/proc/PID/status`.
pub fn status(pid: impl Into<Pid>) -> Result<Status> {
    let pid = pid.into();
    read_parse(proc_path(pid, "status"), parse_status)
}

/// `/proc/PID/task/TID/status` (signal masks and pending signals are per
/// thread).
pub fn task_status(pid: impl Into<Pid>, tid: impl Into<Tid>) -> Result<Status> {
    let pid = pid.into();
    let tid = tid.into();
    read_parse(task_path(pid, tid, "status"), parse_status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::proc::samples::STATUS;

    #[test]
    fn status_sample() {
        let s = parse_status(STATUS).unwrap();
        assert_eq!(s.name, b"cat");
        assert_eq!(s.umask, Some(0o022));
        assert_eq!(s.state, b'R');
        assert_eq!((s.tgid, s.pid, s.ppid, s.tracer_pid), (5338, 5338, 5327, 0));
        assert_eq!(s.uid, [0, 1, 2, 3]);
        assert_eq!(s.gid, [4, 5, 6, 7]);
        assert!(s.groups.is_empty());
        assert_eq!(s.ns_tgid, [5338, 1]);
        assert_eq!(s.ns_pid, [5338, 1]);
        assert_eq!(s.ns_pgid, [5327, 0]);
        assert_eq!(s.ns_sid, [3289, 0]);
        assert_eq!(s.threads, 1);
        assert_eq!(s.sig_q, (0, 96364));
        assert_eq!(s.shd_pnd, 0x100);
        assert_eq!(s.sig_blk, 0x10000);
        assert_eq!(s.sig_ign, 0x1000);
        assert_eq!(s.sig_cgt, 0x1_8000_0000);
        assert_eq!(s.cap_prm, 0x1ff_feff_ffff);
        assert!(s.no_new_privs);
        assert_eq!((s.seccomp, s.seccomp_filters), (2, 1));
    }

    fn status_with(from: &str, to: &str) -> Vec<u8> {
        let s = String::from_utf8(STATUS.to_vec()).unwrap();
        assert!(s.contains(from));
        s.replace(from, to).into_bytes()
    }

    #[test]
    fn status_odd_but_valid() {
        // An escaped name with a newline, a backslash, spaces and a colon.
        let s = parse_status(&status_with("Name:\tcat\n", "Name:\t a\\nb\\\\c: \n")).unwrap();
        assert_eq!(s.name, b" a\nb\\c: ");
        // A zombie: no Umask line.
        let s = parse_status(&status_with("Umask:\t0022\n", "")).unwrap();
        assert_eq!(s.umask, None);
        // No seccomp support.
        let s = parse_status(&status_with("Seccomp:\t2\n", "")).unwrap();
        assert_eq!(s.seccomp, 0);
        // Groups.
        let s = parse_status(&status_with("Groups:\t \n", "Groups:\t1 20 300 \n")).unwrap();
        assert_eq!(s.groups, [1, 20, 300]);
        // No trailing newline.
        assert!(parse_status(STATUS.strip_suffix(b"\n").unwrap()).is_ok());
    }

    #[test]
    fn status_bad_input_is_an_error() {
        assert_eq!(parse_status(b"").unwrap_err().0, "no Name line");
        assert!(parse_status(b"\n\n\n").is_err());
        assert!(parse_status(b"garbage").is_err());
        for (from, to, msg) in [
            ("Uid:\t0\t1\t2\t3\n", "", "no Uid line"),
            ("Uid:\t0\t1\t2\t3\n", "Uid:\t0\t1\t2\n", "bad Uid line"),
            ("Tgid:\t5338\n", "Tgid:\t-\n", "bad Tgid line"),
            ("SigQ:\t0/96364\n", "SigQ:\t0\n", "bad SigQ line"),
            (
                "SigBlk:\t0000000000010000\n",
                "SigBlk:\tzz\n",
                "bad SigBlk line",
            ),
            (
                "NoNewPrivs:\t1\n",
                "NoNewPrivs:\t2\n",
                "bad NoNewPrivs line",
            ),
            ("State:\tR (running)\n", "State:\t\n", "bad State line"),
            (
                "CapAmb:\t0000000000000000\n",
                "CapAmb:\t1ffffffffffffffff\n",
                "bad CapAmb",
            ),
        ] {
            let e = parse_status(&status_with(from, to)).unwrap_err();
            assert!(e.0.starts_with(msg), "{from:?} -> {to:?}: {e}");
        }
    }
}
