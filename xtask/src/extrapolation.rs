//! `cargo xtask extrapolation [--write] [--quick] [--text FILE] [--bytes N] [--jobs N]`: the
//! length-extrapolation study of the project's own models (README.md, "Our own models, and
//! what happens past the training length"), as one command.
//!
//! - Models: the six of `models/` (`nope`, `sinusoidal`, `learned`, `rope`, `alibi`, `t5`,
//!   trained at 128 positions), and `rope` once more with each RoPE scaling rule the converter
//!   writes into an image (`--rope-scaling linear:F`, `dynamic:F`, `yarn:F`, F = 4 and 8; no
//!   fine-tuning). Each converted by the release host tool (`microformer convert`) with f32
//!   weights and with `--quant q8`.
//! - Text: the first 64 KiB of the held-out plays (`models/text/validation.txt`), cut back to
//!   the last line end, written into the work directory (`target/xtask/extrapolation/`).
//!   `--text FILE` and `--bytes N` choose another slice; `--quick` takes 8 KiB and f32 only
//!   (a smoke run).
//! - Figures: `microformer perplexity IMAGE --text SLICE --window N --json` for N = 64, 128,
//!   256, 512, 1024 (non-overlapping windows of BOS + N − 1 tokens), `--jobs` runs at a time
//!   (default 2: the machine has 2 cores). A window past an image's context is refused by the
//!   tool (exit 2): that is expected of `learned` alone (its position table has 128 rows),
//!   recorded with the tool's reason and shown as "—"; any other failure fails the command.
//! - Check: Press et al. 2022 (Figure 1) find ALiBi holding or improving past its training
//!   length; an ALiBi figure at 512 (4×) more than 15 % above its 128 figure is printed as a
//!   warning (it would point at a bug, not at the scheme).
//!
//! Output: the tables on stdout. `--write` also writes `docs/extrapolation.json` (every figure,
//! the slice, the token count, the command and its wall time), `docs/extrapolation.md` (the
//! tables), `docs/extrapolation.png` (perplexity against window, log scales, drawn with
//! plotters) and README.md's table between its `<!-- extrapolation:begin -->` and
//! `<!-- extrapolation:end -->` markers.
//!
//! The 512 column is also measured on the emulated Cortex-M4F (`m4f_512`), for the f32 image
//! of every scheme that has a position 511 (all but `learned`): the firmware built with the
//! slice's tokens (`MICROFORMER_TEXT`) scores them with `perplexity=512` under QEMU
//! (`perplexity.rs`), and its figure must equal the host's to 5 significant digits (the
//! command fails otherwise; they are bit-identical). `--no-device` skips it (and `--quick`
//! does); the column is left out of the tables when no row has it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::firmware::{build_firmware_with_text, Kv, Quant};
use crate::install::ensure_tools;
use crate::perplexity;
use crate::qemu::run_qemu;
use crate::qemu_boards::M4F;
use crate::util::{describe, root, run_cmd, secs, to_stderr, work_dir};

/// Positions the models were trained at.
const TRAINING_LENGTH: u64 = 128;
/// The windows measured.
const WINDOWS: [u64; 5] = [64, 128, 256, 512, 1024];
/// The position schemes of `models/`, in the tables' order.
const SCHEMES: [&str; 6] = ["nope", "sinusoidal", "learned", "rope", "alibi", "t5"];
/// The RoPE scaling rules (`convert --rope-scaling RULE:F`) and their factors.
const RULES: [&str; 3] = ["linear", "dynamic", "yarn"];
const FACTORS: [u32; 2] = [4, 8];
/// README.md's generated block lies between these lines.
const BEGIN: &str = "<!-- extrapolation:begin -->";
const END: &str = "<!-- extrapolation:end -->";
/// The default text, and how much of it.
const DEFAULT_TEXT: &str = "models/text/validation.txt";
const DEFAULT_BYTES: usize = 64 * 1024;
const QUICK_BYTES: usize = 8 * 1024;
/// ALiBi's perplexity at 4× the training length above this multiple of its figure at the
/// training length is printed as a warning.
const ALIBI_TOLERANCE: f64 = 1.15;
/// What `microformer perplexity` says when a window passes the image's context (exit 2).
const REFUSAL: &str = "exceeds the image's context";

/// What `cargo xtask extrapolation` takes.
#[derive(Debug, Clone, Args)]
pub struct ExtrapolationArgs {
    /// Also write docs/extrapolation.{json,md,png} and README.md's table (between its
    /// `<!-- extrapolation:begin -->` and `<!-- extrapolation:end -->` markers)
    #[arg(long, conflicts_with = "quick")]
    write: bool,
    /// A smoke run: the first 8 KiB of the text, f32 images only
    #[arg(long)]
    quick: bool,
    /// The text to score [default: models/text/validation.txt, the held-out plays]
    #[arg(long, value_name = "FILE")]
    text: Option<PathBuf>,
    /// How much of the text: its first N bytes, cut back to the last line end [default: 65536;
    /// 8192 with --quick]
    #[arg(long, value_name = "N")]
    bytes: Option<usize>,
    /// Perplexity runs at a time
    #[arg(long, value_name = "N", default_value_t = 2)]
    jobs: usize,
    /// Skip the 512 column on the emulated Cortex-M4F (QEMU)
    #[arg(long)]
    no_device: bool,
}

/// A model as measured: one of `models/`, with a RoPE scaling rule or without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Variant {
    model: &'static str,
    /// `(rule, factor)` for `convert --rope-scaling rule:factor`.
    scaling: Option<(&'static str, u32)>,
}

impl Variant {
    /// `rope`, `rope+yarn:4`.
    fn label(&self) -> String {
        match self.scaling {
            None => self.model.to_owned(),
            Some((rule, f)) => format!("{}+{rule}:{f}", self.model),
        }
    }

    /// `yarn:4`, as `convert --rope-scaling` takes it.
    fn scaling_arg(&self) -> Option<String> {
        self.scaling.map(|(rule, f)| format!("{rule}:{f}"))
    }
}

/// The models measured, in the tables' order: the six schemes, then `rope` with each scaling
/// rule (by rule, then factor).
fn variants() -> Vec<Variant> {
    let mut v: Vec<Variant> = SCHEMES
        .iter()
        .map(|&model| Variant {
            model,
            scaling: None,
        })
        .collect();
    for rule in RULES {
        for f in FACTORS {
            v.push(Variant {
                model: "rope",
                scaling: Some((rule, f)),
            });
        }
    }
    v
}

/// One `microformer perplexity --json` line.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
struct Figure {
    tokens: u64,
    windows: u64,
    window: u64,
    nll: f64,
    perplexity: f64,
}

/// A cell of the tables: a figure, or the tool's refusal of the window.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Measured(Figure),
    /// `perplexity` refused the window (exit 2): its reason.
    Refused(String),
}

impl Cell {
    fn perplexity(&self) -> Option<f64> {
        match self {
            Cell::Measured(f) => Some(f.perplexity),
            Cell::Refused(_) => None,
        }
    }
}

/// One image's figures.
#[derive(Debug, Clone)]
struct Row {
    variant: Variant,
    quant: Quant,
    /// The converter's agreement check of a q8 image against the f32 one, as it printed it.
    check: Option<String>,
    /// One per window of [`WINDOWS`], in order.
    cells: Vec<Cell>,
    /// Perplexity at window 512 on the emulated Cortex-M4F (f32 images of the six schemes),
    /// equal to the host's cell to 5 significant digits; its column appears in the tables
    /// once a row has it.
    m4f_512: Option<f64>,
}

impl Row {
    fn cell(&self, window: u64) -> Option<&Cell> {
        WINDOWS
            .iter()
            .position(|&w| w == window)
            .and_then(|i| self.cells.get(i))
    }

    fn perplexity(&self, window: u64) -> Option<f64> {
        self.cell(window).and_then(Cell::perplexity)
    }
}

/// The text scored: the first bytes of a file, cut back to a line end.
#[derive(Debug, Clone)]
struct Slice {
    /// The file, relative to the repository when inside it.
    file: String,
    /// Bytes asked for (`--bytes`).
    requested: usize,
    /// Bytes kept.
    bytes: usize,
    /// Lines kept (the last one ends with its line end).
    lines: usize,
    /// Where the slice was written.
    path: PathBuf,
}

impl Slice {
    /// `the first 65,526 bytes of `models/text/validation.txt` (lines 1–1,234; its first
    /// 65,536 bytes cut back to the last line end)`.
    fn describe(&self) -> String {
        if self.bytes < self.requested {
            format!(
                "the first {} bytes of `{}` (lines 1–{}; its first {} bytes cut back to the last \
                 line end)",
                grouped(self.bytes as u64),
                self.file,
                grouped(self.lines as u64),
                grouped(self.requested as u64)
            )
        } else {
            format!(
                "all of `{}` ({} bytes, {} lines)",
                self.file,
                grouped(self.bytes as u64),
                grouped(self.lines as u64)
            )
        }
    }
}

/// How many bytes of `data` a slice of at most `max` bytes keeps: all of it when it fits,
/// else up to and including the last `\n` within `max` bytes (without one, the longest valid
/// UTF-8 prefix).
fn slice_len(data: &[u8], max: usize) -> usize {
    if data.len() <= max {
        return data.len();
    }
    let head = &data[..max];
    match head.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None => match std::str::from_utf8(head) {
            Ok(_) => max,
            Err(e) => e.valid_up_to(),
        },
    }
}

/// `37688` → `37,688`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration as the tables print it: `48.2 s`, `12.4 min`.
fn duration_text(d: Duration) -> String {
    if d.as_secs_f64() < 120.0 {
        secs(d)
    } else {
        format!("{:.1} min", d.as_secs_f64() / 60.0)
    }
}

/// `cargo xtask extrapolation`.
pub fn extrapolation(args: ExtrapolationArgs) -> Result<(), String> {
    let start = Instant::now();
    let root = root();
    let work = work_dir()?.join("extrapolation");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;

    // The text slice.
    let text_file = args.text.clone().unwrap_or_else(|| root.join(DEFAULT_TEXT));
    let requested = args.bytes.unwrap_or(if args.quick {
        QUICK_BYTES
    } else {
        DEFAULT_BYTES
    });
    let data = std::fs::read(&text_file).map_err(|e| format!("{}: {e}", text_file.display()))?;
    let len = slice_len(&data, requested);
    if len == 0 {
        return Err(format!(
            "{}: no text in its first {requested} bytes",
            text_file.display()
        ));
    }
    let slice = Slice {
        file: text_file
            .canonicalize()
            .ok()
            .and_then(|p| {
                let r = root.canonicalize().ok()?;
                p.strip_prefix(r).ok().map(|p| p.display().to_string())
            })
            .unwrap_or_else(|| text_file.display().to_string()),
        requested,
        bytes: len,
        lines: data[..len].split_inclusive(|&b| b == b'\n').count(),
        path: work.join("text.txt"),
    };
    std::fs::write(&slice.path, &data[..len])
        .map_err(|e| format!("{}: {e}", slice.path.display()))?;
    eprintln!("xtask: extrapolation: scoring {}", slice.describe());

    // The release host tool, copied so that a rebuild elsewhere cannot change it mid-run.
    let cli = build_cli(&work)?;

    // The images.
    let quants: &[Quant] = if args.quick {
        &[Quant::F32]
    } else {
        &[Quant::F32, Quant::Q8]
    };
    let mut rows = Vec::new();
    let mut images = Vec::new();
    for variant in variants() {
        for &quant in quants {
            let image = work.join(format!("{}-{}.mfi", variant.label(), quant.as_str()));
            let check = convert(&cli, variant, quant, &image)?;
            rows.push(Row {
                variant,
                quant,
                check,
                cells: Vec::new(),
                m4f_512: None,
            });
            images.push(image);
        }
    }

    // The figures: every (image, window), longest windows first (they take longest).
    let mut jobs: Vec<(usize, u64)> = Vec::new();
    for &w in WINDOWS.iter().rev() {
        for r in 0..rows.len() {
            jobs.push((r, w));
        }
    }
    let jobs_at_once = args.jobs.max(1);
    eprintln!(
        "xtask: extrapolation: {} perplexity runs, {jobs_at_once} at a time",
        jobs.len()
    );
    let cells = parallel(&jobs, jobs_at_once, |&(r, window)| {
        let t = Instant::now();
        let row = &rows[r];
        let cell = measure(&cli, &images[r], &slice.path, window, row.variant.model)?;
        eprintln!(
            "xtask: extrapolation: {} {} window {window}: {} ({})",
            row.variant.label(),
            row.quant.as_str(),
            match &cell {
                Cell::Measured(f) => format!("{:.4}", f.perplexity),
                Cell::Refused(_) => "refused".to_owned(),
            },
            secs(t.elapsed())
        );
        Ok(cell)
    })?;
    for (&(r, window), cell) in jobs.iter().zip(cells) {
        let i = WINDOWS.iter().position(|&w| w == window).unwrap_or(0);
        let row = &mut rows[r];
        if row.cells.len() < WINDOWS.len() {
            row.cells = vec![Cell::Refused(String::new()); WINDOWS.len()];
        }
        row.cells[i] = cell;
    }
    if !(args.quick || args.no_device) {
        device_column(&mut rows, &images, &slice.path)?;
    }
    let tokens = token_count(&rows)?;
    let wall = start.elapsed();
    eprintln!("xtask: extrapolation done ({})", secs(wall));

    let warnings = alibi_check(&rows);
    for w in &warnings {
        eprintln!("xtask: warning: {w}");
    }
    let study = Study {
        rows,
        slice,
        tokens,
        command: command_line(),
        wall,
        jobs: jobs_at_once,
        runs: jobs.len(),
        warnings,
    };
    if args.write {
        let docs = root.join("docs");
        std::fs::create_dir_all(&docs).map_err(|e| format!("{}: {e}", docs.display()))?;
        let json_path = docs.join("extrapolation.json");
        write_file(&json_path, &(study.json()? + "\n"))?;
        write_file(&docs.join("extrapolation.md"), &study.docs_markdown())?;
        let png = docs.join("extrapolation.png");
        plot(&study, &png)?;
        eprintln!("xtask: wrote {}", png.display());
        let readme_path = root.join("README.md");
        let readme = std::fs::read_to_string(&readme_path)
            .map_err(|e| format!("{}: {e}", readme_path.display()))?;
        let updated = replace_block(&readme, &study.readme_block())
            .map_err(|e| format!("{}: {e}", readme_path.display()))?;
        write_file(&readme_path, &updated)?;
    }
    print!("{}", study.tables());
    Ok(())
}

/// The 512 column on the emulated Cortex-M4F: for each f32 row without a scaling rule whose
/// host cell at 512 was measured, the firmware with the image and the slice's tokens scores
/// them (`perplexity=512`); the figure must equal the host's to 5 significant digits.
fn device_column(rows: &mut [Row], images: &[PathBuf], text: &Path) -> Result<(), String> {
    ensure_tools()?;
    for (row, image) in rows.iter_mut().zip(images) {
        if row.quant != Quant::F32 || row.variant.scaling.is_some() {
            continue;
        }
        let Some(Cell::Measured(host)) = row.cell(512).cloned() else {
            continue;
        };
        let t = Instant::now();
        let elf = build_firmware_with_text(M4F, image, Kv::F32, Some(text))?;
        let run = run_qemu(M4F, &elf, "perplexity=512", true, false)?;
        let device = perplexity::parse_figures(&run.text)?;
        let host = perplexity::Figures {
            tokens: host.tokens,
            windows: host.windows,
            window: host.window,
            nll: host.nll,
            perplexity: host.perplexity,
        };
        let c = perplexity::Compared { device, host };
        perplexity::report(&row.variant.label(), M4F, &c);
        eprintln!(
            "xtask: extrapolation: {} on the M4F ({})",
            row.variant.label(),
            secs(t.elapsed())
        );
        if !c.agrees() {
            return Err(format!(
                "{}: the M4F's perplexity at 512 ({}) differs from the host's ({})",
                row.variant.label(),
                c.device.perplexity,
                c.host.perplexity
            ));
        }
        row.m4f_512 = Some(c.device.perplexity);
    }
    Ok(())
}

/// Writes a file, saying so on stderr.
fn write_file(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}

/// This command as typed: `cargo xtask extrapolation --write`.
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("cargo xtask {}", args.join(" "))
}

/// Builds the release host tool and copies it into `work` (`work/microformer`).
fn build_cli(work: &Path) -> Result<PathBuf, String> {
    run_cmd(
        Command::new("cargo")
            .current_dir(root())
            .args(["build", "--release", "--quiet", "-p", "microformer-cli"])
            .stdout(to_stderr()),
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let built = target
        .join("release")
        .join(format!("microformer{}", std::env::consts::EXE_SUFFIX));
    let copy = work.join(format!("microformer{}", std::env::consts::EXE_SUFFIX));
    std::fs::copy(&built, &copy).map_err(|e| format!("{}: {e}", built.display()))?;
    Ok(copy)
}

/// Converts `models/<model>` into `out` (`quant` weights, the variant's RoPE scaling);
/// returns the converter's agreement check line of a q8 image.
fn convert(
    cli: &Path,
    variant: Variant,
    quant: Quant,
    out: &Path,
) -> Result<Option<String>, String> {
    let mut cmd = Command::new(cli);
    cmd.current_dir(root())
        .arg("convert")
        .arg(Path::new("models").join(variant.model))
        .arg("-o")
        .arg(out)
        .args(["--quant", quant.as_str()]);
    if let Some(s) = variant.scaling_arg() {
        cmd.args(["--rope-scaling", &s]);
    }
    let line = describe(&cmd);
    let output = cmd
        .output()
        .map_err(|e| format!("cannot start `{line}`: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!(
            "`{line}` failed ({}): {}",
            output.status,
            stderr.trim()
        ));
    }
    let check = stderr
        .lines()
        .find_map(|l| l.strip_prefix("microformer: check: "))
        .map(str::to_owned);
    eprintln!(
        "xtask: extrapolation: converted {} {}{}",
        variant.label(),
        quant.as_str(),
        check
            .as_deref()
            .map(|c| format!(": {c}"))
            .unwrap_or_default()
    );
    Ok(check)
}

/// `models/<model>/config.json`'s `max_position_embeddings`: the image's positions.
fn max_positions(model: &str) -> Result<u64, String> {
    let path = root().join("models").join(model).join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    v["max_position_embeddings"]
        .as_u64()
        .ok_or_else(|| format!("{}: no max_position_embeddings", path.display()))
}

/// One `perplexity --json` run. A refusal is a cell only where it is due: exit 2 with the
/// tool's context message, for a window past the model's positions; any other failure is an
/// error.
fn measure(
    cli: &Path,
    image: &Path,
    text: &Path,
    window: u64,
    model: &str,
) -> Result<Cell, String> {
    let mut cmd = Command::new(cli);
    cmd.current_dir(root())
        .arg("perplexity")
        .arg(image)
        .arg("--text")
        .arg(text)
        .args(["--window", &window.to_string(), "--json"]);
    let line = describe(&cmd);
    let output = cmd
        .output()
        .map_err(|e| format!("cannot start `{line}`: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if output.status.success() {
        let figure: Figure = serde_json::from_str(stdout.trim())
            .map_err(|e| format!("`{line}` printed {stdout:?}: {e}"))?;
        if figure.window != window {
            return Err(format!("`{line}` measured window {}", figure.window));
        }
        return Ok(Cell::Measured(figure));
    }
    if output.status.code() == Some(2) && stderr.contains(REFUSAL) && window > max_positions(model)?
    {
        let reason = stderr
            .trim()
            .trim_start_matches("microformer: error: ")
            .to_owned();
        return Ok(Cell::Refused(reason));
    }
    Err(format!(
        "`{line}` failed ({}): {}",
        output.status,
        stderr.trim()
    ))
}

/// Runs `f` over `items`, `threads` at a time; the results in `items`' order. The first
/// error stops starting new items and is returned once the running ones end.
fn parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<R, String> + Sync,
) -> Result<Vec<R>, String> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    let error: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, items.len().max(1)) {
            s.spawn(|| loop {
                if failed.load(Ordering::SeqCst) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = items.get(i) else { break };
                match f(item) {
                    Ok(r) => results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r),
                    Err(e) => {
                        failed.store(true, Ordering::SeqCst);
                        error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(e);
                    }
                }
            });
        }
    });
    if let Some(e) = error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.ok_or_else(|| "a run produced no result".to_owned()))
        .collect()
}

/// The tokens scored: the same for every figure (all images share the tokenizer).
fn token_count(rows: &[Row]) -> Result<u64, String> {
    let mut counts: Vec<u64> = rows
        .iter()
        .flat_map(|r| &r.cells)
        .filter_map(|c| match c {
            Cell::Measured(f) => Some(f.tokens),
            Cell::Refused(_) => None,
        })
        .collect();
    counts.sort_unstable();
    counts.dedup();
    match counts[..] {
        [n] => Ok(n),
        [] => Err("no figure was measured".to_owned()),
        _ => Err(format!(
            "the runs scored different token counts: {counts:?}"
        )),
    }
}

/// The literature's check: ALiBi at 4× the training length within [`ALIBI_TOLERANCE`] of its
/// figure at the training length.
fn alibi_check(rows: &[Row]) -> Vec<String> {
    let at = 4 * TRAINING_LENGTH;
    rows.iter()
        .filter(|r| r.variant.model == "alibi" && r.variant.scaling.is_none())
        .filter_map(|r| {
            let (base, far) = (r.perplexity(TRAINING_LENGTH)?, r.perplexity(at)?);
            (far > ALIBI_TOLERANCE * base).then(|| {
                format!(
                    "alibi {}: perplexity {far:.2} at window {at} is {:.0} % above its {base:.2} at \
                     {TRAINING_LENGTH} (more than {:.0} %); Press et al. 2022 find ALiBi holding \
                     past its training length: a bug?",
                    r.quant.as_str(),
                    100.0 * (far / base - 1.0),
                    100.0 * (ALIBI_TOLERANCE - 1.0)
                )
            })
        })
        .collect()
}

/// A figure as the tables print it.
fn num(x: f64) -> String {
    format!("{x:.2}")
}

/// A cell as the tables print it: the figure, or "—".
fn cell_text(cell: Option<&Cell>) -> String {
    cell.and_then(Cell::perplexity)
        .map_or_else(|| "—".to_owned(), num)
}

/// The header of a window column.
fn window_header(w: u64) -> String {
    if w == TRAINING_LENGTH {
        format!("{w} (training length)")
    } else {
        w.to_string()
    }
}

/// The device column's header.
const M4F_HEADER: &str = "512 on the emulated Cortex-M4F";

/// One Markdown table of `rows`: a row each, a column per window (and the device column
/// when a row has its figure).
fn table(rows: &[&Row]) -> String {
    let device = rows.iter().any(|r| r.m4f_512.is_some());
    let mut header: Vec<String> = vec!["model".into()];
    header.extend(WINDOWS.iter().map(|&w| window_header(w)));
    if device {
        header.push(M4F_HEADER.into());
    }
    let mut s = format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for r in rows {
        let mut cells: Vec<String> = vec![format!("`{}`", r.variant.label())];
        cells.extend(WINDOWS.iter().map(|&w| cell_text(r.cell(w))));
        if device {
            cells.push(r.m4f_512.map_or_else(|| "—".to_owned(), num));
        }
        let _ = writeln!(s, "| {} |", cells.join(" | "));
    }
    s
}

/// One Markdown table with a row per model and `f32 / q8` in each cell (f32 alone when
/// no q8 row was measured).
fn paired_table(rows: &[Row]) -> String {
    let device = rows.iter().any(|r| r.m4f_512.is_some());
    let mut header: Vec<String> = vec!["model".into()];
    header.extend(WINDOWS.iter().map(|&w| window_header(w)));
    if device {
        header.push(M4F_HEADER.into());
    }
    let mut s = format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    let mut seen: Vec<Variant> = Vec::new();
    for r in rows {
        if seen.contains(&r.variant) {
            continue;
        }
        seen.push(r.variant);
        let of = |q: Quant| rows.iter().find(|x| x.variant == r.variant && x.quant == q);
        let pair = |get: &dyn Fn(&Row) -> String| -> String {
            let f32 = of(Quant::F32).map(get);
            let q8 = of(Quant::Q8).map(get);
            match (f32, q8) {
                (Some(a), Some(b)) if a == "—" && b == "—" => a,
                (Some(a), Some(b)) => format!("{a} / {b}"),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => "—".to_owned(),
            }
        };
        let mut cells: Vec<String> = vec![format!("`{}`", r.variant.label())];
        for &w in &WINDOWS {
            cells.push(pair(&|x: &Row| cell_text(x.cell(w))));
        }
        if device {
            cells.push(pair(&|x: &Row| {
                x.m4f_512.map_or_else(|| "—".to_owned(), num)
            }));
        }
        let _ = writeln!(s, "| {} |", cells.join(" | "));
    }
    s
}

/// How a figure past the training length compares with the one at it.
fn verdict(at_training: f64, past: f64) -> &'static str {
    let r = past / at_training;
    if r < 0.98 {
        "improves"
    } else if r <= 1.05 {
        "holds"
    } else if r <= 2.0 {
        "degrades"
    } else {
        "breaks"
    }
}

/// What the literature predicts for a variant (static text, with its sources).
fn literature(v: Variant) -> &'static str {
    match (v.model, v.scaling) {
        ("nope", None) => {
            "no explicit positions: a causal LM infers them from the mask (Haviv et al. 2022); \
             NoPE length-generalises on small synthetic tasks (Kazemnejad et al. 2023), \
             no prediction for LM perplexity"
        }
        ("sinusoidal", None) => "breaks as soon as the window passes the training length (Press et al. 2022, Fig. 1)",
        ("learned", None) => "cannot extrapolate: the table has no row past the training length",
        ("rope", None) => "extrapolates a little past the training length, then degrades (Press et al. 2022, Fig. 1)",
        ("alibi", None) => "holds or improves far past the training length (Press et al. 2022, Fig. 1)",
        ("t5", None) => "holds or improves past the training length (Press et al. 2022, Fig. 1)",
        (_, Some(("linear", _))) => {
            "position interpolation (Chen et al. 2023): positions divided by F, meant to be \
             followed by fine-tuning (~1000 steps); without it every window, short ones too, \
             sees positions it was not trained on"
        }
        (_, Some(("dynamic", _))) => {
            "NTK-aware scaling (bloc97 2023; dynamic: the base grows with the length): meant to \
             need little or no fine-tuning at moderate F; here fixed for the image's \
             1024-position context, so short windows change too"
        }
        (_, Some(("yarn", _))) => {
            "YaRN (Peng et al. 2023): high frequencies kept, low ones interpolated, attention \
             temperature; meant to be fine-tuned (~0.1 % of the pretraining data), built to \
             disturb short windows least"
        }
        _ => "",
    }
}

/// What the f32 figures of a variant show past the training length, in words and figures.
fn measured(rows: &[Row], v: Variant) -> String {
    let Some(row) = rows
        .iter()
        .find(|r| r.variant == v && r.quant == Quant::F32)
        .or_else(|| rows.iter().find(|r| r.variant == v))
    else {
        return "—".into();
    };
    let Some(base) = row.perplexity(TRAINING_LENGTH) else {
        return "—".into();
    };
    let past: Vec<u64> = WINDOWS
        .iter()
        .copied()
        .filter(|&w| w > TRAINING_LENGTH)
        .collect();
    let figures: Vec<(u64, f64)> = past
        .iter()
        .filter_map(|&w| row.perplexity(w).map(|p| (w, p)))
        .collect();
    if figures.is_empty() {
        return "no window past 128: `perplexity` refuses it (exit 2)".into();
    }
    // Runs of equal verdicts: "holds at 2×, breaks at 4×–8×".
    let mut runs: Vec<(&str, u64, u64)> = Vec::new();
    for &(w, p) in &figures {
        let word = verdict(base, p);
        let m = w / TRAINING_LENGTH;
        match runs.last_mut() {
            Some((last, _, to)) if *last == word => *to = m,
            _ => runs.push((word, m, m)),
        }
    }
    let words: Vec<String> = runs
        .iter()
        .map(|&(word, from, to)| {
            if from == to {
                format!("{word} at {from}×")
            } else {
                format!("{word} at {from}×–{to}×")
            }
        })
        .collect();
    let values: Vec<String> = figures.iter().map(|&(_, p)| num(p)).collect();
    format!(
        "{} ({} → {})",
        words.join(", "),
        num(base),
        values.join(", ")
    )
}

/// What the f32 figures of `rope` with a scaling rule show, against plain RoPE: the cost
/// inside the training length, the change at the longest window.
fn measured_rule(rows: &[Row], rule: &'static str) -> String {
    let f32 = |v: Variant| {
        rows.iter()
            .find(|r| r.variant == v && r.quant == Quant::F32)
            .or_else(|| rows.iter().find(|r| r.variant == v))
    };
    let longest = WINDOWS[WINDOWS.len() - 1];
    let at = |w: u64| {
        let mut parts: Vec<String> = FACTORS
            .iter()
            .filter_map(|&f| {
                let row = f32(Variant {
                    model: "rope",
                    scaling: Some((rule, f)),
                })?;
                Some(format!(
                    "{} (×{f})",
                    row.perplexity(w).map_or_else(|| "—".to_owned(), num)
                ))
            })
            .collect();
        let plain = Variant {
            model: "rope",
            scaling: None,
        };
        if let Some(p) = f32(plain).and_then(|r| r.perplexity(w)) {
            parts.push(format!("unscaled {}", num(p)));
        }
        format!("at {w}: {}", parts.join(", "))
    };
    format!("{}; {}", at(TRAINING_LENGTH), at(longest))
}

/// The literature beside the measurements: a row per scheme, a row per RoPE scaling rule.
fn literature_table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| model | the literature predicts | measured (f32 weights) |\n|---|---|---|\n",
    );
    let mut seen: Vec<String> = Vec::new();
    for r in rows {
        let (label, measured) = match r.variant.scaling {
            None => (r.variant.label(), measured(rows, r.variant)),
            Some((rule, _)) => (
                format!("{}+{rule}:F", r.variant.model),
                measured_rule(rows, rule),
            ),
        };
        if seen.contains(&label) {
            continue;
        }
        seen.push(label.clone());
        let _ = writeln!(s, "| `{label}` | {} | {measured} |", literature(r.variant));
    }
    s
}

/// The whole study, as measured.
struct Study {
    rows: Vec<Row>,
    slice: Slice,
    tokens: u64,
    command: String,
    wall: Duration,
    jobs: usize,
    runs: usize,
    warnings: Vec<String>,
}

/// `docs/extrapolation.json`.
#[derive(Debug, Serialize)]
struct JsonStudy {
    command: String,
    wall_seconds: f64,
    jobs: usize,
    perplexity_runs: usize,
    text: JsonText,
    tokens: u64,
    training_length: u64,
    windows: Vec<u64>,
    commands: JsonCommands,
    rows: Vec<JsonRow>,
    warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
struct JsonText {
    file: String,
    requested_bytes: usize,
    bytes: usize,
    lines: usize,
    description: String,
}

#[derive(Debug, Serialize)]
struct JsonCommands {
    convert: &'static str,
    perplexity: &'static str,
}

#[derive(Debug, Serialize)]
struct JsonRow {
    label: String,
    model: &'static str,
    rope_scaling: Option<String>,
    quant: &'static str,
    convert_check: Option<String>,
    figures: Vec<JsonFigure>,
    /// Perplexity at window 512 on the emulated Cortex-M4F (null: not measured).
    m4f_512_perplexity: Option<f64>,
}

#[derive(Debug, Serialize)]
struct JsonFigure {
    window: u64,
    perplexity: Option<f64>,
    nll: Option<f64>,
    windows: Option<u64>,
    refused: Option<String>,
}

impl Study {
    fn json(&self) -> Result<String, String> {
        let rows = self
            .rows
            .iter()
            .map(|r| JsonRow {
                label: r.variant.label(),
                model: r.variant.model,
                rope_scaling: r.variant.scaling_arg(),
                quant: r.quant.as_str(),
                convert_check: r.check.clone(),
                figures: WINDOWS
                    .iter()
                    .zip(&r.cells)
                    .map(|(&window, c)| match c {
                        Cell::Measured(f) => JsonFigure {
                            window,
                            perplexity: Some(f.perplexity),
                            nll: Some(f.nll),
                            windows: Some(f.windows),
                            refused: None,
                        },
                        Cell::Refused(why) => JsonFigure {
                            window,
                            perplexity: None,
                            nll: None,
                            windows: None,
                            refused: Some(why.clone()),
                        },
                    })
                    .collect(),
                m4f_512_perplexity: r.m4f_512,
            })
            .collect();
        let study = JsonStudy {
            command: self.command.clone(),
            wall_seconds: (self.wall.as_secs_f64() * 10.0).round() / 10.0,
            jobs: self.jobs,
            perplexity_runs: self.runs,
            text: JsonText {
                file: self.slice.file.clone(),
                requested_bytes: self.slice.requested,
                bytes: self.slice.bytes,
                lines: self.slice.lines,
                description: self.slice.describe(),
            },
            tokens: self.tokens,
            training_length: TRAINING_LENGTH,
            windows: WINDOWS.to_vec(),
            commands: JsonCommands {
                convert: "microformer convert models/MODEL -o IMAGE --quant QUANT [--rope-scaling RULE:F]",
                perplexity: "microformer perplexity IMAGE --text SLICE --window N --json",
            },
            rows,
            warnings: self.warnings.clone(),
        };
        serde_json::to_string_pretty(&study).map_err(|e| format!("cannot write the figures: {e}"))
    }

    /// What was scored, in one sentence.
    fn scored(&self) -> String {
        let plays = if self.slice.file == DEFAULT_TEXT {
            "the held-out plays, "
        } else {
            ""
        };
        format!(
            "Perplexity on the host by window length (`microformer perplexity --window N`: \
             non-overlapping windows of BOS + N − 1 tokens) over {plays}{}: {} tokens. RoPE \
             scaling is applied at conversion (`convert --rope-scaling RULE:F`) without \
             fine-tuning; `dynamic` is computed once for the image's 1024-position context, so \
             it also changes short windows.",
            self.slice.describe(),
            grouped(self.tokens)
        )
    }

    /// Why the "—" cells are empty, and which cells are not measured.
    fn notes(&self) -> String {
        let mut s = String::new();
        let refused: Vec<(String, String)> = self
            .rows
            .iter()
            .filter_map(|r| {
                r.cells.iter().find_map(|c| match c {
                    Cell::Refused(why) => Some((r.variant.label(), why.clone())),
                    Cell::Measured(_) => None,
                })
            })
            .fold(Vec::new(), |mut v, (label, why)| {
                if !v.iter().any(|(l, _)| *l == label) {
                    v.push((label, why));
                }
                v
            });
        for (label, why) in refused {
            let _ = write!(
                s,
                "— for `{label}`: `perplexity` refuses the window (exit 2: \"{why}\"). "
            );
        }
        if self.rows.iter().any(|r| r.m4f_512.is_some()) {
            s.push_str(
                "The last column is the f32 image's window-512 figure measured on the emulated \
                 Cortex-M4F (QEMU `mps2-an386`: the firmware's perplexity mode over the same \
                 tokens), equal to the host's (the command checks 5 significant digits; the mean \
                 log-likelihoods are the same f64). ",
            );
        } else {
            s.push_str("Window 512 on the emulated Cortex-M4F: not measured in this run. ");
        }
        s.trim_end().to_owned()
    }

    /// How long it took.
    fn timing(&self) -> String {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        format!(
            "Measured by `{}` in {} ({} perplexity runs, {} at a time, on a {cores}-core host).",
            self.command,
            duration_text(self.wall),
            self.runs,
            self.jobs
        )
    }

    /// The tables stdout shows: one per weight format, and the literature beside them.
    fn tables(&self) -> String {
        let mut s = format!("{}\n\n", self.scored());
        for q in [Quant::F32, Quant::Q8] {
            let rows: Vec<&Row> = self.rows.iter().filter(|r| r.quant == q).collect();
            if rows.is_empty() {
                continue;
            }
            let _ = write!(s, "{} weights:\n\n{}\n", q.as_str(), table(&rows));
        }
        let _ = write!(s, "{}\n\n{}\n", self.notes(), literature_table(&self.rows));
        for w in &self.warnings {
            let _ = writeln!(s, "**Warning:** {w}\n");
        }
        let _ = writeln!(s, "{}", self.timing());
        s
    }

    /// `docs/extrapolation.md`.
    fn docs_markdown(&self) -> String {
        let mut s = String::from(
            "# Length extrapolation\n\nWritten by `cargo xtask extrapolation --write` (see \
             README.md, \"Our own models, and what happens past the training length\"); do not \
             edit. Every figure, with its window count, is in `extrapolation.json`.\n\n\
             ![Perplexity by window](extrapolation.png)\n\n",
        );
        s.push_str(&self.tables());
        let checks: Vec<String> = self
            .rows
            .iter()
            .filter_map(|r| {
                r.check
                    .as_ref()
                    .map(|c| format!("- `{}` {}: {c}", r.variant.label(), r.quant.as_str()))
            })
            .collect();
        if !checks.is_empty() {
            let _ = write!(
                s,
                "\nThe converter's check of each q8 image against its f32 image:\n\n{}\n",
                checks.join("\n")
            );
        }
        s
    }

    /// README.md's block, between the markers.
    fn readme_block(&self) -> String {
        let mut s = String::from(
            "<!-- Written by `cargo xtask extrapolation --write`: do not edit down to the end marker. -->\n",
        );
        let formats = if self.rows.iter().any(|r| r.quant == Quant::Q8) {
            "Each cell: f32 / q8 weights (`convert --quant q8`)."
        } else {
            "f32 weights."
        };
        let _ = write!(
            s,
            "{} {formats}\n\n{}\n{}\n\n![Perplexity by window, log scales](docs/extrapolation.png)\n\n",
            self.scored(),
            paired_table(&self.rows),
            self.notes()
        );
        let _ = writeln!(s, "{}", literature_table(&self.rows));
        for w in &self.warnings {
            let _ = writeln!(s, "**Warning:** {w}\n");
        }
        let _ = writeln!(
            s,
            "{} Every figure, the slice and the window counts: \
             [`docs/extrapolation.json`](docs/extrapolation.json); the f32 and q8 tables apart: \
             [`docs/extrapolation.md`](docs/extrapolation.md).",
            self.timing()
        );
        s
    }
}

/// `text` with the lines between its [`BEGIN`] and [`END`] marker lines replaced by `inner`
/// (the markers kept). Missing, repeated or misordered markers are an error.
fn replace_block(text: &str, inner: &str) -> Result<String, String> {
    let find = |marker: &str| -> Result<usize, String> {
        let mut at = text.match_indices(marker).map(|(i, _)| i);
        match (at.next(), at.next()) {
            (Some(i), None) => Ok(i),
            (None, _) => Err(format!("no {marker} line")),
            (Some(_), Some(_)) => Err(format!("{marker} appears more than once")),
        }
    };
    let begin = find(BEGIN)?;
    let end = find(END)?;
    if end < begin {
        return Err(format!("{END} comes before {BEGIN}"));
    }
    let after_begin = begin + BEGIN.len();
    let after_begin = text[after_begin..]
        .find('\n')
        .map_or(text.len(), |i| after_begin + i + 1);
    if after_begin > end {
        return Err(format!("{BEGIN} and {END} share a line"));
    }
    let mut inner = inner.to_owned();
    if !inner.is_empty() && !inner.ends_with('\n') {
        inner.push('\n');
    }
    Ok(format!("{}{inner}{}", &text[..after_begin], &text[end..]))
}

/// A line of the plot: its label, colour, whether dashed, its f32 and q8 points
/// (`(log2 window, perplexity)`).
struct Line {
    label: String,
    color: plotters::style::RGBColor,
    dashed: bool,
    f32: Vec<(f64, f64)>,
    q8: Vec<(f64, f64)>,
}

/// `docs/extrapolation.png`: perplexity against window (log scales), the schemes on the left,
/// RoPE's scaling rules on the right; the training length marked.
fn plot(study: &Study, path: &Path) -> Result<(), String> {
    use plotters::prelude::*;
    use plotters::style::RGBColor;

    plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| "cannot read the embedded DejaVu Sans font".to_owned())?;
    let color = |label: &str| -> RGBColor {
        match label {
            "nope" => RGBColor(127, 127, 127),
            "sinusoidal" => RGBColor(255, 127, 14),
            "learned" => RGBColor(140, 86, 75),
            "rope" => RGBColor(31, 119, 180),
            "alibi" => RGBColor(44, 160, 44),
            "t5" => RGBColor(148, 103, 189),
            "linear" => RGBColor(214, 39, 40),
            "dynamic" => RGBColor(255, 127, 14),
            "yarn" => RGBColor(44, 160, 44),
            _ => RGBColor(0, 0, 0),
        }
    };
    let points = |v: Variant, q: Quant| -> Vec<(f64, f64)> {
        study
            .rows
            .iter()
            .find(|r| r.variant == v && r.quant == q)
            .map(|r| {
                WINDOWS
                    .iter()
                    .filter_map(|&w| r.perplexity(w).map(|p| ((w as f64).log2(), p)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let line = |v: Variant| Line {
        label: v.label(),
        color: color(v.scaling.map_or(v.model, |(rule, _)| rule)),
        dashed: v.scaling.is_some_and(|(_, f)| f > 4),
        f32: points(v, Quant::F32),
        q8: points(v, Quant::Q8),
    };
    let all = variants();
    let schemes: Vec<Line> = all
        .iter()
        .filter(|v| v.scaling.is_none())
        .map(|&v| line(v))
        .collect();
    let rope: Vec<Line> = all
        .iter()
        .filter(|v| v.model == "rope")
        .map(|&v| line(v))
        .collect();
    let values = schemes
        .iter()
        .chain(&rope)
        .flat_map(|l| l.f32.iter().chain(&l.q8).map(|&(_, p)| p));
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), p| (lo.min(p), hi.max(p)));
    if lo > hi {
        return Err("nothing to plot".into());
    }
    let y = (lo / 1.15)..(hi * 1.4);

    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let area = BitMapBackend::new(path, (1600, 720)).into_drawing_area();
    area.fill(&WHITE).map_err(|e| err(&e))?;
    let (title, body) = area.split_vertically(64);
    title
        .draw(&Text::new(
            format!(
                "Perplexity by window: models trained at {TRAINING_LENGTH} positions, {} tokens of {}",
                grouped(study.tokens),
                study.slice.file
            ),
            (24, 12),
            ("sans-serif", 26).into_font(),
        ))
        .map_err(|e| err(&e))?;
    title
        .draw(&Text::new(
            "lines: f32 weights; rings: q8 weights; dashed: scaling factor 8; RoPE scaling without fine-tuning",
            (24, 42),
            ("sans-serif", 17).into_font().color(&RGBColor(80, 80, 80)),
        ))
        .map_err(|e| err(&e))?;
    let (left, right) = body.split_horizontally(800);
    // Labelled perplexities: the "nice" ones inside the range.
    let ticks: Vec<f64> = [
        10.0, 12.0, 15.0, 20.0, 30.0, 50.0, 70.0, 100.0, 150.0, 200.0, 300.0, 500.0, 700.0, 1000.0,
        1500.0, 2000.0, 3000.0, 5000.0, 7000.0, 10000.0,
    ]
    .into_iter()
    .filter(|t| y.contains(t))
    .collect();
    for (panel, caption, lines, legend_at) in [
        (
            &left,
            "Position schemes",
            &schemes,
            SeriesLabelPosition::UpperLeft,
        ),
        (
            &right,
            "RoPE and its scaling rules",
            &rope,
            SeriesLabelPosition::UpperRight,
        ),
    ] {
        let mut chart = ChartBuilder::on(panel)
            .caption(caption, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(
                5.8f64..10.2f64,
                y.clone().log_scale().with_key_points(ticks.clone()),
            )
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_labels(5)
            .x_label_formatter(&|x| format!("{}", 2f64.powf(*x).round()))
            .y_label_formatter(&|v| {
                if *v >= 100.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v}")
                }
            })
            .x_desc("window (tokens), log scale")
            .y_desc("perplexity, log scale")
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 16))
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(|e| err(&e))?;
        let train_x = (TRAINING_LENGTH as f64).log2();
        chart
            .draw_series(DashedLineSeries::new(
                vec![(train_x, y.start), (train_x, y.end)],
                8,
                6,
                BLACK.mix(0.5).stroke_width(2),
            ))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("training length {TRAINING_LENGTH}"),
                (train_x + 0.04, y.end / 1.12),
                ("sans-serif", 15).into_font(),
            )))
            .map_err(|e| err(&e))?;
        for l in lines.iter() {
            let style = l.color.stroke_width(3);
            let legend_color = l.color;
            if l.dashed {
                chart
                    .draw_series(DashedLineSeries::new(l.f32.clone(), 10, 6, style))
                    .map_err(|e| err(&e))?
                    .label(l.label.clone())
                    .legend(move |(x, y)| {
                        EmptyElement::at((x, y))
                            + PathElement::new(vec![(0, 0), (9, 0)], legend_color.stroke_width(3))
                            + PathElement::new(vec![(14, 0), (23, 0)], legend_color.stroke_width(3))
                    });
            } else {
                chart
                    .draw_series(LineSeries::new(l.f32.clone(), style))
                    .map_err(|e| err(&e))?
                    .label(l.label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 23, y)], legend_color.stroke_width(3))
                    });
            }
            chart
                .draw_series(l.f32.iter().map(|&p| Circle::new(p, 4, l.color.filled())))
                .map_err(|e| err(&e))?;
            chart
                .draw_series(
                    l.q8.iter()
                        .map(|&p| Circle::new(p, 8, l.color.stroke_width(2))),
                )
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .position(legend_at)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font(("sans-serif", 15))
            .draw()
            .map_err(|e| err(&e))?;
    }
    area.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fig(p: f64) -> Cell {
        Cell::Measured(Figure {
            tokens: 1000,
            windows: 10,
            window: 0,
            nll: p.ln(),
            perplexity: p,
        })
    }

    fn row(
        model: &'static str,
        scaling: Option<(&'static str, u32)>,
        quant: Quant,
        p: [Option<f64>; 5],
    ) -> Row {
        Row {
            variant: Variant { model, scaling },
            quant,
            check: None,
            cells: p
                .iter()
                .map(|p| p.map_or_else(|| Cell::Refused("no".into()), fig))
                .collect(),
            m4f_512: None,
        }
    }

    #[test]
    fn measures_every_model_and_rule() {
        let labels: Vec<String> = variants().iter().map(Variant::label).collect();
        assert_eq!(
            labels.join(" "),
            "nope sinusoidal learned rope alibi t5 rope+linear:4 rope+linear:8 rope+dynamic:4 \
             rope+dynamic:8 rope+yarn:4 rope+yarn:8"
        );
        assert_eq!(variants()[10].scaling_arg().as_deref(), Some("yarn:4"));
    }

    #[test]
    fn slices_at_a_line_end() {
        assert_eq!(slice_len(b"ab\ncd\nef", 100), 8);
        assert_eq!(slice_len(b"ab\ncd\nef", 7), 6);
        assert_eq!(slice_len(b"ab\ncd\nef", 6), 6);
        assert_eq!(slice_len(b"ab\ncd\nef", 5), 3);
        // No line end: the longest whole-character prefix ("é" is 2 bytes).
        assert_eq!(slice_len("aé".as_bytes(), 2), 1);
        assert_eq!(grouped(37_688), "37,688");
        assert_eq!(grouped(512), "512");
        assert_eq!(grouped(1_000_000), "1,000,000");
    }

    #[test]
    fn tables_print_figures_and_dashes() {
        let rows = vec![
            row(
                "learned",
                None,
                Quant::F32,
                [Some(18.094), Some(17.49), None, None, None],
            ),
            row(
                "learned",
                None,
                Quant::Q8,
                [Some(18.1), Some(17.5), None, None, None],
            ),
            row(
                "alibi",
                None,
                Quant::F32,
                [
                    Some(15.5),
                    Some(14.79),
                    Some(14.45),
                    Some(14.31),
                    Some(14.23),
                ],
            ),
        ];
        let f32: Vec<&Row> = rows.iter().filter(|r| r.quant == Quant::F32).collect();
        assert_eq!(
            table(&f32),
            "| model | 64 | 128 (training length) | 256 | 512 | 1024 |\n\
             |---|---|---|---|---|---|\n\
             | `learned` | 18.09 | 17.49 | — | — | — |\n\
             | `alibi` | 15.50 | 14.79 | 14.45 | 14.31 | 14.23 |\n"
        );
        let paired = paired_table(&rows);
        assert!(
            paired.contains("| `learned` | 18.09 / 18.10 | 17.49 / 17.50 | — | — | — |\n"),
            "{paired}"
        );
        assert!(paired.contains("| `alibi` | 15.50 | 14.79 |"), "{paired}");
        assert!(!paired.contains("Cortex-M4F"), "{paired}");
        // The device column appears once a row has its figure.
        let mut with_device = rows.clone();
        with_device[2].m4f_512 = Some(14.3);
        let t = table(&with_device.iter().collect::<Vec<_>>());
        assert!(t.starts_with("| model | 64 | 128 (training length) | 256 | 512 | 1024 | 512 on the emulated Cortex-M4F |\n|---|---|---|---|---|---|---|\n"), "{t}");
        assert!(
            t.contains("| `alibi` | 15.50 | 14.79 | 14.45 | 14.31 | 14.23 | 14.30 |"),
            "{t}"
        );
        assert!(
            t.contains("| `learned` | 18.09 | 17.49 | — | — | — | — |"),
            "{t}"
        );
    }

    #[test]
    fn words_follow_the_figures() {
        let rows = vec![
            row(
                "rope",
                None,
                Quant::F32,
                [
                    Some(14.8),
                    Some(14.21),
                    Some(14.14),
                    Some(38.34),
                    Some(81.13),
                ],
            ),
            row(
                "alibi",
                None,
                Quant::F32,
                [
                    Some(15.5),
                    Some(14.79),
                    Some(14.45),
                    Some(14.31),
                    Some(14.23),
                ],
            ),
            row(
                "learned",
                None,
                Quant::F32,
                [Some(18.0), Some(17.5), None, None, None],
            ),
            row(
                "rope",
                Some(("linear", 4)),
                Quant::F32,
                [Some(68.8), Some(73.58), Some(75.0), Some(77.0), Some(78.47)],
            ),
        ];
        assert_eq!(
            measured(&rows, rows[0].variant),
            "holds at 2×, breaks at 4×–8× (14.21 → 14.14, 38.34, 81.13)"
        );
        assert_eq!(
            measured(&rows, rows[1].variant),
            "improves at 2×–8× (14.79 → 14.45, 14.31, 14.23)"
        );
        assert!(measured(&rows, rows[2].variant).contains("refuses"));
        assert_eq!(
            measured_rule(&rows, "linear"),
            "at 128: 73.58 (×4), unscaled 14.21; at 1024: 78.47 (×4), unscaled 81.13"
        );
        let lit = literature_table(&rows);
        assert!(lit.contains("| `alibi` | holds or improves"), "{lit}");
        assert!(
            lit.contains("| `rope+linear:F` | position interpolation"),
            "{lit}"
        );
        assert_eq!(lit.lines().count(), 2 + 4, "{lit}");
    }

    #[test]
    fn warns_when_alibi_does_not_hold() {
        let good = row(
            "alibi",
            None,
            Quant::F32,
            [Some(15.5), Some(14.79), Some(15.0), Some(16.9), Some(20.0)],
        );
        assert!(alibi_check(&[good]).is_empty());
        let bad = row(
            "alibi",
            None,
            Quant::Q8,
            [Some(15.5), Some(14.79), Some(15.0), Some(17.1), Some(20.0)],
        );
        let w = alibi_check(&[bad]);
        assert_eq!(w.len(), 1);
        assert!(
            w[0].starts_with("alibi q8: perplexity 17.10 at window 512 is 16 % above"),
            "{}",
            w[0]
        );
        let rope = row(
            "rope",
            None,
            Quant::F32,
            [Some(15.5), Some(14.79), Some(15.0), Some(50.0), Some(80.0)],
        );
        assert!(alibi_check(&[rope]).is_empty());
    }

    #[test]
    fn replaces_the_readme_block() {
        let text = format!("# Title\n\nprose\n{BEGIN}\nold table\n| a |\n{END}\nafter\n");
        let new = replace_block(&text, "new table").unwrap();
        assert_eq!(
            new,
            format!("# Title\n\nprose\n{BEGIN}\nnew table\n{END}\nafter\n")
        );
        // Replacing again gives the same text.
        assert_eq!(replace_block(&new, "new table\n").unwrap(), new);
        assert!(replace_block("no markers", "x")
            .unwrap_err()
            .contains("no <!-- extrapolation:begin"));
        assert!(replace_block(&format!("{BEGIN}\nx\n"), "x")
            .unwrap_err()
            .contains("no <!-- extrapolation:end"));
        assert!(replace_block(&format!("{END}\n{BEGIN}\n"), "x")
            .unwrap_err()
            .contains("before"));
        assert!(
            replace_block(&format!("{BEGIN}\n{END}\n{BEGIN}\n{END}\n"), "x")
                .unwrap_err()
                .contains("more than once")
        );
    }

    #[test]
    fn runs_in_parallel_in_order() {
        let items: Vec<u32> = (0..20).collect();
        let out = parallel(&items, 3, |&i| Ok(i * 2)).unwrap();
        assert_eq!(out, (0..20).map(|i| i * 2).collect::<Vec<_>>());
        let err = parallel(&items, 2, |&i| {
            if i == 5 {
                Err("five".to_owned())
            } else {
                Ok(i)
            }
        });
        assert_eq!(err, Err("five".to_owned()));
        assert_eq!(parallel(&[] as &[u32], 2, |&i| Ok(i)), Ok(vec![]));
    }

    fn study(rows: Vec<Row>) -> Study {
        Study {
            rows,
            slice: Slice {
                file: DEFAULT_TEXT.into(),
                requested: 65_536,
                bytes: 65_526,
                lines: 2_000,
                path: PathBuf::from("text.txt"),
            },
            tokens: 1000,
            command: "cargo xtask extrapolation --write".into(),
            wall: Duration::from_secs(600),
            jobs: 2,
            runs: 5,
            warnings: vec![],
        }
    }

    #[test]
    fn every_figure_reaches_the_json() {
        let study = study(vec![row(
            "learned",
            None,
            Quant::F32,
            [Some(18.0), Some(17.5), None, None, None],
        )]);
        let v: serde_json::Value = serde_json::from_str(&study.json().unwrap()).unwrap();
        assert_eq!(v["tokens"], 1000);
        assert_eq!(v["wall_seconds"], 600.0);
        assert_eq!(v["text"]["bytes"], 65_526);
        assert_eq!(v["rows"][0]["figures"][1]["perplexity"], 17.5);
        assert_eq!(v["rows"][0]["figures"][2]["refused"], "no");
        assert!(v["rows"][0]["m4f_512_perplexity"].is_null());
        let block = study.readme_block();
        assert!(block.contains("over the held-out plays, the first 65,526 bytes of `models/text/validation.txt` (lines 1–2,000; its first 65,536 bytes cut back to the last line end): 1,000 tokens."), "{block}");
        assert!(
            block.contains("in 10.0 min (5 perplexity runs, 2 at a time"),
            "{block}"
        );
        assert!(
            block.contains("Cortex-M4F: not measured in this run"),
            "{block}"
        );
    }

    type Scaling = Option<(&'static str, u32)>;

    #[test]
    fn draws_the_plot() {
        // The old hand-made table's f32 figures, q8 a little above.
        let figures: [(&str, Scaling, [Option<f64>; 5]); 12] = [
            (
                "nope",
                None,
                [
                    Some(17.91),
                    Some(17.28),
                    Some(23.11),
                    Some(46.46),
                    Some(84.57),
                ],
            ),
            (
                "sinusoidal",
                None,
                [
                    Some(18.53),
                    Some(17.94),
                    Some(118.19),
                    Some(386.87),
                    Some(776.78),
                ],
            ),
            (
                "learned",
                None,
                [Some(18.09), Some(17.49), None, None, None],
            ),
            (
                "rope",
                None,
                [
                    Some(14.84),
                    Some(14.21),
                    Some(14.14),
                    Some(38.34),
                    Some(81.13),
                ],
            ),
            (
                "alibi",
                None,
                [
                    Some(15.51),
                    Some(14.79),
                    Some(14.45),
                    Some(14.31),
                    Some(14.23),
                ],
            ),
            (
                "t5",
                None,
                [
                    Some(15.03),
                    Some(14.30),
                    Some(13.99),
                    Some(14.08),
                    Some(14.71),
                ],
            ),
            (
                "rope",
                Some(("linear", 4)),
                [
                    Some(68.83),
                    Some(73.58),
                    Some(75.88),
                    Some(77.05),
                    Some(78.47),
                ],
            ),
            (
                "rope",
                Some(("linear", 8)),
                [Some(83.88), Some(91.86), Some(94.0), Some(95.0), Some(97.0)],
            ),
            (
                "rope",
                Some(("dynamic", 4)),
                [
                    Some(22.89),
                    Some(23.55),
                    Some(33.84),
                    Some(44.99),
                    Some(51.69),
                ],
            ),
            (
                "rope",
                Some(("dynamic", 8)),
                [Some(25.0), Some(26.0), Some(35.0), Some(50.0), Some(62.0)],
            ),
            (
                "rope",
                Some(("yarn", 4)),
                [
                    Some(17.22),
                    Some(20.91),
                    Some(25.24),
                    Some(27.62),
                    Some(29.43),
                ],
            ),
            (
                "rope",
                Some(("yarn", 8)),
                [Some(17.3), Some(26.6), Some(47.7), Some(62.3), Some(70.4)],
            ),
        ];
        let mut rows = Vec::new();
        for (model, scaling, p) in figures {
            rows.push(row(model, scaling, Quant::F32, p));
            rows.push(row(
                model,
                scaling,
                Quant::Q8,
                p.map(|x| x.map(|x| x * 1.01)),
            ));
        }
        let path = std::env::var_os("XTASK_PLOT_TEST").map_or_else(
            || std::env::temp_dir().join(format!("xtask-extrapolation-{}.png", std::process::id())),
            PathBuf::from,
        );
        plot(&study(rows), &path).unwrap();
        let png = std::fs::read(&path).unwrap();
        if std::env::var_os("XTASK_PLOT_TEST").is_none() {
            let _ = std::fs::remove_file(&path);
        }
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(png.len() > 10_000, "{} bytes", png.len());
    }
}
