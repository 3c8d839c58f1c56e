use super::header::rd_u32;
use super::testing::tiny_llama;
use super::*;
use microformer_testkit::AlignedBytes;

/// One layer with q/k/v biases and a tokenizer.
fn llama() -> Header {
    Header {
        flags: FLAG_QKV_BIAS | FLAG_TOKENIZER,
        n_layers: 1,
        ..tiny_llama()
    }
}

/// A GPT-2-like header: LayerNorm, GELU MLP, learned table with an offset.
fn gpt() -> Header {
    Header {
        flags: FLAG_TIED_EMBEDDINGS | FLAG_QKV_BIAS | FLAG_O_BIAS | FLAG_MLP_BIAS,
        n_kv_heads: 2,
        rotary_dim: 0,
        block: Block {
            norm: NormKind::LayerNorm,
            ffn: FfnKind::GeluTanh,
            residual: Residual::Sequential,
            position: PositionHook::Table,
            pos_offset: 2,
            embed_scale: 8.0,
            attn_scale: 0.5,
            t5: T5Params::NONE,
        },
        ..llama()
    }
}

fn kinds(h: &Header) -> Vec<TensorKind> {
    slots(h).filter(|&(_, l)| l == 0).map(|(k, _)| k).collect()
}

#[test]
fn llama_images_keep_their_order_and_bytes() {
    use TensorKind::*;
    let h = llama();
    // The version-1 order, before the block words existed.
    assert_eq!(
        kinds(&h),
        [
            TokenEmbedding,
            FinalNorm,
            Output,
            RopeCos,
            RopeSin,
            Tokenizer,
            AttnNorm,
            Wq,
            Wk,
            Wv,
            Bq,
            Bk,
            Bv,
            Wo,
            FfnNorm,
            WGate,
            WUp,
            WDown
        ]
    );
    // The Llama block writes zeros where the reserved bytes were, and zeros
    // read back as the Llama block.
    let b = h.to_bytes();
    assert!(b[92..HEADER_SIZE].iter().all(|&x| x == 0));
    assert_eq!(Header::parse(&b).unwrap().block, Block::LLAMA);
}

#[test]
fn block_words_round_trip() {
    let h = gpt();
    let b = h.to_bytes();
    assert_eq!(b[92..96], [1, 1, 0, 2]); // norm, ffn, residual, position
    assert_eq!(rd_u32(&b, 96).unwrap(), 2);
    assert_eq!(f32::from_bits(rd_u32(&b, 100).unwrap()), 8.0);
    assert_eq!(f32::from_bits(rd_u32(&b, 104).unwrap()), 0.5);
    assert!(b[108..HEADER_SIZE].iter().all(|&x| x == 0));
    assert_eq!(Header::parse(&b).unwrap(), h);
    // T5: the bucketing in word 22, two global tensors after the slopes' place
    let mut t5 = gpt();
    t5.block.position = PositionHook::T5;
    t5.block.pos_offset = 0;
    t5.block.t5 = T5Params {
        num_buckets: 32,
        max_distance: 128,
    };
    let b5 = t5.to_bytes();
    assert_eq!(b5[95], 4);
    assert_eq!(rd_u32(&b5, 108).unwrap(), 32 | 128 << 16);
    assert_eq!(Header::parse(&b5).unwrap(), t5);
    assert_eq!(t5.expected_shape(TensorKind::T5Buckets), (1, 129));
    assert_eq!(
        t5.expected_shape(TensorKind::T5Bias),
        (32, t5.n_heads as usize)
    );
    let k = kinds(&t5);
    assert!(k.contains(&TensorKind::T5Buckets) && k.contains(&TensorKind::T5Bias));
    assert!(!kinds(&gpt()).contains(&TensorKind::T5Bias));
    for (kind, residual) in [
        (0u8, Residual::Sequential),
        (1, Residual::ParallelShared),
        (2, Residual::Parallel),
    ] {
        let mut w = b;
        w[94] = kind;
        assert_eq!(Header::parse(&w).unwrap().block.residual, residual);
    }
    for (byte, position) in [
        (0u8, PositionHook::Rope),
        (1, PositionHook::Alibi),
        (2, PositionHook::Table),
        (3, PositionHook::None),
        (4, PositionHook::T5),
    ] {
        // Word 18: norm, ffn, residual, position (little-endian bytes).
        let words = [u32::from_le_bytes([1, 1, 0, byte]), 0, 0, 0, 0];
        assert_eq!(Block::from_words(words).unwrap().position, position);
    }
}

#[test]
fn slots_follow_flags_and_block() {
    use TensorKind::*;
    assert_eq!(
        kinds(&gpt()),
        [
            TokenEmbedding,
            PosEmbedding,
            FinalNorm,
            FinalNormBias,
            AttnNorm,
            AttnNormBias,
            Wq,
            Wk,
            Wv,
            Bq,
            Bk,
            Bv,
            Wo,
            Bo,
            FfnNorm,
            FfnNormBias,
            WUp,
            WDown,
            BUp,
            BDown
        ]
    );
    // GPT-J/Phi: one norm for both branches, biased head, RoPE.
    let mut j = gpt();
    j.flags = FLAG_MLP_BIAS | FLAG_OUTPUT_BIAS;
    j.rotary_dim = 2;
    j.block.residual = Residual::ParallelShared;
    j.block.position = PositionHook::Rope;
    j.block.pos_offset = 0;
    assert_eq!(
        kinds(&j),
        [
            TokenEmbedding,
            FinalNorm,
            FinalNormBias,
            Output,
            OutputBias,
            RopeCos,
            RopeSin,
            AttnNorm,
            AttnNormBias,
            Wq,
            Wk,
            Wv,
            Wo,
            WUp,
            WDown,
            BUp,
            BDown
        ]
    );
    // MPT: LayerNorm without bias, no biases, ALiBi.
    let mut m = gpt();
    m.flags = FLAG_TIED_EMBEDDINGS;
    m.block.norm = NormKind::LayerNormNoBias;
    m.block.position = PositionHook::Alibi;
    m.block.pos_offset = 0;
    assert_eq!(
        kinds(&m),
        [
            TokenEmbedding,
            FinalNorm,
            AlibiSlopes,
            AttnNorm,
            Wq,
            Wk,
            Wv,
            Wo,
            FfnNorm,
            WUp,
            WDown
        ]
    );
    // BLOOM: the embedding LayerNorm; SwiGLU with biases has a gate bias.
    let mut bl = m;
    bl.flags |= FLAG_EMBED_NORM;
    bl.block.norm = NormKind::LayerNorm;
    assert_eq!(
        kinds(&bl)[..4],
        [TokenEmbedding, EmbedNorm, EmbedNormBias, FinalNorm]
    );
    let mut sw = llama();
    sw.flags |= FLAG_MLP_BIAS;
    assert_eq!(kinds(&sw)[15..], [WGate, WUp, WDown, BGate, BUp, BDown]);
    // Shapes of the new kinds.
    let h = gpt();
    assert_eq!(h.expected_shape(PosEmbedding), (3 + 2, 8));
    assert_eq!(h.expected_shape(AlibiSlopes), (1, 2));
    assert_eq!(h.expected_shape(OutputBias), (1, 5));
    assert_eq!(h.expected_shape(BUp), (1, 12));
    assert_eq!(h.expected_shape(BDown), (1, 8));
}

#[test]
fn gpt_image_round_trip() {
    let h = gpt();
    let data: Vec<Vec<f32>> = slots(&h)
        .map(|(k, l)| {
            let (r, c) = h.expected_shape(k);
            (0..r * c)
                .map(|i| (k as u16 * 100 + l) as f32 + i as f32)
                .collect()
        })
        .collect();
    let srcs: Vec<TensorSource<'_>> = data.iter().map(|v| TensorSource::F32(v)).collect();
    let len = image_len(&h, &srcs);
    let mut buf = AlignedBytes::zeroed(len);
    let out = buf.bytes_mut();
    assert_eq!(write(&h, &srcs, out), Ok(len));
    let img = Image::parse(out).unwrap();
    assert_eq!(img.header().block, h.block);
    match img.tensor(TensorKind::PosEmbedding, 0).unwrap() {
        TensorData::F32(v) => {
            assert_eq!(v.len(), 5 * 8);
            assert_eq!(v[39], 700.0 + 39.0);
        }
        _ => panic!("dtype"),
    }
    assert_eq!(
        img.tensor(TensorKind::RopeCos, 0).unwrap_err(),
        Error::MissingTensor
    );
    assert!(img.record(TensorKind::BDown, 0).is_some());
    assert!(img.record(TensorKind::WGate, 0).is_none());
}

#[test]
fn inconsistent_blocks_are_rejected() {
    let b = gpt().to_bytes();
    // The first value past each byte's enum (position: 3 is NoPE, 4 T5).
    for (at, v) in [(92, 3u8), (93, 3), (94, 3), (95, 5)] {
        let mut w = b;
        w[at] = v;
        assert_eq!(
            Header::parse(&w).unwrap_err(),
            Error::Malformed,
            "byte {at}"
        );
    }
    let mut w = b;
    w[112] = 1; // reserved
    assert_eq!(Header::parse(&w).unwrap_err(), Error::Malformed);
    let bad = |f: &dyn Fn(&mut Header)| {
        let mut h = gpt();
        f(&mut h);
        h.validate()
    };
    assert_eq!(bad(&|_| {}), Ok(()));
    let inconsistent = Err(Error::InconsistentDimensions);
    // RoPE dims without the RoPE hook, an offset without a table
    assert_eq!(bad(&|h| h.rotary_dim = 2), inconsistent);
    assert_eq!(
        bad(&|h| {
            h.block.position = PositionHook::Alibi;
        }),
        inconsistent
    );
    assert_eq!(bad(&|h| h.block.embed_scale = -1.0), inconsistent);
    assert_eq!(bad(&|h| h.block.attn_scale = f32::NAN), inconsistent);
    assert_eq!(bad(&|h| h.block.embed_scale = f32::INFINITY), inconsistent);
    assert_eq!(bad(&|h| h.flags |= 1 << 9), Err(Error::Malformed));
    // T5 bucketing only with the T5 hook, and only a bucketing pos::t5 accepts
    let t5 = |nb: u16, md: u16| {
        move |h: &mut Header| {
            h.block.position = PositionHook::T5;
            h.block.pos_offset = 0;
            h.block.t5 = T5Params {
                num_buckets: nb,
                max_distance: md,
            };
        }
    };
    assert_eq!(bad(&t5(32, 128)), Ok(()));
    assert_eq!(bad(&|h| h.block.t5.num_buckets = 32), inconsistent);
    assert_eq!(bad(&t5(0, 128)), inconsistent);
    assert_eq!(bad(&t5(1, 128)), inconsistent); // no exact bucket
    assert_eq!(bad(&t5(32, 16)), inconsistent); // max_distance <= max_exact
    assert_eq!(bad(&t5(300, 1000)), inconsistent); // buckets are bytes
                                                   // an odd head dimension is fine without RoPE (ALiBi models)
    assert_eq!(
        bad(&|h| {
            h.block.position = PositionHook::Alibi;
            h.block.pos_offset = 0;
            h.head_dim = 3;
        }),
        Ok(())
    );
}
