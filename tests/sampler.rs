//! The sampler against independent models: a u128 xorshift, an f64 softmax, and a
//! straightforward (allocating, stable-sorting) transcription of run.c's samplers.

use microformer::sampler::{
    random_f32, random_u32, sample_argmax, sample_argmax_fixed, sample_mult, sample_topp, softmax,
    ProbIndex, Sampler,
};
use microformer::Error;
use microformer_testkit::Lcg64;

const U: f64 = 1.0 / 16_777_216.0; // 2^-24, f32 unit roundoff

/// xorshift64* in u128 arithmetic, masked to 64 bits.
struct RefRng(u128);

impl RefRng {
    const MASK: u128 = (1u128 << 64) - 1;
    fn next_u32(&mut self) -> u32 {
        let mut s = self.0;
        s ^= s >> 12;
        s ^= (s << 25) & Self::MASK;
        s ^= s >> 27;
        self.0 = s;
        (((s * 0x2545_F491_4F6C_DD1D) & Self::MASK) >> 32) as u32
    }
    fn next_f32(&mut self) -> f32 {
        ((self.next_u32() >> 8) as f64 / 16_777_216.0) as f32
    }
}

#[test]
fn rng_matches_u128_model_and_known_values() {
    // First outputs computed separately (Python integers) for three seeds.
    let known: [(u64, [u32; 5]); 3] = [
        (
            42,
            [1456360119, 3359763283, 3393612768, 4054632243, 3283045847],
        ),
        (
            1,
            [1206177355, 2882512552, 3117485455, 1303648416, 241277360],
        ),
        (
            (-5i64) as u64,
            [688859603, 1533610334, 714588690, 2142798736, 1433490979],
        ),
    ];
    for (seed, want) in known {
        let mut s = seed;
        let got: Vec<u32> = (0..5).map(|_| random_u32(&mut s)).collect();
        assert_eq!(got, want, "seed {seed}");
    }
    for seed in [1u64, 42, 0xDEAD_BEEF, u64::MAX, 1 << 63, (-5i64) as u64] {
        let (mut s, mut r) = (seed, RefRng(u128::from(seed)));
        for i in 0..2000 {
            assert_eq!(random_u32(&mut s), r.next_u32(), "seed {seed} step {i}");
            assert_eq!(u128::from(s), r.0);
        }
        let (mut s, mut r) = (seed, RefRng(u128::from(seed)));
        for _ in 0..2000 {
            let f = random_f32(&mut s);
            assert_eq!(f, r.next_f32());
            assert!((0.0..1.0).contains(&f));
        }
    }
    let mut s = 42;
    assert_eq!(random_f32(&mut s), 0.339_085_22);
    // Zero is xorshift's fixed point, which is why Sampler::new rejects seed 0.
    let mut z = 0;
    assert_eq!((random_u32(&mut z), z), (0, 0));
}

/// Test-side distributions over the kit's LCG (independent of the crate's RNG).
struct Gen(Lcg64);
impl Gen {
    fn unit(&mut self) -> f64 {
        self.0.unit_f64()
    }
    /// In `[0, n)`, scaled from [`Gen::unit`] (not `Lcg64::below`'s modulo).
    fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n
    }
    /// Logits of length n: wide or narrow ranges, and some quantised so that many
    /// probabilities tie exactly.
    fn logits(&mut self, n: usize) -> Vec<f32> {
        let spread = [0.5, 3.0, 10.0, 30.0][self.below(4)];
        let quantised = self.below(3) == 0;
        (0..n)
            .map(|_| {
                let x = (self.unit() * 2.0 - 1.0) * spread;
                (if quantised { x.round() } else { x }) as f32
            })
            .collect()
    }
}

#[test]
fn argmax_takes_the_first_maximum() {
    assert_eq!(sample_argmax(&[1.0, 3.0, 2.0, 3.0]), Ok(1));
    assert_eq!(sample_argmax(&[-5.0, -1.0, -1.0]), Ok(1));
    assert_eq!(sample_argmax(&[7.0]), Ok(0));
    assert_eq!(sample_argmax(&[f32::NEG_INFINITY, -1e30]), Ok(1));
    assert_eq!(sample_argmax(&[0.0, f32::NAN, 1.0]), Ok(2));
    assert_eq!(sample_argmax(&[f32::NAN, 5.0]), Ok(0)); // as run.c: NaN > x is false
    assert_eq!(sample_argmax(&[]), Err(Error::ZeroDimension));
    let mut g = Gen(Lcg64(7));
    for n in 1..300 {
        let v = g.logits(n);
        let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let first = v.iter().position(|&x| x == max).unwrap();
        assert_eq!(sample_argmax(&v), Ok(first as u32));
    }
}

/// The integer session's greedy pick: the first maximum of the Q16 logits,
/// the token `sample_argmax` picks from their f32 conversion (`l / 2^16`,
/// exact below 2^8 in magnitude), with ties and the extremes; above 2^8 it
/// tells apart logits the conversion ties.
#[test]
fn argmax_of_fixed_logits_is_the_float_argmax() {
    use fixed::types::I16F16;
    let conv =
        |v: &[I16F16]| -> Vec<f32> { v.iter().map(|l| l.to_bits() as f32 / 65536.0).collect() };
    let mut g = Gen(Lcg64(9));
    for n in 1..300 {
        // Logits within ±2^8 on a coarse grid, so that ties are common.
        let v: Vec<I16F16> = (0..n)
            .map(|_| I16F16::from_bits(((g.below(1 << 10) as i32) - 512) << 15))
            .collect();
        assert_eq!(sample_argmax_fixed(&v), sample_argmax(&conv(&v)), "{n}");
    }
    let ext = [I16F16::MIN, I16F16::MAX, I16F16::MAX, I16F16::ZERO];
    assert_eq!(sample_argmax_fixed(&ext), Ok(1));
    // 2^24 and 2^24 + 1 LSB (logits 256 and 256 + 2^-16) are one f32.
    let big = [I16F16::from_bits(1 << 24), I16F16::from_bits((1 << 24) + 1)];
    assert_eq!(sample_argmax(&conv(&big)), Ok(0));
    assert_eq!(sample_argmax_fixed(&big), Ok(1));
    assert_eq!(sample_argmax_fixed(&[]), Err(Error::ZeroDimension));
}

#[test]
fn softmax_matches_f64_model_and_run_c_operation_order() {
    let mut g = Gen(Lcg64(11));
    let mut worst_ulps = 0.0f64;
    let mut worst_of_bound = 0.0f64;
    for case in 0..400 {
        let n = 1 + g.below(600);
        let x = g.logits(n);
        let mut p = x.clone();
        softmax(&mut p).unwrap();

        // f64 model of exp(x - max) / sum on the same f32 inputs.
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let e: Vec<f64> = x.iter().map(|&v| (v as f64 - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        let max_d = x.iter().map(|&v| max - v as f64).fold(0.0, f64::max);
        for i in 0..n {
            let want = e[i] / sum;
            let rel = (p[i] as f64 - want).abs() / want;
            // First-order bound: rounding of x - max (|d|u, in the exponent), expf
            // (< 1 ulp = 2u), the same for the sum's terms plus n - 1 additions, the
            // division (u).
            let d = max - x[i] as f64;
            let bound = U * (d + max_d + 2.0 + 2.0 + (n - 1) as f64 + 1.0) * 1.01;
            assert!(
                rel <= bound,
                "case {case} n {n} i {i}: rel {rel:e} > {bound:e}"
            );
            worst_ulps = worst_ulps.max(rel / U);
            worst_of_bound = worst_of_bound.max(rel / bound);
        }

        // Bit-exact against run.c's operations written out in f32, with the sampler's
        // `expf` (libm's; glibc's in an `exact` build).
        let m = x
            .iter()
            .copied()
            .fold(x[0], |a, b| if b > a { b } else { a });
        let mut q: Vec<f32> = x
            .iter()
            .map(|&v| microformer::num::exp::sampler_expf(v - m))
            .collect();
        let mut s = 0.0f32;
        for &v in &q {
            s += v;
        }
        for v in &mut q {
            *v /= s;
        }
        assert_eq!(p, q, "case {case}");
    }
    println!(
        "softmax worst relative error vs f64: {worst_ulps:.2} units of 2^-24, {:.1}% of its bound",
        100.0 * worst_of_bound
    );

    assert_eq!(softmax(&mut []), Err(Error::ZeroDimension));
    let mut one = [3.5f32];
    softmax(&mut one).unwrap();
    assert_eq!(one, [1.0]);
    // -inf logits are fine (probability 0); NaN and +inf are not.
    let mut masked = [0.0, f32::NEG_INFINITY, 0.0];
    softmax(&mut masked).unwrap();
    assert_eq!(masked, [0.5, 0.0, 0.5]);
    for bad in [
        vec![f32::NAN, 1.0],
        vec![1.0, f32::NAN],
        vec![1.0, f32::INFINITY],
        vec![f32::NEG_INFINITY; 3],
    ] {
        let mut b = bad.clone();
        assert_eq!(softmax(&mut b), Err(Error::NotFinite), "{bad:?}");
    }
}

/// run.c's sample_mult, transcribed.
fn ref_mult(p: &[f32], coin: f32) -> u32 {
    let mut cdf = 0.0f32;
    for (i, &v) in p.iter().enumerate() {
        cdf += v;
        if coin < cdf {
            return i as u32;
        }
    }
    p.len() as u32 - 1
}

/// run.c's sample_topp with a stable sort (glibc qsort is a merge sort). When no
/// candidate passes the cutoff (run.c reads probindex[-1]) the nucleus is the first
/// maximum, the crate's documented rule.
fn ref_topp(p: &[f32], topp: f32, coin: f32) -> u32 {
    let n = p.len();
    let cutoff = (1.0f32 - topp) / (n - 1) as f32;
    let mut cand: Vec<(u32, f32)> = p
        .iter()
        .enumerate()
        .filter(|(_, &v)| v >= cutoff)
        .map(|(i, &v)| (i as u32, v))
        .collect();
    if cand.is_empty() {
        let max = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        return p.iter().position(|&v| v == max).unwrap() as u32;
    }
    cand.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap()); // stable
    let mut cum = 0.0f32;
    let mut last = cand.len() - 1;
    for (i, c) in cand.iter().enumerate() {
        cum += c.1;
        if cum > topp {
            last = i;
            break;
        }
    }
    let r = coin * cum;
    let mut cdf = 0.0f32;
    for c in &cand[..=last] {
        cdf += c.1;
        if r < cdf {
            return c.0;
        }
    }
    cand[last].0
}

#[test]
fn topp_and_mult_match_reference_over_random_distributions() {
    let mut g = Gen(Lcg64(2024));
    let mut rng = RefRng(99);
    let mut scratch = vec![ProbIndex::default(); 700];
    let mut ties_seen = 0;
    let mut empty_nucleus_seen = 0;
    for case in 0..3000 {
        let n = 1 + g.below(600);
        let mut p = g.logits(n);
        softmax(&mut p).unwrap();
        let mut sorted = p.clone();
        sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
        ties_seen += usize::from(sorted.windows(2).any(|w| w[0] == w[1]));
        let topp = [0.001, 0.05, 0.3, 0.5, 0.9, 0.95, 0.999][g.below(7)];
        if n > 1 && p.iter().all(|&v| v < (1.0 - topp) / (n - 1) as f32) {
            empty_nucleus_seen += 1;
        }
        for coin in [rng.next_f32(), rng.next_f32(), 0.0, 1.0 - U as f32] {
            assert_eq!(
                sample_topp(&p, topp, &mut scratch, coin),
                Ok(ref_topp(&p, topp, coin)),
                "case {case} n {n} topp {topp} coin {coin}"
            );
            assert_eq!(sample_mult(&p, coin), Ok(ref_mult(&p, coin)), "case {case}");
        }
    }
    assert!(ties_seen > 300, "only {ties_seen} distributions with ties");
    assert!(
        empty_nucleus_seen > 0,
        "the empty-nucleus rule was not exercised"
    );
}

#[test]
fn ties_follow_index_order_as_a_stable_sort() {
    // Four equal candidates, then smaller ones: the sampled index for each coin is the
    // one a stable descending sort gives (0, 1, 2, 3 in order).
    let p = [0.2f32, 0.05, 0.2, 0.2, 0.05, 0.2, 0.1];
    let mut scratch = [ProbIndex::default(); 7];
    // topp 0.5: cumulative 0.2, 0.4, 0.6 > 0.5 => nucleus {0, 2, 3}, total 0.6.
    for (coin, want) in [
        (0.0, 0),
        (0.3, 0),
        (0.34, 2),
        (0.6, 2),
        (0.67, 3),
        (0.99, 3),
    ] {
        assert_eq!(
            sample_topp(&p, 0.5, &mut scratch, coin),
            Ok(want),
            "coin {coin}"
        );
        assert_eq!(ref_topp(&p, 0.5, coin), want);
    }
}

#[test]
fn sampler_paths_match_run_c() {
    let mut g = Gen(Lcg64(5));
    let mut scratch = vec![ProbIndex::default(); 600];
    for case in 0..600 {
        let n = 1 + g.below(600);
        let logits = g.logits(n);
        let temperature = [0.0, 0.5, 1.0, 1.7][case % 4];
        let topp = [0.9, 1.0, 0.0, 0.4, 1.5][case % 5];
        let seed = 1 + case as u64 * 7919;
        let mut sampler = Sampler::new(temperature, topp, seed).unwrap();
        let mut l = logits.clone();
        let got = sampler.sample(&mut l, &mut scratch).unwrap();

        let mut rng = RefRng(u128::from(seed));
        let want = if temperature == 0.0 {
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(l, logits, "greedy leaves the logits alone");
            logits.iter().position(|&v| v == max).unwrap() as u32
        } else {
            let mut p: Vec<f32> = logits.iter().map(|&v| v / temperature).collect();
            softmax(&mut p).unwrap();
            assert_eq!(l, p, "logits become the probabilities");
            let coin = rng.next_f32();
            if topp > 0.0 && topp < 1.0 {
                ref_topp(&p, topp, coin)
            } else {
                ref_mult(&p, coin)
            }
        };
        assert_eq!(got, want, "case {case}");
        assert_eq!(
            u128::from(sampler.rng_state),
            rng.0,
            "one draw iff temperature > 0"
        );
    }
}

#[test]
fn sampler_errors() {
    let mut s = Sampler::new(1.0, 0.9, 42).unwrap();
    let mut scratch = [ProbIndex::default(); 4];
    assert_eq!(s.sample(&mut [], &mut scratch), Err(Error::ZeroDimension));
    // Short scratch on the top-p path, reported before the logits are touched.
    let mut l = [1.0f32, 2.0, 3.0, 4.0, 5.0];
    assert_eq!(
        s.sample(&mut l, &mut scratch),
        Err(Error::BufferTooSmall { needed: 5, got: 4 })
    );
    assert_eq!(l, [1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(s.rng_state, 42);
    // Greedy and multinomial need no scratch.
    assert_eq!(
        Sampler::new(0.0, 0.9, 42).unwrap().sample(&mut l, &mut []),
        Ok(4)
    );
    assert!(Sampler::new(1.0, 1.0, 42)
        .unwrap()
        .sample(&mut l, &mut [])
        .is_ok());
    assert_eq!(
        sample_topp(&[0.5, 0.5], 0.9, &mut [], 0.5),
        Err(Error::BufferTooSmall { needed: 2, got: 0 })
    );
    assert_eq!(
        sample_topp(&[], 0.9, &mut [], 0.5),
        Err(Error::ZeroDimension)
    );
    assert_eq!(sample_mult(&[], 0.5), Err(Error::ZeroDimension));

    for t in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.5] {
        assert_eq!(
            Sampler::new(t, 0.9, 1),
            Err(Error::InvalidParameter),
            "temperature {t}"
        );
        let mut bad = Sampler::new(1.0, 0.9, 1).unwrap();
        bad.temperature = t;
        assert_eq!(
            bad.sample(&mut [1.0, 2.0], &mut [ProbIndex::default(); 2]),
            Err(Error::InvalidParameter)
        );
    }
    assert_eq!(Sampler::new(1.0, f32::NAN, 1), Err(Error::InvalidParameter));
    assert_eq!(Sampler::new(1.0, 0.9, 0), Err(Error::InvalidParameter));
    // -0.0 compares equal to 0: greedy, as in run.c.
    assert_eq!(
        Sampler::new(-0.0, 0.9, 1)
            .unwrap()
            .sample(&mut [1.0, 2.0], &mut []),
        Ok(1)
    );

    let mut p = [ProbIndex::default(); 3];
    for bad in [
        [f32::NAN, 0.0, 1.0],
        [0.0, 1.0, f32::INFINITY],
        [f32::NEG_INFINITY; 3],
    ] {
        let mut l = bad;
        assert_eq!(s.sample(&mut l, &mut p), Err(Error::NotFinite), "{bad:?}");
    }
    // A temperature so small that logits / temperature overflows.
    let mut tiny = Sampler::new(1e-40, 0.9, 3).unwrap();
    assert_eq!(
        tiny.sample(&mut [1.0, 2.0, 3.0], &mut p),
        Err(Error::NotFinite)
    );
    // A masked (-inf) logit is never sampled.
    let mut m = Sampler::new(1.0, 1.0, 9).unwrap();
    for _ in 0..200 {
        assert_ne!(m.sample(&mut [0.0, f32::NEG_INFINITY, 0.0], &mut []), Ok(1));
    }
}
