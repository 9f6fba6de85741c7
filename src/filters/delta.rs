//! `cr-delta`: an image as a delta against an earlier one, and back.
//!
//! [`make`] turns a full image into a delta whose `PAGES` records keep only
//! the page units (pages, or the tail of an object's last page) that differ
//! from the base image at the same space, object and address; the others
//! become references. [`apply`] puts the full image back, byte for byte:
//! every other record passes through unchanged (kinds, sequence numbers,
//! compression and digests, keyed or not), and what the delta replaced
//! (the header, each rebuilt `PAGES` record, the end record) is carried in
//! it as it stood.
//!
//! Both images are read in order, never seeking: the base twice, first to
//! identify it (stream id and a digest of its whole contents: a wrong or
//! changed base is refused before anything is written), then in a merge
//! with the image, holding one base record at a time. Both are in
//! `cr-image(5)` ORDERING: each process's or object's pages together, in
//! ascending addresses. Pages of an object the base has earlier than where
//! the merge stands (processes in another order) are kept whole. A base
//! whose pages are out of that order is refused.
//!
//! A delta names its base in its header ([`DeltaBase`], after the
//! [`StreamHeader`]; the header has [`HDR_DELTA`], which `cr-restart`
//! refuses). A delta of a delta is refused: apply it first.

use std::collections::HashMap;
use std::io::{Read, Write};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::pipeline::{Counting, for_each};
use super::zstd::RecordCompressor;
use super::{FilterError, ProgressFn, Result, Stats};
use crate::image::stream::DIGEST_LEN;
use crate::image::wire::{self, Input, Wire};
use crate::image::{
    DATA_PREFIX, DataPrefix, DeltaBase, DeltaEnd, DeltaPages, F_ZSTD, HDR_DELTA, Head, Key,
    KeyCheck, Kind, RawRecord, Reader, SPACE_PROCESS, SPACE_SHMEM, SPACE_SYSV_SHM, StreamHeader,
    WriteOptions, Writer,
};

/// The zstd level a compressed `PAGES` record must come back from to be
/// kept as a delta (`cr-zstd`'s default); other compressed records are
/// kept whole.
const RECOMPRESS_LEVEL: i32 = super::zstd::DEFAULT_LEVEL;

/// An object whose pages a `PAGES` record holds: `(space, id)`.
type Group = (u32, u64);
/// Where a `PAGES` record's data lies: its group, first and end address.
type Span = (Group, u64, u64);

fn usage(msg: String) -> FilterError {
    FilterError::Usage(msg)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The group of a `PAGES` payload, when its pages can be shared with a base.
fn paged(payload: &[u8]) -> Option<(Group, DataPrefix, &[u8])> {
    let (p, data) = DataPrefix::parse(payload)?;
    matches!(p.space, SPACE_PROCESS | SPACE_SHMEM | SPACE_SYSV_SHM).then_some((
        (p.space, p.id),
        p,
        data,
    ))
}

/// What a record adds to a base's digest: its kind, sequence number, raw
/// length and the CRC32C of its raw payload, the same whatever its
/// compression or digests. This catches a wrong or changed base at the
/// speed of CRC32C; what proves the rebuilt image authentic is its own
/// digests, which `apply` reproduces and every reader checks.
fn fingerprint(head: &Head, payload: &[u8]) -> [u8; 14] {
    let mut f = [0u8; 14];
    f[0..2].copy_from_slice(&head.kind.0.to_le_bytes());
    f[2..6].copy_from_slice(&head.seq.to_le_bytes());
    f[6..10].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    f[10..14].copy_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    f
}

/// What identifies a base image, and the order of its objects.
#[derive(Debug, Clone)]
pub struct BaseId {
    pub stream_id: [u8; 16],
    /// See [`DeltaBase::base_digest`].
    pub digest: [u8; DIGEST_LEN],
    pub records: u64,
    pub page_size: u32,
    /// Each group with pages, by its place in the base.
    groups: HashMap<Group, usize>,
}

/// Reads a whole base image: its identity, and checks its pages are in
/// order. `name` names it in errors.
pub fn identify<R: Read + Send>(input: R, threads: usize, name: &str) -> Result<BaseId> {
    let mut reader = Reader::new(input)?;
    let header = reader.header().clone();
    if header.flags & HDR_DELTA != 0 {
        return Err(usage(format!(
            "{name} is itself a delta: rebuild it first (cr-delta --apply) and give the full image as the base"
        )));
    }
    let mut h = Sha256::new();
    let hraw = reader.header_raw().clone();
    h.update(fingerprint(&hraw.head, &hraw.payload()?));
    let mut groups: HashMap<Group, usize> = HashMap::new();
    let mut last: Option<(Group, u64)> = None;
    let make = || {
        |raw: RawRecord| -> Result<([u8; 14], Option<Span>)> {
            let payload = raw.payload()?;
            let d = fingerprint(&raw.head, &payload);
            let pos = (raw.head.kind == Kind::PAGES)
                .then(|| paged(&payload))
                .flatten()
                .map(|(g, p, data)| (g, p.addr, p.addr + data.len() as u64));
            Ok((d, pos))
        }
    };
    for_each(&mut reader, threads, make, |(d, pos)| {
        h.update(d);
        let Some((g, start, end)) = pos else {
            return Ok(());
        };
        let n = groups.len();
        let fresh = *groups.entry(g).or_insert(n) == n;
        match last {
            Some((lg, lend)) if lg == g && start < lend => {
                return Err(usage(format!(
                    "{name}: pages of space {} object {} at {start:#x} come after {lend:#x} (not in cr-image(5) order)",
                    g.0, g.1
                )));
            }
            Some((lg, _)) if lg != g && !fresh => {
                return Err(usage(format!(
                    "{name}: pages of space {} object {} are not all together (not in cr-image(5) order)",
                    g.0, g.1
                )));
            }
            _ => {}
        }
        last = Some((g, end));
        Ok(())
    })?;
    let records = reader.end().map_or(0, |e| e.records);
    Ok(BaseId {
        stream_id: header.stream_id,
        digest: h.finalize().into(),
        records,
        page_size: header.page_size,
        groups,
    })
}

/// The base's pages, read in order alongside the image.
struct Cursor<'a, R> {
    reader: Reader<R>,
    groups: &'a HashMap<Group, usize>,
    /// The current `PAGES` record: group place, start address, data.
    cur: Option<(usize, u64, Bytes)>,
    done: bool,
    prefix: usize,
}

impl<'a, R: Read> Cursor<'a, R> {
    fn new(reader: Reader<R>, base: &'a BaseId, name: &str) -> Result<Self> {
        if reader.header().stream_id != base.stream_id {
            return Err(usage(format!("{name} changed while it was read")));
        }
        Ok(Cursor {
            reader,
            groups: &base.groups,
            cur: None,
            done: false,
            prefix: DATA_PREFIX,
        })
    }

    fn advance(&mut self) -> Result<()> {
        self.cur = None;
        while let Some(raw) = self.reader.next_raw()? {
            if raw.head.kind != Kind::PAGES {
                continue;
            }
            let payload = raw.payload()?;
            if let Some((g, p, _)) = paged(&payload) {
                let place = *self.groups.get(&g).ok_or_else(|| {
                    usage(
                        "the base changed while it was read (pages of an object it did not have)"
                            .into(),
                    )
                })?;
                self.cur = Some((place, p.addr, payload.slice(self.prefix..)));
                return Ok(());
            }
        }
        self.done = true;
        Ok(())
    }

    /// The base's `len` bytes of `g` at `addr`, if one record holds them.
    /// Never goes back: a query before where the merge stands finds
    /// nothing, so any subsequence of the queries `make` asked finds what
    /// they found (which is what lets `apply` ask only for references).
    fn find(&mut self, g: Group, addr: u64, len: usize) -> Result<Option<&[u8]>> {
        let Some(&place) = self.groups.get(&g) else {
            return Ok(None);
        };
        loop {
            if self.cur.is_none() {
                if self.done {
                    return Ok(None);
                }
                self.advance()?;
                continue;
            }
            let (p, start, data) = self.cur.as_ref().expect("checked above");
            let end = start + data.len() as u64;
            if *p < place || (*p == place && end <= addr) {
                self.cur = None;
                continue;
            }
            if *p == place && *start <= addr && addr + len as u64 <= end {
                let off = (addr - start) as usize;
                let (_, _, data) = self.cur.as_ref().expect("checked above");
                return Ok(Some(&data[off..off + len]));
            }
            return Ok(None);
        }
    }
}

/// What `make` wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeltaStats {
    pub stream: Stats,
    /// Page units of the image, and how many became references.
    pub units: u64,
    pub referenced: u64,
}

/// How `make` works.
#[derive(Debug, Clone, Default)]
pub struct DeltaOptions {
    /// Threads identifying the base.
    pub threads: usize,
    /// Key the delta's own records (and check the image's keyed digests)
    /// with this key; without one a keyed image's records keep their keyed
    /// digests and the delta's own get plain ones.
    pub key: Option<Key>,
}

/// The delta's header payload: `header` with [`HDR_DELTA`], then `base`.
fn delta_header(header: &StreamHeader, base: &DeltaBase) -> Vec<u8> {
    let mut h = header.clone();
    h.flags |= HDR_DELTA;
    let mut out = wire::encode(&h);
    base.put(&mut out);
    out
}

/// The [`DeltaBase`] of a delta's header payload.
pub fn delta_base(header_payload: &[u8]) -> Option<DeltaBase> {
    let mut inp = Input::new(header_payload);
    StreamHeader::get(&mut inp).ok()?;
    DeltaBase::get(&mut inp).ok()
}

/// The image `input` as a delta against the base (read twice: `base_id`
/// to identify it, `base` to merge), written to `output`.
pub fn make<B1, B2, R, W>(
    base_id: B1,
    base: B2,
    input: R,
    output: W,
    opts: &DeltaOptions,
    mut progress: Option<ProgressFn<'_>>,
) -> Result<(W, DeltaStats)>
where
    B1: Read + Send,
    B2: Read,
    R: Read,
    W: Write,
{
    let mut reader = Reader::with_key(
        input,
        KeyCheck {
            key: opts.key.clone(),
            require: false,
        },
    )?;
    if reader.header().flags & HDR_DELTA != 0 {
        return Err(usage(
            "the image is already a delta: cr-delta makes deltas of full images".into(),
        ));
    }
    let id = identify(base_id, opts.threads, "the base")?;
    let header = reader.header().clone();
    if id.page_size != header.page_size {
        return Err(usage(format!(
            "the base has pages of {} bytes, the image of {}",
            id.page_size, header.page_size
        )));
    }
    let hraw = reader.header_raw().clone();
    let db = DeltaBase {
        base_stream_id: id.stream_id,
        base_digest: id.digest,
        base_records: id.records,
        header_flags: hraw.head.flags,
        header_raw_len: hraw.head.raw_len,
        header_stored: hraw.stored.to_vec(),
        header_digest: hraw.digest,
    };
    let payload = delta_header(&header, &db);
    let out = Counting::new(output);
    let mut writer = match &opts.key {
        Some(k) => Writer::keyed(out, &payload, k.clone())?,
        None => Writer::with_header_payload(
            out,
            &payload,
            WriteOptions {
                digest: reader.header_has_digest(),
            },
        )?,
    };
    let mut cursor = Cursor::new(Reader::new(base)?, &id, "the base")?;
    let mut stats = DeltaStats::default();
    let ps = header.page_size.max(1) as usize;
    let mut zstd: Option<RecordCompressor> = None;
    while let Some(raw) = reader.next_raw()? {
        let written = raw.head.kind == Kind::PAGES
            && write_delta_pages(&mut writer, &raw, &mut cursor, ps, &mut zstd, &mut stats)?;
        if !written {
            writer.write_stored(
                raw.head.kind,
                raw.head.flags,
                raw.head.raw_len as usize,
                &raw.stored,
                raw.digest,
            )?;
        }
        stats.stream.records += 1;
        stats.stream.bytes_in = reader.bytes_read();
        stats.stream.bytes_out = writer.bytes_written();
        if let Some(p) = progress.as_mut() {
            p(&stats.stream);
        }
    }
    let end = reader
        .end_raw()
        .expect("the reader stops only at the end record")
        .clone();
    writer.write(
        Kind::DELTA_END,
        &DeltaEnd {
            flags: end.head.flags,
            raw_len: end.head.raw_len,
            stored: end.stored.to_vec(),
            digest: end.digest,
        },
    )?;
    let out = writer.finish()?;
    stats.stream.bytes_in = reader.bytes_read();
    stats.stream.bytes_out = out.count;
    Ok((out.into_inner(), stats))
}

/// Writes `raw` (a `PAGES` record) as `DELTA_PAGES` when some of its pages
/// are the base's at the same place and its stored form can be made again
/// exactly; returns false (nothing written) otherwise.
fn write_delta_pages<W: Write, R: Read>(
    writer: &mut Writer<W>,
    raw: &RawRecord,
    cursor: &mut Cursor<'_, R>,
    ps: usize,
    zstd: &mut Option<RecordCompressor>,
    stats: &mut DeltaStats,
) -> Result<bool> {
    let payload = raw.payload()?;
    let Some((g, prefix, data)) = paged(&payload) else {
        return Ok(false);
    };
    let n = data.len().div_ceil(ps);
    stats.units += n as u64;
    let mut refs = vec![0u8; n.div_ceil(8)];
    // Literal units as ranges of `data`, adjacent ones merged.
    let mut lits: Vec<std::ops::Range<usize>> = Vec::new();
    let mut nref = 0u64;
    for (i, unit) in data.chunks(ps).enumerate() {
        let addr = prefix.addr + (i * ps) as u64;
        if cursor.find(g, addr, unit.len())? == Some(unit) {
            refs[i / 8] |= 1 << (i % 8);
            nref += 1;
        } else {
            let at = i * ps;
            match lits.last_mut() {
                Some(r) if r.end == at => r.end = at + unit.len(),
                _ => lits.push(at..at + unit.len()),
            }
        }
    }
    let level = if raw.head.compressed() {
        let c = match zstd {
            Some(c) => c,
            None => zstd.insert(RecordCompressor::new(RECOMPRESS_LEVEL)?),
        };
        let again = c.compress(plain(raw, payload.clone()));
        (again.stored == raw.stored).then_some(RECOMPRESS_LEVEL)
    } else {
        Some(0)
    };
    if let (true, Some(level)) = (nref > 0, level) {
        stats.referenced += nref;
        let dp = DeltaPages {
            flags: raw.head.flags,
            stored_len: raw.head.stored_len,
            raw_len: raw.head.raw_len,
            crc: crc32c::crc32c(&payload),
            digest: raw.digest,
            level,
            refs,
        };
        let pre = prefix.to_bytes();
        let meta = wire::encode(&dp);
        let mut parts: Vec<&[u8]> = vec![&pre, &meta];
        parts.extend(lits.into_iter().map(|r| &data[r]));
        writer.write_parts(Kind::DELTA_PAGES, &parts)?;
        return Ok(true);
    }
    Ok(false)
}

/// `raw`'s record with `payload` stored plain.
fn plain(raw: &RawRecord, payload: Bytes) -> RawRecord {
    RawRecord {
        head: Head {
            flags: 0,
            stored_len: payload.len() as u32,
            raw_len: payload.len() as u32,
            ..raw.head
        },
        stored: payload,
        digest: None,
    }
}

/// The full image back from the delta `input` and its base (read twice, as
/// in [`make`]), written to `output`. The base is checked before anything
/// is written.
pub fn apply<B1, B2, R, W>(
    base_id: B1,
    base: B2,
    input: R,
    output: W,
    threads: usize,
    mut progress: Option<ProgressFn<'_>>,
) -> Result<(W, Stats)>
where
    B1: Read + Send,
    B2: Read,
    R: Read,
    W: Write,
{
    let mut reader = Reader::new(input)?;
    let hraw = reader.header_raw().clone();
    let db = match delta_base(&hraw.payload()?) {
        Some(db) if reader.header().flags & HDR_DELTA != 0 => db,
        _ => {
            return Err(usage(
                "the image is not a delta (made by cr-delta --base): nothing to apply".into(),
            ));
        }
    };
    let id = identify(base_id, threads, "the base")?;
    check_base(&db, &id)?;
    let ps = reader.header().page_size.max(1) as usize;
    let header = RawRecord {
        head: Head {
            kind: Kind::HEADER,
            flags: db.header_flags,
            seq: 0,
            stored_len: db.header_stored.len() as u32,
            raw_len: db.header_raw_len,
        },
        stored: db.header_stored.into(),
        digest: db.header_digest,
    };
    let out = Counting::new(output);
    let mut writer = Writer::with_header_raw(out, &header, WriteOptions::default())?;
    let mut cursor = Cursor::new(Reader::new(base)?, &id, "the base")?;
    let mut stats = Stats::default();
    let mut end: Option<RawRecord> = None;
    let mut zstd: Option<(i32, RecordCompressor)> = None;
    while let Some(raw) = reader.next_raw()? {
        let seq = raw.head.seq;
        if end.is_some() {
            return Err(usage(format!(
                "corrupt delta: record {seq} ({}) after its delta-end record",
                raw.head.kind
            )));
        }
        match raw.head.kind {
            Kind::DELTA_END => {
                let e: DeltaEnd = raw.decode()?.decode()?;
                end = Some(RawRecord {
                    head: Head {
                        kind: Kind::END,
                        flags: e.flags,
                        seq,
                        stored_len: e.stored.len() as u32,
                        raw_len: e.raw_len,
                    },
                    stored: e.stored.into(),
                    digest: e.digest,
                });
            }
            Kind::DELTA_PAGES => {
                let rec = raw.decode()?;
                let (dp, full) = rebuild(&rec.payload, seq, ps, &mut cursor)?;
                let stored = stored_again(&dp, full, seq, &mut zstd)?;
                writer.write_stored(
                    Kind::PAGES,
                    dp.flags,
                    dp.raw_len as usize,
                    &stored,
                    dp.digest,
                )?;
            }
            _ => writer.write_stored(
                raw.head.kind,
                raw.head.flags,
                raw.head.raw_len as usize,
                &raw.stored,
                raw.digest,
            )?,
        }
        stats.records += 1;
        stats.bytes_in = reader.bytes_read();
        stats.bytes_out = writer.bytes_written();
        if let Some(p) = progress.as_mut() {
            p(&stats);
        }
    }
    let end = end.ok_or_else(|| usage("corrupt delta: no delta-end record".into()))?;
    let out = writer.finish_as(&end)?;
    stats.bytes_in = reader.bytes_read();
    stats.bytes_out = out.count;
    Ok((out.into_inner(), stats))
}

/// Whether `id` is the base the delta `db` was made against, unchanged.
fn check_base(db: &DeltaBase, id: &BaseId) -> Result<()> {
    if id.stream_id != db.base_stream_id {
        return Err(usage(format!(
            "wrong base: the delta was made against stream {}, the base given is stream {}",
            hex(&db.base_stream_id),
            hex(&id.stream_id)
        )));
    }
    if id.digest != db.base_digest || id.records != db.base_records {
        return Err(usage(format!(
            "the base (stream {}) has changed since the delta was made: its digest is {}, the delta needs {}",
            hex(&id.stream_id),
            hex(&id.digest),
            hex(&db.base_digest)
        )));
    }
    Ok(())
}

/// A rebuilt `PAGES` payload stored as the original image stored it:
/// compressed again at the recorded level when it was, which must give the
/// same bytes (else the record's digest could not hold).
fn stored_again(
    dp: &DeltaPages,
    full: Vec<u8>,
    seq: u32,
    zstd: &mut Option<(i32, RecordCompressor)>,
) -> Result<Bytes> {
    Ok(if dp.flags & F_ZSTD != 0 {
        let c = match zstd {
            Some((l, c)) if *l == dp.level => c,
            _ => &mut zstd.insert((dp.level, RecordCompressor::new(dp.level)?)).1,
        };
        let head = Head {
            kind: Kind::PAGES,
            flags: 0,
            seq,
            stored_len: full.len() as u32,
            raw_len: full.len() as u32,
        };
        let r = c.compress(plain(
            &RawRecord {
                head,
                stored: Bytes::new(),
                digest: None,
            },
            full.into(),
        ));
        if !r.head.compressed() || r.head.stored_len != dp.stored_len {
            return Err(usage(format!(
                "record {seq}: the rebuilt pages do not compress back to the image's bytes (another zstd?)"
            )));
        }
        r.stored
    } else {
        full.into()
    })
}

/// The raw `PAGES` payload a `DELTA_PAGES` payload stands for.
fn rebuild<R: Read>(
    payload: &[u8],
    seq: u32,
    ps: usize,
    cursor: &mut Cursor<'_, R>,
) -> Result<(DeltaPages, Vec<u8>)> {
    let bad = |why: String| usage(format!("corrupt delta: record {seq} (delta-pages): {why}"));
    let (prefix, rest) = DataPrefix::parse(payload).ok_or_else(|| bad("too short".into()))?;
    let mut inp = Input::new(rest);
    let dp = DeltaPages::get(&mut inp).map_err(|e| bad(e.to_string()))?;
    let mut lits = &rest[rest.len() - inp.remaining()..];
    let len = (dp.raw_len as usize)
        .checked_sub(DATA_PREFIX)
        .ok_or_else(|| bad("raw length shorter than its prefix".into()))?;
    let n = len.div_ceil(ps);
    if dp.refs.len() != n.div_ceil(8) {
        return Err(bad("reference bits do not match its length".into()));
    }
    let g = (prefix.space, prefix.id);
    let mut full = Vec::with_capacity(dp.raw_len as usize);
    full.extend_from_slice(&prefix.to_bytes());
    for i in 0..n {
        let ulen = ps.min(len - i * ps);
        let addr = prefix.addr + (i * ps) as u64;
        if dp.refs[i / 8] & (1 << (i % 8)) != 0 {
            let from = cursor.find(g, addr, ulen)?.ok_or_else(|| {
                usage(format!(
                    "the base has no page of space {} object {} at {addr:#x} that the delta refers to",
                    g.0, g.1
                ))
            })?;
            full.extend_from_slice(from);
        } else {
            if lits.len() < ulen {
                return Err(bad("fewer pages than its reference bits say".into()));
            }
            full.extend_from_slice(&lits[..ulen]);
            lits = &lits[ulen..];
        }
    }
    if !lits.is_empty() {
        return Err(bad("more pages than its reference bits say".into()));
    }
    if crc32c::crc32c(&full) != dp.crc {
        return Err(usage(format!(
            "record {seq}: the rebuilt pages of space {} object {} at {:#x} do not match their CRC (wrong base?)",
            g.0, g.1, prefix.addr
        )));
    }
    Ok((dp, full))
}

/// How many page units a `DELTA_PAGES` payload takes from the base (0 for
/// a damaged one).
pub fn base_units(payload: &[u8]) -> u64 {
    let Some((_, rest)) = DataPrefix::parse(payload) else {
        return 0;
    };
    DeltaPages::get(&mut Input::new(rest))
        .map_or(0, |dp| dp.refs.iter().map(|b| b.count_ones() as u64).sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::synth::{self, Spec};

    /// `img` with one byte of every `every`-th page record changed (a
    /// `PAGES` payload past its prefix), digests and CRCs made anew.
    fn changed(img: &[u8], every: usize) -> Vec<u8> {
        let mut r = Reader::new(img).unwrap();
        let hdr = r.header_raw().decode().unwrap().payload;
        let mut w = Writer::with_header_payload(Vec::new(), &hdr, WriteOptions::default()).unwrap();
        let mut n = 0;
        while let Some(rec) = r.next_record().unwrap() {
            let mut p = rec.payload.to_vec();
            if rec.kind == Kind::PAGES {
                if n % every == 0 {
                    p[DATA_PREFIX + 5] ^= 1;
                }
                n += 1;
            }
            w.write_record(rec.kind, &p).unwrap();
        }
        w.finish().unwrap()
    }

    fn make_vec(base: &[u8], img: &[u8]) -> Result<(Vec<u8>, DeltaStats)> {
        make(base, base, img, Vec::new(), &DeltaOptions::default(), None)
    }

    fn apply_vec(base: &[u8], d: &[u8]) -> Result<Vec<u8>> {
        apply(base, base, d, Vec::new(), 1, None).map(|(v, _)| v)
    }

    #[test]
    fn a_delta_rebuilds_the_image_byte_for_byte() {
        let base = synth::generate(&Spec::small(7, 2 << 20));
        let img = changed(&base, 3);
        let (d, st) = make_vec(&base, &img).unwrap();
        assert!(st.referenced > 0 && st.referenced < st.units, "{st:?}");
        assert!(d.len() < img.len(), "{} >= {}", d.len(), img.len());
        assert_eq!(apply_vec(&base, &d).unwrap(), img);
        // Against itself: every unit a reference.
        let (d, st) = make_vec(&base, &base).unwrap();
        assert_eq!(st.referenced, st.units);
        assert_eq!(apply_vec(&base, &d).unwrap(), base);
    }

    #[test]
    fn wrong_changed_and_chained_bases_are_refused() {
        let base = synth::generate(&Spec::small(7, 1 << 20));
        let img = changed(&base, 2);
        let (d, _) = make_vec(&base, &img).unwrap();
        let other = synth::generate(&Spec::small(8, 1 << 20));
        let e = apply_vec(&other, &d).unwrap_err().to_string();
        assert!(e.contains("wrong base"), "{e}");
        // Same stream id, other contents.
        let e = apply_vec(&changed(&base, 5), &d).unwrap_err().to_string();
        assert!(e.contains("has changed"), "{e}");
        let e = make_vec(&d, &img).unwrap_err().to_string();
        assert!(e.contains("itself a delta"), "{e}");
        let e = make_vec(&base, &d).unwrap_err().to_string();
        assert!(e.contains("already a delta"), "{e}");
        let e = apply_vec(&base, &img).unwrap_err().to_string();
        assert!(e.contains("not a delta"), "{e}");
    }
}
