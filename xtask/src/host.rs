//! The host stage of `cargo xtask test`: installs the Cortex-M rustup targets (and rustfmt,
//! clippy) a fresh machine lacks; runs formatting and clippy checks (the root workspace, and
//! the QEMU board crates under `boards/` for their own targets), every host test, and the
//! library builds for the QEMU boards' Cortex-M targets.

use crate::install::{ensure_component, ensure_targets};
use crate::qemu_boards::{self, BOARDS};
use crate::util::{boards_command, boards_dir, run, run_cmd, FIRMWARE};

/// Runs the stage.
pub fn stage() -> Result<(), String> {
    eprintln!("xtask: === host stage ===");
    ensure_targets()?;
    ensure_component("fmt", "rustfmt")?;
    ensure_component("clippy", "clippy")?;
    run("cargo", &["fmt", "--all", "--check"])?;
    run(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    run("cargo", &["test", "--workspace"])?;
    for target in qemu_boards::targets() {
        run(
            "cargo",
            &[
                "build",
                "-p",
                "microformer",
                "--lib",
                "--release",
                "--target",
                target,
            ],
        )?;
    }
    // The boards' workspace: formatting (its own packages only: `--all` would also format
    // the library, a path dependency) and clippy, the shared crate on the host (with its
    // build-script helpers), each board for its own target.
    let boards = boards_dir();
    let mut fmt = boards_command(&boards, "cargo");
    fmt.args(["fmt", "--check", "-p", FIRMWARE]);
    for b in BOARDS {
        fmt.args(["-p", b.dir]);
    }
    run_cmd(&mut fmt)?;
    run_cmd(boards_command(&boards, "cargo").args([
        "clippy",
        "-p",
        FIRMWARE,
        "--all-targets",
        "--features",
        "std",
        "--",
        "-D",
        "warnings",
    ]))?;
    for b in BOARDS {
        run_cmd(boards_command(&boards.join(b.dir), "cargo").args([
            "clippy",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    Ok(())
}
