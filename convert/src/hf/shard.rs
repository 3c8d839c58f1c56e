//! One safetensors file (Hugging Face `model.safetensors`, or one shard of a
//! sharded checkpoint), read with the `safetensors` crate.
//!
//! Format: an 8-byte little-endian header length `n`, then `n` bytes of JSON —
//! an object mapping each tensor name to `{"dtype", "shape", "data_offsets":
//! [begin, end]}` (offsets relative to the byte after the header), plus an
//! optional `"__metadata__"` object of strings — then the tensor data, row-major,
//! little-endian, covering the rest of the file without gaps.
//!
//! [`Shard::parse`] checks the whole header up front (the crate's checks: the
//! length, the JSON, every entry's offsets in order and of the size its shape and
//! dtype need, the data covering the file exactly) and turns the crate's error
//! into a [`StError`] naming the defect. [`Shard::f32`] returns a tensor as `f32`
//! (`F32` as is; `F16`, `BF16` and `F64` converted with the `half` crate and
//! `as`, the first two exactly, `F64` rounded to nearest).

use std::collections::BTreeMap;
use std::fmt;

use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use serde::Deserialize;

/// Largest header accepted (the `safetensors` crate's limit, 100 MB).
pub const MAX_HEADER: u64 = 100_000_000;

/// A defect of a safetensors file, or a tensor the model cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StError {
    /// The file ends before the header or before a tensor's data.
    Truncated {
        /// What was being read.
        what: String,
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        got: u64,
    },
    /// The header is not valid JSON or not the documented structure.
    BadHeader(String),
    /// A dtype this reader does not convert.
    UnsupportedDtype {
        /// The tensor.
        name: String,
        /// Its dtype.
        dtype: String,
    },
    /// A tensor the model needs is not in the file.
    MissingTensor(String),
    /// A tensor has a shape other than the model needs.
    WrongShape {
        /// The tensor.
        name: String,
        /// The shape expected.
        expected: Vec<usize>,
        /// The shape found.
        got: Vec<usize>,
    },
}

impl fmt::Display for StError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StError::Truncated { what, needed, got } => write!(
                f,
                "truncated safetensors file: {what} needs {needed} bytes, the file has {got}"
            ),
            StError::BadHeader(m) => write!(f, "bad safetensors header: {m}"),
            StError::UnsupportedDtype { name, dtype } => write!(
                f,
                "tensor {name} has dtype {dtype}; supported: F32, F16, BF16, F64"
            ),
            StError::MissingTensor(name) => write!(f, "missing tensor {name}"),
            StError::WrongShape {
                name,
                expected,
                got,
            } => write!(f, "tensor {name} has shape {got:?}, expected {expected:?}"),
        }
    }
}

impl std::error::Error for StError {}

/// A parsed safetensors file (owning its bytes).
#[derive(Debug)]
pub struct Shard {
    bytes: Vec<u8>,
    data_start: usize,
    metadata: Metadata,
}

/// The header length the first 8 bytes give (0 when there are fewer).
fn header_len(bytes: &[u8]) -> u64 {
    let mut n8 = [0u8; 8];
    match bytes.get(..8) {
        Some(b) => {
            n8.copy_from_slice(b);
            u64::from_le_bytes(n8)
        }
        None => 0,
    }
}

/// The defect behind one of the crate's errors, with the byte counts it implies.
fn describe(bytes: &[u8], e: SafeTensorError) -> StError {
    let total = bytes.len() as u64;
    let n = header_len(bytes);
    let bad = |m: String| StError::BadHeader(m);
    match e {
        SafeTensorError::HeaderTooSmall => StError::Truncated {
            what: "the header length".into(),
            needed: 8,
            got: total,
        },
        SafeTensorError::HeaderTooLarge => bad(format!(
            "header length {n} exceeds the {MAX_HEADER}-byte limit"
        )),
        SafeTensorError::InvalidHeaderLength => StError::Truncated {
            what: format!("the {n}-byte header"),
            needed: n.saturating_add(8),
            got: total,
        },
        SafeTensorError::InvalidHeader(e) => bad(format!("the header is not UTF-8: {e}")),
        SafeTensorError::InvalidHeaderDeserialization(e) if e.is_syntax() || e.is_eof() => {
            bad(format!("invalid JSON: {e}"))
        }
        SafeTensorError::InvalidHeaderDeserialization(e) => {
            bad(format!("the header is not the documented structure: {e}"))
        }
        SafeTensorError::InvalidOffset(name) => bad(format!(
            "entry {name}: its data_offsets do not start where the previous tensor ends \
             (the data must follow the header without gaps or overlaps)"
        )),
        SafeTensorError::TensorInvalidInfo => bad(mis_sized(bytes, n)),
        SafeTensorError::ValidationOverflow => bad("an entry's shape is too large".into()),
        SafeTensorError::MetadataIncompleteBuffer => uncovered(bytes, n),
        other => bad(other.to_string()),
    }
}

/// Which entry's `data_offsets` span is not the size its shape and dtype need.
fn mis_sized(bytes: &[u8], n: u64) -> String {
    let entries = usize::try_from(n)
        .ok()
        .and_then(|n| bytes.get(8..8 + n))
        .and_then(|h| serde_json::from_slice::<BTreeMap<String, serde_json::Value>>(h).ok())
        .unwrap_or_default();
    let found = entries.iter().find_map(|(name, v)| {
        let info = TensorInfo::deserialize(v).ok()?;
        let (b, e) = info.data_offsets;
        let bits = info
            .shape
            .iter()
            .try_fold(info.dtype.bitsize(), |a, &d| a.checked_mul(d))?;
        (e.checked_sub(b) != Some(bits / 8)).then(|| {
            format!(
                "entry {name}: shape {:?} of {} needs {} bytes, data_offsets span {}",
                info.shape,
                info.dtype,
                bits / 8,
                e.wrapping_sub(b)
            )
        })
    });
    found
        .unwrap_or_else(|| "an entry's data_offsets span disagrees with its shape and dtype".into())
}

/// The data section is shorter or longer than the entries say: which tensor is
/// cut off, or how many bytes follow the last one.
fn uncovered(bytes: &[u8], n: u64) -> StError {
    let total = bytes.len() as u64;
    let header = usize::try_from(n)
        .ok()
        .and_then(|n| bytes.get(8..8 + n))
        .and_then(|h| serde_json::from_slice::<Metadata>(h).ok());
    let Some(metadata) = header else {
        return StError::BadHeader("the tensor data does not cover the file".into());
    };
    let data_start = 8 + n;
    let end = data_start + metadata.data_len() as u64;
    if end <= total {
        return StError::BadHeader(format!(
            "{} bytes follow the last tensor's data",
            total - end
        ));
    }
    let cut = metadata.offset_keys().into_iter().find_map(|name| {
        let (_, e) = metadata.info(&name)?.data_offsets;
        let needed = data_start + e as u64;
        (needed > total).then_some((name, needed))
    });
    let (what, needed) = match cut {
        Some((name, needed)) => (format!("tensor {name}"), needed),
        None => ("the tensor data".into(), end),
    };
    StError::Truncated {
        what,
        needed,
        got: total,
    }
}

impl Shard {
    /// Parses and checks a whole file.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, StError> {
        let (n, metadata) = SafeTensors::read_metadata(&bytes).map_err(|e| describe(&bytes, e))?;
        Ok(Shard {
            data_start: 8 + n,
            bytes,
            metadata,
        })
    }

    /// The file's size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names = self.metadata.offset_keys();
        names.sort();
        names
    }

    /// A tensor's shape as the header declares it (`None` if it is not in the file),
    /// read without touching its data.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.metadata.info(name).map(|info| info.shape.as_slice())
    }

    /// A tensor as `f32`, checking its shape.
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, StError> {
        let info = self
            .metadata
            .info(name)
            .ok_or_else(|| StError::MissingTensor(name.into()))?;
        if info.shape != shape {
            return Err(StError::WrongShape {
                name: name.into(),
                expected: shape.to_vec(),
                got: info.shape.clone(),
            });
        }
        let (begin, end) = info.data_offsets;
        // In range: `parse` checked that the entries cover the data exactly.
        let raw = &self.bytes[self.data_start + begin..self.data_start + end];
        let le16 = |c: &[u8]| u16::from_le_bytes([c[0], c[1]]);
        Ok(match info.dtype {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|c| half::f16::from_bits(le16(c)).to_f32())
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|c| half::bf16::from_bits(le16(c)).to_f32())
                .collect(),
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    f64::from_le_bytes(b) as f32
                })
                .collect(),
            other => {
                return Err(StError::UnsupportedDtype {
                    name: name.into(),
                    dtype: other.to_string(),
                })
            }
        })
    }
}

/// Builds a safetensors file (for tests): F32 tensors.
#[cfg(test)]
pub fn build_f32(tensors: &[(&str, Vec<usize>, &[f32])]) -> Vec<u8> {
    use safetensors::tensor::TensorView;
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors.iter().zip(&bytes).map(|((name, shape, _), b)| {
        let view = TensorView::new(Dtype::F32, shape.clone(), b).expect("consistent test tensor");
        (*name, view)
    });
    safetensors::serialize(views, None).expect("serializable test tensors")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        build_f32(&[
            ("a", vec![2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
            ("b", vec![2], &[-1.5, 0.25]),
        ])
    }

    /// A file with this header text and `data` zero bytes after it.
    fn raw(text: &str, data: &[u8]) -> Vec<u8> {
        let mut f = (text.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(text.as_bytes());
        f.extend_from_slice(data);
        f
    }

    #[test]
    fn reads_tensors() {
        let st = Shard::parse(sample()).unwrap();
        assert_eq!(st.names(), ["a", "b"]);
        assert_eq!(
            st.f32("a", &[2, 3]).unwrap(),
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
        assert_eq!(st.f32("b", &[2]).unwrap(), [-1.5, 0.25]);
        assert_eq!(
            st.f32("a", &[3, 2]).unwrap_err(),
            StError::WrongShape {
                name: "a".into(),
                expected: vec![3, 2],
                got: vec![2, 3]
            }
        );
        assert_eq!(
            st.f32("c", &[1]).unwrap_err(),
            StError::MissingTensor("c".into())
        );
    }

    #[test]
    fn half_precision_converts_exactly() {
        let halves: [u16; 6] = [0x3c00, 0xc000, 0x0001, 0x7bff, 0x7c00, 0x7e00];
        let data: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
        let st = Shard::parse(raw(
            r#"{"h":{"dtype":"F16","shape":[6],"data_offsets":[0,12]}}"#,
            &data,
        ))
        .unwrap();
        let v = st.f32("h", &[6]).unwrap();
        assert_eq!(v[..5], [1.0, -2.0, 2f32.powi(-24), 65504.0, f32::INFINITY]);
        assert!(v[5].is_nan());
        let text = r#"{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"g":{"dtype":"BF16","shape":[1],"data_offsets":[4,6]}}"#;
        let st = Shard::parse(raw(text, &[0x00, 0x3c, 0x00, 0x35, 0x80, 0x3f])).unwrap();
        assert_eq!(st.f32("h", &[2]).unwrap(), [1.0, 0.3125]);
        assert_eq!(st.f32("g", &[1]).unwrap(), [1.0]);
        let st = Shard::parse(raw(
            r#"{"d":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}"#,
            &0.1f64.to_le_bytes(),
        ))
        .unwrap();
        assert_eq!(st.f32("d", &[1]).unwrap(), [0.1f32]);
    }

    #[test]
    fn malformed_files_give_typed_errors() {
        let good = sample();
        assert!(matches!(
            Shard::parse(vec![]).unwrap_err(),
            StError::Truncated { needed: 8, .. }
        ));
        // cut inside the header, inside the data
        for cut in [5, 20, good.len() - 1] {
            let e = Shard::parse(good[..cut].to_vec()).unwrap_err();
            assert!(matches!(e, StError::Truncated { .. }), "cut {cut}: {e}");
        }
        let e = Shard::parse(good[..good.len() - 1].to_vec()).unwrap_err();
        assert!(e.to_string().contains("tensor b needs"), "{e}");
        // huge header length
        let mut h = good.clone();
        h[7] = 0x7f;
        assert!(matches!(
            Shard::parse(h).unwrap_err(),
            StError::BadHeader(_)
        ));
        // not JSON
        let mut j = good.clone();
        j[8] = b'[';
        assert!(matches!(
            Shard::parse(j).unwrap_err(),
            StError::BadHeader(_)
        ));
        let mk = |text: &str, data: usize| Shard::parse(raw(text, &vec![0u8; data]));
        // span disagrees with the shape
        let e = mk(
            r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
            8,
        )
        .unwrap_err();
        assert!(matches!(e, StError::BadHeader(_)), "{e}");
        assert!(
            e.to_string()
                .contains("entry a: shape [3] of F32 needs 12 bytes, data_offsets span 8"),
            "{e}"
        );
        // reversed offsets
        let e = mk(
            r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#,
            8,
        )
        .unwrap_err();
        assert!(matches!(e, StError::BadHeader(_)), "{e}");
        // a gap between tensors, bytes after the last one
        let e = mk(
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            8,
        )
        .unwrap_err();
        assert!(e.to_string().contains("entry a"), "{e}");
        let e = mk(
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
            6,
        )
        .unwrap_err();
        assert!(e.to_string().contains("2 bytes follow"), "{e}");
        // unsupported dtype: a valid file, refused when read
        let st = mk(
            r#"{"a":{"dtype":"I8","shape":[2],"data_offsets":[0,2]}}"#,
            2,
        )
        .unwrap();
        let e = st.f32("a", &[2]).unwrap_err();
        assert!(matches!(e, StError::UnsupportedDtype { .. }), "{e}");
        // an unknown dtype, missing fields
        for text in [
            r#"{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,1]}}"#,
            r#"{"a":{"dtype":"F32","data_offsets":[0,4]}}"#,
        ] {
            let e = mk(text, 4).unwrap_err();
            assert!(matches!(e, StError::BadHeader(_)), "{e}");
        }
        // metadata is skipped
        let st = mk(
            r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
            4,
        )
        .unwrap();
        assert_eq!(st.names().len(), 1);
    }
}
