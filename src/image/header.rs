//! The header: magic, version, the model's dimensions, the flags that say which
//! optional tensors exist, and the block shape; [`HEADER_SIZE`] bytes at offset 0.

use super::block::{Block, PositionHook, T5Params};
use crate::Error;

/// The 8 magic bytes every image starts with.
pub const MAGIC: [u8; 8] = *b"MICROFMR";
/// The format version this crate reads and writes.
pub const VERSION: u32 = 1;
/// Bytes in the header.
pub const HEADER_SIZE: usize = 128;

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
/// Header flag: every Q8 tensor carries, after its f32 scales, the integer
/// step's block-float form of them ([`BlockScales`](super::BlockScales)): one
/// `u16` per group, its scale's 15-bit mantissa aligned to the largest exponent
/// of its row, then one byte per row, that exponent. They are derived from the
/// f32 scales (the writer computes them, [`Image::parse`](super::Image::parse)
/// checks them), so the integer step gives the same bits with or without them;
/// with them it reads what it would otherwise decode from every scale of every
/// row at every token.
pub const FLAG_Q8_BLOCK_SCALES: u32 = 1 << 8;
/// Every flag this version knows; others are rejected.
const KNOWN_FLAGS: u32 = FLAG_TIED_EMBEDDINGS
    | FLAG_Q8_BLOCK_SCALES
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
    /// How a layer is built (header words 18 to 22; [`Block::LLAMA`] when zero).
    pub block: Block,
}

/// The little-endian u32 at `at` ([`Error::Truncated`] past the end).
pub(super) fn rd_u32(b: &[u8], at: usize) -> Result<u32, Error> {
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
            block: Block::from_words([w(18)?, w(19)?, w(20)?, w(21)?, w(22)?])?,
        };
        if b[20 + 4 * 23..HEADER_SIZE].iter().any(|&x| x != 0) {
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
        let t5 = matches!(b.position, PositionHook::T5);
        if t5 {
            let p = b.t5;
            crate::pos::t5::T5Buckets::new(false, p.num_buckets as usize, p.max_distance as usize)
                .map_err(|_| Error::InconsistentDimensions)?;
            if p.num_buckets > 256 {
                return Err(Error::InconsistentDimensions);
            }
        } else if b.t5 != T5Params::NONE {
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
}

/// Whether `g` can be a Q8 group size: a non-zero multiple of 4, at most 4096.
pub const fn valid_group(g: u32) -> bool {
    g != 0 && g % 4 == 0 && g <= 4096
}
