//! Compile-time RoPE tables: cos/sin computed by the compiler into flash.
//!
//! # Formula and source
//!
//! Exactly the table of [`crate::pos::rope`] (`a·cos(p·ω_i)`, `a·sin(p·ω_i)`
//! in f32, `[position][pair]`), with `ω_i` and `a` from any
//! [`RopeConfig`] scaling rule (Hugging Face `modeling_rope_utils.py`, see
//! [`crate::pos::rope_scaling`]). Every entry comes from the one `const fn`
//! [`entry_f32`] that [`RopeTable::fill`] also uses, and `ω_i`, `a` from the
//! same `const fn`s, so a `static` table and a run-time table are
//! bit-identical (tested in `tests/rope.rs`). No trigonometry runs on the
//! target at all:
//!
//! ```
//! use microformer::pos::rope_const::ConstRopeTable;
//! use microformer::pos::rope_scaling::RopeConfig;
//! use microformer::pos::rope::RopeLayout;
//!
//! const CFG: RopeConfig<'static> = RopeConfig::new(10_000.0, 8, 512);
//! // Turn a bad configuration into a compile error:
//! const _: () = assert!(ConstRopeTable::<512, 4>::check(&CFG).is_ok());
//! static TABLE: ConstRopeTable<512, 4> = ConstRopeTable::new(&CFG, 512);
//!
//! let mut q = [1.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
//! TABLE.as_table().rotate(RopeLayout::Interleaved, 3, &mut q).unwrap();
//! assert_eq!(q[0], TABLE.cos[3][0]);
//! ```
//!
//! # Error bound
//!
//! As the f32 table of [`crate::pos::rope`]: one f32 rounding (half an ulp,
//! `≤ 2^-24·|a·cos|`) plus an f64 angle error ≈ `p·ω·2^-52`, far under 1e-6.
//! For fixed point on targets without an FPU, use
//! [`crate::pos::rope::RopePhases`] (≤ 1.2 LSB, 8 bytes per pair).
//!
//! # Memory
//!
//! [`ConstRopeTable::BYTES`] `= 8·P·H`: `P = 512` positions × `H = 4` pairs
//! (head dim 8) is 16 KiB of flash.

use crate::pos::rope::{entry_f32, RopeTable};
use crate::pos::rope_scaling::RopeConfig;
use crate::Error;

/// An f32 RoPE table for `P` positions and `H` pairs, computable at compile
/// time (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConstRopeTable<const P: usize, const H: usize> {
    /// `a·cos(p·ω_i)` at `[p][i]`.
    pub cos: [[f32; H]; P],
    /// `a·sin(p·ω_i)` at `[p][i]`.
    pub sin: [[f32; H]; P],
}

impl<const P: usize, const H: usize> ConstRopeTable<P, H> {
    /// Bytes of the table: `2·P·H·4`.
    pub const BYTES: usize = 2 * P * H * core::mem::size_of::<f32>();

    /// Checks that `cfg` is valid and has `H` pairs and that `P > 0`.
    ///
    /// Errors: `cfg`'s [`RopeConfig::validate`] error,
    /// [`Error::LengthMismatch`] (`cfg.pairs() != H`), [`Error::ZeroDimension`]
    /// (`P = 0`).
    pub const fn check(cfg: &RopeConfig<'_>) -> Result<(), Error> {
        if let Err(e) = cfg.validate() {
            return Err(e);
        }
        if cfg.pairs() != H {
            return Err(Error::LengthMismatch {
                expected: cfg.pairs(),
                got: H,
            });
        }
        if P == 0 {
            return Err(Error::ZeroDimension);
        }
        Ok(())
    }

    /// The table of positions `0..P` for `cfg` at sequence length `seq_len`,
    /// or the [`check`](Self::check) error.
    pub const fn try_new(cfg: &RopeConfig<'_>, seq_len: usize) -> Result<Self, Error> {
        if let Err(e) = Self::check(cfg) {
            return Err(e);
        }
        let mut t = Self {
            cos: [[0.0; H]; P],
            sin: [[0.0; H]; P],
        };
        let a = cfg.attention_factor(seq_len);
        let mut i = 0;
        while i < H {
            let w = cfg.inv_freq(i, seq_len);
            let mut p = 0;
            while p < P {
                let (c, s) = entry_f32(w, a, p);
                t.cos[p][i] = c;
                t.sin[p][i] = s;
                p += 1;
            }
            i += 1;
        }
        Ok(t)
    }

    /// The table of positions `0..P`, usable in a `static`.
    ///
    /// Never panics: if [`check`](Self::check) fails, every entry is NaN
    /// (a rotation then gives NaN). Put `assert!(ConstRopeTable::<P, H>::check(&CFG).is_ok())`
    /// in a `const` item, or use [`try_new`](Self::try_new), to make a bad
    /// configuration a compile error.
    pub const fn new(cfg: &RopeConfig<'_>, seq_len: usize) -> Self {
        match Self::try_new(cfg, seq_len) {
            Ok(t) => t,
            Err(_) => Self {
                cos: [[f32::NAN; H]; P],
                sin: [[f32::NAN; H]; P],
            },
        }
    }

    /// The table as a [`RopeTable`] (rows, rotation).
    pub fn as_table(&self) -> RopeTable<'_> {
        RopeTable::from_parts(self.cos.as_flattened(), self.sin.as_flattened(), H)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pos::rope_scaling::{Llama3Params, RopeScaling};

    const CFG: RopeConfig<'static> =
        RopeConfig::new(500_000.0, 8, 64).with_scaling(RopeScaling::Llama3(Llama3Params {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 16,
        }));
    static T: ConstRopeTable<64, 4> = ConstRopeTable::new(&CFG, 64);

    #[test]
    fn static_matches_formula_and_runtime() {
        let mut cos = [0f32; 256];
        let mut sin = [0f32; 256];
        RopeTable::fill(&CFG, 64, 0, &mut cos, &mut sin).unwrap();
        for p in 0..64 {
            for i in 0..4 {
                assert_eq!(T.cos[p][i].to_bits(), cos[p * 4 + i].to_bits());
                assert_eq!(T.sin[p][i].to_bits(), sin[p * 4 + i].to_bits());
                let x = p as f64 * CFG.inv_freq(i, 64);
                assert!((T.cos[p][i] as f64 - x.cos()).abs() < 1e-7);
            }
        }
        assert_eq!(ConstRopeTable::<64, 4>::BYTES, 2048);
        assert_eq!(T.as_table().positions(), 64);
        assert_eq!(T.as_table().pairs(), 4);
    }

    #[test]
    fn bad_shape_is_reported() {
        assert_eq!(
            ConstRopeTable::<4, 3>::check(&CFG),
            Err(Error::LengthMismatch {
                expected: 4,
                got: 3
            })
        );
        assert_eq!(
            ConstRopeTable::<0, 4>::check(&CFG),
            Err(Error::ZeroDimension)
        );
        let t = ConstRopeTable::<2, 3>::new(&CFG, 0);
        assert!(t.cos[1][2].is_nan());
        assert_eq!(
            ConstRopeTable::<2, 4>::try_new(&RopeConfig::new(1e4, 7, 8), 0).unwrap_err(),
            Error::OddDimension { dim: 7 }
        );
    }
}
