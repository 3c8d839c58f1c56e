//! The attention block: scaled dot-product attention over cached keys and values.
//!
//! ```text
//! score(h, i, j) = (q_h(i) · k_{g(h)}(j)) / divisor + bias(h, i, j)     divisor = √head_dim by default
//! a(h, i, ·)     = softmax over the keys j that query i may see
//! out_h(i)       = Σ_j a(h, i, j) · v_{g(h)}(j)
//! ```
//!
//! - Heads: `n_heads` query heads share `n_kv_heads` key/value heads, query head
//!   `h` reading kv head `g(h) = h / (n_heads / n_kv_heads)` — multi-head
//!   (`n_kv_heads == n_heads`), grouped-query (GQA) and multi-query (MQA,
//!   `n_kv_heads == 1`) attention, as llama2.c's `kv_mul`.
//! - Masks: causal decoding over a KV cache ([`attend_cached`], one query at a
//!   time, keys `0..=pos`), or a whole sequence at once ([`attend_sequence`]:
//!   [`Mask::Causal`] or [`Mask::Bidirectional`] for encoders).
//! - Sliding window ([`AttnConfig::with_window`]): a query at position `i` sees
//!   only the keys `j` with `i − j < window` (causal: the last `window` positions,
//!   itself included, as Mistral's `sliding_window`); bidirectional: `|i − j| < window`.
//! - Score bias ([`ScoreBias`], defined with the position hooks in
//!   [`crate::pos`]): added to the scaled score before the softmax —
//!   [`crate::pos::alibi::AlibiBias`], [`crate::pos::t5::T5Bias`], or any
//!   `Fn(head, query_pos, key_pos) -> f32`. [`NoBias`] compiles the hook away.
//!
//! The algorithm is llama2.c's `run.c`, step for step: `score += q[i]·k[i]`
//! summed in order, the score scaled, softmax as `run.c`'s (`max`,
//! `expf(x − max)`, running sum, normalise), then `out[i] += a·v[i]` in key
//! order. Three arithmetic details differ, for speed on a Cortex-M4F: the
//! scaling multiplies by `scale = 1/√head_dim` (computed once in f32) where
//! `run.c` divides by `√head_dim`; the normalisation multiplies by `1/sum`
//! where `run.c` divides by `sum`; and `expf` is
//! [`crate::num::exp::fast_expf`] (below 1.5 ulp of `e^x`, not `libm`'s or
//! glibc's). `convert/tests/llama2c.rs` transcribes `run.c` with these three
//! details and checks the logits bit for bit, and measures the distance to
//! `run.c`'s literal arithmetic (the README gives it; the greedy ids are
//! llama2.c's).
//!
//! With the `exact` feature ([`crate::num::exp::EXACT`]) the three details are
//! `run.c`'s own: the cache's scores are taken with scale `1.0` (`s·1.0` is
//! exact) and each divided by the divisor (`score /= sqrtf(head_dim)`; the row's
//! maximum is the divided maximum, division by a positive number being monotonic
//! in round-to-nearest), each `e` is divided by the sum (`x[i] /= sum`) and the
//! values are mixed with the weight itself (norm `1.0`), and `expf` is glibc's
//! ([`crate::num::exp_glibc::expf`]).
//!
//! Query heads that share a kv head (GQA, `n_heads / n_kv_heads` even) are
//! computed two at a time ([`KvRead::scores2`], [`KvRead::mix2`]): each key and
//! value row is read once for both heads; the operations per head are the same.
//!
//! ## The KV cache
//!
//! [`KvCache`] stores f32 keys and values laid out `[layer][position][kv_dim]` in
//! caller-provided slices (`kv_dim = n_kv_heads · head_dim`). Attention reads the
//! cache only through the [`KvRead`] trait — "dot a query head against the keys of
//! positions `start..start+n`" and "sum the value rows of those positions with
//! these weights" — and the model writes it only through [`KvWrite::store`].
//! [`KvCacheQ8`] is the int8 cache built on the same two traits: `[layer][position][kv_dim]`
//! int8 rows plus one f32 scale per row, `store` quantizing each row
//! (`crate::num::q8::quantize` with `group = kv_dim`), `scores` as
//! `scale_j · Σ q·k_j` and `mix` as `out += (a_j · scale_j) · v_j`, at about a
//! quarter of the f32 cache's bytes; [`attend_cached`] is generic over the trait.
//!
//! Memory: the cache takes `2 · n_layers · positions · kv_dim` values; attention
//! needs one score row of `positions` f32, two when heads go in pairs (an `att`
//! scratch shorter than two rows falls back to one head at a time).

use crate::num::exp::EXACT;
pub use crate::pos::{NoBias, ScoreBias};
use crate::Error;

mod cache;
mod config;
mod kv_q8;
use cache::check_len;
pub use cache::{KvCache, KvRead, KvSlices, KvWrite};
pub use config::AttnConfig;
pub use kv_q8::KvCacheQ8;

/// Softmax in place, as `run.c`'s: subtract the maximum, `expf`, running sum,
/// then each value times `1/sum` (where `run.c` divides by the sum). An empty
/// slice is left alone.
///
/// `expf` is [`crate::num::exp::fast_expf`] (below 1.5 ulp of `e^x`, not
/// bit-identical to `libm::expf`). With the `exact` feature: glibc's `expf` and
/// `x[i] /= sum`, `run.c`'s literal arithmetic.
pub fn softmax(x: &mut [f32]) {
    let Some(&first) = x.first() else {
        return;
    };
    let mut max_val = first;
    for &v in x.iter() {
        if v > max_val {
            max_val = v;
        }
    }
    let inv = exp_sum(x, max_val);
    if EXACT {
        // exp_sum divided by the sum already.
        return;
    }
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// `x[i] = expf(x[i] − max_val)` and the reciprocal `1/Σ x[i]` of their running sum.
///
/// With the `exact` feature: glibc's `expf`, then `x[i] /= sum` (`run.c`'s
/// normalisation), and the returned norm is `1.0` (the mix's `a·1.0` is exact).
#[inline]
fn exp_sum(x: &mut [f32], max_val: f32) -> f32 {
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        let e = crate::num::exp::step_expf(*v - max_val);
        *v = e;
        sum += e;
    }
    if EXACT {
        for v in x.iter_mut() {
            *v /= sum;
        }
        return 1.0;
    }
    1.0 / sum
}

/// [`exp_sum`] of two rows in one loop (each row's sum in its own order).
#[inline]
fn exp_sum2(a0: &mut [f32], a1: &mut [f32], m: [f32; 2]) -> [f32; 2] {
    if EXACT || a0.len() != a1.len() {
        return [exp_sum(a0, m[0]), exp_sum(a1, m[1])];
    }
    let (mut s0, mut s1) = (0.0f32, 0.0f32);
    for (v0, v1) in a0.iter_mut().zip(a1.iter_mut()) {
        let e0 = crate::num::exp::fast_expf(*v0 - m[0]);
        let e1 = crate::num::exp::fast_expf(*v1 - m[1]);
        *v0 = e0;
        *v1 = e1;
        s0 += e0;
        s1 += e1;
    }
    [1.0 / s0, 1.0 / s1]
}

/// `run.c`'s `score /= divisor` over a row of unscaled scores (the `exact`
/// feature), returning the row's maximum (the first, `>` from `−∞`, as the
/// cache's `scores` finds it).
#[inline]
fn divide_row(row: &mut [f32], divisor: f32) -> f32 {
    let mut m = f32::NEG_INFINITY;
    for v in row.iter_mut() {
        *v /= divisor;
        if *v > m {
            m = *v;
        }
    }
    m
}

/// The output heads and the score scratch of one attention call.
#[derive(Debug)]
pub struct AttnBuffers<'b> {
    /// Score scratch: at least one row of the keys attended to (two for heads
    /// computed in pairs; a single row falls back to one head at a time).
    pub att: &'b mut [f32],
    /// The output, `[n_heads][head_dim]`.
    pub out: &'b mut [f32],
}

/// The keys `start..=end` of `layer` one query at `query_pos` attends to.
#[derive(Debug, Clone, Copy)]
struct Span {
    layer: usize,
    query_pos: usize,
    start: usize,
    end: usize,
}

/// Attention of one query position over the keys of `span`, all heads.
///
/// Per head, `run.c`'s steps: `score = (q·k)·scale` (`scale = 1/divisor`
/// precomputed, where `run.c` divides by `√head_dim`), plus the bias, the
/// maximum, `e = expf(score − max)` and their sum in key order, then
/// `out = Σ (e·(1/sum))·v` in key order. When query heads share a kv head in
/// pairs (`n_heads / n_kv_heads` even) and `att` holds two rows, the two heads
/// of a pair are computed together, each key and value row read once.
///
/// With the `exact` feature, `run.c`'s literal steps: `score = (q·k)·1.0`, then
/// `score /= divisor` ([`divide_row`]), the bias, `e = expf(score − max)`
/// (glibc's), `e /= sum`, and `out = Σ (e·1.0)·v`.
fn attend_range<C: KvRead + ?Sized, B: ScoreBias>(
    cfg: &AttnConfig,
    cache: &C,
    span: Span,
    q: &[f32],
    bias: &B,
    bufs: AttnBuffers<'_>,
) -> Result<(), Error> {
    let Span {
        layer,
        query_pos,
        start,
        end,
    } = span;
    let AttnBuffers { att, out } = bufs;
    let hd = cfg.head_dim();
    let n = end + 1 - start;
    let got = att.len();
    let pairs = cfg.group() % 2 == 0 && got >= 2 * n;
    let att = att
        .get_mut(..if pairs { 2 * n } else { n })
        .ok_or(Error::BufferTooSmall { needed: n, got })?;
    // Exact mode: unscaled scores, divided below as `run.c` divides them.
    let scale = if EXACT { 1.0 } else { cfg.scale() };
    // A zero head is refused before any chunking (a chunk size the compiler
    // sees non-zero: no panic path in `chunks_exact`).
    if hd == 0 {
        return Err(Error::ZeroDimension);
    }
    if hd > usize::MAX / 2 {
        return Err(Error::InconsistentDimensions);
    }
    let hd2 = 2 * hd;
    if pairs {
        let (a0, a1) = att
            .split_at_mut_checked(n)
            .ok_or(Error::InconsistentDimensions)?;
        for ((h, qp), op) in (0..cfg.n_heads())
            .step_by(2)
            .zip(q.chunks_exact(hd2))
            .zip(out.chunks_exact_mut(hd2))
        {
            let offset = cfg.kv_head(h) * hd;
            let (q0, q1) = qp.split_at(hd);
            let (o0, o1) = op.split_at_mut(hd);
            let mut m =
                cache.scores2(layer, start, offset, [q0, q1], scale, [&mut *a0, &mut *a1])?;
            if EXACT {
                m = [divide_row(a0, cfg.divisor()), divide_row(a1, cfg.divisor())];
            }
            if B::ENABLED {
                m = [
                    bias.add_to_row(h, query_pos, start, a0),
                    bias.add_to_row(h + 1, query_pos, start, a1),
                ];
            }
            let norm = exp_sum2(a0, a1, m);
            cache.mix2(layer, start, offset, [&*a0, &*a1], norm, [o0, o1])?;
        }
        return Ok(());
    }
    let mut outs = out.chunks_exact_mut(hd);
    for (h, (qh, oh)) in q.chunks_exact(hd).zip(outs.by_ref()).enumerate() {
        let offset = cfg.kv_head(h) * hd;
        let mut m = cache.scores(layer, start, offset, qh, scale, att)?;
        if EXACT {
            m = divide_row(att, cfg.divisor());
        }
        if B::ENABLED {
            m = bias.add_to_row(h, query_pos, start, att);
        }
        let norm = exp_sum(att, m);
        cache.mix(layer, start, offset, att, norm, oh)?;
    }
    Ok(())
}

/// One causal decoding step: query `q` (`[n_heads][head_dim]`) at position `pos`
/// attends to the cached keys and values of `layer` at positions
/// `cfg.causal_start(pos)..=pos` (the step's own key and value must already be
/// stored). Writes `bufs.out` (`[n_heads][head_dim]`); `bufs.att` is scratch of
/// at least `pos + 1` values (or `window`).
pub fn attend_cached<C: KvRead + ?Sized, B: ScoreBias>(
    cfg: &AttnConfig,
    cache: &C,
    layer: usize,
    pos: usize,
    q: &[f32],
    bias: &B,
    bufs: AttnBuffers<'_>,
) -> Result<(), Error> {
    check_len(cfg.q_dim(), q.len())?;
    check_len(cfg.q_dim(), bufs.out.len())?;
    check_len(cfg.kv_dim(), cache.kv_dim())?;
    if pos >= cache.positions() {
        return Err(Error::PositionOutOfRange {
            position: pos,
            len: cache.positions(),
        });
    }
    let span = Span {
        layer,
        query_pos: pos,
        start: cfg.causal_start(pos),
        end: pos,
    };
    attend_range(cfg, cache, span, q, bias, bufs)
}

/// Which keys a query may see in [`attend_sequence`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Mask {
    /// Keys at or before the query (decoders).
    Causal,
    /// Every key (encoders).
    Bidirectional,
}

/// Attention over a whole sequence of `n` positions at once: `q` is
/// `[n][n_heads·head_dim]`, `k` and `v` are `[n][n_kv_heads·head_dim]`,
/// `bufs.out` is like `q`, `bufs.att` is scratch of at least `n` values.
/// Positions are `0..n` (the bias hook sees them).
pub fn attend_sequence<B: ScoreBias>(
    cfg: &AttnConfig,
    mask: Mask,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: &B,
    bufs: AttnBuffers<'_>,
) -> Result<(), Error> {
    let qd = cfg.q_dim();
    let kvd = cfg.kv_dim();
    if q.len() % qd != 0 {
        return Err(Error::LengthMismatch {
            expected: q.len().next_multiple_of(qd),
            got: q.len(),
        });
    }
    let n = q.len() / qd;
    check_len(n * kvd, k.len())?;
    let AttnBuffers { att, out } = bufs;
    check_len(n * qd, out.len())?;
    let kv = KvSlices::new(k, v, kvd)?;
    for (i, (qi, oi)) in q.chunks_exact(qd).zip(out.chunks_exact_mut(qd)).enumerate() {
        let end = match mask {
            Mask::Causal => i,
            Mask::Bidirectional if cfg.window() == 0 => n - 1,
            Mask::Bidirectional => (i + cfg.window() - 1).min(n - 1),
        };
        let span = Span {
            layer: 0,
            query_pos: i,
            start: cfg.causal_start(i),
            end,
        };
        let bufs = AttnBuffers {
            att: &mut *att,
            out: oi,
        };
        attend_range(cfg, &kv, span, qi, bias, bufs)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation_and_head_mapping() {
        assert_eq!(AttnConfig::new(0, 1, 4), Err(Error::ZeroDimension));
        assert_eq!(AttnConfig::new(6, 4, 4), Err(Error::InconsistentDimensions));
        let c = AttnConfig::new(8, 2, 4).unwrap();
        assert_eq!((c.q_dim(), c.kv_dim()), (32, 8));
        let map: Vec<usize> = (0..8).map(|h| c.kv_head(h)).collect();
        assert_eq!(map, [0, 0, 0, 0, 1, 1, 1, 1]);
        assert_eq!(c.divisor(), 2.0);
        assert_eq!(c.with_divisor(0.0), Err(Error::InvalidParameter));
        let w = c.with_window(3);
        assert_eq!((w.causal_start(1), w.causal_start(5)), (0, 3));
    }

    #[test]
    fn cache_bounds_are_typed_errors() {
        let mut k = [0.0f32; 2 * 3 * 4];
        let mut v = [0.0f32; 2 * 3 * 4];
        let mut c = KvCache::new(&mut k, &mut v, 2, 3, 4).unwrap();
        assert!(c.store(1, 2, &[1.0; 4], &[2.0; 4]).is_ok());
        assert_eq!(c.key(1, 2).unwrap(), &[1.0; 4]);
        assert_eq!(c.value(1, 2).unwrap(), &[2.0; 4]);
        assert!(matches!(
            c.store(2, 0, &[0.0; 4], &[0.0; 4]),
            Err(Error::PositionOutOfRange { .. })
        ));
        assert!(matches!(
            c.store(0, 3, &[0.0; 4], &[0.0; 4]),
            Err(Error::PositionOutOfRange { .. })
        ));
        assert!(matches!(
            c.store(0, 0, &[0.0; 3], &[0.0; 4]),
            Err(Error::LengthMismatch { .. })
        ));
        let mut out = [0.0; 3];
        assert!(c.scores(0, 1, 2, &[1.0; 3], 1.0, &mut out[..1]).is_err());
        assert!(c.scores(0, 1, 0, &[1.0; 4], 1.0, &mut out[..3]).is_err());
    }

    #[test]
    fn softmax_as_run_c() {
        let mut x = [1.0f32, 2.0, 3.0];
        softmax(&mut x);
        let e = [(-2.0f32).exp(), (-1.0f32).exp(), 1.0];
        let s = e[0] + e[1] + e[2];
        for (a, b) in x.iter().zip(e) {
            assert!((a - b / s).abs() < 1e-7);
        }
        softmax(&mut []);
    }
}
