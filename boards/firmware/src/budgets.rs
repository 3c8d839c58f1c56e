//! Each real board's RAM budget: the bytes of its static session arena and the context it
//! runs, chosen for the project's own models (`models/<scheme>`: dim 64, 5 layers, 8 query /
//! 4 KV heads, hidden 172, vocabulary 512, trained at 128 positions; the firmware embeds
//! `models/rope` by default) as Q8_0 images: every board runs the full training length.
//! (llama2.c's `aidreams260K`, 4 layers of 4 KV heads, needs 2 KiB of KV cache per
//! position instead of 1.25 KiB: 80 positions on the STM32F429I-DISC1, 112 on the others.)
//!
//! The arena ([`microformer::model::Model::arena_bytes`]`(c)`) grows by one position's
//! f32 keys and values for every layer plus one attention score per position of context,
//! on top of a fixed part: the activations, the logits and the Q8 activation buffer.
//! Beside the arena each board's `.bss` holds the tokenizer index and the top-p scratch
//! (8 + 8 bytes per vocabulary entry), the prompt, and defmt-rtt's buffer; the rest of
//! the RAM is the stack. The build script warns when the embedded image needs more than
//! the arena for its context (the firmware then stops with an error); `boards/README.md`
//! gives the arena formula and the README's board table the bytes each board uses.
//!
//! | board | RAM | arena | context |
//! |---|---|---|---|
//! | STM32F429I-DISC1 | 192 KiB SRAM + 64 KiB CCM (the stack) | 176 KiB | 128 |
//! | nRF52840-DK | 256 KiB | 232 KiB | 128 |
//! | Raspberry Pi Pico (RP2040) | 264 KiB (256 KiB striped + 2 × 4 KiB) | 232 KiB | 128 |
//!
//! The image itself (Q8_0 weights, RoPE tables of the board's context, tokenizer) stays in
//! flash and is read in place.

/// A board's choices: the context of its session (and of an image converted for it) and
/// the bytes of its static session arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Positions of the session, unless `MICROFORMER_CONTEXT` says otherwise at build time.
    pub context: usize,
    /// Bytes of the static session arena.
    pub arena_bytes: usize,
}

/// STM32F429I-DISC1: 192 KiB of contiguous SRAM (SRAM1 112 + SRAM2 16 + SRAM3 64 KiB at
/// `0x2000_0000`) for the arena and `.bss`, the 64 KiB core-coupled RAM at `0x1000_0000`
/// for the stack.
pub const STM32F429I_DISCO: Budget = Budget {
    context: 128,
    arena_bytes: 176 * 1024,
};

/// nRF52840-DK: 256 KiB of RAM for the arena, the other `.bss` and the stack.
pub const NRF52840_DK: Budget = Budget {
    context: 128,
    arena_bytes: 232 * 1024,
};

/// Raspberry Pi Pico (RP2040): 264 KiB of SRAM (the four striped banks and the two 4 KiB
/// banks, contiguous from `0x2000_0000`) for the arena, the other `.bss` and the stack.
pub const RP_PICO: Budget = Budget {
    context: 128,
    arena_bytes: 232 * 1024,
};
