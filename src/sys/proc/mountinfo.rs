//! `/proc/PID/mountinfo`: which mount holds a device.

use super::*;

/// One line of `mountinfo`, the fields the toolkit uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mount {
    /// The mount's id.
    pub id: u32,
    /// Major number of the filesystem's device.
    pub major: u32,
    /// Minor number of the filesystem's device.
    pub minor: u32,
    /// The directory of the filesystem mounted here (`/` for all of it).
    pub root: Vec<u8>,
    /// Where it is mounted, unescaped.
    pub mount_point: Vec<u8>,
}

/// Parse a `mountinfo` file.
pub fn parse_mountinfo(buf: &[u8]) -> ParseResult<Vec<Mount>> {
    let mut out = Vec::new();
    for line in lines(buf) {
        let w: Vec<&[u8]> = words(line).collect();
        let err = || ParseError(format!("bad mountinfo line: {:?}", show(line)));
        if w.len() < 5 {
            return Err(err());
        }
        let (major, minor) = w[2].split_once_byte(b':').ok_or_else(err)?;
        out.push(Mount {
            id: dec_u32(w[0]).ok_or_else(err)?,
            major: dec_u32(major).ok_or_else(err)?,
            minor: dec_u32(minor).ok_or_else(err)?,
            root: unescape_c(w[3]),
            mount_point: unescape_c(w[4]),
        });
    }
    Ok(out)
}

/// `/proc/PID/mountinfo`.
pub fn mountinfo(pid: impl Into<Pid>) -> Result<Vec<Mount>> {
    read_parse(proc_path(pid.into(), "mountinfo"), parse_mountinfo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let m = parse_mountinfo(
            b"22 27 0:21 / /proc rw,relatime - proc proc rw\n27 1 254:0 / / rw - ext4 /dev/vda rw\n30 27 254:0 /srv /a\\040b rw - ext4 /dev/vda rw\n",
        )
        .unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!((m[1].major, m[1].minor), (254, 0));
        assert_eq!(m[2].root, b"/srv");
        assert_eq!(m[2].mount_point, b"/a b");
        assert!(parse_mountinfo(b"1 2 3\n").is_err());
        assert!(parse_mountinfo(b"1 2 x:0 / /\n").is_err());
        assert!(parse_mountinfo(b"").unwrap().is_empty());
    }
}
