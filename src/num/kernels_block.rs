//! The integer step's Q8 product for weight scales stored in block-float form
//! (an image with [`crate::image::FLAG_Q8_BLOCK_SCALES`]): [`matvec_q8_block`].
//!
//! [`kernels_int::matvec_q8`](super::kernels_int::matvec_q8) reads each
//! weight group's f32 scale as bits and, per row and token, finds the row's
//! largest exponent field `E` and shifts every mantissa to it. Those integers
//! depend on the weights alone, so the converter stores them
//! ([`crate::image::BlockScales`], made by
//! [`block_scales`](super::kernels_int::block_scales)): per row `E`, per group
//! the aligned mantissa `mw[g]`. The product here reads them instead:
//!
//! ```text
//! acc    = Σ_g dot_i32(w[r,g], xq[g]) · (mw[g] · xm[g])         i64, exact
//! out[r] = round(acc · 2^(E − 141 + x_exp + 16)), saturated      Q16
//! ```
//!
//! the formula of `matvec_q8`, with the same integers: the same bits from
//! either form of the scales (a host test and an on-target case compare them).
//! What it saves is the decoding: on the M4F, llama2.c's `w2` (groups of 4)
//! goes from 20 to 15 instructions a group and loses its per-row pass over the
//! scales; on the M3 a row's group scale is a load, not seven instructions.

use super::kernels_int::{dot_i8_i16, finish};
use crate::Error;

/// `out = W·x` for a Q8 matrix `W` (`out.len()` rows of `xq.len()` int8
/// values) whose group scales are the block-float `mw` (one per group,
/// row-major) and `tops` (one per row), and an int16 input with aligned group
/// scales `xm` and exponent `x_exp`
/// ([`align_scales`](super::kernels_int::align_scales)): see the module
/// documentation.
///
/// Errors: a zero group or one that does not divide the input
/// ([`Error::ZeroDimension`]), or lengths that disagree
/// ([`Error::LengthMismatch`]).
#[allow(clippy::too_many_arguments)]
pub fn matvec_q8_block(
    out: &mut [i32],
    w: &[i8],
    mw: &[u16],
    tops: &[u8],
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
    if w.len() != rows * n || mw.len() != rows * gpr || tops.len() != rows || xm.len() != gpr {
        return Err(Error::LengthMismatch {
            expected: rows * n,
            got: w.len(),
        });
    }
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    {
        let done = match group {
            4 => dsp::g4(out, w, mw, tops, xq, xm, x_exp),
            8 => dsp::matvec::<2>(out, w, mw, tops, xq, xm, x_exp),
            16 => dsp::matvec::<4>(out, w, mw, tops, xq, xm, x_exp),
            32 => dsp::matvec::<8>(out, w, mw, tops, xq, xm, x_exp),
            64 => dsp::matvec::<16>(out, w, mw, tops, xq, xm, x_exp),
            128 => dsp::matvec::<32>(out, w, mw, tops, xq, xm, x_exp),
            256 => dsp::matvec::<64>(out, w, mw, tops, xq, xm, x_exp),
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
            4 => m3::matvec::<1>(out, w, mw, tops, xq, xm, x_exp),
            8 => m3::matvec::<2>(out, w, mw, tops, xq, xm, x_exp),
            16 => m3::matvec::<4>(out, w, mw, tops, xq, xm, x_exp),
            32 => m3::matvec::<8>(out, w, mw, tops, xq, xm, x_exp),
            64 => m3::matvec::<16>(out, w, mw, tops, xq, xm, x_exp),
            128 => m3::matvec::<32>(out, w, mw, tops, xq, xm, x_exp),
            256 => m3::matvec::<64>(out, w, mw, tops, xq, xm, x_exp),
            _ => false,
        };
        if done {
            return Ok(());
        }
    }
    #[cfg(all(
        target_arch = "arm",
        target_os = "none",
        target_endian = "little",
        not(target_has_atomic = "32")
    ))]
    if m0::matvec(out, w, mw, tops, xq, xm, x_exp, group) {
        return Ok(());
    }
    #[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
    let done = portable(out, w, mw, tops, xq, xm, x_exp, group);
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    let done = rows_one_by_one(out, w, mw, tops, xq, xm, x_exp, group);
    if done {
        Ok(())
    } else {
        Err(Error::InconsistentDimensions)
    }
}

/// A row's accumulator from its group dot products `dots` (one a group),
/// its aligned mantissas `mw` and the input's `xm`.
#[inline(always)]
fn scaled(dots: impl Iterator<Item = i32>, mw: &[u16], xm: &[i32]) -> i64 {
    dots.zip(mw)
        .zip(xm)
        .map(|((d, &m), &x)| d as i64 * (i32::from(m) * x) as i64)
        .sum()
}

/// The rows of `out` one at a time with the plain group dot product (the
/// last rows after a kernel's blocks, and group sizes no kernel takes).
/// Rows cut off by `split_at_checked`, groups by `chunks_exact`: no panic
/// path; `false` when a length does not fit (impossible after
/// [`matvec_q8_block`]'s checks).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn rows_one_by_one(
    out: &mut [i32],
    w: &[i8],
    mw: &[u16],
    tops: &[u8],
    xq: &[i16],
    xm: &[i32],
    x_exp: i32,
    group: usize,
) -> bool {
    let (n, gpr) = (xq.len(), xm.len());
    if group == 0 {
        return false;
    }
    let (mut wrest, mut mrest) = (w, mw);
    for (o, &top) in out.iter_mut().zip(tops) {
        let (Some((wrow, wn)), Some((mrow, mn))) =
            (wrest.split_at_checked(n), mrest.split_at_checked(gpr))
        else {
            return false;
        };
        (wrest, mrest) = (wn, mn);
        let dots = wrow
            .chunks_exact(group)
            .zip(xq.chunks_exact(group))
            .map(|(wg, xg)| dot_i8_i16(wg, xg));
        *o = finish(scaled(dots, mrow, xm), u32::from(top), x_exp);
    }
    true
}

/// Four rows at a time (each `x` load feeds four rows), then the last ones:
/// the host's loop and the ARMv6-M's.
#[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn portable(
    out: &mut [i32],
    w: &[i8],
    mw: &[u16],
    tops: &[u8],
    xq: &[i16],
    xm: &[i32],
    x_exp: i32,
    group: usize,
) -> bool {
    use super::kernels_int::dots4;
    let (n, gpr) = (xq.len(), xm.len());
    let (Some(n4), Some(g4)) = (n.checked_mul(4), gpr.checked_mul(4)) else {
        return false;
    };
    if n4 == 0 || g4 == 0 || group == 0 {
        return false;
    }
    let mut outs = out.chunks_exact_mut(4);
    let mut wrows = w.chunks_exact(n4);
    let mut mrows = mw.chunks_exact(g4);
    let mut trows = tops.chunks_exact(4);
    for (((o, w4), m4), t4) in (&mut outs).zip(&mut wrows).zip(&mut mrows).zip(&mut trows) {
        let mut acc = [0i64; 4];
        for (g, (xg, &x)) in xq.chunks_exact(group).zip(xm).enumerate() {
            let at = g * group;
            let (Some(r0), Some(r1), Some(r2), Some(r3)) = (
                w4.get(at..),
                w4.get(n + at..),
                w4.get(2 * n + at..),
                w4.get(3 * n + at..),
            ) else {
                return false;
            };
            let d = dots4([r0, r1, r2, r3], xg);
            for (r, (a, &d)) in acc.iter_mut().zip(&d).enumerate() {
                let m = m4.get(r * gpr + g).copied().unwrap_or(0);
                *a += d as i64 * (i32::from(m) * x) as i64;
            }
        }
        for ((o, &a), &t) in o.iter_mut().zip(&acc).zip(t4) {
            *o = finish(a, u32::from(t), x_exp);
        }
    }
    rows_one_by_one(
        outs.into_remainder(),
        wrows.remainder(),
        mrows.remainder(),
        trows.remainder(),
        xq,
        xm,
        x_exp,
        group,
    )
}

/// The product on the DSP extension (Cortex-M4, M33): the group dot products
/// of [`crate::num::kernels_m4`], the stored scales applied in Rust (groups of
/// 4: in the assembly loop).
#[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
mod dsp {
    use super::{finish, rows_one_by_one, scaled};
    use crate::num::kernels_m4::{dots2_i8_i16, dots4_blocks_i8_i16, row_g4_block};

    /// Groups of 4 (llama2.c's `w2`, rows of 172), one row a call of
    /// [`row_g4_block`]. `false` when nothing was done.
    pub(super) fn g4(
        out: &mut [i32],
        w: &[i8],
        mw: &[u16],
        tops: &[u8],
        xq: &[i16],
        xm: &[i32],
        x_exp: i32,
    ) -> bool {
        let (n, gpr) = (xq.len(), xm.len());
        if n == 0 || gpr == 0 {
            return false;
        }
        let mut wrows = w.chunks_exact(n);
        let mut mrows = mw.chunks_exact(gpr);
        for (o, &t) in out.iter_mut().zip(tops) {
            let (Some(wrow), Some(mrow)) = (wrows.next(), mrows.next()) else {
                return false;
            };
            let Some(acc) = row_g4_block(wrow, mrow, xq, xm) else {
                return false;
            };
            *o = finish(acc, u32::from(t), x_exp);
        }
        true
    }

    /// Groups whose dot products one call computes (a stack buffer).
    const CHUNK: usize = 32;

    /// Groups of `4·K`: rows of one group by [`dots4_blocks_i8_i16`], every
    /// four-row block in one call (the last rows two a call of
    /// [`dots2_i8_i16`]); longer
    /// rows two at a time, [`CHUNK`] groups a call of [`dots2_i8_i16`].
    /// `false` when nothing was done.
    pub(super) fn matvec<const K: usize>(
        out: &mut [i32],
        w: &[i8],
        mw: &[u16],
        tops: &[u8],
        xq: &[i16],
        xm: &[i32],
        x_exp: i32,
    ) -> bool {
        let group = 4 * K;
        let (n, gpr) = (xq.len(), xm.len());
        let (Some(n2), Some(g2), Some(n4)) =
            (n.checked_mul(2), gpr.checked_mul(2), n.checked_mul(4))
        else {
            return false;
        };
        // Non-zero strides, known to the compiler: no chunk-size panic path.
        if n2 == 0 || g2 == 0 || n4 == 0 {
            return false;
        }
        let (mut out, mut w, mut mw, mut tops) = (out, w, mw, tops);
        if gpr == 1 {
            // Rows of one group: each row's one mantissa beside its dot.
            let Some(&x) = xm.first() else {
                return false;
            };
            // The dots of every four-row block into `out` in one call, then
            // each row's one mantissa applied in place.
            let done = dots4_blocks_i8_i16::<K>(w, xq, out);
            let (Some((head, rest)), Some((mh, mt)), Some((th, tt)), Some(wt)) = (
                out.split_at_mut_checked(done),
                mw.split_at_checked(done),
                tops.split_at_checked(done),
                w.get(done * n..),
            ) else {
                return false;
            };
            for ((o, &m), &t) in head.iter_mut().zip(mh).zip(th) {
                *o = finish(*o as i64 * (i32::from(m) * x) as i64, u32::from(t), x_exp);
            }
            (out, w, mw, tops) = (rest, wt, mt, tt);
        }
        let mut buf = [[0i32; 2]; CHUNK];
        let mut outs = out.chunks_exact_mut(2);
        let mut wrows = w.chunks_exact(n2);
        let mut mrows = mw.chunks_exact(g2);
        let mut trows = tops.chunks_exact(2);
        for (((o, w2), m2), t2) in (&mut outs).zip(&mut wrows).zip(&mut mrows).zip(&mut trows) {
            let (Some((r0, r1)), Some((m0, m1))) =
                (w2.split_at_checked(n), m2.split_at_checked(gpr))
            else {
                return false;
            };
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
                if dots2_i8_i16::<K>(a, b, x, buf) != chunk {
                    return false;
                }
                let (ma, mb, xs) = (
                    m0.get(g0..).unwrap_or_default(),
                    m1.get(g0..).unwrap_or_default(),
                    xm.get(g0..).unwrap_or_default(),
                );
                acc[0] += scaled(buf.iter().map(|d| d[0]), ma, xs);
                acc[1] += scaled(buf.iter().map(|d| d[1]), mb, xs);
                g0 += chunk;
            }
            for ((o, &a), &t) in o.iter_mut().zip(&acc).zip(t2) {
                *o = finish(a, u32::from(t), x_exp);
            }
        }
        rows_one_by_one(
            outs.into_remainder(),
            wrows.remainder(),
            mrows.remainder(),
            trows.remainder(),
            xq,
            xm,
            x_exp,
            group,
        )
    }
}

/// The product on soft-float ARMv7-M (Cortex-M3): the group dot products of
/// four rows at a time from [`crate::num::kernels_m3::dots4_i8_i16`] and the
/// stored scales applied by [`crate::num::kernels_m3::scaled2`]; rows of one
/// group by [`crate::num::kernels_m3::dots4_blocks_i8_i16`], their one
/// mantissa applied in Rust.
#[cfg(all(
    target_arch = "arm",
    target_os = "none",
    target_abi = "eabi",
    target_endian = "little",
    target_has_atomic = "32"
))]
mod m3 {
    use super::{finish, rows_one_by_one};
    use crate::num::kernels_m3::{dots4_blocks_i8_i16, dots4_i8_i16, scaled2};

    /// Groups whose dot products one call computes (a stack buffer of
    /// 768 bytes): llama2.c's `w2` (43 groups of 4 a row) in one call.
    const CHUNK: usize = 48;

    /// Groups of `4·K`, four rows a call of [`dots4_i8_i16`] ([`CHUNK`]
    /// groups a call), the last rows by [`rows_one_by_one`]. `false` when
    /// nothing was done.
    pub(super) fn matvec<const K: usize>(
        out: &mut [i32],
        w: &[i8],
        mw: &[u16],
        tops: &[u8],
        xq: &[i16],
        xm: &[i32],
        x_exp: i32,
    ) -> bool {
        let group = 4 * K;
        let (n, gpr) = (xq.len(), xm.len());
        let (Some(n4), Some(g4)) = (n.checked_mul(4), gpr.checked_mul(4)) else {
            return false;
        };
        if n4 == 0 || g4 == 0 {
            return false;
        }
        if gpr == 1 {
            // Rows of one group (a small model's usual product): the dots of
            // every four-row block into `out` in one call, then each row's one
            // mantissa applied in place; the last rows one by one.
            let Some(&x) = xm.first() else {
                return false;
            };
            let done = dots4_blocks_i8_i16::<K>(w, xq, out);
            let (Some((head, rest)), Some((mh, mt)), Some((th, tt)), Some(wt)) = (
                out.split_at_mut_checked(done),
                mw.split_at_checked(done),
                tops.split_at_checked(done),
                w.get(done * n..),
            ) else {
                return false;
            };
            for ((o, &m), &t) in head.iter_mut().zip(mh).zip(th) {
                *o = finish(*o as i64 * (i32::from(m) * x) as i64, u32::from(t), x_exp);
            }
            return rows_one_by_one(rest, wt, mt, tt, xq, xm, x_exp, group);
        }
        let mut outs = out.chunks_exact_mut(4);
        let mut wrows = w.chunks_exact(n4);
        let mut mrows = mw.chunks_exact(g4);
        let mut trows = tops.chunks_exact(4);
        let mut buf = [[0i32; 4]; CHUNK];
        for (((o, w4), m4), t4) in (&mut outs).zip(&mut wrows).zip(&mut mrows).zip(&mut trows) {
            let (Some((m0, m)), Some(t)) = (m4.split_at_checked(gpr), t4.first_chunk::<4>()) else {
                return false;
            };
            let Some((m1, m)) = m.split_at_checked(gpr) else {
                return false;
            };
            let Some((m2, m3)) = m.split_at_checked(gpr) else {
                return false;
            };
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
                let m = |r| <[u16]>::get(r, g0..).unwrap_or_default();
                let (Some([a0, a1]), Some([a2, a3])) = (
                    scaled2(buf, 0, m(m0), m(m1), xs, [acc[0], acc[1]]),
                    scaled2(buf, 2, m(m2), m(m3), xs, [acc[2], acc[3]]),
                ) else {
                    return false;
                };
                acc = [a0, a1, a2, a3];
                g0 += chunk;
            }
            for ((o, &a), &t) in o.iter_mut().zip(&acc).zip(t) {
                *o = finish(a, u32::from(t), x_exp);
            }
        }
        rows_one_by_one(
            outs.into_remainder(),
            wrows.remainder(),
            mrows.remainder(),
            trows.remainder(),
            xq,
            xm,
            x_exp,
            group,
        )
    }
}

/// The product on ARMv6-M (Cortex-M0/M0+): the group dot products of four
/// rows at a time from [`crate::num::kernels_m0::dots4_i8_i16`], the stored
/// scales applied with [`crate::num::int::mul_i64`] (ARMv6-M has no
/// 32 × 32 → 64-bit multiply; the compiler's `__aeabi_lmul` multiplies 64 by
/// 64 bits in a call).
#[cfg(all(
    target_arch = "arm",
    target_os = "none",
    target_endian = "little",
    not(target_has_atomic = "32")
))]
mod m0 {
    use super::{finish, rows_one_by_one};
    use crate::num::int::mul_i64;
    use crate::num::kernels_m0::dots4_i8_i16;

    /// Groups whose dot products one call computes (a stack buffer of 352
    /// bytes, as the M0 parts have the least RAM: llama2.c's `w2`, 43 groups
    /// of 4 a row, in two calls).
    const CHUNK: usize = 22;

    /// Groups of `group`, four rows a call of [`dots4_i8_i16`] ([`CHUNK`]
    /// groups a call), the last rows by [`rows_one_by_one`]. `false` when
    /// nothing was done.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn matvec(
        out: &mut [i32],
        w: &[i8],
        mw: &[u16],
        tops: &[u8],
        xq: &[i16],
        xm: &[i32],
        x_exp: i32,
        group: usize,
    ) -> bool {
        let (n, gpr) = (xq.len(), xm.len());
        let (Some(n4), Some(g4)) = (n.checked_mul(4), gpr.checked_mul(4)) else {
            return false;
        };
        if n4 == 0 || g4 == 0 || group == 0 || group % 4 != 0 || group > 256 {
            return false;
        }
        let mut outs = out.chunks_exact_mut(4);
        let mut wrows = w.chunks_exact(n4);
        let mut mrows = mw.chunks_exact(g4);
        let mut trows = tops.chunks_exact(4);
        let mut buf = [[0i32; 4]; CHUNK];
        for (((o, w4), m4), t4) in (&mut outs).zip(&mut wrows).zip(&mut mrows).zip(&mut trows) {
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
                if dots4_i8_i16(wa, n, group, x, buf) != chunk {
                    return false;
                }
                for (r, a) in acc.iter_mut().enumerate() {
                    let m = m4.get(r * gpr + g0..).unwrap_or_default();
                    let xs = xm.get(g0..).unwrap_or_default();
                    for ((d, &m), &x) in buf.iter().zip(m).zip(xs) {
                        let d = d.get(r).copied().unwrap_or(0);
                        *a = a.wrapping_add(mul_i64(d, i32::from(m).wrapping_mul(x)));
                    }
                }
                g0 += chunk;
            }
            for ((o, &a), &t) in o.iter_mut().zip(&acc).zip(t4) {
                *o = finish(a, u32::from(t), x_exp);
            }
        }
        rows_one_by_one(
            outs.into_remainder(),
            wrows.remainder(),
            mrows.remainder(),
            trows.remainder(),
            xq,
            xm,
            x_exp,
            group,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::num::int::Scale;
    use crate::num::kernels_int::{align_scales, block_scales, matvec_q8};
    use microformer_testkit::XorShift32;

    /// The product from stored block scales equals `matvec_q8` from the f32
    /// scales bit for bit: groups of 4 (`w2`), rows of one group, several
    /// groups, a group no kernel takes, row counts that leave a remainder,
    /// and rows whose scales span more than 15 binades, or are zero.
    #[test]
    fn block_scales_give_matvec_q8s_bits() {
        let mut rng = XorShift32(29);
        for &(rows, n, group) in &[
            (9, 172, 4),
            (6, 64, 64),
            (7, 96, 32),
            (5, 128, 16),
            (3, 48, 12),
            (13, 32, 8),
        ] {
            let gpr = n / group;
            for round in 0..40 {
                let w: Vec<i8> = (0..rows * n).map(|_| rng.next_u32() as i8).collect();
                let ws: Vec<f32> = (0..rows * gpr)
                    .map(|i| match (round + i) % 11 {
                        0 => 0.0,
                        1 => 1e-9,
                        2 => 3e-38,
                        _ => rng.centered_unit().abs() * 0.05 + 1e-5,
                    })
                    .collect();
                let xq: Vec<i16> = (0..n).map(|_| rng.next_u32() as i16).collect();
                let mut xm: Vec<i32> = (0..gpr)
                    .map(|_| {
                        let s = rng.centered_unit().abs() as f64 + 0.01;
                        Scale::ratio((s * 65536.0) as u64, 127).shl(-16).pack()
                    })
                    .collect();
                let x_exp = align_scales(&mut xm);
                let mut want = vec![0i32; rows];
                matvec_q8(&mut want, &w, &ws, &xq, &xm, x_exp, group).unwrap();
                let (mut mw, mut tops) = (vec![0u16; ws.len()], vec![0u8; rows]);
                block_scales(&ws, gpr, &mut mw, &mut tops).unwrap();
                let mut got = vec![0i32; rows];
                matvec_q8_block(&mut got, &w, &mw, &tops, &xq, &xm, x_exp, group).unwrap();
                assert_eq!(got, want, "{rows}×{n} in groups of {group}");
            }
        }
        let mut out = [0i32; 2];
        let ok = matvec_q8_block(&mut out, &[0; 8], &[0; 2], &[0; 2], &[0; 4], &[0; 1], 0, 4);
        assert!(ok.is_ok());
        for bad in [
            matvec_q8_block(&mut out, &[0; 8], &[0; 3], &[0; 2], &[0; 4], &[0; 1], 0, 4),
            matvec_q8_block(&mut out, &[0; 8], &[0; 2], &[0; 1], &[0; 4], &[0; 1], 0, 4),
            matvec_q8_block(&mut out, &[0; 6], &[0; 2], &[0; 2], &[0; 4], &[0; 1], 0, 4),
            matvec_q8_block(&mut out, &[0; 8], &[0; 2], &[0; 2], &[0; 4], &[0; 1], 0, 0),
            matvec_q8_block(&mut out, &[0; 8], &[0; 2], &[0; 2], &[0; 4], &[0; 1], 0, 3),
        ] {
            assert!(bad.is_err());
        }
    }
}
