//! Hugging Face model directories (`config.json` + `model.safetensors`, or
//! shards with `model.safetensors.index.json`) into model images.
//!
//! - [`config`]: the typed reader of `config.json` (also what `microformer
//!   tables` reads);
//! - [`families`]: [`families::plan`] picks a checkpoint's family and makes its
//!   conversion plan ([`spec::Spec`]), one module per family: [`llama`] (Llama,
//!   Qwen2, Mistral, Phi-3), [`gpt2`], [`xglm`], [`bloom`], [`mpt`], [`gptj`],
//!   [`neox`] (GPT-NeoX), [`phi`], and [`own`] (`microformer`: the project's own
//!   checkpoints);
//! - [`extend`]: `--rope-scaling`, a RoPE scaling rule written into the configuration;
//! - [`spec`]: the plan and what every family's plan is made of;
//! - [`rope_tables`]: RoPE tables computed as transformers computes them;
//! - `weights` and `shard`: the checkpoint's safetensors files;
//! - [`import`]: reading the checkpoint and writing the image ([`convert()`]).
//!
//! The modules form a chain without cycles: `import` → `families` → the family
//! modules → `spec` → `rope_tables`, `config`; `import` → `weights` → `shard`.

pub mod bloom;
pub mod config;
pub mod extend;
pub mod families;
pub mod gpt2;
pub mod gptj;
pub mod import;
pub mod llama;
pub mod mpt;
pub mod neox;
pub mod own;
pub mod phi;
pub mod rope_tables;
mod shard;
pub mod spec;
mod weights;
pub mod xglm;

pub use import::{convert, OnTensor, Options, Summary};
