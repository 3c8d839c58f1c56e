//! llama2.c's byte-pair tokenizer, zero-copy and heap-free.
//!
//! Reproduces `build_tokenizer`, `encode`, `decode` and `safe_printf` of llama2.c's
//! `run.c` (karpathy/llama2.c, master) token for token, without an allocator.
//!
//! # File format
//!
//! A llama2.c tokenizer file (`tokenizer.bin`, `tok512.bin`, ...) is, little-endian:
//!
//! ```text
//! i32 max_token_length
//! vocab_size times:  f32 score, i32 len, len bytes (the piece, no terminator)
//! ```
//!
//! The vocabulary size is not stored: it comes from the model (`Config::vocab_size`).
//! [`Tokenizer`] borrows the file bytes (in flash or RAM) and never copies a piece.
//! Construction walks the file once and rejects a truncated file
//! ([`Error::Truncated`]), a zero or negative piece length ([`Error::InvalidTokenLength`];
//! run.c's `fread(.., 0, 1, ..)` fails on a zero length too) and bytes after the last
//! expected entry ([`Error::VocabSizeMismatch`]).
//!
//! # Index memory
//!
//! Two caller-provided `u32` arrays of `vocab_size` entries, that is
//! [`INDEX_BYTES_PER_TOKEN`] = 8 bytes per vocabulary entry (4 KiB for a 512-token
//! vocabulary, 250 KiB for Llama 2's 32000):
//!
//! * `offsets[i]`: byte offset of entry `i`'s record (its score) in the file, for O(1)
//!   [`Tokenizer::piece`] / [`Tokenizer::score`] / [`Tokenizer::decode`];
//! * `sorted`: the token ids ordered by their piece bytes (then by id), run.c's
//!   `sorted_vocab`, for binary-search lookups during [`Tokenizer::encode`].
//!
//! [`Tokenizer::new`] fills both in RAM. [`Tokenizer::build_index`] fills them for a
//! converter that stores them in a model image, and [`Tokenizer::from_parts`] takes
//! them back (for example from flash) after checking them in one O(vocab) pass.
//!
//! # Exactness with respect to run.c
//!
//! * Pieces compare as byte strings, like `strcmp` on run.c's NUL-terminated copies
//!   (no llama2.c-exported vocabulary contains a NUL byte).
//! * run.c sorts with `qsort` (glibc: a stable merge sort) and searches with glibc's
//!   `bsearch`; the index here is ordered by (piece, id), which is that stable order,
//!   and [`Tokenizer::lookup`] probes the same midpoints as glibc's `bsearch`, so even a
//!   vocabulary with duplicate pieces resolves to the same id.
//! * `encode` reads its text as a C string: bytes from the first NUL on are ignored.
//! * The merge loop keeps run.c's rule (best score strictly above the previous best,
//!   starting at `-1e10f32`, so the leftmost of equal-scoring pairs wins). It caches the
//!   merge result of every adjacent pair in `scratch`, so each merge looks up two
//!   pairs instead of all of them; the result is the same, the work O(n) per merge.
//! * Byte tokens `<0xXX>` are parsed like `sscanf(piece, "<0x%02hhX>", ..)`: `<0x`,
//!   optional C whitespace, an optional sign and one or two hex digits (whatever follows
//!   is ignored, as `sscanf` returns 1 once the conversion is stored).
//!
//! Where run.c has undefined behaviour this module returns an error instead: a
//! vocabulary without the `" "` piece ([`Error::TokenNotInVocab`]), a byte-fallback or
//! BOS/EOS id outside the vocabulary ([`Error::TokenOutOfRange`]), output or scratch
//! space too small ([`Error::BufferTooSmall`]).

use core::cmp::Ordering;

use crate::Error;

/// The beginning-of-sequence token id (`<s>`), as in run.c.
pub const BOS: u32 = 1;
/// The end-of-sequence token id (`</s>`), as in run.c.
pub const EOS: u32 = 2;
/// Bytes of caller-provided index storage per vocabulary entry: one `u32` offset and
/// one `u32` sorted id.
pub const INDEX_BYTES_PER_TOKEN: usize = 8;

/// The first byte-fallback token: `<0x00>` is token 3 (after `<unk>`, `<s>`, `</s>`).
const BYTE_TOKEN_BASE: u32 = 3;
/// Marks "this adjacent pair does not merge" in the pair cache.
const NO_MERGE: u32 = u32::MAX;
/// run.c's starting best score, `float best_score = -1e10;`.
const START_SCORE: f32 = -1e10;

/// Every byte value, so that a byte token decodes to a one-byte slice (run.c's `byte_pieces`).
static BYTE_PIECES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i as u8;
        i += 1;
    }
    t
};

/// Upper bound on the tokens `encode` produces for `text_len` bytes (BOS, dummy prefix,
/// one token per byte, EOS): run.c allocates `strlen(text) + 3` ints. Buffers of this
/// many entries for both `out` and `scratch` are always enough.
pub const fn max_encoded_len(text_len: usize) -> usize {
    text_len.saturating_add(3)
}

/// A zero-copy view of a llama2.c tokenizer file with its lookup index.
#[derive(Clone, Copy, Debug)]
pub struct Tokenizer<'a> {
    data: &'a [u8],
    offsets: &'a [u32],
    sorted: &'a [u32],
    max_token_length: u32,
}

fn read_u32(data: &[u8], off: usize) -> Option<u32> {
    let end = off.checked_add(4)?;
    let bytes: [u8; 4] = data.get(off..end)?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

/// Reads the entry whose record starts at `off`: (score, piece).
fn entry_at(data: &[u8], off: usize) -> Option<(f32, &[u8])> {
    let score = f32::from_bits(read_u32(data, off)?);
    let len = read_u32(data, off.checked_add(4)?)? as usize;
    let start = off.checked_add(8)?;
    let piece = data.get(start..start.checked_add(len)?)?;
    Some((score, piece))
}

/// Walks the file once, checking every entry, and calls `f(id, record_offset, piece)`.
/// Returns `max_token_length`.
fn walk<'d>(
    data: &'d [u8],
    vocab_size: usize,
    mut f: impl FnMut(usize, u32, &'d [u8]) -> Result<(), Error>,
) -> Result<u32, Error> {
    if vocab_size == 0 {
        return Err(Error::ZeroDimension);
    }
    // Offsets and ids are stored as u32.
    if u32::try_from(data.len()).is_err() || u32::try_from(vocab_size).is_err() {
        return Err(Error::InvalidParameter);
    }
    let max_token_length = read_u32(data, 0).ok_or(Error::Truncated)?;
    let mut off: usize = 4;
    for id in 0..vocab_size {
        let header_end = off.checked_add(8).ok_or(Error::Truncated)?;
        let len_bits = off
            .checked_add(4)
            .and_then(|o| read_u32(data, o))
            .ok_or(Error::Truncated)?;
        let len = i32::from_le_bytes(len_bits.to_le_bytes());
        if len <= 0 {
            return Err(Error::InvalidTokenLength { token: id, len });
        }
        let end = header_end
            .checked_add(len as usize)
            .ok_or(Error::Truncated)?;
        let piece = data.get(header_end..end).ok_or(Error::Truncated)?;
        // off < data.len() <= u32::MAX, checked above.
        f(id, off as u32, piece)?;
        off = end;
    }
    if off != data.len() {
        return Err(Error::VocabSizeMismatch {
            expected: vocab_size,
            trailing_bytes: data.len() - off,
        });
    }
    Ok(max_token_length)
}

/// Orders `p` against the concatenation `a ++ b` (as `strcmp(p, a ++ b)` would).
fn cmp_concat(p: &[u8], a: &[u8], b: &[u8]) -> Ordering {
    let (p_head, p_tail) = p.split_at(p.len().min(a.len()));
    let (a_head, _) = a.split_at(p_head.len());
    match p_head.cmp(a_head) {
        Ordering::Equal => {}
        o => return o,
    }
    if p.len() < a.len() {
        // p is a proper prefix of a, hence of a ++ b (b is never empty for pieces,
        // and even if it were, a is longer than p).
        return Ordering::Less;
    }
    p_tail.cmp(b)
}

/// C `isprint` in the "C" locale.
const fn is_print(b: u8) -> bool {
    b >= 0x20 && b <= 0x7e
}

/// C `isspace` in the "C" locale.
const fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `sscanf(piece, "<0x%02hhX>", &byte) == 1`: returns the byte.
fn parse_byte_token(piece: &[u8]) -> Option<u8> {
    let mut rest = piece.strip_prefix(b"<0x")?;
    while let Some((&c, tail)) = rest.split_first() {
        if !is_space(c) {
            break;
        }
        rest = tail;
    }
    // Field width 2 counts the sign and the digits.
    let mut width = 2;
    let mut negative = false;
    if let Some((&c, tail)) = rest.split_first() {
        if c == b'+' || c == b'-' {
            negative = c == b'-';
            rest = tail;
            width -= 1;
        }
    }
    let mut value: u32 = 0;
    let mut digits = 0;
    for &c in rest.iter().take(width) {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => break,
        };
        value = value * 16 + u32::from(d);
        digits += 1;
    }
    if digits == 0 {
        return None;
    }
    let v = if negative {
        value.wrapping_neg()
    } else {
        value
    };
    Some(v as u8)
}

/// run.c's `safe_printf` as a filter: the bytes it would print for `piece`.
///
/// The piece is read as a C string (up to its first NUL). A single byte that is neither
/// printable nor whitespace (C locale `isprint`/`isspace`: control codes, bytes
/// `0x80..=0xFF` on their own) prints nothing; anything else prints whole.
pub fn safe_piece(piece: &[u8]) -> &[u8] {
    let end = piece.iter().position(|&b| b == 0).unwrap_or(piece.len());
    let (c_str, _) = piece.split_at(end);
    match c_str {
        [b] if !(is_print(*b) || is_space(*b)) => &[],
        _ => c_str,
    }
}

/// Writes `id` at `out[*n]` when it fits, and counts it either way.
fn put(out: &mut [u32], n: &mut usize, id: u32) {
    if let Some(slot) = out.get_mut(*n) {
        *slot = id;
    }
    *n += 1;
}

impl<'a> Tokenizer<'a> {
    /// Validates `data` for `vocab_size` entries, builds the index in `offsets` and
    /// `sorted` (each at least `vocab_size` long; only the first `vocab_size` entries are
    /// used) and returns the tokenizer.
    ///
    /// Errors: [`Error::ZeroDimension`] for a zero vocabulary, [`Error::BufferTooSmall`]
    /// for short index storage, [`Error::Truncated`], [`Error::InvalidTokenLength`] and
    /// [`Error::VocabSizeMismatch`] for a malformed file, [`Error::InvalidParameter`] if
    /// the file or vocabulary does not fit `u32` offsets and ids.
    pub fn new(
        data: &'a [u8],
        vocab_size: usize,
        offsets: &'a mut [u32],
        sorted: &'a mut [u32],
    ) -> Result<Self, Error> {
        let max_token_length = Self::build_index(data, vocab_size, offsets, sorted)?;
        let offsets: &'a [u32] = offsets;
        let sorted: &'a [u32] = sorted;
        Ok(Self {
            data,
            offsets: offsets.get(..vocab_size).ok_or(Error::InvalidParameter)?,
            sorted: sorted.get(..vocab_size).ok_or(Error::InvalidParameter)?,
            max_token_length,
        })
    }

    /// Validates `data` and fills the first `vocab_size` entries of `offsets` (record
    /// offsets) and `sorted` (ids ordered by piece bytes, then id). Returns the file's
    /// `max_token_length`. These arrays are what [`Tokenizer::from_parts`] takes back.
    ///
    /// Errors as [`Tokenizer::new`].
    pub fn build_index(
        data: &[u8],
        vocab_size: usize,
        offsets: &mut [u32],
        sorted: &mut [u32],
    ) -> Result<u32, Error> {
        if vocab_size == 0 {
            return Err(Error::ZeroDimension);
        }
        let got = offsets.len();
        let offsets = offsets.get_mut(..vocab_size).ok_or(Error::BufferTooSmall {
            needed: vocab_size,
            got,
        })?;
        let got = sorted.len();
        let sorted = sorted.get_mut(..vocab_size).ok_or(Error::BufferTooSmall {
            needed: vocab_size,
            got,
        })?;
        let max_token_length = walk(data, vocab_size, |id, off, _| {
            if let Some(slot) = offsets.get_mut(id) {
                *slot = off;
            }
            Ok(())
        })?;
        let offsets: &[u32] = offsets;
        let piece = |id: u32| -> &[u8] {
            offsets
                .get(id as usize)
                .and_then(|&off| entry_at(data, off as usize))
                .map_or(&[][..], |(_, p)| p)
        };
        for (i, slot) in sorted.iter_mut().enumerate() {
            // i < vocab_size <= u32::MAX, checked by walk.
            *slot = i as u32;
        }
        sorted.sort_unstable_by(|&a, &b| piece(a).cmp(piece(b)).then(a.cmp(&b)));
        Ok(max_token_length)
    }

    /// Takes a prebuilt index (from [`Tokenizer::build_index`], e.g. stored in flash)
    /// for `data`. `offsets` and `sorted` must hold exactly `vocab_size` entries.
    ///
    /// Checks, in one O(vocab) pass and without storage, that `data` is well formed,
    /// that every offset is the one the file walk finds, and that `sorted` is strictly
    /// increasing in (piece, id) order with every id below `vocab_size` (hence a
    /// permutation): [`Error::LengthMismatch`] for wrong lengths,
    /// [`Error::CorruptIndex`] for a wrong entry, and the file errors of
    /// [`Tokenizer::new`].
    pub fn from_parts(
        data: &'a [u8],
        vocab_size: usize,
        offsets: &'a [u32],
        sorted: &'a [u32],
    ) -> Result<Self, Error> {
        for len in [offsets.len(), sorted.len()] {
            if len != vocab_size {
                return Err(Error::LengthMismatch {
                    expected: vocab_size,
                    got: len,
                });
            }
        }
        let max_token_length = walk(data, vocab_size, |id, off, _| {
            if offsets.get(id) == Some(&off) {
                Ok(())
            } else {
                Err(Error::CorruptIndex { entry: id })
            }
        })?;
        let tok = Self {
            data,
            offsets,
            sorted,
            max_token_length,
        };
        let mut prev: Option<(u32, &[u8])> = None;
        for (k, &id) in sorted.iter().enumerate() {
            let piece = tok
                .piece(id)
                .map_err(|_| Error::CorruptIndex { entry: k })?;
            if let Some((prev_id, prev_piece)) = prev {
                if prev_piece.cmp(piece).then(prev_id.cmp(&id)) != Ordering::Less {
                    return Err(Error::CorruptIndex { entry: k });
                }
            }
            prev = Some((id, piece));
        }
        Ok(tok)
    }

    /// The vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.offsets.len()
    }

    /// The file's `max_token_length` header (informational: nothing here depends on it).
    pub fn max_token_length(&self) -> u32 {
        self.max_token_length
    }

    /// The record offsets of the index (to store in a model image).
    pub fn offsets(&self) -> &'a [u32] {
        self.offsets
    }

    /// The sorted ids of the index (to store in a model image).
    pub fn sorted_ids(&self) -> &'a [u32] {
        self.sorted
    }

    fn entry(&self, token: u32) -> Result<(f32, &'a [u8]), Error> {
        let data: &'a [u8] = self.data;
        self.offsets
            .get(token as usize)
            .and_then(|&off| entry_at(data, off as usize))
            .ok_or(Error::TokenOutOfRange {
                token,
                vocab_size: self.vocab_size(),
            })
    }

    /// The piece (raw bytes) of `token`.
    pub fn piece(&self, token: u32) -> Result<&'a [u8], Error> {
        self.entry(token).map(|(_, p)| p)
    }

    /// The merge score of `token`.
    pub fn score(&self, token: u32) -> Result<f32, Error> {
        self.entry(token).map(|(s, _)| s)
    }

    fn check_id(&self, token: u32) -> Result<u32, Error> {
        if (token as usize) < self.vocab_size() {
            Ok(token)
        } else {
            Err(Error::TokenOutOfRange {
                token,
                vocab_size: self.vocab_size(),
            })
        }
    }

    /// glibc `bsearch` over the sorted index; `key_vs` orders the key against a piece.
    fn search(&self, key_vs: impl Fn(&[u8]) -> Ordering) -> Option<u32> {
        let (mut l, mut u) = (0usize, self.sorted.len());
        while l < u {
            let idx = l + (u - l) / 2;
            let id = *self.sorted.get(idx)?;
            let piece = self.piece(id).ok()?;
            match key_vs(piece) {
                Ordering::Less => u = idx,
                Ordering::Greater => l = idx + 1,
                Ordering::Equal => return Some(id),
            }
        }
        None
    }

    /// The id whose piece is exactly `piece` (run.c's `str_lookup`), if any.
    pub fn lookup(&self, piece: &[u8]) -> Option<u32> {
        self.search(|p| piece.cmp(p))
    }

    /// The id whose piece is `piece(a) ++ piece(b)`, or [`NO_MERGE`].
    fn merge_of(&self, a: u32, b: u32) -> Result<u32, Error> {
        let pa = self.piece(a)?;
        let pb = self.piece(b)?;
        Ok(self
            .search(|p| cmp_concat(p, pa, pb).reverse())
            .unwrap_or(NO_MERGE))
    }

    /// Encodes `text` exactly as run.c's `encode(t, text, bos, eos, tokens, &n)`.
    ///
    /// Writes the ids to `out` and returns how many. Steps: BOS (`1`) if `bos`; the
    /// dummy-prefix `" "` token if the text is not empty; each UTF-8 code point (up to
    /// four bytes; stray continuation bytes as run.c groups them) as its token, or,
    /// when the vocabulary lacks it, one byte-fallback token `byte + 3` per byte; then
    /// repeatedly merge the adjacent pair whose concatenation is the best-scoring piece
    /// (leftmost on ties, BOS included as run.c does); finally EOS (`2`) if `eos`.
    ///
    /// `out` must hold the tokens before merging plus EOS, and `scratch` the tokens
    /// before merging (as many as `out` minus EOS); [`max_encoded_len`]`(text.len())`
    /// entries is always enough for both. Otherwise [`Error::BufferTooSmall`] gives the
    /// exact need. The text is a C string: bytes from the first NUL on are ignored.
    pub fn encode(
        &self,
        text: &[u8],
        bos: bool,
        eos: bool,
        out: &mut [u32],
        scratch: &mut [u32],
    ) -> Result<usize, Error> {
        self.encode_with(text, bos, eos, true, out, scratch)
    }

    /// [`Tokenizer::encode`] of text that continues earlier text: no BOS, EOS nor
    /// dummy-prefix `" "` token. With a vocabulary in which no piece contains
    /// `\n`, encoding a text line by line — the first line with
    /// [`Tokenizer::encode`], the `\n` and every later line with this — gives
    /// exactly the tokens of encoding it whole, in linear rather than quadratic time.
    pub fn encode_continued(
        &self,
        text: &[u8],
        out: &mut [u32],
        scratch: &mut [u32],
    ) -> Result<usize, Error> {
        self.encode_with(text, false, false, false, out, scratch)
    }

    /// Whether some piece contains byte `b` (e.g. whether line-by-line encoding
    /// is exact: see [`Tokenizer::encode_continued`]).
    pub fn any_piece_contains(&self, b: u8) -> bool {
        (0..self.offsets.len() as u32)
            .any(|id| self.piece(id).is_ok_and(|p| p.len() > 1 && p.contains(&b)))
    }

    fn encode_with(
        &self,
        text: &[u8],
        bos: bool,
        eos: bool,
        dummy_prefix: bool,
        out: &mut [u32],
        scratch: &mut [u32],
    ) -> Result<usize, Error> {
        let text = match text.iter().position(|&b| b == 0) {
            Some(end) => text.split_at(end).0,
            None => text,
        };
        let mut n = 0usize;
        if bos {
            put(out, &mut n, self.check_id(BOS)?);
        }
        if dummy_prefix && !text.is_empty() {
            let dummy = self.lookup(b" ").ok_or(Error::TokenNotInVocab)?;
            put(out, &mut n, dummy);
        }

        // UTF-8 code points, as run.c reads them.
        let mut buf = [0u8; 4];
        let mut len = 0usize;
        for (i, &c) in text.iter().enumerate() {
            if c & 0xC0 != 0x80 {
                len = 0;
            }
            if let Some(slot) = buf.get_mut(len) {
                *slot = c;
            }
            len += 1;
            let next_is_continuation = text.get(i + 1).is_some_and(|&d| d & 0xC0 == 0x80);
            if next_is_continuation && len < 4 {
                continue;
            }
            let code_point = buf.get(..len).unwrap_or(&buf);
            match self.lookup(code_point) {
                Some(id) => put(out, &mut n, id),
                None => {
                    for &b in code_point {
                        let id = self.check_id(u32::from(b) + BYTE_TOKEN_BASE)?;
                        put(out, &mut n, id);
                    }
                }
            }
            len = 0;
        }

        let needed = n + usize::from(eos);
        if needed > out.len() {
            return Err(Error::BufferTooSmall {
                needed,
                got: out.len(),
            });
        }
        if n > scratch.len() {
            return Err(Error::BufferTooSmall {
                needed: n,
                got: scratch.len(),
            });
        }
        let eos_id = if eos { Some(self.check_id(EOS)?) } else { None };

        let n = self.merge(out, scratch, n)?;

        if let Some(id) = eos_id {
            let mut count = n;
            put(out, &mut count, id);
            return Ok(count);
        }
        Ok(n)
    }

    /// The merge loop on `out[..n]`, with `pairs[i]` caching the merge of
    /// `(out[i], out[i + 1])`. Returns the new length.
    fn merge(&self, out: &mut [u32], pairs: &mut [u32], n: usize) -> Result<usize, Error> {
        let short = Error::BufferTooSmall {
            needed: n,
            got: out.len().min(pairs.len()),
        };
        let toks = out.get_mut(..n).ok_or(short)?;
        let pairs = pairs.get_mut(..n).ok_or(short)?;
        for (slot, w) in pairs.iter_mut().zip(toks.windows(2)) {
            *slot = self.merge_of(w[0], w[1])?;
        }
        let mut len = n;
        while len >= 2 {
            let mut best_score = START_SCORE;
            let mut best: Option<(usize, u32)> = None;
            for (i, &id) in pairs.iter().take(len - 1).enumerate() {
                if id != NO_MERGE {
                    let score = self.score(id)?;
                    if score > best_score {
                        best_score = score;
                        best = Some((i, id));
                    }
                }
            }
            let Some((idx, id)) = best else { break };
            // Merge (idx, idx + 1) into id and close the gap.
            if let Some(slot) = toks.get_mut(idx) {
                *slot = id;
            }
            // (Each tail by `get_mut` and not empty: its shift needs no
            // bounds check that could panic.)
            for tail in [toks.get_mut(idx + 1..len), pairs.get_mut(idx + 1..len - 1)]
                .into_iter()
                .flatten()
            {
                if !tail.is_empty() {
                    tail.copy_within(1.., 0);
                }
            }
            len -= 1;
            if idx + 1 < len {
                let (a, b) = (toks.get(idx), toks.get(idx + 1));
                if let (Some(&a), Some(&b), Some(slot)) = (a, b, pairs.get_mut(idx)) {
                    *slot = self.merge_of(a, b)?;
                }
            }
            if idx > 0 {
                let (a, b) = (toks.get(idx - 1), toks.get(idx));
                if let (Some(&a), Some(&b), Some(slot)) = (a, b, pairs.get_mut(idx - 1)) {
                    *slot = self.merge_of(a, b)?;
                }
            }
        }
        Ok(len)
    }

    /// The bytes run.c's `decode(t, prev_token, token)` returns.
    ///
    /// After BOS (`prev_token == 1`) a leading space is stripped (sentencepiece's
    /// decoder, llama2.c PR #89); a byte token `<0xXX>` becomes that single raw byte.
    /// Print it through [`safe_piece`] to get what run.c prints.
    pub fn decode(&self, prev_token: u32, token: u32) -> Result<&'a [u8], Error> {
        let mut piece = self.piece(token)?;
        if prev_token == BOS {
            if let Some(rest) = piece.strip_prefix(b" ") {
                piece = rest;
            }
        }
        if let Some(byte) = parse_byte_token(piece) {
            return Ok(core::slice::from_ref(&BYTE_PIECES[usize::from(byte)]));
        }
        Ok(piece)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(entries: &[(f32, &[u8])]) -> Vec<u8> {
        let mut v = 8i32.to_le_bytes().to_vec();
        for (s, p) in entries {
            v.extend_from_slice(&s.to_le_bytes());
            v.extend_from_slice(&(p.len() as i32).to_le_bytes());
            v.extend_from_slice(p);
        }
        v
    }

    #[test]
    fn cmp_concat_matches_concatenation() {
        let words: [&[u8]; 7] = [b"", b"a", b"ab", b"abc", b"b", b"ba", b"abd"];
        for p in words {
            for a in words {
                for b in words {
                    let cat: Vec<u8> = a.iter().chain(b).copied().collect();
                    assert_eq!(cmp_concat(p, a, b), p.cmp(&cat[..]), "{p:?} {a:?} {b:?}");
                }
            }
        }
    }

    #[test]
    fn byte_tokens_parse_like_sscanf() {
        assert_eq!(parse_byte_token(b"<0x0A>"), Some(0x0a));
        assert_eq!(parse_byte_token(b"<0xff>"), Some(0xff));
        assert_eq!(parse_byte_token(b"<0xF>"), Some(0x0f));
        assert_eq!(parse_byte_token(b"<0x41abc"), Some(0x41));
        assert_eq!(parse_byte_token(b"<0x 7>"), Some(0x07));
        assert_eq!(parse_byte_token(b"<0x-1>"), Some(0xff));
        assert_eq!(parse_byte_token(b"<0x>"), None);
        assert_eq!(parse_byte_token(b"<0xg1>"), None);
        assert_eq!(parse_byte_token(b"<0X41>"), None);
        assert_eq!(parse_byte_token(b"0x41"), None);
    }

    #[test]
    fn safe_piece_filters_single_control_bytes() {
        assert_eq!(safe_piece(b"\x07"), b"");
        assert_eq!(safe_piece(b"\x80"), b"");
        assert_eq!(safe_piece(b"\0"), b"");
        assert_eq!(safe_piece(b"\n"), b"\n");
        assert_eq!(safe_piece(b"A"), b"A");
        assert_eq!(safe_piece(b"\x07\x07"), b"\x07\x07");
        assert_eq!(safe_piece(b"ab\0cd"), b"ab");
        assert_eq!(safe_piece(b""), b"");
    }

    #[test]
    fn merges_pick_best_score_leftmost_on_ties() {
        // <unk> <s> </s> then pieces.
        let data = file(&[
            (0.0, b"<unk>"),
            (0.0, b"\n<s>\n"),
            (0.0, b"\n</s>\n"),
            (0.0, b" "),
            (0.0, b"a"),
            (0.0, b"b"),
            (-1.0, b"ab"),
            (-1.0, b"ba"),
            (-3.0, b" a"),
            (-0.5, b"aba"),
            (-2.0, b"bb"),
        ]);
        let (mut off, mut sorted) = ([0u32; 11], [0u32; 11]);
        let t = Tokenizer::new(&data, 11, &mut off, &mut sorted).unwrap();
        let (mut out, mut scratch) = ([0u32; 16], [0u32; 16]);
        // " a b a": pairs " a"(-3), "ab"(-1), "ba"(-1): leftmost -1 wins => " " ab a,
        // then "aba"(-0.5) => " " aba.
        let n = t
            .encode(b"aba", true, true, &mut out, &mut scratch)
            .unwrap();
        assert_eq!(&out[..n], &[1, 3, 9, 2]);
        // "bbb": "bb" at 0 and at 1 tie; the leftmost merges => "bb" "b".
        let n = t
            .encode(b"bbb", false, false, &mut out, &mut scratch)
            .unwrap();
        assert_eq!(&out[..n], &[3, 10, 5]);
        // Exact buffer sizes: 5 tokens before merging, + EOS.
        let n = t.encode(b"aba", true, true, &mut out[..6], &mut scratch[..5]);
        assert_eq!(n, Ok(4));
        assert_eq!(
            t.encode(b"aba", true, true, &mut out[..5], &mut scratch[..5]),
            Err(Error::BufferTooSmall { needed: 6, got: 5 })
        );
        assert_eq!(
            t.encode(b"aba", true, false, &mut out[..5], &mut scratch[..4]),
            Err(Error::BufferTooSmall { needed: 5, got: 4 })
        );
        // Missing code point, byte fallback needs ids up to byte + 3 => out of range here.
        assert_eq!(
            t.encode(b"z", false, false, &mut out, &mut scratch),
            Err(Error::TokenOutOfRange {
                token: u32::from(b'z') + 3,
                vocab_size: 11
            })
        );
        // C string: stops at NUL; empty text has no dummy prefix.
        assert_eq!(
            t.encode(b"\0ab", true, false, &mut out, &mut scratch),
            Ok(1)
        );
    }
}
