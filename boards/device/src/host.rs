//! Build-script helpers (feature `std`): every real board's `build.rs` calls these on the
//! host.
//!
//! - [`linker_script`]: the board's `memory.x` to the linker.
//! - [`write_inputs`]: the model image and the run settings, as `OUT_DIR/inputs.rs`:
//!   - `MICROFORMER_IMAGE`: a prebuilt image (`microformer convert`), embedded as is; or
//!   - `MICROFORMER_CHECKPOINT` (a llama2.c `.bin`: v0, v1 or v2) with
//!     `MICROFORMER_TOKENIZER` (its llama2.c tokenizer file), converted here with the
//!     library's conversion ([`microformer::convert::llama2c`]) into an image of the
//!     board's context: Q8_0 matrices by default (`MICROFORMER_QUANT=f32` for f32), RoPE
//!     tables computed as llama2.c's `run.c` computes its angles (f32 `powf`, `cosf`,
//!     `sinf` of the host);
//!   - neither: no image (the firmware says how to embed one).
//!
//!   `MICROFORMER_CONTEXT` overrides the board's context; `MICROFORMER_STEPS`,
//!   `MICROFORMER_SEED`, `MICROFORMER_TEMPERATURE`, `MICROFORMER_TOPP` and
//!   `MICROFORMER_PROMPT` set the run (see [`crate::Settings`]). Relative paths are taken
//!   from the board's directory (where cargo runs build scripts).
//!
//! The image is checked here too: when its arena for the context exceeds the board's,
//! the build warns (the firmware reports the same at start, with the largest context that
//! fits). `OUT_DIR/summary.txt` lists the figures (`key=value` lines) for `cargo xtask`.

use std::fmt::Write as _;
use std::path::Path;
use std::{env, fs};

use microformer::convert::llama2c::{self, Checkpoint, ImageOptions};
use microformer::image::{Image, TensorSource};
use microformer::model::Model;
use microformer::tokenizer;

use crate::budgets::Budget;
use crate::{largest_context, Settings};

/// An error of a build-script helper, as text for the build log.
pub type BuildError = String;

/// Copies `memory_x` to `out_dir` and puts `out_dir` on the linker's search path
/// (cortex-m-rt's `link.x` includes `memory.x`).
pub fn linker_script(memory_x: &Path, out_dir: &Path) -> Result<(), BuildError> {
    fs::copy(memory_x, out_dir.join("memory.x"))
        .map_err(|e| format!("cannot copy {}: {e}", memory_x.display()))?;
    println!("cargo:rustc-link-search={}", out_dir.display());
    println!("cargo:rerun-if-changed={}", memory_x.display());
    Ok(())
}

/// Bytes at a 4-byte aligned address (checkpoints and images are read as `f32`/`u32`).
struct Aligned {
    words: Vec<u32>,
    len: usize,
}

impl Aligned {
    fn new(bytes: &[u8]) -> Self {
        let mut words = vec![0u32; bytes.len().div_ceil(4)];
        let dst: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        dst[..bytes.len()].copy_from_slice(bytes);
        Aligned {
            words,
            len: bytes.len(),
        }
    }

    fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }
}

/// Converts a llama2.c checkpoint (v0, v1 or v2) into an image of `context` positions,
/// with `tokenizer` embedded: Q8_0 matrices when `q8` (the checkpoint's group size, else
/// llama2.c `export.py`'s default), else f32. The RoPE tables are computed as `run.c`
/// computes its angles, with the host's f32 `powf`, `cos` and `sin`.
///
/// Errors: a checkpoint that does not parse, a context beyond the checkpoint's, a
/// tokenizer that does not fit the vocabulary, and every conversion error.
pub fn convert_llama2c(
    checkpoint: &[u8],
    tokenizer: Option<&[u8]>,
    q8: bool,
    context: usize,
) -> Result<Vec<u8>, BuildError> {
    let data = Aligned::new(checkpoint);
    let ck = Checkpoint::parse(data.bytes())
        .map_err(|e| format!("not a valid llama2.c checkpoint: {e}"))?;
    let c = *ck.config();
    if context == 0 || context > c.seq_len {
        return Err(format!(
            "context {context} is outside the checkpoint's 1..={}",
            c.seq_len
        ));
    }
    if let Some(t) = tokenizer {
        let mut offsets = vec![0u32; c.vocab_size];
        let mut sorted = vec![0u32; c.vocab_size];
        tokenizer::Tokenizer::new(t, c.vocab_size, &mut offsets, &mut sorted).map_err(|e| {
            format!(
                "the tokenizer does not fit the vocabulary of {}: {e}",
                c.vocab_size
            )
        })?;
    }
    let quant = if q8 {
        let g = ck
            .group_size()
            .unwrap_or_else(|| llama2c::default_group_size(&c));
        if g % 4 != 0 {
            return Err(format!(
                "no Q8 group size of a multiple of 4 divides dim {}: use MICROFORMER_QUANT=f32",
                c.dim
            ));
        }
        llama2c::Quant::Q8 { group_size: g }
    } else {
        llama2c::Quant::F32
    };
    let hs = c.head_size();
    let n = context * (hs / 2);
    let (mut cos, mut sin) = (vec![0f32; n], vec![0f32; n]);
    llama2c::fill_rope_tables(hs, &mut cos, &mut sin, f32::powf, f32::cos, f32::sin)
        .map_err(|e| format!("RoPE tables: {e}"))?;
    let opts = ImageOptions {
        quant,
        context,
        rope_cos: &cos,
        rope_sin: &sin,
        tokenizer,
    };
    let sizes = llama2c::sizes(&ck, &opts).map_err(|e| format!("cannot convert: {e}"))?;
    let mut scratch = vec![0u32; sizes.scratch_words];
    let mut sources = vec![TensorSource::U8(&[]); sizes.n_tensors];
    let mut out = vec![0u8; sizes.image_bytes];
    let len = llama2c::to_image(&ck, &opts, &mut scratch, &mut sources, &mut out)
        .map_err(|e| format!("cannot convert: {e}"))?;
    out.truncate(len);
    Ok(out)
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

fn read(name: &str, path: &str) -> Result<Vec<u8>, BuildError> {
    println!("cargo:rerun-if-changed={path}");
    fs::read(path).map_err(|e| format!("{name}={path}: {e}"))
}

/// The image the variables name, and where it comes from (for the summary).
fn image(context: usize) -> Result<(Vec<u8>, String), BuildError> {
    if let Some(path) = var("MICROFORMER_IMAGE") {
        return Ok((read("MICROFORMER_IMAGE", &path)?, format!("image {path}")));
    }
    let Some(path) = var("MICROFORMER_CHECKPOINT") else {
        return Ok((Vec::new(), String::from("none")));
    };
    let checkpoint = read("MICROFORMER_CHECKPOINT", &path)?;
    let tokenizer = match var("MICROFORMER_TOKENIZER") {
        Some(t) => Some(read("MICROFORMER_TOKENIZER", &t)?),
        None => None,
    };
    let q8 = match var("MICROFORMER_QUANT").as_deref() {
        None | Some("q8") => true,
        Some("f32") => false,
        Some(other) => return Err(format!("MICROFORMER_QUANT={other:?}: use q8 or f32")),
    };
    let image = convert_llama2c(&checkpoint, tokenizer.as_deref(), q8, context)
        .map_err(|e| format!("MICROFORMER_CHECKPOINT={path}: {e}"))?;
    let what = format!(
        "checkpoint {path}, {}, context {context}",
        if q8 { "Q8_0" } else { "f32" }
    );
    Ok((image, what))
}

/// Writes `out_dir/model.bin`, `out_dir/inputs.rs` and `out_dir/summary.txt` (see the
/// module documentation).
///
/// `inputs.rs` holds `MODEL` (the image, 4-byte aligned; empty when none), `CONTEXT`,
/// `ARENA_BYTES` (from `board`), `VOCAB` (the model's vocabulary, sizing the tokenizer
/// index; 0 without a model), `PROMPT_TOKENS` (room for the encoded prompt) and
/// `SETTINGS`.
pub fn write_inputs(out_dir: &Path, board: Budget) -> Result<(), BuildError> {
    let context: usize = parse("MICROFORMER_CONTEXT", board.context)?;
    if context == 0 {
        return Err("MICROFORMER_CONTEXT must be at least 1".into());
    }
    let (bytes, source) = image(context)?;
    let mut summary = format!(
        "source={source}\nimage_bytes={}\ncontext={context}\narena_reserved={}\n",
        bytes.len(),
        board.arena_bytes
    );
    let mut vocab = 0;
    if !bytes.is_empty() {
        let data = Aligned::new(&bytes);
        let model = Image::parse(data.bytes())
            .and_then(Model::new)
            .map_err(|e| format!("the model image is not valid: {e}"))?;
        let ctx = context.min(model.max_context());
        let needed = model.arena_bytes(ctx);
        vocab = model.vocab_size();
        let _ = write!(
            summary,
            "model_context={ctx}\narena_needed={needed}\nquantized={}\nvocab={vocab}\n",
            model.is_quantized()
        );
        if needed > board.arena_bytes {
            println!(
                "cargo:warning=the model needs {needed} arena bytes for a context of {ctx}, \
                 the board reserves {}: the firmware will stop with an error (largest \
                 context that fits: {}; set MICROFORMER_CONTEXT)",
                board.arena_bytes,
                largest_context(&model, board.arena_bytes, model.max_context())
            );
        }
        if model.tokenizer().is_none() {
            println!("cargo:warning=the model image has no tokenizer: set MICROFORMER_TOKENIZER");
        }
    }
    let model = out_dir.join("model.bin");
    fs::write(&model, &bytes).map_err(|e| format!("{}: {e}", model.display()))?;

    let d = Settings::DEFAULT;
    let steps: u32 = parse("MICROFORMER_STEPS", d.steps)?;
    let seed: u64 = parse("MICROFORMER_SEED", d.seed)?;
    let temperature: f32 = parse("MICROFORMER_TEMPERATURE", d.temperature)?;
    let topp: f32 = parse("MICROFORMER_TOPP", d.topp)?;
    if !temperature.is_finite() || temperature < 0.0 || !(0.0..=1.0).contains(&topp) {
        return Err(format!(
            "MICROFORMER_TEMPERATURE={temperature} must be >= 0 and MICROFORMER_TOPP={topp} \
             in [0, 1]"
        ));
    }
    let prompt = var("MICROFORMER_PROMPT").unwrap_or_default();
    let prompt_tokens = tokenizer::max_encoded_len(prompt.len());
    let arena = board.arena_bytes;
    let src = format!(
        "// Generated by microformer_device::host::write_inputs. Do not edit.\n\n\
         /// The model image embedded at build time ({source}), 4-byte aligned; empty when\n\
         /// none was given.\n\
         pub static MODEL: &microformer_device::Aligned<[u8]> =\n    \
         &microformer_device::Aligned(*include_bytes!({model:?}));\n\n\
         /// Positions of the session (capped at the image's).\n\
         pub const CONTEXT: usize = {context};\n\n\
         /// Bytes of the static session arena.\n\
         pub const ARENA_BYTES: usize = {arena};\n\n\
         /// Entries of the tokenizer index (the model's vocabulary).\n\
         pub const VOCAB: usize = {vocab};\n\n\
         /// Room for the encoded prompt.\n\
         pub const PROMPT_TOKENS: usize = {prompt_tokens};\n\n\
         /// Run settings chosen at build time.\n\
         pub static SETTINGS: microformer_device::Settings = microformer_device::Settings {{\n    \
         steps: {steps},\n    seed: {seed},\n    \
         temperature: f32::from_bits({:#010x}),\n    topp: f32::from_bits({:#010x}),\n    \
         prompt: {prompt:?},\n}};\n\n\
         /// The memory of a run: the arena, the tokenizer index, the prompt, the sampler.\n\
         pub type Memory = microformer_device::Memory<ARENA_BYTES, VOCAB, PROMPT_TOKENS>;\n",
        temperature.to_bits(),
        topp.to_bits()
    );
    let path = out_dir.join("inputs.rs");
    fs::write(&path, src).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let path = out_dir.join("summary.txt");
    fs::write(&path, summary).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
