//! `self_restart`: restores an image into the calling process itself, which
//! keeps its pid (the classic `restart --self` demo; the same as
//! `cr-restart --in-place`).
//!
//! ```text
//! self_restart [IMAGE | -]
//! ```
//!
//! Prints `self_restart pid P` on standard error, then becomes the image's
//! process. The image must hold a single, single-threaded process.

use std::path::Path;
use std::process::ExitCode;

use crtools::cli;
use crtools::image::Reader;
use crtools::restart::{self, inplace::restore_in_place};

fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    if arg.as_deref().is_some_and(|a| a.starts_with("--")) {
        eprintln!("usage: self_restart [IMAGE | -]");
        return ExitCode::from(2);
    }
    eprintln!("self_restart pid {}", std::process::id());
    let input = match cli::input(arg.as_deref().map(Path::new), false) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("self_restart: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = Reader::new(input)
        .map_err(crtools::Error::from)
        .and_then(|r| restore_in_place(r, &restart::Options::default()));
    // Only a failure comes back.
    let Err(e) = result;
    eprintln!("self_restart: {e}");
    ExitCode::FAILURE
}
