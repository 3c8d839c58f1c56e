//! `tokenizer`: [`Tokenizer::new`] on arbitrary bytes, then `encode` /
//! `encode_continued` of arbitrary text with output and scratch buffers of
//! every size, `decode` of token ids across the vocabulary and past it, and
//! [`Tokenizer::from_parts`] on the index just built.
//!
//! Input: 4 control bytes, the text, [`crate::SEP`], the tokenizer file. The
//! control bytes pick the flags, the two buffer sizes (modulo what the text can
//! need, so that every size from 0 up comes up) and the vocabulary size (the
//! file's whole entries, or one fewer or more).

use microformer::tokenizer::{max_encoded_len, safe_piece, Tokenizer, BOS};
use microformer::Error;

use crate::{parts, tokenizer_entries};

/// The harness. Returns whether the file made a tokenizer.
pub fn run(data: &[u8]) -> bool {
    let p = parts(data);
    let (Some(head), Some(file)) = (p.first(), p.get(1)) else {
        return false;
    };
    let (ctrl, text) = head.split_at(head.len().min(4));
    let ctrl = |i: usize| ctrl.get(i).copied().unwrap_or(0);
    let whole = tokenizer_entries(file);
    let vocab = match ctrl(0) >> 6 {
        1 => whole.saturating_sub(1),
        2 => whole + 1,
        _ => whole,
    };
    if vocab > 1 << 16 {
        return false;
    }
    let (mut offsets, mut sorted) = (vec![0u32; vocab], vec![0u32; vocab]);
    let tok = match Tokenizer::new(file, vocab, &mut offsets, &mut sorted) {
        Ok(t) => t,
        Err(_) => return false,
    };
    assert_eq!(tok.vocab_size(), vocab);
    // The index it built is one `from_parts` takes back.
    if let Err(e) = Tokenizer::from_parts(file, vocab, tok.offsets(), tok.sorted_ids()) {
        panic!("from_parts refused the index new built: {e:?}");
    }
    let (bos, eos, continued) = (ctrl(0) & 1 != 0, ctrl(0) & 2 != 0, ctrl(0) & 4 != 0);
    let encode = |out: &mut [u32], scratch: &mut [u32]| {
        if continued {
            tok.encode_continued(text, out, scratch)
        } else {
            tok.encode(text, bos, eos, out, scratch)
        }
    };
    let max = max_encoded_len(text.len());
    let (mut out, mut scratch) = (vec![0u32; max], vec![0u32; max]);
    let full = encode(&mut out, &mut scratch);
    if let Ok(n) = full {
        assert!(n <= max);
        for &t in &out[..n] {
            assert!((t as usize) < vocab, "encode gave {t} of {vocab}");
        }
    }
    // Short buffers: the same tokens, or BufferTooSmall.
    let out_len = usize::from(ctrl(1)) % (max + 2);
    let scratch_len = usize::from(ctrl(2)) % (max + 2);
    let (mut o, mut s) = (vec![0u32; out_len], vec![0u32; scratch_len]);
    match (encode(&mut o, &mut s), &full) {
        (Ok(n), Ok(m)) => {
            assert_eq!(n, *m);
            assert_eq!(o[..n], out[..n]);
        }
        (Err(Error::BufferTooSmall { needed, got }), _) => {
            assert!(needed > got, "BufferTooSmall needs {needed}, got {got}");
        }
        (Err(a), Err(b)) => assert_eq!(a, *b),
        (a, b) => panic!("short buffers gave {a:?}, full ones {b:?}"),
    }
    // Decode every id after BOS and after another token; ids past the vocabulary fail.
    let prev = u32::from(ctrl(3));
    // (A window of ids, not all of them: the run stays short.)
    let v = vocab as u32;
    let ids = (0..8)
        .chain(v.saturating_sub(4)..v.saturating_add(2))
        .chain([prev, prev * 7]);
    for id in ids {
        for p in [BOS, prev] {
            match tok.decode(p, id) {
                Ok(piece) => {
                    assert!((id as usize) < vocab);
                    let _ = safe_piece(piece);
                }
                Err(Error::TokenOutOfRange { .. }) => assert!(id as usize >= vocab),
                Err(e) => panic!("decode({p}, {id}): {e:?}"),
            }
        }
        if let Ok(piece) = tok.piece(id) {
            // The lookup finds an id with this piece (the first of duplicates).
            let found = tok.lookup(piece);
            assert!(found.is_some_and(|f| tok.piece(f) == Ok(piece)));
        }
    }
    true
}
