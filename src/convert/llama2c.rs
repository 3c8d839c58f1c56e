//! llama2.c checkpoints (`.bin`): a heap-free reader and the conversion into a
//! model image.
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
//! typed [`Error`] otherwise. It reads in place: the slice must be 4-byte
//! aligned (as a memory map or a `Vec<u32>`-backed buffer).
//!
//! ## Conversion
//!
//! [`to_image`] writes an image (see [`crate::image`]) with the llama2.c
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
//! ## Q8 accuracy (measured; `tests/llama2c.rs`)
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

use crate::image::{self, Arch, Header, TensorKind, TensorSource};
use crate::num::q8;
use crate::Error;

/// The v1/v2 magic number, "ak42" in ASCII read as a little-endian `u32`.
pub const MAGIC: u32 = 0x616b_3432;
/// Header bytes of v1 and v2 files.
pub const HEADER_SIZE: usize = 256;
/// Header bytes of legacy files (seven `i32`).
pub const LEGACY_HEADER_SIZE: usize = 28;
/// Largest dimension accepted (keeps every size computation in range).
pub const MAX_DIM: usize = 1 << 20;
/// Largest layer count accepted.
pub const MAX_LAYERS: usize = 1024;
/// `run.c`'s RMSNorm epsilon.
pub const NORM_EPS: f32 = 1e-5;
/// `run.c`'s RoPE base.
pub const ROPE_THETA: f32 = 10000.0;

/// Which llama2.c file format a checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Version {
    /// Legacy v0 (`run.c`): 28-byte header, f32, `freq_cis` tables.
    Legacy,
    /// v1: 256-byte header, f32.
    V1,
    /// v2: 256-byte header, Q8_0 matrices with this group size.
    V2 {
        /// Values per scale.
        group_size: usize,
    },
}

/// The hyperparameters of a llama2.c checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// Model width.
    pub dim: usize,
    /// Feed-forward width.
    pub hidden_dim: usize,
    /// Layers.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Training context (`max_seq_len`).
    pub seq_len: usize,
    /// Whether the classifier reuses the token embedding.
    pub shared_classifier: bool,
}

impl Config {
    /// `dim / n_heads`.
    pub const fn head_size(&self) -> usize {
        self.dim / self.n_heads
    }

    /// `n_kv_heads · head_size` (`run.c`'s `kv_dim`).
    pub const fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_size()
    }

    /// Checks the dimensions: positive, bounded, `dim % n_heads == 0`,
    /// `n_heads % n_kv_heads == 0`, even head size.
    pub fn validate(&self) -> Result<(), Error> {
        let all = [
            self.dim,
            self.hidden_dim,
            self.n_layers,
            self.n_heads,
            self.n_kv_heads,
            self.vocab_size,
            self.seq_len,
        ];
        if all.contains(&0) {
            return Err(Error::ZeroDimension);
        }
        if all.iter().any(|&d| d > MAX_DIM) || self.n_layers > MAX_LAYERS {
            return Err(Error::InconsistentDimensions);
        }
        if self.dim % self.n_heads != 0
            || self.n_heads % self.n_kv_heads != 0
            || self.head_size() % 2 != 0
        {
            return Err(Error::InconsistentDimensions);
        }
        Ok(())
    }

    /// Reads the seven `i32` params; `legacy` lets a negative vocabulary size mean
    /// "classifier not shared".
    fn from_words(w: [i32; 7], legacy: bool, shared: bool) -> Result<Self, Error> {
        let (vocab, shared_classifier) = if legacy {
            let v = w[5].checked_abs().ok_or(Error::InconsistentDimensions)?;
            (v, w[5] > 0)
        } else {
            (w[5], shared)
        };
        let u = |v: i32| usize::try_from(v).map_err(|_| Error::InconsistentDimensions);
        let c = Config {
            dim: u(w[0])?,
            hidden_dim: u(w[1])?,
            n_layers: u(w[2])?,
            n_heads: u(w[3])?,
            n_kv_heads: u(w[4])?,
            vocab_size: u(vocab)?,
            seq_len: u(w[6])?,
            shared_classifier,
        };
        c.validate()?;
        Ok(c)
    }
}

/// A tensor of a llama2.c checkpoint (per layer where the format stores one per layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Weight {
    /// `[vocab][dim]`.
    TokenEmbedding,
    /// Attention RMSNorm weight `[dim]`, per layer.
    AttnNorm,
    /// `[n_heads·head_size][dim]`, per layer.
    Wq,
    /// `[kv_dim][dim]`, per layer.
    Wk,
    /// `[kv_dim][dim]`, per layer.
    Wv,
    /// `[dim][n_heads·head_size]`, per layer.
    Wo,
    /// FFN RMSNorm weight `[dim]`, per layer.
    FfnNorm,
    /// Gate `[hidden][dim]`, per layer.
    W1,
    /// Down `[dim][hidden]`, per layer.
    W2,
    /// Up `[hidden][dim]`, per layer.
    W3,
    /// Final RMSNorm weight `[dim]`.
    FinalNorm,
    /// Legacy only: `[seq_len][head_size/2]` cosines.
    FreqCisReal,
    /// Legacy only: `[seq_len][head_size/2]` sines.
    FreqCisImag,
    /// `[vocab][dim]` (the token embedding when shared).
    Classifier,
}

impl Weight {
    /// Whether the format stores one tensor per layer.
    pub const fn per_layer(self) -> bool {
        use Weight::*;
        matches!(self, AttnNorm | Wq | Wk | Wv | Wo | FfnNorm | W1 | W2 | W3)
    }

    /// `(rows, cols)` of one tensor (one layer's).
    pub const fn shape(self, c: &Config) -> (usize, usize) {
        use Weight::*;
        let q_dim = c.n_heads * c.head_size();
        match self {
            TokenEmbedding | Classifier => (c.vocab_size, c.dim),
            AttnNorm | FfnNorm | FinalNorm => (1, c.dim),
            Wq => (q_dim, c.dim),
            Wk | Wv => (c.kv_dim(), c.dim),
            Wo => (c.dim, q_dim),
            W1 | W3 => (c.hidden_dim, c.dim),
            W2 => (c.dim, c.hidden_dim),
            FreqCisReal | FreqCisImag => (c.seq_len, c.head_size() / 2),
        }
    }

    /// Whether v2 stores it as Q8_0 (every matrix; norms stay f32).
    pub const fn quantized_in_v2(self) -> bool {
        use Weight::*;
        matches!(
            self,
            TokenEmbedding | Wq | Wk | Wv | Wo | W1 | W2 | W3 | Classifier
        )
    }
}

/// Legacy file order.
const LEGACY_ORDER: [Weight; 14] = [
    Weight::TokenEmbedding,
    Weight::AttnNorm,
    Weight::Wq,
    Weight::Wk,
    Weight::Wv,
    Weight::Wo,
    Weight::FfnNorm,
    Weight::W1,
    Weight::W2,
    Weight::W3,
    Weight::FinalNorm,
    Weight::FreqCisReal,
    Weight::FreqCisImag,
    Weight::Classifier,
];

/// v1 and v2 file order (v2: the first three in f32, the rest Q8_0).
const V1_ORDER: [Weight; 12] = [
    Weight::AttnNorm,
    Weight::FfnNorm,
    Weight::FinalNorm,
    Weight::TokenEmbedding,
    Weight::Wq,
    Weight::Wk,
    Weight::Wv,
    Weight::Wo,
    Weight::W1,
    Weight::W2,
    Weight::W3,
    Weight::Classifier,
];

/// A checkpoint tensor, borrowed from the file.
#[derive(Debug, Clone, Copy)]
pub enum Tensor<'a> {
    /// f32 values, row-major.
    F32(&'a [f32]),
    /// Q8_0: int8 values and one scale per `group` values of the flattened tensor.
    Q8 {
        /// int8 values.
        values: &'a [i8],
        /// Scales.
        scales: &'a [f32],
        /// Values per scale.
        group: usize,
    },
}

/// A validated llama2.c checkpoint, read in place.
#[derive(Debug, Clone, Copy)]
pub struct Checkpoint<'a> {
    bytes: &'a [u8],
    config: Config,
    version: Version,
}

fn rd_i32(b: &[u8], at: usize) -> Result<i32, Error> {
    match b.get(at..at + 4) {
        Some(s) => Ok(i32::from_le_bytes([s[0], s[1], s[2], s[3]])),
        None => Err(Error::Truncated),
    }
}

fn words7(b: &[u8], at: usize) -> Result<[i32; 7], Error> {
    let mut w = [0i32; 7];
    for (i, o) in w.iter_mut().enumerate() {
        *o = rd_i32(b, at + 4 * i)?;
    }
    Ok(w)
}

impl<'a> Checkpoint<'a> {
    /// Parses and validates a checkpoint (any of the three versions).
    ///
    /// Errors: empty or shorter than its header or its tensors
    /// ([`Error::Truncated`]); longer than its tensors ([`Error::LengthMismatch`]
    /// with the expected and actual byte counts); a first word that is neither the
    /// magic nor a plausible legacy `dim` ([`Error::BadMagic`]); a version other
    /// than 1 or 2 after the magic ([`Error::UnsupportedVersion`]); a shared flag
    /// other than 0/1 or non-zero header padding ([`Error::Malformed`]); zero
    /// dimensions ([`Error::ZeroDimension`]); negative, oversized or inconsistent
    /// ones, or a group size that does not divide a tensor
    /// ([`Error::InconsistentDimensions`]); a slice not 4-byte aligned
    /// ([`Error::Misaligned`]).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let first = rd_i32(bytes, 0)?;
        let (config, version, header) = if first as u32 == MAGIC {
            let v = rd_i32(bytes, 4)?;
            if v != 1 && v != 2 {
                return Err(Error::UnsupportedVersion { version: v as u32 });
            }
            if bytes.len() < HEADER_SIZE {
                return Err(Error::Truncated);
            }
            let shared = match bytes[36] {
                0 => false,
                1 => true,
                _ => return Err(Error::Malformed),
            };
            let config = Config::from_words(words7(bytes, 8)?, false, shared)?;
            let (version, used) = if v == 1 {
                (Version::V1, 37)
            } else {
                let g = rd_i32(bytes, 37)?;
                if g == 0 {
                    return Err(Error::ZeroDimension);
                }
                let g = usize::try_from(g).map_err(|_| Error::InconsistentDimensions)?;
                if g > MAX_DIM {
                    return Err(Error::InconsistentDimensions);
                }
                (Version::V2 { group_size: g }, 41)
            };
            if bytes[used..HEADER_SIZE].iter().any(|&b| b != 0) {
                return Err(Error::Malformed);
            }
            (config, version, HEADER_SIZE)
        } else {
            if first < 0 || first as usize > MAX_DIM {
                return Err(Error::BadMagic);
            }
            if bytes.len() < LEGACY_HEADER_SIZE {
                return Err(Error::Truncated);
            }
            let config = Config::from_words(words7(bytes, 0)?, true, true)?;
            (config, Version::Legacy, LEGACY_HEADER_SIZE)
        };
        let ck = Checkpoint {
            bytes,
            config,
            version,
        };
        let mut total = header;
        for w in ck.order() {
            total = ck
                .span(w)?
                .checked_mul(ck.count(w))
                .and_then(|s| s.checked_add(total))
                .ok_or(Error::Truncated)?;
        }
        if bytes.len() < total {
            return Err(Error::Truncated);
        }
        if bytes.len() > total {
            return Err(Error::LengthMismatch {
                expected: total,
                got: bytes.len(),
            });
        }
        if bytes.as_ptr().align_offset(4) != 0 {
            return Err(Error::Misaligned);
        }
        // Every tensor must be readable in place.
        for w in ck.order() {
            for l in 0..ck.count(w) {
                ck.tensor(w, l)?;
            }
        }
        Ok(ck)
    }

    /// The hyperparameters.
    pub const fn config(&self) -> &Config {
        &self.config
    }

    /// The file format.
    pub const fn version(&self) -> Version {
        self.version
    }

    /// The Q8_0 group size of a v2 file.
    pub const fn group_size(&self) -> Option<usize> {
        match self.version {
            Version::V2 { group_size } => Some(group_size),
            _ => None,
        }
    }

    /// The tensors this file stores, in file order.
    fn order(&self) -> impl Iterator<Item = Weight> + '_ {
        let list: &'static [Weight] = match self.version {
            Version::Legacy => &LEGACY_ORDER,
            _ => &V1_ORDER,
        };
        list.iter()
            .copied()
            .filter(move |&w| w != Weight::Classifier || !self.config.shared_classifier)
    }

    /// Tensors of this kind in the file (layers, or 1).
    fn count(&self, w: Weight) -> usize {
        if w.per_layer() {
            self.config.n_layers
        } else {
            1
        }
    }

    /// Whether this file stores `w` as Q8_0.
    fn is_q8(&self, w: Weight) -> bool {
        matches!(self.version, Version::V2 { .. }) && w.quantized_in_v2()
    }

    /// Bytes one tensor of kind `w` takes in the file.
    fn span(&self, w: Weight) -> Result<usize, Error> {
        let (r, c) = w.shape(&self.config);
        let n = r.checked_mul(c).ok_or(Error::InconsistentDimensions)?;
        match self.version {
            Version::V2 { group_size } if w.quantized_in_v2() => {
                if n % group_size != 0 {
                    return Err(Error::InconsistentDimensions);
                }
                n.checked_add(4 * (n / group_size))
                    .ok_or(Error::InconsistentDimensions)
            }
            _ => n.checked_mul(4).ok_or(Error::InconsistentDimensions),
        }
    }

    /// A tensor (`layer` of a per-layer kind, 0 otherwise). The classifier of a
    /// shared checkpoint is the token embedding; `FreqCis*` exist in legacy files only.
    pub fn tensor(&self, w: Weight, layer: usize) -> Result<Tensor<'a>, Error> {
        if w == Weight::Classifier && self.config.shared_classifier {
            return self.tensor(Weight::TokenEmbedding, 0);
        }
        if layer >= self.count(w) {
            return Err(Error::PositionOutOfRange {
                position: layer,
                len: self.count(w),
            });
        }
        let mut at = match self.version {
            Version::Legacy => LEGACY_HEADER_SIZE,
            _ => HEADER_SIZE,
        };
        let mut found = false;
        for o in self.order() {
            let span = self.span(o)?;
            if o == w {
                at += layer * span;
                found = true;
                break;
            }
            at += span * self.count(o);
        }
        if !found {
            return Err(Error::MissingTensor);
        }
        let (r, c) = w.shape(&self.config);
        let n = r * c;
        let get =
            |from: usize, len: usize| self.bytes.get(from..from + len).ok_or(Error::Truncated);
        if self.is_q8(w) {
            let g = self.group_size().ok_or(Error::Malformed)?;
            let values: &[i8] = bytemuck::cast_slice(get(at, n)?);
            let scales = bytemuck::try_cast_slice(get(at + n, 4 * (n / g))?)
                .map_err(|_| Error::Misaligned)?;
            Ok(Tensor::Q8 {
                values,
                scales,
                group: g,
            })
        } else {
            Ok(Tensor::F32(
                bytemuck::try_cast_slice(get(at, 4 * n)?).map_err(|_| Error::Misaligned)?,
            ))
        }
    }
}

/// Fills RoPE tables exactly as `run.c` computes its rotation each step:
/// for position `p` and pair `j`, `head_dim = 2j`,
/// `freq = 1.0f / powf(10000.0f, head_dim / (float)head_size)`,
/// `val = p * freq` (f32), `cos[p][j] = cosf(val)`, `sin[p][j] = sinf(val)`.
///
/// The caller passes the f32 functions: on the host `f32::powf`, `f32::cos`,
/// `f32::sin` (the system maths library `run.c` links against, so the tables are
/// bit-identical to `run.c`'s angles); on a device `libm`'s. Fills
/// `cos.len() / (head_size/2)` positions and returns that count.
pub fn fill_rope_tables(
    head_size: usize,
    cos: &mut [f32],
    sin: &mut [f32],
    powf: impl Fn(f32, f32) -> f32,
    cosf: impl Fn(f32) -> f32,
    sinf: impl Fn(f32) -> f32,
) -> Result<usize, Error> {
    if head_size == 0 {
        return Err(Error::ZeroDimension);
    }
    if head_size % 2 != 0 {
        return Err(Error::OddDimension { dim: head_size });
    }
    let pairs = head_size / 2;
    if cos.len() != sin.len() || cos.len() % pairs != 0 {
        return Err(Error::LengthMismatch {
            expected: cos.len().next_multiple_of(pairs),
            got: sin.len(),
        });
    }
    for (p, (crow, srow)) in cos
        .chunks_exact_mut(pairs)
        .zip(sin.chunks_exact_mut(pairs))
        .enumerate()
    {
        for (j, (c, s)) in crow.iter_mut().zip(srow.iter_mut()).enumerate() {
            let head_dim = (2 * j) as f32;
            let freq = 1.0f32 / powf(ROPE_THETA, head_dim / head_size as f32);
            let val = p as f32 * freq;
            *c = cosf(val);
            *s = sinf(val);
        }
    }
    Ok(cos.len() / pairs)
}

/// How the image stores the matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Quant {
    /// f32 (a v2 checkpoint is dequantized).
    F32,
    /// Q8_0 with this group size (a multiple of 4, at most 4096). For a v2
    /// checkpoint it must equal the file's group size. Matrices whose rows are
    /// not a whole number of groups stay f32.
    Q8 {
        /// Values per scale.
        group_size: usize,
    },
    /// Q8_0 for every matrix, never in groups coarser than `group_size` (a
    /// multiple of 4, at most 4096; for a v2 checkpoint, the file's): a matrix
    /// whose rows are not whole groups of `group_size` uses [`fit_group`] — the
    /// largest multiple of 4 that divides its row length and is at most
    /// `group_size` (llama2.c's `w2` with rows of 172 and `group_size` 64: groups
    /// of 4) — and stays f32 only when there is none. Such a matrix of a v2
    /// checkpoint is requantized from its dequantized values.
    Q8Fit {
        /// Values per scale, at most.
        group_size: usize,
    },
    /// IEEE binary16 for every matrix (11 significant bits, half the flash of
    /// f32; see [`crate::num::fp16`]): f32 weights rounded to nearest even, a v2
    /// checkpoint's dequantized values likewise.
    F16,
}

impl Quant {
    /// The storage this setting gives a matrix whose rows hold `cols` values.
    pub const fn precision(&self, cols: usize) -> Precision {
        match *self {
            Quant::F32 => Precision::F32,
            Quant::Q8 { group_size } => {
                if group_size != 0 && cols % group_size == 0 {
                    Precision::Q8 { group_size }
                } else {
                    Precision::F32
                }
            }
            Quant::Q8Fit { group_size } => match fit_group(cols, group_size) {
                Some(g) => Precision::Q8 { group_size: g },
                None => Precision::F32,
            },
            Quant::F16 => Precision::F16,
        }
    }
}

/// How one image matrix is stored (see [`to_image_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Precision {
    /// f32 (a v2 checkpoint's matrix is dequantized, `q · scale`).
    F32,
    /// Q8_0 in groups of `group_size` values of a row (a multiple of 4, at most
    /// 4096, dividing the row length). f32 weights are quantized with `runq.c`'s
    /// rule; a v2 matrix keeps its values and scales when `group_size` is the
    /// file's, and is requantized from its dequantized values otherwise.
    Q8 {
        /// Values per scale.
        group_size: usize,
    },
    /// IEEE binary16, rounded to nearest even from the f32 (or dequantized v2)
    /// values.
    F16,
}

/// The largest multiple of 4 that divides `cols` and is at most `group_size`
/// (`None` when there is none, i.e. `cols % 4 != 0` or `group_size < 4`).
pub const fn fit_group(cols: usize, group_size: usize) -> Option<usize> {
    let mut g = if group_size < cols { group_size } else { cols };
    g -= g % 4;
    while g >= 4 {
        if cols % g == 0 {
            return Some(g);
        }
        g -= 4;
    }
    None
}

/// `export.py`'s default Q8_0 group size: 64, halved while it does not divide `dim`.
pub const fn default_group_size(config: &Config) -> usize {
    let mut g = 64;
    while g > 1 && config.dim % g != 0 {
        g /= 2;
    }
    g
}

/// What goes into the image besides the checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct ImageOptions<'t> {
    /// f32 or Q8_0 matrices ([`sizes_with`] and [`to_image_with`] ignore it).
    pub quant: Quant,
    /// Positions of the image (`seq_len` in its header): at most the checkpoint's.
    pub context: usize,
    /// RoPE cosines `[context][head_size/2]` (see [`fill_rope_tables`]).
    pub rope_cos: &'t [f32],
    /// RoPE sines `[context][head_size/2]`.
    pub rope_sin: &'t [f32],
    /// A llama2.c tokenizer file to embed (`FLAG_TOKENIZER`).
    pub tokenizer: Option<&'t [u8]>,
}

/// Buffer sizes for [`to_image`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Sizes {
    /// Tensors in the image (entries of the `sources` slice).
    pub n_tensors: usize,
    /// `u32` words of scratch (quantized or dequantized tensors).
    pub scratch_words: usize,
    /// Bytes of the image.
    pub image_bytes: usize,
}

/// A per-matrix storage policy: `(kind, layer, row length) -> Precision`, asked
/// for every quantizable matrix ([`TensorKind::quantizable`]; `layer` is 0 for
/// the global ones).
pub type Policy<'p> = &'p dyn Fn(TensorKind, usize, usize) -> Precision;

/// Where the storage of each matrix comes from.
#[derive(Clone, Copy)]
enum Choice<'p> {
    Quant(Quant),
    Policy(Policy<'p>),
}

impl Choice<'_> {
    fn precision(&self, kind: TensorKind, layer: usize, cols: usize) -> Precision {
        match self {
            Choice::Quant(q) => q.precision(cols),
            Choice::Policy(p) => p(kind, layer, cols),
        }
    }
}

/// How one image tensor is produced.
enum Plan<'a> {
    /// Taken as is.
    Borrow(TensorSource<'a>),
    /// An f32 tensor quantized into scratch in groups of this size.
    Quantize(&'a [f32], usize),
    /// A Q8 tensor (values, scales, group) dequantized into scratch.
    Dequantize(&'a [i8], &'a [f32], usize),
    /// A Q8 tensor (values, scales, group) dequantized into scratch and
    /// quantized again in groups of the last size.
    Requantize(&'a [i8], &'a [f32], usize, usize),
    /// An f32 tensor rounded to binary16 into scratch.
    Narrow(&'a [f32]),
    /// A Q8 tensor (values, scales, group) dequantized and rounded to binary16.
    DequantizeNarrow(&'a [i8], &'a [f32], usize),
}

/// Scratch words of a binary16 tensor of `n` values.
const fn f16_words(n: usize) -> usize {
    n.div_ceil(2)
}

/// Scratch words of a Q8 tensor of `n` values in groups of `g`.
const fn q8_words(n: usize, g: usize) -> usize {
    n.div_ceil(4) + n / g
}

impl Plan<'_> {
    fn scratch_words(&self) -> usize {
        match *self {
            Plan::Borrow(_) => 0,
            Plan::Quantize(v, g) => q8_words(v.len(), g),
            Plan::Dequantize(v, _, _) => v.len(),
            Plan::Requantize(v, _, _, g) => v.len() + q8_words(v.len(), g),
            Plan::Narrow(v) => f16_words(v.len()),
            Plan::DequantizeNarrow(v, _, _) => v.len() + f16_words(v.len()),
        }
    }

    fn image_bytes(&self) -> usize {
        let q8 = |n: usize, g: usize| n.next_multiple_of(image::ALIGN) + 4 * (n / g);
        match *self {
            Plan::Borrow(TensorSource::F32(v)) => 4 * v.len(),
            Plan::Borrow(TensorSource::U8(b)) => b.len().next_multiple_of(image::ALIGN),
            Plan::Borrow(TensorSource::Q8 { values, scales })
            | Plan::Borrow(TensorSource::Q8Grouped { values, scales, .. }) => {
                values.len().next_multiple_of(image::ALIGN) + 4 * scales.len()
            }
            Plan::Borrow(TensorSource::F16(v)) => (2 * v.len()).next_multiple_of(image::ALIGN),
            Plan::Quantize(v, g) => q8(v.len(), g),
            Plan::Requantize(v, _, _, g) => q8(v.len(), g),
            Plan::Dequantize(v, _, _) => 4 * v.len(),
            Plan::Narrow(v) => (2 * v.len()).next_multiple_of(image::ALIGN),
            Plan::DequantizeNarrow(v, _, _) => (2 * v.len()).next_multiple_of(image::ALIGN),
        }
    }
}

/// The header group size `opts.quant` asks for (0 for f32), validated against
/// the checkpoint.
fn quant_group(ck: &Checkpoint<'_>, quant: Quant) -> Result<usize, Error> {
    match (quant, ck.group_size()) {
        (Quant::F32 | Quant::F16, _) => Ok(0),
        (Quant::Q8 { group_size } | Quant::Q8Fit { group_size }, file) => {
            if group_size == 0
                || group_size % 4 != 0
                || group_size > 4096
                || file.is_some_and(|g| g != group_size)
            {
                return Err(Error::InvalidParameter);
            }
            Ok(group_size)
        }
    }
}

/// The image header for a checkpoint and options with this default Q8 group
/// (n_tensors/image_len left 0).
fn header(
    ck: &Checkpoint<'_>,
    opts: &ImageOptions<'_>,
    group_size: usize,
) -> Result<Header, Error> {
    let c = ck.config();
    let hs = c.head_size();
    if opts.context == 0 {
        return Err(Error::ZeroDimension);
    }
    if opts.context > c.seq_len {
        return Err(Error::PositionOutOfRange {
            position: opts.context - 1,
            len: c.seq_len,
        });
    }
    let table = opts.context * (hs / 2);
    for got in [opts.rope_cos.len(), opts.rope_sin.len()] {
        if got != table {
            return Err(Error::LengthMismatch {
                expected: table,
                got,
            });
        }
    }
    let mut flags = image::FLAG_ROPE_INTERLEAVED;
    if c.shared_classifier {
        flags |= image::FLAG_TIED_EMBEDDINGS;
    }
    if opts.tokenizer.is_some() {
        flags |= image::FLAG_TOKENIZER;
    }
    let u = |v: usize| u32::try_from(v).map_err(|_| Error::InconsistentDimensions);
    let h = Header {
        arch: Arch::Llama,
        flags,
        dim: u(c.dim)?,
        hidden_dim: u(c.hidden_dim)?,
        n_layers: u(c.n_layers)?,
        n_heads: u(c.n_heads)?,
        n_kv_heads: u(c.n_kv_heads)?,
        head_dim: u(hs)?,
        vocab_size: u(c.vocab_size)?,
        seq_len: u(opts.context)?,
        rotary_dim: u(hs)?,
        sliding_window: 0,
        norm_eps: NORM_EPS,
        group_size: u(group_size)?,
        bos_id: 1,
        eos_id: 2,
        n_tensors: 0,
        image_len: 0,
        train_context: u(c.seq_len)?,
        block: image::Block::LLAMA,
    };
    h.validate()?;
    Ok(h)
}

/// The header for a conversion: `opts.quant`'s group, or for a policy the group
/// of the first Q8 matrix in canonical order (the one most records then share
/// in practice; records with another group name their own).
fn header_for(
    ck: &Checkpoint<'_>,
    opts: &ImageOptions<'_>,
    choice: Choice<'_>,
) -> Result<Header, Error> {
    match choice {
        Choice::Quant(q) => header(ck, opts, quant_group(ck, q)?),
        Choice::Policy(p) => {
            let h = header(ck, opts, 0)?;
            let first =
                image::slots(&h)
                    .filter(|(k, _)| k.quantizable())
                    .find_map(|(k, l)| match p(k, l as usize, h.expected_shape(k).1) {
                        Precision::Q8 { group_size } => Some(group_size),
                        Precision::F32 | Precision::F16 => None,
                    });
            match first {
                Some(g) if image::valid_group(u32::try_from(g).unwrap_or(0)) => header(ck, opts, g),
                Some(_) => Err(Error::InvalidParameter),
                None => Ok(h),
            }
        }
    }
}

/// The checkpoint tensor behind an image tensor.
fn source_weight(kind: TensorKind) -> Option<Weight> {
    use TensorKind::*;
    Some(match kind {
        TokenEmbedding => Weight::TokenEmbedding,
        FinalNorm => Weight::FinalNorm,
        Output => Weight::Classifier,
        AttnNorm => Weight::AttnNorm,
        Wq => Weight::Wq,
        Wk => Weight::Wk,
        Wv => Weight::Wv,
        Wo => Weight::Wo,
        FfnNorm => Weight::FfnNorm,
        WGate => Weight::W1,
        WUp => Weight::W3,
        WDown => Weight::W2,
        // RoPE tables, tokenizer, biases and the other architectures' tensors.
        _ => return None,
    })
}

fn plan<'a>(
    ck: &Checkpoint<'a>,
    opts: &ImageOptions<'a>,
    h: &Header,
    choice: Choice<'_>,
    kind: TensorKind,
    layer: usize,
) -> Result<Plan<'a>, Error> {
    let Some(w) = source_weight(kind) else {
        return match kind {
            TensorKind::RopeCos => Ok(Plan::Borrow(TensorSource::F32(opts.rope_cos))),
            TensorKind::RopeSin => Ok(Plan::Borrow(TensorSource::F32(opts.rope_sin))),
            TensorKind::Tokenizer => opts
                .tokenizer
                .map(|t| Plan::Borrow(TensorSource::U8(t)))
                .ok_or(Error::MissingTensor),
            _ => Err(Error::MissingTensor),
        };
    };
    let (_, cols) = h.expected_shape(kind);
    let precision = if kind.quantizable() {
        choice.precision(kind, layer, cols)
    } else {
        Precision::F32
    };
    if let Precision::Q8 { group_size: g } = precision {
        if !(image::valid_group(u32::try_from(g).unwrap_or(0)) && cols % g == 0) {
            return Err(Error::InvalidParameter);
        }
    }
    Ok(match (ck.tensor(w, layer)?, precision) {
        (Tensor::F32(v), Precision::F32) => Plan::Borrow(TensorSource::F32(v)),
        (Tensor::F32(v), Precision::Q8 { group_size }) => Plan::Quantize(v, group_size),
        (Tensor::F32(v), Precision::F16) => Plan::Narrow(v),
        (
            Tensor::Q8 {
                values,
                scales,
                group,
            },
            Precision::F16,
        ) => Plan::DequantizeNarrow(values, scales, group),
        (
            Tensor::Q8 {
                values,
                scales,
                group,
            },
            Precision::Q8 { group_size },
        ) => {
            if group == group_size {
                // Groups of a whole number per row: the file's flattened groups are
                // the image's row groups.
                Plan::Borrow(TensorSource::Q8Grouped {
                    values,
                    scales,
                    group,
                })
            } else {
                Plan::Requantize(values, scales, group, group_size)
            }
        }
        (
            Tensor::Q8 {
                values,
                scales,
                group,
            },
            Precision::F32,
        ) => Plan::Dequantize(values, scales, group),
    })
}

fn sizes_of(
    ck: &Checkpoint<'_>,
    opts: &ImageOptions<'_>,
    choice: Choice<'_>,
) -> Result<Sizes, Error> {
    let h = header_for(ck, opts, choice)?;
    let mut s = Sizes {
        n_tensors: 0,
        scratch_words: 0,
        image_bytes: image::HEADER_SIZE + image::CHECKSUM_SIZE,
    };
    for (kind, layer) in image::slots(&h) {
        let p = plan(ck, opts, &h, choice, kind, layer as usize)?;
        s.n_tensors += 1;
        s.scratch_words += p.scratch_words();
        s.image_bytes += image::RECORD_SIZE + p.image_bytes();
    }
    Ok(s)
}

/// Sizes of the buffers [`to_image`] needs.
pub fn sizes(ck: &Checkpoint<'_>, opts: &ImageOptions<'_>) -> Result<Sizes, Error> {
    sizes_of(ck, opts, Choice::Quant(opts.quant))
}

/// Sizes of the buffers [`to_image_with`] needs for this policy.
pub fn sizes_with(
    ck: &Checkpoint<'_>,
    opts: &ImageOptions<'_>,
    policy: Policy<'_>,
) -> Result<Sizes, Error> {
    sizes_of(ck, opts, Choice::Policy(policy))
}

/// Splits `n` words off the front of `rest`.
fn take_words<'s>(rest: &mut &'s mut [u32], n: usize) -> Result<&'s mut [u32], Error> {
    let buf = core::mem::take(rest);
    if buf.len() < n {
        return Err(Error::BufferTooSmall {
            needed: n,
            got: buf.len(),
        });
    }
    let (mine, tail) = buf.split_at_mut(n);
    *rest = tail;
    Ok(mine)
}

fn take_words_ref<'s>(rest: &mut &'s [u32], n: usize) -> Result<&'s [u32], Error> {
    if rest.len() < n {
        return Err(Error::BufferTooSmall {
            needed: n,
            got: rest.len(),
        });
    }
    let (mine, tail) = rest.split_at(n);
    *rest = tail;
    Ok(mine)
}

/// Quantizes `v` in groups of `g` into `words` (`q8_words(v.len(), g)` words:
/// the int8 values, padded to a word, then the scales).
fn quantize_into(v: &[f32], g: usize, words: &mut [u32]) -> Result<(), Error> {
    let (qw, sw) = words.split_at_mut(v.len().div_ceil(4));
    let q: &mut [i8] = bytemuck::cast_slice_mut(qw);
    q8::quantize(v, g, &mut q[..v.len()], bytemuck::cast_slice_mut(sw))
}

/// The Q8 source [`quantize_into`] wrote.
fn q8_source(words: &[u32], n: usize, g: usize) -> TensorSource<'_> {
    let (qw, sw) = words.split_at(n.div_ceil(4));
    let q: &[i8] = bytemuck::cast_slice(qw);
    TensorSource::Q8Grouped {
        values: &q[..n],
        scales: bytemuck::cast_slice(sw),
        group: g,
    }
}

/// Rounds `v` to binary16 into `words` (`f16_words(v.len())` words);
/// [`Error::NotFinite`] when a value is NaN or beyond binary16's range (±65 504).
fn narrow_into(v: &[f32], words: &mut [u32]) -> Result<(), Error> {
    let h: &mut [u16] = bytemuck::cast_slice_mut(words);
    for (o, &x) in h.iter_mut().zip(v) {
        *o = crate::num::fp16::from_f32(x);
        if !crate::num::fp16::is_finite(*o) {
            return Err(Error::NotFinite);
        }
    }
    Ok(())
}

/// The binary16 source [`narrow_into`] wrote.
fn f16_source(words: &[u32], n: usize) -> TensorSource<'_> {
    let h: &[u16] = bytemuck::cast_slice(words);
    TensorSource::F16(&h[..n])
}

fn convert<'s>(
    ck: &Checkpoint<'s>,
    opts: &ImageOptions<'s>,
    choice: Choice<'_>,
    scratch: &'s mut [u32],
    sources: &mut [TensorSource<'s>],
    out: &mut [u8],
) -> Result<usize, Error> {
    let h = header_for(ck, opts, choice)?;
    let n = image::slots(&h).count();
    if sources.len() < n {
        return Err(Error::BufferTooSmall {
            needed: n,
            got: sources.len(),
        });
    }
    // Pass 1: quantize / dequantize into scratch.
    let mut rest: &mut [u32] = &mut *scratch;
    for (kind, layer) in image::slots(&h) {
        match plan(ck, opts, &h, choice, kind, layer as usize)? {
            Plan::Borrow(_) => {}
            p @ Plan::Quantize(v, g) => {
                quantize_into(v, g, take_words(&mut rest, p.scratch_words())?)?;
            }
            p @ Plan::Dequantize(values, scales, g) => {
                let words = take_words(&mut rest, p.scratch_words())?;
                q8::dequantize(values, scales, g, bytemuck::cast_slice_mut(words))?;
            }
            p @ Plan::Requantize(values, scales, file_g, g) => {
                let words = take_words(&mut rest, p.scratch_words())?;
                let (fw, qw) = words.split_at_mut(values.len());
                let f: &mut [f32] = bytemuck::cast_slice_mut(fw);
                q8::dequantize(values, scales, file_g, f)?;
                quantize_into(f, g, qw)?;
            }
            p @ Plan::Narrow(v) => {
                narrow_into(v, take_words(&mut rest, p.scratch_words())?)?;
            }
            p @ Plan::DequantizeNarrow(values, scales, g) => {
                let words = take_words(&mut rest, p.scratch_words())?;
                let (fw, hw) = words.split_at_mut(values.len());
                let f: &mut [f32] = bytemuck::cast_slice_mut(fw);
                q8::dequantize(values, scales, g, f)?;
                narrow_into(f, hw)?;
            }
        }
    }
    // Pass 2: the tensor list, borrowing the checkpoint and the filled scratch.
    let mut rest: &'s [u32] = scratch;
    for ((kind, layer), src) in image::slots(&h).zip(sources.iter_mut()) {
        *src = match plan(ck, opts, &h, choice, kind, layer as usize)? {
            Plan::Borrow(s) => s,
            p @ Plan::Quantize(v, g) => {
                q8_source(take_words_ref(&mut rest, p.scratch_words())?, v.len(), g)
            }
            p @ Plan::Requantize(values, _, _, g) => {
                let words = take_words_ref(&mut rest, p.scratch_words())?;
                q8_source(&words[values.len()..], values.len(), g)
            }
            p @ Plan::Dequantize(..) => TensorSource::F32(bytemuck::cast_slice(take_words_ref(
                &mut rest,
                p.scratch_words(),
            )?)),
            p @ Plan::Narrow(v) => {
                f16_source(take_words_ref(&mut rest, p.scratch_words())?, v.len())
            }
            p @ Plan::DequantizeNarrow(values, _, _) => {
                let words = take_words_ref(&mut rest, p.scratch_words())?;
                f16_source(&words[values.len()..], values.len())
            }
        };
    }
    image::write(&h, &sources[..n], out)
}

/// Converts a checkpoint into an image written to `out`; returns its length.
///
/// Heap-free: `scratch` (at least [`Sizes::scratch_words`] words) receives the
/// tensors that must be quantized or dequantized, `sources` (at least
/// [`Sizes::n_tensors`] entries, any initial value) the tensor list handed to
/// [`image::write`], and `out` (at least [`Sizes::image_bytes`]) the image. Get
/// the sizes from [`sizes`].
///
/// Errors: a zero context ([`Error::ZeroDimension`]) or one beyond the
/// checkpoint's `seq_len` ([`Error::PositionOutOfRange`]); RoPE tables not
/// `context · head_size/2` long ([`Error::LengthMismatch`]); a Q8 group that is
/// not a multiple of 4 up to 4096, or differs from a v2 file's
/// ([`Error::InvalidParameter`]); buffers too small ([`Error::BufferTooSmall`]);
/// and whatever [`image::write`] reports.
pub fn to_image<'s>(
    ck: &Checkpoint<'s>,
    opts: &ImageOptions<'s>,
    scratch: &'s mut [u32],
    sources: &mut [TensorSource<'s>],
    out: &mut [u8],
) -> Result<usize, Error> {
    convert(ck, opts, Choice::Quant(opts.quant), scratch, sources, out)
}

/// [`to_image`] with the storage of every matrix chosen by `policy` instead of
/// `opts.quant` (size the buffers with [`sizes_with`]). The header's
/// `group_size` is the group of the first Q8 matrix in canonical order; Q8
/// matrices with another group carry it in their records.
///
/// Errors: those of [`to_image`], and [`Error::InvalidParameter`] when the
/// policy names a Q8 group that is not a multiple of 4 up to 4096 or does not
/// divide the matrix's rows.
pub fn to_image_with<'s>(
    ck: &Checkpoint<'s>,
    opts: &ImageOptions<'s>,
    policy: Policy<'_>,
    scratch: &'s mut [u32],
    sources: &mut [TensorSource<'s>],
    out: &mut [u8],
) -> Result<usize, Error> {
    convert(ck, opts, Choice::Policy(policy), scratch, sources, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy(words: [i32; 7]) -> Vec<u32> {
        words.iter().map(|&w| w as u32).collect()
    }

    #[test]
    fn header_errors() {
        let b = legacy([8, 16, 1, 2, 1, 5, 4]);
        // Header fine, tensors missing.
        assert_eq!(
            Checkpoint::parse(bytemuck::cast_slice(&b)).unwrap_err(),
            Error::Truncated
        );
        let b = legacy([8, 16, 1, 3, 1, 5, 4]);
        assert_eq!(
            Checkpoint::parse(bytemuck::cast_slice(&b)).unwrap_err(),
            Error::InconsistentDimensions
        );
        let b = legacy([-8, 16, 1, 2, 1, 5, 4]);
        assert_eq!(
            Checkpoint::parse(bytemuck::cast_slice(&b)).unwrap_err(),
            Error::BadMagic
        );
        let b = legacy([8, 0, 1, 2, 1, 5, 4]);
        assert_eq!(
            Checkpoint::parse(bytemuck::cast_slice(&b)).unwrap_err(),
            Error::ZeroDimension
        );
        assert_eq!(Checkpoint::parse(&[]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn default_group_follows_export_py() {
        let mut c = Config {
            dim: 64,
            hidden_dim: 172,
            n_layers: 1,
            n_heads: 1,
            n_kv_heads: 1,
            vocab_size: 4,
            seq_len: 4,
            shared_classifier: true,
        };
        assert_eq!(default_group_size(&c), 64);
        c.dim = 288;
        assert_eq!(default_group_size(&c), 32);
    }

    #[test]
    fn fit_group_is_never_coarser() {
        assert_eq!(fit_group(64, 64), Some(64));
        assert_eq!(fit_group(172, 64), Some(4));
        assert_eq!(fit_group(172, 172), Some(172));
        assert_eq!(fit_group(172, 4096), Some(172));
        assert_eq!(fit_group(288, 64), Some(48));
        assert_eq!(fit_group(100, 64), Some(20));
        assert_eq!(fit_group(768, 32), Some(32));
        assert_eq!(fit_group(8, 6), Some(4));
        assert_eq!(fit_group(6, 64), None);
        assert_eq!(fit_group(64, 3), None);
        assert_eq!(fit_group(0, 64), None);
        // Exhaustively: a multiple of 4 dividing cols, at most the request, and
        // no larger one exists.
        for cols in 1..200 {
            for req in 0..80 {
                match fit_group(cols, req) {
                    Some(g) => {
                        assert!(g % 4 == 0 && g <= req && cols % g == 0);
                        assert!((g + 1..=req.min(cols)).all(|h| h % 4 != 0 || cols % h != 0));
                    }
                    None => assert!((4..=req.min(cols)).all(|h| h % 4 != 0 || cols % h != 0)),
                }
            }
        }
        let q = |quant: Quant, cols| quant.precision(cols);
        assert_eq!(q(Quant::F32, 64), Precision::F32);
        assert_eq!(q(Quant::Q8 { group_size: 64 }, 172), Precision::F32);
        assert_eq!(
            q(Quant::Q8 { group_size: 64 }, 128),
            Precision::Q8 { group_size: 64 }
        );
        assert_eq!(
            q(Quant::Q8Fit { group_size: 64 }, 172),
            Precision::Q8 { group_size: 4 }
        );
        assert_eq!(q(Quant::Q8Fit { group_size: 64 }, 6), Precision::F32);
    }
}
