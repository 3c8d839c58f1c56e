//! Each real board's RAM budget: the bytes of its static session arena and the context it
//! runs, chosen for llama2.c's `aidreams260K` (dim 64, 4 layers, 4 heads, hidden 172,
//! vocabulary 512, trained context 128) as a Q8_0 image.
//!
//! For that model [`microformer::model::Model::arena_bytes`]`(c)` is `5304 + 2052·c` bytes: the f32 KV
//! cache takes `2 · 4 layers · 64 · 4 bytes = 2048` per position, one attention score 4
//! more; the activations, the 512 logits and the Q8 activation buffer (scales for `w_down`'s groups of 4 included) 5304 in all. Beside
//! the arena each board's `.bss` holds the tokenizer index and the top-p scratch
//! (8 + 8 bytes per vocabulary entry: 8 KiB for 512), the prompt, and defmt-rtt's 1 KiB
//! buffer; the rest of the RAM is the stack.
//!
//! | board | RAM | arena | context | arena used |
//! |---|---|---|---|---|
//! | STM32F429I-DISC1 | 192 KiB SRAM + 64 KiB CCM (the stack) | 176 KiB | 80 | 169 464 B |
//! | nRF52840-DK | 256 KiB | 232 KiB | 112 | 235 128 B |
//! | Raspberry Pi Pico (RP2040) | 264 KiB (256 KiB striped + 2 × 4 KiB) | 232 KiB | 112 | 235 128 B |
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
/// for the stack. Context 80 needs 169 188 of the arena's 180 224 bytes.
pub const STM32F429I_DISCO: Budget = Budget {
    context: 80,
    arena_bytes: 176 * 1024,
};

/// nRF52840-DK: 256 KiB of RAM. Context 112 needs 234 852 of the arena's 237 568 bytes;
/// about 9 KiB of other `.bss` and 14 KiB of stack remain.
pub const NRF52840_DK: Budget = Budget {
    context: 112,
    arena_bytes: 232 * 1024,
};

/// Raspberry Pi Pico (RP2040): 264 KiB of SRAM (the four striped banks and the two 4 KiB
/// banks, contiguous from `0x2000_0000`). Context 112 needs 234 852 of the arena's
/// 237 568 bytes; about 9 KiB of other `.bss` and 22 KiB of stack remain.
pub const RP_PICO: Budget = Budget {
    context: 112,
    arena_bytes: 232 * 1024,
};
