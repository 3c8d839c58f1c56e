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
//! - Score bias ([`ScoreBias`]): any `Fn(head, query_pos, key_pos) -> f32`, added to
//!   the scaled score before the softmax: ALiBi (`-m_h·(i−j)`) and T5 relative
//!   buckets plug in here. [`NoBias`] compiles the hook away.
//!
//! The arithmetic is llama2.c's `run.c`, operation for operation: `score += q[i]·k[i]`
//! summed in order, `score /= sqrtf(head_size)`, softmax as `run.c`'s
//! (`max`, `expf(x − max)`, running sum, divide), then `out[i] += a·v[i]` in key
//! order. The same inputs give the same bits as `run.c`.
//!
//! ## The KV cache
//!
//! [`KvCache`] stores f32 keys and values laid out `[layer][position][kv_dim]` in
//! caller-provided slices (`kv_dim = n_kv_heads · head_dim`). Attention reads the
//! cache only through the [`KvRead`] trait — "dot a query head against the keys of
//! positions `start..start+n`" and "sum the value rows of those positions with
//! these weights" — and the model writes it only through [`KvWrite::store`].
//! An int8 cache (one f32 scale per row) therefore needs no redesign: a type
//! holding `[layer][position][kv_dim]` int8 rows plus `[layer][position]` scales
//! implements `store` by quantizing each row (`crate::num::q8::quantize` with
//! `group = kv_dim`), `scores` as `scale_j · Σ q·k_j` and `mix` as
//! `out += (a_j · scale_j) · v_j`; [`attend_cached`] is generic over the trait and
//! stays unchanged.
//!
//! Memory: the cache takes `2 · n_layers · positions · kv_dim` values; attention
//! needs one score row of `positions` f32 (heads are processed one after another).

use crate::num::kernels;
use crate::Error;

/// Head layout and score scaling of one attention block.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AttnConfig {
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    window: usize,
    divisor: f32,
}

impl AttnConfig {
    /// Heads and head dimension; scores divided by `sqrtf(head_dim)` (as `run.c`),
    /// no window.
    ///
    /// Errors: a zero count ([`Error::ZeroDimension`]); `n_kv_heads` not dividing
    /// `n_heads` ([`Error::InconsistentDimensions`]).
    pub fn new(n_heads: usize, n_kv_heads: usize, head_dim: usize) -> Result<Self, Error> {
        if n_heads == 0 || n_kv_heads == 0 || head_dim == 0 {
            return Err(Error::ZeroDimension);
        }
        if n_heads % n_kv_heads != 0 {
            return Err(Error::InconsistentDimensions);
        }
        Ok(AttnConfig {
            n_heads,
            n_kv_heads,
            head_dim,
            window: 0,
            divisor: libm::sqrtf(head_dim as f32),
        })
    }

    /// Attend only to the last `window` positions (`0`: the whole context).
    pub const fn with_window(mut self, window: usize) -> Self {
        self.window = window;
        self
    }

    /// Divides scores by `divisor` instead of `√head_dim` (`1.0`: unscaled, as T5).
    ///
    /// Errors: a divisor that is not finite and positive ([`Error::InvalidParameter`]).
    pub fn with_divisor(mut self, divisor: f32) -> Result<Self, Error> {
        if !(divisor.is_finite() && divisor > 0.0) {
            return Err(Error::InvalidParameter);
        }
        self.divisor = divisor;
        Ok(self)
    }

    /// Query heads.
    pub const fn n_heads(&self) -> usize {
        self.n_heads
    }

    /// Key/value heads.
    pub const fn n_kv_heads(&self) -> usize {
        self.n_kv_heads
    }

    /// Dimension of one head.
    pub const fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// Sliding window in positions (0: none).
    pub const fn window(&self) -> usize {
        self.window
    }

    /// The score divisor.
    pub const fn divisor(&self) -> f32 {
        self.divisor
    }

    /// Query width `n_heads · head_dim`.
    pub const fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Key/value width `n_kv_heads · head_dim`.
    pub const fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// The kv head that query head `head` reads.
    pub const fn kv_head(&self, head: usize) -> usize {
        head / (self.n_heads / self.n_kv_heads)
    }

    /// First key position a query at `pos` sees under a causal mask.
    pub const fn causal_start(&self, pos: usize) -> usize {
        if self.window == 0 {
            0
        } else {
            (pos + 1).saturating_sub(self.window)
        }
    }
}

/// A bias added to every scaled score before the softmax.
///
/// Implemented for every `Fn(head, query_pos, key_pos) -> f32` (positions are
/// absolute: a cached decoding step passes its own position and the key's).
pub trait ScoreBias {
    /// `false` only for [`NoBias`]: the hook is skipped entirely.
    const ENABLED: bool = true;

    /// The bias for query head `head`, query position `query`, key position `key`.
    fn bias(&self, head: usize, query: usize, key: usize) -> f32;
}

/// No score bias (the RoPE and learned-position models).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBias;

impl ScoreBias for NoBias {
    const ENABLED: bool = false;

    #[inline(always)]
    fn bias(&self, _head: usize, _query: usize, _key: usize) -> f32 {
        0.0
    }
}

impl<F: Fn(usize, usize, usize) -> f32> ScoreBias for F {
    #[inline(always)]
    fn bias(&self, head: usize, query: usize, key: usize) -> f32 {
        self(head, query, key)
    }
}

/// Read access to cached keys and values, `[layer][position][kv_dim]`.
pub trait KvRead {
    /// Width of one cached row (`n_kv_heads · head_dim`).
    fn kv_dim(&self) -> usize;

    /// Positions the cache holds per layer.
    fn positions(&self) -> usize;

    /// `out[i] = Σ_d q[d] · key(layer, start + i)[offset + d]`, summed in order of `d`.
    fn scores(
        &self,
        layer: usize,
        start: usize,
        offset: usize,
        q: &[f32],
        out: &mut [f32],
    ) -> Result<(), Error>;

    /// `out = Σ_i weights[i] · value(layer, start + i)[offset .. offset + out.len()]`,
    /// accumulated in order of `i` from zero.
    fn mix(
        &self,
        layer: usize,
        start: usize,
        offset: usize,
        weights: &[f32],
        out: &mut [f32],
    ) -> Result<(), Error>;
}

/// Write access to a KV cache.
pub trait KvWrite: KvRead {
    /// Stores the key and value rows (`kv_dim` each) of `layer` at `pos`.
    fn store(&mut self, layer: usize, pos: usize, key: &[f32], value: &[f32]) -> Result<(), Error>;
}

/// The `[layer][position][kv_dim]` geometry of a cache.
#[derive(Debug, Clone, Copy)]
struct Rows {
    layers: usize,
    positions: usize,
    kv_dim: usize,
}

impl Rows {
    /// Checks rows `start..start + n` of `layer`, columns `offset..offset + width`,
    /// and returns the flat index of `(layer, start)`.
    fn at(
        &self,
        layer: usize,
        start: usize,
        n: usize,
        offset: usize,
        width: usize,
    ) -> Result<usize, Error> {
        if layer >= self.layers {
            return Err(Error::PositionOutOfRange {
                position: layer,
                len: self.layers,
            });
        }
        let end = start.checked_add(n).ok_or(Error::InvalidParameter)?;
        if end > self.positions {
            return Err(Error::PositionOutOfRange {
                position: end - 1,
                len: self.positions,
            });
        }
        if offset.checked_add(width).is_none_or(|e| e > self.kv_dim) {
            return Err(Error::LengthMismatch {
                expected: self.kv_dim,
                got: offset.saturating_add(width),
            });
        }
        Ok((layer * self.positions + start) * self.kv_dim)
    }
}

/// The shared f32 kernels over rows `[n][kv_dim]` starting at `rows[offset..]`:
/// `out[i] = Σ_d q[d]·row_i[d]`, summed in order of `d` from `0.0`.
///
/// Head dimensions 8 and 16 take kernels of that width (the head vector is
/// held in registers and the sum written out, [`kernels::dot8`]); others the
/// generic loop. Both perform the same operations in the same order.
#[inline]
fn dot_rows(rows: &[f32], kv_dim: usize, q: &[f32], out: &mut [f32]) {
    if let Some(q) = q.first_chunk::<8>().filter(|_| q.len() == 8) {
        let q = *q;
        let mut rest = rows;
        for o in out.iter_mut() {
            let Some(k) = rest.first_chunk::<8>() else {
                return;
            };
            *o = kernels::dot8(0.0, &q, k);
            rest = rest.get(kv_dim..).unwrap_or(&[]);
        }
    } else if let Some((q0, q1)) = q.split_first_chunk::<8>().filter(|_| q.len() == 16) {
        let (q0, q1) = (*q0, q1.first_chunk::<8>().copied().unwrap_or_default());
        let mut rest = rows;
        for o in out.iter_mut() {
            let Some((k0, k1)) = rest.split_first_chunk::<8>() else {
                return;
            };
            let Some(k1) = k1.first_chunk::<8>() else {
                return;
            };
            *o = kernels::dot8(kernels::dot8(0.0, &q0, k0), &q1, k1);
            rest = rest.get(kv_dim..).unwrap_or(&[]);
        }
    } else {
        for (o, row) in out.iter_mut().zip(rows.chunks(kv_dim)) {
            let mut s = 0.0f32;
            for (&a, &b) in q.iter().zip(row) {
                s += a * b;
            }
            *o = s;
        }
    }
}

/// `out = Σ_i weights[i]·row_i`, accumulated in order of `i` from `0.0` (widths
/// 8 and 16 as [`dot_rows`]: the output is held in registers across the rows,
/// [`kernels::axpy8`]).
#[inline]
fn mix_rows(rows: &[f32], kv_dim: usize, weights: &[f32], out: &mut [f32]) {
    let n = out.len();
    if let Some(out) = out.first_chunk_mut::<8>().filter(|_| n == 8) {
        let mut acc = [0.0f32; 8];
        let mut rest = rows;
        for &a in weights {
            let Some(v) = rest.first_chunk::<8>() else {
                break;
            };
            kernels::axpy8(&mut acc, a, v);
            rest = rest.get(kv_dim..).unwrap_or(&[]);
        }
        *out = acc;
    } else if let Some(out) = out.first_chunk_mut::<16>().filter(|_| n == 16) {
        let (mut acc0, mut acc1) = ([0.0f32; 8], [0.0f32; 8]);
        let mut rest = rows;
        for &a in weights {
            let Some((v0, v1)) = rest.split_first_chunk::<8>() else {
                break;
            };
            let Some(v1) = v1.first_chunk::<8>() else {
                break;
            };
            kernels::axpy8(&mut acc0, a, v0);
            kernels::axpy8(&mut acc1, a, v1);
            rest = rest.get(kv_dim..).unwrap_or(&[]);
        }
        let (o0, o1) = out.split_at_mut(8);
        o0.copy_from_slice(&acc0);
        o1.copy_from_slice(&acc1);
    } else {
        out.fill(0.0);
        for (&a, row) in weights.iter().zip(rows.chunks(kv_dim)) {
            for (o, &v) in out.iter_mut().zip(row) {
                *o += a * v;
            }
        }
    }
}

/// An f32 KV cache in caller-provided storage, `[layer][position][kv_dim]`.
#[derive(Debug)]
pub struct KvCache<'c> {
    keys: &'c mut [f32],
    values: &'c mut [f32],
    rows: Rows,
}

impl<'c> KvCache<'c> {
    /// Values each of `keys` and `values` must hold.
    pub const fn elements(layers: usize, positions: usize, kv_dim: usize) -> usize {
        layers * positions * kv_dim
    }

    /// A cache over `keys` and `values`, each exactly
    /// [`KvCache::elements`]`(layers, positions, kv_dim)` long.
    pub fn new(
        keys: &'c mut [f32],
        values: &'c mut [f32],
        layers: usize,
        positions: usize,
        kv_dim: usize,
    ) -> Result<Self, Error> {
        if layers == 0 || positions == 0 || kv_dim == 0 {
            return Err(Error::ZeroDimension);
        }
        let n = layers
            .checked_mul(positions)
            .and_then(|x| x.checked_mul(kv_dim))
            .ok_or(Error::InvalidParameter)?;
        for got in [keys.len(), values.len()] {
            if got != n {
                return Err(Error::LengthMismatch { expected: n, got });
            }
        }
        Ok(KvCache {
            keys,
            values,
            rows: Rows {
                layers,
                positions,
                kv_dim,
            },
        })
    }

    /// Layers held.
    pub const fn layers(&self) -> usize {
        self.rows.layers
    }

    /// The cached key row of `layer` at `pos`.
    pub fn key(&self, layer: usize, pos: usize) -> Result<&[f32], Error> {
        let at = self.rows.at(layer, pos, 1, 0, self.rows.kv_dim)?;
        Ok(&self.keys[at..at + self.rows.kv_dim])
    }

    /// The cached value row of `layer` at `pos`.
    pub fn value(&self, layer: usize, pos: usize) -> Result<&[f32], Error> {
        let at = self.rows.at(layer, pos, 1, 0, self.rows.kv_dim)?;
        Ok(&self.values[at..at + self.rows.kv_dim])
    }
}

impl KvRead for KvCache<'_> {
    fn kv_dim(&self) -> usize {
        self.rows.kv_dim
    }

    fn positions(&self) -> usize {
        self.rows.positions
    }

    fn scores(
        &self,
        layer: usize,
        start: usize,
        offset: usize,
        q: &[f32],
        out: &mut [f32],
    ) -> Result<(), Error> {
        let at = self.rows.at(layer, start, out.len(), offset, q.len())?;
        let rows = &self.keys[at + offset..at + out.len() * self.rows.kv_dim];
        dot_rows(rows, self.rows.kv_dim, q, out);
        Ok(())
    }

    fn mix(
        &self,
        layer: usize,
        start: usize,
        offset: usize,
        weights: &[f32],
        out: &mut [f32],
    ) -> Result<(), Error> {
        let at = self
            .rows
            .at(layer, start, weights.len(), offset, out.len())?;
        let rows = &self.values[at + offset..at + weights.len() * self.rows.kv_dim];
        mix_rows(rows, self.rows.kv_dim, weights, out);
        Ok(())
    }
}

impl KvWrite for KvCache<'_> {
    fn store(&mut self, layer: usize, pos: usize, key: &[f32], value: &[f32]) -> Result<(), Error> {
        let at = self.rows.at(layer, pos, 1, 0, self.rows.kv_dim)?;
        for got in [key.len(), value.len()] {
            if got != self.rows.kv_dim {
                return Err(Error::LengthMismatch {
                    expected: self.rows.kv_dim,
                    got,
                });
            }
        }
        self.keys[at..at + self.rows.kv_dim].copy_from_slice(key);
        self.values[at..at + self.rows.kv_dim].copy_from_slice(value);
        Ok(())
    }
}

/// Keys and values of a whole sequence, `[position][kv_dim]` each (one layer:
/// pass layer 0), for [`attend_sequence`] or any caller that has them at hand.
#[derive(Debug, Clone, Copy)]
pub struct KvSlices<'s> {
    keys: &'s [f32],
    values: &'s [f32],
    rows: Rows,
}

impl<'s> KvSlices<'s> {
    /// Wraps `keys` and `values` of equal length, a multiple of `kv_dim`.
    pub fn new(keys: &'s [f32], values: &'s [f32], kv_dim: usize) -> Result<Self, Error> {
        if kv_dim == 0 {
            return Err(Error::ZeroDimension);
        }
        if keys.len() % kv_dim != 0 {
            return Err(Error::LengthMismatch {
                expected: keys.len().next_multiple_of(kv_dim),
                got: keys.len(),
            });
        }
        if values.len() != keys.len() {
            return Err(Error::LengthMismatch {
                expected: keys.len(),
                got: values.len(),
            });
        }
        Ok(KvSlices {
            keys,
            values,
            rows: Rows {
                layers: 1,
                positions: keys.len() / kv_dim,
                kv_dim,
            },
        })
    }
}

impl KvRead for KvSlices<'_> {
    fn kv_dim(&self) -> usize {
        self.rows.kv_dim
    }

    fn positions(&self) -> usize {
        self.rows.positions
    }

    fn scores(
        &self,
        layer: usize,
        start: usize,
        offset: usize,
        q: &[f32],
        out: &mut [f32],
    ) -> Result<(), Error> {
        let at = self.rows.at(layer, start, out.len(), offset, q.len())?;
        let rows = &self.keys[at + offset..at + out.len() * self.rows.kv_dim];
        dot_rows(rows, self.rows.kv_dim, q, out);
        Ok(())
    }

    fn mix(
        &self,
        layer: usize,
        start: usize,
        offset: usize,
        weights: &[f32],
        out: &mut [f32],
    ) -> Result<(), Error> {
        let at = self
            .rows
            .at(layer, start, weights.len(), offset, out.len())?;
        let rows = &self.values[at + offset..at + weights.len() * self.rows.kv_dim];
        mix_rows(rows, self.rows.kv_dim, weights, out);
        Ok(())
    }
}

/// Softmax in place, as `run.c`: subtract the maximum, `expf`, running sum,
/// divide. An empty slice is left alone.
///
/// `expf` is [`crate::num::exp::expf`], bit-identical to `libm::expf`.
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
    softmax_from_max(x, max_val);
}

/// [`softmax`] with the maximum already known.
#[inline]
fn softmax_from_max(x: &mut [f32], max_val: f32) {
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = crate::num::exp::expf(*v - max_val);
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// Attention of one query position over keys `start..=end` of `layer`, all heads.
#[allow(clippy::too_many_arguments)]
fn attend_range<C: KvRead + ?Sized, B: ScoreBias>(
    cfg: &AttnConfig,
    cache: &C,
    layer: usize,
    query_pos: usize,
    start: usize,
    end: usize,
    q: &[f32],
    bias: &B,
    att: &mut [f32],
    out: &mut [f32],
) -> Result<(), Error> {
    let hd = cfg.head_dim;
    let n = end + 1 - start;
    let got = att.len();
    let att = att
        .get_mut(..n)
        .ok_or(Error::BufferTooSmall { needed: n, got })?;
    for h in 0..cfg.n_heads {
        let qh = &q[h * hd..(h + 1) * hd];
        let offset = cfg.kv_head(h) * hd;
        cache.scores(layer, start, offset, qh, att)?;
        // Scale, bias and the maximum in one pass (run.c's softmax takes the
        // maximum of the same values in the same order).
        let mut max_val = f32::NEG_INFINITY;
        for (j, s) in att.iter_mut().enumerate() {
            *s /= cfg.divisor;
            if B::ENABLED {
                *s += bias.bias(h, query_pos, start + j);
            }
            if j == 0 || *s > max_val {
                max_val = *s;
            }
        }
        softmax_from_max(att, max_val);
        cache.mix(layer, start, offset, att, &mut out[h * hd..(h + 1) * hd])?;
    }
    Ok(())
}

fn check_len(expected: usize, got: usize) -> Result<(), Error> {
    if expected != got {
        return Err(Error::LengthMismatch { expected, got });
    }
    Ok(())
}

/// One causal decoding step: query `q` (`[n_heads][head_dim]`) at position `pos`
/// attends to the cached keys and values of `layer` at positions
/// `cfg.causal_start(pos)..=pos` (the step's own key and value must already be
/// stored). Writes `out` (`[n_heads][head_dim]`); `att` is scratch of at least
/// `pos + 1` values (or `window`).
#[allow(clippy::too_many_arguments)]
pub fn attend_cached<C: KvRead + ?Sized, B: ScoreBias>(
    cfg: &AttnConfig,
    cache: &C,
    layer: usize,
    pos: usize,
    q: &[f32],
    bias: &B,
    att: &mut [f32],
    out: &mut [f32],
) -> Result<(), Error> {
    check_len(cfg.q_dim(), q.len())?;
    check_len(cfg.q_dim(), out.len())?;
    check_len(cfg.kv_dim(), cache.kv_dim())?;
    if pos >= cache.positions() {
        return Err(Error::PositionOutOfRange {
            position: pos,
            len: cache.positions(),
        });
    }
    let start = cfg.causal_start(pos);
    attend_range(cfg, cache, layer, pos, start, pos, q, bias, att, out)
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
/// `[n][n_heads·head_dim]`, `k` and `v` are `[n][n_kv_heads·head_dim]`, `out` is
/// like `q`, `att` is scratch of at least `n` values. Positions are `0..n` (the
/// bias hook sees them).
#[allow(clippy::too_many_arguments)]
pub fn attend_sequence<B: ScoreBias>(
    cfg: &AttnConfig,
    mask: Mask,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: &B,
    att: &mut [f32],
    out: &mut [f32],
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
    check_len(n * qd, out.len())?;
    let kv = KvSlices::new(k, v, kvd)?;
    for (i, (qi, oi)) in q.chunks_exact(qd).zip(out.chunks_exact_mut(qd)).enumerate() {
        let start = cfg.causal_start(i);
        let end = match mask {
            Mask::Causal => i,
            Mask::Bidirectional if cfg.window == 0 => n - 1,
            Mask::Bidirectional => (i + cfg.window - 1).min(n - 1),
        };
        attend_range(cfg, &kv, 0, i, start, end, qi, bias, att, oi)?;
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
        assert!(c.scores(0, 1, 2, &[1.0; 3], &mut out[..1]).is_err());
        assert!(c.scores(0, 1, 0, &[1.0; 4], &mut out[..3]).is_err());
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
