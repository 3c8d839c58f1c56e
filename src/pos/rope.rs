//! Rotary position embedding (RoPE): precomputed cos/sin tables in f32 and Q15,
//! integer phases, and the rotation of q/k heads in both pair layouts.
//!
//! # Formula
//!
//! For a head `x` whose first `d = 2·pairs` dims are rotary (partial rotary:
//! the dims past `d` are left untouched), pair `i` at position `p` is rotated
//! by the angle `p·ω_i` and scaled by the attention factor `a`:
//!
//! ```text
//! x0' = a·(x0·cos(p·ω_i) − x1·sin(p·ω_i))
//! x1' = a·(x0·sin(p·ω_i) + x1·cos(p·ω_i))
//! ```
//!
//! with `ω_i` and `a` from [`RopeConfig`] (every Hugging Face scaling rule, see
//! [`crate::pos::rope_scaling`]). Which dims form pair `i` is the
//! [`RopeLayout`]:
//!
//! - [`RopeLayout::Interleaved`]: `(x[2i], x[2i+1])`, as GPT-J, Meta's Llama
//!   reference (`view_as_complex`) and llama2.c's `run.c`;
//! - [`RopeLayout::HalfSplit`]: `(x[i], x[i + d/2])`, as GPT-NeoX and Hugging
//!   Face Llama (`q·cos + rotate_half(q)·sin`, `modeling_llama.py`).
//!
//! Sources: Su et al., *RoFormer* (arXiv:2104.09864); Hugging Face transformers
//! `modeling_rope_utils.py` and `modeling_llama.py` (`apply_rotary_pos_emb`);
//! llama2.c `run.c`.
//!
//! # Tables and how they are built
//!
//! - [`RopeTable`]: f32 rows `[position][pair]` of `a·cos`, `a·sin`. Each entry
//!   is [`entry_f32`]: the angle is formed in f64 as turns
//!   `t = p·(ω/2π)` (never `p·ω` in f32), `(sin, cos)(2πt)` by
//!   [`math::sin_cos_turns`] (exact reduction, ~2 ulp), times `a`, rounded
//!   once to f32. The same `const fn` builds the compile-time
//!   [`crate::pos::rope_const::ConstRopeTable`], so both are bit-identical.
//! - [`RopeTableQ15`]: the same rows in Q15, `round(32768·a·cos)` saturating
//!   to `[−32768, 32767]` ([`entry_q15`]). With `a > 1` (YaRN, LongRoPE) the
//!   entries with `|a·cos| ≥ 1` saturate: use
//!   [`fill_unscaled`](RopeTableQ15::fill_unscaled) and fold `a²` into the
//!   score scale instead (q and k both carry one `a`).
//! - [`RopePhases`]: no table at all: one `u64` phase step per pair
//!   ([`fixed::phase_step`], 64 fractional bits of a turn); the phase at `p` is
//!   exact wrapping integer arithmetic rounded once ([`fixed::phase_at`]), and
//!   cos/sin come from the shared quarter-wave table ([`fixed::sin_cos_q15`]),
//!   times `a` in Q30 when `a ≠ 1`.
//! - [`RopeRowQ15`]: one position's Q15 row packed `c | s << 16` per pair,
//!   the operand order of the Cortex-M4F/M33 dual multiplies (`smlsd`,
//!   `smladx`): what the integer step rotates q and k with (from an f32
//!   table, [`RopeTable::row_q15`]), exactly [`fixed::rotate_q15`] per pair.
//!
//! # Error bounds (checked at every position 0..=65535 in `tests/rope.rs`)
//!
//! - f32 table entry vs the exact `a·cos(p·ω)`: one f32 rounding, at most
//!   half an ulp, `≤ 2^-24·|a·cos|` (≤ 3e-8 for `a ≤ 1`, 6e-8 for YaRN's
//!   `a = 1.21`), plus the f64 angle error ≈ `p·ω·2^-52` (< 2e-11 rad at
//!   `p = 65535`): far under 1e-6 absolute.
//! - f32 rotation: each output within `3·2^-24·√(x0² + x1²)` of the exact
//!   rotation (table rounding, two products, one sum), so the norm is kept
//!   to `≈ 4.3·2^-24` relative.
//! - Q15 table entry: ≤ 0.5 LSB (2^-16) of the value saturated to Q15.
//! - [`RopePhases`] cos/sin: ≤ 1.2 LSB for `a = 1` (quarter-wave table,
//!   see [`crate::num::fixed`]); ≤ `1.2·a + 0.5` LSB otherwise.
//! - Q15 rotation ([`fixed::rotate_q15`], Q30 accumulator, saturating)
//!   against the exact rotation of the same Q15 input (saturated), for
//!   `|x0|, |x1| ≤ 1`: with the Q15 table ≤ 0.5 + 0.5 + 0.5 = 1.5 LSB, up to
//!   2 LSB where `cos ≈ ±1` is stored 1 LSB short as 32767; with phases
//!   ≤ 1.2 + 1.2 + 0.5 = 2.9 LSB.
//!
//! Measured worst over the seven `tables.json` configurations, 65536
//! positions each: f32 5.96e-8 (YaRN, `a = 1.21`; 2.98e-8 for `a = 1`),
//! Q15 table 0.50 LSB, phases 1.02 LSB (`a = 1`) and 1.67 LSB (`a = 1.21`),
//! Q15 rotation 1.89 LSB (table) and 2.13 LSB (phases).
//!
//! # Memory
//!
//! A table holds `positions × pairs` cos and as many sin entries:
//! `8·positions·pairs` bytes in f32, `4·positions·pairs` in Q15. For 512
//! positions × 4 frequencies (head dim 8): 16 KiB in f32, 8 KiB in Q15.
//! [`RopePhases`] needs 8 bytes per pair (32 bytes for 4 pairs) plus the
//! shared 514-byte quarter-wave table, for any number of positions.
//! Tables live in caller storage (flash or RAM); nothing is allocated.
//!
//! Cost per pair: f32, 4 multiplies + 2 adds; Q15, 4 multiplies into two
//! `i32` accumulators; phases add one 64-bit multiply and two table reads.

use crate::num::fixed::{self, Q15};
use crate::num::math;
use crate::pos::rope_scaling::RopeConfig;
use crate::Error;

/// Which dims of a head form rotary pair `i` (`d` = rotary dim).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    /// Pairs `(2i, 2i+1)`: GPT-J, Meta Llama, llama2.c.
    Interleaved,
    /// Pairs `(i, i + d/2)`: GPT-NeoX, Hugging Face Llama (`rotate_half`).
    HalfSplit,
}

/// One f32 table entry `(a·cos(p·ω), a·sin(p·ω))`: the angle in f64 turns
/// `p·(ω/2π)`, [`math::sin_cos_turns`], times `a`, rounded once to f32.
///
/// The single definition shared by [`RopeTable::fill`] and the compile-time
/// [`crate::pos::rope_const::ConstRopeTable`], so both agree bit for bit.
pub const fn entry_f32(inv_freq: f64, attention_factor: f64, position: usize) -> (f32, f32) {
    let (s, c) = math::sin_cos_turns(position as f64 * (inv_freq / math::TAU));
    ((c * attention_factor) as f32, (s * attention_factor) as f32)
}

/// One Q15 table entry: `round(32768·a·cos(p·ω))`, likewise for sin,
/// saturating to `[−32768, 32767]`.
pub const fn entry_q15(inv_freq: f64, attention_factor: f64, position: usize) -> (Q15, Q15) {
    let (s, c) = math::sin_cos_turns(position as f64 * (inv_freq / math::TAU));
    (
        fixed::q15_from_f64(c * attention_factor),
        fixed::q15_from_f64(s * attention_factor),
    )
}

/// Some pairs of a head in one layout: the interleaved dims `(2i, 2i+1)`, or
/// the two halves `(i, i + d/2)` of a half-split rotary part.
enum Pairs<'h, T> {
    Interleaved(&'h mut [T]),
    HalfSplit(&'h mut [T], &'h mut [T]),
}

impl<'h, T> Pairs<'h, T> {
    /// Every pair of a rotary part `rot` (`2·pairs` dims).
    #[inline(always)]
    fn whole(layout: RopeLayout, rot: &'h mut [T]) -> Self {
        match layout {
            RopeLayout::Interleaved => Pairs::Interleaved(rot),
            RopeLayout::HalfSplit => {
                let (lo, hi) = rot.split_at_mut(rot.len() / 2);
                Pairs::HalfSplit(lo, hi)
            }
        }
    }

    /// `f(a, b, coefficient)` for each pair in order, with the coefficients
    /// zipped in: the one traversal every rotation of this module uses.
    #[inline(always)]
    fn for_each<C>(self, coefs: impl IntoIterator<Item = C>, mut f: impl FnMut(&mut T, &mut T, C)) {
        match self {
            Pairs::Interleaved(rot) => {
                for (pair, c) in rot.chunks_exact_mut(2).zip(coefs) {
                    if let [a, b] = pair {
                        f(a, b, c);
                    }
                }
            }
            Pairs::HalfSplit(lo, hi) => {
                for ((a, b), c) in lo.iter_mut().zip(hi.iter_mut()).zip(coefs) {
                    f(a, b, c);
                }
            }
        }
    }
}

/// Pairs `start..start + count` of a head whose rotary part has `pairs` pairs.
///
/// Errors: [`Error::RotaryDimTooLarge`] when `head.len() < 2·pairs`,
/// [`Error::LengthMismatch`] when `start + count > pairs`.
fn pairs_mut<T>(
    layout: RopeLayout,
    pairs: usize,
    start: usize,
    count: usize,
    head: &mut [T],
) -> Result<Pairs<'_, T>, Error> {
    let head_dim = head.len();
    let rotary_dim = pairs.saturating_mul(2);
    let rotary = head.get_mut(..rotary_dim).ok_or(Error::RotaryDimTooLarge {
        rotary_dim,
        head_dim,
    })?;
    let end = start.saturating_add(count);
    if end > pairs {
        return Err(Error::LengthMismatch {
            expected: pairs,
            got: end,
        });
    }
    Ok(match layout {
        RopeLayout::Interleaved => {
            Pairs::Interleaved(rotary.get_mut(2 * start..2 * end).unwrap_or_default())
        }
        RopeLayout::HalfSplit => {
            let (lo, hi) = rotary.split_at_mut(pairs);
            Pairs::HalfSplit(
                lo.get_mut(start..end).unwrap_or_default(),
                hi.get_mut(start..end).unwrap_or_default(),
            )
        }
    })
}

fn check_cos_sin(cos: usize, sin: usize) -> Result<(), Error> {
    if cos == sin {
        Ok(())
    } else {
        Err(Error::LengthMismatch {
            expected: cos,
            got: sin,
        })
    }
}

/// Rotates pairs `start..start + cos.len()` of `head` (rotary part of
/// `pairs` pairs, in `layout`) by the given f32 cos/sin: the building block
/// of [`RopeTable::rotate`] and [`crate::pos::rope2d`].
///
/// Errors: [`Error::LengthMismatch`] (`cos`/`sin` lengths differ, or the
/// range passes `pairs`), [`Error::RotaryDimTooLarge`] (`head.len() < 2·pairs`).
pub fn rotate_pairs_f32(
    layout: RopeLayout,
    pairs: usize,
    start: usize,
    cos: &[f32],
    sin: &[f32],
    head: &mut [f32],
) -> Result<(), Error> {
    check_cos_sin(cos.len(), sin.len())?;
    pairs_mut(layout, pairs, start, cos.len(), head)?
        .for_each(cos.iter().zip(sin), |a, b, (&c, &s)| rotate_f32(a, b, c, s));
    Ok(())
}

/// The f32 rotation of one pair: `a' = a·c − b·s`, `b' = a·s + b·c` (`run.c`'s
/// `v0·fcr − v1·fci`, `v0·fci + v1·fcr`; Hugging Face's `q·cos + rotate_half(q)·sin`,
/// whose sums are the same two products added in the other order). The one
/// place the f32 rotation is written.
#[inline(always)]
fn rotate_f32(a: &mut f32, b: &mut f32, c: f32, s: f32) {
    let (x0, x1) = (*a, *b);
    *a = x0 * c - x1 * s;
    *b = x0 * s + x1 * c;
}

/// Checks a `[heads][head_dim]` vector for [`RopeTable::rotate_heads`] and
/// [`RopeTableQ15::rotate_heads`].
fn check_heads(pairs: usize, head_dim: usize, len: usize) -> Result<(), Error> {
    let rotary_dim = pairs.saturating_mul(2);
    if head_dim < rotary_dim {
        return Err(Error::RotaryDimTooLarge {
            rotary_dim,
            head_dim,
        });
    }
    if head_dim == 0 || len % head_dim != 0 {
        return Err(Error::LengthMismatch {
            expected: len.next_multiple_of(head_dim.max(1)),
            got: len,
        });
    }
    Ok(())
}

/// Rotates the first `2·cos.len()` dims of every head of `v` (heads of
/// `head_dim`, checked by [`check_heads`]) with `rotate`, pairs in `layout`.
#[inline(always)]
fn rotate_each_head<T>(
    layout: RopeLayout,
    cos: &[T],
    sin: &[T],
    head_dim: usize,
    v: &mut [T],
    rotate: impl Fn(&mut T, &mut T, &T, &T),
) {
    let pairs = cos.len();
    for head in v.chunks_exact_mut(head_dim) {
        let Some(rot) = head.get_mut(..2 * pairs) else {
            return;
        };
        Pairs::whole(layout, rot).for_each(cos.iter().zip(sin), |a, b, (c, s)| rotate(a, b, c, s));
    }
}

/// Q15 counterpart of [`rotate_pairs_f32`], with [`fixed::rotate_q15`].
pub fn rotate_pairs_q15(
    layout: RopeLayout,
    pairs: usize,
    start: usize,
    cos: &[Q15],
    sin: &[Q15],
    head: &mut [Q15],
) -> Result<(), Error> {
    check_cos_sin(cos.len(), sin.len())?;
    pairs_mut(layout, pairs, start, cos.len(), head)?
        .for_each(cos.iter().zip(sin), |a, b, (&c, &s)| {
            (*a, *b) = fixed::rotate_q15(*a, *b, c, s)
        });
    Ok(())
}

/// Row storage shared by the f32 and Q15 tables.
#[derive(Debug, Clone, Copy)]
struct Rows<'a, T> {
    cos: &'a [T],
    sin: &'a [T],
    pairs: usize,
}

impl<'a, T> Rows<'a, T> {
    fn new(cos: &'a [T], sin: &'a [T], pairs: usize) -> Result<Self, Error> {
        if pairs == 0 {
            return Err(Error::ZeroDimension);
        }
        check_cos_sin(cos.len(), sin.len())?;
        if cos.len() < pairs {
            return Err(Error::BufferTooSmall {
                needed: pairs,
                got: cos.len(),
            });
        }
        if cos.len() % pairs != 0 {
            return Err(Error::LengthMismatch {
                expected: cos.len() / pairs * pairs,
                got: cos.len(),
            });
        }
        Ok(Self { cos, sin, pairs })
    }

    fn positions(&self) -> usize {
        self.cos.len().checked_div(self.pairs).unwrap_or(0)
    }

    fn row(&self, position: usize) -> Result<(&'a [T], &'a [T]), Error> {
        let out = Error::PositionOutOfRange {
            position,
            len: self.positions(),
        };
        let start = position.checked_mul(self.pairs).ok_or(out)?;
        let end = start.checked_add(self.pairs).ok_or(out)?;
        match (self.cos.get(start..end), self.sin.get(start..end)) {
            (Some(c), Some(s)) if self.pairs > 0 => Ok((c, s)),
            _ => Err(out),
        }
    }
}

/// Pairs whose inverse frequency [`fill_rows`] keeps at once.
const FILL_BLOCK: usize = 16;

/// Fills rows `first_position..` of a `[position][pair]` table with `entry`;
/// returns the number of rows (`cos.len() / pairs`).
fn fill_rows<T>(
    cfg: &RopeConfig<'_>,
    seq_len: usize,
    first_position: usize,
    attention_factor: f64,
    cos: &mut [T],
    sin: &mut [T],
    entry: impl Fn(f64, f64, usize) -> (T, T),
) -> Result<usize, Error> {
    cfg.validate()?;
    check_cos_sin(cos.len(), sin.len())?;
    let pairs = cfg.pairs();
    let rows = cos.len() / pairs;
    if rows == 0 {
        return Err(Error::BufferTooSmall {
            needed: pairs,
            got: cos.len(),
        });
    }
    if first_position.checked_add(rows - 1).is_none() {
        return Err(Error::PositionOutOfRange {
            position: first_position,
            len: usize::MAX,
        });
    }
    // Row-major writes; the inverse frequencies of up to FILL_BLOCK pairs are
    // computed once per call and kept on the stack (8·FILL_BLOCK bytes).
    let mut w = [0.0f64; FILL_BLOCK];
    let mut i0 = 0;
    while i0 < pairs {
        let n = FILL_BLOCK.min(pairs - i0);
        let w = w.get_mut(..n).unwrap_or_default();
        for (k, wk) in w.iter_mut().enumerate() {
            *wk = cfg.inv_freq(i0 + k, seq_len);
        }
        let rows_iter = cos.chunks_exact_mut(pairs).zip(sin.chunks_exact_mut(pairs));
        for (r, (crow, srow)) in rows_iter.enumerate() {
            let p = first_position + r;
            let crow = crow.get_mut(i0..i0 + n).unwrap_or_default();
            let srow = srow.get_mut(i0..i0 + n).unwrap_or_default();
            for ((c, s), &wk) in crow.iter_mut().zip(srow.iter_mut()).zip(w.iter()) {
                (*c, *s) = entry(wk, attention_factor, p);
            }
        }
        i0 += n;
    }
    Ok(rows)
}

/// f32 cos/sin rows, row-major `[position][pair]`, already multiplied by the
/// attention factor, in caller storage (see the [module docs](self)).
#[derive(Debug, Clone, Copy)]
pub struct RopeTable<'a> {
    rows: Rows<'a, f32>,
}

impl<'a> RopeTable<'a> {
    /// Views filled storage as a table of `cos.len() / pairs` positions.
    ///
    /// Errors: [`Error::ZeroDimension`] (`pairs = 0`), [`Error::LengthMismatch`]
    /// (lengths differ or are not a whole number of rows),
    /// [`Error::BufferTooSmall`] (less than one row).
    pub fn new(cos: &'a [f32], sin: &'a [f32], pairs: usize) -> Result<Self, Error> {
        Ok(Self {
            rows: Rows::new(cos, sin, pairs)?,
        })
    }

    /// A table view without checks (for [`crate::pos::rope_const`], whose
    /// shape is fixed by its type).
    pub(crate) const fn from_parts(cos: &'a [f32], sin: &'a [f32], pairs: usize) -> Self {
        Self {
            rows: Rows { cos, sin, pairs },
        }
    }

    /// Fills rows for positions `first_position..` (as many as
    /// `cos.len() / pairs`, with `pairs = cfg.pairs()`; a partial last row is
    /// left untouched) and returns the number of rows filled. Fill a long
    /// table in chunks by moving `first_position`.
    ///
    /// Errors: `cfg`'s [`RopeConfig::validate`] error,
    /// [`Error::LengthMismatch`] (`cos` and `sin` lengths differ),
    /// [`Error::BufferTooSmall`] (less than one row),
    /// [`Error::PositionOutOfRange`] (positions overflow `usize`).
    pub fn fill(
        cfg: &RopeConfig<'_>,
        seq_len: usize,
        first_position: usize,
        cos: &mut [f32],
        sin: &mut [f32],
    ) -> Result<usize, Error> {
        let a = cfg.attention_factor(seq_len);
        fill_rows(cfg, seq_len, first_position, a, cos, sin, entry_f32)
    }

    /// Number of positions (rows).
    pub fn positions(&self) -> usize {
        self.rows.positions()
    }

    /// Number of pairs per row.
    pub fn pairs(&self) -> usize {
        self.rows.pairs
    }

    /// The `(cos, sin)` row of `position`.
    ///
    /// Errors: [`Error::PositionOutOfRange`].
    pub fn row(&self, position: usize) -> Result<(&'a [f32], &'a [f32]), Error> {
        self.rows.row(position)
    }

    /// Rotates the first `2·pairs` dims of one head vector (`head.len() >=
    /// 2·pairs`; the rest is untouched: partial rotary) at `position`.
    ///
    /// Errors: [`Error::PositionOutOfRange`], [`Error::RotaryDimTooLarge`].
    pub fn rotate(
        &self,
        layout: RopeLayout,
        position: usize,
        head: &mut [f32],
    ) -> Result<(), Error> {
        let (c, s) = self.row(position)?;
        rotate_pairs_f32(layout, self.pairs(), 0, c, s, head)
    }

    /// Rotates every head of `v` (`[heads][head_dim]`, a model's q or k) at
    /// `position`: the first `2·pairs` dims of each head (partial rotary leaves
    /// the rest), pairs in `layout`. The model's rotation hook.
    ///
    /// Errors: [`Error::PositionOutOfRange`]; [`Error::RotaryDimTooLarge`]
    /// (`head_dim < 2·pairs`); [`Error::LengthMismatch`] (`v` not whole heads).
    /// `v` is then unchanged.
    #[inline]
    pub fn rotate_heads(
        &self,
        layout: RopeLayout,
        position: usize,
        head_dim: usize,
        v: &mut [f32],
    ) -> Result<(), Error> {
        let (cos, sin) = self.row(position)?;
        check_heads(self.pairs(), head_dim, v.len())?;
        rotate_each_head(layout, cos, sin, head_dim, v, |a, b, &c, &s| {
            rotate_f32(a, b, c, s)
        });
        Ok(())
    }

    /// The row of `position` read as Q15 for the integer step (each f32
    /// entry rounded once, saturating at ±1,
    /// [`crate::num::int::fixed_from_f32`]), packed into `buf` for
    /// [`RopeRowQ15::rotate_heads`]: the step converts it once per position
    /// and rotates q and k of every layer with it. Integer instructions only.
    ///
    /// Errors: [`Error::PositionOutOfRange`]; [`Error::BufferTooSmall`] when
    /// `buf` holds fewer than [`pairs`](Self::pairs) words.
    pub fn row_q15<'b>(
        &self,
        position: usize,
        buf: &'b mut [u32],
    ) -> Result<RopeRowQ15<'b>, Error> {
        let (cos, sin) = self.row(position)?;
        let q15 = |f: f32| crate::num::int::fixed_from_f32(f, 15).clamp(-32768, 32767) as Q15;
        RopeRowQ15::pack_with(
            cos.iter().zip(sin).map(|(&c, &s)| (q15(c), q15(s))),
            cos.len(),
            buf,
        )
    }

    /// [`RopeTable::rotate_heads`] for the integer step: the row of
    /// `position` read as Q15 ([`RopeTable::row_q15`]) and every head of the
    /// `i16` vector `v` rotated by [`RopeRowQ15::rotate_heads`]
    /// ([`fixed::rotate_q15`]: ≤ 3 LSB per element on top of the table's 0.5
    /// LSB). Integer instructions only; tables of up to
    /// [`RopeTable::MAX_FIXED_PAIRS`] pairs.
    ///
    /// Errors: as [`RopeTable::rotate_heads`]; [`Error::RotaryDimTooLarge`]
    /// beyond [`RopeTable::MAX_FIXED_PAIRS`] pairs.
    pub fn rotate_heads_q15(
        &self,
        layout: RopeLayout,
        position: usize,
        head_dim: usize,
        v: &mut [Q15],
    ) -> Result<(), Error> {
        let pairs = self.pairs();
        let mut buf = [0u32; Self::MAX_FIXED_PAIRS];
        let Some(buf) = buf.get_mut(..pairs) else {
            return Err(Error::RotaryDimTooLarge {
                rotary_dim: 2 * pairs,
                head_dim,
            });
        };
        self.row_q15(position, buf)?
            .rotate_heads(layout, head_dim, v)
    }

    /// Most pairs [`RopeTable::rotate_heads_q15`] handles (head dims up to 256).
    pub const MAX_FIXED_PAIRS: usize = 128;
}

/// Fills f32 RoPE tables exactly as llama2.c's `run.c` computes its rotation
/// each step (its angles in f32, not the f64 of [`RopeTable::fill`]): for
/// position `p` and pair `j`, `head_dim = 2j`,
/// `freq = 1.0f / powf(theta, head_dim / (float)head_size)`,
/// `val = p * freq` (f32), `cos[p][j] = cosf(val)`, `sin[p][j] = sinf(val)`.
///
/// The caller passes the f32 functions: on the host `f32::powf`, `f32::cos`,
/// `f32::sin` (the system maths library `run.c` links against, so the tables are
/// bit-identical to `run.c`'s angles); on a device `libm`'s. Fills
/// `cos.len() / (head_size/2)` positions and returns that count.
pub fn fill_llama2c(
    theta: f32,
    head_size: usize,
    cos: &mut [f32],
    sin: &mut [f32],
    powf: impl Fn(f32, f32) -> f32,
    cosf: impl Fn(f32) -> f32,
    sinf: impl Fn(f32) -> f32,
) -> Result<usize, Error> {
    if head_size == 0 {
        return Err(Error::ZeroDimension);
    }
    if head_size % 2 != 0 {
        return Err(Error::OddDimension { dim: head_size });
    }
    let pairs = head_size / 2;
    if cos.len() != sin.len() || cos.len() % pairs != 0 {
        return Err(Error::LengthMismatch {
            expected: cos.len().next_multiple_of(pairs),
            got: sin.len(),
        });
    }
    for (p, (crow, srow)) in cos
        .chunks_exact_mut(pairs)
        .zip(sin.chunks_exact_mut(pairs))
        .enumerate()
    {
        for (j, (c, s)) in crow.iter_mut().zip(srow.iter_mut()).enumerate() {
            let head_dim = (2 * j) as f32;
            let freq = 1.0f32 / powf(theta, head_dim / head_size as f32);
            let val = p as f32 * freq;
            *c = cosf(val);
            *s = sinf(val);
        }
    }
    Ok(cos.len() / pairs)
}

/// Q15 cos/sin rows, row-major `[position][pair]` (see the [module docs](self)).
#[derive(Debug, Clone, Copy)]
pub struct RopeTableQ15<'a> {
    rows: Rows<'a, Q15>,
}

impl<'a> RopeTableQ15<'a> {
    /// Views filled storage as a table; errors as [`RopeTable::new`].
    pub fn new(cos: &'a [Q15], sin: &'a [Q15], pairs: usize) -> Result<Self, Error> {
        Ok(Self {
            rows: Rows::new(cos, sin, pairs)?,
        })
    }

    /// Fills rows with `round(32768·a·cos)`, `round(32768·a·sin)` (saturating)
    /// for positions `first_position..`; returns the rows filled. Errors as
    /// [`RopeTable::fill`].
    pub fn fill(
        cfg: &RopeConfig<'_>,
        seq_len: usize,
        first_position: usize,
        cos: &mut [Q15],
        sin: &mut [Q15],
    ) -> Result<usize, Error> {
        let a = cfg.attention_factor(seq_len);
        fill_rows(cfg, seq_len, first_position, a, cos, sin, entry_q15)
    }

    /// As [`fill`](Self::fill) but without the attention factor (pure
    /// rotation, never saturates except `1.0 → 32767`): for `a > 1`, apply
    /// `a²` to the attention scores instead.
    pub fn fill_unscaled(
        cfg: &RopeConfig<'_>,
        seq_len: usize,
        first_position: usize,
        cos: &mut [Q15],
        sin: &mut [Q15],
    ) -> Result<usize, Error> {
        fill_rows(cfg, seq_len, first_position, 1.0, cos, sin, entry_q15)
    }

    /// Number of positions (rows).
    pub fn positions(&self) -> usize {
        self.rows.positions()
    }

    /// Number of pairs per row.
    pub fn pairs(&self) -> usize {
        self.rows.pairs
    }

    /// The `(cos, sin)` row of `position`. Errors: [`Error::PositionOutOfRange`].
    pub fn row(&self, position: usize) -> Result<(&'a [Q15], &'a [Q15]), Error> {
        self.rows.row(position)
    }

    /// Rotates the first `2·pairs` dims of a Q15 head at `position` with
    /// [`fixed::rotate_q15`]. Errors as [`RopeTable::rotate`].
    pub fn rotate(
        &self,
        layout: RopeLayout,
        position: usize,
        head: &mut [Q15],
    ) -> Result<(), Error> {
        let (c, s) = self.row(position)?;
        rotate_pairs_q15(layout, self.pairs(), 0, c, s, head)
    }

    /// Q15 counterpart of [`RopeTable::rotate_heads`], with
    /// [`fixed::rotate_q15`]. Errors as there. (The DSP kernel takes packed
    /// rows: [`RopeRowQ15`].)
    pub fn rotate_heads(
        &self,
        layout: RopeLayout,
        position: usize,
        head_dim: usize,
        v: &mut [Q15],
    ) -> Result<(), Error> {
        let (cos, sin) = self.row(position)?;
        check_heads(self.pairs(), head_dim, v.len())?;
        rotate_each_head(layout, cos, sin, head_dim, v, |a, b, &c, &s| {
            (*a, *b) = fixed::rotate_q15(*a, *b, c, s);
        });
        Ok(())
    }
}

/// One position's Q15 RoPE row, pair `i` packed as the word
/// `c_i | s_i << 16` (cosine in the low half, sine in the high half: the
/// operand order of the DSP extension's dual multiplies, as CMSIS-DSP keeps
/// its Q15 twiddle factors), for rotating every head of a q or k vector.
///
/// [`rotate_heads`](Self::rotate_heads) computes [`fixed::rotate_q15`] for
/// every pair. On the Cortex-M4F/M33 the interleaved layout runs
/// `kernels_m4::rope_q15_interleaved` (`smlsd` + `smladx` per
/// pair, the same integers), and the half-split layout with rows of four
/// pairs (heads of 8, as the project's models have)
/// `kernels_m4::rope_q15_half4`; elsewhere, for other
/// half-split rows, and for a row holding a pair `c = s = −32768` (whose
/// `x0·s + x1·c` reaches `2^31` and needs the portable saturating sum), the
/// portable loop.
#[derive(Debug, Clone, Copy)]
pub struct RopeRowQ15<'a> {
    cs: &'a [u32],
    /// The row holds a pair `c = s = −32768`.
    corner: bool,
}

impl<'a> RopeRowQ15<'a> {
    /// Packs a row of Q15 cosines and sines (equal lengths) into `buf`.
    ///
    /// Errors: [`Error::LengthMismatch`] for unequal lengths;
    /// [`Error::ZeroDimension`] for an empty row; [`Error::BufferTooSmall`]
    /// when `buf` is shorter than the row.
    pub fn pack(cos: &[Q15], sin: &[Q15], buf: &'a mut [u32]) -> Result<Self, Error> {
        check_cos_sin(cos.len(), sin.len())?;
        Self::pack_with(cos.iter().copied().zip(sin.iter().copied()), cos.len(), buf)
    }

    /// Views words already packed (`c | s << 16`, as a table kept packed in
    /// flash would hold them). Errors: [`Error::ZeroDimension`] when empty.
    pub fn from_packed(cs: &'a [u32]) -> Result<Self, Error> {
        if cs.is_empty() {
            return Err(Error::ZeroDimension);
        }
        let corner = cs.contains(&CORNER);
        Ok(Self { cs, corner })
    }

    /// The row of the `pairs` pairs `(c, s)` of `pairs_iter`, packed into `buf`.
    fn pack_with(
        pairs_iter: impl Iterator<Item = (Q15, Q15)>,
        pairs: usize,
        buf: &'a mut [u32],
    ) -> Result<Self, Error> {
        if pairs == 0 {
            return Err(Error::ZeroDimension);
        }
        let got = buf.len();
        let Some(cs) = buf.get_mut(..pairs) else {
            return Err(Error::BufferTooSmall { needed: pairs, got });
        };
        let mut corner = false;
        for (w, (c, s)) in cs.iter_mut().zip(pairs_iter) {
            *w = u32::from(c as u16) | (u32::from(s as u16) << 16);
            corner |= *w == CORNER;
        }
        Ok(Self { cs, corner })
    }

    /// Number of pairs.
    pub fn pairs(&self) -> usize {
        self.cs.len()
    }

    /// The packed words `c_i | s_i << 16`.
    pub fn packed(&self) -> &'a [u32] {
        self.cs
    }

    /// Whether the row holds a pair `c = s = −32768`, whose rotation of the
    /// pair `(−32768, −32768)` needs the portable loop's saturating sum
    /// (rows that do are rotated by the portable loop on every core).
    pub fn has_corner(&self) -> bool {
        self.corner
    }

    /// Rotates the first `2·pairs` dims of every head of `v` (heads of
    /// `head_dim`) by this row, pairs in `layout`, with
    /// [`fixed::rotate_q15`] (see the [type docs](Self) for the kernel).
    ///
    /// Errors: [`Error::RotaryDimTooLarge`] when `head_dim < 2·pairs`;
    /// [`Error::LengthMismatch`] when `v` is not whole heads.
    pub fn rotate_heads(
        &self,
        layout: RopeLayout,
        head_dim: usize,
        v: &mut [Q15],
    ) -> Result<(), Error> {
        let cs = self.cs;
        // The kernels first: each checks the shape it takes (whole heads)
        // before touching anything.
        #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
        if !self.corner && head_dim == 2 * cs.len() {
            use crate::num::kernels_m4::{rope_q15_half4, rope_q15_interleaved};
            let done = match (layout, cs.first_chunk::<4>()) {
                (RopeLayout::Interleaved, _) => rope_q15_interleaved(cs, v),
                (RopeLayout::HalfSplit, Some(cs4)) if cs.len() == 4 => rope_q15_half4(cs4, v),
                _ => false,
            };
            if done {
                return Ok(());
            }
        }
        check_heads(cs.len(), head_dim, v.len())?;
        #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
        if layout == RopeLayout::Interleaved && !self.corner && head_dim != 2 * cs.len() {
            // Partial rotary: the kernel on each head's rotary part.
            use crate::num::kernels_m4::rope_q15_interleaved;
            for h in v.chunks_exact_mut(head_dim) {
                let done = h
                    .get_mut(..2 * cs.len())
                    .is_some_and(|r| rope_q15_interleaved(cs, r));
                if !done {
                    rotate_packed(layout, cs, head_dim, h);
                }
            }
            return Ok(());
        }
        rotate_packed(layout, cs, head_dim, v);
        Ok(())
    }
}

/// The packed pair `c = s = −32768`, the one `kernels_m4::rope_q15_interleaved`
/// cannot take.
const CORNER: u32 = 0x8000_8000;

/// The portable loop of [`RopeRowQ15::rotate_heads`] (also for input the
/// kernel declines: it declines before writing anything).
fn rotate_packed(layout: RopeLayout, cs: &[u32], head_dim: usize, v: &mut [Q15]) {
    let pairs = cs.len();
    for head in v.chunks_exact_mut(head_dim) {
        let Some(rot) = head.get_mut(..2 * pairs) else {
            return;
        };
        Pairs::whole(layout, rot).for_each(cs, |a, b, &w| {
            (*a, *b) = fixed::rotate_q15(*a, *b, w as u16 as Q15, (w >> 16) as u16 as Q15);
        });
    }
}

/// `1.0` in the Q30 attention scale of [`RopePhases`].
const ONE_Q30: i64 = 1 << 30;

/// Phase-based Q15 RoPE: one `u64` phase step per pair, no table per position
/// (see the [module docs](self)).
#[derive(Debug, Clone, Copy)]
pub struct RopePhases<'a> {
    steps: &'a [u64],
    attention_q30: i64,
}

impl<'a> RopePhases<'a> {
    /// Computes the phase steps of `cfg` into `steps[..pairs]` and keeps the
    /// attention factor `a` (applied to cos/sin in Q30, saturating).
    ///
    /// Errors: `cfg`'s [`RopeConfig::validate`] error,
    /// [`Error::BufferTooSmall`] (`steps.len() < pairs`),
    /// [`Error::InvalidFactor`] (`a >= 65536`).
    pub fn new(cfg: &RopeConfig<'_>, seq_len: usize, steps: &'a mut [u64]) -> Result<Self, Error> {
        Self::build(cfg, seq_len, cfg.attention_factor(seq_len), steps)
    }

    /// As [`new`](Self::new) without the attention factor (pure rotation).
    pub fn new_unscaled(
        cfg: &RopeConfig<'_>,
        seq_len: usize,
        steps: &'a mut [u64],
    ) -> Result<Self, Error> {
        Self::build(cfg, seq_len, 1.0, steps)
    }

    fn build(
        cfg: &RopeConfig<'_>,
        seq_len: usize,
        a: f64,
        steps: &'a mut [u64],
    ) -> Result<Self, Error> {
        cfg.validate()?;
        let pairs = cfg.pairs();
        let got = steps.len();
        let steps = steps
            .get_mut(..pairs)
            .ok_or(Error::BufferTooSmall { needed: pairs, got })?;
        for (i, s) in steps.iter_mut().enumerate() {
            *s = fixed::phase_step(cfg.inv_freq(i, seq_len));
        }
        Self::from_steps(steps, a)
    }

    /// Uses precomputed phase steps (e.g. from a model image in flash;
    /// `steps[i] = fixed::phase_step(ω_i)`) with attention factor `a`.
    ///
    /// Errors: [`Error::ZeroDimension`] (no steps), [`Error::InvalidFactor`]
    /// (`a` not finite, `<= 0` or `>= 65536`).
    pub fn from_steps(steps: &'a [u64], attention_factor: f64) -> Result<Self, Error> {
        if steps.is_empty() {
            return Err(Error::ZeroDimension);
        }
        if !(attention_factor > 0.0 && attention_factor < 65536.0) {
            return Err(Error::InvalidFactor);
        }
        Ok(Self {
            steps,
            attention_q30: math::round(attention_factor * ONE_Q30 as f64) as i64,
        })
    }

    /// Number of pairs.
    pub fn pairs(&self) -> usize {
        self.steps.len()
    }

    /// The phase steps (8 bytes per pair).
    pub fn steps(&self) -> &'a [u64] {
        self.steps
    }

    fn position_u32(position: usize) -> Result<u32, Error> {
        let len = u32::MAX as usize;
        if position >= len {
            return Err(Error::PositionOutOfRange { position, len });
        }
        Ok(position as u32)
    }

    #[inline]
    fn scale(&self, v: Q15) -> Q15 {
        if self.attention_q30 == ONE_Q30 {
            return v;
        }
        let x = (v as i64 * self.attention_q30 + (1 << 29)) >> 30;
        x.clamp(i16::MIN as i64, i16::MAX as i64) as i16
    }

    #[inline]
    fn cos_sin_at(&self, step: u64, position: u32) -> (Q15, Q15) {
        let (s, c) = fixed::sin_cos_q15(fixed::phase_at(step, position));
        (self.scale(c), self.scale(s))
    }

    /// `(a·cos, a·sin)` of pair `pair` at `position`, in Q15.
    ///
    /// Errors: [`Error::PositionOutOfRange`] (`position >= 2^32 − 1`),
    /// [`Error::LengthMismatch`] (`pair >= pairs`).
    pub fn cos_sin_q15(&self, position: usize, pair: usize) -> Result<(Q15, Q15), Error> {
        let p = Self::position_u32(position)?;
        let step = self.steps.get(pair).ok_or(Error::LengthMismatch {
            expected: self.steps.len(),
            got: pair,
        })?;
        Ok(self.cos_sin_at(*step, p))
    }

    /// Writes the `(a·cos, a·sin)` row of `position` into `cos[..pairs]`,
    /// `sin[..pairs]`: compute it once per token, then rotate every q and k
    /// head with [`rotate_pairs_q15`].
    ///
    /// Errors: [`Error::PositionOutOfRange`], [`Error::BufferTooSmall`].
    pub fn fill_row(&self, position: usize, cos: &mut [Q15], sin: &mut [Q15]) -> Result<(), Error> {
        let p = Self::position_u32(position)?;
        let pairs = self.steps.len();
        let got = cos.len().min(sin.len());
        let small = Error::BufferTooSmall { needed: pairs, got };
        let cos = cos.get_mut(..pairs).ok_or(small)?;
        let sin = sin.get_mut(..pairs).ok_or(small)?;
        for ((c, s), &step) in cos.iter_mut().zip(sin.iter_mut()).zip(self.steps) {
            (*c, *s) = self.cos_sin_at(step, p);
        }
        Ok(())
    }

    /// Rotates the first `2·pairs` dims of a Q15 head at `position`.
    ///
    /// Errors: [`Error::PositionOutOfRange`], [`Error::RotaryDimTooLarge`].
    pub fn rotate(
        &self,
        layout: RopeLayout,
        position: usize,
        head: &mut [Q15],
    ) -> Result<(), Error> {
        let p = Self::position_u32(position)?;
        let pairs = self.steps.len();
        pairs_mut(layout, pairs, 0, pairs, head)?.for_each(self.steps, |a, b, &step| {
            let (c, s) = self.cos_sin_at(step, p);
            (*a, *b) = fixed::rotate_q15(*a, *b, c, s);
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pos::rope_scaling::{RopeScaling, YarnParams};

    const CFG: RopeConfig<'static> = RopeConfig::new(10_000.0, 8, 512);

    #[test]
    fn entries_match_std() {
        for p in [0usize, 1, 7, 511, 65535] {
            for i in 0..4 {
                let w = CFG.inv_freq(i, 0);
                let (c, s) = entry_f32(w, 1.0, p);
                let x = p as f64 * 10_000f64.powf(-((2 * i) as f64) / 8.0);
                assert!((c as f64 - x.cos()).abs() < 1e-7, "{p} {i}");
                assert!((s as f64 - x.sin()).abs() < 1e-7, "{p} {i}");
                let (cq, sq) = entry_q15(w, 1.0, p);
                assert!((cq as f64 - (x.cos() * 32768.0).min(32767.0)).abs() <= 0.5 + 1e-9);
                assert!((sq as f64 - (x.sin() * 32768.0).min(32767.0)).abs() <= 0.5 + 1e-9);
            }
        }
        assert_eq!(entry_f32(1.0, 1.0, 0), (1.0, 0.0));
        assert_eq!(entry_q15(1.0, 1.0, 0), (32767, 0));
        assert_eq!(entry_q15(1.0, 2.0, 0), (32767, 0)); // saturates
    }

    #[test]
    fn rotate_heads_rotates_every_head_in_both_layouts() {
        // head_dim 6, rotary 4: dims 4, 5 untouched; cos/sin rows of 90° and 0°.
        let (cos, sin) = ([0.0f32, 1.0], [1.0f32, 0.0]);
        let t = RopeTable::new(&cos, &sin, 2).unwrap();
        let mut v = [
            1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0,
        ];
        t.rotate_heads(RopeLayout::Interleaved, 0, 6, &mut v)
            .unwrap();
        assert_eq!(
            v,
            [-2.0, 1.0, 3.0, 4.0, 5.0, 6.0, -8.0, 7.0, 9.0, 10.0, 11.0, 12.0]
        );
        let mut v = [1.0f32, 2.0, 3.0, 4.0];
        t.rotate_heads(RopeLayout::HalfSplit, 0, 4, &mut v).unwrap();
        // pair (0, 2) rotated by 90°, pair (1, 3) unrotated.
        assert_eq!(v, [-3.0, 2.0, 1.0, 4.0]);
        assert!(matches!(
            t.rotate_heads(RopeLayout::HalfSplit, 0, 3, &mut [0.0; 6]),
            Err(Error::RotaryDimTooLarge { .. })
        ));
        assert!(matches!(
            t.rotate_heads(RopeLayout::HalfSplit, 0, 4, &mut [0.0; 6]),
            Err(Error::LengthMismatch { .. })
        ));
        assert!(t.rotate_heads(RopeLayout::HalfSplit, 1, 4, &mut v).is_err());

        // Every head = the single-head rotation, f32 and Q15, at a real table's rows.
        let mut cos = [0f32; 4 * 9];
        let mut sin = [0f32; 4 * 9];
        RopeTable::fill(&CFG, 0, 0, &mut cos, &mut sin).unwrap();
        let t = RopeTable::new(&cos, &sin, 4).unwrap();
        let mut cq = [0i16; 4 * 9];
        let mut sq = [0i16; 4 * 9];
        RopeTableQ15::fill(&CFG, 0, 0, &mut cq, &mut sq).unwrap();
        let tq = RopeTableQ15::new(&cq, &sq, 4).unwrap();
        for layout in [RopeLayout::Interleaved, RopeLayout::HalfSplit] {
            for p in 0..9 {
                let v0: Vec<f32> = (0..30).map(|i| (i as f32 * 0.37).sin()).collect();
                let mut all = v0.clone();
                t.rotate_heads(layout, p, 10, &mut all).unwrap();
                let vq: Vec<i16> = v0.iter().map(|&x| (x * 20000.0) as i16).collect();
                let mut allq = vq.clone();
                tq.rotate_heads(layout, p, 10, &mut allq).unwrap();
                for h in 0..3 {
                    let mut one = v0[h * 10..(h + 1) * 10].to_vec();
                    t.rotate(layout, p, &mut one).unwrap();
                    assert_eq!(
                        &all[h * 10..(h + 1) * 10],
                        &one[..],
                        "{layout:?} p {p} h {h}"
                    );
                    let mut oneq = vq[h * 10..(h + 1) * 10].to_vec();
                    tq.rotate(layout, p, &mut oneq).unwrap();
                    assert_eq!(&allq[h * 10..(h + 1) * 10], &oneq[..]);
                }
            }
        }
    }

    #[test]
    fn layouts_pick_the_right_dims() {
        let mut cos = [0f32; 4 * 3];
        let mut sin = [0f32; 4 * 3];
        assert_eq!(RopeTable::fill(&CFG, 0, 0, &mut cos, &mut sin), Ok(3));
        let t = RopeTable::new(&cos, &sin, 4).unwrap();
        let (c, s) = t.row(1).unwrap();
        // interleaved: pair 0 = dims (0, 1)
        let mut h = [1.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 9.0];
        t.rotate(RopeLayout::Interleaved, 1, &mut h).unwrap();
        assert_eq!((h[0], h[1]), (c[0], s[0]));
        assert_eq!(h[8], 9.0);
        // half split: pair 1 = dims (1, 5)
        let mut h = [0.0f32, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        t.rotate(RopeLayout::HalfSplit, 1, &mut h).unwrap();
        assert_eq!((h[1], h[5]), (c[1], s[1]));
        assert_eq!(h[0], 0.0);
    }

    #[test]
    fn errors() {
        let mut cos = [0f32; 8];
        let mut sin = [0f32; 8];
        let mut short = [0f32; 3];
        assert_eq!(
            RopeTable::fill(&CFG, 0, 0, &mut short, &mut [0f32; 3]),
            Err(Error::BufferTooSmall { needed: 4, got: 3 })
        );
        assert_eq!(
            RopeTable::fill(&CFG, 0, 0, &mut cos, &mut short),
            Err(Error::LengthMismatch {
                expected: 8,
                got: 3
            })
        );
        RopeTable::fill(&CFG, 0, 5, &mut cos, &mut sin).unwrap();
        let t = RopeTable::new(&cos, &sin, 4).unwrap();
        assert_eq!(
            t.row(2),
            Err(Error::PositionOutOfRange {
                position: 2,
                len: 2
            })
        );
        assert_eq!(
            t.row(usize::MAX).unwrap_err(),
            Error::PositionOutOfRange {
                position: usize::MAX,
                len: 2
            }
        );
        let mut h = [0f32; 7];
        assert_eq!(
            t.rotate(RopeLayout::HalfSplit, 0, &mut h),
            Err(Error::RotaryDimTooLarge {
                rotary_dim: 8,
                head_dim: 7
            })
        );
        assert_eq!(
            RopeTable::new(&cos[..7], &sin[..7], 4).unwrap_err(),
            Error::LengthMismatch {
                expected: 4,
                got: 7
            }
        );
        assert_eq!(
            RopeTable::new(&cos, &sin, 0).unwrap_err(),
            Error::ZeroDimension
        );
        let mut steps = [0u64; 3];
        assert_eq!(
            RopePhases::new(&CFG, 0, &mut steps).unwrap_err(),
            Error::BufferTooSmall { needed: 4, got: 3 }
        );
        let mut steps = [0u64; 4];
        let ph = RopePhases::new(&CFG, 0, &mut steps).unwrap();
        assert_eq!(
            ph.cos_sin_q15(0, 4),
            Err(Error::LengthMismatch {
                expected: 4,
                got: 4
            })
        );
        assert_eq!(ph.cos_sin_q15(0, 0), Ok((32767, 0)));
        assert!(ph.cos_sin_q15(u32::MAX as usize, 0).is_err());
        assert_eq!(
            RopePhases::from_steps(&[1], f64::NAN).unwrap_err(),
            Error::InvalidFactor
        );
    }

    #[test]
    fn first_position_offsets_rows() {
        let mut a = ([0f32; 16], [0f32; 16]);
        let mut b = ([0f32; 8], [0f32; 8]);
        RopeTable::fill(&CFG, 0, 0, &mut a.0, &mut a.1).unwrap();
        RopeTable::fill(&CFG, 0, 2, &mut b.0, &mut b.1).unwrap();
        assert_eq!(a.0[8..], b.0[..]);
        assert_eq!(a.1[8..], b.1[..]);
    }

    #[test]
    fn phases_apply_attention_factor() {
        let y = YarnParams::new(4.0, 128);
        let cfg = RopeConfig::new(10_000.0, 8, 512).with_scaling(RopeScaling::Yarn(y));
        let a = cfg.attention_factor(0);
        let mut steps = [0u64; 4];
        let ph = RopePhases::new(&cfg, 0, &mut steps).unwrap();
        for p in 0..300usize {
            for i in 0..4 {
                let (c, s) = ph.cos_sin_q15(p, i).unwrap();
                let x = p as f64 * cfg.inv_freq(i, 0);
                let ec = (x.cos() * a * 32768.0).clamp(-32768.0, 32767.0);
                let es = (x.sin() * a * 32768.0).clamp(-32768.0, 32767.0);
                assert!((c as f64 - ec).abs() <= 1.2 * a + 0.5, "{p} {i}");
                assert!((s as f64 - es).abs() <= 1.2 * a + 0.5, "{p} {i}");
            }
        }
    }

    /// A packed row rotates exactly as the Q15 table it was packed from
    /// (both layouts, partial rotary), flags the one pair the DSP kernel
    /// declines, and reads an f32 row as `fixed_from_f32` rounds it.
    #[test]
    fn packed_rows_rotate_as_the_q15_table() {
        let cfg = RopeConfig::new(10_000.0, 8, 64);
        let (mut c, mut s) = ([0 as Q15; 64 * 4], [0 as Q15; 64 * 4]);
        RopeTableQ15::fill(&cfg, 0, 0, &mut c, &mut s).unwrap();
        let t = RopeTableQ15::new(&c, &s, 4).unwrap();
        let mut buf = [0u32; 4];
        for p in [0usize, 1, 17, 63] {
            let (rc, rs) = t.row(p).unwrap();
            let row = RopeRowQ15::pack(rc, rs, &mut buf).unwrap();
            assert!(!row.has_corner());
            for layout in [RopeLayout::Interleaved, RopeLayout::HalfSplit] {
                for head_dim in [8usize, 10] {
                    let mut a: [Q15; 30] = core::array::from_fn(|i| (i as i16 - 15) * 2111);
                    a[0] = i16::MIN;
                    let mut b = a;
                    row.rotate_heads(layout, head_dim, &mut a[..3 * head_dim])
                        .unwrap();
                    t.rotate_heads(layout, p, head_dim, &mut b[..3 * head_dim])
                        .unwrap();
                    assert_eq!(a, b, "{p} {layout:?} {head_dim}");
                }
            }
        }
        let row = RopeRowQ15::pack(&[i16::MIN, 5], &[i16::MIN, 7], &mut buf).unwrap();
        assert!(row.has_corner());
        assert_eq!(row.packed(), &[0x8000_8000, 0x0007_0005]);
        let mut v = [i16::MIN; 4];
        row.rotate_heads(RopeLayout::Interleaved, 4, &mut v)
            .unwrap();
        assert_eq!(
            v[..2],
            [0, i16::MAX],
            "(−1, −1) by (−1, −1): x0·s + x1·c saturates"
        );
        assert!(RopeRowQ15::from_packed(&[0x8000_8000])
            .unwrap()
            .has_corner());
        assert!(matches!(
            row.rotate_heads(RopeLayout::Interleaved, 3, &mut v),
            Err(Error::RotaryDimTooLarge { .. })
        ));
        assert_eq!(
            RopeRowQ15::pack(&[], &[], &mut buf).unwrap_err(),
            Error::ZeroDimension
        );
        assert!(matches!(
            RopeRowQ15::pack(&[1; 5], &[1; 5], &mut buf),
            Err(Error::BufferTooSmall { needed: 5, got: 4 })
        ));

        let (mut fc, mut fs) = ([0f32; 64 * 4], [0f32; 64 * 4]);
        RopeTable::fill(&cfg, 0, 0, &mut fc, &mut fs).unwrap();
        let ft = RopeTable::new(&fc, &fs, 4).unwrap();
        let row = ft.row_q15(9, &mut buf).unwrap();
        for (i, &w) in row.packed().iter().enumerate() {
            let q = |f: f32| crate::num::int::fixed_from_f32(f, 15).clamp(-32768, 32767) as i16;
            assert_eq!(w as u16 as i16, q(fc[9 * 4 + i]));
            assert_eq!((w >> 16) as u16 as i16, q(fs[9 * 4 + i]));
        }
    }
}
