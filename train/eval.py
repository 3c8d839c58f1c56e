"""Perplexity of a microformer checkpoint, as the runtime defines it.

    python train/eval.py MODEL_DIR --text FILE --window N [--json] [--q8]

Definition (the Rust runtime implements the same one):
  tokens  = run.c encode() of the file's text (dummy prefix, no BOS/EOS),
            with the model directory's tokenizer.bin;
  chunks  = consecutive non-overlapping pieces of N-1 tokens, the last one
            possibly shorter (never empty);
  window  = [BOS] + chunk, run from position 0; the len(chunk) next-token
            predictions are scored (BOS -> chunk[0], ..., chunk[-2] -> chunk[-1]);
  tokens  = number of scored predictions, windows = number of chunks,
  nll     = mean natural-log negative log-likelihood (summed in float64),
  perplexity = exp(nll).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from model import Microformer, load_model  # noqa: E402
from runc_tokenizer import RunCTokenizer  # noqa: E402

BOS = 1


def window_chunks(tokens: list[int], window: int):
    """All chunks of window-1 tokens, then the full ones and the short last one."""
    assert window >= 2, "window must hold BOS and at least one token"
    if not tokens:
        raise ValueError("the text encodes to no tokens")
    span = window - 1
    chunks = [tokens[i:i + span] for i in range(0, len(tokens), span)]
    full = [c for c in chunks if len(c) == span]
    rest = [c for c in chunks if len(c) != span]
    return chunks, full, rest


@torch.no_grad()
def perplexity(model: Microformer, tokens: list[int], window: int, qat: bool = False,
               batch: int = 64) -> dict:
    if window > model.max_positions():
        raise ValueError(f"window {window} exceeds the model's {model.max_positions()} "
                         f"positions ({model.c.position})")
    chunks, full, rest = window_chunks(tokens, window)
    total = 0.0  # float64 accumulator
    count = 0

    def score(group: list[list[int]]) -> None:
        nonlocal total, count
        t = torch.tensor(group, dtype=torch.int64)
        inp = torch.cat([torch.full((t.shape[0], 1), BOS, dtype=torch.int64), t[:, :-1]], dim=1)
        logits = model(inp, qat=qat)
        logp = F.log_softmax(logits.float(), dim=-1)
        nll = -logp.gather(-1, t.unsqueeze(-1)).squeeze(-1)
        total += float(nll.to(torch.float64).sum().item())
        count += t.numel()

    for i in range(0, len(full), batch):
        score(full[i:i + batch])
    for c in rest:
        score([c])
    mean = total / count
    return {"window": window, "tokens": count, "windows": len(chunks),
            "nll": mean, "perplexity": math.exp(mean)}


def text_tokens(tok: RunCTokenizer, path: str) -> list[int]:
    with open(path, "r", encoding="utf-8", newline="") as f:
        text = f.read()
    return tok.encode_linewise(text)


def main() -> None:
    ap = argparse.ArgumentParser(description="perplexity of a microformer checkpoint")
    ap.add_argument("model_dir")
    ap.add_argument("--text", required=True)
    ap.add_argument("--window", type=int, required=True)
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    ap.add_argument("--q8", action="store_true",
                    help="simulate the runtime's q8 path (Q8_0 weights and activations)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model = load_model(args.model_dir)
    tok = RunCTokenizer(os.path.join(args.model_dir, "tokenizer.bin"))
    res = perplexity(model, text_tokens(tok, args.text), args.window, qat=args.q8)
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{args.model_dir}: {args.text} window {args.window}"
              f"{' (q8)' if args.q8 else ''}: perplexity {res['perplexity']:.4f} "
              f"over {res['tokens']} tokens in {res['windows']} windows")
        print(json.dumps(res))


if __name__ == "__main__":
    main()
