use super::testing::tiny_llama;
use super::*;
use microformer_testkit::{AlignedBytes, XorShift32};

/// Two layers, tied embeddings, a tokenizer, Q8 groups of 4.
fn header() -> Header {
    Header {
        flags: FLAG_TIED_EMBEDDINGS | FLAG_TOKENIZER,
        group_size: 4,
        ..tiny_llama()
    }
}

/// Builds a valid image whose f32 values encode (kind, layer, index) and whose
/// Wq tensors are Q8.
fn build(h: &Header) -> AlignedBytes {
    let mut store_f: Vec<Vec<f32>> = Vec::new();
    let mut store_q: Vec<(Vec<i8>, Vec<f32>)> = Vec::new();
    let kinds: Vec<(TensorKind, u16)> = slots(h).collect();
    for &(k, l) in &kinds {
        let (r, c) = h.expected_shape(k);
        if k == TensorKind::Wq {
            let v: Vec<i8> = (0..r * c).map(|i| (i as i8).wrapping_mul(3)).collect();
            let s: Vec<f32> = (0..r * c / 4).map(|i| 0.5 + i as f32).collect();
            store_q.push((v, s));
        } else {
            store_f.push(
                (0..r * c)
                    .map(|i| (k as u16 * 1000 + l * 100) as f32 + i as f32)
                    .collect(),
            );
        }
    }
    let tok = b"tokenizer!".to_vec();
    let (mut fi, mut qi) = (0, 0);
    let srcs: Vec<TensorSource> = kinds
        .iter()
        .map(|&(k, _)| match k {
            TensorKind::Tokenizer => {
                fi += 1;
                TensorSource::U8(&tok)
            }
            TensorKind::Wq => {
                qi += 1;
                TensorSource::Q8 {
                    values: &store_q[qi - 1].0,
                    scales: &store_q[qi - 1].1,
                }
            }
            _ => {
                fi += 1;
                TensorSource::F32(&store_f[fi - 1])
            }
        })
        .collect();
    let len = image_len(h, &srcs);
    let mut buf = AlignedBytes::zeroed(len);
    assert_eq!(write(h, &srcs, buf.bytes_mut()), Ok(len));
    buf
}

fn reseal(buf: &mut AlignedBytes) {
    let b = buf.bytes_mut();
    let body = b.len() - CHECKSUM_SIZE;
    let s = checksum(&b[..body]);
    b[body..].copy_from_slice(&s.to_le_bytes());
}

#[test]
fn round_trip() {
    let h = header();
    let buf = build(&h);
    let img = Image::parse(buf.bytes()).unwrap();
    assert_eq!(img.header().dim, 8);
    assert_eq!(img.header().n_tensors as usize, slots(&h).count());
    match img.tensor(TensorKind::WDown, 1).unwrap() {
        TensorData::F32(v) => {
            assert_eq!(v.len(), 8 * 12);
            assert_eq!(v[5], (27 * 1000 + 100) as f32 + 5.0);
        }
        _ => panic!("wrong dtype"),
    }
    match img.tensor(TensorKind::Wq, 0).unwrap() {
        TensorData::Q8 {
            values,
            scales,
            group,
            ..
        } => {
            assert_eq!((values.len(), scales.len(), group), (64, 16, 4));
            assert_eq!(values[3], 9);
            assert_eq!(scales[2], 2.5);
        }
        _ => panic!("wrong dtype"),
    }
    match img.tensor(TensorKind::Tokenizer, 0).unwrap() {
        TensorData::U8(b) => assert_eq!(b, b"tokenizer!"),
        _ => panic!("wrong dtype"),
    }
    assert_eq!(
        img.tensor(TensorKind::Output, 0).unwrap_err(),
        Error::MissingTensor
    );
    assert_eq!(
        img.tensor(TensorKind::Wq, 2).unwrap_err(),
        Error::MissingTensor
    );
}

#[test]
fn malformed_inputs_give_typed_errors() {
    let h = header();
    let good = build(&h);
    let b = good.bytes();
    assert_eq!(Image::parse(&[]).unwrap_err(), Error::Truncated);
    assert_eq!(Image::parse(&b[..5]).unwrap_err(), Error::Truncated);
    for cut in [64, HEADER_SIZE, HEADER_SIZE + 40, b.len() - 1, b.len() - 9] {
        let e = Image::parse(&b[..cut]).unwrap_err();
        assert_eq!(e, Error::Truncated, "cut at {cut}");
    }
    // random bytes
    let mut x = XorShift32(12345);
    let mut rnd = AlignedBytes::zeroed(b.len());
    for w in rnd.bytes_mut().chunks_exact_mut(4) {
        w.copy_from_slice(&x.next_u32().to_ne_bytes());
    }
    assert_eq!(Image::parse(rnd.bytes()).unwrap_err(), Error::BadMagic);
    // wrong magic
    let mut m = good.clone();
    m.bytes_mut()[0] = b'X';
    assert_eq!(Image::parse(m.bytes()).unwrap_err(), Error::BadMagic);
    // wrong version
    let mut v = good.clone();
    v.bytes_mut()[8] = 9;
    assert_eq!(
        Image::parse(v.bytes()).unwrap_err(),
        Error::UnsupportedVersion { version: 9 }
    );
    // every single flipped byte past the header is caught by the checksum
    for at in (HEADER_SIZE..b.len()).step_by(7) {
        let mut f = good.clone();
        f.bytes_mut()[at] ^= 0x40;
        assert_eq!(
            Image::parse(f.bytes()).unwrap_err(),
            Error::ChecksumMismatch,
            "byte {at}"
        );
    }
    // inconsistent dimensions (resealed so that the checksum passes)
    let mut d = good.clone();
    d.bytes_mut()[20 + 4 * 5] = 3; // n_kv_heads = 3 does not divide n_heads = 2
    reseal(&mut d);
    assert_eq!(
        Image::parse(d.bytes()).unwrap_err(),
        Error::InconsistentDimensions
    );
    // a missing tensor: directory count off by one
    let mut t = good.clone();
    t.bytes_mut()[20 + 4 * 15] -= 1;
    reseal(&mut t);
    assert_eq!(Image::parse(t.bytes()).unwrap_err(), Error::MissingTensor);
    // a record pointing past the end
    let mut o = good.clone();
    let at = HEADER_SIZE + 16; // first record's offset
    o.bytes_mut()[at + 3] = 0x7f;
    reseal(&mut o);
    assert_eq!(Image::parse(o.bytes()).unwrap_err(), Error::BadTensor);
    // misaligned slice
    let mut shifted = AlignedBytes::zeroed(b.len() + 1);
    let sb = shifted.bytes_mut();
    sb[1..1 + b.len()].copy_from_slice(b);
    assert_eq!(
        Image::parse(&sb[1..1 + b.len()]).unwrap_err(),
        Error::Misaligned
    );
}

#[test]
fn writer_checks_shapes() {
    let h = header();
    let v = [0.0f32; 3];
    let mut out = [0u8; 1024];
    assert_eq!(
        write(&h, &[TensorSource::F32(&v)], &mut out).unwrap_err(),
        Error::BadTensor
    );
    let mut bad = h;
    bad.rotary_dim = 6;
    assert_eq!(
        write(&bad, &[], &mut out).unwrap_err(),
        Error::InconsistentDimensions
    );
}

/// An owned tensor for [`build_with`].
enum Owned {
    F32(Vec<f32>),
    Q8(Vec<i8>, Vec<f32>, Option<usize>),
    U8(Vec<u8>),
    F16(Vec<u16>),
}

impl Owned {
    fn source(&self) -> TensorSource<'_> {
        match self {
            Owned::F32(v) => TensorSource::F32(v),
            Owned::U8(b) => TensorSource::U8(b),
            Owned::F16(v) => TensorSource::F16(v),
            Owned::Q8(values, scales, None) => TensorSource::Q8 { values, scales },
            Owned::Q8(values, scales, Some(group)) => TensorSource::Q8Grouped {
                values,
                scales,
                group: *group,
            },
        }
    }
}

/// Writes an image whose tensors `make(kind, layer, rows, cols)` chooses.
fn build_with(h: &Header, make: impl Fn(TensorKind, u16, usize, usize) -> Owned) -> AlignedBytes {
    let owned: Vec<Owned> = slots(h)
        .map(|(k, l)| {
            let (r, c) = h.expected_shape(k);
            make(k, l, r, c)
        })
        .collect();
    let srcs: Vec<TensorSource> = owned.iter().map(Owned::source).collect();
    let len = image_len(h, &srcs);
    let mut buf = AlignedBytes::zeroed(len);
    assert_eq!(write(h, &srcs, buf.bytes_mut()), Ok(len));
    buf
}

/// Q8 values `i·7 mod 255 − 127` and scales `0.25 + i` in groups of `g`.
fn q8(n: usize, g: usize, own: Option<usize>) -> Owned {
    Owned::Q8(
        (0..n)
            .map(|i| ((i * 7) % 255) as i32 - 127)
            .map(|v| v as i8)
            .collect(),
        (0..n / g).map(|i| 0.25 + i as f32).collect(),
        own,
    )
}

/// Layer tensors: Wq in the header's group, WGate in groups of 8 (named),
/// WDown (rows of 12) in groups of 12, WUp in a named group equal to the
/// header's (stored as 0).
fn grouped(k: TensorKind, _l: u16, r: usize, c: usize) -> Owned {
    match k {
        TensorKind::Tokenizer => Owned::U8(b"tok".to_vec()),
        TensorKind::Wq => q8(r * c, 4, None),
        TensorKind::WGate => q8(r * c, 8, Some(8)),
        TensorKind::WDown => q8(r * c, 12, Some(12)),
        TensorKind::WUp => q8(r * c, 4, Some(4)),
        _ => Owned::F32((0..r * c).map(|i| i as f32).collect()),
    }
}

/// The record of slot `i` (bytes `at..at + RECORD_SIZE`).
fn slot_at(h: &Header, kind: TensorKind, layer: u16) -> usize {
    let i = slots(h).position(|s| s == (kind, layer)).unwrap();
    HEADER_SIZE + i * RECORD_SIZE
}

#[test]
fn f16_matrices() {
    let h = header();
    // Wq and the embedding in binary16 (i/8 is exact), the rest f32.
    let make = |k: TensorKind, l: u16, r: usize, c: usize| match k {
        TensorKind::Wq | TensorKind::TokenEmbedding => Owned::F16(
            (0..r * c)
                .map(|i| crate::num::fp16::from_f32(i as f32 / 8.0 - 3.0))
                .collect(),
        ),
        _ => grouped(k, l, r, c),
    };
    let buf = build_with(&h, make);
    let img = Image::parse(buf.bytes()).unwrap();
    let rec = img.record(TensorKind::Wq, 1).unwrap();
    assert_eq!((rec.dtype, rec.len as usize), (DType::F16, 2 * 8 * 8));
    let TensorData::F16(v) = img.tensor(TensorKind::Wq, 1).unwrap() else {
        panic!("Wq not F16")
    };
    assert_eq!(crate::num::fp16::to_f32(v[27]), 27.0 / 8.0 - 3.0);
    // Matrices only: an f16 norm is refused by the writer.
    let norm = |k: TensorKind, l: u16, r: usize, c: usize| match k {
        TensorKind::AttnNorm => Owned::F16(vec![0; r * c]),
        _ => make(k, l, r, c),
    };
    let owned: Vec<Owned> = slots(&h)
        .map(|(k, l)| {
            let (r, c) = h.expected_shape(k);
            norm(k, l, r, c)
        })
        .collect();
    let srcs: Vec<TensorSource> = owned.iter().map(Owned::source).collect();
    let mut out = vec![0u8; image_len(&h, &srcs)];
    assert_eq!(write(&h, &srcs, &mut out).unwrap_err(), Error::BadTensor);
    // A non-finite binary16 weight (∞, NaN) is refused when the image is opened.
    for bad in [0x7c00u16, 0xfc00, 0x7e00] {
        let mut b = buf.clone();
        let at = img.record(TensorKind::Wq, 0).unwrap().offset as usize + 2 * 5;
        b.bytes_mut()[at..at + 2].copy_from_slice(&bad.to_le_bytes());
        reseal(&mut b);
        assert_eq!(Image::parse(b.bytes()).unwrap_err(), Error::BadTensor);
    }
    // A length that is not 2 bytes per value.
    let mut b = buf.clone();
    let at = slot_at(&h, TensorKind::Wq, 0) + 20;
    b.bytes_mut()[at..at + 4].copy_from_slice(&(8 * 8u32).to_le_bytes());
    reseal(&mut b);
    assert_eq!(Image::parse(b.bytes()).unwrap_err(), Error::BadTensor);
}

#[test]
fn per_tensor_q8_groups() {
    let h = header();
    let buf = build_with(&h, grouped);
    let img = Image::parse(buf.bytes()).unwrap();
    for (kind, group, named) in [
        (TensorKind::Wq, 4, 0),
        (TensorKind::WGate, 8, 8),
        (TensorKind::WDown, 12, 12),
        (TensorKind::WUp, 4, 0),
    ] {
        for layer in 0..2 {
            assert_eq!(img.record(kind, layer).unwrap().group, named, "{kind:?}");
            let TensorData::Q8 {
                values,
                scales,
                group: g,
                ..
            } = img.tensor(kind, layer).unwrap()
            else {
                panic!("{kind:?} not Q8")
            };
            let n = values.len();
            assert_eq!((g, scales.len()), (group, n / group), "{kind:?}");
            assert_eq!(values[9], 63 - 127);
            assert_eq!(scales[1], 1.25);
        }
    }
    assert_eq!(img.record(TensorKind::WDown, 0).unwrap().dtype, DType::Q8);
    // Without a header group every Q8 tensor must name its own.
    let mut h0 = h;
    h0.group_size = 0;
    let own = build_with(&h0, |k, l, r, c| match k {
        TensorKind::Wq => q8(r * c, 4, Some(4)),
        _ => grouped(k, l, r, c),
    });
    let img = Image::parse(own.bytes()).unwrap();
    assert_eq!(img.header().group_size, 0);
    assert_eq!(img.record(TensorKind::Wq, 1).unwrap().group, 4);
    assert!(matches!(
        img.tensor(TensorKind::WUp, 1).unwrap(),
        TensorData::Q8 { group: 4, .. }
    ));
    let mut none = own.clone();
    let at = slot_at(&h0, TensorKind::Wq, 1) + 28;
    none.bytes_mut()[at] = 0;
    reseal(&mut none);
    assert_eq!(
        Image::parse(none.bytes()).unwrap_err(),
        Error::InconsistentDimensions
    );

    // Record defects, resealed so that the checksum passes.
    let with_group = |kind: TensorKind, g: u32| {
        let mut b = buf.clone();
        let at = slot_at(&h, kind, 1) + 28;
        b.bytes_mut()[at..at + 4].copy_from_slice(&g.to_le_bytes());
        reseal(&mut b);
        Image::parse(b.bytes()).map(|_| ())
    };
    // A group on an f32 tensor.
    assert_eq!(with_group(TensorKind::Wo, 4), Err(Error::Malformed));
    // Not a multiple of 4, or over 4096.
    assert_eq!(
        with_group(TensorKind::WGate, 6),
        Err(Error::InconsistentDimensions)
    );
    assert_eq!(
        with_group(TensorKind::WGate, 8192),
        Err(Error::InconsistentDimensions)
    );
    // Does not divide the row (WDown's rows hold 12 values).
    assert_eq!(with_group(TensorKind::WDown, 8), Err(Error::BadTensor));
    // A group that divides the row but whose scales would run past the data
    // (layer 1's WDown is the last tensor).
    assert_eq!(with_group(TensorKind::WDown, 4), Err(Error::BadTensor));
    assert_eq!(with_group(TensorKind::WGate, 8), Ok(()));

    // The writer refuses groups that are invalid or do not divide the rows.
    let mut out = vec![0u8; 1 << 16];
    for (g, kind) in [
        (6, TensorKind::WGate),
        (8, TensorKind::WDown),
        (0, TensorKind::WUp),
    ] {
        let owned: Vec<Owned> = slots(&h)
            .map(|(k, l)| {
                let (r, c) = h.expected_shape(k);
                if k == kind {
                    Owned::Q8(vec![0; r * c], vec![1.0; r * c / g.max(1)], Some(g))
                } else {
                    grouped(k, l, r, c)
                }
            })
            .collect();
        let srcs: Vec<TensorSource> = owned.iter().map(Owned::source).collect();
        assert_eq!(
            write(&h, &srcs, &mut out).unwrap_err(),
            Error::BadTensor,
            "group {g} for {kind:?}"
        );
    }
}

/// With `FLAG_Q8_BLOCK_SCALES` every Q8 tensor carries its scales' block-float
/// form after them, equal to `kernels_int::block_scales` of its f32 scales;
/// a changed mantissa or row exponent (checksum resealed) is `BadTensor`, a
/// header that claims the tables without room for them is rejected, and the
/// image without the flag is the same but for them.
#[test]
fn q8_block_scales() {
    let plain = header();
    let h = Header {
        flags: plain.flags | FLAG_Q8_BLOCK_SCALES,
        ..plain
    };
    let buf = build(&h);
    let without = build(&plain);
    let (rows, cols) = h.expected_shape(TensorKind::Wq);
    // Two bytes a group and one a row, padded, per Q8 tensor (one a layer).
    let per_tensor = (2 * rows * cols / 4 + rows).next_multiple_of(ALIGN);
    assert_eq!(
        buf.bytes().len(),
        without.bytes().len() + h.n_layers as usize * per_tensor
    );
    let img = Image::parse(buf.bytes()).unwrap();
    for layer in 0..h.n_layers as usize {
        let TensorData::Q8 { scales, .. } = img.tensor(TensorKind::Wq, layer).unwrap() else {
            panic!("not Q8");
        };
        let b = img
            .block_scales_after(scales, rows)
            .expect("no block scales");
        let (mut mw, mut tops) = (vec![0u16; scales.len()], vec![0u8; rows]);
        crate::num::kernels_int::block_scales(scales, cols / 4, &mut mw, &mut tops).unwrap();
        assert_eq!((b.mantissas, b.tops), (&mw[..], &tops[..]));
        assert!(tops.iter().all(|&t| t != 0) && mw.iter().all(|&m| m < 1 << 15));
        // Scales from elsewhere are not the image's.
        assert!(img
            .block_scales_after(&mw.iter().map(|&m| m as f32).collect::<Vec<_>>(), rows)
            .is_none());
    }
    let plain_img = Image::parse(without.bytes()).unwrap();
    let TensorData::Q8 { scales, .. } = plain_img.tensor(TensorKind::Wq, 0).unwrap() else {
        panic!("not Q8");
    };
    assert!(plain_img.block_scales_after(scales, rows).is_none());
    // Tampered tables.
    let r = img.record(TensorKind::Wq, 1).unwrap();
    let at = r.scale_offset as usize + 4 * (rows * cols / 4);
    for (off, delta) in [
        (0usize, 1u8),
        (2 * 5 + 1, 0x80),
        (2 * rows * cols / 4 + 2, 1),
    ] {
        let mut bad = AlignedBytes::zeroed(buf.bytes().len());
        bad.bytes_mut().copy_from_slice(buf.bytes());
        bad.bytes_mut()[at + off] ^= delta;
        reseal(&mut bad);
        assert_eq!(Image::parse(bad.bytes()).unwrap_err(), Error::BadTensor);
    }
    // The flag set on an image written without the tables.
    let mut claimed = AlignedBytes::zeroed(without.bytes().len());
    claimed.bytes_mut().copy_from_slice(without.bytes());
    claimed.bytes_mut()[..HEADER_SIZE].copy_from_slice(
        &Header {
            n_tensors: slots(&h).count() as u32,
            image_len: without.bytes().len() as u32,
            ..h
        }
        .to_bytes(),
    );
    reseal(&mut claimed);
    assert!(Image::parse(claimed.bytes()).is_err());
}
