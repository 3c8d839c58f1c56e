//! Board glue for Cortex-M33 (MPS2 AN505, Secure state, 4 MiB + 4 MiB) on QEMU's `mps2-an505`
//! machine: defmt logs over semihosting, and every way a run can end becomes QEMU's exit code
//! (0: success; 1: a failed test, a panic or a fault).
#![no_std]

use defmt_semihosting as _; // the global defmt logger
use panic_probe as _; // core panics: message through defmt, then a fault

pub use microformer_firmware as firmware;

/// The board, as the firmware prints it.
pub const NAME: &str = "qemu-m33 (Cortex-M33, QEMU mps2-an505)";

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
