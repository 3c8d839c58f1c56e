//! RoPE: tables (run-time and compile-time), rotations, Q15 tables and
//! integer phases, scaling rules, 2-D axial RoPE.

use microformer::num::fixed::{self, Q15};
use microformer::pos::rope::{RopeLayout, RopePhases, RopeRowQ15, RopeTable, RopeTableQ15};
use microformer::pos::rope_const::ConstRopeTable;
use microformer::pos::rope_scaling::{RopeConfig, RopeScaling, YarnParams};
use microformer::Error;
use microformer_testkit::XorShift32;

use super::check::{ensure, expect_err, identical, identical_bits, lib, pow2, within};
use super::rope_common::*;
use crate::out::{Failure, Out};

pub(super) fn table_f32(out: &mut Out<'_>) -> Result<(), Failure> {
    let mut cos = [0f32; MAX_ROWS * PAIRS];
    let mut sin = [0f32; MAX_ROWS * PAIRS];
    for (first, rows) in CHUNKS {
        let n = rows * PAIRS;
        let (cos, sin) = (&mut cos[..n], &mut sin[..n]);
        let filled = lib("RopeTable::fill", RopeTable::fill(&CFG, 0, first, cos, sin))?;
        ensure("RopeTable::fill rows", first, filled == rows)?;
        out.f32s("RopeTable cos", cos);
        out.f32s("RopeTable sin", sin);
        let t = lib("RopeTable::new", RopeTable::new(cos, sin, PAIRS))?;
        ensure("RopeTable::positions", first, t.positions() == rows)?;
        for r in 0..rows {
            let p = first + r;
            let (c, s) = lib("RopeTable::row", t.row(r))?;
            for (i, (&c, &s)) in c.iter().zip(s).enumerate() {
                let x = angle(&CFG, p, i);
                let b = f32_entry_bound(x, 1.0);
                within(
                    "RopeTable cos vs libm::cos",
                    p * PAIRS + i,
                    c as f64,
                    libm::cos(x),
                    b,
                )?;
                within(
                    "RopeTable sin vs libm::sin",
                    p * PAIRS + i,
                    s as f64,
                    libm::sin(x),
                    b,
                )?;
            }
        }
    }
    // Typed errors.
    let (mut c3, mut s3) = ([0f32; 3], [0f32; 3]);
    let r = RopeTable::fill(&CFG, 0, 0, &mut c3, &mut s3);
    expect_err(
        out,
        "fill with less than a row",
        r,
        Error::BufferTooSmall { needed: 8, got: 3 },
    )?;
    let r = RopeTable::new(&cos[..7], &sin[..7], PAIRS).map(|_| ());
    expect_err(
        out,
        "table shorter than a row",
        r,
        Error::BufferTooSmall { needed: 8, got: 7 },
    )?;
    let r = RopeTable::new(&cos[..12], &sin[..12], PAIRS).map(|_| ());
    expect_err(
        out,
        "table of a partial row",
        r,
        Error::LengthMismatch {
            expected: 8,
            got: 12,
        },
    )?;
    let t = lib(
        "RopeTable::new",
        RopeTable::new(&cos[..16], &sin[..16], PAIRS),
    )?;
    let r = t.row(2).map(|_| ());
    expect_err(
        out,
        "row past the table",
        r,
        Error::PositionOutOfRange {
            position: 2,
            len: 2,
        },
    )
}

/// Four pairs, 64 positions: built by the compiler (on the build machine),
/// filled again at run time on the target, compared bit for bit.
const SMALL: RopeConfig<'static> = RopeConfig::new(10_000.0, 8, 64);
const SMALL_YARN: RopeConfig<'static> =
    RopeConfig::new(10_000.0, 8, 256).with_scaling(RopeScaling::Yarn(YarnParams::new(4.0, 64)));
const _: () = assert!(ConstRopeTable::<64, 4>::check(&SMALL).is_ok());
const _: () = assert!(ConstRopeTable::<32, 4>::check(&SMALL_YARN).is_ok());
static CONST_PLAIN: ConstRopeTable<64, 4> = ConstRopeTable::new(&SMALL, 64);
static CONST_YARN: ConstRopeTable<32, 4> = ConstRopeTable::new(&SMALL_YARN, 256);

pub(super) fn const_table(out: &mut Out<'_>) -> Result<(), Failure> {
    let mut cos = [0f32; 64 * 4];
    let mut sin = [0f32; 64 * 4];
    lib(
        "fill plain",
        RopeTable::fill(&SMALL, 64, 0, &mut cos, &mut sin),
    )?;
    out.f32s("run-time cos", &cos);
    out.f32s("run-time sin", &sin);
    let flat_c = CONST_PLAIN.cos.as_flattened();
    let flat_s = CONST_PLAIN.sin.as_flattened();
    for (k, ((&a, &b), (&c, &d))) in cos
        .iter()
        .zip(&sin)
        .zip(flat_c.iter().zip(flat_s))
        .enumerate()
    {
        identical("const cos = run-time cos", k, c, a)?;
        identical("const sin = run-time sin", k, d, b)?;
    }
    let n = 32 * 4;
    let (cos, sin) = (&mut cos[..n], &mut sin[..n]);
    lib("fill yarn", RopeTable::fill(&SMALL_YARN, 256, 0, cos, sin))?;
    out.f32s("run-time yarn cos", cos);
    out.f32s("run-time yarn sin", sin);
    let flat_c = CONST_YARN.cos.as_flattened();
    let flat_s = CONST_YARN.sin.as_flattened();
    for (k, ((&a, &b), (&c, &d))) in cos
        .iter()
        .zip(sin.iter())
        .zip(flat_c.iter().zip(flat_s))
        .enumerate()
    {
        identical("const yarn cos = run-time", k, c, a)?;
        identical("const yarn sin = run-time", k, d, b)?;
    }
    // Position 0: cos = a (the attention factor), sin = 0.
    let a = SMALL_YARN.attention_factor(256);
    identical("yarn cos(0) = a", 0, CONST_YARN.cos[0][0], a as f32)?;
    within(
        "yarn a = 0.1 ln 4 + 1",
        0,
        a,
        0.1 * libm::log(4.0) + 1.0,
        4.0 * pow2(-52),
    )?;
    // Rotation through the const table's view equals the run-time table's.
    let t = lib("RopeTable::new", RopeTable::new(cos, sin, 4))?;
    let mut rng = XorShift32(7);
    for p in [0usize, 1, 17, 31] {
        let mut h1 = [0f32; 8];
        rng.fill_f32(&mut h1);
        let mut h2 = h1;
        lib(
            "const rotate",
            CONST_YARN
                .as_table()
                .rotate(RopeLayout::HalfSplit, p, &mut h1),
        )?;
        lib(
            "run-time rotate",
            t.rotate(RopeLayout::HalfSplit, p, &mut h2),
        )?;
        out.f32s("const-table rotation", &h1);
        for (k, (&x, &y)) in h1.iter().zip(&h2).enumerate() {
            identical("const rotation = run-time", p * 8 + k, x, y)?;
        }
    }
    Ok(())
}

pub(super) fn rotate_f32(out: &mut Out<'_>) -> Result<(), Failure> {
    let mut cos = [0f32; 8 * PAIRS];
    let mut sin = [0f32; 8 * PAIRS];
    let mut rng = XorShift32(0x5eed);
    for first in [0usize, 1000, 65528] {
        lib("fill", RopeTable::fill(&CFG, 0, first, &mut cos, &mut sin))?;
        let t = lib("RopeTable::new", RopeTable::new(&cos, &sin, PAIRS))?;
        for r in 0..8 {
            let p = first + r;
            for layout in LAYOUTS {
                let mut x = [0f32; HEAD];
                rng.fill_f32(&mut x);
                let mut y = x;
                lib("RopeTable::rotate", t.rotate(layout, r, &mut y))?;
                out.f32s("rotated head", &y);
                for i in 0..PAIRS {
                    let (a, b) = dims(layout, PAIRS, i);
                    let (x0, x1) = (x[a] as f64, x[b] as f64);
                    let th = angle(&CFG, p, i);
                    let (s, c) = (libm::sin(th), libm::cos(th));
                    let bound = 2.0 * pow2(-24) * (x0.abs() + x1.abs());
                    within(
                        "rotation x0'",
                        p * PAIRS + i,
                        y[a] as f64,
                        x0 * c - x1 * s,
                        bound,
                    )?;
                    within(
                        "rotation x1'",
                        p * PAIRS + i,
                        y[b] as f64,
                        x0 * s + x1 * c,
                        bound,
                    )?;
                }
                for k in 2 * PAIRS..HEAD {
                    identical(
                        "partial rotary: dims past rotary_dim untouched",
                        k,
                        y[k],
                        x[k],
                    )?;
                }
            }
        }
    }
    let t = lib("RopeTable::new", RopeTable::new(&cos, &sin, PAIRS))?;
    let mut short = [0f32; 15];
    let r = t.rotate(RopeLayout::HalfSplit, 0, &mut short);
    expect_err(
        out,
        "head shorter than rotary_dim",
        r,
        Error::RotaryDimTooLarge {
            rotary_dim: 16,
            head_dim: 15,
        },
    )
}

pub(super) fn q15(out: &mut Out<'_>) -> Result<(), Failure> {
    let mut cos = [0 as Q15; MAX_ROWS * PAIRS];
    let mut sin = [0 as Q15; MAX_ROWS * PAIRS];
    let a = YARN.attention_factor(0);
    for (first, rows) in CHUNKS {
        let n = rows * PAIRS;
        let (cos, sin) = (&mut cos[..n], &mut sin[..n]);
        // Plain (a = 1), YaRN scaled (saturates where |a·cos| >= 1), YaRN unscaled.
        for (cfg, scaled, fa) in [(&CFG, true, 1.0), (&YARN, true, a), (&YARN, false, 1.0)] {
            let filled = if scaled {
                RopeTableQ15::fill(cfg, 0, first, cos, sin)
            } else {
                RopeTableQ15::fill_unscaled(cfg, 0, first, cos, sin)
            };
            ensure(
                "RopeTableQ15::fill rows",
                first,
                lib("RopeTableQ15::fill", filled)? == rows,
            )?;
            out.i16s("Q15 cos", cos);
            out.i16s("Q15 sin", sin);
            for r in 0..rows {
                let p = first + r;
                for i in 0..PAIRS {
                    let x = angle(cfg, p, i);
                    let b = q15_entry_bound(x, fa);
                    let k = r * PAIRS + i;
                    within(
                        "Q15 cos entry (LSB)",
                        p * PAIRS + i,
                        cos[k] as f64,
                        q15_exact(fa * libm::cos(x)),
                        b,
                    )?;
                    within(
                        "Q15 sin entry (LSB)",
                        p * PAIRS + i,
                        sin[k] as f64,
                        q15_exact(fa * libm::sin(x)),
                        b,
                    )?;
                }
            }
        }
        // Rotation with the plain Q15 table: <= 1.5 LSB against the exact
        // rotation of the same Q15 input (saturated to the Q15 range).
        lib("fill", RopeTableQ15::fill(&CFG, 0, first, cos, sin))?;
        let t = lib("RopeTableQ15::new", RopeTableQ15::new(cos, sin, PAIRS))?;
        let mut rng = XorShift32(first as u32 + 1);
        for r in 0..rows.min(4) {
            for layout in LAYOUTS {
                let mut x = [0 as Q15; HEAD];
                rng.fill_q15(&mut x);
                let mut y = x;
                lib("RopeTableQ15::rotate", t.rotate(layout, r, &mut y))?;
                out.i16s("Q15 rotated head", &y);
                check_q15_rotation(&CFG, first + r, layout, &x, &y, 1.0, 1.5)?;
            }
        }
    }
    Ok(())
}

/// A buffer of Q15 heads at a 4-byte boundary (the DSP kernel's `ldrd`/`strd`
/// need it; a plain `[i16; N]` may sit at an odd halfword).
#[repr(C, align(4))]
struct Heads([Q15; 64]);

/// [`RopeRowQ15::rotate_heads`] — the DSP kernel on the Cortex-M4F/M33
/// (`smlsd`/`smladx`), the portable loop elsewhere — equals
/// [`fixed::rotate_q15`] pair by pair, bit for bit: random rows with extreme
/// values (every `−32768` combination but the one the kernel declines, which
/// a last row holds to show the fallback), rows of 4 pairs (the kernel's
/// register path), 8 and 6 (its general path), 3 (odd: the loop), partial
/// rotary heads, both layouts. The rotated heads go to the stream (the host's
/// must equal them).
pub(super) fn q15_rows(out: &mut Out<'_>) -> Result<(), Failure> {
    // Its own generator: the stream's values must not depend on the core.
    let rng = &mut XorShift32(0x0a07_e15e);
    let extreme = |rng: &mut XorShift32, i: usize| -> Q15 {
        match rng.next_u32() % 8 {
            0 => i16::MIN,
            1 => i16::MAX,
            _ => rng.next_u32() as Q15 ^ (i as Q15),
        }
    };
    // (pairs, head_dim, heads, a row with c = s = −32768)
    let shapes = [
        (4usize, 8usize, 8usize, false),
        (8, 16, 4, false),
        (6, 12, 5, false),
        (3, 6, 4, false),
        (4, 12, 5, false),
        (8, 16, 3, true),
    ];
    for (case, &(pairs, head_dim, heads, corner)) in shapes.iter().enumerate() {
        let mut c = [0 as Q15; 8];
        let mut sn = [0 as Q15; 8];
        for i in 0..pairs {
            c[i] = extreme(rng, i);
            sn[i] = extreme(rng, i);
            if c[i] == i16::MIN && sn[i] == i16::MIN {
                sn[i] = i16::MAX;
            }
        }
        if corner {
            (c[5], sn[5]) = (i16::MIN, i16::MIN);
        }
        let mut buf = [0u32; 8];
        let row = lib(
            "RopeRowQ15::pack",
            RopeRowQ15::pack(&c[..pairs], &sn[..pairs], &mut buf),
        )?;
        ensure("RopeRowQ15 corner flag", case, row.has_corner() == corner)?;
        for layout in LAYOUTS {
            let n = head_dim * heads;
            let mut x = Heads([0; 64]);
            for (i, v) in x.0[..n].iter_mut().enumerate() {
                *v = extreme(rng, i);
            }
            // One pair of all −32768 (x0·s + x1·c = 2^31 needs saturation
            // when the row's pair is the corner; elsewhere a plain pair).
            x.0[10] = i16::MIN;
            x.0[11] = i16::MIN;
            let mut want = [0 as Q15; 64];
            want[..n].copy_from_slice(&x.0[..n]);
            for head in want[..n].chunks_exact_mut(head_dim) {
                for i in 0..pairs {
                    let (ia, ib) = match layout {
                        RopeLayout::Interleaved => (2 * i, 2 * i + 1),
                        RopeLayout::HalfSplit => (i, i + pairs),
                    };
                    (head[ia], head[ib]) = fixed::rotate_q15(head[ia], head[ib], c[i], sn[i]);
                }
            }
            lib(
                "RopeRowQ15::rotate_heads",
                row.rotate_heads(layout, head_dim, &mut x.0[..n]),
            )?;
            for (i, (&g, &w)) in x.0[..n].iter().zip(&want[..n]).enumerate() {
                identical_bits(
                    "RopeRowQ15::rotate_heads = rotate_q15",
                    case * 1000 + i,
                    g as u16 as u32,
                    w as u16 as u32,
                )?;
            }
            out.i16s("Q15 row-rotated heads", &x.0[..n]);
        }
    }
    // On the DSP cores, the kernel itself must take the shapes it is for.
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    {
        use microformer::num::kernels_m4::rope_q15_interleaved;
        let cs = [0x7fff_0000u32, 0x5a82_5a82, 0x8000_7fff, 0x1234_8001];
        let mut x = Heads([0x4001; 64]);
        ensure(
            "rope_q15_interleaved ran (4 pairs)",
            0,
            rope_q15_interleaved(&cs, &mut x.0[..32]),
        )?;
        ensure(
            "rope_q15_interleaved ran (2 pairs)",
            1,
            rope_q15_interleaved(&cs[..2], &mut x.0[..32]),
        )?;
        ensure(
            "rope_q15_interleaved declines an odd row",
            2,
            !rope_q15_interleaved(&cs[..3], &mut x.0[..30]),
        )?;
        ensure(
            "rope_q15_interleaved declines an unaligned head",
            3,
            !rope_q15_interleaved(&cs[..2], &mut x.0[1..9]),
        )?;
        use microformer::num::kernels_m4::rope_q15_half4;
        ensure(
            "rope_q15_half4 ran (heads at an odd halfword)",
            4,
            rope_q15_half4(&cs, &mut x.0[1..33]),
        )?;
        ensure(
            "rope_q15_half4 declines part of a head",
            5,
            !rope_q15_half4(&cs, &mut x.0[..12]),
        )?;
    }
    Ok(())
}

/// Checks a Q15 rotation (pairs of `cfg`, attention factor `a`) against the
/// exact rotation of the same input, within `bound` LSB (+ the reference's
/// own f64 allowance); dims past the rotary part must be untouched.
fn check_q15_rotation(
    cfg: &RopeConfig<'_>,
    p: usize,
    layout: RopeLayout,
    x: &[Q15],
    y: &[Q15],
    a: f64,
    bound: f64,
) -> Result<(), Failure> {
    let pairs = cfg.pairs();
    for i in 0..pairs {
        let (ia, ib) = dims(layout, pairs, i);
        let (x0, x1) = (x[ia] as f64 / 32768.0, x[ib] as f64 / 32768.0);
        let th = angle(cfg, p, i);
        let (s, c) = (a * libm::sin(th), a * libm::cos(th));
        let b = bound + q15_entry_bound(th, a) - 0.5;
        within(
            "Q15 rotation x0' (LSB)",
            p * pairs + i,
            y[ia] as f64,
            q15_exact(x0 * c - x1 * s),
            b,
        )?;
        within(
            "Q15 rotation x1' (LSB)",
            p * pairs + i,
            y[ib] as f64,
            q15_exact(x0 * s + x1 * c),
            b,
        )?;
    }
    for k in 2 * pairs..x.len() {
        ensure(
            "Q15 partial rotary: dims past rotary_dim untouched",
            k,
            x[k] == y[k],
        )?;
    }
    Ok(())
}

pub(super) fn phases(out: &mut Out<'_>) -> Result<(), Failure> {
    let positions = (0..64usize)
        .chain((64..=65535).step_by(1021))
        .chain([65535]);
    let a = YARN.attention_factor(0);
    for (cfg, fa) in [(&CFG, 1.0), (&YARN, a)] {
        let mut steps = [0u64; PAIRS];
        let ph = lib("RopePhases::new", RopePhases::new(cfg, 0, &mut steps))?;
        out.u64s("phase steps", ph.steps());
        // cos/sin: <= 1.2 LSB (a = 1), <= 1.2·a + 0.5 LSB (a > 1).
        let bound = if fa == 1.0 { 1.2 } else { 1.2 * fa + 0.5 };
        for p in positions.clone() {
            for i in 0..PAIRS {
                let (c, s) = lib("cos_sin_q15", ph.cos_sin_q15(p, i))?;
                out.i16s("phase cos, sin", &[c, s]);
                let x = angle(cfg, p, i);
                let b = bound + q15_entry_bound(x, fa) - 0.5;
                within(
                    "phase cos (LSB)",
                    p * PAIRS + i,
                    c as f64,
                    q15_exact(fa * libm::cos(x)),
                    b,
                )?;
                within(
                    "phase sin (LSB)",
                    p * PAIRS + i,
                    s as f64,
                    q15_exact(fa * libm::sin(x)),
                    b,
                )?;
            }
        }
        // Far positions: integer arithmetic only, compared with the host.
        for p in [1usize << 20, 123_456_789, 4_000_000_000] {
            for i in 0..PAIRS {
                let cs = lib("cos_sin_q15 far", ph.cos_sin_q15(p, i))?;
                out.i16s("far phase cos, sin", &[cs.0, cs.1]);
            }
        }
        // Rotation: <= 2.9 LSB (a = 1) against the exact rotation.
        let mut rng = XorShift32(99);
        for p in positions.clone().step_by(7) {
            for layout in LAYOUTS {
                let mut x = [0 as Q15; HEAD];
                rng.fill_q15(&mut x);
                let mut y = x;
                lib("RopePhases::rotate", ph.rotate(layout, p, &mut y))?;
                out.i16s("phase-rotated head", &y);
                if fa == 1.0 {
                    check_q15_rotation(cfg, p, layout, &x, &y, 1.0, 2.9)?;
                }
            }
        }
        let r = ph.cos_sin_q15(0, PAIRS);
        expect_err(
            out,
            "pair past the steps",
            r,
            Error::LengthMismatch {
                expected: PAIRS,
                got: PAIRS,
            },
        )?;
        let r = ph.cos_sin_q15(u32::MAX as usize, 0);
        let e = Error::PositionOutOfRange {
            position: u32::MAX as usize,
            len: u32::MAX as usize,
        };
        expect_err(out, "position 2^32 - 1", r, e)?;
    }
    let mut short = [0u64; 3];
    let r = RopePhases::new(&CFG, 0, &mut short).map(|_| ());
    expect_err(
        out,
        "steps buffer too small",
        r,
        Error::BufferTooSmall {
            needed: PAIRS,
            got: 3,
        },
    )
}
