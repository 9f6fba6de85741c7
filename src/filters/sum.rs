//! `cr-sum`: adds a SHA-256 digest to every record and a stream digest to
//! the end record; `--check` verifies them. With a key (`--key FILE`) the
//! digests are HMAC-SHA-256 keyed with the file's bytes and flagged
//! [`F_HMAC`], so only a holder of the key can make or check them.
//!
//! A record digest is SHA-256 over `kind:u16 seq:u32 raw payload` (see
//! [`record_digest`]), so compression does not change it; the stream digest
//! is SHA-256 over the record digests in order (the [`Writer`] computes it,
//! the [`Reader`] checks it). A keyed stream's end record carries a keyed
//! digest over its record count and that stream digest ([`end_mac`]), which
//! is what ties the records together: none can be dropped, added or taken
//! from another stream made with the same key.
//!
//! Without the key, `--check` of a keyed stream verifies the CRCs and the
//! chain of digests, and says that the keyed digests were not verified.
//!
//! [`Writer`]: crate::image::Writer
//! [`end_mac`]: crate::image::stream::end_mac

use std::io::{Read, Write};

use super::pipeline::Signing;
use super::pipeline::{for_each, transform};
use super::{FilterError, ProgressFn, Result, Stats};
use crate::image::stream::{DIGEST_LEN, F_HMAC, keyed_digest, record_digest};
use crate::image::{ImageError, Key, KeyCheck, Kind, RawRecord, Reader};

/// Which digest `cr-sum` writes.
#[derive(Debug, Clone, Default)]
pub enum DigestMode {
    /// Plain SHA-256: proves the image intact, not who made it.
    #[default]
    Sha256,
    /// HMAC-SHA-256 with this key, flagged [`F_HMAC`] in every record head.
    Keyed(Key),
}

/// How `cr-sum` works.
#[derive(Debug, Clone)]
pub struct SumOptions {
    pub threads: usize,
    pub mode: DigestMode,
}

impl Default for SumOptions {
    fn default() -> Self {
        SumOptions {
            threads: 1,
            mode: DigestMode::Sha256,
        }
    }
}

/// The digest of a record's raw payload, decompressing it if needed.
pub fn compute_digest(raw: &RawRecord, mode: &DigestMode) -> Result<[u8; DIGEST_LEN]> {
    let payload = raw.payload()?;
    Ok(match mode {
        DigestMode::Sha256 => record_digest(raw.head.kind, raw.head.seq, &payload),
        DigestMode::Keyed(key) => keyed_digest(key, raw.head.kind, raw.head.seq, &payload),
    })
}

/// The record with its digest set. A digest it already carries must match:
/// a plain one is checked, and replaced when keying; a keyed one must be
/// of the same key.
pub fn digest_record(mut raw: RawRecord, mode: &DigestMode) -> Result<RawRecord> {
    let (seq, kind) = (raw.head.seq, raw.head.kind);
    match (mode, raw.head.keyed()) {
        (DigestMode::Sha256, true) => {
            return Err(FilterError::Usage(
                "the image carries keyed digests: give their key (--key) to keep them".into(),
            ));
        }
        (DigestMode::Keyed(key), true) => {
            raw.verify_keyed(key)?;
            return Ok(raw);
        }
        (DigestMode::Keyed(_), false) if raw.digest.is_some() => {
            // Check the plain digest before replacing it.
            raw.decode()?;
        }
        _ => {}
    }
    let d = compute_digest(&raw, mode)?;
    match mode {
        // A plain digest already there must be the one just computed.
        DigestMode::Sha256 if raw.digest.is_some_and(|old| old != d) => {
            return Err(ImageError::Digest { seq, kind }.into());
        }
        DigestMode::Sha256 => {}
        // A plain one was checked above and is replaced.
        DigestMode::Keyed(_) => raw.head.flags |= F_HMAC,
    }
    raw.digest = Some(d);
    Ok(raw)
}

/// Copies an image from `input` to `output` with a digest on every record
/// and the stream digest in the end record. Compression is kept as it is.
pub fn sum<R: Read + Send, W: Write>(
    input: R,
    output: W,
    opts: &SumOptions,
    progress: Option<ProgressFn<'_>>,
) -> Result<(W, Stats)> {
    let mode = &opts.mode;
    let make = || {
        move |raw: RawRecord| -> Result<(u64, RawRecord)> {
            Ok((raw.head.frame_len(), digest_record(raw, mode)?))
        }
    };
    let signing = match mode {
        DigestMode::Sha256 => Signing::Plain,
        DigestMode::Keyed(key) => Signing::Keyed(key.clone()),
    };
    transform(input, output, opts.threads, signing, make, progress)
}

/// What `cr-sum --check` verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckReport {
    /// Records checked, header and end included.
    pub records: u64,
    pub bytes: u64,
    pub stream_digest: [u8; DIGEST_LEN],
    /// Records with a keyed digest, header and end included.
    pub keyed: u64,
    /// Whether those keyed digests were verified (a key was given); if
    /// not, only CRCs and the chain of digests were.
    pub keys_verified: bool,
}

/// Reads a whole stream and verifies every record's CRC and digest and the
/// stream digest. Fails on the first record (in stream order) that is
/// damaged or carries no digest, and on a stream without a stream digest.
/// With `key`, every digest must be keyed with it; without, keyed digests
/// are counted in the report but not verified.
pub fn check<R: Read + Send>(
    input: R,
    threads: usize,
    key: Option<Key>,
    mut progress: Option<ProgressFn<'_>>,
) -> Result<CheckReport> {
    // The reader verifies the header's digest, if it has one, and with a
    // key every keyed digest as it reads.
    let require = key.is_some();
    let mut reader = Reader::with_key(input, KeyCheck { key, require })?;
    if !reader.header_has_digest() {
        return Err(FilterError::NotSummed);
    }
    let make = || {
        |raw: RawRecord| -> Result<u64> {
            if raw.digest.is_none() {
                return Err(FilterError::NoDigest {
                    seq: raw.head.seq,
                    kind: raw.head.kind,
                });
            }
            // Decompresses as needed and compares the digest.
            raw.decode()?;
            Ok(raw.head.frame_len())
        }
    };
    let mut stats = Stats {
        bytes_in: reader.bytes_read(),
        ..Stats::default()
    };
    for_each(&mut reader, threads, make, |len| {
        stats.records += 1;
        stats.bytes_in += len;
        if let Some(p) = progress.as_mut() {
            p(&stats);
        }
        Ok(())
    })?;
    let end = reader
        .end()
        .expect("the reader stops only at the end record");
    let end_seq = end.records as u32;
    if !reader.end_has_digest() {
        return Err(FilterError::NoDigest {
            seq: end_seq,
            kind: Kind::END,
        });
    }
    // The reader has compared it with the record digests.
    let stream_digest = end.stream_digest.ok_or(FilterError::NoStreamDigest)?;
    Ok(CheckReport {
        records: end.records + 1,
        bytes: reader.bytes_read(),
        stream_digest,
        keyed: reader.keyed_records(),
        keys_verified: reader.verifies_keys(),
    })
}
