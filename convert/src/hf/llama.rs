//! The Llama family — `llama`, `qwen2`, `mistral`, `phi3` — after
//! `modeling_llama.py` and its relatives: RMSNorm, SwiGLU, RoPE with half-split
//! pairs, grouped-query attention, sequential blocks. Qwen2 has q/k/v biases
//! (found in the checkpoint), Mistral and Phi-3 a sliding window, Phi-3 fused
//! `qkv_proj` (rows q, k, v) and `gate_up_proj` (rows gate, up).

use microformer::image::{self, Block, TensorKind};

use super::config::{HfConfig, ModelType};
use super::spec::{
    context, default_context, qkv_rows, rotation, token, Dims, Layout, Source, Spec,
};
use crate::error::Result;

/// The plan for a Llama-family `config.json`; `asked` is `--context`.
pub fn spec(cfg: &HfConfig, asked: Option<usize>) -> Result<Spec> {
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
    let rope = rotation(cfg, d.head_dim, ctx)?;
    let mut warnings = Vec::new();
    let raw = &cfg.raw;
    let bos = token(raw, "bos_token_id", 1, d.vocab_size, &mut warnings)?;
    let eos = token(raw, "eos_token_id", 2, d.vocab_size, &mut warnings)?;
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
fn source(spec: &Spec, kind: TensorKind, layer: u16) -> Result<Source> {
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
