//! What the firmware needs from QEMU (feature `qemu`): the command line and a
//! text stream through semihosting, an instruction counter, and the stack's
//! high-water mark.
//!
//! - [`cmdline`]: `SYS_GET_CMDLINE`, that is QEMU's kernel path and its
//!   `-append "…"` words (see [`crate::settings`]).
//! - [`Text`]: the generated text, written to QEMU's **stderr** (semihosting's
//!   `:tt` opened for append); QEMU's stdout carries the defmt frames, which
//!   `defmt-print` decodes, so the text is never mixed into them.
//! - [`Counter`]: instructions, with QEMU's `-icount shift=0` (each instruction
//!   advances virtual time by 1 ns): SysTick counts the core clock (25 MHz on the
//!   MPS2 boards, one tick per 40 instructions), and its 24-bit wraps are counted
//!   by the board's `SysTick` handler ([`on_systick`]). Without `-icount`, SysTick
//!   does not advance under QEMU and the count stays 0.
//! - [`stack_peak`]: cortex-m-rt's `paint-stack` fills the stack with
//!   `0xcccc_cccc` at reset; the lowest word no longer painted marks the deepest
//!   the stack went.
//!
//! Why `unsafe` appears here, and only here: [`stack_peak`] reads the RAM between
//! the end of the statics and the top of the stack, which no Rust object owns —
//! raw-pointer reads of addresses the linker script defines (`_stack_end`,
//! `_stack_start`). Everything else goes through safe APIs (`semihosting`,
//! `cortex-m`).
#![allow(unsafe_code)]

use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use semihosting::io::Write as _;

/// Reads the semihosting command line into `buf`; `None` when semihosting refuses
/// it (longer than `buf`, or no command line support).
pub fn cmdline(buf: &mut [MaybeUninit<u8>]) -> Option<&[u8]> {
    semihosting::sys::arm_compat::sys_get_cmdline_uninit(buf)
        .ok()
        .map(|b| &*b)
}

/// QEMU's stderr, for the generated text.
pub struct Text(Option<semihosting::io::Stderr>);

impl Text {
    /// Opens the stream (writes are dropped when semihosting refuses it).
    pub fn open() -> Self {
        Text(semihosting::io::stderr().ok())
    }

    /// Writes `bytes` (errors are ignored: the text is best effort, the run's result
    /// is the exit code).
    pub fn write(&mut self, bytes: &[u8]) {
        if let Some(s) = &mut self.0 {
            let _ = s.write_all(bytes);
        }
    }
}

/// SysTick wraps so far.
static WRAPS: AtomicU32 = AtomicU32::new(0);
/// SysTick's reload: the full 24 bits.
const RELOAD: u32 = 0x00ff_ffff;

/// Call from the board's `SysTick` exception handler: counts one wrap. (Load and
/// store, not `fetch_add`: thumbv6m has no atomic read-modify-write, and the
/// handler is the only writer.)
pub fn on_systick() {
    WRAPS.store(
        WRAPS.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

/// An instruction counter over SysTick (see the module documentation).
pub struct Counter {
    syst: SYST,
    /// Instructions per SysTick tick: 10^9 / core clock in Hz (1 ns per
    /// instruction under `-icount shift=0`).
    per_tick: u64,
}

impl Counter {
    /// Starts SysTick on the core clock, wrapping every 2^24 ticks with an
    /// interrupt; `clock_hz` is the core clock QEMU gives SysTick (25 MHz on MPS2).
    pub fn start(mut syst: SYST, clock_hz: u32) -> Self {
        syst.disable_counter();
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        Counter {
            syst,
            per_tick: 1_000_000_000 / u64::from(clock_hz.max(1)),
        }
    }

    /// SysTick ticks since [`Counter::start`].
    pub fn ticks(&self) -> u64 {
        let _ = &self.syst;
        loop {
            let before = WRAPS.load(Ordering::Relaxed);
            let current = SYST::get_current();
            let after = WRAPS.load(Ordering::Relaxed);
            if before == after {
                return u64::from(before) * u64::from(RELOAD + 1) + u64::from(RELOAD - current);
            }
        }
    }

    /// Instructions since [`Counter::start`] (a multiple of the instructions per tick).
    pub fn instructions(&self) -> u64 {
        self.ticks() * self.per_tick
    }
}

/// cortex-m-rt's stack paint (feature `paint-stack`).
const PAINT: u32 = 0xcccc_cccc;

extern "C" {
    /// The lowest address the stack may reach (after the statics), from cortex-m-rt's
    /// linker script.
    static _stack_end: u32;
    /// The top of the stack (its first push goes below it).
    static _stack_start: u32;
}

/// Bytes of stack used so far at most: from the top of the stack down to the
/// lowest word that is no longer `0xcccc_cccc`.
pub fn stack_peak() -> usize {
    let bottom = (&raw const _stack_end) as usize;
    let top = (&raw const _stack_start) as usize;
    let mut addr = bottom;
    while addr < top {
        // SAFETY: `addr` is 4-byte aligned (cortex-m-rt aligns `_stack_end`) and lies
        // in `[_stack_end, _stack_start)`, RAM the linker reserves for the stack: it is
        // mapped and readable, and a volatile read of a `u32` there has no side effect.
        let word = unsafe { core::ptr::read_volatile(addr as *const u32) };
        if word != PAINT {
            break;
        }
        addr += 4;
    }
    top - addr
}

/// Bytes between the end of the statics and the top of the stack.
pub fn stack_size() -> usize {
    (&raw const _stack_start) as usize - (&raw const _stack_end) as usize
}
