//! `cr-info`: summarise a checkpoint image.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use crtools::cli;
use crtools::completions::{Common, InputFile, OutputFile};
use crtools::filters::info;
use crtools::progress::{self, Display, Show};

/// Summarise a checkpoint image: its origin, process tree, memory, files,
/// record counts, sizes, compression and checksum state. The whole image is
/// read and checked; page data is not decompressed.
#[derive(Parser)]
#[command(name = "cr-info", version)]
struct Args {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    output: OutputFile,
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    input: InputFile,
}

fn main() -> ExitCode {
    let args: Args = crtools::completions::parse();
    cli::run("cr-info", || {
        let input = cli::input(args.input.path(), args.common.force)?;
        // A summary is text: a terminal is where it belongs.
        let mut out = cli::Output::open(args.output.path(), true, &[args.input.path()])?;
        let total = args.input.size();
        let mut display = Display::start("cr-info", Show::Read { total }, args.common.when());
        let info = info::info(input)?;
        display.finish();
        if args.json {
            serde_json::to_writer_pretty(&mut out, &info.to_json())?;
            writeln!(out)?;
        } else {
            write!(out, "{info}")?;
        }
        out.commit()?;
        if args.common.summary() {
            let (bytes, took) = (progress::bytes_in(), display.elapsed());
            display.summary(&format!(
                "{} read in {} ({})",
                progress::size(bytes),
                progress::secs(took),
                progress::rate(bytes, took)
            ));
        }
        Ok(())
    })
}
