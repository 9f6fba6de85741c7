//! `cr-split`: cut a checkpoint image into ordered, self-checking parts, or
//! join them back.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use crtools::cli;
use crtools::filters::split::{self, PartInput};

/// Cut a checkpoint image into parts PREFIX.000, PREFIX.001, ... of at most
/// SIZE bytes, cut between records; or with --join write the image the
/// given parts were cut from to stdout.
#[derive(Parser)]
#[command(name = "cr-split", version)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["bytes", "join"])))]
struct Args {
    /// Largest part, in bytes; K, M and G suffixes multiply by 1024.
    #[arg(short, long, value_name = "SIZE", value_parser = size)]
    bytes: Option<u64>,
    /// Join PARTs, given in order, into the original image.
    #[arg(short, long)]
    join: bool,
    /// Write or read an image at a terminal anyway.
    #[arg(short, long)]
    force: bool,
    /// With --join: write the image to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE", requires = "join")]
    output: Option<PathBuf>,
    /// Without --join: PREFIX [FILE]. With --join: PART...
    #[arg(required = true, value_name = "ARGS")]
    args: Vec<PathBuf>,
}

fn size(s: &str) -> Result<u64, String> {
    cli::parse_size(s).map_err(|e| e.to_string())
}

fn part_name(prefix: &std::path::Path, i: u32) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(format!(".{i:03}"));
    PathBuf::from(name)
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::run("cr-split", || {
        if args.join {
            let mut parts = Vec::new();
            for path in &args.args {
                let name = path.display().to_string();
                let file = File::open(path).with_context(|| name.clone())?;
                let len = file.metadata().with_context(|| name.clone())?.len();
                parts.push(PartInput {
                    name,
                    input: std::io::BufReader::with_capacity(cli::BUF_SIZE, file),
                    len: Some(len),
                });
            }
            let output = cli::output(args.output.as_deref(), args.force)?;
            split::join(parts, output)?;
            return Ok(());
        }
        let size = args.bytes.expect("clap requires --bytes without --join");
        let (prefix, file) = match args.args.as_slice() {
            [prefix] => (prefix, None),
            [prefix, file] => (prefix, Some(file.as_path())),
            _ => anyhow::bail!("expected PREFIX [FILE]"),
        };
        let input = cli::input(file, args.force)?;
        split::split(input, size, |i| {
            let path = part_name(prefix, i);
            let f = File::create(&path)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            Ok(BufWriter::with_capacity(cli::BUF_SIZE, f))
        })?;
        Ok(())
    })
}
