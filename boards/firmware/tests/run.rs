//! The boards' run on the host: the same code the firmware runs (`lm::run`: image,
//! arena check, tokenizer, prompt, llama2.c's loop, decoded pieces), fed by the same
//! build-script conversion (`host::convert_llama2c`), with the real boards' memory and
//! settings.
//!
//! - With an f32 image of `aidreams260K` at its full context, the text is what llama2.c's
//!   `run.c` printed (`../shared/models/reference-llama2c.json`): greedy, with a prompt,
//!   and seeded top-p.
//! - With the Q8_0 image each board embeds by default (the project's own `models/rope`,
//!   shipped in the repository), the arena the session needs is the figure the budgets
//!   state, fits the board's arena, and a whole-context run works in exactly that memory.
//! - Every error is reported before generation, and an arena too small names the largest
//!   context that fits.
//!
//! The checkpoint is read from the reference models folder (`../shared/models/`, or
//! `MICROFORMER_REFERENCE_DIR`; never copied here): without it every test that needs it
//! is skipped, each named (`microformer_testkit::reference`), and the others run.

use microformer::image::Image;
use microformer::model::Model;
use microformer_firmware::budgets::{self, Budget};
use microformer_firmware::host::{
    convert_llama2c, convert_model_dir, own_model, AlignedBytes as Aligned, DEFAULT_MODEL,
};
use microformer_firmware::lm::{self, Events, Memory, Plan, RunError, Token};
use microformer_firmware::Settings;
use microformer_testkit::reference::models_dir;
use microformer_testkit::reference_files;
use serde_json::Value;

const AIDREAMS: &str = "aidreams260K.bin";
const AIDREAMS_TOK: &str = "aidreams260K.tok512.bin";
const REFERENCE: &str = "reference-llama2c.json";

/// Whether the reference models folder holds every file of `names`; if not, the running
/// test is recorded as skipped (by name) and should return.
fn have<const N: usize>(names: [&str; N]) -> bool {
    reference_files!(names).is_some()
}

/// A reference model file (checked by [`have`] first).
fn read(name: &str) -> Vec<u8> {
    let path = models_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn image(q8: bool, context: usize, tokenizer: bool) -> Aligned {
    let tok = read(AIDREAMS_TOK);
    let bytes = convert_llama2c(
        &read(AIDREAMS),
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
    let s = read(REFERENCE);
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
    if !have([REFERENCE, AIDREAMS, AIDREAMS_TOK]) {
        return;
    }
    check_against_run_c("-t 0 -n 128", settings(128, 0.0, 42, ""));
}

#[test]
fn prompted_text_is_run_c_s() {
    if !have([REFERENCE, AIDREAMS, AIDREAMS_TOK]) {
        return;
    }
    let s = settings(100, 0.0, 42, "I was flying over");
    check_against_run_c("-t 0 -n 100 -i I was flying over", s);
}

#[test]
fn seeded_top_p_text_is_run_c_s() {
    if !have([REFERENCE, AIDREAMS, AIDREAMS_TOK]) {
        return;
    }
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

/// The arena bytes the budgets state for the project's own models in Q8_0 (5 layers of
/// 4 KV heads of 8: 1 280 bytes of f32 keys and values a position, plus one score per
/// position for each of 2 query-head rows): `5080 + 1288·c`.
fn stated_arena(context: usize) -> usize {
    5080 + 1288 * context
}

/// A board's default image: the project's own `models/rope` (shipped in the repository),
/// converted by the build-script code at the board's context, Q8_0 or f32.
fn own_image(q8: bool, context: usize) -> Aligned {
    let dir = own_model(DEFAULT_MODEL);
    Aligned::new(&convert_model_dir(&dir, q8, Some(context)).unwrap())
}

fn board_run<const ARENA: usize>(budget: Budget, expected_context: usize) {
    assert_eq!(budget.arena_bytes, ARENA);
    assert_eq!(budget.context, expected_context);
    let img = own_image(true, budget.context);
    let model = Model::new(Image::parse(img.bytes()).unwrap()).unwrap();
    assert!(model.is_quantized());
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
    assert!(plan.quantized && plan.tokenizer);
    // Greedy never samples BOS here: the whole context runs.
    assert_eq!((g.positions, g.stopped), (budget.context, false));
    assert_eq!(g.emitted, budget.context);
    let text = String::from_utf8(out.text).unwrap();
    assert!(text
        .chars()
        .all(|c| !c.is_control() || c.is_ascii_whitespace()));
}

#[test]
fn stm32f429i_disco_budget() {
    board_run::<{ 176 * 1024 }>(budgets::STM32F429I_DISCO, 128);
}

#[test]
fn nrf52840_dk_budget() {
    board_run::<{ 232 * 1024 }>(budgets::NRF52840_DK, 128);
}

#[test]
fn rp_pico_budget() {
    board_run::<{ 232 * 1024 }>(budgets::RP_PICO, 128);
}

/// Needs no checkpoint.
#[test]
fn no_image_is_an_error() {
    let mut mem = Box::new(Memory::<{ 232 * 1024 }, 512, 3>::new());
    let mut out = Collect::default();
    assert_eq!(
        run(&[], 80, &Settings::REAL_BOARD, &mut mem, &mut out).unwrap_err(),
        RunError::NoImage
    );
    assert!(out.plan.is_none() && out.text.is_empty());
}

#[test]
fn errors_come_before_generation() {
    let q8 = own_image(true, 80);
    let s = Settings::REAL_BOARD;
    let mut out = Collect::default();

    // An arena too small: the needed bytes and the largest context that fits.
    let mut small = Box::new(Memory::<100_000, 512, 3>::new());
    let e = run(q8.bytes(), 80, &s, &mut small, &mut out).unwrap_err();
    let fits = (100_000 - 5080) / 1288;
    assert_eq!(
        e,
        RunError::ArenaTooSmall {
            context: 80,
            needed: 108_120,
            reserved: 100_000,
            fits
        }
    );
    assert!(stated_arena(fits) <= 100_000 && stated_arena(fits + 1) > 100_000);
    assert!(e.to_string().contains("MICROFORMER_CONTEXT=73"), "{e}");
    // ... and a run at that context goes through.
    run(
        q8.bytes(),
        fits,
        &settings(4, 0.0, 1, ""),
        &mut small,
        &mut out,
    )
    .unwrap();
    assert_eq!(out.plan.take().map(|p| p.context), Some(73));

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
    let bad = Aligned::new(&q8.bytes()[..1000]);
    assert!(matches!(
        run(bad.bytes(), 80, &s, &mut mem, &mut out).unwrap_err(),
        RunError::Image(_)
    ));
    // The model without its tokenizer.bin beside it.
    let dir = std::env::temp_dir().join(format!("microformer-no-tok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(own_model(DEFAULT_MODEL).join(f), dir.join(f)).unwrap();
    }
    let no_tok = Aligned::new(&convert_model_dir(&dir, true, Some(80)).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
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
