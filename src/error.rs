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
        }
    }
}

impl core::error::Error for Error {}
