//! `ipc-codec`: decode and inspect `.ipc` files from the command line.
//!
//! Errors are handled with `anyhow` here at the edge only; every failure is reported as
//! one line `ipc-codec: <reason>` on standard error with an exit status by category
//! (see `failure.rs` and `ipc-codec --help`).

mod atomic;
mod cli;
mod decode;
mod failure;
mod info;
mod input;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return failure::report_clap(e),
    };
    let result = match &cli.command {
        Command::Decode(args) => decode::run(args),
        Command::Info(args) => info::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failure::report(&e),
    }
}
