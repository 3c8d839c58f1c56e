//! From a checkpoint to a firmware, shared by the demo, the families stage and the
//! benchmarks: the run settings and the firmware's command line they become, the host tool's
//! conversion (`microformer convert`) and host run (`microformer run --ids`), and the QEMU
//! board's firmware build with the image embedded in flash (`MICROFORMER_IMAGE`).

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::ValueEnum;

use crate::qemu_boards::QemuBoard;
use crate::util::{boards_command, boards_dir, describe, root, run_cmd, to_stderr};

/// Weight storage of a converted image (`microformer convert --quant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Quant {
    /// f32 weights.
    F32,
    /// Q8_0: int8 in groups with one scale each (export.py's group size).
    Q8,
    /// f16 weights.
    F16,
}

impl Quant {
    /// The name `microformer convert --quant` and the tables use.
    pub fn as_str(self) -> &'static str {
        match self {
            Quant::F32 => "f32",
            Quant::Q8 => "q8",
            Quant::F16 => "f16",
        }
    }
}

/// The firmware's KV cache format (`MICROFORMER_KV` at build time sizes the arena for it,
/// `kv=` on the command line selects it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kv {
    /// f32 keys and values.
    F32,
    /// int8 keys and values, one scale per row (per kv head of a row in the integer step).
    Q8,
    /// int16 keys and values, one scale per kv head of a row (the integer step).
    Q16,
}

impl Kv {
    /// The name `MICROFORMER_KV`, `kv=` and the tables use.
    pub fn as_str(self) -> &'static str {
        match self {
            Kv::F32 => "f32",
            Kv::Q8 => "q8",
            Kv::Q16 => "q16",
        }
    }
}

/// The forward step's arithmetic (`MICROFORMER_ARITH` at build time sizes the arena for it,
/// `arith=` on the command line selects it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Arith {
    /// f32.
    #[default]
    Float,
    /// Fixed point end to end (Q8 images).
    Integer,
}

impl Arith {
    /// The name `MICROFORMER_ARITH`, `arith=`, `microformer run --arith` and the tables use.
    pub fn as_str(self) -> &'static str {
        match self {
            Arith::Float => "float",
            Arith::Integer => "integer",
        }
    }
}

/// Run settings, as `microformer run` takes them.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Prompt text; empty: none (the prompt ids, or BOS alone).
    pub prompt: String,
    /// The prompt as token ids (`microformer run --prompt-ids`), used as given; empty:
    /// none (the text prompt, or BOS alone).
    pub prompt_ids: Vec<u32>,
    /// Positions to run (0 or more than the context: all).
    pub steps: u32,
    /// Sampling temperature (0: greedy).
    pub temperature: f32,
    /// Nucleus sampling threshold.
    pub top_p: f32,
    /// The sampler's seed (0 stands for a fixed seed, never the clock).
    pub seed: i128,
    /// KV cache format (the firmware's arena is sized for it).
    pub kv: Kv,
    /// The forward step's arithmetic (the firmware's arena is sized for it).
    pub arith: Arith,
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
            kv: Kv::F32,
            arith: Arith::Float,
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
        if self.kv != Kv::F32 {
            s += " kv=";
            s += self.kv.as_str();
        }
        if self.arith != Arith::Float {
            s += " arith=";
            s += self.arith.as_str();
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
pub fn id_list(ids: &[u32]) -> String {
    let items: Vec<String> = ids.iter().map(u32::to_string).collect();
    items.join(",")
}

/// Parses `1,2,3` (spaces allowed around the commas), as `microformer run --prompt-ids`.
pub fn parse_id_list(s: &str) -> Option<Vec<u32>> {
    s.split(',').map(|t| t.trim().parse().ok()).collect()
}

/// Parses the ids a run printed (`microformer run --ids`, or the firmware without a
/// tokenizer): space-separated, one final newline.
pub fn parse_printed_ids(text: &[u8]) -> Result<Vec<u32>, String> {
    let text = std::str::from_utf8(text).map_err(|_| "the ids are not UTF-8".to_owned())?;
    text.split_whitespace()
        .map(|t| t.parse().map_err(|_| format!("{t:?} is not a token id")))
        .collect()
}

/// Converts a llama2.c checkpoint or a Hugging Face directory with the host tool
/// (`microformer convert`) into the image `out`.
pub fn convert(
    model: &Path,
    tokenizer: Option<&Path>,
    quant: Quant,
    out: &Path,
) -> Result<(), String> {
    convert_for(model, tokenizer, quant, Arith::Float, out)
}

/// [`convert`] for a step of arithmetic `arith`: a Q8 image for the integer step
/// carries its scales in block-float form too (`--block-scales`), which that step
/// reads instead of decoding them.
pub fn convert_for(
    model: &Path,
    tokenizer: Option<&Path>,
    quant: Quant,
    arith: Arith,
    out: &Path,
) -> Result<(), String> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root())
        .args(["run", "--quiet", "-p", "microformer-cli", "--", "convert"])
        .arg(model)
        .arg("-o")
        .arg(out)
        .args(["--quant", quant.as_str()])
        .stdout(to_stderr());
    if quant == Quant::Q8 && arith == Arith::Integer {
        cmd.arg("--block-scales");
    }
    if let Some(t) = tokenizer {
        cmd.arg("--tokenizer").arg(t);
    }
    run_cmd(&mut cmd)
}

/// Builds `board`'s firmware (release) with `image` embedded and its arena sized for `kv`;
/// returns the ELF.
pub fn build_firmware(board: &QemuBoard, image: &Path, kv: Kv) -> Result<PathBuf, String> {
    build_firmware_for(board, image, kv, Arith::Float, None)
}

/// [`build_firmware`], with the token stream of `text` (encoded at build time with the
/// image's tokenizer, `MICROFORMER_TEXT`) for the perplexity mode when given.
pub fn build_firmware_with_text(
    board: &QemuBoard,
    image: &Path,
    kv: Kv,
    text: Option<&Path>,
) -> Result<PathBuf, String> {
    build_firmware_for(board, image, kv, Arith::Float, text)
}

/// [`build_firmware_with_text`] with the arena sized for a step of arithmetic `arith`.
pub fn build_firmware_for(
    board: &QemuBoard,
    image: &Path,
    kv: Kv,
    arith: Arith,
    text: Option<&Path>,
) -> Result<PathBuf, String> {
    build_firmware_with_features(board, image, kv, arith, text, &[])
}

/// [`build_firmware_for`] with the board crate's cargo `features` on (e.g. `exact`).
pub fn build_firmware_with_features(
    board: &QemuBoard,
    image: &Path,
    kv: Kv,
    arith: Arith,
    text: Option<&Path>,
    features: &[&str],
) -> Result<PathBuf, String> {
    let dir = boards_dir().join(board.dir);
    let image = image
        .canonicalize()
        .map_err(|e| format!("{}: {e}", image.display()))?;
    let mut cmd = boards_command(&dir, "cargo");
    cmd.args(["build", "--release", "--bin", board.dir])
        .args(["--target", board.target]);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    cmd.env("MICROFORMER_IMAGE", &image)
        .env("MICROFORMER_KV", kv.as_str())
        .env("MICROFORMER_ARITH", arith.as_str())
        .env_remove("MICROFORMER_CHECKPOINT")
        .env_remove("MICROFORMER_TEXT")
        .stdout(to_stderr());
    if let Some(t) = text {
        let t = t
            .canonicalize()
            .map_err(|e| format!("{}: {e}", t.display()))?;
        cmd.env("MICROFORMER_TEXT", t);
    }
    run_cmd(&mut cmd)?;
    Ok(root()
        .join("target")
        .join("boards")
        .join(board.target)
        .join("release")
        .join(board.dir))
}

/// Builds the example `name` of `board`'s crate (release) with `image` in flash and
/// returns the ELF's path.
pub fn build_example(board: &QemuBoard, image: &Path, name: &str) -> Result<PathBuf, String> {
    let dir = boards_dir().join(board.dir);
    let image = image
        .canonicalize()
        .map_err(|e| format!("{}: {e}", image.display()))?;
    run_cmd(
        boards_command(&dir, "cargo")
            .args(["build", "--release", "--example", name])
            .env("MICROFORMER_IMAGE", &image)
            .env("MICROFORMER_KV", "f32")
            .env_remove("MICROFORMER_CHECKPOINT")
            .stdout(to_stderr()),
    )?;
    Ok(root()
        .join("target")
        .join("boards")
        .join(board.target)
        .join("release")
        .join("examples")
        .join(name))
}

/// `microformer run IMG --ids` on the host with `settings` (prompt ids or text): the ids it
/// printed.
pub fn host_ids(image: &Path, settings: &Settings) -> Result<Vec<u32>, String> {
    parse_printed_ids(&host_run(image, settings, true)?)
}

/// `microformer run IMG` on the host with `settings`: the text it printed, byte for byte
/// (llama2.c's text, one final newline).
pub fn host_text(image: &Path, settings: &Settings) -> Result<Vec<u8>, String> {
    host_run(image, settings, false)
}

/// `microformer run IMG [--ids]` on the host with `settings`: its stdout.
fn host_run(image: &Path, settings: &Settings, ids: bool) -> Result<Vec<u8>, String> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root())
        .args(["run", "--quiet", "-p", "microformer-cli", "--", "run"])
        .arg(image)
        .args(["-n", &settings.steps.to_string()])
        .args(["-t", &settings.temperature.to_string()])
        .args(["-p", &settings.top_p.to_string()])
        .args(["-s", &settings.seed.to_string()])
        .args(["--kv", settings.kv.as_str()])
        .args(["--arith", settings.arith.as_str()]);
    if ids {
        cmd.arg("--ids");
    }
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
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_become_the_command_line() {
        let p = Settings {
            prompt: "a b".into(),
            ..Settings::default()
        };
        assert_eq!(
            p.cmdline(),
            "steps=256 temperature=1 topp=0.9 seed=0 prompt=a b"
        );
        let q = Settings {
            steps: 128,
            temperature: 0.0,
            kv: Kv::Q8,
            prompt_ids: vec![86, 33, 42],
            ..Settings::default()
        };
        assert_eq!(
            q.cmdline(),
            "steps=128 temperature=0 topp=0.9 seed=0 kv=q8 prompt_ids=86,33,42"
        );
    }

    #[test]
    fn id_lists() {
        assert_eq!(id_list(&[1, 2, 3]), "1,2,3");
        assert_eq!(parse_id_list("1, 2,3"), Some(vec![1, 2, 3]));
        assert_eq!(parse_id_list("1,,3"), None);
        assert_eq!(parse_printed_ids(b"7 8 9\n"), Ok(vec![7, 8, 9]));
        assert!(parse_printed_ids(b"7 x\n").is_err());
    }

    #[test]
    fn names_as_the_tools_take_them() {
        for q in Quant::value_variants() {
            let name = q.to_possible_value().map(|v| v.get_name().to_owned());
            assert_eq!(name.as_deref(), Some(q.as_str()));
        }
        for k in Kv::value_variants() {
            let name = k.to_possible_value().map(|v| v.get_name().to_owned());
            assert_eq!(name.as_deref(), Some(k.as_str()));
        }
    }
}
