//! Absolute positions added to the token embedding: sinusoidal tables (both
//! layouts, f32 and Q15) and learned tables (GPT-2, OPT).

use microformer::num::fixed::Q15;
use microformer::pos::learned::{LearnedPositions, LearnedPositionsQ15};
use microformer::pos::sinusoidal::{self, SinusoidalTable, SinusoidalTableQ15};
use microformer::Error;
use microformer_testkit::XorShift32;

use super::check::{ensure, expect_err, identical, lib, pow2, within};
use crate::out::{Failure, Out};

const DIM: usize = 16;
const ROWS: usize = 34;
/// XGLM: position `p` reads row `p + padding_idx + 1`.
const PADDING: usize = 1;

/// The exact value of column `j` of the interleaved row of `position`:
/// `ω = 10000^(−2⌊j/2⌋/dim)`, sin for even `j`, cos for odd `j`.
fn interleaved_exact(position: usize, dim: usize, j: usize) -> (f64, f64) {
    let w = libm::pow(10_000.0, -((2 * (j / 2)) as f64) / dim as f64);
    let x = position as f64 * w;
    (
        if j % 2 == 0 {
            libm::sin(x)
        } else {
            libm::cos(x)
        },
        x,
    )
}

/// The exact value of column `j` of split row `row` (`[sin…, cos…]`, a zero
/// column last when `dim` is odd): `ω_i = exp(−i·ln(10000)/(half − 1))`.
fn split_exact(row: usize, dim: usize, j: usize) -> (f64, f64) {
    let half = dim / 2;
    if j >= 2 * half {
        return (0.0, 0.0);
    }
    let i = j % half;
    let w = libm::exp(-(i as f64) * libm::log(10_000.0) / (half - 1) as f64);
    let x = row as f64 * w;
    (if j < half { libm::sin(x) } else { libm::cos(x) }, x)
}

/// f32 bound (module docs of `pos::sinusoidal`): ½ ulp (2^-25) plus the f64
/// angle's `x·2^-50`, plus the reference's own `x·2^-51` and 2^-50 for the
/// f64 sine/cosine.
fn f32_bound(x: f64) -> f64 {
    pow2(-25) + x * (pow2(-50) + pow2(-51)) + pow2(-50)
}

/// Q15 bound in LSB: 2 LSB plus the reference's f64 allowance.
fn q15_bound(x: f64) -> f64 {
    2.0 + 32768.0 * (x * (pow2(-50) + pow2(-51)) + pow2(-50))
}

fn q15_exact(v: f64) -> f64 {
    (v * 32768.0).clamp(-32768.0, 32767.0)
}

type Exact = fn(usize, usize, usize) -> (f64, f64);

/// Checks rows `first..` of an f32 table against `exact`.
fn check_f32(
    label: &'static str,
    table: &[f32],
    dim: usize,
    first: usize,
    exact: Exact,
) -> Result<(), Failure> {
    for (r, row) in table.chunks_exact(dim).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            let (want, x) = exact(first + r, dim, j);
            within(label, (first + r) * dim + j, v as f64, want, f32_bound(x))?;
        }
    }
    Ok(())
}

/// Checks rows `first..` of a Q15 table against `exact`.
fn check_q15(
    label: &'static str,
    table: &[Q15],
    dim: usize,
    first: usize,
    exact: Exact,
) -> Result<(), Failure> {
    for (r, row) in table.chunks_exact(dim).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            let (want, x) = exact(first + r, dim, j);
            within(
                label,
                (first + r) * dim + j,
                v as f64,
                q15_exact(want),
                q15_bound(x),
            )?;
        }
    }
    Ok(())
}

pub(super) fn sinusoidal_f32(out: &mut Out<'_>) -> Result<(), Failure> {
    let mut t = [0f32; ROWS * DIM];
    // Interleaved (DistilBERT): 32 positions, and a lone row at 65535.
    let n = 32 * DIM;
    lib(
        "fill_interleaved",
        sinusoidal::fill_interleaved(32, DIM, &mut t[..n]),
    )?;
    out.f32s("interleaved table", &t[..n]);
    check_f32("interleaved vs libm", &t[..n], DIM, 0, interleaved_exact)?;
    let mut row = [0f32; DIM];
    lib(
        "interleaved_row",
        sinusoidal::interleaved_row(65535, DIM, &mut row),
    )?;
    out.f32s("interleaved row 65535", &row);
    check_f32(
        "interleaved row 65535 vs libm",
        &row,
        DIM,
        65535,
        interleaved_exact,
    )?;
    let view = lib("SinusoidalTable::new", SinusoidalTable::new(&t[..n], DIM))?;
    for p in [0usize, 5, 31] {
        let mut x = [0.25f32; DIM];
        lib("add_to", view.add_to(p, &mut x))?;
        out.f32s("x + PE[p]", &x);
        for (j, (&v, &w)) in x.iter().zip(&t[p * DIM..(p + 1) * DIM]).enumerate() {
            identical("add_to = x + row", p * DIM + j, v, 0.25 + w)?;
        }
    }

    // Split (XGLM, padding_idx 1): row 1 zero, position p reads row p + 2.
    lib(
        "fill_split",
        sinusoidal::fill_split(ROWS, DIM, Some(PADDING), &mut t),
    )?;
    out.f32s("split table", &t);
    for (r, row) in t.chunks_exact(DIM).enumerate() {
        if r == PADDING {
            for (j, &v) in row.iter().enumerate() {
                ensure("split padding row is +0.0", j, v.to_bits() == 0)?;
            }
        } else {
            check_f32("split vs libm", row, DIM, r, split_exact)?;
        }
    }
    let view = lib(
        "SinusoidalTable::split",
        SinusoidalTable::split(&t, DIM, Some(PADDING)),
    )?;
    ensure(
        "split view positions",
        0,
        view.positions() == ROWS - PADDING - 1,
    )?;
    for p in [0usize, 9, ROWS - PADDING - 2] {
        let r = lib("split row", view.row(p))?;
        let at = (p + PADDING + 1) * DIM;
        for (j, (&a, &b)) in r.iter().zip(&t[at..at + DIM]).enumerate() {
            identical("split position p reads row p + 2", p * DIM + j, a, b)?;
        }
    }
    lib(
        "split_row",
        sinusoidal::split_row(65537, DIM, Some(PADDING), &mut row),
    )?;
    out.f32s("split row 65537", &row);
    check_f32("split row 65537 vs libm", &row, DIM, 65537, split_exact)?;
    // Odd dim: a zero column last.
    let mut odd = [1f32; 4 * 9];
    lib(
        "fill_split odd",
        sinusoidal::fill_split(4, 9, None, &mut odd),
    )?;
    out.f32s("split table, dim 9", &odd);
    check_f32("split dim 9 vs libm", &odd, 9, 0, split_exact)?;

    let r = sinusoidal::fill_split(4, 3, None, &mut odd);
    expect_err(out, "split dim < 4", r, Error::InvalidParameter)?;
    let r = sinusoidal::fill_split(2, DIM, Some(2), &mut t);
    expect_err(
        out,
        "padding row outside",
        r,
        Error::PositionOutOfRange {
            position: 2,
            len: 2,
        },
    )?;
    let r = sinusoidal::fill_interleaved(3, DIM, &mut row);
    expect_err(
        out,
        "table too small",
        r,
        Error::BufferTooSmall {
            needed: 3 * DIM,
            got: DIM,
        },
    )?;
    let r = sinusoidal::fill_interleaved(0, DIM, &mut row);
    expect_err(out, "zero positions", r, Error::ZeroDimension)
}

pub(super) fn sinusoidal_q15(out: &mut Out<'_>) -> Result<(), Failure> {
    let mut t = [0 as Q15; ROWS * DIM];
    let n = 32 * DIM;
    lib(
        "fill_interleaved_q15",
        sinusoidal::fill_interleaved_q15(32, DIM, &mut t[..n]),
    )?;
    out.i16s("Q15 interleaved table", &t[..n]);
    check_q15("Q15 interleaved (LSB)", &t[..n], DIM, 0, interleaved_exact)?;
    let mut row = [0 as Q15; DIM];
    lib(
        "interleaved_row_q15",
        sinusoidal::interleaved_row_q15(65535, DIM, &mut row),
    )?;
    out.i16s("Q15 interleaved row 65535", &row);
    check_q15(
        "Q15 interleaved row 65535 (LSB)",
        &row,
        DIM,
        65535,
        interleaved_exact,
    )?;

    // Adds: plain (saturating) and rescaled to 10 fractional bits (rounded
    // half away from zero, then saturating).
    let view = lib(
        "SinusoidalTableQ15::new",
        SinusoidalTableQ15::new(&t[..n], DIM),
    )?;
    let mut rng = XorShift32(31337);
    for p in [1usize, 8, 30] {
        let pe = &t[p * DIM..(p + 1) * DIM];
        let mut x = [0 as Q15; DIM];
        rng.fill_q15(&mut x);
        let mut y = x;
        lib("Q15 add_to", view.add_to(p, &mut y))?;
        out.i16s("Q15 x + PE[p]", &y);
        for j in 0..DIM {
            ensure(
                "Q15 add_to saturates",
                p * DIM + j,
                y[j] == x[j].saturating_add(pe[j]),
            )?;
        }
        let mut y = x;
        lib("Q15 add_to_scaled", view.add_to_scaled(p, 10, &mut y))?;
        out.i16s("Q15 x + PE[p] at 10 fractional bits", &y);
        for j in 0..DIM {
            let v = libm::round(pe[j] as f64 / 32.0);
            let want = (x[j] as f64 + v).clamp(-32768.0, 32767.0);
            ensure("Q15 add_to_scaled", p * DIM + j, y[j] as f64 == want)?;
        }
    }
    let mut y = [0 as Q15; DIM];
    let r = view.add_to_scaled(0, 16, &mut y);
    expect_err(
        out,
        "add_to_scaled frac_bits > 15",
        r,
        Error::InvalidParameter,
    )?;

    lib(
        "fill_split_q15",
        sinusoidal::fill_split_q15(ROWS, DIM, Some(PADDING), &mut t),
    )?;
    out.i16s("Q15 split table", &t);
    for (r, row) in t.chunks_exact(DIM).enumerate() {
        if r == PADDING {
            ensure("Q15 split padding row zero", r, row.iter().all(|&v| v == 0))?;
        } else {
            check_q15("Q15 split (LSB)", row, DIM, r, split_exact)?;
        }
    }
    lib(
        "split_row_q15",
        sinusoidal::split_row_q15(65537, DIM, Some(PADDING), &mut row),
    )?;
    out.i16s("Q15 split row 65537", &row);
    check_q15("Q15 split row 65537 (LSB)", &row, DIM, 65537, split_exact)?;
    let view = lib(
        "SinusoidalTableQ15::split",
        SinusoidalTableQ15::split(&t, DIM, Some(PADDING)),
    )?;
    let r = lib("Q15 split row", view.row(3))?;
    ensure(
        "Q15 split position 3 reads row 5",
        3,
        r == &t[5 * DIM..6 * DIM],
    )?;
    Ok(())
}

pub(super) fn learned(out: &mut Out<'_>) -> Result<(), Failure> {
    const D: usize = 8;
    let mut table = [0f32; 6 * D];
    XorShift32(4242).fill_f32(&mut table);
    let gpt2 = lib("LearnedPositions::gpt2", LearnedPositions::gpt2(&table, D))?;
    let opt = lib("LearnedPositions::opt", LearnedPositions::opt(&table, D))?;
    ensure("gpt2 positions", 0, gpt2.positions() == 6)?;
    ensure(
        "opt positions (rows - 2)",
        0,
        opt.positions() == 4 && opt.offset() == 2,
    )?;
    let mut rng = XorShift32(77);
    for (view, offset) in [(gpt2, 0usize), (opt, 2)] {
        for p in 0..view.positions() {
            let mut x = [0f32; D];
            rng.fill_f32(&mut x);
            let mut y = x;
            lib("add_to", view.add_to(p, &mut y))?;
            out.f32s("learned x + W[p + offset]", &y);
            let w = &table[(p + offset) * D..(p + offset + 1) * D];
            for j in 0..D {
                identical(
                    "learned add_to = x + W[p + offset]",
                    p * D + j,
                    y[j],
                    x[j] + w[j],
                )?;
            }
        }
    }
    let r = opt.row(4).map(|_| ());
    expect_err(
        out,
        "opt position past the table",
        r,
        Error::PositionOutOfRange {
            position: 4,
            len: 4,
        },
    )?;
    let mut x7 = [0f32; 7];
    let r = gpt2.add_to(0, &mut x7);
    expect_err(
        out,
        "vector of the wrong length",
        r,
        Error::LengthMismatch {
            expected: D,
            got: 7,
        },
    )?;
    let r = LearnedPositions::new(&table[..47], D, 0).map(|_| ());
    expect_err(
        out,
        "table not a whole number of rows",
        r,
        Error::LengthMismatch {
            expected: 40,
            got: 47,
        },
    )?;
    let r = LearnedPositions::opt(&table[..2 * D], D).map(|_| ());
    expect_err(out, "no row past the offset", r, Error::ZeroDimension)?;

    // Q15: exact saturating sums.
    let mut qt = [0 as Q15; 6 * D];
    XorShift32(555).fill_q15(&mut qt);
    qt[2 * D] = i16::MAX;
    qt[2 * D + 1] = i16::MIN;
    let qopt = lib("LearnedPositionsQ15::opt", LearnedPositionsQ15::opt(&qt, D))?;
    for p in 0..qopt.positions() {
        let mut x = [0 as Q15; D];
        rng.fill_q15(&mut x);
        if p == 0 {
            x[0] = 1000;
            x[1] = -1000;
        }
        let mut y = x;
        lib("Q15 add_to", qopt.add_to(p, &mut y))?;
        out.i16s("learned Q15 x + W[p + 2]", &y);
        for j in 0..D {
            let w = qt[(p + 2) * D + j];
            ensure(
                "learned Q15 saturating sum",
                p * D + j,
                y[j] == x[j].saturating_add(w),
            )?;
        }
    }
    Ok(())
}
