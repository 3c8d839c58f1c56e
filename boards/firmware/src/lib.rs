//! What every microformer board's firmware shares.
//!
//! - [`cases`]: the on-target checks. Each [`Case`] runs library code on fixed
//!   inputs, checks properties of the results on the spot (bounds against an
//!   f64 model computed with `libm`, typed errors, compile-time vs run-time
//!   tables) and writes every result it computes to an [`Out`] stream of
//!   32-bit words (f32 bit patterns, Q15 values, error codes).
//! - The boards' build scripts run every case **on the host**
//!   ([`host::write_expected`], same library, same case code) and write the
//!   streams to `OUT_DIR/expected.rs`; the boards' tests (`boards/suites/`) run
//!   the same cases **on the target** under QEMU and [`check`] them word for
//!   word against the host's: host and target must agree bit for bit.
//! - [`app`]: the firmware's main program (the self-check today, a language
//!   model later), fed by [`host::write_inputs`] (a model image and
//!   [`Settings`] chosen at build time).
//!
//! `no_std`; the `std` feature only adds the build-script helpers in [`host`].
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(feature = "defmt")]
pub mod app;
pub mod cases;
#[cfg(feature = "std")]
pub mod host;
mod out;
pub mod selfcheck;

pub use cases::Case;
pub use out::{check, Failure, Out, Passed};

/// Bytes aligned to 4, as [`microformer::image::Image::parse`] requires:
/// `static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!("model.bin"));`.
#[repr(C, align(4))]
pub struct Aligned<T: ?Sized>(pub T);

/// Run settings chosen at build time (`MICROFORMER_STEPS`, `MICROFORMER_SEED`,
/// `MICROFORMER_PROMPT`; see [`host::write_inputs`]), for the model runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Settings {
    /// Tokens to generate.
    pub steps: u32,
    /// Sampler seed.
    pub seed: u64,
    /// Prompt text.
    pub prompt: &'static str,
}

impl Settings {
    /// The settings when no variable is set: 16 steps, seed 42, empty prompt.
    pub const DEFAULT: Settings = Settings {
        steps: 16,
        seed: 42,
        prompt: "",
    };
}
