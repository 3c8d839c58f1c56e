//! The attention block: cached decoding over a KV cache (grouped-query heads,
//! sliding window, an ALiBi score bias) and whole-sequence attention (causal and
//! bidirectional), each output within `2^-17` of an f64 model computed here with
//! `libm::exp`, and every value written for the host/target comparison.

use microformer::attn::{self, AttnBuffers, AttnConfig, KvCache, KvWrite, Mask, NoBias};
use microformer::pos::alibi::{self, AlibiRule};
use microformer::Error;
use microformer_testkit::XorShift32;

use super::check::{expect_err, lib, within};
use crate::out::{Failure, Out};

const LAYERS: usize = 2;
const POSITIONS: usize = 12;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = 8;
const Q_DIM: usize = HEADS * HEAD_DIM;
const KV_DIM: usize = KV_HEADS * HEAD_DIM;
/// Bound on `|out − f64 model|`: scores of 8 products of values in `[-1, 1)`, a
/// softmax over at most 12 keys, values in `[-1, 1)` — a few hundred f32 roundings
/// of quantities below 4, far below `2^-17`.
const BOUND: f64 = 1.0 / 131_072.0;

/// The f64 model of one query head's attention: keys `span` of the
/// `[pos][kv_dim]` rows, scores `q·k/√d + bias(j)`, softmax, weighted values.
fn model_head(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    kv_offset: usize,
    span: core::ops::RangeInclusive<usize>,
    bias: impl Fn(usize) -> f64,
    out: &mut [f64; HEAD_DIM],
) {
    let (start, end) = (*span.start(), *span.end());
    let mut scores = [0f64; POSITIONS];
    let mut max = f64::NEG_INFINITY;
    for j in start..=end {
        let k = &keys[j * KV_DIM + kv_offset..j * KV_DIM + kv_offset + HEAD_DIM];
        let dot: f64 = q.iter().zip(k).map(|(&a, &b)| a as f64 * b as f64).sum();
        let s = dot / libm::sqrt(HEAD_DIM as f64) + bias(j);
        scores[j] = s;
        max = max.max(s);
    }
    let mut sum = 0.0;
    for s in &mut scores[start..=end] {
        *s = libm::exp(*s - max);
        sum += *s;
    }
    *out = [0.0; HEAD_DIM];
    for j in start..=end {
        let v = &values[j * KV_DIM + kv_offset..j * KV_DIM + kv_offset + HEAD_DIM];
        for (o, &x) in out.iter_mut().zip(v) {
            *o += scores[j] / sum * x as f64;
        }
    }
}

fn check_heads(
    label: &'static str,
    got: &[f32],
    model: impl Fn(usize, &mut [f64; HEAD_DIM]),
) -> Result<(), Failure> {
    let mut want = [0f64; HEAD_DIM];
    for (h, head) in got.chunks_exact(HEAD_DIM).enumerate() {
        model(h, &mut want);
        for (d, (&g, &w)) in head.iter().zip(&want).enumerate() {
            within(label, h * HEAD_DIM + d, g as f64, w, BOUND)?;
        }
    }
    Ok(())
}

pub(super) fn attention(out: &mut Out<'_>) -> Result<(), Failure> {
    let mut rng = XorShift32(0x0a77_e171);
    let mut keys = [0f32; LAYERS * POSITIONS * KV_DIM];
    let mut values = [0f32; LAYERS * POSITIONS * KV_DIM];
    let mut k_rows = [0f32; LAYERS * POSITIONS * KV_DIM];
    let mut v_rows = [0f32; LAYERS * POSITIONS * KV_DIM];
    rng.fill_f32(&mut k_rows);
    rng.fill_f32(&mut v_rows);
    let mut q = [0f32; Q_DIM];
    let mut att = [0f32; POSITIONS];
    let mut o = [0f32; Q_DIM];
    let gqa = lib(
        "AttnConfig::new",
        AttnConfig::new(HEADS, KV_HEADS, HEAD_DIM),
    )?;
    let slopes = {
        let mut m = [0f32; HEADS];
        lib(
            "alibi::slopes",
            alibi::slopes(AlibiRule::Bloom, HEADS, &mut m),
        )?;
        m
    };
    {
        let mut cache = lib(
            "KvCache::new",
            KvCache::new(&mut keys, &mut values, LAYERS, POSITIONS, KV_DIM),
        )?;
        for layer in 0..LAYERS {
            let rows = layer * POSITIONS * KV_DIM;
            for pos in 0..POSITIONS {
                let at = rows + pos * KV_DIM;
                lib(
                    "KvCache::store",
                    cache.store(
                        layer,
                        pos,
                        &k_rows[at..at + KV_DIM],
                        &v_rows[at..at + KV_DIM],
                    ),
                )?;
                rng.fill_f32(&mut q);
                let k = &k_rows[rows..rows + POSITIONS * KV_DIM];
                let v = &v_rows[rows..rows + POSITIONS * KV_DIM];
                for window in [0usize, 5] {
                    let cfg = gqa.with_window(window);
                    let start = cfg.causal_start(pos);
                    let r = attn::attend_cached(
                        &cfg,
                        &cache,
                        layer,
                        pos,
                        &q,
                        &NoBias,
                        AttnBuffers {
                            att: &mut att,
                            out: &mut o,
                        },
                    );
                    lib("attend_cached", r)?;
                    out.f32s("attend_cached", &o);
                    check_heads("attend_cached vs f64", &o, |h, w| {
                        let qh = &q[h * HEAD_DIM..(h + 1) * HEAD_DIM];
                        let off = cfg.kv_head(h) * HEAD_DIM;
                        model_head(qh, k, v, off, start..=pos, |_| 0.0, w)
                    })?;
                }
                // ALiBi: −m_h·(i − j) on the scaled scores.
                let bias = |h: usize, i: usize, j: usize| -(slopes[h] * (i - j) as f32);
                let r = attn::attend_cached(
                    &gqa,
                    &cache,
                    layer,
                    pos,
                    &q,
                    &bias,
                    AttnBuffers {
                        att: &mut att,
                        out: &mut o,
                    },
                );
                lib("attend_cached + ALiBi", r)?;
                out.f32s("attend_cached + ALiBi", &o);
                check_heads("attend_cached + ALiBi vs f64", &o, |h, w| {
                    let qh = &q[h * HEAD_DIM..(h + 1) * HEAD_DIM];
                    let off = gqa.kv_head(h) * HEAD_DIM;
                    let b = |j: usize| bias(h, pos, j) as f64;
                    model_head(qh, k, v, off, 0..=pos, b, w)
                })?;
            }
        }
        let r = attn::attend_cached(
            &gqa,
            &cache,
            0,
            POSITIONS,
            &q,
            &NoBias,
            AttnBuffers {
                att: &mut att,
                out: &mut o,
            },
        );
        expect_err(
            out,
            "attend_cached past the cache",
            r,
            Error::PositionOutOfRange {
                position: POSITIONS,
                len: POSITIONS,
            },
        )?;
        let r = attn::attend_cached(
            &gqa,
            &cache,
            0,
            3,
            &q,
            &NoBias,
            AttnBuffers {
                att: &mut att[..2],
                out: &mut o,
            },
        );
        expect_err(
            out,
            "attend_cached with a short score row",
            r,
            Error::BufferTooSmall { needed: 4, got: 2 },
        )?;
    }

    // A whole sequence of 6 positions of layer 0's rows: causal and bidirectional.
    const N: usize = 6;
    let mut qs = [0f32; N * Q_DIM];
    rng.fill_f32(&mut qs);
    let k = &k_rows[..N * KV_DIM];
    let v = &v_rows[..N * KV_DIM];
    let mut os = [0f32; N * Q_DIM];
    for (mask, window) in [
        (Mask::Causal, 0),
        (Mask::Bidirectional, 0),
        (Mask::Bidirectional, 2),
    ] {
        let cfg = gqa.with_window(window);
        let r = attn::attend_sequence(
            &cfg,
            mask,
            &qs,
            k,
            v,
            &NoBias,
            AttnBuffers {
                att: &mut att,
                out: &mut os,
            },
        );
        lib("attend_sequence", r)?;
        out.f32s("attend_sequence", &os);
        for i in 0..N {
            let start = cfg.causal_start(i);
            let end = match mask {
                Mask::Causal => i,
                Mask::Bidirectional if window == 0 => N - 1,
                Mask::Bidirectional => (i + window - 1).min(N - 1),
            };
            let oi = &os[i * Q_DIM..(i + 1) * Q_DIM];
            let qi = &qs[i * Q_DIM..(i + 1) * Q_DIM];
            check_heads("attend_sequence vs f64", oi, |h, w| {
                let qh = &qi[h * HEAD_DIM..(h + 1) * HEAD_DIM];
                model_head(qh, k, v, cfg.kv_head(h) * HEAD_DIM, start..=end, |_| 0.0, w)
            })?;
        }
    }

    // The softmax alone, as run.c's.
    let mut row = [0f32; POSITIONS];
    rng.fill_f32(&mut row);
    for x in &mut row {
        *x *= 8.0;
    }
    let mut probs = row;
    attn::softmax(&mut probs);
    out.f32s("softmax", &probs);
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let sum: f64 = row.iter().map(|&x| libm::exp(x as f64 - max)).sum();
    for (j, (&p, &x)) in probs.iter().zip(&row).enumerate() {
        within(
            "softmax vs f64",
            j,
            p as f64,
            libm::exp(x as f64 - max) / sum,
            BOUND,
        )?;
    }
    Ok(())
}
