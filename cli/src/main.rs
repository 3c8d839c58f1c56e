//! `microformer`: the host tool of the microformer inference core.
//!
//! Subcommands (one module each):
//! - `tables`: print the position tables microformer would precompute for a
//!   Hugging Face `config.json` (JSON, Rust or C).
//! - `convert`: a llama2.c checkpoint or a Hugging Face model directory into a
//!   model image.
//! - `run`: llama2.c's `run` on an image (text or token ids).
//! - `logits`: the logits of every position of a token sequence, as JSON.
//! - `inspect`: an image's header, tensors, flash and RAM sizes.
//! - `perplexity`: an image's perplexity over a text file, in windows.
//!
//! Errors print one line `microformer: error: …` on stderr and exit with status
//! 2 for usage and configuration errors (as clap does for bad flags) or 1 for
//! runtime failures (unreadable or malformed files, I/O); see [`error`].

mod convert;
mod error;
mod files;
mod inspect;
mod logits;
mod output;
mod perplexity;
mod progress;
mod run;
mod tables;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Host tool for microformer, a no_std transformer inference core for Cortex-M.
///
/// Exit status: 0 on success, 2 for usage or configuration errors, 1 for runtime
/// failures (unreadable or malformed files, I/O errors).
#[derive(Debug, Parser)]
#[command(name = "microformer", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the position tables (RoPE, ALiBi, T5 buckets, sinusoidal) for a Hugging Face config.json.
    Tables(tables::TablesArgs),
    /// Convert a llama2.c checkpoint or a Hugging Face model directory into a model image.
    Convert(convert::ConvertArgs),
    /// Generate text (or token ids) from an image, as llama2.c's run.
    Run(run::RunArgs),
    /// Print the logits of every position of a token sequence as JSON.
    Logits(logits::LogitsArgs),
    /// Show an image's header, tensors, flash bytes and RAM arena sizes.
    Inspect(inspect::InspectArgs),
    /// Score a text file: perplexity over windows of BOS + N−1 tokens.
    Perplexity(perplexity::PerplexityArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Tables(args) => tables::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Run(args) => run::run(args),
        Command::Logits(args) => logits::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Perplexity(args) => perplexity::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("microformer: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
