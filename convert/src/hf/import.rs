//! Hugging Face checkpoints (`config.json` + `model.safetensors`) into model images.
//!
//! The families and how each one's tensors map onto the image are in
//! [`crate::hf_families`]: Llama, Qwen2, Mistral and Phi-3 (RMSNorm, SwiGLU, RoPE,
//! grouped-query attention: the Llama block), and GPT-2, XGLM, BLOOM, MPT, GPT-J,
//! GPT-NeoX and Phi (LayerNorm, GELU MLPs, sequential or parallel blocks; learned,
//! sinusoidal, ALiBi or partial RoPE positions), one image format for all: the
//! header's [`microformer::image::Block`] says how a layer is built. This module
//! reads the checkpoint, cuts fused tensors apart (q/k/v stored one after the
//! other, per head, or in GPT-2's transposed `Conv1D` layout), quantizes, and
//! writes the image.
//!
//! ## The RoPE table
//!
//! Rows `[context][rotary_dim/2]`, computed the way Hugging Face's
//! `LlamaRotaryEmbedding.forward` computes them, so that the logits agree:
//! `inv_freq` from [`RopeConfig::inv_freq`] (Hugging Face's formula, evaluated in
//! f64) rounded to f32 — Hugging Face keeps `inv_freq` as a float32 buffer; the
//! angle `(pos as f32) · inv_freq` in f32 (its float32 matmul, one product per
//! entry); `cos`/`sin` of that f32 angle evaluated in f64 and rounded to f32 (torch's
//! float32 `cos`/`sin` are accurate to about an ulp); then multiplied in f32 by the
//! attention factor rounded to f32. Dynamic NTK and LongRoPE choose their
//! frequencies from the sequence length: here the image's context (`--context`).
//! GPT-J builds its table the same way in float32 (`create_sinusoidal_positions`).
//!
//! Every tensor in the file must be used (buffers transformers drops on loading —
//! `rotary_emb.inv_freq`, GPT-2/GPT-J `attn.bias`/`attn.masked_bias`, GPT-NeoX
//! `attention.bias`/`attention.masked_bias` — excepted): an unknown tensor means
//! a model part microformer would not run (a q/k norm, MPT biases with
//! `no_bias: false`, ...), and converting it silently would give wrong logits.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use microformer::image::{self, Header, TensorKind, TensorSource};
use microformer::num::{fp16, q8};
use microformer::pos::rope_scaling::RopeConfig;
use serde_json::Value;

use super::config::HfConfig;
use super::families::{Source, Spec};
use super::shard::{Shard, StError};
use crate::error::{bail, fail, Error, Result};
use crate::files;
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
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::config(format!("{what} {v} is too large")))
}

/// The checkpoint's tensors, possibly over several shards.
struct Weights {
    shards: Vec<Shard>,
    /// name → shard index
    index: BTreeMap<String, usize>,
    used: BTreeSet<String>,
    /// The last fused tensor read (`name`, shape, values): its parts are read in
    /// a row (q, k, v), so it is converted once.
    cache: Option<(String, Vec<usize>, Vec<f32>)>,
}

fn st_err(e: StError) -> Error {
    Error::input(e.to_string())
}

impl Weights {
    /// `model.safetensors`, or the shards named by `model.safetensors.index.json`.
    fn load(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        let files: Vec<std::path::PathBuf> = if single.exists() || !index_path.exists() {
            vec![single]
        } else {
            let text = String::from_utf8(files::read(&index_path)?)
                .map_err(|_| Error::input(format!("{}: not UTF-8", index_path.display())))?;
            let v: Value = serde_json::from_str(&text).map_err(|e| {
                Error::input(format!("{}: invalid JSON: {e}", index_path.display()))
            })?;
            let Some(map) = v.get("weight_map").and_then(Value::as_object) else {
                fail!("{}: no \"weight_map\" object", index_path.display());
            };
            let mut names = BTreeSet::new();
            for f in map.values() {
                match f.as_str() {
                    Some(s) if !s.contains('/') && !s.contains('\\') => {
                        names.insert(s.to_string());
                    }
                    _ => fail!("{}: bad shard name {f}", index_path.display()),
                }
            }
            names.into_iter().map(|n| dir.join(n)).collect()
        };
        let mut shards = Vec::new();
        let mut index = BTreeMap::new();
        for (i, path) in files.iter().enumerate() {
            let st =
                Shard::parse(files::read(path)?).map_err(|e| st_err(e).context(path.display()))?;
            for name in st.names() {
                if index.insert(name.clone(), i).is_some() {
                    fail!("tensor {name} appears in two shards");
                }
            }
            shards.push(st);
        }
        Ok(Weights {
            shards,
            index,
            used: BTreeSet::new(),
            cache: None,
        })
    }

    fn has(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    fn get(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let Some(&i) = self.index.get(name) else {
            return Err(st_err(StError::MissingTensor(name.into())));
        };
        self.used.insert(name.to_string());
        self.shards[i].f32(name, shape).map_err(st_err)
    }

    /// A tensor read through the one-entry cache (fused tensors).
    fn cached(&mut self, name: &str, shape: &[usize]) -> Result<&[f32]> {
        let hit = matches!(&self.cache, Some((n, s, _)) if n == name && s == shape);
        if !hit {
            let v = self.get(name, shape)?;
            self.cache = Some((name.to_string(), shape.to_vec(), v));
        }
        match &self.cache {
            Some((_, _, v)) => Ok(v),
            None => fail!("internal: empty tensor cache"),
        }
    }

    /// The checkpoint's name for `name`: itself, without the base-model `prefix`
    /// (checkpoints saved from the base model: the original GPT-2 and BLOOM files
    /// name `h.0.attn.c_attn.weight`, not `transformer.h.0...`), or, for the output
    /// head, another of its `head_names`. `name` itself when none is present, so
    /// that the error names what the model expects.
    fn resolve(&self, name: &str, prefix: &str, head_names: &[&str]) -> String {
        if self.has(name) {
            return name.to_string();
        }
        if let Some(short) = name.strip_prefix(prefix).filter(|_| !prefix.is_empty()) {
            if self.has(short) {
                return short.to_string();
            }
        }
        if head_names.contains(&name) {
            if let Some(n) = head_names.iter().find(|n| self.has(n)) {
                return (*n).to_string();
            }
        }
        name.to_string()
    }

    /// Tensors never read (buffers excepted).
    fn unused(&self) -> Vec<&str> {
        self.index
            .keys()
            .filter(|n| !self.used.contains(*n) && !Spec::is_buffer(n))
            .map(String::as_str)
            .collect()
    }
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

/// RoPE cos/sin rows for `context` positions, as Hugging Face computes them
/// (see the module documentation).
pub fn rope_tables(cfg: &RopeConfig<'_>, context: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    cfg.validate()?;
    let pairs = cfg.pairs();
    let inv: Vec<f32> = (0..pairs)
        .map(|i| cfg.inv_freq(i, context) as f32)
        .collect();
    let attn = cfg.attention_factor(context) as f32;
    if !(attn.is_finite() && inv.iter().all(|f| f.is_finite())) {
        bail!("the RoPE parameters give non-finite frequencies");
    }
    let mut cos = Vec::with_capacity(context * pairs);
    let mut sin = Vec::with_capacity(context * pairs);
    for p in 0..context {
        for &f in &inv {
            let angle = p as f32 * f;
            let a = f64::from(angle);
            cos.push(a.cos() as f32 * attn);
            sin.push(a.sin() as f32 * attn);
        }
    }
    Ok((cos, sin))
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
    let name_of = |w: &Weights, name: &str| w.resolve(name, spec.prefix, spec.head_names());
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

/// Called once per image tensor as the conversion reads it: `(done, total, label)`.
pub type OnTensor<'a> = &'a mut dyn FnMut(usize, usize, &str);

/// Converts a Hugging Face checkpoint directory into image bytes; `on_tensor`
/// follows the progress (a progress bar).
pub fn convert(dir: &Path, opts: &Options, on_tensor: OnTensor<'_>) -> Result<(Vec<u8>, Summary)> {
    let cfg_path = dir.join("config.json");
    if !cfg_path.exists() {
        fail!("{}: no config.json in this directory", dir.display());
    }
    let cfg = HfConfig::load(&cfg_path)?;
    let spec = Spec::new(&cfg, opts.context).map_err(|e| e.context(cfg_path.display()))?;

    let mut w = Weights::load(dir)?;
    let mut spec = spec.with_qkv_bias(|n| w.has(n))?;

    let dim = spec.header.dim as usize;
    let group_size = match opts.storage {
        Storage::F32 | Storage::F16 => 0,
        Storage::Q8 { group_size: None } => {
            let g = default_group_size(dim);
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
        for n in spec.head_names() {
            w.used.insert((*n).to_string());
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
    let len = image::image_len(&sources);
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

#[cfg(test)]
mod tests {
    use super::*;
    use microformer::pos::rope_scaling::RopeScaling;

    #[test]
    fn rope_table_is_hf_float32_recipe() {
        let mut cfg = RopeConfig::new(10000.0, 8, 64);
        cfg.scaling = RopeScaling::Linear { factor: 2.0 };
        let (c, s) = rope_tables(&cfg, 40).unwrap();
        assert_eq!(c.len(), 40 * 4);
        for p in [0usize, 1, 17, 39] {
            for i in 0..4 {
                // HF: inv_freq = 1/(base^(2i/d)) / factor (here in f64, rounded once).
                let inv = (1.0 / 10000f64.powf(2.0 * i as f64 / 8.0) / 2.0) as f32;
                let angle = p as f32 * inv;
                assert_eq!(c[p * 4 + i], (angle as f64).cos() as f32);
                assert_eq!(s[p * 4 + i], (angle as f64).sin() as f32);
            }
        }
    }
}
