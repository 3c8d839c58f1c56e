//! `microformer logits`: the logits of every position for a token sequence, as
//! JSON `{"logits": [[vocab_size floats], ...]}` (one row per token), from one
//! pass over the tokens — one [`microformer::model::Session::step`] per token in a
//! session whose context is the number of tokens. Floats are written as the
//! shortest decimal that reads back as the same `f32`.

use std::io::Write;
use std::path::PathBuf;

use microformer::model::Session;

use crate::error::{bail, fail, CliError, Result};
use crate::files::ImageFile;
use crate::output::f32_repr;
use crate::run::{generation_error, parse_ids, StepArgs, TokenList};

/// Arguments of `microformer logits`.
#[derive(Debug, Clone, clap::Args)]
pub struct LogitsArgs {
    /// A model image written by `microformer convert`.
    pub image: PathBuf,
    /// The token ids, comma-separated (e.g. 1,345,23).
    #[arg(long, value_name = "LIST", value_parser = parse_ids, allow_negative_numbers = true)]
    pub tokens: TokenList,
    /// The forward step's arithmetic and KV cache.
    #[command(flatten)]
    pub step: StepArgs,
}

/// Runs the subcommand.
pub fn run(args: &LogitsArgs) -> Result<()> {
    let file = ImageFile::load(&args.image)?;
    let model = file.model()?;
    let vocab = model.vocab_size();
    let tokens = &args.tokens.0;
    if tokens.is_empty() {
        bail!("--tokens is empty");
    }
    if let Some(&t) = tokens.iter().find(|&&t| t as usize >= vocab) {
        bail!("token {t} is outside the vocabulary of {vocab} (ids 0..{vocab})");
    }
    let context = tokens.len();
    if context > model.max_context() {
        bail!(
            "{} tokens exceed the image's context of {} positions",
            context,
            model.max_context()
        );
    }
    let (mut arena, kv, arith) = args.step.arena(&model, context)?;
    let mut session = Session::open(&model, &mut arena, context, kv, arith)
        .map_err(|e| CliError::runtime(format!("cannot open a session: {e}")))?;
    let mut text = String::from("{\"logits\": [");
    for (pos, &t) in tokens.iter().enumerate() {
        let logits = session.step(t).map_err(generation_error)?;
        if let Some((i, v)) = logits.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            fail!("logit {i} at position {pos} is {v}, not a finite number");
        }
        if pos > 0 {
            text.push_str(",\n  ");
        } else {
            text.push_str("\n  ");
        }
        text.push('[');
        for (i, &v) in logits.iter().enumerate() {
            if i > 0 {
                text.push_str(", ");
            }
            text.push_str(&f32_repr(v));
        }
        text.push(']');
    }
    text.push_str("\n]}\n");
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => fail!("cannot write the output: {e}"),
    }
}
