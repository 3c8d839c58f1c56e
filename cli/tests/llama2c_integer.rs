//! The integer step ([`Arith::Integer`]) on llama2.c's checkpoints, teacher-forced on the
//! token streams llama2.c's `run.c` printed (`../shared/models/reference-llama2c.json`):
//! at every position of every reference case, the arg-max of the Q8 image's integer
//! logits against the f32 image's float logits (run.c's arithmetic), with the int16
//! and with the int8 KV cache. Reported per model: top-1 agreement, mean KL divergence
//! `KL(f32 ‖ integer)`, the largest logit difference, and whether the integer step's
//! greedy ids from BOS equal run.c's over the first 64 tokens. Asserted: top-1
//! agreement ≥ 98 % on aidreams260K (int16 KV cache); stories260K's figure is reported
//! (8-bit weights alone cost that model about 10 points).
//!
//! The checkpoints come from the reference models folder (never copied): without it
//! the test is skipped by name. `cargo test --release -p microformer-cli --test
//! llama2c_integer -- --nocapture` prints the table the README quotes.

mod common;

use common::model;
use common::own::{argmax, kl, Count};
use microformer::model::{Arith, KvFormat, Model, Session};
use microformer_convert::{llama2c, AlignedBytes, Storage};
use microformer_testkit::reference_files;
use serde_json::Value;

/// The required top-1 agreement on aidreams260K.
const BAR: f64 = 0.98;
/// Greedy ids compared with run.c's.
const GREEDY: usize = 64;

fn image(name: &str, tokenizer: Option<&str>, storage: Storage) -> AlignedBytes {
    let ck = std::fs::read(model(name)).unwrap();
    let tok = tokenizer.map(|t| std::fs::read(model(t)).unwrap());
    let opts = llama2c::Options {
        storage,
        context: None,
        tokenizer: tok.as_deref(),
    };
    AlignedBytes::new(&llama2c::convert(&ck, &opts).unwrap().image)
}

/// One model's figures for one KV cache.
#[derive(Default)]
struct Figures {
    top1: Count,
    kl: f64,
    max_diff: f64,
}

fn session<'m>(
    m: &'m Model<'m>,
    arena: &'m mut Vec<u8>,
    n: usize,
    kv: KvFormat,
    arith: Arith,
) -> Session<'m> {
    *arena = vec![0u8; m.arena_bytes_for(n, kv, arith) + 3];
    Session::open(m, arena, n, kv, arith).unwrap()
}

/// Teacher-forced comparison over `stream` (BOS first).
fn compare(f32m: &Model<'_>, q8m: &Model<'_>, stream: &[u32], kv: KvFormat, f: &mut Figures) {
    let n = stream.len();
    let (mut fa, mut ia) = (Vec::new(), Vec::new());
    let mut fs = session(f32m, &mut fa, n, KvFormat::F32, Arith::Float);
    let mut is = session(q8m, &mut ia, n, kv, Arith::Integer);
    for &t in stream {
        let a = fs.step(t).unwrap();
        let b = is.step(t).unwrap();
        f.top1.add(argmax(a) == argmax(b));
        f.kl += kl(a, b);
        f.max_diff = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| (x as f64 - y as f64).abs())
            .fold(f.max_diff, f64::max);
    }
}

/// The integer step's greedy ids from BOS (int16 KV cache), `n` of them.
fn greedy(q8m: &Model<'_>, n: usize) -> Vec<u32> {
    let mut a = Vec::new();
    let mut s = session(q8m, &mut a, n, KvFormat::Q16, Arith::Integer);
    let mut t = q8m.header().bos_id;
    (0..n)
        .map(|_| {
            t = argmax(s.step(t).unwrap());
            t
        })
        .collect()
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "about 2,000 model steps per model: run with --release"
)]
fn integer_step_follows_run_c() {
    let Some(_) = reference_files!([
        "reference-llama2c.json",
        "aidreams260K.bin",
        "aidreams260K.tok512.bin",
        "stories260K.bin"
    ]) else {
        return;
    };
    let reference: Value =
        serde_json::from_slice(&std::fs::read(model("reference-llama2c.json")).unwrap()).unwrap();
    let cases = reference["cases"].as_array().unwrap();
    println!(
        "integer step (Q8 image) vs f32 image (run.c's arithmetic), teacher-forced on run.c's \
         token streams:\n{:<13} {:>24} {:>10} {:>8} {:>24} {:>10} {:>8} {:>22}",
        "model",
        "top-1 (int16 KV)",
        "mean KL",
        "max Δ",
        "top-1 (int8 KV)",
        "mean KL",
        "max Δ",
        "greedy 64 vs run.c"
    );
    let mut failed = Vec::new();
    for (name, tok) in [
        ("aidreams260K.bin", Some("aidreams260K.tok512.bin")),
        ("stories260K.bin", None),
    ] {
        let fb = image(name, tok, Storage::F32);
        let qb = image(name, tok, Storage::Q8 { group_size: None });
        let f32m = Model::from_bytes(fb.bytes()).unwrap();
        let q8m = Model::from_bytes(qb.bytes()).unwrap();
        let bos = f32m.header().bos_id;
        let mut figs = [Figures::default(), Figures::default()];
        let mut greedy_ref: Option<Vec<u32>> = None;
        for case in cases.iter().filter(|c| c["model"] == name) {
            let ids: Vec<u32> = case["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            // BOS, then every id but the last: each position predicts the next id.
            let stream: Vec<u32> = std::iter::once(bos)
                .chain(ids[..ids.len() - 1].iter().copied())
                .collect();
            for (f, kv) in figs.iter_mut().zip([KvFormat::Q16, KvFormat::Q8]) {
                compare(&f32m, &q8m, &stream, kv, f);
            }
            let is_greedy = case["prompt"] == ""
                && case["ids"].as_array().unwrap().len() >= GREEDY
                && (case["temperature"].as_f64() == Some(0.0)
                    || case["args"]
                        .as_str()
                        .is_some_and(|a| a.starts_with("-t 0 ")));
            if is_greedy && greedy_ref.is_none() {
                greedy_ref = Some(ids[..GREEDY].to_vec());
            }
        }
        let g = match greedy_ref {
            Some(want) => {
                let got = greedy(&q8m, GREEDY);
                match got.iter().zip(&want).position(|(a, b)| a != b) {
                    None => "equal".to_string(),
                    Some(p) => format!("differs at {p}"),
                }
            }
            None => "no greedy case".to_string(),
        };
        let col = |f: &Figures| {
            format!(
                "{:>24} {:>10.6} {:>8.4}",
                f.top1.to_string(),
                f.kl / f.top1.total as f64,
                f.max_diff
            )
        };
        let short = name.trim_end_matches(".bin");
        println!("{short:<13} {} {} {g:>22}", col(&figs[0]), col(&figs[1]));
        if short == "aidreams260K" && figs[0].top1.rate() < BAR {
            failed.push(format!("{short}: {}", figs[0].top1));
        }
    }
    assert!(failed.is_empty(), "top-1 agreement below 98 %: {failed:?}");
}

/// The same Q8 image with its scales in block-float form too (`convert
/// --block-scales`) gives the integer step's Q16 logits bit for bit, with
/// both KV caches, over 96 positions of the plain image's greedy tokens: the
/// block product reads what the step otherwise decodes.
#[test]
#[cfg_attr(debug_assertions, ignore = "model steps: run with --release")]
fn block_scales_give_the_same_logits() {
    let Some(_) = reference_files!(["aidreams260K.bin", "stories260K.bin"]) else {
        return;
    };
    for name in ["aidreams260K.bin", "stories260K.bin"] {
        let qb = image(name, None, Storage::Q8 { group_size: None });
        let bb = AlignedBytes::new(
            &microformer_convert::block_scales::with_block_scales(qb.bytes()).unwrap(),
        );
        assert!(bb.bytes().len() > qb.bytes().len());
        let (plain, block) = (
            Model::from_bytes(qb.bytes()).unwrap(),
            Model::from_bytes(bb.bytes()).unwrap(),
        );
        for kv in [KvFormat::Q16, KvFormat::Q8] {
            let n = 96;
            let (mut pa, mut ba) = (Vec::new(), Vec::new());
            let mut ps = session(&plain, &mut pa, n, kv, Arith::Integer);
            let mut bs = session(&block, &mut ba, n, kv, Arith::Integer);
            let mut t = plain.header().bos_id;
            for pos in 0..n {
                let a: Vec<i32> = ps
                    .step_fixed(t)
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect();
                let b: Vec<i32> = bs
                    .step_fixed(t)
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect();
                assert_eq!(a, b, "{name} {kv:?} position {pos}");
                t = (0..a.len())
                    .max_by_key(|&i| (a[i], std::cmp::Reverse(i)))
                    .unwrap() as u32;
            }
        }
    }
}
