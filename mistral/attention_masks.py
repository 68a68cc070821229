"""Which keys each query may attend to: causal, sliding-window, and what a stack of sliding-window layers reaches.
Used by mistral/architecture.py's attention and drawn by mistral/architecture_figures.py."""
from __future__ import annotations

import torch

def causal_mask(n: int) -> torch.Tensor:
    """[n, n] booleans: query i may attend to key j when j <= i."""
    i = torch.arange(n)
    return i[None, :] <= i[:, None]


def sliding_window_mask(n: int, window: int | None) -> torch.Tensor:
    """[n, n] booleans: query i may attend to key j when i - window < j <= i. window None: plain causal."""
    allowed = causal_mask(n)
    i = torch.arange(n)
    return allowed & (i[None, :] > i[:, None] - window) if window else allowed


def receptive_field(n: int, window: int, layers: int) -> torch.Tensor:
    """Which positions can reach which after `layers` layers of sliding-window attention (boolean matrix power)."""
    step = sliding_window_mask(n, window).float()
    reach = step
    for _ in range(layers - 1):
        reach = (reach @ step).clamp(max=1)
    return reach.bool()
