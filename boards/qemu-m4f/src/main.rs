//! microformer firmware for Cortex-M4F (MPS2 AN386, 4 MiB + 4 MiB):
//! the self-check, then the embedded model image (if any): its text on QEMU's stderr
//! (semihosting), logs on stdout (defmt), settings from the command line (`-append`).
#![no_std]
#![no_main]

board::firmware::qemu_main!(board::NAME, board::SYSTICK_HZ);
