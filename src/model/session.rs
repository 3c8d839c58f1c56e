//! A [`Session`]: one generation's position, KV cache and activations, all in
//! the caller's arena, and the forward step that reads like `run.c`'s
//! `forward`: embed, then per layer attention and feed-forward, then the
//! classifier.

use super::arena::Carved;
use super::integer::{self, IntCache, IntScratch};
use super::norm::{add, gelu, gelu_tanh, silu};
use super::view::{Arith, KvFormat, Model};
use super::weights::{LayerWeights, Matrix, QuantizedInput};
use crate::attn::{self, AttnBuffers, KvCache, KvCacheQ8, KvRead, KvWrite};
use crate::image::{FfnKind, Residual};
use crate::num::q8;
use crate::pos::{NoBias, Position};
use crate::Error;
use fixed::types::I16F16;

/// The session's KV cache, in the format chosen when it was opened.
#[derive(Debug)]
enum Cache<'s> {
    F32(KvCache<'s>),
    Q8(KvCacheQ8<'s>),
    /// The integer step's own int8 cache.
    Int8(IntCache<'s, i8>),
    /// The integer step's own int16 cache.
    Int16(IntCache<'s, i16>),
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
    /// The integer step's Q16 logits (empty for the float step).
    int_aux: &'s mut [u32],
    /// The integer step's `i16` query and key (empty for the float step).
    heads: &'s mut [i16],
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
        Self::open(model, arena, context, kv, Arith::Float)
    }

    /// [`Session::with_kv`] with the forward step in arithmetic `arith`; the
    /// arena must hold [`Model::arena_bytes_for`]`(context, kv, arith)` bytes.
    ///
    /// Errors: as [`Session::with_kv`]; a cache the arithmetic has not
    /// ([`Error::InvalidParameter`]: the integer step keeps `Q8` or `Q16`, the
    /// float step `F32` or `Q8`); for [`Arith::Integer`], an image the integer
    /// step cannot run ([`Error::IntegerUnsupported`]).
    pub fn open(
        model: &'s Model<'s>,
        arena: &'s mut [u8],
        context: usize,
        kv: KvFormat,
        arith: Arith,
    ) -> Result<Self, Error> {
        match (arith, kv) {
            (Arith::Integer, KvFormat::F32) | (Arith::Float, KvFormat::Q16) => {
                return Err(Error::InvalidParameter)
            }
            (Arith::Integer, _) => integer::check_model(model)?,
            (Arith::Float, _) => {}
        }
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
        let layout = model.arena_layout_for(context, kv, arith);
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
            int_aux,
            heads,
            keys_i16,
            values_i16,
        } = layout.carve(arena)?;
        let (l, kvd) = (model.dims.n_layers, model.dims.kv_dim);
        let cache = match (arith, kv) {
            (Arith::Integer, KvFormat::Q8) => Cache::Int8(IntCache {
                keys: keys_i8,
                values: values_i8,
                key_scales: bytemuck::must_cast_slice_mut(keys),
                value_scales: bytemuck::must_cast_slice_mut(values),
                positions: context,
            }),
            (Arith::Integer, KvFormat::Q16) => Cache::Int16(IntCache {
                keys: keys_i16,
                values: values_i16,
                key_scales: bytemuck::must_cast_slice_mut(keys),
                value_scales: bytemuck::must_cast_slice_mut(values),
                positions: context,
            }),
            (Arith::Integer, KvFormat::F32) | (Arith::Float, KvFormat::Q16) => {
                return Err(Error::InvalidParameter)
            }
            (Arith::Float, KvFormat::F32) => {
                Cache::F32(KvCache::new(keys, values, l, context, kvd)?)
            }
            (Arith::Float, KvFormat::Q8) => Cache::Q8(KvCacheQ8::new(
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
                int_aux,
                heads,
            },
            cache,
        })
    }

    /// The model.
    pub const fn model(&self) -> &'s Model<'s> {
        self.model
    }

    /// The arithmetic of the forward step.
    pub const fn arith(&self) -> Arith {
        match self.cache {
            Cache::Int8(_) | Cache::Int16(_) => Arith::Integer,
            Cache::F32(_) | Cache::Q8(_) => Arith::Float,
        }
    }

    /// The KV cache's format.
    pub const fn kv(&self) -> KvFormat {
        match self.cache {
            Cache::F32(_) => KvFormat::F32,
            Cache::Q8(_) | Cache::Int8(_) => KvFormat::Q8,
            Cache::Int16(_) => KvFormat::Q16,
        }
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
        if self.advance(token)? {
            // The f32 logits of the Q16 ones (exact below 2^8 in magnitude,
            // rounded to 24 bits above).
            let s = &mut self.s;
            let fixed: &[i32] = bytemuck::must_cast_slice(&*s.att);
            for (o, &l) in s.logits.iter_mut().zip(fixed) {
                *o = l as f32 * (1.0 / 65536.0);
            }
        }
        Ok(self.s.logits)
    }

    /// The integer step's [`Session::step`] without any float: the logits in
    /// Q16.16 ([`I16F16`]), as the step computed them.
    ///
    /// Errors: as [`Session::step`]; a float session ([`Error::IntegerUnsupported`]).
    pub fn step_fixed(&mut self, token: u32) -> Result<&[I16F16], Error> {
        if self.arith() != Arith::Integer {
            return Err(Error::IntegerUnsupported);
        }
        self.advance(token)?;
        Ok(self.logits_fixed())
    }

    /// Checks `token` and the context, runs one forward pass at
    /// [`Session::position`] in the session's arithmetic and advances; returns
    /// whether it was the integer step (its logits in `logits_fixed`).
    fn advance(&mut self, token: u32) -> Result<bool, Error> {
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
        let (qkv, pairs) = (m.dims.q_dim + m.dims.kv_dim, m.dims.rope_words());
        let s = &mut self.s;
        let integer = match &mut self.cache {
            Cache::Int8(c) => {
                integer::forward(m, c, &mut s.integer(qkv, pairs), token, pos).map(|_| true)
            }
            Cache::Int16(c) => {
                integer::forward(m, c, &mut s.integer(qkv, pairs), token, pos).map(|_| true)
            }
            // The cache format is chosen once per step: the layers are compiled
            // for each.
            c => forward(m, c, s, token, pos).map(|_| false),
        }?;
        self.pos += 1;
        Ok(integer)
    }

    /// The Q16 logits of the last integer step (empty for a float session).
    /// The integer step leaves them at the start of the attention scores'
    /// buffer, which is dead after the last layer's attention.
    pub fn logits_fixed(&self) -> &[I16F16] {
        match self.arith() {
            Arith::Integer => self
                .s
                .att
                .get(..self.model.vocab_size())
                .map_or(&[], bytemuck::must_cast_slice),
            Arith::Float => &[],
        }
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
            Cache::Int8(_) | Cache::Int16(_) => return Err(Error::IntegerUnsupported),
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
            Cache::Int8(_) | Cache::Int16(_) => return Err(Error::IntegerUnsupported),
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
    /// The buffers as the integer step's (every buffer reinterpreted as `i32`).
    fn integer(&mut self, qkv: usize, pairs: usize) -> IntScratch<'_> {
        let (heads, xq) = self.heads.split_at_mut(qkv.min(self.heads.len()));
        let (rope, shifts) = self.int_aux.split_at_mut(pairs.min(self.int_aux.len()));
        IntScratch {
            x: bytemuck::must_cast_slice_mut(&mut *self.x),
            xb: bytemuck::must_cast_slice_mut(&mut *self.xb),
            xb2: bytemuck::must_cast_slice_mut(&mut *self.xb2),
            hb: bytemuck::must_cast_slice_mut(&mut *self.hb),
            hb2: bytemuck::must_cast_slice_mut(&mut *self.hb2),
            q: bytemuck::must_cast_slice_mut(&mut *self.q),
            k: bytemuck::must_cast_slice_mut(&mut *self.k),
            v: bytemuck::must_cast_slice_mut(&mut *self.v),
            att: bytemuck::must_cast_slice_mut(&mut *self.att),
            heads,
            xq,
            rope,
            shifts: bytemuck::must_cast_slice_mut(shifts),
            xs: bytemuck::must_cast_slice_mut(&mut *self.quant.scales),
        }
    }

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
