//! Hugging Face checkpoints (`config.json` + `model.safetensors`) into model images.
//!
//! The families and how each one's tensors map onto the image are in
//! [`super::families`]: Llama, Qwen2, Mistral and Phi-3 (RMSNorm, SwiGLU, RoPE,
//! grouped-query attention: the Llama block), and GPT-2, XGLM, BLOOM, MPT, GPT-J,
//! GPT-NeoX and Phi (LayerNorm, GELU MLPs, sequential or parallel blocks; learned,
//! sinusoidal, ALiBi or partial RoPE positions), one image format for all: the
//! header's [`microformer::image::Block`] says how a layer is built. This module
//! reads the checkpoint, cuts fused tensors apart (q/k/v stored one after the
//! other, per head, or in GPT-2's transposed `Conv1D` layout), quantizes, and
//! writes the image.
//!
//! Every tensor in the file must be used (buffers transformers drops on loading —
//! `rotary_emb.inv_freq`, GPT-2/GPT-J `attn.bias`/`attn.masked_bias`, GPT-NeoX
//! `attention.bias`/`attention.masked_bias` — excepted): an unknown tensor means
//! a model part microformer would not run (a q/k norm, MPT biases with
//! `no_bias: false`, ...), and converting it silently would give wrong logits.

use std::path::Path;

use microformer::image::{self, Header, TensorKind, TensorSource};
use microformer::num::{fp16, q8};

use super::config::HfConfig;
use super::families::plan;
use super::spec::{Source, Spec};
use super::weights::Weights;
use crate::error::{bail, fail, Error, Result};
use crate::limits::{table_limit, with_table_limit};
use crate::storage::{default_group_size, Storage};
use crate::tokenizer::check_tokenizer;

/// Conversion options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Positions of the image; default `min(max_position_embeddings, 2048)`
    /// (BLOOM, which has no limit: 2048).
    pub context: Option<usize>,
    /// Matrix storage; `Q8 { group_size: None }` picks `export.py`'s default
    /// group for the model width. Q8 stores the matrices whose rows are whole
    /// groups (the others stay f32); F16 every matrix.
    pub storage: Storage,
    /// A llama2.c tokenizer file to embed.
    pub tokenizer: Option<Vec<u8>>,
    /// A RoPE scaling rule to apply to a model trained without one.
    pub rope_scaling: Option<super::extend::RopeScaling>,
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::config(format!("{what} {v} is too large")))
}

/// An image tensor before it is laid out.
enum Owned {
    F32(Vec<f32>),
    Q8(Vec<i8>, Vec<f32>),
    U8(Vec<u8>),
    F16(Vec<u16>),
}

impl Owned {
    fn source(&self) -> TensorSource<'_> {
        match self {
            Owned::F32(v) => TensorSource::F32(v),
            Owned::Q8(values, scales) => TensorSource::Q8 { values, scales },
            Owned::U8(b) => TensorSource::U8(b),
            Owned::F16(v) => TensorSource::F16(v),
        }
    }
}

/// What was converted (for the summary line).
pub struct Summary {
    /// The image header.
    pub header: Header,
    /// The model type.
    pub model_type: &'static str,
    /// Things the user should know (config values the image could not keep, ...).
    pub warnings: Vec<String>,
}

/// The values of one source tensor.
fn values(w: &mut Weights, spec: &Spec, src: &Source, opts: &Options) -> Result<Owned> {
    let name_of = |w: &Weights, name: &str| w.resolve(name, spec.prefix, spec.head_names);
    Ok(Owned::F32(match src {
        Source::Tensor { name, shape } => {
            let n = name_of(w, name);
            w.get(&n, shape)?
        }
        Source::Conv1d {
            name,
            inp,
            out,
            rows,
        } => {
            let n = name_of(w, name);
            let v = w.cached(&n, &[*inp, *out])?;
            // stored [inp][out]; the image wants [out][inp]
            let mut t = Vec::with_capacity(rows.len() * inp);
            for r in rows.clone() {
                t.extend((0..*inp).map(|c| v[c * out + r]));
            }
            t
        }
        Source::Rows { name, shape, rows } => {
            let n = name_of(w, name);
            let cols: usize = shape.iter().skip(1).product();
            let v = w.cached(&n, shape)?;
            match v.get(rows.start * cols..rows.end * cols) {
                Some(part) => part.to_vec(),
                None => fail!("internal: rows {rows:?} outside {name} {shape:?}"),
            }
        }
        Source::Heads {
            name,
            shape,
            heads,
            head_dim,
            part,
        } => {
            let n = name_of(w, name);
            let cols: usize = shape.iter().skip(1).product();
            let v = w.cached(&n, shape)?;
            let mut t = Vec::with_capacity(heads * head_dim * cols);
            for h in 0..*heads {
                let start = (h * 3 + part) * head_dim * cols;
                match v.get(start..start + head_dim * cols) {
                    Some(rows) => t.extend_from_slice(rows),
                    None => fail!("internal: head {h} outside {name} {shape:?}"),
                }
            }
            t
        }
        Source::Computed(kind) if kind.is_bytes() => {
            match spec.computed.iter().find(|(k, _)| k == kind) {
                // Byte tables (T5 buckets) are kept as small integers.
                Some((_, v)) => return Ok(Owned::U8(v.iter().map(|&x| x as u8).collect())),
                None => fail!("internal: no computed {kind:?}"),
            }
        }
        Source::Computed(kind) => match spec.computed.iter().find(|(k, _)| k == kind) {
            Some((_, v)) => v.clone(),
            None => fail!("internal: no computed {kind:?}"),
        },
        Source::Tokenizer => match &opts.tokenizer {
            Some(t) => return Ok(Owned::U8(t.clone())),
            None => fail!("internal: tokenizer slot without a tokenizer"),
        },
    }))
}

/// Checks every checkpoint tensor `spec` reads against the shards' headers (its
/// presence and shape), in the order the conversion reads them, without reading
/// their data.
fn check_shapes(w: &Weights, spec: &Spec) -> Result<()> {
    for (kind, layer) in image::slots(&spec.header) {
        let (name, shape) = match spec.source(kind, layer)? {
            Source::Tensor { name, shape }
            | Source::Rows { name, shape, .. }
            | Source::Heads { name, shape, .. } => (name, shape),
            Source::Conv1d { name, inp, out, .. } => (name, vec![inp, out]),
            Source::Computed(_) | Source::Tokenizer => continue,
        };
        w.check_shape(&w.resolve(&name, spec.prefix, spec.head_names), &shape)?;
    }
    Ok(())
}

/// Called once per image tensor as the conversion reads it: `(done, total, label)`.
pub type OnTensor<'a> = &'a mut dyn FnMut(usize, usize, &str);

/// Converts a Hugging Face checkpoint directory into image bytes; `on_tensor`
/// follows the progress (a progress bar).
pub fn convert(dir: &Path, opts: &Options, on_tensor: OnTensor<'_>) -> Result<(Vec<u8>, Summary)> {
    let cfg_path = dir.join("config.json");
    if !cfg_path.exists() {
        fail!("{}: no config.json in this directory", dir.display());
    }
    let mut cfg = HfConfig::load(&cfg_path)?;
    if let Some(s) = &opts.rope_scaling {
        cfg = s.apply(&cfg).map_err(|e| e.context(cfg_path.display()))?;
    }
    let in_config = |e: Error| e.context(cfg_path.display());
    // The config's dimensions are checked against the checkpoint's tensor shapes
    // before anything is allocated from them: a plan for one position (its tables
    // hold one row) names every tensor and its shape, and the shards' headers must
    // agree. Reading the shards allocates only what the files hold.
    // A plan that fails for one position is planned for the asked context at once
    // (its configuration error comes first, as it would without the probe; if it
    // succeeds, as an XGLM `pad_token_id` past the one-position table can, its
    // shapes are checked as they are read, its tables within
    // `limits::MAX_TABLE_ENTRIES`; otherwise they are bounded by the checkpoint's
    // size, below).
    let (probe, planned) = match plan(&cfg, Some(1)) {
        Ok(p) => (Some(p), None),
        Err(_) => (None, Some(plan(&cfg, opts.context).map_err(in_config)?)),
    };
    let mut w = Weights::load(dir)?;
    if let Some(probe) = probe {
        check_shapes(&w, &probe.with_qkv_bias(|n| w.has(n))?)?;
    }
    // The tables planned for the asked context are bounded by the checkpoint's
    // own size (`limits::table_limit`): a few bytes of config cannot ask for
    // hundreds of megabytes.
    let spec = match planned {
        Some(s) => s,
        None => with_table_limit(table_limit(w.bytes()), || plan(&cfg, opts.context))
            .map_err(in_config)?,
    };
    let mut spec = spec.with_qkv_bias(|n| w.has(n))?;

    let dim = spec.header.dim as usize;
    let group_size = match opts.storage {
        Storage::F32 | Storage::F16 => 0,
        Storage::Q8 { group_size: None } => {
            // A checkpoint may name its own (microformer's, trained for it).
            #[derive(serde::Deserialize, Default)]
            #[serde(default)]
            struct Group {
                q8_group_size: Option<super::config::keys::Count>,
            }
            let own: Group = cfg.view()?;
            let g =
                super::config::keys::count(own.q8_group_size).unwrap_or(default_group_size(dim));
            if g % 4 != 0 {
                bail!(
                    "no default Q8 group size for hidden_size {dim}: give --group-size (a multiple of 4)"
                );
            }
            g
        }
        Storage::Q8 {
            group_size: Some(g),
        } => g,
    };
    let header = &mut spec.header;
    header.group_size = u32_of(group_size, "--group-size")?;
    if opts.tokenizer.is_some() {
        header.flags |= image::FLAG_TOKENIZER;
    }
    header.validate().map_err(|e| {
        Error::config(format!(
            "{}: these dimensions do not make a valid image: {e}",
            cfg_path.display()
        ))
    })?;
    let header = *header;
    if let Some(t) = &opts.tokenizer {
        let vocab = header.vocab_size as usize;
        check_tokenizer(t, vocab).map_err(|e| {
            Error::input(format!(
                "the tokenizer does not fit the model's vocabulary of {vocab}: {e}"
            ))
        })?;
    }

    let slots: Vec<(TensorKind, u16)> = image::slots(&header).collect();
    let mut tensors: Vec<Owned> = Vec::with_capacity(slots.len());
    for (done, &(kind, layer)) in slots.iter().enumerate() {
        let src = spec.source(kind, layer)?;
        let label = src.label();
        let values = values(&mut w, &spec, &src, opts)?;
        on_tensor(done + 1, slots.len(), &label);
        let owned = match values {
            Owned::F32(v) => {
                let (_, cols) = header.expected_shape(kind);
                if group_size != 0 && kind.quantizable() && cols % group_size == 0 {
                    let mut q = vec![0i8; v.len()];
                    let mut s = vec![0f32; v.len() / group_size];
                    q8::quantize(&v, group_size, &mut q, &mut s)
                        .map_err(|e| Error::input(format!("cannot quantize {label}: {e}")))?;
                    Owned::Q8(q, s)
                } else if opts.storage == Storage::F16 && kind.quantizable() {
                    let h: Vec<u16> = v.iter().map(|&x| fp16::from_f32(x)).collect();
                    if let Some(i) = h.iter().position(|&x| !fp16::is_finite(x)) {
                        fail!(
                            "{label}: value {} at index {i} does not fit binary16 (|x| > 65504 or NaN): use --quant f32",
                            v[i]
                        );
                    }
                    Owned::F16(h)
                } else {
                    Owned::F32(v)
                }
            }
            other => other,
        };
        tensors.push(owned);
    }
    // With tied embeddings a stored head is the embedding again (or unused).
    if header.has(image::FLAG_TIED_EMBEDDINGS) {
        for n in spec.head_names {
            w.mark_used(n);
        }
    }
    let unused = w.unused();
    if !unused.is_empty() {
        let list: Vec<&str> = unused.iter().take(5).copied().collect();
        fail!(
            "{} tensor(s) of the checkpoint would be ignored ({}{}): this model has parts microformer does not run",
            unused.len(),
            list.join(", "),
            if unused.len() > 5 { ", ..." } else { "" }
        );
    }
    let sources: Vec<TensorSource<'_>> = tensors.iter().map(Owned::source).collect();
    let len = image::image_len(&header, &sources);
    let mut out = vec![0u8; len];
    let n = image::write(&header, &sources, &mut out)
        .map_err(|e| Error::input(format!("cannot write the image: {e}")))?;
    out.truncate(n);
    Ok((
        out,
        Summary {
            header,
            model_type: spec.model_type,
            warnings: spec.warnings,
        },
    ))
}
