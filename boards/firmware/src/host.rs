//! Build-script helpers (feature `std`): every board's `build.rs`, QEMU's and the
//! real boards', calls these on the host.
//!
//! - [`qemu_board`] and [`real_board`]: a QEMU board's and a real board's whole
//!   `build.rs`, calling the helpers below.
//! - [`linker_script`]: the board's `memory.x` to the linker.
//! - [`write_inputs`]: the firmware's model image, [`Settings`] and memory, as
//!   `OUT_DIR/inputs.rs` (and `OUT_DIR/summary.txt`, `key=value` figures for
//!   `cargo xtask boards`), for a [`Target`]: a QEMU board (memory sized for the
//!   image) or a real board's [`Budget`]:
//!   - `MICROFORMER_IMAGE`: a prebuilt image (`microformer convert`), embedded as is; or
//!   - `MICROFORMER_CHECKPOINT`: a llama2.c checkpoint (v0, v1, v2) converted here with
//!     `microformer-convert` ([`convert_llama2c`], the same code as `microformer
//!     convert`: RoPE tables computed as `run.c` computes its angles, with the host's
//!     f32 `powf`/`cosf`/`sinf`), with `MICROFORMER_TOKENIZER` (a llama2.c tokenizer
//!     file), `MICROFORMER_QUANT` (`f32` or `q8`; default f32 on QEMU, q8 on a real
//!     board) and `MICROFORMER_CONTEXT` (default: the checkpoint's on QEMU, the
//!     board's budget on a real board); or a model directory (`config.json` +
//!     safetensors, the project's own `models/<scheme>` or a Hugging Face checkpoint,
//!     [`convert_model_dir`]) with its own `tokenizer.bin`;
//!   - neither: on a real board the project's own model ([`DEFAULT_MODEL`], Q8_0, the
//!     budget's context), so that a clone builds a working firmware with no variable
//!     set; on a QEMU board no image (the firmware says how to embed one);
//!   - `MICROFORMER_TEXT`: a text file, encoded with the image's tokenizer into
//!     `TEXT_TOKENS`, the stream the perplexity mode (`perplexity=N`) scores;
//!   - settings: `MICROFORMER_STEPS`, `MICROFORMER_SEED`, `MICROFORMER_TEMPERATURE`,
//!     `MICROFORMER_TOPP`, `MICROFORMER_PROMPT` (defaults: [`Settings::DEFAULT`] on
//!     QEMU, [`Settings::REAL_BOARD`] on a real board).
//!
//!   Paths are absolute or relative to the board's directory. On a real board the
//!   image is checked against the budget: when its arena for the context exceeds the
//!   board's, the build warns (the firmware reports the same at start, with the
//!   largest context that fits).
//! - [`write_expected`]: runs every case of [`crate::cases::ALL`] here, on
//!   the host (the same library and case code the target runs), and writes
//!   the streams as `static`s for the on-target tests to compare with.
//! - [`write_generate`]: the images and host-computed tokens of the on-target
//!   generation tests (`boards/suites/generate.rs`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

use microformer::image::Image;
use microformer::model::{Arith, KvFormat, Model};
use microformer::sampler::random_f32;
use microformer::tokenizer;

pub use crate::budgets::Budget;
use crate::cases::ALL;
use crate::lm::{self, Buffers, Events, Token};
use crate::settings::Mode;
pub use crate::settings::CMDLINE_BYTES;
use crate::{Out, Settings};

/// An error of a build-script helper, as text for the build log.
pub type BuildError = String;

/// Words a case may write (the largest writes a few thousand).
const MAX_WORDS: usize = 1 << 16;

/// `OUT_DIR`, where a build script writes.
fn out_dir() -> Result<PathBuf, BuildError> {
    env::var_os("OUT_DIR")
        .map(PathBuf::from)
        .ok_or_else(|| String::from("OUT_DIR is not set: call this from a build script"))
}

/// A QEMU board's build script: hands its `memory.x` to the linker, writes the host's
/// results of every on-target check ([`write_expected`]: `expected.rs`), the
/// firmware's inputs ([`write_inputs`] for [`Target::Qemu`]: `inputs.rs`) and the
/// generation tests' images and host-computed tokens ([`write_generate`] with
/// `models`: `generate.rs`).
pub fn qemu_board(models: TestModels) -> Result<(), BuildError> {
    let out = out_dir()?;
    linker_script(Path::new("memory.x"), &out)?;
    write_expected(&out.join("expected.rs"))?;
    write_inputs(&out, Target::Qemu)?;
    write_generate(&out, models)
}

/// A real board's build script: hands its `memory.x` to the linker and writes the
/// firmware's inputs for its `budget` ([`write_inputs`] for [`Target::Device`]:
/// `inputs.rs`, `summary.txt`).
pub fn real_board(budget: Budget) -> Result<(), BuildError> {
    let out = out_dir()?;
    linker_script(Path::new("memory.x"), &out)?;
    write_inputs(&out, Target::Device(budget))
}

/// Copies `memory_x` to `out_dir` and puts `out_dir` on the linker's search
/// path (cortex-m-rt's `link.x` includes `memory.x`).
pub fn linker_script(memory_x: &Path, out_dir: &Path) -> Result<(), BuildError> {
    fs::copy(memory_x, out_dir.join("memory.x"))
        .map_err(|e| format!("cannot copy {}: {e}", memory_x.display()))?;
    println!("cargo:rustc-link-search={}", out_dir.display());
    println!("cargo:rerun-if-changed={}", memory_x.display());
    Ok(())
}

/// The host's stream of every case: `(name, words)`.
///
/// Errors: a case failing its own checks on the host, or writing more than
/// `2^16` words.
pub fn host_streams() -> Result<Vec<(&'static str, Vec<u32>)>, BuildError> {
    let mut buf = vec![0u32; MAX_WORDS];
    ALL.iter()
        .map(|case| {
            let mut out = Out::record(&mut buf);
            let run = (case.run)(&mut out);
            let words = out.recorded().to_vec();
            run.and(out.finish().map(|_| ()))
                .map_err(|f| format!("case {} fails on the host: {f:?}", case.name))?;
            Ok((case.name, words))
        })
        .collect()
}

/// Runs every case on the host and writes their streams to `path` as
/// `pub static NAME: [u32; N]` items (include it inside a module).
pub fn write_expected(path: &Path) -> Result<(), BuildError> {
    let host = env::var("HOST").unwrap_or_else(|_| String::from("the host"));
    let mut src = format!(
        "// Generated by microformer_firmware::host::write_expected: every on-target case\n\
         // run on {host} by the build script. Do not edit.\n"
    );
    for (name, words) in host_streams()? {
        let _ = writeln!(
            src,
            "\n/// The host's results of `cases::{name}` ({} words).",
            words.len()
        );
        let _ = writeln!(src, "pub static {name}: [u32; {}] = [", words.len());
        for line in words.chunks(8) {
            src.push_str("   ");
            for w in line {
                let _ = write!(src, " {w:#010x},");
            }
            src.push('\n');
        }
        src.push_str("];\n");
    }
    fs::write(path, src).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Reads an optional environment variable, telling cargo to rerun on change.
fn var(name: &str) -> Option<String> {
    println!("cargo:rerun-if-env-changed={name}");
    env::var(name).ok().filter(|v| !v.is_empty())
}

fn parse<T: std::str::FromStr>(name: &str, default: T) -> Result<T, BuildError> {
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a valid number")),
    }
}

/// Bytes at a 4-byte aligned address, on the host (checkpoints and images are read
/// in place as `f32`/`u32`).
pub use microformer_convert::AlignedBytes;

/// Converts a llama2.c checkpoint (v0, v1 or v2) into an image, as `microformer
/// convert` does, with `tokenizer` embedded: Q8_0 matrices when `q8` (the file's group
/// size, or `export.py`'s default: 64, halved until it divides `dim`), else f32;
/// `context` positions (default: the checkpoint's `seq_len`). The RoPE tables are
/// computed as `run.c` computes its angles, with the host's f32 `powf`, `cos` and
/// `sin`.
///
/// Errors: a checkpoint that does not parse, a context outside the checkpoint's, a
/// tokenizer that does not fit the vocabulary, a Q8 group size that is not a
/// multiple of 4, and every conversion error.
pub fn convert_llama2c(
    checkpoint: &[u8],
    tokenizer: Option<&[u8]>,
    q8: bool,
    context: Option<usize>,
) -> Result<Vec<u8>, BuildError> {
    use microformer_convert::llama2c::{self, Llama2cError as E};
    use microformer_convert::Storage;
    let opts = llama2c::Options {
        storage: if q8 {
            Storage::Q8 { group_size: None }
        } else {
            Storage::F32
        },
        context,
        tokenizer,
    };
    match llama2c::convert(checkpoint, &opts) {
        Ok(c) => Ok(c.image),
        Err(E::Checkpoint(e)) => Err(format!("not a valid llama2.c checkpoint: {e}")),
        Err(E::Context { asked, max }) => Err(format!(
            "context {asked} is outside the checkpoint's 1..={max}"
        )),
        Err(E::BadGroup { dim, .. }) => Err(format!(
            "no Q8 group size of a multiple of 4 divides dim {dim}: use MICROFORMER_QUANT=f32"
        )),
        Err(E::Tokenizer { vocab_size, error }) => Err(format!(
            "the tokenizer does not fit the vocabulary of {vocab_size}: {error}"
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// `image` with its Q8 scales in block-float form too (`microformer convert
/// --block-scales`), for the integer step.
pub fn with_block_scales(image: &[u8]) -> Result<Vec<u8>, BuildError> {
    microformer_convert::block_scales::with_block_scales(image)
        .map_err(|e| format!("cannot add the block scales to the image: {e}"))
}

/// The repository's root (this crate is `boards/firmware`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The project's own model the firmware embeds when no variable names one (a real
/// board) and the generation tests run: `models/<scheme>` of the repository.
pub fn own_model(scheme: &str) -> PathBuf {
    repo_root().join("models").join(scheme)
}

/// Converts a model directory (`config.json` + safetensors: the project's own
/// `models/<scheme>`, or any Hugging Face family the converter reads) into an image,
/// as `microformer convert DIR` does: the directory's own `tokenizer.bin` embedded
/// when it has one, Q8_0 matrices (the configuration's `q8_group_size`, or the
/// converter's default) when `q8`, else f32; `context` positions (default: the
/// configuration's).
///
/// Errors: every conversion error, with the directory named.
pub fn convert_model_dir(
    dir: &Path,
    q8: bool,
    context: Option<usize>,
) -> Result<Vec<u8>, BuildError> {
    use microformer_convert::{hf, Storage};
    for f in ["config.json", "model.safetensors", "tokenizer.bin"] {
        println!("cargo:rerun-if-changed={}", dir.join(f).display());
    }
    let own_tokenizer = dir.join("tokenizer.bin");
    let tokenizer = if own_tokenizer.is_file() {
        Some(fs::read(&own_tokenizer).map_err(|e| format!("{}: {e}", own_tokenizer.display()))?)
    } else {
        None
    };
    let opts = hf::Options {
        context,
        storage: if q8 {
            Storage::Q8 { group_size: None }
        } else {
            Storage::F32
        },
        tokenizer,
        rope_scaling: None,
    };
    hf::convert(dir, &opts, &mut |_, _, _| {})
        .map(|(image, _)| image)
        .map_err(|e| format!("{}: {e}", dir.display()))
}

fn read(name: &str, path: &str) -> Result<Vec<u8>, BuildError> {
    println!("cargo:rerun-if-changed={path}");
    fs::read(path).map_err(|e| format!("{name}={path}: {e}"))
}

/// What a board's firmware is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A QEMU board: the memory is sized for the embedded image at its context, a
    /// converted checkpoint is f32 unless `MICROFORMER_QUANT=q8`, the settings
    /// default to [`Settings::DEFAULT`], and the prompt buffers have room for a
    /// command line of [`CMDLINE_BYTES`].
    Qemu,
    /// A real board: its RAM budget (the arena and the context), a converted
    /// checkpoint is Q8_0 unless `MICROFORMER_QUANT=f32`, the settings default to
    /// [`Settings::REAL_BOARD`] and are fixed at build time.
    Device(Budget),
}

/// The project's own model a real board embeds when no variable names one
/// (`models/rope`: the scheme most checkpoints use; trained at 128 positions).
pub const DEFAULT_MODEL: &str = "rope";

/// `MICROFORMER_QUANT` (`f32` or `q8`): whether to store Q8_0 matrices.
fn quant(q8_default: bool) -> Result<bool, BuildError> {
    match var("MICROFORMER_QUANT").as_deref() {
        None => Ok(q8_default),
        Some("f32") => Ok(false),
        Some("q8") => Ok(true),
        Some(q) => Err(format!("MICROFORMER_QUANT={q:?}: use f32 or q8")),
    }
}

/// A model directory converted, and the summary's words for it.
fn dir_image(
    dir: &Path,
    q8: bool,
    context: Option<usize>,
) -> Result<(Vec<u8>, String), BuildError> {
    let image = convert_model_dir(dir, q8, context)?;
    let what = format!(
        "model directory {}, {}, context {}",
        dir.display(),
        if q8 { "Q8_0" } else { "f32" },
        context.map_or_else(|| String::from("the configuration's"), |c| c.to_string())
    );
    Ok((image, what))
}

/// The image the variables name, and where it comes from (for the summary). With
/// neither `MICROFORMER_IMAGE` nor `MICROFORMER_CHECKPOINT`: the project's own
/// [`DEFAULT_MODEL`] when `own_default` (a real board), else none.
fn image_from_env(
    q8_default: bool,
    context: Option<usize>,
    own_default: bool,
) -> Result<(Vec<u8>, String), BuildError> {
    match (var("MICROFORMER_IMAGE"), var("MICROFORMER_CHECKPOINT")) {
        (Some(_), Some(_)) => {
            Err("set MICROFORMER_IMAGE or MICROFORMER_CHECKPOINT, not both".into())
        }
        (Some(path), None) => Ok((read("MICROFORMER_IMAGE", &path)?, format!("image {path}"))),
        (None, Some(path)) if Path::new(&path).is_dir() => {
            if var("MICROFORMER_TOKENIZER").is_some() {
                return Err(format!(
                    "MICROFORMER_CHECKPOINT={path} is a model directory: it embeds its own \
                     tokenizer.bin, unset MICROFORMER_TOKENIZER"
                ));
            }
            dir_image(Path::new(&path), quant(q8_default)?, context)
        }
        (None, None) if own_default => dir_image(&own_model(DEFAULT_MODEL), quant(true)?, context),
        (None, Some(path)) => {
            let q8 = quant(q8_default)?;
            let tokenizer = match var("MICROFORMER_TOKENIZER") {
                Some(t) => Some(read("MICROFORMER_TOKENIZER", &t)?),
                None => None,
            };
            let checkpoint = read("MICROFORMER_CHECKPOINT", &path)?;
            let image = convert_llama2c(&checkpoint, tokenizer.as_deref(), q8, context)
                .map_err(|e| format!("MICROFORMER_CHECKPOINT={path}: {e}"))?;
            let what = format!(
                "checkpoint {path}, {}, context {}",
                if q8 { "Q8_0" } else { "f32" },
                context.map_or_else(|| String::from("the checkpoint's"), |c| c.to_string())
            );
            Ok((image, what))
        }
        (None, None) => Ok((Vec::new(), String::from("none"))),
    }
}

/// The Rust expression of `settings` (a `static`'s initializer).
fn settings_expr(s: &Settings<'_>) -> String {
    format!(
        "microformer_firmware::Settings {{\n    steps: {},\n    seed: {},\n    \
         temperature: f32::from_bits({:#010x}), // {}\n    \
         topp: f32::from_bits({:#010x}), // {}\n    prompt: {:?},\n    prompt_ids: {:?},\n    \
         mode: microformer_firmware::settings::Mode::{:?},\n    stop_at_bos: {},\n    \
         kv: microformer_firmware::microformer::model::KvFormat::{:?},\n    \
         arith: microformer_firmware::microformer::model::Arith::{:?},\n}}",
        s.steps,
        s.seed,
        s.temperature.to_bits(),
        s.temperature,
        s.topp.to_bits(),
        s.topp,
        s.prompt,
        s.prompt_ids,
        s.mode,
        s.stop_at_bos,
        s.kv,
        s.arith
    )
}

/// Writes `out_dir/model.bin`, `out_dir/inputs.rs` and `out_dir/summary.txt` for
/// `target` (see the module documentation).
///
/// `inputs.rs` holds `MODEL` (the image, 4-byte aligned; empty when none), `CONTEXT`
/// (the session's: the budget's, or the image's), `SETTINGS`, the memory's sizes
/// `ARENA_BYTES`, `VOCAB` (the model's vocabulary; 0 without a model) and
/// `PROMPT_TOKENS` (room for the encoded prompt), and `Memory`, the
/// [`crate::lm::Memory`] of those sizes.
pub fn write_inputs(out_dir: &Path, target: Target) -> Result<(), BuildError> {
    let (budget, d) = match target {
        Target::Qemu => (None, Settings::DEFAULT),
        Target::Device(b) => (Some(b), Settings::REAL_BOARD),
    };
    let context = match var("MICROFORMER_CONTEXT") {
        Some(c) => Some(
            c.trim()
                .parse::<usize>()
                .map_err(|_| format!("MICROFORMER_CONTEXT={c:?} is not a number"))?,
        ),
        None => budget.map(|b| b.context),
    };
    if context == Some(0) {
        return Err("MICROFORMER_CONTEXT must be at least 1".into());
    }
    let (bytes, source) = image_from_env(budget.is_some(), context, budget.is_some())?;
    let prompt = var("MICROFORMER_PROMPT").unwrap_or_default();
    let settings = Settings {
        steps: parse("MICROFORMER_STEPS", d.steps)?,
        seed: parse("MICROFORMER_SEED", d.seed)?,
        temperature: parse("MICROFORMER_TEMPERATURE", d.temperature)?,
        topp: parse("MICROFORMER_TOPP", d.topp)?,
        prompt: &prompt,
        mode: Mode::Generate,
        prompt_ids: "",
        stop_at_bos: true,
        kv: match var("MICROFORMER_KV").as_deref() {
            None | Some("f32") => KvFormat::F32,
            Some("q8") => KvFormat::Q8,
            Some("q16") => KvFormat::Q16,
            Some(k) => return Err(format!("MICROFORMER_KV={k:?}: use f32, q8 or q16")),
        },
        arith: match var("MICROFORMER_ARITH").as_deref() {
            None | Some("float") => Arith::Float,
            Some("integer") => Arith::Integer,
            Some(a) => return Err(format!("MICROFORMER_ARITH={a:?}: use float or integer")),
        },
    };
    let (temperature, topp) = (settings.temperature, settings.topp);
    if !temperature.is_finite() || temperature < 0.0 || !(0.0..=1.0).contains(&topp) {
        return Err(format!(
            "MICROFORMER_TEMPERATURE={temperature} must be >= 0 and MICROFORMER_TOPP={topp} \
             in [0, 1]"
        ));
    }
    let prompt_bytes = match target {
        Target::Qemu => CMDLINE_BYTES.max(prompt.len()),
        Target::Device(_) => prompt.len(),
    };
    let prompt_tokens = tokenizer::max_encoded_len(prompt_bytes);
    let (mut arena, mut vocab, mut ctx) = (budget.map_or(0, |b| b.arena_bytes), 0, 0);
    let mut summary = format!("source={source}\nimage_bytes={}\n", bytes.len());
    if !bytes.is_empty() {
        let data = AlignedBytes::new(&bytes);
        let model = Image::parse(data.bytes())
            .and_then(Model::new)
            .map_err(|e| format!("the model image is not runnable: {e}"))?;
        ctx = context.unwrap_or(usize::MAX).min(model.max_context());
        let needed = model.arena_bytes_for(ctx, settings.kv, settings.arith);
        vocab = model.vocab_size();
        if budget.is_none() {
            let [a, ..] = lm::buffer_sizes(data.bytes(), prompt_bytes, settings.kv, settings.arith)
                .map_err(|e| format!("the model image is not runnable: {e}"))?;
            arena = a;
        }
        let _ = write!(
            summary,
            "model_context={ctx}\narena_needed={needed}\nquantized={}\nkv={:?}\narith={:?}\n\
             vocab={vocab}\n",
            model.is_quantized(),
            settings.kv,
            settings.arith
        );
        if needed > arena {
            println!(
                "cargo:warning=the model needs {needed} arena bytes for a context of {ctx}, \
                 the board reserves {arena}: the firmware will stop with an error (largest \
                 context that fits: {}; set MICROFORMER_CONTEXT)",
                lm::largest_context(
                    &model,
                    arena,
                    model.max_context(),
                    settings.kv,
                    settings.arith
                )
            );
        }
        if budget.is_some() && model.tokenizer().is_none() {
            println!("cargo:warning=the model image has no tokenizer: set MICROFORMER_TOKENIZER");
        }
    }
    let context = context.unwrap_or(ctx);
    let _ = write!(summary, "context={context}\narena_reserved={arena}\n");
    let text_tokens = match var("MICROFORMER_TEXT") {
        None => Vec::new(),
        Some(path) => text_tokens(&bytes, &read("MICROFORMER_TEXT", &path)?)
            .map_err(|e| format!("MICROFORMER_TEXT={path}: {e}"))?,
    };
    let _ = writeln!(summary, "text_tokens={}", text_tokens.len());
    let model = out_dir.join("model.bin");
    fs::write(&model, &bytes).map_err(|e| format!("{}: {e}", model.display()))?;
    let src = format!(
        "// Generated by microformer_firmware::host::write_inputs. Do not edit.\n\n\
         /// The model image embedded at build time ({source}), 4-byte aligned; empty when\n\
         /// none was given.\n\
         pub static MODEL: &microformer_firmware::Aligned<[u8]> =\n    \
         &microformer_firmware::Aligned(*include_bytes!({model:?}));\n\n\
         /// Positions of the session (capped at the image's).\n\
         pub const CONTEXT: usize = {context};\n\n\
         /// Run settings chosen at build time.\n\
         pub static SETTINGS: microformer_firmware::Settings = {};\n\n\
         /// The token stream the perplexity mode scores (`MICROFORMER_TEXT`, encoded\n\
         /// with the image's tokenizer as `microformer perplexity` encodes it); empty\n\
         /// when none was given. (Only the QEMU boards have the perplexity mode.)\n\
         #[allow(dead_code)]\n\
         pub static TEXT_TOKENS: [u32; {}] = {text_tokens:?};\n\n\
         /// Bytes of the static session arena.\n\
         pub const ARENA_BYTES: usize = {arena};\n\n\
         /// Entries of the tokenizer index (the model's vocabulary).\n\
         pub const VOCAB: usize = {vocab};\n\n\
         /// Room for the encoded prompt.\n\
         pub const PROMPT_TOKENS: usize = {prompt_tokens};\n\n\
         /// The memory of a run: the arena, the tokenizer index, the prompt, the sampler.\n\
         pub type Memory = microformer_firmware::lm::Memory<ARENA_BYTES, VOCAB, PROMPT_TOKENS>;\n",
        settings_expr(&settings),
        text_tokens.len(),
    );
    let path = out_dir.join("inputs.rs");
    fs::write(&path, src).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let path = out_dir.join("summary.txt");
    fs::write(&path, summary).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `text` encoded with the tokenizer of `image`, as `microformer perplexity`
/// encodes its text file ([`microformer_convert::tokenizer::encode_text`]).
///
/// Errors: no image, an image without a tokenizer, a text that does not encode
/// or encodes to nothing.
fn text_tokens(image: &[u8], text: &[u8]) -> Result<Vec<u32>, BuildError> {
    if image.is_empty() {
        return Err("no model image to encode the text with".into());
    }
    let data = AlignedBytes::new(image);
    let model = Model::from_bytes(data.bytes()).map_err(|e| e.to_string())?;
    let vocab = model.vocab_size();
    let tok_data = model
        .tokenizer()
        .ok_or("the model image has no tokenizer to encode the text with")?;
    let (mut offsets, mut sorted) = (vec![0u32; vocab], vec![0u32; vocab]);
    let tok = tokenizer::Tokenizer::new(tok_data, vocab, &mut offsets, &mut sorted)
        .map_err(|e| format!("the image's tokenizer is invalid: {e}"))?;
    let tokens =
        microformer_convert::tokenizer::encode_text(&tok, text).map_err(|e| e.to_string())?;
    if tokens.is_empty() {
        return Err("the text is empty".into());
    }
    Ok(tokens)
}

/// Which models a board's on-target generation tests run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestModels {
    /// Two tiny random-weight models (f32 and Q8, made here as llama2.c
    /// checkpoints and converted), for the Cortex-M0's 16 KiB of RAM.
    Tiny,
    /// Trained models: the project's own (`models/t5`, `models/alibi`,
    /// `models/sinusoidal`: the score-bias and embedding hooks, past the training
    /// length), always; and llama2.c's aidreams260K (f32 and Q8, against llama2.c's
    /// ids), converted here from the reference folder (`MICROFORMER_REFERENCE_DIR`,
    /// `MICROFORMER_MODELS`, default `../shared/models` beside the repository) when it
    /// is there — skipped with a build warning naming it when it is not.
    Trained,
}

/// The tiny model's shape: `dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab,
/// seq_len`.
const TINY: [usize; 7] = [16, 48, 2, 2, 1, 64, 24];

/// A llama2.c legacy (v0) checkpoint of shape [`TINY`] with pseudo-random weights
/// (norm weights near 1).
pub fn tiny_checkpoint(seed: u64) -> Vec<u8> {
    let [dim, hidden, layers, heads, kv_heads, vocab, seq] = TINY;
    let kv_dim = dim / heads * kv_heads;
    let hs = dim / heads;
    let mut state = seed;
    let mut out = Vec::new();
    for v in TINY {
        out.extend_from_slice(&(v as i32).to_le_bytes());
    }
    let mut put = |n: usize, around: f32, spread: f32| {
        for _ in 0..n {
            let x = around + (random_f32(&mut state) - 0.5) * spread;
            out.extend_from_slice(&x.to_le_bytes());
        }
    };
    put(vocab * dim, 0.0, 2.0); // token embedding
    put(layers * dim, 1.0, 0.5); // rms_att
    put(layers * dim * dim, 0.0, 1.0); // wq
    put(layers * kv_dim * dim, 0.0, 1.0); // wk
    put(layers * kv_dim * dim, 0.0, 1.0); // wv
    put(layers * dim * dim, 0.0, 1.0); // wo
    put(layers * dim, 1.0, 0.5); // rms_ffn
    put(layers * hidden * dim, 0.0, 1.0); // w1
    put(layers * dim * hidden, 0.0, 1.0); // w2
    put(layers * hidden * dim, 0.0, 1.0); // w3
    put(dim, 1.0, 0.5); // rms_final
    put(2 * seq * hs / 2, 0.0, 0.0); // freq_cis_real, freq_cis_imag (unused)
    out
}

/// The directory of the reference models (llama2.c's checkpoints, which the project
/// may not ship): `MICROFORMER_REFERENCE_DIR`, `MICROFORMER_MODELS`, or
/// `../shared/models` beside the repository.
fn models_dir() -> PathBuf {
    match var("MICROFORMER_REFERENCE_DIR").or_else(|| var("MICROFORMER_MODELS")) {
        Some(d) => PathBuf::from(d),
        None => repo_root().join("../shared/models"),
    }
}

/// One on-target generation test: an image, settings, and the host's tokens.
struct GenerateTest {
    name: &'static str,
    image: Vec<u8>,
    steps: u32,
    temperature: f32,
    topp: f32,
    seed: u64,
    prompt: &'static str,
    kv: KvFormat,
    arith: Arith,
}

impl GenerateTest {
    fn settings(&self) -> Settings<'static> {
        Settings {
            steps: self.steps,
            seed: self.seed,
            temperature: self.temperature,
            topp: self.topp,
            prompt: self.prompt,
            mode: Mode::Generate,
            prompt_ids: "",
            stop_at_bos: true,
            kv: self.kv,
            arith: self.arith,
        }
    }
}

fn generate_tests(models: TestModels) -> Result<Vec<GenerateTest>, BuildError> {
    Ok(match models {
        TestModels::Tiny => {
            let ck = tiny_checkpoint(0x5eed_0001);
            let t = |name, q8, temperature, kv| -> Result<GenerateTest, BuildError> {
                Ok(GenerateTest {
                    name,
                    image: convert_llama2c(&ck, None, q8, None)?,
                    steps: 0,
                    temperature,
                    topp: 0.9,
                    seed: 7,
                    prompt: "",
                    kv,
                    arith: Arith::Float,
                })
            };
            vec![
                t("TINY_F32_GREEDY", false, 0.0, KvFormat::F32)?,
                t("TINY_Q8_TOPP", true, 1.0, KvFormat::F32)?,
                t("TINY_F32_KV8_GREEDY", false, 0.0, KvFormat::Q8)?,
                // The integer step (the Cortex-M0's only way to a model without soft float).
                GenerateTest {
                    arith: Arith::Integer,
                    ..t("TINY_INT_KV8_GREEDY", true, 0.0, KvFormat::Q8)?
                },
                // The same from the image's block scales.
                {
                    let t = t("TINY_INT_BLOCK_KV8_GREEDY", true, 0.0, KvFormat::Q8)?;
                    GenerateTest {
                        arith: Arith::Integer,
                        image: with_block_scales(&t.image)?,
                        ..t
                    }
                },
                GenerateTest {
                    arith: Arith::Integer,
                    ..t("TINY_INT_KV16_TOPP", true, 1.0, KvFormat::Q16)?
                },
            ]
        }
        TestModels::Trained => {
            let own = |name, scheme, q8, context, kv| -> Result<GenerateTest, BuildError> {
                Ok(GenerateTest {
                    name,
                    image: convert_model_dir(&own_model(scheme), q8, Some(context))?,
                    steps: 0,
                    temperature: 0.0,
                    topp: 0.9,
                    seed: 0,
                    prompt: "",
                    kv,
                    arith: Arith::Float,
                })
            };
            let mut tests = vec![
                // T5 buckets past the training length (128): the bucket table's far end.
                own("OWN_T5_Q8_GREEDY", "t5", true, 144, KvFormat::F32)?,
                GenerateTest {
                    steps: 48,
                    temperature: 1.0,
                    seed: 42,
                    prompt: "ROMEO.",
                    ..own(
                        "OWN_ALIBI_F32_PROMPT_TOPP",
                        "alibi",
                        false,
                        64,
                        KvFormat::F32,
                    )?
                },
                own(
                    "OWN_SINUSOIDAL_Q8_KV8_GREEDY",
                    "sinusoidal",
                    true,
                    40,
                    KvFormat::Q8,
                )?,
                // The integer step: RoPE in Q15 with the int8 cache, ALiBi's fixed-point
                // biases with the int16 cache (a prompt, top-p sampling on its logits), T5's
                // past the training length and the sinusoidal table's hooks on the images
                // above (one copy in flash each).
                {
                    // From the image's block scales.
                    let t = own("OWN_ROPE_INT_KV8_GREEDY", "rope", true, 64, KvFormat::Q8)?;
                    GenerateTest {
                        arith: Arith::Integer,
                        image: with_block_scales(&t.image)?,
                        ..t
                    }
                },
                GenerateTest {
                    steps: 40,
                    temperature: 1.0,
                    seed: 7,
                    prompt: "ROMEO.",
                    arith: Arith::Integer,
                    ..own(
                        "OWN_ALIBI_INT_KV16_PROMPT_TOPP",
                        "alibi",
                        true,
                        48,
                        KvFormat::Q16,
                    )?
                },
                GenerateTest {
                    arith: Arith::Integer,
                    ..own("OWN_T5_INT_KV8_GREEDY", "t5", true, 144, KvFormat::Q8)?
                },
                GenerateTest {
                    arith: Arith::Integer,
                    ..own(
                        "OWN_SINUSOIDAL_INT_KV16_GREEDY",
                        "sinusoidal",
                        true,
                        40,
                        KvFormat::Q16,
                    )?
                },
            ];
            let dir = models_dir();
            let (ck, tok) = (
                dir.join("aidreams260K.bin"),
                dir.join("aidreams260K.tok512.bin"),
            );
            if ck.is_file() && tok.is_file() {
                tests.extend(aidreams_tests(&ck, &tok)?);
            } else {
                println!(
                    "cargo:warning=skipped: the on-target aidreams260K generation tests (against \
                     llama2.c's ids): {} is not there (../shared/models or \
                     MICROFORMER_REFERENCE_DIR)",
                    ck.display()
                );
            }
            tests
        }
    })
}

/// llama2.c's aidreams260K: f32 greedy (llama2.c's ids), Q8 with a prompt and top-p,
/// Q8 with the int8 KV cache.
fn aidreams_tests(checkpoint: &Path, tokenizer: &Path) -> Result<Vec<GenerateTest>, BuildError> {
    let path = |p: &Path| p.display().to_string();
    let ck = read("MICROFORMER_REFERENCE_DIR", &path(checkpoint))?;
    let tok = read("MICROFORMER_REFERENCE_DIR", &path(tokenizer))?;
    Ok(vec![
        GenerateTest {
            name: "AIDREAMS_F32_GREEDY",
            image: convert_llama2c(&ck, Some(&tok), false, None)?,
            steps: 24,
            temperature: 0.0,
            topp: 0.9,
            seed: 0,
            prompt: "",
            kv: KvFormat::F32,
            arith: Arith::Float,
        },
        GenerateTest {
            name: "AIDREAMS_Q8_PROMPT_TOPP",
            image: convert_llama2c(&ck, Some(&tok), true, None)?,
            steps: 16,
            temperature: 1.0,
            topp: 0.9,
            seed: 42,
            prompt: "I was flying over",
            kv: KvFormat::F32,
            arith: Arith::Float,
        },
        GenerateTest {
            name: "AIDREAMS_Q8_KV8_GREEDY",
            image: convert_llama2c(&ck, Some(&tok), true, None)?,
            steps: 24,
            temperature: 0.0,
            topp: 0.9,
            seed: 0,
            prompt: "",
            kv: KvFormat::Q8,
            arith: Arith::Float,
        },
        GenerateTest {
            name: "AIDREAMS_INT_KV8_GREEDY",
            image: convert_llama2c(&ck, Some(&tok), true, None)?,
            steps: 48,
            temperature: 0.0,
            topp: 0.9,
            seed: 0,
            prompt: "",
            kv: KvFormat::Q8,
            arith: Arith::Integer,
        },
    ])
}

/// Collects a host run's ids and text.
#[derive(Default)]
struct Collect {
    ids: Vec<u32>,
    text: Vec<u8>,
}

impl Events for Collect {
    fn token(&mut self, t: Token<'_>) {
        self.ids.push(t.id);
        self.text.extend_from_slice(t.text);
    }
}

/// Runs `t` on the host with [`crate::lm::run`] at the image's context: the ids and
/// text it emits.
fn host_tokens(t: &GenerateTest) -> Result<(Vec<u32>, Vec<u8>), BuildError> {
    let image = AlignedBytes::new(&t.image);
    let [a, i, p, k] = lm::buffer_sizes(image.bytes(), t.prompt.len(), t.kv, t.arith)
        .map_err(|e| format!("{}: {e}", t.name))?;
    let (mut arena, mut index) = (vec![0u8; a], vec![0u32; i]);
    let mut probs = vec![Default::default(); p];
    let mut tokens = vec![0u32; k];
    let buffers = Buffers {
        arena: &mut arena,
        index: &mut index,
        probs: &mut probs,
        tokens: &mut tokens,
    };
    let mut out = Collect::default();
    lm::run(image.bytes(), usize::MAX, &t.settings(), buffers, &mut out)
        .map_err(|e| format!("{} fails on the host: {e:?}", t.name))?;
    Ok((out.ids, out.text))
}

/// llama2.c's first 24 ids for aidreams260K, greedy, empty prompt (`run -t 0`;
/// `reference-llama2c.json`).
pub const LLAMA2C_AIDREAMS_GREEDY: [u32; 24] = [
    319, 459, 355, 260, 275, 429, 339, 315, 374, 327, 446, 262, 421, 392, 275, 280, 269, 440, 270,
    283, 446, 299, 303, 266,
];

/// Writes `out_dir/generate.rs` for the on-target generation suite: `TESTS`, one
/// [`crate::lm::GenerateTest`] per test — the image (`out_dir/<name>.bin`, embedded
/// 4-byte aligned), its settings, and the ids and text the host's run of the same
/// code emits — and `GEN_ARENA`, `GEN_INDEX`, `GEN_PROBS`, `GEN_TOKENS`, the
/// largest buffers any test needs. The aidreams260K greedy run must give
/// llama2.c's ids here already ([`LLAMA2C_AIDREAMS_GREEDY`]).
pub fn write_generate(out_dir: &Path, models: TestModels) -> Result<(), BuildError> {
    let mut src = String::from(
        "// Generated by microformer_firmware::host::write_generate. Do not edit.\n\n\
         use microformer_firmware::lm::GenerateTest;\n\
         use microformer_firmware::Aligned;\n",
    );
    let mut max = [0usize; 4];
    let mut list = String::new();
    let mut images: Vec<(Vec<u8>, &str)> = Vec::new();
    for t in generate_tests(models)? {
        let (ids, text) = host_tokens(&t)?;
        let llama2c: &[u32] = if t.name == "AIDREAMS_F32_GREEDY" {
            &LLAMA2C_AIDREAMS_GREEDY
        } else {
            &[]
        };
        if !ids.starts_with(llama2c) {
            return Err(format!(
                "{}: the host's ids {ids:?} differ from llama2.c's {llama2c:?}",
                t.name
            ));
        }
        let sizes = lm::buffer_sizes(
            AlignedBytes::new(&t.image).bytes(),
            t.prompt.len(),
            t.kv,
            t.arith,
        )
        .map_err(|e| format!("{}: {e}", t.name))?;
        for (m, s) in max.iter_mut().zip(sizes) {
            *m = (*m).max(s);
        }
        let settings = t.settings();
        let name = t.name;
        // Tests of the same image share one copy in flash.
        let image = match images.iter().find(|(bytes, _)| *bytes == t.image) {
            Some((_, first)) => format!("{first}_IMAGE"),
            None => {
                let file = out_dir.join(format!("{}.bin", t.name.to_lowercase()));
                fs::write(&file, &t.image).map_err(|e| format!("{}: {e}", file.display()))?;
                let _ = write!(
                    src,
                    "\nstatic {name}_IMAGE: &Aligned<[u8]> = &Aligned(*include_bytes!({file:?}));\n"
                );
                images.push((t.image.clone(), name));
                format!("{name}_IMAGE")
            }
        };
        let _ = write!(
            src,
            "static {name}_IDS: [u32; {}] = {ids:?};\n\
             static {name}_TEXT: [u8; {}] = {text:?};\n\
             static {name}_LLAMA2C: [u32; {}] = {llama2c:?};\n",
            ids.len(),
            text.len(),
            llama2c.len(),
        );
        let _ = write!(
            list,
            "    GenerateTest {{\n        name: {name:?},\n        image: &{image}.0,\n        \
             settings: {},\n        ids: &{name}_IDS,\n        text: &{name}_TEXT,\n        \
             llama2c_ids: &{name}_LLAMA2C,\n    }},\n",
            settings_expr(&settings).replace('\n', "\n        ")
        );
    }
    let [a, i, p, k] = max;
    let _ = write!(
        src,
        "\n/// The generation tests, with the host's results.\n\
         pub static TESTS: &[GenerateTest] = &[\n{list}];\n\
         \n/// Session arena bytes of the largest test.\npub const GEN_ARENA: usize = {a};\n\
         /// Tokenizer index entries.\npub const GEN_INDEX: usize = {i};\n\
         /// Top-p scratch entries.\npub const GEN_PROBS: usize = {p};\n\
         /// Prompt token entries.\npub const GEN_TOKENS: usize = {k};\n"
    );
    let path = out_dir.join("generate.rs");
    fs::write(&path, src).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
