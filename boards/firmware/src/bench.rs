//! Kernel timings: instructions per RoPE-rotated pair (f32 table, Q15 table, Q15
//! integer phases), per ALiBi bias row, per softmax row, counted by the board's
//! clock (instructions under QEMU `-icount shift=0`, see [`crate::qemu`]).
//!
//! Each kernel runs `REPEAT` times over fixed inputs; the figure is the total
//! divided by the work done. Figures, not checks: nothing here asserts on speed
//! (the kernels' values are checked by the on-target cases).

use microformer::attn;
use microformer::num::fixed::Q15;
use microformer::pos::alibi::{self, AlibiRule, FixedSlope};
use microformer::pos::rope::{RopeLayout, RopePhases, RopeRowQ15, RopeTable, RopeTableQ15};
use microformer::pos::rope_scaling::RopeConfig;
use microformer::Error;

/// Head dimension of the RoPE timings (stories260K's: 8 pairs).
const HEAD_DIM: usize = 16;
/// Head dimension of the packed Q15 rows' timings: stories260K's and the
/// project's models' (4 pairs).
const SMALL_HEAD: usize = 8;
/// Heads rotated per call (a q vector of 4 heads, as aidreams260K).
const HEADS: usize = 4;
/// Positions in the tables.
const POSITIONS: usize = 64;
/// Keys in a bias or softmax row (stories260K's full context).
const ROW: usize = 512;
/// Calls per timing.
const REPEAT: u64 = 16;

/// One kernel's figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Timing {
    /// What was timed.
    pub kernel: &'static str,
    /// The unit of work.
    pub per: &'static str,
    /// Instructions per unit, times 100 (two decimals).
    pub instructions_x100: u64,
}

/// Query and key heads of [`SMALL_HEAD`] rotated together by the integer step
/// (stories260K: 8 query heads, 4 key heads).
const QK_HEADS: usize = 12;

/// Q15 heads at a 4-byte boundary, as the integer step's (the DSP RoPE
/// kernel's `ldrd`/`strd` need it).
#[repr(C, align(4))]
struct AlignedQk([Q15; QK_HEADS * SMALL_HEAD]);

fn per(total: u64, units: u64) -> u64 {
    (total * 100).checked_div(units).unwrap_or(0)
}

/// Times every kernel with `clock` (instructions) and calls `report` with each
/// figure.
pub fn kernels(clock: &dyn Fn() -> u64, mut report: impl FnMut(Timing)) -> Result<(), Error> {
    let pairs = HEAD_DIM / 2;
    let cfg = RopeConfig::new(10_000.0, HEAD_DIM, POSITIONS);
    let mut cos = [0f32; POSITIONS * HEAD_DIM / 2];
    let mut sin = [0f32; POSITIONS * HEAD_DIM / 2];
    RopeTable::fill(&cfg, POSITIONS, 0, &mut cos, &mut sin)?;
    let table = RopeTable::new(&cos, &sin, pairs)?;
    let mut q = [0f32; HEADS * HEAD_DIM];
    for (i, v) in q.iter_mut().enumerate() {
        *v = (i as f32 - 20.0) * 0.03125;
    }
    let rotated_pairs = REPEAT * (HEADS * pairs) as u64;

    // The model's rotation hook: one cos/sin row for every head of q (run.c's loop).
    let start = clock();
    for r in 0..REPEAT as usize {
        let p = r % POSITIONS;
        table.rotate_heads(
            RopeLayout::Interleaved,
            p,
            HEAD_DIM,
            core::hint::black_box(&mut q),
        )?;
    }
    report(Timing {
        kernel: "RoPE f32 table, rotate_heads (interleaved)",
        per: "pair",
        instructions_x100: per(clock() - start, rotated_pairs),
    });

    let start = clock();
    for r in 0..REPEAT as usize {
        for head in core::hint::black_box(&mut q).chunks_exact_mut(HEAD_DIM) {
            table.rotate(RopeLayout::Interleaved, r % POSITIONS, head)?;
        }
    }
    report(Timing {
        kernel: "RoPE f32 table, RopeTable::rotate (interleaved)",
        per: "pair",
        instructions_x100: per(clock() - start, rotated_pairs),
    });

    let mut qc = [0 as Q15; POSITIONS * HEAD_DIM / 2];
    let mut qs = [0 as Q15; POSITIONS * HEAD_DIM / 2];
    RopeTableQ15::fill(&cfg, POSITIONS, 0, &mut qc, &mut qs)?;
    let q15_table = RopeTableQ15::new(&qc, &qs, pairs)?;
    let mut hq = [0 as Q15; HEADS * HEAD_DIM];
    for (i, v) in hq.iter_mut().enumerate() {
        *v = ((i as i32 * 2731) % 65536 - 32768) as Q15;
    }
    let start = clock();
    for r in 0..REPEAT as usize {
        for head in core::hint::black_box(&mut hq).chunks_exact_mut(HEAD_DIM) {
            q15_table.rotate(RopeLayout::Interleaved, r % POSITIONS, head)?;
        }
    }
    report(Timing {
        kernel: "RoPE Q15 table, RopeTableQ15::rotate (interleaved)",
        per: "pair",
        instructions_x100: per(clock() - start, rotated_pairs),
    });

    // The integer step's rotation: a packed Q15 row (`c | s << 16` per pair)
    // over q and k in one call, at the shape of stories260K and the project's
    // models (8 query and 4 key heads of 8: 4 pairs); the DSP kernels on the
    // M4F/M33.
    let small = RopeConfig::new(10_000.0, SMALL_HEAD, POSITIONS);
    let mut sc = [0 as Q15; POSITIONS * SMALL_HEAD / 2];
    let mut ss = [0 as Q15; POSITIONS * SMALL_HEAD / 2];
    RopeTableQ15::fill(&small, POSITIONS, 0, &mut sc, &mut ss)?;
    let mut packed = [0u32; SMALL_HEAD / 2];
    let row = RopeRowQ15::pack(&sc[5 * 4..6 * 4], &ss[5 * 4..6 * 4], &mut packed)?;
    let mut sq = AlignedQk([0; QK_HEADS * SMALL_HEAD]);
    for (i, v) in sq.0.iter_mut().enumerate() {
        *v = ((i as i32 * 2731) % 65536 - 32768) as Q15;
    }
    let small_pairs = REPEAT * (sq.0.len() / 2) as u64;
    for (layout, kernel) in [
        (
            RopeLayout::Interleaved,
            "RoPE Q15 packed row, RopeRowQ15::rotate_heads, q and k, 12 heads of 8 (interleaved)",
        ),
        (
            RopeLayout::HalfSplit,
            "RoPE Q15 packed row, RopeRowQ15::rotate_heads, q and k, 12 heads of 8 (half-split)",
        ),
    ] {
        let start = clock();
        for _ in 0..REPEAT {
            row.rotate_heads(layout, SMALL_HEAD, core::hint::black_box(&mut sq.0))?;
        }
        report(Timing {
            kernel,
            per: "pair",
            instructions_x100: per(clock() - start, small_pairs),
        });
    }
    // The same with the row read from an f32 table each time (the integer
    // step reads it once per position, for q and k of every layer).
    let mut fc = [0f32; POSITIONS * SMALL_HEAD / 2];
    let mut fs = [0f32; POSITIONS * SMALL_HEAD / 2];
    RopeTable::fill(&small, POSITIONS, 0, &mut fc, &mut fs)?;
    let ftable = RopeTable::new(&fc, &fs, SMALL_HEAD / 2)?;
    let start = clock();
    for r in 0..REPEAT as usize {
        ftable.row_q15(r % POSITIONS, &mut packed)?.rotate_heads(
            RopeLayout::Interleaved,
            SMALL_HEAD,
            core::hint::black_box(&mut sq.0),
        )?;
    }
    report(Timing {
        kernel:
            "RoPE f32 table → Q15 row, row_q15 + rotate_heads, q and k, 12 heads of 8 (interleaved)",
        per: "pair",
        instructions_x100: per(clock() - start, small_pairs),
    });

    let mut steps = [0u64; HEAD_DIM / 2];
    let phases = RopePhases::new(&cfg, POSITIONS, &mut steps)?;
    let start = clock();
    for r in 0..REPEAT as usize {
        for head in core::hint::black_box(&mut hq).chunks_exact_mut(HEAD_DIM) {
            phases.rotate(RopeLayout::Interleaved, 1000 + r, head)?;
        }
    }
    report(Timing {
        kernel: "RoPE Q15 integer phases, RopePhases::rotate (interleaved)",
        per: "pair",
        instructions_x100: per(clock() - start, rotated_pairs),
    });

    // ALiBi: one causal row of ROW keys (query at the last position).
    let slope = alibi::slope(AlibiRule::Bloom, 8, 3)?;
    let mut row = [0f32; ROW];
    let start = clock();
    for _ in 0..REPEAT {
        alibi::causal_bias_row(slope, ROW - 1, core::hint::black_box(&mut row))?;
    }
    report(Timing {
        kernel: "ALiBi f32 causal bias row, 512 keys",
        per: "row",
        instructions_x100: per(clock() - start, REPEAT),
    });
    let fixed = FixedSlope::new(AlibiRule::Bloom, 8, 3)?;
    let mut irow = [0i32; ROW];
    let start = clock();
    for _ in 0..REPEAT {
        fixed.causal_row(ROW - 1, 16, core::hint::black_box(&mut irow))?;
    }
    report(Timing {
        kernel: "ALiBi fixed-point causal bias row (i32, 16 fraction bits), 512 keys",
        per: "row",
        instructions_x100: per(clock() - start, REPEAT),
    });

    // Softmax of attention scores: a row of ROW scores of a realistic spread.
    let mut scores = [0f32; ROW];
    let mut time = 0;
    for r in 0..REPEAT {
        for (j, s) in scores.iter_mut().enumerate() {
            *s = ((j as u64 * 37 + r * 11) % 97) as f32 * 0.0625 - 3.0;
        }
        let start = clock();
        attn::softmax(core::hint::black_box(&mut scores));
        time += clock() - start;
    }
    report(Timing {
        kernel: "softmax, attn::softmax, 512 scores",
        per: "row",
        instructions_x100: per(time, REPEAT),
    });
    Ok(())
}
