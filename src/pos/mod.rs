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
//!
//! These modules are the runtime's position hooks: [`crate::model::Model`]
//! resolves one [`Position`] when it opens an image and its forward step calls
//! the scheme's table add ([`learned::LearnedPositions::add_to`]), rotation
//! ([`rope::RopeTable::rotate_heads`]) or score bias (a [`ScoreBias`]:
//! [`alibi::AlibiBias`], [`t5::T5Bias`]) — no scheme is written a second time
//! in the model or the attention block. Each hook has its fixed-point twin in
//! the same file (`…Q15` types, [`alibi::FixedSlope`]).

pub mod alibi;
mod bias;
mod hook;
pub mod learned;
pub mod rope;
pub mod rope2d;
pub mod rope_const;
pub mod rope_scaling;
pub mod sinusoidal;
pub mod t5;

pub use bias::{NoBias, ScoreBias, ScoreBiasFixed};
pub use hook::Position;
