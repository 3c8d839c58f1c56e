//! Unrolled f32 building blocks for the hot loops (matrix-vector products,
//! attention), written out statement by statement so that they unroll at any
//! optimisation level (`opt-level = "s"` firmware profiles do not unroll loops).
//!
//! Each performs the plain sequential operations of the loop it replaces, in the
//! same order (no reassociation, no fused multiply-add: Rust never contracts
//! `a + b·c`), so results are bit-identical to that loop.

/// `s + w[0]·x[0] + w[1]·x[1] + … + w[7]·x[7]`, summed left to right.
#[inline(always)]
pub fn dot8(mut s: f32, w: &[f32; 8], x: &[f32; 8]) -> f32 {
    s += w[0] * x[0];
    s += w[1] * x[1];
    s += w[2] * x[2];
    s += w[3] * x[3];
    s += w[4] * x[4];
    s += w[5] * x[5];
    s += w[6] * x[6];
    s += w[7] * x[7];
    s
}

/// `w[0]·x[0] + w[1]·x[1] + … + w[7]·x[7]`, summed left to right: [`dot8`] from
/// `0.0` without the first addition (the same bits, except that a zero result
/// may have the other sign).
#[inline(always)]
pub fn dot8_first(w: &[f32; 8], x: &[f32; 8]) -> f32 {
    let mut s = w[0] * x[0];
    s += w[1] * x[1];
    s += w[2] * x[2];
    s += w[3] * x[3];
    s += w[4] * x[4];
    s += w[5] * x[5];
    s += w[6] * x[6];
    s += w[7] * x[7];
    s
}

/// `acc[d] += a·v[d]` for `d` in `0..8`.
#[inline(always)]
pub fn axpy8(acc: &mut [f32; 8], a: f32, v: &[f32; 8]) {
    acc[0] += a * v[0];
    acc[1] += a * v[1];
    acc[2] += a * v[2];
    acc[3] += a * v[3];
    acc[4] += a * v[4];
    acc[5] += a * v[5];
    acc[6] += a * v[6];
    acc[7] += a * v[7];
}

#[cfg(test)]
mod tests {
    use super::*;
    use microformer_testkit::XorShift32;

    #[test]
    fn equal_to_the_loops_bit_for_bit() {
        let mut rng = XorShift32(0x1234_5678);
        let mut rnd = || rng.centered_unit();
        for _ in 0..1000 {
            let w: [f32; 8] = core::array::from_fn(|_| rnd());
            let x: [f32; 8] = core::array::from_fn(|_| rnd());
            let s0 = rnd();
            let mut s = s0;
            for k in 0..8 {
                s += w[k] * x[k];
            }
            assert_eq!(dot8(s0, &w, &x).to_bits(), s.to_bits());
            let mut z = 0.0f32;
            for k in 0..8 {
                z += w[k] * x[k];
            }
            assert_eq!(dot8_first(&w, &x), z);
            let mut acc: [f32; 8] = core::array::from_fn(|_| rnd());
            let mut want = acc;
            for k in 0..8 {
                want[k] += s0 * x[k];
            }
            axpy8(&mut acc, s0, &x);
            assert_eq!(acc.map(f32::to_bits), want.map(f32::to_bits));
        }
    }
}
