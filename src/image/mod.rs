//! The image format: records, their payload codec, framing, and the
//! sequential reader and writer. Pure code: no syscalls, no global state.
//!
//! An image is a stream: a preamble, a `HEADER` record, metadata records,
//! bulk data records, and an `END` record that counts what came before. Each
//! record has a CRC32C; `cr-zstd` may compress a record's payload and `cr-sum`
//! may add a SHA-256 digest to it, and [`Reader`] undoes both transparently.
//! The format is specified in `man/cr-image.5`.

mod fault;
pub mod hmac;
pub mod kinds;
pub mod ranges;
pub mod records;
pub mod stream;
#[doc(hidden)]
pub mod synth;
#[cfg(test)]
mod tests;
pub mod wire;

pub use fault::{DataTarget, Fault, MappingFault, SocketFault};
pub use hmac::Key;
pub use kinds::{Backing, FileType, InetFamily, InetType, LockKind, ProcState, SockType};
pub use records::*;
pub use stream::{
    CHUNK, F_DIGEST, F_HMAC, F_ZSTD, Head, KeyCheck, MAX_PAYLOAD, RawRecord, Reader, Record,
    WriteOptions, Writer,
};

use thiserror::Error;

/// Why an image could not be read or written.
#[derive(Debug, Error)]
pub enum ImageError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("empty input: no image")]
    Empty,
    #[error("not a checkpoint image (bad magic)")]
    BadMagic,
    #[error(
        "this is one part of an image cut by cr-split, not a whole image: join the parts first (cr-split --join PREFIX.*)"
    )]
    SplitPart,
    #[error("image format version {0}.{1} is not supported (this tool reads {major}.x)", major = records::FORMAT_MAJOR)]
    Version(u16, u16),
    #[error("truncated image: {what} ends early")]
    Truncated { what: &'static str },
    #[error("corrupt image: record {seq} ({kind}): {reason}")]
    Corrupt {
        seq: u32,
        kind: Kind,
        reason: String,
    },
    #[error("corrupt image: record {seq} ({kind}) fails its CRC check")]
    Crc { seq: u32, kind: Kind },
    #[error("corrupt image: record {seq} ({kind}) does not match its SHA-256 digest")]
    Digest { seq: u32, kind: Kind },
    #[error(
        "record {seq} ({kind}) does not match its keyed digest (wrong key, or the image was altered)"
    )]
    KeyedDigest { seq: u32, kind: Kind },
    #[error("record {seq} ({kind}) carries no keyed digest, and one is required")]
    NotKeyed { seq: u32, kind: Kind },
    #[error("corrupt image: the stream digest in the end record does not match")]
    StreamDigest,
    #[error("corrupt image: record {seq} ({kind}) cannot be decoded: {reason}")]
    Decode {
        seq: u32,
        kind: Kind,
        reason: String,
    },
    #[error("record payload of {0} bytes is larger than the format allows")]
    TooLarge(usize),
    #[error("{0}")]
    Usage(String),
}

impl ImageError {
    /// Whether this error is a closed output pipe, which tools treat as a
    /// quiet exit.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, ImageError::Io(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

pub type Result<T> = std::result::Result<T, ImageError>;
