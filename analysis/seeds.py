"""Mean and standard deviation of a run repeated over seeds: how much of a figure is the seed's luck.

    make seeds TARGET=distilbert-loop SEEDS=42,43,44      # runs each seed into runs/seeds/distilbert-loop/seed_N, then:
    python -m analysis.seeds --folder runs/seeds/distilbert-loop    # -> seeds.json there, and a table on screen

Reads every seed_*/results.json below the folder. The runs must differ only in their seed (config.yaml is compared,
key by key, apart from where each run wrote); one that differs in anything else is refused, so a stale run left in
the folder cannot slip into the mean. The standard deviation is the sample one (ddof 1). It says whether the test
reviews were the same in every run (the split held fixed: the spread is the training seed's alone) or not.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from common.config import UserError, load_yaml, parse, run_main, setting
from common.io import write_json
from analysis.report import evaluations

WHERE_KEYS = {"output_dir", "run_name", "logging_dir", "resume_from_checkpoint"}  # where a run wrote, not what it did
SEED_KEYS = {"seed", "split_seed"}
FIGURES = ("accuracy", "f1")


def seed_runs(folder: Path) -> list[Path]:
    runs = sorted((p.parent for p in folder.glob("seed_*/results.json")), key=lambda p: p.name)
    if len(runs) < 2:
        raise UserError(f"{folder}: needs two or more seed_*/results.json for a spread, found {len(runs)}")
    return runs


def check_same_settings(runs: list[Path]) -> list[str]:
    """The keys whose values differ between the runs (seed and/or split_seed); refuses any other difference."""
    configs = {run: load_yaml(run / "config.yaml") for run in runs}
    first = configs[runs[0]]
    varied = set()
    for run, config in configs.items():
        for key in set(first) | set(config):
            if first.get(key) != config.get(key):
                if key not in WHERE_KEYS | SEED_KEYS:
                    raise UserError(f"{run / 'config.yaml'}: {key} is {config.get(key)!r}, but "
                                    f"{first.get(key)!r} in {runs[0] / 'config.yaml'}: seed runs must differ only in "
                                    "their seed")
                varied.add(key)
    return sorted(varied & SEED_KEYS)


def spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values), "min": min(values), "max": max(values),
            "values": values}


def summarize(folder: str | Path) -> dict:
    folder = Path(folder)
    runs = seed_runs(folder)
    varied = check_same_settings(runs)
    results = [json.loads((run / "results.json").read_text()) for run in runs]
    test_sets = {r["manifest"]["splits"]["test"]["sha256"] for r in results}
    summary = {"folder": str(folder), "script": results[0].get("script"), "model": results[0].get("model"),
               "runs": [run.name for run in runs], "varied": varied, "same_test_set": len(test_sets) == 1,
               "n_test": evaluations(results[0])[0][1].get("n"), "evaluations": {}}
    for index, (label, _) in enumerate(evaluations(results[0])):
        metrics = [evaluations(r)[index][1] for r in results]
        summary["evaluations"][label or "test"] = {key: spread([m[key] for m in metrics]) for key in FIGURES}
    write_json(folder / "seeds.json", summary)
    return summary


def mean_sd(s: dict, scale: float = 100, digits: int = 2) -> str:
    return f"{scale * s['mean']:.{digits}f} ± {scale * s['sd']:.{digits}f}"


def describe(summary: dict) -> str:
    test = ("the same test reviews in every run" if summary["same_test_set"]
            else "a different test set in each run (the spread includes the split's)")
    lines = [f"{summary['folder']}: {len(summary['runs'])} runs ({', '.join(summary['runs'])}), "
             f"varied: {', '.join(summary['varied']) or 'nothing'}; {test}"]
    for name, figures in summary["evaluations"].items():
        each = ", ".join(f"{100 * v:.2f}" for v in figures["accuracy"]["values"])
        lines.append(f"  {name}: accuracy {mean_sd(figures['accuracy'])}% (mean ± sd; each: {each}), "
                     f"macro F1 {mean_sd(figures['f1'], 1, 4)}")
    return "\n".join(lines)


@dataclass
class SeedsArguments:
    folder: str | None = setting(None, "the folder holding seed_*/ run folders (make seeds' OUT)")


SETTINGS = (SeedsArguments,)


def main(argv=None) -> dict:
    (args,) = parse(SETTINGS, argv)
    if not args.folder:
        raise UserError("folder: give the folder holding seed_*/ run folders")
    summary = summarize(args.folder)
    print(describe(summary))
    print(f"wrote {Path(summary['folder']) / 'seeds.json'}")
    return summary


if __name__ == "__main__":
    run_main(main)
