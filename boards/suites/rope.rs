//! On-target tests, RoPE: run-time and compile-time f32 tables, rotations in both layouts, Q15
//! tables, integer phases, every scaling rule, 2-D axial RoPE, and the firmware's self-check.
//!
//! Shared by every board (`[[test]] path = "../suites/rope.rs"`). Each test runs one case of
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
    fn rope_table_f32() -> Result<(), Failure> {
        case!(ROPE_TABLE_F32)
    }

    #[test]
    fn rope_const_table() -> Result<(), Failure> {
        case!(ROPE_CONST_TABLE)
    }

    #[test]
    fn rope_rotate_f32() -> Result<(), Failure> {
        case!(ROPE_ROTATE_F32)
    }

    #[test]
    fn rope_q15() -> Result<(), Failure> {
        case!(ROPE_Q15)
    }

    #[test]
    fn rope_q15_rows() -> Result<(), Failure> {
        case!(ROPE_Q15_ROWS)
    }

    #[test]
    fn rope_phases() -> Result<(), Failure> {
        case!(ROPE_PHASES)
    }

    #[test]
    fn rope_scaling() -> Result<(), Failure> {
        case!(ROPE_SCALING)
    }

    #[test]
    fn rope_2d() -> Result<(), Failure> {
        case!(ROPE_2D)
    }

    #[test]
    fn selfcheck() -> Result<(), Failure> {
        case!(SELFCHECK)
    }
}
