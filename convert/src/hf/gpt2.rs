//! GPT-2 (`gpt2`), after `modeling_gpt2.py`: learned absolute positions (`wpe`,
//! an embedding table from offset 0), LayerNorm, a GELU MLP
//! (`activation_function`), sequential blocks; `Conv1D` weights stored
//! `[in][out]` (transposed here), fused `c_attn` (columns q, k, v), a tied head;
//! `scale_attn_weights: false` gives unscaled scores.

use std::ops::Range;

use microformer::image::{self, PositionHook, Residual, TensorKind};

use serde::Deserialize;

use super::config::keys::{count, flag_or, Count, Flag, Name, Number, TokenId};
use super::config::HfConfig;
use super::spec::{
    context, default_context, dim_any, eps, gelu, gpt_block, head_dim_of, qkv_rows, token, Dims,
    Layout, Source, Spec,
};
use crate::error::{bail, Result};

/// The keys of a GPT-2 `config.json` (`GPT2Config`, with its `attribute_map`
/// names).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Gpt2Keys {
    /// `n_embd` (or `hidden_size`).
    pub n_embd: Option<Count>,
    /// `hidden_size`.
    pub hidden_size: Option<Count>,
    /// `n_head` (or `num_attention_heads`).
    pub n_head: Option<Count>,
    /// `num_attention_heads`.
    pub num_attention_heads: Option<Count>,
    /// `n_positions` (or `max_position_embeddings`).
    pub n_positions: Option<Count>,
    /// `max_position_embeddings`.
    pub max_position_embeddings: Option<Count>,
    /// `n_layer` (or `num_hidden_layers`).
    pub n_layer: Option<Count>,
    /// `num_hidden_layers`.
    pub num_hidden_layers: Option<Count>,
    /// `n_inner` (default `4·n_embd`).
    pub n_inner: Option<Count>,
    /// `vocab_size`.
    pub vocab_size: Option<Count>,
    /// `activation_function` (default `gelu_new`).
    pub activation_function: Option<Name>,
    /// `layer_norm_epsilon` (default 1e-5).
    pub layer_norm_epsilon: Option<Number>,
    /// `scale_attn_weights` (default true).
    pub scale_attn_weights: Option<Flag>,
    /// `scale_attn_by_inverse_layer_idx` (not supported when true).
    pub scale_attn_by_inverse_layer_idx: Option<Flag>,
    /// `add_cross_attention` (not supported when true).
    pub add_cross_attention: Option<Flag>,
    /// `tie_word_embeddings` (default true).
    pub tie_word_embeddings: Option<Flag>,
    /// `bos_token_id` (default 50256).
    pub bos_token_id: Option<TokenId>,
    /// `eos_token_id` (default 50256).
    pub eos_token_id: Option<TokenId>,
}

/// The plan for a GPT-2 `config.json`; `asked` is `--context`.
pub fn spec(cfg: &HfConfig, asked: Option<usize>) -> Result<Spec> {
    let k: Gpt2Keys = cfg.view()?;
    let dim = dim_any(&[(k.n_embd, "n_embd"), (k.hidden_size, "hidden_size")])?;
    let heads = dim_any(&[
        (k.n_head, "n_head"),
        (k.num_attention_heads, "num_attention_heads"),
    ])?;
    let n_positions = dim_any(&[
        (k.n_positions, "n_positions"),
        (k.max_position_embeddings, "max_position_embeddings"),
    ])?;
    let dims = Dims {
        dim,
        hidden: count(k.n_inner).unwrap_or(4 * dim),
        layers: dim_any(&[
            (k.n_layer, "n_layer"),
            (k.num_hidden_layers, "num_hidden_layers"),
        ])?,
        heads,
        kv_heads: heads,
        head_dim: head_dim_of(dim, heads),
        vocab: dim_any(&[(k.vocab_size, "vocab_size")])?,
        train: n_positions,
    };
    dims.check()?;
    if flag_or(k.add_cross_attention, false) {
        bail!("add_cross_attention is true: cross-attention is not supported");
    }
    if flag_or(k.scale_attn_by_inverse_layer_idx, false) {
        bail!("scale_attn_by_inverse_layer_idx is true: a per-layer score scale is not supported");
    }
    let ctx = context(asked, default_context(n_positions))?;
    if ctx > n_positions {
        bail!("--context {ctx} exceeds the {n_positions} learned positions (n_positions)");
    }
    let ffn = gelu(
        k.activation_function.as_ref(),
        "activation_function",
        "gelu_new",
    )?;
    let mut block = gpt_block(ffn, Residual::Sequential, PositionHook::Table);
    if !flag_or(k.scale_attn_weights, true) {
        block.attn_scale = 1.0;
    }
    let mut warnings = Vec::new();
    let bos = token(
        k.bos_token_id,
        "bos_token_id",
        50256,
        dims.vocab,
        &mut warnings,
    );
    let eos = token(
        k.eos_token_id,
        "eos_token_id",
        50256,
        dims.vocab,
        &mut warnings,
    );
    let mut flags = image::FLAG_QKV_BIAS | image::FLAG_O_BIAS | image::FLAG_MLP_BIAS;
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
        model_type: "gpt2",
        header,
        prefix: "transformer.",
        computed: Vec::new(),
        warnings,
        head_names: &["lm_head.weight"],
        qkv_bias_probe: None,
        sources: source,
    })
}

/// GPT-2 tensor names.
fn source(spec: &Spec, kind: TensorKind, layer: u16) -> Result<Source> {
    use TensorKind::*;
    let h = &spec.header;
    let (dim, ffn, vocab) = (h.dim as usize, h.hidden_dim as usize, h.vocab_size as usize);
    let (q_dim, kv_dim) = (h.q_dim(), h.kv_dim());
    let t = Source::t;
    let p = format!("transformer.h.{layer}.");
    let conv = |name: String, inp: usize, out: usize, rows: Range<usize>| Source::Conv1d {
        name,
        inp,
        out,
        rows,
    };
    Ok(match kind {
        TokenEmbedding => t("transformer.wte.weight".into(), &[vocab, dim]),
        PosEmbedding => Source::Rows {
            name: "transformer.wpe.weight".into(),
            shape: vec![h.train_context as usize, dim],
            rows: 0..h.seq_len as usize,
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
            qkv_rows(kind, q_dim, kv_dim),
        ),
        Bq | Bk | Bv => Source::Rows {
            name: format!("{p}attn.c_attn.bias"),
            shape: vec![3 * dim],
            rows: qkv_rows(kind, q_dim, kv_dim),
        },
        Wo => conv(format!("{p}attn.c_proj.weight"), dim, dim, 0..dim),
        Bo => t(format!("{p}attn.c_proj.bias"), &[dim]),
        WUp => conv(format!("{p}mlp.c_fc.weight"), dim, ffn, 0..ffn),
        BUp => t(format!("{p}mlp.c_fc.bias"), &[ffn]),
        WDown => conv(format!("{p}mlp.c_proj.weight"), ffn, dim, 0..dim),
        BDown => t(format!("{p}mlp.c_proj.bias"), &[dim]),
        _ => return Err(spec.no_source(kind)),
    })
}
