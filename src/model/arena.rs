//! The arena layout: one named list of the buffers a [`super::Session`] carves
//! from the caller's memory, used both to size the arena and to carve it.

use crate::Error;

/// How many values of each buffer a session of some context needs, in carving
/// order. [`ArenaLayout::bytes`] sizes an arena, the session's constructor splits
/// one: both read this one list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArenaLayout {
    /// The residual stream `x` (`dim`).
    pub x: usize,
    /// The normed input / attention output `xb` (`max(dim, q_dim)`).
    pub xb: usize,
    /// The attention output projection `xb2` (`dim`).
    pub xb2: usize,
    /// The feed-forward hidden activation `hb` (`hidden_dim`).
    pub hb: usize,
    /// SwiGLU's up projection `hb2` (`hidden_dim`; 0 for an MLP).
    pub hb2: usize,
    /// A parallel block's feed-forward output (`dim`; 0 for a sequential block).
    pub ffn_out: usize,
    /// The query `q` (`q_dim`).
    pub q: usize,
    /// The key `k` (`kv_dim`).
    pub k: usize,
    /// The value `v` (`kv_dim`).
    pub v: usize,
    /// Attention scores: one row of `context`, two when query heads go in pairs.
    pub att: usize,
    /// The logits (`vocab_size`).
    pub logits: usize,
    /// f32 values of each of the key and value caches: the rows themselves
    /// (`n_layers · context · kv_dim`), or an int8 cache's row scales
    /// (`n_layers · context`).
    pub cache_f32: usize,
    /// int8 values of each of an int8 cache's keys and values (0 for f32).
    pub cache_i8: usize,
    /// int16 values of each of the integer step's int16 cache's keys and values.
    pub cache_i16: usize,
    /// The scales of a quantized activation (most groups in one Q8 row).
    pub q8_scales: usize,
    /// The int8 values of a quantized activation (widest Q8 input).
    pub q8_values: usize,
    /// The integer step's small scratch, in words: the position's Q15 RoPE
    /// row (`head_dim / 2` rounded up) and the shifts of its `i16` query and
    /// key heads (`n_heads + n_kv_heads` bytes; 0 for the float step).
    pub int_aux: usize,
    /// The integer step's `i16` query and key and its int16 quantized input
    /// (`q_dim + kv_dim +` the widest Q8 input; 0 for the float step).
    pub heads: usize,
}

/// The buffers of an arena, carved by [`ArenaLayout::carve`].
#[derive(Debug)]
pub(crate) struct Carved<'s> {
    pub x: &'s mut [f32],
    pub xb: &'s mut [f32],
    pub xb2: &'s mut [f32],
    pub hb: &'s mut [f32],
    pub hb2: &'s mut [f32],
    pub ffn_out: &'s mut [f32],
    pub q: &'s mut [f32],
    pub k: &'s mut [f32],
    pub v: &'s mut [f32],
    pub att: &'s mut [f32],
    pub logits: &'s mut [f32],
    pub keys: &'s mut [f32],
    pub values: &'s mut [f32],
    pub q8_scales: &'s mut [f32],
    pub q8_values: &'s mut [i8],
    pub keys_i8: &'s mut [i8],
    pub values_i8: &'s mut [i8],
    pub int_aux: &'s mut [u32],
    pub heads: &'s mut [i16],
    pub keys_i16: &'s mut [i16],
    pub values_i16: &'s mut [i16],
}

impl ArenaLayout {
    /// Exact bytes of an arena that starts 4-byte aligned (saturating).
    pub fn bytes(&self) -> usize {
        let f32s = [
            self.x,
            self.xb,
            self.xb2,
            self.hb,
            self.hb2,
            self.ffn_out,
            self.q,
            self.k,
            self.v,
            self.att,
            self.logits,
            self.cache_f32,
            self.cache_f32,
            self.q8_scales,
        ];
        // The int8 buffers end where they end: the i32 logits start at the next
        // multiple of 4.
        f32s.iter()
            .fold(0usize, |a, &n| a.saturating_add(n.saturating_mul(4)))
            .saturating_add(self.q8_values)
            .saturating_add(self.cache_i8.saturating_mul(2))
            .saturating_add(if self.int_aux > 0 { 3 } else { 0 })
            .saturating_add(self.int_aux.saturating_mul(4))
            .saturating_add(self.heads.saturating_mul(2))
            .saturating_add(self.cache_i16.saturating_mul(4))
    }

    /// Splits `arena` into the buffers, in the order of [`ArenaLayout::bytes`]
    /// (the f32 buffers first, then the int8 ones, then the integer step's).
    pub(crate) fn carve<'s>(&self, arena: &'s mut [u8]) -> Result<Carved<'s>, Error> {
        let mut rest = arena;
        Ok(Carved {
            x: carve(&mut rest, self.x)?,
            xb: carve(&mut rest, self.xb)?,
            xb2: carve(&mut rest, self.xb2)?,
            hb: carve(&mut rest, self.hb)?,
            hb2: carve(&mut rest, self.hb2)?,
            ffn_out: carve(&mut rest, self.ffn_out)?,
            q: carve(&mut rest, self.q)?,
            k: carve(&mut rest, self.k)?,
            v: carve(&mut rest, self.v)?,
            att: carve(&mut rest, self.att)?,
            logits: carve(&mut rest, self.logits)?,
            keys: carve(&mut rest, self.cache_f32)?,
            values: carve(&mut rest, self.cache_f32)?,
            q8_scales: carve(&mut rest, self.q8_scales)?,
            q8_values: carve(&mut rest, self.q8_values)?,
            keys_i8: carve(&mut rest, self.cache_i8)?,
            values_i8: carve(&mut rest, self.cache_i8)?,
            int_aux: carve(&mut rest, self.int_aux)?,
            heads: carve(&mut rest, self.heads)?,
            keys_i16: carve(&mut rest, self.cache_i16)?,
            values_i16: carve(&mut rest, self.cache_i16)?,
        })
    }
}

/// Splits `n` values of `T` off the front of `rest`, after padding to `T`'s alignment.
fn carve<'s, T: bytemuck::Pod>(rest: &mut &'s mut [u8], n: usize) -> Result<&'s mut [T], Error> {
    let buf = core::mem::take(rest);
    let pad = buf.as_ptr().align_offset(core::mem::align_of::<T>());
    let bytes = n.checked_mul(core::mem::size_of::<T>());
    let (Some(bytes), true) = (bytes, pad != usize::MAX) else {
        return Err(Error::InvalidParameter);
    };
    let Some(total) = pad.checked_add(bytes).filter(|&t| t <= buf.len()) else {
        // Restore the caller's view so the error path can report sizes.
        *rest = buf;
        return Err(Error::BufferTooSmall {
            needed: pad.saturating_add(bytes),
            got: rest.len(),
        });
    };
    let (mine, tail) = buf.split_at_mut(total);
    *rest = tail;
    bytemuck::try_cast_slice_mut(&mut mine[pad..]).map_err(|_| Error::Misaligned)
}
