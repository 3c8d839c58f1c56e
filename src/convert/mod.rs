//! Checkpoint readers and conversion into model images.
//!
//! Every reader here is `no_std` and heap-free: it parses a checkpoint held in a
//! byte slice (a memory-mapped file on the host, or flash), validates it with
//! typed errors, and hands its tensors to [`crate::image::write`] through
//! caller-provided buffers. The host tool (`cli/`) only reads files and computes
//! what needs the host's maths library (the RoPE tables).
//!
//! - [`llama2c`]: llama2.c `.bin` checkpoints (legacy v0, v1 f32, v2 Q8_0).

pub mod llama2c;
