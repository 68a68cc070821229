"""The C memory allocator on a CPU: glibc's malloc against jemalloc and tcmalloc, each preloaded (LD_PRELOAD) into
its own run of the hand-written loop, the same steps on the same reviews, with one `N.NNx` ratio per allocator.

    make bench-allocator DATA_DIR=../shared/data/imdb
    python -m tools.bench_allocator --data_dir ../shared/data/imdb --steps 40 --output bench_allocator.json

Why: a length-grouped batch has its own shape at nearly every step, so the tensors freed and allocated differ from
step to step; glibc's malloc then hands memory back and forth to the kernel (system time, page faults) and
fragments, and the resident set of a long CPU run keeps growing. jemalloc and tcmalloc are Debian packages
(PACKAGES below); one that is not installed is left out and said so.

Each run is distilbert.train_loop itself, in fp32: the encoder of `make models` (MiniLM-L6), batches of 16 training
reviews of up to 256 tokens (the full-split run's shape), length-grouped, 1 + --steps optimizer steps, a metrics row
per step. Speed is the median of the per-step seconds after the first; memory is the run's peak resident set and
its growth over the training steps (the peak after tokenising subtracted). The first run tokenises into a cache the
others read: neither counts in step times or growth. Each run's results.json records the allocator it ran on
(run_info.malloc).
"""
from __future__ import annotations

import ctypes.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common.config import UserError, parse, run_main
from common.io import write_json
from common.environment import run_info
from tools.bench_precision import BenchConfig

ALLOCATORS = {"glibc": None, "jemalloc": "jemalloc", "tcmalloc": "tcmalloc_minimal"}  # name: library to preload
PACKAGES = {"jemalloc": "apt-get install libjemalloc2", "tcmalloc": "apt-get install libtcmalloc-minimal4"}
BATCH, LENGTH = 16, 256
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "distilbert_loop.yaml"


def loop_args(cfg: BenchConfig, out: Path, cache: Path) -> list[str]:
    return ["--config", str(CONFIG), "--model_name_or_path", cfg.encoder, "--output_dir", str(out),
            "--cache_dir", str(cache), "--report_to", "none", "--precision", "fp32", "--max_length", str(LENGTH),
            "--per_device_train_batch_size", str(BATCH), "--max_train_samples", str(BATCH * (1 + cfg.steps)),
            "--max_eval_samples", "32", "--max_test_samples", "32", "--max_steps", str(1 + cfg.steps),
            "--logging_steps", "1", "--save_steps", str(1 + cfg.steps),
            *(["--data_dir", cfg.data_dir] if cfg.data_dir else [])]


def run_loop(args: list[str], library: str | None) -> dict:
    """distilbert.train_loop in a process of its own, with `library` preloaded; its results.json and step times."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if library:
        env["LD_PRELOAD"] = library
    done = subprocess.run([sys.executable, "-m", "distilbert.train_loop", *args], env=env, capture_output=True,
                          text=True)
    if done.returncode:
        raise UserError(f"the loop failed under {library or 'glibc'}: {done.stderr.strip().splitlines()[-1]}")
    out = Path(args[args.index("--output_dir") + 1])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    step_s = [BATCH / r["train/samples_per_second"] for r in rows if "train/samples_per_second" in r]
    return {"results": json.loads((out / "results.json").read_text()), "step_s": step_s}


def measure(cfg: BenchConfig) -> dict:
    found, missing = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, lib in ALLOCATORS.items():
            library = ctypes.util.find_library(lib) if lib else None
            if lib and library is None:
                missing.append(name)
                continue
            run = run_loop(loop_args(cfg, tmp / name, tmp / "cache"), library)
            info, data = run["results"]["run_info"], run["results"]["data"]
            found[name] = {
                "malloc": info["malloc"], "median_step_s": statistics.median(run["step_s"][1:]),
                "step_s": run["step_s"], "peak_rss_mib": info["peak_rss_mib"],
                "rss_growth_in_training_mib": info["peak_rss_mib"] - data["peak_rss_mib_after_tokenize"]}
    return {"found": found, "missing": missing}


SETTINGS = (BenchConfig,)


def main(argv=None) -> dict:
    (cfg,) = parse(SETTINGS, argv)
    measured = measure(cfg)
    found, reference = measured["found"], measured["found"]["glibc"]["median_step_s"]
    report = {"script": "tools.bench_allocator", "cores": os.cpu_count(), "steps": cfg.steps, "batch": BATCH,
              "max_length": LENGTH, "allocators": found, "not_installed": measured["missing"],
              "speedup": {n: reference / a["median_step_s"] for n, a in found.items() if n != "glibc"}}
    for name, a in found.items():
        ratio = f"  -> {report['speedup'][name]:.2f}x" if name in report["speedup"] else ""
        print(f"{name:9} {a['median_step_s']:.2f} s/step, peak RSS {a['peak_rss_mib']:,.0f} MiB "
              f"(+{a['rss_growth_in_training_mib']:,.0f} MiB in training){ratio}")
    for name in measured["missing"]:
        print(f"{name:9} not installed ({PACKAGES[name]}): left out")
    if cfg.output:
        write_json(cfg.output, {**report, "run_info": run_info()})
    return report


if __name__ == "__main__":
    run_main(main)
