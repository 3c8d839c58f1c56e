//! The Hugging Face model families `microformer convert` reads, one module each:
//! [`plan`] picks the family of a `config.json` and makes its [`Spec`] — the
//! image header (dimensions and block shape, [`microformer::image::Block`]) and,
//! for every image tensor, where its values come from in the checkpoint
//! ([`super::spec::Source`]).
//!
//! Every family follows its `modeling_*.py` in transformers 5.23, and reads its
//! `config.json` keys with the defaults of its `configuration_*.py`:
//!
//! | model_type | positions (hook) | block | specifics |
//! |---|---|---|---|
//! | `llama`, `qwen2`, `mistral`, `phi3` | RoPE, half-split (rotation) | RMSNorm, SwiGLU, sequential | Qwen2 q/k/v biases; Mistral/Phi-3 sliding window; Phi-3 fused `qkv_proj`/`gate_up_proj` (rows q, k, v / gate, up) |
//! | `gpt2` | learned `wpe` (embedding table, offset 0) | LayerNorm, GELU MLP (`activation_function`), sequential | `Conv1D` weights stored `[in][out]`, transposed; fused `c_attn` (columns q, k, v); tied head; `scale_attn_weights: false` → unscaled scores |
//! | `xglm` | sinusoidal, split layout (embedding table: `fill_split_float32`, rows from 0, offset 2, row `pad_token_id` zero) | LayerNorm (eps 1e-5), GELU MLP, sequential | `scale_embedding` → embedding × √d_model; tied head |
//! | `bloom` | ALiBi, BLOOM slopes (score bias) | LayerNorm, GELU (tanh), sequential | `word_embeddings_layernorm`; fused `query_key_value` per head `[q k v]`; tied head |
//! | `mpt` | ALiBi, MPT slopes (score bias) | LayerNorm without bias, exact GELU, sequential, no biases | fused `Wqkv` (rows q, k, v); `attn_config.softmax_scale` |
//! | `gptj` | RoPE on the first `rotary_dim` dims, interleaved pairs | LayerNorm, GELU MLP, parallel with one norm | biased head |
//! | `gpt_neox` | RoPE on `rotary_pct` of each head, half-split | LayerNorm, GELU MLP (`hidden_act`), parallel with two norms (`use_parallel_residual`) or sequential | fused `query_key_value` per head `[q k v]`; `attention_bias` |
//! | `microformer` | the `position` key: none, sinusoidal or learned table, RoPE (half-split), ALiBi (BLOOM slopes), T5 buckets (score bias) | RMSNorm, SwiGLU, sequential | the project's own checkpoints (`train/`); tied head |
//! | `phi` | RoPE on `partial_rotary_factor` of each head, half-split | LayerNorm, GELU MLP, parallel with one norm | `dense` output projection, final LayerNorm, biased head |
//!
//! Where transformers departs from the original training code, the converter
//! follows transformers: MPT's ALiBi slopes use `alibi_bias_max = 8` whatever
//! the config says (`MptModel.forward` calls `build_mpt_alibi_tensor` without it;
//! a warning is printed when the config differs), and the MPT MLP is
//! `4·d_model` wide.

use super::config::{HfConfig, ModelType};
use super::spec::Spec;
use super::{bloom, gpt2, gptj, llama, mpt, neox, own, phi, xglm};
use crate::error::{bail, Result};

/// The model types `convert` accepts.
pub const SUPPORTED: &str =
    "llama, qwen2, mistral, phi3, gpt2, xglm, bloom, mpt, gptj, gpt_neox, phi, microformer";

/// The conversion plan for a parsed `config.json`; `asked` is `--context`.
///
/// Errors ([`crate::error::ErrorKind::Config`]) name the key: a model type microformer
/// does not convert, missing or malformed values, zero or inconsistent
/// dimensions, variants it does not run.
pub fn plan(cfg: &HfConfig, asked: Option<usize>) -> Result<Spec> {
    match cfg.model_type {
        ModelType::Llama | ModelType::Qwen2 | ModelType::Mistral | ModelType::Phi3 => {
            llama::spec(cfg, asked)
        }
        ModelType::Gpt2 => gpt2::spec(cfg, asked),
        ModelType::Xglm => xglm::spec(cfg, asked),
        ModelType::Bloom => bloom::spec(cfg, asked),
        ModelType::Mpt => mpt::spec(cfg, asked),
        ModelType::GptJ => gptj::spec(cfg, asked),
        ModelType::GptNeoX => neox::spec(cfg, asked),
        ModelType::Phi => phi::spec(cfg, asked),
        ModelType::Microformer => own::spec(cfg, asked),
        other => bail!(
            "model_type {} cannot be converted (supported: {})",
            other.name(),
            SUPPORTED
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use microformer::image::{self, FfnKind, NormKind, PositionHook, Residual, TensorKind};

    use crate::hf::spec::Source;

    fn spec(text: &str, ctx: Option<usize>) -> Result<Spec> {
        plan(&HfConfig::parse(text)?, ctx)
    }

    #[test]
    fn family_headers() {
        let g = spec(
            r#"{"model_type":"gpt2","n_embd":64,"n_head":4,"n_layer":2,"n_positions":32,"vocab_size":100,
                "scale_attn_weights":false,"bos_token_id":50256,"eos_token_id":50256}"#,
            None,
        )
        .unwrap();
        let h = g.header;
        assert_eq!((h.seq_len, h.hidden_dim, h.rotary_dim), (32, 256, 0));
        assert_eq!(h.block.position, PositionHook::Table);
        assert_eq!(h.block.attn_scale, 1.0);
        assert!(h.has(image::FLAG_TIED_EMBEDDINGS));
        // GPT-2's default bos/eos 50256 fall outside a 100-token vocabulary
        assert_eq!((h.bos_id, h.eos_id), (0, 0));
        assert_eq!(g.warnings.len(), 2, "{:?}", g.warnings);
        let e = spec(
            r#"{"model_type":"gpt2","n_embd":64,"n_head":4,"n_layer":2,"n_positions":32,"vocab_size":100}"#,
            Some(33),
        )
        .unwrap_err();
        assert!(
            e.message().contains("exceeds the 32 learned positions"),
            "{e}"
        );

        let x = spec(
            r#"{"model_type":"xglm","d_model":16,"attention_heads":2,"num_layers":1,"ffn_dim":32,
                "max_position_embeddings":8,"vocab_size":50}"#,
            Some(12),
        )
        .unwrap();
        assert_eq!(x.header.block.pos_offset, 2);
        assert_eq!(x.header.block.embed_scale, 4.0);
        assert_eq!(x.header.expected_shape(TensorKind::PosEmbedding), (14, 16));
        let table = &x.computed[0].1;
        assert!(table[16..32].iter().all(|&v| v == 0.0)); // row pad_token_id = 1
        assert_eq!(table[2 * 16], (2.0f64).sin() as f32);

        let m = spec(
            r#"{"model_type":"mpt","d_model":48,"n_heads":6,"n_layers":1,"max_seq_len":16,"vocab_size":50,
                "attn_config":{"alibi_bias_max":4,"softmax_scale":0.5}}"#,
            None,
        )
        .unwrap();
        assert_eq!(m.header.block.norm, NormKind::LayerNormNoBias);
        assert_eq!(m.header.block.attn_scale, 0.5);
        assert_eq!(m.header.hidden_dim, 192);
        // transformers ignores alibi_bias_max: the slopes are those of 8
        let want: Vec<f32> = [2.0, 4.0, 6.0, 8.0, 1.0, 3.0]
            .iter()
            .map(|e: &f64| (0.5f64).powf(*e) as f32)
            .collect();
        assert_eq!(m.computed[0].1, want);
        assert!(
            m.warnings[0].contains("alibi_bias_max is 4"),
            "{:?}",
            m.warnings
        );

        let j = spec(
            r#"{"model_type":"gptj","n_embd":64,"n_head":4,"n_layer":1,"n_positions":16,"vocab_size":50,"rotary_dim":6}"#,
            None,
        )
        .unwrap();
        assert_eq!(j.header.rotary_dim, 6);
        assert!(j.header.has(image::FLAG_ROPE_INTERLEAVED));
        assert_eq!(j.header.block.residual, Residual::ParallelShared);

        let n = spec(
            r#"{"model_type":"gpt_neox","hidden_size":64,"num_attention_heads":4,"num_hidden_layers":1,
                "intermediate_size":96,"max_position_embeddings":16,"vocab_size":50,"use_parallel_residual":false,
                "attention_bias":false,"hidden_act":"gelu_new"}"#,
            None,
        )
        .unwrap();
        assert_eq!(n.header.rotary_dim, 4); // rotary_pct default 0.25 of 16
        assert_eq!(n.header.block.residual, Residual::Sequential);
        assert_eq!(n.header.block.ffn, FfnKind::GeluTanh);
        assert!(!n.header.has(image::FLAG_QKV_BIAS) && !n.header.has(image::FLAG_O_BIAS));

        let e = spec(
            r#"{"model_type":"phi","hidden_size":64,"num_attention_heads":4,"num_hidden_layers":1,
                "intermediate_size":96,"max_position_embeddings":16,"vocab_size":50,"qk_layernorm":true}"#,
            None,
        )
        .unwrap_err();
        assert!(e.message().contains("qk_layernorm"), "{e}");
        let e = spec(r#"{"model_type":"t5"}"#, None).unwrap_err();
        assert!(
            e.message().contains("model_type t5 cannot be converted"),
            "{e}"
        );
    }

    #[test]
    fn fused_sources() {
        let n = spec(
            r#"{"model_type":"gpt_neox","hidden_size":64,"num_attention_heads":4,"num_hidden_layers":1,
                "intermediate_size":96,"max_position_embeddings":16,"vocab_size":50}"#,
            None,
        )
        .unwrap();
        assert_eq!(
            n.source(TensorKind::Bk, 0).unwrap(),
            Source::Heads {
                name: "gpt_neox.layers.0.attention.query_key_value.bias".into(),
                shape: vec![192],
                heads: 4,
                head_dim: 16,
                part: 1
            }
        );
        let g = spec(
            r#"{"model_type":"gpt2","n_embd":64,"n_head":4,"n_layer":1,"n_positions":32,"vocab_size":100}"#,
            None,
        )
        .unwrap();
        assert_eq!(
            g.source(TensorKind::Wv, 0).unwrap(),
            Source::Conv1d {
                name: "transformer.h.0.attn.c_attn.weight".into(),
                inp: 64,
                out: 192,
                rows: 128..192
            }
        );
    }

    #[test]
    fn absurd_dimensions_are_errors() {
        for (text, cause) in [
            (
                r#"{"model_type":"llama","hidden_size":64,"intermediate_size":96,"num_hidden_layers":1,
                    "num_attention_heads":8,"vocab_size":50,"max_position_embeddings":64,"head_dim":1000000000}"#,
                "head_dim 1000000000 is too large (an image holds at most 1048576)",
            ),
            (
                r#"{"model_type":"xglm","d_model":1000000000000,"attention_heads":2,"num_layers":1,"ffn_dim":32,
                    "max_position_embeddings":8,"vocab_size":50}"#,
                "hidden size 1000000000000 is too large (an image holds at most 1048576)",
            ),
            (
                r#"{"model_type":"xglm","d_model":1048576,"attention_heads":2,"num_layers":1,"ffn_dim":32,
                    "max_position_embeddings":2048,"vocab_size":50}"#,
                "position table of 2050 rows × 1048576 is too large",
            ),
            (
                r#"{"model_type":"gpt2","n_embd":1000000000000,"n_head":4,"n_layer":2,"n_positions":32,"vocab_size":100}"#,
                "hidden size 1000000000000 is too large",
            ),
            (
                r#"{"model_type":"llama","hidden_size":64,"intermediate_size":96,"num_hidden_layers":100000,
                    "num_attention_heads":8,"vocab_size":50,"max_position_embeddings":64}"#,
                "num_hidden_layers 100000 is too large (an image holds at most 1024)",
            ),
        ] {
            let e = spec(text, None).unwrap_err();
            assert!(e.message().contains(cause), "{e}");
        }
    }
}
