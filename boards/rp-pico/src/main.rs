//! microformer on the Raspberry Pi Pico: generates text from the model image embedded at
//! build time and streams it over defmt/RTT and UART0 (GP0 TX, GP1 RX).
#![no_std]
#![no_main]

// rp2040-hal's entry: cortex-m-rt's, after releasing the spinlocks a reset left taken.
board::firmware::device_main!(entry = rp2040_hal::entry, board::NAME, board::Board::init());
