"""Plots of a run, offline, from its files: W&B-style training panels and confusion matrices.

    make plots RUN=runs/distilbert_loop                        # -> runs/distilbert_loop/plots/*.png
    python -m analysis.plots --run runs/mistral_sft --to images/mistral/

training.png: one panel per metric against the global step: train/learning_rate, train/global_step,
train/grad_norm, train/epoch, train/loss, and eval/loss, eval/accuracy where the run logged them.
confusion_matrix.png: from results.json, every evaluation that has one (test; zero-shot and tuned for Mistral).
accuracy_by_length.png: test accuracy in each fifth of the test reviews by length in words (length quintiles), with
95% Wilson intervals, from the run's predictions; the table is printed too. Long reviews are where a 512-token
encoder truncates.
Works for the runs of every script (they share metric names); missing metrics are named, not fatal.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from common.config import UserError, parse, run_main, setting
from common.data import LABEL_NAMES
from common.predictions import prediction_files
from analysis.report import evaluations
from common.stats import wilson_interval
from common.run_folder import read_metrics

PANELS = [
    ("train/learning_rate", "learning rate", "the schedule: warm-up, then decay"),
    ("train/global_step", "global step", "optimizer steps so far: a straight line"),
    ("train/grad_norm", "gradient norm", "before clipping; spikes flag instability"),
    ("train/epoch", "epoch", "passes over the training set"),
    ("train/loss", "training loss", "should fall, then flatten"),
    ("eval/loss", "validation loss", "rising while training loss falls: overfitting"),
    ("eval/accuracy", "validation accuracy", "what picks the best checkpoint"),
]
LABELS = LABEL_NAMES


def series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
    return [p[0] for p in points], [p[1] for p in points]


def training_figure(rows: list[dict], title: str, path: Path) -> list[str]:
    """Draw the panels that have data; return the names of the metrics that had none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [p for p in PANELS if series(rows, p[0])[0]]
    missing = [key for key, _, _ in PANELS if key not in {p[0] for p in present}]
    if not present:
        return missing
    cols = 3 if len(present) > 4 else len(present)
    nrows = -(-len(present) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.6 * nrows), squeeze=False)
    for ax, (key, label, hint) in zip(axes.flat, present):
        steps, values = series(rows, key)
        ax.plot(steps, values, marker="o" if len(steps) < 20 else None, ms=4, color="#3b6fb6")
        ax.set_title(f"{key}\n{hint}", fontsize=10)
        ax.set_xlabel("global step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(present):]:
        ax.axis("off")
    save(fig, title, path)
    return missing


def confusion_figure(matrices: dict[str, list[list[int]]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(matrices), figsize=(4.6 * len(matrices), 4.2), squeeze=False)
    for ax, (name, cm) in zip(axes.flat, matrices.items()):
        total = sum(map(sum, cm)) or 1
        ax.imshow(cm, cmap="Blues")
        for i in range(2):
            for j in range(2):
                ax.text(j, i, f"{cm[i][j]:,}\n{100 * cm[i][j] / total:.1f}%", ha="center", va="center",
                        color="white" if cm[i][j] > total / 3 else "black")
        accuracy = (cm[0][0] + cm[1][1]) / total
        ax.set_title(f"{name}: accuracy {100 * accuracy:.2f}% (n={total:,})", fontsize=10)
        ax.set_xticks([0, 1], LABELS)
        ax.set_yticks([0, 1], LABELS)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    save(fig, title, path)


def accuracy_by_length(frame: pd.DataFrame, n_bins: int = 5) -> pd.DataFrame:
    """Accuracy in each length quintile (fewer bins where lengths tie) of one evaluation's predictions."""
    bins = pd.qcut(frame["words"], n_bins, duplicates="drop")
    rows = []
    for _, group in frame.groupby(bins, observed=True):
        correct = int((group["prediction"] == group["label"]).sum())  # an unparsed answer counts as wrong
        low, high = wilson_interval(correct, len(group))
        rows.append({"words": f"{group['words'].min()}-{group['words'].max()}", "n": len(group),
                     "accuracy": correct / len(group), "low": low, "high": high})
    return pd.DataFrame(rows)


def length_figure(tables: dict[str, pd.DataFrame], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.8 / len(tables)
    for i, (name, t) in enumerate(tables.items()):
        x = [j + (i - (len(tables) - 1) / 2) * width for j in range(len(t))]
        errors = [t["accuracy"] - t["low"], t["high"] - t["accuracy"]]
        ax.bar(x, 100 * t["accuracy"], width, yerr=100 * pd.DataFrame(errors).to_numpy(), capsize=4, label=name)
    first = next(iter(tables.values()))
    ax.set_xticks(range(len(first)), [f"{w} words\n(n={n:,})" for w, n in zip(first["words"], first["n"])],
                  fontsize=9)
    low = min(100 * t["low"].min() for t in tables.values())
    ax.set_ylim(max(0, low - 5), 100)
    ax.set_ylabel("test accuracy (%), 95% interval")
    ax.set_xlabel("review length: quintiles of the test reviews")
    ax.grid(axis="y", alpha=0.3)
    if len(tables) > 1:
        ax.legend()
    save(fig, title, path)


def length_tables(run: Path) -> dict[str, pd.DataFrame]:
    """Accuracy by length of each evaluation with predictions (empty, with a note, where there are none)."""
    found = prediction_files(run)
    frames = {label or "test": pd.read_parquet(path) for label, path in found}
    if not frames or any("words" not in f for f in frames.values()):
        print(f"{run}: no review lengths in its predictions (written before they held them: run it again), "
              "so no length figure")
        return {}
    return {name: accuracy_by_length(frame) for name, frame in frames.items()}


def save(fig, title: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion_matrices(results: dict) -> dict[str, list[list[int]]]:
    """The confusion matrix of each evaluation the report lists for this run (zero-shot and tuned, or its split)."""
    return {label or results.get("split", "test"): m["confusion_matrix"]
            for label, m in evaluations(results) if m.get("confusion_matrix")}


def plot_run(run: str | Path, to: str | Path | None = None) -> list[Path]:
    """Write the run's figures into RUN/plots/ (and copy them to `to`); prints what was missing."""
    run = Path(run)
    if not run.is_dir():
        raise UserError(f"run folder not found: {run}")
    out, written = run / "plots", []
    metrics_file, results_file = run / "metrics.jsonl", run / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    title = f"{results.get('script', run.name)}: {results.get('model', '')}".rstrip(": ")
    if metrics_file.is_file():
        missing = training_figure(read_metrics(metrics_file), title, out / "training.png")
        if (out / "training.png").is_file() and len(missing) < len(PANELS):
            written.append(out / "training.png")
        if missing:
            print(f"{run}: no data for {', '.join(missing)} in metrics.jsonl")
    else:
        print(f"{run}: no metrics.jsonl, so no training figure")
    matrices = confusion_matrices(results)
    if matrices:
        confusion_figure(matrices, title, out / "confusion_matrix.png")
        written.append(out / "confusion_matrix.png")
    else:
        print(f"{run}: no confusion matrix in results.json")
    tables = length_tables(run)
    if tables:
        length_figure(tables, title, out / "accuracy_by_length.png")
        written.append(out / "accuracy_by_length.png")
        for name, t in tables.items():
            print(f"{run} {name}: accuracy by review length\n" + t.to_string(index=False, float_format="{:.4f}".format))
    if to:
        Path(to).mkdir(parents=True, exist_ok=True)
        for path in written:
            shutil.copy(path, Path(to) / path.name)
    for path in written:
        print(f"wrote {path}" + (f" (copied to {to})" if to else ""))
    return written


@dataclass
class PlotArguments:
    run: str | None = setting(None, "a run folder (holding metrics.jsonl and/or results.json)")
    to: str | None = setting(None, "also copy the PNGs into this folder, e.g. images/distilbert/")


SETTINGS = (PlotArguments,)


def main(argv=None) -> None:
    (args,) = parse(SETTINGS, argv)
    if not args.run:
        raise UserError("run: give a run folder (holding metrics.jsonl and/or results.json)")
    plot_run(args.run, args.to)


if __name__ == "__main__":
    run_main(main)
