//! glibc's `expf`, transcribed: the `e^x` llama2.c's `run.c` gets when it is
//! built with gcc on Linux, bit for bit (the `exact` feature's `expf`).
//!
//! # Source and licence
//!
//! glibc's `expf` (since glibc 2.27: `sysdeps/ieee754/flt-32/e_expf.c` with the
//! table and coefficients of `e_exp2f_data.c`) is Szabolcs Nagy's implementation
//! from Arm's optimized-routines (`math/expf.c`, `math/exp2f_data.c`, Copyright (c)
//! 2017-2018 Arm Limited, SPDX-License-Identifier: MIT; contributed to glibc
//! under the LGPL). This file transcribes optimized-routines' MIT-licensed
//! source; the constants are its hexadecimal ones, bit for bit.
//!
//! The `libm` crate's `expf` is a different function (FreeBSD msun's
//! `e_expf.c`, a rational approximation in f32): the two disagree in the last
//! bit on some inputs, which is enough to move a seeded top-p sample at a
//! near-tie.
//!
//! # Method
//!
//! With `N = 32`: `z = x·N/ln2`, `k = round(z)` (by adding `SHIFT = 1.5·2^52`
//! and reading the low bits), `r = z − k ∈ [−1/2, 1/2]`, and
//! `e^x = 2^(k/N) · 2^(r/N)`, where `2^(k/N)` is the table entry
//! `T[k mod N]` (`2^(i/N)` as f64 bits, less `i << 47`) with `k << 47` added to
//! its bits, and `2^(r/N) ≈ C0·r³ + C1·r² + C2·r + 1`, all in f64; the f64
//! result is rounded to f32 once. Error: 0.502 ulp (optimized-routines' figure).
//! Special inputs as the C: `−∞ → 0`, NaN and `+∞ → x + x`,
//! `x > 88.72 → +∞` (`0x1p97f · 0x1p97f`), `x < −103.97 → +0`
//! (`0x1p-95f · 0x1p-95f`); between, the main path (subnormal results from the
//! f64 → f32 rounding).
//!
//! # Which glibc build
//!
//! On x86-64 glibc selects `__expf_fma` (the same C compiled with `-mfma
//! -mavx2`) on every CPU with FMA (Intel since Haswell, AMD since Piledriver),
//! and gcc contracts the reduction there: `z·1 + SHIFT` and `z − k` become
//! `fma(InvLn2N, x, SHIFT)` and `fma(InvLn2N, x, −k)` (the product `InvLn2N·x`
//! is never rounded). This transcription does the same with [`libm::fma`]
//! (correctly rounded, hence the instruction's result). Contracting the
//! polynomial too (`fma(C0, r, C1)`, `fma(C2, r, 1)`, `fma(z, r², y)`) changes
//! no result over every f32 input (measured), so it stays unfused. The
//! unfused build (`__expf_sse2`, x86-64 CPUs without FMA) differs from this one
//! on exactly two finite inputs (measured over every f32): `x = 32.564632`
//! (`0x4202422f`, fused `1.3888015e14`, unfused `1.3888014e14`) and
//! `x = −63.09946` (`0xc27c65d9`, fused `3.9468667e-28`, unfused
//! `3.9468665e-28`).
//!
//! `tests/exp_glibc.rs` compares [`expf`] with the platform C library's `expf`
//! over every f32 input where that library is glibc.
//!
//! # Cost
//!
//! f64 arithmetic and two `fma`s: soft-float on a Cortex-M (its FPU is single
//! precision), several times the cost of [`super::exp::fast_expf`]; the
//! default build does not use it.

/// `EXP2F_TABLE_BITS`: the table has `N = 2^5` entries.
const TABLE_BITS: u32 = 5;

/// `tab[i] = asuint64(2^(i/32)) − (i << 47)` (`__exp2f_data.tab`).
const T: [u64; 32] = [
    0x3ff0_0000_0000_0000,
    0x3fef_d9b0_d315_8574,
    0x3fef_b558_6cf9_890f,
    0x3fef_9301_d012_5b51,
    0x3fef_72b8_3c7d_517b,
    0x3fef_5487_3168_b9aa,
    0x3fef_387a_6e75_6238,
    0x3fef_1e9d_f51f_dee1,
    0x3fef_06fe_0a31_b715,
    0x3fee_f1a7_373a_a9cb,
    0x3fee_dea6_4c12_3422,
    0x3fee_ce08_6061_892d,
    0x3fee_bfda_d536_2a27,
    0x3fee_b42b_569d_4f82,
    0x3fee_ab07_dd48_5429,
    0x3fee_a47e_b03a_5585,
    0x3fee_a09e_667f_3bcd,
    0x3fee_9f75_e8ec_5f74,
    0x3fee_a114_73eb_0187,
    0x3fee_a589_994c_ce13,
    0x3fee_ace5_422a_a0db,
    0x3fee_b737_b0cd_c5e5,
    0x3fee_c491_82a3_f090,
    0x3fee_d503_b23e_255d,
    0x3fee_e89f_995a_d3ad,
    0x3fee_ff76_f2fb_5e47,
    0x3fef_199b_dd85_529c,
    0x3fef_3720_dcef_9069,
    0x3fef_5818_dcfb_a487,
    0x3fef_7c97_337b_9b5f,
    0x3fef_a4af_a2a4_90da,
    0x3fef_d076_5b6e_4540,
];

/// `N = 32` as f64.
const N: f64 = (1u32 << TABLE_BITS) as f64;
/// `0x1.8p+52` (`__exp2f_data.shift`): adding it rounds to an integer.
const SHIFT: f64 = 6_755_399_441_055_744.0;
/// `0x1.71547652b82fep+0 · N` (`invln2_scaled`).
const INV_LN2_N: f64 = f64::from_bits(0x3ff7_1547_652b_82fe) * N;
/// `0x1.c6af84b912394p-5 / N³` (`poly_scaled[0]`).
const C0: f64 = f64::from_bits(0x3fac_6af8_4b91_2394) / N / N / N;
/// `0x1.ebfce50fac4f3p-3 / N²` (`poly_scaled[1]`).
const C1: f64 = f64::from_bits(0x3fce_bfce_50fa_c4f3) / N / N;
/// `0x1.62e42ff0c52d6p-1 / N` (`poly_scaled[2]`).
const C2: f64 = f64::from_bits(0x3fe6_2e42_ff0c_52d6) / N;

/// `top12(88.0f)`: the sign-less top 12 bits from which the special cases start.
const TOP12_88: u32 = 0x42b;
/// `top12(INFINITY)`.
const TOP12_INF: u32 = 0x7f8;
/// `0x1.62e42ep6f` (≈ 88.72, `ln 2^128`): above it the result overflows.
const OVERFLOW: f32 = 88.722_83;
/// `−0x1.9fe368p6f` (≈ −103.97, `ln 2^−150`): below it the result is +0.
const UNDERFLOW: f32 = -103.972_08;

/// `e^x` with the bits of glibc's `expf(x)` for every `x` (the FMA build: see
/// the module documentation), below 0.502 ulp of the exact value.
///
/// Used by the `exact` feature for the attention softmax, SiLU and the
/// sampler's softmax, where `run.c` calls `expf`.
pub fn expf(x: f32) -> f32 {
    let bits = x.to_bits();
    let abstop = (bits >> 20) & 0x7ff;
    if abstop >= TOP12_88 {
        // |x| >= 88 or NaN.
        if bits == f32::NEG_INFINITY.to_bits() {
            return 0.0;
        }
        if abstop >= TOP12_INF {
            return x + x;
        }
        if x > OVERFLOW {
            // __math_oflowf(0): 0x1p97f * 0x1p97f.
            return f32::from_bits(0x7000_0000) * f32::from_bits(0x7000_0000);
        }
        if x < UNDERFLOW {
            // __math_uflowf(0): 0x1p-95f * 0x1p-95f.
            return f32::from_bits(0x1000_0000) * f32::from_bits(0x1000_0000);
        }
    }
    let xd = f64::from(x);
    // z = InvLn2N·x; kd = z + SHIFT; r = z − (kd − SHIFT): the two uses of the
    // product fused as gcc contracts them in glibc's FMA build.
    let kd = libm::fma(INV_LN2_N, xd, SHIFT);
    let ki = kd.to_bits();
    let kd = kd - SHIFT;
    let r = libm::fma(INV_LN2_N, xd, -kd);
    // 2^(k/N) from the table: ki's low 5 bits index it, the rest is the exponent.
    let t = T[(ki % (1 << TABLE_BITS)) as usize].wrapping_add(ki << (52 - TABLE_BITS));
    let s = f64::from_bits(t);
    let z = C0 * r + C1;
    let r2 = r * r;
    let y = C2 * r + 1.0;
    let y = z * r2 + y;
    (y * s) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_are_the_c_sources() {
        // 0x1.62e42ep6f, -0x1.9fe368p6f and the scaled coefficients.
        assert_eq!(OVERFLOW.to_bits(), 0x42b1_7217);
        assert_eq!(UNDERFLOW.to_bits(), 0xc2cf_f1b4);
        assert_eq!((88.0f32.to_bits() >> 20), TOP12_88);
        assert_eq!((f32::INFINITY.to_bits() >> 20), TOP12_INF);
        assert_eq!(INV_LN2_N, core::f64::consts::LOG2_E * 32.0);
        assert_eq!(T[0], 1.0f64.to_bits());
        // tab[i] + (i << 47) is 2^(i/32) to within an ulp.
        for (i, &t) in T.iter().enumerate() {
            let v = f64::from_bits(t + ((i as u64) << 47));
            let want = libm::exp2(i as f64 / 32.0);
            assert!((v - want).abs() <= want * f64::EPSILON, "{i}");
        }
    }

    #[test]
    fn special_inputs() {
        assert_eq!(expf(0.0), 1.0);
        assert_eq!(expf(-0.0), 1.0);
        assert_eq!(expf(f32::NEG_INFINITY).to_bits(), 0);
        assert_eq!(expf(f32::INFINITY), f32::INFINITY);
        assert!(expf(f32::NAN).is_nan());
        assert_eq!(expf(88.8), f32::INFINITY);
        assert_eq!(expf(-104.0).to_bits(), 0);
        // Subnormal results come from the main path's rounding.
        let s = expf(-100.0);
        assert!(s > 0.0 && !s.is_normal(), "{s:e}");
        assert_eq!(expf(1.0), core::f32::consts::E);
    }

    #[test]
    fn the_two_inputs_where_the_fused_build_differs() {
        // The FMA build's values (the unfused one gives the next f32 down).
        assert_eq!(expf(f32::from_bits(0x4202_422f)), 1.388_801_5e14);
        assert_eq!(expf(f32::from_bits(0xc27c_65d9)), 3.946_866_7e-28);
    }

    #[test]
    fn near_libm_on_a_stride() {
        // Within one ulp of msun's expf (both are below 1 ulp of e^x).
        let mut b: u32 = 0;
        while let Some(next) = b.checked_add(65_537) {
            let x = f32::from_bits(b);
            let (a, l) = (expf(x), libm::expf(x));
            if a.is_nan() || l.is_nan() {
                assert!(a.is_nan() && l.is_nan(), "{x:e}");
            } else {
                let d = (a.to_bits() as i64 - l.to_bits() as i64).abs();
                assert!(d <= 1, "{x:e}: {a:e} vs {l:e}");
            }
            b = next;
        }
    }
}
