//! The harnesses behind microformer's fuzz targets (`fuzz_targets/*.rs`), one per
//! input surface, kept in a library so that the seed generator (`src/bin/seeds.rs`)
//! can check its seeds with the very code the fuzzer runs.
//!
//! Every harness takes arbitrary bytes and must neither panic nor read out of
//! bounds; the `assert!`s here are properties of the parsers (what a parser
//! accepted, the next stage accepts too; a short buffer gives `BufferTooSmall`,
//! never different tokens), so that a violation is a crash the fuzzer reports.
//!
//! Inputs made of several files (a checkpoint and its tokenizer, a
//! `config.json` and its safetensors) are those files joined by [`SEP`].

pub mod hf;
// The CLI's `tables` module and what it uses, compiled here unchanged (the CLI
// is a binary crate; `tables` names them `crate::error` and `crate::output`).
#[allow(dead_code, unused_imports, unused_macros, clippy::all)]
#[path = "../../cli/src/error.rs"]
mod error;
pub mod image;
pub mod llama2c;
#[allow(dead_code, unused_imports, unused_macros, clippy::all)]
#[path = "../../cli/src/output.rs"]
mod output;
pub mod settings;
#[allow(dead_code, unused_imports, unused_macros, clippy::all)]
#[path = "../../cli/src/tables.rs"]
mod tables;
pub mod tokenizer;

/// Separates the files of one fuzz input.
pub const SEP: &[u8] = b"\n#MFZ#\n";

/// The parts of `data` between [`SEP`]s (always at least one, possibly empty).
pub fn parts(data: &[u8]) -> Vec<&[u8]> {
    // Candidates are the `#` bytes (cheaper than comparing every window: the fuzzer
    // traces every comparison).
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < data.len() {
        if data[i] == b'#' && i > start && data[i - 1..].starts_with(SEP) {
            out.push(&data[start..i - 1]);
            start = i - 1 + SEP.len();
            i = start;
        } else {
            i += 1;
        }
    }
    out.push(&data[start..]);
    out
}

/// `parts` joined by [`SEP`] (what [`parts`] splits back).
pub fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(SEP);
        }
        out.extend_from_slice(p);
    }
    out
}

/// A 4-byte aligned copy of some bytes (model images and checkpoints are read
/// in place and must be aligned).
pub struct Aligned {
    words: Vec<u32>,
    len: usize,
}

impl Aligned {
    /// Copies `bytes`.
    pub fn new(bytes: &[u8]) -> Self {
        let mut words = vec![0u32; bytes.len().div_ceil(4)];
        bytemuck::cast_slice_mut::<u32, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        Aligned {
            words,
            len: bytes.len(),
        }
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<u32, u8>(&self.words)[..self.len]
    }

    /// The bytes, mutable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut::<u32, u8>(&mut self.words)[..self.len]
    }
}

/// The number of whole `tokenizer.bin` entries in `data` (a llama2.c tokenizer
/// file does not store its vocabulary size): what a harness passes as the
/// vocabulary, so that a well-formed file is read whole.
pub fn tokenizer_entries(data: &[u8]) -> usize {
    let mut off = 4usize;
    let mut n = 0;
    while let Some(len) = data.get(off + 4..off + 8) {
        let len = i32::from_le_bytes([len[0], len[1], len[2], len[3]]);
        if len <= 0 {
            break;
        }
        match (off + 8).checked_add(len as usize) {
            Some(end) if end <= data.len() => {
                off = end;
                n += 1;
            }
            _ => break,
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_split_what_join_joins() {
        for p in [
            &[&b"a"[..], b"", b"#MFZ#", b"\n#MFZ"][..],
            &[b""],
            &[b"", b""],
            &[b"\n\n#", b"x"],
        ] {
            assert_eq!(parts(&join(p)), p);
        }
        assert_eq!(parts(b"a\n#MFZ#\n\n#MFZ#\nb"), [&b"a"[..], b"", b"b"]);
    }
}
