//! The project's own models (`models/<scheme>/`) for the tests that compare
//! their images: conversion, the held-out text, its encoding, arg-max and an
//! agreement counter.

use std::path::{Path, PathBuf};

use microformer::model::Model;
use microformer::tokenizer::{self, Tokenizer};
use microformer_convert::{hf, AlignedBytes, Storage};

/// The six schemes, one model each.
pub const SCHEMES: [&str; 6] = ["nope", "sinusoidal", "learned", "rope", "alibi", "t5"];
/// Bytes of the held-out plays scored (from the start of the file).
pub const HELD_OUT_BYTES: usize = 64 * 1024;
/// Positions per held-out window: the models' training length.
pub const WINDOW: usize = 128;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The image of `models/<scheme>` with `storage`, tokenizer inside, default context.
pub fn image(scheme: &str, storage: Storage) -> AlignedBytes {
    let dir = root().join("models").join(scheme);
    let tokenizer = std::fs::read(dir.join("tokenizer.bin")).unwrap();
    let opts = hf::Options {
        context: None,
        storage,
        tokenizer: Some(tokenizer),
        rope_scaling: None,
    };
    let (bytes, _) = hf::convert(&dir, &opts, &mut |_, _, _| {}).unwrap();
    AlignedBytes::new(&bytes)
}

/// `text` encoded with the image's tokenizer as run.c's `encode()` encodes it
/// (dummy prefix, no BOS): `whole` in one call, as `microformer perplexity`
/// does when some piece holds a newline (here BOS's and EOS's), else line by
/// line — the same tokens (checked below), in linear rather than quadratic time.
pub fn encode(model: &Model<'_>, text: &[u8], whole: bool) -> Vec<u32> {
    let vocab = model.vocab_size();
    let (mut offsets, mut sorted) = (vec![0u32; vocab], vec![0u32; vocab]);
    let tok = Tokenizer::new(model.tokenizer().unwrap(), vocab, &mut offsets, &mut sorted).unwrap();
    let mut tokens = Vec::new();
    let mut encode_into = |part: &[u8], first: bool| {
        let n = tokenizer::max_encoded_len(part.len());
        let (mut out, mut scratch) = (vec![0u32; n], vec![0u32; n]);
        let len = if first {
            tok.encode(part, false, false, &mut out, &mut scratch)
        } else {
            tok.encode_continued(part, &mut out, &mut scratch)
        }
        .unwrap();
        tokens.extend_from_slice(&out[..len]);
    };
    if whole {
        encode_into(text, true);
    } else {
        for (i, line) in text.split_inclusive(|&b| b == b'\n').enumerate() {
            encode_into(line, i == 0);
        }
    }
    tokens
}

pub fn argmax(l: &[f32]) -> u32 {
    l.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &v)| if v > b.1 { (i, v) } else { b },
        )
        .0 as u32
}

/// Agreeing positions and positions compared.
#[derive(Default, Clone, Copy)]
pub struct Count {
    pub agree: usize,
    pub total: usize,
}

impl Count {
    pub fn add(&mut self, same: bool) {
        self.agree += usize::from(same);
        self.total += 1;
    }
    pub fn rate(self) -> f64 {
        self.agree as f64 / self.total.max(1) as f64
    }
}

impl std::fmt::Display for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:6.2} % ({}/{})",
            100.0 * self.rate(),
            self.agree,
            self.total
        )
    }
}

/// The first [`HELD_OUT_BYTES`] of the held-out plays, cut back to a line end.
pub fn held_out_text() -> Vec<u8> {
    let mut text = std::fs::read(root().join("models/text/validation.txt")).unwrap();
    let cut = text[..HELD_OUT_BYTES]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    text.truncate(cut);
    text
}

/// `KL(p ‖ q)` of the softmaxes of two logit rows, in nats (f64).
pub fn kl(p: &[f32], q: &[f32]) -> f64 {
    let lse = |l: &[f32]| {
        let m = l.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64));
        m + l.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln()
    };
    let (lp, lq) = (lse(p), lse(q));
    p.iter()
        .zip(q)
        .map(|(&a, &b)| {
            let (la, lb) = (a as f64 - lp, b as f64 - lq);
            la.exp() * (la - lb)
        })
        .sum()
}
