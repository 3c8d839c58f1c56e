//! A [`Session`]: one generation's position, KV cache and activations, all in
//! the caller's arena, and the forward step that reads like `run.c`'s
//! `forward`: embed, then per layer attention and feed-forward, then the
//! classifier.

use super::arena::Carved;
use super::norm::{add, gelu, gelu_tanh, silu};
use super::view::{KvFormat, Model};
use super::weights::{LayerWeights, Matrix, QuantizedInput};
use crate::attn::{self, AttnBuffers, KvCache, KvCacheQ8, KvRead, KvWrite};
use crate::image::{FfnKind, Residual};
use crate::num::q8;
use crate::pos::{NoBias, Position};
use crate::Error;

/// The session's KV cache, in the format chosen when it was opened.
#[derive(Debug)]
enum Cache<'s> {
    F32(KvCache<'s>),
    Q8(KvCacheQ8<'s>),
}

/// A Q8 matrix's input, quantized per group as `runq.c` does, and the group it
/// was quantized with (0: none yet). Matrices that read the same input share it
/// when their groups agree.
#[derive(Debug)]
struct Quantized<'s> {
    values: &'s mut [i8],
    scales: &'s mut [f32],
    group: usize,
}

impl Quantized<'_> {
    /// `out = m · x` for a new input `x`.
    #[inline(always)]
    fn matvec(&mut self, m: &Matrix<'_>, out: &mut [f32], x: &[f32]) -> Result<(), Error> {
        self.group = 0;
        self.matvec_again(m, out, x)
    }

    /// `out = m · x` for the same `x` as the previous call: a Q8 matrix reuses
    /// its quantization when the groups agree.
    fn matvec_again(&mut self, m: &Matrix<'_>, out: &mut [f32], x: &[f32]) -> Result<(), Error> {
        let Some(group) = m.q8_group() else {
            return m.matvec(out, x, None);
        };
        let n = x.len();
        let got = self.values.len();
        let (Some(values), Some(scales)) = (
            self.values.get_mut(..n),
            self.scales.get_mut(..n.checked_div(group).unwrap_or(0)),
        ) else {
            return Err(Error::BufferTooSmall { needed: n, got });
        };
        if self.group != group {
            q8::quantize(x, group, values, scales)?;
            self.group = group;
        }
        m.matvec(out, x, Some(QuantizedInput { values, scales }))
    }
}

/// The activations of one forward step (see [`super::ArenaLayout`]).
#[derive(Debug)]
struct Scratch<'s> {
    x: &'s mut [f32],
    xb: &'s mut [f32],
    xb2: &'s mut [f32],
    hb: &'s mut [f32],
    hb2: &'s mut [f32],
    ffn_out: &'s mut [f32],
    q: &'s mut [f32],
    k: &'s mut [f32],
    v: &'s mut [f32],
    att: &'s mut [f32],
    logits: &'s mut [f32],
    quant: Quantized<'s>,
}

/// Where the feed-forward output goes.
#[derive(Debug, Clone, Copy)]
enum FfnOut {
    /// Over the normed input `xb` (a sequential block adds it to `x` next).
    Xb,
    /// Into `ffn_out` (a parallel block adds it with the attention output).
    Parallel,
}

/// One generation: the position, the KV cache and the activations, all in the arena.
#[derive(Debug)]
pub struct Session<'s> {
    model: &'s Model<'s>,
    context: usize,
    pos: usize,
    s: Scratch<'s>,
    cache: Cache<'s>,
}

impl<'s> Session<'s> {
    /// Opens a session of `context` positions over `arena` (at least
    /// [`Model::arena_bytes`]`(context)` bytes; any alignment).
    ///
    /// Errors: `context` zero ([`Error::ZeroDimension`]) or beyond the image's
    /// tables ([`Error::PositionOutOfRange`]); the arena too small
    /// ([`Error::BufferTooSmall`] with the bytes needed for this arena's alignment).
    pub fn new(model: &'s Model<'s>, arena: &'s mut [u8], context: usize) -> Result<Self, Error> {
        Self::with_kv(model, arena, context, KvFormat::F32)
    }

    /// [`Session::new`] with the KV cache in format `kv`; the arena must hold
    /// [`Model::arena_bytes_with`]`(context, kv)` bytes.
    pub fn with_kv(
        model: &'s Model<'s>,
        arena: &'s mut [u8],
        context: usize,
        kv: KvFormat,
    ) -> Result<Self, Error> {
        if context == 0 {
            return Err(Error::ZeroDimension);
        }
        if context > model.max_context() {
            return Err(Error::PositionOutOfRange {
                position: context - 1,
                len: model.max_context(),
            });
        }
        let got = arena.len();
        let pad = arena.as_ptr().align_offset(4);
        let layout = model.arena_layout(context, kv);
        let needed = layout.bytes().saturating_add(pad);
        if pad == usize::MAX || got < needed {
            return Err(Error::BufferTooSmall { needed, got });
        }
        let Carved {
            x,
            xb,
            xb2,
            hb,
            hb2,
            ffn_out,
            q,
            k,
            v,
            att,
            logits,
            keys,
            values,
            q8_scales,
            q8_values,
            keys_i8,
            values_i8,
        } = layout.carve(arena)?;
        let (l, kvd) = (model.dims.n_layers, model.dims.kv_dim);
        let cache = match kv {
            KvFormat::F32 => Cache::F32(KvCache::new(keys, values, l, context, kvd)?),
            KvFormat::Q8 => Cache::Q8(KvCacheQ8::new(
                keys_i8, values_i8, keys, values, l, context, kvd,
            )?),
        };
        Ok(Session {
            model,
            context,
            pos: 0,
            s: Scratch {
                x,
                xb,
                xb2,
                hb,
                hb2,
                ffn_out,
                q,
                k,
                v,
                att,
                logits,
                quant: Quantized {
                    values: q8_values,
                    scales: q8_scales,
                    group: 0,
                },
            },
            cache,
        })
    }

    /// The model.
    pub const fn model(&self) -> &'s Model<'s> {
        self.model
    }

    /// The position the next [`Session::step`] runs at (tokens consumed so far).
    pub const fn position(&self) -> usize {
        self.pos
    }

    /// The session's context length.
    pub const fn context(&self) -> usize {
        self.context
    }

    /// Starts over at position 0 (the cache is overwritten as positions are reused).
    pub fn reset(&mut self) {
        self.pos = 0;
    }

    /// The logits of the last step.
    pub fn logits(&self) -> &[f32] {
        self.s.logits
    }

    /// The logits of the last step, mutable (samplers scale them in place).
    pub fn logits_mut(&mut self) -> &mut [f32] {
        self.s.logits
    }

    /// Runs one forward pass for `token` at [`Session::position`] and advances;
    /// returns the logits (`vocab_size` values).
    ///
    /// Errors: `token >= vocab_size` ([`Error::TokenOutOfRange`]); every position
    /// used ([`Error::ContextFull`]). Neither changes the session.
    pub fn step(&mut self, token: u32) -> Result<&[f32], Error> {
        let m = self.model;
        let vocab_size = m.vocab_size();
        if token as usize >= vocab_size {
            return Err(Error::TokenOutOfRange { token, vocab_size });
        }
        let pos = self.pos;
        if pos >= self.context {
            return Err(Error::ContextFull {
                context: self.context,
            });
        }
        // The cache format is chosen once per step: the layers are compiled
        // for each.
        forward(m, &mut self.cache, &mut self.s, token, pos)?;
        self.pos += 1;
        Ok(self.s.logits)
    }
}

/// One forward pass for `token` at `pos`, leaving the logits in `s.logits`:
/// `run.c`'s `forward`.
#[inline(never)]
fn forward(
    m: &Model<'_>,
    cache: &mut Cache<'_>,
    s: &mut Scratch<'_>,
    token: u32,
    pos: usize,
) -> Result<(), Error> {
    s.embed(m, token, pos)?;
    for l in 0..m.dims.n_layers {
        let w = m.layer(l)?;
        s.qkv(m, &w, pos)?;
        match cache {
            Cache::F32(c) => c.store(l, pos, s.k, s.v)?,
            Cache::Q8(c) => c.store(l, pos, s.k, s.v)?,
        }
        if m.is_parallel() {
            // A parallel block's feed-forward network reads the layer input: run
            // it before attention overwrites `xb`.
            s.parallel_ffn_norm(m, &w)?;
            s.ffn(m, &w, FfnOut::Parallel)?;
        }
        match cache {
            Cache::F32(c) => s.attend(m, c, l, pos)?,
            Cache::Q8(c) => s.attend(m, c, l, pos)?,
        }
        s.attn_out(m, &w)?;
        if m.is_parallel() {
            s.parallel_residual();
        } else {
            s.ffn(m, &w, FfnOut::Xb)?;
            add(
                s.x,
                s.xb.get(..m.dims.dim)
                    .ok_or(Error::InconsistentDimensions)?,
            );
        }
    }
    s.classifier(m)
}

impl Scratch<'_> {
    /// `x` = the token's embedding row, scaled, plus the position table row,
    /// normed (BLOOM).
    #[inline(never)]
    fn embed(&mut self, m: &Model<'_>, token: u32, pos: usize) -> Result<(), Error> {
        m.embedding.row_into(token as usize, self.x)?;
        if let Some(scale) = m.embed_scale {
            for v in self.x.iter_mut() {
                *v *= scale;
            }
        }
        if let Position::Table(table) = &m.position {
            table.add_to(pos, self.x)?;
        }
        if let Some(n) = &m.embed_norm {
            m.norm.apply_in_place(self.x, n);
        }
        Ok(())
    }

    /// `xb = norm(x)`; `q, k, v = Wq·xb, Wk·xb, Wv·xb` (+ biases); q and k
    /// rotated at `pos` by the rotation hook.
    #[inline(never)]
    fn qkv(&mut self, m: &Model<'_>, w: &LayerWeights<'_>, pos: usize) -> Result<(), Error> {
        let d = &m.dims;
        let xb = self
            .xb
            .get_mut(..d.dim)
            .ok_or(Error::InconsistentDimensions)?;
        m.norm.apply(xb, self.x, &w.attn_norm);
        self.quant.matvec(&w.wq, self.q, xb)?;
        self.quant.matvec_again(&w.wk, self.k, xb)?;
        self.quant.matvec_again(&w.wv, self.v, xb)?;
        if let Some([bq, bk, bv]) = w.qkv_bias {
            add(self.q, bq);
            add(self.k, bk);
            add(self.v, bv);
        }
        if let Position::Rope { table, layout } = &m.position {
            table.rotate_heads(*layout, pos, d.head_dim, self.q)?;
            table.rotate_heads(*layout, pos, d.head_dim, self.k)?;
        }
        Ok(())
    }

    /// A parallel block's feed-forward input: GPT-NeoX's own norm of the layer
    /// input into `xb` (GPT-J and Phi share the attention's, already there).
    #[inline(always)]
    fn parallel_ffn_norm(&mut self, m: &Model<'_>, w: &LayerWeights<'_>) -> Result<(), Error> {
        if let (Residual::Parallel, Some(n)) = (m.residual, &w.ffn_norm) {
            let xb = self
                .xb
                .get_mut(..m.dims.dim)
                .ok_or(Error::InconsistentDimensions)?;
            m.norm.apply(xb, self.x, n);
        }
        Ok(())
    }

    /// Attention of `q` over the cache at `pos` into `xb[..q_dim]`, with the
    /// score-bias hook.
    #[inline(always)]
    fn attend<C: KvRead>(
        &mut self,
        m: &Model<'_>,
        cache: &C,
        l: usize,
        pos: usize,
    ) -> Result<(), Error> {
        let out = self
            .xb
            .get_mut(..m.dims.q_dim)
            .ok_or(Error::InconsistentDimensions)?;
        let bufs = AttnBuffers { att: self.att, out };
        match &m.position {
            Position::Alibi(bias) => {
                attn::attend_cached(&m.attn, cache, l, pos, self.q, bias, bufs)
            }
            Position::T5(bias) => attn::attend_cached(&m.attn, cache, l, pos, self.q, bias, bufs),
            _ => attn::attend_cached(&m.attn, cache, l, pos, self.q, &NoBias, bufs),
        }
    }

    /// `a = Wo·att (+ bo)`; for a sequential block `x += a` and `xb = norm₂(x)`,
    /// the feed-forward network's input.
    #[inline(never)]
    fn attn_out(&mut self, m: &Model<'_>, w: &LayerWeights<'_>) -> Result<(), Error> {
        let d = &m.dims;
        let att = self
            .xb
            .get(..d.q_dim)
            .ok_or(Error::InconsistentDimensions)?;
        self.quant.matvec(&w.wo, self.xb2, att)?;
        if let Some(b) = w.o_bias {
            add(self.xb2, b);
        }
        if !m.is_parallel() {
            add(self.x, self.xb2);
            let xb = self
                .xb
                .get_mut(..d.dim)
                .ok_or(Error::InconsistentDimensions)?;
            m.norm
                .apply(xb, self.x, w.ffn_norm.as_ref().ok_or(Error::MissingTensor)?);
        }
        Ok(())
    }

    /// A parallel block's sum, in Hugging Face's order: GPT-J and Phi
    /// `attn_output + feed_forward_hidden_states + residual`, GPT-NeoX
    /// `mlp_output + attn_output + hidden_states`.
    #[inline(never)]
    fn parallel_residual(&mut self) {
        for ((x, &a), &f) in self
            .x
            .iter_mut()
            .zip(self.xb2.iter())
            .zip(self.ffn_out.iter())
        {
            // Both orders are (a + f) + x: `a + f` and `f + a` are the same f32.
            *x += a + f;
        }
    }

    /// `x = norm(x)`; logits `= Wcls·x (+ bias)`.
    #[inline(never)]
    fn classifier(&mut self, m: &Model<'_>) -> Result<(), Error> {
        m.norm.apply_in_place(self.x, &m.final_norm);
        self.quant.matvec(&m.output, self.logits, self.x)?;
        if let Some(b) = m.output_bias {
            add(self.logits, b);
        }
        Ok(())
    }

    /// The feed-forward network of `w` on `xb[..dim]`, into `out`: SwiGLU
    /// `W2·(silu(W1·x + b1) · (W3·x + b3)) + b2` as `run.c`, or the MLP
    /// `down·gelu(up·x + b_up) + b_down`.
    #[inline(never)]
    fn ffn(&mut self, m: &Model<'_>, w: &LayerWeights<'_>, out: FfnOut) -> Result<(), Error> {
        let dim = m.dims.dim;
        let xin = self.xb.get(..dim).ok_or(Error::InconsistentDimensions)?;
        match (m.ffn, &w.w_gate) {
            (FfnKind::SwiGlu, Some(gate)) => {
                self.quant.matvec(gate, self.hb, xin)?;
                self.quant.matvec_again(&w.w_up, self.hb2, xin)?;
                if let Some(b) = w.b_gate {
                    add(self.hb, b);
                }
                if let Some(b) = w.b_up {
                    add(self.hb2, b);
                }
                for (h, &u) in self.hb.iter_mut().zip(self.hb2.iter()) {
                    *h = silu(*h) * u;
                }
            }
            (FfnKind::SwiGlu, None) => return Err(Error::MissingTensor),
            (FfnKind::GeluTanh | FfnKind::Gelu, _) => {
                self.quant.matvec(&w.w_up, self.hb, xin)?;
                if let Some(b) = w.b_up {
                    add(self.hb, b);
                }
                if m.ffn == FfnKind::Gelu {
                    self.hb.iter_mut().for_each(|v| *v = gelu(*v));
                } else {
                    self.hb.iter_mut().for_each(|v| *v = gelu_tanh(*v));
                }
            }
        }
        let out = match out {
            FfnOut::Xb => self
                .xb
                .get_mut(..dim)
                .ok_or(Error::InconsistentDimensions)?,
            FfnOut::Parallel => &mut *self.ffn_out,
        };
        self.quant.matvec(&w.w_down, out, self.hb)?;
        if let Some(b) = w.b_down {
            add(out, b);
        }
        Ok(())
    }
}
