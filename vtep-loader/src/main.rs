use std::process::ExitCode;

use clap::{error::ErrorKind, Parser};
use vtep_loader::{args::BadInput, cli::Cli};

/// Bad input, whichever parser rejected it (clap's exit code for usage errors).
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    // iproute2 spells it `-batch`; clap's long options take two dashes.
    let argv = std::env::args().map(|a| if a == "-batch" { "--batch".into() } else { a });
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            return match e.print() {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            };
        }
        Err(e) => {
            eprintln!("vtep: {}", vtep_loader::cli::one_line(&e));
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    match vtep_loader::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vtep: {e:#}");
            if e.chain().any(|c| c.is::<BadInput>()) {
                return ExitCode::from(EXIT_BAD_INPUT);
            }
            ExitCode::FAILURE
        }
    }
}
