"""Train one microformer model on the Shakespeare training split.

    python train/train.py --scheme rope --seed 1 --out models/rope

Needs train/.cache/train_tokens.npy and models/tokenizer/tokenizer.bin from
prepare.py (train/train.sh runs everything in order).  Writes config.json,
model.safetensors (Q8_0-snapped float32 weights), tokenizer.bin, train.json
and loss.png into --out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from eval import perplexity, text_tokens  # noqa: E402
from model import SCHEMES, Config, Microformer, load_model  # noqa: E402
from runc_tokenizer import RunCTokenizer  # noqa: E402

BOS = 1

# Chosen from a speed measurement on the 2-core build machine (about 0.25 s
# per step of 32 x 128 tokens) so that one model trains in about six
# minutes; identical for every scheme.
DEFAULT_STEPS = 1400
DEFAULT_BATCH = 32
# Token-embedding init std per scheme (every other matrix: 0.02).  The
# sinusoidal table's entries are O(1) (row RMS 0.71): with a 0.02 embedding
# the token signal is 3 % of x0 and training sits on the unigram plateau for
# ~600 steps, ending far behind the other schemes.  Starting the embedding at
# the table's order of magnitude (as Vaswani et al.'s sqrt(d) embedding scale
# does) removes the plateau.
EMBED_STD = {"sinusoidal": 0.5}
# Weight of the consistency term of the quantisation-aware phase, per scheme
# (default 0: none).  With it the QAT loss is
#   CE(q8 logits) + w * KL(softmax(f32 logits) || softmax(q8 logits)),
# the f32 logits computed on the same snapped weights without activation
# quantisation (the f32 image), gradients through both paths.  The
# straight-through estimator treats each activation's rounding error as a
# constant, so the term's gradient is that of the logits' sensitivity to that
# error: it makes the model less sensitive to its q8 arithmetic, where plain
# QAT only makes the q8 path predict well.  Without it the nope and sinusoidal
# models' q8 images agreed with their f32 images on 97.4 % and 97.9 % of
# held-out next-token predictions (cli/tests/own_q8.rs asks for 98 %); with
# weight 300, 98.4 % and 98.2 %, at validation perplexity 16.59 and 16.50
# (from 16.02 and 16.29); weight 1000 gave nope 98.6 % at 17.67.  A QAT phase
# of half the steps with stochastic activation rounding did not help (nope
# 97.5 %).  The term costs a second forward and backward per QAT step.
QAT_CONSISTENCY = {"nope": 300.0, "sinusoidal": 300.0}


def lr_at(step: int, steps: int, peak: float, warmup: int, floor: float) -> float:
    """Linear warmup to `peak`, then cosine decay to `floor` at the last step."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - 1 - warmup)
    return floor + 0.5 * (peak - floor) * (1.0 + math.cos(math.pi * min(1.0, t)))


def main() -> None:
    ap = argparse.ArgumentParser(description="train one microformer model")
    ap.add_argument("--scheme", required=True, choices=SCHEMES)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    ap.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--min-lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--qat-fraction", type=float, default=0.25)
    ap.add_argument("--qat-consistency", type=float, default=None,
                    help="weight of the KL(f32 || q8) term in the QAT phase "
                         "(default: the scheme's entry in QAT_CONSISTENCY, else 0)")
    ap.add_argument("--val-every", type=int, default=200)
    ap.add_argument("--val-windows", type=int, default=64)
    ap.add_argument("--embed-std", type=float, default=None,
                    help="token embedding init std (default 0.02; 0.5 for sinusoidal)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--time-only", type=int, default=0,
                    help="run this many steps, print the speed and exit (no output)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t_start = time.time()

    cache = os.path.join(HERE, ".cache")
    data = np.load(os.path.join(cache, "train_tokens.npy")).astype(np.int64)
    tok_bin = os.path.join(ROOT, "models", "tokenizer", "tokenizer.bin")
    tok = RunCTokenizer(tok_bin)
    val_path = os.path.join(ROOT, "models", "text", "validation.txt")
    sample_path = os.path.join(ROOT, "models", "text", "sample.txt")
    val_tokens = text_tokens(tok, val_path)
    with open(os.path.join(cache, "split.json")) as f:
        split = json.load(f)

    cfg = Config(position=args.scheme)
    T = cfg.training_length
    embed_std = args.embed_std if args.embed_std is not None else EMBED_STD.get(args.scheme, 0.02)
    model = Microformer(cfg, embed_std=embed_std)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[train] scheme {args.scheme} seed {args.seed}: {n_params} parameters, "
          f"{data.size} training tokens, steps {args.steps} x batch {args.batch} x {T}", flush=True)

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        # Weight decay on the weight matrices and embedding tables; not on the
        # RMSNorm gains nor the T5 relative attention bias.
        if p.dim() == 2 and "relative_attention_bias" not in name:
            decay.append(p)
        else:
            no_decay.append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)

    steps = args.time_only or args.steps
    qat_start = int(round(steps * (1.0 - args.qat_fraction)))
    consistency = (args.qat_consistency if args.qat_consistency is not None
                   else QAT_CONSISTENCY.get(args.scheme, 0.0))
    # Fixed validation probe for the loss curve: the first windows of the
    # held-out text (the full perplexity is computed once at the end).
    probe = torch.tensor(val_tokens[: args.val_windows * (T - 1)], dtype=torch.int64)
    probe = probe[: (probe.numel() // (T - 1)) * (T - 1)].view(-1, T - 1)
    probe_in = torch.cat([torch.full((probe.shape[0], 1), BOS), probe[:, :-1]], dim=1)

    @torch.no_grad()
    def val_loss(qat: bool) -> float:
        model.eval()
        logits = model(probe_in, qat=qat)
        model.train()
        return float(F.cross_entropy(logits.view(-1, logits.shape[-1]), probe.view(-1)).item())

    curve, val_curve = [], []
    acc, acc_n = 0.0, 0
    model.train()
    t0 = time.time()
    for step in range(steps):
        lr = lr_at(step, steps, args.lr, args.warmup, args.min_lr)
        for g in opt.param_groups:
            g["lr"] = lr
        qat = step >= qat_start
        offs = rng.integers(0, data.size - T, size=args.batch)
        y = np.stack([data[o:o + T] for o in offs])
        x = np.concatenate([np.full((args.batch, 1), BOS, dtype=np.int64), y[:, :-1]], axis=1)
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        logits = model(x, qat=qat)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.reshape(-1))
        if qat and consistency > 0:
            ref = model(x, qat="weights")
            kl = F.kl_div(F.log_softmax(logits, -1).view(-1, logits.shape[-1]),
                          F.log_softmax(ref, -1).view(-1, ref.shape[-1]),
                          log_target=True, reduction="batchmean")
            loss_ce = loss
            loss = loss + consistency * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        acc += float((loss_ce if qat and consistency > 0 else loss).item())
        acc_n += 1
        if (step + 1) % 25 == 0 or step == steps - 1:
            curve.append({"step": step + 1, "loss": acc / acc_n, "qat": qat})
            acc, acc_n = 0.0, 0
        if not args.time_only and ((step + 1) % args.val_every == 0 or step == steps - 1):
            vl = val_loss(qat)
            val_curve.append({"step": step + 1, "loss": vl, "qat": qat})
        if (step + 1) % 50 == 0 or step == steps - 1:
            el = time.time() - t0
            msg = (f"[train] {args.scheme} step {step + 1}/{steps} loss {curve[-1]['loss']:.4f} "
                   f"lr {lr:.2e}{' qat' if qat else ''} {el:.0f}s ({el / (step + 1) * 1000:.0f} ms/step)")
            if val_curve and val_curve[-1]["step"] == step + 1:
                msg += f" val {val_curve[-1]['loss']:.4f}"
            print(msg, flush=True)
    train_time = time.time() - t0
    if args.time_only:
        print(f"[train] timing: {steps} steps in {train_time:.1f} s = "
              f"{train_time / steps * 1000:.1f} ms/step (batch {args.batch})", flush=True)
        return

    # -- export -------------------------------------------------------------
    from safetensors.torch import save_file

    out = args.out
    os.makedirs(out, exist_ok=True)
    model.eval()
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg.to_json(), f, indent=2)
        f.write("\n")
    save_file(model.hf_state_dict(snap=True), os.path.join(out, "model.safetensors"),
              metadata={"format": "pt"})
    os.chmod(os.path.join(out, "model.safetensors"), 0o644)
    shutil.copyfile(tok_bin, os.path.join(out, "tokenizer.bin"))

    # -- evaluate the exported checkpoint --------------------------------------
    m = load_model(out)
    t1 = time.time()
    val = perplexity(m, val_tokens, 128)
    val_q8 = perplexity(m, val_tokens, 128, qat=True)
    sample_tokens = text_tokens(tok, sample_path)
    reference = [perplexity(m, sample_tokens, w) for w in (64, 128)]
    eval_time = time.time() - t1
    wall = time.time() - t_start
    print(f"[train] {args.scheme}: validation perplexity {val['perplexity']:.3f} "
          f"(q8 simulation {val_q8['perplexity']:.3f}); sample w64 {reference[0]['perplexity']:.3f} "
          f"w128 {reference[1]['perplexity']:.3f}; train {train_time:.0f} s, wall {wall:.0f} s", flush=True)

    info = {
        "scheme": args.scheme,
        "seed": args.seed,
        "steps": steps,
        "batch": args.batch,
        "context": T,
        "tokens_seen": steps * args.batch * T,
        "optimizer": {"name": "AdamW", "betas": [0.9, 0.95], "eps": 1e-8,
                      "weight_decay": args.weight_decay,
                      "weight_decay_on": "2-D weight matrices and embedding tables",
                      "grad_clip": 1.0},
        "lr_schedule": {"kind": "linear warmup + cosine", "peak": args.lr, "final": args.min_lr,
                        "warmup_steps": args.warmup},
        "init": {"std": 0.02, "embed_tokens_std": embed_std,
                 "residual_out_std": 0.02 / math.sqrt(2 * cfg.n_layers)},
        "qat": {"start_step": qat_start, "format": "Q8_0", "group_size": cfg.q8_group_size,
                "consistency": consistency,
                "weights": "embedding, q/k/v/o, gate/up/down",
                "activations": "inputs of every matmul and of the classifier"},
        "threads": args.threads,
        "torch_version": torch.__version__,
        "train_seconds": round(train_time, 1),
        "eval_seconds": round(eval_time, 1),
        "wall_seconds": round(wall, 1),
        "parameters": n_params,
        "loss_curve": curve,
        "val_curve": val_curve,
        "final_train_loss": curve[-1]["loss"],
        "validation_works": split["validation_works"],
        "validation": val,
        "validation_perplexity_128": val["perplexity"],
        "validation_q8_simulated": val_q8,
        "reference": reference,
    }
    with open(os.path.join(out, "train.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3), dpi=80)
    ax.plot([c["step"] for c in curve], [c["loss"] for c in curve], lw=1, label="train")
    ax.plot([c["step"] for c in val_curve], [c["loss"] for c in val_curve], "o", ms=3,
            label="validation (probe)")
    ax.axvline(qat_start, color="grey", ls=":", lw=1, label="QAT start")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_title(f"microformer {args.scheme}: val ppl@128 {val['perplexity']:.2f}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "loss.png"))
    print(f"[train] wrote {out}", flush=True)


if __name__ == "__main__":
    main()
