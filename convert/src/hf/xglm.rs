//! XGLM (`xglm`), after `modeling_xglm.py`: sinusoidal positions in the split
//! layout (the embedding table `fill_split_float32` builds, rows from 0, read
//! from offset 2, row `pad_token_id` zero), LayerNorm (eps 1e-5), a GELU MLP,
//! sequential blocks; `scale_embedding` multiplies the embedding by √d_model; a
//! tied head.

use microformer::image::{self, PositionHook, Residual, TensorKind};
use microformer::pos::sinusoidal;
use serde::Deserialize;

use super::config::keys::{flag_or, Count, Flag, Maybe, Name, TokenId};
use super::config::{HfConfig, XGLM_OFFSET};
use super::spec::{
    context, default_context, dim_any, gelu, gpt_block, head_dim_of, token, Dims, Layout, Source,
    Spec,
};
use crate::error::{bail, Error, Result};
use crate::limits::{current_table_limit, table_entries};

/// The keys of an XGLM `config.json` (`XGLMConfig`, with its `attribute_map`
/// names).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct XglmKeys {
    /// `d_model` (or `hidden_size`).
    pub d_model: Option<Count>,
    /// `hidden_size`.
    pub hidden_size: Option<Count>,
    /// `attention_heads` (or `num_attention_heads`).
    pub attention_heads: Option<Count>,
    /// `num_attention_heads`.
    pub num_attention_heads: Option<Count>,
    /// `num_layers` (or `num_hidden_layers`).
    pub num_layers: Option<Count>,
    /// `num_hidden_layers`.
    pub num_hidden_layers: Option<Count>,
    /// `ffn_dim`.
    pub ffn_dim: Option<Count>,
    /// `max_position_embeddings`.
    pub max_position_embeddings: Option<Count>,
    /// `vocab_size`.
    pub vocab_size: Option<Count>,
    /// `pad_token_id`: the position table's zero row (default 1; `null`: none).
    pub pad_token_id: Maybe<Count>,
    /// `activation_function` (default `gelu`).
    pub activation_function: Option<Name>,
    /// `scale_embedding` (default true).
    pub scale_embedding: Option<Flag>,
    /// `add_cross_attention` (not supported when true).
    pub add_cross_attention: Option<Flag>,
    /// `tie_word_embeddings` (default true).
    pub tie_word_embeddings: Option<Flag>,
    /// `bos_token_id` (default 0).
    pub bos_token_id: Option<TokenId>,
    /// `eos_token_id` (default 2).
    pub eos_token_id: Option<TokenId>,
}

/// The plan for an XGLM `config.json`; `asked` is `--context`.
pub fn spec(cfg: &HfConfig, asked: Option<usize>) -> Result<Spec> {
    let k: XglmKeys = cfg.view()?;
    let dim = dim_any(&[(k.d_model, "d_model"), (k.hidden_size, "hidden_size")])?;
    let heads = dim_any(&[
        (k.attention_heads, "attention_heads"),
        (k.num_attention_heads, "num_attention_heads"),
    ])?;
    let max_pos = dim_any(&[(k.max_position_embeddings, "max_position_embeddings")])?;
    let dims = Dims {
        dim,
        hidden: dim_any(&[(k.ffn_dim, "ffn_dim")])?,
        layers: dim_any(&[
            (k.num_layers, "num_layers"),
            (k.num_hidden_layers, "num_hidden_layers"),
        ])?,
        heads,
        kv_heads: heads,
        head_dim: head_dim_of(dim, heads),
        vocab: dim_any(&[(k.vocab_size, "vocab_size")])?,
        train: max_pos,
    };
    dims.check()?;
    if flag_or(k.add_cross_attention, false) {
        bail!("add_cross_attention is true: cross-attention is not supported");
    }
    // XGLM grows its sinusoidal table on demand: any context works.
    let ctx = context(asked, default_context(max_pos))?;
    let padding_idx = match k.pad_token_id {
        Maybe::Absent => Some(1),
        Maybe::Null => None,
        Maybe::Value(Count(p)) => Some(p),
    };
    let rows = ctx + XGLM_OFFSET;
    if padding_idx.is_some_and(|p| p >= rows) {
        bail!("pad_token_id {padding_idx:?} is beyond the {rows} rows of the position table");
    }
    let Some(entries) = table_entries(rows, dim) else {
        let limit = current_table_limit();
        bail!(
            "the position table of {rows} rows × {dim} is too large (at most {limit} entries here: give a smaller --context)"
        );
    };
    let mut table = vec![0f32; entries];
    sinusoidal::fill_split_float32(rows, dim, padding_idx, &mut table)
        .map_err(|e| Error::config(format!("sinusoidal table: {e}")))?;
    let ffn = gelu(
        k.activation_function.as_ref(),
        "activation_function",
        "gelu",
    )?;
    let mut block = gpt_block(ffn, Residual::Sequential, PositionHook::Table);
    block.pos_offset = XGLM_OFFSET as u32;
    if flag_or(k.scale_embedding, true) {
        // `math.sqrt(config.d_model)`, a Python float, multiplies a float32 tensor.
        block.embed_scale = (dim as f64).sqrt() as f32;
    }
    let mut warnings = Vec::new();
    let bos = token(k.bos_token_id, "bos_token_id", 0, dims.vocab, &mut warnings);
    let eos = token(k.eos_token_id, "eos_token_id", 2, dims.vocab, &mut warnings);
    let mut flags = image::FLAG_QKV_BIAS | image::FLAG_O_BIAS | image::FLAG_MLP_BIAS;
    if flag_or(k.tie_word_embeddings, true) {
        flags |= image::FLAG_TIED_EMBEDDINGS;
    }
    let header = dims.header(&Layout {
        context: ctx,
        flags,
        rotary_dim: 0,
        sliding_window: 0,
        // nn.LayerNorm's default epsilon: XGLM has no config key for it.
        norm_eps: 1e-5,
        bos,
        eos,
        block,
    })?;
    Ok(Spec {
        model_type: "xglm",
        header,
        prefix: "model.",
        computed: vec![(TensorKind::PosEmbedding, table)],
        warnings,
        head_names: &["lm_head.weight"],
        qkv_bias_probe: None,
        sources: source,
    })
}

/// XGLM tensor names.
fn source(spec: &Spec, kind: TensorKind, layer: u16) -> Result<Source> {
    use TensorKind::*;
    let h = &spec.header;
    let (dim, ffn, vocab) = (h.dim as usize, h.hidden_dim as usize, h.vocab_size as usize);
    let t = Source::t;
    let p = format!("model.layers.{layer}.");
    Ok(match kind {
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
        _ => return Err(spec.no_source(kind)),
    })
}
