"""Two classifiers on the same test reviews: each accuracy with its 95% interval, the difference with its 95%
interval, and McNemar's exact test of whether the difference is more than chance.

    make compare A=runs/distilbert_loop B=runs/distilbert_trainer [OUT=comparison.json]
    python -m analysis.compare --runs runs/distilbert_loop,runs/distilbert_trainer
    python -m analysis.compare --runs runs/mistral_sft      # one Mistral run: zero-shot against tuned
    python -m analysis.compare --runs runs/a/mistral_sft,runs/b/mistral_sft --evaluation tuned   # two Mistral runs

Reads each run's predictions (predictions.parquet; a Mistral SFT run has predictions_zero_shot.parquet and
predictions_tuned.parquet) and refuses runs whose test sets differ: the manifests' test sha256 must match, and so
must every example's text hash, label and position. An unparsed generated answer counts as wrong.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal
from pathlib import Path

import numpy as np
import pandas as pd

from common.config import UserError, parse, run_main, setting
from common.io import write_json
from common.predictions import prediction_files
from common.stats import mcnemar_exact, wilson_interval


def evaluations(run: Path, only: str | None = None) -> list[tuple[str, Path]]:
    """(name, predictions file) of each test evaluation a run folder holds (only zero-shot or tuned: that one)."""
    found = prediction_files(run)
    if not found:
        raise UserError(f"{run}: no predictions.parquet (runs write it since error bars came in; run it again)")
    if only and found[0][0]:
        found = [(label, path) for label, path in found if label == only]
    return [(f"{run} ({label})" if label else str(run), path) for label, path in found]


def test_sha256(run: Path) -> str | None:
    path = run / "results.json"
    return json.loads(path.read_text())["manifest"]["splits"]["test"]["sha256"] if path.is_file() else None


def paired_difference_interval(a_correct, b_correct, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of accuracy(A) - accuracy(B), resampling examples (pairs kept together)."""
    diff = np.asarray(a_correct, dtype=float) - np.asarray(b_correct, dtype=float)
    rng = np.random.default_rng(seed)
    means = [diff[rng.integers(0, len(diff), size=(200, len(diff)))].mean(1) for _ in range(n_resamples // 200)]
    low, high = np.quantile(np.concatenate(means), [0.025, 0.975])
    return float(low), float(high)


def compare(name_a: str, a: pd.DataFrame, name_b: str, b: pd.DataFrame) -> dict:
    same = len(a) == len(b) and all((a[c].to_numpy() == b[c].to_numpy()).all() for c in ("index", "text_sha256",
                                                                                         "label"))
    if not same:
        raise UserError(f"{name_a} and {name_b} scored different test sets ({len(a)} and {len(b)} examples, or "
                        "other texts or labels): a paired comparison needs the same examples")
    a_ok = (a["prediction"] == a["label"]).to_numpy()  # a missing (unparsed) prediction is wrong
    b_ok = (b["prediction"] == b["label"]).to_numpy()
    n = len(a)
    out = {"n": n, "a": name_a, "b": name_b}
    for key, ok in (("a", a_ok), ("b", b_ok)):
        out[f"accuracy_{key}"], out[f"accuracy_{key}_ci95"] = float(ok.mean()), list(wilson_interval(ok.sum(), n))
    out["difference"] = out["accuracy_a"] - out["accuracy_b"]
    out["difference_ci95"] = list(paired_difference_interval(a_ok, b_ok))
    out.update(mcnemar_exact(a_ok, b_ok))
    return out


def describe(r: dict) -> str:
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    lines = [f"{r['n']:,} test reviews, the same in both"]
    for key in ("a", "b"):
        low, high = r[f"accuracy_{key}_ci95"]
        lines.append(f"  {r[key]}: accuracy {pct(r[f'accuracy_{key}'])} (95% interval {pct(low)} to {pct(high)})")
    low, high = r["difference_ci95"]
    lines.append(f"  difference {100 * r['difference']:+.2f} points (95% interval {100 * low:+.2f} to "
                 f"{100 * high:+.2f})")
    verdict = "a real difference at the 5% level" if r["p_value"] < 0.05 else "not distinguishable from chance"
    lines.append(f"  McNemar exact: {r['a_only_correct']} reviews only A gets right, {r['b_only_correct']} only B; "
                 f"p = {r['p_value']:.3g}: {verdict}")
    return "\n".join(lines)


@dataclass
class CompareArguments:
    runs: list[str] = setting([], "two run folders, or one Mistral SFT run (zero-shot against tuned), comma-separated")
    out: str | None = setting(None, "also write the comparison to this JSON file (e.g. to commit under results/)")
    evaluation: Literal["zero-shot", "tuned"] | None = setting(None, "of two Mistral SFT runs, the evaluation to pair")


SETTINGS = (CompareArguments,)


def main(argv=None) -> dict:
    (args,) = parse(SETTINGS, argv)
    runs = [Path(r) for r in args.runs]
    if not 1 <= len(runs) <= 2:
        raise UserError("runs: give one or two run folders")
    found = [e for run in runs for e in evaluations(run, args.evaluation)]
    if len(found) != 2:
        raise UserError("need exactly two evaluations: two runs, one Mistral run (zero-shot and tuned), or two "
                        "Mistral runs and --evaluation zero-shot or tuned")
    hashes = {test_sha256(run) for run in runs} - {None}
    if len(hashes) > 1:
        raise UserError(f"{runs[0]} and {runs[1]}: their manifests name different test sets (test sha256 differs)")
    (name_a, path_a), (name_b, path_b) = found
    result = compare(name_a, pd.read_parquet(path_a), name_b, pd.read_parquet(path_b))
    print(describe(result))
    if args.out:
        write_json(args.out, result)
    return result


if __name__ == "__main__":
    run_main(main)
