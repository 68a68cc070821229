"""Throughput of the training loop: length-grouped dynamic padding against padding every batch to 512.

    make bench-distilbert DATA_DIR=../shared/data/imdb                  # small random DistilBERT, CPU-sized
    python -m distilbert.bench --data_dir ../shared/data/imdb --size full --n_samples 4096   # on a GPU
    make compare-distilbert DATA_DIR=../shared/data/imdb                # the loop against the HF Trainer

Runs distilbert.train_loop three times in this process, on the same reviews and the same model, for one epoch
each: batching=length_grouped (ours), pad_to_max_length (the original run) and random (dynamic padding without
grouping). Prints samples/s of each and the ratios. The model has random weights (the architecture alone sets the
speed); the tokenizer is a BERT-like uncased WordPiece (30,522 entries) trained on the training reviews, unless
--tokenizer names one, so token counts match what distilbert-base-uncased sees.

With --compare true it instead runs train_loop.py and train_trainer.py on the same model, reviews and number of
steps (both with length-grouped batches) and prints their samples/s and test accuracy side by side.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.config import FiguresArguments, parse, run_main, setting
from common.data import ImdbArguments, make_splits
from common.io import write_json
from fixtures.random_models import save_random_distilbert, wordpiece_tokenizer
from distilbert.data import LengthArguments, padding_record

SIZES = {  # DistilBERT-base is dim 768, 6 layers, 12 heads, FFN 3072
    "full": dict(dim=768, n_layers=6, n_heads=12, hidden_dim=3072),
    "small": dict(dim=128, n_layers=4, n_heads=4, hidden_dim=512),
}
MODES = ("length_grouped", "pad_to_max_length", "random")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@dataclass
class BenchConfig(ImdbArguments, LengthArguments, FiguresArguments):
    size: str = setting("small", "random DistilBERT size: small (CPU) or full (DistilBERT-base)")
    tokenizer: str | None = setting(None, "a tokenizer folder or Hub id; default: a WordPiece trained on the reviews")
    n_samples: int = setting(256, "training reviews per run (the same ones for every mode)", at_least=1)
    per_device_train_batch_size: int = setting(16, "reviews per training batch", at_least=1)
    seed: int = setting(42, "seed of the model and the batches", at_least=0)
    compare: bool = setting(False, "the loop against the Trainer instead of the batching comparison")
    n_test: int = setting(256, "test reviews scored in the comparison", at_least=1)

def build_model_folder(cfg: BenchConfig, texts, folder: Path) -> Path:
    """A random DistilBERT of cfg.size with the given tokenizer, else a WordPiece learnt from the texts; at least
    BERT's 30,522 entries: the embedding and its optimizer state take time too, whatever the tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer) if cfg.tokenizer else wordpiece_tokenizer(texts)
    return save_random_distilbert(folder, tokenizer, cfg.seed, min_vocab=30522, **SIZES[cfg.size])


def run_mode(cfg: BenchConfig, model: Path, tmp: Path, batching: str, max_steps: int | None = None) -> dict:
    from distilbert.train_loop import main as train_loop

    argv = ["--model_name_or_path", str(model), "--output_dir", str(tmp / batching), "--report_to", "none",
            "--batching", batching, "--max_train_samples", str(cfg.n_samples), "--max_eval_samples", "16",
            "--max_test_samples", "16", "--num_train_epochs", "1", "--save_steps", "1000000",
            "--logging_steps", "1000000", "--seed", str(cfg.seed), "--split_seed", str(cfg.split_seed),
            "--max_length", str(cfg.max_length),
            "--per_device_train_batch_size", str(cfg.per_device_train_batch_size),
            "--cache_dir", str(tmp / "cache"), "--warmup_steps", "0"]
    if cfg.data_dir:
        argv += ["--data_dir", cfg.data_dir]
    if max_steps:
        argv += ["--max_steps", str(max_steps)]
    return train_loop(argv)


def compare(cfg: BenchConfig, model: Path, tmp: Path) -> dict:
    from distilbert.train_loop import main as train_loop
    from distilbert.train_trainer import main as train_trainer

    steps = cfg.n_samples // cfg.per_device_train_batch_size
    shared = ["--model_name_or_path", str(model), "--report_to", "none", "--max_train_samples", str(cfg.n_samples),
              "--max_eval_samples", "64", "--max_test_samples", str(cfg.n_test), "--max_steps", str(steps),
              "--seed", str(cfg.seed), "--split_seed", str(cfg.split_seed), "--max_length", str(cfg.max_length),
              "--cache_dir", str(tmp / "cache"),
              "--per_device_train_batch_size", str(cfg.per_device_train_batch_size), "--warmup_steps", "0",
              *(["--data_dir", cfg.data_dir] if cfg.data_dir else [])]
    runs = {
        "loop": train_loop(["--config", str(CONFIGS / "distilbert_loop.yaml"), *shared, "--output_dir",
                            str(tmp / "loop"), "--save_steps", "1000000"]),
        "trainer": train_trainer(["--config", str(CONFIGS / "distilbert_trainer.yaml"), *shared, "--output_dir",
                                  str(tmp / "trainer"), "--save_strategy", "no", "--eval_strategy", "no",
                                  "--load_best_model_at_end", "false"]),
    }
    report = {name: {"samples_per_second": r["train_step_samples_per_second"], "test_accuracy": r["test"]["accuracy"],
                     "global_step": r["global_step"]} for name, r in runs.items()}
    report["loop_vs_trainer"] = report["loop"]["samples_per_second"] / report["trainer"]["samples_per_second"]
    print(f"\n{steps} steps of batch {cfg.per_device_train_batch_size} on the same {cfg.n_samples} real reviews, "
          f"DistilBERT size '{cfg.size}', length-grouped batches in both")
    for name in ("loop", "trainer"):
        print(f"  {name:<8} {report[name]['samples_per_second']:8.1f} samples/s   test accuracy "
              f"{report[name]['test_accuracy']:.4f} on {cfg.n_test} reviews")
    print(f"loop / trainer = {report['loop_vs_trainer']:.2f}x")
    return report


SETTINGS = (BenchConfig,)


def main(argv=None) -> dict:
    (cfg,) = parse(SETTINGS, argv)
    splits, _ = make_splits("random_70_10_20", cfg.split_seed, cfg.data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        texts = splits["train"]["text"].head(max(cfg.n_samples, 5000)).tolist()
        model = build_model_folder(cfg, texts, tmp / "model")
        if cfg.compare:
            report = compare(cfg, model, tmp)
            if cfg.output:
                write_json(cfg.output, report)
            return report
        run_mode(cfg, model, tmp / "warmup", "random", max_steps=2)  # first-call costs out of the measurement
        rates = {mode: run_mode(cfg, model, tmp, mode)["train_step_samples_per_second"] for mode in MODES}
        from datasets import load_from_disk

        cache = next((tmp / "cache").glob("train-*"))
        lengths = np.asarray(load_from_disk(str(cache))["length"])
    full_train = len(splits["train"])
    padding = padding_record(lengths, cfg.per_device_train_batch_size, cfg.seed, cfg.max_length)
    padded = padding["padded_tokens_per_review"]
    report = {
        "size": cfg.size, "n_samples": cfg.n_samples, "batch_size": cfg.per_device_train_batch_size, **padding,
        "samples_per_second": rates,
        "speedup_vs_pad_to_max_length": rates["length_grouped"] / rates["pad_to_max_length"],
        "speedup_random_vs_pad_to_max_length": rates["random"] / rates["pad_to_max_length"],
        "projected_3_epoch_hours": {m: 3 * full_train / r / 3600 for m, r in rates.items()},
    }
    print(f"\n{cfg.n_samples} real training reviews, mean {report['mean_tokens']:.0f} tokens after truncation to "
          f"{cfg.max_length} ({100 * report['share_truncated']:.0f}% truncated), DistilBERT size '{cfg.size}', "
          f"batch {cfg.per_device_train_batch_size}")
    for mode in MODES:
        print(f"  {mode:<18} {rates[mode]:8.1f} samples/s   {padded[mode]:5.0f} tokens/review with padding   "
              f"3 epochs of {full_train:,}: {report['projected_3_epoch_hours'][mode]:.2f} h")
    print(f"length_grouped / pad_to_max_length = {report['speedup_vs_pad_to_max_length']:.2f}x   "
          f"random / pad_to_max_length = {report['speedup_random_vs_pad_to_max_length']:.2f}x")
    if cfg.output:
        write_json(cfg.output, report)
    return report


if __name__ == "__main__":
    run_main(main)
