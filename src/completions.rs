//! Shell completions generated from each program's clap definition.
//!
//! Every program parses its arguments with [`parse`], which answers a hidden
//! `PROGRAM --completions bash|zsh|fish|elvish|powershell` by writing the completion
//! script for that shell on stdout and exiting 0 (`scripts/install.sh` and the Debian
//! package use it), and otherwise is `Parser::parse`.

use std::ffi::OsString;
use std::io::Write;

use clap::{Parser, ValueEnum};
use clap_complete::Shell;

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
    T::parse_from(argv)
}
