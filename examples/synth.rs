//! Writes a synthetic checkpoint image, for benchmarks and manual tests.
//!
//! `cargo run --release --example synth -- [--fill mixed|random|zero]
//! [--size BYTES] [--seed N] [--sum] [--tiny] > out.img`

use std::io::{BufWriter, Write};

use crtools::image::WriteOptions;
use crtools::image::synth::{self, Fill, Spec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut spec = Spec::default();
    let mut opts = WriteOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--fill" => {
                spec.fill = match val()?.as_str() {
                    "mixed" => Fill::Mixed,
                    "random" => Fill::Random,
                    "zero" => Fill::Zero,
                    f => return Err(format!("unknown fill {f}").into()),
                }
            }
            "--size" => spec.data = crtools::cli::parse_size(&val()?)?,
            "--seed" => spec.seed = val()?.parse()?,
            "--sum" => opts.digest = true,
            "--tiny" => {
                spec = Spec {
                    processes: 1,
                    threads: 1,
                    mappings: 1,
                    files: 1,
                    extras: false,
                    data: 4096,
                    ..spec
                }
            }
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    let out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    synth::write(out, &spec, opts)?.flush()?;
    Ok(())
}
