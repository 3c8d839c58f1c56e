//! The language-model run, shared by every board (QEMU and real): open the
//! embedded image, check the arena against the model's needs for the context,
//! then run the library's [`Generator`] (tokenizer index, prompt, llama2.c's
//! generation loop), reporting every token to [`Events`].
//!
//! Free of any logger and of the board, so the same code runs on the host (the
//! boards' build scripts compute the tokens the target must produce, and
//! `tests/run.rs` checks the text against llama2.c's) and on the target. Memory
//! comes from the caller (the library's [`Buffers`]), usually one zeroed `static`
//! [`Memory`] sized by the build script (`inputs::Memory`, see `host::write_inputs`).

use core::fmt;

use microformer::generate::Generated;
pub use microformer::lm::{Buffers, Memory, Token};
use microformer::lm::{Generator, Options, Prompt};
use microformer::model::{Arith, KvFormat, Model, Session};
use microformer::perplexity::chunks;
pub use microformer::perplexity::Perplexity;
use microformer::Error;

use crate::out::{Failure, Out, Passed};
use crate::Settings;

/// Why a run could not generate.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RunError {
    /// No image was embedded at build time.
    NoImage,
    /// The image does not parse, or is not a model this runtime runs.
    Image(Error),
    /// The arena is smaller than the model needs at this context.
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
    /// The image carries no tokenizer, and the prompt or the caller needs one.
    NoTokenizer,
    /// The tokenizer index is smaller than the vocabulary.
    VocabTooLarge {
        /// The model's vocabulary.
        vocab: usize,
        /// Entries the index has room for.
        capacity: usize,
    },
    /// The tokenizer is malformed.
    Tokenizer(Error),
    /// The prompt cannot be encoded (e.g. its buffer is too small).
    Prompt(Error),
    /// The session, the sampler or the generation loop stopped on an error.
    Generate(Error),
    /// A perplexity window shorter than 2 or longer than the image's context (a
    /// learned position table has no row past it).
    Window {
        /// Positions asked for.
        window: usize,
        /// The image's context.
        context: usize,
    },
    /// Perplexity mode without a token stream embedded at build time
    /// (`MICROFORMER_TEXT`).
    NoText,
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
            RunError::Window { window, context } => write!(
                f,
                "a window of {window} positions exceeds the image's context of {context}"
            ),
            RunError::NoText => f.write_str(
                "no token stream embedded: build with MICROFORMER_TEXT=<text file> to score it",
            ),
        }
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
    /// The session's context: the caller's, capped at the image's.
    pub context: usize,
    /// Arena bytes the session needs ([`Model::arena_bytes`]).
    pub arena_needed: usize,
    /// Arena bytes the caller reserves.
    pub arena_reserved: usize,
    /// Prompt tokens (BOS included).
    pub prompt_tokens: usize,
    /// Whether the image has a tokenizer (without one, tokens carry no text).
    pub tokenizer: bool,
}

/// What a run reports as it goes.
pub trait Events {
    /// The model is open, the arena checked, the prompt encoded: generation starts.
    fn started(&mut self, plan: &Plan) {
        let _ = plan;
    }
    /// A token llama2.c would print.
    fn token(&mut self, token: Token<'_>);
    /// Whether the run needs text: then an image without a tokenizer is
    /// [`RunError::NoTokenizer`] even with an empty prompt (the real boards, whose
    /// output is the text). Otherwise such an image runs from BOS alone and its
    /// tokens carry no text.
    fn needs_tokenizer(&self) -> bool {
        false
    }
}

/// The largest context whose arena (KV cache format `kv`, arithmetic `arith`)
/// fits `reserved` bytes, at most `max` (0: none).
pub fn largest_context(
    model: &Model<'_>,
    reserved: usize,
    max: usize,
    kv: KvFormat,
    arith: Arith,
) -> usize {
    let base = model.arena_bytes_for(0, kv, arith);
    let per_position = model.arena_bytes_for(1, kv, arith).saturating_sub(base);
    let fits = reserved
        .checked_sub(base)
        .and_then(|room| room.checked_div(per_position))
        .unwrap_or(0);
    fits.min(max)
}

/// Runs the model in `image` for up to `context` positions (capped at the image's)
/// with `settings` (see [`crate::settings`]), in `buf`; reports to `events`.
///
/// Checks, in this order and before any generation: an image is present
/// ([`RunError::NoImage`]) and valid ([`RunError::Image`]); the arena holds
/// [`Model::arena_bytes`]`(context)` ([`RunError::ArenaTooSmall`], with the largest
/// context that fits); the image has a tokenizer when the prompt or `events` needs
/// one ([`RunError::NoTokenizer`]), that the index can hold
/// ([`RunError::VocabTooLarge`]) and that is well formed ([`RunError::Tokenizer`]);
/// the prompt encodes ([`RunError::Prompt`]; a prompt given as ids,
/// [`Settings::prompt_ids`], is used as given, with or without a tokenizer, as
/// `microformer run --prompt-ids`). Then llama2.c's loop runs, stopping
/// early on the image's BOS token when [`Settings::stop_at_bos`].
pub fn run(
    image: &[u8],
    context: usize,
    settings: &Settings<'_>,
    buf: Buffers<'_>,
    events: &mut impl Events,
) -> Result<Generated, RunError> {
    if image.is_empty() {
        return Err(RunError::NoImage);
    }
    let model = Model::from_bytes(image).map_err(RunError::Image)?;
    let h = model.header();
    let context = context.min(model.max_context());
    let Buffers {
        arena,
        index,
        probs,
        tokens,
    } = buf;
    let reserved = arena.len();
    let needed = model.arena_bytes_for(context, settings.kv, settings.arith);
    if needed > reserved {
        return Err(RunError::ArenaTooSmall {
            context,
            needed,
            reserved,
            fits: largest_context(
                &model,
                reserved,
                model.max_context(),
                settings.kv,
                settings.arith,
            ),
        });
    }
    let vocab = model.vocab_size();
    let ids_mode = !settings.prompt_ids.is_empty();
    microformer::sampler::Sampler::new(settings.temperature, settings.topp, settings.rng_state())?;
    match model.tokenizer() {
        Some(_) if index.len() / 2 < vocab => {
            return Err(RunError::VocabTooLarge {
                vocab,
                capacity: index.len() / 2,
            })
        }
        None if events.needs_tokenizer() || !settings.prompt.is_empty() => {
            return Err(RunError::NoTokenizer)
        }
        _ => {}
    }
    // Ids (`prompt_ids`), used as given: parsed into the token buffer, which the
    // generator then does not need. Not with a text prompt.
    let (prompt, tokens) = if ids_mode {
        if !settings.prompt.is_empty() {
            return Err(RunError::Prompt(Error::InvalidParameter));
        }
        let got = tokens.len();
        let mut n = 0;
        for id in crate::settings::prompt_ids(settings.prompt_ids) {
            let slot = tokens
                .get_mut(n)
                .ok_or(RunError::Prompt(Error::BufferTooSmall {
                    needed: n + 1,
                    got,
                }))?;
            *slot = id.ok_or(RunError::Prompt(Error::InvalidParameter))?;
            n += 1;
        }
        let ids: &[u32] = tokens;
        let ids = ids
            .get(..n)
            .ok_or(RunError::Prompt(Error::InvalidParameter))?;
        (Prompt::Ids(ids), &mut [][..])
    } else {
        (Prompt::Text(settings.prompt), tokens)
    };
    let options = Options {
        prompt,
        steps: settings.steps as usize,
        temperature: settings.temperature,
        topp: settings.topp,
        seed: settings.seed,
        stop_at_bos: settings.stop_at_bos,
        kv: settings.kv,
        arith: settings.arith,
        context,
    };
    let buf = Buffers {
        arena,
        index,
        probs,
        tokens,
    };
    let mut generator = Generator::new(&model, buf, &options).map_err(|e| match e {
        // The tokenizer file's own defects.
        Error::Truncated | Error::InvalidTokenLength { .. } | Error::VocabSizeMismatch { .. } => {
            RunError::Tokenizer(e)
        }
        Error::EmptyPrompt | Error::PromptTooLong { .. } | Error::TokenOutOfRange { .. } => {
            RunError::Generate(e)
        }
        _ if ids_mode => RunError::Generate(e),
        e => RunError::Prompt(e),
    })?;
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
        prompt_tokens: generator.prompt_tokens(),
        tokenizer: generator.tokenizer().is_some(),
    });
    for token in &mut generator {
        events.token(token?);
    }
    Ok(generator.generated())
}

/// Scores `tokens` with the model in `image`, as `microformer perplexity --window
/// window` does on the host: non-overlapping windows of BOS then `window − 1`
/// tokens ([`microformer::perplexity`]), a session of `window − 1` positions in
/// `arena` with a KV cache of format `kv` and arithmetic `arith`. The same code, the same tokens and the
/// same arithmetic as the host's, so the figures agree bit for bit.
///
/// Errors: no image ([`RunError::NoImage`]) or tokens ([`RunError::NoText`]); an
/// image that does not open; a window past the image's context
/// ([`RunError::Window`]); an arena too small for it ([`RunError::ArenaTooSmall`]);
/// a token outside the vocabulary ([`RunError::Generate`]).
pub fn perplexity(
    image: &[u8],
    window: usize,
    kv: KvFormat,
    arith: Arith,
    tokens: &[u32],
    arena: &mut [u8],
) -> Result<Perplexity, RunError> {
    if image.is_empty() {
        return Err(RunError::NoImage);
    }
    if tokens.is_empty() {
        return Err(RunError::NoText);
    }
    let model = Model::from_bytes(image).map_err(RunError::Image)?;
    let context = model.max_context();
    if window < 2 || window > context {
        return Err(RunError::Window { window, context });
    }
    let positions = window - 1;
    let needed = model.arena_bytes_for(positions, kv, arith);
    let reserved = arena.len();
    if needed > reserved {
        return Err(RunError::ArenaTooSmall {
            context: positions,
            needed,
            reserved,
            fits: largest_context(&model, reserved, context, kv, arith),
        });
    }
    let mut session = Session::open(&model, arena, positions, kv, arith)?;
    let bos = model.header().bos_id;
    let mut ppl = Perplexity::new();
    for chunk in chunks(tokens, window) {
        ppl.window(&mut session, bos, chunk)?;
    }
    Ok(ppl)
}

/// Sizes of [`Buffers`] for `image` at its own context, a KV cache of format
/// `kv`, arithmetic `arith` and a prompt of up to `prompt_bytes` bytes:
/// [`microformer::lm::buffer_sizes`].
pub fn buffer_sizes(
    image: &[u8],
    prompt_bytes: usize,
    kv: KvFormat,
    arith: Arith,
) -> Result<[usize; 4], Error> {
    Ok(microformer::lm::buffer_sizes(
        &Model::from_bytes(image)?,
        prompt_bytes,
        kv,
        arith,
    ))
}

/// One on-target generation test (written by `host::write_generate`): an image,
/// settings, and what the host's run of [`run`] emitted.
#[derive(Debug, Clone, Copy)]
pub struct GenerateTest {
    /// Its name.
    pub name: &'static str,
    /// The image (4-byte aligned).
    pub image: &'static [u8],
    /// The settings.
    pub settings: Settings<'static>,
    /// The ids the host emitted.
    pub ids: &'static [u32],
    /// The text the host printed (empty without a tokenizer).
    pub text: &'static [u8],
    /// llama2.c's ids for the same run, when known (a prefix of `ids`).
    pub llama2c_ids: &'static [u32],
}

/// Compares a run's tokens with a [`GenerateTest`]'s as they come.
struct Compare<'t, 'o> {
    test: &'t GenerateTest,
    out: Out<'o>,
    text_at: usize,
    text_ok: bool,
    llama_ok: bool,
    n: usize,
}

impl Events for Compare<'_, '_> {
    fn token(&mut self, t: Token<'_>) {
        self.out.u32("token id", t.id);
        if let Some(&want) = self.test.llama2c_ids.get(self.n) {
            self.llama_ok &= want == t.id;
        }
        self.n += 1;
        let end = self.text_at + t.text.len();
        self.text_ok &= self.test.text.get(self.text_at..end) == Some(t.text);
        self.text_at = end;
    }
}

/// Runs `test` here, at the image's context, and compares every id with the
/// host's (word for word, as the on-target cases are compared), the text byte for
/// byte, and llama2.c's ids.
pub fn check_generate(test: &GenerateTest, buffers: Buffers<'_>) -> Result<Passed, Failure> {
    let mut c = Compare {
        test,
        out: Out::compare(test.ids),
        text_at: 0,
        text_ok: true,
        llama_ok: true,
        n: 0,
    };
    if let Err(e) = run(test.image, usize::MAX, &test.settings, buffers, &mut c) {
        let error = match e {
            RunError::Image(e)
            | RunError::Tokenizer(e)
            | RunError::Prompt(e)
            | RunError::Generate(e) => e,
            RunError::ArenaTooSmall {
                needed, reserved, ..
            } => Error::BufferTooSmall {
                needed,
                got: reserved,
            },
            RunError::VocabTooLarge { vocab, capacity } => Error::BufferTooSmall {
                needed: 2 * vocab,
                got: 2 * capacity,
            },
            RunError::NoImage | RunError::NoTokenizer | RunError::NoText => Error::MissingTensor,
            RunError::Window { context, .. } => Error::ContextFull { context },
        };
        return Err(Failure::Library {
            label: "lm::run",
            error,
        });
    }
    let Compare {
        out,
        text_at,
        text_ok,
        llama_ok,
        n,
        ..
    } = c;
    let passed = out.finish()?;
    if !(text_ok && text_at == test.text.len()) {
        return Err(Failure::Property {
            label: "generated text = the host's",
            index: text_at as u32,
        });
    }
    if !llama_ok || n < test.llama2c_ids.len() {
        return Err(Failure::Property {
            label: "generated ids = llama2.c's",
            index: n as u32,
        });
    }
    Ok(passed)
}
