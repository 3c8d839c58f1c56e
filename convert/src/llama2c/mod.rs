//! llama2.c checkpoints (`.bin`): a heap-free reader, the conversion into a model
//! image, and [`convert()`], the whole conversion in one call (what `microformer
//! convert` and the boards' build scripts run).
//!
//! ## Formats (all little-endian), as written by llama2.c's `export.py`
//!
//! - **Legacy (v0)**, read by `run.c`: seven `i32` — `dim, hidden_dim, n_layers,
//!   n_heads, n_kv_heads, vocab_size, seq_len` (a negative `vocab_size` means the
//!   classifier is not shared and `wcls` follows at the end) — then f32 tensors:
//!   `token_embedding [vocab][dim]`, `rms_att [L][dim]`, `wq [L][dim][dim]`,
//!   `wk [L][kv_dim][dim]`, `wv [L][kv_dim][dim]`, `wo [L][dim][dim]`,
//!   `rms_ffn [L][dim]`, `w1 [L][hidden][dim]`, `w2 [L][dim][hidden]`,
//!   `w3 [L][hidden][dim]`, `rms_final [dim]`, `freq_cis_real [seq_len][head_size/2]`,
//!   `freq_cis_imag` (same; unused by today's `run.c`), optional `wcls [vocab][dim]`.
//! - **v1** (`version1_export`): a 256-byte header — `u32` magic `0x616b3432`
//!   ("ak42"), `i32` version 1, the seven `i32` params (vocab positive), one byte
//!   `shared_classifier`, zero padding — then f32 tensors in the order
//!   `rms_att, rms_ffn, rms_final, token_embedding, wq, wk, wv, wo, w1, w2, w3`
//!   (each `[L]…` as above), optional `wcls`. No `freq_cis`.
//! - **v2** (`version2_export`, read by `runq.c`): the v1 header with version 2
//!   and an `i32` group size right after the shared byte (offset 37); then the
//!   norms in f32 (`rms_att, rms_ffn, rms_final`), then every matrix of the v1
//!   order, each layer's tensor separately, as Q8_0: `numel` int8 values followed
//!   by `numel / group` f32 scales (groups run over the flattened tensor).
//!
//! [`Checkpoint::parse`] checks the header (magic, version, positive and
//! consistent dimensions: `dim % n_heads`, `n_heads % n_kv_heads`, even head size)
//! and that the file length is exactly what the header implies, and returns a
//! typed [`microformer::Error`] otherwise. It reads in place: the slice must be 4-byte
//! aligned (as a memory map or a `Vec<u32>`-backed buffer).
//!
//! ## Conversion
//!
//! [`to_image`] writes an image (see [`microformer::image`]) with the llama2.c
//! conventions: weights are `[out][in]` row-major as in the image; RoPE pairs are
//! interleaved (`FLAG_ROPE_INTERLEAVED`), `rotary_dim = head_size`; `norm_eps` is
//! `1e-5` (`run.c`'s constant); BOS 1, EOS 2; tied embeddings when the classifier
//! is shared. The RoPE tables come from the caller: to reproduce `run.c` bit for
//! bit they must be computed as `run.c` computes its angles, with the host's f32
//! `powf`/`cosf`/`sinf` — [`fill_rope_tables`] does that with functions the
//! caller passes in. Their row count is the image's `seq_len` (the usable context,
//! at most the checkpoint's `seq_len`, which is kept as `train_context`).
//!
//! Weights may be stored as f32 or as Q8_0 ([`Quant`]): f32 checkpoints are
//! quantized with `runq.c`'s `quantize` (`scale = max|x|/127` per group,
//! `q = round(x/scale)`), v2 checkpoints keep their int8 values and scales
//! unchanged. The image keeps a group inside one row, so with [`Quant::Q8`] a
//! matrix whose row length is not a multiple of the group size stays f32
//! (dequantized exactly as `runq.c` dequantizes, `q · scale`, when it comes from a
//! v2 file); [`Quant::Q8Fit`] stores it in Q8 with a finer group of its own
//! ([`fit_group`]: llama2.c's `w2`, rows of `hidden_dim = 172`, in groups of 4),
//! which the image records per tensor. [`to_image_with`] lets a caller choose f32
//! or any Q8 group for each matrix ([`Policy`]), e.g. from a per-tensor
//! sensitivity measurement.
//!
//! ## Q8 accuracy (measured; `convert/tests/llama2c.rs`)
//!
//! Top-1 agreement with the f32 image, teacher-forced over llama2.c's reference
//! streams: aidreams260K 98.6–100 % for every Q8 variant. stories260K stays at
//! 85–91 % for every Q8 image of a useful size (89.1 % for `Q8Fit` 64, 348 040
//! bytes): this model needs more than 8 significant bits per weight — rounding
//! its f32 weights to bfloat16 precision alone gives 96.5 %, float16 precision
//! 99.5 % — and an int8 value with any non-clipping group scale is coarser than
//! bfloat16 for every weight. Its quantization error is dominated by the
//! embedding lookup and the first layer (error grows about 3× in KL per layer
//! it passes through), and by the activation quantization of `w2`'s input when
//! its group is a whole row of 172.
//!
//! ## Modules
//!
//! - `checkpoint`: the file formats ([`Checkpoint`], [`fill_rope_tables`]);
//! - `quant`: the storage choices ([`Quant`], [`Precision`], [`Policy`]) and
//!   [`ImageOptions`];
//! - `to_image`: the heap-free conversion ([`sizes`], [`to_image`]);
//! - `pipeline`: [`convert()`], owned buffers and typed errors ([`Llama2cError`]).

mod checkpoint;
mod pipeline;
mod quant;
mod to_image;

pub use checkpoint::{
    fill_rope_tables, Checkpoint, Config, Tensor, Version, Weight, HEADER_SIZE, LEGACY_HEADER_SIZE,
    MAGIC, MAX_DIM, MAX_LAYERS, NORM_EPS, ROPE_THETA,
};
pub use pipeline::{convert, Converted, Llama2cError, Options};
pub use quant::{default_group_size, fit_group, ImageOptions, Policy, Precision, Quant, Sizes};
pub use to_image::{sizes, sizes_with, to_image, to_image_with};
