//! Stream transforms over the image [`Reader`](crate::image::Reader) and
//! [`Writer`](crate::image::Writer): compression ([`zstd`]), digests
//! ([`sum`]), cutting into parts ([`split`]), deltas against an earlier
//! image ([`delta`]) and summaries ([`info`]).
//!
//! Every transform reads any valid stream (compressed or not, with or
//! without digests, with record kinds it does not know) and keeps what it
//! does not change: kinds, sequence numbers and digests pass through, so
//! filters compose in any order. Each is generic over `Read`/`Write`; the
//! binaries in `src/bin/` only parse arguments and open files.

pub mod delta;
pub mod info;
pub mod pipeline;
pub mod split;
pub mod sum;
pub mod zstd;

use thiserror::Error;

use crate::image::{ImageError, Kind};

/// Why a transform failed.
#[derive(Debug, Error)]
pub enum FilterError {
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A `cr-split` part is wrong: missing, repeated, reordered, foreign,
    /// truncated or damaged.
    #[error("{part}: {reason}")]
    Part { part: String, reason: String },
    /// The stream failed while reading a given part.
    #[error("{part}: {source}")]
    InPart {
        part: String,
        #[source]
        source: ImageError,
    },
    #[error("the stream carries no digests (it did not go through cr-sum)")]
    NotSummed,
    #[error("record {seq} ({kind}) carries no digest")]
    NoDigest { seq: u32, kind: Kind },
    #[error("the end record carries no stream digest")]
    NoStreamDigest,
    #[error("{0}")]
    Usage(String),
}

impl FilterError {
    /// Whether this is a closed output pipe (a quiet exit for the tools).
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            FilterError::Image(e) | FilterError::InPart { source: e, .. } => e.is_broken_pipe(),
            _ => false,
        }
    }
}

impl From<std::io::Error> for FilterError {
    fn from(e: std::io::Error) -> Self {
        FilterError::Image(ImageError::Io(e))
    }
}

pub type Result<T> = std::result::Result<T, FilterError>;

/// What a transform moved, for progress and reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records between header and end.
    pub records: u64,
    /// Stream bytes read (valid once the transform returns).
    pub bytes_in: u64,
    /// Stream bytes written.
    pub bytes_out: u64,
}

/// Called after each record with the running totals.
pub type ProgressFn<'a> = &'a mut dyn FnMut(&Stats);
