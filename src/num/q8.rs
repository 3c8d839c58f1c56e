//! Q8_0: int8 values with one f32 scale per group, exactly as llama2.c's `runq.c`.
//!
//! A vector (or each row of a matrix) is cut into groups of `group` consecutive
//! values; each group stores `scale = max|x| / 127` (f32) and
//! `q = round(x / scale)` (int8, half away from zero, as C's `round`), so that
//! `x ≈ q · scale`. An all-zero group has scale 0 and stores zeros (where
//! `runq.c` would divide 0 by 0).
//!
//! A matrix–vector product quantizes the activation vector the same way, takes
//! one `i32` dot product per group and scales it by both scales:
//! `out[i] = Σ_g (Σ_k xq·wq) as f32 · w_scale · x_scale`, summed over the groups
//! in order, as `runq.c`'s `matmul`. Rows must be a whole number of groups
//! (the image format guarantees it for every Q8 tensor).
//!
//! Error: a value is rounded to the nearest multiple of its group's scale, so
//! `|x − q·scale| ≤ scale/2 = max|x|/254` (plus f32 rounding).

use crate::Error;

/// The largest quantized magnitude (`runq.c`'s `Q_MAX`).
pub const Q_MAX: f32 = 127.0;

/// Quantizes `x` into `q` (one int8 per value) and `scales` (one per `group`
/// values), as `runq.c`'s `quantize`.
///
/// `x.len()` must be a multiple of `group`; `q` must hold `x.len()` values and
/// `scales` `x.len() / group`.
pub fn quantize(x: &[f32], group: usize, q: &mut [i8], scales: &mut [f32]) -> Result<(), Error> {
    check_group(x.len(), group)?;
    let groups = x.len() / group;
    if q.len() < x.len() {
        return Err(Error::BufferTooSmall {
            needed: x.len(),
            got: q.len(),
        });
    }
    if scales.len() < groups {
        return Err(Error::BufferTooSmall {
            needed: groups,
            got: scales.len(),
        });
    }
    for ((xg, qg), s) in x
        .chunks_exact(group)
        .zip(q.chunks_exact_mut(group))
        .zip(scales.iter_mut())
    {
        *s = quantize_group(xg, qg);
    }
    Ok(())
}

/// Quantizes one group (`q.len() == x.len()`) and returns its scale.
#[inline]
fn quantize_group(x: &[f32], q: &mut [i8]) -> f32 {
    let mut wmax = 0.0f32;
    for &v in x {
        let a = libm::fabsf(v);
        if a > wmax {
            wmax = a;
        }
    }
    let scale = wmax / Q_MAX;
    if scale == 0.0 {
        q.fill(0);
    } else {
        for (o, &v) in q.iter_mut().zip(x) {
            // `as` saturates (and maps NaN to 0); |v / scale| <= 127 up to rounding.
            *o = libm::roundf(v / scale) as i8;
        }
    }
    scale
}

/// Dequantizes `q` (with one scale per `group` values) into `out`:
/// `out[i] = q[i] · scales[i / group]` in f32, as `runq.c`'s `dequantize`.
pub fn dequantize(q: &[i8], scales: &[f32], group: usize, out: &mut [f32]) -> Result<(), Error> {
    check_group(q.len(), group)?;
    if scales.len() != q.len() / group {
        return Err(Error::LengthMismatch {
            expected: q.len() / group,
            got: scales.len(),
        });
    }
    if out.len() != q.len() {
        return Err(Error::LengthMismatch {
            expected: q.len(),
            got: out.len(),
        });
    }
    for ((og, qg), &s) in out
        .chunks_exact_mut(group)
        .zip(q.chunks_exact(group))
        .zip(scales)
    {
        for (o, &v) in og.iter_mut().zip(qg) {
            *o = v as f32 * s;
        }
    }
    Ok(())
}

/// The integer dot product of two int8 groups.
#[inline(always)]
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = 0i32;
    for (&x, &y) in a.iter().zip(b) {
        acc += x as i32 * y as i32;
    }
    acc
}

/// One output of a Q8 product: row `w` (values, scales) against the quantized
/// vector `x` (values, scales), groups summed in order as `runq.c`.
#[inline]
pub fn dot_row(wq: &[i8], ws: &[f32], xq: &[i8], xs: &[f32], group: usize) -> f32 {
    let mut val = 0.0f32;
    for (((wg, xg), &sw), &sx) in wq
        .chunks_exact(group)
        .zip(xq.chunks_exact(group))
        .zip(ws)
        .zip(xs)
    {
        val += dot_i8(wg, xg) as f32 * sw * sx;
    }
    val
}

/// `out = W · x` for a Q8 matrix `W` `[out.len()][n]` (values `wq`, scales `ws`)
/// and a quantized vector `x` (`xq` of length `n`, scales `xs`), as `runq.c`'s
/// `matmul`.
pub fn matvec(
    out: &mut [f32],
    wq: &[i8],
    ws: &[f32],
    xq: &[i8],
    xs: &[f32],
    group: usize,
) -> Result<(), Error> {
    let n = xq.len();
    check_group(n, group)?;
    let d = out.len();
    if wq.len() != d * n {
        return Err(Error::LengthMismatch {
            expected: d * n,
            got: wq.len(),
        });
    }
    // Divisions and chunk sizes the compiler sees non-zero (no panic path).
    let gpr = n.checked_div(group).unwrap_or(0);
    if gpr == 0 {
        return Err(Error::ZeroDimension);
    }
    let (true, Some(xs)) = (ws.len() == d * gpr, xs.get(..gpr)) else {
        return Err(Error::LengthMismatch {
            expected: d * gpr,
            got: ws.len(),
        });
    };
    for ((o, wrow), srow) in out
        .iter_mut()
        .zip(wq.chunks_exact(n))
        .zip(ws.chunks_exact(gpr))
    {
        *o = dot_row(wrow, srow, xq, xs, group);
    }
    Ok(())
}

fn check_group(n: usize, group: usize) -> Result<(), Error> {
    if group == 0 {
        return Err(Error::ZeroDimension);
    }
    if n % group != 0 {
        return Err(Error::LengthMismatch {
            expected: n.next_multiple_of(group),
            got: n,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use microformer_testkit::XorShift32;

    #[test]
    fn quantize_matches_runq_rounding() {
        let x = [1.0f32, -0.5, 0.25, 127.0, 0.0, 0.0, 0.0, 0.0];
        let mut q = [0i8; 8];
        let mut s = [0f32; 2];
        quantize(&x, 4, &mut q, &mut s).unwrap();
        assert_eq!(s, [1.0, 0.0]);
        // 0.5 rounds away from zero (C round), not to even.
        assert_eq!(q, [1, -1, 0, 127, 0, 0, 0, 0]);
        let x = [2.5f32, -2.5, 1.5, 127.0];
        quantize(&x, 4, &mut q[..4], &mut s[..1]).unwrap();
        assert_eq!(&q[..4], &[3, -3, 2, 127]);
    }

    #[test]
    fn round_trip_error_within_half_scale() {
        let mut rng = XorShift32(7);
        let x: Vec<f32> = (0..256).map(|_| rng.centered_unit() * 3.0).collect();
        let mut q = vec![0i8; 256];
        let mut s = vec![0f32; 8];
        quantize(&x, 32, &mut q, &mut s).unwrap();
        let mut y = vec![0f32; 256];
        dequantize(&q, &s, 32, &mut y).unwrap();
        for (i, (a, b)) in x.iter().zip(&y).enumerate() {
            let bound = s[i / 32] as f64 * 0.5 * (1.0 + 1e-6);
            assert!(((a - b) as f64).abs() <= bound, "{i}: {a} vs {b}");
        }
    }

    #[test]
    fn matvec_matches_integer_reference() {
        let n = 8;
        let wq: Vec<i8> = (0..24).map(|i| (i * 7 % 11) as i8 - 5).collect();
        let ws = [0.5f32, 0.25, 2.0, 1.0, 0.125, 4.0];
        let xq: Vec<i8> = (0..8).map(|i| i as i8 - 3).collect();
        let xs = [0.5f32, 3.0];
        let mut out = [0f32; 3];
        matvec(&mut out, &wq, &ws, &xq, &xs, 4).unwrap();
        for r in 0..3 {
            let mut want = 0.0f64;
            for g in 0..2 {
                let mut acc = 0i64;
                for k in 0..4 {
                    acc += wq[r * n + g * 4 + k] as i64 * xq[g * 4 + k] as i64;
                }
                want += acc as f64 * ws[r * 2 + g] as f64 * xs[g] as f64;
            }
            assert_eq!(out[r] as f64, want);
        }
        assert!(matvec(&mut out, &wq[..20], &ws, &xq, &xs, 4).is_err());
        assert_eq!(
            quantize(&[1.0; 6], 4, &mut [0; 6], &mut [0.0; 2]),
            Err(Error::LengthMismatch {
                expected: 8,
                got: 6
            })
        );
        assert_eq!(
            quantize(&[1.0; 4], 0, &mut [0; 4], &mut [0.0; 1]),
            Err(Error::ZeroDimension)
        );
    }
}
