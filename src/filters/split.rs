//! `cr-split`: cuts a stream into ordered, self-checking parts of a fixed
//! size (a cut may fall inside a record), and joins parts back into the
//! original stream byte for byte.
//!
//! Every part is a part header followed by a run of stream bytes:
//!
//! ```text
//! offset size
//!  0     8   magic "\x89CRPART\n"
//!  8     2   version, 1
//! 10     2   flags: bit 0 = last part; other bits zero
//! 12     4   index of this part, from 0
//! 16    16   stream_id of the stream's HEADER record
//! 32     8   offset: stream bytes in the parts before this one
//! 40     8   len: stream bytes in this part
//! 48     4   CRC32C of bytes 0..48
//! ```
//!
//! All integers little-endian. Joining checks every header before writing
//! anything (order, stream, lengths, the last-part flag) and then runs the
//! reassembled bytes through the [`Reader`], writing each record only once
//! it has been verified, so a damaged set of parts never yields a silently
//! broken stream.

use std::io::{self, Read, Seek, SeekFrom, Write};

use super::{FilterError, Result};
use crate::image::{ImageError, Reader};

pub use crate::image::stream::PART_MAGIC;
pub const PART_VERSION: u16 = 1;
pub const PART_HEAD_LEN: usize = 52;
/// Part header flag: no part follows this one.
pub const PART_LAST: u16 = 1;

/// A decoded part header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartHeader {
    pub flags: u16,
    pub index: u32,
    pub stream_id: [u8; 16],
    pub offset: u64,
    pub len: u64,
}

impl PartHeader {
    pub fn is_last(&self) -> bool {
        self.flags & PART_LAST != 0
    }

    pub fn to_bytes(&self) -> [u8; PART_HEAD_LEN] {
        let mut b = [0u8; PART_HEAD_LEN];
        b[0..8].copy_from_slice(&PART_MAGIC);
        b[8..10].copy_from_slice(&PART_VERSION.to_le_bytes());
        b[10..12].copy_from_slice(&self.flags.to_le_bytes());
        b[12..16].copy_from_slice(&self.index.to_le_bytes());
        b[16..32].copy_from_slice(&self.stream_id);
        b[32..40].copy_from_slice(&self.offset.to_le_bytes());
        b[40..48].copy_from_slice(&self.len.to_le_bytes());
        let crc = crc32c::crc32c(&b[..48]);
        b[48..52].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses a part header; the error says what is wrong with it.
    pub fn parse(b: &[u8; PART_HEAD_LEN]) -> std::result::Result<Self, String> {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        if b[0..8] != PART_MAGIC {
            return Err("not a cr-split part (bad magic)".into());
        }
        if crc32c::crc32c(&b[..48]) != u32_at(48) {
            return Err("the part header is corrupt (CRC mismatch)".into());
        }
        if u16_at(8) != PART_VERSION {
            return Err(format!(
                "part format version {} is not supported",
                u16_at(8)
            ));
        }
        let flags = u16_at(10);
        if flags & !PART_LAST != 0 {
            return Err(format!("unknown part flags {flags:#x}"));
        }
        let mut stream_id = [0u8; 16];
        stream_id.copy_from_slice(&b[16..32]);
        Ok(PartHeader {
            flags,
            index: u32_at(12),
            stream_id,
            offset: u64_at(32),
            len: u64_at(40),
        })
    }
}

/// The bytes the reader consumed, kept until taken: a record's exact bytes
/// once the [`Reader`] has verified it.
struct Tee<R> {
    inner: R,
    seen: Vec<u8>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

impl<R> Tee<R> {
    fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.seen)
    }
}

/// What [`split`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitReport {
    pub parts: u32,
    /// Stream bytes (without part headers).
    pub bytes: u64,
}

struct OpenPart<W> {
    out: W,
    head: PartHeader,
}

/// Places verified runs of stream bytes into parts of exactly `size`
/// bytes (the last one shorter), cutting wherever a part is full.
struct Parts<W, F> {
    open: F,
    size: u64,
    stream_id: [u8; 16],
    cur: Option<OpenPart<W>>,
    count: u32,
    offset: u64,
}

impl<W: Write + Seek, F: FnMut(u32) -> Result<W>> Parts<W, F> {
    fn place(&mut self, mut bytes: &[u8]) -> Result<()> {
        let room = self.size - PART_HEAD_LEN as u64;
        while !bytes.is_empty() {
            if let Some(p) = self.cur.take_if(|p| p.head.len == room) {
                Self::close(p, false)?;
            }
            let part = match &mut self.cur {
                Some(p) => p,
                None => {
                    let mut out = (self.open)(self.count)?;
                    let head = PartHeader {
                        flags: 0,
                        index: self.count,
                        stream_id: self.stream_id,
                        offset: self.offset,
                        len: 0,
                    };
                    // A placeholder, rewritten when the part is closed.
                    out.write_all(&head.to_bytes())?;
                    self.count = self.count.checked_add(1).ok_or_else(|| {
                        FilterError::Usage("more than 2^32 parts: give a larger size".into())
                    })?;
                    self.cur.insert(OpenPart { out, head })
                }
            };
            let n = (room - part.head.len).min(bytes.len() as u64) as usize;
            part.out.write_all(&bytes[..n])?;
            part.head.len += n as u64;
            self.offset += n as u64;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    fn close(mut p: OpenPart<W>, last: bool) -> Result<()> {
        if last {
            p.head.flags |= PART_LAST;
        }
        p.out.seek(SeekFrom::Start(0))?;
        p.out.write_all(&p.head.to_bytes())?;
        p.out.flush()?;
        Ok(())
    }
}

/// The smallest part size: a part header and one stream byte.
pub const MIN_PART_SIZE: u64 = PART_HEAD_LEN as u64 + 1;

/// Cuts the stream from `input` into parts of at most `size` bytes, part
/// header included: every part but the last is exactly `size` bytes, cut
/// wherever it fills up, inside a record if need be. `open(i)` gives the
/// writer for part `i`. Each record is verified before it is written.
pub fn split<R, W, F>(input: R, size: u64, open: F) -> Result<SplitReport>
where
    R: Read,
    W: Write + Seek,
    F: FnMut(u32) -> Result<W>,
{
    if size < MIN_PART_SIZE {
        return Err(FilterError::Usage(format!(
            "part size {size} is too small (at least {MIN_PART_SIZE}: the part header alone takes {PART_HEAD_LEN} bytes)"
        )));
    }
    let mut reader = Reader::new(Tee {
        inner: input,
        seen: Vec::new(),
    })?;
    let mut parts = Parts {
        open,
        size,
        stream_id: reader.header().stream_id,
        cur: None,
        count: 0,
        offset: 0,
    };
    // The preamble and the header record.
    let mut unit = reader.get_mut().take();
    loop {
        let more = reader.next_raw()?.is_some();
        parts.place(&unit)?;
        unit = reader.get_mut().take();
        if !more {
            // `unit` is the end record, verified with the whole stream.
            parts.place(&unit)?;
            let last = parts.cur.take().expect("a part is open");
            Parts::<W, F>::close(last, true)?;
            return Ok(SplitReport {
                parts: parts.count,
                bytes: parts.offset,
            });
        }
    }
}

/// One part to join.
pub struct PartInput<R> {
    /// How errors name the part (its file name).
    pub name: String,
    pub input: R,
    /// The part's total size when known (a file's length), to refuse a
    /// truncated part before anything is written.
    pub len: Option<u64>,
}

/// The stream bytes of the parts in order, each part checked to hold
/// exactly the bytes its header promises.
struct Chain<R> {
    parts: Vec<(String, R, u64)>,
    cur: usize,
    left: u64,
}

impl<R: Read> Read for Chain<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some((name, input, len)) = self.parts.get_mut(self.cur) else {
                return Ok(0);
            };
            if self.left == 0 {
                // Exactly `len` bytes: anything after them is not ours.
                let mut probe = [0u8; 1];
                if read_some(input, &mut probe)? != 0 {
                    return Err(io::Error::other(format!(
                        "{name}: data after the {len} stream bytes its header announces"
                    )));
                }
                self.cur += 1;
                self.left = self.parts.get(self.cur).map_or(0, |p| p.2);
                continue;
            }
            if buf.is_empty() {
                return Ok(0);
            }
            let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
            let n = read_some(input, &mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{name}: truncated part: {} of {len} stream bytes are missing",
                        self.left
                    ),
                ));
            }
            self.left -= n as u64;
            return Ok(n);
        }
    }
}

fn read_some<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn read_part_header<R: Read>(part: &mut PartInput<R>) -> Result<PartHeader> {
    let bad = |reason: String| FilterError::Part {
        part: part.name.clone(),
        reason,
    };
    let mut b = [0u8; PART_HEAD_LEN];
    let mut got = 0;
    while got < b.len() {
        let n = read_some(&mut part.input, &mut b[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    if got == 0 {
        return Err(bad("empty file, not a cr-split part".into()));
    }
    if got < PART_HEAD_LEN {
        return Err(bad(
            "truncated: the file is shorter than a part header".into()
        ));
    }
    let head = PartHeader::parse(&b).map_err(bad)?;
    if let Some(total) = part.len {
        let want = PART_HEAD_LEN as u64 + head.len;
        if total < want {
            return Err(bad(format!(
                "truncated part: {} of {} stream bytes are missing",
                want - total,
                head.len
            )));
        }
        if total > want {
            return Err(bad(format!(
                "data after the {} stream bytes its header announces",
                head.len
            )));
        }
    }
    Ok(head)
}

/// The likely cause of a part that does not fit with the others.
const STALE: &str = "is it left over from another split with the same prefix?";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether the parts' headers, in the order given, make one whole stream:
/// the same stream, indexes 0, 1, ... in order, each starting where the
/// ones before end, and the last marked last.
fn check_parts(heads: &[PartHeader], names: &[String]) -> Result<()> {
    let mut offset = 0u64;
    for (i, head) in heads.iter().enumerate() {
        let bad = |reason: String| FilterError::Part {
            part: names[i].clone(),
            reason,
        };
        if head.stream_id != heads[0].stream_id {
            return Err(bad(format!(
                "belongs to another stream ({}, not {} like {}): {STALE}",
                hex(&head.stream_id),
                hex(&heads[0].stream_id),
                names[0]
            )));
        }
        let want = i as u32;
        if head.index != want {
            let reason = if let Some(j) = heads[..i].iter().position(|h| h.index == head.index) {
                format!(
                    "repeats part {} (already given as {})",
                    head.index, names[j]
                )
            } else if head.index < want {
                format!(
                    "is part {} but part {want} was expected (parts out of order)",
                    head.index
                )
            } else if i == 0 {
                format!("is part {}: the first part is missing", head.index)
            } else {
                format!(
                    "is part {} but part {want} was expected (a part is missing or out of order)",
                    head.index
                )
            };
            return Err(bad(reason));
        }
        if i > 0 && heads[i - 1].is_last() {
            return Err(bad(format!(
                "follows {}, which is the last part of its stream: {STALE}",
                names[i - 1]
            )));
        }
        if head.offset != offset {
            return Err(bad(format!(
                "starts at stream byte {} but the parts before it end at {offset}: {STALE}",
                head.offset
            )));
        }
        offset += head.len;
    }
    let last = heads.last().expect("at least one part");
    if !last.is_last() {
        return Err(FilterError::Part {
            part: names[names.len() - 1].clone(),
            reason: format!(
                "is part {} and not the last: the parts after it are missing",
                last.index
            ),
        });
    }
    Ok(())
}

/// Writes the stream that `parts` (in order) were cut from to `output`,
/// byte for byte; returns the output and the stream's length. Refuses a
/// missing, repeated, reordered, foreign or truncated part, naming it.
pub fn join<R: Read, W: Write>(mut parts: Vec<PartInput<R>>, mut output: W) -> Result<(W, u64)> {
    if parts.is_empty() {
        return Err(FilterError::Usage("no parts to join".into()));
    }
    // Every header first, so that nothing is written for a bad set.
    let mut heads: Vec<PartHeader> = Vec::with_capacity(parts.len());
    for part in parts.iter_mut() {
        heads.push(read_part_header(part)?);
    }
    let names: Vec<String> = parts.iter().map(|p| p.name.clone()).collect();
    check_parts(&heads, &names)?;
    let stream_id = heads[0].stream_id;
    let first_len = heads[0].len;
    let chain = Chain {
        parts: parts
            .into_iter()
            .zip(&heads)
            .map(|(p, h)| (p.name, p.input, h.len))
            .collect(),
        cur: 0,
        left: first_len,
    };
    let in_part = |reader: &Reader<Tee<Chain<R>>>, e: ImageError| -> FilterError {
        let cur = reader.get_ref().inner.cur.min(names.len() - 1);
        match e {
            // The chain's own errors already name the part.
            ImageError::Io(e) if e.get_ref().is_some() => ImageError::Io(e).into(),
            e => FilterError::InPart {
                part: names[cur].clone(),
                source: e,
            },
        }
    };
    let tee = Tee {
        inner: chain,
        seen: Vec::new(),
    };
    let mut reader = match Reader::new(tee) {
        Ok(r) => r,
        Err(ImageError::Io(e)) => return Err(ImageError::Io(e).into()),
        Err(e) => {
            return Err(FilterError::InPart {
                part: names[0].clone(),
                source: e,
            });
        }
    };
    if reader.header().stream_id != stream_id {
        return Err(FilterError::Part {
            part: names[0].clone(),
            reason: format!(
                "the parts name stream {} but the stream inside is {}",
                hex(&stream_id),
                hex(&reader.header().stream_id)
            ),
        });
    }
    let mut written = 0u64;
    loop {
        let bytes = reader.get_mut().take();
        output.write_all(&bytes)?;
        written += bytes.len() as u64;
        match reader.next_raw() {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => return Err(in_part(&reader, e)),
        }
    }
    let bytes = reader.get_mut().take();
    output.write_all(&bytes)?;
    written += bytes.len() as u64;
    output.flush()?;
    Ok((output, written))
}
