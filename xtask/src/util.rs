//! What every task shares: the repository's paths, commands run with an echo on stderr, and
//! durations as the logs print them. Depends on no other module of the crate.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The shared crate of the boards' workspace (host-tested).
pub const FIRMWARE: &str = "microformer-firmware";

/// The repository root (the xtask crate sits in `<root>/xtask`).
pub fn root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

/// The reference data beside the repository (`<root>/../shared`).
pub fn shared_dir() -> PathBuf {
    root().join("..").join("shared")
}

/// The llama2.c checkpoints and their reference outputs: `MICROFORMER_REFERENCE_DIR` (the
/// tests' variable, see `microformer_testkit::reference`) or its older alias
/// `MICROFORMER_MODELS` when set (the former wins), else `../shared/models`.
pub fn models_dir() -> PathBuf {
    ["MICROFORMER_REFERENCE_DIR", "MICROFORMER_MODELS"]
        .iter()
        .filter_map(std::env::var_os)
        .find(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| shared_dir().join("models"))
}

/// The boards' workspace.
pub fn boards_dir() -> PathBuf {
    root().join("boards")
}

/// Where the demo and the benchmarks keep their images (created when missing).
pub fn work_dir() -> Result<PathBuf, String> {
    let d = root().join("target").join("xtask");
    std::fs::create_dir_all(&d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    Ok(d)
}

/// A command for a board crate or the boards' workspace: run in `dir`, with the boards' shared
/// target directory, and without variables that would override the boards' own configuration
/// (`RUSTFLAGS` replaces the link arguments of `.cargo/config.toml`; `CARGO_BUILD_TARGET` the
/// board's target).
pub fn boards_command(dir: &Path, program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir)
        .env("CARGO_TARGET_DIR", root().join("target").join("boards"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    cmd
}

/// A command as a shell line: the program and its arguments, space-separated.
pub fn describe(cmd: &Command) -> String {
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    format!("{} {}", cmd.get_program().to_string_lossy(), args.join(" "))
}

/// Runs a command, echoing it (and its directory, when not the root) on stderr; fails on a
/// non-zero exit.
pub fn run_cmd(cmd: &mut Command) -> Result<(), String> {
    let line = describe(cmd);
    match cmd.get_current_dir() {
        Some(d) if d != root() => eprintln!("xtask: $ (cd {}) {line}", d.display()),
        _ => eprintln!("xtask: $ {line}"),
    }
    let start = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start `{line}`: {e}"))?;
    if start.elapsed() >= Duration::from_secs(1) {
        eprintln!("xtask:   ({})", secs(start.elapsed()));
    }
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{line}` failed ({status})"))
    }
}

/// Runs a program with arguments at the repository root (see [`run_cmd`]).
pub fn run(program: &str, args: &[&str]) -> Result<(), String> {
    run_cmd(Command::new(program).args(args).current_dir(root()))
}

/// Whether `program args` runs and exits successfully (its output is discarded).
pub fn works(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Stdout of a child process sent to our stderr (tool logs never reach stdout).
pub fn to_stderr() -> Stdio {
    Stdio::from(std::io::stderr())
}

/// A duration as the logs print it: `12.3 s`.
pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_durations_as_printed() {
        let mut cmd = Command::new("cargo");
        cmd.args(["build", "--release"]);
        assert_eq!(describe(&cmd), "cargo build --release");
        assert_eq!(secs(Duration::from_millis(12_345)), "12.3 s");
        assert!(root().join("xtask").join("Cargo.toml").is_file());
    }
}
