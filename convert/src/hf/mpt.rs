//! MPT (`mpt`), after `modeling_mpt.py`: ALiBi with MPT's slopes (a score bias),
//! LayerNorm without bias, exact GELU, sequential blocks, no biases, the fused
//! `Wqkv` (rows q, k, v), `attn_config.softmax_scale`.
//!
//! Where transformers departs from the original training code, the converter
//! follows transformers: the ALiBi slopes use `alibi_bias_max = 8` whatever the
//! config says (`MptModel.forward` calls `build_mpt_alibi_tensor` without it; a
//! warning says so when the config differs), and the MLP is `4·d_model` wide.

use microformer::image::{self, FfnKind, NormKind, PositionHook, Residual, TensorKind};
use microformer::pos::alibi::AlibiRule;
use serde::Deserialize;

use super::config::keys::{flag_or, number, Count, Dict, Flag, Number, TokenId};
use super::config::HfConfig;
use super::spec::{
    alibi_slopes, context, default_context, dim_any, eps, gpt_block, head_dim_of, qkv_rows, token,
    Dims, Layout, Source, Spec,
};
use crate::error::{bail, Result};

/// The keys of MPT's `attn_config` the conversion reads.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
pub struct MptAttnKeys {
    /// `alibi_bias_max` (transformers uses 8 whatever it says).
    pub alibi_bias_max: Option<Number>,
    /// `clip_qkv`: clipping of q, k, v (not supported when set).
    pub clip_qkv: Option<Number>,
    /// `softmax_scale`: the score scale (default `1/√head_dim`).
    pub softmax_scale: Option<Number>,
}

/// The keys of an MPT `config.json` (`MptConfig`, with its `attribute_map`
/// names).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct MptKeys {
    /// `d_model` (or `hidden_size`).
    pub d_model: Option<Count>,
    /// `hidden_size`.
    pub hidden_size: Option<Count>,
    /// `n_heads` (or `num_attention_heads`).
    pub n_heads: Option<Count>,
    /// `num_attention_heads`.
    pub num_attention_heads: Option<Count>,
    /// `n_layers` (or `num_hidden_layers`).
    pub n_layers: Option<Count>,
    /// `num_hidden_layers`.
    pub num_hidden_layers: Option<Count>,
    /// `max_seq_len` (or `max_position_embeddings`; default 2048).
    pub max_seq_len: Option<Count>,
    /// `max_position_embeddings`.
    pub max_position_embeddings: Option<Count>,
    /// `vocab_size`.
    pub vocab_size: Option<Count>,
    /// `attn_config`.
    pub attn_config: Option<Dict<MptAttnKeys>>,
    /// `layer_norm_epsilon` (default 1e-5).
    pub layer_norm_epsilon: Option<Number>,
    /// `tie_word_embeddings` (default true).
    pub tie_word_embeddings: Option<Flag>,
    /// `bos_token_id` (default 1).
    pub bos_token_id: Option<TokenId>,
    /// `eos_token_id` (default 2).
    pub eos_token_id: Option<TokenId>,
}

/// The plan for an MPT `config.json`; `asked` is `--context`.
pub fn spec(cfg: &HfConfig, asked: Option<usize>) -> Result<Spec> {
    let k: MptKeys = cfg.view()?;
    let dim = dim_any(&[(k.d_model, "d_model"), (k.hidden_size, "hidden_size")])?;
    let heads = dim_any(&[
        (k.n_heads, "n_heads"),
        (k.num_attention_heads, "num_attention_heads"),
    ])?;
    let max_seq = k
        .max_seq_len
        .or(k.max_position_embeddings)
        .map_or(2048, |c| c.0);
    let dims = Dims {
        dim,
        // MptMLP is 4·d_model wide whatever `expansion_ratio` says.
        hidden: 4 * dim,
        layers: dim_any(&[
            (k.n_layers, "n_layers"),
            (k.num_hidden_layers, "num_hidden_layers"),
        ])?,
        heads,
        kv_heads: heads,
        head_dim: head_dim_of(dim, heads),
        vocab: dim_any(&[(k.vocab_size, "vocab_size")])?,
        train: max_seq,
    };
    dims.check()?;
    let mut block = gpt_block(FfnKind::Gelu, Residual::Sequential, PositionHook::Alibi);
    block.norm = NormKind::LayerNormNoBias;
    let mut warnings = Vec::new();
    if let Some(Dict(a)) = k.attn_config {
        if a.clip_qkv.is_some() {
            bail!("attn_config.clip_qkv is set: clipping q/k/v is not supported");
        }
        if let Some(s) = number(a.softmax_scale) {
            if !(s.is_finite() && s > 0.0) {
                bail!("attn_config.softmax_scale must be a finite number > 0, got {s}");
            }
            block.attn_scale = s as f32;
        }
        if let Some(b) = number(a.alibi_bias_max) {
            if b != 8.0 {
                warnings.push(format!(
                    "attn_config.alibi_bias_max is {b}, but transformers' MPT uses 8 (build_mpt_alibi_tensor's default): the image follows transformers"
                ));
            }
        }
    }
    let ctx = context(asked, default_context(max_seq))?;
    let bos = token(k.bos_token_id, "bos_token_id", 1, dims.vocab, &mut warnings);
    let eos = token(k.eos_token_id, "eos_token_id", 2, dims.vocab, &mut warnings);
    let mut flags = 0;
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
        head_names: &["lm_head.weight"],
        qkv_bias_probe: None,
        sources: source,
    })
}

/// MPT tensor names.
fn source(spec: &Spec, kind: TensorKind, layer: u16) -> Result<Source> {
    use TensorKind::*;
    let h = &spec.header;
    let (dim, ffn, vocab) = (h.dim as usize, h.hidden_dim as usize, h.vocab_size as usize);
    let t = Source::t;
    let p = format!("transformer.blocks.{layer}.");
    Ok(match kind {
        TokenEmbedding => t("transformer.wte.weight".into(), &[vocab, dim]),
        FinalNorm => t("transformer.norm_f.weight".into(), &[dim]),
        Output => t("lm_head.weight".into(), &[vocab, dim]),
        AttnNorm => t(format!("{p}norm_1.weight"), &[dim]),
        FfnNorm => t(format!("{p}norm_2.weight"), &[dim]),
        Wq | Wk | Wv => Source::Rows {
            name: format!("{p}attn.Wqkv.weight"),
            shape: vec![3 * dim, dim],
            rows: qkv_rows(kind, h.q_dim(), h.kv_dim()),
        },
        Wo => t(format!("{p}attn.out_proj.weight"), &[dim, dim]),
        WUp => t(format!("{p}ffn.up_proj.weight"), &[ffn, dim]),
        WDown => t(format!("{p}ffn.down_proj.weight"), &[dim, ffn]),
        _ => return Err(spec.no_source(kind)),
    })
}
