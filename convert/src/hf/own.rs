//! microformer's own checkpoints (`model_type: "microformer"`, written by the
//! trainer in `train/`): the Llama block (RMSNorm, SwiGLU, grouped-query
//! attention, Llama tensor names) with one of six position hooks, named by the
//! `position` key:
//!
//! | `position` | hook | tensors |
//! |---|---|---|
//! | `nope` | none (causal attention alone) | — |
//! | `sinusoidal` | table added to the embedding, interleaved layout ([`microformer::pos::sinusoidal::fill_interleaved`], computed here for every position of the image) | — |
//! | `learned` | table added to the embedding | `model.embed_positions.weight` `[rows][dim]` |
//! | `rope` | rotation, half-split pairs, `rope_theta` | — |
//! | `alibi` | score bias, BLOOM slopes | — |
//! | `t5` | score bias, causal T5 buckets ([`microformer::pos::t5`], the bucket table computed here), shared by every layer | `model.relative_attention_bias.weight` `[num_buckets][n_heads]` |
//!
//! `training_length` is the context the model was trained at (the image's
//! `train_context`, and the original length a RoPE scaling rule extends);
//! `max_position_embeddings` is the context it may run at, the default
//! `--context`.

use microformer::image::{self, PositionHook, T5Params, TensorKind};
use microformer::pos::alibi::AlibiRule;
use microformer::pos::sinusoidal;
use microformer::pos::t5::T5Buckets;
use serde::Deserialize;
use serde_json::Value;

use super::config::keys::{count, number, required, Count, Name, Number};
use super::config::HfConfig;
use super::llama;
use super::spec::{
    alibi_slopes, context, default_context, rotation, token, Dims, Layout, Source, Spec,
};
use crate::error::{bail, Result};
use crate::limits::{current_table_limit, table_entries};

/// The position hook of a microformer checkpoint (`position`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `nope`.
    NoPe,
    /// `sinusoidal`.
    Sinusoidal,
    /// `learned`.
    Learned,
    /// `rope`.
    Rope,
    /// `alibi`.
    Alibi,
    /// `t5`.
    T5,
}

impl Scheme {
    /// Every scheme, in the order the documentation lists them.
    pub const ALL: [Scheme; 6] = [
        Scheme::NoPe,
        Scheme::Sinusoidal,
        Scheme::Learned,
        Scheme::Rope,
        Scheme::Alibi,
        Scheme::T5,
    ];

    /// The `position` value.
    pub const fn name(self) -> &'static str {
        match self {
            Scheme::NoPe => "nope",
            Scheme::Sinusoidal => "sinusoidal",
            Scheme::Learned => "learned",
            Scheme::Rope => "rope",
            Scheme::Alibi => "alibi",
            Scheme::T5 => "t5",
        }
    }

    fn from_name(name: &str) -> Option<Scheme> {
        Scheme::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// The keys of a microformer `config.json` beyond the Llama ones.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct OwnKeys {
    position: Option<Name>,
    training_length: Option<Count>,
    rope_layout: Option<Name>,
    alibi_slopes: Option<Name>,
    sinusoidal_layout: Option<Name>,
    sinusoidal_base: Option<Number>,
    relative_attention_num_buckets: Option<Count>,
    relative_attention_max_distance: Option<Count>,
}

/// The learned table's name.
const POSITIONS: &str = "model.embed_positions.weight";
/// The T5 bias table's name.
const T5_BIAS: &str = "model.relative_attention_bias.weight";

/// The plan for a microformer `config.json`; `asked` is `--context`.
pub fn spec(cfg: &HfConfig, asked: Option<usize>) -> Result<Spec> {
    let d = llama::dims(cfg)?;
    let k: OwnKeys = cfg.view()?;
    let scheme = match &k.position {
        None => bail!("missing key \"position\""),
        Some(Name(n)) => Scheme::from_name(n).ok_or_else(|| {
            crate::error::Error::config(format!(
                "position \"{n}\" is not one of nope, sinusoidal, learned, rope, alibi, t5"
            ))
        })?,
    };
    let train = required(count(k.training_length), "", "training_length")?;
    if train == 0 {
        bail!("training_length is 0");
    }
    let ctx = context(asked, default_context(d.max_position_embeddings))?;
    if scheme == Scheme::Learned && ctx > d.max_position_embeddings {
        bail!(
            "--context {ctx} exceeds the {} learned positions of this checkpoint",
            d.max_position_embeddings
        );
    }
    let dims = Dims {
        dim: d.hidden_size,
        hidden: d.intermediate_size,
        layers: d.num_hidden_layers,
        heads: d.num_attention_heads,
        kv_heads: d.num_key_value_heads,
        head_dim: d.head_dim,
        vocab: d.vocab_size,
        train,
    };
    let mut warnings = Vec::new();
    let bos = token(
        Some(super::config::keys::TokenId(d.bos_token_id)),
        "bos_token_id",
        1,
        d.vocab_size,
        &mut warnings,
    );
    let eos = token(
        Some(super::config::keys::TokenId(d.eos_token_id)),
        "eos_token_id",
        2,
        d.vocab_size,
        &mut warnings,
    );
    let mut block = image::Block::LLAMA;
    let mut rotary_dim = 0;
    let mut computed = Vec::new();
    match scheme {
        Scheme::NoPe => block.position = PositionHook::None,
        Scheme::Learned => block.position = PositionHook::Table,
        Scheme::Sinusoidal => {
            for (key, v) in [("sinusoidal_layout", &k.sinusoidal_layout)] {
                if let Some(Name(n)) = v {
                    if n != "interleaved" {
                        bail!("{key} \"{n}\" is not supported (microformer checkpoints use interleaved)");
                    }
                }
            }
            if let Some(b) = number(k.sinusoidal_base) {
                if b != sinusoidal::BASE {
                    bail!("sinusoidal_base {b} is not supported (10000)");
                }
            }
            block.position = PositionHook::Table;
            let Some(entries) = table_entries(ctx, d.hidden_size) else {
                let limit = current_table_limit();
                bail!(
                    "the position table of {ctx} rows × {} is too large (at most {limit} entries here: give a smaller --context)",
                    d.hidden_size
                );
            };
            let mut table = vec![0f32; entries];
            sinusoidal::fill_interleaved(ctx, d.hidden_size, &mut table)
                .map_err(|e| crate::error::Error::config(format!("sinusoidal table: {e}")))?;
            computed.push((TensorKind::PosEmbedding, table));
        }
        Scheme::Rope => {
            if let Some(Name(n)) = &k.rope_layout {
                if n != "half" {
                    bail!("rope_layout \"{n}\" is not supported (half: pairs (i, i + head_dim/2))");
                }
            }
            // A scaling rule extends the training length, not the running context.
            let rope_cfg = cfg.with_key("max_position_embeddings", Value::from(train));
            let rope = rotation(&rope_cfg, d.head_dim, ctx)?;
            rotary_dim = rope.rotary_dim;
            computed.extend(rope.tables);
        }
        Scheme::Alibi => {
            if let Some(Name(n)) = &k.alibi_slopes {
                if n != "bloom" {
                    bail!("alibi_slopes \"{n}\" is not supported (bloom)");
                }
            }
            block.position = PositionHook::Alibi;
            computed.push((
                TensorKind::AlibiSlopes,
                alibi_slopes(AlibiRule::Bloom, d.num_attention_heads)?,
            ));
        }
        Scheme::T5 => {
            let nb = required(
                count(k.relative_attention_num_buckets),
                "",
                "relative_attention_num_buckets",
            )?;
            let md = count(k.relative_attention_max_distance).unwrap_or(128);
            let (Ok(num_buckets), Ok(max_distance)) = (u16::try_from(nb), u16::try_from(md)) else {
                bail!("relative_attention_num_buckets {nb} / max_distance {md} are too large");
            };
            let buckets = T5Buckets::new(false, nb, md).map_err(|e| {
                crate::error::Error::config(format!(
                    "relative_attention_num_buckets {nb}, relative_attention_max_distance {md}: {e}"
                ))
            })?;
            let mut table = vec![0u8; buckets.table_len()];
            buckets
                .fill_table(&mut table)
                .map_err(|e| crate::error::Error::config(format!("T5 buckets: {e}")))?;
            block.position = PositionHook::T5;
            block.t5 = T5Params {
                num_buckets,
                max_distance,
            };
            computed.push((
                TensorKind::T5Buckets,
                table.iter().map(|&b| f32::from(b)).collect(),
            ));
        }
    }
    let mut flags = 0;
    if d.tie_word_embeddings {
        flags |= image::FLAG_TIED_EMBEDDINGS;
    }
    let header = dims.header(&Layout {
        context: ctx,
        flags,
        rotary_dim,
        sliding_window: 0,
        norm_eps: d.rms_norm_eps,
        bos,
        eos,
        block,
    })?;
    Ok(Spec {
        model_type: "microformer",
        header,
        prefix: "model.",
        computed,
        warnings,
        head_names: &["lm_head.weight"],
        qkv_bias_probe: None,
        sources: source,
    })
}

/// Llama's tensor names, the learned table and the T5 bias table.
fn source(spec: &Spec, kind: TensorKind, layer: u16) -> Result<Source> {
    let h = &spec.header;
    match kind {
        TensorKind::PosEmbedding => Ok(Source::Rows {
            name: POSITIONS.into(),
            shape: vec![h.train_context as usize, h.dim as usize],
            rows: 0..h.seq_len as usize,
        }),
        TensorKind::T5Bias => Ok(Source::t(
            T5_BIAS.into(),
            &[h.block.t5.num_buckets as usize, h.n_heads as usize],
        )),
        _ => llama::source(spec, kind, layer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(position: &str, extra: &str, ctx: Option<usize>) -> Result<Spec> {
        let max = if position == "learned" { 128 } else { 1024 };
        let cfg = HfConfig::parse(&format!(
            r#"{{"model_type":"microformer","position":"{position}","hidden_size":64,"intermediate_size":192,
                "num_hidden_layers":5,"num_attention_heads":8,"num_key_value_heads":4,"vocab_size":512,
                "rms_norm_eps":1e-5,"tie_word_embeddings":true,"training_length":128,
                "max_position_embeddings":{max}{extra}}}"#
        ))?;
        spec(&cfg, ctx)
    }

    #[test]
    fn every_scheme_plans_its_hook() {
        let hooks = [
            ("nope", PositionHook::None),
            ("sinusoidal", PositionHook::Table),
            ("learned", PositionHook::Table),
            ("rope", PositionHook::Rope),
            ("alibi", PositionHook::Alibi),
            ("t5", PositionHook::T5),
        ];
        for (name, hook) in hooks {
            let extra = if name == "t5" {
                r#","relative_attention_num_buckets":32,"relative_attention_max_distance":128"#
            } else {
                ""
            };
            let s = plan(name, extra, None).unwrap();
            let h = s.header;
            assert_eq!(h.block.position, hook, "{name}");
            assert_eq!(h.train_context, 128, "{name}");
            assert_eq!(h.seq_len, if name == "learned" { 128 } else { 1024 });
            assert!(h.has(image::FLAG_TIED_EMBEDDINGS));
            assert_eq!(h.rotary_dim, if name == "rope" { 8 } else { 0 });
        }
        let t5 = plan(
            "t5",
            r#","relative_attention_num_buckets":32,"relative_attention_max_distance":128"#,
            None,
        )
        .unwrap();
        let table = &t5.computed[0].1;
        assert_eq!(table.len(), 129);
        // entry k is relative position k − 128: the last (distance 0) bucket 0,
        // distance 15 its own bucket, distance ≥ 128 the last bucket
        assert_eq!((table[128], table[128 - 15], table[0]), (0.0, 15.0, 31.0));
        let sin = plan("sinusoidal", "", Some(16)).unwrap();
        let t = &sin.computed[0].1;
        assert_eq!(t.len(), 16 * 64);
        assert_eq!(t[64 + 1], 1f64.cos() as f32); // position 1, column 1: cos(1·ω_0)
    }

    #[test]
    fn bad_keys_are_named() {
        let e = |pos: &str, extra: &str, ctx| plan(pos, extra, ctx).unwrap_err().to_string();
        assert!(e("sinus", "", None).contains("position \"sinus\""));
        assert!(e("learned", "", Some(512)).contains("exceeds the 128 learned positions"));
        assert!(e("t5", "", None).contains("relative_attention_num_buckets"));
        assert!(e(
            "t5",
            r#","relative_attention_num_buckets":32,"relative_attention_max_distance":8"#,
            None
        )
        .contains("max_distance 8"));
        assert!(e("rope", r#","rope_layout":"interleaved""#, None).contains("rope_layout"));
        assert!(e("alibi", r#","alibi_slopes":"mpt""#, None).contains("alibi_slopes"));
        let cfg = HfConfig::parse(
            r#"{"model_type":"microformer","position":"nope","hidden_size":64,"intermediate_size":192,
                "num_hidden_layers":1,"num_attention_heads":8,"vocab_size":512,"max_position_embeddings":64}"#,
        )
        .unwrap();
        assert!(spec(&cfg, None)
            .unwrap_err()
            .to_string()
            .contains("training_length"));
    }
}
