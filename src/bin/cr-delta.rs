//! `cr-delta`: store a checkpoint image as a delta against an earlier one,
//! or give the full image back.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use crtools::cli;
use crtools::filters::Stats;
use crtools::filters::delta::{self, DeltaOptions};

/// Write the checkpoint image on standard input (or FILE) as a delta
/// against an earlier image of the same tree: pages that the base holds at
/// the same address with the same contents become references to it.
/// With --apply, turn such a delta back into the full image, byte for
/// byte. The base must be the very image the delta was made against
/// (checked by stream id and a digest of its contents, before anything is
/// written).
#[derive(Parser)]
#[command(name = "cr-delta", version)]
struct Args {
    /// Make a delta against the full image BASE.
    #[arg(short, long, value_name = "BASE", required_unless_present = "apply")]
    base: Option<PathBuf>,
    /// Rebuild the full image from a delta and the image BASE it was made
    /// against.
    #[arg(short, long, value_name = "BASE", conflicts_with = "base")]
    apply: Option<PathBuf>,
    /// Key the delta's own digests with the bytes of FILE (HMAC-SHA-256),
    /// for a keyed image (cr-sum --key FILE); its keyed digests are checked.
    #[arg(short, long, value_name = "FILE", conflicts_with = "apply")]
    key: Option<PathBuf>,
    /// Threads reading the base to identify it, 0 to 256; 0 means one per
    /// core.
    #[arg(short = 'T', long, default_value_t = 0, value_parser = cli::parse_threads)]
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

fn main() -> ExitCode {
    let args: Args = crtools::completions::parse();
    cli::run("cr-delta", || {
        let base = args.base.as_deref().or(args.apply.as_deref());
        let base = base.expect("clap requires --base or --apply");
        let key = args.key.as_deref().map(cli::read_key).transpose()?;
        // The base is read twice: to identify it, then alongside the image.
        let base_id = cli::input(Some(base), true)?;
        let base_pages = cli::input(Some(base), true)?;
        let input = cli::input(args.file.as_deref(), args.force)?;
        let output = cli::Output::open(
            args.output.as_deref(),
            args.force,
            &[args.file.as_deref(), Some(base)],
        )?;
        let threads = cli::threads(args.threads);
        let mut progress = cli::Progress::new("cr-delta", args.quiet);
        let mut show = |s: &Stats| progress.update(s.bytes_in, s.bytes_out);
        let output = if args.apply.is_some() {
            let (o, _) =
                delta::apply(base_id, base_pages, input, output, threads, Some(&mut show))?;
            o
        } else {
            let opts = DeltaOptions { threads, key };
            let (o, _) = delta::make(base_id, base_pages, input, output, &opts, Some(&mut show))?;
            o
        };
        output.commit()?;
        Ok(())
    })
}
