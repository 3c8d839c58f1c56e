//! Positional encodings, one small file per scheme, each in f32 and fixed point.
//!
//! A position enters a transformer through one of three hooks, and the
//! attention block only needs to know which:
//!
//! | hook | schemes |
//! |---|---|
//! | add a vector to the token embedding | [`sinusoidal`], [`learned`] |
//! | rotate q and k | [`rope`] (with [`rope_scaling`]), [`rope2d`] |
//! | add a bias to the scores | [`alibi`], [`t5`] |
//!
//! Angle tables are precomputed, never per token: at compile time through
//! `const fn` ([`rope_const`]) or at run time into caller-provided storage.

pub mod alibi;
pub mod learned;
pub mod rope;
pub mod rope2d;
pub mod rope_const;
pub mod rope_scaling;
pub mod sinusoidal;
pub mod t5;
