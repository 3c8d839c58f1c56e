//! The tokenizer against llama2.c run.c's recorded outputs
//! (`../shared/models/reference-llama2c.json`) and against a naive run.c model.
//!
//! The tokenizers and the reference are read from the reference models folder
//! (`../shared/models`, or `MICROFORMER_REFERENCE_DIR`; never copied here): without it
//! the tests that need them are skipped, each named (`microformer_testkit::reference`),
//! and the synthetic ones still run.

use std::collections::HashMap;
use std::path::Path;

use microformer::tokenizer::{
    max_encoded_len, safe_piece, Tokenizer, BOS, EOS, INDEX_BYTES_PER_TOKEN,
};
use microformer::Error;
use microformer_testkit::{reference_file, reference_files, XorShift64};
use serde_json::Value;

const LLAMA2_TOK: &str = "llama2-tokenizer.bin";
const AIDREAMS_TOK: &str = "aidreams260K.tok512.bin";
const REFERENCE: &str = "reference-llama2c.json";

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn reference(path: &Path) -> Value {
    serde_json::from_slice(&read(path)).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| u32::try_from(x.as_u64().unwrap()).unwrap())
        .collect()
}

/// Owns the index storage so tests can build a `Tokenizer` in one line.
struct Owned {
    data: Vec<u8>,
    offsets: Vec<u32>,
    sorted: Vec<u32>,
}

impl Owned {
    fn new(data: Vec<u8>, vocab: usize) -> Self {
        let mut offsets = vec![0; vocab];
        let mut sorted = vec![0; vocab];
        Tokenizer::build_index(&data, vocab, &mut offsets, &mut sorted).unwrap();
        Self {
            data,
            offsets,
            sorted,
        }
    }
    fn tok(&self) -> Tokenizer<'_> {
        Tokenizer::from_parts(&self.data, self.offsets.len(), &self.offsets, &self.sorted).unwrap()
    }
}

fn encode(t: &Tokenizer, text: &[u8], bos: bool, eos: bool) -> Vec<u32> {
    let cap = max_encoded_len(text.len());
    let (mut out, mut scratch) = (vec![0; cap], vec![0; cap]);
    let n = t.encode(text, bos, eos, &mut out, &mut scratch).unwrap();
    out.truncate(n);
    out
}

/// A naive transcription of run.c's tokenizer: pieces in a Vec, lookups in a HashMap
/// (no duplicates in these vocabularies), full rescan of all pairs every merge.
struct Naive {
    pieces: Vec<Vec<u8>>,
    scores: Vec<f32>,
    map: HashMap<Vec<u8>, u32>,
}

impl Naive {
    fn parse(data: &[u8], vocab: usize) -> Self {
        let mut off = 4;
        let (mut pieces, mut scores, mut map) = (Vec::new(), Vec::new(), HashMap::new());
        for i in 0..vocab {
            let score = f32::from_le_bytes(data[off..off + 4].try_into().unwrap());
            let len = i32::from_le_bytes(data[off + 4..off + 8].try_into().unwrap()) as usize;
            let p = data[off + 8..off + 8 + len].to_vec();
            assert!(map.insert(p.clone(), i as u32).is_none(), "duplicate piece");
            pieces.push(p);
            scores.push(score);
            off += 8 + len;
        }
        assert_eq!(off, data.len());
        Self {
            pieces,
            scores,
            map,
        }
    }

    fn encode(&self, text: &[u8], bos: bool, eos: bool) -> Vec<u32> {
        let mut tokens = Vec::new();
        if bos {
            tokens.push(1);
        }
        if !text.is_empty() {
            tokens.push(self.map[&b" "[..]]);
        }
        let mut buf: Vec<u8> = Vec::new();
        for i in 0..text.len() {
            let c = text[i];
            if c & 0xC0 != 0x80 {
                buf.clear();
            }
            buf.push(c);
            let next = text.get(i + 1).copied().unwrap_or(0);
            if next & 0xC0 == 0x80 && buf.len() < 4 {
                continue;
            }
            match self.map.get(&buf) {
                Some(&id) => tokens.push(id),
                None => tokens.extend(buf.iter().map(|&b| u32::from(b) + 3)),
            }
            buf.clear();
        }
        loop {
            let mut best_score = -1e10f32;
            let mut best: Option<(usize, u32)> = None;
            for i in 0..tokens.len().saturating_sub(1) {
                let mut cat = self.pieces[tokens[i] as usize].clone();
                cat.extend_from_slice(&self.pieces[tokens[i + 1] as usize]);
                if let Some(&id) = self.map.get(&cat) {
                    if self.scores[id as usize] > best_score {
                        best_score = self.scores[id as usize];
                        best = Some((i, id));
                    }
                }
            }
            let Some((i, id)) = best else { break };
            tokens[i] = id;
            tokens.remove(i + 1);
        }
        if eos {
            tokens.push(2);
        }
        tokens
    }
}

#[test]
fn llama2_tokenizer_encodes_the_five_reference_prompts() {
    let Some([reference_path, tok]) = reference_files!([REFERENCE, LLAMA2_TOK]) else {
        return;
    };
    let r = reference(&reference_path);
    let enc = &r["tokenizer_encode"];
    assert_eq!(enc["tokenizer"], "llama2-tokenizer.bin");
    let vocab = enc["vocab_size"].as_u64().unwrap() as usize;
    let (bos, eos) = (enc["bos"].as_bool().unwrap(), enc["eos"].as_bool().unwrap());
    let owned = Owned::new(read(&tok), vocab);
    let t = owned.tok();
    assert_eq!(t.vocab_size(), 32000);
    assert_eq!(t.max_token_length(), 27);
    let cases = enc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["ids"]);
        assert_eq!(encode(&t, text.as_bytes(), bos, eos), want, "text {text:?}");
    }
}

#[test]
fn aidreams_prompt_encodes_to_the_reference_prompt_tokens() {
    let Some([reference_path, tok]) = reference_files!([REFERENCE, AIDREAMS_TOK]) else {
        return;
    };
    let r = reference(&reference_path);
    let case = r["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["prompt"] == "I was flying over")
        .unwrap();
    let owned = Owned::new(read(&tok), 512);
    let t = owned.tok();
    let got = encode(&t, b"I was flying over", true, false);
    assert_eq!(got[0], BOS);
    // run.c prints the prompt tokens after BOS first, then the sampled ones.
    let reference_ids = ids(&case["ids"]);
    assert!(got.len() > 2, "{got:?}");
    assert_eq!(&got[1..], &reference_ids[..got.len() - 1], "{got:?}");
    // And the prompt decodes back to itself (leading space stripped after BOS).
    let mut text = Vec::new();
    let mut prev = BOS;
    for &id in &got[1..] {
        text.extend_from_slice(safe_piece(t.decode(prev, id).unwrap()));
        prev = id;
    }
    assert_eq!(text, b"I was flying over");
}

#[test]
fn aidreams_reference_ids_decode_to_the_reference_text() {
    let Some([reference_path, tok]) = reference_files!([REFERENCE, AIDREAMS_TOK]) else {
        return;
    };
    let r = reference(&reference_path);
    let owned = Owned::new(read(&tok), 512);
    let t = owned.tok();
    let mut checked = 0;
    for case in r["cases"].as_array().unwrap() {
        if case["tokenizer"] != "aidreams260K.tok512.bin" {
            continue;
        }
        // run.c's generate loop: token starts at BOS; each emitted id is decoded with
        // the previous one and printed through safe_printf; then printf("\n").
        let mut out = Vec::new();
        let mut prev = BOS;
        for id in ids(&case["ids"]) {
            assert_ne!(id, BOS, "the loop stops at BOS before printing it");
            out.extend_from_slice(safe_piece(t.decode(prev, id).unwrap()));
            prev = id;
        }
        out.push(b'\n');
        let want = case["text"].as_str().unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            want,
            "args {}",
            case["args"]
        );
        checked += 1;
    }
    assert_eq!(checked, 3);
}

#[test]
fn special_and_byte_tokens_decode_as_run_c() {
    let Some(tok) = reference_file!(LLAMA2_TOK) else {
        return;
    };
    let owned = Owned::new(read(&tok), 32000);
    let t = owned.tok();
    assert_eq!(t.decode(0, EOS).unwrap(), b"\n</s>\n");
    assert_eq!(t.decode(0, BOS).unwrap(), b"\n<s>\n");
    // <0x0A> is token 13, <0x41> token 68: raw bytes.
    assert_eq!(t.piece(13).unwrap(), b"<0x0A>");
    assert_eq!(t.decode(5, 13).unwrap(), b"\n");
    assert_eq!(t.decode(BOS, 68).unwrap(), b"A");
    assert_eq!(t.decode(5, 3).unwrap(), b"\0");
    assert_eq!(safe_piece(t.decode(5, 3).unwrap()), b"");
    assert_eq!(safe_piece(t.decode(5, 3 + 0x07).unwrap()), b"");
    assert_eq!(safe_piece(t.decode(5, 3 + 0xC3).unwrap()), b"");
    assert_eq!(safe_piece(t.decode(5, 13).unwrap()), b"\n");
    // Leading space stripped only after BOS: 306 is " I".
    assert_eq!(t.piece(306).unwrap(), b" I");
    assert_eq!(t.decode(BOS, 306).unwrap(), b"I");
    assert_eq!(t.decode(EOS, 306).unwrap(), b" I");
    // Every byte token decodes to its byte.
    for b in 0..=255u8 {
        assert_eq!(t.decode(BOS, u32::from(b) + 3).unwrap(), &[b]);
    }
    assert_eq!(
        t.decode(BOS, 32000),
        Err(Error::TokenOutOfRange {
            token: 32000,
            vocab_size: 32000
        })
    );
    assert_eq!(t.lookup(b" "), Some(29871));
    assert_eq!(t.lookup(b"\xff\xff"), None);
}

/// Deterministic pseudo-random texts: words, multi-byte UTF-8 (some outside the
/// vocabulary, so byte fallback), stray continuation bytes, invalid lead bytes,
/// over-long continuation runs, control bytes.
fn texts(count: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = XorShift64(seed);
    let mut next = move || rng.next_u64();
    let atoms: [&[u8]; 24] = [
        b"the",
        b" ",
        b"  ",
        b"Once upon a time",
        b"flying",
        b"vectors",
        b"\n",
        b"\t",
        b"e",
        "é".as_bytes(),
        "日本語".as_bytes(),
        "🦀".as_bytes(),
        "ꙮ".as_bytes(),
        "Ωmega".as_bytes(),
        b"\x80",
        b"\xbf\xbf",
        b"\xff",
        b"\xc3",
        b"\xe6\x97",
        b"\xf0\x80\x80\x80\x80\x80",
        b"\x01",
        b"<0x41>",
        b"don't",
        b"12345",
    ];
    (0..count)
        .map(|_| {
            let n = (next() % 12) as usize;
            let mut t = Vec::new();
            for _ in 0..n {
                t.extend_from_slice(atoms[(next() % atoms.len() as u64) as usize]);
            }
            t
        })
        .collect()
}

#[test]
fn encode_matches_a_naive_run_c_model_on_random_texts() {
    let Some([llama2, aidreams]) = reference_files!([LLAMA2_TOK, AIDREAMS_TOK]) else {
        return;
    };
    for (path, vocab, count) in [(llama2, 32000, 300), (aidreams, 512, 600)] {
        let data = read(&path);
        let naive = Naive::parse(&data, vocab);
        let owned = Owned::new(data, vocab);
        let t = owned.tok();
        for (k, text) in texts(count, 0x9E37_79B9_7F4A_7C15 + vocab as u64)
            .iter()
            .enumerate()
        {
            let (bos, eos) = (k % 2 == 0, k % 3 == 0);
            let want = naive.encode(text, bos, eos);
            assert_eq!(
                encode(&t, text, bos, eos),
                want,
                "{} text {text:?}",
                path.display()
            );
        }
    }
}

#[test]
fn encode_buffers_report_the_exact_need() {
    let Some(tok) = reference_file!(LLAMA2_TOK) else {
        return;
    };
    let owned = Owned::new(read(&tok), 32000);
    let t = owned.tok();
    let text = "I believe the meaning of life is".as_bytes();
    // Before merging: BOS + dummy + 32 one-byte code points = 34; + EOS = 35.
    let (mut out, mut scratch) = (vec![0; 64], vec![0; 64]);
    assert_eq!(
        t.encode(text, true, true, &mut out[..34], &mut scratch),
        Err(Error::BufferTooSmall {
            needed: 35,
            got: 34
        })
    );
    assert_eq!(
        t.encode(text, true, true, &mut out, &mut scratch[..33]),
        Err(Error::BufferTooSmall {
            needed: 34,
            got: 33
        })
    );
    let n = t
        .encode(text, true, true, &mut out[..35], &mut scratch[..34])
        .unwrap();
    assert_eq!(&out[..n], &[1, 306, 4658, 278, 6593, 310, 2834, 338, 2]);
    assert_eq!(
        t.encode(text, false, false, &mut [], &mut []),
        Err(Error::BufferTooSmall { needed: 33, got: 0 })
    );
    // Empty text with neither BOS nor EOS needs nothing.
    assert_eq!(t.encode(b"", false, false, &mut [], &mut []), Ok(0));
    // Multi-byte: "é" is one code point token, "🦀" four byte tokens.
    assert_eq!(
        encode(&t, "🦀".as_bytes(), false, false),
        vec![29871, 243, 162, 169, 131]
    );
}

#[test]
fn index_storage_and_prebuilt_parts() {
    let Some(tok) = reference_file!(AIDREAMS_TOK) else {
        return;
    };
    let data = read(&tok);
    assert_eq!(INDEX_BYTES_PER_TOKEN, 2 * core::mem::size_of::<u32>());
    let (mut off, mut sorted) = (vec![0u32; 512], vec![0u32; 512]);
    assert_eq!(
        Tokenizer::new(&data, 512, &mut off[..511], &mut sorted).err(),
        Some(Error::BufferTooSmall {
            needed: 512,
            got: 511
        })
    );
    assert_eq!(
        Tokenizer::new(&data, 512, &mut off, &mut sorted[..100]).err(),
        Some(Error::BufferTooSmall {
            needed: 512,
            got: 100
        })
    );
    // Longer storage is fine; only the first vocab_size entries are used.
    let (mut off2, mut sorted2) = (vec![7u32; 600], vec![7u32; 600]);
    let t = Tokenizer::new(&data, 512, &mut off2, &mut sorted2).unwrap();
    assert_eq!(t.vocab_size(), 512);
    let (o, s) = (t.offsets().to_vec(), t.sorted_ids().to_vec());
    assert_eq!(o[0], 4);
    // The sorted ids are a permutation ordered by piece bytes.
    let mut perm = s.clone();
    perm.sort_unstable();
    assert_eq!(perm, (0..512).collect::<Vec<u32>>());
    for w in s.windows(2) {
        assert!(t.piece(w[0]).unwrap() < t.piece(w[1]).unwrap());
    }
    let from_parts = Tokenizer::from_parts(&data, 512, &o, &s).unwrap();
    assert_eq!(
        encode(&from_parts, b"I was flying over", true, false),
        encode(&t, b"I was flying over", true, false)
    );

    assert_eq!(
        Tokenizer::from_parts(&data, 512, &o[..511], &s).err(),
        Some(Error::LengthMismatch {
            expected: 512,
            got: 511
        })
    );
    let mut bad = o.clone();
    bad[17] += 1;
    assert_eq!(
        Tokenizer::from_parts(&data, 512, &bad, &s).err(),
        Some(Error::CorruptIndex { entry: 17 })
    );
    let mut bad = s.clone();
    bad.swap(40, 41);
    assert_eq!(
        Tokenizer::from_parts(&data, 512, &o, &bad).err(),
        Some(Error::CorruptIndex { entry: 41 })
    );
    let mut bad = s.clone();
    bad[300] = bad[299];
    assert_eq!(
        Tokenizer::from_parts(&data, 512, &o, &bad).err(),
        Some(Error::CorruptIndex { entry: 300 })
    );
    let mut bad = s.clone();
    bad[0] = 512;
    assert_eq!(
        Tokenizer::from_parts(&data, 512, &o, &bad).err(),
        Some(Error::CorruptIndex { entry: 0 })
    );
}

fn try_new(data: &[u8], vocab: usize) -> Result<usize, Error> {
    let (mut off, mut sorted) = (vec![0u32; vocab], vec![0u32; vocab]);
    Tokenizer::new(data, vocab, &mut off, &mut sorted).map(|t| t.vocab_size())
}

fn entry(score: f32, len: i32, bytes: &[u8]) -> Vec<u8> {
    let mut v = score.to_le_bytes().to_vec();
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(bytes);
    v
}

/// The real aidreams tokenizer, cut and padded.
#[test]
fn malformed_real_file_gives_typed_errors() {
    let Some(tok) = reference_file!(AIDREAMS_TOK) else {
        return;
    };
    let good = read(&tok);
    assert_eq!(try_new(&good, 512), Ok(512));
    assert_eq!(try_new(&[], 512), Err(Error::Truncated));
    assert_eq!(try_new(&good[..3], 512), Err(Error::Truncated));
    assert_eq!(try_new(&good, 0), Err(Error::ZeroDimension));
    // Every truncation of the real file is rejected as truncated, never a panic.
    for cut in 0..good.len() {
        assert_eq!(
            try_new(&good[..cut], 512),
            Err(Error::Truncated),
            "cut at {cut}"
        );
    }
    // More entries than the vocabulary: entry 511 (score, length, "μ") is left over.
    assert_eq!(
        try_new(&good, 511),
        Err(Error::VocabSizeMismatch {
            expected: 511,
            trailing_bytes: 8 + 2
        })
    );
    let mut long = good.clone();
    long.push(0);
    assert_eq!(
        try_new(&long, 512),
        Err(Error::VocabSizeMismatch {
            expected: 512,
            trailing_bytes: 1
        })
    );
    // Fewer entries than the vocabulary.
    assert_eq!(try_new(&good, 513), Err(Error::Truncated));
}

/// Synthetic files (needs nothing outside the repository).
#[test]
fn malformed_files_give_typed_errors() {
    let head = 5i32.to_le_bytes().to_vec();
    let file =
        |entries: &[Vec<u8>]| -> Vec<u8> { head.iter().copied().chain(entries.concat()).collect() };
    let a = entry(0.0, 1, b"a");
    assert_eq!(try_new(&file(&[a.clone(), a.clone()]), 2), Ok(2));
    assert_eq!(
        try_new(&file(&[a.clone(), entry(0.0, -1, b"")]), 2),
        Err(Error::InvalidTokenLength { token: 1, len: -1 })
    );
    assert_eq!(
        try_new(&file(&[entry(0.0, i32::MIN, b"")]), 1),
        Err(Error::InvalidTokenLength {
            token: 0,
            len: i32::MIN
        })
    );
    assert_eq!(
        try_new(&file(&[a.clone(), entry(0.0, 0, b"")]), 2),
        Err(Error::InvalidTokenLength { token: 1, len: 0 })
    );
    // Length past the end of the file.
    assert_eq!(
        try_new(&file(&[a.clone(), entry(0.0, 2, b"b")]), 2),
        Err(Error::Truncated)
    );
    assert_eq!(
        try_new(&file(&[entry(0.0, i32::MAX, b"abc")]), 1),
        Err(Error::Truncated)
    );
    // Header present, entry header cut.
    assert_eq!(try_new(&file(&[a[..6].to_vec()]), 1), Err(Error::Truncated));

    // A vocabulary without " " cannot encode non-empty text; tiny vocabularies cannot
    // hold BOS/EOS or byte-fallback ids.
    let tiny = file(std::slice::from_ref(&a));
    let (mut off, mut sorted) = ([0u32; 1], [0u32; 1]);
    let t = Tokenizer::new(&tiny, 1, &mut off, &mut sorted).unwrap();
    let (mut out, mut scratch) = ([0u32; 8], [0u32; 8]);
    assert_eq!(
        t.encode(b"a", false, false, &mut out, &mut scratch),
        Err(Error::TokenNotInVocab)
    );
    assert_eq!(
        t.encode(b"", true, false, &mut out, &mut scratch),
        Err(Error::TokenOutOfRange {
            token: 1,
            vocab_size: 1
        })
    );
    let spaced = file(&[entry(0.0, 1, b" "), a.clone()]);
    let (mut off, mut sorted) = ([0u32; 2], [0u32; 2]);
    let t = Tokenizer::new(&spaced, 2, &mut off, &mut sorted).unwrap();
    assert_eq!(t.encode(b"a", false, false, &mut out, &mut scratch), Ok(2));
    assert_eq!(
        t.encode(b"a", false, true, &mut out, &mut scratch),
        Err(Error::TokenOutOfRange {
            token: EOS,
            vocab_size: 2
        })
    );
    assert_eq!(
        t.encode(b"c", false, false, &mut out, &mut scratch),
        Err(Error::TokenOutOfRange {
            token: u32::from(b'c') + 3,
            vocab_size: 2
        })
    );
}

#[test]
fn equal_scores_merge_leftmost_first() {
    let head = 5i32.to_le_bytes().to_vec();
    let pieces: [(f32, &[u8]); 8] = [
        (0.0, b"<unk>"),
        (0.0, b"\n<s>\n"),
        (0.0, b"\n</s>\n"),
        (0.0, b" "),
        (0.0, b"a"),
        (0.0, b"b"),
        (-1.0, b"ab"),
        (-1.0, b"ba"),
    ];
    let data: Vec<u8> = head
        .into_iter()
        .chain(
            pieces
                .iter()
                .flat_map(|(s, p)| entry(*s, p.len() as i32, p)),
        )
        .collect();
    let owned = Owned::new(data.clone(), 8);
    let t = owned.tok();
    // " a b a": "ab" (at 1) and "ba" (at 2) score the same; run.c takes the leftmost.
    assert_eq!(encode(&t, b"aba", false, false), vec![3, 6, 4]);
    assert_eq!(encode(&t, b"bab", false, false), vec![3, 7, 5]);
    let naive = Naive::parse(&data, 8);
    assert_eq!(naive.encode(b"aba", false, false), vec![3, 6, 4]);
}
