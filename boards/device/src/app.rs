//! The firmware's main program, shared by the real boards: [`crate::run`] with defmt logs
//! (over RTT on these boards) and the text copied to the board's serial port.
//!
//! What a run prints, in order: the board and the settings; the model (size, shape, Q8 or
//! f32, the image's context); the arena check (bytes needed for the context against the
//! bytes reserved, or a clear error naming the largest context that fits); the generated
//! text, one defmt line per text line (RTT frames are whole log calls, so the text is
//! gathered into lines; the serial port gets every piece as it comes); then the positions
//! run, the time, and tokens per second.

use crate::{run, Events, Memory, Plan, RunError, Settings};

/// What the program needs from its board.
pub trait Board {
    /// Microseconds since a fixed point (monotonic), for the speed figures.
    fn micros(&mut self) -> u64;
    /// Writes generated text to the board's serial port; boards without one keep the
    /// default, which drops it.
    fn serial(&mut self, bytes: &[u8]) {
        let _ = bytes;
    }
}

/// Longest defmt text line; a longer line is cut into pieces of this size.
const LINE: usize = 96;

/// Gathers the text into lines for defmt and times the generation.
struct Printer<'b, B: Board> {
    board: &'b mut B,
    line: [u8; LINE],
    len: usize,
    start: u64,
}

impl<B: Board> Printer<'_, B> {
    fn flush(&mut self) {
        let text = self.line.get(..self.len).unwrap_or(&[]);
        match core::str::from_utf8(text) {
            Ok(s) => defmt::println!("{=str}", s),
            Err(_) => defmt::println!("{=[u8]:a}", text),
        }
        self.len = 0;
    }

    fn push(&mut self, bytes: &[u8]) {
        if bytes.len() > LINE - self.len && self.len > 0 {
            self.flush();
        }
        for chunk in bytes.chunks(LINE) {
            if let Some(dst) = self.line.get_mut(self.len..self.len + chunk.len()) {
                dst.copy_from_slice(chunk);
                self.len += chunk.len();
            }
            if self.len == LINE {
                self.flush();
            }
        }
    }
}

impl<B: Board> Events for Printer<'_, B> {
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
        self.start = self.board.micros();
    }

    fn piece(&mut self, bytes: &[u8]) {
        self.board.serial(bytes);
        let mut rest = bytes;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = rest.split_at(i);
            self.push(line);
            self.flush();
            rest = tail.get(1..).unwrap_or(&[]);
        }
        self.push(rest);
    }
}

/// Runs the model in `image` on `board` and returns the exit code (0: the text was
/// generated; 1: an error, logged).
pub fn main<const ARENA: usize, const VOCAB: usize, const PROMPT: usize>(
    name: &str,
    image: &[u8],
    context: usize,
    settings: &Settings,
    memory: &mut Memory<ARENA, VOCAB, PROMPT>,
    board: &mut impl Board,
) -> i32 {
    defmt::println!("microformer on {=str}", name);
    defmt::println!(
        "settings: context {=usize}, {}, RAM block {=usize} bytes",
        context,
        settings,
        Memory::<ARENA, VOCAB, PROMPT>::BYTES
    );
    let mut printer = Printer {
        board,
        line: [0; LINE],
        len: 0,
        start: 0,
    };
    let result = run(image, context, settings, memory, &mut printer);
    if printer.len > 0 {
        printer.flush();
    }
    let end = printer.board.micros();
    printer.board.serial(b"\r\n");
    match result {
        Ok(g) => {
            let us = end.saturating_sub(printer.start);
            let stop = if g.stopped { " (stopped on BOS)" } else { "" };
            defmt::println!("---");
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
            0
        }
        Err(e) => {
            report(&e);
            1
        }
    }
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
    }
}
