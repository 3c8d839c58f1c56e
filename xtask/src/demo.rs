//! `cargo xtask demo`: a model on the emulated Cortex-M4F.
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
//! firmware's `prompt_ids=` word). [`families_tests`] (a stage of `cargo xtask test`) runs
//! the shared fixtures that way and compares the ids with the host's and transformers'.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::install::ensure_tools;
use crate::qemu_boards::{self, QemuBoard, M4F};
use crate::util::{
    boards_command, boards_dir, describe, models_dir, root, run_cmd, secs, shared_dir, to_stderr,
    work_dir,
};

/// Run settings, as `microformer run` takes them.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub prompt: String,
    /// The prompt as token ids (`microformer run --prompt-ids`), used as given; empty:
    /// none (the text prompt, or BOS alone).
    pub prompt_ids: Vec<u32>,
    pub steps: u32,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: i128,
    /// KV cache format, `f32` or `q8` (the firmware's arena is sized for it).
    pub kv: &'static str,
}

impl Default for Settings {
    /// `microformer run`'s (and llama2.c's) defaults, seed 0 fixed.
    fn default() -> Self {
        Settings {
            prompt: String::new(),
            prompt_ids: Vec::new(),
            steps: 256,
            temperature: 1.0,
            top_p: 0.9,
            seed: 0,
            kv: "f32",
        }
    }
}

impl Settings {
    /// The firmware's command line (see `boards/firmware/src/settings.rs`): the prompt last,
    /// as it runs to the end of the line.
    pub fn cmdline(&self) -> String {
        let mut s = format!(
            "steps={} temperature={} topp={} seed={}",
            self.steps, self.temperature, self.top_p, self.seed
        );
        if self.kv != "f32" {
            s += " kv=";
            s += self.kv;
        }
        if !self.prompt_ids.is_empty() {
            s += " prompt_ids=";
            s += &id_list(&self.prompt_ids);
        }
        if !self.prompt.is_empty() {
            s += " prompt=";
            s += &self.prompt;
        }
        s
    }
}

/// `1,2,3`, as `microformer run --prompt-ids` takes a list.
fn id_list(ids: &[u32]) -> String {
    let items: Vec<String> = ids.iter().map(u32::to_string).collect();
    items.join(",")
}

/// Parses `1,2,3` (spaces allowed around the commas), as `microformer run --prompt-ids`.
fn parse_id_list(s: &str) -> Option<Vec<u32>> {
    s.split(',').map(|t| t.trim().parse().ok()).collect()
}

/// Parses the ids a run printed (`microformer run --ids`, or the firmware without a
/// tokenizer): space-separated, one final newline.
fn parse_printed_ids(text: &[u8]) -> Result<Vec<u32>, String> {
    let text = std::str::from_utf8(text).map_err(|_| "the ids are not UTF-8".to_owned())?;
    text.split_whitespace()
        .map(|t| t.parse().map_err(|_| format!("{t:?} is not a token id")))
        .collect()
}

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

/// Converts a llama2.c checkpoint with the host tool (`microformer convert`).
pub fn convert(
    model: &Path,
    tokenizer: Option<&Path>,
    quant: &str,
    out: &Path,
) -> Result<(), String> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root())
        .args(["run", "--quiet", "-p", "microformer-cli", "--", "convert"])
        .arg(model)
        .arg("-o")
        .arg(out)
        .args(["--quant", quant])
        .stdout(to_stderr());
    if let Some(t) = tokenizer {
        cmd.arg("--tokenizer").arg(t);
    }
    run_cmd(&mut cmd)
}

/// Builds `board`'s firmware (release) with `image` embedded; returns the ELF.
pub fn build_firmware(board: &QemuBoard, image: &Path, kv: &str) -> Result<PathBuf, String> {
    let dir = boards_dir().join(board.dir);
    let image = image
        .canonicalize()
        .map_err(|e| format!("{}: {e}", image.display()))?;
    run_cmd(
        boards_command(&dir, "cargo")
            .args(["build", "--release", "--bin", board.dir])
            .env("MICROFORMER_IMAGE", &image)
            .env("MICROFORMER_KV", kv)
            .env_remove("MICROFORMER_CHECKPOINT")
            .stdout(to_stderr()),
    )?;
    Ok(root()
        .join("target")
        .join("boards")
        .join(board.target)
        .join("release")
        .join(board.dir))
}

/// What a firmware run printed: the device's text and its decoded logs.
pub struct QemuRun {
    /// Semihosting stderr: the generated text.
    pub text: Vec<u8>,
    /// defmt-print's output, line by line.
    pub log: Vec<String>,
}

/// Waits for `child`, killing it after `limit`.
fn wait_with_limit(child: &mut Child, limit: Duration) -> Result<ExitStatus, String> {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("QEMU ran past {} s: stopped", limit.as_secs()));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `elf` on `board` under QEMU with `cmdline` (`-append`), optionally counting
/// instructions (`-icount shift=0`). The text goes to our stdout as it comes when `echo`,
/// and is returned either way; the decoded log is echoed to stderr and returned. Fails on
/// a non-zero exit (a failed run, a fault) or a run longer than `QEMU_TIMEOUT` seconds
/// (default 600).
pub fn run_qemu(
    board: &QemuBoard,
    elf: &Path,
    cmdline: &str,
    icount: bool,
    echo: bool,
) -> Result<QemuRun, String> {
    let limit = std::env::var("QEMU_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let mut qemu = Command::new("qemu-system-arm");
    qemu.args(["-machine", board.machine, "-cpu", board.cpu, "-nographic"])
        .args(["-semihosting-config", "enable=on,target=native"]);
    if icount {
        qemu.args(["-icount", "shift=0"]);
    }
    qemu.arg("-kernel")
        .arg(elf)
        .arg("-append")
        .arg(cmdline)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!(
        "xtask: $ qemu-system-arm -machine {} -cpu {}{} -kernel {} -append {cmdline:?} | defmt-print",
        board.machine,
        board.cpu,
        if icount { " -icount shift=0" } else { "" },
        elf.display()
    );
    let mut q = qemu
        .spawn()
        .map_err(|e| format!("cannot start qemu-system-arm: {e}"))?;
    let frames = q.stdout.take().ok_or("no QEMU stdout")?;
    let mut print = Command::new("defmt-print")
        .arg("-e")
        .arg(elf)
        .stdin(Stdio::from(frames))
        .stdout(Stdio::piped())
        .stderr(to_stderr())
        .spawn()
        .map_err(|e| format!("cannot start defmt-print: {e}"))?;
    let mut err = q.stderr.take().ok_or("no QEMU stderr")?;
    let text = thread::spawn(move || {
        use std::io::Write;
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        let out = std::io::stdout();
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            if echo {
                let mut o = out.lock();
                let _ = o.write_all(&buf[..n]);
                let _ = o.flush();
            }
        }
        all
    });
    let mut decoded = print.stdout.take().ok_or("no defmt-print stdout")?;
    let log = thread::spawn(move || {
        let mut s = String::new();
        let _ = decoded.read_to_string(&mut s);
        s
    });
    let status = wait_with_limit(&mut q, Duration::from_secs(limit));
    let _ = print.wait();
    let text = text.join().unwrap_or_default();
    let log: Vec<String> = log
        .join()
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    for l in &log {
        eprintln!("{l}");
    }
    let status = status?;
    if !status.success() {
        return Err(format!("the firmware failed under QEMU ({status})"));
    }
    Ok(QemuRun { text, log })
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

/// `microformer run IMG --ids` on the host with `settings` (prompt ids or text): the ids it
/// printed.
pub fn host_ids(image: &Path, settings: &Settings) -> Result<Vec<u32>, String> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root())
        .args(["run", "--quiet", "-p", "microformer-cli", "--", "run"])
        .arg(image)
        .arg("--ids")
        .args(["-n", &settings.steps.to_string()])
        .args(["-t", &settings.temperature.to_string()])
        .args(["-p", &settings.top_p.to_string()])
        .args(["-s", &settings.seed.to_string()]);
    if !settings.prompt_ids.is_empty() {
        cmd.args(["--prompt-ids", &id_list(&settings.prompt_ids)]);
    }
    if !settings.prompt.is_empty() {
        cmd.args(["--prompt", &settings.prompt]);
    }
    eprintln!("xtask: $ {}", describe(&cmd));
    let out = cmd
        .stderr(to_stderr())
        .output()
        .map_err(|e| format!("cannot run microformer: {e}"))?;
    if !out.status.success() {
        return Err(format!("microformer run failed ({})", out.status));
    }
    parse_printed_ids(&out.stdout)
}

/// A Hugging Face fixture the families stage runs on the device.
struct Family {
    /// Directory under `../shared/fixtures/hf`, or under `tests/fixtures/hf` when not `shared`.
    dir: &'static str,
    /// Whether it is a shared fixture (else one of the project's own).
    shared: bool,
    /// What it exercises.
    what: &'static str,
}

/// Every family the converter reads, one fixture each: one ALiBi model and one
/// learned-position model (what the issue asks for), and every other position hook and
/// block shape.
const FAMILIES: &[Family] = &[
    Family {
        dir: "bloom-alibi",
        shared: true,
        what: "BLOOM, ALiBi",
    },
    Family {
        dir: "gpt2-learned",
        shared: true,
        what: "GPT-2, learned positions",
    },
    Family {
        dir: "xglm-sinusoidal",
        shared: true,
        what: "XGLM, sinusoidal",
    },
    Family {
        dir: "gptneox-partial-rope",
        shared: true,
        what: "GPT-NeoX, partial RoPE",
    },
    Family {
        dir: "llama-rope-default",
        shared: true,
        what: "Llama, RoPE",
    },
    Family {
        dir: "gptj-interleaved-rope",
        shared: false,
        what: "GPT-J, interleaved RoPE",
    },
    Family {
        dir: "mpt-alibi-6h",
        shared: false,
        what: "MPT, ALiBi, 6 heads",
    },
    Family {
        dir: "phi-partial-rope",
        shared: false,
        what: "Phi, partial RoPE",
    },
];

/// The shared Hugging Face fixtures (`MICROFORMER_HF_FIXTURES` overrides).
fn hf_fixtures_dir() -> PathBuf {
    match std::env::var_os("MICROFORMER_HF_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => shared_dir().join("fixtures").join("hf"),
    }
}

/// A fixture's `reference.json` (the fields the stage reads): transformers' greedy
/// continuation of a prompt.
#[derive(Debug, Deserialize)]
struct Reference {
    /// The prompt, as token ids.
    greedy_prompt: Vec<u32>,
    /// The ids transformers generated after it, greedy.
    greedy: Vec<u32>,
}

/// The settings of a greedy run of `new_tokens` tokens after `prompt` (ids), and how many
/// ids it prints before them: run.c emits the prompt's tokens after the first, then the
/// generated ones, one per position.
fn greedy_settings(prompt: &[u32], new_tokens: usize) -> (Settings, usize) {
    let echoed = prompt.len().saturating_sub(1);
    let s = Settings {
        prompt_ids: prompt.to_vec(),
        steps: (echoed + new_tokens) as u32,
        temperature: 0.0,
        ..Settings::default()
    };
    (s, echoed)
}

/// One fixture: convert, run greedy on the host and on the emulated Cortex-M4F, compare
/// the ids with each other and with transformers' `greedy`. Returns the summary line.
fn family(f: &Family) -> Result<String, String> {
    let dir = if f.shared {
        hf_fixtures_dir().join(f.dir)
    } else {
        root().join("tests").join("fixtures").join("hf").join(f.dir)
    };
    let path = dir.join("reference.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let reference: Reference =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let (prompt, want) = (reference.greedy_prompt, reference.greedy);
    if prompt.is_empty() || want.is_empty() {
        return Err("reference.json: empty greedy_prompt or greedy".into());
    }
    let (settings, echoed) = greedy_settings(&prompt, want.len());
    let image = work_dir()?.join(format!("families-{}.mfi", f.dir));
    convert(&dir, None, "f32", &image)?;
    let host = host_ids(&image, &settings)?;
    let elf = build_firmware(M4F, &image, "f32")?;
    let run = run_qemu(M4F, &elf, &settings.cmdline(), false, false)?;
    let device = parse_printed_ids(&run.text).map_err(|e| {
        format!(
            "the device did not print token ids ({e}): {:?}",
            String::from_utf8_lossy(&run.text)
        )
    })?;
    let show = |ids: &[u32]| {
        let v: Vec<String> = ids.iter().map(u32::to_string).collect();
        v.join(" ")
    };
    eprintln!("xtask: {} host:   {}", f.dir, show(&host));
    eprintln!("xtask: {} device: {}", f.dir, show(&device));
    if device != host {
        let at = device
            .iter()
            .zip(&host)
            .position(|(a, b)| a != b)
            .unwrap_or(device.len().min(host.len()));
        return Err(format!(
            "device and host differ at id {at} (device {} ids, host {} ids)",
            device.len(),
            host.len()
        ));
    }
    if host.get(..echoed) != prompt.get(1..) {
        return Err("the printed ids do not start with the prompt's (after the first)".into());
    }
    let generated = &host[echoed..];
    if generated != want.as_slice() {
        return Err(format!(
            "{} generated ids, transformers' greedy has {}; first difference at {}",
            generated.len(),
            want.len(),
            generated
                .iter()
                .zip(&want)
                .position(|(a, b)| a != b)
                .unwrap_or(generated.len().min(want.len()))
        ));
    }
    Ok(format!(
        "{} ids, device = host = transformers' greedy ({} tokens after an {}-token prompt)",
        host.len(),
        want.len(),
        prompt.len()
    ))
}

/// The families stage of `cargo xtask test`: for each fixture of [`FAMILIES`] (ALiBi,
/// learned, sinusoidal and partial-RoPE positions), `microformer convert` of the Hugging
/// Face directory, then greedy generation from `reference.json`'s `greedy_prompt` (as
/// prompt ids) for as many tokens as its `greedy` holds, on the host (`microformer run
/// --ids`) and on the emulated Cortex-M4F (the demo's path: the firmware prints ids, the
/// image having no tokenizer). The ids must be identical, and the continuation equal to
/// transformers' `greedy`. One line per model, then `families: N passed, M failed`.
pub fn families_tests() -> Result<Duration, String> {
    let start = Instant::now();
    eprintln!("xtask: === families stage ===");
    ensure_tools()?;
    let mut results = Vec::new();
    for f in FAMILIES {
        eprintln!("xtask: --- {} ({}) ---", f.dir, f.what);
        let t = Instant::now();
        results.push((f, family(f), t.elapsed()));
    }
    let mut failed = Vec::new();
    for (f, r, t) in &results {
        match r {
            Ok(line) => eprintln!(
                "families: {:<22} {:<26} ok: {line} ({})",
                f.dir,
                f.what,
                secs(*t)
            ),
            Err(e) => {
                eprintln!(
                    "families: {:<22} {:<26} FAILED: {e} ({})",
                    f.dir,
                    f.what,
                    secs(*t)
                );
                failed.push(f.dir);
            }
        }
    }
    eprintln!(
        "families: {} passed, {} failed",
        results.len() - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        eprintln!("xtask: families stage passed in {}", secs(start.elapsed()));
        Ok(start.elapsed())
    } else {
        Err(format!(
            "device generation differs for {}",
            failed.join(", ")
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
    fn reads_a_reference() {
        let r: Reference = serde_json::from_str(
            r#"{"config": {"n_layer": 2}, "greedy_prompt": [86, 33], "greedy": [99, 125]}"#,
        )
        .unwrap();
        assert_eq!((r.greedy_prompt, r.greedy), (vec![86, 33], vec![99, 125]));
        let not_ids = r#"{"greedy_prompt": [1.5], "greedy": []}"#;
        assert!(serde_json::from_str::<Reference>(not_ids).is_err());
    }

    #[test]
    fn prompt_ids_reach_the_command_line() {
        let (s, echoed) = greedy_settings(&[86, 33, 42], 24);
        assert_eq!((s.steps, echoed), (26, 2));
        assert_eq!(
            s.cmdline(),
            "steps=26 temperature=0 topp=0.9 seed=0 prompt_ids=86,33,42"
        );
        assert_eq!(parse_id_list("1, 2,3"), Some(vec![1, 2, 3]));
        assert_eq!(parse_id_list("1,,3"), None);
        assert_eq!(parse_printed_ids(b"7 8 9\n"), Ok(vec![7, 8, 9]));
        assert!(parse_printed_ids(b"7 x\n").is_err());
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
