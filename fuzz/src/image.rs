//! `image`: [`Image::parse`], [`Model::new`], then a few forward steps in every
//! arithmetic and KV format the model takes, and a generation (tokenizer,
//! sampler, decoding) when the image has a tokenizer.
//!
//! Before parsing, the harness writes the input's length into the header's
//! `image_len` and the checksum of the body into the last 8 bytes, so that the
//! fuzzer explores what lies behind the checksum (an input mutated at random
//! would otherwise stop at [`Error::ChecksumMismatch`] nearly every time).

use microformer::image::{self, checksum, slots, Image, CHECKSUM_SIZE, HEADER_SIZE};
use microformer::lm::{Buffers, Generator, Options, Prompt};
use microformer::model::{Arith, KvFormat, Model, Session};
use microformer::sampler::ProbIndex;
use microformer::tokenizer::{max_encoded_len, Tokenizer};
use microformer::Error;

use crate::Aligned;

/// Byte offset of the header's `image_len` word.
const IMAGE_LEN_AT: usize = 84;
/// The largest session arena the harness allocates.
const MAX_ARENA: usize = 16 << 20;
/// The context the harness opens sessions of (at most the image's).
const CONTEXT: usize = 4;

/// Writes `image_len` and the checksum of `bytes` as a writer would.
pub fn seal(bytes: &mut [u8]) {
    let len = bytes.len();
    if len < HEADER_SIZE + CHECKSUM_SIZE {
        return;
    }
    bytes[IMAGE_LEN_AT..IMAGE_LEN_AT + 4].copy_from_slice(&(len as u32).to_le_bytes());
    let body = len - CHECKSUM_SIZE;
    let sum = checksum(&bytes[..body]);
    bytes[body..].copy_from_slice(&sum.to_le_bytes());
}

/// The harness. Returns whether the input made a model (for the seed generator).
pub fn run(data: &[u8]) -> bool {
    let mut buf = Aligned::new(data);
    seal(buf.bytes_mut());
    let bytes = buf.bytes();
    let Ok(img) = Image::parse(bytes) else {
        return false;
    };
    // Every accessor of a validated image answers without panicking.
    for (kind, layer) in slots(img.header()) {
        let r = img.record(kind, usize::from(layer));
        assert!(r.is_some(), "a validated image lacks {kind:?} {layer}");
        let _ = img.tensor(kind, usize::from(layer));
    }
    let Ok(model) = Model::new(img) else {
        return false;
    };
    let vocab = model.vocab_size();
    for l in 0..model.dims().n_layers {
        assert!(model.layer(l).is_ok());
    }
    let context = model.max_context().min(CONTEXT);
    let bos = model.header().bos_id;
    let tokens = [bos, 0, (vocab - 1) as u32, vocab as u32, 1, 2, 3];
    for (arith, kv) in [
        (Arith::Float, KvFormat::F32),
        (Arith::Float, KvFormat::Q8),
        (Arith::Integer, KvFormat::Q8),
        (Arith::Integer, KvFormat::Q16),
    ] {
        let need = model.arena_bytes_for(context, kv, arith);
        if need > MAX_ARENA {
            continue;
        }
        let mut arena = vec![0u8; need];
        let mut s = match Session::open(&model, &mut arena, context, kv, arith) {
            Ok(s) => s,
            Err(Error::IntegerUnsupported) if arith == Arith::Integer => continue,
            Err(e) => panic!("a session of {need} bytes for {context} positions: {e:?}"),
        };
        for &t in &tokens {
            let pos = s.position();
            let r = match arith {
                Arith::Float => s.step(t).map(|l| l.len()),
                Arith::Integer => s.step_fixed(t).map(|l| l.len()),
            };
            match r {
                Ok(n) => assert_eq!(n, vocab),
                Err(Error::TokenOutOfRange { .. }) => assert!(t as usize >= vocab),
                Err(Error::ContextFull { .. }) => assert_eq!(pos, context),
                Err(e) => panic!("step {t} at {pos}: {e:?}"),
            }
        }
    }
    generate(&model, data.len());
    true
}

/// A whole generation through [`Generator`] (text prompt, top-p sampling).
fn generate(model: &Model<'_>, salt: usize) {
    let Some(tok) = model.tokenizer() else {
        return;
    };
    let vocab = model.vocab_size();
    let (mut offsets, mut sorted) = (vec![0u32; vocab], vec![0u32; vocab]);
    let tokenizer_ok = Tokenizer::new(tok, vocab, &mut offsets, &mut sorted).is_ok();
    let context = model.max_context().min(CONTEXT);
    let need = model.arena_bytes_for(context, KvFormat::F32, Arith::Float);
    if need > MAX_ARENA {
        return;
    }
    let prompt = "Once upon";
    let mut arena = vec![0u8; need];
    let mut index = vec![0u32; 2 * vocab];
    let mut probs = vec![ProbIndex::default(); vocab];
    let mut tokens = vec![0u32; 2 * max_encoded_len(prompt.len())];
    let opts = Options {
        prompt: Prompt::Text(prompt),
        steps: context,
        temperature: 0.8,
        topp: 0.9,
        seed: salt as u64,
        context,
        ..Options::DEFAULT
    };
    let buf = Buffers {
        arena: &mut arena,
        index: &mut index,
        probs: &mut probs,
        tokens: &mut tokens,
    };
    if let Ok(mut g) = Generator::new(model, buf, &opts) {
        assert!(tokenizer_ok);
        let mut n = 0;
        while let Ok(Some(t)) = g.next_token() {
            assert!((t.id as usize) < vocab);
            n += 1;
            assert!(n <= context);
        }
    }
}

/// Makes an image from a header and one source per slot: what the seed
/// generator builds its tiny images of every family with.
pub fn build(header: &image::Header, tensors: &[image::TensorSource<'_>]) -> Option<Vec<u8>> {
    let mut out = vec![0u8; image::image_len(header, tensors)];
    let n = image::write(header, tensors, &mut out).ok()?;
    out.truncate(n);
    Some(out)
}
