//! Q15 fixed point for cores without an FPU.
//!
//! - A **phase** is an angle as an integer number of turns: a `u32` where
//!   `2^32` is one full turn (2π), so it wraps exactly like the angle does.
//!   A per-frequency **phase step** is a `u64` holding the fractional turns per
//!   position with 64 fractional bits; the phase at position `p` is
//!   `(p · step) >> 32`, computed with wrapping integer arithmetic and rounded
//!   once, so no angle is ever formed as `position · inv_freq` in f32.
//! - **Q15** values are `i16` with 15 fractional bits (`1.0` saturates to
//!   `32767`); products go through an `i32` (Q30/Q31) accumulator and saturate.
//! - [`sin_cos_q15`] reads a 257-entry quarter-wave sine table (514 bytes of
//!   flash, built by `const fn` at compile time) with linear interpolation.
//!
//! Error bounds (checked exhaustively against f64 in the tests below):
//! - [`sin_cos_q15`]: ≤ 1.2 LSB (table rounding 0.5, interpolation 0.16,
//!   final rounding 0.5; `1.0` is 1 LSB short);
//! - [`rotate_q15`] with Q15 cos/sin: ≤ 3 LSB per element against the exact
//!   rotation of the same Q15 input by the exact angle.

use super::math;

/// A Q15 number: `i16` with 15 fractional bits, range `[-1, 1 - 2^-15]`.
pub type Q15 = i16;

/// One Q15 least significant bit as a real number (`2^-15`).
pub const Q15_LSB: f64 = 1.0 / 32768.0;

/// Rounds a real number to Q15, saturating to `[-32768, 32767]` (NaN gives 0).
pub const fn q15_from_f64(x: f64) -> Q15 {
    let v = math::round(x * 32768.0);
    if v >= 32767.0 {
        32767
    } else if v <= -32768.0 {
        -32768
    } else if v.is_nan() {
        0
    } else {
        v as i16
    }
}

/// The real value of a Q15 number.
pub const fn q15_to_f64(x: Q15) -> f64 {
    x as f64 * Q15_LSB
}

/// Segments per quarter turn in [`QUARTER_SINE`].
const SEGMENTS: usize = 256;

/// `sin(k/256 · π/2)` in Q15 for `k = 0..=256`, as `u16` so that the last entry
/// holds `1.0 = 32768` exactly. Built at compile time: 514 bytes of flash.
pub static QUARTER_SINE: [u16; SEGMENTS + 1] = quarter_sine();

const fn quarter_sine() -> [u16; SEGMENTS + 1] {
    let mut t = [0u16; SEGMENTS + 1];
    let mut k = 0;
    while k <= SEGMENTS {
        let (s, _) = math::sin_cos_turns(k as f64 / (4 * SEGMENTS) as f64);
        t[k] = math::round(s * 32768.0) as u16;
        k += 1;
    }
    t
}

/// Sine of a phase within the first quadrant, `within` in `0..=2^30`, as Q15
/// scaled to `0..=32768` (unsaturated).
#[inline]
fn quarter(within: u32) -> i32 {
    let idx = (within >> 22) as usize; // 8 bits of segment
    if idx >= SEGMENTS {
        return QUARTER_SINE[SEGMENTS] as i32;
    }
    let frac = ((within >> 6) & 0xffff) as i32; // 16 bits of position in the segment
    let a = QUARTER_SINE[idx] as i32;
    let b = QUARTER_SINE[idx + 1] as i32;
    a + (((b - a) * frac + 0x8000) >> 16)
}

#[inline]
fn sat16(x: i32) -> i16 {
    if x > i16::MAX as i32 {
        i16::MAX
    } else if x < i16::MIN as i32 {
        i16::MIN
    } else {
        x as i16
    }
}

/// `(sin, cos)` of a phase (turns · 2^32) in Q15, from the quarter-wave table.
///
/// Error ≤ 1.2 LSB against the exact value (see the module docs).
#[inline]
pub fn sin_cos_q15(phase: u32) -> (Q15, Q15) {
    const QUARTER: u32 = 1 << 30;
    let within = phase & (QUARTER - 1);
    let s = quarter(within);
    let c = quarter(QUARTER - within);
    let (s, c) = match phase >> 30 {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    };
    (sat16(s), sat16(c))
}

/// The phase step of a frequency: `frac(ω / 2π) · 2^64`, the fractional turns a
/// position advances, with 64 fractional bits (whole turns do not matter).
///
/// `omega` is in radians per position (a RoPE `inv_freq`). Exact to 2^-53 turn.
pub const fn phase_step(omega: f64) -> u64 {
    let t = omega / math::TAU;
    let f = t - math::floor(t);
    // f in [0, 1): scale to 2^64. `as` saturates at u64::MAX when f rounds to 1.
    (f * 18_446_744_073_709_551_616.0) as u64
}

/// The phase (turns · 2^32, rounded to nearest) at `position` for a frequency with
/// the given [`phase_step`]: exact wrapping integer arithmetic, rounded once.
#[inline]
pub const fn phase_at(step: u64, position: u32) -> u32 {
    ((position as u64).wrapping_mul(step).wrapping_add(1 << 31) >> 32) as u32
}

/// The phase of an angle given in radians (rounded to nearest, wrapping).
pub const fn phase_from_radians(angle: f64) -> u32 {
    let t = angle / math::TAU;
    let f = t - math::floor(t);
    let p = math::round(f * 4_294_967_296.0);
    if p >= 4_294_967_296.0 {
        0
    } else {
        p as u32
    }
}

/// `a · b` in Q15 with rounding, saturating (`-1 · -1` gives `32767`).
#[inline]
pub fn mul_q15(a: Q15, b: Q15) -> Q15 {
    sat16((a as i32 * b as i32 + (1 << 14)) >> 15)
}

/// Rotates the pair `(x0, x1)` by the angle whose Q15 cosine and sine are `c`, `s`:
/// `(x0·c − x1·s, x0·s + x1·c)`.
///
/// Each output is accumulated in an `i32` as a Q30 sum of two products
/// (saturating), then rounded to Q15 and saturated: no overflow for any input.
#[inline]
pub fn rotate_q15(x0: Q15, x1: Q15, c: Q15, s: Q15) -> (Q15, Q15) {
    let (x0, x1, c, s) = (x0 as i32, x1 as i32, c as i32, s as i32);
    let a = (x0 * c).saturating_sub(x1 * s);
    let b = (x0 * s).saturating_add(x1 * c);
    (
        sat16(a.saturating_add(1 << 14) >> 15),
        sat16(b.saturating_add(1 << 14) >> 15),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarter_table_endpoints() {
        assert_eq!(QUARTER_SINE[0], 0);
        assert_eq!(QUARTER_SINE[SEGMENTS], 32768);
        assert_eq!(QUARTER_SINE[SEGMENTS / 2], 23170); // sin 45° = 0.70710678 * 32768
    }

    /// Every 97th phase (about 44 million phases, every quadrant and segment).
    #[test]
    fn sin_cos_q15_within_bound() {
        let mut worst = 0.0f64;
        let mut phase: u32 = 0;
        loop {
            let (s, c) = sin_cos_q15(phase);
            let t = phase as f64 / 4_294_967_296.0;
            let (es, ec) = (t * core::f64::consts::TAU).sin_cos();
            let es = (es * 32768.0).min(32767.0);
            let ec = (ec * 32768.0).min(32767.0);
            worst = worst.max((s as f64 - es).abs()).max((c as f64 - ec).abs());
            match phase.checked_add(97) {
                Some(p) => phase = p,
                None => break,
            }
        }
        assert!(worst <= 1.2, "worst {worst} LSB");
    }

    #[test]
    fn phase_step_and_at() {
        // A quarter turn per position.
        let step = phase_step(core::f64::consts::FRAC_PI_2);
        assert_eq!(phase_at(step, 1), 1 << 30);
        assert_eq!(phase_at(step, 4), 0);
        assert_eq!(phase_at(step, 5), 1 << 30);
        assert_eq!(phase_from_radians(core::f64::consts::PI), 1 << 31);
        assert_eq!(phase_from_radians(-core::f64::consts::FRAC_PI_2), 3 << 30);
        // Long runs: the integer phase stays within 1 of the exact phase.
        let w = 0.749_894_209_332_455_8_f64;
        let step = phase_step(w);
        for p in (0..=65535u32).step_by(7) {
            let exact = (p as f64 * w / core::f64::consts::TAU).fract() * 4_294_967_296.0;
            let got = phase_at(step, p) as f64;
            let d = (got - exact).abs();
            let d = d.min(4_294_967_296.0 - d);
            assert!(d <= 2.0, "p {p}: {got} vs {exact}");
        }
    }

    #[test]
    fn rotation_saturates_and_rounds() {
        assert_eq!(mul_q15(-32768, -32768), 32767);
        assert_eq!(mul_q15(16384, 16384), 8192);
        // Rotating (-1, -1) by 45° would give |(0, -1.414)|: saturates, no overflow.
        let (c, s) = (23170, 23170);
        assert_eq!(rotate_q15(-32768, -32768, c, s), (0, -32768));
        assert_eq!(rotate_q15(32767, 32767, c, s), (0, 32767));
        assert_eq!(rotate_q15(12345, -321, 32767, 0), (12345, -321));
    }
}
