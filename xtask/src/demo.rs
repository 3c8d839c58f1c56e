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

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::Args;
use serde::Deserialize;

use crate::firmware::{build_example, build_firmware, convert, parse_id_list, Kv, Quant, Settings};
use crate::install::ensure_tools;
use crate::qemu::run_qemu;
use crate::qemu_boards::{self, QemuBoard, BOARDS, M4F};
use crate::util::{models_dir, secs, work_dir};

/// The checkpoint the demo runs by default, and its tokenizer (in `../shared/models`).
const CHECKPOINT: &str = "aidreams260K.bin";
const TOKENIZER: &str = "aidreams260K.tok512.bin";

/// llama2.c's arguments for the text the ten-line firmware example prints.
const TEN_LINES_ARGS: &str = "-t 0 -n 100 -i I was flying over";

/// What `cargo xtask demo` takes (defaults: `microformer run`'s, and llama2.c's).
#[derive(Debug, Clone, Args)]
#[command(args_override_self = true)]
pub struct DemoArgs {
    /// A llama2.c checkpoint, or a Hugging Face directory (config.json + model.safetensors):
    /// a directory has no tokenizer (unless --tokenizer is given), the device then prints
    /// token ids, space-separated, as `microformer run --ids` [default: aidreams260K.bin in
    /// ../shared/models, or in $MICROFORMER_MODELS]
    #[arg(long, value_name = "PATH|HF-DIR")]
    model: Option<PathBuf>,
    /// The tokenizer embedded with the model, or `none` [default: aidreams260K.tok512.bin
    /// beside the default checkpoint for a llama2.c file, none for a directory]
    #[arg(long, value_name = "PATH|none", value_parser = parse_tokenizer)]
    tokenizer: Option<Tokenizer>,
    /// The prompt, as text (needs a tokenizer)
    #[arg(
        long,
        short = 'i',
        value_name = "TEXT",
        allow_hyphen_values = true,
        value_parser = parse_prompt
    )]
    prompt: Option<String>,
    /// The prompt as token ids, used as given
    #[arg(long, value_name = "1,2,3", value_parser = parse_prompt_ids, conflicts_with = "prompt")]
    prompt_ids: Option<TokenIds>,
    /// Positions to run (0 or more than the context: all)
    #[arg(long, short = 'n', value_name = "N", default_value_t = Settings::default().steps)]
    steps: u32,
    /// Sampling temperature (0: greedy)
    #[arg(
        long,
        short = 't',
        value_name = "T",
        allow_negative_numbers = true,
        value_parser = parse_temperature,
        default_value_t = Settings::default().temperature
    )]
    temperature: f32,
    /// Nucleus sampling threshold, in [0, 1]
    #[arg(
        long,
        short = 'p',
        value_name = "P",
        allow_negative_numbers = true,
        value_parser = parse_top_p,
        default_value_t = Settings::default().top_p
    )]
    top_p: f32,
    /// The sampler's seed (0 stands for a fixed seed, never the clock)
    #[arg(
        long,
        short = 's',
        value_name = "S",
        allow_negative_numbers = true,
        value_parser = parse_seed,
        default_value_t = Settings::default().seed
    )]
    seed: i128,
    /// Weight storage of the converted image
    #[arg(long, value_enum, default_value_t = Quant::F32)]
    quant: Quant,
    /// KV cache format (the firmware's arena is sized for it)
    #[arg(long, value_enum, default_value_t = Kv::F32)]
    kv: Kv,
    /// The emulated core (`cortex-m4f` and the like are taken too)
    #[arg(long, value_parser = core_parser(), default_value = M4F.short)]
    core: &'static QemuBoard,
}

/// `--tokenizer`: a file, or `none`.
#[derive(Debug, Clone, PartialEq)]
enum Tokenizer {
    /// `none`: the image has no tokenizer.
    None,
    /// A llama2.c tokenizer file.
    Path(PathBuf),
}

/// `--prompt-ids`: a non-empty list of token ids.
#[derive(Debug, Clone, PartialEq)]
struct TokenIds(Vec<u32>);

fn parse_tokenizer(s: &str) -> Result<Tokenizer, String> {
    Ok(match s {
        "none" => Tokenizer::None,
        path => Tokenizer::Path(PathBuf::from(path)),
    })
}

fn parse_prompt(s: &str) -> Result<String, String> {
    if s.contains('\0') {
        Err("the prompt cannot contain a NUL byte".into())
    } else {
        Ok(s.to_owned())
    }
}

fn parse_prompt_ids(s: &str) -> Result<TokenIds, String> {
    parse_id_list(s)
        .filter(|ids| !ids.is_empty())
        .map(TokenIds)
        .ok_or_else(|| "not a list of token ids (1,2,3)".into())
}

fn parse_temperature(s: &str) -> Result<f32, String> {
    let t: f32 = s.parse().map_err(|_| "not a number".to_owned())?;
    if t.is_finite() && t >= 0.0 {
        Ok(t)
    } else {
        Err("the temperature must be >= 0".into())
    }
}

fn parse_top_p(s: &str) -> Result<f32, String> {
    let p: f32 = s.parse().map_err(|_| "not a number".to_owned())?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err("top-p must be in [0, 1]".into())
    }
}

/// A seed as `microformer run` takes it: any i64 or u64.
fn parse_seed(s: &str) -> Result<i128, String> {
    let seed: i128 = s.parse().map_err(|_| "not an integer".to_owned())?;
    if seed < i128::from(i64::MIN) || seed > i128::from(u64::MAX) {
        return Err("out of range (an i64 or a u64)".into());
    }
    Ok(seed)
}

/// `--core`: the short name or the core of a board of [`BOARDS`] with room for a model.
fn core_parser() -> impl TypedValueParser<Value = &'static QemuBoard> {
    let names = BOARDS
        .iter()
        .filter(|b| b.fits_model)
        .map(|b| PossibleValue::new(b.short).alias(b.core));
    PossibleValuesParser::new(names)
        .map(|name| qemu_boards::find(&name).expect("a possible value names a board"))
}

/// A demo run, its defaults filled in.
#[derive(Debug, Clone)]
struct Options {
    model: PathBuf,
    tokenizer: Option<PathBuf>,
    quant: Quant,
    board: &'static QemuBoard,
    settings: Settings,
}

impl DemoArgs {
    /// The run these arguments ask for: the default model (and its tokenizer) filled in.
    /// Fails on a text prompt for an image without a tokenizer.
    fn options(self) -> Result<Options, String> {
        let models = models_dir();
        let model = self.model.unwrap_or_else(|| models.join(CHECKPOINT));
        // The default tokenizer goes with the default checkpoint (and any llama2.c file); a
        // Hugging Face directory has none unless one is given.
        let tokenizer = match self.tokenizer {
            Some(Tokenizer::Path(t)) => Some(t),
            Some(Tokenizer::None) => None,
            None if model.is_dir() => None,
            None => Some(models.join(TOKENIZER)),
        };
        let settings = Settings {
            prompt: self.prompt.unwrap_or_default(),
            prompt_ids: self.prompt_ids.map(|ids| ids.0).unwrap_or_default(),
            steps: self.steps,
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
            kv: self.kv,
        };
        if !settings.prompt.is_empty() && tokenizer.is_none() {
            return Err(format!(
                "--prompt needs a tokenizer and {} is converted without one: give the prompt as \
                 token ids (--prompt-ids 1,2,3) or a tokenizer (--tokenizer PATH)",
                model.display()
            ));
        }
        Ok(Options {
            model,
            tokenizer,
            quant: self.quant,
            board: self.core,
            settings,
        })
    }
}

/// `cargo xtask demo [options]`.
pub fn demo(args: DemoArgs) -> Result<(), String> {
    let o = args.options()?;
    let start = Instant::now();
    ensure_tools()?;
    let image = work_dir()?.join(format!("demo-{}.mfi", o.quant.as_str()));
    convert(&o.model, o.tokenizer.as_deref(), o.quant, &image)?;
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
        .filter(|c| c.model == CHECKPOINT)
        .collect();
    if cases.len() < 3 {
        return Err(format!(
            "reference-llama2c.json: {} aidreams260K cases, expected 3",
            cases.len()
        ));
    }
    let image = work_dir()?.join("demo-f32.mfi");
    convert(
        &models.join(CHECKPOINT),
        Some(&models.join(TOKENIZER)),
        Quant::F32,
        &image,
    )?;
    let elf = build_firmware(M4F, &image, Kv::F32)?;
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
    // The README's ten-line firmware (boards/qemu-m4f/examples/ten_lines.rs):
    // greedy, 100 steps from "I was flying over", as llama2.c's case of that prompt.
    let ten = cases
        .iter()
        .find(|c| c.args.as_deref() == Some(TEN_LINES_ARGS))
        .and_then(|c| c.text.as_deref())
        .ok_or_else(|| format!("reference-llama2c.json: no case `{TEN_LINES_ARGS}`"))?;
    let elf = build_example(M4F, &image, "ten_lines")?;
    let run = run_qemu(M4F, &elf, "", false, false)?;
    // llama2.c ends its text with a newline; the example prints the tokens only.
    if run.text == ten.trim_end_matches('\n').as_bytes() {
        eprintln!(
            "xtask: ten-line firmware: {} bytes, identical to llama2.c's text",
            run.text.len()
        );
    } else {
        eprintln!(
            "xtask: ten-line firmware differs from llama2.c's text\n  device:   {:?}\n  llama2.c: {:?}",
            String::from_utf8_lossy(&run.text),
            ten
        );
        failures.push("ten_lines example".to_owned());
    }
    eprintln!(
        "demo: {} passed, {} failed",
        cases.len() + 1 - failures.len(),
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
    use clap::Parser;

    /// `cargo xtask demo`'s arguments alone.
    #[derive(Parser)]
    struct Demo {
        #[command(flatten)]
        args: DemoArgs,
    }

    fn parse(args: &[&str]) -> Result<DemoArgs, clap::Error> {
        let argv = std::iter::once("demo").chain(args.iter().copied());
        Demo::try_parse_from(argv).map(|d| d.args)
    }

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
    }

    #[test]
    fn defaults_are_microformer_runs() {
        let o = parse(&[]).unwrap().options().unwrap();
        assert_eq!(o.settings, Settings::default());
        assert_eq!((o.quant, o.board), (Quant::F32, M4F));
        assert_eq!(o.model, models_dir().join(CHECKPOINT));
        assert_eq!(o.tokenizer, Some(models_dir().join(TOKENIZER)));
    }

    #[test]
    fn every_flag_is_read() {
        let o = parse(&[
            "--model",
            "m.bin",
            "--tokenizer",
            "t.bin",
            "-i",
            "-a b",
            "-n",
            "20",
            "-t",
            "0",
            "-p",
            "0.5",
            "-s",
            "-7",
            "--quant",
            "q8",
            "--kv",
            "q8",
            "--core",
            "cortex-m33",
        ])
        .unwrap()
        .options()
        .unwrap();
        assert_eq!(o.model, PathBuf::from("m.bin"));
        assert_eq!(o.tokenizer, Some(PathBuf::from("t.bin")));
        assert_eq!((o.quant, o.board), (Quant::Q8, qemu_boards::M33));
        assert_eq!(
            o.settings.cmdline(),
            "steps=20 temperature=0 topp=0.5 seed=-7 kv=q8 prompt=-a b"
        );
        let o = parse(&["--steps", "5", "--steps", "6", "--core", "m3"])
            .unwrap()
            .options()
            .unwrap();
        assert_eq!((o.settings.steps, o.board), (6, qemu_boards::M3));
        let o = parse(&["--seed", "18446744073709551615", "--tokenizer", "none"])
            .unwrap()
            .options()
            .unwrap();
        assert_eq!((o.settings.seed, o.tokenizer), (u64::MAX as i128, None));
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            &["--steps", "x"][..],
            &["--temperature", "-1"],
            &["--top-p", "1.5"],
            &["--seed", "18446744073709551616"],
            &["--quant", "q4"],
            &["--kv", "f16"],
            &["--core", "m0"],
            &["--prompt-ids", "1,,3"],
            &["--prompt-ids", ""],
            &["--steps"],
            &["--frobnicate", "1"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn prompt_ids_reach_the_command_line() {
        let o = parse(&["--model", "/", "--prompt-ids", "5, 6"])
            .unwrap()
            .options()
            .unwrap();
        assert_eq!((o.tokenizer, o.settings.prompt_ids), (None, vec![5, 6]));
        assert!(parse(&["--prompt", "a", "--prompt-ids", "5"]).is_err());
        let text = parse(&["--model", "/", "--prompt", "a"]).unwrap();
        assert!(text.options().unwrap_err().contains("--prompt-ids"));
    }
}
