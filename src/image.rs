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
//! `group_size` (Q8 group, 0 when no tensor is Q8), `bos_id`, `eos_id`, `n_tensors`,
//! `image_len`, `train_context` (the checkpoint's `max_position_embeddings`), then
//! reserved bytes that must be zero.
//!
//! Tensors appear in the canonical order of [`slots`]: the global tensors, then
//! each layer's tensors in a fixed order, so [`Image::tensor`] finds a tensor in
//! O(1) with no search at run time.
//!
//! Numeric formats: `F32` (row-major `[rows][cols]`), `Q8` (llama2.c `runq.c` Q8_0:
//! int8 values row-major, then one f32 scale per `group_size` consecutive values,
//! `value = q · scale`), `U8` (raw bytes, e.g. the tokenizer).
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
/// Every flag this version knows; others are rejected.
const KNOWN_FLAGS: u32 =
    FLAG_TIED_EMBEDDINGS | FLAG_ROPE_INTERLEAVED | FLAG_QKV_BIAS | FLAG_TOKENIZER;

/// Model architecture family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u32)]
pub enum Arch {
    /// Llama family: RMSNorm, SwiGLU, RoPE, GQA (Llama, Qwen2, Mistral, Phi-3, llama2.c).
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
}

impl DType {
    /// The dtype for a record value.
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(DType::F32),
            1 => Some(DType::Q8),
            2 => Some(DType::U8),
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
    /// SwiGLU gate projection (`w1`) `[hidden_dim][dim]`.
    WGate = 25,
    /// SwiGLU up projection (`w3`) `[hidden_dim][dim]`.
    WUp = 26,
    /// SwiGLU down projection (`w2`) `[dim][hidden_dim]`.
    WDown = 27,
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
            _ => return None,
        })
    }

    /// Whether the kind exists once per layer (else once per model).
    pub const fn per_layer(self) -> bool {
        self as u16 >= 16
    }

    /// Whether the kind is a matrix that may be stored as Q8.
    pub const fn quantizable(self) -> bool {
        use TensorKind::*;
        matches!(
            self,
            TokenEmbedding | Output | Wq | Wk | Wv | Wo | WGate | WUp | WDown
        )
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
    /// Q8 group size (0 when no tensor is Q8).
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
        for (i, w) in words.iter().enumerate() {
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
        };
        if b[20 + 4 * 18..HEADER_SIZE].iter().any(|&x| x != 0) {
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
        if self.n_heads % self.n_kv_heads != 0
            || self.rotary_dim % 2 != 0
            || self.rotary_dim > self.head_dim
            || self.head_dim % 2 != 0
            || self.bos_id >= self.vocab_size
            || self.eos_id >= self.vocab_size
        {
            return Err(Error::InconsistentDimensions);
        }
        if !(self.norm_eps.is_finite() && self.norm_eps >= 0.0) {
            return Err(Error::InconsistentDimensions);
        }
        if self.group_size != 0 && (self.group_size % 4 != 0 || self.group_size > 4096) {
            return Err(Error::InconsistentDimensions);
        }
        Ok(())
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
            RopeCos | RopeSin => (self.seq_len as usize, (self.rotary_dim / 2) as usize),
            Tokenizer => (1, 0),
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
        ];
        for (i, w) in words.iter().enumerate() {
            b[8 + 4 * i..12 + 4 * i].copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    /// Decodes a record (kind and dtype must be known; reserved bytes zero).
    pub fn parse(b: &[u8]) -> Result<TensorRecord, Error> {
        if b.len() < RECORD_SIZE {
            return Err(Error::Truncated);
        }
        let kind =
            TensorKind::from_u16(u16::from_le_bytes([b[0], b[1]])).ok_or(Error::Malformed)?;
        let layer = u16::from_le_bytes([b[2], b[3]]);
        let dtype = DType::from_u8(b[4]).ok_or(Error::Malformed)?;
        if b[5..8].iter().chain(&b[28..32]).any(|&x| x != 0) {
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
        })
    }
}

/// Global tensors in canonical order (before the layers).
const GLOBAL_ORDER: [TensorKind; 6] = [
    TensorKind::TokenEmbedding,
    TensorKind::FinalNorm,
    TensorKind::Output,
    TensorKind::RopeCos,
    TensorKind::RopeSin,
    TensorKind::Tokenizer,
];
/// Per-layer tensors in canonical order.
const LAYER_ORDER: [TensorKind; 12] = [
    TensorKind::AttnNorm,
    TensorKind::Wq,
    TensorKind::Wk,
    TensorKind::Wv,
    TensorKind::Bq,
    TensorKind::Bk,
    TensorKind::Bv,
    TensorKind::Wo,
    TensorKind::FfnNorm,
    TensorKind::WGate,
    TensorKind::WUp,
    TensorKind::WDown,
];

/// Whether a header's flags call for a tensor of this kind.
const fn present(h: &Header, kind: TensorKind) -> bool {
    match kind {
        TensorKind::Output => !h.has(FLAG_TIED_EMBEDDINGS),
        TensorKind::Tokenizer => h.has(FLAG_TOKENIZER),
        TensorKind::Bq | TensorKind::Bk | TensorKind::Bv => h.has(FLAG_QKV_BIAS),
        _ => true,
    }
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
}

/// A validated model image.
#[derive(Debug, Clone, Copy)]
pub struct Image<'a> {
    bytes: &'a [u8],
    header: Header,
    n_global: usize,
    n_per_layer: usize,
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
        };
        let expected = img.n_global + img.n_per_layer * header.n_layers as usize;
        if header.n_tensors as usize != expected {
            return Err(Error::MissingTensor);
        }
        let dir_end = HEADER_SIZE + expected * RECORD_SIZE;
        if dir_end > body {
            return Err(Error::Truncated);
        }
        let mut any_q8 = false;
        for (i, (kind, layer)) in slots(&header).enumerate() {
            let at = HEADER_SIZE + i * RECORD_SIZE;
            let r = TensorRecord::parse(&bytes[at..at + RECORD_SIZE])?;
            if r.kind != kind || r.layer != layer {
                return Err(Error::MissingTensor);
            }
            img.check_record(&r, dir_end, body)?;
            any_q8 |= r.dtype == DType::Q8;
        }
        if any_q8 && header.group_size == 0 {
            return Err(Error::InconsistentDimensions);
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
            DType::Q8 => {
                let g = h.group_size as usize;
                r.kind.quantizable()
                    && g != 0
                    && (r.cols as usize) % g == 0
                    && r.len as usize == n
                    && in_bounds(r.offset, n)
                    && in_bounds(r.scale_offset, 4 * (n / g))
            }
        };
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
        if !present(h, kind) {
            return None;
        }
        let idx = if kind.per_layer() {
            if layer >= h.n_layers as usize {
                return None;
            }
            let slot = LAYER_ORDER
                .iter()
                .filter(|&&k| present(h, k))
                .position(|&k| k == kind)?;
            self.n_global + layer * self.n_per_layer + slot
        } else {
            GLOBAL_ORDER
                .iter()
                .filter(|&&k| present(h, k))
                .position(|&k| k == kind)?
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
            DType::Q8 => {
                let g = self.header.group_size as usize;
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

/// A tensor handed to [`write`].
#[derive(Debug, Clone, Copy)]
pub enum TensorSource<'b> {
    /// f32 values, row-major.
    F32(&'b [f32]),
    /// Q8_0 values and one scale per `group_size` values.
    Q8 {
        /// int8 values, row-major.
        values: &'b [i8],
        /// One scale per group.
        scales: &'b [f32],
    },
    /// Raw bytes (the tokenizer).
    U8(&'b [u8]),
}

impl TensorSource<'_> {
    fn dtype(&self) -> DType {
        match self {
            TensorSource::F32(_) => DType::F32,
            TensorSource::Q8 { .. } => DType::Q8,
            TensorSource::U8(_) => DType::U8,
        }
    }

    /// Data bytes this tensor takes in an image, alignment padding included.
    fn padded_bytes(&self) -> usize {
        let raw = match self {
            TensorSource::F32(v) => 4 * v.len(),
            TensorSource::Q8 { values, scales } => {
                values.len().next_multiple_of(ALIGN) + 4 * scales.len()
            }
            TensorSource::U8(b) => b.len(),
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
            TensorSource::Q8 { values, scales } => {
                let g = h.group_size as usize;
                kind.quantizable()
                    && g != 0
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
            TensorSource::Q8 { values, scales } => {
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
}
