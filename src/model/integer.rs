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
//! integer instructions. The products ([`kernels_int::matvec_q8`]) align both
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
//!   [`crate::pos::rope::RopeRowQ15::rotate_heads`]); k and v
//!   stored in the cache (int8 or int16, [`crate::num::kernels_int::CacheElem`]),
//!   one [`Scale`] per kv head of a row;
//! - scores `q16·k` (the key scales aligned per head, a score one 64-bit
//!   product's high word), the fixed-point score bias of ALiBi or T5
//!   ([`ScoreBiasFixed`]); softmax with [`exp_q16`] on the max-subtracted
//!   scores and one reciprocal per head; the value mix `Σ_j w_j·v_j` in `i32`;
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
use crate::image::{FfnKind, NormKind, Residual};
use crate::num::int::{
    exp_q16, fixed_from_f32, group_scale_of, isqrt_u64, quantize_group_to, round_to_i32, sat_i32,
    shift_i64, sigmoid_q15, Scale, ACT_FRAC,
};
use crate::num::kernels_int::{self, CacheElem};
use crate::pos::rope::{RopeLayout, RopeRowQ15};
use crate::pos::{NoBias, Position, ScoreBiasFixed};
use crate::Error;

/// The integer step's KV cache: int8 or int16 rows `[layer][position][kv_dim]`
/// with one packed [`Scale`] per kv head of a row (see [`Scale::pack`]).
#[derive(Debug)]
pub(super) struct IntCache<'s, T> {
    pub(super) keys: &'s mut [T],
    pub(super) values: &'s mut [T],
    pub(super) key_scales: &'s mut [i32],
    pub(super) value_scales: &'s mut [i32],
    pub(super) positions: usize,
}

/// The integer step's buffers: the float session's arena reinterpreted (every
/// buffer is 4-byte values), plus the Q16 logits and the `i16` heads.
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
    pub(super) logits: &'a mut [i32],
    pub(super) heads: &'a mut [i16],
    pub(super) xq: &'a mut [i16],
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
    if m.dims.head_dim > 2 * MAX_PAIRS || m.attn.n_heads() > MAX_HEADS {
        return Err(Error::IntegerUnsupported);
    }
    Ok(())
}

/// Most heads the integer step handles (a stack array of shifts).
const MAX_HEADS: usize = 256;

/// Most rotary pairs a head may have in the integer step (a stack row of Q15
/// cos and sin).
const MAX_PAIRS: usize = 128;

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

/// `out = W·x` for the Q16 input `x` (`x.len() == cols`), quantizing `x` into
/// `xq`/`xs` with `W`'s group unless `input` already holds it.
fn matvec(
    w: &Matrix<'_>,
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
    kernels_int::matvec_q8(out, values, scales, xq, xs, input.exp, group)
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
        let a = v.unsigned_abs() as u64;
        ss = ss.saturating_add(a * a);
    }
    // eps in Q32 (the units of ss), times n.
    let eps = fixed_from_f32(eps, 32).max(0) as u64;
    let r = isqrt_u64(ss.saturating_add(eps.saturating_mul(n)));
    for ((o, &v), &g) in t.iter_mut().zip(x).zip(w) {
        let g = fixed_from_f32(g, 24) as i64;
        *o = round_to_i32(v as i64 * g, 24);
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

/// One integer forward pass for `token` at `pos`; the Q16 logits in `s.logits`.
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
    let mut rope_buf = [0u32; MAX_PAIRS];
    let rope = match &m.position {
        Position::Rope { table, layout } => Some((table.row_q15(pos, &mut rope_buf)?, *layout)),
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
    matvec(&m.output, s.logits, t, &mut input, s.xq, s.xs)?;
    if let Some(b) = m.output_bias {
        add_bias(s.logits, b);
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
                        let p = q as i64 * s.m as i64;
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
        matvec(&w.wq, self.q, t, &mut input, self.xq, self.xs)?;
        matvec(&w.wk, self.k, t, &mut input, self.xq, self.xs)?;
        matvec(&w.wv, self.v, t, &mut input, self.xq, self.xs)?;
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
        let mut sq = [0u8; MAX_HEADS];
        let mut sk = [0u8; MAX_HEADS];
        {
            let (qh, kh) = qk
                .split_at_mut_checked(d.q_dim)
                .ok_or(Error::InconsistentDimensions)?;
            heads_to_i16(self.q, qh, hd, &mut sq);
            heads_to_i16(self.k, kh, hd, &mut sk);
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
        let heads = d
            .kv_dim
            .checked_div(d.head_dim)
            .ok_or(Error::InconsistentDimensions)?;
        let (Some(kq), Some(vq), Some(ks), Some(vs)) = (
            cache.keys.get_mut(at..at + d.kv_dim),
            cache.values.get_mut(at..at + d.kv_dim),
            cache.key_scales.get_mut(row * heads..(row + 1) * heads),
            cache.value_scales.get_mut(row * heads..(row + 1) * heads),
        ) else {
            return Err(Error::PositionOutOfRange {
                position: pos,
                len: cache.positions,
            });
        };
        for (o, &h) in self.k.iter_mut().zip(kh.iter()) {
            *o = h as i32;
        }
        let (mut kqs, mut vqs) = (kq.chunks_exact_mut(hd), vq.chunks_exact_mut(hd));
        for ((((k, q), s), &sh), (v, (vq, vs))) in self
            .k
            .chunks_exact(hd)
            .zip(kqs.by_ref())
            .zip(ks.iter_mut())
            .zip(sk.iter())
            .zip(self.v.chunks_exact(hd).zip(vqs.by_ref().zip(vs.iter_mut())))
        {
            let kmax = quantize_group_to(k, q);
            *s = group_scale_of::<T>(kmax, ACT_FRAC as i32 - sh as i32).pack();
            *vs = group_scale_of::<T>(quantize_group_to(v, vq), ACT_FRAC as i32).pack();
        }
        let q = Query {
            heads: qh,
            shifts: &sq,
            scale: Scale::from_f32(m.attn.scale()),
        };
        let out = self
            .xb
            .get_mut(..d.q_dim)
            .ok_or(Error::InconsistentDimensions)?;
        let span = Span {
            layer_row: l * cache.positions,
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
        matvec(&w.wo, self.xb2, att, &mut input, self.xq, self.xs)?;
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
        matvec(gate, self.hb, t, &mut input, self.xq, self.xs)?;
        matvec(&w.w_up, self.hb2, t, &mut input, self.xq, self.xs)?;
        if let Some(b) = w.b_gate {
            add_bias(self.hb, b);
        }
        if let Some(b) = w.b_up {
            add_bias(self.hb2, b);
        }
        for (h, &u) in self.hb.iter_mut().zip(self.hb2.iter()) {
            // silu(h) = h·σ(h) (Q16·Q15), times u (Q16).
            let g = (*h as i64 * sigmoid_q15(*h) as i64) >> 15;
            *h = round_to_i32(g * u as i64, ACT_FRAC);
        }
        let mut input = fresh(None);
        matvec(&w.w_down, self.xb2, self.hb, &mut input, self.xq, self.xs)?;
        if let Some(b) = w.b_down {
            add_bias(self.xb2, b);
        }
        for (x, &a) in self.x.iter_mut().zip(self.xb2.iter()) {
            *x = x.saturating_add(a);
        }
        Ok(())
    }
}

/// The query heads in `i16`, each with its shift (`q = q16 · 2^(shift − 16)`),
/// and the attention's score scale.
#[derive(Debug, Clone, Copy)]
struct Query<'q> {
    heads: &'q [i16],
    shifts: &'q [u8],
    scale: Scale,
}

/// The packed scales of kv head `kh` in a run of rows of `heads` scales each.
#[inline(always)]
fn head_scales(packed: &[i32], kh: usize, heads: usize) -> impl Iterator<Item = Scale> + '_ {
    packed
        .get(kh..)
        .unwrap_or_default()
        .iter()
        .step_by(heads.max(1))
        .map(|&p| Scale::unpack(p))
}

/// Most kv heads whose largest scale exponents [`attend`] gathers in one pass
/// over the cache rows (two stack rows of this many `i32`).
const GATHER_HEADS: usize = 32;

/// Column `kh` of rows of `heads` packed scales: the scale of kv head `kh` at
/// each key (a plain strided walk; `heads` non-zero, so no panic path).
#[inline(always)]
fn column(
    packed: &[i32],
    kh: usize,
    heads: core::num::NonZeroUsize,
) -> impl Iterator<Item = i32> + '_ {
    packed
        .chunks_exact(heads.get())
        .map(move |row| row.get(kh).copied().unwrap_or(0))
}

/// The scores from the int8 cache's dot products, in place: key `j`'s
/// `dot_j · P_j · 2^(c − 32)` with `P_j = m · aligned(s_j, ek)` (`s_j` the
/// key scale of kv head `kh` in rows of `heads` packed scales), as the
/// portable loops of [`attend`] compute it: the high word of `dot · (P·2^c)`
/// for `c ≤ 0`, `(dot · P) >> (32 − c)` saturated for `0 < c < 32`, and the
/// saturating shift above. The regime is chosen once; a function of its own
/// so that the loop gets the registers. Returns the largest score
/// (`i32::MIN` for none). (The DSP targets'; the portable loops fuse it with
/// the dot product, and the on-target generation tests check the two give
/// the same bits.)
#[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
#[inline(never)]
fn scores_from_dots(
    att: &mut [i32],
    ks: &[i32],
    kh: usize,
    heads: core::num::NonZeroUsize,
    m: i32,
    ek: i32,
    c: i32,
) -> i32 {
    let keys = att.iter_mut().zip(column(ks, kh, heads));
    let pk = |p: i32| m * aligned(Scale::unpack(p), ek);
    let mut max = i32::MIN;
    if c <= 0 {
        let sh = -c.max(-31);
        for (a, p) in keys {
            *a = ((*a as i64).wrapping_mul((pk(p) >> sh) as i64) >> 32) as i32;
            max = max.max(*a);
        }
    } else if c < 32 {
        let sh = (32 - c) as u32;
        for (a, p) in keys {
            *a = sat_shr((*a as i64).wrapping_mul(pk(p) as i64), sh);
            max = max.max(*a);
        }
    } else {
        for (a, p) in keys {
            *a = sat_i32(shift_i64((*a as i64).wrapping_mul(pk(p) as i64), c - 32));
            max = max.max(*a);
        }
    }
    max
}

/// The value-mix weights from the softmax's `e_j`, in place: `w_j =
/// shift_sat(t_j · aligned(v_j, ev), −s2)` with `t_j = (e_j · inv_m) >> 15`
/// (`v_j` the value scale of kv head `kh`), the direction of the shift chosen
/// once. A function of its own, as [`scores_from_dots`].
#[inline(never)]
fn weights_from_exps(
    att: &mut [i32],
    vs: &[i32],
    kh: usize,
    heads: core::num::NonZeroUsize,
    inv_m: i32,
    ev: i32,
    s2: i32,
) {
    let keys = att.iter_mut().zip(column(vs, kh, heads));
    let tv = |e: i32, p: i32| {
        let t = ((e as u32).wrapping_mul(inv_m as u32)) >> 15;
        (t as i32).wrapping_mul(aligned(Scale::unpack(p), ev))
    };
    if s2 >= 0 {
        let sh = s2.min(31) as u32;
        for (a, p) in keys {
            *a = if sh >= 31 { 0 } else { tv(*a, p) >> sh };
        }
    } else {
        for (a, p) in keys {
            *a = shift_sat(tv(*a, p), -s2);
        }
    }
}

/// `e_j = exp_q16(s_j − max)` in place of the scores `s_j`; returns their
/// saturating sum. A function of its own so that the loop keeps its
/// constants in registers.
#[inline(never)]
fn exp_row(att: &mut [i32], max: i32) -> u32 {
    let mut sum = 0u32;
    for a in att.iter_mut() {
        let e = exp_q16(a.saturating_sub(max));
        sum = sum.saturating_add(e);
        *a = e as i32;
    }
    sum
}

/// `sat_i32(v >> sh)` for `sh` in `1..=31`, on the halves of `v` (32-bit
/// shifts only; a 64-bit shift by a variable amount is a branchy sequence on
/// Arm): `v >> sh` fits `i32` iff `hi >> (sh − 1)` is 0 or −1, and is then
/// `(lo >> sh) | (hi << (32 − sh))`.
#[inline(always)]
fn sat_shr(v: i64, sh: u32) -> i32 {
    let (hi, lo) = ((v >> 32) as i32, v as u32);
    let top = hi >> (sh - 1);
    if top == 0 || top == -1 {
        ((lo >> sh) | ((hi as u32) << (32 - sh))) as i32
    } else if hi < 0 {
        i32::MIN
    } else {
        i32::MAX
    }
}

/// A scale's mantissa aligned to the exponent `top ≥ s.e` (0 when it shifts out).
#[inline(always)]
fn aligned(s: Scale, top: i32) -> i32 {
    let d = (top - s.e) as u32;
    if d >= 15 {
        0
    } else {
        s.m >> d
    }
}

/// `v · 2^c` for a non-negative `v` < 2^31: a right shift (floor) for negative
/// `c`, a left shift saturating at `i32::MAX` for positive `c`.
#[inline(always)]
fn shift_sat(v: i32, c: i32) -> i32 {
    if c >= 0 {
        if c >= 31 || v > (i32::MAX >> c) {
            if v == 0 {
                0
            } else {
                i32::MAX
            }
        } else {
            v << c
        }
    } else if c <= -31 {
        0
    } else {
        v >> -c
    }
}

/// Where a query attends: the layer's first cache row, its position, the first key.
#[derive(Debug, Clone, Copy)]
struct Span {
    layer_row: usize,
    pos: usize,
    start: usize,
}

/// Attention of every query head over keys `start..=pos` of the layer, into
/// `out` (Q16, `[n_heads][head_dim]`).
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
    let first = span.layer_row + span.start;
    let heads = cfg.n_kv_heads();
    let (Some(att), Some(keys), Some(values), Some(ks), Some(vs)) = (
        att.get_mut(..n),
        cache.keys.get(first * kv..(first + n) * kv),
        cache.values.get(first * kv..(first + n) * kv),
        cache.key_scales.get(first * heads..(first + n) * heads),
        cache.value_scales.get(first * heads..(first + n) * heads),
    ) else {
        return Err(Error::BufferTooSmall {
            needed: n,
            got: att.len(),
        });
    };
    let Some(heads_nz) = core::num::NonZeroUsize::new(heads) else {
        return Err(Error::ZeroDimension);
    };
    // The largest key and value scale exponents of every kv head over the
    // keys seen, in one pass over the rows (each is shared by the query heads
    // of its group); models with more kv heads gather them per query head.
    let mut ek_of = [i32::MIN; GATHER_HEADS];
    let mut ev_of = [i32::MIN; GATHER_HEADS];
    let gathered = match (ek_of.get_mut(..heads), ev_of.get_mut(..heads)) {
        (Some(eks), Some(evs)) => {
            // `by_ref`: a plain `Zip` (the specialised one divides by the
            // chunk size out of line, a panic path).
            let mut vrows = vs.chunks_exact(heads_nz.get());
            for (kr, vr) in ks.chunks_exact(heads_nz.get()).zip(vrows.by_ref()) {
                for ((ek, &k), (ev, &v)) in eks.iter_mut().zip(kr).zip(evs.iter_mut().zip(vr)) {
                    *ek = (*ek).max(Scale::unpack(k).e);
                    *ev = (*ev).max(Scale::unpack(v).e);
                }
            }
            true
        }
        _ => false,
    };
    let max_exp = |of: &[i32; GATHER_HEADS], packed: &[i32], kh: usize| match of.get(kh) {
        Some(&e) if gathered => e,
        _ => head_scales(packed, kh, heads).fold(i32::MIN, |a, s| a.max(s.e)),
    };
    let qs = query.heads.chunks_exact(hd).zip(query.shifts);
    for (h, ((q, &sq), o)) in qs.zip(out.chunks_exact_mut(hd)).enumerate() {
        let kh = cfg.kv_head(h);
        let offset = kh * hd;
        // Scores in Q16: the key scales aligned to their largest exponent
        // `ek`, so that a score is `dot · pk[j]` taken from the high word of
        // one 64-bit product: `pk[j] = (base.m · mk[j]) · 2^c` with `c` fixed
        // for the head (the real score is `dot · base.m · mk[j] · 2^(base.e + ek)`).
        let base = query.scale.shl(sq as i32 - ACT_FRAC as i32);
        let ek = max_exp(&ek_of, ks, kh);
        // Q16 = product · 2^(base.e + ek + 16) = hi32(product · 2^(base.e + ek + 48)).
        let c = base.e + ek + ACT_FRAC as i32 + 32;
        let mut max = i32::MIN;
        // The int8 cache on the DSP extension, heads of 8·b: the dot products
        // by the kernel (eight values a call), then each one's high word
        // against its key's multiplier `P·2^c` (the same integers as below).
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
                    // Each score from its dot product and key scale, as below
                    // (with their maximum).
                    max = scores_from_dots(att, ks, kh, heads_nz, base.m, ek, c);
                }
                all
            });
        #[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
        let done = false;
        let rows = att
            .iter_mut()
            .zip(keys.chunks_exact(kv))
            .zip(column(ks, kh, heads_nz));
        let pk = |p: i32| base.m * aligned(Scale::unpack(p), ek);
        // The portable loops (the M3 and M0 run them), the regime of `c`
        // chosen once per head.
        if done {
        } else if c <= 0 {
            // The high word of `dot · (P · 2^c)`.
            let sh = -c.max(-31);
            for ((a, k), p) in rows {
                let k = k.get(offset..offset + hd).unwrap_or_default();
                *a = (T::dot(q, k).wrapping_mul((pk(p) >> sh) as i64) >> 32) as i32;
            }
        } else if c < 32 {
            // `(dot · P) >> (32 − c)`, saturated.
            let sh = (32 - c) as u32;
            for ((a, k), p) in rows {
                let k = k.get(offset..offset + hd).unwrap_or_default();
                *a = sat_shr(T::dot(q, k).wrapping_mul(pk(p) as i64), sh);
            }
        } else {
            // Large key scales: `(dot · P) · 2^(c − 32)`, saturated.
            for ((a, k), p) in rows {
                let k = k.get(offset..offset + hd).unwrap_or_default();
                *a = sat_i32(shift_i64(T::dot(q, k).wrapping_mul(pk(p) as i64), c - 32));
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
        // e_j = exp(s_j − max) in Q16, their sum.
        let sum = exp_row(att, max);
        let inv = Scale::ratio(1, sum as u64);
        // out = Σ_j w_j·v_j · 2^(ev − f) with the value scales aligned to `ev`
        // and w_j = p_j · mv[j] · 2^f (p_j = e_j·inv), `f` as large as the i32
        // sums allow: Σ_j w_j ≤ 2^(15 + f) ≤ 2^(31 − BITS) (Σ p_j = 1), so
        // Σ_j w_j·|v| < 2^31. Per key: t = (e_j·inv.m) >> 15, w_j = (t·mv) >> s2.
        let ev = max_exp(&ev_of, vs, kh);
        let f = 16 - T::BITS as i32;
        let s2 = -(inv.e + f + 15);
        let mut acc = [0i32; 2 * MAX_PAIRS];
        let acc = acc.get_mut(..hd).ok_or(Error::IntegerUnsupported)?;
        // w_j from e_j and the value scale, in place of e_j.
        weights_from_exps(att, vs, kh, heads_nz, inv.m, ev, s2);
        // The int8 cache on the Arm targets with the kernels, heads of 4·b:
        // the kernel's sums, four values a call, in registers.
        #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
        let done = hd % 4 == 0
            && T::as_i8(values).is_some_and(|v8| {
                let all = acc.chunks_exact_mut(4).enumerate().all(|(b, a4)| {
                    a4.first_chunk_mut::<4>().is_some_and(|a4| {
                        crate::num::kernels_m4::mix_i8x4(att, v8, kv, offset + 4 * b, a4)
                    })
                });
                if !all {
                    acc.fill(0);
                }
                all
            });
        #[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
        let done = false;
        if !done {
            for (&w, v) in att.iter().zip(values.chunks_exact(kv)) {
                let v = v.get(offset..offset + hd).unwrap_or_default();
                T::axpy(acc, w, v);
            }
        }
        // Q16 = acc · 2^(ev − f + 16).
        let sh = ev - f + ACT_FRAC as i32;
        for (o, &a) in o.iter_mut().zip(acc.iter()) {
            *o = if sh < 0 {
                round_to_i32(a as i64, (-sh) as u32)
            } else {
                sat_i32(shift_i64(a as i64, sh))
            };
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attn::AttnConfig;
    use crate::num::int::{group_scale, quantize_group};

    /// `sat_shr` is `sat_i32(v >> sh)` for every shift, on edge and random values.
    #[test]
    fn sat_shr_is_the_saturated_shift() {
        let mut rng = XorShift32(41);
        let mut vals = std::vec![0i64, 1, -1, i64::MAX, i64::MIN, 1 << 62, -(1 << 62)];
        for k in 0..63 {
            vals.extend([1i64 << k, (1i64 << k) - 1, -(1i64 << k), -(1i64 << k) + 1]);
        }
        for _ in 0..20_000 {
            let v = ((rng.next_u32() as u64) << 32 | rng.next_u32() as u64) as i64;
            vals.push(v >> (rng.next_u32() % 64));
        }
        for &v in &vals {
            for sh in 1..=31u32 {
                assert_eq!(sat_shr(v, sh), sat_i32(v >> sh), "{v} >> {sh}");
            }
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
        let mut values = vec![0i8; n * kv];
        let mut ksc = vec![0i32; n * 4];
        let mut vsc = vec![0i32; n * 4];
        let mut kf = vec![0f64; n * kv];
        let mut vf = vec![0f64; n * kv];
        for r in 0..n {
            for h in 0..4 {
                let mut row: Vec<i32> = (0..hd)
                    .map(|_| (rng.centered_unit() * 3.0 * 65536.0) as i32)
                    .collect();
                let ks = group_scale(quantize_group(&row, &mut keys[r * kv + h * hd..][..hd]), 16);
                ksc[r * 4 + h] = ks.pack();
                for d in 0..hd {
                    kf[r * kv + h * hd + d] = keys[r * kv + h * hd + d] as f64 * ks.to_f64();
                }
                row.iter_mut()
                    .for_each(|v| *v = (rng.centered_unit() * 2.0 * 65536.0) as i32);
                let vs = group_scale(
                    quantize_group(&row, &mut values[r * kv + h * hd..][..hd]),
                    16,
                );
                vsc[r * 4 + h] = vs.pack();
                for d in 0..hd {
                    vf[r * kv + h * hd + d] = values[r * kv + h * hd + d] as f64 * vs.to_f64();
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
            scale: Scale::from_f32(cfg.scale()),
        };
        let mut att = vec![0i32; n];
        let mut out = vec![0i32; 64];
        let span = Span {
            layer_row: 0,
            pos: n - 1,
            start: 0,
        };
        attend(&cfg, &cache, span, &query, &NoBias, &mut att, &mut out).unwrap();
        for h in 0..8 {
            let kh = h / 2;
            let s: Vec<f64> = (0..n)
                .map(|j| {
                    (0..hd)
                        .map(|d| {
                            qh[h * hd + d] as f64 * 2f64.powi(sq - 16) * kf[j * kv + kh * hd + d]
                        })
                        .sum::<f64>()
                        * cfg.scale() as f64
                })
                .collect();
            let m = s.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for d in 0..hd {
                let want: f64 = (0..n).map(|j| e[j] / z * vf[j * kv + kh * hd + d]).sum();
                let got = out[h * hd + d] as f64 / 65536.0;
                assert!(
                    (got - want).abs() < 2e-3,
                    "head {h} dim {d}: {got} vs {want}"
                );
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
            matvec(&m, &mut got, &t, &mut fresh(Some(inv)), &mut xq, &mut xs).unwrap();
            let mut input = fresh(Some(inv));
            let mut again = vec![0i32; rows];
            matvec(&m, &mut again, &t, &mut input, &mut xq, &mut xs).unwrap();
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
