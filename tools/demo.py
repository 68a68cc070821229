"""Every pipeline end to end on CPU in a few minutes: tiny random models, a small slice of data, then plots and a
report, so that a newcomer sees each piece work without a GPU or any download.

    make demo                                   # real reviews from DATA_DIR / $IMDB_DATA_DIR, else synthetic ones
    python -m tools.demo --out runs/demo --synthetic true

The accuracies a demo prints mean nothing: the models have random weights and train for a few steps. The run folder
holds a file named SMOKE, so `make report` lists these runs apart from real results.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from common.config import parse, run_main, setting
from fixtures.synthetic import write_imdb

ROOT = Path(__file__).resolve().parents[1]
BANNER = ("DEMO: tiny random models, a few training steps, a small slice of data. Every accuracy below is "
          "meaningless; the demo only shows that each pipeline runs end to end.")


@dataclass
class DemoConfig:
    out: str = setting("runs/demo", "the folder of the demo's runs")
    data_dir: str | None = setting(None, "folder with train/test.parquet; else $IMDB_DATA_DIR; else synthetic reviews")
    synthetic: bool = setting(False, "use synthetic reviews even when real ones are available")
    n_train: int = setting(256, "training reviews for the DistilBERT runs", at_least=1)


def section(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 90 - len(title)), flush=True)


def build_models(out: Path, texts: list[str]) -> tuple[Path, Path]:
    from distilbert.bench import BenchConfig as DistilBench, build_model_folder
    from mistral.bench import BenchConfig as MistralBench, build_random_mistral

    distilbert = out / "models" / "distilbert"
    mistral = out / "models" / "mistral"
    if not (distilbert / "config.json").is_file():
        build_model_folder(DistilBench(size="small"), texts, distilbert)
    if not (mistral / "config.json").is_file():
        build_random_mistral(MistralBench(size="small"), texts, mistral)
    return distilbert, mistral


def demo_data(cfg: DemoConfig, out: Path) -> str:
    data_dir = None if cfg.synthetic else cfg.data_dir or os.environ.get("IMDB_DATA_DIR")
    if not data_dir:
        data_dir = str(write_imdb(out / "data", n_train=1000, n_test=1000))
        print(f"data: synthetic reviews in {data_dir}")
    else:
        print(f"data: {data_dir}")
    return data_dir


def run_distilbert(distilbert: Path, data_dir: str, out: Path, n_train: int) -> None:
    from distilbert.train_loop import main as train_loop
    from distilbert.train_trainer import main as train_trainer

    small = ["--model_name_or_path", str(distilbert), "--data_dir", data_dir, "--report_to", "none",
             "--max_train_samples", str(n_train), "--max_eval_samples", "64", "--max_test_samples", "128",
             "--num_train_epochs", "2", "--max_length", "128", "--warmup_steps", "4", "--learning_rate", "1e-3",
             "--cache_dir", str(out / "cache"), "--logging_steps", "2"]
    section("DistilBERT, hand-written loop")
    train_loop(["--config", str(ROOT / "configs/distilbert_loop.yaml"), *small, "--save_steps", "16",
                "--output_dir", str(out / "distilbert_loop")])
    section("DistilBERT, Hugging Face Trainer")
    train_trainer(["--config", str(ROOT / "configs/distilbert_trainer.yaml"), *small,
                   "--output_dir", str(out / "distilbert_trainer")])


def run_mistral(mistral: Path, data_dir: str, out: Path) -> None:
    from mistral.evaluate import main as mistral_eval
    from mistral.train_sft import main as train_sft

    balanced = ["--model_name_or_path", str(mistral), "--data_dir", data_dir, "--n_train", "32", "--n_eval", "10",
                "--n_test", "40", "--max_length", "256", "--report_to", "none"]
    section("Mistral QLoRA SFT: zero-shot, LoRA on a 4-bit model, tuned")
    train_sft(["--config", str(ROOT / "configs/mistral_sft.yaml"), *balanced, "--num_train_epochs", "2",
               "--lora_r", "8", "--learning_rate", "1e-3", "--logging_steps", "2",
               "--output_dir", str(out / "mistral_sft")])
    section("Mistral evaluation by generation, with unparsed answers counted")
    mistral_eval(["--config", str(ROOT / "configs/mistral_eval.yaml"), *balanced, "--adapter",
                  str(out / "mistral_sft" / "best_adapter"), "--mode", "generate", "--output_dir",
                  str(out / "mistral_eval_generate")])


SETTINGS = (DemoConfig,)


def main(argv=None) -> Path:
    from baseline.tfidf import main as baseline
    from common.data import make_splits
    from analysis.plots import plot_run
    from analysis.report import main as report
    from mistral.architecture import main as architecture

    (cfg,) = parse(SETTINGS, argv)
    start = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "SMOKE").write_text(BANNER + "\n")
    print(BANNER)
    data_dir = demo_data(cfg, out)

    section("tiny random models: DistilBERT (4 layers, dim 128) and Mistral (4 layers, hidden 256)")
    splits, _ = make_splits("random_70_10_20", 42, data_dir)
    distilbert, mistral = build_models(out, splits["train"]["text"].head(3000).tolist())
    section("TF-IDF + logistic regression baseline")
    baseline(["--config", str(ROOT / "configs/baseline.yaml"), "--data_dir", data_dir, "--output_dir",
              str(out / "baseline"), "--report_to", "none", "--C", "4"])
    run_distilbert(distilbert, data_dir, out, cfg.n_train)
    run_mistral(mistral, data_dir, out)
    section("Mistral's attention mechanisms against Hugging Face")
    architecture([])

    section("plots and report")
    for run in ("baseline", "distilbert_loop", "distilbert_trainer", "mistral_sft", "mistral_eval_generate"):
        plot_run(out / run)
    written = report(["--runs", str(out), "--out", str(out / "RESULTS.md")])
    print(f"\n{BANNER}\nfinished in {time.perf_counter() - start:.0f} s; see {written} and {out}/*/plots/")
    return out


if __name__ == "__main__":
    run_main(main)
