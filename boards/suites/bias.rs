//! On-target tests, attention-score biases: ALiBi slopes and bias rows (f32 and fixed point), T5
//! relative buckets and learned biases (f32 and Q15).
//!
//! Shared by every board (`[[test]] path = "../suites/bias.rs"`). Each test runs one case of
//! `microformer_firmware::cases` on the target: the case checks its own bounds and typed
//! errors, and every value it computes is compared, bit for bit, with the host's run of the
//! same case (written by the board's build script to `OUT_DIR/expected.rs`).
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
    fn alibi_slopes() -> Result<(), Failure> {
        case!(ALIBI_SLOPES)
    }

    #[test]
    fn alibi_bias() -> Result<(), Failure> {
        case!(ALIBI_BIAS)
    }

    #[test]
    fn t5_buckets() -> Result<(), Failure> {
        case!(T5_BUCKETS)
    }

    #[test]
    fn t5_bias() -> Result<(), Failure> {
        case!(T5_BIAS)
    }
}
