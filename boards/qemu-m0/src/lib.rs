//! Board glue for Cortex-M0 (nRF51, 256 KiB flash, 16 KiB RAM) on QEMU's `microbit`
//! machine: defmt logs over semihosting, and every way a run can end becomes QEMU's exit code
//! (0: success; 1: a failed test, a panic or a fault).
#![no_std]

use defmt_semihosting as _; // the global defmt logger
use panic_probe as _; // core panics: message through defmt, then a fault

pub use microformer_firmware as firmware;

use firmware::qemu;

/// The board, as the firmware prints it.
pub const NAME: &str = "qemu-m0 (Cortex-M0, QEMU microbit)";

/// The core clock SysTick counts (nRF51: 16 MHz); under `-icount shift=0` one instruction is
/// 1 ns, so a tick is `10^9 / SYSTICK_HZ` instructions.
pub const SYSTICK_HZ: u32 = 16_000_000;

/// Starts the instruction counter (SysTick, see `firmware::qemu`); `None` if the core
/// peripherals were taken already.
pub fn counter() -> Option<qemu::Counter> {
    cortex_m::Peripherals::take().map(|p| qemu::Counter::start(p.SYST, SYSTICK_HZ))
}

/// Counts SysTick's wraps for the instruction counter.
#[cortex_m_rt::exception]
fn SysTick() {
    qemu::on_systick();
}

/// Ends the run: QEMU exits with `code`.
pub fn exit(code: i32) -> ! {
    semihosting::process::exit(code)
}

/// After `defmt::panic!` (and failed `defmt::assert!`s, as in defmt-test) has printed its
/// message: raise a fault, which ends the run with exit code 1.
#[defmt::panic_handler]
fn defmt_panic() -> ! {
    cortex_m::asm::udf()
}

/// Every fault (and every panic, through `udf`) ends QEMU with exit code 1; cortex-m-rt's
/// default handler would spin forever.
// SAFETY: cortex-m-rt requires the HardFault handler to be declared `unsafe`; it only logs
// and exits.
#[allow(unsafe_code)]
#[cortex_m_rt::exception]
unsafe fn HardFault(frame: &cortex_m_rt::ExceptionFrame) -> ! {
    defmt::error!("HardFault at pc {=u32:#010x}", frame.pc());
    exit(1)
}
