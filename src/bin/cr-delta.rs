//! `cr-delta`: store a checkpoint image as a delta against an earlier one,
//! or give the full image back.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use crtools::cli::{self, CliError};
use crtools::completions::{Common, InputFile, OutputFile};
use crtools::filters::delta::{self, DeltaOptions};
use crtools::progress::{self, Display, Show};

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
    #[command(flatten)]
    output: OutputFile,
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    input: InputFile,
}

/// The base image, buffered (not counted as input: progress is the image's).
fn open_base(path: &Path) -> Result<BufReader<File>, CliError> {
    let f = File::open(path).map_err(|source| CliError::Open {
        path: path.into(),
        source,
    })?;
    Ok(BufReader::with_capacity(1 << 20, f))
}

fn main() -> ExitCode {
    let args: Args = crtools::completions::parse();
    cli::run("cr-delta", || {
        let base = args.base.as_deref().or(args.apply.as_deref());
        let base = base.expect("clap requires --base or --apply");
        let key = args.key.as_deref().map(cli::read_key).transpose()?;
        let (force, total) = (args.common.force, args.input.size());
        // The base is read twice: to identify it, then alongside the image.
        let (base_id, base_pages) = (open_base(base)?, open_base(base)?);
        let input = cli::input(args.input.path(), force)?;
        let output =
            cli::Output::open(args.output.path(), force, &[args.input.path(), Some(base)])?;
        let threads = cli::threads(args.threads);
        let mut display = Display::start("cr-delta", Show::Filter { total }, args.common.when());
        let (output, stats) = if args.apply.is_some() {
            delta::apply(base_id, base_pages, input, output, threads, None)?
        } else {
            let opts = DeltaOptions { threads, key };
            let (o, s) = delta::make(base_id, base_pages, input, output, &opts, None)?;
            (o, s.stream)
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
