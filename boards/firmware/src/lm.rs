//! The language-model run: open the embedded image, build the tokenizer index,
//! encode the prompt and run llama2.c's generation loop
//! ([`microformer::generate::generate`]), reporting every token.
//!
//! Free of any logger and of the board, so the same code runs on the host (the
//! boards' build scripts compute the tokens the target must produce) and on the
//! target. Memory comes from the caller ([`Buffers`]): the board's `main` keeps
//! it in `static`s sized by the build script (`inputs::ARENA_BYTES`,
//! `inputs::VOCAB`, `inputs::PROMPT_TOKENS`; see `host::write_inputs`).

use microformer::generate::{self, Generated};
use microformer::image::Image;
use microformer::model::{Model, Session};
use microformer::sampler::{ProbIndex, Sampler};
use microformer::tokenizer::{self, Tokenizer};
use microformer::Error;

use crate::out::{Failure, Out, Passed};
use crate::Settings;

/// Where a run stopped.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RunError {
    /// No image embedded.
    NoImage,
    /// The image does not parse or is not a runnable model.
    Image(Error),
    /// The tokenizer in the image is malformed, or its index does not fit.
    Tokenizer(Error),
    /// A prompt was given but the image has no tokenizer to encode it.
    NoTokenizer,
    /// The prompt does not encode (buffers too small).
    Prompt(Error),
    /// The session, sampler or loop failed.
    Generate(Error),
}

impl From<Error> for RunError {
    fn from(e: Error) -> Self {
        RunError::Generate(e)
    }
}

/// The caller's memory for a run.
#[derive(Debug)]
pub struct Buffers<'m> {
    /// The session arena: at least `Model::arena_bytes(context) + 3` bytes.
    pub arena: &'m mut [u8],
    /// Tokenizer index: `2 · vocab` entries.
    pub index: &'m mut [u32],
    /// Top-p scratch: `vocab` entries.
    pub probs: &'m mut [ProbIndex],
    /// Prompt tokens and encoder scratch: `2 · max_encoded_len(prompt bytes)`.
    pub tokens: &'m mut [u32],
}

/// One emitted token: the token before it, itself, and the bytes llama2.c prints
/// for it (`decode` then `safe_printf`; empty without a tokenizer).
#[derive(Debug, Clone, Copy)]
pub struct Token<'t> {
    /// The token before (the pair llama2.c's `decode` takes).
    pub prev: u32,
    /// The token.
    pub id: u32,
    /// Its text.
    pub text: &'t [u8],
}

/// What a run found before generating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Opened {
    /// The session's context (the image's).
    pub context: usize,
    /// Prompt tokens, BOS included.
    pub prompt_tokens: usize,
    /// Whether the matrices are Q8.
    pub quantized: bool,
}

/// Runs the image's model with `settings` (see [`crate::settings`]) in `buf`:
/// `opened` is called once the model, tokenizer and prompt are ready, `emit` with
/// every token llama2.c would print. Without a tokenizer in the image the prompt
/// must be empty (BOS alone) and the tokens carry no text.
pub fn run(
    image: &[u8],
    settings: &Settings<'_>,
    buf: Buffers<'_>,
    mut opened: impl FnMut(&Opened),
    mut emit: impl FnMut(Token<'_>),
) -> Result<Generated, RunError> {
    if image.is_empty() {
        return Err(RunError::NoImage);
    }
    let model =
        Model::new(Image::parse(image).map_err(RunError::Image)?).map_err(RunError::Image)?;
    let bos = model.header().bos_id;
    let vocab = model.vocab_size();
    let context = model.max_context();
    let Buffers {
        arena,
        index,
        probs,
        tokens,
    } = buf;
    let tok = match model.tokenizer() {
        Some(data) => {
            let got = index.len();
            let (offsets, sorted) =
                index
                    .split_at_mut_checked(vocab)
                    .ok_or(RunError::Tokenizer(Error::BufferTooSmall {
                        needed: 2 * vocab,
                        got,
                    }))?;
            Some(Tokenizer::new(data, vocab, offsets, sorted).map_err(RunError::Tokenizer)?)
        }
        None => None,
    };
    let half = tokens.len() / 2;
    let (prompt, merge) = tokens.split_at_mut(half);
    let n = match &tok {
        Some(t) => t
            .encode(settings.prompt.as_bytes(), true, false, prompt, merge)
            .map_err(RunError::Prompt)?,
        None if settings.prompt.is_empty() => {
            let slot = prompt
                .first_mut()
                .ok_or(RunError::Prompt(Error::BufferTooSmall {
                    needed: 1,
                    got: 0,
                }))?;
            *slot = bos;
            1
        }
        None => return Err(RunError::NoTokenizer),
    };
    let prompt = prompt
        .get(..n)
        .ok_or(RunError::Prompt(Error::InvalidParameter))?;
    let mut sampler = Sampler::new(settings.temperature, settings.topp, settings.rng_state())?;
    let mut session = Session::new(&model, arena, context)?;
    opened(&Opened {
        context,
        prompt_tokens: n,
        quantized: model.is_quantized(),
    });
    generate::generate::<RunError>(
        &mut session,
        &mut sampler,
        probs,
        prompt,
        settings.steps as usize,
        settings.stop_at_bos.then_some(bos),
        |prev, id| {
            let text = match &tok {
                Some(t) => tokenizer::safe_piece(t.decode(prev, id)?),
                None => &[],
            };
            emit(Token { prev, id, text });
            Ok(())
        },
    )
}

/// Sizes of [`Buffers`] for `image` and a prompt of up to `prompt_bytes` bytes:
/// `(arena bytes, index entries, top-p entries, token entries)`.
pub fn buffer_sizes(image: &[u8], prompt_bytes: usize) -> Result<[usize; 4], Error> {
    let model = Model::new(Image::parse(image)?)?;
    let vocab = model.vocab_size();
    Ok([
        model.arena_bytes(model.max_context()) + 3,
        2 * vocab,
        vocab,
        2 * tokenizer::max_encoded_len(prompt_bytes),
    ])
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

/// Runs `test` here and compares every id with the host's (word for word, as the
/// on-target cases are compared), the text byte for byte, and llama2.c's ids.
pub fn check_generate(test: &GenerateTest, buffers: Buffers<'_>) -> Result<Passed, Failure> {
    let mut out = Out::compare(test.ids);
    let mut text_at = 0usize;
    let mut text_ok = true;
    let mut llama_ok = true;
    let mut n = 0usize;
    let r = run(
        test.image,
        &test.settings,
        buffers,
        |_| {},
        |t| {
            out.u32("token id", t.id);
            if let Some(&want) = test.llama2c_ids.get(n) {
                llama_ok &= want == t.id;
            }
            n += 1;
            let end = text_at + t.text.len();
            text_ok &= test.text.get(text_at..end) == Some(t.text);
            text_at = end;
        },
    );
    if let Err(e) = r {
        let error = match e {
            RunError::Image(e)
            | RunError::Tokenizer(e)
            | RunError::Prompt(e)
            | RunError::Generate(e) => e,
            RunError::NoImage | RunError::NoTokenizer => Error::MissingTensor,
        };
        return Err(Failure::Library {
            label: "lm::run",
            error,
        });
    }
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
