"""Collect every results.json under a runs folder into one markdown table, next to the published figures.

    make report                      # runs/ -> results/RESULTS.md
    python -m common.report --runs runs --out results/RESULTS.md

Rows made on tiny or random models (under 20M parameters, or in a folder holding a file named SMOKE, as the demo's
runs are) are marked as smoke runs and listed apart: they show that the code runs, never how well a model does.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from common.stats import confusion_intervals
from common.config import UserError, run_main
from common.io import atomic_write

SMOKE_PARAMETERS = 20_000_000
PUBLISHED = [  # the original work's figures: quoted, not measured here
    ("DistilBERT, hand-written loop", "random_70_10_20", 0.9382),
    ("DistilBERT, HF Trainer", "random_70_10_20", 0.9356),
    ("Mistral-7B-Instruct-v0.2, QLoRA tuned", "balanced", 0.964),
    ("Mistral-7B-Instruct-v0.2, zero-shot", "balanced", 0.63),
]
COLUMNS = ["run", "script", "model", "protocol", "train / val / test", "test accuracy (95% interval)",
           "macro F1 (95% interval)",
           "acc. negative", "acc. positive", "wall time", "samples/s", "date", "commit"]


def is_smoke(folder: Path, results: dict, root: Path) -> bool:
    if (results.get("model_parameters") or SMOKE_PARAMETERS) < SMOKE_PARAMETERS:
        return True
    return any((p / "SMOKE").exists() for p in [folder, *folder.parents] if p == root or root in p.parents)


def evaluations(results: dict) -> list[tuple[str, dict]]:
    """(label, metrics) of each test evaluation a results.json holds: Mistral runs hold two."""
    if "zero_shot" in results:
        return [("zero-shot", results["zero_shot"]), ("tuned", results["tuned"])]
    split = results.get("split", "test")
    return [("", results[split])] if isinstance(results.get(split), dict) else []


def pct(value) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) else "-"


def with_interval(m: dict, key: str, fmt) -> str:
    """A figure and its 95% interval where the run recorded one: 93.82% (93.34-94.28)."""
    value = m.get(key)
    if not isinstance(value, (int, float)):
        return "-"
    ci = m.get(f"{key}_ci95")
    if ci is None and "confusion_matrix" in m:  # runs from before intervals were recorded: the counts give them
        ci = confusion_intervals(m["confusion_matrix"])[f"{key}_ci95"]
    return fmt(value) + (f" ({fmt(ci[0]).rstrip('%')}–{fmt(ci[1])})" if ci else "")


def rows_of(folder: Path, results: dict) -> list[list[str]]:
    manifest = results.get("manifest", {})
    sizes = results.get("split_sizes_used") or {k: v["size"] for k, v in manifest.get("splits", {}).items()}
    info = results.get("run_info", {})
    rate = results.get("train_samples_per_second")
    rows = []
    for label, m in evaluations(results):
        rows.append([f"`{folder}`" + (f" ({label})" if label else ""), results.get("script", "?"),
                     str(results.get("model", "?")), manifest.get("protocol", "?"),
                     " / ".join(f"{sizes[k]:,}" for k in ("train", "validation", "test") if k in sizes),
                     pct(m["accuracy_all"]) if "accuracy_all" in m else with_interval(m, "accuracy", pct),
                     with_interval(m, "f1", lambda v: f"{v:.4f}"),
                     pct(m.get("accuracy_negative")), pct(m.get("accuracy_positive")),
                     f"{results['wall_time_s']:.0f} s" if "wall_time_s" in results else "-",
                     f"{rate:.1f}" if rate else "-", info.get("date", "?")[:10], (info.get("git_commit") or "?")[:8]])
    return rows


def table(rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)] + ["| " + " | ".join(r) + " |"
                                                                              for r in rows]


def build_report(runs: Path) -> str:
    if not runs.is_dir():
        raise UserError(f"runs folder not found: {runs}")
    measured, smoke = [], []
    for path in sorted(runs.rglob("results.json")):
        try:
            results = json.loads(path.read_text())
        except json.JSONDecodeError:
            print(f"skipped {path}: not valid JSON")
            continue
        (smoke if is_smoke(path.parent, results, runs) else measured).extend(rows_of(path.parent, results))
    lines = ["# Results", "", f"Made by `python -m common.report --runs {runs}` from every `results.json` below it.",
             "", "## Published figures (the original work's, quoted, not measured here)", "",
             "| experiment | protocol | test accuracy |", "| --- | --- | --- |"]
    lines += [f"| {name} | {protocol} | {pct(acc)} |" for name, protocol, acc in PUBLISHED]
    lines += ["", "## Our measured runs", ""]
    lines += table(measured) if measured else ["None yet."]
    if smoke:
        lines += ["", "## Smoke runs (tiny or random models: they show the code runs; their accuracies mean nothing)",
                  ""] + table(smoke)
    return "\n".join(lines) + "\n"


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m common.report", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--runs", default="runs", help="folder searched for results.json files")
    parser.add_argument("--out", default="results/RESULTS.md", help="the markdown file written")
    args = parser.parse_args(argv)
    text = build_report(Path(args.runs))
    out = atomic_write(args.out, lambda tmp: tmp.write_text(text))
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    run_main(main)
