//! # microformer-convert
//!
//! The host-side converters of microformer (`std`): checkpoints in, model images
//! (see [`microformer::image`]) out. One code path for every caller — the
//! `microformer convert` command and the boards' build scripts both call this
//! crate.
//!
//! - [`llama2c`]: llama2.c `.bin` checkpoints (legacy v0, v1 f32, v2 Q8_0), with
//!   the RoPE tables computed as `run.c` computes its angles; a heap-free core
//!   ([`llama2c::to_image`]) and the whole conversion in one call
//!   ([`llama2c::convert()`]).
//! - [`hf`]: Hugging Face model directories (`config.json` + `model.safetensors`,
//!   or shards) of the Llama, Qwen2, Mistral, Phi-3, GPT-2, XGLM, BLOOM, MPT,
//!   GPT-J, GPT-NeoX and Phi families ([`hf::convert()`]), and the typed reader of
//!   `config.json` that `microformer tables` shares ([`hf::config`]).
//!
//! - [`block_scales`]: an image's Q8 scales in block-float form too, for the
//!   integer step ([`block_scales::with_block_scales`]).
//!
//! Every failure is a typed error ([`Error`], [`llama2c::Llama2cError`],
//! [`microformer::Error`]), never a panic.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod aligned;
pub mod block_scales;
pub mod error;
mod files;
pub mod hf;
pub mod limits;
pub mod llama2c;
pub mod storage;
pub mod tokenizer;

pub use aligned::AlignedBytes;
pub use error::{Error, ErrorKind};
pub use storage::Storage;
