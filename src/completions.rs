//! Every program's argument parsing: the options they all share, usage
//! errors in the tools' one-line style, and shell completions generated from
//! each program's clap definition.
//!
//! Every program flattens [`Common`] (`-v`, `-q`, `-f`, `--progress`,
//! `--no-progress`), and [`InputFile`] and [`OutputFile`] where it reads or
//! writes an image, and parses its arguments with [`parse`]. That answers a
//! hidden `PROGRAM --completions bash|zsh|fish|elvish|powershell` by writing
//! the completion script for that shell on stdout and exiting 0
//! (`scripts/install.sh` and the Debian package use it), and prints a usage
//! error as one line, `PROGRAM: what is wrong (see PROGRAM --help)`, exit 2.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};
use clap_complete::Shell;

use crate::progress::When;

/// The options every program has (with `-h` and `-V`, which clap adds).
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Print a one-line summary on stderr at the end: sizes, time, rate.
    #[arg(short, long, overrides_with = "quiet")]
    pub verbose: bool,
    /// Print nothing on stderr but errors: no progress, no summary.
    #[arg(short, long, overrides_with = "verbose")]
    pub quiet: bool,
    /// Read or write an image at a terminal anyway (images are refused
    /// there by default).
    #[arg(short, long)]
    pub force: bool,
    /// Show progress on stderr even when it is not a terminal.
    #[arg(long, overrides_with = "no_progress")]
    pub progress: bool,
    /// Show no progress, even on a terminal.
    #[arg(long, overrides_with = "progress")]
    pub no_progress: bool,
}

impl Common {
    /// Whether (and how) to draw a progress line.
    pub fn when(&self) -> When {
        When::from_flags(self.progress, self.quiet || self.no_progress)
    }
    /// Whether to print the `-v` summary.
    pub fn summary(&self) -> bool {
        self.verbose && !self.quiet
    }
}

/// The image a program reads: a file, or standard input.
#[derive(Debug, Clone, clap::Args)]
pub struct InputFile {
    /// Read the image from FILE instead of standard input ("-" is standard
    /// input).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
}

impl InputFile {
    pub fn path(&self) -> Option<&Path> {
        self.file.as_deref()
    }
    /// The input's size, when it is a regular file (for a progress bar).
    pub fn size(&self) -> Option<u64> {
        crate::cli::input_len(self.path())
    }
}

/// Where a program writes its output: a file, or standard output.
#[derive(Debug, Clone, clap::Args)]
pub struct OutputFile {
    /// Write to FILE instead of standard output. FILE is replaced only once
    /// the whole output is written (a failed run leaves it as it was).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

impl OutputFile {
    pub fn path(&self) -> Option<&Path> {
        self.output.as_deref()
    }
}

/// The program's arguments, parsed by clap; or, for `--completions SHELL` as the only
/// argument, its completion script for SHELL on stdout and exit.
pub fn parse<T: Parser>() -> T {
    let argv: Vec<OsString> = std::env::args_os().collect();
    if let [_, flag, shell] = argv.as_slice()
        && flag == "--completions"
    {
        let mut cmd = T::command();
        let name = cmd.get_name().to_string();
        let Some(shell) = shell.to_str().and_then(|s| Shell::from_str(s, false).ok()) else {
            eprintln!(
                "{name}: --completions {}: not a shell (bash, zsh, fish, elvish, powershell)",
                shell.to_string_lossy()
            );
            std::process::exit(2);
        };
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, name.clone(), &mut out);
        if let Err(e) = std::io::stdout().write_all(&out) {
            eprintln!("{name}: writing the completions: {e}");
            std::process::exit(1);
        }
        std::process::exit(0);
    }
    let name = T::command().get_name().to_string();
    match T::try_parse_from(argv) {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{name}: {}", usage_line(&e, &name));
            std::process::exit(2);
        }
    }
}

/// A clap error as one line: its message without `error:`, usage and
/// hints, joined, and where to read more.
fn usage_line(e: &clap::Error, name: &str) -> String {
    let text = e.render().to_string();
    let mut parts = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if line.is_empty() || line.starts_with("tip:") {
            continue;
        }
        parts.push(line.strip_prefix("error: ").unwrap_or(line));
    }
    format!("{} (see {name} --help)", parts.join(" "))
}
