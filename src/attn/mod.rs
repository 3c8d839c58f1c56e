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
//! glibc's). `tests/llama2c.rs` transcribes `run.c` with these three details
//! and checks the logits bit for bit, and measures the distance to `run.c`'s
//! literal arithmetic (5.4e-5 at most on stories260K's reference stream; the
//! greedy ids are llama2.c's).
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

use crate::num::kernels;
pub use crate::pos::{NoBias, ScoreBias};
use crate::Error;

mod kv_q8;
pub use kv_q8::KvCacheQ8;

/// Head layout and score scaling of one attention block.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AttnConfig {
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    window: usize,
    divisor: f32,
    scale: f32,
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
            scale: 1.0 / libm::sqrtf(head_dim as f32),
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
        self.scale = 1.0 / divisor;
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

    /// The score scale `1/divisor` (f32), by which scores are multiplied.
    pub const fn scale(&self) -> f32 {
        self.scale
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

/// Read access to cached keys and values, `[layer][position][kv_dim]`.
pub trait KvRead {
    /// Width of one cached row (`n_kv_heads · head_dim`).
    fn kv_dim(&self) -> usize;

    /// Positions the cache holds per layer.
    fn positions(&self) -> usize;

    /// `out[i] = scale · Σ_d q[d] · key(layer, start + i)[offset + d]`, summed in
    /// order of `d`; returns the largest `out[i]` (`−∞` if `out` is empty).
    fn scores(
        &self,
        layer: usize,
        start: usize,
        offset: usize,
        q: &[f32],
        scale: f32,
        out: &mut [f32],
    ) -> Result<f32, Error>;

    /// [`KvRead::scores`] of two query heads `q[0]`, `q[1]` against the same keys
    /// (grouped-query attention: the rows may be read once for both).
    fn scores2(
        &self,
        layer: usize,
        start: usize,
        offset: usize,
        q: [&[f32]; 2],
        scale: f32,
        out: [&mut [f32]; 2],
    ) -> Result<[f32; 2], Error>;

    /// `out = Σ_i (weights[i] · norm) · value(layer, start + i)[offset .. offset + out.len()]`,
    /// accumulated in order of `i` from zero (`norm`: the softmax's `1/Σ`).
    fn mix(
        &self,
        layer: usize,
        start: usize,
        offset: usize,
        weights: &[f32],
        norm: f32,
        out: &mut [f32],
    ) -> Result<(), Error>;

    /// [`KvRead::mix`] of two heads' weights over the same values.
    fn mix2(
        &self,
        layer: usize,
        start: usize,
        offset: usize,
        weights: [&[f32]; 2],
        norm: [f32; 2],
        out: [&mut [f32]; 2],
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

    /// The whole rows `start..start + n` of `layer` in `data` (columns
    /// `offset..offset + width` checked as [`Rows::at`]).
    fn slice<'d>(
        &self,
        data: &'d [f32],
        layer: usize,
        start: usize,
        n: usize,
        offset: usize,
        width: usize,
    ) -> Result<&'d [f32], Error> {
        let at = self.at(layer, start, n, offset, width)?;
        Ok(data.get(at..at + n * self.kv_dim).unwrap_or(&[]))
    }
}

/// Rows `[n][kv_dim]` as blocks of eight values (`kv_dim / 8` per row), if
/// `kv_dim`, `offset` and `width` are multiples of 8: the fast kernels'
/// layout. Returns the blocks, the blocks per row and the block offset.
#[inline(always)]
fn blocks8(
    rows: &[f32],
    kv_dim: usize,
    offset: usize,
    width: usize,
) -> Option<(&[[f32; 8]], usize, usize)> {
    if kv_dim % 8 != 0 || offset % 8 != 0 || width % 8 != 0 || kv_dim == 0 {
        return None;
    }
    let b: &[[f32; 8]] = bytemuck::try_cast_slice(rows).ok()?;
    Some((b, kv_dim / 8, offset / 8))
}

/// `out[i] = scale·(q·row_i[offset..])` over rows `[n][kv_dim]`, the dot product
/// summed in order of `d`; returns the largest `out[i]` (`−∞` for none).
///
/// Head dimensions 8 and 16 take kernels of that width (the head vector is
/// held in registers and the sum written out, [`kernels::dot8_first`]); others the
/// generic loop. Both perform the same operations in the same order.
#[inline]
fn dot_rows(
    rows: &[f32],
    kv_dim: usize,
    offset: usize,
    q: &[f32],
    scale: f32,
    out: &mut [f32],
) -> f32 {
    let mut m = f32::NEG_INFINITY;
    match (blocks8(rows, kv_dim, offset, q.len()), q.len()) {
        (Some((b, s, o)), 8) => {
            let q = q.first_chunk::<8>().copied().unwrap_or_default();
            for (dst, row) in out.iter_mut().zip(b.chunks_exact(s)) {
                let Some(k) = row.get(o) else { break };
                let v = kernels::dot8_first(&q, k) * scale;
                *dst = v;
                if v > m {
                    m = v;
                }
            }
        }
        (Some((b, s, o)), 16) => {
            let (q0, q1) = q.split_at(8);
            let q0 = q0.first_chunk::<8>().copied().unwrap_or_default();
            let q1 = q1.first_chunk::<8>().copied().unwrap_or_default();
            for (dst, row) in out.iter_mut().zip(b.chunks_exact(s)) {
                let Some([k0, k1]) = row.get(o..o + 2).and_then(|r| r.first_chunk::<2>()) else {
                    break;
                };
                let v = kernels::dot8(kernels::dot8_first(&q0, k0), &q1, k1) * scale;
                *dst = v;
                if v > m {
                    m = v;
                }
            }
        }
        _ => {
            for (dst, row) in out.iter_mut().zip(rows.chunks_exact(kv_dim)) {
                let mut v = 0.0f32;
                for (&a, &b) in q.iter().zip(row.get(offset..).unwrap_or(&[])) {
                    v += a * b;
                }
                let v = v * scale;
                *dst = v;
                if v > m {
                    m = v;
                }
            }
        }
    }
    m
}

/// [`dot_rows`] for two query heads over the same rows: head dimension 8 reads
/// each key row once for both (grouped-query attention), others run
/// [`dot_rows`] twice.
#[inline]
fn dot_rows2(
    rows: &[f32],
    kv_dim: usize,
    offset: usize,
    q: [&[f32]; 2],
    scale: f32,
    out: [&mut [f32]; 2],
) -> [f32; 2] {
    let [o0, o1] = out;
    match (
        blocks8(rows, kv_dim, offset, 8),
        q[0].first_chunk::<8>(),
        q[1].first_chunk::<8>(),
    ) {
        (Some((b, s, o)), Some(q0), Some(q1)) if q[0].len() == 8 && q[1].len() == 8 => {
            let (q0, q1) = (*q0, *q1);
            let (mut m0, mut m1) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
            for ((d0, d1), row) in o0.iter_mut().zip(o1.iter_mut()).zip(b.chunks_exact(s)) {
                let Some(k) = row.get(o) else { break };
                let s0 = kernels::dot8_first(&q0, k) * scale;
                let s1 = kernels::dot8_first(&q1, k) * scale;
                *d0 = s0;
                *d1 = s1;
                if s0 > m0 {
                    m0 = s0;
                }
                if s1 > m1 {
                    m1 = s1;
                }
            }
            [m0, m1]
        }
        _ => [
            dot_rows(rows, kv_dim, offset, q[0], scale, o0),
            dot_rows(rows, kv_dim, offset, q[1], scale, o1),
        ],
    }
}

/// `out = Σ_i (weights[i]·norm)·row_i[offset..]`, accumulated in order of `i`
/// from `0.0` (widths 8 and 16 as [`dot_rows`]: the output is held in registers
/// across the rows, [`kernels::axpy8`]).
#[inline]
fn mix_rows(
    rows: &[f32],
    kv_dim: usize,
    offset: usize,
    weights: &[f32],
    norm: f32,
    out: &mut [f32],
) {
    let n = out.len();
    let blocks = blocks8(rows, kv_dim, offset, n);
    if let (Some((b, s, o)), Some(out), 8) = (blocks, out.first_chunk_mut::<8>(), n) {
        let mut acc = [0.0f32; 8];
        for (&a, row) in weights.iter().zip(b.chunks_exact(s)) {
            let Some(v) = row.get(o) else { break };
            kernels::axpy8(&mut acc, a * norm, v);
        }
        *out = acc;
    } else if let (Some((b, s, o)), Some(out), 16) = (blocks, out.first_chunk_mut::<16>(), n) {
        let (mut acc0, mut acc1) = ([0.0f32; 8], [0.0f32; 8]);
        for (&a, row) in weights.iter().zip(b.chunks_exact(s)) {
            let Some([v0, v1]) = row.get(o..o + 2).and_then(|r| r.first_chunk::<2>()) else {
                break;
            };
            let a = a * norm;
            kernels::axpy8(&mut acc0, a, v0);
            kernels::axpy8(&mut acc1, a, v1);
        }
        let (o0, o1) = out.split_at_mut(8);
        o0.copy_from_slice(&acc0);
        o1.copy_from_slice(&acc1);
    } else {
        out.fill(0.0);
        for (&a, row) in weights.iter().zip(rows.chunks_exact(kv_dim)) {
            let a = a * norm;
            for (o, &v) in out.iter_mut().zip(row.get(offset..).unwrap_or(&[])) {
                *o += a * v;
            }
        }
    }
}

/// [`mix_rows`] for two query heads over the same rows: head dimension 8 reads
/// each value row once for both, others run [`mix_rows`] twice.
#[inline]
fn mix_rows2(
    rows: &[f32],
    kv_dim: usize,
    offset: usize,
    weights: [&[f32]; 2],
    norm: [f32; 2],
    out: [&mut [f32]; 2],
) {
    let [o0, o1] = out;
    let both8 = o0.len() == 8 && o1.len() == 8;
    if let (true, Some((b, s, o)), Some(d0), Some(d1)) = (
        both8,
        blocks8(rows, kv_dim, offset, 8),
        o0.first_chunk_mut::<8>(),
        o1.first_chunk_mut::<8>(),
    ) {
        let (mut acc0, mut acc1) = ([0.0f32; 8], [0.0f32; 8]);
        for ((&a, &c), row) in weights[0].iter().zip(weights[1]).zip(b.chunks_exact(s)) {
            let Some(v) = row.get(o) else { break };
            kernels::axpy8(&mut acc0, a * norm[0], v);
            kernels::axpy8(&mut acc1, c * norm[1], v);
        }
        *d0 = acc0;
        *d1 = acc1;
    } else {
        mix_rows(rows, kv_dim, offset, weights[0], norm[0], o0);
        mix_rows(rows, kv_dim, offset, weights[1], norm[1], o1);
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

/// The read side of a key/value store that holds `keys`, `values` and `rows`: the
/// same for the cache and for a sequence's slices.
macro_rules! impl_kv_read {
    ($t:ty) => {
        impl KvRead for $t {
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
                scale: f32,
                out: &mut [f32],
            ) -> Result<f32, Error> {
                let rows = self
                    .rows
                    .slice(self.keys, layer, start, out.len(), offset, q.len())?;
                Ok(dot_rows(rows, self.rows.kv_dim, offset, q, scale, out))
            }

            fn scores2(
                &self,
                layer: usize,
                start: usize,
                offset: usize,
                q: [&[f32]; 2],
                scale: f32,
                out: [&mut [f32]; 2],
            ) -> Result<[f32; 2], Error> {
                check_len(q[0].len(), q[1].len())?;
                check_len(out[0].len(), out[1].len())?;
                let rows =
                    self.rows
                        .slice(self.keys, layer, start, out[0].len(), offset, q[0].len())?;
                Ok(dot_rows2(rows, self.rows.kv_dim, offset, q, scale, out))
            }

            fn mix(
                &self,
                layer: usize,
                start: usize,
                offset: usize,
                weights: &[f32],
                norm: f32,
                out: &mut [f32],
            ) -> Result<(), Error> {
                let rows =
                    self.rows
                        .slice(self.values, layer, start, weights.len(), offset, out.len())?;
                mix_rows(rows, self.rows.kv_dim, offset, weights, norm, out);
                Ok(())
            }

            fn mix2(
                &self,
                layer: usize,
                start: usize,
                offset: usize,
                weights: [&[f32]; 2],
                norm: [f32; 2],
                out: [&mut [f32]; 2],
            ) -> Result<(), Error> {
                check_len(weights[0].len(), weights[1].len())?;
                check_len(out[0].len(), out[1].len())?;
                let rows = self.rows.slice(
                    self.values,
                    layer,
                    start,
                    weights[0].len(),
                    offset,
                    out[0].len(),
                )?;
                mix_rows2(rows, self.rows.kv_dim, offset, weights, norm, out);
                Ok(())
            }
        }
    };
}

impl_kv_read!(KvCache<'_>);

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

impl_kv_read!(KvSlices<'_>);

/// Softmax in place, as `run.c`'s: subtract the maximum, `expf`, running sum,
/// then each value times `1/sum` (where `run.c` divides by the sum). An empty
/// slice is left alone.
///
/// `expf` is [`crate::num::exp::fast_expf`] (below 1.5 ulp of `e^x`, not
/// bit-identical to `libm::expf`).
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
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// `x[i] = expf(x[i] − max_val)` and the reciprocal `1/Σ x[i]` of their running sum.
#[inline]
fn exp_sum(x: &mut [f32], max_val: f32) -> f32 {
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        let e = crate::num::exp::fast_expf(*v - max_val);
        *v = e;
        sum += e;
    }
    1.0 / sum
}

/// [`exp_sum`] of two rows in one loop (each row's sum in its own order).
#[inline]
fn exp_sum2(a0: &mut [f32], a1: &mut [f32], m: [f32; 2]) -> [f32; 2] {
    if a0.len() != a1.len() {
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
    let hd = cfg.head_dim;
    let n = end + 1 - start;
    let got = att.len();
    let pairs = (cfg.n_heads / cfg.n_kv_heads) % 2 == 0 && got >= 2 * n;
    let att = att
        .get_mut(..if pairs { 2 * n } else { n })
        .ok_or(Error::BufferTooSmall { needed: n, got })?;
    let scale = cfg.scale;
    if pairs {
        let (a0, a1) = att.split_at_mut(n);
        for ((h, qp), op) in (0..cfg.n_heads)
            .step_by(2)
            .zip(q.chunks_exact(2 * hd))
            .zip(out.chunks_exact_mut(2 * hd))
        {
            let offset = cfg.kv_head(h) * hd;
            let (q0, q1) = qp.split_at(hd);
            let (o0, o1) = op.split_at_mut(hd);
            let mut m =
                cache.scores2(layer, start, offset, [q0, q1], scale, [&mut *a0, &mut *a1])?;
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
    for (h, (qh, oh)) in q.chunks_exact(hd).zip(out.chunks_exact_mut(hd)).enumerate() {
        let offset = cfg.kv_head(h) * hd;
        let mut m = cache.scores(layer, start, offset, qh, scale, att)?;
        if B::ENABLED {
            m = bias.add_to_row(h, query_pos, start, att);
        }
        let norm = exp_sum(att, m);
        cache.mix(layer, start, offset, att, norm, oh)?;
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
            Mask::Bidirectional if cfg.window == 0 => n - 1,
            Mask::Bidirectional => (i + cfg.window - 1).min(n - 1),
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
