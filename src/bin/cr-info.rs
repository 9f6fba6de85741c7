//! `cr-info`: summarise a checkpoint image.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use crtools::cli;
use crtools::filters::info;

/// Summarise a checkpoint image: its origin, process tree, memory, files,
/// record counts, sizes, compression and checksum state. The whole image is
/// read and checked; page data is not decompressed.
#[derive(Parser)]
#[command(name = "cr-info", version)]
struct Args {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Read from a terminal anyway.
    #[arg(short, long)]
    force: bool,
    /// Read the image from FILE instead of stdin ("-" is stdin).
    file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args: Args = crtools::completions::parse();
    cli::run("cr-info", || {
        let input = cli::input(args.file.as_deref(), args.force)?;
        let info = info::info(input)?;
        let mut out = std::io::stdout().lock();
        if args.json {
            serde_json::to_writer_pretty(&mut out, &info.to_json())?;
            writeln!(out)?;
        } else {
            write!(out, "{info}")?;
        }
        out.flush()?;
        Ok(())
    })
}
