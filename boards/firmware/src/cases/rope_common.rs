//! What the RoPE cases share: the configurations, layouts and error bounds.

use microformer::pos::rope::RopeLayout;
use microformer::pos::rope_scaling::{RopeConfig, RopeScaling, YarnParams};

use super::check::pow2;

/// Head of 20 dims, the first 16 rotary (partial rotary), θ = 10000.
pub(super) const CFG: RopeConfig<'static> = RopeConfig::new(10_000.0, 16, 4096);
pub(super) const PAIRS: usize = 8;
pub(super) const HEAD: usize = 20;
/// YaRN ×4 from 1024 positions: attention factor `0.1·ln 4 + 1 ≈ 1.139`.
pub(super) const YARN: RopeConfig<'static> =
    RopeConfig::new(10_000.0, 16, 4096).with_scaling(RopeScaling::Yarn(YarnParams::new(4.0, 1024)));
pub(super) const LAYOUTS: [RopeLayout; 2] = [RopeLayout::Interleaved, RopeLayout::HalfSplit];

/// Chunks of positions `(first, rows)` the tables are filled for: the start,
/// around the trained context (4096) and the top of the documented range.
pub(super) const CHUNKS: [(usize, usize); 3] = [(0, 32), (4093, 3), (65520, 16)];
pub(super) const MAX_ROWS: usize = 32;

/// The reference angle `p·ω_i`, formed in f64 (one rounding: `≤ x·2^-53`).
pub(super) fn angle(cfg: &RopeConfig<'_>, position: usize, pair: usize) -> f64 {
    position as f64 * cfg.inv_freq(pair, 0)
}

/// f32 entry bound (module docs of `pos::rope`): f32 rounding (½ ulp ≤ 2^-25
/// for `|v| ≤ 1`), the library's f64 angle in turns (`≈ x·2^-52`) plus the
/// reference's own angle (`x·2^-53`), together `< x·2^-51`, and the f64
/// sine/cosine of both (a few ulp of f64: `2^-50`); all times `a`.
pub(super) fn f32_entry_bound(x: f64, a: f64) -> f64 {
    a * (pow2(-25) + x * pow2(-51) + pow2(-50))
}

/// Q15 entry bound in LSB: ½ LSB plus the same f64 allowance in LSB.
pub(super) fn q15_entry_bound(x: f64, a: f64) -> f64 {
    0.5 + 32768.0 * a * (x * pow2(-51) + pow2(-50))
}

/// `clamp(32768·v, −32768, 32767)`: the Q15 value an exact `v` saturates to.
pub(super) fn q15_exact(v: f64) -> f64 {
    (v * 32768.0).clamp(-32768.0, 32767.0)
}

/// Dims of pair `i` in a rotary part of `pairs` pairs.
pub(super) fn dims(layout: RopeLayout, pairs: usize, i: usize) -> (usize, usize) {
    match layout {
        RopeLayout::Interleaved => (2 * i, 2 * i + 1),
        RopeLayout::HalfSplit => (i, i + pairs),
    }
}
