//! The integer forward step ([`super::Arith::Integer`]): the same transformer
//! as [`super::Session`]'s float step, computed in fixed point from a Q8 image
//! with integer instructions only, so that a core without an FPU runs every
//! token without a soft-float routine.
//!
//! Formats (see [`crate::num::int`]): the residual stream and every activation
//! are Q16.16 `i32`; every matrix input is quantized per group to **int16**
//! (`round(32767·x/max|x|)`, the image's groups) with the group's scale
//! `max|x|/32767` kept as a [`Scale`] (15-bit mantissa and an exponent); a
//! weight group's f32 scale is read from the image as bits and decoded with
//! integer instructions, or read already decoded from an image that stores
//! them ([`crate::image::FLAG_Q8_BLOCK_SCALES`]). The products
//! ([`kernels_int::matvec_q8`], [`kernels_block::matvec_q8_block`]) align both
//! kinds of scale to one exponent (per output row, per input vector), so that
//! per output:
//!
//! ```text
//! y = Σ_g dot_i32(w_g, x_g) · (mw_g·mx_g)      i64, one shift per row, rounded once to Q16
//! ```
//!
//! The step, per layer:
//! - RMSNorm: `ss = Σ x²` (u64), `inv = √n / isqrt(ss + n·eps)` as a [`Scale`];
//!   the product `x·γ` is quantized and `inv` folded into the group scales;
//! - q, k, v by the int8 × int16 products; q and k shifted into `i16` (one
//!   shift per head) and rotated by RoPE in Q15 through the position file's
//!   own Q15 path ([`crate::pos::rope::RopeTable::row_q15`], once per position, then
//!   [`crate::pos::rope::RopeRowQ15::rotate_heads`]), the score scale
//!   `1/√head_dim` folded into q first; k and v stored in the cache (int8 or
//!   int16, [`crate::num::kernels_int::CacheElem`]), one byte of scale for a
//!   row's keys and one for its values (a 3-bit mantissa and a 5-bit
//!   exponent, [`head_code`]);
//! - scores `q16·k` (per key one multiply by the scale's mantissa and one
//!   shift), the fixed-point score bias of ALiBi or T5
//!   ([`ScoreBiasFixed`]); softmax with [`exp_q16`] on the max-subtracted
//!   scores; the value mix `Σ_j w_j·v_j` in `i32` and one reciprocal of the
//!   sum per head, applied to the head's outputs (see [`attend`]);
//! - SwiGLU with the logistic function by table ([`sigmoid_q15`]);
//! - the classifier's logits in Q16.
//!
//! Absolute position tables (learned, sinusoidal) are added to the embedding
//! in Q16 ([`crate::pos::learned::LearnedPositions::add_to_fixed`]).
//!
//! Supported images: Q8 matrices (the token embedding may be f32), RMSNorm,
//! SwiGLU, a sequential residual, biases, any position hook; anything else is
//! [`Error::IntegerUnsupported`] when the session opens.

use super::view::Model;
use super::weights::{LayerWeights, Matrix};
use crate::image::{BlockScales, FfnKind, NormKind, Residual};
use crate::num::int::{
    exp_q16, fixed_from_f32, group_scale_of, isqrt_u64, mul_i64, mul_u64, quantize_group_to,
    round_to_i32, sat_i32, shift_i64, sigmoid_q15, Quantum, Scale, ACT_FRAC,
};
use crate::num::kernels_block;
use crate::num::kernels_int::{self, CacheElem};
use crate::pos::rope::{RopeLayout, RopeRowQ15};
use crate::pos::{NoBias, Position, ScoreBiasFixed};
use crate::Error;

/// The integer step's KV cache: int8 or int16 rows `[layer][position][kv_dim]`
/// and one scale code a row for its keys and one for its values
/// ([`head_code`]), laid out `[layer][position]`.
#[derive(Debug)]
pub(super) struct IntCache<'s, T> {
    pub(super) keys: &'s mut [T],
    pub(super) values: &'s mut [T],
    pub(super) key_scales: &'s mut [u8],
    pub(super) value_scales: &'s mut [u8],
    pub(super) positions: usize,
}

/// The integer step's buffers: the float session's arena reinterpreted (every
/// buffer is 4-byte values), plus the `i16` heads and the small scratch.
#[derive(Debug)]
pub(super) struct IntScratch<'a> {
    pub(super) x: &'a mut [i32],
    pub(super) xb: &'a mut [i32],
    pub(super) xb2: &'a mut [i32],
    pub(super) hb: &'a mut [i32],
    pub(super) hb2: &'a mut [i32],
    pub(super) q: &'a mut [i32],
    pub(super) k: &'a mut [i32],
    pub(super) v: &'a mut [i32],
    pub(super) att: &'a mut [i32],
    pub(super) heads: &'a mut [i16],
    pub(super) xq: &'a mut [i16],
    /// The position's Q15 RoPE row (`head_dim / 2` rounded up words).
    pub(super) rope: &'a mut [u32],
    /// The shifts of the `i16` query heads, then the key heads'.
    pub(super) shifts: &'a mut [u8],
    pub(super) xs: &'a mut [i32],
}

/// Checks that `m` can run the integer step.
pub(super) fn check_model(m: &Model<'_>) -> Result<(), Error> {
    let q8 = |w: &Matrix<'_>| matches!(w, Matrix::Q8 { .. });
    let emb = matches!(m.embedding, Matrix::Q8 { .. } | Matrix::F32 { .. });
    let ok = emb
        && q8(&m.output)
        && m.norm.kind == NormKind::Rms
        && m.ffn == FfnKind::SwiGlu
        && m.residual == Residual::Sequential
        && m.embed_scale.is_none()
        && m.embed_norm.is_none();
    if !ok {
        return Err(Error::IntegerUnsupported);
    }
    for l in 0..m.dims.n_layers {
        let w = m.layer(l)?;
        let all = [&w.wq, &w.wk, &w.wv, &w.wo, &w.w_up, &w.w_down];
        if !all.iter().all(|w| q8(w)) || !w.w_gate.as_ref().is_some_and(q8) {
            return Err(Error::IntegerUnsupported);
        }
    }
    Ok(())
}

/// The quantized input of the next products: which values it holds and how
/// it was made, so that matrices reading the same input share it.
#[derive(Debug, Clone, Copy)]
struct Input {
    /// The group it was quantized with (0: not yet).
    group: usize,
    /// The factor folded into every group scale (a norm's `1/rms`), if any.
    factor: Option<Scale>,
    /// The exponent of the group scales' aligned mantissas
    /// ([`kernels_int::align_scales`]).
    exp: i32,
}

/// [`matvec`] with `W`'s block scales when the image stores them
/// ([`crate::image::Image::block_scales_after`]).
fn product(
    m: &Model<'_>,
    w: &Matrix<'_>,
    out: &mut [i32],
    x: &[i32],
    input: &mut Input,
    xq: &mut [i16],
    xs: &mut [i32],
) -> Result<(), Error> {
    let block = match *w {
        Matrix::Q8 { scales, rows, .. } => m.image.block_scales_after(scales, rows),
        _ => None,
    };
    matvec(w, block, out, x, input, xq, xs)
}

/// `out = W·x` for the Q16 input `x` (`x.len() == cols`), quantizing `x` into
/// `xq`/`xs` with `W`'s group unless `input` already holds it; `block`: `W`'s
/// scales in block-float form, if the image stores them.
fn matvec(
    w: &Matrix<'_>,
    block: Option<BlockScales<'_>>,
    out: &mut [i32],
    x: &[i32],
    input: &mut Input,
    xq: &mut [i16],
    xs: &mut [i32],
) -> Result<(), Error> {
    let Matrix::Q8 {
        values,
        scales,
        group,
        rows,
        cols,
    } = *w
    else {
        return Err(Error::IntegerUnsupported);
    };
    if x.len() != cols || out.len() != rows || group == 0 {
        return Err(Error::InconsistentDimensions);
    }
    let gpr = cols / group;
    let (Some(xq), Some(xs)) = (xq.get_mut(..cols), xs.get_mut(..gpr)) else {
        return Err(Error::BufferTooSmall {
            needed: cols,
            got: xq.len(),
        });
    };
    if input.group != group {
        for ((xg, qg), s) in x
            .chunks_exact(group)
            .zip(xq.chunks_exact_mut(group))
            .zip(xs.iter_mut())
        {
            let scale = group_scale_of::<i16>(quantize_group_to(xg, qg), ACT_FRAC as i32);
            *s = match input.factor {
                Some(f) => scale.mul(f),
                None => scale,
            }
            .pack();
        }
        input.exp = kernels_int::align_scales(xs);
        input.group = group;
    }
    match block {
        Some(b) => kernels_block::matvec_q8_block(
            out,
            values,
            b.mantissas,
            b.tops,
            xq,
            xs,
            input.exp,
            group,
        ),
        None => kernels_int::matvec_q8(out, values, scales, xq, xs, input.exp, group),
    }
}

/// A quantized input about to be made from a vector (none shared yet).
const fn fresh(factor: Option<Scale>) -> Input {
    Input {
        group: 0,
        factor,
        exp: 0,
    }
}

/// RMSNorm of `x` with `w` folded for quantization: `t = x·γ` (Q16) and the
/// factor `1/rms(x)` to fold into the group scales.
fn rms_fold(x: &[i32], w: &[f32], eps: f32, t: &mut [i32]) -> Scale {
    let n = x.len() as u64;
    let mut ss = 0u64;
    for &v in x {
        let a = v.unsigned_abs();
        ss = ss.saturating_add(mul_u64(a, a));
    }
    // eps in Q32 (the units of ss), times n.
    let eps = fixed_from_f32(eps, 32).max(0) as u64;
    let r = isqrt_u64(ss.saturating_add(eps.saturating_mul(n)));
    for ((o, &v), &g) in t.iter_mut().zip(x).zip(w) {
        let g = fixed_from_f32(g, 24);
        *o = round_to_i32(mul_i64(v, g), 24);
    }
    // 1/rms = √n / √(ss + n·eps), both in Q16.
    Scale::ratio(isqrt_u64(n << 32), r.max(1))
}

/// `x += b` for an f32 bias read from the image.
fn add_bias(x: &mut [i32], b: &[f32]) {
    for (v, &b) in x.iter_mut().zip(b) {
        *v = v.saturating_add(fixed_from_f32(b, ACT_FRAC));
    }
}

/// Each head of `v` (`hd` values) shifted into `i16` with two bits of
/// headroom (RoPE can grow a pair by √2), its own shift in `shifts`.
fn heads_to_i16(v: &[i32], out: &mut [i16], hd: usize, shifts: &mut [u8]) {
    if hd == 0 {
        return;
    }
    let mut outs = out.chunks_exact_mut(hd);
    for ((v, o), s) in v.chunks_exact(hd).zip(outs.by_ref()).zip(shifts.iter_mut()) {
        *s = to_i16(v, o) as u8;
    }
}

/// The shift that brings `v` into `i16` with two bits of headroom, and `v`
/// shifted (rounded) into `out`.
fn to_i16(v: &[i32], out: &mut [i16]) -> u32 {
    let max = v.iter().map(|x| x.unsigned_abs()).max().unwrap_or(0);
    let sh = (32 - max.leading_zeros()).saturating_sub(14);
    for (o, &x) in out.iter_mut().zip(v) {
        let r = if sh == 0 {
            x
        } else {
            (x >> sh) + ((x >> (sh - 1)) & 1)
        };
        *o = r.clamp(-32768, 32767) as i16;
    }
    sh
}

/// One integer forward pass for `token` at `pos`; the Q16 logits at the start
/// of `s.att` (dead after the last layer's attention).
#[inline(never)]
pub(super) fn forward<T: CacheElem>(
    m: &Model<'_>,
    cache: &mut IntCache<'_, T>,
    s: &mut IntScratch<'_>,
    token: u32,
    pos: usize,
) -> Result<(), Error> {
    s.embed(m, token, pos)?;
    // The position's RoPE row in Q15, packed once for every layer's q and k.
    let rope_buf = core::mem::take(&mut s.rope);
    let rope = match &m.position {
        Position::Rope { table, layout } => Some((table.row_q15(pos, rope_buf)?, *layout)),
        _ => None,
    };
    for l in 0..m.dims.n_layers {
        let w = m.layer(l)?;
        s.attention(m, &w, cache, l, pos, rope)?;
        s.ffn(m, &w)?;
    }
    let d = &m.dims;
    let t = s.xb.get_mut(..d.dim).ok_or(Error::InconsistentDimensions)?;
    let inv = rms_fold(s.x, m.final_norm.weight, m.norm.eps, t);
    let mut input = fresh(Some(inv));
    let logits = s
        .att
        .get_mut(..d.vocab_size)
        .ok_or(Error::InconsistentDimensions)?;
    product(m, &m.output, logits, t, &mut input, s.xq, s.xs)?;
    if let Some(b) = m.output_bias {
        add_bias(logits, b);
    }
    Ok(())
}

impl IntScratch<'_> {
    /// `x` = the token's embedding row in Q16, plus the position table's row.
    fn embed(&mut self, m: &Model<'_>, token: u32, pos: usize) -> Result<(), Error> {
        let row = token as usize;
        match m.embedding {
            Matrix::Q8 {
                values,
                scales,
                group,
                rows,
                cols,
                ..
            } if row < rows && cols == self.x.len() && group > 0 => {
                let gpr = cols / group;
                let (Some(v), Some(sc)) = (
                    values.get(row * cols..(row + 1) * cols),
                    scales.get(row * gpr..(row + 1) * gpr),
                ) else {
                    return Err(Error::InconsistentDimensions);
                };
                for ((o, q), &sw) in self
                    .x
                    .chunks_exact_mut(group)
                    .zip(v.chunks_exact(group))
                    .zip(sc)
                {
                    let s = Scale::from_f32(sw);
                    for (o, &q) in o.iter_mut().zip(q) {
                        let p = mul_i64(q.into(), s.m);
                        *o = round_to_i32(shift_i64(p, s.e + ACT_FRAC as i32 + 1), 1);
                    }
                }
            }
            Matrix::F32 { w, rows, cols } if row < rows && cols == self.x.len() => {
                let v = w
                    .get(row * cols..(row + 1) * cols)
                    .ok_or(Error::InconsistentDimensions)?;
                for (o, &f) in self.x.iter_mut().zip(v) {
                    *o = fixed_from_f32(f, ACT_FRAC);
                }
            }
            _ => {
                return Err(Error::TokenOutOfRange {
                    token,
                    vocab_size: m.dims.vocab_size,
                })
            }
        }
        if let Position::Table(table) = &m.position {
            table.add_to_fixed(pos, self.x, ACT_FRAC)?;
        }
        Ok(())
    }

    /// The attention half of layer `l`: norm, q/k/v, rotation, cache, scores,
    /// softmax, value mix, output projection, residual.
    fn attention<T: CacheElem>(
        &mut self,
        m: &Model<'_>,
        w: &LayerWeights<'_>,
        cache: &mut IntCache<'_, T>,
        l: usize,
        pos: usize,
        rope: Option<(RopeRowQ15<'_>, RopeLayout)>,
    ) -> Result<(), Error> {
        let d = &m.dims;
        let t = self
            .xb
            .get_mut(..d.dim)
            .ok_or(Error::InconsistentDimensions)?;
        let inv = rms_fold(self.x, w.attn_norm.weight, m.norm.eps, t);
        let mut input = fresh(Some(inv));
        product(m, &w.wq, self.q, t, &mut input, self.xq, self.xs)?;
        product(m, &w.wk, self.k, t, &mut input, self.xq, self.xs)?;
        product(m, &w.wv, self.v, t, &mut input, self.xq, self.xs)?;
        if let Some([bq, bk, bv]) = w.qkv_bias {
            add_bias(self.q, bq);
            add_bias(self.k, bk);
            add_bias(self.v, bv);
        }
        // q's heads then k's, side by side: rotated in one call.
        let qk = self
            .heads
            .get_mut(..d.q_dim + d.kv_dim)
            .ok_or(Error::InconsistentDimensions)?;
        let hd = d.head_dim;
        if hd == 0 {
            return Err(Error::InconsistentDimensions);
        }
        let (sq, sk) = self
            .shifts
            .split_at_mut_checked(m.attn.n_heads())
            .ok_or(Error::InconsistentDimensions)?;
        // The score scale (`1/√head_dim`) folded into q: scores are then the
        // dot products shifted by the key scales alone.
        let scale = Scale::from_f32(m.attn.scale());
        for v in self.q.iter_mut() {
            *v = mul_scale(*v, scale);
        }
        {
            let (qh, kh) = qk
                .split_at_mut_checked(d.q_dim)
                .ok_or(Error::InconsistentDimensions)?;
            heads_to_i16(self.q, qh, hd, sq);
            heads_to_i16(self.k, kh, hd, sk);
        }
        if let Some((row, layout)) = rope {
            row.rotate_heads(layout, hd, qk)?;
        }
        let (qh, kh) = qk
            .split_at_mut_checked(d.q_dim)
            .ok_or(Error::InconsistentDimensions)?;
        // Store k (from its i16 form) and v as int8 rows.
        let row = l
            .checked_mul(cache.positions)
            .and_then(|r| r.checked_add(pos))
            .ok_or(Error::InconsistentDimensions)?;
        let at = row * d.kv_dim;
        // The values: the layer's blocks of position pairs (int8), or the row.
        let paired = T::BITS == 7;
        let vrange = if paired {
            let layer = paired_layer(cache.positions, d.kv_dim);
            l * layer..(l + 1) * layer
        } else {
            at..at + d.kv_dim
        };
        // The scale codes are `[layer][position]`, one a row.
        let (true, Some(kq), Some(vrow), Some(ks), Some(vs)) = (
            pos < cache.positions,
            cache.keys.get_mut(at..at + d.kv_dim),
            cache.values.get_mut(vrange),
            cache.key_scales.get_mut(row),
            cache.value_scales.get_mut(row),
        ) else {
            return Err(Error::PositionOutOfRange {
                position: pos,
                len: cache.positions,
            });
        };
        for (o, &h) in self.k.iter_mut().zip(kh.iter()) {
            *o = h as i32;
        }
        let kv2 = d.kv_dim + d.kv_dim % 2;
        // One scale code for the row's keys and one for its values: the
        // smallest that covers every kv head (keys in their heads' units).
        *ks = self
            .k
            .chunks_exact(hd)
            .zip(sk.iter())
            .fold(0, |c, (k, &sh)| c.max(head_code::<T>(k, sh as i32)));
        *vs = self
            .v
            .chunks_exact(hd)
            .fold(0, |c, v| c.max(head_code::<T>(v, 0)));
        let (kcode, vz) = (*ks, Quantizer::new::<T>(0, *vs));
        // (`by_ref`: the plain zip, which needs no division for its length.)
        let mut kqs = kq.chunks_exact_mut(hd);
        for (h, (((k, q), &sh), v)) in self
            .k
            .chunks_exact(hd)
            .zip(kqs.by_ref())
            .zip(sk.iter())
            .zip(self.v.chunks_exact(hd))
            .enumerate()
        {
            // The key's i16 form is its Q16 value · 2^−sh.
            quantize_at(k, sh as i32, kcode, q);
            for (i, &x) in v.iter().enumerate() {
                let d = h * hd + i;
                let at = if paired { paired_value(pos, d, kv2) } else { d };
                if let Some(o) = vrow.get_mut(at) {
                    *o = T::from_i32(vz.quantize(x));
                }
            }
        }
        let q = Query {
            heads: qh,
            shifts: sq,
        };
        let out = self
            .xb
            .get_mut(..d.q_dim)
            .ok_or(Error::InconsistentDimensions)?;
        let span = Span {
            layer: l,
            pos,
            start: m.attn.causal_start(pos),
        };
        match &m.position {
            Position::Alibi(b) => attend(&m.attn, cache, span, &q, b, self.att, out)?,
            Position::T5(b) => attend(&m.attn, cache, span, &q, b, self.att, out)?,
            _ => attend(&m.attn, cache, span, &q, &NoBias, self.att, out)?,
        }
        let att = self
            .xb
            .get(..d.q_dim)
            .ok_or(Error::InconsistentDimensions)?;
        let mut input = fresh(None);
        product(m, &w.wo, self.xb2, att, &mut input, self.xq, self.xs)?;
        if let Some(b) = w.o_bias {
            add_bias(self.xb2, b);
        }
        for (x, &a) in self.x.iter_mut().zip(self.xb2.iter()) {
            *x = x.saturating_add(a);
        }
        Ok(())
    }

    /// The feed-forward half: norm, SwiGLU, residual.
    fn ffn(&mut self, m: &Model<'_>, w: &LayerWeights<'_>) -> Result<(), Error> {
        let d = &m.dims;
        let norm = w.ffn_norm.as_ref().ok_or(Error::MissingTensor)?;
        let gate = w.w_gate.as_ref().ok_or(Error::IntegerUnsupported)?;
        let t = self
            .xb
            .get_mut(..d.dim)
            .ok_or(Error::InconsistentDimensions)?;
        let inv = rms_fold(self.x, norm.weight, m.norm.eps, t);
        let mut input = fresh(Some(inv));
        product(m, gate, self.hb, t, &mut input, self.xq, self.xs)?;
        product(m, &w.w_up, self.hb2, t, &mut input, self.xq, self.xs)?;
        if let Some(b) = w.b_gate {
            add_bias(self.hb, b);
        }
        if let Some(b) = w.b_up {
            add_bias(self.hb2, b);
        }
        for (h, &u) in self.hb.iter_mut().zip(self.hb2.iter()) {
            // silu(h) = h·σ(h) (Q16·Q15), times u (Q16).
            // |g| ≤ |h|: σ ≤ 1.
            let g = (mul_i64(*h, sigmoid_q15(*h) as i32) >> 15) as i32;
            *h = round_to_i32(mul_i64(g, u), ACT_FRAC);
        }
        let mut input = fresh(None);
        product(
            m, &w.w_down, self.xb2, self.hb, &mut input, self.xq, self.xs,
        )?;
        if let Some(b) = w.b_down {
            add_bias(self.xb2, b);
        }
        for (x, &a) in self.x.iter_mut().zip(self.xb2.iter()) {
            *x = x.saturating_add(a);
        }
        Ok(())
    }
}

/// The query heads in `i16` (the score scale folded in), each with its shift
/// (`q = q16 · 2^(shift − 16)`).
#[derive(Debug, Clone, Copy)]
struct Query<'q> {
    heads: &'q [i16],
    shifts: &'q [u8],
}

/// `v · s` for a Q16 value and a block-float factor, rounded (half up) and
/// saturated.
#[inline]
fn mul_scale(v: i32, s: Scale) -> i32 {
    let p = mul_i64(v, s.m);
    if s.e >= 0 {
        sat_i32(shift_i64(p, s.e))
    } else if s.e > -63 {
        round_to_i32(p, (-s.e) as u32)
    } else {
        0
    }
}

/// The mantissa `8..=15` of a cache scale code (see [`head_code`]).
#[inline(always)]
fn code_mant(c: u8) -> i32 {
    8 + (c & 7) as i32
}

/// The exponent `0..=31` of a cache scale code (see [`head_code`]).
#[inline(always)]
fn code_exp(c: u8) -> i32 {
    (c >> 3) as i32
}

/// Values of one layer of the int8 cache's values: positions rounded up to
/// even, times `kv_dim` rounded up to even ([`paired_value`]).
#[inline]
fn paired_layer(positions: usize, kv_dim: usize) -> usize {
    (positions + positions % 2) * (kv_dim + kv_dim % 2)
}

/// Where value `d` of position `p` sits in a layer of the int8 cache's
/// values (`kv2` = `kv_dim` rounded up to even): in blocks of two positions
/// (`2·kv2` bytes), value pair by value pair, the two positions' values
/// `2i`, `2i + 1` at bytes `4i .. 4i + 4` as `(a_2i, a_2i+1, b_2i, b_2i+1)`:
/// [`kernels_int::mix_pairs_i8`]'s layout, so that the value mix
/// multiply-adds two keys per DSP instruction.
#[inline(always)]
fn paired_value(p: usize, d: usize, kv2: usize) -> usize {
    (p / 2) * 2 * kv2 + (d / 2) * 4 + (p % 2) * 2 + d % 2
}

/// The int8 cache's value-mix weights for keys in pairs, from the softmax's
/// `e_j` and the value scale codes: `w_j = (e_j · mant_j) >> (base − exp_j)`
/// (below `2^15` by the choice of `base`), two keys a word in `out` (low half
/// the earlier), the first key in the high half when `odd` (its block's first
/// position is before the span, weight 0). Returns the words written.
#[inline(never)]
fn weight_pairs(e: &[i32], codes: &[u8], odd: bool, base: i32, out: &mut [i32]) -> usize {
    let w = |e: i32, c: u8| (e * code_mant(c)) >> (base - code_exp(c)).clamp(0, 31);
    let mut outs = out.iter_mut();
    let (mut e, mut codes) = (e, codes);
    let mut words = 0;
    if odd {
        if let (Some(o), Some((&e0, er)), Some((&c0, cr))) =
            (outs.next(), e.split_first(), codes.split_first())
        {
            *o = w(e0, c0) << 16;
            (e, codes) = (er, cr);
            words = 1;
        }
    }
    let (mut ep, mut cp) = (e.chunks_exact(2), codes.chunks_exact(2));
    // The pairs first in the zip: when they run out, no output is taken.
    for ((e2, c2), o) in ep.by_ref().zip(cp.by_ref()).zip(outs.by_ref()) {
        if let (Some(&[e0, e1]), Some(&[c0, c1])) = (e2.first_chunk::<2>(), c2.first_chunk::<2>()) {
            *o = w(e0, c0) | (w(e1, c1) << 16);
            words += 1;
        }
    }
    if let (Some(o), Some(&e0), Some(&c0)) =
        (outs.next(), ep.remainder().first(), cp.remainder().first())
    {
        *o = w(e0, c0);
        words += 1;
    }
    words
}

/// The scale code of one kv head of the cache, `x` in units of `2^unit` Q16
/// LSB, for values of `B = T::BITS` bits (`|q| ≤ Q = 2^B − 1`): the scale of
/// code `c` is `(8 + (c & 7)) · 2^((c >> 3) − 3 − B)` Q16 LSB, a 3-bit
/// mantissa and a 5-bit exponent, and the head's code is the smallest whose
/// `Q·s ≥ max|x|`. So the head's largest value maps to at least `Q·8/9` (all
/// but at most 0.17 of a bit of the group scale `max|x|/Q`), and the
/// attention applies a scale with one small multiply and one shift per key.
///
/// A row of the cache keeps one code for its keys and one for its values,
/// the largest of its heads' codes (codes order as their scales do): the
/// smallest code that covers every head (see [`quantize_at`]).
///
/// Range: 32 binades, from `2^−B` Q16 LSB (any head with `max|x| ≥ 1` LSB
/// fits above it) to `15·2^(28 − B)` (`Q·s > 2^31`: every `i32` fits); a
/// head of zeros has code 0.
fn head_code<T: Quantum>(x: &[i32], unit: i32) -> u8 {
    let max = x.iter().fold(0u32, |m, v| m.max(v.unsigned_abs()));
    if max == 0 {
        return 0;
    }
    let bits = T::BITS as i32;
    let qmax = (1u32 << T::BITS) - 1;
    let c = 15 * qmax;
    // The smallest g with c·2^g ≥ max: from the bit lengths, or one more.
    let (lm, lc) = (
        32 - max.leading_zeros() as i32,
        32 - c.leading_zeros() as i32,
    );
    let mut g = lm - lc;
    // c·2^g < 2^lm ≤ 2^32 and max·2^−g < 2^lc: both fit u32.
    let short = if g >= 0 {
        (c << g) < max
    } else {
        c < (max << -g)
    };
    if short {
        g += 1;
    }
    // The mantissa: ⌈max / (Q·2^g)⌉, in 8..=15 since g is the smallest.
    let k = if g >= 0 {
        let den = (qmax << g).max(1);
        max.div_ceil(den)
    } else {
        (max << -g).div_ceil(qmax)
    };
    let mut m = k.clamp(8, 15) - 8;
    let mut e = g + 3 + bits + unit;
    if e < 0 {
        (e, m) = (0, 0);
    } else if e > 31 {
        (e, m) = (31, 7);
    }
    ((e as u8) << 3) | m as u8
}

/// `x` (in units of `2^unit` Q16 LSB) quantized into `q` at the scale of
/// code `code` ([`Quantizer`]).
fn quantize_at<T: Quantum>(x: &[i32], unit: i32, code: u8, q: &mut [T]) {
    let z = Quantizer::new::<T>(unit, code);
    for (o, &v) in q.iter_mut().zip(x) {
        *o = T::from_i32(z.quantize(v));
    }
}

/// Values in units of `2^unit` Q16 LSB quantized at the scale `s` of a cache
/// code ([`head_code`]): `q = round(x / s)` (half away from zero, by integer
/// division), saturated at `±Q`.
#[derive(Debug, Clone, Copy)]
struct Quantizer {
    /// The scale in units of x is `mant·2^g`.
    g: i32,
    mant: u32,
    qmax: u32,
}

impl Quantizer {
    fn new<T: Quantum>(unit: i32, code: u8) -> Self {
        Quantizer {
            g: code_exp(code) - 3 - T::BITS as i32 - unit,
            mant: code_mant(code) as u32,
            qmax: (1u32 << T::BITS) - 1,
        }
    }

    #[inline]
    fn quantize(&self, v: i32) -> i32 {
        let (g, mant) = (self.g, self.mant);
        let a = v.unsigned_abs();
        let r = if g >= 0 {
            // mant·2^g with mant in 8..=15 and g ≤ 27: below 2^31, never 0.
            let den = mant << g.min(27);
            (a + den / 2).checked_div(den).unwrap_or(self.qmax)
        } else if a == 0 {
            0
        } else if a.leading_zeros() as i32 > -g {
            ((a << -g) + mant / 2) / mant
        } else {
            // a·2^−g ≥ 2^32 (only when the exponent was clamped at 31):
            // beyond Q·mant, so the value saturates.
            self.qmax
        };
        let r = r.min(self.qmax) as i32;
        if v < 0 {
            -r
        } else {
            r
        }
    }
}

/// The scores from the dot products in place: key `j`'s
/// `(dot_j · mant_j) >> (r − exp_j)` (its scale code's mantissa and exponent)
/// when `narrow` (the product fits `i32` and every shift is to the right),
/// else the same in `i64`, shifted either way and saturated. Returns the
/// largest score (`i32::MIN` for none). The second half of the scores on the
/// DSP targets and the M3, whose kernels compute the dot products (the
/// portable loops of [`attend`] fuse it with the dot product; the on-target
/// generation tests check the two give the same bits).
#[cfg(any(
    all(target_arch = "arm", target_abi = "eabihf"),
    all(
        target_arch = "arm",
        target_os = "none",
        target_abi = "eabi",
        target_endian = "little",
        target_has_atomic = "32"
    )
))]
#[inline(never)]
fn scores_from_dots(att: &mut [i32], codes: &[u8], r: i32, narrow: bool) -> i32 {
    let keys = att.iter_mut().zip(codes);
    let mut max = i32::MIN;
    if narrow {
        // `0 ≤ r − exp ≤ 31` for every key (see `attend`).
        for (a, &c) in keys {
            *a = (*a * code_mant(c)).wrapping_shr((r - code_exp(c)) as u32);
            max = max.max(*a);
        }
    } else {
        for (a, &c) in keys {
            *a = wide_score(*a as i64, c, r);
            max = max.max(*a);
        }
    }
    max
}

/// `dot · mant · 2^(exp − r)` of a key with scale code `c`, floored and
/// saturated to `i32`.
#[inline(always)]
fn wide_score(dot: i64, c: u8, r: i32) -> i32 {
    sat_i32(shift_i64(dot * code_mant(c) as i64, code_exp(c) - r))
}

/// `e_j = exp_q16(s_j − max)` in place of the scores `s_j`; returns their
/// sum. A function of its own so that the loop keeps its constants in
/// registers.
#[inline(never)]
fn exp_row(att: &mut [i32], max: i32) -> u64 {
    // Each e_j ≤ 2^16: below 2^16 keys the sum fits a u32 (one add a key).
    if att.len() < 1 << 16 {
        let mut sum = 0u32;
        for a in att.iter_mut() {
            let e = exp_q16(a.saturating_sub(max));
            sum += e;
            *a = e as i32;
        }
        return sum as u64;
    }
    let mut sum = 0u64;
    for a in att.iter_mut() {
        let e = exp_q16(a.saturating_sub(max));
        sum += e as u64;
        *a = e as i32;
    }
    sum
}

/// The value-mix weights in place of the `e_j`:
/// `w_j = (e_j · mant_j) >> (ev − exp_j + t)` with the value scale code's
/// mantissa and exponent (`ev` their largest exponent, `e_j · mant_j < 2^21`).
#[inline(never)]
fn weights_from_exps(att: &mut [i32], codes: &[u8], ev: i32, t: i32) {
    let base = ev + t;
    let keys = att.iter_mut().zip(codes);
    if base <= 31 {
        // Every shift `base − exp_j` is in 0..=31.
        for (a, &c) in keys {
            *a = (*a * code_mant(c)).wrapping_shr((base - code_exp(c)) as u32);
        }
    } else {
        for (a, &c) in keys {
            *a = (*a * code_mant(c)) >> (base - code_exp(c)).min(31);
        }
    }
}

/// Where a query attends: the layer, its position, the first key.
#[derive(Debug, Clone, Copy)]
struct Span {
    layer: usize,
    pos: usize,
    start: usize,
}

/// Attention of every query head over keys `start..=pos` of the layer, into
/// `out` (Q16, `[n_heads][head_dim]`).
///
/// With `s = (8 + m)·2^(e − 3 − B)` a cache scale ([`head_code`]) and
/// `q = q_i16·2^sq` (Q16, the score scale folded in), per head:
///
/// ```text
/// score_j = (dot(q_i16, k_j) · mant_j) >> (19 + B − sq − e_j)        Q16
/// e_j     = exp_q16(score_j − max),  S = Σ_j e_j
/// w_j     = (e_j · mant_j) >> (ev − e_j + t)                         ev = max_j e_j
/// out     = (Σ_j w_j·v_j) · (1/S) · 2^(ev + t − 3 − B)                Q16
/// ```
///
/// with `t ≥ 0` the smallest shift that keeps `Σ_j |w_j·v_j| < 2^31`. The
/// normalization `1/S` is applied once per output value, not per key.
#[allow(clippy::too_many_arguments)]
fn attend<T: CacheElem, B: ScoreBiasFixed>(
    cfg: &crate::attn::AttnConfig,
    cache: &IntCache<'_, T>,
    span: Span,
    query: &Query<'_>,
    bias: &B,
    att: &mut [i32],
    out: &mut [i32],
) -> Result<(), Error> {
    let hd = cfg.head_dim();
    let kv = cfg.kv_dim();
    let n = span.pos + 1 - span.start;
    let positions = cache.positions;
    let first = span.layer * positions + span.start;
    // int8 values: in blocks of two positions from the span's first block
    // ([`paired_value`]); int16: one row per position.
    let paired = T::BITS == 7;
    let kv2 = kv + kv % 2;
    let vrange = if paired {
        let layer = paired_layer(positions, kv);
        span.layer * layer + (span.start / 2) * 2 * kv2..(span.layer + 1) * layer
    } else {
        first * kv..(first + n) * kv
    };
    let got = att.len();
    let (Some((att, wbuf)), Some(keys), Some(values), Some(kc), Some(vc)) = (
        att.split_at_mut_checked(n),
        cache.keys.get(first * kv..(first + n) * kv),
        cache.values.get(vrange),
        // The rows' scale codes (one a row, every kv head's).
        cache.key_scales.get(first..first + n),
        cache.value_scales.get(first..first + n),
    ) else {
        return Err(Error::BufferTooSmall { needed: n, got });
    };
    let bits = T::BITS as i32;
    // A dot product times a mantissa fits i32 for int8 keys and heads of up
    // to 32: |q| ≤ 2^14.5 (two bits of headroom, RoPE's √2), |k| ≤ 127.
    let small = T::BITS == 7 && hd <= 32;
    // The largest key and value exponents of the span (the largest code has
    // the largest exponent), once for all heads.
    let ek = code_exp(kc.iter().fold(0, |m, &c| m.max(c)));
    let ev = code_exp(vc.iter().fold(0, |m, &c| m.max(c)));
    let qs = query.heads.chunks_exact(hd).zip(query.shifts);
    for (h, ((q, &sq), o)) in qs.zip(out.chunks_exact_mut(hd)).enumerate() {
        let kh = cfg.kv_head(h);
        let offset = kh * hd;
        // score_j = dot_j · mant_j · 2^(e_j − r) in Q16.
        let r = 19 + bits - sq as i32;
        // Narrow: every shift `r − exp_j` is in 0..=31.
        let narrow = small && r <= 31 && r >= ek;
        let mut max = i32::MIN;
        // The int8 cache on the DSP extension, heads of 8·b: the dot products
        // by the kernel (eight values a call), then each one's scale (the same
        // integers as below).
        #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
        let done = hd % 8 == 0
            && T::as_i8(keys).is_some_and(|k8| {
                // The first eight values store the sums, the others add to them.
                let all = q.chunks_exact(8).enumerate().all(|(b, qb)| {
                    qb.first_chunk::<8>().is_some_and(|qb| {
                        use crate::num::kernels_m4::dots_i8x8;
                        let at = offset + 8 * b;
                        if b == 0 {
                            dots_i8x8::<false>(qb, k8, kv, at, att)
                        } else {
                            dots_i8x8::<true>(qb, k8, kv, at, att)
                        }
                    })
                });
                if all {
                    max = scores_from_dots(att, kc, r, narrow);
                }
                all
            });
        // On ARMv7-M without it (the M3), the dot products by
        // `kernels_m3::key_dots_i16_i8`, then the same scaling.
        #[cfg(all(
            target_arch = "arm",
            target_os = "none",
            target_abi = "eabi",
            target_endian = "little",
            target_has_atomic = "32"
        ))]
        let done = T::as_i8(keys).is_some_and(|k8| {
            let all = crate::num::kernels_m3::key_dots_i16_i8(q, k8, kv, offset, att);
            if all {
                max = scores_from_dots(att, kc, r, narrow);
            }
            all
        });
        #[cfg(not(any(
            all(target_arch = "arm", target_abi = "eabihf"),
            all(
                target_arch = "arm",
                target_os = "none",
                target_abi = "eabi",
                target_endian = "little",
                target_has_atomic = "32"
            )
        )))]
        let done = false;
        let rows = att.iter_mut().zip(keys.chunks_exact(kv)).zip(kc);
        // The portable loops (the M3 and M0 run them), the regime chosen once
        // per head.
        if done {
        } else if narrow {
            for ((a, k), &c) in rows {
                let k = k.get(offset..offset + hd).unwrap_or_default();
                *a = (T::dot(q, k) as i32 * code_mant(c)).wrapping_shr((r - code_exp(c)) as u32);
            }
        } else {
            for ((a, k), &c) in rows {
                let k = k.get(offset..offset + hd).unwrap_or_default();
                *a = wide_score(T::dot(q, k), c, r);
            }
        }
        if B::ENABLED {
            bias.add_to_row_fixed(h, span.pos, span.start, att);
        }
        // The maximum (the kernel path's comes with its scores unless a bias
        // was added since).
        if B::ENABLED || !done {
            max = att.iter().fold(i32::MIN, |m, &a| m.max(a));
        }
        // e_j = exp(s_j − max) in Q16, their sum S ≥ 2^16 (the largest is 1).
        let sum = exp_row(att, max).max(1);
        // Σ_j w_j ≤ S·2^(4 − t) and |v| < 2^B: t keeps Σ_j |w_j·v_j| < 2^31.
        let t = (64 - sum.leading_zeros() as i32 + 4 + bits - 31).max(0);
        // The head's output accumulates the mix, then is scaled in place.
        let acc = o;
        acc.fill(0);
        match T::as_i8(values) {
            Some(v8) if paired => {
                // Weights below 2^15 (e_j·mant_j < 2^20, t ≥ 5), two keys a
                // word, and the mix over blocks of two keys.
                let words = weight_pairs(att, vc, span.start % 2 == 1, ev + t.max(5), wbuf);
                let w = wbuf.get(..words).unwrap_or_default();
                // The DSP kernel, four values a call, heads of 4·b.
                #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
                let done = hd % 4 == 0 && {
                    let all = acc.chunks_exact_mut(4).enumerate().all(|(b, a4)| {
                        a4.first_chunk_mut::<4>().is_some_and(|a4| {
                            let at = 2 * (offset + 4 * b);
                            crate::num::kernels_m4::mix_pairs_i8x4(w, v8, 2 * kv2, at, a4)
                        })
                    });
                    if !all {
                        acc.fill(0);
                    }
                    all
                };
                #[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
                let done = false;
                if !done {
                    kernels_int::mix_pairs_i8(acc, w, v8, 2 * kv2, offset);
                }
            }
            _ => {
                weights_from_exps(att, vc, ev, t);
                for (&w, v) in att.iter().zip(values.chunks_exact(kv)) {
                    let v = v.get(offset..offset + hd).unwrap_or_default();
                    T::axpy(acc, w, v);
                }
            }
        }
        // Q16 = acc · (1/S) · 2^(ev + t − 3 − B).
        let t = if paired { t.max(5) } else { t };
        let inv = Scale::ratio(1, sum);
        let sh = inv.e + ev + t - 3 - bits;
        for a in acc.iter_mut() {
            let p = mul_i64(*a, inv.m);
            *a = if sh < 0 {
                round_to_i32(p, (-sh).min(62) as u32)
            } else {
                sat_i32(shift_i64(p, sh))
            };
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attn::AttnConfig;

    /// The Q16 scale of a cache code for values of `bits` (`T::BITS`).
    fn code_scale(c: u8, bits: i32) -> f64 {
        code_mant(c) as f64 * 2f64.powi(code_exp(c) - 3 - bits)
    }

    /// `head_code` and `quantize_at` against their definitions: the code the
    /// smallest whose `Q·s` covers the head, and at it and at every larger
    /// code (a row's code serves heads of smaller values) each value within
    /// half a step with `|q| ≤ Q`, for int8 and int16, keys in units of
    /// `2^unit`.
    #[test]
    fn cache_quantization_follows_its_definition() {
        fn check<T: Quantum + Into<i32>>(rng: &mut XorShift32, unit: i32) {
            let bits = T::BITS as i32;
            let qmax = ((1i64 << bits) - 1) as f64;
            // Heads whose Q16 values `x·2^unit` are `i32`s.
            for i in 0..4000 {
                let mag = 1u32 << (i % (31 - unit));
                let x: Vec<i32> = (0..8)
                    .map(|_| ((rng.centered_unit() as f64) * mag as f64) as i32)
                    .collect();
                let mut q = vec![T::default(); 8];
                let c = head_code::<T>(&x, unit);
                let max = x.iter().map(|v| v.unsigned_abs()).max().unwrap() as f64;
                if max == 0.0 {
                    assert_eq!(c, 0);
                    continue;
                }
                // Scale in units of x.
                let s = code_scale(c, bits) * 2f64.powi(-unit);
                assert!(qmax * s >= max, "code {c}: {} < {max}", qmax * s);
                if c > 0 {
                    assert!(
                        qmax * code_scale(c - 1, bits) * 2f64.powi(-unit) < max,
                        "code {c}"
                    );
                }
                for c in [c, c + 1, c.saturating_add(9), c.saturating_add(40)] {
                    quantize_at(&x, unit, c, &mut q);
                    let s = code_scale(c, bits) * 2f64.powi(-unit);
                    for (&v, &q) in x.iter().zip(&q) {
                        let q: i32 = q.into();
                        assert!(q.unsigned_abs() as f64 <= qmax);
                        let err = (q as f64 * s - v as f64).abs();
                        assert!(err <= s / 2.0 + 1e-9, "{v}: {q}·{s} (code {c})");
                    }
                }
            }
        }
        let mut rng = XorShift32(5);
        for unit in [0, 3, 12] {
            check::<i8>(&mut rng, unit);
            check::<i16>(&mut rng, unit);
        }
    }

    /// The attention of random int8 caches against f64 arithmetic on the same
    /// dequantized values.
    #[test]
    fn attention_follows_f64() {
        let mut rng = XorShift32(23);
        let cfg = AttnConfig::new(8, 4, 8).unwrap();
        let (hd, kv, n) = (8, 32, 100);
        let mut keys = vec![0i8; n * kv];
        // Values in the int8 cache's blocks of two positions.
        let mut values = vec![0i8; paired_layer(n, kv)];
        let mut vrow = vec![0i8; hd];
        let mut ksc = vec![0u8; n];
        let mut vsc = vec![0u8; n];
        let mut kf = vec![0f64; n * kv];
        let mut vf = vec![0f64; n * kv];
        // Heads of unlike magnitudes, as one code a row serves them.
        let mags = [3.0, 0.4, 1.5, 0.1];
        for r in 0..n {
            let mut row = |m: f64| -> Vec<i32> {
                (0..kv)
                    .map(|d| (rng.centered_unit() as f64 * m * mags[d / hd] * 65536.0) as i32)
                    .collect()
            };
            let (krow, vrow32) = (row(1.0), row(0.7));
            let code = |x: &[i32]| x.chunks(hd).fold(0, |c, h| c.max(head_code::<i8>(h, 0)));
            let (kc, vc) = (code(&krow), code(&vrow32));
            (ksc[r], vsc[r]) = (kc, vc);
            for h in 0..4 {
                let at = r * kv + h * hd;
                quantize_at(&krow[h * hd..][..hd], 0, kc, &mut keys[at..][..hd]);
                quantize_at(&vrow32[h * hd..][..hd], 0, vc, &mut vrow);
                for d in 0..hd {
                    kf[at + d] = keys[at + d] as f64 * code_scale(kc, 7) / 65536.0;
                    values[paired_value(r, h * hd + d, kv)] = vrow[d];
                    vf[at + d] = vrow[d] as f64 * code_scale(vc, 7) / 65536.0;
                }
            }
        }
        let cache = IntCache {
            keys: &mut keys,
            values: &mut values,
            key_scales: &mut ksc,
            value_scales: &mut vsc,
            positions: n,
        };
        let qh: Vec<i16> = (0..64)
            .map(|_| (rng.centered_unit() * 16000.0) as i16)
            .collect();
        let sq = 4i32; // q = q16 · 2^(sq − 16)
        let shifts = [sq as u8; 8];
        let query = Query {
            heads: &qh,
            shifts: &shifts,
        };
        let mut att = vec![0i32; 2 * n];
        let mut out = vec![0i32; 64];
        // Whole cache; spans from odd and even first keys (a first key in
        // the second slot of its block), odd and even lengths, one key.
        for (start, pos) in [(0, n - 1), (3, n - 2), (1, 50), (6, 71), (7, 7), (0, 0)] {
            let span = Span {
                layer: 0,
                pos,
                start,
            };
            attend(&cfg, &cache, span, &query, &NoBias, &mut att, &mut out).unwrap();
            for h in 0..8 {
                let kh = h / 2;
                let s: Vec<f64> = (start..=pos)
                    .map(|j| {
                        (0..hd)
                            .map(|d| {
                                qh[h * hd + d] as f64
                                    * 2f64.powi(sq - 16)
                                    * kf[j * kv + kh * hd + d]
                            })
                            .sum::<f64>()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for d in 0..hd {
                    let want: f64 = (start..=pos)
                        .map(|j| e[j - start] / z * vf[j * kv + kh * hd + d])
                        .sum();
                    let got = out[h * hd + d] as f64 / 65536.0;
                    assert!(
                        (got - want).abs() < 2e-3,
                        "keys {start}..={pos}, head {h} dim {d}: {got} vs {want}"
                    );
                }
            }
        }
    }
    use crate::model::rmsnorm;
    use crate::num::q8;
    use microformer_testkit::XorShift32;

    /// Norm, quantization and product against f32 RMSNorm and `runq.c`'s
    /// quantization on the same weights: within the block-float scales' precision.
    #[test]
    fn norm_and_product_follow_the_float_step() {
        let mut rng = XorShift32(17);
        let (n, rows, group) = (64, 48, 32);
        for _ in 0..50 {
            let x: Vec<f32> = (0..n).map(|_| rng.centered_unit() * 4.0).collect();
            let g: Vec<f32> = (0..n).map(|_| 0.5 + rng.centered_unit().abs()).collect();
            let wq: Vec<i8> = (0..rows * n).map(|_| rng.next_u32() as i8).collect();
            let ws: Vec<f32> = (0..rows * n / group)
                .map(|_| 1e-3 + rng.centered_unit().abs() * 1e-2)
                .collect();
            // Float.
            let mut xb = vec![0f32; n];
            rmsnorm(&mut xb, &x, &g, 1e-5);
            let (mut fq, mut fs) = (vec![0i8; n], vec![0f32; n / group]);
            q8::quantize(&xb, group, &mut fq, &mut fs).unwrap();
            // Integer.
            let xi: Vec<i32> = x.iter().map(|&v| fixed_from_f32(v, 16)).collect();
            let mut t = vec![0i32; n];
            let inv = rms_fold(&xi, &g, 1e-5, &mut t);
            let m = Matrix::Q8 {
                values: &wq,
                scales: &ws,
                group,
                rows,
                cols: n,
            };
            let (mut xq, mut xs) = (vec![0i16; n], vec![0i32; n / group]);
            let mut got = vec![0i32; rows];
            matvec(
                &m,
                None,
                &mut got,
                &t,
                &mut fresh(Some(inv)),
                &mut xq,
                &mut xs,
            )
            .unwrap();
            // The scales in block-float form give the same bits.
            let (mut mw, mut tops) = (vec![0u16; ws.len()], vec![0u8; rows]);
            kernels_int::block_scales(&ws, n / group, &mut mw, &mut tops).unwrap();
            let block = Some(crate::image::BlockScales {
                mantissas: &mw,
                tops: &tops,
            });
            let mut by_block = vec![0i32; rows];
            let mut input = fresh(Some(inv));
            matvec(&m, block, &mut by_block, &t, &mut input, &mut xq, &mut xs).unwrap();
            assert_eq!(by_block, got);
            let mut input = fresh(Some(inv));
            let mut again = vec![0i32; rows];
            matvec(&m, None, &mut again, &t, &mut input, &mut xq, &mut xs).unwrap();
            assert_eq!(again, got);
            // The int16 input is the normed vector to within half its step (plus
            // the Q16 rounding of x and the scales' 2^-13).
            for (i, (&q, &want)) in xq.iter().zip(&xb).enumerate() {
                let step = xs[i / group] as f64 * 2f64.powi(input.exp);
                let v = q as f64 * step;
                let bound = step * 0.5 + want.abs() as f64 * 2f64.powi(-12) + 1e-4;
                assert!((v - want as f64).abs() <= bound, "{i}: {v} vs {want}");
            }
            // The float step's int8 scale is 32767/127 of the int16 step, as its max.
            for (&gi, &fsc) in xs.iter().zip(&fs) {
                let s = gi as f64 * 2f64.powi(input.exp) * 32767.0 / 127.0;
                assert!(((s - fsc as f64) / fsc as f64).abs() < 1e-3, "{s} vs {fsc}");
            }
            // The product of the integer step's own quantized input, in f64.
            for (r, &a) in got.iter().enumerate() {
                let mut want = 0.0f64;
                let mut mag = 0.0f64;
                for gi in 0..n / group {
                    let dot: i64 = (0..group)
                        .map(|k| wq[r * n + gi * group + k] as i64 * xq[gi * group + k] as i64)
                        .sum();
                    let c = dot as f64
                        * ws[r * n / group + gi] as f64
                        * (xs[gi] as f64 * 2f64.powi(input.exp));
                    want += c;
                    mag += c.abs();
                }
                let a = a as f64 / 65536.0;
                assert!(
                    (a - want).abs() <= mag * 2f64.powi(-13) + 2.0 / 65536.0,
                    "{a} vs {want}"
                );
            }
        }
    }
}
