//! The attention block against a straightforward f64 model of
//! `softmax(q·k/√d + bias) · v` with explicit masks, on deterministic random data.

use microformer::attn::{
    attend_cached, attend_sequence, AttnBuffers, AttnConfig, KvCache, KvWrite, Mask, NoBias,
    ScoreBias,
};
use microformer::Error;
use microformer_testkit::XorShift32;

/// `n` values uniform in `[-scale, scale)`.
fn values(rng: &mut XorShift32, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.signed_unit() * scale).collect()
}

/// Which keys query `i` of `n` sees.
fn visible(i: usize, j: usize, causal: bool, window: usize) -> bool {
    if causal && j > i {
        return false;
    }
    window == 0 || i.abs_diff(j) < window
}

/// f64 attention over a whole sequence: q `[n][nh·hd]`, k, v `[n][nkv·hd]`.
fn reference(
    c: &Case,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    causal: bool,
    window: usize,
    bias: &dyn Fn(usize, usize, usize) -> f64,
) -> Vec<f64> {
    let (nh, nkv, hd) = (c.nh, c.nkv, c.hd);
    let (qd, kvd) = (nh * hd, nkv * hd);
    let n = q.len() / qd;
    let mut out = vec![0.0f64; n * qd];
    for i in 0..n {
        for h in 0..nh {
            let g = h / (nh / nkv);
            let keys: Vec<usize> = (0..n).filter(|&j| visible(i, j, causal, window)).collect();
            let scores: Vec<f64> = keys
                .iter()
                .map(|&j| {
                    let dot: f64 = (0..hd)
                        .map(|d| q[i * qd + h * hd + d] as f64 * k[j * kvd + g * hd + d] as f64)
                        .sum();
                    dot / (hd as f64).sqrt() + bias(h, i, j)
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for (&j, &w) in keys.iter().zip(&e) {
                for d in 0..hd {
                    out[i * qd + h * hd + d] += w / z * v[j * kvd + g * hd + d] as f64;
                }
            }
        }
    }
    out
}

/// Worst |f32 − f64| over all outputs.
fn worst(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(&a, &b)| (a as f64 - b).abs())
        .fold(0.0, f64::max)
}

/// f32 against f64: outputs are convex combinations of values |v| ≤ 1 with
/// scores of a few units; each f32 operation is exact to 2^-24 relative and the
/// errors of a row's ≤ 64 terms mostly cancel. Measured worst: 4e-7 (printed);
/// the bound is 32 ulps of 1.0.
const TOL: f64 = 32.0 / (1u64 << 24) as f64;

struct Case {
    nh: usize,
    nkv: usize,
    hd: usize,
    n: usize,
}

const CASES: [Case; 4] = [
    Case {
        nh: 4,
        nkv: 4,
        hd: 8,
        n: 37,
    }, // MHA
    Case {
        nh: 8,
        nkv: 2,
        hd: 8,
        n: 40,
    }, // GQA
    Case {
        nh: 4,
        nkv: 1,
        hd: 16,
        n: 33,
    }, // MQA
    Case {
        nh: 6,
        nkv: 3,
        hd: 6,
        n: 64,
    }, // GQA, head dim not a power of two
];

/// Runs the cached (decoding) path over a sequence: store k, v at each position,
/// attend, collect the outputs.
fn run_cached<B: ScoreBias>(
    cfg: &AttnConfig,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    layers: usize,
    layer: usize,
    bias: &B,
) -> Vec<f32> {
    let (qd, kvd) = (cfg.q_dim(), cfg.kv_dim());
    let n = q.len() / qd;
    let mut keys = vec![0.0; KvCache::elements(layers, n, kvd)];
    let mut values = keys.clone();
    let mut cache = KvCache::new(&mut keys, &mut values, layers, n, kvd).unwrap();
    let mut att = vec![0.0; n];
    let mut out = vec![0.0; n * qd];
    for p in 0..n {
        cache
            .store(
                layer,
                p,
                &k[p * kvd..(p + 1) * kvd],
                &v[p * kvd..(p + 1) * kvd],
            )
            .unwrap();
        attend_cached(
            cfg,
            &cache,
            layer,
            p,
            &q[p * qd..(p + 1) * qd],
            bias,
            AttnBuffers {
                att: &mut att,
                out: &mut out[p * qd..(p + 1) * qd],
            },
        )
        .unwrap();
    }
    out
}

fn data(rng: &mut XorShift32, c: &Case) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    // Scale q and k so that scores spread over several units (peaked softmax).
    (
        values(rng, c.n * c.nh * c.hd, 2.0),
        values(rng, c.n * c.nkv * c.hd, 2.0),
        values(rng, c.n * c.nkv * c.hd, 1.0),
    )
}

#[test]
fn causal_bidirectional_and_windowed_match_f64() {
    let mut rng = XorShift32(0x1234_5678);
    let zero = |_: usize, _: usize, _: usize| 0.0f64;
    for c in &CASES {
        let (q, k, v) = data(&mut rng, c);
        for window in [0, 1, 5] {
            let cfg = AttnConfig::new(c.nh, c.nkv, c.hd)
                .unwrap()
                .with_window(window);
            let mut att = vec![0.0; c.n];
            let mut out = vec![0.0; q.len()];

            let want = reference(c, &q, &k, &v, true, window, &zero);
            // Cached decoding, in the last of 3 layers (layer offsets exercised).
            let cached = run_cached(&cfg, &q, &k, &v, 3, 2, &NoBias);
            let e_cached = worst(&cached, &want);
            // Whole-sequence causal: the same arithmetic, so the same bits.
            attend_sequence(
                &cfg,
                Mask::Causal,
                &q,
                &k,
                &v,
                &NoBias,
                AttnBuffers {
                    att: &mut att,
                    out: &mut out,
                },
            )
            .unwrap();
            assert_eq!(out, cached, "causal sequence vs cached");

            let want_bi = reference(c, &q, &k, &v, false, window, &zero);
            attend_sequence(
                &cfg,
                Mask::Bidirectional,
                &q,
                &k,
                &v,
                &NoBias,
                AttnBuffers {
                    att: &mut att,
                    out: &mut out,
                },
            )
            .unwrap();
            let e_bi = worst(&out, &want_bi);
            println!(
                "heads {}/{} hd {} n {} window {window}: causal {e_cached:.2e}, bidirectional {e_bi:.2e}",
                c.nh, c.nkv, c.hd, c.n
            );
            assert!(e_cached < TOL && e_bi < TOL);
            if window == 1 {
                // Each query sees only its own key: the output is its own value row.
                for i in 0..c.n {
                    for h in 0..c.nh {
                        let g = h / (c.nh / c.nkv);
                        for d in 0..c.hd {
                            let o = out[i * c.nh * c.hd + h * c.hd + d];
                            assert_eq!(o, v[i * c.nkv * c.hd + g * c.hd + d]);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn gqa_and_mqa_head_mapping() {
    // Value rows constant per kv head (g + 1): head h must return g(h) + 1.
    for (nh, nkv) in [(8, 8), (8, 4), (8, 2), (8, 1), (6, 3)] {
        let hd = 4;
        let n = 5;
        let cfg = AttnConfig::new(nh, nkv, hd).unwrap();
        let mut rng = XorShift32(99);
        let q = values(&mut rng, n * nh * hd, 1.0);
        let k = values(&mut rng, n * nkv * hd, 1.0);
        let v: Vec<f32> = (0..n * nkv * hd)
            .map(|i| ((i / hd) % nkv + 1) as f32)
            .collect();
        let out = run_cached(&cfg, &q, &k, &v, 1, 0, &NoBias);
        for p in 0..n {
            for h in 0..nh {
                let want = (h / (nh / nkv) + 1) as f32;
                for d in 0..hd {
                    let o = out[p * nh * hd + h * hd + d];
                    assert!((o - want).abs() <= want * 4e-7, "{nh}/{nkv} head {h}: {o}");
                }
            }
        }
    }
}

#[test]
fn window_ignores_keys_outside_it() {
    let c = Case {
        nh: 4,
        nkv: 2,
        hd: 8,
        n: 20,
    };
    let mut rng = XorShift32(7);
    let (q, k, v) = data(&mut rng, &c);
    let cfg = AttnConfig::new(c.nh, c.nkv, c.hd).unwrap().with_window(4);
    let a = run_cached(&cfg, &q, &k, &v, 1, 0, &NoBias);
    // Scramble keys and values of positions 0..10: outputs of queries 13.. (which
    // see positions 10.. only) are unchanged, bit for bit; query 12 sees 9 and changes.
    let (mut k2, mut v2) = (k.clone(), v.clone());
    let kvd = c.nkv * c.hd;
    for x in k2[..10 * kvd].iter_mut().chain(v2[..10 * kvd].iter_mut()) {
        *x = rng.signed_unit() * 5.0;
    }
    let b = run_cached(&cfg, &q, &k2, &v2, 1, 0, &NoBias);
    let qd = c.nh * c.hd;
    assert_eq!(a[13 * qd..], b[13 * qd..]);
    assert_ne!(a[12 * qd..13 * qd], b[12 * qd..13 * qd]);
}

#[test]
fn score_bias_hook_matches_f64() {
    let mut rng = XorShift32(0xdead_beef);
    // ALiBi-like: -m_h · (i − j), slopes 2^-(h+1); and a T5-like table per
    // (head, bucket of j − i), bidirectional.
    let slopes: Vec<f32> = (0..8).map(|h| 0.5f32.powi(h + 1)).collect();
    let table: Vec<f32> = values(&mut rng, 8 * 9, 3.0);
    let bucket = |i: usize, j: usize| ((j as i64 - i as i64).clamp(-4, 4) + 4) as usize;
    for c in &CASES[..3] {
        let (q, k, v) = data(&mut rng, c);
        let cfg = AttnConfig::new(c.nh, c.nkv, c.hd).unwrap();
        let alibi = |h: usize, i: usize, j: usize| -slopes[h] * (i as f32 - j as f32);
        let alibi64 = |h: usize, i: usize, j: usize| alibi(h, i, j) as f64;
        let want = reference(c, &q, &k, &v, true, 0, &alibi64);
        let got = run_cached(&cfg, &q, &k, &v, 1, 0, &alibi);
        let e1 = worst(&got, &want);

        let t5 = |h: usize, i: usize, j: usize| table[h * 9 + bucket(i, j)];
        let t5_64 = |h: usize, i: usize, j: usize| t5(h, i, j) as f64;
        let want = reference(c, &q, &k, &v, false, 0, &t5_64);
        let mut att = vec![0.0; c.n];
        let mut out = vec![0.0; q.len()];
        attend_sequence(
            &cfg,
            Mask::Bidirectional,
            &q,
            &k,
            &v,
            &t5,
            AttnBuffers {
                att: &mut att,
                out: &mut out,
            },
        )
        .unwrap();
        let e2 = worst(&out, &want);
        println!(
            "bias hook, heads {}/{}: alibi causal {e1:.2e}, t5 bidirectional {e2:.2e}",
            c.nh, c.nkv
        );
        assert!(e1 < TOL && e2 < TOL);

        // A bias that is zero everywhere gives the bias-free result bit for bit.
        let none = |_: usize, _: usize, _: usize| 0.0f32;
        assert_eq!(
            run_cached(&cfg, &q, &k, &v, 1, 0, &none),
            run_cached(&cfg, &q, &k, &v, 1, 0, &NoBias)
        );
    }
}

#[test]
fn divisor_override() {
    // T5 does not scale scores: divisor 1 equals √hd-scaled attention on q·√hd.
    let c = &CASES[0];
    let mut rng = XorShift32(5);
    let (q, k, v) = data(&mut rng, c);
    let s = (c.hd as f32).sqrt();
    let q_scaled: Vec<f32> = q.iter().map(|x| x * s).collect();
    let one = AttnConfig::new(c.nh, c.nkv, c.hd)
        .unwrap()
        .with_divisor(1.0)
        .unwrap();
    let default = AttnConfig::new(c.nh, c.nkv, c.hd).unwrap();
    let zero = |_: usize, _: usize, _: usize| 0.0f64;
    let want = reference(c, &q_scaled, &k, &v, true, 0, &zero);
    assert!(worst(&run_cached(&one, &q, &k, &v, 1, 0, &NoBias), &want) < TOL);
    assert!(
        worst(
            &run_cached(&default, &q_scaled, &k, &v, 1, 0, &NoBias),
            &want
        ) < TOL
    );
}

#[test]
fn errors_are_typed() {
    let cfg = AttnConfig::new(4, 2, 4).unwrap();
    let (qd, kvd) = (16, 8);
    let mut keys = vec![0.0; KvCache::elements(2, 3, kvd)];
    let mut values = keys.clone();
    assert_eq!(
        KvCache::new(&mut keys[1..], &mut values, 2, 3, kvd).unwrap_err(),
        Error::LengthMismatch {
            expected: 48,
            got: 47
        }
    );
    let mut cache = KvCache::new(&mut keys, &mut values, 2, 3, kvd).unwrap();
    cache.store(0, 0, &[1.0; 8], &[1.0; 8]).unwrap();
    let q = [0.5f32; 16];
    let mut att = [0.0f32; 3];
    let mut out = [0.0f32; 16];
    assert_eq!(
        attend_cached(
            &cfg,
            &cache,
            0,
            3,
            &q,
            &NoBias,
            AttnBuffers {
                att: &mut att,
                out: &mut out
            }
        ),
        Err(Error::PositionOutOfRange {
            position: 3,
            len: 3
        })
    );
    assert_eq!(
        attend_cached(
            &cfg,
            &cache,
            0,
            2,
            &q,
            &NoBias,
            AttnBuffers {
                att: &mut att[..2],
                out: &mut out
            }
        ),
        Err(Error::BufferTooSmall { needed: 3, got: 2 })
    );
    assert_eq!(
        attend_cached(
            &cfg,
            &cache,
            0,
            0,
            &q[..15],
            &NoBias,
            AttnBuffers {
                att: &mut att,
                out: &mut out
            }
        ),
        Err(Error::LengthMismatch {
            expected: qd,
            got: 15
        })
    );
    assert!(matches!(
        attend_cached(
            &cfg,
            &cache,
            2,
            0,
            &q,
            &NoBias,
            AttnBuffers {
                att: &mut att,
                out: &mut out
            }
        ),
        Err(Error::PositionOutOfRange { .. })
    ));
    let other = AttnConfig::new(4, 4, 4).unwrap();
    assert_eq!(
        attend_cached(
            &other,
            &cache,
            0,
            0,
            &q,
            &NoBias,
            AttnBuffers {
                att: &mut att,
                out: &mut out
            }
        ),
        Err(Error::LengthMismatch {
            expected: 16,
            got: 8
        })
    );
    // Position 0 attends to itself only: the output is its value row.
    attend_cached(
        &cfg,
        &cache,
        0,
        0,
        &q,
        &NoBias,
        AttnBuffers {
            att: &mut att,
            out: &mut out,
        },
    )
    .unwrap();
    assert_eq!(out, [1.0; 16]);
    assert!(matches!(
        attend_sequence(
            &cfg,
            Mask::Causal,
            &[0.0; 17],
            &[0.0; 8],
            &[0.0; 8],
            &NoBias,
            AttnBuffers {
                att: &mut att,
                out: &mut out
            }
        ),
        Err(Error::LengthMismatch { .. })
    ));
}
