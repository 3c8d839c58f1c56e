//! The matrix-vector inner kernels in Cortex-M4F / M33 inline assembly:
//! four rows × eight columns per step with `vldm` block loads and `vmla.f32`,
//! for f32 weights ([`dot4x8`]) and for binary16 weights ([`dot4x8_f16`],
//! widened with `vcvtb`/`vcvtt.f32.f16`); and the integer step's int8 × int16
//! group dot products on the DSP extension ([`dots2_i8_i16`]: `sxtb16`,
//! `smlad`), whose `unsafe` contract is stated at its call; and the f32
//! attention's score and value-mix loops for two query heads of width 8
//! ([`scores2_8`], [`mix2_8`]: one `vldmia` per key or value row), and the
//! integer step's attention over its int8 cache ([`dots_i8x8`]: `sxtb16` +
//! `smlad`; [`mix_i8x4`]: `sxtb` + `mla` into accumulators in registers).
//!
//! # Why `unsafe`
//!
//! From safe Rust, LLVM loads every weight with its own `vldr` (its register
//! allocator hands out non-consecutive S registers, so the load/store optimiser
//! never forms a `vldm`), so every weight costs a load of its own besides its
//! multiply-add. There is no way to ask for `vldm` into consecutive registers
//! without `asm!`, which is `unsafe`. Here one `vldmia` loads eight weights (or
//! eight `x` values) and every multiply-add is one `vmla.f32`: 5 loads + 32
//! multiply-adds per 32 multiply-adds, and 2 loop instructions per two blocks
//! (the README's benchmark section has the counts).
//!
//! # Bit-exactness
//!
//! `vmla.f32 Sd, Sn, Sm` (VFPv4 / FPv5, *not* `vfma`) rounds the product and
//! then the sum, exactly like Rust's separate `*` and `+`, and each row's
//! accumulator takes its products in column order `0, 1, 2, …`: the same bits
//! as [`crate::num::kernels::dot8`] applied block after block (and as `run.c`'s
//! sequential sums).
//!
//! # What the assembly reads and clobbers
//!
//! It reads `8·m` consecutive `f32` from `x` and from each of the four rows,
//! where `m` is the smallest of the five slice lengths (in `[f32; 8]` blocks),
//! computed in safe code before the call; nothing is read when `m == 0` (the
//! assembly is not entered). It loads the four accumulators from `a` into
//! S24–S27 and stores them back there (the only memory it writes: an exclusive
//! `&mut [f32; 4]`); it does not touch the stack. Clobbered: S0–S27 (the
//! loaded values and the accumulators), the five pointer registers and the
//! counter (copies, discarded), and the condition flags (`subs`). The
//! accumulators go through memory because `asm!` operands of the `sreg` class
//! need LLVM's `vfp2` feature, which implies double precision and is not
//! enabled on these single-precision FPUs (clobbers are allowed).
//!
//! Compiled only for hard-float Arm (`target_abi = "eabihf"`: thumbv7em-none-eabihf,
//! FPv4-SP; thumbv8m.main-none-eabihf, FPv5-SP). Stable `rustc` sets no Arm
//! `target_feature` cfg (`vfp4d16sp`, `fp-armv8d16sp` are unstable names and never
//! appear in `--print cfg`), so the hard-float ABI is the gate: it implies the
//! single-precision VFP register file and `vmla.f32`.
#![allow(unsafe_code)]

use core::arch::asm;

/// `asm!` with the operands both kernels share: the accumulators' address
/// `pa`, the pointers `x`, `p0`–`p3` and the block counter `n` (copies,
/// discarded), S0–S27 clobbered, no stack. The template comes first.
macro_rules! dot4_asm {
    ($a:expr, $x:expr, $rows:expr, $m:expr; $($template:tt)*) => {
        asm!(
            $($template)*
            pa = in(reg) $a.as_mut_ptr(),
            x = inout(reg) $x.as_ptr() => _,
            p0 = inout(reg) $rows[0].as_ptr() => _,
            p1 = inout(reg) $rows[1].as_ptr() => _,
            p2 = inout(reg) $rows[2].as_ptr() => _,
            p3 = inout(reg) $rows[3].as_ptr() => _,
            n = inout(reg) $m => _,
            out("s0") _, out("s1") _, out("s2") _, out("s3") _,
            out("s4") _, out("s5") _, out("s6") _, out("s7") _,
            out("s8") _, out("s9") _, out("s10") _, out("s11") _,
            out("s12") _, out("s13") _, out("s14") _, out("s15") _,
            out("s16") _, out("s17") _, out("s18") _, out("s19") _,
            out("s20") _, out("s21") _, out("s22") _, out("s23") _,
            out("s24") _, out("s25") _, out("s26") _, out("s27") _,
            options(nostack),
        )
    };
}

/// One block: eight columns of the four rows, each row's products added in
/// column order (`x` in S0–S7, two rows at a time in S8–S15 and S16–S23).
macro_rules! block {
    () => {
        concat!(
            "vldmia {x}!, {{s0-s7}}\n",
            "vldmia {p0}!, {{s8-s15}}\n",
            "vldmia {p1}!, {{s16-s23}}\n",
            "vmla.f32 s24, s8, s0\n",
            "vmla.f32 s25, s16, s0\n",
            "vmla.f32 s24, s9, s1\n",
            "vmla.f32 s25, s17, s1\n",
            "vmla.f32 s24, s10, s2\n",
            "vmla.f32 s25, s18, s2\n",
            "vmla.f32 s24, s11, s3\n",
            "vmla.f32 s25, s19, s3\n",
            "vmla.f32 s24, s12, s4\n",
            "vmla.f32 s25, s20, s4\n",
            "vmla.f32 s24, s13, s5\n",
            "vmla.f32 s25, s21, s5\n",
            "vmla.f32 s24, s14, s6\n",
            "vmla.f32 s25, s22, s6\n",
            "vmla.f32 s24, s15, s7\n",
            "vmla.f32 s25, s23, s7\n",
            "vldmia {p2}!, {{s8-s15}}\n",
            "vldmia {p3}!, {{s16-s23}}\n",
            "vmla.f32 s26, s8, s0\n",
            "vmla.f32 s27, s16, s0\n",
            "vmla.f32 s26, s9, s1\n",
            "vmla.f32 s27, s17, s1\n",
            "vmla.f32 s26, s10, s2\n",
            "vmla.f32 s27, s18, s2\n",
            "vmla.f32 s26, s11, s3\n",
            "vmla.f32 s27, s19, s3\n",
            "vmla.f32 s26, s12, s4\n",
            "vmla.f32 s27, s20, s4\n",
            "vmla.f32 s26, s13, s5\n",
            "vmla.f32 s27, s21, s5\n",
            "vmla.f32 s26, s14, s6\n",
            "vmla.f32 s27, s22, s6\n",
            "vmla.f32 s26, s15, s7\n",
            "vmla.f32 s27, s23, s7\n",
        )
    };
}

/// `a[i] = a[i] + Σ_c dot(rows[i][c], x[c])` over the first `m` blocks
/// (`m` = the shortest of the five slices), each row summed in column order:
/// bit-identical to `a[i] = dot8(a[i], &rows[i][c], &x[c])` for `c` in `0..m`.
#[inline(always)]
pub fn dot4x8(a: &mut [f32; 4], x: &[[f32; 8]], rows: [&[[f32; 8]]; 4]) {
    // Written out: an iterator (`rows.iter().fold(..)`) here costs more
    // instructions per token on the M4F (the README's benchmark section).
    let m = x
        .len()
        .min(rows[0].len())
        .min(rows[1].len())
        .min(rows[2].len())
        .min(rows[3].len());
    if m == 0 {
        return;
    }
    // SAFETY: every pointer covers at least `m` blocks of eight f32 (checked
    // above, `m >= 1`), f32 slices are 4-byte aligned as `vldm` needs, and the
    // assembly runs exactly `m` blocks (`m mod 2`, then `m div 2` pairs), each
    // advancing every pointer by one block.
    // `a` is a valid, exclusive `[f32; 4]`: the only memory the assembly writes.
    // It clobbers only the registers listed.
    unsafe {
        dot4_asm!(a, x, rows, m;
            "vldmia {pa}, {{s24-s27}}",
            // An odd block first, alone.
            "tst {n}, #1",
            "beq 3f",
            block!(),
            // Then pairs of blocks: one counter step per sixteen columns.
            "3:",
            "lsrs {n}, {n}, #1",
            "beq 4f",
            "2:",
            block!(),
            block!(),
            "subs {n}, {n}, #1",
            "bne 2b",
            "4:",
            "vstmia {pa}, {{s24-s27}}",
        );
    }
}

/// One row of one f16 block: its eight binary16 weights (four words) loaded
/// into S8–S11, widened into S16–S23 (`vcvtb`: the low half of a word, the
/// lower-indexed weight on little-endian Arm; `vcvtt`: the high half), then
/// multiplied and added in column order into the accumulator `$acc`.
macro_rules! row_f16 {
    ($p:literal, $acc:literal) => {
        concat!(
            "vldmia {",
            $p,
            "}!, {{s8-s11}}\n",
            "vcvtb.f32.f16 s16, s8\n",
            "vcvtt.f32.f16 s17, s8\n",
            "vcvtb.f32.f16 s18, s9\n",
            "vcvtt.f32.f16 s19, s9\n",
            "vcvtb.f32.f16 s20, s10\n",
            "vcvtt.f32.f16 s21, s10\n",
            "vcvtb.f32.f16 s22, s11\n",
            "vcvtt.f32.f16 s23, s11\n",
            "vmla.f32 ",
            $acc,
            ", s16, s0\n",
            "vmla.f32 ",
            $acc,
            ", s17, s1\n",
            "vmla.f32 ",
            $acc,
            ", s18, s2\n",
            "vmla.f32 ",
            $acc,
            ", s19, s3\n",
            "vmla.f32 ",
            $acc,
            ", s20, s4\n",
            "vmla.f32 ",
            $acc,
            ", s21, s5\n",
            "vmla.f32 ",
            $acc,
            ", s22, s6\n",
            "vmla.f32 ",
            $acc,
            ", s23, s7\n",
        )
    };
}

/// [`dot4x8`] for binary16 weights: `a[i] += Σ_c dot(widen(rows[i][c]), x[c])`
/// over the first `m` blocks (`m` = the shortest of the five slices), each row
/// summed in column order. `vcvtb`/`vcvtt.f32.f16` (IEEE half, `FPSCR.AHP` = 0
/// as after reset; subnormals widened exactly with `FPSCR.FZ` = 0, the reset
/// value) widen exactly, as [`crate::num::fp16::to_f32_finite`] does, so the
/// result is bit-identical to the portable loop. Per block: 5 loads, 32 widenings,
/// 32 multiply-adds.
///
/// Every row must start 4-byte aligned (`vldm` faults otherwise): the caller
/// checks it (see `weights::matvec_f16`) and uses the portable loop when not.
#[inline(always)]
pub fn dot4x8_f16(a: &mut [f32; 4], x: &[[f32; 8]], rows: [&[[u16; 8]]; 4]) {
    // Written out: an iterator (`rows.iter().fold(..)`) here costs more
    // instructions per token on the M4F (the README's benchmark section).
    let m = x
        .len()
        .min(rows[0].len())
        .min(rows[1].len())
        .min(rows[2].len())
        .min(rows[3].len());
    if m == 0 || rows.iter().any(|r| r.as_ptr().align_offset(4) != 0) {
        return;
    }
    // SAFETY: every pointer covers at least `m` blocks (eight f32 for `x`,
    // eight u16 = four words for a row; checked above, `m >= 1`); `x` is 4-byte
    // aligned as an f32 slice and every row was checked to be. The assembly
    // runs exactly `m` blocks, each advancing every pointer by one block. `a` is
    // a valid, exclusive `[f32; 4]`: the only memory the assembly writes. It
    // clobbers only the registers listed (S0–S27; S12–S15 unused) and the flags.
    unsafe {
        dot4_asm!(a, x, rows, m;
            "vldmia {pa}, {{s24-s27}}",
            "2:",
            "vldmia {x}!, {{s0-s7}}",
            row_f16!("p0", "s24"),
            row_f16!("p1", "s25"),
            row_f16!("p2", "s26"),
            row_f16!("p3", "s27"),
            "subs {n}, {n}, #1",
            "bne 2b",
            "vstmia {pa}, {{s24-s27}}",
        );
    }
}

/// The integer step's group dot products on the DSP extension (Cortex-M4 and
/// M33): for two int8 weight rows `r0`, `r1` and an int16 input `x`, all cut
/// into groups of `4·K` values, `out[g] = [Σ r0[g]·x[g], Σ r1[g]·x[g]]` exact
/// in `i32`, bit-identical to [`crate::num::kernels_int::dot_i8_i16`] group by
/// group (integer sums do not depend on their order).
///
/// Per four columns: two `ldr` of `x` (four int16) rearranged into the lane
/// pairs `(x0, x2)`, `(x1, x3)` by `pkhbt`/`pkhtb`; per row one `ldr` of four
/// int8 weights, `sxtb16` and `sxtb16 … ror #8` into the pairs `(w0, w2)`,
/// `(w1, w3)`, and two `smlad` (two 16 × 16 multiply-adds each) — 17
/// instructions per eight multiply-adds with the loop, CMSIS-NN's
/// `arm_nn_vec_mat_mult_t_s8` treatment without its offline reordering.
///
/// Returns the number of groups computed: `min(out.len(), r0/r1/x groups)`.
#[inline(always)]
pub fn dots2_i8_i16<const K: usize>(
    r0: &[i8],
    r1: &[i8],
    x: &[i16],
    out: &mut [[i32; 2]],
) -> usize {
    let g = 4 * K;
    let groups = out
        .len()
        .min(r0.len() / g)
        .min(r1.len() / g)
        .min(x.len() / g);
    if groups == 0 || K == 0 {
        return 0;
    }
    // SAFETY: `x` covers `groups·4K` int16 and each row `groups·4K` int8
    // (checked above), read with `ldr` in words (unaligned word loads are
    // allowed on ARMv7-M/ARMv8-M Mainline with `CCR.UNALIGN_TRP` clear, the
    // reset value); the loops run exactly `groups` groups of `K` steps, each
    // step advancing `x` by 8 bytes and each row by 4. `out` is an exclusive
    // slice of at least `groups` pairs: the assembly stores one pair per group
    // there and nothing else. Every register it touches is an operand; the
    // flags are clobbered (no `preserves_flags`); no stack.
    unsafe {
        // The DSP instructions are written as their encodings (`.inst.w`, the
        // registers fixed below): the assembler accepts them only for a CPU
        // with the DSP extension, which these targets do not name, and an
        // `.arch` directive would leak into the module's other assembly.
        asm!(
            "2:",
            "movs r8, #0",
            "movs r9, #0",
            "mov r5, #{kn}",
            "3:",
            "ldr r10, [r0], #4",
            "ldr r11, [r0], #4",
            ".inst.w 0xEACA4E0B", // pkhbt lr, r10, r11, lsl #16   (x0, x2)
            ".inst.w 0xEACB4B2A", // pkhtb r11, r11, r10, asr #16  (x1, x3)
            "ldr r10, [r1], #4",
            ".inst.w 0xFA2FFC8A", // sxtb16 r12, r10               (w0, w2)
            ".inst.w 0xFB2C880E", // smlad r8, r12, lr, r8
            ".inst.w 0xFA2FFC9A", // sxtb16 r12, r10, ror #8       (w1, w3)
            ".inst.w 0xFB2C880B", // smlad r8, r12, r11, r8
            "ldr r10, [r2], #4",
            ".inst.w 0xFA2FFC8A", // sxtb16 r12, r10
            ".inst.w 0xFB2C990E", // smlad r9, r12, lr, r9
            ".inst.w 0xFA2FFC9A", // sxtb16 r12, r10, ror #8
            ".inst.w 0xFB2C990B", // smlad r9, r12, r11, r9
            "subs r5, r5, #1",
            "bne 3b",
            "strd r8, r9, [r3], #8",
            "subs r4, r4, #1",
            "bne 2b",
            kn = const K,
            inout("r0") x.as_ptr() => _,
            inout("r1") r0.as_ptr() => _,
            inout("r2") r1.as_ptr() => _,
            inout("r3") out.as_mut_ptr() => _,
            inout("r4") groups => _,
            out("r5") _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("lr") _,
            options(nostack),
        );
    }
    groups
}

/// Four columns of the four-row kernels ([`dots4_rows_i8_i16`],
/// [`dots4_blocks_i8_i16`]): `x` paired once (r0, advancing), each row's
/// four weights (rows 1 and 2 at the register offsets `n` and `2·n` from row
/// 0 in r1, row 3 after one `add`; r1 advancing) in two `sxtb16` and two
/// `smlad` into r4, r5, r8, r3.
macro_rules! blocks_step {
    () => {
        concat!(
            "ldr r10, [r0], #4\n",
            "ldr r11, [r0], #4\n",
            ".inst.w 0xEACA4E0B\n", // pkhbt lr, r10, r11, lsl #16   (x0, x2)
            ".inst.w 0xEACB4B2A\n", // pkhtb r11, r11, r10, asr #16  (x1, x3)
            "ldr r10, [r1, r2]\n",  // row 1
            ".inst.w 0xFA2FFC8A\n", // sxtb16 r12, r10               (w0, w2)
            ".inst.w 0xFB2C440E\n", // smlad r4, r12, lr, r4
            ".inst.w 0xFA2FFC9A\n", // sxtb16 r12, r10, ror #8       (w1, w3)
            ".inst.w 0xFB2C440B\n", // smlad r4, r12, r11, r4
            "ldr r10, [r1, r2, lsl #1]\n", // row 2
            ".inst.w 0xFA2FFC8A\n", // sxtb16 r12, r10
            ".inst.w 0xFB2C550E\n", // smlad r5, r12, lr, r5
            ".inst.w 0xFA2FFC9A\n", // sxtb16 r12, r10, ror #8
            ".inst.w 0xFB2C550B\n", // smlad r5, r12, r11, r5
            "add r10, r1, r2, lsl #1\n",
            "ldr r10, [r10, r2]\n", // row 3
            ".inst.w 0xFA2FFC8A\n", // sxtb16 r12, r10
            ".inst.w 0xFB2C880E\n", // smlad r8, r12, lr, r8
            ".inst.w 0xFA2FFC9A\n", // sxtb16 r12, r10, ror #8
            ".inst.w 0xFB2C880B\n", // smlad r8, r12, r11, r8
            "ldr r10, [r1], #4\n",  // row 0
            ".inst.w 0xFA2FFC8A\n", // sxtb16 r12, r10
            ".inst.w 0xFB2C330E\n", // smlad r3, r12, lr, r3
            ".inst.w 0xFA2FFC9A\n", // sxtb16 r12, r10, ror #8
            ".inst.w 0xFB2C330B\n", // smlad r3, r12, r11, r3
        )
    };
}

/// Four int8 weight rows against one int16 input on the DSP extension (Cortex-M4
/// and M33), each row one dot product over all of `x`: row `r` is
/// `w[r·n .. (r + 1)·n]` with `n = x.len()`, and `out[r] = Σ_i w[r·n + i]·x[i]`
/// exact in `i32`, bit-identical to [`crate::num::kernels_int::dot_i8_i16`]
/// (integer sums do not depend on their order). The rows of a small model's
/// products are one Q8 group each: this is their kernel.
///
/// Per four columns: two `ldr` of `x` paired into `(x0, x2)`, `(x1, x3)` by
/// `pkhbt`/`pkhtb` once for the four rows; per row one `ldr` of four weights
/// (rows 1 and 2 by the register offsets `n` and `2·n`, row 3 after one
/// `add`), `sxtb16` and `sxtb16 … ror #8`, two `smlad`: 27 instructions per
/// sixteen multiply-adds with the loop, against 32 for two passes of
/// [`dots2_i8_i16`].
///
/// `None` (nothing done) unless `x.len()` is a non-zero multiple of 4 and `w`
/// holds the four rows.
#[inline(always)]
pub fn dots4_rows_i8_i16(w: &[i8], x: &[i16]) -> Option<[i32; 4]> {
    let n = x.len();
    if n == 0 || n % 4 != 0 || w.len() / 4 < n {
        return None;
    }
    let end = x.as_ptr().wrapping_add(n);
    let (a0, a1, a2, a3): (i32, i32, i32, i32);
    // SAFETY: the assembly reads the `n` int16 of `x` (two words per step, `x`
    // advancing to `end`, `n` a multiple of 4) and, per step, one word of each
    // of the four rows `w[r·n ..]` (`w.len() ≥ 4n`, checked above; the row
    // pointer advances 4 bytes a step, `n/4` steps; unaligned word loads are
    // allowed on ARMv7E-M/ARMv8-M Mainline with `CCR.UNALIGN_TRP` clear, the
    // reset value), and writes nothing in memory. Every register it touches is
    // an operand; the flags are clobbered; no stack.
    unsafe {
        asm!(
            "2:",
            blocks_step!(),
            "cmp r0, r9",
            "bne 2b",
            inout("r0") x.as_ptr() => _,
            inout("r1") w.as_ptr() => _,
            in("r2") n,
            inout("r3") 0i32 => a0,
            inout("r4") 0i32 => a1,
            inout("r5") 0i32 => a2,
            inout("r8") 0i32 => a3,
            in("r9") end,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("lr") _,
            options(nostack, readonly),
        );
    }
    Some([a0, a1, a2, a3])
}

/// [`dots4_blocks_i8_i16`]'s assembly around its column loop `$columns`:
/// the output pointer and its end kept in two stack words, and between
/// blocks the sums stored, `x` moved back, the rows moved on and the sums
/// cleared.
macro_rules! blocks_asm {
    ($x:expr, $w:expr, $n:expr, $end:expr, $out:expr, $out_end:expr; $($columns:tt)*) => {
        asm!(
            "sub sp, sp, #8",
            "strd r3, r4, [sp]",
            "2:",
            "movs r3, #0",
            "movs r4, #0",
            "movs r5, #0",
            "mov.w r8, #0",
            $($columns)*
            "ldr r12, [sp]",
            "stmia r12!, {{r3, r4, r5, r8}}",
            "str r12, [sp]",
            "sub r0, r0, r2, lsl #1",
            "add r1, r1, r2, lsl #1",
            "add r1, r1, r2",
            "ldr lr, [sp, #4]",
            "cmp r12, lr",
            "bne 2b",
            "add sp, sp, #8",
            inout("r0") $x.as_ptr() => _,
            inout("r1") $w.as_ptr() => _,
            in("r2") $n,
            inout("r3") $out.as_mut_ptr() => _,
            inout("r4") $out_end => _,
            out("r5") _,
            out("r8") _,
            in("r9") $end,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("lr") _,
        )
    };
}

/// [`dots4_rows_i8_i16`] over every four-row block of `w` (rows of
/// `n = 4·K` values, against `x[..n]`), the blocks inside the assembly: block `b`'s four
/// sums go to `out[4b .. 4b + 4]`, bit-identical to
/// [`crate::num::kernels_int::dot_i8_i16`] row by row. Between blocks the
/// loop stores the sums (`stmia` through the output pointer, kept with its end
/// in two stack words: the twelve registers hold the column loop), moves `x`
/// back and the rows on, and clears the sums: 13 instructions, where a call
/// per block and its Rust loop cost about 80. Rows of 64 (`K = 16`:
/// llama2.c's default group, and a 64-wide model's square products) have the
/// column loop unrolled (a `K` known at compile time: the other sizes do not
/// carry its code).
///
/// Returns the number of rows computed, a multiple of four: the most that
/// `out` and `w` hold; 0 when `K` is 0 or `x` is shorter than a row.
#[inline(always)]
pub fn dots4_blocks_i8_i16<const K: usize>(w: &[i8], x: &[i16], out: &mut [i32]) -> usize {
    let n = 4 * K;
    let Some(x) = x.get(..n) else {
        return 0;
    };
    if n == 0 {
        return 0;
    }
    let blocks = (out.len() / 4).min(w.len() / n / 4);
    if blocks == 0 {
        return 0;
    }
    let end = x.as_ptr().wrapping_add(n);
    let out_end = out.as_mut_ptr().wrapping_add(4 * blocks);
    // SAFETY: block `b < blocks` reads the `n` int16 of `x` (two words per
    // four columns, r0 advancing to `end`, then moved back `2n` bytes) and,
    // per four columns, one word of each row `w[(4b + r)·n ..]` for `r < 4`
    // (the row pointer advances 4 bytes a step, `n/4` steps, then `3n` to the
    // next block's row 0; `4n·blocks ≤ w.len()`, checked above; unaligned
    // word loads are allowed on ARMv7E-M/ARMv8-M Mainline with
    // `CCR.UNALIGN_TRP` clear, the reset value). It writes four words per
    // block at `out[4b ..]` (an exclusive slice of at least `4·blocks` `i32`,
    // `stmia` at their 4-byte alignment) and two words of its own below the
    // stack pointer, which it moves down 8 bytes (keeping its 8-byte
    // alignment) and restores. Every register it touches is an operand; the
    // flags are clobbered.
    unsafe {
        if K == 16 {
            blocks_asm!(x, w, n, end, out, out_end;
                blocks_step!(), blocks_step!(), blocks_step!(), blocks_step!(),
                blocks_step!(), blocks_step!(), blocks_step!(), blocks_step!(),
                blocks_step!(), blocks_step!(), blocks_step!(), blocks_step!(),
                blocks_step!(), blocks_step!(), blocks_step!(), blocks_step!(),
            );
        } else {
            blocks_asm!(x, w, n, end, out, out_end;
                "3:",
                blocks_step!(),
                "cmp r0, r9",
                "bne 3b",
            );
        }
    }
    4 * blocks
}

/// One row of the integer step's Q8 product in groups of four, the group
/// scales applied in the loop, on the DSP extension: with `mw[g]` the
/// weight scale `ws[g]`'s 15-bit mantissa aligned to the row's largest
/// exponent field `top` (`kernels_int::aligned_mantissa`),
///
/// ```text
/// acc = Σ_g dot(w[g], x[g]) · (mw[g] · xm[g])        i64 (wrapping)
/// ```
///
/// the integers of the portable loop. `t = 17 + top`, with `15 ≤ top ≤ 238`
/// (`None` otherwise, and when the lengths disagree): then the aligned
/// mantissa is one register shift, `((bits << 8) | 2^31) >> (t − e)` with
/// `e` the exponent field — a shift of 32 or more (`e = 0`, or 15 binades or
/// more below `top`) gives 0 on Arm (the amount's low byte, at most 255 in
/// that range), as the portable formula does. Per group: the dot product
/// (two `ldr` of `x` paired by `pkhbt`/`pkhtb`, one `ldr` of the weights,
/// two `sxtb16`, `smuad` + `smlad`), the scale (`ldr`, five ALU
/// instructions, `ldr` of `xm`, `mul`, `smlal`) and the loop: 20
/// instructions, against about 40 for the two-row kernel with the scales
/// applied in Rust (llama2.c's `w2` of width 172 is quantized in groups of 4).
#[inline(always)]
pub fn row_g4_i8_i16(w: &[i8], ws: &[f32], x: &[i16], xm: &[i32], t: u32) -> Option<i64> {
    let groups = ws.len();
    if groups == 0
        || xm.len() != groups
        || x.len() != 4 * groups
        || w.len() < 4 * groups
        || !(32..=255).contains(&t)
    {
        return None;
    }
    let end = x.as_ptr().wrapping_add(x.len());
    let (lo, hi): (u32, u32);
    // SAFETY: the assembly reads the `4·groups` int16 of `x` (two words a
    // group, `x` advancing to `end`), the first `4·groups` int8 of `w` (one
    // word a group; unaligned word loads are allowed on ARMv7E-M/ARMv8-M
    // Mainline with `CCR.UNALIGN_TRP` clear, the reset value), and the
    // `groups` words of `ws` and of `xm` (lengths checked above), and writes
    // nothing in memory. Every register it touches is an operand; the flags
    // are clobbered; no stack.
    unsafe {
        asm!(
            "2:",
            "ldr r10, [r0], #4",
            "ldr r11, [r0], #4",
            ".inst.w 0xEACA4E0B", // pkhbt lr, r10, r11, lsl #16   (x0, x2)
            ".inst.w 0xEACB4B2A", // pkhtb r11, r11, r10, asr #16  (x1, x3)
            "ldr r10, [r1], #4",
            ".inst.w 0xFA2FFC8A", // sxtb16 r12, r10               (w0, w2)
            ".inst.w 0xFB2CFE0E", // smuad lr, r12, lr
            ".inst.w 0xFA2FFC9A", // sxtb16 r12, r10, ror #8       (w1, w3)
            ".inst.w 0xFB2CEE0B", // smlad lr, r12, r11, lr        dot
            "ldr r10, [r2], #4",
            "lsl r11, r10, #1",
            "sub r11, r4, r11, lsr #24", // t − e
            "lsl r10, r10, #8",
            "orr r10, r10, #0x80000000",
            "lsr r10, r10, r11", // mw (0 from 32 on)
            "ldr r11, [r3], #4",
            "mul r10, r10, r11",
            "smlal r8, r9, lr, r10",
            "cmp r0, r5",
            "bne 2b",
            inout("r0") x.as_ptr() => _,
            inout("r1") w.as_ptr() => _,
            inout("r2") ws.as_ptr() => _,
            inout("r3") xm.as_ptr() => _,
            in("r4") t,
            in("r5") end,
            inout("r8") 0u32 => lo,
            inout("r9") 0u32 => hi,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("lr") _,
            options(nostack, readonly),
        );
    }
    Some(((u64::from(hi) << 32) | u64::from(lo)) as i64)
}

/// [`row_g4_i8_i16`] for weight scales already in block-float form (an
/// image's [`crate::image::BlockScales`]): `mw` holds the row's aligned
/// mantissas, so a group's scale is one `ldrh`, and
///
/// ```text
/// acc = Σ_g dot(w[g], x[g]) · (mw[g] · xm[g])        i64 (wrapping)
/// ```
///
/// exactly as there. Per group: the dot product (as there), `ldrh` of the
/// mantissa, `ldr` of `xm`, `mul`, `smlal` and the loop: 15 instructions.
/// `None` when the lengths disagree.
#[inline(always)]
pub fn row_g4_block(w: &[i8], mw: &[u16], x: &[i16], xm: &[i32]) -> Option<i64> {
    let groups = mw.len();
    if groups == 0 || xm.len() != groups || x.len() != 4 * groups || w.len() < 4 * groups {
        return None;
    }
    let end = x.as_ptr().wrapping_add(x.len());
    let (lo, hi): (u32, u32);
    // SAFETY: the assembly reads the `4·groups` int16 of `x` (two words a
    // group, `x` advancing to `end`), the first `4·groups` int8 of `w` (one
    // word a group; unaligned word loads are allowed on ARMv7E-M/ARMv8-M
    // Mainline with `CCR.UNALIGN_TRP` clear, the reset value), the `groups`
    // halfwords of `mw` and words of `xm` (lengths checked above), and writes
    // nothing in memory. Every register it touches is an operand; the flags
    // are clobbered; no stack.
    unsafe {
        asm!(
            "2:",
            "ldr r10, [r0], #4",
            "ldr r11, [r0], #4",
            ".inst.w 0xEACA4E0B", // pkhbt lr, r10, r11, lsl #16   (x0, x2)
            ".inst.w 0xEACB4B2A", // pkhtb r11, r11, r10, asr #16  (x1, x3)
            "ldr r10, [r1], #4",
            ".inst.w 0xFA2FFC8A", // sxtb16 r12, r10               (w0, w2)
            ".inst.w 0xFB2CFE0E", // smuad lr, r12, lr
            ".inst.w 0xFA2FFC9A", // sxtb16 r12, r10, ror #8       (w1, w3)
            ".inst.w 0xFB2CEE0B", // smlad lr, r12, r11, lr        dot
            "ldrh r10, [r2], #2", // mw
            "ldr r11, [r3], #4",
            "mul r10, r10, r11",
            "smlal r8, r9, lr, r10",
            "cmp r0, r5",
            "bne 2b",
            inout("r0") x.as_ptr() => _,
            inout("r1") w.as_ptr() => _,
            inout("r2") mw.as_ptr() => _,
            inout("r3") xm.as_ptr() => _,
            in("r5") end,
            inout("r8") 0u32 => lo,
            inout("r9") 0u32 => hi,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("lr") _,
            options(nostack, readonly),
        );
    }
    Some(((u64::from(hi) << 32) | u64::from(lo)) as i64)
}

/// Clobber list of the attention kernels: S0–S28.
macro_rules! attn_asm {
    ($($body:tt)*) => {
        asm!(
            $($body)*
            out("s0") _, out("s1") _, out("s2") _, out("s3") _,
            out("s4") _, out("s5") _, out("s6") _, out("s7") _,
            out("s8") _, out("s9") _, out("s10") _, out("s11") _,
            out("s12") _, out("s13") _, out("s14") _, out("s15") _,
            out("s16") _, out("s17") _, out("s18") _, out("s19") _,
            out("s20") _, out("s21") _, out("s22") _, out("s23") _,
            out("s24") _, out("s25") _, out("s26") _, out("s27") _,
            out("s28") _,
            options(nostack),
        )
    };
}

/// The number of rows a kernel over `rows` (blocks of eight, `stride` blocks
/// apart, the block `o` of each row read) may visit, at most `n`: `None` when
/// the layout is not one (zero stride, `o` outside a row).
#[inline(always)]
fn rows_within(rows: &[[f32; 8]], stride: usize, o: usize, n: usize) -> Option<usize> {
    if stride == 0 || o >= stride {
        return None;
    }
    Some(n.min(rows.len() / stride))
}

/// The attention's scores of two query heads of width 8 (grouped-query
/// heads sharing a kv head): for key `i`, `out[h][i] = dot8_first(q[h], k_i) ·
/// scale`, `k_i = rows[i·stride + o]`, and the largest score of each head
/// (`−∞` for none, a NaN never taken: `v > m` as `vcmp` + `it gt`).
/// Bit-identical to the portable loop (`attn::cache::dot_rows2`): products
/// summed in order from the first one (`vmul`, then `vmla`), then one `vmul`
/// by the scale. Per key: one `vldmia` of the key, 16 multiply-adds, two
/// scalings, two stores, the two maxima (4 instructions each).
///
/// Returns `None` (nothing done) for a layout [`rows_within`] refuses, or
/// output rows of different lengths; else the maxima, over the first
/// `min(out[0].len(), rows.len() / stride)` keys.
#[inline(always)]
pub fn scores2_8(
    q: [&[f32; 8]; 2],
    rows: &[[f32; 8]],
    stride: usize,
    o: usize,
    scale: f32,
    out: [&mut [f32]; 2],
) -> Option<[f32; 2]> {
    let [o0, o1] = out;
    if o0.len() != o1.len() {
        return None;
    }
    let n = rows_within(rows, stride, o, o0.len())?;
    // Scale and the two maxima, loaded into S26–S28 and stored back.
    let mut c = [scale, f32::NEG_INFINITY, f32::NEG_INFINITY];
    if n == 0 {
        return Some([c[1], c[2]]);
    }
    let first = rows.get(o)?;
    // SAFETY: the assembly reads 8 f32 from each of `q[0]`, `q[1]` (arrays),
    // 3 from `c` and writes them back (an exclusive local array), and for
    // `i` in `0..n` reads the block `rows[i·stride + o]` (in bounds:
    // `n ≤ rows.len() / stride` and `o < stride`, so `i·stride + o <
    // n·stride ≤ rows.len()`) and writes `o0[i]`, `o1[i]` (`n ≤ o0.len() =
    // o1.len()`, exclusive slices). `vldm` needs 4-byte alignment, which f32
    // data has. Clobbered: S0–S28, the pointer and counter copies, the flags.
    unsafe {
        attn_asm!(
            "vldmia {q0}, {{s0-s7}}",
            "vldmia {q1}, {{s8-s15}}",
            "vldmia {c}, {{s26-s28}}",
            "2:",
            "vldmia {k}, {{s16-s23}}",
            "add {k}, {k}, {step}",
            "vmul.f32 s24, s0, s16",
            "vmul.f32 s25, s8, s16",
            "vmla.f32 s24, s1, s17",
            "vmla.f32 s25, s9, s17",
            "vmla.f32 s24, s2, s18",
            "vmla.f32 s25, s10, s18",
            "vmla.f32 s24, s3, s19",
            "vmla.f32 s25, s11, s19",
            "vmla.f32 s24, s4, s20",
            "vmla.f32 s25, s12, s20",
            "vmla.f32 s24, s5, s21",
            "vmla.f32 s25, s13, s21",
            "vmla.f32 s24, s6, s22",
            "vmla.f32 s25, s14, s22",
            "vmla.f32 s24, s7, s23",
            "vmla.f32 s25, s15, s23",
            "vmul.f32 s24, s24, s26",
            "vmul.f32 s25, s25, s26",
            "vstmia {o0}!, {{s24}}",
            "vstmia {o1}!, {{s25}}",
            "vcmp.f32 s24, s27",
            "vmrs APSR_nzcv, fpscr",
            "it gt",
            "vmovgt.f32 s27, s24",
            "vcmp.f32 s25, s28",
            "vmrs APSR_nzcv, fpscr",
            "it gt",
            "vmovgt.f32 s28, s25",
            "subs {n}, {n}, #1",
            "bne 2b",
            "vstmia {c}, {{s26-s28}}",
            q0 = in(reg) q[0].as_ptr(),
            q1 = in(reg) q[1].as_ptr(),
            c = in(reg) c.as_mut_ptr(),
            k = inout(reg) first.as_ptr() => _,
            step = in(reg) stride * 32,
            o0 = inout(reg) o0.as_mut_ptr() => _,
            o1 = inout(reg) o1.as_mut_ptr() => _,
            n = inout(reg) n => _,
        );
    }
    Some([c[1], c[2]])
}

/// The attention's value mix of two query heads of width 8 over the same
/// value rows: `out[h] = Σ_i (w[h][i]·norm[h]) · v_i` accumulated in order of
/// `i` from `0.0` (`v_i = rows[i·stride + o]`), bit-identical to the portable
/// loop (`attn::cache::mix_rows2`, `kernels::axpy8` per row): each weight
/// scaled by one `vmul`, then one `vmla` per element. Per value row: two
/// weight loads and scalings, one `vldmia`, 16 multiply-adds.
///
/// Returns `false` (nothing written) for a layout [`rows_within`] refuses or
/// weight rows of different lengths; else sums the first
/// `min(w[0].len(), rows.len() / stride)` rows into `out`.
#[inline(always)]
pub fn mix2_8(
    w: [&[f32]; 2],
    norm: [f32; 2],
    rows: &[[f32; 8]],
    stride: usize,
    o: usize,
    out: [&mut [f32; 8]; 2],
) -> bool {
    if w[0].len() != w[1].len() {
        return false;
    }
    let Some(n) = rows_within(rows, stride, o, w[0].len()) else {
        return false;
    };
    let mut acc = [[0.0f32; 8]; 2];
    if n > 0 {
        let Some(first) = rows.get(o) else {
            return false;
        };
        // SAFETY: the assembly reads `n` f32 from each of `w[0]`, `w[1]`
        // (`n ≤ w[h].len()`), 2 from `norm`, and the blocks
        // `rows[i·stride + o]` for `i < n` (in bounds as in [`scores2_8`]); it
        // loads and stores the 16 accumulators of `acc` (an exclusive local
        // `[[f32; 8]; 2]`, 16 contiguous f32), nothing else. Clobbered: S0–S28, the pointer and counter
        // copies, the flags.
        unsafe {
            attn_asm!(
                "vldmia {acc}, {{s0-s15}}",
                "vldmia {nrm}, {{s26-s27}}",
                "2:",
                "vldmia {w0}!, {{s24}}",
                "vldmia {w1}!, {{s25}}",
                "vmul.f32 s24, s24, s26",
                "vmul.f32 s25, s25, s27",
                "vldmia {v}, {{s16-s23}}",
                "add {v}, {v}, {step}",
                "vmla.f32 s0, s24, s16",
                "vmla.f32 s8, s25, s16",
                "vmla.f32 s1, s24, s17",
                "vmla.f32 s9, s25, s17",
                "vmla.f32 s2, s24, s18",
                "vmla.f32 s10, s25, s18",
                "vmla.f32 s3, s24, s19",
                "vmla.f32 s11, s25, s19",
                "vmla.f32 s4, s24, s20",
                "vmla.f32 s12, s25, s20",
                "vmla.f32 s5, s24, s21",
                "vmla.f32 s13, s25, s21",
                "vmla.f32 s6, s24, s22",
                "vmla.f32 s14, s25, s22",
                "vmla.f32 s7, s24, s23",
                "vmla.f32 s15, s25, s23",
                "subs {n}, {n}, #1",
                "bne 2b",
                "vstmia {acc}, {{s0-s15}}",
                acc = in(reg) acc.as_mut_ptr().cast::<f32>(),
                nrm = in(reg) norm.as_ptr(),
                w0 = inout(reg) w[0].as_ptr() => _,
                w1 = inout(reg) w[1].as_ptr() => _,
                v = inout(reg) first.as_ptr() => _,
                step = in(reg) stride * 32,
                n = inout(reg) n => _,
            );
        }
    }
    let [d0, d1] = out;
    [*d0, *d1] = acc;
    true
}

/// The number of rows `n` of `width` int8 values at `offset`, `stride` bytes
/// apart, that `rows` holds in full: `(n − 1)·stride + offset + width ≤
/// rows.len()` (checked arithmetic).
#[inline(always)]
fn int8_rows_fit(rows: &[i8], n: usize, stride: usize, offset: usize, width: usize) -> bool {
    n.checked_sub(1)
        .and_then(|m| m.checked_mul(stride))
        .and_then(|b| b.checked_add(offset))
        .and_then(|b| b.checked_add(width))
        .is_some_and(|end| end <= rows.len())
}

/// The integer step's attention dot products for eight query values (int16)
/// over int8 keys, on the DSP extension: for key `j` (the eight int8 values
/// at `rows[j·stride + offset ..]`), `sums[j] += dot(q, k_j)` (wrapping; a
/// head's sum of int8 × int16 products fits `i32` for heads up to 2^16), the
/// same integers as `kernels_int::dot_i16_i8`. Per key: two word loads, four
/// `sxtb16`, one `smuad` and three `smlad` (the query packed in lane pairs
/// `(q0, q2)`, `(q1, q3)`, … as in [`dots2_i8_i16`]), the add: 16
/// instructions with the loop. A head of `8·b` values takes `b` calls: the
/// first with `ADD = false`, which stores `sums[j] = dot(q, k_j)` (14
/// instructions, nothing read from `sums`: no clearing first), the others
/// with `ADD = true`.
///
/// Returns `false` (nothing done) when `rows` does not hold every key.
#[inline(always)]
pub fn dots_i8x8<const ADD: bool>(
    q: &[i16; 8],
    rows: &[i8],
    stride: usize,
    offset: usize,
    sums: &mut [i32],
) -> bool {
    let n = sums.len();
    if n == 0 {
        return true;
    }
    if !int8_rows_fit(rows, n, stride, offset, 8) {
        return false;
    }
    let pair = |a: i16, b: i16| u32::from(a as u16) | (u32::from(b as u16) << 16);
    macro_rules! dots8 {
        ($($sum:literal),*) => {
            asm!(
                "2:",
                "ldr r10, [r4]",
                ".inst.w 0xFA2FFC8A", // sxtb16 r12, r10             (k0, k2)
                ".inst.w 0xFB2CFB00", // smuad r11, r12, r0          k0·q0 + k2·q2
                ".inst.w 0xFA2FFC9A", // sxtb16 r12, r10, ror #8     (k1, k3)
                ".inst.w 0xFB2CBB01", // smlad r11, r12, r1, r11
                "ldr r10, [r4, #4]",
                ".inst.w 0xFA2FFC8A", // sxtb16 r12, r10             (k4, k6)
                ".inst.w 0xFB2CBB02", // smlad r11, r12, r2, r11
                ".inst.w 0xFA2FFC9A", // sxtb16 r12, r10, ror #8     (k5, k7)
                ".inst.w 0xFB2CBB03", // smlad r11, r12, r3, r11
                $($sum,)*
                "add r4, r4, r5",
                "subs r9, r9, #1",
                "bne 2b",
                in("r0") pair(q[0], q[2]),
                in("r1") pair(q[1], q[3]),
                in("r2") pair(q[4], q[6]),
                in("r3") pair(q[5], q[7]),
                inout("r4") rows.as_ptr().wrapping_add(offset) => _,
                in("r5") stride,
                inout("r8") sums.as_mut_ptr() => _,
                inout("r9") n => _,
                out("r10") _,
                out("r11") _,
                out("r12") _,
                out("lr") _,
                options(nostack),
            )
        };
    }
    // SAFETY: for `j < n` the assembly reads the eight bytes at
    // `rows[j·stride + offset ..]` (two `ldr`, unaligned word loads being
    // allowed on ARMv7E-M/ARMv8-M Mainline with `CCR.UNALIGN_TRP` clear, the
    // reset value; in bounds by `int8_rows_fit`), and writes (`ADD`: reads
    // and writes) `sums[j]` (an exclusive slice of `n`). Every register it
    // touches is an operand; the flags are clobbered; no stack.
    unsafe {
        if ADD {
            dots8!("ldr lr, [r8]", "add lr, lr, r11", "str lr, [r8], #4");
        } else {
            dots8!("str r11, [r8], #4");
        }
    }
    true
}

/// The integer step's value mix over four int8 values of each value head, the
/// values stored in pairs of keys (`kernels_int::mix_pairs_i8`'s layout): for
/// every block `k` of two keys, `w[k]` holds their two weights as `i16` (low
/// half the first key's) and the eight bytes at `blocks[k·stride + offset ..]`
/// hold values `(a0, a1, b0, b1, a2, a3, b2, b3)` of the two keys `a`, `b`;
/// `acc[i] += w_a·a_i + w_b·b_i` (wrapping), bit-identical to
/// `kernels_int::mix_pairs_i8` (integer sums do not depend on their order).
/// Per block: the weight pair, two words of values, each `sxtb16` twice into
/// the key pairs of one value and two `smlad`: 14 instructions with the loop
/// for two keys, against 26 for `mla` per key and value. A head of `4·b`
/// values takes `b` calls.
///
/// Returns `false` (nothing done) when `blocks` does not hold every block.
#[inline(always)]
pub fn mix_pairs_i8x4(
    w: &[i32],
    blocks: &[i8],
    stride: usize,
    offset: usize,
    acc: &mut [i32; 4],
) -> bool {
    let n = w.len();
    if n == 0 {
        return true;
    }
    if !int8_rows_fit(blocks, n, stride, offset, 8) {
        return false;
    }
    // SAFETY: the assembly reads `n` weight pairs from `w` (`n = w.len()`),
    // for `k < n` the two words at `blocks[k·stride + offset ..]` (eight
    // bytes, in bounds by `int8_rows_fit`; unaligned word loads allowed as in
    // [`dots_i8x8`]), and loads and stores the four accumulators of `acc` (an
    // exclusive `[i32; 4]`). Every register it touches is an operand; the
    // flags are clobbered; no stack.
    unsafe {
        asm!(
            "ldm {a}, {{r0, r1, r2, r3}}",
            "2:",
            "ldr r10, [{wp}], #4",
            "ldr r11, [{vp}]",
            ".inst.w 0xFA2FFC8B", // sxtb16 r12, r11         (a0, b0)
            ".inst.w 0xFB2C000A", // smlad r0, r12, r10, r0
            ".inst.w 0xFA2FFC9B", // sxtb16 r12, r11, ror #8 (a1, b1)
            ".inst.w 0xFB2C110A", // smlad r1, r12, r10, r1
            "ldr r11, [{vp}, #4]",
            ".inst.w 0xFA2FFC8B", // sxtb16 r12, r11         (a2, b2)
            ".inst.w 0xFB2C220A", // smlad r2, r12, r10, r2
            ".inst.w 0xFA2FFC9B", // sxtb16 r12, r11, ror #8 (a3, b3)
            ".inst.w 0xFB2C330A", // smlad r3, r12, r10, r3
            "add {vp}, {vp}, {stride}",
            "subs {n}, {n}, #1",
            "bne 2b",
            "stm {a}, {{r0, r1, r2, r3}}",
            a = in(reg) acc.as_mut_ptr(),
            wp = inout(reg) w.as_ptr() => _,
            vp = inout(reg) blocks.as_ptr().wrapping_add(offset) => _,
            stride = in(reg) stride,
            n = inout(reg) n => _,
            out("r0") _,
            out("r1") _,
            out("r2") _,
            out("r3") _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            options(nostack),
        );
    }
    true
}

/// `asm!` with the operands of the Q15 RoPE kernels that keep a row of four
/// packed pairs in registers ([`rope_q15_interleaved`], [`rope_q15_half4`]):
/// the heads from `v` (r0) to `end` (r1), the pairs in r2, r3, r4, r8, the
/// rounding constant `2^14` in r5; r9–r12 and lr are scratch.
macro_rules! rope4_asm {
    ($v:expr, $end:expr, [$t0:expr, $t1:expr, $t2:expr, $t3:expr]; $($template:tt)*) => {
        asm!(
            $($template)*
            inout("r0") $v.as_mut_ptr() => _,
            in("r1") $end,
            in("r2") $t0,
            in("r3") $t1,
            in("r4") $t2,
            in("r5") 1u32 << 14,
            in("r8") $t3,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("lr") _,
            options(nostack),
        )
    };
}

/// The Q15 RoPE rotation of interleaved pairs on the DSP extension: every
/// head of `v` (`heads` heads of `2·cs.len()` values, the whole head rotated)
/// has its pair `i`, `(x0, x1) = (v[2i], v[2i+1])`, rotated by the packed
/// `cs[i] = c | s << 16` (Q15 cosine in the low half, sine in the high half):
/// `(x0·c − x1·s, x0·s + x1·c)`, each rounded (`+2^14`, `>> 15`) and saturated
/// to `i16`, the integers of [`crate::num::fixed::rotate_q15`].
///
/// Per pair: one `smlsd` and one `smladx` (the rounding constant as their
/// accumulator), two `ssat …, asr #15`, one `pkhbt`; the pairs are loaded and
/// stored two at a time (`ldrd`/`strd`). Rows of four pairs keep the row in
/// four registers (26 instructions per head); longer rows reload it per head
/// (15 per two pairs, 3 per head).
///
/// The sums do not wrap except for `x0 = x1 = c = s = −32768`, where
/// `x0·s + x1·c = 2^31`: the caller does not pass a row holding the packed
/// `0x8000_8000` (see `RopeRowQ15`, which checks it). Returns `false` (nothing
/// done) when the shapes do not fit: an odd or zero number of pairs, `v` not
/// `heads` whole heads, or `v` not 4-byte aligned (`ldrd`/`strd` need it).
#[inline(always)]
pub fn rope_q15_interleaved(cs: &[u32], v: &mut [i16]) -> bool {
    let pairs = cs.len();
    let head = 2 * pairs;
    if pairs == 0 || pairs % 2 != 0 || v.is_empty() || v.len() % head != 0 {
        return false;
    }
    if v.as_ptr() as usize % 4 != 0 {
        return false;
    }
    let heads = v.len() / head;
    let end = v.as_mut_ptr().wrapping_add(v.len());
    if let [t0, t1, t2, t3] = *cs {
        // SAFETY: the assembly reads and writes the `v.len()` values of `v`
        // (an exclusive slice, 4-byte aligned as checked, a whole number of
        // 8-byte blocks as `v.len()` is a multiple of 8), eight bytes at a time
        // from its start to `end`. Every register it touches is an operand;
        // the flags are clobbered; no stack.
        unsafe {
            rope4_asm!(v, end, [t0, t1, t2, t3];
                "2:",
                "ldrd r9, r10, [r0]",
                ".inst.w 0xFB495B02", // smlsd r11, r9, r2, r5
                ".inst.w 0xFB295C12", // smladx r12, r9, r2, r5
                "ssat r11, #16, r11, asr #15",
                "ssat r12, #16, r12, asr #15",
                ".inst.w 0xEACB490C", // pkhbt r9, r11, r12, lsl #16
                ".inst.w 0xFB4A5B03", // smlsd r11, r10, r3, r5
                ".inst.w 0xFB2A5C13", // smladx r12, r10, r3, r5
                "ssat r11, #16, r11, asr #15",
                "ssat r12, #16, r12, asr #15",
                ".inst.w 0xEACB4A0C", // pkhbt r10, r11, r12, lsl #16
                "strd r9, r10, [r0], #8",
                "ldrd r9, r10, [r0]",
                ".inst.w 0xFB495B04", // smlsd r11, r9, r4, r5
                ".inst.w 0xFB295C14", // smladx r12, r9, r4, r5
                "ssat r11, #16, r11, asr #15",
                "ssat r12, #16, r12, asr #15",
                ".inst.w 0xEACB490C", // pkhbt r9, r11, r12, lsl #16
                ".inst.w 0xFB4A5B08", // smlsd r11, r10, r8, r5
                ".inst.w 0xFB2A5C18", // smladx r12, r10, r8, r5
                "ssat r11, #16, r11, asr #15",
                "ssat r12, #16, r12, asr #15",
                ".inst.w 0xEACB4A0C", // pkhbt r10, r11, r12, lsl #16
                "strd r9, r10, [r0], #8",
                "cmp r0, r1",
                "bne 2b",
            );
        }
        return true;
    }
    let cs_end = cs.as_ptr().wrapping_add(pairs);
    // SAFETY: as above for `v`; from `cs` the assembly reads its `pairs`
    // words (8 bytes at a time, `pairs` even) once per head, from its start to
    // `cs_end`, for `heads ≥ 1` heads.
    unsafe {
        asm!(
            "2:",
            "mov r4, r1",
            "3:",
            "ldrd r8, r9, [r0]",
            "ldrd r10, r11, [r4], #8",
            ".inst.w 0xFB485C0A", // smlsd r12, r8, r10, r5
            ".inst.w 0xFB285E1A", // smladx lr, r8, r10, r5
            "ssat r12, #16, r12, asr #15",
            "ssat lr, #16, lr, asr #15",
            ".inst.w 0xEACC480E", // pkhbt r8, r12, lr, lsl #16
            ".inst.w 0xFB495C0B", // smlsd r12, r9, r11, r5
            ".inst.w 0xFB295E1B", // smladx lr, r9, r11, r5
            "ssat r12, #16, r12, asr #15",
            "ssat lr, #16, lr, asr #15",
            ".inst.w 0xEACC490E", // pkhbt r9, r12, lr, lsl #16
            "strd r8, r9, [r0], #8",
            "cmp r4, r2",
            "bne 3b",
            "subs r3, r3, #1",
            "bne 2b",
            inout("r0") v.as_mut_ptr() => _,
            in("r1") cs.as_ptr(),
            in("r2") cs_end,
            inout("r3") heads => _,
            out("r4") _,
            in("r5") 1u32 << 14,
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

/// [`rope_q15_interleaved`] for the half-split layout and rows of four pairs
/// (heads of 8: `(x[i], x[i + 4])` is pair `i`), the integers of
/// [`crate::num::fixed::rotate_q15`]. The row stays in four registers; per
/// two pairs: one word from each half, two `pkhbt`/`pkhtb` to pair them up,
/// `smlsd` + `smladx` + two `ssat` per pair, two `pkhbt` to split them back,
/// two stores: 34 instructions per head with the loop. The same
/// `0x8000_8000` exclusion as [`rope_q15_interleaved`].
///
/// Returns `false` (nothing done) when `v` is not whole heads of 8 (it may
/// sit at any halfword: word accesses may be unaligned on these cores, as in
/// [`dots_i8x8`]).
#[inline(always)]
pub fn rope_q15_half4(cs: &[u32; 4], v: &mut [i16]) -> bool {
    if v.is_empty() || v.len() % 8 != 0 {
        return false;
    }
    let end = v.as_mut_ptr().wrapping_add(v.len());
    let [t0, t1, t2, t3] = *cs;
    // SAFETY: the assembly reads and writes the `v.len()` values of `v` (an
    // exclusive slice of whole 16-byte heads), words at offsets 0, 4, 8 and 12
    // of each head, head after head from its start to `end` (word accesses
    // may be unaligned: `CCR.UNALIGN_TRP` is clear out of reset, as for
    // [`dots_i8x8`]). Every register it touches is an operand; the flags are
    // clobbered; no stack.
    unsafe {
        rope4_asm!(v, end, [t0, t1, t2, t3];
            "2:",
            "ldr r9, [r0]",
            "ldr r10, [r0, #8]",
            ".inst.w 0xEAC94B0A", // pkhbt r11, r9, r10, lsl #16   (x0, y0)
            ".inst.w 0xEACA4929", // pkhtb r9, r10, r9, asr #16    (x1, y1)
            ".inst.w 0xFB4B5C02", // smlsd r12, r11, r2, r5
            ".inst.w 0xFB2B5E12", // smladx lr, r11, r2, r5
            "ssat r12, #16, r12, asr #15",
            "ssat lr, #16, lr, asr #15",
            ".inst.w 0xFB495B03", // smlsd r11, r9, r3, r5
            ".inst.w 0xFB295A13", // smladx r10, r9, r3, r5
            "ssat r11, #16, r11, asr #15",
            "ssat r10, #16, r10, asr #15",
            ".inst.w 0xEACC490B", // pkhbt r9, r12, r11, lsl #16   (x0', x1')
            ".inst.w 0xEACE4A0A", // pkhbt r10, lr, r10, lsl #16   (y0', y1')
            "str r10, [r0, #8]",
            "str r9, [r0], #4",
            "ldr r9, [r0]",
            "ldr r10, [r0, #8]",
            ".inst.w 0xEAC94B0A", // pkhbt r11, r9, r10, lsl #16   (x2, y2)
            ".inst.w 0xEACA4929", // pkhtb r9, r10, r9, asr #16    (x3, y3)
            ".inst.w 0xFB4B5C04", // smlsd r12, r11, r4, r5
            ".inst.w 0xFB2B5E14", // smladx lr, r11, r4, r5
            "ssat r12, #16, r12, asr #15",
            "ssat lr, #16, lr, asr #15",
            ".inst.w 0xFB495B08", // smlsd r11, r9, r8, r5
            ".inst.w 0xFB295A18", // smladx r10, r9, r8, r5
            "ssat r11, #16, r11, asr #15",
            "ssat r10, #16, r10, asr #15",
            ".inst.w 0xEACC490B", // pkhbt r9, r12, r11, lsl #16   (x2', x3')
            ".inst.w 0xEACE4A0A", // pkhbt r10, lr, r10, lsl #16   (y2', y3')
            "str r10, [r0, #8]",
            "str r9, [r0], #12",
            "cmp r0, r1",
            "bne 2b",
        );
    }
    true
}
