//! The boards' run on the host: the same code the firmware runs (`lm::run`: image,
//! arena check, tokenizer, prompt, llama2.c's loop, decoded pieces), fed by the same
//! build-script conversion (`host::convert_llama2c`), with the real boards' memory and
//! settings.
//!
//! - With an f32 image of `aidreams260K` at its full context, the text is what llama2.c's
//!   `run.c` printed (`../shared/models/reference-llama2c.json`): greedy, with a prompt,
//!   and seeded top-p.
//! - With the Q8_0 image each board embeds, the arena the session needs is the figure the
//!   budgets state, fits the board's arena, and a whole-context run works in exactly that
//!   memory.
//! - Every error is reported before generation, and an arena too small names the largest
//!   context that fits.
//!
//! The checkpoint is read from `../shared/models/` (never copied here).

use microformer::image::Image;
use microformer::model::Model;
use microformer_firmware::budgets::{self, Budget};
use microformer_firmware::host::{convert_llama2c, AlignedBytes as Aligned};
use microformer_firmware::lm::{self, Events, Memory, Plan, RunError, Token};
use microformer_firmware::Settings;
use serde_json::Value;

const MODELS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/models/");

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{MODELS}{name}")).unwrap_or_else(|e| panic!("{MODELS}{name}: {e}"))
}

fn image(q8: bool, context: usize, tokenizer: bool) -> Aligned {
    let tok = read("aidreams260K.tok512.bin");
    let bytes = convert_llama2c(
        &read("aidreams260K.bin"),
        tokenizer.then_some(&tok[..]),
        q8,
        Some(context),
    )
    .unwrap();
    Aligned::new(&bytes)
}

/// Collects what the run reports.
#[derive(Default)]
struct Collect {
    plan: Option<Plan>,
    text: Vec<u8>,
}

impl Events for Collect {
    fn started(&mut self, plan: &Plan) {
        assert!(self.plan.is_none(), "started twice");
        self.plan = Some(*plan);
    }
    fn token(&mut self, t: Token<'_>) {
        assert!(self.plan.is_some(), "text before start");
        self.text.extend_from_slice(t.text);
    }
    fn needs_tokenizer(&self) -> bool {
        true
    }
}

/// [`lm::run`] in `memory`, as the real boards run it.
fn run<const A: usize, const V: usize, const P: usize>(
    image: &[u8],
    context: usize,
    settings: &Settings<'_>,
    memory: &mut Memory<A, V, P>,
    events: &mut Collect,
) -> Result<microformer::generate::Generated, RunError> {
    lm::run(image, context, settings, memory.buffers(), events)
}

/// aidreams260K at its full context, f32: arena 5028 − 64 (no Q8 buffer) − 4 (no Q8 scale)
/// + 2052 · 128 bytes; a little spare.
type F32Memory = Memory<270_000, 512, 32>;

fn settings(steps: u32, temperature: f32, seed: u64, prompt: &'static str) -> Settings<'static> {
    Settings {
        steps,
        seed,
        temperature,
        prompt,
        ..Settings::REAL_BOARD
    }
}

fn reference(args: &str) -> String {
    let s = read("reference-llama2c.json");
    let v: Value = serde_json::from_slice(&s).unwrap();
    let case = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["args"].as_str() == Some(args))
        .unwrap_or_else(|| panic!("no reference case {args}"));
    case["text"].as_str().unwrap().to_string()
}

/// run.c prints every piece, then one newline.
fn check_against_run_c(args: &str, s: Settings<'static>) {
    let img = image(false, 128, true);
    let mut mem = Box::new(F32Memory::new());
    let mut out = Collect::default();
    let g = run(img.bytes(), 128, &s, &mut mem, &mut out).unwrap();
    let mut text = String::from_utf8(out.text).unwrap();
    text.push('\n');
    assert_eq!(text, reference(args), "{args}");
    let plan = out.plan.unwrap();
    assert_eq!(
        (plan.context, plan.quantized, plan.vocab_size),
        (128, false, 512)
    );
    assert_eq!(g.positions, s.steps as usize);
}

#[test]
fn greedy_text_is_run_c_s() {
    check_against_run_c("-t 0 -n 128", settings(128, 0.0, 42, ""));
}

#[test]
fn prompted_text_is_run_c_s() {
    let s = settings(100, 0.0, 42, "I was flying over");
    check_against_run_c("-t 0 -n 100 -i I was flying over", s);
}

#[test]
fn seeded_top_p_text_is_run_c_s() {
    // run.c stops there on the BOS token (65 tokens), before the 128 steps.
    let img = image(false, 128, true);
    let mut mem = Box::new(F32Memory::new());
    let mut out = Collect::default();
    let s = settings(128, 1.0, 42, "");
    let g = run(img.bytes(), 128, &s, &mut mem, &mut out).unwrap();
    let mut text = String::from_utf8(out.text).unwrap();
    text.push('\n');
    assert_eq!(text, reference("-t 1.0 -p 0.9 -s 42 -n 128"));
    assert!(g.stopped);
    assert_eq!(g.emitted, 65);
}

/// The arena bytes the budgets state for aidreams260K in Q8_0: `5304 + 2052·c`.
fn stated_arena(context: usize) -> usize {
    5304 + 2052 * context
}

fn board_run<const ARENA: usize>(budget: Budget, expected_context: usize) {
    assert_eq!(budget.arena_bytes, ARENA);
    assert_eq!(budget.context, expected_context);
    let img = image(true, budget.context, true);
    let model = Model::new(Image::parse(img.bytes()).unwrap()).unwrap();
    let needed = model.arena_bytes(budget.context);
    assert_eq!(needed, stated_arena(budget.context));
    assert!(needed <= budget.arena_bytes);
    let mut mem = Box::new(Memory::<ARENA, 512, 3>::new());
    let mut out = Collect::default();
    let s = settings(0, 0.0, 42, "");
    let g = run(img.bytes(), budget.context, &s, &mut mem, &mut out).unwrap();
    let plan = out.plan.unwrap();
    assert_eq!(
        (plan.context, plan.arena_needed, plan.arena_reserved),
        (budget.context, needed, budget.arena_bytes)
    );
    assert!(plan.quantized);
    // Greedy never samples BOS here: the whole context runs.
    assert_eq!((g.positions, g.stopped), (budget.context, false));
    assert_eq!(g.emitted, budget.context);
    // Quantizing the weights to 8 bits moves the greedy text away from run.c's f32 text
    // only after a while (here after about 140 characters).
    let text = String::from_utf8(out.text).unwrap();
    let f32_text = reference("-t 0 -n 128");
    let same = text
        .bytes()
        .zip(f32_text.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    assert!(same >= 100, "{same}: {text:?}");
    assert!(text
        .chars()
        .all(|c| !c.is_control() || c.is_ascii_whitespace()));
}

#[test]
fn stm32f429i_disco_budget() {
    board_run::<{ 176 * 1024 }>(budgets::STM32F429I_DISCO, 80);
}

#[test]
fn nrf52840_dk_budget() {
    board_run::<{ 232 * 1024 }>(budgets::NRF52840_DK, 112);
}

#[test]
fn rp_pico_budget() {
    board_run::<{ 232 * 1024 }>(budgets::RP_PICO, 112);
}

#[test]
fn errors_come_before_generation() {
    let q8 = image(true, 80, true);
    let s = Settings::REAL_BOARD;
    let mut out = Collect::default();

    // An arena too small: the needed bytes and the largest context that fits.
    let mut small = Box::new(Memory::<100_000, 512, 3>::new());
    let e = run(q8.bytes(), 80, &s, &mut small, &mut out).unwrap_err();
    let fits = (100_000 - 5304) / 2052;
    assert_eq!(
        e,
        RunError::ArenaTooSmall {
            context: 80,
            needed: 169_464,
            reserved: 100_000,
            fits
        }
    );
    assert!(stated_arena(fits) <= 100_000 && stated_arena(fits + 1) > 100_000);
    assert!(e.to_string().contains("MICROFORMER_CONTEXT=46"), "{e}");
    // ... and a run at that context goes through.
    run(
        q8.bytes(),
        fits,
        &settings(4, 0.0, 1, ""),
        &mut small,
        &mut out,
    )
    .unwrap();
    assert_eq!(out.plan.take().map(|p| p.context), Some(46));

    // The board's context is capped at the image's.
    let mut mem = Box::new(Memory::<{ 232 * 1024 }, 512, 3>::new());
    run(
        q8.bytes(),
        112,
        &settings(4, 0.0, 1, ""),
        &mut mem,
        &mut out,
    )
    .unwrap();
    assert_eq!(out.plan.take().map(|p| p.context), Some(80));

    let mut out = Collect::default();
    assert_eq!(
        run(&[], 80, &s, &mut mem, &mut out).unwrap_err(),
        RunError::NoImage
    );
    let bad = Aligned::new(&q8.bytes()[..1000]);
    assert!(matches!(
        run(bad.bytes(), 80, &s, &mut mem, &mut out).unwrap_err(),
        RunError::Image(_)
    ));
    let no_tok = image(true, 80, false);
    assert_eq!(
        run(no_tok.bytes(), 80, &s, &mut mem, &mut out).unwrap_err(),
        RunError::NoTokenizer
    );
    let mut narrow = Box::new(Memory::<{ 232 * 1024 }, 500, 3>::new());
    assert_eq!(
        run(q8.bytes(), 80, &s, &mut narrow, &mut out).unwrap_err(),
        RunError::VocabTooLarge {
            vocab: 512,
            capacity: 500
        }
    );
    // Room for 3 prompt tokens: BOS, the dummy prefix and one more.
    let long = settings(0, 0.0, 1, "a prompt longer than three tokens");
    assert!(matches!(
        run(q8.bytes(), 80, &long, &mut mem, &mut out).unwrap_err(),
        RunError::Prompt(_)
    ));
    assert!(out.plan.is_none() && out.text.is_empty());
}
