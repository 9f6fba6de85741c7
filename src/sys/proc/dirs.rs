//! Directories and links: `task/`, `task/TID/children`, `fd/`, `exe`, `cwd`, `root`.

use super::*;

/// Numeric entries of a `/proc` directory (unsorted).
fn numeric_entries(path: &Path) -> Result<Vec<i32>> {
    let rd = std::fs::read_dir(path).map_err(|e| ProcError::io(path, e))?;
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| ProcError::io(path, e))?;
        if let Some(n) = dec_i32(ent.file_name().as_bytes()) {
            out.push(n);
        }
    }
    Ok(out)
}

/// Thread ids of process `pid`, from `/proc/PID/task`: the thread-group
/// leader (`pid` itself) first if it is listed, the others in ascending order.
pub fn tasks(pid: impl Into<Pid>) -> Result<Vec<i32>> {
    let pid = pid.into();
    let mut tids = numeric_entries(&proc_path(pid, "task"))?;
    tids.sort_unstable_by_key(|&t| (t != pid.as_raw(), t));
    Ok(tids)
}

/// [`tasks`], typed.
pub fn threads(pid: Pid) -> Result<Vec<Tid>> {
    Ok(tasks(pid)?.into_iter().map(Tid::from_raw).collect())
}

/// Parse a `children` file: pids separated by spaces.
pub fn parse_children(buf: &[u8]) -> ParseResult<Vec<i32>> {
    words(buf.trim_ascii())
        .map(|w| dec_i32(w).map_or_else(|| bad(format!("bad pid {:?}", show(w))), Ok))
        .collect()
}

/// Children of thread `tid` of process `pid`, from
/// `/proc/PID/task/TID/children` (a process's children are spread over the
/// threads that forked them: ask every thread).
pub fn children(pid: impl Into<Pid>, tid: impl Into<Tid>) -> Result<Vec<i32>> {
    let pid = pid.into();
    let tid = tid.into();
    read_parse(task_path(pid, tid, "children"), parse_children)
}

/// [`children`], typed.
pub fn child_pids(pid: Pid, tid: Tid) -> Result<Vec<Pid>> {
    Ok(children(pid, tid)?.into_iter().map(Pid::from_raw).collect())
}

/// The numbers of the open descriptors of `pid`, sorted (no links read).
pub fn fd_numbers(pid: impl Into<Pid>) -> Result<Vec<i32>> {
    let mut nums = numeric_entries(&proc_path(pid.into(), "fd"))?;
    nums.sort_unstable();
    Ok(nums)
}

/// Open file descriptors of `pid` and what `/proc/PID/fd/N` links to
/// (`/path`, `pipe:[ino]`, `socket:[ino]`, `anon_inode:[eventfd]`, ...),
/// sorted by fd. A descriptor closed while listing is left out.
pub fn fds(pid: impl Into<Pid>) -> Result<Vec<(i32, Vec<u8>)>> {
    let pid = pid.into();
    let dir = proc_path(pid, "fd");
    let mut nums = numeric_entries(&dir)?;
    nums.sort_unstable();
    let mut out = Vec::with_capacity(nums.len());
    for fd in nums {
        match readlink_bytes(dir.join(fd.to_string())) {
            Ok(target) => out.push((fd, target)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// `readlink /proc/PID/exe`: the executable's path (with ` (deleted)` if it
/// was removed).
pub fn exe(pid: impl Into<Pid>) -> Result<Vec<u8>> {
    let pid = pid.into();
    readlink_bytes(proc_path(pid, "exe"))
}

/// `readlink /proc/PID/cwd`.
pub fn cwd(pid: impl Into<Pid>) -> Result<Vec<u8>> {
    let pid = pid.into();
    readlink_bytes(proc_path(pid, "cwd"))
}

/// `readlink /proc/PID/root`.
pub fn root(pid: impl Into<Pid>) -> Result<Vec<u8>> {
    let pid = pid.into();
    readlink_bytes(proc_path(pid, "root"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_samples() {
        assert_eq!(parse_children(b"12 345 ").unwrap(), [12, 345]);
        assert!(parse_children(b"").unwrap().is_empty());
        assert!(parse_children(b"12 x").is_err());
    }
}
