//! The one error type of the crate.

use core::fmt;

/// Everything that can go wrong in microformer, one variant per cause.
///
/// No function of the library panics on bad input: it returns one of these.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// A dimension that must be even (a head or rotary dimension) is odd.
    OddDimension {
        /// The dimension given.
        dim: usize,
    },
    /// A dimension, count or length that must be positive is zero.
    ZeroDimension,
    /// The rotary dimension exceeds the head dimension.
    RotaryDimTooLarge {
        /// The rotary dimension asked for.
        rotary_dim: usize,
        /// The head dimension.
        head_dim: usize,
    },
    /// A scaling factor is not finite or not strictly positive.
    InvalidFactor,
    /// A parameter (base `θ`, `beta`, frequency factor, ...) is out of its valid range.
    InvalidParameter,
    /// A per-frequency factor list (LongRoPE) does not have `rotary_dim / 2` entries.
    FactorCountMismatch {
        /// Entries expected (`rotary_dim / 2`).
        expected: usize,
        /// Entries given.
        got: usize,
    },
    /// Caller-provided storage is too small.
    BufferTooSmall {
        /// Elements needed.
        needed: usize,
        /// Elements provided.
        got: usize,
    },
    /// A vector or slice has the wrong length for the operation.
    LengthMismatch {
        /// Length expected.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// A position lies outside the table.
    PositionOutOfRange {
        /// The position asked for.
        position: usize,
        /// The number of positions the table holds.
        len: usize,
    },
    /// A head count of zero, or a head index outside the head count.
    InvalidHead {
        /// The head asked for.
        head: usize,
        /// The number of heads.
        heads: usize,
    },
    /// The image or file ends before a structure it declares.
    Truncated,
    /// The image does not start with the microformer magic bytes.
    BadMagic,
    /// The image's format version is not the one this crate reads.
    UnsupportedVersion {
        /// The version found.
        version: u32,
    },
    /// The image names an architecture this crate does not run.
    UnsupportedArch,
    /// A header or directory field holds a value no writer produces (unknown flag,
    /// non-zero reserved bytes, wrong length).
    Malformed,
    /// The image (or a tensor in it) is not 4-byte aligned in memory.
    Misaligned,
    /// The stored checksum does not match the image's contents.
    ChecksumMismatch,
    /// A tensor the header calls for is missing or out of canonical order.
    MissingTensor,
    /// Dimensions contradict each other (heads vs kv heads, rotary vs head dim, shapes).
    InconsistentDimensions,
    /// A tensor's dtype, length, alignment or offsets are invalid.
    BadTensor,
    /// A tokenizer entry declares a length that is zero or negative.
    InvalidTokenLength {
        /// The entry (token id).
        token: usize,
        /// The length it declares.
        len: i32,
    },
    /// A tokenizer file holds bytes after its `expected` entries (more tokens than the model's vocabulary).
    VocabSizeMismatch {
        /// Entries expected (the model's vocabulary size).
        expected: usize,
        /// Bytes left after the last expected entry.
        trailing_bytes: usize,
    },
    /// A token id is not below the vocabulary size.
    TokenOutOfRange {
        /// The token id.
        token: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
    /// A piece the tokenizer needs (the dummy-prefix `" "`) is not in the vocabulary.
    TokenNotInVocab,
    /// A prebuilt tokenizer index (offsets or sorted ids) disagrees with the tokenizer data.
    CorruptIndex {
        /// The first index entry found wrong.
        entry: usize,
    },
    /// A value that must be finite (logit maximum, softmax sum, a weight rounded to
    /// binary16) is NaN or infinite.
    NotFinite,
    /// Every position of a session's context is used: reset it or open a longer one.
    ContextFull {
        /// The session's context length.
        context: usize,
    },
    /// Generation was asked to start from an empty prompt (it needs at least the BOS token).
    EmptyPrompt,
    /// A prompt holds more tokens than the session's context.
    PromptTooLong {
        /// Tokens in the prompt.
        tokens: usize,
        /// The session's context length.
        context: usize,
    },
    /// The integer step ([`crate::model::Arith::Integer`]) was asked of an
    /// image it cannot run: it needs Q8 matrices, RMSNorm, SwiGLU and a
    /// sequential residual (the Llama family).
    IntegerUnsupported,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::OddDimension { dim } => write!(f, "dimension {dim} must be even"),
            Error::ZeroDimension => f.write_str("a dimension, count or length is zero"),
            Error::RotaryDimTooLarge {
                rotary_dim,
                head_dim,
            } => {
                write!(
                    f,
                    "rotary dimension {rotary_dim} exceeds head dimension {head_dim}"
                )
            }
            Error::InvalidFactor => f.write_str("scaling factor must be finite and > 0"),
            Error::InvalidParameter => f.write_str("parameter out of its valid range"),
            Error::FactorCountMismatch { expected, got } => {
                write!(f, "expected {expected} per-frequency factors, got {got}")
            }
            Error::BufferTooSmall { needed, got } => {
                write!(f, "buffer holds {got} elements, {needed} needed")
            }
            Error::LengthMismatch { expected, got } => {
                write!(f, "length {got} given, {expected} expected")
            }
            Error::PositionOutOfRange { position, len } => {
                write!(f, "position {position} outside a table of {len} positions")
            }
            Error::InvalidHead { head, heads } => {
                write!(f, "head {head} invalid for {heads} heads")
            }
            Error::Truncated => f.write_str("truncated: data ends before a declared structure"),
            Error::BadMagic => f.write_str("not a microformer image (bad magic)"),
            Error::UnsupportedVersion { version } => {
                write!(f, "unsupported image format version {version}")
            }
            Error::UnsupportedArch => f.write_str("unsupported architecture"),
            Error::Malformed => f.write_str("malformed header or directory field"),
            Error::Misaligned => f.write_str("image or tensor not 4-byte aligned"),
            Error::ChecksumMismatch => f.write_str("checksum mismatch: the image is corrupted"),
            Error::MissingTensor => f.write_str("a required tensor is missing or out of order"),
            Error::InconsistentDimensions => f.write_str("inconsistent dimensions"),
            Error::BadTensor => {
                f.write_str("invalid tensor record (dtype, length, alignment or offset)")
            }
            Error::InvalidTokenLength { token, len } => {
                write!(f, "tokenizer entry {token} has invalid length {len}")
            }
            Error::VocabSizeMismatch {
                expected,
                trailing_bytes,
            } => write!(
                f,
                "tokenizer has {trailing_bytes} bytes after its {expected} expected entries"
            ),
            Error::TokenOutOfRange { token, vocab_size } => {
                write!(f, "token {token} outside a vocabulary of {vocab_size}")
            }
            Error::TokenNotInVocab => f.write_str("a required piece is not in the vocabulary"),
            Error::CorruptIndex { entry } => {
                write!(f, "prebuilt tokenizer index is wrong at entry {entry}")
            }
            Error::NotFinite => f.write_str("a value that must be finite is NaN or infinite"),
            Error::ContextFull { context } => {
                write!(f, "context of {context} positions is full")
            }
            Error::EmptyPrompt => f.write_str("the prompt is empty: it needs at least one token"),
            Error::PromptTooLong { tokens, context } => write!(
                f,
                "the prompt is {tokens} tokens, longer than the context of {context} positions"
            ),
            Error::IntegerUnsupported => f.write_str(
                "the integer step needs a Q8 image of the Llama family (RMSNorm, SwiGLU, sequential residual)",
            ),
        }
    }
}

impl core::error::Error for Error {}
