//! Helpers shared by the binaries: terminal checks, output buffering, exit codes.

use std::io::{self, Write};

/// Standard output without Rust's line buffering or lock; wrap it in a
/// large `BufWriter`.
pub struct RawStdout;

impl Write for RawStdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: writes from a live slice to descriptor 1.
        let n = unsafe { libc::write(1, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Raises the capacity of the pipe at `fd` to 1 MiB when it is a pipe.
pub fn grow_pipe(fd: i32) {
    // SAFETY: fcntl on an integer descriptor; failure (not a pipe) is ignored.
    unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, 1 << 20) };
}
