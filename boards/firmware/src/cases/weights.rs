//! Weight storage: IEEE binary16 widened on the target (every finite pattern,
//! subnormals included) and the f16 matrix-vector product, bit-identical to
//! the f32 product of the widened weights and to the host.

use microformer::model::weights::{matvec_f16, matvec_f32};
use microformer::num::fp16;
use microformer_testkit::XorShift32;

use super::check::{identical, identical_bits};
use crate::out::{Failure, Out};

const ROWS: usize = 7; // one block of four rows and a remainder of three
const COLS: usize = 24;

pub(super) fn f16(out: &mut Out<'_>) -> Result<(), Failure> {
    // Every finite pattern: the kernels' fast widening equals the exact one,
    // and narrowing gives the pattern back.
    let mut sum = 0u32;
    for h in 0..=u16::MAX {
        if !fp16::is_finite(h) {
            continue;
        }
        let x = fp16::to_f32(h);
        identical("f16 widen", h as usize, fp16::to_f32_finite(h), x)?;
        identical_bits(
            "f16 round trip",
            h as usize,
            fp16::from_f32(x) as u32,
            h as u32,
        )?;
        sum = sum.wrapping_mul(31).wrapping_add(x.to_bits());
    }
    out.u32("widened patterns hash", sum);

    // Narrowing of values across the whole range, ties and overflow included.
    let mut rng = XorShift32(0x00f1_6a11);
    let mut narrowed = [0u32; 64];
    for (i, n) in narrowed.iter_mut().enumerate() {
        let m = (rng.next_u32() >> 8) as f32 / (1 << 24) as f32 + 1.0;
        let x = libm::ldexpf(m, i as i32 - 30);
        *n = fp16::from_f32(if i % 2 == 0 { x } else { -x }) as u32;
    }
    out.u32s("narrowed", &narrowed);

    // A matrix with normal and subnormal weights, its rows 4-byte aligned (as
    // an image's are) so that hard-float cores take the `vcvtb`/`vcvtt` kernel.
    let mut w = microformer::lm::Aligned([0u16; ROWS * COLS]);
    let w = &mut w.0;
    let mut wf = [0f32; ROWS * COLS];
    for (i, (h, f)) in w.iter_mut().zip(&mut wf).enumerate() {
        let bits = rng.next_u32() as u16 & 0x3fff; // exponents 0..15: |w| < 2
        *h = if i % 5 == 0 { bits & 0x83ff } else { bits }; // every 5th subnormal
        *f = fp16::to_f32(*h);
    }
    let mut x = [0f32; COLS];
    rng.fill_f32(&mut x);
    let (mut got, mut want) = ([0f32; ROWS], [0f32; ROWS]);
    matvec_f16(&mut got, w, &x);
    matvec_f32(&mut want, &wf, &x);
    for (i, (&g, &v)) in got.iter().zip(&want).enumerate() {
        identical("f16 matvec = f32 matvec of the widened weights", i, g, v)?;
    }
    out.f32s("f16 matvec", &got);
    Ok(())
}
