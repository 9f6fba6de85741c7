//! `cr-zstd`: compresses the payloads of bulk records (`PAGES`, `BLOB`)
//! with zstd, one independent frame per record, and undoes it.
//!
//! Metadata stays readable. A record whose compressed form is not smaller
//! stays plain; a record already compressed passes through. Digests are
//! over the raw payload, so they pass through unchanged. The output depends
//! only on the input and the level, never on the number of threads.

use std::io::{Read, Write};

use bytes::Bytes;

use super::pipeline::{Signing, transform};
use super::{FilterError, ProgressFn, Result, Stats};
use crate::image::stream::decompress;
use crate::image::{F_ZSTD, ImageError, RawRecord};

/// zstd's own default level.
pub const DEFAULT_LEVEL: i32 = 3;

/// How `cr-zstd` compresses.
#[derive(Debug, Clone, Copy)]
pub struct ZstdOptions {
    /// zstd level; negative levels are zstd's fast modes.
    pub level: i32,
    /// Worker threads; `<= 1` works in the calling thread.
    pub threads: usize,
}

impl Default for ZstdOptions {
    fn default() -> Self {
        ZstdOptions {
            level: DEFAULT_LEVEL,
            threads: 1,
        }
    }
}

/// The levels this zstd accepts.
pub fn levels() -> std::ops::RangeInclusive<i32> {
    ::zstd::compression_level_range()
}

/// Compresses one record at a time; keeps its zstd context between records.
pub struct RecordCompressor {
    ctx: ::zstd::bulk::Compressor<'static>,
    buf: Vec<u8>,
}

impl RecordCompressor {
    pub fn new(level: i32) -> Result<Self> {
        if !levels().contains(&level) {
            return Err(FilterError::Usage(format!(
                "compression level {level} is out of range ({}..={})",
                levels().start(),
                levels().end()
            )));
        }
        let ctx = ::zstd::bulk::Compressor::new(level)
            .map_err(|e| FilterError::Usage(format!("zstd: {e}")))?;
        Ok(RecordCompressor {
            ctx,
            buf: Vec::new(),
        })
    }

    /// The record with its payload compressed, or unchanged when it is not
    /// a bulk record, is already compressed, or would not shrink.
    pub fn compress(&mut self, raw: RawRecord) -> RawRecord {
        if !raw.head.kind.is_bulk() || raw.head.compressed() || raw.stored.is_empty() {
            return raw;
        }
        // Room for one byte less than the input: a frame that does not fit
        // is not worth storing, and zstd stops early instead of needing
        // its worst-case bound. The buffer is zeroed once and reused.
        let room = raw.stored.len() - 1;
        if self.buf.len() < room {
            self.buf.resize(room, 0);
        }
        match self
            .ctx
            .compress_to_buffer(&raw.stored[..], &mut self.buf[..room])
        {
            Ok(n) => {
                let mut head = raw.head;
                head.flags |= F_ZSTD;
                head.stored_len = n as u32;
                RawRecord {
                    head,
                    stored: Bytes::copy_from_slice(&self.buf[..n]),
                    digest: raw.digest,
                }
            }
            // Does not fit: incompressible. (zstd reports nothing else for
            // valid input and a valid level.)
            Err(_) => raw,
        }
    }
}

/// The record with its payload decompressed (digest not checked here:
/// `cr-sum --check` and every consumer check it).
pub fn decompress_record(raw: RawRecord) -> Result<RawRecord> {
    if !raw.head.compressed() {
        return Ok(raw);
    }
    let stored = decompress(&raw.head, &raw.stored)?;
    let mut head = raw.head;
    head.flags &= !F_ZSTD;
    head.stored_len = head.raw_len;
    Ok(RawRecord {
        head,
        stored,
        digest: raw.digest,
    })
}

/// Copies an image from `input` to `output`, compressing bulk records.
pub fn compress<R: Read + Send, W: Write>(
    input: R,
    output: W,
    opts: &ZstdOptions,
    progress: Option<ProgressFn<'_>>,
) -> Result<(W, Stats)> {
    // Fail on a bad level before reading anything.
    RecordCompressor::new(opts.level)?;
    let make = || {
        let mut c = RecordCompressor::new(opts.level);
        move |raw: RawRecord| -> Result<(u64, RawRecord)> {
            let c = c
                .as_mut()
                .map_err(|e| FilterError::Image(ImageError::Usage(format!("zstd context: {e}"))))?;
            Ok((raw.head.frame_len(), c.compress(raw)))
        }
    };
    transform(input, output, opts.threads, Signing::Keep, make, progress)
}

/// Copies an image from `input` to `output` with every record plain.
pub fn decompress_stream<R: Read + Send, W: Write>(
    input: R,
    output: W,
    threads: usize,
    progress: Option<ProgressFn<'_>>,
) -> Result<(W, Stats)> {
    let make = || |raw: RawRecord| Ok((raw.head.frame_len(), decompress_record(raw)?));
    transform(input, output, threads, Signing::Keep, make, progress)
}
