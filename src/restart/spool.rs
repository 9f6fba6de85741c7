//! Holding the rest of a stream aside while the original process still
//! holds a pid we need.
//!
//! In `ckpt --kill PID | cr-restart` the original dies only after the whole
//! image has been written, but the restorer needs its pid before it can
//! take page data. So when a pid is held by a live process, the restorer
//! copies the remaining records, already CRC-checked, to an unlinked
//! temporary file (bounded memory), waits a bounded time for the pid,
//! and replays them from there.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};

use bytes::Bytes;

use crate::error::{Context, Result};
use crate::image::{Head, Kind, RawRecord, Reader};

/// Where the restorer takes bulk records from.
pub enum Source<'a, R: Read> {
    Live(&'a mut Reader<R>),
    Spooled(BufReader<File>),
}

fn tmpfile() -> Result<File> {
    let dir = std::env::var_os("TMPDIR").unwrap_or_else(|| "/var/tmp".into());
    let mut o = std::fs::OpenOptions::new();
    o.read(true).write(true);
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut o, libc::O_TMPFILE);
    o.mode_private()
        .open(&dir)
        .or_else(|_| {
            let mut o = std::fs::OpenOptions::new();
            o.read(true).write(true);
            std::os::unix::fs::OpenOptionsExt::custom_flags(&mut o, libc::O_TMPFILE);
            o.mode_private().open("/tmp")
        })
        .ctx(|| "cannot create a temporary file to hold the image".into())
}

trait Private {
    fn mode_private(&mut self) -> &mut Self;
}
impl Private for std::fs::OpenOptions {
    fn mode_private(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

/// Copies `first` and every record after it up to the end record (which
/// the reader verifies) into a temporary file.
pub fn spool<R: Read>(first: Option<RawRecord>, reader: &mut Reader<R>) -> Result<BufReader<File>> {
    let f = tmpfile()?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let mut next = first;
    while let Some(r) = next {
        let h = r.head;
        let mut hd = [0u8; 17];
        hd[0..2].copy_from_slice(&h.kind.0.to_le_bytes());
        hd[2..4].copy_from_slice(&h.flags.to_le_bytes());
        hd[4..8].copy_from_slice(&h.seq.to_le_bytes());
        hd[8..12].copy_from_slice(&h.stored_len.to_le_bytes());
        hd[12..16].copy_from_slice(&h.raw_len.to_le_bytes());
        hd[16] = r.digest.is_some() as u8;
        let io = |e| crate::Error::Io {
            what: "cannot write the temporary copy of the image".into(),
            source: e,
        };
        w.write_all(&hd).map_err(io)?;
        w.write_all(&r.stored).map_err(io)?;
        if let Some(d) = &r.digest {
            w.write_all(d).map_err(io)?;
        }
        next = reader.next_raw()?;
    }
    let mut f = w
        .into_inner()
        .map_err(|e| e.into_error())
        .ctx(|| "cannot write the temporary copy of the image".into())?;
    f.seek(SeekFrom::Start(0))
        .ctx(|| "cannot rewind the temporary copy".into())?;
    Ok(BufReader::with_capacity(1 << 20, f))
}

impl<R: Read> Source<'_, R> {
    pub fn next_record(&mut self) -> Result<Option<RawRecord>> {
        match self {
            Source::Live(r) => Ok(r.next_raw()?),
            Source::Spooled(f) => {
                let mut hd = [0u8; 17];
                match f.read_exact(&mut hd) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                    Err(e) => return Err(e).ctx(|| "cannot read the temporary copy".into()),
                }
                let u32_at =
                    |i: usize| u32::from_le_bytes(hd[i..i + 4].try_into().expect("4 bytes"));
                let head = Head {
                    kind: Kind(u16::from_le_bytes([hd[0], hd[1]])),
                    flags: u16::from_le_bytes([hd[2], hd[3]]),
                    seq: u32_at(4),
                    stored_len: u32_at(8),
                    raw_len: u32_at(12),
                };
                let mut stored = vec![0u8; head.stored_len as usize];
                f.read_exact(&mut stored)
                    .ctx(|| "cannot read the temporary copy".into())?;
                let digest = if hd[16] != 0 {
                    let mut d = [0u8; 32];
                    f.read_exact(&mut d)
                        .ctx(|| "cannot read the temporary copy".into())?;
                    Some(d)
                } else {
                    None
                };
                Ok(Some(RawRecord {
                    head,
                    stored: Bytes::from(stored),
                    digest,
                }))
            }
        }
    }
}
