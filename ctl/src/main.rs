//! `onsalectl`: the operators' CLI for an onsale cluster. It speaks only
//! the operator HTTP API (docs/protocol.md) of whichever node answers.
//!
//! Code map: `cli` (the command line), `client` (blocking HTTP with
//! endpoint failover), `api` (the answers' types), `output` (tables, JSON,
//! errors), `timefmt` (times and durations), `watch` (polling), and one
//! module per command group: `cluster`, `node`, `event`, `top`.

mod api;
mod cli;
mod client;
mod cluster;
mod error;
mod event;
mod node;
mod output;
mod timefmt;
mod top;
mod watch;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command};
use crate::client::{Client, Endpoint};
use crate::error::{CtlError, Result};
use crate::output::{Format, Out};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Out {
        format: if cli.json { Format::Json } else { cli.output },
        no_headers: cli.no_headers,
    };
    match run(cli, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            out.error(&error);
            ExitCode::from(error.kind.exit_code())
        }
    }
}

fn run(cli: Cli, out: Out) -> Result<()> {
    let connect = || connect(&cli);
    match &cli.command {
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(*shell, &mut command, "onsalectl", &mut std::io::stdout());
            Ok(())
        }
        Command::Cluster(command) => cluster::run(&connect()?, out, command),
        Command::Node(command) => node::run(&connect()?, out, command),
        Command::Event(cli::EventCommand::Create(args)) if args.dry_run => {
            event::create_dry_run(out, args)
        }
        Command::Event(command) => event::run(&connect()?, out, command),
        Command::Placement { diff } => cluster::placement(&connect()?, out, *diff),
        Command::Top { event, interval } => {
            let interval = timefmt::parse_duration(interval)?;
            top::run(&connect()?, *event, interval)
        }
    }
}

/// The client for `--endpoint` with the operator token.
fn connect(cli: &Cli) -> Result<Client> {
    let endpoints = cli
        .endpoint
        .iter()
        .filter(|e| !e.trim().is_empty())
        .map(|e| Endpoint::parse(e))
        .collect::<Result<Vec<_>>>()?;
    Client::new(endpoints, token(cli)?)
}

/// `--token-file`, else `ONSALE_OPERATOR_TOKEN`.
fn token(cli: &Cli) -> Result<String> {
    if let Some(path) = &cli.token_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CtlError::usage(format!("reading the token file {}: {e}", path.display()))
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(CtlError::usage(format!(
                "the token file {} is empty",
                path.display()
            )));
        }
        return Ok(token.to_owned());
    }
    match std::env::var("ONSALE_OPERATOR_TOKEN") {
        Ok(token) if !token.trim().is_empty() => Ok(token.trim().to_owned()),
        _ => Err(CtlError::usage(
            "no operator token: pass --token-file FILE or set ONSALE_OPERATOR_TOKEN \
             (a node keeps it in <store>.operator-token beside its store)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn json_is_an_alias_of_output_json() {
        let cli = Cli::try_parse_from(["onsalectl", "--json", "event", "list"]).unwrap();
        assert!(cli.json);
        let cli = Cli::try_parse_from(["onsalectl", "event", "list", "-o", "wide"]).unwrap();
        assert_eq!(cli.output, Format::Wide);
    }

    #[test]
    fn bad_sale_states_are_usage_errors() {
        let err =
            Cli::try_parse_from(["onsalectl", "event", "list", "--state", "open"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
