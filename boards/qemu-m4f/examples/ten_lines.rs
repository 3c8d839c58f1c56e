//! The smallest firmware that runs a model: the image in flash, one static
//! block of RAM, a generator of text (the README's ten lines). The board crate
//! supplies the logger, the panic and fault handlers and the semihosting text
//! stream; its build script converts the model into `OUT_DIR/model.bin` and
//! sizes `Memory` for it (`inputs.rs`).
//!
//! `cargo run --release --example ten_lines` (in `boards/qemu-m4f`) prints the text on QEMU's stderr.
#![no_std]
#![no_main]

use board::firmware::microformer::lm::{Generator, Options, Prompt};
use board::firmware::microformer::{include_image, model::Model};
use board::firmware::qemu::{exit, Text};

#[allow(dead_code)] // the firmware's other inputs (settings, context)
mod inputs {
    include!(concat!(env!("OUT_DIR"), "/inputs.rs"));
}

static IMAGE: &[u8] = include_image!(concat!(env!("OUT_DIR"), "/model.bin"));

#[cortex_m_rt::entry]
fn main() -> ! {
    static mut MEMORY: inputs::Memory = inputs::Memory::new();
    let model = Model::from_bytes(IMAGE).unwrap();
    let options = Options {
        prompt: Prompt::Text("I was flying over"),
        temperature: 0.0,
        steps: 100,
        ..Options::DEFAULT
    };
    let mut text = Text::open();
    for token in Generator::new(&model, MEMORY.buffers(), &options).unwrap() {
        text.write(token.unwrap().text);
    }
    exit(0)
}
