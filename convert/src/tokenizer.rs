//! Tokenizer helpers of the host tools: the check a tokenizer file passes before it
//! is embedded in an image, and the encoding of a whole text for scoring (`microformer
//! perplexity` and the firmware's perplexity mode share it, so that the host and the
//! device score the same tokens).

use microformer::tokenizer::{self, Tokenizer};

/// Checks that `data` is a llama2.c tokenizer file (`tokenizer.bin` format) for a
/// vocabulary of `vocab_size` tokens, as the device will read it.
///
/// Errors: whatever [`Tokenizer::new`] reports (a truncated or malformed file, a
/// token count other than `vocab_size`).
pub fn check_tokenizer(data: &[u8], vocab_size: usize) -> Result<(), microformer::Error> {
    let mut offsets = vec![0u32; vocab_size];
    let mut sorted = vec![0u32; vocab_size];
    Tokenizer::new(data, vocab_size, &mut offsets, &mut sorted).map(|_| ())
}

/// Why a text cannot be encoded for scoring.
#[derive(Debug, Clone, PartialEq)]
pub enum TextError {
    /// The text holds a NUL byte, which ends a `run.c` string.
    Nul,
    /// The tokenizer refused it.
    Encode(microformer::Error),
}

impl core::fmt::Display for TextError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TextError::Nul => {
                f.write_str("the text contains a NUL byte, which ends a run.c string")
            }
            TextError::Encode(e) => write!(f, "cannot encode the text: {e}"),
        }
    }
}

impl std::error::Error for TextError {}

/// Encodes `text` as `run.c` encodes a prompt (dummy prefix, byte fallback,
/// best-score merges) but without BOS; when no piece of the vocabulary spans a
/// newline, line by line (the same tokens, in linear time).
///
/// Errors: [`TextError::Nul`] for a NUL byte, [`TextError::Encode`] for what the
/// tokenizer reports.
pub fn encode_text(tok: &Tokenizer<'_>, text: &[u8]) -> Result<Vec<u32>, TextError> {
    if text.contains(&0) {
        return Err(TextError::Nul);
    }
    let mut tokens = Vec::with_capacity(text.len() / 2);
    let mut encode_into = |part: &[u8], first: bool| -> Result<(), TextError> {
        let n = tokenizer::max_encoded_len(part.len());
        let (mut out, mut scratch) = (vec![0u32; n], vec![0u32; n]);
        let len = if first {
            tok.encode(part, false, false, &mut out, &mut scratch)
        } else {
            tok.encode_continued(part, &mut out, &mut scratch)
        }
        .map_err(TextError::Encode)?;
        tokens.extend_from_slice(out.get(..len).unwrap_or_default());
        Ok(())
    };
    if tok.any_piece_contains(b'\n') {
        encode_into(text, true)?;
        return Ok(tokens);
    }
    // Split after each newline: the first part takes the dummy prefix.
    for (i, part) in text.split_inclusive(|&b| b == b'\n').enumerate() {
        encode_into(part, i == 0)?;
    }
    Ok(tokens)
}
