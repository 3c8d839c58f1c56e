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
//! header's [`Block`] picks the parts (all zero: the Llama block, which is
//! llama2.c's `run.c` (f32 weights) and `runq.c` (Q8_0 weights), operation for
//! operation):
//!
//! 1. `x` = token embedding row (a Q8 row is dequantized, `q · scale`, as `runq.c`
//!    dequantizes its table); `x ·= embed_scale` (XGLM's `√d_model`, when set);
//!    position hook *embedding*: `x += PosEmbedding[pos + pos_offset]` (GPT-2's
//!    learned `wpe`, XGLM's sinusoidal table); `x = norm(x)` with `FLAG_EMBED_NORM`
//!    (BLOOM's `word_embeddings_layernorm`).
//! 2. Per layer: `xb = norm₁(x)`; `q, k, v = Wq·xb, Wk·xb, Wv·xb` (+ biases with
//!    `FLAG_QKV_BIAS`); position hook *rotation*: RoPE on the first `rotary_dim`
//!    dims of every q and k head from the image's cos/sin rows (interleaved pairs
//!    `(2i, 2i+1)` or half-split `(i, i + rotary_dim/2)`); k, v into the KV
//!    cache; attention ([`crate::attn::attend_cached`]: GQA head mapping,
//!    `score·(1/sqrtf(head_dim))` or `score·(1/(1/attn_scale))`, position hook *score
//!    bias*: ALiBi `−m_h·(i − j)` from the image's slopes, softmax, weighted
//!    values, sliding window from the header); `a = Wo·att (+ bo)`; then, by
//!    [`Residual`]:
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
//! Memory: weights are read in place from the image; all working memory — the
//! activations, one attention score row (two when query heads share kv heads
//! in pairs), the logits, the f32 KV cache
//! `2 · n_layers · context · kv_dim` values, for a parallel block the feed-forward
//! output, and, for Q8 images, the quantized activation — is carved from one
//! arena of [`Model::arena_bytes`] bytes.

pub mod weights;

#[cfg(test)]
mod block_tests;

use crate::attn::{self, AttnConfig, KvCache, KvCacheQ8, KvRead, KvWrite, NoBias};
use crate::image::{
    self, Block, FfnKind, Header, Image, NormKind, PositionHook, Residual, TensorData, TensorKind,
};
use crate::num::q8;
use crate::pos::rope::RopeLayout;
use crate::Error;
pub use weights::{LayerWeights, Matrix, QuantizedInput};

/// How a [`Session`] stores its KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KvFormat {
    /// f32 keys and values ([`KvCache`]): the reference arithmetic.
    #[default]
    F32,
    /// int8 keys and values with one f32 scale per row ([`KvCacheQ8`]): about a
    /// quarter of the bytes, at the cost of quantizing every cached row.
    Q8,
}

/// The session's KV cache in either format.
#[derive(Debug)]
enum Cache<'s> {
    F32(KvCache<'s>),
    Q8(KvCacheQ8<'s>),
}

/// A validated model: the image plus the dimensions and global tensors.
#[derive(Debug, Clone, Copy)]
pub struct Model<'a> {
    image: Image<'a>,
    dim: usize,
    hidden_dim: usize,
    n_layers: usize,
    head_dim: usize,
    q_dim: usize,
    kv_dim: usize,
    vocab_size: usize,
    seq_len: usize,
    rotary_dim: usize,
    layout: RopeLayout,
    norm_eps: f32,
    attn: AttnConfig,
    embedding: Matrix<'a>,
    output: Matrix<'a>,
    final_norm: &'a [f32],
    rope_cos: &'a [f32],
    rope_sin: &'a [f32],
    norm: NormKind,
    ffn: FfnKind,
    residual: Residual,
    /// Token embedding multiplier (0: none).
    embed_scale: f32,
    /// Absolute position table `[seq_len + pos_offset][dim]` (empty: none).
    pos_table: &'a [f32],
    pos_offset: usize,
    embed_norm: Option<&'a [f32]>,
    embed_norm_bias: Option<&'a [f32]>,
    final_norm_bias: Option<&'a [f32]>,
    output_bias: Option<&'a [f32]>,
    /// ALiBi slopes, one per query head (empty: no ALiBi).
    alibi: &'a [f32],
    /// Largest input width of a Q8 matrix (0: no Q8 matrix).
    q8_cols: usize,
    /// Most groups in one Q8 matrix row (`cols / group`; 0: no Q8 matrix):
    /// the scales of a quantized activation.
    q8_scales: usize,
}

fn dims(h: &Header) -> [usize; 3] {
    [h.dim as usize, h.q_dim(), h.kv_dim()]
}

impl<'a> Model<'a> {
    /// Validates that `image` is a runnable model: a supported architecture, every
    /// tensor its header calls for present with a usable dtype (norms, biases,
    /// position tables and slopes f32; matrices f32, Q8 or f16), position tables
    /// covering `seq_len` positions.
    pub fn new(image: Image<'a>) -> Result<Self, Error> {
        let h = *image.header();
        // `Arch::Llama` is the only architecture `Image::parse` accepts.
        let [dim, q_dim, kv_dim] = dims(&h);
        let head_dim = h.head_dim as usize;
        let rotary_dim = h.rotary_dim as usize;
        let seq_len = h.seq_len as usize;
        let b: Block = h.block;
        let mut attn = AttnConfig::new(h.n_heads as usize, h.n_kv_heads as usize, head_dim)?
            .with_window(h.sliding_window as usize);
        if b.attn_scale != 0.0 {
            // `q·k · scale` as `q·k / (1/scale)` (exact for the powers of two in use).
            attn = attn.with_divisor((1.0 / f64::from(b.attn_scale)) as f32)?;
        }
        let embedding = Matrix::from_image(&image, TensorKind::TokenEmbedding, 0)?;
        let output = if h.has(image::FLAG_TIED_EMBEDDINGS) {
            embedding
        } else {
            Matrix::from_image(&image, TensorKind::Output, 0)?
        };
        let final_norm = weights::vector(&image, TensorKind::FinalNorm, 0)?;
        let opt = |kind| weights::optional_vector(&image, kind, 0);
        let rope_cos = opt(TensorKind::RopeCos)?.unwrap_or(&[]);
        let rope_sin = opt(TensorKind::RopeSin)?.unwrap_or(&[]);
        let pos_table = opt(TensorKind::PosEmbedding)?.unwrap_or(&[]);
        let alibi = opt(TensorKind::AlibiSlopes)?.unwrap_or(&[]);
        if matches!(b.position, PositionHook::Rope) && rope_cos.len() != seq_len * (rotary_dim / 2)
        {
            return Err(Error::BadTensor);
        }
        let (mut q8_cols, mut q8_scales) = (0, 0);
        let mut note = |m: &Matrix<'_>| {
            // Each Q8 matrix has its own group (`Matrix::from_image` checked that
            // it divides the row).
            if let Some(g) = m.q8_group() {
                q8_cols = q8_cols.max(m.cols());
                q8_scales = q8_scales.max(m.cols() / g);
            }
        };
        note(&embedding);
        note(&output);
        for l in 0..h.n_layers as usize {
            let lw = LayerWeights::from_image(&image, l)?;
            for m in lw.matrices().iter().flatten() {
                note(m);
            }
        }
        let layout = if h.has(image::FLAG_ROPE_INTERLEAVED) {
            RopeLayout::Interleaved
        } else {
            RopeLayout::HalfSplit
        };
        Ok(Model {
            image,
            dim,
            hidden_dim: h.hidden_dim as usize,
            n_layers: h.n_layers as usize,
            head_dim,
            q_dim,
            kv_dim,
            vocab_size: h.vocab_size as usize,
            seq_len,
            rotary_dim,
            layout,
            norm_eps: h.norm_eps,
            attn,
            embedding,
            output,
            final_norm,
            rope_cos,
            rope_sin,
            norm: b.norm,
            ffn: b.ffn,
            residual: b.residual,
            embed_scale: b.embed_scale,
            pos_table,
            pos_offset: b.pos_offset as usize,
            embed_norm: opt(TensorKind::EmbedNorm)?,
            embed_norm_bias: opt(TensorKind::EmbedNormBias)?,
            final_norm_bias: opt(TensorKind::FinalNormBias)?,
            output_bias: opt(TensorKind::OutputBias)?,
            alibi,
            q8_cols,
            q8_scales,
        })
    }

    /// The image.
    pub const fn image(&self) -> &Image<'a> {
        &self.image
    }

    /// The image header.
    pub const fn header(&self) -> &Header {
        self.image.header()
    }

    /// Vocabulary size (logits per step).
    pub const fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The longest usable context (positions covered by the position tables).
    pub const fn max_context(&self) -> usize {
        self.seq_len
    }

    /// Whether any matrix is stored as Q8.
    pub const fn is_quantized(&self) -> bool {
        self.q8_cols > 0
    }

    /// The tokenizer bytes (llama2.c format) when the image carries them.
    pub fn tokenizer(&self) -> Option<&'a [u8]> {
        match self.image.tensor(TensorKind::Tokenizer, 0) {
            Ok(TensorData::U8(b)) => Some(b),
            _ => None,
        }
    }

    /// The weights of layer `layer`.
    pub fn layer(&self, layer: usize) -> Result<LayerWeights<'a>, Error> {
        LayerWeights::from_image(&self.image, layer)
    }

    /// The f32 values an arena holds, in carving order, for `context` positions
    /// (an int8 cache's f32 part is its row scales).
    fn f32_segments(&self, context: usize, kv: KvFormat) -> [usize; 14] {
        let rows = self.n_layers.saturating_mul(context);
        let cache = match kv {
            KvFormat::F32 => rows.saturating_mul(self.kv_dim),
            KvFormat::Q8 => rows,
        };
        // `attn` computes query heads that share a kv head two at a time.
        let att_rows = if (self.attn.n_heads() / self.attn.n_kv_heads()) % 2 == 0 {
            2
        } else {
            1
        };
        [
            self.dim,                         // x
            self.dim.max(self.q_dim),         // xb
            self.dim,                         // xb2
            self.hidden_dim,                  // hb
            self.swiglu(self.hidden_dim),     // hb2 (the SwiGLU up projection)
            self.parallel(self.dim),          // ffn_out (a parallel block's feed-forward output)
            self.q_dim,                       // q
            self.kv_dim,                      // k
            self.kv_dim,                      // v
            context.saturating_mul(att_rows), // att (two rows: heads paired, see attn)
            self.vocab_size,                  // logits
            cache,                            // key cache (int8 cache: its scales)
            cache,                            // value cache (int8 cache: its scales)
            self.q8_scales,                   // quantized activation scales
        ]
    }

    /// `n` for a SwiGLU block, else 0.
    const fn swiglu(&self, n: usize) -> usize {
        if matches!(self.ffn, FfnKind::SwiGlu) {
            n
        } else {
            0
        }
    }

    /// `n` for a parallel block, else 0.
    const fn parallel(&self, n: usize) -> usize {
        if matches!(self.residual, Residual::Sequential) {
            0
        } else {
            n
        }
    }

    /// The model's norm of `x` into `o` (RMSNorm, or LayerNorm with `bias`).
    fn norm(&self, o: &mut [f32], x: &[f32], w: &[f32], bias: Option<&[f32]>) {
        match self.norm {
            NormKind::Rms => rmsnorm(o, x, w, self.norm_eps),
            NormKind::LayerNorm | NormKind::LayerNormNoBias => {
                layernorm(o, x, w, bias, self.norm_eps)
            }
        }
    }

    /// [`Model::norm`] in place.
    fn norm_in_place(&self, x: &mut [f32], w: &[f32], bias: Option<&[f32]>) {
        match self.norm {
            NormKind::Rms => rmsnorm_in_place(x, w, self.norm_eps),
            NormKind::LayerNorm | NormKind::LayerNormNoBias => {
                layernorm_in_place(x, w, bias, self.norm_eps)
            }
        }
    }

    /// Exact arena bytes a [`Session`] of `context` positions needs when the
    /// arena starts 4-byte aligned (e.g. a `[u32]` or `[f32]` cast to bytes); an
    /// unaligned arena needs up to 3 more. Saturates at `usize::MAX`.
    pub fn arena_bytes(&self, context: usize) -> usize {
        self.arena_bytes_with(context, KvFormat::F32)
    }

    /// [`Model::arena_bytes`] for a session whose KV cache has format `kv`
    /// ([`Session::with_kv`]).
    pub fn arena_bytes_with(&self, context: usize, kv: KvFormat) -> usize {
        self.f32_segments(context, kv)
            .iter()
            .fold(0usize, |a, &n| a.saturating_add(n.saturating_mul(4)))
            .saturating_add(self.q8_cols)
            .saturating_add(self.int8_cache(context, kv).saturating_mul(2))
    }

    /// int8 values of each of an int8 cache's keys and values (0 for f32).
    fn int8_cache(&self, context: usize, kv: KvFormat) -> usize {
        match kv {
            KvFormat::F32 => 0,
            KvFormat::Q8 => self
                .n_layers
                .saturating_mul(context)
                .saturating_mul(self.kv_dim),
        }
    }
}

/// Layer `l`'s attention at `pos` over `cache` (with the model's ALiBi bias,
/// if any) into `out`.
#[inline(always)]
fn attend<C: KvRead>(
    m: &Model<'_>,
    cache: &C,
    l: usize,
    pos: usize,
    q: &[f32],
    att: &mut [f32],
    out: &mut [f32],
) -> Result<(), Error> {
    if m.alibi.is_empty() {
        attn::attend_cached(&m.attn, cache, l, pos, q, &NoBias, att, out)
    } else {
        let slopes = m.alibi;
        let alibi = |h: usize, i: usize, j: usize| {
            -(slopes.get(h).copied().unwrap_or(0.0) * i.abs_diff(j) as f32)
        };
        attn::attend_cached(&m.attn, cache, l, pos, q, &alibi, att, out)
    }
}

/// Splits `n` values of `T` off the front of `rest`, after padding to `T`'s alignment.
fn carve<'s, T: bytemuck::Pod>(rest: &mut &'s mut [u8], n: usize) -> Result<&'s mut [T], Error> {
    let buf = core::mem::take(rest);
    let pad = buf.as_ptr().align_offset(core::mem::align_of::<T>());
    let bytes = n.checked_mul(core::mem::size_of::<T>());
    let (Some(bytes), true) = (bytes, pad != usize::MAX) else {
        return Err(Error::InvalidParameter);
    };
    let Some(total) = pad.checked_add(bytes).filter(|&t| t <= buf.len()) else {
        // Restore the caller's view so the error path can report sizes.
        *rest = buf;
        return Err(Error::BufferTooSmall {
            needed: pad.saturating_add(bytes),
            got: rest.len(),
        });
    };
    let (mine, tail) = buf.split_at_mut(total);
    *rest = tail;
    bytemuck::try_cast_slice_mut(&mut mine[pad..]).map_err(|_| Error::Misaligned)
}

/// One generation: the position, the KV cache and the activations, all in the arena.
#[derive(Debug)]
pub struct Session<'s> {
    model: &'s Model<'s>,
    context: usize,
    pos: usize,
    x: &'s mut [f32],
    xb: &'s mut [f32],
    xb2: &'s mut [f32],
    hb: &'s mut [f32],
    hb2: &'s mut [f32],
    ffn_out: &'s mut [f32],
    q: &'s mut [f32],
    k: &'s mut [f32],
    v: &'s mut [f32],
    att: &'s mut [f32],
    logits: &'s mut [f32],
    cache: Cache<'s>,
    qs: &'s mut [f32],
    qx: &'s mut [i8],
}

impl<'s> Session<'s> {
    /// Opens a session of `context` positions over `arena` (at least
    /// [`Model::arena_bytes`]`(context)` bytes; any alignment).
    ///
    /// Errors: `context` zero ([`Error::ZeroDimension`]) or beyond the image's
    /// tables ([`Error::PositionOutOfRange`]); the arena too small
    /// ([`Error::BufferTooSmall`] with the bytes needed for this arena's alignment).
    pub fn new(model: &'s Model<'s>, arena: &'s mut [u8], context: usize) -> Result<Self, Error> {
        Self::with_kv(model, arena, context, KvFormat::F32)
    }

    /// [`Session::new`] with the KV cache in format `kv`; the arena must hold
    /// [`Model::arena_bytes_with`]`(context, kv)` bytes.
    pub fn with_kv(
        model: &'s Model<'s>,
        arena: &'s mut [u8],
        context: usize,
        kv: KvFormat,
    ) -> Result<Self, Error> {
        if context == 0 {
            return Err(Error::ZeroDimension);
        }
        if context > model.seq_len {
            return Err(Error::PositionOutOfRange {
                position: context - 1,
                len: model.seq_len,
            });
        }
        let got = arena.len();
        let pad = arena.as_ptr().align_offset(4);
        let needed = model.arena_bytes_with(context, kv).saturating_add(pad);
        if pad == usize::MAX || got < needed {
            return Err(Error::BufferTooSmall { needed, got });
        }
        let [x, xb, xb2, hb, hb2, ffn_out, q, k, v, att, logits, kc, vc, qs] =
            model.f32_segments(context, kv);
        let mut rest = arena;
        let x = carve(&mut rest, x)?;
        let xb = carve(&mut rest, xb)?;
        let xb2 = carve(&mut rest, xb2)?;
        let hb = carve(&mut rest, hb)?;
        let hb2 = carve(&mut rest, hb2)?;
        let ffn_out = carve(&mut rest, ffn_out)?;
        let q = carve(&mut rest, q)?;
        let k = carve(&mut rest, k)?;
        let v = carve(&mut rest, v)?;
        let att = carve(&mut rest, att)?;
        let logits = carve(&mut rest, logits)?;
        let keys = carve(&mut rest, kc)?;
        let values = carve(&mut rest, vc)?;
        let qs = carve(&mut rest, qs)?;
        let qx = carve(&mut rest, model.q8_cols)?;
        let (l, kvd) = (model.n_layers, model.kv_dim);
        let cache = match kv {
            KvFormat::F32 => Cache::F32(KvCache::new(keys, values, l, context, kvd)?),
            KvFormat::Q8 => {
                let n = model.int8_cache(context, kv);
                let kq = carve(&mut rest, n)?;
                let vq = carve(&mut rest, n)?;
                Cache::Q8(KvCacheQ8::new(kq, vq, keys, values, l, context, kvd)?)
            }
        };
        Ok(Session {
            model,
            context,
            pos: 0,
            x,
            xb,
            xb2,
            hb,
            hb2,
            ffn_out,
            q,
            k,
            v,
            att,
            logits,
            cache,
            qs,
            qx,
        })
    }

    /// The model.
    pub const fn model(&self) -> &'s Model<'s> {
        self.model
    }

    /// The position the next [`Session::step`] runs at (tokens consumed so far).
    pub const fn position(&self) -> usize {
        self.pos
    }

    /// The session's context length.
    pub const fn context(&self) -> usize {
        self.context
    }

    /// Starts over at position 0 (the cache is overwritten as positions are reused).
    pub fn reset(&mut self) {
        self.pos = 0;
    }

    /// The logits of the last step.
    pub fn logits(&self) -> &[f32] {
        self.logits
    }

    /// The logits of the last step, mutable (samplers scale them in place).
    pub fn logits_mut(&mut self) -> &mut [f32] {
        self.logits
    }

    /// `out = m · x`. For a Q8 matrix `x` is first quantized with the matrix's
    /// group into the session's activation buffer (`qx`, `qs`), unless
    /// `*quantized` says the buffer already holds `x` in that group (several
    /// matrices reading one input share it when their groups agree).
    fn apply(
        m: &Matrix<'_>,
        out: &mut [f32],
        x: &[f32],
        qx: &mut [i8],
        qs: &mut [f32],
        quantized: &mut usize,
    ) -> Result<(), Error> {
        let Some(group) = m.q8_group() else {
            return m.matvec(out, x, None);
        };
        let n = x.len();
        let got = qx.len();
        let (Some(values), Some(scales)) = (qx.get_mut(..n), qs.get_mut(..n / group)) else {
            return Err(Error::BufferTooSmall { needed: n, got });
        };
        if *quantized != group {
            q8::quantize(x, group, values, scales)?;
            *quantized = group;
        }
        m.matvec(out, x, Some(QuantizedInput { values, scales }))
    }

    /// Runs one forward pass for `token` at [`Session::position`] and advances;
    /// returns the logits (`vocab_size` values).
    ///
    /// Errors: `token >= vocab_size` ([`Error::TokenOutOfRange`]); every position
    /// used ([`Error::ContextFull`]). Neither changes the session.
    pub fn step(&mut self, token: u32) -> Result<&[f32], Error> {
        let m = self.model;
        if token as usize >= m.vocab_size {
            return Err(Error::TokenOutOfRange {
                token,
                vocab_size: m.vocab_size,
            });
        }
        let pos = self.pos;
        if pos >= self.context {
            return Err(Error::ContextFull {
                context: self.context,
            });
        }
        let dim = m.dim;
        let pairs = m.rotary_dim / 2;
        let cos = &m.rope_cos[pos * pairs..(pos + 1) * pairs];
        let sin = &m.rope_sin[pos * pairs..(pos + 1) * pairs];

        m.embedding.row_into(token as usize, self.x)?;
        if m.embed_scale != 0.0 {
            for v in self.x.iter_mut() {
                *v *= m.embed_scale;
            }
        }
        if !m.pos_table.is_empty() {
            let row = (pos + m.pos_offset) * dim;
            let table = m.pos_table.get(row..row + dim);
            add(
                self.x,
                table.ok_or(Error::PositionOutOfRange {
                    position: pos,
                    len: m.seq_len,
                })?,
            );
        }
        if let Some(w) = m.embed_norm {
            m.norm_in_place(self.x, w, m.embed_norm_bias);
        }
        for l in 0..m.n_layers {
            let w = m.layer(l)?;
            let xb = &mut self.xb[..dim];
            m.norm(xb, self.x, w.attn_norm, w.attn_norm_bias);
            let mut quantized = 0;
            Self::apply(&w.wq, self.q, xb, self.qx, self.qs, &mut quantized)?;
            Self::apply(&w.wk, self.k, xb, self.qx, self.qs, &mut quantized)?;
            Self::apply(&w.wv, self.v, xb, self.qx, self.qs, &mut quantized)?;
            if let Some([bq, bk, bv]) = w.qkv_bias {
                add(self.q, bq);
                add(self.k, bk);
                add(self.v, bv);
            }
            rope(self.q, m.head_dim, m.rotary_dim, m.layout, cos, sin);
            rope(self.k, m.head_dim, m.rotary_dim, m.layout, cos, sin);
            match &mut self.cache {
                Cache::F32(c) => c.store(l, pos, self.k, self.v)?,
                Cache::Q8(c) => c.store(l, pos, self.k, self.v)?,
            }

            // A parallel block's feed-forward network reads the layer input:
            // run it before attention overwrites `xb`.
            if !matches!(m.residual, Residual::Sequential) {
                if let (Residual::Parallel, Some(n)) = (m.residual, w.ffn_norm) {
                    m.norm(xb, self.x, n, w.ffn_norm_bias);
                }
                Self::ffn_hidden(m, &w, xb, self.hb, self.hb2, self.qx, self.qs)?;
                Self::ffn_down(&w, self.ffn_out, self.hb, self.qx, self.qs)?;
            }

            let xa = &mut self.xb[..m.q_dim];
            match &self.cache {
                Cache::F32(c) => attend(m, c, l, pos, self.q, self.att, xa)?,
                Cache::Q8(c) => attend(m, c, l, pos, self.q, self.att, xa)?,
            }
            Self::apply(&w.wo, self.xb2, xa, self.qx, self.qs, &mut 0)?;
            if let Some(b) = w.o_bias {
                add(self.xb2, b);
            }
            match m.residual {
                Residual::Sequential => {
                    add(self.x, self.xb2);
                    let xb = &mut self.xb[..dim];
                    m.norm(
                        xb,
                        self.x,
                        w.ffn_norm.ok_or(Error::MissingTensor)?,
                        w.ffn_norm_bias,
                    );
                    Self::ffn_hidden(m, &w, xb, self.hb, self.hb2, self.qx, self.qs)?;
                    Self::ffn_down(&w, xb, self.hb, self.qx, self.qs)?;
                    add(self.x, xb);
                }
                // GPT-J, Phi: `attn_output + feed_forward_hidden_states + residual`.
                Residual::ParallelShared => {
                    for ((x, &a), &f) in self
                        .x
                        .iter_mut()
                        .zip(self.xb2.iter())
                        .zip(self.ffn_out.iter())
                    {
                        *x += a + f; // (a + f) + x: addition commutes
                    }
                }
                // GPT-NeoX: `mlp_output + attn_output + hidden_states`.
                Residual::Parallel => {
                    for ((x, &a), &f) in self
                        .x
                        .iter_mut()
                        .zip(self.xb2.iter())
                        .zip(self.ffn_out.iter())
                    {
                        *x += f + a; // (f + a) + x
                    }
                }
            }
        }
        m.norm_in_place(self.x, m.final_norm, m.final_norm_bias);
        Self::apply(&m.output, self.logits, self.x, self.qx, self.qs, &mut 0)?;
        if let Some(b) = m.output_bias {
            add(self.logits, b);
        }
        self.pos += 1;
        Ok(self.logits)
    }

    /// The feed-forward network's hidden activation for input `xin` (`dim`),
    /// into `hb`: SwiGLU `silu(W1·x + b1) · (W3·x + b3)` as `run.c`, or
    /// `gelu(up·x + b_up)`.
    #[allow(clippy::too_many_arguments)]
    fn ffn_hidden(
        m: &Model<'_>,
        w: &LayerWeights<'_>,
        xin: &[f32],
        hb: &mut [f32],
        hb2: &mut [f32],
        qx: &mut [i8],
        qs: &mut [f32],
    ) -> Result<(), Error> {
        let mut quantized = 0;
        match (m.ffn, &w.w_gate) {
            (FfnKind::SwiGlu, Some(gate)) => {
                Self::apply(gate, hb, xin, qx, qs, &mut quantized)?;
                Self::apply(&w.w_up, hb2, xin, qx, qs, &mut quantized)?;
                if let Some(b) = w.b_gate {
                    add(hb, b);
                }
                if let Some(b) = w.b_up {
                    add(hb2, b);
                }
                for (h, &u) in hb.iter_mut().zip(hb2.iter()) {
                    let mut val = *h;
                    val *= 1.0 / (1.0 + crate::num::exp::fast_expf(-val));
                    val *= u;
                    *h = val;
                }
            }
            (FfnKind::SwiGlu, None) => return Err(Error::MissingTensor),
            (FfnKind::GeluTanh | FfnKind::Gelu, _) => {
                Self::apply(&w.w_up, hb, xin, qx, qs, &mut quantized)?;
                if let Some(b) = w.b_up {
                    add(hb, b);
                }
                if m.ffn == FfnKind::Gelu {
                    hb.iter_mut().for_each(|v| *v = gelu(*v));
                } else {
                    hb.iter_mut().for_each(|v| *v = gelu_tanh(*v));
                }
            }
        }
        Ok(())
    }

    /// `out = down·hb (+ b_down)`.
    fn ffn_down(
        w: &LayerWeights<'_>,
        out: &mut [f32],
        hb: &[f32],
        qx: &mut [i8],
        qs: &mut [f32],
    ) -> Result<(), Error> {
        Self::apply(&w.w_down, out, hb, qx, qs, &mut 0)?;
        if let Some(b) = w.b_down {
            add(out, b);
        }
        Ok(())
    }
}

/// `a += b`.
#[inline]
fn add(a: &mut [f32], b: &[f32]) {
    for (x, &y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// `1/sqrtf(Σx²/n + eps)`, as `run.c`.
#[inline]
fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let mut ss = 0.0f32;
    for &v in x {
        ss += v * v;
    }
    ss /= x.len() as f32;
    ss += eps;
    1.0 / libm::sqrtf(ss)
}

/// `o = w · (ss · x)`, as `run.c`'s `rmsnorm`.
pub fn rmsnorm(o: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
    let ss = rms_scale(x, eps);
    for ((o, &xv), &wv) in o.iter_mut().zip(x).zip(weight) {
        *o = wv * (ss * xv);
    }
}

/// [`rmsnorm`] with the output over the input.
pub fn rmsnorm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    let ss = rms_scale(x, eps);
    for (xv, &wv) in x.iter_mut().zip(weight) {
        *xv = wv * (ss * *xv);
    }
}

/// LayerNorm's `(mean, 1/sqrtf(var + eps))` of `x`: two passes in f32, the
/// biased variance `Σ(x − mean)²/n` (PyTorch's `layer_norm`).
#[inline]
fn moments(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mut sum = 0.0f32;
    for &v in x {
        sum += v;
    }
    let mean = sum / n;
    let mut ss = 0.0f32;
    for &v in x {
        let d = v - mean;
        ss += d * d;
    }
    (mean, 1.0 / libm::sqrtf(ss / n + eps))
}

/// LayerNorm `o = (x − mean)·rstd·w + b` (`b` absent: no bias, as MPT), in
/// PyTorch's CPU order `(x·rstd + (−rstd·mean))·w + b`.
pub fn layernorm(o: &mut [f32], x: &[f32], weight: &[f32], bias: Option<&[f32]>, eps: f32) {
    let (mean, rstd) = moments(x, eps);
    let shift = -rstd * mean;
    for ((o, &xv), &wv) in o.iter_mut().zip(x).zip(weight) {
        *o = (xv * rstd + shift) * wv;
    }
    if let Some(b) = bias {
        add(o, b);
    }
}

/// [`layernorm`] with the output over the input.
pub fn layernorm_in_place(x: &mut [f32], weight: &[f32], bias: Option<&[f32]>, eps: f32) {
    let (mean, rstd) = moments(x, eps);
    let shift = -rstd * mean;
    for (xv, &wv) in x.iter_mut().zip(weight) {
        *xv = (*xv * rstd + shift) * wv;
    }
    if let Some(b) = bias {
        add(x, b);
    }
}

/// `√(2/π)` in f32.
const SQRT_2_OVER_PI: f32 = 0.797_884_6;

/// GELU, tanh approximation: `½x(1 + tanh(√(2/π)(x + 0.044715x³)))` (Hugging
/// Face `gelu_new`/`gelu_pytorch_tanh`/`gelu_fast`, BLOOM's `bloom_gelu_forward`).
pub fn gelu_tanh(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::tanhf(SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)))
}

/// GELU, exact: `½x(1 + erf(x/√2))` (PyTorch `gelu`, Hugging Face `gelu`).
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::erff(x * core::f32::consts::FRAC_1_SQRT_2))
}

/// Rotates the first `rotary_dim` dims of every head of `v` (`[heads][head_dim]`)
/// by one position's `cos`/`sin` row (`rotary_dim/2` values), as `run.c`
/// (`v0·c − v1·s`, `v0·s + v1·c`) for interleaved pairs and as Hugging Face's
/// `rotate_half` for half-split pairs.
pub fn rope(
    v: &mut [f32],
    head_dim: usize,
    rotary_dim: usize,
    layout: RopeLayout,
    cos: &[f32],
    sin: &[f32],
) {
    if rotary_dim == 0 || head_dim == 0 {
        return;
    }
    for head in v.chunks_exact_mut(head_dim) {
        let Some(rot) = head.get_mut(..rotary_dim) else {
            return;
        };
        match layout {
            RopeLayout::Interleaved => {
                for ((pair, &c), &s) in rot.chunks_exact_mut(2).zip(cos).zip(sin) {
                    let v0 = pair[0];
                    let v1 = pair[1];
                    pair[0] = v0 * c - v1 * s;
                    pair[1] = v0 * s + v1 * c;
                }
            }
            RopeLayout::HalfSplit => {
                let (a, b) = rot.split_at_mut(rotary_dim / 2);
                for (((x0, x1), &c), &s) in a.iter_mut().zip(b.iter_mut()).zip(cos).zip(sin) {
                    let v0 = *x0;
                    let v1 = *x1;
                    *x0 = v0 * c - v1 * s;
                    *x1 = v1 * c + v0 * s;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_layouts() {
        let mut v = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        // head_dim 6, rotary 4: dims 4, 5 untouched.
        rope(
            &mut v,
            6,
            4,
            RopeLayout::Interleaved,
            &[0.0, 1.0],
            &[1.0, 0.0],
        );
        assert_eq!(v, [-2.0, 1.0, 3.0, 4.0, 5.0, 6.0]);
        let mut v = [1.0f32, 2.0, 3.0, 4.0];
        rope(
            &mut v,
            4,
            4,
            RopeLayout::HalfSplit,
            &[0.0, 1.0],
            &[1.0, 0.0],
        );
        // pair (0, 2) rotated by 90°, pair (1, 3) unrotated.
        assert_eq!(v, [-3.0, 2.0, 1.0, 4.0]);
    }

    #[test]
    fn rmsnorm_formula() {
        let x = [3.0f32, 4.0];
        let mut o = [0.0; 2];
        rmsnorm(&mut o, &x, &[1.0, 2.0], 0.0);
        let s = 1.0 / (12.5f32).sqrt();
        assert_eq!(o, [3.0 * s, 2.0 * (s * 4.0)]);
    }
}
