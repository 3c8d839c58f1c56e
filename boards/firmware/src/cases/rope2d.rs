//! 2-D axial RoPE (f32 and Q15).

use microformer::num::fixed::Q15;
use microformer::pos::rope::{RopeLayout, RopeTable, RopeTableQ15};
use microformer::pos::rope2d::{Rope2d, Rope2dQ15};
use microformer::pos::rope_scaling::RopeConfig;
use microformer::Error;
use microformer_testkit::XorShift32;

use super::check::{ensure, expect_err, identical, lib};
use super::rope_common::*;
use crate::out::{Failure, Out};

/// Axis of a 2-D RoPE: four pairs (head of 16 rotary dims + 2), 16 positions.
const AXIS: RopeConfig<'static> = RopeConfig::new(100.0, 8, 16);

pub(super) fn two_d(out: &mut Out<'_>) -> Result<(), Failure> {
    const A: usize = 4;
    const D: usize = 4 * A + 2;
    let mut cos = [0f32; 16 * A];
    let mut sin = [0f32; 16 * A];
    lib(
        "axis fill",
        RopeTable::fill(&AXIS, 0, 0, &mut cos, &mut sin),
    )?;
    let axis = lib("axis table", RopeTable::new(&cos, &sin, A))?;
    let rope = Rope2d::new(axis);
    ensure("2-D pairs = 2A", 0, rope.pairs() == 2 * A)?;
    let mut qc = [0 as Q15; 16 * A];
    let mut qs = [0 as Q15; 16 * A];
    lib(
        "Q15 axis fill",
        RopeTableQ15::fill(&AXIS, 0, 0, &mut qc, &mut qs),
    )?;
    let qaxis = lib("Q15 axis table", RopeTableQ15::new(&qc, &qs, A))?;
    let qrope = Rope2dQ15::new(qaxis);
    let grid = [0usize, 1, 2, 7, 15];
    let mut rng = XorShift32(2024);
    for row in grid {
        for col in grid {
            let k = row * 16 + col;
            // f32, both layouts.
            for layout in LAYOUTS {
                let mut x = [0f32; D];
                rng.fill_f32(&mut x);
                let mut y = x;
                lib("Rope2d::rotate", rope.rotate(layout, row, col, &mut y))?;
                out.f32s("2-D rotated head", &y);
                for j in 4 * A..D {
                    identical("2-D: dims past 4A untouched", j, y[j], x[j])?;
                }
                if layout == RopeLayout::Interleaved {
                    // Column half: 1-D RoPE (A pairs) at `col`; row half: at `row`.
                    let mut colh = x;
                    lib("1-D column", axis.rotate(layout, col, &mut colh[..2 * A]))?;
                    let mut rowh = x;
                    lib("1-D row", axis.rotate(layout, row, &mut rowh[2 * A..4 * A]))?;
                    for j in 0..2 * A {
                        identical("2-D column half = 1-D at column", k, y[j], colh[j])?;
                        identical(
                            "2-D row half = 1-D at row",
                            k,
                            y[2 * A + j],
                            rowh[2 * A + j],
                        )?;
                    }
                }
                if row == 0 {
                    // Angle 0: the row half keeps its values (x·1 − y·0).
                    let (ra, rb) = match layout {
                        RopeLayout::Interleaved => (2 * A, 4 * A),
                        RopeLayout::HalfSplit => (A, 2 * A),
                    };
                    for j in ra..rb {
                        identical("2-D row 0: row half unchanged", k, y[j], x[j])?;
                        if layout == RopeLayout::HalfSplit {
                            identical(
                                "2-D row 0: row half unchanged",
                                k,
                                y[j + 2 * A],
                                x[j + 2 * A],
                            )?;
                        }
                    }
                }
            }
            // Q15, interleaved: the same composition, bit for bit.
            let mut x = [0 as Q15; D];
            rng.fill_q15(&mut x);
            let mut y = x;
            lib(
                "Rope2dQ15::rotate",
                qrope.rotate(RopeLayout::Interleaved, row, col, &mut y),
            )?;
            out.i16s("2-D Q15 rotated head", &y);
            let mut colh = x;
            lib(
                "Q15 1-D column",
                qaxis.rotate(RopeLayout::Interleaved, col, &mut colh[..2 * A]),
            )?;
            let mut rowh = x;
            lib(
                "Q15 1-D row",
                qaxis.rotate(RopeLayout::Interleaved, row, &mut rowh[2 * A..4 * A]),
            )?;
            for j in 0..2 * A {
                ensure("2-D Q15 column half = 1-D", k, y[j] == colh[j])?;
                ensure("2-D Q15 row half = 1-D", k, y[2 * A + j] == rowh[2 * A + j])?;
            }
        }
    }
    let mut h = [0f32; D];
    let r = rope.rotate(RopeLayout::Interleaved, 16, 0, &mut h);
    expect_err(
        out,
        "row past the axis",
        r,
        Error::PositionOutOfRange {
            position: 16,
            len: 16,
        },
    )?;
    let mut short = [0f32; 15];
    let r = rope.rotate(RopeLayout::HalfSplit, 1, 1, &mut short);
    expect_err(
        out,
        "head shorter than 4A",
        r,
        Error::RotaryDimTooLarge {
            rotary_dim: 16,
            head_dim: 15,
        },
    )
}
