//! Reads a Hugging Face `config.json` into typed structs.
//!
//! Only what microformer needs is read: the model type and the parameters of its
//! positional encoding. Both the current Hugging Face spelling (`rope_parameters`
//! with `rope_type`, `rope_theta` and `partial_rotary_factor` inside) and the
//! legacy one (`rope_scaling` with `type` or `rope_type`, `rope_theta`,
//! `partial_rotary_factor`, `original_max_position_embeddings` at the top level,
//! GPT-NeoX's `rotary_pct`/`rotary_emb_base`, GPT-J's `rotary_dim`) are accepted,
//! following `standardize_rope_params` and `modeling_rope_utils.py` of
//! transformers 5.
//!
//! Every missing or malformed key is a [`Error`](crate::error::Error) naming the key; nothing panics.

use std::path::Path;

use microformer::pos::alibi::AlibiRule;
use microformer::pos::rope_scaling::{
    Llama3Params, LongRopeParams, RopeConfig, RopeScaling, YarnParams,
};
use serde_json::{Map, Value};

use crate::error::{bail, Error, Result};

/// The model families microformer knows, by their `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelType {
    /// `llama`: RoPE, half-split pairs.
    Llama,
    /// `qwen2`: RoPE, half-split pairs.
    Qwen2,
    /// `mistral`: RoPE, half-split pairs.
    Mistral,
    /// `phi` (Phi-1/1.5/2): partial RoPE, half-split pairs.
    Phi,
    /// `phi3`: RoPE (LongRoPE for the long-context checkpoints), half-split pairs.
    Phi3,
    /// `gpt_neox`: partial RoPE (`rotary_pct`), half-split pairs.
    GptNeoX,
    /// `gptj`: partial RoPE (`rotary_dim`), interleaved pairs.
    GptJ,
    /// `bloom`: ALiBi, BLOOM slopes.
    Bloom,
    /// `mpt`: ALiBi, MPT slopes with `alibi_bias_max`.
    Mpt,
    /// `t5` / `mt5`: relative-position buckets.
    T5,
    /// `xglm`: sinusoidal, split layout (fairseq / tensor2tensor).
    Xglm,
    /// `distilbert`: sinusoidal (interleaved) when `sinusoidal_pos_embds` is true.
    DistilBert,
    /// `gpt2`: learned absolute positions (nothing to precompute).
    Gpt2,
}

impl ModelType {
    /// The type for a `model_type` string, if known.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "llama" => ModelType::Llama,
            "qwen2" => ModelType::Qwen2,
            "mistral" => ModelType::Mistral,
            "phi" => ModelType::Phi,
            "phi3" => ModelType::Phi3,
            "gpt_neox" => ModelType::GptNeoX,
            "gptj" => ModelType::GptJ,
            "bloom" => ModelType::Bloom,
            "mpt" => ModelType::Mpt,
            "t5" | "mt5" => ModelType::T5,
            "xglm" => ModelType::Xglm,
            "distilbert" => ModelType::DistilBert,
            "gpt2" => ModelType::Gpt2,
            _ => return None,
        })
    }

    /// The canonical `model_type` string.
    pub fn name(self) -> &'static str {
        match self {
            ModelType::Llama => "llama",
            ModelType::Qwen2 => "qwen2",
            ModelType::Mistral => "mistral",
            ModelType::Phi => "phi",
            ModelType::Phi3 => "phi3",
            ModelType::GptNeoX => "gpt_neox",
            ModelType::GptJ => "gptj",
            ModelType::Bloom => "bloom",
            ModelType::Mpt => "mpt",
            ModelType::T5 => "t5",
            ModelType::Xglm => "xglm",
            ModelType::DistilBert => "distilbert",
            ModelType::Gpt2 => "gpt2",
        }
    }

    /// All known names, for error messages.
    pub const NAMES: &'static str =
        "llama, qwen2, mistral, phi, phi3, gpt_neox, gptj, bloom, mpt, t5, mt5, xglm, distilbert, gpt2";
}

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

/// A parsed `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct HfConfig {
    /// The model family.
    pub model_type: ModelType,
    /// The JSON object, for keys not typed here.
    pub raw: Map<String, Value>,
}

/// XGLM's fixed offset: `XGLMSinusoidalPositionalEmbedding` builds
/// `num_positions + 2` rows (positions start at `padding_idx + 1 = 2`).
pub const XGLM_OFFSET: usize = 2;

impl HfConfig {
    /// Reads and parses a `config.json` file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| e.context(path.display()))
    }

    /// Parses the text of a `config.json`.
    pub fn parse(text: &str) -> Result<Self> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| Error::config(format!("invalid JSON: {e}")))?;
        let Value::Object(raw) = value else {
            bail!("config.json must hold a JSON object");
        };
        let name = match raw.get("model_type") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => bail!("key \"model_type\" must be a string"),
            None => bail!("missing key \"model_type\""),
        };
        let Some(model_type) = ModelType::from_name(&name) else {
            bail!(
                "unknown model_type \"{name}\" (known: {})",
                ModelType::NAMES
            );
        };
        Ok(HfConfig { model_type, raw })
    }

    /// The positional encoding of this model.
    pub fn position_scheme(&self) -> Result<PositionScheme> {
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
            ModelType::Gpt2 => PositionScheme::Learned {
                n_positions: req_usize(&self.raw, "n_positions", "")?,
            },
        })
    }

    /// The RoPE parameters (for the RoPE model types).
    pub fn rope(&self) -> Result<RopeSpec> {
        let raw = &self.raw;
        let mt = self.model_type;
        let (head_dim, max_pos) = if mt == ModelType::GptJ {
            let embd = req_usize_any(raw, &["n_embd", "hidden_size"])?;
            let heads = req_usize_any(raw, &["n_head", "num_attention_heads"])?;
            if heads == 0 {
                bail!("n_head is 0: a model needs at least one attention head");
            }
            (
                embd / heads,
                req_usize_any(raw, &["n_positions", "max_position_embeddings"])?,
            )
        } else {
            let head_dim = match opt_usize(raw, "head_dim", "")? {
                Some(d) => d,
                None => {
                    let hidden = req_usize(raw, "hidden_size", "")?;
                    let heads = req_usize(raw, "num_attention_heads", "")?;
                    if heads == 0 {
                        bail!(
                            "num_attention_heads is 0: a model needs at least one attention head"
                        );
                    }
                    hidden / heads
                }
            };
            (head_dim, req_usize(raw, "max_position_embeddings", "")?)
        };
        if head_dim == 0 {
            bail!("head dimension is 0");
        }

        // The rope dictionary: current name first, legacy second.
        let (dict, dict_name): (Option<&Map<String, Value>>, &str) =
            match (raw.get("rope_parameters"), raw.get("rope_scaling")) {
                (Some(Value::Object(m)), _) => (Some(m), "rope_parameters"),
                (Some(Value::Null) | None, Some(Value::Object(m))) => (Some(m), "rope_scaling"),
                (Some(Value::Null) | None, Some(Value::Null) | None) => (None, "rope_parameters"),
                (Some(Value::Null) | None, Some(_)) => {
                    bail!("key \"rope_scaling\" must be an object or null")
                }
                (Some(_), _) => bail!("key \"rope_parameters\" must be an object or null"),
            };
        let empty = Map::new();
        let d = dict.unwrap_or(&empty);
        let ctx = dict_name;

        let type_name = match (d.get("rope_type"), d.get("type")) {
            (Some(Value::String(s)), _) => s.as_str(),
            (Some(Value::Null) | None, Some(Value::String(s))) => s.as_str(),
            (Some(Value::Null) | None, Some(Value::Null) | None) => "default",
            _ => bail!("{ctx}.rope_type must be a string"),
        };

        // θ: in the dict, at the top level, GPT-NeoX's legacy name, or 10000.
        let theta = match opt_f64(d, "rope_theta", ctx)? {
            Some(t) => t,
            None => match opt_f64(raw, "rope_theta", "")? {
                Some(t) => t,
                None if mt == ModelType::GptNeoX => {
                    opt_f64(raw, "rotary_emb_base", "")?.unwrap_or(10000.0)
                }
                None => 10000.0,
            },
        };
        if !(theta.is_finite() && theta > 1.0) {
            bail!("rope_theta must be a finite number > 1, got {theta}");
        }

        // Rotary dimension.
        let rotary_dim = if mt == ModelType::GptJ {
            match raw.get("rotary_dim") {
                // GPTJConfig's default when the key is absent; null rotates whole heads.
                None => 64,
                Some(_) => opt_usize(raw, "rotary_dim", "")?.unwrap_or(head_dim),
            }
        } else {
            let (factor, key) = match opt_f64(d, "partial_rotary_factor", ctx)? {
                Some(f) => (Some(f), "partial_rotary_factor"),
                None => match opt_f64(raw, "partial_rotary_factor", "")? {
                    Some(f) => (Some(f), "partial_rotary_factor"),
                    None if mt == ModelType::GptNeoX => {
                        (opt_f64(raw, "rotary_pct", "")?.or(Some(0.25)), "rotary_pct")
                    }
                    None if mt == ModelType::Phi => (Some(0.5), "partial_rotary_factor"),
                    None => (None, ""),
                },
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

        // original_max_position_embeddings: top level has priority (Phi-3), then the dict.
        let original_max = || -> Result<usize> {
            Ok(
                match opt_usize(raw, "original_max_position_embeddings", "")? {
                    Some(v) => v,
                    None => {
                        opt_usize(d, "original_max_position_embeddings", ctx)?.unwrap_or(max_pos)
                    }
                },
            )
        };
        let factor_req = || -> Result<f64> { positive(req_f64(d, "factor", ctx)?, ctx, "factor") };
        let factor_opt = || -> Result<Option<f64>> {
            opt_f64(d, "factor", ctx)?
                .map(|f| positive(f, ctx, "factor"))
                .transpose()
        };

        let scaling = match type_name {
            "default" => Scaling::Default,
            "linear" => Scaling::Linear {
                factor: factor_req()?,
            },
            "dynamic" => Scaling::Dynamic {
                factor: factor_req()?,
            },
            "yarn" => {
                let omax = original_max()?;
                if omax == 0 {
                    bail!("original_max_position_embeddings is 0");
                }
                let factor = match factor_opt()? {
                    Some(f) => f,
                    None => positive(max_pos as f64 / omax as f64, ctx, "factor")?,
                };
                let mut p = Yarn {
                    factor,
                    original_max_position_embeddings: omax,
                    beta_fast: 32.0,
                    beta_slow: 1.0,
                    mscale: None,
                    mscale_all_dim: None,
                    attention_factor: None,
                    truncate: true,
                };
                // HF: `get("beta_fast") or 32`: absent, null or 0 keep the default.
                if let Some(b) = opt_f64(d, "beta_fast", ctx)?.filter(|b| *b != 0.0) {
                    p.beta_fast = b;
                }
                if let Some(b) = opt_f64(d, "beta_slow", ctx)?.filter(|b| *b != 0.0) {
                    p.beta_slow = b;
                }
                p.mscale = opt_f64(d, "mscale", ctx)?;
                p.mscale_all_dim = opt_f64(d, "mscale_all_dim", ctx)?;
                p.attention_factor = opt_f64(d, "attention_factor", ctx)?;
                if let Some(t) = opt_bool(d, "truncate", ctx)? {
                    p.truncate = t;
                }
                Scaling::Yarn(p)
            }
            "llama3" => Scaling::Llama3(Llama3 {
                factor: factor_req()?,
                low_freq_factor: req_f64(d, "low_freq_factor", ctx)?,
                high_freq_factor: req_f64(d, "high_freq_factor", ctx)?,
                original_max_position_embeddings: original_max()?,
            }),
            "longrope" | "su" => {
                let short_factor = req_f64_list(d, "short_factor", ctx)?;
                let long_factor = req_f64_list(d, "long_factor", ctx)?;
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
                    original_max_position_embeddings: original_max()?,
                    factor: factor_opt()?,
                    attention_factor: opt_f64(d, "attention_factor", ctx)?,
                }
            }
            other => bail!(
                "unknown rope type \"{other}\" in {ctx} (known: default, linear, dynamic, yarn, llama3, longrope)"
            ),
        };

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

    /// The ALiBi parameters (BLOOM, MPT).
    pub fn alibi(&self) -> Result<AlibiSpec> {
        let raw = &self.raw;
        match self.model_type {
            ModelType::Bloom => {
                let n_heads = req_usize_any(raw, &["n_head", "num_attention_heads"])?;
                if n_heads == 0 {
                    bail!("n_head is 0: a model needs at least one attention head");
                }
                Ok(AlibiSpec {
                    n_heads,
                    rule: AlibiRule::Bloom,
                })
            }
            ModelType::Mpt => {
                let n_heads = req_usize(raw, "n_heads", "")?;
                if n_heads == 0 {
                    bail!("n_heads is 0: a model needs at least one attention head");
                }
                let attn = match raw.get("attn_config") {
                    Some(Value::Object(m)) => Some(m),
                    None | Some(Value::Null) => None,
                    Some(_) => bail!("key \"attn_config\" must be an object"),
                };
                let mut bias_max = 8.0;
                if let Some(a) = attn {
                    if opt_bool(a, "alibi", "attn_config")? == Some(false) {
                        bail!("attn_config.alibi is false: this MPT model uses no ALiBi");
                    }
                    if let Some(b) = opt_f64(a, "alibi_bias_max", "attn_config")? {
                        bias_max = b;
                    }
                }
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
        let raw = &self.raw;
        let num_buckets = req_usize(raw, "relative_attention_num_buckets", "")?;
        let max_distance = opt_usize(raw, "relative_attention_max_distance", "")?.unwrap_or(128);
        Ok(T5Spec {
            num_buckets,
            max_distance,
        })
    }

    /// The sinusoidal parameters (XGLM, DistilBERT).
    pub fn sinusoidal(&self) -> Result<SinusoidalSpec> {
        let raw = &self.raw;
        match self.model_type {
            ModelType::Xglm => {
                let dim = req_usize(raw, "d_model", "")?;
                let max = req_usize(raw, "max_position_embeddings", "")?;
                let padding_idx = opt_usize(raw, "pad_token_id", "")?;
                Ok(SinusoidalSpec {
                    layout: SinusoidalLayout::Split,
                    dim,
                    max_position_embeddings: max,
                    padding_idx,
                    default_num_positions: max.saturating_add(XGLM_OFFSET),
                })
            }
            ModelType::DistilBert => {
                if opt_bool(raw, "sinusoidal_pos_embds", "")? != Some(true) {
                    bail!(
                        "sinusoidal_pos_embds is not true: this DistilBERT model learns its position embeddings (nothing to precompute)"
                    );
                }
                let dim = req_usize(raw, "dim", "")?;
                let max = req_usize(raw, "max_position_embeddings", "")?;
                Ok(SinusoidalSpec {
                    layout: SinusoidalLayout::Interleaved,
                    dim,
                    max_position_embeddings: max,
                    padding_idx: None,
                    default_num_positions: max,
                })
            }
            other => bail!(
                "model_type {} does not use sinusoidal embeddings",
                other.name()
            ),
        }
    }
}

/// The dimensions and conventions of a Llama-family checkpoint (llama, qwen2,
/// mistral, phi3): RMSNorm, SwiGLU, RoPE, grouped-query attention.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaDims {
    /// `hidden_size`.
    pub hidden_size: usize,
    /// `intermediate_size` (the SwiGLU width).
    pub intermediate_size: usize,
    /// `num_hidden_layers`.
    pub num_hidden_layers: usize,
    /// `num_attention_heads`.
    pub num_attention_heads: usize,
    /// `num_key_value_heads` (default: `num_attention_heads`).
    pub num_key_value_heads: usize,
    /// `head_dim` (default: `hidden_size / num_attention_heads`).
    pub head_dim: usize,
    /// `vocab_size`.
    pub vocab_size: usize,
    /// `max_position_embeddings`.
    pub max_position_embeddings: usize,
    /// `rms_norm_eps` (default: the model class's, 1e-6; Phi-3: 1e-5).
    pub rms_norm_eps: f64,
    /// `tie_word_embeddings` (default false, as every one of these classes).
    pub tie_word_embeddings: bool,
    /// Sliding attention window applied to every layer, if any (Mistral and
    /// Phi-3 `sliding_window`; Qwen2 when `use_sliding_window` covers all layers).
    pub sliding_window: Option<usize>,
    /// `bos_token_id`, if given.
    pub bos_token_id: Option<usize>,
    /// `eos_token_id` (the first one of a list), if given.
    pub eos_token_id: Option<usize>,
}

impl HfConfig {
    /// The dimensions of a Llama-family model (llama, qwen2, mistral, phi3).
    ///
    /// Errors name the key: missing or malformed values, zero dimensions, heads
    /// that do not divide, an activation other than SiLU, attention windows that
    /// differ between layers.
    pub fn llama_dims(&self) -> Result<LlamaDims> {
        let raw = &self.raw;
        let mt = self.model_type;
        if !matches!(
            mt,
            ModelType::Llama | ModelType::Qwen2 | ModelType::Mistral | ModelType::Phi3
        ) {
            bail!(
                "model_type {} is not a Llama-family model (supported: llama, qwen2, mistral, phi3)",
                mt.name()
            );
        }
        let hidden_size = req_usize(raw, "hidden_size", "")?;
        let intermediate_size = req_usize(raw, "intermediate_size", "")?;
        let num_hidden_layers = req_usize(raw, "num_hidden_layers", "")?;
        let num_attention_heads = req_usize(raw, "num_attention_heads", "")?;
        let num_key_value_heads =
            opt_usize(raw, "num_key_value_heads", "")?.unwrap_or(num_attention_heads);
        let vocab_size = req_usize(raw, "vocab_size", "")?;
        let max_position_embeddings = req_usize(raw, "max_position_embeddings", "")?;
        for (key, v) in [
            ("hidden_size", hidden_size),
            ("intermediate_size", intermediate_size),
            ("num_hidden_layers", num_hidden_layers),
            ("num_attention_heads", num_attention_heads),
            ("num_key_value_heads", num_key_value_heads),
            ("vocab_size", vocab_size),
            ("max_position_embeddings", max_position_embeddings),
        ] {
            if v == 0 {
                bail!("{key} is 0");
            }
        }
        if num_attention_heads % num_key_value_heads != 0 {
            bail!(
                "num_attention_heads {num_attention_heads} is not a multiple of num_key_value_heads {num_key_value_heads}"
            );
        }
        let head_dim = match opt_usize(raw, "head_dim", "")? {
            Some(d) => d,
            None => {
                if hidden_size % num_attention_heads != 0 {
                    bail!(
                        "hidden_size {hidden_size} is not a multiple of num_attention_heads {num_attention_heads} (and no head_dim is given)"
                    );
                }
                hidden_size / num_attention_heads
            }
        };
        if head_dim == 0 || head_dim % 2 != 0 {
            bail!("head_dim {head_dim} must be even and > 0");
        }
        let default_eps = if mt == ModelType::Phi3 { 1e-5 } else { 1e-6 };
        let rms_norm_eps = opt_f64(raw, "rms_norm_eps", "")?.unwrap_or(default_eps);
        if !(rms_norm_eps.is_finite() && rms_norm_eps >= 0.0) {
            bail!("rms_norm_eps must be a finite number >= 0, got {rms_norm_eps}");
        }
        let tie_word_embeddings = opt_bool(raw, "tie_word_embeddings", "")?.unwrap_or(false);
        match raw.get("hidden_act") {
            None | Some(Value::Null) => {}
            Some(Value::String(a)) if a == "silu" || a == "swish" => {}
            Some(v) => bail!("hidden_act {v} is not supported (microformer runs SwiGLU with silu)"),
        }
        for key in ["mlp_bias"] {
            if opt_bool(raw, key, "")? == Some(true) {
                bail!("{key} is true: feed-forward biases are not supported");
            }
        }
        let sliding_window = self.uniform_window(num_hidden_layers)?;
        let token = |key: &str| -> Result<Option<usize>> {
            match raw.get(key) {
                Some(Value::Array(a)) => match a.first() {
                    Some(v) => as_usize(v, "", key).map(Some),
                    None => Ok(None),
                },
                _ => opt_usize(raw, key, ""),
            }
        };
        Ok(LlamaDims {
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            vocab_size,
            max_position_embeddings,
            rms_norm_eps,
            tie_word_embeddings,
            sliding_window,
            bos_token_id: token("bos_token_id")?,
            eos_token_id: token("eos_token_id")?,
        })
    }

    /// The sliding window every layer uses (`None`: full attention), or an error
    /// when layers differ (`layer_types` mixing full and sliding attention).
    fn uniform_window(&self, n_layers: usize) -> Result<Option<usize>> {
        let raw = &self.raw;
        let mt = self.model_type;
        let window = match mt {
            ModelType::Llama => return Ok(None),
            ModelType::Qwen2 => {
                if opt_bool(raw, "use_sliding_window", "")? == Some(true) {
                    opt_usize(raw, "sliding_window", "")?
                } else {
                    None
                }
            }
            _ => opt_usize(raw, "sliding_window", "")?,
        };
        // Which layers slide: `layer_types` when given, else Qwen2's max_window_layers rule.
        let sliding_layers = match raw.get("layer_types") {
            Some(Value::Array(types)) => {
                if types.len() != n_layers {
                    bail!(
                        "layer_types has {} entries for {n_layers} layers",
                        types.len()
                    );
                }
                let mut n = 0;
                for t in types {
                    match t.as_str() {
                        Some("full_attention") => {}
                        Some("sliding_attention") => n += 1,
                        _ => bail!("layer_types entry {t} is not supported"),
                    }
                }
                n
            }
            None | Some(Value::Null) => {
                if window.is_none() {
                    0
                } else if mt == ModelType::Qwen2 {
                    let from = opt_usize(raw, "max_window_layers", "")?.unwrap_or(n_layers);
                    n_layers.saturating_sub(from)
                } else {
                    n_layers
                }
            }
            Some(v) => bail!("key \"layer_types\" must be a list, got {v}"),
        };
        match (sliding_layers, window) {
            (0, _) => Ok(None),
            (n, Some(w)) if n == n_layers => {
                if w == 0 {
                    bail!("sliding_window is 0");
                }
                Ok(Some(w))
            }
            (n, Some(_)) => bail!(
                "{n} of {n_layers} layers use a sliding window: layers with different attention windows are not supported"
            ),
            (_, None) => bail!("layer_types asks for sliding attention but sliding_window is not set"),
        }
    }
}

fn key_name(ctx: &str, key: &str) -> String {
    if ctx.is_empty() {
        format!("\"{key}\"")
    } else {
        format!("\"{ctx}.{key}\"")
    }
}

fn positive(v: f64, ctx: &str, key: &str) -> Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        bail!(
            "{} must be a finite number > 0, got {v}",
            key_name(ctx, key)
        )
    }
}

fn as_usize(v: &Value, ctx: &str, key: &str) -> Result<usize> {
    if let Some(u) = v.as_u64() {
        return usize::try_from(u)
            .map_err(|_| Error::config(format!("{} = {u} is too large", key_name(ctx, key))));
    }
    if let Some(f) = v.as_f64() {
        if f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f <= usize::MAX as f64 / 2.0 {
            return Ok(f as usize);
        }
    }
    bail!(
        "{} must be a non-negative integer, got {v}",
        key_name(ctx, key)
    )
}

/// An optional non-negative integer (`null` counts as absent).
pub fn opt_usize(m: &Map<String, Value>, key: &str, ctx: &str) -> Result<Option<usize>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => as_usize(v, ctx, key).map(Some),
    }
}

/// A required non-negative integer.
pub fn req_usize(m: &Map<String, Value>, key: &str, ctx: &str) -> Result<usize> {
    opt_usize(m, key, ctx)?
        .ok_or_else(|| Error::config(format!("missing key {}", key_name(ctx, key))))
}

/// A required non-negative integer under the first of several names.
fn req_usize_any(m: &Map<String, Value>, keys: &[&str]) -> Result<usize> {
    for k in keys {
        if let Some(v) = opt_usize(m, k, "")? {
            return Ok(v);
        }
    }
    let names: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    bail!("missing key {}", names.join(" or "));
}

/// An optional number (`null` counts as absent).
pub fn opt_f64(m: &Map<String, Value>, key: &str, ctx: &str) -> Result<Option<f64>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(f) => Ok(Some(f)),
            None => bail!("{} must be a number, got {v}", key_name(ctx, key)),
        },
    }
}

/// A required number.
pub fn req_f64(m: &Map<String, Value>, key: &str, ctx: &str) -> Result<f64> {
    opt_f64(m, key, ctx)?
        .ok_or_else(|| Error::config(format!("missing key {}", key_name(ctx, key))))
}

/// An optional boolean (`null` counts as absent).
pub fn opt_bool(m: &Map<String, Value>, key: &str, ctx: &str) -> Result<Option<bool>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => bail!("{} must be true or false, got {v}", key_name(ctx, key)),
    }
}

/// A required list of numbers.
pub fn req_f64_list(m: &Map<String, Value>, key: &str, ctx: &str) -> Result<Vec<f64>> {
    match m.get(key) {
        None | Some(Value::Null) => bail!("missing key {}", key_name(ctx, key)),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_f64().ok_or_else(|| {
                    Error::config(format!("{} must hold numbers, got {v}", key_name(ctx, key)))
                })
            })
            .collect(),
        Some(v) => bail!("{} must be a list of numbers, got {v}", key_name(ctx, key)),
    }
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

    fn dims(extra: &str) -> Result<LlamaDims> {
        HfConfig::parse(&format!(
            r#"{{"hidden_size":64,"intermediate_size":96,"num_hidden_layers":2,"num_attention_heads":8,
                "vocab_size":128,"max_position_embeddings":64{extra}}}"#
        ))?
        .llama_dims()
    }

    #[test]
    fn llama_dims_defaults_and_windows() {
        let d = dims(r#","model_type":"llama","sliding_window":16"#).unwrap();
        assert_eq!(
            (
                d.num_key_value_heads,
                d.head_dim,
                d.rms_norm_eps,
                d.tie_word_embeddings
            ),
            (8, 8, 1e-6, false)
        );
        assert_eq!(d.sliding_window, None); // llama has no window
        let d = dims(r#","model_type":"phi3","eos_token_id":[7,9],"bos_token_id":null"#).unwrap();
        assert_eq!(
            (d.rms_norm_eps, d.eos_token_id, d.bos_token_id),
            (1e-5, Some(7), None)
        );
        let d = dims(r#","model_type":"mistral","sliding_window":16"#).unwrap();
        assert_eq!(d.sliding_window, Some(16));
        let d = dims(r#","model_type":"mistral","sliding_window":null"#).unwrap();
        assert_eq!(d.sliding_window, None);
        // Qwen2: the window only with use_sliding_window, and only if every layer slides
        let d = dims(r#","model_type":"qwen2","sliding_window":16"#).unwrap();
        assert_eq!(d.sliding_window, None);
        let d = dims(r#","model_type":"qwen2","sliding_window":16,"use_sliding_window":true,"max_window_layers":0"#)
            .unwrap();
        assert_eq!(d.sliding_window, Some(16));
        let e = dims(r#","model_type":"qwen2","sliding_window":16,"use_sliding_window":true,"max_window_layers":1"#)
            .unwrap_err();
        assert!(
            e.message().contains("1 of 2 layers use a sliding window"),
            "{e}"
        );
        let e = dims(r#","model_type":"mistral","sliding_window":16,"layer_types":["full_attention","sliding_attention"]"#)
            .unwrap_err();
        assert!(e.message().contains("1 of 2 layers"), "{e}");
        let e = dims(r#","model_type":"gpt2""#).unwrap_err();
        assert!(e.message().contains("not a Llama-family model"), "{e}");
        let e = dims(r#","model_type":"llama","hidden_act":"gelu""#).unwrap_err();
        assert!(e.message().contains("hidden_act"), "{e}");
        let e = dims(r#","model_type":"llama","num_key_value_heads":3"#).unwrap_err();
        assert!(e.message().contains("not a multiple"), "{e}");
        let e = dims(r#","model_type":"llama","mlp_bias":true"#).unwrap_err();
        assert!(e.message().contains("mlp_bias"), "{e}");
    }
}
