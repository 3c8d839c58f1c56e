//! [`Model`]: a validated view over a model image, its tensors and position
//! hook resolved once.

use crate::attn::AttnConfig;
use crate::image::TensorKind;
use crate::image::{self, FfnKind, Header, Image, NormKind, PositionHook, Residual, TensorData};
use crate::pos::alibi::AlibiBias;
use crate::pos::learned::LearnedPositions;
use crate::pos::rope::{RopeLayout, RopeTable};
use crate::pos::t5::{T5Bias, T5BucketTable, T5Buckets, T5RelativeBias};
use crate::pos::Position;
use crate::Error;

use super::arena::ArenaLayout;
use super::norm::{layernorm, layernorm_in_place, rmsnorm, rmsnorm_in_place};
use super::weights::{self, LayerWeights, Matrix, NormWeights};

/// How a [`super::Session`] stores its KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KvFormat {
    /// f32 keys and values ([`crate::attn::KvCache`]): the reference arithmetic.
    #[default]
    F32,
    /// int8 keys and values with one f32 scale per row ([`crate::attn::KvCacheQ8`]):
    /// about a quarter of the bytes, at the cost of quantizing every cached row.
    /// In the integer step ([`Arith::Integer`]): int8 with a one-byte
    /// block-float scale for a row's keys and one for its values.
    Q8,
    /// int16 keys and values with a one-byte block-float scale a row:
    /// the integer step's precise cache (half the f32 cache's bytes). The
    /// float step has no int16 cache ([`Error::InvalidParameter`]).
    Q16,
}

/// The arithmetic of a [`super::Session`]'s forward step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Arith {
    /// f32 arithmetic (`run.c`'s, and `runq.c`'s for Q8 matrices), with the KV
    /// cache in the session's [`KvFormat`].
    #[default]
    Float,
    /// Integer arithmetic end to end (the README's "integer step" section):
    /// Q16 activations, int8 products, the position hooks in fixed point,
    /// integer softmax, norm and SwiGLU, and a KV cache of int8
    /// ([`KvFormat::Q8`]) or int16 ([`KvFormat::Q16`]) rows with block-float
    /// scales ([`KvFormat::F32`] is refused with [`Error::InvalidParameter`]).
    /// Q8 images of the Llama family only ([`Error::IntegerUnsupported`]
    /// otherwise).
    Integer,
}

/// The widths of a model, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Residual stream width.
    pub dim: usize,
    /// Feed-forward hidden width.
    pub hidden_dim: usize,
    /// Layers.
    pub n_layers: usize,
    /// Dimension of one head.
    pub head_dim: usize,
    /// Query width `n_heads · head_dim`.
    pub q_dim: usize,
    /// Key/value width `n_kv_heads · head_dim`.
    pub kv_dim: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Positions the image covers.
    pub seq_len: usize,
}

impl Dims {
    /// Words of the integer step's Q15 RoPE row: a head's rotary pairs at
    /// most (`head_dim / 2`, rounded up).
    pub(super) const fn rope_words(&self) -> usize {
        self.head_dim.div_ceil(2)
    }
}

/// The block's norm: its kind and epsilon.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Norm {
    pub(super) kind: NormKind,
    pub(super) eps: f32,
}

impl Norm {
    /// The norm of `x` with `w` into `o` (RMSNorm, or LayerNorm with `w`'s bias).
    #[inline]
    pub(super) fn apply(&self, o: &mut [f32], x: &[f32], w: &NormWeights<'_>) {
        match self.kind {
            NormKind::Rms => rmsnorm(o, x, w.weight, self.eps),
            NormKind::LayerNorm | NormKind::LayerNormNoBias => {
                layernorm(o, x, w.weight, w.bias, self.eps)
            }
        }
    }

    /// [`Norm::apply`] in place.
    #[inline]
    pub(super) fn apply_in_place(&self, x: &mut [f32], w: &NormWeights<'_>) {
        match self.kind {
            NormKind::Rms => rmsnorm_in_place(x, w.weight, self.eps),
            NormKind::LayerNorm | NormKind::LayerNormNoBias => {
                layernorm_in_place(x, w.weight, w.bias, self.eps)
            }
        }
    }
}

/// The widest Q8 input and the most groups in one Q8 row: the quantized
/// activation a session needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Q8Input {
    pub(super) cols: usize,
    pub(super) scales: usize,
}

/// A validated model: the image, its dimensions, its position hook and every
/// tensor resolved into typed views.
#[derive(Debug, Clone, Copy)]
pub struct Model<'a> {
    pub(super) image: Image<'a>,
    pub(super) dims: Dims,
    pub(super) attn: AttnConfig,
    pub(super) norm: Norm,
    pub(super) ffn: FfnKind,
    pub(super) residual: Residual,
    pub(super) position: Position<'a>,
    /// Token embedding `[vocab][dim]`.
    pub(super) embedding: Matrix<'a>,
    /// Token embedding multiplier (XGLM's `√d_model`).
    pub(super) embed_scale: Option<f32>,
    /// BLOOM's norm of the embedding.
    pub(super) embed_norm: Option<NormWeights<'a>>,
    pub(super) final_norm: NormWeights<'a>,
    /// Classifier `[vocab][dim]` (the token embedding when tied).
    pub(super) output: Matrix<'a>,
    pub(super) output_bias: Option<&'a [f32]>,
    /// `None`: no Q8 matrix.
    pub(super) q8: Option<Q8Input>,
}

impl<'a> Model<'a> {
    /// Validates that `image` is a runnable model and resolves its tensors: a
    /// supported architecture, every tensor its header calls for present with a
    /// usable dtype (norms, biases, position tables and slopes f32; matrices f32,
    /// Q8 or f16), position tables covering `seq_len` positions; every layer's
    /// tensors checked once.
    pub fn new(image: Image<'a>) -> Result<Self, Error> {
        let h = *image.header();
        // `Arch::Llama` is the only architecture `Image::parse` accepts.
        let dims = Dims {
            dim: h.dim as usize,
            hidden_dim: h.hidden_dim as usize,
            n_layers: h.n_layers as usize,
            head_dim: h.head_dim as usize,
            q_dim: h.q_dim(),
            kv_dim: h.kv_dim(),
            vocab_size: h.vocab_size as usize,
            seq_len: h.seq_len as usize,
        };
        let b = h.block;
        let mut attn = AttnConfig::new(h.n_heads as usize, h.n_kv_heads as usize, dims.head_dim)?
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
        let opt = |kind| weights::optional_vector(&image, kind, 0);
        let embed_norm = match opt(TensorKind::EmbedNorm)? {
            Some(weight) => Some(NormWeights {
                weight,
                bias: opt(TensorKind::EmbedNormBias)?,
            }),
            None => None,
        };
        let mut q8: Option<Q8Input> = None;
        let mut note = |m: &Matrix<'_>| {
            // Each Q8 matrix has its own group (`Matrix::from_image` checked that
            // it divides the row).
            if let Some(g) = m.q8_group() {
                let q = q8.get_or_insert_with(Q8Input::default);
                q.cols = q.cols.max(m.cols());
                q.scales = q.scales.max(m.cols().checked_div(g).unwrap_or(0));
            }
        };
        note(&embedding);
        note(&output);
        // Every layer's tensors checked once here, so that the step's lookups
        // cannot fail on a valid image.
        for l in 0..dims.n_layers {
            let w = LayerWeights::from_image(&image, l)?;
            for m in w.matrices().iter().flatten() {
                note(m);
            }
        }
        Ok(Model {
            position: position(&image, &h, &dims)?,
            image,
            dims,
            attn,
            norm: Norm {
                kind: b.norm,
                eps: h.norm_eps,
            },
            ffn: b.ffn,
            residual: b.residual,
            embedding,
            embed_scale: (b.embed_scale != 0.0).then_some(b.embed_scale),
            embed_norm,
            final_norm: NormWeights {
                weight: weights::vector(&image, TensorKind::FinalNorm, 0)?,
                bias: opt(TensorKind::FinalNormBias)?,
            },
            output,
            output_bias: opt(TensorKind::OutputBias)?,
            q8,
        })
    }

    /// [`Image::parse`] then [`Model::new`]: the model in the image bytes
    /// `bytes` (4-byte aligned, e.g. from [`crate::include_image!`]).
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        Model::new(Image::parse(bytes)?)
    }

    /// The image.
    pub const fn image(&self) -> &Image<'a> {
        &self.image
    }

    /// The image header.
    pub const fn header(&self) -> &Header {
        self.image.header()
    }

    /// The model's widths.
    pub const fn dims(&self) -> &Dims {
        &self.dims
    }

    /// The attention block's heads, scaling and window.
    pub const fn attn_config(&self) -> &AttnConfig {
        &self.attn
    }

    /// The position hook, resolved from the image.
    pub const fn position(&self) -> &Position<'a> {
        &self.position
    }

    /// Vocabulary size (logits per step).
    pub const fn vocab_size(&self) -> usize {
        self.dims.vocab_size
    }

    /// The longest usable context (positions covered by the position tables).
    pub const fn max_context(&self) -> usize {
        self.dims.seq_len
    }

    /// Whether any matrix is stored as Q8.
    pub const fn is_quantized(&self) -> bool {
        self.q8.is_some()
    }

    /// The tokenizer bytes (llama2.c format) when the image carries them.
    pub fn tokenizer(&self) -> Option<&'a [u8]> {
        match self.image.tensor(TensorKind::Tokenizer, 0) {
            Ok(TensorData::U8(b)) => Some(b),
            _ => None,
        }
    }

    /// The weights of layer `layer`, looked up in the image's directory (one
    /// index per tensor; checked once by [`Model::new`]).
    ///
    /// Errors: [`Error::MissingTensor`] past the last layer.
    #[inline]
    pub fn layer(&self, layer: usize) -> Result<LayerWeights<'a>, Error> {
        LayerWeights::from_image(&self.image, layer)
    }

    /// The layout of a session's arena for `context` positions and a KV cache
    /// of format `kv` (sizes saturate at `usize::MAX`).
    pub fn arena_layout(&self, context: usize, kv: KvFormat) -> ArenaLayout {
        self.arena_layout_for(context, kv, Arith::Float)
    }

    /// [`Model::arena_layout`] for a step of arithmetic `arith` (the integer
    /// step keeps its own int8 cache whatever `kv` says).
    pub fn arena_layout_for(&self, context: usize, kv: KvFormat, arith: Arith) -> ArenaLayout {
        let d = self.dims();
        let rows = d.n_layers.saturating_mul(context);
        let integer = arith == Arith::Integer;
        // The integer cache keeps one byte of scale a row (for its keys, and
        // one for its values), in f32-sized slots.
        let head_scales = rows.div_ceil(4);
        // The integer step's int8 values sit in pairs of positions (rounded
        // up to even) of pairs of values (`kv_dim` rounded up to even): see
        // `integer::paired_value`.
        let paired = d
            .n_layers
            .saturating_mul(context.saturating_add(context % 2))
            .saturating_mul(d.kv_dim.saturating_add(d.kv_dim % 2));
        let (cache_f32, cache_i8, cache_i16) = match kv {
            KvFormat::F32 => (rows.saturating_mul(d.kv_dim), 0, 0),
            KvFormat::Q8 if integer => (head_scales, paired, 0),
            KvFormat::Q8 => (rows, rows.saturating_mul(d.kv_dim), 0),
            KvFormat::Q16 => (head_scales, 0, rows.saturating_mul(d.kv_dim)),
        };
        // `attn` computes query heads that share a kv head two at a time, in
        // two rows. The integer step scores one head at a time; with the int8
        // cache its value-mix weights go two keys a word after the scores
        // (`integer::weight_pairs`: at most `context / 2 + 1` words); its Q16
        // logits land at the start of the buffer after the last layer.
        let a = self.attn_config();
        let att = match (integer, kv) {
            (true, KvFormat::Q8) => context.saturating_add(context / 2 + 1).max(d.vocab_size),
            (true, _) => context.max(d.vocab_size),
            _ if (a.n_heads() / a.n_kv_heads()) % 2 == 0 => context.saturating_mul(2),
            _ => context,
        };
        let (q8_values, q8_scales) = self.q8_input();
        ArenaLayout {
            x: d.dim,
            xb: d.dim.max(d.q_dim),
            xb2: d.dim,
            hb: d.hidden_dim,
            hb2: if self.is_swiglu() { d.hidden_dim } else { 0 },
            ffn_out: if self.is_parallel() { d.dim } else { 0 },
            q: d.q_dim,
            k: d.kv_dim,
            v: d.kv_dim,
            att,
            logits: d.vocab_size,
            cache_f32,
            cache_i8,
            cache_i16,
            q8_scales,
            // The integer step quantizes its inputs to int16, in `heads`.
            q8_values: if integer { 0 } else { q8_values },
            int_aux: if integer {
                d.rope_words()
                    .saturating_add((a.n_heads().saturating_add(a.n_kv_heads())).div_ceil(4))
            } else {
                0
            },
            heads: if integer {
                d.q_dim.saturating_add(d.kv_dim).saturating_add(q8_values)
            } else {
                0
            },
        }
    }

    /// Exact arena bytes a [`super::Session`] of `context` positions needs when the
    /// arena starts 4-byte aligned (e.g. a `[u32]` or `[f32]` cast to bytes); an
    /// unaligned arena needs up to 3 more. Saturates at `usize::MAX`.
    pub fn arena_bytes(&self, context: usize) -> usize {
        self.arena_bytes_with(context, KvFormat::F32)
    }

    /// [`Model::arena_bytes`] for a session whose KV cache has format `kv`
    /// ([`super::Session::with_kv`]).
    pub fn arena_bytes_with(&self, context: usize, kv: KvFormat) -> usize {
        self.arena_layout(context, kv).bytes()
    }

    /// [`Model::arena_bytes`] for a session of arithmetic `arith` and KV format
    /// `kv` ([`super::Session::open`]).
    pub fn arena_bytes_for(&self, context: usize, kv: KvFormat, arith: Arith) -> usize {
        self.arena_layout_for(context, kv, arith).bytes()
    }

    /// `(cols, scales)` of the quantized activation (zeros: no Q8 matrix).
    pub(super) fn q8_input(&self) -> (usize, usize) {
        self.q8.map_or((0, 0), |q| (q.cols, q.scales))
    }

    /// Whether the feed-forward network is SwiGLU.
    pub(super) const fn is_swiglu(&self) -> bool {
        matches!(self.ffn, FfnKind::SwiGlu)
    }

    /// Whether attention and feed-forward run in parallel.
    pub(super) const fn is_parallel(&self) -> bool {
        !matches!(self.residual, Residual::Sequential)
    }
}

/// The image's position hook.
fn position<'a>(image: &Image<'a>, h: &Header, d: &Dims) -> Result<Position<'a>, Error> {
    let opt = |kind| weights::optional_vector(image, kind, 0);
    Ok(match h.block.position {
        PositionHook::None => Position::None,
        PositionHook::Rope if h.rotary_dim == 0 => Position::None,
        PositionHook::Rope => {
            let pairs = h.rotary_dim as usize / 2;
            let (Some(cos), Some(sin)) = (opt(TensorKind::RopeCos)?, opt(TensorKind::RopeSin)?)
            else {
                return Err(Error::MissingTensor);
            };
            if cos.len() != d.seq_len * pairs {
                return Err(Error::BadTensor);
            }
            let layout = if h.has(image::FLAG_ROPE_INTERLEAVED) {
                RopeLayout::Interleaved
            } else {
                RopeLayout::HalfSplit
            };
            Position::Rope {
                table: RopeTable::new(cos, sin, pairs).map_err(|_| Error::BadTensor)?,
                layout,
            }
        }
        PositionHook::Alibi => {
            let slopes = opt(TensorKind::AlibiSlopes)?.ok_or(Error::MissingTensor)?;
            Position::Alibi(AlibiBias::new(slopes).map_err(|_| Error::BadTensor)?)
        }
        PositionHook::T5 => {
            let p = h.block.t5;
            let (nb, md) = (p.num_buckets as usize, p.max_distance as usize);
            let config =
                T5Buckets::new(false, nb, md).map_err(|_| Error::InconsistentDimensions)?;
            let buckets = match image.tensor(TensorKind::T5Buckets, 0)? {
                TensorData::U8(b) => T5BucketTable::from_slice(config, b),
                _ => return Err(Error::BadTensor),
            }
            .map_err(|_| Error::BadTensor)?;
            let weights = opt(TensorKind::T5Bias)?.ok_or(Error::MissingTensor)?;
            let weights = T5RelativeBias::new(weights, nb, h.n_heads as usize)
                .map_err(|_| Error::BadTensor)?;
            Position::T5(T5Bias::new(buckets, weights).map_err(|_| Error::BadTensor)?)
        }
        PositionHook::Table => {
            let table = opt(TensorKind::PosEmbedding)?.ok_or(Error::MissingTensor)?;
            let t = LearnedPositions::new(table, d.dim, h.block.pos_offset as usize)
                .map_err(|_| Error::BadTensor)?;
            if t.positions() < d.seq_len {
                return Err(Error::BadTensor);
            }
            Position::Table(t)
        }
    })
}
