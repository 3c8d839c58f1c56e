//! `cargo xtask demo`: a model on an emulated Cortex-M (the M4F unless `--core` says).
//!
//! Installs what a fresh machine lacks (the rustup targets, `qemu-system-arm`, `defmt-print`),
//! converts the model with the host tool (`microformer convert`; by default the project's own
//! `models/rope`, which the repository ships with its tokenizer), builds the QEMU board's
//! firmware with the image embedded in flash (`MICROFORMER_IMAGE`), and runs it under QEMU
//! with the settings on its semihosting command line (`-append "steps=… temperature=… topp=…
//! seed=… prompt=…"`). The device's text (semihosting stderr) goes to stdout, byte for byte;
//! the tools' and the device's logs (defmt, decoded by `defmt-print`) go to stderr.
//!
//! The settings mean what they mean for llama2.c's `run` and `microformer run` (same
//! defaults): `--steps` positions (0 or more than the context: all), `--temperature` (0:
//! greedy), `--top-p`, `--seed` (0 stands for a fixed seed, never the clock), `--prompt`.
//!
//! [`demo_tests`] (a stage of `cargo xtask test`) runs the project's own models on the
//! emulated M4F against the host (text and perplexity), and, when the reference folder is
//! there, the demo for every aidreams260K case of `reference-llama2c.json`, comparing the
//! printed text with llama2.c's byte for byte.
//!
//! `--model` also takes a llama2.c checkpoint or any Hugging Face directory the converter
//! reads. An image without a tokenizer makes the device print token ids, space-separated, as
//! `microformer run --ids` does, and a prompt is given as ids (`--prompt-ids 1,2,3`, the
//! firmware's `prompt_ids=` word). The families stage (`families.rs`) runs the Hugging Face
//! fixtures that way.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::Args;
use serde::Deserialize;

use crate::firmware::{
    build_example, build_firmware, build_firmware_for, build_firmware_with_text, convert,
    convert_for, host_text, parse_id_list, Arith, Kv, Quant, Settings,
};
use crate::install::ensure_tools;
use crate::perplexity;
use crate::qemu::run_qemu;
use crate::qemu_boards::{self, QemuBoard, BOARDS, M4F};
use crate::util::{models_dir, root, secs, work_dir};

/// The model the demo runs by default: the project's own RoPE model (root-relative), a
/// directory holding its tokenizer.
pub const DEFAULT_MODEL: &str = "models/rope";

/// llama2.c's reference checkpoint and its tokenizer (in the reference folder, never in
/// the repository): the demo stage's llama2.c comparisons run them when they are there.
const CHECKPOINT: &str = "aidreams260K.bin";
const TOKENIZER: &str = "aidreams260K.tok512.bin";

/// llama2.c's arguments for the text the ten-line firmware example prints.
const TEN_LINES_ARGS: &str = "-t 0 -n 100 -i I was flying over";

/// What `cargo xtask demo` takes (defaults: `microformer run`'s, and llama2.c's).
#[derive(Debug, Clone, Args)]
#[command(args_override_self = true)]
pub struct DemoArgs {
    /// A model directory (the project's own models/<scheme>, or a Hugging Face checkpoint:
    /// config.json + model.safetensors) or a llama2.c checkpoint; without a tokenizer (its
    /// own tokenizer.bin, or --tokenizer) the device prints token ids, space-separated, as
    /// `microformer run --ids` [default: models/rope]
    #[arg(long, value_name = "PATH|HF-DIR")]
    model: Option<PathBuf>,
    /// The tokenizer embedded with the model, or `none` [default: a directory's own
    /// tokenizer.bin; for a llama2.c file NAME.bin, NAME.tok512.bin or tokenizer.bin beside
    /// it]
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
    /// The forward step's arithmetic: float, or integer (fixed point end to end; needs
    /// --quant q8 and --kv q8 or q16)
    #[arg(long, value_enum, default_value_t = Arith::Float)]
    arith: Arith,
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
        let model = self.model.unwrap_or_else(|| root().join(DEFAULT_MODEL));
        // A directory brings its own tokenizer.bin (the converter embeds it); a llama2.c
        // file takes the tokenizer beside it, if there is one.
        let tokenizer = match self.tokenizer {
            Some(Tokenizer::Path(t)) => Some(t),
            Some(Tokenizer::None) => None,
            None if model.is_dir() => None,
            None => llama2c_tokenizer(&model),
        };
        let own_tokenizer = model.is_dir() && model.join("tokenizer.bin").is_file();
        let settings = Settings {
            prompt: self.prompt.unwrap_or_default(),
            prompt_ids: self.prompt_ids.map(|ids| ids.0).unwrap_or_default(),
            steps: self.steps,
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
            kv: self.kv,
            arith: self.arith,
        };
        if !settings.prompt.is_empty() && tokenizer.is_none() && !own_tokenizer {
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

/// The tokenizer beside a llama2.c checkpoint `NAME.bin`: `NAME.tok512.bin` (as the
/// reference folder names aidreams260K's), else `tokenizer.bin`; none when neither is there.
fn llama2c_tokenizer(checkpoint: &Path) -> Option<PathBuf> {
    let dir = checkpoint.parent()?;
    let stem = checkpoint.file_stem()?.to_string_lossy();
    [format!("{stem}.tok512.bin"), String::from("tokenizer.bin")]
        .into_iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
}

/// `cargo xtask demo [options]`.
pub fn demo(args: DemoArgs) -> Result<(), String> {
    let o = args.options()?;
    let start = Instant::now();
    ensure_tools()?;
    let image = work_dir()?.join(format!(
        "demo-{}-{}.mfi",
        o.quant.as_str(),
        o.settings.arith.as_str()
    ));
    convert_for(
        &o.model,
        o.tokenizer.as_deref(),
        o.quant,
        o.settings.arith,
        &image,
    )?;
    let elf = build_firmware_for(o.board, &image, o.settings.kv, o.settings.arith, None)?;
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

/// One run of the project's own models in the demo stage: the demo's text and the
/// perplexity mode, on the emulated Cortex-M4F and on the host.
struct OwnCase {
    /// `models/<scheme>`.
    scheme: &'static str,
    quant: Quant,
    kv: Kv,
    /// The demo's settings (the KV format is `kv`).
    settings: fn() -> Settings,
}

/// The demo stage's runs of the project's own models: the demo as `cargo xtask demo` runs
/// it by default (models/rope, f32, seeded top-p from BOS, 256 positions: twice the training
/// length), and the T5 model in Q8 with the int8 KV cache, greedy from a prompt.
const OWN_CASES: [OwnCase; 2] = [
    OwnCase {
        scheme: "rope",
        quant: Quant::F32,
        kv: Kv::F32,
        settings: Settings::default,
    },
    OwnCase {
        scheme: "t5",
        quant: Quant::Q8,
        kv: Kv::Q8,
        settings: || Settings {
            prompt: String::from("ROMEO.\nWhat say you"),
            temperature: 0.0,
            steps: 200,
            kv: Kv::Q8,
            ..Settings::default()
        },
    },
];

/// Whether `device` (the firmware's text) equals `host` (`microformer run`'s), reporting
/// the first difference.
fn same_text(what: &str, device: &[u8], host: &[u8]) -> bool {
    if device == host {
        eprintln!(
            "xtask: {what}: {} bytes, identical to the host's text",
            device.len()
        );
        return true;
    }
    let at = device
        .iter()
        .zip(host)
        .position(|(a, b)| a != b)
        .unwrap_or(device.len().min(host.len()));
    eprintln!(
        "xtask: {what}: differs from the host's text at byte {at}\n  device: {:?}\n  host:   {:?}",
        String::from_utf8_lossy(device),
        String::from_utf8_lossy(host)
    );
    false
}

/// The project's own models on the emulated Cortex-M4F (no reference data needed): for each
/// of [`OWN_CASES`], the demo's text equals the host's byte for byte, and the perplexity mode
/// over `models/text/sample.txt` in windows of 512 equals the host's `microformer perplexity`
/// to 5 significant digits. Returns the number of checks passed; failures are pushed.
fn own_model_checks(failures: &mut Vec<String>) -> Result<usize, String> {
    let text = root().join(perplexity::DEFAULT_TEXT);
    let mut passed = 0;
    for c in &OWN_CASES {
        let model = root().join("models").join(c.scheme);
        let image = work_dir()?.join(format!("demo-own-{}-{}.mfi", c.scheme, c.quant.as_str()));
        convert(&model, None, c.quant, &image)?;
        let elf = build_firmware_with_text(M4F, &image, c.kv, Some(&text))?;
        let settings = (c.settings)();
        let what = format!(
            "demo models/{} ({}, kv {}) `{}`",
            c.scheme,
            c.quant.as_str(),
            c.kv.as_str(),
            settings.cmdline()
        );
        let run = run_qemu(M4F, &elf, &settings.cmdline(), true, false)?;
        if same_text(&what, &run.text, &host_text(&image, &settings)?) {
            passed += 1;
        } else {
            failures.push(what);
        }
        let cmdline = format!("perplexity=512 kv={}", c.kv.as_str());
        let run = run_qemu(M4F, &elf, &cmdline, true, false)?;
        let device = perplexity::parse_figures(&run.text)?;
        let host = perplexity::host_figures(&image, &text, 512, c.kv)?;
        let compared = perplexity::Compared { device, host };
        let what = format!(
            "models/{} ({}, kv {}) on {}",
            c.scheme,
            c.quant.as_str(),
            c.kv.as_str(),
            perplexity::DEFAULT_TEXT
        );
        perplexity::report(&what, M4F, &compared);
        if compared.agrees() {
            passed += 1;
        } else {
            failures.push(format!("perplexity of {what}"));
        }
    }
    Ok(passed)
}

/// The on-target demo stage of `cargo xtask test`. Always: the project's own models
/// ([`own_model_checks`]) and the README's ten-line firmware. With the reference folder
/// (`../shared/models`, `MICROFORMER_REFERENCE_DIR`): every aidreams260K case of
/// `reference-llama2c.json`, run as `cargo xtask demo` runs it (one firmware, one QEMU run
/// per case), must print llama2.c's text byte for byte, and so must the ten-line firmware
/// with aidreams260K; without it those are skipped, named, and the ten-line firmware runs
/// the project's own model against the host's text. Returns its duration.
pub fn demo_tests() -> Result<Duration, String> {
    let start = Instant::now();
    eprintln!("xtask: === demo stage ===");
    ensure_tools()?;
    let mut failures = Vec::new();
    let mut passed = own_model_checks(&mut failures)?;
    let models = models_dir();
    let reference = [
        models.join("reference-llama2c.json"),
        models.join(CHECKPOINT),
        models.join(TOKENIZER),
    ];
    if let Some(missing) = reference.iter().find(|p| !p.is_file()) {
        eprintln!(
            "xtask: skipped (no reference data: {} is not there; ../shared/models or \
             MICROFORMER_REFERENCE_DIR): the demo against llama2.c's three aidreams260K texts, \
             and the ten-line firmware against llama2.c's text",
            missing.display()
        );
        // The ten-line firmware with the project's own model, against the host.
        let image = work_dir()?.join("demo-own-rope-f32.mfi");
        let elf = build_example(M4F, &image, "ten_lines")?;
        let run = run_qemu(M4F, &elf, "", false, false)?;
        let s = case_settings(TEN_LINES_ARGS)?;
        let host = host_text(&image, &s)?;
        // `microformer run` ends its text with a newline; the example prints the tokens only.
        let host = host.strip_suffix(b"\n").unwrap_or(&host);
        if same_text("ten-line firmware (models/rope)", &run.text, host) {
            passed += 1;
        } else {
            failures.push("ten_lines example".to_owned());
        }
    } else {
        passed += llama2c_checks(&models, &mut failures)?;
    }
    eprintln!("demo: {passed} passed, {} failed", failures.len());
    if failures.is_empty() {
        eprintln!("xtask: demo stage passed in {}", secs(start.elapsed()));
        Ok(start.elapsed())
    } else {
        Err(format!(
            "the device's output differs from the reference: {}",
            failures.join("; ")
        ))
    }
}

/// The demo against llama2.c's aidreams260K texts (`reference-llama2c.json` in `models`),
/// and the ten-line firmware with aidreams260K against llama2.c's text. Returns the checks
/// passed; failures are pushed.
fn llama2c_checks(models: &Path, failures: &mut Vec<String>) -> Result<usize, String> {
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
    let mut passed = 0;
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
            passed += 1;
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
        passed += 1;
    } else {
        eprintln!(
            "xtask: ten-line firmware differs from llama2.c's text\n  device:   {:?}\n  llama2.c: {:?}",
            String::from_utf8_lossy(&run.text),
            ten
        );
        failures.push("ten_lines example".to_owned());
    }
    Ok(passed)
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
        assert_eq!(o.model, root().join(DEFAULT_MODEL));
        // The directory's own tokenizer.bin, embedded by the converter.
        assert_eq!(o.tokenizer, None);
        assert!(o.model.join("tokenizer.bin").is_file());
        let o = parse(&["--prompt", "ROMEO."]).unwrap().options().unwrap();
        assert_eq!(o.settings.prompt, "ROMEO.");
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
