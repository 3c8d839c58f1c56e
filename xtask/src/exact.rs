//! The exact mode on the cores, a step of the on-target stage (`cargo xtask exact` alone):
//! the firmware built with the library's `exact` feature (run.c's literal arithmetic: its
//! divisions and glibc's `expf`) gives the host's exact-mode tokens on every QEMU core, on a
//! seeded top-p run where the default arithmetic leaves them.
//!
//! The run: stories260K (from `../shared/models`; skipped, with a message, where it is not
//! there) in f32, temperature 1, top-p 0.9, seed 9, 40 positions. The host's `microformer
//! run --ids`, built with `--features exact`, is the reference (`convert/tests/llama2c.rs`
//! checks that build against a transcription of run.c bit for bit over 50 seeds). The
//! default build must give other tokens on the same run (the seed sits on a near-tie of the
//! top-p sort), or the check would not tell the two arithmetics apart. Each core's firmware
//! is built with `--features exact` and its printed ids compared.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::firmware::{build_firmware_with_features, convert, parse_printed_ids, Arith, Kv, Quant};
use crate::qemu::run_qemu;
use crate::qemu_boards::{QemuBoard, M0_ON_AN385, M3, M33, M4F};
use crate::util::{describe, models_dir, root, secs, to_stderr, work_dir};

/// The cores the check runs on.
const CORES: [&QemuBoard; 4] = [M4F, M33, M3, M0_ON_AN385];

/// Positions, seed and sampling of the run.
const STEPS: u32 = 40;
const SEED: u32 = 9;
const TEMPERATURE: &str = "1";
const TOP_P: &str = "0.9";

/// `cargo xtask exact`.
pub fn exact() -> Result<(), String> {
    crate::install::ensure_targets()?;
    check().map(|_| ())
}

/// Runs the check; returns its time.
pub fn check() -> Result<Duration, String> {
    let start = Instant::now();
    eprintln!("xtask: --- exact mode on the cores ---");
    let ckpt = models_dir().join("stories260K.bin");
    if !ckpt.is_file() {
        eprintln!(
            "xtask: exact mode on the cores: skipped ({} is not there: it needs ../shared)",
            ckpt.display()
        );
        return Ok(start.elapsed());
    }
    let image = work_dir()?.join("exact-stories260K-f32.mfi");
    convert(&ckpt, None, Quant::F32, &image)?;
    let want = host_ids(&image, true)?;
    let default = host_ids(&image, false)?;
    if want == default {
        return Err(format!(
            "exact mode on the cores: the default and exact host builds give the same {} ids \
             for seed {SEED}: the run does not tell the arithmetics apart",
            want.len()
        ));
    }
    let first = want
        .iter()
        .zip(&default)
        .take_while(|(a, b)| a == b)
        .count();
    eprintln!(
        "xtask: host: exact build {} ids; the default build leaves them at id {first}",
        want.len()
    );
    let mut failures = Vec::new();
    for board in CORES {
        let elf =
            build_firmware_with_features(board, &image, Kv::F32, Arith::Float, None, &["exact"])?;
        let cmdline = format!("steps={STEPS} temperature={TEMPERATURE} topp={TOP_P} seed={SEED}");
        let run = run_qemu(board, &elf, &cmdline, false, false)?;
        let got = parse_printed_ids(&run.text)?;
        if got == want {
            eprintln!(
                "xtask: {}: {} ids, equal to the host's exact build",
                board.core,
                got.len()
            );
        } else {
            let at = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
            eprintln!(
                "xtask: {}: the ids differ from the host's exact build at {at} (of {} and {})",
                board.core,
                got.len(),
                want.len()
            );
            failures.push(board.core);
        }
    }
    if failures.is_empty() {
        eprintln!(
            "xtask: exact mode on the cores: every core gives the host's exact tokens ({})",
            secs(start.elapsed())
        );
        Ok(start.elapsed())
    } else {
        Err(format!(
            "exact mode differs from the host on {}",
            failures.join(", ")
        ))
    }
}

/// The host's ids for the run, from `microformer run --ids` built with or without `exact`.
fn host_ids(image: &Path, exact: bool) -> Result<Vec<u32>, String> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root())
        .args(["run", "--quiet", "--release", "-p", "microformer-cli"]);
    if exact {
        cmd.args(["--features", "exact"]);
    }
    cmd.args(["--", "run"])
        .arg(image)
        .args(["-n", &STEPS.to_string()])
        .args([
            "-t",
            TEMPERATURE,
            "-p",
            TOP_P,
            "-s",
            &SEED.to_string(),
            "--ids",
        ])
        .stderr(to_stderr());
    eprintln!("xtask: $ {}", describe(&cmd));
    let out = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("{} failed", describe(&cmd)));
    }
    parse_printed_ids(&out.stdout)
}
