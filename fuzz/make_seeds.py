#!/usr/bin/env python3
"""Writes the fuzz targets' starting corpora into fuzz/seeds/<target>/ (before
`cargo fuzz cmin` minimises them; see README.md).

Real files are too large to fuzz quickly (a 64-wide model takes ~400 KB), so the
seeds are the real ones made tiny: the Hugging Face fixtures of every family
(shared/fixtures/hf) and the project's own models (models/<scheme>) with their
widths divided by 4, one layer and random weights; llama2.c checkpoints of all
three versions written as export.py writes them; the real tokenizers
(models/tokenizer; the aidreams260K files may not be copied into the repository) and tiny ones; model
images of every family made from those by `microformer convert` (f32, q8, f16).

Usage: python3 fuzz/make_seeds.py SHARED_DIR  (from the repository root, after
`cargo build --release -p microformer-cli`).
"""

import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEP = b"\n#MFZ#\n"
CLI = os.path.join(ROOT, "target", "release", "microformer")
rng = random.Random(12)


def out(target, name, data):
    d = os.path.join(ROOT, "fuzz", "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def floats(n, scale=0.1):
    return struct.pack(f"<{n}f", *(rng.uniform(-scale, scale) for _ in range(n)))


def tokenizer(vocab):
    """A llama2.c tokenizer.bin of `vocab` entries: <unk> <s> </s>, byte tokens
    while they fit, then letters and merges."""
    pieces = [b"<unk>", b"\n<s>\n", b"\n</s>\n"]
    pieces += [b"<0x%02X>" % i for i in range(min(256, max(0, vocab // 2 - 3)))]
    extra = [b" ", b"e", b"a", b"o", b"t", b" t", b"he", b" the", b"in", b"an", b"\xc3\xa9", b"\xe2\x9c\x93"]
    extra += [bytes([c]) for c in range(ord("a"), ord("z") + 1)]
    i = 0
    while len(pieces) < vocab:
        p = extra[i] if i < len(extra) else b"w%d" % i
        if p not in pieces:
            pieces.append(p)
        i += 1
    body = struct.pack("<i", max(len(p) for p in pieces))
    for k, p in enumerate(pieces[:vocab]):
        body += struct.pack("<fi", -float(k) if k > 2 else 0.0, len(p)) + p
    return body


def safetensors(tensors):
    header = {}
    data = b""
    for name, shape in tensors:
        n = 1
        for s in shape:
            n *= s
        blob = floats(n)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


WIDTH_KEYS = {
    "hidden_size", "n_embd", "d_model", "intermediate_size", "ffn_dim", "n_inner", "head_dim",
    "vocab_size", "max_position_embeddings", "n_positions", "n_ctx", "original_max_position_embeddings",
    "training_length", "q8_group_size",
}
LAYER_KEYS = {"num_hidden_layers", "n_layer", "num_layers"}


def shrink_config(c):
    if isinstance(c, dict):
        r = {}
        for k, v in c.items():
            if k in WIDTH_KEYS and isinstance(v, int) and not isinstance(v, bool):
                r[k] = max(1, v // 4)
            elif k in LAYER_KEYS:
                r[k] = 1
            elif k == "partial_rotary_factor":
                r[k] = 0.5
            else:
                r[k] = shrink_config(v)
        return r
    if isinstance(c, list):
        return [shrink_config(x) for x in c]
    return c


def read_st_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


def shrink_dir(src, dst):
    """`src` (config.json + model.safetensors) made tiny in `dst`."""
    os.makedirs(dst, exist_ok=True)
    cfg = json.load(open(os.path.join(src, "config.json")))
    small = shrink_config(cfg)
    h = read_st_header(os.path.join(src, "model.safetensors"))
    tensors = []
    for name, v in h.items():
        if name == "__metadata__":
            continue
        m = re.search(r"\.(\d+)\.", name)
        if m and int(m.group(1)) >= 1:
            continue
        shape = v["shape"] if "relative_attention_bias" in name else [max(1, s // 4) for s in v["shape"]]
        tensors.append((name, shape))
    cfg_text = json.dumps(small, indent=1).encode()
    st = safetensors(tensors)
    with open(os.path.join(dst, "config.json"), "wb") as f:
        f.write(cfg_text)
    with open(os.path.join(dst, "model.safetensors"), "wb") as f:
        f.write(st)
    return cfg_text, tensors, small


def llama2c(version, dim=8, hidden=16, layers=1, heads=2, kv=1, vocab=32, seq=8, shared=True, group=4):
    """A llama2.c checkpoint as export.py writes it (legacy v0, v1, v2)."""
    hs = dim // heads
    kvd = kv * hs
    params = [dim, hidden, layers, heads, kv, vocab if (shared or version) else -vocab, seq]
    norms = [("att", layers * dim), ("ffn", layers * dim), ("fin", dim)]
    mats = [(vocab * dim, 1), (dim * dim, layers), (kvd * dim, layers), (kvd * dim, layers),
            (dim * dim, layers), (hidden * dim, layers), (dim * hidden, layers), (hidden * dim, layers)]
    if version == 0:
        b = struct.pack("<7i", *params)
        b += floats(vocab * dim)
        b += floats(layers * dim)
        for n, l in mats[1:5]:
            b += floats(n * l)
        b += floats(layers * dim)
        for n, l in mats[5:]:
            b += floats(n * l)
        b += floats(dim)
        b += floats(seq * hs // 2) + floats(seq * hs // 2)
        if not shared:
            b += floats(vocab * dim)
        return b
    head = struct.pack("<Ii7iB", 0x616B3432, version, *params, 1 if shared else 0)
    if version == 2:
        head += struct.pack("<i", group)
    head += b"\0" * (256 - len(head))
    b = head
    for _, n in norms:
        b += floats(n)
    if version == 1:
        for n, l in mats:
            b += floats(n * l)
        if not shared:
            b += floats(vocab * dim)
        return b
    allm = [(n, l) for n, l in mats] + ([] if shared else [(vocab * dim, 1)])
    for n, l in allm:
        for _ in range(l):
            b += bytes(rng.randrange(256) for _ in range(n))
            b += floats(n // group, 0.01)
    return b


def convert(src, image, *args):
    r = subprocess.run([CLI, "convert", "--no-check", "-o", image, *args, src], capture_output=True)
    if r.returncode != 0:
        print(f"  convert {os.path.basename(src)} {args}: {r.stderr.decode().strip()}", file=sys.stderr)
        return None
    return open(image, "rb").read()


def main():
    shared = sys.argv[1] if len(sys.argv) > 1 else "/work/shared"
    for t in ["image", "llama2c", "hf", "tokenizer", "settings"]:
        shutil.rmtree(os.path.join(ROOT, "fuzz", "seeds", t), ignore_errors=True)
    tmp = tempfile.mkdtemp(prefix="microformer-seeds-")
    tok32, tok128 = tokenizer(32), tokenizer(128)
    sample = open(os.path.join(ROOT, "models", "text", "sample.txt"), "rb").read()[:48]
    texts = [b"Once upon a time", "héllo wörld ✓".encode(), sample, b"\xff\xfe a\x00b", b""]

    # settings: the command lines of the firmware's docs and tests.
    for i, line in enumerate([
        b"ELF steps=128 temperature=0 topp=0.9 seed=42 prompt=I was flying over",
        b"/path/to/qemu-m4f steps=100 temperature=0 seed=-1 topp=0.5",
        b"elf prompt_ids=1,2,3 kv=q8 arith=integer stop=none",
        b"elf perplexity=512 bench=kernels kv=q16 arith=float stop=bos",
        b"elf bench=none kv=f32 seed=18446744073709551615 temperature=1e-3 topp=1",
        b"  elf  ", b"",
    ]):
        out("settings", f"cmdline-{i}", line)

    # tokenizer: real and tiny files, several texts and control bytes.
    toks = {
        "own512": open(os.path.join(ROOT, "models", "tokenizer", "tokenizer.bin"), "rb").read(),
        "tiny32": tok32,
        "tiny128": tok128,
    }
    for name, t in toks.items():
        for i, text in enumerate(texts):
            ctrl = bytes([i & 7, 255, 255, i * 37 & 255])
            out("tokenizer", f"{name}-{i}", ctrl + text + SEP + t)

    # llama2c: every version, shared and separate classifier, with a tokenizer.
    ckpts = {}
    for v in (0, 1, 2):
        for shared_cls in (True, False):
            ck = llama2c(v, shared=shared_cls)
            name = f"v{v}-{'shared' if shared_cls else 'wcls'}"
            ckpts[name] = ck
            for ctrl in (0, 2, 0x0d):
                out("llama2c", f"{name}-{ctrl}", bytes([ctrl]) + ck + SEP + tok32 + SEP + texts[0])
    out("llama2c", "tokenizer-only", bytes([0]) + SEP + toks["own512"] + SEP + sample)

    # hf: every family of the fixtures and of models/, made tiny; one sharded.
    dirs = {}
    for fam in sorted(os.listdir(os.path.join(shared, "fixtures", "hf"))):
        dirs[fam] = os.path.join(shared, "fixtures", "hf", fam)
    for scheme in sorted(os.listdir(os.path.join(ROOT, "models"))):
        d = os.path.join(ROOT, "models", scheme)
        if os.path.exists(os.path.join(d, "model.safetensors")):
            dirs["own-" + scheme] = d
    small_dirs = {}
    for fam, src in dirs.items():
        dst = os.path.join(tmp, fam)
        cfg_text, tensors, _ = shrink_dir(src, dst)
        small_dirs[fam] = dst
        st = open(os.path.join(dst, "model.safetensors"), "rb").read()
        for ctrl in (0, 2, 1):
            out("hf", f"{fam}-{ctrl}", bytes([ctrl]) + cfg_text + SEP + st)
        if fam == "llama-rope-default" or fam == "own-t5":
            half = len(tensors) // 2
            parts = [tensors[:half], tensors[half:]]
            names = [f"model-{i + 1:05}-of-00002.safetensors" for i in range(2)]
            index = {"metadata": {}, "weight_map": {n: names[i] for i, p in enumerate(parts) for n, _ in p}}
            files = [json.dumps(index).encode()] + [safetensors(p) for p in parts]
            out("hf", f"{fam}-sharded", bytes([4]) + cfg_text + SEP + SEP.join(files))

    # image: the tiny checkpoints converted, every family, f32 / q8 / f16, with tokenizers.
    tok32_path = os.path.join(tmp, "tok32.bin")
    tok128_path = os.path.join(tmp, "tok128.bin")
    open(tok32_path, "wb").write(tok32)
    open(tok128_path, "wb").write(tok128)
    for fam, d in small_dirs.items():
        vocab = json.load(open(os.path.join(d, "config.json"))).get("vocab_size", 32)
        tok = tok128_path if vocab == 128 else tok32_path
        for quant in ("f32", "q8", "f16"):
            img = convert(d, os.path.join(tmp, "x.img"), "--quant", quant, "--context", "8", "--tokenizer", tok)
            if img:
                out("image", f"{fam}-{quant}", img)
    for name, ck in ckpts.items():
        p = os.path.join(tmp, name + ".bin")
        open(p, "wb").write(ck)
        for quant in ("f32", "q8"):
            img = convert(p, os.path.join(tmp, "x.img"), "--quant", quant, "--tokenizer", tok32_path)
            if img:
                out("image", f"llama2c-{name}-{quant}", img)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
