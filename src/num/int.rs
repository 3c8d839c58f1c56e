//! Integer arithmetic for the integer forward step ([`crate::model::Arith::Integer`]):
//! f32 values read from an image as bit patterns and turned into fixed point
//! with integer instructions only, a small block-float scale type, the int8
//! group quantizer, an integer square root, and `e^x` and the logistic
//! function by table.
//!
//! Nothing here executes a floating-point instruction or calls a soft-float
//! routine: an `f32` from flash is only ever read through [`f32::to_bits`]
//! (an integer load) and decoded field by field.
//!
//! Formats:
//! - activations are Q16.16 in an `i32` ([`ACT_FRAC`] fractional bits);
//! - a [`Scale`] is `m · 2^e` with a 15-bit mantissa `2^14 ≤ m < 2^15` (or
//!   `m = 0`), so that the product of two mantissas fits 30 bits and the
//!   product with an `i32` dot product fits an `i64`;
//! - the tables ([`EXP2_NEG`], [`SIGMOID`]) are Q15, built by `const fn` from
//!   the f64 model at compile time (1 KiB of flash together).
//!
//! Error bounds (tests below, against f64):
//! - [`fixed_from_f32_bits`]: the f32 value rounded once (0.5 LSB);
//! - [`Scale::from_f32_bits`]: relative error ≤ 2^−15 (mantissa rounded to
//!   15 bits); [`Scale::mul`]: ≤ 2^−14 beyond its inputs' (truncated to 15
//!   bits); [`Scale::ratio`]: ≤ 2^−13 (the divisor truncated to 16 bits, the
//!   quotient to 15);
//! - [`exp_q16`]: ≤ 2 LSB of Q16 on `[−32, 0]` (table rounding and linear
//!   interpolation over 256 segments of a binade);
//! - [`sigmoid_q15`]: ≤ 3 LSB of Q15 over every input (interpolation over
//!   steps of 1/16 on `[−16, 16)`, the tails clamped to 0 and 1);
//! - [`isqrt_u64`]: `⌊√n⌋` exactly.

use super::math;

/// Fractional bits of the integer step's activations (Q16.16 in an `i32`).
pub const ACT_FRAC: u32 = 16;

/// `round(v · 2^frac)` of the f32 whose bits are `bits`, saturated to the
/// `i32` range (±∞ saturate, NaN gives 0): integer instructions only.
pub const fn fixed_from_f32_bits(bits: u32, frac: u32) -> i32 {
    let exp = ((bits >> 23) & 0xff) as i32;
    let negative = bits >> 31 != 0;
    if exp == 0 {
        // Zero or subnormal: below 2^−126, nothing at any frac ≤ 32... rounds to 0.
        return 0;
    }
    let mant = bits & 0x7f_ffff;
    if exp == 0xff {
        if mant != 0 {
            return 0;
        }
        return if negative { i32::MIN + 1 } else { i32::MAX };
    }
    // 24 bits: every intermediate below fits a `u32` (`mant · 2^8 < 2^32`,
    // `mant + 2^24 < 2^25`), so no 64-bit shift (a library call on Arm).
    let mant = mant | 0x80_0000;
    // v · 2^frac = mant · 2^shift.
    let shift = exp - 150 + frac as i32;
    let mag: u32 = if shift >= 0 {
        if shift > 8 {
            u32::MAX
        } else {
            mant << shift
        }
    } else {
        let s = -shift;
        if s > 25 {
            0
        } else {
            (mant + (1u32 << (s - 1))) >> s
        }
    };
    let mag = if mag > i32::MAX as u32 {
        i32::MAX
    } else {
        mag as i32
    };
    if negative {
        -mag
    } else {
        mag
    }
}

/// `round(v · 2^frac)` of an f32 read from an image (see [`fixed_from_f32_bits`]).
#[inline(always)]
pub fn fixed_from_f32(v: f32, frac: u32) -> i32 {
    fixed_from_f32_bits(v.to_bits(), frac)
}

/// A positive scale in block-float form: `m · 2^e`, `2^14 ≤ m < 2^15`, or zero
/// (`m = 0`). Products of two mantissas fit 30 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Scale {
    /// The mantissa (0, or in `2^14..2^15`).
    pub m: i32,
    /// The exponent.
    pub e: i32,
}

impl Scale {
    /// Zero.
    pub const ZERO: Scale = Scale { m: 0, e: 0 };

    /// `v · 2^e`, normalised: `v` is shifted (truncating) into `2^14..2^15`.
    pub const fn normalize(v: u64, e: i32) -> Scale {
        if v == 0 {
            return Scale::ZERO;
        }
        let bits = 64 - v.leading_zeros() as i32; // v in [2^(bits-1), 2^bits)
        let sh = bits - 15;
        if sh >= 0 {
            Scale {
                m: (v >> sh) as i32,
                e: e + sh,
            }
        } else {
            Scale {
                m: (v << -sh) as i32,
                e: e + sh,
            }
        }
    }

    /// The magnitude of the f32 whose bits are `bits`, mantissa rounded to 15
    /// bits (zero, subnormals and NaN give zero; ∞ the largest scale).
    pub const fn from_f32_bits(bits: u32) -> Scale {
        let exp = ((bits >> 23) & 0xff) as i32;
        if exp == 0 || (exp == 0xff && bits & 0x7f_ffff != 0) {
            return Scale::ZERO;
        }
        if exp == 0xff {
            return Scale {
                m: (1 << 15) - 1,
                e: 128,
            };
        }
        let mant = (bits & 0x7f_ffff) | 0x80_0000; // 24 bits: value = mant · 2^(exp − 150)
        let m = (mant + (1 << 8)) >> 9;
        if m == 1 << 15 {
            Scale {
                m: 1 << 14,
                e: exp - 150 + 10,
            }
        } else {
            Scale {
                m: m as i32,
                e: exp - 150 + 9,
            }
        }
    }

    /// [`Scale::from_f32_bits`] of an f32 read from an image.
    #[inline(always)]
    pub fn from_f32(v: f32) -> Scale {
        Scale::from_f32_bits(v.to_bits())
    }

    /// `self · other`.
    #[inline]
    pub const fn mul(self, other: Scale) -> Scale {
        Scale::normalize(self.m as u64 * other.m as u64, self.e + other.e)
    }

    /// `self · 2^k`.
    #[inline]
    pub const fn shl(self, k: i32) -> Scale {
        Scale {
            m: self.m,
            e: self.e + k,
        }
    }

    /// `num / den` of two integers as a scale (zero when either is): both
    /// normalised (`num` to 31 bits, `den` to 16), one `u32` division.
    #[inline]
    pub fn ratio(num: u64, den: u64) -> Scale {
        if num == 0 || den == 0 {
            return Scale::ZERO;
        }
        let n = Scale::norm_bits(num, 31);
        let d = Scale::norm_bits(den, 16);
        // n in [2^30, 2^31), d in [2^15, 2^16): the quotient has 15 or 16 bits.
        // `d.0 ≥ 2^15`: the division cannot fail (`checked_div` leaves no panic path).
        let q = (n.0 as u32).checked_div(d.0 as u32).unwrap_or(0);
        Scale::normalize(q as u64, n.1 - d.1)
    }

    /// `v` shifted so that its top bit is bit `top − 1`, and the shift applied
    /// (`v = result · 2^shift`).
    #[inline]
    const fn norm_bits(v: u64, top: i32) -> (u64, i32) {
        let bits = 64 - v.leading_zeros() as i32;
        let sh = bits - top;
        if sh >= 0 {
            (v >> sh, sh)
        } else {
            (v << -sh, sh)
        }
    }

    /// The value in f64 (tests and reports).
    pub fn to_f64(self) -> f64 {
        self.m as f64 * libm::exp2(self.e as f64)
    }

    /// Packs the scale into one `i32` (mantissa in the high half, the exponent
    /// as an `i16` in the low half), for per-row scales stored in the arena.
    #[inline(always)]
    pub const fn pack(self) -> i32 {
        (self.m << 16) | (self.e as i16 as u16 as i32)
    }

    /// The scale [`Scale::pack`] packed.
    #[inline(always)]
    pub const fn unpack(v: i32) -> Scale {
        Scale {
            m: v >> 16,
            e: v as i16 as i32,
        }
    }
}

/// `p · 2^sh` of an `i64` with `sh` of either sign: an arithmetic shift right
/// (towards −∞) for negative `sh`, saturating on the left.
#[inline(always)]
pub fn shift_i64(p: i64, sh: i32) -> i64 {
    if sh >= 0 {
        if sh >= 63 {
            return if p > 0 {
                i64::MAX
            } else if p < 0 {
                i64::MIN
            } else {
                0
            };
        }
        let r = p << sh;
        if r >> sh != p {
            if p > 0 {
                i64::MAX
            } else {
                i64::MIN
            }
        } else {
            r
        }
    } else if sh <= -63 {
        if p < 0 {
            -1
        } else {
            0
        }
    } else {
        p >> -sh
    }
}

/// An `i64` rounded from `frac` extra fractional bits (`frac ≥ 1`) and
/// saturated to `i32`.
#[inline(always)]
pub fn round_to_i32(v: i64, frac: u32) -> i32 {
    let r = (v.saturating_add(1i64 << (frac - 1))) >> frac;
    sat_i32(r)
}

/// An `i64` saturated to the `i32` range.
#[inline(always)]
pub fn sat_i32(v: i64) -> i32 {
    if v > i32::MAX as i64 {
        i32::MAX
    } else if v < i32::MIN as i64 {
        i32::MIN
    } else {
        v as i32
    }
}

/// An integer type a group is quantized to: int8 (`±127`, `runq.c`'s) or
/// int16 (`±32767`).
pub trait Quantum: Copy + Default + bytemuck::Pod {
    /// The largest magnitude, `2^BITS − 1`.
    const BITS: u32;
    /// The value `v` (within `±(2^BITS − 1)`).
    fn from_i32(v: i32) -> Self;
}

impl Quantum for i8 {
    const BITS: u32 = 7;
    #[inline(always)]
    fn from_i32(v: i32) -> Self {
        v as i8
    }
}

impl Quantum for i16 {
    const BITS: u32 = 15;
    #[inline(always)]
    fn from_i32(v: i32) -> Self {
        v as i16
    }
}

/// ARMv6-M: no 32 × 32 → 64-bit multiply and no divide instruction.
const ARMV6M: bool = cfg!(all(target_arch = "arm", not(target_has_atomic = "32")));

/// `a · b` widened to `i64`: one `smull` on ARMv7-M and the host; on
/// ARMv6-M, which has no such instruction (the compiler calls
/// `__aeabi_lmul`, a 64 × 64-bit multiply), [`mul_i64_halves`].
#[inline(always)]
pub fn mul_i64(a: i32, b: i32) -> i64 {
    if ARMV6M {
        mul_i64_halves(a, b)
    } else {
        a as i64 * b as i64
    }
}

/// `a · b` widened to `u64`, as [`mul_i64`] for unsigned values.
#[inline(always)]
pub fn mul_u64(a: u32, b: u32) -> u64 {
    if ARMV6M {
        mul_u64_halves(a, b)
    } else {
        a as u64 * b as u64
    }
}

/// `a · b` as `i64` from four 16 × 16-bit products (ARMv6-M's `muls` gives
/// the low 32 bits of a product): exact for every `a` and `b` (a test
/// compares it with the `i64` product).
#[inline(always)]
pub fn mul_i64_halves(a: i32, b: i32) -> i64 {
    let (ah, al) = (a >> 16, a & 0xffff);
    let (bh, bl) = (b >> 16, b & 0xffff);
    // |ah·bh| ≤ 2^30; |ah·bl|, |al·bh| < 2^31; al·bl < 2^32 (as u32).
    let hh = ah * bh;
    let mid = (ah * bl) as i64 + (al * bh) as i64;
    let ll = (al as u32).wrapping_mul(bl as u32);
    ((hh as i64) << 32)
        .wrapping_add(mid << 16)
        .wrapping_add(ll as i64)
}

/// `a · b` as `u64` from four 16 × 16-bit products, as
/// [`mul_i64_halves`] for unsigned values.
#[inline(always)]
pub fn mul_u64_halves(a: u32, b: u32) -> u64 {
    let (ah, al) = (a >> 16, a & 0xffff);
    let (bh, bl) = (b >> 16, b & 0xffff);
    let mid = u64::from(ah * bl) + u64::from(al * bh);
    (u64::from(ah * bh) << 32)
        .wrapping_add(mid << 16)
        .wrapping_add(u64::from(al * bl))
}

/// Quantizes one group of fixed-point values as `runq.c` quantizes a group
/// (`q = round(Q·x / max|x|)` with `Q = 2^T::BITS − 1`, half away from zero),
/// and returns `max|x|` (0: the group is all zeros). The scale of the group is
/// `max|x| / Q` ([`group_scale_of`]). Integer division only.
#[inline]
pub fn quantize_group_to<T: Quantum>(x: &[i32], q: &mut [T]) -> u32 {
    let qmax = (1u32 << T::BITS) - 1;
    let mut max = 0u32;
    for &v in x {
        let a = v.unsigned_abs();
        if a > max {
            max = a;
        }
    }
    if max == 0 {
        q.fill(T::default());
        return 0;
    }
    // Q·|x| must fit u32: drop low bits of both when max ≥ 2^(32 − BITS).
    let k = (32 - max.leading_zeros()).saturating_sub(32 - T::BITS - 1);
    // `max >> k` keeps the top bits of `max ≥ 1`, so `.max(1)` changes
    // nothing; it tells the compiler the divisor is not zero (no panic path).
    let den = (max >> k).max(1);
    // ARMv6-M has no divide instruction: one library division per value
    // costs it about 400 instructions, the reciprocal about 20.
    if ARMV6M {
        quantize_by_reciprocal(x, q, k, den);
        return max;
    }
    let half = den / 2;
    for (o, &v) in q.iter_mut().zip(x) {
        let a = v.unsigned_abs() >> k;
        let m = ((qmax * a + half) / den) as i32;
        *o = T::from_i32(if v < 0 { -m } else { m });
    }
    max
}

/// [`quantize_group_to`]'s values `⌊(Q·a + ⌊den/2⌋) / den⌋` (`a = |x| >> k ≤
/// den < 2^s`, `s = 31 − T::BITS`) from one division per group: with
/// `R = ⌊Q·2^s / den⌋`, `m₀ = ⌊a·R / 2^s⌋` falls short of the quotient by
/// at most 2 (`a·R/2^s` is within 1 of `Q·a/den`, and `⌊den/2⌋/den < 1`),
/// and the remainder `Q·a + ⌊den/2⌋ − m₀·den` corrects it. Every value fits
/// `u32`: `Q·2^s < 2^31`. The same integers as the division (a test compares
/// them); the step takes it where division is a library call.
#[inline]
fn quantize_by_reciprocal<T: Quantum>(x: &[i32], q: &mut [T], k: u32, den: u32) {
    let qmax = (1u32 << T::BITS) - 1;
    let s = 31 - T::BITS;
    let den = den.max(1);
    let r = (qmax << s) / den;
    let half = den / 2;
    for (o, &v) in q.iter_mut().zip(x) {
        let a = (v.unsigned_abs() >> k).min(den);
        let mut m = (a * r) >> s;
        let mut rem = (qmax * a + half).wrapping_sub(m * den);
        if rem >= den {
            m += 1;
            rem -= den;
        }
        if rem >= den {
            m += 1;
        }
        let m = m as i32;
        *o = T::from_i32(if v < 0 { -m } else { m });
    }
}

/// The scale of a group [`quantize_group_to`] quantized to `T` and returned
/// `max` for, in real units: `max · 2^−frac / (2^T::BITS − 1)`.
#[inline]
pub fn group_scale_of<T: Quantum>(max: u32, frac: i32) -> Scale {
    Scale::ratio(max as u64, ((1u32 << T::BITS) - 1) as u64).shl(-frac)
}

/// [`quantize_group_to`] int8: `runq.c`'s quantization of a group.
#[inline]
pub fn quantize_group(x: &[i32], q: &mut [i8]) -> u32 {
    quantize_group_to(x, q)
}

/// The scale of a group [`quantize_group`] returned `max` for, in real units:
/// `max · 2^−frac / 127`.
#[inline]
pub fn group_scale(max: u32, frac: i32) -> Scale {
    Scale::ratio(max as u64, 127).shl(-frac)
}

/// `⌊√n⌋` (bit by bit, 32 rounds).
pub const fn isqrt_u64(n: u64) -> u64 {
    let mut rem = n;
    let mut root = 0u64;
    let mut bit = 1u64 << 62;
    while bit > n {
        bit >>= 2;
    }
    while bit != 0 {
        if rem >= root + bit {
            rem -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    root
}

/// Segments of one binade in [`EXP2_NEG`].
const EXP2_SEGMENTS: usize = 256;

/// `2^(−k/256)` in Q15 for `k = 0..=256` (`u16`: `1.0` is `32768`). 514 bytes.
pub static EXP2_NEG: [u16; EXP2_SEGMENTS + 1] = exp2_table();

const fn exp2_table() -> [u16; EXP2_SEGMENTS + 1] {
    let mut t = [0u16; EXP2_SEGMENTS + 1];
    let mut k = 0;
    while k <= EXP2_SEGMENTS {
        let v = math::exp(-(k as f64) / EXP2_SEGMENTS as f64 * core::f64::consts::LN_2);
        t[k] = math::round(v * 32768.0) as u16;
        k += 1;
    }
    t
}

/// `log2(e)` with 30 fractional bits.
const LOG2E_Q30: u64 = 1_549_082_005;

/// `4·LOG2E_Q30 − 2^32`: `⌊a·LOG2E_Q30 / 2^30⌋ = a + ⌊a·LOG2E_K / 2^32⌋`
/// exactly (`a·LOG2E_Q30·4 = a·2^32 + a·LOG2E_K`), one high-word multiply.
const LOG2E_K: u32 = (4 * LOG2E_Q30 - (1 << 32)) as u32;

/// [`EXP2_NEG`] packed for the interpolation of segment `k`: `(T[k] << 8) |
/// (T[k] − T[k+1])` (the steps are below 89, so they fit the low byte that
/// `T[k] << 8` leaves clear). 1 024 bytes.
static EXP2_LERP: [u32; EXP2_SEGMENTS] = {
    let mut t = [0u32; EXP2_SEGMENTS];
    let mut k = 0;
    while k < EXP2_SEGMENTS {
        let (a, b) = (EXP2_NEG[k] as u32, EXP2_NEG[k + 1] as u32);
        assert!(a >= b && a - b < 256);
        t[k] = (a << 8) | (a - b);
        k += 1;
    }
    t
};

/// `e^z` for `z ≤ 0` in Q16 (`z` Q16, result Q16 in `0..=65536`): `2^(z·log2 e)`,
/// the fraction of the binade from [`EXP2_NEG`] with linear interpolation.
/// Positive `z` is treated as 0.
///
/// With `u = ⌊|z|·log2(e)⌋` (Q16), `n = u >> 16`, segment `k` and position
/// `f` (bits 8–15 and 0–7 of `u`): `v = T[k]·2^8 − (T[k] − T[k+1])·f`
/// (Q23, interpolated), rounded to Q16 with the binade's shift `7 + n`. The
/// softmax calls it once per score, so it is written for the loop: one
/// high-word multiply for `u` ([`LOG2E_K`]), one word of [`EXP2_LERP`] for
/// the segment (`v = P − d·(f + 1)` with `P = T[k]·2^8 + d`), the rounding as
/// `((v >> (sh − 1)) + 1) >> 1`.
#[inline]
pub fn exp_q16(z: i32) -> u32 {
    if z >= 0 {
        return 1 << 16;
    }
    let a = z.unsigned_abs();
    // u = ⌊a·log2(e)⌋ in Q16 (a ≤ 2^31: u < 2^32).
    let u = a + (mul_u64(a, LOG2E_K) >> 32) as u32;
    let n = u >> 16;
    if n >= 17 {
        return 0;
    }
    let idx = ((u >> 8) & 0xff) as usize;
    let frac = u & 0xff;
    let Some(&p) = EXP2_LERP.get(idx) else {
        return 0;
    };
    // Q23: T[k]·2^8 − (T[k] − T[k+1])·frac, from the packed word.
    let v = p - (p & 0xff) * (frac + 1);
    // To Q16 with the binade's shift, rounded: (v + 2^(sh−1)) >> sh.
    ((v >> (6 + n)) + 1) >> 1
}

/// Steps per unit of [`SIGMOID`]'s input.
const SIGMOID_STEPS: i32 = 16;
/// Half range of [`SIGMOID`]'s input: `[−16, 16)`.
const SIGMOID_HALF: i32 = 16;
/// Entries of [`SIGMOID`] (`2·16·16 + 1`).
const SIGMOID_LEN: usize = (2 * SIGMOID_HALF * SIGMOID_STEPS) as usize + 1;

/// The logistic function `1/(1 + e^−x)` at `x = −16 + k/16`, Q15 (`1.0` is
/// `32768`), `k = 0..=512`. 1 026 bytes.
pub static SIGMOID: [u16; SIGMOID_LEN] = sigmoid_table();

const fn sigmoid_table() -> [u16; SIGMOID_LEN] {
    let mut t = [0u16; SIGMOID_LEN];
    let mut k = 0;
    while k < SIGMOID_LEN {
        let x = -(SIGMOID_HALF as f64) + k as f64 / SIGMOID_STEPS as f64;
        let v = 1.0 / (1.0 + math::exp(-x));
        t[k] = math::round(v * 32768.0) as u16;
        k += 1;
    }
    t
}

/// The logistic function of a Q16 input, Q15 (`0..=32768`), by [`SIGMOID`]
/// with linear interpolation (below −16: 0; from 16: 1).
#[inline]
pub fn sigmoid_q15(x: i32) -> u32 {
    let lo = -(SIGMOID_HALF << ACT_FRAC);
    if x < lo {
        return 0;
    }
    // Position in table steps, Q12 (16 steps per unit: 2^16 / 16 = 2^12 per step).
    let t = (x as i64 - lo as i64) as u64;
    let idx = (t >> 12) as usize;
    let frac = (t & 0xfff) as u32;
    match (SIGMOID.get(idx), SIGMOID.get(idx + 1)) {
        (Some(&a), Some(&b)) => {
            let (a, b) = (a as i32, b as i32);
            (a + (((b - a) * frac as i32 + (1 << 11)) >> 12)) as u32
        }
        _ => 1 << 15,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 16-bit-halves products (ARMv6-M's) are the 64-bit products: the
    /// extremes and random pairs at every magnitude.
    #[test]
    fn halves_products_are_the_products() {
        let edges = [
            i32::MIN,
            i32::MIN + 1,
            -65537,
            -65536,
            -65535,
            -1,
            0,
            1,
            65535,
            65536,
            i32::MAX,
        ];
        for &a in &edges {
            for &b in &edges {
                assert_eq!(mul_i64_halves(a, b), a as i64 * b as i64, "{a} {b}");
                let (ua, ub) = (a as u32, b as u32);
                assert_eq!(mul_u64_halves(ua, ub), ua as u64 * ub as u64, "{ua} {ub}");
            }
        }
        let mut rng = microformer_testkit::XorShift32(41);
        for i in 0..200_000u32 {
            let a = (rng.next_u32() as i32) >> (i % 32);
            let b = (rng.next_u32() as i32) >> (i / 7 % 32);
            assert_eq!(mul_i64_halves(a, b), a as i64 * b as i64, "{a} {b}");
            let (ua, ub) = (rng.next_u32() >> (i % 32), rng.next_u32());
            assert_eq!(mul_u64_halves(ua, ub), ua as u64 * ub as u64, "{ua} {ub}");
        }
    }

    /// The division-free quantizer (ARMv6-M's) gives the division's integers,
    /// for int8 and int16, on random groups at every magnitude, groups of one
    /// value repeated, and the extremes (`i32::MIN`, ±1).
    #[test]
    fn quantize_by_reciprocal_is_the_division() {
        fn by_division<T: Quantum>(x: &[i32], q: &mut [T], k: u32, den: u32) {
            let qmax = (1u32 << T::BITS) - 1;
            for (o, &v) in q.iter_mut().zip(x) {
                let m = ((qmax * (v.unsigned_abs() >> k) + den / 2) / den) as i32;
                *o = T::from_i32(if v < 0 { -m } else { m });
            }
        }
        fn check<T: Quantum + PartialEq + core::fmt::Debug>(x: &[i32]) {
            let max = x.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0);
            if max == 0 {
                return;
            }
            let k = (32 - max.leading_zeros()).saturating_sub(32 - T::BITS - 1);
            let den = max >> k;
            let (mut got, mut want) = (vec![T::default(); x.len()], vec![T::default(); x.len()]);
            quantize_by_reciprocal(x, &mut got, k, den);
            by_division(x, &mut want, k, den);
            assert_eq!(got, want, "{x:?}");
        }
        let mut rng = microformer_testkit::XorShift32(71);
        for i in 0..40_000u32 {
            let shift = i % 32;
            let x: Vec<i32> = (0..16).map(|_| (rng.next_u32() as i32) >> shift).collect();
            check::<i16>(&x);
            check::<i8>(&x);
            let one = [x[0], -x[0], x[0] / 2, x[0] / 3, 1, -1, 0];
            check::<i16>(&one);
            check::<i8>(&one);
        }
        for x in [
            &[i32::MIN, i32::MAX, 1, -1][..],
            &[i32::MIN, 0, -(1 << 30)][..],
            &[1, -1, 0][..],
            &[3, 2, 1, -2][..],
            &[65535, 32768, 32767, -1][..],
        ] {
            check::<i16>(x);
            check::<i8>(x);
        }
    }

    /// Every 257th f32 bit pattern (16.7 million, every exponent and sign) at
    /// the integer step's fractions: exactly `round(v·2^frac)` (half away from
    /// zero, as `f64::round`; the product is exact in f64), saturated to
    /// `±(2^31 − 1)`, NaN 0.
    #[test]
    fn f32_bits_to_fixed_is_exactly_the_rounded_product() {
        for frac in [8u32, 15, 16, 24, 30] {
            let scale = 2f64.powi(frac as i32);
            let max = (1u64 << 31) as f64 - 1.0;
            for bits in (0..=u32::MAX).step_by(257) {
                let v = f32::from_bits(bits);
                let want = if v.is_nan() {
                    0.0
                } else {
                    (v as f64 * scale).round().clamp(-max, max)
                };
                assert_eq!(
                    fixed_from_f32_bits(bits, frac) as f64,
                    want,
                    "{bits:#x} {frac}"
                );
            }
        }
    }

    #[test]
    fn f32_bits_to_fixed_rounds_once() {
        for &v in &[
            0.0f32, 1.0, -1.0, 0.5, 1.5e-5, -3.25, 1234.567, 32767.99, -32768.0, 1e-9, 7.0e4,
        ] {
            let want = (v as f64 * 65536.0)
                .round()
                .clamp(-(2f64.powi(31) - 1.0), 2f64.powi(31) - 1.0);
            let got = fixed_from_f32(v, 16) as f64;
            assert!(
                (got - want).abs() <= 0.5 + 1e-9 || (got - want).abs() <= 1.0 && want.abs() > 2e9,
                "{v}: {got} vs {want}"
            );
        }
        assert_eq!(fixed_from_f32(f32::NAN, 16), 0);
        assert_eq!(fixed_from_f32(f32::INFINITY, 16), i32::MAX);
        assert_eq!(fixed_from_f32(f32::NEG_INFINITY, 16), -i32::MAX);
        let mut rng = microformer_testkit::XorShift32(99);
        for _ in 0..100_000 {
            let v = rng.centered_unit() * 100.0;
            let want = (v as f64 * 65536.0).round();
            assert!((fixed_from_f32(v, 16) as f64 - want).abs() <= 0.5, "{v}");
            let w = rng.centered_unit() * 1e-3;
            let want = (w as f64 * 2f64.powi(30)).round();
            assert!((fixed_from_f32(w, 30) as f64 - want).abs() <= 0.5, "{w}");
        }
    }

    #[test]
    fn scales_within_their_bound() {
        let mut rng = microformer_testkit::XorShift32(5);
        let rel = |a: f64, b: f64| ((a - b) / b).abs();
        for _ in 0..100_000 {
            let a = rng.centered_unit().abs() * 10.0 + 1e-6;
            let b = rng.centered_unit().abs() * 1e-3 + 1e-9;
            let (sa, sb) = (Scale::from_f32(a), Scale::from_f32(b));
            assert!((1 << 14..1 << 15).contains(&sa.m));
            assert!(rel(sa.to_f64(), a as f64) <= 2f64.powi(-15), "{a}");
            // Two inputs rounded (2^-15 each) and the product truncated (2^-14).
            assert!(rel(sa.mul(sb).to_f64(), a as f64 * b as f64) <= 2f64.powi(-13));
            let (n, d) = (rng.next_u32() as u64 + 1, (rng.next_u32() >> 7) as u64 + 1);
            assert!(rel(Scale::ratio(n, d).to_f64(), n as f64 / d as f64) <= 2f64.powi(-13));
            let s = sa.mul(sb);
            assert_eq!(Scale::unpack(s.pack()), s);
        }
        assert_eq!(Scale::from_f32(0.0), Scale::ZERO);
        assert_eq!(Scale::ratio(0, 5), Scale::ZERO);
    }

    #[test]
    fn quantize_group_as_runq() {
        let mut rng = microformer_testkit::XorShift32(11);
        for _ in 0..2000 {
            let x: Vec<i32> = (0..32)
                .map(|_| (rng.centered_unit() * 2f32.powi((rng.next_u32() % 26) as i32)) as i32)
                .collect();
            let mut q = [0i8; 32];
            let max = quantize_group(&x, &mut q);
            let m = x.iter().map(|v| v.unsigned_abs()).max().unwrap();
            assert_eq!(max, m);
            for (&v, &o) in x.iter().zip(&q) {
                let want = if m == 0 {
                    0.0
                } else {
                    127.0 * v as f64 / m as f64
                };
                assert!(
                    (o as f64 - want).abs() <= 0.5 + 1e-3 + (m > 1 << 25) as u8 as f64 * 0.01,
                    "{v} {m}: {o} vs {want}"
                );
            }
        }
    }

    #[test]
    fn isqrt_exact() {
        for n in (0..100_000u64).chain([u64::MAX, 1 << 62, (1 << 62) - 1, 12_345_678_987_654]) {
            let r = isqrt_u64(n);
            assert!(
                r * r <= n && (r + 1).checked_mul(r + 1).is_none_or(|s| s > n),
                "{n}"
            );
        }
    }

    /// `exp_q16`'s packed table, high-word multiply and rounding give the
    /// integers of its definition, `u = ⌊|z|·LOG2E_Q30 / 2^30⌋`,
    /// `v = (T[k] << 8) − (T[k] − T[k+1])·f`, `(v + 2^(6+n)) >> (7 + n)`: for
    /// every `z` down to −2^20 (past the last binade) and on a stride to
    /// `i32::MIN`.
    #[test]
    fn exp_is_its_definition() {
        let def = |z: i32| -> u32 {
            if z >= 0 {
                return 1 << 16;
            }
            let u = ((z.unsigned_abs() as u64 * LOG2E_Q30) >> 30) as u32;
            let n = u >> 16;
            if n >= 17 {
                return 0;
            }
            let (k, f) = (((u >> 8) & 0xff) as usize, u & 0xff);
            let (a, b) = (EXP2_NEG[k] as u32, EXP2_NEG[k + 1] as u32);
            let v = (a << 8) - (a - b) * f;
            (v + (1 << (6 + n))) >> (7 + n)
        };
        for z in (-(1 << 20)..=1).chain((i32::MIN..0).step_by(997)) {
            assert_eq!(exp_q16(z), def(z), "{z}");
        }
    }

    #[test]
    fn exp_within_two_lsb() {
        let mut worst = 0.0f64;
        for z in (-(32 << 16)..=0).step_by(7) {
            let want = (z as f64 / 65536.0).exp() * 65536.0;
            worst = worst.max((exp_q16(z) as f64 - want).abs());
        }
        assert!(worst <= 2.0, "{worst}");
        assert_eq!(exp_q16(0), 65536);
        assert_eq!(exp_q16(5), 65536);
        assert_eq!(exp_q16(i32::MIN), 0);
    }

    #[test]
    fn sigmoid_within_three_lsb() {
        let mut worst = 0.0f64;
        for x in (-(20 << 16)..(20 << 16)).step_by(13) {
            let want = 32768.0 / (1.0 + (-(x as f64) / 65536.0).exp());
            worst = worst.max((sigmoid_q15(x) as f64 - want).abs());
        }
        assert!(worst <= 3.0, "{worst}");
        assert_eq!(sigmoid_q15(i32::MIN), 0);
        assert_eq!(sigmoid_q15(i32::MAX), 32768);
    }
}
