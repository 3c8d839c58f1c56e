//! The check a tokenizer file passes before it is embedded in an image.

use microformer::tokenizer::Tokenizer;

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
