//! An int8 KV cache: one f32 scale per cached row.
//!
//! Keys and values are stored `[layer][position][kv_dim]` as int8, each row
//! (one position's `kv_dim = n_kv_heads · head_dim` values of one layer) with
//! its own scale, quantized as `runq.c`'s `quantize` with the whole row as the
//! group ([`crate::num::q8::quantize`]: `scale = max|row| / 127`,
//! `q = round(x / scale)`), so that `|x − q·scale| ≤ scale/2 = max|row|/254`.
//!
//! Reading follows the [`KvRead`] contract, with the dequantization folded in:
//!
//! ```text
//! scores: out[i] = ((Σ_d q[d]·f32(k_i[d])) · s_i) · scale     Σ in order of d
//! mix:    out    = Σ_i ((w[i]·norm) · s_i) · f32(v_i[offset..])   in order of i, from 0
//! ```
//!
//! i.e. exactly the f32 cache's arithmetic on the integer values, with the row
//! scale applied once per row instead of once per value.
//!
//! Memory: `2 · layers · positions · (kv_dim + 4)` bytes against the f32
//! cache's `2 · layers · positions · kv_dim · 4` (about a quarter).
//!
//! Error: a score moves by at most `scale · Σ_d |q[d]| · s_i / 2` (plus f32
//! rounding) from the score of the f32 cache; an output by at most
//! `Σ_i |w[i]·norm| · s_i / 2` per value.

use super::cache::{check_len, KvRead, KvWrite, Rows};
use crate::num::kernels;
use crate::num::q8;
use crate::Error;

/// An int8 KV cache in caller-provided storage (see the module documentation).
#[derive(Debug)]
pub struct KvCacheQ8<'c> {
    keys: &'c mut [i8],
    values: &'c mut [i8],
    key_scales: &'c mut [f32],
    value_scales: &'c mut [f32],
    rows: Rows,
}

impl<'c> KvCacheQ8<'c> {
    /// int8 values each of `keys` and `values` must hold.
    pub const fn elements(layers: usize, positions: usize, kv_dim: usize) -> usize {
        layers * positions * kv_dim
    }

    /// Scales each of `key_scales` and `value_scales` must hold (one per row).
    pub const fn scales(layers: usize, positions: usize) -> usize {
        layers * positions
    }

    /// A cache over the four slices, of exactly [`KvCacheQ8::elements`] and
    /// [`KvCacheQ8::scales`] entries.
    pub fn new(
        keys: &'c mut [i8],
        values: &'c mut [i8],
        key_scales: &'c mut [f32],
        value_scales: &'c mut [f32],
        layers: usize,
        positions: usize,
        kv_dim: usize,
    ) -> Result<Self, Error> {
        if layers == 0 || positions == 0 || kv_dim == 0 {
            return Err(Error::ZeroDimension);
        }
        let rows = layers
            .checked_mul(positions)
            .ok_or(Error::InvalidParameter)?;
        let n = rows.checked_mul(kv_dim).ok_or(Error::InvalidParameter)?;
        for got in [keys.len(), values.len()] {
            check_len(n, got)?;
        }
        for got in [key_scales.len(), value_scales.len()] {
            check_len(rows, got)?;
        }
        Ok(KvCacheQ8 {
            keys,
            values,
            key_scales,
            value_scales,
            rows: Rows {
                layers,
                positions,
                kv_dim,
            },
        })
    }

    /// The cached key row of `layer` at `pos`: its int8 values and scale.
    pub fn key(&self, layer: usize, pos: usize) -> Result<(&[i8], f32), Error> {
        let at = self.rows.at(layer, pos, 1, 0, self.rows.kv_dim)?;
        let kv = self.rows.kv_dim;
        Ok((&self.keys[at..at + kv], self.key_scales[at / kv]))
    }

    /// The cached value row of `layer` at `pos`: its int8 values and scale.
    pub fn value(&self, layer: usize, pos: usize) -> Result<(&[i8], f32), Error> {
        let at = self.rows.at(layer, pos, 1, 0, self.rows.kv_dim)?;
        let kv = self.rows.kv_dim;
        Ok((&self.values[at..at + kv], self.value_scales[at / kv]))
    }

    /// The key (`values == false`) or value rows `start..start + n` of `layer`
    /// and their scales (columns `offset..offset + width` checked).
    fn rows_of(
        &self,
        values: bool,
        layer: usize,
        start: usize,
        n: usize,
        offset: usize,
        width: usize,
    ) -> Result<(&[i8], &[f32]), Error> {
        let (data, scales): (&[i8], &[f32]) = if values {
            (self.values, self.value_scales)
        } else {
            (self.keys, self.key_scales)
        };
        let kv = self.rows.kv_dim;
        let at = self.rows.at(layer, start, n, offset, width)?;
        let r = at.checked_div(kv).unwrap_or(0);
        Ok((
            data.get(at..at + n * kv).unwrap_or(&[]),
            scales.get(r..r + n).unwrap_or(&[]),
        ))
    }
}

/// Eight int8 values widened to f32 (exact).
#[inline(always)]
fn widen8(v: &[i8; 8]) -> [f32; 8] {
    [
        v[0] as f32,
        v[1] as f32,
        v[2] as f32,
        v[3] as f32,
        v[4] as f32,
        v[5] as f32,
        v[6] as f32,
        v[7] as f32,
    ]
}

/// `Σ_d q[d]·f32(k[d])`, the products summed in order from the first.
#[inline(always)]
fn dot(q: &[f32], k: &[i8]) -> f32 {
    let mut it = q.iter().zip(k);
    let Some((&a, &b)) = it.next() else {
        return 0.0;
    };
    let mut v = a * b as f32;
    for (&a, &b) in it {
        v += a * b as f32;
    }
    v
}

/// `out[h][i] = ((Σ_d q[h][d]·f32(row_i[offset + d])) · s_i) · scale` for the
/// `H` heads `q` (each row widened once for all of them); the largest per head.
/// Head dimension 8 goes through [`kernels::dot8_first`], others the loop
/// [`dot`]: the same operations in the same order.
#[inline(always)]
fn dot_rows_q8<const H: usize>(
    rows: &[i8],
    scales: &[f32],
    kv_dim: usize,
    offset: usize,
    q: [&[f32]; H],
    scale: f32,
    out: [&mut [f32]; H],
) -> [f32; H] {
    let mut m = [f32::NEG_INFINITY; H];
    let d = q[0].len();
    let q8: [Option<&[f32; 8]>; H] = core::array::from_fn(|h| q[h].first_chunk::<8>());
    for (i, (row, &s)) in rows.chunks_exact(kv_dim.max(1)).zip(scales).enumerate() {
        let k = row.get(offset..offset + d).unwrap_or(&[]);
        let k8 = k.first_chunk::<8>().filter(|_| d == 8).map(widen8);
        for h in 0..H {
            let v = match (&k8, q8[h]) {
                (Some(k8), Some(qh)) => kernels::dot8_first(qh, k8),
                _ => dot(q[h], k),
            };
            let v = v * s * scale;
            if let Some(dst) = out[h].get_mut(i) {
                *dst = v;
            }
            if v > m[h] {
                m[h] = v;
            }
        }
    }
    m
}

/// `out[h] = Σ_i ((w[h][i]·norm[h])·s_i)·f32(row_i[offset..])`, in order of `i`
/// from 0, for `H` heads (each row widened once for all of them; head dimension
/// 8 through [`kernels::axpy8`], the same operations).
#[inline(always)]
fn mix_rows_q8<const H: usize>(
    rows: &[i8],
    scales: &[f32],
    kv_dim: usize,
    offset: usize,
    weights: [&[f32]; H],
    norm: [f32; H],
    mut out: [&mut [f32]; H],
) {
    let d = out[0].len();
    let mut acc = [[0.0f32; 8]; H];
    for o in out.iter_mut() {
        o.fill(0.0);
    }
    for (i, (row, &s)) in rows.chunks_exact(kv_dim.max(1)).zip(scales).enumerate() {
        let v = row.get(offset..offset + d).unwrap_or(&[]);
        match v.first_chunk::<8>().filter(|_| d == 8) {
            Some(v8) => {
                let v8 = widen8(v8);
                for h in 0..H {
                    let a = weights[h].get(i).copied().unwrap_or(0.0) * norm[h] * s;
                    kernels::axpy8(&mut acc[h], a, &v8);
                }
            }
            None => {
                for h in 0..H {
                    let a = weights[h].get(i).copied().unwrap_or(0.0) * norm[h] * s;
                    for (o, &x) in out[h].iter_mut().zip(v) {
                        *o += a * x as f32;
                    }
                }
            }
        }
    }
    if d == 8 {
        for (o, a) in out.iter_mut().zip(&acc) {
            if let Some(o8) = o.first_chunk_mut::<8>() {
                *o8 = *a;
            }
        }
    }
}

impl KvRead for KvCacheQ8<'_> {
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
        let (rows, s) = self.rows_of(false, layer, start, out.len(), offset, q.len())?;
        let [m] = dot_rows_q8(rows, s, self.rows.kv_dim, offset, [q], scale, [out]);
        Ok(m)
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
        let (rows, s) = self.rows_of(false, layer, start, out[0].len(), offset, q[0].len())?;
        Ok(dot_rows_q8(
            rows,
            s,
            self.rows.kv_dim,
            offset,
            q,
            scale,
            out,
        ))
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
        let (rows, s) = self.rows_of(true, layer, start, weights.len(), offset, out.len())?;
        mix_rows_q8(rows, s, self.rows.kv_dim, offset, [weights], [norm], [out]);
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
        let (rows, s) = self.rows_of(true, layer, start, weights[0].len(), offset, out[0].len())?;
        mix_rows_q8(rows, s, self.rows.kv_dim, offset, weights, norm, out);
        Ok(())
    }
}

impl KvWrite for KvCacheQ8<'_> {
    fn store(&mut self, layer: usize, pos: usize, key: &[f32], value: &[f32]) -> Result<(), Error> {
        let kv = self.rows.kv_dim;
        let at = self.rows.at(layer, pos, 1, 0, kv)?;
        for got in [key.len(), value.len()] {
            check_len(kv, got)?;
        }
        // Checked access (no panic path): `at` was validated by `Rows::at`.
        let r = at.checked_div(kv).ok_or(Error::ZeroDimension)?;
        let (Some(kq), Some(ks), Some(vq), Some(vs)) = (
            self.keys.get_mut(at..at + kv),
            self.key_scales.get_mut(r..r + 1),
            self.values.get_mut(at..at + kv),
            self.value_scales.get_mut(r..r + 1),
        ) else {
            return Err(Error::PositionOutOfRange {
                position: pos,
                len: self.rows.positions,
            });
        };
        q8::quantize(key, kv, kq, ks)?;
        q8::quantize(value, kv, vq, vs)
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // the formulas, written index by index
mod tests {
    use super::*;
    use crate::attn::KvCache;

    const LAYERS: usize = 2;
    const POS: usize = 9;
    const KV: usize = 16;

    use microformer_testkit::XorShift32 as Rng;

    #[test]
    fn reads_are_the_f32_arithmetic_of_the_dequantized_rows_within_the_bound() {
        let mut rng = Rng(0x5eed_1234);
        let (mut kq, mut vq) = ([0i8; LAYERS * POS * KV], [0i8; LAYERS * POS * KV]);
        let (mut ks, mut vs) = ([0f32; LAYERS * POS], [0f32; LAYERS * POS]);
        let mut c = KvCacheQ8::new(&mut kq, &mut vq, &mut ks, &mut vs, LAYERS, POS, KV).unwrap();
        let (mut kf, mut vf) = ([0f32; LAYERS * POS * KV], [0f32; LAYERS * POS * KV]);
        let mut f = KvCache::new(&mut kf, &mut vf, LAYERS, POS, KV).unwrap();
        for l in 0..LAYERS {
            for p in 0..POS {
                let k: [f32; KV] = core::array::from_fn(|_| 3.0 * rng.signed_unit());
                let v: [f32; KV] = core::array::from_fn(|_| rng.signed_unit());
                c.store(l, p, &k, &v).unwrap();
                f.store(l, p, &k, &v).unwrap();
            }
        }
        let q: [f32; 8] = core::array::from_fn(|_| rng.signed_unit());
        let scale = 0.353_553_4;
        let (mut got, mut want) = ([0f32; POS], [0f32; POS]);
        let m = c.scores(1, 0, 8, &q, scale, &mut got).unwrap();
        f.scores(1, 0, 8, &q, scale, &mut want).unwrap();
        assert_eq!(m, got.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        for p in 0..POS {
            let (row, s) = c.key(1, p).unwrap();
            // The formula, written out.
            let mut d = q[0] * row[8] as f32;
            for i in 1..8 {
                d += q[i] * row[8 + i] as f32;
            }
            assert_eq!(got[p].to_bits(), (d * s * scale).to_bits());
            // Within half a step per value of the f32 cache's score.
            let bound: f64 = q.iter().map(|&x| x.abs() as f64).sum::<f64>() * (s as f64) / 2.0
                * scale as f64
                + 1e-6;
            assert!(((got[p] - want[p]) as f64).abs() <= bound, "{p}");
        }
        let w: [f32; POS] = core::array::from_fn(|_| rng.signed_unit().abs());
        let (mut o, mut of) = ([0f32; 8], [0f32; 8]);
        c.mix(0, 0, 8, &w, 0.5, &mut o).unwrap();
        f.mix(0, 0, 8, &w, 0.5, &mut of).unwrap();
        let mut bound = 1e-6;
        for (p, &wp) in w.iter().enumerate() {
            bound += (wp * 0.5) as f64 * c.value(0, p).unwrap().1 as f64 / 2.0;
        }
        for d in 0..8 {
            assert!(((o[d] - of[d]) as f64).abs() <= bound, "{d}");
        }
        // Two heads at once = one at a time.
        let q2: [f32; 8] = core::array::from_fn(|_| rng.signed_unit());
        let (mut a, mut b) = ([0f32; POS], [0f32; POS]);
        c.scores2(1, 0, 0, [&q, &q2], scale, [&mut a, &mut b])
            .unwrap();
        let (mut a1, mut b1) = ([0f32; POS], [0f32; POS]);
        c.scores(1, 0, 0, &q, scale, &mut a1).unwrap();
        c.scores(1, 0, 0, &q2, scale, &mut b1).unwrap();
        assert_eq!((a, b), (a1, b1));
        let (mut m0, mut m1, mut n0, mut n1) = ([0f32; 8], [0f32; 8], [0f32; 8], [0f32; 8]);
        c.mix2(0, 0, 8, [&w, &a], [0.5, 0.25], [&mut m0, &mut m1])
            .unwrap();
        c.mix(0, 0, 8, &w, 0.5, &mut n0).unwrap();
        c.mix(0, 0, 8, &a, 0.25, &mut n1).unwrap();
        assert_eq!((m0, m1), (n0, n1));
        // Widths other than 8 take the loops: the same formula.
        let mut wide = [0f32; POS];
        let q16: [f32; 16] = core::array::from_fn(|_| rng.signed_unit());
        c.scores(0, 0, 0, &q16, scale, &mut wide).unwrap();
        for p in 0..POS {
            let (row, s) = c.key(0, p).unwrap();
            let mut d = q16[0] * row[0] as f32;
            for i in 1..16 {
                d += q16[i] * row[i] as f32;
            }
            assert_eq!(wide[p].to_bits(), (d * s * scale).to_bits());
        }
        let mut wide_out = [0f32; 16];
        c.mix(1, 0, 0, &w, 0.5, &mut wide_out).unwrap();
        let mut want16 = [0f32; 16];
        for (p, &wp) in w.iter().enumerate() {
            let (row, s) = c.value(1, p).unwrap();
            let a = wp * 0.5 * s;
            for i in 0..16 {
                want16[i] += a * row[i] as f32;
            }
        }
        assert_eq!(wide_out, want16);
    }

    #[test]
    fn bad_geometry_gives_typed_errors() {
        let (mut kq, mut vq) = ([0i8; 32], [0i8; 32]);
        let (mut ks, mut vs) = ([0f32; 2], [0f32; 1]);
        assert_eq!(
            KvCacheQ8::new(&mut kq, &mut vq, &mut ks, &mut vs, 1, 2, 16).unwrap_err(),
            Error::LengthMismatch {
                expected: 2,
                got: 1
            }
        );
        let mut vs = [0f32; 2];
        let mut c = KvCacheQ8::new(&mut kq, &mut vq, &mut ks, &mut vs, 1, 2, 16).unwrap();
        assert!(matches!(
            c.store(0, 2, &[0.0; 16], &[0.0; 16]),
            Err(Error::PositionOutOfRange { .. })
        ));
        assert!(matches!(
            c.store(0, 1, &[0.0; 15], &[0.0; 16]),
            Err(Error::LengthMismatch { .. })
        ));
        let mut out = [0f32; 3];
        assert!(c.scores(0, 0, 0, &[0.0; 8], 1.0, &mut out).is_err());
    }
}
