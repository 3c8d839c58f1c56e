//! The llama2.c file formats: [`Checkpoint::parse`] validates a checkpoint held in
//! a byte slice and reads its tensors in place; [`fill_rope_tables`] computes the
//! RoPE tables as `run.c` computes its angles.

use microformer::Error;

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

/// Fills RoPE tables exactly as `run.c` computes its rotation each step: the
/// rotation hook's llama2.c rule, [`microformer::pos::rope::fill_llama2c`] with
/// θ = [`ROPE_THETA`].
pub fn fill_rope_tables(
    head_size: usize,
    cos: &mut [f32],
    sin: &mut [f32],
    powf: impl Fn(f32, f32) -> f32,
    cosf: impl Fn(f32) -> f32,
    sinf: impl Fn(f32) -> f32,
) -> Result<usize, Error> {
    microformer::pos::rope::fill_llama2c(ROPE_THETA, head_size, cos, sin, powf, cosf, sinf)
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
}
