//! Learned absolute position embeddings: a table trained with the weights.
//!
//! # Formula
//!
//! `x_p ← x_p + W[p + offset]`, where `W` is a `[rows][dim]` table stored with the
//! weights, `p` is the token's position (0 for the first token) and `offset` a
//! fixed number of leading rows the model never reads for real tokens.
//!
//! # Source
//!
//! - GPT-2 (Radford et al., 2019), Hugging Face `modeling_gpt2.py`: `wpe =
//!   nn.Embedding(n_positions, n_embd)`, `position_ids = arange(past, past + len)`,
//!   so position `p` reads row `p` (offset 0). BERT's `position_embeddings` is the
//!   same.
//! - OPT (Zhang et al., 2022), Hugging Face `modeling_opt.py`
//!   `OPTLearnedPositionalEmbedding`: the table has `max_position_embeddings + 2`
//!   rows and `forward` adds `self.offset = 2` to the position ids (the first real
//!   token has position 0 and reads row 2), a leftover of fairseq's padding rows.
//!   [`OPT_OFFSET`] and [`LearnedPositions::opt`] encode that.
//!
//! # Error bound
//!
//! - f32: [`LearnedPositions::add_to`] performs one f32 addition per element:
//!   the result is the correctly rounded sum (error ≤ ½ ulp of the sum), bit
//!   identical to PyTorch's `inputs_embeds + position_embeds` in float32.
//! - fixed point: [`LearnedPositionsQ15::add_to`] adds two Q15 numbers exactly; the
//!   only error is saturation at `[-1, 1 − 2^-15]` when the exact sum leaves that
//!   range. The table must already be in the embedding's fixed-point format
//!   (quantising the table is the converter's job: ≤ ½ LSB per entry).
//!
//! # Memory
//!
//! Nothing is copied: the view borrows the table in place (in flash for a model
//! image). The table itself is `rows × dim` elements: 4 bytes each in f32, 2 in
//! Q15 (GPT-2 small: 1024 × 768 × 4 = 3 MiB; a tiny model with 512 × 64: 128 KiB
//! in f32, 64 KiB in Q15). A view is four words.

use crate::num::fixed::Q15;
use crate::Error;

/// Rows OPT keeps in front of its learned position table (position `p` reads row `p + 2`).
pub const OPT_OFFSET: usize = 2;

/// A `[rows][dim]` row-major table where position `p` reads row `p + first_row`.
///
/// Shared by the learned and sinusoidal views: validation and row lookup only.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RowTable<'a, T> {
    table: &'a [T],
    dim: usize,
    first_row: usize,
    positions: usize,
}

impl<'a, T> RowTable<'a, T> {
    /// Checks that `table` is a whole number of rows of `dim` and holds at least one
    /// position past `first_row`.
    pub(crate) fn new(table: &'a [T], dim: usize, first_row: usize) -> Result<Self, Error> {
        if dim == 0 {
            return Err(Error::ZeroDimension);
        }
        let rows = table.len() / dim;
        if rows * dim != table.len() {
            return Err(Error::LengthMismatch {
                expected: rows * dim,
                got: table.len(),
            });
        }
        if rows <= first_row {
            return Err(Error::ZeroDimension);
        }
        Ok(Self {
            table,
            dim,
            first_row,
            positions: rows - first_row,
        })
    }

    pub(crate) fn positions(&self) -> usize {
        self.positions
    }

    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    pub(crate) fn first_row(&self) -> usize {
        self.first_row
    }

    /// The row read by `position`.
    pub(crate) fn row(&self, position: usize) -> Result<&'a [T], Error> {
        if position >= self.positions {
            return Err(Error::PositionOutOfRange {
                position,
                len: self.positions,
            });
        }
        // position < positions = rows - first_row: no overflow, in bounds.
        let start = (position + self.first_row) * self.dim;
        self.table
            .get(start..start + self.dim)
            .ok_or(Error::PositionOutOfRange {
                position,
                len: self.positions,
            })
    }

    /// The row read by `position`, checked against a vector of length `x_len`.
    pub(crate) fn row_for(&self, position: usize, x_len: usize) -> Result<&'a [T], Error> {
        if x_len != self.dim {
            return Err(Error::LengthMismatch {
                expected: self.dim,
                got: x_len,
            });
        }
        self.row(position)
    }
}

/// Saturating Q15 addition.
#[inline]
pub(crate) fn add_q15(a: Q15, b: Q15) -> Q15 {
    a.saturating_add(b)
}

/// A learned f32 position table, `[rows][dim]` row-major, read in place.
///
/// Position `p` reads row `p + offset` (offset 0 for GPT-2/BERT, 2 for OPT).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LearnedPositions<'a> {
    rows: RowTable<'a, f32>,
}

impl<'a> LearnedPositions<'a> {
    /// A view over `table` (`rows × dim` values) where position `p` reads row `p + offset`.
    ///
    /// Errors: [`Error::ZeroDimension`] if `dim` is 0 or the table has no row past
    /// `offset`; [`Error::LengthMismatch`] if `table.len()` is not a multiple of `dim`.
    pub fn new(table: &'a [f32], dim: usize, offset: usize) -> Result<Self, Error> {
        Ok(Self {
            rows: RowTable::new(table, dim, offset)?,
        })
    }

    /// GPT-2 `wpe` (or BERT `position_embeddings`): position `p` reads row `p`.
    pub fn gpt2(table: &'a [f32], dim: usize) -> Result<Self, Error> {
        Self::new(table, dim, 0)
    }

    /// OPT `embed_positions`: `max_position_embeddings + 2` rows, position `p` reads row `p + 2`.
    pub fn opt(table: &'a [f32], dim: usize) -> Result<Self, Error> {
        Self::new(table, dim, OPT_OFFSET)
    }

    /// Number of positions the table serves (`rows − offset`).
    pub fn positions(&self) -> usize {
        self.rows.positions()
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.rows.dim()
    }

    /// Rows skipped in front of position 0.
    pub fn offset(&self) -> usize {
        self.rows.first_row()
    }

    /// The embedding of `position`.
    ///
    /// Errors: [`Error::PositionOutOfRange`] if `position >= self.positions()`.
    pub fn row(&self, position: usize) -> Result<&'a [f32], Error> {
        self.rows.row(position)
    }

    /// Adds the embedding of `position` to the token embedding `x` (`x.len() == dim`).
    ///
    /// Errors: [`Error::LengthMismatch`] if `x.len() != dim`,
    /// [`Error::PositionOutOfRange`] if the position is past the table; `x` is then
    /// left unchanged.
    pub fn add_to(&self, position: usize, x: &mut [f32]) -> Result<(), Error> {
        let row = self.rows.row_for(position, x.len())?;
        for (x, w) in x.iter_mut().zip(row) {
            *x += *w;
        }
        Ok(())
    }

    /// [`LearnedPositions::add_to`] in fixed point for the integer step: the
    /// row's f32 values read as `frac`-bit fixed point (rounded once,
    /// [`crate::num::int::fixed_from_f32`]) and added with saturation.
    ///
    /// Errors: as [`LearnedPositions::add_to`].
    pub fn add_to_fixed(&self, position: usize, x: &mut [i32], frac: u32) -> Result<(), Error> {
        let row = self.rows.row_for(position, x.len())?;
        for (x, &w) in x.iter_mut().zip(row) {
            *x = x.saturating_add(crate::num::int::fixed_from_f32(w, frac));
        }
        Ok(())
    }
}

/// A learned Q15 position table, `[rows][dim]` row-major, read in place.
///
/// Same layout and offsets as [`LearnedPositions`]; values in the token
/// embedding's Q15 format.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LearnedPositionsQ15<'a> {
    rows: RowTable<'a, Q15>,
}

impl<'a> LearnedPositionsQ15<'a> {
    /// A view over `table` (`rows × dim` values) where position `p` reads row `p + offset`.
    ///
    /// Errors: as [`LearnedPositions::new`].
    pub fn new(table: &'a [Q15], dim: usize, offset: usize) -> Result<Self, Error> {
        Ok(Self {
            rows: RowTable::new(table, dim, offset)?,
        })
    }

    /// GPT-2 layout: position `p` reads row `p`.
    pub fn gpt2(table: &'a [Q15], dim: usize) -> Result<Self, Error> {
        Self::new(table, dim, 0)
    }

    /// OPT layout: position `p` reads row `p + 2`.
    pub fn opt(table: &'a [Q15], dim: usize) -> Result<Self, Error> {
        Self::new(table, dim, OPT_OFFSET)
    }

    /// Number of positions the table serves (`rows − offset`).
    pub fn positions(&self) -> usize {
        self.rows.positions()
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.rows.dim()
    }

    /// Rows skipped in front of position 0.
    pub fn offset(&self) -> usize {
        self.rows.first_row()
    }

    /// The embedding of `position`.
    ///
    /// Errors: [`Error::PositionOutOfRange`] if `position >= self.positions()`.
    pub fn row(&self, position: usize) -> Result<&'a [Q15], Error> {
        self.rows.row(position)
    }

    /// Adds the embedding of `position` to `x` (`x.len() == dim`), saturating.
    ///
    /// Errors: as [`LearnedPositions::add_to`]; `x` is then left unchanged.
    pub fn add_to(&self, position: usize, x: &mut [Q15]) -> Result<(), Error> {
        let row = self.rows.row_for(position, x.len())?;
        for (x, w) in x.iter_mut().zip(row) {
            *x = add_q15(*x, *w);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_reads_row_p() {
        // 3 positions x 2 dims
        let t = [1.0, 2.0, 10.0, 20.0, 100.0, 200.0];
        let w = LearnedPositions::gpt2(&t, 2).unwrap();
        assert_eq!(w.positions(), 3);
        let mut x = [0.5, 0.25];
        w.add_to(2, &mut x).unwrap();
        assert_eq!(x, [100.5, 200.25]);
        assert_eq!(w.row(1).unwrap(), &[10.0, 20.0]);
        assert_eq!(
            w.row(3),
            Err(Error::PositionOutOfRange {
                position: 3,
                len: 3
            })
        );
    }

    #[test]
    fn opt_skips_two_rows() {
        let t = [9.0, 9.0, 8.0, 8.0, 1.0, 2.0, 3.0, 4.0];
        let w = LearnedPositions::opt(&t, 2).unwrap();
        assert_eq!(w.positions(), 2);
        assert_eq!(w.offset(), 2);
        let mut x = [0.0, 0.0];
        w.add_to(0, &mut x).unwrap();
        assert_eq!(x, [1.0, 2.0]);
        assert_eq!(
            w.add_to(2, &mut x),
            Err(Error::PositionOutOfRange {
                position: 2,
                len: 2
            })
        );
        assert_eq!(x, [1.0, 2.0]);
    }

    #[test]
    fn bad_shapes() {
        let t = [0.0f32; 5];
        assert_eq!(
            LearnedPositions::gpt2(&t, 2),
            Err(Error::LengthMismatch {
                expected: 4,
                got: 5
            })
        );
        assert_eq!(LearnedPositions::gpt2(&t, 0), Err(Error::ZeroDimension));
        assert_eq!(LearnedPositions::opt(&t[..4], 2), Err(Error::ZeroDimension));
        let w = LearnedPositions::gpt2(&t[..4], 2).unwrap();
        let mut x = [0.0f32; 3];
        assert_eq!(
            w.add_to(0, &mut x),
            Err(Error::LengthMismatch {
                expected: 2,
                got: 3
            })
        );
    }

    #[test]
    fn q15_saturates() {
        let t: [Q15; 4] = [30000, -30000, 1, -1];
        let w = LearnedPositionsQ15::gpt2(&t, 2).unwrap();
        let mut x: [Q15; 2] = [10000, -10000];
        w.add_to(0, &mut x).unwrap();
        assert_eq!(x, [32767, -32768]);
        let mut y: [Q15; 2] = [-5, 5];
        w.add_to(1, &mut y).unwrap();
        assert_eq!(y, [-4, 4]);
        w.add_to(1, &mut x).unwrap();
        assert_eq!(x, [32767, -32768]);
    }
}
