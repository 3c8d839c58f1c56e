//! The Llama family — `llama`, `qwen2`, `mistral`, `phi3` — after
//! `modeling_llama.py` and its relatives: RMSNorm, SwiGLU, RoPE with half-split
//! pairs, grouped-query attention, sequential blocks. Qwen2 has q/k/v biases
//! (found in the checkpoint), Mistral and Phi-3 a sliding window, Phi-3 fused
//! `qkv_proj` (rows q, k, v) and `gate_up_proj` (rows gate, up).

use microformer::image::{self, Block, TensorKind};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::config::keys::{count, flag_or, number, required, Count, Flag, Name, Number, TokenId};
use super::config::{HfConfig, ModelType};
use super::spec::{
    context, default_context, qkv_rows, rotation, token, Dims, Layout, Source, Spec,
};
use crate::error::{bail, Result};
use crate::limits::check_dim;

/// What one layer's attention is (`layer_types`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerType {
    /// `full_attention`.
    Full,
    /// `sliding_attention`: within `sliding_window`.
    Sliding,
}

/// `layer_types`: a list of `full_attention` and `sliding_attention`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerTypes(pub Vec<LayerType>);

impl<'de> Deserialize<'de> for LayerTypes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let v = Value::deserialize(d)?;
        let Value::Array(a) = &v else {
            return Err(D::Error::custom(format!(
                "key \"{{key}}\" must be a list, got {v}"
            )));
        };
        a.iter()
            .map(|t| match t.as_str() {
                Some("full_attention") => Ok(LayerType::Full),
                Some("sliding_attention") => Ok(LayerType::Sliding),
                _ => Err(D::Error::custom(format!(
                    "{{key}} entry {t} is not supported"
                ))),
            })
            .collect::<std::result::Result<_, _>>()
            .map(LayerTypes)
    }
}

/// The keys of a Llama-family `config.json` (`LlamaConfig`, `Qwen2Config`,
/// `MistralConfig`, `Phi3Config`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LlamaKeys {
    /// `hidden_size`.
    pub hidden_size: Option<Count>,
    /// `intermediate_size`.
    pub intermediate_size: Option<Count>,
    /// `num_hidden_layers`.
    pub num_hidden_layers: Option<Count>,
    /// `num_attention_heads`.
    pub num_attention_heads: Option<Count>,
    /// `num_key_value_heads`.
    pub num_key_value_heads: Option<Count>,
    /// `head_dim`.
    pub head_dim: Option<Count>,
    /// `vocab_size`.
    pub vocab_size: Option<Count>,
    /// `max_position_embeddings`.
    pub max_position_embeddings: Option<Count>,
    /// `rms_norm_eps`.
    pub rms_norm_eps: Option<Number>,
    /// `tie_word_embeddings`.
    pub tie_word_embeddings: Option<Flag>,
    /// `hidden_act`.
    pub hidden_act: Option<Name>,
    /// `mlp_bias`.
    pub mlp_bias: Option<Flag>,
    /// `use_sliding_window` (Qwen2).
    pub use_sliding_window: Option<Flag>,
    /// `sliding_window`.
    pub sliding_window: Option<Count>,
    /// `max_window_layers` (Qwen2).
    pub max_window_layers: Option<Count>,
    /// `layer_types`.
    pub layer_types: Option<LayerTypes>,
    /// `bos_token_id`.
    pub bos_token_id: Option<TokenId>,
    /// `eos_token_id`.
    pub eos_token_id: Option<TokenId>,
}

/// The dimensions and conventions of a Llama-family checkpoint (llama, qwen2,
/// mistral, phi3): RMSNorm, SwiGLU, RoPE, grouped-query attention.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaDims {
    /// `hidden_size`.
    pub hidden_size: usize,
    /// `intermediate_size` (the SwiGLU width).
    pub intermediate_size: usize,
    /// `num_hidden_layers`.
    pub num_hidden_layers: usize,
    /// `num_attention_heads`.
    pub num_attention_heads: usize,
    /// `num_key_value_heads` (default: `num_attention_heads`).
    pub num_key_value_heads: usize,
    /// `head_dim` (default: `hidden_size / num_attention_heads`).
    pub head_dim: usize,
    /// `vocab_size`.
    pub vocab_size: usize,
    /// `max_position_embeddings`.
    pub max_position_embeddings: usize,
    /// `rms_norm_eps` (default: the model class's, 1e-6; Phi-3: 1e-5).
    pub rms_norm_eps: f64,
    /// `tie_word_embeddings` (default false, as every one of these classes).
    pub tie_word_embeddings: bool,
    /// Sliding attention window applied to every layer, if any (Mistral and
    /// Phi-3 `sliding_window`; Qwen2 when `use_sliding_window` covers all layers).
    pub sliding_window: Option<usize>,
    /// `bos_token_id` (the first one of a list), if given.
    pub bos_token_id: Option<u64>,
    /// `eos_token_id` (the first one of a list), if given.
    pub eos_token_id: Option<u64>,
}

/// The dimensions of a Llama-family model (llama, qwen2, mistral, phi3).
///
/// Errors name the key: missing or malformed values, zero dimensions, heads
/// that do not divide, an activation other than SiLU, attention windows that
/// differ between layers.
pub fn dims(cfg: &HfConfig) -> Result<LlamaDims> {
    let mt = cfg.model_type;
    if !matches!(
        mt,
        ModelType::Llama
            | ModelType::Qwen2
            | ModelType::Mistral
            | ModelType::Phi3
            | ModelType::Microformer
    ) {
        bail!(
            "model_type {} is not a Llama-family model (supported: llama, qwen2, mistral, phi3)",
            mt.name()
        );
    }
    let k: LlamaKeys = cfg.view()?;
    let req = |v: Option<Count>, key: &str| required(count(v), "", key);
    let hidden_size = req(k.hidden_size, "hidden_size")?;
    let intermediate_size = req(k.intermediate_size, "intermediate_size")?;
    let num_hidden_layers = req(k.num_hidden_layers, "num_hidden_layers")?;
    let num_attention_heads = req(k.num_attention_heads, "num_attention_heads")?;
    let num_key_value_heads = count(k.num_key_value_heads).unwrap_or(num_attention_heads);
    let vocab_size = req(k.vocab_size, "vocab_size")?;
    let max_position_embeddings = req(k.max_position_embeddings, "max_position_embeddings")?;
    for (key, v) in [
        ("hidden_size", hidden_size),
        ("intermediate_size", intermediate_size),
        ("num_hidden_layers", num_hidden_layers),
        ("num_attention_heads", num_attention_heads),
        ("num_key_value_heads", num_key_value_heads),
        ("vocab_size", vocab_size),
        ("max_position_embeddings", max_position_embeddings),
    ] {
        if v == 0 {
            bail!("{key} is 0");
        }
        // max_position_embeddings only sets the default context (at most 2048).
        if key != "max_position_embeddings" {
            check_dim(key, v, key == "num_hidden_layers")?;
        }
    }
    if num_attention_heads % num_key_value_heads != 0 {
        bail!(
            "num_attention_heads {num_attention_heads} is not a multiple of num_key_value_heads {num_key_value_heads}"
        );
    }
    let head_dim = match count(k.head_dim) {
        Some(d) => d,
        None => {
            if hidden_size % num_attention_heads != 0 {
                bail!(
                    "hidden_size {hidden_size} is not a multiple of num_attention_heads {num_attention_heads} (and no head_dim is given)"
                );
            }
            hidden_size / num_attention_heads
        }
    };
    if head_dim == 0 || head_dim % 2 != 0 {
        bail!("head_dim {head_dim} must be even and > 0");
    }
    check_dim("head_dim", head_dim, false)?;
    let default_eps = if mt == ModelType::Phi3 { 1e-5 } else { 1e-6 };
    let rms_norm_eps = number(k.rms_norm_eps).unwrap_or(default_eps);
    if !(rms_norm_eps.is_finite() && rms_norm_eps >= 0.0) {
        bail!("rms_norm_eps must be a finite number >= 0, got {rms_norm_eps}");
    }
    match &k.hidden_act {
        None => {}
        Some(Name(a)) if a == "silu" || a == "swish" => {}
        Some(Name(a)) => bail!(
            "hidden_act {} is not supported (microformer runs SwiGLU with silu)",
            Value::from(a.as_str())
        ),
    }
    if flag_or(k.mlp_bias, false) {
        bail!("mlp_bias is true: feed-forward biases are not supported");
    }
    Ok(LlamaDims {
        hidden_size,
        intermediate_size,
        num_hidden_layers,
        num_attention_heads,
        num_key_value_heads,
        head_dim,
        vocab_size,
        max_position_embeddings,
        rms_norm_eps,
        tie_word_embeddings: flag_or(k.tie_word_embeddings, false),
        sliding_window: uniform_window(mt, &k, num_hidden_layers)?,
        bos_token_id: k.bos_token_id.and_then(|t| t.0),
        eos_token_id: k.eos_token_id.and_then(|t| t.0),
    })
}

/// The sliding window every layer uses (`None`: full attention), or an error
/// when layers differ (`layer_types` mixing full and sliding attention).
fn uniform_window(mt: ModelType, k: &LlamaKeys, n_layers: usize) -> Result<Option<usize>> {
    let window = match mt {
        ModelType::Llama | ModelType::Microformer => return Ok(None),
        ModelType::Qwen2 if flag_or(k.use_sliding_window, false) => count(k.sliding_window),
        ModelType::Qwen2 => None,
        _ => count(k.sliding_window),
    };
    // Which layers slide: `layer_types` when given, else Qwen2's max_window_layers rule.
    let sliding_layers = match &k.layer_types {
        Some(LayerTypes(types)) => {
            if types.len() != n_layers {
                bail!(
                    "layer_types has {} entries for {n_layers} layers",
                    types.len()
                );
            }
            types.iter().filter(|t| **t == LayerType::Sliding).count()
        }
        None if window.is_none() => 0,
        None if mt == ModelType::Qwen2 => {
            let from = count(k.max_window_layers).unwrap_or(n_layers);
            n_layers.saturating_sub(from)
        }
        None => n_layers,
    };
    match (sliding_layers, window) {
        (0, _) => Ok(None),
        (n, Some(w)) if n == n_layers => {
            if w == 0 {
                bail!("sliding_window is 0");
            }
            Ok(Some(w))
        }
        (n, Some(_)) => bail!(
            "{n} of {n_layers} layers use a sliding window: layers with different attention windows are not supported"
        ),
        (_, None) => {
            bail!("layer_types asks for sliding attention but sliding_window is not set")
        }
    }
}

/// The plan for a Llama-family `config.json`; `asked` is `--context`.
pub fn spec(cfg: &HfConfig, asked: Option<usize>) -> Result<Spec> {
    let d = dims(cfg)?;
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
    let rope = rotation(cfg, d.head_dim, ctx)?;
    let mut warnings = Vec::new();
    let id = |t: Option<u64>| Some(TokenId(t));
    let bos = token(
        id(d.bos_token_id),
        "bos_token_id",
        1,
        d.vocab_size,
        &mut warnings,
    );
    let eos = token(
        id(d.eos_token_id),
        "eos_token_id",
        2,
        d.vocab_size,
        &mut warnings,
    );
    let mut flags = 0;
    if d.tie_word_embeddings {
        flags |= image::FLAG_TIED_EMBEDDINGS;
    }
    // Qwen2 has q/k/v biases (found in the checkpoint: see `qkv_bias_probe`).
    let header = dims.header(&Layout {
        context: ctx,
        flags,
        rotary_dim: rope.rotary_dim,
        sliding_window: d.sliding_window.unwrap_or(0),
        norm_eps: d.rms_norm_eps,
        bos,
        eos,
        block: Block::LLAMA,
    })?;
    Ok(Spec {
        model_type: cfg.model_type.name(),
        header,
        prefix: "model.",
        computed: rope.tables,
        warnings,
        head_names: &["lm_head.weight"],
        qkv_bias_probe: Some("model.layers.0.self_attn.q_proj.bias"),
        sources: if cfg.model_type == ModelType::Phi3 {
            phi3_source
        } else {
            source
        },
    })
}

/// Llama, Qwen2 and Mistral tensor names.
pub(super) fn source(spec: &Spec, kind: TensorKind, layer: u16) -> Result<Source> {
    names(spec, kind, layer, false)
}

/// Phi-3 tensor names: Llama's with q/k/v and gate/up fused.
fn phi3_source(spec: &Spec, kind: TensorKind, layer: u16) -> Result<Source> {
    names(spec, kind, layer, true)
}

fn names(spec: &Spec, kind: TensorKind, layer: u16, fused: bool) -> Result<Source> {
    use TensorKind::*;
    let h = &spec.header;
    let (dim, ffn, vocab) = (h.dim as usize, h.hidden_dim as usize, h.vocab_size as usize);
    let (q_dim, kv_dim) = (h.q_dim(), h.kv_dim());
    let t = Source::t;
    let p = format!("model.layers.{layer}.");
    Ok(match kind {
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
        Wq | Wk | Wv if fused => Source::Rows {
            name: format!("{p}self_attn.qkv_proj.weight"),
            shape: vec![q_dim + 2 * kv_dim, dim],
            rows: qkv_rows(kind, q_dim, kv_dim),
        },
        Wq => t(format!("{p}self_attn.q_proj.weight"), &[q_dim, dim]),
        Wk => t(format!("{p}self_attn.k_proj.weight"), &[kv_dim, dim]),
        Wv => t(format!("{p}self_attn.v_proj.weight"), &[kv_dim, dim]),
        WGate | WUp if fused => Source::Rows {
            name: format!("{p}mlp.gate_up_proj.weight"),
            shape: vec![2 * ffn, dim],
            rows: if kind == WGate { 0..ffn } else { ffn..2 * ffn },
        },
        WGate => t(format!("{p}mlp.gate_proj.weight"), &[ffn, dim]),
        WUp => t(format!("{p}mlp.up_proj.weight"), &[ffn, dim]),
        _ => return Err(spec.no_source(kind)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llama_dims(extra: &str) -> Result<LlamaDims> {
        HfConfig::parse(&format!(
            r#"{{"hidden_size":64,"intermediate_size":96,"num_hidden_layers":2,"num_attention_heads":8,
                "vocab_size":128,"max_position_embeddings":64{extra}}}"#
        ))
        .and_then(|c| dims(&c))
    }

    #[test]
    fn llama_dims_defaults_and_windows() {
        let d = llama_dims(r#","model_type":"llama","sliding_window":16"#).unwrap();
        assert_eq!(
            (
                d.num_key_value_heads,
                d.head_dim,
                d.rms_norm_eps,
                d.tie_word_embeddings
            ),
            (8, 8, 1e-6, false)
        );
        assert_eq!(d.sliding_window, None); // llama has no window
        let d =
            llama_dims(r#","model_type":"phi3","eos_token_id":[7,9],"bos_token_id":null"#).unwrap();
        assert_eq!(
            (d.rms_norm_eps, d.eos_token_id, d.bos_token_id),
            (1e-5, Some(7), None)
        );
        let d = llama_dims(r#","model_type":"mistral","sliding_window":16"#).unwrap();
        assert_eq!(d.sliding_window, Some(16));
        let d = llama_dims(r#","model_type":"mistral","sliding_window":null"#).unwrap();
        assert_eq!(d.sliding_window, None);
        // Qwen2: the window only with use_sliding_window, and only if every layer slides
        let d = llama_dims(r#","model_type":"qwen2","sliding_window":16"#).unwrap();
        assert_eq!(d.sliding_window, None);
        let d = llama_dims(r#","model_type":"qwen2","sliding_window":16,"use_sliding_window":true,"max_window_layers":0"#)
            .unwrap();
        assert_eq!(d.sliding_window, Some(16));
        let e = llama_dims(r#","model_type":"qwen2","sliding_window":16,"use_sliding_window":true,"max_window_layers":1"#)
            .unwrap_err();
        assert!(
            e.message().contains("1 of 2 layers use a sliding window"),
            "{e}"
        );
        let e = llama_dims(r#","model_type":"mistral","sliding_window":16,"layer_types":["full_attention","sliding_attention"]"#)
            .unwrap_err();
        assert!(e.message().contains("1 of 2 layers"), "{e}");
        let e = llama_dims(r#","model_type":"gpt2""#).unwrap_err();
        assert!(e.message().contains("not a Llama-family model"), "{e}");
        let e = llama_dims(r#","model_type":"llama","hidden_act":"gelu""#).unwrap_err();
        assert!(e.message().contains("hidden_act"), "{e}");
        let e = llama_dims(r#","model_type":"llama","num_key_value_heads":3"#).unwrap_err();
        assert!(e.message().contains("not a multiple"), "{e}");
        let e = llama_dims(r#","model_type":"llama","mlp_bias":true"#).unwrap_err();
        assert!(e.message().contains("mlp_bias"), "{e}");
    }
}
