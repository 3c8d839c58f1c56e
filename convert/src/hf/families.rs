//! The Hugging Face model families `microformer convert` reads, each described
//! as a [`Spec`]: the image header — dimensions and block shape
//! ([`microformer::image::Block`]) — and, for every image tensor, where its
//! values come from in the checkpoint ([`Source`]).
//!
//! Every family follows its `modeling_*.py` in transformers 5.23, and reads its
//! `config.json` keys with the defaults of its `configuration_*.py`:
//!
//! | model_type | positions (hook) | block | specifics |
//! |---|---|---|---|
//! | `llama`, `qwen2`, `mistral`, `phi3` | RoPE, half-split (rotation) | RMSNorm, SwiGLU, sequential | Qwen2 q/k/v biases; Mistral/Phi-3 sliding window; Phi-3 fused `qkv_proj`/`gate_up_proj` (rows q, k, v / gate, up) |
//! | `gpt2` | learned `wpe` (embedding table, offset 0) | LayerNorm, GELU MLP (`activation_function`), sequential | `Conv1D` weights stored `[in][out]`, transposed; fused `c_attn` (columns q, k, v); tied head; `scale_attn_weights: false` → unscaled scores |
//! | `xglm` | sinusoidal, split layout (embedding table: `fill_split_float32`, rows from 0, offset 2, row `pad_token_id` zero) | LayerNorm (eps 1e-5), GELU MLP, sequential | `scale_embedding` → embedding × √d_model; tied head |
//! | `bloom` | ALiBi, BLOOM slopes (score bias) | LayerNorm, GELU (tanh), sequential | `word_embeddings_layernorm`; fused `query_key_value` per head `[q k v]`; tied head |
//! | `mpt` | ALiBi, MPT slopes (score bias) | LayerNorm without bias, exact GELU, sequential, no biases | fused `Wqkv` (rows q, k, v); `attn_config.softmax_scale` |
//! | `gptj` | RoPE on the first `rotary_dim` dims, interleaved pairs | LayerNorm, GELU MLP, parallel with one norm | biased head |
//! | `gpt_neox` | RoPE on `rotary_pct` of each head, half-split | LayerNorm, GELU MLP (`hidden_act`), parallel with two norms (`use_parallel_residual`) or sequential | fused `query_key_value` per head `[q k v]`; `attention_bias` |
//! | `phi` | RoPE on `partial_rotary_factor` of each head, half-split | LayerNorm, GELU MLP, parallel with one norm | `dense` output projection, final LayerNorm, biased head |
//!
//! Where transformers departs from the original training code, the converter
//! follows transformers: MPT's ALiBi slopes use `alibi_bias_max = 8` whatever
//! the config says (`MptModel.forward` calls `build_mpt_alibi_tensor` without it;
//! a warning is printed when the config differs), and the MPT MLP is
//! `4·d_model` wide.

use std::ops::Range;

use microformer::image::{
    self, Arch, Block, FfnKind, Header, NormKind, PositionHook, Residual, TensorKind,
};
use microformer::pos::alibi::{self, AlibiRule};
use microformer::pos::sinusoidal;
use serde_json::{Map, Value};

use super::config::{opt_bool, opt_f64, opt_usize, HfConfig, ModelType, XGLM_OFFSET};
use super::import::rope_tables;
use crate::error::{bail, Error, Result};

/// Where an image tensor's values come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A checkpoint tensor used as stored (`[rows][cols]` row-major, or a vector).
    Tensor {
        /// Tensor name.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// A GPT-2 `Conv1D` weight, stored `[inp][out]`: transposed to `[out][inp]`,
    /// then rows `rows` of that (one of q, k, v of a fused `c_attn`).
    Conv1d {
        /// Tensor name.
        name: String,
        /// Input width (stored rows).
        inp: usize,
        /// Output width (stored columns).
        out: usize,
        /// Output rows taken.
        rows: Range<usize>,
    },
    /// Rows `rows` of a fused tensor `shape` (`[total]` or `[total][cols]`): a
    /// part of a fused q/k/v or gate/up stored one after the other.
    Rows {
        /// Tensor name.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
        /// Rows (elements of a vector) taken.
        rows: Range<usize>,
    },
    /// Part `part` (0 q, 1 k, 2 v) of a fused QKV whose rows are grouped per head,
    /// `[heads][3][head_dim]` (BLOOM and GPT-NeoX `query_key_value`).
    Heads {
        /// Tensor name.
        name: String,
        /// Its shape (`[3·heads·head_dim]` or `[3·heads·head_dim][cols]`).
        shape: Vec<usize>,
        /// Heads.
        heads: usize,
        /// Rows per head and part.
        head_dim: usize,
        /// 0 q, 1 k, 2 v.
        part: usize,
    },
    /// Values the converter computed (RoPE tables, ALiBi slopes, a sinusoidal table).
    Computed(TensorKind),
    /// The tokenizer given with `--tokenizer`.
    Tokenizer,
}

impl Source {
    /// A plain tensor.
    fn t(name: String, shape: &[usize]) -> Source {
        Source::Tensor {
            name,
            shape: shape.to_vec(),
        }
    }

    /// A human-readable label (progress lines, errors).
    pub fn label(&self) -> String {
        match self {
            Source::Tensor { name, .. } => name.clone(),
            Source::Conv1d { name, rows, .. } => format!("{name} [rows {rows:?}, transposed]"),
            Source::Rows { name, rows, .. } => format!("{name} [rows {rows:?}]"),
            Source::Heads { name, part, .. } => {
                format!("{name} [{} of each head]", ["q", "k", "v"][part % 3])
            }
            Source::Computed(k) => format!("computed {k:?}"),
            Source::Tokenizer => "tokenizer".into(),
        }
    }
}

/// The families, as far as tensor names go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Llama,
    Phi3,
    Gpt2,
    Xglm,
    Bloom,
    Mpt,
    GptJ,
    GptNeoX,
    Phi,
}

/// A checkpoint's conversion plan.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The `model_type`.
    pub model_type: &'static str,
    /// The image header (no tokenizer flag, `group_size` 0; the converter sets them).
    pub header: Header,
    /// Checkpoint name prefix of the base model (`model.`, `transformer.`,
    /// `gpt_neox.`): checkpoints saved without it (the original GPT-2 and BLOOM
    /// files) are read too.
    pub prefix: &'static str,
    /// Tensors the converter computed.
    pub computed: Computed,
    /// Things the user should know (printed by `convert`).
    pub warnings: Vec<String>,
    family: Family,
}

/// Integer key under the first of several names (a family's `attribute_map`).
fn usize_any(raw: &Map<String, Value>, keys: &[&str]) -> Result<Option<usize>> {
    for k in keys {
        if let Some(v) = opt_usize(raw, k, "")? {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// A required dimension under one of several names, > 0.
fn dim_any(raw: &Map<String, Value>, keys: &[&str]) -> Result<usize> {
    match usize_any(raw, keys)? {
        Some(0) => bail!("\"{}\" is 0", keys[0]),
        Some(v) => Ok(v),
        None => {
            let names: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
            bail!("missing key {}", names.join(" or "))
        }
    }
}

fn flag(raw: &Map<String, Value>, key: &str, default: bool) -> Result<bool> {
    Ok(opt_bool(raw, key, "")?.unwrap_or(default))
}

fn eps(raw: &Map<String, Value>, key: &str, default: f64) -> Result<f64> {
    let e = opt_f64(raw, key, "")?.unwrap_or(default);
    if !(e.is_finite() && e >= 0.0) {
        bail!("{key} must be a finite number >= 0, got {e}");
    }
    Ok(e)
}

/// The GELU variant of an activation name (`ACT2FN` in transformers' `activations.py`).
fn gelu(raw: &Map<String, Value>, key: &str, default: &str) -> Result<FfnKind> {
    let name = match raw.get(key) {
        None | Some(Value::Null) => default.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => bail!("{key} must be a string, got {v}"),
    };
    Ok(match name.as_str() {
        // tanh approximation: NewGELU, GELUTanh (torch approximate="tanh"), FastGELU, AccurateGELU
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_python_tanh" | "gelu_fast" | "gelu_accurate" => {
            FfnKind::GeluTanh
        }
        // exact erf GELU
        "gelu" | "gelu_python" => FfnKind::Gelu,
        other => bail!(
            "{key} \"{other}\" is not supported (microformer runs gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, gelu_accurate)"
        ),
    })
}

/// `bos_token_id`/`eos_token_id` (the first of a list), default `default`.
fn token(
    raw: &Map<String, Value>,
    key: &str,
    default: u32,
    vocab: usize,
    warnings: &mut Vec<String>,
) -> Result<u32> {
    let id = match raw.get(key) {
        Some(Value::Array(a)) => match a.first() {
            Some(v) => v.as_u64(),
            None => None,
        },
        Some(Value::Null) | None => None,
        Some(v) => match v.as_u64() {
            Some(u) => Some(u),
            None => bail!("{key} must be a token id, got {v}"),
        },
    };
    // An id outside the vocabulary (GPT-2's 50256 in a tiny test model) cannot
    // be stored: the image uses 0 instead, and says so.
    let fallback = if (default as usize) < vocab {
        default
    } else {
        0
    };
    Ok(match id {
        None => fallback,
        Some(i) if (i as usize) < vocab => i as u32,
        Some(i) => {
            warnings.push(format!(
                "{key} {i} is outside the vocabulary of {vocab}: the image uses {fallback}"
            ));
            fallback
        }
    })
}

/// Dimensions shared by every family.
struct Dims {
    dim: usize,
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    vocab: usize,
    /// The checkpoint's trained context (0: none given).
    train: usize,
}

impl Dims {
    fn check(&self) -> Result<()> {
        for (k, v) in [
            ("hidden size", self.dim),
            ("feed-forward width", self.hidden),
            ("layer count", self.layers),
            ("head count", self.heads),
            ("key/value head count", self.kv_heads),
            ("vocab_size", self.vocab),
        ] {
            if v == 0 {
                bail!("{k} is 0");
            }
        }
        if self.heads % self.kv_heads != 0 {
            bail!(
                "{} attention heads are not a multiple of {} key/value heads",
                self.heads,
                self.kv_heads
            );
        }
        if self.head_dim == 0 {
            bail!(
                "hidden size {} is not a multiple of {} heads",
                self.dim,
                self.heads
            );
        }
        Ok(())
    }
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::config(format!("{what} {v} is too large")))
}

/// The context a converted image covers: `--context`, else `default`.
fn context(asked: Option<usize>, default: usize) -> Result<usize> {
    let c = asked.unwrap_or(default);
    if c == 0 {
        bail!("--context must be at least 1");
    }
    if c > (1 << 20) {
        bail!("--context {c} is too large (at most {})", 1 << 20);
    }
    Ok(c)
}

/// Default context when `--context` is not given: `min(trained context, 2048)`.
pub const DEFAULT_MAX_CONTEXT: usize = 2048;

fn default_context(train: usize) -> usize {
    if train == 0 {
        DEFAULT_MAX_CONTEXT
    } else {
        train.min(DEFAULT_MAX_CONTEXT)
    }
}

#[allow(clippy::too_many_arguments)]
fn header(
    d: &Dims,
    ctx: usize,
    flags: u32,
    rotary_dim: usize,
    window: usize,
    norm_eps: f64,
    bos: u32,
    eos: u32,
    block: Block,
) -> Result<Header> {
    let h = Header {
        arch: Arch::Llama,
        flags,
        dim: u32_of(d.dim, "hidden size")?,
        hidden_dim: u32_of(d.hidden, "feed-forward width")?,
        n_layers: u32_of(d.layers, "layer count")?,
        n_heads: u32_of(d.heads, "head count")?,
        n_kv_heads: u32_of(d.kv_heads, "key/value head count")?,
        head_dim: u32_of(d.head_dim, "head dimension")?,
        vocab_size: u32_of(d.vocab, "vocab_size")?,
        seq_len: u32_of(ctx, "--context")?,
        rotary_dim: u32_of(rotary_dim, "rotary dimension")?,
        sliding_window: u32_of(window, "sliding_window")?,
        norm_eps: norm_eps as f32,
        group_size: 0,
        bos_id: bos,
        eos_id: eos,
        n_tensors: 0,
        image_len: 0,
        train_context: u32_of(d.train, "max_position_embeddings")?,
        block,
    };
    h.validate()
        .map_err(|e| Error::config(format!("these dimensions do not make a valid image: {e}")))?;
    Ok(h)
}

/// A GPT-style block: LayerNorm with biases, a GELU MLP, sequential, RoPE.
fn gpt_block(ffn: FfnKind, residual: Residual, position: PositionHook) -> Block {
    Block {
        norm: NormKind::LayerNorm,
        ffn,
        residual,
        position,
        ..Block::LLAMA
    }
}

/// Tensors the converter computes, by kind.
type Computed = Vec<(TensorKind, Vec<f32>)>;

/// RoPE tables for a RoPE family, checked against its head dimension; returns
/// `(rotary_dim, interleaved, computed tensors)`.
fn rope(cfg: &HfConfig, head_dim: usize, ctx: usize) -> Result<(usize, bool, Computed)> {
    let spec = cfg.rope()?;
    if spec.head_dim != head_dim {
        bail!(
            "RoPE head dimension {} disagrees with the head dimension {head_dim}",
            spec.head_dim
        );
    }
    let (cos, sin) = rope_tables(&spec.config(), ctx).map_err(|e| e.context("RoPE parameters"))?;
    Ok((
        spec.rotary_dim,
        spec.layout == super::config::PairLayout::Interleaved,
        vec![(TensorKind::RopeCos, cos), (TensorKind::RopeSin, sin)],
    ))
}

impl Spec {
    /// The plan for a parsed `config.json`; `asked` is `--context`.
    pub fn new(cfg: &HfConfig, asked: Option<usize>) -> Result<Spec> {
        match cfg.model_type {
            ModelType::Llama | ModelType::Qwen2 | ModelType::Mistral | ModelType::Phi3 => {
                llama(cfg, asked)
            }
            ModelType::Gpt2 => gpt2(cfg, asked),
            ModelType::Xglm => xglm(cfg, asked),
            ModelType::Bloom => bloom(cfg, asked),
            ModelType::Mpt => mpt(cfg, asked),
            ModelType::GptJ => gptj(cfg, asked),
            ModelType::GptNeoX => neox(cfg, asked),
            ModelType::Phi => phi(cfg, asked),
            other => bail!(
                "model_type {} cannot be converted (supported: {})",
                other.name(),
                SUPPORTED
            ),
        }
    }

    /// Where image tensor `(kind, layer)` comes from.
    pub fn source(&self, kind: TensorKind, layer: u16) -> Result<Source> {
        use TensorKind::*;
        let h = &self.header;
        let dim = h.dim as usize;
        let ffn = h.hidden_dim as usize;
        let vocab = h.vocab_size as usize;
        let q_dim = h.q_dim();
        let kv_dim = h.kv_dim();
        let heads = h.n_heads as usize;
        let hd = h.head_dim as usize;
        let ctx = h.seq_len as usize;
        if matches!(kind, RopeCos | RopeSin | AlibiSlopes)
            || (kind == PosEmbedding && self.family == Family::Xglm)
        {
            return Ok(Source::Computed(kind));
        }
        if kind == Tokenizer {
            return Ok(Source::Tokenizer);
        }
        let t = Source::t;
        let fam = self.family;
        // q, k, v rows of a fused projection stored q, then k, then v.
        let qkv_rows = |kind: TensorKind| match kind {
            Wq | Bq => 0..q_dim,
            Wk | Bk => q_dim..q_dim + kv_dim,
            _ => q_dim + kv_dim..q_dim + 2 * kv_dim,
        };
        let part = |kind: TensorKind| match kind {
            Wq | Bq => 0,
            Wk | Bk => 1,
            _ => 2,
        };
        let none = || -> Result<Source> {
            Err(Error::input(format!(
                "internal: a {} image has no {kind:?} tensor",
                self.model_type
            )))
        };
        Ok(match fam {
            Family::Llama | Family::Phi3 => {
                let p = format!("model.layers.{layer}.");
                match kind {
                    TokenEmbedding => t("model.embed_tokens.weight".into(), &[vocab, dim]),
                    FinalNorm => t("model.norm.weight".into(), &[dim]),
                    Output => t("lm_head.weight".into(), &[vocab, dim]),
                    AttnNorm => t(format!("{p}input_layernorm.weight"), &[dim]),
                    FfnNorm => t(format!("{p}post_attention_layernorm.weight"), &[dim]),
                    Wo => t(format!("{p}self_attn.o_proj.weight"), &[dim, q_dim]),
                    WDown => t(format!("{p}mlp.down_proj.weight"), &[dim, ffn]),
                    Bq => t(format!("{p}self_attn.q_proj.bias"), &[q_dim]),
                    Bk => t(format!("{p}self_attn.k_proj.bias"), &[kv_dim]),
                    Bv => t(format!("{p}self_attn.v_proj.bias"), &[kv_dim]),
                    Wq | Wk | Wv if fam == Family::Phi3 => Source::Rows {
                        name: format!("{p}self_attn.qkv_proj.weight"),
                        shape: vec![q_dim + 2 * kv_dim, dim],
                        rows: qkv_rows(kind),
                    },
                    Wq => t(format!("{p}self_attn.q_proj.weight"), &[q_dim, dim]),
                    Wk => t(format!("{p}self_attn.k_proj.weight"), &[kv_dim, dim]),
                    Wv => t(format!("{p}self_attn.v_proj.weight"), &[kv_dim, dim]),
                    WGate | WUp if fam == Family::Phi3 => Source::Rows {
                        name: format!("{p}mlp.gate_up_proj.weight"),
                        shape: vec![2 * ffn, dim],
                        rows: if kind == WGate { 0..ffn } else { ffn..2 * ffn },
                    },
                    WGate => t(format!("{p}mlp.gate_proj.weight"), &[ffn, dim]),
                    WUp => t(format!("{p}mlp.up_proj.weight"), &[ffn, dim]),
                    _ => return none(),
                }
            }
            Family::Gpt2 => {
                let p = format!("transformer.h.{layer}.");
                let conv =
                    |name: String, inp: usize, out: usize, rows: Range<usize>| Source::Conv1d {
                        name,
                        inp,
                        out,
                        rows,
                    };
                match kind {
                    TokenEmbedding => t("transformer.wte.weight".into(), &[vocab, dim]),
                    PosEmbedding => Source::Rows {
                        name: "transformer.wpe.weight".into(),
                        shape: vec![h.train_context as usize, dim],
                        rows: 0..ctx,
                    },
                    FinalNorm => t("transformer.ln_f.weight".into(), &[dim]),
                    FinalNormBias => t("transformer.ln_f.bias".into(), &[dim]),
                    Output => t("lm_head.weight".into(), &[vocab, dim]),
                    AttnNorm => t(format!("{p}ln_1.weight"), &[dim]),
                    AttnNormBias => t(format!("{p}ln_1.bias"), &[dim]),
                    FfnNorm => t(format!("{p}ln_2.weight"), &[dim]),
                    FfnNormBias => t(format!("{p}ln_2.bias"), &[dim]),
                    Wq | Wk | Wv => conv(
                        format!("{p}attn.c_attn.weight"),
                        dim,
                        3 * dim,
                        qkv_rows(kind),
                    ),
                    Bq | Bk | Bv => Source::Rows {
                        name: format!("{p}attn.c_attn.bias"),
                        shape: vec![3 * dim],
                        rows: qkv_rows(kind),
                    },
                    Wo => conv(format!("{p}attn.c_proj.weight"), dim, dim, 0..dim),
                    Bo => t(format!("{p}attn.c_proj.bias"), &[dim]),
                    WUp => conv(format!("{p}mlp.c_fc.weight"), dim, ffn, 0..ffn),
                    BUp => t(format!("{p}mlp.c_fc.bias"), &[ffn]),
                    WDown => conv(format!("{p}mlp.c_proj.weight"), ffn, dim, 0..dim),
                    BDown => t(format!("{p}mlp.c_proj.bias"), &[dim]),
                    _ => return none(),
                }
            }
            Family::Xglm => {
                let p = format!("model.layers.{layer}.");
                match kind {
                    TokenEmbedding => t("model.embed_tokens.weight".into(), &[vocab, dim]),
                    FinalNorm => t("model.layer_norm.weight".into(), &[dim]),
                    FinalNormBias => t("model.layer_norm.bias".into(), &[dim]),
                    Output => t("lm_head.weight".into(), &[vocab, dim]),
                    AttnNorm => t(format!("{p}self_attn_layer_norm.weight"), &[dim]),
                    AttnNormBias => t(format!("{p}self_attn_layer_norm.bias"), &[dim]),
                    FfnNorm => t(format!("{p}final_layer_norm.weight"), &[dim]),
                    FfnNormBias => t(format!("{p}final_layer_norm.bias"), &[dim]),
                    Wq => t(format!("{p}self_attn.q_proj.weight"), &[dim, dim]),
                    Wk => t(format!("{p}self_attn.k_proj.weight"), &[dim, dim]),
                    Wv => t(format!("{p}self_attn.v_proj.weight"), &[dim, dim]),
                    Bq => t(format!("{p}self_attn.q_proj.bias"), &[dim]),
                    Bk => t(format!("{p}self_attn.k_proj.bias"), &[dim]),
                    Bv => t(format!("{p}self_attn.v_proj.bias"), &[dim]),
                    Wo => t(format!("{p}self_attn.out_proj.weight"), &[dim, dim]),
                    Bo => t(format!("{p}self_attn.out_proj.bias"), &[dim]),
                    WUp => t(format!("{p}fc1.weight"), &[ffn, dim]),
                    BUp => t(format!("{p}fc1.bias"), &[ffn]),
                    WDown => t(format!("{p}fc2.weight"), &[dim, ffn]),
                    BDown => t(format!("{p}fc2.bias"), &[dim]),
                    _ => return none(),
                }
            }
            Family::Bloom | Family::GptNeoX => {
                let (base, p, attn, qkv, out_name) = if fam == Family::Bloom {
                    (
                        "transformer.",
                        format!("transformer.h.{layer}."),
                        "self_attention",
                        "query_key_value",
                        "lm_head.weight",
                    )
                } else {
                    (
                        "gpt_neox.",
                        format!("gpt_neox.layers.{layer}."),
                        "attention",
                        "query_key_value",
                        "embed_out.weight",
                    )
                };
                let heads_of = |suffix: &str, shape: Vec<usize>| Source::Heads {
                    name: format!("{p}{attn}.{qkv}.{suffix}"),
                    shape,
                    heads,
                    head_dim: hd,
                    part: part(kind),
                };
                match kind {
                    TokenEmbedding if fam == Family::Bloom => {
                        t("transformer.word_embeddings.weight".into(), &[vocab, dim])
                    }
                    TokenEmbedding => t("gpt_neox.embed_in.weight".into(), &[vocab, dim]),
                    EmbedNorm => t(
                        "transformer.word_embeddings_layernorm.weight".into(),
                        &[dim],
                    ),
                    EmbedNormBias => t("transformer.word_embeddings_layernorm.bias".into(), &[dim]),
                    FinalNorm | FinalNormBias => {
                        let norm = if fam == Family::Bloom {
                            "ln_f"
                        } else {
                            "final_layer_norm"
                        };
                        let w = if kind == FinalNorm { "weight" } else { "bias" };
                        t(format!("{base}{norm}.{w}"), &[dim])
                    }
                    Output => t(out_name.into(), &[vocab, dim]),
                    AttnNorm => t(format!("{p}input_layernorm.weight"), &[dim]),
                    AttnNormBias => t(format!("{p}input_layernorm.bias"), &[dim]),
                    FfnNorm => t(format!("{p}post_attention_layernorm.weight"), &[dim]),
                    FfnNormBias => t(format!("{p}post_attention_layernorm.bias"), &[dim]),
                    Wq | Wk | Wv => heads_of("weight", vec![3 * dim, dim]),
                    Bq | Bk | Bv => heads_of("bias", vec![3 * dim]),
                    Wo => t(format!("{p}{attn}.dense.weight"), &[dim, dim]),
                    Bo => t(format!("{p}{attn}.dense.bias"), &[dim]),
                    WUp => t(format!("{p}mlp.dense_h_to_4h.weight"), &[ffn, dim]),
                    BUp => t(format!("{p}mlp.dense_h_to_4h.bias"), &[ffn]),
                    WDown => t(format!("{p}mlp.dense_4h_to_h.weight"), &[dim, ffn]),
                    BDown => t(format!("{p}mlp.dense_4h_to_h.bias"), &[dim]),
                    _ => return none(),
                }
            }
            Family::Mpt => {
                let p = format!("transformer.blocks.{layer}.");
                match kind {
                    TokenEmbedding => t("transformer.wte.weight".into(), &[vocab, dim]),
                    FinalNorm => t("transformer.norm_f.weight".into(), &[dim]),
                    Output => t("lm_head.weight".into(), &[vocab, dim]),
                    AttnNorm => t(format!("{p}norm_1.weight"), &[dim]),
                    FfnNorm => t(format!("{p}norm_2.weight"), &[dim]),
                    Wq | Wk | Wv => Source::Rows {
                        name: format!("{p}attn.Wqkv.weight"),
                        shape: vec![3 * dim, dim],
                        rows: qkv_rows(kind),
                    },
                    Wo => t(format!("{p}attn.out_proj.weight"), &[dim, dim]),
                    WUp => t(format!("{p}ffn.up_proj.weight"), &[ffn, dim]),
                    WDown => t(format!("{p}ffn.down_proj.weight"), &[dim, ffn]),
                    _ => return none(),
                }
            }
            Family::GptJ | Family::Phi => {
                let (p, attn, o, fc_in, fc_out, final_norm, embed) = if fam == Family::GptJ {
                    (
                        format!("transformer.h.{layer}."),
                        "attn",
                        "out_proj",
                        "fc_in",
                        "fc_out",
                        "transformer.ln_f",
                        "transformer.wte.weight",
                    )
                } else {
                    (
                        format!("model.layers.{layer}."),
                        "self_attn",
                        "dense",
                        "fc1",
                        "fc2",
                        "model.final_layernorm",
                        "model.embed_tokens.weight",
                    )
                };
                let norm = if fam == Family::GptJ {
                    "ln_1"
                } else {
                    "input_layernorm"
                };
                match kind {
                    TokenEmbedding => t(embed.into(), &[vocab, dim]),
                    FinalNorm => t(format!("{final_norm}.weight"), &[dim]),
                    FinalNormBias => t(format!("{final_norm}.bias"), &[dim]),
                    Output => t("lm_head.weight".into(), &[vocab, dim]),
                    OutputBias => t("lm_head.bias".into(), &[vocab]),
                    AttnNorm => t(format!("{p}{norm}.weight"), &[dim]),
                    AttnNormBias => t(format!("{p}{norm}.bias"), &[dim]),
                    Wq => t(format!("{p}{attn}.q_proj.weight"), &[q_dim, dim]),
                    Wk => t(format!("{p}{attn}.k_proj.weight"), &[kv_dim, dim]),
                    Wv => t(format!("{p}{attn}.v_proj.weight"), &[kv_dim, dim]),
                    Bq => t(format!("{p}{attn}.q_proj.bias"), &[q_dim]),
                    Bk => t(format!("{p}{attn}.k_proj.bias"), &[kv_dim]),
                    Bv => t(format!("{p}{attn}.v_proj.bias"), &[kv_dim]),
                    Wo => t(format!("{p}{attn}.{o}.weight"), &[dim, q_dim]),
                    Bo => t(format!("{p}{attn}.{o}.bias"), &[dim]),
                    WUp => t(format!("{p}mlp.{fc_in}.weight"), &[ffn, dim]),
                    BUp => t(format!("{p}mlp.{fc_in}.bias"), &[ffn]),
                    WDown => t(format!("{p}mlp.{fc_out}.weight"), &[dim, ffn]),
                    BDown => t(format!("{p}mlp.{fc_out}.bias"), &[dim]),
                    _ => return none(),
                }
            }
        })
    }

    /// Checkpoint tensors that are buffers, not weights, and are never read
    /// (transformers drops them on loading).
    pub fn is_buffer(name: &str) -> bool {
        name.ends_with("rotary_emb.inv_freq")
            || name.ends_with(".attn.bias")
            || name.ends_with(".attn.masked_bias")
            || name.ends_with(".attention.bias")
            || name.ends_with(".attention.masked_bias")
    }

    /// The name of the output head's weight in the checkpoint.
    pub fn head_names(&self) -> &'static [&'static str] {
        match self.family {
            Family::GptNeoX => &["embed_out.weight", "lm_head.weight"],
            _ => &["lm_head.weight"],
        }
    }
}

/// The model types `convert` accepts.
pub const SUPPORTED: &str =
    "llama, qwen2, mistral, phi3, gpt2, xglm, bloom, mpt, gptj, gpt_neox, phi";

fn llama(cfg: &HfConfig, asked: Option<usize>) -> Result<Spec> {
    let d = cfg.llama_dims()?;
    let ctx = context(asked, default_context(d.max_position_embeddings))?;
    let dims = Dims {
        dim: d.hidden_size,
        hidden: d.intermediate_size,
        layers: d.num_hidden_layers,
        heads: d.num_attention_heads,
        kv_heads: d.num_key_value_heads,
        head_dim: d.head_dim,
        vocab: d.vocab_size,
        train: d.max_position_embeddings,
    };
    let (rotary, _, computed) = rope(cfg, d.head_dim, ctx)?;
    let mut warnings = Vec::new();
    let raw = &cfg.raw;
    let bos = token(raw, "bos_token_id", 1, d.vocab_size, &mut warnings)?;
    let eos = token(raw, "eos_token_id", 2, d.vocab_size, &mut warnings)?;
    let mut flags = 0;
    if d.tie_word_embeddings {
        flags |= image::FLAG_TIED_EMBEDDINGS;
    }
    // Qwen2 has q/k/v biases (found in the checkpoint: see `with_qkv_bias`).
    let header = header(
        &dims,
        ctx,
        flags,
        rotary,
        d.sliding_window.unwrap_or(0),
        d.rms_norm_eps,
        bos,
        eos,
        Block::LLAMA,
    )?;
    Ok(Spec {
        model_type: cfg.model_type.name(),
        header,
        prefix: "model.",
        computed,
        warnings,
        family: if cfg.model_type == ModelType::Phi3 {
            Family::Phi3
        } else {
            Family::Llama
        },
    })
}

impl Spec {
    /// Llama-family checkpoints carry q/k/v biases or not (Qwen2): set
    /// `FLAG_QKV_BIAS` when the first layer's `q_proj.bias` is present.
    pub fn with_qkv_bias(mut self, has: impl Fn(&str) -> bool) -> Result<Spec> {
        if matches!(self.family, Family::Llama | Family::Phi3)
            && has("model.layers.0.self_attn.q_proj.bias")
        {
            self.header.flags |= image::FLAG_QKV_BIAS;
            self.header.validate()?;
        }
        Ok(self)
    }
}

fn gpt2(cfg: &HfConfig, asked: Option<usize>) -> Result<Spec> {
    let raw = &cfg.raw;
    let dim = dim_any(raw, &["n_embd", "hidden_size"])?;
    let heads = dim_any(raw, &["n_head", "num_attention_heads"])?;
    let n_positions = dim_any(raw, &["n_positions", "max_position_embeddings"])?;
    let dims = Dims {
        dim,
        hidden: usize_any(raw, &["n_inner"])?.unwrap_or(4 * dim),
        layers: dim_any(raw, &["n_layer", "num_hidden_layers"])?,
        heads,
        kv_heads: heads,
        head_dim: if dim % heads == 0 { dim / heads } else { 0 },
        vocab: dim_any(raw, &["vocab_size"])?,
        train: n_positions,
    };
    dims.check()?;
    if flag(raw, "add_cross_attention", false)? {
        bail!("add_cross_attention is true: cross-attention is not supported");
    }
    if flag(raw, "scale_attn_by_inverse_layer_idx", false)? {
        bail!("scale_attn_by_inverse_layer_idx is true: a per-layer score scale is not supported");
    }
    let ctx = context(asked, default_context(n_positions))?;
    if ctx > n_positions {
        bail!("--context {ctx} exceeds the {n_positions} learned positions (n_positions)");
    }
    let ffn = gelu(raw, "activation_function", "gelu_new")?;
    let mut block = gpt_block(ffn, Residual::Sequential, PositionHook::Table);
    if !flag(raw, "scale_attn_weights", true)? {
        block.attn_scale = 1.0;
    }
    let mut warnings = Vec::new();
    let bos = token(raw, "bos_token_id", 50256, dims.vocab, &mut warnings)?;
    let eos = token(raw, "eos_token_id", 50256, dims.vocab, &mut warnings)?;
    let mut flags = image::FLAG_QKV_BIAS | image::FLAG_O_BIAS | image::FLAG_MLP_BIAS;
    if flag(raw, "tie_word_embeddings", true)? {
        flags |= image::FLAG_TIED_EMBEDDINGS;
    }
    let eps = eps(raw, "layer_norm_epsilon", 1e-5)?;
    let header = header(&dims, ctx, flags, 0, 0, eps, bos, eos, block)?;
    Ok(Spec {
        model_type: "gpt2",
        header,
        prefix: "transformer.",
        computed: Vec::new(),
        warnings,
        family: Family::Gpt2,
    })
}

fn xglm(cfg: &HfConfig, asked: Option<usize>) -> Result<Spec> {
    let raw = &cfg.raw;
    let dim = dim_any(raw, &["d_model", "hidden_size"])?;
    let heads = dim_any(raw, &["attention_heads", "num_attention_heads"])?;
    let max_pos = dim_any(raw, &["max_position_embeddings"])?;
    let dims = Dims {
        dim,
        hidden: dim_any(raw, &["ffn_dim"])?,
        layers: dim_any(raw, &["num_layers", "num_hidden_layers"])?,
        heads,
        kv_heads: heads,
        head_dim: if dim % heads == 0 { dim / heads } else { 0 },
        vocab: dim_any(raw, &["vocab_size"])?,
        train: max_pos,
    };
    dims.check()?;
    if flag(raw, "add_cross_attention", false)? {
        bail!("add_cross_attention is true: cross-attention is not supported");
    }
    // XGLM grows its sinusoidal table on demand: any context works.
    let ctx = context(asked, default_context(max_pos))?;
    let padding_idx = match raw.get("pad_token_id") {
        None => Some(1),
        Some(Value::Null) => None,
        Some(_) => opt_usize(raw, "pad_token_id", "")?,
    };
    let rows = ctx + XGLM_OFFSET;
    if padding_idx.is_some_and(|p| p >= rows) {
        bail!("pad_token_id {padding_idx:?} is beyond the {rows} rows of the position table");
    }
    let mut table = vec![0f32; rows * dim];
    sinusoidal::fill_split_float32(rows, dim, padding_idx, &mut table)
        .map_err(|e| Error::config(format!("sinusoidal table: {e}")))?;
    let ffn = gelu(raw, "activation_function", "gelu")?;
    let mut block = gpt_block(ffn, Residual::Sequential, PositionHook::Table);
    block.pos_offset = XGLM_OFFSET as u32;
    if flag(raw, "scale_embedding", true)? {
        // `math.sqrt(config.d_model)`, a Python float, multiplies a float32 tensor.
        block.embed_scale = (dim as f64).sqrt() as f32;
    }
    let mut warnings = Vec::new();
    let bos = token(raw, "bos_token_id", 0, dims.vocab, &mut warnings)?;
    let eos = token(raw, "eos_token_id", 2, dims.vocab, &mut warnings)?;
    let mut flags = image::FLAG_QKV_BIAS | image::FLAG_O_BIAS | image::FLAG_MLP_BIAS;
    if flag(raw, "tie_word_embeddings", true)? {
        flags |= image::FLAG_TIED_EMBEDDINGS;
    }
    // nn.LayerNorm's default epsilon: XGLM has no config key for it.
    let header = header(&dims, ctx, flags, 0, 0, 1e-5, bos, eos, block)?;
    Ok(Spec {
        model_type: "xglm",
        header,
        prefix: "model.",
        computed: vec![(TensorKind::PosEmbedding, table)],
        warnings,
        family: Family::Xglm,
    })
}

fn alibi_slopes(rule: AlibiRule, heads: usize) -> Result<Vec<f32>> {
    let mut s = vec![0f32; heads];
    alibi::slopes(rule, heads, &mut s).map_err(|e| Error::config(format!("ALiBi slopes: {e}")))?;
    Ok(s)
}

fn bloom(cfg: &HfConfig, asked: Option<usize>) -> Result<Spec> {
    let raw = &cfg.raw;
    let dim = dim_any(raw, &["hidden_size", "n_embed"])?;
    let heads = dim_any(raw, &["n_head", "num_attention_heads"])?;
    let dims = Dims {
        dim,
        hidden: 4 * dim,
        layers: dim_any(raw, &["n_layer", "num_hidden_layers"])?,
        heads,
        kv_heads: heads,
        head_dim: if dim % heads == 0 { dim / heads } else { 0 },
        vocab: dim_any(raw, &["vocab_size"])?,
        train: 0,
    };
    dims.check()?;
    if flag(raw, "apply_residual_connection_post_layernorm", false)? {
        bail!("apply_residual_connection_post_layernorm is true: not supported");
    }
    let ctx = context(asked, DEFAULT_MAX_CONTEXT)?;
    // `bloom_gelu_forward`: x·½(1 + tanh(0.79788456·x·(1 + 0.044715·x²))).
    let block = gpt_block(FfnKind::GeluTanh, Residual::Sequential, PositionHook::Alibi);
    let mut warnings = Vec::new();
    let bos = token(raw, "bos_token_id", 1, dims.vocab, &mut warnings)?;
    let eos = token(raw, "eos_token_id", 2, dims.vocab, &mut warnings)?;
    let mut flags =
        image::FLAG_QKV_BIAS | image::FLAG_O_BIAS | image::FLAG_MLP_BIAS | image::FLAG_EMBED_NORM;
    if flag(raw, "tie_word_embeddings", true)? {
        flags |= image::FLAG_TIED_EMBEDDINGS;
    }
    let eps = eps(raw, "layer_norm_epsilon", 1e-5)?;
    let header = header(&dims, ctx, flags, 0, 0, eps, bos, eos, block)?;
    Ok(Spec {
        model_type: "bloom",
        header,
        prefix: "transformer.",
        computed: vec![(
            TensorKind::AlibiSlopes,
            alibi_slopes(AlibiRule::Bloom, heads)?,
        )],
        warnings,
        family: Family::Bloom,
    })
}

fn mpt(cfg: &HfConfig, asked: Option<usize>) -> Result<Spec> {
    let raw = &cfg.raw;
    let dim = dim_any(raw, &["d_model", "hidden_size"])?;
    let heads = dim_any(raw, &["n_heads", "num_attention_heads"])?;
    let max_seq = usize_any(raw, &["max_seq_len", "max_position_embeddings"])?.unwrap_or(2048);
    let dims = Dims {
        dim,
        // MptMLP is 4·d_model wide whatever `expansion_ratio` says.
        hidden: 4 * dim,
        layers: dim_any(raw, &["n_layers", "num_hidden_layers"])?,
        heads,
        kv_heads: heads,
        head_dim: if dim % heads == 0 { dim / heads } else { 0 },
        vocab: dim_any(raw, &["vocab_size"])?,
        train: max_seq,
    };
    dims.check()?;
    let attn = match raw.get("attn_config") {
        Some(Value::Object(m)) => Some(m),
        None | Some(Value::Null) => None,
        Some(_) => bail!("key \"attn_config\" must be an object"),
    };
    let mut block = gpt_block(FfnKind::Gelu, Residual::Sequential, PositionHook::Alibi);
    block.norm = NormKind::LayerNormNoBias;
    let mut warnings = Vec::new();
    if let Some(a) = attn {
        if opt_f64(a, "clip_qkv", "attn_config")?.is_some() {
            bail!("attn_config.clip_qkv is set: clipping q/k/v is not supported");
        }
        if let Some(s) = opt_f64(a, "softmax_scale", "attn_config")? {
            if !(s.is_finite() && s > 0.0) {
                bail!("attn_config.softmax_scale must be a finite number > 0, got {s}");
            }
            block.attn_scale = s as f32;
        }
        if let Some(b) = opt_f64(a, "alibi_bias_max", "attn_config")? {
            if b != 8.0 {
                warnings.push(format!(
                    "attn_config.alibi_bias_max is {b}, but transformers' MPT uses 8 (build_mpt_alibi_tensor's default): the image follows transformers"
                ));
            }
        }
    }
    let ctx = context(asked, default_context(max_seq))?;
    let bos = token(raw, "bos_token_id", 1, dims.vocab, &mut warnings)?;
    let eos = token(raw, "eos_token_id", 2, dims.vocab, &mut warnings)?;
    let mut flags = 0;
    if flag(raw, "tie_word_embeddings", true)? {
        flags |= image::FLAG_TIED_EMBEDDINGS;
    }
    let eps = eps(raw, "layer_norm_epsilon", 1e-5)?;
    let header = header(&dims, ctx, flags, 0, 0, eps, bos, eos, block)?;
    let slopes = alibi_slopes(
        AlibiRule::Mpt {
            alibi_bias_max: 8.0,
        },
        heads,
    )?;
    Ok(Spec {
        model_type: "mpt",
        header,
        prefix: "transformer.",
        computed: vec![(TensorKind::AlibiSlopes, slopes)],
        warnings,
        family: Family::Mpt,
    })
}

fn gptj(cfg: &HfConfig, asked: Option<usize>) -> Result<Spec> {
    let raw = &cfg.raw;
    let dim = dim_any(raw, &["n_embd", "hidden_size"])?;
    let heads = dim_any(raw, &["n_head", "num_attention_heads"])?;
    let n_positions = dim_any(raw, &["n_positions", "max_position_embeddings"])?;
    let dims = Dims {
        dim,
        hidden: usize_any(raw, &["n_inner"])?.unwrap_or(4 * dim),
        layers: dim_any(raw, &["n_layer", "num_hidden_layers"])?,
        heads,
        kv_heads: heads,
        head_dim: if dim % heads == 0 { dim / heads } else { 0 },
        vocab: dim_any(raw, &["vocab_size"])?,
        train: n_positions,
    };
    dims.check()?;
    let ctx = context(asked, default_context(n_positions))?;
    let (rotary, interleaved, computed) = rope(cfg, dims.head_dim, ctx)?;
    let ffn = gelu(raw, "activation_function", "gelu_new")?;
    let block = gpt_block(ffn, Residual::ParallelShared, PositionHook::Rope);
    let mut warnings = Vec::new();
    let bos = token(raw, "bos_token_id", 50256, dims.vocab, &mut warnings)?;
    let eos = token(raw, "eos_token_id", 50256, dims.vocab, &mut warnings)?;
    let mut flags = image::FLAG_MLP_BIAS | image::FLAG_OUTPUT_BIAS;
    if interleaved {
        flags |= image::FLAG_ROPE_INTERLEAVED;
    }
    if flag(raw, "tie_word_embeddings", false)? {
        flags |= image::FLAG_TIED_EMBEDDINGS;
    }
    let eps = eps(raw, "layer_norm_epsilon", 1e-5)?;
    let header = header(&dims, ctx, flags, rotary, 0, eps, bos, eos, block)?;
    Ok(Spec {
        model_type: "gptj",
        header,
        prefix: "transformer.",
        computed,
        warnings,
        family: Family::GptJ,
    })
}

fn neox(cfg: &HfConfig, asked: Option<usize>) -> Result<Spec> {
    let raw = &cfg.raw;
    let dim = dim_any(raw, &["hidden_size"])?;
    let heads = dim_any(raw, &["num_attention_heads"])?;
    let max_pos = dim_any(raw, &["max_position_embeddings"])?;
    let dims = Dims {
        dim,
        hidden: dim_any(raw, &["intermediate_size"])?,
        layers: dim_any(raw, &["num_hidden_layers"])?,
        heads,
        kv_heads: heads,
        head_dim: if dim % heads == 0 { dim / heads } else { 0 },
        vocab: dim_any(raw, &["vocab_size"])?,
        train: max_pos,
    };
    dims.check()?;
    let ctx = context(asked, default_context(max_pos))?;
    let (rotary, _, computed) = rope(cfg, dims.head_dim, ctx)?;
    let ffn = gelu(raw, "hidden_act", "gelu")?;
    let residual = if flag(raw, "use_parallel_residual", true)? {
        Residual::Parallel
    } else {
        Residual::Sequential
    };
    let block = gpt_block(ffn, residual, PositionHook::Rope);
    let mut warnings = Vec::new();
    let bos = token(raw, "bos_token_id", 0, dims.vocab, &mut warnings)?;
    let eos = token(raw, "eos_token_id", 2, dims.vocab, &mut warnings)?;
    let mut flags = image::FLAG_MLP_BIAS;
    if flag(raw, "attention_bias", true)? {
        flags |= image::FLAG_QKV_BIAS | image::FLAG_O_BIAS;
    }
    if flag(raw, "tie_word_embeddings", false)? {
        flags |= image::FLAG_TIED_EMBEDDINGS;
    }
    let eps = eps(raw, "layer_norm_eps", 1e-5)?;
    let header = header(&dims, ctx, flags, rotary, 0, eps, bos, eos, block)?;
    Ok(Spec {
        model_type: "gpt_neox",
        header,
        prefix: "gpt_neox.",
        computed,
        warnings,
        family: Family::GptNeoX,
    })
}

fn phi(cfg: &HfConfig, asked: Option<usize>) -> Result<Spec> {
    let raw = &cfg.raw;
    let dim = dim_any(raw, &["hidden_size"])?;
    let heads = dim_any(raw, &["num_attention_heads"])?;
    let max_pos = dim_any(raw, &["max_position_embeddings"])?;
    let head_dim = match opt_usize(raw, "head_dim", "")? {
        Some(d) => d,
        None if dim % heads == 0 => dim / heads,
        None => 0,
    };
    let dims = Dims {
        dim,
        hidden: dim_any(raw, &["intermediate_size"])?,
        layers: dim_any(raw, &["num_hidden_layers"])?,
        heads,
        kv_heads: opt_usize(raw, "num_key_value_heads", "")?.unwrap_or(heads),
        head_dim,
        vocab: dim_any(raw, &["vocab_size"])?,
        train: max_pos,
    };
    dims.check()?;
    if flag(raw, "qk_layernorm", false)? {
        bail!("qk_layernorm is true: q/k LayerNorms are not supported");
    }
    let ctx = context(asked, default_context(max_pos))?;
    let (rotary, _, computed) = rope(cfg, dims.head_dim, ctx)?;
    let ffn = gelu(raw, "hidden_act", "gelu_new")?;
    let block = gpt_block(ffn, Residual::ParallelShared, PositionHook::Rope);
    let mut warnings = Vec::new();
    let bos = token(raw, "bos_token_id", 1, dims.vocab, &mut warnings)?;
    let eos = token(raw, "eos_token_id", 2, dims.vocab, &mut warnings)?;
    let mut flags =
        image::FLAG_QKV_BIAS | image::FLAG_O_BIAS | image::FLAG_MLP_BIAS | image::FLAG_OUTPUT_BIAS;
    if flag(raw, "tie_word_embeddings", false)? {
        flags |= image::FLAG_TIED_EMBEDDINGS;
    }
    let eps = eps(raw, "layer_norm_eps", 1e-5)?;
    let header = header(&dims, ctx, flags, rotary, 0, eps, bos, eos, block)?;
    Ok(Spec {
        model_type: "phi",
        header,
        prefix: "model.",
        computed,
        warnings,
        family: Family::Phi,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str, ctx: Option<usize>) -> Result<Spec> {
        Spec::new(&HfConfig::parse(text)?, ctx)
    }

    #[test]
    fn gelu_names_follow_act2fn() {
        let m = |s: &str| {
            let v: Value = serde_json::from_str(s).unwrap();
            gelu(v.as_object().unwrap(), "act", "gelu_new")
        };
        assert_eq!(m(r#"{}"#).unwrap(), FfnKind::GeluTanh);
        assert_eq!(m(r#"{"act":"gelu"}"#).unwrap(), FfnKind::Gelu);
        assert_eq!(
            m(r#"{"act":"gelu_pytorch_tanh"}"#).unwrap(),
            FfnKind::GeluTanh
        );
        assert_eq!(m(r#"{"act":"gelu_fast"}"#).unwrap(), FfnKind::GeluTanh);
        let e = m(r#"{"act":"relu"}"#).unwrap_err();
        assert!(e.message().contains("act \"relu\" is not supported"), "{e}");
    }

    #[test]
    fn family_headers() {
        let g = spec(
            r#"{"model_type":"gpt2","n_embd":64,"n_head":4,"n_layer":2,"n_positions":32,"vocab_size":100,
                "scale_attn_weights":false,"bos_token_id":50256,"eos_token_id":50256}"#,
            None,
        )
        .unwrap();
        let h = g.header;
        assert_eq!((h.seq_len, h.hidden_dim, h.rotary_dim), (32, 256, 0));
        assert_eq!(h.block.position, PositionHook::Table);
        assert_eq!(h.block.attn_scale, 1.0);
        assert!(h.has(image::FLAG_TIED_EMBEDDINGS));
        // GPT-2's default bos/eos 50256 fall outside a 100-token vocabulary
        assert_eq!((h.bos_id, h.eos_id), (0, 0));
        assert_eq!(g.warnings.len(), 2, "{:?}", g.warnings);
        let e = spec(
            r#"{"model_type":"gpt2","n_embd":64,"n_head":4,"n_layer":2,"n_positions":32,"vocab_size":100}"#,
            Some(33),
        )
        .unwrap_err();
        assert!(
            e.message().contains("exceeds the 32 learned positions"),
            "{e}"
        );

        let x = spec(
            r#"{"model_type":"xglm","d_model":16,"attention_heads":2,"num_layers":1,"ffn_dim":32,
                "max_position_embeddings":8,"vocab_size":50}"#,
            Some(12),
        )
        .unwrap();
        assert_eq!(x.header.block.pos_offset, 2);
        assert_eq!(x.header.block.embed_scale, 4.0);
        assert_eq!(x.header.expected_shape(TensorKind::PosEmbedding), (14, 16));
        let table = &x.computed[0].1;
        assert!(table[16..32].iter().all(|&v| v == 0.0)); // row pad_token_id = 1
        assert_eq!(table[2 * 16], (2.0f64).sin() as f32);

        let m = spec(
            r#"{"model_type":"mpt","d_model":48,"n_heads":6,"n_layers":1,"max_seq_len":16,"vocab_size":50,
                "attn_config":{"alibi_bias_max":4,"softmax_scale":0.5}}"#,
            None,
        )
        .unwrap();
        assert_eq!(m.header.block.norm, NormKind::LayerNormNoBias);
        assert_eq!(m.header.block.attn_scale, 0.5);
        assert_eq!(m.header.hidden_dim, 192);
        // transformers ignores alibi_bias_max: the slopes are those of 8
        let want: Vec<f32> = [2.0, 4.0, 6.0, 8.0, 1.0, 3.0]
            .iter()
            .map(|e: &f64| (0.5f64).powf(*e) as f32)
            .collect();
        assert_eq!(m.computed[0].1, want);
        assert!(
            m.warnings[0].contains("alibi_bias_max is 4"),
            "{:?}",
            m.warnings
        );

        let j = spec(
            r#"{"model_type":"gptj","n_embd":64,"n_head":4,"n_layer":1,"n_positions":16,"vocab_size":50,"rotary_dim":6}"#,
            None,
        )
        .unwrap();
        assert_eq!(j.header.rotary_dim, 6);
        assert!(j.header.has(image::FLAG_ROPE_INTERLEAVED));
        assert_eq!(j.header.block.residual, Residual::ParallelShared);

        let n = spec(
            r#"{"model_type":"gpt_neox","hidden_size":64,"num_attention_heads":4,"num_hidden_layers":1,
                "intermediate_size":96,"max_position_embeddings":16,"vocab_size":50,"use_parallel_residual":false,
                "attention_bias":false,"hidden_act":"gelu_new"}"#,
            None,
        )
        .unwrap();
        assert_eq!(n.header.rotary_dim, 4); // rotary_pct default 0.25 of 16
        assert_eq!(n.header.block.residual, Residual::Sequential);
        assert_eq!(n.header.block.ffn, FfnKind::GeluTanh);
        assert!(!n.header.has(image::FLAG_QKV_BIAS) && !n.header.has(image::FLAG_O_BIAS));

        let e = spec(
            r#"{"model_type":"phi","hidden_size":64,"num_attention_heads":4,"num_hidden_layers":1,
                "intermediate_size":96,"max_position_embeddings":16,"vocab_size":50,"qk_layernorm":true}"#,
            None,
        )
        .unwrap_err();
        assert!(e.message().contains("qk_layernorm"), "{e}");
        let e = spec(r#"{"model_type":"t5"}"#, None).unwrap_err();
        assert!(
            e.message().contains("model_type t5 cannot be converted"),
            "{e}"
        );
    }

    #[test]
    fn fused_sources() {
        let n = spec(
            r#"{"model_type":"gpt_neox","hidden_size":64,"num_attention_heads":4,"num_hidden_layers":1,
                "intermediate_size":96,"max_position_embeddings":16,"vocab_size":50}"#,
            None,
        )
        .unwrap();
        assert_eq!(
            n.source(TensorKind::Bk, 0).unwrap(),
            Source::Heads {
                name: "gpt_neox.layers.0.attention.query_key_value.bias".into(),
                shape: vec![192],
                heads: 4,
                head_dim: 16,
                part: 1
            }
        );
        let g = spec(
            r#"{"model_type":"gpt2","n_embd":64,"n_head":4,"n_layer":1,"n_positions":32,"vocab_size":100}"#,
            None,
        )
        .unwrap();
        assert_eq!(
            g.source(TensorKind::Wv, 0).unwrap(),
            Source::Conv1d {
                name: "transformer.h.0.attn.c_attn.weight".into(),
                inp: 64,
                out: 192,
                rows: 128..192
            }
        );
    }
}
