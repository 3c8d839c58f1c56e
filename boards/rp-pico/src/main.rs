//! microformer on the Raspberry Pi Pico: generates text from the model image embedded at
//! build time and streams it over defmt/RTT and UART0 (GP0 TX, GP1 RX).
#![no_std]
#![no_main]

mod inputs {
    include!(concat!(env!("OUT_DIR"), "/inputs.rs"));
}

// rp2040-hal's entry: cortex-m-rt's, after releasing the spinlocks a reset left taken.
#[rp2040_hal::entry]
fn main() -> ! {
    // cortex-m-rt hands this over as a `&'static mut`; all zeros, it lands in `.bss`.
    static mut MEMORY: inputs::Memory = inputs::Memory::new();
    let mut board = board::Board::init();
    let code = board::device::app::main(
        board::NAME,
        &inputs::MODEL.0,
        inputs::CONTEXT,
        &inputs::SETTINGS,
        MEMORY,
        &mut board,
    );
    board::finish(code)
}
