//! Fuzz target `tokenizer`: see `microformer_fuzz::tokenizer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    microformer_fuzz::tokenizer::run(data);
});
