//! Sinusoidal absolute position encodings, in the two layouts checkpoints use.
//!
//! # Formula
//!
//! A row of the table is added to the token embedding before layer 0.
//!
//! - **Interleaved** ("Attention Is All You Need", Vaswani et al. 2017, §3.5;
//!   Hugging Face DistilBERT `create_sinusoidal_embeddings`): for column `j`,
//!   `ω_j = 10000^(−2⌊j/2⌋/dim)`, `PE[p][j] = sin(p·ω_j)` for even `j` and
//!   `cos(p·ω_j)` for odd `j` (`sin, cos, sin, cos, …`). An odd `dim` ends on a
//!   sine column.
//! - **Split** (tensor2tensor `get_timing_signal_1d`, fairseq
//!   `SinusoidalPositionalEmbedding.get_embedding`, Hugging Face
//!   `XGLMSinusoidalPositionalEmbedding.get_embedding`): `half = ⌊dim/2⌋`,
//!   `ω_i = exp(−i·ln(10000)/(half − 1))` for `i < half`,
//!   `PE[r] = [sin(r·ω_0) … sin(r·ω_{half−1}), cos(r·ω_0) … cos(r·ω_{half−1})]`,
//!   a zero column appended when `dim` is odd, and row `padding_idx` all zeros.
//!   The model reads row `position + padding_idx + 1` (fairseq `make_positions`;
//!   XGLM's `offset = 2` with `padding_idx = 1`): see [`split_row_index`] and
//!   [`SinusoidalTable::split`].
//!
//! # Method
//!
//! - f32: the frequency is computed once per column in f64
//!   ([`crate::num::math`]), the angle `p·ω` is formed in f64 (rounded once, never
//!   in f32) and its sine/cosine evaluated in f64, then rounded to f32.
//! - Q15: each frequency becomes an integer phase step
//!   ([`fixed::phase_step`]); the phase at position `p` is `p·step` in wrapping
//!   integer arithmetic rounded once ([`fixed::phase_at`]), and sin/cos come from
//!   the quarter-wave table ([`fixed::sin_cos_q15`]). No floating point per entry.
//!
//! # Error bound
//!
//! - f32: ≤ ½ ulp of f32 (≤ 3.0e-8) from the final rounding plus the f64 part
//!   (frequency ≤ a few ulp, so the angle is off by ≤ `p·ω·2^-50`, 6e-11 rad at
//!   `p = 65535`): within 1e-6 of the exact value at every position up to 65535
//!   (tested in `tests/bias_and_absolute.rs` for dim 16 and 64). Note that
//!   PyTorch builds the split table in float32 (f32 `exp`, f32 angle), so the
//!   Hugging Face table itself is off the exact value by up to `|angle|·2^-21`.
//! - Q15: phase error ≤ 0.5 + `p·2^-32` units of `2^-32` turn (negligible), then
//!   ≤ 1.2 LSB from the quarter-wave table: ≤ 2 LSB (`2^-14`) against the exact
//!   value at every position up to 65535 (`+1.0` saturates to 32767).
//!
//! # Memory
//!
//! A table is `rows × dim` elements: 4 bytes each in f32, 2 bytes in Q15 (512
//! positions × 64 dims: 128 KiB in f32, 64 KiB in Q15). The split layout needs
//! `padding_idx + 1` extra rows in front. The views borrow the table in place.

use crate::num::fixed::{self, Q15};
use crate::num::math;
use crate::pos::learned::{add_q15, RowTable};
use crate::Error;

/// The base of the frequency progression in both layouts.
pub const BASE: f64 = 10_000.0;

/// Frequency (radians per position) of column `j` in the interleaved layout:
/// `10000^(−2⌊j/2⌋/dim)`. `dim` must be positive.
pub const fn interleaved_frequency(dim: usize, j: usize) -> f64 {
    let e = (2 * (j / 2)) as f64 / dim as f64;
    math::pow(BASE, -e)
}

/// Frequency (radians per position) of column `i < ⌊dim/2⌋` (and `i + ⌊dim/2⌋`) in
/// the split layout: `exp(−i·ln(10000)/(⌊dim/2⌋ − 1))`. `dim` must be at least 4
/// (NaN otherwise: the reference divides by zero).
pub const fn split_frequency(dim: usize, i: usize) -> f64 {
    let half = dim / 2;
    if half < 2 {
        return f64::NAN;
    }
    let step = math::ln(BASE) / (half - 1) as f64;
    math::exp(-(i as f64) * step)
}

/// The table row a split-layout (fairseq/XGLM) model reads for `position`:
/// `position + padding_idx + 1`, or `position` when there is no padding index.
///
/// `None` if the sum overflows.
pub const fn split_row_index(position: usize, padding_idx: Option<usize>) -> Option<usize> {
    match padding_idx {
        None => Some(position),
        Some(p) => match position.checked_add(p) {
            Some(s) => s.checked_add(1),
            None => None,
        },
    }
}

/// Elements a `rows × dim` table needs, checked against `got`.
fn check_size(rows: usize, dim: usize, got: usize) -> Result<usize, Error> {
    if rows == 0 || dim == 0 {
        return Err(Error::ZeroDimension);
    }
    let needed = rows.checked_mul(dim).ok_or(Error::BufferTooSmall {
        needed: usize::MAX,
        got,
    })?;
    if got < needed {
        return Err(Error::BufferTooSmall { needed, got });
    }
    Ok(needed)
}

/// Checks the split layout's sizes (`dim ≥ 4`, padding row inside the table).
fn check_split(rows: usize, dim: usize, padding_idx: Option<usize>) -> Result<(), Error> {
    if dim == 0 || rows == 0 {
        return Err(Error::ZeroDimension);
    }
    if dim / 2 < 2 {
        // ln(10000)/(half − 1) divides by zero (Python raises ZeroDivisionError).
        return Err(Error::InvalidParameter);
    }
    if let Some(p) = padding_idx {
        if p >= rows {
            return Err(Error::PositionOutOfRange {
                position: p,
                len: rows,
            });
        }
    }
    Ok(())
}

/// Writes one value to a table column through a row chunk, ignoring indices past the row.
#[inline]
fn put<T>(row: &mut [T], j: usize, v: T) {
    if let Some(x) = row.get_mut(j) {
        *x = v;
    }
}

/// The two column layouts (private: the public API names the layout in each function).
#[derive(Clone, Copy)]
enum Layout {
    Interleaved,
    Split,
}

impl Layout {
    /// Number of frequencies (sin/cos column pairs, a lone sine counting as one).
    const fn pairs(self, dim: usize) -> usize {
        match self {
            Layout::Interleaved => dim.div_ceil(2),
            Layout::Split => dim / 2,
        }
    }

    /// Frequency `k` with its sine and cosine columns (the cosine column may be
    /// `dim`, i.e. absent, for an odd interleaved `dim`).
    const fn column(self, dim: usize, k: usize) -> (f64, usize, usize) {
        match self {
            Layout::Interleaved => (interleaved_frequency(dim, 2 * k), 2 * k, 2 * k + 1),
            Layout::Split => (split_frequency(dim, k), k, dim / 2 + k),
        }
    }
}

/// Fills whole rows `out.chunks_exact(dim)` for positions `first_row..` in f32.
fn fill_rows_f32(layout: Layout, first_row: usize, dim: usize, out: &mut [f32]) {
    for k in 0..layout.pairs(dim) {
        let (w, sc, cc) = layout.column(dim, k);
        for (r, row) in out.chunks_exact_mut(dim).enumerate() {
            let p = (first_row + r) as f64;
            let (s, c) = math::sin_cos(p * w);
            put(row, sc, s as f32);
            put(row, cc, c as f32);
        }
    }
    if matches!(layout, Layout::Split) && dim % 2 == 1 {
        for row in out.chunks_exact_mut(dim) {
            put(row, dim - 1, 0.0);
        }
    }
}

/// Fills whole rows `out.chunks_exact(dim)` for positions `first_row..` in Q15.
/// Every position must fit a `u32` (checked by the callers).
fn fill_rows_q15(layout: Layout, first_row: u32, dim: usize, out: &mut [Q15]) {
    for k in 0..layout.pairs(dim) {
        let (w, sc, cc) = layout.column(dim, k);
        let step = fixed::phase_step(w);
        for (r, row) in out.chunks_exact_mut(dim).enumerate() {
            let p = first_row.wrapping_add(r as u32);
            let (s, c) = fixed::sin_cos_q15(fixed::phase_at(step, p));
            put(row, sc, s);
            put(row, cc, c);
        }
    }
    if matches!(layout, Layout::Split) && dim % 2 == 1 {
        for row in out.chunks_exact_mut(dim) {
            put(row, dim - 1, 0);
        }
    }
}

/// Zeroes row `padding_idx` of a `[rows][dim]` table.
fn zero_row<T: Copy>(out: &mut [T], dim: usize, padding_idx: Option<usize>, zero: T) {
    if let Some(p) = padding_idx {
        if let Some(row) = out.chunks_exact_mut(dim).nth(p) {
            row.fill(zero);
        }
    }
}

/// Checks that the last row index `rows − 1` (plus `first`) fits a `u32` phase position.
fn phase_position(first: usize, rows: usize) -> Result<u32, Error> {
    let last = first.checked_add(rows - 1).ok_or(Error::InvalidParameter)?;
    if last > u32::MAX as usize {
        return Err(Error::InvalidParameter);
    }
    Ok(first as u32)
}

/// Fills `out[..num_positions·dim]` with the interleaved (Vaswani/DistilBERT)
/// table, row-major `[position][dim]` (`sin, cos, sin, cos, …` per row).
///
/// Errors: [`Error::ZeroDimension`] if `num_positions` or `dim` is 0,
/// [`Error::BufferTooSmall`] if `out` is shorter than `num_positions·dim` (with
/// `needed = usize::MAX` when that product overflows).
pub fn fill_interleaved(num_positions: usize, dim: usize, out: &mut [f32]) -> Result<(), Error> {
    let needed = check_size(num_positions, dim, out.len())?;
    let out = out.get_mut(..needed).ok_or(Error::BufferTooSmall {
        needed,
        got: needed,
    })?;
    fill_rows_f32(Layout::Interleaved, 0, dim, out);
    Ok(())
}

/// Fills `out[..num_positions·dim]` with the split (tensor2tensor/fairseq/XGLM)
/// table, row-major `[row][dim]` (`[sin…, cos…]` per row), exactly as XGLM's
/// `get_embedding(num_positions, dim, padding_idx)` but with f64 angles.
///
/// `num_positions` counts table rows: an XGLM model with `max_position_embeddings`
/// positions and `padding_idx = 1` has `max_position_embeddings + 2` rows.
///
/// Errors: [`Error::ZeroDimension`] if `num_positions` or `dim` is 0,
/// [`Error::InvalidParameter`] if `dim < 4` (the reference divides by
/// `⌊dim/2⌋ − 1`), [`Error::PositionOutOfRange`] if `padding_idx >= num_positions`,
/// [`Error::BufferTooSmall`] if `out` is too short.
pub fn fill_split(
    num_positions: usize,
    dim: usize,
    padding_idx: Option<usize>,
    out: &mut [f32],
) -> Result<(), Error> {
    check_split(num_positions, dim, padding_idx)?;
    let needed = check_size(num_positions, dim, out.len())?;
    let out = out.get_mut(..needed).ok_or(Error::BufferTooSmall {
        needed,
        got: needed,
    })?;
    fill_rows_f32(Layout::Split, 0, dim, out);
    zero_row(out, dim, padding_idx, 0.0);
    Ok(())
}

/// The split table exactly as XGLM/fairseq build it in PyTorch float32: the
/// frequency exponent `i·f32(−ln(10000)/(⌊dim/2⌋−1))`, the frequency `exp` of it,
/// and the angle `row·freq` are each rounded to f32 (torch's float32 tensors),
/// then sine and cosine of that f32 angle are rounded once.
///
/// This is the table a checkpoint trained with that code saw, so it is the one to
/// use to reproduce its logits; it departs from the exact table ([`fill_split`]) by
/// the float32 angle rounding, up to ≈ `|angle|·2^-22`. Against Hugging Face's
/// own table it agrees within one f32 ulp of 1.0 (`tests/bias_and_absolute.rs`).
/// Errors as [`fill_split`].
pub fn fill_split_float32(
    num_positions: usize,
    dim: usize,
    padding_idx: Option<usize>,
    out: &mut [f32],
) -> Result<(), Error> {
    check_split(num_positions, dim, padding_idx)?;
    let needed = check_size(num_positions, dim, out.len())?;
    let out = out.get_mut(..needed).ok_or(Error::BufferTooSmall {
        needed,
        got: needed,
    })?;
    let half = dim / 2;
    let neg_step = -(math::ln(BASE) / (half - 1) as f64) as f32;
    for i in 0..half {
        let freq = math::exp((i as f32 * neg_step) as f64) as f32;
        for (r, row) in out.chunks_exact_mut(dim).enumerate() {
            let angle = r as f32 * freq;
            let (s, c) = math::sin_cos(angle as f64);
            put(row, i, s as f32);
            put(row, half + i, c as f32);
        }
    }
    if dim % 2 == 1 {
        for row in out.chunks_exact_mut(dim) {
            put(row, dim - 1, 0.0);
        }
    }
    zero_row(out, dim, padding_idx, 0.0);
    Ok(())
}

/// The interleaved row of `position` into `out[..dim]`, without a table.
///
/// Costs `dim` f64 sine/cosine evaluations: for building tables, not per token on
/// a core without an f64 unit. Errors: [`Error::ZeroDimension`] if `dim` is 0,
/// [`Error::BufferTooSmall`] if `out.len() < dim`.
pub fn interleaved_row(position: usize, dim: usize, out: &mut [f32]) -> Result<(), Error> {
    let needed = check_size(1, dim, out.len())?;
    if let Some(out) = out.get_mut(..needed) {
        fill_rows_f32(Layout::Interleaved, position, dim, out);
    }
    Ok(())
}

/// Row `row` of the split table into `out[..dim]` (zeros when `row == padding_idx`).
///
/// A model reads row [`split_row_index`]`(position, padding_idx)`. Errors:
/// [`Error::ZeroDimension`], [`Error::InvalidParameter`] (`dim < 4`),
/// [`Error::BufferTooSmall`] as for [`fill_split`].
pub fn split_row(
    row: usize,
    dim: usize,
    padding_idx: Option<usize>,
    out: &mut [f32],
) -> Result<(), Error> {
    check_split(1, dim, None)?;
    let needed = check_size(1, dim, out.len())?;
    if let Some(out) = out.get_mut(..needed) {
        if padding_idx == Some(row) {
            out.fill(0.0);
        } else {
            fill_rows_f32(Layout::Split, row, dim, out);
        }
    }
    Ok(())
}

/// Q15 version of [`fill_interleaved`] (integer phases, quarter-wave table).
///
/// Errors: as [`fill_interleaved`], and [`Error::InvalidParameter`] if a position
/// does not fit a `u32`.
pub fn fill_interleaved_q15(
    num_positions: usize,
    dim: usize,
    out: &mut [Q15],
) -> Result<(), Error> {
    let needed = check_size(num_positions, dim, out.len())?;
    let first = phase_position(0, num_positions)?;
    if let Some(out) = out.get_mut(..needed) {
        fill_rows_q15(Layout::Interleaved, first, dim, out);
    }
    Ok(())
}

/// Q15 version of [`fill_split`] (integer phases, quarter-wave table).
///
/// Errors: as [`fill_split`], and [`Error::InvalidParameter`] if a row index
/// does not fit a `u32`.
pub fn fill_split_q15(
    num_positions: usize,
    dim: usize,
    padding_idx: Option<usize>,
    out: &mut [Q15],
) -> Result<(), Error> {
    check_split(num_positions, dim, padding_idx)?;
    let needed = check_size(num_positions, dim, out.len())?;
    let first = phase_position(0, num_positions)?;
    if let Some(out) = out.get_mut(..needed) {
        fill_rows_q15(Layout::Split, first, dim, out);
        zero_row(out, dim, padding_idx, 0);
    }
    Ok(())
}

/// Q15 version of [`interleaved_row`].
///
/// Errors: as [`interleaved_row`], and [`Error::InvalidParameter`] if `position`
/// does not fit a `u32`.
pub fn interleaved_row_q15(position: usize, dim: usize, out: &mut [Q15]) -> Result<(), Error> {
    let needed = check_size(1, dim, out.len())?;
    let first = phase_position(position, 1)?;
    if let Some(out) = out.get_mut(..needed) {
        fill_rows_q15(Layout::Interleaved, first, dim, out);
    }
    Ok(())
}

/// Q15 version of [`split_row`].
///
/// Errors: as [`split_row`], and [`Error::InvalidParameter`] if `row` does not
/// fit a `u32`.
pub fn split_row_q15(
    row: usize,
    dim: usize,
    padding_idx: Option<usize>,
    out: &mut [Q15],
) -> Result<(), Error> {
    check_split(1, dim, None)?;
    let needed = check_size(1, dim, out.len())?;
    let first = phase_position(row, 1)?;
    if let Some(out) = out.get_mut(..needed) {
        if padding_idx == Some(row) {
            out.fill(0);
        } else {
            fill_rows_q15(Layout::Split, first, dim, out);
        }
    }
    Ok(())
}

/// An f32 sinusoidal table (`[rows][dim]`, row-major, e.g. from [`fill_interleaved`]
/// or [`fill_split`], in RAM or flash), read in place to add a position's row to a
/// token embedding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SinusoidalTable<'a> {
    rows: RowTable<'a, f32>,
}

impl<'a> SinusoidalTable<'a> {
    /// A table where position `p` reads row `p` (the interleaved layout).
    ///
    /// Errors: [`Error::ZeroDimension`] if `dim` is 0 or the table is empty,
    /// [`Error::LengthMismatch`] if `table.len()` is not a multiple of `dim`.
    pub fn new(table: &'a [f32], dim: usize) -> Result<Self, Error> {
        Ok(Self {
            rows: RowTable::new(table, dim, 0)?,
        })
    }

    /// A split-layout table where position `p` reads row
    /// [`split_row_index`]`(p, padding_idx)` (`p + padding_idx + 1`).
    ///
    /// Errors: as [`SinusoidalTable::new`]; [`Error::ZeroDimension`] also when no
    /// row is left past the padding row, [`Error::InvalidParameter`] if the
    /// offset overflows.
    pub fn split(table: &'a [f32], dim: usize, padding_idx: Option<usize>) -> Result<Self, Error> {
        let first = split_row_index(0, padding_idx).ok_or(Error::InvalidParameter)?;
        Ok(Self {
            rows: RowTable::new(table, dim, first)?,
        })
    }

    /// Number of positions served.
    pub fn positions(&self) -> usize {
        self.rows.positions()
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.rows.dim()
    }

    /// The row read for `position`.
    ///
    /// Errors: [`Error::PositionOutOfRange`] if `position >= self.positions()`.
    pub fn row(&self, position: usize) -> Result<&'a [f32], Error> {
        self.rows.row(position)
    }

    /// `x += PE[position]` (`x.len() == dim`), one f32 addition per element.
    ///
    /// Errors: [`Error::LengthMismatch`] if `x.len() != dim`,
    /// [`Error::PositionOutOfRange`] past the table; `x` is then unchanged.
    pub fn add_to(&self, position: usize, x: &mut [f32]) -> Result<(), Error> {
        let row = self.rows.row_for(position, x.len())?;
        for (x, w) in x.iter_mut().zip(row) {
            *x += *w;
        }
        Ok(())
    }
}

/// A Q15 sinusoidal table (`[rows][dim]`, from [`fill_interleaved_q15`] or
/// [`fill_split_q15`]), read in place to add a position's row to a fixed-point
/// token embedding, saturating.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SinusoidalTableQ15<'a> {
    rows: RowTable<'a, Q15>,
}

impl<'a> SinusoidalTableQ15<'a> {
    /// A table where position `p` reads row `p`. Errors: as [`SinusoidalTable::new`].
    pub fn new(table: &'a [Q15], dim: usize) -> Result<Self, Error> {
        Ok(Self {
            rows: RowTable::new(table, dim, 0)?,
        })
    }

    /// A split-layout table (position `p` reads row `p + padding_idx + 1`).
    /// Errors: as [`SinusoidalTable::split`].
    pub fn split(table: &'a [Q15], dim: usize, padding_idx: Option<usize>) -> Result<Self, Error> {
        let first = split_row_index(0, padding_idx).ok_or(Error::InvalidParameter)?;
        Ok(Self {
            rows: RowTable::new(table, dim, first)?,
        })
    }

    /// Number of positions served.
    pub fn positions(&self) -> usize {
        self.rows.positions()
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.rows.dim()
    }

    /// The row read for `position`.
    ///
    /// Errors: [`Error::PositionOutOfRange`] if `position >= self.positions()`.
    pub fn row(&self, position: usize) -> Result<&'a [Q15], Error> {
        self.rows.row(position)
    }

    /// `x += PE[position]` for a Q15 embedding, saturating.
    ///
    /// Errors: as [`SinusoidalTable::add_to`]; `x` is then unchanged.
    pub fn add_to(&self, position: usize, x: &mut [Q15]) -> Result<(), Error> {
        let row = self.rows.row_for(position, x.len())?;
        for (x, w) in x.iter_mut().zip(row) {
            *x = add_q15(*x, *w);
        }
        Ok(())
    }

    /// `x += PE[position]` for an embedding with `frac_bits ≤ 15` fractional bits
    /// (range ±2^(15−frac_bits)): each Q15 entry is rescaled with one rounding
    /// (half away from zero), then added, saturating.
    ///
    /// Errors: [`Error::InvalidParameter`] if `frac_bits > 15`, else as
    /// [`SinusoidalTable::add_to`]; `x` is then unchanged.
    pub fn add_to_scaled(
        &self,
        position: usize,
        frac_bits: u32,
        x: &mut [i16],
    ) -> Result<(), Error> {
        if frac_bits > 15 {
            return Err(Error::InvalidParameter);
        }
        let row = self.rows.row_for(position, x.len())?;
        let shift = 15 - frac_bits;
        for (x, w) in x.iter_mut().zip(row) {
            let w = *w as i32;
            let v = if shift == 0 {
                w
            } else {
                let half = 1i32 << (shift - 1);
                if w >= 0 {
                    (w + half) >> shift
                } else {
                    -((-w + half) >> shift)
                }
            };
            // |v| <= 2^15: the sum fits an i32, then saturates to i16.
            let s = (*x as i32 + v).clamp(i16::MIN as i32, i16::MAX as i32);
            *x = s as i16;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_small_table_matches_formula() {
        let (n, d) = (7, 6);
        let mut t = [0.0f32; 42];
        fill_interleaved(n, d, &mut t).unwrap();
        for p in 0..n {
            for j in 0..d {
                let a = p as f64 / 10000f64.powf((2 * (j / 2)) as f64 / d as f64);
                let e = if j % 2 == 0 { a.sin() } else { a.cos() };
                assert!((t[p * d + j] as f64 - e).abs() < 1e-7, "{p} {j}");
            }
        }
        // One row without a table is the same row.
        let mut r = [0.0f32; 6];
        interleaved_row(5, d, &mut r).unwrap();
        assert_eq!(&r[..], &t[30..36]);
    }

    #[test]
    fn odd_dims() {
        // Interleaved: the last column is a sine.
        let mut t = [9.0f32; 10];
        fill_interleaved(2, 5, &mut t).unwrap();
        let w = 10000f64.powf(-4.0 / 5.0);
        assert!((t[9] as f64 - w.sin()).abs() < 1e-7);
        // Split: the last column is zero.
        let mut t = [9.0f32; 10];
        fill_split(2, 5, None, &mut t).unwrap();
        assert_eq!(t[4], 0.0);
        assert_eq!(t[9], 0.0);
        assert_eq!(&t[..4], &[0.0, 0.0, 1.0, 1.0]);
        assert!((t[5] as f64 - 1f64.sin()).abs() < 1e-7);
        assert!((t[6] as f64 - 1e-4f64.sin()).abs() < 1e-7);
    }

    #[test]
    fn split_padding_and_offset() {
        let mut t = [1.0f32; 5 * 8];
        fill_split(5, 8, Some(1), &mut t).unwrap();
        assert!(t[8..16].iter().all(|&v| v == 0.0));
        let v = SinusoidalTable::split(&t, 8, Some(1)).unwrap();
        assert_eq!(v.positions(), 3);
        assert_eq!(v.row(0).unwrap(), &t[16..24]);
        let mut x = [1.0f32; 8];
        v.add_to(2, &mut x).unwrap();
        for (a, b) in x.iter().zip(&t[32..40]) {
            assert_eq!(*a, 1.0 + *b);
        }
        assert_eq!(split_row_index(0, Some(1)), Some(2));
        assert_eq!(split_row_index(7, None), Some(7));
        assert_eq!(split_row_index(usize::MAX, Some(0)), None);
        assert!(split_frequency(3, 0).is_nan());
        assert!(split_frequency(0, 1).is_nan());
        let mut r = [0.0f32; 8];
        split_row(4, 8, Some(1), &mut r).unwrap();
        assert_eq!(&r[..], &t[32..40]);
        split_row(1, 8, Some(1), &mut r).unwrap();
        assert_eq!(r, [0.0; 8]);
    }

    #[test]
    fn errors() {
        let mut t = [0.0f32; 8];
        assert_eq!(fill_interleaved(0, 4, &mut t), Err(Error::ZeroDimension));
        assert_eq!(fill_interleaved(2, 0, &mut t), Err(Error::ZeroDimension));
        assert_eq!(
            fill_interleaved(3, 4, &mut t),
            Err(Error::BufferTooSmall { needed: 12, got: 8 })
        );
        assert_eq!(
            fill_interleaved(usize::MAX, 2, &mut t),
            Err(Error::BufferTooSmall {
                needed: usize::MAX,
                got: 8
            })
        );
        assert_eq!(fill_split(2, 3, None, &mut t), Err(Error::InvalidParameter));
        assert_eq!(
            fill_split(2, 4, Some(2), &mut t),
            Err(Error::PositionOutOfRange {
                position: 2,
                len: 2
            })
        );
        let mut q = [0i16; 8];
        assert_eq!(
            fill_split_q15(2, 2, None, &mut q),
            Err(Error::InvalidParameter)
        );
        assert_eq!(
            SinusoidalTable::new(&t[..7], 2),
            Err(Error::LengthMismatch {
                expected: 6,
                got: 7
            })
        );
        assert_eq!(
            SinusoidalTable::split(&t, 4, Some(1)),
            Err(Error::ZeroDimension)
        );
    }

    #[test]
    fn q15_rows_and_saturating_add() {
        let mut q = [0i16; 4 * 8];
        fill_interleaved_q15(4, 8, &mut q).unwrap();
        assert_eq!(&q[..8], &[0, 32767, 0, 32767, 0, 32767, 0, 32767]);
        let mut r = [0i16; 8];
        interleaved_row_q15(3, 8, &mut r).unwrap();
        assert_eq!(&r[..], &q[24..32]);
        let v = SinusoidalTableQ15::new(&q, 8).unwrap();
        let mut x = [32767i16; 8];
        v.add_to(0, &mut x).unwrap();
        assert_eq!(x, [32767; 8]);
        let mut x = [-32768i16; 8];
        v.add_to(0, &mut x).unwrap();
        assert_eq!(x[1], -1);
        // Q12 embedding (range ±8): 1.0 is 4096.
        let mut x = [0i16; 8];
        v.add_to_scaled(0, 12, &mut x).unwrap();
        assert_eq!(x[1], 4096);
        assert_eq!(v.add_to_scaled(0, 16, &mut x), Err(Error::InvalidParameter));
        let mut s = [0i16; 3 * 8];
        fill_split_q15(3, 8, Some(1), &mut s).unwrap();
        assert_eq!(&s[..8], &[0, 0, 0, 0, 32767, 32767, 32767, 32767]);
        assert_eq!(&s[8..16], &[0; 8]);
        for i in 0..4 {
            let a = 2.0 * 10000f64.powf(-(i as f64) / 3.0);
            let (es, ec) = (a.sin() * 32768.0, (a.cos() * 32768.0).min(32767.0));
            assert!((s[16 + i] as f64 - es).abs() <= 1.2, "{i}");
            assert!((s[20 + i] as f64 - ec).abs() <= 1.2, "{i}");
        }
    }
}
