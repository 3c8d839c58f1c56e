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
//! - [`app`]: the firmware's main program: the self-check, then the language
//!   model ([`lm`]) in the image embedded at build time ([`host::write_inputs`]),
//!   run with [`Settings`] chosen at build time and overridden by the command
//!   line ([`settings`]); [`bench`] times the kernels.
//! - [`qemu`] (feature `qemu`): semihosting command line and text, the
//!   instruction counter, the stack's high-water mark.
//!
//! `no_std`; the `std` feature only adds the build-script helpers in [`host`].
#![cfg_attr(not(any(feature = "std", test)), no_std)]
#![deny(missing_docs)]
// Only `qemu` (reading the painted stack) allows it, and says why.
#![deny(unsafe_code)]

#[cfg(feature = "defmt")]
pub mod app;
pub mod bench;
pub mod cases;
#[cfg(feature = "std")]
pub mod host;
pub mod lm;
mod out;
#[cfg(feature = "qemu")]
pub mod qemu;
pub mod selfcheck;
pub mod settings;

pub use cases::Case;
pub use microformer;
pub use out::{check, Failure, Out, Passed};

/// Bytes aligned to 4, as [`microformer::image::Image::parse`] requires:
/// `static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!("model.bin"));`.
#[repr(C, align(4))]
pub struct Aligned<T: ?Sized>(pub T);

pub use settings::{Settings, SEED_FOR_ZERO};
