//! What microformer's real boards share (`boards/stm32f429i-disco`, `boards/nrf52840-dk`,
//! `boards/rp-pico`): flashed and logged with probe-rs, they embed a model image in flash,
//! open it, and stream the generated text over defmt/RTT (and a serial port where the board
//! has one wired to the host).
//!
//! - [`run`]: the run itself, free of any logger (so the host test checks it against
//!   llama2.c's output): the image is parsed and validated, the arena is checked against
//!   [`microformer::model::Model::arena_bytes`] for the board's context *before* anything is
//!   carved from it, the tokenizer index is built, the prompt encoded, and llama2.c's
//!   generation loop ([`microformer::generate::generate`]) runs; every decoded piece goes to
//!   [`Events::piece`].
//! - [`Memory`]: everything the run needs in RAM, sized at compile time (one zeroed
//!   `static`: it lands in `.bss` and costs no flash).
//! - `app` (feature `defmt`): the firmware's main program on top of [`run`]: logs the model,
//!   the arena check (a clear error when the arena is too small, with the largest context
//!   that fits), the text line by line, and the speed.
//! - [`budgets`]: each board's arena and context, and why they fit.
//! - `host` (feature `std`): the build-script helpers that embed the image (a prebuilt file,
//!   or a llama2.c checkpoint converted at the board's context with the library's
//!   conversion) and the run settings.
//!
//! `no_std`, no allocation; `std` only adds the build-script helpers.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(feature = "defmt")]
pub mod app;
pub mod budgets;
#[cfg(feature = "std")]
pub mod host;

use core::fmt;

use microformer::generate::{self, Generated};
use microformer::image::Image;
use microformer::model::{Model, Session};
use microformer::sampler::{ProbIndex, Sampler};
use microformer::tokenizer::{self, Tokenizer};
use microformer::Error;

/// Bytes aligned to 4, as [`Image::parse`] requires:
/// `static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!("model.bin"));`.
#[repr(C, align(4))]
pub struct Aligned<T: ?Sized>(pub T);

/// The RNG seed used for seed 0 (0 is a fixed point of llama2.c's xorshift), as
/// `microformer run` does: 2^64/φ.
pub const SEED_FOR_ZERO: u64 = 0x9E37_79B9_7F4A_7C15;

/// Run settings chosen at build time (see `host::write_inputs`).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Settings {
    /// Positions to run (llama2.c's `-n`); 0, or more than the context, means the whole
    /// context.
    pub steps: u32,
    /// Sampler seed (llama2.c's `-s`); 0 stands for [`SEED_FOR_ZERO`].
    pub seed: u64,
    /// Sampling temperature (llama2.c's `-t`); 0 is greedy argmax.
    pub temperature: f32,
    /// Top-p threshold (llama2.c's `-p`); 0 or 1 is plain multinomial sampling.
    pub topp: f32,
    /// The prompt text (llama2.c's `-i`), encoded with BOS first.
    pub prompt: &'static str,
}

impl Settings {
    /// The settings when no variable is set: the whole context, seed 42, llama2.c's
    /// sampling defaults (temperature 1.0, top-p 0.9), empty prompt.
    pub const DEFAULT: Settings = Settings {
        steps: 0,
        seed: 42,
        temperature: 1.0,
        topp: 0.9,
        prompt: "",
    };
}

/// Everything a run needs in RAM, sized at compile time:
///
/// - `arena`: the session's working memory (activations, logits, the f32 KV cache) —
///   `ARENA` bytes at the start of the block (4-byte aligned, as [`Model::arena_bytes`]
///   counts), checked against [`Model::arena_bytes`] at start;
/// - the tokenizer index: `VOCAB` record offsets and `VOCAB` sorted ids
///   ([`tokenizer::INDEX_BYTES_PER_TOKEN`] = 8 bytes per token);
/// - the prompt's tokens and the encoder's scratch, `PROMPT` each
///   ([`tokenizer::max_encoded_len`] of the prompt's length);
/// - the top-p sampler's scratch: `VOCAB` [`ProbIndex`] (8 bytes each).
///
/// Declare it as a `static mut` at the top of the board's `#[cortex_m_rt::entry]` function
/// (cortex-m-rt hands it over as a `&'static mut`): all zeros, it lands in `.bss`.
#[derive(Debug)]
#[repr(C)]
pub struct Memory<const ARENA: usize, const VOCAB: usize, const PROMPT: usize> {
    arena: [u8; ARENA],
    offsets: [u32; VOCAB],
    sorted: [u32; VOCAB],
    prompt: [u32; PROMPT],
    merge: [u32; PROMPT],
    probs: [ProbIndex; VOCAB],
}

impl<const ARENA: usize, const VOCAB: usize, const PROMPT: usize> Memory<ARENA, VOCAB, PROMPT> {
    /// Zeroed memory (a `const fn`, for a `static`).
    pub const fn new() -> Self {
        Self {
            arena: [0; ARENA],
            offsets: [0; VOCAB],
            sorted: [0; VOCAB],
            prompt: [0; PROMPT],
            merge: [0; PROMPT],
            probs: [ProbIndex {
                prob: 0.0,
                index: 0,
            }; VOCAB],
        }
    }

    /// Bytes of the session arena.
    pub const ARENA_BYTES: usize = ARENA;

    /// Bytes of the whole block.
    pub const BYTES: usize = core::mem::size_of::<Self>();
}

impl<const ARENA: usize, const VOCAB: usize, const PROMPT: usize> Default
    for Memory<ARENA, VOCAB, PROMPT>
{
    fn default() -> Self {
        Self::new()
    }
}

/// What a run found out before generating: the model, the context and the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Plan {
    /// Bytes of the image.
    pub image_bytes: usize,
    /// Model width.
    pub dim: u32,
    /// Layers.
    pub n_layers: u32,
    /// Query heads.
    pub n_heads: u32,
    /// Key/value heads.
    pub n_kv_heads: u32,
    /// Vocabulary size.
    pub vocab_size: u32,
    /// Positions the image covers (its RoPE tables).
    pub image_context: u32,
    /// Whether the matrices are Q8_0.
    pub quantized: bool,
    /// The session's context: the board's, capped at the image's.
    pub context: usize,
    /// Arena bytes the session needs ([`Model::arena_bytes`]).
    pub arena_needed: usize,
    /// Arena bytes the firmware reserves.
    pub arena_reserved: usize,
    /// Prompt tokens (BOS included), once encoded; 0 before.
    pub prompt_tokens: usize,
}

/// Why a run could not generate.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RunError {
    /// No image was embedded at build time.
    NoImage,
    /// The image does not parse, or is not a model this runtime runs.
    Image(Error),
    /// The static arena is smaller than the model needs at this context.
    ArenaTooSmall {
        /// The session's context.
        context: usize,
        /// Bytes needed ([`Model::arena_bytes`]).
        needed: usize,
        /// Bytes reserved by the firmware.
        reserved: usize,
        /// The largest context that fits the reserved arena (0: none).
        fits: usize,
    },
    /// The image carries no tokenizer (convert with one).
    NoTokenizer,
    /// The tokenizer index is smaller than the vocabulary.
    VocabTooLarge {
        /// The model's vocabulary.
        vocab: usize,
        /// Entries the firmware reserves.
        capacity: usize,
    },
    /// The tokenizer is malformed.
    Tokenizer(Error),
    /// The prompt cannot be encoded (e.g. its buffer is too small).
    Prompt(Error),
    /// The generation loop stopped on an error.
    Generate(Error),
}

impl From<Error> for RunError {
    fn from(e: Error) -> Self {
        RunError::Generate(e)
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::NoImage => f.write_str(
                "no model image embedded (build with MICROFORMER_CHECKPOINT=<llama2.c .bin> \
                 and MICROFORMER_TOKENIZER=<tokenizer .bin>, or MICROFORMER_IMAGE=<image>)",
            ),
            RunError::Image(e) => write!(f, "model image rejected: {e}"),
            RunError::ArenaTooSmall {
                context,
                needed,
                reserved,
                fits,
            } => write!(
                f,
                "the model needs {needed} arena bytes for a context of {context} but the \
                 firmware reserves {reserved}: the largest context that fits is {fits} \
                 (rebuild with MICROFORMER_CONTEXT={fits}, or a smaller model)"
            ),
            RunError::NoTokenizer => f.write_str(
                "the model image has no tokenizer (convert it with MICROFORMER_TOKENIZER)",
            ),
            RunError::VocabTooLarge { vocab, capacity } => write!(
                f,
                "the vocabulary has {vocab} tokens, the firmware's tokenizer index {capacity}"
            ),
            RunError::Tokenizer(e) => write!(f, "tokenizer rejected: {e}"),
            RunError::Prompt(e) => write!(f, "cannot encode the prompt: {e}"),
            RunError::Generate(e) => write!(f, "generation stopped: {e}"),
        }
    }
}

/// What a run reports as it goes.
pub trait Events {
    /// The model is open and the arena checked; the prompt is encoded; generation starts.
    fn started(&mut self, plan: &Plan);
    /// A decoded piece of text, as llama2.c prints it (`decode` then `safe_printf`: control
    /// bytes other than whitespace are dropped).
    fn piece(&mut self, bytes: &[u8]);
}

/// The largest context whose arena fits `reserved` bytes, at most `max` (0: none).
pub fn largest_context(model: &Model<'_>, reserved: usize, max: usize) -> usize {
    let base = model.arena_bytes(0);
    let per_position = model.arena_bytes(1).saturating_sub(base);
    let fits = reserved
        .checked_sub(base)
        .and_then(|room| room.checked_div(per_position))
        .unwrap_or(0);
    fits.min(max)
}

/// Runs the model in `image` for up to `context` positions (capped at the image's) with
/// `settings`, in `memory`; reports to `events`.
///
/// Checks, in this order and before any generation: an image is present
/// ([`RunError::NoImage`]) and valid ([`RunError::Image`]); the arena holds
/// [`Model::arena_bytes`]`(context)` ([`RunError::ArenaTooSmall`], with the largest
/// context that fits); the image has a tokenizer ([`RunError::NoTokenizer`]) that the
/// index can hold ([`RunError::VocabTooLarge`]) and that is well formed
/// ([`RunError::Tokenizer`]); the prompt encodes ([`RunError::Prompt`]). Then llama2.c's
/// loop runs, stopping early on the image's BOS token.
pub fn run<const ARENA: usize, const VOCAB: usize, const PROMPT: usize>(
    image: &[u8],
    context: usize,
    settings: &Settings,
    memory: &mut Memory<ARENA, VOCAB, PROMPT>,
    events: &mut impl Events,
) -> Result<Generated, RunError> {
    if image.is_empty() {
        return Err(RunError::NoImage);
    }
    let model =
        Model::new(Image::parse(image).map_err(RunError::Image)?).map_err(RunError::Image)?;
    let h = *model.header();
    let context = context.min(model.max_context());
    let reserved = Memory::<ARENA, VOCAB, PROMPT>::ARENA_BYTES;
    let needed = model.arena_bytes(context);
    if needed > reserved {
        return Err(RunError::ArenaTooSmall {
            context,
            needed,
            reserved,
            fits: largest_context(&model, reserved, model.max_context()),
        });
    }
    let vocab = model.vocab_size();
    let data = model.tokenizer().ok_or(RunError::NoTokenizer)?;
    if vocab > VOCAB {
        return Err(RunError::VocabTooLarge {
            vocab,
            capacity: VOCAB,
        });
    }
    let Memory {
        arena,
        offsets,
        sorted,
        prompt,
        merge,
        probs,
    } = memory;
    let tok = Tokenizer::new(data, vocab, offsets, sorted).map_err(RunError::Tokenizer)?;
    let n = tok
        .encode(settings.prompt.as_bytes(), true, false, prompt, merge)
        .map_err(RunError::Prompt)?;
    let tokens = prompt
        .get(..n)
        .ok_or(RunError::Prompt(Error::InvalidParameter))?;
    let seed = if settings.seed == 0 {
        SEED_FOR_ZERO
    } else {
        settings.seed
    };
    let mut sampler = Sampler::new(settings.temperature, settings.topp, seed)?;
    let mut session = Session::new(&model, &mut arena[..], context)?;
    events.started(&Plan {
        image_bytes: image.len(),
        dim: h.dim,
        n_layers: h.n_layers,
        n_heads: h.n_heads,
        n_kv_heads: h.n_kv_heads,
        vocab_size: h.vocab_size,
        image_context: h.seq_len,
        quantized: model.is_quantized(),
        context,
        arena_needed: needed,
        arena_reserved: reserved,
        prompt_tokens: n,
    });
    generate::generate::<RunError>(
        &mut session,
        &mut sampler,
        &mut probs[..],
        tokens,
        settings.steps as usize,
        Some(h.bos_id),
        |prev, next| {
            let piece = tok.decode(prev, next)?;
            events.piece(tokenizer::safe_piece(piece));
            Ok(())
        },
    )
}
