//! `cargo xtask perplexity`: a model's perplexity measured on an emulated Cortex-M and on
//! the host, over the same token stream, and compared.
//!
//! The model is converted with the host tool (`microformer convert`), the firmware is built
//! with the image in flash and the text encoded at build time with the image's tokenizer
//! (`MICROFORMER_TEXT`, the same encoder as `microformer perplexity`), and run under QEMU
//! with `perplexity=N` on its command line: it scores the stream in windows of BOS + N − 1
//! tokens with the library's `perplexity` module and prints one JSON line of integers (the
//! mean nll as its f64 bit pattern: no float formatting in flash); the perplexity is its
//! `exp`, computed here with the same `libm` function as the library's. The two figures must agree to at least 5
//! significant digits (the same code and arithmetic on both sides: they are expected to be
//! bit-identical, and the command says whether they are).
//!
//! [`device_and_host`] is what the extrapolation study's Cortex-M4F column and the demo
//! stage's check call.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use clap::Args;
use serde::Deserialize;

use crate::firmware::{build_firmware_with_text, convert, Kv, Quant};
use crate::install::ensure_tools;
use crate::qemu::run_qemu;
use crate::qemu_boards::{self, QemuBoard, M4F};
use crate::util::{describe, root, secs, to_stderr, work_dir};

/// The model `cargo xtask perplexity` scores by default (the project's own).
pub const DEFAULT_MODEL: &str = "models/rope";
/// The text it scores by default: from a held-out play, never trained on.
pub const DEFAULT_TEXT: &str = "models/text/sample.txt";
/// Relative difference within which two figures agree to 5 significant digits.
pub const FIVE_DIGITS: f64 = 5e-6;

/// What `cargo xtask perplexity` takes.
#[derive(Debug, Clone, Args)]
pub struct PerplexityArgs {
    /// A model directory (the project's own `models/<scheme>`) or checkpoint [default:
    /// models/rope]
    #[arg(long, value_name = "DIR|PATH")]
    model: Option<PathBuf>,
    /// The text to score [default: models/text/sample.txt, from a held-out play]
    #[arg(long, value_name = "FILE")]
    text: Option<PathBuf>,
    /// Positions per window (BOS + N − 1 tokens), at least 2
    #[arg(long, value_name = "N", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(2..))]
    window: u32,
    /// Weight storage of the converted image
    #[arg(long, value_enum, default_value_t = Quant::F32)]
    quant: Quant,
    /// KV cache format
    #[arg(long, value_enum, default_value_t = Kv::F32)]
    kv: Kv,
    /// The emulated core (`m4f`, `m33`, `m3`, or their core names)
    #[arg(long, default_value = M4F.short, value_parser = core)]
    core: &'static QemuBoard,
}

fn core(name: &str) -> Result<&'static QemuBoard, String> {
    qemu_boards::find(name)
        .filter(|b| b.fits_model)
        .ok_or_else(|| format!("no emulated core {name:?} with room for a model"))
}

/// `microformer perplexity --json`'s line, and the firmware's.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Figures {
    /// Predictions scored.
    pub tokens: u64,
    /// Windows scored.
    pub windows: u64,
    /// Positions per window.
    pub window: u64,
    /// Mean negative log-likelihood (nats).
    pub nll: f64,
    /// `exp(nll)`.
    pub perplexity: f64,
}

/// One measurement on both sides.
#[derive(Debug, Clone, Copy)]
pub struct Compared {
    /// The emulated core's figures.
    pub device: Figures,
    /// The host's.
    pub host: Figures,
}

impl Compared {
    /// The perplexities' relative difference.
    pub fn relative(&self) -> f64 {
        (self.device.perplexity - self.host.perplexity).abs() / self.host.perplexity.abs()
    }

    /// Same counts, and perplexities within [`FIVE_DIGITS`].
    pub fn agrees(&self) -> bool {
        self.device.tokens == self.host.tokens
            && self.device.windows == self.host.windows
            && self.relative() < FIVE_DIGITS
    }

    /// Whether both nll figures are the same f64.
    pub fn bit_identical(&self) -> bool {
        self.device.nll.to_bits() == self.host.nll.to_bits()
    }
}

/// The firmware's line: integers only, the mean nll as its f64 bit pattern.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
struct DeviceLine {
    tokens: u64,
    windows: u64,
    window: u64,
    nll_bits: u64,
}

/// The firmware's text: one JSON line of integers (`{"tokens", "windows", "window",
/// "nll_bits"}`), read back into figures (the perplexity is `exp(nll)`, as the library
/// computes it).
pub fn parse_figures(text: &[u8]) -> Result<Figures, String> {
    let text = std::str::from_utf8(text).map_err(|_| "the device's text is not UTF-8")?;
    let line: DeviceLine = serde_json::from_str(text.trim())
        .map_err(|e| format!("the device printed {text:?}, not a perplexity line: {e}"))?;
    let nll = f64::from_bits(line.nll_bits);
    Ok(Figures {
        tokens: line.tokens,
        windows: line.windows,
        window: line.window,
        nll,
        perplexity: libm::exp(nll),
    })
}

/// `microformer perplexity IMAGE --text TEXT --window N --kv KV --json` (release build).
pub fn host_figures(image: &Path, text: &Path, window: u32, kv: Kv) -> Result<Figures, String> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root())
        .args(["run", "--quiet", "--release", "-p", "microformer-cli", "--"])
        .arg("perplexity")
        .arg(image)
        .arg("--text")
        .arg(text)
        .args([
            "--window",
            &window.to_string(),
            "--kv",
            kv.as_str(),
            "--json",
        ])
        .stderr(to_stderr());
    eprintln!("xtask: $ {}", describe(&cmd));
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run microformer: {e}"))?;
    if !out.status.success() {
        return Err(format!("microformer perplexity failed ({})", out.status));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("microformer perplexity: {e}"))
}

/// Scores `text` with `image` at `window` on `board` (a firmware built with the text) and on
/// the host.
pub fn device_and_host(
    board: &QemuBoard,
    image: &Path,
    text: &Path,
    window: u32,
    kv: Kv,
) -> Result<Compared, String> {
    let elf = build_firmware_with_text(board, image, kv, Some(text))?;
    let cmdline = format!("perplexity={window} kv={}", kv.as_str());
    let run = run_qemu(board, &elf, &cmdline, true, false)?;
    let device = parse_figures(&run.text)?;
    let host = host_figures(image, text, window, kv)?;
    Ok(Compared { device, host })
}

/// Prints a comparison as the command and the stages report it.
pub fn report(what: &str, board: &QemuBoard, c: &Compared) {
    eprintln!(
        "xtask: perplexity of {what}, windows of {}: {} {:.6} ({} predictions, {} windows), host {:.6} ({} predictions): {}",
        c.host.window,
        board.short,
        c.device.perplexity,
        c.device.tokens,
        c.device.windows,
        c.host.perplexity,
        c.host.tokens,
        if c.bit_identical() {
            String::from("bit-identical")
        } else {
            format!("relative difference {:.1e}", c.relative())
        }
    );
}

/// `cargo xtask perplexity`.
pub fn perplexity(args: PerplexityArgs) -> Result<(), String> {
    let start = Instant::now();
    ensure_tools()?;
    let model = args.model.unwrap_or_else(|| root().join(DEFAULT_MODEL));
    let text = args.text.unwrap_or_else(|| root().join(DEFAULT_TEXT));
    let image = work_dir()?.join(format!("perplexity-{}.mfi", args.quant.as_str()));
    convert(&model, None, args.quant, &image)?;
    let c = device_and_host(args.core, &image, &text, args.window, args.kv)?;
    let what = format!(
        "{} ({}, kv {}) on {}",
        model.display(),
        args.quant.as_str(),
        args.kv.as_str(),
        text.display()
    );
    report(&what, args.core, &c);
    println!(
        "{{\"device\": {}, \"host\": {}, \"core\": \"{}\", \"relative\": {:e}, \"bit_identical\": {}}}",
        figures_json(&c.device),
        figures_json(&c.host),
        args.core.core,
        c.relative(),
        c.bit_identical()
    );
    eprintln!("xtask: perplexity done ({})", secs(start.elapsed()));
    if c.agrees() {
        Ok(())
    } else {
        Err(format!(
            "the device's perplexity differs from the host's beyond 5 significant digits \
             (relative {:.1e}, or different counts)",
            c.relative()
        ))
    }
}

/// Figures as `microformer perplexity --json` prints them.
fn figures_json(f: &Figures) -> String {
    format!(
        "{{\"tokens\": {}, \"windows\": {}, \"window\": {}, \"nll\": {}, \"perplexity\": {}}}",
        f.tokens, f.windows, f.window, f.nll, f.perplexity
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_line_parses_and_compares() {
        let line = format!(
            "{{\"tokens\": 1766, \"windows\": 4, \"window\": 512, \"nll_bits\": {}}}\n",
            2.5f64.to_bits()
        );
        let d = parse_figures(line.as_bytes()).unwrap();
        assert_eq!((d.tokens, d.windows, d.window, d.nll), (1766, 4, 512, 2.5));
        assert_eq!(d.perplexity, libm::exp(2.5));
        let c = Compared { device: d, host: d };
        assert!(c.agrees() && c.bit_identical() && c.relative() == 0.0);
        let mut h = d;
        h.perplexity *= 1.0 + 1e-5;
        h.nll += 1e-5;
        let c = Compared { device: d, host: h };
        assert!(!c.agrees() && !c.bit_identical());
        let mut h = d;
        h.tokens += 1;
        assert!(!Compared { device: d, host: h }.agrees());
        assert!(parse_figures(b"nonsense").is_err());
        assert!(
            parse_figures(figures_json(&d).as_bytes()).is_err(),
            "floats are not bits"
        );
    }
}
