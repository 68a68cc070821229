"""Mixed precision, chosen one way for every script: bf16 on a GPU that computes it natively, else fp16 on a GPU;
fp32 on CPU (bf16 matmuls there are slow and inexact)."""
from __future__ import annotations

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "no": torch.float32, "fp32": torch.float32}


def native_bf16() -> bool:
    # torch.cuda.is_bf16_supported() counts emulated bf16 unless told not to (including_emulation=True by default):
    # a V100 or T4 then "supports" bf16 and runs it several times slower than fp16
    return torch.cuda.is_bf16_supported(including_emulation=False)


def precision(setting: str = "auto") -> str:
    """`auto` resolved: "bf16", "fp16", or "no" (fp32); any other setting is returned as it is."""
    if setting != "auto":
        return setting
    if not torch.cuda.is_available():
        return "no"
    return "bf16" if native_bf16() else "fp16"


def compute_dtype(setting: str = "auto") -> torch.dtype:
    """The torch dtype of a precision setting (auto, bf16, fp16, fp32 or no)."""
    return DTYPES[precision(setting)]
