//! Tensors: what each one is ([`TensorKind`]), how it is stored ([`DType`]), its
//! directory record ([`TensorRecord`], [`RECORD_SIZE`] bytes each, after the
//! header), the directory's canonical order ([`slots`]) and the typed view of its
//! data ([`TensorData`]).

use super::block::{FfnKind, PositionHook};
use super::header::{
    rd_u32, Header, FLAG_EMBED_NORM, FLAG_MLP_BIAS, FLAG_OUTPUT_BIAS, FLAG_O_BIAS, FLAG_QKV_BIAS,
    FLAG_TIED_EMBEDDINGS, FLAG_TOKENIZER,
};
use crate::Error;

/// Bytes in one tensor directory record.
pub const RECORD_SIZE: usize = 32;
/// Alignment of every tensor's data and of the image itself in memory.
pub const ALIGN: usize = 4;

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
    /// Embedding norm bias `[1][dim]` (with [`FLAG_EMBED_NORM`] and [`NormKind::LayerNorm`](super::block::NormKind::LayerNorm)).
    EmbedNormBias = 9,
    /// Final norm bias `[1][dim]` ([`NormKind::LayerNorm`](super::block::NormKind::LayerNorm)).
    FinalNormBias = 10,
    /// Output head bias `[1][vocab_size]` (with [`FLAG_OUTPUT_BIAS`]).
    OutputBias = 11,
    /// ALiBi slopes `[1][n_heads]`, f32 as Hugging Face computes them, with
    /// [`PositionHook::Alibi`].
    AlibiSlopes = 12,
    /// T5 buckets of the causal relative positions `−max_distance..=0`,
    /// `[1][max_distance + 1]`, U8: entry `k` is the bucket of `key − query =
    /// k − max_distance` ([`crate::pos::t5::T5Buckets::table`]'s layout, computed
    /// at conversion, so no logarithm runs per token), with [`PositionHook::T5`].
    T5Buckets = 13,
    /// T5 relative-position biases `[num_buckets][n_heads]` (`relative_attention_bias`,
    /// shared by every layer), f32, with [`PositionHook::T5`].
    T5Bias = 14,
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
    /// Attention norm bias `[1][dim]` ([`NormKind::LayerNorm`](super::block::NormKind::LayerNorm)).
    AttnNormBias = 28,
    /// Attention output bias `[1][dim]` (with [`FLAG_O_BIAS`]).
    Bo = 29,
    /// Feed-forward norm bias `[1][dim]` ([`NormKind::LayerNorm`](super::block::NormKind::LayerNorm), when `FfnNorm` exists).
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
            13 => T5Buckets,
            14 => T5Bias,
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

    /// Whether the kind holds raw bytes (U8), not numbers: the tokenizer and the
    /// T5 bucket table.
    pub const fn is_bytes(self) -> bool {
        matches!(self, TensorKind::Tokenizer | TensorKind::T5Buckets)
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

impl Header {
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
            T5Buckets => (1, self.block.t5.max_distance as usize + 1),
            T5Bias => (self.block.t5.num_buckets as usize, self.n_heads as usize),
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
/// A kind the header does not call for ([`has_tensor`]) takes no slot; the
/// others keep this order, so a reader finds each one by counting.
pub(super) const GLOBAL_ORDER: [TensorKind; 14] = [
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
    TensorKind::T5Buckets,
    TensorKind::T5Bias,
    TensorKind::Tokenizer,
];
/// Per-layer tensors in canonical order.
pub(super) const LAYER_ORDER: [TensorKind; 18] = [
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
pub(super) const fn present(h: &Header, kind: TensorKind) -> bool {
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
        T5Buckets | T5Bias => matches!(b.position, PositionHook::T5),
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
pub(super) fn n_global(h: &Header) -> usize {
    GLOBAL_ORDER.iter().filter(|&&k| present(h, k)).count()
}

/// Number of tensors per layer for a header.
pub(super) fn n_per_layer(h: &Header) -> usize {
    LAYER_ORDER.iter().filter(|&&k| present(h, k)).count()
}

/// The canonical `(kind, layer)` sequence of a header's tensor directory.
///
/// Writers emit tensors in this order; [`Image::parse`](super::Image::parse) requires it.
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

/// A Q8 tensor's scales in the integer step's block-float form
/// ([`crate::num::kernels_int::block_scales`]): per row, the largest exponent
/// field `E` of its f32 scales, and per group its 15-bit mantissa shifted right
/// by `E − e` (0 for a zero scale or one 15 binades below the largest), so that
/// the group's scale, truncated, is `mantissa · 2^(E − 141)`.
///
/// Stored after the f32 scales: `2 · groups` bytes of little-endian `u16`,
/// then one byte per row, then zero padding to 4 bytes.
#[derive(Debug, Clone, Copy)]
pub struct BlockScales<'a> {
    /// One aligned mantissa per group (below 2^15), row-major.
    pub mantissas: &'a [u16],
    /// One exponent field per row.
    pub tops: &'a [u8],
}

/// Bytes of a tensor's [`BlockScales`] (`groups` mantissas, `rows` exponents),
/// before padding.
pub const fn block_scale_bytes(groups: usize, rows: usize) -> usize {
    2 * groups + rows
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
