"""Figures and the parameter table for mistral/architecture.py's mechanisms (`python -m mistral.architecture
--command figures` and `--command table`): one function per figure, each drawn from the masks the attention uses."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from mistral.attention_masks import causal_mask, receptive_field, sliding_window_mask

ROOT = Path(__file__).resolve().parents[1]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(*names):
    from matplotlib.colors import ListedColormap

    return ListedColormap(list(names))


def grid(ax, matrix, title, cmap, *, xlabel="key position j", ylabel="query position i") -> None:
    ax.imshow(matrix, cmap=cmap, vmin=0, vmax=cmap.N - 1)
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xticks(range(0, matrix.shape[1], 2))
    ax.set_yticks(range(0, matrix.shape[0], 2))


def save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def sliding_window_figure(path: Path, n: int, window: int) -> Path:
    """Causal mask, sliding-window mask, and how far back information reaches after 1, 2, 3 layers."""
    two = _colors("#f2f2f2", "#3b6fb6")
    fig, axes = _plt().subplots(1, 3, figsize=(15, 5.8))
    grid(axes[0], causal_mask(n).int(), "Causal mask: i attends to 0..i", two)
    grid(axes[1], sliding_window_mask(n, window).int(), f"Sliding window W={window}: i attends to i-W+1..i", two)
    layers = [1, 2, 3]
    reach = sum(receptive_field(n, window, k).int() for k in layers)
    shown = torch.where(reach > 0, len(layers) + 1 - reach, torch.zeros_like(reach))
    grid(axes[2], shown, "Receptive field: reached after 1, 2, 3 layers\n(dark to light: k x (W-1) tokens back)",
         _colors("#f2f2f2", "#3b6fb6", "#7fa6d9", "#c4d6ee"))
    fig.suptitle("Sliding-window attention (Mistral 7B v0.1: W = 4096, 32 layers)", fontsize=13)
    fig.tight_layout(rect=(0, 0.02, 1, 0.96))
    return save(fig, path)


def rolling_buffer_figure(path: Path, steps: int = 12, w: int = 4) -> Path:
    """Which position each cache slot holds over time: position i overwrites slot i mod W."""
    slots = torch.full((w, steps), -1)
    for t in range(steps):
        if t:
            slots[:, t] = slots[:, t - 1]
        slots[t % w, t] = t
    fig, ax = _plt().subplots(figsize=(11, 3.8))
    ax.imshow((slots >= 0).int() + (slots == torch.arange(steps)[None, :]).int(),
              cmap=_colors("#f2f2f2", "#c4d6ee", "#e07b39"), vmin=0, vmax=2, aspect="auto")
    for s in range(w):
        for t in range(steps):
            if slots[s, t] >= 0:
                ax.text(t, s, str(slots[s, t].item()), ha="center", va="center", fontsize=10)
    ax.set_xticks(range(steps))
    ax.set_yticks(range(w))
    ax.set_xlabel("time: position i being decoded")
    ax.set_ylabel("cache slot (i mod W)")
    ax.set_title(f"Rolling buffer cache, W={w}: position i overwrites slot i mod W (orange: just written); "
                 "memory stays W slots", fontsize=11)
    fig.tight_layout()
    return save(fig, path)


def chunked_prefill_figure(path: Path, n: int, window: int) -> Path:
    """Within the window, what each query of a chunk reads from the cache and what from its own chunk."""
    chunk = window
    kind = torch.zeros(n, n, dtype=torch.long)  # 0 masked, 1 from the cache (earlier chunks), 2 within the chunk
    allowed = sliding_window_mask(n, window)
    for i in range(n):
        for j in range(n):
            if allowed[i, j]:
                kind[i, j] = 2 if j // chunk == i // chunk else 1
    fig, ax = _plt().subplots(figsize=(6.5, 6))
    grid(ax, kind, f"Chunked pre-fill, chunk C = W = {window}\nblue: from the cache (earlier chunks), "
         "orange: causal within the chunk", _colors("#f2f2f2", "#3b6fb6", "#e07b39"))
    for b in range(chunk, n, chunk):
        ax.axhline(b - 0.5, color="black", lw=1)
    fig.tight_layout()
    return save(fig, path)


def figures(out: Path, n: int = 16, window: int = 5) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    return [sliding_window_figure(out / "sliding_window.png", n, window),
            rolling_buffer_figure(out / "rolling_buffer.png"),
            chunked_prefill_figure(out / "chunked_prefill.png", n, window)]


CONFIGS = {"Mistral 7B v0.1": "mistral_7b_v0.1.json", "Mistral 7B Instruct v0.2": "mistral_7b_instruct_v0.2.json"}
TABLE_ROWS = [("dim (hidden_size)", "hidden_size"), ("n_layers", "num_hidden_layers"), ("head_dim", "head_dim"),
              ("hidden_dim (intermediate_size)", "intermediate_size"), ("n_heads", "num_attention_heads"),
              ("n_kv_heads", "num_key_value_heads"), ("window (sliding_window)", "sliding_window"),
              ("max_position_embeddings", "max_position_embeddings"), ("vocab_size", "vocab_size"),
              ("rope_theta", "rope_theta")]


def table() -> str:
    """The parameter table, read from the model configs in configs/ through transformers' MistralConfig."""
    from transformers import MistralConfig

    configs = {name: MistralConfig(**json.loads((ROOT / "configs" / f).read_text())) for name, f in CONFIGS.items()}

    def value(c, key):
        v = (c.rope_parameters or {}).get("rope_theta") if key == "rope_theta" else getattr(c, key)
        return "none (full attention)" if v is None else f"{v:,.0f}" if isinstance(v, float) else f"{v:,}"

    lines = ["| parameter | " + " | ".join(configs) + " |", "| --- |" + " --- |" * len(configs)]
    lines += [f"| {label} | " + " | ".join(value(c, key) for c in configs.values()) + " |" for label, key in TABLE_ROWS]
    return "\n".join(lines)
