//! llama2.c checkpoints through the converter and the runtime, against what
//! llama2.c's `run.c` printed for the same models
//! (`../shared/models/reference-llama2c.json`).
//!
//! The checkpoints are read from the reference models folder (`../shared/models/`, or
//! `MICROFORMER_REFERENCE_DIR`; never copied here): without it every test that needs
//! them is skipped, each named (`microformer_testkit::reference`), and the others run.

// The run.c/runq.c transcription below keeps C's index loops on purpose.
#![allow(clippy::needless_range_loop)]

use microformer::image::{Image, TensorSource};
use microformer::model::{KvFormat, Model, Session};
use microformer::sampler::{ProbIndex, Sampler};
use microformer::tokenizer::{self, Tokenizer};
use microformer::Error;
use microformer_convert::llama2c::{
    self, Checkpoint, Config, ImageOptions, Precision, Quant, Tensor, Version, Weight,
};
use serde_json::Value;

use microformer_testkit::reference::models_dir;
use microformer_testkit::reference_files;

/// Bytes in a 4-byte aligned buffer.
use microformer_testkit::AlignedBytes as Buf;

const AIDREAMS: &str = "aidreams260K.bin";
const AIDREAMS_TOK: &str = "aidreams260K.tok512.bin";
const STORIES: &str = "stories260K.bin";
const REFERENCE: &str = "reference-llama2c.json";

/// Whether the reference models folder holds every file of `names`; if not, the running
/// test is recorded as skipped (by name) and should return.
fn have<const N: usize>(names: [&str; N]) -> bool {
    reference_files!(names).is_some()
}

/// A reference model file (checked by [`have`] first).
fn read(name: &str) -> Buf {
    let path = models_dir().join(name);
    let b = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Buf::from_bytes(&b)
}

/// `reference-llama2c.json` (checked by [`have`] first).
fn reference() -> Value {
    serde_json::from_slice(read(REFERENCE).bytes()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// RoPE tables as run.c computes its angles, with the host's f32 libm.
fn rope_tables(head_size: usize, context: usize) -> (Vec<f32>, Vec<f32>) {
    let n = context * head_size / 2;
    let (mut c, mut s) = (vec![0.0; n], vec![0.0; n]);
    let rows = llama2c::fill_rope_tables(
        head_size,
        &mut c,
        &mut s,
        |b, e| b.powf(e),
        |x| x.cos(),
        |x| x.sin(),
    )
    .unwrap();
    assert_eq!(rows, context);
    (c, s)
}

fn convert_with(ck: &Checkpoint<'_>, quant: Quant, context: usize, tok: Option<&[u8]>) -> Buf {
    let (cos, sin) = rope_tables(ck.config().head_size(), context);
    let opts = ImageOptions {
        quant,
        context,
        rope_cos: &cos,
        rope_sin: &sin,
        tokenizer: tok,
    };
    let sizes = llama2c::sizes(ck, &opts).unwrap();
    let mut scratch = vec![0u32; sizes.scratch_words];
    let mut sources = vec![TensorSource::U8(&[]); sizes.n_tensors];
    let mut out = Buf::zeroed(sizes.image_bytes);
    let len = llama2c::to_image(ck, &opts, &mut scratch, &mut sources, out.bytes_mut()).unwrap();
    assert_eq!(len, sizes.image_bytes);
    out
}

fn convert(ck: &Checkpoint<'_>, quant: Quant) -> Buf {
    convert_with(ck, quant, ck.config().seq_len, None)
}

fn arena_for(model: &Model<'_>, context: usize) -> Vec<u32> {
    vec![0u32; model.arena_bytes(context).div_ceil(4)]
}

/// run.c's argmax: first maximum.
fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for i in 1..v.len() {
        if v[i] > v[best] {
            best = i;
        }
    }
    best as u32
}

/// run.c's generate loop: token = BOS at pos 0; next = the prompt token while
/// pos < n_prompt - 1, else sampled; stop when next == BOS or after `steps`.
/// Returns every `next` printed.
fn generate(
    model: &Model<'_>,
    prompt: &[u32],
    steps: usize,
    mut sample: impl FnMut(&mut [f32]) -> u32,
) -> Vec<u32> {
    let steps = steps.min(model.max_context());
    let mut arena = arena_for(model, steps);
    let mut s = Session::new(model, bytemuck::cast_slice_mut(&mut arena), steps).unwrap();
    let mut token = prompt[0];
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < steps {
        s.step(token).unwrap();
        let next = if pos + 1 < prompt.len() {
            prompt[pos + 1]
        } else {
            sample(s.logits_mut())
        };
        pos += 1;
        if next == 1 {
            break;
        }
        out.push(next);
        token = next;
    }
    out
}

fn greedy(model: &Model<'_>, steps: usize) -> Vec<u32> {
    generate(model, &[1], steps, |l| argmax(l))
}

fn case<'v>(r: &'v Value, model: &str, args: Option<&str>) -> &'v Value {
    r["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["model"] == model && args.is_none_or(|a| c["args"] == a))
        .unwrap()
}

fn first_mismatch(a: &[u32], b: &[u32]) -> Option<usize> {
    (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i))
}

#[test]
fn checkpoints_parse_as_legacy() {
    if !have([AIDREAMS, STORIES]) {
        return;
    }
    let a = read("aidreams260K.bin");
    let ck = Checkpoint::parse(a.bytes()).unwrap();
    assert_eq!(ck.version(), Version::Legacy);
    assert_eq!(
        *ck.config(),
        Config {
            dim: 64,
            hidden_dim: 172,
            n_layers: 4,
            n_heads: 4,
            n_kv_heads: 4,
            vocab_size: 512,
            seq_len: 128,
            shared_classifier: true
        }
    );
    let s = read("stories260K.bin");
    let ck = Checkpoint::parse(s.bytes()).unwrap();
    assert_eq!(
        (
            ck.config().n_heads,
            ck.config().n_kv_heads,
            ck.config().seq_len
        ),
        (8, 4, 512)
    );
    // The legacy freq_cis table holds cos(p·θ^(-2j/hs)): position 1, pair 0 = cos(1).
    let Tensor::F32(re) = ck.tensor(Weight::FreqCisReal, 0).unwrap() else {
        panic!()
    };
    assert_eq!(re.len(), 512 * 4);
    // (torch's f32 table, within one f32 ulp of cos(1))
    assert!((re[4] as f64 - 1f64.cos()).abs() < 6e-8, "{}", re[4]);
}

#[test]
fn stories260k_greedy_matches_run_c() {
    if !have([REFERENCE, STORIES]) {
        return;
    }
    let r = reference();
    let c = case(&r, "stories260K.bin", None);
    let want = ids(c);
    let steps = c["steps"].as_u64().unwrap() as usize;
    let buf = read("stories260K.bin");
    let ck = Checkpoint::parse(buf.bytes()).unwrap();
    let img = convert(&ck, Quant::F32);
    let model = Model::new(Image::parse(img.bytes()).unwrap()).unwrap();
    let got = greedy(&model, steps);
    assert_eq!(
        first_mismatch(&got, &want),
        None,
        "got {got:?}\nwant {want:?}"
    );
    println!("stories260K: {} greedy ids equal run.c's", got.len());
}

#[test]
fn aidreams260k_greedy_matches_run_c_and_v1_is_identical() {
    if !have([REFERENCE, AIDREAMS]) {
        return;
    }
    let r = reference();
    let c = case(&r, "aidreams260K.bin", Some("-t 0 -n 128"));
    let want = ids(c);
    let buf = read("aidreams260K.bin");
    let ck = Checkpoint::parse(buf.bytes()).unwrap();
    let img = convert(&ck, Quant::F32);
    let model = Model::new(Image::parse(img.bytes()).unwrap()).unwrap();
    let got = greedy(&model, 128);
    assert_eq!(
        first_mismatch(&got, &want),
        None,
        "got {got:?}\nwant {want:?}"
    );

    // The same weights written by export.py's version1_export convert to the very
    // same image bytes, hence the same ids.
    let v1 = Buf::from_bytes(&write_v1(&ck));
    let ck1 = Checkpoint::parse(v1.bytes()).unwrap();
    assert_eq!(ck1.version(), Version::V1);
    assert_eq!(ck1.config(), ck.config());
    let img1 = convert(&ck1, Quant::F32);
    assert!(
        img1.bytes() == img.bytes(),
        "v1 image differs from v0 image"
    );
    let model1 = Model::new(Image::parse(img1.bytes()).unwrap()).unwrap();
    assert_eq!(greedy(&model1, 128), want);
}

#[test]
fn stories260k_v1_matches_run_c() {
    if !have([REFERENCE, STORIES]) {
        return;
    }
    let r = reference();
    let want = ids(case(&r, "stories260K.bin", None));
    let buf = read("stories260K.bin");
    let ck = Checkpoint::parse(buf.bytes()).unwrap();
    let v1 = Buf::from_bytes(&write_v1(&ck));
    let ck1 = Checkpoint::parse(v1.bytes()).unwrap();
    let img = convert(&ck1, Quant::F32);
    let model = Model::new(Image::parse(img.bytes()).unwrap()).unwrap();
    assert_eq!(greedy(&model, 200), want);
}

#[test]
fn reduced_context_reproduces_the_prefix() {
    if !have([REFERENCE, STORIES]) {
        return;
    }
    let r = reference();
    let want = ids(case(&r, "stories260K.bin", None));
    let buf = read("stories260K.bin");
    let ck = Checkpoint::parse(buf.bytes()).unwrap();
    let full = convert(&ck, Quant::F32);
    let img = convert_with(&ck, Quant::F32, 64, None);
    let image = Image::parse(img.bytes()).unwrap();
    assert_eq!(image.header().seq_len, 64);
    assert_eq!(image.header().train_context, 512);
    // Two tables of (512 - 64) rows × 4 pairs fewer.
    assert_eq!(full.bytes().len() - img.bytes().len(), 2 * 448 * 4 * 4);
    let model = Model::new(image).unwrap();
    assert_eq!(model.max_context(), 64);
    assert_eq!(greedy(&model, 64), want[..64]);
}

#[test]
fn aidreams260k_prompt_and_top_p_match_run_c() {
    if !have([REFERENCE, AIDREAMS, AIDREAMS_TOK]) {
        return;
    }
    let r = reference();
    let buf = read("aidreams260K.bin");
    let tok_file = read(AIDREAMS_TOK).bytes().to_vec();
    let ck = Checkpoint::parse(buf.bytes()).unwrap();
    // The tokenizer travels inside the image.
    let img = convert_with(&ck, Quant::F32, 128, Some(&tok_file));
    let model = Model::new(Image::parse(img.bytes()).unwrap()).unwrap();
    let tok_bytes = model.tokenizer().unwrap();
    assert_eq!(tok_bytes, &tok_file[..]);
    let (mut offsets, mut sorted) = (vec![0u32; 512], vec![0u32; 512]);
    let tok = Tokenizer::new(tok_bytes, 512, &mut offsets, &mut sorted).unwrap();
    let text_of = |ids: &[u32]| {
        let mut out = Vec::new();
        let mut prev = 1;
        for &t in ids {
            out.extend_from_slice(tokenizer::safe_piece(tok.decode(prev, t).unwrap()));
            prev = t;
        }
        out.push(b'\n');
        String::from_utf8(out).unwrap()
    };

    // greedy, no prompt: text too
    let c = case(&r, "aidreams260K.bin", Some("-t 0 -n 128"));
    let got = greedy(&model, 128);
    assert_eq!(got, ids(c));
    assert_eq!(text_of(&got), c["text"].as_str().unwrap());

    // greedy with a prompt
    let c = case(
        &r,
        "aidreams260K.bin",
        Some("-t 0 -n 100 -i I was flying over"),
    );
    let prompt = c["prompt"].as_str().unwrap();
    let mut p = vec![0u32; tokenizer::max_encoded_len(prompt.len())];
    let mut scratch = p.clone();
    let n = tok
        .encode(prompt.as_bytes(), true, false, &mut p, &mut scratch)
        .unwrap();
    let got = generate(&model, &p[..n], 100, |l| argmax(l));
    assert_eq!(first_mismatch(&got, &ids(c)), None, "{got:?}");
    assert_eq!(text_of(&got), c["text"].as_str().unwrap());

    // seeded top-p
    let c = case(&r, "aidreams260K.bin", Some("-t 1.0 -p 0.9 -s 42 -n 128"));
    let mut sampler = Sampler::new(1.0, 0.9, 42).unwrap();
    let mut pi = vec![ProbIndex::default(); 512];
    let got = generate(&model, &[1], 128, |l| sampler.sample(l, &mut pi).unwrap());
    assert_eq!(first_mismatch(&got, &ids(c)), None, "{got:?}");
    assert_eq!(text_of(&got), c["text"].as_str().unwrap());
}

// ---------------------------------------------------------------------------
// export.py's writers (version1_export, version2_export), from the v0 tensors.

fn f32s(ck: &Checkpoint<'_>, w: Weight, l: usize) -> Vec<f32> {
    match ck.tensor(w, l).unwrap() {
        Tensor::F32(v) => v.to_vec(),
        Tensor::Q8 { .. } => panic!("f32 expected"),
    }
}

fn v1_header(c: &Config, version: i32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&0x616b_3432u32.to_le_bytes());
    h.extend_from_slice(&version.to_le_bytes());
    for v in [
        c.dim,
        c.hidden_dim,
        c.n_layers,
        c.n_heads,
        c.n_kv_heads,
        c.vocab_size,
        c.seq_len,
    ] {
        h.extend_from_slice(&(v as i32).to_le_bytes());
    }
    h.push(c.shared_classifier as u8);
    h
}

fn pad256(mut h: Vec<u8>) -> Vec<u8> {
    assert!(h.len() <= 256);
    h.resize(256, 0);
    h
}

const NORMS: [Weight; 2] = [Weight::AttnNorm, Weight::FfnNorm];
const MATRICES: [Weight; 7] = [
    Weight::Wq,
    Weight::Wk,
    Weight::Wv,
    Weight::Wo,
    Weight::W1,
    Weight::W2,
    Weight::W3,
];

fn write_v1(ck: &Checkpoint<'_>) -> Vec<u8> {
    let c = ck.config();
    let mut out = pad256(v1_header(c, 1));
    let mut put = |v: Vec<f32>| out.extend(v.iter().flat_map(|x| x.to_le_bytes()));
    for w in NORMS {
        for l in 0..c.n_layers {
            put(f32s(ck, w, l));
        }
    }
    put(f32s(ck, Weight::FinalNorm, 0));
    put(f32s(ck, Weight::TokenEmbedding, 0));
    for w in MATRICES {
        for l in 0..c.n_layers {
            put(f32s(ck, w, l));
        }
    }
    if !c.shared_classifier {
        put(f32s(ck, Weight::Classifier, 0));
    }
    out
}

/// export.py's `quantize_q80`: per flattened group, `scale = max|w| / 127`,
/// `int8 = torch.round(w / scale)` (round half to even).
fn quantize_q80(w: &[f32], g: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = Vec::with_capacity(w.len());
    let mut s = Vec::with_capacity(w.len() / g);
    for grp in w.chunks_exact(g) {
        let wmax = grp.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let scale = wmax / 127.0;
        s.push(scale);
        q.extend(grp.iter().map(|&x| (x / scale).round_ties_even() as i8));
    }
    (q, s)
}

fn write_v2(ck: &Checkpoint<'_>) -> (Vec<u8>, usize) {
    let g = llama2c::default_group_size(ck.config());
    (write_v2_group(ck, g), g)
}

fn write_v2_group(ck: &Checkpoint<'_>, g: usize) -> Vec<u8> {
    let c = ck.config();
    let mut h = v1_header(c, 2);
    h.extend_from_slice(&(g as i32).to_le_bytes());
    let mut out = pad256(h);
    for w in NORMS {
        for l in 0..c.n_layers {
            out.extend(f32s(ck, w, l).iter().flat_map(|x| x.to_le_bytes()));
        }
    }
    out.extend(
        f32s(ck, Weight::FinalNorm, 0)
            .iter()
            .flat_map(|x| x.to_le_bytes()),
    );
    let mut mats = vec![f32s(ck, Weight::TokenEmbedding, 0)];
    for w in MATRICES {
        for l in 0..c.n_layers {
            mats.push(f32s(ck, w, l));
        }
    }
    if !c.shared_classifier {
        mats.push(f32s(ck, Weight::Classifier, 0));
    }
    for m in mats {
        let (q, s) = quantize_q80(&m, g);
        out.extend(q.iter().map(|&x| x as u8));
        out.extend(s.iter().flat_map(|x| x.to_le_bytes()));
    }
    out
}

/// Teacher-forced streams: BOS then each reference case's ids, cut to the context.
fn streams(r: &Value, name: &str, cap: usize) -> Vec<Vec<u32>> {
    r["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["model"] == name)
        .map(|c| {
            let mut s = vec![1];
            s.extend(ids(c));
            s.truncate(cap);
            s
        })
        .collect()
}

/// Logits at every position of a teacher-forced stream (BOS first).
fn all_logits(m: &Model<'_>, stream: &[u32]) -> Vec<Vec<f32>> {
    all_logits_with(m, stream, KvFormat::F32)
}

/// [`all_logits`] with a KV cache of format `kv`.
fn all_logits_with(m: &Model<'_>, stream: &[u32], kv: KvFormat) -> Vec<Vec<f32>> {
    let mut arena = vec![0u32; m.arena_bytes_with(stream.len(), kv).div_ceil(4)];
    let mut s =
        Session::with_kv(m, bytemuck::cast_slice_mut(&mut arena), stream.len(), kv).unwrap();
    stream
        .iter()
        .map(|&t| s.step(t).unwrap().to_vec())
        .collect()
}

/// Top-1 agreement of a model with reference logits over the streams, and the
/// largest logit difference.
fn agreement(want: &[Vec<Vec<f32>>], m: &Model<'_>, streams: &[Vec<u32>]) -> (usize, usize, f32) {
    let (mut agree, mut total, mut worst) = (0, 0, 0.0f32);
    for (w, s) in want.iter().zip(streams) {
        let mut arena = arena_for(m, s.len());
        let mut sess = Session::new(m, bytemuck::cast_slice_mut(&mut arena), s.len()).unwrap();
        for (wl, &t) in w.iter().zip(s) {
            let l = sess.step(t).unwrap();
            agree += (argmax(wl) == argmax(l)) as usize;
            total += 1;
            for (x, y) in wl.iter().zip(l) {
                worst = worst.max((x - y).abs());
            }
        }
    }
    (agree, total, worst)
}

/// Storage `(kind, layer, group)` for stories260K chosen offline, within the
/// 352 KiB flash goal, by a greedy rate–distortion allocation over per-tensor
/// sensitivities: the KL divergence from the f32 logits when that one tensor
/// alone is stored in Q8 with a given group (4, 8, 16, 32, 64 or the whole row),
/// measured on 16 of the f32 model's own temperature-1 samples (seeds 101–116),
/// never on the reference stream. Group 0 is f32; tensors not listed use groups
/// of 64 (`w_down`: the whole row, 172).
const STORIES_ALLOCATED_352K: &[(&str, usize, usize)] = &[
    ("emb", 0, 8),
    ("wq", 0, 4),
    ("wk", 0, 0),
    ("wv", 0, 4),
    ("wo", 0, 8),
    ("w1", 0, 16),
    ("w2", 0, 4),
    ("w3", 0, 16),
    ("wq", 1, 8),
    ("wk", 1, 4),
    ("wv", 1, 8),
    ("wo", 1, 16),
    ("w1", 1, 16),
    ("w2", 1, 4),
    ("wq", 2, 32),
    ("wk", 2, 8),
    ("wv", 2, 32),
    ("wo", 2, 32),
    ("w3", 2, 32),
    ("wq", 3, 32),
    ("wk", 3, 16),
    ("wv", 3, 32),
    ("wk", 4, 32),
];

fn kind_name(kind: microformer::image::TensorKind) -> &'static str {
    use microformer::image::TensorKind as K;
    match kind {
        K::TokenEmbedding | K::Output => "emb",
        K::Wq => "wq",
        K::Wk => "wk",
        K::Wv => "wv",
        K::Wo => "wo",
        K::WGate => "w1",
        K::WDown => "w2",
        K::WUp => "w3",
        _ => "other",
    }
}

/// Groups of 64, or whole rows where 64 does not divide them.
fn groups_of_64_or_rows(_: microformer::image::TensorKind, _: usize, cols: usize) -> Precision {
    Precision::Q8 {
        group_size: if cols % 64 == 0 { 64 } else { cols },
    }
}

/// A policy from a `(kind, layer, group)` table (group 0: f32) over
/// [`groups_of_64_or_rows`].
fn table_policy(
    table: &'static [(&'static str, usize, usize)],
) -> impl Fn(microformer::image::TensorKind, usize, usize) -> Precision {
    move |kind, layer, cols| match table
        .iter()
        .find(|(k, l, _)| *k == kind_name(kind) && *l == layer)
    {
        Some((_, _, 0)) => Precision::F32,
        Some(&(_, _, g)) => Precision::Q8 { group_size: g },
        None => groups_of_64_or_rows(kind, layer, cols),
    }
}

fn convert_policy(ck: &Checkpoint<'_>, policy: llama2c::Policy<'_>) -> Buf {
    let context = ck.config().seq_len;
    let (cos, sin) = rope_tables(ck.config().head_size(), context);
    let opts = ImageOptions {
        quant: Quant::F32,
        context,
        rope_cos: &cos,
        rope_sin: &sin,
        tokenizer: None,
    };
    let sizes = llama2c::sizes_with(ck, &opts, policy).unwrap();
    let mut scratch = vec![0u32; sizes.scratch_words];
    let mut sources = vec![TensorSource::U8(&[]); sizes.n_tensors];
    let mut out = Buf::zeroed(sizes.image_bytes);
    let len = llama2c::to_image_with(
        ck,
        &opts,
        policy,
        &mut scratch,
        &mut sources,
        out.bytes_mut(),
    )
    .unwrap();
    assert_eq!(len, sizes.image_bytes);
    out
}

/// The flash goal for a model image.
const FLASH_GOAL: usize = 352 * 1024;

#[test]
fn q8_images_agree_with_f32() {
    if !have([REFERENCE, AIDREAMS, STORIES]) {
        return;
    }
    let r = reference();
    // stories260K cannot reach 98 % with 8-bit weights at all (see
    // `stories260k_needs_more_than_8_bit_weights`): its floor stays below what the
    // Q8 images measure (88–91 %); the 98 % bar holds for aidreams260K here, and
    // for both models with binary16 weights
    // (`f16_images_are_the_rounded_f32_model_bit_for_bit`).
    for (name, cap, floor) in [
        ("aidreams260K.bin", 128, 0.98),
        ("stories260K.bin", 512, 0.85),
    ] {
        let buf = read(name);
        let ck = Checkpoint::parse(buf.bytes()).unwrap();
        let streams = streams(&r, name, cap);
        let f32_img = convert(&ck, Quant::F32);
        let f32_model = Model::new(Image::parse(f32_img.bytes()).unwrap()).unwrap();
        assert!(!f32_model.is_quantized());
        let want: Vec<_> = streams.iter().map(|s| all_logits(&f32_model, s)).collect();

        let (v2_bytes, g) = write_v2(&ck);
        let v2 = Buf::from_bytes(&v2_bytes);
        let ck2 = Checkpoint::parse(v2.bytes()).unwrap();
        assert_eq!(ck2.version(), Version::V2 { group_size: g });
        assert_eq!(g, 64);
        let v2_img = convert(&ck2, Quant::Q8 { group_size: g });
        let q8_img = convert(&ck, Quant::Q8 { group_size: g });
        let fit_img = convert(&ck, Quant::Q8Fit { group_size: g });
        assert!(
            q8_img.bytes().len() < f32_img.bytes().len() / 2,
            "{} vs {}",
            q8_img.bytes().len(),
            f32_img.bytes().len()
        );
        // Every matrix Q8 (w_down in groups of 4): within the flash goal.
        assert!(
            fit_img.bytes().len() <= FLASH_GOAL,
            "{}",
            fit_img.bytes().len()
        );
        let mut variants = vec![
            ("v2 file -> Q8 (w_down f32)", v2_img, true),
            ("Q8 group 64 (w_down f32)", q8_img, true),
            ("Q8Fit group 64 (w_down in groups of 4)", fit_img, true),
        ];
        // Measurements for the report only (not asserted): skipped in debug builds.
        if !cfg!(debug_assertions) {
            variants.push((
                "Q8, groups 64, w_down whole rows (172)",
                convert_policy(&ck, &groups_of_64_or_rows),
                false,
            ));
            variants.push((
                "Q8 group 4 everywhere",
                convert(&ck, Quant::Q8 { group_size: 4 }),
                false,
            ));
            variants.push((
                "v2 -> Q8Fit (w_down requantized, groups of 4)",
                convert(&ck2, Quant::Q8Fit { group_size: 64 }),
                false,
            ));
            if name == "stories260K.bin" {
                let allocated = table_policy(STORIES_ALLOCATED_352K);
                variants.push((
                    "sensitivity-allocated within 352 KiB",
                    convert_policy(&ck, &allocated),
                    false,
                ));
            }
            variants.push((
                "control: v2 weights dequantized, f32 arithmetic",
                convert(&ck2, Quant::F32),
                false,
            ));
        }
        for (label, img, asserted) in &variants {
            let model = Model::new(Image::parse(img.bytes()).unwrap()).unwrap();
            let (agree, total, worst) = agreement(&want, &model, &streams);
            let rate = agree as f64 / total as f64;
            println!(
                "{name} {label}: top-1 agreement {agree}/{total} = {:.2} %, largest logit error {worst:.4} ({} image bytes, f32 {})",
                100.0 * rate,
                img.bytes().len(),
                f32_img.bytes().len()
            );
            if *asserted {
                assert!(model.is_quantized());
                assert!(rate >= floor, "{name} {label}: agreement {rate}");
            }
        }
    }
}

/// A v1 file of the checkpoint with every matrix value (embedding included,
/// norms not) passed through `f`.
fn write_v1_mapped(ck: &Checkpoint<'_>, f: impl Fn(f32) -> f32) -> Vec<u8> {
    let c = ck.config();
    let mut out = pad256(v1_header(c, 1));
    let mut put = |v: Vec<f32>, map: bool| {
        out.extend(
            v.iter()
                .flat_map(|&x| if map { f(x) } else { x }.to_le_bytes()),
        )
    };
    for w in NORMS {
        for l in 0..c.n_layers {
            put(f32s(ck, w, l), false);
        }
    }
    put(f32s(ck, Weight::FinalNorm, 0), false);
    put(f32s(ck, Weight::TokenEmbedding, 0), true);
    for w in MATRICES {
        for l in 0..c.n_layers {
            put(f32s(ck, w, l), true);
        }
    }
    if !c.shared_classifier {
        put(f32s(ck, Weight::Classifier, 0), true);
    }
    out
}

/// `x` rounded to `bits` significant bits (the implicit one included), ties
/// away from zero: 8 is bfloat16's precision, 11 is float16's.
fn round_significand(x: f32, bits: u32) -> f32 {
    let drop = 24 - bits;
    let b = x.to_bits();
    f32::from_bits((b + (1 << (drop - 1))) & !((1 << drop) - 1))
}

/// Why stories260K's Q8 images stay below 98 %: the model needs more than 8
/// significant bits in its weights. Rounding every weight to 8 significant bits
/// (bfloat16), with f32 arithmetic and no activation quantization, already
/// drops below 98 % on the reference stream; 11 bits (float16) keep it. An int8
/// value with any per-group scale `s` that does not clip (`s ≥ max|x|/127`) has
/// the error bound `s/2`, at least twice the 8-bit bound `|x|·2⁻⁹ ≤ 127·s·2⁻⁹`
/// for every value it represents, so no group size, scale search or rounding
/// order makes int8 weights finer than this control. aidreams260K, by contrast,
/// keeps 98 % with bfloat16 weights.
#[test]
fn stories260k_needs_more_than_8_bit_weights() {
    if !have([REFERENCE, STORIES, AIDREAMS]) {
        return;
    }
    let r = reference();
    for (name, cap, bits, above) in [
        ("stories260K.bin", 512, 8, false),
        ("stories260K.bin", 512, 11, true),
        ("aidreams260K.bin", 128, 8, true),
    ] {
        let buf = read(name);
        let ck = Checkpoint::parse(buf.bytes()).unwrap();
        let streams = streams(&r, name, cap);
        let f32_img = convert(&ck, Quant::F32);
        let f32_model = Model::new(Image::parse(f32_img.bytes()).unwrap()).unwrap();
        let want: Vec<_> = streams.iter().map(|s| all_logits(&f32_model, s)).collect();
        let v1 = Buf::from_bytes(&write_v1_mapped(&ck, |x| round_significand(x, bits)));
        let ck1 = Checkpoint::parse(v1.bytes()).unwrap();
        let img = convert(&ck1, Quant::F32);
        let model = Model::new(Image::parse(img.bytes()).unwrap()).unwrap();
        let (agree, total, worst) = agreement(&want, &model, &streams);
        let rate = agree as f64 / total as f64;
        println!(
            "{name} weights rounded to {bits} significant bits: top-1 agreement {agree}/{total} = {:.2} %, largest logit error {worst:.4}",
            100.0 * rate
        );
        assert_eq!(rate >= 0.98, above, "{name}, {bits} bits: {rate}");
    }
}

/// f16 images (`Quant::F16`): every matrix binary16, norms and tables f32.
/// - Bit for bit: the runtime's logits over the reference streams equal those
///   of an f32 image whose matrices were rounded to binary16 by the `half`
///   crate (a conversion nobody here wrote) — the f16 kernels compute exactly
///   the f32 arithmetic of the widened weights.
/// - Against the f32 image: top-1 agreement ≥ 98 % on every reference stream,
///   stories260K included (which no 8-bit weight format reaches), at about half
///   the image size.
#[test]
fn f16_images_are_the_rounded_f32_model_bit_for_bit() {
    if !have([REFERENCE, STORIES, AIDREAMS]) {
        return;
    }
    use microformer::image::{DType, TensorKind as K};
    let r = reference();
    for (name, cap) in [("stories260K.bin", 512), ("aidreams260K.bin", 128)] {
        let buf = read(name);
        let ck = Checkpoint::parse(buf.bytes()).unwrap();
        let streams = streams(&r, name, cap);
        let f32_img = convert(&ck, Quant::F32);
        let f16_img = convert(&ck, Quant::F16);
        let img = Image::parse(f16_img.bytes()).unwrap();
        for (kind, dtype) in [
            (K::Wq, DType::F16),
            (K::WDown, DType::F16),
            (K::TokenEmbedding, DType::F16),
            (K::AttnNorm, DType::F32),
            (K::RopeCos, DType::F32),
        ] {
            assert_eq!(img.record(kind, 0).unwrap().dtype, dtype, "{kind:?}");
        }
        // Half the f32 image's matrix bytes, plus the f32 norms and tables.
        assert!(
            f16_img.bytes().len() < f32_img.bytes().len() * 52 / 100,
            "{} vs {}",
            f16_img.bytes().len(),
            f32_img.bytes().len()
        );
        let model = Model::new(img).unwrap();
        assert!(!model.is_quantized());

        let rounded = Buf::from_bytes(&write_v1_mapped(&ck, |x| half::f16::from_f32(x).to_f32()));
        let ck1 = Checkpoint::parse(rounded.bytes()).unwrap();
        let rounded_img = convert(&ck1, Quant::F32);
        let rounded_model = Model::new(Image::parse(rounded_img.bytes()).unwrap()).unwrap();
        for s in &streams {
            assert_logits_bitwise(&model, &all_logits(&rounded_model, s), s, name);
        }

        let f32_model = Model::new(Image::parse(f32_img.bytes()).unwrap()).unwrap();
        let want: Vec<_> = streams.iter().map(|s| all_logits(&f32_model, s)).collect();
        let (agree, total, worst) = agreement(&want, &model, &streams);
        let rate = agree as f64 / total as f64;
        println!(
            "{name} f16: top-1 agreement {agree}/{total} = {:.2} %, largest logit error {worst:.4} ({} image bytes, f32 {})",
            100.0 * rate,
            f16_img.bytes().len(),
            f32_img.bytes().len()
        );
        assert!(rate >= 0.98, "{name} f16: agreement {rate}");
    }
}

/// Per-tensor groups through the converter and the runtime: `Q8Fit` stores
/// `w_down` (rows of 172) in groups of 4 and the rest in groups of 64, from f32
/// weights (`runq.c`'s quantize) and from a v2 file (its int8 values kept where
/// the group is its own, `w_down` requantized); the runtime's logits equal the
/// runq.c transcription over the image's tensors bit for bit; a policy can mix
/// f32 and any valid group per tensor.
#[test]
fn per_tensor_groups_are_runq_c_bit_for_bit() {
    if !have([REFERENCE, STORIES, AIDREAMS]) {
        return;
    }
    use microformer::image::{TensorData, TensorKind as K};
    let r = reference();
    for name in ["stories260K.bin", "aidreams260K.bin"] {
        let buf = read(name);
        let ck = Checkpoint::parse(buf.bytes()).unwrap();
        let c = *ck.config();
        let stream = &streams(&r, name, 48)[0];
        let (cos, sin) = rope_tables(c.head_size(), c.seq_len);
        let v2 = Buf::from_bytes(&write_v2(&ck).0);
        let ck2 = Checkpoint::parse(v2.bytes()).unwrap();
        for (label, src) in [("f32 file", &ck), ("v2 file", &ck2)] {
            let img = convert(src, Quant::Q8Fit { group_size: 64 });
            let image = Image::parse(img.bytes()).unwrap();
            assert_eq!(image.header().group_size, 64);
            for l in 0..c.n_layers {
                assert_eq!(image.record(K::WDown, l).unwrap().group, 4);
                assert_eq!(image.record(K::WGate, l).unwrap().group, 0);
                assert_eq!(image.record(K::Wq, l).unwrap().group, 0);
            }
            // w_down holds runq.c's quantize of the (v2: dequantized) weights in
            // groups of 4.
            let w2: Vec<f32> = match src.tensor(Weight::W2, 1).unwrap() {
                Tensor::F32(v) => v.to_vec(),
                Tensor::Q8 {
                    values,
                    scales,
                    group,
                } => (0..values.len())
                    .map(|i| values[i] as f32 * scales[i / group])
                    .collect(),
            };
            let TensorData::Q8 {
                values,
                scales,
                group: 4,
                ..
            } = image.tensor(K::WDown, 1).unwrap()
            else {
                panic!("w_down not Q8 in groups of 4")
            };
            for (gi, grp) in w2.chunks_exact(4).enumerate() {
                let wmax = grp
                    .iter()
                    .fold(0.0f32, |m, x| if x.abs() > m { x.abs() } else { m });
                let scale = wmax / 127.0;
                assert_eq!(scales[gi], scale);
                for (k, &x) in grp.iter().enumerate() {
                    assert_eq!(values[gi * 4 + k], (x / scale).round() as i8);
                }
            }
            // A v2 file's own groups are kept as they are.
            if let Tensor::Q8 { values: fv, .. } = src.tensor(Weight::W1, 2).unwrap() {
                let TensorData::Q8 { values: iv, .. } = image.tensor(K::WGate, 2).unwrap() else {
                    panic!()
                };
                assert_eq!(iv, fv);
            }
            let model = Model::new(image).unwrap();
            let want = ref_forward_with(&c, &|w, l| image_tensor(&image, w, l), stream, &cos, &sin);
            assert_logits_bitwise(&model, &want, stream, &format!("{name} {label} Q8Fit"));
        }

        // A policy: f32 embedding, layer 0's attention in groups of 4 and its w_up
        // f32, w_down in whole rows, the rest in groups of 32.
        let policy = |kind: K, layer: usize, cols: usize| match (kind, layer) {
            (K::TokenEmbedding | K::Output, _) => Precision::F32,
            (K::Wq | K::Wk | K::Wv | K::Wo, 0) => Precision::Q8 { group_size: 4 },
            (K::WUp, 0) => Precision::F32,
            (K::WDown, _) => Precision::Q8 { group_size: cols },
            _ => Precision::Q8 { group_size: 32 },
        };
        let img = convert_policy(&ck, &policy);
        let image = Image::parse(img.bytes()).unwrap();
        // The first Q8 matrix (layer 0's wq) sets the header's group.
        assert_eq!(image.header().group_size, 4);
        assert!(matches!(
            image.tensor(K::TokenEmbedding, 0).unwrap(),
            TensorData::F32(_)
        ));
        assert!(matches!(
            image.tensor(K::WUp, 0).unwrap(),
            TensorData::F32(_)
        ));
        assert_eq!(image.record(K::Wo, 0).unwrap().group, 0);
        assert_eq!(image.record(K::Wq, 1).unwrap().group, 32);
        assert_eq!(image.record(K::WDown, 3).unwrap().group, 172);
        let model = Model::new(image).unwrap();
        // Largest Q8 input: w_down's 172 values in one group; most scales per
        // row: layer 0's 64 / 4.
        let f32_model_bytes = {
            let f = convert(&ck, Quant::F32);
            let m = Model::new(Image::parse(f.bytes()).unwrap()).unwrap();
            m.arena_bytes(7)
        };
        assert_eq!(model.arena_bytes(7), f32_model_bytes + 172 + 4 * 16);
        let want = ref_forward_with(&c, &|w, l| image_tensor(&image, w, l), stream, &cos, &sin);
        assert_logits_bitwise(&model, &want, stream, &format!("{name} policy"));
    }
}

// ---------------------------------------------------------------------------
// run.c / runq.c transcribed with flat arrays and straight loops, reading the
// checkpoint directly: the runtime must give the same logits bit for bit.
// The transcription has two variants (`LITERAL`):
// - the default build's: three arithmetic details are the runtime's, not run.c's
//   literal ones (the algorithm is unchanged): `expf` is
//   `microformer::num::exp::fast_expf` (below 1.5 ulp of e^x; run.c calls glibc's
//   `expf`), and the two divisions become multiplications by a reciprocal
//   computed once (`score *= 1/sqrtf(head_size)`, `att[t] *= 1/sum`);
// - literal: run.c to the letter, `score /= sqrtf(head_size)`, `att[t] /= sum`,
//   and run.c's `expf` ([`run_c_expf`]: the C library's own where it is glibc).
// A build with the `exact` feature (`microformer::num::exp::EXACT`) is checked
// against the literal variant, the default build against the other; the default
// build's distance from the literal one is measured by
// `runtime_vs_run_c_literal` and `seeded_top_p_runs_against_run_c_literal`.

thread_local! {
    /// The literal transcription (run.c's `expf`, divisions): the variant the
    /// runtime is checked against in an `exact` build.
    static LITERAL: std::cell::Cell<bool> =
        const { std::cell::Cell::new(microformer::num::exp::EXACT) };
}

/// `f()` with the transcription's variant set to `literal`, restored after.
fn with_literal<T>(literal: bool, f: impl FnOnce() -> T) -> T {
    let before = LITERAL.with(|l| l.replace(literal));
    let out = f();
    LITERAL.with(|l| l.set(before));
    out
}

/// The platform C library where it is glibc (the `expf` run.c calls when built
/// with gcc on Linux).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    extern "C" {
        pub fn expf(x: f32) -> f32;
        pub fn gnu_get_libc_version() -> *const std::ffi::c_char;
    }
}

/// Whether the platform C library is glibc.
const GLIBC: bool = cfg!(all(target_os = "linux", target_env = "gnu"));

/// The glibc version, e.g. "2.36" (None elsewhere).
fn glibc_version() -> Option<String> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: glibc returns a static NUL-terminated string.
        let v = unsafe { std::ffi::CStr::from_ptr(glibc::gnu_get_libc_version()) };
        Some(v.to_string_lossy().into_owned())
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// run.c's `expf`: glibc's. The C library's own where it is glibc; elsewhere
/// microformer's transcription of it (`num::exp_glibc`, checked against glibc
/// over every input by `exact_expf_is_glibcs_on_every_input` on glibc hosts).
fn run_c_expf(x: f32) -> f32 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: expf is a pure function of its argument.
        unsafe { glibc::expf(x) }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    microformer::num::exp_glibc::expf(x)
}

fn ref_expf(x: f32) -> f32 {
    if LITERAL.with(|l| l.get()) {
        run_c_expf(x)
    } else {
        microformer::num::exp::fast_expf(x)
    }
}

fn ref_rmsnorm(o: &mut [f32], x: &[f32], w: &[f32]) {
    let mut ss = 0.0f32;
    for j in 0..x.len() {
        ss += x[j] * x[j];
    }
    ss /= x.len() as f32;
    ss += 1e-5f32;
    ss = 1.0f32 / ss.sqrt();
    for j in 0..x.len() {
        o[j] = w[j] * (ss * x[j]);
    }
}

fn ref_softmax(x: &mut [f32]) {
    let mut max_val = x[0];
    for i in 1..x.len() {
        if x[i] > max_val {
            max_val = x[i];
        }
    }
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = ref_expf(*v - max_val);
        sum += *v;
    }
    if LITERAL.with(|l| l.get()) {
        for v in x.iter_mut() {
            *v /= sum;
        }
    } else {
        let inv = 1.0f32 / sum;
        for v in x.iter_mut() {
            *v *= inv;
        }
    }
}

/// `W (d,n) @ x`: run.c's `matmul`, or runq.c's `quantize` + `matmul` for a Q8
/// tensor whose rows are whole groups; other Q8 tensors are dequantized
/// (`q · s`) and multiplied in f32, as the converter stores them.
fn ref_matmul(t: Tensor<'_>, x: &[f32], d: usize) -> Vec<f32> {
    let n = x.len();
    let mut out = vec![0.0f32; d];
    match t {
        Tensor::F32(w) => {
            for i in 0..d {
                let mut val = 0.0f32;
                for j in 0..n {
                    val += w[i * n + j] * x[j];
                }
                out[i] = val;
            }
        }
        Tensor::Q8 {
            values,
            scales,
            group: gs,
        } if n % gs == 0 => {
            let mut xq = vec![0i8; n];
            let mut xs = vec![0.0f32; n / gs];
            for g in 0..n / gs {
                let mut wmax = 0.0f32;
                for i in 0..gs {
                    let v = x[g * gs + i].abs();
                    if v > wmax {
                        wmax = v;
                    }
                }
                let scale = wmax / 127.0f32;
                xs[g] = scale;
                for i in 0..gs {
                    xq[g * gs + i] = (x[g * gs + i] / scale).round() as i8;
                }
            }
            for i in 0..d {
                let mut val = 0.0f32;
                let mut ival = 0i32;
                let base = i * n;
                let mut j = 0;
                while j + gs <= n {
                    for k in 0..gs {
                        ival += xq[j + k] as i32 * values[base + j + k] as i32;
                    }
                    val += ival as f32 * scales[(base + j) / gs] * xs[j / gs];
                    ival = 0;
                    j += gs;
                }
                out[i] = val;
            }
        }
        Tensor::Q8 {
            values,
            scales,
            group,
        } => {
            let w: Vec<f32> = (0..values.len())
                .map(|i| values[i] as f32 * scales[i / group])
                .collect();
            return ref_matmul(Tensor::F32(&w), x, d);
        }
    }
    out
}

/// Where the reference reads a tensor (one layer's): the checkpoint, or an image.
type Tensors<'t> = dyn Fn(Weight, usize) -> Tensor<'t> + 't;

fn ref_vec(get: &Tensors<'_>, w: Weight, l: usize) -> Vec<f32> {
    match get(w, l) {
        Tensor::F32(v) => v.to_vec(),
        Tensor::Q8 { .. } => panic!("f32 expected"),
    }
}

/// Logits at every position of `stream` (teacher-forced).
fn ref_forward(ck: &Checkpoint<'_>, stream: &[u32], cos: &[f32], sin: &[f32]) -> Vec<Vec<f32>> {
    ref_forward_with(
        ck.config(),
        &|w, l| ck.tensor(w, l).unwrap(),
        stream,
        cos,
        sin,
    )
}

/// [`ref_forward`] over the tensors `get` returns.
fn ref_forward_with(
    c: &Config,
    get: &Tensors<'_>,
    stream: &[u32],
    cos: &[f32],
    sin: &[f32],
) -> Vec<Vec<f32>> {
    let c = *c;
    let (dim, hidden, nl, nh) = (c.dim, c.hidden_dim, c.n_layers, c.n_heads);
    let hs = c.head_size();
    let kv_dim = c.kv_dim();
    let kv_mul = nh / c.n_kv_heads;
    let seq = stream.len();
    let emb: Vec<f32> = match get(Weight::TokenEmbedding, 0) {
        Tensor::F32(v) => v.to_vec(),
        Tensor::Q8 {
            values,
            scales,
            group,
        } => (0..values.len())
            .map(|i| values[i] as f32 * scales[i / group])
            .collect(),
    };
    let mut key_cache = vec![0.0f32; nl * seq * kv_dim];
    let mut value_cache = vec![0.0f32; nl * seq * kv_dim];
    let mut all = Vec::new();
    for (pos, &token) in stream.iter().enumerate() {
        let mut x = emb[token as usize * dim..(token as usize + 1) * dim].to_vec();
        let mut xb = vec![0.0f32; dim];
        for l in 0..nl {
            let t = |w| get(w, l);
            ref_rmsnorm(&mut xb, &x, &ref_vec(get, Weight::AttnNorm, l));
            let mut q = ref_matmul(t(Weight::Wq), &xb, dim);
            let mut k = ref_matmul(t(Weight::Wk), &xb, kv_dim);
            let v = ref_matmul(t(Weight::Wv), &xb, kv_dim);
            let mut i = 0;
            while i < dim {
                let head_dim = i % hs;
                let fcr = cos[pos * hs / 2 + head_dim / 2];
                let fci = sin[pos * hs / 2 + head_dim / 2];
                let rotn = if i < kv_dim { 2 } else { 1 };
                for r in 0..rotn {
                    let vec = if r == 0 { &mut q } else { &mut k };
                    let v0 = vec[i];
                    let v1 = vec[i + 1];
                    vec[i] = v0 * fcr - v1 * fci;
                    vec[i + 1] = v0 * fci + v1 * fcr;
                }
                i += 2;
            }
            let loff = l * seq * kv_dim;
            key_cache[loff + pos * kv_dim..loff + (pos + 1) * kv_dim].copy_from_slice(&k);
            value_cache[loff + pos * kv_dim..loff + (pos + 1) * kv_dim].copy_from_slice(&v);
            for h in 0..nh {
                let qh = &q[h * hs..(h + 1) * hs];
                let mut att = vec![0.0f32; pos + 1];
                for t in 0..=pos {
                    let kt = &key_cache[loff + t * kv_dim + (h / kv_mul) * hs..];
                    let mut score = 0.0f32;
                    for i in 0..hs {
                        score += qh[i] * kt[i];
                    }
                    if LITERAL.with(|l| l.get()) {
                        score /= (hs as f32).sqrt();
                    } else {
                        score *= 1.0f32 / (hs as f32).sqrt();
                    }
                    att[t] = score;
                }
                ref_softmax(&mut att);
                let o = &mut xb[h * hs..(h + 1) * hs];
                o.fill(0.0);
                for t in 0..=pos {
                    let vt = &value_cache[loff + t * kv_dim + (h / kv_mul) * hs..];
                    for i in 0..hs {
                        o[i] += att[t] * vt[i];
                    }
                }
            }
            let xb2 = ref_matmul(t(Weight::Wo), &xb, dim);
            for i in 0..dim {
                x[i] += xb2[i];
            }
            ref_rmsnorm(&mut xb, &x, &ref_vec(get, Weight::FfnNorm, l));
            let mut hb = ref_matmul(t(Weight::W1), &xb, hidden);
            let hb2 = ref_matmul(t(Weight::W3), &xb, hidden);
            for i in 0..hidden {
                let mut val = hb[i];
                val *= 1.0f32 / (1.0f32 + ref_expf(-val));
                val *= hb2[i];
                hb[i] = val;
            }
            let out = ref_matmul(t(Weight::W2), &hb, dim);
            for i in 0..dim {
                x[i] += out[i];
            }
        }
        let xf = x.clone();
        ref_rmsnorm(&mut x, &xf, &ref_vec(get, Weight::FinalNorm, 0));
        all.push(ref_matmul(get(Weight::Classifier, 0), &x, c.vocab_size));
    }
    all
}

fn assert_bitwise(model: &Model<'_>, ck: &Checkpoint<'_>, stream: &[u32], label: &str) {
    let (cos, sin) = rope_tables(ck.config().head_size(), ck.config().seq_len);
    let want = ref_forward(ck, stream, &cos, &sin);
    assert_logits_bitwise(model, &want, stream, label);
}

/// The image's tensors as the reference reads them (Q8 matrices with their own
/// groups; the classifier is the token embedding when tied).
fn image_tensor<'i>(image: &Image<'i>, w: Weight, l: usize) -> Tensor<'i> {
    use microformer::image::{TensorData, TensorKind as K, FLAG_TIED_EMBEDDINGS};
    let kind = match w {
        Weight::TokenEmbedding => K::TokenEmbedding,
        Weight::Classifier if image.header().has(FLAG_TIED_EMBEDDINGS) => K::TokenEmbedding,
        Weight::Classifier => K::Output,
        Weight::AttnNorm => K::AttnNorm,
        Weight::Wq => K::Wq,
        Weight::Wk => K::Wk,
        Weight::Wv => K::Wv,
        Weight::Wo => K::Wo,
        Weight::FfnNorm => K::FfnNorm,
        Weight::W1 => K::WGate,
        Weight::W2 => K::WDown,
        Weight::W3 => K::WUp,
        Weight::FinalNorm => K::FinalNorm,
        Weight::FreqCisReal | Weight::FreqCisImag => panic!("no such image tensor"),
    };
    match image.tensor(kind, l).unwrap() {
        TensorData::F32(v) => Tensor::F32(v),
        TensorData::Q8 {
            values,
            scales,
            group,
            ..
        } => Tensor::Q8 {
            values,
            scales,
            group,
        },
        TensorData::U8(_) => panic!("bytes"),
        TensorData::F16(_) => panic!("f16 (this helper reads f32/Q8 images)"),
    }
}

/// The runtime's logits over `stream` equal `want` bit for bit.
fn assert_logits_bitwise(model: &Model<'_>, want: &[Vec<f32>], stream: &[u32], label: &str) {
    let mut arena = arena_for(model, stream.len());
    let mut s = Session::new(model, bytemuck::cast_slice_mut(&mut arena), stream.len()).unwrap();
    for (p, &t) in stream.iter().enumerate() {
        let got = s.step(t).unwrap();
        for (i, (a, b)) in got.iter().zip(&want[p]).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{label}: position {p}, logit {i}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn f32_forward_is_run_c_bit_for_bit() {
    if !have([REFERENCE, STORIES]) {
        return;
    }
    let r = reference();
    let buf = read("stories260K.bin");
    let ck = Checkpoint::parse(buf.bytes()).unwrap();
    let stream = &streams(&r, "stories260K.bin", 512)[0];
    let img = convert(&ck, Quant::F32);
    let model = Model::new(Image::parse(img.bytes()).unwrap()).unwrap();
    assert_bitwise(&model, &ck, stream, "stories260K f32");
}

/// Distance in ulps between two finite f32 (steps between them on the number line).
fn ulps(a: f32, b: f32) -> u64 {
    fn ordered(x: f32) -> i64 {
        let i = x.to_bits() as i32 as i64;
        if i < 0 {
            i64::from(i32::MIN) - i
        } else {
            i
        }
    }
    ordered(a).abs_diff(ordered(b))
}

/// Largest absolute difference, largest ulp distance, and largest ulp distance
/// among the logits of magnitude 1 or more (near zero an ulp is tiny, and a
/// difference of 1e-6 is millions of them) between two logit rows.
fn distance(got: &[f32], want: &[f32]) -> (f32, u64, u64) {
    got.iter()
        .zip(want)
        .fold((0.0f32, 0, 0), |(d, u, u1), (&a, &b)| {
            let n = ulps(a, b);
            let big = if b.abs() >= 1.0 { n } else { 0 };
            (d.max((a - b).abs()), u.max(n), u1.max(big))
        })
}

/// The runtime against run.c's literal arithmetic (glibc's `expf`,
/// `score / sqrtf(head_size)`, `att / sum`), over the 201 positions of
/// stories260K's reference stream (BOS + llama2.c's 200 greedy ids). Default
/// build: the logits stay within 1e-4 of the literal arithmetic and the argmax
/// is the same at every position (the greedy ids themselves are checked against
/// llama2.c's in `stories260k_greedy_matches_run_c`). `exact` build: equal bit
/// for bit.
#[test]
fn runtime_vs_run_c_literal() {
    if !have([REFERENCE, STORIES]) {
        return;
    }
    let r = reference();
    let buf = read("stories260K.bin");
    let ck = Checkpoint::parse(buf.bytes()).unwrap();
    let stream = &streams(&r, "stories260K.bin", 512)[0];
    let (cos, sin) = rope_tables(ck.config().head_size(), ck.config().seq_len);
    let literal = with_literal(true, || ref_forward(&ck, stream, &cos, &sin));
    let img = convert(&ck, Quant::F32);
    let model = Model::new(Image::parse(img.bytes()).unwrap()).unwrap();
    let got = all_logits(&model, stream);
    let (mut worst, mut worst_ulps, mut worst_ulps1) = (0.0f32, 0, 0);
    let mut same_top = 0;
    for (g, w) in got.iter().zip(&literal) {
        let (d, u, u1) = distance(g, w);
        worst = worst.max(d);
        worst_ulps = worst_ulps.max(u);
        worst_ulps1 = worst_ulps1.max(u1);
        same_top += (argmax(g) == argmax(w)) as usize;
    }
    let mode = if microformer::num::exp::EXACT {
        "exact"
    } else {
        "default (fast expf + reciprocals)"
    };
    println!(
        "{mode} vs run.c literal, stories260K reference stream: max |Δlogit| = {worst:e}, \
         max {worst_ulps} ulps ({worst_ulps1} where |logit| >= 1), argmax equal at \
         {same_top}/{}",
        got.len()
    );
    if microformer::num::exp::EXACT {
        assert_eq!((worst, worst_ulps), (0.0, 0));
    } else {
        assert!(worst < 1e-4, "max |Δlogit| = {worst:e}");
    }
    assert_eq!(same_top, got.len());
}

// ---------------------------------------------------------------------------
// run.c's sampler, transcribed (always literal: glibc's `expf`, `x /= sum`,
// `logits /= temperature`), and seeded top-p runs against it.

/// run.c's `random_u32` (xorshift64*).
fn run_c_random_u32(state: &mut u64) -> u32 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
}

/// run.c's `softmax`, to the letter.
fn run_c_softmax(x: &mut [f32]) {
    let mut max_val = x[0];
    for i in 1..x.len() {
        if x[i] > max_val {
            max_val = x[i];
        }
    }
    let mut sum = 0.0f32;
    for i in 0..x.len() {
        x[i] = run_c_expf(x[i] - max_val);
        sum += x[i];
    }
    for i in 0..x.len() {
        x[i] /= sum;
    }
}

/// run.c's `sample` with `0 < topp < 1` and temperature > 0: `sample_topp`, its
/// `qsort` being glibc's stable merge sort (ties in index order).
fn run_c_sample_topp(logits: &mut [f32], temperature: f32, topp: f32, state: &mut u64) -> u32 {
    for q in 0..logits.len() {
        logits[q] /= temperature;
    }
    run_c_softmax(logits);
    let coin = (run_c_random_u32(state) >> 8) as f32 / 16777216.0f32;
    let n = logits.len();
    let cutoff = (1.0f32 - topp) / (n - 1) as f32;
    let mut probindex: Vec<(f32, u32)> = Vec::new();
    for i in 0..n {
        if logits[i] >= cutoff {
            probindex.push((logits[i], i as u32));
        }
    }
    probindex.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
    let mut cumulative_prob = 0.0f32;
    let mut last_idx = probindex.len() - 1;
    for i in 0..probindex.len() {
        cumulative_prob += probindex[i].0;
        if cumulative_prob > topp {
            last_idx = i;
            break;
        }
    }
    let r = coin * cumulative_prob;
    let mut cdf = 0.0f32;
    for i in 0..=last_idx {
        cdf += probindex[i].0;
        if r < cdf {
            return probindex[i].1;
        }
    }
    probindex[last_idx].1
}

/// One seeded run's comparison with run.c's literal arithmetic.
#[derive(Debug, Default)]
struct SeededRun {
    /// First position whose sampled token differs from run.c's (None: none).
    diverged_at: Option<usize>,
    /// Largest |Δlogit| and ulp distances ([`distance`]) over every position.
    worst: f32,
    worst_ulps: u64,
    worst_ulps1: u64,
    /// Positions whose logits are not bit for bit run.c's.
    positions_off: usize,
}

/// A top-p run (`-t 1.0 -p 0.9 -s seed`) of `steps` positions from BOS on the
/// runtime (session + `Sampler`), every position run (no stop at a sampled
/// BOS), compared with run.c's literal transcription teacher-forced on the
/// runtime's stream and run.c's sampler on its logits: until the first
/// divergence both see the same tokens, so equal tokens at every position mean
/// equal streams.
fn seeded_run(model: &Model<'_>, ck: &Checkpoint<'_>, seed: u64, steps: usize) -> SeededRun {
    let (temperature, topp) = (1.0f32, 0.9f32);
    let mut arena = arena_for(model, steps);
    let mut s = Session::new(model, bytemuck::cast_slice_mut(&mut arena), steps).unwrap();
    let mut sampler = Sampler::new(temperature, topp, seed).unwrap();
    let mut pi = vec![ProbIndex::default(); model.vocab_size()];
    let (mut stream, mut tokens, mut logits) = (vec![1u32], Vec::new(), Vec::new());
    for pos in 0..steps {
        s.step(stream[pos]).unwrap();
        logits.push(s.logits().to_vec());
        let next = sampler.sample(s.logits_mut(), &mut pi).unwrap();
        tokens.push(next);
        stream.push(next);
    }
    stream.pop();
    let (cos, sin) = rope_tables(ck.config().head_size(), ck.config().seq_len);
    let want = with_literal(true, || ref_forward(ck, &stream, &cos, &sin));
    let mut out = SeededRun::default();
    let mut state = seed;
    for (pos, (g, w)) in logits.iter().zip(&want).enumerate() {
        let (d, u, u1) = distance(g, w);
        out.worst = out.worst.max(d);
        out.worst_ulps = out.worst_ulps.max(u);
        out.worst_ulps1 = out.worst_ulps1.max(u1);
        out.positions_off += (u > 0) as usize;
        let next = run_c_sample_topp(&mut w.clone(), temperature, topp, &mut state);
        if out.diverged_at.is_none() && next != tokens[pos] {
            out.diverged_at = Some(pos);
        }
    }
    out
}

/// Seeded top-p runs (`-t 1.0 -p 0.9`, seeds 1..=50, every position from BOS:
/// 300 for stories260K, 128 for aidreams260K, whose context run.c clamps `-n` to)
/// against run.c's literal arithmetic. `exact` build: every token and every
/// logit bit is run.c's. Default build: the logits stay within 3e-4 of run.c's
/// (measured: 1.5e-4 for stories260K, 9.2e-6 for aidreams260K; before and after
/// any divergence, the inputs being the same), and the figures printed
/// (largest difference, ulps, seeds whose stream leaves run.c's at a near-tie:
/// 47 of 50 for stories260K, whose nucleus holds hundreds of tokens of nearly
/// equal probability, so that a last-bit change reorders top-p's sort; none for
/// aidreams260K) are the README's. Debug builds run 3 seeds per model.
#[test]
fn seeded_top_p_runs_against_run_c_literal() {
    if !have([STORIES, AIDREAMS]) {
        return;
    }
    let exact = microformer::num::exp::EXACT;
    let seeds: u64 = if cfg!(debug_assertions) { 3 } else { 50 };
    let mut failures = Vec::new();
    for name in [STORIES, AIDREAMS] {
        let buf = read(name);
        let ck = Checkpoint::parse(buf.bytes()).unwrap();
        let img = convert(&ck, Quant::F32);
        let model = Model::new(Image::parse(img.bytes()).unwrap()).unwrap();
        let steps = 300.min(model.max_context());
        let (mut worst, mut worst_ulps, mut worst_ulps1) = (0.0f32, 0, 0);
        let (mut off, mut diverged) = (0, Vec::new());
        for seed in 1..=seeds {
            let run = seeded_run(&model, &ck, seed, steps);
            worst = worst.max(run.worst);
            worst_ulps = worst_ulps.max(run.worst_ulps);
            worst_ulps1 = worst_ulps1.max(run.worst_ulps1);
            off += run.positions_off;
            if let Some(p) = run.diverged_at {
                diverged.push((seed, p));
            }
        }
        println!(
            "{} mode, {name}: {seeds} seeds x {steps} positions: {} seed(s) diverge from run.c \
             (seed, position): {diverged:?}; logits off run.c's at {off}/{} positions, \
             max |Δlogit| = {worst:e}, max {worst_ulps} ulps ({worst_ulps1} where |logit| >= 1)",
            if exact { "exact" } else { "default" },
            diverged.len(),
            seeds as usize * steps
        );
        if exact && (!diverged.is_empty() || off > 0) {
            failures.push(name);
        }
        assert!(exact || worst < 3e-4, "{name}: max |Δlogit| = {worst:e}");
    }
    assert!(failures.is_empty(), "not run.c's bit for bit: {failures:?}");
}

/// glibc's `expf` transcribed (`microformer::num::exp_glibc::expf`, the
/// `exact` feature's) has the bits of the platform C library's `expf` on every
/// finite f32 (release builds: all 4,278,190,080 of them, NaN and infinities
/// too, on 2 threads; debug builds: a stride). Skipped, with a message, where
/// the C library is not glibc.
#[test]
fn exact_expf_is_glibcs_on_every_input() {
    if !GLIBC {
        println!(
            "skipped: exact_expf_is_glibcs_on_every_input: the platform C library is not glibc"
        );
        return;
    }
    let stride: u64 = if cfg!(debug_assertions) { 4_099 } else { 1 };
    let threads = 2u64;
    let (compared, finite, bad) = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                sc.spawn(move || {
                    let (mut n, mut finite, mut bad) = (0u64, 0u64, Vec::new());
                    let mut b = t * stride;
                    while b < 1 << 32 {
                        let x = f32::from_bits(b as u32);
                        let (got, want) = (microformer::num::exp_glibc::expf(x), run_c_expf(x));
                        let same =
                            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan());
                        if !same && bad.len() < 8 {
                            bad.push((b as u32, got, want));
                        }
                        n += 1;
                        finite += x.is_finite() as u64;
                        if !same && bad.len() >= 8 {
                            break;
                        }
                        b += threads * stride;
                    }
                    (n, finite, bad)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).fold(
            (0, 0, Vec::new()),
            |(n, f, mut bad), (n1, f1, b1)| {
                bad.extend(b1);
                (n + n1, f + f1, bad)
            },
        )
    });
    println!(
        "exp_glibc::expf vs glibc {} expf: {compared} inputs ({finite} finite), {} differ",
        glibc_version().unwrap_or_default(),
        bad.len()
    );
    assert!(
        bad.is_empty(),
        "{:?}",
        bad.iter()
            .map(|(b, g, w)| format!("{b:#010x}: {g:e} vs {w:e}"))
            .collect::<Vec<_>>()
    );
    if stride == 1 {
        assert_eq!(finite, 4_278_190_080);
    }
}

#[test]
fn q8_forward_is_runq_c_bit_for_bit() {
    if !have([REFERENCE, STORIES, AIDREAMS]) {
        return;
    }
    let r = reference();
    for name in ["stories260K.bin", "aidreams260K.bin"] {
        let buf = read(name);
        let ck = Checkpoint::parse(buf.bytes()).unwrap();
        let stream = &streams(&r, name, 64)[0];
        // Group 4 divides every row (hidden 172): every matrix is Q8, pure runq.c.
        // Group 64 (export.py's choice): W2's rows of 172 stay f32 (runq.c itself
        // would skip their last 44 columns).
        for g in [4, 64] {
            let v2 = Buf::from_bytes(&write_v2_group(&ck, g));
            let ck2 = Checkpoint::parse(v2.bytes()).unwrap();
            let img = convert(&ck2, Quant::Q8 { group_size: g });
            let model = Model::new(Image::parse(img.bytes()).unwrap()).unwrap();
            assert_bitwise(&model, &ck2, stream, &format!("{name} v2 group {g}"));
        }
        // --quant q8 from the f32 file stores runq.c's quantize of the weights
        // (C `round`: half away from zero, where export.py rounds half to even).
        let img = convert(&ck, Quant::Q8 { group_size: 64 });
        let image = Image::parse(img.bytes()).unwrap();
        use microformer::image::{TensorData, TensorKind};
        let TensorData::Q8 { values, scales, .. } = image.tensor(TensorKind::Wq, 1).unwrap() else {
            panic!()
        };
        let w = f32s(&ck, Weight::Wq, 1);
        for (gi, grp) in w.chunks_exact(64).enumerate() {
            let wmax = grp
                .iter()
                .fold(0.0f32, |m, x| if x.abs() > m { x.abs() } else { m });
            let scale = wmax / 127.0;
            assert_eq!(scales[gi], scale);
            for (k, &x) in grp.iter().enumerate() {
                assert_eq!(values[gi * 64 + k], (x / scale).round() as i8);
            }
        }
    }
}

#[test]
fn v2_dequantized_to_f32_equals_runq_dequantize() {
    if !have([AIDREAMS]) {
        return;
    }
    let buf = read("aidreams260K.bin");
    let ck = Checkpoint::parse(buf.bytes()).unwrap();
    let (v2_bytes, g) = write_v2(&ck);
    let v2 = Buf::from_bytes(&v2_bytes);
    let ck2 = Checkpoint::parse(v2.bytes()).unwrap();
    let img = convert(&ck2, Quant::F32);
    let image = Image::parse(img.bytes()).unwrap();
    let Tensor::Q8 { values, scales, .. } = ck2.tensor(Weight::W2, 3).unwrap() else {
        panic!()
    };
    let microformer::image::TensorData::F32(w2) = image
        .tensor(microformer::image::TensorKind::WDown, 3)
        .unwrap()
    else {
        panic!()
    };
    for (i, &x) in w2.iter().enumerate() {
        assert_eq!(x, values[i] as f32 * scales[i / g]);
    }
    // With Q8 output, W2 (rows of 172, not a multiple of 64) stays f32 while the
    // other matrices keep the file's int8 values and scales.
    let img = convert(&ck2, Quant::Q8 { group_size: g });
    let image = Image::parse(img.bytes()).unwrap();
    use microformer::image::{TensorData, TensorKind};
    assert!(matches!(
        image.tensor(TensorKind::WDown, 0).unwrap(),
        TensorData::F32(_)
    ));
    let TensorData::Q8 {
        values: iv,
        scales: is,
        group,
        ..
    } = image.tensor(TensorKind::WGate, 2).unwrap()
    else {
        panic!()
    };
    let Tensor::Q8 {
        values: fv,
        scales: fs,
        ..
    } = ck2.tensor(Weight::W1, 2).unwrap()
    else {
        panic!()
    };
    assert_eq!((iv, is, group), (fv, fs, g));
}

// ---------------------------------------------------------------------------
// Errors.

fn with_word(b: &Buf, at: usize, v: i32) -> Buf {
    let mut c = b.clone();
    c.bytes_mut()[at..at + 4].copy_from_slice(&v.to_le_bytes());
    c
}

fn parse_err(b: &[u8]) -> Error {
    Checkpoint::parse(b).unwrap_err()
}

/// Needs no checkpoint.
#[test]
fn empty_checkpoint_is_truncated() {
    assert_eq!(parse_err(&[]), Error::Truncated);
}

#[test]
fn malformed_checkpoints_give_typed_errors() {
    if !have([AIDREAMS]) {
        return;
    }
    let v0 = read("aidreams260K.bin");
    let ck = Checkpoint::parse(v0.bytes()).unwrap();
    let v1 = Buf::from_bytes(&write_v1(&ck));
    let v2 = Buf::from_bytes(&write_v2(&ck).0);

    for b in [&v0, &v1, &v2] {
        let len = b.bytes().len();
        for cut in [3, 20, 27, 28, 200, 255, 256, 1000, len / 2, len - 1] {
            assert_eq!(parse_err(&b.bytes()[..cut]), Error::Truncated, "cut {cut}");
        }
        // Longer than the header says.
        let mut long = b.bytes().to_vec();
        long.extend_from_slice(&[0; 4]);
        let long = Buf::from_bytes(&long);
        assert_eq!(
            parse_err(long.bytes()),
            Error::LengthMismatch {
                expected: len,
                got: len + 4
            }
        );
        // Not 4-byte aligned in memory.
        let mut shifted = Buf::zeroed(len + 1);
        shifted.bytes_mut()[1..].copy_from_slice(b.bytes());
        assert_eq!(parse_err(&shifted.bytes()[1..]), Error::Misaligned);
    }

    // Bad v1/v2 magic: one byte changed.
    for b in [&v1, &v2] {
        for at in 0..4 {
            let mut m = b.clone();
            m.bytes_mut()[at] ^= 0x20;
            assert_eq!(parse_err(m.bytes()), Error::BadMagic, "byte {at}");
        }
    }
    // Bad version.
    for v in [0, 3, -1] {
        assert_eq!(
            parse_err(with_word(&v1, 4, v).bytes()),
            Error::UnsupportedVersion { version: v as u32 }
        );
    }
    // Shared-classifier byte and padding.
    let mut s = v1.clone();
    s.bytes_mut()[36] = 2;
    assert_eq!(parse_err(s.bytes()), Error::Malformed);
    let mut s = v2.clone();
    s.bytes_mut()[100] = 1;
    assert_eq!(parse_err(s.bytes()), Error::Malformed);
    // v2 group size: zero, negative, not dividing the tensors.
    let g_at = 37;
    let mut z = v2.clone();
    z.bytes_mut()[g_at..g_at + 4].copy_from_slice(&0i32.to_le_bytes());
    assert_eq!(parse_err(z.bytes()), Error::ZeroDimension);
    z.bytes_mut()[g_at..g_at + 4].copy_from_slice(&(-64i32).to_le_bytes());
    assert_eq!(parse_err(z.bytes()), Error::InconsistentDimensions);
    z.bytes_mut()[g_at..g_at + 4].copy_from_slice(&48i32.to_le_bytes());
    assert_eq!(parse_err(z.bytes()), Error::InconsistentDimensions);

    // Inconsistent dimensions, in the legacy header (offset 0) and the v1 one (8).
    for (b, base) in [(&v0, 0), (&v1, 8)] {
        let field = |i: usize| base + 4 * i;
        // dim % n_heads != 0
        assert_eq!(
            parse_err(with_word(b, field(3), 3).bytes()),
            Error::InconsistentDimensions
        );
        // n_heads % n_kv_heads != 0
        assert_eq!(
            parse_err(with_word(b, field(4), 3).bytes()),
            Error::InconsistentDimensions
        );
        // odd head size (dim 64, 32 heads -> 2 is even; 64 heads -> 1 is odd)
        let odd = with_word(&with_word(b, field(3), 64), field(4), 64);
        assert_eq!(parse_err(odd.bytes()), Error::InconsistentDimensions);
        // negative and zero dims
        assert_eq!(
            parse_err(with_word(b, field(1), -172).bytes()),
            Error::InconsistentDimensions
        );
        for i in [1, 2, 3, 4, 6] {
            assert_eq!(
                parse_err(with_word(b, field(i), 0).bytes()),
                Error::ZeroDimension,
                "field {i}"
            );
        }
        // a consistent header that does not match the file length
        assert!(matches!(
            parse_err(with_word(b, field(2), 3).bytes()),
            Error::LengthMismatch { .. }
        ));
        assert_eq!(
            parse_err(with_word(b, field(2), 5).bytes()),
            Error::Truncated
        );
    }
    // A legacy vocab of zero, and a first word that is no dimension at all.
    assert_eq!(
        parse_err(with_word(&v0, 20, 0).bytes()),
        Error::ZeroDimension
    );
    assert_eq!(
        parse_err(with_word(&v0, 0, 1 << 24).bytes()),
        Error::BadMagic
    );
    // v1 has no negative-vocab convention.
    assert_eq!(
        parse_err(with_word(&v1, 8 + 20, -512).bytes()),
        Error::InconsistentDimensions
    );
    // A non-shared legacy checkpoint needs its classifier.
    assert_eq!(
        parse_err(with_word(&v0, 20, -512).bytes()),
        Error::Truncated
    );
}

#[test]
fn conversion_option_errors() {
    if !have([AIDREAMS]) {
        return;
    }
    let v0 = read("aidreams260K.bin");
    let ck = Checkpoint::parse(v0.bytes()).unwrap();
    let (cos, sin) = rope_tables(16, 128);
    let opts = ImageOptions {
        quant: Quant::F32,
        context: 128,
        rope_cos: &cos,
        rope_sin: &sin,
        tokenizer: None,
    };
    let check = |o: ImageOptions<'_>, e: Error| assert_eq!(llama2c::sizes(&ck, &o), Err(e));
    check(ImageOptions { context: 0, ..opts }, Error::ZeroDimension);
    check(
        ImageOptions {
            context: 129,
            ..opts
        },
        Error::PositionOutOfRange {
            position: 128,
            len: 128,
        },
    );
    check(
        ImageOptions {
            context: 64,
            ..opts
        },
        Error::LengthMismatch {
            expected: 64 * 8,
            got: 128 * 8,
        },
    );
    for g in [0, 6, 8192] {
        for quant in [Quant::Q8 { group_size: g }, Quant::Q8Fit { group_size: g }] {
            check(ImageOptions { quant, ..opts }, Error::InvalidParameter);
        }
    }
    // A v2 file converts only with its own group size.
    let v2 = Buf::from_bytes(&write_v2(&ck).0);
    let ck2 = Checkpoint::parse(v2.bytes()).unwrap();
    for quant in [
        Quant::Q8 { group_size: 32 },
        Quant::Q8Fit { group_size: 32 },
    ] {
        let o2 = ImageOptions { quant, ..opts };
        assert_eq!(llama2c::sizes(&ck2, &o2), Err(Error::InvalidParameter));
    }
    // A policy's group must be valid and divide the rows (w_down's: 172).
    use microformer::image::TensorKind as K;
    for (bad, kind) in [
        (64, K::WDown),
        (6, K::Wq),
        (0, K::Wq),
        (8192, K::TokenEmbedding),
    ] {
        let policy = move |k: K, _: usize, _: usize| {
            if k == kind {
                Precision::Q8 { group_size: bad }
            } else {
                Precision::F32
            }
        };
        for c in [&ck, &ck2] {
            assert_eq!(
                llama2c::sizes_with(c, &opts, &policy),
                Err(Error::InvalidParameter),
                "group {bad} for {kind:?}"
            );
        }
    }
    // An all-f32 policy gives the f32 image, header group 0.
    let all_f32 = |_: K, _: usize, _: usize| Precision::F32;
    assert_eq!(
        llama2c::sizes_with(&ck, &opts, &all_f32),
        llama2c::sizes(&ck, &opts)
    );

    // Buffers too small.
    let o = ImageOptions {
        quant: Quant::Q8 { group_size: 64 },
        ..opts
    };
    let sz = llama2c::sizes(&ck, &o).unwrap();
    let mut scratch = vec![0u32; sz.scratch_words - 1];
    let mut sources = vec![TensorSource::U8(&[]); sz.n_tensors];
    let mut out = Buf::zeroed(sz.image_bytes);
    assert!(matches!(
        llama2c::to_image(&ck, &o, &mut scratch, &mut sources, out.bytes_mut()),
        Err(Error::BufferTooSmall { .. })
    ));
    let mut scratch = vec![0u32; sz.scratch_words];
    let mut sources = vec![TensorSource::U8(&[]); sz.n_tensors - 1];
    assert_eq!(
        llama2c::to_image(&ck, &o, &mut scratch, &mut sources, out.bytes_mut()),
        Err(Error::BufferTooSmall {
            needed: sz.n_tensors,
            got: sz.n_tensors - 1
        })
    );
    let mut scratch = vec![0u32; sz.scratch_words];
    let mut sources = vec![TensorSource::U8(&[]); sz.n_tensors];
    let mut small = Buf::zeroed(sz.image_bytes - 4);
    assert_eq!(
        llama2c::to_image(&ck, &o, &mut scratch, &mut sources, small.bytes_mut()),
        Err(Error::BufferTooSmall {
            needed: sz.image_bytes,
            got: sz.image_bytes - 4
        })
    );
}

/// The int8 KV cache (one scale per row; its arithmetic is checked bit for bit
/// in `attn::kv_q8`): the exact arena it needs, and the top-1 agreement with
/// the f32 cache on the reference streams, f32 and Q8 weights (printed;
/// asserted ≥ 98 % for aidreams260K).
#[test]
fn int8_kv_cache() {
    if !have([REFERENCE, AIDREAMS, STORIES]) {
        return;
    }
    let r = reference();
    for (name, cap, quant) in [
        ("aidreams260K.bin", 128, Quant::F32),
        ("aidreams260K.bin", 128, Quant::Q8Fit { group_size: 64 }),
        ("stories260K.bin", 512, Quant::F32),
        ("stories260K.bin", 512, Quant::Q8Fit { group_size: 64 }),
    ] {
        let buf = read(name);
        let ck = Checkpoint::parse(buf.bytes()).unwrap();
        let img = convert(&ck, quant);
        let model = Model::new(Image::parse(img.bytes()).unwrap()).unwrap();
        let c = ck.config();
        let ctx = c.seq_len;
        let kv_dim = c.n_kv_heads * c.head_size();
        // int8 rows plus one f32 scale per row instead of f32 rows.
        let f32_cache = 2 * 4 * c.n_layers * ctx * kv_dim;
        let q8_cache = 2 * c.n_layers * ctx * (kv_dim + 4);
        assert_eq!(
            model.arena_bytes_with(ctx, KvFormat::Q8),
            model.arena_bytes(ctx) - f32_cache + q8_cache
        );
        let need = model.arena_bytes_with(ctx, KvFormat::Q8);
        let mut arena = vec![0u32; need.div_ceil(4)];
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut arena);
        assert!(matches!(
            Session::with_kv(&model, &mut bytes[..need - 1], ctx, KvFormat::Q8),
            Err(Error::BufferTooSmall { .. })
        ));
        assert!(Session::with_kv(&model, &mut bytes[..need], ctx, KvFormat::Q8).is_ok());

        let streams = streams(&r, name, cap);
        let want: Vec<_> = streams.iter().map(|s| all_logits(&model, s)).collect();
        let (mut agree, mut total, mut worst) = (0, 0, 0f32);
        for (w, s) in want.iter().zip(&streams) {
            for (wl, l) in w.iter().zip(all_logits_with(&model, s, KvFormat::Q8)) {
                agree += (argmax(wl) == argmax(&l)) as usize;
                total += 1;
                for (x, y) in wl.iter().zip(&l) {
                    worst = worst.max((x - y).abs());
                }
            }
        }
        let rate = agree as f64 / total as f64;
        println!(
            "{name} {quant:?} weights, int8 KV cache: top-1 agreement with the f32 cache {agree}/{total} = {:.2} %, largest logit difference {worst:.4}; cache {q8_cache} bytes (f32: {f32_cache})",
            100.0 * rate
        );
        if name == "aidreams260K.bin" {
            assert!(rate >= 0.98, "{name}: {rate}");
        }
    }
}

#[test]
fn session_errors_and_arena_size() {
    if !have([AIDREAMS]) {
        return;
    }
    let v0 = read("aidreams260K.bin");
    let ck = Checkpoint::parse(v0.bytes()).unwrap();
    for quant in [Quant::F32, Quant::Q8 { group_size: 64 }] {
        let img = convert(&ck, quant);
        let model = Model::new(Image::parse(img.bytes()).unwrap()).unwrap();
        let ctx = 3;
        let need = model.arena_bytes(ctx);
        // Exact: f32 activations, one score row, logits, the KV cache and (Q8)
        // the quantized activation (largest Q8 input: 64; scales: 64/64).
        let q8 = if model.is_quantized() { 64 + 4 } else { 0 };
        let f32s = 64 + 64 + 64 + 172 + 172 + 64 + 64 + 64 + ctx + 512 + 2 * 4 * ctx * 64;
        assert_eq!(need, 4 * f32s + q8);

        let mut arena = vec![0u32; need.div_ceil(4) + 1];
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut arena);
        assert!(matches!(
            Session::new(&model, &mut bytes[..need - 1], ctx),
            Err(Error::BufferTooSmall { .. })
        ));
        assert_eq!(
            Session::new(&model, &mut bytes[..need], 0).unwrap_err(),
            Error::ZeroDimension
        );
        assert_eq!(
            Session::new(&model, &mut bytes[..need], 129).unwrap_err(),
            Error::PositionOutOfRange {
                position: 128,
                len: 128
            }
        );
        // An unaligned arena needs the padding on top.
        assert_eq!(
            Session::new(&model, &mut bytes[1..need], ctx).unwrap_err(),
            Error::BufferTooSmall {
                needed: need + 3,
                got: need - 1
            }
        );
        let first = Session::new(&model, &mut bytes[1..need + 4], ctx)
            .unwrap()
            .step(1)
            .unwrap()
            .to_vec();

        let mut s = Session::new(&model, &mut bytes[..need], ctx).unwrap();
        assert_eq!(
            s.step(512).unwrap_err(),
            Error::TokenOutOfRange {
                token: 512,
                vocab_size: 512
            }
        );
        assert_eq!(s.position(), 0);
        assert_eq!(s.step(1).unwrap(), &first[..]);
        s.step(5).unwrap();
        s.step(6).unwrap();
        assert_eq!(s.position(), 3);
        assert_eq!(s.step(7).unwrap_err(), Error::ContextFull { context: 3 });
        assert_eq!(s.position(), 3);
        s.reset();
        assert_eq!(s.position(), 0);
        assert_eq!(s.step(1).unwrap(), &first[..]);
        assert_eq!(s.context(), 3);
    }
}

#[test]
fn fill_rope_tables_is_run_c_formula() {
    let (c, s) = rope_tables(8, 3);
    for p in 0..3 {
        for j in 0..4 {
            let freq = 1.0f32 / 10000f32.powf((2 * j) as f32 / 8.0);
            let val = p as f32 * freq;
            assert_eq!(c[p * 4 + j].to_bits(), val.cos().to_bits());
            assert_eq!(s[p * 4 + j].to_bits(), val.sin().to_bits());
        }
    }
    let (mut c, mut s) = (vec![0.0; 7], vec![0.0; 7]);
    assert!(llama2c::fill_rope_tables(8, &mut c, &mut s, f32::powf, f32::cos, f32::sin).is_err());
    assert_eq!(
        llama2c::fill_rope_tables(7, &mut c, &mut s, f32::powf, f32::cos, f32::sin),
        Err(Error::OddDimension { dim: 7 })
    );
}
