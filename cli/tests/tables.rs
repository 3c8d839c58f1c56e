//! `microformer tables` end to end: runs the built binary on configs and checks
//! its output against `tests/fixtures/tables.json` (Hugging Face's own numbers)
//! and against f64 models of the formulas written here with std maths.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_microformer");

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs")
}

fn fixtures() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tables.json");
    let text = std::fs::read_to_string(path).expect("read tables.json");
    serde_json::from_str(&text).expect("parse tables.json")
}

/// A path for the test; a temp one is removed when dropped.
struct TmpFile {
    path: PathBuf,
    remove: bool,
}

impl TmpFile {
    /// A path that is not ours to remove (a checked-in config).
    fn fixed(path: PathBuf) -> Self {
        TmpFile {
            path,
            remove: false,
        }
    }
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl std::ops::Deref for TmpFile {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for TmpFile {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

/// A unique path under the system temp dir (removed when dropped).
fn tmp_path(name: &str) -> TmpFile {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    TmpFile {
        path: std::env::temp_dir().join(format!(
            "microformer-cli-test-{}-{n}-{name}",
            std::process::id()
        )),
        remove: true,
    }
}

/// Writes `text` to a fresh temp file and returns its path.
fn write_tmp(name: &str, text: &str) -> TmpFile {
    let p = tmp_path(name);
    std::fs::write(&*p, text).expect("write temp file");
    p
}

fn write_config(cfg: &Value) -> TmpFile {
    write_tmp("config.json", &cfg.to_string())
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run microformer")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `tables <config> <extra…>` and returns stdout; asserts success.
fn tables_text(config: &Path, extra: &[&str]) -> String {
    let mut args = vec!["tables", config.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(
        out.status.success(),
        "microformer {args:?} failed: {}",
        text(&out.stderr)
    );
    assert!(out.stderr.is_empty(), "stderr: {}", text(&out.stderr));
    text(&out.stdout)
}

fn tables_json(config: &Path, extra: &[&str]) -> Value {
    let out = tables_text(config, extra);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("output is not JSON ({e}):\n{out}"))
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn rows(v: &Value) -> Vec<Vec<f32>> {
    v.as_array().expect("rows").iter().map(f32s).collect()
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_i64().expect("integer"))
        .collect()
}

/// ulps between two finite f32 of the same sign.
fn ulps(a: f32, b: f32) -> u32 {
    if a == b {
        return 0;
    }
    assert_eq!(a.is_sign_negative(), b.is_sign_negative(), "{a} vs {b}");
    a.to_bits().abs_diff(b.to_bits())
}

// ---------------------------------------------------------------------------
// An f64 model of Hugging Face's RoPE rules (modeling_rope_utils.py), std maths.
// ---------------------------------------------------------------------------

struct RopeModel {
    inv_freq: Vec<f64>,
    attention_factor: f64,
}

/// `rope` is the rope dict (current spelling), `dim` the rotary dim, `max_pos`
/// `max_position_embeddings`, `seq_len` the sequence length (None as HF's None).
fn rope_model(rope: &Value, dim: usize, max_pos: usize, seq_len: Option<usize>) -> RopeModel {
    let get = |k: &str| rope.get(k).and_then(Value::as_f64);
    let theta = get("rope_theta").unwrap_or(10000.0);
    let ty = rope["rope_type"].as_str().expect("rope_type");
    let d = dim as f64;
    let base_inv: Vec<f64> = (0..dim / 2)
        .map(|i| 1.0 / theta.powf((2 * i) as f64 / d))
        .collect();
    let orig = get("original_max_position_embeddings").unwrap_or(max_pos as f64);
    match ty {
        "default" => RopeModel {
            inv_freq: base_inv,
            attention_factor: 1.0,
        },
        "linear" => {
            let f = get("factor").expect("factor");
            RopeModel {
                inv_freq: base_inv.iter().map(|w| w / f).collect(),
                attention_factor: 1.0,
            }
        }
        "dynamic" => {
            let f = get("factor").expect("factor");
            let m = max_pos as f64;
            let l = seq_len.map_or(m, |s| (s as f64).max(m));
            let base = theta * ((f * l / m) - (f - 1.0)).powf(d / (d - 2.0));
            RopeModel {
                inv_freq: (0..dim / 2)
                    .map(|i| 1.0 / base.powf((2 * i) as f64 / d))
                    .collect(),
                attention_factor: 1.0,
            }
        }
        "yarn" => {
            let f = get("factor").unwrap_or(max_pos as f64 / orig);
            let beta_fast = get("beta_fast").unwrap_or(32.0);
            let beta_slow = get("beta_slow").unwrap_or(1.0);
            let corr = |rot: f64| {
                d * (orig / (rot * 2.0 * std::f64::consts::PI)).ln() / (2.0 * theta.ln())
            };
            let lo = corr(beta_fast).floor().max(0.0);
            let mut hi = corr(beta_slow).ceil().min(d - 1.0);
            if lo == hi {
                hi += 0.001;
            }
            let inv = base_inv
                .iter()
                .enumerate()
                .map(|(i, &extra)| {
                    let ramp = ((i as f64 - lo) / (hi - lo)).clamp(0.0, 1.0);
                    let e = 1.0 - ramp;
                    (extra / f) * (1.0 - e) + extra * e
                })
                .collect();
            RopeModel {
                inv_freq: inv,
                attention_factor: get("attention_factor").unwrap_or(0.1 * f.ln() + 1.0),
            }
        }
        "llama3" => {
            let f = get("factor").expect("factor");
            let low = get("low_freq_factor").expect("low");
            let high = get("high_freq_factor").expect("high");
            let low_wl = orig / low;
            let high_wl = orig / high;
            let inv = base_inv
                .iter()
                .map(|&w| {
                    let wl = 2.0 * std::f64::consts::PI / w;
                    if wl < high_wl {
                        w
                    } else if wl > low_wl {
                        w / f
                    } else {
                        let s = (orig / wl - low) / (high - low);
                        (1.0 - s) * w / f + s * w
                    }
                })
                .collect();
            RopeModel {
                inv_freq: inv,
                attention_factor: 1.0,
            }
        }
        "longrope" => {
            let long = f64s(&rope["long_factor"]);
            let short = f64s(&rope["short_factor"]);
            let ext = if seq_len.is_some_and(|s| s as f64 > orig) {
                long
            } else {
                short
            };
            let f = get("factor").unwrap_or(max_pos as f64 / orig);
            let attn = get("attention_factor").unwrap_or(if f <= 1.0 {
                1.0
            } else {
                (1.0 + f.ln() / orig.ln()).sqrt()
            });
            RopeModel {
                inv_freq: base_inv.iter().zip(&ext).map(|(w, e)| w / e).collect(),
                attention_factor: attn,
            }
        }
        other => panic!("model has no rope type {other}"),
    }
}

const POSITIONS: &str = "0..8,100,1000,4095,32767,65535";

/// Checks a `rope` output object against the f64 model: inv_freq (1e-6
/// relative), attention factor (1e-6) and every cos/sin entry (1e-6 absolute).
/// Returns the worst cos/sin error.
fn check_rope_against_model(out: &Value, model: &RopeModel, what: &str) -> f64 {
    let inv = f64s(&out["inv_freq"]);
    assert_eq!(inv.len(), model.inv_freq.len(), "{what}: inv_freq length");
    for (i, (a, b)) in inv.iter().zip(&model.inv_freq).enumerate() {
        assert!(
            ((a - b) / b).abs() <= 1e-6,
            "{what}: inv_freq[{i}] {a} vs model {b}"
        );
    }
    let attn = out["attention_factor"].as_f64().expect("attention_factor");
    assert!(
        (attn - model.attention_factor).abs() <= 1e-6,
        "{what}: attention_factor {attn} vs model {}",
        model.attention_factor
    );
    let positions = ints(&out["positions"]);
    let cos = rows(&out["cos"]);
    let sin = rows(&out["sin"]);
    assert_eq!(cos.len(), positions.len(), "{what}: cos rows");
    assert_eq!(sin.len(), positions.len(), "{what}: sin rows");
    let mut worst = 0f64;
    for ((&p, c), s) in positions.iter().zip(&cos).zip(&sin) {
        assert_eq!(c.len(), model.inv_freq.len(), "{what}: cos row length");
        assert_eq!(s.len(), model.inv_freq.len(), "{what}: sin row length");
        for (j, &w) in model.inv_freq.iter().enumerate() {
            let angle = p as f64 * w;
            let ec = (f64::from(c[j]) - model.attention_factor * angle.cos()).abs();
            let es = (f64::from(s[j]) - model.attention_factor * angle.sin()).abs();
            assert!(
                ec <= 1e-6 && es <= 1e-6,
                "{what}: position {p} pair {j}: cos {} sin {} vs model {} {}",
                c[j],
                s[j],
                model.attention_factor * angle.cos(),
                model.attention_factor * angle.sin()
            );
            worst = worst.max(ec).max(es);
        }
    }
    worst
}

fn rope_entry_config(entry: &Value) -> (Value, usize, usize) {
    let c = &entry["config"];
    let head_dim = c["head_dim"].as_u64().expect("head_dim") as usize;
    let max_pos = c["max_pos"].as_u64().expect("max_pos") as usize;
    let cfg = json!({
        "model_type": "llama",
        "hidden_size": head_dim * 4,
        "num_attention_heads": 4,
        "head_dim": head_dim,
        "max_position_embeddings": max_pos,
        "rope_parameters": c["rope"].clone(),
    });
    (cfg, head_dim, max_pos)
}

/// The same config in the legacy spelling: `rope_scaling` with `type`, `rope_theta`
/// at the top level (and, for LongRoPE, `original_max_position_embeddings` at
/// the top level and no `head_dim`, as Phi-3 checkpoints have it).
fn legacy_config(entry: &Value) -> Value {
    let (mut cfg, head_dim, _) = rope_entry_config(entry);
    let mut rope = entry["config"]["rope"].clone();
    let rope_map = rope.as_object_mut().expect("rope dict");
    let theta = rope_map.remove("rope_theta").expect("rope_theta");
    let ty = rope_map.remove("rope_type").expect("rope_type");
    let obj = cfg.as_object_mut().expect("object");
    obj.remove("rope_parameters");
    obj.insert("rope_theta".into(), theta);
    if ty == "longrope" {
        let orig = rope_map
            .remove("original_max_position_embeddings")
            .expect("original max");
        obj.insert("original_max_position_embeddings".into(), orig);
        obj.insert("model_type".into(), json!("phi3"));
        obj.remove("head_dim");
        obj.insert("hidden_size".into(), json!(head_dim * 4));
    }
    rope_map.insert("type".into(), ty);
    if ty_is_default(&rope) {
        obj.insert("rope_scaling".into(), Value::Null);
    } else {
        obj.insert("rope_scaling".into(), rope);
    }
    cfg
}

fn ty_is_default(rope: &Value) -> bool {
    rope["type"] == "default"
}

#[test]
fn rope_matches_tables_json_and_f64_model() {
    let fx = fixtures();
    let entries = fx["rope"].as_array().expect("rope entries");
    assert_eq!(entries.len(), 7);
    let mut worst = 0f64;
    let mut checked = 0;
    for entry in entries {
        let (cfg, head_dim, max_pos) = rope_entry_config(entry);
        let rope = &entry["config"]["rope"];
        let path = write_config(&cfg);
        for by in entry["by_seq_len"].as_array().expect("by_seq_len") {
            let seq_len = by["seq_len"].as_u64().map(|s| s as usize);
            let seq_arg = seq_len.map(|s| s.to_string());
            let mut extra = vec!["--positions", POSITIONS];
            if let Some(s) = &seq_arg {
                extra.extend_from_slice(&["--seq-len", s]);
            }
            let out = tables_json(&path, &extra);
            let what = format!("{rope} seq_len {seq_len:?}");
            assert_eq!(out["model_type"], "llama");
            for absent in ["alibi_slopes", "t5_buckets", "sinusoidal"] {
                assert!(out.get(absent).is_none(), "{what}: unexpected key {absent}");
            }
            let r = &out["rope"];
            assert_eq!(r["rope_type"], rope["rope_type"], "{what}");
            assert_eq!(r["layout"], "half_split", "{what}");
            assert_eq!(r["rotary_dim"], head_dim, "{what}");
            // Against Hugging Face's numbers (float32: 1e-6 relative).
            let hf_inv = f64s(&by["inv_freq"]);
            let inv = f64s(&r["inv_freq"]);
            assert_eq!(inv.len(), hf_inv.len(), "{what}");
            assert_eq!(inv.len(), head_dim / 2, "{what}");
            for (i, (a, b)) in inv.iter().zip(&hf_inv).enumerate() {
                assert!(
                    ((a - b) / b).abs() <= 1e-6,
                    "{what}: inv_freq[{i}] {a} vs HF {b}"
                );
            }
            let hf_attn = by["attention_factor"].as_f64().expect("attention_factor");
            let attn = r["attention_factor"].as_f64().expect("attention_factor");
            assert!(
                (attn - hf_attn).abs() <= 1e-6,
                "{what}: {attn} vs HF {hf_attn}"
            );
            // Against the f64 model, which must itself agree with HF.
            let model = rope_model(rope, head_dim, max_pos, Some(seq_len.unwrap_or(max_pos)));
            for (i, (m, b)) in model.inv_freq.iter().zip(&hf_inv).enumerate() {
                assert!(
                    ((m - b) / b).abs() <= 1e-6,
                    "{what}: model inv_freq[{i}] {m} vs HF {b}"
                );
            }
            assert_eq!(
                ints(&r["positions"]),
                [0, 1, 2, 3, 4, 5, 6, 7, 100, 1000, 4095, 32767, 65535],
                "{what}"
            );
            worst = worst.max(check_rope_against_model(r, &model, &what));
            checked += 1;
        }
    }
    assert_eq!(checked, 11);
    eprintln!("rope: worst |cos/sin - f64 model| = {worst:e} over positions {POSITIONS}");
}

#[test]
fn legacy_rope_scaling_gives_the_same_tables() {
    let fx = fixtures();
    for entry in fx["rope"].as_array().expect("rope entries") {
        let (cfg, _, _) = rope_entry_config(entry);
        let legacy = legacy_config(entry);
        let current = write_config(&cfg);
        let old = write_config(&legacy);
        for by in entry["by_seq_len"].as_array().expect("by_seq_len") {
            let seq = by["seq_len"].as_u64().map(|s| s.to_string());
            let mut extra = vec!["--positions", "0..4,65535"];
            if let Some(s) = &seq {
                extra.extend_from_slice(&["--seq-len", s]);
            }
            let a = tables_json(&current, &extra);
            let b = tables_json(&old, &extra);
            assert_eq!(a["rope"], b["rope"], "legacy {legacy}");
        }
    }
}

/// The default number of positions and `--positions` lists.
#[test]
fn position_lists_and_defaults() {
    let cfg = configs_dir().join("llama-rope-default.json");
    let out = tables_json(&cfg, &[]);
    assert_eq!(
        ints(&out["rope"]["positions"]),
        (0..8).collect::<Vec<i64>>()
    );
    assert_eq!(out["rope"]["seq_len"], 64);
    let out = tables_json(&cfg, &["--positions", "3,0..2,9"]);
    assert_eq!(ints(&out["rope"]["positions"]), [3, 0, 1, 9]);
    assert_eq!(rows(&out["rope"]["cos"]).len(), 4);
    // Row for position 0 is (cos, sin) = (1, 0) for every pair.
    assert!(rows(&out["rope"]["cos"])[1].iter().all(|&c| c == 1.0));
    assert!(rows(&out["rope"]["sin"])[1].iter().all(|&s| s == 0.0));
}

#[test]
fn shared_hf_rope_configs() {
    for (name, rotary_dim, head_dim) in [
        ("llama-rope-default", 8, 8),
        ("llama-rope-linear", 8, 8),
        ("llama-rope-llama3", 8, 8),
        ("llama-rope-yarn", 8, 8),
        ("gptneox-partial-rope", 4, 16),
    ] {
        let path = configs_dir().join(format!("{name}.json"));
        let raw: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read config"))
                .expect("json");
        let out = tables_json(&path, &["--positions", "0..96,65535"]);
        let r = &out["rope"];
        assert_eq!(r["rotary_dim"], rotary_dim, "{name}");
        assert_eq!(r["head_dim"], head_dim, "{name}");
        assert_eq!(r["layout"], "half_split", "{name}");
        let rope = &raw["rope_parameters"];
        assert_eq!(r["rope_type"], rope["rope_type"], "{name}");
        let max_pos = raw["max_position_embeddings"].as_u64().expect("max") as usize;
        let model = rope_model(rope, rotary_dim, max_pos, Some(max_pos));
        check_rope_against_model(r, &model, name);
    }
    // GPT-NeoX partial rotary: 16-dim heads, 4 rotated dims: inv_freq = [1, 10000^-0.5].
    let out = tables_json(&configs_dir().join("gptneox-partial-rope.json"), &[]);
    assert_eq!(f32s(&out["rope"]["inv_freq"]), [1.0, 0.01]);
}

#[test]
fn gptj_is_interleaved_with_its_rotary_dim() {
    let cfg = json!({"model_type": "gptj", "n_embd": 256, "n_head": 4, "n_positions": 2048, "rotary_dim": 16});
    let out = tables_json(&write_config(&cfg), &["--positions", "0..8,65535"]);
    let r = &out["rope"];
    assert_eq!(r["layout"], "interleaved");
    assert_eq!(r["rotary_dim"], 16);
    assert_eq!(r["head_dim"], 64);
    let model = rope_model(
        &json!({"rope_type": "default", "rope_theta": 10000.0}),
        16,
        2048,
        None,
    );
    check_rope_against_model(r, &model, "gptj");
    // Legacy GPT-NeoX keys: rotary_pct and rotary_emb_base.
    let cfg = json!({"model_type": "gpt_neox", "hidden_size": 64, "num_attention_heads": 4,
        "max_position_embeddings": 64, "rotary_pct": 0.5, "rotary_emb_base": 1000});
    let out = tables_json(&write_config(&cfg), &[]);
    assert_eq!(out["rope"]["rotary_dim"], 8);
    let model = rope_model(
        &json!({"rope_type": "default", "rope_theta": 1000.0}),
        8,
        64,
        None,
    );
    check_rope_against_model(&out["rope"], &model, "gpt_neox legacy");
    // partial_rotary_factor inside rope_parameters (current spelling), int() truncation.
    let cfg = json!({"model_type": "phi", "hidden_size": 80, "num_attention_heads": 2,
        "max_position_embeddings": 64,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.4}});
    let out = tables_json(&write_config(&cfg), &[]);
    assert_eq!(out["rope"]["rotary_dim"], 16);
}

#[test]
fn alibi_bloom_and_mpt_within_one_ulp() {
    let fx = fixtures();
    let mut worst = 0;
    for heads in 1..=32usize {
        let key = heads.to_string();
        let bloom = json!({"model_type": "bloom", "n_head": heads, "hidden_size": 64 * heads});
        let out = tables_json(&write_config(&bloom), &[]);
        assert!(out.get("rope").is_none());
        let got = f32s(&out["alibi_slopes"]);
        let want = f32s(&fx["alibi_bloom"][&key]);
        assert_eq!(got.len(), heads);
        assert_eq!(want.len(), heads);
        for (h, (g, w)) in got.iter().zip(&want).enumerate() {
            let u = ulps(*g, *w);
            assert!(u <= 1, "bloom {heads} heads, head {h}: {g} vs HF {w}");
            worst = worst.max(u);
        }
        let mpt = json!({"model_type": "mpt", "n_heads": heads, "attn_config": {"alibi": true, "alibi_bias_max": 8}});
        let got = f32s(&tables_json(&write_config(&mpt), &[])["alibi_slopes"]);
        let want = f32s(&fx["alibi_mpt"][&key]);
        assert_eq!(got.len(), heads);
        for (h, (g, w)) in got.iter().zip(&want).enumerate() {
            let u = ulps(*g, *w);
            assert!(u <= 1, "mpt {heads} heads, head {h}: {g} vs HF {w}");
            worst = worst.max(u);
        }
    }
    eprintln!("alibi: worst distance to HF = {worst} ulp");
    // MPT without attn_config: alibi_bias_max defaults to 8.
    let mpt = json!({"model_type": "mpt", "n_heads": 12});
    let got = f32s(&tables_json(&write_config(&mpt), &[])["alibi_slopes"]);
    let want = f32s(&fx["alibi_mpt"]["12"]);
    for (g, w) in got.iter().zip(&want) {
        assert!(ulps(*g, *w) <= 1);
    }
    // The shared BLOOM fixture: 4 heads.
    let out = tables_json(&configs_dir().join("bloom-alibi.json"), &[]);
    let got = f32s(&out["alibi_slopes"]);
    let want = f32s(&fx["alibi_bloom"]["4"]);
    assert_eq!(got.len(), 4);
    for (g, w) in got.iter().zip(&want) {
        assert!(ulps(*g, *w) <= 1);
    }
}

#[test]
fn t5_buckets_identical() {
    let fx = fixtures();
    let entries = fx["t5_buckets"].as_array().expect("t5 entries");
    assert_eq!(entries.len(), 2);
    for e in entries {
        let cfg = json!({
            "model_type": "t5",
            "relative_attention_num_buckets": e["num_buckets"],
            "relative_attention_max_distance": e["max_distance"],
        });
        let mut extra = vec!["--relative-range", "300"];
        let bidirectional = e["bidirectional"].as_bool().expect("bool");
        if !bidirectional {
            extra.push("--causal");
        }
        let out = tables_json(&write_config(&cfg), &extra);
        let t = &out["t5_buckets"];
        assert_eq!(t["bidirectional"], bidirectional);
        assert_eq!(t["num_buckets"], e["num_buckets"]);
        assert_eq!(t["max_distance"], e["max_distance"]);
        assert_eq!(t["relative_position_from"], -300);
        assert_eq!(e["relative_position_from"], -300);
        assert_eq!(
            ints(&t["buckets"]),
            ints(&e["buckets"]),
            "bidirectional {bidirectional}"
        );
        assert_eq!(ints(&t["buckets"]).len(), 601);
    }
    // relative_attention_max_distance defaults to 128; --relative-range defaults to 128.
    let cfg = json!({"model_type": "t5", "relative_attention_num_buckets": 32});
    let out = tables_json(&write_config(&cfg), &[]);
    let t = &out["t5_buckets"];
    assert_eq!(t["max_distance"], 128);
    assert_eq!(t["relative_position_from"], -128);
    let want: Vec<i64> = ints(&entries[0]["buckets"])[300 - 128..=300 + 128].to_vec();
    assert_eq!(ints(&t["buckets"]), want);
}

/// XGLM's table built as PyTorch builds it (`get_embedding` on float32 tensors),
/// written here with std maths: `f32(-ln(10000)/(half-1))`, `f32(exp(i·that))`,
/// `f32(row·freq)`, then sin/cos of that f32 angle rounded once.
fn xglm_float32_model(rows: usize, dim: usize, padding_idx: Option<usize>) -> Vec<Vec<f64>> {
    let half = dim / 2;
    let neg_step = -(10000f64.ln() / (half as f64 - 1.0)) as f32;
    (0..rows)
        .map(|r| {
            (0..dim)
                .map(|j| {
                    if Some(r) == padding_idx || j >= 2 * half {
                        return 0.0;
                    }
                    let freq = f64::from((j % half) as f32 * neg_step).exp() as f32;
                    let angle = f64::from(r as f32 * freq);
                    f64::from(if j < half { angle.sin() } else { angle.cos() } as f32)
                })
                .collect()
        })
        .collect()
}

#[test]
fn sinusoidal_split_and_interleaved() {
    let fx = fixtures();
    // XGLM, split layout: Hugging Face builds the table in float32 (f32 frequencies
    // and angles), and so does the converter for an XGLM image; `tables` prints that
    // table, within 1e-6 of Hugging Face's own. The exact table (f64 angles) is
    // 1.4e-6 away from it on this fixture (asserted below: the fixture tells the two
    // apart at 1e-6).
    let e = &fx["sinusoidal_split"][0];
    assert_eq!(
        (e["dim"].as_u64(), e["padding_idx"].as_u64()),
        (Some(16), Some(1))
    );
    let cfg = json!({"model_type": "xglm", "d_model": 16, "pad_token_id": 1, "max_position_embeddings": 62});
    let out = tables_json(&write_config(&cfg), &["--num-positions", "64"]);
    let s = &out["sinusoidal"];
    assert_eq!(s["layout"], "split");
    assert_eq!(s["construction"], "float32");
    let got = rows(&s["table"]);
    let want = rows(&e["table"]);
    assert_eq!(got.len(), 64);
    assert_eq!(want.len(), 64);
    let half = 8;
    let step = 10000f64.ln() / (half as f64 - 1.0);
    let (mut worst, mut exact_worst) = (0f64, 0f64);
    for (p, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.len(), 16);
        for j in 0..16 {
            let err = (f64::from(g[j]) - f64::from(w[j])).abs();
            assert!(
                err <= 1e-6,
                "split row {p} col {j}: {} vs HF {} (error {err:e})",
                g[j],
                w[j]
            );
            if p == 1 {
                assert_eq!(g[j], 0.0, "padding row");
            }
            worst = worst.max(err);
            let angle = p as f64 * (-(step * (j % half) as f64)).exp();
            let exact = if p == 1 {
                0.0
            } else if j < half {
                angle.sin()
            } else {
                angle.cos()
            };
            exact_worst = exact_worst.max((exact - f64::from(w[j])).abs());
        }
    }
    eprintln!(
        "sinusoidal split: worst error against HF {worst:e} (the exact table's: {exact_worst:e})"
    );
    assert!(
        exact_worst > 1e-6,
        "the fixture no longer separates the float32 table from the exact one ({exact_worst:e})"
    );
    // Default rows: max_position_embeddings + 2 (XGLM's offset), as make_weights.
    let out = tables_json(&write_config(&cfg), &[]);
    assert_eq!(rows(&out["sinusoidal"]["table"]).len(), 64);
    // pad_token_id absent is XGLMConfig's default 1 (as the converter reads it);
    // null is no padding row.
    let absent = json!({"model_type": "xglm", "d_model": 16, "max_position_embeddings": 62});
    let out = tables_json(&write_config(&absent), &[]);
    assert_eq!(out["sinusoidal"]["padding_idx"], 1);
    assert!(rows(&out["sinusoidal"]["table"])[1]
        .iter()
        .all(|&x| x == 0.0));
    let null = json!({"model_type": "xglm", "d_model": 16, "pad_token_id": null, "max_position_embeddings": 62});
    let out = tables_json(&write_config(&null), &[]);
    assert_eq!(out["sinusoidal"]["padding_idx"], Value::Null);
    assert!(rows(&out["sinusoidal"]["table"])[1]
        .iter()
        .any(|&x| x != 0.0));
    // The shared XGLM fixture (d_model 64, 64 positions → 66 rows), against the
    // float32 construction written above (1e-6: the platform's sin/cos may differ from
    // torch's by an ulp).
    let out = tables_json(&configs_dir().join("xglm-sinusoidal.json"), &[]);
    let s = &out["sinusoidal"];
    assert_eq!(s["dim"], 64);
    assert_eq!(s["padding_idx"], 1);
    let t = rows(&s["table"]);
    assert_eq!(t.len(), 66);
    let model = xglm_float32_model(66, 64, Some(1));
    for (p, (row, want)) in t.iter().zip(&model).enumerate() {
        assert_eq!(row.len(), 64);
        for (j, (&x, &w)) in row.iter().zip(want).enumerate() {
            assert!((f64::from(x) - w).abs() <= 1e-6, "xglm row {p} col {j}");
        }
    }

    // DistilBERT, interleaved layout (HF builds it in float64): 1e-6.
    let e = &fx["sinusoidal_interleaved"][0];
    let cfg = json!({"model_type": "distilbert", "dim": 16, "max_position_embeddings": 64, "sinusoidal_pos_embds": true});
    let out = tables_json(&write_config(&cfg), &[]);
    let s = &out["sinusoidal"];
    assert_eq!(s["layout"], "interleaved");
    let got = rows(&s["table"]);
    let want = rows(&e["table"]);
    assert_eq!(got.len(), 64);
    assert_eq!(want.len(), 64);
    let mut worst = 0f64;
    for (p, (g, w)) in got.iter().zip(&want).enumerate() {
        for j in 0..16 {
            let err = (f64::from(g[j]) - f64::from(w[j])).abs();
            assert!(
                err <= 1e-6,
                "interleaved row {p} col {j}: {} vs HF {}",
                g[j],
                w[j]
            );
            worst = worst.max(err);
        }
    }
    eprintln!("sinusoidal interleaved: worst error = {worst:e}");
}

/// `tables` on an XGLM config prints the table the runtime reads: the position
/// table the converter stores in the image of that checkpoint, bit for bit.
#[test]
fn xglm_table_is_the_images() {
    use microformer::image::{Image, TensorData, TensorKind};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hf/xglm-sinusoidal");
    let opts = microformer_convert::hf::Options {
        context: Some(64),
        storage: microformer_convert::Storage::F32,
        tokenizer: None,
        rope_scaling: None,
    };
    let (bytes, _) =
        microformer_convert::hf::convert(&dir, &opts, &mut |_, _, _| {}).expect("convert XGLM");
    let aligned = microformer_convert::AlignedBytes::new(&bytes);
    let img = Image::parse(aligned.bytes()).expect("parse the XGLM image");
    let TensorData::F32(stored) = img.tensor(TensorKind::PosEmbedding, 0).expect("pos table")
    else {
        panic!("the XGLM position table is not f32");
    };
    let out = tables_json(&dir.join("config.json"), &[]);
    let printed: Vec<f32> = rows(&out["sinusoidal"]["table"]).concat();
    assert_eq!(printed.len(), 66 * 64);
    assert_eq!(stored.len(), printed.len());
    for (i, (a, b)) in printed.iter().zip(stored).enumerate() {
        assert_eq!(
            a.to_bits(),
            b.to_bits(),
            "entry {i} (row {}, col {}): tables {a} vs image {b}",
            i / 64,
            i % 64
        );
    }
}

/// Configs covering the four kinds of table, for the Rust and C formats.
fn format_cases() -> Vec<(&'static str, TmpFile, Vec<&'static str>)> {
    let longrope = json!({
        "model_type": "phi3", "hidden_size": 128, "num_attention_heads": 4,
        "max_position_embeddings": 4096, "original_max_position_embeddings": 1024,
        "rope_theta": 10000.0,
        "rope_scaling": {"type": "longrope",
            "short_factor": [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.1, 2.2, 2.3, 2.4, 2.5],
            "long_factor": [1.0, 2.5, 4.0, 5.5, 7.0, 8.5, 10.0, 11.5, 13.0, 14.5, 16.0, 17.5, 19.0, 20.5, 22.0, 23.5]}
    });
    vec![
        (
            "rope",
            TmpFile::fixed(configs_dir().join("llama-rope-yarn.json")),
            vec!["--positions", "0..8,65535"],
        ),
        (
            "rope",
            write_config(&longrope),
            vec!["--positions", "0..3,70000"],
        ),
        (
            "alibi",
            TmpFile::fixed(configs_dir().join("bloom-alibi.json")),
            vec![],
        ),
        (
            "t5",
            write_config(&json!({"model_type": "t5", "relative_attention_num_buckets": 32})),
            vec!["--relative-range", "20", "--causal"],
        ),
        (
            "t5_wide",
            write_config(
                &json!({"model_type": "t5", "relative_attention_num_buckets": 400, "relative_attention_max_distance": 1000}),
            ),
            vec!["--relative-range", "300"],
        ),
        (
            "sinusoidal",
            TmpFile::fixed(configs_dir().join("xglm-sinusoidal.json")),
            vec![],
        ),
    ]
}

/// Every f32 of the JSON output, flattened in the order the Rust/C programs print them.
fn json_floats(out: &Value) -> Vec<f32> {
    let mut v = Vec::new();
    if let Some(r) = out.get("rope") {
        v.extend(f32s(&r["inv_freq"]));
        v.push(r["attention_factor"].as_f64().expect("attn") as f32);
        for key in ["cos", "sin"] {
            for row in rows(&r[key]) {
                v.extend(row);
            }
        }
    }
    if let Some(a) = out.get("alibi_slopes") {
        v.extend(f32s(a));
    }
    if let Some(t) = out.get("t5_buckets") {
        v.extend(ints(&t["buckets"]).iter().map(|&b| b as f32));
    }
    if let Some(s) = out.get("sinusoidal") {
        for row in rows(&s["table"]) {
            v.extend(row);
        }
    }
    v
}

/// Parses lines of `u32` bit patterns.
fn bits_lines(s: &str) -> Vec<f32> {
    s.lines()
        .map(|l| f32::from_bits(l.trim().parse::<u32>().expect("bits line")))
        .collect()
}

fn assert_same_bits(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g.to_bits(),
            w.to_bits(),
            "{what}: value {i}: {g} vs JSON {w}"
        );
    }
}

#[test]
fn rust_format_compiles_and_round_trips() {
    for (kind, path, extra) in format_cases() {
        let mut args = extra.clone();
        args.extend_from_slice(&["--format", "rust"]);
        let src = tables_text(&path, &args);
        assert!(
            src.starts_with("// Generated by `microformer tables` from "),
            "{src}"
        );
        assert!(src.contains(&path.display().to_string()));
        // As a library.
        let lib_src = write_tmp("tables.rs", &src);
        let lib_out = tmp_path("libtables.rlib");
        let out = Command::new("rustc")
            .args(["--crate-type", "lib", "--edition", "2021", "-o"])
            .arg(&lib_out)
            .arg(&lib_src)
            .output()
            .expect("run rustc");
        assert!(
            out.status.success(),
            "{kind}: rustc failed:\n{}\n{src}",
            text(&out.stderr)
        );
        assert!(
            !text(&out.stderr).contains("warning"),
            "{kind}: {}",
            text(&out.stderr)
        );
        // As a program printing every value's bits: the literals round-trip.
        let printer = match kind {
            "rope" => "for x in ROPE_INV_FREQ { println!(\"{}\", x.to_bits()); }\n\
                       println!(\"{}\", ROPE_ATTENTION_FACTOR.to_bits());\n\
                       for t in [&ROPE_COS, &ROPE_SIN] { for r in t.iter() { for x in r { println!(\"{}\", x.to_bits()); } } }",
            "alibi" => "for x in ALIBI_SLOPES { println!(\"{}\", x.to_bits()); }",
            "t5" | "t5_wide" => "for b in T5_BUCKETS { println!(\"{}\", (b as f32).to_bits()); }",
            "sinusoidal" => "for r in SINUSOIDAL.iter() { for x in r { println!(\"{}\", x.to_bits()); } }",
            _ => unreachable!(),
        };
        let prog = write_tmp("prog.rs", &format!("{src}\nfn main() {{\n{printer}\n}}\n"));
        let exe = tmp_path("prog-rs");
        let out = Command::new("rustc")
            .args(["--edition", "2021", "-o"])
            .arg(&exe)
            .arg(&prog)
            .output()
            .expect("run rustc");
        assert!(
            out.status.success(),
            "{kind}: rustc (bin) failed:\n{}",
            text(&out.stderr)
        );
        let run_out = Command::new(&exe).output().expect("run program");
        assert!(run_out.status.success());
        let json_out = tables_json(&path, &extra);
        assert_same_bits(
            &bits_lines(&text(&run_out.stdout)),
            &json_floats(&json_out),
            kind,
        );
    }
}

fn have_cc() -> bool {
    Command::new("cc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn c_format_compiles_and_round_trips() {
    if !have_cc() {
        eprintln!("NOTICE: no `cc` on this machine: skipping the C header checks");
        return;
    }
    for (kind, path, extra) in format_cases() {
        let mut args = extra.clone();
        args.extend_from_slice(&["--format", "c"]);
        let header = tables_text(&path, &args);
        assert!(header.contains("#ifndef MICROFORMER_TABLES_H"));
        assert!(header.contains("static const float") || kind.starts_with("t5"));
        let h = write_tmp("tables.h", &header);
        let h_name = h.file_name().expect("name").to_string_lossy().into_owned();
        let printer = match kind {
            "rope" => "P(microformer_rope_inv_freq, MICROFORMER_ROPE_PAIRS);\n\
                       { float a = MICROFORMER_ROPE_ATTENTION_FACTOR; P(&a, 1); }\n\
                       P(&microformer_rope_cos[0][0], MICROFORMER_ROPE_PAIRS * MICROFORMER_ROPE_NUM_POSITIONS);\n\
                       P(&microformer_rope_sin[0][0], MICROFORMER_ROPE_PAIRS * MICROFORMER_ROPE_NUM_POSITIONS);",
            "alibi" => "P(microformer_alibi_slopes, MICROFORMER_ALIBI_NUM_HEADS);",
            "t5" | "t5_wide" => "{ size_t i; for (i = 0; i < MICROFORMER_T5_NUM_RELATIVE_POSITIONS; i++) { float b = (float)microformer_t5_buckets[i]; P(&b, 1); } }",
            "sinusoidal" => "P(&microformer_sinusoidal[0][0], MICROFORMER_SINUSOIDAL_DIM * MICROFORMER_SINUSOIDAL_NUM_POSITIONS);",
            _ => unreachable!(),
        };
        // Included twice: the include guard must hold.
        let c_src = format!(
            "#include <stdio.h>\n#include <string.h>\n#include <stddef.h>\n\
             #include \"{h_name}\"\n#include \"{h_name}\"\n\
             static void P(const float *x, size_t n) {{ size_t i; for (i = 0; i < n; i++) {{ uint32_t u; memcpy(&u, &x[i], 4); printf(\"%lu\\n\", (unsigned long)u); }} }}\n\
             int main(void) {{\n{printer}\nreturn 0;\n}}\n"
        );
        let c = write_tmp("prog.c", &c_src);
        let out = Command::new("cc")
            .args([
                "-std=c99",
                "-Wall",
                "-Wextra",
                "-pedantic",
                "-Werror",
                "-fsyntax-only",
            ])
            .arg(&c)
            .output()
            .expect("run cc");
        assert!(
            out.status.success(),
            "{kind}: cc -fsyntax-only failed:\n{}\n{header}",
            text(&out.stderr)
        );
        let exe = tmp_path("prog-c");
        let out = Command::new("cc")
            .args(["-std=c99", "-O0", "-o"])
            .arg(&exe)
            .arg(&c)
            .output()
            .expect("run cc");
        assert!(
            out.status.success(),
            "{kind}: cc failed:\n{}",
            text(&out.stderr)
        );
        let run_out = Command::new(&exe).output().expect("run program");
        assert!(run_out.status.success());
        let json_out = tables_json(&path, &extra);
        assert_same_bits(
            &bits_lines(&text(&run_out.stdout)),
            &json_floats(&json_out),
            kind,
        );
    }
}

/// Runs with a config file, asserts exit code 2, a `microformer: error:` line
/// containing `cause`, no panic and no stdout.
fn assert_fails(args: &[&str], cause: &str) {
    let out = run(args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: stderr {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert!(
        err.contains(cause),
        "{args:?}: stderr {err:?} lacks {cause:?}"
    );
    assert!(
        out.stdout.is_empty(),
        "{args:?}: stdout {}",
        text(&out.stdout)
    );
}

fn assert_config_fails(cfg_text: &str, cause: &str) {
    let p = write_tmp("bad.json", cfg_text);
    let s = p.to_str().expect("utf-8").to_owned();
    assert_fails(&["tables", &s], cause);
    assert_fails(&["tables", &s], "microformer: error: ");
}

#[test]
fn bad_configs_exit_2_with_a_message() {
    let missing = tmp_path("does-not-exist.json");
    assert_fails(&["tables", missing.to_str().expect("utf-8")], "cannot read");
    assert_config_fails("{\"model_type\": \"llama\",", "invalid JSON");
    assert_config_fails("[1, 2]", "JSON object");
    assert_config_fails(r#"{"hidden_size": 64}"#, "missing key \"model_type\"");
    assert_config_fails(
        r#"{"model_type": "llama", "head_dim": 8}"#,
        "max_position_embeddings",
    );
    assert_config_fails(
        r#"{"model_type": "llama", "hidden_size": 64, "max_position_embeddings": 64}"#,
        "num_attention_heads",
    );
    assert_config_fails(
        r#"{"model_type": "llama", "head_dim": 8, "max_position_embeddings": 64, "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0}}"#,
        "high_freq_factor",
    );
    assert_config_fails(
        r#"{"model_type": "transformer-xl"}"#,
        "unknown model_type \"transformer-xl\"",
    );
    assert_config_fails(
        r#"{"model_type": "llama", "head_dim": 8, "max_position_embeddings": 64, "rope_parameters": {"rope_type": "ntk-by-parts", "rope_theta": 10000.0}}"#,
        "unknown rope type \"ntk-by-parts\"",
    );
    assert_config_fails(
        r#"{"model_type": "llama", "head_dim": 8, "max_position_embeddings": 64, "rope_scaling": {"type": "banana"}}"#,
        "unknown rope type \"banana\"",
    );
    for factor in ["0", "-2.0"] {
        for ty in ["linear", "dynamic", "yarn", "llama3"] {
            assert_config_fails(
                &format!(
                    r#"{{"model_type": "llama", "head_dim": 8, "max_position_embeddings": 64, "rope_parameters": {{"rope_type": "{ty}", "rope_theta": 10000.0, "factor": {factor}, "low_freq_factor": 1.0, "high_freq_factor": 4.0}}}}"#
                ),
                "factor\" must be a finite number > 0",
            );
        }
    }
    assert_config_fails(
        r#"{"model_type": "llama", "head_dim": 8, "max_position_embeddings": 64, "rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0}}"#,
        "missing key \"rope_parameters.factor\"",
    );
    assert_config_fails(
        r#"{"model_type": "llama", "head_dim": 14, "max_position_embeddings": 64, "partial_rotary_factor": 0.5}"#,
        "rotary dimension 7 is odd",
    );
    assert_config_fails(
        r#"{"model_type": "gptj", "n_embd": 64, "n_head": 4, "n_positions": 64, "rotary_dim": 5}"#,
        "rotary dimension 5 is odd",
    );
    assert_config_fails(
        r#"{"model_type": "llama", "head_dim": 7, "max_position_embeddings": 64}"#,
        "rotary dimension 7 is odd",
    );
    assert_config_fails(
        r#"{"model_type": "llama", "hidden_size": 64, "num_attention_heads": 0, "max_position_embeddings": 64}"#,
        "num_attention_heads is 0",
    );
    assert_config_fails(r#"{"model_type": "bloom", "n_head": 0}"#, "n_head is 0");
    assert_config_fails(r#"{"model_type": "mpt", "n_heads": 0}"#, "n_heads is 0");
    assert_config_fails(
        r#"{"model_type": "gptj", "n_embd": 64, "n_head": 0, "n_positions": 64}"#,
        "n_head is 0",
    );
    assert_config_fails(
        r#"{"model_type": "phi3", "hidden_size": 64, "num_attention_heads": 4, "max_position_embeddings": 4096,
            "original_max_position_embeddings": 1024,
            "rope_scaling": {"type": "longrope", "short_factor": [1.0, 1.0, 1.0], "long_factor": [1, 2, 3, 4, 5, 6, 7, 8]}}"#,
        "short_factor has 3 entries, rotary dimension 16 needs 8",
    );
    assert_config_fails(
        r#"{"model_type": "llama", "head_dim": 8, "max_position_embeddings": 64, "rope_parameters": {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1, 1, 1, 1], "long_factor": [1, 2]}}"#,
        "long_factor has 2 entries",
    );
    assert_config_fails(
        r#"{"model_type": "llama", "head_dim": 8, "max_position_embeddings": 64, "rope_parameters": {"rope_type": "default", "rope_theta": 1.0}}"#,
        "rope_theta must be a finite number > 1",
    );
    assert_config_fails(
        r#"{"model_type": "llama", "head_dim": "eight", "max_position_embeddings": 64}"#,
        "\"head_dim\" must be a non-negative integer",
    );
    assert_config_fails(r#"{"model_type": "t5"}"#, "relative_attention_num_buckets");
    assert_config_fails(
        r#"{"model_type": "t5", "relative_attention_num_buckets": 2}"#,
        "too small",
    );
    assert_config_fails(
        r#"{"model_type": "distilbert", "dim": 16, "max_position_embeddings": 64, "sinusoidal_pos_embds": false}"#,
        "sinusoidal_pos_embds",
    );
    assert_config_fails(
        r#"{"model_type": "xglm", "max_position_embeddings": 64}"#,
        "d_model",
    );
    let gpt2 = configs_dir().join("gpt2-learned.json");
    assert_fails(
        &["tables", gpt2.to_str().expect("utf-8")],
        "learns its 64 absolute position embeddings",
    );
}

#[test]
fn bad_flags_exit_2() {
    let cfg = configs_dir().join("llama-rope-default.json");
    let c = cfg.to_str().expect("utf-8");
    for (args, cause) in [
        (vec!["tables", c, "--format", "xml"], "xml"),
        (vec!["tables", c, "--positions", "5..2"], "empty range"),
        (vec!["tables", c, "--positions", "1,x"], "bad position"),
        (vec!["tables", c, "--seq-len", "0"], "seq-len"),
        (vec!["tables", c, "--relative-range", "-1"], "-1"),
        (vec!["tables", c, "--frobnicate"], "frobnicate"),
        (vec!["tables"], "CONFIG"),
        (vec!["nonsense"], "nonsense"),
    ] {
        let out = run(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(cause), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
