//! Perplexity over windows of a token stream: what the extrapolation study
//! measures, on the host and on the device with the same code.
//!
//! The stream is cut into consecutive, non-overlapping chunks of `window − 1`
//! tokens (the last may be shorter); each window is BOS followed by its chunk,
//! run from position 0, and its `len(chunk)` next-token predictions are scored:
//! from BOS predict `chunk[0]`, …, from `chunk[n − 2]` predict `chunk[n − 1]`.
//! The negative log-likelihood of a prediction is `−ln softmax(logits)[target]`,
//! from the f32 logits as `ln Σ exp(l − max) − (l_target − max)`: each term's
//! `exp` in f32 (`libm::expf`, within 1 ulp; the FPU does it on a Cortex-M4F, where
//! an f64 `exp` per vocabulary entry in software would cost more than the forward
//! pass), their sum, the `ln` and the difference in f64;
//! [`Perplexity::nll`] is their mean and [`Perplexity::perplexity`] its `exp`.
//! The trainer in `train/eval.py` follows the same definition.

use crate::model::Session;
use crate::Error;

/// `−ln softmax(logits)[target]`: the terms `exp(l − max)` in f32, summed and
/// logged in f64 (relative error of the sum within about 2⁻²³ of its f64 value).
///
/// Errors: [`Error::TokenOutOfRange`] for a target outside the logits,
/// [`Error::InvalidParameter`] for a non-finite logit.
pub fn nll(logits: &[f32], target: u32) -> Result<f64, Error> {
    let t = *logits.get(target as usize).ok_or(Error::TokenOutOfRange {
        token: target,
        vocab_size: logits.len(),
    })?;
    let mut max = f32::NEG_INFINITY;
    for &l in logits {
        if !l.is_finite() {
            return Err(Error::InvalidParameter);
        }
        max = max.max(l);
    }
    let mut sum = 0f64;
    for &l in logits {
        sum += f64::from(libm::expf(l - max));
    }
    Ok(libm::log(sum) - (f64::from(t) - f64::from(max)))
}

/// The chunks of `tokens` for windows of `window` positions (`window − 1`
/// tokens each after BOS). `window` must be at least 2 (else no chunk).
pub fn chunks(tokens: &[u32], window: usize) -> impl Iterator<Item = &[u32]> {
    let size = window.saturating_sub(1);
    let tokens = if size == 0 { &tokens[..0] } else { tokens };
    tokens.chunks(size.max(1))
}

/// The running sums of a perplexity measurement.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Perplexity {
    sum: f64,
    tokens: usize,
    windows: usize,
}

impl Perplexity {
    /// No window scored yet.
    pub const fn new() -> Self {
        Self {
            sum: 0.0,
            tokens: 0,
            windows: 0,
        }
    }

    /// Scores one window: the session is reset, then fed `bos` and `chunk`
    /// except its last token, each step scoring the next token.
    ///
    /// Errors: the session's (a chunk longer than its context:
    /// [`Error::ContextFull`]; a token outside the vocabulary), and [`nll`]'s.
    pub fn window(
        &mut self,
        session: &mut Session<'_>,
        bos: u32,
        chunk: &[u32],
    ) -> Result<(), Error> {
        session.reset();
        let mut prev = bos;
        let mut sum = 0f64;
        for &t in chunk {
            sum += nll(session.step(prev)?, t)?;
            prev = t;
        }
        self.sum += sum;
        self.tokens += chunk.len();
        self.windows += 1;
        Ok(())
    }

    /// Predictions scored.
    pub const fn tokens(&self) -> usize {
        self.tokens
    }

    /// Windows scored.
    pub const fn windows(&self) -> usize {
        self.windows
    }

    /// Mean negative log-likelihood per prediction (nats); NaN before any.
    pub fn nll(&self) -> f64 {
        self.sum / self.tokens as f64
    }

    /// `exp(nll)`.
    pub fn perplexity(&self) -> f64 {
        libm::exp(self.nll())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nll_is_minus_log_softmax() {
        let logits = [1.0f32, 2.0, 3.0, -4.0];
        let z: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
        for t in 0..4 {
            let want = -(f64::from(logits[t]).exp() / z).ln();
            // The terms' expf (within 1 ulp, 2^-23 relative) bounds the error of the
            // sum's ln by about 2^-23; the rest is f64.
            let got = nll(&logits, t as u32).unwrap();
            assert!(
                (got - want).abs() < 2.0 * f64::from(f32::EPSILON),
                "{got} {want}"
            );
        }
        assert!(nll(&logits, 4).is_err());
        assert_eq!(nll(&[f32::NAN, 0.0], 1), Err(Error::InvalidParameter));
    }

    #[test]
    fn windows_cut_the_stream() {
        let t: Vec<u32> = (0..10).collect();
        let c: Vec<&[u32]> = chunks(&t, 4).collect();
        assert_eq!(c, [&t[0..3], &t[3..6], &t[6..9], &t[9..10]]);
        assert_eq!(chunks(&t, 1).count(), 0);
        assert_eq!(chunks(&t, 0).count(), 0);
    }
}
