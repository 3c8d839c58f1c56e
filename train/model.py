"""The microformer reference model (PyTorch, float32).

One Llama-style decoder for all six positional-encoding schemes; only the
position hook differs:

  nope        no position information
  sinusoidal  x0 = emb[tok] + PE[pos], interleaved Vaswani layout
  learned     x0 = emb[tok] + wpe[pos], 128 learned positions
  rope        rotary q/k, Hugging Face Llama half-split layout
  alibi       score bias -m_h * (i - j), BLOOM slopes
  t5          score bias W[bucket(j - i)][h], one table shared by all layers

Quantisation-aware training: with `qat=True` the forward fake-quantises the
weight matrices and the matmul input activations exactly as the runtime's q8
path (llama2.c runq.c Q8_0, groups of 32), with a straight-through estimator.
With `qat="weights"` only the weights are fake-quantised (the f32 image's arithmetic on the
snapped weights).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SCHEMES = ("nope", "sinusoidal", "learned", "rope", "alibi", "t5")


@dataclass
class Config:
    position: str = "nope"
    vocab_size: int = 512
    dim: int = 64
    n_layers: int = 5
    n_heads: int = 8
    n_kv_heads: int = 4
    head_dim: int = 8
    hidden_dim: int = 192
    norm_eps: float = 1e-5
    training_length: int = 128
    max_position_embeddings: int = 1024
    learned_positions: int = 128
    rope_theta: float = 10000.0
    sinusoidal_base: float = 10000.0
    t5_num_buckets: int = 32
    t5_max_distance: int = 128
    q8_group_size: int = 32

    def to_json(self) -> dict:
        d = {
            "model_type": "microformer",
            "position": self.position,
            "hidden_size": self.dim,
            "intermediate_size": self.hidden_dim,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.n_kv_heads,
            "head_dim": self.head_dim,
            "vocab_size": self.vocab_size,
            "rms_norm_eps": self.norm_eps,
            "tie_word_embeddings": True,
            "hidden_act": "silu",
            "bos_token_id": 1,
            "eos_token_id": 2,
            "training_length": self.training_length,
            "max_position_embeddings": (self.learned_positions if self.position == "learned"
                                        else self.max_position_embeddings),
            "q8_group_size": self.q8_group_size,
        }
        if self.position == "rope":
            d["rope_theta"] = self.rope_theta
            d["rope_layout"] = "half"
        elif self.position == "alibi":
            d["alibi_slopes"] = "bloom"
        elif self.position == "t5":
            d["relative_attention_num_buckets"] = self.t5_num_buckets
            d["relative_attention_max_distance"] = self.t5_max_distance
        elif self.position == "sinusoidal":
            d["sinusoidal_layout"] = "interleaved"
            d["sinusoidal_base"] = self.sinusoidal_base
        return d

    @staticmethod
    def from_json(d: dict) -> "Config":
        assert d["model_type"] == "microformer"
        c = Config(
            position=d["position"],
            vocab_size=d["vocab_size"],
            dim=d["hidden_size"],
            n_layers=d["num_hidden_layers"],
            n_heads=d["num_attention_heads"],
            n_kv_heads=d["num_key_value_heads"],
            head_dim=d["head_dim"],
            hidden_dim=d["intermediate_size"],
            norm_eps=d["rms_norm_eps"],
            training_length=d["training_length"],
            q8_group_size=d["q8_group_size"],
        )
        if c.position == "learned":
            c.learned_positions = d["max_position_embeddings"]
        else:
            c.max_position_embeddings = d["max_position_embeddings"]
        c.rope_theta = d.get("rope_theta", c.rope_theta)
        c.sinusoidal_base = d.get("sinusoidal_base", c.sinusoidal_base)
        c.t5_num_buckets = d.get("relative_attention_num_buckets", c.t5_num_buckets)
        c.t5_max_distance = d.get("relative_attention_max_distance", c.t5_max_distance)
        return c


# ---------------------------------------------------------------------------
# Q8_0 fake quantisation (llama2.c runq.c quantize(), groups along the last dim)

def q8_snap(x: torch.Tensor, gs: int = 32) -> torch.Tensor:
    """q * scale for groups of `gs` consecutive values along the last dim.

    scale = max|x_group| / 127; q = round(x / scale), half away from zero
    (C `round`), all in float32 as runq.c computes it.  A zero group stays 0.
    """
    shape = x.shape
    assert shape[-1] % gs == 0, shape
    g = x.reshape(*shape[:-1], shape[-1] // gs, gs)
    wmax = g.abs().amax(dim=-1, keepdim=True)
    scale = wmax / 127.0
    safe = torch.where(scale == 0, torch.ones_like(scale), scale)
    v = g / safe
    t = torch.trunc(v)
    half = (v - t).abs() == 0.5
    q = torch.where(half, t + torch.sign(v), torch.round(v))
    q = torch.where(scale == 0, torch.zeros_like(q), q)
    return (q * scale).reshape(shape)


def fake_q8(x: torch.Tensor, gs: int = 32) -> torch.Tensor:
    """Straight-through estimator: forward q8_snap(x), backward identity."""
    return x + (q8_snap(x.detach(), gs) - x).detach()


# ---------------------------------------------------------------------------
# Position tables

def sinusoidal_table(n_pos: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """Interleaved Vaswani table, computed in float64 and rounded to f32."""
    p = np.arange(n_pos, dtype=np.float64)[:, None]
    j = np.arange(dim)
    w = base ** (-2.0 * (j // 2) / dim)
    ang = p * w[None, :]
    pe = np.where(j % 2 == 0, np.sin(ang), np.cos(ang))
    return torch.from_numpy(pe.astype(np.float32))


def rope_cos_sin(n_pos: int, head_dim: int, theta: float = 10000.0):
    """Hugging Face Llama rotary tables (float32, half-split layout)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    pos = torch.arange(n_pos, dtype=torch.int64).float()
    freqs = pos[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """BLOOM slopes; for a power-of-two head count m_h = 2^(-8(h+1)/n)."""
    assert n_heads & (n_heads - 1) == 0
    return torch.tensor([2.0 ** (-8.0 * (h + 1) / n_heads) for h in range(n_heads)],
                        dtype=torch.float32)


def t5_relative_position_bucket(relative_position: torch.Tensor, bidirectional: bool = False,
                                num_buckets: int = 32, max_distance: int = 128) -> torch.Tensor:
    """Hugging Face T5Attention._relative_position_bucket, verbatim."""
    relative_buckets = 0
    if bidirectional:
        num_buckets //= 2
        relative_buckets += (relative_position > 0).to(torch.long) * num_buckets
        relative_position = torch.abs(relative_position)
    else:
        relative_position = -torch.min(relative_position, torch.zeros_like(relative_position))
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    relative_position_if_large = max_exact + (
        torch.log(relative_position.float() / max_exact)
        / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    ).to(torch.long)
    relative_position_if_large = torch.min(
        relative_position_if_large, torch.full_like(relative_position_if_large, num_buckets - 1)
    )
    relative_buckets += torch.where(is_small, relative_position, relative_position_if_large)
    return relative_buckets


def act_q8(x: torch.Tensor, gs: int, qat: bool | str) -> torch.Tensor:
    """A matmul input under the forward's `qat` mode: fake-quantised for True,
    unchanged for "weights" (the f32 image's arithmetic on snapped weights)."""
    return x if qat == "weights" else fake_q8(x, gs)


# ---------------------------------------------------------------------------
# Model

class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Block(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.c = c
        self.input_layernorm = RMSNorm(c.dim, c.norm_eps)
        self.q_proj = nn.Linear(c.dim, c.n_heads * c.head_dim, bias=False)
        self.k_proj = nn.Linear(c.dim, c.n_kv_heads * c.head_dim, bias=False)
        self.v_proj = nn.Linear(c.dim, c.n_kv_heads * c.head_dim, bias=False)
        self.o_proj = nn.Linear(c.n_heads * c.head_dim, c.dim, bias=False)
        self.post_attention_layernorm = RMSNorm(c.dim, c.norm_eps)
        self.gate_proj = nn.Linear(c.dim, c.hidden_dim, bias=False)
        self.up_proj = nn.Linear(c.dim, c.hidden_dim, bias=False)
        self.down_proj = nn.Linear(c.hidden_dim, c.dim, bias=False)

    def lin(self, layer: nn.Linear, x: torch.Tensor, qat: bool | str) -> torch.Tensor:
        if qat:
            gs = self.c.q8_group_size
            return F.linear(act_q8(x, gs, qat), fake_q8(layer.weight, gs))
        return F.linear(x, layer.weight)

    def forward(self, x, bias, rope, qat: bool | str):
        c = self.c
        B, T, _ = x.shape
        n = self.input_layernorm(x)
        q = self.lin(self.q_proj, n, qat).view(B, T, c.n_heads, c.head_dim).transpose(1, 2)
        k = self.lin(self.k_proj, n, qat).view(B, T, c.n_kv_heads, c.head_dim).transpose(1, 2)
        v = self.lin(self.v_proj, n, qat).view(B, T, c.n_kv_heads, c.head_dim).transpose(1, 2)
        if rope is not None:
            cos, sin = rope
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
        rep = c.n_heads // c.n_kv_heads  # query head h reads KV head h // rep
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(c.head_dim) + bias
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, c.n_heads * c.head_dim)
        h = x + self.lin(self.o_proj, y, qat)
        n = self.post_attention_layernorm(h)
        g = F.silu(self.lin(self.gate_proj, n, qat)) * self.lin(self.up_proj, n, qat)
        return h + self.lin(self.down_proj, g, qat)


class Microformer(nn.Module):
    def __init__(self, c: Config, embed_std: float | None = None):
        super().__init__()
        assert c.position in SCHEMES, c.position
        self.c = c
        self.embed_tokens = nn.Embedding(c.vocab_size, c.dim)
        self.layers = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.norm = RMSNorm(c.dim, c.norm_eps)
        n_pos = c.max_position_embeddings
        if c.position == "learned":
            self.embed_positions = nn.Embedding(c.learned_positions, c.dim)
        elif c.position == "t5":
            self.relative_attention_bias = nn.Embedding(c.t5_num_buckets, c.n_heads)
        elif c.position == "sinusoidal":
            self.register_buffer("pe", sinusoidal_table(n_pos, c.dim, c.sinusoidal_base),
                                 persistent=False)
        elif c.position == "rope":
            cos, sin = rope_cos_sin(n_pos, c.head_dim, c.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        elif c.position == "alibi":
            self.register_buffer("slopes", alibi_slopes(c.n_heads), persistent=False)
        self._init_weights(embed_std=embed_std)

    def _init_weights(self, std: float = 0.02, embed_std: float | None = None) -> None:
        """Normal init, std 0.02; residual output projections 0.02/sqrt(2L)."""
        for name, p in self.named_parameters():
            if p.dim() == 2:
                s = std / math.sqrt(2 * self.c.n_layers) if name.endswith(("o_proj.weight", "down_proj.weight")) else std
                if name == "embed_tokens.weight" and embed_std is not None:
                    s = embed_std
                nn.init.normal_(p, mean=0.0, std=s)

    def max_positions(self) -> int:
        return self.c.learned_positions if self.c.position == "learned" else self.c.max_position_embeddings

    def attn_bias(self, T: int, device) -> torch.Tensor:
        """[1 or H, T, T] additive score bias incl. the causal mask."""
        c = self.c
        i = torch.arange(T, device=device)[:, None]
        j = torch.arange(T, device=device)[None, :]
        mask = torch.zeros(T, T, device=device).masked_fill(j > i, float("-inf"))
        if c.position == "alibi":
            dist = (i - j).float()
            return -self.slopes[:, None, None] * dist[None] + mask[None]
        if c.position == "t5":
            buckets = t5_relative_position_bucket(j - i, bidirectional=False,
                                                  num_buckets=c.t5_num_buckets,
                                                  max_distance=c.t5_max_distance)
            values = self.relative_attention_bias(buckets)  # [T, T, H]
            return values.permute(2, 0, 1) + mask[None]
        return mask[None]

    def forward(self, idx: torch.Tensor, qat: bool | str = False) -> torch.Tensor:
        c = self.c
        B, T = idx.shape
        if T > self.max_positions():
            raise ValueError(f"sequence of {T} exceeds {self.max_positions()} positions ({c.position})")
        emb = fake_q8(self.embed_tokens.weight, c.q8_group_size) if qat else self.embed_tokens.weight
        x = F.embedding(idx, emb)
        if c.position == "learned":
            x = x + self.embed_positions.weight[:T]
        elif c.position == "sinusoidal":
            x = x + self.pe[:T]
        rope = None
        if c.position == "rope":
            rope = (self.rope_cos[:T], self.rope_sin[:T])
        bias = self.attn_bias(T, idx.device)
        for layer in self.layers:
            x = layer(x, bias, rope, qat)
        x = self.norm(x)
        if qat:
            x = act_q8(x, c.q8_group_size, qat)
        return F.linear(x, emb)

    # -- checkpoint names (Hugging Face Llama) -------------------------------
    QUANTIZED = ("embed_tokens.weight", "q_proj.weight", "k_proj.weight", "v_proj.weight",
                 "o_proj.weight", "gate_proj.weight", "up_proj.weight", "down_proj.weight")

    def hf_state_dict(self, snap: bool = True) -> dict[str, torch.Tensor]:
        """float32 tensors under Hugging Face Llama names; quantisable
        matrices snapped to their Q8_0 grid (q * scale) when `snap`."""
        gs = self.c.q8_group_size
        out: dict[str, torch.Tensor] = {}

        def put(name: str, t: torch.Tensor, quant: bool):
            t = t.detach().to(torch.float32)
            if quant and snap:
                t = q8_snap(t, gs)
            out[name] = t.contiguous().clone()

        put("model.embed_tokens.weight", self.embed_tokens.weight, True)
        for i, L in enumerate(self.layers):
            p = f"model.layers.{i}."
            put(p + "input_layernorm.weight", L.input_layernorm.weight, False)
            for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
                put(p + f"self_attn.{n}.weight", getattr(L, n).weight, True)
            put(p + "post_attention_layernorm.weight", L.post_attention_layernorm.weight, False)
            for n in ("gate_proj", "up_proj", "down_proj"):
                put(p + f"mlp.{n}.weight", getattr(L, n).weight, True)
        put("model.norm.weight", self.norm.weight, False)
        if self.c.position == "learned":
            put("model.embed_positions.weight", self.embed_positions.weight, False)
        if self.c.position == "t5":
            put("model.relative_attention_bias.weight", self.relative_attention_bias.weight, False)
        return out

    def load_hf_state_dict(self, sd: dict[str, torch.Tensor]) -> None:
        own = {}
        own["embed_tokens.weight"] = sd["model.embed_tokens.weight"]
        for i in range(self.c.n_layers):
            p = f"model.layers.{i}."
            own[f"layers.{i}.input_layernorm.weight"] = sd[p + "input_layernorm.weight"]
            own[f"layers.{i}.post_attention_layernorm.weight"] = sd[p + "post_attention_layernorm.weight"]
            for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
                own[f"layers.{i}.{n}.weight"] = sd[p + f"self_attn.{n}.weight"]
            for n in ("gate_proj", "up_proj", "down_proj"):
                own[f"layers.{i}.{n}.weight"] = sd[p + f"mlp.{n}.weight"]
        own["norm.weight"] = sd["model.norm.weight"]
        if self.c.position == "learned":
            own["embed_positions.weight"] = sd["model.embed_positions.weight"]
        if self.c.position == "t5":
            own["relative_attention_bias.weight"] = sd["model.relative_attention_bias.weight"]
        extra = set(sd) - {k for k in sd if k.startswith("model.")}
        assert not extra, extra
        self.load_state_dict(own, strict=True)


def load_model(model_dir: str) -> Microformer:
    import json
    import os

    from safetensors.torch import load_file

    with open(os.path.join(model_dir, "config.json")) as f:
        c = Config.from_json(json.load(f))
    m = Microformer(c)
    m.load_hf_state_dict(load_file(os.path.join(model_dir, "model.safetensors")))
    m.eval()
    return m
