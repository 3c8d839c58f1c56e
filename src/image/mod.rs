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
//! `group_size` (the default Q8 group, 0 when no Q8 tensor uses it), `bos_id`,
//! `eos_id`, `n_tensors`, `image_len`, `train_context` (the checkpoint's `max_position_embeddings`), then
//! the block shape ([`Block`]: one word of four byte-sized kinds — norm, FFN,
//! residual, position hook — then `pos_offset`, `embed_scale` (f32),
//! `attn_scale` (f32) and the T5 bucketing ([`T5Params`]: buckets | max_distance
//! << 16, zero but with the T5 hook); all zero is the Llama block), then reserved
//! bytes that must be zero.
//!
//! Tensors appear in the canonical order of [`slots`]: the global tensors, then
//! each layer's tensors in a fixed order, so [`Image::tensor`] finds a tensor in
//! O(1) with no search at run time.
//!
//! Numeric formats: `F32` (row-major `[rows][cols]`), `Q8` (llama2.c `runq.c` Q8_0:
//! int8 values row-major, then one f32 scale per `group` consecutive values of a
//! row, `value = q · scale`), `F16` (IEEE binary16 bit patterns, row-major,
//! widened exactly to f32 when used: see [`crate::num::fp16`]), `U8` (raw bytes:
//! the tokenizer and the T5 bucket table, [`TensorKind::is_bytes`]). `Q8` and `F16` are for the matrices only
//! ([`TensorKind::quantizable`]); norms, biases and tables stay `F32`. An unknown
//! dtype value is [`Error::Malformed`].
//!
//! With [`FLAG_Q8_BLOCK_SCALES`] every Q8 tensor's f32 scales are followed by
//! their block-float form for the integer step ([`BlockScales`]: one `u16`
//! mantissa a group, then one exponent byte a row), derived from them by the
//! writer and checked against them by [`Image::parse`] ([`Error::BadTensor`]).
//!
//! A Q8 tensor's group is its record's last word (`TensorRecord::group`), or the
//! header's `group_size` when that word is 0. Every group is a multiple of 4 of at
//! most 4096 that divides the tensor's row length, so one model may store, say,
//! `w_down` (rows of 172) in groups of 4 and the other matrices in groups of 64.
//! The writer stores 0 there for a tensor whose group is the header's, so a model
//! with one group names it once, in the header. The word is 0 on every other
//! dtype; anything else is [`Error::Malformed`].
//!
//! The checksum is a Fletcher-style pair of 64-bit running sums over the image's
//! little-endian u32 words ([`checksum`]): any single changed byte changes it.

// One file per concern, each re-exported here; a file uses only those above it:
// the block shape, the checksum, the header (its flags and dimensions), tensors
// (kinds, dtypes, directory records, canonical order), the writer; and here the
// validated `Image` view.
mod block;
mod checksum;
mod header;
mod tensor;
mod writer;

pub use block::{Block, FfnKind, NormKind, PositionHook, Residual, T5Params};
pub use checksum::{checksum, CHECKSUM_SIZE};
pub use header::{
    valid_group, Arch, Header, FLAG_EMBED_NORM, FLAG_MLP_BIAS, FLAG_OUTPUT_BIAS, FLAG_O_BIAS,
    FLAG_Q8_BLOCK_SCALES, FLAG_QKV_BIAS, FLAG_ROPE_INTERLEAVED, FLAG_TIED_EMBEDDINGS,
    FLAG_TOKENIZER, HEADER_SIZE, MAGIC, VERSION,
};
pub use tensor::{
    block_scale_bytes, has_tensor, slots, BlockScales, DType, TensorData, TensorKind, TensorRecord,
    ALIGN, RECORD_SIZE,
};
pub use writer::{image_len, write, TensorSource};

use crate::Error;
use tensor::{n_global, n_per_layer, present, GLOBAL_ORDER, LAYER_ORDER};

/// A validated model image.
#[derive(Debug, Clone, Copy)]
pub struct Image<'a> {
    bytes: &'a [u8],
    header: Header,
    /// Global tensors in the directory.
    n_global: u16,
    /// Tensors per layer.
    n_per_layer: u16,
    /// Which kinds of [`LAYER_ORDER`] a layer has (bit `i`: entry `i`): a
    /// layer tensor's slot is the number of present kinds before it.
    per_layer: u32,
}

/// Each layer kind's place in [`LAYER_ORDER`], indexed by the kind's number
/// (0 for global kinds, which are never looked up through it).
const LAYER_POS: [u8; TensorKind::BDown as usize + 1] = {
    let mut t = [0u8; TensorKind::BDown as usize + 1];
    let mut i = 0;
    while i < LAYER_ORDER.len() {
        t[LAYER_ORDER[i] as usize] = i as u8;
        i += 1;
    }
    t
};

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
            n_global: n_global(&header) as u16,
            n_per_layer: n_per_layer(&header) as u16,
            per_layer: LAYER_ORDER
                .iter()
                .enumerate()
                .filter(|&(_, &k)| present(&header, k))
                .fold(0, |m, (i, _)| m | 1 << i),
        };
        let expected =
            usize::from(img.n_global) + usize::from(img.n_per_layer) * header.n_layers as usize;
        if header.n_tensors as usize != expected {
            return Err(Error::MissingTensor);
        }
        let dir_end = HEADER_SIZE + expected * RECORD_SIZE;
        if dir_end > body {
            return Err(Error::Truncated);
        }
        for (i, (kind, layer)) in slots(&header).enumerate() {
            let at = HEADER_SIZE + i * RECORD_SIZE;
            let record = bytes.get(at..at + RECORD_SIZE).ok_or(Error::Truncated)?;
            let r = TensorRecord::parse(record)?;
            if r.kind != kind || r.layer != layer {
                return Err(Error::MissingTensor);
            }
            if r.dtype == DType::Q8 && !valid_group(header.q8_group(r.group)) {
                // No group at all (record and header both 0), or a bad own group.
                return Err(Error::InconsistentDimensions);
            }
            img.check_record(&r, dir_end, body)?;
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
                !r.kind.is_bytes() && r.len as usize == 4 * n && in_bounds(r.offset, 4 * n)
            }
            DType::U8 => r.kind.is_bytes() && r.len as usize == n && in_bounds(r.offset, n),
            DType::F16 => {
                r.kind.quantizable() && r.len as usize == 2 * n && in_bounds(r.offset, 2 * n)
            }
            DType::Q8 => {
                let g = h.q8_group(r.group) as usize;
                let block = if h.has(FLAG_Q8_BLOCK_SCALES) && g != 0 {
                    block_scale_bytes(n / g, r.rows as usize)
                } else {
                    0
                };
                r.kind.quantizable()
                    && g != 0
                    && (r.cols as usize) % g == 0
                    && r.len as usize == n
                    && in_bounds(r.offset, n)
                    && in_bounds(r.scale_offset, 4 * (n / g) + block)
                    && (block == 0 || self.block_scales_agree(r, g))
            }
        };
        // Binary16 weights must be finite: the kernels widen them with
        // `fp16::to_f32_finite`.
        // (Checked access: no panic path; the range was checked above.)
        let ok = ok
            && (r.dtype != DType::F16
                || self
                    .bytes
                    .get(r.offset as usize..r.offset as usize + 2 * n)
                    .is_some_and(|w| {
                        w.chunks_exact(2).all(|b| {
                            let h = b.first_chunk::<2>().map_or(0, |b| u16::from_le_bytes(*b));
                            crate::num::fp16::is_finite(h)
                        })
                    }));
        if !ok {
            return Err(if !r.kind.is_bytes() && r.dtype == DType::U8 {
                Error::Malformed
            } else {
                Error::BadTensor
            });
        }
        Ok(())
    }

    /// Whether a Q8 record's block scales are those of its f32 scales (its
    /// bounds checked before).
    /// (Reads the scales itself rather than through [`Image::data`], which
    /// stays as the per-token tensor lookups compile it.)
    fn block_scales_agree(&self, r: &TensorRecord, g: usize) -> bool {
        let groups = r.rows as usize * r.cols as usize / g;
        let at = r.scale_offset as usize;
        let Some(Ok(scales)) = self
            .bytes
            .get(at..at + 4 * groups)
            .map(bytemuck::try_cast_slice::<u8, f32>)
        else {
            return false;
        };
        self.block_scales_after(scales, r.rows as usize)
            .is_some_and(|b| {
                crate::num::kernels_int::is_block_scales(
                    scales,
                    (r.cols as usize) / g,
                    b.mantissas,
                    b.tops,
                )
            })
    }

    /// The [`BlockScales`] of the Q8 tensor of `rows` rows whose f32 `scales`
    /// this image holds (a [`TensorData::Q8`]'s, as [`Image::tensor`] returns
    /// them), when the image stores them ([`FLAG_Q8_BLOCK_SCALES`]): they
    /// follow the f32 scales. `None` without the flag, or for scales that are
    /// not this image's. A lookup by address, so that the tensor views stay as
    /// small as without the tables.
    pub fn block_scales_after(&self, scales: &[f32], rows: usize) -> Option<BlockScales<'a>> {
        if !self.header.has(FLAG_Q8_BLOCK_SCALES) {
            return None;
        }
        let off = (scales.as_ptr() as usize).checked_sub(self.bytes.as_ptr() as usize)?;
        let at = off.checked_add(4 * scales.len())?;
        let bytes = self
            .bytes
            .get(at..)?
            .get(..block_scale_bytes(scales.len(), rows))?;
        let (mantissas, tops) = bytes.split_at_checked(2 * scales.len())?;
        Some(BlockScales {
            mantissas: bytemuck::try_cast_slice(mantissas).ok()?,
            tops,
        })
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
        let idx = if kind.per_layer() {
            let pos = *LAYER_POS.get(kind as usize)?;
            if self.per_layer >> pos & 1 == 0 || layer >= h.n_layers as usize {
                return None;
            }
            let slot = (self.per_layer & ((1 << pos) - 1)).count_ones() as usize;
            usize::from(self.n_global) + layer * usize::from(self.n_per_layer) + slot
        } else {
            if !present(h, kind) {
                return None;
            }
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
        self.data(&self.record(kind, layer).ok_or(Error::MissingTensor)?)
    }

    /// The data a record points at.
    fn data(&self, r: &TensorRecord) -> Result<TensorData<'a>, Error> {
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
            DType::F16 => TensorData::F16(
                bytemuck::try_cast_slice(slice(r.offset, 2 * n)?).map_err(|_| Error::Misaligned)?,
            ),
            DType::Q8 => {
                let g = self.header.q8_group(r.group) as usize;
                if g == 0 {
                    return Err(Error::BadTensor);
                }
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

#[cfg(test)]
mod block_tests;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
