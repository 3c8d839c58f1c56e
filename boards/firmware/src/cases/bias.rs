//! Biases added to the attention scores: ALiBi (slopes and bias rows, f32 and
//! fixed point) and T5 relative buckets (buckets, tables, learned biases).

use microformer::num::fixed::Q15;
use microformer::pos::alibi::{self, AlibiRule, FixedSlope};
use microformer::pos::t5::{self, T5BucketTable, T5Buckets, T5RelativeBias, T5RelativeBiasQ15};
use microformer::Error;
use microformer_testkit::XorShift32;

use super::check::{ensure, expect_err, lib, pow2, ulp_f32, within};
use crate::out::{Failure, Out};

const HEAD_COUNTS: [usize; 12] = [1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 32, 48];
const MPT_4: AlibiRule = AlibiRule::Mpt {
    alibi_bias_max: 4.0,
};

/// The exponent `e` of the exact slope `2^−e` of `head`, and the integer
/// power `k` the f32 computation raises its base to (BLOOM) or multiplies
/// its step by (MPT).
fn exponent(rule: AlibiRule, n: usize, h: usize) -> (f64, f64) {
    match rule {
        AlibiRule::Bloom => {
            // BLOOM: c = 2^floor(log2 n); heads past c interleave from 2c.
            let c = 1usize << (usize::BITS - 1 - n.leading_zeros());
            if h < c {
                (8.0 * (h + 1) as f64 / c as f64, (h + 1) as f64)
            } else {
                let k = (2 * (h - c) + 1) as f64;
                (4.0 * k / c as f64, k)
            }
        }
        AlibiRule::Mpt { alibi_bias_max } => {
            // MPT: n2 = next power of two, odd/even reorder when n != n2.
            let n2 = n.next_power_of_two();
            let k = if n2 == n {
                h + 1
            } else if h < n2 / 2 {
                2 * h + 2
            } else {
                2 * (h - n2 / 2) + 1
            };
            (k as f64 * alibi_bias_max / n2 as f64, k as f64)
        }
    }
}

pub(super) fn alibi_slopes(out: &mut Out<'_>) -> Result<(), Failure> {
    let mut m = [0f32; 48];
    for rule in [AlibiRule::Bloom, AlibiRule::MPT_DEFAULT, MPT_4] {
        for n in HEAD_COUNTS {
            lib("alibi::slopes", alibi::slopes(rule, n, &mut m[..n]))?;
            out.f32s("alibi slopes", &m[..n]);
            let mut q = [0u32; 48];
            lib("alibi::slopes_q32", alibi::slopes_q32(rule, n, &mut q[..n]))?;
            out.u32s("alibi slopes Q32", &q[..n]);
            for h in 0..n {
                let (e, k) = exponent(rule, n, h);
                let exact = libm::exp2(-e);
                // f32 as Hugging Face computes it: BLOOM raises an f32 base
                // (½ ulp) to the power k, MPT rounds a step, a product, 2^m and
                // its reciprocal: relative (k + 1)·2^-24, (2·ln2·m + 2)·2^-24.
                let rel = match rule {
                    AlibiRule::Bloom => (k + 1.0) * pow2(-24),
                    AlibiRule::Mpt { .. } => (2.0 * core::f64::consts::LN_2 * e + 2.0) * pow2(-24),
                } + pow2(-50);
                let idx = n * 64 + h;
                within("f32 slope vs exact", idx, m[h] as f64, exact, exact * rel)?;
                let one = lib("alibi::slope", alibi::slope(rule, n, h))?;
                ensure("slope(h) = slopes[h]", idx, one.to_bits() == m[h].to_bits())?;
                let f64_model = alibi::slope_f64(rule, n, h);
                within(
                    "slope_f64 vs exact",
                    idx,
                    f64_model,
                    exact,
                    exact * 4.0 * pow2(-52),
                )?;
                let q32 = q[h] as f64 / pow2(32);
                within(
                    "Q32 slope vs exact",
                    idx,
                    q32,
                    exact,
                    pow2(-33) + exact * 4.0 * pow2(-52),
                )?;
            }
        }
    }
    // Power-of-two head counts: BLOOM's slopes are exact powers of two.
    lib("slopes 8", alibi::slopes(AlibiRule::Bloom, 8, &mut m[..8]))?;
    for (h, &s) in m[..8].iter().enumerate() {
        ensure(
            "BLOOM 8 heads: slope 2^-(h+1)",
            h,
            s as f64 == pow2(-(h as i32) - 1),
        )?;
    }

    let r = alibi::slopes(AlibiRule::Bloom, 0, &mut m);
    expect_err(
        out,
        "zero heads",
        r,
        Error::InvalidHead { head: 0, heads: 0 },
    )?;
    let r = alibi::slope(AlibiRule::Bloom, 4, 4);
    expect_err(
        out,
        "head past the count",
        r,
        Error::InvalidHead { head: 4, heads: 4 },
    )?;
    let r = alibi::slopes(
        AlibiRule::Mpt {
            alibi_bias_max: -1.0,
        },
        4,
        &mut m,
    );
    expect_err(out, "negative alibi_bias_max", r, Error::InvalidParameter)?;
    let r = alibi::slopes(AlibiRule::Bloom, 8, &mut m[..4]);
    expect_err(
        out,
        "slopes buffer",
        r,
        Error::BufferTooSmall { needed: 8, got: 4 },
    )
}

pub(super) fn alibi_bias(out: &mut Out<'_>) -> Result<(), Failure> {
    const N: usize = 12;
    let mut m = [0f32; N];
    lib("slopes", alibi::slopes(AlibiRule::Bloom, N, &mut m))?;
    // f32 rows: −m·d with d exact, one rounding: ≤ ½ ulp of the bias.
    let mut row = [0f32; 41];
    for h in [0usize, 7, 11] {
        let s = m[h];
        lib("causal_bias_row", alibi::causal_bias_row(s, 40, &mut row))?;
        out.f32s("causal bias row", &row);
        for (j, &b) in row.iter().enumerate() {
            let exact = -(s as f64) * (40 - j) as f64;
            within(
                "causal bias (½ ulp)",
                h * 64 + j,
                b as f64,
                exact,
                ulp_f32(b) / 2.0,
            )?;
        }
        alibi::symmetric_bias_row(s, 5, &mut row[..12]);
        out.f32s("symmetric bias row", &row[..12]);
        for (j, &b) in row[..12].iter().enumerate() {
            let exact = -(s as f64) * (5usize.abs_diff(j)) as f64;
            within(
                "symmetric bias (½ ulp)",
                h * 64 + j,
                b as f64,
                exact,
                ulp_f32(b) / 2.0,
            )?;
        }
        alibi::key_position_bias_row(s, &mut row[..12]);
        out.f32s("key-position bias row", &row[..12]);
        for (j, &b) in row[..12].iter().enumerate() {
            within(
                "key-position bias (½ ulp)",
                h * 64 + j,
                b as f64,
                s as f64 * j as f64,
                ulp_f32(b) / 2.0,
            )?;
        }
    }
    let r = alibi::causal_bias_row(m[0], 5, &mut row[..5]);
    expect_err(
        out,
        "causal row shorter than query + 1",
        r,
        Error::BufferTooSmall { needed: 6, got: 5 },
    )?;

    // Fixed point: 64-bit slopes, i32 biases with f fractional bits,
    // −round(m·d·2^f): ≤ ½ LSB + d·2^(f−65) (+ the f64 model's few ulp),
    // i32::MIN once the exact value passes −2^31.
    let distances = (0..=65535usize).step_by(331).chain([65535]);
    for h in [0usize, 5, 11] {
        let fs = lib("FixedSlope::new", FixedSlope::new(AlibiRule::Bloom, N, h))?;
        out.u64("FixedSlope q64", fs.q64());
        out.u32("FixedSlope q32", fs.q32());
        let (e, _) = exponent(AlibiRule::Bloom, N, h);
        let exact = libm::exp2(-e);
        within(
            "FixedSlope vs exact",
            h,
            fs.to_f64(),
            exact,
            exact * 4.0 * pow2(-52),
        )?;
        for f in [8u32, 16, 24] {
            for d in distances.clone() {
                let b = lib("FixedSlope::bias", fs.bias(d, f))?;
                out.i32s("fixed bias", &[b]);
                let v = exact * d as f64 * pow2(f as i32);
                let bound = 0.5 + d as f64 * pow2(f as i32 - 65) + v * pow2(-49);
                let idx = (h * 32 + f as usize) * 65536 + d;
                if v > pow2(31) + bound {
                    ensure("fixed bias saturates at i32::MIN", idx, b == i32::MIN)?;
                } else if v < pow2(31) - 1.0 - bound {
                    within("fixed bias (LSB)", idx, b as f64, -v, bound)?;
                }
            }
        }
        let mut rows = [0i32; 41];
        lib("FixedSlope::causal_row", fs.causal_row(40, 16, &mut rows))?;
        out.i32s("fixed causal row", &rows);
        for (j, &b) in rows.iter().enumerate() {
            ensure(
                "causal_row[j] = bias(q − j)",
                j,
                Ok(b) == fs.bias(40 - j, 16),
            )?;
        }
        lib(
            "FixedSlope::symmetric_row",
            fs.symmetric_row(5, 16, &mut rows[..12]),
        )?;
        out.i32s("fixed symmetric row", &rows[..12]);
        lib(
            "FixedSlope::key_position_row",
            fs.key_position_row(16, &mut rows[..12]),
        )?;
        out.i32s("fixed key-position row", &rows[..12]);
        for (j, &b) in rows[..12].iter().enumerate() {
            ensure(
                "key_position_row[j] = −bias(j)",
                j,
                Ok(-b) == fs.bias(j, 16),
            )?;
        }
        // A bias from the stored 32-bit slope.
        let q = lib("slope_q32", alibi::slope_q32(AlibiRule::Bloom, N, h))?;
        let b = lib("from_q32 bias", FixedSlope::from_q32(q).bias(1000, 16))?;
        out.i32s("bias from a Q32 slope", &[b]);
        let v = q as f64 / pow2(32) * 1000.0 * pow2(16);
        within("bias from a Q32 slope (LSB)", h, b as f64, -v, 0.5)?;
        let r = fs.bias(1, 32);
        expect_err(out, "frac_bits > 31", r, Error::InvalidParameter)?;
    }
    let r = FixedSlope::from_f64(1.5);
    expect_err(out, "slope above 1", r, Error::InvalidParameter)
}

/// T5 (encoder), T5 (decoder), 18 buckets (a float32 boundary at d = 8),
/// a small causal one.
const T5_CONFIGS: [(bool, usize, usize); 4] = [
    (true, 32, 128),
    (false, 32, 128),
    (true, 18, 128),
    (false, 8, 20),
];
const T5_ENCODER: T5Buckets = T5Buckets::t5(true);
/// Built by the compiler.
static T5_CONST_TABLE: [u8; 257] = match T5_ENCODER.table::<257>() {
    Ok(t) => t,
    Err(_) => [0; 257],
};

pub(super) fn t5_buckets(out: &mut Out<'_>) -> Result<(), Failure> {
    let mut direct = [0u8; 601];
    let mut storage = [0u8; 257];
    for (bi, nb, md) in T5_CONFIGS {
        let cfg = lib("T5Buckets::new", T5Buckets::new(bi, nb, md))?;
        for (k, b) in direct.iter_mut().enumerate() {
            let r = k as i64 - 300;
            let v = t5::relative_position_bucket(r, bi, nb, md);
            ensure("bucket < num_buckets", k, v < nb)?;
            *b = v as u8;
        }
        out.u8s("T5 buckets -300..=300", &direct);
        let len = cfg.table_len();
        let table = lib(
            "T5BucketTable::new",
            T5BucketTable::new(cfg, &mut storage[..len]),
        )?;
        for (k, &b) in direct.iter().enumerate() {
            ensure(
                "table bucket = direct bucket",
                k,
                table.bucket(k as i64 - 300) == b as usize,
            )?;
        }
        for r in [i64::MIN, i64::MIN + 1, -1_000_000, 1_000_000, i64::MAX] {
            ensure(
                "table bucket = direct (far)",
                0,
                table.bucket(r) == cfg.bucket(r),
            )?;
            out.usize("T5 far bucket", cfg.bucket(r));
        }
        ensure(
            "bucket_of(q, k) = bucket(k − q)",
            0,
            table.bucket_of(10, 3) == cfg.bucket(-7),
        )?;
    }
    // Known values (Hugging Face's `_relative_position_bucket`).
    let dec = T5Buckets::t5(false);
    let enc = T5_ENCODER;
    for (label, got, want) in [
        (
            "decoder: keys after the query share bucket 0",
            dec.bucket(5),
            0,
        ),
        ("decoder: d = 15 exact", dec.bucket(-15), 15),
        ("decoder: d = 16 first log bucket", dec.bucket(-16), 16),
        ("decoder: d = 127 last bucket", dec.bucket(-127), 31),
        ("decoder: i64::MIN last bucket", dec.bucket(i64::MIN), 31),
        ("encoder: r = 0", enc.bucket(0), 0),
        ("encoder: r = 1 upper half", enc.bucket(1), 17),
        ("encoder: r = -1", enc.bucket(-1), 1),
        ("encoder: i64::MAX", enc.bucket(i64::MAX), 31),
    ] {
        ensure(label, want, got == want)?;
    }
    // float32 decides: ln 2 / ln 32 · 5 is exactly 1 in f32 (f64: 0.999…).
    let b18 = lib("18 buckets", T5Buckets::new(true, 18, 128))?;
    ensure(
        "18 buckets, d = 8: bucket 5 (float32 as Hugging Face)",
        8,
        b18.bucket(-8) == 5,
    )?;
    // The compile-time table equals the run-time one.
    lib("fill_table", enc.fill_table(&mut storage))?;
    out.u8s("T5 run-time table", &storage);
    for (k, (&a, &b)) in storage.iter().zip(&T5_CONST_TABLE).enumerate() {
        ensure("T5 compile-time table = run-time table", k, a == b)?;
    }
    let from = lib(
        "from_slice",
        T5BucketTable::from_slice(enc, &T5_CONST_TABLE),
    )?;
    ensure("const table bucket", 0, from.bucket(-7) == enc.bucket(-7))?;

    let r = T5Buckets::new(true, 31, 128);
    expect_err(
        out,
        "odd bucket count, bidirectional",
        r,
        Error::OddDimension { dim: 31 },
    )?;
    let r = T5Buckets::new(true, 0, 128);
    expect_err(out, "zero buckets", r, Error::ZeroDimension)?;
    let r = T5Buckets::new(false, 32, 16);
    expect_err(out, "max_distance <= max_exact", r, Error::InvalidParameter)?;
    let r = T5BucketTable::new(dec, &mut storage[..10]).map(|_| ());
    expect_err(
        out,
        "bucket table storage",
        r,
        Error::BufferTooSmall {
            needed: 129,
            got: 10,
        },
    )
}

pub(super) fn t5_bias(out: &mut Out<'_>) -> Result<(), Failure> {
    const NB: usize = 32;
    const H: usize = 4;
    const Q: usize = 200;
    let cfg = T5Buckets::t5(false);
    let mut storage = [0u8; 129];
    let table = lib("bucket table", T5BucketTable::new(cfg, &mut storage))?;
    let mut w = [0f32; NB * H];
    XorShift32(0xb1a5).fill_f32(&mut w);
    let bias = lib("T5RelativeBias::new", T5RelativeBias::new(&w, NB, H))?;
    let mut row = [0f32; Q + 1];
    for h in 0..H {
        lib("fill_row", bias.fill_row(&table, h, Q, &mut row))?;
        out.f32s("T5 bias row", &row);
        for (j, &b) in row.iter().enumerate() {
            let want = w[cfg.bucket(j as i64 - Q as i64) * H + h];
            ensure(
                "T5 bias = W[bucket(j − q)][h]",
                h * 1024 + j,
                b.to_bits() == want.to_bits(),
            )?;
        }
    }
    let r = bias.fill_row(&table, H, 0, &mut row);
    expect_err(
        out,
        "head past the count",
        r,
        Error::InvalidHead { head: H, heads: H },
    )?;
    let r = T5RelativeBias::new(&w[..NB * H - 1], NB, H).map(|_| ());
    expect_err(
        out,
        "bias table length",
        r,
        Error::LengthMismatch {
            expected: NB * H,
            got: NB * H - 1,
        },
    )?;

    // Q15 biases added to fixed-point scores with f fractional bits:
    // rescaled (rounded half away from zero below 15 bits), saturating.
    let mut wq = [0 as Q15; NB * H];
    XorShift32(0x0515).fill_q15(&mut wq);
    wq[0] = i16::MAX;
    wq[1] = i16::MIN;
    let qb = lib("T5RelativeBiasQ15::new", T5RelativeBiasQ15::new(&wq, NB, H))?;
    let mut scores = [0i32; Q + 1];
    let mut rng = XorShift32(12345);
    for f in [8u32, 15, 20, 30] {
        for h in [0usize, 1, 3] {
            for s in scores.iter_mut() {
                *s = rng.next_u32() as i32;
            }
            let before = scores;
            lib(
                "Q15 add_to_scores",
                qb.add_to_scores(&table, h, Q, f, &mut scores),
            )?;
            out.i32s("T5 Q15 scores", &scores);
            for (j, (&got, &s0)) in scores.iter().zip(&before).enumerate() {
                let wv = wq[cfg.bucket(j as i64 - Q as i64) * H + h] as f64;
                let add = libm::round(wv * pow2(f as i32 - 15));
                let want = (s0 as f64 + add).clamp(i32::MIN as f64, i32::MAX as f64);
                ensure(
                    "T5 Q15 score + rescaled bias",
                    (f as usize * 4 + h) * 1024 + j,
                    got as f64 == want,
                )?;
            }
        }
    }
    let r = qb.add_to_scores(&table, 0, 0, 31, &mut scores);
    expect_err(out, "frac_bits > 30", r, Error::InvalidParameter)
}
