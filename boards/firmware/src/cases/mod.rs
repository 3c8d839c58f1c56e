//! The on-target checks: every positional encoding, in f32 and fixed point,
//! the attention block, and the model image parser's typed errors.
//!
//! A [`Case`] is a function of an [`Out`]: it runs library code on fixed
//! inputs, writes every result to the stream (compared bit for bit with the
//! host's run of the same case), and checks on the spot what must hold on any
//! machine: error bounds against an f64 model computed with `libm` (an
//! implementation independent of the library's `const fn` maths), identities
//! (a compile-time table equals the run-time one), typed errors. Buffers stay
//! small (a few KiB of stack) so that every case runs on the Cortex-M0's
//! 16 KiB of RAM.

pub use crate::out::Case;

mod absolute;
mod attention;
mod bias;
pub(crate) mod check;
mod image;
mod integer;
mod rope;
mod rope2d;
mod rope_common;
mod rope_scaling;
mod weights;

macro_rules! cases {
    ($($(#[$doc:meta])* $name:ident => $run:path,)*) => {
        $(
            $(#[$doc])*
            pub static $name: Case = Case { name: stringify!($name), run: $run };
        )*
        /// Every case, in the order of this module.
        pub static ALL: &[&Case] = &[$(&$name),*];
    };
}

cases! {
    /// f32 RoPE tables filled at run time ([`microformer::pos::rope::RopeTable::fill`]),
    /// positions 0..32, 4093..4096 and 65520..65536, within `2^-25 + p·ω·2^-51` of the exact
    /// value.
    ROPE_TABLE_F32 => rope::table_f32,
    /// Compile-time tables ([`microformer::pos::rope_const::ConstRopeTable`], plain and YaRN)
    /// bit-identical to the run-time fill on the target.
    ROPE_CONST_TABLE => rope::const_table,
    /// f32 rotation, both layouts, partial rotary: within `2·2^-24·(|x0| + |x1|)`.
    ROPE_ROTATE_F32 => rope::rotate_f32,
    /// Q15 tables (scaled and unscaled): within ½ LSB; Q15 rotation within 1.5 LSB.
    ROPE_Q15 => rope::q15,
    /// Packed Q15 rows ([`microformer::pos::rope::RopeRowQ15`], the DSP kernel on the
    /// M4F/M33): every rotation bit-identical to `fixed::rotate_q15`, both layouts.
    ROPE_Q15_ROWS => rope::q15_rows,
    /// Integer phases ([`microformer::pos::rope::RopePhases`]): cos/sin within 1.2 LSB
    /// (`1.2·a + 0.5` with YaRN's factor), rotation within 2.9 LSB.
    ROPE_PHASES => rope::phases,
    /// Scaling rules: `inv_freq` and attention factors of default, linear, dynamic, YaRN,
    /// Llama 3 and LongRoPE, with the identities each rule implies, and config errors.
    ROPE_SCALING => rope_scaling::scaling,
    /// 2-D axial RoPE (f32 and Q15): column half = 1-D RoPE, row half follows the row.
    ROPE_2D => rope2d::two_d,
    /// Sinusoidal tables in f32, interleaved and split (XGLM padding row): within
    /// `2^-25 + p·ω·2^-50` of the exact value.
    SINUSOIDAL_F32 => absolute::sinusoidal_f32,
    /// Sinusoidal tables in Q15 (integer phases): within 2 LSB; scaled adds.
    SINUSOIDAL_Q15 => absolute::sinusoidal_q15,
    /// Learned position views (GPT-2, OPT offset 2) in f32 and Q15, and their errors.
    LEARNED => absolute::learned,
    /// ALiBi slopes in f32 (BLOOM and MPT, many head counts) against the f64 model.
    ALIBI_SLOPES => bias::alibi_slopes,
    /// ALiBi bias rows in f32 and fixed point (Q32 slopes, `i32` biases), within 1 LSB.
    ALIBI_BIAS => bias::alibi_bias,
    /// T5 buckets: direct, run-time table and compile-time table, known values.
    T5_BUCKETS => bias::t5_buckets,
    /// T5 learned bias lookups in f32 and Q15 (rescaled, saturating).
    T5_BIAS => bias::t5_bias,
    /// A tiny model image written with `image::write`, parsed back, then truncated,
    /// flipped and given bad magic, version and alignment: the typed errors.
    IMAGE => image::image,
    /// Attention: cached decoding (GQA, sliding window, ALiBi bias) and whole sequences
    /// (causal, bidirectional, windowed), within `2^-17` of an f64 model; the softmax.
    ATTENTION => attention::attention,
    /// Binary16 weights: every finite pattern widened exactly (subnormals included),
    /// narrowing, and the f16 matrix-vector product = the f32 one of the widened weights.
    WEIGHTS_F16 => weights::f16,
    /// The integer step's kernels: the Q8 product (int8 × int16, block-float scales; the
    /// DSP kernel on the M4F/M33) equal to its formula and to the host's portable loop,
    /// the head kernels, the int16 quantizer, `e^x`, the logistic and the square root.
    INTEGER_KERNELS => integer::kernels,
    /// The firmware's self-check ([`crate::selfcheck`]).
    SELFCHECK => crate::selfcheck::case,
}
