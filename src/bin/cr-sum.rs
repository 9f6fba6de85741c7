//! `cr-sum`: add SHA-256 (or, with a key, HMAC-SHA-256) digests to a
//! checkpoint image, or verify them.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use crtools::cli;
use crtools::completions::{Common, InputFile, OutputFile};
use crtools::filters::sum::{self, DigestMode, SumOptions};
use crtools::progress::{self, Display, Show};

/// Add a SHA-256 digest to every record of a checkpoint image and a stream
/// digest to its end record, or with --check verify them all. With --key,
/// the digests are HMAC-SHA-256 keyed with the key file's bytes. With -q,
/// --check prints no report on standard output either.
#[derive(Parser)]
#[command(name = "cr-sum", version)]
struct Args {
    /// Verify the digests of an image instead of adding them; exit 1 on
    /// the first record that does not match or carries none.
    #[arg(short, long, conflicts_with = "output")]
    check: bool,
    /// Keyed digests: HMAC-SHA-256 with the bytes of FILE as the key. With
    /// --check, every digest must be keyed with it.
    #[arg(short, long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Hashing threads, 0 to 256; 0 means one per core (the default).
    #[arg(short = 'T', long, default_value_t = 0, value_parser = cli::parse_threads)]
    threads: usize,
    #[command(flatten)]
    output: OutputFile,
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    input: InputFile,
}

fn main() -> ExitCode {
    let args: Args = crtools::completions::parse();
    cli::run("cr-sum", || {
        let key = args.key.as_deref().map(cli::read_key).transpose()?;
        let (force, total) = (args.common.force, args.input.size());
        let input = cli::input(args.input.path(), force)?;
        let threads = cli::threads(args.threads);
        let mut display = Display::start("cr-sum", Show::Filter { total }, args.common.when());
        if args.check {
            let report = sum::check(input, threads, key, None)?;
            display.finish();
            if !args.common.quiet {
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
            if args.common.summary() {
                let took = display.elapsed();
                display.summary(&format!(
                    "{} records verified, {} in {} ({})",
                    report.records,
                    progress::size(report.bytes),
                    progress::secs(took),
                    progress::rate(report.bytes, took)
                ));
            }
        } else {
            let output = cli::Output::open(args.output.path(), force, &[args.input.path()])?;
            let opts = SumOptions {
                threads,
                mode: key.map_or(DigestMode::Sha256, DigestMode::Keyed),
            };
            let (output, stats) = sum::sum(input, output, &opts, None)?;
            output.commit()?;
            if args.common.summary() {
                let took = display.elapsed();
                display.summary(&progress::transfer(stats.bytes_in, stats.bytes_out, took));
            }
        }
        Ok(())
    })
}
