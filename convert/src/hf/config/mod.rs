//! Reads a Hugging Face `config.json` into typed, serde-derived structs.
//!
//! Only what microformer needs is read: the model type ([`HfConfig::parse`]),
//! the parameters of its positional encoding ([`HfConfig::position_scheme`],
//! [`HfConfig::rope`]) and, for the conversion, each family's dimensions (in its
//! module of `hf`, through [`HfConfig::view`]). Each use deserializes
//! only the keys it reads, with the value types of [`keys`].
//!
//! Every missing or malformed key is a [`crate::error::Error`] naming the key; nothing
//! panics.
//!
//! - `model`: [`HfConfig`], [`ModelType`];
//! - [`keys`]: the value types and the error messages;
//! - `rope`: [`RopeSpec`], from `rope_parameters` or the legacy keys;
//! - `position`: [`PositionScheme`] (ALiBi, T5, sinusoidal, learned).

pub mod keys;
mod model;
mod position;
mod rope;

pub use model::{HfConfig, ModelType};
pub use position::{
    AlibiSpec, PositionScheme, SinusoidalLayout, SinusoidalSpec, T5Spec, XGLM_OFFSET,
};
pub use rope::{Llama3, PairLayout, RopeSpec, Scaling, Yarn};
