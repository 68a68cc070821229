"""The run folder every run writes: `config.yaml` (the resolved settings, credentials redacted), `metrics.jsonl` (one
JSON object per logged step, with W&B's metric names: train/loss, eval/accuracy, ...) and, at the end,
`results.json` (with run_info: common/environment.py). RunLogger writes them and mirrors each metric to the trackers
the run asked for (common/trackers.py).
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import yaml

from common.config import setting
from common.environment import run_info
from common.io import atomic_write, follow_umask, to_json, write_json
from common.trackers import flatten, start_trackio, start_wandb, trackers

_SECRET = re.compile(r"(api_?key|token|password|secret)", re.IGNORECASE)


def run_folder_setting(default: str):
    """output_dir of a script whose run folder holds a run's config, metrics and results (the baseline, evaluate)."""
    return setting(default, "the run folder: config, metrics, results")


def redact(config: dict) -> dict:
    """Drop anything that looks like a credential before a config is written or sent anywhere. Credentials are
    strings: a number or a switch with such a name (average_tokens_across_devices) is a setting, and kept."""
    return {k: ("<redacted>" if _SECRET.search(k) and isinstance(v, str) and v else v) for k, v in config.items()}


class RunLogger:
    """Writes config.yaml and metrics.jsonl into output_dir, mirrors metrics to W&B and/or Trackio, writes
    results.json.

    resume_step: continuing a run from a checkpoint at that step; metrics.jsonl keeps its rows up to it.
    """

    def __init__(self, output_dir: str | Path, config: dict, report_to: str | None = "wandb",
                 run_name: str | None = None, resume_step: int | None = None):
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.config = redact(config)
        atomic_write(self.output_dir / "config.yaml",
                     lambda tmp: tmp.write_text(yaml.safe_dump(json.loads(to_json(self.config)), sort_keys=False)))
        self.metrics_path = self.output_dir / "metrics.jsonl"
        if resume_step is not None and self.metrics_path.exists():
            # a resumed run replays the steps after its checkpoint: drop what the interrupted run logged for them
            kept = [to_json(r) + "\n" for r in read_metrics(self.metrics_path) if r.get("step", 0) <= resume_step]
            atomic_write(self.metrics_path, lambda tmp: tmp.write_text("".join(kept)))
        self._metrics = open(self.metrics_path, "a" if resume_step is not None else "w")
        names, run_name = trackers(report_to), run_name or self.output_dir.name
        self.wandb = start_wandb(self.config, self.output_dir, run_name) if "wandb" in names else None
        self.trackio = start_trackio(self.config, run_name) if "trackio" in names else None
        self.last_step = resume_step or 0

    def log(self, metrics: dict, step: int) -> None:
        self._metrics.write(to_json({"step": step, **metrics}) + "\n")
        self._metrics.flush()
        self.last_step = max(self.last_step, step)
        plain = json.loads(to_json(metrics))  # numpy and torch scalars as plain numbers, once for both trackers
        for name in ("wandb", "trackio"):
            tracker = getattr(self, name)
            if tracker is not None:
                try:
                    tracker.log(plain, step=step)
                except Exception as e:  # noqa: BLE001
                    warnings.warn(f"{name} log failed ({e}); further metrics go to the other places only")
                    setattr(self, name, None)

    def finish(self, results: dict | None = None) -> dict | None:
        """Write results.json (with run_info added) and close; call once, at the very end of a run."""
        if results is not None:
            results = {**results, "run_info": run_info()}
            write_json(self.output_dir / "results.json", results)
        follow_umask(self.output_dir)  # what libraries wrote into the run folder too (weights, adapters)
        self._metrics.close()
        if self.wandb is not None:
            try:
                if results:
                    self.wandb.summary.update(flatten(results))
                self.wandb.finish()
            except Exception as e:  # noqa: BLE001
                warnings.warn(f"W&B finish failed ({e})")
            self.wandb = None
        if self.trackio is not None:
            try:
                # Trackio has no run summary: the test metrics are logged once, at the run's last step
                final = {k: v for k, v in flatten(results or {}).items()
                         if k.startswith("test/") and isinstance(v, (int, float)) and not isinstance(v, bool)}
                if final:
                    self.trackio.log(final, step=self.last_step)
                self.trackio.finish()
            except Exception as e:  # noqa: BLE001
                warnings.warn(f"Trackio finish failed ({e})")
            self.trackio = None
        return results


def read_metrics(path: str | Path) -> list[dict]:
    """The rows of a metrics.jsonl; a last line cut off by a crash is skipped."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
