//! `vtep -batch FILE`: many commands, one per line, in one process under one lock with the
//! maps opened once, like `ip -batch`. Lines are parsed as `vtep` arguments (without the
//! program name); `#` starts a comment. Without `--force` the first failing line stops the
//! batch and nothing after it runs; errors name the line.

use std::io::{BufRead, BufReader};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;

use crate::{
    args::{BadInput, Mac},
    cli::{Cli, Command, FdbCommand, FdbEntryArgs, FdbKeyArgs},
    exec,
    lock::Step,
    state::{Access, State},
};

pub async fn run(file: &str, force: bool, json: bool) -> Result<()> {
    let input: Box<dyn BufRead> = if file == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(
            std::fs::File::open(file).with_context(|| format!("opening batch file {file}"))?,
        ))
    };
    let mut st = State::open(Access::Write).await?;
    let mut failed = 0usize;
    // One journal step for the whole batch: a batch killed half-way has its PEERS recounted
    // by the next writer, without a journal write per line.
    let result = st
        .step(Step::Tables, async |st| {
            for (n, line) in input.lines().enumerate() {
                let line = line.map_err(|e| anyhow!("reading line {}: {e}", n + 1))?;
                if let Err(e) = run_line(st, &line, json).await {
                    eprintln!("vtep: line {}: {e:#}", n + 1);
                    failed += 1;
                    if !force {
                        return Err(
                            anyhow!(BadInput(format!("batch stopped at line {}", n + 1))).into(),
                        );
                    }
                }
            }
            Ok(())
        })
        .await;
    result?;
    if failed > 0 {
        bail!("{failed} line(s) of the batch failed");
    }
    Ok(())
}

async fn run_line(st: &mut State, line: &str, json: bool) -> Result<()> {
    let words: Vec<&str> = line
        .split('#')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    if words.is_empty() {
        return Ok(());
    }
    if let Some(command) = table_write(&words)? {
        return exec(st, command, json).await;
    }
    let cli = Cli::try_parse_from(std::iter::once("vtep").chain(words))
        .map_err(|e| anyhow!(BadInput(crate::cli::one_line(&e))))?;
    if cli.netns.is_some() || cli.batch.is_some() {
        bail!(BadInput(
            "-n and --batch apply to the whole batch, not to a line".into()
        ));
    }
    let Some(command) = cli.command else {
        bail!(BadInput("missing command".into()));
    };
    if let Command::Monitor = command {
        bail!(BadInput(
            "`monitor` does not end: not a command for a batch".into()
        ));
    }
    let up_or_down = matches!(command, Command::Up(_) | Command::Down);
    let result = exec(st, command, json || cli.json).await;
    if up_or_down {
        st.reopen()?;
    }
    result
}

/// The lines a large batch is made of (`fdb add|replace|append|del MAC ...`), taken without
/// clap, whose parse would cost more than the table write: the words after the MAC go to the
/// same keyword parser a command line's do.
fn table_write(words: &[&str]) -> Result<Option<Command>> {
    let [object, verb, mac, rest @ ..] = words else {
        return Ok(None);
    };
    if *object != "fdb" || mac.starts_with('-') || rest.iter().any(|w| w.starts_with('-')) {
        return Ok(None);
    }
    let mac: Mac = mac
        .parse()
        .map_err(|e: anyhow::Error| BadInput(e.to_string()))?;
    let rest: Vec<String> = rest.iter().map(|w| w.to_string()).collect();
    let entry = || FdbEntryArgs {
        mac,
        rest: rest.clone(),
    };
    let command = match *verb {
        "add" => FdbCommand::Add(entry()),
        "replace" => FdbCommand::Replace(entry()),
        "append" => FdbCommand::Append(entry()),
        "del" => FdbCommand::Del(FdbKeyArgs {
            mac,
            rest: rest.clone(),
        }),
        _ => return Ok(None),
    };
    Ok(Some(Command::Fdb { command }))
}
