//! The tiny-LM runtime: a validated [`Model`] over a flash image and a
//! [`Session`] that runs one forward pass per token in a caller-provided arena.
//!
//! ```text
//! let model = Model::new(Image::parse(bytes)?)?;
//! let mut arena = [0u32; N];                      // ≥ model.arena_bytes(context) bytes
//! let mut s = Session::new(&model, bytemuck::cast_slice_mut(&mut arena), context)?;
//! let logits = s.step(token)?;                    // position 0, 1, 2, ...
//! ```
//!
//! One forward step serves every model the image format describes; the
//! header's [`crate::image::Block`] picks the parts (all zero: the Llama block, which is
//! llama2.c's `run.c` (f32 weights) and `runq.c` (Q8_0 weights), operation for
//! operation):
//!
//! 1. `x` = token embedding row (a Q8 row is dequantized, `q · scale`, as `runq.c`
//!    dequantizes its table); `x ·= embed_scale` (XGLM's `√d_model`, when set);
//!    position hook *embedding* ([`crate::pos::learned::LearnedPositions::add_to`]):
//!    `x += PosEmbedding[pos + pos_offset]` (GPT-2's learned `wpe`, XGLM's
//!    sinusoidal table); `x = norm(x)` with `FLAG_EMBED_NORM` (BLOOM's
//!    `word_embeddings_layernorm`).
//! 2. Per layer: `xb = norm₁(x)`; `q, k, v = Wq·xb, Wk·xb, Wv·xb` (+ biases with
//!    `FLAG_QKV_BIAS`); position hook *rotation*
//!    ([`crate::pos::rope::RopeTable::rotate_heads`]): RoPE on the first
//!    `rotary_dim` dims of every q and k head from the image's cos/sin rows
//!    (interleaved pairs `(2i, 2i+1)` or half-split `(i, i + rotary_dim/2)`); k, v
//!    into the KV cache; attention ([`crate::attn::attend_cached`]: GQA head
//!    mapping, `score·(1/sqrtf(head_dim))` or `score·(1/(1/attn_scale))`, position
//!    hook *score bias* ([`crate::pos::alibi::AlibiBias`]: ALiBi `−m_h·(i − j)`
//!    from the image's slopes), softmax, weighted values, sliding window from the
//!    header); `a = Wo·att (+ bo)`; then, by
//!    [`crate::image::Residual`]:
//!    - sequential: `x += a`; `xb = norm₂(x)`; `x += ffn(xb)`;
//!    - parallel, one norm (GPT-J, Phi): `x = (a + ffn(norm₁(x))) + x`;
//!    - parallel, two norms (GPT-NeoX): `x = (ffn(norm₂(x)) + a) + x`
//!
//!    (the sums in Hugging Face's order). `ffn` is SwiGLU
//!    `W2·(silu(W1·xb) · (W3·xb))` with `silu(v) = v·(1/(1 + expf(−v)))`, or an
//!    MLP `down·gelu(up·xb + b_up) + b_down` with GELU's tanh approximation or
//!    exact (erf) form ([`gelu_tanh`], [`gelu`]).
//! 3. `x = norm(x)`; logits `= Wcls·x (+ output bias)` (the token embedding when tied).
//!
//! `norm` is RMSNorm (`ss = Σx²/n + eps; ss = 1/sqrtf(ss); o = w·(ss·x)`, as
//! `run.c`) or LayerNorm ([`layernorm`], with or without bias), with the
//! header's `norm_eps`.
//!
//! A Q8 matrix multiplies the activation quantized per group (`runq.c`'s
//! `quantize`: int8 + one scale per group), with one `i32` dot product per group
//! scaled by both scales. Each Q8 matrix has its own group (the image's
//! per-tensor group); matrices that read the same activation share its
//! quantization when their groups agree, and quantize it again otherwise. An
//! f32 matrix multiplies the f32 activation with the sequential sum of `run.c`
//! (see [`weights::matvec_f32`]); a binary16 matrix does the same with its
//! weights widened exactly ([`weights::matvec_f16`]), so an f16 image computes
//! exactly what the f32 image of its rounded weights computes. Images may mix
//! all three.
//!
//! Maths: `sqrtf` from `libm` (as `run.c`); `expf` (softmax, SiLU) is
//! [`crate::num::exp::fast_expf`], below 1.5 ulp of `e^x` but not bit-identical
//! to `libm`'s or glibc's `expf`; `tanhf`/`erff` from `libm` for GELU.
//!
//! Memory: weights are read in place from the image, the global tensors and the
//! position hook resolved once by [`Model::new`] into typed views, a layer's
//! ([`LayerWeights`]) by one directory index per tensor as the step reaches it
//! (the model stays a few hundred bytes whatever the depth); all working memory — the activations, one attention score row (two
//! when query heads share kv heads in pairs), the logits, the KV cache
//! (`2 · n_layers · context · kv_dim` values), for a parallel block the
//! feed-forward output, and, for Q8 images, the quantized activation — is carved
//! from one arena of [`Model::arena_bytes`] bytes, laid out by [`ArenaLayout`].

mod arena;
mod integer;
mod norm;
mod session;
mod view;
pub mod weights;

#[cfg(test)]
mod block_tests;

pub use arena::ArenaLayout;
pub use norm::{gelu, gelu_tanh, layernorm, layernorm_in_place, rmsnorm, rmsnorm_in_place, silu};
pub use session::Session;
pub use view::{Arith, Dims, KvFormat, Model};
pub use weights::{LayerWeights, Matrix, NormWeights, QuantizedInput};
