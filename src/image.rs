//! The model image: one file the host tool writes and the device reads in place.
//!
//! An image is a `&'static [u8]` in flash (or any byte slice), read zero-copy:
//! [`Image::parse`] validates everything once — sizes, offsets, alignment, shapes,
//! the tensor directory and the checksum — and returns a typed [`Error`] for any
//! defect; afterwards every accessor is infallible in practice and never reads out
//! of bounds.
//!
//! ## Layout (all integers little-endian)
//!
//! ```text
//! offset 0    header, HEADER_SIZE (128) bytes          see `Header`
//! offset 128  tensor directory, n_tensors × 32 bytes   see `TensorRecord`, canonical order
//! ...         tensor data, each 4-byte aligned         f32 / int8 + f32 scales / raw bytes
//! len - 8     checksum, u64                            `checksum(&image[..len - 8])`
//! ```
//!
//! Header fields (u32 unless noted): `magic` (8 bytes, `MICROFMR`), `version`,
//! `header_size`, `arch`, `flags`, `dim`, `hidden_dim`, `n_layers`, `n_heads`,
//! `n_kv_heads`, `head_dim`, `vocab_size`, `seq_len` (positions the tables and the
//! context cover), `rotary_dim`, `sliding_window` (0: none), `norm_eps` (f32),
//! `group_size` (the default Q8 group, 0 when no Q8 tensor uses it), `bos_id`,
//! `eos_id`, `n_tensors`, `image_len`, `train_context` (the checkpoint's `max_position_embeddings`), then
//! the block shape ([`Block`]: one word of four byte-sized kinds — norm, FFN,
//! residual, position hook — then `pos_offset`, `embed_scale` (f32) and
//! `attn_scale` (f32); all zero is the Llama block every version-1 image had),
//! then reserved bytes that must be zero.
//!
//! Tensors appear in the canonical order of [`slots`]: the global tensors, then
//! each layer's tensors in a fixed order, so [`Image::tensor`] finds a tensor in
//! O(1) with no search at run time.
//!
//! Numeric formats: `F32` (row-major `[rows][cols]`), `Q8` (llama2.c `runq.c` Q8_0:
//! int8 values row-major, then one f32 scale per `group` consecutive values of a
//! row, `value = q · scale`), `F16` (IEEE binary16 bit patterns, row-major,
//! widened exactly to f32 when used: see [`crate::num::fp16`]), `U8` (raw bytes,
//! e.g. the tokenizer). `Q8` and `F16` are for the matrices only
//! ([`TensorKind::quantizable`]); norms, biases and tables stay `F32`. Readers
//! that predate `F16` reject its dtype value as [`Error::Malformed`].
//!
//! A Q8 tensor's group is its record's last word (`TensorRecord::group`), or the
//! header's `group_size` when that word is 0. Every group is a multiple of 4 of at
//! most 4096 that divides the tensor's row length, so one model may store, say,
//! `w_down` (rows of 172) in groups of 4 and the other matrices in groups of 64.
//! Images whose Q8 tensors all use the header's group write 0 there, byte for byte
//! what readers that predate per-tensor groups expect; those readers reject a
//! non-zero word as [`Error::Malformed`] rather than misread it.
//!
//! The checksum is a Fletcher-style pair of 64-bit running sums over the image's
//! little-endian u32 words ([`checksum`]): any single changed byte changes it.

use crate::Error;

/// The 8 magic bytes every image starts with.
pub const MAGIC: [u8; 8] = *b"MICROFMR";
/// The format version this crate reads and writes.
pub const VERSION: u32 = 1;
/// Bytes in the header.
pub const HEADER_SIZE: usize = 128;
/// Bytes in one tensor directory record.
pub const RECORD_SIZE: usize = 32;
/// Bytes of the trailing checksum.
pub const CHECKSUM_SIZE: usize = 8;
/// Alignment of every tensor's data and of the image itself in memory.
pub const ALIGN: usize = 4;

/// Header flag: the output head reuses the token embedding (no `Output` tensor).
pub const FLAG_TIED_EMBEDDINGS: u32 = 1 << 0;
/// Header flag: RoPE pairs are interleaved `(2i, 2i+1)` (llama2.c, Meta, GPT-J);
/// when clear they are half-split `(i, i + rotary_dim/2)` (Hugging Face Llama, NeoX).
pub const FLAG_ROPE_INTERLEAVED: u32 = 1 << 1;
/// Header flag: q/k/v projections have biases (Qwen2).
pub const FLAG_QKV_BIAS: u32 = 1 << 2;
/// Header flag: the image carries a tokenizer (`Tokenizer` tensor).
pub const FLAG_TOKENIZER: u32 = 1 << 3;
/// Header flag: the attention output projection has a bias (`Bo`: GPT-2, XGLM,
/// BLOOM, GPT-NeoX, Phi).
pub const FLAG_O_BIAS: u32 = 1 << 4;
/// Header flag: every feed-forward matrix has a bias (`BUp`, `BDown`, and `BGate`
/// in a SwiGLU block).
pub const FLAG_MLP_BIAS: u32 = 1 << 5;
/// Header flag: the output head has a bias (`OutputBias`: GPT-J, Phi); also with
/// tied embeddings.
pub const FLAG_OUTPUT_BIAS: u32 = 1 << 6;
/// Header flag: the token embedding is normalised before layer 0 (`EmbedNorm`,
/// plus `EmbedNormBias` for a biased LayerNorm: BLOOM's `word_embeddings_layernorm`).
pub const FLAG_EMBED_NORM: u32 = 1 << 7;
/// Every flag this version knows; others are rejected.
const KNOWN_FLAGS: u32 = FLAG_TIED_EMBEDDINGS
    | FLAG_ROPE_INTERLEAVED
    | FLAG_QKV_BIAS
    | FLAG_TOKENIZER
    | FLAG_O_BIAS
    | FLAG_MLP_BIAS
    | FLAG_OUTPUT_BIAS
    | FLAG_EMBED_NORM;

/// Model architecture family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u32)]
pub enum Arch {
    /// Decoder-only transformer with a KV cache. The header's [`Block`] says how
    /// a layer is built: all zero is the Llama family (RMSNorm, SwiGLU, RoPE, GQA:
    /// Llama, Qwen2, Mistral, Phi-3, llama2.c); other blocks give GPT-2, XGLM,
    /// BLOOM, MPT, GPT-J, GPT-NeoX and Phi.
    Llama = 1,
}

impl Arch {
    /// The architecture for a header value.
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Arch::Llama),
            _ => None,
        }
    }
}

/// Storage format of one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum DType {
    /// 32-bit IEEE floats.
    F32 = 0,
    /// int8 with one f32 scale per `group_size` values (Q8_0).
    Q8 = 1,
    /// Raw bytes.
    U8 = 2,
    /// IEEE 754 binary16 (11 significant bits), widened to f32 when used.
    F16 = 3,
}

impl DType {
    /// The dtype for a record value.
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(DType::F32),
            1 => Some(DType::Q8),
            2 => Some(DType::U8),
            3 => Some(DType::F16),
            _ => None,
        }
    }
}

/// What a tensor is. Shapes are `[rows][cols]`, row-major.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u16)]
pub enum TensorKind {
    /// Token embedding `[vocab_size][dim]`.
    TokenEmbedding = 1,
    /// Final norm weight `[1][dim]`.
    FinalNorm = 2,
    /// Output head `[vocab_size][dim]` (absent when embeddings are tied).
    Output = 3,
    /// RoPE cosines `[seq_len][rotary_dim/2]`, f32, attention factor applied.
    RopeCos = 4,
    /// RoPE sines `[seq_len][rotary_dim/2]`, f32, attention factor applied.
    RopeSin = 5,
    /// Tokenizer bytes (llama2.c tokenizer format) `[1][n_bytes]`, U8.
    Tokenizer = 6,
    /// Absolute position table `[seq_len + pos_offset][dim]` (learned: GPT-2 `wpe`;
    /// sinusoidal: XGLM's table with its `offset = 2` leading rows), with
    /// [`PositionHook::Table`].
    PosEmbedding = 7,
    /// Embedding norm weight `[1][dim]` (with [`FLAG_EMBED_NORM`]).
    EmbedNorm = 8,
    /// Embedding norm bias `[1][dim]` (with [`FLAG_EMBED_NORM`] and [`NormKind::LayerNorm`]).
    EmbedNormBias = 9,
    /// Final norm bias `[1][dim]` ([`NormKind::LayerNorm`]).
    FinalNormBias = 10,
    /// Output head bias `[1][vocab_size]` (with [`FLAG_OUTPUT_BIAS`]).
    OutputBias = 11,
    /// ALiBi slopes `[1][n_heads]`, f32 as Hugging Face computes them, with
    /// [`PositionHook::Alibi`].
    AlibiSlopes = 12,
    /// Attention norm weight `[1][dim]` (per layer).
    AttnNorm = 16,
    /// Query projection `[n_heads·head_dim][dim]`.
    Wq = 17,
    /// Key projection `[n_kv_heads·head_dim][dim]`.
    Wk = 18,
    /// Value projection `[n_kv_heads·head_dim][dim]`.
    Wv = 19,
    /// Query bias `[1][n_heads·head_dim]` (with [`FLAG_QKV_BIAS`]).
    Bq = 20,
    /// Key bias `[1][n_kv_heads·head_dim]`.
    Bk = 21,
    /// Value bias `[1][n_kv_heads·head_dim]`.
    Bv = 22,
    /// Attention output projection `[dim][n_heads·head_dim]`.
    Wo = 23,
    /// Feed-forward norm weight `[1][dim]`.
    FfnNorm = 24,
    /// SwiGLU gate projection (`w1`) `[hidden_dim][dim]` (SwiGLU blocks only).
    WGate = 25,
    /// SwiGLU up projection (`w3`) `[hidden_dim][dim]`; the MLP's first matrix
    /// (`c_fc`, `fc1`, `dense_h_to_4h`, `up_proj`, `fc_in`) in a GELU block.
    WUp = 26,
    /// SwiGLU down projection (`w2`) `[dim][hidden_dim]`; the MLP's second
    /// matrix (`c_proj`, `fc2`, `dense_4h_to_h`) in a GELU block.
    WDown = 27,
    /// Attention norm bias `[1][dim]` ([`NormKind::LayerNorm`]).
    AttnNormBias = 28,
    /// Attention output bias `[1][dim]` (with [`FLAG_O_BIAS`]).
    Bo = 29,
    /// Feed-forward norm bias `[1][dim]` ([`NormKind::LayerNorm`], when `FfnNorm` exists).
    FfnNormBias = 30,
    /// Gate bias `[1][hidden_dim]` (SwiGLU with [`FLAG_MLP_BIAS`]).
    BGate = 31,
    /// Up (first MLP matrix) bias `[1][hidden_dim]` (with [`FLAG_MLP_BIAS`]).
    BUp = 32,
    /// Down (second MLP matrix) bias `[1][dim]` (with [`FLAG_MLP_BIAS`]).
    BDown = 33,
}

impl TensorKind {
    /// The kind for a record value.
    pub const fn from_u16(v: u16) -> Option<Self> {
        use TensorKind::*;
        Some(match v {
            1 => TokenEmbedding,
            2 => FinalNorm,
            3 => Output,
            4 => RopeCos,
            5 => RopeSin,
            6 => Tokenizer,
            7 => PosEmbedding,
            8 => EmbedNorm,
            9 => EmbedNormBias,
            10 => FinalNormBias,
            11 => OutputBias,
            12 => AlibiSlopes,
            16 => AttnNorm,
            17 => Wq,
            18 => Wk,
            19 => Wv,
            20 => Bq,
            21 => Bk,
            22 => Bv,
            23 => Wo,
            24 => FfnNorm,
            25 => WGate,
            26 => WUp,
            27 => WDown,
            28 => AttnNormBias,
            29 => Bo,
            30 => FfnNormBias,
            31 => BGate,
            32 => BUp,
            33 => BDown,
            _ => return None,
        })
    }

    /// Whether the kind exists once per layer (else once per model).
    pub const fn per_layer(self) -> bool {
        self as u16 >= 16
    }

    /// Whether the kind is a matrix that may be stored as Q8 or F16.
    pub const fn quantizable(self) -> bool {
        use TensorKind::*;
        matches!(
            self,
            TokenEmbedding | Output | Wq | Wk | Wv | Wo | WGate | WUp | WDown
        )
    }
}

/// Normalisation used by every norm of the model (block word, byte 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum NormKind {
    /// RMSNorm `w · x/√(mean(x²) + eps)` (Llama, llama2.c).
    Rms = 0,
    /// LayerNorm `w · (x − mean)/√(var + eps) + b`: every norm weight has a bias
    /// tensor (GPT-2, XGLM, BLOOM, GPT-J, GPT-NeoX, Phi).
    LayerNorm = 1,
    /// LayerNorm without bias (MPT).
    LayerNormNoBias = 2,
}

/// The feed-forward network (block word, byte 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum FfnKind {
    /// `down(silu(gate·x) ⊙ up·x)` (Llama).
    SwiGlu = 0,
    /// `down(gelu_tanh(up·x))`, GELU's tanh approximation
    /// `½x(1 + tanh(√(2/π)(x + 0.044715x³)))` (GPT-2 `gelu_new`, BLOOM, GPT-J, Phi).
    GeluTanh = 1,
    /// `down(gelu(up·x))`, exact GELU `½x(1 + erf(x/√2))` (XGLM, MPT, GPT-NeoX `gelu`).
    Gelu = 2,
}

/// How attention and the feed-forward network join the residual stream (block
/// word, byte 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Residual {
    /// `x = x + attn(norm₁(x))`, then `x = x + ffn(norm₂(x))` (Llama, GPT-2, ...).
    Sequential = 0,
    /// `x = attn(n) + ffn(n) + x` with one norm `n = norm₁(x)`: no `FfnNorm`
    /// (GPT-J, Phi).
    ParallelShared = 1,
    /// `x = ffn(norm₂(x)) + attn(norm₁(x)) + x` (GPT-NeoX `use_parallel_residual`).
    Parallel = 2,
}

/// Where positions enter the model (block word, byte 3): one hook per scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum PositionHook {
    /// Rotate q and k by the `RopeCos`/`RopeSin` rows (`rotary_dim` dims per head).
    Rope = 0,
    /// Add `−m_h·(i − j)` to the scores, slopes from `AlibiSlopes`; `rotary_dim` 0.
    Alibi = 1,
    /// Add `PosEmbedding` row `position + pos_offset` to the token embedding;
    /// `rotary_dim` 0.
    Table = 2,
}

/// The shape of a transformer block beyond the header's dimensions: header
/// words 18 to 21. All zero ([`Block::LLAMA`]) is the Llama block, so every image
/// written before these words existed reads as before.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Block {
    /// Norm kind (word 18, byte 0).
    pub norm: NormKind,
    /// Feed-forward kind (word 18, byte 1).
    pub ffn: FfnKind,
    /// Residual wiring (word 18, byte 2).
    pub residual: Residual,
    /// Position hook (word 18, byte 3).
    pub position: PositionHook,
    /// With [`PositionHook::Table`]: the table row of position 0 (XGLM: 2). Word 19.
    pub pos_offset: u32,
    /// Multiplier of the token embedding (XGLM `scale_embedding`: `√d_model`);
    /// 0: none. Word 20, f32.
    pub embed_scale: f32,
    /// Multiplier of `q·k` before the softmax (MPT `softmax_scale`; 1 for GPT-2
    /// with `scale_attn_weights: false`); 0: divide by `√head_dim` as `run.c`. Word 21, f32.
    pub attn_scale: f32,
}

impl Block {
    /// The Llama block: RMSNorm, SwiGLU, sequential residual, RoPE, no scales.
    pub const LLAMA: Block = Block {
        norm: NormKind::Rms,
        ffn: FfnKind::SwiGlu,
        residual: Residual::Sequential,
        position: PositionHook::Rope,
        pos_offset: 0,
        embed_scale: 0.0,
        attn_scale: 0.0,
    };

    /// The four header words.
    pub fn to_words(&self) -> [u32; 4] {
        let kinds = u32::from_le_bytes([
            self.norm as u8,
            self.ffn as u8,
            self.residual as u8,
            self.position as u8,
        ]);
        [
            kinds,
            self.pos_offset,
            self.embed_scale.to_bits(),
            self.attn_scale.to_bits(),
        ]
    }

    /// Decodes the four header words ([`Error::Malformed`] for an unknown kind).
    pub fn from_words(w: [u32; 4]) -> Result<Block, Error> {
        let [norm, ffn, residual, position] = w[0].to_le_bytes();
        Ok(Block {
            norm: match norm {
                0 => NormKind::Rms,
                1 => NormKind::LayerNorm,
                2 => NormKind::LayerNormNoBias,
                _ => return Err(Error::Malformed),
            },
            ffn: match ffn {
                0 => FfnKind::SwiGlu,
                1 => FfnKind::GeluTanh,
                2 => FfnKind::Gelu,
                _ => return Err(Error::Malformed),
            },
            residual: match residual {
                0 => Residual::Sequential,
                1 => Residual::ParallelShared,
                2 => Residual::Parallel,
                _ => return Err(Error::Malformed),
            },
            position: match position {
                0 => PositionHook::Rope,
                1 => PositionHook::Alibi,
                2 => PositionHook::Table,
                _ => return Err(Error::Malformed),
            },
            pos_offset: w[1],
            embed_scale: f32::from_bits(w[2]),
            attn_scale: f32::from_bits(w[3]),
        })
    }

    /// Whether the norms carry bias tensors.
    pub const fn norm_bias(&self) -> bool {
        matches!(self.norm, NormKind::LayerNorm)
    }

    /// Whether the block has its own feed-forward norm (`FfnNorm`).
    pub const fn ffn_norm(&self) -> bool {
        !matches!(self.residual, Residual::ParallelShared)
    }
}

/// The decoded, validated header.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Header {
    /// Architecture family.
    pub arch: Arch,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Model (residual) width.
    pub dim: u32,
    /// Feed-forward hidden width.
    pub hidden_dim: u32,
    /// Transformer layers.
    pub n_layers: u32,
    /// Query heads.
    pub n_heads: u32,
    /// Key/value heads (divides `n_heads`: MHA, GQA, MQA).
    pub n_kv_heads: u32,
    /// Dimension of one head.
    pub head_dim: u32,
    /// Vocabulary size.
    pub vocab_size: u32,
    /// Positions covered by the RoPE tables: the largest usable context.
    pub seq_len: u32,
    /// Rotated dimensions per head (even, `<= head_dim`).
    pub rotary_dim: u32,
    /// Sliding attention window in positions (0: attend to the whole context).
    pub sliding_window: u32,
    /// Norm epsilon.
    pub norm_eps: f32,
    /// The default Q8 group size: the group of every Q8 tensor whose record does
    /// not name its own (0 when no Q8 tensor relies on it).
    pub group_size: u32,
    /// Beginning-of-sequence token id.
    pub bos_id: u32,
    /// End-of-sequence token id.
    pub eos_id: u32,
    /// Tensors in the directory.
    pub n_tensors: u32,
    /// Total image length in bytes, checksum included.
    pub image_len: u32,
    /// The checkpoint's training context (`max_position_embeddings`), for reference.
    pub train_context: u32,
    /// How a layer is built (header words 18 to 21; [`Block::LLAMA`] when zero).
    pub block: Block,
}

fn rd_u32(b: &[u8], at: usize) -> Result<u32, Error> {
    match b.get(at..at + 4) {
        Some(s) => Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]])),
        None => Err(Error::Truncated),
    }
}

impl Header {
    /// Query width `n_heads · head_dim`.
    pub const fn q_dim(&self) -> usize {
        (self.n_heads * self.head_dim) as usize
    }

    /// Key/value width `n_kv_heads · head_dim`.
    pub const fn kv_dim(&self) -> usize {
        (self.n_kv_heads * self.head_dim) as usize
    }

    /// Whether a flag is set.
    pub const fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    /// The header as bytes (for writers).
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[..8].copy_from_slice(&MAGIC);
        let words = [
            VERSION,
            HEADER_SIZE as u32,
            self.arch as u32,
            self.flags,
            self.dim,
            self.hidden_dim,
            self.n_layers,
            self.n_heads,
            self.n_kv_heads,
            self.head_dim,
            self.vocab_size,
            self.seq_len,
            self.rotary_dim,
            self.sliding_window,
            self.norm_eps.to_bits(),
            self.group_size,
            self.bos_id,
            self.eos_id,
            self.n_tensors,
            self.image_len,
            self.train_context,
        ];
        let block = self.block.to_words();
        for (i, w) in words.iter().chain(&block).enumerate() {
            b[8 + 4 * i..12 + 4 * i].copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    /// Decodes and validates a header (dimensions consistent, flags known).
    pub fn parse(b: &[u8]) -> Result<Header, Error> {
        if b.len() < HEADER_SIZE {
            return Err(Error::Truncated);
        }
        if b[..8] != MAGIC {
            return Err(Error::BadMagic);
        }
        let version = rd_u32(b, 8)?;
        if version != VERSION {
            return Err(Error::UnsupportedVersion { version });
        }
        if rd_u32(b, 12)? as usize != HEADER_SIZE {
            return Err(Error::Malformed);
        }
        let arch = Arch::from_u32(rd_u32(b, 16)?).ok_or(Error::UnsupportedArch)?;
        let w = |i: usize| rd_u32(b, 20 + 4 * i);
        let h = Header {
            arch,
            flags: w(0)?,
            dim: w(1)?,
            hidden_dim: w(2)?,
            n_layers: w(3)?,
            n_heads: w(4)?,
            n_kv_heads: w(5)?,
            head_dim: w(6)?,
            vocab_size: w(7)?,
            seq_len: w(8)?,
            rotary_dim: w(9)?,
            sliding_window: w(10)?,
            norm_eps: f32::from_bits(w(11)?),
            group_size: w(12)?,
            bos_id: w(13)?,
            eos_id: w(14)?,
            n_tensors: w(15)?,
            image_len: w(16)?,
            train_context: w(17)?,
            block: Block::from_words([w(18)?, w(19)?, w(20)?, w(21)?])?,
        };
        if b[20 + 4 * 22..HEADER_SIZE].iter().any(|&x| x != 0) {
            return Err(Error::Malformed);
        }
        h.validate()?;
        Ok(h)
    }

    /// Checks that the dimensions are consistent with each other.
    pub fn validate(&self) -> Result<(), Error> {
        if self.flags & !KNOWN_FLAGS != 0 {
            return Err(Error::Malformed);
        }
        let dims = [
            self.dim,
            self.hidden_dim,
            self.n_layers,
            self.n_heads,
            self.n_kv_heads,
            self.head_dim,
            self.vocab_size,
            self.seq_len,
        ];
        if dims.contains(&0) {
            return Err(Error::InconsistentDimensions);
        }
        // Bound every dimension so that products below cannot overflow u32/usize.
        if dims.iter().any(|&d| d > (1 << 20)) || self.n_layers > 1024 {
            return Err(Error::InconsistentDimensions);
        }
        let rope = matches!(self.block.position, PositionHook::Rope);
        if self.n_heads % self.n_kv_heads != 0
            || self.rotary_dim % 2 != 0
            || self.rotary_dim > self.head_dim
            || (rope && self.head_dim % 2 != 0)
            || (!rope && self.rotary_dim != 0)
            || self.bos_id >= self.vocab_size
            || self.eos_id >= self.vocab_size
        {
            return Err(Error::InconsistentDimensions);
        }
        if !(self.norm_eps.is_finite() && self.norm_eps >= 0.0) {
            return Err(Error::InconsistentDimensions);
        }
        if self.group_size != 0 && !valid_group(self.group_size) {
            return Err(Error::InconsistentDimensions);
        }
        let b = &self.block;
        let table = matches!(b.position, PositionHook::Table);
        if (b.pos_offset != 0 && !table) || b.pos_offset > (1 << 20) {
            return Err(Error::InconsistentDimensions);
        }
        for scale in [b.embed_scale, b.attn_scale] {
            if !(scale.is_finite() && scale >= 0.0) {
                return Err(Error::InconsistentDimensions);
            }
        }
        Ok(())
    }

    /// The group a Q8 tensor with this record `group` word uses: its own, or the
    /// header's when the word is 0 (0 if neither is set).
    pub const fn q8_group(&self, record_group: u32) -> u32 {
        if record_group != 0 {
            record_group
        } else {
            self.group_size
        }
    }

    /// `(rows, cols)` a tensor of this kind must have (the tokenizer's `cols` is free).
    pub const fn expected_shape(&self, kind: TensorKind) -> (usize, usize) {
        use TensorKind::*;
        let dim = self.dim as usize;
        let hidden = self.hidden_dim as usize;
        let vocab = self.vocab_size as usize;
        match kind {
            TokenEmbedding | Output => (vocab, dim),
            FinalNorm | AttnNorm | FfnNorm => (1, dim),
            EmbedNorm | EmbedNormBias | FinalNormBias | AttnNormBias | FfnNormBias => (1, dim),
            RopeCos | RopeSin => (self.seq_len as usize, (self.rotary_dim / 2) as usize),
            Tokenizer => (1, 0),
            PosEmbedding => (self.seq_len as usize + self.block.pos_offset as usize, dim),
            OutputBias => (1, vocab),
            AlibiSlopes => (1, self.n_heads as usize),
            Bo | BDown => (1, dim),
            BGate | BUp => (1, hidden),
            Wq => (self.q_dim(), dim),
            Wk | Wv => (self.kv_dim(), dim),
            Bq => (1, self.q_dim()),
            Bk | Bv => (1, self.kv_dim()),
            Wo => (dim, self.q_dim()),
            WGate | WUp => (hidden, dim),
            WDown => (dim, hidden),
        }
    }
}

/// Whether `g` can be a Q8 group size: a non-zero multiple of 4, at most 4096.
pub const fn valid_group(g: u32) -> bool {
    g != 0 && g % 4 == 0 && g <= 4096
}

/// One tensor directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TensorRecord {
    /// What the tensor is.
    pub kind: TensorKind,
    /// Layer index (0 for global tensors).
    pub layer: u16,
    /// Storage format.
    pub dtype: DType,
    /// Rows.
    pub rows: u32,
    /// Columns.
    pub cols: u32,
    /// Byte offset of the data from the image start.
    pub offset: u32,
    /// Byte length of the data (Q8: the int8 values only).
    pub len: u32,
    /// Q8: byte offset of the f32 scales; 0 otherwise.
    pub scale_offset: u32,
    /// Q8: this tensor's group size, or 0 for the header's `group_size`; always 0
    /// for other dtypes.
    pub group: u32,
}

impl TensorRecord {
    /// The record as bytes (for writers).
    pub fn to_bytes(&self) -> [u8; RECORD_SIZE] {
        let mut b = [0u8; RECORD_SIZE];
        b[0..2].copy_from_slice(&(self.kind as u16).to_le_bytes());
        b[2..4].copy_from_slice(&self.layer.to_le_bytes());
        b[4] = self.dtype as u8;
        let words = [
            self.rows,
            self.cols,
            self.offset,
            self.len,
            self.scale_offset,
            self.group,
        ];
        for (i, w) in words.iter().enumerate() {
            b[8 + 4 * i..12 + 4 * i].copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    /// Decodes a record (kind and dtype must be known; reserved bytes zero; a
    /// non-zero `group` only on a Q8 record).
    pub fn parse(b: &[u8]) -> Result<TensorRecord, Error> {
        if b.len() < RECORD_SIZE {
            return Err(Error::Truncated);
        }
        let kind =
            TensorKind::from_u16(u16::from_le_bytes([b[0], b[1]])).ok_or(Error::Malformed)?;
        let layer = u16::from_le_bytes([b[2], b[3]]);
        let dtype = DType::from_u8(b[4]).ok_or(Error::Malformed)?;
        let group = rd_u32(b, 28)?;
        if b[5..8].iter().any(|&x| x != 0) || (group != 0 && dtype != DType::Q8) {
            return Err(Error::Malformed);
        }
        Ok(TensorRecord {
            kind,
            layer,
            dtype,
            rows: rd_u32(b, 8)?,
            cols: rd_u32(b, 12)?,
            offset: rd_u32(b, 16)?,
            len: rd_u32(b, 20)?,
            scale_offset: rd_u32(b, 24)?,
            group,
        })
    }
}

/// Global tensors in canonical order (before the layers).
///
/// Kinds a Llama header (block all zero, no new flag) omits sit between the
/// older ones, so a Llama image's order is the one version 1 always had.
const GLOBAL_ORDER: [TensorKind; 12] = [
    TensorKind::TokenEmbedding,
    TensorKind::PosEmbedding,
    TensorKind::EmbedNorm,
    TensorKind::EmbedNormBias,
    TensorKind::FinalNorm,
    TensorKind::FinalNormBias,
    TensorKind::Output,
    TensorKind::OutputBias,
    TensorKind::RopeCos,
    TensorKind::RopeSin,
    TensorKind::AlibiSlopes,
    TensorKind::Tokenizer,
];
/// Per-layer tensors in canonical order.
const LAYER_ORDER: [TensorKind; 18] = [
    TensorKind::AttnNorm,
    TensorKind::AttnNormBias,
    TensorKind::Wq,
    TensorKind::Wk,
    TensorKind::Wv,
    TensorKind::Bq,
    TensorKind::Bk,
    TensorKind::Bv,
    TensorKind::Wo,
    TensorKind::Bo,
    TensorKind::FfnNorm,
    TensorKind::FfnNormBias,
    TensorKind::WGate,
    TensorKind::WUp,
    TensorKind::WDown,
    TensorKind::BGate,
    TensorKind::BUp,
    TensorKind::BDown,
];

/// Whether a header's flags and block call for a tensor of this kind.
const fn present(h: &Header, kind: TensorKind) -> bool {
    use TensorKind::*;
    let b = &h.block;
    let swiglu = matches!(b.ffn, FfnKind::SwiGlu);
    match kind {
        Output => !h.has(FLAG_TIED_EMBEDDINGS),
        OutputBias => h.has(FLAG_OUTPUT_BIAS),
        Tokenizer => h.has(FLAG_TOKENIZER),
        Bq | Bk | Bv => h.has(FLAG_QKV_BIAS),
        Bo => h.has(FLAG_O_BIAS),
        RopeCos | RopeSin => matches!(b.position, PositionHook::Rope),
        AlibiSlopes => matches!(b.position, PositionHook::Alibi),
        PosEmbedding => matches!(b.position, PositionHook::Table),
        EmbedNorm => h.has(FLAG_EMBED_NORM),
        EmbedNormBias => h.has(FLAG_EMBED_NORM) && b.norm_bias(),
        FinalNormBias | AttnNormBias => b.norm_bias(),
        FfnNorm => b.ffn_norm(),
        FfnNormBias => b.ffn_norm() && b.norm_bias(),
        WGate => swiglu,
        BGate => swiglu && h.has(FLAG_MLP_BIAS),
        BUp | BDown => h.has(FLAG_MLP_BIAS),
        TokenEmbedding | FinalNorm | AttnNorm | Wq | Wk | Wv | Wo | WUp | WDown => true,
    }
}

/// Whether a header calls for a tensor of this kind (its flags and block).
pub const fn has_tensor(h: &Header, kind: TensorKind) -> bool {
    present(h, kind)
}

/// Number of global tensors for a header.
fn n_global(h: &Header) -> usize {
    GLOBAL_ORDER.iter().filter(|&&k| present(h, k)).count()
}

/// Number of tensors per layer for a header.
fn n_per_layer(h: &Header) -> usize {
    LAYER_ORDER.iter().filter(|&&k| present(h, k)).count()
}

/// The canonical `(kind, layer)` sequence of a header's tensor directory.
///
/// Writers emit tensors in this order; [`Image::parse`] requires it.
pub fn slots(h: &Header) -> impl Iterator<Item = (TensorKind, u16)> + '_ {
    let globals = GLOBAL_ORDER
        .iter()
        .copied()
        .filter(move |&k| present(h, k))
        .map(|k| (k, 0u16));
    let layers = (0..h.n_layers as u16).flat_map(move |l| {
        LAYER_ORDER
            .iter()
            .copied()
            .filter(move |&k| present(h, k))
            .map(move |k| (k, l))
    });
    globals.chain(layers)
}

/// Fletcher-style 64-bit checksum over little-endian u32 words (`data.len()` a
/// multiple of 4; a tail is zero-padded).
pub fn checksum(data: &[u8]) -> u64 {
    let mut s1: u64 = 0;
    let mut s2: u64 = 0;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        s1 = s1.wrapping_add(u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u64);
        s2 = s2.wrapping_add(s1);
    }
    let rem = chunks.remainder();
    if !rem.is_empty() {
        let mut w = [0u8; 4];
        w[..rem.len()].copy_from_slice(rem);
        s1 = s1.wrapping_add(u32::from_le_bytes(w) as u64);
        s2 = s2.wrapping_add(s1);
    }
    s2 ^ s1.rotate_left(32)
}

/// A tensor's data, borrowed from the image.
#[derive(Debug, Clone, Copy)]
pub enum TensorData<'a> {
    /// f32 values, row-major.
    F32(&'a [f32]),
    /// Q8_0 values with one scale per `group` values.
    Q8 {
        /// int8 values, row-major.
        values: &'a [i8],
        /// One scale per group.
        scales: &'a [f32],
        /// Values per scale.
        group: usize,
    },
    /// Raw bytes.
    U8(&'a [u8]),
    /// IEEE binary16 bit patterns, row-major ([`crate::num::fp16::to_f32`]).
    F16(&'a [u16]),
}

/// A validated model image.
#[derive(Debug, Clone, Copy)]
pub struct Image<'a> {
    bytes: &'a [u8],
    header: Header,
    n_global: usize,
    n_per_layer: usize,
    /// Each kind's slot in the directory (indexed by the kind's number): its place
    /// among the globals, or within a layer; [`NO_SLOT`] when absent. Makes
    /// [`Image::record`] one index computation.
    slots: [u8; KINDS],
}

/// One past the largest [`TensorKind`] number.
const KINDS: usize = 34;
const _: () = assert!(TensorKind::BDown as usize + 1 == KINDS);
/// [`Image`]'s slot of an absent kind.
const NO_SLOT: u8 = u8::MAX;

/// The directory slot of every kind for `h` (see [`Image`]).
fn slot_table(h: &Header) -> [u8; KINDS] {
    let mut t = [NO_SLOT; KINDS];
    for order in [&GLOBAL_ORDER[..], &LAYER_ORDER[..]] {
        for (slot, &k) in order.iter().filter(|&&k| present(h, k)).enumerate() {
            if let Some(e) = t.get_mut(k as usize) {
                *e = slot as u8;
            }
        }
    }
    t
}

impl<'a> Image<'a> {
    /// Validates an image and returns a view over it.
    ///
    /// Checks, in order: length and magic, version, header fields, total length,
    /// checksum, then every directory record (canonical order, shape, dtype,
    /// alignment, bounds). Returns the first defect as a typed error.
    /// The slice must start 4-byte aligned ([`Error::Misaligned`] otherwise).
    pub fn parse(bytes: &'a [u8]) -> Result<Image<'a>, Error> {
        if bytes.is_empty() {
            return Err(Error::Truncated);
        }
        if bytes.len() < 8 || bytes[..8] != MAGIC {
            return Err(if bytes.len() < 8 && MAGIC.starts_with(bytes) {
                Error::Truncated
            } else {
                Error::BadMagic
            });
        }
        let header = Header::parse(bytes)?;
        let len = header.image_len as usize;
        if bytes.len() < len {
            return Err(Error::Truncated);
        }
        if bytes.len() > len || len % ALIGN != 0 || len < HEADER_SIZE + CHECKSUM_SIZE {
            return Err(Error::Malformed);
        }
        if bytes.as_ptr().align_offset(ALIGN) != 0 {
            return Err(Error::Misaligned);
        }
        let body = len - CHECKSUM_SIZE;
        let stored = u64::from_le_bytes([
            bytes[body],
            bytes[body + 1],
            bytes[body + 2],
            bytes[body + 3],
            bytes[body + 4],
            bytes[body + 5],
            bytes[body + 6],
            bytes[body + 7],
        ]);
        if checksum(&bytes[..body]) != stored {
            return Err(Error::ChecksumMismatch);
        }
        let img = Image {
            bytes: &bytes[..len],
            header,
            n_global: n_global(&header),
            n_per_layer: n_per_layer(&header),
            slots: slot_table(&header),
        };
        let expected = img.n_global + img.n_per_layer * header.n_layers as usize;
        if header.n_tensors as usize != expected {
            return Err(Error::MissingTensor);
        }
        let dir_end = HEADER_SIZE + expected * RECORD_SIZE;
        if dir_end > body {
            return Err(Error::Truncated);
        }
        for (i, (kind, layer)) in slots(&header).enumerate() {
            let at = HEADER_SIZE + i * RECORD_SIZE;
            let r = TensorRecord::parse(&bytes[at..at + RECORD_SIZE])?;
            if r.kind != kind || r.layer != layer {
                return Err(Error::MissingTensor);
            }
            if r.dtype == DType::Q8 && !valid_group(header.q8_group(r.group)) {
                // No group at all (record and header both 0), or a bad own group.
                return Err(Error::InconsistentDimensions);
            }
            img.check_record(&r, dir_end, body)?;
        }
        Ok(img)
    }

    fn check_record(
        &self,
        r: &TensorRecord,
        data_start: usize,
        data_end: usize,
    ) -> Result<(), Error> {
        let h = &self.header;
        let (rows, cols) = h.expected_shape(r.kind);
        let shape_ok = if r.kind == TensorKind::Tokenizer {
            r.rows == 1 && r.dtype == DType::U8
        } else {
            r.rows as usize == rows && r.cols as usize == cols
        };
        if !shape_ok {
            return Err(Error::InconsistentDimensions);
        }
        let n = r.rows as usize * r.cols as usize;
        let in_bounds = |off: u32, bytes: usize| {
            let off = off as usize;
            off % ALIGN == 0
                && off >= data_start
                && off.checked_add(bytes).is_some_and(|e| e <= data_end)
        };
        let ok = match r.dtype {
            DType::F32 => {
                r.kind != TensorKind::Tokenizer
                    && r.len as usize == 4 * n
                    && in_bounds(r.offset, 4 * n)
            }
            DType::U8 => {
                r.kind == TensorKind::Tokenizer && r.len as usize == n && in_bounds(r.offset, n)
            }
            DType::F16 => {
                r.kind.quantizable() && r.len as usize == 2 * n && in_bounds(r.offset, 2 * n)
            }
            DType::Q8 => {
                let g = h.q8_group(r.group) as usize;
                r.kind.quantizable()
                    && g != 0
                    && (r.cols as usize) % g == 0
                    && r.len as usize == n
                    && in_bounds(r.offset, n)
                    && in_bounds(r.scale_offset, 4 * (n / g))
            }
        };
        // Binary16 weights must be finite: the kernels widen them with
        // `fp16::to_f32_finite`.
        let ok = ok
            && (r.dtype != DType::F16
                || self.bytes[r.offset as usize..r.offset as usize + 2 * n]
                    .chunks_exact(2)
                    .all(|b| crate::num::fp16::is_finite(u16::from_le_bytes([b[0], b[1]]))));
        if !ok {
            return Err(if r.kind != TensorKind::Tokenizer && r.dtype == DType::U8 {
                Error::Malformed
            } else {
                Error::BadTensor
            });
        }
        Ok(())
    }

    /// The validated header.
    pub const fn header(&self) -> &Header {
        &self.header
    }

    /// The whole image.
    pub const fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The directory record of a tensor (`None` if the header's flags exclude it or
    /// `layer` is out of range).
    pub fn record(&self, kind: TensorKind, layer: usize) -> Option<TensorRecord> {
        let h = &self.header;
        let slot = *self.slots.get(kind as usize)?;
        if slot == NO_SLOT {
            return None;
        }
        let idx = if kind.per_layer() {
            if layer >= h.n_layers as usize {
                return None;
            }
            self.n_global + layer * self.n_per_layer + slot as usize
        } else {
            slot as usize
        };
        let at = HEADER_SIZE + idx * RECORD_SIZE;
        TensorRecord::parse(self.bytes.get(at..at + RECORD_SIZE)?).ok()
    }

    /// A tensor's data (validated at [`Image::parse`]).
    pub fn tensor(&self, kind: TensorKind, layer: usize) -> Result<TensorData<'a>, Error> {
        let r = self.record(kind, layer).ok_or(Error::MissingTensor)?;
        let slice = |off: u32, len: usize| {
            self.bytes
                .get(off as usize..off as usize + len)
                .ok_or(Error::BadTensor)
        };
        let n = r.rows as usize * r.cols as usize;
        Ok(match r.dtype {
            DType::F32 => TensorData::F32(
                bytemuck::try_cast_slice(slice(r.offset, 4 * n)?).map_err(|_| Error::Misaligned)?,
            ),
            DType::U8 => TensorData::U8(slice(r.offset, n)?),
            DType::F16 => TensorData::F16(
                bytemuck::try_cast_slice(slice(r.offset, 2 * n)?).map_err(|_| Error::Misaligned)?,
            ),
            DType::Q8 => {
                let g = self.header.q8_group(r.group) as usize;
                if g == 0 {
                    return Err(Error::BadTensor);
                }
                TensorData::Q8 {
                    values: bytemuck::cast_slice(slice(r.offset, n)?),
                    scales: bytemuck::try_cast_slice(slice(r.scale_offset, 4 * (n / g))?)
                        .map_err(|_| Error::Misaligned)?,
                    group: g,
                }
            }
        })
    }
}

/// A tensor handed to [`write()`].
#[derive(Debug, Clone, Copy)]
pub enum TensorSource<'b> {
    /// f32 values, row-major.
    F32(&'b [f32]),
    /// Q8_0 values and one scale per header `group_size` values.
    Q8 {
        /// int8 values, row-major.
        values: &'b [i8],
        /// One scale per group.
        scales: &'b [f32],
    },
    /// Raw bytes (the tokenizer).
    U8(&'b [u8]),
    /// Q8_0 values and one scale per `group` values, with this tensor's own group
    /// (a multiple of 4, at most 4096, dividing the row length). The record names
    /// the group unless it equals the header's `group_size`.
    Q8Grouped {
        /// int8 values, row-major.
        values: &'b [i8],
        /// One scale per group.
        scales: &'b [f32],
        /// Values per scale.
        group: usize,
    },
    /// IEEE binary16 bit patterns, row-major (a matrix only).
    F16(&'b [u16]),
}

impl TensorSource<'_> {
    fn dtype(&self) -> DType {
        match self {
            TensorSource::F32(_) => DType::F32,
            TensorSource::Q8 { .. } | TensorSource::Q8Grouped { .. } => DType::Q8,
            TensorSource::U8(_) => DType::U8,
            TensorSource::F16(_) => DType::F16,
        }
    }

    /// Data bytes this tensor takes in an image, alignment padding included.
    fn padded_bytes(&self) -> usize {
        let raw = match self {
            TensorSource::F32(v) => 4 * v.len(),
            TensorSource::Q8 { values, scales }
            | TensorSource::Q8Grouped { values, scales, .. } => {
                values.len().next_multiple_of(ALIGN) + 4 * scales.len()
            }
            TensorSource::U8(b) => b.len(),
            TensorSource::F16(v) => 2 * v.len(),
        };
        raw.next_multiple_of(ALIGN)
    }
}

/// Bytes an image of these tensors takes.
pub fn image_len(tensors: &[TensorSource<'_>]) -> usize {
    HEADER_SIZE
        + tensors.len() * RECORD_SIZE
        + tensors.iter().map(|t| t.padded_bytes()).sum::<usize>()
        + CHECKSUM_SIZE
}

/// Writes an image into `out` and returns its length.
///
/// `tensors` are given in the canonical order of [`slots`] for `header` (whose
/// `n_tensors` and `image_len` are filled in here). Shapes are checked against
/// the header; the result passes [`Image::parse`]. Heap-free: the caller sizes
/// `out` with [`image_len`].
pub fn write(
    header: &Header,
    tensors: &[TensorSource<'_>],
    out: &mut [u8],
) -> Result<usize, Error> {
    let mut h = *header;
    h.n_tensors = tensors.len() as u32;
    let len = image_len(tensors);
    h.image_len = u32::try_from(len).map_err(|_| Error::InconsistentDimensions)?;
    h.validate()?;
    if out.len() < len {
        return Err(Error::BufferTooSmall {
            needed: len,
            got: out.len(),
        });
    }
    // Padding between tensors stays zero.
    out[..len].fill(0);
    let mut count = 0;
    let mut data_at = HEADER_SIZE + tensors.len() * RECORD_SIZE;
    for (i, (kind, layer)) in slots(&h).enumerate() {
        let t = tensors.get(i).ok_or(Error::MissingTensor)?;
        count += 1;
        let (rows, cols) = match (kind, t) {
            (TensorKind::Tokenizer, TensorSource::U8(b)) => (1, b.len()),
            _ => h.expected_shape(kind),
        };
        let n = rows * cols;
        let len_ok = match t {
            TensorSource::F32(v) => v.len() == n,
            TensorSource::U8(b) => b.len() == n && kind == TensorKind::Tokenizer,
            TensorSource::F16(v) => v.len() == n && kind.quantizable(),
            TensorSource::Q8 { values, scales } => {
                let g = h.group_size as usize;
                kind.quantizable()
                    && g != 0
                    && cols % g == 0
                    && values.len() == n
                    && scales.len() == n / g
            }
            TensorSource::Q8Grouped {
                values,
                scales,
                group,
            } => {
                let g = *group;
                kind.quantizable()
                    && u32::try_from(g).is_ok_and(valid_group)
                    && cols % g == 0
                    && values.len() == n
                    && scales.len() == n / g
            }
        };
        if !len_ok {
            return Err(Error::BadTensor);
        }
        let mut rec = TensorRecord {
            kind,
            layer,
            dtype: t.dtype(),
            rows: rows as u32,
            cols: cols as u32,
            offset: data_at as u32,
            len: 0,
            scale_offset: 0,
            group: 0,
        };
        match t {
            TensorSource::F32(v) => {
                rec.len = (4 * v.len()) as u32;
                for (j, x) in v.iter().enumerate() {
                    out[data_at + 4 * j..data_at + 4 * j + 4].copy_from_slice(&x.to_le_bytes());
                }
            }
            TensorSource::U8(b) => {
                rec.len = b.len() as u32;
                out[data_at..data_at + b.len()].copy_from_slice(b);
            }
            TensorSource::F16(v) => {
                rec.len = (2 * v.len()) as u32;
                for (j, x) in v.iter().enumerate() {
                    out[data_at + 2 * j..data_at + 2 * j + 2].copy_from_slice(&x.to_le_bytes());
                }
            }
            TensorSource::Q8 { values, scales }
            | TensorSource::Q8Grouped { values, scales, .. } => {
                if let TensorSource::Q8Grouped { group, .. } = t {
                    // `len_ok` checked that the group fits a u32.
                    let g = *group as u32;
                    rec.group = if g == h.group_size { 0 } else { g };
                }
                rec.len = values.len() as u32;
                for (j, &q) in values.iter().enumerate() {
                    out[data_at + j] = q as u8;
                }
                let s_at = data_at + values.len().next_multiple_of(ALIGN);
                rec.scale_offset = s_at as u32;
                for (j, x) in scales.iter().enumerate() {
                    out[s_at + 4 * j..s_at + 4 * j + 4].copy_from_slice(&x.to_le_bytes());
                }
            }
        }
        let at = HEADER_SIZE + i * RECORD_SIZE;
        out[at..at + RECORD_SIZE].copy_from_slice(&rec.to_bytes());
        data_at += t.padded_bytes();
    }
    if count != tensors.len() {
        return Err(Error::MissingTensor);
    }
    out[..HEADER_SIZE].copy_from_slice(&h.to_bytes());
    let body = len - CHECKSUM_SIZE;
    let sum = checksum(&out[..body]);
    out[body..len].copy_from_slice(&sum.to_le_bytes());
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Backing store with 4-byte alignment.
    #[derive(Clone)]
    struct Buf(Vec<u32>);
    impl Buf {
        fn bytes(&self) -> &[u8] {
            bytemuck::cast_slice(&self.0)
        }
        fn bytes_mut(&mut self) -> &mut [u8] {
            bytemuck::cast_slice_mut(&mut self.0)
        }
    }

    fn header() -> Header {
        Header {
            arch: Arch::Llama,
            flags: FLAG_TIED_EMBEDDINGS | FLAG_TOKENIZER,
            dim: 8,
            hidden_dim: 12,
            n_layers: 2,
            n_heads: 2,
            n_kv_heads: 1,
            head_dim: 4,
            vocab_size: 5,
            seq_len: 3,
            rotary_dim: 4,
            sliding_window: 0,
            norm_eps: 1e-5,
            group_size: 4,
            bos_id: 1,
            eos_id: 2,
            n_tensors: 0,
            image_len: 0,
            train_context: 3,
            block: Block::LLAMA,
        }
    }

    /// Builds a valid image whose f32 values encode (kind, layer, index) and whose
    /// Wq tensors are Q8.
    fn build(h: &Header) -> Buf {
        let mut store_f: Vec<Vec<f32>> = Vec::new();
        let mut store_q: Vec<(Vec<i8>, Vec<f32>)> = Vec::new();
        let kinds: Vec<(TensorKind, u16)> = slots(h).collect();
        for &(k, l) in &kinds {
            let (r, c) = h.expected_shape(k);
            if k == TensorKind::Wq {
                let v: Vec<i8> = (0..r * c).map(|i| (i as i8).wrapping_mul(3)).collect();
                let s: Vec<f32> = (0..r * c / 4).map(|i| 0.5 + i as f32).collect();
                store_q.push((v, s));
            } else {
                store_f.push(
                    (0..r * c)
                        .map(|i| (k as u16 * 1000 + l * 100) as f32 + i as f32)
                        .collect(),
                );
            }
        }
        let tok = b"tokenizer!".to_vec();
        let (mut fi, mut qi) = (0, 0);
        let srcs: Vec<TensorSource> = kinds
            .iter()
            .map(|&(k, _)| match k {
                TensorKind::Tokenizer => {
                    fi += 1;
                    TensorSource::U8(&tok)
                }
                TensorKind::Wq => {
                    qi += 1;
                    TensorSource::Q8 {
                        values: &store_q[qi - 1].0,
                        scales: &store_q[qi - 1].1,
                    }
                }
                _ => {
                    fi += 1;
                    TensorSource::F32(&store_f[fi - 1])
                }
            })
            .collect();
        let len = image_len(&srcs);
        let mut buf = Buf(vec![0; len / 4]);
        assert_eq!(write(h, &srcs, buf.bytes_mut()), Ok(len));
        buf
    }

    fn reseal(buf: &mut Buf) {
        let b = buf.bytes_mut();
        let body = b.len() - CHECKSUM_SIZE;
        let s = checksum(&b[..body]);
        b[body..].copy_from_slice(&s.to_le_bytes());
    }

    #[test]
    fn round_trip() {
        let h = header();
        let buf = build(&h);
        let img = Image::parse(buf.bytes()).unwrap();
        assert_eq!(img.header().dim, 8);
        assert_eq!(img.header().n_tensors as usize, slots(&h).count());
        match img.tensor(TensorKind::WDown, 1).unwrap() {
            TensorData::F32(v) => {
                assert_eq!(v.len(), 8 * 12);
                assert_eq!(v[5], (27 * 1000 + 100) as f32 + 5.0);
            }
            _ => panic!("wrong dtype"),
        }
        match img.tensor(TensorKind::Wq, 0).unwrap() {
            TensorData::Q8 {
                values,
                scales,
                group,
            } => {
                assert_eq!((values.len(), scales.len(), group), (64, 16, 4));
                assert_eq!(values[3], 9);
                assert_eq!(scales[2], 2.5);
            }
            _ => panic!("wrong dtype"),
        }
        match img.tensor(TensorKind::Tokenizer, 0).unwrap() {
            TensorData::U8(b) => assert_eq!(b, b"tokenizer!"),
            _ => panic!("wrong dtype"),
        }
        assert_eq!(
            img.tensor(TensorKind::Output, 0).unwrap_err(),
            Error::MissingTensor
        );
        assert_eq!(
            img.tensor(TensorKind::Wq, 2).unwrap_err(),
            Error::MissingTensor
        );
    }

    #[test]
    fn malformed_inputs_give_typed_errors() {
        let h = header();
        let good = build(&h);
        let b = good.bytes();
        assert_eq!(Image::parse(&[]).unwrap_err(), Error::Truncated);
        assert_eq!(Image::parse(&b[..5]).unwrap_err(), Error::Truncated);
        for cut in [64, HEADER_SIZE, HEADER_SIZE + 40, b.len() - 1, b.len() - 9] {
            let e = Image::parse(&b[..cut]).unwrap_err();
            assert_eq!(e, Error::Truncated, "cut at {cut}");
        }
        // random bytes
        let mut x: u32 = 12345;
        let mut rnd = Buf(vec![0; b.len() / 4]);
        for w in rnd.0.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *w = x;
        }
        assert_eq!(Image::parse(rnd.bytes()).unwrap_err(), Error::BadMagic);
        // wrong magic
        let mut m = good.clone();
        m.bytes_mut()[0] = b'X';
        assert_eq!(Image::parse(m.bytes()).unwrap_err(), Error::BadMagic);
        // wrong version
        let mut v = good.clone();
        v.bytes_mut()[8] = 9;
        assert_eq!(
            Image::parse(v.bytes()).unwrap_err(),
            Error::UnsupportedVersion { version: 9 }
        );
        // every single flipped byte past the header is caught by the checksum
        for at in (HEADER_SIZE..b.len()).step_by(7) {
            let mut f = good.clone();
            f.bytes_mut()[at] ^= 0x40;
            assert_eq!(
                Image::parse(f.bytes()).unwrap_err(),
                Error::ChecksumMismatch,
                "byte {at}"
            );
        }
        // inconsistent dimensions (resealed so that the checksum passes)
        let mut d = good.clone();
        d.bytes_mut()[20 + 4 * 5] = 3; // n_kv_heads = 3 does not divide n_heads = 2
        reseal(&mut d);
        assert_eq!(
            Image::parse(d.bytes()).unwrap_err(),
            Error::InconsistentDimensions
        );
        // a missing tensor: directory count off by one
        let mut t = good.clone();
        t.bytes_mut()[20 + 4 * 15] -= 1;
        reseal(&mut t);
        assert_eq!(Image::parse(t.bytes()).unwrap_err(), Error::MissingTensor);
        // a record pointing past the end
        let mut o = good.clone();
        let at = HEADER_SIZE + 16; // first record's offset
        o.bytes_mut()[at + 3] = 0x7f;
        reseal(&mut o);
        assert_eq!(Image::parse(o.bytes()).unwrap_err(), Error::BadTensor);
        // misaligned slice
        let mut shifted = vec![0u32; b.len() / 4 + 1];
        let sb: &mut [u8] = bytemuck::cast_slice_mut(&mut shifted);
        sb[1..1 + b.len()].copy_from_slice(b);
        assert_eq!(
            Image::parse(&sb[1..1 + b.len()]).unwrap_err(),
            Error::Misaligned
        );
    }

    #[test]
    fn writer_checks_shapes() {
        let h = header();
        let v = [0.0f32; 3];
        let mut out = [0u8; 1024];
        assert_eq!(
            write(&h, &[TensorSource::F32(&v)], &mut out).unwrap_err(),
            Error::BadTensor
        );
        let mut bad = h;
        bad.rotary_dim = 6;
        assert_eq!(
            write(&bad, &[], &mut out).unwrap_err(),
            Error::InconsistentDimensions
        );
    }

    /// An owned tensor for [`build_with`].
    enum Owned {
        F32(Vec<f32>),
        Q8(Vec<i8>, Vec<f32>, Option<usize>),
        U8(Vec<u8>),
        F16(Vec<u16>),
    }

    impl Owned {
        fn source(&self) -> TensorSource<'_> {
            match self {
                Owned::F32(v) => TensorSource::F32(v),
                Owned::U8(b) => TensorSource::U8(b),
                Owned::F16(v) => TensorSource::F16(v),
                Owned::Q8(values, scales, None) => TensorSource::Q8 { values, scales },
                Owned::Q8(values, scales, Some(group)) => TensorSource::Q8Grouped {
                    values,
                    scales,
                    group: *group,
                },
            }
        }
    }

    /// Writes an image whose tensors `make(kind, layer, rows, cols)` chooses.
    fn build_with(h: &Header, make: impl Fn(TensorKind, u16, usize, usize) -> Owned) -> Buf {
        let owned: Vec<Owned> = slots(h)
            .map(|(k, l)| {
                let (r, c) = h.expected_shape(k);
                make(k, l, r, c)
            })
            .collect();
        let srcs: Vec<TensorSource> = owned.iter().map(Owned::source).collect();
        let len = image_len(&srcs);
        let mut buf = Buf(vec![0; len / 4]);
        assert_eq!(write(h, &srcs, buf.bytes_mut()), Ok(len));
        buf
    }

    /// Q8 values `i·7 mod 255 − 127` and scales `0.25 + i` in groups of `g`.
    fn q8(n: usize, g: usize, own: Option<usize>) -> Owned {
        Owned::Q8(
            (0..n)
                .map(|i| ((i * 7) % 255) as i32 - 127)
                .map(|v| v as i8)
                .collect(),
            (0..n / g).map(|i| 0.25 + i as f32).collect(),
            own,
        )
    }

    /// Layer tensors: Wq in the header's group, WGate in groups of 8 (named),
    /// WDown (rows of 12) in groups of 12, WUp in a named group equal to the
    /// header's (stored as 0).
    fn grouped(k: TensorKind, _l: u16, r: usize, c: usize) -> Owned {
        match k {
            TensorKind::Tokenizer => Owned::U8(b"tok".to_vec()),
            TensorKind::Wq => q8(r * c, 4, None),
            TensorKind::WGate => q8(r * c, 8, Some(8)),
            TensorKind::WDown => q8(r * c, 12, Some(12)),
            TensorKind::WUp => q8(r * c, 4, Some(4)),
            _ => Owned::F32((0..r * c).map(|i| i as f32).collect()),
        }
    }

    /// The record of slot `i` (bytes `at..at + RECORD_SIZE`).
    fn slot_at(h: &Header, kind: TensorKind, layer: u16) -> usize {
        let i = slots(h).position(|s| s == (kind, layer)).unwrap();
        HEADER_SIZE + i * RECORD_SIZE
    }

    #[test]
    fn f16_matrices() {
        let h = header();
        // Wq and the embedding in binary16 (i/8 is exact), the rest f32.
        let make = |k: TensorKind, l: u16, r: usize, c: usize| match k {
            TensorKind::Wq | TensorKind::TokenEmbedding => Owned::F16(
                (0..r * c)
                    .map(|i| crate::num::fp16::from_f32(i as f32 / 8.0 - 3.0))
                    .collect(),
            ),
            _ => grouped(k, l, r, c),
        };
        let buf = build_with(&h, make);
        let img = Image::parse(buf.bytes()).unwrap();
        let rec = img.record(TensorKind::Wq, 1).unwrap();
        assert_eq!((rec.dtype, rec.len as usize), (DType::F16, 2 * 8 * 8));
        let TensorData::F16(v) = img.tensor(TensorKind::Wq, 1).unwrap() else {
            panic!("Wq not F16")
        };
        assert_eq!(crate::num::fp16::to_f32(v[27]), 27.0 / 8.0 - 3.0);
        // Matrices only: an f16 norm is refused by the writer.
        let norm = |k: TensorKind, l: u16, r: usize, c: usize| match k {
            TensorKind::AttnNorm => Owned::F16(vec![0; r * c]),
            _ => make(k, l, r, c),
        };
        let owned: Vec<Owned> = slots(&h)
            .map(|(k, l)| {
                let (r, c) = h.expected_shape(k);
                norm(k, l, r, c)
            })
            .collect();
        let srcs: Vec<TensorSource> = owned.iter().map(Owned::source).collect();
        let mut out = vec![0u8; image_len(&srcs)];
        assert_eq!(write(&h, &srcs, &mut out).unwrap_err(), Error::BadTensor);
        // A non-finite binary16 weight (∞, NaN) is refused when the image is opened.
        for bad in [0x7c00u16, 0xfc00, 0x7e00] {
            let mut b = buf.clone();
            let at = img.record(TensorKind::Wq, 0).unwrap().offset as usize + 2 * 5;
            b.bytes_mut()[at..at + 2].copy_from_slice(&bad.to_le_bytes());
            reseal(&mut b);
            assert_eq!(Image::parse(b.bytes()).unwrap_err(), Error::BadTensor);
        }
        // A length that is not 2 bytes per value.
        let mut b = buf.clone();
        let at = slot_at(&h, TensorKind::Wq, 0) + 20;
        b.bytes_mut()[at..at + 4].copy_from_slice(&(8 * 8u32).to_le_bytes());
        reseal(&mut b);
        assert_eq!(Image::parse(b.bytes()).unwrap_err(), Error::BadTensor);
    }

    #[test]
    fn per_tensor_q8_groups() {
        let h = header();
        let buf = build_with(&h, grouped);
        let img = Image::parse(buf.bytes()).unwrap();
        for (kind, group, named) in [
            (TensorKind::Wq, 4, 0),
            (TensorKind::WGate, 8, 8),
            (TensorKind::WDown, 12, 12),
            (TensorKind::WUp, 4, 0),
        ] {
            for layer in 0..2 {
                assert_eq!(img.record(kind, layer).unwrap().group, named, "{kind:?}");
                let TensorData::Q8 {
                    values,
                    scales,
                    group: g,
                } = img.tensor(kind, layer).unwrap()
                else {
                    panic!("{kind:?} not Q8")
                };
                let n = values.len();
                assert_eq!((g, scales.len()), (group, n / group), "{kind:?}");
                assert_eq!(values[9], 63 - 127);
                assert_eq!(scales[1], 1.25);
            }
        }
        assert_eq!(img.record(TensorKind::WDown, 0).unwrap().dtype, DType::Q8);
        // Without a header group every Q8 tensor must name its own.
        let mut h0 = h;
        h0.group_size = 0;
        let own = build_with(&h0, |k, l, r, c| match k {
            TensorKind::Wq => q8(r * c, 4, Some(4)),
            _ => grouped(k, l, r, c),
        });
        let img = Image::parse(own.bytes()).unwrap();
        assert_eq!(img.header().group_size, 0);
        assert_eq!(img.record(TensorKind::Wq, 1).unwrap().group, 4);
        assert!(matches!(
            img.tensor(TensorKind::WUp, 1).unwrap(),
            TensorData::Q8 { group: 4, .. }
        ));
        let mut none = own.clone();
        let at = slot_at(&h0, TensorKind::Wq, 1) + 28;
        none.bytes_mut()[at] = 0;
        reseal(&mut none);
        assert_eq!(
            Image::parse(none.bytes()).unwrap_err(),
            Error::InconsistentDimensions
        );

        // Record defects, resealed so that the checksum passes.
        let with_group = |kind: TensorKind, g: u32| {
            let mut b = buf.clone();
            let at = slot_at(&h, kind, 1) + 28;
            b.bytes_mut()[at..at + 4].copy_from_slice(&g.to_le_bytes());
            reseal(&mut b);
            Image::parse(b.bytes()).map(|_| ())
        };
        // A group on an f32 tensor.
        assert_eq!(with_group(TensorKind::Wo, 4), Err(Error::Malformed));
        // Not a multiple of 4, or over 4096.
        assert_eq!(
            with_group(TensorKind::WGate, 6),
            Err(Error::InconsistentDimensions)
        );
        assert_eq!(
            with_group(TensorKind::WGate, 8192),
            Err(Error::InconsistentDimensions)
        );
        // Does not divide the row (WDown's rows hold 12 values).
        assert_eq!(with_group(TensorKind::WDown, 8), Err(Error::BadTensor));
        // A group that divides the row but whose scales would run past the data
        // (layer 1's WDown is the last tensor).
        assert_eq!(with_group(TensorKind::WDown, 4), Err(Error::BadTensor));
        assert_eq!(with_group(TensorKind::WGate, 8), Ok(()));

        // The writer refuses groups that are invalid or do not divide the rows.
        let mut out = vec![0u8; 1 << 16];
        for (g, kind) in [
            (6, TensorKind::WGate),
            (8, TensorKind::WDown),
            (0, TensorKind::WUp),
        ] {
            let owned: Vec<Owned> = slots(&h)
                .map(|(k, l)| {
                    let (r, c) = h.expected_shape(k);
                    if k == kind {
                        Owned::Q8(vec![0; r * c], vec![1.0; r * c / g.max(1)], Some(g))
                    } else {
                        grouped(k, l, r, c)
                    }
                })
                .collect();
            let srcs: Vec<TensorSource> = owned.iter().map(Owned::source).collect();
            assert_eq!(
                write(&h, &srcs, &mut out).unwrap_err(),
                Error::BadTensor,
                "group {g} for {kind:?}"
            );
        }
    }
}

#[cfg(test)]
mod block_tests {
    use super::*;

    fn llama() -> Header {
        Header {
            arch: Arch::Llama,
            flags: FLAG_QKV_BIAS | FLAG_TOKENIZER,
            dim: 8,
            hidden_dim: 12,
            n_layers: 1,
            n_heads: 2,
            n_kv_heads: 1,
            head_dim: 4,
            vocab_size: 5,
            seq_len: 3,
            rotary_dim: 4,
            sliding_window: 0,
            norm_eps: 1e-5,
            group_size: 0,
            bos_id: 1,
            eos_id: 2,
            n_tensors: 0,
            image_len: 0,
            train_context: 3,
            block: Block::LLAMA,
        }
    }

    /// A GPT-2-like header: LayerNorm, GELU MLP, learned table with an offset.
    fn gpt() -> Header {
        Header {
            flags: FLAG_TIED_EMBEDDINGS | FLAG_QKV_BIAS | FLAG_O_BIAS | FLAG_MLP_BIAS,
            n_kv_heads: 2,
            rotary_dim: 0,
            block: Block {
                norm: NormKind::LayerNorm,
                ffn: FfnKind::GeluTanh,
                residual: Residual::Sequential,
                position: PositionHook::Table,
                pos_offset: 2,
                embed_scale: 8.0,
                attn_scale: 0.5,
            },
            ..llama()
        }
    }

    fn kinds(h: &Header) -> Vec<TensorKind> {
        slots(h).filter(|&(_, l)| l == 0).map(|(k, _)| k).collect()
    }

    #[test]
    fn llama_images_keep_their_order_and_bytes() {
        use TensorKind::*;
        let h = llama();
        // The version-1 order, before the block words existed.
        assert_eq!(
            kinds(&h),
            [
                TokenEmbedding,
                FinalNorm,
                Output,
                RopeCos,
                RopeSin,
                Tokenizer,
                AttnNorm,
                Wq,
                Wk,
                Wv,
                Bq,
                Bk,
                Bv,
                Wo,
                FfnNorm,
                WGate,
                WUp,
                WDown
            ]
        );
        // The Llama block writes zeros where the reserved bytes were, and zeros
        // read back as the Llama block.
        let b = h.to_bytes();
        assert!(b[92..HEADER_SIZE].iter().all(|&x| x == 0));
        assert_eq!(Header::parse(&b).unwrap().block, Block::LLAMA);
    }

    #[test]
    fn block_words_round_trip() {
        let h = gpt();
        let b = h.to_bytes();
        assert_eq!(b[92..96], [1, 1, 0, 2]); // norm, ffn, residual, position
        assert_eq!(rd_u32(&b, 96).unwrap(), 2);
        assert_eq!(f32::from_bits(rd_u32(&b, 100).unwrap()), 8.0);
        assert_eq!(f32::from_bits(rd_u32(&b, 104).unwrap()), 0.5);
        assert!(b[108..HEADER_SIZE].iter().all(|&x| x == 0));
        assert_eq!(Header::parse(&b).unwrap(), h);
        for (kind, residual) in [
            (0u8, Residual::Sequential),
            (1, Residual::ParallelShared),
            (2, Residual::Parallel),
        ] {
            let mut w = b;
            w[94] = kind;
            assert_eq!(Header::parse(&w).unwrap().block.residual, residual);
        }
    }

    #[test]
    fn slots_follow_flags_and_block() {
        use TensorKind::*;
        assert_eq!(
            kinds(&gpt()),
            [
                TokenEmbedding,
                PosEmbedding,
                FinalNorm,
                FinalNormBias,
                AttnNorm,
                AttnNormBias,
                Wq,
                Wk,
                Wv,
                Bq,
                Bk,
                Bv,
                Wo,
                Bo,
                FfnNorm,
                FfnNormBias,
                WUp,
                WDown,
                BUp,
                BDown
            ]
        );
        // GPT-J/Phi: one norm for both branches, biased head, RoPE.
        let mut j = gpt();
        j.flags = FLAG_MLP_BIAS | FLAG_OUTPUT_BIAS;
        j.rotary_dim = 2;
        j.block.residual = Residual::ParallelShared;
        j.block.position = PositionHook::Rope;
        j.block.pos_offset = 0;
        assert_eq!(
            kinds(&j),
            [
                TokenEmbedding,
                FinalNorm,
                FinalNormBias,
                Output,
                OutputBias,
                RopeCos,
                RopeSin,
                AttnNorm,
                AttnNormBias,
                Wq,
                Wk,
                Wv,
                Wo,
                WUp,
                WDown,
                BUp,
                BDown
            ]
        );
        // MPT: LayerNorm without bias, no biases, ALiBi.
        let mut m = gpt();
        m.flags = FLAG_TIED_EMBEDDINGS;
        m.block.norm = NormKind::LayerNormNoBias;
        m.block.position = PositionHook::Alibi;
        m.block.pos_offset = 0;
        assert_eq!(
            kinds(&m),
            [
                TokenEmbedding,
                FinalNorm,
                AlibiSlopes,
                AttnNorm,
                Wq,
                Wk,
                Wv,
                Wo,
                FfnNorm,
                WUp,
                WDown
            ]
        );
        // BLOOM: the embedding LayerNorm; SwiGLU with biases has a gate bias.
        let mut bl = m;
        bl.flags |= FLAG_EMBED_NORM;
        bl.block.norm = NormKind::LayerNorm;
        assert_eq!(
            kinds(&bl)[..4],
            [TokenEmbedding, EmbedNorm, EmbedNormBias, FinalNorm]
        );
        let mut sw = llama();
        sw.flags |= FLAG_MLP_BIAS;
        assert_eq!(kinds(&sw)[15..], [WGate, WUp, WDown, BGate, BUp, BDown]);
        // Shapes of the new kinds.
        let h = gpt();
        assert_eq!(h.expected_shape(PosEmbedding), (3 + 2, 8));
        assert_eq!(h.expected_shape(AlibiSlopes), (1, 2));
        assert_eq!(h.expected_shape(OutputBias), (1, 5));
        assert_eq!(h.expected_shape(BUp), (1, 12));
        assert_eq!(h.expected_shape(BDown), (1, 8));
    }

    #[test]
    fn gpt_image_round_trip() {
        let h = gpt();
        let data: Vec<Vec<f32>> = slots(&h)
            .map(|(k, l)| {
                let (r, c) = h.expected_shape(k);
                (0..r * c)
                    .map(|i| (k as u16 * 100 + l) as f32 + i as f32)
                    .collect()
            })
            .collect();
        let srcs: Vec<TensorSource<'_>> = data.iter().map(|v| TensorSource::F32(v)).collect();
        let len = image_len(&srcs);
        let mut words = vec![0u32; len / 4];
        let out: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        assert_eq!(write(&h, &srcs, out), Ok(len));
        let img = Image::parse(out).unwrap();
        assert_eq!(img.header().block, h.block);
        match img.tensor(TensorKind::PosEmbedding, 0).unwrap() {
            TensorData::F32(v) => {
                assert_eq!(v.len(), 5 * 8);
                assert_eq!(v[39], 700.0 + 39.0);
            }
            _ => panic!("dtype"),
        }
        assert_eq!(
            img.tensor(TensorKind::RopeCos, 0).unwrap_err(),
            Error::MissingTensor
        );
        assert!(img.record(TensorKind::BDown, 0).is_some());
        assert!(img.record(TensorKind::WGate, 0).is_none());
    }

    #[test]
    fn inconsistent_blocks_are_rejected() {
        let b = gpt().to_bytes();
        for (at, v) in [(92, 3u8), (93, 3), (94, 3), (95, 3)] {
            let mut w = b;
            w[at] = v;
            assert_eq!(
                Header::parse(&w).unwrap_err(),
                Error::Malformed,
                "byte {at}"
            );
        }
        let mut w = b;
        w[108] = 1; // reserved
        assert_eq!(Header::parse(&w).unwrap_err(), Error::Malformed);
        let bad = |f: &dyn Fn(&mut Header)| {
            let mut h = gpt();
            f(&mut h);
            h.validate()
        };
        assert_eq!(bad(&|_| {}), Ok(()));
        let inconsistent = Err(Error::InconsistentDimensions);
        // RoPE dims without the RoPE hook, an offset without a table
        assert_eq!(bad(&|h| h.rotary_dim = 2), inconsistent);
        assert_eq!(
            bad(&|h| {
                h.block.position = PositionHook::Alibi;
            }),
            inconsistent
        );
        assert_eq!(bad(&|h| h.block.embed_scale = -1.0), inconsistent);
        assert_eq!(bad(&|h| h.block.attn_scale = f32::NAN), inconsistent);
        assert_eq!(bad(&|h| h.block.embed_scale = f32::INFINITY), inconsistent);
        assert_eq!(bad(&|h| h.flags |= 1 << 8), Err(Error::Malformed));
        // an odd head dimension is fine without RoPE (ALiBi models)
        assert_eq!(
            bad(&|h| {
                h.block.position = PositionHook::Alibi;
                h.block.pos_offset = 0;
                h.head_dim = 3;
            }),
            Ok(())
        );
    }
}
