//! `cr-split`: cut a checkpoint image into ordered, self-checking parts, or
//! join them back.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use crtools::cli;
use crtools::completions::{Common, OutputFile};
use crtools::filters::split::{self, MIN_PART_SIZE, PART_MAGIC, PartInput};
use crtools::progress::{self, Counted, Display, Show};

/// Cut a checkpoint image into parts PREFIX.000, PREFIX.001, ... of at most
/// SIZE bytes each (cut anywhere, even inside a record); or with --join
/// write the image the given parts were cut from to stdout. Parts are
/// written under temporary names and renamed into place once the whole
/// image is split; parts of an earlier split with the same PREFIX numbered
/// beyond the new last part are then removed.
#[derive(Parser)]
#[command(name = "cr-split", version)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["bytes", "join"])))]
#[command(mut_arg("output", |a| a.conflicts_with("bytes")))]
struct Args {
    /// Largest part in bytes, part header included (at least 53); K, M and
    /// G suffixes multiply by 1024.
    #[arg(short, long, value_name = "SIZE", value_parser = size)]
    bytes: Option<u64>,
    /// Join PARTs, given in order, into the original image.
    #[arg(short, long)]
    join: bool,
    #[command(flatten)]
    output: OutputFile,
    #[command(flatten)]
    common: Common,
    /// Without --join: PREFIX [FILE]. With --join: PART...
    #[arg(required = true, value_name = "ARGS")]
    args: Vec<PathBuf>,
}

fn size(s: &str) -> Result<u64, String> {
    let n = cli::parse_size(s).map_err(|e| e.to_string())?;
    if n < MIN_PART_SIZE {
        return Err(format!(
            "{n} is too small: a part takes at least {MIN_PART_SIZE} bytes (its 52-byte header and one byte)"
        ));
    }
    Ok(n)
}

fn part_name(prefix: &Path, i: u32) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(format!(".{i:03}"));
    PathBuf::from(name)
}

/// Removes the parts of an earlier split with this prefix that come after
/// the new last part (`PREFIX.N`, N >= `count`, starting with the part
/// magic), so that `--join PREFIX.*` finds only the new parts.
fn remove_stale_parts(prefix: &Path, count: u32) -> anyhow::Result<()> {
    use std::io::Read;
    use std::os::unix::ffi::OsStrExt;
    let dir = match prefix.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Some(base) = prefix.file_name() else {
        return Ok(());
    };
    let entries = std::fs::read_dir(dir).with_context(|| dir.display().to_string())?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.as_bytes().strip_prefix(base.as_bytes()) else {
            continue;
        };
        let Some(digits) = rest.strip_prefix(b".") else {
            continue;
        };
        if digits.len() < 3 || !digits.iter().all(u8::is_ascii_digit) {
            continue;
        }
        let Some(n) = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse::<u64>().ok())
        else {
            continue;
        };
        // The name this split would give part n: 000, 001, ..., 1000.
        if n < count as u64 || digits != format!("{n:03}").as_bytes() {
            continue;
        }
        let path = entry.path();
        let mut magic = [0u8; 8];
        let is_part = File::open(&path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
            && magic == PART_MAGIC;
        if is_part {
            std::fs::remove_file(&path)
                .with_context(|| format!("{}: removing a stale part", path.display()))?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Args = crtools::completions::parse();
    cli::run("cr-split", || {
        let (force, when) = (args.common.force, args.common.when());
        if args.join {
            let mut parts = Vec::new();
            for path in &args.args {
                let name = path.display().to_string();
                let file = File::open(path).with_context(|| name.clone())?;
                let meta = file.metadata().with_context(|| name.clone())?;
                if meta.is_dir() {
                    return Err(std::io::Error::from_raw_os_error(libc::EISDIR)).context(name);
                }
                parts.push(PartInput {
                    name,
                    input: std::io::BufReader::with_capacity(cli::BUF_SIZE, Counted::input(file)),
                    len: Some(meta.len()),
                });
            }
            let inputs: Vec<Option<&Path>> = args.args.iter().map(|p| Some(p.as_path())).collect();
            let output = cli::Output::open(args.output.path(), force, &inputs)?;
            let total = parts.iter().filter_map(|p| p.len).sum();
            let mut display = Display::start("cr-split", Show::Filter { total: Some(total) }, when);
            let count = parts.len() as u64;
            let (output, _) = split::join(parts, output)?;
            output.commit()?;
            if args.common.summary() {
                let (i, o, took) = (
                    progress::bytes_in(),
                    progress::bytes_out(),
                    display.elapsed(),
                );
                display.summary(&format!(
                    "{} joined: {}",
                    progress::count(count, "part", "parts"),
                    progress::transfer(i, o, took)
                ));
            }
            return Ok(());
        }
        let size = args.bytes.expect("clap requires --bytes without --join");
        let (prefix, file) = match args.args.as_slice() {
            [prefix] => (prefix, None),
            [prefix, file] => (prefix, Some(file.as_path())),
            _ => anyhow::bail!("expected PREFIX [FILE]"),
        };
        let input = cli::input(file, force)?;
        let total = cli::input_len(file);
        let mut display = Display::start("cr-split", Show::Filter { total }, when);
        // Every part under a temporary name until the whole image is split.
        let mut temps = Vec::new();
        let report = split::split(input, size, |i| {
            let path = part_name(prefix, i);
            let to_io = |e: cli::CliError| std::io::Error::other(e.to_string());
            cli::refuse_same_file(&path, &[file]).map_err(to_io)?;
            let (f, temp) = cli::TempFile::create(&path).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("{}: {}", path.display(), cli::io_reason(&e)),
                )
            })?;
            temps.push(temp);
            Ok(BufWriter::with_capacity(cli::BUF_SIZE, Counted::output(f)))
        })?;
        for temp in temps {
            temp.commit()?;
        }
        remove_stale_parts(prefix, report.parts)?;
        if args.common.summary() {
            let (i, o, took) = (
                progress::bytes_in(),
                progress::bytes_out(),
                display.elapsed(),
            );
            display.summary(&format!(
                "split into {}: {}",
                progress::count(report.parts.into(), "part", "parts"),
                progress::transfer(i, o, took)
            ));
        }
        Ok(())
    })
}
