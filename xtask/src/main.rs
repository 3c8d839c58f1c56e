//! `cargo xtask` — developer tasks for microformer.
//!
//! - `cargo xtask test`: everything CI runs, in two stages.
//!   1. Host stage: installs the Cortex-M rustup targets (and rustfmt, clippy) a fresh machine
//!      lacks; runs formatting and clippy checks (the root workspace, and the board crates under
//!      `boards/` for their own targets), every host test, and the library builds for the
//!      Cortex-M targets (`thumbv6m-none-eabi`, `thumbv7m-none-eabi`, `thumbv7em-none-eabihf`,
//!      `thumbv8m.main-none-eabihf`).
//!   2. On-target stage (as `cargo xtask qemu-tests`).
//!   3. Demo stage: `cargo xtask demo` for the three aidreams260K cases of
//!      `reference-llama2c.json`, its text compared with llama2.c's byte for byte.
//!   4. Families stage (as `cargo xtask families`): Hugging Face fixtures (ALiBi, learned,
//!      sinusoidal, partial-RoPE positions) converted and run greedy on the host and on the
//!      emulated Cortex-M4F, the ids compared with each other and with transformers'.
//!   5. Real boards stage (as `cargo xtask boards`).
//! - `cargo xtask qemu-tests`: the on-target stage alone. Installs what a fresh machine lacks
//!   (the rustup targets; `qemu-system-arm` through apt-get when running as root;
//!   `defmt-print` through `cargo install`), runs the host half of the host/target comparison
//!   (`boards/firmware`'s host test), then, for each QEMU board (Cortex-M0, M3, M4F, M33), its
//!   on-target test suites (`cargo test` in the board crate: every suite binary boots under
//!   QEMU) and its firmware's self-check (`cargo run`). A failing test, a fault or a QEMU run
//!   past `QEMU_TIMEOUT` seconds (default 60) fails the stage. One summary line per core.
//!
//! - `cargo xtask boards`: the real boards (STM32F429I-DISC1, nRF52840-DK, Raspberry Pi Pico),
//!   built only (no board attached): see `boards.rs`.
//!
//! - `cargo xtask demo [options]`: a model on the emulated Cortex-M4F, its text on stdout (see
//!   `demo.rs`); `cargo xtask test` ends with a demo stage comparing the three aidreams260K
//!   cases with llama2.c's text.
//! - `cargo xtask bench [--json]`: instructions per token under QEMU, flash and RAM (see
//!   `bench.rs`).
//!
//! Tool output goes to stderr; a failing step stops the run (after the other boards have run,
//! in the on-target stage) with a non-zero exit code.

mod bench;
mod boards;
mod demo;
mod elf;
mod families;
mod firmware;
mod host;
mod install;
mod on_target;
mod qemu;
mod qemu_boards;
mod util;

use std::process::ExitCode;
use std::time::Instant;

use crate::util::secs;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("qemu-tests") => on_target::stage().map(|_| ()),
        Some("demo") => demo::demo(&args[1..]),
        Some("demo-tests") => demo::demo_tests().map(|_| ()),
        Some("families") => families::families_tests().map(|_| ()),
        Some("bench") => bench::bench(&args[1..]),
        Some("boards") => boards::stage().map(|_| ()),
        Some("-h") | Some("--help") | None => {
            eprintln!("usage: cargo xtask <task>");
            eprintln!(
                "  test         host stage (install missing targets; fmt, clippy, host tests,"
            );
            eprintln!(
                "               Cortex-M builds; fmt and clippy of boards/), qemu-tests, boards"
            );
            eprintln!("  qemu-tests   on-target stage: install qemu-system-arm and defmt-print if");
            eprintln!(
                "               missing, run every board's tests under QEMU (M0, M3, M4F, M33)"
            );
            eprintln!("  demo         run a model on the emulated Cortex-M4F (--help for options)");
            eprintln!("  demo-tests   the demo against llama2.c's aidreams260K texts");
            eprintln!(
                "  families     Hugging Face fixtures: greedy ids on the M4F = host = transformers"
            );
            eprintln!("  bench        instructions per token, flash and RAM under QEMU [--json]");
            eprintln!("  boards       real boards: lint, host test, release builds and sizes");
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

/// `cargo xtask test`: the stages in order, each stopping the run when it fails.
fn test() -> Result<(), String> {
    let start = Instant::now();
    host::stage()?;
    let host = start.elapsed();
    let on_target = on_target::stage()?;
    let demo = demo::demo_tests()?;
    let families = families::families_tests()?;
    let real = boards::stage()?;
    eprintln!(
        "xtask: all tests passed (host stage {}, on-target stage {}, demo stage {}, families stage {}, real boards {}, total {})",
        secs(host),
        secs(on_target),
        secs(demo),
        secs(families),
        secs(real),
        secs(start.elapsed())
    );
    Ok(())
}
