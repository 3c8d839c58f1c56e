//! A reader for the safetensors format (Hugging Face `model.safetensors`).
//!
//! Format: an 8-byte little-endian header length `n`, then `n` bytes of JSON —
//! an object mapping each tensor name to `{"dtype", "shape", "data_offsets":
//! [begin, end]}` (offsets relative to the byte after the header), plus an
//! optional `"__metadata__"` object of strings — then the tensor data, row-major,
//! little-endian.
//!
//! [`SafeTensors::parse`] checks the whole header up front — length, JSON, every
//! entry's dtype, shape and offsets (in range, `end - begin` = elements × dtype
//! size) — and returns a typed [`StError`] naming the defect. [`SafeTensors::f32`]
//! returns a tensor as `f32` (`F32` as is; `F16`, `BF16` and `F64` converted, the
//! first two exactly, `F64` rounded to nearest).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// Largest header accepted (the format's own reference limit is 100 MB).
pub const MAX_HEADER: u64 = 100_000_000;

/// A defect of a safetensors file.
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

/// Element types of a safetensors file that convert to `f32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16 (the top half of a binary32).
    BF16,
    /// IEEE binary64.
    F64,
}

impl Dtype {
    fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "F64" => Dtype::F64,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::F64 => 8,
        }
    }

    /// The safetensors name.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::F64 => "F64",
        }
    }
}

/// One header entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Element type.
    pub dtype: Dtype,
    /// Shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// Byte range in the data section.
    pub begin: usize,
    /// End of the byte range (exclusive).
    pub end: usize,
}

/// A parsed safetensors file (owning its bytes).
#[derive(Debug, Clone)]
pub struct SafeTensors {
    bytes: Vec<u8>,
    data_start: usize,
    tensors: BTreeMap<String, TensorInfo>,
}

fn bad(m: impl Into<String>) -> StError {
    StError::BadHeader(m.into())
}

impl SafeTensors {
    /// Parses and checks a whole file.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, StError> {
        let total = bytes.len() as u64;
        let Some(len_bytes) = bytes.get(..8) else {
            return Err(StError::Truncated {
                what: "the header length".into(),
                needed: 8,
                got: total,
            });
        };
        let mut n8 = [0u8; 8];
        n8.copy_from_slice(len_bytes);
        let n = u64::from_le_bytes(n8);
        if n > MAX_HEADER {
            return Err(bad(format!(
                "header length {n} exceeds the {MAX_HEADER}-byte limit"
            )));
        }
        if 8 + n > total {
            return Err(StError::Truncated {
                what: format!("the {n}-byte header"),
                needed: 8 + n,
                got: total,
            });
        }
        let data_start = 8 + n as usize;
        let header: Value = serde_json::from_slice(&bytes[8..data_start])
            .map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let Value::Object(map) = header else {
            return Err(bad("the header is not a JSON object"));
        };
        let data_len = bytes.len() - data_start;
        let mut tensors = BTreeMap::new();
        for (name, v) in map {
            if name == "__metadata__" {
                continue;
            }
            let info = Self::entry(&name, &v)?;
            if info.end > data_len {
                return Err(StError::Truncated {
                    what: format!("tensor {name}"),
                    needed: (data_start + info.end) as u64,
                    got: total,
                });
            }
            tensors.insert(name, info);
        }
        Ok(SafeTensors {
            bytes,
            data_start,
            tensors,
        })
    }

    fn entry(name: &str, v: &Value) -> Result<TensorInfo, StError> {
        let Value::Object(o) = v else {
            return Err(bad(format!("entry {name} is not an object")));
        };
        let dtype_name = o
            .get("dtype")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("entry {name} has no string \"dtype\"")))?;
        let shape: Vec<usize> = match o.get("shape") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                .collect::<Option<_>>()
                .ok_or_else(|| bad(format!("entry {name} has a non-integer dimension")))?,
            _ => return Err(bad(format!("entry {name} has no \"shape\" list"))),
        };
        let offsets: Vec<usize> = match o.get("data_offsets") {
            Some(Value::Array(a)) if a.len() == 2 => a
                .iter()
                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                .collect::<Option<_>>()
                .ok_or_else(|| bad(format!("entry {name} has non-integer data_offsets")))?,
            _ => return Err(bad(format!("entry {name} has no \"data_offsets\" pair"))),
        };
        let (begin, end) = (offsets[0], offsets[1]);
        if end < begin {
            return Err(bad(format!(
                "entry {name} has data_offsets [{begin}, {end}]"
            )));
        }
        let Some(dtype) = Dtype::from_name(dtype_name) else {
            return Err(StError::UnsupportedDtype {
                name: name.into(),
                dtype: dtype_name.into(),
            });
        };
        let numel = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .and_then(|n| n.checked_mul(dtype.size()))
            .ok_or_else(|| bad(format!("entry {name} has a shape too large: {shape:?}")))?;
        if end - begin != numel {
            return Err(bad(format!(
                "entry {name}: shape {shape:?} of {} needs {numel} bytes, data_offsets span {}",
                dtype.name(),
                end - begin
            )));
        }
        Ok(TensorInfo {
            dtype,
            shape,
            begin,
            end,
        })
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// A tensor as `f32`, checking its shape.
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, StError> {
        let info = self
            .tensors
            .get(name)
            .ok_or_else(|| StError::MissingTensor(name.into()))?;
        if info.shape != shape {
            return Err(StError::WrongShape {
                name: name.into(),
                expected: shape.to_vec(),
                got: info.shape.clone(),
            });
        }
        let raw = &self.bytes[self.data_start + info.begin..self.data_start + info.end];
        Ok(match info.dtype {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    f64::from_le_bytes(b) as f32
                })
                .collect(),
        })
    }
}

/// IEEE binary16 to binary32 (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f32::from(h & 0x3ff);
    match exp {
        0 => sign * frac * (2.0f32).powi(-24),
        31 if frac == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        e => sign * (1.0 + frac / 1024.0) * (2.0f32).powi(e - 15),
    }
}

/// Builds a safetensors file (for tests): F32 tensors in the given order.
#[cfg(test)]
pub fn build_f32(tensors: &[(&str, Vec<usize>, &[f32])]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let begin = data.len();
        for v in values.iter() {
            data.extend_from_slice(&v.to_le_bytes());
        }
        header.insert(
            (*name).to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [begin, data.len()]}),
        );
    }
    let text = Value::Object(header).to_string();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&data);
    out
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

    #[test]
    fn reads_tensors() {
        let st = SafeTensors::parse(sample()).unwrap();
        assert_eq!(st.names().collect::<Vec<_>>(), ["a", "b"]);
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
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        let text = r#"{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"g":{"dtype":"BF16","shape":[1],"data_offsets":[4,6]}}"#;
        let mut f = (text.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(text.as_bytes());
        f.extend_from_slice(&[0x00, 0x3c, 0x00, 0x35, 0x80, 0x3f]);
        let st = SafeTensors::parse(f).unwrap();
        assert_eq!(st.f32("h", &[2]).unwrap(), [1.0, 0.3125]);
        assert_eq!(st.f32("g", &[1]).unwrap(), [1.0]);
    }

    #[test]
    fn malformed_files_give_typed_errors() {
        let good = sample();
        assert!(matches!(
            SafeTensors::parse(vec![]).unwrap_err(),
            StError::Truncated { needed: 8, .. }
        ));
        // cut inside the header, inside the data
        for cut in [5, 20, good.len() - 1] {
            let e = SafeTensors::parse(good[..cut].to_vec()).unwrap_err();
            assert!(matches!(e, StError::Truncated { .. }), "cut {cut}: {e}");
        }
        // huge header length
        let mut h = good.clone();
        h[7] = 0x7f;
        assert!(matches!(
            SafeTensors::parse(h).unwrap_err(),
            StError::BadHeader(_)
        ));
        // not JSON
        let mut j = good.clone();
        j[8] = b'[';
        assert!(matches!(
            SafeTensors::parse(j).unwrap_err(),
            StError::BadHeader(_)
        ));
        let mk = |text: &str, data: usize| {
            let mut f = (text.len() as u64).to_le_bytes().to_vec();
            f.extend_from_slice(text.as_bytes());
            f.extend(std::iter::repeat_n(0u8, data));
            SafeTensors::parse(f)
        };
        // span disagrees with the shape
        let e = mk(
            r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
            8,
        )
        .unwrap_err();
        assert!(matches!(e, StError::BadHeader(_)), "{e}");
        // reversed offsets
        let e = mk(
            r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#,
            8,
        )
        .unwrap_err();
        assert!(matches!(e, StError::BadHeader(_)), "{e}");
        // unsupported dtype
        let e = mk(
            r#"{"a":{"dtype":"I8","shape":[2],"data_offsets":[0,2]}}"#,
            2,
        )
        .unwrap_err();
        assert!(matches!(e, StError::UnsupportedDtype { .. }), "{e}");
        // missing fields
        let e = mk(r#"{"a":{"dtype":"F32","data_offsets":[0,4]}}"#, 4).unwrap_err();
        assert!(matches!(e, StError::BadHeader(_)), "{e}");
        // metadata is skipped
        let st = mk(
            r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
            4,
        )
        .unwrap();
        assert_eq!(st.names().count(), 1);
    }
}
