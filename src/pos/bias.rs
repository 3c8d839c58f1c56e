//! The score-bias hook: what the attention block adds to its scores.

/// A bias added to every scaled attention score before the softmax: the
/// score-bias hook.
///
/// Implemented by [`NoBias`], [`super::alibi::AlibiBias`], [`super::t5::T5Bias`], and every
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

/// The score-bias hook of the integer step ([`crate::model::Arith::Integer`]):
/// the same biases in fixed point, added to `i32` scores with
/// [`crate::num::int::ACT_FRAC`] fractional bits (Q16), saturating.
/// Implemented by [`NoBias`], [`super::alibi::AlibiBias`] and [`super::t5::T5Bias`]
/// in their own files.
pub trait ScoreBiasFixed {
    /// `false` only for [`NoBias`]: the hook is skipped entirely.
    const ENABLED: bool = true;

    /// Adds the Q16 biases of head `head` for keys `start..start + scores.len()`
    /// seen from `query` to `scores`.
    fn add_to_row_fixed(&self, head: usize, query: usize, start: usize, scores: &mut [i32]);
}

impl ScoreBiasFixed for NoBias {
    const ENABLED: bool = false;

    #[inline(always)]
    fn add_to_row_fixed(&self, _head: usize, _query: usize, _start: usize, _scores: &mut [i32]) {}
}

impl<F: Fn(usize, usize, usize) -> f32> ScoreBias for F {
    #[inline(always)]
    fn bias(&self, head: usize, query: usize, key: usize) -> f32 {
        self(head, query, key)
    }
}
