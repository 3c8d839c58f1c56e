//! `microformer`: the host tool of the microformer inference core.
//!
//! Subcommands (one module each):
//! - `tables`: print the position tables microformer would precompute for a
//!   Hugging Face `config.json` (JSON, Rust or C).
//!
//! Errors print one line `microformer: error: …` on stderr and exit with code 2
//! (as clap does for bad flags).

mod error;
mod hf_config;
mod output;
mod tables;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Host tool for microformer, a no_std transformer inference core for Cortex-M.
#[derive(Debug, Parser)]
#[command(name = "microformer", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the position tables (RoPE, ALiBi, T5 buckets, sinusoidal) for a Hugging Face config.json.
    Tables(tables::TablesArgs),
}

/// Exit code for any usage or input error (the same as clap's).
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Tables(args) => tables::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("microformer: error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
