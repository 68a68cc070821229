"""Mistral's three attention mechanisms, runnable: sliding-window attention, a rolling buffer KV cache, and chunked
pre-fill; plus a small decoder built on them that runs the weights of a Hugging Face `MistralForCausalLM`.

    python -m mistral.architecture                     # the three modes against HF's forward; exit 1 on a mismatch
    python -m mistral.architecture --command figures   # images/mistral/*.png
    python -m mistral.architecture --command table     # the parameter table of configs/mistral_7b_*.json, markdown

Sliding-window attention. Position i attends to positions i-W+1 .. i (W = window), not to all of 0 .. i. One layer
sees W tokens back, but layer k reads states that already summarise W tokens each, so after k layers information
can travel k x W tokens: 32 layers x 4096 = about 131k tokens for Mistral 7B v0.1.

Rolling buffer cache. Decoding only ever needs the keys and values of the last W positions, so the cache holds W
slots per layer and writes position i into slot i mod W, overwriting position i-W, which has just left the window.
Memory stays constant however long the sequence grows. Keys are stored with their rotary position already applied,
and attention does not care in which order keys sit, so the slots need no reordering.

Pre-fill and chunking. A long prompt is known in advance: its keys and values are computed in chunks of C tokens
(C = W by default). Each chunk attends to the cache (the earlier chunks, within the window) and causally to itself,
then is written into the rolling buffer. Peak attention memory is C x (W + C) instead of L x L.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from common.config import ConfigError, parse, run_main, setting
from mistral.architecture_figures import ROOT, figures, table
from mistral.attention_masks import sliding_window_mask


# ---------------------------------------------------------------- the building blocks

def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    x32 = x.float()
    return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def rotary(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, [len, head_dim], for rotary position embeddings (the rotate-half layout HF uses)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = positions.float()[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Grouped-query attention: q [B, H, Lq, D]; k, v [B, KV, Lk, D], each KV head shared by H / KV query heads;
    allowed [Lq, Lk] booleans."""
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~allowed, float("-inf"))
    return scores.softmax(-1) @ v


class RollingBufferCache:
    """A KV cache of `window` slots per layer: position p lives in slot p % window."""

    def __init__(self, n_layers: int, batch: int, n_kv_heads: int, window: int, head_dim: int, *,
                 dtype=torch.float32):
        self.window = window
        self.k = torch.zeros(n_layers, batch, n_kv_heads, window, head_dim, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.pos = torch.full((n_layers, window), -1, dtype=torch.long)  # position held by each slot; -1: empty

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor) -> None:
        """Store keys/values [B, KV, n, D] of `positions`; of a chunk longer than the window, the last W survive."""
        keep = slice(max(0, len(positions) - self.window), None)
        slots = positions[keep] % self.window
        self.k[layer, :, :, slots] = k[:, :, keep]
        self.v[layer, :, :, slots] = v[:, :, keep]
        self.pos[layer, slots] = positions[keep]

    def read(self, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.k[layer], self.v[layer], self.pos[layer]

    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2 + self.pos.numel() * self.pos.element_size()


# ---------------------------------------------------------------- the decoder

class MiniMistral:
    """Mistral's forward pass in plain PyTorch, on the weights of a Hugging Face MistralForCausalLM."""

    def __init__(self, hf_model):
        c = hf_model.config
        self.window = c.sliding_window
        self.n_heads, self.n_kv, self.head_dim = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.eps = c.rms_norm_eps
        self.theta = (getattr(c, "rope_parameters", None) or {}).get("rope_theta") or getattr(c, "rope_theta", 1e4)
        m = hf_model.model
        self.embed, self.norm, self.lm_head = m.embed_tokens.weight, m.norm.weight, hf_model.lm_head.weight
        self.layers = [{
            "ln1": layer.input_layernorm.weight, "ln2": layer.post_attention_layernorm.weight,
            "q": layer.self_attn.q_proj.weight, "k": layer.self_attn.k_proj.weight,
            "v": layer.self_attn.v_proj.weight, "o": layer.self_attn.o_proj.weight,
            "gate": layer.mlp.gate_proj.weight, "up": layer.mlp.up_proj.weight, "down": layer.mlp.down_proj.weight,
        } for layer in m.layers]

    def new_cache(self, batch: int = 1) -> RollingBufferCache:
        return RollingBufferCache(len(self.layers), batch, self.n_kv, self.window, self.head_dim,
                                  dtype=self.embed.dtype)

    def _qkv(self, w: dict, h: torch.Tensor, positions: torch.Tensor):
        b, n, _ = h.shape
        q = (h @ w["q"].T).view(b, n, self.n_heads, self.head_dim).transpose(1, 2)
        k = (h @ w["k"].T).view(b, n, self.n_kv, self.head_dim).transpose(1, 2)
        v = (h @ w["v"].T).view(b, n, self.n_kv, self.head_dim).transpose(1, 2)
        cos, sin = rotary(positions, self.head_dim, self.theta)
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v

    def _block_end(self, w: dict, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """Attention output projection and residual, then the SwiGLU MLP and its residual."""
        b, _, n, _ = attn.shape
        x = x + attn.transpose(1, 2).reshape(b, n, -1) @ w["o"].T
        h = rms_norm(x, w["ln2"], self.eps)
        return x + (F.silu(h @ w["gate"].T) * (h @ w["up"].T)) @ w["down"].T

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.norm, self.eps) @ self.lm_head.T

    @torch.no_grad()
    def forward(self, ids: torch.Tensor, window: int | None = -1) -> torch.Tensor:
        """Mode 1, the whole sequence at once with the window mask. window None: full causal attention;
        -1: the model's own window."""
        window = self.window if window == -1 else window
        positions = torch.arange(ids.shape[1])
        allowed = sliding_window_mask(ids.shape[1], window)
        x = self.embed[ids]
        for w in self.layers:
            q, k, v = self._qkv(w, rms_norm(x, w["ln1"], self.eps), positions)
            x = self._block_end(w, x, attend(q, k, v, allowed))
        return self._logits(x)

    @torch.no_grad()
    def step(self, ids: torch.Tensor, start: int, cache: RollingBufferCache) -> torch.Tensor:
        """Modes 2 and 3: process tokens at positions start .. start+n-1 against the cache, then write them into
        it. n = 1 is decoding; n = C is one pre-fill chunk."""
        n = ids.shape[1]
        positions = torch.arange(start, start + n)
        x = self.embed[ids]
        for layer, w in enumerate(self.layers):
            q, k, v = self._qkv(w, rms_norm(x, w["ln1"], self.eps), positions)
            ck, cv, cpos = cache.read(layer)
            # cache slots: filled, and inside each query's window; the chunk itself: causal and inside the window
            from_cache = (cpos[None, :] >= 0) & (cpos[None, :] > positions[:, None] - self.window)
            from_chunk = sliding_window_mask(n, self.window)
            allowed = torch.cat([from_cache, from_chunk], dim=1)
            attn = attend(q, torch.cat([ck, k], dim=2), torch.cat([cv, v], dim=2), allowed)
            cache.write(layer, k, v, positions)
            x = self._block_end(w, x, attn)
        return self._logits(x)

    def prefill(self, ids: torch.Tensor, chunk: int | None = None, cache: RollingBufferCache | None = None):
        """Chunked pre-fill: the prompt in chunks of `chunk` tokens (default: the window). Returns (logits, cache)."""
        cache = cache or self.new_cache(ids.shape[0])
        chunk = chunk or self.window
        logits = [self.step(ids[:, s:s + chunk], s, cache) for s in range(0, ids.shape[1], chunk)]
        return torch.cat(logits, dim=1), cache

    def decode(self, ids: torch.Tensor, cache: RollingBufferCache | None = None, start: int = 0):
        """Token-by-token decoding of given tokens with the rolling buffer. Returns (logits, cache, cache sizes)."""
        cache = cache or self.new_cache(ids.shape[0])
        logits, sizes = [], []
        for i in range(ids.shape[1]):
            logits.append(self.step(ids[:, i:i + 1], start + i, cache))
            sizes.append(cache.nbytes())
        return torch.cat(logits, dim=1), cache, sizes


# ---------------------------------------------------------------- verification

def tiny_config(window: int = 8):
    from transformers import MistralConfig

    return MistralConfig(vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, sliding_window=window,
                         max_position_embeddings=256, attn_implementation="eager")


def verify(window: int = 8, length: int = 37, chunks=(8, 5, 3), seed: int = 0, tolerance: float = 1e-4) -> dict:
    """Run every mode and Hugging Face's forward on the same input; returns the largest logit differences."""
    from transformers import MistralForCausalLM

    torch.manual_seed(seed)
    hf = MistralForCausalLM(tiny_config(window)).eval()
    ids = torch.randint(0, hf.config.vocab_size, (2, length))
    with torch.no_grad():
        reference = hf(ids).logits
    mini = MiniMistral(hf)
    diff = lambda logits: (logits - reference).abs().max().item()  # noqa: E731
    report = {"window": window, "length": length, "whole_sequence": diff(mini.forward(ids))}
    decoded, _, sizes = mini.decode(ids)
    report["token_by_token"] = diff(decoded)
    report["cache_bytes_after"] = {f"{n} tokens": sizes[n - 1] for n in (window, 2 * window, 3 * window, length)
                                   if n <= length}
    report["cache_constant"] = len(set(sizes)) == 1
    for c in chunks:
        split = length - 6  # pre-fill most of the sequence in chunks, decode the rest
        logits, cache = mini.prefill(ids[:, :split], chunk=c)
        rest, _, _ = mini.decode(ids[:, split:], cache, start=split)
        report[f"prefill_chunk_{c}_then_decode"] = diff(torch.cat([logits, rest], dim=1))
    report["full_attention_no_window"] = diff(mini.forward(ids, window=None))
    modes = [k for k in report if k in ("whole_sequence", "token_by_token") or k.startswith("prefill_")]
    report["ok"] = (all(report[m] <= tolerance for m in modes) and report["cache_constant"]
                    and report["full_attention_no_window"] > 100 * tolerance)
    return report


@dataclass
class ArchitectureArguments:
    command: str = setting("verify", "verify (the three modes against Hugging Face's forward; exit 1 on a mismatch), "
                                     "figures (images/mistral/*.png) or table (configs/mistral_7b_*.json as markdown)")
    out: str = setting(str(ROOT / "images" / "mistral"), "folder the figures are written to")


SETTINGS = (ArchitectureArguments,)


def main(argv=None) -> int:
    (args,) = parse(SETTINGS, argv)
    if args.command == "table":
        print(table())
        return 0
    if args.command == "figures":
        for path in figures(Path(args.out)):
            print(f"wrote {path}")
        return 0
    if args.command != "verify":
        raise ConfigError(f"command: expected verify, figures or table, got {args.command!r}")
    report = verify()
    print(f"tiny random Mistral: window {report['window']}, {report['length']} tokens, 4 heads / 2 KV heads, 3 layers")
    print("largest |logit difference| against Hugging Face's forward:")
    for key, value in report.items():
        if isinstance(value, float):
            note = "  (must be clearly non-zero: the window matters)" if key == "full_attention_no_window" else ""
            print(f"  {key:<32} {value:.2e}{note}")
    print(f"rolling buffer bytes: {report['cache_bytes_after']} -> constant: {report['cache_constant']}")
    print("OK" if report["ok"] else "FAILED")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    run_main(main)
