//! A parsed `config.json` ([`HfConfig`]): its model family ([`ModelType`]) and
//! the typed views of its keys ([`HfConfig::view`]).

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::keys::{view, Maybe};
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
    /// `microformer`: the project's own checkpoints (`train/`), the Llama block
    /// with the position hook its `position` key names.
    Microformer,
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
            "microformer" => ModelType::Microformer,
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
            ModelType::Microformer => "microformer",
        }
    }

    /// All known names, for error messages.
    pub const NAMES: &'static str =
        "llama, qwen2, mistral, phi, phi3, gpt_neox, gptj, bloom, mpt, t5, mt5, xglm, distilbert, gpt2, microformer";
}

impl<'de> Deserialize<'de> for ModelType {
    /// A known `model_type` string.
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let name = match Value::deserialize(d)? {
            Value::String(s) => s,
            _ => return Err(D::Error::custom("key \"{key}\" must be a string")),
        };
        ModelType::from_name(&name).ok_or_else(|| {
            // `{key}` is the key's name, `model_type` (see `keys::view`).
            D::Error::custom(format!(
                "unknown {{key}} \"{name}\" (known: {})",
                ModelType::NAMES
            ))
        })
    }
}

/// The key every `config.json` has.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Head {
    model_type: Maybe<ModelType>,
}

/// A parsed `config.json`: its family, and the file for the typed views of the
/// keys each use reads ([`HfConfig::view`]: the RoPE parameters in
/// [`HfConfig::rope`], a family's dimensions in its module).
#[derive(Debug, Clone, PartialEq)]
pub struct HfConfig {
    /// The model family.
    pub model_type: ModelType,
    /// The parsed file (a JSON object).
    raw: Value,
}

impl HfConfig {
    /// Reads and parses a `config.json` file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| e.context(path.display()))
    }

    /// Parses the text of a `config.json`.
    ///
    /// Errors: invalid JSON, not an object, a `model_type` missing, not a string
    /// or not one of [`ModelType::NAMES`].
    pub fn parse(text: &str) -> Result<Self> {
        let raw: Value =
            serde_json::from_str(text).map_err(|e| Error::config(format!("invalid JSON: {e}")))?;
        if !raw.is_object() {
            bail!("config.json must hold a JSON object");
        }
        let head: Head = view(&raw)?;
        let model_type = match head.model_type {
            Maybe::Value(t) => t,
            Maybe::Null => bail!("key \"model_type\" must be a string"),
            Maybe::Absent => bail!("missing key \"model_type\""),
        };
        Ok(HfConfig { model_type, raw })
    }

    /// The keys a serde-derived struct `T` names (unknown keys are ignored),
    /// checked by their value types ([`super::keys`]).
    ///
    /// Errors ([`crate::error::ErrorKind::Config`]) name the malformed key with its path.
    pub fn view<T: DeserializeOwned>(&self) -> Result<T> {
        view(&self.raw)
    }

    /// The same configuration with key `key` set to `value` (added or replaced):
    /// how `convert` applies `--rope-scaling`, and how a family reads its RoPE
    /// parameters against another length than `max_position_embeddings`.
    pub fn with_key(&self, key: &str, value: Value) -> HfConfig {
        let mut raw = self.raw.clone();
        if let Some(o) = raw.as_object_mut() {
            o.insert(key.to_string(), value);
        }
        HfConfig {
            model_type: self.model_type,
            raw,
        }
    }

    /// Whether the configuration has key `key` with a non-null value.
    pub fn has_key(&self, key: &str) -> bool {
        self.raw.get(key).is_some_and(|v| !v.is_null())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_type_errors() {
        let e = |t: &str| HfConfig::parse(t).unwrap_err().message().to_string();
        assert!(e("{").contains("invalid JSON"));
        assert_eq!(e("[1]"), "config.json must hold a JSON object");
        assert_eq!(e("{}"), "missing key \"model_type\"");
        assert_eq!(
            e(r#"{"model_type":null}"#),
            "key \"model_type\" must be a string"
        );
        assert_eq!(
            e(r#"{"model_type":3}"#),
            "key \"model_type\" must be a string"
        );
        assert!(
            e(r#"{"model_type":"nope"}"#).starts_with("unknown model_type \"nope\" (known: llama")
        );
        let c = HfConfig::parse(r#"{"model_type":"mt5"}"#).unwrap();
        assert_eq!(c.model_type, ModelType::T5);
    }
}
