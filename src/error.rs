//! The library's error type, shared by checkpoint and restart.

use nix::errno::Errno;
use thiserror::Error;

use crate::image::{Fault, ImageError};
use crate::sys::ipc::IpcError;
use crate::sys::remote::RemoteError;

/// What went wrong in a checkpoint or restore, naming the object and reason.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Records that decode but cannot be restored as they are.
    #[error("invalid image: {0}")]
    Invalid(#[from] Fault),
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: {errno}")]
    Sys { what: String, errno: Errno },
    #[error("{0}")]
    Msg(String),
}

impl Error {
    pub fn msg(s: impl Into<String>) -> Self {
        Error::Msg(s.into())
    }
    /// Whether the failure was a closed output pipe.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            Error::Image(e) => e.is_broken_pipe(),
            Error::Io { source, .. } => source.kind() == std::io::ErrorKind::BrokenPipe,
            Error::Sys { errno, .. } => *errno == Errno::EPIPE,
            _ => false,
        }
    }
}

impl From<IpcError> for Error {
    fn from(e: IpcError) -> Self {
        match e {
            IpcError::Io { what, source } => Error::Io { what, source },
            IpcError::Sys { what, errno } => Error::Sys { what, errno },
            IpcError::Msg(m) => Error::Msg(m),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Adds "what was being done" to low-level errors.
pub trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            what: what(),
            source,
        })
    }
}

impl<T> Context<T> for nix::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|errno| Error::Sys {
            what: what(),
            errno,
        })
    }
}
