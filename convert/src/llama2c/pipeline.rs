//! The whole llama2.c conversion in one call, with owned buffers: what
//! `microformer convert` and the boards' build scripts both run.

use std::fmt;

use microformer::image::TensorSource;

use super::checkpoint::{fill_rope_tables, Checkpoint, Config, Version};
use super::quant::{default_group_size, ImageOptions, Quant};
use super::to_image::{sizes, to_image};
use crate::aligned::AlignedBytes;
use crate::limits::{table_entries, table_limit};
use crate::storage::Storage;
use crate::tokenizer::check_tokenizer;

/// What [`convert`] makes of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options<'t> {
    /// How the matrices are stored. `Q8` stores every matrix in Q8_0: a matrix
    /// whose rows are not whole groups (llama2.c's `w2`, rows of 172 for group 64)
    /// gets the largest multiple of 4 that divides its rows ([`Quant::Q8Fit`]).
    pub storage: Storage,
    /// Positions of the image (its RoPE table and largest context); default: the
    /// checkpoint's `seq_len`.
    pub context: Option<usize>,
    /// A llama2.c tokenizer file to embed (checked against the vocabulary).
    pub tokenizer: Option<&'t [u8]>,
}

/// A converted checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    /// The image.
    pub image: Vec<u8>,
    /// The checkpoint's format.
    pub version: Version,
    /// The checkpoint's hyperparameters.
    pub config: Config,
    /// How the matrices were stored.
    pub quant: Quant,
}

/// Why [`convert`] failed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Llama2cError {
    /// The bytes are not a valid llama2.c checkpoint (see [`Checkpoint::parse`]).
    Checkpoint(microformer::Error),
    /// The context asked for is 0 or beyond the checkpoint's `seq_len`.
    Context {
        /// Positions asked for.
        asked: usize,
        /// The checkpoint's `seq_len`.
        max: usize,
    },
    /// A Q8 group size other than a v2 checkpoint's own.
    GroupMismatch {
        /// The group asked for.
        asked: usize,
        /// The file's.
        file: usize,
    },
    /// A Q8 group size that is not a multiple of 4.
    BadGroup {
        /// The group.
        group_size: usize,
        /// The model width.
        dim: usize,
        /// Whether it was the default (none was given): no multiple of 4 divides `dim`.
        default: bool,
    },
    /// The tokenizer does not fit the model's vocabulary.
    Tokenizer {
        /// The model's vocabulary size.
        vocab_size: usize,
        /// What the tokenizer check reported.
        error: microformer::Error,
    },
    /// The RoPE tables for this context (cos and sin) would each hold more
    /// entries than [`crate::limits::table_limit`] allows for a checkpoint of
    /// this size.
    TableTooLarge {
        /// Positions.
        positions: usize,
        /// Pairs per position (`head_size / 2`).
        pairs: usize,
        /// The checkpoint's size in bytes.
        bytes: usize,
        /// The most entries its tables may hold.
        limit: usize,
    },
    /// The conversion itself failed (the RoPE tables, the image header, writing).
    Convert(microformer::Error),
}

impl fmt::Display for Llama2cError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Llama2cError::Checkpoint(e) => write!(f, "not a valid llama2.c checkpoint: {e}"),
            Llama2cError::Context { asked, max } => write!(
                f,
                "a context of {asked} positions is outside the checkpoint's 1..={max}"
            ),
            Llama2cError::GroupMismatch { asked, file } => write!(
                f,
                "Q8 group size {asked} differs from the v2 checkpoint's group size {file}"
            ),
            Llama2cError::BadGroup {
                group_size,
                dim,
                default: true,
            } => write!(
                f,
                "no Q8 group size of a multiple of 4 divides dim {dim} (the default would be {group_size})"
            ),
            Llama2cError::BadGroup { group_size, .. } => {
                write!(f, "Q8 group size {group_size} is not a multiple of 4")
            }
            Llama2cError::Tokenizer { vocab_size, error } => write!(
                f,
                "the tokenizer does not fit the model's vocabulary of {vocab_size}: {error}"
            ),
            Llama2cError::TableTooLarge {
                positions,
                pairs,
                bytes,
                limit,
            } => write!(
                f,
                "the RoPE tables of {positions} positions × {pairs} pairs are too large for a checkpoint of {bytes} bytes (at most {limit} entries each for cos and sin)"
            ),
            Llama2cError::Convert(e) => write!(f, "cannot convert: {e}"),
        }
    }
}

impl std::error::Error for Llama2cError {}

/// Converts a llama2.c checkpoint (legacy v0, v1 or v2; any alignment: it is
/// copied) into an image.
///
/// The RoPE tables are computed as `run.c` computes its angles, with the host's
/// f32 `powf`, `cos` and `sin` ([`fill_rope_tables`]), so the image reproduces
/// `run.c` token for token. Checks, in this order: the checkpoint, the context,
/// the Q8 group, the tokenizer, the size of the RoPE table; then the conversion's own (see
/// [`super::to_image()`]).
pub fn convert(checkpoint: &[u8], opts: &Options<'_>) -> Result<Converted, Llama2cError> {
    let data = AlignedBytes::new(checkpoint);
    let ck = Checkpoint::parse(data.bytes()).map_err(Llama2cError::Checkpoint)?;
    let c = *ck.config();
    let context = opts.context.unwrap_or(c.seq_len);
    if context == 0 || context > c.seq_len {
        return Err(Llama2cError::Context {
            asked: context,
            max: c.seq_len,
        });
    }
    let quant = match opts.storage {
        Storage::F32 => Quant::F32,
        Storage::F16 => Quant::F16,
        Storage::Q8 { group_size } => {
            let g = group_size
                .or(ck.group_size())
                .unwrap_or_else(|| default_group_size(&c));
            if let Some(file) = ck.group_size() {
                if g != file {
                    return Err(Llama2cError::GroupMismatch { asked: g, file });
                }
            }
            if g % 4 != 0 {
                return Err(Llama2cError::BadGroup {
                    group_size: g,
                    dim: c.dim,
                    default: group_size.is_none(),
                });
            }
            Quant::Q8Fit { group_size: g }
        }
    };
    if let Some(t) = opts.tokenizer {
        check_tokenizer(t, c.vocab_size).map_err(|error| Llama2cError::Tokenizer {
            vocab_size: c.vocab_size,
            error,
        })?;
    }
    let hs = c.head_size();
    let limit = table_limit(checkpoint.len() as u64);
    let n = table_entries(context, hs / 2)
        .filter(|&n| n <= limit)
        .ok_or(Llama2cError::TableTooLarge {
            positions: context,
            pairs: hs / 2,
            bytes: checkpoint.len(),
            limit,
        })?;
    let (mut cos, mut sin) = (vec![0f32; n], vec![0f32; n]);
    fill_rope_tables(hs, &mut cos, &mut sin, f32::powf, f32::cos, f32::sin)
        .map_err(Llama2cError::Convert)?;
    let image_opts = ImageOptions {
        quant,
        context,
        rope_cos: &cos,
        rope_sin: &sin,
        tokenizer: opts.tokenizer,
    };
    let sizes = sizes(&ck, &image_opts).map_err(Llama2cError::Convert)?;
    let mut scratch = vec![0u32; sizes.scratch_words];
    let mut sources = vec![TensorSource::U8(&[]); sizes.n_tensors];
    let mut image = vec![0u8; sizes.image_bytes];
    let len = to_image(&ck, &image_opts, &mut scratch, &mut sources, &mut image)
        .map_err(Llama2cError::Convert)?;
    image.truncate(len);
    Ok(Converted {
        image,
        version: ck.version(),
        config: c,
        quant,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v1 checkpoint (dim 8, hidden 16, 1 layer, 2 heads, vocabulary 32, shared
    /// classifier) whose header claims `seq_len` positions: 3 936 bytes whatever
    /// `seq_len` is, as v1 stores no RoPE tables.
    fn v1(seq_len: i32) -> Vec<u8> {
        let mut b = 0x616b_3432u32.to_le_bytes().to_vec();
        for w in [1, 8, 16, 1, 2, 2, 32, seq_len] {
            b.extend_from_slice(&i32::to_le_bytes(w));
        }
        b.push(1);
        b.resize(256, 0);
        let floats = 8 + 8 + 8 + 32 * 8 + 4 * 8 * 8 + 3 * 16 * 8;
        b.extend((0..floats).flat_map(|i| (0.01 * (i % 7) as f32).to_le_bytes()));
        b
    }

    #[test]
    fn rope_tables_are_bounded_by_the_checkpoint_size() {
        let opts = Options {
            storage: Storage::F32,
            context: None,
            tokenizer: None,
        };
        let small = v1(1024);
        assert_eq!(small.len(), 3936);
        assert!(convert(&small, &opts).is_ok());
        // 2^20 positions × 2 pairs: 2^21 entries per table from a 3 936-byte file.
        let huge = v1(1 << 20);
        match convert(&huge, &opts) {
            Err(e @ Llama2cError::TableTooLarge { .. }) => assert_eq!(
                e.to_string(),
                "the RoPE tables of 1048576 positions × 2 pairs are too large for a checkpoint of 3936 bytes (at most 65536 entries each for cos and sin)"
            ),
            other => panic!("expected TableTooLarge, got {other:?}"),
        }
        // The same checkpoint converts for a context the bound allows.
        let opts = Options {
            context: Some(1 << 15),
            ..opts
        };
        assert!(convert(&huge, &opts).is_ok());
    }
}
