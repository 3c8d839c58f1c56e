//! The integer step's kernels (portable Rust): the Q8 matrix-vector product
//! with block-float scales, the attention's `i16 × i8` score dot product and
//! its `i8` value mix. Every kernel is defined by the plain loop written here;
//! a core-specific version must give the same bits.
//!
//! The Q8 product, per output row `r` (groups `g` of `group` values):
//!
//! ```text
//! acc = Σ_g shift(dot_i32(w[r,g], x[g]) · (m_w·m_x),  e_w + e_x + 32)     i64, in group order
//! out[r] = round(acc / 2^16), saturated to i32                              Q16
//! ```
//!
//! where `(m_w, e_w)` is the weight group's f32 scale decoded by
//! [`Scale::from_f32`], `(m_x, e_x)` the input group's packed [`Scale`], and
//! `shift` is [`shift_i64`] (floor on the right, saturating on the left).
//! Exact in integers, so any order of the int8 products inside a group gives
//! the same `dot`.

use super::int::{round_to_i32, shift_i64, Scale};
use crate::Error;

/// `Σ a[i]·b[i]` of two int8 groups in `i32`.
#[inline(always)]
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = 0i32;
    for (&x, &y) in a.iter().zip(b) {
        acc += x as i32 * y as i32;
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
}

/// One output of the Q8 product (see the module documentation).
#[inline(always)]
fn row(wrow: &[i8], srow: &[f32], xq: &[i8], xs: &[i32], group: usize) -> i32 {
    let mut acc = 0i64;
    for (((wg, xg), &sw), &sx) in wrow
        .chunks_exact(group)
        .zip(xq.chunks_exact(group))
        .zip(srow)
        .zip(xs)
    {
        let (w, x) = (Scale::from_f32(sw), Scale::unpack(sx));
        let p = dot_i8(wg, xg) as i64 * (w.m * x.m) as i64;
        acc = acc.saturating_add(shift_i64(p, w.e + x.e + 32));
    }
    round_to_i32(acc, 16)
}

/// `out = W·x` for a Q8 matrix `W` (`out.len()` rows of `xq.len()` int8
/// values, one f32 scale per `group`) and an int8 input with one packed
/// [`Scale`] per group (see the module documentation).
///
/// Errors: a zero group, or lengths that disagree ([`Error::LengthMismatch`]).
pub fn matvec_q8(
    out: &mut [i32],
    w: &[i8],
    ws: &[f32],
    xq: &[i8],
    xs: &[i32],
    group: usize,
) -> Result<(), Error> {
    let n = xq.len();
    if group == 0 || n % group != 0 || n == 0 {
        return Err(Error::ZeroDimension);
    }
    let gpr = n / group;
    let rows = out.len();
    if w.len() != rows * n || ws.len() != rows * gpr || xs.len() != gpr {
        return Err(Error::LengthMismatch {
            expected: rows * n,
            got: w.len(),
        });
    }
    for ((o, wrow), srow) in out
        .iter_mut()
        .zip(w.chunks_exact(n))
        .zip(ws.chunks_exact(gpr))
    {
        *o = row(wrow, srow, xq, xs, group);
    }
    Ok(())
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
            let xq: Vec<i8> = (0..n).map(|_| rng.next_u32() as i8).collect();
            let xsf: Vec<f64> = (0..n / group)
                .map(|_| (rng.centered_unit().abs() as f64 + 0.01) / 127.0)
                .collect();
            let xs: Vec<i32> = xsf
                .iter()
                .map(|&s| {
                    Scale::ratio((s * 127.0 * 65536.0) as u64, 127)
                        .shl(-16)
                        .pack()
                })
                .collect();
            let mut out = vec![0i32; rows];
            matvec_q8(&mut out, &w, &ws, &xq, &xs, group).unwrap();
            for r in 0..rows {
                let mut want = 0.0f64;
                let mut mag = 0.0f64;
                for g in 0..n / group {
                    let mut dot = 0i64;
                    for k in 0..group {
                        dot += w[r * n + g * group + k] as i64 * xq[g * group + k] as i64;
                    }
                    let s = ws[r * n / group + g] as f64 * Scale::unpack(xs[g]).to_f64();
                    want += dot as f64 * s;
                    mag += (dot as f64 * s).abs();
                }
                let got = out[r] as f64 / 65536.0;
                // Each group's scale product within 2^-13 relative, plus rounding.
                let bound = mag * 2f64.powi(-13) + 2.0 / 65536.0;
                assert!(
                    (got - want).abs() <= bound,
                    "{r}: {got} vs {want} ({bound})"
                );
            }
        }
        let mut out = [0i32; 2];
        assert!(matvec_q8(&mut out, &[0; 8], &[0.0; 2], &[0; 4], &[0; 1], 4).is_ok());
        assert!(matvec_q8(&mut out, &[0; 8], &[0.0; 3], &[0; 4], &[0; 1], 4).is_err());
        assert!(matvec_q8(&mut out, &[0; 6], &[0.0; 2], &[0; 4], &[0; 1], 4).is_err());
        assert!(matvec_q8(&mut out, &[0; 8], &[0.0; 2], &[0; 4], &[0; 1], 0).is_err());
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
