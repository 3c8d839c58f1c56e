//! llama2.c's `generate` loop as a reusable, heap-free piece: prompt forcing,
//! sampling, the BOS stop rule and the step budget, for the host tool and for
//! firmware alike.
//!
//! The loop is `run.c`'s (karpathy/llama2.c, `generate`), statement for statement:
//!
//! ```text
//! token = prompt[0]
//! for pos in 0..steps:
//!     logits = session.step(token)                 // position pos (*)
//!     next = prompt[pos + 1]   if pos < n_prompt - 1
//!            sampler.sample(logits)   otherwise
//!     if next == stop: break                       // run.c: BOS (1) delimits sequences
//!     emit(token, next)                            // run.c: decode(token, next), print
//!     token = next
//! ```
//!
//! (*) An integer session ([`crate::model::Arith::Integer`]) runs
//! [`Session::step_fixed`] for a forced token or a greedy sampler: the argmax
//! of its Q16 logits ([`crate::sampler::sample_argmax_fixed`]) needs no float,
//! so an FPU-less core generates greedily without soft float.
//!
//! `steps` counts positions (forward passes), as run.c's `-n`: `0`, or more than
//! the session's context, means the whole context (run.c clips to `seq_len`).
//! Each pass emits at most one token, so at most `steps` tokens are emitted —
//! prompt tokens included (they are emitted as they are forced, as run.c prints
//! them). A prompt longer than `steps` is therefore cut, as in run.c.
//!
//! The prompt comes from the caller (usually [`crate::tokenizer::Tokenizer::encode`]
//! with BOS first); the sampler's scratch (`vocab_size` [`ProbIndex`] entries when
//! [`Sampler::uses_topp`], otherwise none) comes from the caller too, so the loop
//! allocates nothing. The emit callback returns the caller's error type, which
//! must convert from [`Error`]; its first error stops the loop.
//!
//! Errors, all checked before the first forward pass so that nothing is emitted:
//! an empty prompt ([`Error::EmptyPrompt`]), a prompt longer than the session's
//! context ([`Error::PromptTooLong`]), a prompt token outside the vocabulary
//! ([`Error::TokenOutOfRange`]); then whatever [`Session::step`] and
//! [`Sampler::sample`] report.

use crate::model::{Arith, Session};
use crate::sampler::{sample_argmax_fixed, ProbIndex, Sampler};
use crate::Error;

/// What a [`generate`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Generated {
    /// Forward passes run (positions used).
    pub positions: usize,
    /// Tokens passed to the emit callback (prompt tokens after the first included).
    pub emitted: usize,
    /// Whether the loop ended on the stop token (rather than the step budget).
    pub stopped: bool,
}

/// The step budget `generate` uses for `steps` in a context of `context`
/// positions: `steps`, or the whole context when `steps` is 0 or larger (run.c).
pub const fn clip_steps(steps: usize, context: usize) -> usize {
    if steps == 0 || steps > context {
        context
    } else {
        steps
    }
}

/// llama2.c's generation loop as a state machine: [`Loop::next`] runs forward
/// passes until the loop emits its next token (see the module documentation).
///
/// [`generate`] drives it with a callback; [`crate::lm::Generator`] as an
/// iterator with a tokenizer.
#[derive(Debug, Clone)]
pub struct Loop<'p> {
    /// The prompt tokens after the first, forced one by one.
    forced: &'p [u32],
    steps: usize,
    stop: Option<u32>,
    token: u32,
    done: Generated,
    ended: bool,
}

impl<'p> Loop<'p> {
    /// Checks the prompt against `session` and `sampler` and resets the session
    /// to position 0, for `steps` positions (see [`clip_steps`]) stopping before
    /// `stop` (llama2.c: BOS, the image header's `bos_id`; `None` never stops early).
    ///
    /// Errors, before anything runs: [`Error::EmptyPrompt`],
    /// [`Error::PromptTooLong`], [`Error::TokenOutOfRange`] for a prompt token, and
    /// [`Sampler::validate`]'s.
    pub fn start(
        session: &mut Session<'_>,
        sampler: &Sampler,
        prompt: &'p [u32],
        steps: usize,
        stop: Option<u32>,
    ) -> Result<Self, Error> {
        let context = session.context();
        let vocab_size = session.model().vocab_size();
        let (&first, forced) = prompt.split_first().ok_or(Error::EmptyPrompt)?;
        if prompt.len() > context {
            return Err(Error::PromptTooLong {
                tokens: prompt.len(),
                context,
            });
        }
        if let Some(&token) = prompt.iter().find(|&&t| t as usize >= vocab_size) {
            return Err(Error::TokenOutOfRange { token, vocab_size });
        }
        sampler.validate()?;
        session.reset();
        Ok(Loop {
            forced,
            steps: clip_steps(steps, context),
            stop,
            token: first,
            done: Generated {
                positions: 0,
                emitted: 0,
                stopped: false,
            },
            ended: false,
        })
    }

    /// Runs the next forward pass and returns the token it emits with the one
    /// before it (the pair llama2.c's `decode` takes); `None` once the step
    /// budget is spent or the stop token came. An error ends the loop.
    pub fn next(
        &mut self,
        session: &mut Session<'_>,
        sampler: &mut Sampler,
        scratch: &mut [ProbIndex],
    ) -> Result<Option<(u32, u32)>, Error> {
        if self.ended || self.done.positions >= self.steps {
            return Ok(None);
        }
        let step = self.step(session, sampler, scratch);
        if !matches!(step, Ok(Some(_))) {
            self.ended = true;
        }
        step
    }

    fn step(
        &mut self,
        session: &mut Session<'_>,
        sampler: &mut Sampler,
        scratch: &mut [ProbIndex],
    ) -> Result<Option<(u32, u32)>, Error> {
        let pos = self.done.positions;
        let forced = self.forced.get(pos).copied();
        // An integer session needs no f32 logits for a forced or greedy
        // token: its Q16 logits give the same argmax without a float.
        let fixed =
            if session.arith() == Arith::Integer && (forced.is_some() || sampler.is_greedy()) {
                Some(session.step_fixed(self.token)?)
            } else {
                session.step(self.token)?;
                None
            };
        self.done.positions += 1;
        let next = match (forced, fixed) {
            (Some(t), _) => t,
            (None, Some(logits)) => sample_argmax_fixed(logits)?,
            (None, None) => sampler.sample(session.logits_mut(), scratch)?,
        };
        if Some(next) == self.stop {
            self.done.stopped = true;
            return Ok(None);
        }
        let prev = self.token;
        self.done.emitted += 1;
        self.token = next;
        Ok(Some((prev, next)))
    }

    /// What the loop has done so far.
    pub const fn generated(&self) -> Generated {
        self.done
    }

    /// Tokens in the prompt (the first one included).
    pub const fn prompt_len(&self) -> usize {
        self.forced.len() + 1
    }

    /// Ends the loop: [`Loop::next`] returns `None` from now on.
    pub fn end(&mut self) {
        self.ended = true;
    }
}

/// Runs llama2.c's generation loop (see the module documentation) from
/// position 0 of `session` (it is reset first).
///
/// `stop`: the token that ends the sequence when it comes next, unemitted —
/// llama2.c uses BOS (`Some(1)`; the image header's `bos_id`); `None` never stops
/// early. `emit(prev, next)` receives every emitted token with the one before it
/// (the pair llama2.c's `decode` takes).
pub fn generate<E: From<Error>>(
    session: &mut Session<'_>,
    sampler: &mut Sampler,
    scratch: &mut [ProbIndex],
    prompt: &[u32],
    steps: usize,
    stop: Option<u32>,
    mut emit: impl FnMut(u32, u32) -> Result<(), E>,
) -> Result<Generated, E> {
    let mut l = Loop::start(session, sampler, prompt, steps, stop)?;
    while let Some((prev, next)) = l.next(session, sampler, scratch)? {
        emit(prev, next)?;
    }
    Ok(l.generated())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{self, Header, Image, TensorSource};
    use crate::model::Model;
    use crate::sampler::sample_argmax;
    use microformer_testkit::AlignedBytes;

    const VOCAB: usize = 11;
    const CONTEXT: usize = 12;

    /// A tiny random Llama image (pseudo-random weights, exact tables unneeded).
    fn tiny_image() -> AlignedBytes {
        let h = Header {
            flags: image::FLAG_ROPE_INTERLEAVED,
            vocab_size: VOCAB as u32,
            seq_len: CONTEXT as u32,
            train_context: CONTEXT as u32,
            ..image::testing::tiny_llama()
        };
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut rnd = || crate::sampler::random_f32(&mut state) * 2.0 - 1.0;
        let data: Vec<Vec<f32>> = image::slots(&h)
            .map(|(k, _)| {
                let (r, c) = h.expected_shape(k);
                (0..r * c).map(|_| rnd()).collect()
            })
            .collect();
        let srcs: Vec<TensorSource<'_>> = data.iter().map(|v| TensorSource::F32(v)).collect();
        let len = image::image_len(&h, &srcs);
        let mut out = AlignedBytes::zeroed(len);
        assert_eq!(image::write(&h, &srcs, out.bytes_mut()), Ok(len));
        out
    }

    fn run(
        model: &Model<'_>,
        prompt: &[u32],
        steps: usize,
        stop: Option<u32>,
    ) -> Result<(Vec<(u32, u32)>, Generated), Error> {
        let mut arena = vec![0u8; model.arena_bytes(CONTEXT) + 3];
        let mut s = Session::new(model, &mut arena, CONTEXT)?;
        let mut sampler = Sampler::new(0.0, 0.9, 7)?;
        let mut out = Vec::new();
        let g = generate::<Error>(
            &mut s,
            &mut sampler,
            &mut [],
            prompt,
            steps,
            stop,
            |a, b| {
                out.push((a, b));
                Ok(())
            },
        )?;
        Ok((out, g))
    }

    /// The same loop written out with the session and argmax.
    fn reference(model: &Model<'_>, prompt: &[u32], steps: usize) -> Vec<u32> {
        let mut arena = vec![0u8; model.arena_bytes(CONTEXT) + 3];
        let mut s = Session::new(model, &mut arena, CONTEXT).unwrap();
        let mut token = prompt[0];
        let mut out = Vec::new();
        for pos in 0..steps {
            let logits = s.step(token).unwrap();
            let next = if pos + 1 < prompt.len() {
                prompt[pos + 1]
            } else {
                sample_argmax(logits).unwrap()
            };
            out.push(next);
            token = next;
        }
        out
    }

    #[test]
    fn forces_the_prompt_then_samples() {
        let buf = tiny_image();
        let model = Model::new(Image::parse(buf.bytes()).unwrap()).unwrap();
        let prompt = [3, 5, 7];
        let (pairs, g) = run(&model, &prompt, 9, None).unwrap();
        let want = reference(&model, &prompt, 9);
        let got: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        assert_eq!(got, want);
        assert_eq!(&got[..2], &[5, 7]);
        // prev is the token before next
        assert_eq!(pairs[0].0, 3);
        for w in pairs.windows(2) {
            assert_eq!(w[0].1, w[1].0);
        }
        assert_eq!(
            g,
            Generated {
                positions: 9,
                emitted: 9,
                stopped: false
            }
        );
        // steps 0 and steps > context mean the whole context
        for steps in [0, CONTEXT + 5] {
            let (pairs, g) = run(&model, &prompt, steps, None).unwrap();
            assert_eq!((g.positions, pairs.len()), (CONTEXT, CONTEXT));
        }
        // a prompt longer than steps is cut, as run.c
        let (pairs, _) = run(&model, &[3, 5, 7, 9, 4], 2, None).unwrap();
        assert_eq!(pairs, vec![(3, 5), (5, 7)]);
    }

    #[test]
    fn stop_token_ends_unemitted() {
        let buf = tiny_image();
        let model = Model::new(Image::parse(buf.bytes()).unwrap()).unwrap();
        // A forced BOS stops the loop like a sampled one.
        let (pairs, g) = run(&model, &[1, 5, 1, 7], 10, Some(1)).unwrap();
        assert_eq!(pairs, vec![(1, 5)]);
        assert_eq!(
            g,
            Generated {
                positions: 2,
                emitted: 1,
                stopped: true
            }
        );
        // Stopping on a sampled token: choose the greedy token at position 2 as stop.
        let want = reference(&model, &[3], 6);
        let stop = want[2];
        let first = want.iter().position(|&t| t == stop).unwrap();
        let (pairs, g) = run(&model, &[3], 6, Some(stop)).unwrap();
        assert_eq!(pairs.len(), first);
        assert!(g.stopped);
    }

    #[test]
    fn errors_are_typed_and_emit_nothing() {
        let buf = tiny_image();
        let model = Model::new(Image::parse(buf.bytes()).unwrap()).unwrap();
        assert_eq!(run(&model, &[], 4, None).unwrap_err(), Error::EmptyPrompt);
        let long = [3u32; CONTEXT + 1];
        assert_eq!(
            run(&model, &long, 4, None).unwrap_err(),
            Error::PromptTooLong {
                tokens: CONTEXT + 1,
                context: CONTEXT
            }
        );
        assert_eq!(
            run(&model, &[3, VOCAB as u32], 4, None).unwrap_err(),
            Error::TokenOutOfRange {
                token: VOCAB as u32,
                vocab_size: VOCAB
            }
        );
        // top-p without scratch: the sampler's error comes through
        let mut arena = vec![0u8; model.arena_bytes(CONTEXT) + 3];
        let mut s = Session::new(&model, &mut arena, CONTEXT).unwrap();
        let mut sampler = Sampler::new(1.0, 0.9, 7).unwrap();
        let e = generate::<Error>(&mut s, &mut sampler, &mut [], &[3], 4, None, |_, _| Ok(()));
        assert_eq!(
            e.unwrap_err(),
            Error::BufferTooSmall {
                needed: VOCAB,
                got: 0
            }
        );
        // the callback's error stops the loop
        let mut calls = 0;
        let e = generate::<Error>(
            &mut s,
            &mut sampler,
            &mut [],
            &[3, 4, 5],
            4,
            None,
            |_, _| {
                calls += 1;
                Err(Error::NotFinite)
            },
        );
        assert_eq!((e.unwrap_err(), calls), (Error::NotFinite, 1));
        // the session is reset: reusing it (now at position 1) gives the reference
        assert_eq!(s.position(), 1);
        let mut greedy = Sampler::new(0.0, 0.9, 7).unwrap();
        let mut got = Vec::new();
        generate::<Error>(&mut s, &mut greedy, &mut [], &[3], 5, None, |_, t| {
            got.push(t);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, reference(&model, &[3], 5));
    }
}
