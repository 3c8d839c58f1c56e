//! microformer on the nRF52840-DK: generates text from the model image embedded at
//! build time and streams it over defmt/RTT and UARTE0 (the J-Link virtual COM port).
#![no_std]
#![no_main]

mod inputs {
    include!(concat!(env!("OUT_DIR"), "/inputs.rs"));
}

#[cortex_m_rt::entry]
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
