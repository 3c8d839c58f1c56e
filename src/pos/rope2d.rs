//! 2-D axial RoPE for image patches at `(row, column)`, in f32 and Q15.
//!
//! # Formula and convention
//!
//! The rotary part of a head has `2A` pairs (`d = 4A` dims). Both axes use
//! the same `A` frequencies, those of a 1-D RoPE over `d/2` dims:
//!
//! ```text
//! ω_j = θ^(−2j/(d/2)) = θ^(−4j/d),   j = 0..A
//! pair j       (j < A): angle column·ω_j
//! pair A + j   (j < A): angle row·ω_j
//! ```
//!
//! i.e. the **first half of the pairs follows the column (x), the second half
//! the row (y)**. This is the axial RoPE of Heo et al., *Rotary Position
//! Embedding for Vision Transformer* (ECCV 2024, arXiv:2403.13298), reference
//! implementation `naver-ai/rope-vit`, `compute_axial_cis`:
//! `freqs = 1/θ^(arange(0, dim, 4)[:dim/4]/dim)` for both axes,
//! `t_x = t % W` (column), `t_y = t // W` (row),
//! `cat([polar(t_x·freqs), polar(t_y·freqs)])`, applied to interleaved pairs
//! (`view_as_complex`), i.e. [`RopeLayout::Interleaved`]. With
//! [`RopeLayout::HalfSplit`], "pair k" means dims `(k, k + 2A)` as in 1-D.
//!
//! So one 1-D table with `A` pairs and `max(rows, columns)` positions, built
//! by [`RopeTable::fill`] / [`RopeTableQ15::fill`] from the *axis*
//! configuration `RopeConfig::new(θ, d/2, side)`, serves both axes; the
//! rotation is [`rotate_pairs_f32`] / [`rotate_pairs_q15`] applied to each
//! half (the same code as 1-D RoPE). On a line (row 0) the row half is
//! untouched and the column half is exactly 1-D RoPE with `A` pairs.
//!
//! # Error bound
//!
//! Per pair exactly as 1-D RoPE ([`crate::pos::rope`]): f32 table entries
//! ≤ half an f32 ulp plus ≈ `p·ω·2^-52`; Q15 table ≤ 0.5 LSB; Q15 rotation
//! ≤ 2 LSB for `|x0|, |x1| ≤ 1`.
//!
//! # Memory
//!
//! Half of a 1-D table of the same head: `side × A × 2` entries, e.g. a 32×32
//! patch grid with head dim 16 (`A = 4`): 32·4·2·4 = 1 KiB in f32, 512 bytes
//! in Q15.

use crate::num::fixed::Q15;
use crate::pos::rope::{rotate_pairs_f32, rotate_pairs_q15, RopeLayout, RopeTable, RopeTableQ15};
use crate::Error;

/// 2-D axial RoPE over an f32 axis table (see the [module docs](self)).
#[derive(Debug, Clone, Copy)]
pub struct Rope2d<'a> {
    axis: RopeTable<'a>,
}

impl<'a> Rope2d<'a> {
    /// Uses `axis` (a 1-D table with `A` pairs and at least `max(rows,
    /// columns)` positions) for both axes.
    pub fn new(axis: RopeTable<'a>) -> Self {
        Self { axis }
    }

    /// The shared axis table.
    pub fn axis(&self) -> RopeTable<'a> {
        self.axis
    }

    /// Rotated pairs per head: `2A`.
    pub fn pairs(&self) -> usize {
        2 * self.axis.pairs()
    }

    /// Rotates the first `4A` dims of `head` for the patch at `(row, column)`.
    ///
    /// Errors (head unchanged): [`Error::PositionOutOfRange`] (row or column
    /// past the axis table), [`Error::RotaryDimTooLarge`] (`head.len() < 4A`).
    pub fn rotate(
        &self,
        layout: RopeLayout,
        row: usize,
        column: usize,
        head: &mut [f32],
    ) -> Result<(), Error> {
        let (xc, xs) = self.axis.row(column)?;
        let (yc, ys) = self.axis.row(row)?;
        let pairs = self.pairs();
        rotate_pairs_f32(layout, pairs, 0, xc, xs, head)?;
        rotate_pairs_f32(layout, pairs, self.axis.pairs(), yc, ys, head)
    }
}

/// 2-D axial RoPE over a Q15 axis table (see the [module docs](self)).
#[derive(Debug, Clone, Copy)]
pub struct Rope2dQ15<'a> {
    axis: RopeTableQ15<'a>,
}

impl<'a> Rope2dQ15<'a> {
    /// Uses `axis` (a 1-D Q15 table with `A` pairs) for both axes.
    pub fn new(axis: RopeTableQ15<'a>) -> Self {
        Self { axis }
    }

    /// The shared axis table.
    pub fn axis(&self) -> RopeTableQ15<'a> {
        self.axis
    }

    /// Rotated pairs per head: `2A`.
    pub fn pairs(&self) -> usize {
        2 * self.axis.pairs()
    }

    /// Rotates the first `4A` dims of a Q15 head for the patch at
    /// `(row, column)`. Errors as [`Rope2d::rotate`].
    pub fn rotate(
        &self,
        layout: RopeLayout,
        row: usize,
        column: usize,
        head: &mut [Q15],
    ) -> Result<(), Error> {
        let (xc, xs) = self.axis.row(column)?;
        let (yc, ys) = self.axis.row(row)?;
        let pairs = self.pairs();
        rotate_pairs_q15(layout, pairs, 0, xc, xs, head)?;
        rotate_pairs_q15(layout, pairs, self.axis.pairs(), yc, ys, head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pos::rope_scaling::RopeConfig;

    /// rope-vit's `compute_axial_cis(dim = 8, theta = 100)`: freqs 100^(−4j/8).
    #[test]
    fn axial_angles_match_rope_vit() {
        let axis = RopeConfig::new(100.0, 4, 16);
        let mut cos = [0f32; 2 * 16];
        let mut sin = [0f32; 2 * 16];
        RopeTable::fill(&axis, 0, 0, &mut cos, &mut sin).unwrap();
        let r = Rope2d::new(RopeTable::new(&cos, &sin, 2).unwrap());
        assert_eq!(r.pairs(), 4);
        let (row, col) = (5usize, 11usize);
        let mut h = [1.0f32, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 7.0];
        r.rotate(RopeLayout::Interleaved, row, col, &mut h).unwrap();
        let freqs = [1.0, 100f64.powf(-4.0 / 8.0)];
        let want = [
            col as f64 * freqs[0],
            col as f64 * freqs[1],
            row as f64 * freqs[0],
            row as f64 * freqs[1],
        ];
        for k in 0..4 {
            assert!((h[2 * k] as f64 - want[k].cos()).abs() < 1e-7, "{k}");
            assert!((h[2 * k + 1] as f64 - want[k].sin()).abs() < 1e-7, "{k}");
        }
        assert_eq!(h[8], 7.0);
    }

    #[test]
    fn errors_leave_head_unchanged() {
        let axis = RopeConfig::new(100.0, 4, 4);
        let mut cos = [0i16; 8];
        let mut sin = [0i16; 8];
        RopeTableQ15::fill(&axis, 0, 0, &mut cos, &mut sin).unwrap();
        let r = Rope2dQ15::new(RopeTableQ15::new(&cos, &sin, 2).unwrap());
        let mut h = [1000i16; 8];
        assert_eq!(
            r.rotate(RopeLayout::HalfSplit, 4, 0, &mut h),
            Err(Error::PositionOutOfRange {
                position: 4,
                len: 4
            })
        );
        assert_eq!(h, [1000; 8]);
        let mut short = [1000i16; 7];
        assert_eq!(
            r.rotate(RopeLayout::HalfSplit, 1, 1, &mut short),
            Err(Error::RotaryDimTooLarge {
                rotary_dim: 8,
                head_dim: 7
            })
        );
        assert_eq!(short, [1000; 7]);
        r.rotate(RopeLayout::HalfSplit, 0, 0, &mut h).unwrap();
        assert_eq!(h, [1000; 8]); // position (0, 0): cos = 32767 ⇒ 1000·32767/32768 rounds to 1000
    }
}
