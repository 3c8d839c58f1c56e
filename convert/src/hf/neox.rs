//! GPT-NeoX (`gpt_neox`), after `modeling_gpt_neox.py`: RoPE on `rotary_pct` of
//! each head with half-split pairs, LayerNorm, a GELU MLP (`hidden_act`), parallel
//! blocks with two norms (`use_parallel_residual`) or sequential ones, the fused
//! `query_key_value` grouped per head (`[q k v]` of each), `attention_bias`.

use microformer::image::{self, PositionHook, Residual, TensorKind};
use serde::Deserialize;

use super::config::keys::{flag_or, Count, Flag, Name, Number, TokenId};
use super::config::HfConfig;
use super::spec::{
    context, default_context, dim_any, eps, gelu, gpt_block, head_dim_of, qkv_part, rotation,
    token, Dims, Layout, Source, Spec,
};
use crate::error::Result;

/// The keys of a GPT-NeoX `config.json` (`GPTNeoXConfig`; the RoPE keys are read
/// by [`HfConfig::rope`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NeoXKeys {
    /// `hidden_size`.
    pub hidden_size: Option<Count>,
    /// `num_attention_heads`.
    pub num_attention_heads: Option<Count>,
    /// `num_hidden_layers`.
    pub num_hidden_layers: Option<Count>,
    /// `intermediate_size`.
    pub intermediate_size: Option<Count>,
    /// `max_position_embeddings`.
    pub max_position_embeddings: Option<Count>,
    /// `vocab_size`.
    pub vocab_size: Option<Count>,
    /// `hidden_act` (default `gelu`).
    pub hidden_act: Option<Name>,
    /// `use_parallel_residual` (default true).
    pub use_parallel_residual: Option<Flag>,
    /// `attention_bias` (default true).
    pub attention_bias: Option<Flag>,
    /// `layer_norm_eps` (default 1e-5).
    pub layer_norm_eps: Option<Number>,
    /// `tie_word_embeddings` (default false).
    pub tie_word_embeddings: Option<Flag>,
    /// `bos_token_id` (default 0).
    pub bos_token_id: Option<TokenId>,
    /// `eos_token_id` (default 2).
    pub eos_token_id: Option<TokenId>,
}

/// The plan for a GPT-NeoX `config.json`; `asked` is `--context`.
pub fn spec(cfg: &HfConfig, asked: Option<usize>) -> Result<Spec> {
    let k: NeoXKeys = cfg.view()?;
    let dim = dim_any(&[(k.hidden_size, "hidden_size")])?;
    let heads = dim_any(&[(k.num_attention_heads, "num_attention_heads")])?;
    let max_pos = dim_any(&[(k.max_position_embeddings, "max_position_embeddings")])?;
    let dims = Dims {
        dim,
        hidden: dim_any(&[(k.intermediate_size, "intermediate_size")])?,
        layers: dim_any(&[(k.num_hidden_layers, "num_hidden_layers")])?,
        heads,
        kv_heads: heads,
        head_dim: head_dim_of(dim, heads),
        vocab: dim_any(&[(k.vocab_size, "vocab_size")])?,
        train: max_pos,
    };
    dims.check()?;
    let ctx = context(asked, default_context(max_pos))?;
    let rope = rotation(cfg, dims.head_dim, ctx)?;
    let ffn = gelu(k.hidden_act.as_ref(), "hidden_act", "gelu")?;
    let residual = if flag_or(k.use_parallel_residual, true) {
        Residual::Parallel
    } else {
        Residual::Sequential
    };
    let block = gpt_block(ffn, residual, PositionHook::Rope);
    let mut warnings = Vec::new();
    let bos = token(k.bos_token_id, "bos_token_id", 0, dims.vocab, &mut warnings);
    let eos = token(k.eos_token_id, "eos_token_id", 2, dims.vocab, &mut warnings);
    let mut flags = image::FLAG_MLP_BIAS;
    if flag_or(k.attention_bias, true) {
        flags |= image::FLAG_QKV_BIAS | image::FLAG_O_BIAS;
    }
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
        model_type: "gpt_neox",
        header,
        prefix: "gpt_neox.",
        computed: rope.tables,
        warnings,
        head_names: &["embed_out.weight", "lm_head.weight"],
        qkv_bias_probe: None,
        sources: source,
    })
}

/// GPT-NeoX tensor names.
fn source(spec: &Spec, kind: TensorKind, layer: u16) -> Result<Source> {
    use TensorKind::*;
    let h = &spec.header;
    let (dim, ffn, vocab) = (h.dim as usize, h.hidden_dim as usize, h.vocab_size as usize);
    let t = Source::t;
    let p = format!("gpt_neox.layers.{layer}.");
    let heads_of = |suffix: &str, shape: Vec<usize>| Source::Heads {
        name: format!("{p}attention.query_key_value.{suffix}"),
        shape,
        heads: h.n_heads as usize,
        head_dim: h.head_dim as usize,
        part: qkv_part(kind),
    };
    Ok(match kind {
        TokenEmbedding => t("gpt_neox.embed_in.weight".into(), &[vocab, dim]),
        FinalNorm => t("gpt_neox.final_layer_norm.weight".into(), &[dim]),
        FinalNormBias => t("gpt_neox.final_layer_norm.bias".into(), &[dim]),
        Output => t("embed_out.weight".into(), &[vocab, dim]),
        AttnNorm => t(format!("{p}input_layernorm.weight"), &[dim]),
        AttnNormBias => t(format!("{p}input_layernorm.bias"), &[dim]),
        FfnNorm => t(format!("{p}post_attention_layernorm.weight"), &[dim]),
        FfnNormBias => t(format!("{p}post_attention_layernorm.bias"), &[dim]),
        Wq | Wk | Wv => heads_of("weight", vec![3 * dim, dim]),
        Bq | Bk | Bv => heads_of("bias", vec![3 * dim]),
        Wo => t(format!("{p}attention.dense.weight"), &[dim, dim]),
        Bo => t(format!("{p}attention.dense.bias"), &[dim]),
        WUp => t(format!("{p}mlp.dense_h_to_4h.weight"), &[ffn, dim]),
        BUp => t(format!("{p}mlp.dense_h_to_4h.bias"), &[ffn]),
        WDown => t(format!("{p}mlp.dense_4h_to_h.weight"), &[dim, ffn]),
        BDown => t(format!("{p}mlp.dense_4h_to_h.bias"), &[dim]),
        _ => return Err(spec.no_source(kind)),
    })
}
