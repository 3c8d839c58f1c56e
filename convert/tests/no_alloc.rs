//! The device path allocates nothing: tokenizer encode/decode, every forward
//! step, sampling and the generation loop run with a global allocator that
//! counts calls, and the count stays zero.
//!
//! (The library is `#![no_std]` without `alloc`, so it cannot allocate by
//! construction; this test checks it end to end on a real checkpoint.)
//!
//! The checkpoint is read from the reference models folder (`../shared/models`, or
//! `MICROFORMER_REFERENCE_DIR`; never copied here): without it the test is skipped, by
//! name (`microformer_testkit::reference`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

use microformer::generate::generate;
use microformer::image::{Image, TensorSource};
use microformer::model::{KvFormat, Model, Session};
use microformer::sampler::{ProbIndex, Sampler};
use microformer::tokenizer::{max_encoded_len, Tokenizer};
use microformer::Error;
use microformer_convert::llama2c::{self, Checkpoint, ImageOptions, Quant};
use microformer_testkit::reference_files;

/// Counts allocations made by the current thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(|c| c.get())
}

/// File bytes in 4-byte aligned storage.
fn read_aligned(path: &Path) -> Vec<u32> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut w = vec![0u32; b.len().div_ceil(4)];
    bytemuck::cast_slice_mut::<u32, u8>(&mut w)[..b.len()].copy_from_slice(&b);
    w
}

/// The checkpoint and its tokenizer as an image.
fn convert(checkpoint: &Path, tokenizer: &Path, quant: Quant) -> Vec<u32> {
    let ck_words = read_aligned(checkpoint);
    let ck = Checkpoint::parse(bytemuck::cast_slice(&ck_words)).unwrap();
    let tok = std::fs::read(tokenizer).unwrap();
    let hs = ck.config().head_size();
    let context = ck.config().seq_len;
    let (mut cos, mut sin) = (vec![0.0; context * hs / 2], vec![0.0; context * hs / 2]);
    llama2c::fill_rope_tables(
        hs,
        &mut cos,
        &mut sin,
        |b, e| b.powf(e),
        |x| x.cos(),
        |x| x.sin(),
    )
    .unwrap();
    let opts = ImageOptions {
        quant,
        context,
        rope_cos: &cos,
        rope_sin: &sin,
        tokenizer: Some(&tok),
    };
    let sizes = llama2c::sizes(&ck, &opts).unwrap();
    let mut scratch = vec![0u32; sizes.scratch_words];
    let mut sources = vec![TensorSource::U8(&[]); sizes.n_tensors];
    let mut out = vec![0u32; sizes.image_bytes.div_ceil(4)];
    let len = llama2c::to_image(
        &ck,
        &opts,
        &mut scratch,
        &mut sources,
        bytemuck::cast_slice_mut(&mut out),
    )
    .unwrap();
    out.truncate(len / 4);
    out
}

#[test]
fn forward_sampling_and_tokenizer_allocate_nothing() {
    let Some([checkpoint, tokenizer]) =
        reference_files!(["aidreams260K.bin", "aidreams260K.tok512.bin"])
    else {
        return;
    };
    for (quant, kv) in [
        (Quant::F32, KvFormat::F32),
        (Quant::Q8 { group_size: 64 }, KvFormat::F32),
        (Quant::F16, KvFormat::F32),
        (Quant::Q8 { group_size: 64 }, KvFormat::Q8),
    ] {
        let image_words = convert(&checkpoint, &tokenizer, quant);
        let model = Model::new(Image::parse(bytemuck::cast_slice(&image_words)).unwrap()).unwrap();
        let vocab = model.vocab_size();
        let context = model.max_context();
        // Everything the device path needs, prepared up front (on a device: statics).
        let mut arena = vec![0u32; model.arena_bytes_with(context, kv).div_ceil(4)];
        let mut offsets = vec![0u32; vocab];
        let mut sorted = vec![0u32; vocab];
        let mut scratch = vec![ProbIndex::default(); vocab];
        let prompt_text = b"I was flying over";
        let mut prompt = vec![0u32; max_encoded_len(prompt_text.len())];
        let mut merge_scratch = vec![0u32; max_encoded_len(prompt_text.len())];
        let mut text = [0u8; 4096];
        let tok_bytes = model.tokenizer().unwrap();

        let before = allocations();
        let tokenizer = Tokenizer::new(tok_bytes, vocab, &mut offsets, &mut sorted).unwrap();
        let n = tokenizer
            .encode(prompt_text, true, false, &mut prompt, &mut merge_scratch)
            .unwrap();
        let mut session =
            Session::with_kv(&model, bytemuck::cast_slice_mut(&mut arena), context, kv).unwrap();
        let mut sampler = Sampler::new(1.0, 0.9, 42).unwrap();
        let mut written = 0;
        let generated = generate::<Error>(
            &mut session,
            &mut sampler,
            &mut scratch,
            &prompt[..n],
            context,
            Some(1),
            |prev, next| {
                let piece = tokenizer.decode(prev, next)?;
                let piece = microformer::tokenizer::safe_piece(piece);
                let end = (written + piece.len()).min(text.len());
                text[written..end].copy_from_slice(&piece[..end - written]);
                written = end;
                Ok(())
            },
        )
        .unwrap();
        let after = allocations();

        assert!(
            generated.positions > n,
            "generation ran {} positions",
            generated.positions
        );
        assert!(written > prompt_text.len(), "generation produced text");
        assert_eq!(
            after - before,
            0,
            "{quant:?}, {kv:?} KV: the device path allocated {} times",
            after - before
        );
    }
}
