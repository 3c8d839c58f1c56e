//! The RoPE parameters of a `config.json` ([`HfConfig::rope`]), read from both
//! spellings Hugging Face has used: the current one (`rope_parameters` with
//! `rope_type`, `rope_theta` and `partial_rotary_factor` inside) and the legacy
//! one (`rope_scaling` with `type` or `rope_type`; `rope_theta`,
//! `partial_rotary_factor`, `original_max_position_embeddings` at the top level;
//! GPT-NeoX's `rotary_pct`/`rotary_emb_base`, GPT-J's `rotary_dim`), following
//! `standardize_rope_params` and `modeling_rope_utils.py` of transformers 5.

use microformer::pos::rope_scaling::{
    Llama3Params, LongRopeParams, RopeConfig, RopeScaling, YarnParams,
};
use serde::Deserialize;

use super::keys::{
    count, number, positive, required, required_any, Count, Dict, Flag, Maybe, Name, Number,
    Numbers,
};
use super::model::{HfConfig, ModelType};
use crate::error::{bail, Result};

/// How pairs of dimensions are rotated by RoPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairLayout {
    /// Pairs `(2i, 2i+1)`: GPT-J, Meta, llama2.c.
    Interleaved,
    /// Pairs `(i, i + rotary_dim/2)`: GPT-NeoX, Hugging Face Llama.
    HalfSplit,
}

impl PairLayout {
    /// `"interleaved"` or `"half_split"`.
    pub fn name(self) -> &'static str {
        match self {
            PairLayout::Interleaved => "interleaved",
            PairLayout::HalfSplit => "half_split",
        }
    }
}

/// A RoPE scaling rule with owned parameters (LongRoPE factor lists included).
#[derive(Debug, Clone, PartialEq)]
pub enum Scaling {
    /// No scaling.
    Default,
    /// Position interpolation: `inv_freq / factor`.
    Linear {
        /// The factor.
        factor: f64,
    },
    /// Dynamic NTK.
    Dynamic {
        /// The factor.
        factor: f64,
    },
    /// YaRN.
    Yarn(Yarn),
    /// Llama 3.
    Llama3(Llama3),
    /// LongRoPE (Phi-3).
    LongRope {
        /// Per-frequency factors used up to `original_max_position_embeddings`.
        short_factor: Vec<f64>,
        /// Per-frequency factors used beyond it.
        long_factor: Vec<f64>,
        /// The pre-training context length.
        original_max_position_embeddings: usize,
        /// Explicit `factor`, if the config gives one.
        factor: Option<f64>,
        /// Explicit `attention_factor`, if the config gives one.
        attention_factor: Option<f64>,
    },
}

impl Scaling {
    /// The Hugging Face `rope_type` name.
    pub fn name(&self) -> &'static str {
        match self {
            Scaling::Default => "default",
            Scaling::Linear { .. } => "linear",
            Scaling::Dynamic { .. } => "dynamic",
            Scaling::Yarn(_) => "yarn",
            Scaling::Llama3(_) => "llama3",
            Scaling::LongRope { .. } => "longrope",
        }
    }
}

/// YaRN parameters (as [`YarnParams`], owned here so the spec stays plain data).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Yarn {
    /// Scaling factor.
    pub factor: f64,
    /// Pre-training context length.
    pub original_max_position_embeddings: usize,
    /// `beta_fast` (default 32).
    pub beta_fast: f64,
    /// `beta_slow` (default 1).
    pub beta_slow: f64,
    /// `mscale`.
    pub mscale: Option<f64>,
    /// `mscale_all_dim`.
    pub mscale_all_dim: Option<f64>,
    /// Explicit attention factor.
    pub attention_factor: Option<f64>,
    /// Round the correction range to integers (default true).
    pub truncate: bool,
}

/// Llama 3 parameters (as [`Llama3Params`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3 {
    /// Scaling factor.
    pub factor: f64,
    /// `low_freq_factor`.
    pub low_freq_factor: f64,
    /// `high_freq_factor`.
    pub high_freq_factor: f64,
    /// Pre-training context length.
    pub original_max_position_embeddings: usize,
}

/// Everything needed to build RoPE tables for one model.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeSpec {
    /// Base `θ`.
    pub theta: f64,
    /// Head dimension.
    pub head_dim: usize,
    /// Rotary dimension (`<= head_dim`, even).
    pub rotary_dim: usize,
    /// `max_position_embeddings` (GPT-J: `n_positions`).
    pub max_position_embeddings: usize,
    /// Pair layout.
    pub layout: PairLayout,
    /// Scaling rule.
    pub scaling: Scaling,
}

impl RopeSpec {
    /// The library configuration borrowing this spec.
    pub fn config(&self) -> RopeConfig<'_> {
        let scaling = match &self.scaling {
            Scaling::Default => RopeScaling::Default,
            Scaling::Linear { factor } => RopeScaling::Linear { factor: *factor },
            Scaling::Dynamic { factor } => RopeScaling::Dynamic { factor: *factor },
            Scaling::Yarn(y) => {
                let mut p = YarnParams::new(y.factor, y.original_max_position_embeddings);
                p.beta_fast = y.beta_fast;
                p.beta_slow = y.beta_slow;
                p.mscale = y.mscale;
                p.mscale_all_dim = y.mscale_all_dim;
                p.attention_factor = y.attention_factor;
                p.truncate = y.truncate;
                RopeScaling::Yarn(p)
            }
            Scaling::Llama3(l) => RopeScaling::Llama3(Llama3Params {
                factor: l.factor,
                low_freq_factor: l.low_freq_factor,
                high_freq_factor: l.high_freq_factor,
                original_max_position_embeddings: l.original_max_position_embeddings,
            }),
            Scaling::LongRope {
                short_factor,
                long_factor,
                original_max_position_embeddings,
                factor,
                attention_factor,
            } => RopeScaling::LongRope(LongRopeParams {
                short_factor,
                long_factor,
                original_max_position_embeddings: *original_max_position_embeddings,
                factor: *factor,
                attention_factor: *attention_factor,
            }),
        };
        RopeConfig {
            theta: self.theta,
            rotary_dim: self.rotary_dim,
            max_position_embeddings: self.max_position_embeddings,
            scaling,
        }
    }
}

/// The top-level keys the RoPE parameters come from.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RopeKeys {
    head_dim: Option<Count>,
    hidden_size: Option<Count>,
    num_attention_heads: Option<Count>,
    max_position_embeddings: Option<Count>,
    /// GPT-J's names.
    n_embd: Option<Count>,
    n_head: Option<Count>,
    n_positions: Option<Count>,
    rotary_dim: Maybe<Count>,
    /// The current dictionary, and its legacy name.
    rope_parameters: Option<Dict<RopeDict>>,
    rope_scaling: Option<Dict<RopeDict>>,
    /// Legacy top-level keys.
    rope_theta: Option<Number>,
    partial_rotary_factor: Option<Number>,
    original_max_position_embeddings: Option<Count>,
    /// GPT-NeoX's legacy names.
    rotary_pct: Option<Number>,
    rotary_emb_base: Option<Number>,
}

/// `rope_parameters` (or the legacy `rope_scaling`): the rule and its parameters.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct RopeDict {
    rope_type: Option<Name>,
    /// The legacy name of `rope_type`.
    #[serde(rename = "type")]
    legacy_type: Option<Name>,
    rope_theta: Option<Number>,
    partial_rotary_factor: Option<Number>,
    original_max_position_embeddings: Option<Count>,
    factor: Option<Number>,
    attention_factor: Option<Number>,
    /// YaRN.
    beta_fast: Option<Number>,
    beta_slow: Option<Number>,
    mscale: Option<Number>,
    mscale_all_dim: Option<Number>,
    truncate: Option<Flag>,
    /// Llama 3.
    low_freq_factor: Option<Number>,
    high_freq_factor: Option<Number>,
    /// LongRoPE.
    short_factor: Option<Numbers>,
    long_factor: Option<Numbers>,
}

impl HfConfig {
    /// The RoPE parameters (for the RoPE model types).
    ///
    /// Errors name the key: missing or malformed values, a zero head count or
    /// head dimension, a rotary dimension that is 0, odd or beyond the head, an
    /// unknown rope type, scaling factors that are not finite and > 0, LongRoPE
    /// factor lists of the wrong length.
    pub fn rope(&self) -> Result<RopeSpec> {
        let mut k: RopeKeys = self.view()?;
        let mt = self.model_type;
        let (head_dim, max_pos) = if mt == ModelType::GptJ {
            let embd = required_any(&[
                (count(k.n_embd), "n_embd"),
                (count(k.hidden_size), "hidden_size"),
            ])?;
            let heads = required_any(&[
                (count(k.n_head), "n_head"),
                (count(k.num_attention_heads), "num_attention_heads"),
            ])?;
            if heads == 0 {
                bail!("n_head is 0: a model needs at least one attention head");
            }
            let max_pos = required_any(&[
                (count(k.n_positions), "n_positions"),
                (count(k.max_position_embeddings), "max_position_embeddings"),
            ])?;
            (embd / heads, max_pos)
        } else {
            let head_dim = match count(k.head_dim) {
                Some(d) => d,
                None => {
                    let hidden = required(count(k.hidden_size), "", "hidden_size")?;
                    let heads = required(count(k.num_attention_heads), "", "num_attention_heads")?;
                    if heads == 0 {
                        bail!(
                            "num_attention_heads is 0: a model needs at least one attention head"
                        );
                    }
                    hidden / heads
                }
            };
            let max_pos = required(
                count(k.max_position_embeddings),
                "",
                "max_position_embeddings",
            )?;
            (head_dim, max_pos)
        };
        if head_dim == 0 {
            bail!("head dimension is 0");
        }

        // The rope dictionary: current name first, legacy second.
        let (d, ctx) = match (k.rope_parameters.take(), k.rope_scaling.take()) {
            (Some(Dict(d)), _) => (d, "rope_parameters"),
            (None, Some(Dict(d))) => (d, "rope_scaling"),
            (None, None) => (RopeDict::default(), "rope_parameters"),
        };
        let type_name = d
            .rope_type
            .as_ref()
            .or(d.legacy_type.as_ref())
            .map_or("default", |n| n.0.as_str());

        // θ: in the dict, at the top level, GPT-NeoX's legacy name, or 10000.
        let theta = match number(d.rope_theta).or(number(k.rope_theta)) {
            Some(t) => t,
            None if mt == ModelType::GptNeoX => number(k.rotary_emb_base).unwrap_or(10000.0),
            None => 10000.0,
        };
        if !(theta.is_finite() && theta > 1.0) {
            bail!("rope_theta must be a finite number > 1, got {theta}");
        }

        // Rotary dimension.
        let rotary_dim = if mt == ModelType::GptJ {
            match k.rotary_dim {
                // GPTJConfig's default when the key is absent; null rotates whole heads.
                Maybe::Absent => 64,
                Maybe::Null => head_dim,
                Maybe::Value(Count(r)) => r,
            }
        } else {
            let partial = number(d.partial_rotary_factor).or(number(k.partial_rotary_factor));
            let (factor, key) = match partial {
                Some(f) => (Some(f), "partial_rotary_factor"),
                None if mt == ModelType::GptNeoX => {
                    (Some(number(k.rotary_pct).unwrap_or(0.25)), "rotary_pct")
                }
                None if mt == ModelType::Phi => (Some(0.5), "partial_rotary_factor"),
                None => (None, ""),
            };
            match factor {
                None => head_dim,
                Some(f) => {
                    if !(f.is_finite() && f > 0.0 && f <= 1.0) {
                        bail!("{key} must be in (0, 1], got {f}");
                    }
                    // Python's int(head_dim * f): truncation toward zero.
                    (head_dim as f64 * f) as usize
                }
            }
        };
        if rotary_dim == 0 {
            bail!("rotary dimension is 0 (head_dim {head_dim})");
        }
        if rotary_dim % 2 != 0 {
            bail!("rotary dimension {rotary_dim} is odd (head_dim {head_dim}): RoPE rotates pairs");
        }
        if rotary_dim > head_dim {
            bail!("rotary dimension {rotary_dim} exceeds head dimension {head_dim}");
        }

        let scaling = scaling(&d, ctx, type_name, &k, max_pos, rotary_dim)?;
        Ok(RopeSpec {
            theta,
            head_dim,
            rotary_dim,
            max_position_embeddings: max_pos,
            layout: if mt == ModelType::GptJ {
                PairLayout::Interleaved
            } else {
                PairLayout::HalfSplit
            },
            scaling,
        })
    }
}

/// The scaling rule `type_name` of the dictionary `d` (named `ctx`).
fn scaling(
    d: &RopeDict,
    ctx: &str,
    type_name: &str,
    k: &RopeKeys,
    max_pos: usize,
    rotary_dim: usize,
) -> Result<Scaling> {
    // original_max_position_embeddings: top level has priority (Phi-3), then the dict.
    let original_max = count(k.original_max_position_embeddings)
        .or(count(d.original_max_position_embeddings))
        .unwrap_or(max_pos);
    let factor_req =
        || -> Result<f64> { positive(required(number(d.factor), ctx, "factor")?, ctx, "factor") };
    let factor_opt = || -> Result<Option<f64>> {
        number(d.factor)
            .map(|f| positive(f, ctx, "factor"))
            .transpose()
    };
    Ok(match type_name {
        "default" => Scaling::Default,
        "linear" => Scaling::Linear {
            factor: factor_req()?,
        },
        "dynamic" => Scaling::Dynamic {
            factor: factor_req()?,
        },
        "yarn" => {
            if original_max == 0 {
                bail!("original_max_position_embeddings is 0");
            }
            let factor = match factor_opt()? {
                Some(f) => f,
                None => positive(max_pos as f64 / original_max as f64, ctx, "factor")?,
            };
            Scaling::Yarn(Yarn {
                factor,
                original_max_position_embeddings: original_max,
                // HF: `get("beta_fast") or 32`: absent, null or 0 keep the default.
                beta_fast: number(d.beta_fast).filter(|b| *b != 0.0).unwrap_or(32.0),
                beta_slow: number(d.beta_slow).filter(|b| *b != 0.0).unwrap_or(1.0),
                mscale: number(d.mscale),
                mscale_all_dim: number(d.mscale_all_dim),
                attention_factor: number(d.attention_factor),
                truncate: d.truncate.is_none_or(|t| t.0),
            })
        }
        "llama3" => Scaling::Llama3(Llama3 {
            factor: factor_req()?,
            low_freq_factor: required(number(d.low_freq_factor), ctx, "low_freq_factor")?,
            high_freq_factor: required(number(d.high_freq_factor), ctx, "high_freq_factor")?,
            original_max_position_embeddings: original_max,
        }),
        "longrope" | "su" => {
            let short_factor = required(d.short_factor.clone(), ctx, "short_factor")?.0;
            let long_factor = required(d.long_factor.clone(), ctx, "long_factor")?.0;
            let pairs = rotary_dim / 2;
            for (name, list) in [("short_factor", &short_factor), ("long_factor", &long_factor)] {
                if list.len() != pairs {
                    bail!(
                        "{ctx}.{name} has {} entries, rotary dimension {rotary_dim} needs {pairs}",
                        list.len()
                    );
                }
            }
            Scaling::LongRope {
                short_factor,
                long_factor,
                original_max_position_embeddings: original_max,
                factor: factor_opt()?,
                attention_factor: number(d.attention_factor),
            }
        }
        other => bail!(
            "unknown rope type \"{other}\" in {ctx} (known: default, linear, dynamic, yarn, llama3, longrope)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Result<RopeSpec> {
        HfConfig::parse(text)?.rope()
    }

    #[test]
    fn legacy_and_current_rope_keys_agree() {
        let current = spec(
            r#"{"model_type":"llama","hidden_size":64,"num_attention_heads":8,"max_position_embeddings":64,
                "rope_parameters":{"rope_type":"linear","rope_theta":5000.0,"factor":2.0}}"#,
        )
        .unwrap();
        let legacy = spec(
            r#"{"model_type":"llama","hidden_size":64,"num_attention_heads":8,"max_position_embeddings":64,
                "rope_theta":5000.0,"rope_scaling":{"type":"linear","factor":2.0}}"#,
        )
        .unwrap();
        assert_eq!(current, legacy);
        assert_eq!(current.rotary_dim, 8);
        assert_eq!(current.theta, 5000.0);
        assert_eq!(current.scaling, Scaling::Linear { factor: 2.0 });
    }

    #[test]
    fn partial_rotary_sources() {
        let neox = spec(
            r#"{"model_type":"gpt_neox","hidden_size":64,"num_attention_heads":4,"max_position_embeddings":64,
                "rotary_pct":0.25,"rotary_emb_base":20000}"#,
        )
        .unwrap();
        assert_eq!((neox.rotary_dim, neox.theta), (4, 20000.0));
        let gptj =
            spec(r#"{"model_type":"gptj","n_embd":64,"n_head":4,"n_positions":32,"rotary_dim":6}"#)
                .unwrap();
        assert_eq!(
            (gptj.head_dim, gptj.rotary_dim, gptj.layout, gptj.theta),
            (16, 6, PairLayout::Interleaved, 10000.0)
        );
        // GPTJConfig: rotary_dim 64 when absent, whole heads when null
        let gptj =
            spec(r#"{"model_type":"gptj","n_embd":512,"n_head":4,"n_positions":32}"#).unwrap();
        assert_eq!((gptj.head_dim, gptj.rotary_dim), (128, 64));
        let gptj = spec(
            r#"{"model_type":"gptj","n_embd":64,"n_head":4,"n_positions":32,"rotary_dim":null}"#,
        )
        .unwrap();
        assert_eq!(gptj.rotary_dim, 16);
        let phi = spec(
            r#"{"model_type":"phi","hidden_size":80,"num_attention_heads":2,"max_position_embeddings":64,
                "partial_rotary_factor":0.4}"#,
        )
        .unwrap();
        assert_eq!(phi.rotary_dim, 16);
    }

    #[test]
    fn errors_name_their_cause() {
        let e = HfConfig::parse("{").unwrap_err();
        assert!(e.message().contains("invalid JSON"), "{e}");
        let e = HfConfig::parse(r#"{"model_type":"nope"}"#).unwrap_err();
        assert!(e.message().contains("unknown model_type"), "{e}");
        let e = spec(r#"{"model_type":"llama","hidden_size":64,"num_attention_heads":0,"max_position_embeddings":4}"#)
            .unwrap_err();
        assert!(e.message().contains("num_attention_heads is 0"), "{e}");
        let e = spec(r#"{"model_type":"llama","head_dim":6,"max_position_embeddings":4,"partial_rotary_factor":0.5}"#)
            .unwrap_err();
        assert!(e.message().contains("odd"), "{e}");
        let e = spec(r#"{"model_type":"llama","head_dim":8,"max_position_embeddings":4,"rope_scaling":{"type":"wobbly"}}"#)
            .unwrap_err();
        assert!(e.message().contains("unknown rope type"), "{e}");
    }
}
