//! Hugging Face model directories (`config.json` + `model.safetensors`, or
//! shards with `model.safetensors.index.json`) into model images.
//!
//! - [`config`]: the typed reader of `config.json` (also what `microformer
//!   tables` reads);
//! - [`families`]: each family's conversion plan ([`families::Spec`]);
//! - [`import`]: reading the checkpoint and writing the image ([`convert()`]).

pub mod config;
pub mod families;
pub mod import;
mod shard;

pub use import::{convert, OnTensor, Options, Summary};
