//! The model image: a tiny image written with `image::write` on the device,
//! parsed back, then damaged in every way the parser must name.

use microformer::image::{
    self, Arch, Block, Header, Image, TensorData, TensorKind, TensorSource, FLAG_TIED_EMBEDDINGS,
    FLAG_TOKENIZER, HEADER_SIZE,
};
use microformer::pos::rope::RopeTable;
use microformer::pos::rope_scaling::RopeConfig;
use microformer::Error;

use super::check::{ensure, expect_err, lib};
use crate::out::{Failure, Out};
use microformer::lm::Aligned;

/// A two-head, one-layer model of width 8, with a Q8 `Wq` and a tokenizer.
const HEADER: Header = Header {
    arch: Arch::Llama,
    flags: FLAG_TIED_EMBEDDINGS | FLAG_TOKENIZER,
    dim: 8,
    hidden_dim: 12,
    n_layers: 1,
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
    block: Block::LLAMA,
};

/// Values every f32 tensor takes a prefix of (the largest has 12 × 8).
static VALUES: [f32; 96] = {
    let mut v = [0f32; 96];
    let mut i = 0;
    while i < 96 {
        v[i] = (i as f32 - 40.0) * 0.125;
        i += 1;
    }
    v
};
static Q8_VALUES: [i8; 64] = {
    let mut v = [0i8; 64];
    let mut i = 0;
    while i < 64 {
        v[i] = (i as i8).wrapping_mul(7);
        i += 1;
    }
    v
};
static Q8_SCALES: [f32; 16] = [
    0.5, 0.25, 1.5, 2.0, 0.125, 3.0, 0.75, 1.0, 0.5, 0.25, 1.5, 2.0, 0.125, 3.0, 0.75, 1.0,
];
static TOKENIZER: &[u8] = b"tiny tokenizer";
/// Room for the image (checked below) plus one byte of shift.
const CAPACITY: usize = 3072;

pub(super) fn image(out: &mut Out<'_>) -> Result<(), Failure> {
    // RoPE tables of the header's shape (3 positions × 2 pairs), filled here.
    let cfg = RopeConfig::new(10_000.0, 4, 3);
    let (mut cos, mut sin) = ([0f32; 6], [0f32; 6]);
    lib("rope fill", RopeTable::fill(&cfg, 3, 0, &mut cos, &mut sin))?;

    let mut sources = [TensorSource::U8(&[]); 16];
    let mut n = 0;
    for (slot, (kind, _layer)) in sources.iter_mut().zip(image::slots(&HEADER)) {
        let (rows, cols) = HEADER.expected_shape(kind);
        *slot = match kind {
            TensorKind::Tokenizer => TensorSource::U8(TOKENIZER),
            TensorKind::RopeCos => TensorSource::F32(&cos),
            TensorKind::RopeSin => TensorSource::F32(&sin),
            TensorKind::Wq => TensorSource::Q8 {
                values: &Q8_VALUES,
                scales: &Q8_SCALES,
            },
            _ => TensorSource::F32(&VALUES[..rows * cols]),
        };
        n += 1;
    }
    ensure(
        "every slot has a source",
        n,
        n == image::slots(&HEADER).count(),
    )?;
    let sources = &sources[..n];
    let len = image::image_len(&HEADER, sources);
    out.usize("image length", len);
    ensure("image fits the buffer", len, len < CAPACITY)?;

    let mut buf = Aligned([0u8; CAPACITY]);
    let b = &mut buf.0;
    let written = lib(
        "image::write",
        image::write(&HEADER, sources, &mut b[..len]),
    )?;
    ensure("write returns the length", written, written == len)?;
    out.u8s("image bytes", &b[..len]);
    out.u64("checksum", image::checksum(&b[..len - 8]));

    // Round trip.
    {
        let img = lib("Image::parse", Image::parse(&b[..len]))?;
        let h = img.header();
        ensure(
            "header round trip",
            0,
            h.dim == 8 && h.n_layers == 1 && h.image_len as usize == len,
        )?;
        ensure("n_tensors", 0, h.n_tensors as usize == n)?;
        match lib("tensor WDown", img.tensor(TensorKind::WDown, 0))? {
            TensorData::F32(v) => ensure("WDown values", 0, v == &VALUES[..96])?,
            _ => ensure("WDown is f32", 0, false)?,
        }
        match lib("tensor RopeCos", img.tensor(TensorKind::RopeCos, 0))? {
            TensorData::F32(v) => ensure("RoPE table in the image", 0, v == &cos[..])?,
            _ => ensure("RopeCos is f32", 0, false)?,
        }
        match lib("tensor Wq", img.tensor(TensorKind::Wq, 0))? {
            TensorData::Q8 {
                values,
                scales,
                group,
                ..
            } => ensure(
                "Q8 Wq",
                0,
                values == &Q8_VALUES[..] && scales == &Q8_SCALES[..] && group == 4,
            )?,
            _ => ensure("Wq is Q8", 0, false)?,
        }
        match lib("tensor Tokenizer", img.tensor(TensorKind::Tokenizer, 0))? {
            TensorData::U8(t) => ensure("tokenizer bytes", 0, t == TOKENIZER)?,
            _ => ensure("tokenizer is U8", 0, false)?,
        }
        let r = img.tensor(TensorKind::Output, 0).map(|_| ());
        expect_err(out, "tied output head is absent", r, Error::MissingTensor)?;
    }

    // Truncated input.
    expect_err(
        out,
        "empty input",
        Image::parse(&[]).map(|_| ()),
        Error::Truncated,
    )?;
    for cut in [5, 64, HEADER_SIZE, HEADER_SIZE + 40, len - 9, len - 1] {
        let r = Image::parse(&b[..cut]).map(|_| ());
        expect_err(out, "truncated image", r, Error::Truncated)?;
    }
    // Bad magic, unknown version.
    b[0] = b'X';
    let r = Image::parse(&b[..len]).map(|_| ());
    expect_err(out, "bad magic", r, Error::BadMagic)?;
    b[0] = b'M';
    b[8] = 9;
    let r = Image::parse(&b[..len]).map(|_| ());
    expect_err(
        out,
        "unknown version",
        r,
        Error::UnsupportedVersion { version: 9 },
    )?;
    b[8] = 1;
    // Any flipped bit past the header: the checksum.
    for at in (HEADER_SIZE..len).step_by(37).chain([len - 1]) {
        b[at] ^= 0x40;
        let r = Image::parse(&b[..len]).map(|_| ());
        b[at] ^= 0x40;
        expect_err(out, "flipped byte", r, Error::ChecksumMismatch)?;
    }
    // Not 4-byte aligned in memory.
    b.copy_within(0..len, 1);
    let r = Image::parse(&b[1..1 + len]).map(|_| ());
    b.copy_within(1..1 + len, 0);
    expect_err(out, "misaligned image", r, Error::Misaligned)?;
    lib(
        "Image::parse after the damage is undone",
        Image::parse(&b[..len]).map(|_| ()),
    )?;

    // Writer errors.
    let r = image::write(&HEADER, sources, &mut b[..100]);
    expect_err(
        out,
        "writer buffer too small",
        r,
        Error::BufferTooSmall {
            needed: len,
            got: 100,
        },
    )?;
    let mut bad = sources[0];
    if let TensorSource::F32(v) = bad {
        bad = TensorSource::F32(&v[..v.len() - 1]);
    }
    let mut short_sources = [TensorSource::U8(&[]); 16];
    short_sources[..n].copy_from_slice(sources);
    short_sources[0] = bad;
    let r = image::write(&HEADER, &short_sources[..n], &mut b[..]);
    expect_err(out, "tensor of the wrong length", r, Error::BadTensor)?;
    let mut h = HEADER;
    h.rotary_dim = 6;
    let r = image::write(&h, sources, &mut b[..]);
    expect_err(
        out,
        "rotary_dim > head_dim",
        r,
        Error::InconsistentDimensions,
    )
}
