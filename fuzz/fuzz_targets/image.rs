//! Fuzz target `image`: see `microformer_fuzz::image`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    microformer_fuzz::image::run(data);
});
