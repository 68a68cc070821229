"""The GPU check: one command, at most 8 minutes on one GPU; prints a table and writes gpu_check.json.

    make gpu-wheels     # where pip reaches PyPI: bitsandbytes, TRL, datasets (+ dill, multiprocess) into .whl/
    make gpu-check      # on the GPU machine: installs from .whl/ what is missing, then runs the four checks
    python -m tools.gpu_check --wheels .whl --out results/gpu_check.json

1. the `gpu` tests (pytest -m gpu);
2. full-size DistilBERT with random weights, trained by distilbert/train_loop.py on 2,048 reviews in bf16 (fp16
   where bf16 is not native): samples/s with length-grouped batches and with padding to 512, and the projected time
   of 3 epochs over 34,704 reviews (training steps only). Goal: 3 minutes or less on an H100/H200-class GPU;
3. the Mistral-7B shape with random weights in 4-bit NF4, LoRA r 64 on q_proj and v_proj, gradient checkpointing,
   paged AdamW, batch 1 of 512 tokens: s/step, tokens/s and peak GPU memory. Goal: under 16 GB;
4. on the same 4-bit 7B: label scoring (batches of 8) against greedy generation one review at a time (5 new
   tokens): reviews/s and their ratio. Goal: label scoring at least 10x faster.

No data travels to a GPU machine: the reviews are synthetic, with token counts drawn from a log-normal fitted to the
real IMDB training reviews under BERT's uncased vocabulary (measured there: median 233, mean 314, 14.9% over 512;
the fit: log-mean 5.53, log-sd 0.65). Speed depends on the lengths, not on the words. Each check runs on its own:
one that fails is reported in the table and the others still run. Without CUDA: one line, exit 0.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.config import parse, run_main, setting

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ("bitsandbytes", "trl", "datasets")
LOG_MEAN, LOG_SD = 5.53, 0.65
FULL_TRAIN = 34_704  # the 70% training split of the 50k reviews after deduplication


def install_missing(wheels: Path, target: Path) -> list[str]:
    """Install from a folder of wheels the packages this machine lacks (no network, no dependencies resolved)."""
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    files = sorted(str(p) for p in wheels.glob("*.whl")) if wheels.is_dir() else []
    if missing and files:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--no-cache-dir", "--upgrade", "--target", str(target), *files], check=True)
        sys.path.insert(0, str(target))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))
        importlib.invalidate_caches()
    return missing


def write_reviews(folder: Path, n: int, seed: int = 0) -> Path:
    """train.parquet and test.parquet of synthetic reviews whose word counts follow the fitted log-normal (each
    word is one token of a tokenizer trained on them; [CLS] and [SEP] make up the 2)."""
    import pandas as pd

    from fixtures.synthetic import review

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        words = np.clip(rng.lognormal(LOG_MEAN, LOG_SD, n).round().astype(int) - 2, 8, 3000)
        labels = [i % 2 for i in range(n)]
        texts = [f"{split}{i} " + review(rng, y, int(k)) for i, (y, k) in enumerate(zip(labels, words))]
        pd.DataFrame({"text": texts, "label": labels}).to_parquet(folder / f"{split}.parquet", index=False)
    return folder


def gpu_tests(tmp: Path) -> dict:
    junit = tmp / "gpu_tests.xml"
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                   if "mark.gpu" in p.read_text())  # only these are collected: others may import what is absent
    done = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                           f"--junitxml={junit}", *files], cwd=ROOT, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"})
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None or c.find("error")
              is not None]
    return {**counts, "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
            "failed": failed, "ok": done.returncode == 0, "output_tail": done.stdout[-1500:]}


def distilbert_batching(tmp: Path, size: str = "full", n_samples: int = 2048) -> dict:
    import pandas as pd

    from distilbert.bench import BenchConfig, build_model_folder, run_mode

    data = write_reviews(tmp / "imdb", n_samples)
    cfg = BenchConfig(data_dir=str(data), size=size, n_samples=n_samples)

    model = build_model_folder(cfg, pd.read_parquet(data / "train.parquet")["text"].tolist(), tmp / "distilbert")
    run_mode(cfg, model, tmp / "warmup", "length_grouped", max_steps=10)  # kernels, allocator, cuDNN choices
    runs = {mode: run_mode(cfg, model, tmp, mode) for mode in ("length_grouped", "pad_to_max_length")}
    rates = {mode: r["train_step_samples_per_second"] for mode, r in runs.items()}
    minutes = {mode: 3 * FULL_TRAIN / rate / 60 for mode, rate in rates.items()}
    return {"samples_per_second": rates, "projected_3_epochs_minutes": minutes,
            "speedup": rates["length_grouped"] / rates["pad_to_max_length"],
            "precision": runs["length_grouped"]["precision"],
            "goal_3_epochs_at_most_3_minutes": minutes["length_grouped"] <= 3.0}


def mistral_7b(tmp: Path, size: str = "7b", device: str = "cuda", n_reviews: int = 64, steps: int = 5) -> dict:
    import pandas as pd
    import torch

    from mistral.bench import (BenchConfig, measure_train_step, mistral_config, random_4bit_mistral,
                               time_scoring_and_generation)
    from fixtures.random_models import bpe_tokenizer
    from mistral.prompts import PromptArguments, make_format, set_padding

    reviews = pd.read_parquet(write_reviews(tmp / "prompts", n_reviews, seed=1) / "test.parquet")["text"].tolist()
    tokenizer = bpe_tokenizer(reviews)
    set_padding(tokenizer)
    fmt = make_format(tokenizer, PromptArguments(), 512)
    start = time.perf_counter()
    model = random_4bit_mistral(mistral_config(size), device)
    built_s = time.perf_counter() - start
    rates, _, _ = time_scoring_and_generation(model, fmt, reviews, batch_size=8, max_new_tokens=5,
                                              n_generate=n_reviews // 2)
    scoring = {"reviews_per_second": rates, "speedup": rates["label_scoring"] / rates["greedy_generation"],
               "mean_prompt_tokens": float(np.mean([len(fmt.prompt_ids(r)) for r in reviews]))}
    scoring["goal_at_least_10x"] = scoring["speedup"] >= 10
    train = measure_train_step(BenchConfig(size=size, max_length=512, steps=steps), model)
    train["goal_peak_under_16_gb"] = train["peak_gpu_memory_gb"] is not None and train["peak_gpu_memory_gb"] < 16
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {"build_seconds": built_s, "qlora_step": train, "scoring_vs_generation": scoring}


def table(report: dict) -> str:
    rows = [f"GPU check, {report['date']}, {report['gpu']} (torch {report['versions'].get('torch')}, "
            f"transformers {report['versions'].get('transformers')}, bitsandbytes "
            f"{report['versions'].get('bitsandbytes')})", ""]

    def line(what, value, goal=""):
        rows.append(f"| {what:<52} | {value:>24} | {goal:<28} |")

    line("check", "measured", "goal")
    rows.append(f"|{'-' * 54}|{'-' * 26}|{'-' * 30}|")
    checks = report["checks"]
    for name, check in checks.items():
        if "error" in check:
            line(name, "FAILED", check["error"][:28])
    t = checks.get("gpu tests", {})
    if "tests" in t:
        line("gpu tests (pytest -m gpu)", f"{t['passed']} passed, {t['failures'] + t['errors']} failed",
             f"{t['skipped']} skipped")
    d = checks.get("distilbert", {})
    if "samples_per_second" in d:
        sps, minutes = d["samples_per_second"], d["projected_3_epochs_minutes"]
        line(f"DistilBERT loop ({d['precision']}), length-grouped, samples/s",
             f"{sps['length_grouped']:.0f}", "")
        line("DistilBERT loop, padded to 512, samples/s", f"{sps['pad_to_max_length']:.0f}",
             f"{d['speedup']:.2f}x for length-grouped")
        line("3 epochs of 34,704 reviews, length-grouped (min)", f"{minutes['length_grouped']:.1f}",
             "<= 3 min: " + ("met" if d["goal_3_epochs_at_most_3_minutes"] else "NOT met"))
        line("3 epochs of 34,704 reviews, padded to 512 (min)", f"{minutes['pad_to_max_length']:.1f}", "")
    m = checks.get("mistral 7b", {})
    if "qlora_step" in m:
        q, s = m["qlora_step"], m["scoring_vs_generation"]
        line("Mistral-7B 4-bit + LoRA r 64, 512 tokens: s/step", f"{q['seconds_per_step']:.3f}",
             f"{q['tokens_per_second']:.0f} tokens/s")
        line("  peak GPU memory (GB)", f"{q['peak_gpu_memory_gb']:.2f}",
             "< 16 GB: " + ("met" if q["goal_peak_under_16_gb"] else "NOT met"))
        r = s["reviews_per_second"]
        line("  label scoring, batches of 8 (reviews/s)", f"{r['label_scoring']:.1f}", "")
        line("  greedy generation, one at a time (reviews/s)", f"{r['greedy_generation']:.2f}", "")
        line("  scoring / generation", f"{s['speedup']:.1f}x",
             ">= 10x: " + ("met" if s["goal_at_least_10x"] else "NOT met"))
    return "\n".join(rows)


@dataclass
class GpuCheckArguments:
    wheels: str = setting(str(ROOT / ".whl"), "the wheels folder (make gpu-wheels) that missing packages come from")
    out: str = setting(str(ROOT / "results" / "gpu_check.json"), "the report written")


SETTINGS = (GpuCheckArguments,)


def main(argv=None) -> int:
    (args,) = parse(SETTINGS, argv)
    wheels, out = Path(args.wheels), Path(args.out)
    import torch

    if not torch.cuda.is_available():
        print("gpu-check: no CUDA GPU on this machine; nothing to check")
        return 0
    installed = install_missing(wheels, Path(tempfile.gettempdir()) / "gpu_check_site")
    versions = {}
    for name in ("torch", "transformers", "peft", "accelerate", *NEEDED):
        try:
            versions[name] = importlib.import_module(name).__version__
        except Exception as e:  # noqa: BLE001 - a missing package is reported, the checks that need it fail alone
            versions[name] = f"missing ({type(e).__name__})"
    report = {"date": time.strftime("%Y-%m-%d"), "gpu": torch.cuda.get_device_name(0), "versions": versions,
              "installed_from_wheels": installed, "checks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, check in (("gpu tests", gpu_tests), ("distilbert", distilbert_batching), ("mistral 7b", mistral_7b)):
            start = time.perf_counter()
            folder = Path(tmp) / name.replace(" ", "_")
            folder.mkdir()
            try:
                report["checks"][name] = check(folder)
            except Exception as e:  # noqa: BLE001 - one failed check must not hide the others' figures
                report["checks"][name] = {"error": f"{type(e).__name__}: {e}".splitlines()[0],
                                          "traceback": traceback.format_exc()[-3000:]}
            report["checks"][name]["seconds"] = round(time.perf_counter() - start, 1)
            print(f"gpu-check: {name} done in {report['checks'][name]['seconds']} s", flush=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(table(report))
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    run_main(main)
