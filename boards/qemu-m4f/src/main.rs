//! microformer firmware for Cortex-M4F (MPS2 AN386, 4 MiB + 4 MiB):
//! the self-check, then the embedded model image (if any): its text on QEMU's stderr
//! (semihosting), logs on stdout (defmt), settings from the command line (`-append`).
#![no_std]
#![no_main]

use core::mem::MaybeUninit;

use board::firmware::{app, lm, microformer::sampler::ProbIndex, qemu};

mod inputs {
    include!(concat!(env!("OUT_DIR"), "/inputs.rs"));
}
#[allow(dead_code)] // only SELFCHECK is used
mod expected {
    include!(concat!(env!("OUT_DIR"), "/expected.rs"));
}

#[cortex_m_rt::entry]
fn main() -> ! {
    // Sized by the build script for the embedded image; cortex-m-rt hands each `static mut`
    // declared here over as a `&'static mut` (zeroed: `.bss`).
    static mut ARENA: [u8; inputs::ARENA_BYTES] = [0; inputs::ARENA_BYTES];
    static mut INDEX: [u32; inputs::INDEX] = [0; inputs::INDEX];
    static mut PROBS: [ProbIndex; inputs::PROBS] = [ProbIndex {
        prob: 0.0,
        index: 0,
    }; inputs::PROBS];
    static mut TOKENS: [u32; inputs::TOKENS] = [0; inputs::TOKENS];
    static mut CMDLINE: [MaybeUninit<u8>; inputs::CMDLINE_BYTES] =
        [MaybeUninit::uninit(); inputs::CMDLINE_BYTES];

    let counter = board::counter();
    let code = app::run(
        board::NAME,
        &inputs::MODEL.0,
        &inputs::SETTINGS,
        &expected::SELFCHECK,
    );
    if code != 0 || inputs::MODEL.0.is_empty() {
        board::exit(code)
    }
    let Some(cmdline) = qemu::cmdline(CMDLINE) else {
        defmt::error!(
            "cannot read the command line (longer than {=usize} bytes?)",
            inputs::CMDLINE_BYTES
        );
        board::exit(1)
    };
    let mut text = qemu::Text::open();
    let clock = || counter.as_ref().map_or(0, |c| c.instructions());
    let code = app::run_model(
        &inputs::MODEL.0,
        &inputs::SETTINGS,
        cmdline,
        lm::Buffers {
            arena: ARENA,
            index: INDEX,
            probs: PROBS,
            tokens: TOKENS,
        },
        app::Io {
            text: &mut |b| text.write(b),
            clock: Some(&clock),
            stack_peak: Some(qemu::stack_peak),
        },
    );
    board::exit(code)
}
