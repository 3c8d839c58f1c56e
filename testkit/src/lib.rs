//! What microformer's tests share, so that each test does not carry its own copy.
//!
//! - Deterministic generators for test inputs, the same on every machine and
//!   every core: [`XorShift32`] and [`XorShift64`] (Marsaglia's xorshift with
//!   the shifts 13, 17, 5 and 13, 7, 17) and [`Lcg64`] (Knuth's MMIX linear
//!   congruential generator). They are for making inputs, not for sampling: the
//!   library's own generator is llama2.c's xorshift64*, `microformer::sampler`.
//! - [`AlignedBytes`] (feature `alloc`): bytes at a 4-byte aligned address, as
//!   `microformer::image::Image::parse` requires of an image.
//! - [`reference`](mod@reference) (feature `std`): the reference models beside the repository
//!   (`../shared/models`, or `MICROFORMER_REFERENCE_DIR`), which may not be
//!   committed: [`reference_file!`] gives a file's path, or `None` after
//!   recording by name that the running test was skipped.
//!
//! `#![no_std]`: the firmware's on-target cases use the generators on the
//! target, where there is no allocator.
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "alloc")]
mod aligned;
#[cfg(feature = "std")]
pub mod reference;
mod rng;

#[cfg(feature = "alloc")]
pub use aligned::AlignedBytes;
pub use rng::{Lcg64, XorShift32, XorShift64};
