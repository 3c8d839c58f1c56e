//! The integer step's int8 × int16 group dot products on ARMv7-M without the
//! DSP extension (Cortex-M3; also taken by the other soft-float `none-eabi`
//! Arm targets, see the gate below): [`dots4_i8_i16`], four weight rows at a
//! time, `ldrsb` + `mla` into accumulators held in registers, and
//! [`dots4_blocks_i8_i16`], the same loop over every four-row block of a
//! matrix whose rows are one group; [`scaled2`], two rows' group scales
//! applied to those dots with `smlal` into 64-bit sums held in registers;
//! and the attention's key dot products over the int8 cache
//! ([`key_dots_i16_i8`]: `ldrsh` + `ldrsb` + `mla`, four values a loop
//! step).
//!
//! # Why `unsafe`
//!
//! From safe Rust (`kernels_int`'s `dots4`: four rows × four columns a step)
//! LLVM runs out of registers on the M3 and spills the accumulators to the
//! stack, about 3.6 instructions per multiply-add. The loop below keeps four
//! accumulators, the input value and the pointers in the twelve registers the
//! `asm!` may use (r0–r5, r8–r12, lr; r6 and r7 are LLVM's base and frame
//! pointers) and reads each weight with one `ldrsb` (post-indexed or with
//! the row stride as a register offset, so no pointer arithmetic is left in
//! the loop): 9 instructions per 4 multiply-adds per column, 2.25 per
//! multiply-add, plus 2 loop instructions per four columns after a group's
//! first four and about 5 per group (2.39 per multiply-add in groups of 64,
//! 2.44 in groups of 4). A register allocation that tight cannot be asked of
//! safe Rust, only written in `asm!`, which is `unsafe`.
//!
//! (Loading a word of four int8 and widening them with `sxtb … ror #k` costs
//! 1.25 instructions a weight against one `ldrsb`; the ARMv7-M has no
//! two-lane multiply without the DSP extension, so a multiply-add cannot take
//! fewer than its `mla` and one instruction to get its weight.)
//!
//! # Bit-exactness
//!
//! Every product `w·x` (int8 × int16, |·| ≤ 2^22) and every sum is exact in
//! `i32` for groups of up to 2^8 values (`K ≤ 64`, checked), so
//! the sums are those of [`crate::num::kernels_int::dot_i8_i16`] whatever their
//! order.
//!
//! # Gate
//!
//! Compiled for `target_arch = "arm"`, `target_os = "none"`, little-endian,
//! soft-float ABI (`target_abi = "eabi"`: the hard-float targets take
//! `kernels_m4`), with 32-bit atomics, which ARMv6-M (`thumbv6m-none-eabi`)
//! lacks. Stable `rustc` sets no Arm `target_feature` cfg (`thumb2`, `v7`
//! are unstable and never appear in `--print cfg`), so this is the closest
//! stable gate to "ARMv7-M": it also admits `thumbv7em-none-eabi` and
//! `thumbv8m.main-none-eabi` (same instructions, same meaning) and, untested,
//! the Armv7-A/R and Armv6 `none-eabi` targets (every instruction used here
//! exists in their Arm and Thumb-2 sets) and `thumbv8m.base-none-eabi` and
//! `thumbv6-none-eabi`, whose Thumb has no `mla`: there the assembler
//! refuses the module, a build error rather than wrong code. Built and run:
//! `thumbv7m-none-eabi` (Cortex-M3 under QEMU).
#![allow(unsafe_code)]

use core::arch::asm;

/// One column of the four rows: the input value into r12 (`ldrsh`,
/// post-indexed), each row's weight into lr (`ldrsb`; rows 1 and 3 at the
/// register offset `n` from rows 0 and 2, whose pointers then advance by
/// one), and one `$op` per row into r8–r11: `mla` adds the product to the
/// row's sum, `mul` (a group's first column) starts it.
macro_rules! column {
    (mla) => {
        column!(
            "mla r9, lr, r12, r9\n",
            "mla r11, lr, r12, r11\n",
            "mla r10, lr, r12, r10\n",
            "mla r8, lr, r12, r8\n"
        )
    };
    (mul) => {
        column!(
            "mul r9, lr, r12\n",
            "mul r11, lr, r12\n",
            "mul r10, lr, r12\n",
            "mul r8, lr, r12\n"
        )
    };
    ($r1:expr, $r3:expr, $r2:expr, $r0:expr) => {
        concat!(
            "ldrsh r12, [r0], #2\n",
            "ldrsb lr, [r1, r3]\n",
            $r1,
            "ldrsb lr, [r2, r3]\n",
            $r3,
            "ldrsb lr, [r2], #1\n",
            $r2,
            "ldrsb lr, [r1], #1\n",
            $r0,
        )
    };
}

/// A group's first four columns: its sums started by `mul`.
macro_rules! first_step {
    () => {
        concat!(column!(mul), column!(mla), column!(mla), column!(mla))
    };
}

/// Four more columns.
macro_rules! step {
    () => {
        concat!(column!(mla), column!(mla), column!(mla), column!(mla))
    };
}

/// A group's columns after its first four, for `K > 1`: four-column steps
/// counted in the top byte of r4 (the steps left, less one; the borrow of
/// the last `subs` ends the group, leaving the top byte at 0xff).
macro_rules! rest_of_group {
    () => {
        concat!("3:\n", step!(), "subs r4, r4, #0x1000000\n", "bcs 3b\n",)
    };
}

/// After a block of rows of one group: its four sums stored (`stmia`, r5
/// advancing), r1 (at row 1 after the columns) moved on `3n` to the next
/// block's row 0, r2 to its row 2, `x` (r0) back `2n` bytes to its start.
macro_rules! next_block {
    () => {
        concat!(
            "stmia r5!, {{r8, r9, r10, r11}}\n",
            "add r1, r1, r3, lsl #1\n",
            "add r1, r1, r3\n",
            "add r2, r1, r3, lsl #1\n",
            "sub r0, r0, r3, lsl #1\n",
        )
    };
}

/// `v >> s` as Arm's register-specified shift computes it: the amount is the
/// low byte of `s`, and amounts of 32 to 255 give 0 (Rust's `>>` takes the
/// amount modulo 32, or panics in a debug build). The Q8 product aligns a
/// group's scale mantissa with it in one instruction: a mantissa shifted 32
/// places or more is the 0 the portable formula gives (see
/// `kernels_int`'s `scaled`).
#[inline(always)]
pub fn lsr_reg(v: u32, s: u32) -> u32 {
    let r: u32;
    // SAFETY: one register shift; no memory, no stack, the flags kept (the
    // unified-syntax `lsr` without `s` does not set them).
    unsafe {
        asm!(
            "lsr {r}, {v}, {s}",
            r = lateout(reg) r,
            v = in(reg) v,
            s = in(reg) s,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    r
}

/// `asm!` with the kernel's operands: `x` in r0, the rows 0 and 2 in r1 and
/// r2, the stride in r3, the counter in r4, the output in r5 (copies,
/// discarded); the sums in r8–r11, r12 and lr scratch; no stack.
macro_rules! dots4_asm {
    ($x:expr, $w:expr, $n:expr, $count:expr, $out:expr; $($template:tt)*) => {
        asm!(
            $($template)*
            inout("r0") $x.as_ptr() => _,
            inout("r1") $w.as_ptr() => _,
            inout("r2") $w.as_ptr().wrapping_add(2 * $n) => _,
            inout("r3") $n => _,
            inout("r4") $count => _,
            inout("r5") $out.as_mut_ptr() => _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("lr") _,
            options(nostack),
        )
    };
}

/// The integer step's group dot products on ARMv7-M (Cortex-M3): for four
/// int8 weight rows (row `r` is `w[r·n..]`: a row stride of `n` values) and
/// an int16 input `x`, all cut into groups of `4·K` values,
/// `out[g][r] = Σ w[r·n + g·4K + k] · x[g·4K + k]` over `k < 4K`, exact in
/// `i32`: bit-identical to [`crate::num::kernels_int::dot_i8_i16`] group by
/// group (integer sums do not depend on their order).
///
/// Per column: one `ldrsh` of `x`, per row one `ldrsb` and one `mla` (`mul`
/// in a group's first column): 9 instructions per 4 multiply-adds. Per group
/// besides: one `stmia` of the four sums and the loops' counting, `subs`,
/// `bne` for groups of four (`K = 1`), and for longer groups `subs`, `bcs`
/// per four columns after the first four and `sub`, `lsls`, `add`, `bne`.
///
/// Returns the number of groups computed: the most that `out`, `x` and the
/// fourth row (`w.len() − 3n`) hold; 0 when `K` is 0 or above 64 (groups of
/// more than 256 could overflow `i32`), or the
/// stride would leave the slice.
#[inline(always)]
pub fn dots4_i8_i16<const K: usize>(w: &[i8], n: usize, x: &[i16], out: &mut [[i32; 4]]) -> usize {
    let g = 4 * K;
    if K == 0 || K > 64 {
        return 0;
    }
    let Some(last) = n.checked_mul(3).and_then(|o| w.len().checked_sub(o)) else {
        return 0;
    };
    let groups = out.len().min(x.len() / g).min(last / g);
    // The counter: the groups left in its low 24 bits, for `K > 1` the
    // four-column steps left of the group, less one, in its top byte.
    if groups == 0 || groups >= 1 << 24 {
        return 0;
    }
    // SAFETY: for `r < 4` row `r` is read at `w[r·n .. r·n + groups·4K]`, inside
    // `w` because `3n + groups·4K ≤ w.len()` (checked above); `x` is read at
    // `x[.. groups·4K]` (`groups·4K ≤ x.len()`), in halfwords (`ldrsh`, at the
    // 2-byte alignment of `i16`); the weights in bytes (`ldrsb`, no alignment).
    // The loops run exactly `groups` groups of `K` steps of four columns, each
    // column advancing r0 by 2 bytes and r1, r2 by 1 (r2 starts `2n` after r1,
    // r3 holds `n`: the pointers of rows 1 and 3 are r1 + r3 and r2 + r3).
    // `out` is an exclusive slice of at least `groups` `[i32; 4]` (4-byte
    // aligned): the assembly stores one `[i32; 4]` per group there (`stmia`,
    // advancing r5 by 16) and writes no other memory. Every register it
    // touches is an operand (r6 and r7 untouched); the flags are clobbered
    // (no `preserves_flags`); no stack.
    unsafe {
        if K == 1 {
            dots4_asm!(x, w, n, groups, out;
                "2:",
                first_step!(),
                "stmia r5!, {{r8, r9, r10, r11}}",
                "subs r4, r4, #1",
                "bne 2b",
            );
        } else {
            dots4_asm!(x, w, n, groups | ((K - 2) << 24), out;
                "2:",
                first_step!(),
                rest_of_group!(),
                "stmia r5!, {{r8, r9, r10, r11}}",
                // One group fewer (Z: none left); the top byte back to K − 2.
                "sub r4, r4, #1",
                "lsls r12, r4, #8",
                "add r4, r4, #{rewind}",
                "bne 2b",
                rewind = const (K - 1) << 24,
            );
        }
    }
    groups
}

/// Rows of one group (`n = 4·K` values each, a small model's usual product):
/// `out[r] = Σ_k w[r·n + k]·x[k]` for every row `r` of four-row blocks,
/// exact in `i32`, bit-identical to
/// [`crate::num::kernels_int::dot_i8_i16`] row by row.
///
/// The loop of [`dots4_i8_i16`] with the row blocks inside the assembly: after
/// a block's four sums are stored (`stmia`), the pointers move to the next
/// block in four instructions (rows 0 and 2 from the end of row 0, `x` back to
/// its start), where a call per block cost about 35.
///
/// Returns the number of rows computed, a multiple of four: the most that
/// `out` and `w` hold; 0 when `K` is 0 or above 64, or `x` is shorter than a
/// row.
#[inline(always)]
pub fn dots4_blocks_i8_i16<const K: usize>(w: &[i8], x: &[i16], out: &mut [i32]) -> usize {
    let n = 4 * K;
    if K == 0 || K > 64 || x.len() < n {
        return 0;
    }
    let blocks = (out.len() / 4).min(w.len() / (4 * n));
    if blocks == 0 || blocks >= 1 << 24 {
        return 0;
    }
    // SAFETY: block `b < blocks`, row `r < 4` is read at
    // `w[(4b + r)·n ..][..n]`, inside `w` because `4n·blocks ≤ w.len()`
    // (checked above), in bytes (`ldrsb`, no alignment); `x` at `x[..n]`
    // (`n ≤ x.len()`) in halfwords (`ldrsh`, the 2-byte alignment of `i16`),
    // once per block: r0 moves back `2n` bytes after each. Within a block the
    // column loop is [`dots4_i8_i16`]'s for one group (r1 row 0, r2 row 2,
    // r3 = n the offset of rows 1 and 3); after it r1 is at row 1, so
    // `r1 + 3n` is the next block's row 0 and `+ 2n` its row 2. `out` is an
    // exclusive slice of at least `4·blocks` `i32` (4-byte aligned): the
    // assembly stores four words per block there (`stmia`, advancing r5) and
    // writes no other memory. Every register it touches is an operand (r6
    // and r7 untouched); the flags are clobbered; no stack.
    unsafe {
        if K == 1 {
            dots4_asm!(x, w, n, blocks, out;
                "2:",
                first_step!(),
                next_block!(),
                "subs r4, r4, #1",
                "bne 2b",
            );
        } else if K == 16 {
            // Rows of 64 (llama2.c's default group, and a 64-wide model's
            // every square product): the column loop unrolled, no counting.
            dots4_asm!(x, w, n, blocks, out;
                "2:",
                first_step!(),
                step!(), step!(), step!(), step!(), step!(),
                step!(), step!(), step!(), step!(), step!(),
                step!(), step!(), step!(), step!(), step!(),
                next_block!(),
                "subs r4, r4, #1",
                "bne 2b",
            );
        } else {
            dots4_asm!(x, w, n, blocks | ((K - 2) << 24), out;
                "2:",
                first_step!(),
                rest_of_group!(),
                next_block!(),
                "sub r4, r4, #1",
                "lsls r12, r4, #8",
                "add r4, r4, #{rewind}",
                "bne 2b",
                rewind = const (K - 1) << 24,
            );
        }
    }
    4 * blocks
}

/// Two rows' group scales applied to their group dot products:
/// `acc[i] + Σ_g dots[g][lane + i] · (m_i[g] · xm[g])` for `i` in 0, 1
/// (`m_0 = ma`, `m_1 = mb`), the products `m·xm` wrapping in `i32` and the
/// sums exact in `i64`: what the Q8 block product computes in Rust after
/// [`dots4_i8_i16`] (`kernels_block`'s `scaled`), bit for bit.
///
/// Per group: one `ldr` of `xm`, one `ldrh` and one `mul` per row, the two
/// dots by `ldr`, two `smlal`, and the loop's `subs`, `bne`: 11 instructions
/// for two rows, where the compiled loops take 16 to 18 (their 64-bit sums
/// kept in memory).
///
/// `None` (nothing done) when `lane` is above 2 or `ma`, `mb` or `xm` is
/// shorter than `dots`.
#[inline(always)]
pub fn scaled2(
    dots: &[[i32; 4]],
    lane: usize,
    ma: &[u16],
    mb: &[u16],
    xm: &[i32],
    acc: [i64; 2],
) -> Option<[i64; 2]> {
    let n = dots.len();
    if lane > 2 || ma.len() < n || mb.len() < n || xm.len() < n {
        return None;
    }
    if n == 0 {
        return Some(acc);
    }
    let [a, b] = acc;
    let (mut alo, mut ahi, mut blo, mut bhi) =
        (a as u32, (a >> 32) as u32, b as u32, (b >> 32) as u32);
    // SAFETY: for `g < n`, the assembly reads `dots[g][lane]` and
    // `dots[g][lane + 1]` (r0 starts at `dots[0][lane]`, `lane + 1 ≤ 3`, and
    // advances 16 bytes a group), `xm[g]` (r1, 4 bytes a group), `ma[g]` (r2,
    // 2 bytes a group) and `mb[g]` (at r2 + r3, r3 the distance from `ma` to
    // `mb` in bytes, wrapping): all inside their slices, which hold at least
    // `n` elements (checked above), at their types' alignment. It writes no
    // memory. Every register it touches is an operand (r6 and r7 untouched);
    // the flags are clobbered; no stack. `n ≥ 1`, so the count-down loop
    // ends after `n` groups.
    unsafe {
        asm!(
            "2:",
            "ldr r11, [r1], #4",
            "ldrh r12, [r2, r3]",
            "ldrh lr, [r2], #2",
            "mul lr, lr, r11",
            "mul r12, r12, r11",
            "ldr r11, [r0, #4]",
            "smlal r9, r10, r11, r12",
            "ldr r11, [r0], #16",
            "smlal r5, r8, r11, lr",
            "subs r4, r4, #1",
            "bne 2b",
            inout("r0") dots.as_ptr().cast::<i32>().wrapping_add(lane) => _,
            inout("r1") xm.as_ptr() => _,
            inout("r2") ma.as_ptr() => _,
            in("r3") (mb.as_ptr() as usize).wrapping_sub(ma.as_ptr() as usize),
            inout("r4") n => _,
            inout("r5") alo,
            inout("r8") ahi,
            inout("r9") blo,
            inout("r10") bhi,
            out("r11") _,
            out("r12") _,
            out("lr") _,
            options(nostack, readonly),
        );
    }
    let join = |lo: u32, hi: u32| ((u64::from(hi) << 32) | u64::from(lo)) as i64;
    Some([join(alo, ahi), join(blo, bhi)])
}

/// The attention's key dot products on ARMv7-M: for key `j < out.len()`,
/// `out[j] = Σ_i q[i]·keys[j·stride + offset + i]` over the `q.len()` values of
/// an `i16` query head and an int8 key head, wrapping in `i32`: bit-identical
/// to [`crate::num::kernels_int::dot_i16_i8`] (a wrapping sum does not depend
/// on its order).
///
/// Per four values: `ldrsh`, `ldrsb`, `mla` each and the loop's `subs`,
/// `bne` (3.5 instructions a multiply-add against 6 for the compiled loop);
/// per key the pointers' reset and one `str`.
///
/// `false` (nothing done) unless `q.len()` is a non-zero multiple of 4 below
/// 2^16 and the keys hold every head read.
#[inline(always)]
pub fn key_dots_i16_i8(
    q: &[i16],
    keys: &[i8],
    stride: usize,
    offset: usize,
    out: &mut [i32],
) -> bool {
    let hd = q.len();
    let n = out.len();
    if hd == 0 || hd % 4 != 0 || hd >= 1 << 16 {
        return false;
    }
    if n == 0 {
        return true;
    }
    let last = (n - 1)
        .checked_mul(stride)
        .and_then(|v| v.checked_add(offset))
        .and_then(|v| v.checked_add(hd));
    if last.is_none_or(|l| l > keys.len()) {
        return false;
    }
    let out_end = out.as_mut_ptr().wrapping_add(n);
    // SAFETY: key `j < n` is read at `keys[j·stride + offset ..][..hd]`, inside
    // `keys` because `(n − 1)·stride + offset + hd ≤ keys.len()` (checked
    // above), in bytes (`ldrsb`); `q` at `q[..hd]` in halfwords (`ldrsh`, the
    // 2-byte alignment of `i16`), once per key. The inner loop runs `hd / 4`
    // steps of four values; the outer one stores one word per key at `out[j]`
    // (an exclusive slice of `n` `i32`, advancing r3 to `out_end`) and writes
    // no other memory. Every register it touches is an operand (r6 and r7
    // untouched); the flags are clobbered; no stack.
    unsafe {
        asm!(
            "2:",
            "mov r9, r0",
            "mov r10, r1",
            "mov r11, r5",
            "movs r8, #0",
            "3:",
            "ldrsh r12, [r9], #2",
            "ldrsb lr, [r10], #1",
            "mla r8, r12, lr, r8",
            "ldrsh r12, [r9], #2",
            "ldrsb lr, [r10], #1",
            "mla r8, r12, lr, r8",
            "ldrsh r12, [r9], #2",
            "ldrsb lr, [r10], #1",
            "mla r8, r12, lr, r8",
            "ldrsh r12, [r9], #2",
            "ldrsb lr, [r10], #1",
            "mla r8, r12, lr, r8",
            "subs r11, r11, #1",
            "bne 3b",
            "str r8, [r3], #4",
            "add r1, r1, r2",
            "cmp r3, r4",
            "bne 2b",
            in("r0") q.as_ptr(),
            inout("r1") keys.as_ptr().wrapping_add(offset) => _,
            in("r2") stride,
            inout("r3") out.as_mut_ptr() => _,
            in("r4") out_end,
            in("r5") hd / 4,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("lr") _,
            options(nostack),
        );
    }
    true
}
