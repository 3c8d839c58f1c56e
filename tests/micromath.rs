//! Why the runtime does not use `micromath` for `exp` and `sqrt`: its
//! approximations against the runtime's functions, both measured against f64.
//!
//! The runtime needs `expf` in the softmax and SiLU (`num::exp::fast_expf`,
//! ≤ 1.5 ulp) and `sqrtf` in the norms (`libm::sqrtf`, correctly rounded, as
//! llama2.c's `run.c` links it); llama2.c's logits are reproduced bit for bit
//! with these. `micromath`'s `F32Ext::exp` and `F32Ext::sqrt` trade accuracy for
//! speed; this test measures how much (`cargo test --release --test micromath --
//! --nocapture` prints the figures the README quotes).

use microformer::num::exp::fast_expf;
use micromath::F32Ext;

/// `|got − want|` in units in the last place of `want` (as an f32).
fn ulps(got: f32, want: f64) -> f64 {
    let w = want as f32;
    let ulp = (f32::from_bits(w.to_bits() + 1) - w) as f64;
    (got as f64 - want).abs() / ulp
}

/// Every 97th f32 pattern in `lo..=hi` (both finite, same sign), plus the ends.
fn sweep(lo: f32, hi: f32) -> impl Iterator<Item = f32> {
    let (a, b) = if lo.to_bits() <= hi.to_bits() {
        (lo.to_bits(), hi.to_bits())
    } else {
        (hi.to_bits(), lo.to_bits())
    };
    (a..=b).step_by(97).map(f32::from_bits).chain([lo, hi])
}

#[test]
fn micromath_exp_and_sqrt_are_far_less_accurate_than_the_runtimes() {
    // exp on the softmax's range: scores minus their maximum, [−87, 0] (and SiLU's
    // −v for small v, inside it); relative error, in ulps.
    let (mut fast, mut micro) = (0.0f64, 0.0f64);
    for x in sweep(-0.0, -87.0) {
        let want = (x as f64).exp();
        fast = fast.max(ulps(fast_expf(x), want));
        micro = micro.max(ulps(F32Ext::exp(x), want));
    }
    // sqrt on the norms' range: mean squares from tiny to large.
    let (mut lib, mut micro_sqrt) = (0.0f64, 0.0f64);
    for x in sweep(1e-12, 1e12) {
        let want = (x as f64).sqrt();
        lib = lib.max(ulps(libm::sqrtf(x), want));
        micro_sqrt = micro_sqrt.max(ulps(F32Ext::sqrt(x), want));
    }
    println!(
        "exp on [-87, 0]: fast_expf {fast:.3} ulp, micromath {micro:.0} ulp; \
         sqrt on [1e-12, 1e12]: libm::sqrtf {lib:.3} ulp, micromath {micro_sqrt:.0} ulp"
    );
    // The runtime's bounds hold...
    assert!(fast <= 1.5, "fast_expf {fast} ulp");
    assert!(lib <= 0.5, "libm::sqrtf {lib} ulp");
    // ...and micromath's functions are outside them by orders of magnitude, which
    // would move logits far beyond the 1e-4 the Hugging Face fixtures allow.
    assert!(micro > 100.0 * fast, "micromath exp {micro} ulp");
    assert!(micro_sqrt > 100.0 * lib, "micromath sqrt {micro_sqrt} ulp");
}
