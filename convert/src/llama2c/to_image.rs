//! The heap-free conversion of a [`Checkpoint`] into a model image: [`sizes`] says
//! how large the caller's buffers must be, [`to_image`] fills them and writes the
//! image ([`sizes_with`] and [`to_image_with`]: the storage of each matrix chosen
//! by a [`Policy`]).

use microformer::image::{self, Arch, Header, TensorKind, TensorSource};
use microformer::num::q8;
use microformer::Error;

use super::checkpoint::{Checkpoint, Tensor, Weight, NORM_EPS};
use super::quant::{ImageOptions, Policy, Precision, Quant, Sizes};

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
        *o = microformer::num::fp16::from_f32(x);
        if !microformer::num::fp16::is_finite(*o) {
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
