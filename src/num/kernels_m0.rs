//! The integer step's int8 × int16 dot products on ARMv6-M (Cortex-M0/M0+,
//! `thumbv6m-none-eabi`): [`dots4_i8_i16`], four weight rows at a time over
//! one or more groups of columns, each column's input value loaded once for
//! the four rows.
//!
//! # Why `unsafe`
//!
//! ARMv6-M's Thumb has `ldrsb` and `ldrsh` with a register offset only, and
//! `muls`, `adds`, `cmp` on the eight low registers. Compiled from safe Rust
//! (`kernels_int`'s `dots4`), the four-row loop spills and reloads its
//! accumulators and pointers: about 7 instructions a multiply-add. The loop
//! below keeps the four row pointers, the column index, the input pointer and
//! two scratch values in the eight low registers (r6 and r7, LLVM's base and
//! frame pointers, saved on the stack and restored), the four sums in r8–r11
//! and the group's end in r12: per column one `ldrsh`, per row `ldrsb`,
//! `muls`, `add`, and two index steps, 15 instructions per four multiply-adds
//! (3.9 a multiply-add with the loop). A register allocation that tight
//! cannot be asked of safe Rust, only written in `asm!`, which is `unsafe`.
//!
//! # Bit-exactness
//!
//! Every product `w·x` (int8 × int16, |·| ≤ 2^22) and every sum is exact in
//! `i32` for groups of up to 2^8 values (checked), so the sums are those of
//! [`crate::num::kernels_int::dot_i8_i16`] whatever their order.
//!
//! # Gate
//!
//! Compiled for `target_arch = "arm"`, `target_os = "none"`, little-endian,
//! without 32-bit atomics: of the Arm `none` targets, the ARMv6-M one
//! (`thumbv6m-none-eabi`), whose instructions every later M-profile core
//! also runs. Built and run: `thumbv6m-none-eabi` (under QEMU's `mps2-an385`,
//! as every ARMv6-M program is an ARMv7-M one).
#![allow(unsafe_code)]

use core::arch::asm;

/// One column of the four rows: the input value into r6 (`ldrsh` at
/// `r5 + r4`, r5 being `x`'s address plus the column), each row's weight into
/// r7 (`ldrsb` at row pointer + r4), the product added to the row's sum.
macro_rules! column {
    () => {
        concat!(
            "ldrsh r6, [r5, r4]\n",
            "ldrsb r7, [r0, r4]\n",
            "muls r7, r6, r7\n",
            "add r8, r7\n",
            "ldrsb r7, [r1, r4]\n",
            "muls r7, r6, r7\n",
            "add r9, r7\n",
            "ldrsb r7, [r2, r4]\n",
            "muls r7, r6, r7\n",
            "add r10, r7\n",
            "ldrsb r7, [r3, r4]\n",
            "muls r7, r6, r7\n",
            "add r11, r7\n",
            "adds r4, #1\n",
            "adds r5, #1\n",
        )
    };
}

/// The integer step's group dot products on ARMv6-M: for four int8 weight
/// rows (row `r` is `w[r·n..]`: a row stride of `n` values) and an int16
/// input `x`, both cut into groups of `g` values,
/// `out[k][r] = Σ_{i < g} w[r·n + k·g + i] · x[k·g + i]`, exact in `i32`:
/// bit-identical to [`crate::num::kernels_int::dot_i8_i16`] group by group.
///
/// Per column: one `ldrsh`, per row `ldrsb`, `muls`, `add`, and the index
/// steps (15 instructions per 4 multiply-adds); per four columns `cmp`,
/// `bne`; per group the four sums stored (`str` through r7, 9 instructions)
/// and the next group's end.
///
/// Computes `out.len()` groups and returns that number; 0 (nothing done)
/// when `x` or the fourth row (`w.len() − 3n`) holds fewer, or `g` is 0, no
/// multiple of 4 or above 256 (a larger group could overflow `i32`).
#[inline(always)]
pub fn dots4_i8_i16(w: &[i8], n: usize, g: usize, x: &[i16], out: &mut [[i32; 4]]) -> usize {
    if g == 0 || g % 4 != 0 || g > 256 {
        return 0;
    }
    // `out.len()` groups, or none: checked by multiplication (ARMv6-M
    // divides in a library call).
    let groups = out.len();
    let span = groups.checked_mul(g);
    let Some(need) = n
        .checked_mul(3)
        .zip(span)
        .and_then(|(o, s)| o.checked_add(s))
    else {
        return 0;
    };
    if groups == 0 || span.is_none_or(|s| s > x.len()) || need > w.len() {
        return 0;
    }
    // Thumb-1 `asm!` takes operands in the low registers only: the group
    // size, the end column and the output pointer come through memory.
    let params = [g, groups * g, out.as_mut_ptr() as usize];
    // SAFETY: for `r < 4` row `r` is read at `w[r·n .. r·n + groups·g]`, inside
    // `w` because `3n + groups·g ≤ w.len()` (checked above), in bytes
    // (`ldrsb` at row pointer + column, no alignment); `x` is read at
    // `x[.. groups·g]` (`≤ x.len()`), in halfwords (`ldrsh` at `x + 2·column`,
    // the 2-byte alignment of `i16`). The column runs from 0 to
    // `groups·g` in steps of four (`g` a multiple of 4); after each group the
    // four sums are stored at `out[k]` (an exclusive slice of at least
    // `groups` `[i32; 4]`, 4-byte aligned, through lr's copy in r7) and no
    // other memory is written but the 16 bytes the assembly pushes (r6 and
    // r7, LLVM's, restored; the group size and the end) and pops. Every other
    // register it touches is an operand; the flags are clobbered.
    unsafe {
        asm!(
            "push {{r6, r7}}",
            "sub sp, #8",
            "ldr r6, [r4, #0]",
            "str r6, [sp, #0]",
            "mov r12, r6",
            "ldr r6, [r4, #4]",
            "str r6, [sp, #4]",
            "ldr r6, [r4, #8]",
            "mov lr, r6",
            "movs r4, #0",
            "2:",
            "movs r6, #0",
            "mov r8, r6",
            "mov r9, r6",
            "mov r10, r6",
            "mov r11, r6",
            "3:",
            column!(),
            column!(),
            column!(),
            column!(),
            "cmp r4, r12",
            "bne 3b",
            "mov r7, lr",
            "mov r6, r8",
            "str r6, [r7, #0]",
            "mov r6, r9",
            "str r6, [r7, #4]",
            "mov r6, r10",
            "str r6, [r7, #8]",
            "mov r6, r11",
            "str r6, [r7, #12]",
            "adds r7, #16",
            "mov lr, r7",
            "ldr r6, [sp, #0]",
            "add r12, r6",
            "ldr r6, [sp, #4]",
            "cmp r4, r6",
            "bne 2b",
            "add sp, #8",
            "pop {{r6, r7}}",
            inout("r0") w.as_ptr() => _,
            inout("r1") w.as_ptr().wrapping_add(n) => _,
            inout("r2") w.as_ptr().wrapping_add(2 * n) => _,
            inout("r3") w.as_ptr().wrapping_add(3 * n) => _,
            inout("r4") params.as_ptr() => _,
            inout("r5") x.as_ptr() => _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("lr") _,
        );
    }
    groups
}
