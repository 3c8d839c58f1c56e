//! Norms and activations of the forward step, each as `run.c` or PyTorch
//! computes it in f32.

/// `a += b`.
#[inline]
pub(crate) fn add(a: &mut [f32], b: &[f32]) {
    for (x, &y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// `1/sqrtf(Σx²/n + eps)`, as `run.c`.
#[inline]
fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let mut ss = 0.0f32;
    for &v in x {
        ss += v * v;
    }
    ss /= x.len() as f32;
    ss += eps;
    1.0 / libm::sqrtf(ss)
}

/// `o = w · (ss · x)`, as `run.c`'s `rmsnorm`.
pub fn rmsnorm(o: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
    let ss = rms_scale(x, eps);
    for ((o, &xv), &wv) in o.iter_mut().zip(x).zip(weight) {
        *o = wv * (ss * xv);
    }
}

/// [`rmsnorm`] with the output over the input.
pub fn rmsnorm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    let ss = rms_scale(x, eps);
    for (xv, &wv) in x.iter_mut().zip(weight) {
        *xv = wv * (ss * *xv);
    }
}

/// LayerNorm's `(mean, 1/sqrtf(var + eps))` of `x`: two passes in f32, the
/// biased variance `Σ(x − mean)²/n` (PyTorch's `layer_norm`).
#[inline]
fn moments(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mut sum = 0.0f32;
    for &v in x {
        sum += v;
    }
    let mean = sum / n;
    let mut ss = 0.0f32;
    for &v in x {
        let d = v - mean;
        ss += d * d;
    }
    (mean, 1.0 / libm::sqrtf(ss / n + eps))
}

/// LayerNorm `o = (x − mean)·rstd·w + b` (`b` absent: no bias, as MPT), in
/// PyTorch's CPU order `(x·rstd + (−rstd·mean))·w + b`.
pub fn layernorm(o: &mut [f32], x: &[f32], weight: &[f32], bias: Option<&[f32]>, eps: f32) {
    let (mean, rstd) = moments(x, eps);
    let shift = -rstd * mean;
    for ((o, &xv), &wv) in o.iter_mut().zip(x).zip(weight) {
        *o = (xv * rstd + shift) * wv;
    }
    if let Some(b) = bias {
        add(o, b);
    }
}

/// [`layernorm`] with the output over the input.
pub fn layernorm_in_place(x: &mut [f32], weight: &[f32], bias: Option<&[f32]>, eps: f32) {
    let (mean, rstd) = moments(x, eps);
    let shift = -rstd * mean;
    for (xv, &wv) in x.iter_mut().zip(weight) {
        *xv = (*xv * rstd + shift) * wv;
    }
    if let Some(b) = bias {
        add(x, b);
    }
}

/// `√(2/π)` in f32.
const SQRT_2_OVER_PI: f32 = 0.797_884_6;

/// GELU, tanh approximation: `½x(1 + tanh(√(2/π)(x + 0.044715x³)))` (Hugging
/// Face `gelu_new`/`gelu_pytorch_tanh`/`gelu_fast`, BLOOM's `bloom_gelu_forward`).
pub fn gelu_tanh(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::tanhf(SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)))
}

/// GELU, exact: `½x(1 + erf(x/√2))` (PyTorch `gelu`, Hugging Face `gelu`).
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::erff(x * core::f32::consts::FRAC_1_SQRT_2))
}

/// SiLU as `run.c`'s SwiGLU: `v·(1/(1 + expf(−v)))`, with
/// [`crate::num::exp::step_expf`] (the fast table `expf`, or glibc's with the
/// `exact` feature).
#[inline]
pub fn silu(v: f32) -> f32 {
    v * (1.0 / (1.0 + crate::num::exp::step_expf(-v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rmsnorm_formula() {
        let x = [3.0f32, 4.0];
        let mut o = [0.0; 2];
        rmsnorm(&mut o, &x, &[1.0, 2.0], 0.0);
        let s = 1.0 / (12.5f32).sqrt();
        assert_eq!(o, [3.0 * s, 2.0 * (s * 4.0)]);
    }
}
