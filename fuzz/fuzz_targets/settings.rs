//! Fuzz target `settings`: see `microformer_fuzz::settings`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    microformer_fuzz::settings::run(data);
});
