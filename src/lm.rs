//! Running a tiny language model in ten lines: the image in flash
//! ([`crate::include_image!`]), one statically sized block of RAM ([`Memory`]) and a
//! [`Generator`] that yields tokens with their text.
//!
//! ```ignore
//! use microformer::lm::{Generator, Memory, Options, Prompt};
//! use microformer::model::Model;
//!
//! static IMAGE: &[u8] = microformer::include_image!("model.mfi");
//! static mut MEMORY: Memory<{ 200 * 1024 }, 512, 64> = Memory::new();
//!
//! let model = Model::from_bytes(IMAGE)?;
//! let options = Options { prompt: Prompt::Text("Once upon a time"), ..Options::DEFAULT };
//! for token in Generator::new(&model, memory.buffers(), &options)? {
//!     uart.write_all(token?.text)?;           // llama2.c's text, piece by piece
//! }
//! ```
//!
//! The loop is llama2.c's `generate` ([`crate::generate::Loop`]): the prompt's
//! tokens are forced one by one, then the [`Sampler`] picks each next token,
//! until the step budget is spent or BOS comes; every token is decoded as
//! llama2.c's `decode` + `safe_printf` print it.

use crate::generate::{Generated, Loop};
use crate::model::{Arith, KvFormat, Model, Session};
use crate::sampler::{ProbIndex, Sampler};
use crate::tokenizer::{self, Tokenizer};
use crate::Error;

/// `T` at a 4-byte aligned address, as [`crate::image::Image::parse`] requires
/// (tensors inside an image are aligned relative to its start): what
/// [`crate::include_image!`] puts in flash.
#[derive(Debug)]
#[repr(C, align(4))]
pub struct Aligned<T: ?Sized>(pub T);

/// A model image file embedded at compile time, aligned for
/// [`crate::image::Image::parse`], as a `&'static [u8]`:
/// `static IMAGE: &[u8] = microformer::include_image!("model.mfi");`
/// (the path is relative to the file that uses the macro, as `include_bytes!`).
#[macro_export]
macro_rules! include_image {
    ($path:expr) => {{
        static IMAGE: &$crate::lm::Aligned<[u8]> = &$crate::lm::Aligned(*include_bytes!($path));
        &IMAGE.0
    }};
}

/// The RNG state used for seed 0, as `microformer run` does (0 is a fixed
/// point of llama2.c's xorshift): 2^64/φ.
pub const SEED_FOR_ZERO: u64 = 0x9E37_79B9_7F4A_7C15;

/// The prompt of a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt<'p> {
    /// Text, encoded with BOS first by the image's tokenizer (an empty text is
    /// BOS alone, and needs no tokenizer).
    Text(&'p str),
    /// Token ids, used as given (BOS is not added; read in place, so the
    /// [`Buffers::tokens`] may be empty).
    Ids(&'p [u32]),
}

/// How to generate: llama2.c's `run` flags and the session's shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options<'p> {
    /// The prompt.
    pub prompt: Prompt<'p>,
    /// Positions to run (llama2.c's `-n`): 0, or more than the context, is the
    /// whole context.
    pub steps: usize,
    /// Sampling temperature (`-t`); 0 is greedy argmax.
    pub temperature: f32,
    /// Top-p threshold (`-p`); 0 or 1: plain multinomial sampling.
    pub topp: f32,
    /// Sampler seed (`-s`); 0 stands for [`SEED_FOR_ZERO`].
    pub seed: u64,
    /// End the text when BOS comes next, as llama2.c; `false` runs every step.
    pub stop_at_bos: bool,
    /// The KV cache's format.
    pub kv: KvFormat,
    /// The forward step's arithmetic ([`Arith::Integer`]: with a `Q8` or
    /// `Q16` cache).
    pub arith: Arith,
    /// The session's context: 0 or more than the image covers means the image's.
    pub context: usize,
}

impl Options<'_> {
    /// llama2.c's defaults: empty prompt (BOS), the whole context, temperature
    /// 1.0, top-p 0.9, seed 0, stop at BOS, f32 KV cache, the image's context.
    pub const DEFAULT: Options<'static> = Options {
        prompt: Prompt::Text(""),
        steps: 0,
        temperature: 1.0,
        topp: 0.9,
        seed: 0,
        stop_at_bos: true,
        kv: KvFormat::F32,
        arith: Arith::Float,
        context: 0,
    };

    /// The sampler's xorshift state for [`Options::seed`].
    pub const fn rng_state(&self) -> u64 {
        if self.seed == 0 {
            SEED_FOR_ZERO
        } else {
            self.seed
        }
    }

    /// The session's context for `model`.
    pub fn context_for(&self, model: &Model<'_>) -> usize {
        if self.context == 0 {
            model.max_context()
        } else {
            self.context.min(model.max_context())
        }
    }
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options::DEFAULT
    }
}

/// The caller's memory for a [`Generator`], as slices (see [`Memory`] for one
/// statically sized block).
#[derive(Debug)]
pub struct Buffers<'m> {
    /// The session arena: at least [`Model::arena_bytes_for`]`(context, kv, arith)`
    /// bytes (3 more when it may not start 4-byte aligned).
    pub arena: &'m mut [u8],
    /// Tokenizer index: `2 · vocab` entries (record offsets, then sorted ids).
    pub index: &'m mut [u32],
    /// Top-p scratch: `vocab` entries (none for greedy or plain sampling).
    pub probs: &'m mut [ProbIndex],
    /// Prompt tokens: [`tokenizer::max_encoded_len`]`(prompt bytes)` (none for a
    /// prompt of ids). The encoder's merge scratch, as many again, comes from
    /// the second half of this buffer when it is twice that long, else from
    /// the start of `arena` (before the session opens there).
    pub tokens: &'m mut [u32],
}

/// Everything a [`Generator`] needs in RAM, sized at compile time: the session
/// arena (`ARENA` bytes at the start of the block, so 4-byte aligned), the
/// tokenizer index (`2 · VOCAB` entries: [`tokenizer::INDEX_BYTES_PER_TOKEN`]
/// bytes a token), the prompt's tokens (`PROMPT`: [`tokenizer::max_encoded_len`]
/// of the prompt's length; the encoder's scratch is the arena, before the
/// session opens there) and the top-p scratch (`VOCAB` [`ProbIndex`]).
///
/// All zeros, a `static` of it lands in `.bss` and costs no flash (on
/// cortex-m-rt, declare it `static mut` at the top of the `#[entry]` function,
/// which hands it over as a `&'static mut`).
#[derive(Debug)]
#[repr(C)]
pub struct Memory<const ARENA: usize, const VOCAB: usize, const PROMPT: usize> {
    arena: [u8; ARENA],
    index: [[u32; VOCAB]; 2],
    tokens: [u32; PROMPT],
    probs: [ProbIndex; VOCAB],
}

impl<const ARENA: usize, const VOCAB: usize, const PROMPT: usize> Memory<ARENA, VOCAB, PROMPT> {
    /// Zeroed memory (a `const fn`, for a `static`).
    pub const fn new() -> Self {
        Self {
            arena: [0; ARENA],
            index: [[0; VOCAB]; 2],
            tokens: [0; PROMPT],
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

    /// The block as [`Buffers`].
    pub fn buffers(&mut self) -> Buffers<'_> {
        Buffers {
            arena: &mut self.arena,
            index: self.index.as_flattened_mut(),
            probs: &mut self.probs,
            tokens: &mut self.tokens,
        }
    }
}

impl<const ARENA: usize, const VOCAB: usize, const PROMPT: usize> Default
    for Memory<ARENA, VOCAB, PROMPT>
{
    fn default() -> Self {
        Self::new()
    }
}

/// Sizes of [`Buffers`] for `model` at its own context, a KV cache of format
/// `kv`, arithmetic `arith` and a prompt of up to `prompt_bytes` bytes: `[arena bytes, index
/// entries, top-p entries, token entries]`, the arena with 3 bytes to spare for
/// a start that is not 4-byte aligned (and room for the encoder's scratch,
/// which it lends before the session opens). What a build script puts in
/// [`Memory`]'s parameters.
pub fn buffer_sizes(
    model: &Model<'_>,
    prompt_bytes: usize,
    kv: KvFormat,
    arith: Arith,
) -> [usize; 4] {
    let vocab = model.vocab_size();
    let prompt = tokenizer::max_encoded_len(prompt_bytes);
    let arena = model.arena_bytes_for(model.max_context(), kv, arith);
    [
        arena.max(prompt.saturating_mul(4)).saturating_add(3),
        2 * vocab,
        vocab,
        prompt,
    ]
}

/// One generated token: the token before it, itself, and the bytes llama2.c
/// prints for it (`decode` then `safe_printf`; empty without a tokenizer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'t> {
    /// The token before (the pair llama2.c's `decode` takes).
    pub prev: u32,
    /// The token.
    pub id: u32,
    /// Its text.
    pub text: &'t [u8],
}

/// A generation in progress: an iterator over the tokens llama2.c would print,
/// each with its text (an [`Iterator`] of `Result<Token, Error>`; the first error
/// ends it).
#[derive(Debug)]
pub struct Generator<'m> {
    session: Session<'m>,
    sampler: Sampler,
    probs: &'m mut [ProbIndex],
    tokenizer: Option<Tokenizer<'m>>,
    run: Loop<'m>,
}

impl<'m> Generator<'m> {
    /// Opens a session of `model` in `buf`, builds the tokenizer index (when the
    /// image has a tokenizer), encodes the prompt and checks it.
    ///
    /// Errors: the tokenizer index, the token buffer or the encoder's scratch
    /// (see [`Buffers::tokens`]) too small ([`Error::BufferTooSmall`]); a text prompt without a tokenizer in the
    /// image ([`Error::MissingTensor`]); a malformed tokenizer; the arena too
    /// small for the context ([`Error::BufferTooSmall`], from [`Session::open`]);
    /// a bad sampler setting; then [`Loop::start`]'s.
    pub fn new(
        model: &'m Model<'m>,
        buf: Buffers<'m>,
        options: &Options<'m>,
    ) -> Result<Self, Error> {
        let Buffers {
            arena,
            index,
            probs,
            tokens,
        } = buf;
        let vocab = model.vocab_size();
        let tokenizer = match model.tokenizer() {
            Some(data) => {
                let got = index.len();
                let (offsets, sorted) = index.split_at_mut(got / 2);
                if sorted.len() < vocab || offsets.len() < vocab {
                    return Err(Error::BufferTooSmall {
                        needed: 2 * vocab,
                        got,
                    });
                }
                Some(Tokenizer::new(data, vocab, offsets, sorted)?)
            }
            None => None,
        };
        let prompt: &'m [u32] = match (options.prompt, &tokenizer) {
            (Prompt::Ids(ids), _) => ids,
            (Prompt::Text(text), Some(t)) => {
                // The encoder's merge scratch: the token buffer's second half
                // when it has room, else the arena, dead until the session
                // opens.
                let need = tokenizer::max_encoded_len(text.len());
                let n = match tokens.split_at_mut_checked(need) {
                    Some((out, merge)) if merge.len() >= need => {
                        t.encode(text.as_bytes(), true, false, out, merge)?
                    }
                    _ => {
                        let (_, merge, _) = bytemuck::pod_align_to_mut::<u8, u32>(arena);
                        t.encode(text.as_bytes(), true, false, tokens, merge)?
                    }
                };
                let prompt: &'m [u32] = tokens;
                prompt.get(..n).ok_or(Error::InvalidParameter)?
            }
            (Prompt::Text(""), None) => {
                let got = tokens.len();
                let slot = tokens
                    .first_mut()
                    .ok_or(Error::BufferTooSmall { needed: 1, got })?;
                *slot = model.header().bos_id;
                core::slice::from_ref(slot)
            }
            (Prompt::Text(_), None) => return Err(Error::MissingTensor),
        };
        let sampler = Sampler::new(options.temperature, options.topp, options.rng_state())?;
        let context = options.context_for(model);
        let mut session = Session::open(model, arena, context, options.kv, options.arith)?;
        let stop = options.stop_at_bos.then_some(model.header().bos_id);
        let run = Loop::start(&mut session, &sampler, prompt, options.steps, stop)?;
        Ok(Generator {
            session,
            sampler,
            probs,
            tokenizer,
            run,
        })
    }

    /// The session (its model, context and position).
    pub fn session(&self) -> &Session<'m> {
        &self.session
    }

    /// The tokenizer, when the image has one.
    pub fn tokenizer(&self) -> Option<&Tokenizer<'m>> {
        self.tokenizer.as_ref()
    }

    /// Tokens in the encoded prompt (BOS included for a text prompt).
    pub const fn prompt_tokens(&self) -> usize {
        self.run.prompt_len()
    }

    /// What the generation has done so far: positions run, tokens yielded,
    /// whether it ended on BOS.
    pub const fn generated(&self) -> Generated {
        self.run.generated()
    }

    /// The next token, or `None` at the end (see [`Loop::next`]); after an
    /// error, `None`.
    pub fn next_token(&mut self) -> Result<Option<Token<'m>>, Error> {
        let next = self.advance();
        if next.is_err() {
            self.run.end();
        }
        next
    }

    fn advance(&mut self) -> Result<Option<Token<'m>>, Error> {
        let Some((prev, id)) = self
            .run
            .next(&mut self.session, &mut self.sampler, self.probs)?
        else {
            return Ok(None);
        };
        let text = match &self.tokenizer {
            Some(t) => tokenizer::safe_piece(t.decode(prev, id)?),
            None => &[],
        };
        Ok(Some(Token { prev, id, text }))
    }
}

impl<'m> Iterator for Generator<'m> {
    type Item = Result<Token<'m>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_token().transpose()
    }
}
