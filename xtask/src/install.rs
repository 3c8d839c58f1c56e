//! Installs what a fresh machine lacks, skipping what is already there: the QEMU boards'
//! rustup targets, the rustup components (rustfmt, clippy), `qemu-system-arm` (apt-get, as
//! root) and `defmt-print` (`cargo install`).

use std::process::Command;

use crate::qemu_boards;
use crate::util::{run, run_cmd, works};

/// Adds the rustup targets that are not installed yet (skips the others).
pub fn ensure_targets() -> Result<(), String> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("cannot run rustup: {e}"))?;
    let installed = String::from_utf8_lossy(&out.stdout);
    let missing: Vec<&str> = qemu_boards::targets()
        .into_iter()
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
pub fn ensure_component(subcommand: &str, component: &str) -> Result<(), String> {
    if works("cargo", &[subcommand, "--version"]) {
        Ok(())
    } else {
        run("rustup", &["component", "add", component])
    }
}

/// Whether this process runs as root (apt-get needs it).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Installs `qemu-system-arm` with apt-get when it is missing and we are root; fails with
/// what to install otherwise.
pub fn ensure_qemu() -> Result<(), String> {
    if works("qemu-system-arm", &["--version"]) {
        eprintln!("xtask: qemu-system-arm already installed");
        return Ok(());
    }
    if !is_root() || !works("apt-get", &["--version"]) {
        return Err("qemu-system-arm is missing: install it (Debian/Ubuntu: \
                    `sudo apt-get install qemu-system-arm`) and rerun"
            .into());
    }
    run("apt-get", &["update"])?;
    run_cmd(
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "--no-install-recommends",
                "qemu-system-arm",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    if works("qemu-system-arm", &["--version"]) {
        Ok(())
    } else {
        Err("qemu-system-arm still does not run after apt-get install".into())
    }
}

/// Installs `defmt-print` (1.x, the decoder for defmt 1 frames) when it is missing.
pub fn ensure_defmt_print() -> Result<(), String> {
    let version = Command::new("defmt-print")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if version.starts_with("defmt-print 1.") {
        eprintln!("xtask: {} already installed", version.trim());
        return Ok(());
    }
    run(
        "cargo",
        &["install", "defmt-print", "--locked", "--version", "^1"],
    )?;
    if works("defmt-print", &["--version"]) {
        Ok(())
    } else {
        Err("defmt-print is installed but not on PATH (add ~/.cargo/bin to PATH)".into())
    }
}

/// Installs what running a firmware under QEMU needs (the demo, the families stage, the
/// benchmarks): the rustup targets, `qemu-system-arm`, `defmt-print`.
pub fn ensure_tools() -> Result<(), String> {
    ensure_targets()?;
    ensure_qemu()?;
    ensure_defmt_print()
}
