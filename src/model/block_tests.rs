//! The one forward step against an f64 model of each block shape, written here
//! from the formulas (norms, GELU variants, residual wirings, the three position
//! hooks), on small images with pseudo-random weights.

use super::*;
use crate::image::{self, Image};
use crate::image::{
    slots, Arch, Block, FfnKind, Header, NormKind, PositionHook, Residual, TensorKind,
    TensorSource, FLAG_EMBED_NORM, FLAG_MLP_BIAS, FLAG_OUTPUT_BIAS, FLAG_O_BIAS, FLAG_QKV_BIAS,
    FLAG_ROPE_INTERLEAVED, FLAG_TIED_EMBEDDINGS,
};
use std::collections::BTreeMap;

const VOCAB: usize = 11;
const CONTEXT: usize = 9;

fn header(flags: u32, n_heads: u32, n_kv_heads: u32, rotary_dim: u32, block: Block) -> Header {
    Header {
        arch: Arch::Llama,
        flags,
        dim: 12,
        hidden_dim: 20,
        n_layers: 2,
        n_heads,
        n_kv_heads,
        head_dim: 4,
        vocab_size: VOCAB as u32,
        seq_len: CONTEXT as u32,
        rotary_dim,
        sliding_window: 0,
        norm_eps: 1e-5,
        group_size: 0,
        bos_id: 1,
        eos_id: 2,
        n_tensors: 0,
        image_len: 0,
        train_context: CONTEXT as u32,
        block,
    }
}

type Tensors = BTreeMap<(u16, u16), Vec<f32>>;

/// Pseudo-random tensors for every slot; tables and slopes made to measure.
fn tensors(h: &Header) -> Tensors {
    let mut state =
        0x9e37_79b9_7f4a_7c15u64 ^ u64::from(h.flags) ^ u64::from(h.block.to_words()[0]);
    let mut rnd = || crate::sampler::random_f32(&mut state) * 2.0 - 1.0;
    let mut t = Tensors::new();
    for (k, l) in slots(h) {
        let (r, c) = h.expected_shape(k);
        let v: Vec<f32> = match k {
            TensorKind::RopeCos | TensorKind::RopeSin => {
                let pairs = c;
                let mut v = vec![0f32; r * c];
                for p in 0..r {
                    for i in 0..pairs {
                        let angle = p as f64 * 10f64.powf(-(i as f64) / pairs as f64);
                        v[p * pairs + i] = if k == TensorKind::RopeCos {
                            angle.cos() as f32
                        } else {
                            angle.sin() as f32
                        };
                    }
                }
                v
            }
            TensorKind::AlibiSlopes => (0..c).map(|i| 0.5f32.powi(i as i32 + 1)).collect(),
            TensorKind::T5Buckets => {
                let p = h.block.t5;
                let cfg = crate::pos::t5::T5Buckets::new(
                    false,
                    p.num_buckets as usize,
                    p.max_distance as usize,
                )
                .unwrap();
                let mut b = vec![0u8; c];
                cfg.fill_table(&mut b).unwrap();
                b.iter().map(|&x| f32::from(x)).collect()
            }
            TensorKind::AttnNorm
            | TensorKind::FfnNorm
            | TensorKind::FinalNorm
            | TensorKind::EmbedNorm => (0..c).map(|_| 1.0 + 0.2 * rnd()).collect(),
            _ => (0..r * c).map(|_| rnd() * 0.8).collect(),
        };
        t.insert((k as u16, l), v);
    }
    t
}

fn write_image(h: &Header, t: &Tensors) -> Vec<u32> {
    // The T5 bucket table is bytes (its values are small integers in `t`).
    let buckets: Vec<u8> = t
        .get(&(TensorKind::T5Buckets as u16, 0))
        .map(|v| v.iter().map(|&x| x as u8).collect())
        .unwrap_or_default();
    let srcs: Vec<TensorSource<'_>> = slots(h)
        .map(|(k, l)| match k {
            TensorKind::T5Buckets => TensorSource::U8(&buckets),
            _ => TensorSource::F32(&t[&(k as u16, l)]),
        })
        .collect();
    let len = image::image_len(h, &srcs);
    let mut words = vec![0u32; len / 4];
    let n = image::write(h, &srcs, bytemuck::cast_slice_mut(&mut words)).unwrap();
    assert_eq!(n, len);
    words
}

/// The f64 model: one position at a time over a cache, straight from the formulas.
fn reference(h: &Header, t: &Tensors, tokens: &[usize]) -> Vec<Vec<f64>> {
    let b = h.block;
    let dim = h.dim as usize;
    let hd = h.head_dim as usize;
    let nh = h.n_heads as usize;
    let kvh = h.n_kv_heads as usize;
    let ffn = h.hidden_dim as usize;
    let eps = f64::from(h.norm_eps);
    let get = |k: TensorKind, l: usize| -> Option<Vec<f64>> {
        t.get(&(k as u16, l as u16))
            .map(|v| v.iter().map(|&x| f64::from(x)).collect())
    };
    let w = |k: TensorKind, l: usize| get(k, l).unwrap();
    let matvec = |m: &[f64], x: &[f64]| -> Vec<f64> {
        m.chunks(x.len())
            .map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum())
            .collect()
    };
    let add = |a: &mut Vec<f64>, b: Option<Vec<f64>>| {
        if let Some(b) = b {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
    };
    let norm = |x: &[f64], wt: Vec<f64>, bias: Option<Vec<f64>>| -> Vec<f64> {
        let n = x.len() as f64;
        let mut o: Vec<f64> = match b.norm {
            NormKind::Rms => {
                let s = 1.0 / (x.iter().map(|v| v * v).sum::<f64>() / n + eps).sqrt();
                x.iter().zip(&wt).map(|(v, g)| v * s * g).collect()
            }
            _ => {
                let mean = x.iter().sum::<f64>() / n;
                let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
                let s = 1.0 / (var + eps).sqrt();
                x.iter().zip(&wt).map(|(v, g)| (v - mean) * s * g).collect()
            }
        };
        if let Some(bias) = bias {
            o.iter_mut().zip(bias).for_each(|(x, y)| *x += y);
        }
        o
    };
    let act = |v: f64| -> f64 {
        match b.ffn {
            FfnKind::Gelu => 0.5 * v * (1.0 + libm::erf(v / core::f64::consts::SQRT_2)),
            FfnKind::GeluTanh => {
                let c = (2.0 / core::f64::consts::PI).sqrt();
                0.5 * v * (1.0 + (c * (v + 0.044715 * v * v * v)).tanh())
            }
            FfnKind::SwiGlu => v / (1.0 + (-v).exp()),
        }
    };
    let mlp = |x: &[f64], l: usize| -> Vec<f64> {
        let mut up = matvec(&w(TensorKind::WUp, l), x);
        add(&mut up, get(TensorKind::BUp, l));
        let hidden: Vec<f64> = if b.ffn == FfnKind::SwiGlu {
            let mut g = matvec(&w(TensorKind::WGate, l), x);
            add(&mut g, get(TensorKind::BGate, l));
            g.iter().zip(&up).map(|(&g, u)| act(g) * u).collect()
        } else {
            up.iter().map(|&v| act(v)).collect()
        };
        assert_eq!(hidden.len(), ffn);
        let mut o = matvec(&w(TensorKind::WDown, l), &hidden);
        add(&mut o, get(TensorKind::BDown, l));
        o
    };
    let rot = h.rotary_dim as usize;
    let rotate = |v: &mut [f64], p: usize| {
        if b.position != PositionHook::Rope || rot == 0 {
            return;
        }
        let (cos, sin) = (w(TensorKind::RopeCos, 0), w(TensorKind::RopeSin, 0));
        let pairs = rot / 2;
        for head in v.chunks_mut(hd) {
            for i in 0..pairs {
                let (c, s) = (cos[p * pairs + i], sin[p * pairs + i]);
                let (a, bb) = if h.has(FLAG_ROPE_INTERLEAVED) {
                    (2 * i, 2 * i + 1)
                } else {
                    (i, i + pairs)
                };
                let (x0, x1) = (head[a], head[bb]);
                head[a] = x0 * c - x1 * s;
                head[bb] = x0 * s + x1 * c;
            }
        }
    };
    let scale = if b.attn_scale != 0.0 {
        f64::from(b.attn_scale)
    } else {
        1.0 / (hd as f64).sqrt()
    };
    let layers = h.n_layers as usize;
    let mut keys: Vec<Vec<Vec<f64>>> = vec![Vec::new(); layers];
    let mut values: Vec<Vec<Vec<f64>>> = vec![Vec::new(); layers];
    let mut out = Vec::new();
    for (p, &tok) in tokens.iter().enumerate() {
        let emb = w(TensorKind::TokenEmbedding, 0);
        let mut x: Vec<f64> = emb[tok * dim..(tok + 1) * dim].to_vec();
        if b.embed_scale != 0.0 {
            x.iter_mut().for_each(|v| *v *= f64::from(b.embed_scale));
        }
        if b.position == PositionHook::Table {
            let table = w(TensorKind::PosEmbedding, 0);
            let row = (p + b.pos_offset as usize) * dim;
            add(&mut x, Some(table[row..row + dim].to_vec()));
        }
        if h.has(FLAG_EMBED_NORM) {
            x = norm(
                &x,
                w(TensorKind::EmbedNorm, 0),
                get(TensorKind::EmbedNormBias, 0),
            );
        }
        for l in 0..layers {
            let n1 = norm(
                &x,
                w(TensorKind::AttnNorm, l),
                get(TensorKind::AttnNormBias, l),
            );
            let mut q = matvec(&w(TensorKind::Wq, l), &n1);
            let mut k = matvec(&w(TensorKind::Wk, l), &n1);
            let mut v = matvec(&w(TensorKind::Wv, l), &n1);
            add(&mut q, get(TensorKind::Bq, l));
            add(&mut k, get(TensorKind::Bk, l));
            add(&mut v, get(TensorKind::Bv, l));
            rotate(&mut q, p);
            rotate(&mut k, p);
            keys[l].push(k);
            values[l].push(v);
            let mut att = vec![0f64; nh * hd];
            for head in 0..nh {
                let g = head / (nh / kvh);
                let qh = &q[head * hd..(head + 1) * hd];
                let mut s: Vec<f64> = (0..=p)
                    .map(|j| {
                        let kj = &keys[l][j][g * hd..(g + 1) * hd];
                        let mut sc = qh.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>() * scale;
                        if b.position == PositionHook::Alibi {
                            sc -= w(TensorKind::AlibiSlopes, 0)[head] * (p - j) as f64;
                        }
                        if b.position == PositionHook::T5 {
                            sc += w(TensorKind::T5Bias, 0)[t5_bucket(b.t5, p - j) * nh + head];
                        }
                        sc
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::MIN, f64::max);
                s.iter_mut().for_each(|v| *v = (*v - m).exp());
                let sum: f64 = s.iter().sum();
                for (j, a) in s.iter().enumerate() {
                    let vj = &values[l][j][g * hd..(g + 1) * hd];
                    for d in 0..hd {
                        att[head * hd + d] += a / sum * vj[d];
                    }
                }
            }
            let mut a = matvec(&w(TensorKind::Wo, l), &att);
            add(&mut a, get(TensorKind::Bo, l));
            match b.residual {
                Residual::Sequential => {
                    add(&mut x, Some(a));
                    let n2 = norm(
                        &x,
                        w(TensorKind::FfnNorm, l),
                        get(TensorKind::FfnNormBias, l),
                    );
                    let f = mlp(&n2, l);
                    add(&mut x, Some(f));
                }
                Residual::ParallelShared => {
                    let f = mlp(&n1, l);
                    add(&mut x, Some(a));
                    add(&mut x, Some(f));
                }
                Residual::Parallel => {
                    let n2 = norm(
                        &x,
                        w(TensorKind::FfnNorm, l),
                        get(TensorKind::FfnNormBias, l),
                    );
                    let f = mlp(&n2, l);
                    add(&mut x, Some(a));
                    add(&mut x, Some(f));
                }
            }
        }
        let xf = norm(
            &x,
            w(TensorKind::FinalNorm, 0),
            get(TensorKind::FinalNormBias, 0),
        );
        let head = if h.has(FLAG_TIED_EMBEDDINGS) {
            w(TensorKind::TokenEmbedding, 0)
        } else {
            w(TensorKind::Output, 0)
        };
        let mut logits = matvec(&head, &xf);
        add(&mut logits, get(TensorKind::OutputBias, 0));
        out.push(logits);
    }
    out
}

/// T5's causal bucket of distance `d = query − key` in f64, from the formula
/// (Raffel et al. 2020): exact below `num_buckets / 2`, logarithmic up to
/// `max_distance`, the last bucket beyond.
fn t5_bucket(p: crate::image::T5Params, d: usize) -> usize {
    let nb = p.num_buckets as usize;
    let exact = nb / 2;
    if d < exact {
        return d;
    }
    let f = (d as f64 / exact as f64).ln() / (f64::from(p.max_distance) / exact as f64).ln();
    (exact + (f * (nb - exact) as f64) as usize).min(nb - 1)
}

/// Runs `tokens` through the library and returns the worst |Δ| against the f64 model.
fn worst_error(h: &Header) -> f64 {
    let t = tensors(h);
    let words = write_image(h, &t);
    let model = Model::new(Image::parse(bytemuck::cast_slice(&words)).unwrap()).unwrap();
    let mut arena = vec![0u32; model.arena_bytes(CONTEXT) / 4 + 1];
    let mut s = Session::new(&model, bytemuck::cast_slice_mut(&mut arena), CONTEXT).unwrap();
    let tokens = [3usize, 7, 1, 10, 0, 4, 4, 9, 2];
    let want = reference(h, &t, &tokens);
    let mut worst = 0f64;
    for (&tok, want) in tokens.iter().zip(&want) {
        let got = s.step(tok as u32).unwrap();
        for (&g, &w) in got.iter().zip(want) {
            worst = worst.max((f64::from(g) - w).abs());
        }
    }
    worst
}

fn block(norm: NormKind, ffn: FfnKind, residual: Residual, position: PositionHook) -> Block {
    Block {
        norm,
        ffn,
        residual,
        position,
        ..Block::LLAMA
    }
}

/// f32 against f64 through two layers of width 12: every product and sum is
/// rounded to f32 (relative 6e-8 each, a few hundred of them per logit), so the
/// logits (of size ~1–3) agree to a few 1e-6; a wrong wiring, norm, activation
/// or position moves them by 1e-2 or more.
const TOL: f64 = 2e-5;

#[test]
fn every_block_shape_matches_the_f64_model() {
    use FfnKind::*;
    use NormKind::*;
    use PositionHook::*;
    use Residual::*;
    let gpt_flags = FLAG_QKV_BIAS | FLAG_O_BIAS | FLAG_MLP_BIAS;
    let mut cases: Vec<(&str, Header)> = vec![
        (
            "llama, GQA, interleaved RoPE, SwiGLU with biases",
            header(FLAG_ROPE_INTERLEAVED | FLAG_MLP_BIAS, 3, 1, 4, Block::LLAMA),
        ),
        (
            "gpt-2: learned table, tied, unscaled scores",
            header(
                gpt_flags | FLAG_TIED_EMBEDDINGS,
                3,
                3,
                0,
                block(LayerNorm, GeluTanh, Sequential, Table),
            ),
        ),
        (
            "xglm: table with offset 2, embedding scale",
            header(
                gpt_flags,
                3,
                3,
                0,
                block(LayerNorm, Gelu, Sequential, Table),
            ),
        ),
        (
            "gpt-j: parallel, one norm, partial interleaved RoPE, biased head",
            header(
                FLAG_MLP_BIAS | FLAG_OUTPUT_BIAS | FLAG_ROPE_INTERLEAVED,
                3,
                3,
                2,
                block(LayerNorm, GeluTanh, ParallelShared, Rope),
            ),
        ),
        (
            "gpt-neox: parallel, two norms, partial half-split RoPE",
            header(gpt_flags, 3, 3, 2, block(LayerNorm, Gelu, Parallel, Rope)),
        ),
        (
            "phi: parallel, one norm, GQA",
            header(
                gpt_flags | FLAG_OUTPUT_BIAS,
                6,
                2,
                2,
                block(LayerNorm, GeluTanh, ParallelShared, Rope),
            ),
        ),
        (
            "bloom: ALiBi, embedding LayerNorm",
            header(
                gpt_flags | FLAG_EMBED_NORM | FLAG_TIED_EMBEDDINGS,
                3,
                3,
                0,
                block(LayerNorm, GeluTanh, Sequential, Alibi),
            ),
        ),
        (
            "mpt: ALiBi, LayerNorm without bias, no biases, softmax scale",
            header(
                FLAG_TIED_EMBEDDINGS,
                3,
                3,
                0,
                block(LayerNormNoBias, Gelu, Sequential, Alibi),
            ),
        ),
    ];
    cases.push((
        "nope: no position hook, RMSNorm, SwiGLU, GQA",
        header(
            0,
            4,
            2,
            0,
            block(Rms, SwiGlu, Sequential, PositionHook::None),
        ),
    ));
    let mut t5 = block(Rms, SwiGlu, Sequential, PositionHook::T5);
    // 8 causal buckets up to distance 6: distances 0–3 exact, 4–5 logarithmic,
    // 6 and beyond (the context reaches 8) the last bucket.
    t5.t5 = crate::image::T5Params {
        num_buckets: 8,
        max_distance: 6,
    };
    cases.push((
        "t5: relative buckets (score bias), RMSNorm, SwiGLU, GQA",
        header(FLAG_TIED_EMBEDDINGS, 4, 2, 0, t5),
    ));
    cases[1].1.block.attn_scale = 1.0;
    cases[2].1.block.pos_offset = 2;
    cases[2].1.block.embed_scale = 2.0;
    cases[7].1.block.attn_scale = 0.25;
    for (name, h) in &cases {
        let worst = worst_error(h);
        std::println!("{name}: worst |Δlogit| {worst:.2e}");
        assert!(worst <= TOL, "{name}: worst |Δlogit| {worst:e}");
    }
}

#[test]
fn wrong_wiring_is_visible() {
    // The same weights read as another residual wiring or GELU variant give
    // logits well outside the tolerance: the comparison above can fail.
    let h = header(
        FLAG_QKV_BIAS | FLAG_O_BIAS | FLAG_MLP_BIAS,
        3,
        3,
        2,
        block(
            NormKind::LayerNorm,
            FfnKind::Gelu,
            Residual::Parallel,
            PositionHook::Rope,
        ),
    );
    let t = tensors(&h);
    let tokens = [3usize, 7, 1, 10];
    let want = reference(&h, &t, &tokens);
    for other in [
        Block {
            residual: Residual::Sequential,
            ..h.block
        },
        Block {
            ffn: FfnKind::GeluTanh,
            ..h.block
        },
    ] {
        let mut h2 = h;
        h2.block = other;
        let got = reference(&h2, &t, &tokens);
        let d = got
            .iter()
            .flatten()
            .zip(want.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(d > 10.0 * TOL, "{other:?}: {d}");
    }
}

#[test]
fn arena_grows_only_for_what_a_block_needs() {
    let llama = header(FLAG_ROPE_INTERLEAVED, 3, 1, 4, Block::LLAMA);
    let words = write_image(&llama, &tensors(&llama));
    let m = Model::new(Image::parse(bytemuck::cast_slice(&words)).unwrap()).unwrap();
    // x, xb, xb2, hb, hb2, q, k, v, att, logits, the cache (unchanged since v1)
    let (dim, hidden, q, kv) = (12, 20, 12, 4);
    let f32s = dim + dim + dim + 2 * hidden + q + 2 * kv + CONTEXT + VOCAB + 2 * 2 * CONTEXT * kv;
    assert_eq!(m.arena_bytes(CONTEXT), 4 * f32s);
    // A parallel GELU block: no SwiGLU up buffer, one feed-forward output buffer.
    let neox = header(
        FLAG_QKV_BIAS,
        3,
        3,
        2,
        block(
            NormKind::LayerNorm,
            FfnKind::Gelu,
            Residual::Parallel,
            PositionHook::Rope,
        ),
    );
    let words = write_image(&neox, &tensors(&neox));
    let m = Model::new(Image::parse(bytemuck::cast_slice(&words)).unwrap()).unwrap();
    let kv = 12;
    let f32s = dim + dim + dim + hidden + dim + q + 2 * kv + CONTEXT + VOCAB + 2 * 2 * CONTEXT * kv;
    assert_eq!(m.arena_bytes(CONTEXT), 4 * f32s);
}

#[test]
fn layernorm_and_gelu_formulas() {
    let x = [1.0f32, -2.0, 3.5, 0.25];
    let w = [1.0f32, 0.5, -1.0, 2.0];
    let b = [0.1f32, 0.0, -0.2, 0.3];
    let mut o = [0f32; 4];
    layernorm(&mut o, &x, &w, Some(&b), 1e-5);
    let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / 4.0;
    let var = x
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / 4.0;
    for i in 0..4 {
        let want =
            (f64::from(x[i]) - mean) / (var + 1e-5).sqrt() * f64::from(w[i]) + f64::from(b[i]);
        assert!(
            (f64::from(o[i]) - want).abs() < 1e-6,
            "{i}: {} {want}",
            o[i]
        );
    }
    let mut y = x;
    layernorm_in_place(&mut y, &w, None, 1e-5);
    let mut no_bias = [0f32; 4];
    layernorm(&mut no_bias, &x, &w, None, 1e-5);
    assert_eq!(y, no_bias);
    for i in 0..4 {
        assert_eq!(o[i], no_bias[i] + b[i], "{i}");
    }
    for i in -80..=80 {
        let v = i as f64 / 10.0;
        let exact = 0.5 * v * (1.0 + libm::erf(v / core::f64::consts::SQRT_2));
        assert!(
            (f64::from(gelu(v as f32)) - exact).abs() < 2e-6,
            "gelu({v})"
        );
        let c = (2.0 / core::f64::consts::PI).sqrt();
        let approx = 0.5 * v * (1.0 + (c * (v + 0.044715 * v * v * v)).tanh());
        assert!(
            (f64::from(gelu_tanh(v as f32)) - approx).abs() < 2e-6,
            "gelu_tanh({v})"
        );
    }
    // the tanh form departs from the exact one by up to ~5e-4 (measured on the grid)
    let gap = (-80..=80)
        .map(|i| (gelu(i as f32 / 10.0) - gelu_tanh(i as f32 / 10.0)).abs())
        .fold(0.0f32, f32::max);
    assert!(gap > 1e-4 && gap < 1e-3, "{gap}");
}

#[test]
fn without_a_position_hook_only_position_zero_matches_rope() {
    // The same weights read as RoPE and as NoPE: at position 0 the rotation is
    // the identity (cos 1, sin 0), so both agree; later positions differ — the
    // hook is what tells positions apart.
    let rope = header(0, 4, 2, 4, Block::LLAMA);
    let nope = Header {
        rotary_dim: 0,
        block: Block {
            position: PositionHook::None,
            ..Block::LLAMA
        },
        ..rope
    };
    let weights = tensors(&rope);
    let logits = |h: &Header| -> Vec<Vec<f32>> {
        let mut t = weights.clone();
        // NoPE's image has no RoPE tables; every other tensor is the same.
        t.retain(|&(kind, _), _| {
            h.block.position == PositionHook::Rope
                || ![TensorKind::RopeCos as u16, TensorKind::RopeSin as u16].contains(&kind)
        });
        let words = write_image(h, &t);
        let model = Model::new(Image::parse(bytemuck::cast_slice(&words)).unwrap()).unwrap();
        let mut arena = vec![0u32; model.arena_bytes(CONTEXT) / 4 + 1];
        let mut s = Session::new(&model, bytemuck::cast_slice_mut(&mut arena), CONTEXT).unwrap();
        [3u32, 7, 1, 10, 0, 4]
            .iter()
            .map(|&t| s.step(t).unwrap().to_vec())
            .collect()
    };
    let diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    };
    let (r, n) = (logits(&rope), logits(&nope));
    assert_eq!(diff(&r[0], &n[0]), 0.0, "position 0");
    assert!(
        diff(&r[5], &n[5]) > 1e-2,
        "position 5: {}",
        diff(&r[5], &n[5])
    );
}
