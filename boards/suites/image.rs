//! On-target tests, the model image: written with `image::write` on the device, parsed back, and
//! the typed errors for truncated, flipped, bad-magic, unknown-version and misaligned input; and
//! binary16 weights (widening of every finite pattern, the f16 matrix-vector product); the
//! integer step's kernels (the int8 × int16 product — the DSP kernel on the M4F and M33 — equal
//! to its formula and to the host's portable loop).
//!
//! Shared by every board (`[[test]] path = "../suites/image.rs"`). Each test runs one case of
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
    fn image() -> Result<(), Failure> {
        case!(IMAGE)
    }

    #[test]
    fn weights_f16() -> Result<(), Failure> {
        case!(WEIGHTS_F16)
    }

    #[test]
    fn integer_kernels() -> Result<(), Failure> {
        case!(INTEGER_KERNELS)
    }
}
