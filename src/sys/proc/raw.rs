//! Files read as raw bytes: `cmdline`, `environ`, `auxv`, `comm`.

use super::*;

/// Raw `/proc/PID/cmdline`: NUL-terminated arguments (see [`split_nul`]).
pub fn cmdline(pid: impl Into<Pid>) -> Result<Vec<u8>> {
    let pid = pid.into();
    read_file(&proc_path(pid, "cmdline"))
}

/// Raw `/proc/PID/environ`: NUL-terminated `KEY=value` strings.
pub fn environ(pid: impl Into<Pid>) -> Result<Vec<u8>> {
    let pid = pid.into();
    read_file(&proc_path(pid, "environ"))
}

/// Split NUL-terminated strings (`cmdline`, `environ`), keeping empty ones:
/// `b"a\0\0b\0"` is `["a", "", "b"]`. A last string without its NUL is kept.
pub fn split_nul(buf: &[u8]) -> Vec<&[u8]> {
    if buf.is_empty() {
        return Vec::new();
    }
    let body = buf.strip_suffix(b"\0").unwrap_or(buf);
    body.split(|&c| c == 0).collect()
}

/// Raw `/proc/PID/auxv` (see [`parse_auxv`]).
pub fn auxv(pid: impl Into<Pid>) -> Result<Vec<u8>> {
    let pid = pid.into();
    read_file(&proc_path(pid, "auxv"))
}

/// Parse an auxiliary vector: native-endian `(type, value)` pairs of u64 up
/// to and without `AT_NULL`.
pub fn parse_auxv(buf: &[u8]) -> ParseResult<Vec<(u64, u64)>> {
    if !buf.len().is_multiple_of(16) {
        return bad(format!("auxv length {} is not a multiple of 16", buf.len()));
    }
    let mut out = Vec::new();
    for pair in buf.chunks_exact(16) {
        let (k, v) = pair.split_at(8);
        let k = u64::from_ne_bytes(k.try_into().expect("8 bytes"));
        let v = u64::from_ne_bytes(v.try_into().expect("8 bytes"));
        if k == 0 {
            break;
        }
        out.push((k, v));
    }
    Ok(out)
}

/// Parse a `comm` file: the name without its final newline (the name is
/// printed raw and may itself contain a newline).
pub fn parse_comm(buf: &[u8]) -> Vec<u8> {
    buf.strip_suffix(b"\n").unwrap_or(buf).to_vec()
}

/// `/proc/PID/comm`: the command name (at most 15 bytes, raw).
pub fn comm(pid: impl Into<Pid>) -> Result<Vec<u8>> {
    let pid = pid.into();
    Ok(parse_comm(&read_file(&proc_path(pid, "comm"))?))
}
