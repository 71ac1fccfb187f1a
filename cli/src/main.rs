//! `ipc-codec`: encode, decode and inspect `.ipc` files from the command line.
//!
//! Errors are handled with `anyhow` here at the edge only; every failure is reported as
//! one line `ipc-codec: <reason>` on standard error with an exit status by category
//! (see `failure.rs` and `ipc-codec --help`).

mod atomic;
mod bench;
mod cli;
mod decode;
mod encode;
mod failure;
#[cfg(feature = "train")]
mod gpu;
mod info;
mod input;
mod media;
mod packs;
mod signals;
#[cfg(feature = "train")]
mod train;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    signals::install();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return failure::report_clap(e),
    };
    let result = match &cli.command {
        Command::Encode(args) => encode::run(args),
        Command::Decode(args) => decode::run(args),
        Command::Info(args) => info::run(args),
        Command::Bench(args) => bench::run(args),
        #[cfg(feature = "train")]
        Command::Train(args) => train::run(args),
        #[cfg(not(feature = "train"))]
        Command::Train(_) => Err(failure::Failure::usage(
            "this ipc-codec was built without training; rebuild with `cargo build -p ipc-codec-cli --features train` (needs libtorch: scripts/setup-libtorch)",
        )
        .into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failure::report(&e),
    }
}
