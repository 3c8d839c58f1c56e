//! The QEMU boards' side of the firmware (feature `qemu`): semihosting, an
//! instruction counter, the stack's high-water mark, and the board glue every
//! QEMU board shares.
//!
//! - [`main`] (through [`qemu_main!`](crate::qemu_main), a board's whole
//!   `main.rs`): the self-check ([`crate::app::self_check`]), then the command line
//!   over the build's settings, and the embedded model ([`crate::app::main`]) or the
//!   kernel timings ([`crate::app::kernels`], `bench=kernels`); QEMU exits with the
//!   run's code.
//! - [`cmdline`]: `SYS_GET_CMDLINE`, that is QEMU's kernel path and its
//!   `-append "…"` words (see [`crate::settings`]).
//! - [`Text`]: the generated text, written to QEMU's **stderr** (semihosting's
//!   `:tt` opened for append); QEMU's stdout carries the defmt frames, which
//!   `defmt-print` decodes, so the text is never mixed into them.
//! - [`Counter`]: instructions, with QEMU's `-icount shift=0` (each instruction
//!   advances virtual time by 1 ns): SysTick counts the core clock (25 MHz on the
//!   MPS2 boards, one tick per 40 instructions), and its 24-bit wraps are counted
//!   by the `SysTick` handler here. Without `-icount`, SysTick does not advance
//!   under QEMU and the count stays 0.
//! - [`stack_peak`]: cortex-m-rt's `paint-stack` fills the stack with
//!   `0xcccc_cccc` at reset; the lowest word no longer painted marks the deepest
//!   the stack went.
//! - The glue: the defmt logger over semihosting (`defmt-semihosting`), core panics
//!   through `panic-probe`, and a HardFault handler that ends QEMU with exit code 1
//!   (a defmt panic raises that fault, see the crate root): every way a run or a
//!   test can end becomes QEMU's exit code (0: success, through [`exit`]).
//!
//! Why `unsafe` appears here, and only here: [`stack_peak`] reads the RAM between
//! the end of the statics and the top of the stack, which no Rust object owns —
//! raw-pointer reads of addresses the linker script defines (`_stack_end`,
//! `_stack_start`); and cortex-m-rt requires the HardFault handler to be declared
//! `unsafe`. Everything else goes through safe APIs (`semihosting`, `cortex-m`).
#![allow(unsafe_code)]

use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use defmt_semihosting as _; // the global defmt logger
use panic_probe as _; // core panics: message through defmt, then a fault
use semihosting::io::Write as _;

use crate::app;
use crate::lm::Memory;
use crate::settings::{Mode, Settings, CMDLINE_BYTES};

/// The buffer the command line is read into (a `static mut` in the board's `main`).
pub struct Cmdline([MaybeUninit<u8>; CMDLINE_BYTES]);

impl Cmdline {
    /// An empty buffer (a `const fn`, for a `static`).
    pub const fn new() -> Self {
        Cmdline([MaybeUninit::uninit(); CMDLINE_BYTES])
    }
}

impl Default for Cmdline {
    fn default() -> Self {
        Self::new()
    }
}

/// A QEMU board's firmware, the whole `main.rs` of a board crate: the build
/// script's `inputs.rs` and `expected.rs`, the statics (the run's [`Memory`], the
/// [`Cmdline`]) and cortex-m-rt's entry calling [`main`].
///
/// `qemu_main!(NAME, SYSTICK_HZ)`: the board as the firmware prints it, and the core
/// clock SysTick counts.
#[macro_export]
macro_rules! qemu_main {
    ($name:expr, $systick_hz:expr) => {
        mod inputs {
            include!(concat!(env!("OUT_DIR"), "/inputs.rs"));
        }
        #[allow(dead_code)] // only SELFCHECK is used
        mod expected {
            include!(concat!(env!("OUT_DIR"), "/expected.rs"));
        }

        #[cortex_m_rt::entry]
        fn main() -> ! {
            // cortex-m-rt hands each `static mut` declared here over as a `&'static mut`.
            static mut MEMORY: inputs::Memory = inputs::Memory::new();
            static mut CMDLINE: $crate::qemu::Cmdline = $crate::qemu::Cmdline::new();
            static BOARD: $crate::qemu::Board = $crate::qemu::Board {
                name: $name,
                systick_hz: $systick_hz,
            };
            static EMBEDDED: $crate::qemu::Embedded = $crate::qemu::Embedded {
                image: &inputs::MODEL.0,
                context: inputs::CONTEXT,
                settings: &inputs::SETTINGS,
                text_tokens: &inputs::TEXT_TOKENS,
                selfcheck: &expected::SELFCHECK,
            };
            $crate::qemu::main(&BOARD, &EMBEDDED, MEMORY, CMDLINE)
        }
    };
}

/// A QEMU board as the firmware knows it.
#[derive(Debug, Clone, Copy)]
pub struct Board {
    /// Its name, as the firmware prints it.
    pub name: &'static str,
    /// The core clock SysTick counts.
    pub systick_hz: u32,
}

/// What a QEMU board's build script embedded (`inputs.rs`, `expected.rs`).
#[derive(Debug, Clone, Copy)]
pub struct Embedded<'a> {
    /// The model image (empty when none).
    pub image: &'a [u8],
    /// Positions of the session.
    pub context: usize,
    /// The build's settings, which the command line overrides.
    pub settings: &'a Settings<'static>,
    /// The token stream the perplexity mode scores (empty when none).
    pub text_tokens: &'a [u32],
    /// The host's stream of the self-check.
    pub selfcheck: &'a [u32],
}

/// The firmware on a QEMU `board` (its name; its SysTick counts `systick_hz`): the
/// self-check (against the host's stream), then, when an image is embedded, the model
/// at up to the embedded context with the build's settings overridden by the command
/// line, its text on QEMU's stderr (or, with `perplexity=N`, its perplexity over the
/// token stream embedded at build time). Ends QEMU with the exit code.
pub fn main<const ARENA: usize, const VOCAB: usize, const PROMPT: usize>(
    board: &Board,
    embedded: &Embedded<'_>,
    memory: &mut Memory<ARENA, VOCAB, PROMPT>,
    cmdline: &mut Cmdline,
) -> ! {
    let Embedded {
        image,
        context,
        settings,
        text_tokens,
        selfcheck,
    } = *embedded;
    let counter = cortex_m::Peripherals::take().map(|p| Counter::start(p.SYST, board.systick_hz));
    let code = app::self_check(board.name, image, settings, selfcheck);
    if code != 0 || image.is_empty() {
        exit(code)
    }
    let Some(line) = self::cmdline(&mut cmdline.0) else {
        defmt::error!(
            "cannot read the command line (longer than {=usize} bytes?)",
            CMDLINE_BYTES
        );
        exit(1)
    };
    let settings = match settings.with_cmdline(line) {
        Ok(s) => s,
        Err(e) => {
            app::log_cmdline_error(e, line);
            exit(1)
        }
    };
    if settings.mode == Mode::Kernels {
        defmt::println!("settings: {}", settings);
        exit(app::kernels(&|| {
            counter.as_ref().map_or(0, Counter::instructions)
        }))
    }
    let mut board = Qemu {
        text: Text::open(),
        counter,
    };
    if let Mode::Perplexity { window } = settings.mode {
        let window = usize::try_from(window).unwrap_or(usize::MAX);
        exit(app::perplexity(
            image,
            window,
            &settings,
            text_tokens,
            memory,
            &mut board,
        ))
    }
    exit(app::main(image, context, &settings, memory, &mut board))
}

/// What [`app::main`] needs, on QEMU.
struct Qemu {
    text: Text,
    counter: Option<Counter>,
}

impl app::Board for Qemu {
    fn text(&mut self, bytes: &[u8]) {
        self.text.write(bytes);
    }

    fn text_end(&mut self, generated: bool) {
        if generated {
            self.text.write(b"\n");
        }
    }

    fn instructions(&self) -> Option<u64> {
        Some(self.counter.as_ref().map_or(0, Counter::instructions))
    }

    fn stack_peak(&self) -> Option<usize> {
        Some(stack_peak())
    }
}

/// Ends the run: QEMU exits with `code`.
pub fn exit(code: i32) -> ! {
    semihosting::process::exit(code)
}

/// Every fault (and every panic, through `udf`) ends QEMU with exit code 1; cortex-m-rt's
/// default handler would spin forever.
// SAFETY: cortex-m-rt requires the HardFault handler to be declared `unsafe`; it only logs
// and exits.
#[cortex_m_rt::exception]
unsafe fn HardFault(frame: &cortex_m_rt::ExceptionFrame) -> ! {
    defmt::error!("HardFault at pc {=u32:#010x}", frame.pc());
    exit(1)
}

/// Counts SysTick's wraps for the instruction counter.
#[cortex_m_rt::exception]
fn SysTick() {
    on_systick();
}

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

/// Counts one wrap (from the `SysTick` exception handler). (Load and store, not
/// `fetch_add`: thumbv6m has no atomic read-modify-write, and the handler is the only
/// writer.)
fn on_systick() {
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
