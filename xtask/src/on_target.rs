//! `cargo xtask qemu-tests`, the on-target stage of `cargo xtask test`. Installs what a fresh
//! machine lacks (the rustup targets; `qemu-system-arm` through apt-get when running as root;
//! `defmt-print` through `cargo install`), runs the host half of the host/target comparison
//! (`boards/firmware`'s host test), then, for each QEMU board (Cortex-M0, M3, M4F, M33), its
//! on-target test suites (`cargo test` in the board crate: every suite binary boots under
//! QEMU through `boards/qemu-run.sh`) and its firmware's self-check (`cargo run`); last, the
//! soft-float check of the integer step (`softfloat.rs`: no QEMU run, the M3 and M0 firmware
//! ELFs' call graphs), the panic-site count of the M4F firmware (`panics.rs`) and the exact
//! mode on every core (`exact.rs`). A failing test, a fault, a QEMU run past `QEMU_TIMEOUT`
//! seconds (default 60), a soft-float call, a panic-site count above the committed one or
//! an exact-mode token that differs from the host's fails the stage. One summary line per core.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::install::{ensure_defmt_print, ensure_qemu, ensure_targets};
use crate::qemu_boards::{QemuBoard, BOARDS};
use crate::util::{boards_command, boards_dir, describe, run_cmd, secs, FIRMWARE};

/// Runs the stage; returns its duration.
pub fn stage() -> Result<Duration, String> {
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
    if let Err(e) = crate::softfloat::check() {
        eprintln!("xtask: {e}");
        failures.push("the soft-float check (cargo xtask softfloat)");
    }
    if let Err(e) = crate::panics::check() {
        eprintln!("xtask: {e}");
        failures.push("the panic-site count (cargo xtask panics)");
    }
    if let Err(e) = crate::exact::check() {
        eprintln!("xtask: {e}");
        failures.push("the exact mode on the cores (cargo xtask exact)");
    }
    if failures.is_empty() {
        eprintln!("xtask: on-target stage passed in {}", secs(start.elapsed()));
        Ok(start.elapsed())
    } else {
        failures.dedup();
        Err(format!("on-target tests failed on {}", failures.join(", ")))
    }
}

/// What one board's run gave.
#[derive(Debug, Default)]
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
    /// Whether every suite and the self-check passed (and some test ran).
    fn ok(&self) -> bool {
        self.tests_ok && self.selfcheck_ok && self.failed == 0 && self.passed > 0
    }

    /// The board's line of the stage's summary.
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
#[derive(Debug, Default)]
struct Progress {
    current: Option<(usize, usize, bool)>,
    run: BoardRun,
}

impl Progress {
    /// Takes one output line.
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

/// Runs a command, echoing its output to stderr as it comes, and returns its success; every
/// output line (stdout and stderr, each in order) goes to `lines` too.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_suites() {
        assert_eq!(
            parse_running("INFO (2/5) running `rope_matches`..."),
            Some((2, 5))
        );
        assert_eq!(parse_running("INFO (2/5) done"), None);
        let mut p = Progress::default();
        for l in [
            "(1/2) running `a`...",
            "(2/2) running `b`...",
            "all tests passed!",
            // A second suite whose binary stops in its second test of three.
            "(1/3) running `c`...",
            "(2/3) running `d`...",
            "panicked",
        ] {
            p.line(l);
        }
        p.close();
        let r = p.run;
        assert_eq!((r.suites, r.passed, r.failed, r.not_run), (2, 3, 1, 1));
    }
}
