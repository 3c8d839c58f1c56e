//! The integer step's kernels and fixed-point functions on the target: the
//! Q8 matrix-vector product (int8 weights × int16 inputs, block-float
//! scales) — the DSP kernel on the Cortex-M4/M33 (`smlad`), the portable
//! loop elsewhere — checked on the spot against the module's formula
//! evaluated group by group with the plain dot product, and from the scales
//! in block-float form (`kernels_block`, equal to it), and written to the
//! stream, which the host's portable run must equal bit for bit; the head
//! kernels, the int16 quantizer, `e^x` and the logistic by table, the
//! integer square root.

use microformer::num::int::{exp_q16, isqrt_u64, quantize_group_to, sigmoid_q15, Scale};
use microformer::num::kernels_block::matvec_q8_block;
use microformer::num::kernels_int::{
    align_scales, axpy_i16, axpy_i8, block_scales, dot_i16_i16, dot_i16_i8, dot_i8_i16, matvec_q8,
};
use microformer_testkit::XorShift32;

use super::check::{identical_bits, lib};
use crate::out::{Failure, Out};

/// Rows of the test matrices: pairs and fours plus an odd last row.
const ROWS: usize = 7;
/// Columns: a multiple of every group below.
const COLS: usize = 96;

/// The Q8 product's formula (the `kernels_int` module documentation) with the
/// plain per-group dot product.
#[allow(clippy::too_many_arguments)]
fn reference(
    w: &[i8],
    ws: &[f32],
    xq: &[i16],
    xm: &[i32],
    x_exp: i32,
    cols: usize,
    group: usize,
    out: &mut [i32],
) {
    let gpr = cols / group;
    for (r, o) in out.iter_mut().enumerate() {
        let srow = &ws[r * gpr..(r + 1) * gpr];
        let top = srow
            .iter()
            .map(|s| (s.to_bits() >> 23) & 0xff)
            .max()
            .unwrap_or(0);
        let mut acc = 0i64;
        for (g, &s) in srow.iter().enumerate() {
            let bits = s.to_bits();
            let e = (bits >> 23) & 0xff;
            let d = top - e;
            let mw = if e == 0 || d >= 15 {
                0
            } else {
                ((((bits & 0x7f_ffff) | 0x80_0000) >> 9) >> d) as i64
            };
            let at = r * cols + g * group;
            let dot = dot_i8_i16(&w[at..at + group], &xq[g * group..(g + 1) * group]);
            acc += dot as i64 * mw * xm[g] as i64;
        }
        *o = if top == 0 {
            0
        } else {
            let sh = top as i32 - 141 + x_exp + 17;
            let v = if sh >= 0 {
                acc << sh
            } else {
                acc >> (-sh).min(63)
            };
            ((v + 1) >> 1).clamp(i32::MIN as i64, i32::MAX as i64) as i32
        };
    }
}

/// The attention's int8 head kernels of the DSP targets (`kernels_m4::dots_i8x8`,
/// `mix_pairs_i8x4`) against the portable head kernels, on the spot (the cores
/// without them have nothing to write, so the stream does not carry these):
/// 13 keys of a 24-wide cache row, a head of 16 at offset 8, extreme values;
/// the same bytes read as 7 blocks of two keys (stride 40), a head of 8 at
/// value 4, weight pairs with both signs and the `i16` extremes.
#[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
fn attention_kernels() -> Result<(), Failure> {
    use microformer::num::kernels_int::mix_pairs_i8;
    use microformer::num::kernels_m4::{dots_i8x8, mix_pairs_i8x4};
    // Its own generator: the stream's values must not depend on the core.
    let rng = &mut XorShift32(0xa77e_0d05);
    const KEYS: usize = 13;
    const STRIDE: usize = 24;
    const OFFSET: usize = 8;
    let mut rows = [0i8; KEYS * STRIDE];
    for (i, v) in rows.iter_mut().enumerate() {
        *v = if i % 7 == 0 {
            i8::MIN
        } else {
            rng.next_u32() as i8
        };
    }
    let q: [i16; 16] = core::array::from_fn(|i| {
        if i == 3 {
            i16::MIN
        } else {
            rng.next_u32() as i16
        }
    });
    const BLOCKS: usize = 7;
    const BSTRIDE: usize = 40;
    let w: [i32; BLOCKS] = core::array::from_fn(|i| match i {
        0 => 0x7fff_8000u32 as i32,
        1 => 0x8000_7fffu32 as i32,
        _ => rng.next_u32() as i32,
    });
    // Garbage first: the first block's sums overwrite it, the second's add.
    let mut sums = [0x5a5a_5a5ai32; KEYS];
    for (b, qb) in q.chunks_exact(8).enumerate() {
        let done = qb.first_chunk::<8>().is_some_and(|qb| {
            let at = OFFSET + 8 * b;
            if b == 0 {
                dots_i8x8::<false>(qb, &rows, STRIDE, at, &mut sums)
            } else {
                dots_i8x8::<true>(qb, &rows, STRIDE, at, &mut sums)
            }
        });
        if !done {
            return Err(Failure::Property {
                label: "dots_i8x8 ran",
                index: b as u32,
            });
        }
    }
    for (j, &s) in sums.iter().enumerate() {
        let k = &rows[j * STRIDE + OFFSET..j * STRIDE + OFFSET + 16];
        identical_bits(
            "dots_i8x8 = dot_i16_i8",
            j,
            s as u32,
            dot_i16_i8(&q, k) as u32,
        )?;
    }
    // Garbage first: the kernel adds to what is there.
    let mut acc = [0x1234_5678i32; 8];
    const FIRST: usize = 4;
    for (b, a4) in acc.chunks_exact_mut(4).enumerate() {
        let done = a4
            .first_chunk_mut::<4>()
            .is_some_and(|a4| mix_pairs_i8x4(&w, &rows, BSTRIDE, 2 * (FIRST + 4 * b), a4));
        if !done {
            return Err(Failure::Property {
                label: "mix_pairs_i8x4 ran",
                index: b as u32,
            });
        }
    }
    let mut want_acc = [0x1234_5678i32; 8];
    mix_pairs_i8(&mut want_acc, &w, &rows, BSTRIDE, FIRST);
    for (i, (&g, &v)) in acc.iter().zip(&want_acc).enumerate() {
        identical_bits("mix_pairs_i8x4 = mix_pairs_i8", i, g as u32, v as u32)?;
    }
    Ok(())
}

/// The inputs of the Q8 kernels' on-the-spot cases, by `fill`: random (0),
/// all-extreme (1: `i8::MIN` × `i16::MIN`, the largest sums), mixed (2).
#[cfg(all(target_arch = "arm", target_os = "none"))]
fn fill_kernel_inputs(rng: &mut XorShift32, fill: usize, w: &mut [i8], x: &mut [i16]) {
    for (i, v) in w.iter_mut().enumerate() {
        *v = match fill {
            0 => rng.next_u32() as i8,
            1 => i8::MIN,
            _ if i % 3 == 0 => i8::MIN,
            _ if i % 3 == 1 => i8::MAX,
            _ => rng.next_u32() as i8,
        };
    }
    for (i, v) in x.iter_mut().enumerate() {
        *v = match fill {
            0 => rng.next_u32() as i16,
            1 => i16::MIN,
            _ if i % 5 == 0 => i16::MIN,
            _ if i % 5 == 1 => i16::MAX,
            _ => rng.next_u32() as i16,
        };
    }
}

/// The DSP targets' four-row kernel of the Q8 product
/// (`kernels_m4::dots4_rows_i8_i16`, the rows of one group) against the plain
/// dot product, on the spot: random, all-extreme (`i8::MIN` × `i16::MIN`, the
/// largest sums) and mixed inputs, widths 4 to 256, rows from an odd offset,
/// and the widths it must refuse.
#[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
fn dsp_rows_kernel() -> Result<(), Failure> {
    use microformer::num::kernels_m4::dots4_rows_i8_i16;
    // Its own generator: the stream's values must not depend on the core.
    let rng = &mut XorShift32(0x4d0f_5a11);
    const N: usize = 256;
    let mut w = [0i8; 4 * N + 3];
    let mut x = [0i16; N];
    for fill in 0..3usize {
        fill_kernel_inputs(rng, fill, &mut w, &mut x);
        for (c, (n, off)) in [
            (4usize, 0usize),
            (8, 1),
            (32, 3),
            (64, 0),
            (172, 2),
            (256, 3),
        ]
        .into_iter()
        .enumerate()
        {
            let rows = &w[off..off + 4 * n];
            let Some(got) = dots4_rows_i8_i16(rows, &x[..n]) else {
                return Err(Failure::Property {
                    label: "dots4_rows_i8_i16 ran",
                    index: (fill * 10 + c) as u32,
                });
            };
            for (r, &g) in got.iter().enumerate() {
                let want = dot_i8_i16(&rows[r * n..(r + 1) * n], &x[..n]);
                identical_bits(
                    "dots4_rows_i8_i16 = dot_i8_i16",
                    fill * 1000 + c * 10 + r,
                    g as u32,
                    want as u32,
                )?;
            }
        }
    }
    // Widths that are no multiple of 4, empty, or rows too short: refused.
    let refused = [
        dots4_rows_i8_i16(&w[..4 * 6], &x[..6]),
        dots4_rows_i8_i16(&w[..0], &x[..0]),
        dots4_rows_i8_i16(&w[..4 * 8 - 1], &x[..8]),
    ];
    for (i, r) in refused.iter().enumerate() {
        if r.is_some() {
            return Err(Failure::Property {
                label: "dots4_rows_i8_i16 refuses bad lengths",
                index: i as u32,
            });
        }
    }
    Ok(())
}

/// Every row `kernel` (a four-row-block product of rows of `n`) computed from
/// `w` against `x`: each against `dot_i8_i16`, the count returned (the whole
/// blocks that `out` and `w` hold), and the words past it untouched.
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
fn blocks_case(
    label: &'static str,
    kernel: impl Fn(&[i8], &[i16], &mut [i32]) -> usize,
    w: &[i8],
    n: usize,
    x: &[i16],
    rows: usize,
    case: usize,
) -> Result<(), Failure> {
    const MAX: usize = 16;
    let mut out = [0x5a5a_5a5a_i32; MAX];
    let done = kernel(w, &x[..n], &mut out[..rows]);
    let want_rows = (rows / 4).min(w.len() / n / 4) * 4;
    if done != want_rows {
        return Err(Failure::Property {
            label,
            index: case as u32,
        });
    }
    for (r, &v) in out[..done].iter().enumerate() {
        let want = dot_i8_i16(&w[r * n..(r + 1) * n], &x[..n]);
        identical_bits(label, case * 100 + r, v as u32, want as u32)?;
    }
    if out[done..].iter().any(|&v| v != 0x5a5a_5a5a) {
        return Err(Failure::Property {
            label,
            index: (case * 100 + 99) as u32,
        });
    }
    Ok(())
}

/// The DSP targets' block kernel of rows of one group
/// (`kernels_m4::dots4_blocks_i8_i16`, every four-row block in one call;
/// rows of 64 unrolled) against the plain dot product: several blocks and a
/// remainder it must leave, rows from an odd offset, widths 4 to 172, a
/// weight slice that ends inside a block, and an input shorter than a row
/// or `K = 0`, which it must refuse.
#[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
fn dsp_blocks_kernel() -> Result<(), Failure> {
    use microformer::num::kernels_m4::dots4_blocks_i8_i16;
    let rng = &mut XorShift32(0x0b10_c4d5);
    const N: usize = 172;
    let mut w = [0i8; 9 * N + 3];
    let mut x = [0i16; N];
    let label = "dots4_blocks_i8_i16 = dot_i8_i16";
    for fill in 0..3usize {
        fill_kernel_inputs(rng, fill, &mut w, &mut x);
        let c = fill * 10;
        blocks_case(label, dots4_blocks_i8_i16::<1>, &w, 4, &x, 11, c)?;
        blocks_case(label, dots4_blocks_i8_i16::<2>, &w[1..], 8, &x, 9, c + 1)?;
        blocks_case(label, dots4_blocks_i8_i16::<8>, &w[3..], 32, &x, 12, c + 2)?;
        blocks_case(label, dots4_blocks_i8_i16::<16>, &w, 64, &x, 11, c + 3)?;
        blocks_case(label, dots4_blocks_i8_i16::<16>, &w[2..], 64, &x, 16, c + 4)?;
        blocks_case(label, dots4_blocks_i8_i16::<43>, &w[3..], 172, &x, 9, c + 5)?;
        // Weights for one block and a half: one block.
        blocks_case(
            label,
            dots4_blocks_i8_i16::<16>,
            &w[..6 * 64],
            64,
            &x,
            12,
            c + 7,
        )?;
    }
    let mut out = [0i32; 8];
    if dots4_blocks_i8_i16::<2>(&w[..8 * 6], &x[..6], &mut out) != 0
        || dots4_blocks_i8_i16::<0>(&w, &x, &mut out) != 0
    {
        return Err(Failure::Property {
            label: "dots4_blocks_i8_i16 refuses bad widths",
            index: 0,
        });
    }
    Ok(())
}

/// The M3's block kernel of rows of one group
/// (`kernels_m3::dots4_blocks_i8_i16::<K>`) for `K` = 1, 2, 16 (unrolled) and
/// 43, and its group-scale pass (`kernels_m3::scaled2`) against the Rust
/// formula, on the spot.
#[cfg(all(
    target_arch = "arm",
    target_os = "none",
    target_abi = "eabi",
    target_endian = "little",
    target_has_atomic = "32"
))]
fn m3_blocks_kernel() -> Result<(), Failure> {
    use microformer::num::kernels_m3::{dots4_blocks_i8_i16, scaled2};
    let rng = &mut XorShift32(0x3b10_c4d5);
    const N: usize = 172;
    let mut w = [0i8; 9 * N + 3];
    let mut x = [0i16; N];
    let label = "m3 dots4_blocks_i8_i16 = dot_i8_i16";
    for fill in 0..3usize {
        fill_kernel_inputs(rng, fill, &mut w, &mut x);
        let c = fill * 10;
        blocks_case(label, dots4_blocks_i8_i16::<1>, &w, 4, &x, 11, c)?;
        blocks_case(label, dots4_blocks_i8_i16::<2>, &w[1..], 8, &x, 9, c + 1)?;
        blocks_case(label, dots4_blocks_i8_i16::<16>, &w, 64, &x, 11, c + 2)?;
        blocks_case(label, dots4_blocks_i8_i16::<16>, &w[3..], 64, &x, 16, c + 3)?;
        blocks_case(
            label,
            dots4_blocks_i8_i16::<16>,
            &w[..6 * 64],
            64,
            &x,
            12,
            c + 4,
        )?;
        blocks_case(label, dots4_blocks_i8_i16::<43>, &w[2..], 172, &x, 9, c + 5)?;
    }
    // scaled2: 43 groups of dots (all four lanes), mantissas up to 2^16 − 1,
    // input mantissas up to 2^15, sums that leave 32 bits.
    let mut dots = [[0i32; 4]; 43];
    for d in dots.iter_mut().flatten() {
        *d = (rng.next_u32() as i32) >> 7;
    }
    let (mut ma, mut mb, mut xm) = ([0u16; 43], [0u16; 43], [0i32; 43]);
    for g in 0..43 {
        ma[g] = rng.next_u32() as u16;
        mb[g] = if g == 5 { 0 } else { rng.next_u32() as u16 };
        xm[g] = (rng.next_u32() >> 17) as i32;
    }
    let start = [0x1234_5678_9abc_i64, -0x7654_3210_fedc];
    for lane in [0usize, 1, 2] {
        let Some(got) = scaled2(&dots, lane, &ma, &mb, &xm, start) else {
            return Err(Failure::Property {
                label: "scaled2 ran",
                index: lane as u32,
            });
        };
        for (i, m) in [&ma, &mb].into_iter().enumerate() {
            let mut want = start[i];
            for g in 0..43 {
                want += dots[g][lane + i] as i64 * (i32::from(m[g]) * xm[g]) as i64;
            }
            identical_bits(
                "scaled2 = the Rust sum (low word)",
                lane * 10 + i,
                got[i] as u32,
                want as u32,
            )?;
            identical_bits(
                "scaled2 = the Rust sum (high word)",
                lane * 10 + i,
                (got[i] >> 32) as u32,
                (want >> 32) as u32,
            )?;
        }
    }
    if scaled2(&dots, 3, &ma, &mb, &xm, start).is_some()
        || scaled2(&dots, 0, &ma[..42], &mb, &xm, start).is_some()
    {
        return Err(Failure::Property {
            label: "scaled2 refuses bad lengths",
            index: 0,
        });
    }
    Ok(())
}

/// The ARMv6-M kernel of the Q8 product (`kernels_m0::dots4_i8_i16`: four
/// rows a column, groups of `g`) against the plain dot product, on the spot
/// (the other cores do not have it): random, all-extreme (`i8::MIN` ×
/// `i16::MIN`, the largest sums) and mixed inputs; groups of 4, 8, 64 and
/// 256 (the largest it takes), a row stride that is no multiple of the
/// group, slices from odd offsets ending exactly at the last group, the
/// groups past the count untouched, and the sizes it must refuse.
#[cfg(all(
    target_arch = "arm",
    target_os = "none",
    target_endian = "little",
    not(target_has_atomic = "32")
))]
fn m0_kernel() -> Result<(), Failure> {
    use microformer::num::kernels_m0::dots4_i8_i16;
    let rng = &mut XorShift32(0x0a6d_0e55);
    const N: usize = 516;
    const MAX: usize = 40;
    let mut w = [0i8; 4 * N];
    let mut x = [0i16; N];
    for fill in 0..3usize {
        fill_kernel_inputs(rng, fill, &mut w, &mut x);
        for (c, (off, n, g, groups)) in [
            (0usize, N, 4usize, 129usize.min(MAX - 1)),
            (1, N - 1, 8, 64),
            (3, N - 1, 64, 8),
            (0, N, 256, 2),
            (2, 67, 4, 16),
        ]
        .into_iter()
        .enumerate()
        {
            let case = fill * 10 + c;
            let groups = groups.min(MAX - 1);
            let rows = &w[off..off + 3 * n + groups * g];
            let mut sums = [[0x5a5a_5a5a_i32; 4]; MAX];
            if dots4_i8_i16(rows, n, g, &x[..groups * g], &mut sums[..groups]) != groups {
                return Err(Failure::Property {
                    label: "m0 dots4_i8_i16 groups",
                    index: case as u32,
                });
            }
            for (gi, d) in sums[..groups].iter().enumerate() {
                for (r, &v) in d.iter().enumerate() {
                    let at = r * n + gi * g;
                    let want = dot_i8_i16(&rows[at..at + g], &x[gi * g..(gi + 1) * g]);
                    identical_bits(
                        "m0 dots4_i8_i16 = dot_i8_i16",
                        case * 10_000 + gi * 4 + r,
                        v as u32,
                        want as u32,
                    )?;
                }
            }
            if sums[groups..].iter().any(|d| *d != [0x5a5a_5a5a; 4]) {
                return Err(Failure::Property {
                    label: "m0 dots4_i8_i16 wrote past its groups",
                    index: case as u32,
                });
            }
        }
    }
    // Group sizes of 0, no multiple of 4, above 256; an input or a fourth row
    // shorter than the groups asked: refused.
    let mut sums = [[0i32; 4]; 2];
    let refused = [
        dots4_i8_i16(&w, 64, 0, &x, &mut sums),
        dots4_i8_i16(&w, 64, 6, &x, &mut sums),
        dots4_i8_i16(&w, 4 * 129, 260, &x, &mut sums[..1]),
        dots4_i8_i16(&w, 64, 8, &x[..15], &mut sums),
        dots4_i8_i16(&w[..3 * 64 + 15], 64, 8, &x, &mut sums),
    ];
    if let Some(i) = refused.iter().position(|&r| r != 0) {
        return Err(Failure::Property {
            label: "m0 dots4_i8_i16 refuses bad sizes",
            index: i as u32,
        });
    }
    Ok(())
}

/// One size of the M3 kernel: the group dot products of four rows of stride
/// `n` from `w` against `x`, every group and row bit for bit against
/// `dot_i8_i16`, and the groups past the count untouched.
#[cfg(all(
    target_arch = "arm",
    target_os = "none",
    target_abi = "eabi",
    target_endian = "little",
    target_has_atomic = "32"
))]
fn m3_dots<const K: usize>(w: &[i8], n: usize, x: &[i16], case: usize) -> Result<(), Failure> {
    use microformer::num::kernels_m3::dots4_i8_i16;
    const MAX: usize = 72;
    let g = 4 * K;
    let want_groups = ((w.len() - 3 * n) / g).min(x.len() / g).min(MAX - 1);
    let mut sums = [[0x5a5a_5a5a_i32; 4]; MAX];
    let done = dots4_i8_i16::<K>(w, n, x, &mut sums[..want_groups]);
    if done != want_groups {
        return Err(Failure::Property {
            label: "dots4_i8_i16 groups",
            index: case as u32,
        });
    }
    for (gi, d) in sums[..done].iter().enumerate() {
        for (r, &v) in d.iter().enumerate() {
            let at = r * n + gi * g;
            let want = dot_i8_i16(&w[at..at + g], &x[gi * g..(gi + 1) * g]);
            identical_bits(
                "dots4_i8_i16 = dot_i8_i16",
                case * 10_000 + gi * 4 + r,
                v as u32,
                want as u32,
            )?;
        }
    }
    for (gi, d) in sums[done..].iter().enumerate() {
        if *d != [0x5a5a_5a5a; 4] {
            return Err(Failure::Property {
                label: "dots4_i8_i16 wrote past its groups",
                index: (case * 10_000 + gi) as u32,
            });
        }
    }
    Ok(())
}

/// The Cortex-M3 kernel of the Q8 product (`kernels_m3::dots4_i8_i16`)
/// against the plain dot product, on the spot (the other cores do not have
/// it, so the stream does not carry these): random, all-extreme
/// (`i8::MIN` × `i16::MIN`, the largest sums) and mixed inputs, groups of 4,
/// 8, 64 and 256, a row stride that is no multiple of the group, slices that
/// end exactly at the last group.
#[cfg(all(
    target_arch = "arm",
    target_os = "none",
    target_abi = "eabi",
    target_endian = "little",
    target_has_atomic = "32"
))]
fn m3_kernel() -> Result<(), Failure> {
    // Its own generator: the stream's values must not depend on the core.
    let rng = &mut XorShift32(0x3a3c_0de5);
    const N: usize = 268;
    let mut w = [0i8; 4 * N];
    let mut x = [0i16; N];
    for fill in 0..3usize {
        fill_kernel_inputs(rng, fill, &mut w, &mut x);
        let case = 10 * fill;
        // Whole rows of stride N; then from an odd offset, ending exactly at
        // the fourth row's last whole group.
        m3_dots::<1>(&w, N, &x, case)?;
        m3_dots::<2>(&w, N, &x, case + 1)?;
        m3_dots::<16>(&w, N, &x, case + 2)?;
        m3_dots::<64>(&w, N, &x, case + 3)?;
        let end = 3 * (N - 1) + 4 * 66;
        m3_dots::<1>(&w[3..3 + end], N - 1, &x[1..], case + 4)?;
        let end = 3 * (N - 1) + 8 * 33;
        m3_dots::<2>(&w[1..1 + end], N - 1, &x[1..], case + 5)?;
        let end = 3 * (N - 1) + 64 * 4;
        m3_dots::<16>(&w[7..7 + end], N - 1, &x[2..], case + 6)?;
        m3_key_dots(&w, &x, case + 7)?;
    }
    Ok(())
}

/// `kernels_m3::key_dots_i16_i8` (the attention's key dot products) against
/// `dot_i16_i8` key by key: heads of 4, 8, 16 and 64 values, key strides of
/// one head and of several, offsets inside the row, the last key ending at
/// the slice's end; the word after the keys is not written; a head of 6
/// values and keys past the slice are refused.
#[cfg(all(
    target_arch = "arm",
    target_os = "none",
    target_abi = "eabi",
    target_endian = "little",
    target_has_atomic = "32"
))]
fn m3_key_dots(keys: &[i8], x: &[i16], case: usize) -> Result<(), Failure> {
    use microformer::num::kernels_m3::key_dots_i16_i8;
    const MAX: usize = 40;
    for (j, &(hd, stride, offset)) in [
        (4, 4, 0),
        (8, 32, 8),
        (16, 64, 48),
        (64, 70, 5),
        (16, 16, 0),
    ]
    .iter()
    .enumerate()
    {
        let q = &x[j..j + hd];
        let n = ((keys.len() - offset - hd) / stride + 1).min(MAX - 1);
        let keys = &keys[..(n - 1) * stride + offset + hd];
        let mut out = [0x5a5a_5a5a_i32; MAX];
        if !key_dots_i16_i8(q, keys, stride, offset, &mut out[..n]) {
            return Err(Failure::Property {
                label: "key_dots_i16_i8 refused a layout",
                index: (case * 100 + j) as u32,
            });
        }
        for (i, &v) in out[..n].iter().enumerate() {
            let at = i * stride + offset;
            let want = dot_i16_i8(q, &keys[at..at + hd]);
            identical_bits(
                "key_dots_i16_i8 = dot_i16_i8",
                case * 10_000 + j * 100 + i,
                v as u32,
                want as u32,
            )?;
        }
        if out[n] != 0x5a5a_5a5a {
            return Err(Failure::Property {
                label: "key_dots_i16_i8 wrote past its keys",
                index: (case * 100 + j) as u32,
            });
        }
        let mut more = [0i32; MAX];
        if key_dots_i16_i8(&x[..6], keys, stride, offset, &mut more[..2])
            || key_dots_i16_i8(q, keys, stride, offset, &mut more[..n + 1])
        {
            return Err(Failure::Property {
                label: "key_dots_i16_i8 took a bad layout",
                index: (case * 100 + j) as u32,
            });
        }
    }
    Ok(())
}

pub(super) fn kernels(out: &mut Out<'_>) -> Result<(), Failure> {
    let mut rng = XorShift32(0x1e7e_6e55);
    let mut w = [0i8; ROWS * COLS];
    for v in w.iter_mut() {
        *v = rng.next_u32() as i8;
    }
    let mut xq = [0i16; COLS];
    for v in xq.iter_mut() {
        *v = rng.next_u32() as i16;
    }
    // Group sizes of the DSP kernels (4, 8, 32; rows of one group of 32 and
    // 64) and one they leave to the loop (12).
    for (cols, group) in [
        (COLS, 4usize),
        (COLS, 8),
        (COLS, 12),
        (COLS, 32),
        (32, 32),
        (64, 64),
    ] {
        let gpr = cols / group;
        let mut ws = [0f32; ROWS * COLS / 4];
        let ws = &mut ws[..ROWS * gpr];
        for (i, s) in ws.iter_mut().enumerate() {
            // Scales over a few binades, one zero group, one 30 binades
            // below the rest (its mantissa aligns to 0), and a last row of
            // scales near the smallest normal (exponent fields below 15).
            let m = (rng.next_u32() >> 9) as f32 / (1 << 23) as f32 + 1.0;
            *s = if i == 5 {
                0.0
            } else if i == 9 {
                libm::ldexpf(m, -40)
            } else if i >= (ROWS - 1) * gpr {
                libm::ldexpf(m, -120 - (rng.next_u32() % 6) as i32)
            } else {
                libm::ldexpf(m, -9 - (rng.next_u32() % 6) as i32)
            };
        }
        let mut xs = [0i32; COLS / 4];
        let xs = &mut xs[..gpr];
        for s in xs.iter_mut() {
            *s = Scale::normalize(
                (rng.next_u32() >> 8) as u64 + 1,
                -30 - (rng.next_u32() % 4) as i32,
            )
            .pack();
        }
        let x_exp = align_scales(xs);
        let (mut got, mut want) = ([0i32; ROWS], [0i32; ROWS]);
        lib(
            "matvec_q8",
            matvec_q8(
                &mut got,
                &w[..ROWS * cols],
                ws,
                &xq[..cols],
                xs,
                x_exp,
                group,
            ),
        )?;
        reference(&w, ws, &xq, xs, x_exp, cols, group, &mut want);
        for (i, (&g, &v)) in got.iter().zip(&want).enumerate() {
            identical_bits(
                "integer matvec = its formula",
                group * 100 + i,
                g as u32,
                v as u32,
            )?;
        }
        out.i32s("integer matvec", &got);
        // The same product from the scales in block-float form (an image
        // with `FLAG_Q8_BLOCK_SCALES`): the same bits.
        let mut mw = [0u16; ROWS * COLS / 4];
        let mut tops = [0u8; ROWS];
        let mw = &mut mw[..ROWS * gpr];
        lib("block_scales", block_scales(ws, gpr, mw, &mut tops))?;
        let mut by_block = [0i32; ROWS];
        lib(
            "matvec_q8_block",
            matvec_q8_block(
                &mut by_block,
                &w[..ROWS * cols],
                mw,
                &tops,
                &xq[..cols],
                xs,
                x_exp,
                group,
            ),
        )?;
        for (i, (&b, &g)) in by_block.iter().zip(&got).enumerate() {
            identical_bits(
                "integer matvec from block scales = from f32 scales",
                group * 100 + i,
                b as u32,
                g as u32,
            )?;
        }
        out.i32s("integer matvec block", &by_block);
    }

    // Head kernels, quantizer, tables, square root.
    let mut q = [0i16; 16];
    let mut k8 = [0i8; 16];
    let mut k16 = [0i16; 16];
    for i in 0..16 {
        q[i] = rng.next_u32() as i16 >> 1;
        k8[i] = rng.next_u32() as i8;
        k16[i] = rng.next_u32() as i16;
    }
    out.i32s("dot_i16_i8", &[dot_i16_i8(&q, &k8)]);
    out.u64("dot_i16_i16", dot_i16_i16(&q, &k16) as u64);
    let mut acc = [0i32; 16];
    axpy_i8(&mut acc, 12345, &k8);
    axpy_i16(&mut acc, -321, &k16);
    out.i32s("axpy", &acc);
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    attention_kernels()?;
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    dsp_rows_kernel()?;
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    dsp_blocks_kernel()?;
    #[cfg(all(
        target_arch = "arm",
        target_os = "none",
        target_abi = "eabi",
        target_endian = "little",
        target_has_atomic = "32"
    ))]
    m3_kernel()?;
    #[cfg(all(
        target_arch = "arm",
        target_os = "none",
        target_abi = "eabi",
        target_endian = "little",
        target_has_atomic = "32"
    ))]
    m3_blocks_kernel()?;
    #[cfg(all(
        target_arch = "arm",
        target_os = "none",
        target_endian = "little",
        not(target_has_atomic = "32")
    ))]
    m0_kernel()?;
    let x: [i32; 16] = core::array::from_fn(|i| (rng.next_u32() as i32) >> (i % 12));
    let mut q16 = [0i16; 16];
    let max = quantize_group_to(&x, &mut q16);
    out.u32("quantize max", max);
    out.i16s("quantize int16", &q16);
    let mut q8 = [0i8; 16];
    quantize_group_to(&x, &mut q8);
    out.u8s("quantize int8", &q8.map(|v| v as u8));
    let e: [u32; 16] = core::array::from_fn(|i| exp_q16(-((i as i32) << 15) - 7));
    out.u32s("exp_q16", &e);
    let s: [u32; 16] = core::array::from_fn(|i| sigmoid_q15(((i as i32) - 8) << 16 | 0x1234));
    out.u32s("sigmoid_q15", &s);
    out.u64("isqrt", isqrt_u64(0x1234_5678_9abc_def0));
    Ok(())
}
