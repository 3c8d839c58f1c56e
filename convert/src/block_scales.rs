//! An image's Q8 scales in block-float form too
//! ([`microformer::image::FLAG_Q8_BLOCK_SCALES`]): [`with_block_scales`].
//!
//! The integer step reads a weight group's f32 scale as bits and, per row and
//! token, aligns every mantissa of the row to the row's largest exponent. Those
//! integers depend on the weights alone; an image that stores them
//! ([`microformer::image::BlockScales`]: two bytes a group, one a row) spares
//! the step the decoding, and gives the same bits. The f32 scales stay, so the
//! float step still reads exactly `runq.c`'s.

use microformer::image::{self, Image, TensorData, TensorSource};

/// `image` rewritten with [`image::FLAG_Q8_BLOCK_SCALES`]: every Q8 tensor's
/// f32 scales followed by their block-float form. The same tensors otherwise;
/// an image that has the flag already comes back unchanged.
///
/// Errors: `image` does not parse (its [`microformer::Error`]), or the
/// rewritten image cannot be written.
pub fn with_block_scales(bytes: &[u8]) -> Result<Vec<u8>, microformer::Error> {
    let aligned = crate::AlignedBytes::new(bytes);
    let img = Image::parse(aligned.bytes())?;
    let h = *img.header();
    if h.has(image::FLAG_Q8_BLOCK_SCALES) {
        return Ok(bytes.to_vec());
    }
    let sources = image::slots(&h)
        .map(|(kind, layer)| {
            Ok(match img.tensor(kind, layer as usize)? {
                TensorData::F32(v) => TensorSource::F32(v),
                TensorData::U8(b) => TensorSource::U8(b),
                TensorData::F16(v) => TensorSource::F16(v),
                TensorData::Q8 {
                    values,
                    scales,
                    group,
                    ..
                } => TensorSource::Q8Grouped {
                    values,
                    scales,
                    group,
                },
            })
        })
        .collect::<Result<Vec<_>, microformer::Error>>()?;
    let header = image::Header {
        flags: h.flags | image::FLAG_Q8_BLOCK_SCALES,
        ..h
    };
    let mut out = vec![0u8; image::image_len(&header, &sources)];
    let n = image::write(&header, &sources, &mut out)?;
    out.truncate(n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use microformer::image::FLAG_Q8_BLOCK_SCALES;

    /// A v1 checkpoint (dim 8, hidden 16, 1 layer, 2 heads, vocabulary 32,
    /// shared classifier) converted to Q8 in groups of 8: rows of one group
    /// and `w2`'s rows of two.
    fn tiny_q8_image() -> Vec<u8> {
        let mut b = 0x616b_3432u32.to_le_bytes().to_vec();
        for w in [1, 8, 16, 1, 2, 2, 32, 16] {
            b.extend_from_slice(&i32::to_le_bytes(w));
        }
        b.push(1);
        b.resize(256, 0);
        let floats = 8 + 8 + 8 + 32 * 8 + 4 * 8 * 8 + 3 * 16 * 8;
        b.extend((0..floats).flat_map(|i| (0.013 * ((i * 7) % 23) as f32 - 0.1).to_le_bytes()));
        let opts = crate::llama2c::Options {
            storage: crate::Storage::Q8 {
                group_size: Some(8),
            },
            context: None,
            tokenizer: None,
        };
        crate::llama2c::convert(&b, &opts).unwrap().image
    }

    fn kind_rows(h: &image::Header, kind: image::TensorKind) -> usize {
        h.expected_shape(kind).0
    }

    /// That image rewritten:
    /// the rewritten image parses, carries the block scales of every Q8
    /// tensor (those of its f32 scales), and every tensor's data is the
    /// original's; rewriting it again changes nothing, and garbage is an
    /// error.
    #[test]
    fn adds_the_tables_and_keeps_the_tensors() {
        let bytes = tiny_q8_image();
        let with = with_block_scales(&bytes).unwrap();
        assert!(with.len() > bytes.len());
        let a = crate::AlignedBytes::new(&bytes);
        let b = crate::AlignedBytes::new(&with);
        let (old, new) = (
            Image::parse(a.bytes()).unwrap(),
            Image::parse(b.bytes()).unwrap(),
        );
        assert!(new.header().has(FLAG_Q8_BLOCK_SCALES));
        let mut q8 = 0;
        for (kind, layer) in image::slots(old.header()) {
            let l = layer as usize;
            match (old.tensor(kind, l).unwrap(), new.tensor(kind, l).unwrap()) {
                (
                    TensorData::Q8 {
                        values: v0,
                        scales: s0,
                        group: g0,
                    },
                    TensorData::Q8 {
                        values: v1,
                        scales: s1,
                        group: g1,
                    },
                ) => {
                    assert_eq!((v0, s0, g0), (v1, s1, g1));
                    let rows = kind_rows(old.header(), kind);
                    assert!(old.block_scales_after(s0, rows).is_none());
                    let blk = new.block_scales_after(s1, rows).unwrap();
                    assert_eq!(blk.tops.len(), rows);
                    assert!(microformer::num::kernels_int::is_block_scales(
                        s1,
                        s1.len() / rows,
                        blk.mantissas,
                        blk.tops
                    ));
                    q8 += 1;
                }
                (TensorData::F32(x), TensorData::F32(y)) => assert_eq!(x, y),
                (TensorData::U8(x), TensorData::U8(y)) => assert_eq!(x, y),
                (TensorData::F16(x), TensorData::F16(y)) => assert_eq!(x, y),
                _ => panic!("{kind:?} {layer}: the tensor changed"),
            }
        }
        assert!(q8 > 0);
        assert_eq!(with_block_scales(&with).unwrap(), with);
        assert!(with_block_scales(&bytes[..bytes.len() - 1]).is_err());
    }
}
