//! What the crate's unit tests build their tiny images from.

use super::block::Block;
use super::header::{Arch, Header};

/// A tiny Llama header: width 8 (two query heads of 4, one key/value head),
/// hidden width 12, two layers, five tokens, three positions rotated over the
/// whole head, no flags and no Q8 group. Tests change what they need with
/// struct update syntax.
pub(crate) const fn tiny_llama() -> Header {
    Header {
        arch: Arch::Llama,
        flags: 0,
        dim: 8,
        hidden_dim: 12,
        n_layers: 2,
        n_heads: 2,
        n_kv_heads: 1,
        head_dim: 4,
        vocab_size: 5,
        seq_len: 3,
        rotary_dim: 4,
        sliding_window: 0,
        norm_eps: 1e-5,
        group_size: 0,
        bos_id: 1,
        eos_id: 2,
        n_tensors: 0,
        image_len: 0,
        train_context: 3,
        block: Block::LLAMA,
    }
}
