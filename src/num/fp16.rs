//! IEEE 754 binary16 ("half", `f16`) storage for weights: 1 sign bit, 5
//! exponent bits (bias 15), 10 fraction bits — 11 significant bits.
//!
//! Weights are stored as `u16` bit patterns and widened to `f32` when they are
//! used; all arithmetic stays in f32. [`to_f32`] is exact for every one of the
//! 65 536 patterns (normals, subnormals, ±0, ±∞, NaN with its payload
//! shifted into the f32 fraction). [`from_f32`] rounds to nearest, ties to
//! even, as IEEE 754 `convertFormat` (and `torch.Tensor.half()`, numpy's
//! `astype(float16)`) does: results above the largest finite half
//! (65 504) round to ±∞, NaN stays a (quiet) NaN.
//!
//! Error bound: for a value inside the normal half range
//! (6.1e-5 ≤ |x| ≤ 65 504) the relative error of [`from_f32`] is at most
//! 2⁻¹¹ ≈ 4.9e-4; below it the absolute error is at most 2⁻²⁵ ≈ 3.0e-8 (half an
//! ulp of the subnormals).
//!
//! Why it exists: some models need more than 8 bits per weight to keep their
//! greedy choices (see the README's "Weight formats"); binary16 keeps 11
//! significant bits at half the flash of f32.

/// The f32 value of a binary16 bit pattern (exact).
#[inline(always)]
pub const fn to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let mag = (h & 0x7fff) as u32;
    let bits = if mag >= 0x7c00 {
        // ±∞ (fraction 0) or NaN (payload kept, shifted into place).
        0x7f80_0000 | ((mag & 0x03ff) << 13)
    } else if mag >= 0x0400 {
        // Normal: rebias the exponent from 15 to 127.
        (mag << 13) + ((127 - 15) << 23)
    } else {
        // Subnormal or zero: mag · 2⁻²⁴, exact in f32 (at most 10 significant
        // bits), computed with integer shifts.
        return f32::from_bits(sign | subnormal(mag).to_bits());
    };
    f32::from_bits(sign | bits)
}

/// Whether a binary16 pattern is finite (not ±∞ or NaN).
#[inline(always)]
pub const fn is_finite(h: u16) -> bool {
    h & 0x7c00 != 0x7c00
}

/// [`to_f32`] for a finite pattern, in four operations: the pattern's bits
/// shifted into f32 position read as an f32 equal the value times 2⁻¹¹²
/// (normals and subnormals alike), and the multiply by 2¹¹² is exact. The
/// kernels use it: images hold only finite binary16 values (checked when an
/// image is opened). A non-finite pattern gives a finite wrong value here.
#[inline(always)]
pub fn to_f32_finite(h: u16) -> f32 {
    let h = h as u32;
    let bits = ((h & 0x8000) << 16) | ((h & 0x7fff) << 13);
    // 2^112 = f32 bits (127 + 112) << 23.
    f32::from_bits(bits) * f32::from_bits((127 + 112) << 23)
}

/// `m · 2⁻²⁴` for `m < 1024`, exact.
#[inline(always)]
const fn subnormal(m: u32) -> f32 {
    if m == 0 {
        return 0.0;
    }
    // Normalise: shift the leading one into bit 10.
    let lz = m.leading_zeros() - 21; // leading zeros within 11 bits
    let frac = (m << lz) & 0x03ff;
    let exp = 127 - 14 - lz; // value = 1.frac · 2^(-14 - lz)
    f32::from_bits((exp << 23) | (frac << 13))
}

/// The binary16 bit pattern nearest to `x` (ties to even; overflow to ±∞; NaN
/// stays NaN).
pub const fn from_f32(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let frac = b & 0x007f_ffff;
    if exp == 0xff {
        // ∞ stays ∞; a NaN keeps its top payload bits and is made quiet.
        let nan = if frac != 0 {
            0x0200 | (frac >> 13) as u16
        } else {
            0
        };
        return sign | 0x7c00 | nan;
    }
    // Unbiased exponent of x, and the 24-bit significand (implicit one added
    // for normals; f32 subnormals are far below half's range and round to 0).
    let e = exp - 127;
    if e > 15 {
        return sign | 0x7c00;
    }
    if exp == 0 || e < -25 {
        // |x| < 2⁻²⁵: rounds to zero (exactly 2⁻²⁵ is a tie to even zero too).
        return sign;
    }
    let sig = frac | 0x0080_0000;
    // Half keeps 11 significant bits for e ≥ −14; fewer for subnormals.
    let shift = if e >= -14 {
        13
    } else {
        (13 + (-14 - e)) as u32
    };
    let kept = sig >> shift;
    let rest = sig & ((1u32 << shift) - 1);
    let half = 1u32 << (shift - 1);
    let round_up = rest > half || (rest == half && (kept & 1) == 1);
    let kept = kept + round_up as u32;
    // Assemble: for normals, the biased exponent goes on top of the fraction;
    // a carry out of the fraction bumps the exponent (and may reach ∞).
    let out = if e >= -14 {
        (((e + 15) as u32) << 10) + (kept - 0x0400)
    } else {
        // Subnormal: `kept` is the fraction itself (a carry into bit 10 makes
        // the smallest normal, which this sum spells correctly).
        kept
    };
    if out >= 0x7c00 {
        return sign | 0x7c00;
    }
    sign | out as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use microformer_testkit::XorShift32;

    /// Reference decode in f64: (-1)^s · 2^(e-15) · (1 + f/1024), or subnormal.
    fn decode_f64(h: u16) -> f64 {
        let s = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
        let e = ((h >> 10) & 0x1f) as i32;
        let f = (h & 0x3ff) as f64;
        match e {
            0 => s * f * 2f64.powi(-24),
            31 if f == 0.0 => s * f64::INFINITY,
            31 => f64::NAN,
            _ => s * (1.0 + f / 1024.0) * 2f64.powi(e - 15),
        }
    }

    #[test]
    fn every_pattern_decodes_exactly_and_round_trips() {
        for h in 0..=u16::MAX {
            let x = to_f32(h);
            let want = decode_f64(h);
            if want.is_nan() {
                assert!(x.is_nan(), "{h:#06x}");
                // Quiet NaNs keep their payload through the round trip.
                if h & 0x0200 != 0 {
                    assert_eq!(from_f32(x), h, "{h:#06x}");
                }
                continue;
            }
            assert_eq!(x as f64, want, "{h:#06x}");
            assert_eq!(x.is_sign_negative(), h & 0x8000 != 0, "{h:#06x}");
            assert_eq!(from_f32(x), h, "{h:#06x} -> {x} -> {:#06x}", from_f32(x));
        }
    }

    #[test]
    fn rounds_to_nearest_even_as_the_half_crate() {
        let mut rng = XorShift32(0x9e37_79b9);
        let mut cases: Vec<f32> = vec![
            0.0,
            -0.0,
            1.0,
            65504.0,
            65519.99,
            65520.0,
            1e-8,
            2.98e-8,
            2.9802322e-8, // 2⁻²⁵: tie, to even (zero)
            2.9802326e-8, // just above 2⁻²⁵: the smallest subnormal
            6.097555e-5,  // just below the smallest normal
            6.1035156e-5, // the smallest normal
            1.0009766,    // 1 + 2⁻¹⁰: exact
            1.0004883,    // 1 + 2⁻¹¹: tie, to even (1.0)
            1.0014648,    // 1 + 3·2⁻¹¹: tie, to even (1 + 2⁻⁹)
            f32::MIN_POSITIVE,
            1e-40,
        ];
        for _ in 0..2000 {
            let s = rng.next_u32();
            // Exponents spanning the whole half range and a little beyond.
            let e = (s >> 24) as i32 % 48 - 30;
            let m = 1.0 + (s & 0xff_ffff) as f32 / 16_777_216.0;
            let v = m * 2f32.powi(e);
            cases.push(if s & 1 == 0 { v } else { -v });
        }
        // The reference: the `half` crate's conversion (round to nearest even).
        for x in cases {
            for y in [x, -x] {
                assert_eq!(from_f32(y), half::f16::from_f32(y).to_bits(), "{y:e}");
            }
        }
        assert_eq!(from_f32(f32::INFINITY), 0x7c00);
        assert_eq!(from_f32(f32::NEG_INFINITY), 0xfc00);
        assert!(to_f32(from_f32(f32::NAN)).is_nan());
    }

    #[test]
    fn the_fast_widening_is_exact_for_every_finite_pattern() {
        for h in 0..=u16::MAX {
            if is_finite(h) {
                assert_eq!(to_f32_finite(h).to_bits(), to_f32(h).to_bits(), "{h:#06x}");
            } else {
                assert!(!to_f32(h).is_finite());
            }
        }
    }

    #[test]
    fn relative_error_bound_in_the_normal_range() {
        let mut worst = 0.0f64;
        let mut x = 6.2e-5f32;
        while x < 65000.0 {
            for y in [x, -x] {
                let r = to_f32(from_f32(y)) as f64;
                worst = worst.max(((r - y as f64) / y as f64).abs());
            }
            x *= 1.000_37;
        }
        assert!(worst <= 2f64.powi(-11), "{worst:e}");
        assert!(worst > 0.9 * 2f64.powi(-11), "{worst:e}");
    }
}
