//! GPT-J (`gptj`), after `modeling_gptj.py`: RoPE on the first `rotary_dim`
//! dimensions of each head with interleaved pairs (its table built in float32 as
//! `create_sinusoidal_positions` does), LayerNorm, a GELU MLP, parallel blocks
//! with one norm, a biased head.

use microformer::image::{self, PositionHook, Residual, TensorKind};
use serde::Deserialize;

use super::config::keys::{count, flag_or, Count, Flag, Name, Number, TokenId};
use super::config::HfConfig;
use super::spec::{
    context, default_context, dim_any, eps, gelu, gpt_block, head_dim_of, rotation, token, Dims,
    Layout, Source, Spec,
};
use crate::error::Result;

/// The keys of a GPT-J `config.json` (`GPTJConfig`, with its `attribute_map`
/// names; the RoPE keys are read by [`HfConfig::rope`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GptJKeys {
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
    /// `tie_word_embeddings` (default false).
    pub tie_word_embeddings: Option<Flag>,
    /// `bos_token_id` (default 50256).
    pub bos_token_id: Option<TokenId>,
    /// `eos_token_id` (default 50256).
    pub eos_token_id: Option<TokenId>,
}

/// The plan for a GPT-J `config.json`; `asked` is `--context`.
pub fn spec(cfg: &HfConfig, asked: Option<usize>) -> Result<Spec> {
    let k: GptJKeys = cfg.view()?;
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
    let ctx = context(asked, default_context(n_positions))?;
    let rope = rotation(cfg, dims.head_dim, ctx)?;
    let ffn = gelu(
        k.activation_function.as_ref(),
        "activation_function",
        "gelu_new",
    )?;
    let block = gpt_block(ffn, Residual::ParallelShared, PositionHook::Rope);
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
    let mut flags = image::FLAG_MLP_BIAS | image::FLAG_OUTPUT_BIAS;
    if rope.interleaved {
        flags |= image::FLAG_ROPE_INTERLEAVED;
    }
    if flag_or(k.tie_word_embeddings, false) {
        flags |= image::FLAG_TIED_EMBEDDINGS;
    }
    let header = dims.header(&Layout {
        context: ctx,
        flags,
        rotary_dim: rope.rotary_dim,
        sliding_window: 0,
        norm_eps: eps(k.layer_norm_epsilon, "layer_norm_epsilon", 1e-5)?,
        bos,
        eos,
        block,
    })?;
    Ok(Spec {
        model_type: "gptj",
        header,
        prefix: "transformer.",
        computed: rope.tables,
        warnings,
        head_names: &["lm_head.weight"],
        qkv_bias_probe: None,
        sources: source,
    })
}

/// GPT-J tensor names.
fn source(spec: &Spec, kind: TensorKind, layer: u16) -> Result<Source> {
    use TensorKind::*;
    let h = &spec.header;
    let (dim, ffn, vocab) = (h.dim as usize, h.hidden_dim as usize, h.vocab_size as usize);
    let (q_dim, kv_dim) = (h.q_dim(), h.kv_dim());
    let t = Source::t;
    let p = format!("transformer.h.{layer}.");
    Ok(match kind {
        TokenEmbedding => t("transformer.wte.weight".into(), &[vocab, dim]),
        FinalNorm => t("transformer.ln_f.weight".into(), &[dim]),
        FinalNormBias => t("transformer.ln_f.bias".into(), &[dim]),
        Output => t("lm_head.weight".into(), &[vocab, dim]),
        OutputBias => t("lm_head.bias".into(), &[vocab]),
        AttnNorm => t(format!("{p}ln_1.weight"), &[dim]),
        AttnNormBias => t(format!("{p}ln_1.bias"), &[dim]),
        Wq => t(format!("{p}attn.q_proj.weight"), &[q_dim, dim]),
        Wk => t(format!("{p}attn.k_proj.weight"), &[kv_dim, dim]),
        Wv => t(format!("{p}attn.v_proj.weight"), &[kv_dim, dim]),
        Wo => t(format!("{p}attn.out_proj.weight"), &[dim, q_dim]),
        WUp => t(format!("{p}mlp.fc_in.weight"), &[ffn, dim]),
        BUp => t(format!("{p}mlp.fc_in.bias"), &[ffn]),
        WDown => t(format!("{p}mlp.fc_out.weight"), &[dim, ffn]),
        BDown => t(format!("{p}mlp.fc_out.bias"), &[dim]),
        _ => return Err(spec.no_source(kind)),
    })
}
