//! `microformer convert` on Hugging Face checkpoints, end to end: the logits of
//! `microformer logits` against the float32 logits transformers computed
//! (`reference.json`, one forward pass over all the tokens), and the greedy
//! continuation of `microformer run --prompt-ids -t 0` against `model.generate`.
//!
//! Fixtures (all in `tests/fixtures/hf`; see the README there): the four Llama RoPE
//! fixtures of the public set (copied from `../shared/fixtures/hf`) and the Qwen2 /
//! Mistral / Phi-3 fixtures made with the same tool. Each image is converted with
//! `--context` = the number of reference tokens, as the references were made by
//! one pass over all of them (dynamic and LongRoPE frequencies depend on it).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// Worst tolerated |logit − reference| (the references are printed with 7
/// significant digits, so about 5e-6 of it is their rounding).
const TOL: f64 = 1e-4;

/// Every fixture: (name, directory).
fn fixtures() -> Vec<(&'static str, PathBuf)> {
    let mut v: Vec<(&'static str, PathBuf)> = [
        "llama-rope-default",
        "llama-rope-linear",
        "llama-rope-yarn",
        "llama-rope-llama3",
    ]
    .into_iter()
    .map(|n| (n, hf_fixture(n)))
    .collect();
    for n in ["qwen2-bias", "mistral-sliding-window", "phi3-longrope"] {
        v.push((n, extra_fixture(n)));
    }
    v
}

#[test]
fn logits_and_greedy_match_transformers() {
    let dir = TmpDir::new("hf");
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

        // model.generate: 24 greedy tokens after an 8-token prompt, 32 positions in
        // all. LongRoPE picks its factors from the context: Hugging Face generated
        // within the original 32 positions, hence the short factors, so the greedy
        // image is converted with --context 32 there.
        let prompt = u32s(&r["greedy_prompt"]);
        let want = u32s(&r["greedy"]);
        let gimg = if name.contains("longrope") {
            let g = dir.join(&format!("{name}-32.img"));
            convert(&src, &g, &["--context", "32"]);
            // ... and the 96-position image (long factors) does not reproduce it.
            assert_ne!(greedy(&img, &prompt, want.len()), want, "{name}");
            g
        } else {
            img
        };
        assert_eq!(greedy(&gimg, &prompt, want.len()), want, "{name} greedy");
    }
    for line in &report {
        println!("{line}");
    }
}

#[test]
fn default_context_and_table_independence() {
    let dir = TmpDir::new("hf-default");
    let src = hf_fixture("llama-rope-llama3");
    let r = json(&src.join("reference.json"));
    let tokens = u32s(&r["tokens"]);
    let a = dir.join("a.img");
    let b = dir.join("b.img");
    convert(&src, &a, &[]);
    convert(&src, &b, &["--context", "96"]);
    // default context: min(max_position_embeddings = 256, 2048)
    let info = ok(&["inspect", a.to_str().unwrap()]).text();
    assert!(info.contains("seq_len:        256"), "{info}");
    assert!(info.contains("train_context:  256"), "{info}");
    assert!(info.contains("flags:          (none)"), "{info}");
    // llama3 scaling does not depend on the context: identical logits
    assert_eq!(logits(&a, &tokens), logits(&b, &tokens));
}

#[test]
fn header_carries_the_variants() {
    let dir = TmpDir::new("hf-header");
    let field = |info: &str, k: &str| -> String {
        info.lines()
            .find(|l| l.starts_with(k))
            .unwrap_or_else(|| panic!("{k} in {info}"))[k.len()..]
            .trim()
            .to_string()
    };
    let q = dir.join("q.img");
    convert(&extra_fixture("qwen2-bias"), &q, &[]);
    let info = ok(&["inspect", q.to_str().unwrap()]).text();
    assert_eq!(field(&info, "flags:"), "qkv_bias");
    assert_eq!(field(&info, "seq_len:"), "64");
    assert_eq!(field(&info, "bos_id:"), "1"); // bos_token_id null: llama2.c's 1
    let m = dir.join("m.img");
    convert(&extra_fixture("mistral-sliding-window"), &m, &[]);
    let info = ok(&["inspect", m.to_str().unwrap()]).text();
    assert_eq!(field(&info, "sliding_window:"), "16");
    let p = dir.join("p.img");
    convert(&extra_fixture("phi3-longrope"), &p, &[]);
    let info = ok(&["inspect", p.to_str().unwrap()]).text();
    assert_eq!(field(&info, "head_dim:"), "16");
    assert_eq!(field(&info, "rotary_dim:"), "8");
    assert_eq!(field(&info, "seq_len:"), "128");
    assert_eq!(field(&info, "norm_eps:"), "1e-5");
    assert_eq!(
        field(&info, "rope pairs:"),
        "half-split (i, i + rotary_dim/2)"
    );
}

#[test]
fn sharded_checkpoint_equals_single_file() {
    let dir = TmpDir::new("hf-shards");
    let src = hf_fixture("llama-rope-default");
    let st = St::read(&src.join("model.safetensors"));
    let shards = dir.join("sharded");
    std::fs::create_dir_all(&shards).unwrap();
    std::fs::copy(src.join("config.json"), shards.join("config.json")).unwrap();
    let mut parts = [
        St {
            header: Default::default(),
            data: Vec::new(),
        },
        St {
            header: Default::default(),
            data: Vec::new(),
        },
    ];
    let mut map = serde_json::Map::new();
    for (i, name) in st
        .header
        .keys()
        .filter(|k| *k != "__metadata__")
        .enumerate()
    {
        let file = format!("model-0000{}-of-00002.safetensors", i % 2 + 1);
        parts[i % 2].put(name, &st.shape(name), &st.f32(name));
        map.insert(name.clone(), Value::String(file));
    }
    for (i, p) in parts.iter().enumerate() {
        p.write(&shards.join(format!("model-0000{}-of-00002.safetensors", i + 1)));
    }
    std::fs::write(
        shards.join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": map}).to_string(),
    )
    .unwrap();
    let a = dir.join("a.img");
    let b = dir.join("b.img");
    convert(&src, &a, &[]);
    convert(&shards, &b, &[]);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn q8_and_tied_conversions() {
    let dir = TmpDir::new("hf-q8");
    let src = hf_fixture("llama-rope-default");
    let r = json(&src.join("reference.json"));
    let tokens = u32s(&r["tokens"]);
    let q = dir.join("q8.img");
    convert(&src, &q, &["--quant", "q8", "--context", "40"]);
    let info = ok(&["inspect", q.to_str().unwrap()]).text();
    assert!(info.contains("group_size:     64"), "{info}");
    let q8_rows = info
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some("q8"))
        .count();
    // embedding, output, and per layer wq wk wv wo w_gate w_up; w_down's rows (96)
    // are not whole groups of 64, so it stays f32
    assert_eq!(q8_rows, 2 + 6 * 2, "{info}");
    assert!(
        info.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["w_down", "1", "f32", "64x96", "24576"]),
        "{info}"
    );
    let got = logits(&q, &tokens);
    let worst = max_abs_diff(&got, &r["logits"]);
    println!("llama-rope-default q8: worst |Δlogit| {worst:.3e}");
    // Q8 really is used: the numbers move by far more than f32 rounding.
    assert!(worst.is_finite() && worst > 1e-3, "{worst}");

    // tied embeddings: no output tensor, and the checkpoint's lm_head is not needed
    let tied = dir.join("tied");
    copy_fixture("llama-rope-default", &tied);
    edit_config(&tied, |m| {
        m.insert("tie_word_embeddings".into(), Value::Bool(true));
    });
    let mut st = St::read(&tied.join("model.safetensors"));
    assert!(st.remove("lm_head.weight"));
    st.write(&tied.join("model.safetensors"));
    let t = dir.join("tied.img");
    convert(&tied, &t, &[]);
    let info = ok(&["inspect", t.to_str().unwrap()]).text();
    assert!(info.contains("flags:          tied_embeddings"), "{info}");
    assert!(
        !info.lines().any(|l| l.trim_start().starts_with("output ")),
        "{info}"
    );
    // the logits are then embedding · x: check one position against that product
    let emb = St::read(&src.join("model.safetensors")).f32("model.embed_tokens.weight");
    let untied_img = dir.join("untied.img");
    let mut st2 = St::read(&src.join("model.safetensors"));
    st2.put("lm_head.weight", &[128, 64], &emb);
    let untied = dir.join("untied");
    copy_fixture("llama-rope-default", &untied);
    st2.write(&untied.join("model.safetensors"));
    convert(&untied, &untied_img, &[]);
    assert_eq!(logits(&t, &tokens[..5]), logits(&untied_img, &tokens[..5]));
}

/// `--quant f16`: every matrix binary16; the logits are exactly those of the
/// f32 image of the checkpoint with its matrices rounded to binary16 by the
/// `half` crate, and the greedy continuation is transformers' (f32) one.
#[test]
fn f16_conversion_is_the_rounded_checkpoint() {
    let dir = TmpDir::new("hf-f16");
    let src = hf_fixture("llama-rope-default");
    let r = json(&src.join("reference.json"));
    let tokens = u32s(&r["tokens"]);
    let img = dir.join("f16.img");
    let run = convert(&src, &img, &["--quant", "f16", "--context", "40"]);
    assert!(run.stderr.contains("matrices f16"), "{}", run.stderr);
    let info = ok(&["inspect", img.to_str().unwrap()]).text();
    let rows = |dtype: &str| {
        info.lines()
            .filter(|l| l.split_whitespace().nth(2) == Some(dtype))
            .count()
    };
    // embedding, output, and per layer the seven matrices; no Q8 anywhere
    assert_eq!((rows("f16"), rows("q8")), (2 + 7 * 2, 0), "{info}");

    let rounded = dir.join("rounded");
    copy_fixture("llama-rope-default", &rounded);
    let mut st = St::read(&src.join("model.safetensors"));
    let names: Vec<String> = st
        .header
        .keys()
        .filter(|n| *n != "__metadata__")
        .cloned()
        .collect();
    for n in names {
        let shape = st.shape(&n);
        if shape.len() == 2 {
            let v: Vec<f32> = st
                .f32(&n)
                .iter()
                .map(|&x| half::f16::from_f32(x).to_f32())
                .collect();
            st.put(&n, &shape, &v);
        }
    }
    st.write(&rounded.join("model.safetensors"));
    let rounded_img = dir.join("rounded.img");
    convert(&rounded, &rounded_img, &["--context", "40"]);
    let got = logits(&img, &tokens);
    assert_eq!(got, logits(&rounded_img, &tokens));
    println!(
        "llama-rope-default f16: worst |Δlogit| vs transformers {:.3e}",
        max_abs_diff(&got, &r["logits"])
    );
    let prompt = u32s(&r["greedy_prompt"]);
    let want = u32s(&r["greedy"]);
    assert_eq!(greedy(&img, &prompt, want.len()), want);
}

#[test]
fn malformed_checkpoints_fail_cleanly() {
    let dir = TmpDir::new("hf-bad");
    let out = dir.join("out.img");
    let out_s = out.to_str().unwrap().to_string();
    let case = |tag: &str| -> PathBuf {
        let d = dir.join(tag);
        copy_fixture("llama-rope-default", &d);
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

    // truncated safetensors: in the data, in the header, before the header length
    let d = case("trunc");
    let full = std::fs::read(d.join("model.safetensors")).unwrap();
    for cut in [full.len() - 1, full.len() / 2, 100, 5, 0] {
        std::fs::write(d.join("model.safetensors"), &full[..cut]).unwrap();
        convert_fails(&d, 1, "truncated safetensors file");
    }
    // a bad header
    let mut bad = full.clone();
    bad[8] = b'x';
    std::fs::write(d.join("model.safetensors"), &bad).unwrap();
    convert_fails(&d, 1, "bad safetensors header: invalid JSON");
    // no model.safetensors at all
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    convert_fails(&d, 1, "cannot read");

    // a missing tensor
    let d = case("missing");
    let mut st = St::read(&d.join("model.safetensors"));
    assert!(st.remove("model.layers.1.mlp.up_proj.weight"));
    st.write(&d.join("model.safetensors"));
    convert_fails(&d, 1, "missing tensor model.layers.1.mlp.up_proj.weight");

    // a wrong-shaped tensor (same byte count, so the file itself is valid)
    let d = case("shape");
    let mut st = St::read(&d.join("model.safetensors"));
    st.header
        .get_mut("model.layers.0.self_attn.q_proj.weight")
        .unwrap()["shape"] = serde_json::json!([32, 128]);
    st.write(&d.join("model.safetensors"));
    convert_fails(
        &d,
        1,
        "tensor model.layers.0.self_attn.q_proj.weight has shape [32, 128], expected [64, 64]",
    );

    // a tensor microformer would not run (a q-norm): refused, not silently dropped
    let d = case("extra");
    let mut st = St::read(&d.join("model.safetensors"));
    st.put("model.layers.0.self_attn.q_norm.weight", &[8], &[1.0; 8]);
    st.write(&d.join("model.safetensors"));
    convert_fails(&d, 1, "model.layers.0.self_attn.q_norm.weight");

    // config errors: exit 2
    let d = case("act");
    edit_config(&d, |m| {
        m.insert("hidden_act".into(), "gelu".into());
    });
    convert_fails(&d, 2, "hidden_act \"gelu\" is not supported");
    let d = case("kv");
    edit_config(&d, |m| {
        m.insert("num_key_value_heads".into(), 3.into());
    });
    convert_fails(&d, 2, "not a multiple of num_key_value_heads 3");
    let d = case("missing-key");
    edit_config(&d, |m| {
        m.remove("intermediate_size");
    });
    convert_fails(&d, 2, "missing key \"intermediate_size\"");
    let d = case("json");
    std::fs::write(d.join("config.json"), "{ not json").unwrap();
    convert_fails(&d, 2, "invalid JSON");
    let d = case("t5");
    edit_config(&d, |m| {
        m.insert("model_type".into(), "t5".into());
    });
    convert_fails(&d, 2, "model_type t5 cannot be converted");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    convert_fails(&empty, 1, "no config.json");
    fails(
        &[
            "convert",
            hf_fixture("llama-rope-default").to_str().unwrap(),
            "-o",
            &out_s,
            "--context",
            "5000000",
        ],
        2,
        "--context 5000000 is too large",
    );

    // requests the model cannot serve
    let img = dir.join("ok.img");
    convert(&hf_fixture("llama-rope-default"), &img, &["--context", "8"]);
    let img = img.to_str().unwrap();
    fails(
        &["logits", img, "--tokens", "999999"],
        2,
        "token 999999 is outside the vocabulary of 128",
    );
    fails(
        &["logits", img, "--tokens", "128"],
        2,
        "token 128 is outside",
    );
    fails(
        &["logits", img, "--tokens", &id_list(&[3; 9])],
        2,
        "9 tokens exceed the image's context of 8",
    );
    fails(
        &["run", img, "--ids", "--prompt-ids", &id_list(&[3; 9])],
        2,
        "longer than the image's context of 8",
    );
    fails(&["run", img], 2, "has no tokenizer");
}

/// A tokenizer for another vocabulary (aidreams260K's 512 tokens, from the reference
/// models folder) is refused.
#[test]
fn tokenizer_of_another_vocabulary_fails() {
    let Some(tok) = microformer_testkit::reference_file!("aidreams260K.tok512.bin") else {
        return;
    };
    let dir = TmpDir::new("hf-tok");
    let out = dir.join("out.img");
    fails(
        &[
            "convert",
            hf_fixture("llama-rope-default").to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--tokenizer",
            tok.to_str().unwrap(),
        ],
        1,
        "does not fit the model's vocabulary of 128",
    );
    assert!(!out.exists(), "a failed conversion left {}", out.display());
}
