//! Fuzz target `llama2c`: see `microformer_fuzz::llama2c`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    microformer_fuzz::llama2c::run(data);
});
