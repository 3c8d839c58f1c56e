//! Run settings, one type for every board: build-time defaults
//! ([`Settings::DEFAULT`] on the QEMU boards, [`Settings::REAL_BOARD`] on the real
//! ones; `MICROFORMER_*` variables, see `host::write_inputs`), overridden on the
//! QEMU boards by a command line.
//!
//! The QEMU boards read their command line through semihosting (QEMU's
//! `-append "…"`, see [`crate::qemu`]); the words are `key=value`, in any order,
//! after the program name QEMU puts first:
//!
//! ```text
//! ELF steps=128 temperature=0 topp=0.9 seed=42 prompt=I was flying over
//! ```
//!
//! | key | value | as llama2.c's |
//! |---|---|---|
//! | `steps` | positions to run; 0 or more than the context: the whole context | `-n` |
//! | `temperature` | 0 is greedy argmax | `-t` |
//! | `topp` | nucleus threshold in `[0, 1]`; 0 or 1: plain multinomial | `-p` |
//! | `seed` | `u64`, or a negative `i64` wrapped to `u64`; 0 stands for [`SEED_FOR_ZERO`] | `-s` |
//! | `prompt_ids` | the prompt as token ids, `1,2,3`, used as given (needs no tokenizer) | `microformer run --prompt-ids` |
//! | `prompt` | **the rest of the line**, spaces included (so it comes last) | `-i` |
//! | `bench` | `kernels`: time the kernels instead of generating ([`crate::bench`]) | — |
//! | `stop` | `bos` (llama2.c: BOS ends the text) or `none` (run every step: benchmarks) | — |
//! | `kv` | KV cache format: `f32`, `q8` (int8, one scale per row: about a quarter of the arena) or `q16` (int16, the integer step's precise cache) | `microformer run --kv` |
//! | `arith` | the forward step's arithmetic: `float` or `integer` (fixed point end to end, Q8 images, a `q8` or `q16` cache) | `microformer run --arith` |
//! | `perplexity` | `N` (at least 2): score the token stream embedded at build time in windows of `N` positions instead of generating ([`Mode::Perplexity`]) | `microformer perplexity --window N` |
//!
//! A word without `=` is the program name (QEMU's kernel path) only in first
//! place; anywhere else, as an unknown key or an unparsable value, it is a
//! [`CmdlineError`]. Numbers parse as Rust's `str::parse` (correctly rounded
//! floats: the same `f32` as the host tool's `--temperature 0.9`).

use microformer::model::{Arith, KvFormat};

/// Longest command line the QEMU firmware reads (QEMU's kernel path, the settings,
/// the prompt); its prompt buffers are sized for a prompt this long.
pub const CMDLINE_BYTES: usize = 1024;

pub use microformer::lm::SEED_FOR_ZERO;

/// What the firmware does with the embedded model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Mode {
    /// Generate and stream text (the default).
    Generate,
    /// Time the kernels (RoPE, ALiBi, softmax) and print instructions per call.
    Kernels,
    /// Score the token stream embedded at build time (`MICROFORMER_TEXT`, encoded with
    /// the image's tokenizer) in non-overlapping windows of `window` positions, BOS then
    /// `window − 1` tokens, as `microformer perplexity --window` does
    /// ([`microformer::perplexity`]), and print the figures.
    Perplexity {
        /// Positions per window (at least 2).
        window: u32,
    },
}

/// Run settings chosen at build time (`MICROFORMER_STEPS`, `MICROFORMER_SEED`,
/// `MICROFORMER_TEMPERATURE`, `MICROFORMER_TOPP`, `MICROFORMER_PROMPT`; see
/// `host::write_inputs`), then overridden by the command line
/// ([`Settings::with_cmdline`]).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Settings<'a> {
    /// Positions to run (llama2.c's `-n`); 0, or more than the context, means the
    /// whole context.
    pub steps: u32,
    /// Sampler seed (llama2.c's `-s`); 0 stands for [`SEED_FOR_ZERO`].
    pub seed: u64,
    /// Sampling temperature (llama2.c's `-t`); 0 is greedy argmax.
    pub temperature: f32,
    /// Top-p threshold (llama2.c's `-p`).
    pub topp: f32,
    /// Prompt text (llama2.c's `-i`), encoded with BOS first.
    pub prompt: &'a str,
    /// The prompt as comma-separated token ids (`microformer run --prompt-ids`), used
    /// as given: the first id starts the sequence. Empty: none. Checked by
    /// [`Settings::with_cmdline`]; read with [`prompt_ids`].
    pub prompt_ids: &'a str,
    /// Generate text, or time the kernels.
    pub mode: Mode,
    /// Whether BOS ends generation (llama2.c); `false` runs every step.
    pub stop_at_bos: bool,
    /// The session's KV cache format.
    pub kv: KvFormat,
    /// The forward step's arithmetic.
    pub arith: Arith,
}

impl Settings<'static> {
    /// The settings when no variable is set: `microformer run`'s defaults (256
    /// steps, temperature 1.0, top-p 0.9, seed 0), empty prompt.
    pub const DEFAULT: Settings<'static> = Settings {
        steps: 256,
        seed: 0,
        temperature: 1.0,
        topp: 0.9,
        prompt: "",
        prompt_ids: "",
        mode: Mode::Generate,
        stop_at_bos: true,
        kv: KvFormat::F32,
        arith: Arith::Float,
    };

    /// The real boards' settings when no variable is set: the whole context, seed 42,
    /// llama2.c's sampling defaults (temperature 1.0, top-p 0.9), empty prompt.
    pub const REAL_BOARD: Settings<'static> = Settings {
        steps: 0,
        seed: 42,
        ..Settings::DEFAULT
    };
}

/// Why a command line was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CmdlineError {
    /// Not UTF-8.
    NotUtf8,
    /// A word that is not `key=value` (past the program name).
    NotKeyValue {
        /// Byte offset of the word in the command line.
        at: usize,
    },
    /// An unknown key.
    UnknownKey {
        /// Byte offset of the word.
        at: usize,
    },
    /// A value that does not parse for its key.
    BadValue {
        /// The key.
        key: Key,
    },
}

/// The keys of a command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Key {
    /// `steps=`
    Steps,
    /// `temperature=`
    Temperature,
    /// `topp=`
    Topp,
    /// `seed=`
    Seed,
    /// `prompt=`
    Prompt,
    /// `prompt_ids=`
    PromptIds,
    /// `bench=`
    Bench,
    /// `stop=`
    Stop,
    /// `kv=`
    Kv,
    /// `arith=`
    Arith,
    /// `perplexity=`
    Perplexity,
}

impl Key {
    fn parse(s: &str) -> Option<Key> {
        Some(match s {
            "steps" => Key::Steps,
            "temperature" => Key::Temperature,
            "topp" => Key::Topp,
            "seed" => Key::Seed,
            "prompt" => Key::Prompt,
            "prompt_ids" => Key::PromptIds,
            "bench" => Key::Bench,
            "stop" => Key::Stop,
            "kv" => Key::Kv,
            "arith" => Key::Arith,
            "perplexity" => Key::Perplexity,
            _ => return None,
        })
    }
}

/// The ids of a `1,2,3` list, each `None` when it does not parse as a `u32`.
pub fn prompt_ids(list: &str) -> impl Iterator<Item = Option<u32>> + '_ {
    list.split(',').map(|t| t.trim().parse().ok())
}

/// A seed: a `u64`, or a negative `i64` wrapped to `u64` (llama2.c's `atoi` into an
/// `unsigned long long`).
fn parse_seed(v: &str) -> Option<u64> {
    v.parse::<u64>()
        .ok()
        .or_else(|| v.parse::<i64>().ok().map(|s| s as u64))
}

impl<'a> Settings<'a> {
    /// These settings with the words of `cmdline` applied over them (see the
    /// module documentation). An empty command line changes nothing.
    pub fn with_cmdline<'c>(&self, cmdline: &'c [u8]) -> Result<Settings<'c>, CmdlineError>
    where
        'a: 'c,
    {
        let text = core::str::from_utf8(cmdline).map_err(|_| CmdlineError::NotUtf8)?;
        let mut s: Settings<'c> = *self;
        let mut rest = text;
        let mut first = true;
        loop {
            let trimmed = rest.trim_start_matches(' ');
            let at = text.len() - trimmed.len();
            if trimmed.is_empty() {
                return Ok(s);
            }
            let (word, tail) = trimmed.split_once(' ').unwrap_or((trimmed, ""));
            let Some((k, v)) = word.split_once('=') else {
                if first {
                    // QEMU's kernel path.
                    first = false;
                    rest = tail;
                    continue;
                }
                return Err(CmdlineError::NotKeyValue { at });
            };
            first = false;
            let key = Key::parse(k).ok_or(CmdlineError::UnknownKey { at })?;
            let bad = CmdlineError::BadValue { key };
            match key {
                Key::Prompt => {
                    // The rest of the line, verbatim.
                    s.prompt = &trimmed[k.len() + 1..];
                    return Ok(s);
                }
                Key::Steps => s.steps = v.parse().map_err(|_| bad)?,
                Key::Temperature => s.temperature = v.parse().map_err(|_| bad)?,
                Key::Topp => s.topp = v.parse().map_err(|_| bad)?,
                Key::Seed => s.seed = parse_seed(v).ok_or(bad)?,
                Key::PromptIds => {
                    if v.is_empty() || prompt_ids(v).any(|t| t.is_none()) {
                        return Err(bad);
                    }
                    s.prompt_ids = v;
                }
                Key::Stop => {
                    s.stop_at_bos = match v {
                        "bos" => true,
                        "none" => false,
                        _ => return Err(bad),
                    }
                }
                Key::Kv => {
                    s.kv = match v {
                        "f32" => KvFormat::F32,
                        "q8" => KvFormat::Q8,
                        "q16" => KvFormat::Q16,
                        _ => return Err(bad),
                    }
                }
                Key::Arith => {
                    s.arith = match v {
                        "float" => Arith::Float,
                        "integer" => Arith::Integer,
                        _ => return Err(bad),
                    }
                }
                Key::Perplexity => {
                    let window: u32 = v.parse().map_err(|_| bad)?;
                    if window < 2 {
                        return Err(bad);
                    }
                    s.mode = Mode::Perplexity { window };
                }
                Key::Bench => {
                    s.mode = match v {
                        "kernels" => Mode::Kernels,
                        "none" => Mode::Generate,
                        _ => return Err(bad),
                    }
                }
            }
            rest = tail;
        }
    }

    /// The xorshift state for [`Settings::seed`] (0 becomes [`SEED_FOR_ZERO`]).
    pub const fn rng_state(&self) -> u64 {
        if self.seed == 0 {
            SEED_FOR_ZERO
        } else {
            self.seed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Settings<'static> = Settings::DEFAULT;

    #[test]
    fn words_override_the_defaults() {
        let s = D
            .with_cmdline(b"/path/to/qemu-m4f steps=100 temperature=0 seed=-1 topp=0.5")
            .unwrap();
        assert_eq!(s.steps, 100);
        assert_eq!(s.temperature, 0.0);
        assert_eq!(s.topp, 0.5);
        assert_eq!(s.seed, u64::MAX);
        assert_eq!(s.prompt, "");
        assert_eq!(D.with_cmdline(b"").unwrap(), D);
        assert_eq!(D.with_cmdline(b"  elf  ").unwrap(), D);
        assert_eq!(
            D.with_cmdline(b"seed=0").unwrap().rng_state(),
            SEED_FOR_ZERO
        );
        assert_eq!(D.with_cmdline(b"seed=42").unwrap().rng_state(), 42);
        // the same f32 as the host tool's parse
        let t = D.with_cmdline(b"temperature=0.9").unwrap().temperature;
        assert_eq!(t.to_bits(), "0.9".parse::<f32>().unwrap().to_bits());
        assert_eq!(
            D.with_cmdline(b"bench=kernels").unwrap().mode,
            Mode::Kernels
        );
        assert!(!D.with_cmdline(b"stop=none").unwrap().stop_at_bos);
        assert!(D.with_cmdline(b"stop=bos").unwrap().stop_at_bos);
        assert_eq!(D.with_cmdline(b"kv=q8").unwrap().kv, KvFormat::Q8);
        assert_eq!(D.with_cmdline(b"kv=f32").unwrap().kv, KvFormat::F32);
        assert_eq!(
            D.with_cmdline(b"perplexity=512").unwrap().mode,
            Mode::Perplexity { window: 512 }
        );
        for bad in [&b"perplexity=1"[..], b"perplexity=", b"perplexity=-3"] {
            assert_eq!(
                D.with_cmdline(bad).unwrap_err(),
                CmdlineError::BadValue {
                    key: Key::Perplexity
                }
            );
        }
        assert_eq!(
            D.with_cmdline(b"kv=q4").unwrap_err(),
            CmdlineError::BadValue { key: Key::Kv }
        );
    }

    #[test]
    fn the_prompt_is_the_rest_of_the_line() {
        let s = D
            .with_cmdline(b"elf steps=7 prompt=I was  flying over steps=3")
            .unwrap();
        assert_eq!(s.prompt, "I was  flying over steps=3");
        assert_eq!(s.steps, 7);
        let s = D.with_cmdline(b"elf prompt=").unwrap();
        assert_eq!(s.prompt, "");
    }

    #[test]
    fn prompt_ids_are_a_checked_list() {
        let s = D.with_cmdline(b"elf steps=9 prompt_ids=86,33,4").unwrap();
        assert_eq!((s.steps, s.prompt_ids), (9, "86,33,4"));
        let ids: Option<Vec<u32>> = prompt_ids(s.prompt_ids).collect();
        assert_eq!(ids, Some(vec![86, 33, 4]));
        for bad in [
            &b"elf prompt_ids="[..],
            b"elf prompt_ids=1,,2",
            b"elf prompt_ids=1,x",
        ] {
            assert_eq!(
                D.with_cmdline(bad),
                Err(CmdlineError::BadValue {
                    key: Key::PromptIds
                })
            );
        }
    }

    #[test]
    fn bad_words_are_typed_errors() {
        assert_eq!(
            D.with_cmdline(b"elf steps=x"),
            Err(CmdlineError::BadValue { key: Key::Steps })
        );
        assert_eq!(
            D.with_cmdline(b"elf speed=1"),
            Err(CmdlineError::UnknownKey { at: 4 })
        );
        assert_eq!(
            D.with_cmdline(b"elf steps=1 stray"),
            Err(CmdlineError::NotKeyValue { at: 12 })
        );
        assert_eq!(
            D.with_cmdline(b"elf bench=all"),
            Err(CmdlineError::BadValue { key: Key::Bench })
        );
        assert_eq!(D.with_cmdline(&[0xff]), Err(CmdlineError::NotUtf8));
    }
}
