//! `microformer convert` + `run` on llama2.c checkpoints, end to end, against what
//! llama2.c's `run.c` printed (`../shared/models/reference-llama2c.json`): every
//! case's token ids (`--ids`) and, where the tokenizer exists, its exact stdout.
//! The checkpoints are read from the reference models folder (`../shared/models/`, or
//! `MICROFORMER_REFERENCE_DIR`; never copied): without it every test that needs them
//! is skipped, each named (`microformer_testkit::reference`), and the others run.

mod common;

use common::*;
use microformer::image::{self, Image};
use microformer::model::Model;
use microformer::tokenizer::Tokenizer;
use microformer_testkit::reference_files;
use serde_json::Value;

const AIDREAMS: &str = "aidreams260K.bin";
const AIDREAMS_TOK: &str = "aidreams260K.tok512.bin";
const STORIES: &str = "stories260K.bin";
const LLAMA2_TOK: &str = "llama2-tokenizer.bin";
const REFERENCE: &str = "reference-llama2c.json";

/// Whether the reference models folder holds every file of `names`; if not, the running
/// test is recorded as skipped (by name) and should return.
fn have<const N: usize>(names: [&str; N]) -> bool {
    reference_files!(names).is_some()
}

fn reference() -> Value {
    json(&model("reference-llama2c.json"))
}

/// The run.c flags of a case, as `microformer run` flags (the same letters).
fn case_args(case: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match case.get("args").and_then(Value::as_str) {
        Some(args) => {
            // "-t 0 -n 100 -i I was flying over": the prompt is the case's "prompt".
            let flags = args.split(" -i ").next().unwrap();
            out.extend(flags.split_whitespace().map(String::from));
        }
        None => {
            out.push("-t".into());
            out.push(case["temperature"].as_f64().unwrap().to_string());
            out.push("-n".into());
            out.push(case["steps"].as_u64().unwrap().to_string());
        }
    }
    let prompt = case["prompt"].as_str().unwrap();
    if !prompt.is_empty() {
        out.push("-i".into());
        out.push(prompt.into());
    }
    out
}

/// Converts a checkpoint (with its tokenizer when the case has one).
fn convert(dir: &TmpDir, case: &Value) -> std::path::PathBuf {
    let name = case["model"].as_str().unwrap();
    let out = dir.join(&format!("{name}.img"));
    let mut args = vec![
        "convert".to_string(),
        model(name).display().to_string(),
        "-o".into(),
        out.display().to_string(),
    ];
    if let Some(tok) = case["tokenizer"].as_str() {
        args.push("--tokenizer".into());
        args.push(model(tok).display().to_string());
    }
    ok(&args);
    out
}

#[test]
fn run_reproduces_every_reference_case() {
    if !have([REFERENCE, STORIES, AIDREAMS, AIDREAMS_TOK]) {
        return;
    }
    let r = reference();
    let dir = TmpDir::new("llama2c");
    let cases = r["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let img = convert(&dir, case);
        let flags = case_args(case);
        let want_ids = u32s(&case["ids"]);

        let mut args = vec!["run".to_string(), img.display().to_string(), "--ids".into()];
        args.extend(flags.iter().cloned());
        let got = ok(&args);
        let text = got.text();
        assert!(text.ends_with('\n'), "{flags:?}: {text:?}");
        assert_eq!(
            parse_ids(&text),
            want_ids,
            "ids of {} {flags:?}",
            case["model"]
        );

        if let Some(want_text) = case.get("text").and_then(Value::as_str) {
            let mut args = vec!["run".to_string(), img.display().to_string()];
            args.extend(flags.iter().cloned());
            let got = ok(&args);
            assert_eq!(
                got.stdout,
                want_text.as_bytes(),
                "text of {} {flags:?}:\n{}",
                case["model"],
                got.text()
            );
        } else {
            // No tokenizer (stories260K): text mode is a clear error.
            let mut args = vec!["run".to_string(), img.display().to_string()];
            args.extend(flags.iter().cloned());
            fails(&args, 2, "has no tokenizer");
        }
    }
}

#[test]
fn long_flags_equal_run_c_letters() {
    if !have([REFERENCE, AIDREAMS, AIDREAMS_TOK]) {
        return;
    }
    let r = reference();
    let case = &r["cases"][3];
    assert_eq!(case["args"], "-t 1.0 -p 0.9 -s 42 -n 128");
    let dir = TmpDir::new("flags");
    let img = convert(&dir, case);
    let img = img.display().to_string();
    let long = ok(&[
        "run",
        &img,
        "--temperature",
        "1.0",
        "--top-p",
        "0.9",
        "--seed",
        "42",
        "--steps",
        "128",
    ]);
    assert_eq!(long.stdout, case["text"].as_str().unwrap().as_bytes());
    // Defaults are temperature 1.0, top-p 0.9: only the seed and steps differ.
    let default_topp = ok(&["run", &img, "-s", "42", "-n", "128"]);
    assert_eq!(default_topp.stdout, long.stdout);
    // Seed 0 (the default) is deterministic: the same output twice, and it is the
    // documented constant 0x9E3779B97F4A7C15.
    let a = ok(&["run", &img, "--ids"]);
    let b = ok(&["run", &img, "--ids", "-s", "0"]);
    let c = ok(&[
        "run",
        &img,
        "--ids",
        "-s",
        &0x9E37_79B9_7F4A_7C15u64.to_string(),
    ]);
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(a.stdout, c.stdout);
    assert!(!parse_ids(&a.text()).is_empty());
    // A negative seed wraps as run.c's atoi into unsigned long long.
    let neg = ok(&["run", &img, "--ids", "-s", "-1", "-n", "20"]);
    let wrapped = ok(&[
        "run",
        &img,
        "--ids",
        "-s",
        &u64::MAX.to_string(),
        "-n",
        "20",
    ]);
    assert_eq!(neg.stdout, wrapped.stdout);
    // steps are clipped to the context (128): 0 and 1000 both mean 128 positions.
    let greedy_all = ok(&["run", &img, "--ids", "-t", "0", "-n", "0"]);
    let greedy_big = ok(&["run", &img, "--ids", "-t", "0", "-n", "1000"]);
    assert_eq!(greedy_all.stdout, greedy_big.stdout);
    assert_eq!(parse_ids(&greedy_all.text()), u32s(&r["cases"][1]["ids"]));
}

#[test]
fn prompt_ids_equal_the_encoded_prompt() {
    if !have([REFERENCE, AIDREAMS, AIDREAMS_TOK]) {
        return;
    }
    let r = reference();
    let case = &r["cases"][2];
    assert_eq!(case["prompt"], "I was flying over");
    let dir = TmpDir::new("prompt-ids");
    let img = convert(&dir, case);
    let img = img.display().to_string();
    // The prompt as the library's tokenizer encodes it (BOS first).
    let tok_bytes = std::fs::read(model("aidreams260K.tok512.bin")).unwrap();
    let (mut offsets, mut sorted) = (vec![0u32; 512], vec![0u32; 512]);
    let tok = Tokenizer::new(&tok_bytes, 512, &mut offsets, &mut sorted).unwrap();
    let (mut enc, mut scratch) = (vec![0u32; 32], vec![0u32; 32]);
    let n = tok
        .encode(b"I was flying over", true, false, &mut enc, &mut scratch)
        .unwrap();
    let prompt = &enc[..n];
    assert_eq!(prompt[0], 1);
    // run.c's ids include the prompt tokens after BOS.
    let ids = u32s(&case["ids"]);
    assert_eq!(&ids[..n - 1], &prompt[1..]);
    let by_ids = ok(&[
        "run",
        &img,
        "-t",
        "0",
        "-n",
        "100",
        "--prompt-ids",
        &id_list(prompt),
    ]);
    let by_text = ok(&[
        "run",
        &img,
        "-t",
        "0",
        "-n",
        "100",
        "-i",
        "I was flying over",
    ]);
    assert_eq!(by_ids.stdout, by_text.stdout);
    assert!(by_text.text().starts_with("I was flying over"));
}

/// `lm::Generator` encodes a text prompt with its merge scratch in the token
/// buffer's second half when that holds it, else in the arena (dead until
/// the session opens): both give run.c's ids for "I was flying over"
/// (greedy, 100 positions); an arena too small for the scratch is a typed
/// error, not a panic.
#[test]
fn generator_prompt_scratch_in_the_tokens_or_the_arena() {
    use microformer::lm::{buffer_sizes, Buffers, Generator, Options, Prompt};
    use microformer::model::{Arith, KvFormat};
    use microformer::tokenizer::max_encoded_len;
    if !have([REFERENCE, AIDREAMS, AIDREAMS_TOK]) {
        return;
    }
    let r = reference();
    let case = &r["cases"][2];
    let dir = TmpDir::new("generator-scratch");
    let img = convert(&dir, case);
    let bytes = std::fs::read(&img).unwrap();
    let buf = AlignedBuf::from_bytes(&bytes);
    let model = Model::new(Image::parse(buf.bytes()).unwrap()).unwrap();
    let generate = |prompt: &str, tokens: usize, arena: usize| {
        let [_, index, probs, _] = buffer_sizes(&model, prompt.len(), KvFormat::F32, Arith::Float);
        let (mut arena, mut index) = (vec![0u8; arena], vec![0u32; index]);
        let mut probs = vec![Default::default(); probs];
        let mut tokens = vec![0u32; tokens];
        let buffers = Buffers {
            arena: &mut arena,
            index: &mut index,
            probs: &mut probs,
            tokens: &mut tokens,
        };
        let options = Options {
            prompt: Prompt::Text(prompt),
            steps: 100,
            temperature: 0.0,
            ..Options::DEFAULT
        };
        let mut g = Generator::new(&model, buffers, &options)?;
        let mut ids = Vec::new();
        while let Some(t) = g.next_token()? {
            ids.push(t.id);
        }
        Ok::<_, microformer::Error>(ids)
    };
    let prompt = "I was flying over";
    let [arena, .., need] = buffer_sizes(&model, prompt.len(), KvFormat::F32, Arith::Float);
    assert_eq!(need, max_encoded_len(prompt.len()));
    let want = u32s(&case["ids"]);
    assert_eq!(
        generate(prompt, 2 * need, arena).unwrap(),
        want,
        "scratch in the tokens"
    );
    assert_eq!(
        generate(prompt, need, arena).unwrap(),
        want,
        "scratch in the arena"
    );
    // A prompt whose scratch is larger than the arena.
    let long = "a".repeat(arena);
    let need = max_encoded_len(long.len());
    assert!(4 * need > arena);
    assert!(matches!(
        generate(&long, need, arena),
        Err(microformer::Error::BufferTooSmall { .. })
    ));
}

/// `--kv q8`: `logits` gives exactly the library's int8-KV-cache logits, which
/// are not the f32 cache's; `run` takes it too.
#[test]
fn int8_kv_cache_flag() {
    if !have([REFERENCE, AIDREAMS, AIDREAMS_TOK]) {
        return;
    }
    let r = reference();
    let case = &r["cases"][1];
    let dir = TmpDir::new("kv-q8");
    let img = convert(&dir, case);
    let tokens: Vec<u32> = std::iter::once(1)
        .chain(u32s(&case["ids"]))
        .take(24)
        .collect();
    let cli = ok(&[
        "logits",
        img.to_str().unwrap(),
        "--tokens",
        &id_list(&tokens),
        "--kv",
        "q8",
    ]);
    let cli: serde_json::Value = serde_json::from_slice(&cli.stdout).unwrap();
    let bytes = std::fs::read(&img).unwrap();
    let buf = AlignedBuf::from_bytes(&bytes);
    let model = Model::new(Image::parse(buf.bytes()).unwrap()).unwrap();
    let kv = microformer::model::KvFormat::Q8;
    let mut arena = vec![0u8; model.arena_bytes_with(tokens.len(), kv) + 3];
    let mut s = microformer::model::Session::with_kv(&model, &mut arena, tokens.len(), kv).unwrap();
    let f32_cache = logits(&img, &tokens);
    let mut differs = false;
    for (p, &t) in tokens.iter().enumerate() {
        let want = s.step(t).unwrap();
        let got: Vec<f32> = cli["logits"][p]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(got, want, "position {p}");
        differs |= f32_cache[p]
            .as_array()
            .unwrap()
            .iter()
            .zip(&got)
            .any(|(a, &b)| a.as_f64().unwrap() as f32 != b);
    }
    assert!(differs, "the int8 cache gave the f32 cache's logits");
    let run = ok(&[
        "run",
        img.to_str().unwrap(),
        "--ids",
        "-t",
        "0",
        "-n",
        "40",
        "--kv",
        "q8",
    ]);
    assert_eq!(parse_ids(&run.text()).len(), 40);
    bad_flags(&["run", img.to_str().unwrap(), "--kv", "q4"], "q4");
}

#[test]
fn inspect_reports_header_tensors_and_sizes() {
    if !have([REFERENCE, AIDREAMS, AIDREAMS_TOK]) {
        return;
    }
    let r = reference();
    let case = &r["cases"][1];
    let dir = TmpDir::new("inspect");
    let img = convert(&dir, case);
    let out = ok(&["inspect", img.to_str().unwrap()]).text();
    let bytes = std::fs::read(&img).unwrap();
    let buf = AlignedBuf::from_bytes(&bytes);
    let image = Image::parse(buf.bytes()).unwrap();
    let h = image.header();
    let model_ = Model::new(image).unwrap();
    for (k, v) in [
        ("flash bytes:", bytes.len() as u64),
        ("dim:", h.dim as u64),
        ("n_layers:", h.n_layers as u64),
        ("vocab_size:", 512),
        ("seq_len:", 128),
        ("n_tensors:", image::slots(h).count() as u64),
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(k))
            .unwrap_or_else(|| panic!("no {k} in {out}"));
        assert_eq!(line[k.len()..].trim(), v.to_string(), "{line}");
    }
    assert!(
        out.contains("flags:          tied_embeddings rope_interleaved tokenizer"),
        "{out}"
    );
    // one line per tensor, with its byte count
    assert!(
        has_row(&out, &["token_embedding", "-", "f32", "512x64", "131072"]),
        "{out}"
    );
    assert!(
        has_row(&out, &["tokenizer", "-", "u8", "1x6290", "6290"]),
        "{out}"
    );
    let wq_lines = out
        .lines()
        .filter(|l| l.trim_start().starts_with("wq "))
        .count();
    assert_eq!(wq_lines, 4);
    // arena sizes as the library computes them (f32 and int8 KV cache)
    for c in [1usize, 16, 64, 128] {
        let want = format!(
            "{:>8} {:>14} {:>14}",
            c,
            model_.arena_bytes(c),
            model_.arena_bytes_with(c, microformer::model::KvFormat::Q8)
        );
        assert!(out.contains(&want), "no {want:?} in {out}");
    }
}

/// Whether a line of `out` has exactly these whitespace-separated fields.
fn has_row(out: &str, fields: &[&str]) -> bool {
    out.lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>() == fields)
}

/// A 4-byte aligned copy of some bytes.
use microformer_testkit::AlignedBytes as AlignedBuf;

#[test]
fn q8_conversion_runs_and_is_q8() {
    if !have([REFERENCE, AIDREAMS, AIDREAMS_TOK]) {
        return;
    }
    let r = reference();
    let case = &r["cases"][1];
    let dir = TmpDir::new("q8");
    let out = dir.join("aid-q8.img");
    ok(&[
        "convert",
        model("aidreams260K.bin").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--quant",
        "q8",
        "--tokenizer",
        model("aidreams260K.tok512.bin").to_str().unwrap(),
    ]);
    let info = ok(&["inspect", out.to_str().unwrap()]).text();
    assert!(info.contains("group_size:     64"), "{info}");
    // 64x64 int8 values + 64 scales
    assert!(
        has_row(&info, &["wq", "0", "q8", "64x64", "4352"]),
        "{info}"
    );
    // w_down's rows (172) are not whole groups of 64: Q8 with its own group of 4
    // (64x172 int8 values + 2752 scales)
    assert!(
        has_row(&info, &["w_down", "3", "q8", "64x172", "22016"]),
        "{info}"
    );
    let run = ok(&[
        "run",
        out.to_str().unwrap(),
        "--ids",
        "-t",
        "0",
        "-n",
        "128",
    ]);
    let ids = parse_ids(&run.text());
    assert_eq!(ids.len(), 128);
    // Q8 weights keep the first greedy tokens of the f32 model.
    assert_eq!(ids[..4], u32s(&case["ids"])[..4]);
    fails(
        &[
            "convert",
            model("aidreams260K.bin").to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--group-size",
            "32",
        ],
        2,
        "--group-size needs --quant q8",
    );
}

/// `agree/total = rate %` from the converter's check line.
fn check_line(stderr: &str) -> (usize, usize) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("microformer: check: top-1 agreement"))
        .unwrap_or_else(|| panic!("no check line in {stderr}"));
    let frac = line
        .split_whitespace()
        .find(|w| w.contains('/'))
        .unwrap_or_else(|| panic!("{line}"));
    let (a, t) = frac.split_once('/').unwrap();
    (a.parse().unwrap(), t.parse().unwrap())
}

#[test]
fn f16_conversion_and_the_agreement_check() {
    if !have([REFERENCE, STORIES]) {
        return;
    }
    let dir = TmpDir::new("f16");
    let src = model("stories260K.bin");
    let (f16, q8) = (dir.join("s-f16.img"), dir.join("s-q8.img"));
    let conv = |out: &std::path::Path, quant: &str| {
        ok(&[
            "convert",
            src.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--quant",
            quant,
        ])
        .stderr
    };
    // f16: every matrix binary16 (2 bytes a value), ≥ 98 % agreement, no warning.
    let e = conv(&f16, "f16");
    assert!(e.contains("matrices f16"), "{e}");
    let (agree, total) = check_line(&e);
    assert_eq!(total, 256, "{e}");
    assert!(agree * 100 >= 98 * total, "{e}");
    assert!(!e.contains("warning"), "{e}");
    let info = ok(&["inspect", f16.to_str().unwrap()]).text();
    assert!(
        has_row(&info, &["w_down", "4", "f16", "64x172", "22016"]),
        "{info}"
    );
    assert!(
        has_row(&info, &["attn_norm", "0", "f32", "1x64", "256"]),
        "{info}"
    );
    // The first greedy tokens are the f32 model's (run.c's).
    let run = ok(&["run", f16.to_str().unwrap(), "--ids", "-t", "0", "-n", "30"]);
    assert_eq!(
        parse_ids(&run.text()),
        u32s(&reference()["cases"][0]["ids"])[..30]
    );
    // Q8 of stories260K: the check reports the drift and suggests f16.
    let e = conv(&q8, "q8");
    let (agree, total) = check_line(&e);
    assert!(agree * 100 < 98 * total, "{e}");
    assert!(e.contains("warning: below 98 %"), "{e}");
    assert!(e.contains("--quant f16"), "{e}");
    // --no-check skips it; f32 is never checked.
    let e = ok(&[
        "convert",
        src.to_str().unwrap(),
        "-o",
        q8.to_str().unwrap(),
        "--quant",
        "q8",
        "--no-check",
    ])
    .stderr;
    assert!(!e.contains("check:"), "{e}");
    assert!(!conv(&f16, "f32").contains("check:"));
}

/// The errors that need no checkpoint: an empty checkpoint, a missing source, a missing
/// image.
#[test]
fn errors_without_a_checkpoint() {
    let dir = TmpDir::new("errors-no-ckpt");
    let empty = dir.join("empty.bin");
    std::fs::write(&empty, b"").unwrap();
    let out = dir.join("x.img");
    fails(
        &[
            "convert",
            empty.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        1,
        "nor a valid llama2.c checkpoint: truncated",
    );
    fails(
        &[
            "convert",
            dir.join("nope.bin").to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        1,
        "cannot read",
    );
    assert!(!out.exists(), "a failed conversion left an output");
    fails(
        &["run", dir.join("nope.img").to_str().unwrap()],
        1,
        "cannot read",
    );
}

#[test]
fn errors_exit_nonzero_with_a_message() {
    if !have([AIDREAMS, AIDREAMS_TOK, LLAMA2_TOK]) {
        return;
    }
    let dir = TmpDir::new("errors");
    let aid = model("aidreams260K.bin");
    let tok = model("aidreams260K.tok512.bin");
    let img = dir.join("aid.img");
    ok(&[
        "convert",
        aid.to_str().unwrap(),
        "-o",
        img.to_str().unwrap(),
        "--tokenizer",
        tok.to_str().unwrap(),
    ]);
    let img_s = img.to_str().unwrap();

    // truncated checkpoints (an empty one: `errors_without_a_checkpoint`)
    let out = dir.join("x.img");
    let full = std::fs::read(&aid).unwrap();
    for cut in [3, 28, 1000, full.len() - 4] {
        let t = dir.join("trunc.bin");
        std::fs::write(&t, &full[..cut]).unwrap();
        fails(
            &["convert", t.to_str().unwrap(), "-o", out.to_str().unwrap()],
            1,
            "llama2.c checkpoint",
        );
    }
    assert!(!out.exists(), "a failed conversion left an output");
    // missing tokenizer, a tokenizer for another vocabulary (a missing source:
    // `errors_without_a_checkpoint`)
    fails(
        &[
            "convert",
            aid.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--tokenizer",
            dir.join("nope").to_str().unwrap(),
        ],
        1,
        "cannot read",
    );
    fails(
        &[
            "convert",
            aid.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--tokenizer",
            model("llama2-tokenizer.bin").to_str().unwrap(),
        ],
        1,
        "does not fit the model's vocabulary of 512",
    );
    // context beyond the checkpoint's
    fails(
        &[
            "convert",
            aid.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--context",
            "129",
        ],
        2,
        "exceeds the checkpoint's context of 128",
    );
    // an unwritable output
    fails(
        &[
            "convert",
            aid.to_str().unwrap(),
            "-o",
            dir.join("no/such/dir.img").to_str().unwrap(),
        ],
        1,
        "cannot write",
    );

    // not an image, truncated image (a missing image: `errors_without_a_checkpoint`)
    fails(
        &["run", tok.to_str().unwrap()],
        1,
        "not a valid microformer image",
    );
    let bytes = std::fs::read(&img).unwrap();
    let t = dir.join("trunc.img");
    std::fs::write(&t, &bytes[..bytes.len() / 2]).unwrap();
    fails(&["inspect", t.to_str().unwrap()], 1, "truncated");
    fails(
        &["logits", t.to_str().unwrap(), "--tokens", "1"],
        1,
        "truncated",
    );

    // out-of-range tokens
    fails(
        &["logits", img_s, "--tokens", "999999"],
        2,
        "token 999999 is outside the vocabulary of 512",
    );
    fails(
        &["logits", img_s, "--tokens", "1,2,512"],
        2,
        "token 512 is outside",
    );
    fails(
        &["run", img_s, "--prompt-ids", "1,600", "--ids"],
        2,
        "prompt token 600 is outside",
    );
    // more tokens than the context
    let many = id_list(&vec![5u32; 129]);
    fails(
        &["logits", img_s, "--tokens", &many],
        2,
        "exceed the image's context of 128",
    );
    // a prompt longer than the context: a 16-position image
    let small = dir.join("small.img");
    ok(&[
        "convert",
        aid.to_str().unwrap(),
        "-o",
        small.to_str().unwrap(),
        "--tokenizer",
        tok.to_str().unwrap(),
        "--context",
        "16",
    ]);
    let long_prompt = "I was flying over the mountains and the rivers and the cities of the night";
    fails(
        &["run", small.to_str().unwrap(), "-i", long_prompt],
        2,
        "longer than the image's context of 16 positions",
    );
    fails(
        &[
            "run",
            small.to_str().unwrap(),
            "--prompt-ids",
            &id_list(&[1; 17]),
        ],
        2,
        "17 tokens, longer than",
    );

    // no tokenizer: text mode and --prompt fail, --ids works without a prompt
    let bare = dir.join("bare.img");
    ok(&[
        "convert",
        aid.to_str().unwrap(),
        "-o",
        bare.to_str().unwrap(),
    ]);
    fails(&["run", bare.to_str().unwrap()], 2, "has no tokenizer");
    fails(
        &["run", bare.to_str().unwrap(), "--ids", "-i", "hello"],
        2,
        "no tokenizer to encode --prompt",
    );
    ok(&["run", bare.to_str().unwrap(), "--ids", "-n", "5"]);

    // bad flag values
    fails(&["run", img_s, "-t", "-1"], 2, "--temperature must be");
    fails(&["run", img_s, "-t", "nan"], 2, "--temperature must be");
    fails(&["run", img_s, "-p", "1.5"], 2, "--top-p must be in [0, 1]");
    bad_flags(&["run", img_s, "-n", "-3"], "error:");
    bad_flags(&["run", img_s, "--bogus"], "--bogus");
    bad_flags(&["run", img_s, "-s", "x"], "bad seed");
    bad_flags(&["logits", img_s], "--tokens");
    bad_flags(&["logits", img_s, "--tokens", "1,,2"], "empty item");
    bad_flags(&["logits", img_s, "--tokens", "1,-2"], "bad token id");
    bad_flags(&["convert", aid.to_str().unwrap()], "--output");
    bad_flags(
        &["convert", aid.to_str().unwrap(), "-o", "x", "--quant", "q4"],
        "q4",
    );
    bad_flags(
        &[
            "convert",
            aid.to_str().unwrap(),
            "-o",
            "x",
            "--context",
            "0",
        ],
        "0",
    );
    bad_flags(
        &["run", img_s, "-i", "a", "--prompt-ids", "1"],
        "cannot be used with",
    );
}
