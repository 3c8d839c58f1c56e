//! microformer firmware for Cortex-M33 (MPS2 AN505, Secure state, 4 MiB + 4 MiB):
//! the self-check, then the embedded model image (if any).
#![no_std]
#![no_main]

use board::firmware;

mod inputs {
    include!(concat!(env!("OUT_DIR"), "/inputs.rs"));
}
#[allow(dead_code)] // only SELFCHECK is used
mod expected {
    include!(concat!(env!("OUT_DIR"), "/expected.rs"));
}

#[cortex_m_rt::entry]
fn main() -> ! {
    let code = firmware::app::run(
        board::NAME,
        &inputs::MODEL.0,
        &inputs::SETTINGS,
        &expected::SELFCHECK,
    );
    board::exit(code)
}
