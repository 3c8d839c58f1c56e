//! `cargo xtask` — developer tasks for microformer.
//!
//! - `cargo xtask test`: installs the Cortex-M rustup targets a fresh machine lacks, then runs
//!   formatting and clippy checks, every host test, and the library builds for the Cortex-M
//!   targets (`thumbv6m-none-eabi`, `thumbv7m-none-eabi`, `thumbv7em-none-eabihf`,
//!   `thumbv8m.main-none-eabihf`).
//!
//! Tool output goes to stderr; a failing step stops the run with a non-zero exit code.

use std::process::{Command, ExitCode};

/// Cortex-M targets the library must build for: M0/M0+, M3, M4F/M7F, M33.
const TARGETS: &[&str] = &[
    "thumbv6m-none-eabi",
    "thumbv7m-none-eabi",
    "thumbv7em-none-eabihf",
    "thumbv8m.main-none-eabihf",
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("-h") | Some("--help") | None => {
            eprintln!("usage: cargo xtask test");
            eprintln!("  test   install missing targets, then fmt, clippy, host tests, Cortex-M builds");
            return if args.is_empty() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
        Some(other) => Err(format!("unknown task `{other}` (try `cargo xtask --help`)")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command, echoing it on stderr; fails on a non-zero exit.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    eprintln!("xtask: $ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .status()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed ({status})", args.join(" ")))
    }
}

/// Adds the rustup targets that are not installed yet (skips the others).
fn ensure_targets() -> Result<(), String> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("cannot run rustup: {e}"))?;
    let installed = String::from_utf8_lossy(&out.stdout);
    let missing: Vec<&str> = TARGETS
        .iter()
        .copied()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if missing.is_empty() {
        eprintln!("xtask: rustup targets already installed");
        return Ok(());
    }
    let mut args = vec!["target", "add"];
    args.extend(missing);
    run("rustup", &args)
}

/// Adds a rustup component (rustfmt, clippy) when its cargo subcommand is missing.
fn ensure_component(subcommand: &str, component: &str) -> Result<(), String> {
    let ok = Command::new("cargo")
        .args([subcommand, "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        run("rustup", &["component", "add", component])
    }
}

fn test() -> Result<(), String> {
    ensure_targets()?;
    ensure_component("fmt", "rustfmt")?;
    ensure_component("clippy", "clippy")?;
    run("cargo", &["fmt", "--all", "--check"])?;
    run(
        "cargo",
        &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"],
    )?;
    run("cargo", &["test", "--workspace"])?;
    for target in TARGETS {
        run(
            "cargo",
            &["build", "-p", "microformer", "--lib", "--release", "--target", target],
        )?;
    }
    eprintln!("xtask: all tests passed");
    Ok(())
}
