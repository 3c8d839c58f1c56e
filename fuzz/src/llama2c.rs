//! `llama2c`: the llama2.c checkpoint reader (legacy v0, v1, v2) and its
//! conversion into an image, and the tokenizer reader of the host tools
//! (`microformer_convert::tokenizer`).
//!
//! Input: 1 control byte and the checkpoint, [`crate::SEP`], a tokenizer file
//! (may be empty: none), [`crate::SEP`], a text to encode. The control byte picks
//! the storage (f32, f16, Q8 of the default or a given group) and the context.
//! Whatever the converter makes must be an image that parses and a model that
//! opens.

use microformer::image::Image;
use microformer::model::Model;
use microformer::tokenizer::Tokenizer;
use microformer_convert::llama2c::{self, Checkpoint, Options, Weight};
use microformer_convert::tokenizer::{check_tokenizer, encode_text};
use microformer_convert::Storage;

use crate::{parts, tokenizer_entries, Aligned};

/// The largest context the harness converts (the RoPE tables grow with it).
const MAX_CONTEXT: usize = 64;

const WEIGHTS: [Weight; 15] = [
    Weight::TokenEmbedding,
    Weight::AttnNorm,
    Weight::Wq,
    Weight::Wk,
    Weight::Wv,
    Weight::Wo,
    Weight::FfnNorm,
    Weight::W1,
    Weight::W2,
    Weight::W3,
    Weight::FinalNorm,
    Weight::FreqCisReal,
    Weight::FreqCisImag,
    Weight::Classifier,
    Weight::Classifier,
];

/// The harness. Returns whether the checkpoint converted.
pub fn run(data: &[u8]) -> bool {
    let p = parts(data);
    let head = p[0];
    let (ctrl, ck_bytes) = match head.split_first() {
        Some((&c, rest)) => (c, rest),
        None => (0, head),
    };
    let tok_file = p.get(1).copied().filter(|t| !t.is_empty());
    let text = p.get(2).copied().unwrap_or(b"");

    // The tokenizer reader on its own (its vocabulary: the file's whole entries).
    if let Some(t) = tok_file {
        let vocab = tokenizer_entries(t);
        if vocab <= 1 << 16 && check_tokenizer(t, vocab).is_ok() {
            let (mut o, mut s) = (vec![0u32; vocab], vec![0u32; vocab]);
            let tok = Tokenizer::new(t, vocab, &mut o, &mut s)
                .expect("check_tokenizer passed, Tokenizer::new must too");
            if let Ok(ids) = encode_text(&tok, text) {
                assert!(ids.iter().all(|&i| (i as usize) < vocab));
            }
        }
    }

    let aligned = Aligned::new(ck_bytes);
    let Ok(ck) = Checkpoint::parse(aligned.bytes()) else {
        return false;
    };
    let c = *ck.config();
    for w in WEIGHTS {
        for layer in 0..=c.n_layers {
            let _ = ck.tensor(w, layer);
        }
    }
    let storage = match ctrl & 3 {
        0 => Storage::F32,
        1 => Storage::F16,
        2 => Storage::Q8 { group_size: None },
        _ => Storage::Q8 {
            group_size: Some(usize::from(ctrl >> 4) * 4),
        },
    };
    let context = match (ctrl >> 2) & 3 {
        0 if c.seq_len <= MAX_CONTEXT => None,
        1 => Some(0),
        2 => Some(c.seq_len.saturating_add(1)),
        _ => Some(c.seq_len.min(MAX_CONTEXT)),
    };
    let opts = Options {
        storage,
        context,
        tokenizer: tok_file,
    };
    let Ok(out) = llama2c::convert(ck_bytes, &opts) else {
        return false;
    };
    let img = Aligned::new(&out.image);
    let image = match Image::parse(img.bytes()) {
        Ok(i) => i,
        Err(e) => panic!("the converter wrote an image that does not parse: {e:?}"),
    };
    if let Err(e) = Model::new(image) {
        panic!("the converter wrote an image that is not a model: {e:?}");
    }
    true
}
