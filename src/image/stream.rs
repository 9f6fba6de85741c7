//! Framing: the preamble, record headers, and the sequential [`Reader`] and
//! [`Writer`].
//!
//! ```text
//! stream  := PREAMBLE record(HEADER) record* record(END)
//! record  := head(24 bytes) stored[stored_len] digest[32 if F_DIGEST]
//! head    := kind:u16 flags:u16 seq:u32 stored_len:u32 raw_len:u32 reserved:u32 crc:u32
//! ```
//!
//! `crc` is CRC32C over the head (with `crc` zero), the stored payload and
//! the digest. The digest is SHA-256 over `kind:u16 seq:u32 raw payload`,
//! so compressing a record does not change it.
//!
//! With [`F_HMAC`] the digest is keyed: HMAC-SHA-256 with a secret key over
//! the same bytes, except for the end record, whose keyed digest covers
//! `kind seq records stream_digest` and not its byte count (see
//! [`end_mac`]), so a filter without the key may still compress a keyed
//! stream. A reader without the key checks CRCs and the stream digest's
//! chain and skips keyed digests; a reader with the key checks them, and
//! can require every record to carry one.

use std::io::{self, Read, Write};

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};

use super::hmac::{Key, ct_eq};
use super::records::{EndRecord, FORMAT_MAJOR, Kind, StreamHeader};
use super::wire::{self, Wire};
use super::{ImageError, Result};

/// The first bytes of every stream. The high byte and the CR LF catch
/// 7-bit and line-ending mangling, as PNG's signature does.
pub const PREAMBLE: [u8; 8] = *b"\x89CRI\r\n\x1a\n";
pub const HEAD_LEN: usize = 24;
/// The magic a `cr-split` part starts with (see `filters::split`): a
/// reader says to join the parts when it meets one.
pub const PART_MAGIC: [u8; 8] = *b"\x89CRPART\n";
pub const DIGEST_LEN: usize = 32;
/// The largest payload a record may carry, raw or stored. Readers refuse
/// larger lengths before allocating.
pub const MAX_PAYLOAD: usize = 16 << 20;
/// Page data is cut into records of at most this many bytes of data.
pub const CHUNK: usize = 1 << 20;

/// Payload is a zstd frame; `raw_len` is its decompressed size.
pub const F_ZSTD: u16 = 1;
/// A SHA-256 digest of the raw payload follows the stored payload.
pub const F_DIGEST: u16 = 2;
/// The digest is HMAC-SHA-256 with a secret key, not plain SHA-256 (only
/// with [`F_DIGEST`]).
pub const F_HMAC: u16 = 4;
const KNOWN_FLAGS: u16 = F_ZSTD | F_DIGEST | F_HMAC;

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub kind: Kind,
    pub flags: u16,
    pub seq: u32,
    pub stored_len: u32,
    pub raw_len: u32,
}

impl Head {
    fn encode(&self, crc: u32) -> [u8; HEAD_LEN] {
        let mut b = [0u8; HEAD_LEN];
        b[0..2].copy_from_slice(&self.kind.0.to_le_bytes());
        b[2..4].copy_from_slice(&self.flags.to_le_bytes());
        b[4..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8..12].copy_from_slice(&self.stored_len.to_le_bytes());
        b[12..16].copy_from_slice(&self.raw_len.to_le_bytes());
        b[20..24].copy_from_slice(&crc.to_le_bytes());
        b
    }
    fn decode(b: &[u8; HEAD_LEN]) -> (Head, u32, u32) {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        (
            Head {
                kind: Kind(u16_at(0)),
                flags: u16_at(2),
                seq: u32_at(4),
                stored_len: u32_at(8),
                raw_len: u32_at(12),
            },
            u32_at(16),
            u32_at(20),
        )
    }
    pub fn compressed(&self) -> bool {
        self.flags & F_ZSTD != 0
    }
    pub fn has_digest(&self) -> bool {
        self.flags & F_DIGEST != 0
    }
    /// Whether the digest is keyed (HMAC-SHA-256).
    pub fn keyed(&self) -> bool {
        self.flags & F_HMAC != 0
    }
    /// Bytes this record takes in the stream.
    pub fn frame_len(&self) -> u64 {
        HEAD_LEN as u64
            + self.stored_len as u64
            + if self.has_digest() {
                DIGEST_LEN as u64
            } else {
                0
            }
    }
}

/// The digest of a record: SHA-256 over kind, sequence number and raw payload.
pub fn record_digest(kind: Kind, seq: u32, raw: &[u8]) -> [u8; DIGEST_LEN] {
    let mut h = Sha256::new();
    h.update(kind.0.to_le_bytes());
    h.update(seq.to_le_bytes());
    h.update(raw);
    h.finalize().into()
}

/// The keyed digest of a record other than the end record: HMAC-SHA-256
/// over kind, sequence number and raw payload.
pub fn keyed_digest(key: &Key, kind: Kind, seq: u32, raw: &[u8]) -> [u8; DIGEST_LEN] {
    key.mac(&[&kind.0.to_le_bytes(), &seq.to_le_bytes(), raw])
}

/// The keyed digest of the end record: HMAC-SHA-256 over `kind:u16 seq:u32
/// records:u64` and the stream digest (a 0 byte when absent, else 1 and the
/// 32 bytes). The byte count is left out: the reader checks it against the
/// stream anyway, and leaving it out lets `cr-zstd` recompress a keyed
/// stream without the key.
pub fn end_mac(key: &Key, seq: u32, end: &EndRecord) -> [u8; DIGEST_LEN] {
    let mut sd = vec![end.stream_digest.is_some() as u8];
    sd.extend_from_slice(end.stream_digest.as_ref().map_or(&[][..], |d| &d[..]));
    key.mac(&[
        &Kind::END.0.to_le_bytes(),
        &seq.to_le_bytes(),
        &end.records.to_le_bytes(),
        &sd,
    ])
}

fn frame_crc(head: &[u8; HEAD_LEN], stored: &[&[u8]], digest: Option<&[u8; DIGEST_LEN]>) -> u32 {
    let mut crc = crc32c::crc32c(head);
    for part in stored {
        // Page payloads are long: the SIMD CRC is about twice the crate's.
        crc = crate::sys::crc32c::append(crc, part);
    }
    if let Some(d) = digest {
        crc = crc32c::crc32c_append(crc, d);
    }
    crc
}

/// `x^(8 * len)` applied to a CRC32C: what [`crc32c_combine`] needs. The
/// GF(2) arithmetic of zlib's `crc32_combine` (1.2.12 and later), with the
/// CRC32C polynomial: a few hundred shifts, where `crc32c::crc32c_combine`
/// squares 32x32 matrices (about 15 us a call, 15 ms per GiB of records).
fn multmodp(a: u32, mut b: u32) -> u32 {
    const POLY: u32 = 0x82F6_3B78; // reflected CRC32C polynomial
    let mut m: u32 = 1 << 31;
    let mut p: u32 = 0;
    loop {
        if a & m != 0 {
            p ^= b;
            if a & (m - 1) == 0 {
                break;
            }
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
    p
}

/// `x^(2^k)` modulo the CRC32C polynomial, for k in 0..32.
fn x2n_table() -> &'static [u32; 32] {
    static TABLE: std::sync::OnceLock<[u32; 32]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0u32; 32];
        let mut p: u32 = 1 << 30; // x^1
        for e in t.iter_mut() {
            *e = p;
            p = multmodp(p, p);
        }
        t
    })
}

/// The CRC32C of `A || B` from the CRC32C of `A`, that of `B`, and `B`'s
/// length: lets worker threads checksum page data before the record header
/// (which holds the sequence number) exists.
pub fn crc32c_combine(crc1: u32, crc2: u32, len2: usize) -> u32 {
    let table = x2n_table();
    let mut n = len2;
    let mut k = 3; // bytes: x^(8 * len2)
    let mut x: u32 = 1 << 31; // x^0
    while n != 0 {
        if n & 1 != 0 {
            x = multmodp(table[k & 31], x);
        }
        n >>= 1;
        k += 1;
    }
    multmodp(x, crc1) ^ crc2
}

/// Writes all of `bufs` with as few `write_vectored` calls as the writer
/// takes (one, for a `BufWriter` whose buffer the record outgrows).
fn write_all_vectored<W: Write>(out: &mut W, mut bufs: &mut [io::IoSlice<'_>]) -> io::Result<()> {
    io::IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match out.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A record as it stands in the stream: checked against its CRC, payload not
/// yet decompressed nor its digest verified. Filters pass these through.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub head: Head,
    pub stored: Bytes,
    pub digest: Option<[u8; DIGEST_LEN]>,
}

/// A record with its raw payload, digest verified.
#[derive(Debug, Clone)]
pub struct Record {
    pub kind: Kind,
    pub seq: u32,
    pub payload: Bytes,
}

impl Record {
    /// Decodes a metadata payload.
    pub fn decode<T: Wire>(&self) -> Result<T> {
        wire::decode(&self.payload).map_err(|e| ImageError::Decode {
            seq: self.seq,
            kind: self.kind,
            reason: e.to_string(),
        })
    }
}

impl RawRecord {
    /// The raw payload: decompressed if needed, a plain digest checked if
    /// present. A keyed digest is not checked here: a [`Reader`] holding
    /// the key checks it as it reads.
    pub fn decode(&self) -> Result<Record> {
        let payload = self.payload()?;
        if let Some(d) = &self.digest
            && !self.head.keyed()
            && record_digest(self.head.kind, self.head.seq, &payload) != *d
        {
            return Err(ImageError::Digest {
                seq: self.head.seq,
                kind: self.head.kind,
            });
        }
        Ok(Record {
            kind: self.head.kind,
            seq: self.head.seq,
            payload,
        })
    }

    /// The raw payload, decompressed if needed; no digest checked.
    pub fn payload(&self) -> Result<Bytes> {
        if self.head.compressed() {
            decompress(&self.head, &self.stored)
        } else {
            Ok(self.stored.clone())
        }
    }

    /// Checks a keyed digest with `key` (not for the end record, whose
    /// keyed digest is [`end_mac`]).
    pub fn verify_keyed(&self, key: &Key) -> Result<()> {
        let ok = match &self.digest {
            Some(d) if self.head.keyed() => ct_eq(
                &keyed_digest(key, self.head.kind, self.head.seq, &self.payload()?),
                d,
            ),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(ImageError::KeyedDigest {
                seq: self.head.seq,
                kind: self.head.kind,
            })
        }
    }
}

/// Decompresses a zstd payload whose size the head declares, refusing a frame
/// that inflates to anything else.
pub fn decompress(head: &Head, stored: &[u8]) -> Result<Bytes> {
    let bad = |reason: String| ImageError::Corrupt {
        seq: head.seq,
        kind: head.kind,
        reason,
    };
    let want = head.raw_len as usize;
    let mut out = vec![0u8; want];
    let mut d = zstd::bulk::Decompressor::new().map_err(|e| bad(e.to_string()))?;
    let n = d
        .decompress_to_buffer(stored, &mut out[..])
        .map_err(|e| bad(format!("zstd: {e}")))?;
    if n != want {
        return Err(bad(format!(
            "decompressed to {n} bytes, header says {want}"
        )));
    }
    Ok(Bytes::from(out))
}

/// Payload buffers of a [`Reader`], handed out as `Bytes` and taken back
/// when the last `Bytes` of one is dropped: a stream of 1 MiB records
/// reuses a few allocations instead of allocating and zeroing 1 MiB per
/// record (`BytesMut::zeroed` was 7% of a 1 GiB restore).
#[derive(Clone, Default)]
struct Pool(std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

/// Buffers a [`Pool`] keeps at most, and the largest it keeps: bounded
/// memory whatever the stream holds.
const POOL_KEEP: usize = 4;
const POOL_MAX_BUF: usize = 2 * CHUNK + 4096;
/// Payloads smaller than this are allocated as before.
const POOL_MIN_PAYLOAD: usize = 64 << 10;

/// A pooled buffer holding a payload at `at`.
struct Pooled {
    buf: Vec<u8>,
    at: std::ops::Range<usize>,
    pool: Pool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[self.at.clone()]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if self.buf.len() > POOL_MAX_BUF {
            return;
        }
        if let Ok(mut p) = self.pool.0.lock()
            && p.len() < POOL_KEEP
        {
            p.push(std::mem::take(&mut self.buf));
        }
    }
}

impl Pool {
    /// A buffer with room for `len` initialised bytes (old contents: only
    /// what it grows by is zeroed).
    fn take(&self, len: usize) -> (Vec<u8>, std::ops::Range<usize>) {
        let mut v = self
            .0
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_default();
        if v.len() < len {
            v.resize(len, 0);
        }
        (v, 0..len)
    }
}

/// Reads a stream record by record, never seeking.
pub struct Reader<R> {
    inner: R,
    pool: Pool,
    header: StreamHeader,
    header_raw: RawRecord,
    next_seq: u32,
    bytes: u64,
    chain: Option<Sha256>,
    end: Option<EndRecord>,
    end_digest: bool,
    key: Option<Key>,
    require_key: bool,
    keyed: u64,
    end_raw: Option<RawRecord>,
}

/// How a [`Reader`] treats keyed digests.
#[derive(Debug, Clone, Default)]
pub struct KeyCheck {
    /// Verify every keyed digest with this key.
    pub key: Option<Key>,
    /// Refuse any record, and an end record without a stream digest, that
    /// is not keyed (needs `key`).
    pub require: bool,
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl<R: Read> Reader<R> {
    /// Reads the preamble and the header record.
    pub fn new(inner: R) -> Result<Self> {
        Self::with_key(inner, KeyCheck::default())
    }

    /// Like [`new`](Self::new), checking keyed digests as `check` says.
    pub fn with_key(mut inner: R, check: KeyCheck) -> Result<Self> {
        if check.require && check.key.is_none() {
            return Err(ImageError::Usage("a key is required to require one".into()));
        }
        let mut pre = [0u8; 8];
        let n = read_full(&mut inner, &mut pre)?;
        if n == 0 {
            return Err(ImageError::Empty);
        }
        if n == pre.len() && pre == PART_MAGIC {
            return Err(ImageError::SplitPart);
        }
        if n < pre.len() || pre != PREAMBLE {
            return Err(ImageError::BadMagic);
        }
        let mut r = Reader {
            inner,
            pool: Pool::default(),
            header: StreamHeader::default(),
            header_raw: RawRecord {
                head: Head {
                    kind: Kind::HEADER,
                    flags: 0,
                    seq: 0,
                    stored_len: 0,
                    raw_len: 0,
                },
                stored: Bytes::new(),
                digest: None,
            },
            next_seq: 0,
            bytes: PREAMBLE.len() as u64,
            chain: Some(Sha256::new()),
            end: None,
            end_digest: false,
            key: check.key,
            require_key: check.require,
            keyed: 0,
            end_raw: None,
        };
        let raw = r.read_frame()?.ok_or(ImageError::Truncated {
            what: "header record",
        })?;
        if raw.head.kind != Kind::HEADER {
            return Err(ImageError::Corrupt {
                seq: 0,
                kind: raw.head.kind,
                reason: "the first record is not a header".into(),
            });
        }
        r.check_key(&raw)?;
        let rec = raw.decode()?;
        let header: StreamHeader = rec.decode()?;
        if header.format_major != FORMAT_MAJOR {
            return Err(ImageError::Version(
                header.format_major,
                header.format_minor,
            ));
        }
        // The writer chains the header's digest too (see `Writer::write_frame`).
        r.chain_add(&raw);
        r.header = header;
        r.header_raw = raw;
        Ok(r)
    }

    pub fn header(&self) -> &StreamHeader {
        &self.header
    }
    /// The header record exactly as read, for filters that pass it on.
    pub fn header_raw(&self) -> &RawRecord {
        &self.header_raw
    }
    /// The end record, once [`next_raw`](Self::next_raw) has returned `None`.
    pub fn end(&self) -> Option<&EndRecord> {
        self.end.as_ref()
    }
    /// Bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }
    /// Records read so far (header and end included) whose digest is keyed.
    pub fn keyed_records(&self) -> u64 {
        self.keyed
    }
    /// Whether keyed digests are being verified (a key was given).
    pub fn verifies_keys(&self) -> bool {
        self.key.is_some()
    }

    /// Counts a keyed record and checks its digest when holding the key;
    /// refuses an unkeyed one when a key is required. The end record's
    /// keyed digest is checked where it is decoded.
    fn check_key(&mut self, raw: &RawRecord) -> Result<()> {
        if raw.head.keyed() && raw.digest.is_some() {
            self.keyed += 1;
            if let Some(key) = &self.key
                && raw.head.kind != Kind::END
            {
                raw.verify_keyed(key)?;
            }
        } else if self.require_key {
            return Err(ImageError::NotKeyed {
                seq: raw.head.seq,
                kind: raw.head.kind,
            });
        }
        Ok(())
    }

    fn read_frame(&mut self) -> Result<Option<RawRecord>> {
        let mut hb = [0u8; HEAD_LEN];
        let n = read_full(&mut self.inner, &mut hb)?;
        if n == 0 {
            return Ok(None);
        }
        let seq = self.next_seq;
        if n < HEAD_LEN {
            return Err(ImageError::Truncated {
                what: "record header",
            });
        }
        let (head, reserved, crc) = Head::decode(&hb);
        let corrupt = |reason: String| ImageError::Corrupt {
            seq,
            kind: head.kind,
            reason,
        };
        // Check the cheap invariants before trusting any length.
        if head.kind.0 == 0 {
            return Err(corrupt("record kind 0".into()));
        }
        if head.flags & !KNOWN_FLAGS != 0
            || reserved != 0
            || (head.flags & F_HMAC != 0 && head.flags & F_DIGEST == 0)
        {
            // Could be a bit flip in the header: a CRC over the header
            // alone is not kept, so say what is wrong.
            return Err(corrupt(format!("unknown flags {:#x}", head.flags)));
        }
        if head.stored_len as usize > MAX_PAYLOAD || head.raw_len as usize > MAX_PAYLOAD {
            return Err(corrupt(format!(
                "payload length {} exceeds the {} byte limit",
                head.stored_len.max(head.raw_len),
                MAX_PAYLOAD
            )));
        }
        if !head.compressed() && head.stored_len != head.raw_len {
            return Err(corrupt("stored and raw lengths differ".into()));
        }
        if head.seq != seq {
            return Err(corrupt(format!(
                "sequence number {} where {} was expected (records missing or reordered)",
                head.seq, seq
            )));
        }
        let len = head.stored_len as usize;
        let truncated = ImageError::Truncated {
            what: "record payload",
        };
        let stored = if len >= POOL_MIN_PAYLOAD {
            let (mut buf, at) = self.pool.take(len);
            if read_full(&mut self.inner, &mut buf[at.clone()])? < len {
                return Err(truncated);
            }
            Bytes::from_owner(Pooled {
                buf,
                at,
                pool: self.pool.clone(),
            })
        } else {
            let mut buf = BytesMut::zeroed(len);
            if read_full(&mut self.inner, &mut buf)? < len {
                return Err(truncated);
            }
            buf.freeze()
        };
        let digest = if head.has_digest() {
            let mut d = [0u8; DIGEST_LEN];
            if read_full(&mut self.inner, &mut d)? < DIGEST_LEN {
                return Err(ImageError::Truncated {
                    what: "record digest",
                });
            }
            Some(d)
        } else {
            None
        };
        if frame_crc(&head.encode(0), &[&stored], digest.as_ref()) != crc {
            return Err(ImageError::Crc {
                seq,
                kind: head.kind,
            });
        }
        self.next_seq = self.next_seq.wrapping_add(1);
        self.bytes += head.frame_len();
        Ok(Some(RawRecord {
            head,
            stored,
            digest,
        }))
    }

    /// The next record before the end record, CRC-checked; `None` once the
    /// end record has been read and matched against the stream.
    pub fn next_raw(&mut self) -> Result<Option<RawRecord>> {
        if self.end.is_some() {
            return Ok(None);
        }
        let before = self.bytes;
        let chain_before = self.chain.clone();
        let raw = match self.read_frame()? {
            Some(r) => r,
            None => return Err(ImageError::Truncated { what: "stream" }),
        };
        if raw.head.kind == Kind::HEADER {
            return Err(ImageError::Corrupt {
                seq: raw.head.seq,
                kind: raw.head.kind,
                reason: "a second header record".into(),
            });
        }
        self.check_key(&raw)?;
        if raw.head.kind == Kind::END {
            let rec = raw.decode()?;
            let end: EndRecord = rec.decode()?;
            let bad = |reason: String| ImageError::Corrupt {
                seq: raw.head.seq,
                kind: Kind::END,
                reason,
            };
            if let (Some(key), Some(d)) = (&self.key, &raw.digest)
                && raw.head.keyed()
                && !ct_eq(&end_mac(key, raw.head.seq, &end), d)
            {
                return Err(ImageError::KeyedDigest {
                    seq: raw.head.seq,
                    kind: Kind::END,
                });
            }
            if self.require_key && end.stream_digest.is_none() {
                return Err(ImageError::NotKeyed {
                    seq: raw.head.seq,
                    kind: Kind::END,
                });
            }
            if end.records != raw.head.seq as u64 || end.bytes != before {
                return Err(bad(format!(
                    "end record counts {} records and {} bytes, the stream had {} and {}",
                    end.records, end.bytes, raw.head.seq, before
                )));
            }
            if let Some(want) = end.stream_digest {
                let got: [u8; 32] = chain_before
                    .ok_or_else(|| {
                        bad("stream digest present but some records lack a digest".into())
                    })?
                    .finalize()
                    .into();
                if got != want {
                    return Err(ImageError::StreamDigest);
                }
            }
            // A trailing byte after the end record means two streams or junk.
            let mut probe = [0u8; 1];
            if read_full(&mut self.inner, &mut probe)? != 0 {
                return Err(bad("data after the end record".into()));
            }
            self.end = Some(end);
            self.end_digest = raw.digest.is_some();
            self.end_raw = Some(raw);
            return Ok(None);
        }
        self.chain_add(&raw);
        Ok(Some(raw))
    }

    fn chain_add(&mut self, raw: &RawRecord) {
        match (&mut self.chain, &raw.digest) {
            (Some(h), Some(d)) => h.update(d),
            _ => self.chain = None,
        }
    }

    /// The next record, decompressed and digest-checked.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        match self.next_raw()? {
            Some(raw) => raw.decode().map(Some),
            None => Ok(None),
        }
    }

    /// Gives back the underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R> Reader<R> {
    /// The underlying reader, e.g. to see which bytes a record came from.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
    /// Whether the end record carried a digest (valid once the stream ended).
    pub fn end_has_digest(&self) -> bool {
        self.end_digest
    }
    /// The end record as read (once the stream ended), e.g. to pass on its
    /// keyed digest.
    pub fn end_raw(&self) -> Option<&RawRecord> {
        self.end_raw.as_ref()
    }
}

impl<R> Reader<R> {
    /// Whether the header record carried a digest (a `cr-sum` stream).
    pub fn header_has_digest(&self) -> bool {
        self.header_raw.digest.is_some()
    }
}

/// How a [`Writer`] frames the records it is given.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Add a digest to every record and a stream digest to the end record.
    pub digest: bool,
}

/// Writes a stream record by record.
pub struct Writer<W: Write> {
    out: W,
    opts: WriteOptions,
    seq: u32,
    bytes: u64,
    chain: Option<Sha256>,
    key: Option<Key>,
    end_digest: Option<[u8; DIGEST_LEN]>,
}

impl<W: Write> Writer<W> {
    /// Writes the preamble and a header record.
    pub fn new(out: W, header: &StreamHeader, opts: WriteOptions) -> Result<Self> {
        Self::with_header_payload(out, &wire::encode(header), opts)
    }

    /// Like [`new`](Self::new) with an already encoded header, so a filter
    /// keeps fields it does not know.
    pub fn with_header_payload(out: W, header: &[u8], opts: WriteOptions) -> Result<Self> {
        let mut w = Self::start(out, opts, None)?;
        w.write_record(Kind::HEADER, header)?;
        Ok(w)
    }

    /// A writer whose every record, and the end record, gets a keyed
    /// digest ([`F_HMAC`]) with `key`.
    pub fn keyed(out: W, header: &[u8], key: Key) -> Result<Self> {
        let mut w = Self::start(out, WriteOptions { digest: true }, Some(key))?;
        w.write_record(Kind::HEADER, header)?;
        Ok(w)
    }

    /// A writer whose header record is `header` exactly as read, its digest
    /// (keyed or not) kept: for filters passing a stream on.
    pub fn with_header_raw(out: W, header: &RawRecord, opts: WriteOptions) -> Result<Self> {
        let mut w = Self::start(out, opts, None)?;
        w.write_stored(
            Kind::HEADER,
            header.head.flags,
            header.head.raw_len as usize,
            &header.stored,
            header.digest,
        )?;
        Ok(w)
    }

    fn start(mut out: W, opts: WriteOptions, key: Option<Key>) -> Result<Self> {
        out.write_all(&PREAMBLE)?;
        Ok(Writer {
            out,
            opts,
            seq: 0,
            bytes: PREAMBLE.len() as u64,
            chain: Some(Sha256::new()),
            key,
            end_digest: None,
        })
    }

    /// Ends the stream with this keyed digest on the end record instead of
    /// one computed here: a filter without the key passing on a keyed
    /// stream keeps its end record's digest, valid as long as the record
    /// count and the record digests did not change (see [`end_mac`]).
    pub fn keep_keyed_end(&mut self, digest: [u8; DIGEST_LEN]) {
        self.end_digest = Some(digest);
    }

    /// The sequence number the next record will get.
    pub fn next_seq(&self) -> u32 {
        self.seq
    }
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Writes an uncompressed record whose payload is the concatenation of `parts`.
    pub fn write_parts(&mut self, kind: Kind, parts: &[&[u8]]) -> Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if let Some(key) = &self.key {
            let mut msg: Vec<&[u8]> = Vec::with_capacity(parts.len() + 2);
            let (k, s) = (kind.0.to_le_bytes(), self.seq.to_le_bytes());
            msg.push(&k);
            msg.push(&s);
            msg.extend_from_slice(parts);
            let d = key.mac(&msg);
            return self.write_frame(kind, F_HMAC, len, parts, Some(d));
        }
        let digest = self.opts.digest.then(|| {
            let mut h = Sha256::new();
            h.update(kind.0.to_le_bytes());
            h.update(self.seq.to_le_bytes());
            for p in parts {
                h.update(p);
            }
            h.finalize().into()
        });
        self.write_frame(kind, 0, len, parts, digest)
    }

    /// Like [`write_parts`](Self::write_parts), with the CRC32C of each
    /// part already computed (`crc32c::crc32c(part)`), e.g. by the threads
    /// that read the data: the data is not read again unless a digest is
    /// asked for. Head and parts go out in one vectored write.
    pub fn write_parts_crc(&mut self, kind: Kind, parts: &[(&[u8], u32)]) -> Result<()> {
        if self.opts.digest {
            let plain: Vec<&[u8]> = parts.iter().map(|p| p.0).collect();
            return self.write_parts(kind, &plain);
        }
        let mut len = 0;
        let mut crc = 0;
        for &(p, c) in parts {
            crc = crc32c_combine(crc, c, p.len());
            len += p.len();
        }
        let plain: Vec<&[u8]> = parts.iter().map(|p| p.0).collect();
        self.write_frame_crc(kind, 0, len, &plain, None, Some(crc))
    }

    /// Writes an uncompressed record.
    pub fn write_record(&mut self, kind: Kind, payload: &[u8]) -> Result<()> {
        self.write_parts(kind, &[payload])
    }

    /// Encodes and writes a metadata record.
    pub fn write<T: Wire>(&mut self, kind: Kind, value: &T) -> Result<()> {
        self.write_record(kind, &wire::encode(value))
    }

    /// Writes a record framed elsewhere: `stored` is the payload as it will
    /// stand (compressed when `flags` has [`F_ZSTD`]), `raw_len` its
    /// decompressed size, `digest` the raw payload's digest computed for the
    /// sequence number [`next_seq`](Self::next_seq) returns ([`F_HMAC`] in
    /// `flags` when it is keyed).
    pub fn write_stored(
        &mut self,
        kind: Kind,
        flags: u16,
        raw_len: usize,
        stored: &[u8],
        digest: Option<[u8; DIGEST_LEN]>,
    ) -> Result<()> {
        let keep = if digest.is_some() {
            F_ZSTD | F_HMAC
        } else {
            F_ZSTD
        };
        self.write_frame(kind, flags & keep, raw_len, &[stored], digest)
    }

    fn write_frame(
        &mut self,
        kind: Kind,
        flags: u16,
        raw_len: usize,
        parts: &[&[u8]],
        digest: Option<[u8; DIGEST_LEN]>,
    ) -> Result<()> {
        self.write_frame_crc(kind, flags, raw_len, parts, digest, None)
    }

    /// `parts_crc`, if given, is the CRC32C of the parts concatenated.
    fn write_frame_crc(
        &mut self,
        kind: Kind,
        flags: u16,
        raw_len: usize,
        parts: &[&[u8]],
        digest: Option<[u8; DIGEST_LEN]>,
        parts_crc: Option<u32>,
    ) -> Result<()> {
        let stored_len: usize = parts.iter().map(|p| p.len()).sum();
        if stored_len > MAX_PAYLOAD || raw_len > MAX_PAYLOAD {
            return Err(ImageError::TooLarge(stored_len.max(raw_len)));
        }
        if kind.0 == 0 {
            return Err(ImageError::Usage("invalid record kind".into()));
        }
        let head = Head {
            kind,
            flags: flags | if digest.is_some() { F_DIGEST } else { 0 },
            seq: self.seq,
            stored_len: stored_len as u32,
            raw_len: raw_len as u32,
        };
        let crc = match parts_crc {
            Some(pc) => {
                let c = crc32c_combine(crc32c::crc32c(&head.encode(0)), pc, stored_len);
                match &digest {
                    Some(d) => crc32c::crc32c_append(c, d),
                    None => c,
                }
            }
            None => frame_crc(&head.encode(0), parts, digest.as_ref()),
        };
        let head_bytes = head.encode(crc);
        let mut slices = Vec::with_capacity(parts.len() + 2);
        slices.push(io::IoSlice::new(&head_bytes));
        slices.extend(parts.iter().map(|p| io::IoSlice::new(p)));
        if let Some(d) = &digest {
            slices.push(io::IoSlice::new(d));
        }
        write_all_vectored(&mut self.out, &mut slices)?;
        match (&mut self.chain, &digest) {
            (Some(h), Some(d)) => h.update(d),
            _ => self.chain = None,
        }
        self.seq = self.seq.wrapping_add(1);
        self.bytes += head.frame_len();
        Ok(())
    }

    /// Writes the end record and flushes; returns the output.
    pub fn finish(mut self) -> Result<W> {
        let stream_digest = if self.opts.digest {
            self.chain.take().map(|h| h.finalize().into())
        } else {
            None
        };
        let end = EndRecord {
            records: self.seq as u64,
            bytes: self.bytes,
            stream_digest,
        };
        let payload = wire::encode(&end);
        let (flags, digest) = if let Some(key) = &self.key {
            (F_HMAC, Some(end_mac(key, self.seq, &end)))
        } else if let Some(d) = self.end_digest {
            (F_HMAC, Some(d))
        } else {
            (
                0,
                self.opts
                    .digest
                    .then(|| record_digest(Kind::END, self.seq, &payload)),
            )
        };
        self.write_frame(Kind::END, flags, payload.len(), &[&payload], digest)?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// Ends the stream with `end` exactly as it stood in another stream
    /// whose records this writer has reproduced (`cr-delta --apply`): its
    /// counts, and its stream digest if it has one, must be this stream's.
    pub fn finish_as(mut self, end: &RawRecord) -> Result<W> {
        let rec: EndRecord = end.decode()?.decode()?;
        let chain: Option<[u8; DIGEST_LEN]> = self.chain.take().map(|h| h.finalize().into());
        if rec.records != self.seq as u64
            || rec.bytes != self.bytes
            || rec.stream_digest.is_some_and(|d| Some(d) != chain)
        {
            return Err(ImageError::Corrupt {
                seq: self.seq,
                kind: Kind::END,
                reason: "the end record to reproduce does not match the records written".into(),
            });
        }
        let keep = if end.digest.is_some() {
            F_ZSTD | F_HMAC
        } else {
            F_ZSTD
        };
        self.write_frame(
            Kind::END,
            end.head.flags & keep,
            end.head.raw_len as usize,
            &[&end.stored],
            end.digest,
        )?;
        self.out.flush()?;
        Ok(self.out)
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }
}

#[cfg(test)]
mod crc_tests {
    use super::*;

    #[test]
    fn combine_matches_crc32c() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for split in [0, 1, 3, 24, 56, 4096, 4999, 5000] {
            let (a, b) = data.split_at(split);
            let want = crc32c::crc32c(&data);
            let got = crc32c_combine(crc32c::crc32c(a), crc32c::crc32c(b), b.len());
            assert_eq!(got, want, "split at {split}");
            assert_eq!(
                got,
                crc32c::crc32c_combine(crc32c::crc32c(a), crc32c::crc32c(b), b.len())
            );
        }
    }

    #[test]
    fn write_parts_crc_writes_the_same_bytes() {
        let h = StreamHeader {
            format_major: FORMAT_MAJOR,
            ..Default::default()
        };
        let data: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i % 251) as u8).collect();
        for opts in [WriteOptions::default(), WriteOptions { digest: true }] {
            let mut a = Writer::new(Vec::new(), &h, opts).unwrap();
            let mut b = Writer::new(io::BufWriter::new(Vec::new()), &h, opts).unwrap();
            for (i, d) in [
                &data[..10],
                &data[..4096],
                &data[7..(1 << 20) + 9],
                &data[..],
            ]
            .into_iter()
            .enumerate()
            {
                let pre = [i as u8; 32];
                a.write_parts(Kind::PAGES, &[&pre, d]).unwrap();
                b.write_parts_crc(
                    Kind::PAGES,
                    &[(&pre, crc32c::crc32c(&pre)), (d, crc32c::crc32c(d))],
                )
                .unwrap();
            }
            let a = a.finish().unwrap();
            let b = b.finish().unwrap().into_inner().unwrap();
            assert!(a == b, "streams differ (digest {})", opts.digest);
            let mut r = Reader::new(&b[..]).unwrap();
            while r.next_record().unwrap().is_some() {}
        }
    }
}
