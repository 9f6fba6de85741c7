//! `/proc/PID/smaps`: the `VmFlags` of every mapping.

use super::*;

/// What a checkpoint wants from one mapping of `/proc/PID/smaps`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SmapsEntry {
    /// The mapping's header line, as `maps` shows it.
    pub map: MapEntry,
    /// First address of the mapping.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// `VmFlags:` two-letter flags (`rd wr mr mw me ac sd ...`), in order.
    pub vm_flags: Vec<[u8; 2]>,
    /// `Rss:` in kB.
    pub rss_kb: u64,
    /// `Anonymous:` in kB.
    pub anonymous_kb: u64,
    /// `AnonHugePages:` in kB (transparent huge pages).
    pub anon_huge_pages_kb: u64,
    /// `Swap:` in kB.
    pub swap_kb: u64,
}

impl SmapsEntry {
    /// Whether `VmFlags:` contains `flag` (e.g. `b"dd"`, `b"hg"`, `b"wf"`).
    pub fn has_flag(&self, flag: &[u8; 2]) -> bool {
        self.vm_flags.iter().any(|f| f == flag)
    }
}

fn kb(v: &[u8]) -> Option<u64> {
    dec_u64(v.strip_suffix(b"kB").unwrap_or(v).trim_ascii())
}

/// Parse an `smaps` file: a `maps`-style header line per mapping, followed
/// by `Key: value` lines (a line whose first word ends with `:`). Every
/// mapping must have a `VmFlags:` line. Only the values of the keys kept
/// are looked at.
pub fn parse_smaps(buf: &[u8]) -> ParseResult<Vec<SmapsEntry>> {
    let mut out: Vec<SmapsEntry> = Vec::new();
    let mut has_flags: Vec<bool> = Vec::new();
    for line in lines(buf) {
        // The first word (spaces and tabs separate words), and the first
        // `:` in it: a key line's key ends there.
        let skip = line
            .iter()
            .position(|&c| c != b' ' && c != b'\t')
            .unwrap_or(line.len());
        let t = &line[skip..];
        let mut colon = None;
        let mut end = t.len();
        for (i, &c) in t.iter().enumerate() {
            match c {
                b' ' | b'\t' => {
                    end = i;
                    break;
                }
                b':' if colon.is_none() => colon = Some(i),
                _ => {}
            }
        }
        let Some(colon) = colon.filter(|_| t[..end].ends_with(b":")) else {
            let m = parse_map_line(line)?;
            out.push(SmapsEntry {
                start: m.start,
                end: m.end,
                map: m,
                ..SmapsEntry::default()
            });
            has_flags.push(false);
            continue;
        };
        let Some(cur) = out.last_mut() else {
            return bad(format!("{:?} before any mapping", show(line)));
        };
        let key = t[..colon].trim_ascii();
        let value = || t[colon + 1..].trim_ascii();
        let err = |v: &[u8]| ParseError(format!("bad {} line: {:?}", show(key), show(v)));
        let slot = match key {
            b"VmFlags" => {
                let v = value();
                let mut flags = Vec::with_capacity(v.len().div_ceil(3));
                for w in words(v) {
                    match w {
                        [a, b] => flags.push([*a, *b]),
                        _ => return Err(err(v)),
                    }
                }
                cur.vm_flags = flags;
                *has_flags.last_mut().expect("pushed with out") = true;
                continue;
            }
            b"Rss" => &mut cur.rss_kb,
            b"Anonymous" => &mut cur.anonymous_kb,
            b"AnonHugePages" => &mut cur.anon_huge_pages_kb,
            b"Swap" => &mut cur.swap_kb,
            _ => continue,
        };
        let v = value();
        *slot = kb(v).ok_or_else(|| err(v))?;
    }
    if let Some(i) = has_flags.iter().position(|h| !h) {
        return bad(format!(
            "mapping {:x}-{:x} has no VmFlags line",
            out[i].start, out[i].end
        ));
    }
    Ok(out)
}

/// `/proc/PID/smaps`. Slower than `maps`: the kernel walks the page tables.
pub fn smaps(pid: impl Into<Pid>) -> Result<Vec<SmapsEntry>> {
    let pid = pid.into();
    read_parse(proc_path(pid, "smaps"), parse_smaps)
}

/// `(start, VmFlags)` of every mapping, from `/proc/PID/smaps`.
pub fn smaps_vmflags(pid: impl Into<Pid>) -> Result<Vec<(u64, Vec<[u8; 2]>)>> {
    let pid = pid.into();
    Ok(smaps(pid)?
        .into_iter()
        .map(|e| (e.start, e.vm_flags))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::proc::samples::SMAPS;

    /// The parser as it was before it skipped what it does not keep: the
    /// same answers (and errors) on every cut of the sample and on other
    /// odd input.
    fn reference(buf: &[u8]) -> ParseResult<Vec<SmapsEntry>> {
        let mut out: Vec<SmapsEntry> = Vec::new();
        let mut has_flags: Vec<bool> = Vec::new();
        for line in lines(buf) {
            let first = words(line).next().unwrap_or_default();
            if !first.ends_with(b":") {
                let m = parse_map_line(line)?;
                out.push(SmapsEntry {
                    start: m.start,
                    end: m.end,
                    map: m,
                    ..SmapsEntry::default()
                });
                has_flags.push(false);
                continue;
            }
            let Some(cur) = out.last_mut() else {
                return bad(format!("{:?} before any mapping", show(line)));
            };
            let Some((key, v)) = key_value(line) else {
                continue;
            };
            let err = || ParseError(format!("bad {} line: {:?}", show(key), show(v)));
            let slot = match key {
                b"VmFlags" => {
                    let mut flags = Vec::new();
                    for w in words(v) {
                        match w {
                            [a, b] => flags.push([*a, *b]),
                            _ => return Err(err()),
                        }
                    }
                    cur.vm_flags = flags;
                    *has_flags.last_mut().expect("pushed with out") = true;
                    continue;
                }
                b"Rss" => &mut cur.rss_kb,
                b"Anonymous" => &mut cur.anonymous_kb,
                b"AnonHugePages" => &mut cur.anon_huge_pages_kb,
                b"Swap" => &mut cur.swap_kb,
                _ => continue,
            };
            *slot = kb(v).ok_or_else(err)?;
        }
        if let Some(i) = has_flags.iter().position(|h| !h) {
            return bad(format!(
                "mapping {:x}-{:x} has no VmFlags line",
                out[i].start, out[i].end
            ));
        }
        Ok(out)
    }

    #[test]
    fn same_as_the_reference() {
        let same = |b: &[u8]| {
            let (x, y) = (parse_smaps(b), reference(b));
            match (&x, &y) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(a), Err(b)) => assert_eq!(a.0, b.0),
                _ => panic!("{x:?} vs {y:?} for {:?}", show(b)),
            }
        };
        for cut in 0..=SMAPS.len() {
            same(&SMAPS[..cut]);
        }
        let own = std::fs::read("/proc/self/smaps").unwrap();
        assert!(parse_smaps(&own).is_ok());
        same(&own);
        for odd in [
            &b"\n"[..],
            b"  \t \n",
            b"Rss: 4 kB\n",
            b"7f00-7f01 r--p 0 00:00 0\n  Rss:\t  8 kB \n\tVmFlags: rd  mr\n",
            b"7f00-7f01 r--p 0 00:00 0\nA:b: 1\nRss:x 1\nSwap: 1 2 kB\nVmFlags: rd\n",
            b"7f00-7f01 r--p 0 00:00 0\nVmFlags: rdx\n",
            b"7f00-7f01 r--p 0 00:00 0\nRss :  3 kB\nVmFlags:\n\n",
            b"7f00-7f01 r--p 0 00:00 0\n\x0cRss: 3 kB\nVmFlags: rd\nSwap:: 1\n",
        ] {
            same(odd);
        }
    }

    #[test]
    fn smaps_sample() {
        let s = parse_smaps(SMAPS).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].start, 0x55571e099000);
        assert_eq!(s[0].vm_flags, [*b"rd", *b"mr", *b"mw", *b"me"]);
        // The header line parsed as `maps` parses it.
        let first = SMAPS.split(|&b| b == b'\n').next().unwrap();
        assert_eq!(s[0].map, parse_map_line(first).unwrap());
        assert_eq!(s[0].rss_kb, 8);
        assert_eq!((s[1].start, s[1].end), (0x7f0000000000, 0x7f0000400000));
        assert_eq!(
            (s[1].anonymous_kb, s[1].anon_huge_pages_kb, s[1].swap_kb),
            (2052, 2048, 12)
        );
        assert!(s[1].has_flag(b"hg") && s[1].has_flag(b"dd") && !s[1].has_flag(b"ex"));
        assert!(parse_smaps(b"").unwrap().is_empty());
    }

    #[test]
    fn smaps_bad_input_is_an_error() {
        let no_flags = &SMAPS[..SMAPS.len() - b"VmFlags: rd wr mr mw me ac sd hg dd\n".len()];
        assert!(parse_smaps(no_flags).unwrap_err().0.contains("no VmFlags"));
        assert!(
            parse_smaps(b"Rss: 4 kB\n")
                .unwrap_err()
                .0
                .contains("before any mapping")
        );
        assert!(parse_smaps(b"1000-2000 rw-p 0 0:0 0\nVmFlags: rdx\n").is_err());
        assert!(parse_smaps(b"1000-2000 rw-p 0 0:0 0\nRss: many kB\nVmFlags: rd\n").is_err());
        assert!(parse_smaps(b"1000-2000 rw-p 0 0:0 0\n\nVmFlags: rd\n").is_err());
    }
}
