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

use microformer::Error;

use crate::out::{Failure, Out};

mod absolute;
mod attention;
mod bias;
mod image;
mod rope;
mod weights;

/// One on-target check.
pub struct Case {
    /// Its name, as the static that holds it (and the expected values' static).
    pub name: &'static str,
    /// Runs it: writes the results to the stream, checks what must hold.
    pub run: fn(&mut Out<'_>) -> Result<(), Failure>,
}

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
    /// Integer phases ([`microformer::pos::rope::RopePhases`]): cos/sin within 1.2 LSB
    /// (`1.2·a + 0.5` with YaRN's factor), rotation within 2.9 LSB.
    ROPE_PHASES => rope::phases,
    /// Scaling rules: `inv_freq` and attention factors of default, linear, dynamic, YaRN,
    /// Llama 3 and LongRoPE, with the identities each rule implies, and config errors.
    ROPE_SCALING => rope::scaling,
    /// 2-D axial RoPE (f32 and Q15): column half = 1-D RoPE, row half follows the row.
    ROPE_2D => rope::two_d,
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
    /// The firmware's self-check ([`crate::selfcheck`]).
    SELFCHECK => crate::selfcheck::case,
}

/// Checks `|got − want| ≤ bound` (fails on NaN).
pub(crate) fn within(
    label: &'static str,
    index: usize,
    got: f64,
    want: f64,
    bound: f64,
) -> Result<(), Failure> {
    let error = (got - want).abs();
    if error <= bound {
        Ok(())
    } else {
        Err(Failure::Bound {
            label,
            index: index as u32,
            error,
            bound,
        })
    }
}

/// Checks that two f32 are bit-identical.
pub(crate) fn identical(
    label: &'static str,
    index: usize,
    left: f32,
    right: f32,
) -> Result<(), Failure> {
    identical_bits(label, index, left.to_bits(), right.to_bits())
}

/// Checks that two words are equal.
pub(crate) fn identical_bits(
    label: &'static str,
    index: usize,
    left: u32,
    right: u32,
) -> Result<(), Failure> {
    if left == right {
        Ok(())
    } else {
        Err(Failure::NotIdentical {
            label,
            index: index as u32,
            left,
            right,
        })
    }
}

/// Checks a property.
pub(crate) fn ensure(label: &'static str, index: usize, holds: bool) -> Result<(), Failure> {
    if holds {
        Ok(())
    } else {
        Err(Failure::Property {
            label,
            index: index as u32,
        })
    }
}

/// A library call that must succeed.
pub(crate) fn lib<T>(label: &'static str, r: Result<T, Error>) -> Result<T, Failure> {
    r.map_err(|error| Failure::Library { label, error })
}

/// A library call that must fail with `expected`; its result is also written
/// to the stream.
pub(crate) fn expect_err<T>(
    out: &mut Out<'_>,
    label: &'static str,
    r: Result<T, Error>,
    expected: Error,
) -> Result<(), Failure> {
    out.result(label, &r);
    match r {
        Err(e) if e == expected => Ok(()),
        Err(e) => Err(Failure::WrongError {
            label,
            expected,
            got: Some(e),
        }),
        Ok(_) => Err(Failure::WrongError {
            label,
            expected,
            got: None,
        }),
    }
}

/// `ulp(x)` of an f32 (the gap to the next float away from zero).
pub(crate) fn ulp_f32(x: f32) -> f64 {
    let a = x.abs();
    let next = f32::from_bits(a.to_bits() + 1);
    (next as f64) - (a as f64)
}

/// `2^e` for small integer `e`.
pub(crate) fn pow2(e: i32) -> f64 {
    libm::ldexp(1.0, e)
}
