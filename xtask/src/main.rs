//! `cargo xtask` — developer tasks for microformer.
//!
//! - `cargo xtask test`: everything CI runs, in stages.
//!   1. Host stage (`host.rs`): installs the Cortex-M rustup targets (and rustfmt, clippy) a
//!      fresh machine lacks; runs formatting and clippy checks (the root workspace, and the
//!      board crates under `boards/` for their own targets), every host test, and the library
//!      builds for the Cortex-M targets (`thumbv6m-none-eabi`, `thumbv7m-none-eabi`,
//!      `thumbv7em-none-eabihf`, `thumbv8m.main-none-eabihf`).
//!   2. On-target stage (as `cargo xtask qemu-tests`, `on_target.rs`), its last step the
//!      soft-float check (as `cargo xtask softfloat`), the panic-site count (as
//!      `cargo xtask panics`) and the exact mode on the cores (as `cargo xtask exact`).
//!   3. Demo stage (as `cargo xtask demo-tests`): `cargo xtask demo` for the three
//!      aidreams260K cases of `reference-llama2c.json`, its text compared with llama2.c's
//!      byte for byte.
//!   4. Families stage (as `cargo xtask families`): Hugging Face fixtures (ALiBi, learned,
//!      sinusoidal, partial-RoPE positions) converted and run greedy on the host and on the
//!      emulated Cortex-M4F, the ids compared with each other and with transformers'.
//!   5. Real boards stage (as `cargo xtask boards`).
//!   6. Fuzz stage (`fuzz.rs`): every fuzz target of `fuzz/` for a few thousand
//!      executions from its seeds, after replaying the crashes found earlier.
//! - `cargo xtask qemu-tests`: the on-target stage alone: for each QEMU board (Cortex-M0,
//!   M3, M4F, M33) its on-target test suites and its firmware's self-check under QEMU, then
//!   the soft-float check. A failing test, a fault or a QEMU run past `QEMU_TIMEOUT` seconds
//!   (default 60) fails the stage. One summary line per core.
//! - `cargo xtask boards`: the real boards (STM32F429I-DISC1, nRF52840-DK, Raspberry Pi Pico),
//!   built only (no board attached): see `boards.rs`.
//! - `cargo xtask demo [options]`: a model on the emulated Cortex-M4F, its text on stdout (see
//!   `demo.rs`).
//! - `cargo xtask bench [--json] [--quick] [--quant Q]`: instructions per token under QEMU,
//!   flash and RAM (see `bench.rs`).
//! - `cargo xtask perplexity [--model DIR] [--window N] [--text FILE]`: a model's perplexity
//!   on an emulated Cortex-M and on the host over the same tokens (see `perplexity.rs`).
//! - `cargo xtask softfloat`: the integer forward step calls no soft-float routine on the
//!   Cortex-M3 and Cortex-M0 builds (call graph of the firmware ELF, see `softfloat.rs`).
//! - `cargo xtask panics [--write]`: panic sites left on the hot paths of the Cortex-M4F
//!   firmware, checked against `docs/panics.json` (the count only falls; `panics.rs`).
//! - `cargo xtask exact`: the firmware built with the `exact` feature gives the host's
//!   exact-mode tokens on every QEMU core (`exact.rs`).
//! - `cargo xtask fuzz [--runs N] [--targets LIST] [--write] [--short]`: the fuzz targets
//!   (cargo-fuzz, installed if missing) for N executions each; `--write` records the figures
//!   in `docs/fuzz.{json,md}` and README.md; `--short` is the test stage's step (see `fuzz.rs`).
//! - `cargo xtask cycles [--json] [--write] [--steps N]`: estimated cycles per token on the
//!   Cortex-M4F and M33 from QEMU's instruction trace and the TRMs' counts (see `cycles.rs`).
//!
//! Tool output goes to stderr; a failing step stops the run (after the other boards have run,
//! in the on-target stage) with a non-zero exit code. A bad argument is reported by clap with
//! the usage, exit code 2.
//!
//! The modules depend on each other in one direction only: `util` (paths, commands) and
//! `qemu_boards` (the board table) on nothing; `install`, `elf`, `qemu` and `firmware` on
//! those; the stages and commands on all of these; this file, which only wires the command
//! line, on the stages.

mod bench;
mod boards;
mod cycles;
mod demo;
mod elf;
mod exact;
mod extrapolation;
mod families;
mod firmware;
mod fuzz;
mod host;
mod install;
mod on_target;
mod panics;
mod perplexity;
mod qemu;
mod qemu_boards;
mod softfloat;
mod util;

use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};

use crate::util::secs;

/// Developer tasks for microformer: tests, the demo and the benchmarks, on the host and on
/// emulated Cortex-M cores (QEMU). What a fresh machine lacks is installed on the way.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

/// The tasks.
#[derive(Debug, Subcommand)]
enum Task {
    /// Every stage CI runs: host (install missing targets; fmt, clippy, host tests, Cortex-M
    /// builds; fmt and clippy of boards/), qemu-tests, demo-tests, families, boards, fuzz
    Test,
    /// On-target stage: install qemu-system-arm and defmt-print if missing, run every board's
    /// tests under QEMU (M0, M3, M4F, M33), then the soft-float check
    QemuTests,
    /// Run a model on an emulated Cortex-M (the M4F unless --core): its text on stdout
    Demo(demo::DemoArgs),
    /// The demo against llama2.c's aidreams260K texts
    DemoTests,
    /// Hugging Face fixtures: greedy ids on the M4F = host = transformers
    Families,
    /// Instructions per token, flash and RAM under QEMU
    Bench(bench::BenchArgs),
    /// Real boards: lint, host test, release builds and sizes
    Boards,
    /// Perplexity by window of models/'s six schemes and RoPE scaling rules (f32, q8)
    Extrapolation(extrapolation::ExtrapolationArgs),
    /// A model's perplexity on an emulated Cortex-M (the M4F unless --core) and on the
    /// host, over the same tokens: the figures must agree to 5 significant digits
    Perplexity(perplexity::PerplexityArgs),
    /// The integer step calls no soft-float routine: call graph of the Cortex-M3 and
    /// Cortex-M0 firmware ELFs from `model::integer::forward`
    Softfloat,
    /// Estimated cycles per token (Cortex-M4F, M33; 0 and 5 flash wait states): QEMU's
    /// executed-instruction trace weighted by the TRMs' cycle counts
    Cycles(cycles::CyclesArgs),
    /// Panic sites left on the hot paths (step, sampling, decoding, image parse): counted
    /// from the Cortex-M4F firmware ELF, checked against docs/panics.json (or --write)
    Panics(panics::PanicsArgs),
    /// Fuzz every input surface (cargo-fuzz, installed if missing) for N executions per
    /// target; --write records the figures in docs/fuzz.{json,md} and README.md
    Fuzz(fuzz::FuzzArgs),
    /// The firmware built with the `exact` feature gives the host's exact-mode tokens on
    /// every QEMU core (stories260K, a seeded top-p run the default arithmetic leaves)
    Exact,
}

fn main() -> ExitCode {
    let result = match Cli::parse().task {
        Task::Test => test(),
        Task::QemuTests => on_target::stage().map(|_| ()),
        Task::Demo(args) => demo::demo(args),
        Task::DemoTests => demo::demo_tests().map(|_| ()),
        Task::Families => families::families_tests().map(|_| ()),
        Task::Bench(args) => bench::bench(args),
        Task::Boards => boards::stage().map(|_| ()),
        Task::Extrapolation(args) => extrapolation::extrapolation(args),
        Task::Perplexity(args) => perplexity::perplexity(args),
        Task::Softfloat => softfloat::softfloat(),
        Task::Cycles(args) => cycles::cycles(args),
        Task::Panics(args) => panics::panics(args),
        Task::Fuzz(args) => fuzz::fuzz(args),
        Task::Exact => exact::exact(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask test`: the stages in order, each stopping the run when it fails.
fn test() -> Result<(), String> {
    let start = Instant::now();
    host::stage()?;
    let host = start.elapsed();
    let on_target = on_target::stage()?;
    let demo = demo::demo_tests()?;
    let families = families::families_tests()?;
    let real = boards::stage()?;
    let fuzz = fuzz::short()?;
    eprintln!(
        "xtask: all tests passed (host stage {}, on-target stage {}, demo stage {}, families stage {}, real boards {}, fuzz {}, total {})",
        secs(host),
        secs(on_target),
        secs(demo),
        secs(families),
        secs(real),
        secs(fuzz),
        secs(start.elapsed())
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Task, clap::Error> {
        let argv = std::iter::once("xtask").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|c| c.task)
    }

    #[test]
    fn every_task_is_there() {
        Cli::command().debug_assert();
        for task in [
            "test",
            "qemu-tests",
            "demo",
            "demo-tests",
            "families",
            "bench",
            "boards",
            "extrapolation",
            "perplexity",
            "softfloat",
            "cycles",
            "panics",
            "fuzz",
            "exact",
        ] {
            assert!(parse(&[task]).is_ok(), "{task}");
        }
        assert!(matches!(
            parse(&["bench", "--json", "--quick", "--quant", "q8"]),
            Ok(Task::Bench(_))
        ));
        assert!(parse(&["bench", "--quant", "q4"]).is_err());
        assert!(parse(&["bench", "--jsn"]).is_err());
        assert!(parse(&["frobnicate"]).is_err());
        assert!(parse(&["test", "--quick"]).is_err());
        assert!(parse(&[]).is_err());
    }
}
