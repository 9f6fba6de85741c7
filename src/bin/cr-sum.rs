//! `cr-sum`: add SHA-256 (or, with a key, HMAC-SHA-256) digests to a
//! checkpoint image, or verify them.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use crtools::cli;
use crtools::filters::Stats;
use crtools::filters::sum::{self, DigestMode, SumOptions};

/// Add a SHA-256 digest to every record of a checkpoint image and a stream
/// digest to its end record, or with --check verify them all. With --key,
/// the digests are HMAC-SHA-256 keyed with the key file's bytes.
#[derive(Parser)]
#[command(name = "cr-sum", version)]
struct Args {
    /// Verify the digests of an image instead of adding them; exit 1 on
    /// the first record that does not match or carries none.
    #[arg(short, long)]
    check: bool,
    /// Keyed digests: HMAC-SHA-256 with the bytes of FILE as the key. With
    /// --check, every digest must be keyed with it.
    #[arg(short, long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Hashing threads, 0 to 256; 0 means one per core (the default).
    #[arg(short = 'T', long, default_value_t = 0, value_parser = cli::parse_threads)]
    threads: usize,
    /// No progress on stderr; with --check, no report on stdout either.
    #[arg(short, long)]
    quiet: bool,
    /// Write to a terminal or read from one anyway.
    #[arg(short, long)]
    force: bool,
    /// Write the image to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE", conflicts_with = "check")]
    output: Option<PathBuf>,
    /// Read the image from FILE instead of stdin ("-" is stdin).
    file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args: Args = crtools::completions::parse();
    cli::run("cr-sum", || {
        let key = args.key.as_deref().map(cli::read_key).transpose()?;
        let input = cli::input(args.file.as_deref(), args.force)?;
        let threads = cli::threads(args.threads);
        let mut progress = cli::Progress::new("cr-sum", args.quiet);
        let mut show = |s: &Stats| progress.update(s.bytes_in, s.bytes_out);
        if args.check {
            let report = sum::check(input, threads, key, Some(&mut show))?;
            drop(progress);
            if !args.quiet {
                let hex: String = report
                    .stream_digest
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                let keyed = match (report.keyed, report.keys_verified) {
                    (0, _) => String::new(),
                    (_, true) => ", keyed digests verified".into(),
                    (_, false) => ", keyed digests present, not verified (no --key)".into(),
                };
                println!(
                    "OK: {} records, {} bytes, stream digest {hex}{keyed}",
                    report.records, report.bytes
                );
            }
        } else {
            let output =
                cli::Output::open(args.output.as_deref(), args.force, &[args.file.as_deref()])?;
            let opts = SumOptions {
                threads,
                mode: key.map_or(DigestMode::Sha256, DigestMode::Keyed),
            };
            let (output, _) = sum::sum(input, output, &opts, Some(&mut show))?;
            output.commit()?;
        }
        Ok(())
    })
}
