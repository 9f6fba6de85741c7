//! The `/proc` parsers read text a hostile process shapes (its command
//! name, its file names). On any bytes, no parser panics. And what a
//! process can choose comes back exactly: the input's first byte picks a
//! family, the rest is a name or path, written the way the kernel writes
//! it into a real sample (`stat`'s raw `(comm)`, `status`'s escaped
//! `Name:`, `maps`' `\012`-escaped path, `comm`'s raw line), which must
//! then parse back to the same bytes with every other field unchanged.
#![no_main]

use crtools::sys::proc::{self, samples};
use libfuzzer_sys::fuzz_target;

fn parse_all(b: &[u8]) {
    let _ = proc::parse_stat(b);
    let _ = proc::parse_status(b);
    let _ = proc::parse_maps(b);
    let _ = proc::parse_smaps(b);
    if let Ok(f) = proc::parse_fdinfo(b) {
        let _ = f.eventfd();
        let _ = f.timerfd();
        let _ = f.signalfd_mask();
        let _ = f.epoll_targets();
        let _ = f.inotify_watches();
    }
    let _ = proc::parse_mountinfo(b);
    let _ = proc::parse_timers(b);
    let _ = proc::parse_children(b);
    let _ = proc::parse_auxv(b);
    let _ = proc::parse_comm(b);
    let _ = proc::fdinfo_words(b);
    let _ = proc::split_nul(b);
    let _ = proc::unescape_c(b);
    let _ = proc::unescape_maps_path(b);
}

/// `sample` with the first `from` replaced by `to`.
fn with(sample: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = sample
        .windows(from.len())
        .position(|w| w == from)
        .expect("the sample has the field");
    [&sample[..at], to, &sample[at + from.len()..]].concat()
}

/// How the kernel prints a task name in `status`: `\n` and `\` escaped.
fn escape_status(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &c in name {
        match c {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            c => out.push(c),
        }
    }
    out
}

fn stat_keeps_comm(comm: &[u8]) {
    let base = proc::parse_stat(samples::STAT).expect("sample");
    let st = proc::parse_stat(&with(samples::STAT, b"(cat)", &[b"(", comm, b")"].concat()))
        .expect("a stat line with any comm parses");
    assert_eq!(st.comm, comm);
    assert_eq!(proc::Stat { comm: base.comm.clone(), ..st }, base);
}

fn status_keeps_name(name: &[u8]) {
    let base = proc::parse_status(samples::STATUS).expect("sample");
    let line = [b"Name:\t", &escape_status(name)[..], b"\n"].concat();
    let s = proc::parse_status(&with(samples::STATUS, b"Name:\tcat\n", &line))
        .expect("a status with any name parses");
    assert_eq!(s.name, name);
    assert_eq!(proc::Status { name: base.name.clone(), ..s }, base);
}

fn maps_keep_path(path: &[u8]) {
    // The kernel escapes only the newline; a name that begins with blanks,
    // holds a literal `\012` or ends in ` (deleted)` is ambiguous in maps
    // (map_files is read where that matters).
    if path.is_empty()
        || path[0].is_ascii_whitespace()
        || path.windows(4).any(|w| w == b"\\012")
        || path.ends_with(b" (deleted)")
    {
        return;
    }
    let mut esc = Vec::new();
    for &c in path {
        if c == b'\n' {
            esc.extend_from_slice(b"\\012");
        } else {
            esc.push(c);
        }
    }
    let line = [
        &b"7f0000202000-7f0000203000 r-xp 00001000 103:1f 12                        "[..],
        &esc,
        b"\n",
    ]
    .concat();
    let m = proc::parse_maps(&line).expect("a maps line with any path parses");
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].path, path);
    assert!(!m[0].deleted);
    assert_eq!(
        (m[0].start, m[0].end, m[0].offset, m[0].inode),
        (0x7f00_0020_2000, 0x7f00_0020_3000, 0x1000, 12)
    );
    assert_eq!((m[0].dev_major, m[0].dev_minor), (0x103, 0x1f));
    // Deleted: the suffix is taken off and noted.
    let del = [&line[..line.len() - 1], b" (deleted)\n"].concat();
    let m = proc::parse_maps(&del).expect("deleted");
    assert_eq!((m[0].path.as_slice(), m[0].deleted), (path, true));
}

fn comm_keeps_name(name: &[u8]) {
    assert_eq!(proc::parse_comm(&[name, b"\n"].concat()), name);
}

fn nul_lists_keep_strings(data: &[u8]) {
    // cmdline/environ: NUL-terminated strings, empty ones kept.
    let parts: Vec<&[u8]> = data.split(|&c| c == 0xff).collect();
    if parts.iter().any(|p| p.contains(&0)) {
        return;
    }
    let joined: Vec<u8> = parts.iter().flat_map(|p| [*p, b"\0"].concat()).collect();
    assert_eq!(proc::split_nul(&joined), parts);
}

fn children_keep_pids(data: &[u8]) {
    let pids: Vec<i32> = data
        .chunks(2)
        .map(|c| i32::from(c[0]) << 8 | i32::from(*c.get(1).unwrap_or(&0)))
        .collect();
    let text: String = pids.iter().map(|p| format!("{p} ")).collect();
    assert_eq!(proc::parse_children(text.as_bytes()).expect("children"), pids);
}

fuzz_target!(|data: &[u8]| {
    parse_all(data);
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => stat_keeps_comm(rest),
        1 => status_keeps_name(rest),
        2 => maps_keep_path(rest),
        3 => comm_keeps_name(rest),
        4 => nul_lists_keep_strings(rest),
        _ => children_keep_pids(rest),
    }
    // A real sample damaged at one byte parses or is refused, never panics.
    let sample = [
        samples::STAT,
        samples::STATUS,
        samples::MAPS,
        samples::SMAPS,
        samples::FDINFO,
        samples::TIMERS,
    ][usize::from(which) % 6];
    if let Some(&b) = rest.first() {
        let mut s = sample.to_vec();
        let at = rest.len() * 31 % s.len();
        s[at] = b;
        parse_all(&s);
        parse_all(&s[..at]);
    }
});
