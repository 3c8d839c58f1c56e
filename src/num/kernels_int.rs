//! The integer step's kernels (portable Rust): the Q8 matrix-vector product
//! (int8 weights × int16 activations) with block-float scales, the attention's `i16 × i8` score dot product and
//! its `i8` value mix. Every kernel is defined by the plain integer formula
//! written here; a core-specific version must give the same bits.
//!
//! The Q8 product. The input `x` comes quantized per group with one 15-bit
//! mantissa per group *aligned to one exponent for the whole vector*
//! (`x_real[g·group + k] = xq · xm[g] · 2^x_exp`, `xq` int16, see [`align_scales`]). A
//! weight group's f32 scale is read as bits: its 8-bit exponent field `e` and
//! its 15-bit mantissa `m = (1.mantissa as 24 bits) >> 9` (so the scale is
//! `m · 2^(e − 141)`; a zero exponent field is a zero scale). Per output row
//! `r`, with `E = max_g e` over the row's groups:
//!
//! ```text
//! mw[g] = m[g] >> (E − e[g])                       (0 when the shift reaches 15)
//! acc   = Σ_g dot_i32(w[r,g], xq[g]) · (mw[g] · xm[g])         i64, exact
//! out[r] = round(acc · 2^(E − 141 + x_exp + 16)), saturated     Q16
//! ```
//!
//! so the only shift is one per row, and a group costs a multiply and a
//! 64-bit multiply-accumulate beside its dot product. Aligning truncates the
//! mantissas of the smaller scales of a row (or of the vector): a group whose
//! scale is `2^−k` of the largest keeps `15 − k` bits, an absolute error of
//! at most `2^−15` of the largest group's contribution per group.
//!
//! The dot products are exact in integers, so any order of the int8 products
//! inside a group gives the same `dot`; the portable version takes four rows
//! at a time (each `x` load feeds four multiply-adds), four columns per
//! unrolled step.

use super::int::{round_to_i32, shift_i64, Scale};
use crate::Error;

/// The exponent field of an f32 scale (bits 23..31).
#[inline(always)]
const fn exp_field(bits: u32) -> u32 {
    (bits >> 23) & 0xff
}

/// The 15-bit mantissa of an f32 scale, aligned to the exponent field `top`
/// (`top ≥` its own; 0 for a zero scale or when it shifts out).
#[inline(always)]
pub const fn aligned_mantissa(bits: u32, top: u32) -> i32 {
    let e = exp_field(bits);
    let d = top.wrapping_sub(e);
    if e == 0 || d >= 15 {
        0
    } else {
        ((((bits & 0x7f_ffff) | 0x80_0000) >> 9) >> d) as i32
    }
}

/// The block-float scales of a vector's groups ([`Scale::pack`]ed, in place)
/// aligned to their largest exponent `E`: `s[g] = m[g] >> (E − e[g])` (15-bit
/// mantissas, 0 for a zero scale or one 15 binades below the largest);
/// returns `E`. The vector's group `g` is then `xq · s[g] · 2^E`.
pub fn align_scales(packed: &mut [i32]) -> i32 {
    let e = packed
        .iter()
        .map(|&p| Scale::unpack(p))
        .filter(|s| s.m != 0)
        .map(|s| s.e)
        .max()
        .unwrap_or(0);
    for p in packed.iter_mut() {
        let s = Scale::unpack(*p);
        let d = e - s.e;
        *p = if s.m == 0 || d >= 15 { 0 } else { s.m >> d };
    }
    e
}

/// One row of a Q8 matrix's f32 scales in block-float form, as the image
/// stores them ([`crate::image::BlockScales`]): the row's largest exponent
/// field ([`row_top`]) and each scale's [`aligned_mantissa`] at it. Exactly
/// the integers [`matvec_q8`] derives from the f32 scales, so the product
/// gives the same bits from either.
pub fn block_row(srow: &[f32]) -> (u8, impl Iterator<Item = u16> + '_) {
    let top = row_top(srow);
    // Exponent fields are 8 bits and aligned mantissas 15.
    let mantissas = srow
        .iter()
        .map(move |s| aligned_mantissa(s.to_bits(), top) as u16);
    (top as u8, mantissas)
}

/// [`block_row`] over a matrix's scales (`gpr` a row) into `mantissas` (one a
/// scale) and `tops` (one a row).
///
/// Errors: `gpr == 0` ([`Error::ZeroDimension`]); `scales.len()` not a
/// multiple of `gpr`, or output slices of other lengths than `scales.len()`
/// and `scales.len() / gpr` ([`Error::LengthMismatch`]).
pub fn block_scales(
    scales: &[f32],
    gpr: usize,
    mantissas: &mut [u16],
    tops: &mut [u8],
) -> Result<(), Error> {
    let rows = scales.len().checked_div(gpr).ok_or(Error::ZeroDimension)?;
    if rows * gpr != scales.len() || mantissas.len() != scales.len() || tops.len() != rows {
        return Err(Error::LengthMismatch {
            expected: scales.len(),
            got: mantissas.len(),
        });
    }
    for ((srow, mrow), t) in scales
        .chunks_exact(gpr)
        .zip(mantissas.chunks_exact_mut(gpr))
        .zip(tops.iter_mut())
    {
        let (top, ms) = block_row(srow);
        *t = top;
        for (m, v) in mrow.iter_mut().zip(ms) {
            *m = v;
        }
    }
    Ok(())
}

/// Whether `mantissas` and `tops` are the [`block_scales`] of `scales`
/// (`gpr` a row): what [`crate::image::Image::parse`] checks.
pub fn is_block_scales(scales: &[f32], gpr: usize, mantissas: &[u16], tops: &[u8]) -> bool {
    let Some(rows) = scales.len().checked_div(gpr) else {
        return false;
    };
    rows * gpr == scales.len()
        && mantissas.len() == scales.len()
        && tops.len() == rows
        && scales
            .chunks_exact(gpr)
            .zip(mantissas.chunks_exact(gpr))
            .zip(tops)
            .all(|((srow, mrow), &t)| {
                let (top, ms) = block_row(srow);
                top == t && ms.eq(mrow.iter().copied())
            })
}

/// `Σ w[i]·x[i]` of an int8 weight group and an int16 input group in `i32`
/// (exact for groups of up to 2^16 values).
#[inline(always)]
pub fn dot_i8_i16(w: &[i8], x: &[i16]) -> i32 {
    let mut acc = 0i32;
    for (&a, &b) in w.iter().zip(x) {
        acc += a as i32 * b as i32;
    }
    acc
}

/// `Σ q[i]·k[i]` of an `i16` query head and an int8 key head, in `i32`
/// (wrapping; `|Σ| < 2^31` whenever `len · 2^15 · 2^7 < 2^31`, i.e. heads up
/// to 128 dims).
#[inline(always)]
pub fn dot_i16_i8(q: &[i16], k: &[i8]) -> i32 {
    let mut acc = 0i32;
    for (&x, &y) in q.iter().zip(k) {
        acc = acc.wrapping_add(x as i32 * y as i32);
    }
    acc
}

/// `acc[i] += w·v[i]` (wrapping) for an int8 value head.
#[inline(always)]
pub fn axpy_i8(acc: &mut [i32], w: i32, v: &[i8]) {
    for (a, &x) in acc.iter_mut().zip(v) {
        *a = a.wrapping_add(w.wrapping_mul(x as i32));
    }
}

/// The value mix of a head of int8 values stored in pairs of keys: block `k`
/// (at `blocks[k·stride ..]`) holds two keys `a`, `b` value pair by value
/// pair, values `2p` and `2p + 1` of both at bytes `4p .. 4p + 4` as
/// `(a_2p, a_2p+1, b_2p, b_2p+1)`; `w[k]` holds their weights as `i16` (low
/// half `a`'s). `acc[i] += w_a·a_(first+i) + w_b·b_(first+i)` (wrapping) for
/// every block. The layout lets the DSP kernel
/// ([`crate::num::kernels_m4::mix_pairs_i8x4`]) multiply-add two keys per
/// `smlad`; blocks cut short are skipped (no panic path).
#[inline]
pub fn mix_pairs_i8(acc: &mut [i32], w: &[i32], blocks: &[i8], stride: usize, first: usize) {
    let mut first = first;
    let mut acc = acc;
    // Eight values at a time from an even value: the accumulators stay in
    // registers over the blocks.
    while first % 2 == 0 && acc.len() >= 8 {
        let Some((a8, rest)) = core::mem::take(&mut acc).split_first_chunk_mut::<8>() else {
            return;
        };
        mix_pairs_8(a8, w, blocks, stride, first);
        (acc, first) = (rest, first + 8);
    }
    for (k, &wp) in w.iter().enumerate() {
        let (wa, wb) = (wp as i16 as i32, wp >> 16);
        let Some(b) = k.checked_mul(stride).and_then(|at| blocks.get(at..)) else {
            return;
        };
        for (i, a) in acc.iter_mut().enumerate() {
            let d = first + i;
            let at = (d / 2) * 4 + d % 2;
            if let (Some(&va), Some(&vb)) = (b.get(at), b.get(at + 2)) {
                *a = a
                    .wrapping_add(wa.wrapping_mul(va as i32))
                    .wrapping_add(wb.wrapping_mul(vb as i32));
            }
        }
    }
}

/// [`mix_pairs_i8`] for eight values from an even value `first`, the
/// accumulators in registers (written out: a loop over the four value pairs
/// keeps them in memory on the M3).
#[inline(always)]
fn mix_pairs_8(acc: &mut [i32; 8], w: &[i32], blocks: &[i8], stride: usize, first: usize) {
    let [mut s0, mut s1, mut s2, mut s3, mut s4, mut s5, mut s6, mut s7] = *acc;
    let (Some(blocks), Some(stride)) = (
        blocks.get(2 * first..),
        core::num::NonZeroUsize::new(stride),
    ) else {
        return;
    };
    let mac = |s: i32, wa: i32, va: i8, wb: i32, vb: i8| {
        s.wrapping_add(wa.wrapping_mul(va as i32))
            .wrapping_add(wb.wrapping_mul(vb as i32))
    };
    for (&wp, b) in w.iter().zip(blocks.chunks(stride.get())) {
        let Some(&[a0, a1, b0, b1, a2, a3, b2, b3, a4, a5, b4, b5, a6, a7, b6, b7]) =
            b.first_chunk::<16>()
        else {
            break;
        };
        let (wa, wb) = (wp as i16 as i32, wp >> 16);
        s0 = mac(s0, wa, a0, wb, b0);
        s1 = mac(s1, wa, a1, wb, b1);
        s2 = mac(s2, wa, a2, wb, b2);
        s3 = mac(s3, wa, a3, wb, b3);
        s4 = mac(s4, wa, a4, wb, b4);
        s5 = mac(s5, wa, a5, wb, b5);
        s6 = mac(s6, wa, a6, wb, b6);
        s7 = mac(s7, wa, a7, wb, b7);
    }
    *acc = [s0, s1, s2, s3, s4, s5, s6, s7];
}

/// `Σ q[i]·k[i]` of an `i16` query head and an int16 key head, in `i64`.
#[inline(always)]
pub fn dot_i16_i16(q: &[i16], k: &[i16]) -> i64 {
    let mut acc = 0i64;
    for (&x, &y) in q.iter().zip(k) {
        acc += x as i64 * y as i64;
    }
    acc
}

/// `acc[i] += w·v[i]` (wrapping) for an int16 value head.
#[inline(always)]
pub fn axpy_i16(acc: &mut [i32], w: i32, v: &[i16]) {
    for (a, &x) in acc.iter_mut().zip(v) {
        *a = a.wrapping_add(w.wrapping_mul(x as i32));
    }
}

/// A KV cache element of the integer step: int8 or int16, with its head
/// kernels.
pub trait CacheElem: super::int::Quantum {
    /// `Σ q[i]·k[i]` exactly.
    fn dot(q: &[i16], k: &[Self]) -> i64;
    /// `acc[i] += w·v[i]` (wrapping).
    fn axpy(acc: &mut [i32], w: i32, v: &[Self]);
    /// The values as int8 when they are (the int8 cache's head kernels).
    fn as_i8(v: &[Self]) -> Option<&[i8]>;
}

impl CacheElem for i8 {
    #[inline(always)]
    fn dot(q: &[i16], k: &[i8]) -> i64 {
        dot_i16_i8(q, k) as i64
    }
    #[inline(always)]
    fn axpy(acc: &mut [i32], w: i32, v: &[i8]) {
        axpy_i8(acc, w, v)
    }
    #[inline(always)]
    fn as_i8(v: &[i8]) -> Option<&[i8]> {
        Some(v)
    }
}

impl CacheElem for i16 {
    #[inline(always)]
    fn dot(q: &[i16], k: &[i16]) -> i64 {
        dot_i16_i16(q, k)
    }
    #[inline(always)]
    fn axpy(acc: &mut [i32], w: i32, v: &[i16]) {
        axpy_i16(acc, w, v)
    }
    #[inline(always)]
    fn as_i8(_: &[i16]) -> Option<&[i8]> {
        None
    }
}

/// `Σ w[k]·x[k]` for four int8 rows against one int16 group, exact in `i32`
/// (groups of up to 2^16 values).
#[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
#[inline(always)]
pub(crate) fn dots4(w: [&[i8]; 4], x: &[i16]) -> [i32; 4] {
    let mut a = [0i32; 4];
    let n = x.len();
    let (Some(w0), Some(w1), Some(w2), Some(w3)) =
        (w[0].get(..n), w[1].get(..n), w[2].get(..n), w[3].get(..n))
    else {
        return a;
    };
    // Four columns a step over exact chunks (no bounds checks): each x value
    // feeds the four rows.
    let cols = x
        .chunks_exact(4)
        .zip(w0.chunks_exact(4))
        .zip(w1.chunks_exact(4))
        .zip(w2.chunks_exact(4))
        .zip(w3.chunks_exact(4));
    for ((((xc, r0), r1), r2), r3) in cols {
        let (x0, x1, x2, x3) = (xc[0] as i32, xc[1] as i32, xc[2] as i32, xc[3] as i32);
        a[0] += r0[0] as i32 * x0 + r0[1] as i32 * x1 + r0[2] as i32 * x2 + r0[3] as i32 * x3;
        a[1] += r1[0] as i32 * x0 + r1[1] as i32 * x1 + r1[2] as i32 * x2 + r1[3] as i32 * x3;
        a[2] += r2[0] as i32 * x0 + r2[1] as i32 * x1 + r2[2] as i32 * x2 + r2[3] as i32 * x3;
        a[3] += r3[0] as i32 * x0 + r3[1] as i32 * x1 + r3[2] as i32 * x2 + r3[3] as i32 * x3;
    }
    let k = n - n % 4;
    for ((((&xk, &b0), &b1), &b2), &b3) in x[k..]
        .iter()
        .zip(&w0[k..])
        .zip(&w1[k..])
        .zip(&w2[k..])
        .zip(&w3[k..])
    {
        let xk = xk as i32;
        a[0] += b0 as i32 * xk;
        a[1] += b1 as i32 * xk;
        a[2] += b2 as i32 * xk;
        a[3] += b3 as i32 * xk;
    }
    a
}

/// The row's result from its accumulator (see the module documentation).
#[inline(always)]
pub(crate) fn finish(acc: i64, top: u32, x_exp: i32) -> i32 {
    if top == 0 {
        return 0;
    }
    // acc · 2^(top − 141 + x_exp + 16), rounded: shift one bit further, round.
    let s = top as i32 - 141 + x_exp + 17;
    if (-62..=-32).contains(&s) {
        // The usual case, on the high word alone: `q = acc >> k` (k = −s in
        // 32..=62) fits `i32`, and the rounded `(q + 1) >> 1` is
        // `(q >> 1) + (q & 1)`, in range: what the general line below gives
        // (a 64-bit shift by a variable amount is a long branchy sequence on Arm).
        let q = ((acc >> 32) as i32) >> (-s - 32);
        return (q >> 1) + (q & 1);
    }
    round_to_i32(shift_i64(acc, s), 1)
}

/// The largest exponent field of a row's scales.
#[inline(always)]
pub fn row_top(srow: &[f32]) -> u32 {
    srow.iter()
        .map(|s| exp_field(s.to_bits()))
        .fold(0, |a, e| if e > a { e } else { a })
}

/// `out = W·x` for a Q8 matrix `W` (`out.len()` rows of `xq.len()` int8
/// values, one f32 scale per `group`) and an int16 input whose group scales
/// are the aligned mantissas `xm` with exponent `x_exp` ([`align_scales`]):
/// see the module documentation.
///
/// Errors: a zero group, or lengths that disagree ([`Error::LengthMismatch`]).
pub fn matvec_q8(
    out: &mut [i32],
    w: &[i8],
    ws: &[f32],
    xq: &[i16],
    xm: &[i32],
    x_exp: i32,
    group: usize,
) -> Result<(), Error> {
    let n = xq.len();
    if group == 0 || n % group != 0 || n == 0 {
        return Err(Error::ZeroDimension);
    }
    let gpr = n / group;
    let rows = out.len();
    if w.len() != rows * n || ws.len() != rows * gpr || xm.len() != gpr {
        return Err(Error::LengthMismatch {
            expected: rows * n,
            got: w.len(),
        });
    }
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    {
        let done = match group {
            4 => dsp::matvec_g4(out, w, ws, xq, xm, x_exp),
            8 => dsp::matvec::<2>(out, w, ws, xq, xm, x_exp),
            16 => dsp::matvec::<4>(out, w, ws, xq, xm, x_exp),
            32 => dsp::matvec::<8>(out, w, ws, xq, xm, x_exp),
            64 => dsp::matvec::<16>(out, w, ws, xq, xm, x_exp),
            128 => dsp::matvec::<32>(out, w, ws, xq, xm, x_exp),
            256 => dsp::matvec::<64>(out, w, ws, xq, xm, x_exp),
            _ => false,
        };
        if done {
            return Ok(());
        }
    }
    #[cfg(all(
        target_arch = "arm",
        target_os = "none",
        target_abi = "eabi",
        target_endian = "little",
        target_has_atomic = "32"
    ))]
    {
        let done = match group {
            4 => m3::matvec::<1>(out, w, ws, xq, xm, x_exp),
            8 => m3::matvec::<2>(out, w, ws, xq, xm, x_exp),
            16 => m3::matvec::<4>(out, w, ws, xq, xm, x_exp),
            32 => m3::matvec::<8>(out, w, ws, xq, xm, x_exp),
            64 => m3::matvec::<16>(out, w, ws, xq, xm, x_exp),
            128 => m3::matvec::<32>(out, w, ws, xq, xm, x_exp),
            256 => m3::matvec::<64>(out, w, ws, xq, xm, x_exp),
            _ => false,
        };
        if done {
            return Ok(());
        }
    }
    // The DSP targets take other group sizes (and anything the kernel
    // declines) one row at a time, panic-free; the portable four-row loop
    // below is the cores' without the DSP extension (and the host's).
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    return if last_rows(out, w, ws, xq, xm, x_exp, group) {
        Ok(())
    } else {
        Err(Error::InconsistentDimensions)
    };
    #[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
    portable(out, w, ws, xq, xm, x_exp, group, n, gpr);
    #[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
    Ok(())
}

/// [`matvec_q8`]'s four-row loop (lengths checked there).
#[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn portable(
    out: &mut [i32],
    w: &[i8],
    ws: &[f32],
    xq: &[i16],
    xm: &[i32],
    x_exp: i32,
    group: usize,
    n: usize,
    gpr: usize,
) {
    let mut outs = out.chunks_exact_mut(4);
    let mut wrows = w.chunks_exact(4 * n);
    let mut srows = ws.chunks_exact(4 * gpr);
    for ((o, w4), s4) in (&mut outs).zip(&mut wrows).zip(&mut srows) {
        let (s0, s1, s2, s3) = (
            &s4[..gpr],
            &s4[gpr..2 * gpr],
            &s4[2 * gpr..3 * gpr],
            &s4[3 * gpr..],
        );
        let top = [row_top(s0), row_top(s1), row_top(s2), row_top(s3)];
        let mut acc = [0i64; 4];
        for (g, (xg, &m)) in xq.chunks_exact(group).zip(xm).enumerate() {
            let at = g * group;
            let d = dots4(
                [
                    &w4[at..],
                    &w4[n + at..],
                    &w4[2 * n + at..],
                    &w4[3 * n + at..],
                ],
                xg,
            );
            for (r, s) in [s0, s1, s2, s3].iter().enumerate() {
                let mw = aligned_mantissa(s[g].to_bits(), top[r]);
                acc[r] += d[r] as i64 * (mw * m) as i64;
            }
        }
        for r in 0..4 {
            o[r] = finish(acc[r], top[r], x_exp);
        }
    }
    // The last rows, one at a time (lengths checked by the caller).
    last_rows(
        outs.into_remainder(),
        wrows.remainder(),
        srows.remainder(),
        xq,
        xm,
        x_exp,
        group,
    );
}

/// Rows of one group each (the Arm kernels' `one_group`): `out[r]` from the
/// row's dot product `dots[r]` and its one weight scale `scales[r]` (its own
/// largest exponent, so its mantissa unshifted), times the input's `m`.
#[cfg(all(
    target_arch = "arm",
    any(
        target_abi = "eabihf",
        all(target_os = "none", target_abi = "eabi", target_has_atomic = "32")
    )
))]
#[inline(always)]
fn one_scale_rows(out: &mut [i32], scales: &[f32], dots: &[i32], m: i32, x_exp: i32) {
    for ((o, &s), &d) in out.iter_mut().zip(scales).zip(dots) {
        let bits = s.to_bits();
        let top = exp_field(bits);
        *o = finish(
            d as i64 * (aligned_mantissa(bits, top) * m) as i64,
            top,
            x_exp,
        );
    }
}

/// The rows of `out` (fewer than four, after a kernel's blocks) from the rows
/// of `w` and `ws` left, one at a time with the plain group dot product, as
/// the portable loop computes each row. Rows cut off by `split_at_checked`
/// and groups by `get`: no panic path. `false` when a length does not fit
/// (impossible after [`matvec_q8`]'s checks). Not inlined: the kernels'
/// drivers call it for their last rows only.
#[inline(never)]
fn last_rows(
    out: &mut [i32],
    w: &[i8],
    ws: &[f32],
    xq: &[i16],
    xm: &[i32],
    x_exp: i32,
    group: usize,
) -> bool {
    let (n, gpr) = (xq.len(), xm.len());
    let (mut wrest, mut srest) = (w, ws);
    for o in out {
        let (Some((wrow, wn)), Some((srow, sn))) =
            (wrest.split_at_checked(n), srest.split_at_checked(gpr))
        else {
            return false;
        };
        (wrest, srest) = (wn, sn);
        let top = row_top(srow);
        let mut acc = 0i64;
        for (g, (&sw, &m)) in srow.iter().zip(xm).enumerate() {
            let at = g * group;
            let (Some(wg), Some(xg)) = (
                wrow.get(at..).and_then(|v| v.get(..group)),
                xq.get(at..).and_then(|v| v.get(..group)),
            ) else {
                return false;
            };
            let mw = aligned_mantissa(sw.to_bits(), top);
            acc += dot_i8_i16(wg, xg) as i64 * (mw * m) as i64;
        }
        *o = finish(acc, top, x_exp);
    }
    true
}

/// The Q8 product on the DSP extension (Cortex-M4, M33): the group dot
/// products of two rows at a time from [`crate::num::kernels_m4::dots2_i8_i16`],
/// the same scale arithmetic as the portable loop.
#[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
mod dsp {
    use super::{aligned_mantissa, finish, last_rows, one_scale_rows, row_top};
    use crate::num::kernels_m4::{dots2_i8_i16, dots4_blocks_i8_i16, row_g4_i8_i16};

    /// `out = W·x` for groups of 4 (lengths checked by the caller), one row
    /// at a time by [`row_g4_i8_i16`] (the scales applied in its loop); a row
    /// whose largest exponent field is outside the kernel's range goes to
    /// [`last_rows`]. `false` when nothing was done.
    pub(super) fn matvec_g4(
        out: &mut [i32],
        w: &[i8],
        ws: &[f32],
        xq: &[i16],
        xm: &[i32],
        x_exp: i32,
    ) -> bool {
        let (n, gpr) = (xq.len(), xm.len());
        if n == 0 || gpr == 0 {
            return false;
        }
        let mut wrows = w.chunks_exact(n);
        let mut srows = ws.chunks_exact(gpr);
        for o in out.iter_mut() {
            let (Some(wrow), Some(srow)) = (wrows.next(), srows.next()) else {
                return false;
            };
            let top = row_top(srow);
            *o = match row_g4_i8_i16(wrow, srow, xq, xm, 17 + top) {
                Some(acc) => finish(acc, top, x_exp),
                None => {
                    let mut one = [0i32];
                    if !last_rows(&mut one, wrow, srow, xq, xm, x_exp, 4) {
                        return false;
                    }
                    one[0]
                }
            };
        }
        true
    }

    /// Groups whose dot products one call computes (a stack buffer).
    const CHUNK: usize = 32;

    /// [`matvec`] for rows of one group (`xq.len() == 4·K`, the usual case
    /// of a small model's products: its width is one group): every four-row
    /// block in one call of [`dots4_blocks_i8_i16`], then two rows a call of
    /// [`dots2_i8_i16`], each row's one scale (its own largest exponent)
    /// applied on the spot, without [`matvec`]'s chunk loop.
    fn one_group<const K: usize>(
        out: &mut [i32],
        w: &[i8],
        ws: &[f32],
        xq: &[i16],
        xm: &[i32],
        x_exp: i32,
    ) -> bool {
        let n = xq.len();
        let (Some(&m), Some(n2)) = (xm.first(), n.checked_mul(2)) else {
            return false;
        };
        if n == 0 {
            return false;
        }
        // The dots of every four-row block into `out` in one call, then each
        // row's one scale applied in place.
        let done = dots4_blocks_i8_i16::<K>(w, xq, out);
        let (Some((head, out)), Some((sh, ws)), Some(w)) = (
            out.split_at_mut_checked(done),
            ws.split_at_checked(done),
            w.get(done * n..),
        ) else {
            return false;
        };
        for (o, s) in head.iter_mut().zip(sh) {
            let d = *o;
            one_scale_rows(
                core::slice::from_mut(o),
                core::slice::from_ref(s),
                &[d],
                m,
                x_exp,
            );
        }
        let mut outs = out.chunks_exact_mut(2);
        let mut wrows = w.chunks_exact(n2);
        let mut srows = ws.chunks_exact(2);
        for ((o, w2), s2) in (&mut outs).zip(&mut wrows).zip(&mut srows) {
            let Some((r0, r1)) = w2.split_at_checked(n) else {
                return false;
            };
            let mut d = [[0i32; 2]; 1];
            if dots2_i8_i16::<K>(r0, r1, xq, &mut d) != 1 {
                return false;
            }
            one_scale_rows(o, s2, &d[0], m, x_exp);
        }
        last_rows(
            outs.into_remainder(),
            wrows.remainder(),
            srows.remainder(),
            xq,
            xm,
            x_exp,
            4 * K,
        )
    }

    /// `out = W·x` for groups of `4·K` (lengths checked by the caller);
    /// `false` when nothing was done.
    pub(super) fn matvec<const K: usize>(
        out: &mut [i32],
        w: &[i8],
        ws: &[f32],
        xq: &[i16],
        xm: &[i32],
        x_exp: i32,
    ) -> bool {
        let group = 4 * K;
        let n = xq.len();
        let gpr = n / group;
        if gpr == 1 {
            return one_group::<K>(out, w, ws, xq, xm, x_exp);
        }
        // Non-zero row and scale strides, known to the compiler (no chunk-size
        // assertion left in the code).
        let (Some(n2), Some(g2)) = (n.checked_mul(2), gpr.checked_mul(2)) else {
            return false;
        };
        if gpr == 0 {
            return false;
        }
        let mut buf = [[0i32; 2]; CHUNK];
        let mut outs = out.chunks_exact_mut(2);
        let mut wrows = w.chunks_exact(n2);
        let mut srows = ws.chunks_exact(g2);
        for ((o, w2), s2) in (&mut outs).zip(&mut wrows).zip(&mut srows) {
            // Checked access only (`get`, `split_at_checked`): no panic path; a
            // failed check (impossible after the caller's length checks) hands
            // the product to the portable loop.
            let (Some((r0, r1)), Some((s0, s1))) =
                (w2.split_at_checked(n), s2.split_at_checked(gpr))
            else {
                return false;
            };
            let top = [row_top(s0), row_top(s1)];
            let mut acc = [0i64; 2];
            let mut g0 = 0;
            while g0 < gpr {
                let at = g0 * group;
                let chunk = (gpr - g0).min(CHUNK);
                let (Some(a), Some(b), Some(x), Some(buf)) = (
                    r0.get(at..),
                    r1.get(at..),
                    xq.get(at..),
                    buf.get_mut(..chunk),
                ) else {
                    return false;
                };
                let done = dots2_i8_i16::<K>(a, b, x, buf);
                // The scale slices after the assembly (fewer values live across it).
                if done != chunk {
                    return false;
                }
                let (sa, sb, xs) = (
                    s0.get(g0..).unwrap_or_default(),
                    s1.get(g0..).unwrap_or_default(),
                    xm.get(g0..).unwrap_or_default(),
                );
                for (((d, &w0), &w1), &m) in buf.iter().zip(sa).zip(sb).zip(xs) {
                    let m0 = aligned_mantissa(w0.to_bits(), top[0]);
                    let m1 = aligned_mantissa(w1.to_bits(), top[1]);
                    acc[0] += d[0] as i64 * (m0 * m) as i64;
                    acc[1] += d[1] as i64 * (m1 * m) as i64;
                }
                g0 += chunk;
            }
            o[0] = finish(acc[0], top[0], x_exp);
            o[1] = finish(acc[1], top[1], x_exp);
        }
        // An odd last row.
        last_rows(
            outs.into_remainder(),
            wrows.remainder(),
            srows.remainder(),
            xq,
            xm,
            x_exp,
            group,
        )
    }
}

/// The Q8 product on soft-float ARMv7-M (Cortex-M3): the group dot products
/// of four rows at a time from [`crate::num::kernels_m3::dots4_i8_i16`], the
/// same scale arithmetic as the portable loop.
#[cfg(all(
    target_arch = "arm",
    target_os = "none",
    target_abi = "eabi",
    target_endian = "little",
    target_has_atomic = "32"
))]
mod m3 {
    use super::{aligned_mantissa, dot_i8_i16, finish, last_rows, one_scale_rows, row_top};
    use crate::num::kernels_m3::{dots4_i8_i16, lsr_reg};

    /// Groups whose dot products one call computes (a stack buffer).
    const CHUNK: usize = 16;

    /// `acc + Σ_g dots[g][R]·(mw[g]·xm[g])` for row `R` of the four: its
    /// weight scales `ws` (from the chunk's first group on), aligned to `top`.
    #[inline(always)]
    fn scaled<const R: usize>(
        acc: i64,
        dots: &[[i32; 4]],
        ws: Option<&[f32]>,
        xm: &[i32],
        top: u32,
    ) -> i64 {
        let mut acc = acc;
        let groups = dots.iter().zip(ws.unwrap_or_default()).zip(xm);
        if (15..=238).contains(&top) {
            // The aligned mantissa as one register shift (see
            // `kernels_m3::lsr_reg`): `((bits << 8) | 2^31) >> (17 + top − e)`,
            // a shift of 32 or more giving 0 as `aligned_mantissa` does (a
            // zero exponent field or 15 binades below `top`); `17 + top` is
            // at most 255, the shifts Arm takes from the amount's low byte.
            let t = 17 + top;
            for ((d, &sw), &m) in groups {
                let bits = sw.to_bits();
                let mw = lsr_reg((bits << 8) | 0x8000_0000, t - ((bits << 1) >> 24)) as i32;
                acc += d[R] as i64 * (mw * m) as i64;
            }
        } else {
            for ((d, &sw), &m) in groups {
                let mw = aligned_mantissa(sw.to_bits(), top);
                acc += d[R] as i64 * (mw * m) as i64;
            }
        }
        acc
    }

    /// The four rows' scales of `s` (`4·gpr` values).
    #[inline(always)]
    fn rows4(s: &[f32], gpr: usize) -> Option<[&[f32]; 4]> {
        let (s0, s) = s.split_at_checked(gpr)?;
        let (s1, s) = s.split_at_checked(gpr)?;
        let (s2, s3) = s.split_at_checked(gpr)?;
        Some([s0, s1, s2, s3])
    }

    /// [`matvec`] for rows of one group (`xq.len() == 4·K`, a small
    /// model's usual product): four rows a call of [`dots4_i8_i16`], each
    /// row's one scale applied on the spot, without the chunk loop; the last
    /// rows by [`last_rows`].
    fn one_group<const K: usize>(
        out: &mut [i32],
        w: &[i8],
        ws: &[f32],
        xq: &[i16],
        xm: &[i32],
        x_exp: i32,
    ) -> bool {
        let n = xq.len();
        let (Some(&m), Some(n4)) = (xm.first(), n.checked_mul(4)) else {
            return false;
        };
        if n4 == 0 {
            return false;
        }
        let mut outs = out.chunks_exact_mut(4);
        let mut wrows = w.chunks_exact(n4);
        let mut srows = ws.chunks_exact(4);
        for ((o, w4), s4) in (&mut outs).zip(&mut wrows).zip(&mut srows) {
            let mut d = [[0i32; 4]; 1];
            if dots4_i8_i16::<K>(w4, n, xq, &mut d) != 1 {
                return false;
            }
            one_scale_rows(o, s4, &d[0], m, x_exp);
        }
        last_rows(
            outs.into_remainder(),
            wrows.remainder(),
            srows.remainder(),
            xq,
            xm,
            x_exp,
            4 * K,
        )
    }

    /// `out = W·x` for groups of `4·K` (lengths checked by the caller);
    /// `false` when nothing was done.
    pub(super) fn matvec<const K: usize>(
        out: &mut [i32],
        w: &[i8],
        ws: &[f32],
        xq: &[i16],
        xm: &[i32],
        x_exp: i32,
    ) -> bool {
        let group = 4 * K;
        let n = xq.len();
        let gpr = n / group;
        if gpr == 1 {
            return one_group::<K>(out, w, ws, xq, xm, x_exp);
        }
        // Non-zero strides, known to the compiler; rows cut off by
        // `split_at_checked`, groups by `get` (no zip of `chunks_exact`, whose
        // length is an out-of-line division): no panic path. A failed check
        // (impossible after the caller's length checks) hands the product to
        // the portable loop.
        let (Some(n4), Some(g4)) = (n.checked_mul(4), gpr.checked_mul(4)) else {
            return false;
        };
        if gpr == 0 || n4 == 0 || g4 == 0 {
            return false;
        }
        let mut buf = [[0i32; 4]; CHUNK];
        let mut outs = out.chunks_exact_mut(4);
        let (mut wrest, mut srest) = (w, ws);
        for o in &mut outs {
            let (Some((w4, wn)), Some((s4, sn))) =
                (wrest.split_at_checked(n4), srest.split_at_checked(g4))
            else {
                return false;
            };
            let Some([s0, s1, s2, s3]) = rows4(s4, gpr) else {
                return false;
            };
            wrest = wn;
            srest = sn;
            let top = [row_top(s0), row_top(s1), row_top(s2), row_top(s3)];
            let mut acc = [0i64; 4];
            let mut g0 = 0;
            while g0 < gpr {
                let at = g0 * group;
                let chunk = (gpr - g0).min(CHUNK);
                let (Some(wa), Some(x), Some(buf)) =
                    (w4.get(at..), xq.get(at..), buf.get_mut(..chunk))
                else {
                    return false;
                };
                if dots4_i8_i16::<K>(wa, n, x, buf) != chunk {
                    return false;
                }
                let xs = xm.get(g0..).unwrap_or_default();
                acc[0] = scaled::<0>(acc[0], buf, s0.get(g0..), xs, top[0]);
                acc[1] = scaled::<1>(acc[1], buf, s1.get(g0..), xs, top[1]);
                acc[2] = scaled::<2>(acc[2], buf, s2.get(g0..), xs, top[2]);
                acc[3] = scaled::<3>(acc[3], buf, s3.get(g0..), xs, top[3]);
                g0 += chunk;
            }
            for ((o, &a), &t) in o.iter_mut().zip(&acc).zip(&top) {
                *o = finish(a, t, x_exp);
            }
        }
        // The last rows (fewer than four), one at a time: `last_rows`'s loop
        // written out, since calling it here costs the M3's products 0.1 %
        // (aidreams260K, 1 563 426 → 1 565 171 instructions per token).
        for o in outs.into_remainder() {
            let (Some((wrow, wn)), Some((srow, sn))) =
                (wrest.split_at_checked(n), srest.split_at_checked(gpr))
            else {
                return false;
            };
            wrest = wn;
            srest = sn;
            let top = row_top(srow);
            let mut acc = 0i64;
            for (g, (&sw, &m)) in srow.iter().zip(xm).enumerate() {
                let at = g * group;
                let (Some(wg), Some(xg)) = (
                    wrow.get(at..).and_then(|v| v.get(..group)),
                    xq.get(at..).and_then(|v| v.get(..group)),
                ) else {
                    return false;
                };
                let mw = aligned_mantissa(sw.to_bits(), top);
                acc += dot_i8_i16(wg, xg) as i64 * (mw * m) as i64;
            }
            *o = finish(acc, top, x_exp);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use microformer_testkit::XorShift32;

    /// The product against an f64 model of the same quantized operands: the
    /// only differences are the 15-bit scale mantissas and the final rounding.
    #[test]
    fn matvec_matches_f64_model() {
        let mut rng = XorShift32(3);
        let (rows, n, group) = (7, 96, 32);
        for _ in 0..200 {
            let w: Vec<i8> = (0..rows * n).map(|_| rng.next_u32() as i8).collect();
            let ws: Vec<f32> = (0..rows * n / group)
                .map(|_| rng.centered_unit().abs() * 0.02 + 1e-4)
                .collect();
            let xq: Vec<i16> = (0..n).map(|_| rng.next_u32() as i16).collect();
            let xsf: Vec<f64> = (0..n / group)
                .map(|_| (rng.centered_unit().abs() as f64 + 0.01) / 127.0)
                .collect();
            let mut xs: Vec<i32> = xsf
                .iter()
                .map(|&s| {
                    Scale::ratio((s * 127.0 * 65536.0) as u64, 127)
                        .shl(-16)
                        .pack()
                })
                .collect();
            let packed = xs.clone();
            let x_exp = align_scales(&mut xs);
            let mut out = vec![0i32; rows];
            matvec_q8(&mut out, &w, &ws, &xq, &xs, x_exp, group).unwrap();
            for r in 0..rows {
                let mut want = 0.0f64;
                let mut mag = 0.0f64;
                for g in 0..n / group {
                    let mut dot = 0i64;
                    for k in 0..group {
                        dot += w[r * n + g * group + k] as i64 * xq[g * group + k] as i64;
                    }
                    let s = ws[r * n / group + g] as f64 * Scale::unpack(packed[g]).to_f64();
                    want += dot as f64 * s;
                    mag += (dot as f64).abs() * s;
                }
                let got = out[r] as f64 / 65536.0;
                // Mantissas truncated to 15 bits and aligned (up to 2^-15 of the
                // row's largest scale product per group), plus rounding.
                let big = (0..n / group)
                    .map(|g| ws[r * n / group + g] as f64 * Scale::unpack(packed[g]).to_f64())
                    .fold(0.0, f64::max);
                let bound = mag * 2f64.powi(-13)
                    + (n as f64 * 127.0 * 32767.0) * big * 2f64.powi(-14)
                    + 2.0 / 65536.0;
                assert!(
                    (got - want).abs() <= bound,
                    "{r}: {got} vs {want} ({bound})"
                );
            }
        }
        let mut out = [0i32; 2];
        assert!(matvec_q8(&mut out, &[0; 8], &[0.0; 2], &[0; 4], &[0; 1], 0, 4).is_ok());
        assert!(matvec_q8(&mut out, &[0; 8], &[0.0; 3], &[0; 4], &[0; 1], 0, 4).is_err());
        assert!(matvec_q8(&mut out, &[0; 6], &[0.0; 2], &[0; 4], &[0; 1], 0, 4).is_err());
        assert!(matvec_q8(&mut out, &[0; 8], &[0.0; 2], &[0; 4], &[0; 1], 0, 0).is_err());
    }

    /// `finish`'s high-word path is the general rounding line, on random
    /// accumulators of every size and every shift around its range.
    #[test]
    fn finish_is_the_rounded_shift() {
        let mut rng = XorShift32(17);
        for i in 0..200_000u32 {
            let wide = ((rng.next_u32() as u64) << 32 | rng.next_u32() as u64) as i64;
            let acc = wide >> (rng.next_u32() % 64);
            let top = 1 + rng.next_u32() % 254;
            let s = -70 + (i % 80) as i32;
            let x_exp = s - top as i32 + 141 - 17;
            let want = round_to_i32(shift_i64(acc, s), 1);
            assert_eq!(finish(acc, top, x_exp), want, "{acc} {top} {s}");
        }
        assert_eq!(finish(i64::MAX, 100, -32 - 100 + 141 - 17), 1 << 30);
        assert_eq!(finish(i64::MIN, 100, -32 - 100 + 141 - 17), -(1 << 30));
    }

    #[test]
    fn head_kernels_are_the_sums() {
        let q = [32767i16, -32768, 5, -7, 0, 1, 2, 3];
        let k = [127i8, -128, 1, 1, 9, -9, 100, -100];
        let want: i64 = q.iter().zip(&k).map(|(&a, &b)| a as i64 * b as i64).sum();
        assert_eq!(dot_i16_i8(&q, &k) as i64, want);
        let mut acc = [1i32; 8];
        axpy_i8(&mut acc, -3, &k);
        for (a, &v) in acc.iter().zip(&k) {
            assert_eq!(*a, 1 - 3 * v as i32);
        }
    }
}
