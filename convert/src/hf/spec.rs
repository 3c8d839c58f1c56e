//! A checkpoint's conversion plan ([`Spec`]): the image header and, for every
//! image tensor, where its values come from ([`Source`]); and the pieces every
//! family's plan is made of (dimensions, the header, config values with their
//! defaults, computed tables).

use std::ops::Range;

use microformer::image::{
    self, Arch, Block, FfnKind, Header, NormKind, PositionHook, Residual, TensorKind,
};
use microformer::pos::alibi::{self, AlibiRule};

use super::config::keys::{count, number, required_any, Count, Name, Number, TokenId};
use super::config::{HfConfig, PairLayout};
use super::rope_tables::rope_tables;
use crate::error::{bail, Error, Result};
use crate::limits::{check_dim, current_table_limit, table_entries};

/// Where an image tensor's values come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A checkpoint tensor used as stored (`[rows][cols]` row-major, or a vector).
    Tensor {
        /// Tensor name.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// A GPT-2 `Conv1D` weight, stored `[inp][out]`: transposed to `[out][inp]`,
    /// then rows `rows` of that (one of q, k, v of a fused `c_attn`).
    Conv1d {
        /// Tensor name.
        name: String,
        /// Input width (stored rows).
        inp: usize,
        /// Output width (stored columns).
        out: usize,
        /// Output rows taken.
        rows: Range<usize>,
    },
    /// Rows `rows` of a fused tensor `shape` (`[total]` or `[total][cols]`): a
    /// part of a fused q/k/v or gate/up stored one after the other.
    Rows {
        /// Tensor name.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
        /// Rows (elements of a vector) taken.
        rows: Range<usize>,
    },
    /// Part `part` (0 q, 1 k, 2 v) of a fused QKV whose rows are grouped per head,
    /// `[heads][3][head_dim]` (BLOOM and GPT-NeoX `query_key_value`).
    Heads {
        /// Tensor name.
        name: String,
        /// Its shape (`[3·heads·head_dim]` or `[3·heads·head_dim][cols]`).
        shape: Vec<usize>,
        /// Heads.
        heads: usize,
        /// Rows per head and part.
        head_dim: usize,
        /// 0 q, 1 k, 2 v.
        part: usize,
    },
    /// Values the converter computed (RoPE tables, ALiBi slopes, a sinusoidal table).
    Computed(TensorKind),
    /// The tokenizer given with `--tokenizer`.
    Tokenizer,
}

impl Source {
    /// A plain tensor.
    pub fn t(name: String, shape: &[usize]) -> Source {
        Source::Tensor {
            name,
            shape: shape.to_vec(),
        }
    }

    /// A human-readable label (progress lines, errors).
    pub fn label(&self) -> String {
        match self {
            Source::Tensor { name, .. } => name.clone(),
            Source::Conv1d { name, rows, .. } => format!("{name} [rows {rows:?}, transposed]"),
            Source::Rows { name, rows, .. } => format!("{name} [rows {rows:?}]"),
            Source::Heads { name, part, .. } => {
                format!("{name} [{} of each head]", ["q", "k", "v"][part % 3])
            }
            Source::Computed(k) => format!("computed {k:?}"),
            Source::Tokenizer => "tokenizer".into(),
        }
    }
}

/// Rows of q, k or v (or their biases) in a projection fused as q, then k, then v.
pub fn qkv_rows(kind: TensorKind, q_dim: usize, kv_dim: usize) -> Range<usize> {
    use TensorKind::*;
    match kind {
        Wq | Bq => 0..q_dim,
        Wk | Bk => q_dim..q_dim + kv_dim,
        _ => q_dim + kv_dim..q_dim + 2 * kv_dim,
    }
}

/// Which part of a fused QKV (0 q, 1 k, 2 v) an image tensor is.
pub fn qkv_part(kind: TensorKind) -> usize {
    use TensorKind::*;
    match kind {
        Wq | Bq => 0,
        Wk | Bk => 1,
        _ => 2,
    }
}

/// Tensors the converter computes, by kind.
pub type Computed = Vec<(TensorKind, Vec<f32>)>;

/// A family's map from image tensors (`kind`, `layer`) to checkpoint tensors.
pub type SourceFn = fn(&Spec, TensorKind, u16) -> Result<Source>;

/// A checkpoint's conversion plan.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The `model_type`.
    pub model_type: &'static str,
    /// The image header (no tokenizer flag, `group_size` 0; the converter sets them).
    pub header: Header,
    /// Checkpoint name prefix of the base model (`model.`, `transformer.`,
    /// `gpt_neox.`): checkpoints saved without it (the original GPT-2 and BLOOM
    /// files) are read too.
    pub prefix: &'static str,
    /// Tensors the converter computed.
    pub computed: Computed,
    /// Things the user should know (printed by `convert`).
    pub warnings: Vec<String>,
    /// The names the checkpoint may give the output head's weight.
    pub head_names: &'static [&'static str],
    /// A tensor whose presence means q/k/v biases (`FLAG_QKV_BIAS`), for the
    /// families whose config does not say (Qwen2 among the Llama family).
    pub qkv_bias_probe: Option<&'static str>,
    /// The family's tensor names.
    pub sources: SourceFn,
}

impl Spec {
    /// Where image tensor `(kind, layer)` comes from.
    pub fn source(&self, kind: TensorKind, layer: u16) -> Result<Source> {
        match kind {
            TensorKind::Tokenizer => Ok(Source::Tokenizer),
            _ if self.computed.iter().any(|(k, _)| *k == kind) => Ok(Source::Computed(kind)),
            _ => (self.sources)(self, kind, layer),
        }
    }

    /// The error for an image tensor a family has no source for (the header's
    /// flags and block ask for a tensor the family does not have).
    pub fn no_source(&self, kind: TensorKind) -> Error {
        Error::input(format!(
            "internal: a {} image has no {kind:?} tensor",
            self.model_type
        ))
    }

    /// Sets `FLAG_QKV_BIAS` when the checkpoint has the family's probe tensor
    /// (`has` says whether a tensor is present).
    pub fn with_qkv_bias(mut self, has: impl Fn(&str) -> bool) -> Result<Spec> {
        if self.qkv_bias_probe.is_some_and(has) {
            self.header.flags |= image::FLAG_QKV_BIAS;
            self.header.validate()?;
        }
        Ok(self)
    }
}

/// A required dimension under the first present of several names (a family's
/// `attribute_map`), > 0.
pub fn dim_any(names: &[(Option<Count>, &str)]) -> Result<usize> {
    let found: Vec<(Option<usize>, &str)> = names.iter().map(|&(v, k)| (count(v), k)).collect();
    match required_any(&found)? {
        0 => bail!("\"{}\" is 0", names[0].1),
        v => Ok(v),
    }
}

/// A normalization epsilon with its default: finite and >= 0.
pub fn eps(v: Option<Number>, key: &str, default: f64) -> Result<f64> {
    let e = number(v).unwrap_or(default);
    if !(e.is_finite() && e >= 0.0) {
        bail!("{key} must be a finite number >= 0, got {e}");
    }
    Ok(e)
}

/// The GELU variant of an activation name (`ACT2FN` in transformers'
/// `activations.py`): the key `key`'s value, or `default`.
pub fn gelu(v: Option<&Name>, key: &str, default: &str) -> Result<FfnKind> {
    Ok(match v.map_or(default, |n| n.0.as_str()) {
        // tanh approximation: NewGELU, GELUTanh (torch approximate="tanh"), FastGELU, AccurateGELU
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_python_tanh" | "gelu_fast" | "gelu_accurate" => {
            FfnKind::GeluTanh
        }
        // exact erf GELU
        "gelu" | "gelu_python" => FfnKind::Gelu,
        other => bail!(
            "{key} \"{other}\" is not supported (microformer runs gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, gelu_accurate)"
        ),
    })
}

/// `bos_token_id`/`eos_token_id` (the key `key`'s value), default `default`: an
/// id outside the vocabulary (GPT-2's 50256 in a tiny test model) cannot be
/// stored, so the image uses 0 instead and `warnings` says so.
pub fn token(
    id: Option<TokenId>,
    key: &str,
    default: u32,
    vocab: usize,
    warnings: &mut Vec<String>,
) -> u32 {
    let fallback = if (default as usize) < vocab {
        default
    } else {
        0
    };
    match id.and_then(|t| t.0) {
        None => fallback,
        Some(i) if usize::try_from(i).is_ok_and(|i| i < vocab) => i as u32,
        Some(i) => {
            warnings.push(format!(
                "{key} {i} is outside the vocabulary of {vocab}: the image uses {fallback}"
            ));
            fallback
        }
    }
}

/// Dimensions shared by every family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Model width.
    pub dim: usize,
    /// Feed-forward width.
    pub hidden: usize,
    /// Layers.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Head dimension (0 when the width is not a multiple of the heads).
    pub head_dim: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// The checkpoint's trained context (0: none given).
    pub train: usize,
}

/// `dim / heads`, or 0 when `heads` does not divide `dim` (which
/// [`Dims::check`] reports).
pub fn head_dim_of(dim: usize, heads: usize) -> usize {
    if heads != 0 && dim % heads == 0 {
        dim / heads
    } else {
        0
    }
}

/// The header fields a family chooses besides its [`Dims`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layout {
    /// Positions of the image (`seq_len`).
    pub context: usize,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Rotated dimensions per head (0 without RoPE).
    pub rotary_dim: usize,
    /// Sliding attention window (0: none).
    pub sliding_window: usize,
    /// Normalization epsilon.
    pub norm_eps: f64,
    /// BOS token id.
    pub bos: u32,
    /// EOS token id.
    pub eos: u32,
    /// The block's shape.
    pub block: Block,
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::config(format!("{what} {v} is too large")))
}

impl Dims {
    /// Checks that no dimension is 0 and that the heads divide.
    pub fn check(&self) -> Result<()> {
        for (k, v) in [
            ("hidden size", self.dim),
            ("feed-forward width", self.hidden),
            ("layer count", self.layers),
            ("head count", self.heads),
            ("key/value head count", self.kv_heads),
            ("vocab_size", self.vocab),
        ] {
            if v == 0 {
                bail!("{k} is 0");
            }
            check_dim(k, v, false)?;
        }
        check_dim("layer count", self.layers, true)?;
        check_dim("head dimension", self.head_dim, false)?;
        if self.heads % self.kv_heads != 0 {
            bail!(
                "{} attention heads are not a multiple of {} key/value heads",
                self.heads,
                self.kv_heads
            );
        }
        if self.head_dim == 0 {
            bail!(
                "hidden size {} is not a multiple of {} heads",
                self.dim,
                self.heads
            );
        }
        Ok(())
    }

    /// The image header of these dimensions and this layout, validated.
    pub fn header(&self, l: &Layout) -> Result<Header> {
        let h = Header {
            arch: Arch::Llama,
            flags: l.flags,
            dim: u32_of(self.dim, "hidden size")?,
            hidden_dim: u32_of(self.hidden, "feed-forward width")?,
            n_layers: u32_of(self.layers, "layer count")?,
            n_heads: u32_of(self.heads, "head count")?,
            n_kv_heads: u32_of(self.kv_heads, "key/value head count")?,
            head_dim: u32_of(self.head_dim, "head dimension")?,
            vocab_size: u32_of(self.vocab, "vocab_size")?,
            seq_len: u32_of(l.context, "--context")?,
            rotary_dim: u32_of(l.rotary_dim, "rotary dimension")?,
            sliding_window: u32_of(l.sliding_window, "sliding_window")?,
            norm_eps: l.norm_eps as f32,
            group_size: 0,
            bos_id: l.bos,
            eos_id: l.eos,
            n_tensors: 0,
            image_len: 0,
            train_context: u32_of(self.train, "max_position_embeddings")?,
            block: l.block,
        };
        h.validate().map_err(|e| {
            Error::config(format!("these dimensions do not make a valid image: {e}"))
        })?;
        Ok(h)
    }
}

/// The context a converted image covers: `--context`, else `default`.
pub fn context(asked: Option<usize>, default: usize) -> Result<usize> {
    let c = asked.unwrap_or(default);
    if c == 0 {
        bail!("--context must be at least 1");
    }
    if c > (1 << 20) {
        bail!("--context {c} is too large (at most {})", 1 << 20);
    }
    Ok(c)
}

/// Default context when `--context` is not given: `min(trained context, 2048)`.
pub const DEFAULT_MAX_CONTEXT: usize = 2048;

/// `min(train, 2048)`, or 2048 when the checkpoint gives no trained context.
pub fn default_context(train: usize) -> usize {
    if train == 0 {
        DEFAULT_MAX_CONTEXT
    } else {
        train.min(DEFAULT_MAX_CONTEXT)
    }
}

/// A GPT-style block: LayerNorm with biases, a GELU MLP, sequential, RoPE.
pub fn gpt_block(ffn: FfnKind, residual: Residual, position: PositionHook) -> Block {
    Block {
        norm: NormKind::LayerNorm,
        ffn,
        residual,
        position,
        ..Block::LLAMA
    }
}

/// A RoPE family's rotation: its rotary dimension, whether pairs are
/// interleaved, and the RoPE tables for `ctx` positions.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotation {
    /// Rotated dimensions per head.
    pub rotary_dim: usize,
    /// Pairs `(2i, 2i+1)` (GPT-J) rather than `(i, i + rotary_dim/2)`.
    pub interleaved: bool,
    /// The cos and sin tables.
    pub tables: Computed,
}

/// The RoPE tables of a RoPE family, checked against its head dimension.
pub fn rotation(cfg: &HfConfig, head_dim: usize, ctx: usize) -> Result<Rotation> {
    let spec = cfg.rope()?;
    if spec.head_dim != head_dim {
        bail!(
            "RoPE head dimension {} disagrees with the head dimension {head_dim}",
            spec.head_dim
        );
    }
    let pairs = spec.rotary_dim / 2;
    if table_entries(ctx, pairs).is_none() {
        let limit = current_table_limit();
        bail!(
            "the RoPE table of {ctx} positions × {pairs} pairs is too large (at most {limit} entries here: give a smaller --context)"
        );
    }
    let (cos, sin) = rope_tables(&spec.config(), ctx).map_err(|e| e.context("RoPE parameters"))?;
    Ok(Rotation {
        rotary_dim: spec.rotary_dim,
        interleaved: spec.layout == PairLayout::Interleaved,
        tables: vec![(TensorKind::RopeCos, cos), (TensorKind::RopeSin, sin)],
    })
}

/// One ALiBi slope per head.
pub fn alibi_slopes(rule: AlibiRule, heads: usize) -> Result<Vec<f32>> {
    let mut s = vec![0f32; heads];
    alibi::slopes(rule, heads, &mut s).map_err(|e| Error::config(format!("ALiBi slopes: {e}")))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_names_follow_act2fn() {
        let m = |s: Option<&str>| gelu(s.map(|s| Name(s.into())).as_ref(), "act", "gelu_new");
        assert_eq!(m(None).unwrap(), FfnKind::GeluTanh);
        assert_eq!(m(Some("gelu")).unwrap(), FfnKind::Gelu);
        assert_eq!(m(Some("gelu_pytorch_tanh")).unwrap(), FfnKind::GeluTanh);
        assert_eq!(m(Some("gelu_fast")).unwrap(), FfnKind::GeluTanh);
        let e = m(Some("relu")).unwrap_err();
        assert!(e.message().contains("act \"relu\" is not supported"), "{e}");
    }

    #[test]
    fn token_ids_outside_the_vocabulary_fall_back() {
        let mut w = Vec::new();
        assert_eq!(token(None, "bos_token_id", 1, 10, &mut w), 1);
        assert_eq!(token(Some(TokenId(None)), "bos_token_id", 1, 10, &mut w), 1);
        assert_eq!(
            token(Some(TokenId(Some(7))), "bos_token_id", 1, 10, &mut w),
            7
        );
        assert!(w.is_empty());
        assert_eq!(
            token(
                Some(TokenId(Some(50256))),
                "eos_token_id",
                50256,
                10,
                &mut w
            ),
            0
        );
        assert_eq!(
            w,
            ["eos_token_id 50256 is outside the vocabulary of 10: the image uses 0"]
        );
    }
}
