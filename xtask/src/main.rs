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
mod install;
mod qemu_boards;
mod util;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::install::{ensure_component, ensure_defmt_print, ensure_qemu, ensure_targets};
use crate::qemu_boards::{QemuBoard, BOARDS};
use crate::util::{boards_command, boards_dir, describe, run, run_cmd, secs, FIRMWARE};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("qemu-tests") => qemu_tests().map(|_| ()),
        Some("demo") => demo::demo(&args[1..]),
        Some("demo-tests") => demo::demo_tests().map(|_| ()),
        Some("families") => demo::families_tests().map(|_| ()),
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

fn test() -> Result<(), String> {
    let start = Instant::now();
    host_stage()?;
    let host = start.elapsed();
    let on_target = qemu_tests()?;
    let demo = demo::demo_tests()?;
    let families = demo::families_tests()?;
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

fn host_stage() -> Result<(), String> {
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

/// The on-target stage; returns its duration.
fn qemu_tests() -> Result<Duration, String> {
    let start = Instant::now();
    eprintln!("xtask: === on-target stage ===");
    ensure_targets()?;
    ensure_qemu()?;
    ensure_defmt_print()?;
    eprintln!("xtask: tools ready ({})", secs(start.elapsed()));
    let boards = boards_dir();
    // The host half of the comparison: every case passes its own checks on the host and is
    // run by an on-target suite (the boards' build scripts compute the expected values).
    let host = Instant::now();
    run_cmd(boards_command(&boards, "cargo").args(["test", "-p", FIRMWARE]))?;
    eprintln!(
        "xtask: host run of the on-target cases passed ({})",
        secs(host.elapsed())
    );
    let mut results = Vec::new();
    for b in BOARDS {
        results.push((b, run_board(b)));
    }
    eprintln!("xtask: on-target results:");
    let (mut passed, mut failed) = (0, 0);
    let mut failures = Vec::new();
    for (b, r) in &results {
        eprintln!("xtask:   {}", r.summary(b));
        passed += r.passed;
        failed += r.failed;
        if !r.ok() {
            failures.push(b.dir);
        }
    }
    let expected = results
        .first()
        .map(|(_, r)| r.passed + r.failed + r.not_run);
    if let Some((b, _)) = results
        .iter()
        .find(|(_, r)| Some(r.passed + r.failed + r.not_run) != expected)
    {
        failures.push(b.dir);
        eprintln!("xtask: {} did not run the same tests as the others", b.dir);
    }
    eprintln!("qemu: {passed} passed, {failed} failed");
    if failures.is_empty() {
        eprintln!("xtask: on-target stage passed in {}", secs(start.elapsed()));
        Ok(start.elapsed())
    } else {
        failures.dedup();
        Err(format!("on-target tests failed on {}", failures.join(", ")))
    }
}

/// What one board's run gave.
#[derive(Default)]
struct BoardRun {
    suites: usize,
    passed: usize,
    failed: usize,
    not_run: usize,
    tests_ok: bool,
    selfcheck_ok: bool,
    error: Option<String>,
    time: Duration,
}

impl BoardRun {
    fn ok(&self) -> bool {
        self.tests_ok && self.selfcheck_ok && self.failed == 0 && self.passed > 0
    }

    fn summary(&self, b: &QemuBoard) -> String {
        let mut s = format!(
            "{:<10} {:<26} {:<9} {:<11} {} suites, {} passed, {} failed",
            b.name, b.target, b.dir, b.machine, self.suites, self.passed, self.failed
        );
        if self.not_run > 0 {
            s += &format!(", {} not run", self.not_run);
        }
        s += if self.selfcheck_ok {
            ", self-check ok"
        } else {
            ", self-check FAILED"
        };
        s += &format!(" ({})", secs(self.time));
        if let Some(e) = &self.error {
            s += &format!(": {e}");
        }
        s
    }
}

/// Counts defmt-test's progress lines as the suites run: `(i/n) running `name`...` then
/// `all tests passed!`; a suite whose binary stops (failed test, fault, timeout) after test `i`
/// has `i − 1` passed, 1 failed, `n − i` not run.
#[derive(Default)]
struct Progress {
    current: Option<(usize, usize, bool)>,
    run: BoardRun,
}

impl Progress {
    fn line(&mut self, line: &str) {
        if let Some((i, n)) = parse_running(line) {
            if i == 1 {
                self.close();
                self.run.suites += 1;
            }
            self.current = Some((i, n, false));
        } else if line.contains("all tests passed!") {
            if let Some((_, n, done)) = &mut self.current {
                if !*done {
                    self.run.passed += *n;
                    *done = true;
                }
            }
        }
    }

    /// Settles the suite in progress.
    fn close(&mut self) {
        if let Some((i, n, done)) = self.current.take() {
            if !done {
                self.run.passed += i - 1;
                self.run.failed += 1;
                self.run.not_run += n - i;
            }
        }
    }
}

/// `(i, n)` of a defmt-test line `(i/n) running `name`...`.
fn parse_running(line: &str) -> Option<(usize, usize)> {
    let rest = &line[line.find('(')? + 1..];
    let (i, rest) = rest.split_once('/')?;
    let (n, rest) = rest.split_once(')')?;
    if !rest.trim_start().starts_with("running") {
        return None;
    }
    Some((i.trim().parse().ok()?, n.trim().parse().ok()?))
}

/// Runs a command, echoing its output to stderr as it comes, and returns its success and
/// every output line (stdout and stderr, each in order).
fn run_streaming(cmd: &mut Command, lines: &mut dyn FnMut(&str)) -> Result<bool, String> {
    let line = describe(cmd);
    if let Some(d) = cmd.get_current_dir() {
        eprintln!("xtask: $ (cd {}) {line}", d.display());
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start `{line}`: {e}"))?;
    let (tx, rx) = mpsc::channel::<String>();
    let pumps: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| {
        let tx = tx.clone();
        thread::spawn(move || {
            for l in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        })
    })
    .collect();
    drop(tx);
    for l in rx {
        eprintln!("{l}");
        lines(&l);
    }
    for p in pumps {
        let _ = p.join();
    }
    let status = child
        .wait()
        .map_err(|e| format!("`{line}` did not finish: {e}"))?;
    Ok(status.success())
}

/// A board's on-target suites (`cargo test`, every suite even after a failure) and its
/// firmware's self-check (`cargo run`).
fn run_board(b: &QemuBoard) -> BoardRun {
    let start = Instant::now();
    let dir = boards_dir().join(b.dir);
    eprintln!("xtask: --- {} ({}, {}) ---", b.dir, b.name, b.target);
    let mut progress = Progress::default();
    let tests = run_streaming(
        boards_command(&dir, "cargo").args(["test", "--no-fail-fast"]),
        &mut |l| progress.line(l),
    );
    progress.close();
    let mut r = progress.run;
    match tests {
        Ok(ok) => r.tests_ok = ok,
        Err(e) => r.error = Some(e),
    }
    let mut identical = false;
    let run = run_streaming(boards_command(&dir, "cargo").arg("run"), &mut |l| {
        identical |= l.contains("bit-identical to the host")
    });
    match run {
        Ok(ok) => r.selfcheck_ok = ok && identical,
        Err(e) => r.error = Some(e),
    }
    r.time = start.elapsed();
    r
}
