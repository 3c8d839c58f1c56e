//! RoPE against Hugging Face's own numbers (`tests/fixtures/tables.json`) and
//! against an independent f64 model written here with std maths, at every
//! position 0..=65535, plus property tests and error cases.

use microformer::num::fixed::Q15;
use microformer::pos::rope::{RopeLayout, RopePhases, RopeTable, RopeTableQ15};
use microformer::pos::rope2d::{Rope2d, Rope2dQ15};
use microformer::pos::rope_const::ConstRopeTable;
use microformer::pos::rope_scaling::{
    Llama3Params, LongRopeParams, RopeConfig, RopeScaling, YarnParams,
};
use microformer::Error;
use microformer_testkit::XorShift64;
use serde_json::Value;
use std::f64::consts::TAU;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tables.json");

/// A Q15 value over the whole range (the generator's low 16 bits).
fn q15(rng: &mut XorShift64) -> Q15 {
    rng.next_u64() as i16
}

// ---------------------------------------------------------------------------
// An independent f64 model of Hugging Face's modeling_rope_utils.py (std maths)
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Kind {
    Default,
    Linear(f64),
    Dynamic(f64),
    Yarn {
        factor: f64,
        original: usize,
    },
    Llama3 {
        factor: f64,
        low: f64,
        high: f64,
        original: usize,
    },
    LongRope {
        short: Vec<f64>,
        long: Vec<f64>,
        original: usize,
    },
}

/// One configuration of `tables.json` ("shared configuration").
#[derive(Debug, Clone)]
struct Case {
    name: String,
    theta: f64,
    dim: usize,
    max_pos: usize,
    kind: Kind,
    /// `(seq_len, HF inv_freq, HF attention_factor)`.
    expected: Vec<(usize, Vec<f64>, f64)>,
}

impl Case {
    fn config(&self) -> RopeConfig<'_> {
        let base = RopeConfig::new(self.theta, self.dim, self.max_pos);
        let scaling = match &self.kind {
            Kind::Default => RopeScaling::Default,
            Kind::Linear(f) => RopeScaling::Linear { factor: *f },
            Kind::Dynamic(f) => RopeScaling::Dynamic { factor: *f },
            Kind::Yarn { factor, original } => {
                RopeScaling::Yarn(YarnParams::new(*factor, *original))
            }
            Kind::Llama3 {
                factor,
                low,
                high,
                original,
            } => RopeScaling::Llama3(Llama3Params {
                factor: *factor,
                low_freq_factor: *low,
                high_freq_factor: *high,
                original_max_position_embeddings: *original,
            }),
            Kind::LongRope {
                short,
                long,
                original,
            } => RopeScaling::LongRope(LongRopeParams {
                short_factor: short,
                long_factor: long,
                original_max_position_embeddings: *original,
                factor: None,
                attention_factor: None,
            }),
        };
        base.with_scaling(scaling)
    }

    /// HF's formulas, in f64 with std's `powf`/`ln`/`floor`/`ceil`.
    fn ref_inv_freq(&self, seq_len: usize) -> Vec<f64> {
        let d = self.dim as f64;
        let theta = self.theta;
        let pos_freq = |i: usize| theta.powf((2 * i) as f64 / d);
        (0..self.dim / 2)
            .map(|i| match &self.kind {
                Kind::Default => 1.0 / pos_freq(i),
                Kind::Linear(f) => 1.0 / pos_freq(i) / f,
                Kind::Dynamic(f) => {
                    let len = seq_len.max(self.max_pos) as f64;
                    let base =
                        theta * (f * len / self.max_pos as f64 - (f - 1.0)).powf(d / (d - 2.0));
                    1.0 / base.powf((2 * i) as f64 / d)
                }
                Kind::Yarn { factor, original } => {
                    let dim_of =
                        |r: f64| d * (*original as f64 / (r * TAU)).ln() / (2.0 * theta.ln());
                    let lo = dim_of(32.0).floor().max(0.0);
                    let mut hi = dim_of(1.0).ceil().min(d - 1.0);
                    if lo == hi {
                        hi += 0.001;
                    }
                    let ramp = ((i as f64 - lo) / (hi - lo)).clamp(0.0, 1.0);
                    let extrapolation = 1.0 / pos_freq(i);
                    let interpolation = 1.0 / (factor * pos_freq(i));
                    interpolation * ramp + extrapolation * (1.0 - ramp)
                }
                Kind::Llama3 {
                    factor,
                    low,
                    high,
                    original,
                } => {
                    let inv = 1.0 / pos_freq(i);
                    let old = *original as f64;
                    let wavelen = TAU / inv;
                    if wavelen < old / high {
                        inv
                    } else if wavelen > old / low {
                        inv / factor
                    } else {
                        let s = (old / wavelen - low) / (high - low);
                        (1.0 - s) * inv / factor + s * inv
                    }
                }
                Kind::LongRope {
                    short,
                    long,
                    original,
                } => {
                    let f = if seq_len > *original {
                        long[i]
                    } else {
                        short[i]
                    };
                    1.0 / (f * pos_freq(i))
                }
            })
            .collect()
    }

    fn ref_attention(&self) -> f64 {
        match &self.kind {
            Kind::Yarn { factor, .. } => 0.1 * factor.ln() + 1.0,
            Kind::LongRope { original, .. } => {
                let factor = self.max_pos as f64 / *original as f64;
                if factor <= 1.0 {
                    1.0
                } else {
                    (1.0 + factor.ln() / (*original as f64).ln()).sqrt()
                }
            }
            _ => 1.0,
        }
    }
}

fn f64_list(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(FIXTURES).expect("tables.json");
    let json: Value = serde_json::from_str(&text).expect("json");
    let mut out = Vec::new();
    for entry in json["rope"].as_array().expect("rope entries") {
        let cfg = &entry["config"];
        let rope = &cfg["rope"];
        let max_pos = cfg["max_pos"].as_u64().expect("max_pos") as usize;
        let factor = rope["factor"].as_f64();
        let original = rope["original_max_position_embeddings"]
            .as_u64()
            .map(|v| v as usize);
        let rope_type = rope["rope_type"].as_str().expect("rope_type");
        let kind = match rope_type {
            "default" => Kind::Default,
            "linear" => Kind::Linear(factor.expect("factor")),
            "dynamic" => Kind::Dynamic(factor.expect("factor")),
            "yarn" => {
                // The fixture uses HF's defaults for everything else.
                for key in [
                    "beta_fast",
                    "beta_slow",
                    "mscale",
                    "mscale_all_dim",
                    "attention_factor",
                    "truncate",
                ] {
                    assert!(
                        rope.get(key).is_none(),
                        "yarn fixture sets {key}: extend the test"
                    );
                }
                Kind::Yarn {
                    factor: factor.expect("factor"),
                    original: original.expect("original"),
                }
            }
            "llama3" => Kind::Llama3 {
                factor: factor.expect("factor"),
                low: rope["low_freq_factor"].as_f64().expect("low"),
                high: rope["high_freq_factor"].as_f64().expect("high"),
                original: original.expect("original"),
            },
            "longrope" => {
                assert!(factor.is_none() && rope.get("attention_factor").is_none());
                Kind::LongRope {
                    short: f64_list(&rope["short_factor"]),
                    long: f64_list(&rope["long_factor"]),
                    original: original.expect("original"),
                }
            }
            other => panic!("unknown rope type {other}"),
        };
        let expected = entry["by_seq_len"]
            .as_array()
            .expect("by_seq_len")
            .iter()
            .map(|b| {
                let seq_len = b["seq_len"].as_u64().map_or(max_pos, |v| v as usize);
                (
                    seq_len,
                    f64_list(&b["inv_freq"]),
                    b["attention_factor"].as_f64().expect("attention"),
                )
            })
            .collect();
        out.push(Case {
            name: format!("{rope_type}/d{}", cfg["head_dim"]),
            theta: rope["rope_theta"].as_f64().expect("theta"),
            dim: cfg["head_dim"].as_u64().expect("head_dim") as usize,
            max_pos,
            kind,
            expected,
        });
    }
    out
}

// ---------------------------------------------------------------------------
// Hugging Face fixtures
// ---------------------------------------------------------------------------

#[test]
fn inv_freq_and_attention_match_hugging_face() {
    let cases = cases();
    let mut types: Vec<&str> = Vec::new();
    let (mut worst_rel, mut worst_att, mut worst_model) = (0.0f64, 0.0f64, 0.0f64);
    for case in &cases {
        let cfg = case.config();
        assert_eq!(cfg.validate(), Ok(()), "{}", case.name);
        types.push(cfg.scaling.name());
        for (seq_len, hf, hf_att) in &case.expected {
            let mut ours = vec![f64::NAN; cfg.pairs()];
            cfg.inv_freqs(*seq_len, &mut ours).expect("inv_freqs");
            assert_eq!(hf.len(), ours.len(), "{}", case.name);
            let model = case.ref_inv_freq(*seq_len);
            for i in 0..ours.len() {
                let rel = ((ours[i] - hf[i]) / hf[i]).abs();
                assert!(
                    rel <= 1e-6,
                    "{} L={seq_len} i={i}: {} vs HF {}",
                    case.name,
                    ours[i],
                    hf[i]
                );
                worst_rel = worst_rel.max(rel);
                // const-fn maths vs std maths: same formula, ~1e-15
                let m = ((ours[i] - model[i]) / model[i]).abs();
                assert!(
                    m <= 1e-13,
                    "{} i={i}: {} vs model {}",
                    case.name,
                    ours[i],
                    model[i]
                );
                worst_model = worst_model.max(m);
            }
            let att = cfg.attention_factor(*seq_len);
            assert!(
                (att - hf_att).abs() <= 1e-6,
                "{}: attention {att} vs {hf_att}",
                case.name
            );
            assert!((case.ref_attention() - hf_att).abs() <= 1e-12);
            worst_att = worst_att.max((att - hf_att).abs());
        }
    }
    // every HF rope type is covered, dynamic and longrope at several lengths
    for t in ["default", "linear", "dynamic", "yarn", "llama3", "longrope"] {
        assert!(types.contains(&t), "{t} missing from the fixture");
    }
    println!("inv_freq vs HF: worst rel {worst_rel:.3e}; vs std model {worst_model:.3e}; attention {worst_att:.3e}");
}

// ---------------------------------------------------------------------------
// Every position 0..=65535 against the f64 model
// ---------------------------------------------------------------------------

const POSITIONS: usize = 65536;
const CHUNK: usize = 4096;

/// Worst errors seen (f32 in absolute units and as a fraction of the
/// "rounded once" bound, Q15 in LSB).
#[derive(Default, Debug)]
struct Worst {
    f32_abs: f64,
    f32_of_bound: f64,
    q15_table: f64,
    q15_phases: f64,
    rot_table: f64,
    rot_phases: f64,
}

/// Value of `x` in Q15 LSB, saturated to the Q15 range.
#[inline(always)] // the helpers of the hot loop stay cheap in debug builds
fn q15_model(x: f64) -> f64 {
    (x * 32768.0).clamp(-32768.0, 32767.0)
}

/// `|a − b|`.
#[inline(always)]
fn dist(a: f64, b: f64) -> f64 {
    if a > b {
        a - b
    } else {
        b - a
    }
}

/// Largest of three (no NaN here).
#[inline(always)]
fn max3(a: f64, b: f64, c: f64) -> f64 {
    let m = if a > b { a } else { b };
    if m > c {
        m
    } else {
        c
    }
}

/// Checks the f32 table, the Q15 table, the phases and both Q15 rotations of
/// one configuration at every position 0..=65535 against the f64 model
/// `a·(cos, sin)(p·ω_i)` (std maths, `ω_i` from [`Case::ref_inv_freq`]).
///
/// Bounds asserted per element: f32 within 1e-6 absolute and within
/// "rounded once" (`2^-24·|v|` plus 5e-11 for the f64 angle, ≈ p·ω·2^-52
/// twice); Q15 cos/sin (table and phases) within 2 LSB of the model
/// saturated to Q15; Q15 rotation of a random Q15 pair within 3 LSB of the
/// f64 rotation of the same input (saturated). With `a != 1` the rotation
/// uses the unscaled table and phases (a scaled Q15 table saturates).
fn check_every_position(case: &Case, seq_len: usize, seed: u64) -> Worst {
    let cfg = case.config();
    let pairs = cfg.pairs();
    let a = cfg.attention_factor(seq_len);
    let w = case.ref_inv_freq(seq_len);
    let mut rng = XorShift64(seed);
    let mut worst = Worst::default();
    let two24 = 2f64.powi(-24);

    let mut cos = vec![0f32; CHUNK * pairs];
    let mut sin = vec![0f32; CHUNK * pairs];
    let mut cq = vec![0i16; CHUNK * pairs];
    let mut sq = vec![0i16; CHUNK * pairs];
    let mut cu = vec![0i16; if a == 1.0 { 0 } else { CHUNK * pairs }];
    let mut su = vec![0i16; cu.len()];
    let mut steps = vec![0u64; pairs];
    let mut steps_u = vec![0u64; pairs];
    let phases = RopePhases::new(&cfg, seq_len, &mut steps).expect("phases");
    let phases_u = RopePhases::new_unscaled(&cfg, seq_len, &mut steps_u).expect("phases");
    let rot_phases = if a == 1.0 { &phases } else { &phases_u };
    let (mut pc, mut ps) = (vec![0i16; pairs], vec![0i16; pairs]);
    let mut head = vec![0i16; 2 * pairs];
    let mut head2 = vec![0i16; 2 * pairs];
    let mut x = vec![(0i16, 0i16); pairs];

    for first in (0..POSITIONS).step_by(CHUNK) {
        assert_eq!(
            RopeTable::fill(&cfg, seq_len, first, &mut cos, &mut sin),
            Ok(CHUNK)
        );
        assert_eq!(
            RopeTableQ15::fill(&cfg, seq_len, first, &mut cq, &mut sq),
            Ok(CHUNK)
        );
        let rot_table = if a == 1.0 {
            RopeTableQ15::new(&cq, &sq, pairs).expect("table")
        } else {
            let filled = RopeTableQ15::fill_unscaled(&cfg, seq_len, first, &mut cu, &mut su);
            assert_eq!(filled, Ok(CHUNK));
            RopeTableQ15::new(&cu, &su, pairs).expect("table")
        };
        // alternate the layouts chunk by chunk; dims of pair i are (lo + st·i, hi + st·i)
        let (layout, lo, hi, st) = if (first / CHUNK) % 2 == 0 {
            (RopeLayout::HalfSplit, 0, pairs, 1)
        } else {
            (RopeLayout::Interleaved, 0, 1, 2)
        };

        for r in 0..CHUNK {
            let p = first + r;
            phases.fill_row(p, &mut pc, &mut ps).expect("phase row");
            for (i, xi) in x.iter_mut().enumerate() {
                let bits = rng.next_u64();
                *xi = (bits as i16, (bits >> 16) as i16);
                head[lo + st * i] = xi.0;
                head[hi + st * i] = xi.1;
            }
            head2.copy_from_slice(&head);
            rot_table.rotate(layout, r, &mut head).expect("rotate");
            rot_phases.rotate(layout, p, &mut head2).expect("rotate");
            let row = r * pairs;
            for i in 0..pairs {
                let (s, c) = (p as f64 * w[i]).sin_cos();
                let (ac, as_) = (a * c, a * s);
                // f32 table
                let (gc, gs) = (cos[row + i] as f64, sin[row + i] as f64);
                let (ec, es) = (dist(gc, ac), dist(gs, as_));
                let (bc, bs) = (
                    dist(ac, 0.0) * two24 + 5e-11,
                    dist(as_, 0.0) * two24 + 5e-11,
                );
                if !(ec <= 1e-6 && es <= 1e-6 && ec <= bc && es <= bs) {
                    panic!(
                        "{} L={seq_len} p={p} i={i}: f32 ({gc}, {gs}) vs ({ac}, {as_})",
                        case.name
                    );
                }
                worst.f32_abs = max3(worst.f32_abs, ec, es);
                worst.f32_of_bound = max3(worst.f32_of_bound, ec / bc, es / bs);
                // Q15 table and phases
                let (mc, ms) = (q15_model(ac), q15_model(as_));
                let et = max3(
                    0.0,
                    dist(cq[row + i] as f64, mc),
                    dist(sq[row + i] as f64, ms),
                );
                let ep = max3(0.0, dist(pc[i] as f64, mc), dist(ps[i] as f64, ms));
                if !(et <= 2.0 && ep <= 2.0) {
                    panic!(
                        "{} L={seq_len} p={p} i={i}: Q15 table ({}, {}) phases ({}, {}) vs ({mc}, {ms})",
                        case.name, cq[row + i], sq[row + i], pc[i], ps[i]
                    );
                }
                worst.q15_table = max3(worst.q15_table, et, 0.0);
                worst.q15_phases = max3(worst.q15_phases, ep, 0.0);
                // Q15 rotations vs the f64 rotation of the same input
                let (f0, f1) = (x[i].0 as f64, x[i].1 as f64);
                let y0 = q15_model((f0 * c - f1 * s) / 32768.0);
                let y1 = q15_model((f0 * s + f1 * c) / 32768.0);
                let (d0, d1) = (lo + st * i, hi + st * i);
                let rt = max3(0.0, dist(head[d0] as f64, y0), dist(head[d1] as f64, y1));
                let rp = max3(0.0, dist(head2[d0] as f64, y0), dist(head2[d1] as f64, y1));
                if !(rt <= 3.0 && rp <= 3.0) {
                    panic!(
                        "{} L={seq_len} p={p} i={i}: rotation of {:?}: table ({}, {}) phases ({}, {}) vs ({y0}, {y1})",
                        case.name, x[i], head[d0], head[d1], head2[d0], head2[d1]
                    );
                }
                worst.rot_table = max3(worst.rot_table, rt, 0.0);
                worst.rot_phases = max3(worst.rot_phases, rp, 0.0);
            }
        }
    }
    println!("{} L={seq_len} a={a}: {worst:?}", case.name);
    // The documented bounds (module docs of pos::rope): Q15 table ≤ 0.5 LSB;
    // phases ≤ 1.2 LSB (a = 1) or ≤ 1.2·a + 0.5; rotation ≤ 2 LSB with the
    // table (≤ 2.9 with phases) for |x0|, |x1| ≤ 1.
    assert!(worst.q15_table <= 0.5 + 1e-9, "{worst:?}");
    let phase_bound = if a == 1.0 { 1.2 } else { 1.2 * a + 0.5 };
    assert!(worst.q15_phases <= phase_bound, "{worst:?}");
    assert!(
        worst.rot_table <= 2.0 && worst.rot_phases <= 2.9,
        "{worst:?}"
    );
    worst
}

fn every_position(index: usize, seq_len: usize) {
    let cases = cases();
    let case = &cases[index];
    assert!(
        case.expected.iter().any(|e| e.0 == seq_len),
        "{} has no L={seq_len}",
        case.name
    );
    check_every_position(
        case,
        seq_len,
        0x9E37_79B9_7F4A_7C15 ^ (index as u64 * 65599 + seq_len as u64),
    );
}

// One test per distinct table, so that the harness runs them in parallel.
#[test]
fn every_position_default_d64() {
    every_position(0, 2048);
}
#[test]
fn every_position_default_d8() {
    every_position(1, 512);
}
#[test]
fn every_position_linear() {
    every_position(2, 4096);
}
#[test]
fn every_position_yarn() {
    every_position(3, 4096);
}
#[test]
fn every_position_llama3() {
    every_position(4, 8192);
}
#[test]
fn every_position_dynamic_1024() {
    every_position(5, 1024);
}
#[test]
fn every_position_dynamic_3000() {
    every_position(5, 3000);
}
#[test]
fn every_position_longrope_short() {
    every_position(6, 1024);
}
#[test]
fn every_position_longrope_long() {
    every_position(6, 4096);
}

/// Dynamic NTK at `seq_len <= max_pos` (256 and 512 in the fixture) is plain
/// RoPE: its tables are bit for bit those of `default/d64` (same θ and d),
/// which `every_position_default_d64` checks at every position.
#[test]
fn dynamic_within_max_pos_is_the_default_table() {
    let cases = cases();
    let (plain, dynamic) = (&cases[0], &cases[5]);
    assert_eq!((plain.theta, plain.dim), (dynamic.theta, dynamic.dim));
    let (pc, dc) = (plain.config(), dynamic.config());
    for seq_len in [0, 256, 512] {
        assert!(seq_len == 0 || dynamic.expected.iter().any(|e| e.0 == seq_len));
        for i in 0..pc.pairs() {
            assert_eq!(
                dc.inv_freq(i, seq_len).to_bits(),
                pc.inv_freq(i, 2048).to_bits()
            );
        }
        assert_eq!(dc.attention_factor(seq_len), 1.0);
        let n = 512 * pc.pairs();
        let (mut c1, mut s1, mut c2, mut s2) =
            (vec![0f32; n], vec![0f32; n], vec![0f32; n], vec![0f32; n]);
        RopeTable::fill(&pc, 2048, 60_000, &mut c1, &mut s1).expect("fill");
        RopeTable::fill(&dc, seq_len, 60_000, &mut c2, &mut s2).expect("fill");
        assert!(c1.iter().zip(&c2).all(|(x, y)| x.to_bits() == y.to_bits()));
        assert!(s1.iter().zip(&s2).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}

#[test]
fn fixture_order_is_as_expected() {
    let names: Vec<String> = cases().iter().map(|c| c.name.clone()).collect();
    assert_eq!(
        names,
        [
            "default/d64",
            "default/d8",
            "linear/d128",
            "yarn/d64",
            "llama3/d128",
            "dynamic/d64",
            "longrope/d32"
        ]
    );
}

// ---------------------------------------------------------------------------
// Properties (deterministic PRNG)
// ---------------------------------------------------------------------------

/// A random valid configuration with attention factor 1 (`kind` 0..4: default,
/// linear, dynamic, llama3), even rotary dim 2..=64 (4..=64 for dynamic).
fn random_config(rng: &mut XorShift64) -> RopeConfig<'static> {
    let dim = 2 * (1 + rng.below(32) as usize);
    let theta = rng.f64_in(100.0, 1e6);
    let max_pos = 64 + rng.below(8192) as usize;
    let cfg = RopeConfig::new(theta, dim.max(4), max_pos);
    let scaling = match rng.below(4) {
        0 => RopeScaling::Default,
        1 => RopeScaling::Linear {
            factor: rng.f64_in(0.25, 16.0),
        },
        2 => RopeScaling::Dynamic {
            factor: rng.f64_in(1.0, 8.0),
        },
        _ => RopeScaling::Llama3(Llama3Params {
            factor: rng.f64_in(1.0, 16.0),
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 16 + rng.below(2048) as usize,
        }),
    };
    cfg.with_scaling(scaling)
}

/// The f32 `(cos, sin)` row of one position, built by `RopeTable::fill`.
fn row(cfg: &RopeConfig<'_>, seq_len: usize, position: usize) -> (Vec<f32>, Vec<f32>) {
    let mut c = vec![0f32; cfg.pairs()];
    let mut s = vec![0f32; cfg.pairs()];
    assert_eq!(
        RopeTable::fill(cfg, seq_len, position, &mut c, &mut s),
        Ok(1)
    );
    (c, s)
}

fn rotate_at(
    cfg: &RopeConfig<'_>,
    seq_len: usize,
    layout: RopeLayout,
    p: usize,
    x: &[f32],
) -> Vec<f32> {
    let (c, s) = row(cfg, seq_len, p);
    let t = RopeTable::new(&c, &s, cfg.pairs()).expect("table");
    let mut y = x.to_vec();
    t.rotate(layout, 0, &mut y).expect("rotate");
    y
}

fn random_vec(rng: &mut XorShift64, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.f64_in(-2.0, 2.0) as f32).collect()
}

fn layout_of(rng: &mut XorShift64) -> RopeLayout {
    if rng.below(2) == 0 {
        RopeLayout::Interleaved
    } else {
        RopeLayout::HalfSplit
    }
}

/// `|Rx| = |x|` within 1e-6 relative: per pair the computed rotation is
/// within `3u·r` per component (u = 2^-24: table rounding + two products +
/// one sum), so the norm within `√2·3u ≈ 2.5e-7` relative.
#[test]
fn rotation_keeps_the_norm() {
    let mut rng = XorShift64(0x1234_5678_9ABC_DEF1);
    let mut worst = 0.0f64;
    for _ in 0..3000 {
        let cfg = random_config(&mut rng);
        let seq_len = rng.below(20_000) as usize;
        let extra = rng.below(4) as usize; // partial rotary: untouched tail
        let x = random_vec(&mut rng, cfg.rotary_dim + extra);
        let p = rng.below(65536) as usize;
        let y = rotate_at(&cfg, seq_len, layout_of(&mut rng), p, &x);
        assert_eq!(x[cfg.rotary_dim..], y[cfg.rotary_dim..]);
        let n = |v: &[f32]| {
            v.iter()
                .map(|&e| (e as f64) * (e as f64))
                .sum::<f64>()
                .sqrt()
        };
        let rel = ((n(&y) - n(&x)) / n(&x)).abs();
        assert!(rel <= 1e-6, "{cfg:?} p={p}: {rel}");
        worst = worst.max(rel);
    }
    println!("norm: worst relative change {worst:.3e}");
}

/// `<R(m)q, R(n)k> = <R(m+s)q, R(n+s)k>`. Each rotated component is within
/// `3u·r_pair` of exact (see above), so each pair's contribution to a dot
/// product within `2·√2·3u·r_q·r_k`; the two dots (accumulated in f64)
/// differ by at most `2·2√2·3u·S ≈ 16.98u·S`, `S = Σ_pairs r_q·r_k`, plus
/// `1e-10·S` for the f64 angles (≈ p·ω·2^-52) and tiny table values.
#[test]
fn scores_depend_only_on_relative_position() {
    let mut rng = XorShift64(0x0DDB_A11C_AFE0_BEEF);
    let u = 2f64.powi(-24);
    let mut worst = 0.0f64;
    for _ in 0..3000 {
        let cfg = random_config(&mut rng);
        let seq_len = rng.below(20_000) as usize;
        let layout = layout_of(&mut rng);
        let q = random_vec(&mut rng, cfg.rotary_dim);
        let k = random_vec(&mut rng, cfg.rotary_dim);
        let m = rng.below(40_000) as usize;
        let n = rng.below(40_000) as usize;
        let s = rng.below(25_536) as usize;
        let dot = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(&x, &y)| x as f64 * y as f64)
                .sum::<f64>()
        };
        let d1 = dot(
            &rotate_at(&cfg, seq_len, layout, m, &q),
            &rotate_at(&cfg, seq_len, layout, n, &k),
        );
        let d2 = dot(
            &rotate_at(&cfg, seq_len, layout, m + s, &q),
            &rotate_at(&cfg, seq_len, layout, n + s, &k),
        );
        let pairs = cfg.pairs();
        let r = |v: &[f32], i: usize| match layout {
            RopeLayout::Interleaved => (v[2 * i] as f64).hypot(v[2 * i + 1] as f64),
            RopeLayout::HalfSplit => (v[i] as f64).hypot(v[i + pairs] as f64),
        };
        let big_s: f64 = (0..pairs).map(|i| r(&q, i) * r(&k, i)).sum();
        let tol = (4.0 * 2f64.sqrt() * 3.0 * u + 1e-10) * big_s;
        assert!(
            (d1 - d2).abs() <= tol,
            "{cfg:?} m={m} n={n} s={s}: {d1} vs {d2} (tol {tol})"
        );
        worst = worst.max((d1 - d2).abs() / tol);
    }
    println!("relative position: worst |d1-d2| = {worst:.3} of the bound");
}

/// Interleaved and half-split agree exactly after the permutation
/// `2i ↔ i`, `2i+1 ↔ i + d/2` (same operations on the same numbers).
#[test]
fn layouts_agree_after_permutation() {
    let mut rng = XorShift64(0xC0FF_EE00_1234_5678);
    for _ in 0..2000 {
        let cfg = random_config(&mut rng);
        let pairs = cfg.pairs();
        let p = rng.below(65536) as usize;
        let tail = rng.below(3) as usize;
        let x = random_vec(&mut rng, 2 * pairs + tail);
        let mut perm = x.clone();
        for i in 0..pairs {
            perm[i] = x[2 * i];
            perm[i + pairs] = x[2 * i + 1];
        }
        let a = rotate_at(&cfg, 0, RopeLayout::Interleaved, p, &x);
        let b = rotate_at(&cfg, 0, RopeLayout::HalfSplit, p, &perm);
        for i in 0..pairs {
            assert_eq!(a[2 * i].to_bits(), b[i].to_bits());
            assert_eq!(a[2 * i + 1].to_bits(), b[i + pairs].to_bits());
        }
        assert_eq!(a[2 * pairs..], b[2 * pairs..]);
        // Q15: same
        let mut cq = vec![0i16; pairs];
        let mut sq = vec![0i16; pairs];
        RopeTableQ15::fill(&cfg, 0, p, &mut cq, &mut sq).expect("fill");
        let t = RopeTableQ15::new(&cq, &sq, pairs).expect("table");
        let xq: Vec<i16> = (0..2 * pairs).map(|_| q15(&mut rng)).collect();
        let mut pq = xq.clone();
        for i in 0..pairs {
            pq[i] = xq[2 * i];
            pq[i + pairs] = xq[2 * i + 1];
        }
        let mut aq = xq.clone();
        t.rotate(RopeLayout::Interleaved, 0, &mut aq)
            .expect("rotate");
        t.rotate(RopeLayout::HalfSplit, 0, &mut pq).expect("rotate");
        for i in 0..pairs {
            assert_eq!((aq[2 * i], aq[2 * i + 1]), (pq[i], pq[i + pairs]));
        }
    }
}

/// On row 0 the row half of a 2-D head is untouched and the column half is
/// exactly 1-D RoPE with half the pairs (and symmetrically on column 0).
#[test]
fn rope2d_reduces_to_1d_on_a_line() {
    let mut rng = XorShift64(0xA5A5_5A5A_0F0F_F0F0);
    for _ in 0..500 {
        let mut axis = random_config(&mut rng);
        let side = 1 + rng.below(64) as usize;
        axis.max_position_embeddings = side;
        let ap = axis.pairs(); // A pairs per axis, 2A per head
        let mut cos = vec![0f32; side * ap];
        let mut sin = vec![0f32; side * ap];
        assert_eq!(RopeTable::fill(&axis, 0, 0, &mut cos, &mut sin), Ok(side));
        let table = RopeTable::new(&cos, &sin, ap).expect("table");
        let r2 = Rope2d::new(table);
        let layout = layout_of(&mut rng);
        let x = random_vec(&mut rng, 4 * ap + 1);
        // dims of head pair k (of 2A) in this layout
        let dims = |k: usize| match layout {
            RopeLayout::Interleaved => (2 * k, 2 * k + 1),
            RopeLayout::HalfSplit => (k, k + 2 * ap),
        };
        // gather the pairs k0..k0+A into a 1-D head of A pairs in the same layout
        let gather = |v: &[f32], k0: usize| {
            let mut g = vec![0f32; 2 * ap];
            for j in 0..ap {
                let (a, b) = dims(k0 + j);
                match layout {
                    RopeLayout::Interleaved => (g[2 * j], g[2 * j + 1]) = (v[a], v[b]),
                    RopeLayout::HalfSplit => (g[j], g[j + ap]) = (v[a], v[b]),
                }
            }
            g
        };
        let c = rng.below(side as u64) as usize;
        // row 0, column c: column half (pairs 0..A) = 1-D at c, row half untouched
        let mut y = x.clone();
        r2.rotate(layout, 0, c, &mut y).expect("rotate");
        let mut one = gather(&x, 0);
        table.rotate(layout, c, &mut one).expect("rotate");
        assert_eq!(gather(&y, 0), one);
        assert_eq!(gather(&y, ap), gather(&x, ap));
        assert_eq!(y[4 * ap], x[4 * ap]);
        // column 0, row c: the mirror image
        let mut y = x.clone();
        r2.rotate(layout, c, 0, &mut y).expect("rotate");
        let mut one = gather(&x, ap);
        table.rotate(layout, c, &mut one).expect("rotate");
        assert_eq!(gather(&y, ap), one);
        assert_eq!(gather(&y, 0), gather(&x, 0));
        // Q15 2-D on a line, likewise
        let mut cq = vec![0i16; side * ap];
        let mut sq = vec![0i16; side * ap];
        RopeTableQ15::fill(&axis, 0, 0, &mut cq, &mut sq).expect("fill");
        let tq = RopeTableQ15::new(&cq, &sq, ap).expect("table");
        let xq: Vec<i16> = (0..4 * ap).map(|_| q15(&mut rng)).collect();
        let mut yq = xq.clone();
        Rope2dQ15::new(tq)
            .rotate(layout, 0, c, &mut yq)
            .expect("rotate");
        let gq = |v: &[i16], k0: usize| {
            (0..ap)
                .map(|j| {
                    let (a, b) = dims(k0 + j);
                    (v[a], v[b])
                })
                .collect::<Vec<_>>()
        };
        let mut oneq: Vec<i16> = vec![0; 2 * ap];
        for (j, (a, b)) in gq(&xq, 0).into_iter().enumerate() {
            match layout {
                RopeLayout::Interleaved => (oneq[2 * j], oneq[2 * j + 1]) = (a, b),
                RopeLayout::HalfSplit => (oneq[j], oneq[j + ap]) = (a, b),
            }
        }
        tq.rotate(layout, c, &mut oneq).expect("rotate");
        for (j, (a, b)) in gq(&yq, 0).into_iter().enumerate() {
            let want = match layout {
                RopeLayout::Interleaved => (oneq[2 * j], oneq[2 * j + 1]),
                RopeLayout::HalfSplit => (oneq[j], oneq[j + ap]),
            };
            assert_eq!((a, b), want);
        }
        // row half at row 0: cos = 32767, sin = 0 ⇒ x·32767/32768 rounded, within 1 LSB
        for ((a, b), (xa, xb)) in gq(&yq, ap).into_iter().zip(gq(&xq, ap)) {
            assert!((a as i32 - xa as i32).abs() <= 1 && (b as i32 - xb as i32).abs() <= 1);
        }
    }
}

// ---------------------------------------------------------------------------
// Compile-time table
// ---------------------------------------------------------------------------

const CFG8: RopeConfig<'static> = RopeConfig::new(10_000.0, 8, 512);
static TABLE8: ConstRopeTable<512, 4> = ConstRopeTable::new(&CFG8, 512);

const YARN: RopeConfig<'static> =
    RopeConfig::new(10_000.0, 64, 4096).with_scaling(RopeScaling::Yarn(YarnParams::new(8.0, 512)));
static TABLE_YARN: ConstRopeTable<256, 32> = ConstRopeTable::new(&YARN, 4096);

fn assert_bit_identical<const P: usize, const H: usize>(
    t: &ConstRopeTable<P, H>,
    cfg: &RopeConfig<'_>,
    seq_len: usize,
) {
    let mut cos = vec![0f32; P * H];
    let mut sin = vec![0f32; P * H];
    assert_eq!(RopeTable::fill(cfg, seq_len, 0, &mut cos, &mut sin), Ok(P));
    for p in 0..P {
        for i in 0..H {
            assert_eq!(
                t.cos[p][i].to_bits(),
                cos[p * H + i].to_bits(),
                "cos p={p} i={i}"
            );
            assert_eq!(
                t.sin[p][i].to_bits(),
                sin[p * H + i].to_bits(),
                "sin p={p} i={i}"
            );
        }
    }
    let view = t.as_table();
    assert_eq!((view.positions(), view.pairs()), (P, H));
    assert_eq!(view.row(P - 1).expect("row").0, &cos[(P - 1) * H..]);
}

#[test]
fn compile_time_table_is_bit_identical_to_run_time() {
    assert_bit_identical(&TABLE8, &CFG8, 512);
    assert_bit_identical(&TABLE_YARN, &YARN, 4096);
    assert_eq!(ConstRopeTable::<512, 4>::BYTES, 16 * 1024);
    assert_eq!(core::mem::size_of::<ConstRopeTable<512, 4>>(), 16 * 1024);
    // the YaRN table carries the attention factor 0.1·ln 8 + 1
    assert_eq!(TABLE_YARN.cos[0][0], (0.1 * 8f64.ln() + 1.0) as f32);
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

#[test]
fn errors_are_typed() {
    let odd = RopeConfig::new(10_000.0, 7, 64);
    let (mut c, mut s) = (vec![0f32; 64], vec![0f32; 64]);
    assert_eq!(
        RopeTable::fill(&odd, 0, 0, &mut c, &mut s),
        Err(Error::OddDimension { dim: 7 })
    );
    let (mut cq, mut sq) = (vec![0i16; 64], vec![0i16; 64]);
    assert_eq!(
        RopeTableQ15::fill(&odd, 0, 0, &mut cq, &mut sq),
        Err(Error::OddDimension { dim: 7 })
    );
    let mut steps = [0u64; 8];
    assert_eq!(
        RopePhases::new(&odd, 0, &mut steps).unwrap_err(),
        Error::OddDimension { dim: 7 }
    );
    assert_eq!(
        RopeConfig::new(10_000.0, 0, 64).validate(),
        Err(Error::ZeroDimension)
    );

    let cfg = RopeConfig::new(10_000.0, 8, 64);
    for factor in [0.0, -2.0, f64::NAN, f64::INFINITY] {
        for scaling in [
            RopeScaling::Linear { factor },
            RopeScaling::Dynamic { factor },
            RopeScaling::Yarn(YarnParams::new(factor, 16)),
            RopeScaling::Llama3(Llama3Params {
                factor,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 16,
            }),
        ] {
            let bad = cfg.with_scaling(scaling);
            assert_eq!(
                RopeTable::fill(&bad, 0, 0, &mut c, &mut s),
                Err(Error::InvalidFactor),
                "{scaling:?}"
            );
        }
    }
    let short = [1.0; 4];
    let three = [1.0; 3];
    let lr = cfg.with_scaling(RopeScaling::LongRope(LongRopeParams {
        short_factor: &short,
        long_factor: &three,
        original_max_position_embeddings: 16,
        factor: None,
        attention_factor: None,
    }));
    assert_eq!(
        lr.validate(),
        Err(Error::FactorCountMismatch {
            expected: 4,
            got: 3
        })
    );

    // rotary dim > head length
    assert_eq!(RopeTable::fill(&cfg, 0, 0, &mut c, &mut s), Ok(16));
    let t = RopeTable::new(&c, &s, 4).expect("table");
    let mut head = [0f32; 6];
    let too_big = Err(Error::RotaryDimTooLarge {
        rotary_dim: 8,
        head_dim: 6,
    });
    assert_eq!(t.rotate(RopeLayout::Interleaved, 0, &mut head), too_big);
    RopeTableQ15::fill(&cfg, 0, 0, &mut cq, &mut sq).expect("fill");
    let tq = RopeTableQ15::new(&cq, &sq, 4).expect("table");
    let mut hq = [0i16; 6];
    assert_eq!(tq.rotate(RopeLayout::HalfSplit, 0, &mut hq), too_big);
    let ph = RopePhases::new(&cfg, 0, &mut steps).expect("phases");
    assert_eq!(ph.rotate(RopeLayout::HalfSplit, 0, &mut hq), too_big);
    let r2 = Rope2d::new(RopeTable::new(&c[..32], &s[..32], 2).expect("table"));
    assert_eq!(r2.rotate(RopeLayout::Interleaved, 0, 0, &mut head), too_big);

    // position outside the table
    let mut h8 = [0f32; 8];
    assert_eq!(
        t.rotate(RopeLayout::Interleaved, 16, &mut h8),
        Err(Error::PositionOutOfRange {
            position: 16,
            len: 16
        })
    );
    assert_eq!(
        t.row(99).unwrap_err(),
        Error::PositionOutOfRange {
            position: 99,
            len: 16
        }
    );
    let mut hq8 = [0i16; 8];
    assert_eq!(
        tq.rotate(RopeLayout::Interleaved, 16, &mut hq8),
        Err(Error::PositionOutOfRange {
            position: 16,
            len: 16
        })
    );
    assert_eq!(
        r2.rotate(RopeLayout::Interleaved, 3, 16, &mut h8),
        Err(Error::PositionOutOfRange {
            position: 16,
            len: 16
        })
    );
    assert!(matches!(
        ph.rotate(RopeLayout::Interleaved, usize::MAX, &mut hq8),
        Err(Error::PositionOutOfRange { .. })
    ));
    assert_eq!(
        TABLE8.as_table().row(512).unwrap_err(),
        Error::PositionOutOfRange {
            position: 512,
            len: 512
        }
    );

    // short buffers
    let (mut c3, mut s3) = ([0f32; 3], [0f32; 3]);
    assert_eq!(
        RopeTable::fill(&cfg, 0, 0, &mut c3, &mut s3),
        Err(Error::BufferTooSmall { needed: 4, got: 3 })
    );
    let (mut cq3, mut sq3) = ([0i16; 3], [0i16; 3]);
    assert_eq!(
        RopeTableQ15::fill(&cfg, 0, 0, &mut cq3, &mut sq3),
        Err(Error::BufferTooSmall { needed: 4, got: 3 })
    );
    assert_eq!(
        RopePhases::new(&cfg, 0, &mut steps[..3]).unwrap_err(),
        Error::BufferTooSmall { needed: 4, got: 3 }
    );
    let mut w = [0f64; 3];
    assert_eq!(
        cfg.inv_freqs(0, &mut w),
        Err(Error::BufferTooSmall { needed: 4, got: 3 })
    );
    assert_eq!(
        RopeTable::new(&c[..3], &s[..3], 4).unwrap_err(),
        Error::BufferTooSmall { needed: 4, got: 3 }
    );
    assert_eq!(
        RopeTable::fill(&cfg, 0, 0, &mut c, &mut s3),
        Err(Error::LengthMismatch {
            expected: 64,
            got: 3
        })
    );
    // a bad configuration gives a NaN const table, and check() reports it
    assert_eq!(
        ConstRopeTable::<4, 4>::check(&odd),
        Err(Error::OddDimension { dim: 7 })
    );
    assert!(ConstRopeTable::<4, 4>::new(&odd, 0).cos[0][0].is_nan());
}
