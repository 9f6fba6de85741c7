//! `cr-zstd`: compress or decompress the bulk records of a checkpoint image.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use crtools::cli;
use crtools::filters::Stats;
use crtools::filters::zstd::{self, ZstdOptions};

/// Compress (or with -d decompress) the page and file data of a checkpoint
/// image, record by record. Metadata stays readable; digests stay valid.
#[derive(Parser)]
#[command(name = "cr-zstd", version)]
struct Args {
    /// Decompress: write every record plain.
    #[arg(short, long)]
    decompress: bool,
    /// Compression level: 1 (fastest) to 22 (smallest, slowest); negative
    /// levels, down to -131072, are faster still.
    #[arg(short, long, default_value_t = zstd::DEFAULT_LEVEL, allow_negative_numbers = true,
          value_parser = level)]
    level: i32,
    /// Worker threads, 0 to 256; 0 means one per core.
    #[arg(short = 'T', long, default_value_t = 1, value_parser = cli::parse_threads)]
    threads: usize,
    /// No progress on stderr.
    #[arg(short, long)]
    quiet: bool,
    /// Write to a terminal or read from one anyway.
    #[arg(short, long)]
    force: bool,
    /// Write the image to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Read the image from FILE instead of stdin ("-" is stdin).
    file: Option<PathBuf>,
}

fn level(s: &str) -> Result<i32, String> {
    let (min, max) = (*zstd::levels().start(), *zstd::levels().end());
    cli::parse_in_range(s, min.into(), max.into(), "zstd levels").map(|n| n as i32)
}

fn main() -> ExitCode {
    let args: Args = crtools::completions::parse();
    cli::run("cr-zstd", || {
        let input = cli::input(args.file.as_deref(), args.force)?;
        let output =
            cli::Output::open(args.output.as_deref(), args.force, &[args.file.as_deref()])?;
        let threads = cli::threads(args.threads);
        let mut progress = cli::Progress::new("cr-zstd", args.quiet);
        let mut show = |s: &Stats| progress.update(s.bytes_in, s.bytes_out);
        let (output, _) = if args.decompress {
            zstd::decompress_stream(input, output, threads, Some(&mut show))
                .context("decompressing")?
        } else {
            let opts = ZstdOptions {
                level: args.level,
                threads,
            };
            zstd::compress(input, output, &opts, Some(&mut show)).context("compressing")?
        };
        output.commit()?;
        Ok(())
    })
}
