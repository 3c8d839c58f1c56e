//! Context extension at conversion time (`microformer convert --rope-scaling
//! RULE:FACTOR`): a RoPE scaling rule applied to a model trained without one,
//! by writing the rule into the configuration as Hugging Face names it
//! (`rope_scaling = {rope_type, factor, original_max_position_embeddings}`), so
//! the tables come from the same code as a checkpoint that ships the rule.

use serde_json::json;

use super::config::keys::{count, Count};
use super::config::{HfConfig, PositionScheme, Scaling};
use crate::error::{bail, Result};

/// A RoPE scaling rule the converter can apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Position interpolation (Chen et al. 2023): every frequency divided by the factor.
    Linear,
    /// Dynamic NTK: θ raised for the image's context (Hugging Face's `dynamic`).
    Dynamic,
    /// YaRN (Peng et al. 2023), with Hugging Face's defaults (β_fast 32, β_slow 1).
    Yarn,
}

impl Rule {
    /// Hugging Face's `rope_type`.
    pub const fn name(self) -> &'static str {
        match self {
            Rule::Linear => "linear",
            Rule::Dynamic => "dynamic",
            Rule::Yarn => "yarn",
        }
    }
}

/// `--rope-scaling`: a rule and its factor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeScaling {
    /// The rule.
    pub rule: Rule,
    /// The factor (> 1: the context is extended by about this much).
    pub factor: f64,
}

impl RopeScaling {
    /// Parses `linear:F`, `dynamic:F` or `yarn:F` with a finite `F >= 1`.
    pub fn parse(text: &str) -> Result<RopeScaling> {
        let Some((rule, factor)) = text.split_once(':') else {
            bail!("--rope-scaling {text:?}: expected RULE:FACTOR (linear:4, dynamic:4, yarn:4)");
        };
        let rule = match rule {
            "linear" => Rule::Linear,
            "dynamic" => Rule::Dynamic,
            "yarn" => Rule::Yarn,
            other => bail!("--rope-scaling rule {other:?} is not one of linear, dynamic, yarn"),
        };
        let factor: f64 = match factor.parse() {
            Ok(f) => f,
            Err(_) => bail!("--rope-scaling factor {factor:?} is not a number"),
        };
        if !(factor.is_finite() && factor >= 1.0) {
            bail!("--rope-scaling factor must be a finite number >= 1, got {factor}");
        }
        Ok(RopeScaling { rule, factor })
    }

    /// The configuration with this rule written in. The original length is the
    /// checkpoint's `training_length` (microformer's own checkpoints), else its
    /// `max_position_embeddings`.
    ///
    /// Errors: the model does not use RoPE, or already names a scaling rule.
    pub fn apply(&self, cfg: &HfConfig) -> Result<HfConfig> {
        match cfg.position_scheme() {
            Ok(PositionScheme::Rope(spec)) if spec.scaling == Scaling::Default => {}
            Ok(PositionScheme::Rope(_)) => bail!(
                "--rope-scaling: this checkpoint already has a RoPE scaling rule (rope_scaling / rope_parameters)"
            ),
            _ => bail!(
                "--rope-scaling applies to RoPE models; this {} checkpoint does not use RoPE",
                cfg.model_type.name()
            ),
        }
        #[derive(serde::Deserialize, Default)]
        #[serde(default)]
        struct Lengths {
            training_length: Option<Count>,
            max_position_embeddings: Option<Count>,
        }
        let l: Lengths = cfg.view()?;
        let Some(original) = count(l.training_length).or(count(l.max_position_embeddings)) else {
            bail!("--rope-scaling needs training_length or max_position_embeddings in config.json");
        };
        Ok(cfg.with_key(
            "rope_scaling",
            json!({
                "rope_type": self.rule.name(),
                "factor": self.factor,
                "original_max_position_embeddings": original,
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_apply() {
        assert_eq!(
            RopeScaling::parse("yarn:4").unwrap(),
            RopeScaling {
                rule: Rule::Yarn,
                factor: 4.0
            }
        );
        for bad in ["yarn", "ntk:2", "linear:x", "linear:0.5", "dynamic:inf"] {
            assert!(RopeScaling::parse(bad).is_err(), "{bad}");
        }
        let cfg = HfConfig::parse(
            r#"{"model_type":"llama","hidden_size":64,"num_attention_heads":8,"max_position_embeddings":128}"#,
        )
        .unwrap();
        let s = RopeScaling::parse("linear:4").unwrap().apply(&cfg).unwrap();
        assert_eq!(s.rope().unwrap().scaling, Scaling::Linear { factor: 4.0 });
        let again = RopeScaling::parse("linear:2")
            .unwrap()
            .apply(&s)
            .unwrap_err();
        assert!(again.to_string().contains("already"), "{again}");
        let bloom = HfConfig::parse(r#"{"model_type":"bloom","n_head":4}"#).unwrap();
        let e = RopeScaling::parse("yarn:2")
            .unwrap()
            .apply(&bloom)
            .unwrap_err();
        assert!(e.to_string().contains("does not use RoPE"), "{e}");
    }
}
