"""fp32 against bf16, side by side in one process, on the small models of `make models`: what `auto` precision
(common/precision.py) gains or would lose on this machine.

    make bench-precision DATA_DIR=../shared/data/imdb
    python -m tools.bench_precision --data_dir ../shared/data/imdb --steps 5 --output bench_precision.json

Three measurements, each timed in fp32 and in bf16 in turn, step by step, so that both see the same state of the
machine:
- a MiniLM-L6 loop step: forward, backward and AdamW on 16 reviews of 256 tokens; bf16 through torch.autocast, which
  is what Accelerate's mixed precision (and so distilbert.train_loop) does;
- a SmolLM2-135M QLoRA step: the base in 4-bit NF4 loaded with the compute dtype (mistral.model.load_base), LoRA on
  the recipe's modules, 4 reviews of 320 tokens, AdamW; bf16 under autocast as the Trainer's bf16 does;
- SmolLM2 label scoring (mistral.evaluate's score mode) of 16 reviews by the 4-bit base in the compute dtype.
The reviews are cut or padded to exactly that many tokens, so every step does the same work. Prints the median
seconds of each and one `N.NNx` ratio per measurement: fp32 time over bf16 time (above 1: bf16 is faster).
"""
from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass

import torch

from common.config import FiguresArguments, parse, run_main, setting
from common.data import ImdbArguments, load_imdb
from common.io import write_json
from common.precision import native_bf16, native_bf16_cpu
from common.environment import run_info

PRECISIONS = ("fp32", "bf16")


@dataclass
class BenchConfig(ImdbArguments, FiguresArguments):
    """Settings of this benchmark and of tools/bench_cpu.py."""
    encoder: str = setting("models/minilm-l6", "the encoder of the loop step")
    causal_lm: str = setting("models/smollm2-135m-instruct", "the causal LM of the QLoRA step and of label scoring")
    steps: int = setting(3, "timed steps of each variant of a measurement (a precision, a setting's value), in turn, "
                            "after one warm-up step each", at_least=1)


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def autocast(dtype: str):
    """bf16 mixed precision as Accelerate and the Trainer apply it; fp32 runs as it is."""
    return torch.autocast(device(), dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()


def timed(step) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def side_by_side(steps: dict, n: int) -> dict:
    """Median seconds of each precision's step, run in turn after one warm-up step each."""
    for step in steps.values():
        step()
    seconds = {name: [] for name in steps}
    for _ in range(n):
        for name, step in steps.items():
            seconds[name].append(timed(step))
    return {name: statistics.median(s) for name, s in seconds.items()}


def fixed_batch(tokenizer, reviews: list[str], length: int) -> dict:
    batch = tokenizer(reviews, truncation=True, max_length=length, padding="max_length", return_tensors="pt")
    return batch.to(device())


def training_step(model, batch: dict, dtype: str, lr: float):
    """One forward, backward and AdamW step on a fixed batch (labels included), in `dtype`."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()

    def step():
        with autocast(dtype):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def encoder_step(encoder: str, reviews: list[str], dtype: str, compiled: bool = False):
    """A loop training step of the encoder with a fresh classification head, on the reviews cut to 256 tokens."""
    from distilbert.model import load_model_and_tokenizer

    torch.manual_seed(0)
    model, tokenizer = load_model_and_tokenizer(encoder)
    model = model.to(device())
    batch = {**fixed_batch(tokenizer, reviews, 256), "labels": torch.arange(len(reviews), device=device()) % 2}
    return training_step(torch.compile(model) if compiled else model, batch, dtype, lr=1e-5)


def qlora_model(causal_lm: str, dtype: str):
    """The causal LM in 4-bit NF4 with the recipe's LoRA adapters (mistral.model's defaults), and its tokenizer."""
    from mistral.model import CausalLMArguments, add_lora, load_base

    lora = CausalLMArguments()
    torch.manual_seed(0)
    model, tokenizer = load_base(causal_lm, load_in_4bit=True, precision=dtype)
    model = add_lora(model, r=lora.lora_r, alpha=lora.lora_alpha, dropout=lora.lora_dropout,
                     target_modules=lora.lora_target_modules,
                     quantized=True, gradient_checkpointing=False)
    return model, tokenizer


def loop_step(cfg: BenchConfig, reviews: list[str]) -> dict:
    return side_by_side({dtype: encoder_step(cfg.encoder, reviews[:16], dtype) for dtype in PRECISIONS}, cfg.steps)


def qlora_step(cfg: BenchConfig, reviews: list[str]) -> dict:
    def make(dtype: str):
        model, tokenizer = qlora_model(cfg.causal_lm, dtype)
        batch = fixed_batch(tokenizer, reviews[:4], 320)
        return training_step(model, {**batch, "labels": batch["input_ids"]}, dtype, lr=2e-4)
    return side_by_side({dtype: make(dtype) for dtype in PRECISIONS}, cfg.steps)


def label_scoring(cfg: BenchConfig, reviews: list[str]) -> dict:
    from mistral.evaluate import score_labels
    from mistral.model import load_base
    from mistral.prompts import PromptArguments, make_format

    def make(dtype: str):
        model, tokenizer = load_base(cfg.causal_lm, load_in_4bit=True, precision=dtype)
        model.eval()
        fmt = make_format(tokenizer, PromptArguments(), 320)
        return lambda: score_labels(model, fmt, reviews[:16], batch_size=8, desc=f"score ({dtype})")
    return side_by_side({dtype: make(dtype) for dtype in PRECISIONS}, cfg.steps)


MEASUREMENTS = {"MiniLM-L6 loop step (16 x 256 tokens)": loop_step,
                "SmolLM2-135M QLoRA step (4 x 320 tokens)": qlora_step,
                "SmolLM2-135M label scoring (16 reviews)": label_scoring}


SETTINGS = (BenchConfig,)


def main(argv=None) -> dict:
    (cfg,) = parse(SETTINGS, argv)
    reviews = load_imdb(cfg.data_dir)["train"]["text"].tolist()[:16]
    native = native_bf16() if torch.cuda.is_available() else native_bf16_cpu()
    print(f"{device()}: native bf16 {'yes' if native else 'no'}; {torch.get_num_threads()} threads")
    report = {"script": "tools.bench_precision", "device": device(), "native_bf16": native,
              "threads": torch.get_num_threads(), "steps": cfg.steps, "measurements": {}}
    for name, measure in MEASUREMENTS.items():
        seconds = measure(cfg, reviews)
        ratio = seconds["fp32"] / seconds["bf16"]
        report["measurements"][name] = {"fp32_s": seconds["fp32"], "bf16_s": seconds["bf16"], "speedup": ratio}
        print(f"{name}: fp32 {seconds['fp32']:.2f} s, bf16 {seconds['bf16']:.2f} s -> {ratio:.2f}x")
    if cfg.output:
        write_json(cfg.output, {**report, "run_info": run_info()})
    return report


if __name__ == "__main__":
    run_main(main)
