//! How a model encodes positions, with its parameters ([`HfConfig::position_scheme`]):
//! RoPE ([`super::rope`]), ALiBi, T5 buckets, sinusoidal or learned absolute
//! embeddings. `microformer tables` prints the tables these give.

use microformer::pos::alibi::AlibiRule;
use serde::Deserialize;

use super::keys::{count, required, required_any, Count, Dict, Flag, Maybe, Number};
use super::model::{HfConfig, ModelType};
use super::rope::RopeSpec;
use crate::error::{bail, Result};

/// ALiBi parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlibiSpec {
    /// Number of attention heads.
    pub n_heads: usize,
    /// Slope rule.
    pub rule: AlibiRule,
}

/// T5 relative-attention bucket parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct T5Spec {
    /// `relative_attention_num_buckets`.
    pub num_buckets: usize,
    /// `relative_attention_max_distance`.
    pub max_distance: usize,
}

/// Sinusoidal table layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinusoidalLayout {
    /// `[sin…, cos…]` (tensor2tensor, fairseq, XGLM).
    Split,
    /// `sin, cos, sin, cos…` ("Attention Is All You Need", DistilBERT).
    Interleaved,
}

impl SinusoidalLayout {
    /// `"split"` or `"interleaved"`.
    pub fn name(self) -> &'static str {
        match self {
            SinusoidalLayout::Split => "split",
            SinusoidalLayout::Interleaved => "interleaved",
        }
    }
}

/// Sinusoidal absolute-position parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinusoidalSpec {
    /// Table layout.
    pub layout: SinusoidalLayout,
    /// Embedding dimension.
    pub dim: usize,
    /// `max_position_embeddings`.
    pub max_position_embeddings: usize,
    /// Padding index whose row is zero (XGLM `pad_token_id`).
    pub padding_idx: Option<usize>,
    /// Rows the model itself builds (XGLM: `max_position_embeddings + 2`).
    pub default_num_positions: usize,
    /// The model builds its table in PyTorch float32 (XGLM's `get_embedding`: f32
    /// frequencies and angles), as [`microformer::pos::sinusoidal::fill_split_float32`]
    /// does and as the converter stores it in XGLM images; `false`: the exact table
    /// (f64 angles, one rounding), as DistilBERT (numpy float64) and microformer's own
    /// models build it.
    pub float32: bool,
}

/// How a model encodes positions, with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum PositionScheme {
    /// Rotary embeddings.
    Rope(RopeSpec),
    /// ALiBi score biases.
    Alibi(AlibiSpec),
    /// T5 relative-position buckets.
    T5(T5Spec),
    /// Sinusoidal absolute embeddings.
    Sinusoidal(SinusoidalSpec),
    /// Learned absolute embeddings (`n_positions` rows in the weights).
    Learned {
        /// Number of positions.
        n_positions: usize,
    },
}

/// XGLM's fixed offset: `XGLMSinusoidalPositionalEmbedding` builds
/// `num_positions + 2` rows (positions start at `padding_idx + 1 = 2`).
pub const XGLM_OFFSET: usize = 2;

/// BLOOM's ALiBi keys.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BloomAlibiKeys {
    n_head: Option<Count>,
    num_attention_heads: Option<Count>,
}

/// MPT's ALiBi keys.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MptAlibiKeys {
    n_heads: Option<Count>,
    attn_config: Option<Dict<MptAlibiConfig>>,
}

/// The ALiBi keys of MPT's `attn_config`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
struct MptAlibiConfig {
    alibi: Option<Flag>,
    alibi_bias_max: Option<Number>,
}

/// T5's relative-attention keys.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct T5Keys {
    relative_attention_num_buckets: Option<Count>,
    relative_attention_max_distance: Option<Count>,
}

/// XGLM's sinusoidal keys.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct XglmKeys {
    d_model: Option<Count>,
    max_position_embeddings: Option<Count>,
    /// `XGLMConfig`'s default is 1 when absent; `null` means no padding row.
    pad_token_id: Maybe<Count>,
}

/// DistilBERT's sinusoidal keys.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DistilBertKeys {
    dim: Option<Count>,
    max_position_embeddings: Option<Count>,
    sinusoidal_pos_embds: Option<Flag>,
}

/// A microformer checkpoint's position keys.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OwnKeys {
    position: Option<super::keys::Name>,
    hidden_size: Option<Count>,
    num_attention_heads: Option<Count>,
    max_position_embeddings: Option<Count>,
}

/// GPT-2's learned positions.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LearnedKeys {
    n_positions: Option<Count>,
}

impl HfConfig {
    /// The positional encoding of this model.
    ///
    /// An ALiBi model of more than [`crate::limits::MAX_DIM`] heads is refused (no image
    /// holds one, and `microformer tables` would print a slope for each).
    pub fn position_scheme(&self) -> Result<PositionScheme> {
        let scheme = self.any_position_scheme()?;
        if let PositionScheme::Alibi(a) = &scheme {
            if a.n_heads > crate::limits::MAX_DIM {
                bail!(
                    "{} attention heads: more than the {} an image may have",
                    a.n_heads,
                    crate::limits::MAX_DIM
                );
            }
        }
        Ok(scheme)
    }

    fn any_position_scheme(&self) -> Result<PositionScheme> {
        Ok(match self.model_type {
            ModelType::Llama
            | ModelType::Qwen2
            | ModelType::Mistral
            | ModelType::Phi
            | ModelType::Phi3
            | ModelType::GptNeoX
            | ModelType::GptJ => PositionScheme::Rope(self.rope()?),
            ModelType::Bloom | ModelType::Mpt => PositionScheme::Alibi(self.alibi()?),
            ModelType::T5 => PositionScheme::T5(self.t5()?),
            ModelType::Xglm | ModelType::DistilBert => {
                PositionScheme::Sinusoidal(self.sinusoidal()?)
            }
            ModelType::Gpt2 => {
                let k: LearnedKeys = self.view()?;
                PositionScheme::Learned {
                    n_positions: required(count(k.n_positions), "", "n_positions")?,
                }
            }
            ModelType::Microformer => self.own_scheme()?,
        })
    }

    /// A microformer checkpoint's scheme, from its `position` key.
    fn own_scheme(&self) -> Result<PositionScheme> {
        let k: OwnKeys = self.view()?;
        let max = required(
            count(k.max_position_embeddings),
            "",
            "max_position_embeddings",
        )?;
        Ok(match k.position.as_ref().map(|n| n.0.as_str()) {
            Some("rope") => PositionScheme::Rope(self.rope()?),
            Some("alibi") => PositionScheme::Alibi(AlibiSpec {
                n_heads: required(count(k.num_attention_heads), "", "num_attention_heads")?,
                rule: AlibiRule::Bloom,
            }),
            Some("t5") => PositionScheme::T5(self.t5()?),
            Some("sinusoidal") => PositionScheme::Sinusoidal(SinusoidalSpec {
                layout: SinusoidalLayout::Interleaved,
                dim: required(count(k.hidden_size), "", "hidden_size")?,
                max_position_embeddings: max,
                padding_idx: None,
                default_num_positions: max,
                float32: false,
            }),
            Some("learned") => PositionScheme::Learned { n_positions: max },
            Some("nope") => bail!("position \"nope\": this model has no position tables"),
            Some(other) => bail!("position \"{other}\" is not a microformer position scheme"),
            None => bail!("missing key \"position\""),
        })
    }

    /// The ALiBi parameters (BLOOM, MPT).
    pub fn alibi(&self) -> Result<AlibiSpec> {
        match self.model_type {
            ModelType::Bloom => {
                let k: BloomAlibiKeys = self.view()?;
                let n_heads = required_any(&[
                    (count(k.n_head), "n_head"),
                    (count(k.num_attention_heads), "num_attention_heads"),
                ])?;
                if n_heads == 0 {
                    bail!("n_head is 0: a model needs at least one attention head");
                }
                Ok(AlibiSpec {
                    n_heads,
                    rule: AlibiRule::Bloom,
                })
            }
            ModelType::Mpt => {
                let k: MptAlibiKeys = self.view()?;
                let n_heads = required(count(k.n_heads), "", "n_heads")?;
                if n_heads == 0 {
                    bail!("n_heads is 0: a model needs at least one attention head");
                }
                let attn = k.attn_config.map(|d| d.0).unwrap_or_default();
                if attn.alibi.is_some_and(|a| !a.0) {
                    bail!("attn_config.alibi is false: this MPT model uses no ALiBi");
                }
                let bias_max = attn.alibi_bias_max.map_or(8.0, |b| b.0);
                if !(bias_max.is_finite() && bias_max > 0.0) {
                    bail!("attn_config.alibi_bias_max must be a finite number > 0, got {bias_max}");
                }
                Ok(AlibiSpec {
                    n_heads,
                    rule: AlibiRule::Mpt {
                        alibi_bias_max: bias_max,
                    },
                })
            }
            other => bail!("model_type {} does not use ALiBi", other.name()),
        }
    }

    /// The T5 relative-attention bucket parameters.
    pub fn t5(&self) -> Result<T5Spec> {
        let k: T5Keys = self.view()?;
        Ok(T5Spec {
            num_buckets: required(
                count(k.relative_attention_num_buckets),
                "",
                "relative_attention_num_buckets",
            )?,
            max_distance: count(k.relative_attention_max_distance).unwrap_or(128),
        })
    }

    /// The sinusoidal parameters (XGLM, DistilBERT).
    pub fn sinusoidal(&self) -> Result<SinusoidalSpec> {
        match self.model_type {
            ModelType::Xglm => {
                let k: XglmKeys = self.view()?;
                let dim = required(count(k.d_model), "", "d_model")?;
                let max = required(
                    count(k.max_position_embeddings),
                    "",
                    "max_position_embeddings",
                )?;
                // As the converter reads it (`hf::xglm`): absent is XGLMConfig's 1.
                let padding_idx = match k.pad_token_id {
                    Maybe::Absent => Some(1),
                    Maybe::Null => None,
                    Maybe::Value(Count(p)) => Some(p),
                };
                Ok(SinusoidalSpec {
                    layout: SinusoidalLayout::Split,
                    dim,
                    max_position_embeddings: max,
                    padding_idx,
                    default_num_positions: max.saturating_add(XGLM_OFFSET),
                    float32: true,
                })
            }
            ModelType::DistilBert => {
                let k: DistilBertKeys = self.view()?;
                if k.sinusoidal_pos_embds != Some(Flag(true)) {
                    bail!(
                        "sinusoidal_pos_embds is not true: this DistilBERT model learns its position embeddings (nothing to precompute)"
                    );
                }
                let dim = required(count(k.dim), "", "dim")?;
                let max = required(
                    count(k.max_position_embeddings),
                    "",
                    "max_position_embeddings",
                )?;
                Ok(SinusoidalSpec {
                    layout: SinusoidalLayout::Interleaved,
                    dim,
                    max_position_embeddings: max,
                    padding_idx: None,
                    default_num_positions: max,
                    float32: false,
                })
            }
            other => bail!(
                "model_type {} does not use sinusoidal embeddings",
                other.name()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (`fuzz/`, target `hf`): a 400-byte config asked `microformer tables`
    /// for 4 777 777 ALiBi slopes (58 MB of output).
    #[test]
    fn alibi_head_counts_past_the_image_bound_are_refused() {
        let bloom = |heads: usize| {
            HfConfig::parse(&format!(r#"{{"model_type": "bloom", "n_head": {heads}}}"#))
                .unwrap()
                .position_scheme()
        };
        let own = |heads: usize| {
            HfConfig::parse(&format!(
                r#"{{"model_type": "microformer", "position": "alibi", "num_attention_heads": {heads}, "max_position_embeddings": 64}}"#
            ))
            .unwrap()
            .position_scheme()
        };
        for scheme in [bloom, own] {
            assert!(
                matches!(scheme(1 << 20), Ok(PositionScheme::Alibi(a)) if a.n_heads == 1 << 20)
            );
            let e = scheme(4_777_777).unwrap_err().to_string();
            assert!(e.contains("4777777 attention heads"), "{e}");
        }
    }
}
