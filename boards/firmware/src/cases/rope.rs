//! RoPE: tables (run-time and compile-time), rotations, Q15 tables and
//! integer phases, scaling rules, 2-D axial RoPE.

use microformer::num::fixed::Q15;
use microformer::pos::rope::{RopeLayout, RopePhases, RopeTable, RopeTableQ15};
use microformer::pos::rope2d::{Rope2d, Rope2dQ15};
use microformer::pos::rope_const::ConstRopeTable;
use microformer::pos::rope_scaling::{
    Llama3Params, LongRopeParams, RopeConfig, RopeScaling, YarnParams,
};
use microformer::Error;
use microformer_testkit::XorShift32;

use super::check::{ensure, expect_err, identical, lib, pow2, within};
use crate::out::{Failure, Out};

/// Head of 20 dims, the first 16 rotary (partial rotary), θ = 10000.
const CFG: RopeConfig<'static> = RopeConfig::new(10_000.0, 16, 4096);
const PAIRS: usize = 8;
const HEAD: usize = 20;
/// YaRN ×4 from 1024 positions: attention factor `0.1·ln 4 + 1 ≈ 1.139`.
const YARN: RopeConfig<'static> =
    RopeConfig::new(10_000.0, 16, 4096).with_scaling(RopeScaling::Yarn(YarnParams::new(4.0, 1024)));
const LAYOUTS: [RopeLayout; 2] = [RopeLayout::Interleaved, RopeLayout::HalfSplit];

/// Chunks of positions `(first, rows)` the tables are filled for: the start,
/// around the trained context (4096) and the top of the documented range.
const CHUNKS: [(usize, usize); 3] = [(0, 32), (4093, 3), (65520, 16)];
const MAX_ROWS: usize = 32;

/// The reference angle `p·ω_i`, formed in f64 (one rounding: `≤ x·2^-53`).
fn angle(cfg: &RopeConfig<'_>, position: usize, pair: usize) -> f64 {
    position as f64 * cfg.inv_freq(pair, 0)
}

/// f32 entry bound (module docs of `pos::rope`): f32 rounding (½ ulp ≤ 2^-25
/// for `|v| ≤ 1`), the library's f64 angle in turns (`≈ x·2^-52`) plus the
/// reference's own angle (`x·2^-53`), together `< x·2^-51`, and the f64
/// sine/cosine of both (a few ulp of f64: `2^-50`); all times `a`.
fn f32_entry_bound(x: f64, a: f64) -> f64 {
    a * (pow2(-25) + x * pow2(-51) + pow2(-50))
}

/// Q15 entry bound in LSB: ½ LSB plus the same f64 allowance in LSB.
fn q15_entry_bound(x: f64, a: f64) -> f64 {
    0.5 + 32768.0 * a * (x * pow2(-51) + pow2(-50))
}

/// `clamp(32768·v, −32768, 32767)`: the Q15 value an exact `v` saturates to.
fn q15_exact(v: f64) -> f64 {
    (v * 32768.0).clamp(-32768.0, 32767.0)
}

/// Dims of pair `i` in a rotary part of `pairs` pairs.
fn dims(layout: RopeLayout, pairs: usize, i: usize) -> (usize, usize) {
    match layout {
        RopeLayout::Interleaved => (2 * i, 2 * i + 1),
        RopeLayout::HalfSplit => (i, i + pairs),
    }
}

pub(super) fn table_f32(out: &mut Out<'_>) -> Result<(), Failure> {
    let mut cos = [0f32; MAX_ROWS * PAIRS];
    let mut sin = [0f32; MAX_ROWS * PAIRS];
    for (first, rows) in CHUNKS {
        let n = rows * PAIRS;
        let (cos, sin) = (&mut cos[..n], &mut sin[..n]);
        let filled = lib("RopeTable::fill", RopeTable::fill(&CFG, 0, first, cos, sin))?;
        ensure("RopeTable::fill rows", first, filled == rows)?;
        out.f32s("RopeTable cos", cos);
        out.f32s("RopeTable sin", sin);
        let t = lib("RopeTable::new", RopeTable::new(cos, sin, PAIRS))?;
        ensure("RopeTable::positions", first, t.positions() == rows)?;
        for r in 0..rows {
            let p = first + r;
            let (c, s) = lib("RopeTable::row", t.row(r))?;
            for (i, (&c, &s)) in c.iter().zip(s).enumerate() {
                let x = angle(&CFG, p, i);
                let b = f32_entry_bound(x, 1.0);
                within(
                    "RopeTable cos vs libm::cos",
                    p * PAIRS + i,
                    c as f64,
                    libm::cos(x),
                    b,
                )?;
                within(
                    "RopeTable sin vs libm::sin",
                    p * PAIRS + i,
                    s as f64,
                    libm::sin(x),
                    b,
                )?;
            }
        }
    }
    // Typed errors.
    let (mut c3, mut s3) = ([0f32; 3], [0f32; 3]);
    let r = RopeTable::fill(&CFG, 0, 0, &mut c3, &mut s3);
    expect_err(
        out,
        "fill with less than a row",
        r,
        Error::BufferTooSmall { needed: 8, got: 3 },
    )?;
    let r = RopeTable::new(&cos[..7], &sin[..7], PAIRS).map(|_| ());
    expect_err(
        out,
        "table shorter than a row",
        r,
        Error::BufferTooSmall { needed: 8, got: 7 },
    )?;
    let r = RopeTable::new(&cos[..12], &sin[..12], PAIRS).map(|_| ());
    expect_err(
        out,
        "table of a partial row",
        r,
        Error::LengthMismatch {
            expected: 8,
            got: 12,
        },
    )?;
    let t = lib(
        "RopeTable::new",
        RopeTable::new(&cos[..16], &sin[..16], PAIRS),
    )?;
    let r = t.row(2).map(|_| ());
    expect_err(
        out,
        "row past the table",
        r,
        Error::PositionOutOfRange {
            position: 2,
            len: 2,
        },
    )
}

/// Four pairs, 64 positions: built by the compiler (on the build machine),
/// filled again at run time on the target, compared bit for bit.
const SMALL: RopeConfig<'static> = RopeConfig::new(10_000.0, 8, 64);
const SMALL_YARN: RopeConfig<'static> =
    RopeConfig::new(10_000.0, 8, 256).with_scaling(RopeScaling::Yarn(YarnParams::new(4.0, 64)));
const _: () = assert!(ConstRopeTable::<64, 4>::check(&SMALL).is_ok());
const _: () = assert!(ConstRopeTable::<32, 4>::check(&SMALL_YARN).is_ok());
static CONST_PLAIN: ConstRopeTable<64, 4> = ConstRopeTable::new(&SMALL, 64);
static CONST_YARN: ConstRopeTable<32, 4> = ConstRopeTable::new(&SMALL_YARN, 256);

pub(super) fn const_table(out: &mut Out<'_>) -> Result<(), Failure> {
    let mut cos = [0f32; 64 * 4];
    let mut sin = [0f32; 64 * 4];
    lib(
        "fill plain",
        RopeTable::fill(&SMALL, 64, 0, &mut cos, &mut sin),
    )?;
    out.f32s("run-time cos", &cos);
    out.f32s("run-time sin", &sin);
    let flat_c = CONST_PLAIN.cos.as_flattened();
    let flat_s = CONST_PLAIN.sin.as_flattened();
    for (k, ((&a, &b), (&c, &d))) in cos
        .iter()
        .zip(&sin)
        .zip(flat_c.iter().zip(flat_s))
        .enumerate()
    {
        identical("const cos = run-time cos", k, c, a)?;
        identical("const sin = run-time sin", k, d, b)?;
    }
    let n = 32 * 4;
    let (cos, sin) = (&mut cos[..n], &mut sin[..n]);
    lib("fill yarn", RopeTable::fill(&SMALL_YARN, 256, 0, cos, sin))?;
    out.f32s("run-time yarn cos", cos);
    out.f32s("run-time yarn sin", sin);
    let flat_c = CONST_YARN.cos.as_flattened();
    let flat_s = CONST_YARN.sin.as_flattened();
    for (k, ((&a, &b), (&c, &d))) in cos
        .iter()
        .zip(sin.iter())
        .zip(flat_c.iter().zip(flat_s))
        .enumerate()
    {
        identical("const yarn cos = run-time", k, c, a)?;
        identical("const yarn sin = run-time", k, d, b)?;
    }
    // Position 0: cos = a (the attention factor), sin = 0.
    let a = SMALL_YARN.attention_factor(256);
    identical("yarn cos(0) = a", 0, CONST_YARN.cos[0][0], a as f32)?;
    within(
        "yarn a = 0.1 ln 4 + 1",
        0,
        a,
        0.1 * libm::log(4.0) + 1.0,
        4.0 * pow2(-52),
    )?;
    // Rotation through the const table's view equals the run-time table's.
    let t = lib("RopeTable::new", RopeTable::new(cos, sin, 4))?;
    let mut rng = XorShift32(7);
    for p in [0usize, 1, 17, 31] {
        let mut h1 = [0f32; 8];
        rng.fill_f32(&mut h1);
        let mut h2 = h1;
        lib(
            "const rotate",
            CONST_YARN
                .as_table()
                .rotate(RopeLayout::HalfSplit, p, &mut h1),
        )?;
        lib(
            "run-time rotate",
            t.rotate(RopeLayout::HalfSplit, p, &mut h2),
        )?;
        out.f32s("const-table rotation", &h1);
        for (k, (&x, &y)) in h1.iter().zip(&h2).enumerate() {
            identical("const rotation = run-time", p * 8 + k, x, y)?;
        }
    }
    Ok(())
}

pub(super) fn rotate_f32(out: &mut Out<'_>) -> Result<(), Failure> {
    let mut cos = [0f32; 8 * PAIRS];
    let mut sin = [0f32; 8 * PAIRS];
    let mut rng = XorShift32(0x5eed);
    for first in [0usize, 1000, 65528] {
        lib("fill", RopeTable::fill(&CFG, 0, first, &mut cos, &mut sin))?;
        let t = lib("RopeTable::new", RopeTable::new(&cos, &sin, PAIRS))?;
        for r in 0..8 {
            let p = first + r;
            for layout in LAYOUTS {
                let mut x = [0f32; HEAD];
                rng.fill_f32(&mut x);
                let mut y = x;
                lib("RopeTable::rotate", t.rotate(layout, r, &mut y))?;
                out.f32s("rotated head", &y);
                for i in 0..PAIRS {
                    let (a, b) = dims(layout, PAIRS, i);
                    let (x0, x1) = (x[a] as f64, x[b] as f64);
                    let th = angle(&CFG, p, i);
                    let (s, c) = (libm::sin(th), libm::cos(th));
                    let bound = 2.0 * pow2(-24) * (x0.abs() + x1.abs());
                    within(
                        "rotation x0'",
                        p * PAIRS + i,
                        y[a] as f64,
                        x0 * c - x1 * s,
                        bound,
                    )?;
                    within(
                        "rotation x1'",
                        p * PAIRS + i,
                        y[b] as f64,
                        x0 * s + x1 * c,
                        bound,
                    )?;
                }
                for k in 2 * PAIRS..HEAD {
                    identical(
                        "partial rotary: dims past rotary_dim untouched",
                        k,
                        y[k],
                        x[k],
                    )?;
                }
            }
        }
    }
    let t = lib("RopeTable::new", RopeTable::new(&cos, &sin, PAIRS))?;
    let mut short = [0f32; 15];
    let r = t.rotate(RopeLayout::HalfSplit, 0, &mut short);
    expect_err(
        out,
        "head shorter than rotary_dim",
        r,
        Error::RotaryDimTooLarge {
            rotary_dim: 16,
            head_dim: 15,
        },
    )
}

pub(super) fn q15(out: &mut Out<'_>) -> Result<(), Failure> {
    let mut cos = [0 as Q15; MAX_ROWS * PAIRS];
    let mut sin = [0 as Q15; MAX_ROWS * PAIRS];
    let a = YARN.attention_factor(0);
    for (first, rows) in CHUNKS {
        let n = rows * PAIRS;
        let (cos, sin) = (&mut cos[..n], &mut sin[..n]);
        // Plain (a = 1), YaRN scaled (saturates where |a·cos| >= 1), YaRN unscaled.
        for (cfg, scaled, fa) in [(&CFG, true, 1.0), (&YARN, true, a), (&YARN, false, 1.0)] {
            let filled = if scaled {
                RopeTableQ15::fill(cfg, 0, first, cos, sin)
            } else {
                RopeTableQ15::fill_unscaled(cfg, 0, first, cos, sin)
            };
            ensure(
                "RopeTableQ15::fill rows",
                first,
                lib("RopeTableQ15::fill", filled)? == rows,
            )?;
            out.i16s("Q15 cos", cos);
            out.i16s("Q15 sin", sin);
            for r in 0..rows {
                let p = first + r;
                for i in 0..PAIRS {
                    let x = angle(cfg, p, i);
                    let b = q15_entry_bound(x, fa);
                    let k = r * PAIRS + i;
                    within(
                        "Q15 cos entry (LSB)",
                        p * PAIRS + i,
                        cos[k] as f64,
                        q15_exact(fa * libm::cos(x)),
                        b,
                    )?;
                    within(
                        "Q15 sin entry (LSB)",
                        p * PAIRS + i,
                        sin[k] as f64,
                        q15_exact(fa * libm::sin(x)),
                        b,
                    )?;
                }
            }
        }
        // Rotation with the plain Q15 table: <= 1.5 LSB against the exact
        // rotation of the same Q15 input (saturated to the Q15 range).
        lib("fill", RopeTableQ15::fill(&CFG, 0, first, cos, sin))?;
        let t = lib("RopeTableQ15::new", RopeTableQ15::new(cos, sin, PAIRS))?;
        let mut rng = XorShift32(first as u32 + 1);
        for r in 0..rows.min(4) {
            for layout in LAYOUTS {
                let mut x = [0 as Q15; HEAD];
                rng.fill_q15(&mut x);
                let mut y = x;
                lib("RopeTableQ15::rotate", t.rotate(layout, r, &mut y))?;
                out.i16s("Q15 rotated head", &y);
                check_q15_rotation(&CFG, first + r, layout, &x, &y, 1.0, 1.5)?;
            }
        }
    }
    Ok(())
}

/// Checks a Q15 rotation (pairs of `cfg`, attention factor `a`) against the
/// exact rotation of the same input, within `bound` LSB (+ the reference's
/// own f64 allowance); dims past the rotary part must be untouched.
fn check_q15_rotation(
    cfg: &RopeConfig<'_>,
    p: usize,
    layout: RopeLayout,
    x: &[Q15],
    y: &[Q15],
    a: f64,
    bound: f64,
) -> Result<(), Failure> {
    let pairs = cfg.pairs();
    for i in 0..pairs {
        let (ia, ib) = dims(layout, pairs, i);
        let (x0, x1) = (x[ia] as f64 / 32768.0, x[ib] as f64 / 32768.0);
        let th = angle(cfg, p, i);
        let (s, c) = (a * libm::sin(th), a * libm::cos(th));
        let b = bound + q15_entry_bound(th, a) - 0.5;
        within(
            "Q15 rotation x0' (LSB)",
            p * pairs + i,
            y[ia] as f64,
            q15_exact(x0 * c - x1 * s),
            b,
        )?;
        within(
            "Q15 rotation x1' (LSB)",
            p * pairs + i,
            y[ib] as f64,
            q15_exact(x0 * s + x1 * c),
            b,
        )?;
    }
    for k in 2 * pairs..x.len() {
        ensure(
            "Q15 partial rotary: dims past rotary_dim untouched",
            k,
            x[k] == y[k],
        )?;
    }
    Ok(())
}

pub(super) fn phases(out: &mut Out<'_>) -> Result<(), Failure> {
    let positions = (0..64usize)
        .chain((64..=65535).step_by(1021))
        .chain([65535]);
    let a = YARN.attention_factor(0);
    for (cfg, fa) in [(&CFG, 1.0), (&YARN, a)] {
        let mut steps = [0u64; PAIRS];
        let ph = lib("RopePhases::new", RopePhases::new(cfg, 0, &mut steps))?;
        out.u64s("phase steps", ph.steps());
        // cos/sin: <= 1.2 LSB (a = 1), <= 1.2·a + 0.5 LSB (a > 1).
        let bound = if fa == 1.0 { 1.2 } else { 1.2 * fa + 0.5 };
        for p in positions.clone() {
            for i in 0..PAIRS {
                let (c, s) = lib("cos_sin_q15", ph.cos_sin_q15(p, i))?;
                out.i16s("phase cos, sin", &[c, s]);
                let x = angle(cfg, p, i);
                let b = bound + q15_entry_bound(x, fa) - 0.5;
                within(
                    "phase cos (LSB)",
                    p * PAIRS + i,
                    c as f64,
                    q15_exact(fa * libm::cos(x)),
                    b,
                )?;
                within(
                    "phase sin (LSB)",
                    p * PAIRS + i,
                    s as f64,
                    q15_exact(fa * libm::sin(x)),
                    b,
                )?;
            }
        }
        // Far positions: integer arithmetic only, compared with the host.
        for p in [1usize << 20, 123_456_789, 4_000_000_000] {
            for i in 0..PAIRS {
                let cs = lib("cos_sin_q15 far", ph.cos_sin_q15(p, i))?;
                out.i16s("far phase cos, sin", &[cs.0, cs.1]);
            }
        }
        // Rotation: <= 2.9 LSB (a = 1) against the exact rotation.
        let mut rng = XorShift32(99);
        for p in positions.clone().step_by(7) {
            for layout in LAYOUTS {
                let mut x = [0 as Q15; HEAD];
                rng.fill_q15(&mut x);
                let mut y = x;
                lib("RopePhases::rotate", ph.rotate(layout, p, &mut y))?;
                out.i16s("phase-rotated head", &y);
                if fa == 1.0 {
                    check_q15_rotation(cfg, p, layout, &x, &y, 1.0, 2.9)?;
                }
            }
        }
        let r = ph.cos_sin_q15(0, PAIRS);
        expect_err(
            out,
            "pair past the steps",
            r,
            Error::LengthMismatch {
                expected: PAIRS,
                got: PAIRS,
            },
        )?;
        let r = ph.cos_sin_q15(u32::MAX as usize, 0);
        let e = Error::PositionOutOfRange {
            position: u32::MAX as usize,
            len: u32::MAX as usize,
        };
        expect_err(out, "position 2^32 - 1", r, e)?;
    }
    let mut short = [0u64; 3];
    let r = RopePhases::new(&CFG, 0, &mut short).map(|_| ());
    expect_err(
        out,
        "steps buffer too small",
        r,
        Error::BufferTooSmall {
            needed: PAIRS,
            got: 3,
        },
    )
}

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

/// Axis of a 2-D RoPE: four pairs (head of 16 rotary dims + 2), 16 positions.
const AXIS: RopeConfig<'static> = RopeConfig::new(100.0, 8, 16);

pub(super) fn two_d(out: &mut Out<'_>) -> Result<(), Failure> {
    const A: usize = 4;
    const D: usize = 4 * A + 2;
    let mut cos = [0f32; 16 * A];
    let mut sin = [0f32; 16 * A];
    lib(
        "axis fill",
        RopeTable::fill(&AXIS, 0, 0, &mut cos, &mut sin),
    )?;
    let axis = lib("axis table", RopeTable::new(&cos, &sin, A))?;
    let rope = Rope2d::new(axis);
    ensure("2-D pairs = 2A", 0, rope.pairs() == 2 * A)?;
    let mut qc = [0 as Q15; 16 * A];
    let mut qs = [0 as Q15; 16 * A];
    lib(
        "Q15 axis fill",
        RopeTableQ15::fill(&AXIS, 0, 0, &mut qc, &mut qs),
    )?;
    let qaxis = lib("Q15 axis table", RopeTableQ15::new(&qc, &qs, A))?;
    let qrope = Rope2dQ15::new(qaxis);
    let grid = [0usize, 1, 2, 7, 15];
    let mut rng = XorShift32(2024);
    for row in grid {
        for col in grid {
            let k = row * 16 + col;
            // f32, both layouts.
            for layout in LAYOUTS {
                let mut x = [0f32; D];
                rng.fill_f32(&mut x);
                let mut y = x;
                lib("Rope2d::rotate", rope.rotate(layout, row, col, &mut y))?;
                out.f32s("2-D rotated head", &y);
                for j in 4 * A..D {
                    identical("2-D: dims past 4A untouched", j, y[j], x[j])?;
                }
                if layout == RopeLayout::Interleaved {
                    // Column half: 1-D RoPE (A pairs) at `col`; row half: at `row`.
                    let mut colh = x;
                    lib("1-D column", axis.rotate(layout, col, &mut colh[..2 * A]))?;
                    let mut rowh = x;
                    lib("1-D row", axis.rotate(layout, row, &mut rowh[2 * A..4 * A]))?;
                    for j in 0..2 * A {
                        identical("2-D column half = 1-D at column", k, y[j], colh[j])?;
                        identical(
                            "2-D row half = 1-D at row",
                            k,
                            y[2 * A + j],
                            rowh[2 * A + j],
                        )?;
                    }
                }
                if row == 0 {
                    // Angle 0: the row half keeps its values (x·1 − y·0).
                    let (ra, rb) = match layout {
                        RopeLayout::Interleaved => (2 * A, 4 * A),
                        RopeLayout::HalfSplit => (A, 2 * A),
                    };
                    for j in ra..rb {
                        identical("2-D row 0: row half unchanged", k, y[j], x[j])?;
                        if layout == RopeLayout::HalfSplit {
                            identical(
                                "2-D row 0: row half unchanged",
                                k,
                                y[j + 2 * A],
                                x[j + 2 * A],
                            )?;
                        }
                    }
                }
            }
            // Q15, interleaved: the same composition, bit for bit.
            let mut x = [0 as Q15; D];
            rng.fill_q15(&mut x);
            let mut y = x;
            lib(
                "Rope2dQ15::rotate",
                qrope.rotate(RopeLayout::Interleaved, row, col, &mut y),
            )?;
            out.i16s("2-D Q15 rotated head", &y);
            let mut colh = x;
            lib(
                "Q15 1-D column",
                qaxis.rotate(RopeLayout::Interleaved, col, &mut colh[..2 * A]),
            )?;
            let mut rowh = x;
            lib(
                "Q15 1-D row",
                qaxis.rotate(RopeLayout::Interleaved, row, &mut rowh[2 * A..4 * A]),
            )?;
            for j in 0..2 * A {
                ensure("2-D Q15 column half = 1-D", k, y[j] == colh[j])?;
                ensure("2-D Q15 row half = 1-D", k, y[2 * A + j] == rowh[2 * A + j])?;
            }
        }
    }
    let mut h = [0f32; D];
    let r = rope.rotate(RopeLayout::Interleaved, 16, 0, &mut h);
    expect_err(
        out,
        "row past the axis",
        r,
        Error::PositionOutOfRange {
            position: 16,
            len: 16,
        },
    )?;
    let mut short = [0f32; 15];
    let r = rope.rotate(RopeLayout::HalfSplit, 1, 1, &mut short);
    expect_err(
        out,
        "head shorter than 4A",
        r,
        Error::RotaryDimTooLarge {
            rotary_dim: 16,
            head_dim: 15,
        },
    )
}
