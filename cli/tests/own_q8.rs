//! The project's own models (`models/<scheme>/`): how closely each one's Q8
//! image (`microformer convert models/S --quant q8`) follows its f32 image.
//!
//! Two measures of top-1 agreement (the arg-max of the q8 logits equals the
//! arg-max of the f32 logits), both teacher-forced — the two images see the
//! same tokens, so one disagreement does not derail the rest:
//!
//! - held-out text: the first [`HELD_OUT_BYTES`] of `models/text/validation.txt`
//!   (three plays the models never trained on) cut back to the last line end,
//!   as `cargo xtask extrapolation` cuts it, encoded as `microformer
//!   perplexity` encodes it, in non-overlapping windows of BOS + 127 tokens
//!   (the training length, 128 positions); every prediction of every window
//!   is compared — 37,688 predictions of real text. The test asserts at
//!   least [`BAR`] here for every model.
//! - the converter's check: the f32 image generates greedily from BOS for 256
//!   positions (stopping at BOS; the learned model's table ends at 128) and
//!   the q8 image is fed those tokens; printed for the first 128 positions
//!   (the training length) and for all 256, the converter's figure. Past 128
//!   positions a model is outside what it was trained on (the sinusoidal
//!   model's perplexity at window 256 is several times its figure at 128),
//!   so that part partly measures how erratic an extrapolating model's logits
//!   are rather than the quantisation; and one stream of 128 or 256 tokens
//!   moves in steps of 0.8 or 0.4 %.
//!
//! Run with `cargo test --release -p microformer-cli --test own_q8 --
//! --nocapture` to see the figures (a debug build ignores the test: it takes
//! a minute in release, over 17 in debug). Needs nothing outside the repository.

mod common;

use common::own::{argmax, encode, held_out_text, image, Count, SCHEMES, WINDOW};
use microformer::model::{Model, Session};
use microformer_convert::Storage;

/// Positions of the converter's greedy stream (its `CHECK_POSITIONS`).
const GREEDY: usize = 256;
/// The required top-1 agreement on held-out text.
const BAR: f64 = 0.98;

/// Teacher-forced agreement over windows of BOS + `WINDOW − 1` tokens of `tokens`.
fn held_out(f32m: &Model<'_>, q8m: &Model<'_>, tokens: &[u32]) -> Count {
    let n = WINDOW - 1;
    let (mut fa, mut qa) = (
        vec![0u8; f32m.arena_bytes(n) + 3],
        vec![0u8; q8m.arena_bytes(n) + 3],
    );
    let mut fs = Session::new(f32m, &mut fa, n).unwrap();
    let mut qs = Session::new(q8m, &mut qa, n).unwrap();
    let bos = f32m.header().bos_id;
    let mut c = Count::default();
    for chunk in tokens.chunks(n) {
        fs.reset();
        qs.reset();
        // Every prediction of the window: from BOS, then from each token.
        for &t in core::iter::once(&bos).chain(&chunk[..chunk.len() - 1]) {
            let want = argmax(fs.step(t).unwrap());
            c.add(want == argmax(qs.step(t).unwrap()));
        }
    }
    c
}

/// The converter's check: agreement within the first `WINDOW` positions and
/// over all `GREEDY` of the f32 image's greedy stream from BOS.
fn greedy(f32m: &Model<'_>, q8m: &Model<'_>) -> (Count, Count) {
    let n = GREEDY.min(f32m.max_context());
    let (mut fa, mut qa) = (
        vec![0u8; f32m.arena_bytes(n) + 3],
        vec![0u8; q8m.arena_bytes(n) + 3],
    );
    let mut fs = Session::new(f32m, &mut fa, n).unwrap();
    let mut qs = Session::new(q8m, &mut qa, n).unwrap();
    let bos = f32m.header().bos_id;
    let (mut first, mut all) = (Count::default(), Count::default());
    let mut token = bos;
    for pos in 0..n {
        let next = argmax(fs.step(token).unwrap());
        let same = next == argmax(qs.step(token).unwrap());
        all.add(same);
        if pos < WINDOW {
            first.add(same);
        }
        token = next;
        if token == bos {
            break;
        }
    }
    (first, all)
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "about 450,000 model steps: a minute in release, over 17 in debug; run with --release"
)]
fn q8_images_agree_with_f32() {
    let text = held_out_text();
    let text = &text[..];
    let mut failed = Vec::new();
    println!(
        "top-1 agreement, q8 image vs f32 image (teacher-forced):\n\
         {:<11} {:>30} {:>28} {:>28}",
        "model",
        format!("held-out {} B, windows {WINDOW}", text.len()),
        format!("greedy first {WINDOW}"),
        format!("greedy all {GREEDY}"),
    );
    for scheme in SCHEMES {
        let (fb, qb) = (
            image(scheme, Storage::F32),
            image(scheme, Storage::Q8 { group_size: None }),
        );
        let f32m = Model::from_bytes(fb.bytes()).unwrap();
        let q8m = Model::from_bytes(qb.bytes()).unwrap();
        assert!(!f32m.is_quantized() && q8m.is_quantized(), "{scheme}");
        let tokens = encode(&f32m, text, false);
        // Line by line equals whole-text encoding (on the first 8 KiB, whole lines).
        let head = &text[..=text[..8192].iter().rposition(|&b| b == b'\n').unwrap()];
        let lines = encode(&f32m, head, false);
        assert_eq!(lines, encode(&f32m, head, true), "{scheme}: tokenization");
        assert_eq!(tokens[..lines.len()], lines[..], "{scheme}");
        let h = held_out(&f32m, &q8m, &tokens);
        let (first, all) = greedy(&f32m, &q8m);
        println!("{scheme:<11} {h:>30} {first:>28} {all:>28}");
        if h.rate() < BAR {
            failed.push(format!("{scheme}: {h}"));
        }
    }
    assert!(
        failed.is_empty(),
        "held-out top-1 agreement below {:.0} %: {failed:?}",
        100.0 * BAR
    );
}
