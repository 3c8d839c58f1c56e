//! On-target tests, the attention block: cached decoding over a KV cache (grouped-query heads,
//! a sliding window, an ALiBi score bias), whole-sequence attention (causal, bidirectional,
//! windowed) and the softmax, each within `2^-17` of an f64 model.
//!
//! Shared by every board (`[[test]] path = "../suites/attention.rs"`). The test runs the case
//! `microformer_firmware::cases::ATTENTION` on the target: the case checks its own bounds and
//! typed errors, and every value it computes is compared, bit for bit, with the host's run of
//! the same case (written by the board's build script to `OUT_DIR/expected.rs`).
#![no_std]
#![no_main]

use board as _; // logger, panic and fault handlers, exit codes

#[allow(dead_code)] // each suite uses some of the expected streams
mod expected {
    include!(concat!(env!("OUT_DIR"), "/expected.rs"));
}

/// Runs `cases::$name` against the host's stream `expected::$name`.
macro_rules! case {
    ($name:ident) => {{
        let passed = microformer_firmware::check(
            &microformer_firmware::cases::$name,
            &crate::expected::$name,
        )?;
        defmt::info!("{} words bit-identical to the host", passed.words);
        Ok(())
    }};
}

#[defmt_test::tests]
mod tests {
    use microformer_firmware::Failure;

    #[test]
    fn attention() -> Result<(), Failure> {
        case!(ATTENTION)
    }
}
