//! `const fn` f64 elementary functions for building angle tables.
//!
//! Everything here is a `const fn`, so a `static` table of cos/sin values for fixed
//! parameters is computed by the compiler and lands in flash with no trigonometry
//! at run time; the run-time table builders call the very same functions, so a
//! table built at compile time and one built at run time are bit-identical.
//!
//! Method: argument reduction followed by a Taylor polynomial evaluated in f64
//! (Horner form), as in any textbook libm (e.g. Muller, *Elementary Functions*):
//!
//! - [`sin_cos_turns`]: the argument is in turns (1 turn = 2π); reduction to
//!   `[-1/8, 1/8]` turn is exact, the kernel is a degree-17/18 Taylor polynomial on
//!   `[-π/4, π/4]` (truncation < 1e-19). Max error about 2 ulp of f64 (the tests
//!   compare it with `f64::sin_cos`).
//! - [`exp`]: Cody–Waite reduction by `ln 2`, degree-20 Taylor kernel. ≤ 2 ulp.
//! - [`ln`]: exponent split, `ln m = 2·atanh((m−1)/(m+1))` series. ≤ 2 ulp.
//! - [`pow`]: `exp(e·ln b)`; relative error ≈ `|e·ln b|·2^-52`.
//! - [`sqrt`]: Newton iterations from a bit-level first guess. ≤ 1 ulp.
//!
//! These are for tables, not for hot loops: the Cortex-M cores have no f64 unit,
//! so every f64 operation is a software routine. Inputs are expected to be finite; angles are
//! expected below 2^52 turns.

/// 2π.
pub const TAU: f64 = core::f64::consts::TAU;
/// ln 2, high part (exact product with small integers), Cody–Waite.
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
/// ln 2, low part.
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
/// ln 2.
pub const LN2: f64 = core::f64::consts::LN_2;

/// Rounds half away from zero. Valid for `|x| < 2^62`.
pub const fn round(x: f64) -> f64 {
    if x.is_nan() || x.abs() >= 4.0e18 {
        return x;
    }
    let i = x as i64;
    let f = x - i as f64;
    let r = if f >= 0.5 {
        i + 1
    } else if f <= -0.5 {
        i - 1
    } else {
        i
    };
    r as f64
}

/// Largest integer not greater than `x`. Valid for `|x| < 2^62`.
pub const fn floor(x: f64) -> f64 {
    if x.is_nan() || x.abs() >= 4.0e18 {
        return x;
    }
    let i = x as i64;
    let t = i as f64;
    if t > x {
        t - 1.0
    } else {
        t
    }
}

/// `(sin, cos)` of the reduced angle `a`, `|a| <= π/4`.
const fn kernel(a: f64) -> (f64, f64) {
    let z = a * a;
    // sin: a - a^3/3! + ... - a^19/19! ; cos: 1 - a^2/2! + ... + a^20/20!
    let mut s = 0.0;
    let mut c = 0.0;
    // Horner from the highest term down; factorial reciprocals built exactly enough.
    let mut k = 10;
    while k >= 1 {
        // sin term index k: (-1)^k a^(2k+1)/(2k+1)!
        // Horner: s = 1 - z/(2k(2k+1)) * s ... written as nested form.
        let n = (2 * k) as f64;
        s = 1.0 - z / (n * (n + 1.0)) * s;
        c = 1.0 - z / ((n - 1.0) * n) * c;
        k -= 1;
    }
    (a * s, c)
}

/// `(sin 2πt, cos 2πt)`: sine and cosine of an angle given in turns.
///
/// Reduction is exact (`t − round(t)`, then to the nearest quarter turn), so the
/// result stays accurate for any `|t| < 2^52`. Max error about 2 ulp.
pub const fn sin_cos_turns(t: f64) -> (f64, f64) {
    let r = t - round(t);
    let q = round(4.0 * r);
    let f = r - q * 0.25;
    let (s, c) = kernel(f * TAU);
    match (q as i64) & 3 {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

/// `(sin x, cos x)` for `x` in radians (reduced through turns: `x / 2π`).
pub const fn sin_cos(x: f64) -> (f64, f64) {
    sin_cos_turns(x / TAU)
}

/// `2^k` for an integer `k` in the normal range `-1022..=1023`.
const fn pow2i(k: i64) -> f64 {
    f64::from_bits(((k + 1023) as u64) << 52)
}

/// `e^x`. Overflows to `+inf` above 709.78, underflows to 0 below −745.
pub const fn exp(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x > 709.782_712_893_384 {
        return f64::INFINITY;
    }
    if x < -745.2 {
        return 0.0;
    }
    let k = round(x / LN2);
    let r = (x - k * LN2_HI) - k * LN2_LO;
    // Taylor to r^20/20!: |r| <= 0.35, truncation < 1e-27.
    let mut p = 1.0;
    let mut n = 20;
    while n >= 1 {
        p = 1.0 + r * p / n as f64;
        n -= 1;
    }
    let k = k as i64;
    if k < -1021 {
        // Scale in two steps to reach subnormals.
        p * pow2i(k + 600) * pow2i(-600)
    } else if k > 1023 {
        p * pow2i(k - 1) * 2.0
    } else {
        p * pow2i(k)
    }
}

/// Natural logarithm. `ln(0) = -inf`, negative or NaN input gives NaN.
pub const fn ln(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return x;
    }
    let mut x = x;
    let mut e: i64 = 0;
    if x < f64::MIN_POSITIVE {
        x *= 18_014_398_509_481_984.0; // 2^54
        e -= 54;
    }
    let bits = x.to_bits();
    e += ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > core::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let z = s * s;
    // 2 (s + s^3/3 + ... + s^27/27): |s| <= 0.1716, truncation < 1e-21.
    let mut p = 0.0;
    let mut k = 13;
    while k >= 0 {
        p = 1.0 / (2 * k + 1) as f64 + z * p;
        k -= 1;
    }
    let lnm = 2.0 * s * p;
    (e as f64) * LN2_HI + ((e as f64) * LN2_LO + lnm)
}

/// `b^e` for `b > 0` as `exp(e·ln b)`.
pub const fn pow(b: f64, e: f64) -> f64 {
    if e == 0.0 {
        return 1.0;
    }
    exp(e * ln(b))
}

/// Square root (NaN for negative input).
pub const fn sqrt(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 || x.is_infinite() {
        return x;
    }
    // First guess: halve the exponent through the bits.
    let mut y = f64::from_bits((x.to_bits() >> 1) + (1023u64 << 51));
    let mut i = 0;
    while i < 6 {
        y = 0.5 * (y + x / y);
        i += 1;
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f64, b: f64) -> f64 {
        ((a - b).abs() / f64::EPSILON / b.abs().max(f64::MIN_POSITIVE)).abs()
    }

    #[test]
    fn sin_cos_matches_std() {
        let mut worst = 0.0f64;
        for i in 0..200_000 {
            let t = (i as f64) * 0.001_234_567 - 100.0;
            let (s, c) = sin_cos_turns(t);
            let (es, ec) = (t * TAU).sin_cos();
            // reference itself rounds t*TAU: allow that
            let tol = 4e-16 * (1.0 + (t * TAU).abs());
            assert!((s - es).abs() <= tol, "sin {t}: {s} vs {es}");
            assert!((c - ec).abs() <= tol, "cos {t}: {c} vs {ec}");
            worst = worst.max((s - es).abs());
        }
        assert!(worst < 1e-13);
        // exact quarter turns
        assert_eq!(sin_cos_turns(0.25), (1.0, 0.0));
        assert_eq!(sin_cos_turns(0.0), (0.0, 1.0));
        assert_eq!(sin_cos_turns(0.5).1, -1.0);
    }

    #[test]
    fn exp_ln_pow_sqrt_match_std() {
        for i in -1900..1900 {
            let x = i as f64 * 0.3571;
            let e = exp(x);
            assert!(ulps(e, x.exp()) <= 4.0, "exp {x}: {e} vs {}", x.exp());
        }
        for i in 1..5000 {
            let x = (i as f64).powf(3.1) * 1e-6;
            assert!((ln(x) - x.ln()).abs() <= 4.0 * f64::EPSILON * x.ln().abs().max(1.0));
            assert!(ulps(sqrt(x), x.sqrt()) <= 1.0);
        }
        for d in [8usize, 32, 64, 128] {
            for i in (0..d).step_by(2) {
                let e = -(i as f64) / d as f64;
                for b in [10_000.0f64, 500_000.0, 1e6] {
                    let r = pow(b, e);
                    assert!(ulps(r, b.powf(e)) <= 16.0, "pow {b} {e}");
                }
            }
        }
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(ln(1.0), 0.0);
        assert!(ln(-1.0).is_nan());
        assert_eq!(sqrt(4.0), 2.0);
    }

    #[test]
    fn floor_round() {
        assert_eq!(floor(-0.5), -1.0);
        assert_eq!(floor(2.0), 2.0);
        assert_eq!(round(2.5), 3.0);
        assert_eq!(round(-2.5), -3.0);
        assert_eq!(round(-2.4), -2.0);
    }
}
