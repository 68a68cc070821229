"""What else sets `make small`'s speed on a CPU, beside precision (tools/bench_precision.py): each setting's variants
timed in turn in one process, on the small models of `make models` and real reviews, with one `N.NNx` ratio per
variant.

    make bench-cpu DATA_DIR=../shared/data/imdb
    python -m tools.bench_cpu --data_dir ../shared/data/imdb --steps 3 --output bench_cpu.json

- threads: a loop training step (8 reviews of 256 tokens, `make small`'s batch) with torch's default thread count
  against fewer threads;
- evaluation batch sizes: distilbert.train_loop's evaluation of 128 reviews (length-sorted batches) at each batch
  size, against the configs' 64; the SFT script's evaluation loss (SmolLM2-135M in 4-bit NF4 with LoRA, 8 reviews
  of up to 256 tokens padded to the batch's longest, as the Trainer's evaluation does) against a batch of 1;
  SmolLM2 label scoring of 16 reviews (mistral.evaluate; the SFT script's per_device_eval_batch_size) against its 8;
- torch.compile: the loop step compiled (inductor) against eager, once compiled; the compilation's own seconds are
  reported beside it (every new batch shape costs another);
- the tokenisation cache: distilbert.data.tokenize_splits on `make small`'s three splits (2,000 / 400 / 2,000
  reviews) into an empty cache folder, against reading them back from a filled one.
Everything runs in fp32. A ratio is the reference's median seconds over the variant's: above 1, the variant is
faster.
"""
from __future__ import annotations

import itertools
import os
import tempfile
import time

import torch

from common.config import parse, run_main
from common.data import make_splits
from common.io import write_json
from common.environment import run_info
from distilbert.data import limit_splits
from tools.bench_precision import BenchConfig, encoder_step, qlora_model, side_by_side

EVAL_BATCH_SIZES = (16, 32, 64, 128)
SFT_EVAL_BATCH_SIZES = (1, 4, 8)
SCORING_BATCH_SIZES = (4, 8, 16)
SMALL_SPLITS = {"train": 2000, "validation": 400, "test": 2000}  # the Makefile's SMALL_ENCODER sizes


def loop_step(encoder: str, reviews: list[str], compiled: bool = False):
    return encoder_step(encoder, reviews[:8], "fp32", compiled)


def with_threads(n: int, step):
    def run():
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            step()
        finally:
            torch.set_num_threads(before)
    return run


def threads(cfg: BenchConfig, splits: dict) -> dict:
    default = torch.get_num_threads()
    counts = sorted({default, max(1, default // 2), 1}, reverse=True)
    step = loop_step(cfg.encoder, splits["train"]["text"].tolist())
    seconds = side_by_side({f"{n} threads": with_threads(n, step) for n in counts}, cfg.steps)
    return {"reference": f"{default} threads", "seconds": seconds}


def eval_batch_size(cfg: BenchConfig, splits: dict) -> dict:
    from accelerate import Accelerator

    from distilbert.data import padding_collator, tokenize
    from distilbert.model import load_model_and_tokenizer
    from distilbert.train_loop import evaluate_split

    model, tokenizer = load_model_and_tokenizer(cfg.encoder)
    dataset = tokenize(splits["validation"].iloc[:128], tokenizer, 256)
    collate, accelerator = padding_collator(tokenizer), Accelerator(cpu=True, mixed_precision="no")
    seconds = side_by_side({f"batch {b}": lambda b=b: evaluate_split(model, dataset, collate, accelerator,
                                                                     batch_size=b, desc="eval")
                            for b in EVAL_BATCH_SIZES}, cfg.steps)
    return {"reference": "batch 64", "seconds": seconds}


def sft_eval_batch_size(cfg: BenchConfig, splits: dict) -> dict:
    model, tokenizer = qlora_model(cfg.causal_lm, "fp32")
    model.eval()
    reviews = splits["validation"]["text"].tolist()[:8]

    def eval_loss(batch_size: int):
        with torch.no_grad():
            for i in range(0, len(reviews), batch_size):
                batch = tokenizer(reviews[i:i + batch_size], truncation=True, max_length=256, padding="longest",
                                  return_tensors="pt")
                model(**batch, labels=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100))
    seconds = side_by_side({f"batch {b}": lambda b=b: eval_loss(b) for b in SFT_EVAL_BATCH_SIZES}, cfg.steps)
    return {"reference": "batch 1", "seconds": seconds}


def scoring_batch_size(cfg: BenchConfig, splits: dict) -> dict:
    from mistral.evaluate import score_labels
    from mistral.prompts import PromptArguments, make_format

    model, tokenizer = qlora_model(cfg.causal_lm, "fp32")
    model.eval()
    fmt, reviews = make_format(tokenizer, PromptArguments(), 256), splits["test"]["text"].tolist()[:16]
    seconds = side_by_side({f"batch {b}": lambda b=b: score_labels(model, fmt, reviews, batch_size=b, desc="score")
                            for b in SCORING_BATCH_SIZES}, cfg.steps)
    return {"reference": "batch 8", "seconds": seconds}


def compile_step(cfg: BenchConfig, splits: dict) -> dict:
    reviews = splits["train"]["text"].tolist()
    eager, compiled = loop_step(cfg.encoder, reviews), loop_step(cfg.encoder, reviews, compiled=True)
    start = time.perf_counter()
    compiled()  # the compilation itself, paid once per run and per new batch shape
    compile_s = time.perf_counter() - start
    seconds = side_by_side({"eager": eager, "torch.compile": compiled}, cfg.steps)
    return {"reference": "eager", "seconds": seconds, "first_compiled_step_s": compile_s}


def tokenisation_cache(cfg: BenchConfig, splits: dict) -> dict:
    from distilbert.data import tokenize_splits
    from distilbert.model import load_model_and_tokenizer

    _, tokenizer = load_model_and_tokenizer(cfg.encoder)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = itertools.count()
        seconds = side_by_side({
            "empty cache": lambda: tokenize_splits(splits, tokenizer, 256, os.path.join(tmp, str(next(fresh)))),
            "filled cache": lambda: tokenize_splits(splits, tokenizer, 256, os.path.join(tmp, "filled"))},
            cfg.steps)
    return {"reference": "empty cache", "seconds": seconds}


MEASUREMENTS = {"threads (MiniLM loop step, 8 x 256 tokens)": threads,
                "evaluation batch size (MiniLM, 128 reviews)": eval_batch_size,
                "SFT evaluation-loss batch size (SmolLM2 QLoRA, 8 reviews)": sft_eval_batch_size,
                "label-scoring batch size (SmolLM2 QLoRA, 16 reviews)": scoring_batch_size,
                "torch.compile (MiniLM loop step, 8 x 256 tokens)": compile_step,
                "tokenisation cache (make small's 4,400 reviews)": tokenisation_cache}


SETTINGS = (BenchConfig,)


def main(argv=None) -> dict:
    (cfg,) = parse(SETTINGS, argv)
    splits = limit_splits(make_splits("random_70_10_20", 42, data_dir=cfg.data_dir)[0], SMALL_SPLITS)
    print(f"cpu: {os.cpu_count()} cores, torch uses {torch.get_num_threads()} threads")
    report = {"script": "tools.bench_cpu", "cores": os.cpu_count(), "threads": torch.get_num_threads(),
              "steps": cfg.steps, "measurements": {}}
    for name, measure in MEASUREMENTS.items():
        found = measure(cfg, splits)
        reference = found["seconds"][found["reference"]]
        found["speedup"] = {v: reference / s for v, s in found["seconds"].items() if v != found["reference"]}
        report["measurements"][name] = found
        for variant, ratio in found["speedup"].items():
            print(f"{name}: {found['reference']} {reference:.2f} s, {variant} {found['seconds'][variant]:.2f} s "
                  f"-> {ratio:.2f}x")
    if cfg.output:
        write_json(cfg.output, {**report, "run_info": run_info()})
    return report


if __name__ == "__main__":
    run_main(main)
