//! `cr-zstd`: compress or decompress the bulk records of a checkpoint image.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use crtools::cli;
use crtools::completions::{Common, InputFile, OutputFile};
use crtools::filters::zstd::{self, ZstdOptions};
use crtools::progress::{self, Display, Show};

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
    #[command(flatten)]
    output: OutputFile,
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    input: InputFile,
}

fn level(s: &str) -> Result<i32, String> {
    let (min, max) = (*zstd::levels().start(), *zstd::levels().end());
    cli::parse_in_range(s, min.into(), max.into(), "zstd levels").map(|n| n as i32)
}

fn main() -> ExitCode {
    let args: Args = crtools::completions::parse();
    cli::run("cr-zstd", || {
        let (force, total) = (args.common.force, args.input.size());
        let input = cli::input(args.input.path(), force)?;
        let output = cli::Output::open(args.output.path(), force, &[args.input.path()])?;
        let threads = cli::threads(args.threads);
        let mut display = Display::start("cr-zstd", Show::Filter { total }, args.common.when());
        let (output, stats) = if args.decompress {
            zstd::decompress_stream(input, output, threads, None).context("decompressing")?
        } else {
            let opts = ZstdOptions {
                level: args.level,
                threads,
            };
            zstd::compress(input, output, &opts, None).context("compressing")?
        };
        output.commit()?;
        if args.common.summary() {
            display.summary(&progress::transfer(
                stats.bytes_in,
                stats.bytes_out,
                display.elapsed(),
            ));
        }
        Ok(())
    })
}
