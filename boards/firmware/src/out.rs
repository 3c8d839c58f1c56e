//! The stream of results a case writes, recorded on the host or compared on
//! the target, and how a run is judged.

use core::fmt::Write as _;

use microformer::Error;

/// The one NaN written for any NaN: payloads differ between ISAs (x86's
/// default NaN is `0xffc0_0000`, Arm's `0x7fc0_0000`) and carry no result.
const CANONICAL_NAN_F32: u32 = 0x7fc0_0000;
/// See [`CANONICAL_NAN_F32`].
const CANONICAL_NAN_F64: u64 = 0x7ff8_0000_0000_0000;

/// How many differing words a comparison logs (all are counted).
#[cfg(feature = "defmt")]
const LOGGED_MISMATCHES: u32 = 8;

/// Why a case failed.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Failure {
    /// A value differs from the host's: element `index` of the values written
    /// under `label`, word `word` of the stream (`differing` words differ in all).
    Mismatch {
        /// What the value is (the label the case wrote it under).
        label: &'static str,
        /// Its index among the values written with that call.
        index: u32,
        /// Its position in the stream.
        word: u32,
        /// The word the target computed.
        target: u32,
        /// The word the host computed.
        host: u32,
        /// How many words of the stream differ.
        differing: u32,
    },
    /// The target wrote a different number of words than the host.
    Length {
        /// Words the target wrote.
        target: u32,
        /// Words the host wrote.
        host: u32,
    },
    /// The recording buffer (host side) is too small for the stream.
    Overflow {
        /// Words the case wrote.
        words: u32,
        /// Words the buffer holds.
        capacity: u32,
    },
    /// A value lies outside its documented error bound (checked on the spot
    /// against an f64 model).
    Bound {
        /// What was checked.
        label: &'static str,
        /// Where (position, pair, element: see the case).
        index: u32,
        /// `|value − reference|`.
        error: f64,
        /// The bound.
        bound: f64,
    },
    /// Two results that must be bit-identical differ (bit patterns given).
    NotIdentical {
        /// What was compared.
        label: &'static str,
        /// Where.
        index: u32,
        /// The first result's bits.
        left: u32,
        /// The second result's bits.
        right: u32,
    },
    /// A property that must hold does not.
    Property {
        /// What was checked.
        label: &'static str,
        /// Where.
        index: u32,
    },
    /// A library call failed where it must succeed.
    Library {
        /// The call.
        label: &'static str,
        /// Its error.
        error: Error,
    },
    /// A library call did not return the typed error it must return.
    WrongError {
        /// The call.
        label: &'static str,
        /// The error it must return.
        expected: Error,
        /// What it returned (`None`: success).
        got: Option<Error>,
    },
}

/// A case that passed: it agreed with the host on this many words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Passed {
    /// Words compared (every one bit-identical to the host's).
    pub words: u32,
}

enum Mode<'a> {
    Record(&'a mut [u32]),
    Compare(&'a [u32]),
}

/// The stream of 32-bit words a case writes its results to.
///
/// Floats are written as bit patterns (NaN canonicalised), integers as their
/// two's-complement bits (`usize` and `u64` as two words, low first, so host
/// and target agree whatever their pointer width), errors as [`error_code`].
pub struct Out<'a> {
    mode: Mode<'a>,
    len: usize,
    differing: u32,
    first: Option<Failure>,
}

impl<'a> Out<'a> {
    /// Records the stream into `buf` (the host side).
    pub fn record(buf: &'a mut [u32]) -> Self {
        Self::new(Mode::Record(buf))
    }

    /// Compares the stream with `expected`, the host's (the target side).
    pub fn compare(expected: &'a [u32]) -> Self {
        Self::new(Mode::Compare(expected))
    }

    fn new(mode: Mode<'a>) -> Self {
        Self {
            mode,
            len: 0,
            differing: 0,
            first: None,
        }
    }

    /// Words written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The words recorded so far (empty when comparing).
    pub fn recorded(&self) -> &[u32] {
        match &self.mode {
            Mode::Record(buf) => buf.get(..self.len).unwrap_or(buf),
            Mode::Compare(_) => &[],
        }
    }

    fn word(&mut self, label: &'static str, index: usize, w: u32) {
        let at = self.len;
        self.len += 1;
        match &mut self.mode {
            Mode::Record(buf) => {
                if let Some(slot) = buf.get_mut(at) {
                    *slot = w;
                }
            }
            Mode::Compare(expected) => {
                // A missing word is reported as a length mismatch at the end.
                let Some(&host) = expected.get(at) else {
                    return;
                };
                if host != w {
                    self.differing += 1;
                    #[cfg(feature = "defmt")]
                    if self.differing <= LOGGED_MISMATCHES {
                        defmt::warn!(
                            "{}[{}] (word {}): target {=u32:#010x}, host {=u32:#010x}",
                            label,
                            index,
                            at,
                            w,
                            host
                        );
                    }
                    if self.first.is_none() {
                        self.first = Some(Failure::Mismatch {
                            label,
                            index: index as u32,
                            word: at as u32,
                            target: w,
                            host,
                            differing: 0,
                        });
                    }
                }
            }
        }
    }

    /// Writes one `u32`.
    pub fn u32(&mut self, label: &'static str, v: u32) {
        self.word(label, 0, v);
    }

    /// Writes `u32`s.
    pub fn u32s(&mut self, label: &'static str, vs: &[u32]) {
        for (i, &v) in vs.iter().enumerate() {
            self.word(label, i, v);
        }
    }

    /// Writes `i32`s.
    pub fn i32s(&mut self, label: &'static str, vs: &[i32]) {
        for (i, &v) in vs.iter().enumerate() {
            self.word(label, i, v as u32);
        }
    }

    /// Writes `i16`s (Q15), one per word, sign-extended.
    pub fn i16s(&mut self, label: &'static str, vs: &[i16]) {
        for (i, &v) in vs.iter().enumerate() {
            self.word(label, i, v as i32 as u32);
        }
    }

    /// Writes bytes, four per word (little-endian, the last word zero-padded);
    /// the index reported for a mismatch is that of the word's first byte.
    pub fn u8s(&mut self, label: &'static str, vs: &[u8]) {
        for (i, c) in vs.chunks(4).enumerate() {
            let mut w = [0u8; 4];
            for (d, s) in w.iter_mut().zip(c) {
                *d = *s;
            }
            self.word(label, 4 * i, u32::from_le_bytes(w));
        }
    }

    /// Writes one `u64` (two words).
    pub fn u64(&mut self, label: &'static str, v: u64) {
        self.u64_at(label, 0, v);
    }

    fn u64_at(&mut self, label: &'static str, index: usize, v: u64) {
        self.word(label, index, v as u32);
        self.word(label, index, (v >> 32) as u32);
    }

    /// Writes `u64`s (two words each).
    pub fn u64s(&mut self, label: &'static str, vs: &[u64]) {
        for (i, &v) in vs.iter().enumerate() {
            self.u64_at(label, i, v);
        }
    }

    /// Writes one `usize` as a `u64`.
    pub fn usize(&mut self, label: &'static str, v: usize) {
        self.u64(label, v as u64);
    }

    /// Writes one `f32`'s bits.
    pub fn f32(&mut self, label: &'static str, x: f32) {
        self.f32s(label, &[x]);
    }

    /// Writes `f32` bit patterns.
    pub fn f32s(&mut self, label: &'static str, xs: &[f32]) {
        for (i, &x) in xs.iter().enumerate() {
            let bits = if x.is_nan() {
                CANONICAL_NAN_F32
            } else {
                x.to_bits()
            };
            self.word(label, i, bits);
        }
    }

    /// Writes one `f64`'s bits (two words).
    pub fn f64(&mut self, label: &'static str, x: f64) {
        self.f64s(label, &[x]);
    }

    /// Writes `f64` bit patterns (two words each).
    pub fn f64s(&mut self, label: &'static str, xs: &[f64]) {
        for (i, &x) in xs.iter().enumerate() {
            let bits = if x.is_nan() {
                CANONICAL_NAN_F64
            } else {
                x.to_bits()
            };
            self.u64_at(label, i, bits);
        }
    }

    /// Writes a library result: 0 for `Ok`, else the error's [`error_code`].
    pub fn result<T>(&mut self, label: &'static str, r: &Result<T, Error>) {
        self.word(label, 0, result_code(r));
    }

    /// Ends the stream: the first mismatch (with the count of differing words),
    /// else a length or overflow failure, else [`Passed`].
    pub fn finish(self) -> Result<Passed, Failure> {
        if let Some(Failure::Mismatch {
            label,
            index,
            word,
            target,
            host,
            ..
        }) = self.first
        {
            return Err(Failure::Mismatch {
                label,
                index,
                word,
                target,
                host,
                differing: self.differing,
            });
        }
        let words = self.len as u32;
        match self.mode {
            Mode::Record(buf) if buf.len() < self.len => Err(Failure::Overflow {
                words,
                capacity: buf.len() as u32,
            }),
            Mode::Compare(expected) if expected.len() != self.len => Err(Failure::Length {
                target: words,
                host: expected.len() as u32,
            }),
            _ => Ok(Passed { words }),
        }
    }

    /// Whether a value already differed from the host's.
    fn diverged(&self) -> bool {
        self.first.is_some()
    }
}

/// FNV-1a over the text written to it.
struct Fnv1a(u32);

impl core::fmt::Write for Fnv1a {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            self.0 = (self.0 ^ b as u32).wrapping_mul(0x0100_0193);
        }
        Ok(())
    }
}

/// A word for an error: FNV-1a of its `Debug` text (variant and fields, the
/// same text on every target as long as the field values agree), never 0.
pub fn error_code(e: &Error) -> u32 {
    let mut h = Fnv1a(0x811c_9dc5);
    // Writing to an `Fnv1a` cannot fail.
    let _ = write!(h, "{e:?}");
    h.0 | 1
}

/// 0 for `Ok`, the [`error_code`] otherwise.
pub fn result_code<T>(r: &Result<T, Error>) -> u32 {
    match r {
        Ok(_) => 0,
        Err(e) => error_code(e),
    }
}

/// Runs `case` on this machine and compares its stream with `expected` (the
/// host's), word for word.
///
/// The case's own checks run too. Reported, in this order: the first value
/// that differs from the host's (a case's own check failing after the
/// streams diverged is a consequence), the case's own failure, a length
/// difference.
pub fn check(case: &Case, expected: &[u32]) -> Result<Passed, Failure> {
    let mut out = Out::compare(expected);
    let own = (case.run)(&mut out);
    match own {
        Err(f) if !out.diverged() => Err(f),
        _ => out.finish(),
    }
}

/// One on-target check.
pub struct Case {
    /// Its name, as the static that holds it (and the expected values' static).
    pub name: &'static str,
    /// Runs it: writes the results to the stream, checks what must hold.
    pub run: fn(&mut Out<'_>) -> Result<(), Failure>,
}
