//! RoPE scaling rules: `inv_freq` and attention factors of every rule against
//! their f64 models, the identities each implies, and configuration errors.

use microformer::pos::rope_scaling::{
    Llama3Params, LongRopeParams, RopeConfig, RopeScaling, YarnParams,
};
use microformer::Error;

use super::check::{ensure, expect_err, lib, pow2, within};
use super::rope_common::*;
use crate::out::{Failure, Out};

/// Relative error allowed for `ω_i = θ^(−e)`: `math::pow`'s `|e·ln θ|·2^-52`,
/// `exp`'s 2 ulp, the reciprocal's and `libm::pow`'s rounding (2 ulp more).
fn inv_freq_rel_bound(theta: f64, e: f64) -> f64 {
    (e * libm::log(theta)).abs() * pow2(-52) + 4.0 * pow2(-52)
}

pub(super) fn scaling(out: &mut Out<'_>) -> Result<(), Failure> {
    const M: usize = 4096;
    let base = RopeConfig::new(10_000.0, 16, M);
    let mut default = [0f64; PAIRS];
    lib("default inv_freqs", base.inv_freqs(0, &mut default))?;
    out.f64s("default inv_freq", &default);
    for (i, &w) in default.iter().enumerate() {
        let e = (2 * i) as f64 / 16.0;
        let want = libm::pow(10_000.0, -e);
        within(
            "default inv_freq vs libm::pow",
            i,
            w,
            want,
            want * inv_freq_rel_bound(10_000.0, e),
        )?;
    }

    // Linear ×4: exactly default / 4.
    let lin = base.with_scaling(RopeScaling::Linear { factor: 4.0 });
    let mut w = [0f64; PAIRS];
    lib("linear inv_freqs", lin.inv_freqs(0, &mut w))?;
    out.f64s("linear inv_freq", &w);
    for i in 0..PAIRS {
        ensure("linear = default / 4", i, w[i] == default[i] / 4.0)?;
    }

    // Dynamic NTK ×2: unchanged up to M, θ' = θ·3^(8/7) at 2M.
    let dynamic = base.with_scaling(RopeScaling::Dynamic { factor: 2.0 });
    for seq_len in [0usize, 2048, M, 2 * M] {
        lib("dynamic inv_freqs", dynamic.inv_freqs(seq_len, &mut w))?;
        out.f64s("dynamic inv_freq", &w);
        let theta = if seq_len > M {
            10_000.0 * libm::pow(3.0, 16.0 / 14.0)
        } else {
            10_000.0
        };
        for (i, (&wi, &di)) in w.iter().zip(&default).enumerate() {
            let e = (2 * i) as f64 / 16.0;
            let want = libm::pow(theta, -e);
            // θ' itself carries pow's error once more.
            let rel = inv_freq_rel_bound(theta, e) + e * inv_freq_rel_bound(3.0, 16.0 / 14.0);
            let at = seq_len * PAIRS + i;
            within("dynamic inv_freq vs libm", at, wi, want, want * rel)?;
            if seq_len <= M {
                ensure(
                    "dynamic: unchanged up to max_position_embeddings",
                    at,
                    wi == di,
                )?;
            }
        }
    }

    // YaRN ×4 from 1024: extrapolated below the ramp, interpolated above it,
    // a blend in between; attention factor 0.1·ln 4 + 1.
    let y = YarnParams::new(4.0, 1024);
    let yarn = base.with_scaling(RopeScaling::Yarn(y));
    lib("yarn inv_freqs", yarn.inv_freqs(0, &mut w))?;
    out.f64s("yarn inv_freq", &w);
    let (lo, hi) = yarn.yarn_correction_range(&y);
    out.f64s("yarn correction range", &[lo, hi]);
    ensure(
        "yarn ramp inside the pairs",
        0,
        0.0 < hi && lo < hi && hi < PAIRS as f64,
    )?;
    for i in 0..PAIRS {
        let fi = i as f64;
        if fi <= lo {
            ensure(
                "yarn: extrapolated (= default) below the ramp",
                i,
                w[i] == default[i],
            )?;
        } else if fi >= hi {
            ensure(
                "yarn: interpolated (= default / 4) above the ramp",
                i,
                w[i] == default[i] / 4.0,
            )?;
        } else {
            ensure(
                "yarn: blended inside the ramp",
                i,
                default[i] / 4.0 < w[i] && w[i] < default[i],
            )?;
        }
    }
    let a = yarn.attention_factor(0);
    out.f64("yarn attention factor", a);
    within(
        "yarn attention = 0.1 ln 4 + 1",
        0,
        a,
        0.1 * libm::log(4.0) + 1.0,
        4.0 * pow2(-52),
    )?;
    // DeepSeek-style mscale / mscale_all_dim, and an explicit factor; no truncation.
    let mut y2 = y;
    y2.mscale = Some(1.0);
    y2.mscale_all_dim = Some(0.5);
    y2.truncate = false;
    let yarn2 = base.with_scaling(RopeScaling::Yarn(y2));
    lib("yarn (mscale) inv_freqs", yarn2.inv_freqs(0, &mut w))?;
    out.f64s("yarn (mscale) inv_freq", &w);
    let a2 = yarn2.attention_factor(0);
    out.f64("yarn (mscale) attention factor", a2);
    let want = (0.1 * libm::log(4.0) + 1.0) / (0.05 * libm::log(4.0) + 1.0);
    within("yarn mscale ratio", 0, a2, want, 8.0 * pow2(-52))?;
    let mut y3 = y;
    y3.attention_factor = Some(0.75);
    out.f64(
        "yarn explicit attention factor",
        base.with_scaling(RopeScaling::Yarn(y3)).attention_factor(0),
    );

    // Llama 3 (θ = 500000, ×8 from 8192, low 1, high 4): wavelengths below
    // 2048 kept, above 8192 divided by 8, smoothed in between (pair 4).
    let l3base = RopeConfig::new(500_000.0, 16, 131_072);
    let mut l3default = [0f64; PAIRS];
    lib("llama3 base inv_freqs", l3base.inv_freqs(0, &mut l3default))?;
    let l3 = l3base.with_scaling(RopeScaling::Llama3(Llama3Params {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 8192,
    }));
    lib("llama3 inv_freqs", l3.inv_freqs(0, &mut w))?;
    out.f64s("llama3 inv_freq", &w);
    for i in 0..PAIRS {
        let wavelen = core::f64::consts::TAU / l3default[i];
        if wavelen < 2048.0 {
            ensure("llama3: high frequency kept", i, w[i] == l3default[i])?;
        } else if wavelen > 8192.0 {
            ensure("llama3: low frequency / 8", i, w[i] == l3default[i] / 8.0)?;
        } else {
            ensure(
                "llama3: smoothed",
                i,
                l3default[i] / 8.0 < w[i] && w[i] < l3default[i],
            )?;
        }
    }
    ensure("llama3: pair 4 is in the smoothing band", 4, {
        let wl = core::f64::consts::TAU / l3default[4];
        (2048.0..=8192.0).contains(&wl)
    })?;

    // LongRoPE (Phi-3 style): short factors up to O = 4096, long beyond;
    // attention factor sqrt(1 + ln 32 / ln 4096).
    const SHORT: [f64; PAIRS] = [1.0, 1.02, 1.05, 1.1, 1.2, 1.4, 1.7, 2.0];
    const LONG: [f64; PAIRS] = [1.0, 1.5, 2.5, 4.0, 7.0, 12.0, 20.0, 32.0];
    let lr = RopeConfig::new(10_000.0, 16, 131_072).with_scaling(RopeScaling::LongRope(
        LongRopeParams {
            short_factor: &SHORT,
            long_factor: &LONG,
            original_max_position_embeddings: 4096,
            factor: None,
            attention_factor: None,
        },
    ));
    for (seq_len, factors) in [(0usize, &SHORT), (4096, &SHORT), (4097, &LONG)] {
        lib("longrope inv_freqs", lr.inv_freqs(seq_len, &mut w))?;
        out.f64s("longrope inv_freq", &w);
        for i in 0..PAIRS {
            let want = default[i] / factors[i];
            within(
                "longrope = default / factor",
                seq_len * PAIRS + i,
                w[i],
                want,
                want * pow2(-50),
            )?;
        }
    }
    let a = lr.attention_factor(0);
    out.f64("longrope attention factor", a);
    let want = libm::sqrt(1.0 + libm::log(32.0) / libm::log(4096.0));
    within("longrope attention factor", 0, a, want, 8.0 * pow2(-52))?;

    // Configuration errors.
    let v = RopeConfig::new(10_000.0, 15, 64).validate();
    expect_err(out, "odd rotary dim", v, Error::OddDimension { dim: 15 })?;
    let v = RopeConfig::new(1.0, 16, 64).validate();
    expect_err(out, "theta <= 1", v, Error::InvalidParameter)?;
    let v = base
        .with_scaling(RopeScaling::Linear { factor: 0.0 })
        .validate();
    expect_err(out, "linear factor 0", v, Error::InvalidFactor)?;
    let v = base
        .with_scaling(RopeScaling::LongRope(LongRopeParams {
            short_factor: &SHORT[..3],
            long_factor: &LONG,
            original_max_position_embeddings: 4096,
            factor: None,
            attention_factor: None,
        }))
        .validate();
    expect_err(
        out,
        "longrope factor count",
        v,
        Error::FactorCountMismatch {
            expected: PAIRS,
            got: 3,
        },
    )?;
    let r = base.inv_freqs(0, &mut w[..5]);
    expect_err(
        out,
        "inv_freqs buffer",
        r,
        Error::BufferTooSmall {
            needed: PAIRS,
            got: 5,
        },
    )
}
