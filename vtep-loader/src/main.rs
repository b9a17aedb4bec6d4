use std::process::ExitCode;

use clap::{error::ErrorKind, Parser};
use vtep_loader::cli::Cli;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) => {
            // One line, like iproute2: clap's usage block would bury the actual problem.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            eprintln!("vtep: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    match vtep_loader::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vtep: {e:#}");
            ExitCode::FAILURE
        }
    }
}
