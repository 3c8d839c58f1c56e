//! `cargo xtask boards`: the real boards' stage (also the last stage of `cargo xtask test`).
//!
//! No board is attached here: the stage checks everything short of flashing.
//!
//! 1. Formatting and clippy of the real boards' crates: the shared `boards/firmware` on the
//!    host (with its build-script helpers) and for `thumbv7em-none-eabihf` with feature
//!    `device` (the real boards' program), each board crate for its own target.
//! 2. The host test `boards/firmware/tests/run.rs`: the run the boards' firmware makes,
//!    checked against llama2.c's output, and each board's arena figures.
//! 3. A release build of each board (STM32F429I-DISC1 and nRF52840-DK for
//!    `thumbv7em-none-eabihf`, Raspberry Pi Pico for `thumbv6m-none-eabi`) with the model
//!    they are sized for embedded: `aidreams260K` from `../shared/models/`, converted to
//!    Q8_0 at each board's context by the build script. A board whose arena would not hold
//!    the model at its context fails the stage (the firmware would stop with that error).
//! 4. The sizes, `cargo size` style, read from each ELF's section headers (`elf.rs`): flash
//!    (`text`: code, read-only data and the model image; `data`), RAM (`data`, `bss`: the
//!    arena and the rest of the statics), the room left for the stack. Printed, and written
//!    to `target/boards/sizes.md`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::elf;
use crate::install::ensure_targets;
use crate::util::{boards_command, boards_dir, describe, root, run_cmd, secs, FIRMWARE};

/// A real board crate under `boards/`.
struct RealBoard {
    /// Directory under `boards/` (and package and binary name).
    dir: &'static str,
    /// The board, for the table.
    name: &'static str,
    /// Its rustup target (set in the crate's `.cargo/config.toml`).
    target: &'static str,
    /// The chip probe-rs flashes (the crate's runner).
    chip: &'static str,
    /// Bytes of the flash region and of the RAM region holding `.data` and `.bss`
    /// (`memory.x`).
    flash: u64,
    ram: u64,
    /// Bytes of a RAM region of its own for the stack (0: the stack shares `ram`).
    stack_region: u64,
}

const KIB: u64 = 1024;

const REAL_BOARDS: &[RealBoard] = &[
    RealBoard {
        dir: "stm32f429i-disco",
        name: "STM32F429I-DISC1 (Cortex-M4F, 168 MHz)",
        target: "thumbv7em-none-eabihf",
        chip: "STM32F429ZITx",
        flash: 2048 * KIB,
        ram: 192 * KIB,
        stack_region: 64 * KIB,
    },
    RealBoard {
        dir: "nrf52840-dk",
        name: "nRF52840-DK (Cortex-M4F, 64 MHz)",
        target: "thumbv7em-none-eabihf",
        chip: "nRF52840_xxAA",
        flash: 1024 * KIB,
        ram: 256 * KIB,
        stack_region: 0,
    },
    RealBoard {
        dir: "rp-pico",
        name: "Raspberry Pi Pico (RP2040, Cortex-M0+, 125 MHz)",
        target: "thumbv6m-none-eabi",
        chip: "RP2040",
        flash: 2048 * KIB - 256,
        ram: 264 * KIB,
        stack_region: 0,
    },
];

/// The model the boards embed by default (their build scripts' `DEFAULT_MODEL`): the
/// project's own, shipped in the repository.
const MODEL: &str = "models/rope";

/// Build-time variables of the boards' build scripts: cleared so that the figures do not
/// depend on the caller's environment.
const BUILD_VARS: &[&str] = &[
    "MICROFORMER_IMAGE",
    "MICROFORMER_CHECKPOINT",
    "MICROFORMER_TOKENIZER",
    "MICROFORMER_QUANT",
    "MICROFORMER_CONTEXT",
    "MICROFORMER_STEPS",
    "MICROFORMER_SEED",
    "MICROFORMER_TEMPERATURE",
    "MICROFORMER_TOPP",
    "MICROFORMER_PROMPT",
    "MICROFORMER_KV",
    "MICROFORMER_TEXT",
];

/// Runs the stage; returns its duration.
pub fn stage() -> Result<Duration, String> {
    let start = Instant::now();
    eprintln!("xtask: === real boards stage (builds only: no board attached) ===");
    ensure_targets()?;
    let boards = boards_dir();
    let mut fmt = boards_command(&boards, "cargo");
    fmt.args(["fmt", "--check", "-p", FIRMWARE]);
    for b in REAL_BOARDS {
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
    run_cmd(boards_command(&boards, "cargo").args([
        "clippy",
        "-p",
        FIRMWARE,
        "--lib",
        "--features",
        "device",
        "--target",
        "thumbv7em-none-eabihf",
        "--",
        "-D",
        "warnings",
    ]))?;
    for b in REAL_BOARDS {
        let mut clippy = boards_command(&boards.join(b.dir), "cargo");
        without_vars(&mut clippy).args(["clippy", "--all-targets", "--", "-D", "warnings"]);
        run_cmd(&mut clippy)?;
    }
    crate::host::run_recording_skips(
        boards_command(&boards, "cargo").args([
            "test",
            "-p",
            FIRMWARE,
            "--features",
            "std",
            "--test",
            "run",
        ]),
        "boards-run",
    )?;

    let mut rows = Vec::new();
    for b in REAL_BOARDS {
        let built = build(b)?;
        rows.push((b, built));
    }
    let table = table(&rows);
    eprintln!("xtask: real boards, release builds with {MODEL} (Q8_0) embedded:");
    for line in table.lines() {
        eprintln!("xtask:   {line}");
    }
    let out = root().join("target").join("boards").join("sizes.md");
    std::fs::write(&out, &table).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    eprintln!("xtask: wrote {}", out.display());
    let overflow: Vec<&str> = rows
        .iter()
        .filter(|(_, r)| r.arena_needed > r.arena_reserved)
        .map(|(b, _)| b.dir)
        .collect();
    if !overflow.is_empty() {
        return Err(format!(
            "the model does not fit the arena of {}",
            overflow.join(", ")
        ));
    }
    eprintln!(
        "xtask: real boards stage passed in {} ({} boards built)",
        secs(start.elapsed()),
        rows.len()
    );
    Ok(start.elapsed())
}

/// `cmd` without build-time variables: the boards embed their default model ([`MODEL`]).
fn without_vars(cmd: &mut Command) -> &mut Command {
    for v in BUILD_VARS {
        cmd.env_remove(v);
    }
    cmd
}

/// What one board's release build gave.
struct Built {
    sizes: Sizes,
    /// The build script's figures (`summary.txt`).
    image_bytes: u64,
    context: u64,
    arena_needed: u64,
    arena_reserved: u64,
}

/// Builds a board in release and reads its figures.
fn build(b: &RealBoard) -> Result<Built, String> {
    eprintln!(
        "xtask: --- {}: {} for {} (with a probe: `cargo run --release`, probe-rs chip {}) ---",
        b.dir, b.name, b.target, b.chip
    );
    let dir = boards_dir().join(b.dir);
    let mut cmd = boards_command(&dir, "cargo");
    without_vars(&mut cmd).args([
        "build",
        "--release",
        "--message-format=json-render-diagnostics",
    ]);
    eprintln!("xtask: $ (cd {}) {}", dir.display(), describe(&cmd));
    let start = Instant::now();
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start cargo: {e}"))?;
    eprintln!("xtask:   ({})", secs(start.elapsed()));
    if !out.status.success() {
        return Err(format!(
            "{}: the release build failed ({})",
            b.dir, out.status
        ));
    }
    let messages = String::from_utf8_lossy(&out.stdout);
    let (elf, out_dir) = artifacts(&messages, b.dir)?;
    let summary = Path::new(&out_dir).join("summary.txt");
    let summary = std::fs::read_to_string(&summary)
        .map_err(|e| format!("cannot read {}: {e}", summary.display()))?;
    let field = |key: &str| -> Result<u64, String> {
        summary
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("{}: no `{key}` in the build summary", b.dir))
    };
    let bytes = std::fs::read(&elf).map_err(|e| format!("cannot read {elf}: {e}"))?;
    Ok(Built {
        sizes: Sizes::of_elf(&bytes).map_err(|e| format!("{elf}: {e}"))?,
        image_bytes: field("image_bytes")?,
        context: field("model_context")?,
        arena_needed: field("arena_needed")?,
        arena_reserved: field("arena_reserved")?,
    })
}

/// One of cargo's JSON messages (`--message-format=json`): the fields the stage reads.
#[derive(Debug, Deserialize)]
struct Message {
    /// `compiler-artifact`, `build-script-executed`, …
    reason: String,
    /// A compiled binary's path (`compiler-artifact`).
    executable: Option<String>,
    /// A build script's `OUT_DIR` (`build-script-executed`).
    out_dir: Option<String>,
}

/// From cargo's messages of a board's build: its binary (named after its crate directory
/// `dir`) and its build script's `OUT_DIR`.
fn artifacts(messages: &str, dir: &str) -> Result<(String, String), String> {
    let messages: Vec<Message> = messages
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let elf = messages
        .iter()
        .filter(|m| m.reason == "compiler-artifact")
        .filter_map(|m| m.executable.as_deref())
        .find(|p| Path::new(p).file_name().is_some_and(|n| n == dir))
        .ok_or_else(|| format!("{dir}: cargo reported no executable"))?;
    let build_dir = format!("/build/{dir}-");
    let out_dir = messages
        .iter()
        .filter(|m| m.reason == "build-script-executed")
        .filter_map(|m| m.out_dir.as_deref())
        .find(|d| d.contains(&build_dir))
        .ok_or_else(|| format!("{dir}: cargo reported no build-script output"))?;
    Ok((elf.to_owned(), out_dir.to_owned()))
}

/// Berkeley `size` figures of an ELF: `text` (allocated, read-only: code, read-only data,
/// vector table, boot loader), `data` (allocated, writable, with contents: copied from
/// flash to RAM at start), `bss` (allocated, no contents: zeroed RAM).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Sizes {
    text: u64,
    data: u64,
    bss: u64,
}

impl Sizes {
    /// Sums the allocated sections of an ELF. Fails on a file that is not a 32-bit
    /// little-endian ELF.
    fn of_elf(data: &[u8]) -> Result<Sizes, String> {
        let mut s = Sizes::default();
        for sec in elf::allocated_sections(data)? {
            if sec.nobits {
                s.bss += sec.size;
            } else if sec.writable {
                s.data += sec.size;
            } else {
                s.text += sec.size;
            }
        }
        Ok(s)
    }
}

/// `n` bytes with thin-space thousands separators, e.g. `431 820`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// `n` bytes in KiB: `12.5 KiB`.
fn kib(n: u64) -> String {
    format!("{:.1} KiB", n as f64 / 1024.0)
}

/// The sizes table, Markdown.
fn table(rows: &[(&RealBoard, Built)]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| board | crate | target | text | data | bss | flash used | model image | RAM used | \
         arena needed / reserved (context) | stack room |"
    );
    let _ = writeln!(t, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (b, r) in rows {
        let s = r.sizes;
        let flash = s.text + s.data;
        let ram = s.data + s.bss;
        let stack = if b.stack_region > 0 {
            format!("{} (CCM RAM)", kib(b.stack_region))
        } else {
            kib(b.ram.saturating_sub(ram))
        };
        let _ = writeln!(
            t,
            "| {} | `{}` | `{}` | {} | {} | {} | {} of {} | {} | {} of {} | {} / {} ({}) | {} |",
            b.name,
            b.dir,
            b.target,
            group(s.text),
            group(s.data),
            group(s.bss),
            kib(flash),
            kib(b.flash),
            group(r.image_bytes),
            kib(ram),
            kib(b.ram),
            group(r.arena_needed),
            group(r.arena_reserved),
            r.context,
            stack
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_messages() {
        let messages = [
            r#"{"reason":"build-script-executed","package_id":"x","out_dir":"/t/build/rp-pico-0a/out"}"#,
            r#"{"reason":"build-script-executed","out_dir":"/t/build/rp-pico-support-2c/out"}"#,
            r#"{"reason":"compiler-artifact","executable":null,"fresh":true}"#,
            r#"{"reason":"compiler-artifact","executable":"/t/rp-pico","fresh":true}"#,
            "warning: not a JSON line",
            r#"{"reason":"build-finished","success":true}"#,
        ]
        .join("\n");
        assert_eq!(
            artifacts(&messages, "rp-pico"),
            Ok((
                "/t/rp-pico".to_owned(),
                "/t/build/rp-pico-0a/out".to_owned()
            ))
        );
        assert!(artifacts(&messages, "nrf52840-dk").is_err());
        let no_binary = messages.lines().next().unwrap_or_default();
        assert!(artifacts(no_binary, "rp-pico").is_err());
    }

    #[test]
    fn thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1 000");
        assert_eq!(group(431_820), "431 820");
        assert_eq!(group(1_234_567), "1 234 567");
    }

    #[test]
    fn berkeley_sizes() {
        // .vector_table, .text (AX), .rodata (A), .data (WA), .bss and .uninit (WA,
        // NOBITS), .defmt and .debug_info (not allocated).
        let e = elf::test_elf(&[
            (".vector_table", 1, 2, 0, 428),
            (".text", 1, 6, 0x1ac, 39_716),
            (".rodata", 1, 2, 0x9d50, 391_676),
            (".data", 1, 3, 0x2000_0000, 56),
            (".bss", 8, 3, 0x2000_0038, 188_456),
            (".uninit", 8, 3, 0x2002_e000, 1024),
            (".defmt", 1, 0, 0, 26),
            (".debug_info", 1, 0, 0, 99_999),
        ]);
        assert_eq!(
            Sizes::of_elf(&e),
            Ok(Sizes {
                text: 431_820,
                data: 56,
                bss: 189_480
            })
        );
        assert!(Sizes::of_elf(b"\x7fELF\x02\x01").is_err());
        assert!(Sizes::of_elf(&e[..60]).is_err());
    }
}
