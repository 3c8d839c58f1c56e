//! BLOOM (`bloom`), after `modeling_bloom.py`: ALiBi with BLOOM's slopes (a score
//! bias), LayerNorm, GELU with the tanh approximation, sequential blocks, a
//! LayerNorm after the embedding (`word_embeddings_layernorm`), the fused
//! `query_key_value` grouped per head (`[q k v]` of each), a tied head.

use microformer::image::{self, FfnKind, PositionHook, Residual, TensorKind};
use microformer::pos::alibi::AlibiRule;
use serde::Deserialize;

use super::config::keys::{flag_or, Count, Flag, Number, TokenId};
use super::config::HfConfig;
use super::spec::{
    alibi_slopes, context, dim_any, eps, gpt_block, head_dim_of, qkv_part, token, Dims, Layout,
    Source, Spec, DEFAULT_MAX_CONTEXT,
};
use crate::error::{bail, Result};

/// The keys of a BLOOM `config.json` (`BloomConfig`, with its `attribute_map`
/// names).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BloomKeys {
    /// `hidden_size` (or `n_embed`).
    pub hidden_size: Option<Count>,
    /// `n_embed`.
    pub n_embed: Option<Count>,
    /// `n_head` (or `num_attention_heads`).
    pub n_head: Option<Count>,
    /// `num_attention_heads`.
    pub num_attention_heads: Option<Count>,
    /// `n_layer` (or `num_hidden_layers`).
    pub n_layer: Option<Count>,
    /// `num_hidden_layers`.
    pub num_hidden_layers: Option<Count>,
    /// `vocab_size`.
    pub vocab_size: Option<Count>,
    /// `layer_norm_epsilon` (default 1e-5).
    pub layer_norm_epsilon: Option<Number>,
    /// `apply_residual_connection_post_layernorm` (not supported when true).
    pub apply_residual_connection_post_layernorm: Option<Flag>,
    /// `tie_word_embeddings` (default true).
    pub tie_word_embeddings: Option<Flag>,
    /// `bos_token_id` (default 1).
    pub bos_token_id: Option<TokenId>,
    /// `eos_token_id` (default 2).
    pub eos_token_id: Option<TokenId>,
}

/// The plan for a BLOOM `config.json`; `asked` is `--context`.
pub fn spec(cfg: &HfConfig, asked: Option<usize>) -> Result<Spec> {
    let k: BloomKeys = cfg.view()?;
    let dim = dim_any(&[(k.hidden_size, "hidden_size"), (k.n_embed, "n_embed")])?;
    let heads = dim_any(&[
        (k.n_head, "n_head"),
        (k.num_attention_heads, "num_attention_heads"),
    ])?;
    let dims = Dims {
        dim,
        hidden: 4 * dim,
        layers: dim_any(&[
            (k.n_layer, "n_layer"),
            (k.num_hidden_layers, "num_hidden_layers"),
        ])?,
        heads,
        kv_heads: heads,
        head_dim: head_dim_of(dim, heads),
        vocab: dim_any(&[(k.vocab_size, "vocab_size")])?,
        train: 0,
    };
    dims.check()?;
    if flag_or(k.apply_residual_connection_post_layernorm, false) {
        bail!("apply_residual_connection_post_layernorm is true: not supported");
    }
    // ALiBi has no trained context.
    let ctx = context(asked, DEFAULT_MAX_CONTEXT)?;
    // `bloom_gelu_forward`: x·½(1 + tanh(0.79788456·x·(1 + 0.044715·x²))).
    let block = gpt_block(FfnKind::GeluTanh, Residual::Sequential, PositionHook::Alibi);
    let mut warnings = Vec::new();
    let bos = token(k.bos_token_id, "bos_token_id", 1, dims.vocab, &mut warnings);
    let eos = token(k.eos_token_id, "eos_token_id", 2, dims.vocab, &mut warnings);
    let mut flags =
        image::FLAG_QKV_BIAS | image::FLAG_O_BIAS | image::FLAG_MLP_BIAS | image::FLAG_EMBED_NORM;
    if flag_or(k.tie_word_embeddings, true) {
        flags |= image::FLAG_TIED_EMBEDDINGS;
    }
    let header = dims.header(&Layout {
        context: ctx,
        flags,
        rotary_dim: 0,
        sliding_window: 0,
        norm_eps: eps(k.layer_norm_epsilon, "layer_norm_epsilon", 1e-5)?,
        bos,
        eos,
        block,
    })?;
    Ok(Spec {
        model_type: "bloom",
        header,
        prefix: "transformer.",
        computed: vec![(
            TensorKind::AlibiSlopes,
            alibi_slopes(AlibiRule::Bloom, heads)?,
        )],
        warnings,
        head_names: &["lm_head.weight"],
        qkv_bias_probe: None,
        sources: source,
    })
}

/// BLOOM tensor names.
fn source(spec: &Spec, kind: TensorKind, layer: u16) -> Result<Source> {
    use TensorKind::*;
    let h = &spec.header;
    let (dim, ffn, vocab) = (h.dim as usize, h.hidden_dim as usize, h.vocab_size as usize);
    let t = Source::t;
    let p = format!("transformer.h.{layer}.");
    let heads_of = |suffix: &str, shape: Vec<usize>| Source::Heads {
        name: format!("{p}self_attention.query_key_value.{suffix}"),
        shape,
        heads: h.n_heads as usize,
        head_dim: h.head_dim as usize,
        part: qkv_part(kind),
    };
    Ok(match kind {
        TokenEmbedding => t("transformer.word_embeddings.weight".into(), &[vocab, dim]),
        EmbedNorm => t(
            "transformer.word_embeddings_layernorm.weight".into(),
            &[dim],
        ),
        EmbedNormBias => t("transformer.word_embeddings_layernorm.bias".into(), &[dim]),
        FinalNorm => t("transformer.ln_f.weight".into(), &[dim]),
        FinalNormBias => t("transformer.ln_f.bias".into(), &[dim]),
        Output => t("lm_head.weight".into(), &[vocab, dim]),
        AttnNorm => t(format!("{p}input_layernorm.weight"), &[dim]),
        AttnNormBias => t(format!("{p}input_layernorm.bias"), &[dim]),
        FfnNorm => t(format!("{p}post_attention_layernorm.weight"), &[dim]),
        FfnNormBias => t(format!("{p}post_attention_layernorm.bias"), &[dim]),
        Wq | Wk | Wv => heads_of("weight", vec![3 * dim, dim]),
        Bq | Bk | Bv => heads_of("bias", vec![3 * dim]),
        Wo => t(format!("{p}self_attention.dense.weight"), &[dim, dim]),
        Bo => t(format!("{p}self_attention.dense.bias"), &[dim]),
        WUp => t(format!("{p}mlp.dense_h_to_4h.weight"), &[ffn, dim]),
        BUp => t(format!("{p}mlp.dense_h_to_4h.bias"), &[ffn]),
        WDown => t(format!("{p}mlp.dense_4h_to_h.weight"), &[dim, ffn]),
        BDown => t(format!("{p}mlp.dense_4h_to_h.bias"), &[dim]),
        _ => return Err(spec.no_source(kind)),
    })
}
