//! Phi-1/1.5/2 (`phi`), after `modeling_phi.py`: RoPE on
//! `partial_rotary_factor` of each head with half-split pairs, LayerNorm, a GELU
//! MLP, parallel blocks with one norm, a `dense` output projection, a final
//! LayerNorm, a biased head.

use microformer::image::{self, PositionHook, Residual, TensorKind};
use serde::Deserialize;

use super::config::keys::{count, flag_or, Count, Flag, Name, Number, TokenId};
use super::config::HfConfig;
use super::spec::{
    context, default_context, dim_any, eps, gelu, gpt_block, head_dim_of, rotation, token, Dims,
    Layout, Source, Spec,
};
use crate::error::{bail, Result};

/// The keys of a Phi `config.json` (`PhiConfig`; the RoPE keys are read by
/// [`HfConfig::rope`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PhiKeys {
    /// `hidden_size`.
    pub hidden_size: Option<Count>,
    /// `num_attention_heads`.
    pub num_attention_heads: Option<Count>,
    /// `num_key_value_heads` (default `num_attention_heads`).
    pub num_key_value_heads: Option<Count>,
    /// `head_dim` (default `hidden_size / num_attention_heads`).
    pub head_dim: Option<Count>,
    /// `num_hidden_layers`.
    pub num_hidden_layers: Option<Count>,
    /// `intermediate_size`.
    pub intermediate_size: Option<Count>,
    /// `max_position_embeddings`.
    pub max_position_embeddings: Option<Count>,
    /// `vocab_size`.
    pub vocab_size: Option<Count>,
    /// `hidden_act` (default `gelu_new`).
    pub hidden_act: Option<Name>,
    /// `qk_layernorm` (not supported when true).
    pub qk_layernorm: Option<Flag>,
    /// `layer_norm_eps` (default 1e-5).
    pub layer_norm_eps: Option<Number>,
    /// `tie_word_embeddings` (default false).
    pub tie_word_embeddings: Option<Flag>,
    /// `bos_token_id` (default 1).
    pub bos_token_id: Option<TokenId>,
    /// `eos_token_id` (default 2).
    pub eos_token_id: Option<TokenId>,
}

/// The plan for a Phi `config.json`; `asked` is `--context`.
pub fn spec(cfg: &HfConfig, asked: Option<usize>) -> Result<Spec> {
    let k: PhiKeys = cfg.view()?;
    let dim = dim_any(&[(k.hidden_size, "hidden_size")])?;
    let heads = dim_any(&[(k.num_attention_heads, "num_attention_heads")])?;
    let max_pos = dim_any(&[(k.max_position_embeddings, "max_position_embeddings")])?;
    let dims = Dims {
        dim,
        hidden: dim_any(&[(k.intermediate_size, "intermediate_size")])?,
        layers: dim_any(&[(k.num_hidden_layers, "num_hidden_layers")])?,
        heads,
        kv_heads: count(k.num_key_value_heads).unwrap_or(heads),
        head_dim: count(k.head_dim).unwrap_or_else(|| head_dim_of(dim, heads)),
        vocab: dim_any(&[(k.vocab_size, "vocab_size")])?,
        train: max_pos,
    };
    dims.check()?;
    if flag_or(k.qk_layernorm, false) {
        bail!("qk_layernorm is true: q/k LayerNorms are not supported");
    }
    let ctx = context(asked, default_context(max_pos))?;
    let rope = rotation(cfg, dims.head_dim, ctx)?;
    let ffn = gelu(k.hidden_act.as_ref(), "hidden_act", "gelu_new")?;
    let block = gpt_block(ffn, Residual::ParallelShared, PositionHook::Rope);
    let mut warnings = Vec::new();
    let bos = token(k.bos_token_id, "bos_token_id", 1, dims.vocab, &mut warnings);
    let eos = token(k.eos_token_id, "eos_token_id", 2, dims.vocab, &mut warnings);
    let mut flags =
        image::FLAG_QKV_BIAS | image::FLAG_O_BIAS | image::FLAG_MLP_BIAS | image::FLAG_OUTPUT_BIAS;
    if flag_or(k.tie_word_embeddings, false) {
        flags |= image::FLAG_TIED_EMBEDDINGS;
    }
    let header = dims.header(&Layout {
        context: ctx,
        flags,
        rotary_dim: rope.rotary_dim,
        sliding_window: 0,
        norm_eps: eps(k.layer_norm_eps, "layer_norm_eps", 1e-5)?,
        bos,
        eos,
        block,
    })?;
    Ok(Spec {
        model_type: "phi",
        header,
        prefix: "model.",
        computed: rope.tables,
        warnings,
        head_names: &["lm_head.weight"],
        qkv_bias_probe: None,
        sources: source,
    })
}

/// Phi tensor names.
fn source(spec: &Spec, kind: TensorKind, layer: u16) -> Result<Source> {
    use TensorKind::*;
    let h = &spec.header;
    let (dim, ffn, vocab) = (h.dim as usize, h.hidden_dim as usize, h.vocab_size as usize);
    let (q_dim, kv_dim) = (h.q_dim(), h.kv_dim());
    let t = Source::t;
    let p = format!("model.layers.{layer}.");
    Ok(match kind {
        TokenEmbedding => t("model.embed_tokens.weight".into(), &[vocab, dim]),
        FinalNorm => t("model.final_layernorm.weight".into(), &[dim]),
        FinalNormBias => t("model.final_layernorm.bias".into(), &[dim]),
        Output => t("lm_head.weight".into(), &[vocab, dim]),
        OutputBias => t("lm_head.bias".into(), &[vocab]),
        AttnNorm => t(format!("{p}input_layernorm.weight"), &[dim]),
        AttnNormBias => t(format!("{p}input_layernorm.bias"), &[dim]),
        Wq => t(format!("{p}self_attn.q_proj.weight"), &[q_dim, dim]),
        Wk => t(format!("{p}self_attn.k_proj.weight"), &[kv_dim, dim]),
        Wv => t(format!("{p}self_attn.v_proj.weight"), &[kv_dim, dim]),
        Bq => t(format!("{p}self_attn.q_proj.bias"), &[q_dim]),
        Bk => t(format!("{p}self_attn.k_proj.bias"), &[kv_dim]),
        Bv => t(format!("{p}self_attn.v_proj.bias"), &[kv_dim]),
        Wo => t(format!("{p}self_attn.dense.weight"), &[dim, q_dim]),
        Bo => t(format!("{p}self_attn.dense.bias"), &[dim]),
        WUp => t(format!("{p}mlp.fc1.weight"), &[ffn, dim]),
        BUp => t(format!("{p}mlp.fc1.bias"), &[ffn]),
        WDown => t(format!("{p}mlp.fc2.weight"), &[dim, ffn]),
        BDown => t(format!("{p}mlp.fc2.bias"), &[dim]),
        _ => return Err(spec.no_source(kind)),
    })
}
