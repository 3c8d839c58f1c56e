//! Fuzz target `hf`: see `microformer_fuzz::hf`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    microformer_fuzz::hf::run(data);
});
