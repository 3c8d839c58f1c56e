//! # microformer
//!
//! A `#![no_std]`, heap-free inference core for tiny transformers on Cortex-M
//! microcontrollers: the positional encodings and the attention block a
//! transformer is built from, and a tiny-LM runtime that runs a model straight
//! from a flash image, with llama2.c's tokenizer, sampler and generation loop.
//!
//! ```text
//! static IMAGE: &[u8] = include_image!("model.mfi");           // in flash, aligned
//! static mut MEMORY: lm::Memory<ARENA, VOCAB, PROMPT> = lm::Memory::new();
//! let model = Model::from_bytes(IMAGE)?;                        // validated once, read in place
//! for token in lm::Generator::new(&model, MEMORY.buffers(), &options)? {
//!     uart.write(token?.text);                                  // llama2.c's text
//! }
//! ```
//!
//! No allocator is used anywhere: tables are `static`/`const` arrays in flash or
//! slices the caller provides, and every working buffer (KV cache, activations,
//! logits) is carved from one caller-provided arena whose size
//! [`model::Model::arena_bytes`] states. Every failure is one [`Error`] variant.
//!
//! | module | what it holds |
//! |---|---|
//! | [`pos`] | positional encodings in `f32` and fixed point, angle tables precomputed (at compile time through `const fn`, or at run time into caller storage) so that no `sin`/`cos` runs per token: sinusoidal and learned absolute positions, RoPE (interleaved and half-split pairs, partial rotary, 2-D axial, every Hugging Face scaling rule), ALiBi and T5 relative buckets; they are the runtime's position hooks ([`pos::Position`], [`pos::ScoreBias`]) |
//! | [`attn`] | the attention block: scaled dot-product attention with MHA/GQA/MQA head sharing, causal or bidirectional masks, a sliding window and a score-bias hook; the KV cache in f32 or int8 |
//! | [`model`] | the tiny-LM runtime: a [`model::Model`] over an image and a [`model::Session`] that runs one forward step per token for every block shape the image describes (the Llama family with Qwen2, Mistral and Phi-3; GPT-2, XGLM, BLOOM, MPT, GPT-J, GPT-NeoX, Phi) |
//! | [`image`] | the flash image format: header, block shape, tensor directory, f32 / Q8_0 / binary16 weights, checksum; a zero-copy validating reader and a heap-free writer |
//! | [`tokenizer`] | llama2.c's byte-pair tokenizer, zero-copy over the image's tokenizer bytes |
//! | [`sampler`] | llama2.c's sampler: its xorshift RNG, greedy argmax, multinomial and top-p sampling |
//! | [`generate`] | llama2.c's generation loop: prompt forcing, sampling, the stop rule and the step budget |
//! | [`lm`] | the ten-line API: [`include_image!`], one statically sized [`lm::Memory`], a [`lm::Generator`] of tokens and text |
//! | [`num`] | numerics: `const fn` f64 maths for tables, Q15 fixed point, Q8_0, binary16, `expf`, the f32 kernels, the integer step's fixed point and kernels |
//! | [`error`] | the one error type, [`Error`] |
//!
//! The crate denies `unsafe` code except in three modules of kernels in
//! inline assembly, whose results are bit-identical to the portable kernels:
//! the Cortex-M4F/M33 one (`num::kernels_m4`, compiled for hard-float Arm
//! targets only: the f32 and binary16 matrix-vector kernels, the f32
//! attention's score and value-mix loops, the integer step's int8 × int16
//! group dot products, int8-cache attention and Q15 RoPE), the soft-float
//! ARMv7-M one (`num::kernels_m3`: the integer step's group dot products and
//! scales, its attention key dots) and the ARMv6-M one (`num::kernels_m0`:
//! the integer step's group dot products).
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod attn;
pub mod error;
pub mod generate;
pub mod image;
pub mod lm;
pub mod model;
pub mod num;
pub mod perplexity;
pub mod pos;
pub mod sampler;
pub mod tokenizer;

pub use error::Error;
