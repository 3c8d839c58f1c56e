//! Typed views of the image's weights and the kernels that apply them.

use crate::image::{Image, TensorData, TensorKind};
use crate::num::{fp16, q8};
use crate::Error;

/// A weight matrix `[rows][cols]`, row-major, borrowed from the image.
#[derive(Debug, Clone, Copy)]
pub enum Matrix<'a> {
    /// f32 values.
    F32 {
        /// `rows · cols` values.
        w: &'a [f32],
        /// Output width.
        rows: usize,
        /// Input width.
        cols: usize,
    },
    /// Q8_0 values with one scale per `group` values of a row.
    Q8 {
        /// `rows · cols` int8 values.
        values: &'a [i8],
        /// `rows · cols / group` scales.
        scales: &'a [f32],
        /// Values per scale (divides `cols`).
        group: usize,
        /// Output width.
        rows: usize,
        /// Input width.
        cols: usize,
    },
    /// IEEE binary16 values, widened to f32 as they are used.
    F16 {
        /// `rows · cols` binary16 bit patterns.
        w: &'a [u16],
        /// Output width.
        rows: usize,
        /// Input width.
        cols: usize,
    },
}

/// A quantized activation vector (values and one scale per group), when the
/// matrix it feeds is Q8.
#[derive(Debug, Clone, Copy)]
pub struct QuantizedInput<'q> {
    /// int8 values.
    pub values: &'q [i8],
    /// One scale per group.
    pub scales: &'q [f32],
}

impl<'a> Matrix<'a> {
    /// The image tensor `kind` of `layer` as a matrix of the header's shape.
    pub fn from_image(image: &Image<'a>, kind: TensorKind, layer: usize) -> Result<Self, Error> {
        let (rows, cols) = image.header().expected_shape(kind);
        Self::from_data(image.tensor(kind, layer)?, rows, cols)
    }

    /// A tensor's data as a `[rows][cols]` matrix.
    ///
    /// Errors: [`Error::BadTensor`] for another shape or a dtype that is not a matrix's.
    pub fn from_data(data: TensorData<'a>, rows: usize, cols: usize) -> Result<Self, Error> {
        match data {
            TensorData::F32(w) if w.len() == rows * cols => Ok(Matrix::F32 { w, rows, cols }),
            TensorData::F16(w) if w.len() == rows * cols => Ok(Matrix::F16 { w, rows, cols }),
            TensorData::Q8 {
                values,
                scales,
                group,
            } if group != 0
                && cols % group == 0
                && values.len() == rows * cols
                && scales.len() == rows * cols / group =>
            {
                Ok(Matrix::Q8 {
                    values,
                    scales,
                    group,
                    rows,
                    cols,
                })
            }
            _ => Err(Error::BadTensor),
        }
    }

    /// Output width.
    pub const fn rows(&self) -> usize {
        match *self {
            Matrix::F32 { rows, .. } | Matrix::Q8 { rows, .. } | Matrix::F16 { rows, .. } => rows,
        }
    }

    /// Input width.
    pub const fn cols(&self) -> usize {
        match *self {
            Matrix::F32 { cols, .. } | Matrix::Q8 { cols, .. } | Matrix::F16 { cols, .. } => cols,
        }
    }

    /// The Q8 group size, `None` for f32 and f16.
    pub const fn q8_group(&self) -> Option<usize> {
        match *self {
            Matrix::F32 { .. } | Matrix::F16 { .. } => None,
            Matrix::Q8 { group, .. } => Some(group),
        }
    }

    /// Copies row `row` into `out` (`cols` values), dequantizing a Q8 row as
    /// `runq.c` dequantizes its token embedding table (`q · scale` in f32).
    pub fn row_into(&self, row: usize, out: &mut [f32]) -> Result<(), Error> {
        let cols = self.cols();
        if row >= self.rows() {
            return Err(Error::PositionOutOfRange {
                position: row,
                len: self.rows(),
            });
        }
        if out.len() != cols {
            return Err(Error::LengthMismatch {
                expected: cols,
                got: out.len(),
            });
        }
        // Checked access only (no panic path): a matrix built by
        // `Matrix::from_image` holds `rows · cols` values, so none fails.
        let short = || Error::LengthMismatch {
            expected: (row + 1) * cols,
            got: 0,
        };
        match *self {
            Matrix::F32 { w, .. } => {
                // `out.len() == cols` (checked above): no length panic left.
                out.copy_from_slice(w.get(row * cols..(row + 1) * cols).ok_or_else(short)?);
            }
            Matrix::F16 { w, .. } => {
                let w = w.get(row * cols..(row + 1) * cols).ok_or_else(short)?;
                for (o, &h) in out.iter_mut().zip(w) {
                    *o = fp16::to_f32(h);
                }
            }
            Matrix::Q8 {
                values,
                scales,
                group,
                ..
            } => {
                let gpr = cols.checked_div(group).ok_or(Error::ZeroDimension)?;
                let (Some(v), Some(s)) = (
                    values.get(row * cols..(row + 1) * cols),
                    scales.get(row * gpr..(row + 1) * gpr),
                ) else {
                    return Err(short());
                };
                q8::dequantize(v, s, group, out)?;
            }
        }
        Ok(())
    }

    /// `out = W · x`. A Q8 matrix multiplies the quantized `xq` (which must be
    /// `x` quantized with the matrix's group); an f32 or f16 matrix multiplies `x`
    /// (an f16 matrix gives exactly what the f32 matrix of its widened values gives).
    pub fn matvec(
        &self,
        out: &mut [f32],
        x: &[f32],
        xq: Option<QuantizedInput<'_>>,
    ) -> Result<(), Error> {
        if out.len() != self.rows() {
            return Err(Error::LengthMismatch {
                expected: self.rows(),
                got: out.len(),
            });
        }
        if x.len() != self.cols() {
            return Err(Error::LengthMismatch {
                expected: self.cols(),
                got: x.len(),
            });
        }
        match *self {
            Matrix::F32 { w, .. } => {
                matvec_f32(out, w, x);
                Ok(())
            }
            Matrix::F16 { w, .. } => {
                matvec_f16(out, w, x);
                Ok(())
            }
            Matrix::Q8 {
                values,
                scales,
                group,
                cols,
                ..
            } => {
                let xq = xq.ok_or(Error::InvalidParameter)?;
                let n = cols.checked_div(group).ok_or(Error::ZeroDimension)?;
                let (Some(xv), Some(xs)) = (xq.values.get(..cols), xq.scales.get(..n)) else {
                    return Err(Error::LengthMismatch {
                        expected: cols,
                        got: xq.values.len(),
                    });
                };
                q8::matvec(out, values, scales, xv, xs, group)
            }
        }
    }
}

/// `out = W · x` for an f32 matrix `W` `[out.len()][x.len()]`.
///
/// Every output is the plain sequential sum `Σ_j w[i][j]·x[j]` of `run.c`'s
/// `matmul`, so results are bit-identical to it. Speed comes from computing four
/// rows at once (each with its own accumulator, each summed in order): every
/// `x[j]` load feeds four multiply-adds and the four dependency chains overlap
/// in the FPU pipeline; the columns go eight at a time, unrolled, so that the
/// loads come in blocks and the loop costs little.
pub fn matvec_f32(out: &mut [f32], w: &[f32], x: &[f32]) {
    matvec(out, w, x);
}

/// `out = W · x` for a binary16 matrix `W` `[out.len()][x.len()]`: every output
/// is the plain sequential sum `Σ_j f32(w[i][j])·x[j]`, bit-identical to
/// [`matvec_f32`] over the widened weights. The same blocking as there; each
/// weight is widened exactly right before its multiply
/// ([`fp16::to_f32_finite`]; on hard-float Arm `vcvtb`/`vcvtt` in
/// `num::kernels_m4` — images hold finite values only).
pub fn matvec_f16(out: &mut [f32], w: &[u16], x: &[f32]) {
    matvec(out, w, x);
}

/// A stored weight type of [`matvec`]: how one weight becomes an f32, and the
/// hard-float kernel for a block of four rows × eight columns.
trait Stored: Copy + bytemuck::Pod {
    /// The weight's exact f32 value.
    fn widen(self) -> f32;
    /// `a[i] += Σ_c dot(widen(rows[i][c]), x[c])` for every block, each row in
    /// column order, with the assembly kernel; `false` (nothing done) where
    /// there is none for this target or these rows.
    fn kernel(a: &mut [f32; 4], x: &[[f32; 8]], rows: [&[[Self; 8]]; 4]) -> bool;
}

impl Stored for f32 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }
    #[inline(always)]
    #[allow(unused_variables)]
    fn kernel(a: &mut [f32; 4], x: &[[f32; 8]], rows: [&[[f32; 8]]; 4]) -> bool {
        #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
        {
            crate::num::kernels_m4::dot4x8(a, x, rows);
            true
        }
        #[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
        false
    }
}

impl Stored for u16 {
    #[inline(always)]
    fn widen(self) -> f32 {
        fp16::to_f32_finite(self)
    }
    #[inline(always)]
    #[allow(unused_variables)]
    fn kernel(a: &mut [f32; 4], x: &[[f32; 8]], rows: [&[[u16; 8]]; 4]) -> bool {
        // `vldm` needs word-aligned rows (an image's are: tensors start aligned
        // and rows hold a multiple of eight values).
        #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
        if rows.iter().all(|r| r.as_ptr().align_offset(4) == 0) {
            crate::num::kernels_m4::dot4x8_f16(a, x, rows);
            return true;
        }
        false
    }
}

/// The blocked matrix-vector product behind [`matvec_f32`] and [`matvec_f16`].
#[inline(always)]
fn matvec<W: Stored>(out: &mut [f32], w: &[W], x: &[f32]) {
    let n = x.len();
    if n == 0 {
        out.fill(0.0);
        return;
    }
    let mut rows = w.chunks_exact(n);
    let mut blocks = out.chunks_exact_mut(4);
    for o in &mut blocks {
        let (Some(r0), Some(r1), Some(r2), Some(r3)) =
            (rows.next(), rows.next(), rows.next(), rows.next())
        else {
            return;
        };
        let mut a = [0.0f32; 4];
        // Eight columns at a time as `[_; 8]` blocks, the rest one by one.
        let m = n / 8;
        let (x8, b0, b1, b2, b3) = (
            blocks8(x, m),
            blocks8(r0, m),
            blocks8(r1, m),
            blocks8(r2, m),
            blocks8(r3, m),
        );
        if x8.len() == m
            && b0.len() == m
            && b1.len() == m
            && b2.len() == m
            && b3.len() == m
            && !W::kernel(&mut a, x8, [b0, b1, b2, b3])
        {
            for c in 0..m {
                a[0] = crate::num::kernels::dot8(a[0], &b0[c].map(W::widen), &x8[c]);
                a[1] = crate::num::kernels::dot8(a[1], &b1[c].map(W::widen), &x8[c]);
                a[2] = crate::num::kernels::dot8(a[2], &b2[c].map(W::widen), &x8[c]);
                a[3] = crate::num::kernels::dot8(a[3], &b3[c].map(W::widen), &x8[c]);
            }
        }
        let t = 8 * m;
        for ((((&xj, &w0), &w1), &w2), &w3) in tail(x, t)
            .iter()
            .zip(tail(r0, t))
            .zip(tail(r1, t))
            .zip(tail(r2, t))
            .zip(tail(r3, t))
        {
            a[0] += w0.widen() * xj;
            a[1] += w1.widen() * xj;
            a[2] += w2.widen() * xj;
            a[3] += w3.widen() * xj;
        }
        o.copy_from_slice(&a);
    }
    for (o, row) in blocks.into_remainder().iter_mut().zip(rows) {
        let mut a = 0.0f32;
        for (&xj, &wj) in x.iter().zip(row) {
            a += wj.widen() * xj;
        }
        *o = a;
    }
}

/// The first `m` blocks of eight values of `v` as `[T; 8]` (empty if `v` is shorter).
#[inline(always)]
fn blocks8<T: bytemuck::Pod>(v: &[T], m: usize) -> &[[T; 8]] {
    v.get(..8 * m)
        .and_then(|v| bytemuck::try_cast_slice(v).ok())
        .unwrap_or(&[])
}

/// `v[t..]` (empty if `v` is shorter).
#[inline(always)]
fn tail<T>(v: &[T], t: usize) -> &[T] {
    v.get(t..).unwrap_or(&[])
}

/// A norm's weight and, for LayerNorm with a bias, its bias (`[dim]` each).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormWeights<'a> {
    /// Weight (`γ`).
    pub weight: &'a [f32],
    /// Bias (`β`), when the norm has one.
    pub bias: Option<&'a [f32]>,
}

/// The weights of one transformer layer. Which optional parts exist follows
/// the header's flags and [`crate::image::Block`].
#[derive(Debug, Clone, Copy)]
pub struct LayerWeights<'a> {
    /// Attention norm `[dim]` (and its bias with LayerNorm).
    pub attn_norm: NormWeights<'a>,
    /// Query projection `[q_dim][dim]`.
    pub wq: Matrix<'a>,
    /// Key projection `[kv_dim][dim]`.
    pub wk: Matrix<'a>,
    /// Value projection `[kv_dim][dim]`.
    pub wv: Matrix<'a>,
    /// q/k/v biases, when the image has them.
    pub qkv_bias: Option<[&'a [f32]; 3]>,
    /// Attention output projection `[dim][q_dim]`.
    pub wo: Matrix<'a>,
    /// Attention output bias `[dim]`.
    pub o_bias: Option<&'a [f32]>,
    /// Feed-forward norm `[dim]` (none when the block's attention and
    /// feed-forward share one norm).
    pub ffn_norm: Option<NormWeights<'a>>,
    /// SwiGLU gate (`w1`) `[hidden][dim]` (SwiGLU blocks only).
    pub w_gate: Option<Matrix<'a>>,
    /// SwiGLU up (`w3`) `[hidden][dim]`; the GELU MLP's first matrix.
    pub w_up: Matrix<'a>,
    /// SwiGLU down (`w2`) `[dim][hidden]`; the GELU MLP's second matrix.
    pub w_down: Matrix<'a>,
    /// Gate bias `[hidden]`.
    pub b_gate: Option<&'a [f32]>,
    /// Up bias `[hidden]`.
    pub b_up: Option<&'a [f32]>,
    /// Down bias `[dim]`.
    pub b_down: Option<&'a [f32]>,
}

/// An f32 vector tensor (norm weight, bias) of the expected length.
pub fn vector<'a>(image: &Image<'a>, kind: TensorKind, layer: usize) -> Result<&'a [f32], Error> {
    let (rows, cols) = image.header().expected_shape(kind);
    match image.tensor(kind, layer)? {
        TensorData::F32(v) if v.len() == rows * cols => Ok(v),
        _ => Err(Error::BadTensor),
    }
}

/// [`vector`] for a tensor the header may leave out: `None` when it does.
pub fn optional_vector<'a>(
    image: &Image<'a>,
    kind: TensorKind,
    layer: usize,
) -> Result<Option<&'a [f32]>, Error> {
    if crate::image::has_tensor(image.header(), kind) {
        vector(image, kind, layer).map(Some)
    } else {
        Ok(None)
    }
}

impl<'a> LayerWeights<'a> {
    /// Looks up layer `layer`'s tensors in the image (one directory index each).
    pub fn from_image(image: &Image<'a>, layer: usize) -> Result<Self, Error> {
        use TensorKind::*;
        let qkv_bias = if image.header().has(crate::image::FLAG_QKV_BIAS) {
            Some([
                vector(image, Bq, layer)?,
                vector(image, Bk, layer)?,
                vector(image, Bv, layer)?,
            ])
        } else {
            None
        };
        let opt = |kind| optional_vector(image, kind, layer);
        let w_gate = if crate::image::has_tensor(image.header(), WGate) {
            Some(Matrix::from_image(image, WGate, layer)?)
        } else {
            None
        };
        let ffn_norm = match opt(FfnNorm)? {
            Some(weight) => Some(NormWeights {
                weight,
                bias: opt(FfnNormBias)?,
            }),
            None => None,
        };
        Ok(LayerWeights {
            attn_norm: NormWeights {
                weight: vector(image, AttnNorm, layer)?,
                bias: opt(AttnNormBias)?,
            },
            wq: Matrix::from_image(image, Wq, layer)?,
            wk: Matrix::from_image(image, Wk, layer)?,
            wv: Matrix::from_image(image, Wv, layer)?,
            qkv_bias,
            wo: Matrix::from_image(image, Wo, layer)?,
            o_bias: opt(Bo)?,
            ffn_norm,
            w_gate,
            w_up: Matrix::from_image(image, WUp, layer)?,
            w_down: Matrix::from_image(image, WDown, layer)?,
            b_gate: opt(BGate)?,
            b_up: opt(BUp)?,
            b_down: opt(BDown)?,
        })
    }

    /// The matrices, in forward order (`None`: no gate, outside SwiGLU blocks).
    pub const fn matrices(&self) -> [Option<Matrix<'a>>; 7] {
        [
            Some(self.wq),
            Some(self.wk),
            Some(self.wv),
            Some(self.wo),
            self.w_gate,
            Some(self.w_up),
            Some(self.w_down),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_matvec_equals_sequential_sum_of_widened_weights_bitwise() {
        let mut rng = microformer_testkit::XorShift32(7);
        let mut rnd = || rng.next_u32();
        for (d, n) in [(1, 1), (3, 5), (4, 7), (5, 8), (7, 64), (13, 172), (4, 17)] {
            // finite patterns with |w| < 2, every fifth one subnormal
            let w: Vec<u16> = (0..d * n)
                .map(|i| {
                    let b = rnd() as u16 & 0xbfff;
                    if i % 5 == 0 {
                        b & 0x83ff
                    } else {
                        b
                    }
                })
                .collect();
            let x: Vec<f32> = (0..n)
                .map(|_| rnd() as f32 / u32::MAX as f32 - 0.5)
                .collect();
            let mut out = vec![0.0; d];
            matvec_f16(&mut out, &w, &x);
            for i in 0..d {
                let mut v = 0.0f32;
                for j in 0..n {
                    v += fp16::to_f32(w[i * n + j]) * x[j];
                }
                assert_eq!(out[i].to_bits(), v.to_bits(), "({d},{n}) row {i}");
            }
        }
    }

    #[test]
    fn blocked_matvec_equals_sequential_sum_bitwise() {
        let mut rng = microformer_testkit::XorShift32(1);
        let mut rnd = || rng.centered_unit();
        for (d, n) in [(1, 1), (3, 5), (4, 7), (7, 64), (13, 172)] {
            let w: Vec<f32> = (0..d * n).map(|_| rnd()).collect();
            let x: Vec<f32> = (0..n).map(|_| rnd()).collect();
            let mut out = vec![0.0; d];
            matvec_f32(&mut out, &w, &x);
            for i in 0..d {
                let mut v = 0.0f32;
                for j in 0..n {
                    v += w[i * n + j] * x[j];
                }
                assert_eq!(out[i].to_bits(), v.to_bits(), "({d},{n}) row {i}");
            }
        }
    }
}
