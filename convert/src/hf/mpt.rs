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
use serde_json::Value;

use super::config::{opt_f64, HfConfig};
use super::spec::{
    alibi_slopes, context, default_context, dim_any, eps, flag, gpt_block, head_dim_of, qkv_rows,
    token, usize_any, Dims, Layout, Source, Spec,
};
use crate::error::{bail, Result};

/// The plan for an MPT `config.json`; `asked` is `--context`.
pub fn spec(cfg: &HfConfig, asked: Option<usize>) -> Result<Spec> {
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
        head_dim: head_dim_of(dim, heads),
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
    let header = dims.header(&Layout {
        context: ctx,
        flags,
        rotary_dim: 0,
        sliding_window: 0,
        norm_eps: eps(raw, "layer_norm_epsilon", 1e-5)?,
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
