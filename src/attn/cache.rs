//! The KV cache behind the [`KvRead`]/[`KvWrite`] traits: f32 rows in caller
//! storage ([`KvCache`]), a sequence's own slices ([`KvSlices`]), and the row
//! kernels attention runs over them.

use crate::num::kernels;
use crate::Error;

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
pub(super) struct Rows {
    pub(super) layers: usize,
    pub(super) positions: usize,
    pub(super) kv_dim: usize,
}

impl Rows {
    /// Checks rows `start..start + n` of `layer`, columns `offset..offset + width`,
    /// and returns the flat index of `(layer, start)`.
    pub(super) fn at(
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
    pub(super) fn slice<'d>(
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
    if kv_dim % 8 != 0 || offset % 8 != 0 || width % 8 != 0 {
        return None;
    }
    let b: &[[f32; 8]] = bytemuck::try_cast_slice(rows).ok()?;
    // A non-zero stride the compiler knows (no chunk-size assertion left).
    let s = core::num::NonZeroUsize::new(kv_dim / 8)?;
    Some((b, s.get(), offset / 8))
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
            for (dst, row) in out.iter_mut().zip(rows.chunks_exact(kv_dim.max(1))) {
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
/// [`dot_rows`] twice. On hard-float Arm, width 8 runs
/// [`crate::num::kernels_m4::scores2_8`] (`vldm` + `vmla`, the same operations
/// in the same order).
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
            #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
            if let Some(m) =
                crate::num::kernels_m4::scores2_8([q0, q1], b, s, o, scale, [&mut *o0, &mut *o1])
            {
                return m;
            }
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
        for (&a, row) in weights.iter().zip(rows.chunks_exact(kv_dim.max(1))) {
            let a = a * norm;
            for (o, &v) in out.iter_mut().zip(row.get(offset..).unwrap_or(&[])) {
                *o += a * v;
            }
        }
    }
}

/// [`mix_rows`] for two query heads over the same rows: head dimension 8 reads
/// each value row once for both, others run [`mix_rows`] twice. On hard-float
/// Arm, width 8 runs [`crate::num::kernels_m4::mix2_8`] (bit-identical).
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
        #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
        if crate::num::kernels_m4::mix2_8(weights, norm, b, s, o, [&mut *d0, &mut *d1]) {
            return;
        }
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
        let kv = self.rows.kv_dim;
        if key.len() != kv || value.len() != kv {
            return Err(Error::LengthMismatch {
                expected: kv,
                got: if key.len() != kv {
                    key.len()
                } else {
                    value.len()
                },
            });
        }
        // Checked access (no panic path): `at` was validated by `Rows::at`.
        let (Some(k), Some(v)) = (
            self.keys.get_mut(at..at + kv),
            self.values.get_mut(at..at + kv),
        ) else {
            return Err(Error::PositionOutOfRange {
                position: pos,
                len: self.rows.positions,
            });
        };
        // Both `kv_dim` long (checked above): no length panic left.
        k.copy_from_slice(key);
        v.copy_from_slice(value);
        Ok(())
    }
}

/// Keys and values of a whole sequence, `[position][kv_dim]` each (one layer:
/// pass layer 0), for [`super::attend_sequence`] or any caller that has them at hand.
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

/// `Err(LengthMismatch)` unless `expected == got`.
pub(super) fn check_len(expected: usize, got: usize) -> Result<(), Error> {
    if expected != got {
        return Err(Error::LengthMismatch { expected, got });
    }
    Ok(())
}
