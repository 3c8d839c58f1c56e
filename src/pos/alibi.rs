//! ALiBi: attention with linear biases, slopes for any head count.
//!
//! # Formula
//!
//! Head `h` adds `−m_h·(i − j)` to the score of query `i` against key `j ≤ i`
//! (causal), or `−m_h·|i − j|` (symmetric, for encoders), before the softmax.
//! The slopes `m_h` form a geometric sequence:
//!
//! - **BLOOM** (Press et al., "Train Short, Test Long", 2022, and Hugging Face
//!   `modeling_bloom.py` `build_alibi_tensor`): with `c = 2^⌊log2 n⌋`, heads
//!   `h < c` get `m_h = 2^(−8(h+1)/c)`; the `n − c` extra heads take every other
//!   slope of the `2c` sequence: `m_{c+i} = 2^(−4(2i+1)/c)`.
//!   Hugging Face computes `base = 2^(−2^−(log2 c − 3))` in f64, rounds it to
//!   float32, then `torch.pow(base_f32, k)` in float32; [`slopes`] emulates this
//!   (the power is evaluated in f64 and rounded once to f32).
//! - **MPT** (Hugging Face `modeling_mpt.py` `build_alibi_bias`/`gen_slopes`):
//!   with `n2 = 2^⌈log2 n⌉`, `m_k = 1/2^(k·alibi_bias_max/n2)` for `k = 1..=n2`
//!   (the product `k·(alibi_bias_max/n2)`, the power and the reciprocal each in
//!   float32); when `n` is not a power of two, the slopes are reordered as
//!   `concat(slopes[1::2], slopes[::2])[:n]`. With `alibi_bias_max = 8` and a
//!   power-of-two `n` both rules give the same real numbers.
//!
//! [`slope_f64`] is the exact real-number model (`2^e` with the exponent exact
//! in f64).
//!
//! BLOOM's code adds `m_h·j` (the key position) rather than `−m_h·(i − j)`, and
//! MPT adds `m_h·(j − (L−1))`: all three differ by `m_h·i` (resp. `m_h·(L−1−i)`),
//! a constant along each row of scores, and softmax is invariant to adding a
//! constant to a row, so the attention weights are the same. Both forms are
//! offered ([`causal_bias_row`], [`key_position_bias_row`]); the relative form
//! keeps the biases near the diagonal, which dominate attention, small and so
//! more exact.
//!
//! # Error bound
//!
//! - f32 slopes: Hugging Face's own values are not the exact slopes: BLOOM rounds
//!   `base` to f32 before raising it to `k`, so `m_k` is off the exact
//!   `2^(−8k/c)` by up to `k·2^−24` relative (3.0e-7 relative at `n = 16`,
//!   head 15). [`slopes`] reproduces Hugging Face: every value for 1..=32 heads
//!   is within 1 ulp of `tables.json`, and all but one (BLOOM, 32 heads, head 14,
//!   where the exact power lies 0.52 ulp above the lower float and PyTorch's
//!   float32 `pow`, accurate to 1 ulp, rounds down) are bit-identical.
//! - f32 biases: `−(m·d)` with `d` converted exactly (below 2^24): ≤ ½ ulp of
//!   the bias beyond the slope's own error.
//! - fixed point: slopes are unsigned fractions, [`slope_q32`] with 32 fractional
//!   bits (≤ 2^−33 absolute error) for storage, and [`FixedSlope`] with 64
//!   fractional bits for biases. A bias is an `i32` with a caller-chosen number
//!   `f ≤ 31` of fractional bits (the score's scale), `−round(m·d·2^f)` computed
//!   from the exact integer product of the 64-bit slope and `d`, rounded once
//!   (half away from zero) and saturated to `i32::MIN`: ≤ ½ LSB + `d·2^(f−65)`
//!   against the exact value (within 1 LSB of the f64 model at every distance
//!   0..=65535 where the result is representable; tested). A bias made from a
//!   32-bit slope ([`FixedSlope::from_q32`]) adds up to `d·2^(f−33)` LSB.
//!
//! # Memory
//!
//! Slopes: 4 bytes per head (f32 or Q32), 8 bytes per head for [`FixedSlope`].
//! Bias rows are computed into caller storage (one row of keys per query and
//! head: `4·L` bytes), so no `[heads][L][L]` tensor is ever stored.

use crate::num::math;
use crate::Error;

/// Which published rule makes the slopes.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AlibiRule {
    /// BLOOM/Falcon/fairseq (`build_alibi_tensor`): closest lower power of two,
    /// extra heads interleaved from the doubled sequence.
    Bloom,
    /// MPT (`gen_slopes`): next power of two, `alibi_bias_max` (MPT's default: 8),
    /// odd-then-even reorder when the head count is not a power of two.
    Mpt {
        /// The largest exponent: the slope of head `n2 − 1` is `2^−alibi_bias_max`.
        alibi_bias_max: f64,
    },
}

impl AlibiRule {
    /// MPT with its default `alibi_bias_max = 8`.
    pub const MPT_DEFAULT: AlibiRule = AlibiRule::Mpt {
        alibi_bias_max: 8.0,
    };

    /// Checks the rule's parameter and the head count.
    const fn check(&self, n_heads: usize) -> Result<(), Error> {
        if n_heads == 0 {
            return Err(Error::InvalidHead { head: 0, heads: 0 });
        }
        match *self {
            AlibiRule::Bloom => Ok(()),
            AlibiRule::Mpt { alibi_bias_max } => {
                let valid_max = alibi_bias_max.is_finite() && alibi_bias_max > 0.0;
                if valid_max && n_heads.checked_next_power_of_two().is_some() {
                    Ok(())
                } else {
                    Err(Error::InvalidParameter)
                }
            }
        }
    }

    /// Checks the rule, the head count and the head index.
    const fn check_head(&self, n_heads: usize, head: usize) -> Result<(), Error> {
        match self.check(n_heads) {
            Err(e) => Err(e),
            Ok(()) => {
                if head >= n_heads {
                    Err(Error::InvalidHead {
                        head,
                        heads: n_heads,
                    })
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// `2^e` for an integer `e` in the normal range `-1022..=1023`.
const fn pow2i(e: i64) -> f64 {
    f64::from_bits(((e + 1023) as u64) << 52)
}

/// `2^x`: exact for integer `x`, otherwise `2^⌊x⌋·exp(frac·ln 2)` (≤ 3 ulp).
const fn exp2(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x > 1024.0 {
        return f64::INFINITY;
    }
    if x < -1075.0 {
        return 0.0;
    }
    let n = math::floor(x);
    let f = x - n;
    let r = if f == 0.0 {
        1.0
    } else {
        math::exp(f * math::LN2)
    };
    let n = n as i64;
    if n >= -1022 && n <= 1023 {
        r * pow2i(n)
    } else if n > 1023 {
        r * pow2i(n - 1) * 2.0
    } else {
        // Subnormal result: scale in two steps.
        r * pow2i(n + 600) * pow2i(-600)
    }
}

/// `⌊log2 n⌋` for `n ≥ 1`.
const fn floor_log2(n: usize) -> u32 {
    usize::BITS - 1 - n.leading_zeros()
}

/// BLOOM: `(exponent of the sequence's ratio, power)` of head `head`, with the
/// slope `= 2^(−ratio·power)` where `ratio = 8/c` (main heads) or `4/c` (extra).
/// Returns `(log2 of the sequence length (c or 2c), power k)`.
const fn bloom_parts(n_heads: usize, head: usize) -> (u32, f64) {
    let k = floor_log2(n_heads);
    let c = 1usize << k;
    if head < c {
        (k, (head + 1) as f64)
    } else {
        (k + 1, 2.0 * (head - c) as f64 + 1.0)
    }
}

/// MPT: `(n2, k)` of head `head` after the reorder (`k` in `1..=n2`).
const fn mpt_parts(n_heads: usize, head: usize) -> (usize, usize) {
    let n2 = match n_heads.checked_next_power_of_two() {
        Some(p) => p,
        None => 0,
    };
    let k = if n2 == n_heads {
        head + 1
    } else if head < n2 / 2 {
        // slopes[1::2]: indices 1, 3, 5, ... i.e. k = 2, 4, 6, ...
        2 * head + 2
    } else {
        // slopes[::2]: indices 0, 2, 4, ... i.e. k = 1, 3, 5, ...
        2 * (head - n2 / 2) + 1
    };
    (n2, k)
}

/// The exact slope of `head` (`0..n_heads`) under `rule`, in f64.
///
/// BLOOM: `2^(−8(h+1)/c)` for `h < c = 2^⌊log2 n⌋`, `2^(−4(2(h−c)+1)/c)` after;
/// MPT: `2^(−k·alibi_bias_max/n2)` with the reordered `k`. The exponent is exact
/// for any realistic head count, the power ≤ 3 ulp.
///
/// Returns NaN for an invalid rule, head count or head (the checked functions of
/// this module return an [`Error`] instead).
pub const fn slope_f64(rule: AlibiRule, n_heads: usize, head: usize) -> f64 {
    if rule.check_head(n_heads, head).is_err() {
        return f64::NAN;
    }
    match rule {
        AlibiRule::Bloom => {
            let (log_len, power) = bloom_parts(n_heads, head);
            // ratio exponent 8/len, len = 2^log_len: 8 / 2^log_len = 2^(3 - log_len)
            let ratio = exp2(3.0 - log_len as f64);
            exp2(-ratio * power)
        }
        AlibiRule::Mpt { alibi_bias_max } => {
            let (n2, k) = mpt_parts(n_heads, head);
            exp2(-(k as f64 * alibi_bias_max) / n2 as f64)
        }
    }
}

/// One slope as Hugging Face computes it in float32 (see the module docs).
///
/// Errors: [`Error::InvalidHead`] for zero heads or `head >= n_heads`,
/// [`Error::InvalidParameter`] for a non-finite or non-positive
/// `alibi_bias_max` (or a head count with no next power of two).
pub fn slope(rule: AlibiRule, n_heads: usize, head: usize) -> Result<f32, Error> {
    rule.check_head(n_heads, head)?;
    Ok(slope_f32_unchecked(rule, n_heads, head))
}

fn slope_f32_unchecked(rule: AlibiRule, n_heads: usize, head: usize) -> f32 {
    match rule {
        AlibiRule::Bloom => {
            let (log_len, power) = bloom_parts(n_heads, head);
            // Python: 2 ** (-(2 ** -(log2(len) - 3))) in f64, then torch.float32.
            let base = exp2(-exp2(3.0 - log_len as f64)) as f32;
            // torch.pow(base_f32, k) in float32: evaluated in f64, rounded once.
            math::pow(base as f64, power) as f32
        }
        AlibiRule::Mpt { alibi_bias_max } => {
            let (n2, k) = mpt_parts(n_heads, head);
            // m = arange(1, n2+1).float() * f32(alibi_bias_max / n2), in float32.
            let step = (alibi_bias_max / n2 as f64) as f32;
            let m = k as f32 * step;
            // torch.pow(2, m) in float32, then 1.0 / x (reciprocal) in float32.
            let p = exp2(m as f64) as f32;
            1.0 / p
        }
    }
}

/// Writes the `n_heads` slopes of `rule` to `out[..n_heads]`, as Hugging Face
/// computes them in float32.
///
/// Errors: as [`slope`], and [`Error::BufferTooSmall`] if `out.len() < n_heads`.
pub fn slopes(rule: AlibiRule, n_heads: usize, out: &mut [f32]) -> Result<(), Error> {
    rule.check(n_heads)?;
    if out.len() < n_heads {
        return Err(Error::BufferTooSmall {
            needed: n_heads,
            got: out.len(),
        });
    }
    for (head, m) in out.iter_mut().take(n_heads).enumerate() {
        *m = slope_f32_unchecked(rule, n_heads, head);
    }
    Ok(())
}

/// `round(x·scale)` in f64 (the caller saturates when converting to an integer).
const fn to_fraction(x: f64, scale: f64) -> f64 {
    math::round(x * scale)
}

/// The exact slope with 32 fractional bits (`round(m·2^32)`, saturating at
/// `u32::MAX`): absolute error ≤ 2^−33.
///
/// Errors: as [`slope`].
pub const fn slope_q32(rule: AlibiRule, n_heads: usize, head: usize) -> Result<u32, Error> {
    if let Err(e) = rule.check_head(n_heads, head) {
        return Err(e);
    }
    let v = to_fraction(slope_f64(rule, n_heads, head), 4_294_967_296.0);
    Ok(if v >= 4_294_967_295.0 {
        u32::MAX
    } else {
        v as u32
    })
}

/// Writes the `n_heads` exact slopes with 32 fractional bits to `out[..n_heads]`.
///
/// Errors: as [`slopes`].
pub fn slopes_q32(rule: AlibiRule, n_heads: usize, out: &mut [u32]) -> Result<(), Error> {
    rule.check(n_heads)?;
    if out.len() < n_heads {
        return Err(Error::BufferTooSmall {
            needed: n_heads,
            got: out.len(),
        });
    }
    for (head, m) in out.iter_mut().take(n_heads).enumerate() {
        *m = slope_q32(rule, n_heads, head)?;
    }
    Ok(())
}

/// Checks that `query < out.len()` (the causal row covers keys `0..=query`).
fn check_causal(query: usize, len: usize) -> Result<usize, Error> {
    let needed = query.checked_add(1).ok_or(Error::BufferTooSmall {
        needed: usize::MAX,
        got: len,
    })?;
    if len < needed {
        return Err(Error::BufferTooSmall { needed, got: len });
    }
    Ok(needed)
}

/// The f32 bias `−(m·d)` of slope `m` at distance `d = |i − j|`: the distance
/// converted to f32 (exactly, below 2^24) and multiplied once. Every f32 bias of
/// this module is this expression.
#[inline(always)]
pub fn bias_f32(slope: f32, distance: usize) -> f32 {
    -(slope * distance as f32)
}

/// The ALiBi score-bias hook: one slope per query head (read in place, e.g. the
/// image's `AlibiSlopes`), bias `−m_h·|i − j|` ([`bias_f32`]) — the causal
/// `−m_h·(i − j)` for the keys a decoder sees, the symmetric form for an encoder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlibiBias<'a> {
    slopes: &'a [f32],
}

impl<'a> AlibiBias<'a> {
    /// The hook over `slopes` (one per query head).
    ///
    /// Errors: [`Error::ZeroDimension`] for no slope; [`Error::InvalidParameter`]
    /// for a slope that is not finite.
    pub fn new(slopes: &'a [f32]) -> Result<Self, Error> {
        if slopes.is_empty() {
            return Err(Error::ZeroDimension);
        }
        if slopes.iter().any(|m| !m.is_finite()) {
            return Err(Error::InvalidParameter);
        }
        Ok(Self { slopes })
    }

    /// The slopes, one per query head.
    pub fn slopes(&self) -> &'a [f32] {
        self.slopes
    }

    /// Head `head`'s slope (0 past the last head: no bias).
    #[inline(always)]
    fn slope(&self, head: usize) -> f32 {
        self.slopes.get(head).copied().unwrap_or(0.0)
    }
}

impl super::bias::ScoreBias for AlibiBias<'_> {
    #[inline(always)]
    fn bias(&self, head: usize, query: usize, key: usize) -> f32 {
        bias_f32(self.slope(head), query.abs_diff(key))
    }

    #[inline]
    fn add_to_row(&self, head: usize, query: usize, start: usize, scores: &mut [f32]) -> f32 {
        let m = self.slope(head);
        let mut max_val = f32::NEG_INFINITY;
        for (j, s) in scores.iter_mut().enumerate() {
            *s += bias_f32(m, query.abs_diff(start + j));
            if *s > max_val {
                max_val = *s;
            }
        }
        max_val
    }
}

impl super::bias::ScoreBiasFixed for AlibiBias<'_> {
    /// `−round(m·|query − key|·2^16)` with the image's f32 slope read as Q31
    /// (exact for the power-of-two slopes of the standard rules; otherwise
    /// the slope is off by at most 2^−32, so a bias by `distance · 2^−16` LSB).
    #[inline]
    fn add_to_row_fixed(&self, head: usize, query: usize, start: usize, scores: &mut [i32]) {
        let m = crate::num::int::fixed_from_f32(self.slope(head), 31) as i64;
        for (j, s) in scores.iter_mut().enumerate() {
            let d = query.abs_diff(start + j) as i64;
            let b = (m.saturating_mul(d) + (1 << 14)) >> 15;
            *s = crate::num::int::sat_i32((*s as i64).saturating_sub(b));
        }
    }
}

/// The causal f32 bias row of query `query`: `out[j] = −m·(query − j)` for keys
/// `j` in `0..=query` (the rest of `out` is untouched).
///
/// The distance is converted to f32 exactly (below 2^24) and multiplied once.
/// Errors: [`Error::BufferTooSmall`] if `out.len() <= query`.
pub fn causal_bias_row(slope: f32, query: usize, out: &mut [f32]) -> Result<(), Error> {
    let needed = check_causal(query, out.len())?;
    for (j, b) in out.iter_mut().take(needed).enumerate() {
        *b = bias_f32(slope, query - j);
    }
    Ok(())
}

/// The symmetric (bidirectional) f32 bias row of query `query`:
/// `out[j] = −m·|query − j|` for every key `j` in `0..out.len()`.
pub fn symmetric_bias_row(slope: f32, query: usize, out: &mut [f32]) {
    for (j, b) in out.iter_mut().enumerate() {
        *b = bias_f32(slope, query.abs_diff(j));
    }
}

/// Hugging Face BLOOM's form: `out[j] = m·j` for every key `j` (the same for every
/// query; it equals [`causal_bias_row`] plus the row constant `m·query`, which the
/// softmax ignores).
pub fn key_position_bias_row(slope: f32, out: &mut [f32]) {
    for (j, b) in out.iter_mut().enumerate() {
        *b = slope * j as f32;
    }
}

/// A slope as an unsigned fraction with 64 fractional bits, for fixed-point biases.
///
/// Built from the exact model it is `m` to within 2^−65 (for the slopes of these
/// rules, ≥ 2^−11, it is `m_f64·2^64` exactly), so a bias is the f64 model
/// rounded once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FixedSlope {
    q64: u64,
}

/// `round(|v|)` of the non-negative exact product `q64·d / 2^(64−f)`.
const fn scaled_magnitude(q64: u64, distance: usize, frac_bits: u32) -> u128 {
    let prod = q64 as u128 * distance as u128;
    let shift = 64 - frac_bits;
    // prod <= (2^64 - 1)^2, so adding 2^(shift-1) <= 2^63 cannot overflow.
    (prod + (1u128 << (shift - 1))) >> shift
}

/// Checks a bias scale: `frac_bits ≤ 31`.
const fn check_frac(frac_bits: u32) -> Result<(), Error> {
    if frac_bits > 31 {
        Err(Error::InvalidParameter)
    } else {
        Ok(())
    }
}

impl FixedSlope {
    /// The exact slope of `head` under `rule` (from [`slope_f64`]).
    ///
    /// Errors: as [`slope`].
    pub const fn new(rule: AlibiRule, n_heads: usize, head: usize) -> Result<Self, Error> {
        if let Err(e) = rule.check_head(n_heads, head) {
            return Err(e);
        }
        Self::from_f64(slope_f64(rule, n_heads, head))
    }

    /// A slope `0 ≤ m ≤ 1` (1 saturates to `1 − 2^−64`).
    ///
    /// Errors: [`Error::InvalidParameter`] if `m` is NaN, negative or above 1.
    pub const fn from_f64(m: f64) -> Result<Self, Error> {
        // NaN fails both comparisons.
        let in_range = m >= 0.0 && m <= 1.0;
        if !in_range {
            return Err(Error::InvalidParameter);
        }
        let v = to_fraction(m, 18_446_744_073_709_551_616.0);
        // `as` saturates at u64::MAX for v = 2^64.
        Ok(Self { q64: v as u64 })
    }

    /// A slope stored with 32 fractional bits (e.g. from [`slope_q32`]); biases
    /// then follow that slope exactly (its own error is up to 2^−33).
    pub const fn from_q32(q32: u32) -> Self {
        Self {
            q64: (q32 as u64) << 32,
        }
    }

    /// The slope with 64 fractional bits.
    pub const fn q64(&self) -> u64 {
        self.q64
    }

    /// The slope with 32 fractional bits, rounded (saturating at `u32::MAX`).
    pub const fn q32(&self) -> u32 {
        let r = (self.q64 >> 32) + ((self.q64 >> 31) & 1);
        if r > u32::MAX as u64 {
            u32::MAX
        } else {
            r as u32
        }
    }

    /// The slope as f64.
    pub const fn to_f64(&self) -> f64 {
        self.q64 as f64 / 18_446_744_073_709_551_616.0
    }

    /// The bias for a key `distance` positions back: `−round(m·distance·2^frac_bits)`
    /// as an `i32` with `frac_bits` fractional bits, saturating at `i32::MIN`.
    ///
    /// Errors: [`Error::InvalidParameter`] if `frac_bits > 31`.
    pub const fn bias(&self, distance: usize, frac_bits: u32) -> Result<i32, Error> {
        if let Err(e) = check_frac(frac_bits) {
            return Err(e);
        }
        Ok(self.bias_unchecked(distance, frac_bits))
    }

    const fn bias_unchecked(&self, distance: usize, frac_bits: u32) -> i32 {
        let r = scaled_magnitude(self.q64, distance, frac_bits);
        if r >= 1u128 << 31 {
            i32::MIN
        } else {
            -(r as i32)
        }
    }

    /// The causal fixed-point bias row of `query`: `out[j] = bias(query − j)` for
    /// keys `j` in `0..=query`.
    ///
    /// Errors: [`Error::InvalidParameter`] if `frac_bits > 31`,
    /// [`Error::BufferTooSmall`] if `out.len() <= query`.
    pub fn causal_row(&self, query: usize, frac_bits: u32, out: &mut [i32]) -> Result<(), Error> {
        check_frac(frac_bits)?;
        let needed = check_causal(query, out.len())?;
        for (j, b) in out.iter_mut().take(needed).enumerate() {
            *b = self.bias_unchecked(query - j, frac_bits);
        }
        Ok(())
    }

    /// The symmetric fixed-point bias row of `query`: `out[j] = bias(|query − j|)`
    /// for every key `j` in `0..out.len()`.
    ///
    /// Errors: [`Error::InvalidParameter`] if `frac_bits > 31`.
    pub fn symmetric_row(
        &self,
        query: usize,
        frac_bits: u32,
        out: &mut [i32],
    ) -> Result<(), Error> {
        check_frac(frac_bits)?;
        for (j, b) in out.iter_mut().enumerate() {
            *b = self.bias_unchecked(query.abs_diff(j), frac_bits);
        }
        Ok(())
    }

    /// BLOOM's form in fixed point: `out[j] = +round(m·j·2^frac_bits)`, saturating
    /// at `i32::MAX`.
    ///
    /// Errors: [`Error::InvalidParameter`] if `frac_bits > 31`.
    pub fn key_position_row(&self, frac_bits: u32, out: &mut [i32]) -> Result<(), Error> {
        check_frac(frac_bits)?;
        for (j, b) in out.iter_mut().enumerate() {
            let r = scaled_magnitude(self.q64, j, frac_bits);
            *b = if r > i32::MAX as u128 {
                i32::MAX
            } else {
                r as i32
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pos::bias::ScoreBias;

    #[test]
    fn score_bias_hook_is_the_exact_linear_bias() {
        let mut slopes = [0.0f32; 6];
        slopes_f32_for_test(&mut slopes);
        let hook = AlibiBias::new(&slopes).unwrap();
        for (h, &slope) in slopes.iter().enumerate() {
            let m = f64::from(slope);
            for (i, j) in [(0usize, 0usize), (5, 2), (2, 5), (511, 0), (70_000, 3)] {
                let b = hook.bias(h, i, j);
                // −m·|i − j| correctly rounded from the f64 product.
                assert_eq!(b, -(m * i.abs_diff(j) as f64) as f32, "h {h} ({i}, {j})");
            }
            // The row form equals the element form and the causal row.
            let (query, start) = (40usize, 7usize);
            let mut row = [1.5f32; 34];
            let max = hook.add_to_row(h, query, start, &mut row);
            let mut causal = [0.0f32; 41];
            causal_bias_row(slope, query, &mut causal).unwrap();
            for (j, &r) in row.iter().enumerate() {
                assert_eq!(r, 1.5 + causal[start + j], "h {h} key {}", start + j);
            }
            assert_eq!(max, 1.5 + causal[start + 33]);
        }
        // Past the last head: no bias.
        assert_eq!(hook.bias(6, 9, 0), 0.0);
        assert_eq!(AlibiBias::new(&[]), Err(Error::ZeroDimension));
        assert_eq!(AlibiBias::new(&[f32::NAN]), Err(Error::InvalidParameter));
    }

    fn slopes_f32_for_test(out: &mut [f32]) {
        slopes(AlibiRule::Bloom, out.len(), out).unwrap();
    }

    #[test]
    fn power_of_two_counts_agree_between_rules() {
        for n in [1usize, 2, 4, 8, 16, 32, 64] {
            for h in 0..n {
                let b = slope_f64(AlibiRule::Bloom, n, h);
                let m = slope_f64(AlibiRule::MPT_DEFAULT, n, h);
                assert_eq!(b, m, "n {n} h {h}");
                let e = 2f64.powf(-8.0 * (h + 1) as f64 / n as f64);
                assert!((b - e).abs() <= 2.0 * f64::EPSILON * e, "n {n} h {h}");
            }
        }
        assert_eq!(slope_f64(AlibiRule::Bloom, 8, 0), 0.5);
        assert_eq!(slope_f64(AlibiRule::Bloom, 1, 0), 1.0 / 256.0);
    }

    #[test]
    fn extra_heads_and_reorder() {
        // BLOOM, 5 heads: 1/4, 1/16, 1/64, 1/256, then 2^-1 (every other of 8).
        let mut s = [0.0f32; 5];
        slopes(AlibiRule::Bloom, 5, &mut s).unwrap();
        assert_eq!(s, [0.25, 0.0625, 0.015625, 0.00390625, 0.5]);
        // MPT, 3 heads: n2 = 4, slopes 2^-2, 2^-4, 2^-6, 2^-8 -> [1::2] + [::2] = k 2, 4, 1.
        slopes(AlibiRule::MPT_DEFAULT, 3, &mut s).unwrap();
        assert_eq!(&s[..3], &[0.0625, 0.00390625, 0.25]);
        assert_eq!(s[3], 0.00390625); // untouched from before
    }

    #[test]
    fn errors() {
        let mut s = [0.0f32; 2];
        assert_eq!(
            slopes(AlibiRule::Bloom, 0, &mut s),
            Err(Error::InvalidHead { head: 0, heads: 0 })
        );
        assert_eq!(
            slopes(AlibiRule::Bloom, 3, &mut s),
            Err(Error::BufferTooSmall { needed: 3, got: 2 })
        );
        assert_eq!(
            slope(
                AlibiRule::Mpt {
                    alibi_bias_max: 0.0
                },
                2,
                0
            ),
            Err(Error::InvalidParameter)
        );
        assert_eq!(
            slope(
                AlibiRule::Mpt {
                    alibi_bias_max: f64::NAN
                },
                2,
                0
            ),
            Err(Error::InvalidParameter)
        );
        assert_eq!(
            slope_q32(AlibiRule::Bloom, 4, 4),
            Err(Error::InvalidHead { head: 4, heads: 4 })
        );
        assert!(slope_f64(AlibiRule::Bloom, 0, 0).is_nan());
        let f = FixedSlope::from_q32(1 << 31);
        assert_eq!(f.bias(3, 32), Err(Error::InvalidParameter));
        assert_eq!(FixedSlope::from_f64(1.5), Err(Error::InvalidParameter));
        let mut r = [0i32; 2];
        assert_eq!(
            f.causal_row(2, 8, &mut r),
            Err(Error::BufferTooSmall { needed: 3, got: 2 })
        );
    }

    #[test]
    fn fixed_bias_rounds_once_and_saturates() {
        let half = FixedSlope::from_f64(0.5).unwrap();
        assert_eq!(half.q32(), 1 << 31);
        assert_eq!(half.bias(3, 0), Ok(-2)); // -1.5 rounds away from zero
        assert_eq!(half.bias(3, 1), Ok(-3));
        assert_eq!(half.bias(1 << 32, 0), Ok(i32::MIN)); // exactly -2^31
        assert_eq!(half.bias((1 << 32) + 2, 0), Ok(i32::MIN)); // saturated
        let mut row = [0i32; 4];
        half.key_position_row(0, &mut row).unwrap();
        assert_eq!(row, [0, 1, 1, 2]);
        half.causal_row(3, 4, &mut row).unwrap();
        assert_eq!(row, [-24, -16, -8, 0]);
        half.symmetric_row(1, 4, &mut row).unwrap();
        assert_eq!(row, [-8, 0, -8, -16]);
        let one = FixedSlope::from_f64(1.0).unwrap();
        assert_eq!(one.q64(), u64::MAX);
        assert_eq!(one.q32(), u32::MAX);
        assert_eq!(FixedSlope::from_q32(12345).q32(), 12345);
    }

    #[test]
    fn f32_rows() {
        let mut r = [9.0f32; 5];
        causal_bias_row(0.25, 3, &mut r).unwrap();
        assert_eq!(r, [-0.75, -0.5, -0.25, -0.0, 9.0]);
        symmetric_bias_row(0.25, 1, &mut r);
        assert_eq!(r, [-0.25, -0.0, -0.25, -0.5, -0.75]);
        key_position_bias_row(0.25, &mut r);
        assert_eq!(r, [0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(
            causal_bias_row(0.25, 5, &mut r),
            Err(Error::BufferTooSmall { needed: 6, got: 5 })
        );
    }
}
