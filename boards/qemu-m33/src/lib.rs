//! Board glue for Cortex-M33 (MPS2 AN505, Secure state, 4 MiB + 4 MiB) on QEMU's `mps2-an505` machine: its
//! name and SysTick clock. The rest (defmt logs over semihosting, every way a run can end
//! becoming QEMU's exit code) is `microformer_firmware::qemu`, shared by every QEMU board.
#![no_std]

pub use microformer_firmware as firmware;

/// The board, as the firmware prints it.
pub const NAME: &str = "qemu-m33 (Cortex-M33, QEMU mps2-an505)";

/// The core clock SysTick counts (QEMU's mps2-tz AN505: 20 MHz, not the MPS2 boards' 25 MHz:
/// `hw/arm/mps2-tz.c`; with 25 MHz every count read 0.8 of the instructions run, which the
/// instruction trace of `cargo xtask cycles` showed); under `-icount shift=0` one instruction is
/// 1 ns, so a tick is `10^9 / SYSTICK_HZ` instructions.
pub const SYSTICK_HZ: u32 = 20_000_000;
