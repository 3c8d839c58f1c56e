//! RoPE frequencies and every Hugging Face scaling rule, in f64, as `const fn`.
//!
//! # Formula
//!
//! Rotary position embedding (Su et al., *RoFormer*, arXiv:2104.09864) rotates
//! pair `i` of a head (`i = 0..d/2`, `d` = the rotary dimension) at position
//! `p` by the angle `p·ω_i`, with the inverse frequencies
//!
//! ```text
//! ω_i = θ^(−2i/d)
//! ```
//!
//! and multiplies cos and sin by an *attention factor* `a` (1 unless a scaling
//! rule says otherwise). The scaling rules rewrite `ω_i` (and sometimes `a`)
//! exactly as Hugging Face transformers' `src/transformers/modeling_rope_utils.py`
//! (the `_compute_*_parameters` functions of transformers 5.x, the version that
//! made `tests/fixtures/tables.json`; the `default` rule now lives in each model's
//! `compute_default_rope_parameters`):
//!
//! | rule | `ω_i` | `a` |
//! |---|---|---|
//! | `default` | `1/θ^(2i/d)` | 1 |
//! | `linear` (position interpolation, kaiokendev; Chen et al. arXiv:2306.15595) | `ω_i / factor` | 1 |
//! | `dynamic` (NTK, bloc97/emozilla) | `1/θ'^(2i/d)`, `θ' = θ·(factor·L/M − (factor − 1))^(d/(d−2))` with `L = max(seq_len, M)`, `M` = `max_position_embeddings` | 1 |
//! | `yarn` (Peng et al. arXiv:2309.00071) | `ω_interp·(1 − e_i) + ω_extrap·e_i`, `ω_extrap = 1/θ^(2i/d)`, `ω_interp = ω_extrap/factor`, `e_i = 1 − clamp((i − lo)/(hi − lo), 0, 1)` | `attention_factor`, or `mscale(factor, mscale)/mscale(factor, mscale_all_dim)` when both are non-zero, or `mscale(factor, 1)`; `mscale(s, m) = 0.1·m·ln s + 1` (1 when `s ≤ 1`) |
//! | `llama3` (Meta Llama 3.1) | by wavelength `λ = 2π/ω_i`: `ω_i` when `λ < O/high`, `ω_i/factor` when `λ > O/low`, else `(1 − s)·ω_i/factor + s·ω_i` with `s = (O/λ − low)/(high − low)`; `O` = `original_max_position_embeddings` | 1 |
//! | `longrope` (Ding et al. arXiv:2402.13753; Phi-3) | `1/(f_i·θ^(2i/d))`, `f = long_factor` when `seq_len > O`, else `short_factor` | `attention_factor`, or 1 when `factor ≤ 1`, else `sqrt(1 + ln(factor)/ln O)`; `factor` defaults to `M/O` |
//!
//! YaRN's correction range: `dim(r) = d·ln(O/(2π·r)) / (2·ln θ)`,
//! `lo = max(⌊dim(beta_fast)⌋, 0)`, `hi = min(⌈dim(beta_slow)⌉, d − 1)` (no
//! floor/ceil when `truncate` is false); when `lo = hi`, `hi += 0.001`.
//!
//! `seq_len` is the sequence length the `dynamic` and `longrope` rules look at
//! (HF's `seq_len`, the largest position + 1); `0` means "not known", as HF's
//! `None`: `dynamic` then uses `M` and `longrope` the short factors. The other
//! rules ignore it.
//!
//! # Precision
//!
//! Hugging Face computes `ω` in float32; here everything is f64 through
//! [`crate::num::math`] (`pow` ≈ 16 ulp), so `ω_i` is within about 1e-15
//! relative of the exact value and within float32 rounding (< 1e-6 relative,
//! checked against every entry of `tables.json`) of Hugging Face's numbers.
//!
//! Every function is a `const fn`, so compile-time tables
//! ([`crate::pos::rope_const`]) can use every rule. No table is held here:
//! the tables and their memory are documented in [`crate::pos::rope`].

use crate::num::math;
use crate::Error;

/// YaRN parameters (Hugging Face `rope_type = "yarn"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YarnParams {
    /// Context extension factor `s` (> 0).
    pub factor: f64,
    /// Context length the model was pre-trained with (`O`).
    pub original_max_position_embeddings: usize,
    /// Rotations that bound the extrapolated (high-frequency) dims; HF default 32.
    /// Must be finite and > 0 (HF reads a 0 as "use the default"; give 32).
    pub beta_fast: f64,
    /// Rotations that bound the interpolated (low-frequency) dims; HF default 1.
    /// Must be finite and > 0.
    pub beta_slow: f64,
    /// DeepSeek `mscale` (numerator of the attention factor), used only when it
    /// and [`mscale_all_dim`](Self::mscale_all_dim) are both given and non-zero.
    pub mscale: Option<f64>,
    /// DeepSeek `mscale_all_dim` (denominator of the attention factor).
    pub mscale_all_dim: Option<f64>,
    /// Explicit attention factor; overrides the `mscale` rules.
    pub attention_factor: Option<f64>,
    /// Round the correction range outwards to whole dims (HF default `true`;
    /// gpt-oss sets `false`).
    pub truncate: bool,
}

impl YarnParams {
    /// YaRN with Hugging Face's defaults: `beta_fast = 32`, `beta_slow = 1`,
    /// `truncate = true`, no `mscale`, attention factor from `factor`.
    pub const fn new(factor: f64, original_max_position_embeddings: usize) -> Self {
        Self {
            factor,
            original_max_position_embeddings,
            beta_fast: 32.0,
            beta_slow: 1.0,
            mscale: None,
            mscale_all_dim: None,
            attention_factor: None,
            truncate: true,
        }
    }
}

/// Llama 3.1 frequency scaling (Hugging Face `rope_type = "llama3"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3Params {
    /// Division applied to the low frequencies (`8` for Llama 3.1).
    pub factor: f64,
    /// Wavelengths above `O / low_freq_factor` are divided by `factor` (`1`).
    pub low_freq_factor: f64,
    /// Wavelengths below `O / high_freq_factor` are kept (`4`); must exceed `low_freq_factor`.
    pub high_freq_factor: f64,
    /// Context length the model was pre-trained with (`O`, `8192` for Llama 3.1).
    pub original_max_position_embeddings: usize,
}

/// LongRoPE per-frequency factors (Hugging Face `rope_type = "longrope"`, Phi-3).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LongRopeParams<'a> {
    /// Per-pair divisors used while `seq_len <= original_max_position_embeddings`
    /// (`rotary_dim / 2` entries).
    pub short_factor: &'a [f64],
    /// Per-pair divisors used when `seq_len > original_max_position_embeddings`.
    pub long_factor: &'a [f64],
    /// Context length the model was pre-trained with (`O`).
    pub original_max_position_embeddings: usize,
    /// Extension factor for the attention factor; `None`: `max_position_embeddings / O`.
    pub factor: Option<f64>,
    /// Explicit attention factor; `None`: `sqrt(1 + ln(factor)/ln O)` (1 when `factor <= 1`).
    pub attention_factor: Option<f64>,
}

/// A RoPE scaling rule, one per Hugging Face `rope_type`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling<'a> {
    /// Plain RoPE, `ω_i = θ^(−2i/d)`.
    Default,
    /// Position interpolation: `ω_i / factor`.
    Linear {
        /// Interpolation factor (> 0).
        factor: f64,
    },
    /// Dynamic NTK: the base grows with the sequence length past `max_position_embeddings`.
    Dynamic {
        /// Scaling factor (> 0).
        factor: f64,
    },
    /// YaRN.
    Yarn(YarnParams),
    /// Llama 3.1.
    Llama3(Llama3Params),
    /// LongRoPE.
    LongRope(LongRopeParams<'a>),
}

impl RopeScaling<'_> {
    /// The Hugging Face `rope_type` string of this rule.
    pub const fn name(&self) -> &'static str {
        match self {
            RopeScaling::Default => "default",
            RopeScaling::Linear { .. } => "linear",
            RopeScaling::Dynamic { .. } => "dynamic",
            RopeScaling::Yarn(_) => "yarn",
            RopeScaling::Llama3(_) => "llama3",
            RopeScaling::LongRope(_) => "longrope",
        }
    }
}

/// Everything that defines a RoPE: base, rotary dimension, context and scaling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeConfig<'a> {
    /// Base `θ` (`rope_theta`, > 1).
    pub theta: f64,
    /// Rotated dims per head `d` (even, > 0): `head_dim · partial_rotary_factor`.
    pub rotary_dim: usize,
    /// `max_position_embeddings` (`M`), used by `dynamic` and `longrope`.
    pub max_position_embeddings: usize,
    /// The scaling rule.
    pub scaling: RopeScaling<'a>,
}

/// `true` when `x` is finite and strictly positive.
const fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

/// Checks a list of LongRoPE factors.
const fn check_factors(list: &[f64], pairs: usize) -> Result<(), Error> {
    if list.len() != pairs {
        return Err(Error::FactorCountMismatch {
            expected: pairs,
            got: list.len(),
        });
    }
    let mut k = 0;
    while k < list.len() {
        if !positive(list[k]) {
            return Err(Error::InvalidFactor);
        }
        k += 1;
    }
    Ok(())
}

/// Hugging Face's YaRN `get_mscale(scale, mscale)`.
const fn yarn_mscale(scale: f64, mscale: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * mscale * math::ln(scale) + 1.0
    }
}

/// `⌈x⌉` from [`math::floor`].
const fn ceil(x: f64) -> f64 {
    -math::floor(-x)
}

/// YaRN's `find_correction_dim`: the (fractional) dim that makes `rotations`
/// turns over `original` positions.
const fn yarn_correction_dim(rotations: f64, dim: f64, theta: f64, original: f64) -> f64 {
    (dim * math::ln(original / (rotations * math::TAU))) / (2.0 * math::ln(theta))
}

impl<'a> RopeConfig<'a> {
    /// Plain RoPE (no scaling) with base `theta`, `rotary_dim` rotated dims and
    /// `max_position_embeddings`.
    pub const fn new(theta: f64, rotary_dim: usize, max_position_embeddings: usize) -> Self {
        Self {
            theta,
            rotary_dim,
            max_position_embeddings,
            scaling: RopeScaling::Default,
        }
    }

    /// The same configuration with another scaling rule.
    pub const fn with_scaling(self, scaling: RopeScaling<'a>) -> Self {
        Self {
            theta: self.theta,
            rotary_dim: self.rotary_dim,
            max_position_embeddings: self.max_position_embeddings,
            scaling,
        }
    }

    /// Checks every parameter; the other methods assume a valid configuration.
    ///
    /// Errors: [`Error::ZeroDimension`] (rotary dim, `max_position_embeddings`
    /// or an `original_max_position_embeddings` is 0), [`Error::OddDimension`],
    /// [`Error::InvalidParameter`] (`θ <= 1` or not finite; `dynamic` with
    /// `rotary_dim = 2`, where HF divides by `d − 2 = 0`; YaRN `beta_*` not
    /// finite and > 0, `mscale*` negative or not finite; Llama 3
    /// `low_freq_factor` not finite and > 0, `high_freq_factor <= low_freq_factor`;
    /// LongRoPE `O = 1` when its default attention factor needs `ln O`),
    /// [`Error::InvalidFactor`] (a factor, per-pair factor or attention factor
    /// that is not finite and > 0), [`Error::FactorCountMismatch`] (LongRoPE
    /// lists not `rotary_dim / 2` long).
    pub const fn validate(&self) -> Result<(), Error> {
        if self.rotary_dim == 0 || self.max_position_embeddings == 0 {
            return Err(Error::ZeroDimension);
        }
        if self.rotary_dim % 2 != 0 {
            return Err(Error::OddDimension {
                dim: self.rotary_dim,
            });
        }
        if !(self.theta.is_finite() && self.theta > 1.0) {
            return Err(Error::InvalidParameter);
        }
        match &self.scaling {
            RopeScaling::Default => Ok(()),
            RopeScaling::Linear { factor } => {
                if positive(*factor) {
                    Ok(())
                } else {
                    Err(Error::InvalidFactor)
                }
            }
            RopeScaling::Dynamic { factor } => {
                if !positive(*factor) {
                    Err(Error::InvalidFactor)
                } else if self.rotary_dim == 2 {
                    Err(Error::InvalidParameter)
                } else {
                    Ok(())
                }
            }
            RopeScaling::Yarn(y) => {
                if !positive(y.factor) {
                    return Err(Error::InvalidFactor);
                }
                if y.original_max_position_embeddings == 0 {
                    return Err(Error::ZeroDimension);
                }
                if !positive(y.beta_fast) || !positive(y.beta_slow) {
                    return Err(Error::InvalidParameter);
                }
                if let Some(m) = y.mscale {
                    if !(m.is_finite() && m >= 0.0) {
                        return Err(Error::InvalidParameter);
                    }
                }
                if let Some(m) = y.mscale_all_dim {
                    if !(m.is_finite() && m >= 0.0) {
                        return Err(Error::InvalidParameter);
                    }
                }
                if let Some(a) = y.attention_factor {
                    if !positive(a) {
                        return Err(Error::InvalidFactor);
                    }
                }
                Ok(())
            }
            RopeScaling::Llama3(l) => {
                if !positive(l.factor) {
                    return Err(Error::InvalidFactor);
                }
                if l.original_max_position_embeddings == 0 {
                    return Err(Error::ZeroDimension);
                }
                if !positive(l.low_freq_factor)
                    || !l.high_freq_factor.is_finite()
                    || l.high_freq_factor <= l.low_freq_factor
                {
                    return Err(Error::InvalidParameter);
                }
                Ok(())
            }
            RopeScaling::LongRope(l) => {
                let pairs = self.pairs();
                if let Err(e) = check_factors(l.short_factor, pairs) {
                    return Err(e);
                }
                if let Err(e) = check_factors(l.long_factor, pairs) {
                    return Err(e);
                }
                if l.original_max_position_embeddings == 0 {
                    return Err(Error::ZeroDimension);
                }
                if let Some(f) = l.factor {
                    if !positive(f) {
                        return Err(Error::InvalidFactor);
                    }
                }
                match l.attention_factor {
                    Some(a) => {
                        if !positive(a) {
                            return Err(Error::InvalidFactor);
                        }
                    }
                    None => {
                        if self.longrope_factor(l) > 1.0 && l.original_max_position_embeddings == 1
                        {
                            return Err(Error::InvalidParameter);
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Number of rotated pairs, `rotary_dim / 2`.
    pub const fn pairs(&self) -> usize {
        self.rotary_dim / 2
    }

    /// LongRoPE's effective `factor`: the given one, else `M / O`.
    const fn longrope_factor(&self, l: &LongRopeParams<'_>) -> f64 {
        match l.factor {
            Some(f) => f,
            None => self.max_position_embeddings as f64 / l.original_max_position_embeddings as f64,
        }
    }

    /// YaRN's correction range `(lo, hi)` (after clamping to `[0, d − 1]` and
    /// the `lo = hi` guard), as Hugging Face's `find_correction_range`.
    pub const fn yarn_correction_range(&self, y: &YarnParams) -> (f64, f64) {
        let dim = self.rotary_dim as f64;
        let original = y.original_max_position_embeddings as f64;
        let mut lo = yarn_correction_dim(y.beta_fast, dim, self.theta, original);
        let mut hi = yarn_correction_dim(y.beta_slow, dim, self.theta, original);
        if y.truncate {
            lo = math::floor(lo);
            hi = ceil(hi);
        }
        if lo < 0.0 {
            lo = 0.0;
        }
        if hi > dim - 1.0 {
            hi = dim - 1.0;
        }
        if lo == hi {
            hi += 0.001;
        }
        (lo, hi)
    }

    /// Inverse frequency `ω_i` (radians per position) of pair `i` (`0..pairs`)
    /// for sequence length `seq_len`, exactly as Hugging Face's
    /// `modeling_rope_utils.py` but in f64.
    ///
    /// Assumes a configuration that passed [`validate`](Self::validate); returns
    /// NaN for `i >= pairs` (never panics).
    pub const fn inv_freq(&self, i: usize, seq_len: usize) -> f64 {
        if i >= self.pairs() {
            return f64::NAN;
        }
        let dim = self.rotary_dim as f64;
        // HF: torch.arange(0, dim, 2) / dim
        let exponent = (2 * i) as f64 / dim;
        match &self.scaling {
            RopeScaling::Default => 1.0 / math::pow(self.theta, exponent),
            RopeScaling::Linear { factor } => 1.0 / math::pow(self.theta, exponent) / *factor,
            RopeScaling::Dynamic { factor } => {
                let m = self.max_position_embeddings;
                let len = if seq_len > m { seq_len } else { m };
                let grow = *factor * len as f64 / m as f64 - (*factor - 1.0);
                let base = self.theta * math::pow(grow, dim / (dim - 2.0));
                1.0 / math::pow(base, exponent)
            }
            RopeScaling::Yarn(y) => {
                let pos_freq = math::pow(self.theta, exponent);
                let extrapolation = 1.0 / pos_freq;
                let interpolation = 1.0 / (y.factor * pos_freq);
                let (lo, hi) = self.yarn_correction_range(y);
                let mut ramp = (i as f64 - lo) / (hi - lo);
                if ramp < 0.0 {
                    ramp = 0.0;
                }
                if ramp > 1.0 {
                    ramp = 1.0;
                }
                let extrapolation_factor = 1.0 - ramp;
                interpolation * (1.0 - extrapolation_factor) + extrapolation * extrapolation_factor
            }
            RopeScaling::Llama3(l) => {
                let inv = 1.0 / math::pow(self.theta, exponent);
                let old = l.original_max_position_embeddings as f64;
                let low_wavelen = old / l.low_freq_factor;
                let high_wavelen = old / l.high_freq_factor;
                let wavelen = math::TAU / inv;
                let scaled = if wavelen > low_wavelen {
                    inv / l.factor
                } else {
                    inv
                };
                // HF: ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
                if wavelen >= high_wavelen && wavelen <= low_wavelen {
                    let smooth = (old / wavelen - l.low_freq_factor)
                        / (l.high_freq_factor - l.low_freq_factor);
                    (1.0 - smooth) * scaled / l.factor + smooth * scaled
                } else {
                    scaled
                }
            }
            RopeScaling::LongRope(l) => {
                let list = if seq_len > l.original_max_position_embeddings {
                    l.long_factor
                } else {
                    l.short_factor
                };
                if i >= list.len() {
                    return f64::NAN;
                }
                1.0 / (list[i] * math::pow(self.theta, exponent))
            }
        }
    }

    /// Writes `ω_0 .. ω_{pairs−1}` into `out[..pairs]`.
    ///
    /// Errors: the configuration's [`validate`](Self::validate) error, or
    /// [`Error::BufferTooSmall`] when `out.len() < pairs`.
    pub fn inv_freqs(&self, seq_len: usize, out: &mut [f64]) -> Result<(), Error> {
        self.validate()?;
        let pairs = self.pairs();
        let got = out.len();
        let out = out
            .get_mut(..pairs)
            .ok_or(Error::BufferTooSmall { needed: pairs, got })?;
        for (i, w) in out.iter_mut().enumerate() {
            *w = self.inv_freq(i, seq_len);
        }
        Ok(())
    }

    /// The factor `a` that multiplies cos and sin (Hugging Face's
    /// `attention_scaling`) for sequence length `seq_len`.
    pub const fn attention_factor(&self, seq_len: usize) -> f64 {
        let _ = seq_len; // no HF rule makes it depend on seq_len
        match &self.scaling {
            RopeScaling::Default
            | RopeScaling::Linear { .. }
            | RopeScaling::Dynamic { .. }
            | RopeScaling::Llama3(_) => 1.0,
            RopeScaling::Yarn(y) => match y.attention_factor {
                Some(a) => a,
                None => match (y.mscale, y.mscale_all_dim) {
                    // HF: `if mscale and mscale_all_dim` (0 is falsy)
                    (Some(m), Some(md)) if m != 0.0 && md != 0.0 => {
                        yarn_mscale(y.factor, m) / yarn_mscale(y.factor, md)
                    }
                    _ => yarn_mscale(y.factor, 1.0),
                },
            },
            RopeScaling::LongRope(l) => match l.attention_factor {
                Some(a) => a,
                None => {
                    let factor = self.longrope_factor(l);
                    if factor <= 1.0 {
                        1.0
                    } else {
                        math::sqrt(
                            1.0 + math::ln(factor)
                                / math::ln(l.original_max_position_embeddings as f64),
                        )
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f64, b: f64) -> f64 {
        ((a - b) / b).abs()
    }

    #[test]
    fn default_and_linear_match_formula() {
        let cfg = RopeConfig::new(10_000.0, 64, 2048);
        assert_eq!(cfg.validate(), Ok(()));
        assert_eq!(cfg.pairs(), 32);
        for i in 0..32 {
            let want = 10_000f64.powf(-((2 * i) as f64) / 64.0);
            assert!(rel(cfg.inv_freq(i, 0), want) < 1e-14, "{i}");
        }
        assert_eq!(cfg.inv_freq(0, 0), 1.0);
        assert!(cfg.inv_freq(32, 0).is_nan());
        let lin = cfg.with_scaling(RopeScaling::Linear { factor: 4.0 });
        for i in 0..32 {
            assert_eq!(lin.inv_freq(i, 0), cfg.inv_freq(i, 0) / 4.0);
        }
        assert_eq!(lin.attention_factor(0), 1.0);
        assert_eq!(lin.scaling.name(), "linear");
    }

    #[test]
    fn dynamic_grows_base_only_past_max_pos() {
        let cfg =
            RopeConfig::new(10_000.0, 64, 512).with_scaling(RopeScaling::Dynamic { factor: 2.0 });
        let plain = RopeConfig::new(10_000.0, 64, 512);
        for i in 0..32 {
            assert_eq!(cfg.inv_freq(i, 0), plain.inv_freq(i, 0));
            assert_eq!(cfg.inv_freq(i, 512), plain.inv_freq(i, 0));
            // base' = 1e4 · (2·3000/512 − 1)^(64/62)
            let base = 10_000.0 * (2.0 * 3000.0 / 512.0 - 1.0f64).powf(64.0 / 62.0);
            let want = base.powf(-((2 * i) as f64) / 64.0);
            assert!(rel(cfg.inv_freq(i, 3000), want) < 1e-13, "{i}");
        }
        let two =
            RopeConfig::new(10_000.0, 2, 512).with_scaling(RopeScaling::Dynamic { factor: 2.0 });
        assert_eq!(two.validate(), Err(Error::InvalidParameter));
    }

    #[test]
    fn yarn_range_ramp_and_attention() {
        // d = 64, θ = 1e4, O = 512: dim(32) = 3.247 -> 3, dim(1) = 15.29 -> 16.
        let y = YarnParams::new(8.0, 512);
        let cfg = RopeConfig::new(10_000.0, 64, 4096).with_scaling(RopeScaling::Yarn(y));
        assert_eq!(cfg.validate(), Ok(()));
        assert_eq!(cfg.yarn_correction_range(&y), (3.0, 16.0));
        let plain = RopeConfig::new(10_000.0, 64, 4096);
        for i in 0..32 {
            let e = plain.inv_freq(i, 0);
            let ramp = ((i as f64 - 3.0) / 13.0).clamp(0.0, 1.0);
            let want = e / 8.0 * ramp + e * (1.0 - ramp);
            assert!(rel(cfg.inv_freq(i, 0), want) < 1e-15, "{i}");
        }
        assert!((cfg.attention_factor(0) - (0.1 * 8f64.ln() + 1.0)).abs() < 1e-15);
        // truncate = false keeps the fractional range
        let y2 = YarnParams {
            truncate: false,
            ..y
        };
        let (lo, hi) = cfg.yarn_correction_range(&y2);
        let d = |r: f64| 64.0 * (512.0 / (r * std::f64::consts::TAU)).ln() / (2.0 * 10_000f64.ln());
        assert!((lo - d(32.0)).abs() < 1e-13 && (hi - d(1.0)).abs() < 1e-13);
        // DeepSeek mscale: equal mscales give 1; zero mscale falls back to get_mscale(factor)
        let ds = YarnParams {
            mscale: Some(0.707),
            mscale_all_dim: Some(1.0),
            ..y
        };
        let c = cfg.with_scaling(RopeScaling::Yarn(ds));
        let want = (0.1 * 0.707 * 8f64.ln() + 1.0) / (0.1 * 8f64.ln() + 1.0);
        assert!((c.attention_factor(0) - want).abs() < 1e-15);
        let z = YarnParams {
            mscale: Some(0.0),
            mscale_all_dim: Some(1.0),
            ..y
        };
        assert_eq!(
            cfg.with_scaling(RopeScaling::Yarn(z)).attention_factor(0),
            cfg.attention_factor(0)
        );
        let given = YarnParams {
            attention_factor: Some(0.5),
            ..ds
        };
        assert_eq!(
            cfg.with_scaling(RopeScaling::Yarn(given))
                .attention_factor(0),
            0.5
        );
        // factor <= 1: get_mscale = 1
        let one = YarnParams::new(1.0, 512);
        assert_eq!(
            cfg.with_scaling(RopeScaling::Yarn(one)).attention_factor(0),
            1.0
        );
        let bad = YarnParams {
            beta_fast: 0.0,
            ..y
        };
        assert_eq!(
            cfg.with_scaling(RopeScaling::Yarn(bad)).validate(),
            Err(Error::InvalidParameter)
        );
        let bad = YarnParams {
            mscale: Some(-1.0),
            ..y
        };
        assert_eq!(
            cfg.with_scaling(RopeScaling::Yarn(bad)).validate(),
            Err(Error::InvalidParameter)
        );
        let bad = YarnParams::new(8.0, 0);
        assert_eq!(
            cfg.with_scaling(RopeScaling::Yarn(bad)).validate(),
            Err(Error::ZeroDimension)
        );
    }

    #[test]
    fn llama3_bands() {
        let l = Llama3Params {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 1024,
        };
        let cfg = RopeConfig::new(500_000.0, 128, 8192).with_scaling(RopeScaling::Llama3(l));
        assert_eq!(cfg.validate(), Ok(()));
        let plain = RopeConfig::new(500_000.0, 128, 8192);
        let (mut high, mut mid, mut low) = (0, 0, 0);
        for i in 0..64 {
            let w = plain.inv_freq(i, 0);
            let wl = std::f64::consts::TAU / w;
            let got = cfg.inv_freq(i, 0);
            if wl < 256.0 {
                assert_eq!(got, w);
                high += 1;
            } else if wl > 1024.0 {
                assert_eq!(got, w / 8.0);
                low += 1;
            } else {
                let s = (1024.0 / wl - 1.0) / 3.0;
                assert!(rel(got, (1.0 - s) * w / 8.0 + s * w) < 1e-15);
                mid += 1;
            }
        }
        assert!(high > 0 && mid > 0 && low > 0, "{high} {mid} {low}");
        let bad = Llama3Params {
            low_freq_factor: 4.0,
            ..l
        };
        assert_eq!(
            cfg.with_scaling(RopeScaling::Llama3(bad)).validate(),
            Err(Error::InvalidParameter)
        );
    }

    #[test]
    fn longrope_switch_and_attention() {
        let short = [1.0, 1.5, 2.0, 2.5];
        let long = [1.0, 4.0, 8.0, 16.0];
        let l = LongRopeParams {
            short_factor: &short,
            long_factor: &long,
            original_max_position_embeddings: 1024,
            factor: None,
            attention_factor: None,
        };
        let cfg = RopeConfig::new(10_000.0, 8, 4096).with_scaling(RopeScaling::LongRope(l));
        assert_eq!(cfg.validate(), Ok(()));
        let plain = RopeConfig::new(10_000.0, 8, 4096);
        for i in 0..4 {
            assert!(rel(cfg.inv_freq(i, 0), plain.inv_freq(i, 0) / short[i]) < 1e-15);
            assert_eq!(cfg.inv_freq(i, 1024), cfg.inv_freq(i, 0));
            assert!(rel(cfg.inv_freq(i, 1025), plain.inv_freq(i, 0) / long[i]) < 1e-15);
        }
        // factor = 4096/1024 = 4: sqrt(1 + ln 4 / ln 1024) = sqrt(1.2)
        assert!((cfg.attention_factor(0) - 1.2f64.sqrt()).abs() < 1e-15);
        // factor <= 1: attention factor 1 (HF rule)
        let small = RopeConfig::new(10_000.0, 8, 1024).with_scaling(RopeScaling::LongRope(l));
        assert_eq!(small.attention_factor(0), 1.0);
        let f = LongRopeParams {
            factor: Some(0.5),
            ..l
        };
        assert_eq!(
            cfg.with_scaling(RopeScaling::LongRope(f))
                .attention_factor(0),
            1.0
        );
        let wrong = LongRopeParams {
            long_factor: &long[..3],
            ..l
        };
        assert_eq!(
            cfg.with_scaling(RopeScaling::LongRope(wrong)).validate(),
            Err(Error::FactorCountMismatch {
                expected: 4,
                got: 3
            })
        );
        let neg = [1.0, -1.0, 1.0, 1.0];
        let bad = LongRopeParams {
            short_factor: &neg,
            ..l
        };
        assert_eq!(
            cfg.with_scaling(RopeScaling::LongRope(bad)).validate(),
            Err(Error::InvalidFactor)
        );
        let o1 = LongRopeParams {
            original_max_position_embeddings: 1,
            ..l
        };
        assert_eq!(
            cfg.with_scaling(RopeScaling::LongRope(o1)).validate(),
            Err(Error::InvalidParameter)
        );
    }

    #[test]
    fn validation_errors() {
        assert_eq!(
            RopeConfig::new(1e4, 0, 8).validate(),
            Err(Error::ZeroDimension)
        );
        assert_eq!(
            RopeConfig::new(1e4, 7, 8).validate(),
            Err(Error::OddDimension { dim: 7 })
        );
        assert_eq!(
            RopeConfig::new(1.0, 8, 8).validate(),
            Err(Error::InvalidParameter)
        );
        assert_eq!(
            RopeConfig::new(f64::NAN, 8, 8).validate(),
            Err(Error::InvalidParameter)
        );
        assert_eq!(
            RopeConfig::new(f64::INFINITY, 8, 8).validate(),
            Err(Error::InvalidParameter)
        );
        assert_eq!(
            RopeConfig::new(1e4, 8, 0).validate(),
            Err(Error::ZeroDimension)
        );
        let c = RopeConfig::new(1e4, 8, 8);
        for f in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(
                c.with_scaling(RopeScaling::Linear { factor: f }).validate(),
                Err(Error::InvalidFactor)
            );
            assert_eq!(
                c.with_scaling(RopeScaling::Dynamic { factor: f })
                    .validate(),
                Err(Error::InvalidFactor)
            );
            let y = YarnParams::new(f, 4);
            assert_eq!(
                c.with_scaling(RopeScaling::Yarn(y)).validate(),
                Err(Error::InvalidFactor)
            );
        }
        let mut out = [0.0; 3];
        assert_eq!(
            c.inv_freqs(0, &mut out),
            Err(Error::BufferTooSmall { needed: 4, got: 3 })
        );
        let mut out = [0.0; 5];
        assert_eq!(c.inv_freqs(0, &mut out), Ok(()));
        assert_eq!(out[0], 1.0);
        assert_eq!(out[4], 0.0);
    }

    /// Every rule is usable at compile time.
    #[test]
    fn const_evaluation() {
        const SHORT: [f64; 2] = [1.0, 2.0];
        const CFG: RopeConfig<'static> =
            RopeConfig::new(10_000.0, 4, 64).with_scaling(RopeScaling::LongRope(LongRopeParams {
                short_factor: &SHORT,
                long_factor: &SHORT,
                original_max_position_embeddings: 16,
                factor: None,
                attention_factor: None,
            }));
        const W: f64 = CFG.inv_freq(1, 0);
        const A: f64 = CFG.attention_factor(0);
        const { assert!(CFG.validate().is_ok()) };
        assert_eq!(W, CFG.inv_freq(1, 0));
        assert!(rel(W, 0.01 / 2.0) < 1e-15);
        assert!(rel(A, (1.0 + 4f64.ln() / 16f64.ln()).sqrt()) < 1e-15);
    }
}
