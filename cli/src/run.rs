//! `microformer run`: llama2.c's `run` on a model image.
//!
//! Same flags and semantics as `run.c` (`-i` prompt, `-n` steps, `-t`
//! temperature, `-p` top-p, `-s` seed): the prompt is encoded with the image's
//! tokenizer with BOS first, then [`microformer::generate::generate`] runs
//! `run.c`'s loop (prompt tokens forced, then sampled; stop when BOS comes next
//! or after `steps` positions, `steps` clipped to the image's context). The text
//! is printed as `run.c` prints it — every piece through `decode(prev, next)` and
//! `safe_printf`, then one final newline — or, with `--ids`, the token ids `run.c`
//! emits (every token after the first, prompt tokens included), separated by
//! spaces, then a newline.
//!
//! Departures from `run.c`, all deliberate:
//! - seed 0 (the default) is never replaced by the clock: it stands for the
//!   fixed seed [`SEED_FOR_ZERO`] (0 is a fixed point of xorshift, so some
//!   non-zero state must replace it); a negative seed wraps to `u64` as `run.c`'s
//!   `atoi` into an `unsigned long long` does;
//! - a negative or non-finite temperature, or a top-p outside `[0, 1]`, is an
//!   error instead of being clamped;
//! - nothing is printed on stderr (no tok/s line);
//! - the session holds only the positions the run can reach (the step budget, or
//!   the prompt if longer), so `-n 10` on an image of a million positions does not
//!   allocate a million-position KV cache.

use std::io::Write;
use std::path::PathBuf;

use microformer::generate::{self, Generated};
use microformer::sampler::{ProbIndex, Sampler};
use microformer::tokenizer::{self, Tokenizer};

use crate::error::{bail, fail, CliError, Result};
use crate::files::ImageFile;

pub use microformer::lm::SEED_FOR_ZERO;

/// Arguments of `microformer run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// A model image written by `microformer convert`.
    pub image: PathBuf,
    /// The prompt text (run.c -i, UTF-8), encoded with the image's tokenizer, BOS first.
    #[arg(short = 'i', long, value_name = "TEXT")]
    pub prompt: Option<std::ffi::OsString>,
    /// The prompt as token ids (e.g. 1,345,23), used as given: the first id starts the
    /// sequence. Needs no tokenizer.
    #[arg(long, value_name = "LIST", conflicts_with = "prompt", value_parser = parse_ids, allow_negative_numbers = true)]
    pub prompt_ids: Option<TokenList>,
    /// Positions to run (run.c -n); 0 or more than the image's context: the whole context.
    #[arg(
        short = 'n',
        long,
        value_name = "N",
        default_value_t = 256,
        allow_negative_numbers = true
    )]
    pub steps: usize,
    /// Sampling temperature (run.c -t); 0 = greedy argmax.
    #[arg(
        short = 't',
        long,
        value_name = "T",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    pub temperature: f32,
    /// Top-p (nucleus) threshold in [0, 1] (run.c -p); 0 or 1 = plain multinomial sampling.
    #[arg(
        short = 'p',
        long,
        value_name = "P",
        default_value_t = 0.9,
        allow_negative_numbers = true
    )]
    pub top_p: f32,
    /// RNG seed (run.c -s). 0, the default, is deterministic: it stands for the fixed seed
    /// 0x9E3779B97F4A7C15 (never the clock). Negative seeds wrap to u64 as in run.c.
    #[arg(short = 's', long, value_name = "S", default_value = "0", value_parser = parse_seed, allow_negative_numbers = true)]
    pub seed: u64,
    /// Print the token ids run.c would emit (space-separated) instead of the text.
    #[arg(long)]
    pub ids: bool,
    /// The forward step's arithmetic and KV cache.
    #[command(flatten)]
    pub step: StepArgs,
}

/// KV cache format of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KvArg {
    /// f32 keys and values (the float step).
    F32,
    /// int8 keys and values, one scale per cached row (per kv head of a row in the
    /// integer step): about a quarter of the f32 cache's RAM.
    Q8,
    /// int16 keys and values, one scale per kv head of a row (the integer step).
    Q16,
}

/// The forward step's arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ArithArg {
    /// f32 (run.c's and runq.c's arithmetic).
    Float,
    /// Fixed point end to end (Q8 images of the Llama family).
    Integer,
}

/// `--arith` and `--kv`, shared by `run`, `logits` and `perplexity`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct StepArgs {
    /// The forward step's arithmetic: float, or integer (fixed point end to end, for
    /// Q8 images; what an FPU-less core runs).
    #[arg(long, value_enum, default_value_t = ArithArg::Float)]
    pub arith: ArithArg,
    /// KV cache format: f32, q8 (int8, about a quarter of the RAM) or q16 (int16, the
    /// integer step only) [default: f32; q16 with --arith integer].
    #[arg(long, value_enum)]
    pub kv: Option<KvArg>,
}

impl StepArgs {
    /// The library's cache format and arithmetic; a combination the step does not
    /// have is a usage error.
    pub fn formats(&self) -> Result<(microformer::model::KvFormat, microformer::model::Arith)> {
        use microformer::model::{Arith, KvFormat};
        let arith = match self.arith {
            ArithArg::Float => Arith::Float,
            ArithArg::Integer => Arith::Integer,
        };
        let kv = match (self.kv, arith) {
            (None, Arith::Float) | (Some(KvArg::F32), Arith::Float) => KvFormat::F32,
            (None, Arith::Integer) | (Some(KvArg::Q16), Arith::Integer) => KvFormat::Q16,
            (Some(KvArg::Q8), _) => KvFormat::Q8,
            (Some(KvArg::F32), Arith::Integer) => {
                bail!(
                    "--kv f32 with --arith integer: the integer step keeps its cache as q8 or q16"
                )
            }
            (Some(KvArg::Q16), Arith::Float) => {
                bail!("--kv q16 needs --arith integer (the float step's caches are f32 and q8)")
            }
        };
        Ok((kv, arith))
    }

    /// An arena for a session of `model` over `context` positions, and the formats.
    pub fn arena(
        &self,
        model: &microformer::model::Model<'_>,
        context: usize,
    ) -> Result<(
        Vec<u8>,
        microformer::model::KvFormat,
        microformer::model::Arith,
    )> {
        let (kv, arith) = self.formats()?;
        let bytes = model.arena_bytes_for(context, kv, arith).saturating_add(3);
        // An allocation the machine refuses is an error, not an abort.
        let mut arena = Vec::new();
        if arena.try_reserve_exact(bytes).is_err() {
            fail!("cannot allocate the {bytes}-byte arena of a session of {context} positions");
        }
        arena.resize(bytes, 0);
        Ok((arena, kv, arith))
    }
}

/// A list of token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenList(pub Vec<u32>);

/// Parses `1,2,3` (spaces allowed around the commas).
pub fn parse_ids(s: &str) -> std::result::Result<TokenList, String> {
    let mut out = Vec::new();
    for item in s.split(',') {
        let t = item.trim();
        if t.is_empty() {
            return Err(format!("empty item in the token list \"{s}\""));
        }
        out.push(
            t.parse::<u32>()
                .map_err(|e| format!("bad token id \"{t}\": {e}"))?,
        );
    }
    Ok(TokenList(out))
}

/// Parses a seed: a `u64`, or a negative `i64` wrapped to `u64` (run.c).
pub fn parse_seed(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    if let Ok(v) = t.parse::<u64>() {
        return Ok(v);
    }
    t.parse::<i64>()
        .map(|v| v as u64)
        .map_err(|e| format!("bad seed \"{t}\": {e}"))
}

/// The RNG state for a seed given on the command line.
pub fn rng_state(seed: u64) -> u64 {
    if seed == 0 {
        SEED_FOR_ZERO
    } else {
        seed
    }
}

/// Why the emit callback stopped generation.
enum Stop {
    Cli(CliError),
    /// The reader went away (`| head`): not an error.
    BrokenPipe,
}

impl From<microformer::Error> for Stop {
    fn from(e: microformer::Error) -> Self {
        Stop::Cli(generation_error(e))
    }
}

/// Request errors (the prompt, a token id) are usage errors; the rest runtime.
pub fn generation_error(e: microformer::Error) -> CliError {
    use microformer::Error as E;
    match e {
        E::EmptyPrompt | E::PromptTooLong { .. } | E::TokenOutOfRange { .. } => {
            CliError::new(e.to_string())
        }
        _ => CliError::runtime(format!("generation failed: {e}")),
    }
}

fn io_stop(e: std::io::Error) -> Stop {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Stop::BrokenPipe
    } else {
        Stop::Cli(CliError::runtime(format!("cannot write the output: {e}")))
    }
}

/// Runs the subcommand.
pub fn run(args: &RunArgs) -> Result<()> {
    if !(args.temperature.is_finite() && args.temperature >= 0.0) {
        bail!(
            "--temperature must be a finite number >= 0, got {}",
            args.temperature
        );
    }
    if !(args.top_p.is_finite() && (0.0..=1.0).contains(&args.top_p)) {
        bail!("--top-p must be in [0, 1], got {}", args.top_p);
    }
    let file = ImageFile::load(&args.image)?;
    let model = file.model()?;
    let header = *model.header();
    let vocab = model.vocab_size();

    let mut offsets = vec![0u32; vocab];
    let mut sorted = vec![0u32; vocab];
    let tok: Option<Tokenizer<'_>> = match model.tokenizer() {
        Some(data) => Some(
            Tokenizer::new(data, vocab, &mut offsets, &mut sorted).map_err(|e| {
                CliError::runtime(format!(
                    "{}: the image's tokenizer is invalid: {e}",
                    file.path
                ))
            })?,
        ),
        None => None,
    };
    if tok.is_none() && !args.ids {
        bail!(
            "{} has no tokenizer: convert it with --tokenizer to print text, or print token ids with --ids",
            file.path
        );
    }

    let prompt: Vec<u32> = match (&args.prompt, &args.prompt_ids) {
        (Some(text), _) => {
            let Some(text) = text.to_str() else {
                bail!(
                    "--prompt is not valid UTF-8: give the text in UTF-8, or its token ids with --prompt-ids"
                );
            };
            let Some(tok) = &tok else {
                bail!(
                    "{} has no tokenizer to encode --prompt: convert it with --tokenizer, or give --prompt-ids",
                    file.path
                );
            };
            let n = tokenizer::max_encoded_len(text.len());
            let (mut out, mut scratch) = (vec![0u32; n], vec![0u32; n]);
            let len = tok
                .encode(text.as_bytes(), true, false, &mut out, &mut scratch)
                .map_err(|e| CliError::runtime(format!("cannot encode the prompt: {e}")))?;
            out.truncate(len);
            out
        }
        (None, Some(ids)) => ids.0.clone(),
        // run.c encodes the empty prompt: BOS alone.
        (None, None) => vec![header.bos_id],
    };
    if prompt.is_empty() {
        bail!("the prompt is empty: it needs at least one token");
    }
    if let Some(&t) = prompt.iter().find(|&&t| t as usize >= vocab) {
        bail!("prompt token {t} is outside the vocabulary of {vocab} (ids 0..{vocab})");
    }
    let context = model.max_context();
    if prompt.len() > context {
        bail!(
            "the prompt is {} tokens, longer than the image's context of {context} positions",
            prompt.len()
        );
    }

    // The session holds the positions the run can reach (the step budget, or the
    // prompt if it is longer), not the image's whole context: the same tokens, and
    // an arena sized by the request.
    let positions = generate::clip_steps(args.steps, context).max(prompt.len());
    let (mut arena, kv, arith) = args.step.arena(&model, positions)?;
    let mut session = microformer::model::Session::open(&model, &mut arena, positions, kv, arith)
        .map_err(|e| CliError::runtime(format!("cannot open a session: {e}")))?;
    let mut sampler = Sampler::new(args.temperature, args.top_p, rng_state(args.seed))?;
    let mut scratch = if sampler.uses_topp() {
        vec![ProbIndex::default(); vocab]
    } else {
        Vec::new()
    };

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut first = true;
    let result: std::result::Result<Generated, Stop> = generate::generate(
        &mut session,
        &mut sampler,
        &mut scratch,
        &prompt,
        args.steps,
        Some(header.bos_id),
        |prev, next| {
            if args.ids {
                let sep = if first { "" } else { " " };
                first = false;
                write!(out, "{sep}{next}").map_err(io_stop)
            } else {
                // Checked above: text mode has a tokenizer.
                let Some(tok) = &tok else {
                    return Err(Stop::Cli(CliError::runtime("no tokenizer")));
                };
                let piece = tok.decode(prev, next)?;
                out.write_all(tokenizer::safe_piece(piece))
                    .and_then(|()| out.flush())
                    .map_err(io_stop)
            }
        },
    );
    match result {
        Ok(_) => {}
        Err(Stop::BrokenPipe) => return Ok(()),
        Err(Stop::Cli(e)) => {
            let _ = out.flush();
            return Err(e);
        }
    }
    match out.write_all(b"\n").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => fail!("cannot write the output: {e}"),
    }
}
