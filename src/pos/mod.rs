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
pub mod learned;
pub mod rope;
pub mod rope2d;
pub mod rope_const;
pub mod rope_scaling;
pub mod sinusoidal;
pub mod t5;

/// The position hook of a model, resolved once from its image.
///
/// Exactly one scheme feeds a model (the three hooks of the [module
/// docs](self)); `None` is a model with no positional information at all
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
}

impl Position<'_> {
    /// Positions the hook covers (`usize::MAX` for hooks without a table).
    pub fn positions(&self) -> usize {
        match self {
            Position::Table(t) => t.positions(),
            Position::Rope { table, .. } => table.positions(),
            Position::None | Position::Alibi(_) => usize::MAX,
        }
    }
}

/// A bias added to every scaled attention score before the softmax: the
/// score-bias hook.
///
/// Implemented by [`NoBias`], [`alibi::AlibiBias`], [`t5::T5Bias`], and every
/// `Fn(head, query_pos, key_pos) -> f32` (positions are absolute: a cached
/// decoding step passes its own position and the key's).
pub trait ScoreBias {
    /// `false` only for [`NoBias`]: the hook is skipped entirely.
    const ENABLED: bool = true;

    /// The bias for query head `head`, query position `query`, key position `key`.
    fn bias(&self, head: usize, query: usize, key: usize) -> f32;

    /// Adds the biases of head `head` for keys `start..start + scores.len()` seen
    /// from `query` to `scores`, and returns the largest result (`−∞` when
    /// `scores` is empty). Schemes override it to work a row at a time.
    #[inline]
    fn add_to_row(&self, head: usize, query: usize, start: usize, scores: &mut [f32]) -> f32 {
        let mut max_val = f32::NEG_INFINITY;
        for (j, s) in scores.iter_mut().enumerate() {
            *s += self.bias(head, query, start + j);
            if *s > max_val {
                max_val = *s;
            }
        }
        max_val
    }
}

/// No score bias (RoPE, absolute-position and position-free models).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBias;

impl ScoreBias for NoBias {
    const ENABLED: bool = false;

    #[inline(always)]
    fn bias(&self, _head: usize, _query: usize, _key: usize) -> f32 {
        0.0
    }
}

impl<F: Fn(usize, usize, usize) -> f32> ScoreBias for F {
    #[inline(always)]
    fn bias(&self, head: usize, query: usize, key: usize) -> f32 {
        self(head, query, key)
    }
}
