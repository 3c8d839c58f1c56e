//! What the cases check on the spot: bounds, identities, typed errors.

use microformer::Error;

use crate::out::{Failure, Out};

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
