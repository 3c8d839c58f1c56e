//! `expf`: [`fast_expf`] (below 1.5 ulp, a table lookup and a degree-2
//! polynomial: the attention softmax and SiLU), and [`expf`], bit-identical to
//! `libm::expf` without its call overhead (the slow path of [`fast_expf`]).
//!
//! [`fast_expf`] is table-driven (64 entries `2^(i/64)`, a degree-2 polynomial
//! on `|r| ≤ ln2/128`); its error against `f64::exp` is below 1.5 ulp (see its
//! documentation).
//!
//! The softmax of every attention row calls `expf` once per score, so on a
//! Cortex-M4F it is the largest single cost of a long context. `libm::expf` is
//! FreeBSD's `e_expf.c` in f32 arithmetic (Sun Microsystems, 1993; the `libm`
//! crate's port): reduce `x = k·ln2 + r` with `|r| ≤ ln2/2` (`k·ln2` split into
//! `LN2_HI + LN2_LO`), a degree-4 rational approximation of `e^r`, then
//! `scalbnf(y, k)`.
//!
//! [`expf`] performs the **same f32 operations in the same order** on every input
//! whose result is a normal number (`|x| < 87.3365`, `k ≥ −125`) and replaces the
//! final `scalbnf(y, k)` — a call with range checks that multiplies by `2^k` —
//! by adding `k` to `y`'s exponent field, which is the same exact product when
//! the result is normal. Every other input (NaN, ±∞, overflow, results in the
//! subnormal range or zero) goes to `libm::expf` itself. Hence `expf(x)` has the
//! bits of `libm::expf(x)` for every `x` — the tests check every f32 input on a
//! stride, and every input of the reduction's branch boundaries — and the same
//! error: below 1 ulp (`e_expf.c`'s bound).
//!
//! No table, no state, and no call where the result is normal (the README's
//! benchmark section has what that saves in the softmax).

// The constants as `e_expf.c` (and `libm`) write them, digit for digit.
#![allow(clippy::excessive_precision)]

/// Whether the crate is built with the `exact` feature: the forward step and
/// the sampler then use `run.c`'s literal arithmetic (divisions where `run.c`
/// divides, glibc's `expf`: [`super::exp_glibc`]) instead of the default's
/// reciprocal multiplications and [`fast_expf`].
pub const EXACT: bool = cfg!(feature = "exact");

/// The `expf` of the forward step (attention softmax, SiLU): [`fast_expf`]
/// (below 1.5 ulp of `e^x`) by default; with the `exact` feature glibc's
/// ([`super::exp_glibc::expf`]), the one `run.c` calls.
#[inline(always)]
pub fn step_expf(x: f32) -> f32 {
    if EXACT {
        super::exp_glibc::expf(x)
    } else {
        fast_expf(x)
    }
}

/// The `expf` of the sampler's softmax: `libm::expf` (FreeBSD msun's, below 1
/// ulp) by default; with the `exact` feature glibc's
/// ([`super::exp_glibc::expf`]), the one `run.c` calls.
#[inline]
pub fn sampler_expf(x: f32) -> f32 {
    if EXACT {
        super::exp_glibc::expf(x)
    } else {
        libm::expf(x)
    }
}

const HALF: [f32; 2] = [0.5, -0.5];
const LN2_HI: f32 = 6.931_457_519_5e-1; // 0x3f317200
const LN2_LO: f32 = 1.428_606_765_3e-6; // 0x35bfbe8e
const INV_LN2: f32 = 1.442_695_021_6e0; // 0x3fb8aa3b
/// `|x·(e^x + 1)/(e^x − 1) − p(x)| < 2^−27.74` on `[−0.34568, 0.34568]`.
const P1: f32 = 1.666_662_544_0e-1; // 0xaaaa8f.0p-26
const P2: f32 = -2.766_733_290_6e-3; // -0xb55215.0p-32

/// `e^x`, bit-identical to `libm::expf(x)` for every `x` (see the module
/// documentation).
#[inline]
pub fn expf(x: f32) -> f32 {
    let bits = x.to_bits();
    let sign = (bits >> 31) as usize;
    let hx = bits & 0x7fff_ffff;
    if hx >= 0x42ae_ac50 {
        // |x| >= 87.3365 or NaN: overflow, underflow, subnormal results.
        return libm::expf(x);
    }
    let k: i32;
    let hi: f32;
    let lo: f32;
    let r: f32;
    if hx > 0x3eb1_7218 {
        // |x| > ln2/2
        k = if hx > 0x3f85_1592 {
            // |x| > 1.5·ln2 (`sign` is 0 or 1)
            (INV_LN2 * x + HALF[sign & 1]) as i32
        } else {
            1 - 2 * sign as i32
        };
        let kf = k as f32;
        hi = x - kf * LN2_HI; // exact: k·LN2_HI has 24 − 8 bits
        lo = kf * LN2_LO;
        r = hi - lo;
    } else if hx > 0x3900_0000 {
        // |x| > 2^−14
        k = 0;
        hi = x;
        lo = 0.0;
        r = x;
    } else {
        return 1.0 + x;
    }
    let xx = r * r;
    let c = r - xx * (P1 + xx * P2);
    let y = 1.0 + (r * c / (2.0 - c) - lo + hi);
    if k == 0 {
        y
    } else if k >= -125 {
        // y ∈ (0.7, 1.5) and 2^k·y is normal: the product is exact, so adding k
        // to the exponent field is what scalbnf's multiplication gives.
        f32::from_bits(y.to_bits().wrapping_add((k as u32) << 23))
    } else {
        libm::expf(x)
    }
}

/// `2^(i/64)` for `i` in `0..64`, rounded to f32.
const EXP2_64THS: [f32; 64] = {
    let mut t = [0.0f32; 64];
    let mut i = 0;
    while i < 64 {
        t[i] = crate::num::math::exp(i as f64 * core::f64::consts::LN_2 / 64.0) as f32;
        i += 1;
    }
    t
};

/// `e^x` from a 64-entry table and a degree-2 polynomial, below 1.5 ulp from the
/// exact value (not bit-identical to `libm::expf`): the attention softmax and SiLU
/// use it.
///
/// Method (table-driven, as Tang's `expf`): `k = round(x·64/ln2)` (by adding
/// `1.5·2^23`, which rounds to nearest in the default mode),
/// `r = x − k·C1 − k·C2` with `C1 + C2 ≈ ln2/64` (`C1` has 11 significant bits,
/// so `k·C1` is exact for `|k| < 2^13`), `|r| ≤ ln2/128 + ε`; then
/// `e^x = 2^(k div 64) · T[k mod 64] · e^r` with the 64-entry table
/// `T[i] = 2^(i/64)` (f32, built at compile time with `num::math::exp`) and
/// `e^r ≈ 1 + r + r²/2` (truncation error `|r|³/6 ≤ 2.7·10⁻⁸`), evaluated as
/// `T + T·(r + r²/2)`; `2^(k div 64)` is added to the exponent field (exact:
/// the result is normal). Inputs with `|k| > 124·64` (`|x| ≳ 85.95`, where the
/// result could leave the normal range), NaN and infinities go to [`expf`],
/// which is exact there.
///
/// Error bound: **below 1.5 ulp** of the exact `e^x` wherever the result is
/// normal (the table entry's rounding, ≤ 0.5 ulp, the polynomial and the last
/// rounding). The tests check the bound on a stride over the softmax range
/// `[−86, 0]`, around every reduction step, and on a stride over all 2^32
/// patterns. Table: 256 bytes.
#[inline(always)]
pub fn fast_expf(x: f32) -> f32 {
    const SCALE: f32 = 92.332_481; // 64/ln2
    const MAGIC: f32 = 12_582_912.0; // 1.5·2^23
    const C1: f32 = 0.010_826_110_839_843_75; // 0x3c316000
    const C2: f32 = 4.313_856_6e-6; // 0x3690bfbf
    let t = x * SCALE + MAGIC;
    let bits = t.to_bits(); // 0x4b40_0000 + k when |x·64/ln2| < 2^22
                            // |k| ≤ 124·64 (|x| ≲ 85.95): the result is normal. Anything else (larger
                            // |x|, where `bits` leaves that window, NaN, infinities) is `expf`'s.
    if bits.wrapping_sub(0x4b40_0000 - 7936) > 2 * 7936 {
        return expf_cold(x);
    }
    let kf = t - MAGIC;
    let r = x - kf * C1 - kf * C2;
    let tab = EXP2_64THS[(bits & 63) as usize];
    let p = r + r * r * 0.5;
    let y = tab + tab * p;
    // `(bits >> 6) << 23` = `(k div 64) << 23` (0x4b40_0000 >> 6 << 23 wraps to 0).
    f32::from_bits(y.to_bits().wrapping_add((bits >> 6) << 23))
}

/// [`expf`] out of line: the rare path of [`fast_expf`].
#[cold]
#[inline(never)]
fn expf_cold(x: f32) -> f32 {
    expf(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(x: f32) {
        let (a, b) = (expf(x), libm::expf(x));
        assert!(
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            "expf({x:e} = {:#010x}) = {a:e}, libm {b:e}",
            x.to_bits()
        );
    }

    #[test]
    fn constants_are_e_expf_cs() {
        let bits = [LN2_HI, LN2_LO, INV_LN2, P1, P2].map(f32::to_bits);
        assert_eq!(
            bits,
            [
                0x3f31_7200,
                0x35bf_be8e,
                0x3fb8_aa3b,
                0x3e2a_aa8f,
                0xbb35_5215
            ]
        );
    }

    #[test]
    fn every_input_on_a_stride_is_libms() {
        // Every bit pattern (both signs, NaNs and infinities included) on a stride
        // prime to 2^32; every pattern in release builds of the test would take
        // minutes, the stride keeps debug runs to a few seconds.
        let stride: u64 = if cfg!(debug_assertions) { 1_009 } else { 7 };
        let mut b: u64 = 0;
        while b < 1 << 32 {
            same(f32::from_bits(b as u32));
            b += stride;
        }
    }

    #[test]
    fn every_input_near_the_branch_points_is_libms() {
        // The reduction's thresholds, the edges of the fast path, and k's steps.
        for centre in [
            0x42ae_ac50u32, // |x| = 87.3365: the fast path's end
            0x42b1_7218,    // overflow threshold
            0x42cf_f1b5,    // underflow to zero
            0x3eb1_7218,    // ln2/2
            0x3f85_1592,    // 1.5·ln2
            0x3900_0000,    // 2^-14
            0x42ae_0000,    // k = ±125..126
            0x42ac_0000,
        ] {
            for sign in [0, 0x8000_0000] {
                for d in 0..4096u32 {
                    same(f32::from_bits((centre - 2048 + d) | sign));
                }
            }
        }
        // Every x = k·ln2/2 for the whole range of k, and the scores a softmax sees
        // (x − max ≤ 0) on a fine grid.
        for k in -260..=260 {
            let x = k as f32 * core::f32::consts::LN_2 / 2.0;
            for d in -64..=64i32 {
                same(f32::from_bits(x.to_bits().wrapping_add(d as u32)));
            }
        }
        for i in 0..200_000 {
            same(-(i as f32) / 1024.0);
        }
        for x in [
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MIN,
            f32::MAX,
        ] {
            same(x);
        }
    }
    /// `fast_expf(x)`'s error in ulp of the exact `e^x` (f64), for normal results.
    fn ulps(x: f32) -> f64 {
        let got = fast_expf(x) as f64;
        let exact = (x as f64).exp();
        let ulp = 2f64.powi(exact.log2().floor() as i32 - 23);
        (got - exact).abs() / ulp
    }

    fn worst_fast(mut xs: impl Iterator<Item = f32>) -> (f64, f32) {
        xs.try_fold((0.0f64, 0.0f32), |(w, wx), x| {
            let e = ulps(x);
            Some(if e > w { (e, x) } else { (w, wx) })
        })
        .unwrap_or((0.0, 0.0))
    }

    #[test]
    fn fast_expf_below_1_ulp_on_the_softmax_range() {
        // Every f32 in [-86, 0] on a stride (x ≤ 0: what a softmax feeds it), and
        // every one near 0 and near the reduction's steps k·ln2/2.
        let stride: u32 = if cfg!(debug_assertions) { 997 } else { 7 };
        let hi = 86.0f32.to_bits();
        let (w, wx) = worst_fast(
            (0..=hi)
                .step_by(stride as usize)
                .map(|b| -f32::from_bits(b)),
        );
        assert!(w < 1.5, "{w} ulp at {wx:e}");
        let (w2, wx2) = worst_fast((0..200_000u32).map(|b| -f32::from_bits(b)));
        assert!(w2 < 1.5, "{w2} ulp at {wx2:e}");
        for k in -248..=248 {
            let x = k as f32 * core::f32::consts::LN_2 / 2.0;
            let (w, wx) = worst_fast(
                (-512..=512i32).map(|d| f32::from_bits(x.to_bits().wrapping_add(d as u32))),
            );
            assert!(w < 1.5, "{w} ulp at {wx:e}");
        }
    }

    #[test]
    fn fast_expf_everywhere() {
        // Every bit pattern on a stride: below 1 ulp where the result is normal,
        // libm's value (exact there) elsewhere.
        let stride: u64 = if cfg!(debug_assertions) { 1_009 } else { 7 };
        let mut b: u64 = 0;
        let mut worst = 0.0f64;
        while b < 1 << 32 {
            let x = f32::from_bits(b as u32);
            if x.abs() < 86.0 {
                worst = worst.max(ulps(x));
            } else {
                let (a, l) = (fast_expf(x), libm::expf(x));
                assert!(
                    a.to_bits() == l.to_bits() || (a.is_nan() && l.is_nan()),
                    "{x:e}"
                );
            }
            b += stride;
        }
        assert!(worst < 1.5, "{worst} ulp");
    }
}
