//! The firmware's main program, shared by every board: the self-check today;
//! the model runner will start from the embedded image and [`Settings`].

use microformer::image::Image;

use crate::cases::SELFCHECK;
use crate::{check, selfcheck, Settings};

/// Runs the firmware on `board` and returns the process exit code (0: all
/// good): the self-check (compared with the host's `expected` stream), then a
/// description of the embedded model image, if any.
pub fn run(board: &str, image: &[u8], settings: &Settings, expected: &[u32]) -> i32 {
    defmt::println!("microformer firmware on {}", board);
    let passed = match check(&SELFCHECK, expected) {
        Ok(p) => p,
        Err(f) => {
            defmt::error!("self-check failed: {}", f);
            return 1;
        }
    };
    let (Ok(f32_head), Ok(q15_head)) = (selfcheck::rotated(), selfcheck::rotated_q15()) else {
        return 1;
    };
    defmt::println!(
        "self-check: RoPE at position {} of {}",
        selfcheck::POSITION,
        selfcheck::INPUT
    );
    defmt::println!("  f32 (compile-time table): {}", f32_head);
    defmt::println!("  Q15 (integer phases):     {}", q15_head);
    defmt::println!("  bit-identical to the host ({} words)", passed.words);
    if image.is_empty() {
        defmt::println!("no model image embedded (build with MICROFORMER_IMAGE=<file>)");
    } else {
        match Image::parse(image) {
            Ok(img) => {
                let h = img.header();
                defmt::println!(
                    "model image: {} bytes, dim {}, {} layers, {} heads ({} kv), vocab {}, \
                     context {}",
                    image.len(),
                    h.dim,
                    h.n_layers,
                    h.n_heads,
                    h.n_kv_heads,
                    h.vocab_size,
                    h.seq_len
                );
            }
            Err(e) => {
                defmt::error!("model image rejected: {}", e);
                return 1;
            }
        }
    }
    defmt::println!("settings: {}", settings);
    0
}
