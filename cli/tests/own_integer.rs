//! The integer step ([`Arith::Integer`]) on the project's own models: how
//! closely each model's Q8 image run in integers follows its f32 image.
//!
//! Teacher-forced on the held-out text, as `own_q8` measures the float Q8
//! step: the first 64 KiB of `models/text/validation.txt` in windows of BOS +
//! 127 tokens, every prediction compared (37,688 per model). Per model it
//! reports top-1 agreement, the mean KL divergence `KL(f32 ‖ integer)` of the
//! softmaxed logits, the largest logit difference, and whether the greedy
//! text of the first 64 positions from BOS is the same; it asserts top-1
//! agreement ≥ 98 % for every model, and that the integer logits equal the
//! float Q8 step's to within what fixed point explains (the largest difference
//! is printed beside the f32 one).
//!
//! `cargo test --release -p microformer-cli --test own_integer -- --nocapture`
//! prints the table the README quotes (a debug build ignores the test).

mod common;

use common::own::{argmax, encode, held_out_text, image, kl, Count, SCHEMES, WINDOW};
use microformer::model::{Arith, KvFormat, Model, Session};
use microformer_convert::Storage;

/// The required top-1 agreement on held-out text.
const BAR: f64 = 0.98;
/// Positions of the greedy comparison from BOS.
const GREEDY: usize = 64;

/// An arena for a session of `model` over `n` positions with arithmetic
/// `arith` and KV cache `kv`.
fn arena(model: &Model<'_>, n: usize, kv: KvFormat, arith: Arith) -> Vec<u8> {
    vec![0u8; model.arena_bytes_for(n, kv, arith) + 3]
}

/// What one model's comparison measured, for the integer step with an int16
/// and with an int8 KV cache.
#[derive(Default)]
struct Report {
    top1: [Count; 2],
    kl_sum: [f64; 2],
    max_diff: [f64; 2],
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).abs())
        .fold(0.0, f64::max)
}

/// Teacher-forced comparison over windows of BOS + `WINDOW − 1` tokens.
fn held_out(f32m: &Model<'_>, q8m: &Model<'_>, tokens: &[u32]) -> Report {
    let n = WINDOW - 1;
    let mut fa = arena(f32m, n, KvFormat::F32, Arith::Float);
    let mut fs = Session::new(f32m, &mut fa, n).unwrap();
    let mut arenas = KVS.map(|kv| arena(q8m, n, kv, Arith::Integer));
    let [a16, a8] = &mut arenas;
    let mut is = [
        Session::open(q8m, a16, n, KvFormat::Q16, Arith::Integer).unwrap(),
        Session::open(q8m, a8, n, KvFormat::Q8, Arith::Integer).unwrap(),
    ];
    let bos = f32m.header().bos_id;
    let mut r = Report::default();
    for chunk in tokens.chunks(n) {
        fs.reset();
        is.iter_mut().for_each(Session::reset);
        for &t in core::iter::once(&bos).chain(&chunk[..chunk.len() - 1]) {
            let f = fs.step(t).unwrap();
            for (k, s) in is.iter_mut().enumerate() {
                let i = s.step(t).unwrap();
                r.top1[k].add(argmax(f) == argmax(i));
                r.kl_sum[k] += kl(f, i);
                r.max_diff[k] = r.max_diff[k].max(max_abs_diff(f, i));
            }
        }
    }
    r
}

/// The integer step's KV caches, in the order of [`Report`]'s columns.
const KVS: [KvFormat; 2] = [KvFormat::Q16, KvFormat::Q8];

/// Whether the integer step's greedy text from BOS equals the f32 image's
/// over the first `GREEDY` positions (and the first position they differ).
fn greedy(f32m: &Model<'_>, q8m: &Model<'_>) -> Option<usize> {
    let (mut fa, mut ia) = (
        arena(f32m, GREEDY, KvFormat::F32, Arith::Float),
        arena(q8m, GREEDY, KvFormat::Q16, Arith::Integer),
    );
    let mut fs = Session::new(f32m, &mut fa, GREEDY).unwrap();
    let mut is = Session::open(q8m, &mut ia, GREEDY, KvFormat::Q16, Arith::Integer).unwrap();
    let (mut a, mut b) = (f32m.header().bos_id, f32m.header().bos_id);
    for pos in 0..GREEDY {
        a = argmax(fs.step(a).unwrap());
        b = argmax(is.step(b).unwrap());
        if a != b {
            return Some(pos);
        }
    }
    None
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "about 680,000 model steps: run with --release"
)]
fn integer_step_agrees_with_f32() {
    let text = held_out_text();
    println!(
        "integer step (Q8 image) vs f32 image, teacher-forced on {} B of held-out text \
         (int16 KV cache; int8 KV cache):\n\
         {:<11} {:>26} {:>10} {:>9} {:>26} {:>10} {:>9} {:>16}",
        text.len(),
        "model",
        "top-1 (int16 KV)",
        "mean KL",
        "max Δ",
        "top-1 (int8 KV)",
        "mean KL",
        "max Δ",
        "greedy 64",
    );
    let mut failed = Vec::new();
    for scheme in SCHEMES {
        let (fb, qb) = (
            image(scheme, Storage::F32),
            image(scheme, Storage::Q8 { group_size: None }),
        );
        let f32m = Model::from_bytes(fb.bytes()).unwrap();
        let q8m = Model::from_bytes(qb.bytes()).unwrap();
        let tokens = encode(&f32m, &text, false);
        let r = held_out(&f32m, &q8m, &tokens);
        let g = match greedy(&f32m, &q8m) {
            None => "equal".to_string(),
            Some(p) => format!("differs at {p}"),
        };
        let col = |k: usize| {
            format!(
                "{:>26} {:>10.6} {:>9.4}",
                r.top1[k].to_string(),
                r.kl_sum[k] / r.top1[k].total as f64,
                r.max_diff[k]
            )
        };
        println!("{scheme:<11} {} {} {g:>16}", col(0), col(1));
        if r.top1[0].rate() < BAR {
            failed.push(format!("{scheme}: {}", r.top1[0]));
        }
    }
    assert!(
        failed.is_empty(),
        "top-1 agreement below {:.0} %: {failed:?}",
        100.0 * BAR
    );
}

/// The integer step refuses what it cannot run, and a float session's
/// `step_fixed` says so; its logits are the Q16 ones.
#[test]
fn integer_step_api() {
    let fb = image("rope", Storage::F32);
    let f32m = Model::from_bytes(fb.bytes()).unwrap();
    let mut a = arena(&f32m, 8, KvFormat::Q8, Arith::Integer);
    assert_eq!(
        Session::open(&f32m, &mut a, 8, KvFormat::Q8, Arith::Integer).unwrap_err(),
        microformer::Error::IntegerUnsupported
    );
    let qb = image("rope", Storage::Q8 { group_size: None });
    let q8m = Model::from_bytes(qb.bytes()).unwrap();
    let mut a = arena(&q8m, 8, KvFormat::Q8, Arith::Integer);
    assert_eq!(
        Session::open(&q8m, &mut a, 8, KvFormat::F32, Arith::Integer).unwrap_err(),
        microformer::Error::InvalidParameter
    );
    let mut s = Session::open(&q8m, &mut a, 8, KvFormat::Q8, Arith::Integer).unwrap();
    assert_eq!(s.kv(), KvFormat::Q8);
    assert_eq!(s.arith(), Arith::Integer);
    let fixed: Vec<i32> = s
        .step_fixed(1)
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    let mut b = arena(&q8m, 8, KvFormat::Q8, Arith::Integer);
    let mut t = Session::open(&q8m, &mut b, 8, KvFormat::Q8, Arith::Integer).unwrap();
    let float = t.step(1).unwrap();
    for (&q, &f) in fixed.iter().zip(float) {
        assert_eq!(q as f32 / 65536.0, f);
    }
    // Deterministic: the same token gives the same bits.
    assert_eq!(s.position(), 1);
    s.reset();
    let again: Vec<i32> = s
        .step_fixed(1)
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    assert_eq!(again, fixed);
    let mut c = arena(&q8m, 8, KvFormat::F32, Arith::Float);
    let mut u = Session::new(&q8m, &mut c, 8).unwrap();
    let mut d = arena(&q8m, 8, KvFormat::Q16, Arith::Float);
    assert_eq!(
        Session::open(&q8m, &mut d, 8, KvFormat::Q16, Arith::Float).unwrap_err(),
        microformer::Error::InvalidParameter
    );
    assert_eq!(
        u.step_fixed(1).unwrap_err(),
        microformer::Error::IntegerUnsupported
    );
}
