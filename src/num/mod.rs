//! Numerics shared by every positional encoding.
//!
//! - [`math`]: `const fn` f64 elementary functions (sin/cos in turns, exp, ln,
//!   pow, sqrt) that build angle tables at compile time or at run time with the
//!   same code, so both paths give bit-identical tables.
//! - [`fixed`]: Q15 fixed point: integer phases in turns, a quarter-wave
//!   sine table, saturating Q15 rotation with a Q31 accumulator.
//! - [`exp`]: `expf` bit-identical to `libm::expf`, inlined for the softmax,
//!   and the fast table `expf` of the forward step.
//! - [`exp_glibc`]: glibc's `expf`, transcribed (the `exact` feature's, as
//!   `run.c` gets it on Linux).
//! - [`fp16`]: IEEE binary16 weight storage (exact widening, nearest-even narrowing).
//! - [`kernels`]: unrolled f32 dot products and `axpy` for the hot loops.
//! - [`int`]: integer-only fixed point for the integer step (f32 bits decoded,
//!   block-float scales, int8 quantization, `e^x` and the logistic by table).
//! - [`kernels_int`]: the integer step's int8 kernels (portable Rust).
//! - [`kernels_block`]: its Q8 product for scales an image stores in
//!   block-float form.
//! - `kernels_m4` (hard-float Arm only): the matrix-vector inner kernels in
//!   inline assembly (`vldm` + `vmla.f32`, and `vcvtb`/`vcvtt` for binary16
//!   weights; `sxtb16` + `smlad` for the integer step) and the f32 and int8
//!   attention's score and value-mix loops, Q15 RoPE (`smlsd`, `smladx`).
//! - `kernels_m3` (soft-float ARMv7-M): the integer step's group dot products
//!   (`ldrsb`, `mla`) and group scales (`smlal`).
//! - `kernels_m0` (ARMv6-M): the integer step's group dot products (`ldrsb`,
//!   `muls`). These three are the crate's only `unsafe` code.

pub mod exp;
pub mod exp_glibc;
pub mod fixed;
pub mod fp16;
pub mod int;
pub mod kernels;
pub mod kernels_block;
pub mod kernels_int;
#[cfg(all(
    target_arch = "arm",
    target_os = "none",
    target_endian = "little",
    not(target_has_atomic = "32")
))]
pub mod kernels_m0;
#[cfg(all(
    target_arch = "arm",
    target_os = "none",
    target_abi = "eabi",
    target_endian = "little",
    target_has_atomic = "32"
))]
pub mod kernels_m3;
#[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
pub mod kernels_m4;
pub mod math;
pub mod q8;
