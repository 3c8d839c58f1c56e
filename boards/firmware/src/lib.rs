//! What every microformer board's firmware shares, the QEMU boards' and the real
//! boards' alike.
//!
//! - [`lm`]: the generation run, free of any logger and of the board (the same code
//!   runs on the host, in the build scripts and tests, and on every target): the
//!   image opened, the arena checked for the context, the tokenizer index built,
//!   the prompt encoded, llama2.c's loop run, every token reported; its memory is one
//!   [`lm::Memory`] sized at build time.
//! - [`settings`]: one [`Settings`] type (build-time defaults, and the QEMU
//!   boards' semihosting command line over them).
//! - `app` (feature `defmt`): the firmware's main program on top of [`lm`]: logs,
//!   the text handed to the board (`app::Board`), the figures; and the QEMU boards'
//!   self-check.
//! - `qemu` (feature `qemu`): semihosting command line, text stream and exit,
//!   the SysTick instruction counter, the painted-stack high-water mark, the QEMU
//!   boards' glue (logger, fault and panic handlers) and `qemu_main!`.
//! - `device` (feature `device`): the real boards' RTT logger, the text in RTT
//!   lines and on the serial port, and `device_main!`; [`budgets`]: their RAM.
//! - [`cases`]: the on-target checks. Each [`Case`] runs library code on fixed
//!   inputs, checks properties of the results on the spot (bounds against an
//!   f64 model computed with `libm`, typed errors, compile-time vs run-time
//!   tables) and writes every result it computes to an [`Out`] stream of
//!   32-bit words (f32 bit patterns, Q15 values, error codes). The QEMU boards'
//!   build scripts run every case **on the host** (`host::write_expected`) and
//!   their tests (`boards/suites/`) run the same cases **on the target** and
//!   [`check`] them word for word against the host's. [`mod@bench`] times the kernels.
//! - `host` (feature `std`): the build-script helpers of every board: `memory.x`,
//!   the embedded image (prebuilt, or a llama2.c checkpoint converted) with the
//!   settings and buffer sizes (`host::write_inputs`), the expected streams, the
//!   generation tests.
//!
//! `no_std`; the `std` feature only adds the build-script helpers in `host`.
#![cfg_attr(not(any(feature = "std", test)), no_std)]
#![deny(missing_docs)]
// Only `qemu` (reading the painted stack, the HardFault handler) allows it, and says why.
#![deny(unsafe_code)]

#[cfg(all(feature = "qemu", feature = "device"))]
compile_error!("features `qemu` and `device` each bring a defmt logger: enable one");

#[cfg(feature = "defmt")]
pub mod app;
pub mod bench;
pub mod budgets;
pub mod cases;
#[cfg(feature = "device")]
pub mod device;
#[cfg(feature = "std")]
pub mod host;
pub mod lm;
mod out;
#[cfg(feature = "qemu")]
pub mod qemu;
pub mod selfcheck;
pub mod settings;

pub use microformer;
pub use out::{check, Case, Failure, Out, Passed};

pub use microformer::lm::Aligned;

pub use settings::{Settings, SEED_FOR_ZERO};

/// After `defmt::panic!` (and failed `defmt::assert!`s, as in defmt-test) has printed
/// its message: raise a fault (QEMU: the HardFault handler ends the run with exit
/// code 1; a real board: probe-rs reports it).
#[cfg(any(feature = "qemu", feature = "device"))]
#[defmt::panic_handler]
fn defmt_panic() -> ! {
    cortex_m::asm::udf()
}
