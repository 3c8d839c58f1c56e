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
//! Errors print one line `microformer: error: …` on stderr (clap's own usage
//! errors too, folded onto one line; control characters in a message, such as a
//! line break in a file name, escaped) and exit with status 2 for usage and
//! configuration errors or 1 for runtime failures (unreadable or malformed files,
//! I/O); see [`error`]. No subcommand leaves a partial output file: `convert`
//! writes its image to a temporary file beside the output and renames it.

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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(e),
    };
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
            eprintln!("microformer: error: {}", one_line(&e.to_string()));
            ExitCode::from(e.exit_code())
        }
    }
}

/// Help and version go to stdout as clap prints them (exit status 0); a usage error
/// is one `microformer: error: …` line on stderr, exit status 2.
fn clap_exit(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // Printing help can only fail on a closed stdout: nothing left to say then.
            let _ = e.print();
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
        }
        _ => {
            eprintln!(
                "microformer: error: {}",
                clap_message(&e.render().to_string())
            );
            ExitCode::from(2)
        }
    }
}

/// clap's multi-line error text as one line: the message and its indented details
/// (`[possible values: …]`, the missing arguments), without the tips, the usage
/// and the pointer to `--help`.
fn clap_message(text: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("Usage:") || t.starts_with("For more information") {
            break;
        }
        if t.is_empty() || t.starts_with("tip:") {
            continue;
        }
        parts.push(t.strip_prefix("error: ").unwrap_or(t));
    }
    one_line(&parts.join(" "))
}

/// A message on one line: control characters (a line break in a file name, say)
/// are written as escapes.
fn one_line(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    for c in msg.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_errors_become_one_line() {
        let err = |args: &[&str]| {
            let e = Cli::try_parse_from(args).expect_err("a usage error");
            clap_message(&e.render().to_string())
        };
        assert_eq!(
            err(&["microformer", "run", "x", "--bogus"]),
            "unexpected argument '--bogus' found"
        );
        assert_eq!(
            err(&["microformer", "run", "x", "--kv", "q4"]),
            "invalid value 'q4' for '--kv <KV>' [possible values: f32, q8, q16]"
        );
        assert_eq!(
            err(&["microformer", "convert", "x"]),
            "the following required arguments were not provided: --output <OUT>"
        );
        assert_eq!(one_line("a\nb\tc\u{7f}"), "a\\nb\\tc\\u{7f}");
    }
}
