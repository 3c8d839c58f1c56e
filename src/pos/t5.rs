//! T5 relative position buckets: a learned bias per head per bucket of `key − query`.
//!
//! # Formula
//!
//! For query `i` and key `j`, the relative position is `r = j − i` (Hugging Face:
//! `memory_position − context_position`). It is mapped to a bucket (Raffel et al.,
//! "Exploring the Limits of Transfer Learning", 2020; Mesh TensorFlow
//! `_relative_position_bucket`; Hugging Face `modeling_t5.py`
//! `T5Attention._relative_position_bucket`):
//!
//! - bidirectional (encoder): `nb = num_buckets/2`, bucket offset `nb` when
//!   `r > 0`, distance `d = |r|`; causal (decoder): `nb = num_buckets`,
//!   `d = max(−r, 0)`;
//! - `max_exact = nb/2`: `d < max_exact` is its own bucket; otherwise
//!   `max_exact + trunc(ln(d/max_exact) / ln(max_distance/max_exact) · (nb − max_exact))`,
//!   capped at `nb − 1` (every `d ≥ max_distance` shares the last bucket).
//!
//! The score of head `h` gets `W[bucket][h]`, `W` being `relative_attention_bias`,
//! an `nn.Embedding(num_buckets, n_heads)`, i.e. laid out `[num_buckets][n_heads]`.
//!
//! Hugging Face evaluates the logarithmic branch in float32: `d.float() / max_exact`,
//! `torch.log` of that, divided by the float32 rounding of the f64
//! `math.log(max_distance / max_exact)`, times `nb − max_exact`, truncated. Near a
//! bucket boundary the float32 and the exact result differ (e.g. 18 buckets,
//! bidirectional, max_distance 128, `d = 8`: float32 gives exactly 1.0, hence
//! bucket 5, where f64 gives 0.99999… and bucket 4), so
//! [`relative_position_bucket`] performs the very same float32 operations
//! (IEEE-754 f32 division and multiplication; the logarithm in f64, rounded once to
//! f32).
//!
//! # Error bound
//!
//! - Buckets are integers: identical to Hugging Face's for every relative position
//!   in `tables.json` (−300..=300, 32 buckets, max_distance 128, both directions).
//!   The only possible difference is when PyTorch's float32 `log` (accurate to
//!   1 ulp, not always correctly rounded) and the correctly rounded one fall on
//!   either side of an integer after the division and product.
//! - f32 bias: a table lookup, exact. Q15 bias: a lookup of the quantised table
//!   (quantisation by the converter: ≤ ½ LSB), rescaled to the score's scale with
//!   one rounding (≤ ½ LSB of that scale) and added saturating.
//!
//! # Memory
//!
//! A [`T5BucketTable`] holds one byte per relative position in
//! `−max_distance..=max_distance` (bidirectional) or `−max_distance..=0`
//! (causal), 257 bytes for T5's 128; positions past the range share the edge
//! bucket, so no logarithm runs per token. The bias table is read in place:
//! `num_buckets × n_heads` values (32 × 8 × 4 = 1 KiB in f32, 512 B in Q15).

use crate::num::fixed::Q15;
use crate::num::math;
use crate::Error;

/// The bucket of `relative_position = key − query`, exactly as Hugging Face's
/// `T5Attention._relative_position_bucket` (float32 arithmetic emulated).
///
/// The parameters are those of [`T5Buckets::new`]; with parameters it rejects,
/// the result is meaningless but still below `max(num_buckets, 1)`, and the
/// function never panics. Distances beyond `i64` range use `|r|` as an unsigned
/// number (Hugging Face's `torch.abs(i64::MIN)` would overflow).
pub const fn relative_position_bucket(
    relative_position: i64,
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
) -> usize {
    let mut nb = num_buckets;
    let mut offset = 0;
    let distance: u64 = if bidirectional {
        nb /= 2;
        if relative_position > 0 {
            offset = nb;
        }
        relative_position.unsigned_abs()
    } else if relative_position < 0 {
        relative_position.unsigned_abs()
    } else {
        0
    };
    let max_exact = nb / 2;
    if max_exact == 0 || max_distance <= max_exact {
        return offset;
    }
    if distance < max_exact as u64 {
        return offset + distance as usize;
    }
    // float32, in Hugging Face's order: log(d.float() / max_exact) / f32(log(md/me)) * (nb - me)
    let x = distance as f32 / max_exact as f32;
    let log_x = math::ln(x as f64) as f32;
    let log_range = math::ln(max_distance as f64 / max_exact as f64) as f32;
    let v = log_x / log_range * (nb - max_exact) as f32;
    // x >= 1 so v >= 0; `as` truncates toward zero and saturates like `.to(long)` would.
    let large = max_exact.saturating_add(v as usize);
    let last = nb - 1;
    offset + if large < last { large } else { last }
}

/// A validated T5 bucketing configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct T5Buckets {
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
}

impl T5Buckets {
    /// T5's defaults for a given direction: 32 buckets, max_distance 128.
    pub const fn t5(bidirectional: bool) -> Self {
        Self {
            bidirectional,
            num_buckets: 32,
            max_distance: 128,
        }
    }

    /// Checks a configuration (`relative_attention_num_buckets`,
    /// `relative_attention_max_distance`; bidirectional for encoders).
    ///
    /// Errors: [`Error::ZeroDimension`] if `num_buckets` is 0;
    /// [`Error::OddDimension`] if bidirectional with an odd `num_buckets` (one
    /// bucket would never be used); [`Error::InvalidParameter`] if there is no
    /// exact bucket (`max_exact = 0`: fewer than 4 buckets bidirectional, 2
    /// causal, where the reference computes `log(d/0)`), if
    /// `max_distance <= max_exact` (the reference divides by `log(1) = 0` or
    /// worse), or if `max_distance > 2^31`.
    pub const fn new(
        bidirectional: bool,
        num_buckets: usize,
        max_distance: usize,
    ) -> Result<Self, Error> {
        if num_buckets == 0 {
            return Err(Error::ZeroDimension);
        }
        if bidirectional && num_buckets % 2 == 1 {
            return Err(Error::OddDimension { dim: num_buckets });
        }
        let nb = if bidirectional {
            num_buckets / 2
        } else {
            num_buckets
        };
        let max_exact = nb / 2;
        if max_exact == 0 || max_distance <= max_exact || max_distance > 1 << 31 {
            return Err(Error::InvalidParameter);
        }
        Ok(Self {
            bidirectional,
            num_buckets,
            max_distance,
        })
    }

    /// Whether buckets distinguish keys after the query (encoder) from keys before.
    pub const fn bidirectional(&self) -> bool {
        self.bidirectional
    }

    /// Number of buckets (rows of the bias table).
    pub const fn num_buckets(&self) -> usize {
        self.num_buckets
    }

    /// Distance from which every relative position shares the last bucket.
    pub const fn max_distance(&self) -> usize {
        self.max_distance
    }

    /// The bucket of `relative_position = key − query` (one logarithm: for tables).
    pub const fn bucket(&self, relative_position: i64) -> usize {
        relative_position_bucket(
            relative_position,
            self.bidirectional,
            self.num_buckets,
            self.max_distance,
        )
    }

    /// Smallest relative position a [`T5BucketTable`] stores: `−max_distance`.
    pub const fn min_relative(&self) -> i64 {
        -(self.max_distance as i64)
    }

    /// Largest relative position a [`T5BucketTable`] stores: `max_distance`
    /// (bidirectional) or 0 (causal: every key after the query is bucket 0).
    pub const fn max_relative(&self) -> i64 {
        if self.bidirectional {
            self.max_distance as i64
        } else {
            0
        }
    }

    /// Entries of a [`T5BucketTable`]: `2·max_distance + 1` or `max_distance + 1`.
    pub const fn table_len(&self) -> usize {
        (self.max_relative() - self.min_relative()) as usize + 1
    }

    /// The bucket table as an array, for a `const`/`static` in flash:
    /// entry `k` is the bucket of relative position `min_relative() + k`.
    ///
    /// Errors: [`Error::LengthMismatch`] if `N != table_len()`,
    /// [`Error::InvalidParameter`] if `num_buckets > 256` (buckets are bytes).
    pub const fn table<const N: usize>(&self) -> Result<[u8; N], Error> {
        if N != self.table_len() {
            return Err(Error::LengthMismatch {
                expected: self.table_len(),
                got: N,
            });
        }
        if self.num_buckets > 256 {
            return Err(Error::InvalidParameter);
        }
        let mut t = [0u8; N];
        let mut k = 0;
        while k < N {
            t[k] = self.bucket(self.min_relative() + k as i64) as u8;
            k += 1;
        }
        Ok(t)
    }

    /// Fills `out[..table_len()]` with the bucket table (see [`T5Buckets::table`]).
    ///
    /// Errors: [`Error::BufferTooSmall`] if `out` is shorter than `table_len()`,
    /// [`Error::InvalidParameter`] if `num_buckets > 256`.
    pub fn fill_table(&self, out: &mut [u8]) -> Result<(), Error> {
        let needed = self.table_len();
        if out.len() < needed {
            return Err(Error::BufferTooSmall {
                needed,
                got: out.len(),
            });
        }
        if self.num_buckets > 256 {
            return Err(Error::InvalidParameter);
        }
        let lo = self.min_relative();
        for (k, b) in out.iter_mut().take(needed).enumerate() {
            *b = self.bucket(lo + k as i64) as u8;
        }
        Ok(())
    }
}

/// `key − query` as an `i64` (clamped to the `i64` range).
fn relative(key: usize, query: usize) -> i64 {
    let r = key as i128 - query as i128;
    if r > i64::MAX as i128 {
        i64::MAX
    } else if r < i64::MIN as i128 {
        i64::MIN
    } else {
        r as i64
    }
}

/// Precomputed buckets for relative positions `min_relative()..=max_relative()`;
/// positions outside share the edge bucket. No logarithm per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct T5BucketTable<'a> {
    config: T5Buckets,
    buckets: &'a [u8],
}

impl<'a> T5BucketTable<'a> {
    /// Fills `storage` (at least `config.table_len()` bytes) and views it.
    ///
    /// Errors: as [`T5Buckets::fill_table`].
    pub fn new(config: T5Buckets, storage: &'a mut [u8]) -> Result<Self, Error> {
        config.fill_table(storage)?;
        let len = config.table_len();
        let buckets: &'a [u8] = storage;
        Ok(Self {
            config,
            buckets: buckets.get(..len).ok_or(Error::BufferTooSmall {
                needed: len,
                got: buckets.len(),
            })?,
        })
    }

    /// Views a table built earlier (e.g. by [`T5Buckets::table`] into a `static`).
    ///
    /// Errors: [`Error::LengthMismatch`] if `table.len() != config.table_len()`,
    /// [`Error::InvalidParameter`] if an entry is not a bucket of `config` (a
    /// cheap check, not a recomputation).
    pub fn from_slice(config: T5Buckets, table: &'a [u8]) -> Result<Self, Error> {
        if table.len() != config.table_len() {
            return Err(Error::LengthMismatch {
                expected: config.table_len(),
                got: table.len(),
            });
        }
        if table.iter().any(|&b| b as usize >= config.num_buckets) {
            return Err(Error::InvalidParameter);
        }
        Ok(Self {
            config,
            buckets: table,
        })
    }

    /// The configuration the table was built for.
    pub fn config(&self) -> T5Buckets {
        self.config
    }

    /// The bucket of `relative_position = key − query`, by table lookup.
    #[inline]
    pub fn bucket(&self, relative_position: i64) -> usize {
        let lo = self.config.min_relative();
        let r = relative_position.clamp(lo, self.config.max_relative());
        match self.buckets.get((r - lo) as usize) {
            Some(&b) => b as usize,
            None => self.config.bucket(relative_position),
        }
    }

    /// The bucket of key `key` seen from query `query`.
    #[inline]
    pub fn bucket_of(&self, query: usize, key: usize) -> usize {
        self.bucket(relative(key, query))
    }
}

/// Checks a `[num_buckets][n_heads]` bias table's shape.
fn check_bias_shape(len: usize, num_buckets: usize, n_heads: usize) -> Result<(), Error> {
    if n_heads == 0 {
        return Err(Error::InvalidHead { head: 0, heads: 0 });
    }
    if num_buckets == 0 {
        return Err(Error::ZeroDimension);
    }
    let expected = num_buckets
        .checked_mul(n_heads)
        .ok_or(Error::InvalidParameter)?;
    if len != expected {
        return Err(Error::LengthMismatch { expected, got: len });
    }
    Ok(())
}

/// Checks that a bucket table matches a bias table's bucket count and the head.
fn check_row(
    table: &T5BucketTable<'_>,
    num_buckets: usize,
    head: usize,
    n_heads: usize,
) -> Result<(), Error> {
    if table.config.num_buckets != num_buckets {
        return Err(Error::LengthMismatch {
            expected: num_buckets,
            got: table.config.num_buckets,
        });
    }
    if head >= n_heads {
        return Err(Error::InvalidHead {
            head,
            heads: n_heads,
        });
    }
    Ok(())
}

/// The T5 score-bias hook: the precomputed bucket table and the learned
/// per-head biases, `bias(h, i, j) = W[bucket(j − i)][h]` — a table lookup
/// per score, no logarithm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct T5Bias<'a> {
    buckets: T5BucketTable<'a>,
    weights: T5RelativeBias<'a>,
}

impl<'a> T5Bias<'a> {
    /// The hook over a bucket table and a bias table of the same bucket count.
    ///
    /// Errors: [`Error::LengthMismatch`] if the bucket counts differ.
    pub fn new(buckets: T5BucketTable<'a>, weights: T5RelativeBias<'a>) -> Result<Self, Error> {
        check_row(&buckets, weights.num_buckets, 0, weights.n_heads)?;
        Ok(Self { buckets, weights })
    }

    /// The bucket table.
    pub fn buckets(&self) -> T5BucketTable<'a> {
        self.buckets
    }

    /// The bias table.
    pub fn weights(&self) -> T5RelativeBias<'a> {
        self.weights
    }
}

impl super::bias::ScoreBiasFixed for T5Bias<'_> {
    /// `W[bucket(key − query)][head]` read as Q16 (the f32 weight rounded
    /// once, [`crate::num::int::fixed_from_f32`]), with the float row's
    /// traversal (nothing for a head past the table).
    #[inline]
    fn add_to_row_fixed(&self, head: usize, query: usize, start: usize, scores: &mut [i32]) {
        if head >= self.weights.n_heads {
            return;
        }
        for (s, w) in scores.iter_mut().zip(self.row(head, query, start)) {
            *s = s.saturating_add(crate::num::int::fixed_from_f32(w, 16));
        }
    }
}

impl T5Bias<'_> {
    /// The biases of `head` (a head of the table) for keys `start, start + 1, …`
    /// seen from `query`, one byte load (the bucket of `key − query`, clamped
    /// to the table's edge) and one weight load per key: the traversal of both
    /// score-bias hooks.
    #[inline(always)]
    fn row(&self, head: usize, query: usize, start: usize) -> impl Iterator<Item = f32> + '_ {
        // Entry `k` is relative position `k − max_distance` (`min_relative()`).
        let lo = self.buckets.config.max_distance;
        let last = self.buckets.buckets.len().saturating_sub(1);
        (0usize..).map(move |j| {
            let k = start
                .saturating_add(j)
                .saturating_add(lo)
                .saturating_sub(query);
            let b = self.buckets.buckets.get(k.min(last)).copied().unwrap_or(0);
            self.weights.at(b as usize, head)
        })
    }
}

impl super::bias::ScoreBias for T5Bias<'_> {
    /// `W[bucket(key − query)][head]` (0 for a head past the table).
    #[inline]
    fn bias(&self, head: usize, query: usize, key: usize) -> f32 {
        if head >= self.weights.n_heads {
            return 0.0;
        }
        self.weights.at(self.buckets.bucket_of(query, key), head)
    }

    /// The row of `query` for `head`: one byte load (the bucket of `j − query`,
    /// clamped to the table's edge) and one bias load per key.
    #[inline]
    fn add_to_row(&self, head: usize, query: usize, start: usize, scores: &mut [f32]) -> f32 {
        let mut max_val = f32::NEG_INFINITY;
        if head >= self.weights.n_heads {
            for &s in scores.iter() {
                max_val = max_val.max(s);
            }
            return max_val;
        }
        for (s, w) in scores.iter_mut().zip(self.row(head, query, start)) {
            *s += w;
            if *s > max_val {
                max_val = *s;
            }
        }
        max_val
    }
}

/// The learned f32 bias table `relative_attention_bias.weight`,
/// `[num_buckets][n_heads]` row-major, read in place.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct T5RelativeBias<'a> {
    weights: &'a [f32],
    num_buckets: usize,
    n_heads: usize,
}

impl<'a> T5RelativeBias<'a> {
    /// A view over `weights` (`num_buckets × n_heads` values).
    ///
    /// Errors: [`Error::InvalidHead`] for zero heads, [`Error::ZeroDimension`] for
    /// zero buckets, [`Error::LengthMismatch`] if `weights.len()` is not
    /// `num_buckets × n_heads`.
    pub fn new(weights: &'a [f32], num_buckets: usize, n_heads: usize) -> Result<Self, Error> {
        check_bias_shape(weights.len(), num_buckets, n_heads)?;
        Ok(Self {
            weights,
            num_buckets,
            n_heads,
        })
    }

    /// Number of buckets.
    pub fn num_buckets(&self) -> usize {
        self.num_buckets
    }

    /// Number of heads.
    pub fn n_heads(&self) -> usize {
        self.n_heads
    }

    /// The biases of every head for `bucket` (one row of the table).
    ///
    /// Errors: [`Error::PositionOutOfRange`] if `bucket >= num_buckets`.
    pub fn heads(&self, bucket: usize) -> Result<&'a [f32], Error> {
        let err = Error::PositionOutOfRange {
            position: bucket,
            len: self.num_buckets,
        };
        if bucket >= self.num_buckets {
            return Err(err);
        }
        let start = bucket * self.n_heads;
        self.weights.get(start..start + self.n_heads).ok_or(err)
    }

    /// `W[bucket][head]`.
    ///
    /// Errors: [`Error::PositionOutOfRange`] for a bucket past the table,
    /// [`Error::InvalidHead`] for `head >= n_heads`.
    pub fn bias(&self, bucket: usize, head: usize) -> Result<f32, Error> {
        self.heads(bucket)?
            .get(head)
            .copied()
            .ok_or(Error::InvalidHead {
                head,
                heads: self.n_heads,
            })
    }

    /// `W[bucket][head]` with both indices already in range (0 otherwise).
    #[inline]
    fn at(&self, bucket: usize, head: usize) -> f32 {
        self.weights
            .get(bucket * self.n_heads + head)
            .copied()
            .unwrap_or(0.0)
    }

    /// The bias row of `query` for `head`: `out[j] = W[bucket(j − query)][head]`
    /// for keys `j` in `0..out.len()`.
    ///
    /// Errors: [`Error::LengthMismatch`] if `table` was built for another bucket
    /// count, [`Error::InvalidHead`] for `head >= n_heads`.
    pub fn fill_row(
        &self,
        table: &T5BucketTable<'_>,
        head: usize,
        query: usize,
        out: &mut [f32],
    ) -> Result<(), Error> {
        check_row(table, self.num_buckets, head, self.n_heads)?;
        for (j, b) in out.iter_mut().enumerate() {
            *b = self.at(table.bucket_of(query, j), head);
        }
        Ok(())
    }

    /// Adds the bias row of `query` for `head` to the scores of keys `0..scores.len()`.
    ///
    /// Errors: as [`T5RelativeBias::fill_row`]; `scores` is then unchanged.
    pub fn add_to_scores(
        &self,
        table: &T5BucketTable<'_>,
        head: usize,
        query: usize,
        scores: &mut [f32],
    ) -> Result<(), Error> {
        check_row(table, self.num_buckets, head, self.n_heads)?;
        for (j, s) in scores.iter_mut().enumerate() {
            *s += self.at(table.bucket_of(query, j), head);
        }
        Ok(())
    }
}

/// The learned bias table in Q15, `[num_buckets][n_heads]`, read in place.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct T5RelativeBiasQ15<'a> {
    weights: &'a [Q15],
    num_buckets: usize,
    n_heads: usize,
}

impl<'a> T5RelativeBiasQ15<'a> {
    /// A view over `weights` (`num_buckets × n_heads` Q15 values).
    ///
    /// Errors: as [`T5RelativeBias::new`].
    pub fn new(weights: &'a [Q15], num_buckets: usize, n_heads: usize) -> Result<Self, Error> {
        check_bias_shape(weights.len(), num_buckets, n_heads)?;
        Ok(Self {
            weights,
            num_buckets,
            n_heads,
        })
    }

    /// Number of buckets.
    pub fn num_buckets(&self) -> usize {
        self.num_buckets
    }

    /// Number of heads.
    pub fn n_heads(&self) -> usize {
        self.n_heads
    }

    /// The biases of every head for `bucket`.
    ///
    /// Errors: [`Error::PositionOutOfRange`] if `bucket >= num_buckets`.
    pub fn heads(&self, bucket: usize) -> Result<&'a [Q15], Error> {
        let err = Error::PositionOutOfRange {
            position: bucket,
            len: self.num_buckets,
        };
        if bucket >= self.num_buckets {
            return Err(err);
        }
        let start = bucket * self.n_heads;
        self.weights.get(start..start + self.n_heads).ok_or(err)
    }

    /// `W[bucket][head]`.
    ///
    /// Errors: as [`T5RelativeBias::bias`].
    pub fn bias(&self, bucket: usize, head: usize) -> Result<Q15, Error> {
        self.heads(bucket)?
            .get(head)
            .copied()
            .ok_or(Error::InvalidHead {
                head,
                heads: self.n_heads,
            })
    }

    #[inline]
    fn at(&self, bucket: usize, head: usize) -> Q15 {
        self.weights
            .get(bucket * self.n_heads + head)
            .copied()
            .unwrap_or(0)
    }

    /// The Q15 bias row of `query` for `head` (see [`T5RelativeBias::fill_row`]).
    ///
    /// Errors: as [`T5RelativeBias::fill_row`].
    pub fn fill_row(
        &self,
        table: &T5BucketTable<'_>,
        head: usize,
        query: usize,
        out: &mut [Q15],
    ) -> Result<(), Error> {
        check_row(table, self.num_buckets, head, self.n_heads)?;
        for (j, b) in out.iter_mut().enumerate() {
            *b = self.at(table.bucket_of(query, j), head);
        }
        Ok(())
    }

    /// Adds the bias row of `query` for `head` to fixed-point scores with
    /// `frac_bits` fractional bits (`≤ 30`): each Q15 bias is rescaled (exactly
    /// when `frac_bits ≥ 15`, else rounded half away from zero) and added,
    /// saturating.
    ///
    /// Errors: [`Error::InvalidParameter`] if `frac_bits > 30`, else as
    /// [`T5RelativeBias::fill_row`]; `scores` is then unchanged.
    pub fn add_to_scores(
        &self,
        table: &T5BucketTable<'_>,
        head: usize,
        query: usize,
        frac_bits: u32,
        scores: &mut [i32],
    ) -> Result<(), Error> {
        if frac_bits > 30 {
            return Err(Error::InvalidParameter);
        }
        check_row(table, self.num_buckets, head, self.n_heads)?;
        for (j, s) in scores.iter_mut().enumerate() {
            let w = self.at(table.bucket_of(query, j), head) as i32;
            let v = if frac_bits >= 15 {
                // |w| <= 2^15, shift <= 15: fits an i32.
                w << (frac_bits - 15)
            } else {
                let shift = 15 - frac_bits;
                let half = 1i32 << (shift - 1);
                if w >= 0 {
                    (w + half) >> shift
                } else {
                    -((-w + half) >> shift)
                }
            };
            *s = s.saturating_add(v);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pos::bias::ScoreBias;

    #[test]
    fn score_bias_hook_looks_up_the_bucket_of_every_key() {
        for bi in [true, false] {
            let cfg = T5Buckets::t5(bi);
            let mut storage = [0u8; 512];
            let table = T5BucketTable::new(cfg, &mut storage).unwrap();
            let n_heads = 3;
            let w: Vec<f32> = (0..cfg.num_buckets() * n_heads)
                .map(|i| i as f32 * 0.25 - 7.0)
                .collect();
            let weights = T5RelativeBias::new(&w, cfg.num_buckets(), n_heads).unwrap();
            let hook = T5Bias::new(table, weights).unwrap();
            for h in 0..n_heads {
                for (i, j) in [(0usize, 0usize), (9, 2), (2, 9), (300, 1), (5, 400)] {
                    let r = j as i64 - i as i64;
                    let want = w[bucket_f64(r, bi, 32, 128) * n_heads + h];
                    assert_eq!(hook.bias(h, i, j), want, "bi {bi} h {h} ({i}, {j})");
                }
                // The trait's row form = the bias table's own row.
                let mut row = [0.5f32; 20];
                hook.add_to_row(h, 12, 0, &mut row);
                let mut own = [0.5f32; 20];
                weights.add_to_scores(&table, h, 12, &mut own).unwrap();
                assert_eq!(row, own);
            }
            assert_eq!(hook.bias(n_heads, 0, 0), 0.0);
            let other = T5RelativeBias::new(&w[..16 * n_heads], 16, n_heads).unwrap();
            assert!(matches!(
                T5Bias::new(table, other),
                Err(Error::LengthMismatch { .. })
            ));
        }
    }

    /// Hugging Face's formula in f64 (no float32 emulation), for comparison.
    fn bucket_f64(r: i64, bi: bool, nb: usize, md: usize) -> usize {
        let (mut nb, mut off) = (nb, 0);
        let d = if bi {
            nb /= 2;
            if r > 0 {
                off = nb;
            }
            r.unsigned_abs()
        } else {
            (-r.min(0)) as u64
        };
        let me = nb / 2;
        if d < me as u64 {
            return off + d as usize;
        }
        let v = ((d as f64 / me as f64).ln() / (md as f64 / me as f64).ln() * (nb - me) as f64)
            as usize;
        off + (me + v).min(nb - 1)
    }

    #[test]
    fn t5_defaults() {
        // Causal: keys after the query are bucket 0; 0..16 exact; then logarithmic.
        let c = T5Buckets::t5(false);
        assert_eq!(c.bucket(5), 0);
        assert_eq!(c.bucket(-15), 15);
        assert_eq!(c.bucket(-16), 16);
        assert_eq!(c.bucket(-127), 31);
        assert_eq!(c.bucket(-128), 31);
        assert_eq!(c.bucket(i64::MIN), 31);
        // Bidirectional: positive offsets use buckets 16..32.
        let b = T5Buckets::t5(true);
        assert_eq!(b.bucket(0), 0);
        assert_eq!(b.bucket(1), 17);
        assert_eq!(b.bucket(-1), 1);
        assert_eq!(b.bucket(i64::MAX), 31);
        assert_eq!(b.bucket(i64::MIN), 15);
    }

    #[test]
    fn float32_decides_boundaries() {
        // 18 buckets bidirectional (9 per side, max_exact 4), max_distance 128, d = 8:
        // ln 2 / ln 32 * 5 is exactly 1 in float32 but 0.999... in f64.
        let c = T5Buckets::new(true, 18, 128).unwrap();
        assert_eq!(c.bucket(-8), 5);
        assert_eq!(bucket_f64(-8, true, 18, 128), 4);
        // Away from boundaries both agree.
        for r in -300i64..=300 {
            if r != -8 && r != 8 && r.abs() != 16 && r.abs() != 64 {
                assert_eq!(c.bucket(r), bucket_f64(r, true, 18, 128), "{r}");
            }
        }
    }

    #[test]
    fn table_matches_direct_everywhere() {
        for (bi, nb, md) in [
            (true, 32, 128),
            (false, 32, 128),
            (true, 18, 128),
            (false, 8, 20),
            (true, 4, 3),
        ] {
            let cfg = T5Buckets::new(bi, nb, md).unwrap();
            let mut storage = [0u8; 300];
            let t = T5BucketTable::new(cfg, &mut storage).unwrap();
            for r in -1000..=1000 {
                assert_eq!(t.bucket(r), cfg.bucket(r), "{bi} {nb} {md} {r}");
            }
            assert_eq!(t.bucket(i64::MIN), cfg.bucket(i64::MIN));
            assert_eq!(t.bucket(i64::MAX), cfg.bucket(i64::MAX));
        }
        const CFG: T5Buckets = T5Buckets::t5(true);
        static TABLE: [u8; 257] = match CFG.table::<257>() {
            Ok(t) => t,
            Err(_) => [0; 257],
        };
        let t = T5BucketTable::from_slice(CFG, &TABLE).unwrap();
        assert_eq!(t.bucket_of(10, 3), CFG.bucket(-7));
        assert_eq!(t.bucket_of(3, 10), CFG.bucket(7));
    }

    #[test]
    fn validation() {
        assert_eq!(T5Buckets::new(true, 0, 128), Err(Error::ZeroDimension));
        assert_eq!(
            T5Buckets::new(true, 31, 128),
            Err(Error::OddDimension { dim: 31 })
        );
        assert_eq!(T5Buckets::new(true, 2, 128), Err(Error::InvalidParameter));
        assert_eq!(T5Buckets::new(false, 1, 128), Err(Error::InvalidParameter));
        assert_eq!(T5Buckets::new(false, 32, 16), Err(Error::InvalidParameter));
        assert!(T5Buckets::new(false, 32, 17).is_ok());
        assert!(T5Buckets::new(false, 2, 2).is_ok());
        assert_eq!(
            T5Buckets::t5(true).table::<256>(),
            Err(Error::LengthMismatch {
                expected: 257,
                got: 256
            })
        );
        let mut small = [0u8; 10];
        assert_eq!(
            T5BucketTable::new(T5Buckets::t5(false), &mut small),
            Err(Error::BufferTooSmall {
                needed: 129,
                got: 10
            })
        );
        let big = T5Buckets::new(false, 300, 1000).unwrap();
        let mut st = [0u8; 1001];
        assert_eq!(big.fill_table(&mut st), Err(Error::InvalidParameter));
        let bad = [40u8; 129];
        assert_eq!(
            T5BucketTable::from_slice(T5Buckets::t5(false), &bad),
            Err(Error::InvalidParameter)
        );
        // Invalid parameters never panic.
        for r in [-5i64, 0, 5, i64::MIN, i64::MAX] {
            assert_eq!(relative_position_bucket(r, true, 0, 0), 0);
            assert!(relative_position_bucket(r, true, 2, 128) < 2);
            assert!(relative_position_bucket(r, false, 1, 0) < 1);
        }
    }

    #[test]
    fn bias_lookup() {
        // 4 buckets x 2 heads, causal, max_distance 3: max_exact 2; d 0,1 exact, d>=2 -> 2 or 3.
        let cfg = T5Buckets::new(false, 4, 3).unwrap();
        let mut st = [0u8; 4];
        assert_eq!(
            T5BucketTable::new(cfg, &mut st).map(|t| t.bucket(-9)),
            Ok(3)
        );
        assert_eq!(&st, &[3, 2, 1, 0]);
        let t = T5BucketTable::from_slice(cfg, &st).unwrap();
        let w = [0.0f32, 10.0, 1.0, 11.0, 2.0, 12.0, 3.0, 13.0];
        let bias = T5RelativeBias::new(&w, 4, 2).unwrap();
        let mut row = [0.0f32; 6];
        bias.fill_row(&t, 1, 4, &mut row).unwrap();
        // keys 0..6 from query 4: d = 4,3,2,1,0,(after) -> buckets 3,3,2,1,0,0
        assert_eq!(row, [13.0, 13.0, 12.0, 11.0, 10.0, 10.0]);
        let mut s = [1.0f32; 3];
        bias.add_to_scores(&t, 0, 2, &mut s).unwrap();
        assert_eq!(s, [3.0, 2.0, 1.0]);
        assert_eq!(bias.bias(3, 1), Ok(13.0));
        assert_eq!(
            bias.bias(4, 0),
            Err(Error::PositionOutOfRange {
                position: 4,
                len: 4
            })
        );
        assert_eq!(
            bias.bias(0, 2),
            Err(Error::InvalidHead { head: 2, heads: 2 })
        );
        assert_eq!(
            bias.fill_row(&t, 2, 0, &mut row),
            Err(Error::InvalidHead { head: 2, heads: 2 })
        );
        assert_eq!(
            T5RelativeBias::new(&w[..7], 4, 2),
            Err(Error::LengthMismatch {
                expected: 8,
                got: 7
            })
        );
        assert_eq!(
            T5RelativeBias::new(&w, 8, 0),
            Err(Error::InvalidHead { head: 0, heads: 0 })
        );
        let other = T5RelativeBias::new(&w, 8, 1).unwrap();
        assert_eq!(
            other.fill_row(&t, 0, 0, &mut row),
            Err(Error::LengthMismatch {
                expected: 8,
                got: 4
            })
        );

        let wq: [Q15; 8] = [0, 16384, -16384, 16385, 32767, -32768, 3, -3];
        let bq = T5RelativeBiasQ15::new(&wq, 4, 2).unwrap();
        let mut rq = [0i16; 3];
        bq.fill_row(&t, 0, 2, &mut rq).unwrap();
        assert_eq!(rq, [32767, -16384, 0]);
        // Scores in Q8 (frac_bits 8): 0.5 -> 128, -0.5 -> -128, 16385/128 = 128.008 -> 128.
        let mut sc = [0i32; 3];
        bq.add_to_scores(&t, 1, 2, 8, &mut sc).unwrap();
        assert_eq!(sc, [-256, 128, 128]);
        let mut sc = [i32::MIN, 0, 0];
        bq.add_to_scores(&t, 1, 2, 30, &mut sc).unwrap();
        assert_eq!(sc, [i32::MIN, 16385 << 15, 16384 << 15]);
        assert_eq!(
            bq.add_to_scores(&t, 1, 2, 31, &mut sc),
            Err(Error::InvalidParameter)
        );
    }
}
