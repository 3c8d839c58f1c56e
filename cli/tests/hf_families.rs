//! `microformer convert` on the GPT-style Hugging Face families — GPT-2, XGLM,
//! BLOOM, MPT, GPT-J, GPT-NeoX, Phi — end to end: the logits of
//! `microformer logits` against the float32 logits transformers computed
//! (`reference.json`, one eager forward pass over all the tokens), and the greedy
//! continuation of `microformer run --prompt-ids -t 0` against `model.generate`
//! (24 tokens after the first 8 of `tokens`, `do_sample=False`, no EOS stop).
//!
//! Fixtures (all in `tests/fixtures/hf`; see the README there): `gpt2-learned`,
//! `xglm-sinusoidal`, `bloom-alibi`, `gptneox-partial-rope` of the public set (copied
//! from `../shared/fixtures/hf`), and `gptj-interleaved-rope`, `mpt-alibi-6h`,
//! `phi-partial-rope`, `bloom-alibi-6h`, `gptneox-sequential`, made with the same tool.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use microformer::image::{
    self, FfnKind, Image, NormKind, PositionHook, Residual, TensorData, TensorKind,
};

/// Worst tolerated |logit − reference| (the references are printed with 7
/// significant digits, so about 5e-6 of it is their rounding).
const TOL: f64 = 1e-4;

/// Every fixture: (name, directory).
fn fixtures() -> Vec<(&'static str, PathBuf)> {
    let mut v: Vec<(&'static str, PathBuf)> = [
        "gpt2-learned",
        "xglm-sinusoidal",
        "bloom-alibi",
        "gptneox-partial-rope",
    ]
    .into_iter()
    .map(|n| (n, hf_fixture(n)))
    .collect();
    for n in [
        "gptj-interleaved-rope",
        "mpt-alibi-6h",
        "phi-partial-rope",
        "bloom-alibi-6h",
        "gptneox-sequential",
    ] {
        v.push((n, extra_fixture(n)));
    }
    v
}

#[test]
fn logits_and_greedy_match_transformers() {
    let dir = TmpDir::new("hf-fam");
    let mut report = Vec::new();
    for (name, src) in fixtures() {
        let r = json(&src.join("reference.json"));
        let tokens = u32s(&r["tokens"]);
        let img = dir.join(&format!("{name}.img"));
        convert(&src, &img, &["--context", &tokens.len().to_string()]);
        let got = logits(&img, &tokens);
        let worst = max_abs_diff(&got, &r["logits"]);
        report.push(format!(
            "{name}: {} positions, worst |Δlogit| {worst:.3e}",
            tokens.len()
        ));
        assert!(worst <= TOL, "{name}: worst logit error {worst}");

        // model.generate: 24 greedy tokens after the 8-token prompt.
        let prompt = u32s(&r["greedy_prompt"]);
        assert_eq!(
            prompt,
            tokens[..8],
            "{name}: the prompt is the first 8 tokens"
        );
        let want = u32s(&r["greedy"]);
        assert_eq!(greedy(&img, &prompt, want.len()), want, "{name} greedy");
    }
    for line in &report {
        println!("{line}");
    }
}

/// A converted image, 4-byte aligned for [`Image::parse`].
struct Img {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl Img {
    fn read(path: &Path) -> Img {
        let b = std::fs::read(path).unwrap();
        let mut buf = vec![0u8; b.len() + 3];
        let start = buf.as_ptr().align_offset(4);
        buf[start..start + b.len()].copy_from_slice(&b);
        Img {
            buf,
            start,
            len: b.len(),
        }
    }

    fn image(&self) -> Image<'_> {
        Image::parse(&self.buf[self.start..self.start + self.len]).unwrap()
    }
}

fn f32_tensor<'a>(img: &Image<'a>, kind: TensorKind, layer: usize) -> &'a [f32] {
    match img.tensor(kind, layer).unwrap() {
        TensorData::F32(v) => v,
        _ => panic!("{kind:?} is not f32"),
    }
}

/// The header's block and the tensors each family's image holds.
#[test]
fn images_carry_the_block_shape() {
    let dir = TmpDir::new("hf-fam-block");
    use FfnKind::*;
    use NormKind::*;
    use PositionHook::*;
    use Residual::*;
    // (fixture, norm, ffn, residual, position, flags)
    let cases: [(&str, NormKind, FfnKind, Residual, PositionHook, &str); 9] = [
        (
            "gpt2-learned",
            LayerNorm,
            GeluTanh,
            Sequential,
            Table,
            "tied_embeddings qkv_bias o_bias mlp_bias",
        ),
        (
            "xglm-sinusoidal",
            LayerNorm,
            Gelu,
            Sequential,
            Table,
            "tied_embeddings qkv_bias o_bias mlp_bias",
        ),
        (
            "bloom-alibi",
            LayerNorm,
            GeluTanh,
            Sequential,
            Alibi,
            "tied_embeddings qkv_bias o_bias mlp_bias embed_norm",
        ),
        (
            "gptneox-partial-rope",
            LayerNorm,
            Gelu,
            Parallel,
            Rope,
            "qkv_bias o_bias mlp_bias",
        ),
        (
            "gptj-interleaved-rope",
            LayerNorm,
            GeluTanh,
            ParallelShared,
            Rope,
            "rope_interleaved mlp_bias output_bias",
        ),
        (
            "mpt-alibi-6h",
            LayerNormNoBias,
            Gelu,
            Sequential,
            Alibi,
            "tied_embeddings",
        ),
        (
            "phi-partial-rope",
            LayerNorm,
            GeluTanh,
            ParallelShared,
            Rope,
            "qkv_bias o_bias mlp_bias output_bias",
        ),
        (
            "bloom-alibi-6h",
            LayerNorm,
            GeluTanh,
            Sequential,
            Alibi,
            "tied_embeddings qkv_bias o_bias mlp_bias embed_norm",
        ),
        (
            "gptneox-sequential",
            LayerNorm,
            GeluTanh,
            Sequential,
            Rope,
            "mlp_bias",
        ),
    ];
    let dirs: std::collections::BTreeMap<_, _> = fixtures().into_iter().collect();
    for (name, norm, ffn, residual, position, flags) in cases {
        let out = dir.join(&format!("{name}.img"));
        convert(&dirs[name], &out, &["--context", "40"]);
        let info = ok(&["inspect", out.to_str().unwrap()]).text();
        let flags_line = info.lines().find(|l| l.starts_with("flags:")).unwrap();
        assert_eq!(flags_line["flags:".len()..].trim(), flags, "{name}");
        let img = Img::read(&out);
        let image = img.image();
        let h = image.header();
        let b = h.block;
        assert_eq!(
            (b.norm, b.ffn, b.residual, b.position),
            (norm, ffn, residual, position),
            "{name}"
        );
        assert_eq!(h.seq_len, 40, "{name}");
        // Hooks: exactly the tensors of the image's position scheme.
        let has = |k| image::has_tensor(h, k);
        assert_eq!(has(TensorKind::RopeCos), position == Rope, "{name}");
        assert_eq!(has(TensorKind::AlibiSlopes), position == Alibi, "{name}");
        assert_eq!(has(TensorKind::PosEmbedding), position == Table, "{name}");
        assert!(!has(TensorKind::WGate), "{name}");
        assert_eq!(
            has(TensorKind::FfnNorm),
            residual != ParallelShared,
            "{name}"
        );
        // rotary_pct 0.25 (NeoX's default) or 0.5, GPT-J's rotary_dim 8, of 16 dims
        let rotary = match name {
            "gptneox-partial-rope" => 4,
            _ if position == Rope => 8,
            _ => 0,
        };
        assert_eq!(h.rotary_dim, rotary, "{name}");
    }
}

/// The split of fused and transposed tensors, element by element.
#[test]
fn fused_tensors_are_split_as_transformers_splits_them() {
    let dir = TmpDir::new("hf-fam-split");
    // GPT-2: Conv1D `c_attn.weight` is [in = 64][out = 192], x @ W + b; columns
    // 0..64 are q, 64..128 k, 128..192 v. The image holds Wq[r][c] = W[c][r].
    let src = hf_fixture("gpt2-learned");
    let st = St::read(&src.join("model.safetensors"));
    let out = dir.join("gpt2.img");
    convert(&src, &out, &["--context", "40"]);
    let img = Img::read(&out);
    let image = img.image();
    for layer in 0..2 {
        let w = st.f32(&format!("transformer.h.{layer}.attn.c_attn.weight"));
        let b = st.f32(&format!("transformer.h.{layer}.attn.c_attn.bias"));
        for (part, (wk, bk)) in [
            (TensorKind::Wq, TensorKind::Bq),
            (TensorKind::Wk, TensorKind::Bk),
            (TensorKind::Wv, TensorKind::Bv),
        ]
        .into_iter()
        .enumerate()
        {
            let m = f32_tensor(&image, wk, layer);
            let bias = f32_tensor(&image, bk, layer);
            for r in 0..64 {
                assert_eq!(bias[r], b[part * 64 + r]);
                for c in 0..64 {
                    assert_eq!(m[r * 64 + c], w[c * 192 + part * 64 + r], "{wk:?} {r} {c}");
                }
            }
        }
        let fc = st.f32(&format!("transformer.h.{layer}.mlp.c_fc.weight")); // [64][256]
        let up = f32_tensor(&image, TensorKind::WUp, layer); // [256][64]
        for r in 0..256 {
            for c in 0..64 {
                assert_eq!(up[r * 64 + c], fc[c * 256 + r]);
            }
        }
    }
    // The learned table: `wpe` rows 0..context.
    let wpe = st.f32("transformer.wpe.weight");
    assert_eq!(
        f32_tensor(&image, TensorKind::PosEmbedding, 0),
        &wpe[..40 * 64]
    );

    // BLOOM and GPT-NeoX: `query_key_value` rows are [head][q, k, v][head_dim].
    for (name, prefix, attn, heads, hd) in [
        (
            "bloom-alibi",
            "transformer.h",
            "self_attention",
            4usize,
            16usize,
        ),
        (
            "gptneox-partial-rope",
            "gpt_neox.layers",
            "attention",
            4,
            16,
        ),
    ] {
        let src = hf_fixture(name);
        let st = St::read(&src.join("model.safetensors"));
        let out = dir.join(&format!("{name}.img"));
        convert(&src, &out, &["--context", "40"]);
        let img = Img::read(&out);
        let image = img.image();
        let dim = heads * hd;
        let w = st.f32(&format!("{prefix}.1.{attn}.query_key_value.weight"));
        let b = st.f32(&format!("{prefix}.1.{attn}.query_key_value.bias"));
        for (part, (wk, bk)) in [
            (TensorKind::Wq, TensorKind::Bq),
            (TensorKind::Wk, TensorKind::Bk),
            (TensorKind::Wv, TensorKind::Bv),
        ]
        .into_iter()
        .enumerate()
        {
            let m = f32_tensor(&image, wk, 1);
            let bias = f32_tensor(&image, bk, 1);
            for h in 0..heads {
                for i in 0..hd {
                    let fused_row = (h * 3 + part) * hd + i;
                    assert_eq!(bias[h * hd + i], b[fused_row], "{name} {bk:?}");
                    assert_eq!(
                        &m[(h * hd + i) * dim..(h * hd + i + 1) * dim],
                        &w[fused_row * dim..(fused_row + 1) * dim],
                        "{name} {wk:?} head {h} row {i}"
                    );
                }
            }
        }
    }

    // MPT: `Wqkv` rows are q, then k, then v (`chunk(3)`). Slopes as transformers'
    // `build_mpt_alibi_tensor` for 6 heads: 1/2^k for k = 1..=8 (the next power of
    // two), reordered odd positions first, `[1::2] + [::2]`, cut to 6: k = 2, 4, 6,
    // 8, 1, 3.
    let src = extra_fixture("mpt-alibi-6h");
    let st = St::read(&src.join("model.safetensors"));
    let out = dir.join("mpt.img");
    convert(&src, &out, &["--context", "40"]);
    let img = Img::read(&out);
    let image = img.image();
    let w = st.f32("transformer.blocks.0.attn.Wqkv.weight"); // [144][48]
    assert_eq!(f32_tensor(&image, TensorKind::Wk, 0), &w[48 * 48..96 * 48]);
    let slopes: Vec<f32> = [2, 4, 6, 8, 1, 3].iter().map(|&k| 0.5f32.powi(k)).collect();
    assert_eq!(f32_tensor(&image, TensorKind::AlibiSlopes, 0), &slopes[..]);
    // BLOOM, 6 heads: 2^-2, 2^-4, 2^-6, 2^-8 from the closest power of two (4),
    // then 2^-1, 2^-3 from the doubled sequence.
    let out = dir.join("bloom6.img");
    convert(&extra_fixture("bloom-alibi-6h"), &out, &["--context", "40"]);
    let img = Img::read(&out);
    let slopes: Vec<f32> = [2, 4, 6, 8, 1, 3].iter().map(|&k| 0.5f32.powi(k)).collect();
    assert_eq!(
        f32_tensor(&img.image(), TensorKind::AlibiSlopes, 0),
        &slopes[..]
    );
}

/// Checkpoint spellings transformers accepts give the same image.
#[test]
fn checkpoint_variants_convert_alike() {
    let dir = TmpDir::new("hf-fam-variants");
    let same = |a: &Path, b: &Path| {
        assert_eq!(
            std::fs::read(a).unwrap(),
            std::fs::read(b).unwrap(),
            "{}",
            b.display()
        );
    };
    // GPT-2 saved from the base model (the hub's `gpt2` files: no `transformer.`
    // prefix), with the causal-mask buffers old checkpoints carry.
    let base = dir.join("gpt2.img");
    convert(&hf_fixture("gpt2-learned"), &base, &["--context", "40"]);
    let d = dir.join("gpt2-bare");
    copy_fixture("gpt2-learned", &d);
    let st = St::read(&d.join("model.safetensors"));
    let mut bare = St {
        header: Default::default(),
        data: Vec::new(),
    };
    for name in st.header.keys().filter(|k| *k != "__metadata__") {
        let short = name.strip_prefix("transformer.").unwrap_or(name);
        bare.put(short, &st.shape(name), &st.f32(name));
    }
    bare.put("h.0.attn.bias", &[1, 1, 4, 4], &[1.0; 16]);
    bare.put("h.1.attn.masked_bias", &[1], &[-1e4]);
    bare.write(&d.join("model.safetensors"));
    let out = dir.join("gpt2-bare.img");
    convert(&d, &out, &["--context", "40"]);
    same(&base, &out);

    // GPT-NeoX with the head saved as `lm_head.weight` rather than `embed_out.weight`.
    let base = dir.join("neox.img");
    convert(
        &hf_fixture("gptneox-partial-rope"),
        &base,
        &["--context", "40"],
    );
    let d = dir.join("neox-lm-head");
    copy_fixture("gptneox-partial-rope", &d);
    let mut st = St::read(&d.join("model.safetensors"));
    let head = st.f32("embed_out.weight");
    assert!(st.remove("embed_out.weight"));
    st.put("lm_head.weight", &[128, 64], &head);
    st.write(&d.join("model.safetensors"));
    let out = dir.join("neox-lm-head.img");
    convert(&d, &out, &["--context", "40"]);
    same(&base, &out);
}

/// XGLM grows its sinusoidal table with the sequence (`make_weights`): a longer
/// context than `max_position_embeddings` converts, and the positions both
/// images cover give the same logits.
#[test]
fn xglm_table_grows_past_max_positions() {
    let dir = TmpDir::new("hf-fam-xglm");
    let src = hf_fixture("xglm-sinusoidal");
    let r = json(&src.join("reference.json"));
    let tokens = u32s(&r["tokens"]);
    let a = dir.join("a.img");
    let b = dir.join("b.img");
    convert(&src, &a, &["--context", "40"]);
    convert(&src, &b, &["--context", "80"]);
    let info = ok(&["inspect", b.to_str().unwrap()]).text();
    assert!(
        info.contains("pos_embedding        - f32            82x64"),
        "{info}"
    );
    assert_eq!(logits(&a, &tokens), logits(&b, &tokens));
    // GPT-2's table is learned: it ends at n_positions.
    fails(
        &[
            "convert",
            hf_fixture("gpt2-learned").to_str().unwrap(),
            "-o",
            dir.join("c.img").to_str().unwrap(),
            "--context",
            "65",
        ],
        2,
        "--context 65 exceeds the 64 learned positions (n_positions)",
    );
}

/// transformers' MPT ignores `attn_config.alibi_bias_max` (its forward builds
/// the ALiBi tensor with the default 8): the image follows it, and says so.
#[test]
fn mpt_alibi_bias_max_follows_transformers() {
    let dir = TmpDir::new("hf-fam-mpt");
    let src = extra_fixture("mpt-alibi-6h");
    let r = json(&src.join("reference.json"));
    let tokens = u32s(&r["tokens"]);
    let d = dir.join("mpt4");
    std::fs::create_dir_all(&d).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), d.join(f)).unwrap();
    }
    edit_config(&d, |m| {
        m["attn_config"]["alibi_bias_max"] = 4.into();
    });
    let a = dir.join("a.img");
    let b = dir.join("b.img");
    convert(&src, &a, &["--context", "40"]);
    let run = convert(&d, &b, &["--context", "40"]);
    assert!(
        run.stderr
            .contains("warning: attn_config.alibi_bias_max is 4, but transformers' MPT uses 8"),
        "{}",
        run.stderr
    );
    assert_eq!(logits(&a, &tokens), logits(&b, &tokens));
}

/// Q8 weights run through every block shape (the matrices of GELU MLPs,
/// parallel blocks and biased heads are quantized like the Llama ones).
#[test]
fn q8_conversions_run() {
    let dir = TmpDir::new("hf-fam-q8");
    for (name, src) in [
        ("gpt2-learned", hf_fixture("gpt2-learned")),
        ("mpt-alibi-6h", extra_fixture("mpt-alibi-6h")),
        ("phi-partial-rope", extra_fixture("phi-partial-rope")),
    ] {
        let r = json(&src.join("reference.json"));
        let tokens = u32s(&r["tokens"]);
        let img = dir.join(&format!("{name}.img"));
        convert(&src, &img, &["--quant", "q8", "--context", "40"]);
        let info = ok(&["inspect", img.to_str().unwrap()]).text();
        let q8 = info
            .lines()
            .filter(|l| l.split_whitespace().nth(2) == Some("q8"))
            .count();
        // per layer: wq wk wv wo w_up w_down, plus the embedding (and an untied head)
        let untied = name == "phi-partial-rope";
        assert_eq!(q8, 2 * 6 + 1 + usize::from(untied), "{name}: {info}");
        let worst = max_abs_diff(&logits(&img, &tokens), &r["logits"]);
        println!("{name} q8: worst |Δlogit| {worst:.3e}");
        // Quantization moves the logits (spread ~1.5) by far more than f32
        // rounding, and by far less than a wrong block would.
        assert!(worst > 1e-3 && worst < 1.0, "{name}: {worst}");
    }
}

#[test]
fn unsupported_variants_fail_cleanly() {
    let dir = TmpDir::new("hf-fam-bad");
    let out = dir.join("out.img");
    let out_s = out.to_str().unwrap().to_string();
    let case = |tag: &str, from: &Path| -> PathBuf {
        let d = dir.join(tag);
        std::fs::create_dir_all(&d).unwrap();
        for f in ["config.json", "model.safetensors"] {
            std::fs::copy(from.join(f), d.join(f)).unwrap();
        }
        d
    };
    let convert_fails = |src: &Path, code: i32, needle: &str| {
        fails(
            &["convert", src.to_str().unwrap(), "-o", &out_s],
            code,
            needle,
        );
        assert!(!out.exists(), "a failed conversion left {out_s}");
    };
    // config values microformer does not run: exit 2, naming the key
    let d = case("act", &extra_fixture("gptj-interleaved-rope"));
    edit_config(&d, |m| {
        m.insert("activation_function".into(), "relu".into());
    });
    convert_fails(&d, 2, "activation_function \"relu\" is not supported");
    let d = case("qk", &extra_fixture("phi-partial-rope"));
    edit_config(&d, |m| {
        m.insert("qk_layernorm".into(), true.into());
    });
    convert_fails(&d, 2, "qk_layernorm is true");
    let d = case("clip", &extra_fixture("mpt-alibi-6h"));
    edit_config(&d, |m| {
        m["attn_config"]["clip_qkv"] = 6.0.into();
    });
    convert_fails(&d, 2, "attn_config.clip_qkv is set");
    let d = case("post-ln", &hf_fixture("bloom-alibi"));
    edit_config(&d, |m| {
        m.insert(
            "apply_residual_connection_post_layernorm".into(),
            true.into(),
        );
    });
    convert_fails(&d, 2, "apply_residual_connection_post_layernorm is true");
    let d = case("layer-scale", &hf_fixture("gpt2-learned"));
    edit_config(&d, |m| {
        m.insert("scale_attn_by_inverse_layer_idx".into(), true.into());
    });
    convert_fails(&d, 2, "scale_attn_by_inverse_layer_idx is true");
    // an MPT checkpoint with biases (`no_bias: false`): transformers' MPT has no
    // biases, so they would be dropped: refused
    let d = case("mpt-bias", &extra_fixture("mpt-alibi-6h"));
    let mut st = St::read(&d.join("model.safetensors"));
    st.put("transformer.blocks.0.attn.out_proj.bias", &[48], &[0.5; 48]);
    st.write(&d.join("model.safetensors"));
    convert_fails(&d, 1, "transformer.blocks.0.attn.out_proj.bias");
    // a missing fused tensor names what the model expects
    let d = case("neox-missing", &hf_fixture("gptneox-partial-rope"));
    let mut st = St::read(&d.join("model.safetensors"));
    assert!(st.remove("gpt_neox.layers.1.attention.query_key_value.weight"));
    st.write(&d.join("model.safetensors"));
    convert_fails(
        &d,
        1,
        "missing tensor gpt_neox.layers.1.attention.query_key_value.weight",
    );
}
