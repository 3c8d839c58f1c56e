//! The firmware's main program, shared by every board: the self-check
//! ([`run`]), then the language model ([`run_model`]): the embedded image, run
//! with the build-time [`Settings`] overridden by the command line, its text
//! streamed to the board's text channel.

use microformer::image::Image;

use crate::cases::SELFCHECK;
use crate::lm::{self, Buffers, RunError};
use crate::settings::{CmdlineError, Mode};
use crate::{bench, check, selfcheck, Settings};

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
    defmt::println!("build-time settings: {}", settings);
    0
}

/// What [`run_model`] needs from its board.
pub struct Io<'a> {
    /// The text channel (QEMU: semihosting stderr).
    pub text: &'a mut dyn FnMut(&[u8]),
    /// Instructions (or cycles) so far, when the board can count them.
    pub clock: Option<&'a dyn Fn() -> u64>,
    /// The stack's high-water mark in bytes, when the board measures it.
    pub stack_peak: Option<fn() -> usize>,
}

/// Runs the embedded model: `defaults` (built in) overridden by `cmdline` (see
/// [`crate::settings`]), in `buffers`. Streams the text as llama2.c prints it (every
/// piece, then one newline) to `io.text`, logs the model and settings, and ends with
/// one `figures:` line (positions, tokens, instructions and the stack's
/// high-water mark) for `cargo xtask bench`. Returns the exit code: 0, or 1 after
/// logging the error.
pub fn run_model(
    image: &[u8],
    defaults: &Settings<'_>,
    cmdline: &[u8],
    buffers: Buffers<'_>,
    io: Io<'_>,
) -> i32 {
    let settings = match defaults.with_cmdline(cmdline) {
        Ok(s) => s,
        Err(e) => {
            log_cmdline_error(e, cmdline);
            return 1;
        }
    };
    defmt::println!("settings: {}", settings);
    if settings.mode == Mode::Kernels {
        return kernels(io.clock);
    }
    let Io {
        text,
        clock,
        stack_peak,
    } = io;
    let now = || clock.map_or(0, |c| c());
    let mut start = 0;
    let result = lm::run(
        image,
        &settings,
        buffers,
        |o| {
            defmt::println!(
                "model: {=usize} bytes, {=str}, context {=usize}, prompt {=usize} tokens",
                image.len(),
                if o.quantized { "q8" } else { "f32" },
                o.context,
                o.prompt_tokens
            );
            start = now();
        },
        |t| text(t.text),
    );
    let end = now();
    match result {
        Ok(g) => {
            text(b"\n");
            defmt::println!(
                "figures: positions={=usize} tokens={=usize} stopped={=bool} \
                 instructions={=u64} stack_bytes={=usize}",
                g.positions,
                g.emitted,
                g.stopped,
                end - start,
                stack_peak.map_or(0, |f| f())
            );
            0
        }
        Err(RunError::NoImage) => {
            defmt::error!(
                "no model image embedded (build with MICROFORMER_IMAGE=<image> or \
                 MICROFORMER_CHECKPOINT=<llama2.c .bin>)"
            );
            1
        }
        Err(e) => {
            defmt::error!("generation failed: {}", e);
            1
        }
    }
}

fn log_cmdline_error(e: CmdlineError, cmdline: &[u8]) {
    match core::str::from_utf8(cmdline) {
        Ok(s) => defmt::error!("bad command line {=str:?}: {}", s, e),
        Err(_) => defmt::error!("bad command line: {}", e),
    }
}

/// The kernel timings ([`bench::kernels`]).
fn kernels(clock: Option<&dyn Fn() -> u64>) -> i32 {
    let Some(clock) = clock else {
        defmt::error!("bench=kernels needs an instruction counter");
        return 1;
    };
    let r = bench::kernels(clock, |t| {
        defmt::println!(
            "kernel: {=str} | per {=str} | {=u64}.{=u64:02} instructions",
            t.kernel,
            t.per,
            t.instructions_x100 / 100,
            t.instructions_x100 % 100
        );
    });
    match r {
        Ok(()) => 0,
        Err(e) => {
            defmt::error!("kernel timing failed: {}", e);
            1
        }
    }
}
