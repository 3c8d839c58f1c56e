//! How a conversion stores the matrices ([`Quant`] for all of them, [`Precision`]
//! for one, a [`Policy`] per matrix) and what goes into the image besides the
//! checkpoint ([`ImageOptions`]).

use microformer::image::TensorKind;

use super::checkpoint::Config;

/// How the image stores the matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// f32; see [`microformer::num::fp16`]): f32 weights rounded to nearest even, a v2
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

/// How one image matrix is stored (see `to_image_with`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    crate::storage::default_group_size(config.dim)
}

/// What goes into the image besides the checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct ImageOptions<'t> {
    /// f32 or Q8_0 matrices (`sizes_with` and `to_image_with` ignore it).
    pub quant: Quant,
    /// Positions of the image (`seq_len` in its header): at most the checkpoint's.
    pub context: usize,
    /// RoPE cosines `[context][head_size/2]` (see [`fill_rope_tables`](super::checkpoint::fill_rope_tables)).
    pub rope_cos: &'t [f32],
    /// RoPE sines `[context][head_size/2]`.
    pub rope_sin: &'t [f32],
    /// A llama2.c tokenizer file to embed (`FLAG_TOKENIZER`).
    pub tokenizer: Option<&'t [u8]>,
}

/// Buffer sizes for `to_image`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

#[cfg(test)]
mod tests {
    use super::*;

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
