//! `cargo xtask demo`: a model on an emulated Cortex-M (the M4F unless `--core` says).
//!
//! Installs what a fresh machine lacks (the rustup targets, `qemu-system-arm`, `defmt-print`),
//! converts the checkpoint with the host tool (`microformer convert`), builds the QEMU board's
//! firmware with the image embedded in flash (`MICROFORMER_IMAGE`), and runs it under QEMU
//! with the settings on its semihosting command line (`-append "steps=… temperature=… topp=…
//! seed=… prompt=…"`). The device's text (semihosting stderr) goes to stdout, byte for byte;
//! the tools' and the device's logs (defmt, decoded by `defmt-print`) go to stderr.
//!
//! The settings mean what they mean for llama2.c's `run` and `microformer run` (same
//! defaults): `--steps` positions (0 or more than the context: all), `--temperature` (0:
//! greedy), `--top-p`, `--seed` (0 stands for a fixed seed, never the clock), `--prompt`.
//!
//! [`demo_tests`] (a stage of `cargo xtask test`) runs the demo for every aidreams260K case
//! of `reference-llama2c.json` and compares the printed text with llama2.c's, byte for byte.
//!
//! `--model` also takes a Hugging Face directory (any family `microformer convert` reads).
//! Its image has no tokenizer: the device then prints the token ids, space-separated, as
//! `microformer run --ids` does, and a prompt is given as ids (`--prompt-ids 1,2,3`, the
//! firmware's `prompt_ids=` word). The families stage (`families.rs`) runs the shared
//! fixtures that way.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::firmware::{build_firmware, convert, parse_id_list, Settings};
use crate::install::ensure_tools;
use crate::qemu::run_qemu;
use crate::qemu_boards::{self, QemuBoard, M4F};
use crate::util::{models_dir, secs, work_dir};

/// What `cargo xtask demo` takes.
#[derive(Debug, Clone)]
struct Options {
    model: PathBuf,
    tokenizer: Option<PathBuf>,
    quant: String,
    board: &'static QemuBoard,
    settings: Settings,
}

const USAGE: &str = "usage: cargo xtask demo [--model PATH|HF-DIR] [--tokenizer PATH|none] \
[--prompt TEXT | --prompt-ids 1,2,3] [--steps N] [--temperature T] [--top-p P] [--seed S] \
[--quant f32|q8|f16] [--kv f32|q8] [--core m4f|m33|m3]
  --model takes a llama2.c checkpoint or a Hugging Face directory (config.json + \
model.safetensors); a directory has no tokenizer (unless --tokenizer is given): the device \
then prints token ids, space-separated, as `microformer run --ids`";

fn parse_args(args: &[String]) -> Result<Options, String> {
    let models = models_dir();
    let mut tokenizer: Option<Option<PathBuf>> = None;
    let mut o = Options {
        model: models.join("aidreams260K.bin"),
        tokenizer: None,
        quant: "f32".into(),
        board: M4F,
        settings: Settings::default(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let bad = |what: &str| format!("{flag} {value:?}: {what}\n{USAGE}");
        match flag.as_str() {
            "--model" => o.model = PathBuf::from(value),
            "--tokenizer" if value == "none" => tokenizer = Some(None),
            "--tokenizer" => tokenizer = Some(Some(PathBuf::from(value))),
            "--prompt" | "-i" => o.settings.prompt = value.clone(),
            "--prompt-ids" => {
                o.settings.prompt_ids = parse_id_list(value)
                    .filter(|ids| !ids.is_empty())
                    .ok_or_else(|| bad("not a list of token ids (1,2,3)"))?
            }
            "--steps" | "-n" => o.settings.steps = value.parse().map_err(|_| bad("not a count"))?,
            "--temperature" | "-t" => {
                o.settings.temperature = value.parse().map_err(|_| bad("not a number"))?
            }
            "--top-p" | "-p" => {
                o.settings.top_p = value.parse().map_err(|_| bad("not a number"))?
            }
            "--seed" | "-s" => {
                let s: i128 = value.parse().map_err(|_| bad("not an integer"))?;
                if s < i64::MIN as i128 || s > u64::MAX as i128 {
                    return Err(bad("out of range"));
                }
                o.settings.seed = s;
            }
            "--quant" if ["f32", "q8", "f16"].contains(&value.as_str()) => o.quant = value.clone(),
            "--kv" if value == "f32" => o.settings.kv = "f32",
            "--kv" if value == "q8" => o.settings.kv = "q8",
            "--core" => {
                o.board = qemu_boards::find(value)
                    .filter(|b| b.fits_model)
                    .ok_or_else(|| bad("the demo runs on m4f, m33 or m3"))?
            }
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    // The default tokenizer goes with the default checkpoint (and any llama2.c file); a
    // Hugging Face directory has none unless one is given.
    o.tokenizer = match tokenizer {
        Some(t) => t,
        None if o.model.is_dir() => None,
        None => Some(models.join("aidreams260K.tok512.bin")),
    };
    let s = &o.settings;
    if !s.prompt.is_empty() && !s.prompt_ids.is_empty() {
        return Err(format!("give --prompt or --prompt-ids, not both\n{USAGE}"));
    }
    if !s.prompt.is_empty() && o.tokenizer.is_none() {
        return Err(format!(
            "--prompt needs a tokenizer and {} is converted without one: give the prompt as \
             token ids (--prompt-ids 1,2,3) or a tokenizer (--tokenizer PATH)",
            o.model.display()
        ));
    }
    if !(s.temperature.is_finite() && s.temperature >= 0.0) {
        return Err(format!("--temperature must be >= 0, got {}", s.temperature));
    }
    if !(0.0..=1.0).contains(&s.top_p) {
        return Err(format!("--top-p must be in [0, 1], got {}", s.top_p));
    }
    if s.prompt.contains('\0') {
        return Err("--prompt cannot contain a NUL byte".into());
    }
    Ok(o)
}

/// `cargo xtask demo [options]`.
pub fn demo(args: &[String]) -> Result<(), String> {
    let o = parse_args(args)?;
    let start = Instant::now();
    ensure_tools()?;
    let image = work_dir()?.join(format!("demo-{}.mfi", o.quant));
    convert(&o.model, o.tokenizer.as_deref(), &o.quant, &image)?;
    let elf = build_firmware(o.board, &image, o.settings.kv)?;
    run_qemu(o.board, &elf, &o.settings.cmdline(), true, true)?;
    eprintln!("xtask: demo done ({})", secs(start.elapsed()));
    Ok(())
}

/// A case's `args` (run.c's flags) as settings: `-t`, `-p`, `-s`, `-n`, and `-i` taking
/// the rest of the line; run.c's defaults otherwise.
fn case_settings(args: &str) -> Result<Settings, String> {
    let mut s = Settings::default();
    let mut rest = args.trim();
    while !rest.is_empty() {
        let (flag, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        if flag == "-i" {
            s.prompt = tail.to_owned();
            break;
        }
        let (value, tail) = tail
            .trim_start()
            .split_once(' ')
            .unwrap_or((tail.trim(), ""));
        let bad = || format!("cannot read the case's args {args:?}");
        match flag {
            "-t" => s.temperature = value.parse().map_err(|_| bad())?,
            "-p" => s.top_p = value.parse().map_err(|_| bad())?,
            "-s" => s.seed = value.parse().map_err(|_| bad())?,
            "-n" => s.steps = value.parse().map_err(|_| bad())?,
            _ => return Err(bad()),
        }
        rest = tail.trim_start();
    }
    Ok(s)
}

/// `reference-llama2c.json`: llama2.c's runs of the shared checkpoints.
#[derive(Debug, Deserialize)]
struct Llama2cReference {
    cases: Vec<Llama2cCase>,
}

/// One llama2.c run (the fields the demo stage reads).
#[derive(Debug, Deserialize)]
struct Llama2cCase {
    /// The checkpoint's file name.
    model: String,
    /// run.c's flags (absent for a case without a tokenizer).
    args: Option<String>,
    /// The text it printed (absent for a case without a tokenizer).
    text: Option<String>,
}

/// The on-target demo stage of `cargo xtask test`: every aidreams260K case of
/// `reference-llama2c.json`, run as `cargo xtask demo` runs it (one firmware, one QEMU run
/// per case), must print llama2.c's text byte for byte. Returns its duration.
pub fn demo_tests() -> Result<Duration, String> {
    let start = Instant::now();
    eprintln!("xtask: === demo stage ===");
    ensure_tools()?;
    let models = models_dir();
    let path = models.join("reference-llama2c.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let reference: Llama2cReference =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let cases: Vec<&Llama2cCase> = reference
        .cases
        .iter()
        .filter(|c| c.model == "aidreams260K.bin")
        .collect();
    if cases.len() < 3 {
        return Err(format!(
            "reference-llama2c.json: {} aidreams260K cases, expected 3",
            cases.len()
        ));
    }
    let image = work_dir()?.join("demo-f32.mfi");
    convert(
        &models.join("aidreams260K.bin"),
        Some(&models.join("aidreams260K.tok512.bin")),
        "f32",
        &image,
    )?;
    let elf = build_firmware(M4F, &image, "f32")?;
    let mut failures = Vec::new();
    for c in &cases {
        let args = c.args.as_deref().ok_or("a case without args")?;
        let want = c.text.as_deref().ok_or("a case without text")?;
        let s = case_settings(args)?;
        let run = run_qemu(M4F, &elf, &s.cmdline(), true, false)?;
        if run.text == want.as_bytes() {
            eprintln!(
                "xtask: demo `{args}`: {} bytes, identical to llama2.c's text",
                run.text.len()
            );
        } else {
            let at = run
                .text
                .iter()
                .zip(want.as_bytes())
                .position(|(a, b)| a != b)
                .unwrap_or(run.text.len().min(want.len()));
            eprintln!(
                "xtask: demo `{args}`: differs from llama2.c's text at byte {at}\n  device:   {:?}\n  llama2.c: {:?}",
                String::from_utf8_lossy(&run.text),
                want
            );
            failures.push(args.to_owned());
        }
    }
    eprintln!(
        "demo: {} passed, {} failed",
        cases.len() - failures.len(),
        failures.len()
    );
    if failures.is_empty() {
        eprintln!("xtask: demo stage passed in {}", secs(start.elapsed()));
        Ok(start.elapsed())
    } else {
        Err(format!(
            "demo texts differ from llama2.c's: {}",
            failures.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_args_become_settings() {
        let s = case_settings("-t 0 -n 100 -i I was flying over").unwrap();
        assert_eq!(
            (s.temperature, s.steps, s.prompt.as_str()),
            (0.0, 100, "I was flying over")
        );
        let s = case_settings("-t 1.0 -p 0.9 -s 42 -n 128").unwrap();
        assert_eq!(
            (s.temperature, s.top_p, s.seed, s.steps),
            (1.0, 0.9, 42, 128)
        );
        assert!(case_settings("-x 1").is_err());
        assert_eq!(s.cmdline(), "steps=128 temperature=1 topp=0.9 seed=42");
        let p = Settings {
            prompt: "a b".into(),
            ..Settings::default()
        };
        assert_eq!(
            p.cmdline(),
            "steps=256 temperature=1 topp=0.9 seed=0 prompt=a b"
        );
    }

    #[test]
    fn prompt_ids_reach_the_command_line() {
        let args: Vec<String> = ["--model", "/", "--prompt-ids", "5,6"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let o = parse_args(&args).unwrap();
        assert_eq!((o.tokenizer, o.settings.prompt_ids), (None, vec![5, 6]));
        let both: Vec<String> = ["--prompt", "a", "--prompt-ids", "5"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(parse_args(&both).is_err());
        let text: Vec<String> = ["--model", "/", "--prompt", "a"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(parse_args(&text).unwrap_err().contains("--prompt-ids"));
    }
}
