//! Board glue for Cortex-M0 (nRF51, 256 KiB flash, 16 KiB RAM) on QEMU's `microbit` machine: its
//! name and SysTick clock. The rest (defmt logs over semihosting, every way a run can end
//! becoming QEMU's exit code) is `microformer_firmware::qemu`, shared by every QEMU board.
#![no_std]

pub use microformer_firmware as firmware;

/// The board, as the firmware prints it.
pub const NAME: &str = "qemu-m0 (Cortex-M0, QEMU microbit)";

/// The core clock SysTick counts (nRF51: 16 MHz); under `-icount shift=0` one instruction is
/// 1 ns, so a tick is `10^9 / SYSTICK_HZ` instructions.
pub const SYSTICK_HZ: u32 = 16_000_000;
