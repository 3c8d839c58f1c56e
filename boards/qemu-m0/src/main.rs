//! microformer firmware for Cortex-M0 (nRF51, 256 KiB flash, 16 KiB RAM):
//! the self-check, then the embedded model image (if any): its text on QEMU's stderr
//! (semihosting), logs on stdout (defmt), settings from the command line (`-append`).
#![no_std]
#![no_main]

board::firmware::qemu_main!(board::NAME, board::SYSTICK_HZ);
