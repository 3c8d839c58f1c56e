//! The firmware's main program, shared by every board (feature `defmt`: needs a
//! global logger):
//!
//! - [`self_check`] (the QEMU boards): the self-check, compared with the host's
//!   stream, and a description of the embedded image; [`kernels`]: the kernel
//!   timings (`bench=kernels` on a QEMU board's command line);
//! - [`perplexity`]: the embedded model scoring the token stream embedded at build
//!   time (`perplexity=N` on a QEMU board's command line), one JSON line of figures
//!   as `microformer perplexity --json` prints them;
//! - [`main`]: the embedded model, run with [`crate::lm::run`] and the board's
//!   [`Settings`] (the build's; on the QEMU boards overridden by the semihosting
//!   command line, see `crate::qemu`), the generated text handed to the
//!   [`Board`] (QEMU: semihosting stderr, see `crate::qemu`; real boards: RTT
//!   lines and the serial port, see `crate::device`). An image without a tokenizer
//!   (a Hugging Face conversion) has no text: its token ids are handed over instead,
//!   space-separated, as `microformer run --ids` prints them.
//!
//! What a run logs, in order: the settings and the RAM block; the model (size,
//! shape, Q8 or f32, the image's context); the arena check (bytes needed for the
//! context against the bytes reserved, or an error naming the largest context that
//! fits); the prompt's tokens; then, after the text, a `figures:` line (positions,
//! tokens, instructions, the stack's high-water mark: read by `cargo xtask bench`)
//! on a board that counts instructions, and the time and tokens per second on a
//! board with a microsecond clock.

use microformer::image::Image;

use crate::cases::SELFCHECK;
use crate::lm::{self, Events, Memory, Plan, RunError, Token};
use crate::settings::CmdlineError;
use crate::{bench, check, selfcheck, Settings};

/// Runs the self-check on `board` and returns the process exit code (0: all
/// good): compared with the host's `expected` stream, then a description of the
/// embedded model image, if any.
pub fn self_check(board: &str, image: &[u8], settings: &Settings, expected: &[u32]) -> i32 {
    defmt::println!("microformer firmware on {}", board);
    let passed = match check(&SELFCHECK, expected) {
        Ok(p) => p,
        Err(f) => {
            defmt::error!("self-check failed: {}", f);
            return 1;
        }
    };
    let (Ok(f32_head), Ok(q15_head)) = (selfcheck::rotated(), selfcheck::rotated_q15()) else {
        return 1;
    };
    defmt::println!(
        "self-check: RoPE at position {} of {}",
        selfcheck::POSITION,
        selfcheck::INPUT
    );
    defmt::println!("  f32 (compile-time table): {}", f32_head);
    defmt::println!("  Q15 (integer phases):     {}", q15_head);
    defmt::println!("  bit-identical to the host ({} words)", passed.words);
    if image.is_empty() {
        defmt::println!("no model image embedded (build with MICROFORMER_IMAGE=<file>)");
    } else {
        match Image::parse(image) {
            Ok(img) => {
                let h = img.header();
                defmt::println!(
                    "model image: {} bytes, dim {}, {} layers, {} heads ({} kv), vocab {}, \
                     context {}",
                    image.len(),
                    h.dim,
                    h.n_layers,
                    h.n_heads,
                    h.n_kv_heads,
                    h.vocab_size,
                    h.seq_len
                );
            }
            Err(e) => {
                defmt::error!("model image rejected: {}", e);
                return 1;
            }
        }
    }
    defmt::println!("build-time settings: {}", settings);
    0
}

/// What [`main`] needs from its board.
pub trait Board {
    /// A piece of generated text, as llama2.c prints it.
    fn text(&mut self, bytes: &[u8]);
    /// The text has ended; `generated`: the run went through (llama2.c then prints
    /// one newline).
    fn text_end(&mut self, generated: bool);
    /// Instructions so far, on a board that counts them (QEMU's `-icount`).
    fn instructions(&self) -> Option<u64> {
        None
    }
    /// Microseconds since a fixed point (monotonic), on a board with a clock.
    fn micros(&mut self) -> Option<u64> {
        None
    }
    /// The stack's high-water mark in bytes, on a board that measures it.
    fn stack_peak(&self) -> Option<usize> {
        None
    }
    /// Whether the text is the board's only output: an image without a tokenizer is
    /// then refused (see [`lm::Events::needs_tokenizer`]).
    fn needs_tokenizer(&self) -> bool {
        false
    }
}

/// Hands the run's events to the board and reads its clocks when generation starts.
/// Without a tokenizer in the image, the text is the token ids, as `microformer run
/// --ids` prints them: space-separated (then the one final newline).
struct Feed<'b, B: Board> {
    board: &'b mut B,
    start: (Option<u64>, Option<u64>),
    /// The image has no tokenizer: print ids.
    ids: bool,
    /// No id printed yet.
    first: bool,
}

impl<B: Board> Events for Feed<'_, B> {
    fn started(&mut self, p: &Plan) {
        defmt::println!(
            "model: {=usize} bytes, dim {=u32}, {=u32} layers, {=u32} heads ({=u32} kv), \
             vocab {=u32}, {=str}, image context {=u32}",
            p.image_bytes,
            p.dim,
            p.n_layers,
            p.n_heads,
            p.n_kv_heads,
            p.vocab_size,
            if p.quantized { "Q8_0" } else { "f32" },
            p.image_context
        );
        defmt::println!(
            "arena: {=usize} of {=usize} bytes for a context of {=usize} positions",
            p.arena_needed,
            p.arena_reserved,
            p.context
        );
        defmt::println!("prompt: {=usize} tokens (BOS included)", p.prompt_tokens);
        defmt::println!("---");
        self.start = (self.board.instructions(), self.board.micros());
        self.ids = !p.tokenizer;
    }

    fn token(&mut self, t: Token<'_>) {
        if !self.ids {
            return self.board.text(t.text);
        }
        if !self.first {
            self.board.text(b" ");
        }
        self.first = false;
        let mut buf = [0u8; 20];
        self.board.text(decimal_u64(u64::from(t.id), &mut buf));
    }

    fn needs_tokenizer(&self) -> bool {
        self.board.needs_tokenizer()
    }
}

/// Runs the model in `image` for up to `context` positions with `settings` on
/// `board`, in `memory`. Returns the exit code: 0, or 1 after logging the error.
pub fn main<const ARENA: usize, const VOCAB: usize, const PROMPT: usize>(
    image: &[u8],
    context: usize,
    settings: &Settings<'_>,
    memory: &mut Memory<ARENA, VOCAB, PROMPT>,
    board: &mut impl Board,
) -> i32 {
    defmt::println!(
        "settings: context {=usize}, {}, RAM block {=usize} bytes",
        context,
        settings,
        Memory::<ARENA, VOCAB, PROMPT>::BYTES
    );
    let mut feed = Feed {
        board,
        start: (None, None),
        ids: false,
        first: true,
    };
    let result = lm::run(image, context, settings, memory.buffers(), &mut feed);
    let Feed { board, start, .. } = feed;
    let end = (board.instructions(), board.micros());
    board.text_end(result.is_ok());
    let g = match result {
        Ok(g) => g,
        Err(e) => {
            report(&e);
            return 1;
        }
    };
    defmt::println!("---");
    if let (Some(start), Some(end)) = (start.0, end.0) {
        defmt::println!(
            "figures: positions={=usize} tokens={=usize} stopped={=bool} \
             instructions={=u64} stack_bytes={=usize}",
            g.positions,
            g.emitted,
            g.stopped,
            end - start,
            board.stack_peak().unwrap_or(0)
        );
    }
    if let (Some(start), Some(end)) = (start.1, end.1) {
        let us = end.saturating_sub(start);
        let stop = if g.stopped { " (stopped on BOS)" } else { "" };
        if us == 0 {
            defmt::println!(
                "{=usize} positions, {=usize} tokens emitted{=str} (the clock did not run)",
                g.positions,
                g.emitted,
                stop
            );
        } else {
            defmt::println!(
                "{=usize} positions, {=usize} tokens emitted{=str} in {=u64} ms: {=f32} tok/s",
                g.positions,
                g.emitted,
                stop,
                us / 1000,
                g.positions as f32 * 1e6 / us as f32
            );
        }
    }
    0
}

/// Scores the token stream embedded at build time (`tokens`) with the model in
/// `image`, in windows of `window` positions ([`lm::perplexity`], as `microformer
/// perplexity --window` does), in `memory`'s arena with the KV cache format of
/// `settings`. The text handed to the board is one JSON line of integers, `{"tokens":
/// …, "windows": …, "window": …, "nll_bits": …}`, the mean negative log-likelihood as
/// its f64 bit pattern (the host reads back the device's exact value, and the firmware
/// carries no float formatting); the log shows the figures formatted (by
/// `defmt-print`, on the host). Returns the exit code: 0, or 1 after logging the error.
pub fn perplexity<const ARENA: usize, const VOCAB: usize, const PROMPT: usize>(
    image: &[u8],
    window: usize,
    settings: &Settings<'_>,
    tokens: &[u32],
    memory: &mut Memory<ARENA, VOCAB, PROMPT>,
    board: &mut impl Board,
) -> i32 {
    defmt::println!(
        "perplexity: {=usize} tokens embedded, windows of {=usize} positions, kv {}",
        tokens.len(),
        window,
        settings.kv
    );
    let start = board.instructions();
    let result = lm::perplexity(
        image,
        window,
        settings.kv,
        settings.arith,
        tokens,
        memory.buffers().arena,
    );
    let end = board.instructions();
    let ppl = match result {
        Ok(p) => p,
        Err(e) => {
            report(&e);
            return 1;
        }
    };
    // Integers only (no float formatting in flash): the mean nll as its f64 bit pattern,
    // which the host reads back exactly; defmt-print formats the figures for the log.
    defmt::println!(
        "perplexity {=f64} (nll {=f64} nats) over {=usize} predictions in {=usize} windows",
        ppl.perplexity(),
        ppl.nll(),
        ppl.tokens(),
        ppl.windows()
    );
    let mut buf = [0u8; 20];
    board.text(b"{\"tokens\": ");
    board.text(decimal_u64(ppl.tokens() as u64, &mut buf));
    board.text(b", \"windows\": ");
    board.text(decimal_u64(ppl.windows() as u64, &mut buf));
    board.text(b", \"window\": ");
    board.text(decimal_u64(window as u64, &mut buf));
    board.text(b", \"nll_bits\": ");
    board.text(decimal_u64(ppl.nll().to_bits(), &mut buf));
    board.text(b"}\n");
    if let (Some(start), Some(end)) = (start, end) {
        defmt::println!(
            "figures: predictions={=usize} windows={=usize} instructions={=u64} stack_bytes={=usize}",
            ppl.tokens(),
            ppl.windows(),
            end - start,
            board.stack_peak().unwrap_or(0)
        );
    }
    0
}

/// `n` in decimal, in the tail of `buf`.
fn decimal_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    while at > 0 {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[at..]
}

/// Logs why a run could not generate.
fn report(e: &RunError) {
    match *e {
        RunError::NoImage => defmt::error!(
            "no model image embedded: build with MICROFORMER_CHECKPOINT=<llama2.c .bin> and \
             MICROFORMER_TOKENIZER=<tokenizer .bin> (or MICROFORMER_IMAGE=<image>)"
        ),
        RunError::ArenaTooSmall {
            context,
            needed,
            reserved,
            fits,
        } => defmt::error!(
            "the model needs {=usize} arena bytes for a context of {=usize} but the firmware \
             reserves {=usize}: the largest context that fits is {=usize} (rebuild with \
             MICROFORMER_CONTEXT={=usize}, or a smaller model)",
            needed,
            context,
            reserved,
            fits,
            fits
        ),
        RunError::VocabTooLarge { vocab, capacity } => defmt::error!(
            "the vocabulary has {=usize} tokens, the firmware's tokenizer index {=usize}",
            vocab,
            capacity
        ),
        RunError::NoTokenizer => {
            defmt::error!("the model image has no tokenizer (convert it with one)")
        }
        RunError::Image(e) => defmt::error!("model image rejected: {}", e),
        RunError::Tokenizer(e) => defmt::error!("tokenizer rejected: {}", e),
        RunError::Prompt(e) => defmt::error!("cannot encode the prompt: {}", e),
        RunError::Generate(e) => defmt::error!("generation stopped: {}", e),
        RunError::Window { window, context } => defmt::error!(
            "a window of {=usize} positions exceeds the image's context of {=usize}",
            window,
            context
        ),
        RunError::NoText => defmt::error!(
            "no token stream embedded: build with MICROFORMER_TEXT=<text file> to score it"
        ),
    }
}

/// Logs why `cmdline` was rejected.
pub fn log_cmdline_error(e: CmdlineError, cmdline: &[u8]) {
    match core::str::from_utf8(cmdline) {
        Ok(s) => defmt::error!("bad command line {=str:?}: {}", s, e),
        Err(_) => defmt::error!("bad command line: {}", e),
    }
}

/// Times the kernels ([`bench::kernels`], the command line's `bench=kernels`) with
/// `clock` (instructions) and logs a `kernel:` line for each. Returns the exit code.
pub fn kernels(clock: &dyn Fn() -> u64) -> i32 {
    let r = bench::kernels(clock, |t| {
        defmt::println!(
            "kernel: {=str} | per {=str} | {=u64}.{=u64:02} instructions",
            t.kernel,
            t.per,
            t.instructions_x100 / 100,
            t.instructions_x100 % 100
        );
    });
    match r {
        Ok(()) => 0,
        Err(e) => {
            defmt::error!("kernel timing failed: {}", e);
            1
        }
    }
}
