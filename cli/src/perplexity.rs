//! `microformer perplexity`: the perplexity of an image over a text file
//! ([`microformer::perplexity`]'s windows: BOS then the next `window − 1`
//! tokens, non-overlapping, the last window possibly shorter).
//!
//! The text is encoded with the image's tokenizer exactly as `run.c` encodes a
//! prompt but without BOS ([`microformer_convert::tokenizer::encode_text`], which
//! the firmware's perplexity mode uses too).

use std::path::PathBuf;

use microformer::model::Session;
use microformer::perplexity::{chunks, Perplexity};
use microformer::tokenizer::Tokenizer;
use microformer_convert::tokenizer::{encode_text, TextError};

use crate::error::{bail, CliError, Result};
use crate::files::{self, ImageFile};
use crate::run::{generation_error, StepArgs};

/// Arguments of `microformer perplexity`.
#[derive(Debug, Clone, clap::Args)]
pub struct PerplexityArgs {
    /// A model image with a tokenizer, written by `microformer convert`.
    pub image: PathBuf,
    /// The text to score (UTF-8 or any bytes; encoded with the image's tokenizer).
    #[arg(long, value_name = "FILE")]
    pub text: PathBuf,
    /// Positions per window (BOS + window − 1 tokens), at least 2 [default: the image's context].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(2..), allow_negative_numbers = true)]
    pub window: Option<u64>,
    /// The forward step's arithmetic and KV cache.
    #[command(flatten)]
    pub step: StepArgs,
    /// Print one JSON object {"tokens", "windows", "window", "nll", "perplexity"}.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(args: &PerplexityArgs) -> Result<()> {
    let file = ImageFile::load(&args.image)?;
    let model = file.model()?;
    let vocab = model.vocab_size();
    let context = model.max_context();
    let window = match args.window {
        None => context,
        Some(w) => usize::try_from(w).unwrap_or(usize::MAX),
    };
    if window > context {
        let why = if model.header().block.position == microformer::image::PositionHook::Table {
            format!(
                " (its absolute position table has {context} rows: positions past it do not exist)"
            )
        } else {
            String::from(" (convert with a larger --context)")
        };
        bail!("--window {window} exceeds the image's context of {context} positions{why}");
    }
    let Some(data) = model.tokenizer() else {
        bail!(
            "{} has no tokenizer: convert it with --tokenizer to score text",
            file.path
        );
    };
    let (mut offsets, mut sorted) = (vec![0u32; vocab], vec![0u32; vocab]);
    let tok = Tokenizer::new(data, vocab, &mut offsets, &mut sorted).map_err(|e| {
        CliError::runtime(format!(
            "{}: the image's tokenizer is invalid: {e}",
            file.path
        ))
    })?;
    let text = files::read(&args.text)?;
    let tokens = encode_text(&tok, &text).map_err(|e| match e {
        TextError::Nul => CliError::new(e.to_string()),
        TextError::Encode(_) => CliError::runtime(e.to_string()),
    })?;
    if tokens.is_empty() {
        bail!("{}: the text is empty", args.text.display());
    }
    // A window feeds BOS and all but the last token of its chunk: window − 1 positions.
    let positions = window - 1;
    let (mut arena, kv, arith) = args.step.arena(&model, positions)?;
    let mut session = Session::open(&model, &mut arena, positions, kv, arith)
        .map_err(|e| CliError::runtime(format!("cannot open a session: {e}")))?;
    let bos = model.header().bos_id;
    let mut ppl = Perplexity::new();
    for chunk in chunks(&tokens, window) {
        ppl.window(&mut session, bos, chunk)
            .map_err(generation_error)?;
    }
    if args.json {
        println!(
            "{{\"tokens\": {}, \"windows\": {}, \"window\": {window}, \"nll\": {}, \"perplexity\": {}}}",
            ppl.tokens(),
            ppl.windows(),
            ppl.nll(),
            ppl.perplexity()
        );
    } else {
        println!(
            "perplexity {:.4} (nll {:.6} nats) over {} tokens in {} windows of {window}",
            ppl.perplexity(),
            ppl.nll(),
            ppl.tokens(),
            ppl.windows()
        );
    }
    Ok(())
}
