//! llama2.c's sampler: xorshift RNG, greedy argmax, multinomial and top-p sampling.
//!
//! Reproduces `random_u32`, `random_f32`, `sample_argmax`, `softmax`, `sample_mult`,
//! `sample_topp` and `sample` of llama2.c's `run.c` (karpathy/llama2.c, master) in
//! `f32`, operation for operation, with caller-provided scratch instead of `malloc`.
//!
//! # The RNG
//!
//! xorshift64* (Marsaglia / Vigna): `s ^= s >> 12; s ^= s << 25; s ^= s >> 27;` output
//! `(s * 0x2545F4914F6CDD1D) >> 32` (wrapping 64-bit product); `random_f32` is
//! `(random_u32 >> 8) / 16777216.0f`, a multiple of 2^-24 in `[0, 1)`.
//!
//! Seeds: run.c's `-s` is parsed with `atoi` into an `unsigned long long`, so `-s N`
//! with a negative `N` is the seed `N as i64 as u64`. Zero is never used as a state:
//! run.c replaces `rng_seed <= 0` (i.e. 0) by `time(NULL)`, and 0 is xorshift's fixed
//! point (every output 0). [`Sampler::new`] therefore rejects seed 0
//! ([`Error::InvalidParameter`]) rather than read a clock.
//!
//! # Sampling
//!
//! [`Sampler::sample`]: temperature 0 → [`sample_argmax`] on the raw logits (first
//! maximum, no RNG draw). Otherwise each logit is divided by the temperature, turned
//! into probabilities by [`softmax`] (max, `expf(x - max)` with `libm::expf`, or glibc's
//! with the `exact` feature, running
//! `f32` sum, division), one `coin = random_f32()` is drawn, and `topp` in `(0, 1)`
//! selects [`sample_topp`], anything else [`sample_mult`].
//!
//! [`sample_topp`] keeps the candidates with `p >= (1 - topp) / (n - 1)` (in index
//! order), sorts them by descending probability, truncates after the first prefix whose
//! running `f32` sum exceeds `topp` (or keeps all), and walks the kept prefix until
//! `coin * cumulative < cdf`, falling back to the last kept candidate.
//!
//! ## Ties in the sort
//!
//! run.c calls `qsort` with a comparator that returns 0 for equal probabilities, so the
//! order of ties is up to the C library. glibc's `qsort` is a merge sort (stable), which
//! keeps tied candidates in increasing index order; the order matters, because the
//! coin is mapped through the cumulative sums and the truncation point can fall inside
//! a run of ties. `core` has no stable sort without an allocator, so this module sorts
//! on the key (probability descending, index ascending): a strict total order
//! (candidates are never NaN), whose only sorted arrangement is the one glibc's stable
//! sort produces. The sort is a heapsort of its own (`core`'s `sort_unstable_by`
//! checks the comparator's consistency, a panic path on the device).
//!
//! ## Departures from run.c (undefined behaviour there)
//!
//! * No candidate passes the cutoff (possible when `topp < 1/n`, and always when
//!   `n == 1`, where the cutoff is `x / 0 = inf`): run.c reads `probindex[-1]`. Here the
//!   nucleus is then the single most probable token: the first maximum.
//! * NaN or `+inf` logits (or an overflow when dividing by a tiny temperature) make
//!   run.c's softmax NaN; here [`softmax`] returns [`Error::NotFinite`] (the logits
//!   then hold partial results).
//!
//! Numerics match run.c compiled for x86-64 SSE (`gcc -O3`, no fast-math): the same
//! `f32` operations in the same order; the one library call, `expf`, is `libm::expf`
//! here by default and glibc's there, both accurate to well under 1 ulp and nearly always
//! equal. With the `exact` feature it is glibc's own ([`crate::num::exp_glibc::expf`]),
//! and the sampler is run.c's to the bit.

use crate::Error;

/// One top-p candidate: a probability and its token index (run.c's `ProbIndex`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProbIndex {
    /// The probability.
    pub prob: f32,
    /// The token index.
    pub index: u32,
}

/// Sorts `v` so that `before(v[i], v[j])` or neither precedes the other for
/// every `i < j`: heapsort, in place, `O(n log n)` comparisons whatever the
/// input. For a strict total order there is one sorted arrangement, so this is
/// the order any sort gives. Used instead of `sort_unstable_by`, whose
/// consistency check on the comparator is a panic path on the device.
fn heapsort<T>(v: &mut [T], before: impl Fn(&T, &T) -> bool) {
    // A max-heap of "comes last": the root is the element sorted last.
    let after = |a: &T, b: &T| before(b, a);
    let sift = |v: &mut [T], mut node: usize, end: usize| {
        let end = end.min(v.len());
        loop {
            let child = 2 * node + 1;
            if child >= end {
                return;
            }
            let right = child + 1;
            let child = match (v.get(child), v.get(right)) {
                (Some(l), Some(r)) if right < end && after(r, l) => right,
                _ => child,
            };
            match (v.get(node), v.get(child)) {
                (Some(n), Some(c)) if after(c, n) => v.swap(node, child),
                _ => return,
            }
            node = child;
        }
    };
    let n = v.len();
    for i in (0..n / 2).rev() {
        sift(v, i, n);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift(v, 0, end);
    }
}

/// One step of llama2.c's xorshift64* generator: advances `state`, returns 32 bits.
pub fn random_u32(state: &mut u64) -> u32 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
}

/// A random `f32` in `[0, 1)`: `(random_u32 >> 8) / 16777216.0`.
pub fn random_f32(state: &mut u64) -> f32 {
    (random_u32(state) >> 8) as f32 / 16_777_216.0
}

fn index_u32(i: usize) -> Result<u32, Error> {
    u32::try_from(i).map_err(|_| Error::InvalidParameter)
}

/// Index of the first maximum (run.c's `sample_argmax`: strict `>`, so ties keep the
/// lowest index and NaNs never win unless at index 0).
///
/// [`Error::ZeroDimension`] for an empty slice.
pub fn sample_argmax(values: &[f32]) -> Result<u32, Error> {
    first_max(values)
}

/// [`sample_argmax`] over the integer step's Q16 logits
/// ([`crate::model::Session::step_fixed`]): no float instruction, so an
/// FPU-less core samples greedily without soft float. It picks the token
/// [`sample_argmax`] picks from their f32 conversion except where two logits
/// of magnitude above 2^8 differ by less than the f32 step there (the
/// conversion would tie them; this picks the larger).
///
/// [`Error::ZeroDimension`] for an empty slice.
pub fn sample_argmax_fixed(values: &[fixed::types::I16F16]) -> Result<u32, Error> {
    first_max(values)
}

/// Index of the first maximum by strict `>`.
#[inline]
fn first_max<T: PartialOrd + Copy>(values: &[T]) -> Result<u32, Error> {
    let (&first, rest) = values.split_first().ok_or(Error::ZeroDimension)?;
    let mut max_i = 0usize;
    let mut max_p = first;
    for (i, &p) in rest.iter().enumerate() {
        if p > max_p {
            max_i = i + 1;
            max_p = p;
        }
    }
    index_u32(max_i)
}

/// In-place softmax exactly as run.c: `max`, `x = expf(x - max)` with a running `f32`
/// sum, then `x /= sum` (`expf`: [`crate::num::exp::sampler_expf`], `libm::expf` or,
/// with the `exact` feature, glibc's).
///
/// [`Error::ZeroDimension`] for an empty slice; [`Error::NotFinite`] if the maximum is
/// not finite (a NaN first element, `+inf`, or all `-inf`) or the sum is not (a NaN).
pub fn softmax(x: &mut [f32]) -> Result<(), Error> {
    let (&first, rest) = x.split_first().ok_or(Error::ZeroDimension)?;
    let mut max_val = first;
    for &v in rest {
        if v > max_val {
            max_val = v;
        }
    }
    if !max_val.is_finite() {
        return Err(Error::NotFinite);
    }
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = crate::num::exp::sampler_expf(*v - max_val);
        sum += *v;
    }
    if !sum.is_finite() {
        return Err(Error::NotFinite);
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
    Ok(())
}

/// Multinomial sample (run.c's `sample_mult`): the first `i` with `coin < cdf_i`
/// (running `f32` sum), else the last index.
///
/// [`Error::ZeroDimension`] for an empty slice.
pub fn sample_mult(probabilities: &[f32], coin: f32) -> Result<u32, Error> {
    if probabilities.is_empty() {
        return Err(Error::ZeroDimension);
    }
    let mut cdf = 0.0f32;
    for (i, &p) in probabilities.iter().enumerate() {
        cdf += p;
        if coin < cdf {
            return index_u32(i);
        }
    }
    index_u32(probabilities.len() - 1)
}

/// Top-p (nucleus) sample (run.c's `sample_topp`), using `scratch` (at least
/// `probabilities.len()` entries) for the candidates. See the module documentation for
/// the cutoff, the tie order and the empty-nucleus rule.
///
/// [`Error::ZeroDimension`] for an empty slice, [`Error::BufferTooSmall`] for short
/// scratch.
pub fn sample_topp(
    probabilities: &[f32],
    topp: f32,
    scratch: &mut [ProbIndex],
    coin: f32,
) -> Result<u32, Error> {
    let n = probabilities.len();
    if n == 0 {
        return Err(Error::ZeroDimension);
    }
    if scratch.len() < n {
        return Err(Error::BufferTooSmall {
            needed: n,
            got: scratch.len(),
        });
    }
    let last_index = index_u32(n - 1)?;
    // `(n - 1)` is an int converted to float in C, as here (round to nearest).
    let cutoff = (1.0f32 - topp) / last_index as f32;
    let mut n0 = 0usize;
    for (i, &p) in probabilities.iter().enumerate() {
        if p >= cutoff {
            if let Some(slot) = scratch.get_mut(n0) {
                *slot = ProbIndex {
                    prob: p,
                    index: i as u32, // i <= n - 1 <= u32::MAX
                };
            }
            n0 += 1;
        }
    }
    let candidates = scratch.get_mut(..n0).unwrap_or(&mut []);
    if candidates.is_empty() {
        return sample_argmax(probabilities);
    }
    // Descending probability, ties by ascending index: glibc's stable qsort order.
    // No candidate is NaN (NaN >= cutoff is false): a strict total order.
    heapsort(candidates, |a, b| {
        a.prob > b.prob || (a.prob == b.prob && a.index < b.index)
    });

    let mut cumulative_prob = 0.0f32;
    let mut last_idx = n0 - 1;
    for (i, c) in candidates.iter().enumerate() {
        cumulative_prob += c.prob;
        if cumulative_prob > topp {
            last_idx = i;
            break;
        }
    }
    let r = coin * cumulative_prob;
    let mut cdf = 0.0f32;
    for c in candidates.iter().take(last_idx + 1) {
        cdf += c.prob;
        if r < cdf {
            return Ok(c.index);
        }
    }
    Ok(candidates.get(last_idx).map_or(0, |c| c.index))
}

/// llama2.c's `Sampler`: temperature, top-p and the RNG state.
///
/// The fields are public (run.c's struct); [`Sampler::sample`] re-checks them on every
/// call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampler {
    /// 0 = greedy argmax; otherwise logits are divided by it before the softmax.
    pub temperature: f32,
    /// Nucleus threshold; values outside `(0, 1)` mean plain multinomial sampling.
    pub topp: f32,
    /// The xorshift state (run.c's `rng_state`, initialised to the seed).
    pub rng_state: u64,
}

impl Sampler {
    /// run.c's `build_sampler(.., temperature, topp, rng_seed)` without the buffer.
    ///
    /// [`Error::InvalidParameter`] if `temperature` is negative or not finite (run.c's
    /// command line clamps a negative one to 0: do that before calling if wanted), if
    /// `topp` is NaN, or if `rng_seed` is 0 (see the module documentation).
    pub fn new(temperature: f32, topp: f32, rng_seed: u64) -> Result<Self, Error> {
        let s = Self {
            temperature,
            topp,
            rng_state: rng_seed,
        };
        s.validate()?;
        Ok(s)
    }

    /// Checks the fields as [`Sampler::new`] does.
    pub fn validate(&self) -> Result<(), Error> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(Error::InvalidParameter);
        }
        if self.topp.is_nan() || self.rng_state == 0 {
            return Err(Error::InvalidParameter);
        }
        Ok(())
    }

    /// Whether [`Sampler::sample`] uses top-p (temperature > 0 and `0 < topp < 1`), the
    /// only path that needs `scratch`.
    pub fn uses_topp(&self) -> bool {
        !self.is_greedy() && self.topp > 0.0 && self.topp < 1.0
    }

    /// Whether the sampler takes the argmax (temperature 0): it needs the
    /// logits' order only, so an integer session's Q16 logits do
    /// ([`sample_argmax_fixed`]).
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Samples the next token from `logits` (run.c's `sample`).
    ///
    /// With temperature > 0 the logits are overwritten by the probabilities, as in
    /// run.c, and one RNG value is drawn. `scratch` needs `logits.len()` entries when
    /// [`Sampler::uses_topp`], and may be empty otherwise.
    ///
    /// Errors: [`Error::ZeroDimension`] (empty logits), [`Error::InvalidParameter`]
    /// (fields as in [`Sampler::new`]), [`Error::BufferTooSmall`] (scratch, checked
    /// before the logits are touched), [`Error::NotFinite`] (see [`softmax`]).
    pub fn sample(&mut self, logits: &mut [f32], scratch: &mut [ProbIndex]) -> Result<u32, Error> {
        if logits.is_empty() {
            return Err(Error::ZeroDimension);
        }
        self.validate()?;
        if self.temperature == 0.0 {
            return sample_argmax(logits);
        }
        let topp = self.uses_topp();
        if topp && scratch.len() < logits.len() {
            return Err(Error::BufferTooSmall {
                needed: logits.len(),
                got: scratch.len(),
            });
        }
        for v in logits.iter_mut() {
            *v /= self.temperature;
        }
        softmax(logits)?;
        let coin = random_f32(&mut self.rng_state);
        if topp {
            sample_topp(logits, self.topp, scratch, coin)
        } else {
            sample_mult(logits, coin)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The heapsort gives the one arrangement a strict total order allows:
    /// the standard library's sort's, over many sizes, ties and orders.
    #[test]
    fn heapsort_equals_a_sort_by_the_same_key() {
        let mut rng = microformer_testkit::XorShift32(17);
        for n in (0..40).chain([63, 64, 65, 200, 512]) {
            for levels in [1u32, 3, 1000] {
                let mut v: std::vec::Vec<ProbIndex> = (0..n)
                    .map(|i| ProbIndex {
                        prob: (rng.next_u32() % levels) as f32 / levels as f32,
                        index: i as u32,
                    })
                    .collect();
                for k in 0..n {
                    let j = rng.next_u32() as usize % n.max(1);
                    v.swap(k, j);
                }
                let mut want = v.clone();
                want.sort_by(|a, b| b.prob.total_cmp(&a.prob).then(a.index.cmp(&b.index)));
                heapsort(&mut v, |a, b| {
                    a.prob > b.prob || (a.prob == b.prob && a.index < b.index)
                });
                assert_eq!(v, want, "n {n} levels {levels}");
            }
        }
    }

    #[test]
    fn empty_nucleus_takes_first_maximum() {
        // n = 2, topp = 0.1: cutoff 0.9, both 0.5 fail it (run.c: probindex[-1]).
        let mut scratch = [ProbIndex::default(); 2];
        assert_eq!(sample_topp(&[0.5, 0.5], 0.1, &mut scratch, 0.99), Ok(0));
        // n = 1: cutoff = 0.1 / 0 = inf.
        assert_eq!(sample_topp(&[1.0], 0.9, &mut scratch, 0.5), Ok(0));
    }

    #[test]
    fn ties_keep_index_order() {
        let p = [0.25f32; 4];
        let mut scratch = [ProbIndex::default(); 4];
        for (coin, want) in [(0.0, 0), (0.24, 0), (0.3, 1), (0.6, 2), (0.9, 3)] {
            assert_eq!(sample_topp(&p, 0.9, &mut scratch, coin), Ok(want));
        }
    }
}
