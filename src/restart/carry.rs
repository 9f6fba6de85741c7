//! Which file each path of the image becomes on this host, decided before
//! any process is created: `--remap PATH=NEWPATH`, then the host's own
//! file if it is the checkpointed one, else the copy the image carries
//! (`ckpt --carry-files`), else a refusal naming the file.
//!
//! The carried copies (`CARRY_FILE`, `CARRY_DATA`, read with the
//! metadata) are held in memfds of the restorer; a path that resolves to
//! one becomes `/proc/<restorer>/fd/N` everywhere the image names it (the
//! descriptors' files, the mappings, the exe link), so the rest of the
//! restore opens it like any file. A process writing to a carried copy
//! writes to its private, unlinked copy.
//!
//! "The checkpointed one": same size and ELF build id, and the same mtime
//! or else the same SHA-256. A file held open for writing that exists here
//! is used as it is (it is where the writes belong; a log may have grown
//! since); only a missing one is replaced by its carried copy. Without a
//! `CARRY_FILE` for a path (an image made without `--carry-files`) only its
//! existence can be checked.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::meta::{Meta, PathUse};
use crate::error::{Context, Error, Result};
use crate::image::{self, CarryFile, DataPrefix, Fault};
use crate::sys::fileid;

/// The carried files of an image, as read.
#[derive(Default)]
pub struct Carried {
    /// By `CARRY_FILE` id: the record, its memfd (if carried) and how many
    /// bytes of it arrived.
    files: HashMap<u64, (CarryFile, Option<OwnedFd>, u64)>,
}

fn bad(file: String, why: &'static str) -> Error {
    Fault::Carried { file, why }.into()
}

impl Carried {
    /// A `CARRY_FILE` record.
    pub fn add_file(&mut self, f: CarryFile) -> Result<()> {
        if self.files.contains_key(&f.id) || self.files.values().any(|(g, _, _)| g.path == f.path) {
            return Err(bad(f.id.to_string(), "appears twice"));
        }
        let fd = if f.carried {
            let name = Path::new(OsStr::from_bytes(&f.path))
                .file_name()
                .map(|n| n.as_bytes().to_vec())
                .unwrap_or_default();
            let mut name = [b"crtools-carried:".as_slice(), &name].concat();
            name.truncate(240);
            let name = std::ffi::CString::new(name).unwrap_or_default();
            let fd = nix::sys::memfd::memfd_create(
                name.as_c_str(),
                nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
            )
            .ctx(|| "cannot create a file for a carried copy".into())?;
            nix::unistd::ftruncate(&fd, f.size as i64).ctx(|| {
                format!(
                    "cannot hold the carried copy of {} ({} bytes)",
                    String::from_utf8_lossy(&f.path),
                    f.size
                )
            })?;
            Some(fd)
        } else {
            None
        };
        self.files.insert(f.id, (f, fd, 0));
        Ok(())
    }

    /// A `CARRY_DATA` record's payload: the next piece of a carried file.
    pub fn add_data(&mut self, seq: u32, payload: &[u8]) -> Result<()> {
        let (pre, data) = DataPrefix::parse(payload).ok_or(Fault::ShortData { seq })?;
        let Some((f, Some(fd), got)) = self.files.get_mut(&pre.id) else {
            return Err(bad(pre.id.to_string(), "has contents but is not carried"));
        };
        let end = pre.addr.saturating_add(data.len() as u64);
        if pre.space != image::SPACE_CARRIED || pre.addr != *got || end > f.size {
            return Err(bad(
                String::from_utf8_lossy(&f.path).into_owned(),
                "contents out of order or past its size",
            ));
        }
        crate::sys::fds::pwrite_all(fd.as_raw_fd(), data, pre.addr)
            .ctx(|| "cannot write a carried copy".into())?;
        *got = end;
        Ok(())
    }

    fn by_path(&self, path: &[u8]) -> Option<&(CarryFile, Option<OwnedFd>, u64)> {
        self.files.values().find(|(f, _, _)| f.path == path)
    }

    /// The carried files' records, in id order (for reporting).
    pub fn records(&self) -> Vec<&CarryFile> {
        let mut v: Vec<&CarryFile> = self.files.values().map(|(f, _, _)| f).collect();
        v.sort_by_key(|f| f.id);
        v
    }
}

/// `--remap PATH=NEWPATH`: a path equal to PATH, or under it as a
/// directory, is looked for at NEWPATH instead.
pub fn remap(path: &[u8], remaps: &[(PathBuf, PathBuf)]) -> Vec<u8> {
    for (from, to) in remaps {
        let from = from.as_os_str().as_bytes();
        let from = from.strip_suffix(b"/").unwrap_or(from);
        if path == from {
            return to.as_os_str().as_bytes().to_vec();
        }
        if let Some(rest) = path.strip_prefix(from)
            && rest.starts_with(b"/")
        {
            let to = to.as_os_str().as_bytes();
            let to = to.strip_suffix(b"/").unwrap_or(to);
            return [to, rest].concat();
        }
    }
    path.to_vec()
}

/// How this host's file differs from the checkpointed one, if it does.
fn differs(here: &File, was: &CarryFile) -> Result<Option<String>> {
    let id = fileid::stat_id(here).ctx(|| "cannot stat".into())?;
    if id.size != was.size {
        return Ok(Some(format!("{} bytes, was {}", id.size, was.size)));
    }
    let build = fileid::build_id(here);
    if build != was.build_id {
        return Ok(Some("another ELF build id".into()));
    }
    if (id.mtime_sec, id.mtime_nsec) == (was.mtime_sec, was.mtime_nsec) {
        return Ok(None);
    }
    let sum = fileid::full_id(here).ctx(|| "cannot read".into())?.sha256;
    Ok((sum != was.sha256).then(|| "other contents".to_string()))
}

/// Decides the file of every path in `meta` and rewrites the paths that
/// change (see the module documentation). Fails, naming the file, when a
/// file is missing or differs and the image carries no copy of it.
pub fn resolve(meta: &mut Meta, remaps: &[(PathBuf, PathBuf)]) -> Result<()> {
    let me = std::process::id();
    let mut decided: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut failure = None;
    let carried = meta.take_carried();
    for (f, _, got) in carried.files.values() {
        if f.carried && *got != f.size {
            return Err(bad(
                String::from_utf8_lossy(&f.path).into_owned(),
                "its copy is cut short",
            ));
        }
    }
    meta.for_each_path(|what, path| {
        if failure.is_some() {
            return;
        }
        if let Some(p) = decided.get(path.as_slice()) {
            *path = p.clone();
            return;
        }
        let name = String::from_utf8_lossy(path).into_owned();
        let here = remap(path, remaps);
        let shown = String::from_utf8_lossy(&here).into_owned();
        let rec = carried.by_path(path);
        let problem = match File::open(OsStr::from_bytes(&here)) {
            // A file open for writing that is here is the one to write to,
            // changed or not (a log that grew since).
            Ok(_) if what == (PathUse::File { writable: true }) => None,
            Ok(f) => match rec.map(|(r, _, _)| differs(&f, r)) {
                Some(Ok(d)) => d.map(|d| format!("{shown} differs from the checkpointed file ({d})")),
                Some(Err(e)) => Some(format!("{shown}: {e}")),
                None => None,
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Some(format!("{shown} is missing on this host"))
            }
            // Anything else is reported where the file is used.
            Err(_) => None,
        };
        let new = match (problem, rec) {
            (None, _) => here,
            (Some(_), Some((_, Some(fd), _))) => {
                format!("/proc/{me}/fd/{}", fd.as_raw_fd()).into_bytes()
            }
            (Some(p), _) if what == PathUse::Exe => {
                // The exe link alone: the mapping of the executable decides.
                let _ = p;
                here
            }
            (Some(p), _) => {
                let via = if here != *path {
                    format!(" (--remap of {name})")
                } else {
                    String::new()
                };
                failure = Some(Error::msg(format!(
                    "cannot restore: {p}{via}, and the image carries no copy of it (checkpoint with ckpt --carry-files, or give cr-restart --remap {name}=PATH)"
                )));
                return;
            }
        };
        decided.insert(path.clone(), new.clone());
        *path = new;
    });
    meta.put_carried(carried);
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remap_exact_and_under_a_directory() {
        let r = vec![
            (PathBuf::from("/opt/app/"), PathBuf::from("/srv/app")),
            (PathBuf::from("/etc/x.conf"), PathBuf::from("/tmp/y.conf")),
        ];
        assert_eq!(remap(b"/opt/app/bin/prog", &r), b"/srv/app/bin/prog");
        assert_eq!(remap(b"/opt/app", &r), b"/srv/app");
        assert_eq!(remap(b"/opt/apple", &r), b"/opt/apple");
        assert_eq!(remap(b"/etc/x.conf", &r), b"/tmp/y.conf");
        assert_eq!(remap(b"/etc/x.conf.d/a", &r), b"/etc/x.conf.d/a");
    }
}
