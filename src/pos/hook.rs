//! The position hook a model resolves once from its image.

use super::{alibi, learned, rope, t5};

/// The position hook of a model, resolved once from its image.
///
/// Exactly one scheme feeds a model (the three hooks of the [module
/// docs](crate::pos)); `None` is a model with no positional information at all
/// (causal attention alone).
#[derive(Debug, Clone, Copy)]
pub enum Position<'a> {
    /// No positional information.
    None,
    /// A table row added to the token embedding: learned absolute (GPT-2's
    /// `wpe`) or a sinusoidal table the converter stored (XGLM), both read in
    /// place through [`learned::LearnedPositions`].
    Table(learned::LearnedPositions<'a>),
    /// q and k rotated by the rows of a RoPE table.
    Rope {
        /// The cos/sin rows, `[position][rotary_dim / 2]`.
        table: rope::RopeTable<'a>,
        /// Which dims of a head form the pairs.
        layout: rope::RopeLayout,
    },
    /// ALiBi biases added to the scores.
    Alibi(alibi::AlibiBias<'a>),
    /// T5 relative-position biases added to the scores (bucket table and
    /// per-head weights read in place).
    T5(t5::T5Bias<'a>),
}
