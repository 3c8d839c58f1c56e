//! Hugging Face checkpoints (`config.json` + `model.safetensors`) into model images.
//!
//! Supported `model_type`s, all RMSNorm + SwiGLU + RoPE with grouped-query
//! attention (image [`Arch::Llama`]):
//!
//! | model_type | specifics |
//! |---|---|
//! | `llama` | `q/k/v/o_proj`, `gate/up/down_proj` |
//! | `qwen2` | q/k/v biases → `FLAG_QKV_BIAS` |
//! | `mistral` | `sliding_window` → the header's sliding window |
//! | `phi3` | fused `qkv_proj` (rows: q, then k, then v) and `gate_up_proj` (rows: gate, then up) split; LongRoPE; `sliding_window` |
//!
//! Conventions carried into the header: half-split RoPE pairs (`FLAG_ROPE_INTERLEAVED`
//! clear, Hugging Face's `rotate_half`), `rotary_dim` from `partial_rotary_factor`,
//! `norm_eps` = `rms_norm_eps`, tied embeddings from `tie_word_embeddings`.
//!
//! ## The RoPE table
//!
//! Rows `[context][rotary_dim/2]`, computed the way Hugging Face's
//! `LlamaRotaryEmbedding.forward` computes them, so that the logits agree:
//! `inv_freq` from [`RopeConfig::inv_freq`] (Hugging Face's formula, evaluated in
//! f64) rounded to f32 — Hugging Face keeps `inv_freq` as a float32 buffer; the
//! angle `(pos as f32) · inv_freq` in f32 (its float32 matmul, one product per
//! entry); `cos`/`sin` of that f32 angle evaluated in f64 and rounded to f32 (torch's
//! float32 `cos`/`sin` are accurate to about an ulp); then multiplied in f32 by the
//! attention factor rounded to f32. Dynamic NTK and LongRoPE choose their
//! frequencies from the sequence length: here the image's context (`--context`).
//!
//! Every tensor in the file must be used (a stray `rotary_emb.inv_freq` buffer
//! excepted): an unknown tensor means a model part microformer would not run
//! (an output bias, a q/k norm, ...), and converting it silently would give wrong
//! logits.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use microformer::image::{self, Arch, Header, TensorKind, TensorSource};
use microformer::num::q8;
use microformer::pos::rope_scaling::RopeConfig;
use serde_json::Value;

use crate::error::{bail, fail, CliError, Result};
use crate::files;
use crate::hf_config::{HfConfig, LlamaDims, ModelType};
use crate::progress::Progress;
use crate::safetensors::{SafeTensors, StError};

/// How the matrices are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    /// f32.
    F32,
    /// Q8_0 with this group size (matrices whose rows are not whole groups stay f32).
    Q8 {
        /// Values per scale.
        group_size: usize,
    },
}

/// Conversion options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Positions of the image; default `min(max_position_embeddings, 2048)`.
    pub context: Option<usize>,
    /// Matrix storage; `Q8 { group_size: 0 }` picks the default group.
    pub quant: Quant,
    /// A llama2.c tokenizer file to embed.
    pub tokenizer: Option<Vec<u8>>,
}

/// Default context when `--context` is not given: `min(max_position_embeddings, 2048)`.
pub const DEFAULT_MAX_CONTEXT: usize = 2048;

/// The Q8 group size used when none is given: 64, halved while it does not
/// divide `dim` (llama2.c `export.py`'s rule).
pub fn default_group_size(dim: usize) -> usize {
    let mut g = 64;
    while g > 1 && dim % g != 0 {
        g /= 2;
    }
    g
}

/// The checkpoint's tensors, possibly over several shards.
struct Weights {
    shards: Vec<SafeTensors>,
    /// name → shard index
    index: BTreeMap<String, usize>,
    used: BTreeSet<String>,
}

fn st_err(e: StError) -> CliError {
    CliError::runtime(e.to_string())
}

impl Weights {
    /// `model.safetensors`, or the shards named by `model.safetensors.index.json`.
    fn load(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        let files: Vec<std::path::PathBuf> = if single.exists() || !index_path.exists() {
            vec![single]
        } else {
            let text = String::from_utf8(files::read(&index_path)?)
                .map_err(|_| CliError::runtime(format!("{}: not UTF-8", index_path.display())))?;
            let v: Value = serde_json::from_str(&text).map_err(|e| {
                CliError::runtime(format!("{}: invalid JSON: {e}", index_path.display()))
            })?;
            let Some(map) = v.get("weight_map").and_then(Value::as_object) else {
                fail!("{}: no \"weight_map\" object", index_path.display());
            };
            let mut names = BTreeSet::new();
            for f in map.values() {
                match f.as_str() {
                    Some(s) if !s.contains('/') && !s.contains('\\') => {
                        names.insert(s.to_string());
                    }
                    _ => fail!("{}: bad shard name {f}", index_path.display()),
                }
            }
            names.into_iter().map(|n| dir.join(n)).collect()
        };
        let mut shards = Vec::new();
        let mut index = BTreeMap::new();
        for (i, path) in files.iter().enumerate() {
            let st = SafeTensors::parse(files::read(path)?)
                .map_err(|e| st_err(e).context(path.display()))?;
            for name in st.names() {
                if index.insert(name.to_string(), i).is_some() {
                    fail!("tensor {name} appears in two shards");
                }
            }
            shards.push(st);
        }
        Ok(Weights {
            shards,
            index,
            used: BTreeSet::new(),
        })
    }

    fn has(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    fn get(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let Some(&i) = self.index.get(name) else {
            return Err(st_err(StError::MissingTensor(name.into())));
        };
        self.used.insert(name.to_string());
        self.shards[i].f32(name, shape).map_err(st_err)
    }

    /// Tensors never read (stray RoPE buffers excepted).
    fn unused(&self) -> Vec<&str> {
        self.index
            .keys()
            .filter(|n| !self.used.contains(*n) && !n.ends_with("rotary_emb.inv_freq"))
            .map(String::as_str)
            .collect()
    }
}

/// An image tensor before it is laid out.
enum Owned {
    F32(Vec<f32>),
    Q8(Vec<i8>, Vec<f32>),
    U8(Vec<u8>),
}

impl Owned {
    fn source(&self) -> TensorSource<'_> {
        match self {
            Owned::F32(v) => TensorSource::F32(v),
            Owned::Q8(values, scales) => TensorSource::Q8 { values, scales },
            Owned::U8(b) => TensorSource::U8(b),
        }
    }
}

/// RoPE cos/sin rows for `context` positions, as Hugging Face computes them
/// (see the module documentation).
pub fn rope_tables(cfg: &RopeConfig<'_>, context: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    cfg.validate()?;
    let pairs = cfg.pairs();
    let inv: Vec<f32> = (0..pairs)
        .map(|i| cfg.inv_freq(i, context) as f32)
        .collect();
    let attn = cfg.attention_factor(context) as f32;
    if !(attn.is_finite() && inv.iter().all(|f| f.is_finite())) {
        bail!("the RoPE parameters give non-finite frequencies");
    }
    let mut cos = Vec::with_capacity(context * pairs);
    let mut sin = Vec::with_capacity(context * pairs);
    for p in 0..context {
        for &f in &inv {
            let angle = p as f32 * f;
            let a = f64::from(angle);
            cos.push(a.cos() as f32 * attn);
            sin.push(a.sin() as f32 * attn);
        }
    }
    Ok((cos, sin))
}

/// What was converted (for the summary line).
pub struct Summary {
    /// The image header.
    pub header: Header,
    /// The model type.
    pub model_type: &'static str,
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| CliError::new(format!("{what} {v} is too large")))
}

/// Converts a Hugging Face checkpoint directory into image bytes.
pub fn convert(dir: &Path, opts: &Options, verbose_progress: bool) -> Result<(Vec<u8>, Summary)> {
    let cfg_path = dir.join("config.json");
    if !cfg_path.exists() {
        fail!("{}: no config.json in this directory", dir.display());
    }
    let cfg = HfConfig::load(&cfg_path)?;
    if !matches!(
        cfg.model_type,
        ModelType::Llama | ModelType::Qwen2 | ModelType::Mistral | ModelType::Phi3
    ) {
        bail!(
            "{}: model_type {} cannot be converted (supported: llama, qwen2, mistral, phi3)",
            cfg_path.display(),
            cfg.model_type.name()
        );
    }
    let dims = cfg
        .llama_dims()
        .map_err(|e| e.context(cfg_path.display()))?;
    let spec = cfg.rope().map_err(|e| e.context(cfg_path.display()))?;
    if spec.head_dim != dims.head_dim {
        bail!(
            "{}: RoPE head dimension {} disagrees with head_dim {}",
            cfg_path.display(),
            spec.head_dim,
            dims.head_dim
        );
    }
    let context = opts
        .context
        .unwrap_or(dims.max_position_embeddings.min(DEFAULT_MAX_CONTEXT));
    if context == 0 {
        bail!("--context must be at least 1");
    }
    if context > (1 << 20) {
        bail!("--context {context} is too large (at most {})", 1 << 20);
    }
    let rope_cfg = spec.config();
    let (cos, sin) = rope_tables(&rope_cfg, context)
        .map_err(|e| e.context(format!("{}: RoPE parameters", cfg_path.display())))?;

    let mut w = Weights::load(dir)?;

    let bias = w.has("model.layers.0.self_attn.q_proj.bias");
    let group_size = match opts.quant {
        Quant::F32 => 0,
        Quant::Q8 { group_size: 0 } => {
            let g = default_group_size(dims.hidden_size);
            if g % 4 != 0 {
                bail!(
                    "no default Q8 group size for hidden_size {}: give --group-size (a multiple of 4)",
                    dims.hidden_size
                );
            }
            g
        }
        Quant::Q8 { group_size } => group_size,
    };
    let mut flags = 0;
    if dims.tie_word_embeddings {
        flags |= image::FLAG_TIED_EMBEDDINGS;
    }
    if bias {
        flags |= image::FLAG_QKV_BIAS;
    }
    if opts.tokenizer.is_some() {
        flags |= image::FLAG_TOKENIZER;
    }
    let bos = dims.bos_token_id.unwrap_or(1);
    let eos = dims.eos_token_id.unwrap_or(2);
    for (what, id) in [("bos_token_id", bos), ("eos_token_id", eos)] {
        if id >= dims.vocab_size {
            bail!(
                "{}: {what} {id} is outside the vocabulary of {}",
                cfg_path.display(),
                dims.vocab_size
            );
        }
    }
    let header = Header {
        arch: Arch::Llama,
        flags,
        dim: u32_of(dims.hidden_size, "hidden_size")?,
        hidden_dim: u32_of(dims.intermediate_size, "intermediate_size")?,
        n_layers: u32_of(dims.num_hidden_layers, "num_hidden_layers")?,
        n_heads: u32_of(dims.num_attention_heads, "num_attention_heads")?,
        n_kv_heads: u32_of(dims.num_key_value_heads, "num_key_value_heads")?,
        head_dim: u32_of(dims.head_dim, "head_dim")?,
        vocab_size: u32_of(dims.vocab_size, "vocab_size")?,
        seq_len: u32_of(context, "--context")?,
        rotary_dim: u32_of(spec.rotary_dim, "rotary dimension")?,
        sliding_window: u32_of(dims.sliding_window.unwrap_or(0), "sliding_window")?,
        norm_eps: dims.rms_norm_eps as f32,
        group_size: u32_of(group_size, "--group-size")?,
        bos_id: bos as u32,
        eos_id: eos as u32,
        n_tensors: 0,
        image_len: 0,
        train_context: u32_of(dims.max_position_embeddings, "max_position_embeddings")?,
    };
    header.validate().map_err(|e| {
        CliError::new(format!(
            "{}: these dimensions do not make a valid image: {e}",
            cfg_path.display()
        ))
    })?;
    if let Some(t) = &opts.tokenizer {
        crate::convert::check_tokenizer(t, dims.vocab_size)?;
    }

    let slots: Vec<(TensorKind, u16)> = image::slots(&header).collect();
    let mut progress = if verbose_progress {
        Progress::new(slots.len())
    } else {
        Progress::hidden(slots.len())
    };
    let mut fused: BTreeMap<(u16, u16), Vec<f32>> = BTreeMap::new();
    let mut tensors: Vec<Owned> = Vec::with_capacity(slots.len());
    for &(kind, layer) in &slots {
        let (label, values) = tensor(
            &mut w,
            cfg.model_type,
            &dims,
            kind,
            layer,
            &mut fused,
            &cos,
            &sin,
            opts,
        )?;
        progress.tick(&label);
        let owned = match values {
            Owned::F32(v) => {
                let (_, cols) = header.expected_shape(kind);
                if group_size != 0 && kind.quantizable() && cols % group_size == 0 {
                    let mut q = vec![0i8; v.len()];
                    let mut s = vec![0f32; v.len() / group_size];
                    q8::quantize(&v, group_size, &mut q, &mut s)
                        .map_err(|e| CliError::runtime(format!("cannot quantize {label}: {e}")))?;
                    Owned::Q8(q, s)
                } else {
                    Owned::F32(v)
                }
            }
            other => other,
        };
        tensors.push(owned);
    }
    progress.finish();
    // With tied embeddings a stored lm_head is the embedding again (or unused).
    if dims.tie_word_embeddings {
        w.used.insert("lm_head.weight".into());
    }
    let unused = w.unused();
    if !unused.is_empty() {
        let list: Vec<&str> = unused.iter().take(5).copied().collect();
        fail!(
            "{} tensor(s) of the checkpoint would be ignored ({}{}): this model has parts microformer does not run",
            unused.len(),
            list.join(", "),
            if unused.len() > 5 { ", ..." } else { "" }
        );
    }
    let sources: Vec<TensorSource<'_>> = tensors.iter().map(Owned::source).collect();
    let len = image::image_len(&sources);
    let mut out = vec![0u8; len];
    let n = image::write(&header, &sources, &mut out)
        .map_err(|e| CliError::runtime(format!("cannot write the image: {e}")))?;
    out.truncate(n);
    Ok((
        out,
        Summary {
            header,
            model_type: cfg.model_type.name(),
        },
    ))
}

/// The image tensor `(kind, layer)`: its label and values.
#[allow(clippy::too_many_arguments)]
fn tensor(
    w: &mut Weights,
    mt: ModelType,
    d: &LlamaDims,
    kind: TensorKind,
    layer: u16,
    fused: &mut BTreeMap<(u16, u16), Vec<f32>>,
    cos: &[f32],
    sin: &[f32],
    opts: &Options,
) -> Result<(String, Owned)> {
    use TensorKind::*;
    let h = d.hidden_size;
    let q_dim = d.num_attention_heads * d.head_dim;
    let kv_dim = d.num_key_value_heads * d.head_dim;
    let ffn = d.intermediate_size;
    let p = format!("model.layers.{layer}.");
    let f32_of = |w: &mut Weights, name: String, shape: &[usize]| -> Result<(String, Owned)> {
        let v = w.get(&name, shape)?;
        Ok((name, Owned::F32(v)))
    };
    match kind {
        TokenEmbedding => f32_of(w, "model.embed_tokens.weight".into(), &[d.vocab_size, h]),
        FinalNorm => f32_of(w, "model.norm.weight".into(), &[h]),
        Output => f32_of(w, "lm_head.weight".into(), &[d.vocab_size, h]),
        RopeCos => Ok(("rope cos".into(), Owned::F32(cos.to_vec()))),
        RopeSin => Ok(("rope sin".into(), Owned::F32(sin.to_vec()))),
        Tokenizer => match &opts.tokenizer {
            Some(t) => Ok(("tokenizer".into(), Owned::U8(t.clone()))),
            None => fail!("internal: tokenizer slot without a tokenizer"),
        },
        AttnNorm => f32_of(w, format!("{p}input_layernorm.weight"), &[h]),
        FfnNorm => f32_of(w, format!("{p}post_attention_layernorm.weight"), &[h]),
        Wo => f32_of(w, format!("{p}self_attn.o_proj.weight"), &[h, q_dim]),
        WDown => f32_of(w, format!("{p}mlp.down_proj.weight"), &[h, ffn]),
        Bq => f32_of(w, format!("{p}self_attn.q_proj.bias"), &[q_dim]),
        Bk => f32_of(w, format!("{p}self_attn.k_proj.bias"), &[kv_dim]),
        Bv => f32_of(w, format!("{p}self_attn.v_proj.bias"), &[kv_dim]),
        Wq | Wk | Wv if mt == ModelType::Phi3 => {
            let name = format!("{p}self_attn.qkv_proj.weight");
            if kind == Wq {
                let all = w.get(&name, &[q_dim + 2 * kv_dim, h])?;
                let (q, kv) = all.split_at(q_dim * h);
                let (k, v) = kv.split_at(kv_dim * h);
                fused.insert((Wk as u16, layer), k.to_vec());
                fused.insert((Wv as u16, layer), v.to_vec());
                Ok((format!("{name} [q]"), Owned::F32(q.to_vec())))
            } else {
                let part = if kind == Wk { "k" } else { "v" };
                match fused.remove(&(kind as u16, layer)) {
                    Some(v) => Ok((format!("{name} [{part}]"), Owned::F32(v))),
                    None => fail!("internal: {name} split out of order"),
                }
            }
        }
        Wq => f32_of(w, format!("{p}self_attn.q_proj.weight"), &[q_dim, h]),
        Wk => f32_of(w, format!("{p}self_attn.k_proj.weight"), &[kv_dim, h]),
        Wv => f32_of(w, format!("{p}self_attn.v_proj.weight"), &[kv_dim, h]),
        WGate | WUp if mt == ModelType::Phi3 => {
            let name = format!("{p}mlp.gate_up_proj.weight");
            if kind == WGate {
                let all = w.get(&name, &[2 * ffn, h])?;
                let (gate, up) = all.split_at(ffn * h);
                fused.insert((WUp as u16, layer), up.to_vec());
                Ok((format!("{name} [gate]"), Owned::F32(gate.to_vec())))
            } else {
                match fused.remove(&(kind as u16, layer)) {
                    Some(v) => Ok((format!("{name} [up]"), Owned::F32(v))),
                    None => fail!("internal: {name} split out of order"),
                }
            }
        }
        WGate => f32_of(w, format!("{p}mlp.gate_proj.weight"), &[ffn, h]),
        WUp => f32_of(w, format!("{p}mlp.up_proj.weight"), &[ffn, h]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use microformer::pos::rope_scaling::RopeScaling;

    #[test]
    fn rope_table_is_hf_float32_recipe() {
        let mut cfg = RopeConfig::new(10000.0, 8, 64);
        cfg.scaling = RopeScaling::Linear { factor: 2.0 };
        let (c, s) = rope_tables(&cfg, 40).unwrap();
        assert_eq!(c.len(), 40 * 4);
        for p in [0usize, 1, 17, 39] {
            for i in 0..4 {
                // HF: inv_freq = 1/(base^(2i/d)) / factor (here in f64, rounded once).
                let inv = (1.0 / 10000f64.powf(2.0 * i as f64 / 8.0) / 2.0) as f32;
                let angle = p as f32 * inv;
                assert_eq!(c[p * 4 + i], (angle as f64).cos() as f32);
                assert_eq!(s[p * 4 + i], (angle as f64).sin() as f32);
            }
        }
    }

    #[test]
    fn default_group_follows_export_py() {
        assert_eq!(default_group_size(64), 64);
        assert_eq!(default_group_size(288), 32);
        assert_eq!(default_group_size(6), 2);
    }
}
