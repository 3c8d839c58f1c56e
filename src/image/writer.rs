//! The writer: lays out a header, its tensor directory and the tensors' data, and
//! seals the image with its checksum, into a buffer the caller sizes with
//! [`image_len`].

use super::checksum::{checksum, CHECKSUM_SIZE};
use super::header::{valid_group, Header, FLAG_Q8_BLOCK_SCALES, HEADER_SIZE};
use super::tensor::{
    block_scale_bytes, slots, DType, TensorKind, TensorRecord, ALIGN, RECORD_SIZE,
};
use crate::Error;

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

    /// Data bytes this tensor takes in an image, alignment padding included;
    /// `block_rows`: the rows of a Q8 tensor's [`super::BlockScales`], when
    /// the image carries them.
    fn padded_bytes(&self, block_rows: Option<usize>) -> usize {
        let raw = match self {
            TensorSource::F32(v) => 4 * v.len(),
            TensorSource::Q8 { values, scales }
            | TensorSource::Q8Grouped { values, scales, .. } => {
                values.len().next_multiple_of(ALIGN)
                    + 4 * scales.len()
                    + block_rows.map_or(0, |rows| block_scale_bytes(scales.len(), rows))
            }
            TensorSource::U8(b) => b.len(),
            TensorSource::F16(v) => 2 * v.len(),
        };
        raw.next_multiple_of(ALIGN)
    }
}

/// The rows of tensor `kind`'s block scales in an image with this header
/// (`None` without [`FLAG_Q8_BLOCK_SCALES`]).
fn block_rows(h: &Header, kind: TensorKind) -> Option<usize> {
    h.has(FLAG_Q8_BLOCK_SCALES)
        .then(|| h.expected_shape(kind).0)
}

/// Bytes an image of these tensors takes under `header` (whose
/// [`FLAG_Q8_BLOCK_SCALES`] adds the Q8 tensors' block scales). The tensors
/// are in the canonical order of [`slots`] (extra ones count as tensors
/// without block scales; [`write()`] rejects them).
pub fn image_len(header: &Header, tensors: &[TensorSource<'_>]) -> usize {
    let mut kinds = slots(header).map(|(k, _)| k);
    HEADER_SIZE
        + tensors.len() * RECORD_SIZE
        + tensors
            .iter()
            .map(|t| t.padded_bytes(kinds.next().and_then(|k| block_rows(header, k))))
            .sum::<usize>()
        + CHECKSUM_SIZE
}

/// Writes an image into `out` and returns its length.
///
/// `tensors` are given in the canonical order of [`slots`] for `header` (whose
/// `n_tensors` and `image_len` are filled in here). Shapes are checked against
/// the header; the result passes [`Image::parse`](super::Image::parse). Heap-free: the caller sizes
/// `out` with [`image_len`].
pub fn write(
    header: &Header,
    tensors: &[TensorSource<'_>],
    out: &mut [u8],
) -> Result<usize, Error> {
    let mut h = *header;
    h.n_tensors = tensors.len() as u32;
    let len = image_len(&h, tensors);
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
            TensorSource::U8(b) => b.len() == n && kind.is_bytes(),
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
                if h.has(FLAG_Q8_BLOCK_SCALES) {
                    write_block_scales(scales, rows, &mut out[s_at + 4 * scales.len()..])?;
                }
            }
        }
        let at = HEADER_SIZE + i * RECORD_SIZE;
        out[at..at + RECORD_SIZE].copy_from_slice(&rec.to_bytes());
        data_at += t.padded_bytes(block_rows(&h, kind));
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

/// Writes the [`super::BlockScales`] of a Q8 tensor's `scales` (`rows` rows)
/// at the start of `out`: the mantissas as little-endian `u16`, then the
/// rows' exponent bytes ([`crate::num::kernels_int::block_row`]).
fn write_block_scales(scales: &[f32], rows: usize, out: &mut [u8]) -> Result<(), Error> {
    let gpr = scales.len().checked_div(rows).ok_or(Error::BadTensor)?;
    if gpr == 0 || out.len() < block_scale_bytes(scales.len(), rows) {
        return Err(Error::BadTensor);
    }
    let (mant, tops) = out.split_at_mut(2 * scales.len());
    for ((srow, mrow), t) in scales
        .chunks_exact(gpr)
        .zip(mant.chunks_exact_mut(2 * gpr))
        .zip(tops.iter_mut())
    {
        let (top, ms) = crate::num::kernels_int::block_row(srow);
        *t = top;
        for (m, v) in mrow.chunks_exact_mut(2).zip(ms) {
            m.copy_from_slice(&v.to_le_bytes());
        }
    }
    Ok(())
}
