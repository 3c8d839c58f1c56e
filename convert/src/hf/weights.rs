//! A checkpoint's tensors: `model.safetensors`, or the shards that
//! `model.safetensors.index.json` names, indexed by name; which of them the
//! conversion read, so that a tensor it would silently drop is an error.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use super::shard::{Shard, StError};
use crate::error::{fail, Error, Result};
use crate::files;

/// Checkpoint tensors that are buffers, not weights, and are never read
/// (transformers drops them on loading): `rotary_emb.inv_freq`, GPT-2/GPT-J
/// `attn.bias`/`attn.masked_bias`, GPT-NeoX `attention.bias`/`attention.masked_bias`.
pub fn is_buffer(name: &str) -> bool {
    name.ends_with("rotary_emb.inv_freq")
        || name.ends_with(".attn.bias")
        || name.ends_with(".attn.masked_bias")
        || name.ends_with(".attention.bias")
        || name.ends_with(".attention.masked_bias")
}

/// The checkpoint's tensors, possibly over several shards.
pub(crate) struct Weights {
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
    /// The size of the safetensors files read, in bytes.
    pub(crate) fn bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.len() as u64).sum()
    }

    /// `model.safetensors`, or the shards named by `model.safetensors.index.json`.
    pub(crate) fn load(dir: &Path) -> Result<Self> {
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

    pub(crate) fn has(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    pub(crate) fn get(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let Some(&i) = self.index.get(name) else {
            return Err(st_err(StError::MissingTensor(name.into())));
        };
        self.used.insert(name.to_string());
        self.shards[i].f32(name, shape).map_err(st_err)
    }

    /// Checks that tensor `name` is present with this shape, from the shards'
    /// headers alone (nothing is read or allocated from the shape): the errors
    /// [`Weights::get`] would give.
    pub(crate) fn check_shape(&self, name: &str, shape: &[usize]) -> Result<()> {
        let found = self
            .index
            .get(name)
            .and_then(|&i| self.shards.get(i))
            .and_then(|s| s.shape(name));
        match found {
            None => Err(st_err(StError::MissingTensor(name.into()))),
            Some(got) if got != shape => Err(st_err(StError::WrongShape {
                name: name.into(),
                expected: shape.to_vec(),
                got: got.to_vec(),
            })),
            Some(_) => Ok(()),
        }
    }

    /// A tensor read through the one-entry cache (fused tensors).
    pub(crate) fn cached(&mut self, name: &str, shape: &[usize]) -> Result<&[f32]> {
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
    pub(crate) fn resolve(&self, name: &str, prefix: &str, head_names: &[&str]) -> String {
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

    /// Counts `name` as used (a tied checkpoint's stored head, the embedding again).
    pub(crate) fn mark_used(&mut self, name: &str) {
        self.used.insert(name.to_string());
    }

    /// Tensors never read (buffers excepted).
    pub(crate) fn unused(&self) -> Vec<&str> {
        self.index
            .keys()
            .filter(|n| !self.used.contains(*n) && !is_buffer(n))
            .map(String::as_str)
            .collect()
    }
}
