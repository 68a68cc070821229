"""Precision, chosen one way for every script from one setting, `precision`: auto, fp32, bf16 or fp16.

`auto`: bf16 where the hardware computes it natively (a GPU with bf16 units; a CPU with AVX512-BF16 or AMX), fp16 on
any other GPU, fp32 on any other CPU, where bf16 is emulated and slower than fp32 itself (results/bench_precision)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from common.config import setting

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
_announced: set[tuple[str, str]] = set()


@dataclass
class PrecisionArguments:
    precision: Literal["auto", "fp32", "bf16", "fp16"] = setting(
        "auto", "compute precision: auto (bf16 where the GPU or CPU computes it natively, else fp16 on a GPU and fp32 "
                "on a CPU), fp32, bf16 or fp16")


def native_bf16() -> bool:
    # torch.cuda.is_bf16_supported() counts emulated bf16 unless told not to (including_emulation=True by default):
    # a V100 or T4 then "supports" bf16 and runs it several times slower than fp16
    return torch.cuda.is_bf16_supported(including_emulation=False)


def native_bf16_cpu() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX tiles), which torch's oneDNN kernels use."""
    # No public torch API answers this; these private checks of torch.cpu (torch 2.x) are what torch itself asks.
    # A build without them counts as a CPU without bf16.
    return any(getattr(torch.cpu, name, lambda: False)()
               for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def resolve_precision(setting: str = "auto") -> tuple[str, str]:
    """The precision a setting resolves to ("bf16", "fp16" or "fp32") and the reason, printed once per process for
    each distinct choice."""
    if setting != "auto":
        choice = setting, "set explicitly"
    elif torch.cuda.is_available():
        choice = ("bf16", "GPU with native bf16") if native_bf16() else ("fp16", "GPU without native bf16")
    elif native_bf16_cpu():
        choice = "bf16", "CPU with native bf16 (AVX512-BF16 or AMX)"
    else:
        choice = "fp32", "CPU without native bf16 (no AVX512-BF16 or AMX), where bf16 is slower than fp32"
    if (setting, choice[0]) not in _announced:
        _announced.add((setting, choice[0]))
        print(f"precision: {setting} -> {choice[0]} ({choice[1]})")
    return choice


def precision_record(setting: str = "auto") -> dict:
    """results.json's record of the precision a run computed in, and why."""
    chosen, reason = resolve_precision(setting)
    return {"precision": chosen, "precision_reason": reason}


def accelerate_mixed_precision(chosen: str) -> str:
    """Accelerate's name for a chosen precision (it calls fp32 "no")."""
    return "no" if chosen == "fp32" else chosen


def trainer_fields(chosen: str) -> dict:
    """TrainingArguments' fields for a chosen precision ("bf16", "fp16" or "fp32")."""
    fields = {"bf16": chosen == "bf16", "fp16": chosen == "fp16"}
    if chosen == "bf16" and not torch.cuda.is_available():
        fields["use_cpu"] = True  # TrainingArguments refuses bf16 without a GPU unless told the run is on CPU
    return fields


def compute_dtype(setting: str = "auto") -> torch.dtype:
    """The torch dtype of a precision setting (auto, fp32, bf16 or fp16)."""
    return DTYPES[resolve_precision(setting)[0]]
