//! # microformer
//!
//! A `#![no_std]`, heap-free inference core for tiny transformers on Cortex-M
//! microcontrollers.
//!
//! This crate holds the positional encodings every tiny transformer needs, each in
//! `f32` and in fixed point, with their angle tables precomputed (at compile time
//! through `const fn`, or at run time into caller-provided storage), so that no
//! `sin`/`cos` runs per token:
//!
//! | hook | schemes | module |
//! |---|---|---|
//! | add a vector to the token embedding | sinusoidal (interleaved, split), learned absolute | [`pos::sinusoidal`], [`pos::learned`] |
//! | rotate q and k | RoPE (interleaved and half-split pairs, partial rotary, 2-D axial) with every Hugging Face scaling rule | [`pos::rope`], [`pos::rope_scaling`], [`pos::rope2d`] |
//! | add a bias to the scores | ALiBi (BLOOM and MPT slopes), T5 relative buckets | [`pos::alibi`], [`pos::t5`] |
//!
//! Numerics live in [`num`]: `const fn` f64 maths ([`num::math`]) used to build
//! tables, and Q15 fixed point with integer phases ([`num::fixed`]).
//!
//! No allocator is used anywhere: tables are `static`/`const` arrays in flash or
//! slices the caller provides.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod attn;
pub mod error;
pub mod generate;
pub mod image;
pub mod model;
pub mod num;
pub mod pos;
pub mod sampler;
pub mod tokenizer;

pub use error::Error;
