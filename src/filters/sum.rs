//! `cr-sum`: adds a SHA-256 digest to every record and a stream digest to
//! the end record; `--check` verifies them.
//!
//! A record digest is SHA-256 over `kind:u16 seq:u32 raw payload` (see
//! [`record_digest`]), so compression does not change it; the stream digest
//! is SHA-256 over the record digests in order (the [`Writer`] computes it,
//! the [`Reader`] checks it).
//!
//! [`Writer`]: crate::image::Writer

use std::io::{Read, Write};

use super::pipeline::{for_each, transform};
use super::{FilterError, ProgressFn, Result, Stats};
use crate::image::stream::{DIGEST_LEN, decompress, record_digest};
use crate::image::{ImageError, Kind, RawRecord, Reader};

/// Which digest `cr-sum` writes.
///
/// Only plain SHA-256 exists. A keyed mode (HMAC-SHA-256, so that a digest
/// proves who wrote the stream and not only that it is intact) would be a
/// second variant here; it needs a header flag naming the mode so that
/// readers without the key do not report every record as corrupt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DigestMode {
    #[default]
    Sha256,
}

/// How `cr-sum` works.
#[derive(Debug, Clone, Copy)]
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
pub fn compute_digest(raw: &RawRecord, mode: DigestMode) -> Result<[u8; DIGEST_LEN]> {
    let DigestMode::Sha256 = mode;
    Ok(if raw.head.compressed() {
        let payload = decompress(&raw.head, &raw.stored)?;
        record_digest(raw.head.kind, raw.head.seq, &payload)
    } else {
        record_digest(raw.head.kind, raw.head.seq, &raw.stored)
    })
}

/// The record with its digest set. A digest it already carries must match.
pub fn digest_record(mut raw: RawRecord, mode: DigestMode) -> Result<RawRecord> {
    let d = compute_digest(&raw, mode)?;
    if raw.digest.is_some_and(|old| old != d) {
        return Err(ImageError::Digest {
            seq: raw.head.seq,
            kind: raw.head.kind,
        }
        .into());
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
    let mode = opts.mode;
    let make = || {
        move |raw: RawRecord| -> Result<(u64, RawRecord)> {
            Ok((raw.head.frame_len(), digest_record(raw, mode)?))
        }
    };
    transform(input, output, opts.threads, true, make, progress)
}

/// What `cr-sum --check` verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckReport {
    /// Records checked, header and end included.
    pub records: u64,
    pub bytes: u64,
    pub stream_digest: [u8; DIGEST_LEN],
}

/// Reads a whole stream and verifies every record's CRC and digest and the
/// stream digest. Fails on the first record (in stream order) that is
/// damaged or carries no digest, and on a stream without a stream digest.
pub fn check<R: Read + Send>(
    input: R,
    threads: usize,
    mut progress: Option<ProgressFn<'_>>,
) -> Result<CheckReport> {
    // `Reader::new` already verified the header's digest, if it has one.
    let mut reader = Reader::new(input)?;
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
    })
}
