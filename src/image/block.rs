//! The block shape: how one transformer layer is built beyond the header's
//! dimensions (norm, feed-forward network, residual wiring, position hook and two
//! scales), stored in header words 18 to 22.

use crate::Error;

/// Normalisation used by every norm of the model (block word, byte 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum NormKind {
    /// RMSNorm `w · x/√(mean(x²) + eps)` (Llama, llama2.c).
    Rms = 0,
    /// LayerNorm `w · (x − mean)/√(var + eps) + b`: every norm weight has a bias
    /// tensor (GPT-2, XGLM, BLOOM, GPT-J, GPT-NeoX, Phi).
    LayerNorm = 1,
    /// LayerNorm without bias (MPT).
    LayerNormNoBias = 2,
}

/// The feed-forward network (block word, byte 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum FfnKind {
    /// `down(silu(gate·x) ⊙ up·x)` (Llama).
    SwiGlu = 0,
    /// `down(gelu_tanh(up·x))`, GELU's tanh approximation
    /// `½x(1 + tanh(√(2/π)(x + 0.044715x³)))` (GPT-2 `gelu_new`, BLOOM, GPT-J, Phi).
    GeluTanh = 1,
    /// `down(gelu(up·x))`, exact GELU `½x(1 + erf(x/√2))` (XGLM, MPT, GPT-NeoX `gelu`).
    Gelu = 2,
}

/// How attention and the feed-forward network join the residual stream (block
/// word, byte 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Residual {
    /// `x = x + attn(norm₁(x))`, then `x = x + ffn(norm₂(x))` (Llama, GPT-2, ...).
    Sequential = 0,
    /// `x = attn(n) + ffn(n) + x` with one norm `n = norm₁(x)`: no `FfnNorm`
    /// (GPT-J, Phi).
    ParallelShared = 1,
    /// `x = ffn(norm₂(x)) + attn(norm₁(x)) + x` (GPT-NeoX `use_parallel_residual`).
    Parallel = 2,
}

/// Where positions enter the model (block word, byte 3): one hook per scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum PositionHook {
    /// Rotate q and k by the `RopeCos`/`RopeSin` rows (`rotary_dim` dims per head).
    Rope = 0,
    /// Add `−m_h·(i − j)` to the scores, slopes from `AlibiSlopes`; `rotary_dim` 0.
    Alibi = 1,
    /// Add `PosEmbedding` row `position + pos_offset` to the token embedding;
    /// `rotary_dim` 0.
    Table = 2,
    /// No positional information at all (NoPE: causal attention alone, Haviv et
    /// al. 2022, Kazemnejad et al. 2023); `rotary_dim` 0, no position tensor.
    None = 3,
    /// Add the T5 relative-position bias `T5Bias[bucket(j − i)][h]` to the
    /// scores, buckets read from the precomputed `T5Buckets` table (causal, the
    /// block's [`Block::t5`] parameters); `rotary_dim` 0.
    T5 = 4,
}

/// The T5 bucketing of a [`PositionHook::T5`] block (header word 22: buckets in
/// the low half, `max_distance` in the high half; zero for every other hook).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct T5Params {
    /// `relative_attention_num_buckets`: rows of the `T5Bias` table.
    pub num_buckets: u16,
    /// `relative_attention_max_distance`: the `T5Buckets` table holds the
    /// buckets of distances `0..=max_distance` (farther keys share the last).
    pub max_distance: u16,
}

impl T5Params {
    /// No T5 bucketing (every hook but [`PositionHook::T5`]).
    pub const NONE: T5Params = T5Params {
        num_buckets: 0,
        max_distance: 0,
    };

    /// The header word.
    pub const fn to_word(self) -> u32 {
        self.num_buckets as u32 | (self.max_distance as u32) << 16
    }

    /// Decodes the header word.
    pub const fn from_word(w: u32) -> T5Params {
        T5Params {
            num_buckets: w as u16,
            max_distance: (w >> 16) as u16,
        }
    }
}

/// The shape of a transformer block beyond the header's dimensions: header
/// words 18 to 22. All zero ([`Block::LLAMA`]) is the Llama block: a Llama header
/// leaves these words zero.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Block {
    /// Norm kind (word 18, byte 0).
    pub norm: NormKind,
    /// Feed-forward kind (word 18, byte 1).
    pub ffn: FfnKind,
    /// Residual wiring (word 18, byte 2).
    pub residual: Residual,
    /// Position hook (word 18, byte 3).
    pub position: PositionHook,
    /// With [`PositionHook::Table`]: the table row of position 0 (XGLM: 2). Word 19.
    pub pos_offset: u32,
    /// Multiplier of the token embedding (XGLM `scale_embedding`: `√d_model`);
    /// 0: none. Word 20, f32.
    pub embed_scale: f32,
    /// Multiplier of `q·k` before the softmax (MPT `softmax_scale`; 1 for GPT-2
    /// with `scale_attn_weights: false`); 0: divide by `√head_dim` as `run.c`. Word 21, f32.
    pub attn_scale: f32,
    /// With [`PositionHook::T5`]: the bucketing ([`T5Params::NONE`] otherwise). Word 22.
    pub t5: T5Params,
}

impl Block {
    /// The Llama block: RMSNorm, SwiGLU, sequential residual, RoPE, no scales.
    pub const LLAMA: Block = Block {
        norm: NormKind::Rms,
        ffn: FfnKind::SwiGlu,
        residual: Residual::Sequential,
        position: PositionHook::Rope,
        pos_offset: 0,
        embed_scale: 0.0,
        attn_scale: 0.0,
        t5: T5Params::NONE,
    };

    /// The five header words.
    pub fn to_words(&self) -> [u32; 5] {
        let kinds = u32::from_le_bytes([
            self.norm as u8,
            self.ffn as u8,
            self.residual as u8,
            self.position as u8,
        ]);
        [
            kinds,
            self.pos_offset,
            self.embed_scale.to_bits(),
            self.attn_scale.to_bits(),
            self.t5.to_word(),
        ]
    }

    /// Decodes the five header words ([`Error::Malformed`] for an unknown kind).
    pub fn from_words(w: [u32; 5]) -> Result<Block, Error> {
        let [norm, ffn, residual, position] = w[0].to_le_bytes();
        Ok(Block {
            norm: match norm {
                0 => NormKind::Rms,
                1 => NormKind::LayerNorm,
                2 => NormKind::LayerNormNoBias,
                _ => return Err(Error::Malformed),
            },
            ffn: match ffn {
                0 => FfnKind::SwiGlu,
                1 => FfnKind::GeluTanh,
                2 => FfnKind::Gelu,
                _ => return Err(Error::Malformed),
            },
            residual: match residual {
                0 => Residual::Sequential,
                1 => Residual::ParallelShared,
                2 => Residual::Parallel,
                _ => return Err(Error::Malformed),
            },
            position: match position {
                0 => PositionHook::Rope,
                1 => PositionHook::Alibi,
                2 => PositionHook::Table,
                3 => PositionHook::None,
                4 => PositionHook::T5,
                _ => return Err(Error::Malformed),
            },
            pos_offset: w[1],
            embed_scale: f32::from_bits(w[2]),
            attn_scale: f32::from_bits(w[3]),
            t5: T5Params::from_word(w[4]),
        })
    }

    /// Whether the norms carry bias tensors.
    pub const fn norm_bias(&self) -> bool {
        matches!(self.norm, NormKind::LayerNorm)
    }

    /// Whether the block has its own feed-forward norm (`FfnNorm`).
    pub const fn ffn_norm(&self) -> bool {
        !matches!(self.residual, Residual::ParallelShared)
    }
}
