"""Collect every results.json under a runs folder into one markdown table, next to the published figures.

    make report                      # runs/ -> runs/RESULTS.md, and runs/ERRORS.md beside it
    make report RUNS=results         # the committed runs -> results/RESULTS.md, and the README's results table
    python -m analysis.report --runs results --readme README.md --errors 0

Runs repeated over seeds (make seeds: a folder with seeds.json) get a mean ± sd table. ERRORS.md lists each run's
most confident test errors (the first 200 characters of the review, its label, the prediction and its score), from the
run's predictions; it quotes reviews, so this repo keeps it out of git (.gitignore).

Rows made on tiny or random models (under 20M parameters, or in a folder holding a file named SMOKE, as the demo's
runs are) are marked as smoke runs and listed apart: they show that the code runs, never how well a model does.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from common.config import UserError, parse, run_main, setting
from common.data import LABEL_NAMES
from common.io import atomic_write
from common.predictions import prediction_files
from common.stats import confusion_intervals

SMOKE_PARAMETERS = 20_000_000
# The README's table names each run by its model first, and says when that model stands in for the experiment's own
MODEL_NAMES = {"models/minilm-l6": "all-MiniLM-L6-v2", "models/smollm2-135m-instruct": "SmolLM2-135M-Instruct",
               "distilbert-base-uncased": "DistilBERT-base-uncased",
               "mistralai/Mistral-7B-Instruct-v0.2": "Mistral-7B-Instruct-v0.2",
               "tfidf(1-2gram)+logreg": "TF-IDF word 1–2-grams + logistic regression"}
STANDS_IN_FOR = {"distilbert": ("distilbert-base-uncased", "DistilBERT-base"),
                 "mistral": ("mistralai/Mistral-7B-Instruct-v0.2", "Mistral-7B")}
METHODS = {"distilbert.train_loop": "hand-written loop", "distilbert.train_trainer": "HF Trainer",
           "mistral.train_sft": "QLoRA SFT script", "mistral.evaluate": "label scoring", "baseline.tfidf": "baseline"}
TABLE_START = "<!-- results table: made by `make report RUNS=results` from results/; do not edit by hand -->"
TABLE_END = "<!-- end of results table -->"
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
    wall = f"{results['wall_time_s']:.0f} s" if "wall_time_s" in results else "-"
    earlier = results.get("earlier_segments") or {}
    if "wall_time_s" in results and earlier.get("wall_time_s") is not None:
        # a run cut into processes: its whole wall time; its throughput is the last process's alone
        wall = f"{results['wall_time_s'] + earlier['wall_time_s']:.0f} s, resumed at step {earlier['to_step']}"
    rows = []
    for label, m in evaluations(results):
        rows.append([f"`{folder}`" + (f" ({label})" if label else ""), results.get("script", "?"),
                     str(results.get("model", "?")), manifest.get("protocol", "?"),
                     " / ".join(f"{sizes[k]:,}" for k in ("train", "validation", "test") if k in sizes),
                     with_interval(m, "accuracy", pct),
                     with_interval(m, "f1", lambda v: f"{v:.4f}"),
                     pct(m.get("accuracy_negative")), pct(m.get("accuracy_positive")),
                     wall, f"{rate:.1f}" + (f" (steps {earlier['to_step'] + 1}–)" if earlier else "") if rate else "-",
                     info.get("date", "?")[:10], (info.get("git_commit") or "?")[:8]])
    return rows


def table(rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)] + ["| " + " | ".join(r) + " |"
                                                                              for r in rows]


def read_results(runs: Path) -> list[tuple[Path, dict]]:
    """(run folder, results) of every results.json below `runs`, in path order; invalid JSON is named and skipped."""
    if not runs.is_dir():
        raise UserError(f"runs folder not found: {runs}")
    found = []
    for path in sorted(runs.rglob("results.json")):
        try:
            found.append((path.parent, json.loads(path.read_text())))
        except json.JSONDecodeError:
            print(f"skipped {path}: not valid JSON")
    return found


def seeds_table(runs: Path) -> list[str]:
    """Mean ± sd of each folder of runs over seeds (python -m analysis.seeds wrote seeds.json there)."""
    rows = []
    for path in sorted(runs.rglob("seeds.json")):
        s = json.loads(path.read_text())
        test = "same in every run" if s["same_test_set"] else "differs (split varied)"
        for name, figures in s["evaluations"].items():
            acc, f1 = figures["accuracy"], figures["f1"]
            rows.append(f"| `{path.parent}`{f' ({name})' if name != 'test' else ''} | {s['script']} | {s['model']} | "
                        f"{len(s['runs'])} ({', '.join(s['varied']) or '-'}) | {test} | "
                        f"{100 * acc['mean']:.2f} ± {100 * acc['sd']:.2f}% | {f1['mean']:.4f} ± {f1['sd']:.4f} | "
                        f"{', '.join(f'{100 * v:.2f}' for v in acc['values'])} |")
    if not rows:
        return []
    return ["", "## Over seeds (mean ± sample standard deviation; each run is also a row above)", "",
            "| runs | script | model | runs (varied) | test reviews | test accuracy | macro F1 | each run's accuracy |",
            "|" + " --- |" * 8] + rows


def precision_of(results: dict) -> str:
    """The precision a run computed in; runs recorded before the one `precision` key used Accelerate's name or
    compute_dtype."""
    recorded = results.get("precision") or results.get("mixed_precision") or results.get("compute_dtype") or "-"
    return "fp32" if recorded == "no" else recorded


def summary_table(runs: Path, link_from: Path) -> list[str]:
    """The README's table: every measured run under runs, named model first, linked to its results.json (relative to
    the page at link_from)."""
    import os

    lines = ["| model | method | protocol | precision | train / test reviews | test accuracy (95% interval) | "
             "macro F1 | run record |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for folder, results in read_results(runs):
        if is_smoke(folder, results, runs) or not evaluations(results):
            continue
        script, model = results.get("script", "?"), str(results.get("model", "?"))
        name = MODEL_NAMES.get(model, model)
        own, experiment = STANDS_IN_FOR.get(script.split(".")[0], (model, ""))
        if model != own:
            name += f" (stand-in for {experiment})"
        link = Path(os.path.relpath(folder / "results.json", link_from.parent)).as_posix()
        manifest = results.get("manifest", {})
        trained = (results.get("split_sizes_used") or {}).get("train") or manifest["splits"]["train"]["size"]
        for label, m in evaluations(results):
            method = METHODS.get(script, script) + (f", {label}" if label else "")
            lines.append(f"| {name} | {method} | `{manifest.get('protocol', '?')}` | {precision_of(results)} | "
                         f"{trained:,} / {m['n']:,} | **{with_interval(m, 'accuracy', pct)}** | "
                         f"{m['f1']:.4f} | [{folder.relative_to(runs).as_posix()}]({link}) |")
    return lines


def write_readme_table(readme: Path, runs: Path) -> None:
    """Put the summary table between the README's two markers (a page without them is an error: nothing is lost)."""
    text = readme.read_text()
    if TABLE_START not in text or TABLE_END not in text:
        raise UserError(f"{readme}: no results-table markers ({TABLE_START} ... {TABLE_END})")
    before, rest = text.split(TABLE_START, 1)
    after = rest.split(TABLE_END, 1)[1]
    table_text = "\n".join([TABLE_START, *summary_table(runs, readme), TABLE_END])
    atomic_write(readme, lambda tmp: tmp.write_text(before + table_text + after))


def build_report(runs: Path) -> str:
    measured, smoke = [], []
    for folder, results in read_results(runs):
        (smoke if is_smoke(folder, results, runs) else measured).extend(rows_of(folder, results))
    lines = ["# Results", "", f"Made by `python -m analysis.report --runs {runs}` from every `results.json` below it.",
             "", "## Published figures (the original work's, quoted, not measured here)", "",
             "| experiment | protocol | test accuracy |", "| --- | --- | --- |"]
    lines += [f"| {name} | {protocol} | {pct(acc)} |" for name, protocol, acc in PUBLISHED]
    lines += ["", "## Our measured runs", ""]
    lines += table(measured) if measured else ["None yet."]
    lines += seeds_table(runs)
    if smoke:
        lines += ["", "## Smoke runs (tiny or random models: they show the code runs; their accuracies mean nothing)",
                  ""] + table(smoke)
    return "\n".join(lines) + "\n"


def confident_errors(frame: pd.DataFrame, margins: bool, k: int) -> pd.DataFrame:
    """The k wrong predictions the model was surest of: P(positive) farthest from 0.5, or the largest |margin|."""
    wrong = frame[frame["prediction"].notna() & (frame["prediction"] != frame["label"]) & frame["score"].notna()]
    confidence = wrong["score"].abs() if margins else (wrong["score"] - 0.5).abs()
    return wrong.loc[confidence.sort_values(ascending=False, kind="stable").index[:k]]


def quoted(text: str) -> str:
    """A review's start made safe for one markdown table cell: one line (common.data turned <br /> into line
    breaks), pipes escaped."""
    return " ".join(text.replace("|", "\\|").split())


def build_errors(runs: Path, k: int) -> str:
    lines = ["# Most confident errors", "", f"Made by `python -m analysis.report --runs {runs}`: for each run, the {k} "
             "test reviews it got wrong with the highest confidence, from its predictions. It quotes IMDB reviews "
             "(their first 200 characters): keep it out of the repository.", ""]
    for folder, results in read_results(runs):
        margins = str(results.get("script", "")).startswith("mistral")
        score = "margin: log P(positive) - log P(negative) answer" if margins else "P(positive)"
        for label, path in prediction_files(folder):
            frame = pd.read_parquet(path)
            lines += [f"## `{folder}`" + (f" ({label})" if label else ""), ""]
            if "text_start" not in frame:
                lines += ["Its predictions hold no review text (written before they did): run it again.", ""]
                continue
            errors = confident_errors(frame, margins, k)
            if errors.empty:
                lines += ["No scored errors (none wrong, or answers generated without scores).", ""]
                continue
            lines += [f"| # | label | predicted | score ({score}) | review (first 200 characters) |",
                      "| --- | --- | --- | --- | --- |"]
            lines += [f"| {r['index']} | {LABEL_NAMES[int(r['label'])]} | {LABEL_NAMES[int(r['prediction'])]} | "
                      f"{r['score']:.3f} | {quoted(r['text_start'])} |" for _, r in errors.iterrows()]
            lines.append("")
    return "\n".join(lines)


@dataclass
class ReportArguments:
    runs: str = setting("runs", "folder searched for results.json files")
    out: str | None = setting(None, "the markdown file written; default: RESULTS.md in the runs folder")
    errors: int = setting(5, "confident errors listed per evaluation in ERRORS.md (beside out); 0: no ERRORS.md",
                          at_least=0)
    readme: str | None = setting(None, "also rewrite the results table of this page (between its markers)")


SETTINGS = (ReportArguments,)


def main(argv=None) -> Path:
    (args,) = parse(SETTINGS, argv)
    runs = Path(args.runs)
    out = Path(args.out) if args.out else runs / "RESULTS.md"
    text = build_report(runs)
    if args.errors > 0:
        errors = atomic_write(out.with_name("ERRORS.md"), lambda tmp: tmp.write_text(build_errors(runs, args.errors)))
        text += (f"\nThe most confident errors of each run, with the start of each review: `{errors.name}` beside "
                 "this file (same command; kept out of git, as it quotes reviews).\n")
        print(f"wrote {errors}")
    out = atomic_write(out, lambda tmp: tmp.write_text(text))
    print(f"wrote {out}")
    if args.readme:
        write_readme_table(Path(args.readme), runs)
        print(f"rewrote the results table of {args.readme}")
    return out


if __name__ == "__main__":
    run_main(main)
