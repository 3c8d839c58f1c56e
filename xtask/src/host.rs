//! The host stage of `cargo xtask test`: installs the Cortex-M rustup targets (and rustfmt,
//! clippy) a fresh machine lacks; runs formatting and clippy checks (the root workspace, and
//! the QEMU board crates under `boards/` for their own targets), every host test, and the
//! library builds for the QEMU boards' Cortex-M targets.
//!
//! The host tests that need the reference models (`../shared/models`, or
//! `MICROFORMER_REFERENCE_DIR`), which a clone may lack, are skipped without them; each
//! skip is recorded in the file `MICROFORMER_SKIP_LOG` names (`microformer_testkit::
//! reference`), and the stage prints every skipped check by name after the tests.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::install::{ensure_component, ensure_targets};
use crate::qemu_boards::{self, BOARDS};
use crate::util::{boards_command, boards_dir, root, run, run_cmd, work_dir, FIRMWARE};

/// The variable naming the file the tests append a line to for every check they skip
/// (`microformer_testkit::reference::SKIP_LOG_VAR`).
const SKIP_LOG_VAR: &str = "MICROFORMER_SKIP_LOG";

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
    run_recording_skips(
        Command::new("cargo")
            .args(["test", "--workspace"])
            .current_dir(root()),
        "host-tests",
    )?;
    // The agreement gates, ignored in debug builds and run here in release: every own
    // model's Q8 image keeps >= 98 % top-1 agreement with its f32 image on the held-out
    // plays, run by the float step (`own_q8`) and by the integer step (`own_integer`), and
    // the integer step on llama2.c's checkpoints against run.c's token streams
    // (`llama2c_integer`, skipped by name without the reference models).
    run_recording_skips(
        Command::new("cargo")
            .args([
                "test",
                "--release",
                "-p",
                "microformer-cli",
                "--test",
                "own_q8",
                "--test",
                "own_integer",
                "--test",
                "llama2c_integer",
                "--",
                "--include-ignored",
                "--nocapture",
            ])
            .current_dir(root()),
        "agreement",
    )?;
    // The llama2.c parity suite again in exact mode (the library's `exact` feature: run.c's
    // literal arithmetic), in release: the runtime's logits bit for bit against the literal
    // run.c transcription, 50 seeded top-p runs per llama2.c model token for token, and the
    // transcribed glibc `expf` against the C library's over every f32 (glibc hosts). The
    // default mode's run is the workspace test above.
    run_recording_skips(
        Command::new("cargo")
            .args([
                "test",
                "--release",
                "-p",
                "microformer-convert",
                "--features",
                "exact",
                "--test",
                "llama2c",
                "--",
                "--nocapture",
            ])
            .current_dir(root()),
        "exact",
    )?;
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

/// Runs `cmd` (a `cargo test`) with `MICROFORMER_SKIP_LOG` set to a fresh file
/// `target/xtask/skipped-<tag>.log`, then prints every check the tests skipped, one line
/// each, and their count (nothing when none was skipped) — also when the tests failed.
pub fn run_recording_skips(cmd: &mut Command, tag: &str) -> Result<(), String> {
    let log = work_dir()?.join(format!("skipped-{tag}.log"));
    match std::fs::remove_file(&log) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(format!("cannot remove {}: {e}", log.display()))
        }
        _ => {}
    }
    let result = run_cmd(cmd.env(SKIP_LOG_VAR, &log));
    let skipped = read_skips(&log)?;
    for line in &skipped {
        eprintln!("{line}");
    }
    if !skipped.is_empty() {
        eprintln!(
            "xtask: {} check(s) skipped: they need the reference models (../shared/models, or \
             the folder MICROFORMER_REFERENCE_DIR names)",
            skipped.len()
        );
    }
    result
}

/// The skip log's lines as the stage prints them, deduplicated and sorted (none when the
/// file does not exist: nothing was skipped).
fn read_skips(log: &Path) -> Result<Vec<String>, String> {
    let text = match std::fs::read_to_string(log) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", log.display())),
    };
    let lines: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(skip_report)
        .collect();
    Ok(lines.into_iter().collect())
}

/// One line of the skip log (`skipped: <check>: needs <files> (../shared/models or
/// MICROFORMER_REFERENCE_DIR)`, see `microformer_testkit::reference::skip_line`) as the
/// stage prints it: `xtask: skipped (no ../shared/models): <check> — needs <files>`. A line
/// of another form is printed as it is, after `xtask: skipped: `.
fn skip_report(line: &str) -> String {
    let parsed = line
        .trim_end()
        .strip_prefix("skipped: ")
        .and_then(|rest| rest.rsplit_once(": needs "))
        .map(|(check, needs)| {
            let needs = needs
                .strip_suffix("(../shared/models or MICROFORMER_REFERENCE_DIR)")
                .unwrap_or(needs)
                .trim_end();
            (check, needs)
        });
    match parsed {
        Some((check, needs)) => {
            format!("xtask: skipped (no ../shared/models): {check} \u{2014} needs {needs}")
        }
        None => format!("xtask: skipped: {}", line.trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_lines_are_named_once_each() {
        assert_eq!(
            skip_report(
                "skipped: convert/tests/llama2c.rs::q8_images_agree_with_f32: needs \
                 reference-llama2c.json, aidreams260K.bin (../shared/models or \
                 MICROFORMER_REFERENCE_DIR)"
            ),
            "xtask: skipped (no ../shared/models): convert/tests/llama2c.rs::\
             q8_images_agree_with_f32 \u{2014} needs reference-llama2c.json, aidreams260K.bin"
        );
        assert_eq!(skip_report("odd line\n"), "xtask: skipped: odd line");
        let log = work_dir().unwrap().join("skipped-xtask-unit-test.log");
        std::fs::write(
            &log,
            "skipped: b.rs::t: needs x.bin (../shared/models or MICROFORMER_REFERENCE_DIR)\n\
             skipped: a.rs::t: needs x.bin (../shared/models or MICROFORMER_REFERENCE_DIR)\n\
             skipped: b.rs::t: needs x.bin (../shared/models or MICROFORMER_REFERENCE_DIR)\n",
        )
        .unwrap();
        let got = read_skips(&log).unwrap();
        std::fs::remove_file(&log).unwrap();
        assert_eq!(
            got,
            [
                "xtask: skipped (no ../shared/models): a.rs::t \u{2014} needs x.bin",
                "xtask: skipped (no ../shared/models): b.rs::t \u{2014} needs x.bin",
            ]
        );
        assert!(read_skips(&log).unwrap().is_empty());
    }
}
